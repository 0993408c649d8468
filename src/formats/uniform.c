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
 * byte-identical to ggml's Q4_0, Q4_1 and Q8_0.
 *
 * Option s<k> (and r<N>) stores the group scales and mins as k-bit integers
 * under fp16 super-scales instead: another layout, in uniform_hscale.c; the
 * hooks below hand such specs over to it. */
#include "format_internal.h"
#include "ggml_blocks.h"

#include <math.h>
#include <string.h>

/* ---- spec text ---------------------------------------------------------------- */

enum { SLOT_GROUP, SLOT_SYMMETRY, SLOT_ZERO, SLOT_SCALES, SLOT_SUPER };

/* "int1".."int8" (default g64, fp16 offset), and ggml's names for the
 * layouts we share: q4_0 = int4:g32:sym, q4_1 = int4:g32:asym, q5_0 =
 * int5:g32:sym, q5_1 = int5:g32:asym, q8_0 = int8:g32:sym. */
static int uniform_match(const char *head, lb_qspec *s) {
    static const struct {
        const char *name;
        int bits;
        lb_zero zero;
    } ggml_names[] = {{"q4_0", 4, LB_ZERO_SYM}, {"q4_1", 4, LB_ZERO_F16}, {"q5_0", 5, LB_ZERO_SYM},
                      {"q5_1", 5, LB_ZERO_F16}, {"q8_0", 8, LB_ZERO_SYM}};
    for (size_t i = 0; i < sizeof ggml_names / sizeof ggml_names[0]; i++)
        if (!strcmp(head, ggml_names[i].name)) {
            s->bits = ggml_names[i].bits;
            s->group = LB_QK;
            s->zero = ggml_names[i].zero;
            return 2;
        }
    if (strncmp(head, "int", 3)) return 0;
    if (!lb_parse_small_int(head + 3, &s->bits) || s->bits < 1 || s->bits > 8) {
        lb_fail(LB_ERR_INVALID, "int formats take 1 to 8 bits (int1..int8)");
        return LB_OPTION_FAILED;
    }
    s->group = 64;
    s->zero = LB_ZERO_F16;
    return 1;
}

/* sym | asym (fp16 offset unless a zero kind is given), zint | zf16 */
static int uniform_parse_option(lb_qspec *s, const char *tok, unsigned seen) {
    int slot = lb_parse_group_option(s, tok, 0);
    if (slot != LB_OPTION_UNKNOWN) return slot;
    int sym = !strcmp(tok, "sym"), asym = !strcmp(tok, "asym");
    if (sym || asym) {
        if ((seen >> SLOT_SYMMETRY & 1) && (s->zero == LB_ZERO_SYM) != sym) {
            lb_fail(LB_ERR_INVALID, "both sym and asym");
            return LB_OPTION_FAILED;
        }
        if (sym && (seen >> SLOT_ZERO & 1)) {
            lb_fail(LB_ERR_INVALID, "a symmetric format has no zero point");
            return LB_OPTION_FAILED;
        }
        if (sym) s->zero = LB_ZERO_SYM;
        else if (!(seen >> SLOT_ZERO & 1)) s->zero = LB_ZERO_F16;
        return SLOT_SYMMETRY;
    }
    if (!strcmp(tok, "zint") || !strcmp(tok, "zf16")) {
        if ((seen >> SLOT_SYMMETRY & 1) && s->zero == LB_ZERO_SYM) {
            lb_fail(LB_ERR_INVALID, "a symmetric format has no zero point");
            return LB_OPTION_FAILED;
        }
        s->zero = tok[1] == 'i' ? LB_ZERO_INT : LB_ZERO_F16;
        return SLOT_ZERO;
    }
    return lb_hscale_parse_option(s, tok, SLOT_SCALES, SLOT_SUPER);
}

