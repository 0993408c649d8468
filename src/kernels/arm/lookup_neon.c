/* e8p, vq and lut weights x float activations, NEON: the AArch64 twin of
 * ref/lookup_ref.c, as x86/lookup_avx2.c is on x86. Batch 1 multiplies the decoded weights
 * by x directly; larger batches decode 16 rows into a float tile for the
 * NEON float GEMM.
 *
 * e8p, per 8 weights (one 16-bit code): the magnitudes by the code's high
 * byte, eor with the sign mask by its low byte, add the +-1/4 shift by the
 * low byte (kernels/lookup.h's tables, two 4-lane halves each), two FMAs;
 * e8p3's ball stage is one table row by its byte. Each stage's sum is
 * scaled once per row.
 *
 * vq, per stage: a codeword's coordinates 4 at a time against the
 * activations (d = 2: two codewords per 4 lanes), the last ones and the
 * columns past cols one at a time; each stage's sum scaled once per row.
 *
 * lut, per group: its 2^b fp16 levels become 16 floats (zeros past 2^b)
 * held in four registers, a 64-byte table. Per 8 weights the b bytes of
 * their codes are broadcast, ushl by minus b l and an and put code l in
 * lane l, one mla turns code c into the byte indices 4c .. 4c + 3, and one
 * tbl over the four table registers gives 4 levels: two tbl for 8 weights,
 * then one FMA each with the activations. */
#if defined(__aarch64__)
#include <arm_neon.h>

#include "kernels/lookup.h"

/* ---- e8p ------------------------------------------------------------------ */

/* the codeword of a 16-bit E8P code (wide), or of a ball code, as two halves */
static inline void e8p_word(const lb_e8p_tables *tab, const uint8_t *codes, int wide, int64_t v, float32x4_t cw[2]) {
    if (!wide) {
        cw[0] = vld1q_f32(tab->ball[codes[v]]);
        cw[1] = vld1q_f32(tab->ball[codes[v]] + 4);
        return;
    }
    const unsigned code = lb_rd16(codes + 2 * v), lo = code & 255;
    for (int h = 0; h < 2; h++) {
        uint32x4_t m = veorq_u32(vreinterpretq_u32_f32(vld1q_f32(tab->src[code >> 8] + 4 * h)), vld1q_u32(tab->sign[lo] + 4 * h));
        cw[h] = vaddq_f32(vreinterpretq_f32_u32(m), vld1q_f32(tab->shift[lo] + 4 * h));
    }
}

/* sum_c codeword(c) x[c] over stage t of row r */
static float32x4_t e8p_dot(const lb_tensor *w, const lb_e8p_tables *tab, int64_t r, int t, const float *x) {
    const int cols = (int)w->cols, wide = lb_e8p_wide(&w->spec, t);
    const uint8_t *codes = lb_e8p_codes(w, r, t);
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = vdupq_n_f32(0.0f), cw[2];
    int64_t v = 0;
    for (; v < cols / 8; v++) {
        e8p_word(tab, codes, wide, v, cw);
        a0 = vfmaq_f32(a0, cw[0], vld1q_f32(x + 8 * v));
        a1 = vfmaq_f32(a1, cw[1], vld1q_f32(x + 8 * v + 4));
    }
    if (cols % 8) { /* the last code's columns past cols meet zeros */
        float xt[8] = {0};
        memcpy(xt, x + 8 * v, (size_t)(cols % 8) * sizeof(float));
        e8p_word(tab, codes, wide, v, cw);
        a0 = vfmaq_f32(a0, cw[0], vld1q_f32(xt));
        a1 = vfmaq_f32(a1, cw[1], vld1q_f32(xt + 4));
    }
    return vaddq_f32(a0, a1);
}

