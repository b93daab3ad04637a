/*
 * Multi-index hashing (Norouzi, Punjani & Fleet, "Fast Exact Search in
 * Hamming Space with Multi-Index Hashing", CVPR 2012) for flexcmh_fast._hamming.
 *
 * Codes are cut into m disjoint substrings of len[i] <= 24 bits: substring i
 * is read from bits [lo[i], lo[i] + len[i] + gap_len[i]) of the uint64 words,
 * leaving out the gap_len[i] bits from gap_off[i] on (the zero padding bits
 * of codes whose length is not a multiple of 8, which sit at the low end of
 * the last byte).
 * Table i is a bucket array over the 2^len[i] substring values:
 * ids[i * n + off_i[v] .. i * n + off_i[v + 1]) are the ids (increasing) of
 * the codes whose substring i equals v, off_i = offs + base[i].
 *
 * Search visits steps (a, i), a = 0, 1, ..., i = 0 .. m-1: step (a, i)
 * probes the buckets of every value at distance exactly a from the query's
 * substring i.  A code never reached by steps up to (a, i) has substring
 * distances >= a + 1 on substrings 0..i and >= a on the others, so its full
 * distance is >= m * a + i + 1 (pigeonhole): after step (a, i) every code
 * within R = m * a + i has been seen.  A code reached at step (a, i) was
 * already seen iff some substring j < i has distance <= a or some j > i has
 * distance <= a - 1; this test replaces a visited set.
 *
 * k-NN stops after the first step whose R covers k seen codes (all codes
 * at distance <= R are then known, so the k smallest (distance, id) are
 * exact, ties included); radius search stops when R >= radius.
 *
 * Database codes are read from the word-major block layout of
 * hamming_kernels.h.  A work budget (probes + candidates) lets a caller give
 * up on a query that would cost more than a linear scan: the kernel returns
 * -1 and the caller scans that query instead.
 */
#ifndef FLEXCMH_MIH_KERNELS_H
#define FLEXCMH_MIH_KERNELS_H

#include "hamming_kernels.h"

#define MH_MAX_M 64
#define MH_MAX_W 4 /* MIH is offered up to 256-bit codes */

typedef struct {
    const uint64_t *db; /* word-major blocks (hamming_kernels.h) */
    int64_t n;
    int W;
    int m;
    const int32_t *lo, *len;   /* substring bit ranges (m) */
    const int32_t *gap_off, *gap_len; /* padding left out of them (m) */
    const int64_t *base;       /* offset of table i's offsets in offs (m) */
    const uint32_t *offs;      /* bucket offsets, 2^len[i] + 1 per table */
    const uint32_t *ids;       /* (m, n) ids grouped by bucket */
    const uint64_t *masks;     /* (m, W) bits of each substring */
} mh_tables;

/* Bits [lo, lo + len + gap_len) of a row of words without the gap_len bits
 * at gap_off (len + gap_len <= 64). */
static inline uint32_t mh_sub(const uint64_t *x, int lo, int len, int gap_off, int gap_len)
{
    int w = lo >> 6, b = lo & 63, raw = len + gap_len;
    uint64_t v = x[w] >> b, below;
    if (b + raw > 64)
        v |= x[w + 1] << (64 - b);
    below = (UINT64_C(1) << gap_off) - 1;
    v = (v & below) | ((v >> gap_len) & ~below);
    return (uint32_t)(v & ((UINT64_C(1) << len) - 1));
}

/* Codes reached are scattered over the database: request the codes of a
 * bucket (its first MH_PREFETCH) before reading any, so that the cache
 * misses overlap instead of queueing one after the other. */
#define MH_PREFETCH 32

static inline void mh_prefetch_bucket(const mh_tables *T, const uint32_t *ids, uint32_t p,
                                      uint32_t pe)
{
    int w;
    if (pe - p > MH_PREFETCH)
        pe = p + MH_PREFETCH;
    for (; p < pe; p++) {
        const uint64_t *code = T->db + (int64_t)(ids[p] >> 3) * T->W * HM_BLOCK + (ids[p] & 7);
        for (w = 0; w < T->W; w++)
            __builtin_prefetch(code + w * HM_BLOCK);
    }
}

/* Next integer with the same popcount (Gosper's hack). */
static inline uint64_t mh_next_comb(uint64_t v)
{
    uint64_t c = v & (~v + 1), r = v + c;
    return (((r ^ v) >> 2) / c) | r;
}

