/* Building blocks of input-channel scaling (AWQ s3, SmoothQuant s4 of
 * METHODS.md): the objective, statistics of the scaled input, and what the
 * scaling rows share (scale_internal.h).
 *
 * Why the objective needs no activation samples: for inputs x with
 * H = sum x x^T, folding s gives y' = Q(W diag(s)) (x / s), so the output
 * error is E x with E = Q(W diag(s)) diag(s)^-1 - W, and its sum of squares
 * over the calibration inputs is sum_x x^T E^T E x = tr(E H E^T). AWQ
 * measures the same error on a block's cached outputs; lowbit's statistics
 * already hold H (deviation: a linear's own output, not the whole
 * attention / MLP block's, as in GPTQ). */
#include "quant/scale_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double lb_output_error(const float *w, const float *wq, int64_t rows, int64_t cols, const double *h) {
    double *per_row = lb_alloc((size_t)(rows ? rows : 1) * sizeof(double));
    double *scratch = lb_alloc((size_t)(rows ? rows : 1) * (size_t)cols * sizeof(double));
    if (!per_row || !scratch) {
        lb_free(per_row);
        lb_free(scratch);
        return NAN;
    }
    /* each row's e^T H e in a fixed order; rows summed serially afterwards,
     * so the value does not depend on the thread count */
#pragma omp parallel for schedule(static) if (rows * cols * cols > (1 << 22))
    for (int64_t r = 0; r < rows; r++) {
        double *e = scratch + r * cols;
        for (int64_t j = 0; j < cols; j++) e[j] = (double)wq[r * cols + j] - (double)w[r * cols + j];
        double acc = 0;
        for (int64_t j = 0; j < cols; j++) {
            if (e[j] == 0.0) continue;
            const double *hj = h + j * cols;
            double t = 0;
            for (int64_t k = 0; k < cols; k++) t += hj[k] * e[k];
            acc += e[j] * t;
        }
        per_row[r] = acc;
    }
    double sum = 0;
    for (int64_t r = 0; r < rows; r++) sum += per_row[r];
    lb_free(per_row);
    lb_free(scratch);
    return sum;
}

lb_layer_stats lb_layer_stats_rows(const lb_layer_stats *s, int64_t r0, int64_t r1) {
    lb_layer_stats b = *s;
    b.rows = r1 - r0;
    if (s->grad_sq) b.grad_sq = s->grad_sq + r0 * s->cols;
    return b;
}

/* rows x (c1 - c0) of a rows x cols array, or NULL */
static lb_status copy_cols_f(const float *in, int64_t rows, int64_t cols, int64_t c0, int64_t c1, float **out) {
    *out = NULL;
    if (!in) return LB_OK;
    int64_t w = c1 - c0;
    if (!(*out = lb_alloc((size_t)(rows * w) * sizeof **out))) return LB_ERR_NOMEM;
    for (int64_t r = 0; r < rows; r++) memcpy(*out + r * w, in + r * cols + c0, (size_t)w * sizeof **out);
    return LB_OK;
}

static lb_status copy_block_d(const double *in, int64_t cols, int64_t c0, int64_t c1, double **out) {
    *out = NULL;
    if (!in) return LB_OK;
    int64_t w = c1 - c0;
    if (!(*out = lb_alloc((size_t)(w * w) * sizeof **out))) return LB_ERR_NOMEM;
    for (int64_t r = 0; r < w; r++) memcpy(*out + r * w, in + (c0 + r) * cols + c0, (size_t)w * sizeof **out);
    return LB_OK;
}

lb_status lb_layer_stats_cols(const lb_layer_stats *s, int64_t c0, int64_t c1, lb_layer_stats *out) {
    memset(out, 0, sizeof *out);
    if (c0 < 0 || c1 <= c0 || c1 > s->cols)
        return lb_fail(LB_ERR_INVALID, "columns %lld:%lld of statistics with %lld", (long long)c0, (long long)c1,
                       (long long)s->cols);
    out->n_samples = s->n_samples;
    out->rows = s->rows, out->cols = c1 - c0;
    lb_status st = copy_block_d(s->xtx, s->cols, c0, c1, &out->xtx);
    if (st == LB_OK) st = copy_block_d(s->dxtx, s->cols, c0, c1, &out->dxtx);
    if (st == LB_OK) st = copy_cols_f(s->mean_abs_x, 1, s->cols, c0, c1, &out->mean_abs_x);
    if (st == LB_OK) st = copy_cols_f(s->max_abs_x, 1, s->cols, c0, c1, &out->max_abs_x);
    if (st == LB_OK) st = copy_cols_f(s->mean_x, 1, s->cols, c0, c1, &out->mean_x);
    if (st == LB_OK) st = copy_cols_f(s->grad_sq, s->rows, s->cols, c0, c1, &out->grad_sq);
    if (st != LB_OK) {
        lb_layer_stats_free(out);
        return lb_fail(LB_ERR_NOMEM, "no memory for columns %lld:%lld of the statistics", (long long)c0, (long long)c1);
    }
    return LB_OK;
}

