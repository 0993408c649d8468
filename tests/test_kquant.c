/* llama.cpp's K-quants written by lowbit (src/formats/kquant.c): spec text
 * and sizes (ggml's block sizes), the fallback for rows that are not whole
 * blocks, round trips, weights on a K-quant lattice come back exactly from
 * RTN (min-max and mse), and the stored values are the qtensor's. The
 * layouts themselves are checked against packers written from ggml's block
 * definitions in tests/test_ggml_read.c, and against llama.cpp's own
 * to_float in docs/RESULTS.md ("Issue 10"); GPTQ on them in test_gptq.c. */
#include "format_check.h"
#include "test.h"

static const struct {
    const char *name;
    int ggml, bytes, bits, group;
    const char *fallback32; /* the fallback when 32 divides the row (llama-quantize's) */
} kq[] = {
    {"q2_k", 10, 84, 2, 16, "q4_0"}, {"q3_k", 11, 110, 3, 16, "q4_0"}, {"q4_k", 12, 144, 4, 32, "q5_0"},
    {"q5_k", 13, 176, 5, 32, "q5_1"}, {"q6_k", 14, 210, 6, 16, "q8_0"},
};
enum { N_KQ = sizeof kq / sizeof kq[0] };

static void test_spec_and_sizes(void) {
    for (int i = 0; i < N_KQ; i++) {
        lb_qspec s, back, fb, want;
        char text[64];
        CHECK_OK(lb_qspec_parse(kq[i].name, &s));
        lb_qspec_format(&s, text, sizeof text);
        CHECK_MSG(!strcmp(text, kq[i].name), "%s formats as %s", kq[i].name, text);
        CHECK_OK(lb_qspec_parse(text, &back));
        CHECK(lb_qspec_equal(&s, &back) && s.bits == kq[i].bits && s.group == kq[i].group);
        CHECK(lb_format_levels(&s) == 1 << kq[i].bits && lb_format_grid(&s) == LB_GRID_UNIFORM);
        /* one block per 256 weights, as ggml's type table says */
        lb_ggml_type_info ti;
        CHECK(lb_ggml_type_lookup(kq[i].ggml, &ti) && ti.block_size == 256 && (int)ti.type_size == kq[i].bytes);
        size_t rb, tb, total;
        CHECK_OK(lb_format_size(&s, 3, 512, &rb, &tb, &total));
        CHECK(rb == 2 * (size_t)kq[i].bytes && tb == 0 && total == 3 * rb);
        CHECK(lb_format_ggml_type(&s, 512) == kq[i].ggml);
        CHECK_OK(lb_qspec_from_ggml_type(kq[i].ggml, &back));
        CHECK(lb_qspec_equal(&s, &back));
        /* a row that is not whole blocks: padded (lowbit reads it, llama.cpp cannot) */
        CHECK_OK(lb_format_size(&s, 1, 300, &rb, NULL, NULL));
        CHECK(rb == 2 * (size_t)kq[i].bytes && lb_format_ggml_type(&s, 300) == -1);
        /* ... so a plan falls back: by 32 where 32 divides the row, else f16 */
        CHECK(!lb_format_ggml_fallback(&s, 768, &fb));
        CHECK(lb_format_ggml_fallback(&s, 96, &fb));
        CHECK_OK(lb_qspec_parse(kq[i].fallback32, &want));
        CHECK_MSG(lb_qspec_equal(&fb, &want) && lb_format_ggml_type(&fb, 96) >= 0, "%s on 96 columns", kq[i].name);
        CHECK(lb_format_ggml_fallback(&s, 172, &fb) && fb.family == LB_FAMILY_F16);
        /* the type fixes everything: no options */
        char opt[32];
        snprintf(opt, sizeof opt, "%s:g64", kq[i].name);
        CHECK_FAILS(lb_qspec_parse(opt, &s), LB_ERR_INVALID, "g64");
    }
    /* hand-built specs that are not the type */
    lb_qspec s;
    CHECK_OK(lb_qspec_parse("q4_k", &s));
    s.group = 16;
    CHECK_FAILS(lb_qspec_validate(&s), LB_ERR_INVALID, "fixed by the type");
    s.group = 32;
    s.ggml_type = 2;
    CHECK_FAILS(lb_qspec_validate(&s), LB_ERR_INVALID, "not a K-quant");
}

static void test_round_trips(void) {
    static const int64_t cols[] = {1, 64, 256, 300, 768};
    lb_rng r;
    lb_rng_seed(&r, 41);
    for (int i = 0; i < N_KQ; i++) {
        lb_qspec s = lb_test_spec(kq[i].name);
        for (size_t c = 0; c < sizeof cols / sizeof cols[0]; c++) {
            int f = format_round_trip(&s, 5, cols[c], &r);
            CHECK_MSG(f == 0, "%s with %lld columns: %d mismatches", kq[i].name, (long long)cols[c], f);
        }
    }
}

/* Weights that are exactly a block's values: d and dmin with few significant
 * bits (so every d sc and dmin m is exact), codes 0 and 2^b - 1 in every
 * group, and in every block one group at the extreme integers (asym: sc =
 * m = 2^k - 1; sym: sc = -2^(k-1)), so store_scales finds d and dmin back.
 * RTN must return the weights exactly. */
