/* Ternary Weight Networks (Li, Zhang, Liu 2016, arXiv:1605.04711), the
 * post-training form: per group, W ~ alpha T with T in {-1, 0, +1}.
 *
 * Minimizes ||W - alpha T||^2. For a fixed threshold delta the optimal codes
 * are T = sign(w) [|w| > delta] and the optimal alpha is the mean of |w| over
 * the weights above delta; TWN approximates the optimal delta, assuming
 * roughly uniform or Gaussian weights, by delta = 0.7 mean|w|. Defaults are
 * the paper's; no options. Deviation: alpha is stored in fp16 like every
 * lowbit scale, and a group whose weights are all at or below delta stores
 * alpha = 0 (all codes 0).
 *
 * The arithmetic is RTN's ternary path with the TWN rule (rtn.c), so the two
 * methods share one implementation of grouping, padding and storage. */
#include "quant/method_rows.h"

#include <string.h>

static lb_status twn_check(const lb_qspec *spec, const lb_method_opts *opts) {
    (void)opts;
    if (lb_format_grid(spec) != LB_GRID_TERNARY) {
        char text[64];
        lb_qspec_format(spec, text, sizeof text);
        return lb_fail(LB_ERR_INVALID, "method twn quantizes to ternary formats only, not '%s'", text);
    }
    return LB_OK;
}

static lb_status twn_quantize(const float *w, int64_t rows, int64_t cols, const lb_layer_stats *stats,
                              const lb_qspec *spec, const lb_method_opts *opts, lb_qtensor *q) {
    (void)stats; /* twn_check already ran (lb_quantize_tensor) */
    lb_rtn_opts ro;
    lb_rtn_opts_default(&ro);
    ro.ternary_rule = LB_TERNARY_TWN;
    return lb_rtn_quantize(w, rows, cols, spec, &ro, q);
}

const lb_method lb_method_twn = {
    .name = "twn",
    .summary = "ternary weight networks: threshold 0.7 mean|w|, alpha = mean|w| above it (ternary formats)",
    .stats = LB_STATS_NONE,
    .options = NULL,
    .n_options = 0,
    .check = twn_check,
    .quantize = twn_quantize,
};
