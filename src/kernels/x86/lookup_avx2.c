/* e8p, lut and vq weights x float activations, AVX2 (+FMA, F16C): the twin
 * of ref/lookup_ref.c on the stored bytes (kernels/lookup.h; vq on its
 * codebooks made floats at load).
 *
 * e8p, per 8 weights (one 16-bit code): the magnitudes by the code's high
 * byte (one 32-byte load), XOR with the sign mask by its low byte (a load
 * folded into vxorps), one FMA with the activations; the +-1/4 shifts of 8
 * codes at once against the activations' sums over each code's 8 columns;
 * e8p3's ball stage is one load by its byte. lut, per 8
 * weights: their b bytes broadcast, vpsrlvd to put code l at lane l's low
 * bits, vpermps on the group's levels (held in a register for the group;
 * 4 bits: a second vpermps and vblendvps on bit 3, moved to the sign bit
 * by vpsllvd), one FMA.
 *
 * Batch 1 multiplies the decoded weights by x directly (e8p: one
 * accumulator per stage, scaled once per row); larger batches decode 16
 * rows into a float tile and run the float GEMM on it, as the generic path
 * does with a slower decode.
 *
 * vq, per 16 columns of a stage: for d = 8 two codewords (one load each),
 * d = 16 one (two loads), d = 4 four (two 16-byte loads per 8 columns,
 * vinsertf128), d = 2 eight (four 8-byte loads per 8 columns); each word
 * then meets up to 4 activation rows (one FMA each), into two accumulators
 * per row (even and odd 8 columns: two chains even at batch 1). The last
 * columns (fewer than 16), and every column for other d, take a codeword
 * in masked pieces of up to 8. Each stage's sums are scaled once per row.
 * Batches of 8 and more decode 16 rows into a float tile (the same words,
 * scaled and summed) for the GEMM instead. */
#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels/lookup.h"
#include "kernels/x86/avx2_sums.h"

#define LB_AVX2 __attribute__((target("avx2,fma,f16c")))
#define LB_INLINE __attribute__((always_inline)) inline

/* x[0..m) and zeros (m < 8) */
LB_AVX2 static LB_INLINE __m256 load_x(const float *x, int m) {
    return m >= 8 ? _mm256_loadu_ps(x) : _mm256_maskload_ps(x, lanes_below(m));
}

/* ---- e8p ------------------------------------------------------------------ */

/* The tables as separate base registers: given one struct pointer, GCC
 * turns each index into (index + table offset) << shift, one more add per
 * code in the hot loop; the empty asm hides how the pointers relate. */
typedef struct {
    const float (*src)[8];
    const uint32_t (*sign)[8];
    const float (*shift)[8];
    const float (*ball)[8];
} e8p_bases;

static LB_INLINE e8p_bases e8p_bases_of(const lb_e8p_tables *tab) {
    e8p_bases b = {tab->src, tab->sign, tab->shift, tab->ball};
    __asm__("" : "+r"(b.src), "+r"(b.sign), "+r"(b.shift), "+r"(b.ball));
    return b;
}

/* the codeword of a 16-bit E8P code, or (wide 0) of a ball code */
LB_AVX2 static LB_INLINE __m256 e8p_word(const e8p_bases *tab, const uint8_t *codes, int wide, int64_t v) {
    if (!wide) return _mm256_load_ps(tab->ball[codes[v]]);
    unsigned code = lb_rd16(codes + 2 * v), lo = code & 255;
    __m256 m = _mm256_load_ps((const float *)tab->sign[lo]);
    return _mm256_add_ps(_mm256_xor_ps(_mm256_load_ps(tab->src[code >> 8]), m), _mm256_load_ps(tab->shift[lo]));
}

/* (src XOR sign) of a 16-bit code: its codeword without the shift */
LB_AVX2 static LB_INLINE __m256 e8p_signed(const e8p_bases *tab, const uint8_t *codes, int64_t v) {
    unsigned code = lb_rd16(codes + 2 * v);
    return _mm256_xor_ps(_mm256_load_ps(tab->src[code >> 8]), _mm256_load_ps((const float *)tab->sign[code & 255]));
}

