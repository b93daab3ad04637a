/*
 * Exact Hamming search kernels for flexcmh_fast._hamming.
 *
 * Database layout (word-major blocks): codes are cut into 64-bit words
 * (W = ceil(n_bits / 64) words a code, padding bits zero) and grouped in
 * blocks of HM_BLOCK = 8 codes.  Block b holds W * 8 words: word w of code
 * 8 * b + lane is at db[(b * W + w) * 8 + lane].  One 512-bit vector is thus
 * "word w of 8 consecutive codes", so a vector XOR + VPOPCNTQ gives 8
 * distances at once.  Codes past the end of the database in the last block
 * are zero and are masked out by id wherever results are produced.
 *
 * Queries are row-major: query j is Q[j * W .. j * W + W).
 *
 * Results are 64-bit keys (distance << 51 | id).  Every kernel scans ids in
 * increasing order, so inside one scan a candidate can enter the top-k iff
 * its distance is strictly below the current k-th distance (the running
 * threshold), and ties are broken by the smaller id exactly.
 *
 * Popcount paths, chosen at run time (never compiled for the build host's CPU):
 *   PC_PATH_AVX512   AVX-512F + VPOPCNTDQ intrinsics in functions compiled
 *                    with __attribute__((target(...))),
 *   PC_PATH_AVX2     top-k with AVX2 nibble-table popcount (VPSHUFB +
 *                    VPSADBW) in target("avx2,popcnt") functions; the other
 *                    operations use the POPCNT loops on this path,
 *   PC_PATH_POPCNT   scalar loops compiled with target("popcnt"),
 *   PC_PATH_PORTABLE scalar loops with a bit-trick popcount (no special
 *                    instruction; on non-x86 the compiler builtin).
 */
#ifndef FLEXCMH_HAMMING_KERNELS_H
#define FLEXCMH_HAMMING_KERNELS_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "popcount.h"

#ifdef PC_X86
#define HM_X86 1
#endif

#define HM_BLOCK 8
/* AVX-512 kernel tiling (tuned on a 2-core AVX-512 machine; overridable
 * with -D for experiments): queries per register tile, and blocks per
 * group whose minimum distance is checked against the threshold at once. */
#ifndef HM_QT
#define HM_QT 8
#endif
#ifndef HM_G
#define HM_G 8
#endif
#define HM_KEY_SHIFT 51
#define HM_ID_MASK ((UINT64_C(1) << HM_KEY_SHIFT) - 1)

#define HM_INLINE PC_INLINE

/* Blocks per cache chunk: every query tile re-reads the chunk, so keep it
 * well inside L2 (256 KiB), and a multiple of the AVX-512 group size. */
static inline int64_t hm_chunk_blocks(int W)
{
    int64_t c = (256 * 1024) / ((int64_t)W * 64);
    c -= c % HM_G;
    return c < HM_G ? HM_G : c;
}

/* Valid codes in block b of a database of n codes. */
static inline int hm_lanes(int64_t b, int64_t n)
{
    int64_t r = n - b * HM_BLOCK;
    return r >= HM_BLOCK ? HM_BLOCK : (int)r;
}

/* ------------------------------------------------------------------ */
/* Top-k selection by distance counts.                                   */
/* ------------------------------------------------------------------ */
/*
 * Distances are small integers, so instead of a heap each query keeps an
 * append-only buffer of candidate keys (in scan = id order) and the count
 * of buffered candidates at each distance.  thr is the smallest t with at
 * least cap candidates at distance <= t (n_bits + 1 until cap are found).
 * A later candidate (larger id) can only make the top-k if its distance is
 * strictly below thr, so insertion is an append plus a counter update; thr
 * only decreases.  When the buffer (2 * cap keys) is full it is compacted
 * to exactly the current top cap.
 *
 * State of one query: buf[2 * cap], cnt[n_bits + 2] (zeroed),
 * st[HM_ST_LEN] = keys in buf, st[HM_ST_LIVE] = buffered candidates with
 * distance <= thr, st[HM_ST_THR] = thr (initially n_bits + 1).
 */
#define HM_ST_LEN 0
#define HM_ST_LIVE 1
#define HM_ST_THR 2
#define HM_ST_SIZE 3

static void hm_sel_compact(uint64_t *buf, int32_t *cnt, int64_t *st, int64_t cap)
{
    int64_t thr = st[HM_ST_THR], t, out = 0;
    /* Candidates at distance thr beyond this quota have larger ids than the
     * kept ones and can never be in the result. */
    int64_t quota = cap - (st[HM_ST_LIVE] - cnt[thr]), taken = 0;
    for (t = 0; t < st[HM_ST_LEN]; t++) {
        int64_t d = (int64_t)(buf[t] >> HM_KEY_SHIFT);
        if (d < thr || (d == thr && taken++ < quota))
            buf[out++] = buf[t];
    }
    cnt[thr] = (int32_t)quota;
    st[HM_ST_LEN] = out;
    st[HM_ST_LIVE] = out;
}

/* Add a candidate with d < thr; returns the new threshold. */
static inline int hm_sel_push(uint64_t *buf, int32_t *cnt, int64_t *st, int64_t cap,
                              int d, int64_t id)
{
    int64_t thr = st[HM_ST_THR], live;
    if (st[HM_ST_LEN] == 2 * cap)
        hm_sel_compact(buf, cnt, st, cap);
    buf[st[HM_ST_LEN]++] = ((uint64_t)d << HM_KEY_SHIFT) | (uint64_t)id;
    cnt[d]++;
    live = st[HM_ST_LIVE] + 1;
    while (live - cnt[thr] >= cap) {
        live -= cnt[thr];
        thr--;
    }
    st[HM_ST_LIVE] = live;
    st[HM_ST_THR] = thr;
    return (int)thr;
}

