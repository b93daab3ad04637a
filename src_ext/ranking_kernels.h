/* Per-query ranking statistics for retrieval evaluation (flexcmh_fast._ranking).
 *
 * For one query against the whole database this computes, in one pass over
 * the database codes, the Hamming distance of every item and whether it is
 * relevant (shares a label bit with the query), and from those:
 *   - the histograms of all / relevant items per distance,
 *   - average precision with a stable tie-break (ties ordered by database
 *     index), optionally truncated at rank top_k,
 *   - tie-aware average precision (McSherry & Najork 2008): the expectation
 *     of AP over all orders inside every tie group, in closed form,
 *   - precision at a sorted list of cut-offs ks (stable or tie-aware).
 *
 * The per-item pass works on blocks of RK_BLOCK items, for a tile of RK_TQ
 * queries at a time (each database block is read from memory once per tile
 * and reused from L1): a vectorisable loop writes (distance << 1 | relevant)
 * of every item of the block into a small buffer, then a scalar loop
 * histograms the block.  Relevance is a shared bit of the label masks
 * (multi-label) or equal 32-bit class ids (single-label).  For the tie-aware
 * statistics the histogram uses four interleaved sub-histograms, which break
 * the store-to-load dependency chain when consecutive items fall into the
 * same bin.  The stable tie-break needs, for every relevant item, the number
 * of items at the same distance with a smaller index: that is the running
 * count at its distance when the item is visited, so the stable variant
 * keeps one running count per distance and records (that count, distance)
 * for every relevant item with a branch-free compaction; a second loop over
 * the R relevant records (not over the database) then gives AP and
 * precision@k, adding the precisions in database order.
 *
 * On CPUs with AVX-512 VPOPCNTDQ / VBMI / VBMI2 / BITALG and GFNI, codes of
 * at most 128 bits with class ids or one label word take the fast pass
 * instead (rk_pass1_fast below: word-major blocks of 64 codes, vector
 * histograms, scalar work only per relevant item); it produces the same
 * histograms and records, so rk_finish is shared.
 *
 * Portability: the distance pass is one inline function over the popcount
 * layer of popcount.h, compiled once per popcount path (AVX-512 VPOPCNTDQ,
 * AVX2, POPCNT, portable) with the path's target attribute; the caller
 * passes the path selected in flexcmh_fast._hamming (rk_pass1_for_path),
 * so both extensions run the same path.  No host-tuned -march flag.
 */
#ifndef FLEXCMH_RANKING_KERNELS_H
#define FLEXCMH_RANKING_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <math.h>

#include "popcount.h"

#if defined(PC_X86) && defined(__x86_64__)
#define RK_X86_DISPATCH 1
#endif

#define RK_INLINE PC_INLINE

/* Items handled per block: the block's (distance, relevant) values are
 * computed in a vectorisable loop, then histogrammed by a scalar loop. */
#define RK_BLOCK 1024

typedef struct rk_params_s rk_params;

/* Signature of the distance pass (one variant per target ISA). */
typedef void (*rk_pass1_fn)(const rk_params *p, int nt, const uint64_t *q, const uint64_t *ql,
                            uint16_t *buf, int64_t *work, int64_t work_stride,
                            uint64_t *recs, int64_t rec_stride, int64_t *n_recs);

struct rk_params_s {
    int n_bits;            /* code length; distances are in [0, n_bits] */
    int n_words;           /* uint64 words per code */
    int n_label_words;     /* uint64 words per label mask */
    int64_t n_db;          /* database size */
    const uint64_t *db;    /* (n_db, n_words) codes, row-major */
    const uint64_t *db_labels; /* (n_db, n_label_words) label masks, or NULL */
    const uint32_t *db_ids;    /* (n_db,) class ids (single-label data), or NULL;
                                  then a query's label word holds its class id */
    int stable;            /* 1: stable tie-break by index; 0: tie-aware */
    int want_ap;           /* compute average precision */
    int64_t top_k;         /* truncate the ranking at top_k (0 = no truncation) */
    const int64_t *ks;     /* sorted, unique cut-offs for precision@k, each in [1, n_db] */
    int n_ks;
    const double *harmonic; /* harmonic[i] = 1 + 1/2 + ... + 1/i, i in [0, n_db] */
    rk_pass1_fn pass1;     /* rk_pass1_for_path() or rk_pass1_fast, once per call */
    /* Fast pass only (rk_pass1_fast), else NULL / 0: */
    const uint64_t *db_wm; /* codes in word-major blocks of 64, zero padded */
    const uint32_t *ids_pad;   /* class ids padded to n_blocks * 64, or NULL */
    const uint64_t *lab_pad;   /* single label words padded to n_blocks * 64, or NULL */
    const uint8_t *ids8;   /* class ids < 255 as bytes, padded, or NULL */
    int rel_range;         /* 1: database sorted by class (tie-aware only); a
                              query's label word is lo << 32 | hi, its class's
                              index range */
    int64_t n_blocks;      /* ceil(n_db / 64) */
};

/* How an item's relevance is decided (a compile-time constant of rk_block). */
#define RK_REL_IDS 0    /* single-label: equal 32-bit class ids */
#define RK_REL_LABEL 1  /* one label word: shared bit */
#define RK_REL_LABELS 2 /* n_label_words label words: shared bit */

/* Distance + relevance of items [start, start + n) into buf[0..n), as
 * (distance << 1 | relevant).  Inlined with W, rel and hw constant, the loop
 * unrolls and vectorises (VPOPCNTQ on the AVX-512 path).  Class ids read 4
 * bytes per database item instead of a one-hot mask of any width. */
