/* Formats: spec text, sizes and bpw against hand counts, pack/unpack round
 * trips for every family, width, group size and odd row length, and ggml
 * layouts checked against ggml's block definitions written out by hand. */
#include "test.h"
#include "format_check.h"

static void test_spec_text(void) {
    static const char *canon[] = {"f32", "f16", "bf16", "int4:g64:asym", "int3:g128:sym", "int2:row:asym:zint",
                                  "int8:g32:sym", "int1:g16:asym", "nf4:g64", "nf4:g128:dq", "binary:row",
                                  "binary:g32", "binary:tensor", "ternary:row:1.6bit",
                                  "ternary:g64:2bit", "ternary:tensor:2bit", "int5:g256:asym:zint",
                                  "trellis2:L12:row", "trellis3:L15:g64", "trellis1:L16:tensor",
                                  "trellis2:L12:row:down", "trellis2:L12:row:s6",
                                  "trellis1:L12:row:v2", "trellis5:L15:g64:down:s6:v2"};
    for (size_t i = 0; i < sizeof canon / sizeof canon[0]; i++) {
        char buf[64];
        lb_qspec s = lb_test_spec(canon[i]);
        lb_qspec_format(&s, buf, sizeof buf);
        CHECK_MSG(strcmp(buf, canon[i]) == 0, "'%s' prints as '%s'", canon[i], buf);
    }
    static const struct {
        const char *in, *out;
    } alias[] = {{"int4", "int4:g64:asym"},
                 {"q4_0", "int4:g32:sym"},
                 {"q4_1", "int4:g32:asym"},
                 {"q8_0", "int8:g32:sym"},
                 {"int2:g64:zint", "int2:g64:asym:zint"},
                 {"int3:sym:g16", "int3:g16:sym"},
                 {"ternary", "ternary:row:1.6bit"},
                 {"ternary:2bit:g32", "ternary:g32:2bit"},
                 {"binary", "binary:row"},
                 {"nf4", "nf4:g64"},
                 {"trellis4", "trellis4:L12:row"},
                 {"trellis2:g32:L16", "trellis2:L16:g32"},
                 {"trellis2:s6:down", "trellis2:L12:row:down:s6"},
                 {"trellis5:v2", "trellis5:L15:row:v2"}, /* L defaults to 15 where 5 does not divide 12 */
                 {"trellis3:v2:down:L6", "trellis3:L6:row:down:v2"}};
    for (size_t i = 0; i < sizeof alias / sizeof alias[0]; i++) {
        char buf[64];
        lb_qspec s = lb_test_spec(alias[i].in);
        lb_qspec_format(&s, buf, sizeof buf);
        CHECK_MSG(strcmp(buf, alias[i].out) == 0, "'%s' -> '%s', want '%s'", alias[i].in, buf, alias[i].out);
    }
    lb_qspec s;
    CHECK_FAILS(lb_qspec_parse("int9", &s), LB_ERR_INVALID, "1 to 8 bits");
    CHECK_FAILS(lb_qspec_parse("int0:g64", &s), LB_ERR_INVALID, "1 to 8 bits");
    CHECK_FAILS(lb_qspec_parse("int4:g0", &s), LB_ERR_INVALID, "not a power of two");
    CHECK_FAILS(lb_qspec_parse("int4:g48", &s), LB_ERR_INVALID, "not a power of two");
    CHECK_FAILS(lb_qspec_parse("int4:g512", &s), LB_ERR_INVALID, "not a power of two");
    CHECK_FAILS(lb_qspec_parse("int4:g8", &s), LB_ERR_INVALID, "not a power of two");
    CHECK_FAILS(lb_qspec_parse("int4:g-32", &s), LB_ERR_INVALID, "does not apply");
    CHECK_FAILS(lb_qspec_parse("fp4", &s), LB_ERR_INVALID, "unknown format 'fp4'");
    CHECK_FAILS(lb_qspec_parse("", &s), LB_ERR_INVALID, "empty");
    CHECK_FAILS(lb_qspec_parse("int4:g64:dq", &s), LB_ERR_INVALID, "'dq' does not apply to int4");
    CHECK_FAILS(lb_qspec_parse("nf4:sym", &s), LB_ERR_INVALID, "does not apply");
    CHECK_FAILS(lb_qspec_parse("int4:tensor", &s), LB_ERR_INVALID, "does not apply");
    CHECK_FAILS(lb_qspec_parse("int4:sym:zint", &s), LB_ERR_INVALID, "no zero point");
    CHECK_FAILS(lb_qspec_parse("int4:sym:asym", &s), LB_ERR_INVALID, "both sym and asym");
    CHECK_FAILS(lb_qspec_parse("int1:sym", &s), LB_ERR_INVALID, "binary");
    CHECK_FAILS(lb_qspec_parse("f16:g32", &s), LB_ERR_INVALID, "takes no options");
    CHECK_FAILS(lb_qspec_parse("ternary:3bit", &s), LB_ERR_INVALID, "does not apply");
    /* the ternary rounding rule is the method's now, not the format's */
    CHECK_FAILS(lb_qspec_parse("ternary:twn:g64", &s), LB_ERR_INVALID, "use --method twn");
    CHECK_FAILS(lb_qspec_parse("ternary:absmean:row:1.6bit", &s), LB_ERR_INVALID, "method choice");
    /* empty, repeated and conflicting options */
    CHECK_FAILS(lb_qspec_parse("int4:", &s), LB_ERR_INVALID, "empty option");
    CHECK_FAILS(lb_qspec_parse("int4::g64", &s), LB_ERR_INVALID, "empty option");
    CHECK_FAILS(lb_qspec_parse(":int4", &s), LB_ERR_INVALID, "no family name");
    CHECK_FAILS(lb_qspec_parse("nf4:g64:", &s), LB_ERR_INVALID, "empty option");
    CHECK_FAILS(lb_qspec_parse("int4:g64:sym:sym", &s), LB_ERR_INVALID, "'sym' in 'int4:g64:sym:sym' repeats");
    CHECK_FAILS(lb_qspec_parse("int4:g32:g64", &s), LB_ERR_INVALID, "conflicts with the group size");
    CHECK_FAILS(lb_qspec_parse("int4:row:g64", &s), LB_ERR_INVALID, "conflicts with the group size");
    CHECK_FAILS(lb_qspec_parse("nf4:dq:dq", &s), LB_ERR_INVALID, "repeats");
    CHECK_FAILS(lb_qspec_parse("int4:zint:zf16", &s), LB_ERR_INVALID, "conflicts with the zero point");
    CHECK_FAILS(lb_qspec_parse("ternary:2bit:1.6bit", &s), LB_ERR_INVALID, "conflicts");
    CHECK_FAILS(lb_qspec_parse("q4_0:", &s), LB_ERR_INVALID, "takes no options");
    CHECK_FAILS(lb_qspec_parse("trellis5", &s), LB_ERR_INVALID, "k = 1..4");
    CHECK_FAILS(lb_qspec_parse("trellis7:v2", &s), LB_ERR_INVALID, "1..6 per step");
    CHECK_FAILS(lb_qspec_parse("trellis5:L12:v2", &s), LB_ERR_INVALID, "a multiple of 5");
    CHECK_FAILS(lb_qspec_parse("trellis1:v2:v2", &s), LB_ERR_INVALID, "repeats the weights per step");
    CHECK_FAILS(lb_qspec_parse("trellis2:v3", &s), LB_ERR_INVALID, "v3");
    CHECK_FAILS(lb_qspec_parse("trellis", &s), LB_ERR_INVALID, "k = 1..4");
    CHECK_FAILS(lb_qspec_parse("trellis3:L16", &s), LB_ERR_INVALID, "a multiple of 3");
    CHECK_FAILS(lb_qspec_parse("trellis2:L18", &s), LB_ERR_INVALID, "a multiple of 2 in 4..16");
    CHECK_FAILS(lb_qspec_parse("trellis2:L12:L16", &s), LB_ERR_INVALID, "conflicts with the state bits");
    CHECK_FAILS(lb_qspec_parse("trellis2:s3", &s), LB_ERR_INVALID, "s4..s8");
    CHECK_FAILS(lb_qspec_parse("trellis2:tensor:s6", &s), LB_ERR_INVALID, "nothing to code");
    CHECK_FAILS(lb_qspec_parse("trellis2:s6:s8", &s), LB_ERR_INVALID, "conflicts with the scale bits");
}

