/* AWQ (Lin, Tang, Tang, Yang, Dang, Gan, Han 2023, "AWQ: Activation-aware
 * Weight Quantization for LLM Compression and Acceleration",
 * arXiv:2306.00978; METHODS.md s3; reference code mit-han-lab/llm-awq
 * awq/quantize/{auto_scale,auto_clip}.py). Rows awq and awq+gptq.
 *
 * Objective: for the linears W_i reading one input x (q/k/v; o; gate/up;
 * down), choose per-input-channel scales s minimizing the output error
 *   sum_i tr(E_i H E_i^T),  E_i = Q(W_i diag(s)) diag(s)^-1 - W_i,
 * H = X^T X over the calibration tokens (scale.c says why this is AWQ's
 * block-output MSE measured per linear). s is searched on AWQ's grid
 *   s = max(a^r, 1e-4) / sqrt(max s * min s),  a = mean|x| per channel,
 *   r = i / grid, i = 0 .. grid-1 (grid 20; r = 0 is s = 1, no scaling),
 * keeping the r of least error (ties keep the smaller r). Q in the search is
 * round-to-nearest with each linear's format and the min-max grid, as the
 * reference's pseudo_quantize_tensor. The pipeline folds s into the model
 * exactly (src/pipeline/fold.c) and hands the rows the scaled weights and
 * the statistics of x / s.
 *
 * Row awq then clips and rounds (the reference's auto_clip): per output row
 * and group, the weights are clamped to +-p max|w| of the group,
 * p = 1 - i / clip_grid for i = 0 .. max_shrink clip_grid (down to 0.5 by
 * default), and the p of least output error is kept; the group is then
 * rounded min-max on the clamped weights.
 * Row awq+gptq runs GPTQ (gptq.c's row, called with its own options) on the
 * scaled weights and the scaled H instead of clip + round.
 *
 * Deviations:
 * - The error is each linear's own output (tr(E H E^T)), not the attention
 *   or MLP block's output after the nonlinearity; no activation samples are
 *   kept, only H.
 * - Clip search objective: the row's whole output error e H e^T, where the
 *   reference scores each group alone on its partial dot product
 *   (e_g H_gg e_g^T, ignoring the cross terms between groups). Groups are
 *   visited in order, each choosing its clip given the current errors of the
 *   others (coordinate descent from no clipping), so the objective can only
 *   fall; the final result is also checked against no clipping.
 * - The clip grid includes p = 0.5 (the reference stops at 0.55), and all
 *   linears are clipped (the reference skips q and k, whose output error is
 *   not what attention feels).
 * - Formats: uniform (int) grids; others are refused.
 * - The search order of groups within a layer is the reference's (q/k/v,
 *   then o on the new v, then gate/up, then down on the new up); statistics
 *   come from the fp32 model (the reference also runs calibration on the
 *   unquantized, scaled block).
 * Cost: the scale search rounds every linear of the group once per r and
 * scores it in O(rows cols^2); the clip search rounds each linear once per
 * clip factor, whole (group grids are independent, so one rounding of the
 * matrix clamped by p gives every group's error at p), then runs the
 * coordinate descent per row in O(cols^2 + factors cols G).
 * Determinism: every loop over rows writes per-row results summed serially. */
#include "quant/method_rows.h"
#include "quant/scale_internal.h"

#include <math.h>
#include <string.h>

#define AWQ_SCALE_FLOOR 1e-4f /* the reference's clamp(min=1e-4) */
#define AWQ_DEFAULT_GRID 20

static const lb_method_option awq_options[] = {
    {"grid", LB_OPTION_INT, "20", "scale exponents r = i/grid tried (i = 0..grid-1; r = 0 is no scaling)", 1, 1000,
     NULL, NULL},
    {"clip_search", LB_OPTION_INT, "1", "1: per-group clip search on the output error; 0: min-max rounding", 0, 1,
     NULL, NULL},
    {"max_shrink", LB_OPTION_FLOAT, "0.5", "largest clip tried: weights clamped down to (1 - max_shrink) max|w|",
     0, 0.99, NULL, NULL},
    {"clip_grid", LB_OPTION_INT, "20", "clip steps of 1/clip_grid", 1, 1000, NULL, NULL},
};

