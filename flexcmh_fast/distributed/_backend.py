"""The Dask backend of FlexCMH's Algorithm 1.

Every modality is a row-partitioned dask array with the same number of row
blocks; *partition* p is block p of every modality.  A partition's rows and
its share of the fit (a :class:`~flexcmh_fast.flexcmh._partition.Partition`)
live on one worker for the whole fit, in that worker's registry ``_LIVE``;
every round of the partition is pinned there, so it is changed in place and
never moved or copied.  Keeping the state in a registry rather than as a
chain of Dask futures (one per round) keeps the scheduler's task graph from
growing with every iteration.

The driver (:class:`~flexcmh_fast.flexcmh._algorithm.FlexCMHFit`, the same
one the single-machine fit uses) sends each round's step and arguments to
every partition; common arguments larger than ``SCATTER_BYTES`` go to the
cluster once, and summed results are added up on the workers by a tree of
fan-in ``SPLIT_EVERY``, so the client sends and receives per-cluster and
``d x k`` summaries whatever the number of samples.
"""
import pickle

import dask
import dask.array as da
import numpy as np

from .._threads import thread_limits
from .._validation import check_matrix, warn_if_constant
from ..flexcmh._algorithm import add
from ..flexcmh._partition import Partition

# The partitions held by this worker process, by (fit id, partition index).
_LIVE = {}


def _worker_threads(threads):
    """``threads``, or for None the worker's own thread count."""
    if threads is not None:
        return threads
    from distributed import get_worker

    return get_worker().state.nthreads


def _load_partition(fit_id, p, blocks, k, ns, lam, threads):
    from distributed import get_worker

    Xs = [check_matrix(b, f"modalities[{m}]") for m, b in enumerate(blocks)]
    for m, X in enumerate(Xs):
        warn_if_constant(X, f"modalities[{m}] (partition {p})")
    _LIVE[(fit_id, p)] = Partition(Xs, k, ns, lam, threads=_worker_threads(threads))
    return get_worker().address, [X.shape[0] for X in Xs]


class _Payload:
    """A round's arguments common to every partition, scattered to the cluster
    once (workers fetch it from each other) instead of sent per partition."""

    def __init__(self, args):
        self.args = args


def _round(fit_id, p, step, shared, own):
    """``step(partition, *shared, *own)`` on this worker's partition p of the
    fit (``shared`` may be a :class:`_Payload`)."""
    args = (shared.args if isinstance(shared, _Payload) else shared) + own
    try:
        part = _LIVE[(fit_id, p)]
    except KeyError:
        raise RuntimeError(
            f"Partition {p} of this distributed fit is not on its worker any more (the "
            "worker restarted); start the fit again.") from None
    # One BLAS thread beside the Numba kernels, as on one machine.
    with thread_limits(part.threads, blas=1):
        return step(part, *args)


def _drop_fit(fit_id):
    """Forget every partition of the fit held by this worker (run on all)."""
    for key in [key for key in _LIVE if key[0] == fit_id]:
        del _LIVE[key]


class DaskBackend:
    """The partitions of one fit, each held by one worker, and the rounds run
    on them, with the bytes each round moves between client and workers."""

    # Seconds between checks that the partitions' workers are still there
    # while a round runs (a round pinned to a lost worker would wait forever).
    LIVENESS_PERIOD = 5.0
    # Common arguments larger than this are scattered once per round.
    SCATTER_BYTES = 256 * 1024
    # Fan-in of the tree that adds up summed results on the workers.
    SPLIT_EVERY = 8
    # The partitions live on the workers: rounds are issued one at a time.
    in_process = False

    def __init__(self, client, fit_id):
        self.client = client
        self.fit_id = fit_id
        self.workers = []
        self.sizes = None
        self.bytes_sent = 0
        self.bytes_received = 0

    def load(self, Xs, k, ns, lam, threads):
        """Load partition p (block p of every modality) on the worker that
        computes it; record the row counts (partitions x modalities)."""
        blocks = [X.to_delayed().ravel().tolist() for X in Xs]
        load = [dask.delayed(_load_partition, pure=False)(
            self.fit_id, q, [b[q] for b in blocks], k, ns, lam, threads)
            for q in range(len(blocks[0]))]
        loaded = self.client.gather(self.client.compute(load))
        self.workers = [address for address, _ in loaded]
        self.sizes = np.array([n for _, n in loaded], dtype=np.int64).reshape(-1, len(Xs))

    def _submit(self, p, step, shared, own=()):
        return self.client.submit(_round, self.fit_id, p, step, shared, own, pure=False,
                                  workers=[self.workers[p]], allow_other_workers=False)

    def _wait(self, futures):
        """Wait for ``futures``; raise if a partition's worker has gone."""
        from distributed import wait

        while True:
            try:
                # as_current: `wait` looks for the default client, which the
                # caller's client need not be.
                with self.client.as_current():
                    wait(futures, timeout=self.LIVENESS_PERIOD)
                return
            except TimeoutError:
                alive = set(self.client.scheduler_info(n_workers=-1)["workers"])
                lost = sorted({w for w in self.workers if w not in alive})
                if lost:
                    self.client.cancel(futures)
                    raise RuntimeError(
                        f"Worker(s) {lost} holding partitions of this distributed fit "
                        "left the cluster; start the fit again.") from None

    def _submit_all(self, step, args, per_part):
        size = len(pickle.dumps((step, args), protocol=5))
        if size > self.SCATTER_BYTES and len(self.workers) > 1:
            shared = self.client.scatter(_Payload(args), hash=False)
            self.bytes_sent += size
        else:
            shared = args
            self.bytes_sent += size * len(self.workers)
        if per_part is not None:
            self.bytes_sent += sum(len(pickle.dumps(a, protocol=5)) for a in per_part)
        return [self._submit(p, step, shared, () if per_part is None else (per_part[p],))
                for p in range(len(self.workers))]

    def run(self, step, *args, per_part=None, combine=False):
        """``step(partition, *args[, per_part[p]])`` on every partition; the
        results in partition order, or with ``combine`` their sum, added up
        on the workers by a tree so that the client receives one result."""
        futures = self._submit_all(step, args, per_part)
        if combine:
            while len(futures) > self.SPLIT_EVERY:
                futures = [self.client.submit(add, *futures[i:i + self.SPLIT_EVERY],
                                              pure=False)
                           for i in range(0, len(futures), self.SPLIT_EVERY)]
        self._wait(futures)
        out = self.client.gather(futures)
        self.bytes_received += len(pickle.dumps(out, protocol=5))
        return add(*out) if combine else out

    def lazy(self, step, *args, shape, dtype, per_part=None):
        """Dask array of the blocks ``step(partition, *args)``, computed now and
        kept on the partitions' workers."""
        futures = self._submit_all(step, args, per_part)
        self._wait(futures)
        return da.concatenate([da.from_delayed(f, shape=shape(p), dtype=dtype)
                               for p, f in enumerate(futures)], axis=0)

    def peek(self, step):
        """None: the partitions' state stays on the workers."""
        return None

    def traffic(self):
        """Pickled bytes sent to / received from the workers since the last call."""
        out = (self.bytes_sent, self.bytes_received)
        self.bytes_sent = self.bytes_received = 0
        return out

    def release(self):
        """Drop the fit's partitions from every worker (also those loaded by a
        load that failed half-way)."""
        self.client.run(_drop_fit, self.fit_id)
        self.workers = []
