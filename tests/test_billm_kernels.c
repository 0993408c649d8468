/* The billm kernels (src/kernels/billm_pack.h, billm_pack.c,
 * ref/billm_ref.c, x86/billm_avx2.c), through lb_matmul (so the per-product
 * column permutation runs as in a model), on every group kind (g16..g256,
 * row), odd rows and columns, salient counts 0, 1, many and all:
 *   - exact known answers: parameters from small power-of-two sets and
 *     integer activations, so every weight, product and partial sum is exact
 *     in floats and each entry must equal the sum computed in doubles bit for
 *     bit (a misplaced code, column, salient bit or table entry shows);
 *   - random codes and parameters, batch 1..9: against dequantize + float
 *     GEMM within float rounding (1e-5 of sum |w x|) and the SIMD entry
 *     against its scalar twin (kernel_check.h);
 *   - the same bits at 1 and 2 threads, and for a row of a batch as for
 *     that row alone;
 *   - the rows are chosen for billm, and refuse other formats. */
#include <math.h>
#include <string.h>

#include "kernel_check.h"
#include "test.h"

static lb_rng rng;

enum { MASK_NONE, MASK_ONE, MASK_MANY, MASK_ALL, MASK_KINDS };
static const char *mask_names[] = {"no salient", "one salient", "many salient", "all salient"};

static float pick(const float *v, int n) { return v[lb_rng_u32(&rng) % (unsigned)n]; }

/* A billm tensor of spec `text` with random codes (the padding codes too: the
 * kernels must ignore them), a mask of the given kind, and parameters from
 * {0, +-0.25 .. 2} (exact) or continuous. */
static void make_tensor(const char *text, int rows, int cols, int mask, int exact, lb_tensor *t) {
    static const float pow2[] = {0.0f, 0.25f, 0.5f, 1.0f, 2.0f, -0.25f, -0.5f, -1.0f};
    lb_qspec s;
    CHECK_OK(lb_qspec_parse(text, &s));
    lb_qtensor q;
    CHECK_OK(lb_qtensor_init(&q, &s, rows, cols));
    memset(q.col_mask, 0, (size_t)q.cols_padded);
    if (mask == MASK_ONE) q.col_mask[lb_rng_u32(&rng) % (unsigned)cols] = 1;
    for (int c = 0; c < cols; c++)
        if (mask == MASK_ALL || (mask == MASK_MANY && lb_rng_u32(&rng) % 100 < 35)) q.col_mask[c] = 1;
    for (int64_t i = 0; i < rows * q.cols_padded; i++) q.codes[i] = (uint8_t)(lb_rng_u32(&rng) & 3);
    for (int64_t i = 0; i < q.n_groups * q.n_extra; i++)
        q.extra[i] = exact ? pick(pow2, (int)(sizeof pow2 / sizeof pow2[0])) : -1.0f + 2.0f * lb_rng_f32(&rng);
    kernel_tensor_from(&q, t);
}

/* the billm entries that take t on this CPU (SIMD ones only under LB_TEST_SIMD_ONLY) */
static int entries_for(const lb_tensor *t, const lb_kernel **out) {
    int n = 0;
    for (int e = 0; e < lb_kernel_count(); e++) {
        const lb_kernel *k = lb_kernel_at(e);
        if (!strncmp(k->name, "billm_", 6) && (k->cpu & lb_cpu_features()) == k->cpu && k->accepts(&t->spec, &t->layout) &&
            !kernel_skip_scalar(k))
            out[n++] = k;
    }
    return n;
}

static const char *specs[] = {"billm:g16", "billm:g32", "billm:g64", "billm", "billm:g256", "billm:row"};
#define N_SPECS (sizeof specs / sizeof specs[0])

static void test_exact(void) {
    static const int rowss[] = {1, 5, 19}, colss[] = {3, 7, 33, 100, 300, 517}, ns[] = {1, 2, 3, 9};
    int cases = 0;
    for (size_t s = 0; s < N_SPECS; s++)
        for (int m = 0; m < MASK_KINDS; m++)
            for (size_t a = 0; a < 3; a++)
                for (size_t b = 0; b < 6; b++) {
                    int rows = rowss[a], cols = colss[b];
                    lb_tensor t;
                    make_tensor(specs[s], rows, cols, m, 1, &t);
                    float *wd = lb_alloc((size_t)rows * cols * 4);
                    CHECK_OK(lb_dequantize(&t, wd));
                    const lb_kernel *ks[4];
                    int nk = entries_for(&t, ks);
                    CHECK_MSG(nk >= 1 || kernel_simd_only(), "no billm entry takes %s %dx%d", specs[s], rows, cols);
                    char what[64];
                    snprintf(what, sizeof what, "%s (%s)", specs[s], mask_names[m]);
                    for (size_t c = 0; c < 4; c++) {
                        int n = ns[c];
                        float *x = lb_alloc((size_t)n * cols * 4);
                        for (int i = 0; i < n * cols; i++) x[i] = (float)((int)(lb_rng_u32(&rng) % 5) - 2);
                        cases += kernel_check_exact(ks, nk, &t, wd, x, n, what);
                        lb_free(x);
                    }
                    lb_free(wd);
                    lb_tensor_free(&t);
                }
    printf("  exact known answers: %d (entry, spec, mask, shape, batch) cases\n", cases);
}

