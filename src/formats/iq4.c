/* llama.cpp's IQ4_NL and IQ4_XS, written and read: 4-bit codes into a
 * fixed non-uniform table of 16 integers,
 *   K = -127 -104 -83 -65 -49 -35 -22 -10 1 13 25 38 53 69 89 113
 * (ggml-common.h's kvalues_iq4nl, ggml PR #5590: denser near zero, where
 * weights are), under a scale per 32 weights:
 *   iq4_nl (ggml 20, 18 B per 32, 4.5 bpw): fp16 d, then qs[16] (weight j in
 *     the low nibble of byte j, weight j + 16 in its high nibble): w = d K[q]
 *   iq4_xs (ggml 23, 136 B per 256, 4.25 bpw): fp16 d, scales_h (u16: the
 *     top 2 bits of group ib's 6-bit scale at bits 2 ib), scales_l[4] (its
 *     low 4 bits, the nibble ib % 2 of byte ib / 2), then eight 16-byte
 *     blocks as iq4_nl's: w = (d (ls - 32)) K[q]
 * The blocks are ggml's byte for byte, so the files run in llama.cpp.
 *
 * The levels are the integers themselves, so the group scale is d (d (ls -
 * 32)) and the value is ggml's float bit for bit. The table is lopsided
 * (-127 against +113): an absmax grid (rtn, gptq) puts the group's signed
 * extreme on -127, with a negative scale when the extreme is positive, as
 * ggml's quantize_row_iq4_nl_impl starts. iq4_xs is the hierarchical-scale
 * math of the K-quants (uniform_hscale.c, super-groups of 256 columns, 6-bit
 * signed group integers; rtn refits each group's integer against the
 * codebook's error). A row that is not whole blocks is padded (lowbit reads
 * it; llama.cpp cannot): a plan falls back from iq4_xs to iq4_nl there, as
 * llama-quantize does. */
#include "format_internal.h"

#include <math.h>
#include <string.h>

#define QK 32
#define QK_K 256
#define kvalues lb_iq4_values
#define GGML_IQ4_NL 20
#define GGML_IQ4_XS 23

const int8_t lb_iq4_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

static int is_xs(const lb_qspec *s) { return s->ggml_type == GGML_IQ4_XS; }

static void set_type(lb_qspec *s, int xs) {
    s->bits = 4;
    s->group = QK;
    s->ggml_type = xs ? GGML_IQ4_XS : GGML_IQ4_NL;
    s->zero = LB_ZERO_SYM;
    s->scale_bits = xs ? 6 : 0;
    s->super_rows = xs ? 1 : 0;
    s->super_cols = xs ? QK_K : 0;
}

static int iq4_match(const char *head, lb_qspec *s) {
    if (strcmp(head, "iq4_nl") && strcmp(head, "iq4_xs")) return 0;
    set_type(s, !strcmp(head, "iq4_xs"));
    return 2; /* no options */
}

static void iq4_format(const lb_qspec *s, char *buf, size_t n) { snprintf(buf, n, is_xs(s) ? "iq4_xs" : "iq4_nl"); }

static lb_status iq4_validate(const lb_qspec *s) {
    lb_qspec want = {.family = s->family};
    set_type(&want, is_xs(s));
    if ((s->ggml_type != GGML_IQ4_NL && s->ggml_type != GGML_IQ4_XS) || s->bits != 4 || s->group != QK ||
        s->zero != want.zero || s->scale_bits != want.scale_bits || s->super_rows != want.super_rows ||
        s->super_cols != want.super_cols)
        return lb_fail(LB_ERR_INVALID, "iq4_nl / iq4_xs: 4-bit codes in groups of 32 under the type's scales (ggml "
                                       "types 20 and 23), not ggml type %d", s->ggml_type);
    return LB_OK;
}

