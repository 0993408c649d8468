/* Activation quantization: the spec parser, the simulated quantizer against
 * hand-computed codes and its error bound, lb_linear_forward with the slot
 * against quantize-dequantize by hand, and the static range rules
 * (src/calib/act_range.c) on histograms whose answer is known: Gaussian and
 * Laplace data against the analytic MSE optimum, a uniform bulk with a rare
 * spike (minmax keeps it, percentiles and KL clip it). No data files. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lowbit.h"
#include "test.h"

static void test_parse(void) {
    static const char *const good[][2] = {
        {"int8:token", "int8:token"},           {"int4:token", "int4:token"},
        {"int8:tensor", "int8:tensor:minmax"},  {"int8:tensor:minmax", "int8:tensor:minmax"},
        {"int8:tensor:p99.99", "int8:tensor:p99.99"}, {"int8:tensor:p99.9", "int8:tensor:p99.9"},
        {"int6:tensor:kl", "int6:tensor:kl"},   {"int8:tensor:mse", "int8:tensor:mse"},
        {"int8:tensor:p100", "int8:tensor:p100"}, {"int5:tensor:p50.0001", "int5:tensor:p50.0001"},
        {"none", "none"},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        lb_act_quant a, b;
        char text[64];
        CHECK_OK(lb_act_spec_parse(good[i][0], &a));
        lb_act_spec_format(&a, text, sizeof text);
        CHECK_MSG(!strcmp(text, good[i][1]), "'%s' formats as '%s', want '%s'", good[i][0], text, good[i][1]);
        CHECK_OK(lb_act_spec_parse(text, &b));
        CHECK(memcmp(&a, &b, sizeof a) == 0);
        CHECK(a.clip == 0.0f);
    }
    lb_act_quant a;
    CHECK_OK(lb_act_spec_parse("int8:tensor:p99.99", &a));
    CHECK(a.kind == LB_AQ_TENSOR && a.bits == 8 && a.rule == LB_ACT_RANGE_PERCENTILE && a.percentile == 99.99);
    CHECK_OK(lb_act_spec_parse("int5:token", &a));
    CHECK(a.kind == LB_AQ_TOKEN && a.bits == 5);
    static const char *const bad[] = {"", "int8", "int3:token", "int9:token", "int8:token:kl", "int8:tensor:p49",
                                      "int8:tensor:p100.5", "int8:tensor:p99.", "int8:tensor:p1e2", "int8:tensor:kl:x",
                                      "int8:row", "INT8:token", "int8:tensor:p99.99999", "int88:token", "int8:tensor:",
                                      "int8:tensor:p", "int8:tensor:p-99", ":token", "int8::token", "none:x",
                                      "int8:tensor:p0099.9", "int8:token ", "uint8:token",
                                      "int8:tensor:klxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) CHECK_FAILS(lb_act_spec_parse(bad[i], &a), LB_ERR_INVALID, "expected");
    CHECK_FAILS(lb_act_spec_parse(NULL, &a), LB_ERR_INVALID, "expected");
    /* a static quantizer without its clip cannot be used */
    CHECK_OK(lb_act_spec_parse("int8:tensor:kl", &a));
    float x[4] = {1, 2, 3, 4};
    CHECK_FAILS(lb_act_quantize_rows(&a, x, 1, 4, x), LB_ERR_INVALID, "calibrate");
    a.clip = NAN;
    CHECK_FAILS(lb_act_quantize_rows(&a, x, 1, 4, x), LB_ERR_NUMERIC, "clip");
}