RK_INLINE void rk_block(const rk_params *p, const uint64_t *q, const uint64_t *ql,
                        int64_t start, int64_t n, uint16_t *buf, const int W, const int rel,
                        const int hw)
{
    const int L = p->n_label_words;
    const uint64_t *db = p->db + start * W;
    const uint64_t *dl = rel == RK_REL_IDS ? NULL : p->db_labels + start * L;
    const uint32_t *ids = rel == RK_REL_IDS ? p->db_ids + start : NULL;
    /* Loaded once: buf cannot alias them, but the vectoriser must know. */
    const uint32_t q_id = (uint32_t)ql[0];
    const uint64_t q_label = ql[0];
    for (int64_t j = 0; j < n; j++) {
        const int d = pc_dist_row(q, db + j * W, W, hw);
        int relevant;
        if (rel == RK_REL_IDS) {
            relevant = ids[j] == q_id;
        } else if (rel == RK_REL_LABEL) {
            relevant = (q_label & dl[j]) != 0;
        } else {
            uint64_t any = 0;
            for (int l = 0; l < L; l++)
                any |= ql[l] & dl[j * L + l];
            relevant = any != 0;
        }
        buf[j] = (uint16_t)((d << 1) | relevant);
    }
}

/* Queries processed together by one thread: every block of database codes
 * is read from memory once and used for RK_TQ queries while it sits in L1. */
#define RK_TQ 4

/* Pass 1 for a tile of nt <= RK_TQ queries (rows of q / ql, strides n_words /
 * n_label_words): Hamming distance and relevance of every database item.
 * For query t, work + t * work_stride holds hist4 (scratch, 4 * HB int64)
 * followed by hist (HB int64, HB = 2 * (n_bits + 1)), which receives the
 * count of every value v = distance << 1 | relevant.  With p->stable,
 * rec + t * rec_stride receives one record per relevant item, in database
 * order: (a << 16) | d, with d its distance and a the number of items at
 * distance d with a smaller index; n_recs[t] is the number of records.
 * buf is scratch of RK_BLOCK uint16.  rk_pass1_impl is instantiated once
 * per popcount path (hw: the POPCNT instruction may be used) and the caller
 * picks the instance of the selected path. */
#define RK_PASS1_ARGS const rk_params *p, int nt, const uint64_t *q, const uint64_t *ql, \
                      uint16_t *buf, int64_t *work, int64_t work_stride,             \
                      uint64_t *recs, int64_t rec_stride, int64_t *n_recs

RK_INLINE void rk_pass1_impl(RK_PASS1_ARGS, const int hw)
{
    const int HB = 2 * (p->n_bits + 1);
    for (int t = 0; t < nt; t++) {
        memset(work + t * work_stride, 0, sizeof(int64_t) * 4 * HB);
        if (p->stable) {
            /* cnt[d] = (items seen at distance d) << 16 | d: the record of
             * the next item at d, ready to store (saves a shift and an or). */
            uint64_t *cnt = (uint64_t *)(work + t * work_stride);
            for (int d = 0; d <= p->n_bits; d++)
                cnt[d] = (uint64_t)d;
        }
        n_recs[t] = 0;
    }
    for (int64_t start = 0; start < p->n_db; start += RK_BLOCK) {
        int64_t n = p->n_db - start < RK_BLOCK ? p->n_db - start : RK_BLOCK;
        uint16_t *b = buf;
        for (int t = 0; t < nt; t++) {
            const uint64_t *qt = q + (int64_t)t * p->n_words;
            const uint64_t *qlt = ql + (int64_t)t * p->n_label_words;
            int64_t *hist4 = work + t * work_stride;
            if (p->db_ids != NULL)
                PC_WITH_W(p->n_words, rk_block(p, qt, qlt, start, n, b, PC_W, RK_REL_IDS, hw));
            else if (p->n_label_words == 1)
                PC_WITH_W(p->n_words, rk_block(p, qt, qlt, start, n, b, PC_W, RK_REL_LABEL, hw));
            else
                PC_WITH_W(p->n_words, rk_block(p, qt, qlt, start, n, b, PC_W, RK_REL_LABELS, hw));
            if (p->stable) {
                /* cnt[d] >> 16 is the running count of items at distance d,
                 * i.e. the number before item j.  The record cnt[d] is
                 * written for every item and kept only when the item is
                 * relevant (n_rec advances by v & 1): no branch. */
                uint64_t *cnt = (uint64_t *)hist4;
                uint64_t *rec = recs + t * rec_stride;
                int64_t n_rec = n_recs[t];
                for (int64_t j = 0; j < n; j++) {
                    const int v = b[j];
                    const uint64_t c = cnt[v >> 1];
                    rec[n_rec] = c;
                    cnt[v >> 1] = c + 65536;
                    n_rec += v & 1;
                }
                n_recs[t] = n_rec;
            } else {
                int64_t j = 0;
                for (; j + 4 <= n; j += 4) {
                    hist4[b[j]]++;
                    hist4[HB + b[j + 1]]++;
                    hist4[2 * HB + b[j + 2]]++;
                    hist4[3 * HB + b[j + 3]]++;
                }
                for (; j < n; j++)
                    hist4[b[j]]++;
            }
        }
    }
    for (int t = 0; t < nt; t++) {
        int64_t *hist4 = work + t * work_stride;
        int64_t *hist = hist4 + 4 * HB;
        if (p->stable) {
            /* Relevant counts per distance from the records (O(R)). */
            const uint64_t *rec = recs + t * rec_stride;
            const uint64_t *cnt = (const uint64_t *)hist4;
            int64_t *relc = hist4 + HB;
            for (int64_t r = 0; r < n_recs[t]; r++)
                relc[rec[r] & 0xFFFF]++;
            for (int d = 0; d <= p->n_bits; d++) {
                hist[2 * d] = (int64_t)(cnt[d] >> 16) - relc[d];
                hist[2 * d + 1] = relc[d];
            }
        } else {
            for (int v = 0; v < HB; v++)
                hist[v] = hist4[v] + hist4[HB + v] + hist4[2 * HB + v]
                          + hist4[3 * HB + v];
        }
    }
}

