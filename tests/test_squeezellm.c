/* squeezellm (src/quant/squeezellm.c) and the weighted 1-D k-means under it
 * (src/quant/kmeans.c), on problems with known answers: groups that hold
 * exactly 2^b values come back exactly; Lloyd's objective never rises;
 * tiny cases against the brute-force optimal partition; a heavier diag(H)
 * pulls its weight's error down; Fisher weights; dense-and-sparse outliers
 * take no part in placing the levels; thread-count independence. */
#include "test.h"

#include "quant/kmeans.h"

static lb_layer_stats diag_stats(double *xtx, int64_t rows, int64_t cols, const double *diag) {
    memset(xtx, 0, (size_t)(cols * cols) * sizeof(double));
    for (int64_t c = 0; c < cols; c++) xtx[c * cols + c] = diag[c];
    return (lb_layer_stats){.n_samples = 16, .rows = rows, .cols = cols, .xtx = xtx};
}

/* squeezellm (options kv) on w; dequantized into out, packed bytes kept in *t when t */
static lb_status squeeze(const char *kv, const lb_layer_stats *st, const float *w, int64_t rows, int64_t cols,
                         const char *format, float *out, lb_tensor *keep_t) {
    const lb_method *m = lb_method_find("squeezellm");
    lb_method_opts o;
    lb_status s = lb_test_method_opts(m, kv, &o);
    if (s != LB_OK) return s;
    lb_qspec spec = lb_test_spec(format);
    lb_tensor t;
    if ((s = lb_quantize_tensor(m, &o, st, w, rows, cols, &spec, "w", &t)) != LB_OK) return s;
    if (out) s = lb_dequantize(&t, out);
    if (keep_t) *keep_t = t;
    else lb_tensor_free(&t);
    return s;
}

/* Every group holds exactly 2^b distinct fp16 values (each at least once):
 * the levels are those values and every weight comes back exactly. */
static void test_exact_recovery(void) {
    enum { R = 4, C = 64 };
    static const char *specs[] = {"lut1:g16", "lut2:g32", "lut3:row", "lut4:g64", "lut2:tensor", "lut4:g16"};
    float w[R * C], out[R * C];
    double xtx[C * C], diag[C];
    lb_rng r;
    lb_rng_seed(&r, 31);
    for (int c = 0; c < C; c++) diag[c] = 0.1 + lb_rng_f32(&r);
    lb_layer_stats st = diag_stats(xtx, R, C, diag);
    for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++) {
        lb_qspec s = lb_test_spec(specs[k]);
        int K = lb_format_levels(&s);
        int64_t glen = s.group > 0 ? s.group : s.group == LB_GROUP_ROW ? C : R * C;
        for (int64_t g0 = 0; g0 < R * C; g0 += glen) {
            float v[16];
            for (int j = 0; j < K; j++) v[j] = lb_round_fp16((float)lb_rng_normal(&r));
            for (int64_t i = 0; i < glen; i++) w[g0 + i] = i < K ? v[i] : v[lb_rng_u32(&r) % (uint32_t)K];
        }
        CHECK_OK(squeeze("", &st, w, R, C, specs[k], out, NULL));
        int bad = 0;
        for (int i = 0; i < R * C; i++) bad += out[i] != w[i];
        CHECK_MSG(bad == 0, "%s: %d weights not recovered", specs[k], bad);
    }
}

static double objective_at(const float *x, const double *h, int n, const double *c, int K) {
    double J = 0;
    for (int i = 0; i < n; i++) {
        double d = x[i] - c[lb_kmeans_nearest(c, K, x[i])];
        J += (h ? h[i] : 1.0) * d * d;
    }
    return J;
}

/* Lloyd's objective is non-increasing step by step (both half-steps can
 * only lower it; an empty cluster's relocation lowers it too), the result
 * is the best step's, and its centers ascend. From quantiles (where Lloyd
 * really runs) and from the optimum (where it must not move). */
