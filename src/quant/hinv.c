/* The upper Cholesky factor of H^-1 that GPTQ's error feedback (gptq.c)
 * and BlockLDLQ (ldlq.c) run on; see quant/hinv.h. Moved out of gptq.c
 * unchanged so both methods use one factorization. */
#include "quant/hinv.h"

#include <string.h>

#ifdef LB_HAVE_BLAS
#include <cblas.h>
#include <lapacke.h>

#define DAMP_MAX_REL 100.0
#define FACTOR_BLOCK 128

/* Blocked right-looking Cholesky A = R^T R of a column-major n x n matrix
 * (upper triangle read and overwritten by R), in FACTOR_BLOCK blocks: the
 * diagonal block by dpotrf, the panel and the trailing update in column
 * chunks of FACTOR_BLOCK spread over OpenMP threads, each chunk one
 * single-threaded BLAS call. The chunks are fixed, so the result does not
 * depend on the thread count (OpenBLAS's own threaded dpotrf changes its
 * blocking with it). 0 on success, > 0: not positive definite. */
static lapack_int cholesky_upper(double *A, int64_t n) {
    const int64_t nb = FACTOR_BLOCK;
    for (int64_t k0 = 0; k0 < n; k0 += nb) {
        int64_t k1 = k0 + nb < n ? k0 + nb : n, kb = k1 - k0;
        lapack_int info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'U', (lapack_int)kb, A + k0 * n + k0, (lapack_int)n);
        if (info != 0) return info < 0 ? info : (lapack_int)k0 + info;
        int64_t chunks = (n - k1 + nb - 1) / nb;
#pragma omp parallel for schedule(dynamic, 1)
        for (int64_t c = 0; c < chunks; c++) {
            int64_t j0 = k1 + c * nb, jb = (n - j0 < nb ? n - j0 : nb);
            cblas_dtrsm(CblasColMajor, CblasLeft, CblasUpper, CblasTrans, CblasNonUnit, (int)kb, (int)jb, 1.0,
                        A + k0 * n + k0, (int)n, A + j0 * n + k0, (int)n);
        }
#pragma omp parallel for schedule(dynamic, 1)
        for (int64_t c = 0; c < chunks; c++) {
            int64_t j0 = k1 + c * nb, jb = (n - j0 < nb ? n - j0 : nb);
            if (j0 > k1) /* rows k1..j0 of columns j0..j0+jb */
                cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, (int)(j0 - k1), (int)jb, (int)kb, -1.0,
                            A + k1 * n + k0, (int)n, A + j0 * n + k0, (int)n, 1.0, A + j0 * n + k1, (int)n);
            cblas_dsyrk(CblasColMajor, CblasUpper, CblasTrans, (int)jb, (int)kb, -1.0, A + j0 * n + k0, (int)n, 1.0,
                        A + j0 * n + j0, (int)n);
        }
    }
    return 0;
}

/* U(i, j) = X(n-1-j, n-1-i) for X = R^-1 (R: column-major upper, n x n):
 * column chunks of X solved independently (X[0:c1, c0:c1] = R[0:c1, 0:c1]^-1
 * I[0:c1, c0:c1]) over OpenMP threads, each a single-threaded dtrsm. */
