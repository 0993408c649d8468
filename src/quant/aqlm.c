/* AQLM: additive quantization (Egiazarian, Panferov, Kuznedelev, Frantar,
 * Babenko, Alistarh 2024, "Extreme Compression of Large Language Models via
 * Additive Quantization", arXiv:2401.06118; METHODS.md s9), as a method on
 * the vq family's residual stages (docs/methods/vq.md "AQLM").
 *
 * A vq<d>x<c>:r<M> tensor stores every d-vector of a row as the sum of M
 * codewords, one from each of M codebooks of K = 2^c, each stage with its
 * own scale per row (or tensor):  w_v ~ sum_m a_m(r) C_m[b_m(r, v)].
 * rtn and ldlq fill it greedily (residual VQ: stage m learns its codebook on
 * what stages < m left and picks its code alone). AQLM chooses the M codes
 * of a vector jointly and refits the codebooks jointly, minimizing
 *   sum_{r,c} h_c (W_rc - Q_rc)^2,   h_c = diag(H)_c / max diag(H)
 * (hweight=diag, the default: VPTQ's diagonal weighting, as ldlq's k-means
 * uses) or h_c = 1 (hweight=none: plain squared error, no calibration).
 * Starting from the residual-VQ solution (rtn's, weighted by h), each round
 *   1. refits the codebooks and scales with the codes fixed, by least
 *      squares: all M codebooks at once (per coordinate, normal equations of
 *      size M K, Cholesky; where M K > 1024, one codebook at a time, each
 *      exact: a codeword is the h a-weighted mean of what it must explain),
 *      then each stage's scales (<t, c>_h / <c, c>_h), alternating for up to
 *      16 sweeps until one lowers the objective by less than 1e-7
 *      relatively; then everything is rounded to fp16 (the grid stored), and
 *      the step is undone if that left the objective higher than before it;
 *   2. re-chooses every vector's M codes by beam search (beam=B, default 8
 *      as AQLM's): the beam starts at the vector's current codes; for
 *      m = 0..M-1 each kept tuple is extended by all K values of code m and
 *      the B tuples of least error of the whole sum are kept; a vector takes
 *      the best tuple only if it is strictly better than its current one.
 * Neither step raises the objective, so the result is never worse than the
 * residual-VQ start it came from (tested against rtn's). At most rounds=R
 * (default 8) rounds, stopping when one lowers the objective by less than
 * 1e-4 relatively.
 *
 * Deviations from AQLM: its objective is the full ||W X - Q X||^2 = tr(dW H
 * dW^T) (cross terms between the vectors of a row, beam search per vector
 * given the others); ours keeps only diag(H), so vectors are independent
 * (the weighting VPTQ's k-means uses). Its codebook update is Adam on that
 * objective; ours is the closed-form least squares above (the codebooks'
 * exact given the scales; the scales' alternated with it). Its codebooks start
 * from residual k-means too, but it has no per-stage scales (one scale per
 * output channel); ours are the format's and are refit with the codebooks.
 * No block or end-to-end fine-tuning, no PV-tuning.
 *
 * Threads: the code step runs rows in parallel (each row's vectors on one
 * thread, in order); the least-squares sums and the objective run serially
 * in index order: the result does not depend on the thread count. */
#include "quant/aqlm.h"

#include "quant/method_rows.h"

#include <math.h>
#include <string.h>

#define ROUND_TOL 1e-4  /* a round must lower the objective by this much, relatively, for another */
#define SWEEPS 16       /* least-squares sweeps per round at most */
#define SWEEP_TOL 1e-7  /* ... stopping when one lowers the objective by less, relatively */
#define JOINT_MAX 1024   /* codewords in all (M K) up to which the codebooks are solved jointly */
#define PARALLEL_MIN (1 << 16) /* vectors x codewords x beam below which the code step runs on one thread */

enum { OPT_BEAM, OPT_ROUNDS, OPT_HWEIGHT };
static const char *const hweights[] = {"diag", "none", NULL};

