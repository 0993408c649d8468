/* OneBit as post-training quantization (Xu et al. 2024, "OneBit: Towards
 * Extremely Low-bit Large Language Models", arXiv:2402.11295; METHODS.md
 * s11), for the onebit format W ~ diag(h) S diag(g) (src/formats/onebit.c).
 *
 * OneBit itself is quantization-aware training: SVID (S = sign(W), h g^T
 * the rank-1 fit of |W|) only initializes a knowledge-distillation run. Here
 * the initialization is the method, refined without training:
 *
 *   rtn (data-free)  SVID: the rank-1 fit of |W| by power iteration (the
 *                    reference uses a 1-component NMF; for a nonnegative
 *                    matrix the leading singular pair is nonnegative, the
 *                    same fit), split with a power of two so rms(h) = rms(g)
 *                    (fp16 range), snapped to fp16 by a search over the split
 *                    (so h g^T is closest to the rank-1 fit as stored), h
 *                    refitted in closed form against the stored g.
 *   onebit           minimizes the calibration objective
 *                      f = tr((W - Q) H (W - Q)^T),  Q = diag(h) S diag(g),
 *                    H = X^T X / mean(diag X^T X) + percdamp I (gptq's
 *                    damping, relative; f is that damped objective), from
 *                    SVID, by alternating exact minimizations:
 *                      g | h, S: (H o (S^T diag(h^2) S)) g = rhs,
 *                                rhs_j = sum_i h_i s_ij (W H)_ij
 *                                (sum_i h_i^2 diag(s_i) H diag(s_i) written
 *                                as a Hadamard product; positive definite by
 *                                the Schur product theorem; LAPACK dposv)
 *                      h | g, S: h_i = (w_i H u_i) / (u_i H u_i), u_i = s_i o g
 *                      S | h, g: sign_passes > 0: coordinate descent, flip
 *                                s_ij when it lowers f (exact per coordinate)
 *                    so f never increases (tests/test_onebit.c asserts it).
 *                    Last, g is rounded to fp16 and h refitted against it and
 *                    rounded (the values chosen against the stored grid); if
 *                    the stored result is worse than SVID's, SVID's is kept.
 *   lowrank=r        W ~ B A + diag(h) S diag(g): the rank-r term is the
 *                    H-weighted truncated SVD of W - Q (with H = R^T R:
 *                    B A = [(W - Q) R^T]_r R^-T, the best rank r for f),
 *                    A and B rounded to fp16, then Q refitted to W - B A;
 *                    lowrank_iters alternations (the first with Q = 0). B A
 *                    goes to the linear's adapter slot (alpha 1), which the
 *                    file stores as f16 (lowbit/linear.h, docs/FORMATS.md).
 *
 * Defaults: iters 10, percdamp 0.01, sign_passes 0 (OneBit keeps sign(W)),
 * lowrank 0, lowrank_iters 4. Deviations: no training or distillation; the
 * value vectors may turn negative under least squares (the format allows
 * it). lowrank is refused with outliers or bias correction (their parts
 * would have to account for the adapter). */
#include "quant/method_rows.h"
#include "quant/onebit.h"

#include <math.h>
#include <string.h>

#ifdef LB_HAVE_BLAS
#include <cblas.h>
#include <lapacke.h>
#endif

#define SVID_MAX_ITERS 200
#define SVID_TOL 1e-13

/* ---- SVID (data-free: rtn's fit for the onebit format) -------------------- */

/* The leading singular pair of |W|: a (rows, unit norm) and b (cols) with
 * a b^T the best rank-1 fit. Nonnegative: power iteration from b = 1 stays
 * in the nonnegative orthant. Each entry is one thread's fixed-order sum;
 * norms are summed in order. Stops when a moves less than SVID_TOL. */
