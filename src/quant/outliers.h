/* Internal to src/quant: the steps of the dense-and-sparse split
 * (outliers.c) and of bias correction (bias_correct.c) that
 * lb_quantize_tensor_ex (method.c) runs around a method row. */
#ifndef LB_QUANT_OUTLIERS_H
#define LB_QUANT_OUTLIERS_H

#include "lowbit/quant.h"

/* dense = w with every kept weight replaced by the mean of the weights of
 * its group (group weights along a row; <= 0: the whole row) not kept. */
void lb_outliers_dense_input(const float *w, int64_t rows, int64_t cols, int64_t group, const uint8_t *keep,
                             float *dense);

/* The sparse part into x (row_ptr, col_idx, values, nnz): for each kept
 * weight, w + (kept - dense) - deq stored as fp16 when it fits; eff (rows x
 * cols) = deq + the sparse part, the weight the linear will compute with. */
lb_status lb_outliers_build(const float *w, const float *dense, const float *kept, const float *deq, int64_t rows,
                            int64_t cols, const uint8_t *keep, int64_t n_kept, lb_quant_extras *x, float *eff);

/* bias (rows) = (w - eff) mean_x, each rounded to fp16 when it fits. */
lb_status lb_bias_correction(const float *w, const float *eff, int64_t rows, int64_t cols, const float *mean_x,
                             float *bias);

#endif
