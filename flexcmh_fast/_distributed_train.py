"""FlexCMH training on a Dask cluster (:func:`flexcmh_fast.distributed.train`).

Layout.  Every modality is a row-partitioned dask array with the same number
of row blocks; *partition* p is block p of every modality.  A partition's
rows, indicators ``H``, products ``X Z`` and correspondence live on one
worker for the whole fit, as a :class:`_Partition` (the single-machine
:class:`~flexcmh_fast._flexcmh._Trainer` restricted to those rows) in that
worker's registry ``_LIVE``; every round of the partition is pinned there.
Known pairs must join rows of the same partition: the H step of a sample
needs its partners' indicators.  The
client keeps only what does not grow with the number of samples: the
centroids ``Z``, the code function, the cluster matching and the history.

One outer iteration is seven rounds.  In each, the client sends the same
small message to every partition (scattered once when it is large) and gets a
small summary back (sums are added up on the workers by a tree first):

1. H step (Eq. 7-8, local: a sample's partners are in its partition) and the
   Z statistics ``X^T H`` (d x k) and ``H^T H`` (k x k); the client solves Z.
2. ``X Z`` with the new Z, per-cluster member counts and indicator sums, and
   known-pair votes (k x k).
3. Per-cluster ordered-neighbour profiles (k x ns), merged on the client as
   top-ns lists: exact.  The client matches clusters (Hungarian).
4. Relabelling and the inferred correspondence Γ; back: aligned-row counts.
5. Code-function moments (sum k, scatter k x k); with more than 20,000
   aligned rows, of the same random subset the single-machine fit uses (its
   positions are sent: at most 20,000 integers).  When modality 0 has at
   most 20,000 rows the fit always uses every aligned row, and round 4
   returns the moments instead (six rounds).
6. ITQ rotation statistics ``U^T sign(U R)`` (b x b).
7. The codes and the objective's terms (three numbers).

Exact and approximate steps.  Every sum over samples is added up over
partitions, so it equals the single-machine sum up to floating-point
reassociation; the random draws (k-means start, code-fit subsets, encoder
anchors) are the single-machine draws, in the same order.  The one
approximation: Eq. 2 pairs samples *without a known partner* by rank inside
matched clusters, and here the ranking is done inside each partition
(samples of partition p of one modality are paired with samples of
partition p of the other).  With fully paired data, with one partition, or
with no inferred pairs, the distributed fit is the single-machine fit.

Bounded sample traffic.  The k-means start gathers at most 10,000 rows per
modality (the rows the single-machine k-means runs on) and the kernel
encoder at most ``n_anchors`` + 1,000 rows; nothing else of the data reaches
the client.  The training codes and the correspondence stay on the workers
as dask arrays.
"""
import inspect
import math
import pickle
import uuid

import numpy as np
import scipy.sparse as sp

import dask
import dask.array as da

from . import _flexcmh as F
from . import _kernels as K
from ._codes import n_bytes_for, pack_codes
from ._flexcmh_codes import ITQCode
from ._progress import ProgressBar
from ._threads import numba_threads
from ._train import normalize_pairs
from ._validation import (_describe, available_cores, check_bool, check_int,
                          check_matrix, check_n_bits, check_n_threads,
                          check_random_state)

# Parameters of fit_flexcmh that distributed training accepts (in the order
# of check_params), with fit_flexcmh's defaults.
_PARAMS = ("n_clusters", "n_neighbors", "lam", "max_iter", "tol", "code_scheme",
           "joint", "matching", "encoder", "n_anchors", "match_score")
_DEFAULTS = {name: inspect.signature(F.fit_flexcmh).parameters[name].default
             for name in _PARAMS}


# ----------------------------------------------------------------------
# Worker side
# ----------------------------------------------------------------------
class _Partition(F._Trainer):
    """One partition's share of a fit: the trainer restricted to its rows."""

    def __init__(self, Xs, k, ns, lam, joint, match_score, n_bits, threads):
        super().__init__(Xs, {}, None, n_bits, k, ns, lam, joint, "clusters", "itq",
                         None, K, match_score)
        self.threads = threads
        self.itq_U = None


# The partitions held by this worker process, by (fit id, partition index).
# A partition is loaded once and every round of its fit is pinned to this
# worker, so it is changed in place and never moved or copied.  Keeping the
# state here rather than as a chain of Dask futures (one per round) keeps
# the scheduler's task graph from growing with every iteration.
_LIVE = {}


