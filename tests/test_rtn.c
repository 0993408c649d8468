/* Round-to-nearest: known answers (weights already on a grid come back
 * exactly; hand-computed binary/ternary cases), error bounds, clipping that
 * can only help, bad input, and thread-count independence. */
#include "test.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* dequantized values of quantizing w with spec/clip */
static lb_status rtn_values_opts(const float *w, int64_t rows, int64_t cols, const char *text,
                                 const lb_rtn_opts *o, float *out) {
    lb_qspec s = lb_test_spec(text);
    lb_tensor t;
    lb_status st = lb_quantize_to_tensor(w, rows, cols, &s, o, "w", &t);
    if (st != LB_OK) return st;
    st = lb_dequantize(&t, out);
    lb_tensor_free(&t);
    return st;
}

static lb_status rtn_values(const float *w, int64_t rows, int64_t cols, const char *text, lb_clip clip,
                            float *out) {
    lb_rtn_opts o;
    lb_rtn_opts_default(&o);
    o.clip = clip;
    return rtn_values_opts(w, rows, cols, text, &o, out);
}

static double sq_err(const float *a, const float *b, int64_t n) {
    double e = 0;
    for (int64_t i = 0; i < n; i++) e += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return e;
}

static void test_exact_grids(void) {
    float w[2 * 48], out[2 * 48];
    /* asym fp16 offset: w = m + s q with q spanning 0..15 in every group of 16 */
    for (int i = 0; i < 96; i++) {
        int g = i / 16;
        w[i] = -1.5f + 0.25f * (float)g + 0.125f * (float)((i * 7) % 16);
    }
    for (int g = 0; g < 6; g++) { /* make sure each group reaches 0 and 15 */
        w[16 * g] = -1.5f + 0.25f * (float)g;
        w[16 * g + 1] = -1.5f + 0.25f * (float)g + 0.125f * 15;
    }
    CHECK_OK(rtn_values(w, 2, 48, "int4:g16:asym", LB_CLIP_MINMAX, out));
    CHECK(sq_err(w, out, 96) == 0.0);
    /* symmetric int8 keeps ggml's Q8_0 rule, d = max|w| / 127: w = s (q - 128) with |q - 128| reaching 127 */
    for (int i = 0; i < 64; i++) w[i] = 0.5f * (float)((i * 37) % 255 - 127);
    w[0] = 0.5f * 127;
    w[32] = -0.5f * 127;
    CHECK_OK(rtn_values(w, 2, 32, "int8:g32:sym", LB_CLIP_MINMAX, out));
    CHECK(sq_err(w, out, 64) == 0.0);
    /* symmetric below 8 bits: the signed extreme e lands on code 0, d = e / -2^(b-1),
     * so all 2^b levels are used (ggml's Q4_0 rule). A positive extreme gives
     * a negative scale: w = -0.25 (q - 8), q = 0..15, reaching 2.0 and -1.75 */
    for (int i = 0; i < 32; i++) w[i] = -0.25f * (float)((i * 7) % 16 - 8);
    CHECK_OK(rtn_values(w, 1, 32, "int4:g32:sym", LB_CLIP_MINMAX, out));
    CHECK(sq_err(w, out, 32) == 0.0);
    lb_qspec s4 = lb_test_spec("int4:g32:sym");
    lb_qtensor qt;
    CHECK_OK(lb_rtn_quantize(w, 1, 32, &s4, NULL, &qt));
    CHECK(qt.scale[0] == -0.25f);
    lb_qtensor_free(&qt);
    /* a negative extreme: 3 bits, w = 0.5 (q - 4), q = 0..7, reaching -2.0 and 1.5 */
    for (int i = 0; i < 16; i++) w[i] = 0.5f * (float)((i * 3) % 8 - 4);
    CHECK_OK(rtn_values(w, 1, 16, "int3:g16:sym", LB_CLIP_MINMAX, out));
    CHECK(sq_err(w, out, 16) == 0.0);
    /* |min| = |max|: the first of them is the extreme (ggml's strict comparison),
     * the other side clips one step short */
    float tie[16] = {-1.0f, 1.0f, 0.5f};
    CHECK_OK(rtn_values(tie, 1, 16, "int4:g16:sym", LB_CLIP_MINMAX, out));
    CHECK(out[0] == -1.0f && out[1] == 0.875f && out[2] == 0.5f);
    tie[0] = 1.0f;
    tie[1] = -1.0f;
    CHECK_OK(rtn_values(tie, 1, 16, "int4:g16:sym", LB_CLIP_MINMAX, out));
    CHECK(out[0] == 1.0f && out[1] == -0.875f && out[2] == 0.5f);
    /* nf4: absmax times the codebook */
    static const float nf4[16] = {-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
                                  -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
                                  0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f,
                                  0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
                                  0.7229568362236023f, 1.0f};
    for (int i = 0; i < 32; i++) w[i] = 2.0f * nf4[(i * 5) % 16];
    w[3] = 2.0f;
    CHECK_OK(rtn_values(w, 1, 32, "nf4:g32", LB_CLIP_MINMAX, out));
    CHECK(sq_err(w, out, 32) == 0.0);
}

