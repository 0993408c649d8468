/* NF4: the 4-bit NormalFloat codebook of bitsandbytes (QLoRA), blockwise
 * absmax scaling: w = absmax * NF4[q].
 *
 * Levels: 8 positive quantiles Phi^-1(linspace(0.9677083, 0.5, 9)[:-1]), 7
 * negative ones, and an exact zero, normalized to [-1, 1] (METHODS.md s18).
 * Row layout: per group [absmax fp16][codes, 4-bit split halves as in Q4_0].
 * Deviation from bitsandbytes: absmax is fp16, not fp32 (4 + 16/G bpw).
 *
 * Double quantization (":dq"): absmax values lose their fp16 and are stored
 * as int8 codes c (one byte per group, after the row's code blocks) with
 *   absmax = c * s[k / 256] + mean,
 * s one fp32 scale per 256 consecutive groups and mean one fp32 per tensor,
 * both in the tensor tail [mean][s...]. bitsandbytes uses its dynamic 8-bit
 * map here; we use a linear one (simpler, and the error it adds is far below
 * the 4-bit error). bpw = 4 + 8/G + 32/(256 G) + 32/N. */
#include "format_internal.h"

#include <math.h>
#include <string.h>

static const float nf4_levels[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

/* "nf4" (default g64), options g<N> | row, dq */
static int nf4_match(const char *head, lb_qspec *s) {
    if (strcmp(head, "nf4")) return 0;
    s->bits = 4;
    s->group = 64;
    return 1;
}

static int nf4_parse_option(lb_qspec *s, const char *tok, unsigned seen) {
    (void)seen;
    if (!strcmp(tok, "dq")) {
        s->double_quant = 1;
        return 1;
    }
    return lb_parse_group_option(s, tok, 0);
}

static void nf4_format(const lb_qspec *s, char *buf, size_t n) {
    char g[16];
    lb_group_text(s, g, sizeof g);
    snprintf(buf, n, "nf4:%s%s", g, s->double_quant ? ":dq" : "");
}

static lb_status nf4_validate(const lb_qspec *s) {
    if (s->bits != 4) return lb_fail(LB_ERR_INVALID, "nf4 has 4 bits, not %d", s->bits);
    return lb_validate_group(s, 0);
}

static lb_status nf4_qtensor_init(lb_qtensor *q) {
    if (!q->spec.double_quant) return LB_OK;
    q->dq_blocks = (q->n_groups + 255) / 256;
    q->dq_code = lb_calloc((size_t)q->n_groups, 1);
    q->dq_block_scale = lb_calloc((size_t)q->dq_blocks, sizeof(float));
    return q->dq_code && q->dq_block_scale ? LB_OK : LB_ERR_NOMEM;
}

static size_t block_bytes(const lb_qspec *s, const lb_layout *l) {
    return (s->double_quant ? 0 : 2) + (size_t)(l->group_len / 2);
}

static size_t nf4_row_bytes(const lb_qspec *s, const lb_layout *l) {
    return (size_t)l->groups_per_row * (block_bytes(s, l) + (s->double_quant ? 1 : 0));
}

static size_t nf4_tail_bytes(const lb_qspec *s, const lb_layout *l) {
    return s->double_quant ? 4 + 4 * (size_t)((l->n_groups + 255) / 256) : 0;
}

static int nf4_levels_count(const lb_qspec *s) {
    (void)s;
    return 16;
}

static float nf4_level(const lb_qspec *s, int code) {
    (void)s;
    return nf4_levels[code & 15];
}

static inline float dq_value(int8_t code, float block_scale, float offset) {
    return (float)code * block_scale + offset;
}

static lb_status nf4_store_scales(lb_qtensor *q) {
    if (!q->spec.double_quant) return lb_store_scales_fp16(q);
    double sum = 0;
    for (int64_t k = 0; k < q->n_groups; k++) {
        if (!isfinite(q->scale[k]))
            return lb_fail(LB_ERR_NUMERIC, "group %lld has a non-finite absmax", (long long)k);
        sum += q->scale[k];
    }
    q->dq_offset = (float)(sum / (double)q->n_groups);
    for (int64_t b = 0; b < q->dq_blocks; b++) {
        int64_t k0 = b * 256, k1 = k0 + 256 < q->n_groups ? k0 + 256 : q->n_groups;
        float amax = 0;
        for (int64_t k = k0; k < k1; k++) amax = fmaxf(amax, fabsf(q->scale[k] - q->dq_offset));
        float bs = amax / 127.0f;
        q->dq_block_scale[b] = bs;
        for (int64_t k = k0; k < k1; k++) {
            float c = bs > 0 ? nearbyintf((q->scale[k] - q->dq_offset) / bs) : 0.0f;
            c = fminf(127.0f, fmaxf(-127.0f, c));
            q->dq_code[k] = (int8_t)c;
            q->scale[k] = dq_value(q->dq_code[k], bs, q->dq_offset);
        }
    }
    for (int64_t k = 0; k < q->n_groups; k++) q->offset[k] = 0.0f;
    return LB_OK;
}

static void nf4_encode_row(const lb_qtensor *q, int64_t row, uint8_t *dst) {
    const lb_qspec *s = &q->spec;
    size_t hb = s->double_quant ? 0 : 2, half = (size_t)q->group_len / 2;
    for (int64_t g = 0; g < q->groups_per_row; g++) {
        int64_t k = row * q->groups_per_row + g;
        uint8_t *blk = dst + (size_t)g * (hb + half);
        const uint8_t *c = q->codes + row * q->cols_padded + g * q->group_len;
        if (!s->double_quant) lb_wr16(blk, lb_fp32_to_fp16(q->scale[k]));
        for (size_t j = 0; j < half; j++) blk[hb + j] = (uint8_t)(c[j] | (c[j + half] << 4));
        if (s->double_quant) dst[(size_t)q->groups_per_row * half + (size_t)g] = (uint8_t)q->dq_code[k];
    }
}

static void nf4_decode_row(lb_qtensor *q, int64_t row, const uint8_t *src) {
    const lb_qspec *s = &q->spec;
    size_t hb = s->double_quant ? 0 : 2, half = (size_t)q->group_len / 2;
    for (int64_t g = 0; g < q->groups_per_row; g++) {
        int64_t k = row * q->groups_per_row + g;
        const uint8_t *blk = src + (size_t)g * (hb + half);
        uint8_t *c = q->codes + row * q->cols_padded + g * q->group_len;
        if (s->double_quant) {
            q->dq_code[k] = (int8_t)src[(size_t)q->groups_per_row * half + (size_t)g];
            q->scale[k] = dq_value(q->dq_code[k], q->dq_block_scale[k / 256], q->dq_offset);
        } else {
            q->scale[k] = lb_fp16_to_fp32(lb_rd16(blk));
        }
        q->offset[k] = 0.0f;
        for (size_t j = 0; j < half; j++) {
            c[j] = blk[hb + j] & 15;
            c[j + half] = blk[hb + j] >> 4;
        }
    }
}

static void nf4_encode_tail(const lb_qtensor *q, uint8_t *dst) {
    if (!q->spec.double_quant) return;
    uint32_t u;
    memcpy(&u, &q->dq_offset, 4);
    lb_wr32(dst, u);
    for (int64_t b = 0; b < q->dq_blocks; b++) {
        memcpy(&u, &q->dq_block_scale[b], 4);
        lb_wr32(dst + 4 + 4 * b, u);
    }
}

static float rd_f32(const uint8_t *p) {
    uint32_t u = lb_rd32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void nf4_decode_tail(lb_qtensor *q, const uint8_t *src) {
    if (!q->spec.double_quant) return;
    q->dq_offset = rd_f32(src);
    for (int64_t b = 0; b < q->dq_blocks; b++) q->dq_block_scale[b] = rd_f32(src + 4 + 4 * b);
}

static void nf4_dequantize_row(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row,
                               float *out) {
    const uint8_t *src = data + (size_t)row * l->row_bytes;
    const uint8_t *tail = data + (size_t)l->rows * l->row_bytes;
    size_t hb = s->double_quant ? 0 : 2, half = (size_t)l->group_len / 2;
    for (int64_t g = 0; g < l->groups_per_row; g++) {
        const uint8_t *blk = src + (size_t)g * (hb + half);
        float d;
        if (s->double_quant) {
            int64_t k = row * l->groups_per_row + g;
            d = dq_value((int8_t)src[(size_t)l->groups_per_row * half + (size_t)g], rd_f32(tail + 4 + 4 * (k / 256)),
                         rd_f32(tail));
        } else {
            d = lb_fp16_to_fp32(lb_rd16(blk));
        }
        int64_t c0 = g * l->group_len;
        for (int64_t j = 0; j < l->group_len && c0 + j < l->cols; j++) {
            unsigned code = (size_t)j < half ? blk[hb + j] & 15u : (unsigned)blk[hb + j - half] >> 4;
            out[c0 + j] = d * nf4_levels[code];
        }
    }
}

const lb_format_family lb_nf4_family = {
    .name = "nf4",
    .names = "nf4",
    .grid = LB_GRID_ABSMAX,
    .option_slots = {"group size", "double quantization"},
    .match = nf4_match,
    .parse_option = nf4_parse_option,
    .format = nf4_format,
    .validate = nf4_validate,
    .qtensor_init = nf4_qtensor_init,
    .row_bytes = nf4_row_bytes,
    .tail_bytes = nf4_tail_bytes,
    .levels = nf4_levels_count,
    .level = nf4_level,
    .store_scales = nf4_store_scales,
    .encode_row = nf4_encode_row,
    .decode_row = nf4_decode_row,
    .encode_tail = nf4_encode_tail,
    .decode_tail = nf4_decode_tail,
    .dequantize_row = nf4_dequantize_row,
};