static const lb_method_option aqlm_options[] = {
    {"beam", LB_OPTION_INT, "8", "code tuples kept per codebook step of the beam search", 1, LB_AQLM_MAX_BEAM, NULL,
     NULL},
    {"rounds", LB_OPTION_INT, "8",
     "rounds of (codebook least squares, beam search) at most (0: the residual-VQ start, rtn's)", 0,
     LB_AQLM_MAX_ROUNDS, NULL, NULL},
    {"hweight", LB_OPTION_CHOICE, "diag",
     "objective: diag (each input's squared error weighted by diag X^T X; needs calibration) | none (plain squared "
     "error)",
     0, 0, hweights, "weighting"},
};

/* ---- the beam search ---------------------------------------------------------- */

/* An entry of the beam is 1 + d + M doubles: its error, its value (d), its codes (M; < 2^16, exact in a
 * double); a kept candidate 3: error, parent entry, code. */
size_t lb_aqlm_beam_scratch(int d, int M, int64_t K, int beam) {
    return (size_t)K + 2 * (size_t)beam * (size_t)(1 + d + M) + 3 * (size_t)beam;
}

/* the weighted squared error of codes b, its value summed in double */
static double tuple_error(const float *x, const double *h, int d, int M, int64_t K, const float *books,
                          const float *scales, const uint16_t *b) {
    double val[LB_VEC_MAX_DIM] = {0}, e = 0;
    for (int m = 0; m < M; m++) {
        const float *c = books + ((int64_t)m * K + b[m]) * d;
        for (int i = 0; i < d; i++) val[i] += (double)scales[m] * c[i];
    }
    for (int i = 0; i < d; i++) e += h[i] * (x[i] - val[i]) * (x[i] - val[i]);
    return e;
}

double lb_aqlm_beam_search(const float *x, const float *wt, int d, int M, int64_t K, const float *books,
                           const float *scales, int beam, uint16_t *codes, double *scratch) {
    const int E = 1 + d + M;
    double *hc2 = scratch, *cur = hc2 + K, *next = cur + (size_t)beam * E, *top = next + (size_t)beam * E;
    double h[LB_VEC_MAX_DIM], ht[LB_VEC_MAX_DIM];
    for (int i = 0; i < d; i++) h[i] = wt ? wt[i] : 1.0;
    /* the one starting entry: the current codes */
    for (int i = 0; i < d; i++) cur[1 + i] = 0;
    for (int m = 0; m < M; m++) {
        const float *c = books + ((int64_t)m * K + codes[m]) * d;
        for (int i = 0; i < d; i++) cur[1 + i] += (double)scales[m] * c[i];
        cur[1 + d + m] = codes[m];
    }
    const double start = tuple_error(x, h, d, M, K, books, scales, codes);
    cur[0] = start;
    int nb = 1;
    for (int m = 0; m < M; m++) {
        const double a = scales[m];
        const float *C = books + (int64_t)m * K * d;
        /* error of replacing code m of an entry by k, with t = x - (its value without stage m):
         *   sum_i h_i (t_i - a C_k,i)^2 = sum h t^2 - 2 a <h t, C_k> + a^2 <h, C_k^2> */
        for (int64_t k = 0; k < K; k++) {
            double s = 0;
            for (int i = 0; i < d; i++) s += h[i] * C[k * d + i] * C[k * d + i];
            hc2[k] = a * a * s;
        }
        int nt = 0;
        for (int e = 0; e < nb; e++) {
            const double *en = cur + (size_t)e * E;
            const float *old = C + (int64_t)en[1 + d + m] * d;
            double tt = 0;
            for (int i = 0; i < d; i++) {
                double t = x[i] - en[1 + i] + a * old[i];
                ht[i] = h[i] * t;
                tt += ht[i] * t;
            }
            for (int64_t k = 0; k < K; k++) {
                const float *ck = C + k * d;
                double dot = 0;
                for (int i = 0; i < d; i++) dot += ht[i] * ck[i];
                double err = tt - 2.0 * a * dot + hc2[k];
                if (nt == beam && !(err < top[3 * (nt - 1)])) continue;
                int p = nt < beam ? nt++ : beam - 1; /* insert after every equal one: ties keep the earlier */
                while (p > 0 && top[3 * (p - 1)] > err) {
                    memcpy(top + 3 * p, top + 3 * (p - 1), 3 * sizeof(double));
                    p--;
                }
                top[3 * p] = err, top[3 * p + 1] = e, top[3 * p + 2] = (double)k;
            }
        }
        for (int j = 0; j < nt; j++) {
            const double *par = cur + (size_t)top[3 * j + 1] * E;
            double *en = next + (size_t)j * E;
            const float *old = C + (int64_t)par[1 + d + m] * d, *neu = C + (int64_t)top[3 * j + 2] * d;
            memcpy(en, par, (size_t)E * sizeof(double));
            for (int i = 0; i < d; i++) en[1 + i] += a * ((double)neu[i] - old[i]);
            en[1 + d + m] = top[3 * j + 2];
            en[0] = top[3 * j];
        }
        double *t = cur;
        cur = next, next = t, nb = nt;
    }
    uint16_t best[LB_VEC_MAX_STAGES];
    for (int m = 0; m < M; m++) best[m] = (uint16_t)cur[1 + d + m];
    double e = tuple_error(x, h, d, M, K, books, scales, best); /* the entry's own sum drifted by the updates */
    if (!(e < start)) return start;
    memcpy(codes, best, (size_t)M * sizeof(uint16_t));
    return e;
}

