/* Training ops, forward and backward side by side (see ops.h for the
 * conventions: backwards add into input gradients; deterministic whatever
 * the thread count). The derivations are in docs/TRAINING.md. */
#include "train/ops.h"

#include <math.h>
#include <string.h>

#include "core/blas_threads.h"
#include "kernels/nn.h"

#ifdef LB_HAVE_BLAS
#include <cblas.h>
#endif

/* Work (multiply-adds, or elements) below which a parallel region costs
 * more than it saves: the barrier at its end is microseconds on an idle
 * machine and a scheduler time slice on a loaded one. */
#define PAR_MIN (1L << 20)

/* ---- embedding ------------------------------------------------------------ */

void lb_train_embedding_forward(float *x, const int *tokens, int N, const float *embd, int dim) {
    for (int i = 0; i < N; i++)
        memcpy(x + (size_t)i * dim, embd + (size_t)tokens[i] * dim, (size_t)dim * sizeof(float));
}

/* rows in order: a token used twice sums its rows in a fixed order */
void lb_train_embedding_backward(float *dembd, const float *dx, const int *tokens, int N, int dim) {
    for (int i = 0; i < N; i++) {
        float *d = dembd + (size_t)tokens[i] * dim;
        const float *g = dx + (size_t)i * dim;
        for (int j = 0; j < dim; j++) d[j] += g[j];
    }
}

/* ---- RMSNorm -------------------------------------------------------------- */

/* The same float arithmetic as kernels/ref/norm_ref.c (sum of squares in
 * column order, then w * (r * x)), keeping r for the backward. */
void lb_train_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int N, int dim, float eps) {
#pragma omp parallel for schedule(static) if ((long)N * dim > PAR_MIN)
    for (int i = 0; i < N; i++) {
        const float *xi = x + (size_t)i * dim;
        float *o = out + (size_t)i * dim;
        float ss = 0.0f;
        for (int j = 0; j < dim; j++) ss += xi[j] * xi[j];
        float r = 1.0f / sqrtf(ss / (float)dim + eps);
        rstd[i] = r;
        for (int j = 0; j < dim; j++) o[j] = w[j] * (r * xi[j]);
    }
}

/* y_j = w_j r x_j with r = (mean(x^2) + eps)^(-1/2), dr/dx_k = -r^3 x_k / dim:
 * dx_k = r w_k dy_k - (r^3 / dim) x_k sum_j dy_j w_j x_j. */
void lb_train_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                               const float *rstd, int N, int dim) {
#pragma omp parallel for schedule(static) if ((long)N * dim > PAR_MIN)
    for (int i = 0; i < N; i++) {
        const float *xi = x + (size_t)i * dim, *dy = dout + (size_t)i * dim;
        float *dxi = dx + (size_t)i * dim;
        float r = rstd[i], dot = 0.0f;
        for (int j = 0; j < dim; j++) dot += dy[j] * w[j] * xi[j];
        float c = r * r * r * dot / (float)dim;
        for (int j = 0; j < dim; j++) dxi[j] += r * w[j] * dy[j] - c * xi[j];
    }
    for (int i = 0; i < (dw ? N : 0); i++) { /* serial: rows add into one dw in row order */
        const float *xi = x + (size_t)i * dim, *dy = dout + (size_t)i * dim;
        for (int j = 0; j < dim; j++) dw[j] += dy[j] * xi[j] * rstd[i];
    }
}

/* ---- linear (matmul) ------------------------------------------------------ */

#ifdef LB_HAVE_BLAS
/* C (M, N) = op(A) op(B) + beta C, row-major, op(A) (M, K), op(B) (K, N), as
 * fixed blocks of GEMM_ROWS rows of C, one single-threaded GEMM per block,
 * blocks spread over OpenMP threads. OpenBLAS's own threading splits work
 * by its thread count, and its results change with it; these blocks are
 * the same calls whatever the thread count, so the result is too. */