/* iq4_xs: groups of 32 over rows padded to whole 256-weight blocks */
static void iq4_shape(const lb_qspec *s, lb_layout *l) {
    l->cols_padded = lb_round_up(l->cols, is_xs(s) ? QK_K : QK);
    l->group_len = QK;
    l->groups_per_row = l->cols_padded / QK;
    l->n_groups = l->rows * l->groups_per_row;
}

static size_t iq4_row_bytes(const lb_qspec *s, const lb_layout *l) {
    return is_xs(s) ? (size_t)(l->cols_padded / QK_K) * 136 : (size_t)l->groups_per_row * (2 + QK / 2);
}

static lb_status iq4_qtensor_init(lb_qtensor *q) { return is_xs(&q->spec) ? lb_hscale_qtensor_init(q) : LB_OK; }

static lb_status iq4_store_scales(lb_qtensor *q) {
    return is_xs(&q->spec) ? lb_hscale_store_scales(q) : lb_store_scales_fp16(q);
}

static int iq4_levels(const lb_qspec *s) {
    (void)s;
    return 16;
}

static float iq4_level(const lb_qspec *s, int code) {
    (void)s;
    return (float)kvalues[code & 15];
}

/* A group's 32 codes are 16 bytes, weight j in the low nibble of byte j and
 * weight j + 16 in its high nibble: the uniform family's 4-bit packing
 * (lb_uniform_pack_codes / lb_uniform_unpack_codes; the spec has bits 4). */

/* a group's values, as ggml computes them: d * (float)K[q] */
static void group_values(const uint8_t *qs, float d, float *y) {
    for (int j = 0; j < QK / 2; j++) {
        y[j] = d * (float)kvalues[qs[j] & 15];
        y[j + QK / 2] = d * (float)kvalues[qs[j] >> 4];
    }
}

/* group ib's 6-bit scale (biased by 32) of an iq4_xs block */
static int xs_scale(const uint8_t *blk, int ib) {
    return (int)(((blk[4 + ib / 2] >> 4 * (ib % 2)) & 15) | ((lb_rd16(blk + 2) >> 2 * ib) & 3) << 4);
}

static void iq4_encode_row(const lb_qtensor *q, int64_t row, uint8_t *dst) {
    if (is_xs(&q->spec)) {
        for (int64_t j = 0; j < q->cols_padded / QK_K; j++) {
            uint8_t *blk = dst + (size_t)j * 136;
            int64_t k0 = row * q->groups_per_row + j * (QK_K / QK);
            unsigned h = 0;
            memset(blk, 0, 136);
            lb_wr16(blk, lb_fp32_to_fp16(q->super_scale[lb_qtensor_super(q, k0)]));
            for (int ib = 0; ib < QK_K / QK; ib++) {
                unsigned ls = (unsigned)(lb_hscale_int(&q->spec, q->scale_code[k0 + ib]) + 32);
                blk[4 + ib / 2] |= (uint8_t)((ls & 15) << 4 * (ib % 2));
                h |= (ls >> 4) << 2 * ib;
                lb_uniform_pack_codes(&q->spec, q->codes + row * q->cols_padded + j * QK_K + ib * QK, QK,
                                      blk + 8 + 16 * ib);
            }
            lb_wr16(blk + 2, (uint16_t)h);
        }
        return;
    }
    for (int64_t g = 0; g < q->groups_per_row; g++) {
        uint8_t *blk = dst + (size_t)g * (2 + QK / 2);
        const uint8_t *c = q->codes + row * q->cols_padded + g * QK;
        lb_wr16(blk, lb_fp32_to_fp16(q->scale[row * q->groups_per_row + g]));
        lb_uniform_pack_codes(&q->spec, c, QK, blk + 2);
    }
}

