/* Integer matmul kernels, AVX2 (+FMA, F16C for the fp16 weight scales): the
 * twins of ref/int8_ref.c. Per 32-weight block the codes become 32 signed
 * bytes (Q8_0: as stored; Q4_0: nibbles unpacked, minus 8), and their dot
 * product with the block of int8 activations is formed without VNNI by the
 * usual sign trick: vpmaddubsw multiplies unsigned by signed bytes, so it
 * gets |w| and sign(w) * a (both exact: |w| <= 128, |a| <= 127, and a pair
 * sum stays below 2^15), then vpmaddwd adds pairs into 8 int32 lanes. The
 * integer sums equal the reference's; only the float sum over blocks runs
 * in a different order (8 lanes, then a horizontal add).
 *
 * Tiles: one weight row against 8 activation rows (row_x8): the weight
 * block is decoded once for the eight, and instead of a float accumulator
 * per activation row (a conversion, a scale broadcast and an FMA per row
 * and block) the eight int32 block sums are folded by horizontal adds into
 * one vector, lane k = activation row k, converted once and scaled by one
 * vector of eight scales (the activation scales of the tile transposed
 * block-major beforehand). Per block and activation row that leaves about
 * five instructions instead of nine, which is what batched products
 * (speculative decoding, batched serving, prefill) are bound by. Then
 * groups of 4 activation rows (row_x4); the rows left over (all of them in
 * decode) go against 4 weight rows at a time (one activation load and one
 * horizontal reduction for the four), then single rows. */
#if defined(__x86_64__)
#include <immintrin.h>
#include <stddef.h>
#include <string.h>

#include "formats/ggml_blocks.h"
#include "kernels/kernels.h"
#include "kernels/x86/avx2_sums.h"

#define LB_AVX2 __attribute__((target("avx2,fma,f16c")))
#define LB_INLINE __attribute__((always_inline)) inline

/* Same bytes as lb_act_q8_row_ref: amax over the block, d = amax / 127,
 * x * (1 / d) clamped (NaN to -127: maxps returns its second operand on
 * NaN, as fmaxf returns the number), rounded to nearest even. */
LB_AVX2 void lb_act_q8_row_avx2(const float *x, int cols, int ld, int8_t *q, float *d) {
    const __m256 sign = _mm256_set1_ps(-0.0f), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int b = 0; b < ld / 32; b++) {
        int c0 = b * 32, cnt = cols - c0 < 32 ? cols - c0 : 32;
        if (cnt <= 0) { /* padding blocks */
            memset(q + c0, 0, (size_t)(ld - c0));
            for (; b < ld / 32; b++) d[b] = 0.0f;
            return;
        }
        float pad[32];
        const float *src = x + c0;
        if (cnt < 32) { /* the row's tail: zeros past cols */
            memset(pad, 0, sizeof pad);
            memcpy(pad, x + c0, (size_t)cnt * sizeof(float));
            src = pad;
        }
        __m256 v[4], amax = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(src + 8 * k);
            amax = _mm256_max_ps(_mm256_andnot_ps(sign, v[k]), amax);
        }
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        float db = _mm_cvtss_f32(m) / 127.0f, id = db != 0.0f ? 1.0f / db : 0.0f;
        __m256 vid = _mm256_set1_ps(id);
        __m256i i32[4];
        for (int k = 0; k < 4; k++) {
            __m256 t = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(v[k], vid), lo), hi);
            i32[k] = _mm256_cvtps_epi32(_mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        }
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i32[0], i32[1]), _mm256_packs_epi32(i32[2], i32[3]));
        _mm256_storeu_si256((__m256i *)(q + c0), _mm256_permutevar8x32_epi32(p, perm));
        d[b] = db;
    }
}

/* 32 signed codes of a weight block */
LB_AVX2 static LB_INLINE __m256i block_codes(const uint8_t *blk, int bits) {
    if (bits == 8) return _mm256_loadu_si256((const __m256i *)(blk + offsetof(lb_block_q8_0, qs)));
    __m128i b = _mm_loadu_si128((const __m128i *)(blk + offsetof(lb_block_q4_0, qs)));
    __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(b), _mm_srli_epi16(b, 4), 1);
    return _mm256_sub_epi8(_mm256_and_si256(v, _mm256_set1_epi8(15)), _mm256_set1_epi8(8));
}

/* 8 int32 partial sums of w . a, as floats; aw = |w| */
LB_AVX2 static LB_INLINE __m256 block_dot(__m256i aw, __m256i w, const int8_t *a) {
    __m256i sa = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)a), w);
    __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sa), _mm256_set1_epi16(1));
    return _mm256_cvtepi32_ps(p);
}

