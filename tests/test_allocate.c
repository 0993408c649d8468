/* The mixed-precision allocator (lb_allocate): on random small
 * multiple-choice knapsacks with integer costs its choice fits the budget
 * and its loss equals brute force's optimum; options marked NAN are never
 * taken; rounding to coarse units stays within budget; impossible budgets
 * and bad arguments fail with their message. Also Spearman's rank
 * correlation (lb_rank_correlation) against hand-worked values. */
#include "test.h"

#define MAXN 7
#define MAXK 5

/* The least loss over all choices within budget (INFINITY if none). */
static double brute(int n, int k, const double *cost, const double *loss, double budget) {
    int pick[MAXN] = {0};
    double best = INFINITY;
    for (;;) {
        double c = 0, l = 0;
        int ok = 1;
        for (int i = 0; i < n; i++) {
            double ci = cost[i * k + pick[i]];
            if (isnan(ci)) ok = 0;
            c += ci, l += loss[i * k + pick[i]];
        }
        if (ok && c <= budget && l < best) best = l;
        int i = 0;
        while (i < n && ++pick[i] == k) pick[i++] = 0;
        if (i == n) return best;
    }
}

static void test_against_brute_force(void) {
    lb_rng r;
    lb_rng_seed(&r, 7);
    int exact = 0, trials = 0;
    for (int trial = 0; trial < 400; trial++) {
        int n = 1 + (int)(lb_rng_u32(&r) % MAXN), k = 1 + (int)(lb_rng_u32(&r) % MAXK);
        double cost[MAXN * MAXK], loss[MAXN * MAXK], lo = 0, hi = 0;
        for (int i = 0; i < n; i++) {
            double cmin = INFINITY, cmax = 0;
            int allowed = 0;
            for (int j = 0; j < k; j++) {
                cost[i * k + j] = (double)(lb_rng_u32(&r) % 21);
                loss[i * k + j] = 10.0 * lb_rng_f32(&r) - 2.0; /* negative losses too */
                if (j > 0 && lb_rng_u32(&r) % 5 == 0) cost[i * k + j] = NAN; /* not allowed */
                if (!isnan(cost[i * k + j])) {
                    allowed = 1;
                    if (cost[i * k + j] < cmin) cmin = cost[i * k + j];
                    if (cost[i * k + j] > cmax) cmax = cost[i * k + j];
                }
            }
            CHECK(allowed); /* option 0 is always allowed */
            lo += cmin, hi += cmax;
        }
        double budget = lo + floor((hi - lo + 1) * lb_rng_f32(&r));
        int choice[MAXN];
        CHECK_OK(lb_allocate(n, k, cost, loss, budget, 1.0, choice));
        double c = 0, l = 0;
        for (int i = 0; i < n; i++) {
            CHECK(choice[i] >= 0 && choice[i] < k && !isnan(cost[i * k + choice[i]]));
            c += cost[i * k + choice[i]], l += loss[i * k + choice[i]];
        }
        double want = brute(n, k, cost, loss, budget);
        CHECK_MSG(c <= budget, "trial %d: cost %g over budget %g", trial, c, budget);
        CHECK_MSG(fabs(l - want) < 1e-9, "trial %d: loss %g, brute force %g", trial, l, want);
        exact += fabs(l - want) < 1e-9;
        trials++;
        /* a coarser unit: costs round up, so whatever it picks fits (a budget
         * too tight for the rounded costs is refused, naming the unit) */
        lb_status st = lb_allocate(n, k, cost, loss, budget, 3.0, choice);
        CHECK(st == LB_OK || strstr(lb_last_error(), "smaller unit"));
        c = l = 0;
        for (int i = 0; st == LB_OK && i < n; i++) c += cost[i * k + choice[i]], l += loss[i * k + choice[i]];
        CHECK(st != LB_OK || (c <= budget && l >= want - 1e-9));
        /* the table's own unit: exact for whole costs of this size */
        CHECK_OK(lb_allocate(n, k, cost, loss, budget, 0, choice));
        l = 0;
        for (int i = 0; i < n; i++) l += loss[i * k + choice[i]];
        CHECK(fabs(l - want) < 1e-9);
    }
    CHECK(exact == trials);
}

