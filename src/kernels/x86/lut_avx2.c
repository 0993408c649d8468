/* Binary weights by table lookup, AVX2 (F16C for the scales): the twin of
 * ref/lut_ref.c. A ymm holds the index bytes of 16 weight rows for two
 * groups of 4 columns (the 16-byte tile slice broadcast to both lanes, the
 * high lane shifted by a nibble), so two vpshufb (low and high table bytes)
 * look up 2 x 16 rows x 4 columns = 128 weights; vpunpck{l,h}bw rebuild the
 * int16 entries, added up exactly per 32-column block (|sum| <= 8 * 508),
 * then scaled per block into float accumulators for rows 0-7 and 8-15. The
 * index unpacking is shared by all activation rows of the call. */
#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels/lowbin.h"

#define LB_AVX2 __attribute__((target("avx2,fma,f16c")))

LB_AVX2 static inline __attribute__((always_inline)) void lut(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, int gcols) {
    const lb_lowbin_pack *p = lb_lowbin(w);
    const int slots = 32 / (2 * gcols); /* 16-byte pair slots per block */
    const uint16_t *sc = lb_lowbin_scales(w);
    const int nb = p->nb, gs = p->gshift, one_scale = gs >= 30;
    const size_t ld = (size_t)x->ld;
    const __m256i shift = _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4), low = _mm256_set1_epi8(15);
    for (int t = r0 / 16; t * 16 < r1; t++) {
        const uint8_t *tile = (const uint8_t *)w->packed + p->code_off + (size_t)t * p->row_bytes;
        const uint16_t *st = sc + (size_t)t * p->spr * 16;
        for (int i = 0; i < x->n; i++) {
            const uint8_t *tab = x->lut + (size_t)i * (ld / (4 * (size_t)gcols)) * 128;
            const float *xd = x->d + (size_t)i * (ld / 32);
            __m256 f0 = _mm256_setzero_ps(), f1 = _mm256_setzero_ps();
            for (int b = 0; b < nb; b++) {
                __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
                for (int pr = slots * b; pr < slots * (b + 1); pr++) {
                    __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(tile + (size_t)pr * 16)));
                    __m256i idx = _mm256_and_si256(_mm256_srlv_epi32(v, shift), low);
                    const uint8_t *e = tab + lb_lut_offset(2 * pr);
                    __m256i lo = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)e), idx);
                    __m256i hi = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)(e + 64)), idx);
                    a0 = _mm256_add_epi16(a0, _mm256_unpacklo_epi8(lo, hi)); /* rows 0-7, per lane one group */
                    a1 = _mm256_add_epi16(a1, _mm256_unpackhi_epi8(lo, hi)); /* rows 8-15 */
                }
                __m128i s0 = _mm_add_epi16(_mm256_castsi256_si128(a0), _mm256_extracti128_si256(a0, 1));
                __m128i s1 = _mm_add_epi16(_mm256_castsi256_si128(a1), _mm256_extracti128_si256(a1, 1));
                __m256 c0 = _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(s0)), c1 = _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(s1));
                __m256 dx = _mm256_set1_ps(xd[b]);
                if (one_scale) {
                    f0 = _mm256_fmadd_ps(c0, dx, f0);
                    f1 = _mm256_fmadd_ps(c1, dx, f1);
                } else {
                    const uint16_t *g = st + (size_t)(b >> gs) * 16;
                    __m256 s0f = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g));
                    __m256 s1f = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + 8)));
                    f0 = _mm256_fmadd_ps(c0, _mm256_mul_ps(s0f, dx), f0);
                    f1 = _mm256_fmadd_ps(c1, _mm256_mul_ps(s1f, dx), f1);
                }
            }
            if (one_scale) {
                f0 = _mm256_mul_ps(f0, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)st)));
                f1 = _mm256_mul_ps(f1, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(st + 8))));
            }
            float out[16];
            _mm256_storeu_ps(out, f0);
            _mm256_storeu_ps(out + 8, f1);
            for (int k = 0; k < 16; k++) {
                int r = t * 16 + k;
                if (r >= r0 && r < r1) y[(size_t)i * ldy + r] = out[k];
            }
        }
    }
}

LB_AVX2 void lb_kernel_binary_lut_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                                 float *scratch) {
    (void)scratch;
    lut(w, x, r0, r1, y, ldy, 4);
}

/* ternary: tables of 2 columns (index 3 c0 + c1), twice the slots per block;
 * the int16 sums stay exact (|sum| <= 16 * 254) */
LB_AVX2 void lb_kernel_ternary_lut_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                                  float *scratch) {
    (void)scratch;
    lut(w, x, r0, r1, y, ldy, 2);
}
#endif
