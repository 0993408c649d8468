/* The method table: every row is complete and gives a known answer on a
 * problem worked out by hand; options parse, format and refuse the same way
 * for every row; the generic entry point is byte-identical to RTN's own. */
#include "test.h"

/* dequantized values of w by method `name` with options `kv` ("" for none) */
static lb_status method_values(const char *name, const char *kv, const float *w, int64_t rows, int64_t cols,
                               const char *format, float *out) {
    const lb_method *m = lb_method_find(name);
    if (!m) return LB_ERR_INVALID;
    lb_method_opts o;
    lb_method_opts_default(m, &o);
    if (kv[0]) {
        lb_status st = lb_method_opts_parse(&o, kv);
        if (st != LB_OK) return st;
    }
    lb_qspec s = lb_test_spec(format);
    lb_tensor t;
    lb_status st = lb_quantize_tensor(m, &o, NULL, w, rows, cols, &s, "w", &t);
    if (st != LB_OK) return st;
    st = lb_dequantize(&t, out);
    lb_tensor_free(&t);
    return st;
}

/* RTN: weights already on an int4:g16:asym grid come back exactly. */
static int known_answer_rtn(void) {
    float w[32], out[32];
    for (int i = 0; i < 32; i++) w[i] = -1.0f + 0.125f * (float)((i * 7) % 16);
    int fails = lb_test_failures;
    CHECK_OK(method_values("rtn", "", w, 2, 16, "int4:g16:asym", out));
    for (int i = 0; i < 32; i++) CHECK(out[i] == w[i]);
    CHECK_OK(method_values("rtn", "clip=mse", w, 2, 16, "int4:g16:asym", out));
    for (int i = 0; i < 32; i++) CHECK(out[i] == w[i]);
    return lb_test_failures == fails;
}

/* TWN by hand: mean|w| = 4.7 / 8 = 0.5875, delta = 0.7 * 0.5875 = 0.41125;
 * above it |w| = 0.5, 1, 2, 0.6, so alpha = 4.1 / 4 and the codes are the
 * signs of those four, 0 elsewhere. */
static int known_answer_twn(void) {
    const float w[8] = {0.5f, -1.0f, 0.25f, -0.25f, 2.0f, 0.0f, -0.1f, 0.6f};
    const float t[8] = {1, -1, 0, 0, 1, 0, 0, 1};
    float out[8];
    int fails = lb_test_failures;
    CHECK_OK(method_values("twn", "", w, 1, 8, "ternary:row:2bit", out));
    float alpha = lb_round_fp16(4.1f / 4);
    for (int i = 0; i < 8; i++) CHECK_MSG(out[i] == alpha * t[i], "twn weight %d: %g, want %g", i, out[i], alpha * t[i]);
    /* the absmean rule on the same group would keep 0.25 -> 0 and give alpha 0.5875: TWN's differs */
    CHECK(alpha != lb_round_fp16(0.5875f));
    return lb_test_failures == fails;
}

/* HQQ: weights already on the grid have l_p error 0 at the min-max start, so
 * no iteration can improve on it and they come back exactly, for each zero
 * kind (fp16 offset, int zero and sym: -1 + 0.125 k = 0.125 (k - 8), k = 0..15
 * in every group of 16, so the min-max grids all have step 0.125). */
static int known_answer_hqq(void) {
    float w[32], out[32];
    int fails = lb_test_failures;
    for (int i = 0; i < 32; i++) w[i] = -1.0f + 0.125f * (float)((i * 7) % 16);
    CHECK_OK(method_values("hqq", "", w, 2, 16, "int4:g16:asym", out));
    for (int i = 0; i < 32; i++) CHECK_MSG(out[i] == w[i], "hqq asym weight %d: %g, want %g", i, out[i], w[i]);
    CHECK_OK(method_values("hqq", "scale=update", w, 2, 16, "int4:g16:asym:zint", out));
    for (int i = 0; i < 32; i++) CHECK_MSG(out[i] == w[i], "hqq zint weight %d: %g, want %g", i, out[i], w[i]);
    /* the same weights are on RTN's symmetric grid too: each group's extreme
     * is -1, so d = -1 / -8 = 0.125 and w = 0.125 (k - 8) */
    CHECK_OK(method_values("hqq", "p=0.5", w, 2, 16, "int4:g16:sym", out));
    for (int i = 0; i < 32; i++) CHECK_MSG(out[i] == w[i], "hqq sym weight %d: %g, want %g", i, out[i], w[i]);
    return lb_test_failures == fails;
}

/* GPTQ with a diagonal H (uncorrelated inputs): U is diagonal, so no error
 * feeds forward and every group's grid is fitted from untouched weights:
 * exactly round-to-nearest's bytes. Weights on the int4:g16:asym grid come
 * back exactly, as with rtn. */
