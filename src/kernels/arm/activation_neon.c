/* NEON attention head and SwiGLU gate, the AArch64 counterparts of
 * x86/activation_avx2.c, with the same vector exp(): x = n ln2 + r with
 * |r| <= ln2/2 (ln2 split in two parts for accuracy), e^r by its degree-6
 * Taylor polynomial (relative error < 2e-7 on that range), times 2^n built
 * in the exponent bits. Inputs below -87.3 give 0, above 88.4 clamp; NaN
 * stays NaN (FMAX/FMIN propagate it, unlike x86's maxps). */
#if defined(__aarch64__)
#include <arm_neon.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"

static inline float32x4_t exp_ps(float32x4_t x) {
    const float32x4_t hi = vdupq_n_f32(88.3762626647949f), lo = vdupq_n_f32(-87.3365447505531f);
    uint32x4_t under = vcltq_f32(x, lo);
    x = vminq_f32(vmaxq_f32(x, lo), hi);
    float32x4_t n = vrndnq_f32(vmulq_n_f32(x, 1.44269504088896341f));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t p = vdupq_n_f32(1.0f / 720);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 120), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 24), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 6), p, r);
    p = vfmaq_f32(vdupq_n_f32(0.5f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    /* 2^n: n in [-126, 128]; n = 128 only near the top clamp, so in two halves */
    int32x4_t ni = vcvtq_s32_f32(n), half = vshrq_n_s32(ni, 1), bias = vdupq_n_s32(127);
    float32x4_t s1 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(half, bias), 23));
    float32x4_t s2 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(vsubq_s32(ni, half), bias), 23));
    float32x4_t res = vmulq_f32(vmulq_f32(p, s1), s2);
    return vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(res), under));
}

void lb_attend_neon(const float *q, const float *kt, size_t kt_stride, const float *v, size_t v_stride, int n_ctx,
                    int hd, float scale, float *att, float *out) {
    int t = 0;
    float32x4_t vmax = vdupq_n_f32(-INFINITY);
    for (; t + 4 <= n_ctx; t += 4) {
        float32x4_t acc = vdupq_n_f32(0.0f);
        for (int d = 0; d < hd; d++) acc = vfmaq_n_f32(acc, vld1q_f32(kt + (size_t)d * kt_stride + t), q[d]);
        acc = vmulq_n_f32(acc, scale);
        vst1q_f32(att + t, acc);
        vmax = vmaxq_f32(vmax, acc);
    }
    float max = vmaxvq_f32(vmax);
    for (; t < n_ctx; t++) {
        float s = 0.0f;
        for (int d = 0; d < hd; d++) s += q[d] * kt[(size_t)d * kt_stride + t];
        att[t] = s * scale;
        max = att[t] > max ? att[t] : max;
    }
    float32x4_t vsum = vdupq_n_f32(0.0f), m4 = vdupq_n_f32(max);
    for (t = 0; t + 4 <= n_ctx; t += 4) {
        float32x4_t e = exp_ps(vsubq_f32(vld1q_f32(att + t), m4));
        vst1q_f32(att + t, e);
        vsum = vaddq_f32(vsum, e);
    }
    float sum = vaddvq_f32(vsum);
    for (; t < n_ctx; t++) {
        att[t] = expf(att[t] - max);
        sum += att[t];
    }
    float inv = 1.0f / sum;
    memset(out, 0, (size_t)hd * sizeof(float));
    for (t = 0; t < n_ctx; t++) {
        const float *vt = v + (size_t)t * v_stride;
        int d = 0;
        for (; d + 4 <= hd; d += 4) vst1q_f32(out + d, vfmaq_n_f32(vld1q_f32(out + d), vld1q_f32(vt + d), att[t]));
        for (; d < hd; d++) out[d] += att[t] * vt[d];
    }
    for (int d = 0; d < hd; d++) out[d] *= inv;
}

void lb_silu_mul_neon(float *g, const float *u, size_t n) {
    size_t i = 0;
    const float32x4_t one = vdupq_n_f32(1.0f);
    for (; i + 4 <= n; i += 4) {
        float32x4_t x = vld1q_f32(g + i);
        float32x4_t sig = vdivq_f32(one, vaddq_f32(one, exp_ps(vnegq_f32(x))));
        vst1q_f32(g + i, vmulq_f32(vmulq_f32(x, sig), vld1q_f32(u + i)));
    }
    for (; i < n; i++) g[i] = g[i] * (1.0f / (1.0f + expf(-g[i]))) * u[i];
}
#endif
