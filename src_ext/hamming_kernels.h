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
 * The operations (top-k and radius search, histogram, full distances) are
 * written once, in hamming_scan.inc, over a few per-path primitives (the
 * distances of one block to one query; a group test "may some code of
 * these blocks be below the threshold?" for a tile of queries) and
 * instantiated for each popcount path of popcount.h with the path's target
 * attribute:
 *   avx512   XOR + VPOPCNTQ on 8 codes a vector,
 *   avx2     group test on codes transposed to nibbles (a nibble position
 *            of 16 codes per 128-bit lane, one byte a code) with nibble
 *            tables per pair of queries, so the XOR disappears and one
 *            VPSHUFB gives the nibble distances of 32 codes to two queries;
 *            block distances by VPSHUFB nibble popcount + VPSADBW,
 *   popcnt   scalar POPCNT, portable   scalar bit trick.
 * hm_ops_for(path) gives the path's entry points.
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

/* Bit l set for every valid lane l of block b. */
static inline unsigned hm_lane_mask(int64_t b, int64_t n)
{
    return (1u << hm_lanes(b, n)) - 1u;
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
/* Entry points of one popcount path (see hamming_scan.inc).            */
/* ------------------------------------------------------------------ */
typedef struct {
    void (*topk)(const uint64_t *db, int64_t n, int W, int n_bits, const uint64_t *Q,
                 int64_t b_lo, int64_t b_hi, int64_t q_lo, int64_t q_hi,
                 int64_t cap, uint64_t *bufs, int32_t *cnts, int64_t *sts);
    void (*range)(const uint64_t *db, int64_t n, int W, const uint64_t *Q,
                  int64_t b_lo, int64_t b_hi, int64_t q_lo, int64_t q_hi,
                  int radius, int64_t *counts, uint64_t *out_keys);
    void (*hist)(const uint64_t *db, int64_t n, int W, int n_bits, const uint64_t *Q,
                 int64_t b_lo, int64_t b_hi, int64_t q_lo, int64_t q_hi, int64_t *hist);
    void (*dist)(const uint64_t *db, int64_t n, int W, const uint64_t *Q,
                 int64_t b_lo, int64_t b_hi, int64_t q_lo, int64_t q_hi, int32_t *out);
} hm_ops;

/* Paths without per-call or per-tile state in their group test. */
typedef struct {
    int unused;
} hm_ctx_none;
#define hm_ctx_init_none(ctx, chunk, Q, j0, TQ, W) ((void)(ctx))
typedef hm_ctx_none hm_chunk_none;
#define hm_chunk_open_none(ch, W, CH, nq) ((void)(ch))
#define hm_chunk_load_none(ch, db, W, cb, ce) ((void)(ch))
#define hm_chunk_close_none(ch) ((void)(ch))

/* ------------------------------------------------------------------ */
/* Scalar primitives (POPCNT instruction or portable bit trick).         */
/* ------------------------------------------------------------------ */
typedef struct {
    int32_t d[HM_BLOCK];
} hm_dv_scalar;

HM_INLINE hm_dv_scalar hm_bdist_scalar(const uint64_t *blk, const uint64_t *q, const int W,
                                       const int hw)
{
    hm_dv_scalar r;
    int w, l;
    for (l = 0; l < HM_BLOCK; l++)
        r.d[l] = 0;
    for (w = 0; w < W; w++)
        for (l = 0; l < HM_BLOCK; l++)
            r.d[l] += pc_popcount64(blk[w * HM_BLOCK + l] ^ q[w], hw);
    return r;
}

HM_INLINE unsigned hm_dv_below_scalar(hm_dv_scalar d, int t)
{
    unsigned m = 0;
    int l;
    for (l = 0; l < HM_BLOCK; l++)
        m |= (unsigned)(d.d[l] < t) << l;
    return m;
}

HM_INLINE void hm_dv_store_scalar(hm_dv_scalar d, int32_t *out)
{
    memcpy(out, d.d, sizeof(d.d));
}

HM_INLINE hm_dv_scalar hm_dv_ones_scalar(void)
{
    hm_dv_scalar r;
    int l;
    for (l = 0; l < HM_BLOCK; l++)
        r.d[l] = INT32_MAX;
    return r;
}

HM_INLINE hm_dv_scalar hm_dv_min_scalar(hm_dv_scalar a, hm_dv_scalar b)
{
    int l;
    for (l = 0; l < HM_BLOCK; l++)
        a.d[l] = b.d[l] < a.d[l] ? b.d[l] : a.d[l];
    return a;
}

#define HM_TQ 1
#define HM_TARGET
#define HM_ISA portable
#define hm_dv_portable hm_dv_scalar
#define HM_PLAIN_GROUP_TEST
#define hm_bdist_portable(blk, q, W) hm_bdist_scalar(blk, q, W, 0)
#define hm_dv_below_portable hm_dv_below_scalar
#define hm_dv_store_portable hm_dv_store_scalar
#define hm_dv_ones_portable hm_dv_ones_scalar
#define hm_dv_min_portable hm_dv_min_scalar
#include "hamming_scan.inc"
#undef HM_PLAIN_GROUP_TEST
#undef HM_ISA
#undef HM_TARGET

#define HM_TARGET PC_TARGET_POPCNT
#define HM_ISA popcnt
#define hm_dv_popcnt hm_dv_scalar
#define HM_PLAIN_GROUP_TEST
#define hm_bdist_popcnt(blk, q, W) hm_bdist_scalar(blk, q, W, 1)
#define hm_dv_below_popcnt hm_dv_below_scalar
#define hm_dv_store_popcnt hm_dv_store_scalar
#define hm_dv_ones_popcnt hm_dv_ones_scalar
#define hm_dv_min_popcnt hm_dv_min_scalar
#include "hamming_scan.inc"
#undef HM_PLAIN_GROUP_TEST
#undef HM_ISA
#undef HM_TARGET
#undef HM_TQ

#ifdef HM_X86
/* ------------------------------------------------------------------ */
/* AVX-512 VPOPCNTDQ primitives: one vector = word w of a block.         */
/* ------------------------------------------------------------------ */
#define HM_AVX512 PC_TARGET_AVX512
typedef __m512i hm_dv_avx512;

HM_INLINE HM_AVX512 __m512i hm_bdist_avx512(const uint64_t *blk, const uint64_t *q, const int W)
{
    __m512i acc = _mm512_popcnt_epi64(
        _mm512_xor_si512(_mm512_loadu_si512((const void *)blk), _mm512_set1_epi64((long long)q[0])));
    int w;
    for (w = 1; w < W; w++)
        acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(
            _mm512_loadu_si512((const void *)(blk + w * HM_BLOCK)), _mm512_set1_epi64((long long)q[w]))));
    return acc;
}

