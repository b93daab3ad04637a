"""asv benchmarks for the Dask scale-out on a ``LocalCluster(processes=True,
n_workers=2, threads_per_worker=1)``:

* sharded exact search versus the single-process HammingIndex (two threads)
  over the same 64-bit codes, 1,000 queries, k=100, and the tracked overhead
  ratio sharded / single (target <= 1.5);
* distributed FlexCMH training: time per iteration and the tracked bytes per
  iteration between client and workers (target: independent of n).

Skipped (NotImplementedError) when Dask is not installed.
"""
import time

import numpy as np

import flexcmh_fast as fc

try:
    import dask.array as da
    import distributed
except ImportError:  # asv records a skip for benchmarks whose setup raises this
    da = distributed = None

N_BITS = 64
N_QUERIES = 1000
K = 100
N_WORKERS = 2


class _OnLocalCluster:
    """Starts the local cluster in ``setup`` (skipped without Dask) and closes
    it in ``teardown``."""

    def start_cluster(self):
        if distributed is None:
            raise NotImplementedError("dask[array] and distributed are not installed")
        self.cluster = distributed.LocalCluster(
            processes=True, n_workers=N_WORKERS, threads_per_worker=1, dashboard_address=None)
        self.client = distributed.Client(self.cluster)

    def teardown(self, *params):
        self.client.close()
        self.cluster.close()


class ShardedSearch(_OnLocalCluster):
    """Top-k search over n codes: 2 shards (one per worker) vs one process."""

    params = [1_000_000, 10_000_000]
    param_names = ["n_codes"]
    timeout = 900
    number = 1
    repeat = 3

    def setup(self, n):
        self.start_cluster()
        from flexcmh_fast.distributed import ShardedHammingIndex

        # One block per worker, generated there: shards are built where the data is.
        codes = da.random.default_rng(0).integers(
            0, 256, size=(n, N_BITS // 8), dtype=np.uint8,
            chunks=(-(-n // N_WORKERS), N_BITS // 8)).persist()
        self.sharded = ShardedHammingIndex(codes, N_BITS, n_threads=1)
        self.single = fc.HammingIndex(codes.compute(), n_bits=N_BITS, n_threads=N_WORKERS)
        self.queries = fc.pack_codes(
            np.random.default_rng(1).integers(0, 2, (N_QUERIES, N_BITS)))

    def time_search_sharded(self, n):
        self.sharded.search(self.queries, K)

    def time_search_single_process(self, n):
        self.single.search(self.queries, K)

    def track_overhead_ratio(self, n):
        """Best of 3 sharded / best of 3 single-process."""
        times = []
        for index in (self.sharded, self.single):
            best = np.inf
            for _ in range(3):
                t = time.perf_counter()
                index.search(self.queries, K)
                best = min(best, time.perf_counter() - t)
            times.append(best)
        return times[0] / times[1]

    track_overhead_ratio.unit = "sharded / single"


class DistributedTrain(_OnLocalCluster):
    """FlexCMH on 4 row partitions, weakly paired (a quarter of the pairs
    known), k=25, 64 bits; one outer iteration is timed / measured."""

    params = [25_000, 100_000]
    param_names = ["n_samples"]
    timeout = 900
    number = 1
    repeat = 1

    def setup(self, n):
        self.start_cluster()
        from flexcmh_fast import datasets

        data = datasets.make_multimodal(n, n_classes=25, n_features=(128, 256),
                                        kinds=("dense", "dense"), random_state=0)
        known = np.sort(np.random.default_rng(0).choice(n, n // 4, replace=False))
        self.pairs = np.stack([known, known], axis=1)
        self.Xs = [da.from_array(X, chunks=(-(-n // 4), -1)).persist()
                   for X in data.modalities]
        distributed.wait(self.Xs)
        self.log = []
        self._train(3)  # warm-up: Numba compilation on the workers

    def _train(self, max_iter):
        from flexcmh_fast import distributed as fd

        self.log = []
        fd.train(self.Xs, self.pairs, n_bits=64, n_clusters=25, max_iter=max_iter, tol=0.0,
                 random_state=0, client=self.client,
                 callback=lambda it, s: self.log.append(
                     (time.perf_counter(), s["bytes_sent"] + s["bytes_received"])))

    def track_seconds_per_iteration(self, n):
        self._train(4)
        return float(np.diff([t for t, _ in self.log]).mean())

    track_seconds_per_iteration.unit = "seconds"

    def track_bytes_per_iteration(self, n):
        """Pickled messages to and results from the workers, one iteration."""
        self._train(2)
        return float(self.log[-1][1])

    track_bytes_per_iteration.unit = "bytes"