static void test_binary_ternary(void) {
    const float w[8] = {0.5f, -1.0f, 0.25f, -0.25f, 2.0f, 0.0f, -0.1f, 0.6f};
    float out[8];
    /* binary per row: alpha = mean|w| = 4.7 / 8 = 0.5875 (as fp16) */
    CHECK_OK(rtn_values(w, 1, 8, "binary:row", LB_CLIP_MINMAX, out));
    float a = lb_round_fp16(4.7f / 8);
    for (int i = 0; i < 8; i++) CHECK(out[i] == (w[i] >= 0 ? a : -a));
    /* ternary absmean: gamma = 0.5875; t = round(w / gamma) clamped */
    CHECK_OK(rtn_values(w, 1, 8, "ternary:row:2bit", LB_CLIP_MINMAX, out));
    const float t_abs[8] = {1, -1, 0, 0, 1, 0, 0, 1};
    for (int i = 0; i < 8; i++) CHECK(out[i] == a * t_abs[i]);
    /* TWN: delta = 0.7 * 0.5875 = 0.41125; kept |w| = 0.5, 1, 2, 0.6 -> alpha = 4.1 / 4 */
    lb_rtn_opts twn;
    lb_rtn_opts_default(&twn);
    CHECK(twn.ternary_rule == LB_TERNARY_ABSMEAN);
    twn.ternary_rule = LB_TERNARY_TWN;
    CHECK_OK(rtn_values_opts(w, 1, 8, "ternary:row:1.6bit", &twn, out));
    const float t_twn[8] = {1, -1, 0, 0, 1, 0, 0, 1};
    float alpha = lb_round_fp16(4.1f / 4);
    for (int i = 0; i < 8; i++) CHECK(out[i] == alpha * t_twn[i]);
    /* per tensor: one gamma over both rows */
    float w2[16];
    for (int i = 0; i < 16; i++) w2[i] = i < 8 ? w[i] : 2 * w[i - 8];
    float out2[16];
    CHECK_OK(rtn_values(w2, 2, 8, "ternary:tensor:2bit", LB_CLIP_MINMAX, out2));
    float g = lb_round_fp16(3 * 4.7f / 16);
    for (int i = 0; i < 16; i++) {
        float t = nearbyintf(w2[i] / g);
        t = t > 1 ? 1 : t < -1 ? -1 : t;
        CHECK(out2[i] == g * t);
    }
    /* clipping rules other than minmax are refused for sign formats */
    CHECK_FAILS(rtn_values(w, 1, 8, "binary:row", LB_CLIP_MSE, out), LB_ERR_INVALID, "own rule");
}

static void gaussian(float *w, int64_t n, uint64_t seed, int outliers) {
    lb_rng r;
    lb_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) w[i] = (float)lb_rng_normal(&r) * 0.02f;
    for (int i = 0; i < outliers; i++) w[lb_rng_u32(&r) % n] *= 12.0f;
}

