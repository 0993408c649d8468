/* OneBit (src/formats/onebit.c, src/quant/onebit.c). The format: spec text,
 * sizes and bpw counted by hand, bytes pinned for a hand-made 2 x 3 tensor,
 * round trips (the per-column values included, negative ones too), corrupt
 * values refused. The fits, on problems with known answers:
 * W = diag(h) S diag(g) (fp16 h, g > 0) comes back exactly from rtn (SVID)
 * and from the method; the least-squares objective never increases over
 * the iterations (with and without sign refinement); with H = I the method
 * beats SVID on its own objective; W = B A + diag(h) S diag(g) is recovered
 * by lowrank=r within the fp16 rounding of the stored factors. */
#include "test.h"
#include "format_check.h"

#include "quant/onebit.h"

static void test_spec_text(void) {
    lb_qspec s = lb_test_spec("onebit");
    char buf[64];
    lb_qspec_format(&s, buf, sizeof buf);
    CHECK(!strcmp(buf, "onebit"));
    CHECK(lb_format_grid(&s) == LB_GRID_ONEBIT && !lb_qspec_is_float(&s) && lb_format_levels(&s) == 2);
    CHECK(lb_format_ggml_type(&s, 4096) == -1);
    CHECK(lb_format_family_find("onebit") == s.family);
    CHECK_FAILS(lb_qspec_parse("onebit:row", &s), LB_ERR_INVALID, "takes no options");
    CHECK_FAILS(lb_qspec_parse("onebit:", &s), LB_ERR_INVALID, "takes no options");
    lb_qspec bad = lb_test_spec("onebit");
    bad.group = 64;
    CHECK_FAILS(lb_qspec_validate(&bad), LB_ERR_INVALID, "one value per row");
}

/* rows (2 + ceil8(cols) / 8) + 2 cols */
static void test_sizes(void) {
    static const struct {
        int64_t rows, cols;
        size_t bytes;
    } cases[] = {
        {64, 64, 64 * (2 + 8) + 2 * 64},     /* 1.5 bpw: stories260K's q/k/v/o */
        {172, 64, 172 * (2 + 8) + 2 * 64},   /* w1, w3 */
        {64, 172, 64 * (2 + 22) + 2 * 172},  /* w2: 172 -> 176 padded */
        {3, 10, 3 * (2 + 2) + 20},
        {1, 1, 1 * (2 + 1) + 2},
    };
    lb_qspec s = lb_test_spec("onebit");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t row = 0, tail = 0, total = 0;
        CHECK_OK(lb_format_size(&s, cases[i].rows, cases[i].cols, &row, &tail, &total));
        CHECK_MSG(total == cases[i].bytes, "%lld x %lld: %zu bytes, want %zu", (long long)cases[i].rows,
                  (long long)cases[i].cols, total, cases[i].bytes);
        CHECK(tail == 2 * (size_t)cases[i].cols);
    }
    CHECK_NEAR(lb_format_bpw(&s, 4096, 4096), 1.0 + 16.0 * 8192 / (4096.0 * 4096), 1e-12);
    CHECK_NEAR(lb_format_bpw(&s, 64, 64), 1.5, 1e-12);
}

/* h = (1, -0.5), g = (2, 0.25, 1), codes (1 0 1 | 0 1 1), padding codes 0:
 * [00 3c][05] [00 b8][06] tail [00 40][00 34][00 3c] */
