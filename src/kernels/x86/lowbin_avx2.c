/* Ternary and binary x int8 matmul, AVX2 (+FMA, F16C for the fp16 scales):
 * the twins of ref/ternary_ref.c and ref/binary_ref.c, on the repacked
 * layout of kernels/lowbin.h. The weights become 32 signed bytes per block,
 * w in {-1, 0, +1} (ternary: q - 1) or {-1, +1} (binary), and the block's
 * dot product with the int8 activations is sign(a, w) summed by vpmaddubsw
 * against ones and vpmaddwd: exact, the reference's integer sum. Only the
 * float sum over blocks runs in another order (per-lane accumulators).
 *
 * Unpacking, per 64-byte chunk (two 32-column blocks per digit):
 *   2-bit:   (v >> 2d) & 3, one shift and one and per 32 codes;
 *   1.6-bit: digit d = ((q 3^d mod 256) * 3) >> 8 done in 16-bit lanes
 *            (even and odd bytes apart): vpmullw keeps the product mod 2^16
 *            with the byte in the high half, vpmulhuw by 3 gives the digit;
 *   binary:  4 bytes broadcast, vpshufb spreads byte k to lanes 8k..8k+7,
 *            and against 1 << (lane % 8), compare with zero.
 * One weight row meets up to 4 activation rows at a time (the unpacking is
 * done once for all of them); two accumulators per activation row (even and
 * odd digits) keep two FMA chains in flight. */
#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels/lowbin.h"
#include "kernels/x86/avx2_sums.h"

#define LB_AVX2 __attribute__((target("avx2,fma,f16c")))
#define LB_INLINE __attribute__((always_inline)) inline

/* w (signed bytes) of digit d from 32 repacked bytes v */
LB_AVX2 static LB_INLINE __m256i t2_w(__m256i v, int d) {
    __m256i c = _mm256_and_si256(_mm256_srli_epi16(v, 2 * d), _mm256_set1_epi8(3));
    return _mm256_sub_epi8(c, _mm256_set1_epi8(1));
}

LB_AVX2 static LB_INLINE __m256i t5_w(__m256i v, int d) {
    static const short pow3[5] = {1, 3, 9, 27, 81};
    __m256i m = _mm256_set1_epi16(pow3[d]), three = _mm256_set1_epi16(3);
    __m256i e = _mm256_slli_epi16(v, 8), o = _mm256_and_si256(v, _mm256_set1_epi16((short)0xFF00));
    e = _mm256_mulhi_epu16(_mm256_mullo_epi16(e, m), three);
    o = _mm256_mulhi_epu16(_mm256_mullo_epi16(o, m), three);
    return _mm256_sub_epi8(_mm256_or_si256(e, _mm256_slli_epi16(o, 8)), _mm256_set1_epi8(1));
}

/* +1 / -1 bytes from the 32 bits at p */
LB_AVX2 static LB_INLINE __m256i b1_w(const uint8_t *p) {
    int32_t bits;
    __builtin_memcpy(&bits, p, 4);
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3,
                                            3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    __m256i v = _mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32(bits), spread), bit);
    __m256i zero = _mm256_cmpeq_epi8(v, _mm256_setzero_si256()); /* -1 where the bit is 0 */
    return _mm256_or_si256(zero, _mm256_set1_epi8(1));
}

/* 8 int32 partial sums of w . a, as floats */
LB_AVX2 static LB_INLINE __m256 dot(__m256i w, const int8_t *a) {
    __m256i sa = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)a), w);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), sa), _mm256_set1_epi16(1)));
}

LB_AVX2 static LB_INLINE void matmul(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                                     int kind) {
    const lb_lowbin_pack *p = lb_lowbin(w);
    const uint16_t *sc = lb_lowbin_scales(w);
    const int nb = p->nb, digits = kind == LB_LOWBIN_T2 ? 4 : kind == LB_LOWBIN_T5 ? 5 : 8, bpc = p->chunk_cols / 32;
    const size_t lq = (size_t)x->ld, ld = lq / 32;
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = lb_lowbin_codes(w, r);
        const uint16_t *sr = sc + (size_t)r * p->spr;
        for (int i0 = 0; i0 < x->n; i0 += 4) {
            const int m = x->n - i0 < 4 ? x->n - i0 : 4;
            const int8_t *xq = x->q + (size_t)i0 * lq;
            const float *xd = x->d + (size_t)i0 * ld;
            __m256 acc[4][2];
            for (int k = 0; k < 4; k++) acc[k][0] = acc[k][1] = _mm256_setzero_ps();
            for (int c = 0; c * bpc < nb; c++) {
                const uint8_t *ch = row + (size_t)c * LB_LOWBIN_CHUNK;
                __m256i v0 = _mm256_loadu_si256((const __m256i *)ch), v1 = _mm256_loadu_si256((const __m256i *)(ch + 32));
                for (int d = 0; d < digits; d++) {
                    /* binary: "digit" d is the pair of blocks d of the 512-column chunk */
                    int b = c * bpc + 2 * d;
                    if (b >= nb) break;
                    __m256i w0, w1;
                    if (kind == LB_LOWBIN_T2) {
                        w0 = t2_w(v0, d);
                        w1 = t2_w(v1, d);
                    } else if (kind == LB_LOWBIN_T5) {
                        w0 = t5_w(v0, d);
                        w1 = t5_w(v1, d);
                    } else {
                        w0 = b1_w(ch + 8 * d);
                        w1 = b1_w(ch + 8 * d + 4);
                    }
                    /* block b + 1 may lie past the row's blocks (its activations and
                     * scale d are zero, but its group index may be out of the table) */
                    float s0 = _cvtsh_ss(sr[b >> p->gshift]), s1 = b + 1 < nb ? _cvtsh_ss(sr[(b + 1) >> p->gshift]) : 0.0f;
                    for (int k = 0; k < m; k++) {
                        const int8_t *a = xq + (size_t)k * lq + (size_t)b * 32;
                        const float *dk = xd + (size_t)k * ld + b;
                        __m256 t = _mm256_mul_ps(dot(w0, a), _mm256_set1_ps(s0 * dk[0]));
                        t = _mm256_fmadd_ps(dot(w1, a + 32), _mm256_set1_ps(s1 * dk[1]), t);
                        acc[k][d & 1] = _mm256_add_ps(acc[k][d & 1], t);
                    }
                }
            }
            for (int k = 0; k < m; k++) y[(size_t)(i0 + k) * ldy + r] = hsum(_mm256_add_ps(acc[k][0], acc[k][1]));
        }
    }
}

LB_AVX2 void lb_kernel_ternary_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                                    float *scratch) {
    (void)scratch;
    if (lb_lowbin(w)->kind == LB_LOWBIN_T2) matmul(w, x, r0, r1, y, ldy, LB_LOWBIN_T2);
    else matmul(w, x, r0, r1, y, ldy, LB_LOWBIN_T5);
}

LB_AVX2 void lb_kernel_binary_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                                   float *scratch) {
    (void)scratch;
    matmul(w, x, r0, r1, y, ldy, LB_LOWBIN_B1);
}
#endif
