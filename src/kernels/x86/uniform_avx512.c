/* Uniform integer formats, AVX-512 (F, BW, VNNI): the twin of
 * ref/uniform_ref.c on kernels/uniform_pack.h's layout, like uniform_avx2.c
 * but two chunks (64 columns) per zmm and vpdpbusd for the dot products.
 *
 * A pair of chunks decodes straight into a zmm (see decode2). vpdpbusd multiplies unsigned by signed bytes and adds four products
 * straight into int32, so no int16 pair sum can saturate: codes of up to 7
 * bits go as they are; 8-bit codes (stored as q - 128) are flipped back to
 * q and the product of 128 with the activations taken away again, giving
 * the same integer sum(q - 128) xq the reference forms. The 16 int32 lanes
 * are quarters of 16 columns (chunk c: lanes 0-7, chunk c+1: 8-15), so the
 * per-lane scale is a(half) d_x(chunk), built by two permutes.
 *
 * Offsets, tiles and the order of rows as in uniform_avx2.c. */
#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels/uniform_pack.h"

#define LB_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vnni")))
#define LB_INLINE __attribute__((always_inline)) inline

LB_AVX512 static float h2f(uint16_t h) { return _cvtsh_ss(h); }

/* Two chunks at once (c, then c + cb; alone: the second's codes 0), to 64
 * bytes in column order. The 1-bit planes of the two are one 64-bit mask
 * (bit i = column i) and become bytes by a masked move; the 2-bit planes
 * broadcast to four 64-bit lanes each, shifted by 0, 2, 4, 6; the nibble
 * planes go to the 128-bit quarters (c low, c high, c+1 low, c+1 high) and
 * the high quarters shift by 4. */
LB_AVX512 static LB_INLINE __m512i plane1(const uint8_t *c, size_t cb, int pair, int shift) {
    uint32_t u0, u1 = 0;
    memcpy(&u0, c, 4);
    if (pair) memcpy(&u1, c + cb, 4);
    __mmask64 m = _cvtu64_mask64((uint64_t)u0 | (uint64_t)u1 << 32);
    return _mm512_maskz_mov_epi8(m, _mm512_set1_epi8((char)(1 << shift)));
}

LB_AVX512 static LB_INLINE __m512i plane2(const uint8_t *c, size_t cb, int pair) {
    long long u0, u1 = 0;
    memcpy(&u0, c, 8);
    if (pair) memcpy(&u1, c + cb, 8);
    __m512i v = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 0, 0, 0, 1, 1, 1, 1),
                                         _mm512_castsi128_si512(_mm_set_epi64x(u1, u0)));
    v = _mm512_srlv_epi64(v, _mm512_setr_epi64(0, 2, 4, 6, 0, 2, 4, 6));
    return _mm512_and_si512(v, _mm512_set1_epi8(3));
}

LB_AVX512 static LB_INLINE __m512i nibbles(const uint8_t *c, size_t cb, int pair) {
    __m128i lo = _mm_loadu_si128((const __m128i *)c);
    __m128i hi = pair ? _mm_loadu_si128((const __m128i *)(c + cb)) : _mm_setzero_si128();
    __m256i two = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
    __m512i v = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3), _mm512_castsi256_si512(two));
    v = _mm512_srlv_epi64(v, _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4));
    return _mm512_and_si512(v, _mm512_set1_epi8(15));
}

/* chunks c and c+1 (pair) or c alone, as unsigned bytes (8 bits: q itself) */
LB_AVX512 static LB_INLINE __m512i decode2(const uint8_t *c, size_t cb, int bits, int pair) {
    switch (bits) {
    case 1: return plane1(c, cb, pair, 0);
    case 2: return plane2(c, cb, pair);
    case 3: return _mm512_or_si512(plane2(c, cb, pair), plane1(c + 8, cb, pair, 2));
    case 4: return nibbles(c, cb, pair);
    case 5: return _mm512_or_si512(nibbles(c, cb, pair), plane1(c + 16, cb, pair, 4));
    case 6: return _mm512_or_si512(nibbles(c, cb, pair), _mm512_slli_epi16(plane2(c + 16, cb, pair), 4));
    case 7:
        return _mm512_or_si512(_mm512_or_si512(nibbles(c, cb, pair), _mm512_slli_epi16(plane2(c + 16, cb, pair), 4)),
                               plane1(c + 24, cb, pair, 6));
    default: {
        __m256i lo = _mm256_loadu_si256((const __m256i *)c);
        __m256i hi = pair ? _mm256_loadu_si256((const __m256i *)(c + cb)) : _mm256_set1_epi8((char)0x80);
        return _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1), _mm512_set1_epi8((char)0x80));
    }
    }
}

