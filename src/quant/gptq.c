/* GPTQ (Frantar, Ashkboos, Hoefler, Alistarh 2022, "GPTQ: Accurate
 * Post-Training Quantization for Generative Pre-trained Transformers",
 * arXiv:2210.17323; METHODS.md s2; reference code IST-DASLab/gptq gptq.py).
 *
 * Objective, per linear, over calibration inputs X (n_samples x cols):
 *   min_Q ||W X^T - Q X^T||_F^2 = tr(dW H dW^T),  dW = W - Q,  H = X^T X
 * (lowbit's statistics hold H = sum x x^T; the paper writes H = 2 X X^T with X
 * as columns, the reference averages 2/N sum x x^T. The result does not
 * depend on the scale of H: damping is relative to mean(diag H) and every
 * update is a ratio of entries of the same factor.) Rows are independent and
 * share H. Columns are quantized one at a time in order; the error of column
 * i is spread over the columns not yet quantized by the Optimal Brain
 * Surgeon update, written with the upper Cholesky factor U of H^-1
 * (H^-1 = U^T U):
 *   q_i = Q(w_i),  e_i = (w_i - q_i) / U_ii,  w_j -= e_i U_ij  (j > i)
 * which replaces OBQ's rank-1 downdates of H^-1. Lazy batch: within a block
 * of `block` columns (128) the updates touch only the block; the rest of the
 * row gets one GEMM per block, W[:, end:] -= E U[block, end:].
 * The loss is sum_i e_i^2 (= tr(dW H dW^T) for the damped H, since
 * dW = E U and U H U^T = I); it is reported with the damping used.
 *
 * Defaults as the reference: percdamp 0.01 (lambda = percdamp mean(diag H)
 * added to the diagonal), block 128, no act-order, group parameters fitted
 * when a group's first column is reached, from the already-updated weights.
 * Dead inputs (H_ii == 0) get H_ii = 1 and their weights zeroed, as the
 * reference does.
 * Deviations and choices:
 * - Damping is raised x10 (from 1e-6 mean(diag H) when percdamp is 0) until
 *   the factorization succeeds, up to 100 mean(diag H), and the
 *   value used is reported (lb_method_report); past that the call fails
 *   naming the linear's H as not positive definite. The reference fails.
 * - U is computed in double from one Cholesky factorization and one
 *   triangular inverse (blocked over OpenMP with single-threaded BLAS
 *   calls; see inverse_factor), not
 *   the reference's three steps; W, E and U in the updates are float (the
 *   reference: float32 throughout).
 * - act_order (descending diag H) always uses static groups for grouped
 *   formats: every group's parameters come from the initial weights in
 *   original column order, so the stored layout stays the format's (no
 *   per-column group index). static_groups=1 does the same without
 *   act-order. Formats with one scale per row fit it once, from the initial
 *   row (as the reference's groupsize -1). nf4 with double quantization also
 *   uses static groups: its stored scales depend on all groups at once.
 * - A group's grid is round-to-nearest's (lb_rtn_quantize on the group's
 *   current columns, with the row's clip rule), so every uniform format
 *   (1-8 bits, any group, sym/asym, fp16 offset or int zero) and nf4 are
 *   supported exactly as RTN stores them; codes are the nearest on the
 *   stored grid. Binary and ternary formats are refused (not implemented).
 * - GPTAQ's asymmetric calibration is not implemented (it needs the
 *   cross-statistics of quantized and fp32 inputs, which lowbit does not
 *   collect yet).
 * Determinism: rows are processed in fixed tiles of 64, each tile by one
 * thread with single-threaded BLAS, so the bytes do not depend on the
 * thread count; the factorization, once before, splits its work into fixed
 * column chunks for the same reason. */
#include "quant/method_rows.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef LB_HAVE_BLAS
#include <cblas.h>
#include <lapacke.h>
#endif

#define TILE_ROWS 64
#define DAMP_MAX_REL 100.0
#define FACTOR_BLOCK 128

typedef struct {
    double percdamp;
    int block;
    int act_order;
    int static_groups;
    lb_rtn_opts rtn; /* grid rule for each group */
} gptq_opts;

static const char *const clip_choices[] = {"minmax", "mse", "aciq", "aciq-gauss", NULL};

