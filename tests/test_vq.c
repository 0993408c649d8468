/* Learned vector codebooks: the vq family (src/formats/vq.c) and the
 * weighted vector k-means that learns them (src/quant/vq_kmeans.c), on
 * known answers: spec text, sizes and bpw by hand, bytes pinned for a
 * hand-made tensor, encode/decode round trips with the reference
 * dequantization equal to lb_qtensor_value, corrupt codebooks refused;
 * the codebook search against brute force; k-means' objective never
 * rising, its one-center answer (the weighted mean) by hand, exact
 * recovery of vectors drawn from a codebook; rtn (and ldlq) giving back a
 * matrix that IS codewords times scales, weights steering what is learned,
 * residual stages lowering the error. */
#include "format_check.h"
#include "test.h"

#include "quant/method_rows.h"
#include "quant/vq_kmeans.h"

static lb_rng g;

static void test_spec_and_sizes(void) {
    static const struct {
        const char *in, *out;
    } text[] = {{"vq8x16", "vq8x16:row"},
                {"vq4x8:r2", "vq4x8:r2:row"},
                {"vq4x8:r1:tensor", "vq4x8:tensor"},
                {"vq16x1:tensor:r4", "vq16x1:r4:tensor"},
                {"vq2x3:row", "vq2x3:row"}};
    for (size_t i = 0; i < sizeof text / sizeof text[0]; i++) {
        char buf[64];
        lb_qspec s = lb_test_spec(text[i].in);
        lb_qspec_format(&s, buf, sizeof buf);
        CHECK_MSG(!strcmp(buf, text[i].out), "'%s' -> '%s', want '%s'", text[i].in, buf, text[i].out);
        CHECK(lb_format_grid(&s) == LB_GRID_VECTOR);
        lb_qspec back = lb_test_spec(buf);
        CHECK(lb_qspec_equal(&s, &back));
    }
    lb_qspec s;
    static const char *bad[] = {"vq", "vq8", "vqx8", "vq8x", "vq1x8", "vq17x8", "vq8x0", "vq8x17", "vq8x16x2", "vq-8x4"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_FAILS(lb_qspec_parse(bad[i], &s), LB_ERR_INVALID, "vq<d>x<c>");
    CHECK_FAILS(lb_qspec_parse("vq8x16:r5", &s), LB_ERR_INVALID, "r1..r4");
    CHECK_FAILS(lb_qspec_parse("vq8x16:r0", &s), LB_ERR_INVALID, "r1..r4");
    CHECK_FAILS(lb_qspec_parse("vq8x16:g64", &s), LB_ERR_INVALID, "does not apply");
    CHECK_FAILS(lb_qspec_parse("vq8x16:r2:r2", &s), LB_ERR_INVALID, "repeats");
    CHECK_FAILS(lb_qspec_parse("vq8x16:r2:r3", &s), LB_ERR_INVALID, "conflicts");
    CHECK_FAILS(lb_qspec_parse("vq8x16:row:tensor", &s), LB_ERR_INVALID, "conflicts");
    s = lb_test_spec("vq8x16");
    s.group = 64;
    CHECK_FAILS(lb_qspec_validate(&s), LB_ERR_INVALID, "per row or per tensor");
    s = lb_test_spec("vq8x16");
    s.vec_stages = 5;
    CHECK_FAILS(lb_qspec_validate(&s), LB_ERR_INVALID, "stages");
    static const struct {
        const char *spec;
        int64_t rows, cols;
        size_t bytes;
    } cases[] = {
        {"vq4x8:row", 3, 64, 3 * (2 + 16) + 256 * 4 * 2},              /* 16 codes of 8 bits per row */
        {"vq3x5:row", 1, 10, 2 + 3 + 32 * 3 * 2},                       /* 12 padded: 4 codes x 5 bits = 20 bits */
        {"vq8x16:r2:tensor", 2, 16, 2 * 8 + 2 * 65536 * 8 * 2 + 2 * 2}, /* two stages, scales in the tail */
        {"vq2x4:r3:row", 2, 5, 2 * (6 + 5) + 3 * 16 * 2 * 2},           /* 6 padded: 3 x 3 codes x 4 bits = 36 bits */
        {"vq16x1:tensor", 4, 8, 4 * 1 + 2 * 16 * 2 + 2},                /* 16 padded: one 1-bit code a row */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lb_qspec sp = lb_test_spec(cases[i].spec);
        size_t total = 0;
        CHECK_OK(lb_format_size(&sp, cases[i].rows, cases[i].cols, NULL, NULL, &total));
        CHECK_MSG(total == cases[i].bytes, "%s %lldx%lld: %zu bytes, want %zu", cases[i].spec,
                  (long long)cases[i].rows, (long long)cases[i].cols, total, cases[i].bytes);
    }
    /* 4096 x 4096: 2 bits of code, a row scale, and a 2^16 x 8 fp16 codebook (0.5 bpw) */
    s = lb_test_spec("vq8x16");
    CHECK_NEAR(lb_format_bpw(&s, 4096, 4096), 2.0 + 16.0 / 4096 + 65536.0 * 8 * 16 / (4096.0 * 4096), 1e-12);
    s = lb_test_spec("vq8x12:tensor");
    CHECK_NEAR(lb_format_bpw(&s, 4096, 4096), 1.5 + (4096.0 * 8 * 16 + 16) / (4096.0 * 4096), 1e-12);
}

/* vq2x3:row, one row of 4: [scale 1.0][codes 5, 3 as 3-bit fields: 0x1d]; tail: 8 codewords of 2 */
static void test_pinned_bytes(void) {
    lb_qspec s = lb_test_spec("vq2x3:row");
    lb_qtensor q;
    CHECK_OK(lb_qtensor_init(&q, &s, 1, 4));
    CHECK(q.vec_dim == 2 && q.vec_stages == 1 && q.vecs_per_row == 2 && q.codes == NULL && q.vbook_size == 8);
    q.scale[0] = 1.0f;
    for (int k = 0; k < 8; k++) q.vbook[2 * k] = (float)k, q.vbook[2 * k + 1] = -0.5f * (float)k;
    *lb_qtensor_vcode(&q, 0, 0, 0) = 5;
    *lb_qtensor_vcode(&q, 0, 1, 0) = 3;
    uint8_t out[3 + 32];
    CHECK_OK(lb_qtensor_encode(&q, out));
    CHECK(out[0] == 0x00 && out[1] == 0x3c && out[2] == 0x1d);
    CHECK(out[3] == 0x00 && out[4] == 0x00 && out[5] == 0x00 && out[6] == 0x80); /* codeword 0: (0, -0) */
    CHECK(out[7] == 0x00 && out[8] == 0x3c && out[9] == 0x00 && out[10] == 0xb8); /* codeword 1: (1, -0.5) */
    lb_tensor t = {.spec = s, .rows = 1, .cols = 4, .data = out, .nbytes = sizeof out};
    CHECK_OK(lb_tensor_resolve(&t));
    float deq[4];
    CHECK_OK(lb_dequantize(&t, deq));
    CHECK(deq[0] == 5.0f && deq[1] == -2.5f && deq[2] == 3.0f && deq[3] == -1.5f);
    for (int i = 0; i < 4; i++) CHECK(lb_qtensor_value(&q, 0, i) == deq[i]);
    /* code 8 does not exist in a 3-bit codebook */
    *lb_qtensor_vcode(&q, 0, 1, 0) = 8;
    CHECK_FAILS(lb_qtensor_encode(&q, out), LB_ERR_INVALID, "out of range");
    *lb_qtensor_vcode(&q, 0, 1, 0) = 3;
    q.vbook[7] = NAN;
    CHECK_FAILS(lb_qtensor_encode(&q, out), LB_ERR_NUMERIC, "codebook");
    /* a non-finite codebook value in the bytes is corrupt: refused at load */
    uint8_t bad[sizeof out];
    memcpy(bad, out, sizeof out);
    bad[3 + 2 * 5] = 0x00, bad[3 + 2 * 5 + 1] = 0x7e; /* value 5 = codeword 2's first: NaN */
    lb_tensor tb = {.spec = s, .rows = 1, .cols = 4, .data = bad, .nbytes = sizeof bad};
    CHECK_FAILS(lb_tensor_resolve(&tb), LB_ERR_FORMAT, "codeword 2");
    lb_tensor_free(&t);
    lb_qtensor_free(&q);
}

static void test_round_trips(void) {
    static const char *specs[] = {"vq2x3:row", "vq4x8:r2:row", "vq8x12:tensor", "vq3x5:r3:tensor", "vq16x4:row",
                                  "vq8x16:row"};
    static const int64_t widths[] = {8, 20, 64, 172};
    for (size_t si = 0; si < sizeof specs / sizeof specs[0]; si++)
        for (size_t wi = 0; wi < 4; wi++) {
            lb_qspec s = lb_test_spec(specs[si]);
            const int64_t rows = 5, cols = widths[wi];
            lb_qtensor q;
            CHECK_OK(lb_qtensor_init(&q, &s, rows, cols));
            CHECK(q.cols_padded % s.vec_dim == 0 && q.cols_padded - cols < s.vec_dim);
            for (int64_t i = 0; i < q.n_groups * q.vec_stages; i++) q.scale[i] = 0.01f + lb_rng_f32(&g);
            for (int64_t i = 0; i < q.vec_stages * q.vbook_size * q.vec_dim; i++)
                q.vbook[i] = (float)lb_rng_normal(&g);
            CHECK_OK(lb_qtensor_store_scales(&q));
            for (int64_t i = 0; i < rows * q.vecs_per_row * q.vec_stages; i++)
                q.vcodes[i] = (uint16_t)(lb_rng_u32(&g) % (uint32_t)q.vbook_size);
            format_vec_round_trip(&q, specs[si]);
            lb_qtensor_free(&q);
        }
}

static double wdist(const float *x, const float *w, const float *c, int d) {
    double e = 0;
    for (int i = 0; i < d; i++) e += (w ? w[i] : 1.0) * ((double)x[i] - c[i]) * ((double)x[i] - c[i]);
    return e;
}

/* The block search against a scalar scan of every codeword: the pick is
 * as near as the best (up to the float rounding of GEMM distances) */
static void test_nearest_is_exact(void) {
    enum { N = 300, K = 5000, D = 6 };
    float *book = malloc(sizeof(float) * K * D), x[N * D], w[N * D];
    for (int i = 0; i < K * D; i++) book[i] = (float)lb_rng_normal(&g);
    for (int i = 0; i < N * D; i++) x[i] = 1.5f * (float)lb_rng_normal(&g), w[i] = lb_rng_f32(&g) * 3.0f;
    for (int i = 0; i < D; i++) w[7 * D + i] = 0.0f; /* a weightless vector: code 0 */
    uint32_t codes[N], plain[N];
    float *scratch = malloc(sizeof(float) * lb_vq_scratch_floats(N, K, D));
    lb_vq_nearest(book, K, D, x, w, N, codes, scratch);
    lb_vq_nearest(book, K, D, x, NULL, N, plain, scratch);
    int worse = 0;
    for (int j = 0; j < N; j++) {
        double best = INFINITY, bestu = INFINITY;
        for (int k = 0; k < K; k++) {
            best = fmin(best, wdist(x + j * D, w + j * D, book + k * D, D));
            bestu = fmin(bestu, wdist(x + j * D, NULL, book + k * D, D));
        }
        worse += wdist(x + j * D, w + j * D, book + codes[j] * D, D) > best + 1e-5 * (1 + best);
        worse += wdist(x + j * D, NULL, book + plain[j] * D, D) > bestu + 1e-5 * (1 + bestu);
    }
    CHECK_MSG(worse == 0, "%d searches missed the nearest codeword", worse);
    CHECK(codes[7] == 0);
    /* the family's per-vector scan (lb_qtensor_vec_nearest) finds the same distances over the first 4096 */
    lb_qspec s = lb_test_spec("vq6x12:tensor");
    lb_qtensor q;
    CHECK_OK(lb_qtensor_init(&q, &s, 1, 6));
    memcpy(q.vbook, book, sizeof(float) * 4096 * D);
    lb_vq_nearest(book, 4096, D, x, w, N, codes, scratch);
    worse = 0;
    for (int j = 0; j < N; j++) {
        unsigned c = lb_qtensor_vec_nearest(&q, 0, x + j * D, w + j * D);
        double a = wdist(x + j * D, w + j * D, book + c * D, D), b = wdist(x + j * D, w + j * D, book + codes[j] * D, D);
        worse += fabs(a - b) > 1e-5 * (1 + a);
    }
    CHECK_MSG(worse == 0, "%d scans disagree with the block search", worse);
    lb_qtensor_free(&q);
    free(book);
    free(scratch);
}

/* k-means: the objective after every update is no higher than before it
 * (up to the float rounding of the centers), the reported objective is the
 * book's, and one center is the weighted mean, coordinate by coordinate */
static void test_kmeans_descent(void) {
    enum { R = 60, V = 50, D = 4, K = 64 };
    float *x = malloc(sizeof(float) * R * V * D), roww[R], colw[V * D], book[K * D];
    for (int i = 0; i < R * V * D; i++) x[i] = (float)lb_rng_normal(&g) * (1.0f + (float)(i % 3));
    for (int r = 0; r < R; r++) roww[r] = 0.5f + lb_rng_f32(&g);
    for (int i = 0; i < V * D; i++) colw[i] = lb_rng_f32(&g) * 2.0f;
    lb_vq_points p = {x, R, V, V * D, D, roww, colw};
    lb_vq_trace tr;
    double obj;
    CHECK_OK(lb_vq_kmeans(&p, K, 50, 1 << 20, book, &tr, &obj));
    CHECK(tr.n >= 3);
    for (int t = 1; t < tr.n; t++)
        CHECK_MSG(tr.objective[t] <= tr.objective[t - 1] * (1 + 1e-6), "update %d: %.9g after %.9g", t,
                  tr.objective[t], tr.objective[t - 1]);
    CHECK(tr.objective[tr.n - 1] < 0.8 * tr.objective[0]); /* Lloyd did something */
    uint32_t *codes = malloc(sizeof(uint32_t) * R * V);
    double sse;
    CHECK_OK(lb_vq_assign(&p, book, K, codes, &sse));
    CHECK_NEAR(sse, obj, 1e-6 * obj);
    printf("k-means: objective %.4g -> %.4g in %d updates\n", tr.objective[0], obj, tr.n - 1);
    /* a sample of the training vectors (max_train 500) still descends */
    CHECK_OK(lb_vq_kmeans(&p, K, 50, 500, book, &tr, &obj));
    for (int t = 1; t < tr.n; t++) CHECK(tr.objective[t] <= tr.objective[t - 1] * (1 + 1e-6));
    /* K = 1: the weighted mean */
    double sw[D] = {0}, swx[D] = {0};
    for (int r = 0; r < R; r++)
        for (int v = 0; v < V; v++)
            for (int i = 0; i < D; i++) {
                double wi = (double)roww[r] * colw[v * D + i];
                sw[i] += wi, swx[i] += wi * x[(r * V + v) * D + i];
            }
    CHECK_OK(lb_vq_kmeans(&p, 1, 5, 1 << 20, book, NULL, &obj));
    for (int i = 0; i < D; i++) CHECK_NEAR(book[i], swx[i] / sw[i], 1e-5);
    CHECK_FAILS(lb_vq_kmeans(&p, 0, 5, 1 << 20, book, NULL, &obj), LB_ERR_INVALID, "centers");
    free(x);
    free(codes);
}

/* vectors drawn from a codebook of K (every codeword used) come back
 * exactly: the centers are the codewords, the objective 0 */
static void test_kmeans_exact(void) {
    enum { R = 40, V = 16, D = 8, K = 32 };
    float truth[K * D], *x = malloc(sizeof(float) * R * V * D), book[K * D];
    for (int i = 0; i < K * D; i++) truth[i] = lb_round_fp16((float)lb_rng_normal(&g));
    for (int j = 0; j < R * V; j++) {
        int k = j < K ? j : (int)(lb_rng_u32(&g) % K);
        memcpy(x + j * D, truth + k * D, sizeof(float) * D);
    }
    lb_vq_points p = {x, R, V, V * D, D, NULL, NULL};
    double obj;
    CHECK_OK(lb_vq_kmeans(&p, K, 10, 1 << 20, book, NULL, &obj));
    CHECK(obj == 0.0);
    for (int k = 0; k < K; k++) {
        int found = 0;
        for (int c = 0; c < K; c++) found |= !memcmp(truth + k * D, book + c * D, sizeof(float) * D);
        CHECK_MSG(found, "codeword %d not learned", k);
    }
    /* more centers than distinct vectors: still exact */
    float big[4 * K * D];
    CHECK_OK(lb_vq_kmeans(&p, 4 * K, 10, 1 << 20, big, NULL, &obj));
    CHECK(obj == 0.0);
    free(x);
}

static double rel_error(const lb_qtensor *q, const float *w, int64_t rows, int64_t cols) {
    double e = 0, n = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            double d = (double)lb_qtensor_value(q, r, c) - w[r * cols + c];
            e += d * d, n += (double)w[r * cols + c] * w[r * cols + c];
        }
    return sqrt(e / n);
}