static void rank1_abs(const float *w, int64_t rows, int64_t cols, double *a, double *a_prev, double *b) {
    for (int64_t j = 0; j < cols; j++) b[j] = 1.0;
    for (int64_t i = 0; i < rows; i++) a[i] = 0.0;
    for (int it = 0; it < SVID_MAX_ITERS; it++) {
        memcpy(a_prev, a, (size_t)rows * sizeof(double));
#pragma omp parallel for schedule(static) if (rows * cols >= 65536)
        for (int64_t i = 0; i < rows; i++) {
            double s = 0;
            for (int64_t j = 0; j < cols; j++) s += fabs((double)w[i * cols + j]) * b[j];
            a[i] = s;
        }
        double norm = 0, moved = 0;
        for (int64_t i = 0; i < rows; i++) norm += a[i] * a[i];
        norm = sqrt(norm);
        if (norm == 0) { /* W = 0 */
            for (int64_t j = 0; j < cols; j++) b[j] = 0.0;
            return;
        }
        for (int64_t i = 0; i < rows; i++) {
            a[i] /= norm;
            moved += (a[i] - a_prev[i]) * (a[i] - a_prev[i]);
        }
#pragma omp parallel for schedule(static) if (rows * cols >= 65536)
        for (int64_t j = 0; j < cols; j++) {
            double s = 0;
            for (int64_t i = 0; i < rows; i++) s += fabs((double)w[i * cols + j]) * a[i];
            b[j] = s;
        }
        if (moved < SVID_TOL * SVID_TOL) return;
    }
}

/* fp16 values h (rows), g (cols) with h g^T closest to a b^T among the
 * splits (a c, b / c): c balances rms(h) and rms(g) within a factor of
 * two, and its mantissa is searched so the largest |b_j| lands on each of
 * the 1024 fp16 values of its octave in turn; scored by ||a b^T - h g^T||^2
 * = |a|^2 |b|^2 - 2 (a.h)(b.g) + |h|^2 |g|^2 (rank one: O(rows + cols) per
 * candidate). When a b^T is an exact fp16 product, one candidate is it. */
static void snap_rank1(const double *a, int64_t rows, const double *b, int64_t cols, float *h, float *g) {
    double na = 0, nb = 0, bmax = 0;
    for (int64_t i = 0; i < rows; i++) na += a[i] * a[i];
    for (int64_t j = 0; j < cols; j++) {
        nb += b[j] * b[j];
        if (fabs(b[j]) > fabs(bmax)) bmax = b[j];
    }
    if (na == 0 || nb == 0) { /* W = 0: zero rows, unit columns */
        for (int64_t i = 0; i < rows; i++) h[i] = 0.0f;
        for (int64_t j = 0; j < cols; j++) g[j] = 1.0f;
        return;
    }
    /* c0: rms(a c0) = rms(b / c0) */
    double c0 = sqrt(sqrt(nb / (double)cols) / sqrt(na / (double)rows));
    int e;
    frexp(fabs(bmax) / c0, &e); /* |bmax| / c0 in [2^(e-1), 2^e) */
    double best = INFINITY, best_c = c0;
    for (int m = 0; m < 1024; m++) {
        double v = ldexp(1.0 + m / 1024.0, e - 1), c = fabs(bmax) / v;
        double ah = 0, hh = 0, bg = 0, gg = 0;
        for (int64_t i = 0; i < rows; i++) {
            double x = lb_round_fp16((float)(a[i] * c));
            ah += a[i] * x;
            hh += x * x;
        }
        for (int64_t j = 0; j < cols; j++) {
            double y = lb_round_fp16((float)(b[j] / c));
            bg += b[j] * y;
            gg += y * y;
        }
        double err = na * nb - 2 * ah * bg + hh * gg;
        if (err < best) {
            best = err;
            best_c = c;
        }
    }
    for (int64_t i = 0; i < rows; i++) h[i] = lb_round_fp16((float)(a[i] * best_c));
    for (int64_t j = 0; j < cols; j++) g[j] = lb_round_fp16((float)(b[j] / best_c));
}

