/* BiLLM's weights (Huang et al. 2024, "BiLLM: Pushing the Limit of
 * Post-Training Quantization for LLMs", arXiv:2402.04291; METHODS.md s12),
 * with everything the paper leaves out of its 1.08 bits stored: the salient
 * column mask (once per tensor) and, for every non-salient weight, which of
 * the two magnitude groups it belongs to. Every weight has two bits b0, b1
 * (code q = b0 + 2 b1) and every group of a row (g<N>, BiLLM's blocks of
 * 128 columns by default, or the whole row) seven fp16 values
 * e = (mu_s, a1, a2, mu_c, a_c, mu_p, a_p):
 *   salient column (second-order residual binarization):
 *       mu_s + (b0 ? a1 : -a1) + (b1 ? a2 : -a2)
 *   other column, b1 = 0 (the concentrated group, |w| below the break-point):
 *       mu_c + (b0 ? a_c : -a_c)
 *   other column, b1 = 1 (the sparse group):
 *       mu_p + (b0 ? a_p : -a_p)
 * The break-point itself is not stored: the group bit is. So a weight
 * costs 2 bits wherever it is, and the number of salient columns is free
 * (the mask may hold any count).
 *
 * Row layout: the groups' seven fp16 values (group 0 first, in the order
 * above), then the 2-bit codes of the row, padded to 4 weights, a
 * little-endian bit stream. Groups are g<N> columns each, the last one
 * shorter when N does not divide the padded row (no padding to whole
 * groups). Tail: the column mask, ceil(cols / 8) bytes, 1 = salient.
 *   bpw = (rows (14 ceil(cp / N) + cp / 4) + ceil(cols / 8)) 8 / (rows cols),  cp = cols rounded up to 4
 * e.g. 4096 x 4096 at g128: 46 bytes per 128 weights, 2.875 bpw (the
 * paper's nominal figure: 1.08); one 64-wide row group: 3.75 bpw. */
#include "format_internal.h"

#include <math.h>
#include <string.h>

enum { N_EXTRA = LB_BILLM_VALUES }; /* e = (mu_s, a1, a2, mu_c, a_c, mu_p, a_p): format_internal.h */

/* "billm" (blocks of 128 columns), options g<N> | row */
static int billm_match(const char *head, lb_qspec *s) {
    if (strcmp(head, "billm")) return 0;
    s->bits = 2;
    s->group = 128;
    return 1;
}

static int billm_parse_option(lb_qspec *s, const char *tok, unsigned seen) {
    (void)seen;
    return lb_parse_group_option(s, tok, 0);
}

static void billm_format(const lb_qspec *s, char *buf, size_t n) {
    char g[16];
    lb_group_text(s, g, sizeof g);
    snprintf(buf, n, "billm:%s", g);
}

static lb_status billm_validate(const lb_qspec *s) {
    if (s->bits != 2) return lb_fail(LB_ERR_INVALID, "billm stores 2 bits per weight, not %d", s->bits);
    return lb_validate_group(s, 0);
}

static void billm_shape(const lb_qspec *s, lb_layout *l) {
    l->cols_padded = lb_round_up(l->cols, 4);
    l->group_len = s->group > 0 ? s->group : l->cols_padded;
    l->groups_per_row = (l->cols_padded + l->group_len - 1) / l->group_len;
    l->n_groups = l->rows * l->groups_per_row;
}

static size_t billm_row_bytes(const lb_qspec *s, const lb_layout *l) {
    (void)s;
    return 2 * N_EXTRA * (size_t)l->groups_per_row + (size_t)(l->cols_padded / 4);
}

static size_t billm_tail_bytes(const lb_qspec *s, const lb_layout *l) {
    (void)s;
    return lb_col_mask_bytes(l);
}

static int billm_levels(const lb_qspec *s) {
    (void)s;
    return 4;
}

/* b0 as a sign (the first binarization of either kind of column) */
static float billm_level(const lb_qspec *s, int code) {
    (void)s;
    return code & 1 ? 1.0f : -1.0f;
}

static lb_status billm_qtensor_init(lb_qtensor *q) {
    q->n_salient = -1;
    q->n_extra = N_EXTRA;
    q->col_mask = lb_calloc((size_t)q->cols_padded, 1);
    q->extra = lb_calloc((size_t)(q->n_groups * N_EXTRA), sizeof(float));
    return q->col_mask && q->extra ? LB_OK : LB_ERR_NOMEM;
}

