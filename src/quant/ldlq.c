/* BlockLDLQ (Tseng, Chee, Sun, Kuleshov, De Sa 2024, "QuIP#: Even Better
 * LLM Quantization with Hadamard Incoherence and Lattice Codebooks",
 * arXiv:2402.04396, s4.1; METHODS.md s8; LDLQ is QuIP's, Chee et al. 2023,
 * arXiv:2307.13304): GPTQ's error feedback with the columns taken in blocks
 * of the codebook's vector length, for vector formats (e8p).
 *
 * Objective, per linear: min_Q tr(dW H dW^T), dW = W - Q, H = X^T X. With
 * H^-1 = U^T U (U upper, the factor gptq.c uses: lb_hinv_factor), the
 * columns are split in blocks B of d = 8 (the last may be shorter); in
 * order, every row's d-vector of the current weights is rounded jointly
 * (the nearest codeword at the row's scale, stage by stage for the
 * residual forms), its error delta = W_B - Q_B is expressed in U's rows,
 * e = delta U_BB^-1 (U_BB the d x d diagonal block: a triangular solve), and
 * the columns after B take the optimal correction given Q_B:
 *   W_F -= e U_BF
 * (the block form of GPTQ's w_j -= e_i U_ij; OBS on the block: with T the
 * columns from B on, (H_T^-1) = U_T^T U_T, so the update
 * -delta [H_T^-1]_BB^-1 [H_T^-1]_BF is -delta U_BB^-1 U_BF). This is
 * QuIP#'s BlockLDLQ: its block LDL H = L D L^T gives the same feedback.
 * The loss is sum ||e||^2 (= tr(dW H dW^T) for the damped H, as in GPTQ),
 * reported as the proxy loss with the damping used.
 *
 * Defaults and choices: percdamp 0.01 (lambda = percdamp mean(diag H), raised
 * x10 until H factors, as gptq); the row (or tensor) scales are rtn's on the
 * initial weights (src/quant/vector.c's search) and stay fixed while the
 * columns are rounded, as QuIP# fixes its scale before BlockLDLQ; dead
 * inputs (H_jj = 0) get H_jj = 1 and their weights zeroed, as gptq. No
 * act-order: the vector blocks are consecutive columns of the stored
 * layout. Deviations from QuIP#: its scale is the RMS of the whole
 * (incoherent) matrix over a fixed constant, ours per row by search (":row")
 * or per tensor; the incoherence processing is the common `rotate` option
 * (QuIP# always rotates; `rotate=hadamard` here). Updates past a block go
 * to the whole rest of the row at once (one GEMM per block of 8 columns, no
 * lazy batches: the result does not depend on a batch size).
 * Dense-and-sparse (lb_method_opts.keep): a kept weight takes no part in
 * its vector's search (weight 0), spreads no error and its final updated
 * value goes to kept[], as in gptq.
 * Determinism: rows in fixed tiles of 64, each tile on one thread with
 * single-threaded BLAS; the factor is thread-count independent. */
#include "core/blas_threads.h"
#include "quant/hinv.h"
#include "quant/method_rows.h"
#include "quant/vector.h"

#include <math.h>
#include <string.h>

#ifdef LB_HAVE_BLAS
#include <cblas.h>
#endif

#define TILE_ROWS 64

static const lb_method_option ldlq_options[] = {
    {"percdamp", LB_OPTION_FLOAT, "0.01", "damping added to diag(H), relative to its mean (raised if needed)", 0, 10,
     NULL, NULL},
};

static lb_status ldlq_check(const lb_qspec *spec, const lb_method_opts *o) {
    (void)o;
    if (lb_format_grid(spec) != LB_GRID_VECTOR) {
        char text[64];
        lb_qspec_format(spec, text, sizeof text);
        return lb_fail(LB_ERR_INVALID,
                       "method ldlq rounds whole vectors of a vector codebook (e8p2, e8p3, e8p4), not '%s' (gptq is "
                       "the same feedback for scalar formats)",
                       text);
    }
#ifndef LB_HAVE_BLAS
    return lb_fail(LB_ERR_UNSUPPORTED, "method ldlq needs OpenBLAS and LAPACKE, and lowbit was built without them");
#else
    return LB_OK;
#endif
}

#ifdef LB_HAVE_BLAS

typedef struct {
    int64_t cols;
    const float *U;      /* cols x cols, upper */
    const char *dead;    /* column -> H_jj == 0 */
    const uint8_t *keep; /* weights stored exactly elsewhere (NULL: none) */
    float *kept;         /* their final updated values (rows x cols) */
} ldlq_job;