static void test_pinned_bytes(void) {
    lb_qspec s = lb_test_spec("onebit");
    lb_qtensor q;
    CHECK_OK(lb_qtensor_init(&q, &s, 2, 3));
    CHECK(q.cols_padded == 8 && q.n_groups == 2 && q.col_scale);
    const uint8_t codes[2][3] = {{1, 0, 1}, {0, 1, 1}};
    for (int r = 0; r < 2; r++)
        for (int c = 0; c < 3; c++) q.codes[r * 8 + c] = codes[r][c];
    q.scale[0] = 1.0f;
    q.scale[1] = -0.5f;
    q.col_scale[0] = 2.0f;
    q.col_scale[1] = 0.25f;
    q.col_scale[2] = 1.0f;
    CHECK_OK(lb_qtensor_store_scales(&q));
    uint8_t bytes[12];
    CHECK_OK(lb_qtensor_encode(&q, bytes));
    const uint8_t want[12] = {0x00, 0x3c, 0x05, 0x00, 0xb8, 0x06, 0x00, 0x40, 0x00, 0x34, 0x00, 0x3c};
    CHECK(memcmp(bytes, want, 12) == 0);
    lb_tensor t = {.spec = s, .rows = 2, .cols = 3, .data = bytes, .nbytes = 12};
    CHECK_OK(lb_tensor_resolve(&t));
    float out[6];
    CHECK_OK(lb_dequantize(&t, out));
    const float value[6] = {2.0f, -0.25f, 1.0f, 1.0f, -0.125f, -0.5f};
    for (int i = 0; i < 6; i++) {
        CHECK_MSG(out[i] == value[i], "weight %d: %g, want %g", i, (double)out[i], (double)value[i]);
        CHECK(lb_qtensor_value(&q, i / 3, i % 3) == value[i]);
    }
    /* corrupt values: NaN / Inf are refused on the way in and out; negative
     * ones are values like any other (h[1] above) */
    lb_qtensor back;
    CHECK_OK(lb_qtensor_init(&back, &s, 2, 3));
    uint8_t bad[12];
    memcpy(bad, bytes, 12);
    lb_wr16(bad + 8, 0x7e00); /* g[1] = NaN */
    CHECK_FAILS(lb_qtensor_decode(&back, bad, 12), LB_ERR_FORMAT, "column 1 is NaN");
    lb_tensor corrupt = {.spec = s, .rows = 2, .cols = 3, .data = bad, .nbytes = 12};
    CHECK_FAILS(lb_tensor_resolve(&corrupt), LB_ERR_FORMAT, "column 1 is NaN"); /* refused at load */
    lb_wr16(bad + 8, 0x7c00); /* +Inf */
    CHECK_FAILS(lb_qtensor_decode(&back, bad, 12), LB_ERR_FORMAT, "column 1 is infinite");
    CHECK_OK(lb_qtensor_decode(&back, bytes, 12));
    q.col_scale[2] = NAN;
    CHECK_FAILS(lb_qtensor_encode(&q, bytes), LB_ERR_NUMERIC, "column 2 is NaN");
    q.col_scale[2] = 1e6f; /* beyond fp16 */
    CHECK_FAILS(lb_qtensor_store_scales(&q), LB_ERR_NUMERIC, "column 2");
    lb_qtensor_free(&back);
    lb_qtensor_free(&q);
}

static void test_round_trips(void) {
    static const int64_t col_list[] = {1, 7, 8, 16, 33, 64, 100, 172, 257};
    lb_rng r;
    lb_rng_seed(&r, 31);
    lb_qspec s = lb_test_spec("onebit");
    for (size_t c = 0; c < sizeof col_list / sizeof col_list[0]; c++)
        for (int64_t rows = 1; rows <= 5; rows += 2) {
            int f = format_round_trip(&s, rows, col_list[c], &r);
            CHECK_MSG(f == 0, "onebit %lld x %lld: %d mismatches", (long long)rows, (long long)col_list[c], f);
        }
}

/* W = diag(h) S diag(g), fp16 h, g in [0.1, 2) (products exact in float) */
static void make_onebit(lb_rng *r, int64_t rows, int64_t cols, float *w, float *h, float *g) {
    for (int64_t i = 0; i < rows; i++) h[i] = lb_round_fp16(0.1f + 1.9f * lb_rng_f32(r));
    for (int64_t j = 0; j < cols; j++) g[j] = lb_round_fp16(0.1f + 1.9f * lb_rng_f32(r));
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) w[i * cols + j] = (lb_rng_u32(r) & 1 ? h[i] : -h[i]) * g[j];
}

