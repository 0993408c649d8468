/* lowbit linears: y = x W^T for a weight stored in any format, and lb_linear
 * (the weight plus optional bias, input scale, rotation, outliers, adapter).
 *
 * lb_matmul is the one entry point for a stored weight: it runs the kernel
 * chosen for the tensor's format and this CPU (cached on the tensor), or the
 * generic dequantize-a-tile fallback every format has. Kernels that prepare
 * their activations (e.g. int8 blocks for integer dot products) can share
 * that work between weights reading the same input through an
 * lb_act_cache: reset it whenever the input changes.
 *
 * Shapes: x (n, cols) row-major, W (rows, cols), y (n, rows). */
#ifndef LOWBIT_LINEAR_H
#define LOWBIT_LINEAR_H

#include "lowbit/format.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Prepared activations shared by the weights that read one input.
 *
 * Semantics: for each preparation kind (int8 blocks, ...), the cache holds
 * the prepared form of the first input lb_matmul saw with it since the last
 * reset, together with that input's (pointer, n, cols). A later lb_matmul
 * with the same pointer, n and cols reuses it WITHOUT looking at the floats;
 * a different pointer, n or cols re-prepares (correct, just not shared).
 * So: reset whenever the contents of x change, e.g.
 *
 *     lb_act_cache_reset(c);            // xb was just rewritten
 *     lb_matmul(wq, xb, n, q, c);       // prepares xb once
 *     lb_matmul(wk, xb, n, k, c);       // reuses it
 *     lb_matmul(wv, xb, n, v, c);       // reuses it
 *
 * Results are bit-identical to cache == NULL. Buffers are sized for
 * max_rows x max_cols at first use and grow if an input is larger. A cache
 * serves one thread of callers at a time (lb_matmul parallelizes inside). */
typedef struct lb_act_cache lb_act_cache;
LB_API lb_status lb_act_cache_create(int max_rows, int max_cols, lb_act_cache **out);
LB_API void lb_act_cache_free(lb_act_cache *c); /* NULL is fine */
/* Forgets every prepared form: call whenever the input x changes. */
LB_API void lb_act_cache_reset(lb_act_cache *c);

/* Name of the registry kernel lb_matmul uses for w on this CPU (chosen on
 * first use and cached on the tensor), e.g. "q8_0_avx2", "f32_avx2",
 * "dequant_ref". Environment: LB_CPU=generic allows only scalar kernels;
 * LB_KERNEL=fallback allows only the generic ones (float GEMM, dequantize a
 * tile then float GEMM: the path before format kernels, for measurement);
 * LB_KERNEL=<name> forces that kernel wherever it applies. */
LB_API const char *lb_matmul_kernel_name(const lb_tensor *w);

/* y (n x rows) = x (n x cols) W^T. cache may be NULL (nothing shared). */
LB_API lb_status lb_matmul(const lb_tensor *w, const float *x, int n, float *y, lb_act_cache *cache);

/* y = sign(x) W^T scaled: the input binarized as XNOR-Net does, each row i
 * to beta_i * s_ic with beta_i = mean_c |x_ic| and s_ic = +1 for x_ic >= 0,
 * -1 otherwise, then multiplied by the binary weight w with XNOR and
 * popcount. An explicit opt-in (it changes the result; lb_matmul never
 * binarizes): for layers trained with binarized inputs. w must be binary
 * with groups of >= 32 weights, a row or the tensor; else LB_ERR_UNSUPPORTED. */
LB_API lb_status lb_matmul_binarized(const lb_tensor *w, const float *x, int n, float *y, lb_act_cache *cache);

/* ---- lb_linear: a weight plus optional slots --------------------------------
 * What a model's linear layer holds: the stored weight w (rows=out, cols=in)
 * and, each absent when NULL / 0, slots that quantization methods fill:
 *
 *   in_scale  s (cols)     AWQ / SmoothQuant channel scale: the weight was
 *                          stored as W diag(s), so the input is divided: x / s
 *   rotation  R (cols x cols, orthonormal): the input is rotated, x R, and
 *                          the weight was stored rotated the same way. Kind
 *                          LB_ROTATION_HADAMARD: the randomized Hadamard
 *                          transform of lowbit/core.h (lb_rht_apply) with
 *                          signs d (each +1 or -1): as a column vector
 *                          x' = T diag(d) x, T = H / sqrt(cols) (H the
 *                          Sylvester Walsh-Hadamard matrix) when cols is a
 *                          power of two, (H / sqrt(2^k)) (x) DCT-II for
 *                          cols = 2^k m (m odd, <= LB_RHT_MAX_ODD)
 *   out_rot   R_o (rows x rows, the same kind over the output): the weight
 *                          was stored as R_o W (R_o = T diag(d_o) as a
 *                          column-vector map), and the output is rotated
 *                          back, y <- R_o^T y as a column vector, before
 *                          the bias is added (incoherence processing on
 *                          both sides, QuIP#)
 *   outliers  S (rows x cols) sparse, CSR: added to the dequantized weight
 *   adapter   A (rank x cols), B (rows x rank), alpha: low-rank term added
 *                          to the weight, alpha B A
 *   bias      b (rows)     added to the output
 *
 * With x row vectors (x: (n, cols)), lb_linear_forward computes
 *
 *   x' = (x / s) R                                   input transforms, in this order
 *   x' = Q(x')                                       activation quantizer, when set (act)
 *   y  = (x' W^T  +  x' S^T  +  alpha (x' A^T) B^T) R_o  +  b
 *
 * so outliers and adapter live in the same basis as the stored weight (the
 * effective matrix is W + S + alpha B A), and a layer whose original weight
 * is W0 computes y = x W0^T + b when it stores W = R_o W0 diag(s) R (see
 * lb_linear_transform_weight), R_o = T diag(d_o) as for the input. Each stored row of W went through the
 * input's transforms with s multiplied instead of divided.
 *
 * Ownership: a linear owns its slot arrays (the setters copy their
 * arguments; lb_linear_free releases them) and its weight tensor (freed with
 * lb_tensor_free, which leaves views into a mapped file alone). */