/* rtn on W = a_r x (a permutation of the same 16 codewords of 4): every
 * row's RMS-scaled vectors are the same 16, so k-means learns them and W
 * comes back up to the fp16 rounding of scale and codebook (2 x 2^-11
 * relative, each); the codes are the nearest codewords */
static void test_rtn_exact(void) {
    enum { R = 6, C = 64, D = 4, K = 16 };
    float truth[K * D], w[R * C];
    for (int i = 0; i < K * D; i++) truth[i] = (float)lb_rng_normal(&g);
    for (int r = 0; r < R; r++) {
        float a = 0.05f + lb_rng_f32(&g);
        int perm[K];
        for (int k = 0; k < K; k++) perm[k] = k;
        for (int k = K - 1; k > 0; k--) {
            int t = (int)(lb_rng_u32(&g) % (uint32_t)(k + 1)), tmp = perm[k];
            perm[k] = perm[t];
            perm[t] = tmp;
        }
        for (int v = 0; v < C / D; v++)
            for (int i = 0; i < D; i++) w[r * C + v * D + i] = a * truth[perm[v] * D + i];
    }
    static const char *specs[] = {"vq4x4:row", "vq4x4:tensor", "vq4x6:row", "vq4x4:r2:row"};
    for (size_t si = 0; si < sizeof specs / sizeof specs[0]; si++) {
        lb_qspec s = lb_test_spec(specs[si]);
        lb_qtensor q;
        /* tensor scales: every row scaled alike */
        CHECK_OK(lb_rtn_quantize(w, R, C, &s, NULL, &q));
        double tol = 3 * pow(2, -11), worst = 0;
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) {
                double want = w[r * C + c], got = lb_qtensor_value(&q, r, c);
                double rowmax = 0;
                for (int k = 0; k < C; k++) rowmax = fmax(rowmax, fabs(w[r * C + k]));
                worst = fmax(worst, fabs(got - want) / rowmax);
            }
        if (!strcmp(specs[si], "vq4x4:tensor")) tol = INFINITY; /* rows differ in scale: not representable */
        CHECK_MSG(worst <= tol, "%s: off by %g of the row's largest weight", specs[si], worst);
        for (int64_t i = 0; i < q.vec_stages * q.vbook_size * q.vec_dim; i++) CHECK(q.vbook[i] == lb_round_fp16(q.vbook[i]));
        lb_qtensor_free(&q);
    }
    /* tensor scales on rows of one scale: exact the same way */
    for (int r = 1; r < R; r++) memcpy(w + r * C, w, sizeof(float) * C);
    lb_qspec s = lb_test_spec("vq4x4:tensor");
    lb_qtensor q;
    CHECK_OK(lb_rtn_quantize(w, R, C, &s, NULL, &q));
    CHECK_MSG(rel_error(&q, w, R, C) < 3 * pow(2, -11), "vq4x4:tensor rel error %g", rel_error(&q, w, R, C));
    lb_qtensor_free(&q);
}

