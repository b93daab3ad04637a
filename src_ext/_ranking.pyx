# cython: language_level=3
"""Ranking statistics for retrieval evaluation over packed binary codes.

Low-level engine behind :mod:`flexcmh_fast.metrics`; inputs are validated
there.  Codes and label masks arrive as C-contiguous uint64 word matrices
(bit order inside a word is irrelevant to Hamming distance and to the
"shares a label" test, as long as both sides use the same layout).
"""
import numpy as np

from cython.parallel cimport prange, threadid
from libc.stdint cimport int64_t, uint16_t, uint32_t, uint64_t


cdef extern from "ranking_kernels.h" nogil:
    # Opaque to Cython: only passed from rk_select_pass1 into rk_params.
    ctypedef void *rk_pass1_fn
    ctypedef struct rk_params:
        int n_bits
        int n_words
        int n_label_words
        int64_t n_db
        const uint64_t *db
        const uint64_t *db_labels
        const uint32_t *db_ids
        int stable
        int want_ap
        int64_t top_k
        const int64_t *ks
        int n_ks
        const double *harmonic
        rk_pass1_fn pass1

    rk_pass1_fn rk_select_pass1()
    rk_pass1_fn rk_pass1_by_name(const char *name)
    const char *rk_pass1_variant()
    enum: RK_BLOCK
    enum: RK_TQ
    void rk_query_tile(const rk_params *p, int nt, const uint64_t *q, const uint64_t *ql,
                       uint16_t *buf, int64_t *work, int64_t work_stride,
                       uint64_t *recs, int64_t rec_stride,
                       double *ap_out, int64_t *nrel_out, double *pk_out, int64_t pk_stride,
                       int64_t *hall_out, int64_t *hrel_out)


def popcount_variant():
    """Name of the distance-pass variant chosen for this CPU at run time:
    ``"avx512vpopcntdq"``, ``"popcnt"`` or ``"default"``."""
    return rk_pass1_variant().decode()


def harmonic_numbers(Py_ssize_t n):
    """``H[i] = sum_{t=1..i} 1/t`` for ``i`` in ``[0, n]`` (``H[0] = 0``)."""
    h = np.zeros(n + 1, dtype=np.float64)
    if n > 0:
        h[1:] = np.cumsum(1.0 / np.arange(1, n + 1, dtype=np.float64))
    return h


