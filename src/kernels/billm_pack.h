/* The kernel layout of BiLLM's weights (formats/billm.c), built once per
 * tensor by lb_billm_repack (billm_pack.c) and read by ref/billm_ref.c (the
 * specification) and x86/billm_avx2.c.
 *
 * Every weight of a group is one of eight values, fixed by the group's
 * seven fp16 parameters e: T[4 s + q] = lb_billm_value(e, s, q), s the
 * column's salient bit, q = b0 + 2 b1 its code. So a row's product is
 *   y = sum_g sum_{c in g} T_g[4 s(c) + q(c)] x_c,
 * a lookup and a multiply-add per weight, on float activations.
 *
 * The salient mask is shared by all rows, so the input is permuted once per
 * product (the registry row's `pre`): within each group, its salient
 * columns first, then the others, each in column order (a stable
 * partition; groups stay where they are, so a group's parameters still
 * cover a contiguous run of the permuted input). The codes are permuted the
 * same way once, at load. A group is then a salient run of ns_g columns (the
 * same ns_g for every row) whose weights use the four salient values, then
 * a run using the four others: within a run the weight is a 4-entry lookup
 * by the 2-bit code alone, which AVX2 does for 8 weights with one vpermilps
 * (it reads only the index's low two bits, so the codes need no masking);
 * only the one 8-column chunk holding a group's boundary (when ns_g % 8 !=
 * 0) needs the 8-entry lookup (vpermps) with the salient bit per lane.
 *
 * Why this rather than int8 activations (LB_ACT_Q8_32, as onebit / ptq161
 * compose the uniform panels): a weight here is an arbitrary float from an
 * 8-entry table per group, not an affine function of one code. In integer
 * form the non-salient part needs three bit planes (b0, b1, b0 b1, since
 * its value is bilinear in the two bits) plus the salient part's two, each
 * a separate int8 dot product with its own group scale, i.e. repacking into
 * 1-bit planes that are read five times and, with the permutation, padding
 * every run to whole 32-column activation blocks; the float lookup reads
 * each code once. At batch 1 the product is memory-bound: this layout reads
 * the stored bytes once (2 bits a weight plus 14 bytes a group: 2.875 bpw at
 * g128) and decodes 8 weights in three instructions (a broadcast of 16
 * codes' word, a shift per lane, the lookup) before one FMA per activation
 * row; the 8 table entries cost about a dozen instructions per group and
 * row, amortized over its 16..256 columns.
 *
 * Layout (one lb_alloc'd block):
 *   lb_billm_pack (the header below), 64-byte aligned parts after it:
 *   ns[groups]     int32: salient columns of group g (any count 0..len_g)
 *   src[width]     int32: the column of the input that permuted column p
 *                  takes, -1 for padding (the input is 0 there)
 *   rows           row_bytes each: per group g, its seven fp16 parameters as
 *                  stored (14 bytes), then its permuted codes, len_g / 4
 *                  bytes, a little-endian 2-bit stream (code p in bits
 *                  2 (p % 4) of byte p / 4), padding codes 0.
 *   64 zero bytes  so that reading a 32-bit word at any chunk's codes, or 16
 *                  bytes at any group's parameters, stays inside the block.
 * width = cols_padded rounded up to 16; groups of `group` permuted columns
 * (the format's g<N>, or width for `row`), the last one len_g = width - g
 * group. Every run of padding columns is at the end of the last group's
 * non-salient run (padding columns are never salient), and its zero inputs
 * make the padding codes' values vanish. */
#ifndef LB_KERNELS_BILLM_PACK_H
#define LB_KERNELS_BILLM_PACK_H

#include "kernels/kernels.h"

typedef struct {
    int64_t rows, cols;
    int64_t width;    /* permuted columns: cols_padded rounded up to 16 */
    int64_t group;    /* permuted columns per group (the last group: what is left of width) */
    int64_t groups;   /* per row */
    size_t row_bytes; /* 14 groups + width / 4 */
    size_t ns_off, src_off, rows_off;
} lb_billm_pack;

#define LB_BILLM_PARAM_BYTES 14 /* seven fp16 (lowbit/format.h: LB_BILLM_*) */

static inline const lb_billm_pack *lb_billm(const lb_tensor *w) { return (const lb_billm_pack *)w->packed; }
static inline const int32_t *lb_billm_ns(const lb_tensor *w) {
    return (const int32_t *)((const uint8_t *)w->packed + lb_billm(w)->ns_off);
}
static inline const uint8_t *lb_billm_row(const lb_tensor *w, int64_t r) {
    const lb_billm_pack *p = lb_billm(w);
    return (const uint8_t *)w->packed + p->rows_off + (size_t)r * p->row_bytes;
}
/* group g's length, and where its parameters start in a row (its codes follow them) */
static inline int64_t lb_billm_group_len(const lb_billm_pack *p, int64_t g) {
    int64_t rest = p->width - g * p->group;
    return rest < p->group ? rest : p->group;
}
static inline size_t lb_billm_group_at(const lb_billm_pack *p, int64_t g) {
    return (size_t)g * (LB_BILLM_PARAM_BYTES + (size_t)(p->group / 4));
}

/* The layouts the rows take: billm with power-of-two groups or `row`
 * (anything the format accepts), row bytes as the format computes them. */
int lb_billm_kernel_accepts(const lb_qspec *s, const lb_layout *l);
lb_status lb_billm_repack(const lb_tensor *w, void **out, size_t *bytes);
/* pre (kernels.h): out[i, p] = x[i, src[p]] (0 at padding), width columns */
int lb_billm_pre_cols(const lb_tensor *w);
void lb_billm_pre(const lb_tensor *w, const float *x, int n, float *out);

#endif
