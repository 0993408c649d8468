/* Low-rank binary factors, data-free (what rtn does for littlebit:r<R>) and
 * weighted by X^T X (the littlebit method row).
 *
 * Paper: LittleBit (Lee et al. 2025, arXiv 2506.13771). The format
 * (src/formats/littlebit.c) stores W ~ diag(h) U diag(l) V^T diag(g), U and
 * V sign matrices of rank R. The paper trains it (QAT with distillation);
 * here only its initialization, Dual-SVID, plus a post-training refit:
 *   1. truncated SVD W ~ Us S Vs^T (rank R), U' = Us sqrt(S), V' = Vs sqrt(S);
 *   2. U = sign(U'), V = sign(V') (0 counts as +1);
 *   3. magnitudes by rank-1 approximations (SVID): |U'| ~ h l_u^T,
 *      |V'| ~ g l_v^T (alternating least squares from the row sums: the
 *      leading singular pair of a nonnegative matrix, nonnegative), l = l_u l_v;
 *   4. `rounds` rounds of exact least squares with the signs fixed, each of
 *      l (an R x R system), g (per column; with H an n x n system) and h
 *      (per row) in turn, on
 *        ||W - Q||_F^2                (rtn: data-free), or
 *        tr((W - Q) H (W - Q)^T)      (the method row: H = X^T X, the output error);
 *      each step minimizes the objective over its block exactly, so the
 *      objective never increases (tests/test_littlebit.c asserts it);
 *   5. h, g, l balanced (mean |h| = mean |g| = 1, the scale in l: Q unchanged)
 *      and stored against the fp16 grid: l rounded, then g refitted with l
 *      rounded and rounded, then h refitted and rounded.
 * Defaults: 10 rounds; the method row damps H by percdamp (0.01) times its
 * mean diagonal, as gptq, so dead inputs (H_jj = 0) leave g determined.
 * Deviations: no QAT, no residual compensation (the
 * paper's second low-rank binary branch on the residual); ranks beyond
 * min(rows, cols) start with l = 0 (the SVD has nothing there) and are then
 * used by the least squares like the others. Singular systems (repeated sign
 * columns) get a ridge of 1e-12 of their largest diagonal. */
#include "quant/littlebit.h"
#include "quant/method_rows.h"

#include <math.h>
#include <string.h>

#ifdef LB_HAVE_BLAS
#include <cblas.h>
#include <lapacke.h>

/* Everything the least-squares steps share, in double; all row-major. */
typedef struct {
    int64_t m, n;      /* rows, cols */
    int R;
    const double *W;   /* (m, n) */
    const double *H;   /* (n, n) or NULL: identity */
    const double *WH;  /* (m, n): W H, or W itself */
    const double *U;   /* (m, R): +-1 */
    const double *V;   /* (n, R): +-1 */
    double *h, *g, *l; /* m, n, R */
    double *P;         /* (m, n) scratch: U diag(l) V^T */
    double *Ul;        /* (m, R) scratch: U diag(l) */
    double *B, *BH;    /* (m, n) scratch */
} lowrank_fit;

/* P = U diag(l) V^T */
static void lowrank_product(lowrank_fit *f) {
    double *Ul = f->Ul;
    for (int64_t r = 0; r < f->m; r++)
        for (int j = 0; j < f->R; j++) Ul[r * f->R + j] = f->U[r * f->R + j] * f->l[j];
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)f->m, (int)f->n, f->R, 1.0, Ul, f->R, f->V, f->R, 0.0,
                f->P, (int)f->n);
}

/* out = X H ((m, n)), or X when H is the identity */
static void times_H(const lowrank_fit *f, const double *X, int64_t rows, double *out) {
    if (!f->H) {
        memcpy(out, X, (size_t)(rows * f->n) * sizeof(double));
        return;
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)f->n, (int)f->n, 1.0, X, (int)f->n, f->H,
                (int)f->n, 0.0, out, (int)f->n);
}

/* tr(E H E^T) with E = W - diag(h) P diag(g) */
static double lowrank_objective(lowrank_fit *f) {
    lowrank_product(f);
    for (int64_t r = 0; r < f->m; r++)
        for (int64_t c = 0; c < f->n; c++) f->B[r * f->n + c] = f->W[r * f->n + c] - f->h[r] * f->P[r * f->n + c] * f->g[c];
    times_H(f, f->B, f->m, f->BH);
    double s = 0.0;
    for (int64_t i = 0; i < f->m * f->n; i++) s += f->B[i] * f->BH[i];
    return s;
}

