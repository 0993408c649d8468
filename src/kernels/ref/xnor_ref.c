/* Binary weights x binarized activations (XNOR-Net), scalar: the
 * specification of the SIMD twins. Activations (LB_ACT_SIGN) are one sign
 * bit per column plus beta = mean |x| per row; weights are the repacked
 * bits of kernels/lowbin.h (1 = +alpha). For 32-column block b with n_b
 * real columns, sum_j s_w s_x = n_b - 2 popcount(w xor x): the bits past
 * cols are 0 in both, so they never count. Then
 *   y = beta * sum_b alpha_g(b) (n_b - 2 popcount_b)   in block order. */
#include <math.h>
#include <string.h>

#include "kernels/lowbin.h"

void lb_act_sign_row_ref(const float *x, int cols, int ld, uint8_t *bits, float *beta) {
    memset(bits, 0, (size_t)ld / 8);
    double sum = 0.0; /* double: the mean of a long row without drift */
    for (int j = 0; j < cols; j++) {
        sum += fabs((double)x[j]);
        if (x[j] >= 0.0f) bits[j >> 3] |= (uint8_t)(1u << (j & 7));
    }
    *beta = (float)(sum / cols);
}

void lb_kernel_xnor_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch) {
    (void)scratch;
    const lb_lowbin_pack *p = lb_lowbin(w);
    const uint16_t *sc = lb_lowbin_scales(w);
    int cols = (int)w->cols;
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = lb_lowbin_codes(w, r);
        for (int i = 0; i < x->n; i++) {
            const uint8_t *xb = x->bits + (size_t)i * (x->ld / 8);
            float s = 0.0f;
            for (int b = 0; b < p->nb; b++) {
                uint32_t wv, xv;
                memcpy(&wv, row + 4 * b, 4);
                memcpy(&xv, xb + 4 * b, 4);
                int nb_cols = cols - 32 * b < 32 ? cols - 32 * b : 32;
                int dot = nb_cols - 2 * __builtin_popcount(wv ^ xv);
                s += (float)dot * lb_fp16_to_fp32(sc[(size_t)r * p->spr + (b >> p->gshift)]);
            }
            y[(size_t)i * ldy + r] = x->beta[i] * s;
        }
    }
}