/* ---- the objective ------------------------------------------------------------ */

/* vector v of row r: its weights x (0 past cols) and their weights h (0 past cols and where kept) */
static void gather(const float *w, int64_t cols, const float *colw, const uint8_t *keep, int64_t r, int64_t v, int d,
                   float *x, float *h) {
    for (int i = 0; i < d; i++) {
        int64_t c = v * d + i;
        int live = c < cols && !(keep && keep[r * cols + c]);
        x[i] = c < cols ? w[r * cols + c] : 0.0f;
        h[i] = live ? (colw ? colw[c] : 1.0f) : 0.0f;
    }
}

double lb_aqlm_objective(const lb_qtensor *q, const float *w, int64_t cols, const float *colw, const uint8_t *keep) {
    const int d = q->vec_dim, M = q->vec_stages;
    double total = 0;
    for (int64_t r = 0; r < q->rows; r++) {
        float a[LB_VEC_MAX_STAGES], x[LB_VEC_MAX_DIM], h[LB_VEC_MAX_DIM];
        double hd[LB_VEC_MAX_DIM];
        for (int m = 0; m < M; m++) a[m] = lb_qtensor_vec_scale(q, m, r);
        for (int64_t v = 0; v < q->vecs_per_row; v++) {
            gather(w, cols, colw, keep, r, v, d, x, h);
            for (int i = 0; i < d; i++) hd[i] = h[i];
            total += tuple_error(x, hd, d, M, q->vbook_size, q->vbook, a, q->vcodes + (r * q->vecs_per_row + v) * M);
        }
    }
    return total;
}

/* ---- the code step ------------------------------------------------------------ */

