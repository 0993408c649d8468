/* q8_0 and q4_0 matmul kernels, AVX-512 F+BW+VNNI: the twins of
 * ref/int8_ref.c (the same integer sums per block). ggml's blocks are
 * kernels/codebook.h's block view with one block per group (Q8_0: the int8
 * codes as stored; Q4_0: nibbles minus 8); the tiles and the vpdpbusd dot
 * products are blocks_avx512.h's, shared with the codebook formats. */
#if defined(__x86_64__)
#include "kernels/x86/blocks_avx512.h"

LB_AVX512 void lb_kernel_q8_0_avx512(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                                     float *scratch) {
    (void)scratch;
    lb512_matmul(w, LB_CB_Q8_0, x, r0, r1, y, ldy);
}

LB_AVX512 void lb_kernel_q4_0_avx512(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                                     float *scratch) {
    (void)scratch;
    lb512_matmul(w, LB_CB_Q4_0, x, r0, r1, y, ldy);
}
#endif