/*
 * Write the sorted top-k of query j from its S partial selections (part s
 * state at offset (s * nq + j) of each array; parts cover increasing id
 * ranges) into row j of out_d / out_i (length k >= cap), padding with -1.
 * A stable counting sort by distance over the parts in order keeps ties in
 * id order.  pos needs n_bits + 2 entries.
 */
static void hm_topk_finalize(const uint64_t *bufs, const int32_t *cnts, const int64_t *sts,
                             int64_t S, int64_t nq, int64_t j, int64_t cap, int64_t k,
                             int n_bits, int64_t *pos, int32_t *out_d, int64_t *out_i)
{
    int64_t s, t, total = 0, acc = 0, c;
    int d;
    int32_t *od = out_d + j * k;
    int64_t *oi = out_i + j * k;
    for (d = 0; d <= n_bits + 1; d++)
        pos[d] = 0;
    /* Pass 1: count the selected entries of every part by distance. */
    for (s = 0; s < S; s++) {
        const int64_t *st = sts + (s * nq + j) * HM_ST_SIZE;
        const uint64_t *buf = bufs + (s * nq + j) * 2 * cap;
        const int32_t *cnt = cnts + (s * nq + j) * (int64_t)(n_bits + 2);
        int64_t thr = st[HM_ST_THR];
        int64_t quota = thr > n_bits ? st[HM_ST_LEN] : cap - (st[HM_ST_LIVE] - cnt[thr]);
        int64_t taken = 0;
        for (t = 0; t < st[HM_ST_LEN]; t++) {
            d = (int)(buf[t] >> HM_KEY_SHIFT);
            if (d < thr || (d == thr && taken++ < quota))
                pos[d]++;
        }
    }
    for (d = 0; d <= n_bits; d++) {
        c = pos[d];
        pos[d] = acc;
        acc += c;
    }
    total = acc;
    /* Pass 2: scatter, keeping the first k positions. */
    for (s = 0; s < S; s++) {
        const int64_t *st = sts + (s * nq + j) * HM_ST_SIZE;
        const uint64_t *buf = bufs + (s * nq + j) * 2 * cap;
        const int32_t *cnt = cnts + (s * nq + j) * (int64_t)(n_bits + 2);
        int64_t thr = st[HM_ST_THR];
        int64_t quota = thr > n_bits ? st[HM_ST_LEN] : cap - (st[HM_ST_LIVE] - cnt[thr]);
        int64_t taken = 0;
        for (t = 0; t < st[HM_ST_LEN]; t++) {
            d = (int)(buf[t] >> HM_KEY_SHIFT);
            if (d < thr || (d == thr && taken++ < quota)) {
                c = pos[d]++;
                if (c < k) {
                    od[c] = d;
                    oi[c] = (int64_t)(buf[t] & HM_ID_MASK);
                }
            }
        }
    }
    for (t = total < k ? total : k; t < k; t++) {
        od[t] = -1;
        oi[t] = -1;
    }
}

/*
 * Stable counting sort by distance of one query's range-search hits (already
 * in increasing id order), writing final distances and ids.  cnt_buf needs
 * radius + 2 entries.
 */
static void hm_range_sort(const uint64_t *keys, int64_t cnt, int radius, int64_t *cnt_buf,
                          int32_t *out_d, int64_t *out_i)
{
    int64_t t, acc = 0, c;
    int d;
    for (d = 0; d <= radius + 1; d++)
        cnt_buf[d] = 0;
    for (t = 0; t < cnt; t++)
        cnt_buf[keys[t] >> HM_KEY_SHIFT]++;
    for (d = 0; d <= radius; d++) {
        c = cnt_buf[d];
        cnt_buf[d] = acc;
        acc += c;
    }
    for (t = 0; t < cnt; t++) {
        d = (int)(keys[t] >> HM_KEY_SHIFT);
        c = cnt_buf[d]++;
        out_d[c] = d;
        out_i[c] = (int64_t)(keys[t] & HM_ID_MASK);
    }
}

/* ------------------------------------------------------------------ */
/* Scalar paths (POPCNT instruction or portable bit trick).             */
/* ------------------------------------------------------------------ */

/* hw != 0 only when inlined into a target("popcnt") function, where the
 * builtin expands to the POPCNT instruction. */
HM_INLINE int hm_sdist(const uint64_t *blk, int lane, const uint64_t *q, int W, const int hw)
{
    int d = 0, w;
    for (w = 0; w < W; w++) {
        uint64_t x = blk[w * HM_BLOCK + lane] ^ q[w];
        d += pc_popcount64(x, hw);
    }
    return d;
}

HM_INLINE void hm_topk_scalar(const uint64_t *db, int64_t n, const int W, int n_bits,
                              const uint64_t *Q, int64_t b_lo, int64_t b_hi,
                              int64_t q_lo, int64_t q_hi, int64_t cap,
                              uint64_t *bufs, int32_t *cnts, int64_t *sts, const int hw)
{
    int64_t CH = hm_chunk_blocks(W), cb, ce, j, b;
    for (cb = b_lo; cb < b_hi; cb += CH) {
        ce = cb + CH < b_hi ? cb + CH : b_hi;
        for (j = q_lo; j < q_hi; j++) {
            const uint64_t *q = Q + j * W;
            uint64_t *buf = bufs + j * 2 * cap;
            int32_t *cnt = cnts + j * (int64_t)(n_bits + 2);
            int64_t *st = sts + j * HM_ST_SIZE;
            int thr = (int)st[HM_ST_THR];
            for (b = cb; b < ce; b++) {
                const uint64_t *blk = db + b * W * HM_BLOCK;
                int nl = hm_lanes(b, n), l;
                if (nl == HM_BLOCK) { /* constant trip count: fully unrolled */
                    for (l = 0; l < HM_BLOCK; l++) {
                        int d = hm_sdist(blk, l, q, W, hw);
                        if (d < thr)
                            thr = hm_sel_push(buf, cnt, st, cap, d, b * HM_BLOCK + l);
                    }
                } else {
                    for (l = 0; l < nl; l++) {
                        int d = hm_sdist(blk, l, q, W, hw);
                        if (d < thr)
                            thr = hm_sel_push(buf, cnt, st, cap, d, b * HM_BLOCK + l);
                    }
                }
            }
        }
    }
}

