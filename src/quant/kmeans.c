/* Weighted 1-D k-means: the levels of the lut<b> family (METHODS.md s7).
 *
 * Minimizes sum_i h_i (x_i - c_{a(i)})^2 over K centers c and assignments a
 * by Lloyd's algorithm (SqueezeLLM runs sklearn's KMeans, max_iter 50, with
 * the Fisher diagonal as sample weights): assign every point to its
 * nearest center, move every center to the weighted mean of its points,
 * repeat. Each half-step can only lower the objective, so it is monotone
 * non-increasing; we stop at the first assignment that does not lower it
 * (then nothing moves any more) or after max_iter updates.
 *
 * Deterministic by construction, where sklearn is seeded: the centers start
 * at the weighted quantiles (j + 1/2) / K of the points (sorted by value,
 * then index), and a center left with no weight (duplicated by the
 * quantiles, or abandoned) is moved to the point with the largest weighted
 * error that no center sits on yet, which lowers the next objective by at
 * least that error (sklearn relocates empty clusters the same way). A group
 * with at most K distinct values is solved exactly: the centers are those
 * values. Lloyd finds a local optimum; in 1-D the global one is computable
 * (a dynamic program over contiguous partitions of the sorted values), but
 * SqueezeLLM's method is Lloyd, and so is ours (tests/test_lut.c compares
 * the two on tiny cases).
 *
 * Where the weights are all zero (a dead input under weights = diag X^T X)
 * every point counts 1, so the group still gets a sensible codebook. */
#include "quant/kmeans.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

lb_status lb_kmeans_work_init(lb_kmeans_work *w, int64_t cap) {
    memset(w, 0, sizeof *w);
    w->cap = cap;
    w->pts = lb_alloc((size_t)cap * sizeof *w->pts);
    w->assign = lb_alloc((size_t)cap);
    w->err = lb_alloc((size_t)cap * sizeof(double));
    if (!w->pts || !w->assign || !w->err) {
        lb_kmeans_work_free(w);
        return lb_fail(LB_ERR_NOMEM, "out of memory for k-means over %lld weights", (long long)cap);
    }
    return LB_OK;
}

void lb_kmeans_work_free(lb_kmeans_work *w) {
    lb_free(w->pts);
    lb_free(w->assign);
    lb_free(w->err);
    memset(w, 0, sizeof *w);
}

static int by_value(const void *a, const void *b) {
    const lb_kmeans_point *p = a, *q = b;
    if (p->x != q->x) return p->x < q->x ? -1 : 1;
    return p->i < q->i ? -1 : p->i > q->i;
}

static void sort_ascending(double *c, int K) {
    for (int i = 1; i < K; i++)
        for (int j = i; j > 0 && c[j] < c[j - 1]; j--) {
            double t = c[j];
            c[j] = c[j - 1];
            c[j - 1] = t;
        }
}

/* assignment step: every point to its nearest center; returns the objective */
static double assign_points(const lb_kmeans_point *p, int64_t n, const double *c, int K, uint8_t *assign) {
    double J = 0;
    for (int64_t i = 0; i < n; i++) {
        int a = lb_kmeans_nearest(c, K, p[i].x);
        assign[i] = (uint8_t)a;
        double d = p[i].x - c[a];
        J += p[i].h * d * d;
    }
    return J;
}

/* update step: every center with weight to its points' weighted mean; a
 * center without weight to the worst-served point no center sits on */
static void update_centers(const lb_kmeans_point *p, int64_t n, double *c, int K, const uint8_t *assign,
                           double *err) {
    double sh[LB_KMEANS_MAX_K] = {0}, shx[LB_KMEANS_MAX_K] = {0};
    for (int64_t i = 0; i < n; i++) {
        sh[assign[i]] += p[i].h;
        shx[assign[i]] += p[i].h * p[i].x;
    }
    int empty = 0;
    for (int j = 0; j < K; j++) {
        if (sh[j] > 0) c[j] = shx[j] / sh[j];
        else empty = 1;
    }
    if (!empty) return;
    for (int64_t i = 0; i < n; i++) {
        double d = p[i].x - c[assign[i]];
        err[i] = p[i].h * d * d;
    }
    for (int j = 0; j < K; j++) {
        if (sh[j] > 0) continue;
        int64_t best = -1;
        for (int64_t i = 0; i < n; i++) {
            if (err[i] <= 0 || (best >= 0 && err[i] <= err[best])) continue;
            int taken = 0;
            for (int m = 0; m < K && !taken; m++) taken = c[m] == p[i].x;
            if (!taken) best = i;
        }
        if (best < 0) return; /* every point is served exactly: nothing to gain */
        c[j] = p[best].x;
        err[best] = 0;
    }
}