def _limits(threads):
    from threadpoolctl import threadpool_limits

    n = available_cores() if threads == -1 else threads
    # One BLAS thread beside the Numba kernels (see fit_flexcmh).
    return threadpool_limits(limits=1, user_api="blas"), numba_threads(n)


def _load_partition(fit_id, p, blocks, k, ns, lam, joint, match_score, n_bits, threads):
    from distributed import get_worker

    Xs = [check_matrix(b, f"modalities[{m}]") for m, b in enumerate(blocks)]
    _LIVE[(fit_id, p)] = _Partition(Xs, k, ns, lam, joint, match_score, n_bits, threads)
    return get_worker().address, [X.shape[0] for X in Xs]


class _Payload:
    """A round's arguments common to every partition, scattered to the cluster
    once (workers fetch it from each other) instead of sent per partition."""

    def __init__(self, args):
        self.args = args


def _round(fit_id, p, func, shared, own):
    """``func(partition, *shared, *own)`` on this worker's partition p of the
    fit (``shared`` may be a :class:`_Payload`)."""
    args = (shared.args if isinstance(shared, _Payload) else shared) + own
    try:
        part = _LIVE[(fit_id, p)]
    except KeyError:
        raise RuntimeError(
            f"Partition {p} of this distributed fit is not on its worker any more (the "
            "worker restarted); start the fit again.") from None
    blas, numba_limit = _limits(part.threads)
    with blas, numba_limit:
        return func(part, *args)


def _add(*parts):
    """Element-wise sum of equally shaped results (arrays, numbers, and
    lists / tuples / dicts of them): the reduction of summed rounds."""
    first = parts[0]
    if isinstance(first, dict):
        return {key: _add(*(part[key] for part in parts)) for key in first}
    if isinstance(first, (list, tuple)):
        return type(first)(_add(*items) for items in zip(*parts))
    total = first
    for part in parts[1:]:
        total = total + part
    return total


def _drop_fit(fit_id):
    """Forget every partition of the fit held by this worker (run on all)."""
    for key in [key for key in _LIVE if key[0] == fit_id]:
        del _LIVE[key]


def _z_stats(part):
    return [(F._xth(X, H), H.T @ H) for X, H in zip(part.Xs, part.H)]


def _set_pairs(part, fully_paired, pairs):
    part.pairs = pairs
    part.fully_paired = fully_paired


def _take_rows(part, m, rows):
    return part.Xs[m][rows], part.sqx[m][rows]


def _init_indicators(part, starts):
    """SemiNMF start: one-hot k-means clusters + 0.2 (given, or nearest of
    the given centres); back: the Z statistics."""
    part.H = []
    for m, (kind, value) in enumerate(starts):
        assign = value if kind == "assign" else F.nearest_centres(part.Xs[m], value)
        part.H.append(F.start_indicators(assign, part.k))
    part.XZ = [None] * part.M
    part.Z = [None] * part.M
    part._assign = [None] * part.M
    return _z_stats(part)


def _semi_nmf_sweep(part, Zs):
    """One SemiNMF warm-up iteration (H by NNLS from X Z), then Z statistics."""
    for m, (X, Z) in enumerate(zip(part.Xs, Zs)):
        XZ = F._xz(X, Z)
        K.nnls_rows(Z.T @ Z, XZ, np.zeros(part.n[m]), part.H[m], F._H_SWEEPS, 0.0)
    return _z_stats(part)


def _update_h(part):
    part.update_H()
    return _z_stats(part)


def _set_z(part, Zs, moments=False):
    """Set Z (and X Z); with ``moments``, back: the code-fit moments of all
    aligned rows (which the next code fit uses when it needs no subset)."""
    part.Z = list(Zs)
    part.XZ = [F._xz(X, Z) for X, Z in zip(part.Xs, Zs)]
    part._assign = [None] * part.M
    return _code_moments(part, None) if moments else None


def _cluster_summaries(part, Zs, votes_for):
    """Set Z (and X Z); back: per modality member counts and indicator sums
    per cluster, and the known-pair votes of the modality pairs (0, m)."""
    _set_z(part, Zs)
    masses = [part.cluster_mass(m) for m in range(part.M)]
    votes = {m: part._votes(0, m, [part.pairs[(0, m)]]) for m in votes_for}
    return masses, votes