HM_INLINE void hm_range_scalar(const uint64_t *db, int64_t n, int W, const uint64_t *Q,
                               int64_t b_lo, int64_t b_hi, int64_t q_lo, int64_t q_hi,
                               int radius, int64_t *counts, uint64_t *out_keys, const int hw)
{
    /* out_keys == NULL: count hits into counts[j]; else write hits at
     * out_keys[counts[j]++] (counts holds the write cursors). */
    int64_t CH = hm_chunk_blocks(W), cb, ce, j, b;
    for (cb = b_lo; cb < b_hi; cb += CH) {
        ce = cb + CH < b_hi ? cb + CH : b_hi;
        for (j = q_lo; j < q_hi; j++) {
            const uint64_t *q = Q + j * W;
            int64_t c = counts[j];
            for (b = cb; b < ce; b++) {
                const uint64_t *blk = db + b * W * HM_BLOCK;
                int nl = hm_lanes(b, n), l;
                for (l = 0; l < nl; l++) {
                    int d = hm_sdist(blk, l, q, W, hw);
                    if (d <= radius) {
                        if (out_keys)
                            out_keys[c] = ((uint64_t)d << HM_KEY_SHIFT) | (uint64_t)(b * HM_BLOCK + l);
                        c++;
                    }
                }
            }
            counts[j] = c;
        }
    }
}

HM_INLINE void hm_hist_scalar(const uint64_t *db, int64_t n, int W, int n_bits, const uint64_t *Q,
                              int64_t b_lo, int64_t b_hi, int64_t q_lo, int64_t q_hi,
                              int64_t *hist, const int hw)
{
    int64_t CH = hm_chunk_blocks(W), cb, ce, j, b;
    for (cb = b_lo; cb < b_hi; cb += CH) {
        ce = cb + CH < b_hi ? cb + CH : b_hi;
        for (j = q_lo; j < q_hi; j++) {
            const uint64_t *q = Q + j * W;
            int64_t *hj = hist + j * (int64_t)(n_bits + 1);
            for (b = cb; b < ce; b++) {
                const uint64_t *blk = db + b * W * HM_BLOCK;
                int nl = hm_lanes(b, n), l;
                for (l = 0; l < nl; l++)
                    hj[hm_sdist(blk, l, q, W, hw)]++;
            }
        }
    }
}

HM_INLINE void hm_dist_scalar(const uint64_t *db, int64_t n, int W, const uint64_t *Q,
                              int64_t b_lo, int64_t b_hi, int64_t q_lo, int64_t q_hi,
                              int32_t *out, const int hw)
{
    int64_t CH = hm_chunk_blocks(W), cb, ce, j, b;
    for (cb = b_lo; cb < b_hi; cb += CH) {
        ce = cb + CH < b_hi ? cb + CH : b_hi;
        for (j = q_lo; j < q_hi; j++) {
            const uint64_t *q = Q + j * W;
            int32_t *oj = out + j * n;
            for (b = cb; b < ce; b++) {
                const uint64_t *blk = db + b * W * HM_BLOCK;
                int nl = hm_lanes(b, n), l;
                for (l = 0; l < nl; l++)
                    oj[b * HM_BLOCK + l] = hm_sdist(blk, l, q, W, hw);
            }
        }
    }
}

#define HM_TARGET_POPCNT PC_TARGET_POPCNT

