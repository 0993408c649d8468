/* PTQ1.61 (Zhao et al. 2025, "PTQ1.61: Push the Real Limit of Extremely
 * Low-Bit Post-Training Quantization Methods for Large Language Models",
 * arXiv:2502.13179; METHODS.md s13; reference code zjq0455/PTQ1.61), onto
 * the ptq161 format (src/formats/ptq161.c): a structured mask of salient
 * input channels kept at 4 bits, the rest binarized.
 *
 * Objective, per linear: tr((W - Q) H (W - Q)^T), H = X^T X.
 *   1. The mask: the k = round(p cols) input channels of largest max|x|
 *      (the paper's activation scales; saliency=mean uses mean|x|,
 *      saliency=hessian H_cc sum_r w_rc^2), ties to the lower index. One bit
 *      per column, the same for every row.
 *   2. Per row, the start: salient weights on a min-max int4 grid (d, m),
 *      the others mu + alpha sign(w - mu), mu their mean, alpha their mean
 *      |w - mu| (the order-1 binarization with a mean BiLLM also uses).
 *   3. Codes (feedback=1): GPTQ's column loop (src/quant/salient.c,
 *      percdamp 0.01, blocks of 128) rounds each weight to the nearest of
 *      its column's grid and spreads the error over the later columns.
 *   4. The four values of each row (d, m, alpha, mu) refitted in closed
 *      form for the fixed codes (refit=1): the objective is quadratic in
 *      them, so a 4 x 4 least-squares problem under H
 *      (lb_ptq161_fit_row); kept only if no worse after fp16 rounding.
 * Defaults: p = 20% (the spec's s20), saliency=max, feedback=1, refit=1.
 * Deviations: the paper learns the binary part's row scales (and the
 * 4-bit clipping) by block-wise gradient descent on the transformer
 * block's output (OmniQuant-style, 20 epochs), and preprocesses weights
 * with a restorative LoRA; here the same role is played by the closed-form
 * row refit on the layer's own objective, and GPTQ's error feedback (not in
 * the paper) is on by default; feedback=0 rounds each weight alone.
 * Dense-and-sparse outliers (keep/kept) are ignored: the sparse part stores
 * those weights exactly, the loop spreads their errors as for any weight.
 * Deterministic: each row is one thread's, sums in a fixed order. */
#include "quant/method_rows.h"
#include "quant/salient.h"

#include <math.h>
#include <string.h>

enum { P_D, P_M, P_ALPHA, P_MU }; /* a row's four values, as lb_ptq161_fit_row orders them */
enum { SALIENCY_MAX, SALIENCY_MEAN, SALIENCY_HESSIAN };

/* mask[c] = 1 for the k columns of largest score, ties to the lower index
 * (a scan per pick: k cols comparisons, no sort with a global context) */
static void pick_columns(const double *score, int64_t cols, int64_t k, uint8_t *mask) {
    memset(mask, 0, (size_t)cols);
    for (int64_t i = 0; i < k; i++) {
        int64_t best = -1;
        for (int64_t c = 0; c < cols; c++)
            if (!mask[c] && (best < 0 || score[c] > score[best])) best = c;
        mask[best] = 1;
    }
}

/* step 2 for row r (w: that row) */
static void fit_row_grids(lb_qtensor *q, int64_t r, const float *w) {
    float lo = INFINITY, hi = -INFINITY;
    double sum = 0;
    int64_t nb = 0;
    for (int64_t c = 0; c < q->cols; c++) {
        if (q->col_mask[c]) {
            lo = fminf(lo, w[c]);
            hi = fmaxf(hi, w[c]);
        } else {
            sum += w[c];
            nb++;
        }
    }
    double mu = nb ? sum / (double)nb : 0.0, dev = 0;
    for (int64_t c = 0; c < q->cols; c++)
        if (!q->col_mask[c]) dev += fabs(w[c] - mu);
    q->scale[r] = q->n_salient ? (hi - lo) / 15.0f : 0.0f;
    q->offset[r] = q->n_salient ? lo : 0.0f;
    q->extra[2 * r] = nb ? (float)(dev / (double)nb) : 0.0f;
    q->extra[2 * r + 1] = (float)mu;
}

/* the code of (r, c) nearest x under the row's stored values */
static int nearest_code(const lb_qtensor *q, int64_t r, int64_t c, float x) {
    if (q->col_mask[c]) {
        float d = q->scale[r], m = q->offset[r];
        if (d == 0.0f) return 0;
        float t = nearbyintf((x - m) / d);
        return t < 0.0f ? 0 : t > 15.0f ? 15 : (int)t;
    }
    float alpha = q->extra[2 * r], mu = q->extra[2 * r + 1];
    return fabsf(x - (mu + alpha)) <= fabsf(x - (mu - alpha));
}

