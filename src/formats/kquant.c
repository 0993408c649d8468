/* llama.cpp's K-quants, Q2_K..Q6_K, written and read (issue 10 item 4): the
 * blocks are ggml-common.h's block_q*_K byte for byte, so llama.cpp runs
 * lowbit's files, and the values in them are chosen by lowbit's methods.
 *
 * A K-quant is a uniform grid with hierarchical scales (uniform_hscale.c's
 * math, docs/methods/hscale.md) whose super-group is one 256-weight block of
 * a row (spec.super_cols = 256, super_rows = 1): each 16- or 32-weight
 * group's scale (and min) is a k-bit integer times the block's fp16 d (and
 * dmin). So lb_qtensor holds exactly what uniform s<k> holds (codes,
 * scale_code, min_code, super_scale = d, super_min = -dmin), RTN, GPTQ and
 * the methods built on them fit it unchanged, and only the byte layout is
 * this file's:
 *
 *   spec  bits group scales  block (fp16 unless said; w the weight, q its code)
 *   q2_k  2    16    4-bit   scales[16] (scale | min << 4), qs[64], d, dmin      84 B
 *                            w = d sc q - dmin m
 *   q3_k  3    16    6-bit   hmask[32] (third bits), qs[64] (two low bits),      110 B
 *                    signed  scales[12] (sixteen 6-bit, biased by 32), d
 *                            w = d sc (q - 4)
 *   q4_k  4    32    6-bit   d, dmin, scales[12] (eight 6-bit scales, eight     144 B
 *                            6-bit mins), qs[128]: w = d sc q - dmin m
 *   q5_k  5    32    6-bit   as q4_k plus qh[32] (fifth bits)                    176 B
 *   q6_k  6    16    int8    ql[128] (low 4 bits), qh[64] (high 2), scales[16],  210 B
 *                            d: w = d sc (q - 32)
 * (bpw: 2.625, 3.4375, 4.5, 5.5, 6.5625.) Which bits of which byte belong to
 * which weight follows ggml's dequantize_row_q*_K, and so does the float
 * arithmetic, so the values are ggml's bit for bit (docs/RESULTS.md,
 * "Issue 10"). A row that is not whole blocks is padded to them, which
 * llama.cpp cannot read: lb_format_ggml_type says -1 and the GGUF writer
 * stores the tensor raw (docs/FORMATS.md says which fallback the CLI picks). */
#include "format_internal.h"

#include <math.h>
#include <string.h>

#define QK_K 256

static const struct {
    const char *name;
    int ggml, bits, group, scale_bits, bytes;
    lb_zero zero;
} types[] = {
    {"q2_k", 10, 2, 16, 4, 84, LB_ZERO_F16},  {"q3_k", 11, 3, 16, 6, 110, LB_ZERO_SYM},
    {"q4_k", 12, 4, 32, 6, 144, LB_ZERO_F16}, {"q5_k", 13, 5, 32, 6, 176, LB_ZERO_F16},
    {"q6_k", 14, 6, 16, 8, 210, LB_ZERO_SYM},
};
enum { N_TYPES = sizeof types / sizeof types[0] };

static int type_index(int ggml) {
    for (int i = 0; i < N_TYPES; i++)
        if (types[i].ggml == ggml) return i;
    return -1;
}

static void set_type(lb_qspec *s, int i) {
    s->ggml_type = types[i].ggml;
    s->bits = types[i].bits;
    s->group = types[i].group;
    s->zero = types[i].zero;
    s->scale_bits = types[i].scale_bits;
    s->super_rows = 1;
    s->super_cols = QK_K;
}

static int kq_match(const char *head, lb_qspec *s) {
    for (int i = 0; i < N_TYPES; i++)
        if (!strcmp(head, types[i].name)) {
            set_type(s, i);
            return 2; /* no options: the type fixes everything */
        }
    return 0;
}

static void kq_format(const lb_qspec *s, char *buf, size_t n) {
    int i = type_index(s->ggml_type);
    snprintf(buf, n, "%s", i >= 0 ? types[i].name : "q?_k");
}

static lb_status kq_validate(const lb_qspec *s) {
    int i = type_index(s->ggml_type);
    if (i < 0) return lb_fail(LB_ERR_INVALID, "ggml id %d is not a K-quant (Q2_K..Q6_K)", s->ggml_type);
    lb_qspec want = {.family = s->family};
    set_type(&want, i);
    if (s->bits != want.bits || s->group != want.group || s->zero != want.zero || s->scale_bits != want.scale_bits ||
        s->super_rows != 1 || s->super_cols != QK_K)
        return lb_fail(LB_ERR_INVALID, "%s: bits, groups and scales are fixed by the type (bits %d, g%d)",
                       types[i].name, want.bits, want.group);
    return LB_OK;
}

