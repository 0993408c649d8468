/* Internals shared by the format families: the row every family fills in
 * (lb_format_family), and helpers the rows share (bit packing, lead scales,
 * group option parsing). format.c only walks the table of rows. */
#ifndef LB_FORMAT_INTERNAL_H
#define LB_FORMAT_INTERNAL_H

#include "lowbit/format.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

/* parse_option results besides a slot index >= 0 */
#define LB_OPTION_UNKNOWN (-1) /* not an option of this family */
#define LB_OPTION_FAILED (-2)  /* the hook called lb_fail */
#define LB_MAX_OPTION_SLOTS 8

/* One row of the format table: everything about one family.
 *
 * Spec text: match() recognizes the first token (the family name, e.g.
 * "int4", "nf4", or an alias like "q4_0") and writes the family's defaults;
 * parse_option() (NULL: a family without options, whose match() answers 2)
 * takes one further token, sets it in the spec and returns the
 * option slot it filled (format.c rejects a slot filled twice, naming it with
 * option_slots[]); format() prints the canonical text; validate() checks a
 * spec built by hand.
 *
 * Layout: shape() sets cols_padded and the group fields (NULL: groups of
 * spec->group weights, rows padded to whole groups; row/tensor groups pad
 * rows to 8 weights); row_bytes/tail_bytes size a row and the tensor tail.
 *
 * Codes (quantized families): levels/level are the codebook at scale 1;
 * code_value/nearest_code (NULL: scale[k] * level(code) and a scan over the
 * levels) give the value of a code in group k and the code nearest w;
 * qtensor_init allocates family-specific parts of lb_qtensor;
 * store_scales rounds scales to what is stored (NULL: fp16). nearest_level
 * (NULL: a scan) is the code whose level is nearest v at scale 1, for large
 * codebooks (fp8's 256); round_scale (NULL: fp16) is the stored scale
 * nearest s, so grid searches score what is written (mxfp4: powers of two);
 * fit_tensor (NULL: none) sets tensor-level parameters from all weights
 * before any group is fitted (nvfp4's tensor_scale). Vector
 * families (LB_GRID_VECTOR) fill the vec_* hooks instead of levels/level.
 * encode_row/decode_row/encode_tail/decode_tail move between packed bytes and
 * lb_qtensor; dequantize_row is the reference meaning of the bytes (every
 * family, float ones included). check_bytes (NULL: any bytes of the right
 * size are valid) rejects stored data the family defines as corrupt (lut:
 * levels that are not finite and ascending; ptq161 / billm: a tail mask
 * with the wrong count) with LB_ERR_FORMAT; it runs whenever a tensor gets
 * its bytes (lb_tensor_resolve, so at every load), before
 * lb_qtensor_decode, and on what lb_qtensor_encode writes. dequantize_row
 * must still stay in bounds on bytes that fail it.
 *
 * ggml: ggml_type() is the ggml type id whose layout these bytes are (or -1);
 * from_ggml() writes the spec for a ggml id and returns 1 if it has one.
 * from_float (float families): converts f32 weights into the format. */
struct lb_format_family {
    const char *name;  /* as in error messages: "int", "nf4", "f16" */
    const char *names; /* what match() answers to, for the list of known formats */
    int is_float;      /* stores floats: no codes, no grid */
    int sized_by_data; /* split: the size is the tensor's byte count, held to the layout by check_bytes
                          (the spec alone cannot say it; layouts have row_bytes 0, tail = the bytes) */
    lb_grid_kind grid; /* how a data-free method picks a group's grid */
    const char *option_slots[LB_MAX_OPTION_SLOTS];

    int (*match)(const char *head, lb_qspec *s); /* 1: mine, options may follow; 2: mine, no
                                                    options; 0: not mine; LB_OPTION_FAILED */
    int (*parse_option)(lb_qspec *s, const char *tok, unsigned seen_slots);
    void (*format)(const lb_qspec *s, char *buf, size_t n);
    lb_status (*validate)(const lb_qspec *s);

    void (*shape)(const lb_qspec *s, lb_layout *l);
    size_t (*row_bytes)(const lb_qspec *s, const lb_layout *l);
    size_t (*tail_bytes)(const lb_qspec *s, const lb_layout *l); /* NULL: none */

