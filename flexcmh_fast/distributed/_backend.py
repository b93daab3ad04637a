"""The Dask backend of FlexCMH's Algorithm 1, and its recovery from lost
workers.

Every modality is a row-partitioned dask array with the same number of row
blocks; *partition* p is block p of every modality.  A partition's rows and
its share of the fit (a :class:`~flexcmh_fast.flexcmh._partition.Partition`)
live on one worker, in that worker's registry ``_LIVE``; every round of the
partition is pinned there, so it is changed in place and never moved or
copied.  Keeping the state in a registry rather than as a chain of Dask
futures (one per round) keeps the scheduler's task graph from growing with
every iteration.

The driver (:class:`~flexcmh_fast.flexcmh._algorithm.FlexCMHFit`, the same
one the single-machine fit uses) sends each round's step and arguments to
every partition; common arguments larger than ``SCATTER_BYTES`` go to the
cluster once, and summed results are added up on the workers by a tree of
fan-in ``SPLIT_EVERY``, so the client sends and receives per-cluster and
``d x k`` summaries whatever the number of samples.

Recovery.  A partition whose worker left the cluster (or restarted, or
otherwise lost it) is loaded again from its source blocks, which Dask
computes again from their graph, on the surviving or new worker holding the
fewest partitions, and brought back to the fit's state there: by the
driver's last restore point (``mark``: the start of every iteration, the
encoder fit and the results; H re-derived from the current centroids, Γ
from that H, the current codes; ``_partition.restore``), then by the rounds
run since, replayed on it alone (those that only read skipped).  Then the
round that failed is sent again.  Every round carries a number and every
partition keeps the result of the last round it ran, so a partition that
finished the round returns that result instead of running it twice: no
step ever runs twice on a partition, and a round is combined only once
every partition has answered it.  Every wait is guarded
(:func:`flexcmh_fast._dask.wait_guarded`): when no worker is left the fit
fails after ``_dask.WORKER_WAIT`` seconds with an error naming the lost
workers and partitions.
"""
import pickle
import sys
import threading
import time
import warnings
from collections import Counter

import dask
import dask.array as da
import numpy as np
import scipy.sparse as sp

from .. import _dask
from .._threads import thread_limits
from .._validation import check_matrix, warn_if_constant
from ..flexcmh._algorithm import add
from ..flexcmh._partition import READ_ONLY_STEPS, Partition

# The partitions held by this worker process, by (fit id, partition index).
_LIVE = {}


class PartitionMissing(RuntimeError):
    """A round reached a worker that does not hold its partition."""

    def __init__(self, p, worker):
        super().__init__(
            f"Partition {p} of this distributed fit is not held by worker {worker}: it was "
            "lost with a worker that left the cluster or restarted (a fitted model's "
            "training codes and correspondence are kept on the workers that trained it).")
        self.p, self.worker = p, worker

    def __reduce__(self):
        return type(self), (self.p, self.worker)


class _Held:
    """A partition on its worker, with the number and result of the last
    round it ran: a round sent again after a failure returns the kept
    result instead of running twice."""

    def __init__(self, partition):
        self.partition = partition
        self.lock = threading.Lock()
        self.seq = None
        self.result = None


def _worker_threads(threads):
    """``threads``, or for None the worker's own thread count."""
    if threads is not None:
        return threads
    from distributed import get_worker

    return get_worker().state.nthreads


def _block_bytes(X):
    if sp.issparse(X):
        return int(X.data.nbytes + X.indices.nbytes + X.indptr.nbytes)
    return int(X.nbytes)


