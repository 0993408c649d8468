/* Inside src/pipeline: what the parallel (quantize_model.c) and the
 * sequential (quantize_sequential.c) drivers share. */
#ifndef LB_PIPELINE_INTERNAL_H
#define LB_PIPELINE_INTERNAL_H

#include "lowbit/pipeline.h"

/* Resolves and checks a shallow copy of plan against m (the caller's plan
 * stays const); p->entries is the copy's own (lb_free). */
lb_status lb_pipeline_resolve(const lb_plan *plan, lb_model *m, lb_plan *p);

/* Quantizes entry e of m into *out (a new tensor, m unchanged) and fills
 * rec: stats is the tensor's input statistics or NULL; the method sees them
 * only if it needs statistics, while the report's proxy losses use any
 * X^T X given. */
lb_status lb_pipeline_quantize_entry(lb_model *m, const lb_plan_entry *e, const lb_layer_stats *stats,
                                     lb_tensor *out, lb_tensor_report *rec);

/* Fills the report's totals after m took the new tensors. */
void lb_pipeline_report_totals(lb_model *m, int n, double t0, lb_quantize_report *report);

#endif
