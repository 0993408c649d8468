/* Uniform integer formats, NEON with the dot-product extension (ARMv8.2
 * FEAT_DotProd, chosen at run time from AT_HWCAP): the twin of
 * ref/uniform_ref.c on kernels/uniform_pack.h's 16-row panels, through the
 * width-generic loops of uniform_tile.h (primitives: arm/uniform_neon.h).
 *
 * SDOT adds each row's four signed byte products straight into its int32
 * lane, as vpdpbusd does on x86: a unit against an activation row is one
 * 4-byte broadcast and four SDOT. Four activation rows per register tile
 * (with the unit and the sums, 4 x (4 + 4) + 4 of the 32 registers). */
#if defined(__aarch64__)
/* arm_neon.h declares SDOT's intrinsic for armv8.2-a+dotprod, and GCC
 * inlines it only into functions of that architecture; every CPU with
 * FEAT_DotProd implements ARMv8.2 */
#define LB_TGT __attribute__((target("arch=armv8.2-a+dotprod")))
#include "kernels/arm/uniform_neon.h"

#define NA_MAX 4
#define NA_MID 2

typedef struct {
    int32x4_t v[4];
} VI;

LB_TGT static LB_INLINE VI vi_zero(void) {
    int32x4_t z = vdupq_n_s32(0);
    return (VI){{z, z, z, z}};
}
LB_TGT static LB_INLINE VI vi_add(VI x, VI y, int bits) {
    (void)bits;
    for (int j = 0; j < 4; j++) x.v[j] = vaddq_s32(x.v[j], y.v[j]);
    return x;
}
LB_TGT static LB_INLINE VI vi_dot(VI acc, VB w, const int8_t *a4, int bits) {
    (void)bits;
    int8x16_t a = bcast4(a4);
    for (int j = 0; j < 4; j++) acc.v[j] = vdotq_s32(acc.v[j], vreinterpretq_s8_u8(w.v[j]), a);
    return acc;
}
LB_TGT static LB_INLINE VI vi_dot8(VI acc, VB w, const int8_t *a4) { return vi_dot(acc, w, a4, 8); }
LB_TGT static LB_INLINE VF vf_from_vi(VI v, int bits) {
    (void)bits;
    VF r;
    for (int j = 0; j < 4; j++) r.v[j] = vcvtq_f32_s32(v.v[j]);
    return r;
}

#include "kernels/uniform_tile.h"

UNIFORM_ENTRY(lb_kernel_uniform_dotprod)
#endif