static int known_answer_gptq(void) {
    enum { R = 3, C = 32 };
    float w[R * C], out[R * C];
    for (int i = 0; i < R * C; i++) w[i] = -1.0f + 0.125f * (float)((i * 7) % 16);
    double xtx[C * C] = {0};
    for (int c = 0; c < C; c++) xtx[c * C + c] = 1.0 + c % 5;
    lb_layer_stats st = {.n_samples = 8, .rows = R, .cols = C, .xtx = xtx};
    const lb_method *gptq = lb_method_find("gptq"), *rtn = lb_method_find("rtn");
    int fails = lb_test_failures;
    lb_qspec s = lb_test_spec("int4:g16:asym");
    lb_tensor g, q;
#ifndef LB_HAVE_BLAS /* built without OpenBLAS/LAPACKE: gptq says so */
    CHECK_FAILS(lb_quantize_tensor(gptq, NULL, &st, w, R, C, &s, "w", &g), LB_ERR_UNSUPPORTED, "OpenBLAS");
    (void)rtn;
    (void)out;
    return lb_test_failures == fails;
#endif
    CHECK_OK(lb_quantize_tensor(gptq, NULL, &st, w, R, C, &s, "w", &g));
    CHECK_OK(lb_dequantize(&g, out));
    for (int i = 0; i < R * C; i++) CHECK(out[i] == w[i]);
    lb_tensor_free(&g);
    lb_rng r;
    lb_rng_seed(&r, 11);
    for (int i = 0; i < R * C; i++) w[i] = (float)lb_rng_normal(&r);
    s = lb_test_spec("int3:g16:sym");
    CHECK_OK(lb_quantize_tensor(gptq, NULL, &st, w, R, C, &s, "w", &g));
    CHECK_OK(lb_quantize_tensor(rtn, NULL, NULL, w, R, C, &s, "w", &q));
    CHECK(g.nbytes == q.nbytes && !memcmp(g.data, q.data, g.nbytes));
    lb_tensor_free(&g);
    lb_tensor_free(&q);
    return lb_test_failures == fails;
}

/* gptaq: with diagonal H and diagonal (x_fp - x) x^T, a column's mismatch
 * could only be carried by itself, which the strictly upper P never does:
 * round-to-nearest exactly, as gptq; without the cross statistics it fails
 * pointing at sequential mode. (The real cases: tests/test_gptaq.c.) */
static int known_answer_gptaq(void) {
    enum { R = 4, C = 32 };
    float w[R * C];
    lb_rng r;
    lb_rng_seed(&r, 5);
    for (int i = 0; i < R * C; i++) w[i] = (float)lb_rng_normal(&r);
    double xtx[C * C] = {0}, dxtx[C * C] = {0};
    for (int c = 0; c < C; c++) {
        xtx[c * C + c] = 1.0 + c % 5;
        dxtx[c * C + c] = 0.5 - 0.1 * (c % 7);
    }
    lb_layer_stats st = {.n_samples = 8, .rows = R, .cols = C, .xtx = xtx, .dxtx = dxtx};
    const lb_method *gptaq = lb_method_find("gptaq"), *rtn = lb_method_find("rtn");
    int fails = lb_test_failures;
    lb_qspec s = lb_test_spec("int3:g16:asym");
    lb_tensor g, q;
#ifndef LB_HAVE_BLAS
    CHECK_FAILS(lb_quantize_tensor(gptaq, NULL, &st, w, R, C, &s, "w", &g), LB_ERR_UNSUPPORTED, "OpenBLAS");
    (void)rtn;
    (void)q;
    return lb_test_failures == fails;
#endif
    lb_method_opts o;
    CHECK_OK(lb_test_method_opts(gptaq, "alpha=1", &o));
    CHECK_OK(lb_quantize_tensor(gptaq, &o, &st, w, R, C, &s, "w", &g));
    CHECK_OK(lb_quantize_tensor(rtn, NULL, NULL, w, R, C, &s, "w", &q));
    CHECK(g.nbytes == q.nbytes && !memcmp(g.data, q.data, g.nbytes));
    lb_tensor_free(&g);
    lb_tensor_free(&q);
    st.dxtx = NULL;
    CHECK_FAILS(lb_quantize_tensor(gptaq, &o, &st, w, R, C, &s, "w", &g), LB_ERR_INVALID, "use --sequential");
    return lb_test_failures == fails;
}

/* The input-scaling rows' quantize step on weights already on the
 * int4:g16:asym grid, with a diagonal H: awq's clip search starts from zero
 * error and keeps it (exact), awq+gptq is gptq with a diagonal H (exact),
 * smoothquant rounds to nearest (exact). Their scale hooks by hand:
 * smoothquant's s = sqrt(max|x|) / sqrt(max|w|); awq with equal mean|x| on
 * every channel gives a^r / sqrt(a^r a^r) = 1 for every r. */
