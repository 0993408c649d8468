/* The floating-point storage formats (issue 10 item 6): fp8_e4m3 / fp8_e5m2
 * (src/formats/fp8.c) and mxfp4 / nvfp4 (src/formats/fp4.c). Spec text,
 * sizes and ggml ids; round trips; FP8 values of known bytes and rounding
 * against a brute-force nearest-with-ties-to-even over the whole codebook;
 * the E8M0 / UE4M3 block scales of known bytes; weights exactly on the grids
 * come back exactly from rtn; nvfp4's tensor scale makes the error
 * independent of the weights' magnitude (what naive UE4M3 scales are not);
 * rtn's mse search never loses to min-max; NaN/infinite stored FP8 bytes
 * and a non-positive nvfp4 tensor scale are refused. The ggml blocks
 * against llama.cpp's to_float: docs/RESULTS.md. */
#include "format_check.h"
#include "test.h"

#include <math.h>

static void test_spec(void) {
    static const struct {
        const char *text, *canon;
        int ggml;
        int64_t rows, cols;
        double bpw;
    } t[] = {
        {"mxfp4", "mxfp4", 39, 3, 256, 4.25},
        {"nvfp4", "nvfp4", 40, 3, 256, 4.5 + 32.0 / 768},
        {"fp8_e4m3", "fp8_e4m3:row", -1, 3, 256, 8.0625},
        {"fp8_e5m2:g32", "fp8_e5m2:g32", -1, 3, 256, 8.5},
        {"fp8_e4m3:tensor", "fp8_e4m3:tensor", -1, 3, 256, 8 + 16.0 / 768},
    };
    lb_rng r;
    lb_rng_seed(&r, 5);
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        lb_qspec s, back;
        char text[32];
        CHECK_OK(lb_qspec_parse(t[i].text, &s));
        lb_qspec_format(&s, text, sizeof text);
        CHECK_MSG(!strcmp(text, t[i].canon), "%s formats as %s", t[i].text, text);
        CHECK_OK(lb_qspec_parse(text, &back));
        CHECK(lb_qspec_equal(&s, &back) && lb_format_grid(&s) == LB_GRID_ABSMAX);
        CHECK_NEAR(lb_format_bpw(&s, t[i].rows, t[i].cols), t[i].bpw, 1e-12);
        CHECK(lb_format_ggml_type(&s, 256) == t[i].ggml);
        if (t[i].ggml >= 0) {
            CHECK_OK(lb_qspec_from_ggml_type(t[i].ggml, &back));
            CHECK(lb_qspec_equal(&s, &back));
        }
        static const int64_t cols[] = {1, 64, 100, 256, 320};
        for (size_t c = 0; c < sizeof cols / sizeof cols[0]; c++) {
            int f = format_round_trip(&s, 3, cols[c], &r);
            CHECK_MSG(f == 0, "%s with %lld columns: %d mismatches", t[i].text, (long long)cols[c], f);
        }
    }
    lb_qspec s = lb_test_spec("nvfp4"), fb;
    CHECK(lb_format_ggml_type(&s, 96) == -1 && !lb_format_ggml_fallback(&s, 128, &fb));
    CHECK(lb_format_ggml_fallback(&s, 96, &fb) && lb_format_ggml_type(&fb, 96) == 39); /* mxfp4 */
    CHECK(lb_format_ggml_fallback(&s, 100, &fb) && fb.family == LB_FAMILY_F16);
    CHECK_FAILS(lb_qspec_parse("mxfp4:g64", &s), LB_ERR_INVALID, "g64");
    CHECK_FAILS(lb_qspec_parse("fp8_e4m3:g24", &s), LB_ERR_INVALID, "g24");
}

