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
#include <string.h>

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

/* The tensor of a hand-filled q, its scales rounded as stored: encoded into
 * *bytes (lb_alloc'd: the caller frees them after lb_tensor_free) and
 * resolved; frees q. */
static inline void kernel_tensor_of(lb_qtensor *q, lb_tensor *t, uint8_t **bytes) {
    CHECK_OK(lb_qtensor_store_scales(q));
    size_t total;
    CHECK_OK(lb_format_size(&q->spec, q->rows, q->cols, NULL, NULL, &total));
    *bytes = lb_alloc(total);
    CHECK_OK(lb_qtensor_encode(q, *bytes));
    *t = (lb_tensor){.spec = q->spec, .rows = q->rows, .cols = q->cols, .data = *bytes, .nbytes = total};
    lb_qtensor_free(q);
    CHECK_OK(lb_tensor_resolve(t));
}

/* LB_TEST_SIMD_ONLY=1 (scripts/test-arm.sh's second CPU): the scalar
 * entries were checked in the first run, so only the SIMD entries run */
static inline int kernel_simd_only(void) {
    const char *e = getenv("LB_TEST_SIMD_ONLY");
    return e && !strcmp(e, "1");
}
static inline int kernel_skip_scalar(const lb_kernel *k) { return kernel_simd_only() && k->cpu == 0; }

/* A tensor named "w" holding q (filled in by the caller: codes, scales,
 * extra values), its scales stored as the format stores them; frees q. */
static inline void kernel_tensor_from(lb_qtensor *q, lb_tensor *t) {
    const lb_qspec s = q->spec;
    const int64_t rows = q->rows, cols = q->cols;
    CHECK_OK(lb_qtensor_store_scales(q));
    size_t total;
    CHECK_OK(lb_format_size(&s, rows, cols, NULL, NULL, &total));
    uint8_t *bytes = lb_calloc(1, total);
    CHECK_OK(lb_qtensor_encode(q, bytes));
    lb_qtensor_free(q);
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "w");
    t->spec = s;
    t->rows = rows;
    t->cols = cols;
    t->data = t->owned = bytes;
    t->nbytes = total;
    CHECK_OK(lb_tensor_resolve(t));
}


/* Each of the entries ks[0..nk) through lb_matmul (its input transform
 * included) on t against the exact sum in doubles of wd (t dequantized) times
 * x (n x cols), bit for bit: for inputs chosen so that every product and
 * partial sum is exact in floats (and, for int8 activations, on the grid).
 * what names the case in messages. Returns the number of entries run. */
static inline int kernel_check_exact(const lb_kernel *const *ks, int nk, lb_tensor *t, const float *wd, const float *x,
                                     int n, const char *what) {
    const int rows = (int)t->rows, cols = (int)t->cols;
    float *y = lb_alloc((size_t)n * rows * 4);
    for (int e = 0; e < nk; e++) {
        CHECK_OK(lb_kernel_use(t, ks[e]));
        CHECK_OK(lb_matmul(t, x, n, y, NULL));
        for (int i = 0; i < n; i++)
            for (int r = 0; r < rows; r++) {
                double want = 0;
                for (int c = 0; c < cols; c++) want += (double)wd[(size_t)r * cols + c] * x[(size_t)i * cols + c];
                CHECK_MSG(y[(size_t)i * rows + r] == want, "%s on %s %dx%d n %d: y[%d,%d] = %.9g, exactly %.9g", ks[e]->name,
                          what, rows, cols, n, i, r, y[(size_t)i * rows + r], want);
            }
    }
    lb_free(y);
    return nk;
}

/* ---- entries with an input transform (kernels.h: lb_kernel.pre; onebit,
 * ptq161, littlebit: kernels/binfam.h) ------------------------------------- */

/* What run_kernel hands such an entry: x transformed by the tensor t (whose
 * packed layout must be the entry's: lb_kernel_use first), lb_alloc'd,
 * n x *xcols; x itself (not a copy) for an entry without one. */
static inline const float *kernel_pre_input(const lb_kernel *k, const lb_tensor *t, const float *x, int n, int *xcols) {
    *xcols = (int)t->cols;
    if (!k->pre) return x;
    *xcols = k->pre_cols(t);
    float *out = lb_alloc((size_t)n * (size_t)*xcols * sizeof(float));
    k->pre(t, x, n, out);
    return out;
}