static lb_status awq_check(const lb_qspec *spec, const lb_method_opts *o) {
    (void)o;
    if (lb_format_grid(spec) != LB_GRID_UNIFORM) {
        char text[64];
        lb_qspec_format(spec, text, sizeof text);
        return lb_fail(LB_ERR_INVALID, "method awq quantizes to uniform (int) formats, not '%s'", text);
    }
    return LB_OK;
}

/* The scale search, shared by awq and awq+gptq (whose options have no
 * "grid": AWQ's 20). */
static lb_status awq_input_scales(const lb_scale_group *g, const lb_method_opts *opts, float *s) {
    lb_status st = lb_scale_check_group(g, LB_STATS_XTX | LB_STATS_MEAN_ABS_X, opts->method->name);
    if (st != LB_OK) return st;
    double gv = lb_method_opts_get(opts, "grid");
    int grid = isnan(gv) ? AWQ_DEFAULT_GRID : (int)gv;
    const int64_t n = g->cols;
    float *a = lb_alloc((size_t)n * sizeof(float));
    float *cand = lb_alloc((size_t)n * sizeof(float));
    if (!a || !cand) {
        lb_free(a);
        lb_free(cand);
        return LB_ERR_NOMEM;
    }
    memcpy(a, g->stats->mean_abs_x, (size_t)n * sizeof(float));
    st = lb_scale_tie(g, a, 0); /* tied channels: the mean of their mean|x| */
    double best = INFINITY, loss0 = NAN;
    int best_i = 0;
    for (int i = 0; i < grid && st == LB_OK; i++) {
        double r = (double)i / grid;
        for (int64_t j = 0; j < n; j++) {
            float v = (float)pow((double)a[j], r); /* 0^0 = 1: r = 0 is s = 1 */
            cand[j] = v > AWQ_SCALE_FLOOR ? v : AWQ_SCALE_FLOOR;
        }
        lb_scale_normalize(cand, n);
        double loss;
        st = lb_scale_loss(g, cand, &loss);
        if (st != LB_OK) break;
        if (i == 0) loss0 = loss;
        if (loss < best) {
            best = loss;
            best_i = i;
            memcpy(s, cand, (size_t)n * sizeof(float));
        }
    }
    if (st == LB_OK && opts->report) {
        opts->report->scale_param = (double)best_i / grid;
        opts->report->scale_loss = best;
        opts->report->scale_loss_unscaled = loss0;
    }
    lb_free(a);
    lb_free(cand);
    return st;
}

/* ---- clip search ---------------------------------------------------------- */

/* w clamped per group to +-p max|w| of the group (p = 1: unchanged) */
static void clamp_groups(const float *w, int64_t rows, int64_t cols, int64_t G, const float *p, float *out) {
    const int64_t ngroups = (cols + G - 1) / G;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < ngroups; g++) {
            int64_t c0 = g * G, c1 = c0 + G < cols ? c0 + G : cols;
            float m = 0, f = p[r * ngroups + g];
            for (int64_t c = c0; c < c1; c++) m = fmaxf(m, fabsf(w[r * cols + c]));
            float lim = f * m;
            for (int64_t c = c0; c < c1; c++) {
                float v = w[r * cols + c];
                out[r * cols + c] = f < 1.0f ? (v > lim ? lim : v < -lim ? -lim : v) : v;
            }
        }
}

/* min-max rounding of w; out = the dequantized result minus w */
static lb_status rounding_error(const float *w, int64_t rows, int64_t cols, const lb_qspec *spec, const float *wc,
                                float *out, lb_qtensor *keep) {
    lb_qtensor q;
    lb_rtn_opts ro;
    lb_rtn_opts_default(&ro);
    lb_status st = lb_rtn_quantize(wc, rows, cols, spec, &ro, &q);
    if (st != LB_OK) return st;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) out[r * cols + c] = lb_qtensor_value(&q, r, c) - w[r * cols + c];
    if (keep) {
        *keep = q;
    } else {
        lb_qtensor_free(&q);
    }
    return LB_OK;
}

/* Row r's coordinate descent over its groups: e (cols) starts as the
 * unclipped error; cand[i] (cols) is the error with every group clamped by
 * factor i + 1 (group errors do not depend on other groups' clamps). Each
 * group in turn takes the factor minimizing the row's whole e H e^T given
 * the others, i.e. eg H_gg eg^T + 2 eg (H e)_g over the other columns. */