def rank_stats(const uint64_t[:, ::1] q_words, const uint64_t[:, ::1] db_words,
               const uint64_t[:, ::1] q_labels, const uint64_t[:, ::1] db_labels,
               const uint32_t[::1] db_ids, int n_bits, bint stable, bint want_ap, int64_t top_k,
               const int64_t[::1] ks, bint want_hist, int n_threads, variant=None):
    """Per-query AP, relevant count, precision@ks and distance histograms.

    Parameters
    ----------
    q_words, db_words : uint64 (n, n_words)
        Codes; padding bits zero on both sides.
    q_labels, db_labels : uint64 (n, n_label_words)
        Label bit masks; an item is relevant when ``q & db != 0``.
    db_ids : uint32 (n_db,) or (0,)
        Single-label mode when non-empty: database class ids, ``q_labels``
        holds each query's class id in its first word, ``db_labels`` is
        ignored, and an item is relevant when the ids are equal.
    n_bits : int
        Code length (distances lie in ``[0, n_bits]``).
    stable : bool
        Stable tie-break by database index (``True``) or tie-aware.
    want_ap : bool
        Compute average precision.
    top_k : int
        Truncate AP at this rank; ``0`` means the whole ranking.
    ks : int64 (n_ks,)
        Sorted unique cut-offs in ``[1, n_db]`` for precision@k.
    want_hist : bool
        Return the per-query histograms of all / relevant items per distance.
    n_threads : int
        OpenMP threads (parallel over queries).
    variant : str, optional
        Force a distance-pass variant (``"default"``, ``"popcnt"``,
        ``"avx512vpopcntdq"``) instead of the run-time choice; for tests.

    Returns
    -------
    ap : float64 (n_q,) ; NaN where the query has no relevant item
    n_rel : int64 (n_q,)
    pk : float64 (n_q, n_ks)
    hist_all, hist_rel : int64 (n_q, n_bits + 1), or None
    """
    cdef Py_ssize_t n_q = q_words.shape[0]
    cdef Py_ssize_t n_db = db_words.shape[0]
    cdef int nb1 = n_bits + 1
    cdef int n_ks = ks.shape[0]
    # Queries go in tiles of RK_TQ (one read of each database block serves
    # the whole tile); threads share out the tiles.
    cdef Py_ssize_t n_tiles = (n_q + RK_TQ - 1) // RK_TQ
    if n_threads < 1:
        n_threads = 1
    if n_threads > n_tiles:
        n_threads = max(<Py_ssize_t>1, n_tiles)

    ap = np.full(n_q, np.nan, dtype=np.float64)
    n_rel = np.zeros(n_q, dtype=np.int64)
    pk = np.zeros((n_q, max(n_ks, 1)), dtype=np.float64)
    hist_all = np.zeros((n_q if want_hist else 1, nb1), dtype=np.int64)
    hist_rel = np.zeros((n_q if want_hist else 1, nb1), dtype=np.int64)
    # Harmonic numbers are only needed by the tie-aware AP.
    harmonic = harmonic_numbers(0 if stable else n_db)
    # Per-thread scratch: one block of distances and, per query of a tile,
    # the counters (hist4: 8 nb1, hist: 2 nb1, start_all / start_rel:
    # nb1 + 1 each, ks counts) and, for the stable tie-break, room for one
    # record per database item (only the R relevant ones are kept; np.zeros
    # memory is committed lazily, so untouched room costs nothing).
    bufs = np.zeros((n_threads, RK_BLOCK), dtype=np.uint16)
    cdef int64_t rec_stride = max(n_db, 1) if stable else 1
    recs = np.zeros((n_threads, RK_TQ * rec_stride), dtype=np.uint64)
    cdef int64_t work_len = 12 * nb1 + 2 + n_ks
    works = np.zeros((n_threads, RK_TQ * work_len), dtype=np.int64)

    cdef double[::1] ap_v = ap
    cdef int64_t[::1] nrel_v = n_rel
    cdef double[:, ::1] pk_v = pk
    cdef int64_t[:, ::1] hall_v = hist_all
    cdef int64_t[:, ::1] hrel_v = hist_rel
    cdef double[::1] harm_v = harmonic
    cdef uint16_t[:, ::1] buf_v = bufs
    cdef int64_t[:, ::1] work_v = works
    cdef uint64_t[:, ::1] rec_v = recs

    if n_q == 0:
        return ap, n_rel, pk[:, :n_ks], (hist_all if want_hist else None), \
            (hist_rel if want_hist else None)

    cdef rk_params p
    p.n_bits = n_bits
    p.n_words = <int>q_words.shape[1]
    p.n_label_words = <int>q_labels.shape[1]
    p.n_db = n_db
    p.db = &db_words[0, 0] if n_db > 0 else NULL
    use_ids = db_ids.shape[0] > 0
    if use_ids and db_ids.shape[0] != n_db:
        raise ValueError("db_ids must have one id per database code")
    p.db_labels = &db_labels[0, 0] if (n_db > 0 and not use_ids) else NULL
    p.db_ids = &db_ids[0] if use_ids else NULL
    p.stable = stable
    p.want_ap = want_ap
    p.top_k = top_k
    p.ks = &ks[0] if n_ks > 0 else NULL
    p.n_ks = n_ks
    p.harmonic = &harm_v[0]
    if variant is None:
        p.pass1 = rk_select_pass1()
    else:
        name = str(variant).encode()
        p.pass1 = rk_pass1_by_name(name)
        if p.pass1 == NULL:
            raise ValueError(f"variant {variant!r} is unknown or not supported by this CPU")

    cdef Py_ssize_t tile, i0
    cdef int tid, nt
    cdef int64_t pk_stride = pk.shape[1]
    with nogil:
        for tile in prange(n_tiles, num_threads=n_threads, schedule="dynamic", chunksize=1):
            tid = threadid()
            i0 = tile * RK_TQ
            nt = <int>(n_q - i0 if n_q - i0 < RK_TQ else RK_TQ)
            rk_query_tile(&p, nt, &q_words[i0, 0], &q_labels[i0, 0], &buf_v[tid, 0],
                          &work_v[tid, 0], work_len, &rec_v[tid, 0], rec_stride,
                          &ap_v[i0], &nrel_v[i0], &pk_v[i0, 0], pk_stride,
                          &hall_v[i0, 0] if want_hist else NULL,
                          &hrel_v[i0, 0] if want_hist else NULL)
    return ap, n_rel, pk[:, :n_ks], (hist_all if want_hist else None), \
        (hist_rel if want_hist else None)
