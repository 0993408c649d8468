/* Integer matmul kernels, NEON: the twins of ref/int8_ref.c, and the
 * LB_ACT_Q8_32 activation preparation. Per 32-weight block the codes become
 * 32 signed bytes (Q8_0: as stored; Q4_0: nibbles unpacked, minus 8) and
 * meet the block of int8 activations in an exact integer dot product, in
 * one of two ways:
 *   - dotprod (ARMv8.2 FEAT_DotProd, chosen at run time from AT_HWCAP):
 *     SDOT adds four byte products into each int32 lane;
 *   - plain NEON (every AArch64 CPU): SMULL/SMULL2 widen byte products to
 *     int16 (|w| <= 128, |a| <= 127: each fits), SADALP adds pairs into int32.
 * Either way the block's integer sum equals the reference's; only the float
 * sum over blocks runs in another order (4 lanes, then a horizontal add).
 *
 * Tiles as in x86/int8_avx2.c: one weight row against 4 activation rows
 * (the block decoded once for the four), the activation rows left over (all
 * of them in decode) against 4 weight rows at a time, then single rows. The
 * tile code is int8_neon_tiles.h, included once per dot-product flavour so
 * the dotprod copy carries its target attribute and the other never does. */
#if defined(__aarch64__)
#include <arm_neon.h>
#include <stddef.h>
#include <string.h>

#include "formats/ggml_blocks.h"
#include "kernels/kernels.h"

#define LB_INLINE __attribute__((always_inline)) inline

/* Same bytes as lb_act_q8_row_ref: FMAXNM/FMINNM follow fmaxf/fminf (a NaN
 * operand gives the other one: amax skips NaN, the clamp maps NaN to -127),
 * the product x * (1 / d) is one rounding as in C, and FCVTNS rounds to
 * nearest even as nearbyintf does in the default rounding mode. */
void lb_act_q8_row_neon(const float *x, int cols, int ld, int8_t *q, float *d) {
    const float32x4_t lo = vdupq_n_f32(-127.0f), hi = vdupq_n_f32(127.0f);
    for (int b = 0; b < ld / 32; b++) {
        int c0 = b * 32, cnt = cols - c0 < 32 ? cols - c0 : 32;
        if (cnt <= 0) { /* padding blocks */
            memset(q + c0, 0, (size_t)(ld - c0));
            for (; b < ld / 32; b++) d[b] = 0.0f;
            return;
        }
        float pad[32];
        const float *src = x + c0;
        if (cnt < 32) { /* the row's tail: zeros past cols */
            memset(pad, 0, sizeof pad);
            memcpy(pad, x + c0, (size_t)cnt * sizeof(float));
            src = pad;
        }
        float32x4_t v[8], amax = vdupq_n_f32(0.0f);
        for (int k = 0; k < 8; k++) {
            v[k] = vld1q_f32(src + 4 * k);
            amax = vmaxnmq_f32(amax, vabsq_f32(v[k]));
        }
        float db = vmaxnmvq_f32(amax) / 127.0f, id = db != 0.0f ? 1.0f / db : 0.0f;
        int16x8_t h[4];
        for (int k = 0; k < 4; k++) {
            float32x4_t t0 = vminnmq_f32(vmaxnmq_f32(vmulq_n_f32(v[2 * k], id), lo), hi);
            float32x4_t t1 = vminnmq_f32(vmaxnmq_f32(vmulq_n_f32(v[2 * k + 1], id), lo), hi);
            h[k] = vcombine_s16(vmovn_s32(vcvtnq_s32_f32(t0)), vmovn_s32(vcvtnq_s32_f32(t1)));
        }
        vst1q_s8(q + c0, vcombine_s8(vmovn_s16(h[0]), vmovn_s16(h[1])));
        vst1q_s8(q + c0 + 16, vcombine_s8(vmovn_s16(h[2]), vmovn_s16(h[3])));
        d[b] = db;
    }
}

/* a weight block's fp16 scale (FCVT, part of the base architecture) */
static LB_INLINE float block_scale(const uint8_t *blk) {
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(lb_rd16(blk)))), 0);
}

/* the 32 signed codes of a weight block, as two halves of 16 */
static LB_INLINE void block_codes(const uint8_t *blk, int bits, int8x16_t *w0, int8x16_t *w1) {
    if (bits == 8) {
        const int8_t *qs = (const int8_t *)(blk + offsetof(lb_block_q8_0, qs));
        *w0 = vld1q_s8(qs);
        *w1 = vld1q_s8(qs + 16);
        return;
    }
    uint8x16_t b = vld1q_u8(blk + offsetof(lb_block_q4_0, qs));
    const int8x16_t eight = vdupq_n_s8(8);
    *w0 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(b, vdupq_n_u8(15))), eight); /* codes 0..15 */
    *w1 = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(b, 4)), eight);            /* codes 16..31 */
}

/* w . a over one block, as 4 int32 partial sums: widening multiplies */
static LB_INLINE int32x4_t dot_mull(int8x16_t w0, int8x16_t w1, const int8_t *a) {
    int8x16_t a0 = vld1q_s8(a), a1 = vld1q_s8(a + 16);
    int32x4_t s = vpaddlq_s16(vmull_s8(vget_low_s8(w0), vget_low_s8(a0)));
    s = vpadalq_s16(s, vmull_high_s8(w0, a0));
    s = vpadalq_s16(s, vmull_s8(vget_low_s8(w1), vget_low_s8(a1)));
    return vpadalq_s16(s, vmull_high_s8(w1, a1));
}

/* arm_neon.h declares SDOT's intrinsic for armv8.2-a+dotprod, and GCC inlines
 * it only into functions of that architecture; every CPU with FEAT_DotProd
 * implements ARMv8.2, so this asks for nothing the CPU lacks */
#define LB_DOTPROD_TARGET __attribute__((target("arch=armv8.2-a+dotprod")))

/* the same with SDOT */
LB_DOTPROD_TARGET static LB_INLINE int32x4_t dot_sdot(int8x16_t w0, int8x16_t w1, const int8_t *a) {
    int32x4_t s = vdotq_s32(vdupq_n_s32(0), w0, vld1q_s8(a));
    return vdotq_s32(s, w1, vld1q_s8(a + 16));
}

#define LB_TILE_NAME(x) x##_neon
#define LB_TILE_TARGET
#define LB_TILE_DOT dot_mull
#include "int8_neon_tiles.h"
#undef LB_TILE_NAME
#undef LB_TILE_TARGET
#undef LB_TILE_DOT

#define LB_TILE_NAME(x) x##_dotprod
#define LB_TILE_TARGET LB_DOTPROD_TARGET
#define LB_TILE_DOT dot_sdot
#include "int8_neon_tiles.h"
#undef LB_TILE_NAME
#undef LB_TILE_TARGET
#undef LB_TILE_DOT
#endif