lb_status lb_onebit_svid(const float *w, int64_t rows, int64_t cols, lb_qtensor *q) {
    if (lb_format_grid(&q->spec) != LB_GRID_ONEBIT || !q->col_scale || q->rows != rows || q->cols != cols)
        return lb_fail(LB_ERR_INVALID, "SVID fills an onebit tensor of the weight's shape");
    double *a = lb_alloc((size_t)rows * sizeof(double)), *a_prev = lb_alloc((size_t)rows * sizeof(double));
    double *b = lb_alloc((size_t)cols * sizeof(double));
    if (!a || !a_prev || !b) {
        lb_free(a);
        lb_free(a_prev);
        lb_free(b);
        return LB_ERR_NOMEM;
    }
    rank1_abs(w, rows, cols, a, a_prev, b);
    snap_rank1(a, rows, b, cols, q->scale, q->col_scale);
    lb_free(a);
    lb_free(a_prev);
    lb_free(b);
    /* h refitted against the stored g: h_i = sum_j |w_ij| g_j / sum_j g_j^2 */
    double gg = 0;
    for (int64_t j = 0; j < cols; j++) gg += (double)q->col_scale[j] * q->col_scale[j];
#pragma omp parallel for schedule(static) if (rows * cols >= 65536)
    for (int64_t i = 0; i < rows; i++) {
        double s = 0;
        for (int64_t j = 0; j < cols; j++) s += fabs((double)w[i * cols + j]) * q->col_scale[j];
        q->scale[i] = gg > 0 ? (float)(s / gg) : 0.0f;
        uint8_t *c = q->codes + i * q->cols_padded;
        for (int64_t j = 0; j < q->cols_padded; j++) c[j] = j < cols ? w[i * cols + j] >= 0.0f : 1;
    }
    return lb_qtensor_store_scales(q);
}

/* ---- the calibrated fit ---------------------------------------------------- */

#ifdef LB_HAVE_BLAS

/* Work arrays of one fit (all row-major doubles). */
typedef struct {
    int64_t rows, cols;
    const double *H;  /* (cols, cols): the damped, normalized H */
    double *W;        /* (rows, cols): the matrix Q approximates */
    double *WH;       /* (rows, cols): W H */
    double *S;        /* (rows, cols): the signs, +-1 */
    double *U;        /* (rows, cols): scratch: S diag(g), or diag(h) S */
    double *Z;        /* (rows, cols): S diag(g) H */
    double *M;        /* (cols, cols): the g system */
    double *h, *g;    /* (rows), (cols) */
    double *p, *qq;   /* (rows): w_i . Z_i and u_i . Z_i */
    double c0;        /* sum_i w_i H w_i */
} fit_work;

/* Z = S diag(g) H, p_i = w_i . Z_i, q_i = u_i . Z_i */
static void refresh_z(fit_work *f) {
    int64_t rows = f->rows, cols = f->cols;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) f->U[i * cols + j] = f->S[i * cols + j] * f->g[j];
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)cols, (int)cols, 1.0, f->U, (int)cols, f->H,
                (int)cols, 0.0, f->Z, (int)cols);
    for (int64_t i = 0; i < rows; i++) {
        double p = 0, q = 0;
        for (int64_t j = 0; j < cols; j++) {
            p += f->W[i * cols + j] * f->Z[i * cols + j];
            q += f->U[i * cols + j] * f->Z[i * cols + j];
        }
        f->p[i] = p;
        f->qq[i] = q;
    }
}

/* f = sum_i w_i H w_i - 2 h_i p_i + h_i^2 q_i (Z current) */
static double objective(const fit_work *f) {
    double v = f->c0;
    for (int64_t i = 0; i < f->rows; i++) v += -2 * f->h[i] * f->p[i] + f->h[i] * f->h[i] * f->qq[i];
    return v;
}