/* shared with awq+gptq (awq.c), whose options are these */
const lb_method_option lb_gptq_options[LB_GPTQ_N_OPTIONS] = {
    {"percdamp", LB_OPTION_FLOAT, "0.01", "damping added to diag(H), relative to its mean (raised if needed)", 0,
     10, NULL, NULL},
    {"block", LB_OPTION_INT, "128", "columns per lazy-batch block", 1, 65536, NULL, NULL},
    {"act_order", LB_OPTION_INT, "0", "1: quantize columns by descending diag(H) (static groups)", 0, 1, NULL, NULL},
    {"static_groups", LB_OPTION_INT, "0", "1: group grids from the initial weights, not the updated ones", 0, 1,
     NULL, NULL},
    {"clip", LB_OPTION_CHOICE, "minmax", "each group's grid range: minmax | mse | aciq | aciq-gauss", 0, 0,
     clip_choices, "clipping rule"},
};

static void opts_from(const lb_method_opts *o, gptq_opts *g) {
    g->percdamp = o->value[0];
    g->block = (int)o->value[1];
    g->act_order = (int)o->value[2];
    g->static_groups = (int)o->value[3];
    lb_rtn_opts_default(&g->rtn);
    lb_clip_parse(clip_choices[(int)o->value[4]], &g->rtn.clip);
}

static lb_status gptq_check(const lb_qspec *spec, const lb_method_opts *o) {
    (void)o;
    lb_grid_kind grid = lb_format_grid(spec);
    if (grid != LB_GRID_UNIFORM && grid != LB_GRID_ABSMAX) {
        char text[64];
        lb_qspec_format(spec, text, sizeof text);
        return lb_fail(LB_ERR_INVALID, "method gptq quantizes to uniform (int) and nf4 formats, not '%s'", text);
    }
#ifndef LB_HAVE_BLAS
    return lb_fail(LB_ERR_UNSUPPORTED, "method gptq needs OpenBLAS and LAPACKE, and lowbit was built without them");
#else
    return LB_OK;
#endif
}

#ifdef LB_HAVE_BLAS

/* Descending diag, ties by index (a stable, thread-free order). */
static const double *sort_diag;
static int by_diag_desc(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    if (sort_diag[i] != sort_diag[j]) return sort_diag[i] > sort_diag[j] ? -1 : 1;
    return (i > j) - (i < j);
}

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
static lb_status inverse_factor(const double *xtx, int64_t n, const int *perm, const char *dead, double percdamp,
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

/* Copies group parameters of one group per row from a (tr x len) RTN result
 * into q at groups (r0 + r) * gpr + g. */
static void take_group(lb_qtensor *q, const lb_qtensor *sub, int64_t r0, int64_t tr, int64_t g) {
    for (int64_t r = 0; r < tr; r++) {
        int64_t k = (r0 + r) * q->groups_per_row + g;
        q->scale[k] = sub->scale[r];
        q->offset[k] = sub->offset[r];
        q->zero[k] = sub->zero[r];
    }
}

typedef struct {
    const gptq_opts *o;
    int64_t cols;
    const int *perm; /* position -> original column */
    const float *U;  /* cols x cols */
    int dynamic;     /* fit each group when its first column is reached */
} gptq_job;

/* Quantizes rows [r0, r0 + tr) of the (already permuted, dead-zeroed) tile
 * W (tr x cols, updated in place); writes codes (and, dynamic, grids) into q. */
static lb_status gptq_tile(const gptq_job *job, lb_qtensor *q, int64_t r0, int64_t tr, float *W, float *E,
                           float *gbuf, double *loss) {
    const int64_t n = job->cols, B = job->o->block, G = q->group_len;
    const float *U = job->U;
    double sum = 0;
    for (int64_t c0 = 0; c0 < n; c0 += B) {
        int64_t c1 = c0 + B < n ? c0 + B : n, bl = c1 - c0;
        for (int64_t i = c0; i < c1; i++) {
            int64_t j = job->perm[i];
            if (job->dynamic && j % G == 0) { /* no act-order here: j == i */
                int64_t len = n - j < G ? n - j : G;
                for (int64_t r = 0; r < tr; r++) memcpy(gbuf + r * len, W + r * n + j, (size_t)len * sizeof(float));
                lb_qtensor sub;
                lb_status st = lb_rtn_quantize(gbuf, tr, len, &q->spec, &job->o->rtn, &sub);
                if (st != LB_OK) return st;
                take_group(q, &sub, r0, tr, j / G);
                lb_qtensor_free(&sub);
            }
            float d = U[i * n + i];
            for (int64_t r = 0; r < tr; r++) {
                float *row = W + r * n;
                int64_t k = lb_qtensor_group(q, r0 + r, j);
                int code = lb_qtensor_nearest_code(q, k, row[i]);
                q->codes[(r0 + r) * q->cols_padded + j] = (uint8_t)code;
                float e = (row[i] - lb_qtensor_value(q, r0 + r, j)) / d;
                E[r * bl + (i - c0)] = e;
                sum += (double)e * e;
                const float *u = U + i * n;
                for (int64_t m = i + 1; m < c1; m++) row[m] -= e * u[m];
            }
        }
        if (c1 < n)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)tr, (int)(n - c1), (int)bl, -1.0f, E,
                        (int)bl, U + c0 * n + c1, (int)n, 1.0f, W + c1, (int)n);
    }
    /* padding decodes to (nearly) zero, as RTN stores it */
    for (int64_t r = 0; r < tr; r++)
        for (int64_t c = n; c < q->cols_padded; c++)
            q->codes[(r0 + r) * q->cols_padded + c] =
                (uint8_t)lb_qtensor_nearest_code(q, lb_qtensor_group(q, r0 + r, c), 0.0f);
    *loss = sum;
    return LB_OK;
}

