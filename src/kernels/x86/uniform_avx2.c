/* Uniform integer formats, AVX2 (+FMA, F16C): the twin of
 * ref/uniform_ref.c on kernels/uniform_pack.h's 16-row panels, through the
 * width-generic loops of uniform_tile.h. A 16-lane vector is two ymm: rows
 * 0-7 and rows 8-15 of the panel.
 *
 * Codes of up to 7 bits are unsigned bytes <= 127, so vpmaddubsw takes them
 * as they are against the broadcast int8 activations (a pair sum is at most
 * 2 * 127 * 127 < 2^15) and vpmaddwd finishes each row's 4-byte dot product
 * in its int32 lane; 8-bit codes (stored as q - 128) go through the usual
 * sign trick. Two activation rows per register tile (16 ymm registers). */
#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels/uniform_pack.h"

#define LB_TGT __attribute__((target("avx2,fma,f16c")))
#define LB_INLINE __attribute__((always_inline)) inline
#define NA_MAX 2
#define NA_MID 1

typedef struct {
    __m256i lo, hi;
} VB, VI;
typedef struct {
    __m256 lo, hi;
} VF;

LB_TGT static LB_INLINE VB vb_load(const uint8_t *p) {
    return (VB){_mm256_loadu_si256((const __m256i *)p), _mm256_loadu_si256((const __m256i *)(p + 32))};
}
LB_TGT static LB_INLINE VB vb_field(VB x, int s, int m) {
    __m256i mask = _mm256_set1_epi8((char)m);
    return (VB){_mm256_and_si256(_mm256_srli_epi16(x.lo, s), mask), _mm256_and_si256(_mm256_srli_epi16(x.hi, s), mask)};
}
LB_TGT static LB_INLINE VB vb_or(VB x, VB y) { return (VB){_mm256_or_si256(x.lo, y.lo), _mm256_or_si256(x.hi, y.hi)}; }
LB_TGT static LB_INLINE VB vb_shl(VB x, int n) { return (VB){_mm256_slli_epi16(x.lo, n), _mm256_slli_epi16(x.hi, n)}; }

/* 32 bits as bytes (bit i) << s: byte i takes source byte i / 8, then its bit */
LB_TGT static LB_INLINE __m256i bits32(const uint8_t *p, int s) {
    uint32_t u;
    memcpy(&u, p, 4);
    const __m256i idx = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3,
                                         3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i v = _mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32((int)u), idx), bit);
    return _mm256_and_si256(_mm256_cmpeq_epi8(v, bit), _mm256_set1_epi8((char)(1 << s)));
}
LB_TGT static LB_INLINE VB vb_plane1(const uint8_t *p, int s) { return (VB){bits32(p, s), bits32(p + 4, s)}; }
LB_TGT static LB_INLINE VB vb_table(const int8_t *t) {
    __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)t));
    return (VB){v, v};
}
LB_TGT static LB_INLINE VB vb_lookup(VB x, VB tab) {
    return (VB){_mm256_shuffle_epi8(tab.lo, x.lo), _mm256_shuffle_epi8(tab.hi, x.hi)};
}

LB_TGT static LB_INLINE VI vi_zero(void) { return (VI){_mm256_setzero_si256(), _mm256_setzero_si256()}; }
LB_TGT static LB_INLINE __m256i bcast4(const int8_t *a4) {
    int32_t u;
    memcpy(&u, a4, 4);
    return _mm256_set1_epi32(u);
}
/* Up to 4 bits the vpmaddubsw pair sums stay in int16 for a whole chunk
 * (8 units x 2 x 15 x 127 = 30480 < 2^15) and vpmaddwd widens them once
 * (vf_from_vi); wider codes widen per unit. */
