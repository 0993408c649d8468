/* llama.cpp's ternary types TQ1_0 and TQ2_0 (ggml PR #8151, for BitNet
 * b1.58 models), written and read: per 256 weights a trit t in {-1, 0, 1}
 * each and one fp16 scale d, w = t d.
 *   tq2_0 (ggml 35, 66 B, 2.0625 bpw): qs[64] then d; weight 128 a + 32 l + m
 *     (a < 2, l < 4, m < 32) is t + 1 at bits 2 l of qs[32 a + m]
 *   tq1_0 (ggml 34, 54 B, 1.6875 bpw): qs[48], qh[4], d; five trits per byte
 *     of qs and four per byte of qh, as base-3 fractions of 256: a byte
 *     holding digits t_0..t_4 (t + 1, t_0 the most significant) is
 *     ceil(256 v / 243), v = sum t_n 3^(4 - n), and digit n comes back as
 *     ((byte 3^n mod 256) 3) >> 8. Weight 32 n + m (m < 32) is digit n of
 *     qs[m]; 160 + 16 n + m (m < 16) digit n of qs[32 + m]; 240 + 4 n + j
 *     digit n of qh[j] (n < 4, the fifth digit 0)
 * The blocks are ggml's byte for byte, so the files run in llama.cpp. The
 * codes are lowbit's ternary ones (0, 1, 2 for -1, 0, +1) and the grid the
 * ternary family's (rtn: absmean scale, or --method twn), one group per
 * 256-weight block. A row that is not whole blocks is padded (lowbit reads
 * it; llama.cpp cannot): a plan falls back to q4_0 there, as llama-quantize
 * does. */
#include "format_internal.h"

#include <math.h>
#include <string.h>

#define QK_K 256
#define GGML_TQ1_0 34
#define GGML_TQ2_0 35

static int is_tq1(const lb_qspec *s) { return s->ggml_type == GGML_TQ1_0; }
static size_t block_bytes(const lb_qspec *s) { return is_tq1(s) ? 54 : 66; }

static int tq_match(const char *head, lb_qspec *s) {
    if (strcmp(head, "tq1_0") && strcmp(head, "tq2_0")) return 0;
    s->bits = 2;
    s->group = QK_K;
    s->ggml_type = !strcmp(head, "tq1_0") ? GGML_TQ1_0 : GGML_TQ2_0;
    return 2; /* no options */
}

static void tq_format(const lb_qspec *s, char *buf, size_t n) { snprintf(buf, n, is_tq1(s) ? "tq1_0" : "tq2_0"); }

static lb_status tq_validate(const lb_qspec *s) {
    if ((s->ggml_type != GGML_TQ1_0 && s->ggml_type != GGML_TQ2_0) || s->bits != 2 || s->group != QK_K)
        return lb_fail(LB_ERR_INVALID, "tq1_0 / tq2_0: trits in blocks of 256 (ggml types 34, 35), not ggml type %d",
                       s->ggml_type);
    return LB_OK;
}

static size_t tq_row_bytes(const lb_qspec *s, const lb_layout *l) {
    return (size_t)l->groups_per_row * block_bytes(s);
}

static int tq_levels(const lb_qspec *s) {
    (void)s;
    return 3;
}

static float tq_level(const lb_qspec *s, int code) {
    (void)s;
    return (float)(code - 1);
}

/* where weight w's trit lives in a tq1_0 block: byte index and digit */
static void tq1_place(int w, int *byte, int *digit) {
    if (w < 160) *byte = w % 32, *digit = w / 32;
    else if (w < 240) *byte = 32 + (w - 160) % 16, *digit = (w - 160) / 16;
    else *byte = 48 + (w - 240) % 4, *digit = (w - 240) / 4;
}

static void encode_block(const lb_qspec *s, const uint8_t *t, float d, uint8_t *b) {
    memset(b, 0, block_bytes(s));
    if (!is_tq1(s)) {
        for (int w = 0; w < QK_K; w++) b[32 * (w / 128) + w % 32] |= (uint8_t)(t[w] << (2 * (w % 128 / 32)));
        lb_wr16(b + 64, lb_fp32_to_fp16(d));
        return;
    }
    unsigned v[52] = {0};
    for (int w = 0; w < QK_K; w++) {
        int byte, digit;
        tq1_place(w, &byte, &digit);
        unsigned p = 1;
        for (int e = digit; e < 4; e++) p *= 3; /* 3^(4 - digit) */
        v[byte] += t[w] * p;
    }
    for (int i = 0; i < 52; i++) b[i] = (uint8_t)((v[i] * 256 + 242) / 243);
    lb_wr16(b + 52, lb_fp32_to_fp16(d));
}

