/* llama.cpp's IQ4_NL, written and read: 4-bit codes into a fixed
 * non-uniform table of 16 integers, one fp16 scale per 32 weights,
 *   w = d K[q],  K = -127 -104 -83 -65 -49 -35 -22 -10 1 13 25 38 53 69 89 113
 * (ggml-common.h's kvalues_iq4nl, ggml PR #5590: denser near zero, where
 * weights are). The block is ggml's block_iq4_nl byte for byte: d, then
 * qs[16] holding weight j in the low nibble of byte j and weight j + 16 in
 * its high nibble; so the file runs in llama.cpp under type id 20.
 *
 * The levels are the integers themselves, so the group scale is d and the
 * value d * (float)K[q] is ggml's float bit for bit. The table is lopsided
 * (-127 against +113): an absmax grid (rtn, gptq) puts the group's signed
 * extreme on -127, with a negative d when the extreme is positive, as
 * ggml's quantize_row_iq4_nl_impl starts. A row that is not whole 32-blocks
 * is padded (lowbit reads it; llama.cpp cannot). */
#include "format_internal.h"

#include <math.h>
#include <string.h>

#define QK 32
#define kvalues lb_iq4_values

const int8_t lb_iq4_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

static int iq4_match(const char *head, lb_qspec *s) {
    if (strcmp(head, "iq4_nl")) return 0;
    s->bits = 4;
    s->group = QK;
    s->ggml_type = 20;
    return 2; /* no options */
}

static int iq4_parse_option(lb_qspec *s, const char *tok, unsigned seen) {
    (void)s, (void)tok, (void)seen;
    return LB_OPTION_UNKNOWN;
}

static void iq4_format(const lb_qspec *s, char *buf, size_t n) {
    (void)s;
    snprintf(buf, n, "iq4_nl");
}

static lb_status iq4_validate(const lb_qspec *s) {
    if (s->bits != 4 || s->group != QK || s->ggml_type != 20)
        return lb_fail(LB_ERR_INVALID, "iq4_nl is 4 bits in blocks of 32 (ggml type 20)");
    return LB_OK;
}

static size_t iq4_row_bytes(const lb_qspec *s, const lb_layout *l) {
    (void)s;
    return (size_t)l->groups_per_row * (2 + QK / 2);
}

static int iq4_levels(const lb_qspec *s) {
    (void)s;
    return 16;
}

static float iq4_level(const lb_qspec *s, int code) {
    (void)s;
    return (float)kvalues[code & 15];
}

static void iq4_encode_row(const lb_qtensor *q, int64_t row, uint8_t *dst) {
    for (int64_t g = 0; g < q->groups_per_row; g++) {
        uint8_t *blk = dst + (size_t)g * (2 + QK / 2);
        const uint8_t *c = q->codes + row * q->cols_padded + g * QK;
        lb_wr16(blk, lb_fp32_to_fp16(q->scale[row * q->groups_per_row + g]));
        for (int j = 0; j < QK / 2; j++) blk[2 + j] = (uint8_t)(c[j] | c[j + QK / 2] << 4);
    }
}

static void iq4_decode_row(lb_qtensor *q, int64_t row, const uint8_t *src) {
    for (int64_t g = 0; g < q->groups_per_row; g++) {
        const uint8_t *blk = src + (size_t)g * (2 + QK / 2);
        uint8_t *c = q->codes + row * q->cols_padded + g * QK;
        q->scale[row * q->groups_per_row + g] = lb_fp16_to_fp32(lb_rd16(blk));
        q->offset[row * q->groups_per_row + g] = 0.0f;
        for (int j = 0; j < QK / 2; j++) {
            c[j] = blk[2 + j] & 15;
            c[j + QK / 2] = blk[2 + j] >> 4;
        }
    }
}

/* ggml's dequantize_row_iq4_nl: d * (float)K[q] */
static void iq4_dequantize_row(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row, float *out) {
    (void)s;
    const uint8_t *src = data + (size_t)row * l->row_bytes;
    for (int64_t g = 0; g < l->groups_per_row; g++) {
        const uint8_t *blk = src + (size_t)g * (2 + QK / 2);
        float d = lb_fp16_to_fp32(lb_rd16(blk)), y[QK];
        for (int j = 0; j < QK / 2; j++) {
            y[j] = d * (float)kvalues[blk[2 + j] & 15];
            y[j + QK / 2] = d * (float)kvalues[blk[2 + j] >> 4];
        }
        int64_t c0 = g * QK, n = l->cols - c0 < QK ? l->cols - c0 : QK;
        memcpy(out + c0, y, (size_t)n * sizeof(float));
    }
}

static int iq4_ggml_type(const lb_qspec *s, int64_t cols) {
    (void)s;
    return cols % QK == 0 ? 20 : -1;
}

static int iq4_from_ggml(int type, lb_qspec *out) { return type == 20 && iq4_match("iq4_nl", out) == 2; }

const lb_format_family lb_iq4_family = {
    .name = "iq4",
    .names = "iq4_nl",
    .grid = LB_GRID_ABSMAX,
    .match = iq4_match,
    .parse_option = iq4_parse_option,
    .format = iq4_format,
    .validate = iq4_validate,
    .row_bytes = iq4_row_bytes,
    .levels = iq4_levels,
    .level = iq4_level,
    .encode_row = iq4_encode_row,
    .decode_row = iq4_decode_row,
    .dequantize_row = iq4_dequantize_row,
    .ggml_type = iq4_ggml_type,
    .from_ggml = iq4_from_ggml,
};
