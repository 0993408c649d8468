/* The trellis kernels (src/kernels/trellis_pack.h, x86/trellis_avx2.c,
 * ref/trellis_ref.c) on random codes: the registry's generic test
 * (test_kernel_registry) quantizes by rtn, whose Viterbi search is
 * exponential in L, so it sees short states only; here L = 12..16. */
#include <math.h>
#include <string.h>

#include "kernel_check.h"
#include "test.h"

static lb_rng rng;

/* The trellis entries at the states the format is used with (L = 12, 16),
 * on random codes (no Viterbi search), every k and group kind, rows that
 * end inside a sequence, a 256-piece cut (600 = 3 x 200) and g16's short
 * sequences; batch 1 (the fused loop) and 2, 9 (the tile path). Each against
 * the dequantized reference and the entry's twin. */
static void test_trellis_kernels(void) {
    static const char *specs[] = {"trellis2:L12", "trellis2:L16:g64", "trellis1:L16:tensor", "trellis3:L12:g32",
                                  "trellis4:L16", "trellis4:L12:g16", "trellis1:L12:g128", "trellis3:L15:tensor",
                                  "trellis2:L12:down", "trellis3:L12:g32:down", "trellis1:L16:tensor:down",
                                  "trellis4:L16:g64:down", "trellis2:L12:s6", "trellis3:L12:g64:down:s4"};
    static const int colss[] = {8, 13, 100, 172, 256, 600}, ns[] = {1, 2, 9};
    unsigned cpu = lb_cpu_features();
    for (int e = 0; e < lb_kernel_count(); e++) {
        const lb_kernel *k = lb_kernel_at(e);
        if (strncmp(k->name, "trellis_", 8) || kernel_skip_scalar(k)) continue;
        if ((k->cpu & cpu) != k->cpu) {
            printf("SKIPPED %s on random trellis codes: this CPU (or LB_CPU) lacks its features\n", k->name);
            continue;
        }
        const lb_kernel *twin = k->twin ? lb_kernel_find(k->twin) : NULL;
        int checked = 0;
        for (size_t si = 0; si < sizeof specs / sizeof specs[0]; si++)
            for (size_t ci = 0; ci < sizeof colss / sizeof colss[0]; ci++) {
                lb_qspec s;
                CHECK_OK(lb_qspec_parse(specs[si], &s));
                /* down: 300 rows are two pieces of 150, cut in matmul's 16-row tiles and run_entry's halves */
                const int rows = s.seq_down ? (ci % 2 ? 300 : 37) : 19, cols = colss[ci];
                lb_qtensor q;
                CHECK_OK(lb_qtensor_init(&q, &s, rows, cols));
                for (int64_t i = 0; i < rows * q.cols_padded; i++) q.codes[i] = (uint8_t)(lb_rng_u32(&rng) % (1u << s.bits));
                for (int64_t g = 0; g < q.n_groups; g++) q.scale[g] = 0.01f + 0.1f * lb_rng_f32(&rng);
                CHECK_OK(lb_qtensor_store_scales(&q));
                size_t total;
                CHECK_OK(lb_format_size(&s, rows, cols, NULL, NULL, &total));
                uint8_t *bytes = lb_alloc(total);
                CHECK_OK(lb_qtensor_encode(&q, bytes));
                lb_qtensor_free(&q);
                lb_tensor t = {.spec = s, .rows = rows, .cols = cols, .data = bytes, .nbytes = total};
                CHECK_OK(lb_tensor_resolve(&t));
                CHECK_MSG(k->accepts(&t.spec, &t.layout), "%s refuses %s", k->name, specs[si]);
                checked += kernel_check_f32_entry(k, twin, &t, ns, sizeof ns / sizeof ns[0], &rng, specs[si]);
                lb_tensor_free(&t);
                lb_free(bytes);
            }
        printf("  %s on random trellis codes: %d (spec, cols, batch) cases\n", k->name, checked);
    }
}

/* lb_matmul on a trellis tensor picks a trellis entry (never the generic path) */
static void test_selected(void) {
    lb_qspec s;
    CHECK_OK(lb_qspec_parse("trellis2:L12:down:s6", &s));
    lb_layout l;
    CHECK_OK(lb_layout_compute(&s, 64, 64, &l));
    const lb_kernel *k = lb_kernel_select(&s, &l, lb_cpu_features(), NULL);
    CHECK_MSG(k && !strncmp(k->name, "trellis_", 8), "chose %s", k ? k->name : "none");
}

/* two weights per step (v2) is not in the kernel layout: every trellis
 * entry refuses it, so its tensors run the generic dequantize path */
static void test_v2_refused(void) {
    static const char *specs[] = {"trellis2:L12:v2", "trellis1:L12:down:s6:v2", "trellis4:L12:g64:v2"};
    for (size_t si = 0; si < sizeof specs / sizeof specs[0]; si++) {
        lb_qspec s;
        lb_layout l;
        CHECK_OK(lb_qspec_parse(specs[si], &s));
        CHECK_OK(lb_layout_compute(&s, 64, 64, &l));
        for (int e = 0; e < lb_kernel_count(); e++) {
            const lb_kernel *k = lb_kernel_at(e);
            if (!strncmp(k->name, "trellis_", 8)) CHECK_MSG(!k->accepts(&s, &l), "%s takes %s", k->name, specs[si]);
        }
    }
}

int main(void) {
    lb_rng_seed(&rng, 78);
    test_trellis_kernels();
    test_selected();
    test_v2_refused();
    return lb_test_finish("test_trellis_kernels");
}
