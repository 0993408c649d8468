/* GPTQ (src/quant/gptq.c): with a diagonal H it is round-to-nearest exactly;
 * with correlated inputs its proxy loss tr(dW H dW^T) is well below RTN's;
 * non-positive-definite H is damped (and the damping reported), NaN refused;
 * act-order with static groups keeps the format's layout; same bytes for any
 * thread count; grid_fit=hqq is hqq's grid with GPTQ's rounding. */
#include "test.h"

/* The structured problem: X = Z A + 0.05 noise (n x cols, rank-k signal, so
 * channels are strongly correlated), channel c scaled by 0.3 + 2 c / cols so
 * diag H varies (act-order has something to order); H = X^T X. */
static double *structured_h(int64_t cols, int64_t n, int64_t k, uint64_t seed) {
    lb_rng r;
    lb_rng_seed(&r, seed);
    double *A = malloc((size_t)(k * cols) * sizeof(double));
    double *x = malloc((size_t)cols * sizeof(double));
    double *z = malloc((size_t)k * sizeof(double));
    double *h = calloc((size_t)(cols * cols), sizeof(double));
    for (int64_t i = 0; i < k * cols; i++) A[i] = lb_rng_normal(&r);
    for (int64_t s = 0; s < n; s++) {
        for (int64_t j = 0; j < k; j++) z[j] = lb_rng_normal(&r);
        for (int64_t c = 0; c < cols; c++) {
            double v = 0.05 * lb_rng_normal(&r);
            for (int64_t j = 0; j < k; j++) v += z[j] * A[j * cols + c];
            x[c] = v * (0.3 + 2.0 * (double)c / (double)cols);
        }
        for (int64_t a = 0; a < cols; a++)
            for (int64_t b = 0; b < cols; b++) h[a * cols + b] += x[a] * x[b];
    }
    free(A);
    free(x);
    free(z);
    return h;
}

static float *random_w(int64_t rows, int64_t cols, uint64_t seed) {
    lb_rng r;
    lb_rng_seed(&r, seed);
    float *w = malloc((size_t)(rows * cols) * sizeof(float));
    for (int64_t i = 0; i < rows * cols; i++) w[i] = (float)lb_rng_normal(&r);
    return w;
}

/* tr(dW H dW^T), dW = w - dequantized t: the scalar reference */
static double proxy_loss(const float *w, const lb_tensor *t, const double *h) {
    int64_t rows = t->rows, cols = t->cols;
    float *q = malloc((size_t)(rows * cols) * sizeof(float));
    double *d = malloc((size_t)cols * sizeof(double));
    if (lb_dequantize(t, q) != LB_OK) return NAN;
    double loss = 0;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < cols; c++) d[c] = (double)w[r * cols + c] - q[r * cols + c];
        for (int64_t a = 0; a < cols; a++) {
            double s = 0;
            for (int64_t b = 0; b < cols; b++) s += h[a * cols + b] * d[b];
            loss += d[a] * s;
        }
    }
    free(q);
    free(d);
    return loss;
}

/* quantizes by `method` with options "k=v k=v" (or ""); report optional */
static lb_status run(const char *method, const char *kv, const float *w, int64_t rows, int64_t cols, double *h,
                     const char *format, lb_tensor *t, lb_method_report *rep) {
    const lb_method *m = lb_method_find(method);
    lb_method_opts o;
    lb_status st0 = lb_test_method_opts(m, kv, &o);
    if (st0 != LB_OK) return st0;
    o.report = rep;
    lb_layer_stats stats = {.n_samples = 1, .rows = rows, .cols = cols, .xtx = h};
    lb_qspec s = lb_test_spec(format);
    return lb_quantize_tensor(m, &o, h ? &stats : NULL, w, rows, cols, &s, "w", t);
}

static int same_bytes(const lb_tensor *a, const lb_tensor *b) {
    return a->nbytes == b->nbytes && memcmp(a->data, b->data, a->nbytes) == 0;
}

