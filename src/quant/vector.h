/* Rounding to vector codebooks (families with grid LB_GRID_VECTOR: e8p),
 * shared by rtn and ldlq (src/quant/vector.c). */
#ifndef LB_QUANT_VECTOR_H
#define LB_QUANT_VECTOR_H

#include "lowbit/format.h"

/* Round-to-nearest for a vector family. A family with a learned codebook
 * (q->vbook set: vq) learns it first, stage by stage: the group scales are
 * the RMS of what the stage codes, the codebook weighted k-means of the
 * scaled vectors (src/quant/vq_kmeans.c), each coordinate weighted by
 * colw[col] (NULL: 1; ldlq passes diag(H), VPTQ's "Hessian-weighted"
 * k-means), and the codes the exact nearest codewords. Computed codebooks
 * (e8p) ignore colw: per group (row or tensor) and
 * stage, greedily (stage s codes what stages < s left), a scale searched
 * around the codebook's RMS-matched scale (lb_qtensor_vec_unit_scale
 * times the RMS of what the stage codes; 0.7..1.3 of it in steps of 0.1,
 * then +-0.05 around the best, then two least-squares refits of the scale
 * to the chosen codes), each candidate scored by the squared error of the
 * nearest codes (exact search). Padding weights have weight 0. q is
 * lb_qtensor_init'ed; scales are fp16-rounded as searched. */
lb_status lb_vector_rtn(const float *w, int64_t rows, int64_t cols, const float *colw, lb_qtensor *q);

/* Codes of vector v of `row` for the real-valued x (vec_dim values, the
 * padding's weight wt = 0; wt NULL: 1) at the row's stored scales, stage
 * by stage on the residual; val gets the decoded values. Returns the
 * weighted squared error. */
double lb_vector_round(lb_qtensor *q, int64_t row, int64_t v, const float *x, const float *wt, float *val);

/* lb_vector_round for vectors v of rows r0 .. r0 + n - 1 (x, wt, val: n x
 * vec_dim, wt not NULL), searching a learned codebook for all n at once;
 * scratch holds lb_vector_round_scratch(q, n) floats (0 for computed
 * codebooks: NULL will do). Returns the total weighted squared error. */
size_t lb_vector_round_scratch(const lb_qtensor *q, int64_t n);
double lb_vector_round_rows(lb_qtensor *q, int64_t r0, int64_t n, int64_t v, const float *x, const float *wt,
                            float *val, float *scratch);

#endif
