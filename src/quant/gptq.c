/* GPTQ (Frantar, Ashkboos, Hoefler, Alistarh 2022, "GPTQ: Accurate
 * Post-Training Quantization for Generative Pre-trained Transformers",
 * arXiv:2210.17323; METHODS.md s2; reference code IST-DASLab/gptq gptq.py).
 *
 * Objective, per linear, over calibration inputs X (n_samples x cols):
 *   min_Q ||W X^T - Q X^T||_F^2 = tr(dW H dW^T),  dW = W - Q,  H = X^T X
 * (lowbit's statistics hold H = sum x x^T; the paper writes H = 2 X X^T with X
 * as columns, the reference averages 2/N sum x x^T. The result does not
 * depend on the scale of H: damping is relative to mean(diag H) and every
 * update is a ratio of entries of the same factor.) Rows are independent and
 * share H. Columns are quantized one at a time in order; the error of column
 * i is spread over the columns not yet quantized by the Optimal Brain
 * Surgeon update, written with the upper Cholesky factor U of H^-1
 * (H^-1 = U^T U):
 *   q_i = Q(w_i),  e_i = (w_i - q_i) / U_ii,  w_j -= e_i U_ij  (j > i)
 * which replaces OBQ's rank-1 downdates of H^-1. Lazy batch: within a block
 * of `block` columns (128) the updates touch only the block; the rest of the
 * row gets one GEMM per block, W[:, end:] -= E U[block, end:].
 * The loss is sum_i e_i^2 (= tr(dW H dW^T) for the damped H, since
 * dW = E U and U H U^T = I); it is reported with the damping used.
 *
 * Defaults as the reference: percdamp 0.01 (lambda = percdamp mean(diag H)
 * added to the diagonal), block 128, no act-order, group parameters fitted
 * when a group's first column is reached, from the already-updated weights.
 * Dead inputs (H_ii == 0) get H_ii = 1 and their weights zeroed, as the
 * reference does.
 * Deviations and choices:
 * - Damping is raised x10 (from 1e-6 mean(diag H) when percdamp is 0) until
 *   the factorization succeeds, up to 100 mean(diag H), and the
 *   value used is reported (lb_method_report); past that the call fails
 *   naming the linear's H as not positive definite. The reference fails.
 * - U is computed in double from one Cholesky factorization and one
 *   triangular inverse (blocked over OpenMP with single-threaded BLAS
 *   calls; see lb_hinv_factor in hinv.c, shared with ldlq.c), not
 *   the reference's three steps; W, E and U in the updates are float (the
 *   reference: float32 throughout).
 * - act_order (descending diag H) always uses static groups for grouped
 *   formats: every group's parameters come from the initial weights in
 *   original column order, so the stored layout stays the format's (no
 *   per-column group index). static_groups=1 does the same without
 *   act-order. Formats with one scale per row fit it once, from the initial
 *   row (as the reference's groupsize -1). nf4 with double quantization also
 *   uses static groups: its stored scales depend on all groups at once;
 *   so does nvfp4, whose tensor scale fixes every group's grid
 *   (lb_format_tensor_scaled).
 * - A group's grid is round-to-nearest's (lb_rtn_quantize on the group's
 *   current columns, with the row's clip rule), so every uniform format
 *   (1-8 bits, any group, sym/asym, fp16 offset or int zero) and nf4 are
 *   supported exactly as RTN stores them; codes are the nearest on the
 *   stored grid. Binary (sign x alpha) and ternary formats always use
 *   static groups: alpha (mean|w|) or the ternary scale (absmean, or TWN's
 *   rule) comes from RTN on the initial weights, and each column takes the
 *   nearest of its 2 or 3 levels with error feedback, as REFERENCE.md's
 *   GPTQ on binary and ternary does.
 * - grid_fit=hqq (HQQ's zero-points, then GPTQ, as the issue and HQQ's authors
 *   combine them): every group's grid is HQQ's (src/quant/hqq.c, its
 *   defaults) on the initial weights, and groups are static (HQQ's fit is
 *   per group of the original weights; refitting it on updated columns is
 *   not done). Uniform formats without hierarchical scales, clip minmax.
 * - Hierarchical scales (uniform s<k>): the initial RTN fit on the whole
 *   matrix picks every super-group's super-scales (and, static groups,
 *   every group's integers: the stored ones). Dynamic groups keep those
 *   super-scales fixed and refit the group's integers when its first column
 *   is reached, from the updated weights, by RTN's lattice rule
 *   (lb_rtn_hscale_fit_group): a super-scale depends on all groups of its
 *   rows, which are not known before the columns are quantized.
 * - weighted_grid=1 (not in the reference; llama.cpp's importance-weighted
 *   k-quant fits are the model): clip=mse scores each candidate grid by
 *   sum_i H_ii (w_i - q_i)^2 instead of the plain squared error, the diagonal
 *   of the loss GPTQ minimizes. Min-max and aciq grids ignore it.
 * - Dense-and-sparse (lb_method_opts.keep, src/quant/outliers.c): a kept
 *   weight spreads no error (its error is zero: the sparse part makes it
 *   exact) and its final updated value goes to kept[]; it still receives
 *   updates from earlier columns, and a dynamic group grid sees its
 *   replacement value plus those updates.
 * - GPTAQ (Li et al. 2025, "GPTAQ: Efficient Finetuning-Free Quantization
 *   for Asymmetric Calibration", arXiv:2504.02692; reference code
 *   Intelligent-Computing-Lab-Yale/GPTAQ gptaq_utils.py; METHODS.md s26) is
 *   the row "gptaq": the objective becomes ||Q X~^T - W X^T||^2, the
 *   quantized layer on the partly quantized model's inputs X~ matching the
 *   fp32 layer on the fp32 inputs X, with H = X~^T X~ and the cross
 *   statistics D = (X - X~)^T X~ (LB_STATS_DXTX, sequential calibration
 *   only). As the reference, P = alpha triu_1(D U^T) U (in act-order
 *   coordinates, D's dead columns zeroed) and every column update gains
 *   + w_i P_i,j (j > i), w_i the column's weight just before rounding;
 *   alpha defaults to the reference's 0.25. Deviation: the reference's lazy
 *   block update uses the rounded block (W1 after its columns became q)
 *   while its in-block update uses w_i; here both use w_i, so the result
 *   does not depend on the block size. The reported loss is still
 *   sum e_i^2 (the symmetric part).
 * Determinism: rows are processed in fixed tiles of 64, each tile by one
 * thread with single-threaded BLAS, so the bytes do not depend on the
 * thread count; the factorization, once before, splits its work into fixed
 * column chunks for the same reason. */