/* (a) diagonal H: no error feedback between uncorrelated columns, so GPTQ is RTN */
static void test_diagonal_is_rtn(void) {
    enum { R = 40, C = 200 };
    float *w = random_w(R, C, 1);
    double *h = calloc(C * C, sizeof(double));
    lb_rng r;
    lb_rng_seed(&r, 2);
    for (int c = 0; c < C; c++) h[c * C + c] = 0.1 + lb_rng_f32(&r);
    static const char *formats[] = {"int4:g32:asym", "int3:g64:sym", "int2:g16:asym:zint", "int4:row:asym",
                                    "int8:g128:sym", "int1:g32:asym", "nf4:g64", "nf4:g64:dq",
                                    "int3:g16:asym:s6", "int2:g32:sym:s4:r8", "ternary:g64:2bit",
                                    "ternary:row:1.6bit", "binary:row", "binary:g32", "q2_k", "q3_k", "q4_k",
                                    "q5_k", "q6_k", "iq4_nl", "iq4_xs", "mxfp4", "nvfp4", "fp8_e4m3",
                                    "fp8_e5m2:g32"};
    static const char *opts[] = {"", "clip=mse", "act_order=1", "static_groups=1 block=7"};
    for (size_t f = 0; f < sizeof formats / sizeof formats[0]; f++)
        for (size_t k = 0; k < sizeof opts / sizeof opts[0]; k++) {
            lb_tensor g, q;
            /* binary and ternary take their scale by their own rule: no clip rules */
            if (k == 1 && (formats[f][0] == 't' || formats[f][0] == 'b')) continue;
            CHECK_OK(run("gptq", opts[k], w, R, C, h, formats[f], &g, NULL));
            CHECK_OK(run("rtn", k == 1 ? "clip=mse" : "", w, R, C, NULL, formats[f], &q, NULL));
            CHECK_MSG(same_bytes(&g, &q), "%s %s: gptq with a diagonal H differs from rtn", formats[f], opts[k]);
            lb_tensor_free(&g);
            lb_tensor_free(&q);
        }
    free(w);
    free(h);
}

/* (a') weighted_grid=1 with a diagonal H: GPTQ is RTN whose mse search
 * minimizes sum H_ii (w_i - q_i)^2, the proxy loss itself; so per group the
 * weighted choice is never worse in proxy loss than the plain one (same
 * candidates), and strictly better overall when some inputs hardly matter
 * (here every 8th input carries a large weight but H_ii = 1e-4). Hierarchical
 * formats: the super-scale comes from other grids, so no per-group
 * guarantee; the total must still be lower. */
static void test_weighted_grid(void) {
    enum { R = 24, C = 160 };
    float *w = random_w(R, C, 11);
    double *h = calloc(C * C, sizeof(double));
    lb_rng r;
    lb_rng_seed(&r, 12);
    for (int c = 0; c < C; c++) h[c * C + c] = c % 8 == 3 ? 1e-4 : 0.5 + lb_rng_f32(&r);
    for (int i = 0; i < R * C; i++)
        if (i % C % 8 == 3) w[i] *= 6.0f;
    static const char *formats[] = {"int3:g16:asym", "int2:g32:sym", "int3:g16:asym:s4:r4", "int2:g32:sym:s6"};
    for (size_t f = 0; f < sizeof formats / sizeof formats[0]; f++) {
        lb_tensor a, b;
        CHECK_OK(run("gptq", "clip=mse", w, R, C, h, formats[f], &a, NULL));
        CHECK_OK(run("gptq", "clip=mse weighted_grid=1", w, R, C, h, formats[f], &b, NULL));
        double la = proxy_loss(w, &a, h), lb = proxy_loss(w, &b, h);
        printf("  %-20s diagonal H, proxy loss weighted / plain grid = %.3f\n", formats[f], lb / la);
        CHECK_MSG(lb < 0.9 * la, "%s: weighted grid %g vs plain %g", formats[f], lb, la);
        lb_tensor_free(&a);
        lb_tensor_free(&b);
    }
    free(w);
    free(h);
}

/* (b) correlated inputs: GPTQ's proxy loss well below RTN's; the loss it
 * reports is the scalar reference's under the damped H */
