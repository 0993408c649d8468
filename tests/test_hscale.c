/* Hierarchical scales for uniform integers (src/formats/uniform_hscale.c,
 * spec option s<k>[:r<N>]): spec text, exact sizes, round trips, weights
 * that sit on a representable lattice come back exactly (RTN min-max and
 * mse, every width), the min-max error bound, GPTQ below RTN, methods that
 * do not support the option refuse it. */
#include "format_check.h"
#include "test.h"

static void test_spec_text(void) {
    static const struct {
        const char *in, *canonical;
    } good[] = {
        {"int3:g16:asym:s6", "int3:g16:asym:s6"},
        {"int3:g16:s6", "int3:g16:asym:s6"},
        {"int2:g32:sym:s4:r8", "int2:g32:sym:s4:r8"},
        {"int4:g16:r4:s6", "int4:g16:asym:s6:r4"},
        {"int4:s6:g32:r1", "int4:g32:asym:s6"},
        {"int8:g256:sym:s8:r65536", "int8:g256:sym:s8:r65536"},
        {"int1:g16:asym:s2", "int1:g16:asym:s2"},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        lb_qspec s, back;
        char text[64];
        CHECK_OK(lb_qspec_parse(good[i].in, &s));
        lb_qspec_format(&s, text, sizeof text);
        CHECK_MSG(!strcmp(text, good[i].canonical), "%s -> %s, want %s", good[i].in, text, good[i].canonical);
        CHECK_OK(lb_qspec_parse(text, &back));
        CHECK(lb_qspec_equal(&s, &back) && back.scale_bits == s.scale_bits && back.super_rows == s.super_rows);
    }
    static const struct {
        const char *text, *needle;
    } bad[] = {
        {"int3:g16:s1", "2 to 8 bits"},
        {"int3:g16:s9", "2 to 8 bits"},
        {"int3:g16:s", "not apply"},
        {"int3:g16:s6x", "2 to 8 bits"},
        {"int3:g16:s6:s4", "conflicts"},
        {"int3:g16:s6:s6", "repeats"},
        {"int3:g16:r4", "need hierarchical scales"},
        {"int3:g16:s6:r0", "1..65536"},
        {"int3:g16:s6:r65537", "1..65536"},
        {"int3:g16:s6:r4:r8", "conflicts"},
        {"int3:g16:asym:zint:s6", "zint"},
        {"int3:row:s6", "need groups"},
        {"nf4:g64:s6", "not apply"},
        {"q4_0:s6", "takes no options"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lb_qspec s;
        CHECK_FAILS(lb_qspec_parse(bad[i].text, &s), LB_ERR_INVALID, bad[i].needle);
    }
    /* a hand-built spec is validated the same way */
    lb_qspec s = lb_test_spec("int3:g16:asym:s6");
    s.scale_bits = 9;
    CHECK_FAILS(lb_qspec_validate(&s), LB_ERR_INVALID, "2 to 8 bits");
    s = lb_test_spec("int3:g16:asym:s6");
    s.super_rows = 0;
    CHECK_FAILS(lb_qspec_validate(&s), LB_ERR_INVALID, "1..65536");
    /* never a ggml layout */
    lb_qspec h = lb_test_spec("int4:g32:sym:s6"), plain = lb_test_spec("int4:g32:sym");
    CHECK(lb_format_ggml_type(&h, 64) == -1);
    CHECK(lb_format_ggml_type(&plain, 64) == LB_GGML_Q4_0);
}

/* row = pad8(groups k (1|2)) / 8 + groups * G bits / 8 bytes; tail = (2|4) per super-group */
static void test_sizes(void) {
    static const struct {
        const char *spec;
        int64_t rows, cols;
        size_t row_bytes, tail_bytes;
    } cases[] = {
        /* 40 cols -> 48 padded, 3 groups: 36 param bits -> 5 bytes, 3 x 6 code bytes */
        {"int3:g16:asym:s6", 10, 40, 5 + 18, 10 * 4},
        {"int3:g16:asym:s6:r4", 10, 40, 5 + 18, 3 * 4},
        {"int3:g16:sym:s4:r4", 10, 40, 2 + 18, 3 * 2},
        /* 172 cols -> 176, 11 groups of 16 at 2 bits: 88 param bits = 11 bytes, 11 x 4 code bytes */
        {"int2:g16:sym:s8", 64, 172, 11 + 44, 64 * 2},
        {"int4:g32:asym:s4:r64", 64, 64, 2 + 32, 1 * 4},
        {"int8:g256:sym:s5:r3", 7, 300, 2 + 512, 3 * 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lb_qspec s = lb_test_spec(cases[i].spec);
        size_t rb, tb, total;
        CHECK_OK(lb_format_size(&s, cases[i].rows, cases[i].cols, &rb, &tb, &total));
        CHECK_MSG(rb == cases[i].row_bytes && tb == cases[i].tail_bytes, "%s: row %zu tail %zu, want %zu %zu",
                  cases[i].spec, rb, tb, cases[i].row_bytes, cases[i].tail_bytes);
        CHECK(total == rb * (size_t)cases[i].rows + tb);
        double bpw = lb_format_bpw(&s, cases[i].rows, cases[i].cols);
        CHECK_NEAR(bpw, 8.0 * (double)total / (double)(cases[i].rows * cases[i].cols), 1e-12);
    }
}

static void test_round_trips(void) {
    static const char *specs[] = {"int2:g16:asym:s4",   "int2:g16:sym:s4",      "int3:g16:asym:s6:r4",
                                  "int3:g32:sym:s6:r3", "int4:g32:asym:s5:r64", "int4:g64:sym:s8",
                                  "int8:g16:sym:s6",    "int8:g16:asym:s2",     "int1:g128:asym:s3:r2",
                                  "int5:g256:sym:s7:r7"};
    static const int64_t cols[] = {1, 16, 33, 64, 172, 300};
    lb_rng r;
    lb_rng_seed(&r, 77);
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        lb_qspec s = lb_test_spec(specs[i]);
        for (size_t c = 0; c < sizeof cols / sizeof cols[0]; c++) {
            int f = format_round_trip(&s, 9, cols[c], &r);
            CHECK_MSG(f == 0, "%s with %lld columns: %d mismatches", specs[i], (long long)cols[c], f);
        }
    }
}

/* Weights that are exactly a lattice grid's values: D, M fp16 with a few
 * significant bits and integers up to 255, so every D sc and M mn is exact
 * in fp16 and float. Every group has codes 0 and 2^b - 1 (asym: min and max;
 * sym: code 0 is the signed extreme); every super-group has a group at the
 * extreme integer (asym: sc = mn = 2^k - 1; sym: sc = -2^(k-1)), so
 * store_scales finds D and M back. RTN must return the weights exactly. */
static void lattice_weights(const lb_qspec *s, int64_t rows, int64_t cols, lb_rng *r, float *w) {
    int64_t G = s->group, gpr = (cols + G - 1) / G;
    int maxq = (1 << s->bits) - 1, half = 1 << (s->bits - 1);
    int smin = lb_hscale_scale_min(s), smax = lb_hscale_scale_max(s), mmax = (1 << s->scale_bits) - 1;
    float D = 3.0f / 512.0f, M = -5.0f / 1024.0f;
    for (int64_t row = 0; row < rows; row++) {
        int64_t b = row / s->super_rows;
        /* the super-group's extreme group: its first row, a group chosen by b */
        int64_t ext_row = b * s->super_rows, ext_g = b % gpr;
        for (int64_t g = 0; g < gpr; g++) {
            int ext = row == ext_row && g == ext_g;
            int sc, mn = 0;
            if (s->zero == LB_ZERO_SYM) {
                /* nonzero, and |sc| < 2^(k-1) except the extreme */
                sc = (int)(lb_rng_u32(r) % (uint32_t)(2 * smax)) - smax + 1;
                if (sc <= 0) sc--;
                if (ext) sc = smin;
            } else {
                sc = ext ? smax : 1 + (int)(lb_rng_u32(r) % (uint32_t)smax);
                mn = ext ? mmax : (int)(lb_rng_u32(r) % (uint32_t)(mmax + 1));
            }
            float d = D * (float)sc, m = M * (float)mn;
            int64_t c0 = g * G, n = cols - c0 < G ? cols - c0 : G;
            for (int64_t j = 0; j < n; j++) {
                int q = j == 0 ? 0 : j == 1 ? maxq : (int)(lb_rng_u32(r) % (uint32_t)(maxq + 1));
                w[row * cols + c0 + j] = s->zero == LB_ZERO_SYM ? d * (float)(q - half) : d * (float)q + m;
            }
        }
    }
}

static void test_exact_lattice(void) {
    static const char *specs[] = {"int2:g16:asym:s4", "int3:g16:asym:s6:r4", "int4:g32:asym:s8:r2",
                                  "int8:g16:asym:s4", "int2:g16:sym:s4",     "int3:g32:sym:s6:r3",
                                  "int4:g16:sym:s8",  "int7:g32:sym:s5:r4"};
    static const char *clips[] = {"clip=minmax", "clip=mse", "clip=aciq"};
    lb_rng r;
    lb_rng_seed(&r, 5);
    enum { R = 11, C = 83 }; /* a partial last group, a partial last super-group */
    float *w = malloc(R * C * sizeof(float)), *back = malloc(R * C * sizeof(float));
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++)
        for (size_t c = 0; c < 2; c++) { /* aciq clips on purpose: not exact */
            lb_qspec s = lb_test_spec(specs[i]);
            lattice_weights(&s, R, C, &r, w);
            lb_method_opts o;
            CHECK_OK(lb_test_method_opts(lb_method_find("rtn"), clips[c], &o));
            lb_tensor t;
            CHECK_OK(lb_quantize_tensor(lb_method_find("rtn"), &o, NULL, w, R, C, &s, "w", &t));
            CHECK_OK(lb_dequantize(&t, back));
            float worst = 0;
            for (int k = 0; k < R * C; k++) worst = fmaxf(worst, fabsf(back[k] - w[k]));
            CHECK_MSG(worst == 0.0f, "%s %s: weights on the lattice come back with error %g", specs[i], clips[c],
                      (double)worst);
            lb_tensor_free(&t);
        }
    (void)clips[2];
    free(w);
    free(back);
}