#include "quant/method_rows.h"
#include "core/blas_threads.h"
#include "quant/hinv.h"
#include "quant/trellis.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef LB_HAVE_BLAS
#include <cblas.h>
#include <lapacke.h>
#endif

#define TILE_ROWS 64

typedef struct {
    double percdamp;
    int block;
    int act_order;
    int static_groups;
    int weighted_grid;
    int hqq_grid;    /* grid_fit=hqq: HQQ grids on the initial weights, static */
    lb_rtn_opts rtn; /* grid rule for each group */
    double alpha;    /* gptaq: strength of the asymmetric term (0: plain GPTQ) */
} gptq_opts;

static const char *const clip_choices[] = {"minmax", "mse", "aciq", "aciq-gauss", NULL};
static const char *const grid_choices[] = {"rtn", "hqq", NULL};

/* The options gptq and gptaq share, in this order (opts_from reads them by
 * position: value[0..5]). */
#define GPTQ_SHARED_OPTIONS                                                                                          \
    {"percdamp", LB_OPTION_FLOAT, "0.01", "damping added to diag(H), relative to its mean (raised if needed)", 0,    \
     10, NULL, NULL},                                                                                                \
        {"block", LB_OPTION_INT, "128", "columns per lazy-batch block", 1, 65536, NULL, NULL},                       \
        {"act_order", LB_OPTION_INT, "0", "1: quantize columns by descending diag(H) (static groups)", 0, 1, NULL,   \
         NULL},                                                                                                      \
        {"static_groups", LB_OPTION_INT, "0", "1: group grids from the initial weights, not the updated ones", 0, 1, \
         NULL, NULL},                                                                                                \
        {"clip", LB_OPTION_CHOICE, "minmax", "each group's grid range: minmax | mse | aciq | aciq-gauss", 0, 0,      \
         clip_choices, "clipping rule"},                                                                             \
        {"weighted_grid", LB_OPTION_INT, "0", "1: clip=mse scores a grid by its error weighted by diag(H) per input", \
         0, 1, NULL, NULL}