/* x8[v] = x[8 v] + ... + x[8 v + 7] for v < n8 (a multiple of 8): per 64
 * columns a transposing tree of horizontal adds */
LB_AVX2 static void block_sums(const float *x, int64_t n8, float *x8) {
    for (int64_t v = 0; v < n8; v += 8) {
        const float *p = x + 8 * v;
        __m256 h01 = _mm256_hadd_ps(_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8));
        __m256 h23 = _mm256_hadd_ps(_mm256_loadu_ps(p + 16), _mm256_loadu_ps(p + 24));
        __m256 h45 = _mm256_hadd_ps(_mm256_loadu_ps(p + 32), _mm256_loadu_ps(p + 40));
        __m256 h67 = _mm256_hadd_ps(_mm256_loadu_ps(p + 48), _mm256_loadu_ps(p + 56));
        __m256 q0 = _mm256_hadd_ps(h01, h23), q1 = _mm256_hadd_ps(h45, h67);
        _mm256_storeu_ps(x8 + v, _mm256_add_ps(_mm256_permute2f128_ps(q0, q1, 0x20), _mm256_permute2f128_ps(q0, q1, 0x31)));
    }
}

/* sum_c codeword(c) x[c] over one 16-bit stage of a row. The shift is
 * +-1/4 for all 8 weights of a code, so its share is +-x8[v] / 4: per 8
 * codes one conversion of their low bits to +-1/4 and one FMA with the
 * block sums, instead of a table load and an add per code (4 loads per
 * code instead of 5, the bound at one thread). The last codes (fewer than
 * 8, or a partial vector) take the whole codeword. */
LB_AVX2 static LB_INLINE __m256 e8p_wide_dot(const e8p_bases *tab, const uint8_t *codes, const float *x, const float *x8,
                                             int64_t n8, int cols) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    __m256 sh = _mm256_setzero_ps();
    const __m256 quarter = _mm256_set1_ps(-0.25f);
    int64_t v = 0;
    for (; v < n8; v += 8) {
        for (int k = 0; k < 8; k += 4) {
            a0 = _mm256_fmadd_ps(e8p_signed(tab, codes, v + k), _mm256_loadu_ps(x + 8 * (v + k)), a0);
            a1 = _mm256_fmadd_ps(e8p_signed(tab, codes, v + k + 1), _mm256_loadu_ps(x + 8 * (v + k) + 8), a1);
            a2 = _mm256_fmadd_ps(e8p_signed(tab, codes, v + k + 2), _mm256_loadu_ps(x + 8 * (v + k) + 16), a2);
            a3 = _mm256_fmadd_ps(e8p_signed(tab, codes, v + k + 3), _mm256_loadu_ps(x + 8 * (v + k) + 24), a3);
        }
        /* bit 0 of each code to the sign bit: set -> +1/4 after the XOR with -1/4 */
        __m256i c = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(codes + 2 * v)));
        __m256 t = _mm256_xor_ps(_mm256_castsi256_ps(_mm256_slli_epi32(c, 31)), quarter);
        sh = _mm256_fmadd_ps(t, _mm256_loadu_ps(x8 + v), sh);
    }
    const int64_t full = cols / 8;
    for (; v < full; v++) a0 = _mm256_fmadd_ps(e8p_word(tab, codes, 1, v), _mm256_loadu_ps(x + 8 * v), a0);
    if (cols % 8) a1 = _mm256_fmadd_ps(e8p_word(tab, codes, 1, v), load_x(x + 8 * v, cols % 8), a1);
    return _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)), sh);
}

