/* BiLLM (Huang et al. 2024, "BiLLM: Pushing the Limit of Post-Training
 * Quantization for LLMs", arXiv:2402.04291; METHODS.md s12; reference code
 * Aaronhuang-778/BiLLM), onto the billm format (src/formats/billm.c).
 *
 * Objective, per linear: tr((W - Q) H (W - Q)^T), H = X^T X, through
 * GPTQ's column loop (src/quant/salient.c: the upper factor U of H^-1,
 * percdamp 0.01, error feedback, lazy blocks of 128). At the start of each
 * group of columns (the format's g<N>: BiLLM's blocks of 128), on the
 * weights as updated so far:
 *   1. Saliency of column j: sum_r w_rj^2 / U_jj^2 (the reference's
 *      "hessian" metric, with the diagonal of the Cholesky factor of H^-1
 *      as its code uses; saliency=magnitude: sum_r w_rj^2). The number of
 *      salient columns, 0..max_salient (50), is the one whose binarization
 *      error over all rows is least: the top columns by residual
 *      binarization, the rest by one plain binarization (the structural
 *      search of the reference).
 *   2. Per row, salient columns: second-order residual binarization,
 *      mu1 = mean, a1 = mean |w - mu1|, then the same on the residual
 *      (mu2, a2); stored mu1 + mu2, a1, a2.
 *   3. Per row, the other columns: the break-point p on |w| (breakpoints
 *      = 40 candidates p = max|w| t / 40, t = 1..40) whose split into
 *      |w| <= p (concentrated) and |w| > p (sparse), each binarized with
 *      its own mean and mean-absolute deviation, has the least error.
 *   4. Each column's weights then take the nearest of their row's four
 *      values (salient: mu +- a1 +- a2; others: either group's mu +- a)
 *      and their error goes to the later columns. Since the group bit is
 *      stored (two bits per weight), a weight may leave the group its
 *      magnitude first put it in when that is nearer.
 * Deviations: the reference binarizes a block's columns from the block's
 * weights at its start, as here, but rounds to its groups by the
 * break-point; nearest-of-four is never worse on a weight. The format
 * stores what the paper's 1.08 bits leave out (docs/FORMATS.md).
 * Dense-and-sparse outliers (keep/kept) are ignored, as in ptq161.c.
 * Deterministic: group decisions single-threaded, rows in parallel each by
 * one thread. rtn on billm (lb_billm_rtn) runs steps 1-4 with U = I and
 * no feedback. */
#include "quant/method_rows.h"
#include "quant/salient.h"

#include <math.h>
#include <string.h>

enum { SALIENCY_HESSIAN, SALIENCY_MAGNITUDE };

typedef struct {
    lb_qtensor *q;
    const float *U;  /* cols x cols, or NULL (U = I) */
    int64_t cols;    /* of W */
    int max_salient, breakpoints, saliency;
    int64_t *order;  /* cols: scratch for the group's columns by saliency */
    double *score;   /* cols */
} billm_ctx;

/* mean and mean absolute deviation of x[idx[0..n)] (all of x when idx is
 * NULL); returns the squared error of mu + a sign(x - mu) */
static double binarize(const float *x, const int64_t *idx, int64_t n, float *mu_out, float *a_out) {
    if (n == 0) {
        *mu_out = *a_out = 0.0f;
        return 0.0;
    }
    double sum = 0, dev = 0, err = 0;
    for (int64_t i = 0; i < n; i++) sum += x[idx ? idx[i] : i];
    double mu = sum / (double)n;
    for (int64_t i = 0; i < n; i++) dev += fabs(x[idx ? idx[i] : i] - mu);
    double a = dev / (double)n;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs(x[idx ? idx[i] : i] - mu) - a;
        err += e * e;
    }
    *mu_out = (float)mu;
    *a_out = (float)a;
    return err;
}

/* step 2 on x[idx[0..n)]: returns the squared error, values into e */
static double residual_binarize(const float *x, const int64_t *idx, int64_t n, float *e, float *scratch) {
    float mu1, a1, mu2, a2;
    binarize(x, idx, n, &mu1, &a1);
    for (int64_t i = 0; i < n; i++) {
        float v = x[idx[i]];
        scratch[i] = v - (mu1 + (v >= mu1 ? a1 : -a1));
    }
    double err = binarize(scratch, NULL, n, &mu2, &a2);
    e[LB_BILLM_MU_S] = mu1 + mu2;
    e[LB_BILLM_A1] = a1;
    e[LB_BILLM_A2] = a2;
    return err;
}