/* Column weights steer what is learned: columns 0..3 take 4 values-vectors,
 * columns 4..7 are noise of weight 0; with 4 codewords the weighted book is
 * exactly the 4 (columns 0..3 exact to fp16), the unweighted one is not. */
static void test_weighted(void) {
    enum { R = 64, C = 8, K = 4 };
    float truth[K * 4], w[R * C], colw[C] = {1, 1, 1, 1, 0, 0, 0, 0};
    for (int i = 0; i < K * 4; i++) truth[i] = (float)lb_rng_normal(&g);
    for (int r = 0; r < R; r++) {
        int k = r % K;
        for (int i = 0; i < 4; i++) w[r * C + i] = truth[k * 4 + i];
        for (int i = 4; i < 8; i++) w[r * C + i] = 3.0f * (float)lb_rng_normal(&g);
    }
    lb_qspec s = lb_test_spec("vq4x2:tensor");
    lb_qtensor q, u;
    CHECK_OK(lb_rtn_quantize_weighted(w, R, C, colw, &s, NULL, &q));
    CHECK_OK(lb_rtn_quantize(w, R, C, &s, NULL, &u));
    double eq = 0, eu = 0, n = 0;
    for (int r = 0; r < R; r++)
        for (int c = 0; c < 4; c++) {
            eq += pow(lb_qtensor_value(&q, r, c) - w[r * C + c], 2);
            eu += pow(lb_qtensor_value(&u, r, c) - w[r * C + c], 2);
            n += pow(w[r * C + c], 2);
        }
    CHECK_MSG(sqrt(eq / n) < 3 * pow(2, -11), "weighted: columns 0..3 off by %g", sqrt(eq / n));
    CHECK(eu > 100 * eq);
    lb_qtensor_free(&q);
    lb_qtensor_free(&u);
}

