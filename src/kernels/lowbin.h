/* The kernel layout of ternary and binary weights (formats of 2 bits and
 * below), built once per tensor by the registry's repack hook and read by
 * the scalar references (ref/ternary_ref.c, ref/binary_ref.c) and their
 * SIMD twins alike, so the two read the same bytes.
 *
 * Why a repacking: the stored ternary packing puts 4 (or 5) consecutive
 * columns in one byte, which SIMD cannot spread into 32 consecutive bytes
 * without a per-byte variable shift (or a division by 3). Here the codes of
 * one row are cut into chunks of 64 bytes; byte i of a chunk holds the
 * codes of columns s*64 + i of the chunk, one per "digit" s, so one shift
 * (or one multiply) turns the whole 64-byte chunk into 64 codes of 64
 * consecutive columns, i.e. two 32-column activation blocks:
 *   2-bit:   4 digits, bits 2s..2s+1, code 0..2;       chunk = 256 columns
 *   1.6-bit: 5 digits, byte q = ceil(v * 256 / 243) with v = sum_s c_s 3^(4-s)
 *            (v / 243 as a base-3 fraction), digit s = ((q 3^s mod 256) * 3) >> 8
 *            (exact for all 243 values; no division at run time); chunk = 320
 *   binary:  the stored bit stream (bit j of the row = column j, 1 = +alpha),
 *            rows padded to 64 bytes; chunk = 512 columns.
 * Codes past the row's columns are value 0 (ternary code 1, binary bit 0;
 * they meet zero activations anyway). The fp16 group scales are copied into
 * one table, rows x spr (a whole-tensor scale is repeated per row, so every
 * kernel reads scale[r * spr + (b >> gshift)] for 32-column block b).
 * Groups must be whole activation blocks: g >= 32, row or tensor (g16
 * stays on the generic path). */
#ifndef LB_KERNELS_LOWBIN_H
#define LB_KERNELS_LOWBIN_H

#include "kernels/kernels.h"

typedef struct {
    int kind;          /* LB_LOWBIN_T2, LB_LOWBIN_T5, LB_LOWBIN_B1 */
    int nb;            /* 32-column blocks holding columns: ceil(cols / 32) */
    int spr, gshift;   /* scales per row; block b of a row uses scale b >> gshift */
    int chunk_cols;    /* columns per 64-byte chunk */
    size_t row_bytes;  /* code bytes per row (whole chunks) */
    size_t scale_off;  /* uint16 fp16 scales, rows x spr */
    size_t code_off;   /* rows x row_bytes, 64-byte aligned */
} lb_lowbin_pack;

enum { LB_LOWBIN_T2, LB_LOWBIN_T5, LB_LOWBIN_B1, LB_LOWBIN_B1_LUT, LB_LOWBIN_T_LUT };

/* The table-lookup layout of binary weights (LB_LOWBIN_B1_LUT, built by
 * lb_lut_repack; ref/lut_ref.c): rows in tiles of 16 (the last one padded
 * with zero bits); per tile and per 8 columns (two groups of 4, 2p and
 * 2p + 1) 16 bytes (the slices of pairs 2u, 2u + 1 adjacent: 32 bytes per
 * 16 columns, as the activation tables group 4 groups per 128 bytes), byte i = the 4 bits of row i in group 2p (low nibble)
 * and in group 2p + 1 (high nibble), so one vpshufb per 16-byte lane looks
 * up 16 rows at once; row_bytes is the bytes per tile (nb * 64), and the
 * scales are per tile, per group, 16 rows: scale[(t * spr + g) * 16 + i]. */
lb_status lb_lut_repack(const lb_tensor *w, void **out, size_t *bytes);
/* The same for ternary (LB_LOWBIN_T_LUT): groups of 2 columns, the 4-bit
 * index 3 c0 + c1 (codes 0..2; columns past cols code 1), so 4 columns per
 * byte pair-slot and nb * 128 bytes per tile. */
lb_status lb_lut3_repack(const lb_tensor *w, void **out, size_t *bytes);
/* Byte offset of group k's low-byte table in an LB_ACT_LUT row (its high
 * bytes are 64 further). */
static inline size_t lb_lut_offset(int k) { return (size_t)(k / 4) * 128 + 16 * (size_t)(k % 4); }

#define LB_LOWBIN_CHUNK 64 /* bytes */

static inline const lb_lowbin_pack *lb_lowbin(const lb_tensor *w) { return (const lb_lowbin_pack *)w->packed; }
static inline const uint16_t *lb_lowbin_scales(const lb_tensor *w) {
    return (const uint16_t *)((const uint8_t *)w->packed + lb_lowbin(w)->scale_off);
}
static inline const uint8_t *lb_lowbin_codes(const lb_tensor *w, int r) {
    const lb_lowbin_pack *p = lb_lowbin(w);
    return (const uint8_t *)w->packed + p->code_off + (size_t)r * p->row_bytes;
}

/* The 1.6-bit digit s (0..4) of a repacked byte. */
static inline int lb_lowbin_trit(uint8_t q, int s) {
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    return (((uint8_t)(q * pow3[s])) * 3) >> 8;
}

/* code (0..2) of column j from a stored ternary row's trits (clamped as
 * ternary.c does) */
static inline int lb_lowbin_stored_trit(const uint8_t *t, int per_byte, int64_t j) {
    if (per_byte == 4) {
        int c = (t[j >> 2] >> (2 * (j & 3))) & 3;
        return c > 2 ? 2 : c;
    }
    unsigned v = t[j / 5];
    for (int64_t i = j % 5; i > 0; i--) v /= 3;
    return (int)(v % 3);
}

/* Predicates: the layouts the repacking takes. */
int lb_lowbin_is_ternary(const lb_qspec *s, const lb_layout *l);
int lb_lowbin_is_binary(const lb_qspec *s, const lb_layout *l);
/* The repack hook for both families (registry rows name it). */
lb_status lb_lowbin_repack(const lb_tensor *w, void **out, size_t *bytes);

#endif
