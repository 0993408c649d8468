/* Uniform integer formats, AVX2 (+FMA, F16C): the twin of
 * ref/uniform_ref.c on kernels/uniform_pack.h's layout.
 *
 * A chunk of 32 codes decodes to 32 bytes in column order: nibbles by a
 * shift and a mask, the 2-bit plane by broadcasting its 8 bytes to the four
 * 64-bit lanes and shifting lane k by 2k, the 1-bit plane by a byte shuffle
 * and a bit mask. Codes of up to 7 bits are unsigned bytes <= 127, so
 * vpmaddubsw takes them as they are against the int8 activations (a pair sum
 * is at most 2 * 127 * 127 < 2^15); 8-bit codes are stored as q - 128 and go
 * through the usual sign trick. vpmaddwd then gives 8 int32 lanes, lanes 0-3
 * from columns 0-15 and 4-7 from 16-31, so a g16 chunk takes its two groups'
 * scales as one vector (a_lo x4, a_hi x4) * d_x.
 *
 * The offsets never enter the inner loop: sum_g b_g cs_g, with cs_g the
 * sum over g's halves of d_x sum(xq) (from the prepared half-sums
 * lb_act.s16), is a short dot product over groups per weight row; cs is
 * formed once per call for each activation row, not per weight row.
 *
 * Tiles: activation rows in fours, each weight row against the four (the
 * chunk is decoded once for them); the rows left over (all of decode) go 4
 * weight rows at a time against one activation row (one activation load
 * serves four rows), then single rows. */
#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels/uniform_pack.h"

#define LB_AVX2 __attribute__((target("avx2,fma,f16c")))
#define LB_INLINE __attribute__((always_inline)) inline

LB_AVX2 static float h2f(uint16_t h) { return _cvtsh_ss(h); }

LB_AVX2 static LB_INLINE float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 1-bit plane (bit i = code i) as bytes 0 or 1 << shift */
LB_AVX2 static LB_INLINE __m256i plane1(const uint8_t *c, int shift) {
    uint32_t u;
    memcpy(&u, c, 4);
    const __m256i idx = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3,
                                         3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i v = _mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32((int)u), idx), bit);
    return _mm256_and_si256(_mm256_cmpeq_epi8(v, bit), _mm256_set1_epi8((char)(1 << shift)));
}

/* 2-bit plane (byte j = codes j, j+8, j+16, j+24) as bytes 0..3 */
LB_AVX2 static LB_INLINE __m256i plane2(const uint8_t *c) {
    long long u;
    memcpy(&u, c, 8);
    __m256i v = _mm256_srlv_epi64(_mm256_set1_epi64x(u), _mm256_setr_epi64x(0, 2, 4, 6));
    return _mm256_and_si256(v, _mm256_set1_epi8(3));
}

/* nibble plane (byte j = codes j | j+16 << 4) as bytes 0..15 */
LB_AVX2 static LB_INLINE __m256i nibbles(const uint8_t *c) {
    __m128i b = _mm_loadu_si128((const __m128i *)c);
    __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(b), _mm_srli_epi16(b, 4), 1);
    return _mm256_and_si256(v, _mm256_set1_epi8(15));
}

/* the chunk's 32 codes in column order (bytes; small values, so 16-bit
 * shifts never carry between bytes) */
LB_AVX2 static LB_INLINE __m256i decode(const uint8_t *c, int bits) {
    switch (bits) {
    case 1: return plane1(c, 0);
    case 2: return plane2(c);
    case 3: return _mm256_or_si256(plane2(c), plane1(c + 8, 2));
    case 4: return nibbles(c);
    case 5: return _mm256_or_si256(nibbles(c), plane1(c + 16, 4));
    case 6: return _mm256_or_si256(nibbles(c), _mm256_slli_epi16(plane2(c + 16), 4));
    case 7:
        return _mm256_or_si256(_mm256_or_si256(nibbles(c), _mm256_slli_epi16(plane2(c + 16), 4)), plane1(c + 24, 6));
    default: return _mm256_loadu_si256((const __m256i *)c); /* 8: q - 128, signed */
    }
}

/* 8 int32 partial dot products of codes w with activations a, as floats */
LB_AVX2 static LB_INLINE __m256 dot(__m256i w, __m256i a, int bits) {
    __m256i p = bits == 8 ? _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w))
                          : _mm256_maddubs_epi16(w, a);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

/* per-lane weight scales of chunk c: a of its group, or (g16) of its two */
LB_AVX2 static LB_INLINE __m256 chunk_scales(const lb_upack *p, const float *a, int c, int g0, int g16) {
    if (!g16) return _mm256_set1_ps(a[lb_upack_group_of(p, 2 * c) - g0]);
    __m128 two = _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)(a + 2 * c - g0)));
    return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(two), _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
}

typedef struct {
    int c0, c1, g0, g1; /* chunks [c0, c1), groups [g0, g1) */
    int gnew;           /* the first group no earlier segment had (row groups span them all) */
} segment;

static LB_INLINE segment seg_at(const lb_upack *p, int c0) {
    segment s = {c0, c0 + LB_UPACK_SEG < p->chunks ? c0 + LB_UPACK_SEG : p->chunks, 0, 0, 0};
    s.g0 = lb_upack_group_of(p, 2 * s.c0);
    s.g1 = lb_upack_group_of(p, 2 * s.c1 - 1) + 1;
    if (s.g1 > p->groups) s.g1 = p->groups; /* g16: a padding half past the last group */
    s.gnew = c0 ? lb_upack_group_of(p, 2 * c0 - 1) + 1 : 0;
    return s;
}

