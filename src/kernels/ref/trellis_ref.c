/* Trellis codes x float activations, scalar: the specification of the SIMD
 * twin. Weights in the repacked layout of kernels/trellis_pack.h; each row
 * is decoded into a tile (value = scale * v, v the state's centred 1MAD
 * byte sum; with v2 a state's pair of them), 16 rows at a time, and
 * multiplied by the float GEMM. */
#include "kernels/trellis_pack.h"

/* the state of step j of a sequence: L bits at bit k (P - 1 - j) */
static uint32_t state_at(const uint8_t *stream, int k, int L, int P, int j) {
    uint64_t bit = (uint64_t)(P - 1 - j) * (uint64_t)k, v = 0;
    for (int b = 0; b < 8; b++) v |= (uint64_t)stream[bit / 8 + (uint64_t)b] << (8 * b);
    return (uint32_t)(v >> (bit % 8)) & ((1u << L) - 1);
}

static void decode_row(const lb_tensor *w, int r, float *out) {
    const lb_trellis_pack *p = lb_trellis_packed(w);
    const lb_trellis_seq *seq = lb_trellis_seqs(w);
    const float *scale = lb_trellis_scales(w) + (size_t)r * p->nseq;
    const uint8_t *row = lb_trellis_row(w, r);
    for (int s = 0; s < p->nseq; s++) {
        float *o = out + seq[s].start;
        for (int j = 0; j < seq[s].len; j += p->V) {
            uint32_t state = state_at(row + seq[s].off, p->k, p->L, seq[s].padded, j / p->V);
            if (p->V == 1) {
                o[j] = scale[s] * (float)lb_trellis_v(state);
                continue;
            }
            int v[2];
            lb_trellis_v2(state, v);
            o[j] = scale[s] * (float)v[0];
            if (j + 1 < seq[s].len) o[j + 1] = scale[s] * (float)v[1]; /* len is odd at an odd cols */
        }
    }
}

/* down: row r of the tile from each column's stream (v2: the first or
 * second value of its step's pair by its parity within the piece) */
static void decode_row_down(const lb_tensor *w, int r, float *out) {
    const lb_trellis_pack *p = lb_trellis_packed(w);
    const lb_trellis_seq *seq = lb_trellis_seqs(w) + lb_trellis_piece(w, r);
    const int j = r - seq->start;
    for (int64_t c = 0; c < w->cols; c++) {
        const uint8_t *stream = lb_trellis_row(w, (int)c) + seq->off;
        float a = lb_trellis_down_scales(w, (int)(c / p->group_len))[r];
        uint32_t state = state_at(stream, p->k, p->L, seq->padded, j / p->V);
        int v[2];
        if (p->V == 2)
            lb_trellis_v2(state, v);
        else
            v[0] = lb_trellis_v(state);
        out[c] = a * (float)v[j % p->V];
    }
}

void lb_kernel_trellis_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *tile) {
    int cols = (int)w->cols;
    for (int t0 = r0; t0 < r1; t0 += LB_DEQUANT_TILE) {
        int t1 = t0 + LB_DEQUANT_TILE < r1 ? t0 + LB_DEQUANT_TILE : r1;
        for (int r = t0; r < t1; r++) {
            if (lb_trellis_packed(w)->down)
                decode_row_down(w, r, tile + (size_t)(r - t0) * cols);
            else
                decode_row(w, r, tile + (size_t)(r - t0) * cols);
        }
        lb_gemm_nt_ref(x->n, t1 - t0, cols, x->f, cols, tile, cols, y + t0, ldy);
    }
}
