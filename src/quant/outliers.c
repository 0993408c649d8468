/* Dense-and-sparse decomposition: a few weights kept exactly, beside the
 * quantized rest.
 *
 * Papers: SqueezeLLM (Kim et al. 2023, arXiv:2306.07629, METHODS.md s7):
 * "dense-and-sparse", the weights outside a range and the most sensitive
 * ones held in fp16 CSR while the rest is quantized; LLM.int8() (Dettmers
 * et al. 2022, arXiv:2208.07339, s5): whole input feature dimensions whose
 * activations reach a threshold kept in higher precision.
 *
 * Objective: W = D + S with D in the dense format and S sparse (a fixed
 * budget, a fraction of the weights); the kept weights are then exact (up to
 * fp16 rounding of their stored difference) and the dense grid no longer
 * has to stretch over them, so every other weight of their group is
 * rounded on a finer grid.
 *
 * Rules (lb_outliers_select):
 *   magnitude    the round(f rows cols) largest |w - median of the row|
 *                (SqueezeLLM ranks by distance from the bulk; the median is
 *                robust to the outliers themselves)
 *   sensitivity  the same count by (w - median)^2 H_jj, H = X^T X: the
 *                output energy a weight's error would carry (SqueezeLLM
 *                ranks by the Fisher diagonal g^2; lowbit has X^T X, not
 *                loss gradients, so H_jj stands in for it)
 *   channel      whole input columns, the round(f cols) (at least 1) with the
 *                largest calibration max|x| (LLM.int8()).
 *
 * How the dense part ignores them (lb_outliers_dense_input): each kept
 * weight is replaced, in the input handed to the method, by the mean of the
 * weights of its group that are not kept (0 when the whole group is kept).
 * That value lies inside the group's remaining range, so min-max and ACIQ
 * grids are exactly those of the remaining weights, and MSE clipping sees
 * one typical weight per kept one. The sparse value is then the exact
 * weight minus whatever the dense code decodes to there, so dense + sparse
 * is the weight (lb_outliers_build).
 *
 * With GPTQ the replacement would otherwise receive and spread error: gptq
 * reads lb_method_opts.keep, gives kept weights no error feedback (they are
 * exact, so their error is zero), and reports in kept[] the value its
 * updates led them to (the replacement plus the updates earlier columns'
 * errors asked of that weight). The exact value stored is the original
 * weight plus those same updates, w + (kept - replacement), so a kept weight
 * both is exact and absorbs its share of the compensation, as it would if
 * GPTQ could store it at full precision.
 *
 * Deviations: SqueezeLLM picks outliers by an IQR range (r tuned to about
 * 0.45%) plus the top 0.05% by sensitivity; lowbit takes a fixed fraction by
 * one rule, so the budget (and bpw) is what the user asks. LLM.int8() uses an
 * absolute threshold (6.0) on activations at run time; lowbit picks the
 * columns once, from calibration maxima, with a budget instead of a
 * threshold (small models have no activations near 6). Values are stored as
 * fp16 when every one fits (as SqueezeLLM), else fp32; indices compactly
 * (docs/methods/outliers.md, src/model/model_gguf.c). */
#include "quant/outliers.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void lb_quant_extras_free(lb_quant_extras *x) {
    if (!x) return;
    lb_free(x->row_ptr);
    lb_free(x->col_idx);
    lb_free(x->values);
    lb_free(x->bias);
    lb_free(x->in_signs);
    lb_free(x->out_signs);
    lb_free(x->adapter_a);
    lb_free(x->adapter_b);
    memset(x, 0, sizeof *x);
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Median of n values (buf: scratch of n). */
static float median_of(const float *v, int64_t n, float *buf) {
    memcpy(buf, v, (size_t)n * sizeof(float));
    qsort(buf, (size_t)n, sizeof(float), cmp_float);
    return n % 2 ? buf[n / 2] : 0.5f * (buf[n / 2 - 1] + buf[n / 2]);
}

