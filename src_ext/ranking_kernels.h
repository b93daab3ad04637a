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
 * Portability: the distance pass is compiled three times - AVX-512
 * VPOPCNTDQ, POPCNT and portable - with the GCC/Clang target attribute, and
 * the variant for the running CPU is picked at run time with
 * __builtin_cpu_supports (GCC 12's target_clones cannot dispatch on the
 * AVX-512 sub-features).  No -march=native is needed; other compilers and
 * CPUs get the portable version (__builtin_popcountll is correct everywhere).
 */
#ifndef FLEXCMH_RANKING_KERNELS_H
#define FLEXCMH_RANKING_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <math.h>

#if defined(__GNUC__) && defined(__x86_64__)
#define RK_X86_DISPATCH 1
#endif

#if defined(__GNUC__)
#define RK_INLINE static inline __attribute__((always_inline))
#else
#define RK_INLINE static inline
#endif

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
    rk_pass1_fn pass1;     /* from rk_select_pass1(), chosen once per call */
};

/* Distance + relevance of items [start, start + n) into buf[0..n). */
RK_INLINE void rk_block_generic(const rk_params *p, const uint64_t *q, const uint64_t *ql,
                                int64_t start, int64_t n, uint16_t *buf)
{
    const int W = p->n_words, L = p->n_label_words;
    const uint64_t *db = p->db + start * W;
    const uint64_t *dl = p->db_labels + start * L;
    for (int64_t j = 0; j < n; j++) {
        int d = 0;
        for (int w = 0; w < W; w++)
            d += __builtin_popcountll(q[w] ^ db[j * W + w]);
        uint64_t any = 0;
        for (int l = 0; l < L; l++)
            any |= ql[l] & dl[j * L + l];
        buf[j] = (uint16_t)((d << 1) | (any != 0));
    }
}

/* Specialisations with compile-time code width and a single label word, so
 * the compiler unrolls and vectorises (vpopcntq on AVX-512 VPOPCNTDQ). */
#define RK_BLOCK_FIXED(WW)                                                        \
RK_INLINE void rk_block_w##WW(const rk_params *p, const uint64_t *q,               \
                              const uint64_t *ql, int64_t start, int64_t n,        \
                              uint16_t *buf)                                       \
{                                                                                 \
    const uint64_t *db = p->db + start * (WW);                                    \
    const uint64_t *dl = p->db_labels + start;                                    \
    const uint64_t lab = ql[0];                                                   \
    for (int64_t j = 0; j < n; j++) {                                             \
        int d = 0;                                                                \
        for (int w = 0; w < (WW); w++)                                            \
            d += __builtin_popcountll(q[w] ^ db[j * (WW) + w]);                   \
        buf[j] = (uint16_t)((d << 1) | ((lab & dl[j]) != 0));                     \
    }                                                                             \
}
RK_BLOCK_FIXED(1)
RK_BLOCK_FIXED(2)
RK_BLOCK_FIXED(4)

/* Single-label data: relevance is equality of 32-bit class ids, which reads
 * 4 bytes per database item instead of a one-hot mask of any width. */
#define RK_BLOCK_IDS(WW, NAME)                                                    \
RK_INLINE void rk_block_ids_##NAME(const rk_params *p, const uint64_t *q,          \
                                   const uint64_t *ql, int64_t start, int64_t n,   \
                                   uint16_t *buf)                                  \
{                                                                                 \
    const int W = (WW) > 0 ? (WW) : p->n_words;                                   \
    const uint64_t *db = p->db + start * W;                                       \
    const uint32_t *ids = p->db_ids + start;                                      \
    const uint32_t lab = (uint32_t)ql[0];                                         \
    for (int64_t j = 0; j < n; j++) {                                             \
        int d = 0;                                                                \
        for (int w = 0; w < W; w++)                                               \
            d += __builtin_popcountll(q[w] ^ db[j * W + w]);                      \
        buf[j] = (uint16_t)((d << 1) | (ids[j] == lab));                          \
    }                                                                             \
}
RK_BLOCK_IDS(1, w1)
RK_BLOCK_IDS(2, w2)
RK_BLOCK_IDS(4, w4)
RK_BLOCK_IDS(0, generic)

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
 * buf is scratch of RK_BLOCK uint16.  The body is instantiated once per
 * target ISA (RK_PASS1_BODY) and the best variant is chosen at run time. */