/* sum_c codeword(c) x[c] over e8p3's ball stage (8-bit codes, no shift) */
LB_AVX2 static LB_INLINE __m256 e8p_ball_dot(const e8p_bases *tab, const uint8_t *codes, const float *x, int cols) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    const int64_t full = cols / 8;
    int64_t v = 0;
    for (; v + 4 <= full; v += 4) {
        a0 = _mm256_fmadd_ps(e8p_word(tab, codes, 0, v), _mm256_loadu_ps(x + 8 * v), a0);
        a1 = _mm256_fmadd_ps(e8p_word(tab, codes, 0, v + 1), _mm256_loadu_ps(x + 8 * v + 8), a1);
        a2 = _mm256_fmadd_ps(e8p_word(tab, codes, 0, v + 2), _mm256_loadu_ps(x + 8 * v + 16), a2);
        a3 = _mm256_fmadd_ps(e8p_word(tab, codes, 0, v + 3), _mm256_loadu_ps(x + 8 * v + 24), a3);
    }
    for (; v < full; v++) a0 = _mm256_fmadd_ps(e8p_word(tab, codes, 0, v), _mm256_loadu_ps(x + 8 * v), a0);
    if (cols % 8) a1 = _mm256_fmadd_ps(e8p_word(tab, codes, 0, v), load_x(x + 8 * v, cols % 8), a1);
    return _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
}

/* x8: scratch of cols / 8 floats for the block sums */
LB_AVX2 static void e8p_gemv(const lb_tensor *w, const e8p_bases *tab, const float *x, int r0, int r1, float *y,
                             float *x8) {
    const int cols = (int)w->cols, stages = lb_e8p_stages(&w->spec), wide1 = lb_e8p_wide(&w->spec, 1);
    const int64_t n8 = cols / 64 * 8;
    block_sums(x, n8, x8);
    for (int r = r0; r < r1; r++) {
        __m256 tot = _mm256_mul_ps(e8p_wide_dot(tab, lb_e8p_codes(w, r, 0), x, x8, n8, cols),
                                   _mm256_set1_ps(lb_e8p_scale(w, r, 0)));
        if (stages > 1) {
            const uint8_t *c1 = lb_e8p_codes(w, r, 1);
            __m256 s1 = wide1 ? e8p_wide_dot(tab, c1, x, x8, n8, cols) : e8p_ball_dot(tab, c1, x, cols);
            tot = _mm256_fmadd_ps(s1, _mm256_set1_ps(lb_e8p_scale(w, r, 1)), tot);
        }
        y[r] = hsum(tot);
    }
}

/* row r as floats: scale_0 codeword_0 (+ scale_1 codeword_1), as the ref */
LB_AVX2 static void e8p_decode_row(const lb_tensor *w, const e8p_bases *tab, int r, float *out) {
    const int cols = (int)w->cols, two = lb_e8p_stages(&w->spec) > 1, wide1 = lb_e8p_wide(&w->spec, 1);
    const int64_t nvec = w->layout.cols_padded / 8;
    const __m256 a0 = _mm256_set1_ps(lb_e8p_scale(w, r, 0)), a1 = _mm256_set1_ps(two ? lb_e8p_scale(w, r, 1) : 0.0f);
    const uint8_t *c0 = lb_e8p_codes(w, r, 0), *c1 = two ? lb_e8p_codes(w, r, 1) : NULL;
    for (int64_t v = 0; v < nvec; v++) {
        __m256 val = _mm256_mul_ps(a0, e8p_word(tab, c0, 1, v));
        if (two) val = _mm256_add_ps(val, _mm256_mul_ps(a1, e8p_word(tab, c1, wide1, v)));
        if (8 * v + 8 <= cols) _mm256_storeu_ps(out + 8 * v, val);
        else _mm256_maskstore_ps(out + 8 * v, lanes_below(cols - (int)(8 * v)), val);
    }
}

LB_AVX2 void lb_kernel_e8p_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *tile) {
    const e8p_bases b = e8p_bases_of(lb_e8p_kernel_tables()), *tab = &b;
    if (x->n == 1) {
        e8p_gemv(w, tab, x->f, r0, r1, y, tile); /* the tile's first cols / 8 floats: the block sums */
        return;
    }
    int cols = (int)w->cols;
    for (int t0 = r0; t0 < r1; t0 += LB_DEQUANT_TILE) {
        int t1 = t0 + LB_DEQUANT_TILE < r1 ? t0 + LB_DEQUANT_TILE : r1;
        for (int r = t0; r < t1; r++) e8p_decode_row(w, tab, r, tile + (size_t)(r - t0) * cols);
        lb_gemm_nt_avx2(x->n, t1 - t0, cols, x->f, cols, tile, cols, y + t0, ldy);
    }
}

