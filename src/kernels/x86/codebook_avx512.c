/* Codebook matmul kernels (nf4; pow2 at 3 and 4 bits), AVX-512 F+BW+VNNI:
 * the twins of ref/codebook_ref.c. Blocks decode through the AVX2 vpshufb
 * tables (codebook_x86.h), two per zmm; tiles and vpdpbusd dot products
 * are blocks_avx512.h's. */
#if defined(__x86_64__)
#include "kernels/x86/blocks_avx512.h"

LB_AVX512 void lb_kernel_nf4_avx512(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                                    float *scratch) {
    (void)scratch;
    if (lb_cb_nf4_kind(&w->spec, &w->layout) == LB_CB_NF4_32) lb512_matmul(w, LB_CB_NF4_32, x, r0, r1, y, ldy);
    else lb512_matmul(w, LB_CB_NF4_64, x, r0, r1, y, ldy);
}

LB_AVX512 void lb_kernel_pow2_avx512(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                                     float *scratch) {
    (void)scratch;
    if (lb_cb_pow2_kind(&w->spec, &w->layout) == LB_CB_POW2_4) lb512_matmul(w, LB_CB_POW2_4, x, r0, r1, y, ldy);
    else lb512_matmul(w, LB_CB_POW2_3, x, r0, r1, y, ldy);
}
#endif
