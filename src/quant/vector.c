/* Round-to-nearest on vector codebooks (e8p, vq; src/quant/vector.h).
 *
 * Learned codebooks (vq: the family allocates lb_qtensor.vbook) are learned
 * first, stage by stage, and the codes are then the nearest codewords
 * (learned_rtn below, src/quant/vq_kmeans.c). For computed codebooks (e8p):
 *
 * A vector family stores, per group (a row or the tensor) and stage, one
 * scale; a vector's value is the sum over stages of scale x codeword. For a
 * fixed scale the best codes are the nearest codewords, which the family
 * finds exactly; what is left to choose is the scale. QuIP# fixes it at the
 * RMS of the (incoherent) weights over the codebook's RMS-matched constant
 * (its "opt_scale"); here that is only the start of a small search, since
 * a row of 64 weights (8 vectors) is far from the Gaussian average and one
 * scale per tensor is not per row:
 *   1. candidates f x RMS x unit_scale, f = 0.7, 0.8, .., 1.3; the best;
 *   2. f +- 0.05 around it;
 *   3. twice: the least-squares scale for the chosen codes (<x, c> / <c, c>),
 *      re-rounded, kept if it lowers the error (a Lloyd step on the scale;
 *      it makes a matrix that is exactly scale x codewords come back exact).
 * Every candidate is fp16-rounded before it is scored: the grid searched is
 * the grid stored. Stages are greedy (residual VQ, as QuIP#'s 3- and 4-bit
 * codebooks): stage s's scale and codes are chosen on what the stages
 * before it left. Rows are independent (one thread each, fixed order);
 * tensor scales sum per-row errors in row order: deterministic for any
 * thread count. */
#include "quant/vector.h"

#include "quant/vq_kmeans.h"

#include <math.h>
#include <string.h>

#define VEC_PARALLEL_MIN 16384

/* squared error of rows [r0, r1) of the residual res (rows x cols_padded,
 * padding weighted 0 by wt) coded at scale a by stage s; codes written when
 * `commit` (then res becomes the new residual) */
static double stage_error(lb_qtensor *q, int s, int64_t row, float a, float *res, const float *wt, int commit) {
    const int d = q->vec_dim;
    double err = 0;
    for (int64_t v = 0; v < q->vecs_per_row; v++) {
        float *x = res + v * d, y[LB_VEC_MAX_DIM], cw[LB_VEC_MAX_DIM];
        const float *w = wt + v * d;
        for (int i = 0; i < d; i++) y[i] = a != 0.0f ? x[i] / a : 0.0f;
        unsigned code = lb_qtensor_vec_nearest(q, s, y, w);
        lb_qtensor_vec_codeword(q, s, code, cw);
        for (int i = 0; i < d; i++) {
            float e = x[i] - a * cw[i];
            err += (double)w[i] * e * e;
            if (commit) x[i] = e;
        }
        if (commit) *lb_qtensor_vcode(q, row, v, s) = (uint16_t)code;
    }
    return err;
}

/* <x, c> and <c, c> for the codes stage s picks at scale a (weighted) */
static void stage_moments(const lb_qtensor *q, int s, float a, const float *res, const float *wt, double *xc,
                          double *cc) {
    const int d = q->vec_dim;
    for (int64_t v = 0; v < q->vecs_per_row; v++) {
        const float *x = res + v * d, *w = wt + v * d;
        float y[LB_VEC_MAX_DIM], cw[LB_VEC_MAX_DIM];
        for (int i = 0; i < d; i++) y[i] = a != 0.0f ? x[i] / a : 0.0f;
        lb_qtensor_vec_codeword(q, s, lb_qtensor_vec_nearest(q, s, y, w), cw);
        for (int i = 0; i < d; i++) *xc += (double)w[i] * x[i] * cw[i], *cc += (double)w[i] * cw[i] * cw[i];
    }
}

typedef struct {
    lb_qtensor *q;
    int64_t r0, r1; /* the rows sharing the scale */
    float *res;     /* rows x cols_padded residuals */
    const float *wt;
} scale_group;

static double group_error(const scale_group *g, int s, float a) {
    double err = 0;
    int64_t n = g->q->cols_padded;
    if (g->r1 - g->r0 == 1) return stage_error(g->q, s, g->r0, a, g->res + g->r0 * n, g->wt, 0);
    double *per = lb_alloc((size_t)(g->r1 - g->r0) * sizeof(double));
    if (!per) return INFINITY; /* the caller's search stays on its last scale */
#pragma omp parallel for schedule(static) if ((g->r1 - g->r0) * n >= VEC_PARALLEL_MIN)
    for (int64_t r = g->r0; r < g->r1; r++) per[r - g->r0] = stage_error(g->q, s, r, a, g->res + r * n, g->wt, 0);
    for (int64_t r = 0; r < g->r1 - g->r0; r++) err += per[r];
    lb_free(per);
    return err;
}