static lb_status code_step(lb_qtensor *q, const float *w, int64_t cols, const float *colw, const uint8_t *keep,
                           int beam) {
    const int d = q->vec_dim, M = q->vec_stages;
    const int64_t K = q->vbook_size;
    size_t ns = lb_aqlm_beam_scratch(d, M, K, beam);
    lb_worker_error err;
    lb_worker_error_init(&err);
#pragma omp parallel if ((double)q->rows * (double)q->vecs_per_row * (double)K * beam >= PARALLEL_MIN)
    {
        double *scratch = lb_alloc(ns * sizeof(double));
        if (!scratch) lb_worker_error_set(&err, lb_fail(LB_ERR_NOMEM, "out of memory in aqlm's beam search"));
#pragma omp for schedule(dynamic, 1)
        for (int64_t r = 0; r < q->rows; r++) {
            if (lb_worker_error_failed(&err)) continue;
            float a[LB_VEC_MAX_STAGES], x[LB_VEC_MAX_DIM], h[LB_VEC_MAX_DIM];
            for (int m = 0; m < M; m++) a[m] = lb_qtensor_vec_scale(q, m, r);
            for (int64_t v = 0; v < q->vecs_per_row; v++) {
                gather(w, cols, colw, keep, r, v, d, x, h);
                lb_aqlm_beam_search(x, h, d, M, K, q->vbook, a, beam, q->vcodes + (r * q->vecs_per_row + v) * M,
                                    scratch);
            }
        }
        lb_free(scratch);
    }
    return lb_worker_error_raise(&err);
}

/* ---- the least-squares step --------------------------------------------------- */

typedef struct {
    lb_qtensor *q;
    const float *w;
    int64_t cols;
    const float *colw;
    const uint8_t *keep;
    double *res;       /* rows x cols_padded: w - value */
    double *num, *den; /* max(K d, M K, n_groups) each */
    double *A;         /* (M K)^2 for the joint codebook solve; NULL: one stage at a time */
    float *save_book, *save_scale; /* the step's start, to undo it */
} fit;

static void residual_init(const fit *f) {
    lb_qtensor *q = f->q;
    const int d = q->vec_dim, M = q->vec_stages;
    for (int64_t r = 0; r < q->rows; r++)
        for (int64_t v = 0; v < q->vecs_per_row; v++) {
            double *res = f->res + r * q->cols_padded + v * d;
            const uint16_t *b = q->vcodes + (r * q->vecs_per_row + v) * M;
            for (int i = 0; i < d; i++) res[i] = v * d + i < f->cols ? f->w[r * f->cols + v * d + i] : 0.0;
            for (int m = 0; m < M; m++) {
                const float *c = q->vbook + ((int64_t)m * q->vbook_size + b[m]) * d;
                for (int i = 0; i < d; i++) res[i] -= (double)lb_qtensor_vec_scale(q, m, r) * c[i];
            }
        }
}

static double residual_objective(const fit *f) {
    const lb_qtensor *q = f->q;
    const int d = q->vec_dim;
    double total = 0;
    float x[LB_VEC_MAX_DIM], h[LB_VEC_MAX_DIM];
    for (int64_t r = 0; r < q->rows; r++)
        for (int64_t v = 0; v < q->vecs_per_row; v++) {
            const double *res = f->res + r * q->cols_padded + v * d;
            gather(f->w, f->cols, f->colw, f->keep, r, v, d, x, h);
            for (int i = 0; i < d; i++) total += h[i] * res[i] * res[i];
        }
    return total;
}

/* Codebook m given everything else: codeword k, coordinate i, is
 *   sum h a t / sum h a^2 over the vectors coding k at stage m,
 * t = what stage m must explain (the residual plus its current value);
 * a codeword no vector uses (with weight) keeps its value. */
