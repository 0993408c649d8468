/* The trellis kernels (src/kernels/trellis_pack.h, x86/trellis_avx2.c,
 * ref/trellis_ref.c) on random codes: the registry's generic test
 * (test_kernel_registry) quantizes by rtn, whose Viterbi search is
 * exponential in L, so it sees short states only; here L = 12..16, and
 * two weights per step (v2) at every K and both ends of L's range. */
#include <math.h>
#include <string.h>

#include "kernel_check.h"
#include "test.h"

static lb_rng rng;

/* a trellis tensor of spec text `spec`, rows x cols, of random codes and
 * scales (no Viterbi search); *bytes to lb_free after lb_tensor_free */
static lb_tensor random_trellis(const char *spec, int rows, int cols, uint8_t **bytes) {
    lb_qspec s;
    CHECK_OK(lb_qspec_parse(spec, &s));
    lb_qtensor q;
    CHECK_OK(lb_qtensor_init(&q, &s, rows, cols));
    /* with v2 only a step's first code is stored (and down, the tail row's): the rest are ignored */
    for (int64_t i = 0; i < rows * q.cols_padded; i++) q.codes[i] = (uint8_t)(lb_rng_u32(&rng) % (1u << s.bits));
    for (int64_t g = 0; g < q.n_groups; g++) q.scale[g] = 0.01f + 0.1f * lb_rng_f32(&rng);
    CHECK_OK(lb_qtensor_store_scales(&q));
    size_t total;
    CHECK_OK(lb_format_size(&s, rows, cols, NULL, NULL, &total));
    *bytes = lb_alloc(total);
    CHECK_OK(lb_qtensor_encode(&q, *bytes));
    lb_qtensor_free(&q);
    lb_tensor t = {.spec = s, .rows = rows, .cols = cols, .data = *bytes, .nbytes = total};
    CHECK_OK(lb_tensor_resolve(&t));
    return t;
}

/* the trellis entries this CPU runs (a message for each it cannot) */
static int runnable(const lb_kernel *k) {
    if (strncmp(k->name, "trellis_", 8) || kernel_skip_scalar(k)) return 0;
    if ((k->cpu & lb_cpu_features()) != k->cpu) {
        printf("SKIPPED %s on random trellis codes: this CPU (or LB_CPU) lacks its features\n", k->name);
        return 0;
    }
    return 1;
}

/* y (n x rows) of entry k on t over the row ranges [0, a), [a, rows) */
static void run_split(const lb_kernel *k, lb_tensor *t, const float *x, int n, int a, float *y) {
    const int rows = (int)t->rows, cols = (int)t->cols;
    CHECK_OK(lb_kernel_use(t, k));
    void *buf = lb_alloc(lb_act_bytes(k->act, n, cols) + 64);
    float *scratch = lb_alloc((size_t)k->scratch_rows * cols * sizeof(float));
    lb_act act;
    lb_act_prepare(k->act, x, n, cols, buf, &act);
    if (a > 0) k->run(t, &act, 0, a, y, rows, scratch);
    if (a < rows) k->run(t, &act, a, rows, y, rows, scratch);
    lb_free(scratch);
    lb_free(buf);
}

/* lb_matmul cuts rows at multiples of 16 whatever the thread count (the
 * float GEMM of the tile path groups rows by 4 and 2): such cuts give the
 * same bits as one call; at batch 1 (the fused loops) any cut does */
static void check_splits(const lb_kernel *k, lb_tensor *t, const char *what) {
    const int rows = (int)t->rows, cols = (int)t->cols;
    for (int n = 1; n <= 9; n += 8) {
        float *x = lb_alloc((size_t)n * cols * 4), *y0 = lb_alloc((size_t)n * rows * 4), *y1 = lb_alloc((size_t)n * rows * 4);
        kernel_fill(&rng, x, (size_t)n * cols, 1.0f);
        run_split(k, t, x, n, rows, y0);
        for (int a = 1; a < rows && a < 48; a++) {
            if (n > 1 && a % 16) continue;
            run_split(k, t, x, n, a, y1);
            CHECK_MSG(!memcmp(y0, y1, (size_t)n * rows * 4), "%s on %s %dx%d n %d: rows split at %d differ", k->name,
                      what, rows, cols, n, a);
        }
        lb_free(x), lb_free(y0), lb_free(y1);
    }
}

/* specs x cols (rows 19 along rows, down_rows[ci] down) x batches, on
 * random codes: each entry against the dequantized reference and its
 * twin, and check_splits */
typedef struct {
    const char *const *specs;
    size_t n_specs;
    const int *colss, *down_rows;
    size_t n_cols;
    const int *ns;
    size_t n_ns;
    const char *what;
} case_set;

