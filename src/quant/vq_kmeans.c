/* Weighted k-means on vectors: the codebooks of the vq family (VPTQ,
 * Liu et al. 2024, arXiv:2409.17066, s3-4: "Hessian-weighted k-means" of
 * the weight vectors, each coordinate weighted by diag(H) of its column;
 * METHODS.md s10).
 *
 * Minimizes sum_j sum_i w_ji (x_ji - c_{a(j), i})^2 over K centers c and
 * assignments a by Lloyd's algorithm. With per-coordinate weights the best
 * center of a cluster is the weighted mean coordinate by coordinate, and
 * the nearest center is found from
 *   sum_i w_i (x_i - c_i)^2 = sum_i w_i x_i^2 + sum_i w_i c_i^2 - 2 sum_i w_i x_i c_i
 * whose last two terms, over a block of vectors and a block of codewords,
 * are one matrix product [w, w x] [c^2, -2 c]^T (inner dimension 2d; d + 1
 * where each vector's weights are equal across its coordinates, as in rtn
 * without importance weights): the search is a full scan, at GEMM speed. Where lowbit is built without BLAS
 * (the ARM cross build) the same scan runs as scalar loops.
 *
 * Cost and defaults, chosen for issue 8's budget (minutes per 4096 x 4096
 * layer on 2 cores): a 4096 x 4096 matrix has 2^21 vectors of 8; a scan of
 * 2^16 codewords for all of them is 4.4e12 flops. k-means therefore trains
 * on at most 2^19 vectors (a deterministic sample; VPTQ trains on all, on a
 * GPU), starts from k-means++ where K x (training vectors) <= 2^31 (it
 * costs K sequential passes; on stories260K it always runs), else from K
 * training vectors drawn at random, and runs at most 12 updates, stopping early when
 * one lowers the objective by less than 1e-4 relatively. The codes of every
 * vector are then one scan (lb_vq_assign).
 *
 * Determinism: the sample and the initial centers come from lowbit's RNG
 * with a fixed seed; blocks of vectors are fixed (independent of the thread
 * count), each searched by one thread with single-threaded BLAS; sums run
 * in index order. */
#include "core/blas_threads.h"
#include "quant/vq_kmeans.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef LB_HAVE_BLAS
#include <cblas.h>
#endif

#define NB 128   /* vectors per GEMM block (NB x KB distances: 512 KiB, to stay in L2 for the argmin) */
#define KB 1024  /* codewords per GEMM block */

size_t lb_vq_scratch_floats(int64_t n, int64_t K, int d) {
    int64_t kb = K < KB ? K : KB, nb = n < NB ? n : NB;
    return (size_t)(nb * 2 * d + kb * 2 * d + nb * kb + nb);
}

/* weighted squared distance in double: the objective's own measure */
static double dist(const float *x, const float *w, const float *c, int d) {
    double e = 0;
    for (int i = 0; i < d; i++) {
        double t = (double)x[i] - c[i];
        e += (w ? (double)w[i] : 1.0) * t * t;
    }
    return e;
}