static lb_status check_inputs(const float *w, int64_t rows, int64_t cols, const double *xtx) {
    for (int64_t i = 0; i < rows * cols; i++)
        if (!isfinite(w[i]))
            return lb_fail(LB_ERR_NUMERIC, "weight at row %lld, column %lld is %s", (long long)(i / cols),
                           (long long)(i % cols), isnan(w[i]) ? "NaN" : "infinite");
    for (int64_t i = 0; i < cols * cols; i++)
        if (!isfinite(xtx[i]))
            return lb_fail(LB_ERR_NUMERIC, "X^T X entry (%lld, %lld) is %s", (long long)(i / cols),
                           (long long)(i % cols), isnan(xtx[i]) ? "NaN" : "infinite");
    /* both triangles, equal up to rounding (one filled triangle is a caller's bug) */
    for (int64_t i = 0; i < cols; i++)
        for (int64_t j = i + 1; j < cols; j++) {
            double a = xtx[i * cols + j], b = xtx[j * cols + i];
            if (fabs(a - b) > 1e-6 * (sqrt(fabs(xtx[i * cols + i] * xtx[j * cols + j])) + fabs(a) + fabs(b)))
                return lb_fail(LB_ERR_NUMERIC,
                               "X^T X is not symmetric: (%lld, %lld) = %g but (%lld, %lld) = %g "
                               "(both triangles must be filled)",
                               (long long)i, (long long)j, a, (long long)j, (long long)i, b);
        }
    for (int64_t i = 0; i < cols; i++)
        if (xtx[i * cols + i] < 0)
            return lb_fail(LB_ERR_NUMERIC, "X^T X has a negative diagonal entry (%lld: %g): not a sum of x x^T",
                           (long long)i, xtx[i * cols + i]);
    return LB_OK;
}

static lb_status gptq_run(const float *w, int64_t rows, int64_t cols, const double *xtx, const lb_qspec *spec,
                          const gptq_opts *o, lb_qtensor *q, lb_method_report *rep) {
    lb_status st = check_inputs(w, rows, cols, xtx);
    if (st != LB_OK) return st;
    memset(rep, 0, sizeof *rep);
    int *perm = malloc((size_t)cols * sizeof(int));
    char *dead = calloc((size_t)cols, 1);
    double *diag = malloc((size_t)cols * sizeof(double));
    float *U = lb_alloc((size_t)(cols * cols) * sizeof(float));
    float *w0 = NULL;
    if (!perm || !dead || !diag || !U) {
        st = LB_ERR_NOMEM;
        goto done;
    }
    for (int64_t i = 0; i < cols; i++) {
        perm[i] = (int)i;
        diag[i] = xtx[i * cols + i];
        dead[i] = diag[i] == 0.0;
        rep->dead_inputs += dead[i];
    }
    if (o->act_order) {
        sort_diag = diag; /* qsort has no context argument; only read during the call */
        qsort(perm, (size_t)cols, sizeof(int), by_diag_desc);
    }
    int openblas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
    double t0 = lb_now();
    st = inverse_factor(xtx, cols, perm, dead, o->percdamp, U, rep);
    rep->factor_seconds = lb_now() - t0;
    if (st != LB_OK) goto restore;

    /* initial weights, dead inputs zeroed (the static grids see them so) */
    w0 = lb_alloc((size_t)(rows * cols) * sizeof(float));
    if (!w0) {
        st = LB_ERR_NOMEM;
        goto restore;
    }
    memcpy(w0, w, (size_t)(rows * cols) * sizeof(float));
    if (rep->dead_inputs)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++)
                if (dead[c]) w0[r * cols + c] = 0.0f;
    /* every grid from the initial weights; dynamic mode refits groups later */
    st = lb_rtn_quantize(w0, rows, cols, spec, &o->rtn, q);
    if (st != LB_OK) goto restore;
    int dynamic = q->groups_per_row > 0 && q->group_len < cols && !o->act_order && !o->static_groups &&
                  !(lb_format_grid(spec) == LB_GRID_ABSMAX && spec->double_quant);
    gptq_job job = {o, cols, perm, U, dynamic};
    int64_t n_tiles = (rows + TILE_ROWS - 1) / TILE_ROWS;
    double *tile_loss = calloc((size_t)n_tiles, sizeof(double));
    if (!tile_loss) {
        st = LB_ERR_NOMEM;
        goto restore;
    }
    lb_worker_error err;
    lb_worker_error_init(&err);