/* groups of the type's size over rows padded to whole 256-weight blocks */
static void kq_shape(const lb_qspec *s, lb_layout *l) {
    l->cols_padded = lb_round_up(l->cols, QK_K);
    l->group_len = s->group;
    l->groups_per_row = l->cols_padded / s->group;
    l->n_groups = l->rows * l->groups_per_row;
}

static size_t kq_row_bytes(const lb_qspec *s, const lb_layout *l) {
    return (size_t)(l->cols_padded / QK_K) * (size_t)types[type_index(s->ggml_type)].bytes;
}

static int kq_levels(const lb_qspec *s) { return 1 << s->bits; }

static float kq_level(const lb_qspec *s, int code) {
    return s->zero == LB_ZERO_SYM ? (float)(code - (1 << (s->bits - 1))) : (float)code;
}

static float kq_code_value(const lb_qtensor *q, int64_t k, int code) {
    return lb_uniform_value(&q->spec, q->scale[k], q->offset[k], 1 << (q->spec.bits - 1), code);
}

static int kq_nearest_code(const lb_qtensor *q, int64_t k, float w) {
    return lb_uniform_nearest_code(&q->spec, q->scale[k], q->offset[k], 1 << (q->spec.bits - 1), w);
}

/* ---- the blocks --------------------------------------------------------------
 * One view of a block for both directions: the fp16 d and dmin, the group
 * integers (sc: signed for q3_k / q6_k; mn: asym only) and the 256 codes. */
typedef struct {
    uint16_t d, dmin;
    int sc[16], mn[16];
    uint8_t q[QK_K];
} kblock;

/* q4_K / q5_K's 12 scale bytes: pairs 0..3 in the low 6 bits of bytes 0..3
 * (scale) and 4..7 (min); pairs 4..7 as nibbles of bytes 8..11 (scale low,
 * min high) with their top 2 bits in the top bits of bytes 0..3 / 4..7 */
static void get_scale_min_6(int j, const uint8_t *p, int *sc, int *m) {
    if (j < 4) {
        *sc = p[j] & 63;
        *m = p[j + 4] & 63;
    } else {
        *sc = (p[j + 4] & 15) | ((p[j - 4] >> 6) << 4);
        *m = (p[j + 4] >> 4) | ((p[j] >> 6) << 4);
    }
}

static void put_scale_min_6(int j, int sc, int m, uint8_t *p) {
    if (j < 4) {
        p[j] |= (uint8_t)sc;
        p[j + 4] |= (uint8_t)m;
    } else {
        p[j + 4] |= (uint8_t)((sc & 15) | (m & 15) << 4);
        p[j - 4] |= (uint8_t)((sc >> 4) << 6);
        p[j] |= (uint8_t)((m >> 4) << 6);
    }
}

/* q3_K's sixteen 6-bit scales (biased by 32): low nibbles in bytes 0..7
 * (scales 0..7 low, 8..15 high), top 2 bits in bytes 8..11 */
static int get_scale_q3(int j, const uint8_t *p) {
    int low = j < 8 ? p[j] & 15 : p[j - 8] >> 4;
    return (low | ((p[8 + j % 4] >> (2 * (j / 4))) & 3) << 4) - 32;
}

static void put_scale_q3(int j, int sc, uint8_t *p) {
    unsigned v = (unsigned)(sc + 32);
    p[j < 8 ? j : j - 8] |= (uint8_t)((v & 15) << (j < 8 ? 0 : 4));
    p[8 + j % 4] |= (uint8_t)((v >> 4) << (2 * (j / 4)));
}

/* q2_K / q3_K codes: weight 128 a + 32 s + i has its two low bits at bits
 * 2s of qs[32 a + i] (and q3_K its third bit at bit 4a + s of hmask[i]) */