/* ---- lut ------------------------------------------------------------------ */

typedef struct {
    __m256 lo, hi; /* levels 0..7 and 8..15 (fewer than 3 bits: repeated to 8 lanes) */
} lut_levels;

LB_AVX2 static LB_INLINE lut_levels lut_load(const uint8_t *p, int b) {
    lut_levels L;
    if (b >= 3) {
        L.lo = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
        L.hi = b == 4 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 16))) : L.lo;
        return L;
    }
    __m128i h;
    if (b == 2) {
        h = _mm_loadl_epi64((const __m128i *)p); /* 4 levels */
    } else {
        uint32_t u;
        memcpy(&u, p, sizeof u); /* 2 levels, repeated */
        h = _mm_set1_epi32((int)u);
    }
    __m128 f = _mm_cvtph_ps(h);
    L.lo = L.hi = _mm256_set_m128(f, f);
    return L;
}

/* lane l: the level of code l of u (bits b l..b l + b - 1); vpermps reads an
 * index's low 3 bits, which below 3 bits hold the next codes too: the
 * repeated levels make those bits irrelevant */
LB_AVX2 static LB_INLINE __m256 lut_word(lut_levels L, uint32_t u, int b, __m256i sh, __m256i sh3) {
    __m256i v = _mm256_set1_epi32((int)u), idx = _mm256_srlv_epi32(v, sh);
    __m256 lo = _mm256_permutevar8x32_ps(L.lo, idx);
    if (b < 4) return lo;
    __m256 hi = _mm256_permutevar8x32_ps(L.hi, idx);
    return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_sllv_epi32(v, sh3)));
}

LB_AVX2 static LB_INLINE float lut_row_dot(const lb_tensor *w, int64_t r, const float *x, int b, __m256i sh, __m256i sh3) {
    const int64_t G = w->layout.group_len;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (int64_t g = 0; g < lb_lut_groups(w); g++) {
        const uint8_t *lv, *codes;
        lb_lut_group(w, r, g, &lv, &codes);
        const lut_levels L = lut_load(lv, b);
        const float *xg = x + g * G;
        const int cnt = lb_lut_group_cols(w, g);
        int j = 0;
        for (; j + 16 <= cnt; j += 16) {
            a0 = _mm256_fmadd_ps(lut_word(L, lb_lut_bits(codes + j / 8 * b, b), b, sh, sh3), _mm256_loadu_ps(xg + j), a0);
            a1 = _mm256_fmadd_ps(lut_word(L, lb_lut_bits(codes + (j / 8 + 1) * b, b), b, sh, sh3), _mm256_loadu_ps(xg + j + 8), a1);
        }
        for (; j < cnt; j += 8)
            a0 = _mm256_fmadd_ps(lut_word(L, lb_lut_bits(codes + j / 8 * b, b), b, sh, sh3), load_x(xg + j, cnt - j), a0);
    }
    return hsum(_mm256_add_ps(a0, a1));
}

LB_AVX2 static LB_INLINE void lut_decode_row(const lb_tensor *w, int64_t r, float *out, int b, __m256i sh, __m256i sh3) {
    const int64_t G = w->layout.group_len;
    for (int64_t g = 0; g < lb_lut_groups(w); g++) {
        const uint8_t *lv, *codes;
        lb_lut_group(w, r, g, &lv, &codes);
        const lut_levels L = lut_load(lv, b);
        float *o = out + g * G;
        const int cnt = lb_lut_group_cols(w, g);
        for (int j = 0; j < cnt; j += 8) {
            __m256 v = lut_word(L, lb_lut_bits(codes + j / 8 * b, b), b, sh, sh3);
            if (cnt - j >= 8) _mm256_storeu_ps(o + j, v);
            else _mm256_maskstore_ps(o + j, lanes_below(cnt - j), v);
        }
    }
}

