# cython: language_level=3
"""Exact Hamming search kernels (top-k, radius, histograms, full distances).

Low-level layer behind :class:`flexcmh_fast.HammingIndex`; the kernels are in
``hamming_kernels.h``.  Inputs are trusted here (validated by
``flexcmh_fast/search/_index.py``):

* ``db``: flat uint64 array in word-major block layout (blocks of 8 codes,
  ``W = ceil(n_bits / 64)`` words a code, see the header), at least
  ``ceil(n / 8) * W * 8`` words, codes past ``n`` zero;
* ``Q``: uint64 matrix (n_queries, W), padding bits zero.

Work is split into tasks = (database part) x (group of queries), run by one
parallel loop (``_run`` over ``hm_job_run`` of the header); each task owns
its output rows, so there are no races; the partial top-k selections of the
database parts are merged afterwards (stable by id).

Popcount path (``popcount.h``, shared with ``_ranking``): chosen at import
from the CPU features (AVX-512 VPOPCNTDQ, else AVX2, else POPCNT, else a
portable bit trick).  ``set_popcount_path`` or the
environment variable ``FLEXCMH_FAST_POPCOUNT`` (read at import) force
another path that the CPU supports, e.g. ``"portable"`` for testing.
"""
import os
import warnings

import numpy as np

from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from libc.stdlib cimport free
from libc.string cimport memset
from cython.parallel cimport prange, threadid

cdef extern from "popcount.h" nogil:
    enum: PC_N_PATHS
    const char *pc_path_names[PC_N_PATHS]
    int pc_cpu_best_path()

cdef extern from "hamming_kernels.h" nogil:
    int HM_BLOCK
    int HM_QT
    int HM_KEY_SHIFT
    int HM_ST_SIZE
    int HM_ST_THR
    ctypedef struct hm_ops:
        pass
    const hm_ops *hm_ops_for(int path)
    int HM_OP_TOPK, HM_OP_RANGE, HM_OP_HIST, HM_OP_DIST
    ctypedef struct hm_job:
        int op
        const hm_ops *ops
        const uint64_t *db
        int64_t n, nq
        int W, n_bits
        const uint64_t *Q
        int64_t cap, k
        uint64_t *bufs
        int32_t *cnts
        int64_t *sts
        int64_t *pos
        bint finalize
        int32_t *out_d
        int64_t *out_i
        int radius
        int64_t *counts
        uint64_t *keys
        int64_t *hist
        int32_t *dist
    void hm_job_run(const hm_job *J, int64_t part, int64_t b_lo, int64_t b_hi,
                    int64_t q_lo, int64_t q_hi, int tid)
    void hm_topk_finalize(const uint64_t *bufs, const int32_t *cnts, const int64_t *sts,
                          int64_t S, int64_t nq, int64_t j, int64_t cap, int64_t k,
                          int n_bits, int64_t *pos, int32_t *out_d, int64_t *out_i)
    void hm_range_sort(const uint64_t *keys, int64_t cnt, int radius, int64_t *cnt_buf,
                       int32_t *out_d, int64_t *out_i)

# The layout the kernels were compiled with (flexcmh_fast/search/_layout.py
# mirrors these; a test checks that both agree): codes per storage block,
# queries per register tile, and the id bits of a (distance, id) key.
BLOCK = HM_BLOCK
QUERY_TILE = HM_QT
KEY_ID_BITS = HM_KEY_SHIFT
# Query groups are cut at multiples of the tile (a multiple of the AVX2
# tile HM_QT2, checked by the header) so no tile is split between tasks.
cdef int64_t _QT = HM_QT

# Paths are ordered: a CPU supporting one supports every lower one (see
# popcount.h, whose path numbers and names these are).
_NAMES = {p: pc_path_names[p].decode() for p in range(PC_N_PATHS)}
_CODES = {name: code for code, name in _NAMES.items()}

cdef int _best_path = pc_cpu_best_path()
cdef int _path = _best_path


def available_popcount_paths():
    """Popcount paths this CPU supports, fastest first."""
    return tuple(_NAMES[p] for p in sorted(_NAMES, reverse=True) if p <= _best_path)


