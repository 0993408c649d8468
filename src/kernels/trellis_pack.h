/* The kernel layout of trellis codes (src/formats/trellis.c, sequences
 * along rows), built once per tensor by the registry's repack hook and read
 * by the scalar reference (ref/trellis_ref.c) and its SIMD twin alike.
 *
 * Why a repacking: a weight's value is lb_trellis_1mad of its state, the L/k
 * codes ending at it with the newest in the low bits. In the stored stream
 * the newest code has the highest bit position, so a state is its codes
 * reversed and no load gives it. Here each sequence's codes are written
 * backwards, followed by the L/k - 1 codes that wrap around (tail-biting), so
 * the state of weight j is simply the L bits at bit k (P - 1 - j) of the
 * sequence's stream, P = the sequence's length rounded up to 8 (the stream
 * starts with P - T zero codes), and the eight states of weights 8i..8i+7 all
 * lie in the 16 bytes starting at byte k (P - 8 - 8i) / 8: one load, one byte
 * shuffle, one shift per lane. Codes keep their k bits (no bigger file in
 * memory than on disk, plus < 8 codes per sequence).
 *
 * The value of weight (r, start + j) is scale[r][s] * v, with
 *   v = bytesum(state * 34038481 + 76625530 mod 2^32) - 510  (an integer)
 *   scale = a / 147.800537 (a the stored fp16 scale of its group / row / tensor)
 * which is lb_trellis_1mad(state) * a up to float rounding. Sequences are
 * enumerated as trellis.c does: per group (g<N>) or over the padded row, cut
 * by lb_trellis_segment. Columns past cols are not visited.
 *
 * ":down" (sequences down the columns): the same backwards streams, one per
 * column piece of rows (lb_trellis_segment over the rows), column by column:
 * column c's streams start at byte c * col_stride, and the states of rows
 * j0..j0+7 of a piece (j0 any row of it) lie in the 16 bytes at byte
 * k (P - 8 - j0) / 8, shifted by k (P - 8 - j0) mod 8 bits; P = T + 7
 * rounded up to 8, so that window exists for every j0 < T. A kernel walks
 * the columns for 8 rows at a time; scales are stored per column group as
 * rows + 16 floats (the last 16 zero, so 16 lanes can always be loaded).
 *
 * "v2" (two weights per step): the same streams with steps in place of
 * weights: T and P count steps, the state of step t is the L bits at bit
 * k (P - 1 - t), and it decodes to the pair (v0, v1) of weights 2t and
 * 2t + 1 of the sequence, v1 being the byte sum of the generator's next
 * output (lb_trellis_1mad2). Along rows a sequence's start and len are
 * still columns (len clipped to cols, possibly odd); down the columns a
 * piece's start and len are rows (start even; an odd last piece's final
 * step has its second row missing), column c's code of step t read from
 * lb_trellis_down_codes (format_internal.h). Eight states give 16 weights. */
#ifndef LB_KERNELS_TRELLIS_PACK_H
#define LB_KERNELS_TRELLIS_PACK_H

#include "kernels/kernels.h"

typedef struct {
    int32_t start;  /* first column */
    int32_t len;    /* weights a kernel visits: the stored ones clipped to cols */
    int32_t stored; /* T, the sequence's stored length in steps */
    int32_t padded; /* P, in steps: T rounded up to 8 (down: T + 7) */
    uint32_t off;   /* byte offset of the stream within a row's bytes */
} lb_trellis_seq;

typedef struct {
    int k, L;          /* bits per code (per step with v2), state bits */
    int V;             /* weights per step: 1, or 2 (v2) */
    int down;          /* sequences down the columns */
    int nseq;          /* sequences per row (down: pieces of rows per column) */
    size_t row_bytes;  /* packed stream bytes per row (down: per column, col_stride) */
    size_t seq_off;    /* lb_trellis_seq[nseq] (down: start, len are rows) */
    size_t scale_off;  /* float scales, rows x nseq (down: groups x (rows + 8)) */
    size_t code_off;   /* rows x row_bytes (down: cols x row_bytes), then 16 readable bytes */
    int64_t group_len; /* down: columns per scale group (cols_padded for row and tensor) */
    int groups;        /* down: scale groups per row */
} lb_trellis_pack;