/* bytes and bpw counted by hand from the layouts in docs/FORMATS.md */
static void test_sizes(void) {
    static const struct {
        const char *spec;
        int64_t rows, cols;
        size_t bytes;
    } cases[] = {
        {"int4:g32:sym", 64, 64, 64 * 2 * (2 + 16)},          /* = ggml Q4_0: 4.5 bpw */
        {"int4:g32:asym", 64, 64, 64 * 2 * (4 + 16)},         /* = ggml Q4_1: 5.0 bpw */
        {"int8:g32:sym", 64, 64, 64 * 2 * (2 + 32)},          /* = ggml Q8_0: 8.5 bpw */
        {"int4:g64:asym", 64, 64, 64 * (4 + 32)},             /* 4.5 bpw */
        {"int3:g64:asym:zint", 64, 64, 64 * (2 + 24 + 1)},    /* zero padded to a byte */
        {"int2:g64:asym", 64, 172, 64 * 3 * (4 + 16)},        /* 172 -> 192 padded */
        {"int3:row:asym", 64, 172, 64 * (4 + 176 * 3 / 8)},   /* rows pad to 8 weights */
        {"int3:g16:asym:zint", 3, 40, 3 * (3 * (2 + 6) + 2)}, /* 3 zeros = 9 bits -> 2 bytes */
        {"int5:g16:sym", 2, 16, 2 * (2 + 10)},
        {"nf4:g64", 64, 64, 64 * (2 + 32)},
        {"nf4:g64:dq", 64, 64, 64 * (32 + 1) + 4 + 4},        /* one second-level block */
        {"nf4:g16:dq", 300, 64, 300 * 4 * (8 + 1) + 4 + 4 * 5}, /* 1200 groups = 5 blocks of 256 */
        {"binary:row", 64, 64, 64 * (2 + 8)},
        {"binary:g32", 64, 172, 64 * (6 * 2 + 24)},
        {"binary:tensor", 64, 64, 64 * 8 + 2},
        {"ternary:row:1.6bit", 64, 64, 64 * (2 + 13)},
        {"ternary:row:2bit", 64, 64, 64 * (2 + 16)},
        {"ternary:g32:1.6bit", 64, 172, 64 * (6 * 2 + 39)},
        {"ternary:tensor:1.6bit", 5, 10, 5 * 4 + 2},    /* 10 -> 16 padded: 4 bytes */
        {"trellis2:L12:row", 64, 172, 64 * (2 + 176 / 4)}, /* 172 -> 176 padded, 2 bits each */
        {"trellis3:L12:g64", 3, 128, 3 * (2 * 2 + 48)},
        {"trellis1:L12:tensor", 5, 10, 5 * 2 + 2},      /* 16 bits per row, one fp16 scale */
        {"trellis2:L12:row:s6", 64, 64, 64 * 16 + 2 + 48}, /* codes only; S, then 64 6-bit scale codes */
        {"trellis3:L12:g64:s4", 3, 128, 3 * 48 + 2 + 3},  /* 6 groups of 4 bits */
        {"trellis1:L12:row:v2", 64, 64, 64 * (2 + 4)},    /* 32 steps of 1 bit: 0.75 bpw with the fp16 scale */
        {"trellis3:L12:g64:v2", 3, 128, 3 * (2 * 2 + 24)}, /* 64 steps of 3 bits */
        {"trellis1:L12:row:v2", 2, 8, 2 * (2 + 1)},        /* 4 bits of codes round up to a byte */
        {"trellis5:L15:row:down:s6:v2", 3, 64, 3 * 20 + 2 + 3 + 20}, /* the missing 4th row's codes in the tail */
        {"trellis5:L15:row:down:s6:v2", 4, 64, 4 * 20 + 2 + 3},
        {"f32", 3, 5, 60},
        {"f16", 3, 5, 30},
        {"bf16", 1, 7, 14},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lb_qspec s = lb_test_spec(cases[i].spec);
        size_t total = 0;
        CHECK_OK(lb_format_size(&s, cases[i].rows, cases[i].cols, NULL, NULL, &total));
        CHECK_MSG(total == cases[i].bytes, "%s %lldx%lld: %zu bytes, want %zu", cases[i].spec,
                  (long long)cases[i].rows, (long long)cases[i].cols, total, cases[i].bytes);
        double bpw = lb_format_bpw(&s, cases[i].rows, cases[i].cols);
        CHECK_NEAR(bpw, 8.0 * (double)cases[i].bytes / (double)(cases[i].rows * cases[i].cols), 1e-12);
    }
    lb_qspec s = lb_test_spec("int4:g32:sym");
    CHECK_NEAR(lb_format_bpw(&s, 4096, 4096), 4.5, 1e-12);
    s = lb_test_spec("nf4:g64:dq");
    CHECK_NEAR(lb_format_bpw(&s, 4096, 4096), 4.0 + 8.0 / 64 + 32.0 / (64 * 256) + 32.0 / (4096.0 * 4096), 1e-12);
    size_t total;
    CHECK_FAILS(lb_format_size(&s, 0, 64, NULL, NULL, &total), LB_ERR_INVALID, "absurd");
    CHECK_FAILS(lb_format_size(&s, (int64_t)1 << 40, 1 << 20, NULL, NULL, &total), LB_ERR_INVALID, "absurd");
    /* ggml types: only whole 32-blocks map */
    CHECK(lb_format_ggml_type(&(lb_qspec){.family = LB_FAMILY_F32}, 64) == LB_GGML_F32);
    CHECK(lb_format_ggml_type(&(lb_qspec){0}, 64) == -1); /* no family: nothing */
    s = lb_test_spec("q4_0");
    CHECK(lb_format_ggml_type(&s, 64) == LB_GGML_Q4_0);
    CHECK(lb_format_ggml_type(&s, 172) == -1);
    s = lb_test_spec("q4_1");
    CHECK(lb_format_ggml_type(&s, 64) == LB_GGML_Q4_1);
    s = lb_test_spec("q8_0");
    CHECK(lb_format_ggml_type(&s, 4096) == LB_GGML_Q8_0);
    s = lb_test_spec("int4:g64:sym");
    CHECK(lb_format_ggml_type(&s, 4096) == -1);
}