/* step 3 on x[idx[0..n)]: the best split's values into e */
static void split_binarize(const float *x, const int64_t *idx, int64_t n, int breakpoints, float *e,
                           int64_t *lo_idx, int64_t *hi_idx) {
    float amax = 0;
    for (int64_t i = 0; i < n; i++) amax = fmaxf(amax, fabsf(x[idx[i]]));
    double best = INFINITY;
    for (int t = 1; t <= breakpoints; t++) {
        float p = amax * (float)t / (float)breakpoints, v[4];
        int64_t nl = 0, nh = 0;
        for (int64_t i = 0; i < n; i++) {
            if (fabsf(x[idx[i]]) <= p) lo_idx[nl++] = idx[i];
            else hi_idx[nh++] = idx[i];
        }
        double err = binarize(x, lo_idx, nl, &v[0], &v[1]) + binarize(x, hi_idx, nh, &v[2], &v[3]);
        if (err < best) { /* ties: the smaller break-point */
            best = err;
            e[LB_BILLM_MU_C] = v[0];
            e[LB_BILLM_A_C] = v[1];
            e[LB_BILLM_MU_P] = v[2];
            e[LB_BILLM_A_P] = v[3];
        }
    }
}

/* steps 1-3 for columns [c0, c1) of W (rows x cols) */
static lb_status billm_group_start(void *vctx, const float *W, int64_t c0, int64_t c1) {
    billm_ctx *x = vctx;
    lb_qtensor *q = x->q;
    const int64_t rows = q->rows, n = x->cols, len = c1 - c0, g = c0 / q->group_len;
    for (int64_t j = c0; j < c1; j++) {
        double s = 0, u = x->U ? x->U[j * n + j] : 1.0;
        for (int64_t r = 0; r < rows; r++) s += (double)W[r * n + j] * W[r * n + j];
        x->score[j] = x->saliency == SALIENCY_HESSIAN ? s / (u * u) : s;
    }
    int64_t *order = x->order; /* the group's columns by descending score, ties to the lower index */
    for (int64_t i = 0; i < len; i++) order[i] = c0 + i;
    for (int64_t i = 1; i < len; i++) { /* insertion sort: stable */
        int64_t v = order[i], k = i;
        for (; k > 0 && x->score[order[k - 1]] < x->score[v]; k--) order[k] = order[k - 1];
        order[k] = v;
    }
    int64_t ns_max = x->max_salient < len ? x->max_salient : len;
    lb_status st = LB_OK;
    double best = INFINITY;
    int64_t best_ns = 0;
    float *rowbuf = lb_alloc((size_t)len * sizeof(float));
    if (!rowbuf) return LB_ERR_NOMEM;
    /* the structural search: the count whose error over all rows is least */
    for (int64_t ns = 0; ns <= ns_max; ns++) {
        double err = 0;
        for (int64_t r = 0; r < rows; r++) {
            float e[LB_BILLM_VALUES], mu, a;
            const float *w = W + r * n;
            err += ns ? residual_binarize(w, order, ns, e, rowbuf) : 0.0;
            err += binarize(w, order + ns, len - ns, &mu, &a);
        }
        if (err < best) {
            best = err;
            best_ns = ns;
        }
    }
    lb_free(rowbuf);
    for (int64_t i = 0; i < len; i++) q->col_mask[order[i]] = i < best_ns;
    lb_worker_error werr;
    lb_worker_error_init(&werr);
#pragma omp parallel
    {
        float *scratch = lb_alloc((size_t)len * sizeof(float));
        int64_t *lo = lb_alloc((size_t)len * sizeof(int64_t)), *hi = lb_alloc((size_t)len * sizeof(int64_t));
        if (!scratch || !lo || !hi) lb_worker_error_set(&werr, lb_fail(LB_ERR_NOMEM, "out of memory in billm"));
#pragma omp for schedule(dynamic, 16)
        for (int64_t r = 0; r < rows; r++) {
            if (!scratch || !lo || !hi) continue;
            float *e = q->extra + (r * q->groups_per_row + g) * LB_BILLM_VALUES;
            const float *w = W + r * n;
            if (best_ns) residual_binarize(w, order, best_ns, e, scratch);
            else e[LB_BILLM_MU_S] = e[LB_BILLM_A1] = e[LB_BILLM_A2] = 0.0f;
            split_binarize(w, order + best_ns, len - best_ns, x->breakpoints, e, lo, hi);
            for (int i = 0; i < LB_BILLM_VALUES; i++) e[i] = lb_round_fp16(e[i]);
        }
        lb_free(scratch);
        lb_free(lo);
        lb_free(hi);
    }
    st = lb_worker_error_raise(&werr);
    /* a value beyond fp16 (weights near 65504) fails like any scale */
    for (int64_t r = 0; r < rows && st == LB_OK; r++)
        for (int i = 0; i < LB_BILLM_VALUES; i++)
            if (!isfinite(q->extra[(r * q->groups_per_row + g) * LB_BILLM_VALUES + i]))
                st = lb_fail(LB_ERR_NUMERIC, "row %lld, group %lld: a value is not finite in fp16", (long long)r,
                             (long long)g);
    return st;
}

/* step 4: the nearest of the four codes (ties to the lower code) */
static float billm_quantize_weight(void *vctx, int64_t r, int64_t c, float x) {
    lb_qtensor *q = ((billm_ctx *)vctx)->q;
    uint8_t *code = q->codes + r * q->cols_padded + c;
    float best_v = 0, best_e = INFINITY;
    int best = 0;
    for (int k = 0; k < 4; k++) {
        *code = (uint8_t)k;
        float v = lb_qtensor_value(q, r, c);
        if (fabsf(x - v) < best_e) {
            best_e = fabsf(x - v);
            best_v = v;
            best = k;
        }
    }
    *code = (uint8_t)best;
    return best_v;
}