/* shared with awq+gptq (awq.c), whose options are these */
const lb_method_option lb_gptq_options[LB_GPTQ_N_OPTIONS] = {
    GPTQ_SHARED_OPTIONS,
    {"grid_fit", LB_OPTION_CHOICE, "rtn", "group grids fitted by rtn (the clip rule) or hqq (HQQ zero-points, static groups)",
     0, 0, grid_choices, "grid source"},
};

/* gptaq: gptq's options but grid_fit, and alpha */
static const lb_method_option gptaq_options[] = {
    GPTQ_SHARED_OPTIONS,
    {"alpha", LB_OPTION_FLOAT, "0.25", "weight of the fp32-input term (GPTAQ's reference: 0.25)", 0, 1, NULL, NULL},
};

static void opts_from(const lb_method_opts *o, gptq_opts *g) {
    g->percdamp = o->value[0];
    g->block = (int)o->value[1];
    g->act_order = (int)o->value[2];
    g->static_groups = (int)o->value[3];
    lb_rtn_opts_default(&g->rtn);
    lb_clip_parse(clip_choices[(int)o->value[4]], &g->rtn.clip);
    g->weighted_grid = (int)o->value[5];
    double grid = lb_method_opts_get(o, "grid_fit"); /* gptq and awq+gptq */
    g->hqq_grid = !isnan(grid) && grid == 1;
    double alpha = lb_method_opts_get(o, "alpha"); /* gptaq's row only */
    g->alpha = isnan(alpha) ? 0.0 : alpha;
}

static lb_status gptq_check(const lb_qspec *spec, const lb_method_opts *o) {
    lb_grid_kind grid = lb_format_grid(spec);
    if (grid == LB_GRID_TRELLIS && !spec->seq_down) {
        char text[64];
        lb_qspec_format(spec, text, sizeof text);
        return lb_fail(LB_ERR_INVALID,
                       "method %s quantizes a trellis format one column at a time: its sequences must run down the "
                       "columns (add ':down' to '%s')",
                       o && o->method ? o->method->name : "gptq", text);
    }
    if (grid != LB_GRID_UNIFORM && grid != LB_GRID_ABSMAX && grid != LB_GRID_SIGN && grid != LB_GRID_TERNARY &&
        grid != LB_GRID_TRELLIS) {
        char text[64];
        lb_qspec_format(spec, text, sizeof text);
        return lb_fail(LB_ERR_INVALID,
                       "method %s quantizes to uniform (int), nf4, ternary, binary and trellis (:down) formats, not "
                       "'%s'",
                       o && o->method ? o->method->name : "gptq", text);
    }
    double gs = o ? lb_method_opts_get(o, "grid_fit") : NAN;
    if (!isnan(gs) && gs == 1) { /* grid_fit=hqq: what HQQ itself can fit */
        lb_method_opts ho;
        lb_method_opts_default(&lb_method_hqq, &ho);
        lb_status st = lb_method_hqq.check(spec, &ho);
        if (st != LB_OK) return lb_fail_context(st, "grid_fit=hqq");
        lb_clip clip;
        lb_clip_parse(clip_choices[(int)o->value[4]], &clip);
        if (clip != LB_CLIP_MINMAX)
            return lb_fail(LB_ERR_INVALID, "grid_fit=hqq fits its own grids (from min-max): leave clip at minmax");
    }
#ifndef LB_HAVE_BLAS
    return lb_fail(LB_ERR_UNSUPPORTED, "method gptq needs OpenBLAS and LAPACKE, and lowbit was built without them");
#else
    return LB_OK;
#endif
}

#ifdef LB_HAVE_BLAS

/* Descending diag, ties by index (a stable, thread-free order). */
static const double *sort_diag;
static int by_diag_desc(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    if (sort_diag[i] != sort_diag[j]) return sort_diag[i] > sort_diag[j] ? -1 : 1;
    return (i > j) - (i < j);
}

/* The factor for methods built on GPTQ's column loop (ptq161, billm: see
 * method_rows.h): columns in their order, dead inputs marked. */