static double sq_err(const float *a, const float *b, int64_t n) {
    double e = 0;
    for (int64_t i = 0; i < n; i++) e += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return e;
}

/* the values a qtensor decodes to */
static void values_of(const lb_qtensor *q, float *out) {
    for (int64_t i = 0; i < q->rows; i++)
        for (int64_t j = 0; j < q->cols; j++) out[i * q->cols + j] = lb_qtensor_value(q, i, j);
}

/* X^T X of n samples of correlated channels (a random mixing of Gaussians) */
static void make_xtx(lb_rng *r, int64_t cols, int n, double *xtx) {
    float *mix = lb_alloc((size_t)(cols * cols) * sizeof(float)), *x = lb_alloc((size_t)cols * sizeof(float)),
          *z = lb_alloc((size_t)cols * sizeof(float));
    for (int64_t i = 0; i < cols * cols; i++) mix[i] = (float)lb_rng_normal(r) * (i % (cols + 1) == 0 ? 2.0f : 0.3f);
    memset(xtx, 0, (size_t)(cols * cols) * sizeof(double));
    for (int t = 0; t < n; t++) {
        for (int64_t j = 0; j < cols; j++) z[j] = (float)lb_rng_normal(r);
        for (int64_t j = 0; j < cols; j++) {
            double s = 0;
            for (int64_t k = 0; k < cols; k++) s += (double)mix[j * cols + k] * z[k];
            x[j] = (float)s;
        }
        for (int64_t a = 0; a < cols; a++)
            for (int64_t b = 0; b < cols; b++) xtx[a * cols + b] += (double)x[a] * x[b];
    }
    lb_free(mix);
    lb_free(x);
    lb_free(z);
}

/* SVID (rtn) and the method recover W = diag(h) S diag(g) exactly */
static void test_exact_recovery(void) {
    enum { R = 12, C = 40 };
    lb_rng r;
    lb_rng_seed(&r, 5);
    float w[R * C], h[R], g[C], out[R * C];
    make_onebit(&r, R, C, w, h, g);
    lb_qspec s = lb_test_spec("onebit");
    lb_tensor t;
    CHECK_OK(lb_quantize_to_tensor(w, R, C, &s, NULL, "w", &t));
    CHECK_OK(lb_dequantize(&t, out));
    CHECK_MSG(sq_err(w, out, R * C) == 0.0, "rtn (SVID): squared error %g", sq_err(w, out, R * C));
    lb_tensor_free(&t);
    lb_rtn_opts ro;
    lb_rtn_opts_default(&ro);
    ro.clip = LB_CLIP_MSE;
    CHECK_FAILS(lb_quantize_to_tensor(w, R, C, &s, &ro, "w", &t), LB_ERR_INVALID, "own rule");
#ifdef LB_HAVE_BLAS
    static double xtx[C * C];
    make_xtx(&r, C, 200, xtx);
    lb_layer_stats st = {.n_samples = 200, .rows = R, .cols = C, .xtx = xtx};
    const lb_method *m = lb_method_find("onebit");
    lb_method_opts o;
    for (int passes = 0; passes <= 2; passes += 2) {
        lb_method_opts_default(m, &o);
        o.value[2] = passes;
        CHECK_OK(lb_quantize_tensor(m, &o, &st, w, R, C, &s, "w", &t));
        CHECK_OK(lb_dequantize(&t, out));
        CHECK_MSG(sq_err(w, out, R * C) == 0.0, "onebit sign_passes=%d: squared error %g", passes, sq_err(w, out, R * C));
        lb_tensor_free(&t);
    }
    /* other formats, and lowrank without a slot to put it in, are refused */
    lb_qspec b = lb_test_spec("binary:row");
    lb_method_opts_default(m, &o);
    CHECK_FAILS(lb_quantize_tensor(m, &o, &st, w, R, C, &b, "w", &t), LB_ERR_INVALID, "onebit format");
    CHECK_OK(lb_method_opts_parse(&o, "lowrank=1"));
    CHECK_FAILS(lb_quantize_tensor(m, &o, &st, w, R, C, &s, "w", &t), LB_ERR_INVALID, "adapter slot");
    CHECK_OK(lb_method_opts_parse(&o, "outliers=0.01"));
    lb_quant_extras x;
    CHECK_FAILS(lb_quantize_tensor_ex(m, &o, &st, w, R, C, &s, "w", &t, &x), LB_ERR_UNSUPPORTED, "not built");
#endif
}