static HM_TARGET_POPCNT void hm_topk_popcnt(const uint64_t *db, int64_t n, int W, int n_bits, const uint64_t *Q,
                                            int64_t b_lo, int64_t b_hi, int64_t q_lo, int64_t q_hi,
                                            int64_t cap, uint64_t *bufs, int32_t *cnts, int64_t *sts)
{
    /* Known W lets the compiler unroll the word loop. */
    switch (W) {
    case 1: hm_topk_scalar(db, n, 1, n_bits, Q, b_lo, b_hi, q_lo, q_hi, cap, bufs, cnts, sts, 1); break;
    case 2: hm_topk_scalar(db, n, 2, n_bits, Q, b_lo, b_hi, q_lo, q_hi, cap, bufs, cnts, sts, 1); break;
    default: hm_topk_scalar(db, n, W, n_bits, Q, b_lo, b_hi, q_lo, q_hi, cap, bufs, cnts, sts, 1); break;
    }
}
static void hm_topk_portable(const uint64_t *db, int64_t n, int W, int n_bits, const uint64_t *Q,
                             int64_t b_lo, int64_t b_hi, int64_t q_lo, int64_t q_hi,
                             int64_t cap, uint64_t *bufs, int32_t *cnts, int64_t *sts)
{
    switch (W) {
    case 1: hm_topk_scalar(db, n, 1, n_bits, Q, b_lo, b_hi, q_lo, q_hi, cap, bufs, cnts, sts, 0); break;
    case 2: hm_topk_scalar(db, n, 2, n_bits, Q, b_lo, b_hi, q_lo, q_hi, cap, bufs, cnts, sts, 0); break;
    default: hm_topk_scalar(db, n, W, n_bits, Q, b_lo, b_hi, q_lo, q_hi, cap, bufs, cnts, sts, 0); break;
    }
}
static HM_TARGET_POPCNT void hm_range_popcnt(const uint64_t *db, int64_t n, int W, const uint64_t *Q,
                                             int64_t b_lo, int64_t b_hi, int64_t q_lo, int64_t q_hi,
                                             int radius, int64_t *counts, uint64_t *out_keys)
{
    hm_range_scalar(db, n, W, Q, b_lo, b_hi, q_lo, q_hi, radius, counts, out_keys, 1);
}
static void hm_range_portable(const uint64_t *db, int64_t n, int W, const uint64_t *Q,
                              int64_t b_lo, int64_t b_hi, int64_t q_lo, int64_t q_hi,
                              int radius, int64_t *counts, uint64_t *out_keys)
{
    hm_range_scalar(db, n, W, Q, b_lo, b_hi, q_lo, q_hi, radius, counts, out_keys, 0);
}
static HM_TARGET_POPCNT void hm_hist_popcnt(const uint64_t *db, int64_t n, int W, int n_bits, const uint64_t *Q,
                                            int64_t b_lo, int64_t b_hi, int64_t q_lo, int64_t q_hi, int64_t *hist)
{
    hm_hist_scalar(db, n, W, n_bits, Q, b_lo, b_hi, q_lo, q_hi, hist, 1);
}
static void hm_hist_portable(const uint64_t *db, int64_t n, int W, int n_bits, const uint64_t *Q,
                             int64_t b_lo, int64_t b_hi, int64_t q_lo, int64_t q_hi, int64_t *hist)
{
    hm_hist_scalar(db, n, W, n_bits, Q, b_lo, b_hi, q_lo, q_hi, hist, 0);
}
static HM_TARGET_POPCNT void hm_dist_popcnt(const uint64_t *db, int64_t n, int W, const uint64_t *Q,
                                            int64_t b_lo, int64_t b_hi, int64_t q_lo, int64_t q_hi, int32_t *out)
{
    hm_dist_scalar(db, n, W, Q, b_lo, b_hi, q_lo, q_hi, out, 1);
}
static void hm_dist_portable(const uint64_t *db, int64_t n, int W, const uint64_t *Q,
                             int64_t b_lo, int64_t b_hi, int64_t q_lo, int64_t q_hi, int32_t *out)
{
    hm_dist_scalar(db, n, W, Q, b_lo, b_hi, q_lo, q_hi, out, 0);
}

/* ------------------------------------------------------------------ */
/* AVX-512 VPOPCNTDQ path.                                              */
/* ------------------------------------------------------------------ */
#ifdef HM_X86

#define HM_AVX512 PC_TARGET_AVX512

/* Distances of query q to the 8 codes of block blk (one per 64-bit lane). */
HM_INLINE HM_AVX512 __m512i hm_vdist(const uint64_t *blk, const uint64_t *q, const int W)
{
    __m512i acc = _mm512_popcnt_epi64(
        _mm512_xor_si512(_mm512_loadu_si512((const void *)blk), _mm512_set1_epi64((long long)q[0])));
    int w;
    for (w = 1; w < W; w++)
        acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(
            _mm512_loadu_si512((const void *)(blk + w * HM_BLOCK)), _mm512_set1_epi64((long long)q[w]))));
    return acc;
}

static inline __mmask8 hm_lane_mask(int64_t b, int64_t n)
{
    return (__mmask8)((1u << hm_lanes(b, n)) - 1u);
}

/* Per query of a tile: lane-wise minimum distance over blocks [g, ge).
 * Only XOR + POPCNT (+ ADD) + MIN per query and block, no branches. */
HM_INLINE HM_AVX512 void hm_group_min(const uint64_t *db, const int W, const uint64_t *Q,
                                      int64_t j0, const int QT, int64_t g, int64_t ge, __m512i *m)
{
    int64_t b;
    int j;
    for (j = 0; j < QT; j++)
        m[j] = _mm512_set1_epi64(-1);
    if (ge - g == HM_G) {
        for (b = 0; b < HM_G; b++) {
            const uint64_t *blk = db + (g + b) * W * HM_BLOCK;
            for (j = 0; j < QT; j++)
                m[j] = _mm512_min_epu64(m[j], hm_vdist(blk, Q + (j0 + j) * W, W));
        }
    } else {
        for (b = g; b < ge; b++) {
            const uint64_t *blk = db + b * W * HM_BLOCK;
            for (j = 0; j < QT; j++)
                m[j] = _mm512_min_epu64(m[j], hm_vdist(blk, Q + (j0 + j) * W, W));
        }
    }
}

/* Re-examine blocks [g, ge) for one query whose group minimum beat the
 * threshold: push every code below the (shrinking) threshold. */
static HM_AVX512 __attribute__((noinline)) int hm_topk_rescan(
    const uint64_t *db, int64_t n, int W, const uint64_t *q, int64_t g, int64_t ge,
    int64_t cap, uint64_t *buf, int32_t *cnt, int64_t *st, int thr)
{
    int64_t b;
    uint64_t tmp[HM_BLOCK];
    for (b = g; b < ge; b++) {
        __m512i acc = hm_vdist(db + b * W * HM_BLOCK, q, W);
        __mmask8 m = _mm512_cmplt_epu64_mask(acc, _mm512_set1_epi64(thr)) & hm_lane_mask(b, n);
        if (!m)
            continue;
        _mm512_storeu_si512((void *)tmp, acc);
        while (m) {
            int l = __builtin_ctz(m);
            m &= (__mmask8)(m - 1);
            if ((int)tmp[l] < thr)
                thr = hm_sel_push(buf, cnt, st, cap, (int)tmp[l], b * HM_BLOCK + l);
        }
    }
    return thr;
}