/* Codes worked out by hand, round half away from zero. */
static void test_known_codes(void) {
    lb_act_quant a = {.kind = LB_AQ_TOKEN, .bits = 4};
    /* 4 bits: qmax 7; absmax 7 -> delta 1 */
    float x[2][4] = {{7.0f, -3.5f, 1.2f, 0.25f}, {0, 0, 0, 0}}, y[2][4];
    CHECK_OK(lb_act_quantize_rows(&a, &x[0][0], 2, 4, &y[0][0]));
    const float want[2][4] = {{7, -4, 1, 0}, {0, 0, 0, 0}};
    CHECK(memcmp(y, want, sizeof y) == 0);
    /* 8 bits: qmax 127; absmax 127 -> delta 1 */
    a.bits = 8;
    float u[4] = {127.0f, 63.5f, -0.4f, -0.6f}, v[4];
    CHECK_OK(lb_act_quantize_rows(&a, u, 1, 4, v));
    CHECK(v[0] == 127.0f && v[1] == 64.0f && v[2] == 0.0f && v[3] == -1.0f);
    /* static: clip 2 at 4 bits -> delta 2/7, values beyond +-2 saturate */
    lb_act_quant s = {.kind = LB_AQ_TENSOR, .bits = 4, .rule = LB_ACT_RANGE_MINMAX, .clip = 2.0f};
    float p[4] = {5.0f, -5.0f, 0.3f, 2.0f}, q[4];
    CHECK_OK(lb_act_quantize_rows(&s, p, 1, 4, q));
    float d = 2.0f / 7.0f;
    CHECK(q[0] == 7 * d && q[1] == -7 * d && q[2] == 1 * d && q[3] == 7 * d);
    /* in place */
    CHECK_OK(lb_act_quantize_rows(&s, p, 1, 4, p));
    CHECK(memcmp(p, q, sizeof q) == 0);
}

/* Per-token: every element within delta / 2 of x (delta = absmax / qmax),
 * on the grid, the row's extreme reproduced; for every bit width. */
static void test_token_bound(void) {
    enum { N = 33, C = 97 };
    float *x = malloc(N * C * 4), *y = malloc(N * C * 4);
    lb_rng rng;
    lb_rng_seed(&rng, 7);
    for (int i = 0; i < N * C; i++) x[i] = (lb_rng_f32(&rng) - 0.5f) * (float)(1 + (i / C) * (i / C)); /* rows of different scale */
    x[5 * C + 3] = 1000.0f; /* one row with an outlier */
    for (int bits = 4; bits <= 8; bits++) {
        lb_act_quant a = {.kind = LB_AQ_TOKEN, .bits = bits};
        CHECK_OK(lb_act_quantize_rows(&a, x, N, C, y));
        float qmax = (float)((1 << (bits - 1)) - 1);
        int bad_bound = 0, bad_grid = 0, bad_max = 0;
        for (int i = 0; i < N; i++) {
            float amax = 0;
            for (int j = 0; j < C; j++) amax = fmaxf(amax, fabsf(x[i * C + j]));
            float delta = amax / qmax;
            for (int j = 0; j < C; j++) {
                float e = fabsf(y[i * C + j] - x[i * C + j]), k = y[i * C + j] / delta;
                bad_bound += e > 0.5f * delta * (1 + 1e-5f);
                bad_grid += fabsf(k - roundf(k)) > 1e-4f || fabsf(k) > qmax + 1e-4f;
                if (fabsf(x[i * C + j]) == amax) bad_max += fabsf(fabsf(y[i * C + j]) - amax) > 1e-6f * amax;
            }
        }
        CHECK_MSG(bad_bound == 0 && bad_grid == 0 && bad_max == 0, "%d bits: %d beyond delta/2, %d off the grid, %d maxima moved",
                  bits, bad_bound, bad_grid, bad_max);
    }
    /* the outlier row: everything but the outlier rounds to 0 at 4 bits (delta = 1000/7 > 2 |x|) */
    lb_act_quant a4 = {.kind = LB_AQ_TOKEN, .bits = 4};
    CHECK_OK(lb_act_quantize_rows(&a4, x, N, C, y));
    int nonzero = 0;
    for (int j = 0; j < C; j++) nonzero += y[5 * C + j] != 0.0f;
    CHECK(nonzero == 1 && y[5 * C + 3] == 1000.0f);
    free(x);
    free(y);
}

/* lb_linear_forward with the slot = quantize-dequantize x' by hand, then the
 * same linear without the slot; with and without an input scale. */