static void uniform_format(const lb_qspec *s, char *buf, size_t n) {
    char g[16];
    lb_group_text(s, g, sizeof g);
    int used = snprintf(buf, n, "int%d:%s:%s", s->bits, g,
                        s->zero == LB_ZERO_SYM ? "sym" : s->zero == LB_ZERO_F16 ? "asym" : "asym:zint");
    if (s->scale_bits && used > 0 && (size_t)used < n) {
        used += snprintf(buf + used, n - (size_t)used, ":s%d", s->scale_bits);
        if (s->super_rows != 1 && (size_t)used < n) snprintf(buf + used, n - (size_t)used, ":r%d", s->super_rows);
    }
}

static lb_status uniform_validate(const lb_qspec *s) {
    if (s->bits < 1 || s->bits > 8) return lb_fail(LB_ERR_INVALID, "int formats take 1 to 8 bits, not %d", s->bits);
    lb_status st = lb_validate_group(s, 0);
    if (st != LB_OK) return st;
    if (s->zero == LB_ZERO_SYM && s->bits < 2)
        return lb_fail(LB_ERR_INVALID,
                       "int1 cannot be symmetric (its levels would be -1 and 0); use "
                       "'binary' for sign x scale or int1:asym");
    if (s->zero != LB_ZERO_SYM && s->zero != LB_ZERO_F16 && s->zero != LB_ZERO_INT)
        return lb_fail(LB_ERR_INVALID, "unknown zero-point kind %d", (int)s->zero);
    return lb_hscale_validate(s);
}

/* ---- ggml identity: whole g32 blocks of the three shared layouts ------------- */

_Static_assert(sizeof(lb_block_q4_0) == 2 + LB_QK * 4 / 8, "int4:g32:sym block = Q4_0");
_Static_assert(sizeof(lb_block_q4_1) == 4 + LB_QK * 4 / 8, "int4:g32:asym block = Q4_1");
_Static_assert(sizeof(lb_block_q8_0) == 2 + LB_QK * 8 / 8, "int8:g32:sym block = Q8_0");

static int uniform_ggml_type(const lb_qspec *s, int64_t cols) {
    /* ggml blocks never pad, so the row must be whole blocks */
    if (s->group != LB_QK || cols % LB_QK || s->scale_bits) return -1;
    if (s->bits == 8 && s->zero == LB_ZERO_SYM) return LB_GGML_Q8_0;
    if (s->bits == 4 && s->zero == LB_ZERO_SYM) return LB_GGML_Q4_0;
    if (s->bits == 4 && s->zero == LB_ZERO_F16) return LB_GGML_Q4_1;
    if (s->bits == 5 && s->zero == LB_ZERO_SYM) return LB_GGML_Q5_0;
    if (s->bits == 5 && s->zero == LB_ZERO_F16) return LB_GGML_Q5_1;
    return -1;
}

static int uniform_from_ggml(int type, lb_qspec *s) {
    const char *name = type == LB_GGML_Q4_0   ? "q4_0"
                       : type == LB_GGML_Q4_1 ? "q4_1"
                       : type == LB_GGML_Q8_0 ? "q8_0"
                       : type == LB_GGML_Q5_0 ? "q5_0"
                       : type == LB_GGML_Q5_1 ? "q5_1"
                                              : NULL;
    return name && uniform_match(name, s) == 2;
}

/* ---- layout and codes --------------------------------------------------------- */

static size_t header_bytes(const lb_qspec *s) { return s->zero == LB_ZERO_F16 ? 4 : 2; }

static size_t uniform_row_bytes(const lb_qspec *s, const lb_layout *l) {
    if (s->scale_bits) return lb_hscale_row_bytes(s, l);
    size_t block = header_bytes(s) + (size_t)(l->group_len * s->bits / 8);
    size_t zeros = s->zero == LB_ZERO_INT ? (size_t)((l->groups_per_row * s->bits + 7) / 8) : 0;
    return (size_t)l->groups_per_row * block + zeros;
}

static int uniform_levels(const lb_qspec *s) { return 1 << s->bits; }

static float uniform_level(const lb_qspec *s, int code) {
    return s->zero == LB_ZERO_SYM ? (float)(code - (1 << (s->bits - 1))) : (float)code;
}

