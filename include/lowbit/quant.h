/* lowbit quantization methods: functions from (weights, statistics, spec) to
 * a quantized tensor. They know nothing about files or models. Each method
 * is a row of the method table (lb_method, below); lb_quantize_tensor runs
 * any row. The rows: rtn (this paragraph), twn (src/quant/twn.c), hqq
 * (src/quant/hqq.c), gptq (src/quant/gptq.c, needs X^T X), the
 * input-scaling rows awq, awq+gptq (src/quant/awq.c) and smoothquant
 * (src/quant/smoothquant.c), which rescale input channels before quantizing
 * (lb_scale_group, below), and squeezellm (src/quant/squeezellm.c:
 * sensitivity-weighted k-means into lut<b> codebooks).
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
 * With hierarchical scales (uniform s<k>) every group is then refitted on
 * its integer lattice under the super-scales by the same rule (rtn.c).
 * Binary uses alpha = mean|w| (the L2-optimal scale for signs); ternary uses
 * BitNet b1.58 absmean or TWN's 0.7 mean|w| threshold, as the options say
 * (a method choice: both write the same bytes; the twn row sets it). */
#ifndef LOWBIT_QUANT_H
#define LOWBIT_QUANT_H

#include "lowbit/format.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { LB_CLIP_MINMAX, LB_CLIP_MSE, LB_CLIP_ACIQ, LB_CLIP_ACIQ_GAUSS } lb_clip;

LB_API lb_status lb_clip_parse(const char *text, lb_clip *out);
LB_API const char *lb_clip_name(lb_clip c);

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
    int magnitude;        /* 1: the grid searches weight each weight's squared error by rms + |w| (its
                             group's RMS), ggml's data-free K-quant weighting; 0 (default): 1 */
} lb_rtn_opts;

LB_API void lb_rtn_opts_default(lb_rtn_opts *o);

/* Quantizes w (rows x cols, row-major f32) into q (initialized here; free
 * with lb_qtensor_free). NaN/Inf weights fail with LB_ERR_NUMERIC naming the
 * first one. Deterministic and independent of the thread count. */
LB_API lb_status lb_rtn_quantize(const float *w, int64_t rows, int64_t cols, const lb_qspec *spec,
                          const lb_rtn_opts *opts, lb_qtensor *q);

/* RTN shorthand for lb_quantize_tensor with the rtn row: quantizes w into a
 * packed tensor that owns its bytes (float families are converted). */
LB_API lb_status lb_quantize_to_tensor(const float *w, int64_t rows, int64_t cols, const lb_qspec *spec,
                                const lb_rtn_opts *opts, const char *name, lb_tensor *out);

/* ACIQ optimal clip over the scale of the distribution, for `bits` bits:
 * alpha over b for Laplace(b), alpha over sigma for a Gaussian (METHODS.md s19). */
LB_API float lb_aciq_laplace_ratio(int bits);
LB_API float lb_aciq_gauss_ratio(int bits);

/* ---- calibration statistics ------------------------------------------------
 * What calibration collects for one linear (weight rows = out, cols = in) over
 * n_samples activation rows x. A method says which parts it needs with a
 * bitmask; parts not collected are NULL. lb_calibrate (lowbit/calib.h) fills
 * them from the fp32 model's forward pass; the linears that read the same
 * input (q/k/v, gate/up) point at the same arrays. The struct is plain so it
 * can be saved and reloaded (lb_calib_stats_save). */