    int (*levels)(const lb_qspec *s);
    float (*level)(const lb_qspec *s, int code);
    float (*code_value)(const lb_qtensor *q, int64_t k, int code);
    /* value of weight (row, col) when it depends on more than its group and
     * code (a per-column mask, littlebit's low-rank factors); NULL: code_value / level */
    float (*value_at)(const lb_qtensor *q, int64_t row, int64_t col);
    int (*nearest_code)(const lb_qtensor *q, int64_t k, float w);
    int (*nearest_level)(const lb_qspec *s, float v);
    float (*round_scale)(const lb_qtensor *q, float s);
    void (*fit_tensor)(lb_qtensor *q, const float *w, int64_t rows, int64_t cols);
    lb_status (*qtensor_init)(lb_qtensor *q);
    lb_status (*store_scales)(lb_qtensor *q);
    /* checks a family's own parts of lb_qtensor before encoding (NULL: none) */
    lb_status (*check_qtensor)(const lb_qtensor *q);
    void (*encode_row)(const lb_qtensor *q, int64_t row, uint8_t *dst);
    void (*decode_row)(lb_qtensor *q, int64_t row, const uint8_t *src);
    void (*encode_tail)(const lb_qtensor *q, uint8_t *dst); /* NULL when no tail */
    void (*decode_tail)(lb_qtensor *q, const uint8_t *src);
    lb_status (*check_bytes)(const lb_qspec *s, const lb_layout *l, const uint8_t *data);
    void (*dequantize_row)(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row,
                           float *out);

    /* vector families (grid LB_GRID_VECTOR; lb_qtensor's vector fields):
     * codes per stage, a code's codeword at scale 1, the exact nearest code
     * (x in codeword units, wt per-coordinate weights or NULL), the scale
     * over the RMS where rtn starts searching */
    int (*vec_code_count)(const lb_qspec *s, int stage);
    void (*vec_codeword)(const lb_qtensor *q, int stage, unsigned code, float *out);
    unsigned (*vec_nearest)(const lb_qtensor *q, int stage, const float *x, const float *wt);
    float (*vec_unit_scale)(const lb_qtensor *q, int stage);

    int (*ggml_type)(const lb_qspec *s, int64_t cols);
    int (*from_ggml)(int type, lb_qspec *out);
    lb_status (*from_float)(const lb_qspec *s, const float *w, int64_t rows, int64_t cols, uint8_t *out);
    /* ggml block types (kquant): when cols is not whole blocks, writes the
     * spec a tensor falls back to and returns 1 (NULL or 0: no fallback) */
    int (*ggml_fallback)(const lb_qspec *s, int64_t cols, lb_qspec *out);
};

/* ---- helpers for the rows ---------------------------------------------------- */

/* Group options shared by the quantized families: "g<N>" (16..256, a power
 * of two), "row", and "tensor" when allow_tensor. Returns slot 0 (the
 * group size), LB_OPTION_UNKNOWN, or LB_OPTION_FAILED. */
int lb_parse_group_option(lb_qspec *s, const char *tok, int allow_tensor);
/* "g64", "row" or "tensor" */
void lb_group_text(const lb_qspec *s, char *buf, size_t n);
/* group is a power of two in 16..256, LB_GROUP_ROW, or (allow_tensor) LB_GROUP_TENSOR */
lb_status lb_validate_group(const lb_qspec *s, int allow_tensor);
/* Decimal digits only, at most 100000. */
int lb_parse_small_int(const char *s, int *out);

/* Default store_scales: fp16 rounding of scale, offset cleared, finite check. */
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
/* e8p's row layout (e8p.c; its kernels read the bytes too, kernels/lookup.h):
 * [stage scales, fp16, row groups only][stage 0 codes][stage 1 codes]; one
 * stage for e8p2, two otherwise; stage t's codes are 16-bit E8P codes, or
 * 8-bit E8 ball codes for e8p3's second stage, one per 8 columns. */
static inline int lb_e8p_stages(const lb_qspec *s) { return s->bits == 2 ? 1 : 2; }
static inline int lb_e8p_code_bits(const lb_qspec *s, int t) { return t == 0 || s->bits == 4 ? 16 : 8; }
static inline size_t lb_e8p_stage_offset(const lb_qspec *s, const lb_layout *l, int t) {
    size_t off = l->groups_per_row ? 2 * (size_t)lb_e8p_stages(s) : 0, nvec = (size_t)(l->cols_padded / 8);
    for (int u = 0; u < t; u++) off += nvec * (size_t)lb_e8p_code_bits(s, u) / 8;
    return off;
}

/* lut's row layout (lut.c; its kernels read the bytes too, kernels/lookup.h):
 * per group a block of 2^b fp16 levels then group_len b-bit codes; with one
 * group per tensor, rows are codes only and the levels sit in the tail. */
static inline size_t lb_lut_table_bytes(const lb_qspec *s) { return 2 * ((size_t)1 << s->bits); }
static inline size_t lb_lut_block_bytes(const lb_qspec *s, const lb_layout *l) {
    return lb_lut_table_bytes(s) + (size_t)(l->group_len * s->bits / 8);
}