static void test_monotone(void) {
    enum { NMAX = 1000 };
    static float x[NMAX];
    static double h[NMAX];
    static lb_kmeans_trace tr;
    lb_kmeans_work wk;
    CHECK_OK(lb_kmeans_work_init(&wk, NMAX));
    lb_rng r;
    lb_rng_seed(&r, 41);
    static const int ns[] = {20, 300, 1000}, Ks[] = {2, 4, 8, 16};
    int cases = 0, long_runs = 0, steps = 0;
    for (int init = 0; init < 2; init++) {
        for (int shape = 0; shape < 3; shape++)
            for (int weighting = 0; weighting < 3; weighting++)
                for (size_t a = 0; a < 3; a++)
                    for (size_t b = 0; b < 4; b++, cases++) {
                        int n = ns[a], K = Ks[b];
                        for (int i = 0; i < n; i++) {
                            double z = lb_rng_normal(&r);
                            x[i] = (float)(shape == 0 ? z : shape == 1 ? z * z * z : z + (i % 3 == 0 ? 6.0 : 0.0));
                            /* unit, log-normal, and log-normal with a third at 0 */
                            double lognormal = exp(lb_rng_normal(&r));
                            h[i] = weighting == 0 ? 1.0 : lognormal * (weighting == 2 && i % 3 == 1 ? 0 : 1);
                        }
                        double c[16];
                        int start = init ? LB_KMEANS_INIT_OPTIMAL : LB_KMEANS_INIT_QUANTILE;
                        double J = lb_kmeans_1d(x, h, n, K, 200, start, &wk, c, &tr);
                        CHECK(tr.n >= 1 && tr.n <= 201);
                        double lowest = tr.objective[0];
                        for (int t = 1; t < tr.n; t++) {
                            CHECK_MSG(tr.objective[t] <= tr.objective[t - 1],
                                      "n %d K %d: step %d raised %.17g -> %.17g", n, K, t, tr.objective[t - 1],
                                      tr.objective[t]);
                            lowest = fmin(lowest, tr.objective[t]);
                        }
                        CHECK(J == lowest);
                        for (int j = 1; j < K; j++) CHECK(c[j - 1] <= c[j]);
                        CHECK_NEAR(objective_at(x, h, n, c, K), J, 1e-9 * (J + 1e-300));
                        if (!init) long_runs += tr.n >= 5;
                        /* Lloyd cannot improve an optimum: the first update changes nothing */
                        if (init)
                            CHECK_MSG(tr.n <= 2, "n %d K %d: Lloyd moved the optimum (%d steps)", n, K, tr.n);
                        steps += tr.n - 1;
                    }
    }
    /* the check above must have seen real descents, not one-step runs */
    CHECK_MSG(long_runs > cases / 4, "only %d of %d runs took 4+ steps", long_runs, cases / 2);
    printf("k-means: %d runs, %d Lloyd steps, objective never rose\n", cases, steps);
    /* max_iter bounds the updates */
    double c[16];
    for (int i = 0; i < 300; i++) x[i] = (float)lb_rng_normal(&r);
    lb_kmeans_1d(x, NULL, 300, 8, 1, LB_KMEANS_INIT_QUANTILE, &wk, c, &tr);
    CHECK(tr.n == 2);
    lb_kmeans_work_free(&wk);
}

/* weighted squared error of the best partition of the sorted points into K
 * contiguous runs (1-D k-means optima are contiguous), by enumeration */
static double brute_force(const float *xs, const double *hs, int n, int K) {
    double best = INFINITY;
    int cut[8]; /* run j is [cut[j], cut[j + 1]) */
    cut[0] = 0;
    cut[K] = n;
    for (int j = 1; j < K; j++) cut[j] = j;
    for (;;) {
        double J = 0;
        for (int j = 0; j < K; j++) {
            double sh = 0, shx = 0;
            for (int i = cut[j]; i < cut[j + 1]; i++) sh += hs[i], shx += hs[i] * xs[i];
            for (int i = cut[j]; i < cut[j + 1]; i++) J += hs[i] * (xs[i] - shx / sh) * (xs[i] - shx / sh);
        }
        best = fmin(best, J);
        int j = K - 1; /* next combination of cuts 1..K-1 in 1..n-1 */
        while (j >= 1 && cut[j] == n - K + j) j--;
        if (j < 1) break;
        cut[j]++;
        for (int m = j + 1; m < K; m++) cut[m] = cut[m - 1] + 1;
    }
    return best;
}

/* Tiny cases against brute force. From the optimal start the result is
 * the optimum on every case (the known answer). Plain Lloyd (quantile
 * start) finds a stationary point (every center the weighted mean of its
 * nearest points), which in 1-D, too, need not be the optimum: asserted on
 * every case are what is always true, never below the optimum and
 * stationary; the share at the optimum is printed. */