static int known_answer_scaling(const char *name) {
    enum { R = 2, C = 32 };
    float w[R * C], out[R * C];
    for (int i = 0; i < R * C; i++) w[i] = -1.0f + 0.125f * (float)((i * 7) % 16);
    double xtx[C * C] = {0};
    float mean_abs[C], max_abs[C];
    for (int c = 0; c < C; c++) {
        xtx[c * C + c] = 1.0 + c % 5;
        mean_abs[c] = 0.75f;
        max_abs[c] = c == 0 ? 4.0f : 1.0f;
    }
    lb_layer_stats st = {.n_samples = 8, .rows = R, .cols = C, .xtx = xtx, .mean_abs_x = mean_abs, .max_abs_x = max_abs};
    const lb_method *m = lb_method_find(name);
    int fails = lb_test_failures;
    lb_qspec s = lb_test_spec("int4:g16:asym");
    lb_tensor t;
    CHECK(m && m->input_scales);
    if (!m || !m->input_scales) return 0;
#ifndef LB_HAVE_BLAS
    if (!strcmp(name, "awq+gptq")) {
        CHECK_FAILS(lb_quantize_tensor(m, NULL, &st, w, R, C, &s, "w", &t), LB_ERR_UNSUPPORTED, "OpenBLAS");
        return lb_test_failures == fails;
    }
#endif
    CHECK_OK(lb_quantize_tensor(m, NULL, &st, w, R, C, &s, "w", &t));
    CHECK_OK(lb_dequantize(&t, out));
    for (int i = 0; i < R * C; i++) CHECK_MSG(out[i] == w[i], "%s weight %d: %g, want %g", name, i, out[i], w[i]);
    lb_tensor_free(&t);
    /* the scale hook on the same linear */
    const float *ws[1] = {w};
    int64_t rows[1] = {R};
    lb_scale_group g = {1, ws, rows, &s, C, &st, NULL, 0};
    lb_method_opts o;
    lb_method_opts_default(m, &o);
    float sc[C];
    CHECK_OK(m->input_scales(&g, &o, sc));
    for (int c = 0; c < C; c++) {
        float mw = 0; /* max |w| of column c */
        for (int r = 0; r < R; r++) mw = fmaxf(mw, fabsf(w[r * C + c]));
        float want = !strcmp(name, "smoothquant") ? sqrtf(max_abs[c]) / sqrtf(mw) : 1.0f;
        CHECK_MSG(fabsf(sc[c] - want) <= 1e-6f * want, "%s scale %d: %g, want %g", name, c, sc[c], want);
    }
    return lb_test_failures == fails;
}
/* ldlq: a matrix that is exactly row scale x E8P codewords comes back
 * exactly under a correlated H (every block rounds without error, so nothing
 * feeds forward); with a diagonal H no error feeds forward either: rtn's
 * bytes; the same exactness with a learned codebook (vq). (The real cases:
 * tests/test_ldlq.c, tests/test_vq.c.) */
static int known_answer_ldlq(void) {
    enum { R = 3, C = 32 };
    float w[R * C], out[R * C];
    lb_rng r;
    lb_rng_seed(&r, 12);
    for (int i = 0; i < R; i++) {
        float a = lb_round_fp16(0.05f + 0.1f * (float)i), cw[8];
        for (int v = 0; v < C / 8; v++) {
            lb_e8p_codeword(lb_rng_u32(&r) & 0xffff, cw);
            for (int k = 0; k < 8; k++) w[i * C + v * 8 + k] = a * cw[k];
        }
    }
    double xtx[C * C], diag[C * C] = {0};
    for (int a = 0; a < C; a++) {
        diag[a * C + a] = 1.0 + a % 5;
        for (int b = 0; b < C; b++) xtx[a * C + b] = (a == b ? 2.0 : 0.0) + 1.0 / (1.0 + abs(a - b));
    }
    lb_layer_stats st = {.n_samples = 8, .rows = R, .cols = C, .xtx = xtx};
    const lb_method *ldlq = lb_method_find("ldlq"), *rtn = lb_method_find("rtn");
    int fails = lb_test_failures;
    lb_qspec s = lb_test_spec("e8p2:row");
    lb_tensor g, q;
#ifndef LB_HAVE_BLAS
    CHECK_FAILS(lb_quantize_tensor(ldlq, NULL, &st, w, R, C, &s, "w", &g), LB_ERR_UNSUPPORTED, "OpenBLAS");
    (void)rtn;
    (void)out;
    (void)diag;
    return lb_test_failures == fails;
#endif
    CHECK_OK(lb_quantize_tensor(ldlq, NULL, &st, w, R, C, &s, "w", &g));
    CHECK_OK(lb_dequantize(&g, out));
    for (int i = 0; i < R * C; i++) CHECK_MSG(out[i] == w[i], "ldlq weight %d: %g, want %g", i, out[i], w[i]);
    lb_tensor_free(&g);
    for (int i = 0; i < R * C; i++) w[i] = (float)lb_rng_normal(&r);
    st.xtx = diag;
    CHECK_OK(lb_quantize_tensor(ldlq, NULL, &st, w, R, C, &s, "w", &g));
    CHECK_OK(lb_quantize_tensor(rtn, NULL, NULL, w, R, C, &s, "w", &q));
    CHECK(g.nbytes == q.nbytes && !memcmp(g.data, q.data, g.nbytes));
    lb_tensor_free(&g);
    lb_tensor_free(&q);
    /* a learned codebook (vq): vectors of +-0.5 patterns (row RMS 0.5, exact in fp16) come back exactly
     * under the correlated H: the diag(H)-weighted k-means learns the patterns, nothing feeds forward */
    for (int i = 0; i < R * C; i++) w[i] = (unsigned)(i / 4 % 7 + 1) >> (i % 4) & 1 ? 0.5f : -0.5f;
    st.xtx = xtx;
    s = lb_test_spec("vq4x4:row");
    CHECK_OK(lb_quantize_tensor(ldlq, NULL, &st, w, R, C, &s, "w", &g));
    CHECK_OK(lb_dequantize(&g, out));
    for (int i = 0; i < R * C; i++) CHECK_MSG(out[i] == w[i], "ldlq vq weight %d: %g, want %g", i, out[i], w[i]);
    lb_tensor_free(&g);
    /* scalar formats are gptq's */
    s = lb_test_spec("int4:g32:asym");
    CHECK_FAILS(lb_quantize_tensor(ldlq, NULL, &st, w, R, C, &s, "w", &g), LB_ERR_INVALID, "vector codebook");
    return lb_test_failures == fails;
}

