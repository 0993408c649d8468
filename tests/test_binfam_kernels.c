/* The onebit / ptq161 / littlebit kernels (src/kernels/binfam.h,
 * binfam_pack.c, ref/binfam_ref.c, x86/binfam_avx2.c), through lb_matmul
 * (so the per-product input transform runs as in a model):
 *   - exact known answers: values chosen so that every product is exact in
 *     floats and the int8 activation grid holds the inputs exactly
 *     (|x| in {0, 127}, power-of-two parameters), so the kernel must equal
 *     the sum computed in doubles bit for bit (a misplaced bit, column or
 *     sign shows);
 *   - random codes and parameters on odd shapes, batch 1, 2, 9 and 70 (past
 *     the 64-row activation blocks): against dequantize + float GEMM within
 *     the bound the int8 activations allow (kernel_check.h), and each SIMD
 *     entry against its scalar twin;
 *   - the same result at 1 and 2 threads, with and without an activation
 *     cache shared with another tensor;
 *   - which layouts the rows take (ptq161:s0 and s100 stay generic). */
#include <math.h>
#include <string.h>

#include "kernel_check.h"
#include "test.h"

static lb_rng rng;

static float pick(const float *v, int n) { return v[lb_rng_u32(&rng) % (unsigned)n]; }

/* A tensor of spec `text` with random codes; exact: parameters from small
 * power-of-two sets (else continuous). */
static void make_tensor(const char *text, int rows, int cols, int exact, lb_tensor *t) {
    static const float pow2[] = {0.25f, 0.5f, 1.0f, 2.0f, -0.5f, -1.0f}, unit[] = {1.0f, -1.0f, 0.5f, -0.5f};
    lb_qspec s;
    CHECK_OK(lb_qspec_parse(text, &s));
    lb_qtensor q;
    CHECK_OK(lb_qtensor_init(&q, &s, rows, cols));
    const char *fam = s.family->name;
#define VAL(set, lo, hi) (exact ? pick(set, (int)(sizeof set / sizeof set[0])) : (lo) + ((hi) - (lo)) * lb_rng_f32(&rng))
    if (!strcmp(fam, "onebit")) {
        for (int64_t i = 0; i < rows * q.cols_padded; i++) q.codes[i] = (uint8_t)(lb_rng_u32(&rng) & 1);
        for (int r = 0; r < rows; r++) q.scale[r] = VAL(pow2, -0.2f, 0.3f);
        for (int c = 0; c < cols; c++) q.col_scale[c] = exact ? pick(unit, 2) : -0.5f + 2.0f * lb_rng_f32(&rng);
    } else if (!strcmp(fam, "ptq161")) {
        memset(q.col_mask, 0, (size_t)q.cols_padded);
        for (int64_t placed = 0; placed < q.n_salient;) { /* exactly k salient columns, anywhere */
            int c = (int)(lb_rng_u32(&rng) % (unsigned)cols);
            if (!q.col_mask[c]) q.col_mask[c] = 1, placed++;
        }
        for (int r = 0; r < rows; r++) {
            for (int c = 0; c < cols; c++) q.codes[r * q.cols_padded + c] = (uint8_t)(lb_rng_u32(&rng) % (q.col_mask[c] ? 16 : 2));
            q.scale[r] = VAL(pow2, 0.01f, 0.1f);
            q.offset[r] = VAL(pow2, -0.8f, 0.1f);
            q.extra[2 * r] = VAL(pow2, 0.05f, 0.3f);
            q.extra[2 * r + 1] = VAL(pow2, -0.1f, 0.1f);
        }
    } else {
        int R = q.lowrank.rank;
        for (int64_t i = 0; i < (int64_t)rows * R; i++) q.lowrank.u_sign[i] = (uint8_t)(lb_rng_u32(&rng) & 1);
        for (int64_t i = 0; i < (int64_t)cols * R; i++) q.lowrank.v_sign[i] = (uint8_t)(lb_rng_u32(&rng) & 1);
        for (int r = 0; r < rows; r++) q.lowrank.h[r] = VAL(pow2, 0.01f, 0.2f);
        for (int c = 0; c < cols; c++) q.lowrank.g[c] = VAL(unit, 0.5f, 1.5f);
        for (int j = 0; j < R; j++) q.lowrank.l[j] = VAL(pow2, 0.1f, 1.0f);
    }
#undef VAL
    kernel_tensor_from(&q, t);
}