/* one body per bit width (b a constant after inlining) */
LB_AVX2 static LB_INLINE void lut_run(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *tile,
                                      int b) {
    const __m256i sh = _mm256_setr_epi32(0, b, 2 * b, 3 * b, 4 * b, 5 * b, 6 * b, 7 * b);
    const __m256i sh3 = _mm256_setr_epi32(28, 24, 20, 16, 12, 8, 4, 0);
    if (x->n == 1) {
        for (int r = r0; r < r1; r++) y[r] = lut_row_dot(w, r, x->f, b, sh, sh3);
        return;
    }
    int cols = (int)w->cols;
    for (int t0 = r0; t0 < r1; t0 += LB_DEQUANT_TILE) {
        int t1 = t0 + LB_DEQUANT_TILE < r1 ? t0 + LB_DEQUANT_TILE : r1;
        for (int r = t0; r < t1; r++) lut_decode_row(w, r, tile + (size_t)(r - t0) * cols, b, sh, sh3);
        lb_gemm_nt_avx2(x->n, t1 - t0, cols, x->f, cols, tile, cols, y + t0, ldy);
    }
}

LB_AVX2 void lb_kernel_lut_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *tile) {
    switch (w->spec.bits) {
    case 1: lut_run(w, x, r0, r1, y, ldy, tile, 1); break;
    case 2: lut_run(w, x, r0, r1, y, ldy, tile, 2); break;
    case 3: lut_run(w, x, r0, r1, y, ldy, tile, 3); break;
    default: lut_run(w, x, r0, r1, y, ldy, tile, 4); break;
    }
}

/* ---- vq ------------------------------------------------------------------- */

/* the weights of columns 16 p .. 16 p + 15 of the stage whose codes start
 * at bit `bit`, D = 2, 4, 8 or 16, as two 8-lane words (16 / D codes) */
LB_AVX2 static LB_INLINE void vq_words(const float *book, const uint8_t *codes, uint64_t bit, int64_t span, int c,
                                       unsigned mask, const int D, __m256 *w0, __m256 *w1) {
    bit += (uint64_t)(span * (16 / D) * c);
    if (D == 16) {
        const float *cw = book + (size_t)lb_vq_code(codes, bit, mask) * 16;
        *w0 = _mm256_loadu_ps(cw);
        *w1 = _mm256_loadu_ps(cw + 8);
    } else if (D == 8) {
        *w0 = _mm256_loadu_ps(book + (size_t)lb_vq_code(codes, bit, mask) * 8);
        *w1 = _mm256_loadu_ps(book + (size_t)lb_vq_code(codes, bit + (unsigned)c, mask) * 8);
    } else if (D == 4) {
        const float *k[4];
        for (int i = 0; i < 4; i++) k[i] = book + (size_t)lb_vq_code(codes, bit + (uint64_t)(i * c), mask) * 4;
        *w0 = _mm256_loadu2_m128(k[1], k[0]);
        *w1 = _mm256_loadu2_m128(k[3], k[2]);
    } else { /* D == 2: a codeword is 8 bytes */
        __m128i two[4];
        for (int i = 0; i < 4; i++) {
            const float *k0 = book + (size_t)lb_vq_code(codes, bit + (uint64_t)(2 * i * c), mask) * 2;
            const float *k1 = book + (size_t)lb_vq_code(codes, bit + (uint64_t)((2 * i + 1) * c), mask) * 2;
            two[i] = _mm_unpacklo_epi64(_mm_loadu_si64(k0), _mm_loadu_si64(k1));
        }
        *w0 = _mm256_castsi256_ps(_mm256_set_m128i(two[1], two[0]));
        *w1 = _mm256_castsi256_ps(_mm256_set_m128i(two[3], two[2]));
    }
}

/* the lanes of a codeword's piece from coordinate i0 (of d): up to 8, and
 * only the `left` ones whose columns are below cols */