/*
 * One tile of QT queries over blocks [cb, ce): per group of HM_G blocks only
 * XOR + POPCNT + MIN per query and block; a compare against the running
 * k-th distance per group decides whether the group must be re-examined
 * (rare once cap candidates are found), which keeps the inner loop
 * branch-free.
 */
HM_INLINE HM_AVX512 void hm_topk_tile(const uint64_t *db, int64_t n, const int W, int n_bits,
                                      const uint64_t *Q, int64_t j0, const int QT,
                                      int64_t cb, int64_t ce, int64_t cap,
                                      uint64_t *bufs, int32_t *cnts, int64_t *sts)
{
    int thr[HM_QT];
    __m512i T[HM_QT];
    int64_t g, ge;
    int j;
    for (j = 0; j < QT; j++) {
        thr[j] = (int)sts[(j0 + j) * HM_ST_SIZE + HM_ST_THR];
        T[j] = _mm512_set1_epi64(thr[j]);
    }
    for (g = cb; g < ce; g += HM_G) {
        __m512i m[HM_QT];
        ge = g + HM_G < ce ? g + HM_G : ce;
        hm_group_min(db, W, Q, j0, QT, g, ge, m);
        for (j = 0; j < QT; j++) {
            if (_mm512_cmplt_epu64_mask(m[j], T[j])) {
                thr[j] = hm_topk_rescan(db, n, W, Q + (j0 + j) * W, g, ge, cap,
                                        bufs + (j0 + j) * 2 * cap,
                                        cnts + (j0 + j) * (int64_t)(n_bits + 2),
                                        sts + (j0 + j) * HM_ST_SIZE, thr[j]);
                T[j] = _mm512_set1_epi64(thr[j]);
            }
        }
    }
}

HM_INLINE HM_AVX512 void hm_topk_avx512_w(const uint64_t *db, int64_t n, const int W, int n_bits,
                                          const uint64_t *Q, int64_t b_lo, int64_t b_hi,
                                          int64_t q_lo, int64_t q_hi, int64_t cap,
                                          uint64_t *bufs, int32_t *cnts, int64_t *sts)
{
    int64_t CH = hm_chunk_blocks(W), cb, ce, j;
    for (cb = b_lo; cb < b_hi; cb += CH) {
        ce = cb + CH < b_hi ? cb + CH : b_hi;
        for (j = q_lo; j + HM_QT <= q_hi; j += HM_QT)
            hm_topk_tile(db, n, W, n_bits, Q, j, HM_QT, cb, ce, cap, bufs, cnts, sts);
        for (; j < q_hi; j++)
            hm_topk_tile(db, n, W, n_bits, Q, j, 1, cb, ce, cap, bufs, cnts, sts);
    }
}

/* Specialise the hot loop for the common code lengths (W known at compile
 * time lets the compiler unroll the word loop and keep queries in registers). */
static HM_AVX512 void hm_topk_avx512(const uint64_t *db, int64_t n, int W, int n_bits, const uint64_t *Q,
                                     int64_t b_lo, int64_t b_hi, int64_t q_lo, int64_t q_hi,
                                     int64_t cap, uint64_t *bufs, int32_t *cnts, int64_t *sts)
{
    switch (W) {
    case 1: hm_topk_avx512_w(db, n, 1, n_bits, Q, b_lo, b_hi, q_lo, q_hi, cap, bufs, cnts, sts); break;
    case 2: hm_topk_avx512_w(db, n, 2, n_bits, Q, b_lo, b_hi, q_lo, q_hi, cap, bufs, cnts, sts); break;
    case 3: hm_topk_avx512_w(db, n, 3, n_bits, Q, b_lo, b_hi, q_lo, q_hi, cap, bufs, cnts, sts); break;
    case 4: hm_topk_avx512_w(db, n, 4, n_bits, Q, b_lo, b_hi, q_lo, q_hi, cap, bufs, cnts, sts); break;
    default: hm_topk_avx512_w(db, n, W, n_bits, Q, b_lo, b_hi, q_lo, q_hi, cap, bufs, cnts, sts); break;
    }
}

/* Count (out_keys == NULL) or write the hits of one query in blocks [g, ge). */
static HM_AVX512 __attribute__((noinline)) int64_t hm_range_rescan(
    const uint64_t *db, int64_t n, int W, const uint64_t *q, int64_t g, int64_t ge,
    int radius, int64_t c, uint64_t *out_keys)
{
    const __m512i T = _mm512_set1_epi64((long long)radius + 1);
    uint64_t tmp[HM_BLOCK];
    int64_t b;
    for (b = g; b < ge; b++) {
        __m512i acc = hm_vdist(db + b * W * HM_BLOCK, q, W);
        __mmask8 m = _mm512_cmplt_epu64_mask(acc, T) & hm_lane_mask(b, n);
        if (!out_keys) {
            c += __builtin_popcount((unsigned)m);
            continue;
        }
        if (!m)
            continue;
        _mm512_storeu_si512((void *)tmp, acc);
        while (m) {
            int l = __builtin_ctz(m);
            m &= (__mmask8)(m - 1);
            out_keys[c++] = (tmp[l] << HM_KEY_SHIFT) | (uint64_t)(b * HM_BLOCK + l);
        }
    }
    return c;
}

