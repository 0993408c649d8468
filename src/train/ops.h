/* The transformer's ops for training, each forward beside its backward
 * (llm.c's habit), over a batch of N = B * T rows, row-major.
 *
 * Conventions: a backward function ADDS into the gradients of its inputs
 * (dx, dw, ...), so an input read by several ops (the residual stream, the
 * normalized input of q, k and v) collects every contribution; the caller
 * zeroes them first. Forward arithmetic follows src/model/forward.c (float
 * accumulation in the same order) so the training forward reproduces the
 * inference logits. Every function is deterministic and its result does not
 * depend on the number of threads: parallel loops give each output element
 * to one thread, and reductions across rows (weight gradients of RMSNorm,
 * embedding rows) run serially in row order. The GEMMs go through BLAS when
 * the build has it (OpenBLAS computes each output element's dot product in
 * one thread, in a fixed order), else through plain loops. */
#ifndef LB_TRAIN_OPS_H
#define LB_TRAIN_OPS_H

#include <stddef.h>

#include "lowbit/core.h"

/* x[i] = embd[tokens[i]]: x (N, dim), embd (vocab, dim). Tokens were checked by the caller. */
void lb_train_embedding_forward(float *x, const int *tokens, int N, const float *embd, int dim);
void lb_train_embedding_backward(float *dembd, const float *dx, const int *tokens, int N, int dim);

/* out[i] = w * x[i] * rstd[i], rstd[i] = 1 / sqrt(mean(x[i]^2) + eps).
 * out, x: (N, dim), rstd: (N) saved for the backward. */
void lb_train_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int N, int dim, float eps);
/* dx += r w dout - r^3 x (sum_j dout_j w_j x_j) / dim;  dw += sum_i dout_i x_i r_i (dw NULL: skipped) */
void lb_train_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                               const float *rstd, int N, int dim);

/* y = x w^T: x (N, in), w (out, in), y (N, out) (overwritten). */
void lb_train_matmul_forward(float *y, const float *x, const float *w, int N, int in, int out);
/* dx += dy w, dw += dy^T x (each skipped when NULL). */
void lb_train_matmul_backward(float *dx, float *dw, const float *dy, const float *x, const float *w, int N, int in,
                              int out);

/* RoPE on consecutive pairs, in place, on B sequences of T rows each, row t
 * of a sequence at position t: q (N, q_dim), k (N, kv_dim), head_dim wide
 * heads, angles from cos_t / sin_t (positions, head_dim / 2). The backward
 * rotates the gradients by the opposite angle (the rotation's transpose),
 * in place. */
void lb_train_rope_forward(float *q, float *k, int B, int T, int q_dim, int kv_dim, int head_dim, const float *cos_t,
                           const float *sin_t);
void lb_train_rope_backward(float *dq, float *dk, int B, int T, int q_dim, int kv_dim, int head_dim,
                            const float *cos_t, const float *sin_t);

/* Causal grouped-query attention of B sequences of T positions:
 * q (N, n_heads*hd), k, v (N, n_kv*hd), q-head h reads kv-head h / (n_heads / n_kv);
 * out (N, n_heads*hd); att (B, n_heads, T, T) the softmax probabilities
 * (row i is zero past column i), saved for the backward. */
void lb_train_attention_forward(float *out, float *att, const float *q, const float *k, const float *v, int B, int T,
                                int n_heads, int n_kv, int hd);
/* dq, dk, dv += the gradients through out = softmax(q k^T / sqrt(hd)) v.
 * Fails only when a thread's scratch (T floats) cannot be allocated. */
lb_status lb_train_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                                      const float *k, const float *v, const float *att, int B, int T, int n_heads,
                                      int n_kv, int hd);

/* SwiGLU: h = silu(g) * u = g sigmoid(g) u, elementwise over n values. */
void lb_train_swiglu_forward(float *h, const float *g, const float *u, size_t n);
/* dg += dh u sigmoid(g) (1 + g (1 - sigmoid(g))), du += dh silu(g) */
void lb_train_swiglu_backward(float *dg, float *du, const float *dh, const float *g, const float *u, size_t n);

/* Softmax cross-entropy of N rows of V logits against targets (a negative
 * target: the row is not scored). Writes the probabilities over the logits
 * (in place) and each row's -log p(target) to row_nll (N; 0 when not
 * scored); returns their SUM over scored rows, and the count in *scored. */
double lb_train_cross_entropy_forward(float *logits_to_probs, double *row_nll, const int *targets, int N, int V,
                                      int *scored);
/* dlogits = scale (p - onehot(target)) for scored rows, 0 for the others
 * (overwritten, not added: the loss is the start of the backward). */
void lb_train_cross_entropy_backward(float *dlogits, const float *probs, const int *targets, int N, int V, float scale);

#endif
