/* AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization",
 * ICLR 2019), the learning-rate schedule and global-norm gradient clipping.
 *
 * Per parameter p with gradient g at step t = 1, 2, ...:
 *   m = b1 m + (1 - b1) g,   v = b2 v + (1 - b2) g^2,
 *   p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) + lr wd p.
 * The decay is decoupled (applied to p, not added to g), as PyTorch's AdamW
 * (which writes it p *= 1 - lr wd before the Adam update: the same value).
 * Norm weights are not decayed (lb_train_tensor.decay). */
#include <math.h>
#include <string.h>

#include "train/train_internal.h"

#define PAR_MIN (1L << 20) /* parameters below which a parallel region costs more than it saves */

lb_status lb_adamw_init(lb_adamw *a, size_t n) {
    memset(a, 0, sizeof *a);
    a->m = lb_calloc(n, sizeof(float));
    a->v = lb_calloc(n, sizeof(float));
    if (!a->m || !a->v) {
        lb_adamw_free(a);
        return lb_fail(LB_ERR_NOMEM, "out of memory for AdamW's moments (%zu parameters)", n);
    }
    a->n = n;
    return LB_OK;
}

void lb_adamw_free(lb_adamw *a) {
    lb_free(a->m);
    lb_free(a->v);
    memset(a, 0, sizeof *a);
}

void lb_adamw_step(lb_adamw *a, float *params, const float *grads, const lb_train_tensor *tensors, int n_tensors,
                   float lr, const lb_adamw_opts *o) {
    a->t++;
    /* bias corrections in double: 1 - b2^t is tiny early on */
    float c1 = (float)(1.0 - pow(o->beta1, (double)a->t)), c2 = (float)(1.0 - pow(o->beta2, (double)a->t));
    for (int i = 0; i < n_tensors; i++) {
        const lb_train_tensor *t = &tensors[i];
        size_t off = t->offset, n = (size_t)(t->rows * t->cols);
        float wd = t->decay ? o->weight_decay : 0.0f;
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
        for (size_t j = off; j < off + n; j++) {
            float g = grads[j];
            float m = a->m[j] = o->beta1 * a->m[j] + (1.0f - o->beta1) * g;
            float v = a->v[j] = o->beta2 * a->v[j] + (1.0f - o->beta2) * g * g;
            float mhat = m / c1, vhat = v / c2;
            params[j] -= lr * (mhat / (sqrtf(vhat) + o->eps) + wd * params[j]);
        }
    }
}

double lb_grad_clip(float *grads, size_t n, double max_norm) {
    double ss = 0.0;
    for (size_t i = 0; i < n; i++) ss += (double)grads[i] * grads[i];
    double norm = sqrt(ss);
    if (max_norm > 0 && norm > max_norm) {
        float s = (float)(max_norm / norm);
        for (size_t i = 0; i < n; i++) grads[i] *= s;
    }
    return norm;
}

float lb_lr_schedule(int step, int total, int warmup, float lr_max, float lr_min) {
    if (step < warmup) return lr_max * (float)(step + 1) / (float)warmup;
    int span = total - 1 - warmup;
    double progress = span > 0 ? (double)(step - warmup) / span : 0.0; /* one step after warm-up: lr_max */
    if (progress > 1.0) progress = 1.0;
    const double pi = 3.14159265358979323846;
    return (float)(lr_min + 0.5 * (lr_max - lr_min) * (1.0 + cos(pi * progress)));
}
