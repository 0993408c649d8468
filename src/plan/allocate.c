/* Bits where they matter: the multiple-choice knapsack behind `lowbit plan`.
 *
 * Each item (a tensor) takes exactly one of its options (a format made by a
 * method), option k of item i costing cost[i][k] bits and adding loss[i][k]
 * to the predicted loss; the total cost must stay within the budget. Solved
 * exactly by dynamic programming over costs counted in whole units: each
 * cost is rounded up to units, so whatever the table picks fits the real
 * budget, and with integer costs and unit 1 the answer is the true optimum
 * (test_allocate checks small problems against brute force).
 *
 *   best_i(b) = min over k of best_{i-1}(b - c_ik) + loss_ik,  best_0(b) = 0
 *
 * best_i(b) is the least loss of items 0..i with at most b units spent; the
 * option each cell chose is kept (two bytes a cell) to walk the answer back. */
#include "lowbit/plan.h"

#include <math.h>
#include <string.h>

#define MAX_CELLS ((int64_t)1 << 25) /* table cells (items x budget units) when unit is chosen here */

static int64_t units_of(double cost, double unit) {
    double u = cost / unit;
    return (int64_t)ceil(u - 1e-9 * (u > 1 ? u : 1)); /* 3.0000000001 units is 3, not 4 */
}

static int64_t gcd(int64_t a, int64_t b) {
    while (b) {
        int64_t t = a % b;
        a = b, b = t;
    }
    return a;
}

lb_status lb_allocate(int n, int n_opts, const double *cost, const double *loss, double budget, double unit,
                      int *choice) {
    if (n < 1 || n_opts < 1 || n_opts > 65535 || !cost || !loss || !choice)
        return lb_fail(LB_ERR_INVALID, "allocate: %d items of %d options (1..65535), or a NULL array", n, n_opts);
    if (!(budget >= 0) || !isfinite(budget) || !(unit >= 0) || !isfinite(unit))
        return lb_fail(LB_ERR_INVALID, "allocate: budget %g and unit %g must be finite and >= 0", budget, unit);
    double need = 0; /* the cheapest choice of every item */
    for (int i = 0; i < n; i++) {
        double lo = INFINITY;
        for (int k = 0; k < n_opts; k++) {
            double c = cost[(size_t)i * n_opts + k], l = loss[(size_t)i * n_opts + k];
            if (isnan(c)) continue; /* not allowed */
            if (c < 0 || !isfinite(c) || !isfinite(l))
                return lb_fail(LB_ERR_INVALID, "allocate: item %d option %d has cost %g, loss %g", i, k, c, l);
            if (c < lo) lo = c;
        }
        if (lo == INFINITY) return lb_fail(LB_ERR_INVALID, "allocate: item %d has no allowed option", i);
        need += lo;
    }
    if (need > budget)
        return lb_fail(LB_ERR_INVALID, "allocate: the cheapest options need %.0f bits, more than the budget of %.0f",
                       need, budget);
    if (unit == 0) {
        /* whole costs with a common divisor that keeps the table small: that
         * divisor, and the answer is exact (bit counts of whole bytes or
         * blocks); otherwise as fine as a table of MAX_CELLS cells allows */
        int64_t cols = MAX_CELLS / n, g = 0;
        if (cols > 65536) cols = 65536;
        if (cols < 64) cols = 64;
        for (size_t i = 0; i < (size_t)n * n_opts; i++) {
            double c = cost[i];
            if (isnan(c)) continue;
            if (c != floor(c) || c > 9e15) {
                g = 0;
                break;
            }
            g = gcd(g, (int64_t)c);
        }
        unit = g > 0 && budget / (double)g <= (double)cols ? (double)g : budget / (double)cols;
        if (unit < 1) unit = 1;
    }
    int64_t B = (int64_t)floor(budget / unit + 1e-9);
    if ((double)(B + 1) * n > 4.0 * (double)MAX_CELLS)
        return lb_fail(LB_ERR_INVALID, "allocate: a budget of %lld units over %d items is too large a table; use a "
                       "larger unit", (long long)B, n);
    size_t W = (size_t)B + 1;
    double *prev = lb_alloc(W * sizeof *prev), *cur = lb_alloc(W * sizeof *cur);
    uint16_t *arg = lb_alloc((size_t)n * W * sizeof *arg);
    int64_t *c = lb_alloc((size_t)n_opts * sizeof *c);
    if (!prev || !cur || !arg || !c) {
        lb_free(prev), lb_free(cur), lb_free(arg), lb_free(c);
        return LB_ERR_NOMEM;
    }
    for (size_t b = 0; b < W; b++) prev[b] = 0;
    lb_status st = LB_OK;
    for (int i = 0; i < n && st == LB_OK; i++) {
        const double *ci = cost + (size_t)i * n_opts, *li = loss + (size_t)i * n_opts;
        for (int k = 0; k < n_opts; k++) c[k] = isnan(ci[k]) ? -1 : units_of(ci[k], unit);
        uint16_t *a = arg + (size_t)i * W;
        for (size_t b = 0; b < W; b++) {
            double best = INFINITY;
            int bk = 0;
            for (int k = 0; k < n_opts; k++) {
                if (c[k] < 0 || c[k] > (int64_t)b) continue;
                double v = prev[b - (size_t)c[k]] + li[k];
                if (v < best) best = v, bk = k; /* ties: the earlier option */
            }
            cur[b] = best;
            a[b] = (uint16_t)bk;
        }
        double *t = prev;
        prev = cur, cur = t;
    }
    /* rounding costs up can leave nothing that fits although the real costs do */
    if (prev[B] == INFINITY)
        st = lb_fail(LB_ERR_INVALID, "allocate: no choice fits %.0f bits in units of %g bits; use a smaller unit",
                     budget, unit);
    if (st == LB_OK) {
        int64_t b = B;
        for (int i = n - 1; i >= 0; i--) {
            int k = arg[(size_t)i * W + (size_t)b];
            choice[i] = k;
            b -= units_of(cost[(size_t)i * n_opts + k], unit);
        }
    }
    lb_free(prev), lb_free(cur), lb_free(arg), lb_free(c);
    return st;
}
