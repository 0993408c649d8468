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
extern const lb_method lb_method_ldlq;

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

#endif