#define I16(bits) ((bits) <= 4)
LB_TGT static LB_INLINE VI vi_add(VI x, VI y, int bits) {
    if (I16(bits)) return (VI){_mm256_add_epi16(x.lo, y.lo), _mm256_add_epi16(x.hi, y.hi)};
    return (VI){_mm256_add_epi32(x.lo, y.lo), _mm256_add_epi32(x.hi, y.hi)};
}
LB_TGT static LB_INLINE VI vi_dot(VI acc, VB w, const int8_t *a4, int bits) {
    __m256i a = bcast4(a4), one = _mm256_set1_epi16(1);
    __m256i plo = _mm256_maddubs_epi16(w.lo, a), phi = _mm256_maddubs_epi16(w.hi, a);
    if (I16(bits)) return (VI){_mm256_add_epi16(acc.lo, plo), _mm256_add_epi16(acc.hi, phi)};
    acc.lo = _mm256_add_epi32(acc.lo, _mm256_madd_epi16(plo, one));
    acc.hi = _mm256_add_epi32(acc.hi, _mm256_madd_epi16(phi, one));
    return acc;
}
LB_TGT static LB_INLINE VI vi_dot8(VI acc, VB w, const int8_t *a4) {
    __m256i a = bcast4(a4), one = _mm256_set1_epi16(1);
    __m256i plo = _mm256_maddubs_epi16(_mm256_sign_epi8(w.lo, w.lo), _mm256_sign_epi8(a, w.lo));
    __m256i phi = _mm256_maddubs_epi16(_mm256_sign_epi8(w.hi, w.hi), _mm256_sign_epi8(a, w.hi));
    acc.lo = _mm256_add_epi32(acc.lo, _mm256_madd_epi16(plo, one));
    acc.hi = _mm256_add_epi32(acc.hi, _mm256_madd_epi16(phi, one));
    return acc;
}

LB_TGT static LB_INLINE VF vf_zero(void) { return (VF){_mm256_setzero_ps(), _mm256_setzero_ps()}; }
LB_TGT static LB_INLINE VF vf_from_vi(VI v, int bits) {
    if (I16(bits)) {
        __m256i one = _mm256_set1_epi16(1);
        v.lo = _mm256_madd_epi16(v.lo, one);
        v.hi = _mm256_madd_epi16(v.hi, one);
    }
    return (VF){_mm256_cvtepi32_ps(v.lo), _mm256_cvtepi32_ps(v.hi)};
}
LB_TGT static LB_INLINE VF vf_fma(VF a, VF b, VF c) {
    return (VF){_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)};
}
LB_TGT static LB_INLINE VF vf_fma_s(VF a, float s, VF c) {
    __m256 v = _mm256_set1_ps(s);
    return (VF){_mm256_fmadd_ps(a.lo, v, c.lo), _mm256_fmadd_ps(a.hi, v, c.hi)};
}
LB_TGT static LB_INLINE VF vf_scale(VF a, float s) {
    __m256 v = _mm256_set1_ps(s);
    return (VF){_mm256_mul_ps(a.lo, v), _mm256_mul_ps(a.hi, v)};
}
LB_TGT static LB_INLINE VF vf_mul(VF a, VF b) { return (VF){_mm256_mul_ps(a.lo, b.lo), _mm256_mul_ps(a.hi, b.hi)}; }
LB_TGT static LB_INLINE VF vf_h16(const uint8_t *p) {
    return (VF){_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)),
                _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 16)))};
}
LB_TGT static LB_INLINE VF vf_u8(const uint8_t *p) {
    return (VF){_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p))),
                _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p + 8))))};
}
LB_TGT static LB_INLINE VF vf_i8(const uint8_t *p) {
    return (VF){_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p))),
                _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p + 8))))};
}
LB_TGT static LB_INLINE VF vf_f32(const uint8_t *p) {
    return (VF){_mm256_loadu_ps((const float *)p), _mm256_loadu_ps((const float *)(p + 32))};
}
LB_TGT static LB_INLINE void vf_store(float *p, VF v) {
    _mm256_storeu_ps(p, v.lo);
    _mm256_storeu_ps(p + 8, v.hi);
}

#include "kernels/uniform_tile.h"

UNIFORM_ENTRY(lb_kernel_uniform_avx2)
#endif
