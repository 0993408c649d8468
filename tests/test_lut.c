/* The lut<b> family (src/formats/lut.c): spec text, sizes and bpw by hand,
 * bytes pinned for hand-made groups (per-group and per-tensor codebooks),
 * round trips over widths, groups and odd row lengths, corrupt codebooks
 * (NaN, Inf, out of order) refused wherever bytes come in, and round-to-
 * nearest = unweighted k-means (exact on groups with at most 2^b values). */
#include "test.h"
#include "format_check.h"

static void test_spec_text(void) {
    static const struct {
        const char *in, *out;
    } cases[] = {{"lut3", "lut3:row"},       {"lut2:g64", "lut2:g64"}, {"lut4:tensor", "lut4:tensor"},
                 {"lut1:row", "lut1:row"},   {"lut4:g16", "lut4:g16"}, {"lut3:g256", "lut3:g256"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[64];
        lb_qspec s = lb_test_spec(cases[i].in);
        lb_qspec_format(&s, buf, sizeof buf);
        CHECK_MSG(strcmp(buf, cases[i].out) == 0, "'%s' -> '%s', want '%s'", cases[i].in, buf, cases[i].out);
        CHECK(lb_format_grid(&s) == LB_GRID_LUT && !lb_qspec_is_float(&s));
        CHECK(lb_format_ggml_type(&s, 4096) == -1); /* not a ggml type: stored raw */
        CHECK(!strcmp(lb_format_family_name(&s), "lut"));
    }
    CHECK(lb_format_family_find("lut2") == lb_test_spec("lut2").family);
    lb_qspec s;
    CHECK_FAILS(lb_qspec_parse("lut5", &s), LB_ERR_INVALID, "b = 1..4");
    CHECK_FAILS(lb_qspec_parse("lut0", &s), LB_ERR_INVALID, "b = 1..4");
    CHECK_FAILS(lb_qspec_parse("lut", &s), LB_ERR_INVALID, "b = 1..4");
    CHECK_FAILS(lb_qspec_parse("lut3:g48", &s), LB_ERR_INVALID, "not a power of two");
    CHECK_FAILS(lb_qspec_parse("lut3:g8", &s), LB_ERR_INVALID, "not a power of two");
    CHECK_FAILS(lb_qspec_parse("lut3:g64:row", &s), LB_ERR_INVALID, "conflicts with the group size");
    CHECK_FAILS(lb_qspec_parse("lut3:row:row", &s), LB_ERR_INVALID, "repeats");
    CHECK_FAILS(lb_qspec_parse("lut3:sym", &s), LB_ERR_INVALID, "does not apply to lut3");
    CHECK_FAILS(lb_qspec_parse("lut3:4", &s), LB_ERR_INVALID, "does not apply");
    CHECK_FAILS(lb_qspec_parse("lut3:", &s), LB_ERR_INVALID, "empty option");
    /* a spec built by hand */
    s = lb_test_spec("lut2");
    s.bits = 5;
    CHECK_FAILS(lb_qspec_validate(&s), LB_ERR_INVALID, "1..4 bits");
}

/* per group [2^b fp16 levels][G codes of b bits]; tensor: codes, then the
 * levels as the tail; counted by hand */
static void test_sizes(void) {
    static const struct {
        const char *spec;
        int64_t rows, cols;
        size_t bytes;
    } cases[] = {
        {"lut3:row", 2, 64, 2 * (16 + 24)},        /* 5 bpw: 3 + 16 * 8 / 64 */
        {"lut3:row", 3, 172, 3 * (16 + 66)},       /* 172 -> 176 padded */
        {"lut2:g32", 3, 100, 3 * 4 * (8 + 8)},     /* 100 -> 128 padded: 4 groups */
        {"lut4:tensor", 5, 10, 5 * 8 + 32},        /* rows pad to 16 weights; 16 levels in the tail */
        {"lut1:g16", 1, 16, 4 + 2},
        {"lut4:g256", 2, 256, 2 * (32 + 128)},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lb_qspec s = lb_test_spec(cases[i].spec);
        size_t total = 0, tail = 1;
        CHECK_OK(lb_format_size(&s, cases[i].rows, cases[i].cols, NULL, &tail, &total));
        CHECK_MSG(total == cases[i].bytes, "%s: %zu bytes, want %zu", cases[i].spec, total, cases[i].bytes);
        CHECK(tail == (s.group == LB_GROUP_TENSOR ? 32u : 0u));
    }
    lb_qspec s = lb_test_spec("lut3:g64");
    CHECK_NEAR(lb_format_bpw(&s, 4096, 4096), 3.0 + 16.0 * 8 / 64, 1e-12);
    s = lb_test_spec("lut4");
    CHECK_NEAR(lb_format_bpw(&s, 4096, 4096), 4.0 + 16.0 * 16 / 4096, 1e-12);
    s = lb_test_spec("lut2:tensor");
    CHECK_NEAR(lb_format_bpw(&s, 4096, 4096), 2.0 + 16.0 * 4 / (4096.0 * 4096), 1e-12);
}

/* lut2:g16, one group: levels -1, -0.25, 0.5, 2 (fp16 0xbc00 0xb400 0x3800
 * 0x4000, little-endian), codes j % 4: each byte 0 | 1 << 2 | 2 << 4 | 3 << 6 */
static const uint8_t group_bytes[12] = {0x00, 0xbc, 0x00, 0xb4, 0x00, 0x38, 0x00, 0x40, 0xe4, 0xe4, 0xe4, 0xe4};
/* lut1:tensor, 2 x 5: rows of 8 padded codes (1 byte each), levels -0.5,
 * 0.75 in the tail. Codes 1 0 1 1 0 -> 0x0d, 0 1 1 0 1 -> 0x16 */
static const uint8_t tensor_bytes[6] = {0x0d, 0x16, 0x00, 0xb8, 0x00, 0x3a};

static void test_pinned_bytes(void) {
    lb_qspec s = lb_test_spec("lut2:g16");
    lb_qtensor q;
    CHECK_OK(lb_qtensor_init(&q, &s, 1, 16));
    CHECK(q.lut != NULL && q.n_groups == 1);
    const float lv[4] = {-1.0f, -0.25f, 0.5f, 2.0f};
    for (int c = 0; c < 4; c++) q.lut[c] = lv[c];
    for (int j = 0; j < 16; j++) q.codes[j] = (uint8_t)(j % 4);
    CHECK_OK(lb_qtensor_store_scales(&q));
    uint8_t bytes[12];
    CHECK_OK(lb_qtensor_encode(&q, bytes));
    CHECK(memcmp(bytes, group_bytes, 12) == 0);
    lb_tensor t = {.spec = s, .rows = 1, .cols = 16, .data = bytes, .nbytes = 12};
    CHECK_OK(lb_tensor_resolve(&t));
    float out[16];
    lb_dequantize_row(&t, 0, out);
    for (int j = 0; j < 16; j++) CHECK_MSG(out[j] == lv[j % 4], "weight %d: %g", j, (double)out[j]);
    CHECK(lb_qtensor_value(&q, 0, 5) == -0.25f);
    /* nearest: 0.125 is 0.375 from both -0.25 and 0.5: the lower code */
    CHECK(lb_qtensor_nearest_code(&q, 0, 0.125f) == 1 && lb_qtensor_nearest_code(&q, 0, 0.13f) == 2);
    CHECK(lb_qtensor_nearest_code(&q, 0, -7.0f) == 0 && lb_qtensor_nearest_code(&q, 0, 7.0f) == 3);
    lb_qtensor_free(&q);

    s = lb_test_spec("lut1:tensor");
    CHECK_OK(lb_qtensor_init(&q, &s, 2, 5));
    CHECK(q.n_groups == 1 && q.groups_per_row == 0);
    q.lut[0] = -0.5f;
    q.lut[1] = 0.75f;
    const uint8_t codes[2][5] = {{1, 0, 1, 1, 0}, {0, 1, 1, 0, 1}};
    for (int r = 0; r < 2; r++)
        for (int c = 0; c < 5; c++) q.codes[r * q.cols_padded + c] = codes[r][c];
    CHECK_OK(lb_qtensor_store_scales(&q));
    uint8_t tb[6];
    CHECK_OK(lb_qtensor_encode(&q, tb));
    CHECK(memcmp(tb, tensor_bytes, 6) == 0);
    lb_tensor t2 = {.spec = s, .rows = 2, .cols = 5, .data = tb, .nbytes = 6};
    CHECK_OK(lb_tensor_resolve(&t2));
    float o2[10];
    CHECK_OK(lb_dequantize(&t2, o2));
    for (int i = 0; i < 10; i++) CHECK(o2[i] == (codes[i / 5][i % 5] ? 0.75f : -0.5f));
    lb_qtensor_free(&q);
}

static void test_round_trips(void) {
    static const int64_t col_list[] = {1, 7, 16, 33, 64, 100, 172, 257, 300};
    static const char *groups[] = {"g16", "g32", "g64", "g128", "g256", "row", "tensor"};
    lb_rng r;
    lb_rng_seed(&r, 78);
    char text[32];
    int cases = 0;
    for (int bits = 1; bits <= 4; bits++)
        for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
            snprintf(text, sizeof text, "lut%d:%s", bits, groups[g]);
            lb_qspec s = lb_test_spec(text);
            for (size_t c = 0; c < sizeof col_list / sizeof col_list[0]; c++, cases++) {
                int f = format_round_trip(&s, 3, col_list[c], &r);
                CHECK_MSG(f == 0, "%s with %lld columns: %d mismatches", text, (long long)col_list[c], f);
            }
        }
    printf("lut round trips: %d format/shape cases\n", cases);
}

