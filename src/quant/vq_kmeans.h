/* Weighted k-means on vectors (src/quant/vq_kmeans.c): how the vq family's
 * codebooks are learned, and the exact nearest-codeword search over a
 * learned codebook for many vectors at once (a GEMM per block where BLAS
 * is built in). Internal to src/quant. */
#ifndef LB_QUANT_VQ_KMEANS_H
#define LB_QUANT_VQ_KMEANS_H

#include "lowbit/format.h"

#define LB_VQ_ITERS 12             /* Lloyd updates at most (each a full pass over the training vectors) */
#define LB_VQ_MAX_ITERS 200        /* the most a caller may ask for */
#define LB_VQ_TOL 1e-4             /* stop when an update lowers the objective by less than this, relatively */
#define LB_VQ_MAX_TRAIN (1 << 19)  /* training vectors at most: a deterministic sample beyond */
#define LB_VQ_SEED 0x5eed5eedULL   /* the sample's and the initial centers' */
#define LB_VQ_PLUSPLUS_MAX 2147483648.0 /* k-means++ initialization up to K x (training vectors) = 2^31 */

/* A set of vectors with per-coordinate weights: rows x vpr vectors of d
 * values, vector (r, v) at x + r * stride + v * d; the weight of its
 * coordinate i is roww[r] * colw[v * d + i] (NULL factors count 1). Weights
 * finite and >= 0. */
typedef struct {
    const float *x;
    int64_t rows, vpr, stride;
    int d;
    const float *roww; /* rows */
    const float *colw; /* vpr x d */
} lb_vq_points;

/* The objective sum_j sum_i w_ji (x_ji - c_{a(j), i})^2 after each
 * assignment step, on the training vectors: objective[0] at the initial
 * centers, objective[t] after t updates; n entries. */
typedef struct {
    int n;
    double objective[LB_VQ_MAX_ITERS + 1];
} lb_vq_trace;

/* K centers (K x d floats into book) minimizing the weighted objective by
 * Lloyd's algorithm: at most max_train training vectors (all if fewer: a
 * deterministic sample otherwise; vectors of zero weight are left out),
 * initial centers by k-means++ (up to K x n = LB_VQ_PLUSPLUS_MAX) or K
 * distinct-index training vectors drawn at random (a fixed seed) or, when the training vectors take at most K distinct
 * values, exactly those values (objective 0); then at most max_iter
 * updates (each center the weighted mean of its vectors, coordinate by
 * coordinate; a center left with no weight moved to the training vector
 * with the largest error), stopping when an update lowers the objective by
 * less than LB_VQ_TOL relatively. The assignment keeps a vector's center
 * unless another is strictly nearer in double precision, so the objective
 * never rises beyond the float rounding of the centers. Returns the
 * objective of the returned book; trace may be NULL. Deterministic for any
 * thread count. */
lb_status lb_vq_kmeans(const lb_vq_points *p, int64_t K, int max_iter, int64_t max_train, float *book,
                       lb_vq_trace *trace, double *objective);

/* The nearest of the K codewords (book, K x d) to each of n vectors x
 * (n x d) in squared error weighted by w (n x d; NULL: 1): a full scan (one
 * GEMM per block of vectors and codewords where BLAS is built in: distances
 * in float, so between codewords within float rounding of each other the
 * pick may differ from a scalar scan's); on a tie the lowest index. Serial:
 * callers parallelize over blocks. scratch: lb_vq_scratch_floats(n, K, d). */
size_t lb_vq_scratch_floats(int64_t n, int64_t K, int d);
void lb_vq_nearest(const float *book, int64_t K, int d, const float *x, const float *w, int64_t n, uint32_t *codes,
                   float *scratch);

/* lb_vq_nearest for every vector of p (codes: rows x vpr), in parallel over
 * fixed blocks; sse (may be NULL) gets the total weighted squared error. */
lb_status lb_vq_assign(const lb_vq_points *p, const float *book, int64_t K, uint32_t *codes, double *sse);

#endif