HM_INLINE HM_AVX512 unsigned hm_dv_below_avx512(__m512i d, int t)
{
    return _mm512_cmplt_epu64_mask(d, _mm512_set1_epi64(t));
}

HM_INLINE HM_AVX512 void hm_dv_store_avx512(__m512i d, int32_t *out)
{
    _mm256_storeu_si256((__m256i *)out, _mm512_cvtepi64_epi32(d));
}

HM_INLINE HM_AVX512 __m512i hm_dv_ones_avx512(void)
{
    return _mm512_set1_epi64(-1);
}

HM_INLINE HM_AVX512 __m512i hm_dv_min_avx512(__m512i a, __m512i b)
{
    return _mm512_min_epu64(a, b);
}

#define HM_TQ HM_QT
#define HM_TARGET HM_AVX512
#define HM_ISA avx512
#define HM_PLAIN_GROUP_TEST
#include "hamming_scan.inc"
#undef HM_PLAIN_GROUP_TEST
#undef HM_ISA
#undef HM_TARGET
#undef HM_TQ

/* ------------------------------------------------------------------ */
/* AVX2 primitives.                                                      */
/* ------------------------------------------------------------------ */
#define HM_AVX2 PC_TARGET_AVX2
/* Queries per tile (an even number: the nibble tables serve queries in
 * pairs); the tables stay in L1, every loaded nibble vector serves the
 * whole tile, and the 8 byte accumulators of 4 pairs leave registers for
 * the rest (10 measured as fast, 12 spills). */