/* Real-valued bit counts, as lowbit plan gives it: the table's own unit. */
static void test_auto_unit(void) {
    enum { N = 40, K = 4 };
    double cost[N * K], loss[N * K], budget = 0;
    static const double bpw[K] = {2.25, 3.25, 4.25, 8.5};
    for (int i = 0; i < N; i++) {
        double w = 4096.0 * (1 + i % 3);
        for (int j = 0; j < K; j++) {
            cost[i * K + j] = bpw[j] * w;
            loss[i * K + j] = (1.0 + i % 5) * pow(4.0, -j * 1.0);
        }
        budget += 3.0 * w; /* 3 bpw on average */
    }
    int choice[N];
    CHECK_OK(lb_allocate(N, K, cost, loss, budget, 0, choice));
    double c = 0, l = 0, l3 = 0;
    for (int i = 0; i < N; i++) c += cost[i * K + choice[i]], l += loss[i * K + choice[i]], l3 += loss[i * K + 0];
    CHECK(c <= budget);
    CHECK(l < l3); /* better than all at the cheapest option, which fits */
    /* the cheapest options alone: the budget exactly */
    double need = 0;
    for (int i = 0; i < N; i++) need += cost[i * K];
    CHECK_OK(lb_allocate(N, K, cost, loss, need, 0, choice));
    for (int i = 0; i < N; i++) CHECK(choice[i] == 0);
    CHECK_FAILS(lb_allocate(N, K, cost, loss, need - 1, 0, choice), LB_ERR_INVALID, "cheapest options need");
}

static void test_errors(void) {
    double cost[2] = {NAN, NAN}, loss[2] = {0, 0};
    int choice[2];
    CHECK_FAILS(lb_allocate(1, 2, cost, loss, 10, 1, choice), LB_ERR_INVALID, "no allowed option");
    cost[0] = -1;
    CHECK_FAILS(lb_allocate(1, 2, cost, loss, 10, 1, choice), LB_ERR_INVALID, "cost -1");
    cost[0] = 1, loss[0] = NAN;
    CHECK_FAILS(lb_allocate(1, 2, cost, loss, 10, 1, choice), LB_ERR_INVALID, "loss nan");
    loss[0] = 0;
    CHECK_FAILS(lb_allocate(0, 2, cost, loss, 10, 1, choice), LB_ERR_INVALID, "items");
    CHECK_FAILS(lb_allocate(1, 2, cost, loss, NAN, 1, choice), LB_ERR_INVALID, "finite");
    CHECK_FAILS(lb_allocate(1, 2, cost, loss, 1e15, 1, choice), LB_ERR_INVALID, "larger unit");
    CHECK_OK(lb_allocate(1, 2, cost, loss, 1, 1, choice));
    CHECK(choice[0] == 0);
}

static void test_rank_correlation(void) {
    double a[6] = {1, 2, 3, 4, 5, NAN}, b[6] = {5, 6, 7, 8, 7, 1}, c[5] = {10, 8, 6, 4, 2};
    /* b's ranks 0, 1, 2.5, 4, 2.5 against 0..4: 8 / sqrt(10 * 9.5) */
    CHECK(fabs(lb_rank_correlation(a, b, 6) - 8.0 / sqrt(95.0)) < 1e-12);
    CHECK(fabs(lb_rank_correlation(a, c, 5) + 1.0) < 1e-12);
    CHECK(fabs(lb_rank_correlation(a, a, 5) - 1.0) < 1e-12);
    double sq[5] = {1, 4, 9, 16, 25}; /* monotone, not linear: still 1 */
    CHECK(fabs(lb_rank_correlation(a, sq, 5) - 1.0) < 1e-12);
    double flat[5] = {3, 3, 3, 3, 3};
    CHECK(isnan(lb_rank_correlation(a, flat, 5)));
    CHECK(isnan(lb_rank_correlation(a, b, 2)));
}

int main(void) {
    test_against_brute_force();
    test_auto_unit();
    test_errors();
    test_rank_correlation();
    return lb_test_finish("test_allocate");
}