static unsigned digit_of(uint8_t q, int n) {
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    return ((unsigned)(uint8_t)(q * pow3[n]) * 3) >> 8;
}

static float decode_block(const lb_qspec *s, const uint8_t *b, uint8_t *t) {
    if (!is_tq1(s)) {
        for (int w = 0; w < QK_K; w++) t[w] = (uint8_t)((b[32 * (w / 128) + w % 32] >> (2 * (w % 128 / 32))) & 3);
        return lb_fp16_to_fp32(lb_rd16(b + 64));
    }
    for (int w = 0; w < QK_K; w++) {
        int byte, digit;
        tq1_place(w, &byte, &digit);
        t[w] = (uint8_t)digit_of(b[byte], digit);
    }
    return lb_fp16_to_fp32(lb_rd16(b + 52));
}

static void tq_encode_row(const lb_qtensor *q, int64_t row, uint8_t *dst) {
    for (int64_t g = 0; g < q->groups_per_row; g++)
        encode_block(&q->spec, q->codes + row * q->cols_padded + g * QK_K, q->scale[row * q->groups_per_row + g],
                     dst + (size_t)g * block_bytes(&q->spec));
}

static void tq_decode_row(lb_qtensor *q, int64_t row, const uint8_t *src) {
    for (int64_t g = 0; g < q->groups_per_row; g++) {
        int64_t k = row * q->groups_per_row + g;
        q->scale[k] = decode_block(&q->spec, src + (size_t)g * block_bytes(&q->spec), q->codes + row * q->cols_padded + g * QK_K);
        q->offset[k] = 0.0f;
        /* a tq2_0 code of 3 (no trit: ggml reads it as +2) stays 3: lb_qtensor_encode refuses it */
    }
}

/* ggml's dequantize_row_tq*_0: (float)(t - 1) * d; tq2_0's unused code 3 gives 2 d there too */
static void tq_dequantize_row(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row, float *out) {
    const uint8_t *src = data + (size_t)row * l->row_bytes;
    for (int64_t g = 0; g < l->groups_per_row; g++) {
        uint8_t t[QK_K];
        float d = decode_block(s, src + (size_t)g * block_bytes(s), t), y[QK_K];
        for (int w = 0; w < QK_K; w++) y[w] = (float)((int)t[w] - 1) * d;
        int64_t c0 = g * QK_K, n = l->cols - c0 < QK_K ? l->cols - c0 : QK_K;
        memcpy(out + c0, y, (size_t)n * sizeof(float));
    }
}

static int tq_ggml_type(const lb_qspec *s, int64_t cols) { return cols % QK_K == 0 ? s->ggml_type : -1; }

static int tq_from_ggml(int type, lb_qspec *out) {
    if (type != GGML_TQ1_0 && type != GGML_TQ2_0) return 0;
    return tq_match(type == GGML_TQ1_0 ? "tq1_0" : "tq2_0", out) == 2;
}

/* llama-quantize's rule for rows that are not whole blocks: q4_0 (f16 when 32 does not divide) */
static int tq_ggml_fallback(const lb_qspec *s, int64_t cols, lb_qspec *out) {
    (void)s;
    if (cols % QK_K == 0) return 0;
    return lb_qspec_parse(cols % 32 ? "f16" : "q4_0", out) == LB_OK;
}

const lb_format_family lb_tq_family = {
    .name = "tq",
    .names = "tq1_0, tq2_0",
    .grid = LB_GRID_TERNARY,
    .match = tq_match,
    .format = tq_format,
    .validate = tq_validate,
    .row_bytes = tq_row_bytes,
    .levels = tq_levels,
    .level = tq_level,
    .encode_row = tq_encode_row,
    .decode_row = tq_decode_row,
    .dequantize_row = tq_dequantize_row,
    .ggml_type = tq_ggml_type,
    .from_ggml = tq_from_ggml,
    .ggml_fallback = tq_ggml_fallback,
};
