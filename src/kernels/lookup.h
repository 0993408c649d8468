/* Kernels for the formats whose weights are looked up in a table: e8p
 * (QuIP#'s E8P lattice codes, src/formats/e8p.c) and lut (SqueezeLLM's
 * per-group levels, src/formats/lut.c). Both read the stored bytes as they
 * are (no repacking) and multiply float activations: their weights are not
 * integers at any useful scale (lut's levels are free fp16 values), and a
 * float decode is a few instructions per 8 weights with no activation
 * rounding (ref/lookup_ref.c is the specification, x86/lookup_avx2.c its
 * twin, and arm/lookup_neon.c its NEON one).
 *
 * e8p: a 16-bit code is [source index s (8 bits)][signs of coordinates 1..7
 * (7 bits)][shift (1 bit)]; its codeword is sigma_i src[s][i] + shift, the
 * sign of coordinate 0 implied by the parity rule (e8p_lattice.c). The
 * kernel tables split that along the code's two bytes so one load per byte
 * does the work:
 *   src[s]       the 8 magnitudes, coordinate 0 already negated when s's
 *                parity asks for an odd number of negations (so that sign
 *                then only depends on the low byte's signs);
 *   sign[b]      per coordinate the float sign bit to XOR in: bit i of b
 *                for i = 1..7, and for coordinate 0 the parity of bits 1..7;
 *   shift[b]     +0.25 or -0.25 (bit 0 of b) in all 8 lanes.
 * So codeword = (src[code >> 8] XOR sign[code & 255]) + shift[code & 255],
 * exactly (a sign flip and one addition of a power of two to a half-integer).
 * e8p3's second stage (an 8-bit code of the 256-point E8 ball) is ball[c].
 * The tables are built once per process from lb_e8p_codeword itself
 * (test_lookup_kernels checks all 2^16 codes against it).
 *
 * lut: per group of G weights 2^b fp16 levels, then G b-bit codes; the
 * kernels convert a group's levels to floats once and look codes up in a
 * register (AVX2: vpermps on 8 levels; 4 bits: two of them and a blend on
 * bit 3; fewer than 3 bits: the levels repeated to fill 8 lanes, so the
 * next codes' bits above a code do not matter).
 *
 * vq (learned codebooks, src/formats/vq.c): y_r = sum over stages s of
 * scale_s(r) * sum over vectors v of book_s[code_s(r, v)] . x[v d .. v d + d),
 * the columns past cols left out. The fp16 codebooks become floats once per
 * tensor (lb_vq_repack, into w->packed: S x 2^c x d floats, 2 MiB per stage
 * for vq8x16); codes and scales are read as stored. The AVX2 twin loads a
 * codeword of d = 8 as one vector, of d = 16 as two, two of d = 4 / four of
 * d = 2 into one (consecutive codes: consecutive columns); any other d in
 * masked pieces of up to 8. It decodes a codeword once for up to 4 batch
 * columns; from 8 columns on, once per 16-row tile for the float GEMM. */
#ifndef LB_KERNELS_LOOKUP_H
#define LB_KERNELS_LOOKUP_H

#include <string.h>

#include "formats/format_internal.h"
#include "kernels/kernels.h"

typedef struct {
    _Alignas(64) float src[256][8];
    uint32_t sign[256][8]; /* by the low byte */
    float shift[256][8];   /* by the low byte */
    float ball[256][8];
} lb_e8p_tables;

/* built on first use (thread-safe), then read-only */
const lb_e8p_tables *lb_e8p_kernel_tables(void);

/* e8p2..e8p4, row or tensor scales; lut1..lut4, any group kind */
int lb_e8p_kernel_accepts(const lb_qspec *s, const lb_layout *l);
int lb_lut_kernel_accepts(const lb_qspec *s, const lb_layout *l);

/* ---- e8p's stored layout (format_internal.h: lb_e8p_stages, lb_e8p_stage_offset) ---- */

/* stage t's codes are 16-bit E8P codes (else 8-bit ball codes: e8p3's second stage) */
static inline int lb_e8p_wide(const lb_qspec *s, int t) { return lb_e8p_code_bits(s, t) == 16; }

/* stage t's scale for row r: fp16 at the row's start, or per tensor in the tail */
static inline float lb_e8p_scale(const lb_tensor *w, int64_t r, int t) {
    const lb_layout *l = &w->layout;
    const uint8_t *p = l->groups_per_row ? w->data + (size_t)r * l->row_bytes : w->data + (size_t)l->rows * l->row_bytes;
    return lb_fp16_to_fp32(lb_rd16(p + 2 * t));
}

