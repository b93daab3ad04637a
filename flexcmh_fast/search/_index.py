"""Exact Hamming search over packed binary codes.

:class:`HammingIndex` stores packed codes (``np.packbits`` layout, see
:func:`flexcmh_fast.pack_codes`) and answers exact top-k, radius and
distance-histogram queries with the multi-threaded kernels of the
``flexcmh_fast._hamming`` extension (vector popcount selected at run time
from the CPU features, portable fallback elsewhere).
"""
import numpy as np

from .._ext import load_extension
from .._persist import save_state
from .._validation import check_int, check_n_bits, check_n_threads
from ._layout import BLOCK_CODES as _BLOCK
from ._layout import QUERY_TILE, as_words, code_bytes, code_words
from ._mih import MAX_BITS as _MIH_MAX_BITS
from ._mih import MAX_CODES as _MIH_MAX_CODES
from ._mih import _MIHTables
from ._packing import check_codes
from ._saved import check_index_state

_hamming = load_extension("_hamming")

# Queries per kernel call of ``search`` (bounds the per-query candidate
# buffers); whole query tiles, so no batch ends in a partial tile.
_QUERY_BATCH = 2048 * QUERY_TILE
# Vectors are 64 bytes; aligned blocks never straddle cache lines.
_ALIGN_WORDS = 8
_METHODS = ("auto", "linear", "mih")
# "auto" cost model (see HammingIndex Notes): how many database codes the
# scan compares in the time of one unit of multi-index hashing work (a
# bucket probed or a code reached), per popcount path.  Both costs grow
# with the code's words, so one ratio serves every length.  Set from
# single-thread measurements (docs/benchmarks.md, "Multi-index hashing");
# re-measure when a scan or hashing kernel changes.  Below _AUTO_MIN_CODES
# codes the scan is too cheap to beat.
_SCAN_CODES_PER_UNIT = {"avx512-vpopcntdq": 240, "avx2": 180, "popcnt": 34, "portable": 20}
_AUTO_MIN_CODES = 1 << 16
# Queries searched first to measure the multi-index hashing work (at most
# one in 16 of the call's queries); and the share of a scan's cost a query
# may spend before it is scanned instead.
_PILOT_QUERIES = 32
_BUDGET_SHARE = 0.5
_UNLIMITED = 1 << 62


def _aligned_zeros(n_words):
    """Zeroed uint64 array of ``n_words`` starting on a 64-byte boundary."""
    raw = np.zeros(n_words + _ALIGN_WORDS, dtype=np.uint64)
    offset = (-raw.ctypes.data % 64) // 8
    return raw[offset:offset + n_words]