double lb_kmeans_1d(const float *x, const double *h, int64_t n, int K, int max_iter, lb_kmeans_work *w,
                    double *centers, lb_kmeans_trace *trace) {
    lb_kmeans_point *p = w->pts;
    if (trace) trace->n = 0;
    if (n < 1) {
        for (int j = 0; j < K; j++) centers[j] = 0.0;
        return 0.0;
    }
    double W = 0;
    for (int64_t i = 0; i < n; i++) W += h ? h[i] : 1.0;
    int unit = !(W > 0);
    for (int64_t i = 0; i < n; i++) p[i] = (lb_kmeans_point){x[i], unit ? 1.0 : h[i], i};
    if (unit) W = (double)n;
    qsort(p, (size_t)n, sizeof *p, by_value);

    /* at most K distinct values: they are the centers, every point exact */
    int d = 0;
    for (int64_t i = 0; i < n && d <= K; i++)
        if (i == 0 || p[i].x != p[i - 1].x) {
            if (d < K) centers[d] = p[i].x;
            d++;
        }
    if (d <= K) {
        for (int j = d; j < K; j++) centers[j] = centers[d - 1];
        if (trace) trace->objective[trace->n++] = 0.0;
        return 0.0;
    }

    /* weighted quantiles: center j at the first point whose cumulative
     * weight reaches (j + 1/2) W / K (a point with weight, as the sum jumps there) */
    double cum = 0;
    int64_t i = 0;
    for (int j = 0; j < K; j++) {
        double target = ((double)j + 0.5) * W / (double)K;
        while (i < n - 1 && cum + p[i].h < target) cum += p[i++].h;
        centers[j] = p[i].x;
    }

    double best[LB_KMEANS_MAX_K], best_J = INFINITY, prev = INFINITY;
    for (int t = 0;; t++) {
        double J = assign_points(p, n, centers, K, w->assign);
        if (trace) trace->objective[trace->n++] = J;
        if (J < best_J) {
            best_J = J;
            memcpy(best, centers, (size_t)K * sizeof(double));
        }
        if (!(J < prev) || J == 0 || t == max_iter) break;
        prev = J;
        update_centers(p, n, centers, K, w->assign, w->err);
    }
    memcpy(centers, best, (size_t)K * sizeof(double));
    sort_ascending(centers, K);
    return best_J;
}

lb_status lb_lut_quantize(const float *w, int64_t rows, int64_t cols, const float *colw, const float *ww,
                          const uint8_t *keep, int max_iter, lb_qtensor *q) {
    const int K = lb_format_levels(&q->spec);
    if (lb_format_grid(&q->spec) != LB_GRID_LUT || !q->lut || K > LB_KMEANS_MAX_K)
        return lb_fail(LB_ERR_INVALID, "k-means levels need a lut format");
    if (max_iter < 1 || max_iter > LB_KMEANS_MAX_ITERS)
        return lb_fail(LB_ERR_INVALID, "k-means: %d iterations (1..%d)", max_iter, LB_KMEANS_MAX_ITERS);
    /* one group per row slice (row, g<N>), or the whole tensor */
    const int whole = q->groups_per_row == 0;
    const int64_t span = whole ? rows * cols : q->group_len, n_tasks = whole ? 1 : rows * q->groups_per_row;
    lb_worker_error err;
    lb_worker_error_init(&err);
#pragma omp parallel if (!whole && rows * cols >= 16384)
    {
        lb_kmeans_work wk;
        float *x = lb_alloc((size_t)span * sizeof(float));
        double *h = lb_alloc((size_t)span * sizeof(double));
        lb_status st = x && h ? lb_kmeans_work_init(&wk, span) : lb_fail(LB_ERR_NOMEM, "out of memory for k-means");
        if (st != LB_OK) lb_worker_error_set(&err, st);
#pragma omp for schedule(dynamic, 4)
        for (int64_t k = 0; k < n_tasks; k++) {
            if (lb_worker_error_failed(&err)) continue;
            int64_t r0 = whole ? 0 : k / q->groups_per_row, r1 = whole ? rows : r0 + 1;
            int64_t c0 = whole ? 0 : k % q->groups_per_row * q->group_len;
            int64_t c1 = whole ? cols : (c0 + q->group_len < cols ? c0 + q->group_len : cols), n = 0;
            for (int64_t r = r0; r < r1; r++)
                for (int64_t c = c0; c < c1; c++, n++) {
                    int64_t at = r * cols + c;
                    x[n] = w[at];
                    h[n] = keep && keep[at] ? 0.0 : (colw ? (double)colw[c] : 1.0) * (ww ? (double)ww[at] : 1.0);
                }
            double c[LB_KMEANS_MAX_K];
            lb_kmeans_1d(x, h, n, K, max_iter, &wk, c, NULL);
            for (int j = 0; j < K; j++) q->lut[k * K + j] = (float)c[j];
        }
        if (st == LB_OK) lb_kmeans_work_free(&wk);
        lb_free(x);
        lb_free(h);
    }
    lb_status st = lb_worker_error_raise(&err);
    if (st == LB_OK) st = lb_qtensor_store_scales(q); /* fp16 levels: the codes are chosen against these */
    if (st != LB_OK) return st;
#pragma omp parallel for schedule(static) if (rows * cols >= 16384)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < q->cols_padded; c++)
            q->codes[r * q->cols_padded + c] =
                (uint8_t)lb_qtensor_nearest_code(q, lb_qtensor_group(q, r, c), c < cols ? w[r * cols + c] : 0.0f);
    return LB_OK;
}