void lb_vq_nearest(const float *book, int64_t K, int d, const float *x, const float *w, int64_t n, uint32_t *codes,
                   float *scratch) {
#ifdef LB_HAVE_BLAS
    int64_t kb_max = K < KB ? K : KB, nb_max = n < NB ? n : NB;
    float *A = scratch, *B = A + nb_max * 2 * d, *D = B + kb_max * 2 * d, *best = D + nb_max * kb_max;
    for (int64_t j0 = 0; j0 < n; j0 += NB) {
        int64_t nb = n - j0 < NB ? n - j0 : NB;
        /* every vector's weights equal across its coordinates (rtn: no importance weights): the
         * product [w, w x] [|c|^2, -2 c]^T has inner dimension d + 1 instead of 2d */
        int uniform = 1;
        for (int64_t j = 0; w && uniform && j < nb; j++)
            for (int i = 1; i < d; i++) uniform &= w[(j0 + j) * d + i] == w[(j0 + j) * d];
        const int m = uniform ? d + 1 : 2 * d;
        for (int64_t j = 0; j < nb; j++) {
            const float *xj = x + (j0 + j) * d, *wj = w ? w + (j0 + j) * d : NULL;
            if (uniform) {
                float wv = wj ? wj[0] : 1.0f;
                A[j * m] = wv;
                for (int i = 0; i < d; i++) A[j * m + 1 + i] = wv * xj[i];
            } else {
                for (int i = 0; i < d; i++) A[j * m + i] = wj[i], A[j * m + d + i] = wj[i] * xj[i];
            }
        }
        for (int64_t j = 0; j < nb; j++) best[j] = INFINITY, codes[j0 + j] = 0;
        for (int64_t k0 = 0; k0 < K; k0 += KB) {
            int64_t kb = K - k0 < KB ? K - k0 : KB;
            for (int64_t k = 0; k < kb; k++) {
                const float *c = book + (k0 + k) * d;
                if (uniform) {
                    float c2 = 0.0f;
                    for (int i = 0; i < d; i++) c2 += c[i] * c[i], B[k * m + 1 + i] = -2.0f * c[i];
                    B[k * m] = c2;
                } else {
                    for (int i = 0; i < d; i++) B[k * m + i] = c[i] * c[i], B[k * m + d + i] = -2.0f * c[i];
                }
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, (int)kb, m, 1.0f, A, m, B, m, 0.0f, D,
                        (int)kb);
            for (int64_t j = 0; j < nb; j++) {
                const float *row = D + j * kb;
                float b = best[j];
                int64_t bk = -1;
                for (int64_t k = 0; k < kb; k++)
                    if (row[k] < b) b = row[k], bk = k;
                if (bk >= 0) best[j] = b, codes[j0 + j] = (uint32_t)(k0 + bk);
            }
        }
    }
#else
    (void)scratch;
    for (int64_t j = 0; j < n; j++) {
        double b = INFINITY;
        uint32_t bk = 0;
        for (int64_t k = 0; k < K; k++) {
            double e = dist(x + j * d, w ? w + j * d : NULL, book + k * d, d);
            if (e < b) b = e, bk = (uint32_t)k;
        }
        codes[j] = bk;
    }
#endif
}

/* vector j of p: its values and weights into xv, wv (d each) */
static void gather(const lb_vq_points *p, int64_t j, float *xv, float *wv) {
    int64_t r = j / p->vpr, v = j % p->vpr;
    const float *x = p->x + r * p->stride + v * p->d;
    float rw = p->roww ? p->roww[r] : 1.0f;
    for (int i = 0; i < p->d; i++) {
        xv[i] = x[i];
        wv[i] = rw * (p->colw ? p->colw[v * p->d + i] : 1.0f);
    }
}

/* nearest codes for n vectors (x, w: n x d) in parallel over fixed blocks */
static lb_status nearest_all(const float *book, int64_t K, int d, const float *x, const float *w, int64_t n,
                             uint32_t *codes) {
    int64_t nblocks = (n + NB - 1) / NB;
    size_t nf = lb_vq_scratch_floats(NB, K, d);
    lb_worker_error err;
    lb_worker_error_init(&err);
#pragma omp parallel if (n * K >= (1 << 20))
    {
        float *scratch = lb_alloc(nf * sizeof(float));
        if (!scratch) lb_worker_error_set(&err, lb_fail(LB_ERR_NOMEM, "out of memory in the codebook search"));
#pragma omp for schedule(dynamic, 1)
        for (int64_t b = 0; b < nblocks; b++) {
            if (lb_worker_error_failed(&err)) continue;
            int64_t j0 = b * NB, nb = n - j0 < NB ? n - j0 : NB;
            lb_vq_nearest(book, K, d, x + j0 * d, w ? w + j0 * d : NULL, nb, codes + j0, scratch);
        }
        lb_free(scratch);
    }
    return lb_worker_error_raise(&err);
}

