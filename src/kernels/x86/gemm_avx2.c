/* AVX2+FMA fp32 GEMM (x times w-transposed). Tiles of 4 activation rows x 2
 * weight rows keep 8 accumulators and 6 loads in the 16 ymm registers; the
 * reduction order differs from the reference, so results agree to rounding,
 * not bit for bit. Compiled with a target attribute and chosen at run time. */
#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels/kernels.h"
#include "kernels/x86/avx2_sums.h"

#define LB_AVX2 __attribute__((target("avx2,fma")))

LB_AVX2 static float dot(const float *a, const float *b, int k) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int c = 0;
    for (; c + 16 <= k; c += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + c), _mm256_loadu_ps(b + c), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + c + 8), _mm256_loadu_ps(b + c + 8), s1);
    }
    for (; c + 8 <= k; c += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + c), _mm256_loadu_ps(b + c), s0);
    float s = hsum(_mm256_add_ps(s0, s1));
    for (; c < k; c++) s += a[c] * b[c];
    return s;
}

/* one activation row against four weight rows */
LB_AVX2 static void tile_1x4(int k, const float *x, const float *w, int ldw, float *y) {
    const float *w0 = w, *w1 = w + ldw, *w2 = w + 2 * (size_t)ldw, *w3 = w + 3 * (size_t)ldw;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int c = 0;
    for (; c + 8 <= k; c += 8) {
        __m256 xv = _mm256_loadu_ps(x + c);
        a0 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w0 + c), a0);
        a1 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w1 + c), a1);
        a2 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w2 + c), a2);
        a3 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w3 + c), a3);
    }
    float s0 = hsum(a0), s1 = hsum(a1), s2 = hsum(a2), s3 = hsum(a3);
    for (; c < k; c++) {
        s0 += x[c] * w0[c];
        s1 += x[c] * w1[c];
        s2 += x[c] * w2[c];
        s3 += x[c] * w3[c];
    }
    y[0] = s0;
    y[1] = s1;
    y[2] = s2;
    y[3] = s3;
}

/* four activation rows against two weight rows */
LB_AVX2 static void tile_4x2(int k, const float *x, int ldx, const float *w, int ldw, float *y, int ldy) {
    const float *x0 = x, *x1 = x + ldx, *x2 = x + 2 * (size_t)ldx, *x3 = x + 3 * (size_t)ldx;
    const float *w0 = w, *w1 = w + ldw;
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
    int c = 0;
    for (; c + 8 <= k; c += 8) {
        __m256 v0 = _mm256_loadu_ps(w0 + c), v1 = _mm256_loadu_ps(w1 + c);
        __m256 u = _mm256_loadu_ps(x0 + c);
        a00 = _mm256_fmadd_ps(u, v0, a00);
        a01 = _mm256_fmadd_ps(u, v1, a01);
        u = _mm256_loadu_ps(x1 + c);
        a10 = _mm256_fmadd_ps(u, v0, a10);
        a11 = _mm256_fmadd_ps(u, v1, a11);
        u = _mm256_loadu_ps(x2 + c);
        a20 = _mm256_fmadd_ps(u, v0, a20);
        a21 = _mm256_fmadd_ps(u, v1, a21);
        u = _mm256_loadu_ps(x3 + c);
        a30 = _mm256_fmadd_ps(u, v0, a30);
        a31 = _mm256_fmadd_ps(u, v1, a31);
    }
    float s[4][2] = {{hsum(a00), hsum(a01)}, {hsum(a10), hsum(a11)}, {hsum(a20), hsum(a21)}, {hsum(a30), hsum(a31)}};
    const float *xs[4] = {x0, x1, x2, x3};
    for (; c < k; c++)
        for (int i = 0; i < 4; i++) {
            s[i][0] += xs[i][c] * w0[c];
            s[i][1] += xs[i][c] * w1[c];
        }
    for (int i = 0; i < 4; i++) {
        y[(size_t)i * ldy] = s[i][0];
        y[(size_t)i * ldy + 1] = s[i][1];
    }
}

LB_AVX2 void lb_gemm_nt_avx2(int n, int m, int k, const float *x, int ldx, const float *w, int ldw, float *y,
                             int ldy) {
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        int j = 0;
        for (; j + 2 <= m; j += 2)
            tile_4x2(k, x + (size_t)i * ldx, ldx, w + (size_t)j * ldw, ldw, y + (size_t)i * ldy + j, ldy);
        for (; j < m; j++)
            for (int ii = i; ii < i + 4; ii++) y[(size_t)ii * ldy + j] = dot(x + (size_t)ii * ldx, w + (size_t)j * ldw, k);
    }
    for (; i < n; i++) {
        int j = 0;
        for (; j + 4 <= m; j += 4) tile_1x4(k, x + (size_t)i * ldx, w + (size_t)j * ldw, ldw, y + (size_t)i * ldy + j);
        for (; j < m; j++) y[(size_t)i * ldy + j] = dot(x + (size_t)i * ldx, w + (size_t)j * ldw, k);
    }
}
#endif