float lb_uniform_value(const lb_qspec *spec, float d, float m, int z, int q) {
    return spec->zero == LB_ZERO_F16 ? d * (float)q + m : d * (float)(q - z);
}

int lb_uniform_nearest_code(const lb_qspec *spec, float d, float m, int z, float w) {
    int maxq = (1 << spec->bits) - 1;
    float r;
    if (d == 0.0f) r = spec->zero == LB_ZERO_F16 ? 0.0f : (float)z; /* every code decodes to m, or 0 */
    else if (spec->zero == LB_ZERO_F16) r = nearbyintf((w - m) / d);
    else r = nearbyintf(w / d + (float)z);
    if (!(r >= 0.0f)) return 0; /* also catches NaN */
    return r > (float)maxq ? maxq : (int)r;
}

/* the zero point of group k as lb_uniform_* take it */
static int uniform_zero(const lb_qtensor *q, int64_t k) {
    return q->spec.zero == LB_ZERO_INT ? q->zero[k] : 1 << (q->spec.bits - 1);
}

static float uniform_code_value(const lb_qtensor *q, int64_t k, int code) {
    return lb_uniform_value(&q->spec, q->scale[k], q->offset[k], uniform_zero(q, k), code);
}

static int uniform_nearest_code(const lb_qtensor *q, int64_t k, float w) {
    return lb_uniform_nearest_code(&q->spec, q->scale[k], q->offset[k], uniform_zero(q, k), w);
}

static size_t uniform_tail_bytes(const lb_qspec *s, const lb_layout *l) {
    return s->scale_bits ? lb_hscale_tail_bytes(s, l) : 0;
}

static lb_status uniform_qtensor_init(lb_qtensor *q) { return q->spec.scale_bits ? lb_hscale_qtensor_init(q) : LB_OK; }

/* scale, and the offset when stored, rounded to fp16 (or to the hierarchy) */
static lb_status uniform_store_scales(lb_qtensor *q) {
    if (q->spec.scale_bits) return lb_hscale_store_scales(q);
    for (int64_t k = 0; k < q->n_groups; k++) {
        q->scale[k] = lb_round_fp16(q->scale[k]);
        q->offset[k] = q->spec.zero == LB_ZERO_F16 ? lb_round_fp16(q->offset[k]) : 0.0f;
        if (!isfinite(q->scale[k]) || !isfinite(q->offset[k]))
            return lb_fail(LB_ERR_NUMERIC,
                           "group %lld: scale or offset is not finite in fp16 (weights beyond +-65504?)",
                           (long long)k);
    }
    return LB_OK;
}

