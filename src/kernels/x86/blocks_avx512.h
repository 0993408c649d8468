/* AVX-512 (F + BW + VNNI) tiles over kernels/codebook.h's 32-weight blocks,
 * shared by int8_avx512.c (q8_0, q4_0) and codebook_avx512.c (nf4, pow2).
 * Two blocks fill a zmm, decoded by 512-bit versions of codebook_x86.h's
 * (the AVX2 ones for the rare layouts), and the int8 dot products come from
 * vpdpbusd, which wants unsigned x signed bytes. Two forms: at batch 1 the
 * weights as u = v + off (a table with the offset built in, or q4_0's
 * nibbles as stored) against the activations as they are, minus off * sum a
 * (one vpdpbusd per activation block, shared by four weight rows); with
 * several activation rows, |v| (vpabsb, <= 128 fits a u8) against sign(v) a
 * (vpmovb2m mask, masked 0 - a; |a| <= 127), no correction per activation.
 * vpdpbusd adds four products per int32 lane without saturation, so lanes
 * 0-7 hold block b's partial sums and 8-15 block b+1's, exactly; they are
 * scaled per lane by [s_b d_b x 8 | s_b+1 d_b+1 x 8]. Only the float
 * summation order differs from the scalar twin.
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

/* weight scales of blocks b, b+1: one broadcast when they share a group
 * (groups of 64 and more hold an even number of blocks, and a row group
 * holds all of them) */
LB_AVX512 static LB_CB_INLINE __m512 lb512_scales(const lb_cb *c, const uint8_t *row, int r, int b) {
    float s0 = lb_cb_scale_f16c(c, row, r, b);
    if (b + 1 >= c->nb) return lb512_halves(s0, 0.0f);
    if (c->bpg >= 2) return _mm512_set1_ps(s0);
    return lb512_halves(s0, lb_cb_scale_f16c(c, row, r, b + 1));
}

/* the activation scales of blocks b, b+1 (d[b + 1] exists: padding) */
LB_AVX512 static LB_CB_INLINE __m512 lb512_act_scales(const float *d, int b) {
    const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    return _mm512_permutexvar_ps(idx, _mm512_castpd_ps(_mm512_castpd128_pd512(_mm_load_sd((const double *)(d + b)))));
}

/* The offset form: u = v + off as unsigned bytes (q4_0: the nibbles, off 8;
 * the others off 128, u = v ^ 0x80), so vpdpbusd takes u and the
 * activations as they are, and sum v a = sum u a - off sum a, the
 * correction shared by every weight row meeting that activation block
 * (lb512_corr). */
LB_AVX512 static LB_CB_INLINE int lb512_off(lb_cb_kind kind) { return kind == LB_CB_Q4_0 ? 8 : 128; }

LB_AVX512 static LB_CB_INLINE __m512i lb512_corr(lb_cb_kind kind, __m512i a) {
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8((char)lb512_off(kind)), a);
}

/* [x0 | x1] (16 code bytes each, 4-bit codes split in halves: codes 0-15 low
 * nibbles, 16-31 high) to the 64 nibbles of the two blocks in order */
LB_AVX512 static LB_CB_INLINE __m512i lb512_split_nibbles(__m256i y) {
    __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(y), _mm256_srli_epi16(y, 4), 1);
    z = _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0)); /* [x0, x0 >> 4, x1, x1 >> 4] */
    return _mm512_and_si512(z, _mm512_set1_epi8(15));
}

/* blocks b, b+1 in the offset form; utab = the table plus 128 (nf4, pow2),
 * tab the signed one for the generic case (pow2:3, row groups whose halves
 * are an odd number of blocks, an odd last block) */