/* h | g, S (Z current); round: store fp16 values */
static void solve_h(fit_work *f, int round) {
    for (int64_t i = 0; i < f->rows; i++) {
        double h = f->qq[i] > 0 ? f->p[i] / f->qq[i] : 0.0;
        f->h[i] = round ? lb_round_fp16((float)h) : h;
    }
}

/* g | h, S: (H o P) g = rhs, P = (diag(h) S)^T (diag(h) S). Returns 0 when
 * the system is singular (every h zero: W is zero), g then unchanged. */
static int solve_g(fit_work *f) {
    int64_t rows = f->rows, cols = f->cols;
    double *rhs = f->p; /* p is recomputed by the next refresh_z */
    if (cols > rows) rhs = lb_alloc((size_t)cols * sizeof(double));
    if (!rhs) return 0;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) f->U[i * cols + j] = f->h[i] * f->S[i * cols + j];
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)cols, (int)rows, 1.0, f->U, (int)cols, 0.0, f->M, (int)cols);
    for (int64_t a = 0; a < cols; a++)
        for (int64_t b = a; b < cols; b++) f->M[a * cols + b] *= f->H[a * cols + b];
    for (int64_t j = 0; j < cols; j++) rhs[j] = 0;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) rhs[j] += f->U[i * cols + j] * f->WH[i * cols + j];
    lapack_int info = LAPACKE_dposv(LAPACK_ROW_MAJOR, 'U', (lapack_int)cols, 1, f->M, (lapack_int)cols, rhs, 1);
    int ok = info == 0;
    for (int64_t j = 0; ok && j < cols; j++) ok = isfinite(rhs[j]);
    if (ok) memcpy(f->g, rhs, (size_t)cols * sizeof(double));
    if (rhs != f->p) lb_free(rhs);
    return ok;
}

/* S | h, g: coordinate descent, row by row (rows independent). Flipping
 * s_ij moves q_ij by d = -2 h_i s_ij g_j and f by -2 d (H r_i)_j + d^2 H_jj
 * (r_i = w_i - q_i); flips that lower f are taken, H r_i updated. */
static void refine_signs(fit_work *f, int passes) {
    int64_t rows = f->rows, cols = f->cols;
#pragma omp parallel for schedule(dynamic, 4)
    for (int64_t i = 0; i < rows; i++) {
        double *hr = f->U + i * cols; /* scratch row: H r_i = (W H)_i - h_i Z_i */
        const double *H = f->H;
        double *s = f->S + i * cols, hi = f->h[i];
        if (hi == 0) continue;
        for (int64_t j = 0; j < cols; j++) hr[j] = f->WH[i * cols + j] - hi * f->Z[i * cols + j];
        for (int pass = 0; pass < passes; pass++) {
            int flips = 0;
            for (int64_t j = 0; j < cols; j++) {
                double d = -2 * hi * s[j] * f->g[j];
                double delta = -2 * d * hr[j] + d * d * H[j * cols + j];
                if (delta < 0) {
                    s[j] = -s[j];
                    for (int64_t k = 0; k < cols; k++) hr[k] -= d * H[j * cols + k];
                    flips++;
                }
            }
            if (!flips) break;
        }
    }
}

/* The onebit fit of f->W from SVID: trace[0..iters] (or NULL); returns the
 * stored objective; q gets codes and values. */