/* Sort keys ascending: quicksort (median of three) over insertion sort. */
static void mh_sort(uint64_t *keys, int64_t len)
{
    while (len > 16) {
        uint64_t x = keys[0], y = keys[len / 2], z = keys[len - 1], pivot, t;
        int64_t lo = 0, hi = len - 1;
        pivot = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        for (;;) {
            while (keys[lo] < pivot)
                lo++;
            while (keys[hi] > pivot)
                hi--;
            if (lo >= hi)
                break;
            t = keys[lo];
            keys[lo++] = keys[hi];
            keys[hi--] = t;
        }
        /* Recurse into the smaller side, loop on the larger (log depth). */
        if (hi + 1 < len - hi - 1) {
            mh_sort(keys, hi + 1);
            keys += hi + 1;
            len -= hi + 1;
        } else {
            mh_sort(keys + hi + 1, len - hi - 1);
            len = hi + 1;
        }
    }
    {
        int64_t i, j;
        for (i = 1; i < len; i++) {
            uint64_t v = keys[i];
            for (j = i; j > 0 && keys[j - 1] > v; j--)
                keys[j] = keys[j - 1];
            keys[j] = v;
        }
    }
}

/*
 * Visit candidate id reached at step (a, i): returns its full distance, or
 * -1 when an earlier step already reached it.
 */
HM_INLINE int mh_visit(const mh_tables *T, const uint64_t *q, int64_t id, int a, int i,
                       const int W, const int hw)
{
    const uint64_t *blk = T->db + (id >> 3) * (int64_t)W * HM_BLOCK + (id & 7);
    uint64_t x[MH_MAX_W];
    int w, j, d = 0;
    for (w = 0; w < W; w++) {
        x[w] = blk[w * HM_BLOCK] ^ q[w];
        d += pc_popcount64(x[w], hw);
    }
    /* Reached before iff an earlier step probes one of its substrings. */
    for (j = 0; j < T->m; j++) {
        int dj = 0, lim = j < i ? a : a - 1;
        const uint64_t *mk = T->masks + (int64_t)j * W;
        if (j == i || lim < 0)
            continue;
        for (w = 0; w < W; w++)
            dj += pc_popcount64(x[w] & mk[w], hw);
        if (dj <= lim)
            return -1;
    }
    return d;
}

/* Candidates collected for one query: the k-NN selection (knn) or the
 * radius-search hits, as keys (distance << 51 | id) in buf. */
typedef struct {
    uint64_t *buf;
    int64_t blen, bcap;
    int64_t k, live; /* k-NN: result size, buffered keys at distance <= thr */
    int64_t *cnt;    /* k-NN: codes seen at each distance */
    int thr;         /* k-NN: smallest distance with k seen codes at or below */
    int radius;      /* radius search */
} mh_sink;

/* Drop the buffered k-NN keys above the threshold. */
static void mh_sink_prune(mh_sink *s)
{
    int64_t u, kept = 0;
    for (u = 0; u < s->blen; u++)
        if ((int)(s->buf[u] >> HM_KEY_SHIFT) <= s->thr)
            s->buf[kept++] = s->buf[u];
    s->blen = kept;
}

/* Take a candidate at distance dd; returns 0, or -2 when out of memory.
 *
 * k-NN selection as in hamming_kernels.h, for candidates in any id order:
 * cnt counts the codes seen at each distance and thr is the smallest
 * distance with k seen codes at or below it, so only codes at distance
 * <= thr can still be in the result; they are kept in buf (ties at thr
 * included, their ids decide at the end) and the others are dropped as thr
 * falls. */
HM_INLINE int mh_take(mh_sink *s, int dd, int64_t id, const int knn)
{
    if (knn) {
        s->cnt[dd]++;
        if (dd > s->thr)
            return 0;
    } else if (dd > s->radius) {
        return 0;
    }
    if (s->blen == s->bcap) {
        int64_t ncap = s->bcap ? 2 * s->bcap : 64;
        if (knn)
            mh_sink_prune(s);
        /* Grow unless pruning freed more than half of the buffer. */
        if (!knn || s->bcap == 0 || s->blen * 2 > s->bcap) {
            uint64_t *nb = (uint64_t *)realloc(s->buf, sizeof(uint64_t) * ncap);
            if (!nb)
                return -2;
            s->buf = nb;
            s->bcap = ncap;
        }
    }
    s->buf[s->blen++] = ((uint64_t)dd << HM_KEY_SHIFT) | (uint64_t)id;
    if (knn) {
        s->live++;
        while (s->thr > 0 && s->live - s->cnt[s->thr] >= s->k) {
            s->live -= s->cnt[s->thr];
            s->thr--;
        }
    }
    return 0;
}

