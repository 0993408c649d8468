/* PTQ1.61's weights (Zhao et al. 2025, "PTQ1.61: Push the Real Limit of
 * Extremely Low-Bit Post-Training Quantization Methods for Large Language
 * Models", arXiv:2502.13179; METHODS.md s13): a one-dimensional structured
 * mask over the input channels, stored once per tensor; the salient
 * channels' weights are 4-bit integers with a per-row scale and minimum,
 * the others binary with a per-row pair (alpha, mu):
 *   salient column c:  d * q + m,               q = 0..15
 *   other column c:    mu + (q ? alpha : -alpha), q = 0..1
 * The number of salient columns is fixed by the spec and the width,
 * k = round(cols * p / 100) (option "s<p>", percent, default 20 as the
 * paper's --percent 0.2), so every row has the same size and the mask
 * holds exactly k ones (checked when bytes are loaded).
 *
 * Row layout (no padding weights): fp16 d, fp16 m, fp16 alpha, fp16 mu,
 * then one little-endian bit stream: the k salient codes, 4 bits each, in
 * column order, then the cols - k signs (1 = +alpha), in column order,
 * padded to a byte. Tail: the column mask, ceil(cols / 8) bytes (bit c of
 * the stream = column c, 1 = salient).
 *   bpw = (8 (8 + ceil((4k + cols - k) / 8)) rows + 8 ceil(cols / 8)) / (rows cols)
 * e.g. 4096 x 4096 at s20: k = 819, 828 bytes a row: 1.617 bpw; a 64-wide
 * row (k = 13) takes 21 bytes: 2.625 bpw, the four scales alone 1 bpw. */
#include "format_internal.h"

#include <math.h>
#include <string.h>

enum { P_ALPHA, P_MU, N_EXTRA }; /* extra[] of a row: the binary part's pair */
#define LEAD_BYTES 8

static int64_t salient_count(const lb_qspec *s, int64_t cols) { return (cols * s->salient_pct + 50) / 100; }

/* "ptq161" (20% salient), option s<p> (percent, 0..100) */
static int ptq161_match(const char *head, lb_qspec *s) {
    if (strcmp(head, "ptq161")) return 0;
    s->bits = 4;
    s->group = LB_GROUP_ROW;
    s->salient_pct = 20;
    return 1;
}

static int ptq161_parse_option(lb_qspec *s, const char *tok, unsigned seen) {
    (void)seen;
    int p;
    if (tok[0] != 's' || !lb_parse_small_int(tok + 1, &p)) return LB_OPTION_UNKNOWN;
    if (p > 100) {
        lb_fail(LB_ERR_INVALID, "salient share '%s' is a percent of the columns, 0..100", tok);
        return LB_OPTION_FAILED;
    }
    s->salient_pct = p;
    return 0;
}

static void ptq161_format(const lb_qspec *s, char *buf, size_t n) { snprintf(buf, n, "ptq161:s%d", s->salient_pct); }

static lb_status ptq161_validate(const lb_qspec *s) {
    if (s->bits != 4) return lb_fail(LB_ERR_INVALID, "ptq161 keeps salient channels at 4 bits, not %d", s->bits);
    if (s->group != LB_GROUP_ROW) return lb_fail(LB_ERR_INVALID, "ptq161 has one set of scales per row");
    if (s->salient_pct < 0 || s->salient_pct > 100)
        return lb_fail(LB_ERR_INVALID, "ptq161: salient share %d%% is not in 0..100", s->salient_pct);
    return LB_OK;
}

/* no padding weights: the row's bit stream is padded to a byte instead */
static void ptq161_shape(const lb_qspec *s, lb_layout *l) {
    (void)s;
    l->cols_padded = l->cols;
    l->group_len = l->cols;
    l->groups_per_row = 1;
    l->n_groups = l->rows;
}

static size_t ptq161_row_bytes(const lb_qspec *s, const lb_layout *l) {
    int64_t k = salient_count(s, l->cols);
    return LEAD_BYTES + (size_t)((4 * k + (l->cols - k) + 7) / 8);
}

static size_t ptq161_tail_bytes(const lb_qspec *s, const lb_layout *l) {
    (void)s;
    return lb_col_mask_bytes(l);
}

static int ptq161_levels(const lb_qspec *s) {
    (void)s;
    return 16;
}

/* a salient code at scale 1 and no offset; a binary column reads only 0/1 */
static float ptq161_level(const lb_qspec *s, int code) {
    (void)s;
    return (float)code;
}

static lb_status ptq161_qtensor_init(lb_qtensor *q) {
    q->n_salient = salient_count(&q->spec, q->cols);
    q->n_extra = N_EXTRA;
    q->col_mask = lb_calloc((size_t)q->cols_padded, 1);
    q->extra = lb_calloc((size_t)(q->n_groups * N_EXTRA), sizeof(float));
    if (!q->col_mask || !q->extra) return LB_ERR_NOMEM;
    for (int64_t c = 0; c < q->n_salient; c++) q->col_mask[c] = 1; /* a valid mask until a method picks one */
    return LB_OK;
}

static lb_status ptq161_store_scales(lb_qtensor *q) {
    for (int64_t r = 0; r < q->n_groups; r++) {
        float *e = q->extra + r * N_EXTRA;
        q->scale[r] = lb_round_fp16(q->scale[r]);
        q->offset[r] = lb_round_fp16(q->offset[r]);
        e[P_ALPHA] = lb_round_fp16(e[P_ALPHA]);
        e[P_MU] = lb_round_fp16(e[P_MU]);
        if (!isfinite(q->scale[r]) || !isfinite(q->offset[r]) || !isfinite(e[P_ALPHA]) || !isfinite(e[P_MU]))
            return lb_fail(LB_ERR_NUMERIC, "row %lld: a scale is not finite in fp16 (weights beyond +-65504?)",
                           (long long)r);
    }
    return LB_OK;
}

