/* Internals shared by the format families: the traits table and bit packing. */
#ifndef LB_FORMAT_INTERNAL_H
#define LB_FORMAT_INTERNAL_H

#include "lowbit/format.h"

/* One row per quantized family. Rows are fixed-size records; the tail holds
 * tensor-level data. encode/decode move between packed bytes and lb_qtensor;
 * dequantize_row is the reference meaning of the bytes. */
typedef struct {
    const char *name;
    size_t (*row_bytes)(const lb_qspec *s, const lb_layout *l);
    size_t (*tail_bytes)(const lb_qspec *s, const lb_layout *l);
    int (*levels)(const lb_qspec *s);
    float (*level)(const lb_qspec *s, int code);
    lb_status (*store_scales)(lb_qtensor *q); /* NULL: round scale/offset to fp16 */
    void (*encode_row)(const lb_qtensor *q, int64_t row, uint8_t *dst);
    void (*decode_row)(lb_qtensor *q, int64_t row, const uint8_t *src);
    void (*encode_tail)(const lb_qtensor *q, uint8_t *dst); /* NULL when no tail */
    void (*decode_tail)(lb_qtensor *q, const uint8_t *src);
    void (*dequantize_row)(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row,
                           float *out);
} lb_format_traits;

extern const lb_format_traits lb_uniform_traits, lb_nf4_traits, lb_binary_traits,
    lb_ternary_traits;
const lb_format_traits *lb_format_traits_of(lb_family f); /* NULL for float families */

/* Float families (f32/f16/bf16): convert a row to float. */
void lb_float_dequantize_row(const lb_qspec *s, const uint8_t *row_data, int64_t cols, float *out);

/* Default store_scales: fp16 rounding of scale (and offset), finite check. */
lb_status lb_store_scales_fp16(lb_qtensor *q);

/* Binary and ternary keep their fp16 scales at the start of each row
 * ([scale g0][scale g1]...[payload]), or, for one scale per tensor, as a
 * single fp16 in the tensor tail. */
size_t lb_lead_scales_row_bytes(const lb_layout *l);
size_t lb_lead_scales_tail_bytes(const lb_qspec *s, const lb_layout *l);
void lb_lead_scales_encode(const lb_qtensor *q, int64_t row, uint8_t *dst);
void lb_lead_scales_decode(lb_qtensor *q, int64_t row, const uint8_t *src);
void lb_lead_scales_encode_tail(const lb_qtensor *q, uint8_t *dst);
void lb_lead_scales_decode_tail(lb_qtensor *q, const uint8_t *src);
/* scale of group g of `row` straight from packed bytes */
float lb_lead_scale(const lb_layout *l, const uint8_t *data, int64_t row, int64_t g);

/* Little-endian bit streams: value i of width b (1..8) sits at bits
 * [i*b, i*b+b). lb_put_bits ORs into dst, which must start zeroed. */
static inline void lb_put_bits(uint8_t *dst, uint64_t bitpos, unsigned value, int nbits) {
    unsigned shift = (unsigned)(bitpos & 7);
    dst[bitpos >> 3] |= (uint8_t)(value << shift);
    if (shift + (unsigned)nbits > 8) dst[(bitpos >> 3) + 1] |= (uint8_t)(value >> (8 - shift));
}
static inline unsigned lb_get_bits(const uint8_t *src, uint64_t bitpos, int nbits) {
    unsigned shift = (unsigned)(bitpos & 7);
    unsigned v = (unsigned)src[bitpos >> 3] >> shift;
    if (shift + (unsigned)nbits > 8) v |= (unsigned)src[(bitpos >> 3) + 1] << (8 - shift);
    return v & ((1u << nbits) - 1u);
}

static inline int64_t lb_round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

#endif