/* row r as floats: the stages' scale x codeword added in order, as the ref */
static void e8p_decode_row(const lb_tensor *w, const lb_e8p_tables *tab, int64_t r, float *out) {
    const int cols = (int)w->cols, stages = lb_e8p_stages(&w->spec); /* 1 or 2 */
    const int64_t nvec = w->layout.cols_padded / 8;
    float a[2];
    const uint8_t *codes[2];
    int wide[2];
    for (int t = 0; t < stages; t++) {
        a[t] = lb_e8p_scale(w, r, t);
        codes[t] = lb_e8p_codes(w, r, t);
        wide[t] = lb_e8p_wide(&w->spec, t);
    }
    for (int64_t v = 0; v < nvec; v++) {
        float32x4_t val[2], cw[2];
        for (int t = 0; t < stages; t++) {
            e8p_word(tab, codes[t], wide[t], v, cw);
            for (int h = 0; h < 2; h++) val[h] = t ? vaddq_f32(val[h], vmulq_n_f32(cw[h], a[t])) : vmulq_n_f32(cw[h], a[t]);
        }
        float tmp[8], *o = 8 * v + 8 <= cols ? out + 8 * v : tmp;
        vst1q_f32(o, val[0]);
        vst1q_f32(o + 4, val[1]);
        if (o == tmp) memcpy(out + 8 * v, tmp, (size_t)(cols - 8 * v) * sizeof(float));
    }
}

void lb_kernel_e8p_neon(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *tile) {
    const lb_e8p_tables *tab = lb_e8p_kernel_tables();
    if (x->n == 1) {
        for (int r = r0; r < r1; r++) {
            float32x4_t tot = vmulq_n_f32(e8p_dot(w, tab, r, 0, x->f), lb_e8p_scale(w, r, 0));
            for (int t = 1; t < lb_e8p_stages(&w->spec); t++)
                tot = vfmaq_n_f32(tot, e8p_dot(w, tab, r, t, x->f), lb_e8p_scale(w, r, t));
            y[r] = vaddvq_f32(tot);
        }
        return;
    }
    const int cols = (int)w->cols;
    for (int t0 = r0; t0 < r1; t0 += LB_DEQUANT_TILE) {
        int t1 = t0 + LB_DEQUANT_TILE < r1 ? t0 + LB_DEQUANT_TILE : r1;
        for (int r = t0; r < t1; r++) e8p_decode_row(w, tab, r, tile + (size_t)(r - t0) * cols);
        lb_gemm_nt_neon(x->n, t1 - t0, cols, x->f, cols, tile, cols, y + t0, ldy);
    }
}

/* ---- lut ------------------------------------------------------------------ */

typedef struct {
    int32x4_t shift[2]; /* minus b l for lanes l = 0..3 and 4..7 */
    uint32x4_t mask;    /* 2^b - 1 */
} code_unpack;

static code_unpack unpack_for(int b) {
    code_unpack u;
    for (int h = 0; h < 2; h++) {
        int32_t sh[4];
        for (int l = 0; l < 4; l++) sh[l] = -b * (4 * h + l);
        u.shift[h] = vld1q_s32(sh);
    }
    u.mask = vdupq_n_u32((1u << b) - 1);
    return u;
}

/* a group's levels as a 64-byte table of 16 floats */
static inline uint8x16x4_t levels_of(const uint8_t *p, int b) {
    uint16_t h[16] = {0};
    memcpy(h, p, (size_t)2 << b);
    uint8x16x4_t t;
    t.val[0] = vreinterpretq_u8_f32(vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h))));
    t.val[1] = vreinterpretq_u8_f32(vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h + 4))));
    t.val[2] = vreinterpretq_u8_f32(vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h + 8))));
    t.val[3] = vreinterpretq_u8_f32(vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h + 12))));
    return t;
}

/* the levels of the 8 codes of u (lb_lut_bits) into v[0], v[1] */
static inline void lut_word(const uint8x16x4_t *t, const code_unpack *cu, uint32_t u, float32x4_t v[2]) {
    const uint32x4_t all = vdupq_n_u32(u), bytes = vdupq_n_u32(0x03020100u), four = vdupq_n_u32(0x04040404u);
    for (int h = 0; h < 2; h++) {
        uint32x4_t code = vandq_u32(vshlq_u32(all, cu->shift[h]), cu->mask);
        uint8x16_t idx = vreinterpretq_u8_u32(vmlaq_u32(bytes, code, four));
        v[h] = vreinterpretq_f32_u8(vqtbl4q_u8(*t, idx));
    }
}