/* 16 int32 partial sums of (codes as the reference reads them) x activations, as floats */
LB_AVX512 static LB_INLINE __m512 dot(__m512i w, __m512i a, int bits) {
    __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, a);
    if (bits == 8) p = _mm512_sub_epi32(p, _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8((char)0x80), a));
    return _mm512_cvtepi32_ps(p);
}

/* 64 activations at chunk c (the second chunk 0 when alone: it meets zero codes,
 * but a load past the row could leave the buffer) */
LB_AVX512 static LB_INLINE __m512i act2(const int8_t *q, int pair) {
    return pair ? _mm512_loadu_si512(q) : _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)q));
}

/* per-quarter weight scales of chunks c, c+1: a of halves 2c .. 2c+3
 * (gmode 2: g16, 1: g32, 0: one group for both chunks) */
LB_AVX512 static LB_INLINE __m512 pair_scales(const lb_upack *p, const float *a, int c, int g0, int gmode) {
    if (gmode == 0) return _mm512_set1_ps(a[lb_upack_group_of(p, 2 * c) - g0]);
    __m128 four = gmode == 2 ? _mm_loadu_ps(a + 2 * c - g0)
                             : _mm_setr_ps(a[c - g0], a[c - g0], a[c + 1 - g0], a[c + 1 - g0]);
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
                                 _mm512_castps128_ps512(four));
}

/* d_x of chunks c, c+1 per lane (alone: the second is never read) */
LB_AVX512 static LB_INLINE __m512 pair_dx(const float *xd, int c, int pair) {
    const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    __m128 two = pair ? _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)(xd + c))) : _mm_set_ss(xd[c]);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(two));
}

typedef struct {
    int c0, c1, g0, g1; /* chunks [c0, c1), groups [g0, g1) */
    int gnew;           /* the first group no earlier segment had (row groups span them all) */
} segment;

static LB_INLINE segment seg_at(const lb_upack *p, int c0) {
    segment s = {c0, c0 + LB_UPACK_SEG < p->chunks ? c0 + LB_UPACK_SEG : p->chunks, 0, 0, 0};
    s.g0 = lb_upack_group_of(p, 2 * s.c0);
    s.g1 = lb_upack_group_of(p, 2 * s.c1 - 1) + 1;
    if (s.g1 > p->groups) s.g1 = p->groups;
    s.gnew = c0 ? lb_upack_group_of(p, 2 * c0 - 1) + 1 : 0;
    return s;
}

static LB_INLINE float seg_offsets(segment s, const float *b, const float *cs) {
    float t = 0.0f;
    for (int g = (s.gnew > s.g0 ? s.gnew : s.g0) - s.g0; g < s.g1 - s.g0; g++) t += b[g] * cs[g];
    return t;
}

/* a[] has 4 floats of slack past the sentinel: a lone last chunk of a g16
 * row reads the scales of two halves that do not exist (their codes are 0) */
#define ABUF (2 * LB_UPACK_SEG + 5)

static LB_INLINE void zero_slack(float *a, segment s) {
    for (int j = s.g1 - s.g0 + 1; j < s.g1 - s.g0 + 5; j++) a[j] = 0.0f;
}

LB_AVX512 static LB_INLINE void rows_x1(const lb_upack *p, const uint8_t *const *rows, int nr, const int8_t *xq,
                                        const float *xd, const float *cs, float *out, int bits, int gmode) {
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    float corr[4] = {0}, a[4][ABUF], b[ABUF];
    size_t cb = (size_t)p->chunk_bytes;
    for (int c0 = 0; c0 < p->chunks; c0 += LB_UPACK_SEG) {
        segment s = seg_at(p, c0);
        for (int k = 0; k < nr; k++) {
            lb_upack_expand(p, rows[k], s.g0, s.g1, h2f, a[k], b);
            zero_slack(a[k], s);
            corr[k] += seg_offsets(s, b, cs + s.g0);
        }
        for (int c = s.c0; c < s.c1; c += 2) {
            int pair = c + 1 < s.c1;
            __m512i av = act2(xq + 32 * c, pair);
            __m512 dx = pair_dx(xd, c, pair);
            for (int k = 0; k < nr; k++) {
                __m512 sv = _mm512_mul_ps(pair_scales(p, a[k], c, s.g0, gmode), dx);
                acc[k] = _mm512_fmadd_ps(dot(decode2(rows[k] + c * cb, cb, bits, pair), av, bits), sv, acc[k]);
            }
        }
    }
    for (int k = 0; k < nr; k++) out[k] = _mm512_reduce_add_ps(acc[k]) + corr[k];
}

