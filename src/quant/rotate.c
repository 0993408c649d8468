/* Incoherence processing (QuIP#, QuaRot, HIGGS) in front of any method.
 *
 * With R_i = T diag(d_i) over the input and R_o = T diag(d_o) over the
 * output (lowbit/core.h's randomized Hadamard transforms; random signs),
 * the method quantizes W~ = R_o W R_i^T instead of W, against the rotated
 * input's statistics H~ = R_i H R_i^T, which keeps its proxy loss
 * tr(dW H dW^T) unchanged for the same error (orthogonal maps) while
 * spreading every outlier weight over whole rows and columns: W~'s entries
 * look Gaussian, which is what grids and codebooks are built for. The
 * linear then stores both sign vectors (1 bit per row and per column) and
 * applies R_i to its input and R_o^T to its output at inference
 * (lowbit/linear.h's rotation slots). */
#include "quant/rotate.h"

#include <string.h>

void lb_rotated_free(lb_rotated *r) {
    lb_free(r->w);
    lb_free(r->in_signs);
    lb_free(r->out_signs);
    lb_free(r->stats.dxtx); /* lb_layer_stats_free leaves it to its owner */
    lb_layer_stats_free(&r->stats);
    memset(r, 0, sizeof *r);
}

/* splitmix64's finalizer: distinct well-mixed seeds per tensor and side */
static uint64_t mix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static uint64_t name_hash(const char *s) { /* FNV-1a */
    uint64_t h = 0xcbf29ce484222325ull;
    for (; s && *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

/* *out = R_i H R_i^T for H (n x n): R_i on every row, then on every
 * column; symmetric again to the last bit when H is (X^T X; GPTAQ's cross
 * term is not) */
static lb_status rotated_copy(const double *h, int64_t n, const float *signs, int symmetric, double **out) {
    double *a = *out = lb_alloc((size_t)n * (size_t)n * sizeof(double));
    if (!a) return LB_ERR_NOMEM;
    memcpy(a, h, (size_t)n * (size_t)n * sizeof(double));
    lb_status st = lb_rht_apply_rows_f64(a, n, n, signs, 0);
    if (st == LB_OK) st = lb_rht_apply_cols_f64(a, n, n, signs, 0);
    for (int64_t r = 0; symmetric && r < n; r++)
        for (int64_t c = r + 1; c < n; c++) a[r * n + c] = a[c * n + r] = 0.5 * (a[r * n + c] + a[c * n + r]);
    return st;
}

lb_status lb_rotate_begin(const float *w, int64_t rows, int64_t cols, const lb_layer_stats *stats, unsigned need,
                          int output, uint64_t seed, const char *name, lb_rotated *r) {
    memset(r, 0, sizeof *r);
    const char *who = name ? name : "the weight";
    unsigned cannot = need & ~(unsigned)(LB_STATS_XTX | LB_STATS_MEAN_X | LB_STATS_DXTX);
    if (cannot)
        return lb_fail(LB_ERR_UNSUPPORTED,
                       "'%s': a rotation carries over X^T X, mean x and GPTAQ's cross term only, and this method "
                       "also reads %s",
                       who, cannot & LB_STATS_GRAD_SQ ? "squared gradients" : "per-channel |x| statistics");
    if (stats && stats->cols != cols)
        return lb_fail(LB_ERR_INVALID, "'%s': statistics of a %lld-wide input for a %lld-wide weight", who,
                       (long long)stats->cols, (long long)cols);
    lb_status st = lb_rht_check(cols);
    if (st == LB_OK && output) st = lb_rht_check(rows);
    if (st != LB_OK) return lb_fail_context(st, "'%s' (%lld x %lld): rotate=%s", who, (long long)rows,
                                            (long long)cols, output ? "hadamard" : "input");
    size_t n = (size_t)rows * (size_t)cols;
    r->w = lb_alloc(n * sizeof(float));
    r->in_signs = lb_alloc((size_t)cols * sizeof(float));
    r->out_signs = output ? lb_alloc((size_t)rows * sizeof(float)) : NULL;
    if (!r->w || !r->in_signs || (output && !r->out_signs)) {
        lb_rotated_free(r);
        return LB_ERR_NOMEM;
    }
    uint64_t h = name_hash(name);
    lb_rht_signs(mix(seed ^ mix(h)), cols, r->in_signs);
    if (output) lb_rht_signs(mix(seed ^ mix(h + 1)), rows, r->out_signs);
    memcpy(r->w, w, n * sizeof(float));
    st = lb_rht_apply_rows(r->w, rows, cols, r->in_signs, 0); /* W R_i^T */
    if (st == LB_OK && output) st = lb_rht_apply_cols(r->w, rows, cols, r->out_signs, 0); /* R_o (...) */
    if (st != LB_OK || !stats) {
        if (st != LB_OK) lb_rotated_free(r);
        return st;
    }
    r->stats.n_samples = stats->n_samples;
    r->stats.rows = stats->rows;
    r->stats.cols = stats->cols;
    if (stats->xtx && (need & LB_STATS_XTX)) st = rotated_copy(stats->xtx, cols, r->in_signs, 1, &r->stats.xtx);
    if (st == LB_OK && stats->dxtx && (need & LB_STATS_DXTX)) /* sum (x_fp - x) x^T: both inputs rotate */
        st = rotated_copy(stats->dxtx, cols, r->in_signs, 0, &r->stats.dxtx);
    if (st == LB_OK && stats->mean_x && (need & LB_STATS_MEAN_X)) {
        if (!(r->stats.mean_x = lb_alloc((size_t)cols * sizeof(float)))) st = LB_ERR_NOMEM;
        else {
            memcpy(r->stats.mean_x, stats->mean_x, (size_t)cols * sizeof(float));
            st = lb_rht_apply(r->stats.mean_x, cols, r->in_signs, 0);
        }
    }
    if (st != LB_OK) lb_rotated_free(r);
    return st;
}