/* a copy of bytes with the fp16 at byte offset `at` replaced */
static lb_status resolve_with(const char *spec, int64_t rows, int64_t cols, const uint8_t *good, size_t n, size_t at,
                              uint16_t half, uint8_t *buf) {
    memcpy(buf, good, n);
    buf[at] = (uint8_t)(half & 0xff);
    buf[at + 1] = (uint8_t)(half >> 8);
    lb_tensor t = {.spec = lb_test_spec(spec), .rows = rows, .cols = cols, .data = buf, .nbytes = n};
    snprintf(t.name, sizeof t.name, "w");
    return lb_tensor_resolve(&t);
}

/* Levels must be finite and ascending: anything else is corrupt, refused
 * when a tensor gets its bytes (every load), by decode, by encode and by
 * store_scales. Equal neighbours are fine. */
static void test_corrupt_levels(void) {
    uint8_t buf[12];
    CHECK_FAILS(resolve_with("lut2:g16", 1, 16, group_bytes, 12, 0, 0x7e00, buf), LB_ERR_FORMAT,
                "row 0, group 0, level 0 is nan");
    CHECK_FAILS(resolve_with("lut2:g16", 1, 16, group_bytes, 12, 6, 0x7c00, buf), LB_ERR_FORMAT, "level 3 is inf");
    CHECK_FAILS(resolve_with("lut2:g16", 1, 16, group_bytes, 12, 4, 0xfc00, buf), LB_ERR_FORMAT, "level 2 is -inf");
    /* level 2 = -0.5 < level 1 = -0.25 */
    CHECK_FAILS(resolve_with("lut2:g16", 1, 16, group_bytes, 12, 4, 0xb800, buf), LB_ERR_FORMAT,
                "level 2 is -0.5 (below the level before it)");
    /* the message names the tensor */
    CHECK(strstr(lb_last_error(), "tensor 'w'") != NULL);
    CHECK_OK(resolve_with("lut2:g16", 1, 16, group_bytes, 12, 4, 0xb400, buf)); /* level 2 = level 1: allowed */
    CHECK_FAILS(resolve_with("lut1:tensor", 2, 5, tensor_bytes, 6, 4, 0xbc00, buf), LB_ERR_FORMAT,
                "the tensor's codebook, level 1 is -1");

    /* decode refuses the same bytes */
    lb_qspec s = lb_test_spec("lut2:g16");
    lb_qtensor q;
    CHECK_OK(lb_qtensor_init(&q, &s, 1, 16));
    memcpy(buf, group_bytes, 12);
    buf[1] = 0x7e;
    CHECK_FAILS(lb_qtensor_decode(&q, buf, 12), LB_ERR_FORMAT, "finite and ascending");
    CHECK_OK(lb_qtensor_decode(&q, group_bytes, 12));
    CHECK(q.lut[0] == -1.0f && q.lut[3] == 2.0f && q.codes[7] == 3);
    /* encode refuses a codebook a method got wrong */
    q.lut[1] = 1.0f;
    CHECK_FAILS(lb_qtensor_encode(&q, buf), LB_ERR_INVALID, "below the level before it");
    q.lut[1] = NAN;
    CHECK_FAILS(lb_qtensor_encode(&q, buf), LB_ERR_INVALID, "not finite");
    /* store_scales: rounding to fp16 must stay finite, and levels ascend */
    q.lut[1] = 1e6f;
    CHECK_FAILS(lb_qtensor_store_scales(&q), LB_ERR_NUMERIC, "not finite in fp16");
    q.lut[1] = 1.0f;
    CHECK_FAILS(lb_qtensor_store_scales(&q), LB_ERR_INVALID, "levels ascend");
    q.lut[1] = 0.1f;
    CHECK_OK(lb_qtensor_store_scales(&q));
    CHECK(q.lut[1] == lb_round_fp16(0.1f));
    lb_qtensor_free(&q);
}

