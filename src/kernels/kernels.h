/* Kernel table: every kernel has a scalar reference in ref/ (the
 * specification) and optional SIMD versions chosen once at start-up from
 * the CPU's features. Tests compare each SIMD kernel with its reference. */
#ifndef LB_KERNELS_H
#define LB_KERNELS_H

#include "lowbit/core.h"

/* y[i*ldy + j] = sum_c x[i*ldx + c] * w[j*ldw + c], for i < n, j < m, c < k:
 * n activation rows times m weight rows (both row-major, "NT" GEMM). */
typedef void (*lb_gemm_nt_fn)(int n, int m, int k, const float *x, int ldx, const float *w, int ldw, float *y,
                              int ldy);

/* One attention head for one query over n_ctx cached positions:
 * att[t] = softmax_t(scale * sum_d q[d] kt[d * kt_stride + t]),
 * out[d] = sum_t att[t] v[t * v_stride + d]; att is scratch (n_ctx). */
typedef void (*lb_attend_fn)(const float *q, const float *kt, size_t kt_stride, const float *v, size_t v_stride,
                             int n_ctx, int hd, float scale, float *att, float *out);

/* g[i] = silu(g[i]) * u[i]: SwiGLU's gate */
typedef void (*lb_silu_mul_fn)(float *g, const float *u, size_t n);

typedef struct {
    const char *name;
    lb_gemm_nt_fn gemm_nt;
    lb_attend_fn attend;
    lb_silu_mul_fn silu_mul;
} lb_kernel_table;

void lb_gemm_nt_ref(int n, int m, int k, const float *x, int ldx, const float *w, int ldw, float *y, int ldy);
void lb_attend_ref(const float *q, const float *kt, size_t kt_stride, const float *v, size_t v_stride, int n_ctx,
                   int hd, float scale, float *att, float *out);
void lb_silu_mul_ref(float *g, const float *u, size_t n);
#if defined(__x86_64__)
void lb_gemm_nt_avx2(int n, int m, int k, const float *x, int ldx, const float *w, int ldw, float *y, int ldy);
void lb_attend_avx2(const float *q, const float *kt, size_t kt_stride, const float *v, size_t v_stride, int n_ctx,
                    int hd, float scale, float *att, float *out);
void lb_silu_mul_avx2(float *g, const float *u, size_t n);
#endif

/* The best table for this CPU (LB_CPU=generic forces the reference). */
const lb_kernel_table *lb_kernels(void);
const lb_kernel_table *lb_kernels_reference(void);

#endif