LB_AVX2 static LB_INLINE float row_x1(const uint8_t *row, int nb, size_t bb, int bits, const int8_t *xq,
                                      const float *xd) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int b = 0;
    for (; b + 2 <= nb; b += 2) {
        const uint8_t *b0 = row + (size_t)b * bb, *b1 = b0 + bb;
        __m256i w0 = block_codes(b0, bits), w1 = block_codes(b1, bits);
        __m256 s0 = _mm256_set1_ps(_cvtsh_ss(lb_rd16(b0)) * xd[b]);
        __m256 s1 = _mm256_set1_ps(_cvtsh_ss(lb_rd16(b1)) * xd[b + 1]);
        acc0 = _mm256_fmadd_ps(block_dot(_mm256_sign_epi8(w0, w0), w0, xq + b * 32), s0, acc0);
        acc1 = _mm256_fmadd_ps(block_dot(_mm256_sign_epi8(w1, w1), w1, xq + (b + 1) * 32), s1, acc1);
    }
    if (b < nb) {
        const uint8_t *b0 = row + (size_t)b * bb;
        __m256i w0 = block_codes(b0, bits);
        __m256 s0 = _mm256_set1_ps(_cvtsh_ss(lb_rd16(b0)) * xd[b]);
        acc0 = _mm256_fmadd_ps(block_dot(_mm256_sign_epi8(w0, w0), w0, xq + b * 32), s0, acc0);
    }
    return hsum(_mm256_add_ps(acc0, acc1));
}

/* four weight rows (rb bytes apart) against one activation row: the
 * activation block is loaded once, and one reduction serves all four */
LB_AVX2 static LB_INLINE void rows4_x1(const uint8_t *row, size_t rb, int nb, size_t bb, int bits, const int8_t *xq,
                                       const float *xd, float *y) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int b = 0; b < nb; b++) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(xq + b * 32));
        float dx = xd[b];
        for (int k = 0; k < 4; k++) {
            const uint8_t *blk = row + k * rb + (size_t)b * bb;
            __m256i w = block_codes(blk, bits);
            __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w)),
                                          _mm256_set1_epi16(1));
            acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(_cvtsh_ss(lb_rd16(blk)) * dx), acc[k]);
        }
    }
    _mm_storeu_ps(y, hsum4(acc));
}

LB_AVX2 static LB_INLINE void row_x4(const uint8_t *row, int nb, size_t bb, int bits, const lb_act *x, int i,
                                     float *y, int ldy) {
    const int8_t *q0 = x->q + (size_t)i * x->ld;
    size_t lq = (size_t)x->ld, ld = (size_t)x->ld / 32;
    const float *d0 = x->d + (size_t)i * ld;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int b = 0; b < nb; b++) {
        const uint8_t *blk = row + (size_t)b * bb;
        __m256i w = block_codes(blk, bits), aw = _mm256_sign_epi8(w, w);
        float dw = _cvtsh_ss(lb_rd16(blk));
        for (int k = 0; k < 4; k++) {
            __m256 s = _mm256_set1_ps(dw * d0[k * ld + b]);
            acc[k] = _mm256_fmadd_ps(block_dot(aw, w, q0 + k * lq + b * 32), s, acc[k]);
        }
    }
    float s[4];
    _mm_storeu_ps(s, hsum4(acc));
    for (int k = 0; k < 4; k++) y[(size_t)(i + k) * ldy] = s[k];
}

/* Activation rows i..i+7 against one weight row: y[k * ldy] for k < 8.
 * dxt: the 8 rows' block scales, block-major (dxt[b * 8 + k]). Q4_0 skips
 * the sign trick: its nibbles u = q + 8 are already unsigned, so
 * vpmaddubsw(u, a) is exact (2 * 15 * 127 < 2^15) and
 * sum (u - 8) a = sum u a - 8 sum a, the second term from bs8 (per block,
 * 8 sum a for each of the 8 rows, computed once per activation tile): one
 * instruction per row and block less. */