/*
 * Step (a, i): probe the buckets of every value at distance exactly a from
 * the query's substring i (qs) and hand the codes not reached by an earlier
 * step to mh_take.  Returns the work done so far, -1 when it exceeds
 * budget, -2 when out of memory.
 */
HM_INLINE int64_t mh_step(const mh_tables *T, const uint64_t *q, uint32_t qs, int a, int i,
                          int64_t work, int64_t budget, mh_sink *s, const int W, const int hw,
                          const int knn)
{
    int len = T->len[i];
    const uint32_t *off = T->offs + T->base[i];
    const uint32_t *ids = T->ids + (int64_t)i * T->n;
    uint64_t mask = (UINT64_C(1) << a) - 1, end = UINT64_C(1) << len;
    if (a > len)
        return work;
    for (; mask < end; mask = a ? mh_next_comb(mask) : end) {
        int64_t v = (int64_t)(qs ^ (uint32_t)mask);
        uint32_t p, pe = off[v + 1];
        work += 1 + (pe - off[v]);
        mh_prefetch_bucket(T, ids, off[v], pe);
        for (p = off[v]; p < pe; p++) {
            int64_t id = ids[p];
            int dd;
            if (p + MH_PREFETCH < pe)
                mh_prefetch_bucket(T, ids, p + MH_PREFETCH, p + MH_PREFETCH + 1);
            dd = mh_visit(T, q, id, a, i, W, hw);
            if (dd >= 0 && mh_take(s, dd, id, knn))
                return -2;
        }
        if (work > budget)
            return -1;
    }
    return work;
}

/* Substrings of the query and the longest substring length. */
static inline int mh_query_subs(const mh_tables *T, const uint64_t *q, uint32_t *qs)
{
    int i, max_len = 0;
    for (i = 0; i < T->m; i++) {
        qs[i] = mh_sub(q, T->lo[i], T->len[i], T->gap_off[i], T->gap_len[i]);
        if (T->len[i] > max_len)
            max_len = T->len[i];
    }
    return max_len;
}

/*
 * Exact k nearest codes of query q (1 <= k <= n).  cnt needs n_bits + 1
 * entries.  Writes k sorted (distance, id) into out_d / out_i and returns
 * the work done, -1 when the work exceeds budget, -2 when out of memory.
 */
HM_INLINE int64_t mh_knn_impl(const mh_tables *T, const uint64_t *q, int n_bits, int64_t k,
                              int64_t budget, int64_t *cnt, int32_t *out_d, int64_t *out_i,
                              const int W, const int hw)
{
    int m = T->m, i, a, d, R = -1, max_len;
    uint32_t qs[MH_MAX_M];
    int64_t work = 0, seen_le = 0, t;
    mh_sink s = {NULL, 0, 0, k, 0, cnt, n_bits, 0};
    max_len = mh_query_subs(T, q, qs);
    for (d = 0; d <= n_bits; d++)
        cnt[d] = 0;
    for (a = 0; a <= max_len; a++) {
        for (i = 0; i < m; i++) {
            int newR = m * a + i;
            work = mh_step(T, q, qs[i], a, i, work, budget, &s, W, hw, 1);
            if (work < 0) {
                free(s.buf);
                return work;
            }
            /* Codes seen within the new guaranteed radius. */
            for (d = R + 1; d <= newR && d <= n_bits; d++)
                seen_le += cnt[d];
            R = newR;
            if (seen_le >= k || R >= n_bits)
                goto done;
        }
    }
done:
    mh_sink_prune(&s);
    mh_sort(s.buf, s.blen);
    for (t = 0; t < k; t++) {
        out_d[t] = (int32_t)(s.buf[t] >> HM_KEY_SHIFT);
        out_i[t] = (int64_t)(s.buf[t] & HM_ID_MASK);
    }
    free(s.buf);
    return work;
}

/*
 * All codes within radius of query q, as sorted keys (distance << 51 | id)
 * in a malloc'ed array (*out, *out_len; NULL when none).  Returns the work
 * done, -1 when over budget, -2 when out of memory.
 */
HM_INLINE int64_t mh_range_impl(const mh_tables *T, const uint64_t *q, int radius,
                                int64_t budget, uint64_t **out, int64_t *out_len,
                                const int W, const int hw)
{
    int m = T->m, i, a, max_len;
    uint32_t qs[MH_MAX_M];
    int64_t work = 0;
    mh_sink s = {NULL, 0, 0, 0, 0, NULL, 0, radius};
    *out = NULL;
    *out_len = 0;
    max_len = mh_query_subs(T, q, qs);
    for (a = 0; a <= max_len; a++) {
        for (i = 0; i < m; i++) {
            work = mh_step(T, q, qs[i], a, i, work, budget, &s, W, hw, 0);
            if (work < 0) {
                free(s.buf);
                return work;
            }
            if (m * a + i >= radius)
                goto done;
        }
    }
done:
    mh_sort(s.buf, s.blen);
    *out = s.buf;
    *out_len = s.blen;
    return work;
}