lb_status lb_vq_assign(const lb_vq_points *p, const float *book, int64_t K, uint32_t *codes, double *sse) {
    const int d = p->d;
    int64_t n = p->rows * p->vpr, chunk = (int64_t)1 << 16;
    float *x = lb_alloc((size_t)(chunk * d) * sizeof(float)), *w = lb_alloc((size_t)(chunk * d) * sizeof(float));
    lb_status st = x && w ? LB_OK : LB_ERR_NOMEM;
    int bt = lb_blas_threads_single();
    double total = 0;
    for (int64_t j0 = 0; st == LB_OK && j0 < n; j0 += chunk) {
        int64_t m = n - j0 < chunk ? n - j0 : chunk;
        for (int64_t j = 0; j < m; j++) gather(p, j0 + j, x + j * d, w + j * d);
        st = nearest_all(book, K, d, x, w, m, codes + j0);
        for (int64_t j = 0; st == LB_OK && sse && j < m; j++)
            total += dist(x + j * d, w + j * d, book + (int64_t)codes[j0 + j] * d, d);
    }
    lb_blas_threads_restore(bt);
    lb_free(x);
    lb_free(w);
    if (sse) *sse = total;
    return st;
}

/* ---- k-means ---------------------------------------------------------------- */

typedef struct {
    const float *x; /* n x d */
    int d;
} lex_ctx;
static _Thread_local lex_ctx lex; /* qsort has no context argument */

static int cmp_lex(const void *a, const void *b) {
    int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    for (int k = 0; k < lex.d; k++) {
        float u = lex.x[i * lex.d + k], v = lex.x[j * lex.d + k];
        if (u != v) return u < v ? -1 : 1;
    }
    return i < j ? -1 : i > j;
}

typedef struct {
    double e;
    int64_t i;
} err_idx;
static int cmp_err_desc(const void *a, const void *b) {
    const err_idx *u = a, *v = b;
    if (u->e != v->e) return u->e > v->e ? -1 : 1;
    return u->i < v->i ? -1 : u->i > v->i;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    return i < j ? -1 : i > j;
}

/* the training set: every vector of positive weight, or a sample of max_train of them */
static lb_status training_set(const lb_vq_points *p, int64_t max_train, float **xo, float **wo, int64_t *no) {
    const int d = p->d;
    int64_t n = p->rows * p->vpr, live = 0;
    int64_t *idx = lb_alloc((size_t)(n > 0 ? n : 1) * sizeof(int64_t));
    if (!idx) return LB_ERR_NOMEM;
    float xv[LB_VEC_MAX_DIM], wv[LB_VEC_MAX_DIM];
    for (int64_t j = 0; j < n; j++) {
        gather(p, j, xv, wv);
        double s = 0;
        for (int i = 0; i < d; i++) s += wv[i];
        if (s > 0) idx[live++] = j;
    }
    if (live > max_train) { /* a partial Fisher-Yates shuffle, then index order */
        lb_rng r;
        lb_rng_seed(&r, LB_VQ_SEED);
        for (int64_t k = 0; k < max_train; k++) {
            uint64_t u = (uint64_t)lb_rng_u32(&r) << 32 | lb_rng_u32(&r);
            int64_t t = k + (int64_t)(u % (uint64_t)(live - k)), tmp = idx[k];
            idx[k] = idx[t];
            idx[t] = tmp;
        }
        live = max_train;
        qsort(idx, (size_t)live, sizeof(int64_t), cmp_i64);
    }
    *xo = lb_alloc((size_t)((live > 0 ? live : 1) * d) * sizeof(float));
    *wo = lb_alloc((size_t)((live > 0 ? live : 1) * d) * sizeof(float));
    if (!*xo || !*wo) {
        lb_free(idx);
        return LB_ERR_NOMEM;
    }
    for (int64_t k = 0; k < live; k++) gather(p, idx[k], *xo + k * d, *wo + k * d);
    *no = live;
    lb_free(idx);
    return LB_OK;
}

/* Every training vector's nearest center, keeping its current one (prev,
 * NULL: none) unless another is strictly nearer in double precision; the
 * objective in index order. */
static lb_status assign_step(const float *book, int64_t K, int d, const float *x, const float *w, int64_t n,
                             const uint32_t *prev, uint32_t *codes, double *err, double *obj) {
    lb_status st = nearest_all(book, K, d, x, w, n, codes);
    if (st != LB_OK) return st;
    double sum = 0;
    for (int64_t j = 0; j < n; j++) {
        double e = dist(x + j * d, w + j * d, book + (int64_t)codes[j] * d, d);
        if (prev && prev[j] != codes[j]) {
            double e0 = dist(x + j * d, w + j * d, book + (int64_t)prev[j] * d, d);
            if (!(e < e0)) codes[j] = prev[j], e = e0;
        }
        err[j] = e;
        sum += e;
    }
    *obj = sum;
    return LB_OK;
}