static void test_forward(void) {
    enum { R = 24, C = 64, N = 9 };
    float w[R * C], x[N * C], s[C], xt[N * C], y[N * R], yr[N * R], y0[N * R];
    lb_rng rng;
    lb_rng_seed(&rng, 11);
    for (int i = 0; i < R * C; i++) w[i] = lb_rng_f32(&rng) - 0.5f;
    for (int i = 0; i < N * C; i++) x[i] = 4.0f * (lb_rng_f32(&rng) - 0.5f);
    for (int j = 0; j < C; j++) s[j] = 0.5f + lb_rng_f32(&rng);
    lb_qspec f32 = lb_test_spec("f32");
    const lb_act_quant acts[] = {{.kind = LB_AQ_TOKEN, .bits = 8},
                                 {.kind = LB_AQ_TOKEN, .bits = 4},
                                 {.kind = LB_AQ_TENSOR, .bits = 8, .rule = LB_ACT_RANGE_MSE, .clip = 1.5f}};
    for (int scaled = 0; scaled < 2; scaled++)
        for (size_t k = 0; k < sizeof acts / sizeof acts[0]; k++) {
            lb_tensor t;
            CHECK_OK(lb_quantize_to_tensor(w, R, C, &f32, NULL, "w", &t));
            lb_linear L;
            lb_linear_init(&L, &t);
            if (scaled) CHECK_OK(lb_linear_set_in_scale(&L, s));
            CHECK_OK(lb_linear_forward(&L, x, N, y0, NULL)); /* float activations */
            CHECK_OK(lb_linear_set_act(&L, &acts[k]));
            CHECK(lb_linear_has_slots(&L));
            CHECK(lb_linear_slot_bytes(&L) == (scaled ? C * 4u : 0u) + (acts[k].kind == LB_AQ_TENSOR ? 4u : 0u));
            CHECK_OK(lb_linear_validate(&L));
            CHECK_OK(lb_linear_forward(&L, x, N, y, NULL));
            /* by hand: x' = x / s, quantized, through the bare weight */
            CHECK_OK(lb_linear_transform_input(&L, x, N, xt));
            CHECK_OK(lb_act_quantize_rows(&acts[k], xt, N, C, xt));
            CHECK_OK(lb_matmul(&L.w, xt, N, yr, NULL));
            CHECK_MSG(memcmp(y, yr, sizeof y) == 0, "act %zu scaled %d: forward differs from quantize-dequantize by hand", k, scaled);
            CHECK_MSG(memcmp(y, y0, sizeof y) != 0, "act %zu scaled %d: the quantizer changed nothing", k, scaled);
            CHECK_OK(lb_linear_set_act(&L, NULL));
            CHECK(L.act.kind == LB_AQ_NONE);
            lb_linear_free(&L);
        }
    /* the setter refuses what the forward could not use, leaving the slot as it was */
    lb_tensor t;
    CHECK_OK(lb_quantize_to_tensor(w, R, C, &f32, NULL, "w", &t));
    lb_linear L;
    lb_linear_init(&L, &t);
    lb_act_quant bad = {.kind = LB_AQ_TENSOR, .bits = 8, .clip = 0.0f};
    CHECK_FAILS(lb_linear_set_act(&L, &bad), LB_ERR_INVALID, "clip");
    bad = (lb_act_quant){.kind = LB_AQ_TOKEN, .bits = 9};
    CHECK_FAILS(lb_linear_set_act(&L, &bad), LB_ERR_INVALID, "bits");
    bad = (lb_act_quant){.kind = (lb_act_quant_kind)7, .bits = 8};
    CHECK_FAILS(lb_linear_set_act(&L, &bad), LB_ERR_INVALID, "kind");
    CHECK(L.act.kind == LB_AQ_NONE);
    L.act = (lb_act_quant){.kind = LB_AQ_TENSOR, .bits = 8, .clip = INFINITY}; /* filled directly */
    CHECK_FAILS(lb_linear_validate(&L), LB_ERR_NUMERIC, "clip");
    lb_linear_free(&L);
}

/* ---- range rules on known distributions ----------------------------------- */

enum { BINS = 8192 };

/* expected counts of n samples of a symmetric distribution with cdf F, in
 * BINS bins over [-r, r) */
static void fill_hist(int64_t *h, double r, double n, double (*cdf)(double)) {
    double w = 2 * r / BINS;
    for (int b = 0; b < BINS; b++) h[b] = (int64_t)llround(n * (cdf(-r + (b + 1) * w) - cdf(-r + b * w)));
}

static double gauss_cdf(double x) { return 0.5 * erfc(-x / sqrt(2.0)); }
static double laplace_cdf(double x) { return x < 0 ? 0.5 * exp(x) : 1 - 0.5 * exp(-x); }

/* expected squared error of clipping at t with delta = t / qmax, rounding
 * noise delta^2 / 12 inside (the model every analytic clip uses, ACIQ's):
 * Gaussian(0, 1) and Laplace(0, 1) in closed form */