enum {
    LB_STATS_NONE = 0,
    LB_STATS_XTX = 1 << 0,      /* sum over samples of x x^T: Hessian proxy (GPTQ, QuIP) */
    LB_STATS_MEAN_ABS_X = 1 << 1, /* per input channel mean |x| (AWQ) */
    LB_STATS_MAX_ABS_X = 1 << 2,  /* per input channel max |x| (SmoothQuant) */
    LB_STATS_GRAD_SQ = 1 << 3,    /* per weight sum of squared loss gradients (SqueezeLLM) */
    LB_STATS_MEAN_X = 1 << 4,     /* per input channel mean x (signed) */
    LB_STATS_HIST_X = 1 << 5,     /* histogram of every x of the input (activation ranges) */
    /* sum over samples of (x_fp - x) x^T: the fp32 model's input minus the
     * partly quantized model's, against the latter (GPTAQ). Only sequential
     * calibration (lb_calib_seq) has both inputs; not saved in stats files. */
    LB_STATS_DXTX = 1 << 6
};

typedef struct {
    int64_t n_samples;  /* activation rows observed */
    int64_t rows, cols; /* the linear's shape: (out, in) */
    double *xtx;        /* (cols, cols) row-major, both triangles (symmetric), or NULL */
    float *mean_abs_x;  /* (cols), or NULL */
    float *max_abs_x;   /* (cols), or NULL */
    float *grad_sq;     /* (rows, cols), or NULL */
    float *mean_x;      /* (cols), or NULL */
    /* hist_bins equal-width bins over [-hist_range, hist_range) of every x
     * (all channels, all samples; they sum to n_samples * cols); hist_range
     * is a power of two. NULL / 0 when not collected. */
    int64_t *hist;
    int hist_bins;
    double hist_range;
    double *dxtx;       /* (cols, cols) row-major: sum over samples of (x_fp - x)_i x_j, or NULL */
} lb_layer_stats;

/* ---- methods: one row each ---------------------------------------------------
 * A method is a row of the method table: a name, a one-line summary, the
 * statistics it needs, its options (name, type, default, help) and its
 * quantize function. Options are given as key=value text (the CLI's
 * `--clip mse`, a recipe's `clip=mse`) and parsed against the row's option
 * table into lb_method_opts, which holds one value per table entry. */
typedef enum { LB_OPTION_INT, LB_OPTION_FLOAT, LB_OPTION_CHOICE } lb_option_type;

typedef struct {
    const char *name;            /* key in key=value */
    lb_option_type type;
    const char *def;             /* default, as text */
    const char *help;            /* one line */
    double min, max;             /* INT and FLOAT: allowed range (inclusive) */
    const char *const *choices;  /* CHOICE: NULL-terminated names; the value is the index */
    const char *noun;            /* CHOICE: what a value is, for errors ("clipping rule") */
} lb_method_option;

#define LB_METHOD_MAX_OPTIONS 16
/* Options every row takes after its own (outliers, outlier_rule,
 * bias_correct, rotate, rotate_seed: see lb_quantize_tensor_ex); listed by
 * lb_method_common_at. */
#define LB_METHOD_COMMON_OPTIONS 5

typedef struct lb_method lb_method;

/* What a method reports about one call, for methods that have something to
 * say (gptq: the damping it needed); others leave it untouched. */
typedef struct {
    double damping;      /* lambda added to diag(H) */
    double damping_rel;  /* lambda / mean(diag H) */
    int damping_raises;  /* times the requested damping was raised x10 to factor H */
    int64_t dead_inputs; /* input channels with H_ii = 0 (their weights zeroed) */
    double proxy_loss;   /* the method's own tr(dW H dW^T), damped H */
    double seconds;      /* wall time of the call */
    double factor_seconds; /* of which factoring H (gptq: the Cholesky factor of H^-1) */
    /* input-scaling rows (awq's exponent r, smoothquant's alpha; NAN when
     * s = 1 was kept), and their objective sum_i tr(dW_i H dW_i^T) with the
     * chosen scales and with none (s = 1), both under the search's quantizer */
    double scale_param;
    double scale_loss;
    double scale_loss_unscaled;
} lb_method_report;

