/* llama.cpp's K-quants, read: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and Q8_K as
 * ggml stores them (ggml-common.h's block_q*_K), so that `lowbit eval`,
 * `info` and `generate` run llama.cpp's files and `quantize` can start from
 * them (issue 10 item 3). Writing them is not built yet: the family has no
 * unpacked form (no grid, no codes), and quantizing into it is refused.
 *
 * Every type is a row of 256-weight super-blocks (the spec's group is 256;
 * llama.cpp's rows are whole super-blocks, and a row of another length is
 * padded here to a whole one, which llama.cpp cannot read). Per super-block:
 *   q2_K (84 B)  scales[16] (4-bit scale | 4-bit min << 4 per 16 weights),
 *                qs[64] (2-bit codes), d, dmin (fp16):
 *                w = d sc q - dmin m
 *   q3_K (110 B) hmask[32] (the code's third bit), qs[64] (two low bits),
 *                scales[12] (sixteen 6-bit scales, biased by 32), d:
 *                w = d (s - 32) (q - 4 [high bit clear])
 *   q4_K (144 B) d, dmin, scales[12] (eight 6-bit scales and eight 6-bit
 *                mins, one pair per 32 weights), qs[128] (4-bit codes):
 *                w = d sc q - dmin m
 *   q5_K (176 B) as q4_K plus qh[32] (each code's fifth bit)
 *   q6_K (210 B) ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16]
 *                (int8, one per 16 weights), d: w = d s (q - 32)
 *   q8_K (292 B) d (fp32), qs[256] (int8), bsums[16] (unused here): w = d q
 * The codes' order inside a super-block (which bits of which byte belong to
 * which weight) follows ggml's dequantize_row_q*_K, and so does the float
 * arithmetic (the same products in the same order), so the values are
 * ggml's bit for bit when both are compiled without contracting a * b - c
 * into a fused multiply-add. */
#include "format_internal.h"

#include <math.h>
#include <string.h>

#define QK_K 256

static const struct {
    const char *name;
    int bits, ggml, bytes;
} kq[] = {
    {"q2_k", 2, 10, 84}, {"q3_k", 3, 11, 110}, {"q4_k", 4, 12, 144},
    {"q5_k", 5, 13, 176}, {"q6_k", 6, 14, 210}, {"q8_k", 8, 15, 292},
};
enum { N_KQ = sizeof kq / sizeof kq[0] };

static int kq_index(int bits) {
    for (int i = 0; i < N_KQ; i++)
        if (kq[i].bits == bits) return i;
    return -1;
}

static int kq_match(const char *head, lb_qspec *s) {
    for (int i = 0; i < N_KQ; i++)
        if (!strcmp(head, kq[i].name)) {
            s->bits = kq[i].bits;
            s->group = QK_K;
            return 2; /* no options */
        }
    return 0;
}

static int kq_parse_option(lb_qspec *s, const char *tok, unsigned seen) {
    (void)s, (void)tok, (void)seen;
    return LB_OPTION_UNKNOWN;
}

static void kq_format(const lb_qspec *s, char *buf, size_t n) {
    int i = kq_index(s->bits);
    snprintf(buf, n, "%s", i >= 0 ? kq[i].name : "q?_k");
}

static lb_status kq_validate(const lb_qspec *s) {
    if (kq_index(s->bits) < 0 || s->group != QK_K)
        return lb_fail(LB_ERR_INVALID, "a K-quant has 2, 3, 4, 5, 6 or 8 bits in super-blocks of 256, not %d bits "
                       "in groups of %d", s->bits, s->group);
    return LB_OK;
}

static size_t kq_row_bytes(const lb_qspec *s, const lb_layout *l) {
    return (size_t)l->groups_per_row * (size_t)kq[kq_index(s->bits)].bytes;
}

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

static void kq_dequantize_row(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row, float *out) {
    int t = kq_index(s->bits);
    const uint8_t *src = data + (size_t)row * l->row_bytes;
    float y[QK_K];
    for (int64_t g = 0; g < l->groups_per_row; g++, src += kq[t].bytes) {
        switch (s->bits) {
        case 2: q2_k(src, y); break;
        case 3: q3_k(src, y); break;
        case 4: q45_k(src, NULL, src + 16, y); break;
        case 5: q45_k(src, src + 16, src + 48, y); break;
        case 6: q6_k(src, y); break;
        default: q8_k(src, y); break;
        }
        int64_t c0 = g * QK_K, n = l->cols - c0 < QK_K ? l->cols - c0 : QK_K;
        memcpy(out + c0, y, (size_t)n * sizeof(float));
    }
}

static int kq_ggml_type(const lb_qspec *s, int64_t cols) {
    int i = kq_index(s->bits);
    return i >= 0 && cols % QK_K == 0 ? kq[i].ggml : -1;
}

static int kq_from_ggml(int type, lb_qspec *out) {
    for (int i = 0; i < N_KQ; i++)
        if (kq[i].ggml == type) {
            out->bits = kq[i].bits;
            out->group = QK_K;
            return 1;
        }
    return 0;
}

const lb_format_family lb_kquant_family = {
    .name = "kquant",
    .names = "q2_k q3_k q4_k q5_k q6_k q8_k (read only)",
    .grid = LB_GRID_NONE,
    .match = kq_match,
    .parse_option = kq_parse_option,
    .format = kq_format,
    .validate = kq_validate,
    .row_bytes = kq_row_bytes,
    .dequantize_row = kq_dequantize_row,
    .ggml_type = kq_ggml_type,
    .from_ggml = kq_from_ggml,
};
