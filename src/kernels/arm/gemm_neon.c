/* NEON fp32 GEMM (x times w-transposed), the AArch64 counterpart of
 * x86/gemm_avx2.c: tiles of 4 activation rows x 2 weight rows keep 8
 * accumulators and 6 loads in registers (AArch64 has 32 of them), one
 * activation row meets 4 weight rows. Fused multiply-adds and 4 lanes
 * change the summation order from the reference's, so results agree to
 * rounding, not bit for bit. NEON is part of the base architecture: no
 * target attribute, and the table is chosen when the CPU reports it. */
#if defined(__aarch64__)
#include <arm_neon.h>

#include "kernels/kernels.h"

static float dot(const float *a, const float *b, int k) {
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = vdupq_n_f32(0.0f);
    int c = 0;
    for (; c + 8 <= k; c += 8) {
        s0 = vfmaq_f32(s0, vld1q_f32(a + c), vld1q_f32(b + c));
        s1 = vfmaq_f32(s1, vld1q_f32(a + c + 4), vld1q_f32(b + c + 4));
    }
    for (; c + 4 <= k; c += 4) s0 = vfmaq_f32(s0, vld1q_f32(a + c), vld1q_f32(b + c));
    float s = vaddvq_f32(vaddq_f32(s0, s1));
    for (; c < k; c++) s += a[c] * b[c];
    return s;
}

/* one activation row against four weight rows */
static void tile_1x4(int k, const float *x, const float *w, int ldw, float *y) {
    const float *w0 = w, *w1 = w + ldw, *w2 = w + 2 * (size_t)ldw, *w3 = w + 3 * (size_t)ldw;
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
    int c = 0;
    for (; c + 4 <= k; c += 4) {
        float32x4_t xv = vld1q_f32(x + c);
        a0 = vfmaq_f32(a0, xv, vld1q_f32(w0 + c));
        a1 = vfmaq_f32(a1, xv, vld1q_f32(w1 + c));
        a2 = vfmaq_f32(a2, xv, vld1q_f32(w2 + c));
        a3 = vfmaq_f32(a3, xv, vld1q_f32(w3 + c));
    }
    float s[4];
    vst1q_f32(s, vpaddq_f32(vpaddq_f32(a0, a1), vpaddq_f32(a2, a3)));
    for (; c < k; c++) {
        s[0] += x[c] * w0[c];
        s[1] += x[c] * w1[c];
        s[2] += x[c] * w2[c];
        s[3] += x[c] * w3[c];
    }
    for (int j = 0; j < 4; j++) y[j] = s[j];
}

/* four activation rows against two weight rows */
static void tile_4x2(int k, const float *x, int ldx, const float *w, int ldw, float *y, int ldy) {
    const float *xs[4] = {x, x + ldx, x + 2 * (size_t)ldx, x + 3 * (size_t)ldx};
    const float *w0 = w, *w1 = w + ldw;
    float32x4_t a[4][2];
    for (int i = 0; i < 4; i++) a[i][0] = a[i][1] = vdupq_n_f32(0.0f);
    int c = 0;
    for (; c + 4 <= k; c += 4) {
        float32x4_t v0 = vld1q_f32(w0 + c), v1 = vld1q_f32(w1 + c);
        for (int i = 0; i < 4; i++) {
            float32x4_t u = vld1q_f32(xs[i] + c);
            a[i][0] = vfmaq_f32(a[i][0], u, v0);
            a[i][1] = vfmaq_f32(a[i][1], u, v1);
        }
    }
    for (int i = 0; i < 4; i++) {
        float s0 = vaddvq_f32(a[i][0]), s1 = vaddvq_f32(a[i][1]);
        for (int cc = c; cc < k; cc++) {
            s0 += xs[i][cc] * w0[cc];
            s1 += xs[i][cc] * w1[cc];
        }
        y[(size_t)i * ldy] = s0;
        y[(size_t)i * ldy + 1] = s1;
    }
}

void lb_gemm_nt_neon(int n, int m, int k, const float *x, int ldx, const float *w, int ldw, float *y, int ldy) {
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
