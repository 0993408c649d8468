/* Non-uniform scalar codes with a lookup table per group (SqueezeLLM,
 * Kim et al. 2023; METHODS.md s7): every group stores its own codebook of
 * 2^b fp16 levels, and each weight a b-bit index into it:
 *   value = lut[group][code]
 * Nothing ties the levels to a scale or a grid: a method places them where
 * the group's weights are (src/quant/kmeans.c: k-means, weighted by each
 * weight's sensitivity for squeezellm, unweighted for rtn).
 *
 * Levels are finite and non-decreasing within a group (equal neighbours are
 * allowed: a group with fewer distinct weights than levels repeats one).
 * Bytes that break this (a NaN or Inf level, a level below the one before
 * it) are corrupt: lb_tensor_resolve rejects them (check_bytes below), so
 * no model holding them loads, and lb_qtensor_decode refuses them too.
 * Sorted levels make the nearest code a well-defined choice (ties go to the
 * lower code) and let a kernel binary-search or bucket them.
 *
 * Spec text: "lut<b>" (b = 1..4) with one group option: "row" (the
 * default, one codebook per row), "g<G>" (G = 16..256, a power of two) or
 * "tensor" (one codebook for the whole tensor). Canonical: "lut3:row",
 * "lut4:g64", "lut2:tensor".
 *
 * Row layout, per group: [2^b fp16 levels, ascending][G codes, a b-bit
 * little-endian bit stream (G b / 8 bytes)]; whole-row groups have
 * G = the row padded to 8 weights. With one codebook per tensor the rows
 * hold only codes and the 2^b fp16 levels are the tensor tail.
 * bpw = b + 16 2^b / G (plus row padding; tensor: 16 2^b / (rows cols)).
 * Not a ggml type: stored raw (I8 + lowbit.* keys). */
#include "format_internal.h"

#include <math.h>
#include <string.h>

enum { SLOT_GROUP };

static int lut_match(const char *head, lb_qspec *s) {
    if (strncmp(head, "lut", 3)) return 0;
    int b;
    if (!lb_parse_small_int(head + 3, &b) || b < 1 || b > 4) {
        lb_fail(LB_ERR_INVALID, "'%s': lut<b> takes b = 1..4 bits per weight", head);
        return LB_OPTION_FAILED;
    }
    s->bits = b;
    s->group = LB_GROUP_ROW;
    return 1;
}

static int lut_parse_option(lb_qspec *s, const char *tok, unsigned seen) {
    (void)seen;
    return lb_parse_group_option(s, tok, 1);
}

static void lut_format(const lb_qspec *s, char *buf, size_t n) {
    char g[16];
    lb_group_text(s, g, sizeof g);
    snprintf(buf, n, "lut%d:%s", s->bits, g);
}

static lb_status lut_validate(const lb_qspec *s) {
    if (s->bits < 1 || s->bits > 4) return lb_fail(LB_ERR_INVALID, "lut codes are 1..4 bits, not %d", s->bits);
    return lb_validate_group(s, 1);
}

static int n_levels(const lb_qspec *s) { return 1 << s->bits; }
static size_t table_bytes(const lb_qspec *s) { return lb_lut_table_bytes(s); }
static size_t codes_bytes(const lb_qspec *s, int64_t n) { return (size_t)(n * s->bits / 8); }
/* bytes of one group's block (row and g<G>; tensor rows are codes only) */
static size_t block_bytes(const lb_qspec *s, const lb_layout *l) { return lb_lut_block_bytes(s, l); }

static size_t lut_row_bytes(const lb_qspec *s, const lb_layout *l) {
    if (!l->groups_per_row) return codes_bytes(s, l->cols_padded);
    return (size_t)l->groups_per_row * block_bytes(s, l);
}

static size_t lut_tail_bytes(const lb_qspec *s, const lb_layout *l) {
    return l->groups_per_row ? 0 : table_bytes(s);
}

static int lut_levels(const lb_qspec *s) { return n_levels(s); }