/* What one thread rounds with: E (tile x 8: the errors in U's rows), the
 * block's vectors X, their weights WT and values VAL (tile x vec_dim each),
 * and the codebook search's scratch. */
typedef struct {
    float *E, *X, *WT, *VAL, *search;
} ldlq_scratch;

/* Rows [r0, r0 + tr) of W (tr x cols, updated in place). Every row's
 * vector of a block is rounded first (one batched search for learned
 * codebooks), then the errors spread. */
static void ldlq_tile(const ldlq_job *job, lb_qtensor *q, int64_t r0, int64_t tr, float *W, const ldlq_scratch *sc,
                      double *loss) {
    const int64_t n = job->cols;
    const int d = q->vec_dim;
    const float *U = job->U;
    float *E = sc->E;
    double sum = 0;
    for (int64_t v = 0; v < q->vecs_per_row; v++) {
        int64_t c0 = v * d, bl = n - c0 < d ? n - c0 : d, c1 = c0 + bl;
        for (int64_t r = 0; r < tr; r++)
            for (int64_t i = 0; i < d; i++) {
                sc->X[r * d + i] = i < bl ? W[r * n + c0 + i] : 0.0f;
                sc->WT[r * d + i] = i < bl && !(job->keep && job->keep[(r0 + r) * n + c0 + i]) ? 1.0f : 0.0f;
            }
        lb_vector_round_rows(q, r0, tr, v, sc->X, sc->WT, sc->VAL, sc->search);
        for (int64_t r = 0; r < tr; r++) {
            const float *x = sc->X + r * d, *wt = sc->WT + r * d, *val = sc->VAL + r * d;
            float delta[LB_VEC_MAX_DIM] = {0};
            for (int64_t i = 0; i < bl; i++) {
                if (wt[i] == 0.0f) { /* kept exactly in the sparse part: no error to spread */
                    if (!job->dead[c0 + i]) job->kept[(r0 + r) * n + c0 + i] = x[i];
                } else {
                    delta[i] = x[i] - val[i];
                }
            }
            /* e U_BB = delta (U_BB upper: forward substitution) */
            float *e = E + r * d;
            for (int64_t k = 0; k < bl; k++) {
                float s = delta[k];
                for (int64_t m = 0; m < k; m++) s -= e[m] * U[(c0 + m) * n + c0 + k];
                e[k] = s / U[(c0 + k) * n + c0 + k];
                sum += (double)e[k] * e[k];
            }
        }
        if (c1 < n)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)tr, (int)(n - c1), (int)bl, -1.0f, E, d,
                        U + c0 * n + c1, (int)n, 1.0f, W + c1, (int)n);
    }
    *loss = sum;
}

static lb_status check_inputs(const float *w, int64_t rows, int64_t cols, const double *xtx) {
    for (int64_t i = 0; i < rows * cols; i++)
        if (!isfinite(w[i]))
            return lb_fail(LB_ERR_NUMERIC, "weight at row %lld, column %lld is %s", (long long)(i / cols),
                           (long long)(i % cols), isnan(w[i]) ? "NaN" : "infinite");
    for (int64_t i = 0; i < cols; i++) /* finite: lb_quantize_tensor checked the statistics */
        if (xtx[i * cols + i] < 0)
            return lb_fail(LB_ERR_NUMERIC, "X^T X has a negative diagonal entry (%lld: %g): not a sum of x x^T",
                           (long long)i, xtx[i * cols + i]);
    return LB_OK;
}