/* aqlm: four +-0.5 patterns (rows of RMS 0.5: scale and codebook exact in
 * fp16) come back exactly, weighted by diag(H) or not (the residual-VQ
 * start is exact and no step may leave it); with rounds=0 and no weighting
 * it is rtn's residual VQ byte for byte. (The real cases, the joint search
 * and the descent: tests/test_aqlm.c.) */
static int known_answer_aqlm(void) {
    enum { R = 4, C = 32 };
    float w[R * C], out[R * C];
    for (int i = 0; i < R * C; i++) w[i] = (unsigned)(i / 4 % 4 + 3) >> (i % 4) & 1 ? 0.5f : -0.5f;
    double xtx[C * C];
    for (int a = 0; a < C; a++)
        for (int b = 0; b < C; b++) xtx[a * C + b] = (a == b ? 2.0 + a % 3 : 0.0) + 1.0 / (1.0 + abs(a - b));
    lb_layer_stats st = {.n_samples = 8, .rows = R, .cols = C, .xtx = xtx};
    const lb_method *aqlm = lb_method_find("aqlm"), *rtn = lb_method_find("rtn");
    lb_qspec s = lb_test_spec("vq4x2:r2:tensor");
    int fails = lb_test_failures;
    for (int weighted = 0; weighted < 2; weighted++) {
        lb_method_opts o;
        CHECK_OK(lb_test_method_opts(aqlm, weighted ? "" : "hweight=none", &o));
        lb_tensor t;
        CHECK_OK(lb_quantize_tensor(aqlm, &o, weighted ? &st : NULL, w, R, C, &s, "w", &t));
        CHECK_OK(lb_dequantize(&t, out));
        for (int i = 0; i < R * C; i++) CHECK_MSG(out[i] == w[i], "aqlm weight %d: %g, want %g", i, out[i], w[i]);
        lb_tensor_free(&t);
    }
    lb_method_opts o;
    CHECK_OK(lb_test_method_opts(aqlm, "rounds=0 hweight=none", &o));
    lb_tensor a, b;
    CHECK_OK(lb_quantize_tensor(aqlm, &o, NULL, w, R, C, &s, "w", &a));
    CHECK_OK(lb_quantize_tensor(rtn, NULL, NULL, w, R, C, &s, "w", &b));
    CHECK(a.nbytes == b.nbytes && !memcmp(a.data, b.data, a.nbytes));
    lb_tensor_free(&a);
    lb_tensor_free(&b);
    return lb_test_failures == fails;
}

static int known_answer_awq(void) { return known_answer_scaling("awq"); }
static int known_answer_awq_gptq(void) { return known_answer_scaling("awq+gptq"); }
static int known_answer_smoothquant(void) { return known_answer_scaling("smoothquant"); }

/* squeezellm: weights taking exactly 8 distinct values per row come back
 * exactly in lut3:row (the levels are those values); with equal diag(H)
 * every sensitivity is equal, which is rtn's unweighted k-means, byte for
 * byte; and 4, 6, 8, 9, 13 in lut1 get the optimal two levels by hand:
 * {4, 6, 8, 9} | {13}, means 6.75 and 13 (objective 14.75; every other
 * split of the sorted values costs more, e.g. {4, 6} | {8, 9, 13}: 16). */