def _load_partition(fit_id, p, blocks, k, ns, lam, threads, rebuild=()):
    """Load partition p on this worker from its source blocks; ``rebuild``:
    the ``(step, args)`` that bring a partition loaded again to the fit's
    state.  Back: this worker, the row counts and the blocks' bytes."""
    from distributed import get_worker

    Xs = [check_matrix(b, f"modalities[{m}]") for m, b in enumerate(blocks)]
    if not rebuild:
        for m, X in enumerate(Xs):
            warn_if_constant(X, f"modalities[{m}] (partition {p})")
    part = Partition(Xs, k, ns, lam, threads=_worker_threads(threads))
    # One BLAS thread beside the Numba kernels, as on one machine.
    with thread_limits(part.threads, blas=1):
        for step, args in rebuild:
            step(part, *args)
    _LIVE[(fit_id, p)] = _Held(part)
    return get_worker().address, [X.shape[0] for X in Xs], sum(_block_bytes(b) for b in blocks)


class _Payload:
    """A round's arguments common to every partition, scattered to the cluster
    once (workers fetch it from each other) instead of sent per partition."""

    def __init__(self, args):
        self.args = args


def _round(fit_id, p, seq, step, shared, own, keep):
    """``step(partition, *shared, *own)`` on this worker's partition p of the
    fit (``shared`` may be a :class:`_Payload`), unless the partition has
    run round ``seq`` already: then the result it kept.  ``keep``: the
    result stays on this worker, handed over (:func:`_hand_over`)."""
    from distributed import get_worker

    args = (shared.args if isinstance(shared, _Payload) else shared) + own
    held = _LIVE.get((fit_id, p))
    if held is None:
        raise PartitionMissing(p, get_worker().address)
    with held.lock:
        if held.seq != seq:
            with thread_limits(held.partition.threads, blas=1):
                result = step(held.partition, *args)
            if keep:
                result = [_hand_over(block, f"flexcmh-{fit_id}-{seq}-{p}-{i}")
                          for i, block in enumerate(result)]
            held.result, held.seq = result, seq
        return held.result


def _hand_over(block, name):
    """Keep ``block`` on this worker as data of its own (no lineage: a block
    lost with this worker is lost for good, and computing it fails instead
    of waiting for the worker), under a future the client takes over from
    the variable ``name``.  Back: the name and the block's shape."""
    from distributed import Variable, get_client

    client = get_client()
    Variable(name, client=client).set(client.scatter(block, hash=False))
    return name, block.shape


def _drop_fit(fit_id):
    """Forget every partition of the fit held by this worker (run on all)."""
    for key in [key for key in _LIVE if key[0] == fit_id]:
        del _LIVE[key]


class _Round:
    """One round: its number, step, common arguments and per-partition ones;
    ``keep``: its results stay on the workers (:meth:`DaskBackend.lazy`)."""

    def __init__(self, seq, step, args, per_part, keep):
        self.seq, self.step, self.args, self.per_part = seq, step, args, per_part
        self.keep = keep

    def own(self, p):
        return () if self.per_part is None else (self.per_part[p],)


