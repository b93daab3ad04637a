"""FlexCMH training on a Dask cluster (:func:`flexcmh_fast.distributed.train`):
the estimator's settings, the Dask backend, the common Algorithm 1."""
import math
import uuid

import dask.array as da
import numpy as np

from .._dask import resolve_client
from .._validation import (
    _describe,
    check_modalities,
    check_parameter_names,
    check_random_state,
    normalize_pairs,
)
from ..flexcmh import FlexCMH
from ..flexcmh import _tuning as T
from ..flexcmh._algorithm import FlexCMHFit
from ._backend import DaskBackend


def _check_dask_matrix(X, name):
    """One modality: a 2-D dask array of real numbers with known columns,
    in one column block (the values are checked on the workers)."""
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
    return X.rechunk({1: -1}) if X.numblocks[1] != 1 else X


def check_dask_modalities(modalities, align_rows):
    """The modalities as dask arrays with the same number of row blocks
    (``align_rows``: rechunked to the row chunks of modality 0 when row i of
    every modality is one object)."""
    out = check_modalities(modalities, _check_dask_matrix, expected="dask arrays")
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



def train(modalities, pairs=None, *, client=None, **params):
    """Train FlexCMH on data partitioned across a Dask cluster.

    The samples stay on the workers; per iteration only per-cluster and
    ``d x k`` summaries travel between client and workers (their size does
    not depend on the number of samples).  Partition p is row block p of
    every modality.  The algorithm is the one :meth:`flexcmh_fast.FlexCMH.fit`
    runs (one in-process partition there); the one difference: Eq. 2's
    inferred pairs (samples without a known partner, paired by rank inside
    matched clusters) are formed within a partition.  With fully paired
    data, a single partition, or no sample left without a known partner,
    the result is that of :func:`flexcmh_fast.train` with the same settings
    (up to floating-point summation order).  See ``docs/scaling_out.md``.

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
    client : distributed.Client, optional
        Cluster to use; default: the current client.
    **params
        Settings of :class:`flexcmh_fast.FlexCMH` (the same table, defaults
        and checks).  ``n_threads``: threads of each partition's kernels on
        its worker (None / -1: the worker's thread count).  ``code_scheme``
        must be ``"itq"`` and ``matching`` ``"clusters"`` (the defaults).
        ``random_state``: every draw is made on the client.

    Returns
    -------
    FlexCMH
        Fitted.  The hash functions are ordinary arrays (``encode``, ``save``
        work as usual).  ``train_codes_``, ``codes_`` and ``correspondence_``
        are dask arrays kept on the workers (global row numbers; feed
        ``train_codes_[m]`` to :class:`ShardedHammingIndex`).  ``save``
        computes them, which brings them to the client.

    Raises
    ------
    TypeError
        A modality is not a dask array, unknown parameters, bad ``client``.
    ValueError
        Different numbers of row blocks, pairs across partitions, invalid
        settings (as for :class:`flexcmh_fast.FlexCMH`), unsupported options.
        Bad values inside a block (NaN, inf) raise the ``ValueError`` of
        :func:`flexcmh_fast.train` when the block is loaded.  A checkpoint
        of other data or settings with ``resume=True``.
    RuntimeError
        Workers holding partitions left the cluster and no worker is left to
        load them again (after waiting ``WORKER_WAIT`` seconds, 60, for one
        to join), or a lost partition cannot be loaded again (its source
        blocks cannot be computed again, or its loads keep failing); the
        message names the lost workers and the partitions.
    flexcmh_fast.FileFormatError
        ``resume=True`` and the ``checkpoint`` file is damaged or not a
        checkpoint.

    Warns
    -----
    RuntimeWarning
        Partitions lost with their worker were loaded again and rebuilt,
        and the fit continued (also printed with ``verbose=True``): which
        partitions, which workers, and where in the fit.  Its codes then
        differ from an undisturbed fit's, and a weakly paired fit far from
        converging can stop early (measured in ``docs/scaling_out.md``,
        "Fault tolerance").
    """
    check_parameter_names(params, FlexCMH._parameters, "distributed FlexCMH training")
    est = FlexCMH(**params)
    p = est._validated_params()
    if p["n_clusters"] is None:  # the sample counts are known only on the workers
        p["n_clusters"] = T.DEFAULT_CLUSTERS
    for name, only in (("code_scheme", "itq"), ("matching", "clusters")):
        if p[name] != only:
            raise ValueError(
                f"Distributed training supports {name}={only!r} only. Got {p[name]!r} "
                "instead; train with flexcmh_fast.train on a sample that fits one machine "
                "for the other options.")
    Xs = check_dask_modalities(modalities, isinstance(pairs, str) and pairs == "all")
    rng = check_random_state(p["random_state"])
    client = resolve_client(client)
    backend = DaskBackend(client, uuid.uuid4().hex, verbose=p["verbose"])
    try:
        backend.load(Xs, p["n_clusters"], p["n_neighbors"], p["lam"], p["n_threads"])
        sizes = backend.sizes
        n = [int(s) for s in sizes.sum(axis=0)]
        if isinstance(pairs, str) and pairs == "all" and len(set(n)) == 1 and \
                any(not np.array_equal(sizes[:, 0], sizes[:, m]) for m in range(1, len(n))):
            raise ValueError(
                "pairs='all' needs the same row chunks in every modality (row i of every "
                "modality is one object); the modalities' row block sizes differ: "
                f"{[sizes[:, m].tolist() for m in range(len(n))]}.")
        fitted = FlexCMHFit(backend, normalize_pairs(pairs, n), p, rng,
                            desc="FlexCMH (Dask)").run()
    finally:
        backend.release()
    est._set_fitted(fitted)
    est.n_bits_ = p["n_bits"]
    est.n_features_ = [int(X.shape[1]) for X in Xs]
    return est