static void test_random(void) {
    static const int rowss[] = {1, 6, 21}, colss[] = {5, 64, 250, 700}, ns[] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    int cases = 0;
    for (size_t s = 0; s < N_SPECS; s++)
        for (int m = 0; m < MASK_KINDS; m++)
            for (size_t a = 0; a < 3; a++)
                for (size_t b = 0; b < 4; b++) {
                    int rows = rowss[a], cols = colss[b];
                    lb_tensor t;
                    make_tensor(specs[s], rows, cols, m, 0, &t);
                    const lb_kernel *ks[4];
                    int nk = entries_for(&t, ks);
                    char what[64];
                    snprintf(what, sizeof what, "%s (%s)", specs[s], mask_names[m]);
                    for (int e = 0; e < nk; e++) {
                        const lb_kernel *twin = ks[e]->twin ? lb_kernel_find(ks[e]->twin) : NULL;
                        if (twin && kernel_skip_scalar(twin)) twin = NULL;
                        cases += kernel_check_f32_entry(ks[e], twin, &t, ns, sizeof ns / sizeof ns[0], &rng, what);
                    }
                    lb_tensor_free(&t);
                }
    printf("  random codes: %d (entry, spec, mask, shape, batch) cases\n", cases);
}

/* 1 and 2 threads give the same bits; so does a row of a batch of 7 multiplied alone */
static void test_threads_and_batch(void) {
    const int rows = 300, cols = 700, n = 7;
    float *x = lb_alloc((size_t)n * cols * 4), *y1 = lb_alloc((size_t)n * rows * 4), *y2 = lb_alloc((size_t)n * rows * 4);
    float *y3 = lb_alloc((size_t)rows * 4);
    for (int i = 0; i < n * cols; i++) x[i] = (float)lb_rng_normal(&rng);
    int threads = lb_get_threads();
    for (size_t s = 0; s < N_SPECS; s++) {
        lb_tensor t;
        make_tensor(specs[s], rows, cols, MASK_MANY, 0, &t);
        const lb_kernel *ks[4];
        int nk = entries_for(&t, ks);
        for (int e = 0; e < nk; e++) {
            CHECK_OK(lb_kernel_use(&t, ks[e]));
            lb_set_threads(1);
            CHECK_OK(lb_matmul(&t, x, n, y1, NULL));
            lb_set_threads(2);
            CHECK_OK(lb_matmul(&t, x, n, y2, NULL));
            CHECK_MSG(!memcmp(y1, y2, (size_t)n * rows * 4), "%s on %s: 1 and 2 threads differ", ks[e]->name, specs[s]);
            for (int i = 0; i < n; i++) {
                CHECK_OK(lb_matmul(&t, x + (size_t)i * cols, 1, y3, NULL));
                CHECK_MSG(!memcmp(y3, y1 + (size_t)i * rows, (size_t)rows * 4), "%s on %s: row %d of the batch differs alone",
                          ks[e]->name, specs[s], i);
            }
        }
        lb_tensor_free(&t);
    }
    lb_set_threads(threads);
    lb_free(x), lb_free(y1), lb_free(y2), lb_free(y3);
}

/* lb_matmul picks the billm rows for every group kind; they take no other format */
static void test_selected(void) {
    for (size_t i = 0; i < N_SPECS; i++) {
        lb_qspec s;
        CHECK_OK(lb_qspec_parse(specs[i], &s));
        lb_layout l;
        CHECK_OK(lb_layout_compute(&s, 64, 250, &l));
        const lb_kernel *k = lb_kernel_select(&s, &l, lb_cpu_features(), NULL);
        CHECK_MSG(k && !strncmp(k->name, "billm_", 6), "%s: chose %s, expected billm_*", specs[i], k ? k->name : "none");
    }
    static const char *others[] = {"ptq161", "binary:g64", "int2:g64:asym", "onebit"};
    const lb_kernel *ref = lb_kernel_find("billm_ref");
    CHECK(ref != NULL);
    for (size_t i = 0; ref && i < sizeof others / sizeof others[0]; i++) {
        lb_qspec s;
        CHECK_OK(lb_qspec_parse(others[i], &s));
        lb_layout l;
        CHECK_OK(lb_layout_compute(&s, 64, 256, &l));
        CHECK_MSG(!ref->accepts(&s, &l), "billm_ref accepts %s", others[i]);
    }
}

int main(void) {
    lb_rng_seed(&rng, 108);
    test_exact();
    test_random();
    test_threads_and_batch();
    test_selected();
    return lb_test_finish("test_billm_kernels");
}
