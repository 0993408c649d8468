/* Load-time repacking of trellis codes into the kernel layout of
 * trellis_pack.h, from the stored bytes (src/formats/trellis.c: fp16 lead
 * scales per group / row, or one per tensor in the tail, then the codes as
 * a little-endian k-bit stream; format_internal.h's accessors say where a
 * row's or a step's codes are), for sequences along the rows or (down)
 * down the columns, one weight or (v2) two per step. */
#include <string.h>

#include "formats/format_internal.h"
#include "kernels/trellis_pack.h"

int lb_trellis_kernel_accepts(const lb_qspec *s, const lb_layout *l) {
    const int V = lb_trellis_step_weights(s);
    return !strcmp(s->family->name, "trellis") && s->bits >= 1 && s->bits <= (V == 2 ? 6 : 4) &&
           s->state_bits <= LB_TRELLIS_MAX_STATE && l->cols_padded < (1 << 30) && l->rows < (1 << 30);
}

/* the sequences of a row, in trellis.c's order; returns their count and,
 * with seq non-NULL, fills them (offsets in a row's packed bytes) */
static int enumerate(const lb_qspec *s, const lb_layout *l, lb_trellis_seq *seq, size_t *row_bytes) {
    const int V = lb_trellis_step_weights(s);
    int64_t span = l->groups_per_row ? l->group_len : l->cols_padded, n_spans = l->cols_padded / span;
    int n = 0, codes_per_state = s->state_bits / s->bits;
    size_t off = 0;
    for (int64_t g = 0; g < n_spans; g++)
        for (int64_t p = 0; p < lb_trellis_step_segments(span, V); p++) {
            int64_t start, len;
            lb_trellis_step_segment(span, V, p, &start, &len); /* span is even with v2: whole steps */
            start += g * span;
            int64_t steps = len / V, padded = (steps + 7) / 8 * 8, visit = l->cols - start;
            if (visit > len) visit = len;
            if (visit < 0) visit = 0;
            if (seq) seq[n] = (lb_trellis_seq){(int32_t)start, (int32_t)visit, (int32_t)steps, (int32_t)padded, (uint32_t)off};
            off += (size_t)(((padded + codes_per_state - 1) * s->bits + 7) / 8);
            n++;
        }
    *row_bytes = off;
    return n;
}

/* down: the pieces of rows, each column's streams laid out the same way */
static int enumerate_down(const lb_qspec *s, const lb_layout *l, lb_trellis_seq *seq, size_t *col_bytes) {
    const int V = lb_trellis_step_weights(s);
    int n = 0, codes_per_state = s->state_bits / s->bits;
    size_t off = 0;
    for (int64_t p = 0; p < lb_trellis_step_segments(l->rows, V); p++) {
        int64_t start, len;
        lb_trellis_step_segment(l->rows, V, p, &start, &len);
        int64_t steps = (len + V - 1) / V, padded = (steps + 7 + 7) / 8 * 8;
        if (seq) seq[n] = (lb_trellis_seq){(int32_t)start, (int32_t)len, (int32_t)steps, (int32_t)padded, (uint32_t)off};
        off += (size_t)(((padded + codes_per_state - 1) * s->bits + 7) / 8);
        n++;
    }
    *col_bytes = off;
    return n;
}

/* where the codes of one sequence come from: step j's code is at bit
 * bit0 + j k of the row's stream (along rows), or (down) at bit bit0 of
 * the stream lb_trellis_down_codes gives for the step's row row0 + V j */
typedef struct {
    const lb_tensor *w;
    int64_t row0;  /* down: the piece's first row; -1 along rows */
    int parity;    /* down: the column's parity */
    const uint8_t *data; /* along rows: the row's code stream */
    uint64_t bit0;
    int k;
} code_source;

static unsigned code_at(const code_source *src, int64_t j) {
    if (src->row0 < 0) return lb_get_bits(src->data, src->bit0 + (uint64_t)(j * src->k), src->k);
    const lb_tensor *w = src->w;
    int64_t row = src->row0 + lb_trellis_step_weights(&w->spec) * j;
    return lb_get_bits(lb_trellis_down_codes(&w->spec, &w->layout, w->data, row, src->parity), src->bit0, src->k);
}

/* writes the backwards stream of one sequence of T steps: code(j) for j < T */
static void write_stream(const code_source *src, int64_t T, int64_t P, int n, uint8_t *stream) {
    for (int64_t q = P - T; q < P + n - 1; q++) {
        int64_t pos = q - (P - T), j = ((T - 1 - pos) % T + T) % T;
        lb_put_bits(stream, (uint64_t)(q * src->k), code_at(src, j), src->k);
    }
}