/* One instance per popcount path (popcount.h), indexed by PC_PATH_*. */
static void rk_pass1_portable(RK_PASS1_ARGS)
{
    rk_pass1_impl(p, nt, q, ql, buf, work, work_stride, recs, rec_stride, n_recs, 0);
}
static PC_TARGET_POPCNT void rk_pass1_popcnt(RK_PASS1_ARGS)
{
    rk_pass1_impl(p, nt, q, ql, buf, work, work_stride, recs, rec_stride, n_recs, 1);
}
#ifdef RK_X86_DISPATCH
static PC_TARGET_AVX2 void rk_pass1_avx2(RK_PASS1_ARGS)
{
    rk_pass1_impl(p, nt, q, ql, buf, work, work_stride, recs, rec_stride, n_recs, 1);
}
static PC_TARGET_AVX512 void rk_pass1_avx512(RK_PASS1_ARGS)
{
    rk_pass1_impl(p, nt, q, ql, buf, work, work_stride, recs, rec_stride, n_recs, 1);
}
static const rk_pass1_fn rk_pass1_by_path[PC_N_PATHS] = {rk_pass1_portable, rk_pass1_popcnt,
                                                         rk_pass1_avx2, rk_pass1_avx512};
#else
static const rk_pass1_fn rk_pass1_by_path[PC_N_PATHS] = {rk_pass1_portable, rk_pass1_popcnt,
                                                         rk_pass1_popcnt, rk_pass1_popcnt};
#endif

/* The distance pass of a popcount path (one the CPU supports). */
static rk_pass1_fn rk_pass1_for_path(int path)
{
    return rk_pass1_by_path[path];
}

/* ------------------------------------------------------------------ */
/* Fast pass: AVX-512 VPOPCNTDQ + VBMI + GFNI, word-major database.     */
/* ------------------------------------------------------------------ */
/*
 * Used for codes of at most RK_FAST_MAX_BITS bits with class ids or a
 * single label word.  The database is copied once per call into blocks of
 * 64 codes, word-major (word w of code i of block b at
 * db_wm[(b * W + w) * 64 + i]), with padded label arrays of n_blocks * 64
 * entries; padding lanes are masked out.
 *
 * Per query and block of 64 codes:
 *  - 8 vectors of XOR + VPOPCNTQ give 64 distances, packed into one vector
 *    of 64 bytes D (item i at byte i) with three levels of VPERMT2B;
 *  - the relevance of the 64 items is one 64-bit mask (VPCMPEQD on the
 *    class ids or VPTESTMQ on the label words);
 *  - the distances are histogrammed without scalar work: for every "plane"
 *    m of 8 distances 8m..8m+7, one VPERMT2B table lookup turns every byte
 *    d of D into a one-hot byte (bit d - 8m, or 0 when d is outside the
 *    plane), and one GF2P8AFFINEQB transposes every 8x8 bit block, so that
 *    byte b of qword p holds one bit per item of items 8p..8p+7 at distance
 *    8m+b.  A VPERMB then gathers, for every distance 8m+b, the 64-bit
 *    mask of the block's items at that distance (stable tie-break), or a
 *    VPOPCNTB counts them into byte counters (tie-aware; flushed with
 *    VPSADBW before they can overflow).
 * For the stable tie-break the running count per distance before every
 * block is kept; a relevant item j at distance d then has
 *     a = run[d] + popcount(mask[d] & (items of the block before j))
 * items at its distance with a smaller index, and its record (a << 16 | d)
 * is written in database order exactly as by the portable pass, so
 * rk_finish is shared and the results are bit-identical.  Only relevant
 * items get scalar work.  The mask bits are in the GF2P8AFFINEQB order
 * (bit 8p + k is item 8p + 7 - k), which rk_fast_before[] accounts for.
 *
 * Blocks are processed in chunks of RK_FAST_CHUNK blocks: a chunk of the
 * database stays in L1/L2 while every query of the tile uses it, and the
 * per-block intermediates of one query (distances, masks, running counts)
 * fit in L1.  For one query and chunk, pass A computes D and the masks of
 * every block, pass B walks the planes (each plane's table and running
 * counts stay in registers), pass C (stable) visits the relevant items.
 */
#define RK_FAST_MAX_BITS 128
#define RK_FAST_CHUNK 16
/* Per-distance arrays are padded to this many entries (8 * 16 planes + the
 * distance 128 bin + padding). */
#define RK_FAST_NBK 136
/* Scratch of one thread for the fast pass, in uint64 (see rk_fast_layout). */
#define RK_FAST_SCRATCH_U64 (8 + RK_FAST_CHUNK * 8 + 3 * RK_FAST_CHUNK      \
                             + 2 * RK_FAST_CHUNK * RK_FAST_NBK               \
                             + 3 * RK_TQ * RK_FAST_NBK + 8 * 64             \
                             + 3 * (RK_FAST_CHUNK * 8 + 8))

#ifdef RK_X86_DISPATCH
#include <immintrin.h>

