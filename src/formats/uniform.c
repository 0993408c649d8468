/* Uniform b-bit integers (1..8 bits) with one fp16 scale per group and a
 * zero point that is absent (symmetric), an fp16 offset (the group minimum,
 * w = d*q + m), or a b-bit integer (w = d*(q - z)).
 *
 * Row layout: one block per group, [d fp16][m fp16, asym only][codes], then
 * for integer zero points all of the row's zeros as one b-bit stream padded to
 * a byte. Codes: 4-bit codes are split in halves (byte j holds code j in its
 * low nibble and code j+G/2 in its high nibble), 8-bit symmetric codes are
 * stored as int8 (q - 128), every other width as a little-endian bit stream.
 * With G = 32 this makes int4:g32:sym, int4:g32:asym and int8:g32:sym
 * byte-identical to ggml's Q4_0, Q4_1 and Q8_0. */
#include "format_internal.h"

static size_t header_bytes(const lb_qspec *s) { return s->zero == LB_ZERO_F16 ? 4 : 2; }

static size_t uniform_row_bytes(const lb_qspec *s, const lb_layout *l) {
    size_t block = header_bytes(s) + (size_t)(l->group_len * s->bits / 8);
    size_t zeros = s->zero == LB_ZERO_INT ? (size_t)((l->groups_per_row * s->bits + 7) / 8) : 0;
    return (size_t)l->groups_per_row * block + zeros;
}

static int uniform_levels(const lb_qspec *s) { return 1 << s->bits; }

static float uniform_level(const lb_qspec *s, int code) {
    return s->zero == LB_ZERO_SYM ? (float)(code - (1 << (s->bits - 1))) : (float)code;
}

/* Codes [j0, j0 + cnt) of a block of n packed codes, into dst. */
static void unpack_codes(const lb_qspec *s, const uint8_t *src, int64_t n, int64_t j0, int64_t cnt, uint8_t *dst) {
    int64_t j1 = j0 + cnt;
    if (s->bits == 4) {
        int64_t half = n / 2, j = j0;
        for (; j < j1 && j < half; j++) dst[j - j0] = src[j] & 15;
        for (; j < j1; j++) dst[j - j0] = src[j - half] >> 4;
    } else if (s->bits == 8) {
        uint8_t flip = s->zero == LB_ZERO_SYM ? 0x80 : 0; /* (q - 128) as int8 is q with its top bit flipped */
        for (int64_t j = j0; j < j1; j++) dst[j - j0] = src[j] ^ flip;
    } else if (s->bits == 2) {
        for (int64_t j = j0; j < j1; j++) dst[j - j0] = (src[j >> 2] >> (2 * (j & 3))) & 3;
    } else if (s->bits == 1) {
        for (int64_t j = j0; j < j1; j++) dst[j - j0] = (src[j >> 3] >> (j & 7)) & 1;
    } else if (s->bits == 3 && j0 % 8 == 0) {
        /* eight codes in every three bytes */
        int64_t j = j0;
        for (; j + 8 <= j1; j += 8) {
            const uint8_t *p = src + j / 8 * 3;
            uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16;
            for (int i = 0; i < 8; i++) dst[j - j0 + i] = (uint8_t)((v >> (3 * i)) & 7);
        }
        for (; j < j1; j++) dst[j - j0] = (uint8_t)lb_get_bits(src, (uint64_t)(j * 3), 3);
    } else {
        for (int64_t j = j0; j < j1; j++) dst[j - j0] = (uint8_t)lb_get_bits(src, (uint64_t)(j * s->bits), s->bits);
    }
}

static void pack_codes(const lb_qspec *s, const uint8_t *codes, int64_t n, uint8_t *dst) {
    if (s->bits == 4) {
        for (int64_t j = 0; j < n / 2; j++) dst[j] = (uint8_t)(codes[j] | (codes[j + n / 2] << 4));
    } else if (s->bits == 8) {
        /* (q - 128) as int8 is q with its top bit flipped */
        for (int64_t j = 0; j < n; j++) dst[j] = s->zero == LB_ZERO_SYM ? (uint8_t)(codes[j] ^ 0x80) : codes[j];
    } else {
        for (int64_t j = 0; j < n; j++) lb_put_bits(dst, (uint64_t)(j * s->bits), codes[j], s->bits);
    }
}