static lb_status fit_onebit(fit_work *f, const lb_onebit_opts *o, lb_qtensor *q, float *wf, double *trace,
                            double *final) {
    int64_t rows = f->rows, cols = f->cols;
    for (int64_t i = 0; i < rows * cols; i++) wf[i] = (float)f->W[i];
    lb_status st = lb_onebit_svid(wf, rows, cols, q);
    if (st != LB_OK) return st;
    for (int64_t i = 0; i < rows; i++) f->h[i] = q->scale[i];
    for (int64_t j = 0; j < cols; j++) f->g[j] = q->col_scale[j];
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) f->S[i * cols + j] = q->codes[i * q->cols_padded + j] ? 1.0 : -1.0;
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)cols, (int)cols, 1.0, f->W, (int)cols, f->H,
                (int)cols, 0.0, f->WH, (int)cols);
    f->c0 = 0;
    for (int64_t i = 0; i < rows * cols; i++) f->c0 += f->W[i] * f->WH[i];
    refresh_z(f);
    double start = objective(f);
    if (trace) trace[0] = start;
    for (int it = 0; it < o->iters; it++) {
        if (o->sign_passes > 0) refine_signs(f, o->sign_passes);
        solve_g(f);
        refresh_z(f);
        solve_h(f, 0);
        if (trace) trace[it + 1] = objective(f);
    }
    /* the stored grid: g to fp16, then h against it, to fp16 */
    for (int64_t j = 0; j < cols; j++) f->g[j] = lb_round_fp16((float)f->g[j]);
    refresh_z(f);
    solve_h(f, 1);
    double stored = objective(f);
    int finite = isfinite(stored);
    for (int64_t j = 0; finite && j < cols; j++) finite = isfinite(f->g[j]);
    for (int64_t i = 0; finite && i < rows; i++) finite = isfinite(f->h[i]);
    if (finite && stored <= start) { /* else keep SVID's (already in q) */
        for (int64_t i = 0; i < rows; i++) {
            q->scale[i] = (float)f->h[i];
            for (int64_t j = 0; j < cols; j++) q->codes[i * q->cols_padded + j] = f->S[i * cols + j] > 0;
        }
        for (int64_t j = 0; j < cols; j++) q->col_scale[j] = (float)f->g[j];
    } else {
        stored = start;
    }
    if (final) *final = stored;
    return lb_qtensor_store_scales(q);
}

/* H = xtx / mean(diag xtx) + percdamp I, symmetrized (xtx NULL or all
 * dead: I) */
static void damped_h(const double *xtx, int64_t n, double percdamp, double *H) {
    double mean = 0;
    for (int64_t j = 0; xtx && j < n; j++) mean += xtx[j * n + j];
    mean /= (double)n;
    for (int64_t a = 0; a < n; a++)
        for (int64_t b = 0; b < n; b++)
            H[a * n + b] = mean > 0 ? 0.5 * (xtx[a * n + b] + xtx[b * n + a]) / mean : (double)(a == b);
    for (int64_t j = 0; j < n; j++) H[j * n + j] += mean > 0 ? percdamp : 0.0;
}

/* The rank-r term for f (H = R^T R): B A = [X R^T]_r R^-T, X = W - Q, as
 * fp16 factors with each component's rms balanced between A and B; L = B A
 * as stored. X is overwritten. */