static float lut_code_value(const lb_qtensor *q, int64_t k, int code) { return q->lut[k * n_levels(&q->spec) + code]; }

/* the nearest level; on a tie the lower code (the levels ascend, so the
 * lower value) */
static int lut_nearest_code(const lb_qtensor *q, int64_t k, float w) {
    int n = n_levels(&q->spec), best = 0;
    const float *v = q->lut + k * n;
    float best_err = fabsf(w - v[0]);
    for (int c = 1; c < n; c++) {
        float e = fabsf(w - v[c]);
        if (e < best_err) {
            best_err = e;
            best = c;
        }
    }
    return best;
}

static lb_status lut_qtensor_init(lb_qtensor *q) {
    q->lut = lb_calloc((size_t)q->n_groups * (size_t)n_levels(&q->spec), sizeof(float));
    return q->lut ? LB_OK : LB_ERR_NOMEM;
}

/* The levels as stored: fp16, finite, non-decreasing. scale and offset are
 * unused (kept 0, as decode leaves them). */
static lb_status lut_store_scales(lb_qtensor *q) {
    int n = n_levels(&q->spec);
    for (int64_t k = 0; k < q->n_groups; k++) {
        q->scale[k] = q->offset[k] = 0.0f;
        float *v = q->lut + k * n;
        for (int c = 0; c < n; c++) {
            v[c] = lb_round_fp16(v[c]);
            if (!isfinite(v[c]))
                return lb_fail(LB_ERR_NUMERIC, "group %lld: level %d is not finite in fp16 (weights beyond +-65504?)",
                               (long long)k, c);
            if (c && v[c] < v[c - 1])
                return lb_fail(LB_ERR_INVALID, "group %lld: level %d (%g) is below level %d (%g); levels ascend",
                               (long long)k, c, (double)v[c], c - 1, (double)v[c - 1]);
        }
    }
    return LB_OK;
}

static void put_table(const float *v, int n, uint8_t *dst) {
    for (int c = 0; c < n; c++) lb_wr16(dst + 2 * c, lb_fp32_to_fp16(v[c]));
}
static void get_table(const uint8_t *src, int n, float *v) {
    for (int c = 0; c < n; c++) v[c] = lb_fp16_to_fp32(lb_rd16(src + 2 * c));
}

static void lut_encode_row(const lb_qtensor *q, int64_t row, uint8_t *dst) {
    const lb_qspec *s = &q->spec;
    int b = s->bits, n = n_levels(s);
    const uint8_t *c = q->codes + row * q->cols_padded;
    if (!q->groups_per_row) {
        for (int64_t j = 0; j < q->cols_padded; j++) lb_put_bits(dst, (uint64_t)(j * b), c[j], b);
        return;
    }
    size_t bb = table_bytes(s) + codes_bytes(s, q->group_len);
    for (int64_t g = 0; g < q->groups_per_row; g++) {
        uint8_t *blk = dst + (size_t)g * bb;
        put_table(q->lut + (row * q->groups_per_row + g) * n, n, blk);
        for (int64_t j = 0; j < q->group_len; j++)
            lb_put_bits(blk + table_bytes(s), (uint64_t)(j * b), c[g * q->group_len + j], b);
    }
}

static void lut_decode_row(lb_qtensor *q, int64_t row, const uint8_t *src) {
    const lb_qspec *s = &q->spec;
    int b = s->bits, n = n_levels(s);
    uint8_t *c = q->codes + row * q->cols_padded;
    if (!q->groups_per_row) {
        for (int64_t j = 0; j < q->cols_padded; j++) c[j] = (uint8_t)lb_get_bits(src, (uint64_t)(j * b), b);
        return;
    }
    size_t bb = table_bytes(s) + codes_bytes(s, q->group_len);
    for (int64_t g = 0; g < q->groups_per_row; g++) {
        const uint8_t *blk = src + (size_t)g * bb;
        int64_t k = row * q->groups_per_row + g;
        get_table(blk, n, q->lut + k * n);
        q->scale[k] = q->offset[k] = 0.0f;
        for (int64_t j = 0; j < q->group_len; j++)
            c[g * q->group_len + j] = (uint8_t)lb_get_bits(blk + table_bytes(s), (uint64_t)(j * b), b);
    }
}

