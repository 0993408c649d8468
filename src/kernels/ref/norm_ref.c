/* RMSNorm, forward (reference). */
#include <math.h>

#include "kernels/nn.h"

void lb_rmsnorm_forward(float *out, const float *x, const float *weight, int n_rows, int dim, float eps) {
    for (int i = 0; i < n_rows; i++) {
        const float *xi = x + (size_t)i * dim;
        float *o = out + (size_t)i * dim;
        float ss = 0.0f;
        for (int j = 0; j < dim; j++) ss += xi[j] * xi[j];
        ss = 1.0f / sqrtf(ss / (float)dim + eps);
        for (int j = 0; j < dim; j++) o[j] = weight[j] * (ss * xi[j]);
    }
}