lb_status lb_gptq_inverse_factor(const double *xtx, int64_t n, double percdamp, char *dead, float *U,
                                 lb_method_report *rep) {
    int *perm = malloc((size_t)n * sizeof(int));
    if (!perm) return LB_ERR_NOMEM;
    for (int64_t i = 0; i < n; i++) {
        perm[i] = (int)i;
        dead[i] = xtx[i * n + i] == 0.0;
        rep->dead_inputs += dead[i];
    }
    int openblas_threads = lb_blas_threads_single();
    double t0 = lb_now();
    lb_status st = lb_hinv_factor(xtx, n, perm, dead, percdamp, U, rep);
    rep->factor_seconds = lb_now() - t0;
    lb_blas_threads_restore(openblas_threads);
    free(perm);
    return st;
}

/* Copies group parameters of one group per row from a (tr x len) RTN result
 * into q at groups (r0 + r) * gpr + g. */
static void take_group(lb_qtensor *q, const lb_qtensor *sub, int64_t r0, int64_t tr, int64_t g) {
    for (int64_t r = 0; r < tr; r++) {
        int64_t k = (r0 + r) * q->groups_per_row + g;
        q->scale[k] = sub->scale[r];
        q->offset[k] = sub->offset[r];
        q->zero[k] = sub->zero[r];
    }
}

typedef struct {
    const gptq_opts *o;
    int64_t cols;
    const int *perm; /* position -> original column */
    const float *U;  /* cols x cols */
    const float *P;  /* gptaq: cols x cols strictly upper (NULL: plain GPTQ) */
    int dynamic;     /* fit each group when its first column is reached */
    const char *dead;      /* original column -> H_jj == 0 */
    const uint8_t *keep;   /* dense-and-sparse: weights stored exactly elsewhere (NULL: none) */
    float *kept;           /* their final updated values (rows x cols, original order) */
    const float *colw;     /* weighted_grid: diag(H) / mean, per original column; else NULL */
    const lb_trellis *trellis; /* trellis formats (sequences down the columns): the code; else NULL */
} gptq_job;

/* Trellis formats: column j of rows [r0, r0 + tr) (one sequence piece) at
 * once, the Viterbi search on the updated weights W[:, i] over the row
 * scales (error weighted by scale^2, i.e. in w's units); vals gets what
 * each weight now decodes to. */
static void trellis_column(const gptq_job *job, lb_qtensor *q, lb_trellis_work *wk, const float *W, int64_t r0,
                           int64_t tr, int64_t i, int64_t j, float *vals) {
    const lb_trellis *t = job->trellis;
    const int64_t n = job->cols;
    const int V = t->V;
    const int steps = (int)((tr + V - 1) / V); /* v2 with an odd piece: the last step's second weight is missing */
    float x[LB_TRELLIS_MAX_SEQ] = {0}, wt[LB_TRELLIS_MAX_SEQ] = {0}, v[LB_TRELLIS_MAX_SEQ], a[LB_TRELLIS_MAX_SEQ];
    uint8_t codes[LB_TRELLIS_MAX_SEQ];
    for (int64_t r = 0; r < tr; r++) {
        a[r] = q->scale[lb_qtensor_group(q, r0 + r, j)];
        x[r] = a[r] != 0.0f ? W[r * n + i] / a[r] : 0.0f;
        wt[r] = a[r] != 0.0f ? a[r] * a[r] : 1.0f;
    }
    lb_trellis_encode_any(t, wk, x, wt, steps, codes);
    lb_trellis_decode(t, codes, steps, v);
    lb_trellis_put_codes(q, r0, j, 1, codes, tr);
    for (int64_t r = 0; r < tr; r++) vals[r] = a[r] * v[r];
}

/* Quantizes rows [r0, r0 + tr) of the (already permuted, dead-zeroed) tile
 * W (tr x cols, updated in place); writes codes (and, dynamic, grids) into q. */