static int known_answer_squeezellm(void) {
    enum { R = 2, C = 32 };
    float w[R * C], out[R * C];
    double xtx[C * C] = {0};
    for (int c = 0; c < C; c++) xtx[c * C + c] = 1.0 + c % 5;
    for (int i = 0; i < R * C; i++) w[i] = -1.0f + 0.25f * (float)((i * 7) % 8) + (i >= C ? 0.125f : 0.0f);
    lb_layer_stats st = {.n_samples = 8, .rows = R, .cols = C, .xtx = xtx};
    const lb_method *sq = lb_method_find("squeezellm"), *rtn = lb_method_find("rtn");
    int fails = lb_test_failures;
    lb_qspec s = lb_test_spec("lut3:row");
    lb_tensor a, b;
    CHECK_OK(lb_quantize_tensor(sq, NULL, &st, w, R, C, &s, "w", &a));
    CHECK_OK(lb_dequantize(&a, out));
    for (int i = 0; i < R * C; i++) CHECK_MSG(out[i] == w[i], "squeezellm weight %d: %g, want %g", i, out[i], w[i]);
    lb_tensor_free(&a);
    lb_rng r;
    lb_rng_seed(&r, 13);
    for (int i = 0; i < R * C; i++) w[i] = (float)lb_rng_normal(&r);
    for (int c = 0; c < C; c++) xtx[c * C + c] = 2.5;
    CHECK_OK(lb_quantize_tensor(sq, NULL, &st, w, R, C, &s, "w", &a));
    CHECK_OK(lb_quantize_tensor(rtn, NULL, NULL, w, R, C, &s, "w", &b));
    CHECK(a.nbytes == b.nbytes && !memcmp(a.data, b.data, a.nbytes));
    lb_tensor_free(&a);
    lb_tensor_free(&b);
    const float v[5] = {4, 6, 8, 9, 13}, want[5] = {6.75f, 6.75f, 6.75f, 6.75f, 13};
    lb_layer_stats st5 = {.n_samples = 8, .rows = 1, .cols = 5, .xtx = xtx}; /* diag 2.5: xtx[c * 5 + c] */
    for (int c = 0; c < 5; c++) xtx[c * 5 + c] = 2.5;
    s = lb_test_spec("lut1:row");
    CHECK_OK(lb_quantize_tensor(sq, NULL, &st5, v, 1, 5, &s, "w", &a));
    CHECK_OK(lb_dequantize(&a, out));
    for (int i = 0; i < 5; i++) CHECK_MSG(out[i] == want[i], "squeezellm lut1 weight %d: %g, want %g", i, out[i], want[i]);
    lb_tensor_free(&a);
    return lb_test_failures == fails;
}

/* onebit: W = diag(h) S diag(g) with fp16 h, g > 0 comes back exactly
 * (SVID finds it, least squares cannot improve on zero error), under a
 * non-diagonal H; without BLAS the row says so. (The descent and low-rank
 * cases: tests/test_onebit.c.) */
static int known_answer_onebit(void) {
    enum { R = 4, C = 24 };
    float w[R * C], out[R * C], h[R] = {0.5f, 1.25f, 0.09375f, 2.0f};
    double xtx[C * C];
    for (int i = 0; i < C; i++)
        for (int j = 0; j < C; j++) xtx[i * C + j] = i == j ? 2.0 + i % 3 : 0.5 / (1 + abs(i - j));
    for (int i = 0; i < R; i++)
        for (int j = 0; j < C; j++) w[i * C + j] = ((i * 7 + j * 3) % 5 < 2 ? -h[i] : h[i]) * (0.25f + 0.125f * (float)(j % 6));
    lb_layer_stats st = {.n_samples = 8, .rows = R, .cols = C, .xtx = xtx};
    const lb_method *m = lb_method_find("onebit");
    lb_qspec s = lb_test_spec("onebit");
    lb_tensor t;
    int fails = lb_test_failures;
#ifndef LB_HAVE_BLAS
    CHECK_FAILS(lb_quantize_tensor(m, NULL, &st, w, R, C, &s, "w", &t), LB_ERR_UNSUPPORTED, "OpenBLAS");
    (void)out;
    return lb_test_failures == fails;
#endif
    CHECK_OK(lb_quantize_tensor(m, NULL, &st, w, R, C, &s, "w", &t));
    CHECK_OK(lb_dequantize(&t, out));
    for (int i = 0; i < R * C; i++) CHECK_MSG(out[i] == w[i], "onebit weight %d: %g, want %g", i, out[i], w[i]);
    lb_tensor_free(&t);
    return lb_test_failures == fails;
}

/* ptq161 on a row exactly on its grids: salient columns 3 and 7 (k = 2 of
 * 10 at s20; their max|x| is the largest) hold d q + m at q = 0 and 15, so
 * min-max finds d = 0.125, m = -1; the others mu +- alpha, four of each
 * sign (mean mu = 0.0625, mean deviation alpha = 0.25). Feedback spreads
 * zero errors and the refit cannot improve a zero objective: exact.
 * (Planted channels, the closed form against brute force, the objective:
 * tests/test_ptq161.c.) */
static int known_answer_ptq161(void) {
    enum { C = 10 };
    const float w[C] = {0.3125f, -0.1875f, 0.3125f, -1.0f, -0.1875f, 0.3125f, -0.1875f, 0.875f, 0.3125f, -0.1875f};
    double xtx[C * C] = {0};
    float mean_abs[C], max_abs[C], out[C];
    for (int c = 0; c < C; c++) {
        xtx[c * C + c] = 1.0 + c % 3;
        mean_abs[c] = max_abs[c] = c == 3 || c == 7 ? 9.0f : 1.0f;
    }
    lb_layer_stats st = {.n_samples = 8, .rows = 1, .cols = C, .xtx = xtx, .mean_abs_x = mean_abs, .max_abs_x = max_abs};
    int fails = lb_test_failures;
    lb_qspec s = lb_test_spec("ptq161");
    lb_tensor t;
    const lb_method *m = lb_method_find("ptq161");
#ifndef LB_HAVE_BLAS
    CHECK_FAILS(lb_quantize_tensor(m, NULL, &st, w, 1, C, &s, "w", &t), LB_ERR_UNSUPPORTED, "OpenBLAS");
    return lb_test_failures == fails;
#endif
    CHECK_OK(lb_quantize_tensor(m, NULL, &st, w, 1, C, &s, "w", &t));
    CHECK_OK(lb_dequantize(&t, out));
    for (int i = 0; i < C; i++) CHECK_MSG(out[i] == w[i], "ptq161 weight %d: %g, want %g", i, out[i], w[i]);
    CHECK(t.data[t.nbytes - 2] == 0x88 && t.data[t.nbytes - 1] == 0); /* the mask: columns 3 and 7 */
    lb_tensor_free(&t);
    return lb_test_failures == fails;
}