static void test_brute_force(void) {
    lb_kmeans_work wk;
    CHECK_OK(lb_kmeans_work_init(&wk, 16));
    lb_rng r;
    lb_rng_seed(&r, 51);
    static const struct {
        int n, K;
    } shapes[] = {{8, 2}, {8, 3}, {7, 4}, {9, 2}, {12, 5}};
    int total = 0, optimal = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int trial = 0; trial < 400; trial++, total++) {
            int n = shapes[s].n, K = shapes[s].K;
            float x[16], xs[16];
            double h[16], hs[16], c[16];
            for (int i = 0; i < n; i++) {
                x[i] = lb_round_fp16((float)lb_rng_normal(&r));
                h[i] = trial % 2 ? 1.0 : exp(2.0 * lb_rng_normal(&r));
            }
            for (int i = 0; i < n; i++) { /* sorted copies for brute force */
                int j = i;
                for (; j > 0 && xs[j - 1] > x[i]; j--) xs[j] = xs[j - 1], hs[j] = hs[j - 1];
                xs[j] = x[i];
                hs[j] = h[i];
            }
            double opt = brute_force(xs, hs, n, K), tol = 1e-9 * opt + 1e-300;
            double Jo = lb_kmeans_1d(x, h, n, K, 1000, LB_KMEANS_INIT_OPTIMAL, &wk, c, NULL);
            CHECK_MSG(fabs(Jo - opt) <= tol, "n %d K %d trial %d: %.17g, the optimum is %.17g", n, K, trial, Jo, opt);
            double J = lb_kmeans_1d(x, h, n, K, 1000, LB_KMEANS_INIT_QUANTILE, &wk, c, NULL);
            CHECK_MSG(J >= opt - tol, "n %d K %d trial %d: %.17g below the optimum %.17g", n, K, trial, J, opt);
            optimal += J <= opt + tol;
            /* stationary: the centers are their clusters' weighted means */
            double sh[16] = {0}, shx[16] = {0};
            for (int i = 0; i < n; i++) {
                int a = lb_kmeans_nearest(c, K, x[i]);
                sh[a] += h[i];
                shx[a] += h[i] * x[i];
            }
            for (int j = 0; j < K; j++)
                if (sh[j] > 0)
                    CHECK_MSG(fabs(c[j] - shx[j] / sh[j]) <= 1e-12 * (fabs(c[j]) + 1e-6),
                              "trial %d: center %d %g, mean %g", trial, j, c[j], shx[j] / sh[j]);
        }
    printf("k-means on %d tiny cases: optimal start always optimal; plain Lloyd optimal on %d\n", total, optimal);

    /* Plain Lloyd stuck, by hand: 4, 6, 8, 9, 13, K = 2. The quantiles 1.25
     * and 3.75 (of 5) start at 6 and 9; nearest splits {4, 6} | {8, 9, 13},
     * means 5 and 10, whose midpoint 7.5 gives the same split: stationary,
     * objective 1 + 1 + 4 + 1 + 9 = 16. The optimum {4, 6, 8, 9} | {13} has
     * centers 6.75 and 13 and objective 14.75. */
    float x[5] = {4, 6, 8, 9, 13};
    double c[2];
    CHECK(lb_kmeans_1d(x, NULL, 5, 2, 1000, LB_KMEANS_INIT_QUANTILE, &wk, c, NULL) == 16.0);
    CHECK(c[0] == 5.0 && c[1] == 10.0);
    CHECK(lb_kmeans_1d(x, NULL, 5, 2, 1000, LB_KMEANS_INIT_OPTIMAL, &wk, c, NULL) == 14.75);
    CHECK(c[0] == 6.75 && c[1] == 13.0);
    lb_kmeans_work_free(&wk);
}

/* A column with a much larger diag(H) gets its weight reproduced much more
 * closely than unweighted k-means (rtn) manages, and the weighted objective
 * is lower; equal diag(H) everywhere is unweighted k-means: rtn's bytes. */
