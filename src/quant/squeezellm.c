/* SqueezeLLM (Kim, Hooper, Gholami et al. 2023, "SqueezeLLM: Dense-and-Sparse
 * Quantization", arXiv:2306.07629; METHODS.md s7): sensitivity-weighted
 * non-uniform quantization into the lut<b> family.
 *
 * Objective, per group (a row by default) of weights w_i with sensitivities
 * h_i: min over 2^b levels c and codes a of sum_i h_i (w_i - c_{a(i)})^2,
 * a second-order estimate of the loss change when h is a Hessian diagonal.
 * Solved by weighted 1-D k-means (Lloyd; src/quant/kmeans.c), at most
 * `iters` updates (50, sklearn's max_iter as the reference uses), stopping
 * at the first that does not lower the objective, from `init`: optimal (the
 * default: the exact weighted optimum of the group, a dynamic program over
 * the sorted weights, which Lloyd cannot improve) or quantile (weighted
 * quantiles: plain Lloyd, which stops at a local optimum).
 * The levels are then rounded to fp16 and every code is the nearest stored
 * level, so codes are chosen against the grid really written.
 *
 * Sensitivity (option `weights`):
 *   xtx     (default) h = diag(X^T X) of the weight's input column: the
 *           layer-output Hessian diagonal, from the calibration lowbit
 *           collects (every row of a column shares it)
 *   fisher  h = the per-weight Fisher diagonal sum g^2 (stats->grad_sq),
 *           the paper's choice, which needs a backward pass over the
 *           calibration set: `lowbit calibrate --fisher` collects it
 *           (src/calib/fisher.c; the mean over sequences, a constant factor
 *           from the sum), passed with `lowbit quantize --stats`; fails
 *           clearly with statistics that do not carry it
 * Dense-and-sparse is the common `outliers` option (src/quant/outliers.c):
 * the weights it keeps exactly get sensitivity 0 here, so they do not pull
 * any level (the paper removes them before clustering).
 *
 * Deviations: xtx as the default sensitivity (no gradients collected); the
 * k-means is deterministic and, by default, exact (the paper: sklearn's
 * seeded k-means++ then Lloyd, a local optimum); the paper
 * masks zero-valued weights out of the clustering, we do not (a zero is a
 * weight like any other here); a group whose sensitivities are all 0 (dead
 * inputs) is clustered unweighted. */
#include "quant/kmeans.h"
#include "quant/method_rows.h"

#include <math.h>

static const char *const weight_choices[] = {"xtx", "fisher", NULL};
static const char *const init_choices[] = {"optimal", "quantile", NULL}; /* = LB_KMEANS_INIT_* */
enum { WEIGHTS_XTX, WEIGHTS_FISHER };
enum { OPT_WEIGHTS, OPT_ITERS, OPT_INIT };

static const lb_method_option squeezellm_options[] = {
    {"weights", LB_OPTION_CHOICE, "xtx",
     "sensitivity of a weight: xtx (diag X^T X of its input) | fisher (its sum of squared gradients, if the "
     "statistics carry them)",
     0, 0, weight_choices, "sensitivity"},
    {"iters", LB_OPTION_INT, "50", "Lloyd iterations at most (stops earlier once the objective no longer decreases)",
     1, LB_KMEANS_MAX_ITERS, NULL, NULL},
    {"init", LB_OPTION_CHOICE, "optimal",
     "where Lloyd starts: optimal (the exact weighted 1-D optimum, a dynamic program) | quantile (weighted "
     "quantiles: plain Lloyd)",
     0, 0, init_choices, "k-means start"},
};

static lb_status squeezellm_check(const lb_qspec *spec, const lb_method_opts *o) {
    (void)o;
    if (lb_format_grid(spec) != LB_GRID_LUT) {
        char text[64];
        lb_qspec_format(spec, text, sizeof text);
        return lb_fail(LB_ERR_INVALID,
                       "method squeezellm places a codebook per group: it quantizes to lut formats (lut1..lut4), "
                       "not '%s'",
                       text);
    }
    return LB_OK;
}

static lb_status squeezellm_quantize(const float *w, int64_t rows, int64_t cols, const lb_layer_stats *stats,
                                     const lb_qspec *spec, const lb_method_opts *o, lb_qtensor *q) {
    int which = (int)o->value[OPT_WEIGHTS], iters = (int)o->value[OPT_ITERS], init = (int)o->value[OPT_INIT];
    float *colw = NULL;
    const float *ww = NULL;
    if (which == WEIGHTS_FISHER) {
        if (!stats->grad_sq)
            return lb_fail(LB_ERR_INVALID,
                           "squeezellm weights=fisher needs per-weight squared gradients (sum g^2) in the "
                           "statistics: collect them with `lowbit calibrate --fisher` and pass --stats, or use weights=xtx");
        for (int64_t i = 0; i < rows * cols; i++)
            if (!(stats->grad_sq[i] >= 0.0f) || !isfinite(stats->grad_sq[i]))
                return lb_fail(LB_ERR_NUMERIC, "calibration statistics: sum g^2 entry %lld is %g (finite, >= 0)",
                               (long long)i, (double)stats->grad_sq[i]);
        ww = stats->grad_sq;
    } else {
        /* diag X^T X, scaled by its maximum so the float weights neither
         * overflow nor underflow whatever the activations' magnitude */
        double top = 0;
        for (int64_t c = 0; c < cols; c++) {
            double d = stats->xtx[c * cols + c];
            if (d < 0)
                return lb_fail(LB_ERR_NUMERIC, "calibration statistics: X^T X diagonal entry %lld is negative (%g)",
                               (long long)c, d);
            top = d > top ? d : top;
        }
        if (!(colw = lb_alloc((size_t)cols * sizeof(float)))) return LB_ERR_NOMEM;
        for (int64_t c = 0; c < cols; c++) colw[c] = top > 0 ? (float)(stats->xtx[c * cols + c] / top) : 0.0f;
    }
    lb_status st = lb_qtensor_init(q, spec, rows, cols);
    if (st == LB_OK) {
        for (int64_t i = 0; i < rows * cols && st == LB_OK; i++)
            if (!isfinite(w[i]))
                st = lb_fail(LB_ERR_NUMERIC, "weight at row %lld, column %lld is %s", (long long)(i / cols),
                             (long long)(i % cols), isnan(w[i]) ? "NaN" : "infinite");
        if (st == LB_OK) st = lb_lut_quantize(w, rows, cols, colw, ww, o->keep, iters, init, q);
        if (st != LB_OK) lb_qtensor_free(q);
    }
    lb_free(colw);
    return st;
}

const lb_method lb_method_squeezellm = {
    .name = "squeezellm",
    .summary = "sensitivity-weighted k-means per group into a lut<b> codebook (diag X^T X or Fisher weights)",
    .stats = LB_STATS_XTX,
    .options = squeezellm_options,
    .n_options = (int)(sizeof squeezellm_options / sizeof squeezellm_options[0]),
    .check = squeezellm_check,
    .quantize = squeezellm_quantize,
};