LB_AVX512 static LB_CB_INLINE __m512i lb512_upair(const lb_cb *c, lb_cb_kind kind, const uint8_t *row, int b,
                                                 __m256i tab, __m512i utab) {
    if (b + 1 < c->nb) {
        const uint8_t *grp = row + (size_t)lb_cb_group(c, b) * c->gb + c->hb;
        int in = lb_cb_in_group(c, b);
        switch (kind) {
        case LB_CB_Q8_0: {
            __m256i y0 = _mm256_loadu_si256((const __m256i *)grp), y1 = _mm256_loadu_si256((const __m256i *)(grp + 34));
            __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(y0), y1, 1);
            return _mm512_xor_si512(z, _mm512_set1_epi8((char)0x80));
        }
        case LB_CB_Q4_0:
        case LB_CB_NF4_32: {
            __m128i x0 = _mm_loadu_si128((const __m128i *)grp), x1 = _mm_loadu_si128((const __m128i *)(grp + c->gb));
            __m512i z = lb512_split_nibbles(_mm256_inserti128_si256(_mm256_castsi128_si256(x0), x1, 1));
            return kind == LB_CB_Q4_0 ? z : _mm512_shuffle_epi8(utab, z);
        }
        case LB_CB_NF4_64: {
            int half = c->bpg / 2;
            if (half == 1) { /* G = 64: the two blocks are one 32-byte run's low and high nibbles */
                __m256i y = _mm256_loadu_si256((const __m256i *)grp);
                __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(y), _mm256_srli_epi16(y, 4), 1);
                return _mm512_shuffle_epi8(utab, _mm512_and_si512(z, _mm512_set1_epi8(15)));
            }
            if (half % 2 == 0) { /* both on one side: 64 bytes' low or high nibbles */
                int hi = in >= half;
                __m512i z = _mm512_loadu_si512((const void *)(grp + 32 * (size_t)(hi ? in - half : in)));
                if (hi) z = _mm512_srli_epi16(z, 4);
                return _mm512_shuffle_epi8(utab, _mm512_and_si512(z, _mm512_set1_epi8(15)));
            }
            break;
        }
        case LB_CB_POW2_4: {
            /* consecutive blocks: 32 bytes in a group of 64+, else 16 + 16 across groups of 32 */
            const uint8_t *p1 = c->bpg >= 2 ? grp + 16 * (size_t)in + 16 : grp + c->gb;
            const uint8_t *p0 = grp + 16 * (size_t)in;
            __m256i y = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)p0)),
                                                _mm_loadu_si128((const __m128i *)p1), 1);
            __m256i m = _mm256_set1_epi8(15), lo = _mm256_and_si256(y, m), hi = _mm256_and_si256(_mm256_srli_epi16(y, 4), m);
            /* per block: codes 2i low, 2i + 1 high: interleave */
            __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_unpacklo_epi8(lo, hi)),
                                           _mm256_unpackhi_epi8(lo, hi), 1);
            z = _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0));
            return _mm512_shuffle_epi8(utab, z);
        }
        default: break;
        }
    }
    return _mm512_add_epi8(lb512_pair(c, kind, row, b, tab), _mm512_set1_epi8((char)lb512_off(kind)));
}

/* 16 int32 sums of v . a as floats; aw = |v|, neg = v's sign bits */
LB_AVX512 static LB_CB_INLINE __m512 lb512_dot(__m512i aw, __mmask64 neg, __m512i a) {
    __m512i sa = _mm512_mask_sub_epi8(a, neg, _mm512_setzero_si512(), a);
    return _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), aw, sa));
}

/* 16 int32 sums of v . a as floats, from the offset form */
LB_AVX512 static LB_CB_INLINE __m512 lb512_udot(__m512i u, __m512i a, __m512i corr) {
    return _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), u, a), corr));
}

/* weight row r against activation rows i..i+na-1 (na = 4 or 8, a constant):
 * the pair decoded once, then the sign form (|v|, sign(v) a), which costs
 * no per-activation correction */
LB_AVX512 static LB_CB_INLINE void lb512_row_xn(const lb_cb *c, lb_cb_kind kind, __m256i tab, __m512i utab, int r,
                                                const lb_act *x, int i, int na, float *y, int ldy) {
    const uint8_t *row = c->data + (size_t)r * c->rb;
    size_t lq = (size_t)x->ld, ld = lq / 32;
    const int8_t *q0 = x->q + (size_t)i * lq;
    const float *d0 = x->d + (size_t)i * ld;
    __m512 acc[8];
    for (int k = 0; k < na; k++) acc[k] = _mm512_setzero_ps();
    for (int b = 0; b < c->nb; b += 2) {
        __m512i v = _mm512_sub_epi8(lb512_upair(c, kind, row, b, tab, utab), _mm512_set1_epi8((char)lb512_off(kind)));
        __m512i aw = _mm512_abs_epi8(v);
        __mmask64 neg = _mm512_movepi8_mask(v);
        __m512 sw = lb512_scales(c, row, r, b);
#pragma GCC unroll 8 /* acc[] in registers, not on the stack */
        for (int k = 0; k < na; k++) {
            __m512i a = _mm512_loadu_si512((const void *)(q0 + k * lq + (size_t)b * 32));
            __m512 s = _mm512_mul_ps(sw, lb512_act_scales(d0 + k * ld, b));
            acc[k] = _mm512_fmadd_ps(lb512_dot(aw, neg, a), s, acc[k]);
        }
    }
    for (int k = 0; k < na; k++) y[(size_t)(i + k) * ldy + r] = _mm512_reduce_add_ps(acc[k]);
}