/* Chooses stage s's scale for the group and commits its codes. */
static void fit_stage(const scale_group *g, int s, int64_t k) {
    lb_qtensor *q = g->q;
    const int64_t n = q->cols_padded;
    double ss = 0, cnt = 0;
    for (int64_t r = g->r0; r < g->r1; r++)
        for (int64_t c = 0; c < n; c++) ss += (double)g->wt[c] * g->res[r * n + c] * g->res[r * n + c], cnt += g->wt[c];
    float rms = cnt > 0 ? (float)sqrt(ss / cnt) : 0.0f, best = 0.0f;
    if (rms > 0.0f) {
        float base = rms * lb_qtensor_vec_unit_scale(q, s);
        double best_err = INFINITY;
        float best_f = 1.0f;
        for (int i = 0; i <= 6; i++) {
            float f = 0.7f + 0.1f * (float)i, a = lb_round_fp16(base * f);
            double e = group_error(g, s, a);
            if (e < best_err) best_err = e, best = a, best_f = f;
        }
        for (int i = -1; i <= 1; i += 2) {
            float a = lb_round_fp16(base * (best_f + 0.05f * (float)i));
            double e = group_error(g, s, a);
            if (e < best_err) best_err = e, best = a;
        }
        for (int it = 0; it < 2; it++) {
            double xc = 0, cc = 0;
            for (int64_t r = g->r0; r < g->r1; r++) stage_moments(q, s, best, g->res + r * n, g->wt, &xc, &cc);
            if (!(cc > 0)) break;
            float a = lb_round_fp16((float)(xc / cc));
            if (!(a > 0.0f) || !isfinite(a) || a == best) break;
            double e = group_error(g, s, a);
            if (!(e < best_err)) break;
            best_err = e, best = a;
        }
    }
    q->scale[s * q->n_groups + k] = best;
#pragma omp parallel for schedule(static) if (g->r1 - g->r0 > 1 && (g->r1 - g->r0) * n >= VEC_PARALLEL_MIN)
    for (int64_t r = g->r0; r < g->r1; r++) stage_error(q, s, r, best, g->res + r * n, g->wt, 1);
}

/* A learned codebook (vbook): per stage, the group scales are the RMS of
 * what the stage codes (the family's unit scale is 1), the codebook is
 * weighted k-means of the scaled vectors (coordinate weights colw, times
 * scale^2 so the objective is the error in the weights' own units), then
 * every vector's code is the exact nearest codeword of the fp16 codebook. */
static lb_status learned_rtn(lb_qtensor *q, float *res, const float *wt) {
    const int64_t n = q->cols_padded, rows = q->rows, nv = q->rows * q->vecs_per_row;
    const int d = q->vec_dim;
    float *y = lb_alloc((size_t)(rows * n) * sizeof(float)), *roww = lb_alloc((size_t)rows * sizeof(float));
    uint32_t *codes = lb_alloc((size_t)nv * sizeof(uint32_t));
    lb_status st = y && roww && codes ? LB_OK : LB_ERR_NOMEM;
    for (int s = 0; st == LB_OK && s < q->vec_stages; s++) {
        float *book = q->vbook + (int64_t)s * q->vbook_size * d;
        double ss = 0, cnt = 0;
        for (int64_t r = 0; r < rows; r++) {
            double rs = 0, rc = 0;
            for (int64_t c = 0; c < n; c++)
                if (c < q->cols) rs += (double)res[r * n + c] * res[r * n + c], rc += 1;
            if (q->groups_per_row) q->scale[s * q->n_groups + r] = lb_round_fp16((float)sqrt(rs / rc));
            ss += rs, cnt += rc;
        }
        if (!q->groups_per_row) q->scale[s * q->n_groups] = lb_round_fp16((float)sqrt(ss / cnt));
        for (int64_t r = 0; r < rows; r++) {
            float a = lb_qtensor_vec_scale(q, s, r);
            roww[r] = a * a;
            for (int64_t c = 0; c < n; c++) y[r * n + c] = a > 0.0f ? res[r * n + c] / a : 0.0f;
        }
        lb_vq_points pts = {y, rows, q->vecs_per_row, n, d, roww, wt};
        st = lb_vq_kmeans(&pts, q->vbook_size, LB_VQ_ITERS, LB_VQ_MAX_TRAIN, book, NULL, NULL);
        for (int64_t i = 0; st == LB_OK && i < q->vbook_size * d; i++) book[i] = lb_round_fp16(book[i]);
        if (st == LB_OK) st = lb_vq_assign(&pts, book, q->vbook_size, codes, NULL);
        for (int64_t j = 0; st == LB_OK && j < nv; j++) {
            int64_t r = j / q->vecs_per_row, v = j % q->vecs_per_row;
            float a = lb_qtensor_vec_scale(q, s, r);
            *lb_qtensor_vcode(q, r, v, s) = (uint16_t)codes[j];
            for (int i = 0; i < d; i++) res[r * n + v * d + i] -= a * book[(int64_t)codes[j] * d + i];
        }
    }
    lb_free(y);
    lb_free(roww);
    lb_free(codes);
    return st;
}

