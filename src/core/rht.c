/* Randomized Hadamard transforms (incoherence processing, QuIP# / QuaRot):
 * R = T diag(d) for a sign vector d, T orthonormal with every entry small.
 * For n = 2^k m (m odd, m <= LB_RHT_MAX_ODD), T = (H / sqrt(2^k)) (x) C:
 * H the Sylvester Walsh-Hadamard matrix of order 2^k, C the orthonormal
 * DCT-II of order m (C = [1] for m = 1, so powers of two are plain
 * Walsh-Hadamard). QuIP# takes a stored Hadamard matrix of order m where
 * one exists (e.g. 172 = 4 x 43 for Llama's 11008); the DCT needs no table,
 * exists for every m, and still bounds each entry of T by sqrt(2 / n), the
 * incoherence the method needs (Hadamard: sqrt(1 / n)).
 *
 * A vector x of length n is a 2^k x m row-major matrix X; T x is
 * H X C^T / sqrt(2^k): C on each row of m, then butterflies across rows
 * (whole rows at a time, so they vectorize over m). */
#include "lowbit/core.h"

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>

int lb_rht_odd(int64_t n) {
    if (n <= 0) return 0;
    while (!(n & 1)) n >>= 1;
    return n <= LB_RHT_MAX_ODD ? (int)n : 0;
}

/* The DCT of order m, computed once per m in double and kept for the
 * process (a lost race frees its copy): C (m x m) row-major, C[k][j] =
 * a_k cos(pi (2j + 1) k / (2m)), a_0 = sqrt(1/m), a_k = sqrt(2/m); as
 * doubles and as floats, each also transposed, so that both directions run
 * as unit-stride updates (t += column * x_j), which vectorize. */
typedef struct {
    double *c64, *ct64; /* C, C^T */
    float *c, *ct;
} dct_tables;
static _Atomic(dct_tables *) dct_cache[LB_RHT_MAX_ODD + 1];

static const dct_tables *dct_basis(int m) {
    dct_tables *d = atomic_load_explicit(&dct_cache[m], memory_order_acquire);
    if (d) return d;
    size_t mm = (size_t)m * (size_t)m;
    /* one block: the struct, then the four tables (doubles first: aligned) */
    dct_tables *mine = lb_alloc(sizeof(dct_tables) + 2 * mm * sizeof(double) + 2 * mm * sizeof(float) + 64);
    if (!mine) return NULL;
    mine->c64 = (double *)(void *)((char *)mine + 64);
    mine->ct64 = mine->c64 + mm;
    mine->c = (float *)(void *)(mine->ct64 + mm);
    mine->ct = mine->c + mm;
    const double pi = 3.14159265358979323846;
    for (int k = 0; k < m; k++)
        for (int j = 0; j < m; j++) {
            double v = (k ? sqrt(2.0 / m) : sqrt(1.0 / m)) * cos(pi * (2 * j + 1) * k / (2.0 * m));
            mine->c64[k * m + j] = mine->ct64[j * m + k] = v;
            mine->c[k * m + j] = mine->ct[j * m + k] = (float)v;
        }
    dct_tables *expected = NULL;
    if (atomic_compare_exchange_strong_explicit(&dct_cache[m], &expected, mine, memory_order_acq_rel,
                                                memory_order_acquire))
        return mine;
    lb_free(mine);
    return expected;
}

lb_status lb_rht_check(int64_t n) {
    int m = lb_rht_odd(n);
    if (!m)
        return lb_fail(LB_ERR_INVALID,
                       "no randomized Hadamard transform of size %lld: it takes 2^k m with m odd and at most %d",
                       (long long)n, LB_RHT_MAX_ODD);
    if (m > 1 && !dct_basis(m)) return lb_fail(LB_ERR_NOMEM, "out of memory for a DCT of order %d", m);
    return LB_OK;
}

/* The transform once per element type (float: inference; double: the
 * statistics a quantizer rotates). X (rows x m) row-major: butterflies
 * across rows (H X, unnormalized), C or C^T on each row. */