#define GEMM_ROWS 64
static void gemm_blocks(int trans_a, int trans_b, int M, int N, int K, const float *A, int lda, const float *B,
                        int ldb, float beta, float *C, int ldc) {
    int blocks = (M + GEMM_ROWS - 1) / GEMM_ROWS;
    int blas_threads = lb_blas_threads_single();
#pragma omp parallel for schedule(static) if (blocks > 1 && (long)M * N * K > PAR_MIN)
    for (int blk = 0; blk < blocks; blk++) {
        int r0 = blk * GEMM_ROWS, m = M - r0 < GEMM_ROWS ? M - r0 : GEMM_ROWS;
        /* rows r0.. of op(A): rows of A, or columns of A when transposed */
        const float *Ab = trans_a ? A + r0 : A + (size_t)r0 * lda;
        cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, N, K,
                    1.0f, Ab, lda, B, ldb, beta, C + (size_t)r0 * ldc, ldc);
    }
    lb_blas_threads_restore(blas_threads);
}
#endif

void lb_train_matmul_forward(float *y, const float *x, const float *w, int N, int in, int out) {
#ifdef LB_HAVE_BLAS
    gemm_blocks(0, 1, N, out, in, x, in, w, in, 0.0f, y, out);
#else
#pragma omp parallel for schedule(static) if ((long)N * in * out > PAR_MIN)
    for (int i = 0; i < N; i++)
        for (int o = 0; o < out; o++) {
            const float *xi = x + (size_t)i * in, *wo = w + (size_t)o * in;
            float s = 0.0f;
            for (int j = 0; j < in; j++) s += xi[j] * wo[j];
            y[(size_t)i * out + o] = s;
        }
#endif
}

void lb_train_matmul_backward(float *dx, float *dw, const float *dy, const float *x, const float *w, int N, int in,
                              int out) {
#ifdef LB_HAVE_BLAS
    if (dx) gemm_blocks(0, 0, N, in, out, dy, out, w, in, 1.0f, dx, in); /* dx (N, in) += dy (N, out) w (out, in) */
    if (dw) gemm_blocks(1, 0, out, in, N, dy, out, x, in, 1.0f, dw, in); /* dw (out, in) += dy^T x */
#else
    if (dx) {
#pragma omp parallel for schedule(static) if ((long)N * in * out > PAR_MIN)
        for (int i = 0; i < N; i++) {
            float *dxi = dx + (size_t)i * in;
            const float *dyi = dy + (size_t)i * out;
            for (int o = 0; o < out; o++) {
                const float *wo = w + (size_t)o * in;
                for (int j = 0; j < in; j++) dxi[j] += dyi[o] * wo[j];
            }
        }
    }
#pragma omp parallel for schedule(static) if ((long)N * in * out > PAR_MIN && dw)
    for (int o = 0; o < (dw ? out : 0); o++) {
        float *dwo = dw + (size_t)o * in;
        for (int i = 0; i < N; i++) {
            float g = dy[(size_t)i * out + o];
            const float *xi = x + (size_t)i * in;
            for (int j = 0; j < in; j++) dwo[j] += g * xi[j];
        }
    }
#endif
}

/* ---- RoPE ----------------------------------------------------------------- */

/* Each sequence runs positions 0..T-1 through the inference kernel itself,
 * so the rotation is bit-for-bit forward.c's. */
void lb_train_rope_forward(float *q, float *k, int B, int T, int q_dim, int kv_dim, int head_dim, const float *cos_t,
                           const float *sin_t) {
    for (int b = 0; b < B; b++)
        lb_rope_forward(q + (size_t)b * T * q_dim, k + (size_t)b * T * kv_dim, T, q_dim, kv_dim, head_dim, 0, cos_t,
                        sin_t);
}

/* (y0, y1) = (x0 c - x1 s, x0 s + x1 c) has Jacobian R(theta); the input
 * gradient is R^T dy = (dy0 c + dy1 s, -dy0 s + dy1 c). */
static void rope_rows_backward(float *d, int width, int head_dim, const float *cs, const float *sn) {
    for (int i = 0; i < width; i += 2) {
        int j = (i % head_dim) / 2;
        float c = cs[j], s = sn[j], d0 = d[i], d1 = d[i + 1];
        d[i] = d0 * c + d1 * s;
        d[i + 1] = -d0 * s + d1 * c;
    }
}

