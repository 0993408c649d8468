/* onebit and ptq161 on CPUs with AVX-512 VNNI: their parts run
 * uniform_avx512 (the panels' best x86 kernel there), composed as in
 * ref/binfam_ref.c. littlebit has no AVX-512 version: its float sign dots
 * are not where its time goes (the weights are a few KiB). */
#if defined(__x86_64__)
#include "kernels/binfam.h"

void lb_kernel_onebit_avx512(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch) {
    lb_binfam_onebit_run(lb_kernel_uniform_avx512, w, x, r0, r1, y, ldy, scratch);
}

void lb_kernel_ptq161_avx512(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch) {
    lb_binfam_ptq161_run(lb_kernel_uniform_avx512, w, x, r0, r1, y, ldy, scratch);
}
#endif