/* Instances: POPCNT instruction (x86 with popcnt) or the portable count. */
static PC_TARGET_POPCNT int64_t mh_knn_popcnt(const mh_tables *T, const uint64_t *q, int n_bits,
                                              int64_t k, int64_t budget, int64_t *cnt,
                                              int32_t *od, int64_t *oi)
{
    int64_t r;
    PC_WITH_W(T->W, r = mh_knn_impl(T, q, n_bits, k, budget, cnt, od, oi, PC_W, 1));
    return r;
}
static int64_t mh_knn_portable(const mh_tables *T, const uint64_t *q, int n_bits, int64_t k,
                               int64_t budget, int64_t *cnt, int32_t *od, int64_t *oi)
{
    int64_t r;
    PC_WITH_W(T->W, r = mh_knn_impl(T, q, n_bits, k, budget, cnt, od, oi, PC_W, 0));
    return r;
}
static PC_TARGET_POPCNT int64_t mh_range_popcnt(const mh_tables *T, const uint64_t *q, int radius,
                                                int64_t budget, uint64_t **out, int64_t *out_len)
{
    int64_t r;
    PC_WITH_W(T->W, r = mh_range_impl(T, q, radius, budget, out, out_len, PC_W, 1));
    return r;
}
static int64_t mh_range_portable(const mh_tables *T, const uint64_t *q, int radius,
                                 int64_t budget, uint64_t **out, int64_t *out_len)
{
    int64_t r;
    PC_WITH_W(T->W, r = mh_range_impl(T, q, radius, budget, out, out_len, PC_W, 0));
    return r;
}

/* Hashing visits scattered single codes: every path from POPCNT up runs
 * the POPCNT instance. */
static int64_t mh_knn(int path, const mh_tables *T, const uint64_t *q, int n_bits, int64_t k,
                      int64_t budget, int64_t *cnt, int32_t *od, int64_t *oi)
{
    if (path >= PC_PATH_POPCNT)
        return mh_knn_popcnt(T, q, n_bits, k, budget, cnt, od, oi);
    return mh_knn_portable(T, q, n_bits, k, budget, cnt, od, oi);
}

static int64_t mh_range(int path, const mh_tables *T, const uint64_t *q, int radius,
                        int64_t budget, uint64_t **out, int64_t *out_len)
{
    if (path >= PC_PATH_POPCNT)
        return mh_range_popcnt(T, q, radius, budget, out, out_len);
    return mh_range_portable(T, q, radius, budget, out, out_len);
}

/* Substring [lo, lo + len) of code r of a word-major block database. */
static inline uint32_t mh_sub_block(const uint64_t *db, int W, int64_t r, int lo, int len,
                                    int gap_off, int gap_len)
{
    const uint64_t *blk = db + (r >> 3) * (int64_t)W * HM_BLOCK + (r & 7);
    uint64_t x[2];
    int w0 = lo >> 6;
    x[0] = blk[w0 * HM_BLOCK];
    x[1] = w0 + 1 < W ? blk[(w0 + 1) * HM_BLOCK] : 0;
    return mh_sub(x, lo & 63, len, gap_off, gap_len);
}

/*
 * Build table i over the n codes of a word-major block database: counting
 * sort by substring value, so ids increase inside a bucket.  off needs
 * 2^len + 1 zeroed entries, ids n.
 */
static void mh_build_table(const uint64_t *db, int64_t n, int W, int lo, int len,
                           int gap_off, int gap_len, uint32_t *off, uint32_t *ids)
{
    int64_t r, v, nv = (int64_t)1 << len;
    for (r = 0; r < n; r++)
        off[(int64_t)mh_sub_block(db, W, r, lo, len, gap_off, gap_len) + 1]++;
    for (v = 0; v < nv; v++)
        off[v + 1] += off[v];
    for (r = 0; r < n; r++)
        ids[off[mh_sub_block(db, W, r, lo, len, gap_off, gap_len)]++] = (uint32_t)r;
    /* The scatter advanced every off[v] to the start of bucket v + 1. */
    for (v = nv; v > 0; v--)
        off[v] = off[v - 1];
    off[0] = 0;
}

#endif /* FLEXCMH_MIH_KERNELS_H */