/* Gaussian rows: more bits per code and residual stages lower the error;
 * zero rows stay zero */
static void test_rtn_gaussian(void) {
    enum { R = 64, C = 256 };
    float *w = malloc(sizeof(float) * R * C);
    for (int i = 0; i < R * C; i++) w[i] = (float)lb_rng_normal(&g);
    static const char *specs[] = {"vq4x4:row", "vq4x6:row", "vq4x8:row", "vq4x8:r2:row"};
    double prev = INFINITY;
    for (size_t si = 0; si < sizeof specs / sizeof specs[0]; si++) {
        lb_qspec s = lb_test_spec(specs[si]);
        lb_qtensor q;
        CHECK_OK(lb_rtn_quantize(w, R, C, &s, NULL, &q));
        double rel = rel_error(&q, w, R, C);
        printf("%s: relative RMSE %.4f (2^-R bound at the code rate: %.4f)\n", specs[si], rel,
               pow(2.0, -(double)s.bits * s.vec_stages / s.vec_dim));
        CHECK(rel < prev);
        /* codes are the nearest codewords at the stored scale (first stage) */
        if (si == 0) {
            int bad = 0;
            for (int r = 0; r < R; r++)
                for (int v = 0; v < C / 4; v++) {
                    float y[4], cw[4], cn[4];
                    for (int i = 0; i < 4; i++) y[i] = w[r * C + v * 4 + i] / q.scale[r];
                    lb_qtensor_vec_codeword(&q, 0, *lb_qtensor_vcode(&q, r, v, 0), cw);
                    lb_qtensor_vec_codeword(&q, 0, lb_qtensor_vec_nearest(&q, 0, y, NULL), cn);
                    bad += wdist(y, NULL, cw, 4) > wdist(y, NULL, cn, 4) + 1e-5;
                }
            CHECK_MSG(bad == 0, "%d codes are not the nearest codeword", bad);
        }
        prev = rel;
        lb_qtensor_free(&q);
    }
    float z[2 * 16] = {0};
    lb_qspec s = lb_test_spec("vq4x4:r2:row");
    lb_qtensor q;
    CHECK_OK(lb_rtn_quantize(z, 2, 16, &s, NULL, &q));
    for (int c = 0; c < 16; c++) CHECK(lb_qtensor_value(&q, 1, c) == 0.0f);
    lb_qtensor_free(&q);
    free(w);
}