#define HM_QT2 8
/* _hamming.pyx cuts query groups at multiples of HM_QT: whole AVX2 tiles. */
#if HM_QT % HM_QT2
#error "HM_QT must be a multiple of HM_QT2"
#endif
/* Longest code (in words) for the byte group test: distances accumulate in
 * bytes, exact below 256. */
#define HM_BYTES_MAX_W 4

/* Distances of lanes 0-3 (lo) and 4-7 (hi), one per 64-bit lane. */
typedef struct {
    __m256i lo, hi;
} hm_dv_avx2;

/* Byte counts are summed over up to 31 words (31 * 8 < 256) before the
 * horizontal VPSADBW. */
HM_INLINE HM_AVX2 hm_dv_avx2 hm_bdist_avx2(const uint64_t *blk, const uint64_t *q, const int W)
{
    const __m256i zero = _mm256_setzero_si256();
    __m256i s0 = zero, s1 = zero;
    hm_dv_avx2 r;
    int w, c = 0;
    r.lo = r.hi = zero;
    for (w = 0; w < W; w++) {
        __m256i qv = _mm256_set1_epi64x((long long)q[w]);
        s0 = _mm256_add_epi8(s0, pc_bytes256(_mm256_xor_si256(
            _mm256_loadu_si256((const __m256i *)(blk + w * HM_BLOCK)), qv)));
        s1 = _mm256_add_epi8(s1, pc_bytes256(_mm256_xor_si256(
            _mm256_loadu_si256((const __m256i *)(blk + w * HM_BLOCK + 4)), qv)));
        if (++c == 31 || w == W - 1) {
            r.lo = _mm256_add_epi64(r.lo, _mm256_sad_epu8(s0, zero));
            r.hi = _mm256_add_epi64(r.hi, _mm256_sad_epu8(s1, zero));
            s0 = s1 = zero;
            c = 0;
        }
    }
    return r;
}

HM_INLINE HM_AVX2 unsigned hm_dv_below_avx2(hm_dv_avx2 d, int t)
{
    const __m256i T = _mm256_set1_epi64x(t);
    unsigned lo = (unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(T, d.lo)));
    unsigned hi = (unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(T, d.hi)));
    return lo | hi << 4;
}

/* Lane-wise minimum; the high halves of the 64-bit lanes are zero (but
 * in the initial all-ones value), so a 32-bit unsigned minimum does. */
HM_INLINE HM_AVX2 hm_dv_avx2 hm_dv_ones_avx2(void)
{
    hm_dv_avx2 r;
    r.lo = r.hi = _mm256_set1_epi64x(-1);
    return r;
}

HM_INLINE HM_AVX2 hm_dv_avx2 hm_dv_min_avx2(hm_dv_avx2 a, hm_dv_avx2 b)
{
    a.lo = _mm256_min_epu32(a.lo, b.lo);
    a.hi = _mm256_min_epu32(a.hi, b.hi);
    return a;
}