static void clip_row(const double *h, int64_t cols, int64_t G, int steps, float *const *cand, int64_t off, float *e,
                     float *chosen, const float *factors, double *cross) {
    const int64_t ngroups = (cols + G - 1) / G;
    for (int64_t g = 0; g < ngroups; g++) {
        int64_t c0 = g * G, len = cols - c0 < G ? cols - c0 : G;
        for (int64_t j = 0; j < len; j++) { /* (H e)_j over the columns outside the group */
            const double *hj = h + (c0 + j) * cols;
            double t = 0;
            for (int64_t k = 0; k < cols; k++)
                if (k < c0 || k >= c0 + len) t += hj[k] * e[k];
            cross[j] = t;
        }
        double best = 0;
        int best_i = -1;
        for (int i = -1; i < steps; i++) {
            const float *eg = (i < 0 ? e : cand[i] + off) + c0;
            double quad = 0, lin = 0;
            for (int64_t j = 0; j < len; j++) {
                if (eg[j] == 0.0f) continue;
                const double *hj = h + (c0 + j) * cols + c0;
                double t = 0;
                for (int64_t k = 0; k < len; k++) t += hj[k] * eg[k];
                quad += eg[j] * t;
                lin += eg[j] * cross[j];
            }
            double f = quad + 2 * lin;
            if (i < 0 || f < best) {
                best = f;
                best_i = i;
            }
        }
        chosen[g] = best_i < 0 ? 1.0f : factors[best_i];
        if (best_i >= 0) memcpy(e + c0, cand[best_i] + off + c0, (size_t)len * sizeof(float));
    }
}

/* Quantizes w after AWQ's clip search (see the file comment); loss: the
 * output error tr(E H E^T) of the result. */
static lb_status awq_clip_quantize(const float *w, int64_t rows, int64_t cols, const double *h, const lb_qspec *spec,
                                   float max_shrink, int clip_grid, lb_qtensor *q, double *loss) {
    const size_t nw = (size_t)rows * (size_t)cols;
    float *e = lb_alloc(nw * sizeof(float)), *wc = lb_alloc(nw * sizeof(float));
    if (!e || !wc) {
        lb_free(e);
        lb_free(wc);
        return LB_ERR_NOMEM;
    }
    lb_status st = rounding_error(w, rows, cols, spec, w, e, q); /* no clipping: the starting point */
    if (st != LB_OK) {
        lb_free(e);
        lb_free(wc);
        return st;
    }
    const int64_t G = q->groups_per_row > 0 ? q->group_len : cols;
    const int64_t ngroups = (cols + G - 1) / G;
    int steps = (int)floorf(max_shrink * (float)clip_grid + 1e-4f);
    if (q->groups_per_row == 0) steps = 0; /* one grid for the whole tensor: nothing per row to clip */
    float **cand = lb_calloc((size_t)(steps ? steps : 1), sizeof(float *));
    float *factors = lb_alloc((size_t)(steps ? steps : 1) * sizeof(float));
    float *clip = lb_alloc((size_t)rows * (size_t)ngroups * sizeof(float));
    double *cross = lb_alloc((size_t)rows * (size_t)G * sizeof(double));
    if (!cand || !factors || !clip || !cross) st = LB_ERR_NOMEM;
    for (int i = 0; st == LB_OK && i < steps; i++) {
        factors[i] = 1.0f - (float)(i + 1) / (float)clip_grid;
        for (int64_t k = 0; k < rows * ngroups; k++) clip[k] = factors[i];
        clamp_groups(w, rows, cols, G, clip, wc);
        cand[i] = lb_alloc(nw * sizeof(float));
        st = cand[i] ? rounding_error(w, rows, cols, spec, wc, cand[i], NULL) : LB_ERR_NOMEM;
    }
    float *wq = wc; /* reused below for dequantized weights */
    double before = NAN;
    if (st == LB_OK) {
        for (size_t k = 0; k < nw; k++) wq[k] = w[k] + e[k];
        before = lb_output_error(w, wq, rows, cols, h);
    }
    if (st == LB_OK && steps > 0) {
#pragma omp parallel for schedule(static) if (rows * cols * cols > (1 << 22))
        for (int64_t r = 0; r < rows; r++)
            clip_row(h, cols, G, steps, cand, r * cols, e + r * cols, clip + r * ngroups, factors, cross + r * G);
        /* the chosen clamps, then min-max rounding: the grids and codes the search scored */
        clamp_groups(w, rows, cols, G, clip, wc);
        lb_qtensor qc;
        st = rounding_error(w, rows, cols, spec, wc, e, &qc);
        if (st == LB_OK) {
            for (size_t k = 0; k < nw; k++) wq[k] = w[k] + e[k];
            double after = lb_output_error(w, wq, rows, cols, h);
            if (after < before) { /* never worse than no clipping */
                lb_qtensor_free(q);
                *q = qc;
                before = after;
            } else {
                lb_qtensor_free(&qc);
            }
        }
    }
    *loss = before;
    for (int i = 0; cand && i < steps; i++) lb_free(cand[i]);
    lb_free(cand);
    lb_free(factors);
    lb_free(clip);
    lb_free(cross);
    lb_free(e);
    lb_free(wc);
    if (st != LB_OK) lb_qtensor_free(q);
    return st;
}