/* Every vector one of 12 patterns of +-0.5 (so every row's RMS, hence its
 * scale, is 0.5 exactly and the scaled vectors are +-1, exact in fp16):
 * rtn and ldlq (under a correlated H: nothing is left to feed forward)
 * give the matrix back bit for bit. */
static void test_exact_bit_for_bit(void) {
    enum { R = 5, C = 48, D = 4 };
    float w[R * C], out[R * C];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < C / D; v++) {
            unsigned pat = (unsigned)((v + 3 * r) % 12) + 2; /* 12 of the 16 sign patterns */
            for (int i = 0; i < D; i++) w[r * C + v * D + i] = pat >> i & 1 ? 0.5f : -0.5f;
        }
    double xtx[C * C];
    for (int a = 0; a < C; a++)
        for (int b = 0; b < C; b++) xtx[a * C + b] = (a == b ? 2.0 + a % 3 : 0.0) + 1.0 / (1.0 + abs(a - b));
    lb_layer_stats st = {.n_samples = 8, .rows = R, .cols = C, .xtx = xtx};
    static const char *specs[] = {"vq4x4:row", "vq4x4:tensor", "vq4x8:r2:row"};
    static const char *methods[] = {"rtn", "ldlq"};
    for (size_t si = 0; si < sizeof specs / sizeof specs[0]; si++)
        for (int mi = 0; mi < 2; mi++) {
#ifndef LB_HAVE_BLAS
            if (mi == 1) continue;
#endif
            lb_qspec s = lb_test_spec(specs[si]);
            lb_tensor t;
            CHECK_OK(lb_quantize_tensor(lb_method_find(methods[mi]), NULL, mi ? &st : NULL, w, R, C, &s, "w", &t));
            CHECK_OK(lb_dequantize(&t, out));
            int off = 0;
            for (int i = 0; i < R * C; i++) off += out[i] != w[i];
            CHECK_MSG(off == 0, "%s %s: %d weights differ", methods[mi], specs[si], off);
            lb_tensor_free(&t);
        }
}

int main(void) {
    lb_rng_seed(&g, 4242);
    test_spec_and_sizes();
    test_pinned_bytes();
    test_round_trips();
    test_nearest_is_exact();
    test_kmeans_descent();
    test_kmeans_exact();
    test_rtn_exact();
    test_weighted();
    test_exact_bit_for_bit();
    test_rtn_gaussian();
    return lb_test_finish("test_vq");
}
