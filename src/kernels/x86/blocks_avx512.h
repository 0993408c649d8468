/* AVX-512 (F + BW + VNNI) tiles over kernels/codebook.h's 32-weight blocks,
 * shared by int8_avx512.c (q8_0, q4_0) and codebook_avx512.c (nf4, pow2).
 * Two blocks fill a zmm: their values come from the AVX2 decoders
 * (codebook_x86.h) and the int8 dot products from vpdpbusd, which wants
 * unsigned x signed bytes: the weight side goes in as |v| (vpabsb, <= 128
 * fits a u8) and the activations as sign(v) * a (a mask of v's sign bits,
 * vpmovb2m, and a masked 0 - a; |a| <= 127). vpdpbusd adds four products per
 * int32 lane without saturation, so lanes 0-7 hold block b's partial sums
 * and 8-15 block b+1's, exactly; they are scaled per lane by
 * [s_b d_b x 8 | s_b+1 d_b+1 x 8]. Only the float summation order differs
 * from the scalar twin.
 *
 * Tiles: one weight row against 8 (then 4) activation rows, the pair of
 * blocks decoded once for all of them (batches amortize decoding and the
 * weight stream); the activation rows left over (all at batch 1) against 4
 * weight rows at a time (one activation load and scale for four rows). An
 * odd last block pairs with zeros: the activation row is padded to 256
 * columns (LB_ACT_PAD) with zero values and scales, so the 64-byte load
 * stays inside it. */
#ifndef LB_X86_BLOCKS_AVX512_H
#define LB_X86_BLOCKS_AVX512_H
#if defined(__x86_64__)
#include "kernels/x86/codebook_x86.h"

#define LB_AVX512 __attribute__((target("avx512f,avx512bw,avx512vnni,avx2,fma,f16c")))

/* blocks b, b+1 (zeros past the row) of one weight row */
LB_AVX512 static LB_CB_INLINE __m512i lb512_pair(const lb_cb *c, lb_cb_kind kind, const uint8_t *row, int b,
                                                __m256i tab) {
    __m256i v0 = lb_cb_values_avx2(c, kind, row, b, tab);
    __m256i v1 = b + 1 < c->nb ? lb_cb_values_avx2(c, kind, row, b + 1, tab) : _mm256_setzero_si256();
    return _mm512_inserti64x4(_mm512_castsi256_si512(v0), v1, 1);
}

/* [f0 x 8 | f1 x 8] */
LB_AVX512 static LB_CB_INLINE __m512 lb512_halves(float f0, float f1) {
    const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(_mm_setr_ps(f0, f1, 0.0f, 0.0f)));
}

LB_AVX512 static LB_CB_INLINE __m512 lb512_scales(const lb_cb *c, const uint8_t *row, int r, int b) {
    float s0 = lb_cb_scale_f16c(c, row, r, b);
    float s1 = b + 1 < c->nb ? lb_cb_scale_f16c(c, row, r, b + 1) : 0.0f;
    return lb512_halves(s0, s1);
}

/* the activation scales of blocks b, b+1 (d[b + 1] exists: padding) */
LB_AVX512 static LB_CB_INLINE __m512 lb512_act_scales(const float *d, int b) {
    const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    return _mm512_permutexvar_ps(idx, _mm512_castpd_ps(_mm512_castpd128_pd512(_mm_load_sd((const double *)(d + b)))));
}

/* 16 int32 sums of v . a as floats; aw = |v|, neg = v's sign bits */
LB_AVX512 static LB_CB_INLINE __m512 lb512_dot(__m512i aw, __mmask64 neg, __m512i a) {
    __m512i sa = _mm512_mask_sub_epi8(a, neg, _mm512_setzero_si512(), a);
    return _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), aw, sa));
}