static void test_round_trips(void) {
    static const int64_t col_list[] = {1, 7, 16, 33, 64, 100, 172, 257, 300};
    static const char *zeros[] = {"sym", "asym", "asym:zint"};
    static const char *groups[] = {"g16", "g32", "g64", "g128", "g256", "row"};
    lb_rng r;
    lb_rng_seed(&r, 1234);
    int cases = 0;
    char text[64];
    for (int bits = 1; bits <= 8; bits++)
        for (int z = 0; z < 3; z++)
            for (int g = 0; g < 6; g++) {
                if (bits == 1 && z == 0) continue; /* int1:sym is refused */
                snprintf(text, sizeof text, "int%d:%s:%s", bits, groups[g], zeros[z]);
                lb_qspec s = lb_test_spec(text);
                for (size_t c = 0; c < sizeof col_list / sizeof col_list[0]; c++) {
                    int f = format_round_trip(&s, 3, col_list[c], &r);
                    CHECK_MSG(f == 0, "%s with %lld columns: %d mismatches", text, (long long)col_list[c], f);
                    cases++;
                }
            }
    static const char *others[] = {"nf4:g16", "nf4:g64", "nf4:g256", "nf4:row", "nf4:g16:dq", "nf4:row:dq",
                                   "binary:g16", "binary:g128", "binary:row", "binary:tensor",
                                   "ternary:g16:1.6bit", "ternary:g64:2bit",
                                   "ternary:row:1.6bit", "ternary:row:2bit",
                                   "ternary:tensor:1.6bit", "ternary:tensor:2bit"};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        lb_qspec s = lb_test_spec(others[i]);
        for (size_t c = 0; c < sizeof col_list / sizeof col_list[0]; c++) {
            int f = format_round_trip(&s, 5, col_list[c], &r);
            CHECK_MSG(f == 0, "%s with %lld columns: %d mismatches", others[i], (long long)col_list[c], f);
            cases++;
        }
    }
    /* nf4 double quantization across many second-level blocks */
    lb_qspec s = lb_test_spec("nf4:g16:dq");
    CHECK(format_round_trip(&s, 300, 64, &r) == 0);
    printf("round trips: %d format/shape cases\n", cases);
}

