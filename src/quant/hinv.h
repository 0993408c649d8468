/* The factor GPTQ-style error feedback runs on (src/quant/hinv.c): shared
 * by gptq.c and ldlq.c. */
#ifndef LB_QUANT_HINV_H
#define LB_QUANT_HINV_H

#include "lowbit/quant.h"

/* U (n x n float, upper, row-major) with (H_perm + lambda I)^-1 = U^T U,
 * H_perm = X^T X (n x n, row-major, both triangles) with rows and columns
 * in the order perm (position -> column), dead inputs (dead[c], H_cc == 0)
 * given H_cc = 1 and no correlations. lambda = percdamp mean(diag H),
 * raised x10 (from 1e-6 when percdamp is 0) until the Cholesky
 * factorization succeeds, up to 100 mean(diag H); the report gets the
 * damping used (damping, damping_rel, damping_raises). OpenBLAS must be
 * held at one thread by the caller (the work is split over OpenMP in
 * fixed chunks, so U does not depend on the thread count). Needs BLAS. */
lb_status lb_hinv_factor(const double *xtx, int64_t n, const int *perm, const char *dead, double percdamp, float *U,
                         lb_method_report *rep);

#endif