static double gauss_mse(double t, double qmax) {
    double d = t / qmax, tail = 0.5 * erfc(t / sqrt(2.0)), phi = exp(-0.5 * t * t) / sqrt(2 * 3.14159265358979323846);
    return (1 - 2 * tail) * d * d / 12 + 2 * ((1 + t * t) * tail - t * phi);
}
static double laplace_mse(double t, double qmax) {
    double d = t / qmax;
    return (1 - exp(-t)) * d * d / 12 + 2 * exp(-t);
}

/* golden-section minimum over [lo, hi] (each of these is unimodal) */
static double argmin(double (*f)(double, double), double qmax, double lo, double hi) {
    const double g = (sqrt(5.0) - 1) / 2;
    for (int it = 0; it < 200; it++) {
        double a = hi - g * (hi - lo), b = lo + g * (hi - lo);
        if (f(a, qmax) < f(b, qmax)) hi = b;
        else lo = a;
    }
    return (lo + hi) / 2;
}

static float range_of(const int64_t *h, double r, double max_abs, const char *spec) {
    lb_act_quant a;
    float clip = -1;
    CHECK_OK(lb_act_spec_parse(spec, &a));
    CHECK_OK(lb_act_range_from_hist(h, BINS, r, max_abs, &a, &clip));
    return clip;
}

static void test_mse_analytic(void) {
    int64_t *h = malloc(BINS * sizeof *h);
    const struct {
        const char *name;
        double (*cdf)(double);
        double (*mse)(double, double);
        double r;
    } dists[] = {{"gauss", gauss_cdf, gauss_mse, 8}, {"laplace", laplace_cdf, laplace_mse, 32}};
    for (int d = 0; d < 2; d++) {
        fill_hist(h, dists[d].r, 1e10, dists[d].cdf);
        for (int bits = 4; bits <= 8; bits += 2) {
            char spec[32];
            snprintf(spec, sizeof spec, "int%d:tensor:mse", bits);
            double qmax = (1 << (bits - 1)) - 1, want = argmin(dists[d].mse, qmax, 0.5, dists[d].r);
            float got = range_of(h, dists[d].r, 0, spec);
            /* the histogram rule integrates rounding exactly, the closed form uses delta^2/12:
             * the optimum is flat; measured within 0.5% (Laplace 4 bits), asserted 1%; the error at the
             * rule's threshold is within 0.5% of the analytic minimum */
            CHECK_MSG(fabs(got - want) <= 0.01 * want, "%s %d bits: mse threshold %g, analytic optimum %g", dists[d].name,
                      bits, got, want);
            CHECK_MSG(dists[d].mse(got, qmax) <= 1.005 * dists[d].mse(want, qmax), "%s %d bits: error %g at %g, %g at optimum",
                      dists[d].name, bits, dists[d].mse(got, qmax), got, dists[d].mse(want, qmax));
            /* and clipping below max |x| is the point: well inside the data's range */
            float mm = range_of(h, dists[d].r, 0, "int8:tensor:minmax");
            CHECK(got < 0.8 * mm);
        }
    }
    /* ACIQ's tabulated Gaussian clip for 8 bits is 3.92 sigma (its grid is 2^b
     * levels over [-t, t], ours 2^b - 1): the same neighbourhood */
    fill_hist(h, 8, 1e10, gauss_cdf);
    float g8 = range_of(h, 8, 0, "int8:tensor:mse");
    CHECK_MSG(g8 > 3.6 && g8 < 4.3, "gauss 8 bits: mse threshold %g sigma", g8);
    free(h);
}

/* A uniform bulk on [-1, 1] (1e7 values) and a rare spike at 6 (100 values,
 * 1e-5 of the mass). */