static lb_status gptq_tile(const gptq_job *job, lb_qtensor *q, int64_t r0, int64_t tr, float *W, float *E,
                           float *Wpre, float *gbuf, lb_trellis_work *wk, double *loss) {
    const int64_t n = job->cols, B = job->o->block, G = q->group_len;
    const float *U = job->U, *P = job->P;
    double sum = 0;
    for (int64_t c0 = 0; c0 < n; c0 += B) {
        int64_t c1 = c0 + B < n ? c0 + B : n, bl = c1 - c0;
        for (int64_t i = c0; i < c1; i++) {
            int64_t j = job->perm[i];
            if (job->dynamic && j % G == 0 && q->spec.scale_bits) { /* no act-order here: j == i */
                int64_t len = n - j < G ? n - j : G;
                for (int64_t r = 0; r < tr; r++)
                    lb_rtn_hscale_fit_group(q, (r0 + r) * q->groups_per_row + j / G, W + r * n + j, len,
                                            job->colw ? job->colw + j : NULL, &job->o->rtn);
            } else if (job->dynamic && j % G == 0) { /* no act-order here: j == i */
                int64_t len = n - j < G ? n - j : G;
                for (int64_t r = 0; r < tr; r++) memcpy(gbuf + r * len, W + r * n + j, (size_t)len * sizeof(float));
                lb_qtensor sub;
                lb_status st = lb_rtn_quantize_weighted(gbuf, tr, len, job->colw ? job->colw + j : NULL, &q->spec,
                                                        &job->o->rtn, &sub);
                if (st != LB_OK) return st;
                take_group(q, &sub, r0, tr, j / G);
                lb_qtensor_free(&sub);
            }
            float d = U[i * n + i];
            if (job->trellis) trellis_column(job, q, wk, W, r0, tr, i, j, gbuf);
            for (int64_t r = 0; r < tr; r++) {
                float *row = W + r * n, value;
                if (job->trellis) {
                    value = gbuf[r];
                } else {
                    int64_t k = lb_qtensor_group(q, r0 + r, j);
                    int code = lb_qtensor_nearest_code(q, k, row[i]);
                    q->codes[(r0 + r) * q->cols_padded + j] = (uint8_t)code;
                    value = lb_qtensor_value(q, r0 + r, j);
                }
                float e = (row[i] - value) / d;
                if (job->keep && job->keep[(r0 + r) * n + j]) {
                    /* stored exactly in the sparse part: no error to spread;
                     * it takes the value the updates led it to (a dead
                     * input's weight was zeroed, not updated: left alone) */
                    if (!job->dead[j]) job->kept[(r0 + r) * n + j] = row[i];
                    e = 0;
                }
                E[r * bl + (i - c0)] = e;
                sum += (double)e * e;
                const float *u = U + i * n;
                if (P) { /* gptaq: the fp32-input term of this column, carried by the later ones */
                    float wi = row[i];
                    const float *p = P + i * n;
                    Wpre[r * bl + (i - c0)] = wi;
                    for (int64_t m = i + 1; m < c1; m++) row[m] -= e * u[m] - wi * p[m];
                } else {
                    for (int64_t m = i + 1; m < c1; m++) row[m] -= e * u[m];
                }
            }
        }
        if (c1 < n) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)tr, (int)(n - c1), (int)bl, -1.0f, E,
                        (int)bl, U + c0 * n + c1, (int)n, 1.0f, W + c1, (int)n);
            if (P)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)tr, (int)(n - c1), (int)bl, 1.0f, Wpre,
                            (int)bl, P + c0 * n + c1, (int)n, 1.0f, W + c1, (int)n);
        }
    }
    /* padding decodes to (nearly) zero, as RTN stores it (trellis: padding
     * columns are sequences of their own, never read; their codes stay 0) */
    for (int64_t r = 0; r < tr && !job->trellis; r++)
        for (int64_t c = n; c < q->cols_padded; c++)
            q->codes[(r0 + r) * q->cols_padded + c] =
                (uint8_t)lb_qtensor_nearest_code(q, lb_qtensor_group(q, r0 + r, c), 0.0f);
    *loss = sum;
    return LB_OK;
}

/* gptaq: P = alpha triu_1(D U^T) U in the act-order coordinates (perm), D's
 * dead columns zeroed; double products, single-threaded BLAS (the caller
 * holds OpenBLAS at one thread), stored as float for the updates. */
