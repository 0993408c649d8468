/* Codebook matmul kernels, scalar: the specification of the SIMD versions
 * for nf4 and pow2 (3 and 4 bits). Through kernels/codebook.h each weight
 * block of 32 becomes 32 integers v and a float scale s; its dot product
 * with the int8 activation block is exact, and the float sum over blocks
 * runs in block order: y = sum_b (s_b d_x[b]) sum_j v_b[j] q_x[b, j].
 * nf4's integers approximate its levels (the error bound is in
 * kernels/codebook.h, allowed by tests/kernel_check.h); pow2's are exact. */
#include "kernels/codebook.h"

static void codebook_ref(const lb_tensor *w, lb_cb_kind kind, const lb_act *x, int r0, int r1, float *y, int ldy) {
    lb_cb c = lb_cb_of(w, kind);
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = c.data + (size_t)r * c.rb;
        for (int i = 0; i < x->n; i++) {
            const int8_t *xq = x->q + (size_t)i * x->ld;
            const float *xd = x->d + (size_t)i * (x->ld / 32);
            float s = 0.0f;
            for (int b = 0; b < c.nb; b++) {
                int8_t v[32];
                lb_cb_values(&c, row, b, v);
                int isum = 0;
                for (int j = 0; j < 32; j++) isum += v[j] * xq[b * 32 + j];
                s += (float)isum * (lb_cb_scale(&c, row, r, b) * xd[b]);
            }
            y[(size_t)i * ldy + r] = s;
        }
    }
}

void lb_kernel_nf4_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch) {
    (void)scratch;
    codebook_ref(w, (lb_cb_kind)lb_cb_nf4_kind(&w->spec, &w->layout), x, r0, r1, y, ldy);
}

void lb_kernel_pow2_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch) {
    (void)scratch;
    codebook_ref(w, (lb_cb_kind)lb_cb_pow2_kind(&w->spec, &w->layout), x, r0, r1, y, ldy);
}
