# cython: language_level=3
"""Ranking statistics for retrieval evaluation over packed binary codes.

Low-level engine behind :mod:`flexcmh_fast.metrics`; inputs are validated
there.  Codes and label masks arrive as C-contiguous uint64 word matrices
(bit order inside a word is irrelevant to Hamming distance and to the
"shares a label" test, as long as both sides use the same layout).

The popcount path is the one selected in :mod:`flexcmh_fast._hamming`
(``cpu_popcount_path()``, ``set_popcount_path()``, environment variable
``FLEXCMH_FAST_POPCOUNT``), read at every call.
"""
import numpy as np

from cython.parallel cimport prange, threadid
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t

from flexcmh_fast import _hamming

cdef extern from "popcount.h" nogil:
    int PC_PATH_AVX512
    int pc_cpu_has_avx512_bytes()


cdef extern from "ranking_kernels.h" nogil:
    # Opaque to Cython: only passed from rk_pass1_for_path into rk_params.
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
        const uint64_t *db_wm
        const uint32_t *ids_pad
        const uint64_t *lab_pad
        const uint8_t *ids8
        int rel_range
        int64_t n_blocks

    rk_pass1_fn rk_pass1_for_path(int path)
    rk_pass1_fn rk_pass1_fast
    void rk_fast_init_tables()
    enum: RK_FAST_SCRATCH_U64
    enum: RK_FAST_MAX_BITS
    enum: RK_BLOCK
    enum: RK_TQ
    void rk_query_tile(const rk_params *p, int nt, const uint64_t *q, const uint64_t *ql,
                       uint16_t *buf, int64_t *work, int64_t work_stride,
                       uint64_t *recs, int64_t rec_stride,
                       double *ap_out, int64_t *nrel_out, double *pk_out, int64_t pk_stride,
                       int64_t *hall_out, int64_t *hrel_out)


# Lookup tables of the fast pass (written once, read-only afterwards).
rk_fast_init_tables()

_FAST_CPU = bool(pc_cpu_has_avx512_bytes())


def fast_pass_available():
    """Whether the fast pass runs: the selected popcount path is
    ``"avx512-vpopcntdq"`` and the CPU also has AVX-512 VBMI, VBMI2, BITALG
    and GFNI.  It is then used for codes of at most 128 bits with class ids
    or at most 64 labels; other inputs take the path's generic pass."""
    return _FAST_CPU and _hamming._path_code() == PC_PATH_AVX512


def _fast_fits(int n_bits, bint use_ids, Py_ssize_t n_label_words):
    """Whether the fast pass handles this input (code length, label kind)."""
    return n_bits <= RK_FAST_MAX_BITS and (use_ids or n_label_words == 1)


def _renumber(ids):
    """Sorted distinct ids and every id's index among them, as the smallest
    unsigned dtype (a bincount when the ids are small, else np.unique; the
    small dtype makes the stable argsort a radix sort)."""
    n = ids.shape[0]
    top = int(ids.max()) if n else 0
    if top < 4 * n + 65536:
        present = np.bincount(ids, minlength=top + 1) > 0
        classes = np.flatnonzero(present)
        lut = np.cumsum(present) - 1
        inverse = lut[ids]
    else:
        classes, inverse = np.unique(ids, return_inverse=True)
    dtype = np.uint8 if len(classes) <= 256 else np.uint16 if len(classes) <= 65536 else np.uint32
    return classes.astype(np.uint64), inverse.astype(dtype)


def _word_major(const uint64_t[:, ::1] db_words, Py_ssize_t n_blocks):
    """Codes in blocks of 64, word-major: word w of code i of block b at
    ``[(b * W + w) * 64 + i]``; padding codes are zero."""
    cdef Py_ssize_t n_db = db_words.shape[0], n_words = db_words.shape[1]
    padded = np.zeros((n_blocks * 64, n_words), dtype=np.uint64)
    padded[:n_db] = np.asarray(db_words)
    return np.ascontiguousarray(
        padded.reshape(n_blocks, 64, n_words).transpose(0, 2, 1)).reshape(-1)


def harmonic_numbers(Py_ssize_t n):
    """``H[i] = sum_{t=1..i} 1/t`` for ``i`` in ``[0, n]`` (``H[0] = 0``)."""
    h = np.zeros(n + 1, dtype=np.float64)
    if n > 0:
        h[1:] = np.cumsum(1.0 / np.arange(1, n + 1, dtype=np.float64))
    return h


