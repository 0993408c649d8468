/* llama.cpp's tensor types that lowbit reads but does not write (issue 10
 * item 3): the K-quants Q2_K..Q6_K and Q8_K, the legacy Q5_0, Q5_1 and
 * Q8_1, IQ4_NL and IQ4_XS, the ternary TQ1_0 and TQ2_0, and MXFP4, as ggml
 * stores them (ggml-common.h's block_* structs), so that `lowbit eval`,
 * `info` and `generate` run llama.cpp's files and `quantize` can start from
 * them. (Q4_0, Q4_1 and Q8_0 are the uniform family's, which writes them.)
 * The row has no unpacked form (no grid, no codes): quantizing into it is
 * refused. The spec is the type's name; spec.ggml_type holds its id and
 * spec.group its block (32 or 256 weights); a row of another length is
 * padded to whole blocks, which llama.cpp cannot read.
 *
 * Blocks (fp16 unless said; w the weight, q its code):
 *   q2_K (84 B)  scales[16] (4-bit scale | 4-bit min << 4 per 16 weights),
 *                qs[64] (2-bit codes), d, dmin: w = d sc q - dmin m
 *   q3_K (110 B) hmask[32] (the code's third bit), qs[64] (two low bits),
 *                scales[12] (sixteen 6-bit scales, biased by 32), d:
 *                w = d (s - 32) (q - 4 [high bit clear])
 *   q4_K (144 B) d, dmin, scales[12] (eight 6-bit scales and eight 6-bit
 *                mins, one pair per 32 weights), qs[128]: w = d sc q - dmin m
 *   q5_K (176 B) as q4_K plus qh[32] (each code's fifth bit)
 *   q6_K (210 B) ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16]
 *                (int8, one per 16 weights), d: w = d s (q - 32)
 *   q8_K (292 B) d (fp32), qs[256] (int8), bsums[16] (unused): w = d q
 *   q5_0 (22 B)  d, qh (32 fifth bits), qs[16]: w = (q - 16) d
 *   q5_1 (24 B)  d, m, qh, qs[16]: w = q d + m
 *   q8_1 (36 B)  d, s (d times the codes' sum, unused), qs[32] (int8): w = q d
 *   iq4_nl (18 B) d, qs[16]: w = d K[q], K the 16 non-uniform levels below
 *   iq4_xs (136 B) d, scales_h (uint16), scales_l[4], qs[128]: eight
 *                6-bit scales biased by 32, one per 32 weights: w = d (s - 32) K[q]
 *   tq1_0 (54 B) qs[48] (five trits per byte, as base-3 fractions),
 *                qh[4] (four per byte), d: w = (t - 1) d
 *   tq2_0 (66 B) qs[64] (2-bit codes), d: w = (q - 1) d
 *   mxfp4 (17 B) e (E8M0 exponent), qs[16] (E2M1 codes): w = 2^(e - 127) E2M1[q]
 * Which bits of which byte belong to which weight follows ggml's
 * dequantize_row_*, and so does the float arithmetic (the same products in
 * the same order), so the values are ggml's bit for bit when both are
 * compiled without contracting a * b - c into a fused multiply-add
 * (checked against ggml's own to_float: docs/RESULTS.md, "Issue 10"). */
#include "format_internal.h"

#include <math.h>
#include <string.h>

#define QK_K 256

static float f16(const uint8_t *p) { return lb_fp16_to_fp32(lb_rd16(p)); }

/* the j-th 6-bit scale and min of q4_K / q5_K's 12 packed bytes: the first
 * four pairs in the low 6 bits of bytes 0..3 and 4..7, the last four from
 * bytes 8..11's nibbles with their top 2 bits in bytes 0..7's top bits */
static void scale_min_6(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 15) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

