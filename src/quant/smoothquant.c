/* SmoothQuant (Xiao, Lin, Seznec, Wu, Demouth, Han 2023, "SmoothQuant:
 * Accurate and Efficient Post-Training Quantization for Large Language
 * Models", arXiv:2211.10438; METHODS.md s4; reference code
 * mit-han-lab/smoothquant smoothquant/smooth.py smooth_ln_fcs).
 *
 * Objective: move the difficulty of quantizing activations into the
 * weights, per input channel j of the linears reading one input,
 *   s_j = max|x_j|^alpha / max|W_:,j|^(1 - alpha)
 * (max|W| over every linear of the group; both maxima floored at 1e-5 and
 * s_j too, as smooth.py), folded exactly into the model by the pipeline
 * (src/pipeline/fold.c: W diag(s), the input's producer divided by s). The
 * weights are then rounded to nearest (the row's clip rule): the weight half
 * of a W8A8 setup; the activations are quantized elsewhere (--act).
 *
 * Option alpha_search=1 (not in the paper, which tunes alpha per model by
 * hand): tries s = 1 and alpha = i / grid for i = 0..grid and keeps the
 * candidate of least weight-quantization output error
 * sum_i tr(E_i H E_i^T) (the objective of awq.c, scale.c), min-max RTN in
 * the search. It minimizes the weight error only, so it says nothing about
 * the activation error the paper's alpha trades against.
 *
 * Deviations: tied channels (grouped-query attention's o input) take the
 * max of max|x| and of max|W| over the class; the paper's groups are
 * LayerNorm -> q/k/v and -> gate/up only, lowbit also smooths o (after v)
 * and down (after up), as AWQ does. */
#include "quant/method_rows.h"
#include "quant/scale_internal.h"

#include <math.h>
#include <string.h>

#define SQ_FLOOR 1e-5f

static const char *const clip_choices[] = {"minmax", "mse", "aciq", "aciq-gauss", NULL};

static const lb_method_option sq_options[] = {
    {"alpha", LB_OPTION_FLOAT, "0.5", "migration strength: s = max|x|^alpha / max|w|^(1-alpha)", 0, 1, NULL, NULL},
    {"alpha_search", LB_OPTION_INT, "0", "1: pick alpha (or no scaling) of least weight output error", 0, 1, NULL,
     NULL},
    {"grid", LB_OPTION_INT, "20", "alpha_search tries alpha = i/grid, i = 0..grid", 1, 1000, NULL, NULL},
    {"clip", LB_OPTION_CHOICE, "minmax", "grid range of the rounding: minmax | mse | aciq | aciq-gauss", 0, 0,
     clip_choices, "clipping rule"},
};

static void rtn_from(const lb_method_opts *o, lb_rtn_opts *ro) {
    lb_rtn_opts_default(ro);
    lb_clip_parse(clip_choices[(int)o->value[3]], &ro->clip);
}

static lb_status sq_check(const lb_qspec *spec, const lb_method_opts *o) {
    (void)o;
    lb_grid_kind grid = lb_format_grid(spec);
    if (grid != LB_GRID_UNIFORM && grid != LB_GRID_ABSMAX) {
        char text[64];
        lb_qspec_format(spec, text, sizeof text);
        return lb_fail(LB_ERR_INVALID, "method smoothquant quantizes to uniform (int) and nf4 formats, not '%s'",
                       text);
    }
    return LB_OK;
}

static void formula(const float *ax, const float *aw, int64_t n, double alpha, float *s) {
    for (int64_t j = 0; j < n; j++) {
        double x = ax[j] > SQ_FLOOR ? ax[j] : SQ_FLOOR, w = aw[j] > SQ_FLOOR ? aw[j] : SQ_FLOOR;
        double v = pow(x, alpha) / pow(w, 1.0 - alpha);
        s[j] = (float)(v > SQ_FLOOR ? v : SQ_FLOOR);
        if (!isfinite(s[j])) s[j] = 1.0f; /* cannot happen with finite, floored inputs; kept finite regardless */
    }
}

static lb_status sq_input_scales(const lb_scale_group *g, const lb_method_opts *opts, float *s) {
    int search = (int)lb_method_opts_get(opts, "alpha_search");
    lb_status st =
        lb_scale_check_group(g, LB_STATS_MAX_ABS_X | (search ? LB_STATS_XTX : 0u), opts->method->name);
    if (st != LB_OK) return st;
    const int64_t n = g->cols;
    float *ax = lb_alloc((size_t)n * sizeof(float)), *aw = lb_calloc((size_t)n, sizeof(float));
    float *cand = lb_alloc((size_t)n * sizeof(float));
    if (!ax || !aw || !cand) st = LB_ERR_NOMEM;
    if (st == LB_OK) {
        memcpy(ax, g->stats->max_abs_x, (size_t)n * sizeof(float));
        for (int i = 0; i < g->n; i++)
            for (int64_t r = 0; r < g->rows[i]; r++)
                for (int64_t j = 0; j < n; j++) aw[j] = fmaxf(aw[j], fabsf(g->w[i][r * n + j]));
        st = lb_scale_tie(g, ax, 1);
        if (st == LB_OK) st = lb_scale_tie(g, aw, 1);
    }
    if (st == LB_OK) {
        double alpha = lb_method_opts_get(opts, "alpha");
        formula(ax, aw, n, alpha, s);
        if (!search && opts->report) opts->report->scale_param = alpha;
    }
    if (st == LB_OK && search) {
        int grid = (int)lb_method_opts_get(opts, "grid");
        for (int64_t j = 0; j < n; j++) cand[j] = 1.0f;
        double best, loss;
        st = lb_scale_loss(g, cand, &best); /* s = 1 first: kept on ties */
        double loss0 = best, best_alpha = NAN;
        memcpy(s, cand, (size_t)n * sizeof(float));
        for (int i = 0; i <= grid && st == LB_OK; i++) {
            formula(ax, aw, n, (double)i / grid, cand);
            st = lb_scale_loss(g, cand, &loss);
            if (st == LB_OK && loss < best) {
                best = loss;
                best_alpha = (double)i / grid;
                memcpy(s, cand, (size_t)n * sizeof(float));
            }
        }
        if (st == LB_OK && opts->report) {
            opts->report->scale_param = best_alpha;
            opts->report->scale_loss = best;
            opts->report->scale_loss_unscaled = loss0;
        }
    }
    lb_free(ax);
    lb_free(aw);
    lb_free(cand);
    return st;
}

static lb_status sq_quantize(const float *w, int64_t rows, int64_t cols, const lb_layer_stats *stats,
                             const lb_qspec *spec, const lb_method_opts *o, lb_qtensor *q) {
    (void)stats;
    lb_rtn_opts ro;
    rtn_from(o, &ro);
    return lb_rtn_quantize(w, rows, cols, spec, &ro, q);
}

const lb_method lb_method_smoothquant = {
    .name = "smoothquant",
    .summary = "SmoothQuant: input-channel scales max|x|^alpha / max|w|^(1-alpha) folded into the model, then "
               "round-to-nearest (needs calibration)",
    .stats = LB_STATS_XTX | LB_STATS_MAX_ABS_X,
    .options = sq_options,
    .n_options = (int)(sizeof sq_options / sizeof sq_options[0]),
    .check = sq_check,
    .quantize = sq_quantize,
    .input_scales = sq_input_scales,
};