static void refit_book(const fit *f, int m) {
    lb_qtensor *q = f->q;
    const int d = q->vec_dim, M = q->vec_stages;
    const int64_t K = q->vbook_size;
    float *C = q->vbook + (int64_t)m * K * d, x[LB_VEC_MAX_DIM], h[LB_VEC_MAX_DIM];
    memset(f->num, 0, (size_t)(K * d) * sizeof(double));
    memset(f->den, 0, (size_t)(K * d) * sizeof(double));
    for (int64_t r = 0; r < q->rows; r++) {
        double a = lb_qtensor_vec_scale(q, m, r);
        for (int64_t v = 0; v < q->vecs_per_row; v++) {
            const double *res = f->res + r * q->cols_padded + v * d;
            int64_t k = q->vcodes[(r * q->vecs_per_row + v) * M + m];
            gather(f->w, f->cols, f->colw, f->keep, r, v, d, x, h);
            for (int i = 0; i < d; i++) {
                double t = res[i] + a * C[k * d + i];
                f->num[k * d + i] += h[i] * a * t;
                f->den[k * d + i] += h[i] * a * a;
            }
        }
    }
    float *old = lb_alloc((size_t)(K * d) * sizeof(float));
    if (!old) return; /* no memory: this block stays as it was (the step still never rises) */
    memcpy(old, C, (size_t)(K * d) * sizeof(float));
    for (int64_t j = 0; j < K * d; j++)
        if (f->den[j] > 0) C[j] = (float)(f->num[j] / f->den[j]);
    for (int64_t r = 0; r < q->rows; r++) {
        double a = lb_qtensor_vec_scale(q, m, r);
        for (int64_t v = 0; v < q->vecs_per_row; v++) {
            double *res = f->res + r * q->cols_padded + v * d;
            int64_t k = q->vcodes[(r * q->vecs_per_row + v) * M + m];
            for (int i = 0; i < d; i++) res[i] -= a * ((double)C[k * d + i] - old[k * d + i]);
        }
    }
    lb_free(old);
}

/* Stage m's scale of each group given everything else: <t, c>_h / <c, c>_h
 * over the group's vectors, c = the stage's codewords, t = what the stage
 * must explain; a group with <c, c>_h = 0 keeps its scale. */
static void refit_scales(const fit *f, int m) {
    lb_qtensor *q = f->q;
    const int d = q->vec_dim, M = q->vec_stages;
    const float *C = q->vbook + (int64_t)m * q->vbook_size * d;
    float x[LB_VEC_MAX_DIM], h[LB_VEC_MAX_DIM];
    memset(f->num, 0, (size_t)q->n_groups * sizeof(double));
    memset(f->den, 0, (size_t)q->n_groups * sizeof(double));
    for (int64_t r = 0; r < q->rows; r++) {
        int64_t g = q->groups_per_row ? r : 0;
        double a = lb_qtensor_vec_scale(q, m, r);
        for (int64_t v = 0; v < q->vecs_per_row; v++) {
            const double *res = f->res + r * q->cols_padded + v * d;
            const float *c = C + (int64_t)q->vcodes[(r * q->vecs_per_row + v) * M + m] * d;
            gather(f->w, f->cols, f->colw, f->keep, r, v, d, x, h);
            for (int i = 0; i < d; i++) {
                f->num[g] += h[i] * (res[i] + a * c[i]) * c[i];
                f->den[g] += h[i] * (double)c[i] * c[i];
            }
        }
    }
    for (int64_t r = 0; r < q->rows; r++) {
        int64_t g = q->groups_per_row ? r : 0;
        if (!(f->den[g] > 0)) continue;
        double a = lb_qtensor_vec_scale(q, m, r), an = (float)(f->num[g] / f->den[g]);
        for (int64_t v = 0; v < q->vecs_per_row; v++) {
            double *res = f->res + r * q->cols_padded + v * d;
            const float *c = C + (int64_t)q->vcodes[(r * q->vecs_per_row + v) * M + m] * d;
            for (int i = 0; i < d; i++) res[i] -= (an - a) * c[i];
        }
    }
    for (int64_t g = 0; g < q->n_groups; g++)
        if (f->den[g] > 0) q->scale[m * q->n_groups + g] = (float)(f->num[g] / f->den[g]);
}

/* All M codebooks at once, the scales fixed: for each coordinate i the
 * M K values C_m[k][i] solve the normal equations
 *   sum_vectors h_i a a^T z = sum_vectors h_i a x_i,   a = sum_m a_m e_(m, b_m),
 * plus lambda (z - z_now) (lambda = 1e-7 of the mean diagonal: a codeword no
 * vector uses, and the shift C_1 + s / a_1, C_2 - s / a_2 that tensor scales
 * leave free, stay where they are), by Cholesky in double. A a not positive
 * definite in float terms leaves the coordinate as it was. A: (M K)^2. */