LB_AVX512 static LB_INLINE void row_x4(const lb_upack *p, const uint8_t *row, const lb_act *x, int i, float *y,
                                       int ldy, const float *cs, int bits, int gmode) {
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    float corr[4] = {0}, a[ABUF], b[ABUF];
    size_t cb = (size_t)p->chunk_bytes, lq = (size_t)x->ld, ld32 = (size_t)x->ld / 32;
    const int8_t *q0 = x->q + (size_t)i * lq;
    const float *d0 = x->d + (size_t)i * ld32;
    for (int c0 = 0; c0 < p->chunks; c0 += LB_UPACK_SEG) {
        segment s = seg_at(p, c0);
        lb_upack_expand(p, row, s.g0, s.g1, h2f, a, b);
        zero_slack(a, s);
        for (int k = 0; k < 4; k++) corr[k] += seg_offsets(s, b, cs + k * ((size_t)p->groups + 1) + s.g0);
        for (int c = s.c0; c < s.c1; c += 2) {
            int pair = c + 1 < s.c1;
            __m512i wv = decode2(row + c * cb, cb, bits, pair);
            __m512 sa = pair_scales(p, a, c, s.g0, gmode);
            for (int k = 0; k < 4; k++) {
                __m512i av = act2(q0 + k * lq + 32 * (size_t)c, pair);
                __m512 sv = _mm512_mul_ps(sa, pair_dx(d0 + k * ld32, c, pair));
                acc[k] = _mm512_fmadd_ps(dot(wv, av, bits), sv, acc[k]);
            }
        }
    }
    for (int k = 0; k < 4; k++) y[(size_t)(i + k) * ldy] = _mm512_reduce_add_ps(acc[k]) + corr[k];
}

LB_AVX512 static LB_INLINE void matmul(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                                       int bits, int gmode) {
    /* activation rows in fours, their offset sums formed once for all the weight rows */
    const lb_upack *p = lb_upack_of(w);
    size_t ng = (size_t)p->groups + 1, ld32 = (size_t)x->ld / 32, ld16 = (size_t)x->ld / 16;
    float cs[4 * (LB_UPACK_MAX_GROUPS + 1)];
    for (int i0 = 0; i0 < x->n; i0 += 4) {
        int na = x->n - i0 < 4 ? x->n - i0 : 4;
        for (int k = 0; k < na; k++)
            lb_upack_act_sums(p, x->d + (size_t)(i0 + k) * ld32, x->s16 + (size_t)(i0 + k) * ld16, cs + k * ng);
        if (na == 4) {
            for (int r = r0; r < r1; r++) row_x4(p, lb_upack_row(w, r), x, i0, y + r, ldy, cs, bits, gmode);
            continue;
        }
        for (int i = i0; i < i0 + na; i++) {
            const int8_t *xq = x->q + (size_t)i * x->ld;
            const float *xd = x->d + (size_t)i * ld32, *csi = cs + (size_t)(i - i0) * ng;
            float *yi = y + (size_t)i * ldy;
            int r = r0;
            for (; r + 4 <= r1; r += 4) {
                const uint8_t *rows[4] = {lb_upack_row(w, r), lb_upack_row(w, r + 1), lb_upack_row(w, r + 2),
                                          lb_upack_row(w, r + 3)};
                rows_x1(p, rows, 4, xq, xd, csi, yi + r, bits, gmode);
            }
            for (; r < r1; r++) {
                const uint8_t *rows[1] = {lb_upack_row(w, r)};
                rows_x1(p, rows, 1, xq, xd, csi, yi + r, bits, gmode);
            }
        }
    }
}

#define CASE(B)                                                                                                   \
    case B:                                                                                                       \
        if (gmode == 2) matmul(w, x, r0, r1, y, ldy, B, 2);                                                       \
        else if (gmode == 1) matmul(w, x, r0, r1, y, ldy, B, 1);                                                  \
        else matmul(w, x, r0, r1, y, ldy, B, 0);                                                                  \
        break;

LB_AVX512 void lb_kernel_uniform_avx512(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                                        float *scratch) {
    (void)scratch;
    int hs = lb_upack_of(w)->hshift, gmode = hs == 0 ? 2 : hs == 1 ? 1 : 0;
    switch (lb_upack_of(w)->bits) {
        CASE(1)
        CASE(2)
        CASE(3)
        CASE(4)
        CASE(5)
        CASE(6)
        CASE(7)
        CASE(8)
    }
}
#endif