HM_INLINE HM_AVX2 void hm_dv_store_avx2(hm_dv_avx2 d, int32_t *out)
{
    /* 32-bit element 2i <- lane i, 2i + 1 <- lane 4 + i; then in order. */
    __m256i x = _mm256_blend_epi32(d.lo, _mm256_slli_epi64(d.hi, 32), 0xAA);
    x = _mm256_permutevar8x32_epi32(x, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
    _mm256_storeu_si256((__m256i *)out, x);
}

/*
 * Per-call state of the byte group test (bytes != 0: codes of at most
 * HM_BYTES_MAX_W words; longer codes take the group test from block
 * distances).  The group test reads the codes as nibbles, one byte a code:
 * for quad i of 32 codes (blocks 4i .. 4i + 3 of a chunk or group, a last
 * quad past its end repeating the last block: a duplicate code does not
 * change a minimum), vector (w * 16 + 2 * p + h) holds nibble h (0 low, 1
 * high) of byte p of word w of the 32 codes (16 codes per 128-bit lane, in
 * the order of hm_bytes_transpose).  With enough queries to share it (nib
 * != NULL) the whole chunk [cb, ce) is transposed once, for every tile;
 * otherwise (or if nib could not be allocated) each group test transposes
 * its quads itself, as a separate pass over the chunk costs more than it
 * saves for a few tiles.
 */
typedef struct {
    int bytes;
    __m256i *nib;
    int64_t cb;
} hm_chunk_avx2;

/* Queries from which a call transposes whole chunks: with fewer, the
 * separate pass costs more than it saves (docs/benchmarks.md, "AVX2 linear
 * scan"). */
#define HM_CHUNK_NIB_MIN_Q 32

HM_INLINE HM_AVX2 void hm_chunk_open_avx2(hm_chunk_avx2 *ch, const int W, int64_t CH,
                                          int64_t nq)
{
    ch->bytes = W <= HM_BYTES_MAX_W;
    ch->cb = 0;
    ch->nib = ch->bytes && nq >= HM_CHUNK_NIB_MIN_Q
                  ? (__m256i *)_mm_malloc(sizeof(__m256i) * 16 * W * ((CH + 3) / 4), 32)
                  : NULL;
}

HM_INLINE HM_AVX2 void hm_chunk_close_avx2(hm_chunk_avx2 *ch)
{
    if (ch->nib)
        _mm_free(ch->nib);
}

/*
 * Word w of the 32 codes of blocks blk[0..3] (4 blocks of 8), transposed so
 * that out[p] holds byte p of 16 codes in each 128-bit lane (the same 32
 * codes, in the same order, for every p and w).  Four levels of in-lane
 * unpacks; the interleave of the first level puts positions 0-3 of each
 * code in the low half of a 16-bit-element vector, which the next levels
 * split.
 */
HM_INLINE HM_AVX2 void hm_bytes_transpose(const uint64_t *const *blk, int w, __m256i *out)
{
    __m256i x[8], y[8], z[8], u[8];
    int k;
    for (k = 0; k < 4; k++) {
        x[2 * k] = _mm256_loadu_si256((const __m256i *)(blk[k] + w * HM_BLOCK));
        x[2 * k + 1] = _mm256_loadu_si256((const __m256i *)(blk[k] + w * HM_BLOCK + 4));
    }
    /* y: 16-bit element p = byte p of two codes */
    for (k = 0; k < 4; k++) {
        y[2 * k] = _mm256_unpacklo_epi8(x[2 * k], x[2 * k + 1]);
        y[2 * k + 1] = _mm256_unpackhi_epi8(x[2 * k], x[2 * k + 1]);
    }
    /* z[2k]: 32-bit element e = byte e (0-3) of 4 codes; z[2k+1]: bytes 4-7 */
    for (k = 0; k < 4; k++) {
        z[2 * k] = _mm256_unpacklo_epi16(y[2 * k], y[2 * k + 1]);
        z[2 * k + 1] = _mm256_unpackhi_epi16(y[2 * k], y[2 * k + 1]);
    }
    /* u: 64-bit element f = one byte of 8 codes: u[0] bytes 0,1; u[1] 2,3;
     * u[2] 4,5; u[3] 6,7 (codes of z[0..3]); u[4..7] the same for z[4..7] */
    for (k = 0; k < 2; k++) {
        u[4 * k] = _mm256_unpacklo_epi32(z[4 * k], z[4 * k + 2]);
        u[4 * k + 1] = _mm256_unpackhi_epi32(z[4 * k], z[4 * k + 2]);
        u[4 * k + 2] = _mm256_unpacklo_epi32(z[4 * k + 1], z[4 * k + 3]);
        u[4 * k + 3] = _mm256_unpackhi_epi32(z[4 * k + 1], z[4 * k + 3]);
    }
    for (k = 0; k < 4; k++) {
        out[2 * k] = _mm256_unpacklo_epi64(u[k], u[4 + k]);
        out[2 * k + 1] = _mm256_unpackhi_epi64(u[k], u[4 + k]);
    }
}

/* The nibbles of the quad of blocks b0 .. b0 + 3 (blocks from end on
 * repeat block end - 1) into out[0 .. 16 W). */
HM_INLINE HM_AVX2 void hm_quad_nibbles(const uint64_t *db, const int W, int64_t b0, int64_t end,
                                       __m256i *out)
{
    const __m256i low = _mm256_set1_epi8(0x0f);
    const uint64_t *blk[4];
    int w, p, k;
    for (k = 0; k < 4; k++)
        blk[k] = db + (b0 + k < end ? b0 + k : end - 1) * W * HM_BLOCK;
    for (w = 0; w < W; w++, out += 16) {
        __m256i bytes[8];
        hm_bytes_transpose(blk, w, bytes);
        for (p = 0; p < 8; p++) {
            _mm256_store_si256(out + 2 * p, _mm256_and_si256(bytes[p], low));
            _mm256_store_si256(out + 2 * p + 1,
                               _mm256_and_si256(_mm256_srli_epi16(bytes[p], 4), low));
        }
    }
}

HM_INLINE HM_AVX2 void hm_chunk_load_avx2(hm_chunk_avx2 *ch, const uint64_t *db, const int W,
                                          int64_t cb, int64_t ce)
{
    int64_t b0;
    if (!ch->nib)
        return;
    ch->cb = cb;
    for (b0 = cb; b0 < ce; b0 += 4)
        hm_quad_nibbles(db, W, b0, ce, ch->nib + (b0 - cb) / 4 * W * 16);
}

/*
 * Per-tile state of the byte group test: the chunk, and for the pair of
 * queries (2i, 2i + 1) of the tile (B = 0 for a tile of one query)
 * and nibble position s = 2 * (8 * w + p) + h of the code (nibble h of byte
 * p of word w), the table
 *   tab[s * HM_QT2 / 2 + i][v] = popcount(v ^ a) + 16 * popcount(v ^ b)
 * with a, b that nibble of the two queries (v in 0..15), so that a VPSHUFB
 * of the code nibbles at position s gives the distances of 32 codes to
 * both queries at once, in the two halves of each byte (no XOR).
 */
typedef struct {
    const hm_chunk_avx2 *chunk;
    __m256i tab[HM_BYTES_MAX_W * 16 * (HM_QT2 / 2)];
    /* dist[i][j]: distances of quad i of the last group tested to query j,
     * one byte a code in the order of the nibbles */
    __m256i dist[HM_G / 4][HM_QT2];
    /* the nibbles of the group's quads when the chunk has none */
    __m256i quad[HM_G / 4][HM_BYTES_MAX_W * 16];
} hm_ctx_avx2;

HM_INLINE HM_AVX2 void hm_ctx_init_avx2(hm_ctx_avx2 *ctx, const hm_chunk_avx2 *chunk,
                                        const uint64_t *Q, int64_t j0, const int TQ,
                                        const int W)
{
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i iota = _mm256_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
                                          0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    int s, j;
    ctx->chunk = chunk;
    if (!chunk->bytes)
        return;
    for (s = 0; s < 16 * W; s++)
        for (j = 0; j < TQ; j += 2) {
            const int w = s / 16, shift = 4 * (s % 16);
            const uint64_t *qa = Q + (j0 + j) * W;
            const __m256i a = _mm256_shuffle_epi8(
                lut, _mm256_xor_si256(iota, _mm256_set1_epi8((char)((qa[w] >> shift) & 15))));
            const __m256i b = j + 1 < TQ ? _mm256_shuffle_epi8(lut, _mm256_xor_si256(
                                               iota, _mm256_set1_epi8((char)((qa[W + w] >> shift) & 15))))
                                         : _mm256_setzero_si256();
            ctx->tab[s * (HM_QT2 / 2) + j / 2] = _mm256_or_si256(a, _mm256_slli_epi16(b, 4));
        }
}

/*
 * Byte group test (the chunk's nibbles), per quad of 32 codes and pair of
 * queries.  A byte c of a lookup is A + 16 B (A, B the distances of one
 * code's nibble to the two queries, <= 4); three lookups added keep A <= 12
 * in the low half.  Two byte accumulators, with wrapping adds (exact modulo
 * 256), take
 *   DA += c                 -> A + 16 B per code,
 *   DB += c >> 4 (16-bit)   -> B + 16 A' for an even byte, where A' is the
 *                              A of the odd byte above it; B for an odd one
 * (the 16-bit shift carries the odd byte's low half down, which the
 * decoding below removes), i.e. 1.33 VPSHUFB and 2.67 other operations per
 * pair of queries and nibble position instead of 2 + 2 for one table per
 * query.  Decoding in 16-bit lanes (lo = even byte, hi = odd byte):
 *   B_hi = DB_hi;  A_hi = DA_hi - 16 B_hi;  B_lo = DB_lo - 16 A_hi;
 *   A_lo = DA_lo - 16 B_lo.
 * The distances of each quad are kept in ctx->dist for hm_topk_bytes, and
 * their minimum over the group is compared with the thresholds.  Bytes are
 * exact below 256; a distance of exactly 256 (W = 4) wraps to 0, which can
 * only make the test pass and the candidate check decide, never miss a
 * code.  (VPADDB rather than the saturating VPADDUSB: the latter issues on
 * half the vector ports on Zen 4.)
 */
HM_INLINE HM_AVX2 unsigned hm_group_test_bytes(hm_ctx_avx2 *ctx, const uint64_t *db,
                                               const int W, int64_t g, int64_t ge,
                                               const int TQ, const int *thr)
{
    const __m256i hi_high4 = _mm256_set1_epi16((short)0xf000);
    const __m256i lo_high4 = _mm256_set1_epi16(0x00f0);
    const int NP = (TQ + 1) / 2, S = 16 * W;
    unsigned pass = 0;
    int64_t b0;
    int i, j, s, nquads = 0;
    for (b0 = g; b0 < ge; b0 += 4, nquads++) {
        const __m256i *nib = ctx->quad[nquads];
        __m256i da[HM_QT2 / 2], db_acc[HM_QT2 / 2];
        if (ctx->chunk->nib)
            nib = ctx->chunk->nib + (b0 - ctx->chunk->cb) / 4 * W * 16;
        else
            hm_quad_nibbles(db, W, b0, ge, ctx->quad[nquads]);
        for (j = 0; j < NP; j++)
            da[j] = db_acc[j] = _mm256_setzero_si256();
        if (TQ == 1) { /* B = 0: DA is the distance, one add a lookup */
            for (s = 0; s < S; s++)
                da[0] = _mm256_add_epi8(da[0], _mm256_shuffle_epi8(ctx->tab[s * (HM_QT2 / 2)],
                                                                   _mm256_load_si256(nib + s)));
            _mm256_store_si256(&ctx->dist[nquads][0], da[0]);
            continue;
        }
        for (s = 0; s + 3 <= S; s += 3) {
            const __m256i n0 = _mm256_load_si256(nib + s);
            const __m256i n1 = _mm256_load_si256(nib + s + 1);
            const __m256i n2 = _mm256_load_si256(nib + s + 2);
            const __m256i *t = ctx->tab + s * (HM_QT2 / 2);
            for (j = 0; j < NP; j++) {
                const __m256i c = _mm256_add_epi8(
                    _mm256_add_epi8(_mm256_shuffle_epi8(t[j], n0),
                                    _mm256_shuffle_epi8(t[HM_QT2 / 2 + j], n1)),
                    _mm256_shuffle_epi8(t[HM_QT2 + j], n2));
                da[j] = _mm256_add_epi8(da[j], c);
                db_acc[j] = _mm256_add_epi8(db_acc[j], _mm256_srli_epi16(c, 4));
            }
        }
        for (; s < S; s++) { /* 16 W is not a multiple of 3 */
            const __m256i n0 = _mm256_load_si256(nib + s);
            const __m256i *t = ctx->tab + s * (HM_QT2 / 2);
            for (j = 0; j < NP; j++) {
                const __m256i c = _mm256_shuffle_epi8(t[j], n0);
                da[j] = _mm256_add_epi8(da[j], c);
                db_acc[j] = _mm256_add_epi8(db_acc[j], _mm256_srli_epi16(c, 4));
            }
        }
        for (j = 0; j < NP; j++) {
            /* A_hi in the odd bytes (16 B_hi removed), then B, then A_lo */
            __m256i A = _mm256_sub_epi8(da[j], _mm256_and_si256(_mm256_slli_epi16(db_acc[j], 4),
                                                                hi_high4));
            const __m256i B = _mm256_sub_epi8(db_acc[j], _mm256_and_si256(_mm256_srli_epi16(A, 4),
                                                                      lo_high4));
            A = _mm256_sub_epi8(A, _mm256_and_si256(_mm256_slli_epi16(B, 4), lo_high4));
            _mm256_store_si256(&ctx->dist[nquads][2 * j], A);
            if (2 * j + 1 < TQ)
                _mm256_store_si256(&ctx->dist[nquads][2 * j + 1], B);
        }
    }
    for (j = 0; j < TQ; j++) {
        __m256i m = _mm256_load_si256(&ctx->dist[0][j]);
        for (i = 1; i < nquads; i++)
            m = _mm256_min_epu8(m, _mm256_load_si256(&ctx->dist[i][j]));
        if (thr[j] > 255) {
            pass |= 1u << j;
        } else if (thr[j] > 0) {
            /* some byte <= thr - 1 */
            const __m256i t = _mm256_set1_epi8((char)(thr[j] - 1));
            if (_mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_min_epu8(m, t), m)))
                pass |= 1u << j;
        }
    }
    return pass;
}