static inline float row_dot(const lb_tensor *w, const code_unpack *cu, int64_t r, const float *x, int b) {
    const int64_t G = w->layout.group_len;
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = vdupq_n_f32(0.0f), v[2];
    for (int64_t g = 0; g < lb_lut_groups(w); g++) {
        const uint8_t *lv, *codes;
        lb_lut_group(w, r, g, &lv, &codes);
        const uint8x16x4_t t = levels_of(lv, b);
        const float *xg = x + g * G;
        const int cnt = lb_lut_group_cols(w, g);
        int j = 0;
        for (; j + 8 <= cnt; j += 8) {
            lut_word(&t, cu, lb_lut_bits(codes + j / 8 * b, b), v);
            a0 = vfmaq_f32(a0, v[0], vld1q_f32(xg + j));
            a1 = vfmaq_f32(a1, v[1], vld1q_f32(xg + j + 4));
        }
        if (j < cnt) { /* the codes past cnt meet zeros */
            float xt[8] = {0};
            memcpy(xt, xg + j, (size_t)(cnt - j) * sizeof(float));
            lut_word(&t, cu, lb_lut_bits(codes + j / 8 * b, b), v);
            a0 = vfmaq_f32(a0, v[0], vld1q_f32(xt));
            a1 = vfmaq_f32(a1, v[1], vld1q_f32(xt + 4));
        }
    }
    return vaddvq_f32(vaddq_f32(a0, a1));
}

static inline void decode_row(const lb_tensor *w, const code_unpack *cu, int64_t r, float *out, int b) {
    const int64_t G = w->layout.group_len;
    float32x4_t v[2];
    for (int64_t g = 0; g < lb_lut_groups(w); g++) {
        const uint8_t *lv, *codes;
        lb_lut_group(w, r, g, &lv, &codes);
        const uint8x16x4_t t = levels_of(lv, b);
        float *o = out + g * G;
        const int cnt = lb_lut_group_cols(w, g);
        for (int j = 0; j < cnt; j += 8) {
            float tmp[8];
            lut_word(&t, cu, lb_lut_bits(codes + j / 8 * b, b), v);
            vst1q_f32(cnt - j >= 8 ? o + j : tmp, v[0]);
            vst1q_f32(cnt - j >= 8 ? o + j + 4 : tmp + 4, v[1]);
            if (cnt - j < 8) memcpy(o + j, tmp, (size_t)(cnt - j) * sizeof(float));
        }
    }
}

/* one body per bit width (b a constant after inlining) */
static inline void lut_run(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *tile, int b) {
    const code_unpack cu = unpack_for(b);
    if (x->n == 1) {
        for (int r = r0; r < r1; r++) y[r] = row_dot(w, &cu, r, x->f, b);
        return;
    }
    const int cols = (int)w->cols;
    for (int t0 = r0; t0 < r1; t0 += LB_DEQUANT_TILE) {
        int t1 = t0 + LB_DEQUANT_TILE < r1 ? t0 + LB_DEQUANT_TILE : r1;
        for (int r = t0; r < t1; r++) decode_row(w, &cu, r, tile + (size_t)(r - t0) * cols, b);
        lb_gemm_nt_neon(x->n, t1 - t0, cols, x->f, cols, tile, cols, y + t0, ldy);
    }
}

void lb_kernel_lut_neon(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *tile) {
    switch (w->spec.bits) {
    case 1: lut_run(w, x, r0, r1, y, ldy, tile, 1); break;
    case 2: lut_run(w, x, r0, r1, y, ldy, tile, 2); break;
    case 3: lut_run(w, x, r0, r1, y, ldy, tile, 3); break;
    default: lut_run(w, x, r0, r1, y, ldy, tile, 4); break;
    }
}

/* ---- vq ------------------------------------------------------------------- */

/* sum over the columns below cols of codeword(v) . x, for one stage whose
 * codes start at bit `bit` of the row's codes */
