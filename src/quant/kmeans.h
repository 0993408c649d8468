/* Weighted 1-D k-means (src/quant/kmeans.c): how the lut<b> family's levels
 * are placed. rtn runs it with every weight counting 1, squeezellm with
 * each weight's sensitivity. Internal to src/quant. */
#ifndef LB_QUANT_KMEANS_H
#define LB_QUANT_KMEANS_H

#include "lowbit/format.h"

#define LB_KMEANS_MAX_K 16       /* 2^4 levels: lut1..lut4 */
#define LB_KMEANS_ITERS 50       /* default Lloyd iterations: sklearn's max_iter, which SqueezeLLM uses */
#define LB_KMEANS_MAX_ITERS 1000 /* the largest iteration count an option may ask for */
#define LB_KMEANS_DP_MAX 65536   /* groups up to this many weights can start from the optimal partition */

/* Where Lloyd starts. */
enum {
    LB_KMEANS_INIT_OPTIMAL,  /* the globally optimal centers (a dynamic program over the sorted points;
                                groups above LB_KMEANS_DP_MAX weights: quantiles); Lloyd then confirms */
    LB_KMEANS_INIT_QUANTILE  /* the weighted quantiles (j + 1/2) / K */
};

/* One point of a group, in the order k-means sorts them (by value, then
 * index, so the order is total and the sums deterministic). */
typedef struct {
    double x, h;
    int64_t i;
} lb_kmeans_point;

/* Scratch for groups of up to cap points. */
typedef struct {
    int64_t cap;
    lb_kmeans_point *pts; /* cap */
    uint8_t *assign;      /* cap: cluster of each sorted point */
    double *err;          /* cap: each point's weighted error (empty-cluster relocation) */
    /* the optimal partition (cap <= LB_KMEANS_DP_MAX, else NULL) */
    double *prefix;       /* 3 (cap + 1): prefix sums of h, h x, h x^2 */
    double *cost;         /* 2 (cap + 1): two layers of the dynamic program */
    int32_t *from;        /* LB_KMEANS_MAX_K (cap + 1): where the last run starts */
} lb_kmeans_work;
lb_status lb_kmeans_work_init(lb_kmeans_work *w, int64_t cap);
void lb_kmeans_work_free(lb_kmeans_work *w);

/* The weighted objective after each assignment step: objective[0] is the
 * initial centers', objective[t] after t Lloyd updates; n entries. */
typedef struct {
    int n;
    double objective[LB_KMEANS_MAX_ITERS + 1];
} lb_kmeans_trace;

/* K centers (1..LB_KMEANS_MAX_K, written ascending to centers[0..K)) for the
 * points x[0..n) with weights h[0..n) (finite, >= 0; NULL or all zero:
 * every point counts 1), minimizing sum_i h_i (x_i - nearest center)^2 by
 * Lloyd's algorithm from `init` (LB_KMEANS_INIT_*), at most max_iter
 * updates, stopping at the first step that does not lower the objective. A
 * group with at most K distinct values gets exactly those values
 * (objective 0). Returns the objective at the centers returned. trace may
 * be NULL. */
double lb_kmeans_1d(const float *x, const double *h, int64_t n, int K, int max_iter, int init, lb_kmeans_work *w,
                    double *centers, lb_kmeans_trace *trace);

/* The nearest of K centers to x; on a tie the lower index. */
static inline int lb_kmeans_nearest(const double *c, int K, double x) {
    int best = 0;
    double be = x > c[0] ? x - c[0] : c[0] - x;
    for (int j = 1; j < K; j++) {
        double e = x > c[j] ? x - c[j] : c[j] - x;
        if (e < be) {
            be = e;
            best = j;
        }
    }
    return best;
}

/* A lut format from w (rows x cols): every group's levels by lb_kmeans_1d
 * (from `init`) over its weights, the weight of (r, c) being colw[c] * ww[r * cols + c]
 * (a factor that is NULL counts 1) and 0 where keep[r * cols + c] != 0;
 * the levels rounded to fp16 (lb_qtensor_store_scales), then each code the
 * nearest stored level (padding: the level nearest 0). q is initialized for
 * a lut spec by the caller; colw and ww finite and >= 0. Deterministic for
 * any thread count. */
lb_status lb_lut_quantize(const float *w, int64_t rows, int64_t cols, const float *colw, const float *ww,
                          const uint8_t *keep, int max_iter, int init, lb_qtensor *q);

#endif