static void test_beats_rtn(void) {
    enum { R = 48, C = 300 }; /* several 128-column factorization blocks */
    double *h = structured_h(C, 512, 16, 3);
    float *w = random_w(R, C, 4);
    static const char *formats[] = {"int2:g16:asym", "int2:g64:sym", "int3:g32:asym", "int3:row:sym",
                                    "int3:g64:asym:zint", "int4:g16:sym", "int4:g64:asym", "int4:row:asym", "nf4:g32",
                                    "int2:g16:asym:s4", "int3:g32:sym:s6:r8", "int4:g16:asym:s4:r16",
                                    "ternary:g64:1.6bit", "binary:row", "q2_k", "q3_k", "q4_k", "q6_k", "iq4_nl", "iq4_xs",
                                    "mxfp4", "nvfp4", "fp8_e4m3"};
    for (size_t f = 0; f < sizeof formats / sizeof formats[0]; f++) {
        lb_tensor g, q;
        lb_method_report rep;
        memset(&rep, 0, sizeof rep);
        CHECK_OK(run("gptq", "", w, R, C, h, formats[f], &g, &rep));
        CHECK_OK(run("rtn", "", w, R, C, NULL, formats[f], &q, NULL));
        double lg = proxy_loss(w, &g, h), lr = proxy_loss(w, &q, h);
        /* two or three levels leave less to compensate with: a weaker, still clear bound */
        double bound = strncmp(formats[f], "int", 3) && strncmp(formats[f], "nf4", 3) ? 0.8 : 0.5;
        CHECK_MSG(lg < bound * lr, "%s: gptq proxy loss %g vs rtn %g", formats[f], lg, lr);
        /* reported: the loss under H + lambda I */
        double damp_extra = 0;
        {
            float *dq = malloc(R * C * sizeof(float));
            CHECK_OK(lb_dequantize(&g, dq));
            for (int i = 0; i < R * C; i++) damp_extra += rep.damping * ((double)w[i] - dq[i]) * ((double)w[i] - dq[i]);
            free(dq);
        }
        CHECK_MSG(fabs(rep.proxy_loss - (lg + damp_extra)) <= 1e-3 * (lg + damp_extra), "%s: reported %g, want %g",
                  formats[f], rep.proxy_loss, lg + damp_extra);
        CHECK(rep.damping_raises == 0 && rep.damping_rel == (double)(float)0.01 && rep.dead_inputs == 0);
        printf("  %-20s proxy loss gptq/rtn = %.3f\n", formats[f], lg / lr);
        lb_tensor_free(&g);
        lb_tensor_free(&q);
    }
    free(w);
    free(h);
}

/* (c) damping raised for a non-positive-definite H, and reported; NaN and
 * hopeless H refused; dead inputs zeroed; no statistics, no GPTQ */