#define LB_TRELLIS_1MAD_MUL 34038481u
#define LB_TRELLIS_1MAD_ADD 76625530u
#define LB_TRELLIS_1MAD_DIV 147.800537f

/* trellis codes (any group kind, either direction, V = 1 or 2) */
int lb_trellis_kernel_accepts(const lb_qspec *s, const lb_layout *l);
lb_status lb_trellis_repack(const lb_tensor *w, void **out, size_t *bytes);

static inline const lb_trellis_pack *lb_trellis_packed(const lb_tensor *w) { return (const lb_trellis_pack *)w->packed; }
static inline const lb_trellis_seq *lb_trellis_seqs(const lb_tensor *w) {
    return (const lb_trellis_seq *)((const uint8_t *)w->packed + lb_trellis_packed(w)->seq_off);
}
static inline const float *lb_trellis_scales(const lb_tensor *w) {
    return (const float *)((const uint8_t *)w->packed + lb_trellis_packed(w)->scale_off);
}
/* down: scale of group g for rows r..r+15 at lb_trellis_down_scales(w, g) + r */
#define LB_TRELLIS_DOWN_SCALE_PAD 16
static inline const float *lb_trellis_down_scales(const lb_tensor *w, int g) {
    return lb_trellis_scales(w) + (size_t)g * (size_t)(w->rows + LB_TRELLIS_DOWN_SCALE_PAD);
}
/* a row's streams (down: a column's) */
static inline const uint8_t *lb_trellis_row(const lb_tensor *w, int r) {
    const lb_trellis_pack *p = lb_trellis_packed(w);
    return (const uint8_t *)w->packed + p->code_off + (size_t)r * p->row_bytes;
}

/* down: the piece holding row r (pieces are consecutive; there are few) */
static inline int lb_trellis_piece(const lb_tensor *w, int r) {
    const lb_trellis_seq *seq = lb_trellis_seqs(w);
    int s = 0;
    while (r >= seq[s].start + seq[s].len) s++;
    return s;
}

/* down: one past the last column of scale group g (cols for the last group) */
static inline int lb_trellis_group_end(const lb_tensor *w, int g) {
    const int64_t end = (g + 1) * lb_trellis_packed(w)->group_len;
    return end < w->cols ? (int)end : (int)w->cols;
}

/* down: the rows [row, row + *m) of one piece that one 16-byte load per
 * column gives, the 8 steps from the one holding row (8 V rows from *first,
 * that step's first row: row itself for V = 1), clipped to the piece and to
 * `end`. Returns those bytes in column 0 (column c's at + c row_bytes),
 * whose window starts *res bits in (a kernel's decoder for that residue). */
const uint8_t *lb_trellis_down_window(const lb_tensor *w, int row, int end, int *first, int *m, int *res);

/* the centred byte sum of a generator output */
static inline int lb_trellis_byte_sum(uint32_t x) {
    return (int)(x & 255) + (int)(x >> 8 & 255) + (int)(x >> 16 & 255) + (int)(x >> 24) - 510;
}

/* v of a state (see above): 1MAD's byte sum, centred */
static inline int lb_trellis_v(uint32_t state) {
    return lb_trellis_byte_sum(state * LB_TRELLIS_1MAD_MUL + LB_TRELLIS_1MAD_ADD);
}

/* v2: the pair of a state, the first output's byte sum and the next's */
static inline void lb_trellis_v2(uint32_t state, int v[2]) {
    uint32_t x = state * LB_TRELLIS_1MAD_MUL + LB_TRELLIS_1MAD_ADD;
    v[0] = lb_trellis_byte_sum(x);
    v[1] = lb_trellis_byte_sum(x * LB_TRELLIS_1MAD_MUL + LB_TRELLIS_1MAD_ADD);
}

#endif
