/* OneBit's fits (src/quant/onebit.c), internal to src/quant: the data-free
 * SVID that rtn runs for the onebit format, and the calibrated least-squares
 * fit of the onebit method, exposed here for tests/test_onebit.c. */
#ifndef LB_QUANT_ONEBIT_H
#define LB_QUANT_ONEBIT_H

#include "lowbit/format.h"

/* SVID on q (lb_qtensor_init'ed with an onebit spec, rows x cols): signs
 * sign(w) (0 counts as +), h and g from the rank-1 approximation of |W|
 * (power iteration), split with a power of two so that rms(h) = rms(g),
 * then snapped to fp16 (the scale split searched so that h g^T is closest
 * to the rank-1 fit) and h refitted by least squares against the stored g.
 * W = diag(h) S diag(g) with fp16 h, g > 0 comes back exactly. No
 * statistics, no BLAS. */
lb_status lb_onebit_svid(const float *w, int64_t rows, int64_t cols, lb_qtensor *q);

typedef struct {
    int iters;        /* alternating least-squares iterations (g, then h) */
    double percdamp;  /* H / mean(diag H) + percdamp I (gptq's percdamp) */
    int sign_passes;  /* coordinate-descent passes over the signs per iteration (0: keep sign(W)) */
    int lowrank;      /* rank r of a term B A beside the signs (0: none) */
    int lowrank_iters; /* alternations low-rank <-> onebit when lowrank > 0 */
} lb_onebit_opts;

/* The rank-r part (lowrank > 0): A (rank x cols), B (rows x rank), fp16
 * values, lb_alloc'ed (the caller frees); W ~ B A + onebit. */
typedef struct {
    int rank;
    float *a, *b;
} lb_onebit_lowrank;

/* Minimizes tr((W - L - Q) H (W - L - Q)^T), H = xtx / mean(diag xtx) +
 * percdamp I (xtx NULL: H = I), over Q = diag(h) S diag(g) (q, initialized
 * here) and, when o->lowrank > 0, L = B A of rank r (lr). trace (NULL, or
 * o->iters + 1 entries) gets the objective at the start (SVID) and after each
 * iteration of the last alternation, before the final fp16 rounding;
 * *final (NULL allowed) the objective of what is stored. Needs BLAS. */
lb_status lb_onebit_fit(const float *w, int64_t rows, int64_t cols, const double *xtx, const lb_qspec *spec,
                        const lb_onebit_opts *o, lb_qtensor *q, lb_onebit_lowrank *lr, double *trace, double *final);

#endif