typedef enum {
    LB_ROTATION_NONE,
    LB_ROTATION_HADAMARD, /* randomized Walsh-Hadamard: signs + FWHT */
    /* LB_ROTATION_DENSE (a stored orthonormal matrix) can be added here */
} lb_rotation_kind;

typedef struct {
    lb_rotation_kind kind;
    float *signs; /* HADAMARD: (cols; out_rot: rows), each +1 or -1 */
} lb_rotation;

typedef struct {
    int64_t nnz;       /* 0: no outliers */
    int32_t *row_ptr;  /* (rows + 1), row_ptr[0] = 0, row_ptr[rows] = nnz, non-decreasing */
    int32_t *col_idx;  /* (nnz), each in 0..cols-1 */
    float *values;     /* (nnz), fp32 */
} lb_outliers;

typedef struct {
    int rank;    /* 0: no adapter */
    float *a;    /* (rank, cols) */
    float *b;    /* (rows, rank) */
    float alpha;
} lb_adapter;

/* Activation quantization: the transformed input x' is quantized to
 * symmetric b-bit integers (levels -qmax..qmax, qmax = 2^(b-1) - 1, step
 * delta) and dequantized before the matmul:
 *
 *   LB_AQ_TOKEN   dynamic, per row of x': delta = max_j |x'_j| / qmax
 *   LB_AQ_TENSOR  static, one threshold for the layer (from calibration):
 *                  delta = clip / qmax, x' clipped to [-clip, clip]
 *
 *   x'_hat = delta * clamp(round(x' / delta), -qmax, qmax)   (round half away from 0)
 *
 * This is SIMULATED quantization (quantize-dequantize, then the weight's
 * usual kernel): the reference path the tests check integer kernels
 * against once they exist. `rule` and `percentile` record how a static
 * clip was chosen (src/calib/act_range.c); they do not change the forward.
 * Spec text (lb_act_spec_parse): "none", "int<b>:token", or
 * "int<b>:tensor[:minmax|:p<P>|:kl|:mse]" (b = 4..8; P in [50, 100]). */
typedef enum { LB_AQ_NONE, LB_AQ_TOKEN, LB_AQ_TENSOR } lb_act_quant_kind;
typedef enum {
    LB_ACT_RANGE_MINMAX,     /* max |x| seen */
    LB_ACT_RANGE_PERCENTILE, /* the P-th percentile of |x| */
    LB_ACT_RANGE_KL,         /* TensorRT entropy calibration */
    LB_ACT_RANGE_MSE         /* least expected squared error (rounding + clipping) */
} lb_act_range_rule;

typedef struct {
    lb_act_quant_kind kind;
    int bits;               /* 4..8 (TOKEN and TENSOR) */
    lb_act_range_rule rule; /* TENSOR: how clip was chosen */
    double percentile;      /* LB_ACT_RANGE_PERCENTILE: P */
    float clip;             /* TENSOR: the threshold (> 0 once calibrated; 0 in a parsed spec) */
} lb_act_quant;

/* Text -> spec (clip = 0); bad text fails with LB_ERR_INVALID saying what
 * is allowed. */
LB_API lb_status lb_act_spec_parse(const char *text, lb_act_quant *out);
/* The canonical text ("int8:token", "int8:tensor:p99.99"), clip not included. */
LB_API void lb_act_spec_format(const lb_act_quant *a, char *buf, size_t n);
/* Checks kind, bits, rule and (TENSOR, need_clip) a finite clip > 0. */
LB_API lb_status lb_act_check(const lb_act_quant *a, int need_clip);
/* out (n x cols) = x quantized and dequantized as above (may alias). */
LB_API lb_status lb_act_quantize_rows(const lb_act_quant *a, const float *x, int n, int cols, float *out);

