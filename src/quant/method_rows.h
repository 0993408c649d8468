/* The rows of the method table, one per src/quant/<method>.c (internal to
 * src/quant: the public way in is lb_method_find / lb_method_at). */
#ifndef LB_QUANT_METHOD_ROWS_H
#define LB_QUANT_METHOD_ROWS_H

#include "lowbit/quant.h"

extern const lb_method lb_method_rtn;
extern const lb_method lb_method_twn;
extern const lb_method lb_method_hqq;
extern const lb_method lb_method_gptq;
extern const lb_method lb_method_gptaq;
extern const lb_method lb_method_awq;
extern const lb_method lb_method_awq_gptq;
extern const lb_method lb_method_smoothquant;
extern const lb_method lb_method_squeezellm;
extern const lb_method lb_method_onebit;
extern const lb_method lb_method_ptq161;
extern const lb_method lb_method_billm;
extern const lb_method lb_method_littlebit;
extern const lb_method lb_method_ldlq;
extern const lb_method lb_method_aqlm;

/* gptq's option table, which awq+gptq shares (its options are gptq's). */
#define LB_GPTQ_N_OPTIONS 7
extern const lb_method_option lb_gptq_options[LB_GPTQ_N_OPTIONS];

/* HQQ at its defaults (p 0.7, beta 10, kappa 1.01, 20 iterations,
 * scale=auto) on w: the grids and codes of the hqq row (hqq.c), for gptq's
 * grid_fit=hqq (HQQ's zero-points, then GPTQ's rounding). Uniform formats
 * without hierarchical scales only (hqq's check). */
lb_status lb_hqq_default_fit(const float *w, int64_t rows, int64_t cols, const lb_qspec *spec, lb_qtensor *q);

/* lb_rtn_quantize whose mse searches (clip=mse) score each weight's squared
 * error times colw[column] (an input's importance, e.g. diag X^T X; NULL: 1).
 * Min-max and aciq grids do not depend on it (rtn.c). */
lb_status lb_rtn_quantize_weighted(const float *w, int64_t rows, int64_t cols, const float *colw, const lb_qspec *spec,
                                   const lb_rtn_opts *opts, lb_qtensor *q);
/* Hierarchical scales (uniform s<k>): refits group k (weights x[0..n),
 * importances cw or NULL) on its super-group's integer lattice by the clip
 * rule, sets its integers and returns its (weighted) squared error (rtn.c). */
double lb_rtn_hscale_fit_group(lb_qtensor *q, int64_t k, const float *x, int64_t n, const float *cw,
                               const lb_rtn_opts *o);

/* GPTQ's factor for rows that run its column loop themselves (ptq161,
 * billm; gptq.c, built with BLAS only): U (n x n, upper, row-major) with
 * (H + lambda I)^-1 = U^T U, H = xtx with each dead input (H_jj == 0,
 * marked in dead[0..n)) replaced by a unit diagonal, lambda raised from
 * percdamp mean(diag H) until the factorization succeeds; the damping and
 * the dead count go to rep. */
lb_status lb_gptq_inverse_factor(const double *xtx, int64_t n, double percdamp, char *dead, float *U,
                                 lb_method_report *rep);

#endif
