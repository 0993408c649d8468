/* AVX2+FMA attention head and SwiGLU gate. exp() is a vector polynomial:
 * x = n ln2 + r with |r| <= ln2/2 (ln2 split in two parts for accuracy), e^r
 * by its degree-6 Taylor polynomial (relative error < 2e-7 on that range),
 * times 2^n built in the exponent bits. Inputs below -87.3 give 0, above 88.7
 * give +Inf-safe clamps; NaN stays NaN. */
#if defined(__x86_64__)
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/x86/avx2_sums.h"

#define LB_AVX2 __attribute__((target("avx2,fma")))

LB_AVX2 static inline __m256 exp_ps(__m256 x) {
    const __m256 hi = _mm256_set1_ps(88.3762626647949f), lo = _mm256_set1_ps(-87.3365447505531f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_min_ps(_mm256_max_ps(x, lo), hi); /* NaN -> lo: repaired below */
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    /* 2^n: n in [-126, 128); n = 128 only for x near the top clamp, split it */
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i half = _mm256_srai_epi32(ni, 1);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, _mm256_set1_epi32(127)), 23));
    __m256 s2 = _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, half), _mm256_set1_epi32(127)), 23));
    __m256 res = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
    return _mm256_andnot_ps(under, res);
}

LB_AVX2 static inline float hmax(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

LB_AVX2 void lb_attend_avx2(const float *q, const float *kt, size_t kt_stride, const float *v, size_t v_stride,
                            int n_ctx, int hd, float scale, float *att, float *out) {
    int t = 0;
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    for (; t + 8 <= n_ctx; t += 8) {
        __m256 acc = _mm256_setzero_ps();
        for (int d = 0; d < hd; d++)
            acc = _mm256_fmadd_ps(_mm256_set1_ps(q[d]), _mm256_loadu_ps(kt + (size_t)d * kt_stride + t), acc);
        acc = _mm256_mul_ps(acc, _mm256_set1_ps(scale));
        _mm256_storeu_ps(att + t, acc);
        vmax = _mm256_max_ps(vmax, acc);
    }
    float max = hmax(vmax);
    for (; t < n_ctx; t++) {
        float s = 0.0f;
        for (int d = 0; d < hd; d++) s += q[d] * kt[(size_t)d * kt_stride + t];
        att[t] = s * scale;
        max = att[t] > max ? att[t] : max;
    }
    __m256 vsum = _mm256_setzero_ps(), m8 = _mm256_set1_ps(max);
    for (t = 0; t + 8 <= n_ctx; t += 8) {
        __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(att + t), m8));
        _mm256_storeu_ps(att + t, e);
        vsum = _mm256_add_ps(vsum, e);
    }
    float sum = hsum(vsum);
    for (; t < n_ctx; t++) {
        att[t] = expf(att[t] - max);
        sum += att[t];
    }
    float inv = 1.0f / sum;
    if (hd == 8) { /* one register per value row */
        __m256 o = _mm256_setzero_ps();
        for (t = 0; t < n_ctx; t++) o = _mm256_fmadd_ps(_mm256_set1_ps(att[t]), _mm256_loadu_ps(v + (size_t)t * v_stride), o);
        _mm256_storeu_ps(out, _mm256_mul_ps(o, _mm256_set1_ps(inv)));
        return;
    }
    memset(out, 0, (size_t)hd * sizeof(float));
    for (t = 0; t < n_ctx; t++) {
        const float *vt = v + (size_t)t * v_stride;
        __m256 a = _mm256_set1_ps(att[t]);
        int d = 0;
        for (; d + 8 <= hd; d += 8)
            _mm256_storeu_ps(out + d, _mm256_fmadd_ps(a, _mm256_loadu_ps(vt + d), _mm256_loadu_ps(out + d)));
        for (; d < hd; d++) out[d] += att[t] * vt[d];
    }
    for (int d = 0; d < hd; d++) out[d] *= inv;
}

LB_AVX2 void lb_silu_mul_avx2(float *g, const float *u, size_t n) {
    size_t i = 0;
    const __m256 one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(g + i);
        __m256 sig = _mm256_div_ps(one, _mm256_add_ps(one, exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), x))));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(_mm256_mul_ps(x, sig), _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++) g[i] = g[i] * (1.0f / (1.0f + expf(-g[i]))) * u[i];
}
#endif