static void test_spike(void) {
    int64_t *h = calloc(BINS, sizeof *h);
    double r = 8, w = 2 * r / BINS; /* 1/512 */
    int lo = (int)((-1 + r) / w), hi = (int)((1 + r) / w);
    for (int b = lo; b < hi; b++) h[b] = 10000000 / (hi - lo);
    h[(int)((6 + r) / w)] += 100;
    float mm = range_of(h, r, 6.0, "int8:tensor:minmax");
    CHECK(mm == 6.0f); /* exact max |x| given: kept */
    float mm_h = range_of(h, r, 0, "int8:tensor:minmax");
    CHECK(mm_h == (float)(((int)(6 / w) + 1) * w)); /* without it: the spike's bin's upper edge */
    float p9999 = range_of(h, r, 6.0, "int8:tensor:p99.99");
    CHECK_MSG(p9999 > 0.99f && p9999 <= 1.0f, "p99.99 = %g: the spike (1e-5 of the mass) is clipped", p9999);
    float p999 = range_of(h, r, 6.0, "int8:tensor:p99.9");
    CHECK_NEAR(p999, 0.999, w);
    float p100 = range_of(h, r, 6.0, "int8:tensor:p100");
    CHECK(p100 == 6.0f);
    /* KL cannot see this spike: its expanded Q spreads each merged group only
     * over the group's nonzero bins, so a flat bulk and an isolated spike are
     * reproduced exactly at every candidate (KL 0 up to smoothing) */
    /* no spike: KL keeps the whole uniform range */
    h[(int)((6 + r) / w)] -= 100;
    float kl = range_of(h, r, 1.0, "int8:tensor:kl");
    CHECK_MSG(kl > 0.95f && kl <= 1.0f, "uniform: kl threshold %g, want about 1", kl);
    float ms = range_of(h, r, 1.0, "int8:tensor:mse");
    CHECK_MSG(ms > 0.97f && ms <= 1.0f, "uniform: mse threshold %g, want about 1 (nothing to gain by clipping)", ms);
    /* a Gaussian bulk (sigma 1, 1e9 values) and a spike at 20 (1000 values):
     * merging bins flattens the bulk's curve, so a wide threshold costs KL and
     * the spike is clipped; minmax keeps it */
    r = 32;
    w = 2 * r / BINS;
    fill_hist(h, r, 1e9, gauss_cdf);
    h[(int)((20 + r) / w)] += 1000;
    CHECK(range_of(h, r, 20.0, "int8:tensor:minmax") == 20.0f);
    for (int bits = 8; bits >= 4; bits -= 4) {
        char spec[32];
        snprintf(spec, sizeof spec, "int%d:tensor:kl", bits);
        float kg = range_of(h, r, 20.0, spec);
        CHECK_MSG(kg > 2.0f && kg < 8.0f, "%d bits: kl threshold %g sigma, want the spike at 20 clipped", bits, kg);
    }
    float p = range_of(h, r, 20.0, "int8:tensor:p99.99");
    CHECK_NEAR(p, 3.8906, 2 * w); /* the Gaussian's 99.99th percentile of |x| */
    free(h);
}

static void test_range_errors(void) {
    int64_t h[8] = {0, 0, 1, 2, 2, 1, 0, 0}, z[8] = {0};
    lb_act_quant a = {.kind = LB_AQ_TENSOR, .bits = 8, .rule = LB_ACT_RANGE_KL};
    float clip;
    CHECK_OK(lb_act_range_from_hist(h, 8, 4.0, 0, &a, &clip));
    CHECK(clip > 0 && clip <= 2.0f); /* fewer bins than levels: the histogram's max */
    CHECK_FAILS(lb_act_range_from_hist(z, 8, 4.0, 0, &a, &clip), LB_ERR_INVALID, "empty");
    CHECK_FAILS(lb_act_range_from_hist(h, 8, 0.0, 0, &a, &clip), LB_ERR_INVALID, "range");
    CHECK_FAILS(lb_act_range_from_hist(h, 8, NAN, 0, &a, &clip), LB_ERR_INVALID, "range");
    CHECK_FAILS(lb_act_range_from_hist(h, 7, 4.0, 0, &a, &clip), LB_ERR_INVALID, "bins");
    CHECK_FAILS(lb_act_range_from_hist(NULL, 8, 4.0, 0, &a, &clip), LB_ERR_INVALID, "bins");
    h[0] = -1;
    CHECK_FAILS(lb_act_range_from_hist(h, 8, 4.0, 0, &a, &clip), LB_ERR_INVALID, "negative");
    h[0] = 0;
    a.kind = LB_AQ_TOKEN;
    CHECK_FAILS(lb_act_range_from_hist(h, 8, 4.0, 0, &a, &clip), LB_ERR_INVALID, "static");
    a.kind = LB_AQ_TENSOR;
    lb_layer_stats none = {0};
    CHECK_FAILS(lb_act_range(&none, &a, &clip), LB_ERR_INVALID, "histogram");
}

int main(void) {
    lb_progress_set_mode(LB_PROGRESS_OFF);
    test_parse();
    test_known_codes();
    test_token_bound();
    test_forward();
    test_mse_analytic();
    test_spike();
    test_range_errors();
    return lb_test_finish("test_act");
}