def _profiles(part, scales, sqzs):
    return [part.profiles(m, scales[m], sqzs[m]) for m in range(part.M)]


def _relabel(part, perms, moments):
    """Relabel clusters, rebuild Γ; back: the number of aligned rows and, with
    ``moments``, their code-fit moments (saves a round on small data)."""
    for m, perm in perms.items():
        part.permute(m, perm)
    part.build_gamma()
    return part.aligned()[0].size, (_code_moments(part, None) if moments else None)


def _aligned_rows(part, positions):
    rows = part.aligned()
    return rows if positions is None else [r[positions] for r in rows]


def _code_moments(part, positions):
    Ys = [H[r] for H, r in zip(part.H, _aligned_rows(part, positions))]
    return (sum(Y.shape[0] for Y in Ys), np.add.reduce([Y.sum(axis=0) for Y in Ys]),
            np.add.reduce([Y.T @ Y for Y in Ys]))


def _itq_project(part, mu, W, R, positions):
    """Keep ``U = sum_m (Y_m - mu) W`` on the partition for the rotation rounds."""
    rows = _aligned_rows(part, positions)
    part.itq_U = np.add.reduce([(H[r] - mu) @ W for H, r in zip(part.H, rows)])
    return _itq_cross(part, R)


def _itq_cross(part, R):
    U = part.itq_U
    return U.T @ np.where(U @ R > 0, 1.0, -1.0)


def _apply_code(part, code):
    part.itq_U = None
    part.apply_code(code, part.aligned())
    return part.objective_sums()


def _encoder_gram(part, m, anchors, sigma, rows):
    return F.encoder_gram(part.Xs[m][rows], part.H[m][rows], anchors, sigma)


def _result_train_codes(part, m):
    return pack_codes(part.code.signs(part.H[m]))


def _result_codes(part):
    return pack_codes(part.B)


def _gamma_sizes(part):
    return {key: g.shape[0] for key, g in part.gamma.items()}


def _result_gamma(part, key, offsets):
    return part.gamma[key] + np.asarray(offsets, dtype=np.int64)


# ----------------------------------------------------------------------
# Client side
# ----------------------------------------------------------------------
class _Cluster:
    """The partitions of one fit, each held by one worker, and the rounds run
    on them, with the bytes each round moves between client and workers."""

    # Seconds between checks that the partitions' workers are still there
    # while a round runs (a round pinned to a lost worker would wait forever).
    LIVENESS_PERIOD = 5.0
    # Common arguments larger than this are scattered once per round.
    SCATTER_BYTES = 256 * 1024
    # Fan-in of the tree that adds up summed results on the workers.
    SPLIT_EVERY = 8

    def __init__(self, client, fit_id, workers):
        self.client = client
        self.fit_id = fit_id
        self.workers = list(workers)
        self.bytes_sent = 0
        self.bytes_received = 0

    def submit(self, p, func, shared, own=()):
        return self.client.submit(_round, self.fit_id, p, func, shared, own, pure=False,
                                  workers=[self.workers[p]], allow_other_workers=False)

    def wait(self, futures):
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

    def _submit_all(self, func, args, per_part):
        """One task per partition; the common arguments go to the cluster once
        when they are large (e.g. centroids of wide sparse data)."""
        size = len(pickle.dumps((func, args), protocol=5))
        if size > self.SCATTER_BYTES and len(self.workers) > 1:
            shared = self.client.scatter(_Payload(args), hash=False)
            self.bytes_sent += size
        else:
            shared = args
            self.bytes_sent += size * len(self.workers)
        if per_part is not None:
            self.bytes_sent += sum(len(pickle.dumps(a, protocol=5)) for a in per_part)
        return [self.submit(p, func, shared, () if per_part is None else (per_part[p],))
                for p in range(len(self.workers))]

    def run(self, func, *args, per_part=None, combine=False):
        """``func(partition, *args[, per_part[p]])`` on every partition (which
        it may change).  Returns the list of results in partition order, or
        with ``combine`` their element-wise sum, added up on the workers by a
        tree of fan-in ``SPLIT_EVERY`` so that the client receives one result
        whatever the number of partitions."""
        futures = self._submit_all(func, args, per_part)
        if combine:
            while len(futures) > self.SPLIT_EVERY:
                futures = [self.client.submit(_add, *futures[i:i + self.SPLIT_EVERY],
                                              pure=False)
                           for i in range(0, len(futures), self.SPLIT_EVERY)]
        self.wait(futures)
        out = self.client.gather(futures)
        self.bytes_received += len(pickle.dumps(out, protocol=5))
        return _add(*out) if combine else out

    def lazy(self, func, *args, shape, dtype, per_part=None):
        """Dask array of the blocks ``func(partition, *args)``, computed now and
        kept on the partitions' workers."""
        futures = self._submit_all(func, args, per_part)
        self.wait(futures)
        return da.concatenate([da.from_delayed(f, shape=shape(p), dtype=dtype)
                               for p, f in enumerate(futures)], axis=0)

    def release(self):
        """Drop the fit's partitions from every worker (also those loaded by a
        load that failed half-way)."""
        self.client.run(_drop_fit, self.fit_id)
        self.workers = []