static void test_damping_and_bad_h(void) {
    enum { R = 8, C = 64 };
    float *w = random_w(R, C, 5);
    double *h = structured_h(C, 24, 4, 6); /* rank <= 24 < 64 */
    /* input 1 a copy of input 0 (x_1 = x_0): H (e0 - e1) = 0 exactly */
    for (int c = 0; c < C; c++) {
        h[1 * C + c] = h[0 * C + c];
        h[c * C + 1] = h[c * C + 0];
    }
    h[C + 1] = h[0];
    double mean = 0;
    for (int c = 0; c < C; c++) mean += h[c * C + c] / C;
    /* minus 2.5e-4 mean (e0 - e1)(e0 - e1)^T: eigenvalue -5e-4 mean along e0 - e1,
     * the diagonal stays positive */
    double eps = 2.5e-4 * mean;
    h[0] -= eps;
    h[C + 1] -= eps;
    h[1] += eps;
    h[C] += eps;
    mean -= 2 * eps / C;
    lb_tensor t;
    lb_method_report rep;
    memset(&rep, 0, sizeof rep);
    CHECK_OK(run("gptq", "percdamp=0", w, R, C, h, "int4:g32:asym", &t, &rep));
    /* 0 fails, then 1e-6, 1e-5, 1e-4 x mean(diag) fail, 1e-3 succeeds */
    CHECK_MSG(rep.damping_raises == 4 && fabs(rep.damping_rel - 1e-3) < 1e-9, "raises %d, rel %g",
              rep.damping_raises, rep.damping_rel);
    CHECK_NEAR(rep.damping, rep.damping_rel * mean, 1e-9 * mean);
    lb_tensor_free(&t);
    memset(&rep, 0, sizeof rep);
    CHECK_OK(run("gptq", "", w, R, C, h, "int4:g32:asym", &t, &rep)); /* 1% is enough */
    CHECK(rep.damping_raises == 0);
    lb_tensor_free(&t);
    /* off-diagonal far beyond the diagonal: no damping up to 100 x mean makes it PD */
    double *bad = calloc(C * C, sizeof(double));
    for (int c = 0; c < C; c++) bad[c * C + c] = 1;
    bad[1] = bad[C] = 500;
    CHECK_FAILS(run("gptq", "", w, R, C, bad, "int4:g32:asym", &t, NULL), LB_ERR_NUMERIC, "not positive definite");
    bad[1] = bad[C] = 0;
    bad[5 * C + 7] = NAN;
    CHECK_FAILS(run("gptq", "", w, R, C, bad, "int4:g32:asym", &t, NULL), LB_ERR_NUMERIC, "(5, 7) is NaN");
    bad[5 * C + 7] = 0;
    bad[3 * C + 3] = -1;
    CHECK_FAILS(run("gptq", "", w, R, C, bad, "int4:g32:asym", &t, NULL), LB_ERR_NUMERIC, "negative diagonal");
    bad[3 * C + 3] = 1;
    bad[2 * C + 9] = 0.5; /* only one triangle */
    CHECK_FAILS(run("gptq", "", w, R, C, bad, "int4:g32:asym", &t, NULL), LB_ERR_NUMERIC,
                "X^T X is not symmetric: (2, 9) = 0.5 but (9, 2) = 0");
    bad[2 * C + 9] = 0;
    /* dead inputs: H_ii = 0 (never active), weights zeroed; sym grids store 0 exactly */
    for (int c = 0; c < C; c++) bad[10 * C + c] = bad[c * C + 10] = 0;
    memset(&rep, 0, sizeof rep);
    CHECK_OK(run("gptq", "", w, R, C, bad, "int4:g32:sym", &t, &rep));
    CHECK(rep.dead_inputs == 1);
    float dq[R * C];
    CHECK_OK(lb_dequantize(&t, dq));
    for (int r = 0; r < R; r++) CHECK(dq[r * C + 10] == 0.0f);
    lb_tensor_free(&t);
    float wn[R * C];
    memcpy(wn, w, sizeof wn);
    wn[3] = NAN;
    CHECK_FAILS(run("gptq", "", wn, R, C, h, "int4:g32:asym", &t, NULL), LB_ERR_NUMERIC, "NaN");
    CHECK_FAILS(run("gptq", "", w, R, C, NULL, "int4:g32:asym", &t, NULL), LB_ERR_INVALID,
                "needs calibration statistics (X^T X)");
    free(bad);
    free(h);
    free(w);
}

/* (d) act-order with static groups: the format's layout (dequantizes, same
 * size as rtn), no worse than static groups in column order */
static void test_act_order(void) {
    enum { R = 32, C = 192 };
    double *h = structured_h(C, 600, 12, 7);
    float *w = random_w(R, C, 8);
    static const char *formats[] = {"int2:g32:asym", "int3:g64:asym", "int4:g32:sym", "int3:row:asym",
                                    "int2:g16:asym:s4:r4"};
    for (size_t f = 0; f < sizeof formats / sizeof formats[0]; f++) {
        lb_tensor ao, st, dyn, q;
        CHECK_OK(run("gptq", "act_order=1", w, R, C, h, formats[f], &ao, NULL));
        CHECK_OK(run("gptq", "static_groups=1", w, R, C, h, formats[f], &st, NULL));
        CHECK_OK(run("gptq", "", w, R, C, h, formats[f], &dyn, NULL));
        CHECK_OK(run("rtn", "", w, R, C, NULL, formats[f], &q, NULL));
        CHECK(ao.nbytes == q.nbytes);
        double la = proxy_loss(w, &ao, h), ls = proxy_loss(w, &st, h), ld = proxy_loss(w, &dyn, h),
               lr = proxy_loss(w, &q, h);
        CHECK_MSG(isfinite(la) && la <= ls * 1.02, "%s: act-order %g vs static groups %g", formats[f], la, ls);
        CHECK_MSG(la < 0.5 * lr, "%s: act-order %g vs rtn %g", formats[f], la, lr);
        printf("  %-16s gptq/rtn: act-order %.3f  static %.3f  dynamic %.3f\n", formats[f], la / lr, ls / lr, ld / lr);
        lb_tensor_free(&ao);
        lb_tensor_free(&st);
        lb_tensor_free(&dyn);
        lb_tensor_free(&q);
    }
    free(h);
    free(w);
}

/* (e) same bytes for 1 and 2 threads (several 64-row tiles, several
 * factorization chunks) */