#define RK_FAST_TARGET __attribute__((target( \
    "avx512f,avx512bw,avx512vl,avx512vpopcntdq,avx512bitalg,avx512vbmi,avx512vbmi2,gfni,popcnt,bmi,bmi2")))

/* rk_fast_before[j]: mask bits (in transposed order) of items 0..j-1. */
static uint64_t rk_fast_before[64];
/* rk_fast_tables[m][x] = (x >> 3 == m) ? 1 << (x & 7) : 0, x in [0, 128). */
static uint8_t rk_fast_tables[16][128] __attribute__((aligned(64)));

static void rk_fast_init_tables(void)
{
    for (int j = 0; j < 64; j++) {
        const int p = j >> 3, o = j & 7;
        uint64_t full = p > 0 ? (~UINT64_C(0) >> (64 - 8 * p)) : 0;
        uint64_t part = (uint64_t)((0xFF00u >> o) & 0xFFu) << (8 * p);
        rk_fast_before[j] = full | part;
    }
    for (int m = 0; m < 16; m++)
        for (int x = 0; x < 128; x++)
            rk_fast_tables[m][x] = (uint8_t)((x >> 3) == m ? 1u << (x & 7) : 0u);
}

/* Byte index vector: byte 8b + p <- byte 8p + b (8x8 byte transpose in
 * every 64-byte vector). */
RK_INLINE RK_FAST_TARGET __m512i rk_fast_idx_t(void)
{
    uint8_t idx[64];
    for (int b = 0; b < 8; b++)
        for (int p = 0; p < 8; p++)
            idx[8 * b + p] = (uint8_t)(8 * p + b);
    return _mm512_loadu_si512((const void *)idx);
}

/* 64 distances (bytes, item i at byte i) of block blk for query q. */
RK_INLINE RK_FAST_TARGET __m512i rk_fast_dist(const uint64_t *blk, const uint64_t *q, const int W,
                                              __m512i idx1, __m512i idx2)
{
    __m512i v[8];
    for (int k = 0; k < 8; k++) {
        __m512i acc = _mm512_popcnt_epi64(_mm512_xor_si512(
            _mm512_loadu_si512((const void *)(blk + 8 * k)), _mm512_set1_epi64((long long)q[0])));
        for (int w = 1; w < W; w++)
            acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(
                _mm512_loadu_si512((const void *)(blk + w * 64 + 8 * k)),
                _mm512_set1_epi64((long long)q[w]))));
        v[k] = acc;
    }
    __m512i a0 = _mm512_permutex2var_epi8(v[0], idx1, v[1]);
    __m512i a1 = _mm512_permutex2var_epi8(v[2], idx1, v[3]);
    __m512i a2 = _mm512_permutex2var_epi8(v[4], idx1, v[5]);
    __m512i a3 = _mm512_permutex2var_epi8(v[6], idx1, v[7]);
    __m512i b0 = _mm512_permutex2var_epi8(a0, idx2, a1);
    __m512i b1 = _mm512_permutex2var_epi8(a2, idx2, a3);
    return _mm512_inserti64x4(b0, _mm512_castsi512_si256(b1), 1);
}

/* Relevance of the 64 items of block blk (bit i = item i). */
RK_INLINE RK_FAST_TARGET uint64_t rk_fast_rel(const rk_params *p, int64_t blk, const uint64_t *ql)
{
    if (p->rel_range) {
        /* Database sorted by class: the query's class is the index range
         * [lo, hi) packed into its label word. */
        const int64_t lo = (int64_t)(ql[0] >> 32) - blk * 64;
        const int64_t hi = (int64_t)(ql[0] & 0xFFFFFFFFu) - blk * 64;
        const uint64_t below_hi = hi >= 64 ? ~UINT64_C(0) : hi <= 0 ? 0 : (UINT64_C(1) << hi) - 1;
        const uint64_t below_lo = lo >= 64 ? ~UINT64_C(0) : lo <= 0 ? 0 : (UINT64_C(1) << lo) - 1;
        return below_hi & ~below_lo;
    }
    if (p->ids8 != NULL)
        return _cvtmask64_u64(_mm512_cmpeq_epi8_mask(
            _mm512_loadu_si512((const void *)(p->ids8 + blk * 64)),
            _mm512_set1_epi8((char)(uint8_t)ql[0])));
    if (p->ids_pad != NULL) {
        const uint32_t *ids = p->ids_pad + blk * 64;
        const __m512i lab = _mm512_set1_epi32((int)(uint32_t)ql[0]);
        uint64_t r = 0;
        for (int k = 0; k < 4; k++)
            r |= (uint64_t)(__mmask16)(_mm512_cmpeq_epi32_mask(
                     _mm512_loadu_si512((const void *)(ids + 16 * k)), lab)) << (16 * k);
        return r;
    }
    const uint64_t *lw = p->lab_pad + blk * 64;
    const __m512i lab = _mm512_set1_epi64((long long)ql[0]);
    uint64_t r = 0;
    for (int k = 0; k < 8; k++)
        r |= (uint64_t)(__mmask8)(_mm512_test_epi64_mask(
                 _mm512_loadu_si512((const void *)(lw + 8 * k)), lab)) << (8 * k);
    return r;
}

/* Per-distance masks of a block in transposed bit order from its one-hot
 * plane bytes: qword b = items at distance 8m + b. */
RK_INLINE RK_FAST_TARGET __m512i rk_fast_transpose(__m512i onehot, __m512i gf_t)
{
    return _mm512_gf2p8affine_epi64_epi8(gf_t, onehot, 0);
}