/* Radius search as the top-k tile: groups whose minimum exceeds the radius
 * are skipped after the branch-free pass. */
HM_INLINE HM_AVX512 void hm_range_avx512_w(const uint64_t *db, int64_t n, const int W, const uint64_t *Q,
                                           int64_t b_lo, int64_t b_hi, int64_t q_lo, int64_t q_hi,
                                           int radius, int64_t *counts, uint64_t *out_keys)
{
    int64_t CH = hm_chunk_blocks(W), cb, ce, j0, g, ge;
    const __m512i T = _mm512_set1_epi64((long long)radius + 1);
    int j, QT;
    for (cb = b_lo; cb < b_hi; cb += CH) {
        ce = cb + CH < b_hi ? cb + CH : b_hi;
        for (j0 = q_lo; j0 < q_hi; j0 += QT) {
            __m512i m[HM_QT];
            QT = q_hi - j0 >= HM_QT ? HM_QT : 1;
            for (g = cb; g < ce; g += HM_G) {
                ge = g + HM_G < ce ? g + HM_G : ce;
                if (QT == HM_QT)
                    hm_group_min(db, W, Q, j0, HM_QT, g, ge, m);
                else
                    hm_group_min(db, W, Q, j0, 1, g, ge, m);
                for (j = 0; j < QT; j++)
                    if (_mm512_cmplt_epu64_mask(m[j], T))
                        counts[j0 + j] = hm_range_rescan(db, n, W, Q + (j0 + j) * W, g, ge, radius,
                                                         counts[j0 + j], out_keys);
            }
        }
    }
}

static HM_AVX512 void hm_range_avx512(const uint64_t *db, int64_t n, int W, const uint64_t *Q,
                                      int64_t b_lo, int64_t b_hi, int64_t q_lo, int64_t q_hi,
                                      int radius, int64_t *counts, uint64_t *out_keys)
{
    switch (W) {
    case 1: hm_range_avx512_w(db, n, 1, Q, b_lo, b_hi, q_lo, q_hi, radius, counts, out_keys); break;
    case 2: hm_range_avx512_w(db, n, 2, Q, b_lo, b_hi, q_lo, q_hi, radius, counts, out_keys); break;
    case 3: hm_range_avx512_w(db, n, 3, Q, b_lo, b_hi, q_lo, q_hi, radius, counts, out_keys); break;
    case 4: hm_range_avx512_w(db, n, 4, Q, b_lo, b_hi, q_lo, q_hi, radius, counts, out_keys); break;
    default: hm_range_avx512_w(db, n, W, Q, b_lo, b_hi, q_lo, q_hi, radius, counts, out_keys); break;
    }
}

static HM_AVX512 void hm_hist_avx512(const uint64_t *db, int64_t n, int W, int n_bits, const uint64_t *Q,
                                     int64_t b_lo, int64_t b_hi, int64_t q_lo, int64_t q_hi, int64_t *hist)
{
    int64_t CH = hm_chunk_blocks(W), cb, ce, j, b;
    int64_t nh = (int64_t)n_bits + 1;
    uint64_t tmp[HM_BLOCK];
    /* One sub-histogram per lane: the 8 increments of a block never hit the
     * same counter, so they do not wait on each other's store.  Only worth
     * zeroing per (chunk, query) when the histogram is small next to the
     * chunk, i.e. for short codes. */
    uint32_t *sub = W <= 4 ? (uint32_t *)malloc(sizeof(uint32_t) * HM_BLOCK * nh) : NULL;
    for (cb = b_lo; cb < b_hi; cb += CH) {
        ce = cb + CH < b_hi ? cb + CH : b_hi;
        for (j = q_lo; j < q_hi; j++) {
            const uint64_t *q = Q + j * W;
            int64_t *hj = hist + j * nh;
            int l, d;
            if (sub) {
                memset(sub, 0, sizeof(uint32_t) * HM_BLOCK * nh);
                for (b = cb; b < ce; b++) {
                    int nl = hm_lanes(b, n);
                    _mm512_storeu_si512((void *)tmp, hm_vdist(db + b * W * HM_BLOCK, q, W));
                    if (nl == HM_BLOCK) {
                        for (l = 0; l < HM_BLOCK; l++)
                            sub[l * nh + tmp[l]]++;
                    } else {
                        for (l = 0; l < nl; l++)
                            sub[l * nh + tmp[l]]++;
                    }
                }
                for (l = 0; l < HM_BLOCK; l++)
                    for (d = 0; d < nh; d++)
                        hj[d] += sub[l * nh + d];
            } else {
                for (b = cb; b < ce; b++) {
                    int nl = hm_lanes(b, n);
                    _mm512_storeu_si512((void *)tmp, hm_vdist(db + b * W * HM_BLOCK, q, W));
                    for (l = 0; l < nl; l++)
                        hj[tmp[l]]++;
                }
            }
        }
    }
    free(sub);
}

static HM_AVX512 void hm_dist_avx512(const uint64_t *db, int64_t n, int W, const uint64_t *Q,
                                     int64_t b_lo, int64_t b_hi, int64_t q_lo, int64_t q_hi, int32_t *out)
{
    int64_t CH = hm_chunk_blocks(W), cb, ce, j, b;
    int32_t tmp[HM_BLOCK];
    for (cb = b_lo; cb < b_hi; cb += CH) {
        ce = cb + CH < b_hi ? cb + CH : b_hi;
        for (j = q_lo; j < q_hi; j++) {
            const uint64_t *q = Q + j * W;
            int32_t *oj = out + j * n;
            for (b = cb; b < ce; b++) {
                __m256i d32 = _mm512_cvtepi64_epi32(hm_vdist(db + b * W * HM_BLOCK, q, W));
                int nl = hm_lanes(b, n), l;
                if (nl == HM_BLOCK) {
                    _mm256_storeu_si256((__m256i *)(oj + b * HM_BLOCK), d32);
                } else {
                    _mm256_storeu_si256((__m256i *)tmp, d32);
                    for (l = 0; l < nl; l++)
                        oj[b * HM_BLOCK + l] = tmp[l];
                }
            }
        }
    }
}
#endif /* HM_X86 */

