/* The tiles of int8_neon.c, included there once per dot-product flavour:
 * LB_TILE_NAME(x) names this copy's functions, LB_TILE_TARGET is its target
 * attribute (empty, or +dotprod), LB_TILE_DOT(w0, w1, a) the block's int32x4
 * partial sums. No include guard: meant to be included more than once. */

/* one weight row against one activation row */
LB_TILE_TARGET static LB_INLINE float LB_TILE_NAME(row_x1)(const uint8_t *row, int nb, size_t bb, int bits,
                                                            const int8_t *xq, const float *xd) {
    float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = vdupq_n_f32(0.0f);
    int b = 0;
    for (; b + 2 <= nb; b += 2) { /* two chains: the float adds overlap */
        const uint8_t *b0 = row + (size_t)b * bb, *b1 = b0 + bb;
        int8x16_t w00, w01, w10, w11;
        block_codes(b0, bits, &w00, &w01);
        block_codes(b1, bits, &w10, &w11);
        int32x4_t s0 = LB_TILE_DOT(w00, w01, xq + b * 32), s1 = LB_TILE_DOT(w10, w11, xq + (b + 1) * 32);
        acc0 = vfmaq_n_f32(acc0, vcvtq_f32_s32(s0), block_scale(b0) * xd[b]);
        acc1 = vfmaq_n_f32(acc1, vcvtq_f32_s32(s1), block_scale(b1) * xd[b + 1]);
    }
    if (b < nb) {
        const uint8_t *b0 = row + (size_t)b * bb;
        int8x16_t w0, w1;
        block_codes(b0, bits, &w0, &w1);
        acc0 = vfmaq_n_f32(acc0, vcvtq_f32_s32(LB_TILE_DOT(w0, w1, xq + b * 32)), block_scale(b0) * xd[b]);
    }
    return vaddvq_f32(vaddq_f32(acc0, acc1));
}

/* four weight rows (rb bytes apart) against one activation row */
LB_TILE_TARGET static LB_INLINE void LB_TILE_NAME(rows4_x1)(const uint8_t *row, size_t rb, int nb, size_t bb, int bits,
                                                             const int8_t *xq, const float *xd, float *y) {
    float32x4_t acc[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
    for (int b = 0; b < nb; b++) {
        float dx = xd[b];
        for (int k = 0; k < 4; k++) {
            const uint8_t *blk = row + k * rb + (size_t)b * bb;
            int8x16_t w0, w1;
            block_codes(blk, bits, &w0, &w1);
            acc[k] = vfmaq_n_f32(acc[k], vcvtq_f32_s32(LB_TILE_DOT(w0, w1, xq + b * 32)), block_scale(blk) * dx);
        }
    }
    /* pairwise adds leave lane k = the sum of acc[k] */
    vst1q_f32(y, vpaddq_f32(vpaddq_f32(acc[0], acc[1]), vpaddq_f32(acc[2], acc[3])));
}

/* one weight row against activation rows i .. i+3 */
LB_TILE_TARGET static LB_INLINE void LB_TILE_NAME(row_x4)(const uint8_t *row, int nb, size_t bb, int bits,
                                                           const lb_act *x, int i, float *y, int ldy) {
    const int8_t *q0 = x->q + (size_t)i * x->ld;
    size_t lq = (size_t)x->ld, ld = (size_t)x->ld / 32;
    const float *d0 = x->d + (size_t)i * ld;
    float32x4_t acc[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
    for (int b = 0; b < nb; b++) {
        const uint8_t *blk = row + (size_t)b * bb;
        int8x16_t w0, w1;
        block_codes(blk, bits, &w0, &w1);
        float dw = block_scale(blk);
        for (int k = 0; k < 4; k++)
            acc[k] = vfmaq_n_f32(acc[k], vcvtq_f32_s32(LB_TILE_DOT(w0, w1, q0 + k * lq + b * 32)), dw * d0[k * ld + b]);
    }
    float s[4];
    vst1q_f32(s, vpaddq_f32(vpaddq_f32(acc[0], acc[1]), vpaddq_f32(acc[2], acc[3])));
    for (int k = 0; k < 4; k++) y[(size_t)(i + k) * ldy] = s[k];
}

LB_TILE_TARGET static LB_INLINE void LB_TILE_NAME(matmul_blocks)(const lb_tensor *w, const lb_act *x, int r0, int r1,
                                                                  float *y, int ldy, int bits, size_t bb) {
    int nb = (int)(w->layout.cols_padded / LB_QK), n4 = x->n / 4 * 4;
    size_t rb = w->layout.row_bytes;
    for (int r = r0; r < r1; r++)
        for (int i = 0; i < n4; i += 4) LB_TILE_NAME(row_x4)(w->data + (size_t)r * rb, nb, bb, bits, x, i, y + r, ldy);
    for (int i = n4; i < x->n; i++) {
        const int8_t *xq = x->q + (size_t)i * x->ld;
        const float *xd = x->d + (size_t)i * (x->ld / 32);
        float *yi = y + (size_t)i * ldy;
        int r = r0;
        for (; r + 4 <= r1; r += 4) LB_TILE_NAME(rows4_x1)(w->data + (size_t)r * rb, rb, nb, bb, bits, xq, xd, yi + r);
        for (; r < r1; r++) yi[r] = LB_TILE_NAME(row_x1)(w->data + (size_t)r * rb, nb, bb, bits, xq, xd);
    }
}

LB_TILE_TARGET void LB_TILE_NAME(lb_kernel_q8_0)(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y,
                                                  int ldy, float *scratch) {
    (void)scratch;
    LB_TILE_NAME(matmul_blocks)(w, x, r0, r1, y, ldy, 8, sizeof(lb_block_q8_0));
}

LB_TILE_TARGET void LB_TILE_NAME(lb_kernel_q4_0)(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y,
                                                  int ldy, float *scratch) {
    (void)scratch;
    LB_TILE_NAME(matmul_blocks)(w, x, r0, r1, y, ldy, 4, sizeof(lb_block_q4_0));
}