#define RK_PASS1_BODY                                                             \
{                                                                                 \
    const int HB = 2 * (p->n_bits + 1);                                           \
    for (int t = 0; t < nt; t++) {                                                \
        memset(work + t * work_stride, 0, sizeof(int64_t) * 4 * HB);              \
        if (p->stable) {                                                          \
            /* cnt[d] = (items seen at distance d) << 16 | d: the record of   \
             * the next item at d, ready to store (saves a shift and an or). */ \
            uint64_t *cnt = (uint64_t *)(work + t * work_stride);                 \
            for (int d = 0; d <= p->n_bits; d++)                                  \
                cnt[d] = (uint64_t)d;                                             \
        }                                                                         \
        n_recs[t] = 0;                                                            \
    }                                                                             \
    for (int64_t start = 0; start < p->n_db; start += RK_BLOCK) {                 \
        int64_t n = p->n_db - start < RK_BLOCK ? p->n_db - start : RK_BLOCK;      \
        uint16_t *b = buf;                                                        \
        for (int t = 0; t < nt; t++) {                                            \
            const uint64_t *qt = q + (int64_t)t * p->n_words;                     \
            const uint64_t *qlt = ql + (int64_t)t * p->n_label_words;             \
            int64_t *hist4 = work + t * work_stride;                              \
            if (p->db_ids != NULL) {                                              \
                if (p->n_words == 1)                                              \
                    rk_block_ids_w1(p, qt, qlt, start, n, b);                     \
                else if (p->n_words == 2)                                         \
                    rk_block_ids_w2(p, qt, qlt, start, n, b);                     \
                else if (p->n_words == 4)                                         \
                    rk_block_ids_w4(p, qt, qlt, start, n, b);                     \
                else                                                              \
                    rk_block_ids_generic(p, qt, qlt, start, n, b);                \
            } else if (p->n_label_words == 1 && p->n_words == 1)                  \
                rk_block_w1(p, qt, qlt, start, n, b);                             \
            else if (p->n_label_words == 1 && p->n_words == 2)                    \
                rk_block_w2(p, qt, qlt, start, n, b);                             \
            else if (p->n_label_words == 1 && p->n_words == 4)                    \
                rk_block_w4(p, qt, qlt, start, n, b);                             \
            else                                                                  \
                rk_block_generic(p, qt, qlt, start, n, b);                        \
            if (p->stable) {                                                      \
                /* cnt[d] >> 16 is the running count of items at distance d, \
                 * i.e. the number before item j.  The record cnt[d] is       \
                 * written for every item and kept only when the item is      \
                 * relevant (n_rec advances by v & 1): no branch. */          \
                uint64_t *cnt = (uint64_t *)hist4;                                \
                uint64_t *rec = recs + t * rec_stride;                            \
                int64_t n_rec = n_recs[t];                                        \
                for (int64_t j = 0; j < n; j++) {                                 \
                    const int v = b[j];                                           \
                    const uint64_t c = cnt[v >> 1];                               \
                    rec[n_rec] = c;                                               \
                    cnt[v >> 1] = c + 65536;                                      \
                    n_rec += v & 1;                                               \
                }                                                                 \
                n_recs[t] = n_rec;                                                \
            } else {                                                              \
                int64_t j = 0;                                                    \
                for (; j + 4 <= n; j += 4) {                                      \
                    hist4[b[j]]++;                                                \
                    hist4[HB + b[j + 1]]++;                                       \
                    hist4[2 * HB + b[j + 2]]++;                                   \
                    hist4[3 * HB + b[j + 3]]++;                                   \
                }                                                                 \
                for (; j < n; j++)                                                \
                    hist4[b[j]]++;                                                \
            }                                                                     \
        }                                                                         \
    }                                                                             \
    for (int t = 0; t < nt; t++) {                                                \
        int64_t *hist4 = work + t * work_stride;                                  \
        int64_t *hist = hist4 + 4 * HB;                                           \
        if (p->stable) {                                                          \
            /* Relevant counts per distance from the records (O(R)). */          \
            const uint64_t *rec = recs + t * rec_stride;                          \
            const uint64_t *cnt = (const uint64_t *)hist4;                        \
            int64_t *relc = hist4 + HB;                                           \
            for (int64_t r = 0; r < n_recs[t]; r++)                               \
                relc[rec[r] & 0xFFFF]++;                                          \
            for (int d = 0; d <= p->n_bits; d++) {                                \
                hist[2 * d] = (int64_t)(cnt[d] >> 16) - relc[d];                  \
                hist[2 * d + 1] = relc[d];                                        \
            }                                                                     \
        } else {                                                                  \
            for (int v = 0; v < HB; v++)                                          \
                hist[v] = hist4[v] + hist4[HB + v] + hist4[2 * HB + v]            \
                          + hist4[3 * HB + v];                                    \
        }                                                                         \
    }                                                                             \
}

