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
lb_status lb_act_cache_create(int max_rows, int max_cols, lb_act_cache **out);
void lb_act_cache_free(lb_act_cache *c); /* NULL is fine */
/* Forgets every prepared form: call whenever the input x changes. */
void lb_act_cache_reset(lb_act_cache *c);

/* Name of the registry kernel lb_matmul uses for w on this CPU (chosen on
 * first use and cached on the tensor), e.g. "q8_0_avx2", "f32_avx2",
 * "dequant_ref". Environment: LB_CPU=generic allows only scalar kernels;
 * LB_KERNEL=fallback allows only the generic ones (float GEMM, dequantize a
 * tile then float GEMM: the path before format kernels, for measurement);
 * LB_KERNEL=<name> forces that kernel wherever it applies. */
const char *lb_matmul_kernel_name(const lb_tensor *w);

/* y (n x rows) = x (n x cols) W^T. cache may be NULL (nothing shared). */
lb_status lb_matmul(const lb_tensor *w, const float *x, int n, float *y, lb_act_cache *cache);

#ifdef __cplusplus
}
#endif
#endif