/* Solves the symmetric positive semi-definite system M x = b (k x k) in
 * place into b; M is overwritten. A singular M (a repeated sign column)
 * gets a growing ridge. Returns 0 if nothing worked (b then unusable). */
static int solve_psd(double *M, double *b, int k) {
    double *A = lb_alloc((size_t)k * (size_t)k * sizeof(double)), *x = lb_alloc((size_t)k * sizeof(double));
    double dmax = 0.0;
    int ok = 0;
    if (!A || !x) goto done;
    for (int i = 0; i < k; i++) dmax = fmax(dmax, M[(size_t)i * k + i]);
    if (!(dmax > 0.0)) goto done;
    for (double ridge = 0.0; ridge <= 1e-4 * dmax && !ok; ridge = ridge ? ridge * 100.0 : 1e-12 * dmax) {
        memcpy(A, M, (size_t)k * (size_t)k * sizeof(double));
        memcpy(x, b, (size_t)k * sizeof(double));
        for (int i = 0; i < k; i++) A[(size_t)i * k + i] += ridge;
        ok = LAPACKE_dposv(LAPACK_ROW_MAJOR, 'U', k, 1, A, k, x, 1) == 0;
    }
    if (ok) memcpy(b, x, (size_t)k * sizeof(double));
done:
    lb_free(A);
    lb_free(x);
    return ok;
}

/* l: Q = sum_j l_j a_j b_j^T with a_j = h . u_j, b_j = g . v_j; the normal
 * equations M l = t, M_jk = (a_j . a_k)(b_j^T H b_k), t_j = a_j^T W H b_j. */
static lb_status update_l(lowrank_fit *f) {
    const int R = f->R;
    lb_status st = LB_ERR_NOMEM;
    double *A = lb_alloc((size_t)(f->m * R) * sizeof(double)), *Bm = lb_alloc((size_t)(f->n * R) * sizeof(double));
    double *HB = lb_alloc((size_t)(f->n * R) * sizeof(double)), *WHB = lb_alloc((size_t)(f->m * R) * sizeof(double));
    double *AtA = lb_alloc((size_t)R * R * sizeof(double)), *BtHB = lb_alloc((size_t)R * R * sizeof(double));
    double *t = lb_alloc((size_t)R * sizeof(double));
    if (!A || !Bm || !HB || !WHB || !AtA || !BtHB || !t) goto done;
    for (int64_t r = 0; r < f->m; r++)
        for (int j = 0; j < R; j++) A[r * R + j] = f->h[r] * f->U[r * R + j];
    for (int64_t c = 0; c < f->n; c++)
        for (int j = 0; j < R; j++) Bm[c * R + j] = f->g[c] * f->V[c * R + j];
    if (f->H)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)f->n, R, (int)f->n, 1.0, f->H, (int)f->n, Bm, R,
                    0.0, HB, R);
    else
        memcpy(HB, Bm, (size_t)(f->n * R) * sizeof(double));
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, R, R, (int)f->m, 1.0, A, R, A, R, 0.0, AtA, R);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, R, R, (int)f->n, 1.0, Bm, R, HB, R, 0.0, BtHB, R);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)f->m, R, (int)f->n, 1.0, f->WH, (int)f->n, Bm, R,
                0.0, WHB, R);
    for (int j = 0; j < R; j++) {
        double s = 0.0;
        for (int64_t r = 0; r < f->m; r++) s += A[r * R + j] * WHB[r * R + j];
        t[j] = s;
    }
    for (int i = 0; i < R * R; i++) AtA[i] *= BtHB[i];
    if (solve_psd(AtA, t, R)) memcpy(f->l, t, (size_t)R * sizeof(double));
    st = LB_OK;
done:
    lb_free(A);
    lb_free(Bm);
    lb_free(HB);
    lb_free(WHB);
    lb_free(AtA);
    lb_free(BtHB);
    lb_free(t);
    return st;
}

/* g: Q = C diag(g), C = diag(h) P; without H one ratio per column, with H
 * ((C^T C) . H) g = diag(C^T W H) */
