/* Ternary and binary x int8 matmul, AVX-512 (F, BW, VNNI; F16C for the
 * scales): the twins of ref/ternary_ref.c and ref/binary_ref.c on the
 * repacked layout of kernels/lowbin.h. One zmm holds 64 columns: two
 * activation blocks, and one digit of a 64-byte weight chunk.
 *
 * The codes go to vpdpbusd as unsigned bytes q (ternary 0..2: a shift and an
 * and for 2-bit, the multiply-by-3^d digit for 1.6-bit; binary: 2 * bit, a
 * masked move of the stored bits), against the int8 activations a, with the
 * accumulator starting at minus the activations' sums per 4 bytes: lane by
 * lane that is sum (q - 1) a, the reference's exact integer sums (lanes 0-7
 * block b, 8-15 block b + 1). Those sums and the block scales spread over
 * their lanes are prepared per activation row for a span of columns, once
 * per call for all the weight rows of the call, so a weight row costs per
 * 64 columns and activation row one vpdpbusd, one conversion and one FMA
 * (plus a multiply by the group scale unless the scale is per row). */
#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels/lowbin.h"

#define LB_AVX512 __attribute__((target("avx512f,avx512bw,avx512vnni,avx2,fma,f16c")))
#define LB_INLINE __attribute__((always_inline)) inline

/* lanes 0-1 of v spread over lanes 0-7 and 8-15 */
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

#define SPAN_CHUNKS 4 /* chunks per span: at most 32 block pairs (binary) */
#define MAX_PAIRS 32

LB_AVX512 static LB_INLINE void matmul(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                                       int kind) {
    const lb_lowbin_pack *p = lb_lowbin(w);
    const uint16_t *sc = lb_lowbin_scales(w);
    const int nb = p->nb, gs = p->gshift, ppc = p->chunk_cols / 64, npairs = (nb + 1) / 2;
    const int one_scale = gs >= 30; /* row or tensor: applied once at the end */
    const size_t lq = (size_t)x->ld, ld = lq / 32;
    const __m512i zero = _mm512_setzero_si512(), ones = _mm512_set1_epi8(1), twos = _mm512_set1_epi8(2);
    _Alignas(64) int32_t na[4][MAX_PAIRS][16];
    _Alignas(64) float dxv[4][MAX_PAIRS][16];
    for (int i0 = 0; i0 < x->n; i0 += 4) {
        const int m = x->n - i0 < 4 ? x->n - i0 : 4;
        const int8_t *xq = x->q + (size_t)i0 * lq;
        const float *xd = x->d + (size_t)i0 * ld;
        for (int j0 = 0; j0 < npairs; j0 += SPAN_CHUNKS * ppc) {
            const int j1 = j0 + SPAN_CHUNKS * ppc < npairs ? j0 + SPAN_CHUNKS * ppc : npairs;
            /* per activation row and block pair: minus the activation sums per 4
             * bytes (so vpdpbusd of the codes q adds up (q - 1) a exactly), and
             * the two block scales spread over their lanes */
            for (int k = 0; k < m; k++)
                for (int j = j0; j < j1; j++) {
                    __m512i a = _mm512_loadu_si512(xq + (size_t)k * lq + (size_t)j * 64);
                    _mm512_store_si512(na[k][j - j0], _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, ones, a)));
                    _mm512_store_ps(dxv[k][j - j0],
                                    pair_splat(_mm_castpd_ps(_mm_load_sd((const double *)(xd + (size_t)k * ld + 2 * j)))));
                }
            for (int r = r0; r < r1; r++) {
                const uint8_t *row = lb_lowbin_codes(w, r);
                const uint16_t *sr = sc + (size_t)r * p->spr;
                __m512 acc[4][2];
                for (int k = 0; k < 4; k++) acc[k][0] = acc[k][1] = _mm512_setzero_ps();
                for (int c = j0 / ppc; c * ppc < j1; c++) {
                    const uint8_t *ch = row + (size_t)c * LB_LOWBIN_CHUNK;
                    __m512i v = _mm512_loadu_si512(ch);
                    for (int d = 0; d < ppc; d++) {
                        const int j = c * ppc + d, b = 2 * j;
                        if (j >= j1) break;
                        __m512i q; /* u8 codes: ternary 0..2; binary 2 bit (value 2 bit - 1) */
                        if (kind == LB_LOWBIN_T2) q = _mm512_and_si512(_mm512_srli_epi16(v, 2 * d), _mm512_set1_epi8(3));
                        else if (kind == LB_LOWBIN_T5) q = t5_digit(v, d);
                        else {
                            unsigned long long bits;
                            __builtin_memcpy(&bits, ch + 8 * d, 8);
                            q = _mm512_maskz_mov_epi8(_cvtu64_mask64(bits), twos);
                        }
                        /* weight scales of blocks b and b + 1 (one group unless g32; block
                         * b + 1 may lie past the row's blocks and the table) */
                        __m512 sv = _mm512_set1_ps(1.0f);
                        if (!one_scale && gs) {
                            sv = _mm512_set1_ps(_cvtsh_ss(sr[b >> gs]));
                        } else if (!one_scale) {
                            float s1 = b + 1 < nb ? _cvtsh_ss(sr[b + 1]) : 0.0f;
                            sv = pair_splat(_mm_setr_ps(_cvtsh_ss(sr[b]), s1, 0.0f, 0.0f));
                        }
                        for (int k = 0; k < m; k++) {
                            __m512i a = _mm512_loadu_si512(xq + (size_t)k * lq + (size_t)b * 32);
                            __m512i s = _mm512_dpbusd_epi32(_mm512_load_si512(na[k][j - j0]), q, a);
                            __m512 dx = _mm512_load_ps(dxv[k][j - j0]);
                            if (!one_scale) dx = _mm512_mul_ps(dx, sv);
                            acc[k][d & 1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), dx, acc[k][d & 1]);
                        }
                    }
                }
                float s = one_scale ? _cvtsh_ss(sr[0]) : 1.0f;
                for (int k = 0; k < m; k++) {
                    float part = _mm512_reduce_add_ps(_mm512_add_ps(acc[k][0], acc[k][1]));
                    float *yk = y + (size_t)(i0 + k) * ldy + r;
                    if (one_scale) part *= s;
                    *yk = j0 ? *yk + part : part;
                }
            }
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