static void test_error_bounds_and_clipping(void) {
    enum { R = 64, C = 256 };
    static float w[R * C], out[R * C], out2[R * C];
    gaussian(w, R * C, 99, 40);
    /* min-max asym: every weight within half a step (+ fp16 slop) of its value */
    for (int bits = 2; bits <= 8; bits++) {
        char text[32];
        snprintf(text, sizeof text, "int%d:g32:asym", bits);
        CHECK_OK(rtn_values(w, R, C, text, LB_CLIP_MINMAX, out));
        int bad = 0;
        for (int r = 0; r < R; r++)
            for (int g = 0; g < C / 32; g++) {
                float lo = INFINITY, hi = -INFINITY;
                for (int j = 0; j < 32; j++) {
                    lo = fminf(lo, w[r * C + g * 32 + j]);
                    hi = fmaxf(hi, w[r * C + g * 32 + j]);
                }
                float step = (hi - lo) / (float)((1 << bits) - 1);
                for (int j = 0; j < 32; j++) {
                    float e = fabsf(w[r * C + g * 32 + j] - out[r * C + g * 32 + j]);
                    if (e > 0.5f * step * 1.01f + 2e-3f * fabsf(hi - lo) + 1e-6f) bad++;
                }
            }
        CHECK_MSG(bad == 0, "%s: %d weights beyond half a step", text, bad);
    }
    /* mse never loses to min-max (it includes p = 1); aciq helps at 2 bits on heavy tails */
    static const char *specs[] = {"int2:g64:asym", "int3:g32:asym", "int3:row:sym", "int2:g128:asym:zint",
                                  "nf4:g64"};
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        CHECK_OK(rtn_values(w, R, C, specs[i], LB_CLIP_MINMAX, out));
        CHECK_OK(rtn_values(w, R, C, specs[i], LB_CLIP_MSE, out2));
        double e_mm = sq_err(w, out, R * C), e_mse = sq_err(w, out2, R * C);
        CHECK_MSG(e_mse <= e_mm, "%s: mse %g > minmax %g", specs[i], e_mse, e_mm);
        CHECK_MSG(e_mse < 0.95 * e_mm, "%s: mse %g barely beats minmax %g", specs[i], e_mse, e_mm);
    }
    CHECK_OK(rtn_values(w, R, C, "int2:row:asym", LB_CLIP_MINMAX, out));
    CHECK_OK(rtn_values(w, R, C, "int2:row:asym", LB_CLIP_ACIQ, out2));
    CHECK(sq_err(w, out2, R * C) < 0.8 * sq_err(w, out, R * C));
    CHECK_OK(rtn_values(w, R, C, "int2:row:sym", LB_CLIP_ACIQ_GAUSS, out2));
    CHECK(sq_err(w, out2, R * C) < sq_err(w, out, R * C));
    /* ACIQ tables as published */
    CHECK(lb_aciq_laplace_ratio(2) == 2.83f && lb_aciq_laplace_ratio(8) == 9.89f);
    CHECK(lb_aciq_gauss_ratio(1) == 1.24f && lb_aciq_gauss_ratio(4) == 2.55f);
    lb_clip c;
    CHECK_OK(lb_clip_parse("aciq-gauss", &c));
    CHECK(c == LB_CLIP_ACIQ_GAUSS);
    CHECK_FAILS(lb_clip_parse("percentile", &c), LB_ERR_INVALID, "unknown clipping rule 'percentile'");
}

/* weights=magnitude: each group's mse search minimizes sum (rms + |w|) (w -
 * q)^2 over the same candidate grids as the plain search, so on that
 * objective it is never worse than plain, and on plain squared error never
 * better (sums over groups, fp16-scale formats) */
static double magnitude_err(const float *w, const float *q, int64_t n, int g) {
    double e = 0;
    for (int64_t k = 0; k < n; k += g) {
        double ss = 0;
        for (int i = 0; i < g; i++) ss += (double)w[k + i] * w[k + i];
        float rms = (float)sqrt(ss / g);
        for (int i = 0; i < g; i++) e += (rms + fabsf(w[k + i])) * ((double)w[k + i] - q[k + i]) * ((double)w[k + i] - q[k + i]);
    }
    return e;
}