/* weight rows r..r+3 against one activation row (batch 1): the activation
 * pair, its scales and its offset correction are shared by the four rows */
LB_AVX512 static LB_CB_INLINE void lb512_rows4_x1(const lb_cb *c, lb_cb_kind kind, __m256i tab, __m512i utab, int r,
                                                  const int8_t *xq, const float *xd, float *y) {
    const uint8_t *row = c->data + (size_t)r * c->rb;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int b = 0; b < c->nb; b += 2) {
        __m512i a = _mm512_loadu_si512((const void *)(xq + (size_t)b * 32)), corr = lb512_corr(kind, a);
        __m512 sx = lb512_act_scales(xd, b);
#pragma GCC unroll 8 /* acc[] in registers, not on the stack */
        for (int k = 0; k < 4; k++) {
            const uint8_t *rk = row + k * c->rb;
            __m512 s = _mm512_mul_ps(lb512_scales(c, rk, r + k, b), sx);
            acc[k] = _mm512_fmadd_ps(lb512_udot(lb512_upair(c, kind, rk, b, tab, utab), a, corr), s, acc[k]);
        }
    }
    for (int k = 0; k < 4; k++) y[r + k] = _mm512_reduce_add_ps(acc[k]);
}

LB_AVX512 static LB_CB_INLINE float lb512_row_x1(const lb_cb *c, lb_cb_kind kind, __m256i tab, __m512i utab, int r,
                                                 const int8_t *xq, const float *xd) {
    const uint8_t *row = c->data + (size_t)r * c->rb;
    __m512 acc = _mm512_setzero_ps();
    for (int b = 0; b < c->nb; b += 2) {
        __m512i a = _mm512_loadu_si512((const void *)(xq + (size_t)b * 32));
        __m512 s = _mm512_mul_ps(lb512_scales(c, row, r, b), lb512_act_scales(xd, b));
        acc = _mm512_fmadd_ps(lb512_udot(lb512_upair(c, kind, row, b, tab, utab), a, lb512_corr(kind, a)), s, acc);
    }
    return _mm512_reduce_add_ps(acc);
}

LB_AVX512 static LB_CB_INLINE void lb512_matmul(const lb_tensor *w, lb_cb_kind kind, const lb_act *x, int r0, int r1,
                                                float *y, int ldy) {
    lb_cb c = lb_cb_of(w, kind);
    __m256i tab = lb_cb_table(kind);
    __m512i utab = _mm512_xor_si512(_mm512_broadcast_i64x4(tab), _mm512_set1_epi8((char)0x80));
    int n8 = x->n / 8 * 8, n4 = x->n / 4 * 4;
    for (int r = r0; r < r1; r++) {
        for (int i = 0; i < n8; i += 8) lb512_row_xn(&c, kind, tab, utab, r, x, i, 8, y, ldy);
        if (n4 > n8) lb512_row_xn(&c, kind, tab, utab, r, x, n8, 4, y, ldy);
    }
    for (int i = n4; i < x->n; i++) {
        const int8_t *xq = x->q + (size_t)i * x->ld;
        const float *xd = x->d + (size_t)i * (x->ld / 32);
        float *yi = y + (size_t)i * ldy;
        int r = r0;
        for (; r + 4 <= r1; r += 4) lb512_rows4_x1(&c, kind, tab, utab, r, xq, xd, yi);
        for (; r < r1; r++) yi[r] = lb512_row_x1(&c, kind, tab, utab, r, xq, xd);
    }
}

#endif
#endif
