/* billm, scalar: the specification of x86/billm_avx2.c on the layout of
 * kernels/billm_pack.h, whose input is the permuted x' (lb_billm_pre):
 *   y[i, r] = sum_g sum_{p < len_g} T_rg[4 (p < ns_g) + q_r(g, p)] x'[i, g group + p],
 * in p order, T_rg[4 s + q] = lb_billm_value(e_rg, s, q) (the format's own
 * definition, so every weight is the dequantized one bit for bit). */
#include "formats/format_internal.h"
#include "kernels/billm_pack.h"

void lb_kernel_billm_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch) {
    (void)scratch;
    const lb_billm_pack *p = lb_billm(w);
    const int32_t *ns = lb_billm_ns(w);
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = lb_billm_row(w, r);
        for (int i = 0; i < x->n; i++) {
            const float *xi = x->f + (size_t)i * x->ld;
            float acc = 0.0f;
            for (int64_t g = 0; g < p->groups; g++) {
                const uint8_t *gp = row + lb_billm_group_at(p, g), *codes = gp + LB_BILLM_PARAM_BYTES;
                float e[LB_BILLM_VALUES], t[8];
                for (int k = 0; k < LB_BILLM_VALUES; k++) e[k] = lb_fp16_to_fp32(lb_rd16(gp + 2 * k));
                for (int k = 0; k < 8; k++) t[k] = lb_billm_value(e, k >> 2, (unsigned)k & 3u);
                const float *xg = xi + g * p->group;
                for (int64_t j = 0, len = lb_billm_group_len(p, g); j < len; j++)
                    acc += t[4 * (j < ns[g]) + (codes[j >> 2] >> (2 * (j & 3)) & 3)] * xg[j];
            }
            y[(size_t)i * ldy + r] = acc;
        }
    }
}
