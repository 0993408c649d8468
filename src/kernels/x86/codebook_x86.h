/* AVX2 decoders of kernels/codebook.h's blocks: block b of a row as 32
 * signed int8 values in one ymm (the scalar lb_cb_values, vectorized).
 * 4-bit codes become values through vpshufb on a 16-entry table; pow2:3's
 * 3-bit stream is cut with one pshufb (the two bytes holding each code into
 * a 16-bit lane), a multiply by 2^(8 - bit offset) as a per-lane left shift
 * (AVX2 has no 16-bit variable shift), a shift right by 8 and a mask.
 * Shared by codebook_avx2.c and the AVX-512 files (a target("avx2")
 * function inlines into a caller whose target includes it). */
#ifndef LB_X86_CODEBOOK_X86_H
#define LB_X86_CODEBOOK_X86_H
#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels/codebook.h"

#define LB_CB_AVX2 __attribute__((target("avx2,fma,f16c")))
#define LB_CB_INLINE __attribute__((always_inline)) inline

/* lb_cb_scale with F16C */
LB_CB_AVX2 static LB_CB_INLINE float lb_cb_scale_f16c(const lb_cb *c, const uint8_t *row, int r, int b) {
    int g = lb_cb_group(c, b);
    if (c->dq) return lb_cb_dq_scale(c, row, r, g);
    return _cvtsh_ss(lb_rd16(row + (size_t)g * c->gb)) * c->k;
}

LB_CB_AVX2 static LB_CB_INLINE __m256i lb_cb_table(lb_cb_kind kind) {
    const int8_t *t = kind == LB_CB_NF4_32 || kind == LB_CB_NF4_64 ? lb_nf4_i8 : lb_pow2_i8;
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)t));
}

/* pow2:3: the 12 bytes of 32 codes to 32 codes (sign in bit 2) */
LB_CB_AVX2 static LB_CB_INLINE __m256i lb_cb_unpack3(const uint8_t *p) {
    /* lane j of the 16 per vector takes bytes (3j)/8 and (3j)/8 + 1: half h of
     * vector v holds codes 16v + 8h .. +7; byte 12 is zero (codes end at bit 95) */
    const __m256i sh0 = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 1, 2, 1, 2, 1, 2, 2, 3, 2, 3, 3, 4, 3, 4, 3, 4, 4, 5, 4, 5,
                                         4, 5, 5, 6, 5, 6);
    const __m256i sh1 = _mm256_setr_epi8(6, 7, 6, 7, 6, 7, 7, 8, 7, 8, 7, 8, 8, 9, 8, 9, 9, 10, 9, 10, 9, 10, 10, 11, 10,
                                         11, 10, 11, 11, 12, 11, 12);
    /* 2^(8 - (3j mod 8)): offsets 0 3 6 1 4 7 2 5 repeat every 8 codes */
    const __m256i mul = _mm256_setr_epi16(256, 32, 4, 128, 16, 2, 64, 8, 256, 32, 4, 128, 16, 2, 64, 8);
    __m128i src = _mm_insert_epi32(_mm_loadl_epi64((const __m128i *)p), (int)lb_rd32(p + 8), 2);
    __m256i s = _mm256_broadcastsi128_si256(src);
    __m256i a = _mm256_srli_epi16(_mm256_mullo_epi16(_mm256_shuffle_epi8(s, sh0), mul), 8);
    __m256i b = _mm256_srli_epi16(_mm256_mullo_epi16(_mm256_shuffle_epi8(s, sh1), mul), 8);
    /* packus: [a.lo, b.lo | a.hi, b.hi] in 64-bit pieces -> codes 0-7, 16-23, 8-15, 24-31 */
    __m256i c = _mm256_permute4x64_epi64(_mm256_packus_epi16(a, b), 0xd8);
    c = _mm256_and_si256(c, _mm256_set1_epi8(7));
    /* sign bit 2 -> bit 3, the pow2:4 table's index */
    return _mm256_add_epi8(c, _mm256_and_si256(c, _mm256_set1_epi8(4)));
}

/* block b's 32 values; tab = lb_cb_table(kind) (unused for q8_0 / q4_0) */
LB_CB_AVX2 static LB_CB_INLINE __m256i lb_cb_values_avx2(const lb_cb *c, lb_cb_kind kind, const uint8_t *row, int b,
                                                         __m256i tab) {
    const uint8_t *p = lb_cb_codes_at(c, kind, row, b);
    const __m256i m4 = _mm256_set1_epi8(15);
    __m256i v;
    switch (kind) {
    case LB_CB_Q8_0: return _mm256_loadu_si256((const __m256i *)p);
    case LB_CB_Q4_0:
    case LB_CB_NF4_32: {
        __m128i x = _mm_loadu_si128((const __m128i *)p);
        v = _mm256_and_si256(_mm256_inserti128_si256(_mm256_castsi128_si256(x), _mm_srli_epi16(x, 4), 1), m4);
        if (kind == LB_CB_Q4_0) return _mm256_sub_epi8(v, _mm256_set1_epi8(8));
        break;
    }
    case LB_CB_NF4_64: {
        __m256i x = _mm256_loadu_si256((const __m256i *)p);
        v = _mm256_and_si256(lb_cb_high(c, b) ? _mm256_srli_epi16(x, 4) : x, m4);
        break;
    }
    case LB_CB_POW2_4: {
        __m128i x = _mm_loadu_si128((const __m128i *)p), m = _mm_set1_epi8(15);
        __m128i lo = _mm_and_si128(x, m), hi = _mm_and_si128(_mm_srli_epi16(x, 4), m);
        v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_unpacklo_epi8(lo, hi)), _mm_unpackhi_epi8(lo, hi), 1);
        break;
    }
    case LB_CB_POW2_3: v = lb_cb_unpack3(p); break;
    default: v = _mm256_setzero_si256();
    }
    return _mm256_shuffle_epi8(tab, v);
}

#endif
#endif