#define RK_PASS1_ARGS const rk_params *p, int nt, const uint64_t *q, const uint64_t *ql, \
                      uint16_t *buf, int64_t *work, int64_t work_stride,             \
                      uint64_t *recs, int64_t rec_stride, int64_t *n_recs

/* Portable version: correct everywhere (__builtin_popcountll falls back to
 * a table / bit-trick sequence without the POPCNT instruction). */
static void rk_pass1_default(RK_PASS1_ARGS) RK_PASS1_BODY

#ifdef RK_X86_DISPATCH
/* GCC 12 cannot dispatch target_clones on AVX-512 sub-features, so the
 * variants are compiled with the target attribute and chosen with
 * __builtin_cpu_supports (function multiversioning by hand). */
__attribute__((target("avx512vpopcntdq,avx512vl,avx512bw,avx512f,popcnt")))
static void rk_pass1_vpopcnt(RK_PASS1_ARGS) RK_PASS1_BODY

__attribute__((target("popcnt")))
static void rk_pass1_popcnt(RK_PASS1_ARGS) RK_PASS1_BODY

static rk_pass1_fn rk_select_pass1(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512vpopcntdq") && __builtin_cpu_supports("avx512vl")
        && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512f"))
        return rk_pass1_vpopcnt;
    if (__builtin_cpu_supports("popcnt"))
        return rk_pass1_popcnt;
    return rk_pass1_default;
}

/* Name of the variant picked on this CPU (reported by the Python module). */
static const char *rk_pass1_variant(void)
{
    rk_pass1_fn f = rk_select_pass1();
    return f == rk_pass1_vpopcnt ? "avx512vpopcntdq" : f == rk_pass1_popcnt ? "popcnt" : "default";
}

/* A variant by name (tests run every variant the CPU supports); NULL when
 * unknown or not supported here. */
static rk_pass1_fn rk_pass1_by_name(const char *name)
{
    __builtin_cpu_init();
    if (strcmp(name, "default") == 0)
        return rk_pass1_default;
    if (strcmp(name, "popcnt") == 0)
        return __builtin_cpu_supports("popcnt") ? rk_pass1_popcnt : NULL;
    if (strcmp(name, "avx512vpopcntdq") == 0)
        return rk_select_pass1() == rk_pass1_vpopcnt ? rk_pass1_vpopcnt : NULL;
    return NULL;
}
#else
static rk_pass1_fn rk_select_pass1(void) { return rk_pass1_default; }
static const char *rk_pass1_variant(void) { return "default"; }
static rk_pass1_fn rk_pass1_by_name(const char *name)
{
    return strcmp(name, "default") == 0 ? rk_pass1_default : NULL;
}
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
