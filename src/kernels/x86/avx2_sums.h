/* Horizontal sums and lane masks shared by the AVX2 kernels (x86 only).
 * Their target, avx2, is a subset of every AVX2 kernel's, so they inline
 * into any of them. */
#ifndef LB_KERNELS_X86_AVX2_SUMS_H
#define LB_KERNELS_X86_AVX2_SUMS_H
#if defined(__x86_64__)
#include <immintrin.h>

#define LB_AVX2_HELPER __attribute__((target("avx2"), always_inline)) static inline

/* the sum of v's 8 lanes */
LB_AVX2_HELPER float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* the four sums of acc[0..3]'s lanes, in one vector */
LB_AVX2_HELPER __m128 hsum4(const __m256 acc[4]) {
    /* lanes of hadd(hadd(a0, a1), hadd(a2, a3)): per 128-bit half, the four partial sums */
    __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(acc[0], acc[1]), _mm256_hadd_ps(acc[2], acc[3]));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

/* a mask of the lanes below m (maskload / maskstore of a partial vector) */
LB_AVX2_HELPER __m256i lanes_below(int m) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(m), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

#endif
#endif