def rank_stats(const uint64_t[:, ::1] q_words, const uint64_t[:, ::1] db_words,
               const uint64_t[:, ::1] q_labels, const uint64_t[:, ::1] db_labels,
               const uint32_t[::1] db_ids, int n_bits, bint stable, bint want_ap, int64_t top_k,
               const int64_t[::1] ks, bint want_hist, int n_threads, fast_pass=None):
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
    fast_pass : bool, optional
        ``None``: the fast pass when it is available and fits the input,
        else the generic pass of the selected popcount path.  ``False``:
        always the generic pass (for comparisons); ``True``: the fast pass
        or a ValueError.

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
    # buf: the portable pass's block of distances, or the fast pass's
    # scratch (its start aligned to 64 bytes below).
    cdef Py_ssize_t buf_u64 = max(<Py_ssize_t>RK_FAST_SCRATCH_U64, RK_BLOCK // 4) + 8
    bufs = np.zeros((n_threads, buf_u64), dtype=np.uint64)
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
    cdef uint64_t[:, ::1] buf_v = bufs
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
    p.db_wm = NULL
    p.ids_pad = NULL
    p.lab_pad = NULL
    p.n_blocks = (n_db + 63) // 64
    fits = _fast_fits(n_bits, use_ids, q_labels.shape[1]) and n_db > 0
    if fast_pass is None:
        use_fast = fits and fast_pass_available()
    elif fast_pass:
        if not fast_pass_available():
            raise ValueError("The fast pass needs the 'avx512-vpopcntdq' popcount path and AVX-512 "
                             f"VBMI/VBMI2/BITALG/GFNI; path {_hamming.cpu_popcount_path()!r} is "
                             "selected on this CPU.")
        if not fits:
            raise ValueError(f"The fast pass needs n_bits <= {RK_FAST_MAX_BITS} and class ids or "
                             f"at most 64 labels. Got n_bits={n_bits}.")
        use_fast = True
    else:
        use_fast = False
    p.pass1 = rk_pass1_for_path(_hamming._path_code())
    cdef uint64_t[::1] wm_v, lab_v
    cdef uint32_t[::1] ids_v
    cdef uint8_t[::1] ids8_v
    cdef const uint64_t[:, ::1] ql_v = q_labels
    p.ids8 = NULL
    p.rel_range = 0
    if use_fast:
        p.pass1 = rk_pass1_fast
        db_order = None
        if use_ids:
            # Renumber the database classes 0..C-1; a query class absent
            # from the database matches nothing.
            classes, inverse = _renumber(np.asarray(db_ids))
            q_ids = np.asarray(q_labels)[:, 0]
            pos = np.minimum(np.searchsorted(classes, q_ids), len(classes) - 1)
            present = classes[pos] == q_ids
            if not stable:
                # Tie-aware statistics ignore the database order: sort it by
                # class, so relevance is an index range per query (no label
                # reads) and most blocks need no relevant-item work.
                db_order = np.argsort(inverse, kind="stable")
                starts = np.zeros(len(classes) + 1, dtype=np.uint64)
                starts[1:] = np.cumsum(np.bincount(inverse, minlength=len(classes)))
                q_fast = np.where(present, (starts[pos] << np.uint64(32)) | starts[pos + 1],
                                  np.uint64(0)).astype(np.uint64).reshape(-1, 1)
                p.rel_range = 1
            elif len(classes) < 255:
                # One byte per class id: 64 ids per vector compare; 255
                # marks query classes absent from the database.
                ids8 = np.zeros(p.n_blocks * 64, dtype=np.uint8)
                ids8[:n_db] = inverse
                ids8_v = ids8
                p.ids8 = &ids8_v[0]
                q_fast = np.where(present, pos, 255).astype(np.uint64).reshape(-1, 1)
            else:
                ids_pad = np.zeros(p.n_blocks * 64, dtype=np.uint32)
                ids_pad[:n_db] = np.asarray(db_ids)
                ids_v = ids_pad
                p.ids_pad = &ids_v[0]
                q_fast = np.asarray(q_labels)
            ql_v = np.ascontiguousarray(q_fast)
        else:
            lab_pad = np.zeros(p.n_blocks * 64, dtype=np.uint64)
            lab_pad[:n_db] = np.asarray(db_labels)[:, 0]
            lab_v = lab_pad
            p.lab_pad = &lab_v[0]
        # Word-major copy of the database (once per call).
        db_wm = _word_major(db_words if db_order is None else
                            np.ascontiguousarray(np.asarray(db_words)[db_order]), p.n_blocks)
        wm_v = db_wm
        p.db_wm = &wm_v[0]

    cdef Py_ssize_t tile, i0
    cdef int tid, nt
    cdef int64_t pk_stride = pk.shape[1]
    with nogil:
        for tile in prange(n_tiles, num_threads=n_threads, schedule="dynamic", chunksize=1):
            tid = threadid()
            i0 = tile * RK_TQ
            nt = <int>(n_q - i0 if n_q - i0 < RK_TQ else RK_TQ)
            rk_query_tile(&p, nt, &q_words[i0, 0], &ql_v[i0, 0],
                          <uint16_t *>((<size_t>&buf_v[tid, 0] + 63) & ~(<size_t>63)),
                          &work_v[tid, 0], work_len, &rec_v[tid, 0], rec_stride,
                          &ap_v[i0], &nrel_v[i0], &pk_v[i0, 0], pk_stride,
                          &hall_v[i0, 0] if want_hist else NULL,
                          &hrel_v[i0, 0] if want_hist else NULL)
    return ap, n_rel, pk[:, :n_ks], (hist_all if want_hist else None), \
        (hist_rel if want_hist else None)