void lb_train_rope_backward(float *dq, float *dk, int B, int T, int q_dim, int kv_dim, int head_dim,
                            const float *cos_t, const float *sin_t) {
    int half = head_dim / 2;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            size_t row = (size_t)b * T + t;
            const float *cs = cos_t + (size_t)t * half, *sn = sin_t + (size_t)t * half;
            rope_rows_backward(dq + row * q_dim, q_dim, head_dim, cs, sn);
            rope_rows_backward(dk + row * kv_dim, kv_dim, head_dim, cs, sn);
        }
}

/* ---- attention -------------------------------------------------------------- */

/* One thread per (sequence, q-head); the arithmetic of kernels/ref's
 * attend (scores summed over d in order, scaled, max-subtracted exp, divided
 * by the sum; outputs summed over t in order). */
void lb_train_attention_forward(float *out, float *att, const float *q, const float *k, const float *v, int B, int T,
                                int n_heads, int n_kv, int hd) {
    int q_dim = n_heads * hd, kv_dim = n_kv * hd, group = n_heads / n_kv;
    float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel for collapse(2) schedule(static) if ((long)B * T * T * q_dim > PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < n_heads; h++) {
            const float *kb = k + (size_t)b * T * kv_dim + (size_t)(h / group) * hd;
            const float *vb = v + (size_t)b * T * kv_dim + (size_t)(h / group) * hd;
            for (int i = 0; i < T; i++) {
                const float *qi = q + ((size_t)b * T + i) * q_dim + (size_t)h * hd;
                float *a = att + (((size_t)b * n_heads + h) * T + i) * T;
                float *o = out + ((size_t)b * T + i) * q_dim + (size_t)h * hd;
                float max = -INFINITY, sum = 0.0f;
                for (int t = 0; t <= i; t++) {
                    const float *kt = kb + (size_t)t * kv_dim;
                    float s = 0.0f;
                    for (int d = 0; d < hd; d++) s += qi[d] * kt[d];
                    a[t] = s * scale;
                    max = a[t] > max ? a[t] : max;
                }
                for (int t = 0; t <= i; t++) {
                    a[t] = expf(a[t] - max);
                    sum += a[t];
                }
                for (int t = 0; t <= i; t++) a[t] /= sum;
                for (int t = i + 1; t < T; t++) a[t] = 0.0f;
                memset(o, 0, (size_t)hd * sizeof(float));
                for (int t = 0; t <= i; t++) {
                    const float *vt = vb + (size_t)t * kv_dim;
                    for (int d = 0; d < hd; d++) o[d] += a[t] * vt[d];
                }
            }
        }
}

/* For row i of one head, with p = att[i], s = scaled scores, o = sum_t p_t v_t:
 *   dp_t = do . v_t,   dv_t += p_t do,
 *   ds_t = p_t (dp_t - sum_u p_u dp_u)   (softmax's Jacobian),
 *   dq_i += scale sum_t ds_t k_t,   dk_t += scale ds_t q_i.
 * The q-heads sharing a kv-head all add into its dk, dv: one thread per
 * (sequence, kv-head) runs them in order, so nothing races and the sums'
 * order is fixed. */
