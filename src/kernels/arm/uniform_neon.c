/* Uniform integer formats, plain NEON (every AArch64 CPU; those with the
 * dot-product extension run arm/uniform_dotprod.c): the twin of
 * ref/uniform_ref.c on kernels/uniform_pack.h's 16-row panels, through the
 * width-generic loops of uniform_tile.h (primitives: arm/uniform_neon.h).
 *
 * Without SDOT a row's four byte products take SMULL (int16 products:
 * |q| <= 128, |a| <= 127 fit) and SADALP (pairs into int32). Sums stay in
 * pair form, each int32 lane holding two of a row's four products, so a
 * 16-lane sum is eight registers; ADDP joins the pairs once per chunk.
 * One activation row per register tile, the eight pair registers its
 * independent chains. */
#if defined(__aarch64__)
#define LB_TGT
#include "kernels/arm/uniform_neon.h"

#define NA_MAX 1
#define NA_MID 1
#define NACC(NA) 1

/* v[2j], v[2j + 1]: rows 4j..4j+3 as (row 4j: products 0+1, 2+3; row
 * 4j + 1: ...), (rows 4j + 2, 4j + 3 likewise) */
typedef struct {
    int32x4_t v[8];
} VI;

static LB_INLINE VI vi_zero(void) {
    VI r;
    for (int j = 0; j < 8; j++) r.v[j] = vdupq_n_s32(0);
    return r;
}
static LB_INLINE VI vi_add(VI x, VI y, int bits) {
    (void)bits;
    for (int j = 0; j < 8; j++) x.v[j] = vaddq_s32(x.v[j], y.v[j]);
    return x;
}
static LB_INLINE VI vi_dot(VI acc, VB w, const int8_t *a4, int bits) {
    (void)bits;
    int8x16_t a = bcast4(a4);
    for (int j = 0; j < 4; j++) {
        int8x16_t wj = vreinterpretq_s8_u8(w.v[j]);
        acc.v[2 * j] = vpadalq_s16(acc.v[2 * j], vmull_s8(vget_low_s8(wj), vget_low_s8(a)));
        acc.v[2 * j + 1] = vpadalq_s16(acc.v[2 * j + 1], vmull_high_s8(wj, a));
    }
    return acc;
}
static LB_INLINE VI vi_dot8(VI acc, VB w, const int8_t *a4) { return vi_dot(acc, w, a4, 8); }
static LB_INLINE VF vf_from_vi(VI v, int bits) {
    (void)bits;
    VF r;
    for (int j = 0; j < 4; j++) r.v[j] = vcvtq_f32_s32(vpaddq_s32(v.v[2 * j], v.v[2 * j + 1]));
    return r;
}

#include "kernels/uniform_tile.h"

UNIFORM_ENTRY(lb_kernel_uniform_neon)
#endif
