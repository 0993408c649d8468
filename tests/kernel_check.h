/* How far a kernel's output may sit from the reference (dequantize W, then
 * lb_gemm_nt_ref on the float activations), derived from what the kernel's
 * activation preparation does rather than picked:
 *
 *   LB_ACT_F32:   float rounding only: rel * sum_c |w_rc x_ic|.
 *   LB_ACT_Q8_32: each activation moves by at most half a step of its
 *                 block's grid, d_b / 2 with d_b = absmax_b / 127 (round to
 *                 nearest; the clamp to +-127 never moves a value further),
 *                 so |y - y_ref| <= sum_c |w_rc| d_b(c) / 2, plus the same
 *                 float rounding allowance.
 *
 * bound[i * rows + r] for x (n x cols), wd (rows x cols, dequantized). */
#ifndef LB_KERNEL_CHECK_H
#define LB_KERNEL_CHECK_H

#include <math.h>

#include "kernels/codebook.h"
#include "kernels/kernels.h"
#include "test.h"

static inline void kernel_error_bound(lb_act_kind kind, const float *x, int n, const float *wd, int rows, int cols,
                                      double rel, double *bound) {
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * cols;
        for (int r = 0; r < rows; r++) {
            const float *wr = wd + (size_t)r * cols;
            double mag = 0, act = 0;
            for (int c0 = 0; c0 < cols; c0 += 32) {
                int c1 = c0 + 32 < cols ? c0 + 32 : cols;
                double amax = 0, wsum = 0;
                for (int c = c0; c < c1; c++) {
                    amax = fmax(amax, fabs(xi[c]));
                    wsum += fabs(wr[c]);
                    mag += fabs((double)wr[c] * xi[c]);
                }
                act += wsum * (amax / 127.0) / 2.0;
            }
            bound[(size_t)i * rows + r] = rel * mag + (kind == LB_ACT_Q8_32 || kind == LB_ACT_LUT || kind == LB_ACT_LUT3 ? act * (1 + 1e-6) : 0.0);
        }
    }
}

/* The weights an entry multiplies may differ from the stored ones: nf4's
 * integer kernels use round(127 NF4[q]) / 127 (kernels/codebook.h), off by
 * at most LB_NF4_I8_ERR times the group's absmax. 0 for every other entry
 * (exact). This widens the bound of those entries only. */
static inline double kernel_weight_error(lb_act_kind kind, const lb_qspec *s) {
    return kind == LB_ACT_Q8_32 && s->family == LB_FAMILY_NF4 ? (double)LB_NF4_I8_ERR : 0.0;
}

/* bound[i * rows + r] += werr * A_r * sum_c |xq_ic|: the weight error's
 * effect. A_r, the largest group absmax of row r, is the row's largest
 * |wd|: an absmax grid puts each group's largest weight on level +-1, so
 * the group decodes it to +-absmax. The kernel multiplies the activations
 * as quantized, |xq| <= |x| + d_b / 2. */
static inline void kernel_weight_error_bound(double werr, const float *x, int n, const float *wd, int rows, int cols,
                                             double *bound) {
    if (werr == 0) return;
    for (int r = 0; r < rows; r++) {
        double amax_w = 0;
        for (int c = 0; c < cols; c++) amax_w = fmax(amax_w, fabs(wd[(size_t)r * cols + c]));
        for (int i = 0; i < n; i++) {
            const float *xi = x + (size_t)i * cols;
            double sx = 0;
            for (int c0 = 0; c0 < cols; c0 += 32) {
                int c1 = c0 + 32 < cols ? c0 + 32 : cols;
                double amax = 0;
                for (int c = c0; c < c1; c++) amax = fmax(amax, fabs(xi[c]));
                for (int c = c0; c < c1; c++) sx += fabs(xi[c]) + amax / 127.0 / 2.0;
            }
            bound[(size_t)i * rows + r] += werr * amax_w * sx * (1 + 1e-6);
        }
    }
}

/* ---- helpers shared by the kernel tests ---------------------------------- */

static inline void kernel_fill(lb_rng *rng, float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = scale * (float)lb_rng_normal(rng);
}

/* LB_TEST_SIMD_ONLY=1 (scripts/test-arm.sh's second CPU): the scalar
 * entries were checked in the first run, so only the SIMD entries run */
static inline int kernel_skip_scalar(const lb_kernel *k) {
    const char *e = getenv("LB_TEST_SIMD_ONLY");
    return e && !strcmp(e, "1") && k->cpu == 0;
}

/* y (n x ldy) = the entry's routine over all of t's rows, called on two row
 * ranges (after its load-time repacking, when it has one) */
static inline void kernel_run_entry(const lb_kernel *k, lb_tensor *t, const float *x, int n, float *y, int ldy) {
    CHECK_OK(lb_kernel_use(t, k));
    int rows = (int)t->rows, cols = (int)t->cols, mid = rows / 2;
    void *buf = lb_alloc(lb_act_bytes(k->act, n, cols) + 64);
    float *scratch = k->scratch_rows ? lb_alloc((size_t)k->scratch_rows * cols * sizeof(float)) : NULL;
    lb_act act;
    lb_act_prepare(k->act, x, n, cols, buf, &act);
    if (mid > 0) k->run(t, &act, 0, mid, y, ldy, scratch);
    k->run(t, &act, mid, rows, y, ldy, scratch);
    lb_free(scratch);
    lb_free(buf);
}

#endif