def cpu_popcount_path():
    """Name of the popcount path in use, by this module and by ``_ranking``.

    Returns
    -------
    str
        ``"avx512-vpopcntdq"`` (AVX-512 vector popcount), ``"avx2"`` (AVX2
        nibble-table popcount), ``"popcnt"`` (scalar POPCNT instruction) or
        ``"portable"`` (bit-trick fallback).
    """
    return _NAMES[_path]


def _path_code():
    """Number of the path in use (``PC_PATH_*`` of popcount.h), which
    ``_ranking`` reads so both extensions follow one selection."""
    return _path


def set_popcount_path(name):
    """Select the popcount path; returns the previous path's name.

    Parameters
    ----------
    name : {"auto", "avx512-vpopcntdq", "avx2", "popcnt", "portable"}
        ``"auto"`` picks the fastest path the CPU supports.  Results are
        identical on every path; forcing a slower one is meant for tests.
        The selection applies to the search kernels and to the ranking
        statistics of :mod:`flexcmh_fast.metrics` alike.

    Raises
    ------
    ValueError
        Unknown name, or a path the CPU does not support.
    """
    global _path
    previous = _NAMES[_path]
    if name == "auto":
        _path = _best_path
        return previous
    if not isinstance(name, str) or name not in _CODES:
        raise ValueError(
            f"'name' must be one of {['auto'] + sorted(_CODES)}. Got {name!r} instead.")
    if _CODES[name] > _best_path:
        raise ValueError(
            f"'name'={name!r} is not supported by this CPU; available: "
            f"{list(available_popcount_paths())}.")
    _path = _CODES[name]
    return previous


_env = os.environ.get("FLEXCMH_FAST_POPCOUNT")
if _env:
    try:
        set_popcount_path(_env)
    except ValueError as exc:
        warnings.warn(f"Ignoring FLEXCMH_FAST_POPCOUNT={_env!r}: {exc}", RuntimeWarning)


# Below this many (query, code word) comparisons per thread a thread costs
# more to start and synchronise than it saves.
cdef int64_t _MIN_WORK_PER_THREAD = 1 << 22


def _set_min_work_per_thread(int64_t value):
    """Set the small-problem threshold (tests use 0 to force threading); returns the old one."""
    global _MIN_WORK_PER_THREAD
    previous = _MIN_WORK_PER_THREAD
    _MIN_WORK_PER_THREAD = max(value, 1)
    return previous