static void refit_books_joint(const fit *f, double *A, double *rhs) {
    lb_qtensor *q = f->q;
    const int d = q->vec_dim, M = q->vec_stages;
    const int64_t K = q->vbook_size, n = M * K;
    float x[LB_VEC_MAX_DIM], h[LB_VEC_MAX_DIM];
    for (int i = 0; i < d; i++) {
        memset(A, 0, (size_t)(n * n) * sizeof(double));
        memset(rhs, 0, (size_t)n * sizeof(double));
        for (int64_t r = 0; r < q->rows; r++) {
            double a[LB_VEC_MAX_STAGES];
            for (int m = 0; m < M; m++) a[m] = lb_qtensor_vec_scale(q, m, r);
            for (int64_t v = 0; v < q->vecs_per_row; v++) {
                gather(f->w, f->cols, f->colw, f->keep, r, v, d, x, h);
                if (h[i] == 0.0f) continue;
                const uint16_t *b = q->vcodes + (r * q->vecs_per_row + v) * M;
                for (int m = 0; m < M; m++) {
                    int64_t jm = m * K + b[m];
                    rhs[jm] += h[i] * a[m] * x[i];
                    for (int l = 0; l < M; l++) A[jm * n + l * K + b[l]] += h[i] * a[m] * a[l];
                }
            }
        }
        double tr = 0;
        for (int64_t j = 0; j < n; j++) tr += A[j * n + j];
        if (!(tr > 0)) continue;
        const double lambda = 1e-7 * tr / (double)n;
        for (int64_t j = 0; j < n; j++) {
            A[j * n + j] += lambda;
            rhs[j] += lambda * q->vbook[j * d + i]; /* stage m's codeword k is vbook entry m K + k */
        }
        /* A = L L^T in the lower triangle */
        int ok = 1;
        for (int64_t j = 0; j < n && ok; j++) {
            for (int64_t k = 0; k < j; k++) {
                double s = A[j * n + k];
                for (int64_t l = 0; l < k; l++) s -= A[j * n + l] * A[k * n + l];
                A[j * n + k] = s / A[k * n + k];
            }
            double s = A[j * n + j];
            for (int64_t l = 0; l < j; l++) s -= A[j * n + l] * A[j * n + l];
            ok = s > 0;
            A[j * n + j] = ok ? sqrt(s) : 0;
        }
        if (!ok) continue;
        for (int64_t j = 0; j < n; j++) { /* L y = rhs, then L^T z = y */
            double s = rhs[j];
            for (int64_t l = 0; l < j; l++) s -= A[j * n + l] * rhs[l];
            rhs[j] = s / A[j * n + j];
        }
        for (int64_t j = n - 1; j >= 0; j--) {
            double s = rhs[j];
            for (int64_t l = j + 1; l < n; l++) s -= A[l * n + j] * rhs[l];
            rhs[j] = s / A[j * n + j];
        }
        for (int64_t j = 0; j < n; j++) q->vbook[j * d + i] = (float)rhs[j];
    }
    residual_init(f);
}

/* The least-squares step from objective `before`; returns the objective
 * after it (fp16-rounded values), or `before` with everything restored when
 * rounding left it higher. */