static lb_status update_g(lowrank_fit *f) {
    const int64_t m = f->m, n = f->n;
    lowrank_product(f);
    double *C = f->B;
    for (int64_t r = 0; r < m; r++)
        for (int64_t c = 0; c < n; c++) C[r * n + c] = f->h[r] * f->P[r * n + c];
    if (!f->H) {
        for (int64_t c = 0; c < n; c++) {
            double num = 0.0, den = 0.0;
            for (int64_t r = 0; r < m; r++) {
                num += f->W[r * n + c] * C[r * n + c];
                den += C[r * n + c] * C[r * n + c];
            }
            if (den > 0.0) f->g[c] = num / den;
        }
        return LB_OK;
    }
    double *G = lb_alloc((size_t)(n * n) * sizeof(double)), *rhs = lb_alloc((size_t)n * sizeof(double));
    if (!G || !rhs) {
        lb_free(G);
        lb_free(rhs);
        return LB_ERR_NOMEM;
    }
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, (int)n, (int)m, 1.0, C, (int)n, C, (int)n, 0.0, G,
                (int)n);
    for (int64_t i = 0; i < n * n; i++) G[i] *= f->H[i];
    for (int64_t c = 0; c < n; c++) {
        double s = 0.0;
        for (int64_t r = 0; r < m; r++) s += C[r * n + c] * f->WH[r * n + c];
        rhs[c] = s;
    }
    if (solve_psd(G, rhs, (int)n)) memcpy(f->g, rhs, (size_t)n * sizeof(double));
    lb_free(G);
    lb_free(rhs);
    return LB_OK;
}

/* h: row r is h_r B_r, B = P diag(g); h_r = (W_r H B_r^T) / (B_r H B_r^T) */
static void update_h(lowrank_fit *f) {
    const int64_t m = f->m, n = f->n;
    lowrank_product(f);
    for (int64_t r = 0; r < m; r++)
        for (int64_t c = 0; c < n; c++) f->B[r * n + c] = f->P[r * n + c] * f->g[c];
    times_H(f, f->B, m, f->BH);
    for (int64_t r = 0; r < m; r++) {
        double num = 0.0, den = 0.0;
        for (int64_t c = 0; c < n; c++) {
            num += f->WH[r * n + c] * f->B[r * n + c];
            den += f->B[r * n + c] * f->BH[r * n + c];
        }
        if (den > 0.0) f->h[r] = num / den;
    }
}

/* |X| ~ a b^T for a nonnegative (rows, k) X: alternating least squares from
 * a = row sums, which stays nonnegative and converges to the leading
 * singular pair (SVID's rank-1 step) */
static void rank1_nonnegative(const double *X, int64_t rows, int k, double *a, double *b) {
    for (int64_t r = 0; r < rows; r++) {
        a[r] = 0.0;
        for (int j = 0; j < k; j++) a[r] += X[r * k + j];
    }
    for (int it = 0; it < 200; it++) {
        double aa = 0.0, bb = 0.0, change = 0.0, norm = 0.0;
        for (int64_t r = 0; r < rows; r++) aa += a[r] * a[r];
        if (!(aa > 0.0)) break;
        for (int j = 0; j < k; j++) {
            double s = 0.0;
            for (int64_t r = 0; r < rows; r++) s += X[r * k + j] * a[r];
            b[j] = s / aa;
            bb += b[j] * b[j];
        }
        if (!(bb > 0.0)) break;
        for (int64_t r = 0; r < rows; r++) {
            double s = 0.0;
            for (int j = 0; j < k; j++) s += X[r * k + j] * b[j];
            s /= bb;
            change += (s - a[r]) * (s - a[r]);
            norm += s * s;
            a[r] = s;
        }
        if (change <= 1e-24 * norm) break;
    }
    double aa = 0.0;
    for (int64_t r = 0; r < rows; r++) aa += a[r] * a[r];
    if (!(aa > 0.0))
        for (int j = 0; j < k; j++) b[j] = 0.0;
}

static void round_fp16_vec(double *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = (double)lb_round_fp16((float)x[i]);
}

