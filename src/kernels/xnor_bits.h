/* XNOR-popcount GEMM on plain packed sign bits, for small binary networks
 * (src/train/mnist*.c): rows of `cols` signs packed 64 per uint64, bit j of
 * word j / 64 set when value j is +1 (>= 0), bits past cols zero. For +-1
 * vectors a and w, sum_j a_j w_j = cols - 2 popcount(a xor w) (the zero
 * padding agrees in both, so it never counts): an exact integer.
 *
 * This is not the LLM's XNOR kernel (ref/xnor_ref.c, x86/xnor_avx2.c): that
 * one reads lowbin-packed lb_tensor rows (32-column blocks, fp16 group
 * scales) and returns beta * alpha-scaled floats; here the integers
 * themselves are the result, so a batch-norm threshold can follow exactly.
 * The SIMD twin is chosen at run time from lb_cpu_features (LB_CPU=generic
 * forces the scalar one), a small local dispatch instead of the kernel
 * registry, which is built around lb_tensor formats. */
#ifndef LB_KERNELS_XNOR_BITS_H
#define LB_KERNELS_XNOR_BITS_H

#include <stdint.h>

#include "lowbit/core.h"

/* words per packed row of cols signs */
static inline int lb_xnor_words(int cols) { return (cols + 63) / 64; }

/* bits (n, words): row i's signs of x (n, cols, row stride ldx): bit set where x >= 0 */
void lb_xnor_pack(const float *x, int n, int cols, int ldx, uint64_t *bits);

/* out[i * ldo + o] = cols - 2 popcount(a_i xor w_o), i < n, o < m;
 * a (n, words), w (m, words), words = lb_xnor_words(cols). */
typedef void (*lb_xnor_gemm_fn)(const uint64_t *a, int n, const uint64_t *w, int m, int cols, int32_t *out, int ldo);
void lb_xnor_gemm_ref(const uint64_t *a, int n, const uint64_t *w, int m, int cols, int32_t *out, int ldo);
#if defined(__x86_64__)
void lb_xnor_gemm_avx2(const uint64_t *a, int n, const uint64_t *w, int m, int cols, int32_t *out, int ldo);
#endif
#if defined(__aarch64__)
void lb_xnor_gemm_neon(const uint64_t *a, int n, const uint64_t *w, int m, int cols, int32_t *out, int ldo);
#endif

/* The kernel this CPU runs ("avx2", "neon" or "scalar" in *name). */
lb_xnor_gemm_fn lb_xnor_gemm_select(const char **name);
/* The selected kernel over rows of a split between threads (OpenMP). */
void lb_xnor_gemm(const uint64_t *a, int n, const uint64_t *w, int m, int cols, int32_t *out, int ldo);

#endif