static lb_status repack_down(const lb_tensor *w, void **out, size_t *bytes) {
    const lb_layout *l = &w->layout;
    const lb_qspec *s = &w->spec;
    const int V = lb_trellis_step_weights(s);
    lb_trellis_pack p = {.k = s->bits, .L = s->state_bits, .V = V, .down = 1};
    p.nseq = enumerate_down(s, l, NULL, &p.row_bytes);
    p.groups = l->groups_per_row ? (int)l->groups_per_row : 1;
    p.group_len = l->groups_per_row ? l->group_len : l->cols_padded;
    p.seq_off = (sizeof p + 63) / 64 * 64;
    p.scale_off = p.seq_off + ((size_t)p.nseq * sizeof(lb_trellis_seq) + 63) / 64 * 64;
    const size_t scale_stride = (size_t)l->rows + LB_TRELLIS_DOWN_SCALE_PAD;
    p.code_off = p.scale_off + ((size_t)p.groups * scale_stride * sizeof(float) + 63) / 64 * 64;
    size_t total = p.code_off + (size_t)l->cols * p.row_bytes + 16;
    uint8_t *buf = lb_alloc(total);
    if (!buf) return lb_fail(LB_ERR_NOMEM, "repacking '%s' for the trellis kernels (%zu bytes)", w->name, total);
    memset(buf, 0, total);
    memcpy(buf, &p, sizeof p);
    lb_trellis_seq *seq = (lb_trellis_seq *)(buf + p.seq_off);
    enumerate_down(s, l, seq, &p.row_bytes);
    float *scale = (float *)(buf + p.scale_off);
    for (int g = 0; g < p.groups; g++)
        for (int64_t r = 0; r < l->rows; r++)
            scale[(size_t)g * scale_stride + (size_t)r] =
                lb_trellis_stored_scale(s, l, w->data, r, l->groups_per_row ? g : 0) / LB_TRELLIS_1MAD_DIV;
    const int n = s->state_bits / s->bits;
    for (int64_t c = 0; c < l->cols; c++)
        for (int i = 0; i < p.nseq; i++) {
            code_source src = {w, seq[i].start, (int)(c % 2), NULL, (uint64_t)((V == 2 ? c / 2 : c) * s->bits), s->bits};
            write_stream(&src, seq[i].stored, seq[i].padded, n, buf + p.code_off + (size_t)c * p.row_bytes + seq[i].off);
        }
    *out = buf;
    *bytes = total;
    return LB_OK;
}

const uint8_t *lb_trellis_down_window(const lb_tensor *w, int row, int end, int *first, int *m, int *res) {
    const lb_trellis_pack *p = lb_trellis_packed(w);
    const lb_trellis_seq *seq = lb_trellis_seqs(w) + lb_trellis_piece(w, row);
    int t0 = (row - seq->start) / p->V, stop = seq->start + seq->len;
    *first = seq->start + p->V * t0;
    if (stop > *first + 8 * p->V) stop = *first + 8 * p->V;
    if (stop > end) stop = end;
    *m = stop - row;
    size_t bit = (size_t)(seq->padded - 8 - t0) * (size_t)p->k;
    *res = (int)(bit % 8);
    return lb_trellis_row(w, 0) + seq->off + bit / 8;
}

lb_status lb_trellis_repack(const lb_tensor *w, void **out, size_t *bytes) {
    const lb_layout *l = &w->layout;
    const lb_qspec *s = &w->spec;
    if (!lb_trellis_kernel_accepts(s, l))
        return lb_fail(LB_ERR_INVALID, "tensor '%s' is not a trellis code", w->name);
    if (s->seq_down) return repack_down(w, out, bytes);
    const int V = lb_trellis_step_weights(s);
    lb_trellis_pack p = {.k = s->bits, .L = s->state_bits, .V = V};
    p.nseq = enumerate(s, l, NULL, &p.row_bytes);
    p.seq_off = (sizeof p + 63) / 64 * 64;
    p.scale_off = p.seq_off + ((size_t)p.nseq * sizeof(lb_trellis_seq) + 63) / 64 * 64;
    p.code_off = p.scale_off + ((size_t)l->rows * (size_t)p.nseq * sizeof(float) + 63) / 64 * 64;
    size_t total = p.code_off + (size_t)l->rows * p.row_bytes + 16; /* the kernels read 16 bytes per 8 states */
    uint8_t *buf = lb_alloc(total);
    if (!buf) return lb_fail(LB_ERR_NOMEM, "repacking '%s' for the trellis kernels (%zu bytes)", w->name, total);
    memset(buf, 0, total);
    memcpy(buf, &p, sizeof p);
    lb_trellis_seq *seq = (lb_trellis_seq *)(buf + p.seq_off);
    enumerate(s, l, seq, &p.row_bytes);
    float *scale = (float *)(buf + p.scale_off);
    const int k = s->bits, n = s->state_bits / s->bits;
    for (int64_t r = 0; r < l->rows; r++) {
        const uint8_t *bits = lb_trellis_row_codes(s, l, w->data, r);
        uint8_t *dst = buf + p.code_off + (size_t)r * p.row_bytes;
        for (int i = 0; i < p.nseq; i++) {
            int64_t g = l->groups_per_row ? seq[i].start / l->group_len : 0;
            scale[r * p.nseq + i] = lb_trellis_stored_scale(s, l, w->data, r, g) / LB_TRELLIS_1MAD_DIV;
            code_source src = {w, -1, 0, bits, (uint64_t)(seq[i].start / V * k), k};
            write_stream(&src, seq[i].stored, seq[i].padded, n, dst + seq[i].off);
        }
    }
    *out = buf;
    *bytes = total;
    return LB_OK;
}