static lb_status ldlq_run(const float *w, int64_t rows, int64_t cols, const double *xtx, const lb_qspec *spec,
                          double percdamp, const lb_method_opts *mo, lb_qtensor *q, lb_method_report *rep) {
    lb_status st = check_inputs(w, rows, cols, xtx);
    if (st != LB_OK) return st;
    memset(rep, 0, sizeof *rep);
    int *perm = lb_alloc((size_t)cols * sizeof(int));
    char *dead = lb_calloc((size_t)cols, 1);
    float *U = lb_alloc((size_t)(cols * cols) * sizeof(float)), *w0 = lb_alloc((size_t)(rows * cols) * sizeof(float));
    int64_t n_tiles = (rows + TILE_ROWS - 1) / TILE_ROWS;
    double *tile_loss = lb_calloc((size_t)n_tiles, sizeof(double));
    if (!perm || !dead || !U || !w0 || !tile_loss) {
        st = LB_ERR_NOMEM;
        goto done;
    }
    for (int64_t i = 0; i < cols; i++) {
        perm[i] = (int)i;
        dead[i] = xtx[i * cols + i] == 0.0;
        rep->dead_inputs += dead[i];
    }
    for (int64_t i = 0; i < rows * cols; i++) w0[i] = dead[i % cols] ? 0.0f : w[i];
    int openblas_threads = lb_blas_threads_single();
    double t0 = lb_now();
    st = lb_hinv_factor(xtx, cols, perm, dead, percdamp, U, rep);
    rep->factor_seconds = lb_now() - t0;
    /* the scales, a learned codebook (weighted by diag(H): VPTQ's Hessian-weighted k-means) and a first set
     * of codes, all overwritten, from rtn */
    if (st == LB_OK) {
        float *hdiag = lb_alloc((size_t)cols * sizeof(float));
        if (!hdiag) st = LB_ERR_NOMEM;
        /* relative to the largest (k-means does not care about a common factor), so huge statistics stay
         * finite in float */
        double hmax = 0;
        for (int64_t i = 0; i < cols; i++) hmax = fmax(hmax, xtx[i * cols + i]);
        for (int64_t i = 0; hdiag && i < cols; i++) hdiag[i] = hmax > 0 ? (float)(xtx[i * cols + i] / hmax) : 1.0f;
        if (st == LB_OK) st = lb_rtn_quantize_weighted(w0, rows, cols, hdiag, spec, NULL, q);
        lb_free(hdiag);
    }
    if (st == LB_OK) {
        ldlq_job job = {cols, U, dead, mo->keep, mo->kept};
        lb_worker_error err;
        lb_worker_error_init(&err);
#pragma omp parallel
        {
            float *W = lb_alloc((size_t)(TILE_ROWS * cols) * sizeof(float));
            float *E = lb_alloc(4 * (size_t)TILE_ROWS * LB_VEC_MAX_DIM * sizeof(float));
            size_t nsearch = lb_vector_round_scratch(q, TILE_ROWS);
            float *search = nsearch ? lb_alloc(nsearch * sizeof(float)) : NULL;
            ldlq_scratch sc = {E, E ? E + TILE_ROWS * LB_VEC_MAX_DIM : NULL,
                               E ? E + 2 * TILE_ROWS * LB_VEC_MAX_DIM : NULL,
                               E ? E + 3 * TILE_ROWS * LB_VEC_MAX_DIM : NULL, search};
            if (!W || !E || (nsearch && !search))
                lb_worker_error_set(&err, lb_fail(LB_ERR_NOMEM, "out of memory in ldlq"));
#pragma omp for schedule(dynamic, 1)
            for (int64_t t = 0; t < n_tiles; t++) {
                if (lb_worker_error_failed(&err)) continue;
                int64_t r0 = t * TILE_ROWS, tr = rows - r0 < TILE_ROWS ? rows - r0 : TILE_ROWS;
                memcpy(W, w0 + r0 * cols, (size_t)(tr * cols) * sizeof(float));
                ldlq_tile(&job, q, r0, tr, W, &sc, &tile_loss[t]);
            }
            lb_free(W);
            lb_free(E);
            lb_free(search);
        }
        st = lb_worker_error_raise(&err);
        for (int64_t t = 0; t < n_tiles; t++) rep->proxy_loss += tile_loss[t];
        if (st != LB_OK) lb_qtensor_free(q);
    }
    lb_blas_threads_restore(openblas_threads);
done:
    lb_free(perm);
    lb_free(dead);
    lb_free(U);
    lb_free(w0);
    lb_free(tile_loss);
    return st;
}
#endif /* LB_HAVE_BLAS */

static lb_status ldlq_quantize(const float *w, int64_t rows, int64_t cols, const lb_layer_stats *stats,
                               const lb_qspec *spec, const lb_method_opts *opts, lb_qtensor *q) {
    /* ldlq_check and the statistics were checked by lb_quantize_tensor */
#ifdef LB_HAVE_BLAS
    lb_method_report local;
    lb_method_report *rep = opts->report ? opts->report : &local;
    double t0 = lb_now();
    lb_status st = ldlq_run(w, rows, cols, stats->xtx, spec, opts->value[0], opts, q, rep);
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
    return lb_fail(LB_ERR_UNSUPPORTED, "method ldlq needs OpenBLAS and LAPACKE, and lowbit was built without them");
#endif
}

const lb_method lb_method_ldlq = {
    .name = "ldlq",
    .summary = "BlockLDLQ (QuIP#): GPTQ's error feedback over blocks of 8 columns, each row's 8-vector rounded to "
               "the nearest codeword jointly (vector formats: e8p; needs calibration)",
    .stats = LB_STATS_XTX,
    .options = ldlq_options,
    .n_options = (int)(sizeof ldlq_options / sizeof ldlq_options[0]),
    .check = ldlq_check,
    .quantize = ldlq_quantize,
};
