/* Codebook matmul kernels, AVX2: the twins of ref/codebook_ref.c (nf4, and
 * pow2 at 3 and 4 bits). Each 32-weight block is decoded once into 32 int8
 * values (codebook_x86.h: vpshufb on the 16-entry table), then dotted with
 * int8 activation blocks by the sign trick of int8_avx2.c (vpmaddubsw on
 * |v| and sign(v) * a, exact: |v| <= 127, pair sums < 2^15; vpmaddwd into 8
 * int32 lanes). Integer sums equal the reference's; only the float sum over
 * blocks runs in another order.
 *
 * Tiles as in int8_avx2.c: one weight row against 4 activation rows (the
 * block is decoded once for the four: batches amortize the decoding), the
 * activation rows left over (all of them at batch 1) against 4 weight rows
 * at a time (one activation load serves four rows), then single rows. */
#if defined(__x86_64__)
#include "kernels/x86/codebook_x86.h"
#include "kernels/x86/avx2_sums.h"

#define AVX2 LB_CB_AVX2
#define INLINE LB_CB_INLINE

/* 8 int32 partial sums of v . a as floats, aw = |v| */
AVX2 static INLINE __m256 dot(__m256i aw, __m256i v, __m256i a) {
    __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(a, v)), _mm256_set1_epi16(1));
    return _mm256_cvtepi32_ps(p);
}

AVX2 static INLINE void row_x4(const lb_cb *c, lb_cb_kind kind, __m256i tab, int r, const lb_act *x, int i, float *y,
                               int ldy) {
    const uint8_t *row = c->data + (size_t)r * c->rb;
    size_t lq = (size_t)x->ld, ld = lq / 32;
    const int8_t *q0 = x->q + (size_t)i * lq;
    const float *d0 = x->d + (size_t)i * ld;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int b = 0; b < c->nb; b++) {
        __m256i v = lb_cb_values_avx2(c, kind, row, b, tab), aw = _mm256_sign_epi8(v, v);
        float s = lb_cb_scale_f16c(c, row, r, b);
#pragma GCC unroll 8 /* acc[] in registers, not on the stack */
        for (int k = 0; k < 4; k++) {
            __m256i a = _mm256_loadu_si256((const __m256i *)(q0 + k * lq + (size_t)b * 32));
            acc[k] = _mm256_fmadd_ps(dot(aw, v, a), _mm256_set1_ps(s * d0[k * ld + b]), acc[k]);
        }
    }
    float out[4];
    _mm_storeu_ps(out, hsum4(acc));
    for (int k = 0; k < 4; k++) y[(size_t)(i + k) * ldy + r] = out[k];
}

/* weight rows r..r+3 against one activation row */
AVX2 static INLINE void rows4_x1(const lb_cb *c, lb_cb_kind kind, __m256i tab, int r, const int8_t *xq,
                                 const float *xd, float *y) {
    const uint8_t *row = c->data + (size_t)r * c->rb;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int b = 0; b < c->nb; b++) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(xq + (size_t)b * 32));
        float dx = xd[b];
#pragma GCC unroll 8 /* acc[] in registers, not on the stack */
        for (int k = 0; k < 4; k++) {
            const uint8_t *rk = row + k * c->rb;
            __m256i v = lb_cb_values_avx2(c, kind, rk, b, tab);
            float s = lb_cb_scale_f16c(c, rk, r + k, b);
            acc[k] = _mm256_fmadd_ps(dot(_mm256_sign_epi8(v, v), v, a), _mm256_set1_ps(s * dx), acc[k]);
        }
    }
    _mm_storeu_ps(y + r, hsum4(acc));
}

AVX2 static INLINE float row_x1(const lb_cb *c, lb_cb_kind kind, __m256i tab, int r, const int8_t *xq,
                                const float *xd) {
    const uint8_t *row = c->data + (size_t)r * c->rb;
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < c->nb; b++) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(xq + (size_t)b * 32));
        __m256i v = lb_cb_values_avx2(c, kind, row, b, tab);
        float s = lb_cb_scale_f16c(c, row, r, b);
        acc = _mm256_fmadd_ps(dot(_mm256_sign_epi8(v, v), v, a), _mm256_set1_ps(s * xd[b]), acc);
    }
    return hsum(acc);
}

AVX2 static INLINE void codebook_avx2(const lb_tensor *w, lb_cb_kind kind, const lb_act *x, int r0, int r1, float *y,
                                      int ldy) {
    lb_cb c = lb_cb_of(w, kind);
    __m256i tab = lb_cb_table(kind);
    int n4 = x->n / 4 * 4;
    for (int r = r0; r < r1; r++)
        for (int i = 0; i < n4; i += 4) row_x4(&c, kind, tab, r, x, i, y, ldy);
    for (int i = n4; i < x->n; i++) {
        const int8_t *xq = x->q + (size_t)i * x->ld;
        const float *xd = x->d + (size_t)i * (x->ld / 32);
        float *yi = y + (size_t)i * ldy;
        int r = r0;
        for (; r + 4 <= r1; r += 4) rows4_x1(&c, kind, tab, r, xq, xd, yi);
        for (; r < r1; r++) yi[r] = row_x1(&c, kind, tab, r, xq, xd);
    }
}

AVX2 void lb_kernel_nf4_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch) {
    (void)scratch;
    if (lb_cb_nf4_kind(&w->spec, &w->layout) == LB_CB_NF4_32) codebook_avx2(w, LB_CB_NF4_32, x, r0, r1, y, ldy);
    else codebook_avx2(w, LB_CB_NF4_64, x, r0, r1, y, ldy);
}

AVX2 void lb_kernel_pow2_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                              float *scratch) {
    (void)scratch;
    if (lb_cb_pow2_kind(&w->spec, &w->layout) == LB_CB_POW2_4) codebook_avx2(w, LB_CB_POW2_4, x, r0, r1, y, ldy);
    else codebook_avx2(w, LB_CB_POW2_3, x, r0, r1, y, ldy);
}
#endif
