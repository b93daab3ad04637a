"""Exact Hamming search over codes partitioned across a Dask cluster.

:class:`ShardedHammingIndex` keeps one :class:`HammingIndex` per row block
of a dask array on the workers; the merges of the per-shard results (plain
NumPy, run on the workers) are here, the tasks that touch Dask in
:mod:`._shard_tasks`, imported at the first construction so this module and
the search package import without Dask.
"""
import numpy as np

from .._dask import require_dask, resolve_client
from .._validation import _describe, check_int, check_n_bits, check_n_threads
from ._index import HammingIndex
from ._layout import KEY_ID_BITS, code_bytes, merge_keys, split_keys
from ._packing import check_codes


def _dask_tasks():
    require_dask("ShardedHammingIndex")
    from . import _shard_tasks

    return _shard_tasks


def merge_topk(k, *parts):
    """Keep the k smallest (distance, id) of each row of the concatenated parts."""
    keys = np.concatenate([merge_keys(d, i) for d, i in parts], axis=1)
    if keys.shape[1] > k:
        keys = np.partition(keys, k - 1, axis=1)[:, :k]
    keys.sort(axis=1)
    return split_keys(keys)


def merge_range(*parts):
    """Concatenate range results of several shards, each query sorted by (distance, id)."""
    counts = [np.diff(lims) for lims, _, _ in parts]
    n_queries = counts[0].size
    rows = np.concatenate([np.repeat(np.arange(n_queries), c) for c in counts])
    keys = np.concatenate([merge_keys(d, i) for _, d, i in parts])
    order = np.lexsort((keys, rows))
    lims = np.zeros(n_queries + 1, dtype=np.int64)
    np.cumsum(np.sum(counts, axis=0), out=lims[1:])
    return (lims, *split_keys(keys[order]))


def sum_parts(*parts):
    return np.sum(parts, axis=0)


class ShardedHammingIndex:
    """Exact Hamming search over codes partitioned across a Dask cluster.

    One :class:`~flexcmh_fast.HammingIndex` is built per row block of
    ``codes`` on the worker that computed the block, and stays there (held
    by futures) until this object is deleted.  Queries are sent to every
    shard, searched in parallel, and the per-shard results are merged on the
    workers by a tree reduction (fan-in ``split_every``); only the final
    result comes back to the client.  Needs the optional ``dask`` extra
    (``pip install "flexcmh_fast[dask]"``).

    Parameters
    ----------
    codes : dask.array.Array of uint8, shape (n_codes, ceil(n_bits / 8))
        Packed codes (padding bits zero), row-partitioned, e.g. the output of
        :func:`flexcmh_fast.distributed.encode`.  Each row block becomes one
        shard; block sizes may be unknown (they are measured on the workers).
        Code ``i`` of the whole array gets global id ``i``.
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

    Raises
    ------
    ImportError
        Dask is not installed.

    Notes
    -----
    Results are identical to a single ``HammingIndex`` over the
    concatenated codes (same distances, same global ids, ties broken by the
    smaller global id).  Memory: a shard holds its codes once
    (``n * 8 * ceil(n_bits / 64)`` bytes; about 3x that at the peak of its
    build); a query batch adds ``n_queries * min(k, n) * 12`` bytes per
    shard result.  See ``docs/scaling_out.md``.  Global ids must be below
    2**51.

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
        tasks = _dask_tasks()
        self._n_bits = check_n_bits(n_bits)
        check_n_threads(n_threads)
        # Validated here, on the client, rather than in every shard build.
        HammingIndex(n_bits=self._n_bits, method=method)
        self._split_every = check_int(split_every, "split_every", low=2)
        width = code_bytes(self._n_bits)
        if not tasks.is_dask_array(codes):
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
        self._client = resolve_client(client)
        self._shards, self._sizes = tasks.build_shards(self._client, codes, self._n_bits,
                                                       n_threads, method)
        self._offsets = np.concatenate([[0], np.cumsum(self._sizes, dtype=np.int64)])
        self._n = int(self._offsets[-1])
        if self._n >= 1 << KEY_ID_BITS:
            raise ValueError(
                f"'codes' has {self._n} rows; ShardedHammingIndex supports fewer than "
                f"2**{KEY_ID_BITS}."
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
        if _dask_tasks().is_dask_array(queries):
            queries = queries.compute()
        return check_codes(queries, "queries", self._n_bits)

    def _run(self, shard_func, queries, shard_args, merge_func, merge_args=()):
        """Run ``shard_func(shard_i, queries, *shard_args[i])`` on every shard,
        tree-merge with ``merge_func(*merge_args, *parts)``, gather the result
        (run again when a worker holding a shard or a part leaves)."""
        return _dask_tasks().run_batch(self._client, self._shards, shard_func, queries,
                                       shard_args, merge_func, merge_args, self._split_every)

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
        return self._run(_dask_tasks().shard_search, queries, per_shard, merge_topk, (k,))

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
        return self._run(_dask_tasks().shard_range, queries, per_shard, merge_range)

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
        return self._run(_dask_tasks().shard_histogram, queries, [()] * self.n_shards,
                         sum_parts)
