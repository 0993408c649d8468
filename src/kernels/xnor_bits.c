/* XNOR-popcount GEMM on packed sign bits: packing, the scalar reference
 * (the specification of the SIMD twins) and the run-time choice. */
#include <string.h>

#include "kernels/xnor_bits.h"

void lb_xnor_pack(const float *x, int n, int cols, int ldx, uint64_t *bits) {
    int words = lb_xnor_words(cols);
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * ldx;
        uint64_t *bi = bits + (size_t)i * words;
        memset(bi, 0, (size_t)words * sizeof *bi);
        for (int j = 0; j < cols; j++)
            if (xi[j] >= 0.0f) bi[j >> 6] |= (uint64_t)1 << (j & 63);
    }
}

static int popcount64(uint64_t v) {
    int c = 0;
    for (; v; v &= v - 1) c++; /* Kernighan: plain C, no reliance on a POPCNT instruction */
    return c;
}

void lb_xnor_gemm_ref(const uint64_t *a, int n, const uint64_t *w, int m, int cols, int32_t *out, int ldo) {
    int words = lb_xnor_words(cols);
    for (int i = 0; i < n; i++)
        for (int o = 0; o < m; o++) {
            const uint64_t *ai = a + (size_t)i * words, *wo = w + (size_t)o * words;
            int pc = 0;
            for (int t = 0; t < words; t++) pc += popcount64(ai[t] ^ wo[t]);
            out[(size_t)i * ldo + o] = cols - 2 * pc;
        }
}

lb_xnor_gemm_fn lb_xnor_gemm_select(const char **name) {
#if defined(__x86_64__)
    if (lb_cpu_features() & LB_CPU_AVX2) {
        if (name) *name = "avx2";
        return lb_xnor_gemm_avx2;
    }
#endif
#if defined(__aarch64__)
    if (lb_cpu_features() & LB_CPU_NEON) {
        if (name) *name = "neon";
        return lb_xnor_gemm_neon;
    }
#endif
    if (name) *name = "scalar";
    return lb_xnor_gemm_ref;
}

void lb_xnor_gemm(const uint64_t *a, int n, const uint64_t *w, int m, int cols, int32_t *out, int ldo) {
    lb_xnor_gemm_fn f = lb_xnor_gemm_select(NULL);
    int words = lb_xnor_words(cols);
    /* rows of a in chunks of 16; one thread per chunk (each output written by one thread) */
    int chunks = (n + 15) / 16;
#pragma omp parallel for schedule(static) if ((long)n * m * words > (1L << 16))
    for (int c = 0; c < chunks; c++) {
        int i0 = 16 * c, i1 = i0 + 16 < n ? i0 + 16 : n;
        f(a + (size_t)i0 * words, i1 - i0, w, m, cols, out + (size_t)i0 * ldo, ldo);
    }
}