/* FP8: known bytes, every finite byte a code, rounding = brute-force nearest, ties to the even byte */
static void test_fp8_values(void) {
    static const struct {
        const char *spec;
        float max, min_normal, min_sub;
        int n;
    } v[] = {{"fp8_e4m3", 448.0f, 0x1p-6f, 0x1p-9f, 254}, {"fp8_e5m2", 57344.0f, 0x1p-14f, 0x1p-16f, 248}};
    lb_rng r;
    lb_rng_seed(&r, 9);
    for (int i = 0; i < 2; i++) {
        lb_qspec s = lb_test_spec(v[i].spec);
        int n = lb_format_levels(&s);
        CHECK_MSG(n == v[i].n, "%s: %d codes, want %d finite bytes", v[i].spec, n, v[i].n);
        float lo = INFINITY, hi = -INFINITY, pos_min = INFINITY, norm = 0;
        for (int c = 0; c < n; c++) {
            float x = lb_format_level(&s, c);
            CHECK(isfinite(x));
            lo = fminf(lo, x);
            hi = fmaxf(hi, x);
            if (x > 0) pos_min = fminf(pos_min, x);
            if (x == v[i].min_normal) norm = x;
            /* every value rounds to itself (+-0 to a zero) */
            float back = lb_format_level(&s, lb_format_nearest_level(&s, 1.0f, x));
            CHECK_MSG(back == x, "%s: code %d (%g) rounds to %g", v[i].spec, c, (double)x, (double)back);
        }
        CHECK(hi == v[i].max && lo == -v[i].max && pos_min == v[i].min_sub && norm == v[i].min_normal);
        CHECK(lb_format_level(&s, lb_format_nearest_level(&s, 1.0f, 1.0f)) == 1.0f);
        CHECK(lb_format_level(&s, lb_format_nearest_level(&s, 1.0f, 1e9f)) == v[i].max);
        CHECK(lb_format_level(&s, lb_format_nearest_level(&s, 1.0f, -1e9f)) == -v[i].max);
        /* ties go to the even mantissa: E4M3 steps 1/8 above 1, E5M2 1/4 */
        float step = i ? 0.25f : 0.125f;
        CHECK(lb_format_level(&s, lb_format_nearest_level(&s, 1.0f, 1.0f + step / 2)) == 1.0f);
        CHECK(lb_format_level(&s, lb_format_nearest_level(&s, 1.0f, 1.0f + 1.5f * step)) == 1.0f + 2 * step);
        int bad = 0;
        for (int k = 0; k < 20000; k++) {
            float x = (float)lb_rng_normal(&r) * ldexpf(1.0f, (int)(lb_rng_u32(&r) % 40) - 20);
            float got = lb_format_level(&s, lb_format_nearest_level(&s, 1.0f, x));
            float best = INFINITY;
            for (int c = 0; c < n; c++) best = fminf(best, fabsf(x - lb_format_level(&s, c)));
            bad += fabsf(x - got) != best;
        }
        CHECK_MSG(bad == 0, "%s: %d of 20000 values not rounded to a nearest level", v[i].spec, bad);
    }
}

/* a one-row tensor of the given bytes, resolved (its status returned) */
static lb_status resolve(const char *spec, const uint8_t *bytes, size_t n, int64_t cols, lb_tensor *t) {
    memset(t, 0, sizeof *t);
    t->spec = lb_test_spec(spec);
    t->rows = 1;
    t->cols = cols;
    t->data = bytes;
    t->nbytes = n;
    return lb_tensor_resolve(t);
}

/* the block scales of known bytes: E8M0 2^(e - 127); UE4M3 (bias 7), 0x7f
 * reading as 0; nvfp4 times the tensor scale */
static void test_block_scales(void) {
    uint8_t mx[17] = {0};
    mx[0] = 125; /* 0.25 */
    mx[1] = 7 | 15 << 4; /* weight 0: +6, weight 16: -6 */
    mx[2] = 1;           /* weight 1: 0.5 */
    lb_tensor t;
    float y[64];
    CHECK_OK(resolve("mxfp4", mx, 17, 32, &t));
    lb_dequantize_row(&t, 0, y);
    CHECK(y[0] == 1.5f && y[16] == -1.5f && y[1] == 0.125f && y[2] == 0.0f);
    uint8_t nv[36 + 4] = {0};
    nv[0] = 0x38; /* 1.0 */
    nv[1] = 0x7e; /* 448 */
    nv[2] = 0x01; /* 2^-9 */
    nv[3] = 0x7f; /* 0 */
    for (int s = 0; s < 4; s++) nv[4 + 8 * s] = 5 | 13 << 4; /* weight 16 s: 3, weight 16 s + 8: -3 */
    float T = 0.5f;
    memcpy(nv + 36, &T, 4);
    CHECK_OK(resolve("nvfp4", nv, 40, 64, &t));
    lb_dequantize_row(&t, 0, y);
    CHECK(y[0] == 1.5f && y[8] == -1.5f && y[16] == 672.0f && y[24] == -672.0f);
    CHECK(y[32] == 3.0f * 0x1p-10f && y[48] == 0.0f);
    T = 0.0f;
    memcpy(nv + 36, &T, 4);
    CHECK_FAILS(resolve("nvfp4", nv, 40, 64, &t), LB_ERR_FORMAT, "tensor scale");
    uint8_t f8[2 + 8] = {0x00, 0x3c, 0x38, 0xb8, 0x7e, 0, 0, 0, 0, 0}; /* fp16 1.0, then 1, -1, 448 */
    CHECK_OK(resolve("fp8_e4m3", f8, 10, 8, &t));
    lb_dequantize_row(&t, 0, y);
    CHECK(y[0] == 1.0f && y[1] == -1.0f && y[2] == 448.0f && y[3] == 0.0f);
    f8[5] = 0x7f; /* NaN */
    CHECK_FAILS(resolve("fp8_e4m3", f8, 10, 8, &t), LB_ERR_FORMAT, "not a finite");
    f8[5] = 0x7c; /* E5M2 infinity */
    CHECK_FAILS(resolve("fp8_e5m2", f8, 10, 8, &t), LB_ERR_FORMAT, "not a finite");
}

