/* Binary weights x binarized activations, AVX2 (F16C for the scales): the
 * twin of ref/xnor_ref.c. 256 columns (8 blocks) per step: w xor x, popcount
 * per byte by two vpshufb lookups of the nibbles, then per 32-column block
 * by vpmaddubsw / vpmaddwd against ones, so lane j holds block j's exact
 * integer n_j - 2 popcount_j. With one scale per row (row, tensor) the
 * integers add up exactly and the scale comes last; with groups each lane
 * is scaled by its block's group scale (lanes past the row's blocks get 0). */
#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels/lowbin.h"
#include "kernels/x86/avx2_sums.h"

#define LB_AVX2 __attribute__((target("avx2,fma,f16c")))
#define LB_INLINE __attribute__((always_inline)) inline

LB_AVX2 static LB_INLINE int hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

/* per 32-column block: popcount of (w xor x) */
LB_AVX2 static LB_INLINE __m256i block_popcounts(const uint8_t *w, const uint8_t *x) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2,
                                         2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(15);
    __m256i v = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)w), _mm256_loadu_si256((const __m256i *)x));
    __m256i c = _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_and_si256(v, low)),
                                _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(v, 4), low)));
    return _mm256_madd_epi16(_mm256_maddubs_epi16(c, _mm256_set1_epi8(1)), _mm256_set1_epi16(1));
}

LB_AVX2 void lb_kernel_xnor_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                                 float *scratch) {
    (void)scratch;
    const lb_lowbin_pack *p = lb_lowbin(w);
    const uint16_t *sc = lb_lowbin_scales(w);
    const int nb = p->nb, gs = p->gshift, cols = (int)w->cols, steps = (nb + 7) / 8;
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i gidx = gs >= 30 ? _mm256_setzero_si256() : _mm256_srli_epi32(lane, gs);
    /* real columns per block of the last step (32, fewer, then 0) */
    __m256i nlast = _mm256_sub_epi32(_mm256_set1_epi32(cols - 32 * 8 * (steps - 1)), _mm256_slli_epi32(lane, 5));
    nlast = _mm256_min_epi32(_mm256_max_epi32(nlast, _mm256_setzero_si256()), _mm256_set1_epi32(32));
    const __m256i nfull = _mm256_set1_epi32(32);
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = lb_lowbin_codes(w, r);
        const uint16_t *sr = sc + (size_t)r * p->spr;
        for (int i = 0; i < x->n; i++) {
            const uint8_t *xb = x->bits + (size_t)i * (x->ld / 8);
            __m256i itot = _mm256_setzero_si256();
            __m256 ftot = _mm256_setzero_ps();
            for (int t = 0; t < steps; t++) {
                __m256i pc = block_popcounts(row + 32 * t, xb + 32 * t);
                __m256i dot = _mm256_sub_epi32(t + 1 < steps ? nfull : nlast, _mm256_add_epi32(pc, pc));
                if (gs >= 30) {
                    itot = _mm256_add_epi32(itot, dot);
                    continue;
                }
                /* scales of blocks 8t..8t+7; the table is followed by the codes, so
                 * the 16-byte load stays inside the buffer; lanes past nb get 0 */
                const uint16_t *s0 = sr + ((8 * t) >> gs);
                __m256 s = _mm256_permutevar8x32_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)s0)), gidx);
                __m256i live = _mm256_cmpgt_epi32(_mm256_set1_epi32(nb - 8 * t), lane);
                s = _mm256_and_ps(s, _mm256_castsi256_ps(live));
                ftot = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), s, ftot);
            }
            float v = gs >= 30 ? (float)hsum_i32(itot) * _cvtsh_ss(sr[0]) : hsum(ftot);
            y[(size_t)i * ldy + r] = x->beta[i] * v;
        }
    }
}
#endif