/* Smallest / largest byte of a vector. */
RK_INLINE RK_FAST_TARGET int rk_fast_reduce_min(__m512i x)
{
    const __m512i ff = _mm512_set1_epi32(0xFF);
    __m512i m = _mm512_min_epu32(_mm512_and_si512(x, ff),
                                 _mm512_and_si512(_mm512_srli_epi32(x, 8), ff));
    m = _mm512_min_epu32(m, _mm512_min_epu32(_mm512_and_si512(_mm512_srli_epi32(x, 16), ff),
                                             _mm512_srli_epi32(x, 24)));
    return (int)_mm512_reduce_min_epu32(m);
}

RK_INLINE RK_FAST_TARGET int rk_fast_reduce_max(__m512i x)
{
    const __m512i ff = _mm512_set1_epi32(0xFF);
    __m512i m = _mm512_max_epu32(_mm512_and_si512(x, ff),
                                 _mm512_and_si512(_mm512_srli_epi32(x, 8), ff));
    m = _mm512_max_epu32(m, _mm512_max_epu32(_mm512_and_si512(_mm512_srli_epi32(x, 16), ff),
                                             _mm512_srli_epi32(x, 24)));
    return (int)_mm512_reduce_max_epu32(m);
}

RK_INLINE RK_FAST_TARGET void rk_fast_body(RK_PASS1_ARGS, const int W)
{
    const int n_bits = p->n_bits;
    const int P = (n_bits + 7) / 8;          /* planes: distances 0 .. 8P-1 */
    const int top = (n_bits == 8 * P);       /* distance n_bits = 8P needs its own bin */
    const int NBK = RK_FAST_NBK;
    const int64_t n_blocks = p->n_blocks;
    const __m512i gf_t = _mm512_set1_epi64((long long)UINT64_C(0x8040201008040201));
    const __m512i idx_t = rk_fast_idx_t();
    const __m512i lim = _mm512_set1_epi8((char)(8 * P));
    __m512i idx1, idx2;
    {
        uint8_t i1[64], i2[64];
        for (int i = 0; i < 64; i++) {
            i1[i] = (uint8_t)(i < 8 ? 8 * i : i < 16 ? 64 + 8 * (i - 8) : 0);
            i2[i] = (uint8_t)(i < 16 ? i : i < 32 ? 64 + (i - 16) : 0);
        }
        idx1 = _mm512_loadu_si512((const void *)i1);
        idx2 = _mm512_loadu_si512((const void *)i2);
    }
    /* Scratch (uint64, 64-byte aligned by the caller). */
    uint64_t *s = (uint64_t *)buf;
    uint8_t *dbuf = (uint8_t *)s;                s += RK_FAST_CHUNK * 8;
    uint64_t *krel = s;                          s += RK_FAST_CHUNK;
    uint64_t *kval = s;                          s += RK_FAST_CHUNK;
    uint64_t *ktop = s;                          s += RK_FAST_CHUNK;
    uint64_t *mbuf = s;                          s += RK_FAST_CHUNK * NBK;
    uint64_t *runbuf = s;                        s += RK_FAST_CHUNK * NBK;
    int64_t *state = (int64_t *)s;   /* per query: run / tot_all, tot_rel (NBK each) */
    s += 3 * RK_TQ * NBK;
    /* Relevant items of the chunk (stable): position in block, distance,
     * block, compacted with VPCOMPRESSB (64 bytes of slack each). */
    uint8_t *rel_j = (uint8_t *)s;   s += RK_FAST_CHUNK * 8 + 8;
    uint8_t *rel_d = (uint8_t *)s;   s += RK_FAST_CHUNK * 8 + 8;
    uint8_t *rel_b = (uint8_t *)s;
    const __m512i iota = _mm512_set_epi8(
        63, 62, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48,
        47, 46, 45, 44, 43, 42, 41, 40, 39, 38, 37, 36, 35, 34, 33, 32,
        31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16,
        15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);

    memset(state, 0, sizeof(int64_t) * 3 * RK_TQ * NBK);
    for (int t = 0; t < nt; t++)
        n_recs[t] = 0;

    for (int64_t c0 = 0; c0 < n_blocks; c0 += RK_FAST_CHUNK) {
        const int nc = (int)(n_blocks - c0 < RK_FAST_CHUNK ? n_blocks - c0 : RK_FAST_CHUNK);
        for (int t = 0; t < nt; t++) {
            const uint64_t *qt = q + (int64_t)t * p->n_words;
            const uint64_t *qlt = ql + (int64_t)t * p->n_label_words;
            int64_t *st = state + (int64_t)t * 3 * NBK;
            /* Pass A: distances and masks of every block of the chunk, and
             * the smallest / largest distance below 8P, so that pass B
             * skips the planes no item of the chunk falls into (distances
             * concentrate around n_bits / 2: for random codes 5 of 8
             * planes are used at 64 bits, 6 of 16 at 128 bits). */
            __m512i dmin = _mm512_set1_epi8((char)0xFF), dmax = _mm512_setzero_si512();
            int n_rel = 0;
            for (int b = 0; b < nc; b++) {
                const int64_t blk = c0 + b;
                const __m512i D = rk_fast_dist(p->db_wm + blk * W * 64, qt, W, idx1, idx2);
                _mm512_storeu_si512((void *)(dbuf + 64 * b), D);
                const int64_t rem = p->n_db - blk * 64;
                const uint64_t valid = rem >= 64 ? ~UINT64_C(0) : (UINT64_C(1) << rem) - 1;
                if (p->stable || n_bits >= 128) {
                    kval[b] = valid & _cvtmask64_u64(_mm512_cmplt_epu8_mask(D, lim));
                    ktop[b] = top ? valid & _cvtmask64_u64(_mm512_cmpeq_epi8_mask(D, lim)) : 0;
                } else {
                    /* Tie-aware below 128 bits: a distance 8P looks up
                     * table byte 8P < 128, which is 0 in every plane, and
                     * its count is found by difference at the end. */
                    kval[b] = valid;
                }
                krel[b] = valid & rk_fast_rel(p, blk, qlt);
                if (p->stable) {
                    const __mmask64 kr = _cvtu64_mask64(krel[b]);
                    _mm512_storeu_si512((void *)(rel_j + n_rel), _mm512_maskz_compress_epi8(kr, iota));
                    _mm512_storeu_si512((void *)(rel_d + n_rel), _mm512_maskz_compress_epi8(kr, D));
                    _mm512_storeu_si512((void *)(rel_b + n_rel), _mm512_set1_epi8((char)b));
                    n_rel += __builtin_popcountll(krel[b]);
                }
                dmin = _mm512_mask_min_epu8(dmin, _cvtu64_mask64(kval[b]), dmin, D);
                dmax = _mm512_mask_max_epu8(dmax, _cvtu64_mask64(kval[b]), dmax, D);
            }
            const int m_lo = rk_fast_reduce_min(dmin) >> 3;
            int m_hi = rk_fast_reduce_max(dmax) >> 3;  /* m_lo > m_hi: no plane */
            if (m_hi > P - 1)
                m_hi = P - 1;   /* distance 8P: its own bin */
            if (p->stable) {
                /* Pass B: per-distance masks and running counts before
                 * every block. */
                int64_t *run = st;
                for (int m = m_lo; m <= m_hi; m++) {
                    const __m512i tlo = _mm512_load_si512((const void *)rk_fast_tables[m]);
                    const __m512i thi = _mm512_load_si512((const void *)(rk_fast_tables[m] + 64));
                    __m512i r = _mm512_loadu_si512((const void *)(run + 8 * m));
                    for (int b = 0; b < nc; b++) {
                        const __m512i D = _mm512_loadu_si512((const void *)(dbuf + 64 * b));
                        const __m512i oh = _mm512_maskz_permutex2var_epi8(
                            _cvtu64_mask64(kval[b]), tlo, D, thi);
                        const __m512i M = _mm512_permutexvar_epi8(idx_t, rk_fast_transpose(oh, gf_t));
                        _mm512_storeu_si512((void *)(mbuf + b * NBK + 8 * m), M);
                        _mm512_storeu_si512((void *)(runbuf + b * NBK + 8 * m), r);
                        r = _mm512_add_epi64(r, _mm512_popcnt_epi64(M));
                    }
                    _mm512_storeu_si512((void *)(run + 8 * m), r);
                }
                if (top) {
                    const __m512i one = _mm512_set1_epi8(1);
                    for (int b = 0; b < nc; b++) {
                        const __m512i oh = _mm512_maskz_mov_epi8(_cvtu64_mask64(ktop[b]), one);
                        const __m512i M = _mm512_permutexvar_epi8(idx_t, rk_fast_transpose(oh, gf_t));
                        mbuf[b * NBK + 8 * P] = (uint64_t)_mm_cvtsi128_si64(_mm512_castsi512_si128(M));
                        runbuf[b * NBK + 8 * P] = (uint64_t)run[8 * P];
                        run[8 * P] += __builtin_popcountll(ktop[b]);
                    }
                }
                /* Pass C: one record per relevant item, in database order
                 * (one branch-free loop over the chunk's list). */
                uint64_t *rec = recs + t * rec_stride + n_recs[t];
                /* Relevant items per distance: two interleaved counters
                 * (consecutive items often share a distance; one counter
                 * would serialise on store forwarding). */
                int64_t *relc = st + NBK;
                for (int i = 0; i < n_rel; i++) {
                    const int j = rel_j[i], d = rel_d[i];
                    const int64_t o = (int64_t)rel_b[i] * NBK + d;
                    const uint64_t a = runbuf[o] + (uint64_t)__builtin_popcountll(mbuf[o] & rk_fast_before[j]);
                    rec[i] = (a << 16) | (uint64_t)d;
                    relc[(i & 1) * NBK + d]++;
                }
                const int64_t n_rec = n_recs[t] + n_rel;
                n_recs[t] = n_rec;
            } else {
                /* Pass B: byte counters per (8-item group, distance) for
                 * all and relevant items; at most 8 per block, so a chunk
                 * of RK_FAST_CHUNK <= 31 blocks cannot overflow them. */
                int64_t *tot_all = st, *tot_rel = st + NBK;
                const __m512i zero = _mm512_setzero_si512();
                for (int m = m_lo; m <= m_hi; m++) {
                    const __m512i tlo = _mm512_load_si512((const void *)rk_fast_tables[m]);
                    const __m512i thi = _mm512_load_si512((const void *)(rk_fast_tables[m] + 64));
                    __m512i ca = zero, cr = zero;
                    for (int b = 0; b < nc; b++) {
                        const __m512i D = _mm512_loadu_si512((const void *)(dbuf + 64 * b));
                        const __m512i oh = _mm512_maskz_permutex2var_epi8(
                            _cvtu64_mask64(kval[b]), tlo, D, thi);
                        ca = _mm512_add_epi8(ca, _mm512_popcnt_epi8(rk_fast_transpose(oh, gf_t)));
                        if (krel[b] != 0) {   /* rare when sorted by class */
                            const __m512i ohr = _mm512_maskz_mov_epi8(_cvtu64_mask64(krel[b]), oh);
                            cr = _mm512_add_epi8(cr, _mm512_popcnt_epi8(rk_fast_transpose(ohr, gf_t)));
                        }
                    }
                    /* Byte 8p + b counts distance 8m + b in group p: sum
                     * over p per distance. */
                    __m512i sa = _mm512_sad_epu8(_mm512_permutexvar_epi8(idx_t, ca), zero);
                    __m512i sr = _mm512_sad_epu8(_mm512_permutexvar_epi8(idx_t, cr), zero);
                    _mm512_storeu_si512((void *)(tot_all + 8 * m), _mm512_add_epi64(
                        _mm512_loadu_si512((const void *)(tot_all + 8 * m)), sa));
                    _mm512_storeu_si512((void *)(tot_rel + 8 * m), _mm512_add_epi64(
                        _mm512_loadu_si512((const void *)(tot_rel + 8 * m)), sr));
                }
                /* Distance 8P (n_bits == 8P): counted by difference at the
                 * end from these totals of valid / relevant items. */
                for (int b = 0; b < nc; b++) {
                    tot_all[NBK - 1] += __builtin_popcountll(kval[b]);
                    tot_rel[NBK - 1] += __builtin_popcountll(krel[b]);
                }
                if (n_bits >= 128)   /* kval excludes distance 8P here */
                    for (int b = 0; b < nc; b++)
                        tot_all[NBK - 1] += __builtin_popcountll(ktop[b]);
            }
        }
    }
    /* Histograms in the layout rk_finish expects (as the portable pass). */
    const int HB = 2 * (n_bits + 1);
    for (int t = 0; t < nt; t++) {
        int64_t *st = state + (int64_t)t * 3 * NBK;
        int64_t *hist = work + t * work_stride + 4 * HB;
        if (p->stable) {
            /* Relevant items per distance, counted by pass C. */
            const int64_t *relc = st + NBK, *relc2 = st + 2 * NBK;
            for (int d = 0; d <= n_bits; d++) {
                hist[2 * d] = st[d] - relc[d] - relc2[d];
                hist[2 * d + 1] = relc[d] + relc2[d];
            }
        } else {
            int64_t *tot_all = st, *tot_rel = st + NBK;
            if (top) {
                int64_t all = tot_all[NBK - 1], rel = tot_rel[NBK - 1];
                for (int d = 0; d < n_bits; d++) {
                    all -= tot_all[d];
                    rel -= tot_rel[d];
                }
                tot_all[n_bits] = all;
                tot_rel[n_bits] = rel;
            }
            for (int d = 0; d <= n_bits; d++) {
                hist[2 * d] = tot_all[d] - tot_rel[d];
                hist[2 * d + 1] = tot_rel[d];
            }
        }
    }
}