static float vq_stage_dot(const float *book, const uint8_t *codes, uint64_t bit, int c, int d, int cols, const float *x) {
    const unsigned mask = (1u << c) - 1u;
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = vdupq_n_f32(0.0f);
    float rest = 0.0f;
    int64_t v = 0;
    if (d == 2) /* two codewords of 8 bytes make 4 lanes */
        for (; 2 * v + 4 <= cols; v += 2) {
            const float *k0 = book + (size_t)lb_vq_code(codes, bit + (uint64_t)(v * c), mask) * 2;
            const float *k1 = book + (size_t)lb_vq_code(codes, bit + (uint64_t)((v + 1) * c), mask) * 2;
            a0 = vfmaq_f32(a0, vcombine_f32(vld1_f32(k0), vld1_f32(k1)), vld1q_f32(x + 2 * v));
        }
    for (; v * d < cols; v++) {
        const float *cw = book + (size_t)lb_vq_code(codes, bit + (uint64_t)(v * c), mask) * (size_t)d, *xv = x + v * d;
        const int n = cols - v * d < d ? (int)(cols - v * d) : d;
        int i = 0;
        for (; i + 8 <= n; i += 8) {
            a0 = vfmaq_f32(a0, vld1q_f32(cw + i), vld1q_f32(xv + i));
            a1 = vfmaq_f32(a1, vld1q_f32(cw + i + 4), vld1q_f32(xv + i + 4));
        }
        for (; i + 4 <= n; i += 4) a1 = vfmaq_f32(a1, vld1q_f32(cw + i), vld1q_f32(xv + i));
        for (; i < n; i++) rest += cw[i] * xv[i];
    }
    return vaddvq_f32(vaddq_f32(a0, a1)) + rest;
}

/* row r as floats: stage 0's scaled codewords, then + each further stage's
 * (a multiply, an add, as the format's dequantize_row rounds them) */
static void vq_decode_row(const lb_tensor *w, int r, float *out) {
    const int d = w->spec.vec_dim, c = w->spec.bits, stages = w->spec.vec_stages, cols = (int)w->cols;
    const uint64_t stage_bits = lb_vq_stage_bits(w);
    const unsigned mask = (1u << c) - 1u;
    const uint8_t *codes = lb_vq_codes(w, r);
    for (int t = 0; t < stages; t++) {
        const float *book = lb_vq_book(w, t);
        const float a = lb_vq_scale(w, r, t);
        for (int64_t v = 0; v * d < cols; v++) {
            const float *cw = book + (size_t)lb_vq_code(codes, (uint64_t)t * stage_bits + (uint64_t)(v * c), mask) * (size_t)d;
            float *o = out + v * d;
            const int n = cols - v * d < d ? (int)(cols - v * d) : d;
            int i = 0;
            for (; i + 4 <= n; i += 4) {
                float32x4_t val = vmulq_n_f32(vld1q_f32(cw + i), a);
                vst1q_f32(o + i, t ? vaddq_f32(vld1q_f32(o + i), val) : val);
            }
            for (; i < n; i++) o[i] = t ? o[i] + a * cw[i] : a * cw[i];
        }
    }
}

void lb_kernel_vq_neon(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *tile) {
    const int d = w->spec.vec_dim, c = w->spec.bits, stages = w->spec.vec_stages, cols = (int)w->cols;
    if (x->n == 1) {
        const uint64_t stage_bits = lb_vq_stage_bits(w);
        for (int r = r0; r < r1; r++) {
            const uint8_t *codes = lb_vq_codes(w, r);
            float sum = 0.0f;
            for (int t = 0; t < stages; t++)
                sum += lb_vq_scale(w, r, t) * vq_stage_dot(lb_vq_book(w, t), codes, (uint64_t)t * stage_bits, c, d, cols, x->f);
            y[r] = sum;
        }
        return;
    }
    for (int t0 = r0; t0 < r1; t0 += LB_DEQUANT_TILE) { /* batches: 16 decoded rows through the float GEMM */
        int t1 = t0 + LB_DEQUANT_TILE < r1 ? t0 + LB_DEQUANT_TILE : r1;
        for (int r = t0; r < t1; r++) vq_decode_row(w, r, tile + (size_t)(r - t0) * (size_t)cols);
        lb_gemm_nt_neon(x->n, t1 - t0, cols, x->f, cols, tile, cols, y + t0, ldy);
    }
}
#endif
