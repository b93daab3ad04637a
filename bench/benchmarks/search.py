"""asv benchmarks of the exact Hamming search engine (HammingIndex).

Data: uniformly random packed codes built in ``setup`` with a fixed seed;
1,000,000 database codes and 1,000 queries unless the class says otherwise
(the project's performance anchors, ``docs/benchmarks.md``).  Every query uses
all available cores (``n_threads=None``).  ``FaissIndexBinaryFlatSearch``
times faiss on the same data for reference (skipped without faiss).
"""
import numpy as np

from flexcmh_fast.search import HammingIndex, code_bytes, hamming_distances

N_DB = 1_000_000
N_QUERIES = 1_000


def _codes(n, n_bits, seed):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, (n, code_bytes(n_bits)), dtype=np.uint8)
    if n_bits % 8:  # padding bits must be zero
        codes[:, -1] &= np.uint8((0xFF << (8 - n_bits % 8)) & 0xFF)
    return codes


def clustered_codes(n, n_bits, n_centres, flips, seed):
    """Clustered packed codes: each one a random centre with ``flips`` random
    bits flipped (repeats allowed).  The ``n_centres`` centres depend on
    ``n_bits`` only, so database and queries drawn with different seeds
    share them; ``n_bits`` must be a multiple of 8."""
    centres = np.random.default_rng(n_bits).integers(0, 256, (n_centres, n_bits // 8),
                                                     dtype=np.uint8)
    rng = np.random.default_rng(seed)
    codes = centres[rng.integers(0, n_centres, n)]
    rows = np.arange(n)
    for _ in range(flips):
        bit = rng.integers(0, n_bits, n)
        codes[rows, bit // 8] ^= np.uint8(128) >> (bit % 8).astype(np.uint8)
    return codes


class HammingIndexSearch:
    """Exact top-k search by the linear scan, 1M codes x 1,000 queries."""

    params = ([64, 128, 256], [1, 100])
    param_names = ["n_bits", "k"]
    timeout = 300

    def setup(self, n_bits, k):
        self.index = HammingIndex(_codes(N_DB, n_bits, 0), n_bits=n_bits, method="linear")
        self.queries = _codes(N_QUERIES, n_bits, 1)

    def time_search(self, n_bits, k):
        self.index.search(self.queries, k)

    def track_comparisons_per_second(self, n_bits, k):
        """Giga (query, code) comparisons per second of one search."""
        import time

        best = np.inf
        for _ in range(3):
            t0 = time.perf_counter()
            self.index.search(self.queries, k)
            best = min(best, time.perf_counter() - t0)
        return N_DB * N_QUERIES / best / 1e9

    track_comparisons_per_second.unit = "G comparisons/s"


class FaissIndexBinaryFlatSearch:
    """faiss IndexBinaryFlat on the same data, for the speed ratio."""

    params = ([64, 128], [100])
    param_names = ["n_bits", "k"]
    timeout = 300

    def setup(self, n_bits, k):
        try:
            import faiss
        except ImportError:
            raise NotImplementedError("faiss is not installed") from None
        self.index = faiss.IndexBinaryFlat(n_bits)
        self.index.add(_codes(N_DB, n_bits, 0))
        self.queries = _codes(N_QUERIES, n_bits, 1)

    def time_search(self, n_bits, k):
        self.index.search(self.queries, k)


class HammingIndexMIHSearch:
    """Top-k by multi-index hashing and by the scan on clustered codes
    (4,000 centres, 3 bits flipped), 1M x 64 bits, 1,000 queries."""

    params = (["linear", "mih", "auto"], [10, 100])
    param_names = ["method", "k"]
    timeout = 300

    def setup(self, method, k):
        self.codes = clustered_codes(N_DB, 64, 4000, 3, seed=1)
        self.index = HammingIndex(self.codes, n_bits=64, method=method)
        self.queries = clustered_codes(N_QUERIES, 64, 4000, 3, seed=2)
        self.index.search(self.queries[:1], k)  # builds the tables

    def time_search(self, method, k):
        self.index.search(self.queries, k)

    def time_build_tables(self, method, k):
        # A fresh index: the tables are built by its first query.
        HammingIndex(self.codes, n_bits=64, method=method).search(self.queries[:1], k)


class HammingIndexRangeSearch:
    """All codes within a radius (about 0.1% of the database per query)."""

    params = ([64, 128],)
    param_names = ["n_bits"]
    timeout = 300

    def setup(self, n_bits):
        self.index = HammingIndex(_codes(N_DB, n_bits, 0), n_bits=n_bits, method="linear")
        self.queries = _codes(N_QUERIES, n_bits, 1)
        # ~3.1 standard deviations below the mean distance n_bits / 2.
        self.radius = int(n_bits / 2 - 3.1 * np.sqrt(n_bits) / 2)

    def time_range_search(self, n_bits):
        self.index.range_search(self.queries, self.radius)


class HammingIndexDistanceHistogram:
    """Per-query counts of codes at every distance, 1M codes x 1,000 queries."""

    params = ([64, 128],)
    param_names = ["n_bits"]
    timeout = 300

    def setup(self, n_bits):
        self.index = HammingIndex(_codes(N_DB, n_bits, 0), n_bits=n_bits)
        self.queries = _codes(N_QUERIES, n_bits, 1)

    def time_distance_histogram(self, n_bits):
        self.index.distance_histogram(self.queries)


class HammingIndexAdd:
    """Building an index: one add of 1M codes, and 100 adds of 10,000."""

    params = ([64, 128],)
    param_names = ["n_bits"]

    def setup(self, n_bits):
        self.codes = _codes(N_DB, n_bits, 0)
        self.n_bits = n_bits

    def time_add_once(self, n_bits):
        HammingIndex(self.codes, n_bits=n_bits)

    def time_add_batches(self, n_bits):
        index = HammingIndex(n_bits=n_bits)
        for start in range(0, N_DB, 10_000):
            index.add(self.codes[start:start + 10_000])

    def peakmem_add_once(self, n_bits):
        HammingIndex(self.codes, n_bits=n_bits)


class HammingDistances:
    """Full int32 distance matrix, 1,000 queries x 100,000 codes."""

    params = ([64, 256],)
    param_names = ["n_bits"]

    def setup(self, n_bits):
        self.codes = _codes(100_000, n_bits, 0)
        self.queries = _codes(N_QUERIES, n_bits, 1)

    def time_hamming_distances(self, n_bits):
        hamming_distances(self.queries, self.codes, n_bits)
