/* Internal to src/pipeline: putting what a method call produced besides
 * the packed tensor (lb_quant_extras: outliers, a bias change, rotations,
 * an adapter)
 * into the slots of the linear the tensor belongs to. */
#ifndef LB_PIPELINE_SLOTS_H
#define LB_PIPELINE_SLOTS_H

#include "lowbit/pipeline.h"

/* Which linear's weight t is: 1 with *layer and *which (LB_W*) set, 0 when t is
 * not a linear's weight (embeddings, norms, the output). */
int lb_pipeline_find_linear(const lb_model *m, const lb_tensor *t, int *layer, int *which);

/* Fails (before anything changes) when extras cannot go into the model:
 * the tensor is not a linear's weight, its linear already has outliers
 * (the method saw only the dense weight, so merging would change it), or
 * rotations are to go into a linear that already transforms its input or
 * output, or an adapter into one that has one. */
lb_status lb_pipeline_slots_check(const lb_model *m, const lb_tensor *t, const lb_quant_extras *x);
/* Sets the linear's outliers, rotations and adapter and adds the bias change to its
 * bias. Only allocation can fail here, once every check passed. */
lb_status lb_pipeline_slots_apply(lb_model *m, const lb_tensor *t, const lb_quant_extras *x);
/* Refuses a plan rotating some linear (rotate=hadamard) with a static
 * activation quantizer: its ranges come from statistics of the unrotated
 * input. */
lb_status lb_pipeline_check_rotations(const lb_plan *p, const lb_act_quant *act);
/* Removes the rotations and the adapter slots_apply set (undoing a
 * swapped-in tensor in sequential mode, which takes no other slots). */
void lb_pipeline_slots_unrotate(lb_model *m, const lb_tensor *t);
/* w (rows x cols, the dequantized weight as quantized under x's rotations)
 * <- the same weight in the original basis, R_o^T w R_i; nothing without
 * rotations. */
lb_status lb_pipeline_unrotate_weight(const lb_quant_extras *x, float *w, int64_t rows, int64_t cols);
/* Bytes of the slots of the linear t is the weight of (0 for other tensors),
 * as stored: what a tensor's record adds to its bpw. */
size_t lb_pipeline_slot_bytes(const lb_model *m, const lb_tensor *t);

#endif