static lb_status gptaq_factor(const double *dxtx, int64_t n, const int *perm, const char *dead, double alpha,
                              const float *U, float *P) {
    size_t nn = (size_t)(n * n);
    double *D = lb_alloc(nn * sizeof(double)), *Ud = lb_alloc(nn * sizeof(double)),
           *A = lb_alloc(nn * sizeof(double));
    if (!D || !Ud || !A) {
        lb_free(D);
        lb_free(Ud);
        lb_free(A);
        return lb_fail(LB_ERR_NOMEM, "out of memory in gptaq (%lld columns)", (long long)n);
    }
    for (int64_t a = 0; a < n; a++)
        for (int64_t b = 0; b < n; b++) D[a * n + b] = dead[perm[b]] ? 0.0 : dxtx[(int64_t)perm[a] * n + perm[b]];
    for (size_t i = 0; i < nn; i++) Ud[i] = U[i];
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, (int)n, 1.0, D, (int)n, Ud, (int)n, 0.0, A,
                (int)n);
    for (int64_t a = 0; a < n; a++) /* strictly upper: column a's term goes to later columns only */
        for (int64_t b = 0; b <= a; b++) A[a * n + b] = 0.0;
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)n, (int)n, alpha, A, (int)n, Ud, (int)n, 0.0,
                D, (int)n);
    for (size_t i = 0; i < nn; i++) P[i] = (float)D[i];
    lb_free(D);
    lb_free(Ud);
    lb_free(A);
    return LB_OK;
}

static lb_status check_inputs(const float *w, int64_t rows, int64_t cols, const double *xtx) {
    for (int64_t i = 0; i < rows * cols; i++)
        if (!isfinite(w[i]))
            return lb_fail(LB_ERR_NUMERIC, "weight at row %lld, column %lld is %s", (long long)(i / cols),
                           (long long)(i % cols), isnan(w[i]) ? "NaN" : "infinite");
    /* finite: lb_quantize_tensor checked the statistics */
    /* both triangles, equal up to rounding (one filled triangle is a caller's bug) */
    for (int64_t i = 0; i < cols; i++)
        for (int64_t j = i + 1; j < cols; j++) {
            double a = xtx[i * cols + j], b = xtx[j * cols + i];
            if (fabs(a - b) > 1e-6 * (sqrt(fabs(xtx[i * cols + i] * xtx[j * cols + j])) + fabs(a) + fabs(b)))
                return lb_fail(LB_ERR_NUMERIC,
                               "X^T X is not symmetric: (%lld, %lld) = %g but (%lld, %lld) = %g "
                               "(both triangles must be filled)",
                               (long long)i, (long long)j, a, (long long)j, (long long)i, b);
        }
    for (int64_t i = 0; i < cols; i++)
        if (xtx[i * cols + i] < 0)
            return lb_fail(LB_ERR_NUMERIC, "X^T X has a negative diagonal entry (%lld: %g): not a sum of x x^T",
                           (long long)i, xtx[i * cols + i]);
    return LB_OK;
}