/* Min-max (covering) bound, asym: the grid of group (lo, hi) has step
 * d' <= (hi - lo + |M|) / (2^b - 1) + D and contains [lo, hi], so every
 * weight is within d' / 2 of its value. The same holds with fp16 offsets
 * with M = D = 0 up to fp16 rounding: the hierarchy costs at most
 * (|M| / (2^b - 1) + D) / 2 per weight. */
static void test_minmax_bound(void) {
    static const char *specs[] = {"int2:g16:asym:s4", "int3:g32:asym:s6:r5", "int4:g16:asym:s4:r64",
                                  "int3:g64:asym:s8"};
    enum { R = 37, C = 172 };
    lb_rng r;
    lb_rng_seed(&r, 9);
    float *w = malloc(R * C * sizeof(float)), *back = malloc(R * C * sizeof(float));
    for (int k = 0; k < R * C; k++) w[k] = (float)lb_rng_normal(&r) * (1.0f + (float)(k % 7));
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        lb_qspec s = lb_test_spec(specs[i]);
        lb_qtensor q;
        CHECK_OK(lb_rtn_quantize(w, R, C, &s, NULL, &q));
        lb_tensor t = {.spec = s, .rows = R, .cols = C};
        CHECK_OK(lb_format_size(&s, R, C, NULL, NULL, &t.nbytes));
        uint8_t *bytes = malloc(t.nbytes);
        CHECK_OK(lb_qtensor_encode(&q, bytes));
        t.data = bytes;
        CHECK_OK(lb_tensor_resolve(&t));
        CHECK_OK(lb_dequantize(&t, back));
        int maxq = (1 << s.bits) - 1, bad = 0;
        for (int64_t row = 0; row < R; row++) {
            int64_t b = row / s.super_rows;
            for (int64_t c0 = 0; c0 < C; c0 += s.group) {
                int64_t n = C - c0 < s.group ? C - c0 : s.group;
                float lo = INFINITY, hi = -INFINITY;
                for (int64_t j = 0; j < n; j++) {
                    lo = fminf(lo, w[row * C + c0 + j]);
                    hi = fmaxf(hi, w[row * C + c0 + j]);
                }
                double step = (hi - lo + fabsf(q.super_min[b])) / maxq + q.super_scale[b];
                /* the group's first grid is fp16: its range may be short of
                 * [lo, hi] by fp16 rounding, 2^-11 relative */
                double allowed = 0.5 * step * (1 + 1e-4) + (hi - lo) * 0x1p-10;
                for (int64_t j = 0; j < n; j++) {
                    double e = fabs((double)w[row * C + c0 + j] - back[row * C + c0 + j]);
                    if (e > allowed) bad++;
                }
            }
        }
        CHECK_MSG(bad == 0, "%s: %d weights beyond the min-max bound", specs[i], bad);
        /* and the stored values are what lb_qtensor_value says */
        for (int64_t k = 0; k < (int64_t)R * C; k += 13) CHECK(back[k] == lb_qtensor_value(&q, k / C, k % C));
        free(bytes);
        lb_qtensor_free(&q);
    }
    free(w);
    free(back);
}