static RK_FAST_TARGET void rk_pass1_fast(RK_PASS1_ARGS)
{
    switch (p->n_words) {
    case 1: rk_fast_body(p, nt, q, ql, buf, work, work_stride, recs, rec_stride, n_recs, 1); break;
    default: rk_fast_body(p, nt, q, ql, buf, work, work_stride, recs, rec_stride, n_recs, 2); break;
    }
}

#else
/* Other compilers / CPUs: the fast pass is never selected
 * (pc_cpu_has_avx512_bytes() is 0); these keep the module's symbols defined. */
static void rk_fast_init_tables(void) {}
static void rk_pass1_fast(RK_PASS1_ARGS) { rk_pass1_portable(p, nt, q, ql, buf, work, work_stride,
                                                             recs, rec_stride, n_recs); }
#endif

/* Statistics of one query after pass 1 (work and rec as left by it).
 *   work: 12 * (n_bits + 1) + 2 + n_ks int64 (hist4 | hist | start_all |
 *   start_rel | pk_count); rec / n_rec: the query's relevant records.
 *   ap_out: AP (NaN when the query has no relevant item), written if want_ap.
 *   nrel_out: number of relevant items in the database.
 *   pk_out: precision at p->ks[i] (n_ks values).
 *   hall_out / hrel_out: histograms of all / relevant items per distance
 *   (n_bits + 1 values each), or NULL when not wanted. */