static double refit_step(const fit *f, double before) {
    lb_qtensor *q = f->q;
    const int M = q->vec_stages;
    const int64_t nbook = M * q->vbook_size * q->vec_dim, nscale = M * q->n_groups;
    memcpy(f->save_book, q->vbook, (size_t)nbook * sizeof(float));
    memcpy(f->save_scale, q->scale, (size_t)nscale * sizeof(float));
    residual_init(f);
    double prev = before;
    for (int s = 0; s < SWEEPS; s++) {
        if (f->A) refit_books_joint(f, f->A, f->num);
        for (int m = 0; m < M; m++) {
            if (!f->A) refit_book(f, m);
            refit_scales(f, m);
        }
        double o = residual_objective(f);
        int small = !(prev - o > SWEEP_TOL * prev);
        prev = o;
        if (small) break;
    }
    int finite = 1;
    for (int64_t i = 0; i < nbook; i++) finite &= isfinite(q->vbook[i] = lb_round_fp16(q->vbook[i])) != 0;
    for (int64_t i = 0; i < nscale; i++) finite &= isfinite(q->scale[i] = lb_round_fp16(q->scale[i])) != 0;
    double after = finite ? lb_aqlm_objective(q, f->w, f->cols, f->colw, f->keep) : INFINITY;
    if (after <= before) return after;
    memcpy(q->vbook, f->save_book, (size_t)nbook * sizeof(float));
    memcpy(q->scale, f->save_scale, (size_t)nscale * sizeof(float));
    return before;
}

static void fit_free(fit *f) {
    lb_free(f->res);
    lb_free(f->num);
    lb_free(f->den);
    lb_free(f->A);
    lb_free(f->save_book);
    lb_free(f->save_scale);
}

static lb_status fit_init(fit *f, lb_qtensor *q, const float *w, int64_t cols, const float *colw,
                          const uint8_t *keep) {
    const int64_t K = q->vbook_size, M = q->vec_stages;
    int64_t nacc = K * q->vec_dim > q->n_groups ? K * q->vec_dim : q->n_groups;
    nacc = nacc > M * K ? nacc : M * K;
    *f = (fit){q, w, cols, colw, keep, lb_alloc((size_t)(q->rows * q->cols_padded) * sizeof(double)),
               lb_alloc((size_t)nacc * sizeof(double)), lb_alloc((size_t)nacc * sizeof(double)),
               M * K <= JOINT_MAX ? lb_alloc((size_t)(M * K * M * K) * sizeof(double)) : NULL,
               lb_alloc((size_t)(M * K * q->vec_dim) * sizeof(float)),
               lb_alloc((size_t)(M * q->n_groups) * sizeof(float))};
    if (f->res && f->num && f->den && f->save_book && f->save_scale && (M * K > JOINT_MAX || f->A)) return LB_OK;
    fit_free(f);
    memset(f, 0, sizeof *f);
    return LB_ERR_NOMEM;
}

lb_status lb_aqlm_refit(lb_qtensor *q, const float *w, int64_t cols, const float *colw, const uint8_t *keep,
                        double *objective) {
    fit f;
    lb_status st = fit_init(&f, q, w, cols, colw, keep);
    if (st == LB_OK) *objective = refit_step(&f, lb_aqlm_objective(q, w, cols, colw, keep));
    fit_free(&f);
    return st;
}

lb_status lb_aqlm_quantize(const float *w, int64_t rows, int64_t cols, const float *colw, const uint8_t *keep,
                           const lb_qspec *spec, int beam, int rounds, lb_qtensor *q, lb_aqlm_trace *trace) {
    if (trace) trace->n = 0;
    if (strcmp(lb_format_family_name(spec), "vq") || spec->vec_stages < 2)
        return lb_fail(LB_ERR_INVALID, "aqlm: needs a vq<d>x<c>:r<M> format with M >= 2 codebooks");
    if (beam < 1 || beam > LB_AQLM_MAX_BEAM || rounds < 0 || rounds > LB_AQLM_MAX_ROUNDS)
        return lb_fail(LB_ERR_INVALID, "aqlm: beam 1..%d and rounds 0..%d, not %d and %d", LB_AQLM_MAX_BEAM,
                       LB_AQLM_MAX_ROUNDS, beam, rounds);
    lb_status st = lb_rtn_quantize_weighted(w, rows, cols, colw, spec, NULL, q);
    if (st != LB_OK) return st;
    fit f;
    st = fit_init(&f, q, w, cols, colw, keep);
    double obj = st == LB_OK ? lb_aqlm_objective(q, w, cols, colw, keep) : 0;
    if (trace && st == LB_OK) trace->objective[trace->n++] = obj;
    for (int t = 0; st == LB_OK && t < rounds && obj > 0; t++) {
        double start = obj;
        obj = refit_step(&f, obj);
        if (trace) trace->objective[trace->n++] = obj;
        if ((st = code_step(q, w, cols, colw, keep, beam)) != LB_OK) break;
        obj = lb_aqlm_objective(q, w, cols, colw, keep);
        if (trace) trace->objective[trace->n++] = obj;
        if (!(start - obj > ROUND_TOL * start)) break;
    }
    fit_free(&f);
    if (st == LB_OK) st = lb_qtensor_store_scales(q); /* already fp16: checks they are finite */
    if (st != LB_OK) lb_qtensor_free(q);
    return st;
}