static lb_status gptq_run(const float *w, int64_t rows, int64_t cols, const double *xtx, const double *dxtx,
                          const lb_qspec *spec, const gptq_opts *o, const lb_method_opts *mo, lb_qtensor *q,
                          lb_method_report *rep) {
    lb_status st = check_inputs(w, rows, cols, xtx);
    if (st != LB_OK) return st;
    memset(rep, 0, sizeof *rep);
    int *perm = malloc((size_t)cols * sizeof(int));
    char *dead = calloc((size_t)cols, 1);
    double *diag = malloc((size_t)cols * sizeof(double));
    float *U = lb_alloc((size_t)(cols * cols) * sizeof(float));
    float *w0 = NULL, *colw = NULL, *P = NULL;
    if (!perm || !dead || !diag || !U) {
        st = LB_ERR_NOMEM;
        goto done;
    }
    for (int64_t i = 0; i < cols; i++) {
        perm[i] = (int)i;
        diag[i] = xtx[i * cols + i];
        dead[i] = diag[i] == 0.0;
        rep->dead_inputs += dead[i];
    }
    if (o->act_order) {
        sort_diag = diag; /* qsort has no context argument; only read during the call */
        qsort(perm, (size_t)cols, sizeof(int), by_diag_desc);
    }
    int openblas_threads = lb_blas_threads_single();
    double t0 = lb_now();
    st = lb_hinv_factor(xtx, cols, perm, dead, o->percdamp, U, rep);
    if (st == LB_OK && dxtx && o->alpha > 0) {
        if (!(P = lb_alloc((size_t)(cols * cols) * sizeof(float)))) st = LB_ERR_NOMEM;
        else st = gptaq_factor(dxtx, cols, perm, dead, o->alpha, U, P);
    }
    rep->factor_seconds = lb_now() - t0;
    if (st != LB_OK) goto restore;

    /* initial weights, dead inputs zeroed (the static grids see them so) */
    w0 = lb_alloc((size_t)(rows * cols) * sizeof(float));
    if (!w0) {
        st = LB_ERR_NOMEM;
        goto restore;
    }
    memcpy(w0, w, (size_t)(rows * cols) * sizeof(float));
    if (rep->dead_inputs)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++)
                if (dead[c]) w0[r * cols + c] = 0.0f;
    /* weighted_grid: an input's importance is its diag(H) (the loss a unit
     * error on it costs, ignoring correlations), over the mean so the
     * weighted errors stay in range; dead inputs weigh 0 */
    if (o->weighted_grid) {
        colw = lb_alloc((size_t)cols * sizeof(float));
        if (!colw) {
            st = LB_ERR_NOMEM;
            goto restore;
        }
        double mean = 0;
        for (int64_t c = 0; c < cols; c++) mean += dead[c] ? 0.0 : diag[c];
        mean = mean > 0 ? mean / (double)cols : 1.0;
        for (int64_t c = 0; c < cols; c++) colw[c] = dead[c] ? 0.0f : (float)(diag[c] / mean);
    }
    /* every grid from the initial weights; dynamic mode refits groups later.
     * A trellis needs only RTN's scales: its codes come from the column
     * searches below (a full RTN pass would run every search twice) */
    lb_grid_kind grid = lb_format_grid(spec);
    if (grid == LB_GRID_TRELLIS) {
        st = lb_qtensor_init(q, spec, rows, cols);
        if (st == LB_OK && (st = lb_trellis_fit_scales(w0, rows, cols, q)) != LB_OK) lb_qtensor_free(q);
    } else {
        st = o->hqq_grid ? lb_hqq_default_fit(w0, rows, cols, spec, q)
                         : lb_rtn_quantize_weighted(w0, rows, cols, colw, spec, &o->rtn, q);
    }
    if (st != LB_OK) goto restore;
    int dynamic = q->groups_per_row > 0 && q->group_len < cols && !o->act_order && !o->static_groups &&
                  !(grid == LB_GRID_ABSMAX && spec->double_quant) && !lb_format_tensor_scaled(spec) &&
                  grid != LB_GRID_SIGN && grid != LB_GRID_TERNARY && grid != LB_GRID_TRELLIS && !o->hqq_grid;
    /* trellis: the scales are RTN's (static); a tile is one piece of the
     * columns' sequences, so each column of a tile is whole sequences */
    lb_trellis trellis = {0};
    if (grid == LB_GRID_TRELLIS && (st = lb_trellis_for_spec(&trellis, spec)) != LB_OK) {
        lb_qtensor_free(q);
        goto restore;
    }
    gptq_job job = {o, cols, perm, U, P, dynamic, dead, mo->keep, mo->kept, colw, trellis.table ? &trellis : NULL};
    const int64_t tile_max = job.trellis ? LB_TRELLIS_MAX_SEQ : TILE_ROWS;
    const int trellis_v = job.trellis ? job.trellis->V : 1;
    int64_t n_tiles = job.trellis ? lb_trellis_step_segments(rows, trellis_v) : (rows + TILE_ROWS - 1) / TILE_ROWS;
    double *tile_loss = calloc((size_t)n_tiles, sizeof(double));
    if (!tile_loss) {
        st = LB_ERR_NOMEM;
        lb_trellis_free(&trellis);
        goto restore;
    }
    lb_worker_error err;
    lb_worker_error_init(&err);