/* Each center the weighted mean of its vectors, coordinate by coordinate (a
 * coordinate with no weight keeps its value); centers with no weight at all
 * go to the vectors of largest error, one each. */
static void update_step(float *book, int64_t K, int d, const float *x, const float *w, int64_t n,
                        const uint32_t *codes, const double *err, double *sums, err_idx *order) {
    double *sw = sums, *swx = sums + K * d;
    memset(sums, 0, 2 * (size_t)(K * d) * sizeof(double));
    for (int64_t j = 0; j < n; j++) {
        int64_t k = codes[j];
        for (int i = 0; i < d; i++) {
            sw[k * d + i] += w[j * d + i];
            swx[k * d + i] += (double)w[j * d + i] * x[j * d + i];
        }
    }
    int64_t empty = 0;
    for (int64_t k = 0; k < K; k++) {
        double tot = 0;
        for (int i = 0; i < d; i++) {
            tot += sw[k * d + i];
            if (sw[k * d + i] > 0) book[k * d + i] = (float)(swx[k * d + i] / sw[k * d + i]);
        }
        empty += !(tot > 0);
    }
    if (!empty) return;
    int64_t m = 0;
    for (int64_t j = 0; j < n; j++)
        if (err[j] > 0) order[m].e = err[j], order[m].i = j, m++;
    qsort(order, (size_t)m, sizeof *order, cmp_err_desc);
    int64_t next = 0;
    for (int64_t k = 0; k < K && next < m; k++) {
        double tot = 0;
        for (int i = 0; i < d; i++) tot += sw[k * d + i];
        if (tot > 0) continue;
        memcpy(book + k * d, x + order[next++].i * d, (size_t)d * sizeof(float));
    }
}

/* k-means++ (Arthur and Vassilvitskii 2007): each next center a training
 * vector drawn with probability proportional to its weighted squared
 * distance to the nearest center so far (the first uniformly). mind: n. */
static lb_status plusplus(const float *x, const float *w, int64_t n, int d, int64_t K, float *book, double *mind) {
    lb_rng r;
    lb_rng_seed(&r, LB_VQ_SEED + 2);
    int64_t first = (int64_t)(((uint64_t)lb_rng_u32(&r) << 32 | lb_rng_u32(&r)) % (uint64_t)n);
    memcpy(book, x + first * d, (size_t)d * sizeof(float));
    for (int64_t j = 0; j < n; j++) mind[j] = INFINITY;
    for (int64_t k = 1; k <= K; k++) {
        const float *c = book + (k - 1) * d;
#pragma omp parallel for schedule(static) if (n * d >= (1 << 16))
        for (int64_t j = 0; j < n; j++) {
            double e = dist(x + j * d, w + j * d, c, d);
            if (e < mind[j]) mind[j] = e;
        }
        if (k == K) break;
        double total = 0;
        for (int64_t j = 0; j < n; j++) total += mind[j];
        int64_t pick = 0;
        if (total > 0) {
            double u = (double)lb_rng_f32(&r) * total, acc = 0;
            pick = -1;
            for (int64_t j = 0; j < n && pick < 0; j++)
                if (mind[j] > 0 && (acc += mind[j]) > u) pick = j;
            if (pick < 0) /* u rounded to the total: the last vector with any distance */
                for (int64_t j = n - 1; j >= 0 && pick < 0; j--)
                    if (mind[j] > 0) pick = j;
        }
        memcpy(book + k * d, x + pick * d, (size_t)d * sizeof(float));
    }
    return LB_OK;
}