static void q2_k(const uint8_t *b, float *y) {
    const uint8_t *scales = b, *q = b + 16;
    float d = f16(b + 80), dmin = f16(b + 82);
    int is = 0;
    for (int n = 0; n < QK_K; n += 128, q += 32)
        for (int shift = 0; shift < 8; shift += 2)
            for (int half = 0; half < 2; half++) {
                int sc = scales[is++];
                float dl = d * (float)(sc & 15), ml = dmin * (float)(sc >> 4);
                for (int l = 0; l < 16; l++) *y++ = dl * (float)((q[l + 16 * half] >> shift) & 3) - ml;
            }
}

static void q3_k(const uint8_t *b, float *y) {
    const uint8_t *hm = b, *q = b + 32, *s = b + 96;
    float d = f16(b + 108);
    /* sixteen 6-bit scales: low 4 bits from bytes 0..7's nibbles (scales
     * 0..7 low nibbles, 8..15 high nibbles), high 2 bits from bytes 8..11 */
    int scale[16];
    for (int j = 0; j < 16; j++) {
        int low = j < 8 ? s[j] & 15 : s[j - 8] >> 4;
        int high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        scale[j] = (low | high << 4) - 32;
    }
    int is = 0;
    unsigned m = 1;
    for (int n = 0; n < QK_K; n += 128, q += 32)
        for (int shift = 0; shift < 8; shift += 2, m <<= 1)
            for (int half = 0; half < 2; half++) {
                float dl = d * (float)scale[is++];
                for (int l = 0; l < 16; l++) {
                    int i = l + 16 * half;
                    *y++ = dl * (float)(((q[i] >> shift) & 3) - ((hm[i] & m) ? 0 : 4));
                }
            }
}

/* q4_K and q5_K (qh != NULL: the fifth bits) */
static void q45_k(const uint8_t *b, const uint8_t *qh, const uint8_t *ql, float *y) {
    float d = f16(b), dmin = f16(b + 2);
    const uint8_t *scales = b + 4;
    unsigned u1 = 1, u2 = 2;
    for (int j = 0, is = 0; j < QK_K; j += 64, ql += 32, is += 2, u1 <<= 2, u2 <<= 2) {
        int sc, m;
        scale_min_6(is, scales, &sc, &m);
        float d1 = d * (float)sc, m1 = dmin * (float)m;
        scale_min_6(is + 1, scales, &sc, &m);
        float d2 = d * (float)sc, m2 = dmin * (float)m;
        for (int l = 0; l < 32; l++) *y++ = d1 * (float)((ql[l] & 15) + (qh && (qh[l] & u1) ? 16 : 0)) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * (float)((ql[l] >> 4) + (qh && (qh[l] & u2) ? 16 : 0)) - m2;
    }
}

static void q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = f16(b + 208);
    for (int n = 0; n < QK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8)
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = ((ql[l] & 15) | ((qh[l] & 3) << 4)) - 32, q2 = ((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32, q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) << 4)) - 32;
            y[l] = d * (float)sc[is] * (float)q1;
            y[l + 32] = d * (float)sc[is + 2] * (float)q2;
            y[l + 64] = d * (float)sc[is + 4] * (float)q3;
            y[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
}

static void q8_k(const uint8_t *b, float *y) {
    float d;
    memcpy(&d, b, 4); /* little-endian fp32, as GGUF */
    for (int j = 0; j < QK_K; j++) y[j] = d * (float)(int8_t)b[4 + j];
}

/* IQ4_NL's levels (and IQ4_XS's) */
static const int8_t iq4_levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
/* MXFP4's E2M1 values, doubled (ggml's convention: the scale is halved to match) */
static const int8_t e2m1_x2[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

/* q5_0 (has_min 0) and q5_1: the fifth bit of weight j is bit j of qh */
static void q5_legacy(const uint8_t *b, int has_min, float *y) {
    float d = f16(b), m = has_min ? f16(b + 2) : 0.0f;
    const uint8_t *qhp = b + (has_min ? 4 : 2), *qs = qhp + 4;
    uint32_t qh = lb_rd32(qhp);
    for (int j = 0; j < 16; j++) {
        int x0 = (qs[j] & 15) | (int)(((qh >> j) << 4) & 16), x1 = (qs[j] >> 4) | (int)((qh >> (j + 12)) & 16);
        if (has_min) {
            y[j] = (float)x0 * d + m;
            y[j + 16] = (float)x1 * d + m;
        } else {
            y[j] = (float)(x0 - 16) * d;
            y[j + 16] = (float)(x1 - 16) * d;
        }
    }
}

static void q8_1(const uint8_t *b, float *y) {
    float d = f16(b);
    for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)b[4 + j] * d;
}

