/* XNOR-popcount GEMM on packed sign bits, AVX2: the twin of
 * lb_xnor_gemm_ref (kernels/xnor_bits.c). Four 64-bit words per step: w xor
 * a, popcount of each byte by two vpshufb lookups of its nibbles, bytes
 * summed per 64-bit lane by vpsadbw. Four output rows per pass share the
 * loads of a. The tail words (words % 4) use POPCNT. */
#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels/xnor_bits.h"

#define LB_AVX2 __attribute__((target("avx2,popcnt")))

LB_AVX2 static inline __m256i byte_popcounts(__m256i v) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2,
                                         2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(15);
    __m256i c = _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_and_si256(v, low)),
                                _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(v, 4), low)));
    return _mm256_sad_epu8(c, _mm256_setzero_si256()); /* four 64-bit sums of 8 bytes (each <= 64) */
}

LB_AVX2 static inline int hsum_u64(__m256i v) {
    __m128i s = _mm_add_epi64(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi64(s, _mm_unpackhi_epi64(s, s));
    return (int)_mm_cvtsi128_si64(s);
}

LB_AVX2 void lb_xnor_gemm_avx2(const uint64_t *a, int n, const uint64_t *w, int m, int cols, int32_t *out,
                               int ldo) {
    const int words = lb_xnor_words(cols), full = words & ~3;
    for (int i = 0; i < n; i++) {
        const uint64_t *ai = a + (size_t)i * words;
        int32_t *oi = out + (size_t)i * ldo;
        int o = 0;
        for (; o + 4 <= m; o += 4) {
            const uint64_t *w0 = w + (size_t)o * words, *w1 = w0 + words, *w2 = w1 + words, *w3 = w2 + words;
            __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
            for (int t = 0; t < full; t += 4) {
                __m256i x = _mm256_loadu_si256((const __m256i *)(ai + t));
                s0 = _mm256_add_epi64(s0, byte_popcounts(_mm256_xor_si256(x, _mm256_loadu_si256((const __m256i *)(w0 + t)))));
                s1 = _mm256_add_epi64(s1, byte_popcounts(_mm256_xor_si256(x, _mm256_loadu_si256((const __m256i *)(w1 + t)))));
                s2 = _mm256_add_epi64(s2, byte_popcounts(_mm256_xor_si256(x, _mm256_loadu_si256((const __m256i *)(w2 + t)))));
                s3 = _mm256_add_epi64(s3, byte_popcounts(_mm256_xor_si256(x, _mm256_loadu_si256((const __m256i *)(w3 + t)))));
            }
            int p0 = hsum_u64(s0), p1 = hsum_u64(s1), p2 = hsum_u64(s2), p3 = hsum_u64(s3);
            for (int t = full; t < words; t++) {
                p0 += _mm_popcnt_u64(ai[t] ^ w0[t]);
                p1 += _mm_popcnt_u64(ai[t] ^ w1[t]);
                p2 += _mm_popcnt_u64(ai[t] ^ w2[t]);
                p3 += _mm_popcnt_u64(ai[t] ^ w3[t]);
            }
            oi[o] = cols - 2 * p0;
            oi[o + 1] = cols - 2 * p1;
            oi[o + 2] = cols - 2 * p2;
            oi[o + 3] = cols - 2 * p3;
        }
        for (; o < m; o++) {
            const uint64_t *wo = w + (size_t)o * words;
            __m256i s = _mm256_setzero_si256();
            for (int t = 0; t < full; t += 4)
                s = _mm256_add_epi64(s, byte_popcounts(_mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(ai + t)),
                                                                        _mm256_loadu_si256((const __m256i *)(wo + t)))));
            int p = hsum_u64(s);
            for (int t = full; t < words; t++) p += (int)_mm_popcnt_u64(ai[t] ^ wo[t]);
            oi[o] = cols - 2 * p;
        }
    }
}
#endif