static lb_status billm_store_scales(lb_qtensor *q) {
    for (int64_t k = 0; k < q->n_groups; k++) {
        q->scale[k] = q->offset[k] = 0.0f; /* everything is in extra */
        for (int i = 0; i < N_EXTRA; i++) {
            float *v = q->extra + k * N_EXTRA + i;
            *v = lb_round_fp16(*v);
            if (!isfinite(*v))
                return lb_fail(LB_ERR_NUMERIC, "group %lld: a scale is not finite in fp16 (weights beyond +-65504?)",
                               (long long)k);
        }
    }
    return LB_OK;
}

static float billm_value_at(const lb_qtensor *q, int64_t row, int64_t col) {
    return lb_billm_value(q->extra + lb_qtensor_group(q, row, col) * N_EXTRA, q->col_mask[col],
                       q->codes[row * q->cols_padded + col]);
}

static void billm_encode_row(const lb_qtensor *q, int64_t row, uint8_t *dst) {
    const int64_t gpr = q->groups_per_row;
    for (int64_t i = 0; i < gpr * N_EXTRA; i++) lb_wr16(dst + 2 * i, lb_fp32_to_fp16(q->extra[row * gpr * N_EXTRA + i]));
    uint8_t *bits = dst + 2 * N_EXTRA * gpr;
    const uint8_t *c = q->codes + row * q->cols_padded;
    for (int64_t j = 0; j < q->cols_padded; j++) lb_put_bits(bits, (uint64_t)(2 * j), c[j] & 3u, 2);
}

static void billm_decode_row(lb_qtensor *q, int64_t row, const uint8_t *src) {
    const int64_t gpr = q->groups_per_row;
    for (int64_t k = row * gpr; k < (row + 1) * gpr; k++) q->scale[k] = q->offset[k] = 0.0f;
    for (int64_t i = 0; i < gpr * N_EXTRA; i++) q->extra[row * gpr * N_EXTRA + i] = lb_fp16_to_fp32(lb_rd16(src + 2 * i));
    const uint8_t *bits = src + 2 * N_EXTRA * gpr;
    uint8_t *c = q->codes + row * q->cols_padded;
    for (int64_t j = 0; j < q->cols_padded; j++) c[j] = (uint8_t)lb_get_bits(bits, (uint64_t)(2 * j), 2);
}

static void billm_encode_tail(const lb_qtensor *q, uint8_t *dst) { lb_col_mask_encode(q, dst); }
static void billm_decode_tail(lb_qtensor *q, const uint8_t *src) { lb_col_mask_decode(q, src); }

/* any number of salient columns; the bits past the last column must be 0 */
static lb_status billm_check_bytes(const lb_qspec *s, const lb_layout *l, const uint8_t *data) {
    (void)s;
    int64_t n;
    return lb_col_mask_count(l, data + (size_t)l->rows * l->row_bytes, &n);
}

static void billm_dequantize_row(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row,
                                 float *out) {
    (void)s;
    const uint8_t *src = data + (size_t)row * l->row_bytes, *mask = data + (size_t)l->rows * l->row_bytes;
    const uint8_t *bits = src + 2 * N_EXTRA * (size_t)l->groups_per_row;
    for (int64_t g = 0; g < l->groups_per_row; g++) {
        float e[N_EXTRA];
        for (int i = 0; i < N_EXTRA; i++) e[i] = lb_fp16_to_fp32(lb_rd16(src + 2 * (g * N_EXTRA + i)));
        int64_t end = (g + 1) * l->group_len < l->cols ? (g + 1) * l->group_len : l->cols;
        for (int64_t j = g * l->group_len; j < end; j++)
            out[j] = lb_billm_value(e, lb_col_mask_bit(mask, j), lb_get_bits(bits, (uint64_t)(2 * j), 2));
    }
}

const lb_format_family lb_billm_family = {
    .name = "billm",
    .names = "billm",
    .grid = LB_GRID_SALIENT_SPLIT,
    .option_slots = {"group size"},
    .match = billm_match,
    .parse_option = billm_parse_option,
    .format = billm_format,
    .validate = billm_validate,
    .shape = billm_shape,
    .row_bytes = billm_row_bytes,
    .tail_bytes = billm_tail_bytes,
    .levels = billm_levels,
    .level = billm_level,
    .value_at = billm_value_at,
    .qtensor_init = billm_qtensor_init,
    .store_scales = billm_store_scales,
    .encode_row = billm_encode_row,
    .decode_row = billm_decode_row,
    .encode_tail = billm_encode_tail,
    .decode_tail = billm_decode_tail,
    .check_bytes = billm_check_bytes,
    .dequantize_row = billm_dequantize_row,
};