def _plan(int64_t nq, int64_t nb, int64_t W, int n_threads):
    """Split the work: (threads, database parts S, query groups, queries per group).

    Enough queries: every thread takes whole queries (database read once per
    query tile, no merge).  Few queries: split the database between threads
    and merge the partial results.  Small problems run on fewer threads.
    """
    cdef int64_t tiles = (nq + _QT - 1) // _QT
    cdef int64_t S = 1, groups = 1
    cdef int64_t work = nq * nb * HM_BLOCK * W
    n_threads = <int>max(1, min(n_threads, work // _MIN_WORK_PER_THREAD))
    if n_threads > 1 and nb > 0:
        if nq >= 8 * n_threads:
            groups = min(tiles, 4 * n_threads)
        else:
            S = min(n_threads, nb)
    cdef int64_t q_step = ((tiles + groups - 1) // groups) * _QT
    return n_threads, S, groups, q_step


cdef struct _Tasks:
    # Task t covers database part t // groups and query group t % groups.
    int n_threads
    int64_t parts, groups, q_step, b_step, nq, nb


cdef _Tasks _tasks(int64_t nq, int64_t nb, int64_t W, int n_threads):
    cdef _Tasks T
    T.n_threads, T.parts, T.groups, T.q_step = _plan(nq, nb, W, n_threads)
    T.b_step = (nb + T.parts - 1) // T.parts
    T.nq, T.nb = nq, nb
    return T


cdef struct _Task:
    bint empty
    int64_t part, b_lo, b_hi, q_lo, q_hi


cdef inline _Task _task(const _Tasks *T, int64_t t) noexcept nogil:
    """Database part, blocks [b_lo, b_hi) and queries [q_lo, q_hi) of task t."""
    cdef _Task task
    task.part = t // T.groups
    task.b_lo = task.part * T.b_step
    task.q_lo = (t % T.groups) * T.q_step
    task.empty = task.q_lo >= T.nq or task.b_lo >= T.nb
    task.b_hi = min(task.b_lo + T.b_step, T.nb)
    task.q_hi = min(task.q_lo + T.q_step, T.nq)
    return task


cdef hm_job _job(int op, const uint64_t[::1] db, int64_t n, const uint64_t[:, ::1] Q,
                 int n_bits):
    """A job of one call on the selected popcount path (other fields zero)."""
    cdef hm_job J
    memset(&J, 0, sizeof(J))
    J.op = op
    J.ops = hm_ops_for(_path)
    J.db = &db[0]
    J.n = n
    J.nq = Q.shape[0]
    J.W = <int>Q.shape[1]
    J.n_bits = n_bits
    J.Q = &Q[0, 0]
    return J


cdef void _run(const _Tasks *T, const hm_job *J) noexcept nogil:
    """Run every (database part, query group) task of a call in parallel."""
    cdef int64_t t
    cdef _Task task
    for t in prange(T.parts * T.groups, num_threads=T.n_threads, schedule="dynamic"):
        task = _task(T, t)
        if not task.empty:
            hm_job_run(J, task.part, task.b_lo, task.b_hi, task.q_lo, task.q_hi, threadid())


def topk(const uint64_t[::1] db, int64_t n, const uint64_t[:, ::1] Q, int n_bits,
         int64_t k, int n_threads):
    """Exact k nearest codes: (distances int32 (nq, k), ids int64 (nq, k)).

    Sorted by (distance, id); rows padded with -1 when k > n.
    """
    cdef int64_t nq = Q.shape[0], W = Q.shape[1]
    cdef int64_t nb = (n + HM_BLOCK - 1) // HM_BLOCK
    cdef int64_t cap = min(k, n)
    D_arr = np.full((nq, k), -1, dtype=np.int32)
    I_arr = np.full((nq, k), -1, dtype=np.int64)
    if nq == 0 or n == 0:
        return D_arr, I_arr
    cdef _Tasks T = _tasks(nq, nb, W, n_threads)
    cdef int64_t cS = T.parts
    # Per (part, query) selection state, see hm_sel_push in the header.
    bufs_arr = np.empty((cS, nq, 2 * cap), dtype=np.uint64)
    cnts_arr = np.zeros((cS, nq, n_bits + 2), dtype=np.int32)
    sts_arr = np.zeros((cS, nq, HM_ST_SIZE), dtype=np.int64)
    sts_arr[:, :, HM_ST_THR] = n_bits + 1
    pos_arr = np.empty((T.n_threads, n_bits + 2), dtype=np.int64)
    cdef uint64_t[:, :, ::1] bufs = bufs_arr
    cdef int32_t[:, :, ::1] cnts = cnts_arr
    cdef int64_t[:, :, ::1] sts = sts_arr
    cdef int64_t[:, ::1] pos = pos_arr
    cdef int32_t[:, ::1] D = D_arr
    cdef int64_t[:, ::1] I = I_arr
    cdef hm_job J = _job(HM_OP_TOPK, db, n, Q, n_bits)
    J.cap, J.k = cap, k
    J.bufs, J.cnts, J.sts, J.pos = &bufs[0, 0, 0], &cnts[0, 0, 0], &sts[0, 0, 0], &pos[0, 0]
    J.out_d, J.out_i = &D[0, 0], &I[0, 0]
    # One part: a task owns its queries entirely and finalises them itself,
    # saving a second parallel region.
    J.finalize = cS == 1
    cdef int64_t j
    with nogil:
        _run(&T, &J)
        if cS > 1:
            for j in prange(nq, num_threads=T.n_threads, schedule="static"):
                hm_topk_finalize(&bufs[0, 0, 0], &cnts[0, 0, 0], &sts[0, 0, 0], cS, nq, j, cap,
                                 k, n_bits, &pos[threadid(), 0], &D[0, 0], &I[0, 0])
    return D_arr, I_arr


def range_search(const uint64_t[::1] db, int64_t n, const uint64_t[:, ::1] Q, int n_bits,
                 int radius, int n_threads):
    """All codes within ``radius``: (lims int64 (nq+1,), distances int32, ids int64).

    Results of query j are ``[lims[j], lims[j+1])``, sorted by (distance, id).
    """
    cdef int64_t nq = Q.shape[0], W = Q.shape[1]
    cdef int64_t nb = (n + HM_BLOCK - 1) // HM_BLOCK
    radius = min(radius, n_bits)
    if nq == 0 or n == 0:
        return (np.zeros(nq + 1, dtype=np.int64), np.empty(0, dtype=np.int32),
                np.empty(0, dtype=np.int64))
    cdef _Tasks T = _tasks(nq, nb, W, n_threads)
    cdef int64_t cS = T.parts
    counts_arr = np.zeros((cS, nq), dtype=np.int64)
    cdef int64_t[:, ::1] counts = counts_arr
    cdef hm_job J = _job(HM_OP_RANGE, db, n, Q, n_bits)
    J.radius = radius
    J.counts = &counts[0, 0]
    # Pass 1: count hits per (part, query).
    with nogil:
        _run(&T, &J)
    lims_arr = np.zeros(nq + 1, dtype=np.int64)
    np.cumsum(counts_arr.sum(axis=0), out=lims_arr[1:])
    cdef int64_t total = lims_arr[nq]
    D_arr = np.empty(total, dtype=np.int32)
    I_arr = np.empty(total, dtype=np.int64)
    if total == 0:
        return lims_arr, D_arr, I_arr
    # Write cursors: part s of query j starts after the hits of parts < s.
    cursors_arr = lims_arr[:nq][None, :] + np.cumsum(counts_arr, axis=0) - counts_arr
    cursors_arr = np.ascontiguousarray(cursors_arr, dtype=np.int64)
    keys_arr = np.empty(total, dtype=np.uint64)
    cdef int64_t[:, ::1] cursors = cursors_arr
    cdef uint64_t[::1] keys = keys_arr
    cdef int64_t[::1] lims = lims_arr
    cdef int32_t[::1] D = D_arr
    cdef int64_t[::1] I = I_arr
    cnt_arr = np.empty((T.n_threads, radius + 2), dtype=np.int64)
    cdef int64_t[:, ::1] cnt = cnt_arr
    J.counts = &cursors[0, 0]
    J.keys = &keys[0]
    cdef int64_t j
    # Pass 2: write hits in id order; pass 3: stable counting sort by distance.
    with nogil:
        _run(&T, &J)
        for j in prange(nq, num_threads=T.n_threads, schedule="dynamic"):
            if lims[j + 1] > lims[j]:
                hm_range_sort(&keys[lims[j]], lims[j + 1] - lims[j], radius,
                              &cnt[threadid(), 0], &D[lims[j]], &I[lims[j]])
    return lims_arr, D_arr, I_arr


def histogram(const uint64_t[::1] db, int64_t n, const uint64_t[:, ::1] Q, int n_bits,
              int n_threads):
    """Counts of database codes at each distance: int64 (nq, n_bits + 1)."""
    cdef int64_t nq = Q.shape[0], W = Q.shape[1]
    cdef int64_t nb = (n + HM_BLOCK - 1) // HM_BLOCK
    if nq == 0 or n == 0:
        return np.zeros((nq, n_bits + 1), dtype=np.int64)
    cdef _Tasks T = _tasks(nq, nb, W, n_threads)
    cdef int64_t cS = T.parts
    hist_arr = np.zeros((cS, nq, n_bits + 1), dtype=np.int64)
    cdef int64_t[:, :, ::1] hist = hist_arr
    cdef hm_job J = _job(HM_OP_HIST, db, n, Q, n_bits)
    J.hist = &hist[0, 0, 0]
    with nogil:
        _run(&T, &J)
    return hist_arr.sum(axis=0) if cS > 1 else hist_arr[0]


def distances(const uint64_t[::1] db, int64_t n, const uint64_t[:, ::1] Q, int n_threads):
    """Full distance matrix: int32 (nq, n)."""
    cdef int64_t nq = Q.shape[0], W = Q.shape[1]
    cdef int64_t nb = (n + HM_BLOCK - 1) // HM_BLOCK
    out_arr = np.empty((nq, n), dtype=np.int32)
    if nq == 0 or n == 0:
        return out_arr
    cdef _Tasks T = _tasks(nq, nb, W, n_threads)
    cdef int32_t[:, ::1] out = out_arr
    cdef hm_job J = _job(HM_OP_DIST, db, n, Q, 0)
    J.dist = &out[0, 0]
    with nogil:
        _run(&T, &J)
    return out_arr


# ----------------------------------------------------------------------
# Multi-index hashing (mih_kernels.h); tables built by flexcmh_fast.search._mih.
# ----------------------------------------------------------------------
cdef extern from "mih_kernels.h" nogil:
    ctypedef struct mh_tables:
        const uint64_t *db
        int64_t n
        int W
        int m
        const int32_t *lo
        const int32_t *len
        const int32_t *gap_off
        const int32_t *gap_len
        const int64_t *base
        const uint32_t *offs
        const uint32_t *ids
        const uint64_t *masks
    int64_t mh_knn(int path, const mh_tables *T, const uint64_t *q, int n_bits, int64_t k,
                   int64_t budget, int64_t *cnt, int32_t *od, int64_t *oi)
    int64_t mh_range(int path, const mh_tables *T, const uint64_t *q, int radius,
                     int64_t budget, uint64_t **out, int64_t *out_len)
    void mh_build_table(const uint64_t *db, int64_t n, int W, int lo, int len, int gap_off,
                        int gap_len, uint32_t *off, uint32_t *ids)


cdef mh_tables _tables(const uint64_t[::1] db, int64_t n, int W, const int32_t[:, ::1] sub,
                       const int64_t[::1] base,
                       const uint32_t[::1] offs, const uint32_t[:, ::1] ids,
                       const uint64_t[:, ::1] masks):
    cdef mh_tables T
    T.db = &db[0]
    T.n = n
    T.W = W
    T.m = <int>sub.shape[1]
    T.lo = &sub[0, 0]
    T.len = &sub[1, 0]
    T.gap_off = &sub[2, 0]
    T.gap_len = &sub[3, 0]
    T.base = &base[0]
    T.offs = &offs[0]
    T.ids = &ids[0, 0]
    T.masks = &masks[0, 0]
    return T


cdef int _mih_threads(int n_threads, int64_t nq) noexcept nogil:
    # A hashed query takes microseconds: below 4 queries a thread, starting
    # and joining threads costs more than it saves.
    cdef int64_t t = nq // 4
    if t > n_threads:
        t = n_threads
    return <int>(t if t > 1 else 1)


def mih_build(const uint64_t[::1] db, int64_t n, int W, const int32_t[:, ::1] sub,
              const int64_t[::1] base, uint32_t[::1] offs, uint32_t[:, ::1] ids,
              int n_threads):
    """Fill the bucket offsets ``offs`` (zeroed) and ``ids`` of every table.

    ``sub`` rows: bit offset, length, gap offset and gap length of each
    substring (see mih_kernels.h).
    """
    cdef int64_t i, m = sub.shape[1]
    with nogil:
        for i in prange(m, num_threads=max(1, min(n_threads, m)), schedule="dynamic"):
            mh_build_table(&db[0], n, W, sub[0, i], sub[1, i], sub[2, i], sub[3, i],
                           &offs[base[i]], &ids[i, 0])


def mih_topk(const uint64_t[::1] db, int64_t n, const uint64_t[:, ::1] Q, int n_bits,
             int64_t k, const int32_t[:, ::1] sub, const int64_t[::1] base,
             const uint32_t[::1] offs, const uint32_t[:, ::1] ids,
             const uint64_t[:, ::1] masks, int64_t budget, int n_threads):
    """Exact k nearest codes (1 <= k <= n) by multi-index hashing.

    Returns (distances int32 (nq, k), ids int64 (nq, k), work int64 (nq,)):
    ``work[j]`` is -1 when query j exceeded ``budget`` (its row is then
    unset and must be searched by the scan).
    """
    cdef int64_t nq = Q.shape[0], W = Q.shape[1], j
    D_arr = np.empty((nq, k), dtype=np.int32)
    I_arr = np.empty((nq, k), dtype=np.int64)
    work_arr = np.zeros(nq, dtype=np.int64)
    if nq == 0:
        return D_arr, I_arr, work_arr
    n_threads = _mih_threads(n_threads, nq)
    cnt_arr = np.empty((n_threads, n_bits + 1), dtype=np.int64)
    cdef int64_t[:, ::1] cnt = cnt_arr
    cdef int32_t[:, ::1] D = D_arr
    cdef int64_t[:, ::1] I = I_arr
    cdef int64_t[::1] work = work_arr
    cdef mh_tables T = _tables(db, n, <int>W, sub, base, offs, ids, masks)
    cdef int path = _path
    with nogil:
        for j in prange(nq, num_threads=n_threads, schedule="dynamic"):
            work[j] = mh_knn(path, &T, &Q[j, 0], n_bits, k, budget, &cnt[threadid(), 0],
                             &D[j, 0], &I[j, 0])
    if (work_arr == -2).any():
        raise MemoryError("Out of memory in the multi-index hashing search.")
    return D_arr, I_arr, work_arr


def mih_range(const uint64_t[::1] db, int64_t n, const uint64_t[:, ::1] Q, int radius,
              const int32_t[:, ::1] sub, const int64_t[::1] base,
              const uint32_t[::1] offs, const uint32_t[:, ::1] ids,
              const uint64_t[:, ::1] masks, int64_t budget, int n_threads):
    """All codes within ``radius`` by multi-index hashing.

    Returns (lims int64 (nq+1,), distances int32, ids int64, work int64
    (nq,)); a query with ``work[j] == -1`` exceeded ``budget`` and has no
    results here (``lims[j] == lims[j+1]``): the caller scans it.
    """
    cdef int64_t nq = Q.shape[0], W = Q.shape[1], j, t, c
    work_arr = np.zeros(nq, dtype=np.int64)
    lens_arr = np.zeros(nq, dtype=np.int64)
    ptr_arr = np.zeros(nq, dtype=np.uintp)
    cdef int64_t[::1] work = work_arr
    cdef int64_t[::1] cnt = lens_arr
    cdef size_t[::1] ptrs = ptr_arr
    cdef mh_tables T = _tables(db, n, <int>W, sub, base, offs, ids, masks)
    cdef int path = _path
    cdef uint64_t *keys
    cdef int shift = HM_KEY_SHIFT
    cdef uint64_t id_mask = (<uint64_t>1 << shift) - 1
    if nq:
        with nogil:
            for j in prange(nq, num_threads=_mih_threads(n_threads, nq), schedule="dynamic"):
                keys = NULL
                work[j] = mh_range(path, &T, &Q[j, 0], radius, budget, &keys, &cnt[j])
                ptrs[j] = <size_t>keys
    lims_arr = np.zeros(nq + 1, dtype=np.int64)
    np.cumsum(lens_arr, out=lims_arr[1:])
    cdef int64_t[::1] lims = lims_arr
    D_arr = np.empty(lims_arr[nq], dtype=np.int32)
    I_arr = np.empty(lims_arr[nq], dtype=np.int64)
    cdef int32_t[::1] D = D_arr
    cdef int64_t[::1] I = I_arr
    cdef bint out_of_memory = False
    with nogil:
        for j in range(nq):
            keys = <uint64_t *>ptrs[j]
            if work[j] == -2:
                out_of_memory = True
            for t in range(cnt[j]):
                c = lims[j] + t
                D[c] = <int32_t>(keys[t] >> shift)
                I[c] = <int64_t>(keys[t] & id_mask)
            free(keys)
    if out_of_memory:
        raise MemoryError("Out of memory collecting multi-index hashing range results.")
    return lims_arr, D_arr, I_arr, work_arr