static void iq4_nl(const uint8_t *b, float *y) {
    float d = f16(b);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)iq4_levels[b[2 + j] & 15];
        y[j + 16] = d * (float)iq4_levels[b[2 + j] >> 4];
    }
}

static void iq4_xs(const uint8_t *b, float *y) {
    float d = f16(b);
    unsigned scales_h = lb_rd16(b + 2);
    const uint8_t *scales_l = b + 4, *qs = b + 8;
    for (int ib = 0; ib < 8; ib++, y += 32, qs += 16) {
        int ls = ((scales_l[ib / 2] >> 4 * (ib % 2)) & 15) | (int)(((scales_h >> 2 * ib) & 3) << 4);
        float dl = d * (float)(ls - 32);
        for (int j = 0; j < 16; j++) {
            y[j] = dl * (float)iq4_levels[qs[j] & 15];
            y[j + 16] = dl * (float)iq4_levels[qs[j] >> 4];
        }
    }
}

/* a trit stored as the base-3 fraction of a byte: digit n of q is the top
 * of (q 3^n mod 256) * 3 / 256 */
static float trit(uint8_t q, int n, float d) {
    static const uint8_t pow3[6] = {1, 3, 9, 27, 81, 243};
    uint8_t v = (uint8_t)(q * pow3[n]);
    return (float)((int)(((unsigned)v * 3) >> 8) - 1) * d;
}

static void tq1_0(const uint8_t *b, float *y) {
    const uint8_t *qs = b, *qh = b + 48;
    float d = f16(b + 52);
    for (int n = 0; n < 5; n++) /* the first 32 bytes: 5 x 32 trits */
        for (int m = 0; m < 32; m++) *y++ = trit(qs[m], n, d);
    for (int n = 0; n < 5; n++) /* the last 16: 5 x 16 */
        for (int m = 0; m < 16; m++) *y++ = trit(qs[32 + m], n, d);
    for (int n = 0; n < 4; n++)
        for (int j = 0; j < 4; j++) *y++ = trit(qh[j], n, d);
}

static void tq2_0(const uint8_t *b, float *y) {
    float d = f16(b + 64);
    for (int j = 0; j < 64; j += 32)
        for (int l = 0; l < 4; l++)
            for (int m = 0; m < 32; m++) *y++ = (float)(((b[j + m] >> (2 * l)) & 3) - 1) * d;
}