/*
 * Push the codes of blocks [g, ge) below thr for query j of the tile from
 * the byte distances of its group test: a VPERMQ and a VPSHUFB put a quad's
 * 32 bytes in id order (byte r of 128-bit lane L of the nibble order is
 * code 8 * (r / 4) + (0, 4, 1, 5)[r % 4] + 2 * L of the quad), a compare
 * selects the candidates, and each candidate's distance is recomputed
 * exactly (W POPCNTs), which also undoes the wrap of a distance of 256.
 */
static HM_AVX2 __attribute__((noinline)) int hm_topk_bytes(
    const hm_ctx_avx2 *ctx, const uint64_t *db, int64_t n, const int W, const uint64_t *q,
    int j, int64_t g, int64_t ge, int64_t cap, uint64_t *buf, int32_t *cnt, int64_t *st,
    int thr)
{
    const __m256i id_order = _mm256_setr_epi8(0, 2, 8, 10, 1, 3, 9, 11, 4, 6, 12, 14, 5, 7, 13,
                                              15, 0, 2, 8, 10, 1, 3, 9, 11, 4, 6, 12, 14, 5, 7,
                                              13, 15);
    const int64_t end = n < ge * HM_BLOCK ? n : ge * HM_BLOCK;
    int64_t b0;
    int i;
    for (b0 = g, i = 0; b0 < ge && thr > 0; b0 += 4, i++) {
        const __m256i d = _mm256_shuffle_epi8(
            _mm256_permute4x64_epi64(_mm256_load_si256(&ctx->dist[i][j]), 0xD8), id_order);
        const __m256i t = _mm256_set1_epi8((char)((thr > 256 ? 256 : thr) - 1));
        const int64_t valid = end - b0 * HM_BLOCK;
        unsigned m = (unsigned)_mm256_movemask_epi8(
            _mm256_cmpeq_epi8(_mm256_min_epu8(d, t), d));
        if (valid < 32)
            m &= (1u << valid) - 1u;
        while (m) {
            const int64_t id = b0 * HM_BLOCK + __builtin_ctz(m);
            const uint64_t *code = db + (id / HM_BLOCK) * W * HM_BLOCK + id % HM_BLOCK;
            int dist = 0, w;
            m &= m - 1;
            for (w = 0; w < W; w++)
                dist += pc_popcount64(code[w * HM_BLOCK] ^ q[w], 1);
            if (dist < thr)
                thr = hm_sel_push(buf, cnt, st, cap, dist, id);
        }
    }
    return thr;
}