static double rtn_error(const char *spec, const char *opts, const float *w, int64_t rows, int64_t cols,
                        float *back) {
    lb_qspec s = lb_test_spec(spec);
    lb_method_opts o;
    lb_tensor t;
    if (lb_test_method_opts(lb_method_find("rtn"), opts, &o) != LB_OK ||
        lb_quantize_tensor(lb_method_find("rtn"), &o, NULL, w, rows, cols, &s, "w", &t) != LB_OK ||
        lb_dequantize(&t, back) != LB_OK)
        return NAN;
    lb_tensor_free(&t);
    double err = 0;
    for (int64_t i = 0; i < rows * cols; i++) err += ((double)w[i] - back[i]) * ((double)w[i] - back[i]);
    return err;
}

/* weights on the grid (each block's largest weight on E2M1's 6, scales
 * representable) come back exactly */
static void test_exact(void) {
    enum { R = 4, C = 256 };
    static float w[R * C], back[R * C];
    lb_rng r;
    lb_rng_seed(&r, 3);
    static const float e2m1[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
    for (int nv = 0; nv < 2; nv++) {
        int bl = nv ? 16 : 32;
        for (int b = 0; b < R * C / bl; b++) {
            /* mxfp4: 2^k; nvfp4: T u with T = 2^-10 (block 0's scale 448 sets it) and u a UE4M3 value */
            static const float u[4] = {448.0f, 1.5f, 13.0f, 0.75f};
            float d = nv ? ldexpf(b == 0 ? u[0] : u[lb_rng_u32(&r) % 4], -10) : ldexpf(1.0f, (int)(lb_rng_u32(&r) % 12) - 9);
            for (int j = 0; j < bl; j++)
                w[b * bl + j] = d * e2m1[lb_rng_u32(&r) % 8] * (lb_rng_u32(&r) & 1 ? -1.0f : 1.0f);
            w[b * bl + (int)(lb_rng_u32(&r) % (unsigned)bl)] = 6.0f * d;
        }
        double e = rtn_error(nv ? "nvfp4" : "mxfp4", "", w, R, C, back);
        CHECK_MSG(e == 0.0, "%s: weights on the grid come back with squared error %g", nv ? "nvfp4" : "mxfp4", e);
    }
    /* fp8: weights that are FP8 values times a power of two (the row's largest onto 448) */
    for (int i = 0; i < R * C; i++) w[i] = ldexpf((float)(int)(lb_rng_u32(&r) % 15) - 7.0f, -3);
    for (int rr = 0; rr < R; rr++) w[rr * C] = 448.0f / 8.0f;
    double e = rtn_error("fp8_e4m3", "", w, R, C, back);
    CHECK_MSG(e == 0.0, "fp8_e4m3: FP8 values come back with squared error %g", e);
}

/* Gaussian weights: nvfp4's tensor scale keeps the relative error the same
 * at any magnitude (UE4M3 block scales alone fall into its subnormals for
 * weights of ~1e-3); the mse search never loses to min-max */
static void test_gaussian(void) {
    enum { R = 32, C = 512 };
    float *w = malloc(R * C * sizeof(float)), *ws = malloc(R * C * sizeof(float)), *back = malloc(R * C * sizeof(float));
    lb_rng r;
    lb_rng_seed(&r, 7);
    for (int i = 0; i < R * C; i++) {
        w[i] = (float)lb_rng_normal(&r);
        ws[i] = w[i] * 1e-3f;
    }
    double a = rtn_error("nvfp4", "", w, R, C, back), b = rtn_error("nvfp4", "", ws, R, C, back) * 1e6;
    printf("  nvfp4 squared error, weights ~1: %.5g, ~1e-3 (rescaled): %.5g\n", a, b);
    CHECK_MSG(fabs(a - b) <= 0.01 * a, "nvfp4 at 1e-3: %g against %g at 1", b, a);
    static const char *specs[] = {"mxfp4", "nvfp4", "fp8_e4m3", "fp8_e5m2:g32"};
    for (size_t i = 0; i < 4; i++) {
        double mm = rtn_error(specs[i], "", w, R, C, back), mse = rtn_error(specs[i], "clip=mse", w, R, C, back);
        printf("  %-13s rtn squared error: min-max %.5g, mse %.5g\n", specs[i], mm, mse);
        CHECK_MSG(mse <= mm, "%s: mse %g above min-max %g", specs[i], mse, mm);
    }
    double mx = rtn_error("mxfp4", "clip=mse", w, R, C, back), nv = rtn_error("nvfp4", "clip=mse", w, R, C, back);
    CHECK_MSG(nv < mx, "nvfp4 %g not below mxfp4 %g (finer scales, smaller blocks)", nv, mx);
    free(w);
    free(ws);
    free(back);
}

int main(void) {
    test_spec();
    test_fp8_values();
    test_block_scales();
    test_exact();
    test_gaussian();
    return lb_test_finish("test_fp_formats");
}