static void encode_block(int t, const kblock *k, uint8_t *b) {
    memset(b, 0, (size_t)types[t].bytes);
    switch (types[t].ggml) {
    case 10: /* q2_K */
        for (int g = 0; g < 16; g++) b[g] = (uint8_t)(k->sc[g] | k->mn[g] << 4);
        for (int w = 0; w < QK_K; w++) b[16 + 32 * (w / 128) + w % 32] |= (uint8_t)(k->q[w] << (2 * (w % 128 / 32)));
        lb_wr16(b + 80, k->d);
        lb_wr16(b + 82, k->dmin);
        break;
    case 11: /* q3_K */
        for (int w = 0; w < QK_K; w++) {
            int a = w / 128, s = w % 128 / 32, i = w % 32;
            b[32 + 32 * a + i] |= (uint8_t)((k->q[w] & 3) << (2 * s));
            b[i] |= (uint8_t)((k->q[w] >> 2) << (4 * a + s));
        }
        for (int g = 0; g < 16; g++) put_scale_q3(g, k->sc[g], b + 96);
        lb_wr16(b + 108, k->d);
        break;
    case 12: /* q4_K */
    case 13: /* q5_K */ {
        int q5 = types[t].ggml == 13;
        uint8_t *qh = b + 16, *qs = b + (q5 ? 48 : 16);
        lb_wr16(b, k->d);
        lb_wr16(b + 2, k->dmin);
        for (int g = 0; g < 8; g++) put_scale_min_6(g, k->sc[g], k->mn[g], b + 4);
        /* 64 weights per 32 bytes: the first 32 in low nibbles, the next 32 in
         * high ones; the fifth bits of chunk c at bits 2c, 2c + 1 of qh */
        for (int w = 0; w < QK_K; w++) {
            int c = w / 64, hi = w % 64 / 32, l = w % 32;
            qs[32 * c + l] |= (uint8_t)((k->q[w] & 15) << (4 * hi));
            if (q5) qh[l] |= (uint8_t)((k->q[w] >> 4) << (2 * c + hi));
        }
        break;
    }
    case 14: /* q6_K: weight 128 a + 32 s + l: low nibble in ql[64 a + l + 32 (s & 1)]
              * (s >= 2: the high nibble), top 2 bits at bits 2s of qh[32 a + l] */
        for (int w = 0; w < QK_K; w++) {
            int a = w / 128, s = w % 128 / 32, l = w % 32;
            b[64 * a + l + 32 * (s & 1)] |= (uint8_t)((k->q[w] & 15) << (4 * (s >> 1)));
            b[128 + 32 * a + l] |= (uint8_t)((k->q[w] >> 4) << (2 * s));
        }
        for (int g = 0; g < 16; g++) b[192 + g] = (uint8_t)(int8_t)k->sc[g];
        lb_wr16(b + 208, k->d);
        break;
    }
}

static void decode_block(int t, const uint8_t *b, kblock *k) {
    memset(k, 0, sizeof *k);
    switch (types[t].ggml) {
    case 10:
        for (int g = 0; g < 16; g++) {
            k->sc[g] = b[g] & 15;
            k->mn[g] = b[g] >> 4;
        }
        for (int w = 0; w < QK_K; w++) k->q[w] = (uint8_t)((b[16 + 32 * (w / 128) + w % 32] >> (2 * (w % 128 / 32))) & 3);
        k->d = lb_rd16(b + 80);
        k->dmin = lb_rd16(b + 82);
        break;
    case 11:
        for (int w = 0; w < QK_K; w++) {
            int a = w / 128, s = w % 128 / 32, i = w % 32;
            k->q[w] = (uint8_t)(((b[32 + 32 * a + i] >> (2 * s)) & 3) | ((b[i] >> (4 * a + s)) & 1) << 2);
        }
        for (int g = 0; g < 16; g++) k->sc[g] = get_scale_q3(g, b + 96);
        k->d = lb_rd16(b + 108);
        break;
    case 12:
    case 13: {
        int q5 = types[t].ggml == 13;
        const uint8_t *qh = b + 16, *qs = b + (q5 ? 48 : 16);
        k->d = lb_rd16(b);
        k->dmin = lb_rd16(b + 2);
        for (int g = 0; g < 8; g++) get_scale_min_6(g, b + 4, &k->sc[g], &k->mn[g]);
        for (int w = 0; w < QK_K; w++) {
            int c = w / 64, hi = w % 64 / 32, l = w % 32;
            k->q[w] = (uint8_t)((qs[32 * c + l] >> (4 * hi)) & 15);
            if (q5) k->q[w] |= (uint8_t)(((qh[l] >> (2 * c + hi)) & 1) << 4);
        }
        break;
    }
    case 14:
        for (int w = 0; w < QK_K; w++) {
            int a = w / 128, s = w % 128 / 32, l = w % 32;
            k->q[w] = (uint8_t)(((b[64 * a + l + 32 * (s & 1)] >> (4 * (s >> 1))) & 15) |
                                ((b[128 + 32 * a + l] >> (2 * s)) & 3) << 4);
        }
        for (int g = 0; g < 16; g++) k->sc[g] = (int8_t)b[192 + g];
        k->d = lb_rd16(b + 208);
        break;
    }
}

/* ---- lb_qtensor <-> blocks ---------------------------------------------------- */

