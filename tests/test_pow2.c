/* The power-of-two family (src/formats/pow2.c): spec text, sizes and bpw by
 * hand, bytes pinned for a hand-made group, round trips (encode / decode /
 * re-encode / reference dequantization) over widths, groups and odd row
 * lengths, and round-to-nearest through the generic codebook grid (exact on
 * grid points, clipping rules never worse than their promise). */
#include "test.h"
#include "format_check.h"

static void test_spec_text(void) {
    static const struct {
        const char *in, *out;
    } cases[] = {{"pow2", "pow2:4:g64"},   {"pow2:3:g32", "pow2:3:g32"}, {"pow2:5:row", "pow2:5:row"},
                 {"pow2:row:5", "pow2:5:row"}, {"pow2:g256", "pow2:4:g256"}, {"pow2:3", "pow2:3:g64"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[64];
        lb_qspec s = lb_test_spec(cases[i].in);
        lb_qspec_format(&s, buf, sizeof buf);
        CHECK_MSG(strcmp(buf, cases[i].out) == 0, "'%s' -> '%s', want '%s'", cases[i].in, buf, cases[i].out);
        CHECK(lb_format_grid(&s) == LB_GRID_ABSMAX && !lb_qspec_is_float(&s));
        CHECK(lb_format_ggml_type(&s, 4096) == -1); /* not a ggml type: stored raw */
    }
    lb_qspec s;
    CHECK_FAILS(lb_qspec_parse("pow2:2", &s), LB_ERR_INVALID, "3, 4 or 5 bits");
    CHECK_FAILS(lb_qspec_parse("pow2:6:g64", &s), LB_ERR_INVALID, "3, 4 or 5 bits");
    CHECK_FAILS(lb_qspec_parse("pow2:tensor", &s), LB_ERR_INVALID, "does not apply");
    CHECK_FAILS(lb_qspec_parse("pow2:3:5", &s), LB_ERR_INVALID, "conflicts with the bits");
    CHECK_FAILS(lb_qspec_parse("pow2:4:4", &s), LB_ERR_INVALID, "repeats");
    CHECK_FAILS(lb_qspec_parse("pow2:sym", &s), LB_ERR_INVALID, "does not apply to pow2");
    CHECK_FAILS(lb_qspec_parse("pow2:", &s), LB_ERR_INVALID, "empty option");
}

/* the codebook at scale 1: 0, +-2^-(m-1) */
static void test_levels(void) {
    lb_qspec s = lb_test_spec("pow2:4:g64");
    CHECK(lb_format_levels(&s) == 16);
    const float want[16] = {0, 1, 0.5f, 0.25f, 0.125f, 0.0625f, 0.03125f, 0.015625f,
                            0, -1, -0.5f, -0.25f, -0.125f, -0.0625f, -0.03125f, -0.015625f};
    for (int c = 0; c < 16; c++) CHECK_MSG(lb_format_level(&s, c) == want[c], "level %d", c);
    s = lb_test_spec("pow2:3");
    CHECK(lb_format_levels(&s) == 8 && lb_format_level(&s, 3) == 0.25f && lb_format_level(&s, 7) == -0.25f);
    s = lb_test_spec("pow2:5");
    CHECK(lb_format_levels(&s) == 32 && lb_format_level(&s, 15) == ldexpf(1, -14) && lb_format_level(&s, 17) == -1);
}

/* per group [scale fp16][G codes of b bits], counted by hand */
static void test_sizes(void) {
    static const struct {
        const char *spec;
        int64_t rows, cols;
        size_t bytes;
    } cases[] = {
        {"pow2:4:g64", 64, 64, 64 * (2 + 32)},        /* 4.25 bpw */
        {"pow2:3:g32", 2, 100, 2 * 4 * (2 + 12)},     /* 100 -> 128 padded: 4 groups */
        {"pow2:5:row", 3, 10, 3 * (2 + 16 * 5 / 8)},  /* rows pad to 8 weights: 16 */
        {"pow2:3:g16", 1, 16, 2 + 6},
        {"pow2:5:g256", 4, 256, 4 * (2 + 160)},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lb_qspec s = lb_test_spec(cases[i].spec);
        size_t total = 0;
        CHECK_OK(lb_format_size(&s, cases[i].rows, cases[i].cols, NULL, NULL, &total));
        CHECK_MSG(total == cases[i].bytes, "%s: %zu bytes, want %zu", cases[i].spec, total, cases[i].bytes);
    }
    lb_qspec s = lb_test_spec("pow2");
    CHECK_NEAR(lb_format_bpw(&s, 4096, 4096), 4.0 + 16.0 / 64, 1e-12);
    s = lb_test_spec("pow2:3:g32");
    CHECK_NEAR(lb_format_bpw(&s, 4096, 4096), 3.0 + 16.0 / 32, 1e-12);
}

/* one pow2:3:g16 group, scale 0.5, codes j % 8: 3-bit little-endian stream,
 * eight codes 0..7 = 0x88 0xc6 0xfa */
static void test_pinned_bytes(void) {
    lb_qspec s = lb_test_spec("pow2:3:g16");
    lb_qtensor q;
    CHECK_OK(lb_qtensor_init(&q, &s, 1, 16));
    for (int j = 0; j < 16; j++) q.codes[j] = (uint8_t)(j % 8);
    q.scale[0] = 0.5f;
    CHECK_OK(lb_qtensor_store_scales(&q));
    uint8_t bytes[8];
    CHECK_OK(lb_qtensor_encode(&q, bytes));
    const uint8_t want[8] = {0x00, 0x38, 0x88, 0xc6, 0xfa, 0x88, 0xc6, 0xfa};
    CHECK(memcmp(bytes, want, 8) == 0);
    lb_tensor t = {.spec = s, .rows = 1, .cols = 16, .data = bytes, .nbytes = 8};
    CHECK_OK(lb_tensor_resolve(&t));
    float out[16];
    const float value[8] = {0, 0.5f, 0.25f, 0.125f, 0, -0.5f, -0.25f, -0.125f};
    lb_dequantize_row(&t, 0, out);
    for (int j = 0; j < 16; j++) CHECK_MSG(out[j] == value[j % 8], "weight %d: %g", j, (double)out[j]);
    lb_qtensor_free(&q);
}

static void test_round_trips(void) {
    static const int64_t col_list[] = {1, 7, 16, 33, 64, 100, 172, 257, 300};
    static const char *groups[] = {"g16", "g32", "g64", "g128", "g256", "row"};
    lb_rng r;
    lb_rng_seed(&r, 77);
    char text[32];
    int cases = 0;
    for (int bits = 3; bits <= 5; bits++)
        for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
            snprintf(text, sizeof text, "pow2:%d:%s", bits, groups[g]);
            lb_qspec s = lb_test_spec(text);
            for (size_t c = 0; c < sizeof col_list / sizeof col_list[0]; c++, cases++) {
                int f = format_round_trip(&s, 3, col_list[c], &r);
                CHECK_MSG(f == 0, "%s with %lld columns: %d mismatches", text, (long long)col_list[c], f);
            }
        }
    printf("pow2 round trips: %d format/shape cases\n", cases);
}