typedef struct {
    lb_tensor w;          /* (rows=out, cols=in), any format */
    float *bias;          /* (rows) or NULL */
    float *in_scale;      /* (cols) or NULL */
    lb_rotation rot;
    lb_rotation out_rot;  /* over the output (rows) */
    lb_outliers outliers;
    lb_adapter adapter;
    lb_act_quant act;     /* kind LB_AQ_NONE: x' stays float */
} lb_linear;

/* Takes over w (its bytes now belong to the linear: do not free w after)
 * with every slot empty. */
LB_API void lb_linear_init(lb_linear *L, const lb_tensor *w);
/* Releases the slots and the weight; leaves an empty linear. */
LB_API void lb_linear_free(lb_linear *L);
/* Replaces the weight (freeing the old one) with w, which must have the same
 * shape and be resolved (lb_quantize_to_tensor's output is); the slots stay.
 * Takes over w on success; on failure L and w are unchanged. */
LB_API lb_status lb_linear_set_weight(lb_linear *L, const lb_tensor *w);

/* Setters copy their arguments after checking them (sizes, finite values);
 * NULL (or rank / nnz 0) removes the slot. On failure L is unchanged. */
LB_API lb_status lb_linear_set_bias(lb_linear *L, const float *bias /* rows */);
LB_API lb_status lb_linear_set_in_scale(lb_linear *L, const float *scale /* cols, finite, nonzero */);
LB_API lb_status lb_linear_set_hadamard(lb_linear *L, const float *signs /* cols, +1 or -1 */);
LB_API lb_status lb_linear_set_out_hadamard(lb_linear *L, const float *signs /* rows, +1 or -1 */);
LB_API lb_status lb_linear_set_outliers(lb_linear *L, int64_t nnz, const int32_t *row_ptr, const int32_t *col_idx,
                                 const float *values);
LB_API lb_status lb_linear_set_adapter(lb_linear *L, int rank, const float *a, const float *b, float alpha);
/* The activation quantizer (NULL or kind LB_AQ_NONE removes it); a
 * TENSOR one needs its calibrated clip. */
LB_API lb_status lb_linear_set_act(lb_linear *L, const lb_act_quant *a);
/* Checks every present slot against the weight's shape and for NaN / Inf
 * (for linears whose fields were filled directly). */
LB_API lb_status lb_linear_validate(const lb_linear *L);
/* 1 when any slot is present. */
LB_API int lb_linear_has_slots(const lb_linear *L);
/* Bytes the slots take as a GGUF file stores them (lb_linear_slot_layout:
 * fp16 where every value fits, compact outlier indices; a static activation
 * quantizer's clip counts as one f32), which is what bpw counts. */
LB_API size_t lb_linear_slot_bytes(const lb_linear *L);

#ifdef LB_ADVANCED_API /* for extending lowbit (methods, formats, tools); not a stable API */
/* How a linear's bias, outliers and adapter are stored (src/model/model_gguf.c):
 * the smallest form that holds them exactly. */
typedef struct {
    int bias_bytes;  /* per bias value: 2 (fp16: every value exact in fp16) or 4 (f32) */
    int value_bytes; /* per outlier value: 2 or 4, the same rule */
    int pos16;       /* 1: one u16 flat position r * cols + c per outlier (rows x cols <= 65536) */
    int count_bytes; /* pos16 = 0: per-row counts of 1 (u8, every row <= 255) or 2 (u16) bytes, or 4: an
                      * i32 row_ptr of rows + 1 entries */
    int col_bytes;   /* pos16 = 0: per outlier column 2 (u16, cols <= 65536) or 4 (i32) bytes */
    int adapter_bytes; /* per adapter value (A and B): 2 (f16: every value exact) or 4 (f32) */
} lb_slot_layout;
LB_API void lb_linear_slot_layout(const lb_linear *L, lb_slot_layout *out);
#endif

/* x' = (x / s) R: the input the stored weight reads (x, out: (n, cols); may
 * alias). This is what a quantizer of L->w should collect statistics on. */
LB_API lb_status lb_linear_transform_input(const lb_linear *L, const float *x, int n, float *out);
/* W0 (rows x cols, in place) -> R_o W0 diag(s) R: the weight to store so
 * that the linear computes x W0^T. */
LB_API lb_status lb_linear_transform_weight(const lb_linear *L, float *w, int64_t rows);

/* y (n x rows) = the formula above. cache is used for the weight only when
 * the linear has no input transform (the weight then reads x itself, the
 * input the cache was prepared for); may be NULL. */
LB_API lb_status lb_linear_forward(const lb_linear *L, const float *x, int n, float *y, lb_act_cache *cache);

#ifdef __cplusplus
}
#endif
#endif
