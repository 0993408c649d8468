/* Internal to src/pipeline: putting what a method call produced besides
 * the packed tensor (lb_quant_extras: outliers, a bias change) into the
 * slots of the linear the tensor belongs to. */
#ifndef LB_PIPELINE_SLOTS_H
#define LB_PIPELINE_SLOTS_H

#include "lowbit/pipeline.h"

/* Fails (before anything changes) when extras cannot go into the model:
 * the tensor is not a linear's weight, or its linear already has outliers
 * (the method saw only the dense weight, so merging would change it). */
lb_status lb_pipeline_slots_check(const lb_model *m, const lb_tensor *t, const lb_quant_extras *x);
/* Sets the linear's outliers and adds the bias change to its bias. Only
 * allocation can fail here, once every check passed. */
lb_status lb_pipeline_slots_apply(lb_model *m, const lb_tensor *t, const lb_quant_extras *x);
/* Bytes of the slots of the linear t is the weight of (0 for other tensors),
 * as stored: what a tensor's record adds to its bpw. */
size_t lb_pipeline_slot_bytes(const lb_model *m, const lb_tensor *t);

#endif