/* Methods that cannot honour the lattice refuse it by name. */
static void test_methods_refuse(void) {
    lb_qspec s = lb_test_spec("int3:g16:asym:s6");
    const lb_method *hqq = lb_method_find("hqq");
    lb_method_opts o;
    CHECK_OK(lb_test_method_opts(hqq, "", &o));
    float w[32];
    for (int i = 0; i < 32; i++) w[i] = (float)i;
    lb_tensor t;
    CHECK_FAILS(lb_quantize_tensor(hqq, &o, NULL, w, 1, 32, &s, "w", &t), LB_ERR_UNSUPPORTED, "hierarchical scales");
    /* NaN weights: a clear error, nothing half-written */
    w[5] = NAN;
    lb_qtensor q;
    CHECK_FAILS(lb_rtn_quantize(w, 1, 32, &s, NULL, &q), LB_ERR_NUMERIC, "NaN");
    /* beyond fp16: the super-scale is not finite */
    for (int i = 0; i < 32; i++) w[i] = i % 2 ? 1e9f : -1e9f;
    CHECK_FAILS(lb_rtn_quantize(w, 1, 32, &s, NULL, &q), LB_ERR_NUMERIC, "not finite");
}

/* mse refits (and the super-scale search) run over super-groups in
 * parallel: the same bytes for 1 and 2 threads */