#ifdef HM_X86
/* ------------------------------------------------------------------ */
/* AVX2 path (top-k only): 4 codes per 256-bit vector.                   */
/* ------------------------------------------------------------------ */
#define HM_AVX2 PC_TARGET_AVX2
#define HM_QT2 4 /* queries per tile: AVX2 has only 16 vector registers */

/* Distances of query q to lanes 0-3 (*d0) and 4-7 (*d1) of a block, one per
 * 64-bit lane (high 32 bits zero).  Byte counts are summed over up to 31
 * words (31 * 8 < 256) before the horizontal VPSADBW. */
HM_INLINE HM_AVX2 void hm_vdist256(const uint64_t *blk, const uint64_t *q, const int W,
                                    __m256i *d0, __m256i *d1)
{
    const __m256i zero = _mm256_setzero_si256();
    __m256i a0 = zero, a1 = zero, s0 = zero, s1 = zero;
    int w, c = 0;
    for (w = 0; w < W; w++) {
        __m256i qv = _mm256_set1_epi64x((long long)q[w]);
        s0 = _mm256_add_epi8(s0, pc_bytes256(_mm256_xor_si256(
            _mm256_loadu_si256((const __m256i *)(blk + w * HM_BLOCK)), qv)));
        s1 = _mm256_add_epi8(s1, pc_bytes256(_mm256_xor_si256(
            _mm256_loadu_si256((const __m256i *)(blk + w * HM_BLOCK + 4)), qv)));
        if (++c == 31 || w == W - 1) {
            a0 = _mm256_add_epi64(a0, _mm256_sad_epu8(s0, zero));
            a1 = _mm256_add_epi64(a1, _mm256_sad_epu8(s1, zero));
            s0 = s1 = zero;
            c = 0;
        }
    }
    *d0 = a0;
    *d1 = a1;
}

/* Scalar re-examination of blocks [g, ge) for one query (rare). */
static HM_TARGET_POPCNT __attribute__((noinline)) int hm_topk_rescan_scalar(
    const uint64_t *db, int64_t n, int W, const uint64_t *q, int64_t g, int64_t ge,
    int64_t cap, uint64_t *buf, int32_t *cnt, int64_t *st, int thr)
{
    int64_t b;
    for (b = g; b < ge; b++) {
        const uint64_t *blk = db + b * W * HM_BLOCK;
        int nl = hm_lanes(b, n), l;
        for (l = 0; l < nl; l++) {
            int d = hm_sdist(blk, l, q, W, 1);
            if (d < thr)
                thr = hm_sel_push(buf, cnt, st, cap, d, b * HM_BLOCK + l);
        }
    }
    return thr;
}

/* Same structure as the AVX-512 tile: branch-free group minimum per query
 * (32-bit unsigned min on lanes whose high halves are zero), one threshold
 * test per query and group on the low halves only. */
HM_INLINE HM_AVX2 void hm_topk_tile256(const uint64_t *db, int64_t n, const int W, int n_bits,
                                        const uint64_t *Q, int64_t j0, const int QT,
                                        int64_t cb, int64_t ce, int64_t cap,
                                        uint64_t *bufs, int32_t *cnts, int64_t *sts)
{
    int thr[HM_QT2];
    int64_t g, ge, b;
    int j;
    for (j = 0; j < QT; j++)
        thr[j] = (int)sts[(j0 + j) * HM_ST_SIZE + HM_ST_THR];
    for (g = cb; g < ce; g += HM_G) {
        __m256i m[HM_QT2];
        ge = g + HM_G < ce ? g + HM_G : ce;
        for (j = 0; j < QT; j++)
            m[j] = _mm256_set1_epi32(-1);
        for (b = g; b < ge; b++) {
            const uint64_t *blk = db + b * W * HM_BLOCK;
            for (j = 0; j < QT; j++) {
                __m256i d0, d1;
                hm_vdist256(blk, Q + (j0 + j) * W, W, &d0, &d1);
                m[j] = _mm256_min_epu32(m[j], _mm256_min_epu32(d0, d1));
            }
        }
        for (j = 0; j < QT; j++) {
            __m256i lt = _mm256_cmpgt_epi32(_mm256_set1_epi32(thr[j]), m[j]);
            /* bytes 0-3 of every 64-bit lane = the low 32-bit half */
            if (_mm256_movemask_epi8(lt) & 0x0F0F0F0F)
                thr[j] = hm_topk_rescan_scalar(db, n, W, Q + (j0 + j) * W, g, ge, cap,
                                               bufs + (j0 + j) * 2 * cap,
                                               cnts + (j0 + j) * (int64_t)(n_bits + 2),
                                               sts + (j0 + j) * HM_ST_SIZE, thr[j]);
        }
    }
}

