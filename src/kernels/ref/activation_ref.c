/* Reference attention head and SwiGLU gate, with llama2.c's float
 * arithmetic: the specification of the SIMD versions. */
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"

void lb_attend_ref(const float *q, const float *kt, size_t kt_stride, const float *v, size_t v_stride, int n_ctx,
                   int hd, float scale, float *att, float *out) {
    for (int t = 0; t < n_ctx; t++) att[t] = 0.0f;
    for (int d = 0; d < hd; d++)
        for (int t = 0; t < n_ctx; t++) att[t] += q[d] * kt[(size_t)d * kt_stride + t];
    float max = -INFINITY, sum = 0.0f;
    for (int t = 0; t < n_ctx; t++) {
        att[t] *= scale;
        max = att[t] > max ? att[t] : max;
    }
    for (int t = 0; t < n_ctx; t++) {
        att[t] = expf(att[t] - max);
        sum += att[t];
    }
    for (int t = 0; t < n_ctx; t++) att[t] /= sum;
    memset(out, 0, (size_t)hd * sizeof(float));
    for (int t = 0; t < n_ctx; t++)
        for (int d = 0; d < hd; d++) out[d] += att[t] * v[(size_t)t * v_stride + d];
}

void lb_silu_mul_ref(float *g, const float *u, size_t n) {
    for (size_t i = 0; i < n; i++) g[i] = g[i] * (1.0f / (1.0f + expf(-g[i]))) * u[i];
}