/* 2^(e - 128): ggml's E8M0 scale halved (E2M1 values are stored doubled) */
static float e8m0_half(uint8_t e) {
    uint32_t bits = e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static void mxfp4(const uint8_t *b, float *y) {
    float d = e8m0_half(b[0]);
    for (int j = 0; j < 16; j++) {
        y[j] = (float)e2m1_x2[b[1 + j] & 15] * d;
        y[j + 16] = (float)e2m1_x2[b[1 + j] >> 4] * d;
    }
}

static void q4_k(const uint8_t *b, float *y) { q45_k(b, NULL, b + 16, y); }
static void q5_k(const uint8_t *b, float *y) { q45_k(b, b + 16, b + 48, y); }
static void q5_0(const uint8_t *b, float *y) { q5_legacy(b, 0, y); }
static void q5_1(const uint8_t *b, float *y) { q5_legacy(b, 1, y); }

/* the types: name, ggml id, weights per block, bytes per block, decoder */
static const struct {
    const char *name;
    int ggml, block, bytes;
    void (*block_to_float)(const uint8_t *b, float *y);
} types[] = {
    {"q5_0", 6, 32, 22, q5_0},        {"q5_1", 7, 32, 24, q5_1},         {"q8_1", 9, 32, 36, q8_1},
    {"q2_k", 10, QK_K, 84, q2_k},     {"q3_k", 11, QK_K, 110, q3_k},     {"q4_k", 12, QK_K, 144, q4_k},
    {"q5_k", 13, QK_K, 176, q5_k},    {"q6_k", 14, QK_K, 210, q6_k},     {"q8_k", 15, QK_K, 292, q8_k},
    {"iq4_nl", 20, 32, 18, iq4_nl},   {"iq4_xs", 23, QK_K, 136, iq4_xs}, {"tq1_0", 34, QK_K, 54, tq1_0},
    {"tq2_0", 35, QK_K, 66, tq2_0},   {"mxfp4", 39, 32, 17, mxfp4},
};
enum { N_TYPES = sizeof types / sizeof types[0] };

static int type_index(int ggml) {
    for (int i = 0; i < N_TYPES; i++)
        if (types[i].ggml == ggml) return i;
    return -1;
}

static void set_type(lb_qspec *s, int i) {
    s->ggml_type = types[i].ggml;
    s->group = types[i].block;
}

static int gr_match(const char *head, lb_qspec *s) {
    for (int i = 0; i < N_TYPES; i++)
        if (!strcmp(head, types[i].name)) {
            set_type(s, i);
            return 2; /* no options */
        }
    return 0;
}

static int gr_parse_option(lb_qspec *s, const char *tok, unsigned seen) {
    (void)s, (void)tok, (void)seen;
    return LB_OPTION_UNKNOWN;
}

static void gr_format(const lb_qspec *s, char *buf, size_t n) {
    int i = type_index(s->ggml_type);
    snprintf(buf, n, "%s", i >= 0 ? types[i].name : "ggml?");
}

static lb_status gr_validate(const lb_qspec *s) {
    int i = type_index(s->ggml_type);
    if (i < 0 || s->group != types[i].block)
        return lb_fail(LB_ERR_INVALID, "no llama.cpp type lowbit reads has ggml id %d and blocks of %d", s->ggml_type,
                       s->group);
    return LB_OK;
}

static size_t gr_row_bytes(const lb_qspec *s, const lb_layout *l) {
    return (size_t)l->groups_per_row * (size_t)types[type_index(s->ggml_type)].bytes;
}

static void gr_dequantize_row(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row, float *out) {
    int t = type_index(s->ggml_type), block = types[t].block;
    const uint8_t *src = data + (size_t)row * l->row_bytes;
    float y[QK_K];
    for (int64_t g = 0; g < l->groups_per_row; g++, src += types[t].bytes) {
        types[t].block_to_float(src, y);
        int64_t c0 = g * block, n = l->cols - c0 < block ? l->cols - c0 : block;
        memcpy(out + c0, y, (size_t)n * sizeof(float));
    }
}

static int gr_ggml_type(const lb_qspec *s, int64_t cols) {
    int i = type_index(s->ggml_type);
    return i >= 0 && cols % types[i].block == 0 ? types[i].ggml : -1;
}

static int gr_from_ggml(int type, lb_qspec *out) {
    int i = type_index(type);
    if (i < 0) return 0;
    set_type(out, i);
    return 1;
}

const lb_format_family lb_ggml_read_family = {
    .name = "ggml",
    .names = "q5_0, q5_1, q8_1, q2_k..q6_k, q8_k, iq4_nl, iq4_xs, tq1_0, tq2_0, mxfp4 (read only)",
    .grid = LB_GRID_NONE,
    .match = gr_match,
    .parse_option = gr_parse_option,
    .format = gr_format,
    .validate = gr_validate,
    .row_bytes = gr_row_bytes,
    .dequantize_row = gr_dequantize_row,
    .ggml_type = gr_ggml_type,
    .from_ggml = gr_from_ggml,
};
