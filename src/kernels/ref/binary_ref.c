/* Binary x int8 matmul, scalar: the specification of the SIMD twins. The
 * weights are in the repacked layout of kernels/lowbin.h (the stored bit
 * stream, 1 = +alpha); activations are LB_ACT_Q8_32. Per 32-column block b
 * the integer sum isum_b = sum_j (2 bit_j - 1) a_j is exact, and
 *   y = sum_b isum_b * (alpha_g(b) * d_x[b])   in block order.
 * Blocks past ceil(cols / 32) are not visited; padding columns meet zero
 * activations. */
#include "kernels/lowbin.h"

void lb_kernel_binary_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch) {
    (void)scratch;
    const lb_lowbin_pack *p = lb_lowbin(w);
    const uint16_t *sc = lb_lowbin_scales(w);
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = lb_lowbin_codes(w, r);
        for (int i = 0; i < x->n; i++) {
            const int8_t *xq = x->q + (size_t)i * x->ld;
            const float *xd = x->d + (size_t)i * (x->ld / 32);
            float s = 0.0f;
            for (int b = 0; b < p->nb; b++) {
                int isum = 0;
                for (int j = 0; j < 32; j++) {
                    int col = b * 32 + j, bit = (row[col >> 3] >> (col & 7)) & 1;
                    isum += bit ? xq[col] : -xq[col];
                }
                s += (float)isum * (lb_fp16_to_fp32(sc[(size_t)r * p->spr + (b >> p->gshift)]) * xd[b]);
            }
            y[(size_t)i * ldy + r] = s;
        }
    }
}
