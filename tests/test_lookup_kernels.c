/* The e8p and lut kernels (src/kernels/lookup.h, ref/lookup_ref.c,
 * x86/lookup_avx2.c): e8p's kernel tables against lb_e8p_codeword on all
 * 2^16 codes (and the ball's 256), then every e8p and lut entry on random
 * codes (every stage count and bit width, every group kind, odd row
 * lengths, batch 1 (the fused loop) and 2, 9 (the tile path)) against
 * dequantize + the reference GEMM and against the entry's twin. The
 * registry test quantizes by rtn on small shapes; random codes reach every
 * code and level here. Then which entries e8p, lut and vq tensors get
 * (tests/test_vq_kernels.c checks the vq entries themselves). */
#include <math.h>
#include <string.h>

#include "kernel_check.h"
#include "kernels/lookup.h"

static lb_rng rng;

/* The split tables rebuild every codeword exactly (a wrong parity, sign or
 * shift would show on some code). */
static void test_e8p_tables(void) {
    const lb_e8p_tables *tab = lb_e8p_kernel_tables();
    int bad = 0;
    for (unsigned code = 0; code < 65536 && !bad; code++) {
        float want[8];
        lb_e8p_codeword(code, want);
        for (int i = 0; i < 8; i++) {
            uint32_t u;
            float got;
            memcpy(&u, &tab->src[code >> 8][i], sizeof u);
            u ^= tab->sign[code & 255][i];
            memcpy(&got, &u, sizeof got);
            got += tab->shift[code & 255][i];
            if (got != want[i]) {
                CHECK_MSG(0, "e8p code %#x coordinate %d: tables give %g, lb_e8p_codeword %g", code, i, (double)got,
                          (double)want[i]);
                bad = 1;
            }
        }
    }
    for (unsigned c = 0; c < 256; c++) {
        float want[8];
        lb_e8_ball_codeword(c, want);
        CHECK_MSG(!memcmp(want, tab->ball[c], sizeof want), "ball code %u differs", c);
    }
    CHECK(!bad);
}

/* a tensor of random codes in spec s (rows x cols), scales / levels random */
static void random_tensor(const lb_qspec *s, int rows, int cols, lb_tensor *t, uint8_t **bytes) {
    lb_qtensor q;
    CHECK_OK(lb_qtensor_init(&q, s, rows, cols));
    if (!strcmp(s->family->name, "e8p")) {
        for (int64_t r = 0; r < q.rows; r++)
            for (int64_t v = 0; v < q.vecs_per_row; v++)
                for (int st = 0; st < q.vec_stages; st++)
                    *lb_qtensor_vcode(&q, r, v, st) = (uint16_t)(lb_rng_u32(&rng) % (lb_e8p_wide(s, st) ? 65536u : 256u));
        for (int64_t g = 0; g < q.n_groups * q.vec_stages; g++)
            q.scale[g] = (lb_rng_u32(&rng) & 1 ? -1.0f : 1.0f) * (0.01f + 0.1f * lb_rng_f32(&rng));
    } else {
        const int n = 1 << s->bits;
        for (int64_t i = 0; i < rows * q.cols_padded; i++) q.codes[i] = (uint8_t)(lb_rng_u32(&rng) % (unsigned)n);
        for (int64_t g = 0; g < q.n_groups; g++) {
            float *v = q.lut + g * n, lo = -0.2f * lb_rng_f32(&rng);
            for (int c = 0; c < n; c++) lo = v[c] = lo + 0.05f * lb_rng_f32(&rng); /* ascending */
        }
    }
    kernel_tensor_of(&q, t, bytes);
}