static lb_status reversed_inverse(const double *R, int64_t n, float *U) {
    const int64_t nb = FACTOR_BLOCK;
    int64_t chunks = (n + nb - 1) / nb;
    memset(U, 0, (size_t)(n * n) * sizeof(float));
    lb_worker_error err;
    lb_worker_error_init(&err);
#pragma omp parallel
    {
        double *X = lb_alloc((size_t)(n * nb) * sizeof(double));
        if (!X) lb_worker_error_set(&err, lb_fail(LB_ERR_NOMEM, "out of memory in gptq"));
#pragma omp for schedule(dynamic, 1)
        for (int64_t c = 0; c < chunks; c++) {
            if (!X) continue;
            int64_t c0 = c * nb, c1 = c0 + nb < n ? c0 + nb : n, cb = c1 - c0;
            memset(X, 0, (size_t)(c1 * cb) * sizeof(double));
            for (int64_t k = 0; k < cb; k++) X[k * c1 + c0 + k] = 1.0;
            cblas_dtrsm(CblasColMajor, CblasLeft, CblasUpper, CblasNoTrans, CblasNonUnit, (int)c1, (int)cb, 1.0, R,
                        (int)n, X, (int)c1);
            for (int64_t k = 0; k < cb; k++) {
                int64_t col = c0 + k;
                float *urow = U + (n - 1 - col) * n;
                for (int64_t r = 0; r <= col; r++) urow[n - 1 - r] = (float)X[k * c1 + r];
            }
        }
        lb_free(X);
    }
    return lb_worker_error_raise(&err);
}

/* U (n x n float, upper, row-major) with (H_perm + lambda I)^-1 = U^T U.
 * Raises lambda until the factorization succeeds; fills the report.
 *
 * One Cholesky and one triangular inverse instead of the reference's
 * cholesky, cholesky_inverse, cholesky (2/3 n^3 flops instead of 4/3): with
 * J the reversal permutation and J H J = R^T R (R upper),
 * H^-1 = J R^-1 R^-T J = U^T U for U = J R^-T J, which is upper with a
 * positive diagonal: the (unique) upper Cholesky factor of H^-1. */
lb_status lb_hinv_factor(const double *xtx, int64_t n, const int *perm, const char *dead, double percdamp,
                                float *U, lb_method_report *rep) {
    double *A = lb_alloc((size_t)(n * n) * sizeof(double));
    double *h = lb_alloc((size_t)(n * n) * sizeof(double));
    if (!A || !h) {
        lb_free(A);
        lb_free(h);
        return LB_ERR_NOMEM;
    }
    double mean_diag = 0; /* h: the permuted H, upper triangle (a <= b) */
    for (int64_t a = 0; a < n; a++) {
        for (int64_t b = a; b < n; b++) {
            int64_t i = perm[a], j = perm[b];
            double v = 0.5 * (xtx[i * n + j] + xtx[j * n + i]);
            if (dead[i] || dead[j]) v = i == j ? 1.0 : 0.0;
            h[a * n + b] = v;
        }
        mean_diag += h[a * n + a];
    }
    mean_diag /= (double)n;
    double rel = percdamp;
    int raises = 0;
    lb_status st = LB_OK;
    for (;;) {
        double lambda = rel * mean_diag;
        /* A, column-major upper: A(r, c) = (J H J)(r, c) = h(n-1-c, n-1-r) for r <= c */
        for (int64_t c = 0; c < n; c++) {
            const double *hrow = h + (n - 1 - c) * n;
            for (int64_t r = 0; r <= c; r++) A[c * n + r] = hrow[n - 1 - r];
            A[c * n + c] += lambda;
        }
        lapack_int info = cholesky_upper(A, n);
        if (info == 0) {
            rep->damping = lambda;
            rep->damping_rel = rel;
            rep->damping_raises = raises;
            break;
        }
        if (info < 0) {
            st = lb_fail(LB_ERR_NUMERIC, "LAPACK rejected argument %d while factoring X^T X", (int)-info);
            break;
        }
        double next = rel > 0 ? rel * 10 : 1e-6;
        if (next > DAMP_MAX_REL) {
            st = lb_fail(LB_ERR_NUMERIC,
                         "X^T X (%lld x %lld) is not positive definite even with damping %g x mean(diag) "
                         "(raised %d times from percdamp %g); check the calibration statistics",
                         (long long)n, (long long)n, rel, raises, percdamp);
            break;
        }
        rel = next;
        raises++;
    }
    if (st == LB_OK) st = reversed_inverse(A, n, U);
    lb_free(A);
    lb_free(h);
    return st;
}

#endif /* LB_HAVE_BLAS */
