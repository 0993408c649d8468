/* Power-of-two (logarithmic) weights: every weight is zero or a signed power
 * of two times its group's scale, so a product with it is a shift of the
 * scaled activation (Miyashita, Lee, Murmann 2016, "Convolutional Neural
 * Networks using Logarithmic Data Representation"; INQ, Zhou et al. 2017).
 *
 * A b-bit code (b = 3, 4 or 5) is a sign bit s (the top bit) and a (b-1)-bit
 * magnitude m (the low bits):
 *   value = 0                            for m = 0
 *   value = (-1)^s * scale * 2^-(m-1)    for m >= 1
 * so 4 bits give 0, +-1, +-1/2, ..., +-2^-6 times the scale (the code with
 * s = 1, m = 0 is a second zero). One fp16 scale per group, the group's
 * absmax (clipped by the quantizer's rule; see quant/rtn.c, codebook grids).
 *
 * Row layout: per group [scale fp16][G codes, a b-bit little-endian stream
 * (G b / 8 bytes)]. bpw = b + 16/G (rows padded to whole groups; whole-row
 * groups pad rows to 8 weights). Not a ggml type: stored raw (I8 + lowbit.*
 * keys). Spec text: "pow2" = pow2:4:g64; "pow2:3:g32", "pow2:5:row". */
#include "format_internal.h"

#include <math.h>
#include <string.h>

enum { SLOT_GROUP, SLOT_BITS };

static int pow2_match(const char *head, lb_qspec *s) {
    if (strcmp(head, "pow2")) return 0;
    s->bits = 4;
    s->group = 64;
    return 1;
}

/* "3" | "4" | "5" (bits per weight), g<N> | row */
static int pow2_parse_option(lb_qspec *s, const char *tok, unsigned seen) {
    (void)seen;
    if (tok[0] >= '0' && tok[0] <= '9') {
        if (!lb_parse_small_int(tok, &s->bits) || s->bits < 3 || s->bits > 5) {
            lb_fail(LB_ERR_INVALID, "pow2 takes 3, 4 or 5 bits, not '%s'", tok);
            return LB_OPTION_FAILED;
        }
        return SLOT_BITS;
    }
    return lb_parse_group_option(s, tok, 0);
}

static void pow2_format(const lb_qspec *s, char *buf, size_t n) {
    char g[16];
    lb_group_text(s, g, sizeof g);
    snprintf(buf, n, "pow2:%d:%s", s->bits, g);
}

static lb_status pow2_validate(const lb_qspec *s) {
    if (s->bits < 3 || s->bits > 5) return lb_fail(LB_ERR_INVALID, "pow2 takes 3, 4 or 5 bits, not %d", s->bits);
    return lb_validate_group(s, 0);
}

static size_t block_bytes(const lb_qspec *s, const lb_layout *l) { return 2 + (size_t)(l->group_len * s->bits / 8); }

static size_t pow2_row_bytes(const lb_qspec *s, const lb_layout *l) {
    return (size_t)l->groups_per_row * block_bytes(s, l);
}

static int pow2_levels(const lb_qspec *s) { return 1 << s->bits; }

static float pow2_level(const lb_qspec *s, int code) {
    int m = code & ((1 << (s->bits - 1)) - 1);
    if (m == 0) return 0.0f;
    float v = ldexpf(1.0f, 1 - m);
    return code >> (s->bits - 1) & 1 ? -v : v;
}

static void pow2_encode_row(const lb_qtensor *q, int64_t row, uint8_t *dst) {
    const lb_qspec *s = &q->spec;
    size_t bb = 2 + (size_t)(q->group_len * s->bits / 8);
    for (int64_t g = 0; g < q->groups_per_row; g++) {
        uint8_t *blk = dst + (size_t)g * bb;
        const uint8_t *c = q->codes + row * q->cols_padded + g * q->group_len;
        lb_wr16(blk, lb_fp32_to_fp16(q->scale[row * q->groups_per_row + g]));
        for (int64_t j = 0; j < q->group_len; j++) lb_put_bits(blk + 2, (uint64_t)(j * s->bits), c[j], s->bits);
    }
}

static void pow2_decode_row(lb_qtensor *q, int64_t row, const uint8_t *src) {
    const lb_qspec *s = &q->spec;
    size_t bb = 2 + (size_t)(q->group_len * s->bits / 8);
    for (int64_t g = 0; g < q->groups_per_row; g++) {
        const uint8_t *blk = src + (size_t)g * bb;
        uint8_t *c = q->codes + row * q->cols_padded + g * q->group_len;
        q->scale[row * q->groups_per_row + g] = lb_fp16_to_fp32(lb_rd16(blk));
        q->offset[row * q->groups_per_row + g] = 0.0f;
        for (int64_t j = 0; j < q->group_len; j++)
            c[j] = (uint8_t)lb_get_bits(blk + 2, (uint64_t)(j * s->bits), s->bits);
    }
}

/* The meaning of the bytes: scale * level(code), through a per-group table
 * of the 2^b values. */
static void pow2_dequantize_row(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row,
                                float *out) {
    const uint8_t *src = data + (size_t)row * l->row_bytes;
    size_t bb = block_bytes(s, l);
    int n_levels = 1 << s->bits;
    float level[32], value[32];
    for (int c = 0; c < n_levels; c++) level[c] = pow2_level(s, c);
    for (int64_t g = 0; g < l->groups_per_row; g++) {
        const uint8_t *blk = src + (size_t)g * bb;
        float d = lb_fp16_to_fp32(lb_rd16(blk));
        for (int c = 0; c < n_levels; c++) value[c] = d * level[c];
        int64_t c0 = g * l->group_len;
        int64_t n = l->cols - c0 < l->group_len ? l->cols - c0 : l->group_len;
        for (int64_t j = 0; j < n; j++) out[c0 + j] = value[lb_get_bits(blk + 2, (uint64_t)(j * s->bits), s->bits)];
    }
}

const lb_format_family lb_pow2_family = {
    .name = "pow2",
    .names = "pow2",
    .grid = LB_GRID_ABSMAX,
    .option_slots = {"group size", "bits"},
    .match = pow2_match,
    .parse_option = pow2_parse_option,
    .format = pow2_format,
    .validate = pow2_validate,
    .row_bytes = pow2_row_bytes,
    .levels = pow2_levels,
    .level = pow2_level,
    .encode_row = pow2_encode_row,
    .decode_row = pow2_decode_row,
    .dequantize_row = pow2_dequantize_row,
};