/* Codes [j0, j0 + cnt) of a block of n packed codes, into dst. */
void lb_uniform_unpack_codes(const lb_qspec *s, const uint8_t *src, int64_t n, int64_t j0, int64_t cnt, uint8_t *dst) {
    int64_t j1 = j0 + cnt;
    if (s->bits == 4) {
        int64_t half = n / 2, j = j0;
        for (; j < j1 && j < half; j++) dst[j - j0] = src[j] & 15;
        for (; j < j1; j++) dst[j - j0] = src[j - half] >> 4;
    } else if (s->bits == 8) {
        uint8_t flip = s->zero == LB_ZERO_SYM ? 0x80 : 0; /* (q - 128) as int8 is q with its top bit flipped */
        for (int64_t j = j0; j < j1; j++) dst[j - j0] = src[j] ^ flip;
    } else if (s->bits == 5) {
        /* ggml's Q5 blocks: the fifth bits first, then split-half nibbles */
        const uint8_t *nib = src + n / 8;
        int64_t half = n / 2;
        for (int64_t j = j0; j < j1; j++)
            dst[j - j0] = (uint8_t)(((nib[j < half ? j : j - half] >> (j < half ? 0 : 4)) & 15) |
                                    ((src[j >> 3] >> (j & 7)) & 1) << 4);
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

void lb_uniform_pack_codes(const lb_qspec *s, const uint8_t *codes, int64_t n, uint8_t *dst) {
    if (s->bits == 4) {
        for (int64_t j = 0; j < n / 2; j++) dst[j] = (uint8_t)(codes[j] | (codes[j + n / 2] << 4));
    } else if (s->bits == 5) {
        memset(dst, 0, (size_t)(n * 5 / 8));
        for (int64_t j = 0; j < n; j++) {
            dst[j >> 3] |= (uint8_t)((codes[j] >> 4) << (j & 7));
            dst[n / 8 + (j < n / 2 ? j : j - n / 2)] |= (uint8_t)((codes[j] & 15) << (j < n / 2 ? 0 : 4));
        }
    } else if (s->bits == 8) {
        /* (q - 128) as int8 is q with its top bit flipped */
        for (int64_t j = 0; j < n; j++) dst[j] = s->zero == LB_ZERO_SYM ? (uint8_t)(codes[j] ^ 0x80) : codes[j];
    } else {
        for (int64_t j = 0; j < n; j++) lb_put_bits(dst, (uint64_t)(j * s->bits), codes[j], s->bits);
    }
}

static void uniform_encode_row(const lb_qtensor *q, int64_t row, uint8_t *dst) {
    const lb_qspec *s = &q->spec;
    if (s->scale_bits) {
        lb_hscale_encode_row(q, row, dst);
        return;
    }
    size_t hb = header_bytes(s), cb = (size_t)(q->group_len * s->bits / 8);
    for (int64_t g = 0; g < q->groups_per_row; g++) {
        int64_t k = row * q->groups_per_row + g;
        uint8_t *blk = dst + (size_t)g * (hb + cb);
        lb_wr16(blk, lb_fp32_to_fp16(q->scale[k]));
        if (s->zero == LB_ZERO_F16) lb_wr16(blk + 2, lb_fp32_to_fp16(q->offset[k]));
        lb_uniform_pack_codes(s, q->codes + row * q->cols_padded + g * q->group_len, q->group_len, blk + hb);
    }
    if (s->zero == LB_ZERO_INT) {
        uint8_t *zs = dst + (size_t)q->groups_per_row * (hb + cb);
        for (int64_t g = 0; g < q->groups_per_row; g++)
            lb_put_bits(zs, (uint64_t)(g * s->bits), q->zero[row * q->groups_per_row + g], s->bits);
    }
}

/* the tensor tail: super-scales of hierarchical specs, nothing otherwise */
static void uniform_encode_tail(const lb_qtensor *q, uint8_t *dst) {
    if (q->spec.scale_bits) lb_hscale_encode_tail(q, dst);
}
static void uniform_decode_tail(lb_qtensor *q, const uint8_t *src) {
    if (q->spec.scale_bits) lb_hscale_decode_tail(q, src);
}

static void uniform_decode_row(lb_qtensor *q, int64_t row, const uint8_t *src) {
    const lb_qspec *s = &q->spec;
    if (s->scale_bits) {
        lb_hscale_decode_row(q, row, src);
        return;
    }
    size_t hb = header_bytes(s), cb = (size_t)(q->group_len * s->bits / 8);
    const uint8_t *zs = src + (size_t)q->groups_per_row * (hb + cb);
    for (int64_t g = 0; g < q->groups_per_row; g++) {
        int64_t k = row * q->groups_per_row + g;
        const uint8_t *blk = src + (size_t)g * (hb + cb);
        uint8_t *codes = q->codes + row * q->cols_padded + g * q->group_len;
        q->scale[k] = lb_fp16_to_fp32(lb_rd16(blk));
        q->offset[k] = s->zero == LB_ZERO_F16 ? lb_fp16_to_fp32(lb_rd16(blk + 2)) : 0.0f;
        q->zero[k] = s->zero == LB_ZERO_INT ? (uint8_t)lb_get_bits(zs, (uint64_t)(g * s->bits), s->bits) : 0;
        lb_uniform_unpack_codes(s, blk + hb, q->group_len, 0, q->group_len, codes);
    }
}

/* The three g32 layouts ggml shares, read through its block structs
 * (ggml_blocks.h, the layouts kernels use); the same values as the generic
 * path below, bit for bit. Returns 0 for every other spec. */
static int dequantize_ggml_blocks(const lb_qspec *s, const lb_layout *l, const uint8_t *src, float *out) {
    int q8_0 = s->bits == 8 && s->zero == LB_ZERO_SYM;
    int q4 = s->bits == 4 && (s->zero == LB_ZERO_SYM || s->zero == LB_ZERO_F16);
    if (s->group != LB_QK || !(q8_0 || q4)) return 0;
    for (int64_t g = 0; g < l->groups_per_row; g++) {
        float v[LB_QK];
        if (q8_0) {
            lb_block_q8_0 b;
            memcpy(&b, src + (size_t)g * sizeof b, sizeof b); /* rows need not be aligned */
            float d = lb_fp16_to_fp32(b.d);
            for (int j = 0; j < LB_QK; j++) v[j] = d * (float)b.qs[j];
        } else if (s->zero == LB_ZERO_SYM) {
            lb_block_q4_0 b;
            memcpy(&b, src + (size_t)g * sizeof b, sizeof b);
            float d = lb_fp16_to_fp32(b.d);
            for (int j = 0; j < LB_QK / 2; j++) {
                v[j] = d * (float)((b.qs[j] & 15) - 8);
                v[j + LB_QK / 2] = d * (float)((b.qs[j] >> 4) - 8);
            }
        } else {
            lb_block_q4_1 b;
            memcpy(&b, src + (size_t)g * sizeof b, sizeof b);
            float d = lb_fp16_to_fp32(b.d), m = lb_fp16_to_fp32(b.m);
            for (int j = 0; j < LB_QK / 2; j++) {
                v[j] = d * (float)(b.qs[j] & 15) + m;
                v[j + LB_QK / 2] = d * (float)(b.qs[j] >> 4) + m;
            }
        }
        int64_t c0 = g * LB_QK, n = l->cols - c0 < LB_QK ? l->cols - c0 : LB_QK;
        memcpy(out + c0, v, (size_t)n * sizeof(float));
    }
    return 1;
}

/* The meaning of the bytes, computed as ggml does: d * (q - z) for the
 * symmetric (z = 2^(b-1)) and integer-zero variants, d * q + m for fp16
 * offsets. */
static void uniform_dequantize_row(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row,
                                   float *out) {
    if (s->scale_bits) {
        lb_hscale_dequantize_row(s, l, data, row, out);
        return;
    }
    const uint8_t *src = data + (size_t)row * l->row_bytes;
    if (dequantize_ggml_blocks(s, l, src, out)) return;
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
            lb_uniform_unpack_codes(s, blk + hb, l->group_len, j0, cnt, codes);
            float *o = out + c0 + j0;
            if (s->zero == LB_ZERO_F16)
                for (int64_t j = 0; j < cnt; j++) o[j] = d * (float)codes[j] + m;
            else
                for (int64_t j = 0; j < cnt; j++) o[j] = d * (float)((int)codes[j] - z);
        }
    }
}

const lb_format_family lb_uniform_family = {
    .name = "int",
    .names = "int1..int8, q4_0, q4_1, q8_0",
    .grid = LB_GRID_UNIFORM,
    .option_slots = {"group size", "symmetry", "zero point", "group scale bits", "rows per super-scale"},
    .match = uniform_match,
    .parse_option = uniform_parse_option,
    .format = uniform_format,
    .validate = uniform_validate,
    .row_bytes = uniform_row_bytes,
    .tail_bytes = uniform_tail_bytes,
    .levels = uniform_levels,
    .level = uniform_level,
    .code_value = uniform_code_value,
    .nearest_code = uniform_nearest_code,
    .qtensor_init = uniform_qtensor_init,
    .store_scales = uniform_store_scales,
    .encode_row = uniform_encode_row,
    .decode_row = uniform_decode_row,
    .encode_tail = uniform_encode_tail,
    .decode_tail = uniform_decode_tail,
    .dequantize_row = uniform_dequantize_row,
    .ggml_type = uniform_ggml_type,
    .from_ggml = uniform_from_ggml,
};
