/* The transformer's ops besides matmul and attention, as shaped functions
 * over a batch of rows (llm.c style: <op>_forward now, <op>_backward beside
 * it when training arrives). Scalar references in ref/; each is the
 * specification a SIMD version would be tested against. */
#ifndef LB_KERNELS_NN_H
#define LB_KERNELS_NN_H

#include "lowbit/core.h"

/* out[i] = weight * x[i] / sqrt(mean(x[i]^2) + eps) for each of n_rows rows.
 * out, x: (n_rows, dim), may alias; weight: (dim). Accumulates in one float
 * in column order, as llama2.c does. */
void lb_rmsnorm_forward(float *out, const float *x, const float *weight, int n_rows, int dim, float eps);

/* Rotary embedding on consecutive pairs, in place: row i is at position
 * pos + i. q: (n_rows, dim), k: (n_rows, kv_dim), kv_dim <= dim; both split
 * into heads of head_dim; cos_t, sin_t: (positions, head_dim / 2). */
void lb_rope_forward(float *q, float *k, int n_rows, int dim, int kv_dim, int head_dim, int pos, const float *cos_t,
                     const float *sin_t);

#endif