/* billm on rows whose weights are +-0.125 and +-1, each sign and magnitude
 * equally often: the break-point search splits them exactly into the two
 * groups (means 0, deviations 0.125 and 1), and with no salient columns
 * to try (max_salient=0) every weight lands on its value. (Planted salient
 * columns and the objective: tests/test_billm.c.) */
static int known_answer_billm(void) {
    enum { R = 2, C = 16 };
    float w[R * C], out[R * C];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) w[r * C + c] = ((c + r) % 4 < 2 ? 0.125f : 1.0f) * (c & 1 ? 1.0f : -1.0f);
    double xtx[C * C] = {0};
    for (int c = 0; c < C; c++) xtx[c * C + c] = 1.0 + c % 5;
    lb_layer_stats st = {.n_samples = 8, .rows = R, .cols = C, .xtx = xtx};
    int fails = lb_test_failures;
    lb_qspec s = lb_test_spec("billm");
    lb_tensor t;
    lb_method_opts o;
    const lb_method *m = lb_method_find("billm");
    CHECK_OK(lb_test_method_opts(m, "max_salient=0", &o));
#ifndef LB_HAVE_BLAS
    CHECK_FAILS(lb_quantize_tensor(m, &o, &st, w, R, C, &s, "w", &t), LB_ERR_UNSUPPORTED, "OpenBLAS");
    return lb_test_failures == fails;
#endif
    CHECK_OK(lb_quantize_tensor(m, &o, &st, w, R, C, &s, "w", &t));
    CHECK_OK(lb_dequantize(&t, out));
    for (int i = 0; i < R * C; i++) CHECK_MSG(out[i] == w[i], "billm weight %d: %g, want %g", i, out[i], w[i]);
    lb_tensor_free(&t);
    return lb_test_failures == fails;
}

/* littlebit: W = h l (u v^T) g^T, rank 1 with positive h, g, l and any signs,
 * is exactly representable; its SVD's leading pair is h . u and g . v, so
 * Dual-SVID starts at it and the H-weighted least squares stay there: it
 * comes back to fp16 precision under a correlated H (tests/test_littlebit.c
 * has the rest: descent of the objective, higher ranks). */
static int known_answer_littlebit(void) {
    enum { R = 6, C = 16, S = 64 };
    float w[R * C], out[R * C];
    double xtx[C * C] = {0}, x[C];
    lb_rng r;
    lb_rng_seed(&r, 17);
    for (int t = 0; t < S; t++) {
        double z = lb_rng_normal(&r);
        for (int c = 0; c < C; c++) x[c] = z + 0.5 * lb_rng_normal(&r);
        for (int a = 0; a < C; a++)
            for (int b = 0; b < C; b++) xtx[a * C + b] += x[a] * x[b];
    }
    for (int i = 0; i < R; i++)
        for (int c = 0; c < C; c++) {
            float hu = (0.5f + 0.1f * (float)i) * (i % 3 ? 1.0f : -1.0f);
            float gv = (1.0f + 0.05f * (float)c) * ((c * 5) % 7 < 3 ? -1.0f : 1.0f);
            w[i * C + c] = 0.75f * hu * gv;
        }
    lb_layer_stats st = {.n_samples = S, .rows = R, .cols = C, .xtx = xtx};
    const lb_method *m = lb_method_find("littlebit");
    lb_qspec s = lb_test_spec("littlebit:r1");
    lb_tensor t;
    int fails = lb_test_failures;
#ifndef LB_HAVE_BLAS
    CHECK_FAILS(lb_quantize_tensor(m, NULL, &st, w, R, C, &s, "w", &t), LB_ERR_UNSUPPORTED, "OpenBLAS");
    (void)out;
    return lb_test_failures == fails;
#endif
    CHECK_OK(lb_quantize_tensor(m, NULL, &st, w, R, C, &s, "w", &t));
    CHECK_OK(lb_dequantize(&t, out));
    for (int i = 0; i < R * C; i++)
        CHECK_MSG(fabsf(out[i] - w[i]) <= 2e-3f * fabsf(w[i]), "littlebit weight %d: %g, want %g", i, out[i], w[i]);
    lb_tensor_free(&t);
    /* it needs X^T X, and refuses other formats */
    CHECK_FAILS(lb_quantize_tensor(m, NULL, NULL, w, R, C, &s, "w", &t), LB_ERR_INVALID, "X^T X");
    s = lb_test_spec("binary:row");
    CHECK_FAILS(lb_quantize_tensor(m, NULL, &st, w, R, C, &s, "w", &t), LB_ERR_INVALID, "littlebit:r<R>");
    return lb_test_failures == fails;
}

