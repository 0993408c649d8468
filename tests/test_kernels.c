/* Every SIMD kernel against its scalar reference, on random shapes with odd
 * sizes, and lb_matmul (the dispatch over formats) against
 * dequantize-then-reference-GEMM; tests/test_kernel_registry.c checks every
 * registry entry on its own. */
#include "test.h"

#include "kernel_check.h"
#include "kernels/kernels.h"

static lb_rng rng;

static void fill(float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = scale * (float)lb_rng_normal(&rng);
}

/* |a - b| within tol relative to the magnitude of the sum's terms */
static int close_rel(const float *a, const float *b, const float *mag, size_t n, double tol) {
    for (size_t i = 0; i < n; i++)
        if (!(fabs((double)a[i] - b[i]) <= tol * (mag[i] + 1e-30))) {
            fprintf(stderr, "  element %zu: %.9g vs %.9g (magnitude %.3g)\n", i, a[i], b[i], mag[i]);
            return 0;
        }
    return 1;
}

static void test_gemm(const lb_kernel_table *k) {
    static const int shapes[][3] = {{1, 1, 1},  {1, 4, 8},     {4, 2, 8},    {5, 3, 7},   {3, 9, 64},
                                    {4, 16, 64}, {7, 13, 172}, {9, 5, 1000}, {16, 33, 65}, {2, 1, 17}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int n = shapes[s][0], m = shapes[s][1], kk = shapes[s][2];
        int ldx = kk + 3, ldw = kk + 1, ldy = m + 2; /* strides wider than the rows */
        float *x = lb_alloc((size_t)n * ldx * 4), *w = lb_alloc((size_t)m * ldw * 4);
        float *y0 = lb_calloc((size_t)n * ldy, 4), *y1 = lb_calloc((size_t)n * ldy, 4), *mag = lb_calloc((size_t)n * ldy, 4);
        fill(x, (size_t)n * ldx, 1.0f);
        fill(w, (size_t)m * ldw, 0.1f);
        lb_gemm_nt_ref(n, m, kk, x, ldx, w, ldw, y0, ldy);
        k->gemm_nt(n, m, kk, x, ldx, w, ldw, y1, ldy);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < m; j++)
                for (int c = 0; c < kk; c++) mag[i * ldy + j] += fabsf(x[i * ldx + c] * w[j * ldw + c]);
        CHECK_MSG(close_rel(y0, y1, mag, (size_t)n * ldy, 1e-5), "gemm %dx%dx%d (%s)", n, m, kk, k->name);
        lb_free(x);
        lb_free(w);
        lb_free(y0);
        lb_free(y1);
        lb_free(mag);
    }
}

static void test_attend(const lb_kernel_table *k) {
    static const int cases[][2] = {{1, 8}, {7, 8}, {8, 8}, {9, 8}, {100, 8}, {513, 8}, {33, 16}, {17, 5}, {64, 64}, {3, 1}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int n_ctx = cases[c][0], hd = cases[c][1];
        size_t kt_stride = (size_t)n_ctx + 5, v_stride = (size_t)hd + 3;
        float *q = lb_alloc((size_t)hd * 4), *kt = lb_alloc((size_t)hd * kt_stride * 4);
        float *v = lb_alloc((size_t)n_ctx * v_stride * 4), *att = lb_alloc((size_t)n_ctx * 4);
        float o0[64], o1[64], mag[64];
        fill(q, (size_t)hd, 1.0f);
        fill(kt, (size_t)hd * kt_stride, 1.0f);
        fill(v, (size_t)n_ctx * v_stride, 1.0f);
        lb_attend_ref(q, kt, kt_stride, v, v_stride, n_ctx, hd, 0.35f, att, o0);
        k->attend(q, kt, kt_stride, v, v_stride, n_ctx, hd, 0.35f, att, o1);
        /* the output is a convex combination of value rows: bound by their magnitude */
        for (int d = 0; d < hd; d++) {
            mag[d] = 0;
            for (int t = 0; t < n_ctx; t++) mag[d] = fmaxf(mag[d], fabsf(v[(size_t)t * v_stride + d]));
        }
        CHECK_MSG(close_rel(o0, o1, mag, (size_t)hd, 2e-5), "attend n_ctx %d hd %d (%s)", n_ctx, hd, k->name);
        lb_free(q);
        lb_free(kt);
        lb_free(v);
        lb_free(att);
    }
    /* extreme scores: one dominant position, and scores far below it */
    float q[8] = {100, 0, 0, 0, 0, 0, 0, 0}, kt[8 * 12] = {0}, v[12 * 8], att[12], o0[8], o1[8];
    for (int t = 0; t < 12; t++) {
        kt[t] = t == 5 ? 10.0f : -10.0f;
        for (int d = 0; d < 8; d++) v[t * 8 + d] = (float)(t * 8 + d);
    }
    lb_attend_ref(q, kt, 12, v, 8, 12, 8, 1.0f, att, o0);
    k->attend(q, kt, 12, v, 8, 12, 8, 1.0f, att, o1);
    for (int d = 0; d < 8; d++) CHECK(o0[d] == 40.0f + d && o1[d] == 40.0f + d);
}

