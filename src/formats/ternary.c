/* Ternary weights: w = alpha * t, t in {-1, 0, +1}, one alpha per group, row
 * or tensor. How alpha and t are chosen (BitNet b1.58 absmean, TWN's
 * threshold) is the method's business, not the format's: both write the
 * same bytes (see quant/rtn.c, lb_rtn_opts.ternary_rule). Codes are t + 1.
 *
 * Row layout: fp16 alphas, then the row's trits, either 2 bits each (4 per
 * byte, little-endian) or 1.6 bits each: 5 trits per byte as base-3 digits,
 * byte = c0 + 3 c1 + 9 c2 + 27 c3 + 81 c4 (at most 242), the row padded to
 * whole bytes. */
#include "format_internal.h"

#include <string.h>

enum { SLOT_GROUP, SLOT_PACKING };

/* "ternary" (default one alpha per row, 1.6 bits per trit), options
 * g<N> | row | tensor, 2bit | 1.6bit */
static int ternary_match(const char *head, lb_qspec *s) {
    if (strcmp(head, "ternary")) return 0;
    s->bits = 2;
    s->group = LB_GROUP_ROW;
    s->trits_per_byte = 5;
    return 1;
}

static int ternary_parse_option(lb_qspec *s, const char *tok, unsigned seen) {
    (void)seen;
    if (!strcmp(tok, "2bit") || !strcmp(tok, "1.6bit")) {
        s->trits_per_byte = tok[0] == '2' ? 4 : 5;
        return SLOT_PACKING;
    }
    if (!strcmp(tok, "absmean") || !strcmp(tok, "twn")) { /* were format options until the rule moved */
        lb_fail(LB_ERR_INVALID,
                "'%s' is not a format option: the ternary rounding rule is a method choice now "
                "(absmean is rtn's rule; use --method twn for TWN)",
                tok);
        return LB_OPTION_FAILED;
    }
    return lb_parse_group_option(s, tok, 1);
}

static void ternary_format(const lb_qspec *s, char *buf, size_t n) {
    char g[16];
    lb_group_text(s, g, sizeof g);
    snprintf(buf, n, "ternary:%s:%s", g, s->trits_per_byte == 4 ? "2bit" : "1.6bit");
}

static lb_status ternary_validate(const lb_qspec *s) {
    if (s->bits != 2) return lb_fail(LB_ERR_INVALID, "ternary codes are 2 bits, not %d", s->bits);
    if (s->trits_per_byte != 4 && s->trits_per_byte != 5)
        return lb_fail(LB_ERR_INVALID, "ternary packs 4 or 5 trits per byte, not %d", s->trits_per_byte);
    return lb_validate_group(s, 1);
}

static size_t trit_bytes(const lb_qspec *s, int64_t n) {
    return s->trits_per_byte == 4 ? (size_t)((n + 3) / 4) : (size_t)((n + 4) / 5);
}

static size_t ternary_row_bytes(const lb_qspec *s, const lb_layout *l) {
    return lb_lead_scales_row_bytes(l) + trit_bytes(s, l->cols_padded);
}

static int ternary_levels(const lb_qspec *s) {
    (void)s;
    return 3;
}

static float ternary_level(const lb_qspec *s, int code) {
    (void)s;
    return (float)(code - 1);
}

static const uint8_t pow3[5] = {1, 3, 9, 27, 81};

/* Decodes trits [0, n) of a row's payload into codes (0, 1, 2): byte by
 * byte, so 1.6-bit needs only divisions by the constant 3. Corrupt bytes
 * still give codes in range (a clean file never has them): a 2-bit code 3
 * becomes 2, and the fifth digit of a base-3 byte > 242 is taken mod 3. */
static void decode_trits(const lb_qspec *s, const uint8_t *src, int64_t n, uint8_t *codes) {
    if (s->trits_per_byte == 4) {
        for (int64_t j = 0; j < n; j++) {
            uint8_t c = (src[j >> 2] >> (2 * (j & 3))) & 3;
            codes[j] = c > 2 ? 2 : c;
        }
        return;
    }
    for (int64_t b = 0; b * 5 < n; b++) {
        unsigned v = src[b];
        for (int i = 0; i < 5 && b * 5 + i < n; i++, v /= 3) codes[b * 5 + i] = (uint8_t)(v % 3);
    }
}

static void ternary_encode_row(const lb_qtensor *q, int64_t row, uint8_t *dst) {
    lb_lead_scales_encode(q, row, dst);
    uint8_t *t = dst + 2 * q->groups_per_row;
    const uint8_t *c = q->codes + row * q->cols_padded;
    for (int64_t j = 0; j < q->cols_padded; j++) {
        if (q->spec.trits_per_byte == 4)
            t[j >> 2] |= (uint8_t)(c[j] << (2 * (j & 3)));
        else
            t[j / 5] = (uint8_t)(t[j / 5] + c[j] * pow3[j % 5]);
    }
}

static void ternary_decode_row(lb_qtensor *q, int64_t row, const uint8_t *src) {
    lb_lead_scales_decode(q, row, src);
    const uint8_t *t = src + 2 * q->groups_per_row;
    uint8_t *c = q->codes + row * q->cols_padded;
    decode_trits(&q->spec, t, q->cols_padded, c);
}

static void ternary_dequantize_row(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row,
                                   float *out) {
    const uint8_t *t = data + (size_t)row * l->row_bytes + 2 * (size_t)l->groups_per_row;
    uint8_t codes[320];
    for (int64_t c0 = 0; c0 < l->cols; c0 += 320) { /* chunks of whole bytes in both packings */
        int64_t n = l->cols - c0 < 320 ? l->cols - c0 : 320;
        decode_trits(s, t + (s->trits_per_byte == 4 ? c0 / 4 : c0 / 5), n, codes);
        for (int64_t j = 0; j < n;) {
            int64_t g = l->groups_per_row ? (c0 + j) / l->group_len : 0;
            int64_t stop = l->groups_per_row ? (g + 1) * l->group_len - c0 : n;
            float a = lb_lead_scale(l, data, row, g);
            for (; j < n && j < stop; j++) out[c0 + j] = a * (float)(codes[j] - 1);
        }
    }
}

const lb_format_family lb_ternary_family = {
    .name = "ternary",
    .names = "ternary",
    .grid = LB_GRID_TERNARY,
    .option_slots = {"group size", "trit packing"},
    .match = ternary_match,
    .parse_option = ternary_parse_option,
    .format = ternary_format,
    .validate = ternary_validate,
    .row_bytes = ternary_row_bytes,
    .tail_bytes = lb_lead_scales_tail_bytes,
    .levels = ternary_levels,
    .level = ternary_level,
    .encode_row = ternary_encode_row,
    .decode_row = ternary_decode_row,
    .encode_tail = lb_lead_scales_encode_tail,
    .decode_tail = lb_lead_scales_decode_tail,
    .dequantize_row = ternary_dequantize_row,
};
