/* lowbit linears: y = x W^T for a weight stored in any format.
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

typedef struct lb_act_cache lb_act_cache;
/* For inputs of up to max_rows x max_cols floats. */
lb_status lb_act_cache_create(int max_rows, int max_cols, lb_act_cache **out);
void lb_act_cache_free(lb_act_cache *c);
/* Forgets every prepared form: call whenever the input x changes. */
void lb_act_cache_reset(lb_act_cache *c);

/* y (n x rows) = x (n x cols) W^T. cache may be NULL (nothing shared). */
lb_status lb_matmul(const lb_tensor *w, const float *x, int n, float *y, lb_act_cache *cache);

#ifdef __cplusplus
}
#endif
#endif
