/* Incoherence processing around any method (src/quant/rotate.c): the
 * `rotate` common option. Internal to src/quant. */
#ifndef LB_QUANT_ROTATE_H
#define LB_QUANT_ROTATE_H

#include "lowbit/quant.h"

typedef struct {
    float *w;             /* rows x cols: R_o W R_i^T (column-vector maps) */
    lb_layer_stats stats; /* of the rotated input R_i x: X^T X, mean x and GPTAQ's cross term, when given */
    float *in_signs;      /* (cols): R_i = T diag(in_signs), lowbit/core.h */
    float *out_signs;     /* (rows): R_o = T diag(out_signs); NULL: R_o = I */
} lb_rotated;

/* Rotates w (rows x cols; on its output side too when output is 1) and
 * the statistics a quantizer will read (need: LB_STATS_* bits; X^T X, mean
 * x and the cross term sum (x_fp - x) x^T rotate exactly, others fail
 * with LB_ERR_UNSUPPORTED naming them). Signs from seed and the tensor's name.
 * On failure r is empty. */
lb_status lb_rotate_begin(const float *w, int64_t rows, int64_t cols, const lb_layer_stats *stats, unsigned need,
                          int output, uint64_t seed, const char *name, lb_rotated *r);
void lb_rotated_free(lb_rotated *r);

#endif