LB_AVX2 static LB_INLINE __m256i vq_piece(int d, int i0, int64_t left) {
    int m = d - i0 < 8 ? d - i0 : 8;
    return lanes_below(left < m ? (int)left : m);
}

/* One stage of one weight row against NB activation rows xs[j]: acc[j] (even
 * 8 columns) and acc[NB + j] (odd) += codeword . x over the columns below
 * cols. D: d when it is 2, 4, 8 or 16, else 0 (masked pieces only). */
LB_AVX2 static LB_INLINE void vq_stage(const float *book, const uint8_t *codes, uint64_t bit, int c, int d, const int D,
                                       const int NB, const float *const *xs, int cols, __m256 *acc) {
    const unsigned mask = (1u << c) - 1u;
    int64_t v = 0;
    if (D) {
        const int64_t spans = cols / 16;
        for (int64_t p = 0; p < spans; p++) {
            __m256 w0, w1;
            vq_words(book, codes, bit, p, c, mask, D, &w0, &w1);
#pragma GCC unroll 4
            for (int j = 0; j < NB; j++) {
                acc[j] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xs[j] + 16 * p), acc[j]);
                acc[NB + j] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xs[j] + 16 * p + 8), acc[NB + j]);
            }
        }
        v = spans * (16 / D);
    }
    for (; v * d < cols; v++) {
        const float *cw = book + (size_t)lb_vq_code(codes, bit + (uint64_t)(v * c), mask) * (size_t)d;
        for (int i0 = 0; i0 < d && v * d + i0 < cols; i0 += 8) {
            const __m256i lanes = vq_piece(d, i0, cols - v * d - i0);
            const __m256 wv = _mm256_maskload_ps(cw + i0, lanes);
#pragma GCC unroll 4
            for (int j = 0; j < NB; j++)
                acc[j] = _mm256_fmadd_ps(wv, _mm256_maskload_ps(xs[j] + v * d + i0, lanes), acc[j]);
        }
    }
}

/* rows r0..r1 against NB activation rows from i0: y = sum_t scale_t * (stage t's dot) */
LB_AVX2 static LB_INLINE void vq_rows(const lb_tensor *w, const float *x, int i0, int r0, int r1, float *y, int ldy,
                                      const int D, const int NB) {
    const int d = w->spec.vec_dim, c = w->spec.bits, stages = w->spec.vec_stages, cols = (int)w->cols;
    const uint64_t stage_bits = lb_vq_stage_bits(w);
    const float *xs[4];
    for (int j = 0; j < NB; j++) xs[j] = x + (size_t)(i0 + j) * (size_t)cols;
    for (int r = r0; r < r1; r++) {
        const uint8_t *codes = lb_vq_codes(w, r);
        float out[4] = {0, 0, 0, 0};
        for (int t = 0; t < stages; t++) {
            __m256 acc[8];
#pragma GCC unroll 8
            for (int j = 0; j < 2 * NB; j++) acc[j] = _mm256_setzero_ps();
            vq_stage(lb_vq_book(w, t), codes, (uint64_t)t * stage_bits, c, d, D, NB, xs, cols, acc);
            const float a = lb_vq_scale(w, r, t);
#pragma GCC unroll 4
            for (int j = 0; j < NB; j++) out[j] += a * hsum(_mm256_add_ps(acc[j], acc[NB + j]));
        }
        for (int j = 0; j < NB; j++) y[(size_t)(i0 + j) * (size_t)ldy + (size_t)r] = out[j];
    }
}

/* row r as floats: stage 0's scaled codewords, then + each further stage's,
 * rounded as the format's dequantize_row rounds them (a multiply, an add) */