static void test_threads(void) {
    enum { R = 150, C = 300 };
    double *h = structured_h(C, 400, 8, 9);
    float *w = random_w(R, C, 10);
    static const char *opts[] = {"", "act_order=1 block=32"};
    int threads = lb_get_threads();
    static const char *formats[] = {"int3:g32:asym", "int3:g16:asym:s6:r8"};
    for (int k = 0; k < 4; k++) {
        lb_tensor a, b;
        lb_set_threads(1);
        CHECK_OK(run("gptq", opts[k % 2], w, R, C, h, formats[k / 2], &a, NULL));
        lb_set_threads(2);
        CHECK_OK(run("gptq", opts[k % 2], w, R, C, h, formats[k / 2], &b, NULL));
        CHECK_MSG(same_bytes(&a, &b), "gptq '%s' %s: 1 and 2 threads differ", opts[k % 2], formats[k / 2]);
        lb_tensor_free(&a);
        lb_tensor_free(&b);
    }
    lb_set_threads(threads);
    free(h);
    free(w);
}

/* (f) grid_fit=hqq (HQQ's zero-points, then GPTQ): with a diagonal H there is
 * no feedback, so the bytes are the hqq row's; with correlated inputs its
 * proxy loss is well below hqq's and rtn's; formats and clip rules HQQ
 * cannot fit are refused up front */
static void test_hqq_grid(void) {
    enum { R = 32, C = 256 };
    float *w = random_w(R, C, 21);
    double *diag = calloc(C * C, sizeof(double));
    for (int c = 0; c < C; c++) diag[c * C + c] = 0.5 + (c % 7) * 0.25;
    double *h = structured_h(C, 512, 16, 22);
    static const char *formats[] = {"int4:g64:asym", "int3:g32:asym", "int2:g16:asym", "int3:g64:asym:zint",
                                    "int4:g32:sym"};
    for (size_t f = 0; f < sizeof formats / sizeof formats[0]; f++) {
        lb_tensor g, q;
        CHECK_OK(run("gptq", "grid_fit=hqq", w, R, C, diag, formats[f], &g, NULL));
        CHECK_OK(run("hqq", "", w, R, C, NULL, formats[f], &q, NULL));
        CHECK_MSG(same_bytes(&g, &q), "%s: gptq grid_fit=hqq with a diagonal H differs from hqq", formats[f]);
        lb_tensor_free(&g);
        lb_tensor_free(&q);
        CHECK_OK(run("gptq", "grid_fit=hqq", w, R, C, h, formats[f], &g, NULL));
        CHECK_OK(run("hqq", "", w, R, C, NULL, formats[f], &q, NULL));
        double lg = proxy_loss(w, &g, h), lh = proxy_loss(w, &q, h);
        printf("  %-20s proxy loss gptq grid_fit=hqq / hqq = %.3f\n", formats[f], lg / lh);
        CHECK_MSG(lg < 0.5 * lh, "%s: gptq grid_fit=hqq %g vs hqq %g", formats[f], lg, lh);
        lb_tensor_free(&g);
        lb_tensor_free(&q);
    }
    lb_tensor t;
    CHECK_FAILS(run("gptq", "grid_fit=hqq clip=mse", w, R, C, h, "int4:g64:asym", &t, NULL), LB_ERR_INVALID,
                "leave clip at minmax");
    CHECK_FAILS(run("gptq", "grid_fit=hqq", w, R, C, h, "int3:g16:asym:s4", &t, NULL), LB_ERR_UNSUPPORTED,
                "hierarchical scales");
    CHECK_FAILS(run("gptq", "grid_fit=hqq", w, R, C, h, "nf4:g64", &t, NULL), LB_ERR_INVALID, "uniform int formats");
    CHECK_FAILS(run("gptq", "grid_fit=foo", w, R, C, h, "int4:g64:asym", &t, NULL), LB_ERR_INVALID, "grid source");
    free(w);
    free(diag);
    free(h);
}

int main(void) {
#ifndef LB_HAVE_BLAS
    fprintf(stderr, "SKIPPED: lowbit was built without OpenBLAS/LAPACKE, which gptq needs\n");
    return 77;
#endif
    test_diagonal_is_rtn();
    test_weighted_grid();
    test_beats_rtn();
    test_damping_and_bad_h();
    test_act_order();
    test_threads();
    test_hqq_grid();
    return lb_test_finish("test_gptq");
}