class DaskBackend:
    """The partitions of one fit, each held by one worker, the rounds run on
    them with the bytes each moves between client and workers, and the
    recovery of partitions lost with their worker.

    Attributes
    ----------
    recoveries : list of dict
        One per recovery: ``stage`` (where in the fit), ``partitions``,
        ``lost_workers``, ``new_workers``, ``seconds`` (from the round's
        failure noticed to every partition back), ``rounds_replayed``,
        ``bytes_sent`` (pickled restore and replay arguments) and
        ``bytes_reloaded`` (the source blocks loaded again).
    """

    # Common arguments larger than this are scattered once per round.
    SCATTER_BYTES = 256 * 1024
    # Fan-in of the tree that adds up summed results on the workers.
    SPLIT_EVERY = 8
    # Loads of a partition within one recovery before the fit gives up.
    MAX_RELOADS = 3
    # The partitions live on the workers: rounds are issued one at a time.
    in_process = False

    def __init__(self, client, fit_id, verbose=False):
        self.client = client
        self.fit_id = fit_id
        self.verbose = verbose
        self.workers = []
        self.sizes = None
        self.bytes_sent = 0
        self.bytes_received = 0
        self.seq = 0
        # The driver's last restore point and the rounds that changed the
        # partitions since (from the load while there is none).
        self.point = None
        self.log = []
        self.stage = "the start"
        self.recoveries = []
        # Every worker that held partitions of the fit and left.
        self.departed = set()

    # ---- loading -------------------------------------------------------------
    def load(self, Xs, k, ns, lam, threads):
        """Load partition p (block p of every modality) on the worker that
        computes it; record the row counts (partitions x modalities)."""
        blocks = [X.to_delayed().ravel().tolist() for X in Xs]
        self.blocks = [[b[q] for b in blocks] for q in range(len(blocks[0]))]
        self.load_args = (k, ns, lam, threads)
        load = [dask.delayed(_load_partition, pure=False)(self.fit_id, q, self.blocks[q],
                                                          *self.load_args)
                for q in range(len(self.blocks))]
        loaded = _dask.gather_anywhere(self.client, self.client.compute(load),
                                       "the partitions of this distributed fit")
        self.workers = [address for address, _, _ in loaded]
        self.sizes = np.array([n for _, n, _ in loaded], dtype=np.int64).reshape(-1, len(Xs))

    # ---- rounds ----------------------------------------------------------------
    def mark(self, point):
        """The driver's restore point (``RestorePoint``): a partition loaded
        again is brought back by it and the rounds logged after it."""
        self.point, self.log, self.stage = point, [], point.stage

    def run(self, step, *args, per_part=None, combine=False):
        """``step(partition, *args[, per_part[p]])`` on every partition; the
        results in partition order, or with ``combine`` their sum, added up
        on the workers by a tree so that the client receives one result."""
        entry = self._next_round(step, args, per_part)
        out = self._complete(entry, combine)
        self.bytes_received += len(pickle.dumps(out, protocol=5))
        if step not in READ_ONLY_STEPS:
            self.log.append(entry)
        return add(*out) if combine else out

    def lazy(self, step, *args, dtypes, per_part=None):
        """Per dtype, the dask array of the row blocks ``step(partition,
        *args)`` returns (a tuple), computed now, in one round, and kept on
        the partitions' workers as data without lineage: a block lost with
        its worker later is not computed again, and computing it fails at
        once (it cannot wait for the worker)."""
        from distributed import Variable

        while True:
            handed = self._complete(self._next_round(step, args, per_part, keep=True), False)
            blocks = []
            for part_blocks in handed:
                blocks.append([])
                for name, _ in part_blocks:
                    variable = Variable(name, client=self.client)
                    blocks[-1].append(variable.get(timeout=_dask.WORKER_WAIT))
                    variable.delete()
            # Handed-over blocks are in memory at once, unless lost with their
            # worker in the meantime; then the partition is loaded again and
            # the round run again.
            flat = [(p, f) for p, fs in enumerate(blocks) for f in fs]
            _dask.wait_guarded(self.client, [f for _, f in flat],
                               lambda alive, flat=flat: any(self.workers[p] not in alive
                                                            for p, _ in flat))
            if all(f.status == "finished" for _, f in flat):
                return [da.concatenate([da.from_delayed(blocks[p][i], shape=handed[p][i][1],
                                                        dtype=dtype)
                                        for p in range(len(blocks))], axis=0)
                        for i, dtype in enumerate(dtypes)]
            alive = _dask.alive_workers(self.client)
            gone = sorted({p for p, f in flat
                           if f.status != "finished" and self.workers[p] not in alive})
            if gone:
                self._recover(gone)

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
        self.client.run(_drop_fit, self.fit_id, on_error="ignore")
        self.workers = []

    def _next_round(self, step, args, per_part, keep=False):
        self.seq += 1
        return _Round(self.seq, step, args, per_part, keep)

    def _send(self, entry, parts):
        """Submit ``entry`` to partitions ``parts``, each pinned to its worker."""
        size = len(pickle.dumps((entry.step, entry.args), protocol=5))
        shared = entry.args
        if size > self.SCATTER_BYTES and len(parts) > 1:
            try:
                shared = self.client.scatter(_Payload(entry.args), hash=False)
            except OSError as exc:  # the worker chosen left: send the arguments with each task
                _dask.forget_traceback(exc)
        self.bytes_sent += size if shared is not entry.args else size * len(parts)
        if entry.per_part is not None:
            self.bytes_sent += sum(len(pickle.dumps(entry.per_part[p], protocol=5))
                                   for p in parts)
        return {p: self.client.submit(_round, self.fit_id, p, entry.seq, entry.step, shared,
                                      entry.own(p), entry.keep, pure=False,
                                      workers=[self.workers[p]], allow_other_workers=False)
                for p in parts}

    def _complete(self, entry, combine):
        """Run round ``entry`` on every partition until each has answered,
        loading lost partitions again; returns the answers in partition
        order, or with ``combine`` the top level of a tree of their sums."""
        n_parts = len(self.workers)
        leaves = {}
        while True:
            missing = [p for p in range(n_parts) if p not in leaves]
            if missing:
                leaves.update(self._send(entry, missing))
            ordered = [leaves[p] for p in range(n_parts)]
            targets = ordered
            if combine:
                while len(targets) > self.SPLIT_EVERY:
                    targets = [self.client.submit(add, *targets[i:i + self.SPLIT_EVERY],
                                                  pure=False)
                               for i in range(0, len(targets), self.SPLIT_EVERY)]
            out, verdict = _dask.gather_guarded(self.client, targets,
                                                lambda alive, targets=targets:
                                                    self._failed(leaves, targets, alive))
            if verdict is None:
                return out
            lost, resend = verdict
            answers = {f.key for f in ordered}
            self.client.cancel([leaves.pop(p) for p in sorted(lost | resend)]
                               + [t for t in targets if t.key not in answers])
            if lost:
                self._recover(sorted(lost))

    def _failed(self, leaves, targets, alive):
        """Why a round is not done: None while it runs, else (partitions to
        load again, partitions to send it to again).  A task's own error
        is raised as it is."""
        lost, resend = set(), set()
        for p, f in leaves.items():
            if self.workers[p] not in alive:
                lost.add(p)
            elif f.status in ("cancelled", "lost"):
                resend.add(p)
            elif f.status == "error":
                exc = f.exception()
                if isinstance(exc, PartitionMissing):
                    # Its worker lost it (restarted at the same address).
                    lost.add(p)
                elif type(exc).__name__ == "KilledWorker":
                    lost.add(p)
                else:
                    f.result()
        if lost or resend:
            return lost, resend
        for t in targets:
            if t.status == "error":
                t.result()
            if t.status in ("cancelled", "lost"):
                return set(), set(leaves)
        return None

    # ---- recovery --------------------------------------------------------------
    def _rebuild_steps(self, p):
        """What brings partition p loaded again to the fit's state: the
        restore point, then the rounds since that changed partitions."""
        steps = [] if self.point is None else [(self.point.step, self.point.args(p))]
        return steps + [(entry.step, entry.args + entry.own(p)) for entry in self.log]

    def _no_worker_error(self, parts):
        def message(waited):
            return (f"No Dask worker is left to load partitions {parts} of this distributed "
                    f"fit again: worker(s) {sorted(self.departed)} holding partitions left "
                    f"the cluster (the last during {self.stage}), and none joined within "
                    f"{waited:g} s. Start the fit again once the cluster has workers (with "
                    "'checkpoint' and resume=True it continues from its last checkpoint).")
        return message

    def _failed_loads(self, futures, targets, alive, lost_workers):
        """The loads to make again (their worker left), None if none; a
        load's own error (its source block cannot be computed) is raised."""
        out = set()
        for p, f in futures.items():
            if targets[p] not in alive or f.status in ("cancelled", "lost") or (
                    f.status == "error" and type(f.exception()).__name__ == "KilledWorker"):
                if targets[p] not in alive:
                    self.departed.add(targets[p])
                out.add(p)
            elif f.status == "error":
                raise RuntimeError(
                    f"Partition {p} of this distributed fit could not be loaded again from "
                    f"its source blocks after worker(s) {lost_workers} left the cluster "
                    f"during {self.stage}: {f.exception()!r}") from f.exception()
        return out or None

    def _targets(self, parts, alive):
        """A worker for each of ``parts``: the alive one holding the fewest
        partitions of the fit (new workers first)."""
        held = Counter(self.workers[q] for q in range(len(self.workers))
                       if q not in parts and self.workers[q] in alive)
        out = {}
        for p in parts:
            out[p] = min(sorted(alive), key=lambda w: held[w])
            held[out[p]] += 1
        return out

    def _recover(self, parts):
        """Load partitions ``parts`` again and bring them to the fit's state
        (see the module's docstring); warn, and report with ``verbose``."""
        start = time.perf_counter()
        lost_workers = sorted({self.workers[p] for p in parts})
        self.departed.update(lost_workers)
        rebuild = {p: self._rebuild_steps(p) for p in parts}
        sent = sum(len(pickle.dumps(steps, protocol=5)) for steps in rebuild.values())
        loads = Counter()
        reloaded = 0
        pending = list(parts)
        while pending:
            alive = _dask.await_workers(self.client, self._no_worker_error(parts))
            targets = self._targets(pending, alive)
            futures = {p: self.client.compute(
                dask.delayed(_load_partition, pure=False)(self.fit_id, p, self.blocks[p],
                                                          *self.load_args, rebuild[p]),
                workers=[targets[p]], allow_other_workers=False) for p in pending}
            again = []
            while futures:
                failed = _dask.wait_guarded(
                    self.client, list(futures.values()),
                    lambda alive, futures=futures, targets=targets:
                        self._failed_loads(futures, targets, alive, lost_workers)) or ()
                for p in [p for p, f in futures.items() if f.status == "finished"]:
                    address, sizes, nbytes = futures.pop(p).result()
                    if sizes != self.sizes[p].tolist():
                        raise RuntimeError(
                            f"Partition {p} of this distributed fit has {sizes} rows per "
                            f"modality when loaded again, {self.sizes[p].tolist()} before: "
                            "its source blocks changed.")
                    self.workers[p] = address
                    reloaded += nbytes
                for p in failed:
                    self.client.cancel(futures.pop(p))
                    loads[p] += 1
                    if loads[p] >= self.MAX_RELOADS:
                        self.client.cancel(list(futures.values()))
                        raise RuntimeError(
                            f"Partition {p} of this distributed fit could not be loaded "
                            f"again: {loads[p]} loads failed (the workers chosen, last "
                            f"{targets[p]}, left the cluster). It was lost with worker(s) "
                            f"{lost_workers} during {self.stage}.")
                    again.append(p)
            pending = sorted(again)
        seconds = time.perf_counter() - start
        self.bytes_sent += sent
        record = {"stage": self.stage, "partitions": list(parts), "lost_workers": lost_workers,
                  "new_workers": sorted({self.workers[p] for p in parts}),
                  "seconds": seconds, "rounds_replayed": len(self.log), "bytes_sent": sent,
                  "bytes_reloaded": reloaded}
        self.recoveries.append(record)
        message = (f"Partitions {record['partitions']} of this distributed fit were lost "
                   f"with worker(s) {lost_workers} during {self.stage}; they were loaded "
                   f"again from their source blocks on {record['new_workers']} and rebuilt "
                   f"from the current model in {seconds:.1f} s. The fit continues; its "
                   "result can differ from an undisturbed fit's, and a fit still far from "
                   "converging can stop early (docs/scaling_out.md, \"Fault tolerance\").")
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        if self.verbose:
            print(f"FlexCMH (Dask): {message}", file=sys.stderr)