LB_AVX2 static LB_INLINE void vq_decode_row(const lb_tensor *w, int r, float *out, const int D) {
    const int d = w->spec.vec_dim, c = w->spec.bits, stages = w->spec.vec_stages, cols = (int)w->cols;
    const uint64_t stage_bits = lb_vq_stage_bits(w);
    const unsigned mask = (1u << c) - 1u;
    const uint8_t *codes = lb_vq_codes(w, r);
    for (int t = 0; t < stages; t++) {
        const float *book = lb_vq_book(w, t);
        const uint64_t bit = (uint64_t)t * stage_bits;
        const __m256 a = _mm256_set1_ps(lb_vq_scale(w, r, t));
        int64_t v = 0;
        if (D) {
            const int64_t spans = cols / 16;
            for (int64_t p = 0; p < spans; p++) {
                __m256 w0, w1;
                vq_words(book, codes, bit, p, c, mask, D, &w0, &w1);
                w0 = _mm256_mul_ps(a, w0);
                w1 = _mm256_mul_ps(a, w1);
                if (t) {
                    w0 = _mm256_add_ps(_mm256_loadu_ps(out + 16 * p), w0);
                    w1 = _mm256_add_ps(_mm256_loadu_ps(out + 16 * p + 8), w1);
                }
                _mm256_storeu_ps(out + 16 * p, w0);
                _mm256_storeu_ps(out + 16 * p + 8, w1);
            }
            v = spans * (16 / D);
        }
        for (; v * d < cols; v++) {
            const float *cw = book + (size_t)lb_vq_code(codes, bit + (uint64_t)(v * c), mask) * (size_t)d;
            for (int i0 = 0; i0 < d && v * d + i0 < cols; i0 += 8) {
                const __m256i lanes = vq_piece(d, i0, cols - v * d - i0);
                float *o = out + v * d + i0;
                __m256 val = _mm256_mul_ps(a, _mm256_maskload_ps(cw + i0, lanes));
                if (t) val = _mm256_add_ps(_mm256_maskload_ps(o, lanes), val);
                _mm256_maskstore_ps(o, lanes, val);
            }
        }
    }
}

/* Batches below this multiply codewords into the activations directly;
 * from it on, 16 decoded rows go through the float GEMM, whose register
 * tiles (4 activation rows x 2 weight rows) load less per FMA than a
 * codeword looked up per 4 activation rows, once the decoding is shared by
 * this many rows. A guess from counting loads, not a measurement (the
 * machine this was written on was shared): docs/BENCHMARKS.md. */
#define VQ_TILE_BATCH 8

/* the batch in chunks of 4, 2, 1 activation rows (a codeword decoded once
 * per chunk); large batches by the tile */
LB_AVX2 static LB_INLINE void vq_run(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *tile,
                                     const int D) {
    if (x->n >= VQ_TILE_BATCH) {
        const int cols = (int)w->cols;
        for (int t0 = r0; t0 < r1; t0 += LB_DEQUANT_TILE) {
            int t1 = t0 + LB_DEQUANT_TILE < r1 ? t0 + LB_DEQUANT_TILE : r1;
            for (int r = t0; r < t1; r++) vq_decode_row(w, r, tile + (size_t)(r - t0) * (size_t)cols, D);
            lb_gemm_nt_avx2(x->n, t1 - t0, cols, x->f, cols, tile, cols, y + t0, ldy);
        }
        return;
    }
    int i0 = 0;
    for (; i0 + 4 <= x->n; i0 += 4) vq_rows(w, x->f, i0, r0, r1, y, ldy, D, 4);
    if (i0 + 2 <= x->n) vq_rows(w, x->f, i0, r0, r1, y, ldy, D, 2), i0 += 2;
    if (i0 < x->n) vq_rows(w, x->f, i0, r0, r1, y, ldy, D, 1);
}

LB_AVX2 void lb_kernel_vq_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *tile) {
    switch (w->spec.vec_dim) {
    case 2: vq_run(w, x, r0, r1, y, ldy, tile, 2); break;
    case 4: vq_run(w, x, r0, r1, y, ldy, tile, 4); break;
    case 8: vq_run(w, x, r0, r1, y, ldy, tile, 8); break;
    case 16: vq_run(w, x, r0, r1, y, ldy, tile, 16); break;
    default: vq_run(w, x, r0, r1, y, ldy, tile, 0); break;
    }
}
#endif
