/* Uniform integer formats, AVX-512 (F, BW, VNNI): the twin of
 * ref/uniform_ref.c on kernels/uniform_pack.h's 16-row panels, through the
 * width-generic loops of uniform_tile.h. A 16-lane vector is one zmm.
 *
 * vpdpbusd multiplies unsigned by signed bytes and adds each row's four
 * products straight into its int32 lane, so codes of up to 7 bits go as
 * they are; 8-bit codes (stored as q - 128) are flipped back to q and 128
 * times the activations' sum taken away again, the integer the reference
 * forms. A 1-bit plane word is a mask register: one masked move makes its
 * bytes. Eight activation rows per register tile (32 zmm registers). */
#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels/uniform_pack.h"

#define LB_TGT __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vnni")))
#define LB_INLINE __attribute__((always_inline)) inline
#define NA_MAX 8
#define NA_MID 4

typedef __m512i VB;
typedef __m512i VI;
typedef __m512 VF;

LB_TGT static LB_INLINE VB vb_load(const uint8_t *p) { return _mm512_loadu_si512(p); }
LB_TGT static LB_INLINE VB vb_field(VB x, int s, int m) {
    return _mm512_and_si512(_mm512_srli_epi16(x, (unsigned)s), _mm512_set1_epi8((char)m));
}
LB_TGT static LB_INLINE VB vb_or(VB x, VB y) { return _mm512_or_si512(x, y); }
LB_TGT static LB_INLINE VB vb_shl(VB x, int n) { return _mm512_slli_epi16(x, (unsigned)n); }
LB_TGT static LB_INLINE VB vb_plane1(const uint8_t *p, int s) {
    uint64_t u;
    memcpy(&u, p, 8);
    return _mm512_maskz_mov_epi8(_cvtu64_mask64(u), _mm512_set1_epi8((char)(1 << s)));
}

LB_TGT static LB_INLINE VI vi_add(VI x, VI y, int bits) {
    (void)bits;
    return _mm512_add_epi32(x, y);
}
LB_TGT static LB_INLINE VB vb_table(const int8_t *t) {
    return _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)t));
}
LB_TGT static LB_INLINE VB vb_lookup(VB x, VB tab) { return _mm512_shuffle_epi8(tab, x); }
LB_TGT static LB_INLINE VI vi_zero(void) { return _mm512_setzero_si512(); }
LB_TGT static LB_INLINE __m512i bcast4(const int8_t *a4) {
    int32_t u;
    memcpy(&u, a4, 4);
    return _mm512_set1_epi32(u);
}
LB_TGT static LB_INLINE VI vi_dot(VI acc, VB w, const int8_t *a4, int bits) {
    (void)bits;
    return _mm512_dpbusd_epi32(acc, w, bcast4(a4));
}
LB_TGT static LB_INLINE VI vi_dot8(VI acc, VB w, const int8_t *a4) {
    __m512i a = bcast4(a4), flip = _mm512_set1_epi8((char)0x80);
    acc = _mm512_dpbusd_epi32(acc, _mm512_xor_si512(w, flip), a);
    return _mm512_sub_epi32(acc, _mm512_dpbusd_epi32(_mm512_setzero_si512(), flip, a));
}

LB_TGT static LB_INLINE VF vf_zero(void) { return _mm512_setzero_ps(); }
LB_TGT static LB_INLINE VF vf_from_vi(VI v, int bits) {
    (void)bits;
    return _mm512_cvtepi32_ps(v);
}
LB_TGT static LB_INLINE VF vf_fma(VF a, VF b, VF c) { return _mm512_fmadd_ps(a, b, c); }
LB_TGT static LB_INLINE VF vf_fma_s(VF a, float s, VF c) { return _mm512_fmadd_ps(a, _mm512_set1_ps(s), c); }
LB_TGT static LB_INLINE VF vf_scale(VF a, float s) { return _mm512_mul_ps(a, _mm512_set1_ps(s)); }
LB_TGT static LB_INLINE VF vf_mul(VF a, VF b) { return _mm512_mul_ps(a, b); }
LB_TGT static LB_INLINE VF vf_h16(const uint8_t *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}
LB_TGT static LB_INLINE VF vf_u8(const uint8_t *p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p)));
}
LB_TGT static LB_INLINE VF vf_i8(const uint8_t *p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)));
}
LB_TGT static LB_INLINE VF vf_f32(const uint8_t *p) { return _mm512_loadu_ps(p); }
LB_TGT static LB_INLINE void vf_store(float *p, VF v) { _mm512_storeu_ps(p, v); }

#include "kernels/uniform_tile.h"

UNIFORM_ENTRY(lb_kernel_uniform_avx512)
#endif