/* vq's layout (vq.c; its kernels read the bytes too, kernels/lookup.h):
 * rows [stage scales, fp16, row scales only][codes: stage 0's code of each
 * of the cols_padded / d vectors, then stage 1's, ...: c bits each (c <=
 * 16), one little-endian stream, code i of the row at bits [i c, i c + c)];
 * tail [codebooks: S x 2^c x d fp16][stage scales, fp16, tensor scales only]. */
static inline int64_t lb_vq_book_size(const lb_qspec *s) { return (int64_t)1 << s->bits; }
static inline size_t lb_vq_lead_bytes(const lb_qspec *s, const lb_layout *l) {
    return l->groups_per_row ? 2 * (size_t)s->vec_stages : 0;
}
static inline size_t lb_vq_book_bytes(const lb_qspec *s) {
    return 2 * (size_t)s->vec_stages * (size_t)lb_vq_book_size(s) * (size_t)s->vec_dim;
}
/* the fp16 stage scales of row `row` (or of the tensor) in data */
static inline const uint8_t *lb_vq_scales_at(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row) {
    return l->groups_per_row ? data + (size_t)row * l->row_bytes
                             : data + (size_t)l->rows * l->row_bytes + lb_vq_book_bytes(s);
}

/* Vector families (e8p, vq; vector_scales.c): lb_qtensor_init's codes
 * replaced by vector codes (vec_dim weights, `stages` stages) and scale
 * made n_groups x stages; the scales rounded to fp16 (failing on what fp16
 * cannot hold); group g's stage scales as fp16, stage 0 first, at dst / src
 * (the row's start, or the tail for one group per tensor). */
lb_status lb_vec_qtensor_init(lb_qtensor *q, int vec_dim, int stages);
lb_status lb_vec_store_scales(lb_qtensor *q);
void lb_vec_scales_encode(const lb_qtensor *q, int64_t g, uint8_t *dst);
void lb_vec_scales_decode(lb_qtensor *q, int64_t g, const uint8_t *src);
/* The trellis family's scale of group g of a row (g 0 for row and tensor
 * groups) from the stored bytes: lead fp16 scales, or coded ones (s<b>). */
float lb_trellis_stored_scale(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row, int64_t g);
/* The k-bit code stream of a stored row (after its lead scales); row ==
 * rows is the tail's missing row (down with v2 and odd rows). Along rows,
 * step j's code is at bit j k. */
const uint8_t *lb_trellis_row_codes(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row);
/* down: the stream holding the codes of the step that holds `row`, for the
 * columns of parity j: with V = 1 the row's own (either j), with v2 row
 * 2p + j of the step's rows 2p, 2p + 1. Column c's code sits at bit
 * (V == 2 ? c / 2 : c) k. */
const uint8_t *lb_trellis_down_codes(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row, int j);

/* IQ4_NL's (and IQ4_XS's) 16 levels, ggml's kvalues_iq4nl (iq4.c) */
extern const int8_t lb_iq4_values[16];
/* MXFP4's / NVFP4's E2M1 values doubled, ggml's kvalues_mxfp4 (fp4.c; the
 * scales below are halved to match) */
extern const int8_t lb_mxfp4_values[16];
/* E8M0 byte e as ggml's halved scale 2^(e - 128): exact, subnormal for e <
 * 2; e = 255 (OCP's NaN) reads as 2^127, as in ggml */
static inline float lb_e8m0_half(unsigned e) {
    uint32_t bits = e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}
/* nvfp4's fp32 tensor scale, the tensor tail after its rows (fp4.c; the
 * kernels' repack reads it too) */
static inline float lb_nvfp4_tensor_scale(const lb_layout *l, const uint8_t *data) {
    float t;
    memcpy(&t, data + (size_t)l->rows * l->row_bytes, 4); /* little-endian hosts only (checked at build) */
    return t;
}
/* UE4M3 byte b (exponent bits 3..6, bias 7; mantissa bits 0..2; 0x7f reads
 * as 0) as ggml's halved scale (ggml_ue4m3_to_fp32) */
static inline float lb_ue4m3_half(unsigned b) {
    b &= 0x7f;
    if (b == 0x7f) return 0.0f;
    int e = (int)(b >> 3), man = (int)(b & 7);
    float raw = e == 0 ? ldexpf((float)man, -9) : ldexpf(1.0f + (float)man / 8.0f, e - 7);
    return raw * 0.5f;
}

/* The grids of llama.cpp's codebook types (iq_grids.c: ggml's tables,
 * expanded on first use, thread-safe): entry i of a grid is its 8 (iq3: 4)
 * values; signs[k] is ggml's ksigns_iq2xs, k's seven sign bits and an
 * eighth making their count even. */
typedef struct {
    uint8_t iq2xxs[256][8], iq2xs[512][8], iq2s[1024][8];
    uint8_t iq3xxs[256][4], iq3s[512][4];
    int8_t iq1s[2048][8];
    uint8_t signs[128];
} lb_iq_grids;
const lb_iq_grids *lb_iq_grid_tables(void);
/* One 256-weight block of each codebook type to floats (iq_read.c; the
 * read-only family's rows in ggml_read.c) */