static void uniform_encode_row(const lb_qtensor *q, int64_t row, uint8_t *dst) {
    const lb_qspec *s = &q->spec;
    size_t hb = header_bytes(s), cb = (size_t)(q->group_len * s->bits / 8);
    for (int64_t g = 0; g < q->groups_per_row; g++) {
        int64_t k = row * q->groups_per_row + g;
        uint8_t *blk = dst + (size_t)g * (hb + cb);
        lb_wr16(blk, lb_fp32_to_fp16(q->scale[k]));
        if (s->zero == LB_ZERO_F16) lb_wr16(blk + 2, lb_fp32_to_fp16(q->offset[k]));
        pack_codes(s, q->codes + row * q->cols_padded + g * q->group_len, q->group_len, blk + hb);
    }
    if (s->zero == LB_ZERO_INT) {
        uint8_t *zs = dst + (size_t)q->groups_per_row * (hb + cb);
        for (int64_t g = 0; g < q->groups_per_row; g++)
            lb_put_bits(zs, (uint64_t)(g * s->bits), q->zero[row * q->groups_per_row + g], s->bits);
    }
}

static void uniform_decode_row(lb_qtensor *q, int64_t row, const uint8_t *src) {
    const lb_qspec *s = &q->spec;
    size_t hb = header_bytes(s), cb = (size_t)(q->group_len * s->bits / 8);
    const uint8_t *zs = src + (size_t)q->groups_per_row * (hb + cb);
    for (int64_t g = 0; g < q->groups_per_row; g++) {
        int64_t k = row * q->groups_per_row + g;
        const uint8_t *blk = src + (size_t)g * (hb + cb);
        uint8_t *codes = q->codes + row * q->cols_padded + g * q->group_len;
        q->scale[k] = lb_fp16_to_fp32(lb_rd16(blk));
        q->offset[k] = s->zero == LB_ZERO_F16 ? lb_fp16_to_fp32(lb_rd16(blk + 2)) : 0.0f;
        q->zero[k] = s->zero == LB_ZERO_INT ? (uint8_t)lb_get_bits(zs, (uint64_t)(g * s->bits), s->bits) : 0;
        unpack_codes(s, blk + hb, q->group_len, 0, q->group_len, codes);
    }
}

/* The meaning of the bytes, computed as ggml does: d * (q - z) for the
 * symmetric (z = 2^(b-1)) and integer-zero variants, d * q + m for fp16
 * offsets. */
static void uniform_dequantize_row(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row,
                                   float *out) {
    const uint8_t *src = data + (size_t)row * l->row_bytes;
    size_t hb = header_bytes(s), cb = (size_t)(l->group_len * s->bits / 8);
    const uint8_t *zs = src + (size_t)l->groups_per_row * (hb + cb);
    uint8_t codes[256];
    for (int64_t g = 0; g < l->groups_per_row; g++) {
        const uint8_t *blk = src + (size_t)g * (hb + cb);
        float d = lb_fp16_to_fp32(lb_rd16(blk));
        float m = s->zero == LB_ZERO_F16 ? lb_fp16_to_fp32(lb_rd16(blk + 2)) : 0.0f;
        int z = s->zero == LB_ZERO_INT ? (int)lb_get_bits(zs, (uint64_t)(g * s->bits), s->bits) : 1 << (s->bits - 1);
        int64_t c0 = g * l->group_len;
        int64_t n = l->cols - c0 < l->group_len ? l->cols - c0 : l->group_len;
        for (int64_t j0 = 0; j0 < n; j0 += 256) { /* whole-row groups can be long */
            int64_t cnt = n - j0 < 256 ? n - j0 : 256;
            unpack_codes(s, blk + hb, l->group_len, j0, cnt, codes);
            float *o = out + c0 + j0;
            if (s->zero == LB_ZERO_F16)
                for (int64_t j = 0; j < cnt; j++) o[j] = d * (float)codes[j] + m;
            else
                for (int64_t j = 0; j < cnt; j++) o[j] = d * (float)((int)codes[j] - z);
        }
    }
}

const lb_format_traits lb_uniform_traits = {
    .name = "int",
    .row_bytes = uniform_row_bytes,
    .levels = uniform_levels,
    .level = uniform_level,
    .encode_row = uniform_encode_row,
    .decode_row = uniform_decode_row,
    .dequantize_row = uniform_dequantize_row,
};