/* stage t's codes of row r */
static inline const uint8_t *lb_e8p_codes(const lb_tensor *w, int64_t r, int t) {
    return w->data + (size_t)r * w->layout.row_bytes + lb_e8p_stage_offset(&w->spec, &w->layout, t);
}

static inline unsigned lb_e8p_code(const uint8_t *codes, int wide, int64_t v) {
    return wide ? lb_rd16(codes + 2 * v) : codes[v];
}

/* ---- lut's stored layout (format_internal.h: lb_lut_block_bytes) ------------- */

/* groups per row as the kernels walk them (tensor: one, whose levels are the tail) */
static inline int64_t lb_lut_groups(const lb_tensor *w) {
    return w->layout.groups_per_row ? w->layout.groups_per_row : 1;
}

/* group g of row r: its fp16 levels and its code stream */
static inline void lb_lut_group(const lb_tensor *w, int64_t r, int64_t g, const uint8_t **levels,
                                const uint8_t **codes) {
    const lb_layout *l = &w->layout;
    const uint8_t *row = w->data + (size_t)r * l->row_bytes;
    if (!l->groups_per_row) {
        *levels = w->data + (size_t)l->rows * l->row_bytes;
        *codes = row;
        return;
    }
    *levels = row + (size_t)g * lb_lut_block_bytes(&w->spec, l);
    *codes = *levels + lb_lut_table_bytes(&w->spec);
}

/* the columns group g of a row covers (its first at g group_len), fewer in
 * the last group when cols does not fill it */
static inline int lb_lut_group_cols(const lb_tensor *w, int64_t g) {
    const int64_t G = w->layout.group_len, left = w->cols - g * G;
    return (int)(left < G ? left : G);
}

/* the 8 codes whose b bytes start at p, code l at bits [b l, b l + b) (built
 * in a register: a memcpy of 3 bytes into a 4-byte variable compiles to
 * narrow stores and a wide reload, which stalls store forwarding) */
static inline uint32_t lb_lut_bits(const uint8_t *p, int b) {
    if (b == 4) {
        uint32_t u;
        memcpy(&u, p, sizeof u);
        return u;
    }
    if (b == 3) return (uint32_t)lb_rd16(p) | (uint32_t)p[2] << 16;
    return b == 2 ? lb_rd16(p) : p[0];
}

/* ---- vq's codebooks as floats (format_internal.h: lb_vq_*) ----------------- */

typedef struct {
    int d, c, stages;
    int64_t book_size; /* 2^c */
    size_t book_off;   /* floats [stages][2^c][d] from here */
} lb_vq_pack;

/* vq<d>x<c>, any stage count, row or tensor scales */
int lb_vq_kernel_accepts(const lb_qspec *s, const lb_layout *l);
lb_status lb_vq_repack(const lb_tensor *w, void **out, size_t *bytes);

/* stage t's codebook: codeword k at + k d */
static inline const float *lb_vq_book(const lb_tensor *w, int t) {
    const lb_vq_pack *p = (const lb_vq_pack *)w->packed;
    return (const float *)((const uint8_t *)w->packed + p->book_off) + (size_t)t * (size_t)p->book_size * (size_t)p->d;
}

/* stage t's scale for row r (fp16, at the row's start or in the tail) */
static inline float lb_vq_scale(const lb_tensor *w, int64_t r, int t) {
    return lb_fp16_to_fp32(lb_rd16(lb_vq_scales_at(&w->spec, &w->layout, w->data, r) + 2 * t));
}

/* The code at bit `bit` of a stream: a 4-byte window at its first byte holds
 * all its c + 7 <= 23 bits. The window reaches at most 3 bytes past a row's
 * codes: the next row's bytes or, after the last row, the tail, which starts
 * with the codebooks (>= 2 x 2 x 2 bytes), so it stays inside the tensor. */
static inline unsigned lb_vq_code(const uint8_t *codes, uint64_t bit, unsigned mask) {
    uint32_t u;
    memcpy(&u, codes + (bit >> 3), sizeof u);
    return u >> (bit & 7) & mask;
}

/* bits of one stage's codes in a row: stage t's start at t times this */
static inline uint64_t lb_vq_stage_bits(const lb_tensor *w) {
    return (uint64_t)(w->layout.cols_padded / w->spec.vec_dim) * (uint64_t)w->spec.bits;
}

/* row r's codes: stage t's code of vector v at bit (t nvec + v) c */
static inline const uint8_t *lb_vq_codes(const lb_tensor *w, int64_t r) {
    return w->data + (size_t)r * w->layout.row_bytes + lb_vq_lead_bytes(&w->spec, &w->layout);
}

#endif