def _split_rows(rows, offsets):
    """Sorted global rows -> per-partition local rows (partition p holds
    global rows ``offsets[p]:offsets[p+1]``)."""
    cut = np.searchsorted(rows, offsets)
    return [rows[cut[p]:cut[p + 1]] - offsets[p] for p in range(len(offsets) - 1)]


def _check_modalities(modalities, align_rows):
    if not isinstance(modalities, (list, tuple)):
        raise TypeError(
            "'modalities' must be a list of dask arrays, one per modality. Got "
            f"{_describe(modalities)} of type {type(modalities).__name__} instead.")
    if len(modalities) < 2:
        raise ValueError(
            f"'modalities' must hold at least 2 modalities. Got {len(modalities)} instead.")
    out = []
    for m, X in enumerate(modalities):
        name = f"modalities[{m}]"
        if not isinstance(X, da.Array):
            raise TypeError(
                f"'{name}' must be a dask.array.Array (row-partitioned); for data in "
                f"memory use flexcmh_fast.train. Got {_describe(X)} of type "
                f"{type(X).__name__} instead.")
        if X.ndim != 2:
            raise ValueError(f"'{name}' must be 2-D (n_samples, n_features). Got a dask "
                             f"array of shape {X.shape} instead.")
        if X.dtype.kind not in "biuf":
            raise TypeError(f"'{name}' must hold real numbers. Got dtype {X.dtype} instead.")
        if math.isnan(X.shape[1]):
            raise ValueError(f"'{name}' must have a known number of columns. Got shape "
                             f"{X.shape} instead.")
        out.append(X.rechunk({1: -1}) if X.numblocks[1] != 1 else X)
    if align_rows and len({X.shape[0] for X in out}) == 1 and \
            not any(math.isnan(c) for X in out for c in X.chunks[0]):
        # Row i of every modality is one object: give every modality the row
        # chunks of modality 0 so that objects stay within a partition.
        out = [out[0]] + [X.rechunk({0: out[0].chunks[0]}) for X in out[1:]]
    blocks = [X.numblocks[0] for X in out]
    if len(set(blocks)) != 1:
        raise ValueError(
            "'modalities' must have the same number of row blocks (partition p is "
            f"block p of every modality). Got {blocks} row blocks instead.")
    return out


def _check_threads(n_threads):
    """Like check_n_threads, but "all cores" (-1) is resolved on each worker."""
    if n_threads is None or (isinstance(n_threads, int) and n_threads == -1):
        return -1
    return check_n_threads(n_threads)


def _local_pairs(pairs, offsets, n_parts):
    """Known pairs per partition (local row numbers), order kept.  Raises if
    a pair joins rows of different partitions."""
    local = [{} for _ in range(n_parts)]
    for (m, m2), g in pairs.items():
        pa = np.searchsorted(offsets[m], g[:, 0], side="right") - 1
        pb = np.searchsorted(offsets[m2], g[:, 1], side="right") - 1
        bad = np.flatnonzero(pa != pb)
        if bad.size:
            i = bad[0]
            raise ValueError(
                f"'pairs' must join rows of the same partition (row block p of modality "
                f"{m} with row block p of modality {m2}); pair {tuple(g[i])} joins block "
                f"{pa[i]} with block {pb[i]} ({bad.size} such pairs). Rechunk the "
                "modalities so that paired rows share a block index.")
        for p in range(n_parts):
            sel = g[pa == p]
            local[p][(m, m2)] = np.ascontiguousarray(
                sel - np.array([offsets[m][p], offsets[m2][p]], dtype=np.int64))
    return local