static void rk_finish(const rk_params *p, int64_t *work, const uint64_t *rec, int64_t n_rec,
                      double *ap_out, int64_t *nrel_out, double *pk_out,
                      int64_t *hall_out, int64_t *hrel_out)
{
    const int NB = p->n_bits + 1, HB = 2 * NB;
    int64_t *hist4 = work;                 /* 4 * HB, scratch after pass 1 */
    int64_t *hist = work + 4 * HB;         /* HB: value (d<<1|rel) -> count */
    int64_t *start_all = hist + HB;        /* NB + 1: items at distance < d */
    int64_t *start_rel = start_all + NB + 1; /* NB + 1: relevant items at distance < d */
    int64_t *pk_count = start_rel + NB + 1;  /* n_ks */
    const double *H = p->harmonic;

    start_all[0] = 0;
    start_rel[0] = 0;
    for (int d = 0; d < NB; d++) {
        start_all[d + 1] = start_all[d] + hist[2 * d] + hist[2 * d + 1];
        start_rel[d + 1] = start_rel[d] + hist[2 * d + 1];
    }
    const int64_t R = start_rel[NB];
    *nrel_out = R;
    if (hall_out != NULL) {
        for (int d = 0; d < NB; d++) {
            hall_out[d] = hist[2 * d] + hist[2 * d + 1];
            hrel_out[d] = hist[2 * d + 1];
        }
    }
    const int64_t K = (p->top_k > 0 && p->top_k < p->n_db) ? p->top_k : p->n_db;

    if (R == 0) {
        if (p->want_ap)
            *ap_out = NAN;
        for (int i = 0; i < p->n_ks; i++)
            pk_out[i] = 0.0;
        return;
    }

    if (p->stable) {
        /* A relevant item at distance d with a items before it at that
         * distance (smaller index) has rank start_all[d] + a + 1; being the
         * r-th relevant record at distance d (records are in database
         * order), its relevant-rank is start_rel[d] + r. */
        const int64_t kmax = p->n_ks > 0 ? p->ks[p->n_ks - 1] : 0;
        int64_t *seen_rel = hist4;  /* scratch after pass 1 */
        memset(seen_rel, 0, sizeof(int64_t) * NB);
        for (int i = 0; i < p->n_ks; i++)
            pk_count[i] = 0;
        double num = 0.0;
        int64_t n_in = 0;
        for (int64_t t = 0; t < n_rec; t++) {
            const int d = (int)(rec[t] & 0xFFFF);
            const int64_t rank = start_all[d] + (int64_t)(rec[t] >> 16) + 1;
            const int64_t rel_rank = start_rel[d] + (++seen_rel[d]);
            if (rank <= K) {
                num += (double)rel_rank / (double)rank;
                n_in++;
            }
            if (rank <= kmax) {
                int lo = 0, hi = p->n_ks - 1;   /* first i with ks[i] >= rank */
                while (lo < hi) {
                    int mid = (lo + hi) >> 1;
                    if (p->ks[mid] >= rank) hi = mid; else lo = mid + 1;
                }
                pk_count[lo]++;
            }
        }
        if (p->want_ap)
            *ap_out = n_in > 0 ? num / (double)n_in : 0.0;
        int64_t cum = 0;
        for (int i = 0; i < p->n_ks; i++) {
            cum += pk_count[i];
            pk_out[i] = (double)cum / (double)p->ks[i];
        }
        return;
    }

    /* Tie-aware.  A tie group at distance d holds n items, r of them
     * relevant, at ranks a+1..a+n, after Rb relevant items.  Over all orders
     * of the group, P(rank i relevant) = r/n and, given that, the expected
     * number of relevant items at ranks a+1..i-1 is (i-a-1)(r-1)/(n-1), so
     * E[rel(i) * prec(i)] = (r/n) (Rb + 1 + (i-a-1) c) / i with
     * c = (r-1)/(n-1).  Summed over i = a+1..e with harmonic numbers:
     * (r/n) (A (H_e - H_a) + c (e - a)), A = Rb + 1 - (a+1) c. */
    if (p->want_ap) {
        double num = 0.0, den = 0.0;
        for (int d = 0; d < NB; d++) {
            const int64_t a = start_all[d];
            if (a >= K)
                break;
            const int64_t n = start_all[d + 1] - a;
            const int64_t r = start_rel[d + 1] - start_rel[d];
            if (n == 0 || r == 0)
                continue;
            const int64_t e = a + n < K ? a + n : K;
            const double frac = (double)r / (double)n;
            const double c = n > 1 ? (double)(r - 1) / (double)(n - 1) : 0.0;
            const double A = (double)start_rel[d] + 1.0 - (double)(a + 1) * c;
            num += frac * (A * (H[e] - H[a]) + c * (double)(e - a));
            den += frac * (double)(e - a);
        }
        /* Without truncation den == R exactly; with top_k it is the expected
         * number of relevant items in the top k (ratio of expectations). */
        *ap_out = den > 0.0 ? num / den : 0.0;
    }
    int d = 0;
    for (int i = 0; i < p->n_ks; i++) {
        const int64_t k = p->ks[i];
        while (start_all[d + 1] < k)
            d++;
        const int64_t n = start_all[d + 1] - start_all[d];
        const double r = (double)(start_rel[d + 1] - start_rel[d]);
        const double exp_rel = (double)start_rel[d] + (double)(k - start_all[d]) * r / (double)n;
        pk_out[i] = exp_rel / (double)k;
    }
}


