"""asv benchmarks of the exact Hamming search engine (HammingIndex).

Data: uniformly random packed codes built in ``setup`` with a fixed seed;
1,000,000 database codes and 1,000 queries unless the class says otherwise
(the sizes of the performance anchors in DESIGN.md §7).  Every query uses
all available cores (``n_threads=None``).  ``FaissIndexBinaryFlatSearch``
times faiss on the same data for reference (skipped without faiss).
"""
import numpy as np

from flexcmh_fast import HammingIndex
from flexcmh_fast._index import hamming_distances

N_DB = 1_000_000
N_QUERIES = 1_000


def _codes(n, n_bits, seed):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, (n, (n_bits + 7) // 8), dtype=np.uint8)
    if n_bits % 8:  # padding bits must be zero
        codes[:, -1] &= np.uint8((0xFF << (8 - n_bits % 8)) & 0xFF)
    return codes


class HammingIndexSearch:
    """Exact top-k search, 1M codes x 1,000 queries."""

    params = ([64, 128, 256], [1, 100])
    param_names = ["n_bits", "k"]
    timeout = 300

    def setup(self, n_bits, k):
        self.index = HammingIndex(_codes(N_DB, n_bits, 0), n_bits=n_bits)
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


class HammingIndexRangeSearch:
    """All codes within a radius (about 0.1% of the database per query)."""

    params = ([64, 128],)
    param_names = ["n_bits"]
    timeout = 300

    def setup(self, n_bits):
        self.index = HammingIndex(_codes(N_DB, n_bits, 0), n_bits=n_bits)
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