/* Dual-SVID: signs and magnitudes from the truncated SVD */
static lb_status dual_svid(lowrank_fit *f, double *Usign, double *Vsign) {
    const int64_t m = f->m, n = f->n, k = m < n ? m : n;
    const int R = f->R;
    lb_status st = LB_ERR_NOMEM;
    double *A = lb_alloc((size_t)(m * n) * sizeof(double)), *s = lb_alloc((size_t)k * sizeof(double));
    double *Us = lb_alloc((size_t)(m * k) * sizeof(double)), *Vt = lb_alloc((size_t)(k * n) * sizeof(double));
    double *absU = lb_calloc((size_t)(m * R), sizeof(double)), *absV = lb_calloc((size_t)(n * R), sizeof(double));
    double *lu = lb_alloc((size_t)R * sizeof(double)), *lv = lb_alloc((size_t)R * sizeof(double));
    if (!A || !s || !Us || !Vt || !absU || !absV || !lu || !lv) goto done;
    memcpy(A, f->W, (size_t)(m * n) * sizeof(double));
    if (LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', (int)m, (int)n, A, (int)n, s, Us, (int)k, Vt, (int)n) != 0) {
        st = lb_fail(LB_ERR_NUMERIC, "littlebit: the SVD of a %lld x %lld weight did not converge", (long long)m,
                     (long long)n);
        goto done;
    }
    for (int j = 0; j < R; j++) {
        double sq = j < k ? sqrt(s[j]) : 0.0;
        for (int64_t r = 0; r < m; r++) {
            double x = j < k ? Us[r * k + j] * sq : 0.0;
            Usign[r * R + j] = x < 0.0 ? -1.0 : 1.0;
            absU[r * R + j] = fabs(x);
        }
        for (int64_t c = 0; c < n; c++) {
            double x = j < k ? Vt[j * n + c] * sq : 0.0;
            Vsign[c * R + j] = x < 0.0 ? -1.0 : 1.0;
            absV[c * R + j] = fabs(x);
        }
    }
    rank1_nonnegative(absU, m, R, f->h, lu);
    rank1_nonnegative(absV, n, R, f->g, lv);
    for (int j = 0; j < R; j++) f->l[j] = lu[j] * lv[j];
    st = LB_OK;
done:
    lb_free(A);
    lb_free(s);
    lb_free(Us);
    lb_free(Vt);
    lb_free(absU);
    lb_free(absV);
    lb_free(lu);
    lb_free(lv);
    return st;
}

/* mean |h| = mean |g| = 1, the product's scale moved into l (Q unchanged):
 * keeps all three well inside fp16's range */
static void balance(lowrank_fit *f) {
    double sh = 0.0, sg = 0.0;
    for (int64_t r = 0; r < f->m; r++) sh += fabs(f->h[r]);
    for (int64_t c = 0; c < f->n; c++) sg += fabs(f->g[c]);
    sh /= (double)f->m;
    sg /= (double)f->n;
    if (!(sh > 0.0) || !(sg > 0.0)) return;
    for (int64_t r = 0; r < f->m; r++) f->h[r] /= sh;
    for (int64_t c = 0; c < f->n; c++) f->g[c] /= sg;
    for (int j = 0; j < f->R; j++) f->l[j] *= sh * sg;
}

lb_status lb_littlebit_quantize(const float *w, int64_t rows, int64_t cols, const lb_littlebit_opts *o,
                                lb_qtensor *q) {
    const int64_t m = rows, n = cols;
    const int R = q->spec.rank, rounds = o ? o->rounds : 10;
    if (q->spec.family == NULL || lb_format_grid(&q->spec) != LB_GRID_LOWRANK_BINARY || q->lowrank.rank != R)
        return lb_fail(LB_ERR_INVALID, "littlebit: the unpacked tensor is not a littlebit one");
    if (rounds < 0 || rounds > 1000) return lb_fail(LB_ERR_INVALID, "littlebit: %d rounds (0..1000)", rounds);
    lb_status st = LB_ERR_NOMEM;
    lowrank_fit f = {.m = m, .n = n, .R = R, .H = o ? o->xtx : NULL};
    double *W = lb_alloc((size_t)(m * n) * sizeof(double)), *WH = NULL;
    double *U = lb_alloc((size_t)(m * R) * sizeof(double)), *V = lb_alloc((size_t)(n * R) * sizeof(double));
    f.h = lb_calloc((size_t)m, sizeof(double));
    f.g = lb_calloc((size_t)n, sizeof(double));
    f.l = lb_calloc((size_t)R, sizeof(double));
    f.P = lb_alloc((size_t)(m * n) * sizeof(double));
    f.B = lb_alloc((size_t)(m * n) * sizeof(double));
    f.BH = lb_alloc((size_t)(m * n) * sizeof(double));
    f.Ul = lb_alloc((size_t)(m * R) * sizeof(double));
    if (!W || !U || !V || !f.h || !f.g || !f.l || !f.P || !f.B || !f.BH || !f.Ul) goto done;
    for (int64_t i = 0; i < m * n; i++) W[i] = (double)w[i];
    f.W = W;
    f.U = U;
    f.V = V;
    if (f.H) {
        if (!(WH = lb_alloc((size_t)(m * n) * sizeof(double)))) goto done;
        times_H(&f, W, m, WH);
        f.WH = WH;
    } else {
        f.WH = W;
    }
    if ((st = dual_svid(&f, U, V)) != LB_OK) goto done;
    if (o && o->objective) o->objective[0] = lowrank_objective(&f);
    for (int it = 0; it < rounds; it++) {
        if ((st = update_l(&f)) != LB_OK || (st = update_g(&f)) != LB_OK) goto done;
        update_h(&f);
        if (o && o->objective) o->objective[it + 1] = lowrank_objective(&f);
    }
    /* against the stored grid: each block refitted with the ones before it rounded */
    balance(&f);
    round_fp16_vec(f.l, R);
    if ((st = update_g(&f)) != LB_OK) goto done;
    round_fp16_vec(f.g, n);
    update_h(&f);
    for (int64_t r = 0; r < m; r++) {
        q->lowrank.h[r] = (float)f.h[r];
        for (int j = 0; j < R; j++) q->lowrank.u_sign[r * R + j] = U[r * R + j] > 0.0;
    }
    for (int64_t c = 0; c < n; c++) {
        q->lowrank.g[c] = (float)f.g[c];
        for (int j = 0; j < R; j++) q->lowrank.v_sign[c * R + j] = V[c * R + j] > 0.0;
    }
    for (int j = 0; j < R; j++) q->lowrank.l[j] = (float)f.l[j];
    st = lb_qtensor_store_scales(q);
done:
    lb_free(W);
    lb_free(WH);
    lb_free(U);
    lb_free(V);
    lb_free(f.h);
    lb_free(f.g);
    lb_free(f.l);
    lb_free(f.P);
    lb_free(f.B);
    lb_free(f.BH);
    lb_free(f.Ul);
    return st;
}