#define RHT_DEFINE(T, NAME, C, CT)                                                                              \
    static void NAME##_butterflies(T *x, int64_t rows, int m) {                                                  \
        if (m == 1) { /* the plain FWHT: pairs at distance h, unit stride within a run */                        \
            for (int64_t h = 1; h < rows; h *= 2)                                                                \
                for (int64_t i = 0; i < rows; i += 2 * h)                                                        \
                    for (int64_t j = i; j < i + h; j++) {                                                        \
                        T u = x[j], v = x[j + h];                                                                \
                        x[j] = u + v;                                                                            \
                        x[j + h] = u - v;                                                                        \
                    }                                                                                            \
            return;                                                                                              \
        }                                                                                                        \
        for (int64_t h = 1; h < rows; h *= 2)                                                                    \
            for (int64_t i = 0; i < rows; i += 2 * h)                                                            \
                for (int64_t r = i; r < i + h; r++) {                                                            \
                    T *a = x + r * m, *b = x + (r + h) * m;                                                      \
                    for (int j = 0; j < m; j++) {                                                                \
                        T u = a[j], v = b[j];                                                                    \
                        a[j] = u + v;                                                                            \
                        b[j] = u - v;                                                                            \
                    }                                                                                            \
                }                                                                                                \
    }                                                                                                            \
    /* row <- M row for M = C (forward) or C^T: t = sum_j (column j of M) row_j, */                              \
    /* column j of M being row j of M^T */                                                                       \
    static void NAME##_dct_rows(T *x, int64_t rows, int m, const dct_tables *d, int transpose) {                 \
        const T *mt = transpose ? d->C : d->CT;                                                                  \
        T t[LB_RHT_MAX_ODD];                                                                                     \
        for (int64_t r = 0; r < rows; r++) {                                                                     \
            T *row = x + r * m;                                                                                  \
            for (int k = 0; k < m; k++) t[k] = 0;                                                                \
            for (int j = 0; j < m; j++) {                                                                        \
                const T *col = mt + (size_t)j * (size_t)m, xj = row[j];                                          \
                for (int k = 0; k < m; k++) t[k] += col[k] * xj;                                                 \
            }                                                                                                    \
            for (int k = 0; k < m; k++) row[k] = t[k];                                                           \
        }                                                                                                        \
    }                                                                                                            \
    lb_status NAME(T *x, int64_t n, const float *signs, int transpose) {                                         \
        lb_status st = lb_rht_check(n);                                                                          \
        if (st != LB_OK) return st;                                                                              \
        int m = lb_rht_odd(n);                                                                                   \
        const dct_tables *d = m > 1 ? dct_basis(m) : NULL;                                                       \
        int64_t rows = n / m;                                                                                    \
        T norm = (T)(1.0 / sqrt((double)rows));                                                                  \
        if (!transpose && signs)                                                                                 \
            for (int64_t j = 0; j < n; j++) x[j] *= (T)signs[j];                                                 \
        if (d && !transpose) NAME##_dct_rows(x, rows, m, d, 0);                                                  \
        NAME##_butterflies(x, rows, m);                                                                          \
        for (int64_t j = 0; j < n; j++) x[j] *= norm;                                                            \
        if (d && transpose) NAME##_dct_rows(x, rows, m, d, 1);                                                   \
        if (transpose && signs)                                                                                  \
            for (int64_t j = 0; j < n; j++) x[j] *= (T)signs[j];                                                 \
        return LB_OK;                                                                                            \
    }

/* A matrix's rows or columns, each through the transform: the rows of
 * A (rows x cols) give A R^T (transpose: A R), its columns R A (R^T A);
 * columns go through a contiguous copy. */
#define RHT_MATRIX_DEFINE(T, NAME, ROWS, COLS)                                                                  \
    lb_status ROWS(T *a, int64_t rows, int64_t cols, const float *signs, int transpose) {                       \
        lb_status st = lb_rht_check(cols);                                                                       \
        for (int64_t r = 0; st == LB_OK && r < rows; r++) st = NAME(a + r * cols, cols, signs, transpose);       \
        return st;                                                                                               \
    }                                                                                                            \
    lb_status COLS(T *a, int64_t rows, int64_t cols, const float *signs, int transpose) {                       \
        lb_status st = lb_rht_check(rows);                                                                       \
        if (st != LB_OK) return st;                                                                              \
        T *col = lb_alloc((size_t)rows * sizeof(T));                                                             \
        if (!col) return lb_fail(LB_ERR_NOMEM, "out of memory for a column of %lld", (long long)rows);          \
        for (int64_t c = 0; c < cols; c++) {                                                                     \
            for (int64_t r = 0; r < rows; r++) col[r] = a[r * cols + c];                                         \
            NAME(col, rows, signs, transpose);                                                                   \
            for (int64_t r = 0; r < rows; r++) a[r * cols + c] = col[r];                                         \
        }                                                                                                        \
        lb_free(col);                                                                                            \
        return LB_OK;                                                                                            \
    }

RHT_DEFINE(float, lb_rht_apply, c, ct)
RHT_DEFINE(double, lb_rht_apply_f64, c64, ct64)
RHT_MATRIX_DEFINE(float, lb_rht_apply, lb_rht_apply_rows, lb_rht_apply_cols)
RHT_MATRIX_DEFINE(double, lb_rht_apply_f64, lb_rht_apply_rows_f64, lb_rht_apply_cols_f64)

void lb_rht_signs(uint64_t seed, int64_t n, float *signs) {
    lb_rng r;
    lb_rng_seed(&r, seed);
    for (int64_t j = 0; j < n; j++) signs[j] = lb_rng_u32(&r) >> 31 ? -1.0f : 1.0f;
}