static void test_weighting(void) {
    enum { C = 64 };
    float w[C], out_u[C], out_w[C];
    double xtx[C * C], diag[C];
    lb_rng r;
    lb_rng_seed(&r, 61);
    for (int c = 0; c < C; c++) w[c] = (float)lb_rng_normal(&r);
    const lb_method *rtn = lb_method_find("rtn");
    lb_qspec s = lb_test_spec("lut2:row");
    lb_tensor tu, tw;
    CHECK_OK(lb_quantize_tensor(rtn, NULL, NULL, w, 1, C, &s, "w", &tu));
    CHECK_OK(lb_dequantize(&tu, out_u));
    int j = 0;
    for (int c = 1; c < C; c++)
        if (fabsf(w[c] - out_u[c]) > fabsf(w[j] - out_u[j])) j = c;
    for (int c = 0; c < C; c++) diag[c] = 3.0;
    lb_layer_stats st = diag_stats(xtx, 1, C, diag);
    CHECK_OK(squeeze("", &st, w, 1, C, "lut2:row", NULL, &tw));
    CHECK(tw.nbytes == tu.nbytes && !memcmp(tw.data, tu.data, tu.nbytes));
    lb_tensor_free(&tw);
    diag[j] = 1000.0;
    st = diag_stats(xtx, 1, C, diag);
    CHECK_OK(squeeze("", &st, w, 1, C, "lut2:row", out_w, NULL));
    double eu = fabs((double)w[j] - out_u[j]), ew = fabs((double)w[j] - out_w[j]), Ju = 0, Jw = 0;
    for (int c = 0; c < C; c++) {
        Ju += diag[c] * ((double)w[c] - out_u[c]) * ((double)w[c] - out_u[c]);
        Jw += diag[c] * ((double)w[c] - out_w[c]) * ((double)w[c] - out_w[c]);
    }
    printf("weight %d with 333x the diag(H): error %.4g unweighted, %.4g weighted; objective %.4g -> %.4g\n", j, eu,
           ew, Ju, Jw);
    CHECK_MSG(eu > 0 && ew < 0.1 * eu, "error %g weighted, %g unweighted", ew, eu);
    CHECK(Jw < Ju);
    lb_tensor_free(&tu);
}

/* weights=fisher reads the per-weight sum g^2: a heavy entry pulls its own
 * weight (and only in its row); without gradients in the statistics, or
 * with negative ones, it fails saying why. */
static void test_fisher(void) {
    enum { R = 3, C = 64 };
    float w[R * C], out_x[R * C], out_f[R * C], g[R * C];
    double xtx[C * C], diag[C];
    lb_rng r;
    lb_rng_seed(&r, 71);
    for (int i = 0; i < R * C; i++) w[i] = (float)lb_rng_normal(&r), g[i] = 1.0f;
    for (int c = 0; c < C; c++) diag[c] = 1.0;
    lb_layer_stats st = diag_stats(xtx, R, C, diag);
    CHECK_FAILS(squeeze("weights=fisher", &st, w, R, C, "lut2:row", out_f, NULL), LB_ERR_INVALID, "use weights=xtx");
    CHECK_OK(squeeze("", &st, w, R, C, "lut2:row", out_x, NULL));
    int heavy[R];
    for (int row = 0; row < R; row++) { /* each row's worst-served weight under xtx */
        heavy[row] = 0;
        for (int c = 1; c < C; c++)
            if (fabsf(w[row * C + c] - out_x[row * C + c]) >
                fabsf(w[row * C + heavy[row]] - out_x[row * C + heavy[row]]))
                heavy[row] = c;
        g[row * C + heavy[row]] = 1000.0f;
    }
    st.grad_sq = g;
    CHECK_OK(squeeze("weights=fisher", &st, w, R, C, "lut2:row", out_f, NULL));
    for (int row = 0; row < R; row++) {
        int i = row * C + heavy[row];
        CHECK_MSG(fabsf(w[i] - out_f[i]) < 0.1f * fabsf(w[i] - out_x[i]), "row %d: %g vs %g", row,
                  fabsf(w[i] - out_f[i]), fabsf(w[i] - out_x[i]));
    }
    g[5] = -1.0f;
    CHECK_FAILS(squeeze("weights=fisher", &st, w, R, C, "lut2:row", out_f, NULL), LB_ERR_NUMERIC, "sum g^2 entry 5");
    g[5] = NAN;
    CHECK_FAILS(squeeze("weights=fisher", &st, w, R, C, "lut2:row", out_f, NULL), LB_ERR_NUMERIC, "sum g^2 entry 5");
}

