/* Shared by the loaders (io/) and the model code. */
#ifndef LB_MODEL_INTERNAL_H
#define LB_MODEL_INTERNAL_H

#include "lowbit/model.h"

lb_status lb_config_validate(const lb_config *c);
/* A model with every tensor named and shaped from the config, no data yet. */
lb_status lb_model_alloc(const lb_config *c, int tied_output, lb_model **out);
/* Checks that every tensor has data of the size its format needs and that
 * every weight is finite, then builds the RoPE tables. Loaders call it last. */
lb_status lb_model_finish(lb_model *m);
/* Fails with LB_ERR_NUMERIC naming the tensor, row and column of the first
 * NaN or Inf weight (float tensors as stored, quantized ones as decoded). */
lb_status lb_model_check_finite(lb_model *m);

#endif