static void iq4_decode_row(lb_qtensor *q, int64_t row, const uint8_t *src) {
    if (is_xs(&q->spec)) {
        for (int64_t j = 0; j < q->cols_padded / QK_K; j++) {
            const uint8_t *blk = src + (size_t)j * 136;
            int64_t k0 = row * q->groups_per_row + j * (QK_K / QK);
            q->super_scale[lb_qtensor_super(q, k0)] = lb_fp16_to_fp32(lb_rd16(blk));
            for (int ib = 0; ib < QK_K / QK; ib++) {
                lb_hscale_set_group(q, k0 + ib, xs_scale(blk, ib) - 32, 0);
                lb_uniform_unpack_codes(&q->spec, blk + 8 + 16 * ib, QK, 0, QK,
                                        q->codes + row * q->cols_padded + j * QK_K + ib * QK);
            }
        }
        return;
    }
    for (int64_t g = 0; g < q->groups_per_row; g++) {
        const uint8_t *blk = src + (size_t)g * (2 + QK / 2);
        uint8_t *c = q->codes + row * q->cols_padded + g * QK;
        q->scale[row * q->groups_per_row + g] = lb_fp16_to_fp32(lb_rd16(blk));
        q->offset[row * q->groups_per_row + g] = 0.0f;
        lb_uniform_unpack_codes(&q->spec, blk + 2, QK, 0, QK, c);
    }
}

/* ggml's dequantize_row_iq4_nl: d * (float)K[q]; _xs: (d * (ls - 32)) * (float)K[q] */
static void iq4_dequantize_row(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row, float *out) {
    const uint8_t *src = data + (size_t)row * l->row_bytes;
    if (is_xs(s)) {
        for (int64_t j = 0; j < l->cols_padded / QK_K; j++) {
            const uint8_t *blk = src + (size_t)j * 136;
            float d = lb_fp16_to_fp32(lb_rd16(blk)), y[QK_K];
            for (int ib = 0; ib < QK_K / QK; ib++)
                group_values(blk + 8 + 16 * ib, d * (float)(xs_scale(blk, ib) - 32), y + ib * QK);
            int64_t c0 = j * QK_K, n = l->cols - c0 < QK_K ? l->cols - c0 : QK_K;
            memcpy(out + c0, y, (size_t)n * sizeof(float));
        }
        return;
    }
    for (int64_t g = 0; g < l->groups_per_row; g++) {
        const uint8_t *blk = src + (size_t)g * (2 + QK / 2);
        float y[QK];
        group_values(blk + 2, lb_fp16_to_fp32(lb_rd16(blk)), y);
        int64_t c0 = g * QK, n = l->cols - c0 < QK ? l->cols - c0 : QK;
        memcpy(out + c0, y, (size_t)n * sizeof(float));
    }
}

static int iq4_ggml_type(const lb_qspec *s, int64_t cols) { return cols % (is_xs(s) ? QK_K : QK) == 0 ? s->ggml_type : -1; }

static int iq4_from_ggml(int type, lb_qspec *out) {
    if (type != GGML_IQ4_NL && type != GGML_IQ4_XS) return 0;
    set_type(out, type == GGML_IQ4_XS);
    return 1;
}

/* llama-quantize's rule for rows that are not whole blocks: iq4_xs -> iq4_nl (f16 when 32 does not divide) */
static int iq4_ggml_fallback(const lb_qspec *s, int64_t cols, lb_qspec *out) {
    if (cols % (is_xs(s) ? QK_K : QK) == 0) return 0;
    return lb_qspec_parse(cols % QK ? "f16" : "iq4_nl", out) == LB_OK;
}

const lb_format_family lb_iq4_family = {
    .name = "iq4",
    .names = "iq4_nl, iq4_xs",
    .grid = LB_GRID_ABSMAX,
    .match = iq4_match,
    .format = iq4_format,
    .validate = iq4_validate,
    .shape = iq4_shape,
    .row_bytes = iq4_row_bytes,
    .levels = iq4_levels,
    .level = iq4_level,
    .encode_row = iq4_encode_row,
    .decode_row = iq4_decode_row,
    .qtensor_init = iq4_qtensor_init,
    .store_scales = iq4_store_scales,
    .dequantize_row = iq4_dequantize_row,
    .ggml_type = iq4_ggml_type,
    .from_ggml = iq4_from_ggml,
    .ggml_fallback = iq4_ggml_fallback,
};