/* Longer codes (or no nibble buffer): the group test from block distances
 * (VPSADBW). */
#define hm_group_test_avx2(ctx, db, W, Q, j0, TQ, g, ge, thr)                   \
    ((ctx)->chunk->bytes ? hm_group_test_bytes(ctx, db, W, g, ge, TQ, thr)       \
                         : hm_group_min_test_avx2(db, W, Q, j0, TQ, g, ge, thr))
#define hm_topk_hits_avx2(ctx, db, n, W, q, j, g, ge, cap, buf, cnt, st, thr)                \
    ((ctx)->chunk->bytes ? hm_topk_bytes(ctx, db, n, W, q, j, g, ge, cap, buf, cnt, st, thr)   \
                         : hm_topk_rescan_avx2(db, n, W, q, g, ge, cap, buf, cnt, st, thr))

#define HM_TQ HM_QT2
#define HM_TARGET HM_AVX2
#define HM_ISA avx2
#include "hamming_scan.inc"
#undef HM_ISA
#undef HM_TARGET
#undef HM_TQ
#endif /* HM_X86 */

/* Entry points of a popcount path (one the CPU supports). */
static const hm_ops *hm_ops_for(int path)
{
#ifdef HM_X86
    static const hm_ops *const by_path[PC_N_PATHS] = {&hm_ops_portable, &hm_ops_popcnt,
                                                      &hm_ops_avx2, &hm_ops_avx512};
#else
    static const hm_ops *const by_path[PC_N_PATHS] = {&hm_ops_portable, &hm_ops_popcnt,
                                                      &hm_ops_popcnt, &hm_ops_popcnt};
#endif
    return by_path[path];
}

