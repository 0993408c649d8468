/* The primitives of uniform_tile.h for NEON, shared by arm/uniform_neon.c
 * (every AArch64 CPU) and arm/uniform_dotprod.c (FEAT_DotProd): a 16-lane
 * vector is four 128-bit registers, v[j] holding rows 4j..4j+3 of the
 * panel (a unit's bytes 16j..16j+15: row r's four codes are bytes
 * 4r..4r+3). The includer defines LB_TGT, then the int32 sums (VI,
 * vi_zero, vi_add, vi_dot, vi_dot8, vf_from_vi), then includes
 * uniform_tile.h.
 *
 * Every code the panels hold is a signed byte as it stands: codes of up to
 * 7 bits are 0..127, 8-bit codes are stored as q - 128 (the integer the
 * reference multiplies), table codes become int8 table values; so both
 * flavours take signed x signed byte products and vi_dot8 is vi_dot. */
#include <arm_neon.h>
#include <string.h>

#include "kernels/uniform_pack.h"

#define LB_INLINE __attribute__((always_inline)) inline

typedef struct {
    uint8x16_t v[4];
} VB;
typedef struct {
    float32x4_t v[4];
} VF;

LB_TGT static LB_INLINE VB vb_load(const uint8_t *p) {
    return (VB){{vld1q_u8(p), vld1q_u8(p + 16), vld1q_u8(p + 32), vld1q_u8(p + 48)}};
}
/* shifts by a register count (USHL; negative: right) so that s need not
 * be an immediate where the compiler sees the call */
LB_TGT static LB_INLINE VB vb_field(VB x, int s, int m) {
    int8x16_t sh = vdupq_n_s8((int8_t)-s);
    uint8x16_t mask = vdupq_n_u8((uint8_t)m);
    for (int j = 0; j < 4; j++) x.v[j] = vandq_u8(vshlq_u8(x.v[j], sh), mask);
    return x;
}
LB_TGT static LB_INLINE VB vb_or(VB x, VB y) {
    for (int j = 0; j < 4; j++) x.v[j] = vorrq_u8(x.v[j], y.v[j]);
    return x;
}
LB_TGT static LB_INLINE VB vb_shl(VB x, int n) {
    int8x16_t sh = vdupq_n_s8((int8_t)n);
    for (int j = 0; j < 4; j++) x.v[j] = vshlq_u8(x.v[j], sh);
    return x;
}
/* 64 bits as bytes (bit i) << s: byte i repeats source byte i / 8 (DUP),
 * CMTST against its bit leaves 0xff or 0 */
LB_TGT static LB_INLINE VB vb_plane1(const uint8_t *p, int s) {
    static const uint8_t bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    uint8x16_t b = vld1q_u8(bit), one = vdupq_n_u8((uint8_t)(1u << s));
    VB r;
    for (int j = 0; j < 4; j++) {
        uint8x16_t t = vcombine_u8(vdup_n_u8(p[2 * j]), vdup_n_u8(p[2 * j + 1]));
        r.v[j] = vandq_u8(vtstq_u8(t, b), one);
    }
    return r;
}
LB_TGT static LB_INLINE VB vb_table(const int8_t *t) {
    uint8x16_t v = vreinterpretq_u8_s8(vld1q_s8(t));
    return (VB){{v, v, v, v}};
}
LB_TGT static LB_INLINE VB vb_lookup(VB x, VB tab) {
    for (int j = 0; j < 4; j++) x.v[j] = vqtbl1q_u8(tab.v[j], x.v[j]);
    return x;
}

/* the four activation bytes at a4 in every int32 lane */
LB_TGT static LB_INLINE int8x16_t bcast4(const int8_t *a4) {
    int32_t u;
    memcpy(&u, a4, 4);
    return vreinterpretq_s8_s32(vdupq_n_s32(u));
}

LB_TGT static LB_INLINE VF vf_zero(void) {
    float32x4_t z = vdupq_n_f32(0.0f);
    return (VF){{z, z, z, z}};
}
LB_TGT static LB_INLINE VF vf_fma(VF a, VF b, VF c) {
    for (int j = 0; j < 4; j++) c.v[j] = vfmaq_f32(c.v[j], a.v[j], b.v[j]);
    return c;
}
LB_TGT static LB_INLINE VF vf_fma_s(VF a, float s, VF c) {
    for (int j = 0; j < 4; j++) c.v[j] = vfmaq_n_f32(c.v[j], a.v[j], s);
    return c;
}
LB_TGT static LB_INLINE VF vf_scale(VF a, float s) {
    for (int j = 0; j < 4; j++) a.v[j] = vmulq_n_f32(a.v[j], s);
    return a;
}
LB_TGT static LB_INLINE VF vf_mul(VF a, VF b) {
    for (int j = 0; j < 4; j++) a.v[j] = vmulq_f32(a.v[j], b.v[j]);
    return a;
}
/* fp16 -> fp32 (FCVTL: part of the base architecture) */
LB_TGT static LB_INLINE VF vf_h16(const uint8_t *p) {
    VF r;
    for (int j = 0; j < 4; j++) {
        uint16_t h[4];
        memcpy(h, p + 8 * j, 8);
        r.v[j] = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h)));
    }
    return r;
}
LB_TGT static LB_INLINE VF vf_u8(const uint8_t *p) {
    uint8x16_t b = vld1q_u8(p);
    uint16x8_t lo = vmovl_u8(vget_low_u8(b)), hi = vmovl_high_u8(b);
    return (VF){{vcvtq_f32_u32(vmovl_u16(vget_low_u16(lo))), vcvtq_f32_u32(vmovl_high_u16(lo)),
                 vcvtq_f32_u32(vmovl_u16(vget_low_u16(hi))), vcvtq_f32_u32(vmovl_high_u16(hi))}};
}
LB_TGT static LB_INLINE VF vf_i8(const uint8_t *p) {
    int8x16_t b = vld1q_s8((const int8_t *)p);
    int16x8_t lo = vmovl_s8(vget_low_s8(b)), hi = vmovl_high_s8(b);
    return (VF){{vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))), vcvtq_f32_s32(vmovl_high_s16(lo)),
                 vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))), vcvtq_f32_s32(vmovl_high_s16(hi))}};
}
LB_TGT static LB_INLINE VF vf_f32(const uint8_t *p) {
    const float *f = (const float *)p;
    return (VF){{vld1q_f32(f), vld1q_f32(f + 4), vld1q_f32(f + 8), vld1q_f32(f + 12)}};
}
LB_TGT static LB_INLINE void vf_store(float *p, VF v) {
    for (int j = 0; j < 4; j++) vst1q_f32(p + 4 * j, v.v[j]);
}
