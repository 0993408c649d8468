/* The rows of the method table, one per src/quant/<method>.c (internal to
 * src/quant: the public way in is lb_method_find / lb_method_at). */
#ifndef LB_QUANT_METHOD_ROWS_H
#define LB_QUANT_METHOD_ROWS_H

#include "lowbit/quant.h"

extern const lb_method lb_method_rtn;
extern const lb_method lb_method_twn;
extern const lb_method lb_method_hqq;
extern const lb_method lb_method_gptq;
extern const lb_method lb_method_awq;
extern const lb_method lb_method_awq_gptq;
extern const lb_method lb_method_smoothquant;

/* gptq's option table, which awq+gptq shares (its options are gptq's). */
#define LB_GPTQ_N_OPTIONS 5
extern const lb_method_option lb_gptq_options[LB_GPTQ_N_OPTIONS];

#endif
