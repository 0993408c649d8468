/* The vq kernels (src/kernels/lookup.h, lb_vq_repack in lookup.c,
 * ref/lookup_ref.c, x86/lookup_avx2.c) on random codes: every d in
 * {2, 3, 4, 6, 8, 16} (the AVX2 paths for 2, 4, 8, 16 and the masked one
 * for the rest), c in {1, 4, 8, 12, 16} (codes straddling bytes, and byte-
 * and word-aligned ones; 12 and 16 on fewer column counts: their books are
 * large), 1 and 2 stages, row and tensor scales, column counts that pad the
 * last vector and end inside and past the 16-column spans, batches 1..9
 * (every chunking of the AVX2 batch loop: 4, 2, 1; from 8 its tile path),
 * each against
 * dequantize + the reference GEMM (the format's dequantize_row is the
 * meaning of the bytes) and the SIMD entry against its scalar twin, within
 * float rounding. test_lookup_kernels checks that vq tensors get these
 * entries; the registry test adds vq tensors made by rtn's k-means.
 * LB_TEST_QUICK (check-asan, test-arm under qemu): c up to 12 and batches
 * 1, 2 and 9 (direct, chunked, tiled), every d, stage count, scale kind and
 * column count as above. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_check.h"
#include "kernels/lookup.h"

static lb_rng rng;

/* a tensor of spec s with random codes, codebook values and scales; stage
 * t's scales are 8^-t times stage 0's size (residual stages shrink, so the
 * float rounding bound sum |w x| is not undone by stages that cancel) */
static void random_tensor(const lb_qspec *s, int rows, int cols, lb_tensor *t, uint8_t **bytes) {
    lb_qtensor q;
    CHECK_OK(lb_qtensor_init(&q, s, rows, cols));
    const unsigned K = 1u << s->bits;
    for (int64_t r = 0; r < q.rows; r++)
        for (int64_t v = 0; v < q.vecs_per_row; v++)
            for (int st = 0; st < q.vec_stages; st++) *lb_qtensor_vcode(&q, r, v, st) = (uint16_t)(lb_rng_u32(&rng) % K);
    for (int64_t i = 0; i < q.vec_stages * q.vbook_size * q.vec_dim; i++) q.vbook[i] = (float)lb_rng_normal(&rng);
    for (int st = 0; st < q.vec_stages; st++)
        for (int64_t g = 0; g < q.n_groups; g++)
            q.scale[st * q.n_groups + g] =
                (lb_rng_u32(&rng) & 1 ? -1.0f : 1.0f) * (0.5f + lb_rng_f32(&rng)) * powf(0.125f, (float)st);
    kernel_tensor_of(&q, t, bytes);
}

static void test_entries(void) {
    static const int dims[] = {2, 3, 4, 6, 8, 16}, bits[] = {1, 4, 8, 12, 16};
    /* 5 and 13: one partial vector for d >= 8; 16, 40, 67: whole and partial
     * 16-column spans; 130 spans then a tail of 2 */
    static const int colss[] = {5, 13, 16, 40, 67, 130}, big_colss[] = {13, 67};
    static const int ns[] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, quick_ns[] = {1, 2, 9};
    const int quick = getenv("LB_TEST_QUICK") != NULL;
    const int *n_list = quick ? quick_ns : ns;
    const size_t n_count = quick ? sizeof quick_ns / sizeof quick_ns[0] : sizeof ns / sizeof ns[0];
    const size_t n_bits = sizeof bits / sizeof bits[0] - (quick ? 1 : 0); /* quick: without c = 16 */
    if (quick) printf("LB_TEST_QUICK: c up to 12, batches 1, 2, 9\n");
    const int rows = 11; /* run on 0..5 and 5..11 */
    unsigned cpu = lb_cpu_features();
    for (int e = 0; e < lb_kernel_count(); e++) {
        const lb_kernel *k = lb_kernel_at(e);
        if (strncmp(k->name, "vq_", 3) || kernel_skip_scalar(k)) continue;
        if ((k->cpu & cpu) != k->cpu) {
            printf("SKIPPED %s on random codes: this CPU (or LB_CPU) lacks its features\n", k->name);
            continue;
        }
        const lb_kernel *twin = k->twin ? lb_kernel_find(k->twin) : NULL;
        int checked = 0;
        for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++)
            for (size_t bi = 0; bi < n_bits; bi++)
                for (int stages = 1; stages <= 2; stages++)
                    for (int tensor = 0; tensor <= 1; tensor++) {
                        char text[64];
                        snprintf(text, sizeof text, "vq%dx%d:r%d:%s", dims[di], bits[bi], stages, tensor ? "tensor" : "row");
                        lb_qspec s;
                        CHECK_OK(lb_qspec_parse(text, &s));
                        const int big = bits[bi] >= 12;
                        const int *cl = big ? big_colss : colss;
                        size_t ncl = big ? sizeof big_colss / sizeof big_colss[0] : sizeof colss / sizeof colss[0];
                        for (size_t ci = 0; ci < ncl; ci++) {
                            lb_tensor t;
                            uint8_t *bytes;
                            random_tensor(&s, rows, cl[ci], &t, &bytes);
                            CHECK_MSG(k->accepts(&t.spec, &t.layout), "%s refuses %s", k->name, text);
                            checked += kernel_check_f32_entry(k, twin, &t, n_list, n_count, &rng, text);
                            lb_tensor_free(&t);
                            lb_free(bytes);
                        }
                    }
        CHECK_MSG(checked > 0, "%s: no spec here reaches it", k->name);
        printf("  %s on random codes: %d (spec, cols, batch) cases\n", k->name, checked);
    }
}

/* The float codebooks of the repacking are the stored fp16 values, stage by
 * stage, codeword by codeword (what both entries read). */
static void test_repack(void) {
    lb_qspec s;
    CHECK_OK(lb_qspec_parse("vq3x4:r2:tensor", &s));
    lb_tensor t;
    uint8_t *bytes;
    random_tensor(&s, 3, 10, &t, &bytes);
    lb_qtensor q;
    CHECK_OK(lb_qtensor_init(&q, &s, 3, 10));
    CHECK_OK(lb_qtensor_decode(&q, t.data, t.nbytes));
    const lb_kernel *k = lb_kernel_find("vq_ref");
    CHECK(k != NULL);
    CHECK_OK(lb_kernel_use(&t, k));
    for (int st = 0; st < 2; st++) {
        CHECK(!memcmp(lb_vq_book(&t, st), q.vbook + st * 16 * 3, 16 * 3 * sizeof(float)));
        CHECK(lb_vq_scale(&t, 2, st) == q.scale[st]);
    }
    lb_qtensor_free(&q);
    lb_tensor_free(&t);
    lb_free(bytes);
}

int main(void) {
    lb_rng_seed(&rng, 89);
    test_repack();
    test_entries();
    return lb_test_finish("test_vq_kernels");
}