/* ggml's blocks written out from their definitions (ggml-common.h):
 *   Q4_0 {fp16 d; uint8 qs[16]}: x[j] = ((qs[j] & 15) - 8) d, x[j+16] = ((qs[j] >> 4) - 8) d
 *   Q4_1 {fp16 d, m; uint8 qs[16]}: x[j] = (qs[j] & 15) d + m, x[j+16] = (qs[j] >> 4) d + m
 *   Q8_0 {fp16 d; int8 qs[32]}: x[j] = qs[j] d */
static void test_ggml_layouts(void) {
    uint8_t blk[2 * 36];
    lb_rng r;
    lb_rng_seed(&r, 5);
    for (int b = 0; b < (int)sizeof blk; b++) blk[b] = (uint8_t)lb_rng_u32(&r);
    float out[64], want[64];
    uint16_t d0 = lb_fp32_to_fp16(0.37f), m0 = lb_fp32_to_fp16(-1.25f);

    /* one row of two Q4_0 blocks */
    for (int k = 0; k < 2; k++) lb_wr16(blk + 18 * k, d0);
    lb_tensor t = {.spec = lb_test_spec("q4_0"), .rows = 1, .cols = 64, .data = blk, .nbytes = 36};
    CHECK_OK(lb_tensor_resolve(&t));
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < 16; j++) {
            const uint8_t *qs = blk + 18 * k + 2;
            want[32 * k + j] = (float)((qs[j] & 15) - 8) * lb_fp16_to_fp32(d0);
            want[32 * k + j + 16] = (float)((qs[j] >> 4) - 8) * lb_fp16_to_fp32(d0);
        }
    CHECK_OK(lb_dequantize(&t, out));
    CHECK(memcmp(out, want, sizeof(float) * 64) == 0);

    for (int k = 0; k < 2; k++) {
        lb_wr16(blk + 20 * k, d0);
        lb_wr16(blk + 20 * k + 2, m0);
    }
    t = (lb_tensor){.spec = lb_test_spec("q4_1"), .rows = 1, .cols = 64, .data = blk, .nbytes = 40};
    CHECK_OK(lb_tensor_resolve(&t));
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < 16; j++) {
            const uint8_t *qs = blk + 20 * k + 4;
            want[32 * k + j] = (float)(qs[j] & 15) * lb_fp16_to_fp32(d0) + lb_fp16_to_fp32(m0);
            want[32 * k + j + 16] = (float)(qs[j] >> 4) * lb_fp16_to_fp32(d0) + lb_fp16_to_fp32(m0);
        }
    CHECK_OK(lb_dequantize(&t, out));
    CHECK(memcmp(out, want, sizeof(float) * 64) == 0);

    for (int k = 0; k < 2; k++) lb_wr16(blk + 34 * k, d0);
    t = (lb_tensor){.spec = lb_test_spec("q8_0"), .rows = 1, .cols = 64, .data = blk, .nbytes = 68};
    CHECK_OK(lb_tensor_resolve(&t));
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < 32; j++) want[32 * k + j] = (float)(int8_t)blk[34 * k + 2 + j] * lb_fp16_to_fp32(d0);
    CHECK_OK(lb_dequantize(&t, out));
    CHECK(memcmp(out, want, sizeof(float) * 64) == 0);

    /* ggml type ids map back to the same specs */
    lb_qspec s;
    CHECK_OK(lb_qspec_from_ggml_type(LB_GGML_Q4_1, &s));
    CHECK(lb_format_ggml_type(&s, 64) == LB_GGML_Q4_1);
    CHECK_OK(lb_qspec_from_ggml_type(12, &s)); /* Q4_K: read (src/formats/ggml_read.c) */
    CHECK(lb_format_ggml_type(&s, 256) == 12);
    CHECK_OK(lb_qspec_from_ggml_type(16, &s)); /* IQ2_XXS, a codebook type: read too (src/formats/iq_read.c) */
    CHECK(lb_format_ggml_type(&s, 256) == 16);
    CHECK_FAILS(lb_qspec_from_ggml_type(28, &s), LB_ERR_UNSUPPORTED, "F64"); /* known to ggml, not read */
    CHECK_FAILS(lb_qspec_from_ggml_type(77, &s), LB_ERR_UNSUPPORTED, "unknown ggml type 77");
}