/* ---- the row ------------------------------------------------------------------- */

static unsigned aqlm_stats_for(const lb_method_opts *o) {
    return (int)o->value[OPT_HWEIGHT] == 0 ? LB_STATS_XTX : 0u;
}

static lb_status aqlm_check(const lb_qspec *spec, const lb_method_opts *o) {
    (void)o;
    if (strcmp(lb_format_family_name(spec), "vq") || spec->vec_stages < 2) {
        char text[64];
        lb_qspec_format(spec, text, sizeof text);
        return lb_fail(LB_ERR_INVALID,
                       "method aqlm chooses the codes of summed learned codebooks jointly: it takes vq<d>x<c>:r<M> "
                       "with M = 2..%d (e.g. vq2x4:r2:row), not '%s' (one codebook: rtn's k-means codes are already "
                       "the nearest)",
                       LB_VEC_MAX_STAGES, text);
    }
    return LB_OK;
}

static lb_status aqlm_quantize(const float *w, int64_t rows, int64_t cols, const lb_layer_stats *stats,
                               const lb_qspec *spec, const lb_method_opts *opts, lb_qtensor *q) {
    double t0 = lb_now();
    float *colw = NULL;
    if ((int)opts->value[OPT_HWEIGHT] == 0) { /* statistics present and finite: lb_quantize_tensor checked */
        const double *xtx = stats->xtx;
        double hmax = 0;
        for (int64_t i = 0; i < cols; i++) {
            if (xtx[i * cols + i] < 0)
                return lb_fail(LB_ERR_NUMERIC, "X^T X has a negative diagonal entry (%lld: %g): not a sum of x x^T",
                               (long long)i, xtx[i * cols + i]);
            hmax = fmax(hmax, xtx[i * cols + i]);
        }
        if (!(colw = lb_alloc((size_t)cols * sizeof(float)))) return LB_ERR_NOMEM;
        /* relative to the largest, so huge statistics stay finite in float; no signal at all: plain error */
        for (int64_t i = 0; i < cols; i++) colw[i] = hmax > 0 ? (float)(xtx[i * cols + i] / hmax) : 1.0f;
    }
    lb_status st = lb_aqlm_quantize(w, rows, cols, colw, opts->keep, spec, (int)opts->value[OPT_BEAM],
                                    (int)opts->value[OPT_ROUNDS], q, NULL);
    lb_free(colw);
    if (opts->report) opts->report->seconds = lb_now() - t0;
    return st;
}

const lb_method lb_method_aqlm = {
    .name = "aqlm",
    .summary = "AQLM: the summed codebooks of vq<d>x<c>:r<M> refit jointly by least squares and the M codes of each "
               "vector chosen jointly by beam search, from the residual-VQ start (diag X^T X weighted by default)",
    .stats = LB_STATS_NONE,
    .stats_for = aqlm_stats_for,
    .options = aqlm_options,
    .n_options = (int)(sizeof aqlm_options / sizeof aqlm_options[0]),
    .check = aqlm_check,
    .quantize = aqlm_quantize,
};