def train(modalities, pairs=None, *, n_bits=32, random_state=None, client=None,
          n_threads=1, verbose=False, callback=None, **params):
    """Train FlexCMH on data partitioned across a Dask cluster.

    The samples stay on the workers; per iteration only per-cluster and
    ``d x k`` summaries travel between client and workers (their size does
    not depend on the number of samples).  Partition p is row block p of
    every modality; Eq. 2's inferred pairs (samples without a known
    partner, paired by rank inside matched clusters) are formed within a
    partition, the only difference from :func:`flexcmh_fast.train`.  With
    fully paired data, a single partition, or no sample left without a
    known partner, the result is that of :func:`flexcmh_fast.train` with the
    same ``random_state`` (up to floating-point summation order).  See
    ``docs/scaling_out.md``.

    Parameters
    ----------
    modalities : list of dask.array.Array
        One row-partitioned ``(n_m, d_m)`` array per modality (M >= 2), dense
        NumPy or scipy.sparse chunks (never densified), all with the same
        number of row blocks.  Block sizes may differ between modalities and
        may be unknown (they are measured on the workers).
    pairs : None, "all", ndarray of shape (P, 2), or dict
        Known correspondences in global row numbers, as for
        :func:`flexcmh_fast.train`.  Every pair must join rows of the same
        partition (row block p of both modalities); ``"all"`` rechunks the
        other modalities to the row chunks of modality 0 when the chunk sizes
        are known.
    n_bits : int in [1, 4096], default=32
        Code length.
    random_state : None, int or numpy.random.Generator
        Seed for every random choice (drawn on the client).
    client : distributed.Client, optional
        Cluster to use; default: the current client.
    n_threads : int, default=1
        Threads of each partition's kernels on its worker (``None`` or
        ``-1``: all cores of the worker).  Keep 1 when workers run one task
        per core.
    verbose : bool, default=False
        Progress bar with the objective.
    callback : callable, optional
        ``callback(iteration, state)`` after every iteration, ``state`` a
        dict with ``objective``, ``terms``, ``Z``, ``bytes_sent`` and
        ``bytes_received`` (pickled bytes of that iteration's messages to and
        results from the workers); returning ``True`` stops training.
    **params
        FlexCMH parameters as for :func:`flexcmh_fast.train`: ``n_clusters``,
        ``n_neighbors``, ``lam``, ``max_iter``, ``tol``, ``joint``,
        ``encoder``, ``n_anchors``, ``match_score``.  ``code_scheme`` must be
        ``"itq"`` and ``matching`` ``"clusters"`` (the defaults).

    Returns
    -------
    FlexCMHModel
        The hash functions are ordinary arrays (``encode``, ``save`` work as
        usual).  ``train_codes_``, ``codes_`` and ``correspondence_`` are
        dask arrays kept on the workers (global row numbers; feed
        ``train_codes_[m]`` to :class:`ShardedHammingIndex`).  ``save``
        computes them, which brings them to the client.

    Raises
    ------
    TypeError
        A modality is not a dask array, unknown parameters, bad ``client``.
    ValueError
        Different numbers of row blocks, pairs across partitions, invalid
        parameters (as for :func:`flexcmh_fast.train`), unsupported options.
        Bad values inside a block (NaN, inf) raise the ``ValueError`` of
        :func:`flexcmh_fast.train` when the block is loaded.
    """
    from .distributed import _resolve_client

    unknown = sorted(set(params) - set(_PARAMS))
    if unknown:
        raise TypeError(f"Unknown parameter(s) {unknown} for distributed FlexCMH training. "
                        f"Valid parameters: {sorted(_PARAMS)}.")
    params = {**_DEFAULTS, **params}
    Xs = _check_modalities(modalities, isinstance(pairs, str) and pairs == "all")
    n_bits = check_n_bits(n_bits)
    rng = check_random_state(random_state)
    threads = _check_threads(n_threads)
    verbose = check_bool(verbose, "verbose")
    if callback is not None and not callable(callback):
        raise TypeError(f"'callback' must be callable or None. Got {_describe(callback)} instead.")
    for name, kind, options in (("code_scheme", "itq", F.SCHEMES),
                                ("matching", "clusters", F.MATCHINGS)):
        if params[name] != kind and params[name] in options:
            raise ValueError(
                f"Distributed training supports {name}={kind!r} only. Got "
                f"{params[name]!r} instead; train with flexcmh_fast.train on a sample "
                "that fits one machine for the other options.")
    # Every parameter check that does not need the sample counts, before any
    # work is sent to the cluster (n_clusters <= n_m is checked once the
    # partitions report their sizes).
    F.check_params([math.inf] * len(Xs), *(params[name] for name in _PARAMS[:8]),
                   None, *(params[name] for name in _PARAMS[8:]))
    client = _resolve_client(client)
    fit = _DistributedFit(client, Xs, pairs, n_bits, rng, threads, verbose, callback,
                          params)
    try:
        return fit.run()
    finally:
        fit.release()