static float quantize_weight(void *ctx, int64_t r, int64_t c, float x) {
    lb_qtensor *q = ctx;
    q->codes[r * q->cols_padded + c] = (uint8_t)nearest_code(q, r, c, x);
    return lb_qtensor_value(q, r, c);
}

static void nearest_codes(lb_qtensor *q, const float *w) {
    for (int64_t r = 0; r < q->rows; r++)
        for (int64_t c = 0; c < q->cols; c++) quantize_weight(q, r, c, w[r * q->cols + c]);
}

lb_status lb_ptq161_rtn(const float *w, int64_t rows, int64_t cols, lb_qtensor *q) {
    double *score = lb_calloc((size_t)cols, sizeof(double));
    if (!score) return LB_ERR_NOMEM;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) score[c] += (double)w[r * cols + c] * w[r * cols + c];
    pick_columns(score, cols, q->n_salient, q->col_mask);
    lb_free(score);
    for (int64_t r = 0; r < rows; r++) fit_row_grids(q, r, w + r * cols);
    lb_status st = lb_qtensor_store_scales(q);
    if (st == LB_OK) nearest_codes(q, w);
    return st;
}

/* ---- the closed-form row values ------------------------------------------ */

/* basis vector j of the row at column c: the value is sum_j p_j basis_j */
static inline double basis(int j, int salient, int code) {
    if (salient) return j == P_D ? code : j == P_M ? 1.0 : 0.0;
    return j == P_ALPHA ? (code ? 1.0 : -1.0) : j == P_MU ? 1.0 : 0.0;
}

/* A = B H B^T, b = B H w^T, c = w H w^T for the row's basis B (4 x n) */
static void normal_equations(const double *H, int64_t n, const float *w, const uint8_t *mask, const uint8_t *codes,
                             double A[4][4], double b[4], double *c) {
    memset(A, 0, 16 * sizeof(double));
    memset(b, 0, 4 * sizeof(double));
    *c = 0;
    for (int64_t a = 0; a < n; a++) {
        const double *h = H + a * n;
        double hv[4] = {0, 0, 0, 0}, hw = 0; /* row a of H times each basis vector and w */
        for (int64_t k = 0; k < n; k++) {
            if (h[k] == 0.0) continue;
            hw += h[k] * w[k];
            if (mask[k]) {
                hv[P_D] += h[k] * codes[k];
                hv[P_M] += h[k];
            } else {
                hv[P_ALPHA] += codes[k] ? h[k] : -h[k];
                hv[P_MU] += h[k];
            }
        }
        for (int i = 0; i < 4; i++) {
            double v = basis(i, mask[a], codes[a]);
            if (v == 0.0) continue;
            for (int j = 0; j < 4; j++) A[i][j] += v * hv[j];
            b[i] += v * hw;
        }
        *c += w[a] * hw;
    }
}

static double quadratic(double A[4][4], const double b[4], double c, const double p[4]) {
    double v = c;
    for (int i = 0; i < 4; i++) {
        v -= 2 * p[i] * b[i];
        for (int j = 0; j < 4; j++) v += p[i] * A[i][j] * p[j];
    }
    return v;
}

static double quadratic_f(double A[4][4], const double b[4], double c, const float p[4]) {
    double pd[4] = {p[0], p[1], p[2], p[3]};
    return quadratic(A, b, c, pd);
}

double lb_ptq161_row_loss(const double *H, int64_t n, const float *w, const uint8_t *mask, const uint8_t *codes,
                          const float p[4]) {
    double A[4][4], b[4], c;
    normal_equations(H, n, w, mask, codes, A, b, &c);
    return quadratic_f(A, b, c, p);
}

/* the minimum of the quadratic (A, b, c) near p (ridge towards p), into p;
 * returns its value. p is left alone when A is zero or the solve fails. */
