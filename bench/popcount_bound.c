/*
 * The popcount bound of the linear scan: time to compute popcount(code ^
 * query) for every (query, code) pair of N codes x Q queries and sum it,
 * with nothing else (no selection, no thresholds).  Same memory order as the
 * scan (the database in chunks of 256 KiB, every tile of TILE queries over a
 * chunk while it is in L2, each loaded vector used by the whole tile from
 * registers), tiles shared out between OpenMP threads.
 *
 *   cc -O3 -fopenmp -I../src_ext popcount_bound.c -o popcount_bound
 *   ./popcount_bound PATH N_BITS N Q     (PATH: avx512-vpopcntdq, avx2, popcnt)
 *
 * Prints "seconds <best of 5> sum <checksum>".  No -march flag: each loop
 * carries the target attribute of its popcount path (src_ext/popcount.h).
 * bench/test_bench_search.py builds and runs it next to the scan.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

#include "popcount.h"

#define CHUNK_WORDS (256 * 1024 / 8)

#define TILE 4 /* queries sharing every load (the AVX2 register file allows 4) */

/* Codes are row-major (W words a code); Q holds TILE queries. */
static PC_TARGET_POPCNT uint64_t sum_popcnt(const uint64_t *db, int64_t n_words,
                                            const uint64_t *Q, int W)
{
    uint64_t s[TILE] = {0}, tot = 0;
    int64_t i;
    int w, j;
    for (i = 0; i < n_words; i += W)
        for (w = 0; w < W; w++) {
            uint64_t x = db[i + w];
            for (j = 0; j < TILE; j++)
                s[j] += (uint64_t)__builtin_popcountll(x ^ Q[j * W + w]);
        }
    for (j = 0; j < TILE; j++)
        tot += s[j];
    return tot;
}

#ifdef PC_X86
/* Query j's words repeated over the 4 (AVX2) or 8 (AVX-512) lanes of a
 * vector of row-major codes (W divides the lane count). */
static uint64_t rep(const uint64_t *Q, int W, int j, int lane)
{
    return Q[j * W + lane % W];
}

/* Mula's nibble-table popcount, 4 words a vector. */
static PC_TARGET_AVX2 uint64_t sum_avx2(const uint64_t *db, int64_t n_words,
                                        const uint64_t *Q, int W)
{
    const __m256i zero = _mm256_setzero_si256();
    __m256i qv[TILE], tot = zero, s[TILE];
    uint64_t out[4];
    int64_t i;
    int j, c = 0;
    for (j = 0; j < TILE; j++) {
        qv[j] = _mm256_setr_epi64x((long long)rep(Q, W, j, 0), (long long)rep(Q, W, j, 1),
                                   (long long)rep(Q, W, j, 2), (long long)rep(Q, W, j, 3));
        s[j] = zero;
    }
    for (i = 0; i < n_words; i += 4) {
        const __m256i x = _mm256_loadu_si256((const __m256i *)(db + i));
        for (j = 0; j < TILE; j++)
            s[j] = _mm256_add_epi8(s[j], pc_bytes256(_mm256_xor_si256(x, qv[j])));
        if (++c == 31 || i + 4 >= n_words) { /* 31 * 8 < 256: no byte overflows */
            for (j = 0; j < TILE; j++) {
                tot = _mm256_add_epi64(tot, _mm256_sad_epu8(s[j], zero));
                s[j] = zero;
            }
            c = 0;
        }
    }
    _mm256_storeu_si256((__m256i *)out, tot);
    return out[0] + out[1] + out[2] + out[3];
}

/* XOR + VPOPCNTQ, 8 words a vector. */
static PC_TARGET_AVX512 uint64_t sum_avx512(const uint64_t *db, int64_t n_words,
                                            const uint64_t *Q, int W)
{
    __m512i qv[TILE], tot[TILE];
    uint64_t sum = 0;
    int64_t i;
    int j, l;
    for (j = 0; j < TILE; j++) {
        uint64_t r[8];
        for (l = 0; l < 8; l++)
            r[l] = rep(Q, W, j, l);
        qv[j] = _mm512_loadu_si512((const void *)r);
        tot[j] = _mm512_setzero_si512();
    }
    for (i = 0; i < n_words; i += 8) {
        const __m512i x = _mm512_loadu_si512((const void *)(db + i));
        for (j = 0; j < TILE; j++)
            tot[j] = _mm512_add_epi64(tot[j], _mm512_popcnt_epi64(_mm512_xor_si512(x, qv[j])));
    }
    for (j = 0; j < TILE; j++)
        sum += (uint64_t)_mm512_reduce_add_epi64(tot[j]);
    return sum;
}
#endif

int main(int argc, char **argv)
{
    const char *path;
    int n_bits, W, r, p;
    int64_t n, nq, n_words, i;
    uint64_t *db, *Q, state = 88172645463325252ULL, sum = 0;
    uint64_t (*kernel)(const uint64_t *, int64_t, const uint64_t *, int) = NULL;
    double best = 1e30;
    if (argc != 5) {
        fprintf(stderr, "usage: %s PATH N_BITS N Q\n", argv[0]);
        return 2;
    }
    path = argv[1];
    n_bits = atoi(argv[2]);
    n = atoll(argv[3]);
    nq = atoll(argv[4]);
    W = (n_bits + 63) / 64;
    if (W != 1 && W != 2 && W != 4) {
        fprintf(stderr, "N_BITS must be 64, 128 or 256\n");
        return 2;
    }
    for (p = 0; p < PC_N_PATHS; p++)
        if (strcmp(path, pc_path_names[p]) == 0)
            break;
    if (p == PC_N_PATHS || p > pc_cpu_best_path() || p == PC_PATH_PORTABLE) {
        fprintf(stderr, "path %s unknown, portable or not supported by this CPU\n", path);
        return 2;
    }
#ifdef PC_X86
    kernel = p == PC_PATH_AVX512 ? sum_avx512 : p == PC_PATH_AVX2 ? sum_avx2 : sum_popcnt;
#else
    kernel = sum_popcnt;
#endif
    n -= n % 8; /* whole vectors */
    nq -= nq % TILE;
    n_words = n * W;
    db = (uint64_t *)malloc(sizeof(uint64_t) * n_words);
    Q = (uint64_t *)malloc(sizeof(uint64_t) * nq * W);
    for (i = 0; i < n_words; i++) {
        state ^= state << 13, state ^= state >> 7, state ^= state << 17;
        db[i] = state;
    }
    for (i = 0; i < nq * W; i++) {
        state ^= state << 13, state ^= state >> 7, state ^= state << 17;
        Q[i] = state;
    }
    for (r = 0; r < 5; r++) {
        double t = omp_get_wtime();
        int64_t c0;
        sum = 0;
        for (c0 = 0; c0 < n_words; c0 += CHUNK_WORDS) {
            int64_t len = n_words - c0 < CHUNK_WORDS ? n_words - c0 : CHUNK_WORDS;
            int64_t j;
#pragma omp parallel for schedule(static) reduction(+ : sum)
            for (j = 0; j < nq; j += TILE)
                sum += kernel(db + c0, len, Q + j * W, W);
        }
        t = omp_get_wtime() - t;
        if (t < best)
            best = t;
    }
    printf("seconds %.6f sum %llu\n", best, (unsigned long long)sum);
    free(db);
    free(Q);
    return 0;
}