/* Dense-and-sparse: a kept weight gets sensitivity 0, so the levels are
 * exactly those of the other weights alone, and the outlier comes back
 * through the sparse part. */
static void test_outliers(void) {
    enum { C = 64 };
    float w[C], rest[C], out[C], out_rest[C];
    double xtx[C * C], diag[C];
    lb_rng r;
    lb_rng_seed(&r, 81);
    for (int c = 0; c < C; c++) w[c] = 0.1f * (float)lb_rng_normal(&r), diag[c] = 0.5 + c % 7;
    w[20] = 8.0f; /* one outlier */
    const lb_method *m = lb_method_find("squeezellm");
    lb_method_opts o;
    CHECK_OK(lb_test_method_opts(m, "outliers=0.0157", &o)); /* round(0.0157 * 64) = 1 kept */
    lb_qspec s = lb_test_spec("lut2:row");
    lb_layer_stats st = diag_stats(xtx, 1, C, diag);
    lb_tensor t;
    lb_quant_extras x;
    CHECK_OK(lb_quantize_tensor_ex(m, &o, &st, w, 1, C, &s, "w", &t, &x));
    CHECK_OK(lb_dequantize(&t, out));
    CHECK(x.nnz == 1 && x.col_idx[0] == 20);
    if (x.nnz == 1) CHECK(fabsf(out[20] + x.values[0] - 8.0f) <= 8.0f * 1e-3f);
    /* the same row without the outlier, its diag(H) entry dropped too */
    double diag2[C - 1], xtx2[(C - 1) * (C - 1)];
    for (int c = 0, k = 0; c < C; c++)
        if (c != 20) rest[k] = w[c], diag2[k++] = diag[c];
    lb_layer_stats st2 = diag_stats(xtx2, 1, C - 1, diag2);
    CHECK_OK(squeeze("", &st2, rest, 1, C - 1, "lut2:row", out_rest, NULL));
    for (int c = 0, k = 0; c < C; c++) {
        if (c == 20) continue;
        CHECK_MSG(out[c] == out_rest[k], "weight %d: %g vs %g", c, out[c], out_rest[k]);
        k++;
    }
    lb_quant_extras_free(&x);
    lb_tensor_free(&t);
}

static void test_threads_and_options(void) {
    enum { R = 64, C = 256 };
    static float w[R * C];
    static double xtx[C * C], diag[C];
    lb_rng r;
    lb_rng_seed(&r, 91);
    for (int i = 0; i < R * C; i++) w[i] = (float)lb_rng_normal(&r);
    for (int c = 0; c < C; c++) diag[c] = exp(lb_rng_normal(&r));
    lb_layer_stats st = diag_stats(xtx, R, C, diag);
    lb_tensor a, b;
    lb_set_threads(1);
    CHECK_OK(squeeze("", &st, w, R, C, "lut3:g32", NULL, &a));
    lb_set_threads(2);
    CHECK_OK(squeeze("", &st, w, R, C, "lut3:g32", NULL, &b));
    CHECK(a.nbytes == b.nbytes && !memcmp(a.data, b.data, a.nbytes));
    lb_tensor_free(&a);
    lb_tensor_free(&b);
    CHECK_OK(squeeze("iters=1", &st, w, R, C, "lut3:tensor", NULL, NULL));
    CHECK_FAILS(squeeze("iters=0", &st, w, R, C, "lut3", NULL, NULL), LB_ERR_INVALID, "1..1000");
    CHECK_FAILS(squeeze("weights=hessian", &st, w, R, C, "lut3", NULL, NULL), LB_ERR_INVALID, "xtx, fisher");
    CHECK_FAILS(squeeze("", &st, w, R, C, "int3:g64", NULL, NULL), LB_ERR_INVALID, "lut formats");
    CHECK_FAILS(squeeze("", NULL, w, R, C, "lut3", NULL, NULL), LB_ERR_INVALID, "X^T X");
}

int main(void) {
    test_exact_recovery();
    test_monotone();
    test_brute_force();
    test_weighting();
    test_fisher();
    test_outliers();
    test_threads_and_options();
    return lb_test_finish("test_squeezellm");
}