#pragma omp parallel
    {
        int64_t B = o->block < cols ? o->block : cols;
        float *W = lb_alloc((size_t)(TILE_ROWS * cols) * sizeof(float));
        float *E = lb_alloc((size_t)(TILE_ROWS * B) * sizeof(float));
        float *gbuf = lb_alloc((size_t)(TILE_ROWS * q->group_len) * sizeof(float));
        if (!W || !E || !gbuf) lb_worker_error_set(&err, lb_fail(LB_ERR_NOMEM, "out of memory in gptq"));
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < n_tiles; t++) {
            if (lb_worker_error_failed(&err)) continue;
            int64_t r0 = t * TILE_ROWS, tr = rows - r0 < TILE_ROWS ? rows - r0 : TILE_ROWS;
            for (int64_t r = 0; r < tr; r++)
                for (int64_t i = 0; i < cols; i++) W[r * cols + i] = w0[(r0 + r) * cols + perm[i]];
            lb_status s = gptq_tile(&job, q, r0, tr, W, E, gbuf, &tile_loss[t]);
            if (s != LB_OK) lb_worker_error_set(&err, s);
        }
        lb_free(W);
        lb_free(E);
        lb_free(gbuf);
    }
    st = lb_worker_error_raise(&err);
    for (int64_t t = 0; t < n_tiles; t++) rep->proxy_loss += tile_loss[t];
    free(tile_loss);
    /* every scale came from lb_rtn_quantize, as stored (nf4 double
     * quantization: once, over all groups, static) */
    if (st != LB_OK) lb_qtensor_free(q);
restore:
    openblas_set_num_threads(openblas_threads);
done:
    free(perm);
    free(dead);
    free(diag);
    lb_free(U);
    lb_free(w0);
    return st;
}
#endif /* LB_HAVE_BLAS */

static lb_status gptq_quantize(const float *w, int64_t rows, int64_t cols, const lb_layer_stats *stats,
                               const lb_qspec *spec, const lb_method_opts *opts, lb_qtensor *q) {
    /* gptq_check and the statistics (X^T X of this linear's shape) were
     * checked by lb_quantize_tensor before this call */
#ifdef LB_HAVE_BLAS
    gptq_opts o;
    opts_from(opts, &o);
    lb_method_report local;
    lb_method_report *rep = opts->report ? opts->report : &local;
    double t0 = lb_now();
    lb_status st = gptq_run(w, rows, cols, stats->xtx, spec, &o, q, rep);
    rep->seconds = lb_now() - t0;
    return st;
#else
    (void)w;
    (void)rows;
    (void)cols;
    (void)stats;
    (void)spec;
    (void)opts;
    (void)q;
    (void)opts_from;
    return lb_fail(LB_ERR_UNSUPPORTED, "method gptq needs OpenBLAS and LAPACKE, and lowbit was built without them");
#endif
}

const lb_method lb_method_gptq = {
    .name = "gptq",
    .summary = "GPTQ: column-by-column rounding with OBS error feedback under H = X^T X (needs calibration)",
    .stats = LB_STATS_XTX,
    .options = lb_gptq_options,
    .n_options = LB_GPTQ_N_OPTIONS,
    .check = gptq_check,
    .quantize = gptq_quantize,
};