static void kq_encode_row(const lb_qtensor *q, int64_t row, uint8_t *dst) {
    int t = type_index(q->spec.ggml_type), gpb = QK_K / q->group_len;
    int64_t nb = q->cols_padded / QK_K;
    for (int64_t j = 0; j < nb; j++) {
        kblock k;
        int64_t k0 = row * q->groups_per_row + j * gpb, b = lb_qtensor_super(q, k0);
        k.d = lb_fp32_to_fp16(q->super_scale[b]);
        k.dmin = lb_fp32_to_fp16(-q->super_min[b]); /* w = D sc q + M mn = d sc q - dmin mn */
        for (int g = 0; g < gpb; g++) {
            k.sc[g] = lb_hscale_int(&q->spec, q->scale_code[k0 + g]);
            k.mn[g] = q->spec.zero == LB_ZERO_SYM ? 0 : q->min_code[k0 + g];
        }
        memcpy(k.q, q->codes + row * q->cols_padded + j * QK_K, QK_K);
        encode_block(t, &k, dst + (size_t)j * (size_t)types[t].bytes);
    }
}

static void kq_decode_row(lb_qtensor *q, int64_t row, const uint8_t *src) {
    int t = type_index(q->spec.ggml_type), gpb = QK_K / q->group_len;
    int64_t nb = q->cols_padded / QK_K;
    for (int64_t j = 0; j < nb; j++) {
        kblock k;
        decode_block(t, src + (size_t)j * (size_t)types[t].bytes, &k);
        int64_t k0 = row * q->groups_per_row + j * gpb, b = lb_qtensor_super(q, k0);
        q->super_scale[b] = lb_fp16_to_fp32(k.d);
        q->super_min[b] = -lb_fp16_to_fp32(k.dmin);
        for (int g = 0; g < gpb; g++) lb_hscale_set_group(q, k0 + g, k.sc[g], k.mn[g]);
        memcpy(q->codes + row * q->cols_padded + j * QK_K, k.q, QK_K);
    }
}

/* The meaning of the bytes, as ggml's dequantize_row_q*_K computes it: the
 * group's d sc and dmin m in fp32, then (d sc) q - (dmin m), or (d sc) (q - z)
 * (the same two products in the same order, so the same float). */
static void kq_dequantize_row(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row, float *out) {
    int t = type_index(s->ggml_type), z = 1 << (s->bits - 1);
    const uint8_t *src = data + (size_t)row * l->row_bytes;
    for (int64_t j = 0; j < l->cols_padded / QK_K; j++) {
        kblock k;
        decode_block(t, src + (size_t)j * (size_t)types[t].bytes, &k);
        float d = lb_fp16_to_fp32(k.d), dmin = lb_fp16_to_fp32(k.dmin), y[QK_K];
        for (int w = 0; w < QK_K; w++) {
            int g = w / s->group;
            float dl = d * (float)k.sc[g];
            if (s->zero == LB_ZERO_SYM) y[w] = dl * (float)((int)k.q[w] - z);
            else y[w] = dl * (float)k.q[w] - dmin * (float)k.mn[g];
        }
        int64_t c0 = j * QK_K, n = l->cols - c0 < QK_K ? l->cols - c0 : QK_K;
        memcpy(out + c0, y, (size_t)n * sizeof(float));
    }
}

static int kq_ggml_type(const lb_qspec *s, int64_t cols) {
    int i = type_index(s->ggml_type);
    return i >= 0 && cols % QK_K == 0 ? types[i].ggml : -1;
}

/* Rows that are not whole blocks: llama-quantize's rule (llama-quant.cpp,
 * tensor_type_fallback): q4_0 for q2_k and q3_k, q5_0 for q4_k, q5_1 for
 * q5_k, q8_0 for q6_k, and f16 when even 32 does not divide the row. */
static int kq_ggml_fallback(const lb_qspec *s, int64_t cols, lb_qspec *out) {
    if (cols % QK_K == 0) return 0;
    static const char *to[] = {"q4_0", "q4_0", "q5_0", "q5_1", "q8_0"};
    int i = type_index(s->ggml_type);
    return i >= 0 && lb_qspec_parse(cols % 32 ? "f16" : to[i], out) == LB_OK;
}

static int kq_from_ggml(int type, lb_qspec *out) {
    int i = type_index(type);
    if (i < 0) return 0;
    set_type(out, i);
    return 1;
}

const lb_format_family lb_kquant_family = {
    .name = "kquant",
    .names = "q2_k, q3_k, q4_k, q5_k, q6_k",
    .grid = LB_GRID_UNIFORM,
    .match = kq_match,
    .format = kq_format,
    .validate = kq_validate,
    .shape = kq_shape,
    .row_bytes = kq_row_bytes,
    .levels = kq_levels,
    .level = kq_level,
    .code_value = kq_code_value,
    .nearest_code = kq_nearest_code,
    .qtensor_init = lb_hscale_qtensor_init,
    .store_scales = lb_hscale_store_scales,
    .encode_row = kq_encode_row,
    .decode_row = kq_decode_row,
    .dequantize_row = kq_dequantize_row,
    .ggml_type = kq_ggml_type,
    .from_ggml = kq_from_ggml,
    .ggml_fallback = kq_ggml_fallback,
};