static void test_entries(void) {
    static const char *specs[] = {"e8p2", "e8p3", "e8p4", "e8p2:tensor", "e8p3:tensor", "e8p4:tensor",
                                  "lut1:row", "lut2:row", "lut3:row", "lut4:row", "lut1:g16", "lut2:g32",
                                  "lut3:g64", "lut4:g16", "lut4:g128", "lut3:g256", "lut1:tensor", "lut2:tensor",
                                  "lut3:tensor", "lut4:tensor"};
    static const int colss[] = {8, 13, 100, 172, 256, 600}, ns[] = {1, 2, 9};
    const int rows = 19; /* run on 0..9 and 9..19: tiles cut off the 16-row grid */
    unsigned cpu = lb_cpu_features();
    for (int e = 0; e < lb_kernel_count(); e++) {
        const lb_kernel *k = lb_kernel_at(e);
        if ((strncmp(k->name, "e8p_", 4) && strncmp(k->name, "lut_", 4)) || kernel_skip_scalar(k)) continue;
        if ((k->cpu & cpu) != k->cpu) {
            printf("SKIPPED %s on random codes: this CPU (or LB_CPU) lacks its features\n", k->name);
            continue;
        }
        const lb_kernel *twin = k->twin ? lb_kernel_find(k->twin) : NULL;
        int checked = 0;
        for (size_t si = 0; si < sizeof specs / sizeof specs[0]; si++) {
            if (strncmp(specs[si], k->name, 3)) continue;
            for (size_t ci = 0; ci < sizeof colss / sizeof colss[0]; ci++) {
                lb_qspec s;
                CHECK_OK(lb_qspec_parse(specs[si], &s));
                const int cols = colss[ci];
                lb_tensor t;
                uint8_t *bytes;
                random_tensor(&s, rows, cols, &t, &bytes);
                CHECK_MSG(k->accepts(&t.spec, &t.layout), "%s refuses %s", k->name, specs[si]);
                checked += kernel_check_f32_entry(k, twin, &t, ns, sizeof ns / sizeof ns[0], &rng, specs[si]);
                lb_tensor_free(&t);
                lb_free(bytes);
            }
        }
        CHECK_MSG(checked > 0, "%s: no spec here reaches it", k->name);
        printf("  %s on random codes: %d (spec, cols, batch) cases\n", k->name, checked);
    }
}

/* lb_matmul on e8p / lut / vq tensors picks their entries (never the
 * generic path; test_vq_kernels checks the vq entries) */
static void test_selected(void) {
    static const char *specs[] = {"e8p2",        "e8p3:tensor", "e8p4",     "lut1:g16",     "lut3:row",     "lut4:g64",
                                  "lut2:tensor", "vq8x16",      "vq4x8:r2", "vq2x3:tensor", "vq3x5:r4:row", "vq16x1:tensor"};
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        lb_qspec s;
        CHECK_OK(lb_qspec_parse(specs[i], &s));
        lb_layout l;
        CHECK_OK(lb_layout_compute(&s, 64, 100, &l));
        const lb_kernel *k = lb_kernel_select(&s, &l, lb_cpu_features(), NULL);
        const size_t fam = strlen(s.family->name);
        CHECK_MSG(k && !strncmp(k->name, s.family->name, fam) && k->name[fam] == '_', "%s: chose %s", specs[i],
                  k ? k->name : "none");
        CHECK_MSG(lb_kernel_select(&s, &l, lb_cpu_features(), "fallback")->generic, "%s: fallback", specs[i]);
    }
    /* and no other family reaches them */
    static const char *others[] = {"int4:g64:asym", "nf4:g64", "trellis2:L4", "ternary:g64:2bit"};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        lb_qspec s;
        lb_layout l;
        CHECK_OK(lb_qspec_parse(others[i], &s));
        CHECK_OK(lb_layout_compute(&s, 16, 64, &l));
        CHECK_MSG(!lb_e8p_kernel_accepts(&s, &l) && !lb_lut_kernel_accepts(&s, &l) && !lb_vq_kernel_accepts(&s, &l),
                  "%s reaches a lookup kernel", others[i]);
    }
}

int main(void) {
    lb_rng_seed(&rng, 88);
    test_e8p_tables();
    test_entries();
    test_selected();
    return lb_test_finish("test_lookup_kernels");
}