static double solve_row(double A[4][4], const double b[4], double c, float p[4]) {
    double trace = A[0][0] + A[1][1] + A[2][2] + A[3][3], ridge = 1e-9 * trace / 4, x[4], M[4][5];
    for (int i = 0; i < 4; i++) x[i] = p[i];
    if (!(trace > 0)) return quadratic(A, b, c, x);
    /* (A + ridge I) x = b + ridge p: Gaussian elimination, partial pivoting */
    for (int i = 0; i < 4; i++) {
        for (int j = 0; j < 4; j++) M[i][j] = A[i][j] + (i == j ? ridge : 0.0);
        M[i][4] = b[i] + ridge * p[i];
    }
    for (int col = 0; col < 4; col++) {
        int piv = col;
        for (int i = col + 1; i < 4; i++)
            if (fabs(M[i][col]) > fabs(M[piv][col])) piv = i;
        if (M[piv][col] == 0.0) return quadratic(A, b, c, x); /* cannot happen with ridge > 0 */
        for (int j = 0; j < 5; j++) {
            double t = M[col][j];
            M[col][j] = M[piv][j];
            M[piv][j] = t;
        }
        for (int i = col + 1; i < 4; i++) {
            double f = M[i][col] / M[col][col];
            for (int j = col; j < 5; j++) M[i][j] -= f * M[col][j];
        }
    }
    double sol[4];
    for (int i = 3; i >= 0; i--) {
        double v = M[i][4];
        for (int j = i + 1; j < 4; j++) v -= M[i][j] * sol[j];
        sol[i] = v / M[i][i];
    }
    for (int i = 0; i < 4; i++)
        if (!isfinite(sol[i])) return quadratic(A, b, c, x);
    for (int i = 0; i < 4; i++) p[i] = (float)sol[i];
    return quadratic(A, b, c, sol);
}

double lb_ptq161_fit_row(const double *H, int64_t n, const float *w, const uint8_t *mask, const uint8_t *codes,
                         float p[4]) {
    double A[4][4], b[4], c;
    normal_equations(H, n, w, mask, codes, A, b, &c);
    return solve_row(A, b, c, p);
}

/* step 4 (refit): each row's values refitted, kept when no worse as stored
 * (fp16); loss[r] = the row's objective with what is kept (one set of
 * normal equations per row serves both) */
static void refit_rows(lb_qtensor *q, const double *H, const float *w0, int refit, double *loss) {
#pragma omp parallel for schedule(dynamic, 4)
    for (int64_t r = 0; r < q->rows; r++) {
        const uint8_t *codes = q->codes + r * q->cols_padded;
        double A[4][4], b[4], c;
        normal_equations(H, q->cols, w0 + r * q->cols, q->col_mask, codes, A, b, &c);
        float old[4] = {q->scale[r], q->offset[r], q->extra[2 * r], q->extra[2 * r + 1]}, p[4];
        memcpy(p, old, sizeof p);
        loss[r] = quadratic_f(A, b, c, old);
        if (!refit) continue;
        solve_row(A, b, c, p);
        for (int i = 0; i < 4; i++) p[i] = lb_round_fp16(p[i]);
        double l = quadratic_f(A, b, c, p);
        if (isfinite(p[0]) && isfinite(p[1]) && isfinite(p[2]) && isfinite(p[3]) && l < loss[r]) {
            q->scale[r] = p[P_D];
            q->offset[r] = p[P_M];
            q->extra[2 * r] = p[P_ALPHA];
            q->extra[2 * r + 1] = p[P_MU];
            loss[r] = l;
        }
    }
}

/* ---- the ptq161 row ----------------------------------------------------- */

static const char *const saliency_choices[] = {"max", "mean", "hessian", NULL};

static const lb_method_option ptq161_options[] = {
    {"saliency", LB_OPTION_CHOICE, "max",
     "salient input channels by max|x| (the paper) | mean|x| | hessian (H_cc sum_r w_rc^2)", 0, 0, saliency_choices,
     "saliency rule"},
    {"feedback", LB_OPTION_INT, "1", "1: GPTQ error feedback over the columns; 0: each weight rounded alone", 0, 1,
     NULL, NULL},
    {"refit", LB_OPTION_INT, "1", "1: each row's four values refitted in closed form under X^T X", 0, 1, NULL, NULL},
    {"percdamp", LB_OPTION_FLOAT, "0.01", "feedback: damping added to diag(H), relative to its mean", 0, 10, NULL,
     NULL},
    {"block", LB_OPTION_INT, "128", "feedback: columns per lazy-batch block", 1, 65536, NULL, NULL},
};

static lb_status ptq161_check(const lb_qspec *spec, const lb_method_opts *o) {
    (void)o;
    if (lb_format_grid(spec) != LB_GRID_SALIENT) {
        char text[64];
        lb_qspec_format(spec, text, sizeof text);
        return lb_fail(LB_ERR_INVALID, "method ptq161 quantizes to the ptq161 format (e.g. 'ptq161:s20'), not '%s'",
                       text);
    }
#ifndef LB_HAVE_BLAS
    if (o && o->value[1] != 0)
        return lb_fail(LB_ERR_UNSUPPORTED, "ptq161's feedback=1 needs OpenBLAS and LAPACKE (or use feedback=0)");
#endif
    return LB_OK;
}