static lb_status rtn(const float *w, int64_t rows, int64_t cols, const char *text, float *out) {
    lb_qspec s = lb_test_spec(text);
    lb_tensor t;
    lb_status st = lb_quantize_to_tensor(w, rows, cols, &s, NULL, "w", &t);
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

/* RTN for lut is unweighted k-means: groups with at most 2^b distinct
 * values come back exactly; on Gaussian weights the fitted levels beat the
 * uniform min-max grid of as many levels (same group size) */
static void test_rtn(void) {
    enum { R = 16, C = 256 };
    static float w[R * C], out[R * C], o2[R * C];
    lb_rng r;
    lb_rng_seed(&r, 21);
    static const char *specs[] = {"lut1:g16", "lut2:g32", "lut3:row", "lut4:g64", "lut3:tensor", "lut2:g16"};
    for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++) {
        lb_qspec s = lb_test_spec(specs[k]);
        int levels = lb_format_levels(&s), distinct = k == 4 ? levels : 1 + (int)k % levels; /* up to 2^b */
        float vals[16];
        for (int j = 0; j < distinct; j++) vals[j] = lb_round_fp16((float)lb_rng_normal(&r));
        for (int i = 0; i < R * C; i++) w[i] = vals[lb_rng_u32(&r) % (uint32_t)distinct];
        CHECK_OK(rtn(w, R, C, specs[k], out));
        CHECK_MSG(sq_err(w, out, R * C) == 0.0, "%s: %d values not recovered", specs[k], distinct);
    }
    lb_rtn_opts o;
    lb_rtn_opts_default(&o);
    o.clip = LB_CLIP_MSE;
    lb_qspec s = lb_test_spec("lut3");
    lb_tensor t;
    CHECK_FAILS(lb_quantize_to_tensor(w, R, C, &s, &o, "w", &t), LB_ERR_INVALID, "their scale by their own rule");

    for (int i = 0; i < R * C; i++) w[i] = 0.02f * (float)lb_rng_normal(&r);
    double energy = 0;
    for (int i = 0; i < R * C; i++) energy += (double)w[i] * w[i];
    static const struct {
        const char *lut, *uniform;
    } pairs[] = {{"lut2:g64", "int2:g64:asym"}, {"lut3:g64", "int3:g64:asym"}, {"lut4:row", "int4:row:asym"}};
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
        CHECK_OK(rtn(w, R, C, pairs[k].lut, out));
        CHECK_OK(rtn(w, R, C, pairs[k].uniform, o2));
        double el = sq_err(w, out, R * C), eu = sq_err(w, o2, R * C);
        printf("%s: relative squared error %.4f (%s %.4f)\n", pairs[k].lut, el / energy, pairs[k].uniform, eu / energy);
        CHECK_MSG(el < eu, "%s %g >= %s %g", pairs[k].lut, el, pairs[k].uniform, eu);
    }
}

int main(void) {
    test_spec_text();
    test_sizes();
    test_pinned_bytes();
    test_round_trips();
    test_corrupt_levels();
    test_rtn();
    return lb_test_finish("test_lut");
}