static void test_threads(void) {
    enum { R = 70, C = 172 };
    lb_rng r;
    lb_rng_seed(&r, 21);
    float *w = malloc(R * C * sizeof(float));
    for (int k = 0; k < R * C; k++) w[k] = (float)lb_rng_normal(&r);
    static const char *specs[] = {"int3:g16:asym:s4:r4", "int2:g32:sym:s6"};
    const lb_method *rtn = lb_method_find("rtn");
    lb_method_opts o;
    CHECK_OK(lb_test_method_opts(rtn, "clip=mse", &o));
    int threads = lb_get_threads();
    for (size_t i = 0; i < 2; i++) {
        lb_qspec s = lb_test_spec(specs[i]);
        lb_tensor a, b;
        lb_set_threads(1);
        CHECK_OK(lb_quantize_tensor(rtn, &o, NULL, w, R, C, &s, "w", &a));
        lb_set_threads(2);
        CHECK_OK(lb_quantize_tensor(rtn, &o, NULL, w, R, C, &s, "w", &b));
        CHECK_MSG(a.nbytes == b.nbytes && !memcmp(a.data, b.data, a.nbytes), "%s: 1 and 2 threads differ", specs[i]);
        lb_tensor_free(&a);
        lb_tensor_free(&b);
    }
    lb_set_threads(threads);
    free(w);
}

/* On gaussian weights, mse refitting on the lattice beats min-max covering,
 * and 6-bit group scales lose little against fp16 ones (the same RTN rule):
 * weight error within 15% (measured 0.87..1.07 of fp16; mse is lower
 * because the lattice search moves scale and min jointly). */
static void test_error_vs_fp16(void) {
    enum { R = 64, C = 256 };
    lb_rng r;
    lb_rng_seed(&r, 33);
    float *w = malloc(R * C * sizeof(float)), *back = malloc(R * C * sizeof(float));
    for (int k = 0; k < R * C; k++) w[k] = (float)lb_rng_normal(&r) * (0.5f + (float)(k / C % 5));
    const lb_method *rtn = lb_method_find("rtn");
    static const char *pairs[][2] = {{"int3:g16:asym", "int3:g16:asym:s6"}, {"int2:g32:sym", "int2:g32:sym:s6"},
                                     {"int4:g32:asym", "int4:g32:asym:s6:r8"}};
    for (size_t i = 0; i < 3; i++)
        for (int c = 0; c < 2; c++) {
            double err[2];
            for (int h = 0; h < 2; h++) {
                lb_qspec s = lb_test_spec(pairs[i][h]);
                lb_method_opts o;
                CHECK_OK(lb_test_method_opts(rtn, c ? "clip=mse" : "", &o));
                lb_tensor t;
                CHECK_OK(lb_quantize_tensor(rtn, &o, NULL, w, R, C, &s, "w", &t));
                CHECK_OK(lb_dequantize(&t, back));
                err[h] = 0;
                for (int k = 0; k < R * C; k++) err[h] += ((double)w[k] - back[k]) * ((double)w[k] - back[k]);
                lb_tensor_free(&t);
            }
            printf("  %-22s %-7s weight error hierarchical / fp16 = %.3f\n", pairs[i][1], c ? "mse" : "minmax",
                   err[1] / err[0]);
            CHECK_MSG(err[1] < 1.15 * err[0], "%s %s: %g vs fp16 %g", pairs[i][1], c ? "mse" : "minmax", err[1], err[0]);
        }
    free(w);
    free(back);
}

int main(void) {
    test_spec_text();
    test_sizes();
    test_round_trips();
    test_exact_lattice();
    test_minmax_bound();
    test_methods_refuse();
    test_threads();
    test_error_vs_fp16();
    return lb_test_finish("test_hscale");
}