static const struct {
    const char *name;
    int (*run)(void);
} known_answers[] = {{"onebit", known_answer_onebit},
                     {"rtn", known_answer_rtn},
                     {"twn", known_answer_twn},
                     {"hqq", known_answer_hqq},
                     {"gptq", known_answer_gptq},
                     {"gptaq", known_answer_gptaq},
                     {"awq", known_answer_awq},
                     {"awq+gptq", known_answer_awq_gptq},
                     {"smoothquant", known_answer_smoothquant},
                     {"squeezellm", known_answer_squeezellm},
                     {"ptq161", known_answer_ptq161},
                     {"billm", known_answer_billm},
                     {"littlebit", known_answer_littlebit},
                     {"ldlq", known_answer_ldlq},
                     {"aqlm", known_answer_aqlm}};

static void test_every_row(void) {
    CHECK(lb_method_count() >= 2);
    CHECK(lb_method_at(-1) == NULL && lb_method_at(lb_method_count()) == NULL);
    for (int i = 0; i < lb_method_count(); i++) {
        const lb_method *m = lb_method_at(i);
        CHECK(m && m->name && m->name[0] && m->summary && m->summary[0] && m->quantize);
        CHECK(lb_method_find(m->name) == m);
        CHECK(m->n_options >= 0 && m->n_options <= LB_METHOD_MAX_OPTIONS - LB_METHOD_COMMON_OPTIONS);
        lb_method_opts o, back;
        lb_method_opts_default(m, &o);
        for (int k = 0; k < m->n_options; k++) {
            const lb_method_option *opt = &m->options[k];
            CHECK_MSG(opt->name && opt->def && opt->help && !isnan(o.value[k]), "%s option %d", m->name, k);
            CHECK(opt->type != LB_OPTION_CHOICE || (opt->choices && opt->noun));
            CHECK(!strchr(opt->name, '=') && !strchr(opt->name, ' '));
        }
        /* the options' text parses back to the same options */
        char text[512];
        lb_method_opts_format(&o, 1, text, sizeof text);
        lb_method_opts_default(m, &back);
        char *save = NULL;
        for (char *tok = strtok_r(text, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
            CHECK_OK(lb_method_opts_parse(&back, tok));
        CHECK(lb_method_opts_equal(&o, &back));
        /* a row without a known-answer case fails here rather than go untested */
        int found = 0;
        for (size_t k = 0; k < sizeof known_answers / sizeof known_answers[0]; k++)
            if (!strcmp(known_answers[k].name, m->name)) {
                found = 1;
                CHECK_MSG(known_answers[k].run(), "method %s: known answer", m->name);
            }
        CHECK_MSG(found, "method %s has no known-answer test in test_method.c", m->name);
    }
}

static void test_options(void) {
    const lb_method *rtn = lb_method_find("rtn"), *twn = lb_method_find("twn");
    CHECK(rtn && twn);
    CHECK(lb_method_find("nosuch") == NULL);
    CHECK(strstr(lb_last_error(), "unknown method 'nosuch' (available: rtn, twn") != NULL);
    lb_method_opts o;
    lb_method_opts_default(rtn, &o);
    CHECK(lb_method_opts_get(&o, "clip") == 0 && lb_method_opts_get(&o, "mse_steps") == 50);
    CHECK(isnan(lb_method_opts_get(&o, "nope")));
    CHECK_OK(lb_method_opts_set(&o, "clip", "aciq-gauss"));
    CHECK_OK(lb_method_opts_parse(&o, "mse_min_shrink=0.3"));
    char buf[128];
    CHECK(!strcmp(lb_method_opts_text(&o, "clip", buf, sizeof buf), "aciq-gauss"));
    lb_method_opts_format(&o, 0, buf, sizeof buf);
    CHECK_MSG(!strcmp(buf, "clip=aciq-gauss mse_min_shrink=0.3"), "%s", buf);
    CHECK_FAILS(lb_method_opts_set(&o, "clip", "best"), LB_ERR_INVALID, "unknown clipping rule 'best'");
    CHECK(strstr(lb_last_error(), "minmax, mse, aciq") != NULL);
    CHECK_FAILS(lb_method_opts_set(&o, "clipp", "mse"), LB_ERR_INVALID,
                "method rtn has no option 'clipp' (known: clip, mse_steps, mse_min_shrink, weights, outliers, outlier_rule, "
                "bias_correct, rotate, rotate_seed)");
    CHECK_FAILS(lb_method_opts_parse(&o, "mse_steps=0"), LB_ERR_INVALID, "integer in 1..10000");
    CHECK_FAILS(lb_method_opts_parse(&o, "mse_steps=5x"), LB_ERR_INVALID, "got '5x'");
    CHECK_FAILS(lb_method_opts_parse(&o, "mse_min_shrink=nan"), LB_ERR_INVALID, "expects a number");
    CHECK_FAILS(lb_method_opts_parse(&o, "clip"), LB_ERR_INVALID, "expected key=value");
    CHECK_FAILS(lb_method_opts_parse(&o, "=mse"), LB_ERR_INVALID, "expected key=value");
    CHECK_FAILS(lb_method_opts_parse(&o, "clip="), LB_ERR_INVALID, "expected key=value");
    lb_method_opts t;
    lb_method_opts_default(twn, &t);
    CHECK_FAILS(lb_method_opts_parse(&t, "clip=mse"), LB_ERR_INVALID, "method twn has no option 'clip' (it takes none)");
    CHECK(!lb_method_opts_equal(&o, &t));
}

static void test_entry_point(void) {
    enum { R = 8, C = 96 };
    static float w[R * C];
    lb_rng r;
    lb_rng_seed(&r, 5);
    for (int i = 0; i < R * C; i++) w[i] = (float)lb_rng_normal(&r);
    const lb_method *rtn = lb_method_find("rtn"), *twn = lb_method_find("twn");
    /* byte-identical to the RTN shorthand, for every clip rule */
    static const char *clips[] = {"minmax", "mse", "aciq", "aciq-gauss"};
    for (int c = 0; c < 4; c++) {
        lb_method_opts o;
        lb_method_opts_default(rtn, &o);
        CHECK_OK(lb_method_opts_set(&o, "clip", clips[c]));
        lb_rtn_opts ro;
        lb_rtn_opts_default(&ro);
        CHECK_OK(lb_clip_parse(clips[c], &ro.clip));
        lb_qspec s = lb_test_spec("int3:g32:asym");
        lb_tensor a, b;
        CHECK_OK(lb_quantize_tensor(rtn, &o, NULL, w, R, C, &s, "w", &a));
        CHECK_OK(lb_quantize_to_tensor(w, R, C, &s, &ro, "w", &b));
        CHECK(a.nbytes == b.nbytes && memcmp(a.data, b.data, a.nbytes) == 0);
        lb_tensor_free(&a);
        lb_tensor_free(&b);
    }
    /* float specs convert, whatever the method */
    lb_qspec f16 = lb_test_spec("f16");
    lb_tensor t;
    CHECK_OK(lb_quantize_tensor(twn, NULL, NULL, w, R, C, &f16, "w", &t));
    CHECK(t.nbytes == (size_t)R * C * 2);
    lb_tensor_free(&t);
    /* refusals name the tensor */
    lb_qspec i4 = lb_test_spec("int4");
    CHECK_FAILS(lb_quantize_tensor(twn, NULL, NULL, w, R, C, &i4, "blk.0.attn_q.weight", &t), LB_ERR_INVALID,
                "quantizing 'blk.0.attn_q.weight': method twn quantizes to ternary formats only, not 'int4");
    lb_method_opts o;
    lb_method_opts_default(rtn, &o);
    CHECK_FAILS(lb_quantize_tensor(twn, &o, NULL, w, R, C, &i4, "w", &t), LB_ERR_INVALID, "options of method rtn");
    lb_qspec bin = lb_test_spec("binary:row");
    CHECK_OK(lb_method_opts_set(&o, "clip", "mse"));
    CHECK_FAILS(lb_quantize_tensor(rtn, &o, NULL, w, R, C, &bin, "w", &t), LB_ERR_INVALID, "own rule");
}

/* A row that needs X^T X, to see the entry point guard statistics. */
static int saw_stats;
static lb_status needs_xtx_quantize(const float *w, int64_t rows, int64_t cols, const lb_layer_stats *stats,
                                    const lb_qspec *s, const lb_method_opts *o, lb_qtensor *q) {
    (void)o;
    saw_stats = stats != NULL && stats->xtx != NULL;
    return lb_rtn_quantize(w, rows, cols, s, NULL, q);
}

static void test_statistics(void) {
    const lb_method needs_xtx = {"xtx-test", "test row", LB_STATS_XTX, NULL, 0, NULL, needs_xtx_quantize, NULL, NULL};
    float w[4 * 16];
    for (int i = 0; i < 64; i++) w[i] = (float)(i % 7) - 3.0f;
    lb_qspec s = lb_test_spec("int4:g16");
    lb_tensor t;
    CHECK_FAILS(lb_quantize_tensor(&needs_xtx, NULL, NULL, w, 4, 16, &s, "w", &t), LB_ERR_INVALID,
                "method xtx-test needs calibration statistics (X^T X)");
    double xtx[16 * 16] = {0};
    float mean_abs[16] = {0};
    lb_layer_stats st = {.n_samples = 1, .rows = 4, .cols = 16, .mean_abs_x = mean_abs};
    CHECK_FAILS(lb_quantize_tensor(&needs_xtx, NULL, &st, w, 4, 16, &s, "w", &t), LB_ERR_INVALID, "X^T X");
    st.xtx = xtx;
    st.cols = 8;
    CHECK_FAILS(lb_quantize_tensor(&needs_xtx, NULL, &st, w, 4, 16, &s, "w", &t), LB_ERR_INVALID,
                "statistics are for a 4 x 8 linear");
    st.cols = 16;
    CHECK_OK(lb_quantize_tensor(&needs_xtx, NULL, &st, w, 4, 16, &s, "w", &t));
    CHECK(saw_stats);
    lb_tensor_free(&t);
}

int main(void) {
    test_every_row();
    test_options();
    test_entry_point();
    test_statistics();
    printf("test_method: %d checks, %d failed\n", lb_test_checks, lb_test_failures);
    return lb_test_failures != 0;
}