class HammingIndex:
    """Exact Hamming-distance search over packed binary codes.

    Parameters
    ----------
    codes : ndarray of uint8, shape (n_codes, ceil(n_bits / 8)), optional
        Packed database codes (C-contiguous, padding bits zero), e.g. from
        :func:`flexcmh_fast.pack_codes` or ``model.encode``.  Code ``i`` gets
        id ``i``; later :meth:`add` calls continue the numbering.
    n_bits : int in [1, 4096]
        Code length in bits (required).
    method : {"auto", "linear", "mih"}, default="auto"
        Search algorithm of :meth:`search` and :meth:`range_search`:
        ``"linear"`` scans every code; ``"mih"`` uses multi-index hashing
        (Norouzi, Punjani & Fleet, CVPR 2012; codes of at most 256 bits and
        fewer than 2**32 codes), sublinear when the answers lie close to the
        queries, e.g. codes of clustered data; ``"auto"`` chooses per call by
        the cost model below.  Every method returns identical results.
    n_threads : int, optional
        Threads of every query; ``None`` or ``-1`` use all available cores.

    Notes
    -----
    Every result is exact and independent of ``method``, ``n_threads`` and
    of the CPU's popcount path (``flexcmh_fast._hamming.cpu_popcount_path()``).
    Results are ordered by distance, ties broken by the smaller id.

    Multi-index hashing tables are built at the first query that uses them
    (O(n), one table per thread) and rebuilt after :meth:`add`; they are
    not saved (:meth:`save` and pickling keep ``method``, loading rebuilds
    them when needed).  They take ``4 * m * n`` bytes of ids plus bucket
    offsets, ``m`` about ``n_bits / log2(n)`` substrings: at most 4x the
    packed codes for indexes of at least 2**16 codes (see ``mih_nbytes``).

    Cost model of ``"auto"``: the scan compares a query with ``n`` codes; one
    unit of hashing work (a bucket probed or a code reached, i.e. cache
    misses) is counted as a fixed number of code comparisons for each
    popcount path, set from measurements (``docs/benchmarks.md``,
    "Multi-index hashing"; both costs grow with the code length).  With
    ``n >= 2**16``, ``n_bits <= 256``
    and the answers not a large share of the database (``k <= n / 64``;
    radius below ``n_bits / 4``), the first queries of a call (1 in 16, at
    most 32) are searched by hashing with a budget of half a scan each, and
    a query over budget is scanned instead.  If that cost these pilot
    queries less than a scan on average, the remaining queries are searched
    the same way, otherwise they are scanned.  Where hashing cannot prune
    (uniformly random codes of 128 bits), ``"auto"`` thus costs at most
    about 1/32 more than the scan, plus the first build of the tables.

    Examples
    --------
    >>> import numpy as np, flexcmh_fast as fc
    >>> rng = np.random.default_rng(0)
    >>> db = fc.pack_codes(rng.integers(0, 2, (1000, 32)))
    >>> index = fc.HammingIndex(db, n_bits=32)
    >>> dist, ids = index.search(db[:5], k=3)
    >>> ids[:, 0].tolist()
    [0, 1, 2, 3, 4]
    """

    def __init__(self, codes=None, n_bits=None, *, method="auto", n_threads=None):
        if n_bits is None:
            raise TypeError("'n_bits' is required: the code length in bits, an int in [1, 4096].")
        self._n_bits = check_n_bits(n_bits)
        if not isinstance(method, str) or method not in _METHODS:
            raise ValueError(f"'method' must be one of {list(_METHODS)}. Got {method!r} instead.")
        if method == "mih" and self._n_bits > _MIH_MAX_BITS:
            raise ValueError(
                f"'method'='mih' supports codes of at most {_MIH_MAX_BITS} bits. "
                f"Got n_bits={self._n_bits} instead; use method='linear' or 'auto'.")
        self._method = method
        self.n_threads = n_threads
        self._n_words = code_words(self._n_bits)
        self._n = 0
        self._words = _aligned_zeros(0)
        self._mih = None
        if codes is not None:
            self.add(codes)

    # ------------------------------------------------------------------
    # Properties
    # ------------------------------------------------------------------
    @property
    def n_bits(self):
        """Code length in bits."""
        return self._n_bits

    @property
    def n_threads(self):
        """Threads used by queries (``None``: all available cores)."""
        return self._n_threads

    @n_threads.setter
    def n_threads(self, value):
        check_n_threads(value)
        # Kept unresolved (None = all cores of the machine running the query).
        self._n_threads = None if value is None else int(value)

    @property
    def method(self):
        """Search algorithm: ``"auto"``, ``"linear"`` or ``"mih"``."""
        return self._method

    @property
    def mih_nbytes(self):
        """Memory of the multi-index hashing tables in bytes (0 until built)."""
        return 0 if self._mih is None else self._mih.nbytes

    def __len__(self):
        return self._n

    def __repr__(self):
        return (f"HammingIndex(n_codes={self._n}, n_bits={self._n_bits}, "
                f"method={self._method!r})")

    @property
    def codes(self):
        """Copy of the database as packed codes, uint8 (n_codes, ceil(n_bits / 8))."""
        w = self._n_words
        n_blocks = -(-self._n // _BLOCK)
        blocks = self._words[:n_blocks * w * _BLOCK].reshape(n_blocks, w, _BLOCK)
        words = np.ascontiguousarray(blocks.transpose(0, 2, 1)).reshape(-1, w)[:self._n]
        packed = np.ascontiguousarray(words).view(np.uint8)[:, :code_bytes(self._n_bits)]
        return np.ascontiguousarray(packed)

    # ------------------------------------------------------------------
    # Building
    # ------------------------------------------------------------------
    def add(self, codes):
        """Append packed codes to the database (ids continue from ``len(self)``).

        Amortised O(n_new): the block storage grows geometrically.

        Parameters
        ----------
        codes : ndarray of uint8, shape (m, ceil(n_bits / 8))
            C-contiguous packed codes with zero padding bits.

        Returns
        -------
        self
        """
        codes = check_codes(codes, "codes", self._n_bits)
        m = codes.shape[0]
        if m == 0:
            return self
        if self._method == "mih" and self._n + m > _MIH_MAX_CODES:
            raise ValueError(
                f"'method'='mih' supports at most {_MIH_MAX_CODES} codes; adding {m} to "
                f"{self._n} exceeds it. Use method='linear' or 'auto'.")
        self._mih = None  # stale: rebuilt at the next query that needs it
        w = self._n_words
        new = as_words(codes)
        n0, n1 = self._n, self._n + m
        blocks_needed = -(-n1 // _BLOCK)
        capacity = self._words.size // (w * _BLOCK)
        if blocks_needed > capacity:
            grown = _aligned_zeros(max(blocks_needed, 2 * capacity, 64) * w * _BLOCK)
            grown[:self._words.size] = self._words
            self._words = grown
        blocks = self._words.reshape(-1, w, _BLOCK)
        # Codes filling the partial block at the end of the database.
        head = min(m, (-n0) % _BLOCK)
        if head:
            ids = np.arange(n0, n0 + head)
            blocks[ids // _BLOCK, :, ids % _BLOCK] = new[:head]
        # Whole blocks: one transposed copy.
        full = (m - head) // _BLOCK
        if full:
            b0 = (n0 + head) // _BLOCK
            chunk = new[head:head + full * _BLOCK].reshape(full, _BLOCK, w)
            blocks[b0:b0 + full] = chunk.transpose(0, 2, 1)
        tail = m - head - full * _BLOCK
        if tail:
            ids = np.arange(n1 - tail, n1)
            blocks[ids // _BLOCK, :, ids % _BLOCK] = new[m - tail:]
        self._n = n1
        return self

    # ------------------------------------------------------------------
    # Queries
    # ------------------------------------------------------------------
    def _prepare(self, queries):
        queries = check_codes(queries, "queries", self._n_bits)
        return as_words(queries), check_n_threads(self._n_threads)

    def search(self, queries, k):
        """Exact k nearest database codes of every query.

        Parameters
        ----------
        queries : ndarray of uint8, shape (n_queries, ceil(n_bits / 8))
            C-contiguous packed codes with zero padding bits (0 rows allowed).
        k : int >= 1
            Neighbours per query.  Any size is accepted: results have
            ``min(k, len(self))`` columns, so ``k > len(self)`` returns every
            database code (and an empty index 0 columns).

        Returns
        -------
        distances : ndarray of int32, shape (n_queries, min(k, len(self)))
        ids : ndarray of int64, shape (n_queries, min(k, len(self)))
            Row ``j`` is sorted by increasing distance, ties by increasing id.
        """
        # Capped before anything is allocated: k = 10**9 on a small index
        # costs what k = len(self) costs.
        k = min(check_int(k, "k", low=1), self._n)
        q, n_threads = self._prepare(queries)
        if k == 0 or q.shape[0] == 0:
            return self._scan_topk(q, k, n_threads)
        use = self._choose(k <= self._n // 64)
        if use == "linear":
            return self._scan_topk(q, k, n_threads)
        tables = self._tables(n_threads)

        def run(rows, budget):
            D, I, work = tables.topk(self._words, q[rows], k, budget, n_threads)
            return (D, I), work

        def scan(rows):
            return self._scan_topk(q[rows], k, n_threads)

        D = np.empty((q.shape[0], k), dtype=np.int32)
        I = np.empty((q.shape[0], k), dtype=np.int64)

        def store(rows, result):
            D[rows], I[rows] = result

        self._hashed(use, q.shape[0], run, scan, store)
        return D, I

    def _scan_topk(self, q, k, n_threads):
        if q.shape[0] <= _QUERY_BATCH:
            return _hamming.topk(self._words, self._n, q, self._n_bits, k, n_threads)
        # The kernel keeps ~2k candidates per query in flight: bound that
        # memory by searching in batches (each batch still uses every thread).
        D = np.empty((q.shape[0], k), dtype=np.int32)
        I = np.empty((q.shape[0], k), dtype=np.int64)
        for start in range(0, q.shape[0], _QUERY_BATCH):
            stop = start + _QUERY_BATCH
            D[start:stop], I[start:stop] = _hamming.topk(
                self._words, self._n, q[start:stop], self._n_bits, k, n_threads)
        return D, I

    def _choose(self, answers_small):
        """"linear", "mih" (every query hashed) or "pilot" (the auto cost model)."""
        if self._method != "auto":
            return self._method
        if (self._n < _AUTO_MIN_CODES or self._n > _MIH_MAX_CODES
                or self._n_bits > _MIH_MAX_BITS or not answers_small):
            return "linear"
        return "pilot"

    def _tables(self, n_threads):
        if self._mih is None:
            self._mih = _MIHTables(self._words, self._n, self._n_bits, n_threads)
        return self._mih

    def _hashed(self, use, n_queries, run, scan, store):
        """Search queries by hashing, scanning those over budget (see Notes).

        ``run(rows, budget)`` -> (result, work), ``work[j] == -1`` when query
        ``rows[j]`` went over budget; ``scan(rows)`` -> result; ``store(rows,
        result)`` writes a result for those rows.
        """
        all_rows = np.arange(n_queries)
        if use == "mih":
            result, _ = run(all_rows, _UNLIMITED)
            store(all_rows, result)
            return
        scan_cost = self._n / _SCAN_CODES_PER_UNIT[_hamming.cpu_popcount_path()]
        budget = max(1, int(_BUDGET_SHARE * scan_cost))
        pilot = all_rows[:max(1, min(_PILOT_QUERIES, n_queries // 16))]
        result, work = run(pilot, budget)
        store(pilot, result)
        over = pilot[work < 0]
        # Cost per query of hashing with the scan as fallback, on the pilot.
        expected = np.where(work < 0, budget + scan_cost, work).mean()
        rest = all_rows[pilot.size:]
        if rest.size and expected < scan_cost:
            result, work = run(rest, budget)
            store(rest, result)
            over = np.concatenate([over, rest[work < 0]])
        elif rest.size:
            over = np.concatenate([over, rest])
        if over.size:
            store(over, scan(over))

    def range_search(self, queries, radius):
        """All database codes within Hamming distance ``radius`` of each query.

        Parameters
        ----------
        queries : ndarray of uint8, shape (n_queries, ceil(n_bits / 8))
        radius : int >= 0
            Inclusive: codes with distance <= radius are returned.

        Returns
        -------
        lims : ndarray of int64, shape (n_queries + 1,)
            Results of query ``j`` are ``distances[lims[j]:lims[j+1]]`` and
            ``ids[lims[j]:lims[j+1]]`` (the faiss ``range_search`` layout).
        distances : ndarray of int32, shape (lims[-1],)
        ids : ndarray of int64, shape (lims[-1],)
            Each query's results are sorted by increasing distance, ties by
            increasing id.
        """
        radius = min(check_int(radius, "radius", low=0), self._n_bits)
        q, n_threads = self._prepare(queries)
        nq = q.shape[0]
        use = "linear" if nq == 0 or self._n == 0 else self._choose(4 * radius < self._n_bits)
        if use == "linear":
            return _hamming.range_search(self._words, self._n, q, self._n_bits, radius,
                                         n_threads)
        tables = self._tables(n_threads)
        parts = [None] * nq  # (distances, ids) of every query

        def run(rows, budget):
            lims, D, I, work = tables.range_search(self._words, q[rows], radius, budget,
                                                   n_threads)
            return (lims, D, I), work

        def scan(rows):
            return _hamming.range_search(self._words, self._n, q[rows], self._n_bits,
                                         radius, n_threads)

        def store(rows, result):
            lims, D, I = result
            for j, row in enumerate(rows):
                parts[row] = (D[lims[j]:lims[j + 1]], I[lims[j]:lims[j + 1]])

        self._hashed(use, nq, run, scan, store)
        lims = np.zeros(nq + 1, dtype=np.int64)
        np.cumsum([p[0].size for p in parts], out=lims[1:])
        return (lims, np.concatenate([p[0] for p in parts]),
                np.concatenate([p[1] for p in parts]))

    def distance_histogram(self, queries):
        """Number of database codes at each distance from each query.

        Parameters
        ----------
        queries : ndarray of uint8, shape (n_queries, ceil(n_bits / 8))

        Returns
        -------
        ndarray of int64, shape (n_queries, n_bits + 1)
            Entry ``[j, d]`` counts the codes at distance ``d`` from query
            ``j``; every row sums to ``len(self)``.
        """
        q, n_threads = self._prepare(queries)
        return _hamming.histogram(self._words, self._n, q, self._n_bits, n_threads)

    def distances(self, queries):
        """Full distance matrix to the database, int32 (n_queries, len(self))."""
        q, n_threads = self._prepare(queries)
        return _hamming.distances(self._words, self._n, q, n_threads)

    # ------------------------------------------------------------------
    # Persistence
    # ------------------------------------------------------------------
    def save(self, path):
        """Save the index to ``path`` (a ``.npz`` file; reload with ``flexcmh_fast.load``)."""
        meta = {"n_bits": self._n_bits, "n_codes": self._n, "n_threads": self._n_threads,
                "method": self._method}
        save_state(path, "HammingIndex", meta, {"codes": self.codes})

    def __reduce__(self):
        # Pickle (e.g. dask moving a shard) the packed codes only, not the
        # spare capacity; unpickling rebuilds aligned block storage.
        return (_rebuild, (self.codes, self._n_bits, self._n_threads, self._method))

    @classmethod
    def _from_state(cls, meta, arrays):
        n_bits, _, n_threads = check_index_state(meta, arrays)
        # Files written before multi-index hashing existed have no method.
        method = meta.get("method", "auto")
        return cls(np.ascontiguousarray(arrays["codes"]), n_bits=n_bits, method=method,
                   n_threads=n_threads)


def _rebuild(codes, n_bits, n_threads, method="auto"):
    return HammingIndex(codes, n_bits=n_bits, method=method, n_threads=n_threads)


def hamming_distances(queries, codes, n_bits, n_threads=None):
    """Full matrix of Hamming distances between two sets of packed codes.

    Parameters
    ----------
    queries : ndarray of uint8, shape (n_queries, ceil(n_bits / 8))
    codes : ndarray of uint8, shape (n_codes, ceil(n_bits / 8))
        Both C-contiguous packed codes with zero padding bits.
    n_bits : int in [1, 4096]
    n_threads : int, optional
        ``None`` or ``-1``: all available cores.

    Returns
    -------
    ndarray of int32, shape (n_queries, n_codes)
    """
    n_bits = check_n_bits(n_bits)
    check_codes(queries, "queries", n_bits)
    return HammingIndex(codes, n_bits=n_bits, n_threads=n_threads).distances(queries)