#ifdef LB_HAVE_BLAS
/* the objective never increases over the iterations; with H = I the method
 * ends below SVID on Gaussian weights */
static void test_descent(void) {
    enum { R = 16, C = 48, ITERS = 15 };
    lb_rng r;
    lb_rng_seed(&r, 17);
    static float w[R * C], out[R * C];
    static double xtx[C * C];
    for (int i = 0; i < R * C; i++) w[i] = (float)lb_rng_normal(&r) * (1.0f + (float)(i % C) / C);
    make_xtx(&r, C, 300, xtx);
    lb_qspec s = lb_test_spec("onebit");
    for (int passes = 0; passes <= 2; passes++) {
        lb_onebit_opts o = {ITERS, 0.01, passes, 0, 1};
        double trace[ITERS + 1], final;
        lb_qtensor q;
        CHECK_OK(lb_onebit_fit(w, R, C, xtx, &s, &o, &q, NULL, trace, &final));
        for (int t = 1; t <= ITERS; t++)
            CHECK_MSG(trace[t] <= trace[t - 1] * (1 + 1e-12), "sign_passes=%d: objective rose at iteration %d: %.12g -> %.12g",
                      passes, t, trace[t - 1], trace[t]);
        CHECK_MSG(trace[ITERS] < 0.99 * trace[0], "sign_passes=%d: %g -> %g", passes, trace[0], trace[ITERS]);
        CHECK(final <= trace[0]);
        printf("onebit fit, sign_passes=%d: objective %.6g (SVID) -> %.6g (%d iterations) -> %.6g stored\n", passes,
               trace[0], trace[ITERS], ITERS, final);
        lb_qtensor_free(&q);
    }
    /* H = I: the objective is the squared weight error; SVID's as rtn stores it */
    lb_qtensor q;
    lb_onebit_opts o = {ITERS, 0.01, 0, 0, 1};
    double final;
    CHECK_OK(lb_onebit_fit(w, R, C, NULL, &s, &o, &q, NULL, NULL, &final));
    values_of(&q, out);
    CHECK_NEAR(sq_err(w, out, R * C), final, 1e-9 * final);
    lb_qtensor_free(&q);
    lb_tensor t;
    CHECK_OK(lb_quantize_to_tensor(w, R, C, &s, NULL, "w", &t));
    CHECK_OK(lb_dequantize(&t, out));
    double svid = sq_err(w, out, R * C);
    lb_tensor_free(&t);
    /* with H = I and the signs sign(W), f = || |W| - h g^T ||^2 for h, g > 0,
     * whose optimum SVID computes (up to fp16): the two nearly agree; the
     * method gains where H is not the identity (above) */
    printf("H = I: SVID %.9g, onebit %.9g\n", svid, final);
    CHECK_MSG(final <= svid, "onebit %g, SVID %g", final, svid);
}