typedef struct {
    const lb_method *method;
    double value[LB_METHOD_MAX_OPTIONS]; /* per option of the row: number, or choice index */
    lb_method_report *report; /* optional (NULL by default): filled by methods that report */
    /* Dense-and-sparse (set by lb_quantize_tensor_ex for the call, NULL
     * otherwise): weights with keep[r * cols + c] != 0 will be stored exactly
     * in the sparse part, whatever the dense code holds there. A row that
     * spreads rounding errors to other weights (gptq) spreads none from
     * them and writes into kept[r * cols + c] the value it wants them to
     * have (its updated weight); other rows ignore both. */
    const uint8_t *keep;
    float *kept;
    /* Set by lb_quantize_tensor_ex for a call without outliers or bias
     * correction (NULL otherwise): a row that produces a part for a linear
     * slot besides the weight writes it here (onebit lowrank=r: the
     * adapter); such a row fails when it is NULL. */
    struct lb_quant_extras *extras;
} lb_method_opts;

/* ---- input scaling (AWQ, SmoothQuant) -------------------------------------
 * A method may rescale the input channels of the linears that read one
 * input before quantizing them: y = W x = (W diag(s)) (x / s). The pipeline
 * (src/pipeline/fold.c) gives the row's input_scales hook a scale group:
 * every linear reading that input (q/k/v; o; gate/up; down) and their shared
 * statistics; the hook returns s; the pipeline then stores W diag(s), divides
 * the input's producer by s (the RMSNorm weight, or v's / up's output rows),
 * transforms the statistics to those of x / s (lb_layer_stats_scaled) and
 * calls the row's quantize on the scaled weight as for any method. */
typedef struct {
    int n;                       /* linears in the group */
    const float *const *w;       /* n weights, each rows[i] x cols, row-major */
    const int64_t *rows;
    const lb_qspec *specs;       /* n formats (never float) */
    int64_t cols;
    const lb_layer_stats *stats; /* the shared input's statistics (its rows field is ignored) */
    /* Channels that must share one scale (NULL: none tied): tie[c] is the
     * class of channel c, in 0..n_classes-1. The attention output under
     * grouped-query attention: its channels come from v's output rows, which
     * the q-heads of one kv head share. */
    const int *tie;
    int64_t n_classes;
} lb_scale_group;

/* The objective every scaling row minimizes: sum over rows of
 * (wq - w) H (wq - w)^T, i.e. tr(dW H dW^T), the summed squared output error
 * over the calibration inputs whose X^T X is h (cols x cols). Deterministic
 * for any thread count. */
LB_API double lb_output_error(const float *w, const float *wq, int64_t rows, int64_t cols, const double *h);

/* out = the statistics of x / s given those of x (s: cols, finite, > 0):
 * xtx_jk / (s_j s_k), mean|x| / s, max|x| / s, mean x / s, grad_sq / s^2 (the
 * gradient of W diag(s)'s entries is the old one / s). The histogram of all
 * x cannot be rescaled per channel: out has none. out owns its arrays
 * (lb_layer_stats_free). */
LB_API lb_status lb_layer_stats_scaled(const lb_layer_stats *in, const float *s, lb_layer_stats *out);
LB_API void lb_layer_stats_free(lb_layer_stats *s);
/* The statistics of output rows [r0, r1) of the linear, a view of s (not
 * owned): the input's statistics hold for any of its rows, the per-weight
 * ones (grad_sq) are sliced. What a row part of a split tensor is quantized
 * with. */
LB_API lb_layer_stats lb_layer_stats_rows(const lb_layer_stats *s, int64_t r0, int64_t r1);
/* The statistics of input columns [c0, c1) of the linear, as a linear of
 * those columns alone: X^T X's (and dX^T X's) block, the per-channel arrays'
 * and grad_sq's columns, copied (out owns them: lb_layer_stats_free); the
 * histogram of all channels is dropped. What a column part is quantized with. */
LB_API lb_status lb_layer_stats_cols(const lb_layer_stats *s, int64_t c0, int64_t c1, lb_layer_stats *out);