/* sum_g b_g cs_g over the segment's groups */
static LB_INLINE float seg_offsets(segment s, const float *b, const float *cs) {
    float t = 0.0f;
    for (int g = (s.gnew > s.g0 ? s.gnew : s.g0) - s.g0; g < s.g1 - s.g0; g++) t += b[g] * cs[g];
    return t;
}

/* nr (1 or 4) weight rows against one activation row */
LB_AVX2 static LB_INLINE void rows_x1(const lb_upack *p, const uint8_t *const *rows, int nr, const int8_t *xq,
                                      const float *xd, const float *cs, float *out, int bits, int g16) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    float corr[4] = {0}, a[4][2 * LB_UPACK_SEG + 1], b[2 * LB_UPACK_SEG + 1];
    size_t cb = (size_t)p->chunk_bytes;
    for (int c0 = 0; c0 < p->chunks; c0 += LB_UPACK_SEG) {
        segment s = seg_at(p, c0);
        for (int k = 0; k < nr; k++) {
            lb_upack_expand(p, rows[k], s.g0, s.g1, h2f, a[k], b);
            corr[k] += seg_offsets(s, b, cs + s.g0);
        }
        for (int c = s.c0; c < s.c1; c++) {
            __m256i av = _mm256_loadu_si256((const __m256i *)(xq + 32 * c));
            __m256 dx = _mm256_set1_ps(xd[c]);
            for (int k = 0; k < nr; k++) {
                __m256 sv = _mm256_mul_ps(chunk_scales(p, a[k], c, s.g0, g16), dx);
                acc[k] = _mm256_fmadd_ps(dot(decode(rows[k] + c * cb, bits), av, bits), sv, acc[k]);
            }
        }
    }
    for (int k = 0; k < nr; k++) out[k] = hsum(acc[k]) + corr[k];
}

/* one weight row against 4 activation rows (i .. i+3): each chunk decoded once */
LB_AVX2 static LB_INLINE void row_x4(const lb_upack *p, const uint8_t *row, const lb_act *x, int i, float *y,
                                     int ldy, const float *cs, int bits, int g16) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    float corr[4] = {0}, a[2 * LB_UPACK_SEG + 1], b[2 * LB_UPACK_SEG + 1];
    size_t cb = (size_t)p->chunk_bytes, lq = (size_t)x->ld, ld32 = (size_t)x->ld / 32;
    const int8_t *q0 = x->q + (size_t)i * lq;
    const float *d0 = x->d + (size_t)i * ld32;
    for (int c0 = 0; c0 < p->chunks; c0 += LB_UPACK_SEG) {
        segment s = seg_at(p, c0);
        lb_upack_expand(p, row, s.g0, s.g1, h2f, a, b);
        for (int k = 0; k < 4; k++) corr[k] += seg_offsets(s, b, cs + k * ((size_t)p->groups + 1) + s.g0);
        for (int c = s.c0; c < s.c1; c++) {
            __m256i wv = decode(row + c * cb, bits);
            __m256 sa = chunk_scales(p, a, c, s.g0, g16);
            for (int k = 0; k < 4; k++) {
                __m256i av = _mm256_loadu_si256((const __m256i *)(q0 + k * lq + 32 * (size_t)c));
                __m256 sv = _mm256_mul_ps(sa, _mm256_set1_ps(d0[k * ld32 + c]));
                acc[k] = _mm256_fmadd_ps(dot(wv, av, bits), sv, acc[k]);
            }
        }
    }
    for (int k = 0; k < 4; k++) y[(size_t)(i + k) * ldy] = hsum(acc[k]) + corr[k];
}

LB_AVX2 static LB_INLINE void matmul(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                                     int bits, int g16) {
    /* activation rows in fours, their offset sums formed once for all the weight rows */
    const lb_upack *p = lb_upack_of(w);
    size_t ng = (size_t)p->groups + 1, ld32 = (size_t)x->ld / 32, ld16 = (size_t)x->ld / 16;
    float cs[4 * (LB_UPACK_MAX_GROUPS + 1)];
    for (int i0 = 0; i0 < x->n; i0 += 4) {
        int na = x->n - i0 < 4 ? x->n - i0 : 4;
        for (int k = 0; k < na; k++)
            lb_upack_act_sums(p, x->d + (size_t)(i0 + k) * ld32, x->s16 + (size_t)(i0 + k) * ld16, cs + k * ng);
        if (na == 4) {
            for (int r = r0; r < r1; r++) row_x4(p, lb_upack_row(w, r), x, i0, y + r, ldy, cs, bits, g16);
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
                rows_x1(p, rows, 4, xq, xd, csi, yi + r, bits, g16);
            }
            for (; r < r1; r++) {
                const uint8_t *rows[1] = {lb_upack_row(w, r)};
                rows_x1(p, rows, 1, xq, xd, csi, yi + r, bits, g16);
            }
        }
    }
}

/* one specialization per (bits, g16): the decode and the scale lookup are
 * then straight-line code */
#define CASE(B)                                                                                                   \
    case B:                                                                                                       \
        if (g16) matmul(w, x, r0, r1, y, ldy, B, 1);                                                              \
        else matmul(w, x, r0, r1, y, ldy, B, 0);                                                                  \
        break;

LB_AVX2 void lb_kernel_uniform_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                                    float *scratch) {
    (void)scratch;
    int g16 = lb_upack_of(w)->hshift == 0;
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
