/* llama.cpp's ternary TQ1_0 and TQ2_0 written by lowbit (src/formats/tq.c):
 * spec text and sizes (ggml's 54- and 66-byte blocks), round trips of random
 * trits (tq1_0's base-3 bytes decode to the digits encoded), weights that
 * are d t per block come back exactly from twn (its alpha is the mean |w|
 * above the threshold: d), and the fallback for rows that are not whole
 * blocks. The bytes against llama.cpp's to_float: docs/RESULTS.md. */
#include "format_check.h"
#include "test.h"

static void test_spec(void) {
    static const struct {
        const char *name;
        int ggml, bytes;
        double bpw;
    } t[] = {{"tq1_0", 34, 54, 1.6875}, {"tq2_0", 35, 66, 2.0625}};
    lb_rng r;
    lb_rng_seed(&r, 11);
    for (int i = 0; i < 2; i++) {
        lb_qspec s, back, fb;
        char text[32];
        CHECK_OK(lb_qspec_parse(t[i].name, &s));
        lb_qspec_format(&s, text, sizeof text);
        CHECK(!strcmp(text, t[i].name) && lb_format_grid(&s) == LB_GRID_TERNARY && lb_format_levels(&s) == 3);
        CHECK_OK(lb_qspec_from_ggml_type(t[i].ggml, &back));
        CHECK(lb_qspec_equal(&s, &back));
        size_t rb;
        CHECK_OK(lb_format_size(&s, 2, 512, &rb, NULL, NULL));
        CHECK(rb == 2 * (size_t)t[i].bytes && lb_format_ggml_type(&s, 512) == t[i].ggml);
        CHECK(lb_format_ggml_type(&s, 96) == -1);
        CHECK_NEAR(lb_format_bpw(&s, 3, 256), t[i].bpw, 1e-12);
        CHECK(!lb_format_ggml_fallback(&s, 512, &fb));
        CHECK(lb_format_ggml_fallback(&s, 96, &fb) && lb_format_ggml_type(&fb, 96) == 2); /* q4_0 */
        CHECK(lb_format_ggml_fallback(&s, 100, &fb) && fb.family == LB_FAMILY_F16);
        static const int64_t cols[] = {1, 256, 300, 768};
        for (size_t c = 0; c < sizeof cols / sizeof cols[0]; c++) {
            int f = format_round_trip(&s, 3, cols[c], &r);
            CHECK_MSG(f == 0, "%s with %lld columns: %d mismatches", t[i].name, (long long)cols[c], f);
        }
        CHECK_FAILS(lb_qspec_parse("tq2_0:g64", &s), LB_ERR_INVALID, "g64");
    }
}

static void test_exact(void) {
    enum { R = 5, C = 512 };
    float w[R * C], back[R * C];
    lb_rng r;
    lb_rng_seed(&r, 13);
    for (int b = 0; b < R * C / 256; b++) {
        float d = (float)(1 + lb_rng_u32(&r) % 100) / 512.0f;
        for (int j = 0; j < 256; j++) w[b * 256 + j] = d * (float)((int)(lb_rng_u32(&r) % 3) - 1);
        w[b * 256] = d; /* no all-zero block */
    }
    for (int i = 0; i < 2; i++) {
        lb_qspec s = lb_test_spec(i ? "tq2_0" : "tq1_0");
        lb_method_opts o;
        CHECK_OK(lb_test_method_opts(lb_method_find("twn"), "", &o));
        lb_tensor t;
        CHECK_OK(lb_quantize_tensor(lb_method_find("twn"), &o, NULL, w, R, C, &s, "w", &t));
        CHECK_OK(lb_dequantize(&t, back));
        int bad = 0;
        for (int k = 0; k < R * C; k++) bad += back[k] != w[k];
        CHECK_MSG(bad == 0, "%s: %d ternary weights come back changed", i ? "tq2_0" : "tq1_0", bad);
        lb_tensor_free(&t);
        /* rtn (absmean, BitNet's rule) runs and keeps the signs of the large weights */
        CHECK_OK(lb_test_method_opts(lb_method_find("rtn"), "", &o));
        CHECK_OK(lb_quantize_tensor(lb_method_find("rtn"), &o, NULL, w, R, C, &s, "w", &t));
        CHECK_OK(lb_dequantize(&t, back));
        bad = 0;
        for (int k = 0; k < R * C; k++) bad += (w[k] > 0 && back[k] <= 0) || (w[k] < 0 && back[k] >= 0);
        CHECK_MSG(bad == 0, "%s rtn: %d signs lost", i ? "tq2_0" : "tq1_0", bad);
        lb_tensor_free(&t);
    }
}

int main(void) {
    test_spec();
    test_exact();
    return lb_test_finish("test_tq");
}