void lb_layer_stats_free(lb_layer_stats *s) {
    if (!s) return;
    lb_free(s->xtx);
    lb_free(s->mean_abs_x);
    lb_free(s->max_abs_x);
    lb_free(s->grad_sq);
    lb_free(s->mean_x);
    lb_free(s->hist);
    memset(s, 0, sizeof *s);
}

static lb_status copy_scaled(const float *in, int64_t n, int64_t cols, const float *s, int power, float **out) {
    *out = NULL;
    if (!in) return LB_OK;
    float *v = lb_alloc((size_t)n * sizeof(float));
    if (!v) return LB_ERR_NOMEM;
    for (int64_t i = 0; i < n; i++) {
        double sj = s[i % cols];
        v[i] = (float)(power == 2 ? in[i] / (sj * sj) : in[i] / sj);
    }
    *out = v;
    return LB_OK;
}

lb_status lb_layer_stats_scaled(const lb_layer_stats *in, const float *s, lb_layer_stats *out) {
    memset(out, 0, sizeof *out);
    if (!in || !s || in->cols <= 0) return lb_fail(LB_ERR_INVALID, "scaling statistics: nothing to scale");
    const int64_t n = in->cols;
    for (int64_t j = 0; j < n; j++)
        if (!(isfinite(s[j]) && s[j] > 0.0f))
            return lb_fail(LB_ERR_NUMERIC, "input scale of channel %lld is %g (must be finite and > 0)",
                           (long long)j, (double)s[j]);
    out->n_samples = in->n_samples;
    out->rows = in->rows;
    out->cols = n;
    lb_status st = LB_OK;
    if (in->xtx) {
        out->xtx = lb_alloc((size_t)n * (size_t)n * sizeof(double));
        if (!out->xtx) st = LB_ERR_NOMEM;
        for (int64_t j = 0; st == LB_OK && j < n; j++)
            for (int64_t k = 0; k < n; k++) out->xtx[j * n + k] = in->xtx[j * n + k] / ((double)s[j] * (double)s[k]);
    }
    if (st == LB_OK) st = copy_scaled(in->mean_abs_x, n, n, s, 1, &out->mean_abs_x);
    if (st == LB_OK) st = copy_scaled(in->max_abs_x, n, n, s, 1, &out->max_abs_x);
    if (st == LB_OK) st = copy_scaled(in->mean_x, n, n, s, 1, &out->mean_x);
    if (st == LB_OK) st = copy_scaled(in->grad_sq, in->rows * n, n, s, 2, &out->grad_sq);
    if (st != LB_OK) lb_layer_stats_free(out);
    return st;
}

static lb_status check_array(const float *v, int64_t n, const char *what, const char *method) {
    for (int64_t j = 0; j < n; j++)
        if (!isfinite(v[j]) || v[j] < 0.0f)
            return lb_fail(LB_ERR_NUMERIC, "method %s: %s of input channel %lld is %g (must be finite and >= 0)",
                           method, what, (long long)j, (double)v[j]);
    return LB_OK;
}