/* ------------------------------------------------------------------ */
/* One call's work, run task by task.                                   */
/* ------------------------------------------------------------------ */
/*
 * flexcmh_fast._hamming cuts a call into tasks = (database part, group of
 * queries) and runs them in parallel; a task owns its outputs (per part
 * for top-k state, range counts and histograms), so there are no races.
 */
#define HM_OP_TOPK 0
#define HM_OP_RANGE 1
#define HM_OP_HIST 2
#define HM_OP_DIST 3

typedef struct {
    int op; /* HM_OP_* */
    const hm_ops *ops;
    const uint64_t *db;
    int64_t n, nq;
    int W, n_bits;
    const uint64_t *Q;
    /* top-k: selection state of part s at bufs + s * nq * 2 * cap, cnts +
     * s * nq * (n_bits + 2), sts + s * nq * HM_ST_SIZE; with one part the
     * task also writes its queries' results (finalize, pos: n_bits + 2
     * scratch per thread) */
    int64_t cap, k;
    uint64_t *bufs;
    int32_t *cnts;
    int64_t *sts, *pos;
    int finalize;
    int32_t *out_d;
    int64_t *out_i;
    /* radius search: counts (keys == NULL) or write cursors of part s at
     * counts + s * nq */
    int radius;
    int64_t *counts;
    uint64_t *keys;
    /* histograms of part s at hist + s * nq * (n_bits + 1) */
    int64_t *hist;
    /* distance matrix (nq, n) */
    int32_t *dist;
} hm_job;

