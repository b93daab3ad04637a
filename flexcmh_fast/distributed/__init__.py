"""Scale-out on a Dask cluster: distributed training, encoding and sharded
exact search.

This module needs the optional ``dask`` extra
(``pip install "flexcmh_fast[dask]"``: ``dask[array]`` and ``distributed``);
the rest of the package never imports Dask.

* :func:`encode` hashes a row-partitioned :class:`dask.array.Array` (dense
  NumPy or scipy.sparse chunks) block by block on the workers and returns a
  lazy dask array of codes: nothing is gathered on the client.
* :class:`ShardedHammingIndex` builds one :class:`~flexcmh_fast.HammingIndex`
  per partition of a dask array of packed codes.  The shard indexes live on
  the workers for the lifetime of the object; every query batch runs on all
  shards in parallel and the per-shard results are merged by a tree
  reduction on the workers.  Results are identical to a single
  ``HammingIndex`` over the concatenated codes (same distances, same global
  ids, ties broken by the smaller global id).

* :func:`train` fits FlexCMH on row-partitioned dask arrays: the samples
  stay on the workers and every iteration exchanges only per-cluster and
  ``d x k`` summaries with the client (module docstring of
  ``flexcmh_fast._distributed_train`` and ``docs/scaling_out.md``).
"""
import math

import numpy as np

try:
    import dask
    import dask.array as da
    from dask.sizeof import sizeof
    import distributed  # noqa: F401 (the clear error below when it is missing)
except ImportError as exc:
    raise ImportError(
        "flexcmh_fast.distributed needs Dask. Install the optional extra: "
        "pip install 'flexcmh_fast[dask]' (dask[array] and distributed)."
    ) from exc

from .._base import HashingEstimator
from .._codes import check_codes, n_bytes_for
from .._index import HammingIndex
from .._validation import _describe, check_bool, check_int, check_n_bits, check_n_threads
from ._client import resolve_client as _resolve_client

__all__ = ["train", "encode", "ShardedHammingIndex"]


def __getattr__(name):
    # The trainer pulls in Numba and the FlexCMH kernels (about 0.2 s); encoding
    # and search (and every worker that only runs them) do without.
    if name == "train":
        from ._train import train
        return train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

# Merges compare (distance, global id) pairs as one uint64 key: distance
# (<= 4096, 13 bits) in the high bits, id in the low _ID_BITS bits.
_ID_BITS = 51
_ID_MASK = np.uint64((1 << _ID_BITS) - 1)


# ----------------------------------------------------------------------
# Distributed encoding
# ----------------------------------------------------------------------
def _encode_block(block, model, modality, packed):
    return model.encode(block, modality, packed=packed)


def encode(model, X, modality, packed=True):
    """Hash a row-partitioned dask array block by block on the workers.

    Parameters
    ----------
    model : HashingEstimator
        A trained model (e.g. from :func:`flexcmh_fast.train`).  It is put in
        the task graph once and shipped to each worker that needs it.
    X : dask.array.Array of shape (n_samples, n_features)
        Samples of modality ``modality``.  Chunks may be dense NumPy arrays
        or scipy.sparse matrices (sparse chunks are never densified); chunk
        sizes along the rows may be unknown.  Several column chunks are
        joined first (each task needs whole rows).
    modality : int
        Index of the modality ``X`` belongs to (order of ``train``).
    packed : bool, default=True
        ``True``: packed uint8 codes (n_samples, ceil(n_bits / 8)).
        ``False``: ±1 int8 codes (n_samples, n_bits).

    Returns
    -------
    dask.array.Array
        Lazy codes with the row chunks of ``X``; block ``i`` equals
        ``model.encode(X.blocks[i], modality, packed)``.  Nothing is computed
        until you call ``.compute()``, ``.persist()`` or build a
        :class:`ShardedHammingIndex` from it.

    Raises
    ------
    TypeError
        ``model`` is not a trained model, ``X`` is not a dask array or not
        numeric.
    ValueError
        ``X`` is not 2-D, has the wrong number of features or ``modality``
        is out of range.  Bad values inside a block (NaN, inf) raise the same
        ``ValueError`` as ``model.encode`` when the block is computed.
    """
    if not isinstance(model, HashingEstimator):
        raise TypeError(
            "'model' must be a trained flexcmh_fast model (e.g. from "
            f"flexcmh_fast.train). Got an object of type {type(model).__name__} instead."
        )
    model._check_fitted()
    modality = check_int(modality, "modality", 0, model.n_modalities_ - 1)
    packed = check_bool(packed, "packed")
    if not isinstance(X, da.Array):
        raise TypeError(
            "'X' must be a dask.array.Array (row-partitioned); for data in memory "
            f"call model.encode(X, modality). Got {_describe(X)} of type "
            f"{type(X).__name__} instead."
        )
    if X.ndim != 2:
        raise ValueError(
            f"'X' must be 2-D (n_samples, n_features). Got a dask array of shape "
            f"{X.shape} instead."
        )
    if X.dtype.kind not in "biuf":
        raise TypeError(f"'X' must hold real numbers. Got dtype {X.dtype} instead.")
    n_features = model.n_features_[modality]
    if not math.isnan(X.shape[1]) and X.shape[1] != n_features:
        raise ValueError(
            f"'X' must have {n_features} features (columns), as in training. "
            f"Got shape {X.shape} instead."
        )
    if X.numblocks[1] != 1:
        X = X.rechunk({1: -1})
    width = n_bytes_for(model.n_bits_) if packed else model.n_bits_
    dtype = np.dtype(np.uint8 if packed else np.int8)
    # One graph node holds the model, so it is serialised once, not per block.
    model_node = dask.delayed(model, pure=True)
    return X.map_blocks(
        _encode_block, model_node, modality, packed,
        dtype=dtype, chunks=(X.chunks[0], (width,)),
        meta=np.empty((0, width), dtype=dtype),
        token="flexcmh-encode",
    )