lb_status lb_train_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                                      const float *k, const float *v, const float *att, int B, int T, int n_heads,
                                      int n_kv, int hd) {
    int q_dim = n_heads * hd, kv_dim = n_kv * hd, group = n_heads / n_kv;
    float scale = 1.0f / sqrtf((float)hd);
    int failed = 0;
#pragma omp parallel if ((long)B * T * T * q_dim > PAR_MIN)
    {
        float *ds = lb_alloc((size_t)T * sizeof(float));
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int g = 0; g < n_kv; g++) {
                if (!ds) { /* lb_fail here would set a worker thread's message: report below */
#pragma omp atomic write
                    failed = 1;
                    continue;
                }
                size_t kv_off = (size_t)b * T * kv_dim + (size_t)g * hd;
                for (int h = g * group; h < (g + 1) * group; h++)
                    for (int i = 0; i < T; i++) {
                        size_t qrow = ((size_t)b * T + i) * q_dim + (size_t)h * hd;
                        const float *a = att + (((size_t)b * n_heads + h) * T + i) * T;
                        const float *doi = dout + qrow, *qi = q + qrow;
                        float *dqi = dq + qrow;
                        float pdp = 0.0f;
                        for (int t = 0; t <= i; t++) {
                            const float *vt = v + kv_off + (size_t)t * kv_dim;
                            float *dvt = dv + kv_off + (size_t)t * kv_dim;
                            float dp = 0.0f;
                            for (int d = 0; d < hd; d++) {
                                dp += doi[d] * vt[d];
                                dvt[d] += a[t] * doi[d];
                            }
                            ds[t] = dp;
                            pdp += a[t] * dp;
                        }
                        for (int t = 0; t <= i; t++) {
                            float dst = a[t] * (ds[t] - pdp) * scale;
                            const float *kt = k + kv_off + (size_t)t * kv_dim;
                            float *dkt = dk + kv_off + (size_t)t * kv_dim;
                            for (int d = 0; d < hd; d++) {
                                dqi[d] += dst * kt[d];
                                dkt[d] += dst * qi[d];
                            }
                        }
                    }
            }
        lb_free(ds);
    }
    return failed ? lb_fail(LB_ERR_NOMEM, "out of memory for attention's backward scratch") : LB_OK;
}

/* ---- SwiGLU ----------------------------------------------------------------- */

/* as kernels/ref's silu_mul: g * (1 / (1 + exp(-g))) * u */
void lb_train_swiglu_forward(float *h, const float *g, const float *u, size_t n) {
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) h[i] = g[i] * (1.0f / (1.0f + expf(-g[i]))) * u[i];
}

void lb_train_swiglu_backward(float *dg, float *du, const float *dh, const float *g, const float *u, size_t n) {
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float sig = 1.0f / (1.0f + expf(-g[i]));
        float silu = g[i] * sig;
        dg[i] += dh[i] * u[i] * sig * (1.0f + g[i] * (1.0f - sig));
        du[i] += dh[i] * silu;
    }
}

/* ---- softmax cross-entropy ----------------------------------------------- */

/* -log p(y) = log sum_j exp(z_j - max) - (z_y - max), in double; each row's
 * loss goes to row_nll and the total is summed in row order afterwards (a
 * parallel reduction's order would depend on the thread count). */
double lb_train_cross_entropy_forward(float *logits_to_probs, double *row_nll, const int *targets, int N, int V,
                                      int *scored) {
#pragma omp parallel for schedule(static) if ((long)N * V > PAR_MIN)
    for (int i = 0; i < N; i++) {
        float *z = logits_to_probs + (size_t)i * V;
        float max = z[0];
        for (int j = 1; j < V; j++) max = z[j] > max ? z[j] : max;
        double sum = 0.0;
        for (int j = 0; j < V; j++) sum += exp((double)z[j] - max);
        row_nll[i] = targets[i] >= 0 ? log(sum) - ((double)z[targets[i]] - max) : 0.0;
        for (int j = 0; j < V; j++) z[j] = (float)(exp((double)z[j] - max) / sum);
    }
    double total = 0.0;
    int count = 0;
    for (int i = 0; i < N; i++)
        if (targets[i] >= 0) {
            total += row_nll[i];
            count++;
        }
    *scored = count;
    return total;
}

void lb_train_cross_entropy_backward(float *dlogits, const float *probs, const int *targets, int N, int V, float scale) {
#pragma omp parallel for schedule(static) if ((long)N * V > PAR_MIN)
    for (int i = 0; i < N; i++) {
        const float *p = probs + (size_t)i * V;
        float *d = dlogits + (size_t)i * V;
        if (targets[i] < 0) {
            memset(d, 0, (size_t)V * sizeof(float));
            continue;
        }
        for (int j = 0; j < V; j++) d[j] = scale * p[j];
        d[targets[i]] -= scale;
    }
}
