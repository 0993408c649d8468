/* onebit and ptq161 on AArch64: their parts run the uniform panels' NEON
 * kernels (uniform_dotprod with the dot-product extension, uniform_neon
 * without), composed as in ref/binfam_ref.c. littlebit runs littlebit_ref
 * there (no NEON version yet). */
#if defined(__aarch64__)
#include "kernels/binfam.h"

void lb_kernel_onebit_neon(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch) {
    lb_binfam_onebit_run(lb_kernel_uniform_neon, w, x, r0, r1, y, ldy, scratch);
}

void lb_kernel_ptq161_neon(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch) {
    lb_binfam_ptq161_run(lb_kernel_uniform_neon, w, x, r0, r1, y, ldy, scratch);
}

void lb_kernel_onebit_dotprod(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                              float *scratch) {
    lb_binfam_onebit_run(lb_kernel_uniform_dotprod, w, x, r0, r1, y, ldy, scratch);
}

void lb_kernel_ptq161_dotprod(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                              float *scratch) {
    lb_binfam_ptq161_run(lb_kernel_uniform_dotprod, w, x, r0, r1, y, ldy, scratch);
}
#endif
