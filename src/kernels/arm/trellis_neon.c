/* Trellis codes x float activations, NEON: the AArch64 twin of
 * ref/trellis_ref.c on the repacked layout of kernels/trellis_pack.h, as
 * x86/trellis_avx2.c is on x86.
 *
 * Eight states per 16-byte load (weights, or v2 steps, j0..j0+7: lane l the
 * window at bit k (7 - l) + res of the load): two tbl byte shuffles put each
 * lane's 4 bytes in place, ushl by a negative count and an and cut its L
 * bits, mla applies 1MAD's multiply-add, and two pairwise widening adds
 * (uaddlp) sum its bytes. With v2 one more mla gives each step's second
 * value and zip1/zip2 interleave the two into weights in order. Batch 1
 * multiplies the integer values by x directly (the scale applied per
 * sequence, or down per row and group); larger batches decode 16 rows into a
 * float tile for the NEON float GEMM, as the generic path does. NEON is
 * part of the base architecture: no target attribute. */
#if defined(__aarch64__)
#include <arm_neon.h>
#include <string.h>

#include "kernels/trellis_pack.h"

typedef struct {
    uint8x16_t idx[2];  /* lanes 0..3 and 4..7: the 4 bytes of each state's window */
    int32x4_t shift[2]; /* minus the window's bit offset in its first byte */
    uint32x4_t lmask, mul, add;
} decoder;

static decoder decoder_for(int k, int L, int res) {
    decoder d;
    uint8_t idx[32];
    int32_t sh[8];
    for (int l = 0; l < 8; l++) {
        int bit = (7 - l) * k + res;
        for (int b = 0; b < 4; b++) idx[4 * l + b] = (uint8_t)(bit / 8 + b);
        sh[l] = -(bit % 8);
    }
    for (int h = 0; h < 2; h++) {
        d.idx[h] = vld1q_u8(idx + 16 * h);
        d.shift[h] = vld1q_s32(sh + 4 * h);
    }
    d.lmask = vdupq_n_u32((1u << L) - 1);
    d.mul = vdupq_n_u32(LB_TRELLIS_1MAD_MUL);
    d.add = vdupq_n_u32(LB_TRELLIS_1MAD_ADD);
    return d;
}

/* the centred byte sums of 4 generator outputs, as floats */
static inline float32x4_t byte_sums(uint32x4_t x) {
    uint32x4_t s = vpaddlq_u16(vpaddlq_u8(vreinterpretq_u8_u32(x)));
    return vcvtq_f32_s32(vsubq_s32(vreinterpretq_s32_u32(s), vdupq_n_s32(510)));
}

/* v of the 8 states whose 16 bytes start at p: weights 0..7 in v[0], v[1]
 * (V = 1), or the 16 weights of 8 steps in v[0..3] (V = 2) */
static inline void decode(const decoder *d, const uint8_t *p, int V, float32x4_t v[4]) {
    const uint8x16_t bytes = vld1q_u8(p);
    for (int h = 0; h < 2; h++) {
        uint32x4_t s = vreinterpretq_u32_u8(vqtbl1q_u8(bytes, d->idx[h]));
        s = vandq_u32(vshlq_u32(s, d->shift[h]), d->lmask);
        uint32x4_t x = vmlaq_u32(d->add, s, d->mul);
        if (V == 1) {
            v[h] = byte_sums(x);
            continue;
        }
        float32x4_t first = byte_sums(x), second = byte_sums(vmlaq_u32(d->add, x, d->mul));
        v[2 * h] = vzip1q_f32(first, second);
        v[2 * h + 1] = vzip2q_f32(first, second);
    }
}

/* the 8 states of a sequence's stream from step t (a multiple of 8) */
static inline void decode_at(const decoder *d, const uint8_t *stream, int P, int t, int k, int V, float32x4_t v[4]) {
    decode(d, stream + (size_t)((P - 8 - t) * k / 8), V, v);
}

/* x . v over one sequence of len weights (stream, P as trellis_pack.h says) */
static inline float32x4_t seq_dot(const decoder *d, const uint8_t *stream, const float *xs, int P, int len, int k,
                                  int V) {
    const int W = 8 * V; /* weights per load */
    float32x4_t acc[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)}, v[4];
    int j = 0;
    for (; j + W <= len; j += W) {
        decode_at(d, stream, P, j / V, k, V, v);
        for (int q = 0; q < 2 * V; q++) acc[q] = vfmaq_f32(acc[q], v[q], vld1q_f32(xs + j + 4 * q));
    }
    if (j < len) { /* the last load's weights past len meet zeros */
        float xt[16] = {0};
        memcpy(xt, xs + j, (size_t)(len - j) * sizeof(float));
        decode_at(d, stream, P, j / V, k, V, v);
        for (int q = 0; q < 2 * V; q++) acc[q] = vfmaq_f32(acc[q], v[q], vld1q_f32(xt + 4 * q));
    }
    return vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3]));
}

/* y[r] = x . W[r] for one activation row */
static void gemv(const lb_tensor *w, const decoder *d, const float *x, int r0, int r1, float *y) {
    const lb_trellis_pack *p = lb_trellis_packed(w);
    const lb_trellis_seq *seq = lb_trellis_seqs(w);
    for (int r = r0; r < r1; r++) {
        const float *scale = lb_trellis_scales(w) + (size_t)r * p->nseq;
        const uint8_t *row = lb_trellis_row(w, r);
        float32x4_t tot = vdupq_n_f32(0.0f);
        for (int s = 0; s < p->nseq; s++) {
            const uint8_t *stream = row + seq[s].off;
            const float *xs = x + seq[s].start;
            float32x4_t dot = p->V == 2 ? seq_dot(d, stream, xs, seq[s].padded, seq[s].len, p->k, 2)
                                        : seq_dot(d, stream, xs, seq[s].padded, seq[s].len, p->k, 1);
            tot = vfmaq_n_f32(tot, dot, scale[s]);
        }
        y[r] = vaddvq_f32(tot);
    }
}