/* The k-th largest (k >= 1) of v[0..n) by quickselect on a copy a (n). */
static float kth_largest(float *a, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1, want = k - 1; /* index in descending order */
    while (lo < hi) {
        float pivot = a[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] > pivot) i++;
            while (a[j] < pivot) j--;
            if (i <= j) {
                float t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                j--;
            }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else return a[want];
    }
    return a[want];
}

/* Column order for the channel rule: descending max|x|, ties by index. */
static const float *sort_key;
static int by_key_desc(const void *a, const void *b) {
    int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    if (sort_key[i] != sort_key[j]) return sort_key[i] > sort_key[j] ? -1 : 1;
    return (i > j) - (i < j);
}

static lb_status select_channels(int64_t rows, int64_t cols, const lb_layer_stats *stats, double fraction,
                                 uint8_t *keep, int64_t *n_kept) {
    if (!stats || !stats->max_abs_x || stats->cols != cols)
        return lb_fail(LB_ERR_INVALID, "outlier_rule=channel needs calibration max|x| of this linear's %lld inputs",
                       (long long)cols);
    int64_t k = llround(fraction * (double)cols);
    if (k < 1) k = 1;
    if (k > cols) k = cols;
    int64_t *order = lb_alloc((size_t)cols * sizeof *order);
    if (!order) return LB_ERR_NOMEM;
    for (int64_t j = 0; j < cols; j++) order[j] = j;
    sort_key = stats->max_abs_x; /* qsort has no context argument; only read during the call */
    qsort(order, (size_t)cols, sizeof *order, by_key_desc);
    for (int64_t c = 0; c < k; c++)
        for (int64_t r = 0; r < rows; r++) keep[r * cols + order[c]] = 1;
    lb_free(order);
    *n_kept = k * rows;
    return LB_OK;
}

lb_status lb_outliers_select(const float *w, int64_t rows, int64_t cols, const lb_layer_stats *stats,
                             double fraction, lb_outlier_rule rule, uint8_t *keep, int64_t *n_kept) {
    *n_kept = 0;
    if (rows <= 0 || cols <= 0 || !w || !keep) return lb_fail(LB_ERR_INVALID, "outliers: empty weight");
    if (!(fraction >= 0 && fraction <= 0.5))
        return lb_fail(LB_ERR_INVALID, "outlier fraction %g is outside [0, 0.5]", fraction);
    memset(keep, 0, (size_t)(rows * cols));
    for (int64_t i = 0; i < rows * cols; i++)
        if (!isfinite(w[i]))
            return lb_fail(LB_ERR_NUMERIC, "weight at row %lld, column %lld is %s", (long long)(i / cols),
                           (long long)(i % cols), isnan(w[i]) ? "NaN" : "infinite");
    if (fraction == 0) return LB_OK;
    if (rule == LB_OUTLIER_CHANNEL) return select_channels(rows, cols, stats, fraction, keep, n_kept);
    if (rule != LB_OUTLIER_MAGNITUDE && rule != LB_OUTLIER_SENSITIVITY)
        return lb_fail(LB_ERR_INVALID, "unknown outlier rule %d", (int)rule);
    if (rule == LB_OUTLIER_SENSITIVITY && (!stats || !stats->xtx || stats->cols != cols))
        return lb_fail(LB_ERR_INVALID, "outlier_rule=sensitivity needs calibration X^T X of this linear's %lld inputs",
                       (long long)cols);
    if (rule == LB_OUTLIER_SENSITIVITY)
        for (int64_t c = 0; c < cols; c++)
            if (!(stats->xtx[c * cols + c] >= 0) || !isfinite(stats->xtx[c * cols + c]))
                return lb_fail(LB_ERR_NUMERIC, "X^T X diagonal entry %lld is %g", (long long)c, stats->xtx[c * cols + c]);
    int64_t n = rows * cols, k = llround(fraction * (double)n);
    if (k == 0) return LB_OK;
    float *score = lb_alloc((size_t)n * sizeof(float));
    float *tmp = lb_alloc((size_t)(n > cols ? n : cols) * sizeof(float));
    if (!score || !tmp) {
        lb_free(score);
        lb_free(tmp);
        return LB_ERR_NOMEM;
    }
    for (int64_t r = 0; r < rows; r++) {
        const float *row = w + r * cols;
        float med = median_of(row, cols, tmp);
        for (int64_t c = 0; c < cols; c++) {
            double d = (double)row[c] - med;
            score[r * cols + c] =
                rule == LB_OUTLIER_MAGNITUDE ? (float)fabs(d) : (float)(d * d * stats->xtx[c * cols + c]);
        }
    }
    memcpy(tmp, score, (size_t)n * sizeof(float));
    float t = kth_largest(tmp, n, k);
    int64_t taken = 0;
    for (int64_t i = 0; i < n; i++) /* strictly above the threshold: fewer than k of them */
        if (score[i] > t) keep[i] = 1, taken++;
    for (int64_t i = 0; i < n && taken < k; i++) /* ties at the threshold, lower index first */
        if (score[i] == t) keep[i] = 1, taken++;
    lb_free(score);
    lb_free(tmp);
    *n_kept = taken;
    return LB_OK;
}