static void hm_job_run(const hm_job *J, int64_t part, int64_t b_lo, int64_t b_hi,
                       int64_t q_lo, int64_t q_hi, int tid)
{
    const int64_t nq = J->nq;
    int64_t j;
    switch (J->op) {
    case HM_OP_TOPK:
        J->ops->topk(J->db, J->n, J->W, J->n_bits, J->Q, b_lo, b_hi, q_lo, q_hi, J->cap,
                     J->bufs + part * nq * 2 * J->cap,
                     J->cnts + part * nq * (int64_t)(J->n_bits + 2),
                     J->sts + part * nq * HM_ST_SIZE);
        if (J->finalize)
            for (j = q_lo; j < q_hi; j++)
                hm_topk_finalize(J->bufs, J->cnts, J->sts, 1, nq, j, J->cap, J->k, J->n_bits,
                                 J->pos + tid * (int64_t)(J->n_bits + 2), J->out_d, J->out_i);
        break;
    case HM_OP_RANGE:
        J->ops->range(J->db, J->n, J->W, J->Q, b_lo, b_hi, q_lo, q_hi, J->radius,
                      J->counts + part * nq, J->keys);
        break;
    case HM_OP_HIST:
        J->ops->hist(J->db, J->n, J->W, J->n_bits, J->Q, b_lo, b_hi, q_lo, q_hi,
                     J->hist + part * nq * (int64_t)(J->n_bits + 1));
        break;
    default:
        J->ops->dist(J->db, J->n, J->W, J->Q, b_lo, b_hi, q_lo, q_hi, J->dist);
        break;
    }
}

#endif /* FLEXCMH_HAMMING_KERNELS_H */