struct lb_method {
    const char *name;
    const char *summary;
    unsigned stats; /* LB_STATS_* the method needs; LB_STATS_NONE: data-free */
    const lb_method_option *options;
    int n_options;
    /* Fails (LB_ERR_INVALID) when this spec/options pair cannot work, before
     * any weight is touched; NULL: everything the format allows. */
    lb_status (*check)(const lb_qspec *spec, const lb_method_opts *opts);
    /* w (rows x cols, row-major f32) -> q (initialized here, lb_qtensor_free);
     * spec is never a float family; stats is NULL when the row needs none.
     * Called only by lb_quantize_tensor, after check passed for this spec and
     * these options and the statistics the row needs were found present,
     * shaped like the weight and finite (non-finite values fail with
     * LB_ERR_NUMERIC naming the entry), so rows do not repeat those checks. */
    lb_status (*quantize)(const float *w, int64_t rows, int64_t cols, const lb_layer_stats *stats,
                          const lb_qspec *spec, const lb_method_opts *opts, lb_qtensor *q);
    /* NULL for methods that quantize each linear alone. Otherwise the
     * model-level input-scaling pass this row needs (see lb_scale_group):
     * fills s (g->cols, finite, > 0) for the group. The pipeline runs it
     * once per group whose linears use this row, before quantize, which
     * then sees the scaled weights and statistics. */
    lb_status (*input_scales)(const lb_scale_group *g, const lb_method_opts *opts, float *s);
    /* NULL for rows whose statistics do not depend on their options.
     * Otherwise the statistics the row needs with options o beyond `stats`
     * (aqlm: X^T X with hweight=diag, nothing with hweight=none);
     * lb_method_opts_stats includes them, and quantize gets the statistics
     * whenever `stats` or this is not 0. */
    unsigned (*stats_for)(const lb_method_opts *o);
};

LB_API int lb_method_count(void);
LB_API const lb_method *lb_method_at(int i);
/* NULL (and an error listing the known methods) when there is none. */
LB_API const lb_method *lb_method_find(const char *name);
/* "rtn, twn" into buf */
LB_API void lb_method_list(char *buf, size_t n);

/* Every option at its default. */
LB_API void lb_method_opts_default(const lb_method *m, lb_method_opts *o);
/* Sets one option from text; unknown keys and bad values fail naming the
 * method's known options or the allowed values. */
LB_API lb_status lb_method_opts_set(lb_method_opts *o, const char *key, const char *value);
/* "key=value" (one token) */
LB_API lb_status lb_method_opts_parse(lb_method_opts *o, const char *key_value);
/* Value of option `key` (NAN if the row has none); choice options give the
 * index, lb_method_opts_text gives the value as text. */
LB_API double lb_method_opts_get(const lb_method_opts *o, const char *key);
LB_API const char *lb_method_opts_text(const lb_method_opts *o, const char *key, char *buf, size_t n);
/* "clip=mse mse_steps=50 mse_min_shrink=0.5": all options (all = 1) or only
 * those not at their default; parses back to the same options. */
LB_API void lb_method_opts_format(const lb_method_opts *o, int all, char *buf, size_t n);
LB_API int lb_method_opts_equal(const lb_method_opts *a, const lb_method_opts *b);
/* The options every row takes (i < LB_METHOD_COMMON_OPTIONS), for help text. */
LB_API int lb_method_common_count(void);
LB_API const lb_method_option *lb_method_common_at(int i);
/* The statistics a call with these options needs: the row's, plus what the
 * common options ask for (sensitivity outliers X^T X, channel outliers
 * max|x|, bias correction mean x). */
LB_API unsigned lb_method_opts_stats(const lb_method_opts *o);

/* Quantizes w (rows x cols) by method m into a packed tensor that owns its
 * bytes. Float specs are converted (no method involved). stats: NULL when
 * none were collected; a method that needs some fails without them. The
 * result is deterministic and independent of the thread count. */
LB_API lb_status lb_quantize_tensor(const lb_method *m, const lb_method_opts *opts, const lb_layer_stats *stats,
                             const float *w, int64_t rows, int64_t cols, const lb_qspec *spec, const char *name,
                             lb_tensor *out);