static lb_status fit_lowrank(double *X, int64_t rows, int64_t cols, const double *R, int r, float *A, float *B,
                             double *L) {
    int64_t k = rows < cols ? rows : cols;
    double *sv = lb_alloc((size_t)k * sizeof(double)), *Um = lb_alloc((size_t)(rows * k) * sizeof(double));
    double *VT = lb_alloc((size_t)(k * cols) * sizeof(double)), *Ad = lb_alloc((size_t)(r * cols) * sizeof(double));
    lb_status st = LB_OK;
    if (!sv || !Um || !VT || !Ad) {
        st = LB_ERR_NOMEM;
        goto done;
    }
    cblas_dtrmm(CblasRowMajor, CblasRight, CblasUpper, CblasTrans, CblasNonUnit, (int)rows, (int)cols, 1.0, R, (int)cols,
                X, (int)cols);
    lapack_int info = LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', (lapack_int)rows, (lapack_int)cols, X, (lapack_int)cols, sv,
                                     Um, (lapack_int)k, VT, (lapack_int)cols);
    if (info != 0) {
        st = lb_fail(LB_ERR_NUMERIC, "the SVD for the low-rank term failed (LAPACK info %d)", (int)info);
        goto done;
    }
    for (int c = 0; c < r; c++)
        for (int64_t j = 0; j < cols; j++) Ad[c * cols + j] = sqrt(sv[c]) * VT[c * cols + j];
    cblas_dtrsm(CblasRowMajor, CblasRight, CblasUpper, CblasTrans, CblasNonUnit, r, (int)cols, 1.0, R, (int)cols, Ad,
                (int)cols); /* A R^T = sqrt(s) V^T */
    for (int c = 0; c < r; c++) {
        double na = 0, nb = 0;
        for (int64_t j = 0; j < cols; j++) na += Ad[c * cols + j] * Ad[c * cols + j];
        for (int64_t i = 0; i < rows; i++) nb += sv[c] * Um[i * k + c] * Um[i * k + c];
        double t = na > 0 && nb > 0 ? sqrt(sqrt((na / (double)cols) / (nb / (double)rows))) : 1.0; /* B t, A / t */
        for (int64_t j = 0; j < cols; j++) A[c * cols + j] = lb_round_fp16((float)(Ad[c * cols + j] / t));
        for (int64_t i = 0; i < rows; i++) B[i * r + c] = lb_round_fp16((float)(sqrt(sv[c]) * Um[i * k + c] * t));
    }
    for (int64_t i = 0; i < rows * r; i++)
        if (!isfinite(B[i])) st = lb_fail(LB_ERR_NUMERIC, "the low-rank term does not fit fp16");
    for (int64_t i = 0; i < r * cols; i++)
        if (!isfinite(A[i])) st = lb_fail(LB_ERR_NUMERIC, "the low-rank term does not fit fp16");
    for (int64_t i = 0; st == LB_OK && i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            double s = 0;
            for (int c = 0; c < r; c++) s += (double)B[i * r + c] * A[c * cols + j];
            L[i * cols + j] = s;
        }
done:
    lb_free(sv);
    lb_free(Um);
    lb_free(VT);
    lb_free(Ad);
    return st;
}