lb_status lb_vq_kmeans(const lb_vq_points *p, int64_t K, int max_iter, int64_t max_train, float *book,
                       lb_vq_trace *trace, double *objective) {
    const int d = p->d;
    if (K < 1 || K > 65536 || max_iter < 0 || max_iter > LB_VQ_MAX_ITERS || max_train < 1 || d < 1 ||
        d > LB_VEC_MAX_DIM)
        return lb_fail(LB_ERR_INVALID, "vector k-means: %lld centers of %d values, %d updates, %lld training vectors",
                       (long long)K, d, max_iter, (long long)max_train);
    float *x = NULL, *w = NULL;
    int64_t n = 0;
    lb_status st = training_set(p, max_train, &x, &w, &n);
    if (trace) trace->n = 0;
    memset(book, 0, (size_t)(K * d) * sizeof(float));
    if (objective) *objective = 0;
    if (st != LB_OK || n == 0) {
        lb_free(x);
        lb_free(w);
        return st;
    }
    int64_t *ord = lb_alloc((size_t)n * sizeof(int64_t));
    uint32_t *codes = lb_alloc((size_t)n * sizeof(uint32_t)), *prev = lb_alloc((size_t)n * sizeof(uint32_t));
    double *err = lb_alloc((size_t)n * sizeof(double)), *sums = lb_alloc(2 * (size_t)(K * d) * sizeof(double));
    err_idx *order = lb_alloc((size_t)n * sizeof(err_idx));
    float *prev_book = lb_alloc((size_t)(K * d) * sizeof(float));
    if (!ord || !codes || !prev || !err || !sums || !order || !prev_book) {
        st = LB_ERR_NOMEM;
        goto done;
    }
    /* at most K distinct vectors: they are the centers */
    for (int64_t j = 0; j < n; j++) ord[j] = j;
    lex.x = x;
    lex.d = d;
    qsort(ord, (size_t)n, sizeof(int64_t), cmp_lex);
    int64_t distinct = 0;
    for (int64_t j = 0; j < n && distinct <= K; j++)
        if (j == 0 || memcmp(x + ord[j] * d, x + ord[j - 1] * d, (size_t)d * sizeof(float)))
            if (++distinct <= K) memcpy(book + (distinct - 1) * d, x + ord[j] * d, (size_t)d * sizeof(float));
    if (distinct <= K) {
        for (int64_t k = distinct; k < K; k++) memcpy(book + k * d, book + (distinct - 1) * d, (size_t)d * sizeof(float));
    } else if ((double)K * (double)n <= LB_VQ_PLUSPLUS_MAX) {
        st = plusplus(x, w, n, d, K, book, err);
        if (st != LB_OK) goto done;
    } else { /* K training vectors of distinct indices, at random */
        lb_rng r;
        lb_rng_seed(&r, LB_VQ_SEED + 1);
        for (int64_t j = 0; j < n; j++) ord[j] = j;
        for (int64_t k = 0; k < K; k++) {
            uint64_t u = (uint64_t)lb_rng_u32(&r) << 32 | lb_rng_u32(&r);
            int64_t t = k + (int64_t)(u % (uint64_t)(n - k)), tmp = ord[k];
            ord[k] = ord[t];
            ord[t] = tmp;
            memcpy(book + k * d, x + ord[k] * d, (size_t)d * sizeof(float));
        }
    }
    int bt = lb_blas_threads_single();
    double obj;
    st = assign_step(book, K, d, x, w, n, NULL, codes, err, &obj);
    if (trace && st == LB_OK) trace->objective[trace->n++] = obj;
    for (int t = 0; st == LB_OK && t < max_iter && obj > 0; t++) {
        memcpy(prev_book, book, (size_t)(K * d) * sizeof(float));
        memcpy(prev, codes, (size_t)n * sizeof(uint32_t));
        update_step(book, K, d, x, w, n, codes, err, sums, order);
        double next;
        if ((st = assign_step(book, K, d, x, w, n, prev, codes, err, &next)) != LB_OK) break;
        if (trace) trace->objective[trace->n++] = next;
        if (next > obj) { /* only the float rounding of the centers can do this: keep the better book */
            memcpy(book, prev_book, (size_t)(K * d) * sizeof(float));
            break;
        }
        int small = !(next < obj * (1.0 - LB_VQ_TOL));
        obj = next;
        if (small) break;
    }
    lb_blas_threads_restore(bt);
    if (objective) *objective = obj;
done:
    lb_free(x);
    lb_free(w);
    lb_free(ord);
    lb_free(codes);
    lb_free(prev);
    lb_free(err);
    lb_free(sums);
    lb_free(order);
    lb_free(prev_book);
    return st;
}
