/* Ternary x int8 matmul, scalar: the specification of the SIMD twins. The
 * weights are in the repacked layout of kernels/lowbin.h (2-bit or 1.6-bit
 * chunks); activations are LB_ACT_Q8_32. Per 32-column block b the integer
 * sum isum_b = sum_j (q_j - 1) a_j is exact, and
 *   y = sum_b isum_b * (alpha_g(b) * d_x[b])   in block order
 * (value = alpha (q - 1), format.h). Blocks past ceil(cols / 32) are not
 * visited; codes past cols are value 0. */
#include "kernels/lowbin.h"

/* code (0..2) of column b*32 + j of a repacked row */
static int code_at(const lb_lowbin_pack *p, const uint8_t *row, int b, int j) {
    int col = b * 32 + j, c = col / p->chunk_cols, off = col % p->chunk_cols;
    uint8_t q = row[(size_t)c * LB_LOWBIN_CHUNK + off % 64];
    return p->kind == LB_LOWBIN_T2 ? (q >> (2 * (off / 64))) & 3 : lb_lowbin_trit(q, off / 64);
}

void lb_kernel_ternary_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch) {
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
                for (int j = 0; j < 32; j++) isum += (code_at(p, row, b, j) - 1) * xq[b * 32 + j];
                s += (float)isum * (lb_fp16_to_fp32(sc[(size_t)r * p->spr + (b >> p->gshift)]) * xd[b]);
            }
            y[(size_t)i * ldy + r] = s;
        }
    }
}
