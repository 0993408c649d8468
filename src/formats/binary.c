/* Binary weights: w = alpha * sign(w), one alpha per group, row or tensor
 * (BinaryConnect / XNOR-Net's BWN; alpha = mean|w| is chosen by the
 * quantizer, see quant/rtn.c). Row layout: fp16 alphas, then one bit per
 * weight, little-endian within bytes, 1 = +alpha, 0 = -alpha. */
#include "format_internal.h"

#include <string.h>

/* "binary" (default one alpha per row), options g<N> | row | tensor */
static int binary_match(const char *head, lb_qspec *s) {
    if (strcmp(head, "binary")) return 0;
    s->bits = 1;
    s->group = LB_GROUP_ROW;
    return 1;
}

static int binary_parse_option(lb_qspec *s, const char *tok, unsigned seen) {
    (void)seen;
    return lb_parse_group_option(s, tok, 1);
}

static void binary_format(const lb_qspec *s, char *buf, size_t n) {
    char g[16];
    lb_group_text(s, g, sizeof g);
    snprintf(buf, n, "binary:%s", g);
}

static lb_status binary_validate(const lb_qspec *s) {
    if (s->bits != 1) return lb_fail(LB_ERR_INVALID, "binary has 1 bit, not %d", s->bits);
    return lb_validate_group(s, 1);
}

static size_t binary_row_bytes(const lb_qspec *s, const lb_layout *l) {
    (void)s;
    return lb_lead_scales_row_bytes(l) + (size_t)(l->cols_padded / 8);
}

static int binary_levels(const lb_qspec *s) {
    (void)s;
    return 2;
}

static float binary_level(const lb_qspec *s, int code) {
    (void)s;
    return code ? 1.0f : -1.0f;
}

static void binary_encode_row(const lb_qtensor *q, int64_t row, uint8_t *dst) {
    lb_lead_scales_encode(q, row, dst);
    uint8_t *bits = dst + 2 * q->groups_per_row;
    const uint8_t *c = q->codes + row * q->cols_padded;
    for (int64_t j = 0; j < q->cols_padded; j++) bits[j >> 3] |= (uint8_t)(c[j] << (j & 7));
}

static void binary_decode_row(lb_qtensor *q, int64_t row, const uint8_t *src) {
    lb_lead_scales_decode(q, row, src);
    const uint8_t *bits = src + 2 * q->groups_per_row;
    uint8_t *c = q->codes + row * q->cols_padded;
    for (int64_t j = 0; j < q->cols_padded; j++) c[j] = (bits[j >> 3] >> (j & 7)) & 1;
}

static void binary_dequantize_row(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row,
                                  float *out) {
    (void)s;
    const uint8_t *bits = data + (size_t)row * l->row_bytes + 2 * (size_t)l->groups_per_row;
    for (int64_t j = 0; j < l->cols;) {
        int64_t g = l->groups_per_row ? j / l->group_len : 0;
        int64_t stop = l->groups_per_row && (g + 1) * l->group_len < l->cols ? (g + 1) * l->group_len : l->cols;
        float a = lb_lead_scale(l, data, row, g);
        const float value[2] = {-a, a}; /* indexed, not branched on: signs are random */
        for (; j < stop; j++) out[j] = value[(bits[j >> 3] >> (j & 7)) & 1];
    }
}

/* The sign, whatever alpha is (also 0): w = 0 and padding take +alpha, as
 * round-to-nearest stores them, where a scan over {-alpha, +alpha} would
 * tie. */
static int binary_nearest_code(const lb_qtensor *q, int64_t k, float w) {
    (void)q;
    (void)k;
    return w >= 0.0f;
}

const lb_format_family lb_binary_family = {
    .name = "binary",
    .names = "binary",
    .grid = LB_GRID_SIGN,
    .option_slots = {"group size"},
    .match = binary_match,
    .parse_option = binary_parse_option,
    .format = binary_format,
    .validate = binary_validate,
    .row_bytes = binary_row_bytes,
    .tail_bytes = lb_lead_scales_tail_bytes,
    .levels = binary_levels,
    .level = binary_level,
    .nearest_code = binary_nearest_code,
    .encode_row = binary_encode_row,
    .decode_row = binary_decode_row,
    .encode_tail = lb_lead_scales_encode_tail,
    .decode_tail = lb_lead_scales_decode_tail,
    .dequantize_row = binary_dequantize_row,
};