/* o[j] = v of a sequence's weight j times c, j < len */
static inline void seq_decode(const decoder *d, const uint8_t *stream, int P, int len, int k, int V, float c,
                              float *o) {
    const int W = 8 * V;
    float32x4_t v[4];
    for (int j = 0; j < len; j += W) {
        float t[16];
        decode_at(d, stream, P, j / V, k, V, v);
        for (int q = 0; q < 2 * V; q++) vst1q_f32(len - j >= W ? o + j + 4 * q : t + 4 * q, vmulq_n_f32(v[q], c));
        if (len - j < W) memcpy(o + j, t, (size_t)(len - j) * sizeof(float));
    }
}

static void decode_row(const lb_tensor *w, const decoder *d, int r, float *out) {
    const lb_trellis_pack *p = lb_trellis_packed(w);
    const lb_trellis_seq *seq = lb_trellis_seqs(w);
    const float *scale = lb_trellis_scales(w) + (size_t)r * p->nseq;
    const uint8_t *row = lb_trellis_row(w, r);
    for (int s = 0; s < p->nseq; s++) {
        if (p->V == 2)
            seq_decode(d, row + seq[s].off, seq[s].padded, seq[s].len, p->k, 2, scale[s], out + seq[s].start);
        else
            seq_decode(d, row + seq[s].off, seq[s].padded, seq[s].len, p->k, 1, scale[s], out + seq[s].start);
    }
}

/* down: y[r] for r0 <= r < r1, one window of 8 V rows at a time walking the
 * columns (one 16-byte load per column gives its 8 steps) */
static inline void gemv_down(const lb_tensor *w, const decoder *dec, const float *x, int r0, int r1, float *y, int V) {
    const lb_trellis_pack *p = lb_trellis_packed(w);
    for (int row = r0; row < r1;) {
        int first, m, res;
        const uint8_t *base = lb_trellis_down_window(w, row, r1, &first, &m, &res);
        const decoder *d = &dec[res];
        float32x4_t tot[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)}, v[4];
        for (int g = 0; g < p->groups; g++) {
            int c = (int)(g * p->group_len), c1 = lb_trellis_group_end(w, g);
            float32x4_t a[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
            for (; c < c1; c++) {
                decode(d, base + (size_t)c * p->row_bytes, V, v);
                for (int q = 0; q < 2 * V; q++) a[q] = vfmaq_n_f32(a[q], v[q], x[c]);
            }
            const float *s = lb_trellis_down_scales(w, g) + first; /* 16 readable: the scales' padding */
            for (int q = 0; q < 2 * V; q++) tot[q] = vfmaq_f32(tot[q], a[q], vld1q_f32(s + 4 * q));
        }
        float out[16];
        for (int q = 0; q < 4; q++) vst1q_f32(out + 4 * q, tot[q]);
        for (int i = 0; i < m; i++) y[row + i] = out[row - first + i];
        row += m;
    }
}

/* down: rows t0..t1 into a row-major tile */
static inline void decode_tile_down(const lb_tensor *w, const decoder *dec, int t0, int t1, float *tile, int V) {
    const lb_trellis_pack *p = lb_trellis_packed(w);
    const int cols = (int)w->cols;
    float32x4_t v[4];
    for (int row = t0; row < t1;) {
        int first, m, res;
        const uint8_t *base = lb_trellis_down_window(w, row, t1, &first, &m, &res);
        const decoder *d = &dec[res];
        float *out = tile + (size_t)(row - t0) * cols;
        for (int c = 0; c < cols; c++) {
            const float *s = lb_trellis_down_scales(w, (int)(c / p->group_len)) + first;
            float t[16];
            decode(d, base + (size_t)c * p->row_bytes, V, v);
            for (int q = 0; q < 2 * V; q++) vst1q_f32(t + 4 * q, vmulq_f32(v[q], vld1q_f32(s + 4 * q)));
            for (int i = 0; i < m; i++) out[(size_t)i * cols + c] = t[row - first + i];
        }
        row += m;
    }
}

void lb_kernel_trellis_neon(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *tile) {
    const lb_trellis_pack *p = lb_trellis_packed(w);
    const int v2 = p->V == 2;
    decoder d[8];
    for (int res = 0; res < (p->down ? 8 : 1); res++) d[res] = decoder_for(p->k, p->L, res);
    if (x->n == 1) {
        if (!p->down)
            gemv(w, d, x->f, r0, r1, y);
        else if (v2)
            gemv_down(w, d, x->f, r0, r1, y, 2);
        else
            gemv_down(w, d, x->f, r0, r1, y, 1);
        return;
    }
    const int cols = (int)w->cols;
    for (int t0 = r0; t0 < r1; t0 += LB_DEQUANT_TILE) {
        int t1 = t0 + LB_DEQUANT_TILE < r1 ? t0 + LB_DEQUANT_TILE : r1;
        if (p->down && v2)
            decode_tile_down(w, d, t0, t1, tile, 2);
        else if (p->down)
            decode_tile_down(w, d, t0, t1, tile, 1);
        else
            for (int r = t0; r < t1; r++) decode_row(w, d, r, tile + (size_t)(r - t0) * cols);
        lb_gemm_nt_neon(x->n, t1 - t0, cols, x->f, cols, tile, cols, y + t0, ldy);
    }
}
#endif
