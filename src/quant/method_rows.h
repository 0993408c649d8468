/* The rows of the method table, one per src/quant/<method>.c (internal to
 * src/quant: the public way in is lb_method_find / lb_method_at). */
#ifndef LB_QUANT_METHOD_ROWS_H
#define LB_QUANT_METHOD_ROWS_H

#include "lowbit/quant.h"

extern const lb_method lb_method_rtn;
extern const lb_method lb_method_twn;
extern const lb_method lb_method_hqq;
extern const lb_method lb_method_gptq;

/* Hierarchical scales (uniform s<k>): refits group k (weights x[0..n)) on
 * its super-group's integer lattice by the clip rule, sets its integers and
 * returns its squared error (rtn.c). */
double lb_rtn_hscale_fit_group(lb_qtensor *q, int64_t k, const float *x, int64_t n, const lb_rtn_opts *o);

#endif