/* the bytes of a small hand-made case, so the layout is pinned, not just self-consistent */
static void test_pinned_bytes(void) {
    /* int2:g16:asym:zint, one row of 16: codes 0..3 repeated, scale 1.0, zero 2 */
    lb_qspec s = lb_test_spec("int2:g16:asym:zint");
    lb_qtensor q;
    CHECK_OK(lb_qtensor_init(&q, &s, 1, 16));
    for (int j = 0; j < 16; j++) q.codes[j] = (uint8_t)(j & 3);
    q.scale[0] = 1.0f;
    q.zero[0] = 2;
    uint8_t bytes[7];
    CHECK_OK(lb_qtensor_encode(&q, bytes));
    /* fp16 1.0 = 0x3c00; codes 0,1,2,3 LSB-first = 0b11100100 = 0xe4; zero 2 in a byte */
    static const uint8_t want[7] = {0x00, 0x3c, 0xe4, 0xe4, 0xe4, 0xe4, 0x02};
    CHECK(memcmp(bytes, want, 7) == 0);
    lb_qtensor_free(&q);

    /* ternary 1.6 bit: trits (-1, 0, 1, 1, 0) -> codes (0, 1, 2, 2, 1) -> 0 + 3 + 18 + 54 + 81 = 156 */
    s = lb_test_spec("ternary:tensor:1.6bit");
    CHECK_OK(lb_qtensor_init(&q, &s, 1, 5));
    const uint8_t c[8] = {0, 1, 2, 2, 1, 1, 1, 1};
    memcpy(q.codes, c, 8);
    q.scale[0] = 0.5f;
    uint8_t tb[4];
    CHECK_OK(lb_qtensor_encode(&q, tb));
    CHECK(tb[0] == 156);
    CHECK(tb[1] == 1 + 3 + 9); /* padding trits (0) in the second byte */
    CHECK(lb_rd16(tb + 2) == 0x3800);
    lb_tensor t = {.spec = s, .rows = 1, .cols = 5, .data = tb, .nbytes = 4};
    CHECK_OK(lb_tensor_resolve(&t));
    float out[5];
    CHECK_OK(lb_dequantize(&t, out));
    CHECK(out[0] == -0.5f && out[1] == 0.0f && out[2] == 0.5f && out[3] == 0.5f && out[4] == 0.0f);
    lb_qtensor_free(&q);

    /* out-of-range codes are refused */
    s = lb_test_spec("ternary:row:2bit");
    CHECK_OK(lb_qtensor_init(&q, &s, 1, 8));
    q.codes[3] = 3;
    uint8_t big[64];
    CHECK_FAILS(lb_qtensor_encode(&q, big), LB_ERR_INVALID, "out of range");
    q.codes[3] = 1;
    q.scale[0] = NAN;
    CHECK_FAILS(lb_qtensor_encode(&q, big), LB_ERR_NUMERIC, "non-finite");
    lb_qtensor_free(&q);
    CHECK_FAILS(lb_qtensor_init(&q, &(lb_qspec){.family = LB_FAMILY_F16}, 2, 2), LB_ERR_INVALID, "float");
}

