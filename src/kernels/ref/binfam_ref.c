/* onebit, ptq161 and littlebit, scalar: the specification of the SIMD twins
 * (kernels/binfam.h has the decompositions). onebit and ptq161 run the
 * uniform panels' scalar kernel on their parts; littlebit is
 *   y[i, r] = h_r sum_j (u(r, j) ? t[i, j] : -t[i, j]),  j < R8, in j order,
 * on t = l * (V^T (g * x)) from lb_littlebit_pre_ref (float activations). */
#include "kernels/binfam.h"

void lb_kernel_onebit_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch) {
    lb_binfam_onebit_run(lb_kernel_uniform_ref, w, x, r0, r1, y, ldy, scratch);
}

void lb_kernel_ptq161_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch) {
    lb_binfam_ptq161_run(lb_kernel_uniform_ref, w, x, r0, r1, y, ldy, scratch);
}

void lb_littlebit_pre_ref(const lb_tensor *w, const float *x, int n, float *out) {
    lb_littlebit_first_factor(w, x, n, out, lb_sign_dot_scaled_ref);
}

void lb_kernel_littlebit_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                             float *scratch) {
    (void)scratch;
    const lb_littlebit_pack *p = lb_lbit(w);
    const float *h = (const float *)lb_lbit_bytes(w, p->h_off);
    const uint8_t *u = lb_lbit_bytes(w, p->u_off);
    for (int r = r0; r < r1; r++)
        for (int i = 0; i < x->n; i++)
            y[(size_t)i * ldy + r] = h[r] * lb_sign_dot_ref(u + (size_t)r * (p->r8 / 8), x->f + (size_t)i * x->ld, p->r8);
}
