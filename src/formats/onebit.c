/* OneBit weights (Xu et al. 2024, "OneBit: Towards Extremely Low-bit Large
 * Language Models", arXiv:2402.11295; METHODS.md s11): W ~ diag(h) S diag(g),
 * S = sign matrix (one bit per weight), h one value per row (output), g one
 * value per column (input), both fp16:
 *
 *   w[r][c] = (bit ? h[r] : -h[r]) * g[c]
 *
 * Row layout: fp16 h[r], then cols_padded / 8 bytes of sign bits (cols
 * padded to 8; little-endian within bytes, 1 = +, padding bits stored as 1).
 * Tail (once per tensor, after the rows): g[0..cols) as fp16.
 *
 *   bytes = rows (2 + ceil(cols / 8)) + 2 cols
 *   bpw   = 1 + 16 (rows + cols) / (rows cols) + padding
 *         (4096 x 4096: 1.0078; stories260K's 64 x 64: 1.5)
 *
 * h and g may be negative or zero (a product with negative entries is still
 * a matrix of this form; least squares may produce one); they must be
 * finite: encoding refuses NaN / Inf, lb_qtensor_decode refuses a non-finite
 * g, and a model with a non-finite h or g fails its load-time check (every
 * decoded weight finite). The values are chosen by a method (rtn: SVID, the
 * rank-1 fit of |W|; the onebit method: least squares on calibration data;
 * src/quant/onebit.c); this file says what the bytes mean. */
#include "format_internal.h"

#include <math.h>
#include <string.h>

static int onebit_match(const char *head, lb_qspec *s) {
    if (strcmp(head, "onebit")) return 0;
    s->bits = 1;
    s->group = LB_GROUP_ROW; /* h: one "group" per row; g lives in the tail */
    return 2;                /* no options */
}

static void onebit_format(const lb_qspec *s, char *buf, size_t n) {
    (void)s;
    snprintf(buf, n, "onebit");
}

static lb_status onebit_validate(const lb_qspec *s) {
    if (s->bits != 1) return lb_fail(LB_ERR_INVALID, "onebit has 1 bit per weight, not %d", s->bits);
    if (s->group != LB_GROUP_ROW) return lb_fail(LB_ERR_INVALID, "onebit has one value per row (group %d)", s->group);
    return LB_OK;
}

static size_t onebit_row_bytes(const lb_qspec *s, const lb_layout *l) {
    (void)s;
    return 2 + (size_t)(l->cols_padded / 8);
}

static size_t onebit_tail_bytes(const lb_qspec *s, const lb_layout *l) {
    (void)s;
    return 2 * (size_t)l->cols;
}

static int onebit_levels(const lb_qspec *s) {
    (void)s;
    return 2;
}

static float onebit_level(const lb_qspec *s, int code) {
    (void)s;
    return code ? 1.0f : -1.0f;
}

/* The sign of w (0 and padding: +), the nearest code when h g > 0. */
static int onebit_nearest_code(const lb_qtensor *q, int64_t k, float w) {
    (void)q;
    (void)k;
    return w >= 0.0f;
}

static lb_status onebit_qtensor_init(lb_qtensor *q) {
    q->col_scale = lb_alloc((size_t)q->cols * sizeof(float));
    if (!q->col_scale) return LB_ERR_NOMEM;
    for (int64_t c = 0; c < q->cols; c++) q->col_scale[c] = 1.0f;
    return LB_OK;
}

static lb_status onebit_store_scales(lb_qtensor *q) {
    for (int64_t c = 0; c < q->cols; c++) {
        q->col_scale[c] = lb_round_fp16(q->col_scale[c]);
        if (!isfinite(q->col_scale[c]))
            return lb_fail(LB_ERR_NUMERIC, "column %lld: value not finite in fp16 (beyond +-65504?)", (long long)c);
    }
    return lb_store_scales_fp16(q);
}

static void onebit_encode_row(const lb_qtensor *q, int64_t row, uint8_t *dst) {
    lb_wr16(dst, lb_fp32_to_fp16(q->scale[row]));
    const uint8_t *c = q->codes + row * q->cols_padded;
    for (int64_t j = 0; j < q->cols_padded; j++) dst[2 + (j >> 3)] |= (uint8_t)(c[j] << (j & 7));
}

static void onebit_decode_row(lb_qtensor *q, int64_t row, const uint8_t *src) {
    q->scale[row] = lb_fp16_to_fp32(lb_rd16(src));
    q->offset[row] = 0.0f;
    uint8_t *c = q->codes + row * q->cols_padded;
    for (int64_t j = 0; j < q->cols_padded; j++) c[j] = (src[2 + (j >> 3)] >> (j & 7)) & 1;
}

static void onebit_encode_tail(const lb_qtensor *q, uint8_t *dst) {
    for (int64_t c = 0; c < q->cols; c++) lb_wr16(dst + 2 * c, lb_fp32_to_fp16(q->col_scale[c]));
}

static void onebit_decode_tail(lb_qtensor *q, const uint8_t *src) {
    for (int64_t c = 0; c < q->cols; c++) q->col_scale[c] = lb_fp16_to_fp32(lb_rd16(src + 2 * c));
}

static void onebit_dequantize_row(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row,
                                  float *out) {
    (void)s;
    const uint8_t *src = data + (size_t)row * l->row_bytes, *g = data + (size_t)l->rows * l->row_bytes;
    float h = lb_fp16_to_fp32(lb_rd16(src));
    const float value[2] = {-h, h}; /* indexed, not branched on: signs are random */
    for (int64_t j = 0; j < l->cols; j++) out[j] = value[(src[2 + (j >> 3)] >> (j & 7)) & 1] * lb_fp16_to_fp32(lb_rd16(g + 2 * j));
}

/* a non-finite g (the tail) is corrupt: refused at load, not only when a
 * weight is read (a non-finite h shows in the decoded weights, which the
 * model's load check refuses) */
static lb_status onebit_check_bytes(const lb_qspec *s, const lb_layout *l, const uint8_t *data) {
    (void)s;
    const uint8_t *g = data + (size_t)l->rows * l->row_bytes;
    for (int64_t c = 0; c < l->cols; c++) {
        float v = lb_fp16_to_fp32(lb_rd16(g + 2 * c));
        if (!isfinite(v))
            return lb_fail(LB_ERR_FORMAT, "the value of column %lld is %s", (long long)c, isnan(v) ? "NaN" : "infinite");
    }
    return LB_OK;
}

const lb_format_family lb_onebit_family = {
    .name = "onebit",
    .names = "onebit",
    .grid = LB_GRID_ONEBIT,
    .match = onebit_match,
    .format = onebit_format,
    .validate = onebit_validate,
    .row_bytes = onebit_row_bytes,
    .tail_bytes = onebit_tail_bytes,
    .levels = onebit_levels,
    .level = onebit_level,
    .nearest_code = onebit_nearest_code,
    .qtensor_init = onebit_qtensor_init,
    .store_scales = onebit_store_scales,
    .encode_row = onebit_encode_row,
    .decode_row = onebit_decode_row,
    .encode_tail = onebit_encode_tail,
    .decode_tail = onebit_decode_tail,
    .check_bytes = onebit_check_bytes,
    .dequantize_row = onebit_dequantize_row,
};