static void test_float_formats(void) {
    float w[6] = {1.0f, -2.5f, 3.140625f, 0.0f, 65504.0f, -1e-8f};
    uint8_t b[24];
    float out[6];
    lb_qspec s = lb_test_spec("f16");
    CHECK_OK(lb_format_from_float(&s, w, 2, 3, b));
    lb_tensor t = {.spec = s, .rows = 2, .cols = 3, .data = b, .nbytes = 12};
    CHECK_OK(lb_tensor_resolve(&t));
    CHECK_OK(lb_dequantize(&t, out));
    for (int i = 0; i < 6; i++) CHECK(out[i] == lb_round_fp16(w[i]));
    float big[1] = {1e6f};
    CHECK_FAILS(lb_format_from_float(&s, big, 1, 1, b), LB_ERR_NUMERIC, "overflows f16");
    float nan[2] = {0.0f, NAN};
    CHECK_FAILS(lb_format_from_float(&s, nan, 1, 2, b), LB_ERR_NUMERIC, "NaN");
    s = lb_test_spec("bf16");
    CHECK_OK(lb_format_from_float(&s, w, 2, 3, b));
    t.spec = s;
    CHECK_OK(lb_dequantize(&t, out));
    for (int i = 0; i < 6; i++) CHECK(out[i] == lb_bf16_to_fp32(lb_fp32_to_bf16(w[i])));
    s = lb_test_spec("f32");
    CHECK_OK(lb_format_from_float(&s, w, 2, 3, b));
    t.spec = s;
    t.nbytes = 24;
    CHECK_OK(lb_dequantize(&t, out));
    CHECK(memcmp(out, w, sizeof w) == 0);
    t.nbytes = 20;
    CHECK_FAILS(lb_dequantize(&t, out), LB_ERR_FORMAT, "needs 24");
}

int main(void) {
    test_spec_text();
    test_sizes();
    test_round_trips();
    test_ggml_layouts();
    test_pinned_bytes();
    test_float_formats();
    return lb_test_finish("test_formats");
}