/* A tile of nt <= RK_TQ consecutive queries: pass 1 shared, then each
 * query's statistics.  Per-thread scratch: buf (RK_BLOCK uint16), work
 * (RK_TQ * work_stride int64), recs (RK_TQ * rec_stride uint64, stable
 * only).  Outputs are the rows of the tile's first query; pk has pk_stride
 * values per query, the histograms n_bits + 1 (or NULL). */
static void rk_query_tile(const rk_params *p, int nt, const uint64_t *q, const uint64_t *ql,
                          uint16_t *buf, int64_t *work, int64_t work_stride,
                          uint64_t *recs, int64_t rec_stride,
                          double *ap_out, int64_t *nrel_out, double *pk_out, int64_t pk_stride,
                          int64_t *hall_out, int64_t *hrel_out)
{
    int64_t n_recs[RK_TQ];
    const int NB = p->n_bits + 1;
    p->pass1(p, nt, q, ql, buf, work, work_stride, recs, rec_stride, n_recs);
    for (int t = 0; t < nt; t++)
        rk_finish(p, work + t * work_stride, recs + t * rec_stride, n_recs[t],
                  ap_out + t, nrel_out + t, pk_out + t * pk_stride,
                  hall_out != NULL ? hall_out + (int64_t)t * NB : NULL,
                  hrel_out != NULL ? hrel_out + (int64_t)t * NB : NULL);
}

#endif