static void check_set(const case_set *cs) {
    for (int e = 0; e < lb_kernel_count(); e++) {
        const lb_kernel *k = lb_kernel_at(e);
        if (!runnable(k)) continue;
        const lb_kernel *twin = k->twin ? lb_kernel_find(k->twin) : NULL;
        int checked = 0;
        for (size_t si = 0; si < cs->n_specs; si++)
            for (size_t ci = 0; ci < cs->n_cols; ci++) {
                const char *spec = cs->specs[si];
                const int rows = strstr(spec, "down") ? cs->down_rows[ci] : 19;
                uint8_t *bytes;
                lb_tensor t = random_trellis(spec, rows, cs->colss[ci], &bytes);
                CHECK_MSG(k->accepts(&t.spec, &t.layout), "%s refuses %s", k->name, spec);
                checked += kernel_check_f32_entry(k, twin, &t, cs->ns, cs->n_ns, &rng, spec);
                check_splits(k, &t, spec);
                lb_tensor_free(&t);
                lb_free(bytes);
            }
        printf("  %s on random %s: %d (spec, cols, batch) cases\n", k->name, cs->what, checked);
    }
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* The trellis entries at the states the format is used with (L = 12, 16),
 * on random codes (no Viterbi search), every k and group kind, rows that
 * end inside a sequence, a 256-piece cut (600 = 3 x 200) and g16's short
 * sequences; down, 300 rows are two pieces of 150, cut in matmul's 16-row
 * tiles and run_entry's halves; batch 1 (the fused loop) and 2, 9 (the
 * tile path). */
static void test_trellis_kernels(void) {
    static const char *specs[] = {"trellis2:L12", "trellis2:L16:g64", "trellis1:L16:tensor", "trellis3:L12:g32",
                                  "trellis4:L16", "trellis4:L12:g16", "trellis1:L12:g128", "trellis3:L15:tensor",
                                  "trellis2:L12:down", "trellis3:L12:g32:down", "trellis1:L16:tensor:down",
                                  "trellis4:L16:g64:down", "trellis2:L12:s6", "trellis3:L12:g64:down:s4"};
    static const int colss[] = {8, 13, 100, 172, 256, 600}, down_rows[] = {37, 300, 37, 300, 37, 300}, ns[] = {1, 2, 9};
    check_set(&(case_set){specs, COUNT(specs), colss, down_rows, COUNT(colss), ns, COUNT(ns), "trellis codes"});
}

/* v2 (two weights per step): every K = 1..6 at both ends of its state
 * range (L = 2K and the largest multiple of K up to 16), every group kind,
 * along rows and down, fp16 and s6 / s4 coded scales; odd cols (a
 * sequence ending inside a step), odd rows (down: the last step's missing
 * second row, and run_entry's halves starting inside a step), a 128-step
 * cut (down 300 and 301 rows: pieces of 150 and 150 / 151), one row; batch
 * 1..9 (1: the fused loops, more: the tiles). */
static void test_v2_kernels(void) {
    static const char *specs[] = {
        "trellis1:L2:row:v2",          "trellis1:L16:g64:v2",           "trellis1:L12:row:down:s6:v2",
        "trellis2:L4:tensor:v2",       "trellis2:L16:row:down:v2",      "trellis2:L12:g256:s6:v2",
        "trellis3:L6:g32:down:v2",     "trellis3:L15:row:s6:v2",        "trellis4:L8:g16:v2",
        "trellis4:L16:tensor:down:v2", "trellis5:L10:row:down:s6:v2",   "trellis5:L15:g128:v2",
        "trellis6:L12:row:v2",         "trellis6:L12:g64:down:s4:v2",   "trellis1:L2:g16:down:v2"};
    static const int colss[] = {2, 13, 64, 171, 600}, down_rows[] = {23, 300, 1, 301, 40};
    static const int ns[] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    check_set(&(case_set){specs, COUNT(specs), colss, down_rows, COUNT(colss), ns, COUNT(ns), "v2 trellis codes"});
}

/* lb_matmul on a trellis tensor picks a trellis entry (never the generic path), v2 too */
static void test_selected(void) {
    static const char *specs[] = {"trellis2:L12:down:s6", "trellis1:L12:row:v2", "trellis5:L15:row:down:s6:v2"};
    for (size_t si = 0; si < sizeof specs / sizeof specs[0]; si++) {
        lb_qspec s;
        CHECK_OK(lb_qspec_parse(specs[si], &s));
        lb_layout l;
        CHECK_OK(lb_layout_compute(&s, 64, 64, &l));
        const lb_kernel *k = lb_kernel_select(&s, &l, lb_cpu_features(), NULL);
        CHECK_MSG(k && !strncmp(k->name, "trellis_", 8), "%s: chose %s", specs[si], k ? k->name : "none");
    }
}

int main(void) {
    lb_rng_seed(&rng, 78);
    test_trellis_kernels();
    test_v2_kernels();
    test_selected();
    return lb_test_finish("test_trellis_kernels");
}
