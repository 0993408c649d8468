/* Ternary and binary x int8 matmul, AVX-512 (F, BW, VNNI; F16C for the
 * scales): the twins of ref/ternary_ref.c and ref/binary_ref.c on the
 * repacked layout of kernels/lowbin.h. One zmm holds 64 columns, i.e. two
 * activation blocks, and one 64-byte chunk digit of weights.
 *
 * No unpacking to weight bytes: the weights become byte masks, and the
 * activations are signed under them (AVX-512 has no vpsignb):
 *   ternary: k2 = (code == 2), k0 = (code == 0); a' = k2 ? a : k0 ? -a : 0
 *            (2-bit: vptestmb / vptestnmb straight on the packed byte with
 *            the digit's bit pair; 1.6-bit: the digit first, as in the AVX2
 *            file, with vpmullw / vpmulhuw in 16-bit lanes);
 *   binary:  the 64 stored bits are the mask: a' = bit ? a : -a.
 * Then vpdpbusd against ones sums a' per 4 bytes: the same exact integer
 * sums as the reference (lanes 0-7 block b, 8-15 block b + 1), turned to
 * float and scaled per block (activation scale times weight scale). */
#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels/lowbin.h"

#define LB_AVX512 __attribute__((target("avx512f,avx512bw,avx512vnni,avx2,fma,f16c")))
#define LB_INLINE __attribute__((always_inline)) inline

/* the two floats at p as lanes 0-7 and 8-15 */
LB_AVX512 static LB_INLINE __m512 pair_splat(__m128 v) {
    const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(v));
}

/* 1.6-bit digit d (0..2) of each of 64 repacked bytes */
LB_AVX512 static LB_INLINE __m512i t5_digit(__m512i v, int d) {
    static const short pow3[5] = {1, 3, 9, 27, 81};
    __m512i m = _mm512_set1_epi16(pow3[d]), three = _mm512_set1_epi16(3);
    __m512i e = _mm512_slli_epi16(v, 8), o = _mm512_and_si512(v, _mm512_set1_epi16((short)0xFF00));
    e = _mm512_mulhi_epu16(_mm512_mullo_epi16(e, m), three);
    o = _mm512_mulhi_epu16(_mm512_mullo_epi16(o, m), three);
    return _mm512_or_si512(e, _mm512_slli_epi16(o, 8));
}

LB_AVX512 static LB_INLINE void matmul(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                                       int kind) {
    const lb_lowbin_pack *p = lb_lowbin(w);
    const uint16_t *sc = lb_lowbin_scales(w);
    const int nb = p->nb, gs = p->gshift, bpc = p->chunk_cols / 32;
    const int digits = kind == LB_LOWBIN_T2 ? 4 : kind == LB_LOWBIN_T5 ? 5 : 8;
    const size_t lq = (size_t)x->ld, ld = lq / 32;
    const __m512i zero = _mm512_setzero_si512(), ones = _mm512_set1_epi8(1);
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = lb_lowbin_codes(w, r);
        const uint16_t *sr = sc + (size_t)r * p->spr;
        for (int i0 = 0; i0 < x->n; i0 += 4) {
            const int m = x->n - i0 < 4 ? x->n - i0 : 4;
            const int8_t *xq = x->q + (size_t)i0 * lq;
            const float *xd = x->d + (size_t)i0 * ld;
            __m512 acc[4][2];
            for (int k = 0; k < 4; k++) acc[k][0] = acc[k][1] = _mm512_setzero_ps();
            for (int c = 0; c * bpc < nb; c++) {
                const uint8_t *ch = row + (size_t)c * LB_LOWBIN_CHUNK;
                __m512i v = _mm512_loadu_si512(ch);
                for (int d = 0; d < digits; d++) {
                    int b = c * bpc + 2 * d;
                    if (b >= nb) break;
                    __mmask64 kpos, kneg;
                    if (kind == LB_LOWBIN_T2) {
                        kpos = _mm512_test_epi8_mask(v, _mm512_set1_epi8((char)(2 << (2 * d))));
                        kneg = _mm512_testn_epi8_mask(v, _mm512_set1_epi8((char)(3 << (2 * d))));
                    } else if (kind == LB_LOWBIN_T5) {
                        __m512i t = t5_digit(v, d);
                        kpos = _mm512_test_epi8_mask(t, _mm512_set1_epi8(2));
                        kneg = _mm512_testn_epi8_mask(t, t);
                    } else {
                        unsigned long long bits;
                        __builtin_memcpy(&bits, ch + 8 * d, 8);
                        kpos = _cvtu64_mask64(bits);
                        kneg = _knot_mask64(kpos);
                    }
                    /* weight scales of blocks b and b + 1 (one group unless g32; block
                     * b + 1 may lie past the row's blocks and the table) */
                    __m512 sv;
                    if (gs) {
                        sv = _mm512_set1_ps(_cvtsh_ss(sr[b >> gs]));
                    } else {
                        float s1 = b + 1 < nb ? _cvtsh_ss(sr[b + 1]) : 0.0f;
                        sv = pair_splat(_mm_setr_ps(_cvtsh_ss(sr[b]), s1, 0.0f, 0.0f));
                    }
                    for (int k = 0; k < m; k++) {
                        __m512i a = _mm512_loadu_si512(xq + (size_t)k * lq + (size_t)b * 32);
                        __m512i sa = kind == LB_LOWBIN_B1 ? a : _mm512_maskz_mov_epi8(kpos, a);
                        sa = _mm512_mask_sub_epi8(sa, kneg, zero, a);
                        __m512 f = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(zero, ones, sa));
                        __m512 dx = pair_splat(_mm_castpd_ps(_mm_load_sd((const double *)(xd + (size_t)k * ld + b))));
                        acc[k][d & 1] = _mm512_fmadd_ps(f, _mm512_mul_ps(dx, sv), acc[k][d & 1]);
                    }
                }
            }
            for (int k = 0; k < m; k++)
                y[(size_t)(i0 + k) * ldy + r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[k][0], acc[k][1]));
        }
    }
}

LB_AVX512 void lb_kernel_ternary_avx512(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                                        float *scratch) {
    (void)scratch;
    if (lb_lowbin(w)->kind == LB_LOWBIN_T2) matmul(w, x, r0, r1, y, ldy, LB_LOWBIN_T2);
    else matmul(w, x, r0, r1, y, ldy, LB_LOWBIN_T5);
}

LB_AVX512 void lb_kernel_binary_avx512(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                                       float *scratch) {
    (void)scratch;
    matmul(w, x, r0, r1, y, ldy, LB_LOWBIN_B1);
}
#endif