void lb_iq2_xxs_block(const uint8_t *b, float *y);
void lb_iq2_xs_block(const uint8_t *b, float *y);
void lb_iq2_s_block(const uint8_t *b, float *y);
void lb_iq3_xxs_block(const uint8_t *b, float *y);
void lb_iq3_s_block(const uint8_t *b, float *y);
void lb_iq1_s_block(const uint8_t *b, float *y);
void lb_iq1_m_block(const uint8_t *b, float *y);

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

/* c-bit codes (c = 1..16) in a little-endian stream, as two 8-bit halves
 * for c > 8 (vq's codes) */
static inline void lb_put_code16(uint8_t *dst, uint64_t bitpos, unsigned v, int c) {
    if (c <= 8) {
        lb_put_bits(dst, bitpos, v, c);
    } else {
        lb_put_bits(dst, bitpos, v & 255u, 8);
        lb_put_bits(dst, bitpos + 8, v >> 8, c - 8);
    }
}
static inline unsigned lb_get_code16(const uint8_t *src, uint64_t bitpos, int c) {
    if (c <= 8) return lb_get_bits(src, bitpos, c);
    return lb_get_bits(src, bitpos, 8) | lb_get_bits(src, bitpos + 8, c - 8) << 8;
}

/* Uniform codes of one group block (n codes): uniform.c's packing (4-bit
 * halves, 5-bit as ggml's Q5 blocks: n/8 bytes of fifth bits then 4-bit
 * halves, int8 for 8-bit sym, else a bit stream); unpack reads codes
 * [j0, j0 + cnt). Shared with the hierarchical-scale rows (uniform_hscale.c). */
void lb_uniform_pack_codes(const lb_qspec *s, const uint8_t *codes, int64_t n, uint8_t *dst);
void lb_uniform_unpack_codes(const lb_qspec *s, const uint8_t *src, int64_t n, int64_t j0, int64_t cnt, uint8_t *dst);

/* Uniform integers with hierarchical scales (spec->scale_bits > 0), the
 * hooks uniform.c's row calls for such specs (uniform_hscale.c). */
int lb_hscale_parse_option(lb_qspec *s, const char *tok, int slot_scales, int slot_super);
lb_status lb_hscale_validate(const lb_qspec *s);
size_t lb_hscale_row_bytes(const lb_qspec *s, const lb_layout *l);
size_t lb_hscale_tail_bytes(const lb_qspec *s, const lb_layout *l);
lb_status lb_hscale_qtensor_init(lb_qtensor *q);
lb_status lb_hscale_store_scales(lb_qtensor *q);
void lb_hscale_encode_row(const lb_qtensor *q, int64_t row, uint8_t *dst);
void lb_hscale_decode_row(lb_qtensor *q, int64_t row, const uint8_t *src);
void lb_hscale_encode_tail(const lb_qtensor *q, uint8_t *dst);
void lb_hscale_decode_tail(lb_qtensor *q, const uint8_t *src);
void lb_hscale_dequantize_row(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row, float *out);

/* Salient-column families (ptq161, billm): one bit per column in the
 * tensor tail, 1 = salient (salient_mask.c). */
size_t lb_col_mask_bytes(const lb_layout *l);
void lb_col_mask_encode(const lb_qtensor *q, uint8_t *dst);
void lb_col_mask_decode(lb_qtensor *q, const uint8_t *src);
static inline int lb_col_mask_bit(const uint8_t *mask, int64_t c) { return mask[c >> 3] >> (c & 7) & 1; }
/* The mask's set bits among the first cols (padding bits must be 0: fails otherwise) */
lb_status lb_col_mask_count(const lb_layout *l, const uint8_t *mask, int64_t *count);

static inline int64_t lb_round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/* billm (billm.c): one weight from its group's seven fp16 values (stored
 * order: LB_BILLM_* in lowbit/format.h), its column's salient bit and its
 * 2-bit code (b0 + 2 b1). The format and its kernels (kernels/billm_pack.h)
 * decode through this one definition. */
static inline float lb_billm_value(const float *e, int salient, unsigned code) {
    float s0 = code & 1 ? 1.0f : -1.0f, s1 = code & 2 ? 1.0f : -1.0f;
    if (salient) return e[LB_BILLM_MU_S] + s0 * e[LB_BILLM_A1] + s1 * e[LB_BILLM_A2];
    return code & 2 ? e[LB_BILLM_MU_P] + s0 * e[LB_BILLM_A_P] : e[LB_BILLM_MU_C] + s0 * e[LB_BILLM_A_C];
}

#endif