static float ptq161_value_at(const lb_qtensor *q, int64_t row, int64_t col) {
    int code = q->codes[row * q->cols_padded + col];
    if (q->col_mask[col]) return q->scale[row] * (float)code + q->offset[row];
    const float *e = q->extra + row * N_EXTRA;
    return e[P_MU] + (code & 1 ? e[P_ALPHA] : -e[P_ALPHA]);
}

static void ptq161_encode_row(const lb_qtensor *q, int64_t row, uint8_t *dst) {
    const float *e = q->extra + row * N_EXTRA;
    lb_wr16(dst, lb_fp32_to_fp16(q->scale[row]));
    lb_wr16(dst + 2, lb_fp32_to_fp16(q->offset[row]));
    lb_wr16(dst + 4, lb_fp32_to_fp16(e[P_ALPHA]));
    lb_wr16(dst + 6, lb_fp32_to_fp16(e[P_MU]));
    uint8_t *bits = dst + LEAD_BYTES;
    const uint8_t *c = q->codes + row * q->cols_padded;
    uint64_t salient = 0, sign = (uint64_t)(4 * q->n_salient);
    for (int64_t j = 0; j < q->cols; j++) {
        if (q->col_mask[j]) lb_put_bits(bits, 4 * salient++, c[j] & 15u, 4);
        else lb_put_bits(bits, sign++, c[j] & 1u, 1);
    }
}

static void ptq161_decode_row(lb_qtensor *q, int64_t row, const uint8_t *src) {
    float *e = q->extra + row * N_EXTRA;
    q->scale[row] = lb_fp16_to_fp32(lb_rd16(src));
    q->offset[row] = lb_fp16_to_fp32(lb_rd16(src + 2));
    e[P_ALPHA] = lb_fp16_to_fp32(lb_rd16(src + 4));
    e[P_MU] = lb_fp16_to_fp32(lb_rd16(src + 6));
    const uint8_t *bits = src + LEAD_BYTES;
    uint8_t *c = q->codes + row * q->cols_padded;
    uint64_t salient = 0, sign = (uint64_t)(4 * q->n_salient);
    for (int64_t j = 0; j < q->cols; j++)
        c[j] = (uint8_t)(q->col_mask[j] ? lb_get_bits(bits, 4 * salient++, 4) : lb_get_bits(bits, sign++, 1));
}

static void ptq161_encode_tail(const lb_qtensor *q, uint8_t *dst) { lb_col_mask_encode(q, dst); }
static void ptq161_decode_tail(lb_qtensor *q, const uint8_t *src) { lb_col_mask_decode(q, src); }

static lb_status ptq161_check_bytes(const lb_qspec *s, const lb_layout *l, const uint8_t *data) {
    int64_t n, k = salient_count(s, l->cols);
    lb_status st = lb_col_mask_count(l, data + (size_t)l->rows * l->row_bytes, &n);
    if (st != LB_OK) return st;
    if (n != k)
        return lb_fail(LB_ERR_FORMAT, "ptq161:s%d: the column mask marks %lld salient columns, a %lld-wide row holds %lld",
                       s->salient_pct, (long long)n, (long long)l->cols, (long long)k);
    return LB_OK;
}

/* The reference. On a mask that failed ptq161_check_bytes it still reads
 * only the row's bytes: a salient column past the k-th, or a binary column
 * past the (cols - k)-th, decodes to 0. */
static void ptq161_dequantize_row(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row,
                                  float *out) {
    const int64_t k = salient_count(s, l->cols);
    const uint8_t *src = data + (size_t)row * l->row_bytes, *mask = data + (size_t)l->rows * l->row_bytes;
    const float d = lb_fp16_to_fp32(lb_rd16(src)), m = lb_fp16_to_fp32(lb_rd16(src + 2));
    const float alpha = lb_fp16_to_fp32(lb_rd16(src + 4)), mu = lb_fp16_to_fp32(lb_rd16(src + 6));
    const float sign_value[2] = {mu - alpha, mu + alpha};
    const uint8_t *bits = src + LEAD_BYTES;
    int64_t salient = 0, binary = 0;
    for (int64_t j = 0; j < l->cols; j++) {
        if (lb_col_mask_bit(mask, j)) {
            out[j] = salient < k ? d * (float)lb_get_bits(bits, (uint64_t)(4 * salient), 4) + m : 0.0f;
            salient++;
        } else {
            out[j] = binary < l->cols - k ? sign_value[lb_get_bits(bits, (uint64_t)(4 * k + binary), 1)] : 0.0f;
            binary++;
        }
    }
}

const lb_format_family lb_ptq161_family = {
    .name = "ptq161",
    .names = "ptq161",
    .grid = LB_GRID_SALIENT,
    .option_slots = {"salient share"},
    .match = ptq161_match,
    .parse_option = ptq161_parse_option,
    .format = ptq161_format,
    .validate = ptq161_validate,
    .shape = ptq161_shape,
    .row_bytes = ptq161_row_bytes,
    .tail_bytes = ptq161_tail_bytes,
    .levels = ptq161_levels,
    .level = ptq161_level,
    .value_at = ptq161_value_at,
    .qtensor_init = ptq161_qtensor_init,
    .store_scales = ptq161_store_scales,
    .encode_row = ptq161_encode_row,
    .decode_row = ptq161_decode_row,
    .encode_tail = ptq161_encode_tail,
    .decode_tail = ptq161_decode_tail,
    .check_bytes = ptq161_check_bytes,
    .dequantize_row = ptq161_dequantize_row,
};