/* y (n x ldy) = the entry's routine over all of t's rows, called on two row
 * ranges (after its load-time repacking, when it has one, and its input
 * transform, as lb_matmul's run_kernel applies it) */
static inline void kernel_run_entry(const lb_kernel *k, lb_tensor *t, const float *x, int n, float *y, int ldy) {
    CHECK_OK(lb_kernel_use(t, k));
    int rows = (int)t->rows, cols = (int)t->cols, mid = rows / 2, xcols;
    const float *xp = kernel_pre_input(k, t, x, n, &xcols);
    void *buf = lb_alloc(lb_act_bytes(k->act, n, xcols) + 64);
    float *scratch = k->scratch_rows ? lb_alloc((size_t)k->scratch_rows * cols * sizeof(float)) : NULL;
    lb_act act;
    lb_act_prepare(k->act, xp, n, xcols, buf, &act);
    if (mid > 0) k->run(t, &act, 0, mid, y, ldy, scratch);
    k->run(t, &act, mid, rows, y, ldy, scratch);
    lb_free(scratch);
    lb_free(buf);
    if (xp != x) lb_free((void *)xp);
}

/* A float-activation entry k (and its twin, when not NULL) on tensor t at
 * each batch of ns[0..n_ns) with random activations: against dequantize +
 * the reference GEMM and against the twin, within 1e-5 of sum |w x| (float
 * rounding only), and nothing written past the last row. what names the
 * case (the spec) in messages. Returns the number of batches checked. */
static inline int kernel_check_f32_entry(const lb_kernel *k, const lb_kernel *twin, lb_tensor *t, const int *ns,
                                         size_t n_ns, lb_rng *rng, const char *what) {
    const int rows = (int)t->rows, cols = (int)t->cols;
    int checked = 0;
    float *wd = lb_alloc((size_t)rows * cols * 4);
    CHECK_OK(lb_dequantize(t, wd));
    for (size_t ni = 0; ni < n_ns; ni++) {
        int n = ns[ni], ldy = rows + 1;
        float *x = lb_alloc((size_t)n * cols * 4), *y0 = lb_alloc((size_t)n * rows * 4);
        float *y1 = lb_calloc((size_t)n * ldy, 4), *y2 = lb_calloc((size_t)n * ldy, 4);
        double *mag = lb_alloc((size_t)n * rows * sizeof(double));
        kernel_fill(rng, x, (size_t)n * cols, 1.0f);
        lb_gemm_nt_ref(n, rows, cols, x, cols, wd, cols, y0, rows);
        kernel_error_bound(LB_ACT_F32, x, n, wd, rows, cols, 1.0, mag);
        kernel_run_entry(k, t, x, n, y1, ldy);
        if (twin) kernel_run_entry(twin, t, x, n, y2, ldy);
        for (int i = 0; i < n; i++) {
            for (int r = 0; r < rows; r++) {
                double tol = 1e-5 * mag[(size_t)i * rows + r] + 1e-30, a = y1[(size_t)i * ldy + r];
                CHECK_MSG(fabs(a - y0[(size_t)i * rows + r]) <= tol,
                          "%s on %s n %d cols %d: y[%d,%d] %.9g vs reference %.9g", k->name, what, n, cols, i, r, a,
                          y0[(size_t)i * rows + r]);
                if (twin)
                    CHECK_MSG(fabs(a - y2[(size_t)i * ldy + r]) <= tol, "%s on %s n %d cols %d: y[%d,%d] %.9g vs twin %.9g",
                              k->name, what, n, cols, i, r, a, y2[(size_t)i * ldy + r]);
            }
            CHECK_MSG(y1[(size_t)i * ldy + rows] == 0.0f, "%s wrote past row %d", k->name, rows);
        }
        checked++;
        lb_free(x), lb_free(y0), lb_free(y1), lb_free(y2), lb_free(mag);
    }
    lb_free(wd);
    return checked;
}