#pragma omp parallel
    {
        int64_t B = o->block < cols ? o->block : cols;
        float *W = lb_alloc((size_t)(tile_max * cols) * sizeof(float));
        float *E = lb_alloc((size_t)(tile_max * B) * sizeof(float));
        float *Wpre = P ? lb_alloc((size_t)(tile_max * B) * sizeof(float)) : NULL;
        float *gbuf = lb_alloc((size_t)(tile_max * q->group_len) * sizeof(float));
        lb_trellis_work wk = {0};
        if (!W || !E || !gbuf || (P && !Wpre) ||
            (job.trellis && lb_trellis_work_init(&wk, job.trellis, LB_TRELLIS_MAX_SEQ) != LB_OK))
            lb_worker_error_set(&err, lb_fail(LB_ERR_NOMEM, "out of memory in gptq"));
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < n_tiles; t++) {
            if (lb_worker_error_failed(&err)) continue;
            int64_t r0 = t * TILE_ROWS, tr = rows - r0 < TILE_ROWS ? rows - r0 : TILE_ROWS;
            if (job.trellis) lb_trellis_step_segment(rows, trellis_v, t, &r0, &tr);
            for (int64_t r = 0; r < tr; r++)
                for (int64_t i = 0; i < cols; i++) W[r * cols + i] = w0[(r0 + r) * cols + perm[i]];
            lb_status s = gptq_tile(&job, q, r0, tr, W, E, Wpre, gbuf, &wk, &tile_loss[t]);
            if (s != LB_OK) lb_worker_error_set(&err, s);
        }
        lb_free(W);
        lb_free(E);
        lb_free(Wpre);
        lb_free(gbuf);
        lb_trellis_work_free(&wk);
    }
    lb_trellis_free(&trellis);
    st = lb_worker_error_raise(&err);
    for (int64_t t = 0; t < n_tiles; t++) rep->proxy_loss += tile_loss[t];
    free(tile_loss);
    /* every scale came from lb_rtn_quantize, as stored (nf4 double
     * quantization: once, over all groups, static) */
    if (st != LB_OK) lb_qtensor_free(q);
restore:
    lb_blas_threads_restore(openblas_threads);
done:
    free(perm);
    free(dead);
    free(diag);
    lb_free(U);
    lb_free(P);
    lb_free(w0);
    lb_free(colw);
    return st;
}
#else
lb_status lb_gptq_inverse_factor(const double *xtx, int64_t n, double percdamp, char *dead, float *U,
                                 lb_method_report *rep) {
    (void)xtx, (void)n, (void)percdamp, (void)dead, (void)U, (void)rep;
    return lb_fail(LB_ERR_UNSUPPORTED, "factoring X^T X needs OpenBLAS and LAPACKE, and lowbit was built without them");
}
#endif /* LB_HAVE_BLAS */

static lb_status gptq_quantize(const float *w, int64_t rows, int64_t cols, const lb_layer_stats *stats,
                               const lb_qspec *spec, const lb_method_opts *opts, lb_qtensor *q) {
    /* gptq_check and the statistics (X^T X of this linear's shape) were
     * checked by lb_quantize_tensor before this call */
#ifdef LB_HAVE_BLAS
    gptq_opts o;
    opts_from(opts, &o);
    lb_method_report local;
    lb_method_report *rep = opts->report ? opts->report : &local;
    double t0 = lb_now();
    /* gptaq's row needs dxtx (checked by lb_quantize_tensor); gptq ignores it */
    const double *dxtx = opts->method && opts->method->stats & LB_STATS_DXTX ? stats->dxtx : NULL;
    lb_status st = gptq_run(w, rows, cols, stats->xtx, dxtx, spec, &o, opts, q, rep);
    rep->seconds = lb_now() - t0;
    return st;
#else
    (void)w;
    (void)rows;
    (void)cols;
    (void)stats;
    (void)spec;
    (void)opts;
    (void)q;
    (void)opts_from;
    return lb_fail(LB_ERR_UNSUPPORTED, "method gptq needs OpenBLAS and LAPACKE, and lowbit was built without them");
#endif
}

const lb_method lb_method_gptq = {
    .name = "gptq",
    .summary = "GPTQ: column-by-column rounding with OBS error feedback under H = X^T X (needs calibration)",
    .stats = LB_STATS_XTX,
    .options = lb_gptq_options,
    .n_options = LB_GPTQ_N_OPTIONS,
    .check = gptq_check,
    .quantize = gptq_quantize,
};

const lb_method lb_method_gptaq = {
    .name = "gptaq",
    .summary = "GPTAQ: GPTQ matching the fp32 layer on fp32 inputs (needs --sequential calibration)",
    .stats = LB_STATS_XTX | LB_STATS_DXTX,
    .options = gptaq_options,
    .n_options = (int)(sizeof gptaq_options / sizeof gptaq_options[0]),
    .check = gptq_check,
    .quantize = gptq_quantize,
};
