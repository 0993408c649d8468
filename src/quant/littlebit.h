/* Low-rank binary factors (LittleBit's initialization, src/quant/littlebit.c):
 * internal to src/quant; the format is src/formats/littlebit.c. */
#ifndef LB_QUANT_LITTLEBIT_H
#define LB_QUANT_LITTLEBIT_H

#include "lowbit/format.h"

typedef struct {
    int rounds;         /* alternating least-squares rounds over (h, g, l) after Dual-SVID (default 10) */
    const double *xtx;  /* (cols, cols) X^T X: minimize tr((W - Q) H (W - Q)^T); NULL: ||W - Q||_F^2 */
    double *objective;  /* NULL, or rounds + 1 values: the objective after Dual-SVID and after each round
                           (in double, before fp16 rounding) */
} lb_littlebit_opts;

/* Fits q's low-rank factors (q initialized for a littlebit spec) to w
 * (rows x cols, finite): Dual-SVID, then `rounds` of exact least squares on
 * h, g and l with the signs fixed, then h, g, l stored as fp16 (each refitted
 * with the ones before it already rounded). LB_ERR_UNSUPPORTED without
 * OpenBLAS/LAPACKE. */
lb_status lb_littlebit_quantize(const float *w, int64_t rows, int64_t cols, const lb_littlebit_opts *o,
                                lb_qtensor *q);

#endif