# ----------------------------------------------------------------------
# Work done on the workers for ShardedHammingIndex
# ----------------------------------------------------------------------
@sizeof.register(HammingIndex)
def _sizeof_index(index):
    # Dask's default for unknown objects is sys.getsizeof (a few bytes), which
    # would make the scheduler think shards are free to move and the worker
    # memory manager blind to them.  Registered here, this also runs on the
    # workers: they import this module to run _build_shard.
    return len(index) * 8 * (-(-index.n_bits // 64)) + index.mih_nbytes


def _build_shard(block, n_bits, n_threads, method):
    return HammingIndex(np.ascontiguousarray(block), n_bits=n_bits, method=method,
                        n_threads=n_threads)


def _shard_search(index, queries, k, offset):
    # The shard caps k at its size: its results have no padding to skip.
    dist, ids = index.search(queries, k)
    return dist, ids + offset


def _shard_range(index, queries, radius, offset):
    lims, dist, ids = index.range_search(queries, radius)
    return lims, dist, ids + offset


def _shard_histogram(index, queries):
    return index.distance_histogram(queries)


def _keys(dist, ids):
    return (dist.astype(np.uint64) << np.uint64(_ID_BITS)) | ids.astype(np.uint64)


def _merge_topk(k, *parts):
    """Keep the k smallest (distance, id) of each row of the concatenated parts."""
    keys = np.concatenate([_keys(d, i) for d, i in parts], axis=1)
    if keys.shape[1] > k:
        keys = np.partition(keys, k - 1, axis=1)[:, :k]
    keys.sort(axis=1)
    return ((keys >> np.uint64(_ID_BITS)).astype(np.int32),
            (keys & _ID_MASK).astype(np.int64))


def _merge_range(*parts):
    """Concatenate range results of several shards, each query sorted by (distance, id)."""
    counts = [np.diff(lims) for lims, _, _ in parts]
    n_queries = counts[0].size
    rows = np.concatenate([np.repeat(np.arange(n_queries), c) for c in counts])
    keys = np.concatenate([_keys(d, i) for _, d, i in parts])
    order = np.lexsort((keys, rows))
    lims = np.zeros(n_queries + 1, dtype=np.int64)
    np.cumsum(np.sum(counts, axis=0), out=lims[1:])
    keys = keys[order]
    return (lims, (keys >> np.uint64(_ID_BITS)).astype(np.int32),
            (keys & _ID_MASK).astype(np.int64))


def _sum(*parts):
    return np.sum(parts, axis=0)


# ----------------------------------------------------------------------
# Sharded index
# ----------------------------------------------------------------------
class ShardedHammingIndex:
    """Exact Hamming search over codes partitioned across a Dask cluster.

    One :class:`~flexcmh_fast.HammingIndex` is built per row block of
    ``codes`` on the worker that computed the block, and stays there (held
    by futures) until this object is deleted.  Queries are sent to every
    shard, searched in parallel, and the per-shard results are merged on the
    workers by a tree reduction (fan-in ``split_every``); only the final
    result comes back to the client.

    Parameters
    ----------
    codes : dask.array.Array of uint8, shape (n_codes, ceil(n_bits / 8))
        Packed codes (padding bits zero), row-partitioned, e.g. the output of
        :func:`encode`.  Each row block becomes one shard; block sizes may be
        unknown (they are measured on the workers).  Code ``i`` of the whole
        array gets global id ``i``.
    n_bits : int in [1, 4096]
        Code length in bits.
    method : {"auto", "linear", "mih"}, default="auto"
        Search algorithm of every shard (see :class:`~flexcmh_fast.HammingIndex`);
        with hashing, each shard builds its tables at its first query.
    client : distributed.Client, optional
        Cluster to use; default: the current client (``get_client()``).
    n_threads : int, default=1
        Threads of each shard search.  The default suits workers that run
        one task per core (``threads_per_worker`` = 1 or several shards per
        worker); raise it when workers have fewer task threads than cores.
        ``None`` or ``-1``: all cores of the worker.
    split_every : int >= 2, default=8
        Fan-in of the merge tree.

    Attributes
    ----------
    n_bits : int
    n_shards : int
        Number of non-empty shards.
    shard_sizes : tuple of int
        Codes in each shard, in global id order.

    Notes
    -----
    Memory: a shard holds its codes once (``n * 8 * ceil(n_bits / 64)``
    bytes; about 3x that at the peak of its build); a query batch adds
    ``n_queries * min(k, n) * 12`` bytes per shard result.  See
    ``docs/scaling_out.md``.  Global ids must be below 2**51.

    Examples
    --------
    >>> from distributed import Client, LocalCluster          # doctest: +SKIP
    >>> client = Client(LocalCluster(n_workers=2))            # doctest: +SKIP
    >>> codes = flexcmh_fast.distributed.encode(model, X_dask, modality=1)  # doctest: +SKIP
    >>> index = ShardedHammingIndex(codes, n_bits=model.n_bits)            # doctest: +SKIP
    >>> dist, ids = index.search(query_codes, k=100)                       # doctest: +SKIP
    """

    def __init__(self, codes, n_bits, *, method="auto", client=None, n_threads=1,
                 split_every=8):
        self._n_bits = check_n_bits(n_bits)
        check_n_threads(n_threads)
        # Validated here, on the client, rather than in every shard build.
        HammingIndex(n_bits=self._n_bits, method=method)
        self._split_every = check_int(split_every, "split_every", low=2)
        width = n_bytes_for(self._n_bits)
        if not isinstance(codes, da.Array):
            raise TypeError(
                "'codes' must be a dask.array.Array of packed uint8 codes, shape "
                f"(n, {width}); for codes in memory use flexcmh_fast.HammingIndex. "
                f"Got {_describe(codes)} of type {type(codes).__name__} instead."
            )
        if codes.dtype != np.uint8:
            raise TypeError(
                f"'codes' must have dtype uint8 (packed codes). Got dtype {codes.dtype} instead."
            )
        if codes.ndim != 2 or codes.shape[1] != width:
            raise ValueError(
                f"'codes' must be 2-D with {width} bytes per code for n_bits={self._n_bits}. "
                f"Got shape {codes.shape} instead."
            )
        self._client = _resolve_client(client)
        if codes.numblocks[1] != 1:
            codes = codes.rechunk({1: -1})
        blocks = codes.to_delayed().ravel().tolist()
        # pure=False: fresh keys, so a new index never shares (or races with the
        # release of) the shard futures of an earlier index over the same codes.
        build = [dask.delayed(_build_shard, pure=False)(b, self._n_bits, n_threads, method)
                 for b in blocks]
        shards = self._client.compute(build)
        sizes = self._client.gather(self._client.map(len, shards, pure=False))
        # Empty shards would only add tasks; drop them (their futures are released).
        kept = [(s, n) for s, n in zip(shards, sizes) if n > 0]
        self._shards = [s for s, _ in kept]
        self._sizes = tuple(int(n) for _, n in kept)
        self._offsets = np.concatenate([[0], np.cumsum(self._sizes, dtype=np.int64)])
        self._n = int(self._offsets[-1])
        if self._n >= 1 << _ID_BITS:
            raise ValueError(
                f"'codes' has {self._n} rows; ShardedHammingIndex supports fewer than "
                f"2**{_ID_BITS}."
            )

    @property
    def n_bits(self):
        """Code length in bits."""
        return self._n_bits

    @property
    def n_shards(self):
        """Number of (non-empty) shards."""
        return len(self._shards)

    @property
    def shard_sizes(self):
        """Codes per shard, in global id order."""
        return self._sizes

    def __len__(self):
        return self._n

    def __repr__(self):
        return (f"ShardedHammingIndex(n_codes={self._n}, n_bits={self._n_bits}, "
                f"n_shards={self.n_shards})")

    # ------------------------------------------------------------------
    def _check_queries(self, queries):
        if isinstance(queries, da.Array):
            queries = queries.compute()
        return check_codes(queries, "queries", self._n_bits)

    def _run(self, shard_func, queries, shard_args, merge_func, merge_args=()):
        """Run ``shard_func(shard_i, queries, *shard_args[i])`` on every shard,
        tree-merge with ``merge_func(*merge_args, *parts)``, gather the result."""
        client = self._client
        # Broadcast once: every shard task reads the queries from its own worker.
        # hash=False: a content-hashed key would be shared with the previous
        # identical batch, whose release may still be in flight (lost key).
        q = client.scatter(queries, broadcast=True, hash=False)
        # Pin each shard task to a worker holding the shard: otherwise the
        # scheduler may balance load by copying a whole shard to another
        # worker (and keep both copies).  Looked up per batch because a shard
        # lost with its worker is recomputed elsewhere; while it is being
        # recomputed it has no holder and the task is left unrestricted.
        holders = client.who_has(self._shards)
        parts = [client.submit(shard_func, shard, q, *args,
                               workers=list(holders.get(shard.key, ())) or None,
                               allow_other_workers=False)
                 for shard, args in zip(self._shards, shard_args)]
        while len(parts) > 1:
            parts = [client.submit(merge_func, *merge_args, *parts[i:i + self._split_every])
                     for i in range(0, len(parts), self._split_every)]
        return client.gather(parts[0])

    def search(self, queries, k):
        """Exact k nearest codes of every query over all shards.

        Parameters
        ----------
        queries : ndarray of uint8, shape (n_queries, ceil(n_bits / 8))
            C-contiguous packed codes with zero padding bits (0 rows
            allowed).  A dask array is computed first.
        k : int >= 1
            Neighbours per query.  Results have ``min(k, len(self))``
            columns, as with :meth:`HammingIndex.search`.

        Returns
        -------
        distances : ndarray of int32, shape (n_queries, min(k, len(self)))
        ids : ndarray of int64, shape (n_queries, min(k, len(self)))
            Global ids; each row sorted by distance, ties by smaller id.
        """
        k = min(check_int(k, "k", low=1), self._n)
        queries = self._check_queries(queries)
        n_q = queries.shape[0]
        if k == 0 or n_q == 0:
            return np.empty((n_q, k), dtype=np.int32), np.empty((n_q, k), dtype=np.int64)
        per_shard = [(k, int(off)) for off in self._offsets[:-1]]
        return self._run(_shard_search, queries, per_shard, _merge_topk, (k,))

    def range_search(self, queries, radius):
        """All codes within Hamming distance ``radius`` of each query, over all shards.

        Parameters
        ----------
        queries : ndarray of uint8, shape (n_queries, ceil(n_bits / 8))
            A dask array is computed first.
        radius : int >= 0
            Inclusive.

        Returns
        -------
        lims : ndarray of int64, shape (n_queries + 1,)
            Results of query ``j`` are ``distances[lims[j]:lims[j+1]]`` and
            ``ids[lims[j]:lims[j+1]]``.
        distances : ndarray of int32, shape (lims[-1],)
        ids : ndarray of int64, shape (lims[-1],)
            Global ids; each query's results sorted by distance, ties by id.
        """
        radius = check_int(radius, "radius", low=0)
        queries = self._check_queries(queries)
        n_q = queries.shape[0]
        if self._n == 0 or n_q == 0:
            return (np.zeros(n_q + 1, dtype=np.int64), np.zeros(0, dtype=np.int32),
                    np.zeros(0, dtype=np.int64))
        per_shard = [(radius, int(off)) for off in self._offsets[:-1]]
        lims, dist, ids = self._run(_shard_range, queries, per_shard, _merge_range)
        return lims, dist, ids

    def distance_histogram(self, queries):
        """Number of codes at each distance from each query, over all shards.

        Parameters
        ----------
        queries : ndarray of uint8, shape (n_queries, ceil(n_bits / 8))
            A dask array is computed first.

        Returns
        -------
        ndarray of int64, shape (n_queries, n_bits + 1)
            Every row sums to ``len(self)``.
        """
        queries = self._check_queries(queries)
        n_q = queries.shape[0]
        if self._n == 0 or n_q == 0:
            return np.zeros((n_q, self._n_bits + 1), dtype=np.int64)
        return self._run(_shard_histogram, queries, [()] * self.n_shards, _sum)