static void test_magnitude_weights(void) {
    enum { R = 32, C = 256 };
    static float w[R * C], plain[R * C], mag[R * C];
    gaussian(w, R * C, 5, 30);
    static const struct {
        const char *spec;
        int g;
    } f[] = {{"q4_0", 32}, {"int3:g32:asym", 32}, {"int2:g64:sym", 64}, {"nf4:g64", 64}, {"iq4_nl", 32}, {"mxfp4", 32}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        lb_rtn_opts o;
        lb_rtn_opts_default(&o);
        o.clip = LB_CLIP_MSE;
        CHECK_OK(rtn_values_opts(w, R, C, f[i].spec, &o, plain));
        o.magnitude = 1;
        CHECK_OK(rtn_values_opts(w, R, C, f[i].spec, &o, mag));
        double wp = magnitude_err(w, plain, R * C, f[i].g), wm = magnitude_err(w, mag, R * C, f[i].g);
        double pp = sq_err(w, plain, R * C), pm = sq_err(w, mag, R * C);
        printf("  %-14s weighted error plain %.4g magnitude %.4g; squared error plain %.4g magnitude %.4g\n", f[i].spec,
               wp, wm, pp, pm);
        CHECK_MSG(wm <= wp * (1 + 1e-9) && pp <= pm * (1 + 1e-9) && (wm < wp || pm > pp || memcmp(plain, mag, sizeof mag) == 0),
                  "%s: weights=magnitude does not minimize its own objective", f[i].spec);
    }
}

static void test_bad_input(void) {
    float w[12] = {0};
    float out[12];
    w[7] = NAN;
    CHECK_FAILS(rtn_values(w, 3, 4, "int4:g16:asym", LB_CLIP_MINMAX, out), LB_ERR_NUMERIC, "row 1, column 3 is NaN");
    w[7] = INFINITY;
    CHECK_FAILS(rtn_values(w, 3, 4, "nf4:g16", LB_CLIP_MINMAX, out), LB_ERR_NUMERIC, "infinite");
    w[7] = 1e30f; /* finite but beyond fp16 scales */
    CHECK_FAILS(rtn_values(w, 3, 4, "int4:g16:asym", LB_CLIP_MINMAX, out), LB_ERR_NUMERIC, "fp16");
    w[7] = 0;
    CHECK_OK(rtn_values(w, 3, 4, "int4:g16:asym", LB_CLIP_MINMAX, out)); /* all zero is fine */
    CHECK(sq_err(w, out, 12) == 0.0);
}

static void test_threads_and_determinism(void) {
    enum { R = 96, C = 200 };
    static float w[R * C];
    gaussian(w, R * C, 3, 10);
    static const char *specs[] = {"int3:g64:asym", "nf4:g32:dq", "ternary:g64:1.6bit", "int2:row:asym:zint"};
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        lb_qspec s = lb_test_spec(specs[i]);
        lb_rtn_opts o;
        lb_rtn_opts_default(&o);
        if (lb_format_grid(&s) != LB_GRID_TERNARY) o.clip = LB_CLIP_MSE;
        else o.ternary_rule = LB_TERNARY_TWN;
        lb_tensor a, b;
        lb_set_threads(1);
        CHECK_OK(lb_quantize_to_tensor(w, R, C, &s, &o, "w", &a));
        lb_set_threads(2);
        CHECK_OK(lb_quantize_to_tensor(w, R, C, &s, &o, "w", &b));
        CHECK(a.nbytes == b.nbytes && memcmp(a.data, b.data, a.nbytes) == 0);
        lb_tensor_free(&a);
        lb_tensor_free(&b);
    }
}

int main(void) {
    test_exact_grids();
    test_binary_ternary();
    test_error_bounds_and_clipping();
    test_magnitude_weights();
    test_bad_input();
    test_threads_and_determinism();
    return lb_test_finish("test_rtn");
}