/* bound and mag (n x rows, [i * rows + r]) of an entry with an input
 * transform on tensor t (onebit, ptq161, littlebit, billm), against dequantizing t
 * and multiplying by x in floats:
 *   onebit (int8 activations of x' = g x, W' = h S): each x'_c moves by at
 *     most half its block's step d'_b / 2 and meets |W'_rc| = |h_r|, so
 *     |y - y_ref| <= |h_r| sum_c d'_b(c) / 2 + rel sum_c |w_rc x_c|;
 *   ptq161 (int8 activations of the reordered x', salient columns first, the
 *     binary block from the next multiple of LB_ACT_PAD): the same sum over
 *     x' blocks with the reordered weights, + rel sum |w x|;
 *   littlebit (floats): rel * M, M_ir = |h_r| sum_j |l_j| sum_c |g_c x_ic|,
 *     the magnitude of the factored sums (which cancel: it can exceed
 *     sum |w x| a lot);
 *   billm (floats, the columns permuted): rel * sum |w x|.
 * mag is what the SIMD-vs-scalar comparison scales its tolerance by: sum |w x|,
 * littlebit M. Returns 0 when t is none of these. */
static inline int kernel_binfam_bound(const lb_tensor *t, const float *x, int n, const float *wd, double rel,
                                      double *bound, double *mag) {
    const int rows = (int)t->rows, cols = (int)t->cols;
    const char *fam = t->spec.family->name;
    lb_qtensor q;
    memset(&q, 0, sizeof q);
    if (lb_qtensor_init(&q, &t->spec, t->rows, t->cols) != LB_OK || lb_qtensor_decode(&q, t->data, t->nbytes) != LB_OK) {
        lb_qtensor_free(&q);
        return 0;
    }
    kernel_error_bound(LB_ACT_F32, x, n, wd, rows, cols, 1.0, mag);
    int known = 1;
    if (!strcmp(fam, "littlebit")) {
        double sl = 0;
        for (int j = 0; j < q.lowrank.rank; j++) sl += fabs(q.lowrank.l[j]);
        for (int i = 0; i < n; i++) {
            double sx = 0;
            for (int c = 0; c < cols; c++) sx += fabs((double)q.lowrank.g[c] * x[(size_t)i * cols + c]);
            for (int r = 0; r < rows; r++) {
                mag[(size_t)i * rows + r] = fabs(q.lowrank.h[r]) * sl * sx;
                bound[(size_t)i * rows + r] = rel * mag[(size_t)i * rows + r];
            }
        }
    } else if (!strcmp(fam, "onebit") || !strcmp(fam, "ptq161")) {
        int onebit = !strcmp(fam, "onebit");
        /* x' and |W'| column by column: src[p] the original column of x' column p (-1: padding) */
        int k = 0, width = cols;
        int *src = lb_alloc((size_t)(cols + LB_ACT_PAD) * sizeof(int));
        if (onebit) {
            for (int c = 0; c < cols; c++) src[c] = c;
        } else {
            for (int c = 0; c < cols; c++) k += q.col_mask[c] != 0;
            int ks = (k + LB_ACT_PAD - 1) / LB_ACT_PAD * LB_ACT_PAD, p = 0;
            width = ks + cols - k;
            for (int c = 0; c < cols; c++)
                if (q.col_mask[c]) src[p++] = c;
            for (; p < ks; p++) src[p] = -1;
            for (int c = 0; c < cols; c++)
                if (!q.col_mask[c]) src[p++] = c;
        }
        for (int i = 0; i < n; i++)
            for (int r = 0; r < rows; r++) {
                double act = 0;
                for (int p0 = 0; p0 < width; p0 += 32) {
                    int p1 = p0 + 32 < width ? p0 + 32 : width;
                    double amax = 0, wsum = 0;
                    for (int p = p0; p < p1; p++) {
                        if (src[p] < 0) continue;
                        double xv = x[(size_t)i * cols + src[p]];
                        if (onebit) xv *= q.col_scale[src[p]];
                        amax = fmax(amax, fabs(xv));
                        wsum += onebit ? fabs(q.scale[r]) : fabs(wd[(size_t)r * cols + src[p]]);
                    }
                    act += wsum * (amax / 127.0) / 2.0;
                }
                bound[(size_t)i * rows + r] = rel * mag[(size_t)i * rows + r] + act * (1 + 1e-6);
            }
        lb_free(src);
    } else if (!strcmp(fam, "billm")) { /* a permutation of float inputs: float rounding only */
        for (size_t e = 0; e < (size_t)n * rows; e++) bound[e] = rel * mag[e];
    } else {
        known = 0;
    }
    lb_qtensor_free(&q);
    return known;
}

#endif
