/*
 * Popcount and CPU dispatch layer shared by flexcmh_fast._hamming (scan and
 * multi-index hashing kernels) and flexcmh_fast._ranking.
 *
 * Popcount paths, ordered (a CPU supporting one supports every lower one):
 *   PC_PATH_AVX512   "avx512-vpopcntdq": AVX-512 F/VL/BW + VPOPCNTDQ,
 *   PC_PATH_AVX2     "avx2": AVX2 nibble-table popcount (VPSHUFB) + POPCNT,
 *   PC_PATH_POPCNT   "popcnt": the scalar POPCNT instruction,
 *   PC_PATH_PORTABLE "portable": a bit-trick popcount (no special
 *                    instruction; on non-x86 the compiler builtin).
 * The wheel is built without a host-tuned -march flag: code for a path is
 * compiled with the per-function target attribute PC_TARGET_<PATH> and the
 * path is chosen at run time.  pc_cpu_best_path() is the only CPU detection;
 * the path actually used is held by flexcmh_fast._hamming (which may be
 * forced lower, for tests) and passed down to every kernel of both
 * extensions as an int.
 */
#ifndef FLEXCMH_POPCOUNT_H
#define FLEXCMH_POPCOUNT_H

#include <stdint.h>

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define PC_X86 1
#include <immintrin.h>
#endif

#define PC_PATH_PORTABLE 0
#define PC_PATH_POPCNT 1
#define PC_PATH_AVX2 2
#define PC_PATH_AVX512 3
#define PC_N_PATHS 4

#if defined(__GNUC__)
#define PC_INLINE static inline __attribute__((always_inline))
#else
#define PC_INLINE static inline
#endif

#ifdef PC_X86
#define PC_TARGET_POPCNT __attribute__((target("popcnt")))
#define PC_TARGET_AVX2 __attribute__((target("avx2,popcnt")))
#define PC_TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512vpopcntdq,popcnt")))
#else
#define PC_TARGET_POPCNT
#endif

/* Names of the paths, indexed by PC_PATH_*. */
static const char *const pc_path_names[PC_N_PATHS] = {"portable", "popcnt", "avx2",
                                                      "avx512-vpopcntdq"};

/* Best path this CPU (and OS, for the AVX register state) supports. */
static inline int pc_cpu_best_path(void)
{
#ifdef PC_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
        && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vpopcntdq")
        && __builtin_cpu_supports("popcnt"))
        return PC_PATH_AVX512;
    /* Every AVX2 CPU has POPCNT; the AVX2 path relies on both. */
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt"))
        return PC_PATH_AVX2;
    if (__builtin_cpu_supports("popcnt"))
        return PC_PATH_POPCNT;
#endif
    return PC_PATH_PORTABLE;
}

/* Whether the byte-granular AVX-512 extensions (VBMI, VBMI2, BITALG, GFNI,
 * with BMI/BMI2) are there too: the ranking pass on the AVX-512 path then
 * takes its byte-histogram variant. */
static inline int pc_cpu_has_avx512_bytes(void)
{
#ifdef PC_X86
    __builtin_cpu_init();
    return pc_cpu_best_path() == PC_PATH_AVX512 && __builtin_cpu_supports("avx512vbmi")
        && __builtin_cpu_supports("avx512vbmi2") && __builtin_cpu_supports("avx512bitalg")
        && __builtin_cpu_supports("gfni") && __builtin_cpu_supports("bmi")
        && __builtin_cpu_supports("bmi2");
#else
    return 0;
#endif
}

/* Popcount of one word.  hw != 0 only inside functions compiled with
 * PC_TARGET_POPCNT or higher, where the builtin is the POPCNT instruction
 * (or, vectorised, VPOPCNTQ); without it GCC would call a libgcc routine,
 * and the classic SWAR count is branch-free and as fast. */
PC_INLINE int pc_popcount64(uint64_t x, const int hw)
{
#ifdef PC_X86
    if (hw)
        return __builtin_popcountll(x);
    x = x - ((x >> 1) & UINT64_C(0x5555555555555555));
    x = (x & UINT64_C(0x3333333333333333)) + ((x >> 2) & UINT64_C(0x3333333333333333));
    x = (x + (x >> 4)) & UINT64_C(0x0f0f0f0f0f0f0f0f);
    return (int)((x * UINT64_C(0x0101010101010101)) >> 56);
#else
    (void)hw;
    return __builtin_popcountll(x);
#endif
}

/* Hamming distance of two rows of W words. */
PC_INLINE int pc_dist_row(const uint64_t *a, const uint64_t *b, const int W, const int hw)
{
    int d = 0, w;
    for (w = 0; w < W; w++)
        d += pc_popcount64(a[w] ^ b[w], hw);
    return d;
}

/*
 * Run STMT with PC_W the word count W as a compile-time constant for the
 * common code lengths (64, 128, 256 bits), so the word loops of inlined
 * kernels unroll and queries stay in registers; other W run generically.
 */
#define PC_WITH_W(W, STMT)                                                    \
    do {                                                                      \
        switch (W) {                                                          \
        case 1: { const int PC_W = 1; STMT; } break;                          \
        case 2: { const int PC_W = 2; STMT; } break;                          \
        case 4: { const int PC_W = 4; STMT; } break;                          \
        default: { const int PC_W = (W); STMT; } break;                       \
        }                                                                     \
    } while (0)

#ifdef PC_X86
/* Per-byte popcount of a 256-bit vector by two 16-entry table lookups
 * (Mula's method). */
PC_INLINE PC_TARGET_AVX2 __m256i pc_bytes256(__m256i x)
{
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f);
    __m256i lo = _mm256_and_si256(x, low);
    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), low);
    return _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
}
#endif

#endif /* FLEXCMH_POPCOUNT_H */