lb_status lb_onebit_fit(const float *w, int64_t rows, int64_t cols, const double *xtx, const lb_qspec *spec,
                        const lb_onebit_opts *o, lb_qtensor *q, lb_onebit_lowrank *lr, double *trace, double *final) {
    int r = o->lowrank;
    if (r < 0 || r > (rows < cols ? rows : cols))
        return lb_fail(LB_ERR_INVALID, "lowrank=%d: a %lld x %lld weight has rank at most %lld", r, (long long)rows,
                       (long long)cols, (long long)(rows < cols ? rows : cols));
    if (r && !lr) return lb_fail(LB_ERR_INVALID, "lowrank=%d needs somewhere to put the low-rank term", r);
    lb_status st = lb_qtensor_init(q, spec, rows, cols);
    if (st != LB_OK) return st;
    size_t rc = (size_t)(rows * cols), cc = (size_t)(cols * cols);
    fit_work f = {.rows = rows, .cols = cols};
    double *H = lb_alloc(cc * sizeof(double)), *R = NULL, *X = NULL, *L = NULL;
    float *wf = lb_alloc(rc * sizeof(float));
    f.W = lb_alloc(rc * sizeof(double));
    f.WH = lb_alloc(rc * sizeof(double));
    f.S = lb_alloc(rc * sizeof(double));
    f.U = lb_alloc(rc * sizeof(double));
    f.Z = lb_alloc(rc * sizeof(double));
    f.M = lb_alloc(cc * sizeof(double));
    f.h = lb_alloc((size_t)rows * sizeof(double));
    f.p = lb_alloc((size_t)rows * sizeof(double));
    f.qq = lb_alloc((size_t)rows * sizeof(double));
    f.g = lb_alloc((size_t)cols * sizeof(double));
    if (r) {
        R = lb_alloc(cc * sizeof(double));
        X = lb_alloc(rc * sizeof(double));
        L = lb_alloc(rc * sizeof(double));
        lr->rank = r;
        lr->a = lb_alloc((size_t)(r * cols) * sizeof(float));
        lr->b = lb_alloc((size_t)(rows * r) * sizeof(float));
    }
    if (!H || !wf || !f.W || !f.WH || !f.S || !f.U || !f.Z || !f.M || !f.h || !f.p || !f.qq || !f.g ||
        (r && (!R || !X || !L || !lr->a || !lr->b))) {
        st = LB_ERR_NOMEM;
        goto done;
    }
    damped_h(xtx, cols, o->percdamp, H);
    f.H = H;
    if (!r) {
        for (size_t i = 0; i < rc; i++) f.W[i] = w[i];
        st = fit_onebit(&f, o, q, wf, trace, final);
        goto done;
    }
    memcpy(R, H, cc * sizeof(double));
    if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', (lapack_int)cols, R, (lapack_int)cols) != 0) {
        st = lb_fail(LB_ERR_NUMERIC, "the damped X^T X is not positive definite (raise percdamp)");
        goto done;
    }
    for (int64_t a = 0; a < cols; a++)
        for (int64_t b = 0; b < a; b++) R[a * cols + b] = 0.0;
    for (size_t i = 0; i < rc; i++) X[i] = w[i]; /* the first low-rank fit: Q = 0 */
    for (int t = 0; t < o->lowrank_iters && st == LB_OK; t++) {
        if ((st = fit_lowrank(X, rows, cols, R, r, lr->a, lr->b, L)) != LB_OK) break;
        for (size_t i = 0; i < rc; i++) f.W[i] = (double)w[i] - L[i];
        if (t) lb_qtensor_free(q);
        if (t && (st = lb_qtensor_init(q, spec, rows, cols)) != LB_OK) break;
        if ((st = fit_onebit(&f, o, q, wf, trace, final)) != LB_OK) break;
        for (int64_t i = 0; i < rows; i++) /* X = W - Q for the next low-rank fit */
            for (int64_t j = 0; j < cols; j++) X[i * cols + j] = (double)w[i * cols + j] - lb_qtensor_value(q, i, j);
    }
done:
    if (st != LB_OK) {
        lb_qtensor_free(q);
        if (lr) {
            lb_free(lr->a);
            lb_free(lr->b);
            memset(lr, 0, sizeof *lr);
        }
    }
    lb_free(H);
    lb_free(R);
    lb_free(X);
    lb_free(L);
    lb_free(wf);
    lb_free(f.W);
    lb_free(f.WH);
    lb_free(f.S);
    lb_free(f.U);
    lb_free(f.Z);
    lb_free(f.M);
    lb_free(f.h);
    lb_free(f.p);
    lb_free(f.qq);
    lb_free(f.g);
    return st;
}
#endif /* LB_HAVE_BLAS */

/* ---- the onebit row ------------------------------------------------------ */

static const lb_method_option onebit_options[] = {
    {"iters", LB_OPTION_INT, "10", "alternating least-squares iterations (g, then h) after SVID", 0, 1000, NULL, NULL},
    {"percdamp", LB_OPTION_FLOAT, "0.01", "damping added to diag(H), relative to its mean", 0, 10, NULL, NULL},
    {"sign_passes", LB_OPTION_INT, "0", "coordinate-descent passes over the signs per iteration (0: keep sign(W))", 0,
     100, NULL, NULL},
    {"lowrank", LB_OPTION_INT, "0", "rank of a B A term in the linear's adapter slot (0: none)", 0, 256, NULL, NULL},
    {"lowrank_iters", LB_OPTION_INT, "4", "alternations between the low-rank term and the signs (lowrank > 0)", 1, 100,
     NULL, NULL},
};

static void onebit_opts_from(const lb_method_opts *m, lb_onebit_opts *o) {
    o->iters = (int)m->value[0];
    o->percdamp = m->value[1];
    o->sign_passes = (int)m->value[2];
    o->lowrank = (int)m->value[3];
    o->lowrank_iters = (int)m->value[4];
}