#else /* no dense linear algebra */

lb_status lb_littlebit_quantize(const float *w, int64_t rows, int64_t cols, const lb_littlebit_opts *o,
                                lb_qtensor *q) {
    (void)w;
    (void)rows;
    (void)cols;
    (void)o;
    (void)q;
    return lb_fail(LB_ERR_UNSUPPORTED, "littlebit needs OpenBLAS and LAPACKE (the SVD); lowbit was built without them");
}

#endif /* LB_HAVE_BLAS */

/* ---- the littlebit row: the same fit on the output error tr((W - Q) H (W - Q)^T) ---- */

static const lb_method_option littlebit_options[] = {
    {"rounds", LB_OPTION_INT, "10", "alternating least-squares rounds over (h, g, l) after Dual-SVID", 0, 1000, NULL,
     NULL},
    {"percdamp", LB_OPTION_FLOAT, "0.01", "damping added to diag(H), relative to its mean", 0, 10, NULL, NULL},
};

static lb_status littlebit_check(const lb_qspec *spec, const lb_method_opts *o) {
    (void)o;
    if (lb_format_grid(spec) != LB_GRID_LOWRANK_BINARY) {
        char text[64];
        lb_qspec_format(spec, text, sizeof text);
        return lb_fail(LB_ERR_INVALID, "method littlebit fits low-rank binary factors (littlebit:r<R>), not '%s'", text);
    }
    return LB_OK;
}

static lb_status littlebit_quantize_row(const float *w, int64_t rows, int64_t cols, const lb_layer_stats *stats,
                                        const lb_qspec *spec, const lb_method_opts *o, lb_qtensor *q) {
    for (int64_t i = 0; i < rows * cols; i++)
        if (!isfinite(w[i]))
            return lb_fail(LB_ERR_NUMERIC, "weight at row %lld, column %lld is %s", (long long)(i / cols),
                           (long long)(i % cols), isnan(w[i]) ? "NaN" : "infinite");
    double *H = lb_alloc((size_t)(cols * cols) * sizeof(double));
    if (!H) return LB_ERR_NOMEM;
    memcpy(H, stats->xtx, (size_t)(cols * cols) * sizeof(double));
    double mean_diag = 0.0;
    for (int64_t c = 0; c < cols; c++) mean_diag += H[c * cols + c] / (double)cols;
    /* an all-zero H (no signal at all): the plain Frobenius fit */
    double damp = mean_diag > 0.0 ? o->value[1] * mean_diag : 1.0;
    for (int64_t c = 0; c < cols; c++) H[c * cols + c] += damp;
    lb_littlebit_opts lo = {.rounds = (int)o->value[0], .xtx = H};
    lb_status st = lb_qtensor_init(q, spec, rows, cols);
    if (st == LB_OK && (st = lb_littlebit_quantize(w, rows, cols, &lo, q)) != LB_OK) lb_qtensor_free(q);
    lb_free(H);
    return st;
}

const lb_method lb_method_littlebit = {
    .name = "littlebit",
    .summary = "low-rank binary factors (littlebit:r<R>): Dual-SVID, then least squares on the output error tr(E H E^T)",
    .stats = LB_STATS_XTX,
    .options = littlebit_options,
    .n_options = (int)(sizeof littlebit_options / sizeof littlebit_options[0]),
    .check = littlebit_check,
    .quantize = littlebit_quantize_row,
};
