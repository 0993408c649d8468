/* OpenBLAS's own thread pool off while a caller runs its BLAS calls inside
 * its own OpenMP workers, or needs bytes that do not depend on how BLAS
 * splits a product (methods, calibration's dsyrk, training's GEMM blocks):
 * one BLAS thread, restored afterwards. Only an actual change is made:
 * resizing OpenBLAS's pool is slow. Without BLAS (the ARM cross build) both
 * are no-ops. Header-only: the runtime itself links no BLAS. */
#ifndef LB_CORE_BLAS_THREADS_H
#define LB_CORE_BLAS_THREADS_H

#ifdef LB_HAVE_BLAS
#include <cblas.h>
#endif

/* sets one BLAS thread; returns the count to give lb_blas_threads_restore */
static inline int lb_blas_threads_single(void) {
#ifdef LB_HAVE_BLAS
    int t = openblas_get_num_threads();
    if (t != 1) openblas_set_num_threads(1);
    return t;
#else
    return 0;
#endif
}

static inline void lb_blas_threads_restore(int t) {
#ifdef LB_HAVE_BLAS
    if (t != 1) openblas_set_num_threads(t);
#else
    (void)t;
#endif
}

#endif
