/* lowbit quantization methods: functions from (weights, statistics, spec) to
 * a quantized tensor. They know nothing about files or models.
 *
 * Round-to-nearest (RTN) is the data-free baseline every other method is
 * measured against: per group, pick the grid (scale, zero) from the weights
 * alone, then round each weight to its nearest grid point. The grid comes
 * from a clipping rule:
 *   minmax  the group's full range
 *   mse     the shrink factor p in [0.5, 1] (50 steps) of the range with the
 *           least squared weight error, grid rounded as stored
 *   aciq    the analytically optimal clip for a Laplace distribution fitted
 *           to the group (Banner et al., ACIQ); aciq-gauss for a Gaussian
 * Binary uses alpha = mean|w| (the L2-optimal scale for signs); ternary uses
 * BitNet b1.58 absmean or TWN's 0.7 mean|w| threshold, as the options say
 * (a method choice: both write the same bytes). */
#ifndef LOWBIT_QUANT_H
#define LOWBIT_QUANT_H

#include "lowbit/format.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { LB_CLIP_MINMAX, LB_CLIP_MSE, LB_CLIP_ACIQ, LB_CLIP_ACIQ_GAUSS } lb_clip;

lb_status lb_clip_parse(const char *text, lb_clip *out);
const char *lb_clip_name(lb_clip c);

/* How round-to-nearest picks a ternary group's scale and threshold. */
typedef enum {
    LB_TERNARY_ABSMEAN, /* BitNet b1.58: gamma = mean|w|, t = clamp(round(w / gamma), -1, 1) */
    LB_TERNARY_TWN      /* TWN: delta = 0.7 mean|w|, alpha = mean |w| over |w| > delta */
} lb_ternary_rule;

typedef struct {
    lb_clip clip;
    int mse_steps;        /* shrink factors tried by mse (default 50) */
    float mse_min_shrink; /* smallest factor (default 0.5) */
    lb_ternary_rule ternary_rule; /* ternary formats (default LB_TERNARY_ABSMEAN) */
} lb_rtn_opts;

void lb_rtn_opts_default(lb_rtn_opts *o);

/* Quantizes w (rows x cols, row-major f32) into q (initialized here; free
 * with lb_qtensor_free). NaN/Inf weights fail with LB_ERR_NUMERIC naming the
 * first one. Deterministic and independent of the thread count. */
lb_status lb_rtn_quantize(const float *w, int64_t rows, int64_t cols, const lb_qspec *spec,
                          const lb_rtn_opts *opts, lb_qtensor *q);

/* Quantizes w into a packed tensor that owns its bytes (float families are
 * converted). */
lb_status lb_quantize_to_tensor(const float *w, int64_t rows, int64_t cols, const lb_qspec *spec,
                                const lb_rtn_opts *opts, const char *name, lb_tensor *out);

/* ACIQ optimal clip over the scale of the distribution, for `bits` bits:
 * alpha over b for Laplace(b), alpha over sigma for a Gaussian (METHODS.md s19). */
float lb_aciq_laplace_ratio(int bits);
float lb_aciq_gauss_ratio(int bits);

#ifdef __cplusplus
}
#endif
#endif