static void lut_encode_tail(const lb_qtensor *q, uint8_t *dst) {
    if (!q->groups_per_row) put_table(q->lut, n_levels(&q->spec), dst);
}

static void lut_decode_tail(lb_qtensor *q, const uint8_t *src) {
    if (q->groups_per_row) return;
    get_table(src, n_levels(&q->spec), q->lut);
    q->scale[0] = q->offset[0] = 0.0f;
}

/* One stored table: finite, non-decreasing. */
static lb_status check_table(const uint8_t *src, int n, int64_t row, int64_t g) {
    float prev = -INFINITY;
    for (int c = 0; c < n; c++) {
        float v = lb_fp16_to_fp32(lb_rd16(src + 2 * c));
        if (!isfinite(v) || v < prev) {
            char where[64];
            if (row < 0) snprintf(where, sizeof where, "the tensor's codebook");
            else snprintf(where, sizeof where, "row %lld, group %lld", (long long)row, (long long)g);
            return lb_fail(LB_ERR_FORMAT, "lut levels must be finite and ascending: %s, level %d is %g%s", where, c,
                           (double)v, isfinite(v) ? " (below the level before it)" : "");
        }
        prev = v;
    }
    return LB_OK;
}

static lb_status lut_check_bytes(const lb_qspec *s, const lb_layout *l, const uint8_t *data) {
    int n = n_levels(s);
    if (!l->groups_per_row) return check_table(data + (size_t)l->rows * l->row_bytes, n, -1, 0);
    size_t bb = block_bytes(s, l);
    for (int64_t r = 0; r < l->rows; r++)
        for (int64_t g = 0; g < l->groups_per_row; g++) {
            lb_status st = check_table(data + (size_t)r * l->row_bytes + (size_t)g * bb, n, r, g);
            if (st != LB_OK) return st;
        }
    return LB_OK;
}

/* The meaning of the bytes: each code looks up its group's table. */
static void lut_dequantize_row(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row, float *out) {
    const uint8_t *src = data + (size_t)row * l->row_bytes;
    int b = s->bits, n = n_levels(s);
    float v[16];
    if (!l->groups_per_row) {
        get_table(data + (size_t)l->rows * l->row_bytes, n, v);
        for (int64_t j = 0; j < l->cols; j++) out[j] = v[lb_get_bits(src, (uint64_t)(j * b), b)];
        return;
    }
    size_t bb = block_bytes(s, l);
    for (int64_t g = 0; g < l->groups_per_row; g++) {
        const uint8_t *blk = src + (size_t)g * bb;
        get_table(blk, n, v);
        int64_t c0 = g * l->group_len, cnt = l->cols - c0 < l->group_len ? l->cols - c0 : l->group_len;
        for (int64_t j = 0; j < cnt; j++) out[c0 + j] = v[lb_get_bits(blk + table_bytes(s), (uint64_t)(j * b), b)];
    }
}

const lb_format_family lb_lut_family = {
    .name = "lut",
    .names = "lut1..lut4",
    .grid = LB_GRID_LUT,
    .option_slots = {"group size"},
    .match = lut_match,
    .parse_option = lut_parse_option,
    .format = lut_format,
    .validate = lut_validate,
    .row_bytes = lut_row_bytes,
    .tail_bytes = lut_tail_bytes,
    .levels = lut_levels,
    .code_value = lut_code_value,
    .nearest_code = lut_nearest_code,
    .qtensor_init = lut_qtensor_init,
    .store_scales = lut_store_scales,
    .encode_row = lut_encode_row,
    .decode_row = lut_decode_row,
    .encode_tail = lut_encode_tail,
    .decode_tail = lut_decode_tail,
    .check_bytes = lut_check_bytes,
    .dequantize_row = lut_dequantize_row,
};