/* registry entries with an input transform that take t on this CPU */
static int entries_for(const lb_tensor *t, const lb_kernel **out) {
    int n = 0;
    for (int e = 0; e < lb_kernel_count(); e++) {
        const lb_kernel *k = lb_kernel_at(e);
        if (k->pre && (k->cpu & lb_cpu_features()) == k->cpu && k->accepts(&t->spec, &t->layout) && !kernel_skip_scalar(k))
            out[n++] = k;
    }
    return n;
}

static const char *specs[] = {"onebit", "ptq161", "ptq161:s10", "ptq161:s90", "littlebit:r1", "littlebit:r8",
                              "littlebit:r13"};

/* |x| in {0, 127}: every 32-column block's absmax is 127 (or all zero), so
 * LB_ACT_Q8_32 holds x (and x reordered, and g x with g = +-1) exactly */
static void test_exact(void) {
    static const int rowss[] = {1, 17, 40}, colss[] = {6, 33, 100, 300}, ns[] = {1, 2, 9};
    int cases = 0;
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++)
        for (size_t a = 0; a < 3; a++)
            for (size_t b = 0; b < 4; b++) {
                int rows = rowss[a], cols = colss[b];
                lb_tensor t;
                make_tensor(specs[s], rows, cols, 1, &t);
                float *wd = lb_alloc((size_t)rows * cols * 4);
                CHECK_OK(lb_dequantize(&t, wd));
                const lb_kernel *ks[12];
                int nk = entries_for(&t, ks);
                CHECK_MSG(nk >= 1 || kernel_simd_only(), "no entry takes %s %dx%d", specs[s], rows, cols);
                for (size_t c = 0; c < 3; c++) {
                    int n = ns[c];
                    float *x = lb_alloc((size_t)n * cols * 4);
                    for (int i = 0; i < n * cols; i++) x[i] = (float)((int)(lb_rng_u32(&rng) % 3) - 1) * 127.0f;
                    cases += kernel_check_exact(ks, nk, &t, wd, x, n, specs[s]);
                    lb_free(x);
                }
                lb_free(wd);
                lb_tensor_free(&t);
            }
    printf("  exact known answers: %d (entry, spec, shape, batch) cases\n", cases);
}

static void test_random(void) {
    static const int rowss[] = {1, 19, 48}, colss[] = {7, 64, 200, 600}, ns[] = {1, 2, 9, 70};
    int cases = 0;
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++)
        for (size_t a = 0; a < 3; a++)
            for (size_t b = 0; b < 4; b++) {
                int rows = rowss[a], cols = colss[b];
                lb_tensor t;
                make_tensor(specs[s], rows, cols, 0, &t);
                float *wd = lb_alloc((size_t)rows * cols * 4);
                CHECK_OK(lb_dequantize(&t, wd));
                const lb_kernel *ks[12];
                int nk = entries_for(&t, ks);
                for (size_t c = 0; c < 4; c++) {
                    int n = ns[c];
                    float *x = lb_alloc((size_t)n * cols * 4), *y0 = lb_alloc((size_t)n * rows * 4);
                    float *y[12];
                    double *bound = lb_alloc((size_t)n * rows * sizeof(double)), *mag = lb_alloc((size_t)n * rows * sizeof(double));
                    for (int i = 0; i < n * cols; i++) x[i] = (float)lb_rng_normal(&rng);
                    x[0] = 4.0f; /* an outlier: a block its neighbours do not fill */
                    lb_gemm_nt_ref(n, rows, cols, x, cols, wd, cols, y0, rows);
                    CHECK(kernel_binfam_bound(&t, x, n, wd, 1e-5, bound, mag));
                    for (int e = 0; e < nk; e++) {
                        y[e] = lb_alloc((size_t)n * rows * 4);
                        CHECK_OK(lb_kernel_use(&t, ks[e]));
                        CHECK_OK(lb_matmul(&t, x, n, y[e], NULL));
                        for (size_t o = 0; o < (size_t)n * rows; o++)
                            CHECK_MSG(fabs((double)y[e][o] - y0[o]) <= bound[o], "%s on %s %dx%d n %d: y[%zu] %.9g vs reference %.9g (bound %.3g)",
                                      ks[e]->name, specs[s], rows, cols, n, o, y[e][o], y0[o], bound[o]);
                        cases++;
                    }
                    for (int e = 0; e < nk; e++) { /* SIMD against its scalar twin: only the float order differs */
                        for (int f = 0; f < nk; f++)
                            if (ks[e]->twin && !strcmp(ks[e]->twin, ks[f]->name))
                                for (size_t o = 0; o < (size_t)n * rows; o++)
                                    CHECK_MSG(fabs((double)y[e][o] - y[f][o]) <= 1e-5 * mag[o] + 1e-30, "%s vs %s on %s %dx%d n %d: y[%zu] %.9g vs %.9g",
                                              ks[e]->name, ks[f]->name, specs[s], rows, cols, n, o, y[e][o], y[f][o]);
                    }
                    for (int e = 0; e < nk; e++) lb_free(y[e]);
                    lb_free(x);
                    lb_free(y0);
                    lb_free(bound);
                    lb_free(mag);
                }
                lb_free(wd);
                lb_tensor_free(&t);
            }
    printf("  random codes: %d (entry, spec, shape, batch) cases\n", cases);
}