static lb_status ctx_init(billm_ctx *x, lb_qtensor *q, const float *U, int64_t cols, int max_salient,
                          int breakpoints, int saliency) {
    *x = (billm_ctx){q, U, cols, max_salient, breakpoints, saliency, lb_alloc((size_t)cols * sizeof(int64_t)),
                     lb_alloc((size_t)cols * sizeof(double))};
    return x->order && x->score ? LB_OK : LB_ERR_NOMEM;
}

static void ctx_free(billm_ctx *x) {
    lb_free(x->order);
    lb_free(x->score);
}

lb_status lb_billm_rtn(const float *w, int64_t rows, int64_t cols, lb_qtensor *q) {
    billm_ctx x;
    lb_status st = ctx_init(&x, q, NULL, cols, 50, 40, SALIENCY_MAGNITUDE);
    for (int64_t c0 = 0; c0 < cols && st == LB_OK; c0 += q->group_len) {
        int64_t c1 = c0 + q->group_len < cols ? c0 + q->group_len : cols;
        if ((st = billm_group_start(&x, w, c0, c1)) != LB_OK) break;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = c0; c < c1; c++) billm_quantize_weight(&x, r, c, w[r * cols + c]);
    }
    ctx_free(&x);
    return st;
}

/* ---- the billm row ------------------------------------------------------ */

static const char *const saliency_choices[] = {"hessian", "magnitude", NULL};

static const lb_method_option billm_options[] = {
    {"saliency", LB_OPTION_CHOICE, "hessian", "salient columns by sum_r w^2 / U_jj^2 (the paper) | magnitude (sum_r w^2)",
     0, 0, saliency_choices, "saliency rule"},
    {"max_salient", LB_OPTION_INT, "50", "most salient columns per group the structural search tries", 0, 65536, NULL,
     NULL},
    {"breakpoints", LB_OPTION_INT, "40", "break-point candidates max|w| t / breakpoints, t = 1..breakpoints", 1, 10000,
     NULL, NULL},
    {"percdamp", LB_OPTION_FLOAT, "0.01", "damping added to diag(H), relative to its mean (raised if needed)", 0, 10,
     NULL, NULL},
    {"block", LB_OPTION_INT, "128", "columns per lazy-batch block", 1, 65536, NULL, NULL},
};

static lb_status billm_check(const lb_qspec *spec, const lb_method_opts *o) {
    (void)o;
    if (lb_format_grid(spec) != LB_GRID_SALIENT_SPLIT) {
        char text[64];
        lb_qspec_format(spec, text, sizeof text);
        return lb_fail(LB_ERR_INVALID, "method billm quantizes to the billm format (e.g. 'billm:g128'), not '%s'", text);
    }
#ifndef LB_HAVE_BLAS
    return lb_fail(LB_ERR_UNSUPPORTED, "method billm needs OpenBLAS and LAPACKE, and lowbit was built without them");
#else
    return LB_OK;
#endif
}

static lb_status billm_quantize(const float *w, int64_t rows, int64_t cols, const lb_layer_stats *stats,
                                const lb_qspec *spec, const lb_method_opts *opts, lb_qtensor *q) {
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
    float *U = lb_alloc((size_t)(cols * cols) * sizeof(float)), *W = lb_alloc((size_t)(rows * cols) * sizeof(float));
    char *dead = lb_calloc((size_t)cols, 1);
    billm_ctx x = {0};
    if (!U || !W || !dead) {
        st = LB_ERR_NOMEM;
        goto done;
    }
    if ((st = lb_gptq_inverse_factor(stats->xtx, cols, opts->value[3], dead, U, rep)) != LB_OK) goto done;
    /* a dead input's weights do not matter: zero, as GPTQ does */
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) W[r * cols + c] = dead[c] ? 0.0f : w[r * cols + c];
    if ((st = ctx_init(&x, q, U, cols, (int)opts->value[1], (int)opts->value[2], (int)opts->value[0])) != LB_OK)
        goto done;
    lb_feedback_job job = {rows, cols, (int64_t)opts->value[4], q->group_len, U, billm_group_start,
                           billm_quantize_weight, &x};
    st = lb_feedback_run(&job, W, &rep->proxy_loss);
done:
    rep->seconds = lb_now() - t0;
    ctx_free(&x);
    lb_free(U);
    lb_free(W);
    lb_free(dead);
    if (st != LB_OK) lb_qtensor_free(q);
    return st;
}

const lb_method lb_method_billm = {
    .name = "billm",
    .summary = "BiLLM: salient columns by residual binarization, the rest binary in two magnitude groups, GPTQ "
               "feedback (needs calibration)",
    .stats = LB_STATS_XTX,
    .options = billm_options,
    .n_options = (int)(sizeof billm_options / sizeof billm_options[0]),
    .check = billm_check,
    .quantize = billm_quantize,
};