lb_status lb_scale_check_group(const lb_scale_group *g, unsigned need, const char *method) {
    if (!g || g->n < 1 || g->cols < 1 || !g->w || !g->rows || !g->specs || !g->stats)
        return lb_fail(LB_ERR_INVALID, "method %s: empty scale group", method);
    if (g->stats->cols != g->cols)
        return lb_fail(LB_ERR_INVALID, "method %s: statistics are for %lld input channels, the linears have %lld",
                       method, (long long)g->stats->cols, (long long)g->cols);
    if (g->tie) {
        if (g->n_classes < 1 || g->n_classes > g->cols)
            return lb_fail(LB_ERR_INVALID, "method %s: %lld tied classes for %lld channels", method,
                           (long long)g->n_classes, (long long)g->cols);
        for (int64_t j = 0; j < g->cols; j++)
            if (g->tie[j] < 0 || g->tie[j] >= g->n_classes)
                return lb_fail(LB_ERR_INVALID, "method %s: channel %lld tied to class %d of %lld", method,
                               (long long)j, g->tie[j], (long long)g->n_classes);
    }
    for (int i = 0; i < g->n; i++) {
        if (g->rows[i] < 1 || !g->w[i]) return lb_fail(LB_ERR_INVALID, "method %s: linear %d is empty", method, i);
        if (lb_qspec_is_float(&g->specs[i]))
            return lb_fail(LB_ERR_INVALID, "method %s: linear %d has a float format (nothing to scale for)", method, i);
        for (int64_t k = 0; k < g->rows[i] * g->cols; k++)
            if (!isfinite(g->w[i][k]))
                return lb_fail(LB_ERR_NUMERIC, "method %s: weight %lld of linear %d is not finite", method,
                               (long long)k, i);
    }
    const lb_layer_stats *s = g->stats;
    if ((need & LB_STATS_XTX) && !s->xtx)
        return lb_fail(LB_ERR_INVALID, "method %s needs calibration statistics (X^T X)", method);
    if ((need & LB_STATS_MEAN_ABS_X) && !s->mean_abs_x)
        return lb_fail(LB_ERR_INVALID, "method %s needs calibration statistics (mean|x|)", method);
    if ((need & LB_STATS_MAX_ABS_X) && !s->max_abs_x)
        return lb_fail(LB_ERR_INVALID, "method %s needs calibration statistics (max|x|)", method);
    lb_status st = LB_OK;
    if (need & LB_STATS_MEAN_ABS_X) st = check_array(s->mean_abs_x, g->cols, "mean|x|", method);
    if (st == LB_OK && (need & LB_STATS_MAX_ABS_X)) st = check_array(s->max_abs_x, g->cols, "max|x|", method);
    if (st != LB_OK) return st;
    if (need & LB_STATS_XTX)
        for (int64_t k = 0; k < g->cols * g->cols; k++)
            if (!isfinite(s->xtx[k]))
                return lb_fail(LB_ERR_NUMERIC, "method %s: X^T X entry (%lld, %lld) is not finite", method,
                               (long long)(k / g->cols), (long long)(k % g->cols));
    return LB_OK;
}

lb_status lb_scale_tie(const lb_scale_group *g, float *v, int use_max) {
    if (!g->tie) return LB_OK;
    double *acc = lb_calloc((size_t)g->n_classes, sizeof(double));
    int64_t *cnt = lb_calloc((size_t)g->n_classes, sizeof(int64_t));
    lb_status st = acc && cnt ? LB_OK : LB_ERR_NOMEM;
    if (st == LB_OK) {
        for (int64_t j = 0; j < g->cols; j++) {
            int c = g->tie[j];
            acc[c] = use_max ? (cnt[c] && acc[c] > v[j] ? acc[c] : v[j]) : acc[c] + v[j];
            cnt[c]++;
        }
        for (int64_t j = 0; j < g->cols; j++) {
            int c = g->tie[j];
            v[j] = (float)(use_max ? acc[c] : acc[c] / (double)cnt[c]);
        }
    }
    lb_free(acc);
    lb_free(cnt);
    return st;
}

void lb_scale_normalize(float *s, int64_t n) {
    float lo = s[0], hi = s[0];
    for (int64_t j = 1; j < n; j++) {
        lo = s[j] < lo ? s[j] : lo;
        hi = s[j] > hi ? s[j] : hi;
    }
    double norm = sqrt((double)lo * (double)hi);
    if (norm > 0 && isfinite(norm))
        for (int64_t j = 0; j < n; j++) s[j] = (float)(s[j] / norm);
}

lb_status lb_scale_loss(const lb_scale_group *g, const float *s, double *loss) {
    double sum = 0;
    lb_rtn_opts ro;
    lb_rtn_opts_default(&ro); /* min-max grid: AWQ's pseudo_quantize_tensor during the search */
    for (int i = 0; i < g->n; i++) {
        const int64_t rows = g->rows[i], cols = g->cols, n = rows * cols;
        float *ws = lb_alloc((size_t)n * sizeof(float));
        if (!ws) return LB_ERR_NOMEM;
        for (int64_t k = 0; k < n; k++) ws[k] = g->w[i][k] * s[k % cols];
        lb_qtensor q;
        lb_status st = lb_rtn_quantize(ws, rows, cols, &g->specs[i], &ro, &q);
        if (st != LB_OK) {
            lb_free(ws);
            return st;
        }
        /* Q(W diag(s)) diag(s)^-1, in place */
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) ws[r * cols + c] = lb_qtensor_value(&q, r, c) / s[c];
        lb_qtensor_free(&q);
        double e = lb_output_error(g->w[i], ws, rows, cols, g->stats->xtx);
        lb_free(ws);
        if (!isfinite(e)) return lb_fail(LB_ERR_NUMERIC, "output error of a scaled linear is not finite");
        sum += e;
    }
    *loss = sum;
    return LB_OK;
}