class _DistributedFit:
    """Algorithm 1 driven from the client (mirrors ``run_flexcmh``)."""

    def __init__(self, client, Xs, pairs, n_bits, rng, threads, verbose, callback, params):
        self.cl = _Cluster(client, uuid.uuid4().hex, [])
        # Inputs of load(), as given (validated by train).
        self.Xs, self.pairs_arg, self.threads, self.params = Xs, pairs, threads, params
        self.client = client
        self.rng = rng
        self.n_bits = n_bits
        self.verbose = verbose
        self.callback = callback
        self.M = len(Xs)
        self.n_features = [int(X.shape[1]) for X in Xs]

    def release(self):
        self.cl.release()

    def load(self):
        """Load the partitions on the workers; validate what needs the sample
        counts (n_clusters, pairs) and hand each partition its known pairs."""
        Xs, pairs, n_bits, threads, p = (self.Xs, self.pairs_arg, self.n_bits, self.threads,
                                         self.params)
        client = self.client
        # n_clusters is checked against the sample counts once they are known.
        k = check_int(p["n_clusters"], "n_clusters", 1)
        blocks = [X.to_delayed().ravel().tolist() for X in Xs]
        n_parts = len(blocks[0])
        load = [dask.delayed(_load_partition, pure=False)(
            self.cl.fit_id, q, [b[q] for b in blocks], k, p["n_neighbors"], p["lam"],
            p["joint"], p["match_score"], n_bits, threads) for q in range(n_parts)]
        loaded = client.gather(client.compute(load))
        self.cl.workers = [address for address, _ in loaded]
        sizes = np.array([n for _, n in loaded], dtype=np.int64).reshape(-1, self.M)
        self.n = [int(s) for s in sizes.sum(axis=0)]
        # The validated parameters, recorded in the model as fit_flexcmh does.
        self.fit_params = dict(zip(_PARAMS, F.check_params(
            self.n, *(p[name] for name in _PARAMS[:8]), None,
            *(p[name] for name in _PARAMS[8:]))))
        (self.k, self.ns, self.lam, self.max_iter, self.tol, _, self.joint, _,
         self.encoder, self.n_anchors, self.match_score) = self.fit_params.values()
        self.offsets = [np.concatenate([[0], np.cumsum(sizes[:, m])]).astype(np.int64)
                        for m in range(self.M)]
        self.sizes = sizes
        if isinstance(pairs, str) and pairs == "all" and len(set(self.n)) == 1 and \
                any(not np.array_equal(self.offsets[0], o) for o in self.offsets[1:]):
            raise ValueError(
                "pairs='all' needs the same row chunks in every modality (row i of every "
                "modality is one object); the modalities' row block sizes differ: "
                f"{[sizes[:, m].tolist() for m in range(self.M)]}.")
        self.pairs = normalize_pairs(pairs, self.n)
        local = _local_pairs(self.pairs, self.offsets, n_parts)
        self.fully_paired = F.is_fully_paired(self.pairs, self.n)
        self.cl.run(_set_pairs, self.fully_paired, per_part=local)
        self.cluster_matching = np.tile(np.arange(self.k, dtype=np.int64), (self.M, 1))
        self.code = None
        self.history = []
        # With at most _CODE_SAMPLE rows in modality 0 every code fit uses all
        # aligned rows, so their moments can come with the round that rebuilds
        # Γ (or sets Z) instead of a round of their own.
        self.all_rows_fit = self.n[0] <= F._CODE_SAMPLE
        self.moments = None

    # ---- helpers ---------------------------------------------------------
    def take_rows(self, m, rows):
        """Rows ``rows`` (sorted global) of modality m and their squared norms."""
        local = _split_rows(rows, self.offsets[m])
        got = self.cl.run(_take_rows, m, per_part=local)
        Xr = [x for x, _ in got]
        X = sp.vstack(Xr, format="csr") if sp.issparse(Xr[0]) else np.vstack(Xr)
        return X, np.concatenate([s for _, s in got])

    def solve_z(self, stats):
        return [F.z_from_stats(XtH, G) for XtH, G in stats]

    # ---- Eq. 3: k-means seeded SemiNMF ------------------------------------
    def init_semi_nmf(self):
        starts = [[] for _ in self.cl.workers]
        for m in range(self.M):
            sub = F.kmeans_subsample(self.n[m], self.rng)
            rows = np.arange(self.n[m]) if sub is None else sub
            Xr, sqx = self.take_rows(m, rows)
            assign, centres = F._kmeans(Xr, sqx, self.k, self.rng)
            for p, local in enumerate(_split_rows(np.arange(self.n[m]), self.offsets[m])):
                starts[p].append(("assign", assign[local + self.offsets[m][p]])
                                 if sub is None else ("centres", centres))
        Z = self.solve_z(self.cl.run(_init_indicators, per_part=starts, combine=True))
        for _ in range(F._INIT_ITERS):
            Z = self.solve_z(self.cl.run(_semi_nmf_sweep, Z, combine=True))
        self.Z = Z

    # ---- Eq. 1-2: cluster matching and Γ -----------------------------------
    def match_and_pair(self, use_scores, rematch):
        """Set Z on the partitions, (re)match the clusters, rebuild Γ."""
        votes_for = [m for m in range(1, self.M) if (0, m) in self.pairs]
        masses, votes = self.cl.run(_cluster_summaries, self.Z, votes_for, combine=True)
        counts = [c for c, _ in masses]
        mass = [w for _, w in masses]
        if use_scores:
            scales = [F.profile_scale(counts[m], mass[m]) for m in range(self.M)]
            sqzs = [F.scaled_sq_norms(self.Z[m], scales[m]) for m in range(self.M)]
            got = self.cl.run(_profiles, scales, sqzs)
            profs = []
            for m in range(self.M):
                # Top-ns lists merge exactly: the ns smallest of the union.
                merged = np.concatenate([g[m][0] for g in got], axis=1)
                merged.sort(axis=1)
                profs.append((np.ascontiguousarray(merged[:, :self.ns]),
                              np.add.reduce([g[m][1] for g in got])))
        perms = {}
        for m in range(1, self.M):
            scores = []
            if use_scores:
                scores.append(K.match_scores(profs[0][0], profs[0][1], sqzs[0],
                                             profs[m][0], profs[m][1], sqzs[m]))
                if F.uses_size_score(self.match_score, self.pairs, m):
                    scores.append(F.size_scores(counts[0], counts[m]))
            perm = F.choose_matching(F.matching_cost(scores, votes.get(m), self.k), rematch)
            if perm is not None:
                perms[m] = perm
                self.Z[m] = np.ascontiguousarray(self.Z[m][:, perm])
                self.cluster_matching[m] = self.cluster_matching[m][perm]
        out = self.cl.run(_relabel, perms, self.all_rows_fit)
        self.aligned_counts = [count for count, _ in out]
        self.moments = _add(*(m for _, m in out)) if self.all_rows_fit else None

    # ---- Eq. 5, 10-11: codes -------------------------------------------------
    def update_codes(self, n_iter, final=False):
        counts = np.asarray(self.aligned_counts, dtype=np.int64)
        total = int(counts.sum())
        if total == 0:
            raise ValueError(F.NO_CORRESPONDENCE)
        positions = [None] * len(counts)
        if not final and total > F._CODE_SAMPLE:
            pick = np.sort(self.rng.choice(total, F._CODE_SAMPLE, replace=False))
            positions = _split_rows(pick, np.concatenate([[0], np.cumsum(counts)]))
        if self.moments is not None:
            n_rows, sum_y, scatter = self.moments  # every aligned row, as needed here
        else:
            n_rows, sum_y, scatter = self.cl.run(_code_moments, per_part=positions,
                                                 combine=True)
        first = [True]

        def rotation_stats(mu, W, R):
            if first[0]:
                first[0] = False
                return self.cl.run(_itq_project, mu, W, R, per_part=positions,
                                   combine=True)
            return self.cl.run(_itq_cross, R, combine=True)

        self.code = ITQCode.fit_from_moments(
            int(n_rows), sum_y, scatter, self.n_bits, self.rng, rotation_stats,
            n_iter=n_iter, previous=self.code)
        Lc, Ls, Lq = self.cl.run(_apply_code, self.code, combine=True)
        return float(Lc), max(float(Ls), 0.0), float(Lq)

    # ---- kernel encoder ----------------------------------------------------
    def kernel_encoder(self, m):
        cand = F._known_rows(self.pairs, m, self.k)
        n = self.n[m] if cand is None else cand.size
        anchor_pos, probe_pos, fit_pos = F.encoder_sample(n, self.n_anchors, self.rng)

        def rows(pos):
            return pos if cand is None else cand[pos]

        anchors = self.take_rows(m, rows(anchor_pos))[0]
        anchors = np.ascontiguousarray(anchors.toarray() if sp.issparse(anchors) else anchors)
        sigma = F.encoder_width(self.take_rows(m, rows(probe_pos))[0], anchors)
        fit = (np.arange(n) if fit_pos is None else fit_pos)
        G, R = self.cl.run(_encoder_gram, m, anchors, sigma, combine=True,
                           per_part=_split_rows(rows(fit), self.offsets[m]))
        weights = F.encoder_weights(G, R)
        return anchors, sigma, weights

    # ---- Algorithm 1 ---------------------------------------------------------
    def iteration_traffic(self):
        sent, received = self.cl.bytes_sent, self.cl.bytes_received
        self.cl.bytes_sent = self.cl.bytes_received = 0
        return sent, received

    def run(self):
        self.load()
        self.init_semi_nmf()
        self.match_and_pair(not self.fully_paired, False)
        terms = self.update_codes(F._CODE_ITERS_LOOP)
        self.iteration_traffic()
        rematch = self.joint and not self.fully_paired
        bar = ProgressBar(self.max_iter, "FlexCMH (Dask)", self.verbose)
        prev = sum(terms)
        n_iter = 0
        for it in range(self.max_iter):
            self.Z = self.solve_z(self.cl.run(_update_h, combine=True))
            self.moments = None  # H changed
            if rematch:
                self.match_and_pair(True, True)
            else:
                out = self.cl.run(_set_z, self.Z, self.all_rows_fit)
                self.moments = _add(*out) if self.all_rows_fit else None
            terms = self.update_codes(F._CODE_ITERS_LOOP)
            total = sum(terms)
            self.history.append(terms)
            sent, received = self.iteration_traffic()
            n_iter = it + 1
            bar.update(1, info=f"objective {total:.6g}")
            stop = False
            if self.callback is not None:
                stop = bool(self.callback(it, {
                    "objective": total, "terms": terms, "Z": self.Z,
                    "bytes_sent": sent, "bytes_received": received}))
            if stop or abs(prev - total) <= self.tol * abs(prev):
                break
            prev = total
        self.update_codes(F._CODE_ITERS_FINAL, final=True)
        bar.close()
        kernel_enc = None
        if self.encoder == "kernel":
            kernel_enc = [self.kernel_encoder(m) for m in range(self.M)]
        return self.model(n_iter, kernel_enc)

    def model(self, n_iter, kernel_enc):
        cl, width = self.cl, n_bytes_for(self.n_bits)
        counts = self.aligned_counts
        train_codes = [cl.lazy(_result_train_codes, m, dtype=np.uint8,
                               shape=lambda p, m=m: (int(self.sizes[p, m]), width))
                       for m in range(self.M)]
        codes = cl.lazy(_result_codes, dtype=np.uint8,
                        shape=lambda p: (int(counts[p]), width))
        gamma_sizes = cl.run(_gamma_sizes)
        correspondence = {}
        for key in gamma_sizes[0] if gamma_sizes else {}:
            m, m2 = key
            offs = [(int(self.offsets[m][p]), int(self.offsets[m2][p]))
                    for p in range(len(cl.workers))]
            correspondence[key] = cl.lazy(
                _result_gamma, key, dtype=np.int64, per_part=offs,
                shape=lambda p, key=key: (int(gamma_sizes[p][key]), 2))
        return F.FlexCMHModel(
            Zs=self.Z, code=self.code, n_bits=self.n_bits, n_features=self.n_features,
            history=np.array(self.history, dtype=np.float64).reshape(-1, 3),
            codes=codes, train_codes=train_codes, cluster_matching=self.cluster_matching,
            correspondence=correspondence, n_iter=n_iter, kernel_encoder=kernel_enc,
            params=self.fit_params)