LB_AVX2 static LB_INLINE void row_x8(const uint8_t *row, int nb, size_t bb, int bits, const int8_t *q0, size_t lq,
                                     const float *dxt, const int32_t *bs8, float *y, int ldy) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const uint8_t *blk = row + (size_t)b * bb;
        const int8_t *a = q0 + b * 32;
        __m256i p[8];
        if (bits == 4) {
            __m128i h = _mm_loadu_si128((const __m128i *)(blk + offsetof(lb_block_q4_0, qs)));
            __m256i u = _mm256_and_si256(_mm256_inserti128_si256(_mm256_castsi128_si256(h), _mm_srli_epi16(h, 4), 1),
                                         _mm256_set1_epi8(15));
            for (int k = 0; k < 8; k++)
                p[k] = _mm256_madd_epi16(
                    _mm256_maddubs_epi16(u, _mm256_loadu_si256((const __m256i *)(a + (size_t)k * lq))), ones);
        } else {
            __m256i w = block_codes(blk, bits), aw = _mm256_sign_epi8(w, w);
            for (int k = 0; k < 8; k++) {
                __m256i sa = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(a + (size_t)k * lq)), w);
                p[k] = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sa), ones);
            }
        }
        /* per 128-bit half, lane k of h0123 = half of row k's sum (k < 4) */
        __m256i h0123 = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
        __m256i h4567 = _mm256_hadd_epi32(_mm256_hadd_epi32(p[4], p[5]), _mm256_hadd_epi32(p[6], p[7]));
        __m256i sum = _mm256_add_epi32(_mm256_permute2x128_si256(h0123, h4567, 0x20),
                                       _mm256_permute2x128_si256(h0123, h4567, 0x31));
        if (bits == 4) sum = _mm256_sub_epi32(sum, _mm256_loadu_si256((const __m256i *)(bs8 + (size_t)b * 8)));
        __m256 scale = _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(lb_rd16(blk))), _mm256_loadu_ps(dxt + (size_t)b * 8));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), scale, acc);
    }
    float s[8];
    _mm256_storeu_ps(s, acc);
    for (int k = 0; k < 8; k++) y[(size_t)k * ldy] = s[k];
}

/* 8 * (sum of the 32 codes) of one activation block */
LB_AVX2 static LB_INLINE int32_t block_sum8(const int8_t *a) {
    __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), _mm256_loadu_si256((const __m256i *)a)),
                                  _mm256_set1_epi16(1));
    __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4e));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xb1));
    return 8 * _mm_cvtsi128_si32(t);
}

/* row_x8's per-tile tables live on the stack: rows of up to this many blocks */
#define X8_MAX_BLOCKS 512

LB_AVX2 static LB_INLINE void matmul_blocks(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                                            int bits, size_t bb) {
    int nb = (int)(w->layout.cols_padded / LB_QK), i = 0;
    size_t rb = w->layout.row_bytes, lq = (size_t)x->ld, ld = lq / 32;
    if (nb <= X8_MAX_BLOCKS) {
        _Alignas(32) float dxt[X8_MAX_BLOCKS * 8];
        _Alignas(32) int32_t bs8[X8_MAX_BLOCKS * 8]; /* Q4_0 only */
        /* activation tile outer, weight rows inner: the 8 activation rows stay
         * in L1 while the call's weight rows (16 at a time) come from L2 */
        for (; i + 8 <= x->n; i += 8) {
            const float *d0 = x->d + (size_t)i * ld;
            const int8_t *q0 = x->q + (size_t)i * lq;
            for (int b = 0; b < nb; b++)
                for (int k = 0; k < 8; k++) {
                    dxt[b * 8 + k] = d0[(size_t)k * ld + (size_t)b];
                    if (bits == 4) bs8[b * 8 + k] = block_sum8(q0 + (size_t)k * lq + (size_t)b * 32);
                }
            for (int r = r0; r < r1; r++)
                row_x8(w->data + (size_t)r * rb, nb, bb, bits, q0, lq, dxt, bs8, y + (size_t)i * ldy + r, ldy);
        }
    }
    for (; i + 4 <= x->n; i += 4)
        for (int r = r0; r < r1; r++) row_x4(w->data + (size_t)r * rb, nb, bb, bits, x, i, y + r, ldy);
    for (; i < x->n; i++) {
        const int8_t *xq = x->q + (size_t)i * lq;
        const float *xd = x->d + (size_t)i * ld;
        float *yi = y + (size_t)i * ldy;
        int r = r0;
        for (; r + 4 <= r1; r += 4) rows4_x1(w->data + (size_t)r * rb, rb, nb, bb, bits, xq, xd, yi + r);
        for (; r < r1; r++) yi[r] = row_x1(w->data + (size_t)r * rb, nb, bb, bits, xq, xd);
    }
}

LB_AVX2 void lb_kernel_q8_0_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                                 float *scratch) {
    (void)scratch;
    matmul_blocks(w, x, r0, r1, y, ldy, 8, sizeof(lb_block_q8_0));
}

LB_AVX2 void lb_kernel_q4_0_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                                 float *scratch) {
    (void)scratch;
    matmul_blocks(w, x, r0, r1, y, ldy, 4, sizeof(lb_block_q4_0));
}
#endif