static lb_status ptq161_quantize(const float *w, int64_t rows, int64_t cols, const lb_layer_stats *stats,
                                 const lb_qspec *spec, const lb_method_opts *opts, lb_qtensor *q) {
    const int saliency = (int)opts->value[0], feedback = (int)opts->value[1], refit = (int)opts->value[2];
    for (int64_t i = 0; i < rows * cols; i++)
        if (!isfinite(w[i]))
            return lb_fail(LB_ERR_NUMERIC, "weight at row %lld, column %lld is %s", (long long)(i / cols),
                           (long long)(i % cols), isnan(w[i]) ? "NaN" : "infinite");
    lb_method_report local;
    lb_method_report *rep = opts->report ? opts->report : &local;
    memset(rep, 0, sizeof *rep);
    double t0 = lb_now();
    lb_status st = lb_qtensor_init(q, spec, rows, cols);
    if (st != LB_OK) return st;
    const double *H = stats->xtx;
    double *score = lb_calloc((size_t)cols, sizeof(double));
    float *w0 = lb_alloc((size_t)(rows * cols) * sizeof(float));
    float *U = feedback ? lb_alloc((size_t)(cols * cols) * sizeof(float)) : NULL;
    char *dead = lb_calloc((size_t)cols, 1);
    if (!score || !w0 || !dead || (feedback && !U)) {
        st = LB_ERR_NOMEM;
        goto done;
    }
    for (int64_t c = 0; c < cols; c++) {
        dead[c] = H[c * cols + c] == 0.0;
        if (saliency == SALIENCY_MAX) score[c] = stats->max_abs_x[c];
        else if (saliency == SALIENCY_MEAN) score[c] = stats->mean_abs_x[c];
    }
    if (saliency == SALIENCY_HESSIAN)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) score[c] += H[c * cols + c] * w[r * cols + c] * w[r * cols + c];
    pick_columns(score, cols, q->n_salient, q->col_mask);
    /* a dead input's weights do not matter: zero, as GPTQ does */
    memcpy(w0, w, (size_t)(rows * cols) * sizeof(float));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            if (dead[c]) w0[r * cols + c] = 0.0f;
    for (int64_t r = 0; r < rows; r++) fit_row_grids(q, r, w0 + r * cols);
    if ((st = lb_qtensor_store_scales(q)) != LB_OK) goto done;
    if (feedback) {
        if ((st = lb_gptq_inverse_factor(H, cols, opts->value[3], dead, U, rep)) != LB_OK) goto done;
        float *W = lb_alloc((size_t)(rows * cols) * sizeof(float));
        if (!W) {
            st = LB_ERR_NOMEM;
            goto done;
        }
        memcpy(W, w0, (size_t)(rows * cols) * sizeof(float));
        lb_feedback_job job = {rows, cols, (int64_t)opts->value[4], 0, U, NULL, quantize_weight, q};
        double loss;
        st = lb_feedback_run(&job, W, &loss);
        lb_free(W);
        if (st != LB_OK) goto done;
    } else {
        nearest_codes(q, w0);
    }
    double *row_loss = lb_alloc((size_t)rows * sizeof(double));
    if (!row_loss) {
        st = LB_ERR_NOMEM;
        goto done;
    }
    refit_rows(q, H, w0, refit, row_loss);
    for (int64_t r = 0; r < rows; r++) rep->proxy_loss += row_loss[r]; /* undamped H, in row order */
    lb_free(row_loss);
done:
    rep->seconds = lb_now() - t0;
    lb_free(score);
    lb_free(w0);
    lb_free(U);
    lb_free(dead);
    if (st != LB_OK) lb_qtensor_free(q);
    return st;
}

const lb_method lb_method_ptq161 = {
    .name = "ptq161",
    .summary = "PTQ1.61: salient input channels (by max|x|) at 4 bits, the rest binary; GPTQ feedback and "
               "closed-form row scales under X^T X (needs calibration)",
    .stats = LB_STATS_XTX | LB_STATS_MAX_ABS_X | LB_STATS_MEAN_ABS_X,
    .options = ptq161_options,
    .n_options = (int)(sizeof ptq161_options / sizeof ptq161_options[0]),
    .check = ptq161_check,
    .quantize = ptq161_quantize,
};
