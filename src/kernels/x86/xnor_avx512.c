/* Binary weights x binarized activations, AVX-512 with VPOPCNTDQ: the twin
 * of ref/xnor_ref.c. 512 columns (16 blocks) per step: w xor x, then
 * vpopcntd gives each 32-column block's popcount in its own lane, so lane j
 * holds block j's exact integer n_j - 2 popcount_j. One scale per row: the
 * integers add up exactly, the scale comes last; groups: each lane scaled
 * by its block's group scale (lanes past the row's blocks masked to 0). */
#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels/lowbin.h"

#define LB_AVX512 __attribute__((target("avx512f,avx512bw,avx512vpopcntdq,avx2,fma,f16c")))

LB_AVX512 void lb_kernel_xnor_avx512(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                                     float *scratch) {
    (void)scratch;
    const lb_lowbin_pack *p = lb_lowbin(w);
    const uint16_t *sc = lb_lowbin_scales(w);
    const int nb = p->nb, gs = p->gshift, cols = (int)w->cols, steps = (nb + 15) / 16;
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i gidx = gs >= 30 ? _mm512_setzero_si512() : _mm512_srli_epi32(lane, (unsigned)gs);
    __m512i nlast = _mm512_sub_epi32(_mm512_set1_epi32(cols - 32 * 16 * (steps - 1)), _mm512_slli_epi32(lane, 5));
    nlast = _mm512_min_epi32(_mm512_max_epi32(nlast, _mm512_setzero_si512()), _mm512_set1_epi32(32));
    const __m512i nfull = _mm512_set1_epi32(32);
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = lb_lowbin_codes(w, r);
        const uint16_t *sr = sc + (size_t)r * p->spr;
        for (int i = 0; i < x->n; i++) {
            const uint8_t *xb = x->bits + (size_t)i * (x->ld / 8);
            __m512i itot = _mm512_setzero_si512();
            __m512 ftot = _mm512_setzero_ps();
            for (int t = 0; t < steps; t++) {
                __m512i v = _mm512_xor_si512(_mm512_loadu_si512(row + 64 * t), _mm512_loadu_si512(xb + 64 * t));
                __m512i pc = _mm512_popcnt_epi32(v);
                __m512i dot = _mm512_sub_epi32(t + 1 < steps ? nfull : nlast, _mm512_add_epi32(pc, pc));
                if (gs >= 30) {
                    itot = _mm512_add_epi32(itot, dot);
                    continue;
                }
                /* scales of blocks 16t..16t+15 (the table is followed by the codes:
                 * the 32-byte load stays inside the buffer); lanes past nb get 0 */
                const uint16_t *s0 = sr + ((16 * t) >> gs);
                __m512 s = _mm512_permutexvar_ps(gidx, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)s0)));
                __mmask16 live = _mm512_cmpgt_epi32_mask(_mm512_set1_epi32(nb - 16 * t), lane);
                ftot = _mm512_mask3_fmadd_ps(_mm512_cvtepi32_ps(dot), s, ftot, live);
            }
            float v = gs >= 30 ? (float)_mm512_reduce_add_epi32(itot) * _cvtsh_ss(sr[0]) : _mm512_reduce_add_ps(ftot);
            y[(size_t)i * ldy + r] = x->beta[i] * v;
        }
    }
}
#endif