/* weight row r against activation rows i..i+na-1 (na = 4 or 8, a constant) */
LB_AVX512 static LB_CB_INLINE void lb512_row_xn(const lb_cb *c, lb_cb_kind kind, __m256i tab, int r, const lb_act *x,
                                                int i, int na, float *y, int ldy) {
    const uint8_t *row = c->data + (size_t)r * c->rb;
    size_t lq = (size_t)x->ld, ld = lq / 32;
    const int8_t *q0 = x->q + (size_t)i * lq;
    const float *d0 = x->d + (size_t)i * ld;
    __m512 acc[8];
    for (int k = 0; k < na; k++) acc[k] = _mm512_setzero_ps();
    for (int b = 0; b < c->nb; b += 2) {
        __m512i v = lb512_pair(c, kind, row, b, tab), aw = _mm512_abs_epi8(v);
        __mmask64 neg = _mm512_movepi8_mask(v);
        __m512 sw = lb512_scales(c, row, r, b);
        for (int k = 0; k < na; k++) {
            __m512i a = _mm512_loadu_si512((const void *)(q0 + k * lq + (size_t)b * 32));
            __m512 s = _mm512_mul_ps(sw, lb512_act_scales(d0 + k * ld, b));
            acc[k] = _mm512_fmadd_ps(lb512_dot(aw, neg, a), s, acc[k]);
        }
    }
    for (int k = 0; k < na; k++) y[(size_t)(i + k) * ldy + r] = _mm512_reduce_add_ps(acc[k]);
}

/* weight rows r..r+3 against one activation row */
LB_AVX512 static LB_CB_INLINE void lb512_rows4_x1(const lb_cb *c, lb_cb_kind kind, __m256i tab, int r,
                                                  const int8_t *xq, const float *xd, float *y) {
    const uint8_t *row = c->data + (size_t)r * c->rb;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int b = 0; b < c->nb; b += 2) {
        __m512i a = _mm512_loadu_si512((const void *)(xq + (size_t)b * 32));
        __m512 sx = lb512_act_scales(xd, b);
        for (int k = 0; k < 4; k++) {
            const uint8_t *rk = row + k * c->rb;
            __m512i v = lb512_pair(c, kind, rk, b, tab);
            __m512 s = _mm512_mul_ps(lb512_scales(c, rk, r + k, b), sx);
            acc[k] = _mm512_fmadd_ps(lb512_dot(_mm512_abs_epi8(v), _mm512_movepi8_mask(v), a), s, acc[k]);
        }
    }
    for (int k = 0; k < 4; k++) y[r + k] = _mm512_reduce_add_ps(acc[k]);
}

LB_AVX512 static LB_CB_INLINE float lb512_row_x1(const lb_cb *c, lb_cb_kind kind, __m256i tab, int r,
                                                 const int8_t *xq, const float *xd) {
    const uint8_t *row = c->data + (size_t)r * c->rb;
    __m512 acc = _mm512_setzero_ps();
    for (int b = 0; b < c->nb; b += 2) {
        __m512i a = _mm512_loadu_si512((const void *)(xq + (size_t)b * 32));
        __m512i v = lb512_pair(c, kind, row, b, tab);
        __m512 s = _mm512_mul_ps(lb512_scales(c, row, r, b), lb512_act_scales(xd, b));
        acc = _mm512_fmadd_ps(lb512_dot(_mm512_abs_epi8(v), _mm512_movepi8_mask(v), a), s, acc);
    }
    return _mm512_reduce_add_ps(acc);
}

LB_AVX512 static LB_CB_INLINE void lb512_matmul(const lb_tensor *w, lb_cb_kind kind, const lb_act *x, int r0, int r1,
                                                float *y, int ldy) {
    lb_cb c = lb_cb_of(w, kind);
    __m256i tab = lb_cb_table(kind);
    int n8 = x->n / 8 * 8, n4 = x->n / 4 * 4;
    for (int r = r0; r < r1; r++) {
        for (int i = 0; i < n8; i += 8) lb512_row_xn(&c, kind, tab, r, x, i, 8, y, ldy);
        if (n4 > n8) lb512_row_xn(&c, kind, tab, r, x, n8, 4, y, ldy);
    }
    for (int i = n4; i < x->n; i++) {
        const int8_t *xq = x->q + (size_t)i * x->ld;
        const float *xd = x->d + (size_t)i * (x->ld / 32);
        float *yi = y + (size_t)i * ldy;
        int r = r0;
        for (; r + 4 <= r1; r += 4) lb512_rows4_x1(&c, kind, tab, r, xq, xd, yi);
        for (; r < r1; r++) yi[r] = lb512_row_x1(&c, kind, tab, r, xq, xd);
    }
}

#endif
#endif