lb_status lb_vector_rtn(const float *w, int64_t rows, int64_t cols, const float *colw, lb_qtensor *q) {
    const int64_t n = q->cols_padded;
    float *res = lb_alloc((size_t)(rows * n) * sizeof(float)), *wt = lb_alloc((size_t)n * sizeof(float));
    if (!res || !wt) {
        lb_free(res);
        lb_free(wt);
        return LB_ERR_NOMEM;
    }
    for (int64_t c = 0; c < n; c++) wt[c] = c < cols ? 1.0f : 0.0f;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < n; c++) res[r * n + c] = c < cols ? w[r * cols + c] : 0.0f;
    if (q->vbook) {
        for (int64_t c = 0; colw && c < cols; c++) wt[c] = colw[c];
        lb_status st = learned_rtn(q, res, wt);
        lb_free(res);
        lb_free(wt);
        return st != LB_OK ? st : lb_qtensor_store_scales(q);
    }
    if (q->groups_per_row == 0) {
        scale_group g = {q, 0, rows, res, wt};
        for (int s = 0; s < q->vec_stages; s++) fit_stage(&g, s, 0);
    } else {
#pragma omp parallel for schedule(dynamic, 4) if (rows * cols >= VEC_PARALLEL_MIN)
        for (int64_t r = 0; r < rows; r++) {
            scale_group g = {q, r, r + 1, res, wt};
            for (int s = 0; s < q->vec_stages; s++) fit_stage(&g, s, r);
        }
    }
    lb_free(res);
    lb_free(wt);
    return lb_qtensor_store_scales(q); /* already fp16: checks they are finite */
}

double lb_vector_round(lb_qtensor *q, int64_t row, int64_t v, const float *x, const float *wt, float *val) {
    const int d = q->vec_dim;
    float res[LB_VEC_MAX_DIM], y[LB_VEC_MAX_DIM], cw[LB_VEC_MAX_DIM];
    memcpy(res, x, (size_t)d * sizeof(float));
    for (int i = 0; i < d; i++) val[i] = 0.0f;
    for (int s = 0; s < q->vec_stages; s++) {
        float a = lb_qtensor_vec_scale(q, s, row);
        for (int i = 0; i < d; i++) y[i] = a != 0.0f ? res[i] / a : 0.0f;
        unsigned code = lb_qtensor_vec_nearest(q, s, y, wt);
        lb_qtensor_vec_codeword(q, s, code, cw);
        *lb_qtensor_vcode(q, row, v, s) = (uint16_t)code;
        for (int i = 0; i < d; i++) {
            val[i] += a * cw[i];
            res[i] -= a * cw[i];
        }
    }
    double err = 0;
    for (int i = 0; i < d; i++) err += (wt ? (double)wt[i] : 1.0) * (double)(x[i] - val[i]) * (x[i] - val[i]);
    return err;
}

size_t lb_vector_round_scratch(const lb_qtensor *q, int64_t n) {
    return q->vbook ? lb_vq_scratch_floats(n, q->vbook_size, q->vec_dim) + (size_t)(n * (2 * q->vec_dim + 1)) : 0;
}

/* A learned codebook is searched for all n vectors at once (one GEMM per
 * block where BLAS is built in); the result is lb_vector_round's for each. */
double lb_vector_round_rows(lb_qtensor *q, int64_t r0, int64_t n, int64_t v, const float *x, const float *wt,
                            float *val, float *scratch) {
    const int d = q->vec_dim;
    double err = 0;
    if (!q->vbook) {
        for (int64_t j = 0; j < n; j++) err += lb_vector_round(q, r0 + j, v, x + j * d, wt + j * d, val + j * d);
        return err;
    }
    float *res = scratch, *y = res + n * d;
    uint32_t *codes = (uint32_t *)(y + n * d);
    float *search = (float *)(codes + n);
    _Static_assert(sizeof(uint32_t) == sizeof(float), "codes share the float scratch");
    memcpy(res, x, (size_t)(n * d) * sizeof(float));
    memset(val, 0, (size_t)(n * d) * sizeof(float));
    for (int s = 0; s < q->vec_stages; s++) {
        for (int64_t j = 0; j < n; j++) {
            float a = lb_qtensor_vec_scale(q, s, r0 + j);
            for (int i = 0; i < d; i++) y[j * d + i] = a != 0.0f ? res[j * d + i] / a : 0.0f;
        }
        const float *book = q->vbook + (int64_t)s * q->vbook_size * d;
        lb_vq_nearest(book, q->vbook_size, d, y, wt, n, codes, search);
        for (int64_t j = 0; j < n; j++) {
            float a = lb_qtensor_vec_scale(q, s, r0 + j);
            const float *cw = book + (int64_t)codes[j] * d;
            *lb_qtensor_vcode(q, r0 + j, v, s) = (uint16_t)codes[j];
            for (int i = 0; i < d; i++) {
                val[j * d + i] += a * cw[i];
                res[j * d + i] -= a * cw[i];
            }
        }
    }
    for (int64_t j = 0; j < n * d; j++) err += (double)wt[j] * (double)(x[j] - val[j]) * (x[j] - val[j]);
    return err;
}