static lb_status onebit_check(const lb_qspec *spec, const lb_method_opts *o) {
    if (lb_format_grid(spec) != LB_GRID_ONEBIT) {
        char text[64];
        lb_qspec_format(spec, text, sizeof text);
        return lb_fail(LB_ERR_INVALID, "method onebit quantizes to the onebit format, not '%s'", text);
    }
    if (o && o->value[3] > 0 && (lb_method_opts_get(o, "outliers") > 0 || lb_method_opts_get(o, "bias_correct") != 0))
        return lb_fail(LB_ERR_UNSUPPORTED,
                       "onebit lowrank=%d with outliers or bias_correct is not built (the sparse part and the bias "
                       "change would have to account for the adapter)",
                       (int)o->value[3]);
#ifndef LB_HAVE_BLAS
    return lb_fail(LB_ERR_UNSUPPORTED, "method onebit needs OpenBLAS and LAPACKE, and lowbit was built without them");
#else
    return LB_OK;
#endif
}

static lb_status onebit_quantize(const float *w, int64_t rows, int64_t cols, const lb_layer_stats *stats,
                                 const lb_qspec *spec, const lb_method_opts *m, lb_qtensor *q) {
#ifndef LB_HAVE_BLAS
    (void)w, (void)rows, (void)cols, (void)stats, (void)spec, (void)m, (void)q, (void)onebit_opts_from;
    return lb_fail(LB_ERR_UNSUPPORTED, "method onebit needs OpenBLAS and LAPACKE, and lowbit was built without them");
#else
    lb_onebit_opts o;
    onebit_opts_from(m, &o);
    if (o.lowrank && !m->extras)
        return lb_fail(LB_ERR_INVALID,
                       "onebit lowrank=%d stores a low-rank term in the linear's adapter slot: it needs "
                       "lb_quantize_tensor_ex (a model's linear) and no outliers or bias correction",
                       o.lowrank);
    for (int64_t i = 0; i < rows * cols; i++)
        if (!isfinite(w[i]))
            return lb_fail(LB_ERR_NUMERIC, "weight at row %lld, column %lld is %s", (long long)(i / cols),
                           (long long)(i % cols), isnan(w[i]) ? "NaN" : "infinite");
    double t0 = lb_now(), loss = NAN;
    lb_onebit_lowrank lr = {0, NULL, NULL};
    lb_status st = lb_onebit_fit(w, rows, cols, stats->xtx, spec, &o, q, &lr, NULL, &loss);
    if (st != LB_OK) return st;
    if (o.lowrank) {
        lb_quant_extras *x = m->extras;
        lb_free(x->adapter_a);
        lb_free(x->adapter_b);
        x->adapter_rank = lr.rank;
        x->adapter_a = lr.a;
        x->adapter_b = lr.b;
        x->adapter_alpha = 1.0f;
    }
    if (m->report) { /* the loss in X^T X's own scale, as gptq reports it */
        double mean = 0;
        for (int64_t j = 0; j < cols; j++) mean += stats->xtx[j * cols + j];
        mean /= (double)cols;
        m->report->damping_rel = o.percdamp;
        m->report->damping = o.percdamp * mean;
        m->report->proxy_loss = mean > 0 ? loss * mean : loss;
        m->report->seconds = lb_now() - t0;
    }
    return LB_OK;
#endif
}

const lb_method lb_method_onebit = {
    .name = "onebit",
    .summary = "OneBit's diag(h) sign diag(g): SVID, then least squares on X^T X (optional low-rank adapter)",
    .stats = LB_STATS_XTX,
    .options = onebit_options,
    .n_options = (int)(sizeof onebit_options / sizeof onebit_options[0]),
    .check = onebit_check,
    .quantize = onebit_quantize,
};