static void test_silu(const lb_kernel_table *k) {
    enum { N = 1003 };
    float g[N], u[N], r0[N], r1[N], mag[N];
    fill(g, N, 4.0f);
    fill(u, N, 1.0f);
    g[0] = -100.0f; /* exp overflow side: silu -> -0 */
    g[1] = 100.0f;
    g[2] = -87.5f;
    g[3] = 88.0f;
    g[4] = 0.0f;
    memcpy(r0, g, sizeof g);
    memcpy(r1, g, sizeof g);
    lb_silu_mul_ref(r0, u, N);
    k->silu_mul(r1, u, N);
    for (int i = 0; i < N; i++) mag[i] = fabsf(g[i] * u[i]);
    CHECK_MSG(close_rel(r0, r1, mag, N, 1e-6), "silu_mul (%s)", k->name);
    for (int i = 0; i < N; i++) CHECK(isfinite(r1[i]));
}

/* lb_matmul for every family equals dequantize + reference GEMM */
static void test_linear_forward(void) {
    static const char *specs[] = {"f32", "f16", "bf16", "q4_0", "int3:g64:asym:zint", "int5:row:sym", "nf4:g32:dq",
                                  "binary:g64", "ternary:tensor:1.6bit", "int2:g16:asym", "pow2:4:g64"};
    const int rows = 37, cols = 172, n = 6;
    float *w = lb_alloc((size_t)rows * cols * 4), *x = lb_alloc((size_t)n * cols * 4);
    float *wd = lb_alloc((size_t)rows * cols * 4), *y0 = lb_alloc((size_t)n * rows * 4), *y1 = lb_alloc((size_t)n * rows * 4);
    double *bound = lb_calloc((size_t)n * rows, sizeof(double));
    fill(w, (size_t)rows * cols, 0.05f);
    fill(x, (size_t)n * cols, 1.0f);
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
        lb_qspec spec;
        lb_tensor t;
        CHECK_OK(lb_qspec_parse(specs[s], &spec));
        CHECK_OK(lb_quantize_to_tensor(w, rows, cols, &spec, NULL, "w", &t));
        CHECK_OK(lb_dequantize(&t, wd));
        lb_gemm_nt_ref(n, rows, cols, x, cols, wd, cols, y0, rows);
        CHECK_OK(lb_matmul(&t, x, n, y1, NULL));
        /* integer kernels quantize the activations: kernel_check.h's bound */
        kernel_error_bound(lb_kernel_for(&t)->act, x, n, wd, rows, cols, 1e-5, bound);
        for (size_t j = 0; j < (size_t)n * rows; j++)
            CHECK_MSG(fabs((double)y0[j] - y1[j]) <= bound[j], "linear %s (kernel %s): element %zu: %.9g vs %.9g, bound %.3g",
                      specs[s], lb_matmul_kernel_name(&t), j, y0[j], y1[j], bound[j]);
        lb_tensor_free(&t);
    }
    lb_free(w);
    lb_free(x);
    lb_free(wd);
    lb_free(y0);
    lb_free(y1);
    lb_free(bound);
}

int main(void) {
    lb_rng_seed(&rng, 2024);
    const lb_kernel_table *best = lb_kernels(), *ref = lb_kernels_reference();
    printf("kernels: %s\n", best->name);
    if (best == ref) printf("note: no SIMD kernels for this CPU; comparing the reference with itself\n");
    test_gemm(best);
    test_attend(best);
    test_silu(best);
#if defined(__x86_64__)
    /* the AVX2 table is tested whenever the CPU can run it, even if dispatch
     * would choose something else */
    unsigned f = lb_cpu_features();
    if ((f & LB_CPU_AVX2) && (f & LB_CPU_FMA)) {
        lb_kernel_table avx2 = {"avx2", lb_gemm_nt_avx2, lb_attend_avx2, lb_silu_mul_avx2};
        test_gemm(&avx2);
        test_attend(&avx2);
        test_silu(&avx2);
    } else {
        printf("note: AVX2+FMA unavailable (or masked by LB_CPU=generic): AVX2 kernels not tested in this run\n");
    }
#endif
#if defined(__aarch64__)
    if (lb_cpu_features() & LB_CPU_NEON) {
        lb_kernel_table neon = {"neon", lb_gemm_nt_neon, lb_attend_neon, lb_silu_mul_neon};
        test_gemm(&neon);
        test_attend(&neon);
        test_silu(&neon);
    } else {
        printf("SKIPPED the NEON kernels: masked by LB_CPU=generic\n");
    }
#endif
    test_linear_forward();
    return lb_test_finish("test_kernels");
}