static lb_status rtn(const float *w, int64_t rows, int64_t cols, const char *text, lb_clip clip, float *out) {
    lb_qspec s = lb_test_spec(text);
    lb_rtn_opts o;
    lb_rtn_opts_default(&o);
    o.clip = clip;
    lb_tensor t;
    lb_status st = lb_quantize_to_tensor(w, rows, cols, &s, &o, "w", &t);
    if (st != LB_OK) return st;
    st = lb_dequantize(&t, out);
    lb_tensor_free(&t);
    return st;
}

static double sq_err(const float *a, const float *b, int64_t n) {
    double e = 0;
    for (int64_t i = 0; i < n; i++) e += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return e;
}

/* RTN needs no pow2 case: the row's codebook grid gives absmax scaling,
 * nearest-level codes and the clipping rules */
static void test_rtn(void) {
    /* weights on the grid (absmax 3 = fp16 exact) come back exactly */
    float w[2 * 32], out[2 * 32];
    lb_qspec s = lb_test_spec("pow2:4:g32");
    for (int i = 0; i < 64; i++) w[i] = 3.0f * lb_format_level(&s, (i * 7) % 16);
    w[5] = 3.0f;
    w[40] = -3.0f;
    CHECK_OK(rtn(w, 2, 32, "pow2:4:g32", LB_CLIP_MINMAX, out));
    CHECK(sq_err(w, out, 64) == 0.0);
    /* Gaussian weights: every rule runs; mse is never worse than minmax
     * (minmax's grid is its first candidate) */
    enum { R = 16, C = 256 };
    static float g[R * C], o1[R * C], o2[R * C];
    lb_rng r;
    lb_rng_seed(&r, 9);
    for (int i = 0; i < R * C; i++) g[i] = 0.02f * (float)lb_rng_normal(&r);
    double energy = 0;
    for (int i = 0; i < R * C; i++) energy += (double)g[i] * g[i];
    static const char *specs[] = {"pow2:3:g32", "pow2:4:g64", "pow2:5:row"};
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        CHECK_OK(rtn(g, R, C, specs[i], LB_CLIP_MINMAX, o1));
        CHECK_OK(rtn(g, R, C, specs[i], LB_CLIP_MSE, o2));
        double e_minmax = sq_err(g, o1, R * C), e_mse = sq_err(g, o2, R * C);
        CHECK_MSG(e_mse <= e_minmax, "%s: mse %g > minmax %g", specs[i], e_mse, e_minmax);
        CHECK_MSG(e_minmax < 0.25 * energy, "%s: relative error %g", specs[i], e_minmax / energy);
        CHECK_OK(rtn(g, R, C, specs[i], LB_CLIP_ACIQ, o2));
        printf("%s: relative squared error minmax %.4f, mse %.4f\n", specs[i], e_minmax / energy, e_mse / energy);
    }
}

int main(void) {
    test_spec_text();
    test_levels();
    test_sizes();
    test_pinned_bytes();
    test_round_trips();
    test_rtn();
    return lb_test_finish("test_pow2");
}
