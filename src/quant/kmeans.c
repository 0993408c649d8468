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
 * Where Lloyd starts decides where it ends: it only finds a stationary
 * point, and in 1-D, too, those can be far from the best. Two deterministic
 * starts (sklearn's is a seeded k-means++):
 *   optimal   (the default) the globally optimal centers. In 1-D the best
 *             clusters are contiguous runs of the sorted points, so a
 *             dynamic program over run boundaries finds them exactly
 *             (Wang & Song 2011, Ckmeans.1d.dp; O(K n log n) with the
 *             divide-and-conquer step, Gronlund et al. 2017); Lloyd then
 *             only confirms (it cannot improve an optimum). On stories260K's
 *             rows (64..172 weights) Lloyd from quantiles ends 4% (K = 4),
 *             35% (8) and 144% (16) above the optimal objective
 *             (docs/methods/squeezellm.md). Groups above LB_KMEANS_DP_MAX
 *             weights (lut:tensor of a large matrix) start from quantiles.
 *   quantile  the weighted quantiles (j + 1/2) / K of the points (sorted by
 *             value, then index, so the order is total and the sums
 *             deterministic): the plain Lloyd the paper describes
 * A center left with no weight (duplicated by the quantiles, or abandoned)
 * is moved to the point with the largest weighted error that no center sits
 * on yet, which lowers the next objective by at least that error (sklearn
 * relocates empty clusters the same way). A group with at most K distinct
 * values is solved exactly: the centers are those values.
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
    int dp = cap <= LB_KMEANS_DP_MAX;
    if (dp) {
        w->prefix = lb_alloc(3 * (size_t)(cap + 1) * sizeof(double));
        w->cost = lb_alloc(2 * (size_t)(cap + 1) * sizeof(double));
        w->from = lb_alloc((size_t)LB_KMEANS_MAX_K * (size_t)(cap + 1) * sizeof(int32_t));
    }
    if (!w->pts || !w->assign || !w->err || (dp && (!w->prefix || !w->cost || !w->from))) {
        lb_kmeans_work_free(w);
        return lb_fail(LB_ERR_NOMEM, "out of memory for k-means over %lld weights", (long long)cap);
    }
    return LB_OK;
}

void lb_kmeans_work_free(lb_kmeans_work *w) {
    lb_free(w->pts);
    lb_free(w->assign);
    lb_free(w->err);
    lb_free(w->prefix);
    lb_free(w->cost);
    lb_free(w->from);
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

/* ---- the optimal partition ------------------------------------------------
 * The best K clusters of sorted points are K contiguous runs. D_k(i), the
 * least cost of the first i points in k runs (runs may be empty), is
 * min over j <= i of D_{k-1}(j) + cost(j, i), cost(j, i) the weighted
 * squared deviation of points j..i-1 from their weighted mean, read off
 * prefix sums of h, h x, h x^2 (of x minus the group's weighted mean,
 * against cancellation). The best j is non-decreasing in i (the cost obeys
 * the quadrangle inequality), so each layer is a divide and conquer over i
 * with a shrinking window of j: O(n log n) per layer. */

static double run_cost(const double *pre, int64_t n, int64_t j, int64_t i) {
    const double *H = pre, *S = pre + (n + 1), *Q = pre + 2 * (n + 1);
    double wsum = H[i] - H[j];
    if (!(wsum > 0)) return 0.0;
    double s = S[i] - S[j], c = (Q[i] - Q[j]) - s * s / wsum;
    return c > 0 ? c : 0.0;
}

/* cur[i] for i in [lo, hi], knowing the best j lies in [jlo, jhi] */
static void layer(const double *pre, int64_t n, const double *prev, double *cur, int32_t *from, int64_t lo,
                  int64_t hi, int64_t jlo, int64_t jhi) {
    while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2, top = jhi < mid ? jhi : mid, bj = jlo;
        double best = INFINITY;
        for (int64_t j = jlo; j <= top; j++) {
            double v = prev[j] + run_cost(pre, n, j, mid);
            if (v < best) {
                best = v;
                bj = j;
            }
        }
        cur[mid] = best;
        from[mid] = (int32_t)bj;
        /* the left half recursively, the right half by the loop */
        layer(pre, n, prev, cur, from, lo, mid - 1, jlo, bj);
        lo = mid + 1;
        jlo = bj;
    }
}

/* centers = the weighted means of the optimal partition's runs */
static void optimal_partition(const lb_kmeans_point *p, int64_t n, int K, lb_kmeans_work *w, double *centers) {
    double *pre = w->prefix, W = 0, mean = 0;
    for (int64_t i = 0; i < n; i++) W += p[i].h, mean += p[i].h * p[i].x;
    mean /= W;
    pre[0] = pre[n + 1] = pre[2 * (n + 1)] = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = p[i].x - mean;
        pre[i + 1] = pre[i] + p[i].h;
        pre[n + 1 + i + 1] = pre[n + 1 + i] + p[i].h * d;
        pre[2 * (n + 1) + i + 1] = pre[2 * (n + 1) + i] + p[i].h * d * d;
    }
    double *prev = w->cost, *cur = w->cost + (n + 1);
    for (int64_t i = 0; i <= n; i++) prev[i] = run_cost(pre, n, 0, i);
    for (int k = 1; k < K; k++) {
        layer(pre, n, prev, cur, w->from + (size_t)k * (size_t)(n + 1), 0, n, 0, n);
        double *t = prev;
        prev = cur;
        cur = t;
    }
    int64_t end = n;
    for (int k = K - 1; k >= 0; k--) {
        int64_t start = k ? w->from[(size_t)k * (size_t)(n + 1) + (size_t)end] : 0;
        double sh = 0, shx = 0;
        for (int64_t i = start; i < end; i++) sh += p[i].h, shx += p[i].h * p[i].x;
        /* an empty or weightless run: a placeholder Lloyd's relocation will reuse */
        centers[k] = sh > 0 ? shx / sh : p[start < n ? start : n - 1].x;
        end = start;
    }
}

double lb_kmeans_1d(const float *x, const double *h, int64_t n, int K, int max_iter, int init, lb_kmeans_work *w,
                    double *centers, lb_kmeans_trace *trace) {
    lb_kmeans_point *p = w->pts;
    if (trace) trace->n = 0;
    if (n < 1) {
        for (int j = 0; j < K; j++) centers[j] = 0.0;
        return 0.0;
    }
    double W = 0;
    for (int64_t i = 0; i < n; i++) W += h ? h[i] : 1.0;
    int unit = !h || !(W > 0);
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

    if (init == LB_KMEANS_INIT_OPTIMAL && w->from) {
        optimal_partition(p, n, K, w, centers);
    } else {
        /* weighted quantiles: center j at the first point whose cumulative
         * weight reaches (j + 1/2) W / K (a point with weight, as the sum jumps there) */
        double cum = 0;
        int64_t i = 0;
        for (int j = 0; j < K; j++) {
            double target = ((double)j + 0.5) * W / (double)K;
            while (i < n - 1 && cum + p[i].h < target) cum += p[i++].h;
            centers[j] = p[i].x;
        }
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
                          const uint8_t *keep, int max_iter, int init, lb_qtensor *q) {
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
            lb_kmeans_1d(x, h, n, K, max_iter, init, &wk, c, NULL);
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