static lb_status awq_quantize(const float *w, int64_t rows, int64_t cols, const lb_layer_stats *stats,
                              const lb_qspec *spec, const lb_method_opts *opts, lb_qtensor *q) {
    double t0 = lb_now(), loss = NAN;
    for (int64_t i = 0; i < cols * cols; i++)
        if (!isfinite(stats->xtx[i]))
            return lb_fail(LB_ERR_NUMERIC, "X^T X entry (%lld, %lld) is not finite", (long long)(i / cols),
                           (long long)(i % cols));
    lb_status st;
    if ((int)lb_method_opts_get(opts, "clip_search")) {
        st = awq_clip_quantize(w, rows, cols, stats->xtx, spec, (float)lb_method_opts_get(opts, "max_shrink"),
                               (int)lb_method_opts_get(opts, "clip_grid"), q, &loss);
    } else {
        st = lb_rtn_quantize(w, rows, cols, spec, NULL, q);
    }
    if (st == LB_OK && opts->report) {
        opts->report->proxy_loss = loss;
        opts->report->seconds = lb_now() - t0;
    }
    return st;
}

const lb_method lb_method_awq = {
    .name = "awq",
    .summary = "AWQ: per-input-channel scales mean|x|^r searched on the output error, folded into the model; "
               "clip search; round-to-nearest (needs calibration)",
    .stats = LB_STATS_XTX | LB_STATS_MEAN_ABS_X,
    .options = awq_options,
    .n_options = (int)(sizeof awq_options / sizeof awq_options[0]),
    .check = awq_check,
    .quantize = awq_quantize,
    .input_scales = awq_input_scales,
};

/* ---- awq+gptq: AWQ's scales, then gptq's row on the scaled weights -------- */

static lb_method_opts as_gptq(const lb_method_opts *o) {
    lb_method_opts g = *o; /* same option table (lb_gptq_options), so the same values */
    g.method = &lb_method_gptq;
    return g;
}

static lb_status awq_gptq_check(const lb_qspec *spec, const lb_method_opts *o) {
    lb_method_opts g = as_gptq(o);
    return lb_method_gptq.check(spec, &g);
}

static lb_status awq_gptq_quantize(const float *w, int64_t rows, int64_t cols, const lb_layer_stats *stats,
                                   const lb_qspec *spec, const lb_method_opts *o, lb_qtensor *q) {
    lb_method_opts g = as_gptq(o);
    return lb_method_gptq.quantize(w, rows, cols, stats, spec, &g, q);
}

const lb_method lb_method_awq_gptq = {
    .name = "awq+gptq",
    .summary = "AWQ's input-channel scales (folded into the model), then GPTQ on the scaled weights and H "
               "(needs calibration; options are gptq's)",
    .stats = LB_STATS_XTX | LB_STATS_MEAN_ABS_X,
    .options = lb_gptq_options,
    .n_options = LB_GPTQ_N_OPTIONS,
    .check = awq_gptq_check,
    .quantize = awq_gptq_quantize,
    .input_scales = awq_input_scales,
};
