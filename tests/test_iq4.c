/* llama.cpp's IQ4_NL and IQ4_XS written by lowbit (src/formats/iq4.c): spec
 * text and sizes (ggml's 18- and 136-byte blocks), round trips, weights on
 * the table come back exactly from RTN whichever the sign of their extreme
 * (the lopsided table's -127 end takes it, with a negative scale for a
 * positive extreme; iq4_xs: under each block's d and 6-bit group integers),
 * and on Gaussian weights the table beats the uniform 4-bit grid of the
 * same size (q4_0), its reason to exist, and iq4_xs stays near iq4_nl. The layout against ggml's block definition:
 * tests/test_ggml_read.c; against llama.cpp's to_float: docs/RESULTS.md. */
#include "format_check.h"
#include "test.h"

static const int K[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

static void test_spec(void) {
    lb_qspec s, back;
    char text[32];
    CHECK_OK(lb_qspec_parse("iq4_nl", &s));
    lb_qspec_format(&s, text, sizeof text);
    CHECK(!strcmp(text, "iq4_nl") && lb_format_grid(&s) == LB_GRID_ABSMAX && lb_format_levels(&s) == 16);
    CHECK_OK(lb_qspec_from_ggml_type(20, &back));
    CHECK(lb_qspec_equal(&s, &back));
    size_t rb;
    CHECK_OK(lb_format_size(&s, 2, 96, &rb, NULL, NULL));
    CHECK(rb == 3 * 18 && lb_format_ggml_type(&s, 96) == 20 && lb_format_ggml_type(&s, 100) == -1);
    CHECK_NEAR(lb_format_bpw(&s, 4, 64), 4.5, 1e-12);
    CHECK_FAILS(lb_qspec_parse("iq4_nl:g64", &s), LB_ERR_INVALID, "g64");
    CHECK_OK(lb_qspec_parse("iq4_xs", &s));
    lb_qspec_format(&s, text, sizeof text);
    CHECK(!strcmp(text, "iq4_xs") && lb_format_grid(&s) == LB_GRID_ABSMAX && s.scale_bits == 6);
    CHECK_OK(lb_qspec_from_ggml_type(23, &back));
    CHECK(lb_qspec_equal(&s, &back));
    CHECK_OK(lb_format_size(&s, 2, 512, &rb, NULL, NULL));
    CHECK(rb == 2 * 136 && lb_format_ggml_type(&s, 512) == 23 && lb_format_ggml_type(&s, 96) == -1);
    CHECK_NEAR(lb_format_bpw(&s, 4, 256), 4.25, 1e-12);
    lb_qspec fb;
    CHECK(!lb_format_ggml_fallback(&s, 768, &fb));
    CHECK(lb_format_ggml_fallback(&s, 96, &fb) && lb_format_ggml_type(&fb, 96) == 20);
    CHECK(lb_format_ggml_fallback(&s, 100, &fb) && fb.family == LB_FAMILY_F16);
    lb_rng r;
    lb_rng_seed(&r, 3);
    static const int64_t cols[] = {1, 32, 100, 256, 300};
    for (int x = 0; x < 2; x++)
        for (size_t c = 0; c < sizeof cols / sizeof cols[0]; c++) {
            CHECK_OK(lb_qspec_parse(x ? "iq4_xs" : "iq4_nl", &s));
            int f = format_round_trip(&s, 4, cols[c], &r);
            CHECK_MSG(f == 0, "%s with %lld columns: %d mismatches", x ? "iq4_xs" : "iq4_nl", (long long)cols[c], f);
        }
}

/* every group d K[q] with q = 0 present (the extreme, -127 d) and d of
 * either sign, fp16-exact: rtn (min-max) gives back every weight */
static void test_exact(void) {
    enum { R = 6, C = 96 };
    float w[R * C], back[R * C];
    lb_rng r;
    lb_rng_seed(&r, 5);
    for (int k = 0; k < R * C / 32; k++) {
        float d = (float)(1 + lb_rng_u32(&r) % 64) / 1024.0f * (k % 2 ? -1.0f : 1.0f);
        for (int j = 0; j < 32; j++) w[k * 32 + j] = d * (float)K[j == 3 ? 0 : 1 + lb_rng_u32(&r) % 15];
    }
    lb_qspec s = lb_test_spec("iq4_nl");
    lb_method_opts o;
    CHECK_OK(lb_test_method_opts(lb_method_find("rtn"), "", &o));
    lb_tensor t;
    CHECK_OK(lb_quantize_tensor(lb_method_find("rtn"), &o, NULL, w, R, C, &s, "w", &t));
    CHECK_OK(lb_dequantize(&t, back));
    int bad = 0;
    for (int i = 0; i < R * C; i++) bad += back[i] != w[i];
    CHECK_MSG(bad == 0, "%d weights on the table come back changed", bad);
    lb_tensor_free(&t);
    /* iq4_xs: per 256-block d, per group (ls - 32) d K[q]; one group of each
     * block at ls - 32 = -32 (the block's extreme integer) holds the extreme */
    enum { C2 = 512 };
    float w2[R * C2], back2[R * C2];
    for (int b = 0; b < R * C2 / 256; b++) {
        float d = (float)(1 + lb_rng_u32(&r) % 64) / 4096.0f * (b % 2 ? -1.0f : 1.0f);
        for (int g = 0; g < 8; g++) {
            int sc = g == b % 8 ? -32 : (int)(lb_rng_u32(&r) % 63) - 31;
            if (sc == 0) sc = 5;
            for (int j = 0; j < 32; j++)
                w2[b * 256 + g * 32 + j] = (d * (float)sc) * (float)K[j == 7 ? 0 : 1 + lb_rng_u32(&r) % 15];
        }
    }
    for (int m = 0; m < 2; m++) {
        s = lb_test_spec("iq4_xs");
        CHECK_OK(lb_test_method_opts(lb_method_find("rtn"), m ? "clip=mse" : "", &o));
        CHECK_OK(lb_quantize_tensor(lb_method_find("rtn"), &o, NULL, w2, R, C2, &s, "w", &t));
        CHECK_OK(lb_dequantize(&t, back2));
        bad = 0;
        for (int i = 0; i < R * C2; i++) bad += back2[i] != w2[i];
        CHECK_MSG(bad == 0, "iq4_xs %s: %d weights on the lattice come back changed", m ? "mse" : "min-max", bad);
        lb_tensor_free(&t);
    }
}

static double rtn_error(const char *spec, const char *clip, const float *w, int64_t rows, int64_t cols) {
    lb_qspec s = lb_test_spec(spec);
    lb_method_opts o;
    lb_tensor t;
    float *back = malloc((size_t)(rows * cols) * sizeof(float));
    double err = 0;
    if (lb_test_method_opts(lb_method_find("rtn"), clip, &o) != LB_OK ||
        lb_quantize_tensor(lb_method_find("rtn"), &o, NULL, w, rows, cols, &s, "w", &t) != LB_OK ||
        lb_dequantize(&t, back) != LB_OK)
        err = NAN;
    else
        lb_tensor_free(&t);
    for (int64_t i = 0; i < rows * cols; i++) err += ((double)w[i] - back[i]) * ((double)w[i] - back[i]);
    free(back);
    return err;
}

static void test_gaussian(void) {
    enum { R = 32, C = 256 };
    float *w = malloc(R * C * sizeof(float));
    lb_rng r;
    lb_rng_seed(&r, 7);
    for (int i = 0; i < R * C; i++) w[i] = (float)lb_rng_normal(&r);
    for (int m = 0; m < 2; m++) {
        const char *clip = m ? "clip=mse" : "";
        double a = rtn_error("iq4_nl", clip, w, R, C), b = rtn_error("q4_0", clip, w, R, C);
        printf("  Gaussian, rtn %s: iq4_nl squared error %.4g, q4_0 %.4g (ratio %.3f)\n", m ? "mse" : "min-max", a, b,
               a / b);
        CHECK_MSG(a < 0.9 * b, "iq4_nl %g against q4_0 %g", a, b);
        double x = rtn_error("iq4_xs", clip, w, R, C);
        printf("  iq4_xs (4.25 bpw) %.4g: %.3f of iq4_nl's (4.5 bpw)\n", x, x / a);
        CHECK_MSG(x < 1.1 * a, "iq4_xs %g against iq4_nl %g", x, a);
    }
    free(w);
}

int main(void) {
    test_spec();
    test_exact();
    test_gaussian();
    return lb_test_finish("test_iq4");
}