HM_INLINE HM_AVX2 void hm_topk_avx2_w(const uint64_t *db, int64_t n, const int W, int n_bits,
                                       const uint64_t *Q, int64_t b_lo, int64_t b_hi,
                                       int64_t q_lo, int64_t q_hi, int64_t cap,
                                       uint64_t *bufs, int32_t *cnts, int64_t *sts)
{
    int64_t CH = hm_chunk_blocks(W), cb, ce, j;
    for (cb = b_lo; cb < b_hi; cb += CH) {
        ce = cb + CH < b_hi ? cb + CH : b_hi;
        for (j = q_lo; j + HM_QT2 <= q_hi; j += HM_QT2)
            hm_topk_tile256(db, n, W, n_bits, Q, j, HM_QT2, cb, ce, cap, bufs, cnts, sts);
        for (; j < q_hi; j++)
            hm_topk_tile256(db, n, W, n_bits, Q, j, 1, cb, ce, cap, bufs, cnts, sts);
    }
}

static HM_AVX2 void hm_topk_avx2(const uint64_t *db, int64_t n, int W, int n_bits, const uint64_t *Q,
                                 int64_t b_lo, int64_t b_hi, int64_t q_lo, int64_t q_hi,
                                 int64_t cap, uint64_t *bufs, int32_t *cnts, int64_t *sts)
{
    switch (W) {
    case 1: hm_topk_avx2_w(db, n, 1, n_bits, Q, b_lo, b_hi, q_lo, q_hi, cap, bufs, cnts, sts); break;
    case 2: hm_topk_avx2_w(db, n, 2, n_bits, Q, b_lo, b_hi, q_lo, q_hi, cap, bufs, cnts, sts); break;
    case 4: hm_topk_avx2_w(db, n, 4, n_bits, Q, b_lo, b_hi, q_lo, q_hi, cap, bufs, cnts, sts); break;
    default: hm_topk_avx2_w(db, n, W, n_bits, Q, b_lo, b_hi, q_lo, q_hi, cap, bufs, cnts, sts); break;
    }
}
#endif /* HM_X86 (AVX2) */

/* ------------------------------------------------------------------ */
/* Dispatch on the selected path (checked against the CPU by the caller). */
/* ------------------------------------------------------------------ */

static void hm_topk(int path, const uint64_t *db, int64_t n, int W, int n_bits, const uint64_t *Q,
                    int64_t b_lo, int64_t b_hi, int64_t q_lo, int64_t q_hi,
                    int64_t cap, uint64_t *bufs, int32_t *cnts, int64_t *sts)
{
#ifdef HM_X86
    if (path == PC_PATH_AVX512) {
        hm_topk_avx512(db, n, W, n_bits, Q, b_lo, b_hi, q_lo, q_hi, cap, bufs, cnts, sts);
        return;
    }
    if (path == PC_PATH_AVX2) {
        hm_topk_avx2(db, n, W, n_bits, Q, b_lo, b_hi, q_lo, q_hi, cap, bufs, cnts, sts);
        return;
    }
#endif
    if (path == PC_PATH_POPCNT || path == PC_PATH_AVX2)
        hm_topk_popcnt(db, n, W, n_bits, Q, b_lo, b_hi, q_lo, q_hi, cap, bufs, cnts, sts);
    else
        hm_topk_portable(db, n, W, n_bits, Q, b_lo, b_hi, q_lo, q_hi, cap, bufs, cnts, sts);
}

static void hm_range(int path, const uint64_t *db, int64_t n, int W, const uint64_t *Q,
                     int64_t b_lo, int64_t b_hi, int64_t q_lo, int64_t q_hi,
                     int radius, int64_t *counts, uint64_t *out_keys)
{
#ifdef HM_X86
    if (path == PC_PATH_AVX512) {
        hm_range_avx512(db, n, W, Q, b_lo, b_hi, q_lo, q_hi, radius, counts, out_keys);
        return;
    }
#endif
    if (path == PC_PATH_POPCNT || path == PC_PATH_AVX2)
        hm_range_popcnt(db, n, W, Q, b_lo, b_hi, q_lo, q_hi, radius, counts, out_keys);
    else
        hm_range_portable(db, n, W, Q, b_lo, b_hi, q_lo, q_hi, radius, counts, out_keys);
}

static void hm_hist(int path, const uint64_t *db, int64_t n, int W, int n_bits, const uint64_t *Q,
                    int64_t b_lo, int64_t b_hi, int64_t q_lo, int64_t q_hi, int64_t *hist)
{
#ifdef HM_X86
    if (path == PC_PATH_AVX512) {
        hm_hist_avx512(db, n, W, n_bits, Q, b_lo, b_hi, q_lo, q_hi, hist);
        return;
    }
#endif
    if (path == PC_PATH_POPCNT || path == PC_PATH_AVX2)
        hm_hist_popcnt(db, n, W, n_bits, Q, b_lo, b_hi, q_lo, q_hi, hist);
    else
        hm_hist_portable(db, n, W, n_bits, Q, b_lo, b_hi, q_lo, q_hi, hist);
}

static void hm_dist(int path, const uint64_t *db, int64_t n, int W, const uint64_t *Q,
                    int64_t b_lo, int64_t b_hi, int64_t q_lo, int64_t q_hi, int32_t *out)
{
#ifdef HM_X86
    if (path == PC_PATH_AVX512) {
        hm_dist_avx512(db, n, W, Q, b_lo, b_hi, q_lo, q_hi, out);
        return;
    }
#endif
    if (path == PC_PATH_POPCNT || path == PC_PATH_AVX2)
        hm_dist_popcnt(db, n, W, Q, b_lo, b_hi, q_lo, q_hi, out);
    else
        hm_dist_portable(db, n, W, Q, b_lo, b_hi, q_lo, q_hi, out);
}

#endif /* FLEXCMH_HAMMING_KERNELS_H */
