/* Reference fp32 GEMM (x times w-transposed): the specification the SIMD
 * versions are tested against. Sums in column order in one float. */
#include "kernels/kernels.h"

void lb_gemm_nt_ref(int n, int m, int k, const float *x, int ldx, const float *w, int ldw, float *y, int ldy) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++) {
            float s = 0.0f;
            for (int c = 0; c < k; c++) s += x[(size_t)i * ldx + c] * w[(size_t)j * ldw + c];
            y[(size_t)i * ldy + j] = s;
        }
}
