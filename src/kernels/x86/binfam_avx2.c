/* onebit, ptq161 and littlebit, AVX2: the twins of ref/binfam_ref.c.
 * onebit and ptq161 run uniform_avx2 on their parts (the same panels as the
 * scalar rows). littlebit's sign dots take 8 weights per byte: the byte
 * broadcast to 8 lanes and shifted left by 31 - j (vpsllvd) puts bit j in
 * lane j's sign bit, which (masked) flips the sign of x_j by one xor; the
 * sum is of (bit ? -x : x), negated at the end. */
#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels/binfam.h"
#include "kernels/x86/avx2_sums.h"

#define LB_AVX2 __attribute__((target("avx2,fma,f16c")))

LB_AVX2 void lb_kernel_onebit_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                                   float *scratch) {
    lb_binfam_onebit_run(lb_kernel_uniform_avx2, w, x, r0, r1, y, ldy, scratch);
}

LB_AVX2 void lb_kernel_ptq161_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                                   float *scratch) {
    lb_binfam_ptq161_run(lb_kernel_uniform_avx2, w, x, r0, r1, y, ldy, scratch);
}

LB_AVX2 static inline __attribute__((always_inline)) __m256 flip(uint8_t byte, __m256 x) {
    const __m256i shift = _mm256_setr_epi32(31, 30, 29, 28, 27, 26, 25, 24);
    const __m256i sign = _mm256_set1_epi32((int)0x80000000u);
    __m256i m = _mm256_and_si256(_mm256_sllv_epi32(_mm256_set1_epi32(byte), shift), sign);
    return _mm256_xor_ps(x, _mm256_castsi256_ps(m));
}

/* sum_j (bit j ? x_j : -x_j), j < n8; four accumulators over 32 columns */
LB_AVX2 static float sign_dot_avx2(const uint8_t *bits, const float *x, int64_t n8) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 32 <= n8; j += 32) {
        const uint8_t *b = bits + j / 8;
        a0 = _mm256_add_ps(a0, flip(b[0], _mm256_loadu_ps(x + j)));
        a1 = _mm256_add_ps(a1, flip(b[1], _mm256_loadu_ps(x + j + 8)));
        a2 = _mm256_add_ps(a2, flip(b[2], _mm256_loadu_ps(x + j + 16)));
        a3 = _mm256_add_ps(a3, flip(b[3], _mm256_loadu_ps(x + j + 24)));
    }
    for (; j < n8; j += 8) a0 = _mm256_add_ps(a0, flip(bits[j / 8], _mm256_loadu_ps(x + j)));
    return -hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
}

/* sum_j (bit j ? g_j x_j : -g_j x_j), j < n (any n: the last n % 8 in scalar) */
LB_AVX2 static float sign_dot_scaled_avx2(const uint8_t *bits, const float *g, const float *x, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        a0 = _mm256_add_ps(a0, flip(bits[j / 8], _mm256_mul_ps(_mm256_loadu_ps(g + j), _mm256_loadu_ps(x + j))));
        a1 = _mm256_add_ps(a1, flip(bits[j / 8 + 1], _mm256_mul_ps(_mm256_loadu_ps(g + j + 8), _mm256_loadu_ps(x + j + 8))));
    }
    for (; j + 8 <= n; j += 8)
        a0 = _mm256_add_ps(a0, flip(bits[j / 8], _mm256_mul_ps(_mm256_loadu_ps(g + j), _mm256_loadu_ps(x + j))));
    float s = -hsum(_mm256_add_ps(a0, a1));
    for (; j < n; j++) {
        float v = g[j] * x[j];
        s += (bits[j >> 3] >> (j & 7) & 1) ? v : -v;
    }
    return s;
}

LB_AVX2 void lb_littlebit_pre_avx2(const lb_tensor *w, const float *x, int n, float *out) {
    lb_littlebit_first_factor(w, x, n, out, sign_dot_scaled_avx2);
}

LB_AVX2 void lb_kernel_littlebit_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                                      float *scratch) {
    (void)scratch;
    const lb_littlebit_pack *p = lb_lbit(w);
    const float *h = (const float *)lb_lbit_bytes(w, p->h_off);
    const uint8_t *u = lb_lbit_bytes(w, p->u_off);
    for (int r = r0; r < r1; r++)
        for (int i = 0; i < x->n; i++)
            y[(size_t)i * ldy + r] = h[r] * sign_dot_avx2(u + (size_t)r * (p->r8 / 8), x->f + (size_t)i * x->ld, p->r8);
}
#endif