/* ---- dense-and-sparse and bias correction -----------------------------------
 * What a call produces besides the packed tensor, for the linear's slots
 * (lowbit/linear.h): a sparse part S in CSR, added to the dequantized
 * weight, a bias change, added to the output, rotation signs, and a
 * low-rank adapter (a method's own part: onebit lowrank=r). src/quant/outliers.c and
 * src/quant/bias_correct.c say how they are chosen. */
typedef struct lb_quant_extras {
    int64_t rows, cols;
    int64_t nnz;       /* 0: no sparse part */
    int32_t *row_ptr;  /* (rows + 1) */
    int32_t *col_idx;  /* (nnz), ascending within a row */
    float *values;     /* (nnz): w - dequantized dense, rounded to fp16 when it fits */
    float *bias;       /* (rows) to add to the linear's bias, or NULL; fp16-rounded */
    /* rotate=hadamard: the signs of the input (cols) and output (rows)
     * rotations the weight was quantized under (lowbit/linear.h's rotation
     * slots), or NULL; the sparse part lives in the rotated basis, the bias
     * in the original one */
    float *in_signs, *out_signs;
    /* a low-rank term for the linear's adapter slot (onebit lowrank=r), in
     * the basis of the stored weight like the sparse part: the effective
     * weight is dequantized + alpha B A; A (adapter_rank x cols), B (rows x
     * adapter_rank), fp16 values; 0 / NULL when none */
    int adapter_rank;
    float *adapter_a, *adapter_b;
    float adapter_alpha;
} lb_quant_extras;

LB_API void lb_quant_extras_free(lb_quant_extras *x); /* leaves it zeroed; NULL is fine */

/* Outlier rules (the outlier_rule option). */
typedef enum { LB_OUTLIER_MAGNITUDE, LB_OUTLIER_SENSITIVITY, LB_OUTLIER_CHANNEL } lb_outlier_rule;

/* Marks in keep (rows x cols, zeroed here) the weights the rule keeps out of
 * the dense part: magnitude, the round(fraction rows cols) largest
 * |w - median of its row|; sensitivity, the same count by
 * (w - median)^2 H_jj (stats->xtx); channel, whole input columns, the
 * round(fraction cols) (at least 1 when fraction > 0) with the largest
 * calibration max|x| (stats->max_abs_x). Ties go to the lower index. The
 * number kept goes to *n_kept. */
LB_API lb_status lb_outliers_select(const float *w, int64_t rows, int64_t cols, const lb_layer_stats *stats,
                                    double fraction, lb_outlier_rule rule, uint8_t *keep, int64_t *n_kept);

/* lb_quantize_tensor, plus what the options' common part asks for in
 * extras (zeroed when nothing is): outliers > 0 splits w into a dense part
 * (the kept weights replaced by the mean of the rest of their group, so
 * that they neither widen a grid nor, under gptq, spread error) quantized
 * by m, and a sparse part holding the difference, so that dense + sparse
 * reproduces each kept weight up to fp16 rounding of the difference;
 * bias_correct = 1 adds (W - (deq + S)) E[x] (stats->mean_x) to the bias;
 * rotate = hadamard quantizes R_o W R_i^T instead (src/quant/rotate.c;
 * statistics rotated to match, everything above then in that basis, the
 * bias rotated back) and returns the signs of R_i and R_o for the linear's
 * rotation slots; rotate_seed picks them (with the tensor's name).
 * extras may be NULL only when none of these is asked for. */
LB_API lb_status lb_quantize_tensor_ex(const lb_method *m, const lb_method_opts *opts, const lb_layer_stats *stats,
                                       const float *w, int64_t rows, int64_t cols, const lb_qspec *spec,
                                       const char *name, lb_tensor *out, lb_quant_extras *extras);

#ifdef __cplusplus
}
#endif
#endif