/* the row tiles of a multi-threaded product and a shared activation cache
 * change nothing (the transformed input never enters the cache: the q8_0
 * tensor read after it sees its own input prepared) */
static void test_threads_and_cache(void) {
    const int rows = 300, cols = 700, n = 3;
    lb_tensor other;
    {
        float *w = lb_alloc((size_t)rows * cols * 4);
        for (int i = 0; i < rows * cols; i++) w[i] = (float)lb_rng_normal(&rng);
        lb_qspec q8;
        CHECK_OK(lb_qspec_parse("q8_0", &q8));
        CHECK_OK(lb_quantize_to_tensor(w, rows, cols, &q8, NULL, "q8", &other));
        lb_free(w);
    }
    float *x = lb_alloc((size_t)n * cols * 4), *y1 = lb_alloc((size_t)n * rows * 4), *y2 = lb_alloc((size_t)n * rows * 4);
    float *z1 = lb_alloc((size_t)n * rows * 4), *z2 = lb_alloc((size_t)n * rows * 4);
    for (int i = 0; i < n * cols; i++) x[i] = (float)lb_rng_normal(&rng);
    int threads = lb_get_threads();
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
        lb_tensor t;
        make_tensor(specs[s], rows, cols, 0, &t);
        const lb_kernel *ks[12];
        int nk = entries_for(&t, ks);
        for (int e = 0; e < nk; e++) {
            CHECK_OK(lb_kernel_use(&t, ks[e]));
            lb_set_threads(1);
            CHECK_OK(lb_matmul(&t, x, n, y1, NULL));
            CHECK_OK(lb_matmul(&other, x, n, z1, NULL));
            lb_set_threads(2);
            lb_act_cache *cache;
            CHECK_OK(lb_act_cache_create(n, cols, &cache));
            CHECK_OK(lb_matmul(&t, x, n, y2, cache));
            CHECK_OK(lb_matmul(&other, x, n, z2, cache));
            CHECK_MSG(!memcmp(y1, y2, (size_t)n * rows * 4), "%s on %s: 1 and 2 threads (cache) differ", ks[e]->name, specs[s]);
            CHECK_MSG(!memcmp(z1, z2, (size_t)n * rows * 4), "q8_0 after %s on a shared cache differs", ks[e]->name);
            CHECK_OK(lb_matmul(&t, x, n, y2, cache)); /* again, the cache now warm */
            CHECK_MSG(!memcmp(y1, y2, (size_t)n * rows * 4), "%s on %s: a warm cache changes the result", ks[e]->name, specs[s]);
            lb_act_cache_free(cache);
        }
        lb_tensor_free(&t);
    }
    lb_set_threads(threads);
    lb_tensor_free(&other);
    lb_free(x), lb_free(y1), lb_free(y2), lb_free(z1), lb_free(z2);
}

/* lb_matmul picks these rows for the three families, and leaves the layouts
 * they refuse to the generic path */
static void test_selected(void) {
    static const struct {
        const char *spec;
        const char *prefix; /* of the chosen entry */
    } cases[] = {{"onebit", "onebit_"}, {"ptq161", "ptq161_"}, {"ptq161:s1", "ptq161_"}, {"littlebit:r8", "littlebit_"},
                 {"littlebit:r1024", "littlebit_"}, {"ptq161:s0", "dequant_"}, {"ptq161:s100", "dequant_"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lb_qspec s;
        CHECK_OK(lb_qspec_parse(cases[i].spec, &s));
        lb_layout l;
        CHECK_OK(lb_layout_compute(&s, 64, 256, &l));
        const lb_kernel *k = lb_kernel_select(&s, &l, lb_cpu_features(), NULL);
        CHECK_MSG(k && !strncmp(k->name, cases[i].prefix, strlen(cases[i].prefix)), "%s: chose %s, expected %s*",
                  cases[i].spec, k ? k->name : "none", cases[i].prefix);
    }
}

int main(void) {
    lb_rng_seed(&rng, 161);
    test_exact();
    test_random();
    test_threads_and_cache();
    test_selected();
    return lb_test_finish("test_binfam_kernels");
}