static void lattice_weights(const lb_qspec *s, int64_t rows, int64_t cols, lb_rng *r, float *w) {
    int64_t G = s->group, gpb = 256 / G;
    int maxq = (1 << s->bits) - 1, half = 1 << (s->bits - 1);
    int smin = lb_hscale_scale_min(s), smax = lb_hscale_scale_max(s), mmax = (1 << s->scale_bits) - 1;
    float d = 3.0f / 512.0f, dmin = 5.0f / 1024.0f;
    for (int64_t row = 0; row < rows; row++)
        for (int64_t c0 = 0; c0 < cols; c0 += G) {
            int64_t g = c0 / G, block = c0 / 256;
            int64_t groups = (cols - block * 256 + G - 1) / G; /* of this block, inside the row */
            int ext = g % gpb == (row + block) % (groups < gpb ? groups : gpb);
            int sc, m = 0;
            if (s->zero == LB_ZERO_SYM) {
                sc = (int)(lb_rng_u32(r) % (uint32_t)(2 * smax)) - smax + 1; /* nonzero, inside the range */
                if (sc <= 0) sc--;
                if (ext) sc = smin;
            } else {
                sc = ext ? smax : 1 + (int)(lb_rng_u32(r) % (uint32_t)smax);
                m = ext ? mmax : (int)(lb_rng_u32(r) % (uint32_t)(mmax + 1));
            }
            int64_t n = cols - c0 < G ? cols - c0 : G;
            for (int64_t j = 0; j < n; j++) {
                int q = j == 0 ? 0 : j == 1 ? maxq : (int)(lb_rng_u32(r) % (uint32_t)(maxq + 1));
                w[row * cols + c0 + j] = s->zero == LB_ZERO_SYM ? d * (float)sc * (float)(q - half)
                                                                : d * (float)sc * (float)q - dmin * (float)m;
            }
        }
}

static void test_exact_lattice(void) {
    static const char *clips[] = {"clip=minmax", "clip=mse"};
    static const int64_t cols[] = {512, 288};
    lb_rng r;
    lb_rng_seed(&r, 43);
    enum { R = 7 };
    float *w = malloc(R * 512 * sizeof(float)), *back = malloc(R * 512 * sizeof(float));
    for (int i = 0; i < N_KQ; i++)
        for (size_t cc = 0; cc < 2; cc++)
            for (size_t c = 0; c < 2; c++) {
                int64_t C = cols[cc];
                lb_qspec s = lb_test_spec(kq[i].name);
                lattice_weights(&s, R, C, &r, w);
                lb_method_opts o;
                CHECK_OK(lb_test_method_opts(lb_method_find("rtn"), clips[c], &o));
                lb_tensor t;
                CHECK_OK(lb_quantize_tensor(lb_method_find("rtn"), &o, NULL, w, R, C, &s, "w", &t));
                CHECK_OK(lb_dequantize(&t, back));
                float worst = 0;
                for (int64_t k = 0; k < R * C; k++) worst = fmaxf(worst, fabsf(back[k] - w[k]));
                CHECK_MSG(worst == 0.0f, "%s %lld columns %s: weights on the lattice come back with error %g",
                          kq[i].name, (long long)C, clips[c], (double)worst);
                lb_tensor_free(&t);
            }
    free(w);
    free(back);
}

/* RTN (mse) on Gaussian weights of four magnitudes: the K-quant's two-level
 * scales must not cost much against the grid of the same width and group
 * with fp16 scales (measured 0.87..0.98 of its squared error: the lattice
 * search of the group's integers finds better grids than the plain mse
 * shrink; a broken fit would be far above 1.25) */
static void test_gaussian(void) {
    enum { R = 16, C = 512 };
    static const char *plain[] = {"int2:g16:asym", "int3:g16:sym", "int4:g32:asym", "int5:g32:asym", "int6:g16:sym"};
    lb_rng r;
    lb_rng_seed(&r, 45);
    float *w = malloc(R * C * sizeof(float)), *back = malloc(R * C * sizeof(float));
    for (int k = 0; k < R * C; k++) w[k] = (float)lb_rng_normal(&r) * (1.0f + (float)(k / C % 4));
    for (int i = 0; i < N_KQ; i++) {
        double err[2];
        for (int v = 0; v < 2; v++) {
            lb_qspec s = lb_test_spec(v ? kq[i].name : plain[i]);
            lb_method_opts o;
            CHECK_OK(lb_test_method_opts(lb_method_find("rtn"), "clip=mse", &o));
            lb_tensor t;
            CHECK_OK(lb_quantize_tensor(lb_method_find("rtn"), &o, NULL, w, R, C, &s, "w", &t));
            CHECK_OK(lb_dequantize(&t, back));
            err[v] = 0;
            for (int k = 0; k < R * C; k++) err[v] += ((double)w[k] - back[k]) * ((double)w[k] - back[k]);
            lb_tensor_free(&t);
        }
        printf("  %s: squared error %.4g, %s with fp16 scales %.4g (ratio %.3f)\n", kq[i].name, err[1], plain[i],
               err[0], err[1] / err[0]);
        CHECK_MSG(err[1] < 1.25 * err[0], "%s: %g against %g", kq[i].name, err[1], err[0]);
    }
    free(w);
    free(back);
}

int main(void) {
    test_spec_and_sizes();
    test_round_trips();
    test_exact_lattice();
    test_gaussian();
    return lb_test_finish("test_kquant");
}
