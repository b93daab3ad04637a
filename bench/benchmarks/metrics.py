"""asv benchmarks of retrieval evaluation (flexcmh_fast.metrics).

Data: uniformly random packed codes built in ``setup`` with a fixed seed;
a database of 1,000,000 codes, 1,000 queries, 10 classes (1-D labels) or 24
multi-labels (MIRFlickr-like, ~3 labels per object).  Every call uses all
available cores (``n_threads=None``).
"""
import numpy as np

from flexcmh_fast import metrics
from flexcmh_fast.search import code_bytes

N_DB = 1_000_000
N_QUERIES = 1_000


def _codes(n, n_bits, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, code_bytes(n_bits)), dtype=np.uint8)


class MeanAveragePrecision:
    """MAP over the whole ranking, 1,000 queries x 1M codes."""

    params = ([64, 128], ["stable", "aware"], ["single", "multi"])
    param_names = ["n_bits", "ties", "labels"]
    timeout = 600

    def setup(self, n_bits, ties, labels):
        rng = np.random.default_rng(0)
        self.db = _codes(N_DB, n_bits, 1)
        self.queries = _codes(N_QUERIES, n_bits, 2)
        if labels == "single":
            self.ql = rng.integers(0, 10, N_QUERIES)
            self.dl = rng.integers(0, 10, N_DB)
        else:
            self.ql = (rng.random((N_QUERIES, 24)) < 0.12).astype(np.uint8)
            self.dl = (rng.random((N_DB, 24)) < 0.12).astype(np.uint8)

    def time_map(self, n_bits, ties, labels):
        metrics.mean_average_precision(self.queries, self.db, self.ql, self.dl,
                                       n_bits=n_bits, ties=ties)

    def track_pairs_per_second(self, n_bits, ties, labels):
        import time
        start = time.perf_counter()
        self.time_map(n_bits, ties, labels)
        return N_QUERIES * N_DB / (time.perf_counter() - start)

    track_pairs_per_second.unit = "pairs/s"


class RetrievalReport:
    """Every metric at once (stable + aware MAP, P@k, PR curve), 64 bits."""

    timeout = 600

    def setup(self):
        rng = np.random.default_rng(0)
        self.db = _codes(N_DB, 64, 1)
        self.queries = _codes(N_QUERIES, 64, 2)
        self.ql = rng.integers(0, 10, N_QUERIES)
        self.dl = rng.integers(0, 10, N_DB)

    def time_report(self):
        metrics.retrieval_report(self.queries, self.db, self.ql, self.dl, n_bits=64,
                                 ks=[1, 10, 100, 1000])


class WikiSizedEvaluation:
    """The Wiki protocol's evaluation size: 860 queries x 2,006 codes."""

    params = [16, 128]
    param_names = ["n_bits"]

    def setup(self, n_bits):
        rng = np.random.default_rng(0)
        self.db = _codes(2006, n_bits, 1)
        self.queries = _codes(860, n_bits, 2)
        self.ql = rng.integers(0, 10, 860)
        self.dl = rng.integers(0, 10, 2006)

    def time_report(self, n_bits):
        metrics.retrieval_report(self.queries, self.db, self.ql, self.dl, n_bits=n_bits)
