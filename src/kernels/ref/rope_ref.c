/* Rotary position embedding, forward (reference): consecutive pairs
 * (x[2j], x[2j+1]) of each head rotated by the angle of frequency j, as in
 * llama2.c's run.c. */
#include "kernels/nn.h"

void lb_rope_forward(float *q, float *k, int n_rows, int dim, int kv_dim, int head_dim, int pos, const float *cos_t,
                     const float *sin_t) {
    int half = head_dim / 2;
    for (int r = 0; r < n_rows; r++) {
        float *qr = q + (size_t)r * dim, *kr = k + (size_t)r * kv_dim;
        const float *cs = cos_t + (size_t)(pos + r) * half, *sn = sin_t + (size_t)(pos + r) * half;
        for (int i = 0; i < dim; i += 2) {
            int j = (i % head_dim) / 2;
            float fcr = cs[j], fci = sn[j];
            float q0 = qr[i], q1 = qr[i + 1];
            qr[i] = q0 * fcr - q1 * fci;
            qr[i + 1] = q0 * fci + q1 * fcr;
            if (i < kv_dim) {
                float k0 = kr[i], k1 = kr[i + 1];
                kr[i] = k0 * fcr - k1 * fci;
                kr[i + 1] = k0 * fci + k1 * fcr;
            }
        }
    }
}
