/* What the salient-column rows share (src/quant/salient.c, ptq161.c,
 * billm.c): GPTQ's column loop with error feedback, driven by callbacks,
 * and the data-free fits rtn.c calls for their grid kinds. Internal to
 * src/quant (and the tests). */
#ifndef LB_QUANT_SALIENT_H
#define LB_QUANT_SALIENT_H

#include "lowbit/quant.h"

/* GPTQ's loop over the columns of W (rows x cols, updated in place) with
 * the upper factor U of H^-1 (lb_gptq_inverse_factor): column i's values
 * come from quantize(), its error e = (w - value) / U_ii is spread over the
 * later columns (w_j -= e U_ij), lazily in blocks of `block` columns.
 * group_start(), when set, runs before the first column of every group of
 * `group` columns, single-threaded, with W as updated so far (all rows):
 * there a method picks what a group shares across rows (a column mask).
 * quantize() is called for every (r, c) exactly once, rows in parallel
 * (each row by one thread, in column order). loss = sum e^2, in a fixed
 * order (independent of the thread count). Needs BLAS. */
typedef struct {
    int64_t rows, cols;
    int64_t block, group; /* group 0: no group_start */
    const float *U;       /* cols x cols */
    lb_status (*group_start)(void *ctx, const float *W, int64_t c0, int64_t c1);
    float (*quantize)(void *ctx, int64_t r, int64_t c, float x); /* stores the code, returns its value */
    void *ctx;
} lb_feedback_job;
lb_status lb_feedback_run(const lb_feedback_job *job, float *W, double *loss);

/* Data-free fits for rtn (q initialized with the spec): ptq161's mask by
 * column norm of w, min-max int4 and mean / mean-absolute binary grids;
 * billm's mask by column energy sum_r w^2, BiLLM's binarizations and
 * break-point search per row and group, nearest codes. */
lb_status lb_ptq161_rtn(const float *w, int64_t rows, int64_t cols, lb_qtensor *q);
lb_status lb_billm_rtn(const float *w, int64_t rows, int64_t cols, lb_qtensor *q);

/* ptq161's closed form: the row's four values p = (d, m, alpha, mu) that
 * minimize (w - v(p)) H (w - v(p))^T for fixed codes and mask (H: n x n,
 * symmetric), v(p)_c = d code_c + m on salient columns and
 * mu + alpha (2 code_c - 1) on the others: linear in p, so the normal
 * equations B H B^T p = B H w^T (4 x 4). p holds the current values on
 * entry (kept along directions H cannot see: a ridge of 1e-9 trace / 4
 * pulls towards them) and the optimum on return. Returns the objective at
 * the returned p (before any fp16 rounding). */
double lb_ptq161_fit_row(const double *H, int64_t n, const float *w, const uint8_t *mask, const uint8_t *codes,
                         float p[4]);
/* The objective of a row for given values (the same quadratic). */
double lb_ptq161_row_loss(const double *H, int64_t n, const float *w, const uint8_t *mask, const uint8_t *codes,
                          const float p[4]);

#endif
