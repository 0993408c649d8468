/* Float pass-through formats: f32, f16 (IEEE binary16), bf16. Rows are
 * plain little-endian arrays, identical to ggml's F32/F16/BF16; no padding,
 * no groups, no codes. Three rows of the format table sharing one file. */
#include "format_internal.h"

#include <math.h>
#include <string.h>


static int float_match(const lb_format_family *f, int bits, const char *head, lb_qspec *s) {
    if (strcmp(head, f->name)) return 0;
    s->bits = bits;
    return 2; /* takes no options */
}
static int f32_match(const char *head, lb_qspec *s) { return float_match(&lb_f32_family, 32, head, s); }
static int f16_match(const char *head, lb_qspec *s) { return float_match(&lb_f16_family, 16, head, s); }
static int bf16_match(const char *head, lb_qspec *s) { return float_match(&lb_bf16_family, 16, head, s); }

static void float_format(const lb_qspec *s, char *buf, size_t n) { snprintf(buf, n, "%s", s->family->name); }

static lb_status float_validate(const lb_qspec *s) {
    (void)s;
    return LB_OK;
}

/* one "group" per row, unpadded */
static void float_shape(const lb_qspec *s, lb_layout *l) {
    (void)s;
    l->cols_padded = l->cols;
    l->group_len = l->cols;
    l->groups_per_row = 1;
    l->n_groups = l->rows;
}

static size_t float_row_bytes(const lb_qspec *s, const lb_layout *l) {
    /* hand-built specs may leave bits 0: the family decides */
    return (size_t)l->cols * (s->family == &lb_f32_family ? 4 : 2);
}

static void f32_dequantize_row(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row, float *out) {
    (void)s;
    /* little-endian hosts only (checked at build) */
    memcpy(out, data + (size_t)row * l->row_bytes, (size_t)l->cols * 4);
}

static void f16_dequantize_row(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row, float *out) {
    (void)s;
    const uint8_t *src = data + (size_t)row * l->row_bytes;
    for (int64_t j = 0; j < l->cols; j++) out[j] = lb_fp16_to_fp32(lb_rd16(src + 2 * j));
}

static void bf16_dequantize_row(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row, float *out) {
    (void)s;
    const uint8_t *src = data + (size_t)row * l->row_bytes;
    for (int64_t j = 0; j < l->cols; j++) out[j] = lb_bf16_to_fp32(lb_rd16(src + 2 * j));
}

static lb_status check_finite(const float *w, int64_t n, int64_t cols) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(w[i]))
            return lb_fail(LB_ERR_NUMERIC, "weight %lld (row %lld, col %lld) is %s", (long long)i,
                           (long long)(i / cols), (long long)(i % cols), isnan(w[i]) ? "NaN" : "infinite");
    return LB_OK;
}

static lb_status f32_from_float(const lb_qspec *s, const float *w, int64_t rows, int64_t cols, uint8_t *out) {
    (void)s;
    lb_status st = check_finite(w, rows * cols, cols);
    if (st == LB_OK) memcpy(out, w, (size_t)(rows * cols) * 4);
    return st;
}

static lb_status f16_from_float(const lb_qspec *s, const float *w, int64_t rows, int64_t cols, uint8_t *out) {
    (void)s;
    int64_t n = rows * cols;
    lb_status st = check_finite(w, n, cols);
    for (int64_t i = 0; i < n && st == LB_OK; i++) {
        uint16_t h = lb_fp32_to_fp16(w[i]);
        if ((h & 0x7c00u) == 0x7c00u)
            return lb_fail(LB_ERR_NUMERIC, "weight %g (row %lld) overflows f16", (double)w[i], (long long)(i / cols));
        lb_wr16(out + 2 * i, h);
    }
    return st;
}

static lb_status bf16_from_float(const lb_qspec *s, const float *w, int64_t rows, int64_t cols, uint8_t *out) {
    (void)s;
    int64_t n = rows * cols;
    lb_status st = check_finite(w, n, cols);
    for (int64_t i = 0; i < n && st == LB_OK; i++) lb_wr16(out + 2 * i, lb_fp32_to_bf16(w[i]));
    return st;
}

static int f32_ggml_type(const lb_qspec *s, int64_t cols) {
    (void)s, (void)cols;
    return LB_GGML_F32;
}
static int f16_ggml_type(const lb_qspec *s, int64_t cols) {
    (void)s, (void)cols;
    return LB_GGML_F16;
}
static int bf16_ggml_type(const lb_qspec *s, int64_t cols) {
    (void)s, (void)cols;
    return LB_GGML_BF16;
}
static int f32_from_ggml(int type, lb_qspec *s) { return type == LB_GGML_F32 && f32_match("f32", s); }
static int f16_from_ggml(int type, lb_qspec *s) { return type == LB_GGML_F16 && f16_match("f16", s); }
static int bf16_from_ggml(int type, lb_qspec *s) { return type == LB_GGML_BF16 && bf16_match("bf16", s); }

#define FLOAT_FAMILY(id)                                                                                     \
    const lb_format_family lb_##id##_family = {                                                              \
        .name = #id,                                                                                         \
        .names = #id,                                                                                        \
        .is_float = 1,                                                                                       \
        .grid = LB_GRID_NONE,                                                                                \
        .match = id##_match,                                                                                 \
        .format = float_format,                                                                              \
        .validate = float_validate,                                                                          \
        .shape = float_shape,                                                                                \
        .row_bytes = float_row_bytes,                                                                        \
        .dequantize_row = id##_dequantize_row,                                                               \
        .ggml_type = id##_ggml_type,                                                                         \
        .from_ggml = id##_from_ggml,                                                                         \
        .from_float = id##_from_float,                                                                       \
    };
FLOAT_FAMILY(f32)
FLOAT_FAMILY(f16)
FLOAT_FAMILY(bf16)