void lb_outliers_dense_input(const float *w, int64_t rows, int64_t cols, int64_t group, const uint8_t *keep,
                             float *dense) {
    if (group <= 0 || group > cols) group = cols;
    memcpy(dense, w, (size_t)(rows * cols) * sizeof(float));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g0 = 0; g0 < cols; g0 += group) {
            int64_t g1 = g0 + group < cols ? g0 + group : cols, n = 0;
            double sum = 0;
            for (int64_t c = g0; c < g1; c++)
                if (!keep[r * cols + c]) sum += w[r * cols + c], n++;
            float fill = n ? (float)(sum / (double)n) : 0.0f;
            for (int64_t c = g0; c < g1; c++)
                if (keep[r * cols + c]) dense[r * cols + c] = fill;
        }
}

/* fp16 when it holds v (finite, in range), else v itself: the stored value */
static float stored_value(float v) {
    float h = lb_round_fp16(v);
    return isfinite(h) ? h : v;
}

lb_status lb_outliers_build(const float *w, const float *dense, const float *kept, const float *deq, int64_t rows,
                            int64_t cols, const uint8_t *keep, int64_t n_kept, lb_quant_extras *x, float *eff) {
    if (n_kept > INT32_MAX) return lb_fail(LB_ERR_UNSUPPORTED, "%lld outliers do not fit 32-bit indices", (long long)n_kept);
    x->row_ptr = lb_alloc((size_t)(rows + 1) * sizeof(int32_t));
    x->col_idx = lb_alloc((size_t)(n_kept ? n_kept : 1) * sizeof(int32_t));
    x->values = lb_alloc((size_t)(n_kept ? n_kept : 1) * sizeof(float));
    if (!x->row_ptr || !x->col_idx || !x->values) return LB_ERR_NOMEM;
    memcpy(eff, deq, (size_t)(rows * cols) * sizeof(float));
    int64_t k = 0;
    x->row_ptr[0] = 0;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < cols; c++) {
            int64_t i = r * cols + c;
            if (!keep[i]) continue;
            float exact = w[i] + (kept[i] - dense[i]);
            float v = stored_value(exact - deq[i]);
            if (!isfinite(v))
                return lb_fail(LB_ERR_NUMERIC, "outlier at row %lld, column %lld is not finite", (long long)r,
                               (long long)c);
            x->col_idx[k] = (int32_t)c;
            x->values[k++] = v;
            eff[i] = deq[i] + v;
        }
        x->row_ptr[r + 1] = (int32_t)k;
    }
    x->nnz = k;
    return LB_OK;
}