/* W = B A (rank 2) + diag(h) S diag(g): recovered within the fp16 rounding
 * of what is stored. Each stored number (A, B, h, g) is within u = 2^-11
 * (relative) of an exact factorization, so |d(h_i g_j)| <= (2u + u^2)
 * |h_i g_j|, giving ||dQ||_F <= (2u + u^2) ||Q||_F, and for each rank-1
 * component b a^T, ||d(b a^T)||_F <= (2u + u^2) ||b|| ||a|| = (2u + u^2)
 * sigma_c (the components are orthogonal in the SVD), so ||dL||_F <=
 * (2u + u^2) sum_c sigma_c <= (2u + u^2) sqrt(r) ||B A||_F. The bound
 * asserted is their sum. Without the low-rank term the error is of the
 * order of ||B A||. */
static void test_lowrank(void) {
    enum { R = 32, C = 48, K = 2 };
    lb_rng r;
    lb_rng_seed(&r, 23);
    static float w[R * C], q1[R * C], out[R * C];
    float h[R], g[C], A[K * C], B[R * K];
    make_onebit(&r, R, C, q1, h, g);
    for (int i = 0; i < K * C; i++) A[i] = lb_round_fp16((float)lb_rng_normal(&r));
    for (int i = 0; i < R * K; i++) B[i] = lb_round_fp16((float)lb_rng_normal(&r));
    double nq = 0, nl = 0;
    for (int i = 0; i < R; i++)
        for (int j = 0; j < C; j++) {
            double v = 0;
            for (int k = 0; k < K; k++) v += (double)B[i * K + k] * A[k * C + j];
            w[i * C + j] = (float)(v + q1[i * C + j]);
            nl += v * v;
            nq += (double)q1[i * C + j] * q1[i * C + j];
        }
    lb_qspec s = lb_test_spec("onebit");
    lb_onebit_opts o = {10, 0.01, 0, K, 8};
    lb_onebit_lowrank lr;
    lb_qtensor q;
    double final;
    CHECK_OK(lb_onebit_fit(w, R, C, NULL, &s, &o, &q, &lr, NULL, &final));
    CHECK(lr.rank == K);
    values_of(&q, out);
    for (int i = 0; i < R; i++)
        for (int j = 0; j < C; j++) {
            double v = 0;
            for (int k = 0; k < K; k++) {
                CHECK(lb_round_fp16(lr.b[i * K + k]) == lr.b[i * K + k] && lb_round_fp16(lr.a[k * C + j]) == lr.a[k * C + j]);
                v += (double)lr.b[i * K + k] * lr.a[k * C + j];
            }
            out[i * C + j] += (float)v;
        }
    const double u = 1.0 / 2048;
    double err = sqrt(sq_err(w, out, R * C)), bound = (2 * u + u * u) * (sqrt((double)K * nl) + sqrt(nq));
    printf("lowrank=%d recovery: error %.3g (Frobenius), bound %.3g; ||B A|| %.3g, ||Q|| %.3g\n", K, err, bound, sqrt(nl),
           sqrt(nq));
    CHECK_MSG(err <= bound, "lowrank recovery error %g > %g", err, bound);
    lb_qtensor_free(&q);
    lb_free(lr.a);
    lb_free(lr.b);
    /* the signs alone cannot: error of the order of the low-rank part */
    o.lowrank = 0;
    CHECK_OK(lb_onebit_fit(w, R, C, NULL, &s, &o, &q, NULL, NULL, &final));
    CHECK_MSG(sqrt(final) > 0.1 * sqrt(nl), "lowrank=0 error %g", sqrt(final));
    lb_qtensor_free(&q);
    CHECK_FAILS(lb_onebit_fit(w, R, C, NULL, &s, &(lb_onebit_opts){10, 0.01, 0, 33, 1}, &q, &lr, NULL, NULL),
                LB_ERR_INVALID, "rank at most 32");
}
#endif

int main(void) {
    test_spec_text();
    test_sizes();
    test_pinned_bytes();
    test_round_trips();
    test_exact_recovery();
#ifdef LB_HAVE_BLAS
    test_descent();
    test_lowrank();
#else
    printf("SKIPPED: the onebit method's tests (built without OpenBLAS/LAPACKE)\n");
#endif
    return lb_test_finish("test_onebit");
}
