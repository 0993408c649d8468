/* Trellis codes (QTIP's bitshift trellis; docs/methods/trellis.md): k bits
 * per weight, and a weight's value is scale * table[state], the L-bit
 * state being its own code and the L/k - 1 codes before it in its
 * sequence, read circularly (tail-biting: exactly k bits per weight are
 * stored). table is QTIP's "1MAD" codebook, computed from the state, so
 * nothing but codes and scales is stored. Sequences: a group's weights
 * (g<N>), or for one scale per row or tensor the padded row cut into
 * near-equal pieces of at most 256. Finding the codes is the quantizer's
 * job (src/quant/trellis.c: Viterbi); this file says what bytes mean.
 *
 * With "down", the sequences run down each column instead (the column's
 * rows cut into pieces of at most 256), so that a method can quantize a
 * whole column at a time with error feedback between columns (gptq).
 *
 * Row layout: fp16 scales (none for a tensor scale, which sits in the
 * tail), then the row's codes, k bits each, little-endian bit stream.
 *
 * "s<b>" (b = 4..8, groups of a row or g<N>): the scales are b-bit codes
 * instead, all in the tail after one fp16 S (the largest scale): code c
 * means S 2^(-c 7 / (2^b - 2)) (down to S / 128 in equal ratios; at b = 6
 * steps of 8%), and the all-ones code means 0. Rows then hold codes only:
 * 2 + 6/64 = 2.094 bpw for trellis2:s6 at 64 columns instead of 2.25.
 *
 * "v2" (QTIP's V = 2): a step of the trellis is two weights. Each step
 * shifts K bits (trellis<K>:v2, K = 1..6) into the L-bit state and the
 * state gives two values (lb_trellis_1mad2), so K/2 bits per weight:
 * trellis1:v2 is 0.5 bpw. Sequences are whole steps (at most 128, i.e.
 * 256 weights). Along rows, a row stores its steps' codes in order (K bits
 * at step j). Down the columns, a step is the rows 2p and 2p + 1 of a
 * column; row 2p + j stores the codes of the columns c = j (mod 2), K bits
 * at position c / 2, so every row has cols_padded K / 2 bits. With an odd
 * number of rows the last step's second row does not exist: its codes
 * (the odd columns') sit in the tail after the scales.
 *
 * In lb_qtensor, a step's code sits at its first weight (column 2t along
 * rows, row 2p down the columns); its second weight's code is 0. */
#include "format_internal.h"

#include <math.h>
#include <string.h>

enum { SLOT_GROUP, SLOT_STATE, SLOT_DIRECTION, SLOT_SCALES, SLOT_STEP };

enum { SCALE_OCTAVES = 7 }; /* the range of the coded scales: S / 2^7 .. S */

/* "trellis<k>" (k = 1..4, or up to 6 bits per step with v2; default one
 * scale per row, L = 12, or 15 for k = 5, which does not divide 12) */
static int trellis_match(const char *head, lb_qspec *s) {
    if (strncmp(head, "trellis", 7)) return 0;
    int k;
    if (!lb_parse_small_int(head + 7, &k) || k < 1 || k > 6) {
        lb_fail(LB_ERR_INVALID, "'%s': trellis<k> takes k = 1..4 bits per weight (1..6 per step of two with v2)",
                head);
        return LB_OPTION_FAILED;
    }
    s->bits = k;
    s->group = LB_GROUP_ROW;
    s->state_bits = k == 5 ? 15 : 12;
    s->step_weights = 1;
    return 1;
}

static int trellis_parse_option(lb_qspec *s, const char *tok, unsigned seen) {
    (void)seen;
    if (!strcmp(tok, "down")) {
        s->seq_down = 1;
        return SLOT_DIRECTION;
    }
    if (!strcmp(tok, "v2")) {
        s->step_weights = 2;
        return SLOT_STEP;
    }
    if (tok[0] == 's') {
        int b;
        if (!lb_parse_small_int(tok + 1, &b)) return LB_OPTION_UNKNOWN;
        s->scale_bits = b;
        return SLOT_SCALES;
    }
    if (tok[0] == 'L') {
        int L;
        if (!lb_parse_small_int(tok + 1, &L)) return LB_OPTION_UNKNOWN;
        s->state_bits = L;
        return SLOT_STATE;
    }
    return lb_parse_group_option(s, tok, 1);
}

static void trellis_format(const lb_qspec *s, char *buf, size_t n) {
    char g[16];
    lb_group_text(s, g, sizeof g);
    char sb[8] = "";
    if (s->scale_bits) snprintf(sb, sizeof sb, ":s%d", s->scale_bits);
    snprintf(buf, n, "trellis%d:L%d:%s%s%s%s", s->bits, s->state_bits, g, s->seq_down ? ":down" : "", sb,
             lb_trellis_step_weights(s) == 2 ? ":v2" : "");
}

static lb_status trellis_validate(const lb_qspec *s) {
    int k = s->bits, L = s->state_bits;
    if (s->step_weights < 0 || s->step_weights > 2)
        return lb_fail(LB_ERR_INVALID, "trellis: %d weights per step (1, or 2 with v2)", s->step_weights);
    if (lb_trellis_step_weights(s) == 2 && (k < 1 || k > 6))
        return lb_fail(LB_ERR_INVALID, "trellis%d:v2: 1..6 bits per step of two weights", k);
    if (lb_trellis_step_weights(s) == 1 && (k < 1 || k > 4))
        return lb_fail(LB_ERR_INVALID, "trellis%d: k = 1..4 bits per weight (5 and 6 bits per step need v2)", k);
    if (L < 2 * k || L > LB_TRELLIS_MAX_STATE || L % k)
        return lb_fail(LB_ERR_INVALID, "trellis%d: state of %d bits (a multiple of %d in %d..%d)", k, L, k, 2 * k,
                       LB_TRELLIS_MAX_STATE);
    if (s->seq_down != 0 && s->seq_down != 1) return lb_fail(LB_ERR_INVALID, "trellis: direction %d", s->seq_down);
    if (s->scale_bits && (s->scale_bits < 4 || s->scale_bits > 8))
        return lb_fail(LB_ERR_INVALID, "trellis%d: scale codes of %d bits (s4..s8)", k, s->scale_bits);
    if (s->scale_bits && s->group == LB_GROUP_TENSOR)
        return lb_fail(LB_ERR_INVALID, "trellis%d:tensor:s%d: one scale per tensor has nothing to code", k, s->scale_bits);
    return lb_validate_group(s, 1);
}

/* bytes of fp16 scales at the start of a row (none with coded scales) */
static size_t lead_bytes(const lb_qspec *s, const lb_layout *l) { return s->scale_bits ? 0 : lb_lead_scales_row_bytes(l); }

/* bytes of a row's codes: cols_padded / V steps of k bits (down with v2:
 * half the columns of a two-row step, the same count) */
static size_t code_bytes(const lb_qspec *s, const lb_layout *l) {
    return (size_t)((l->cols_padded / lb_trellis_step_weights(s) * s->bits + 7) / 8);
}

static size_t trellis_row_bytes(const lb_qspec *s, const lb_layout *l) { return lead_bytes(s, l) + code_bytes(s, l); }

static size_t scale_tail_bytes(const lb_qspec *s, const lb_layout *l) {
    if (!s->scale_bits) return lb_lead_scales_tail_bytes(s, l);
    return 2 + (size_t)((l->n_groups * s->scale_bits + 7) / 8);
}

/* down with v2 and an odd number of rows: the missing row's codes */
static int has_phantom_row(const lb_qspec *s, int64_t rows) { return s->seq_down && lb_trellis_step_weights(s) == 2 && rows % 2; }

static size_t trellis_tail_bytes(const lb_qspec *s, const lb_layout *l) {
    return scale_tail_bytes(s, l) + (has_phantom_row(s, l->rows) ? code_bytes(s, l) : 0);
}

/* the value of scale code c under S */
static float coded_scale(int b, float S, unsigned c) {
    unsigned zero = (1u << b) - 1;
    return c == zero ? 0.0f : S * exp2f(-(float)c * (float)SCALE_OCTAVES / (float)(zero - 1));
}

/* the code of a scale a > 0 under S >= a (nearest in log, clamped to S / 2^7) */
static unsigned scale_code(int b, float S, float a) {
    unsigned zero = (1u << b) - 1;
    if (!(a > 0.0f)) return zero;
    float c = -log2f(a / S) * (float)(zero - 1) / (float)SCALE_OCTAVES;
    long r = lrintf(c);
    return r < 0 ? 0u : r > (long)zero - 1 ? zero - 1 : (unsigned)r;
}

/* the largest scale (0 when none is positive) */
static float largest_scale(const lb_qtensor *q) {
    float S = 0.0f;
    for (int64_t g = 0; g < q->n_groups; g++) S = q->scale[g] > S ? q->scale[g] : S;
    return S;
}

/* S: the largest scale, rounded to fp16 (up, so every scale stays below it) */
static float coded_top(const lb_qtensor *q) {
    float S = largest_scale(q);
    float h = lb_round_fp16(S);
    return h < S ? lb_round_fp16(S * (1.0f + 1.0f / 1024.0f)) : h;
}

static lb_status trellis_store_scales(lb_qtensor *q) {
    if (!q->spec.scale_bits) return lb_store_scales_fp16(q);
    const int b = q->spec.scale_bits;
    for (int64_t g = 0; g < q->n_groups; g++)
        if (!isfinite(q->scale[g]) || q->scale[g] < 0.0f)
            return lb_fail(LB_ERR_NUMERIC, "group %lld: scale %g cannot be coded", (long long)g, (double)q->scale[g]);
    float S = coded_top(q);
    if (!isfinite(S)) return lb_fail(LB_ERR_NUMERIC, "trellis scales beyond fp16 (weights beyond +-65504?)");
    for (int64_t g = 0; g < q->n_groups; g++) {
        q->scale[g] = coded_scale(b, S, scale_code(b, S, q->scale[g]));
        q->offset[g] = 0.0f;
    }
    return LB_OK;
}

/* The codes row `row` of the bytes holds (row == rows: the tail's
 * missing row, down with v2): in lb_qtensor, where each sits. Along rows,
 * code j is the step at column V j of the row; down with v2, the step of
 * rows (2p, 2p + 1) at the columns of row's parity. */
static uint8_t *stored_code(const lb_qtensor *q, int64_t row, int64_t j) {
    const int V = lb_trellis_step_weights(&q->spec);
    if (q->spec.seq_down && V == 2) return q->codes + (row - row % 2) * q->cols_padded + 2 * j + row % 2;
    return q->codes + row * q->cols_padded + V * j;
}

static void encode_codes(const lb_qtensor *q, int64_t row, uint8_t *bits) {
    const int k = q->spec.bits;
    for (int64_t j = 0; j < q->cols_padded / lb_trellis_step_weights(&q->spec); j++)
        lb_put_bits(bits, (uint64_t)(j * k), *stored_code(q, row, j), k);
}

static void decode_codes(lb_qtensor *q, int64_t row, const uint8_t *bits) {
    const int k = q->spec.bits, V = lb_trellis_step_weights(&q->spec);
    /* the second weights of the steps this row's bytes cover: code 0 (the
     * missing row of the tail has none in lb_qtensor) */
    if (V == 2 && row < q->rows && (!q->spec.seq_down || row % 2))
        memset(q->codes + row * q->cols_padded, 0, (size_t)q->cols_padded);
    for (int64_t j = 0; j < q->cols_padded / V; j++) *stored_code(q, row, j) = (uint8_t)lb_get_bits(bits, (uint64_t)(j * k), k);
}

static lb_layout layout_of(const lb_qtensor *q) {
    return (lb_layout){.rows = q->rows, .cols = q->cols, .cols_padded = q->cols_padded, .group_len = q->group_len,
                       .groups_per_row = q->groups_per_row, .n_groups = q->n_groups};
}

static void encode_scale_tail(const lb_qtensor *q, uint8_t *dst) {
    if (!q->spec.scale_bits) {
        lb_lead_scales_encode_tail(q, dst);
        return;
    }
    const int b = q->spec.scale_bits;
    float S = largest_scale(q); /* the largest stored scale is S itself (code 0), unless every scale is 0 */
    lb_wr16(dst, lb_fp32_to_fp16(S));
    for (int64_t g = 0; g < q->n_groups; g++) lb_put_bits(dst + 2, (uint64_t)(g * b), scale_code(b, S, q->scale[g]), b);
}

static void decode_scale_tail(lb_qtensor *q, const uint8_t *src) {
    if (!q->spec.scale_bits) {
        lb_lead_scales_decode_tail(q, src);
        return;
    }
    const int b = q->spec.scale_bits;
    float S = lb_fp16_to_fp32(lb_rd16(src));
    for (int64_t g = 0; g < q->n_groups; g++) {
        q->scale[g] = coded_scale(b, S, lb_get_bits(src + 2, (uint64_t)(g * b), b));
        q->offset[g] = 0.0f;
    }
}

static void trellis_encode_tail(const lb_qtensor *q, uint8_t *dst) {
    encode_scale_tail(q, dst);
    lb_layout l = layout_of(q);
    if (has_phantom_row(&q->spec, q->rows)) encode_codes(q, q->rows, dst + scale_tail_bytes(&q->spec, &l));
}

static void trellis_decode_tail(lb_qtensor *q, const uint8_t *src) {
    decode_scale_tail(q, src);
    lb_layout l = layout_of(q);
    if (has_phantom_row(&q->spec, q->rows)) decode_codes(q, q->rows, src + scale_tail_bytes(&q->spec, &l));
}

float lb_trellis_stored_scale(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row, int64_t g) {
    if (!s->scale_bits) return lb_lead_scale(l, data, row, g);
    const uint8_t *tail = data + (size_t)l->rows * l->row_bytes;
    unsigned c = lb_get_bits(tail + 2, (uint64_t)((row * l->groups_per_row + g) * s->scale_bits), s->scale_bits);
    return coded_scale(s->scale_bits, lb_fp16_to_fp32(lb_rd16(tail)), c);
}

/* Coded scales are stored as the encoder writes them: S is the largest
 * scale, so some group has code 0, unless every group is 0; and S is not
 * negative. Other tails decode to values that no encoding reproduces. */
static lb_status trellis_check_bytes(const lb_qspec *s, const lb_layout *l, const uint8_t *data) {
    if (!s->scale_bits) return LB_OK;
    const uint8_t *tail = data + (size_t)l->rows * l->row_bytes;
    const unsigned zero = (1u << s->scale_bits) - 1;
    int nonzero = 0, top = 0;
    for (int64_t g = 0; g < l->n_groups; g++) {
        unsigned c = lb_get_bits(tail + 2, (uint64_t)(g * s->scale_bits), s->scale_bits);
        nonzero |= c != zero;
        top |= c == 0;
    }
    if (nonzero && !top) return lb_fail(LB_ERR_FORMAT, "trellis coded scales: no group has code 0 (the top scale)");
    if (nonzero && lb_fp16_to_fp32(lb_rd16(tail)) < 0.0f)
        return lb_fail(LB_ERR_FORMAT, "trellis coded scales: the top scale is negative");
    return LB_OK;
}

static int trellis_levels(const lb_qspec *s) { return 1 << s->bits; } /* the codes; no level has a value alone */

static void trellis_encode_row(const lb_qtensor *q, int64_t row, uint8_t *dst) {
    if (!q->spec.scale_bits) lb_lead_scales_encode(q, row, dst);
    encode_codes(q, row, dst + (q->spec.scale_bits ? 0 : 2 * q->groups_per_row));
}

static void trellis_decode_row(lb_qtensor *q, int64_t row, const uint8_t *src) {
    if (!q->spec.scale_bits) lb_lead_scales_decode(q, row, src); /* else the tail has them */
    decode_codes(q, row, src + (q->spec.scale_bits ? 0 : 2 * q->groups_per_row));
}

/* four iid uniform bytes: mean 510, variance 4 (256^2 - 1) / 12 = 21845 */
static float byte_sum(uint32_t x) {
    int y = (int)(x & 255) + (int)(x >> 8 & 255) + (int)(x >> 16 & 255) + (int)(x >> 24);
    return (float)(y - 510) / 147.800537f;
}

float lb_trellis_1mad(uint32_t state) { return byte_sum(state * 34038481u + 76625530u); }

/* the generator's next output for the second value: over the 2^16 states
 * the two correlate by -0.0006 and each quadrant holds 25.0% (tests) */
void lb_trellis_1mad2(uint32_t state, float out[2]) {
    uint32_t x = state * 34038481u + 76625530u;
    out[0] = byte_sum(x);
    out[1] = byte_sum(x * 34038481u + 76625530u);
}

void lb_trellis_segment(int64_t n, int64_t i, int64_t *start, int64_t *len) {
    lb_trellis_step_segment(n, 1, i, start, len);
}

int64_t lb_trellis_segments(int64_t n) { return lb_trellis_step_segments(n, 1); }

int64_t lb_trellis_step_segments(int64_t n, int V) {
    const int64_t steps = (n + V - 1) / V, most = LB_TRELLIS_MAX_SEQ / V;
    return (steps + most - 1) / most;
}

void lb_trellis_step_segment(int64_t n, int V, int64_t i, int64_t *start, int64_t *len) {
    const int64_t steps = (n + V - 1) / V, pieces = lb_trellis_step_segments(n, V);
    int64_t s0 = i * steps / pieces, s1 = (i + 1) * steps / pieces;
    *start = s0 * V;
    *len = (s1 * V < n ? s1 * V : n) - *start;
}

void lb_trellis_decode_steps(int L, int k, int V, const uint8_t *codes, int64_t T, float *out) {
    const int n = L / k;
    uint32_t s = 0;
    for (int j = n - 1; j >= 1; j--) s = s << k | codes[((T - j) % T + T) % T]; /* the wrapped-in codes */
    for (int64_t i = 0; i < T; i++) {
        s = (s << k | codes[i]) & ((1u << L) - 1);
        if (V == 2) lb_trellis_1mad2(s, out + 2 * i);
        else out[i] = lb_trellis_1mad(s);
    }
}

void lb_trellis_decode_seq(int L, int k, const uint8_t *codes, int64_t T, float *out) {
    lb_trellis_decode_steps(L, k, 1, codes, T, out);
}

const uint8_t *lb_trellis_row_codes(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row) {
    return row < l->rows ? data + (size_t)row * l->row_bytes + lead_bytes(s, l)
                         : data + (size_t)l->rows * l->row_bytes + scale_tail_bytes(s, l);
}

/* V = 1: the row's own codes (both parities); V = 2: the step's rows
 * 2p, 2p + 1 split the columns by parity (column c at index c / 2), and
 * row `rows` (odd rows) is the tail's */
const uint8_t *lb_trellis_down_codes(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row, int j) {
    return lb_trellis_row_codes(s, l, data, lb_trellis_step_weights(s) == 1 ? row : row - row % 2 + j);
}

/* down: weight (row, c)'s sequence is column c's piece of steps holding
 * row; its state, the codes of the n steps ending at row's, circularly */
static void dequantize_down(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row, float *out) {
    const int k = s->bits, n = s->state_bits / k, V = lb_trellis_step_weights(s);
    int64_t p = 0, start, len;
    do lb_trellis_step_segment(l->rows, V, p++, &start, &len);
    while (start + len <= row);
    const int64_t steps = (len + V - 1) / V, t = (row - start) / V;
    const uint8_t *src[2][LB_TRELLIS_MAX_STATE]; /* each step of the state, oldest first, per column parity */
    for (int b = n - 1; b >= 0; b--)
        for (int j = 0; j < 2; j++)
            src[j][n - 1 - b] = lb_trellis_down_codes(s, l, data, start + V * ((((t - b) % steps) + steps) % steps), j);
    int64_t group = -1;
    float a = 0.0f;
    for (int64_t c = 0; c < l->cols; c++) {
        int64_t g = l->groups_per_row ? c / l->group_len : 0;
        if (g != group) a = lb_trellis_stored_scale(s, l, data, row, group = g); /* once per group */
        const uint64_t at = (uint64_t)(V == 2 ? c / 2 : c) * (uint64_t)k;
        uint32_t state = 0;
        for (int i = 0; i < n; i++) state = state << k | lb_get_bits(src[c % 2][i], at, k);
        float pair[2];
        if (V == 2) lb_trellis_1mad2(state, pair);
        out[c] = a * (V == 2 ? pair[(row - start) % 2] : lb_trellis_1mad(state));
    }
}

/* the sequences of a row: per group for g<N>, else pieces of the padded row */
static void trellis_dequantize_row(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row,
                                   float *out) {
    if (s->seq_down) {
        dequantize_down(s, l, data, row, out);
        return;
    }
    const int V = lb_trellis_step_weights(s);
    const uint8_t *bits = lb_trellis_row_codes(s, l, data, row);
    int64_t span = l->groups_per_row ? l->group_len : l->cols_padded, n_spans = l->cols_padded / span;
    uint8_t codes[LB_TRELLIS_MAX_SEQ];
    float v[LB_TRELLIS_MAX_SEQ];
    for (int64_t g = 0; g < n_spans; g++) {
        float a = lb_trellis_stored_scale(s, l, data, row, l->groups_per_row ? g : 0);
        for (int64_t p = 0; p < lb_trellis_step_segments(span, V); p++) {
            int64_t start, len;
            lb_trellis_step_segment(span, V, p, &start, &len); /* span is even: whole steps */
            int64_t c0 = g * span + start, steps = len / V;
            for (int64_t j = 0; j < steps; j++)
                codes[j] = (uint8_t)lb_get_bits(bits, (uint64_t)((c0 / V + j) * s->bits), s->bits);
            lb_trellis_decode_steps(s->state_bits, s->bits, V, codes, steps, v);
            for (int64_t j = 0; j < len && c0 + j < l->cols; j++) out[c0 + j] = a * v[j];
        }
    }
}

const lb_format_family lb_trellis_family = {
    .name = "trellis",
    .names = "trellis1..trellis4, trellis1..trellis6:v2",
    .grid = LB_GRID_TRELLIS,
    .option_slots = {"group size", "state bits", "direction", "scale bits", "weights per step"},
    .match = trellis_match,
    .parse_option = trellis_parse_option,
    .format = trellis_format,
    .validate = trellis_validate,
    .row_bytes = trellis_row_bytes,
    .tail_bytes = trellis_tail_bytes,
    .store_scales = trellis_store_scales,
    .levels = trellis_levels,
    .encode_row = trellis_encode_row,
    .decode_row = trellis_decode_row,
    .encode_tail = trellis_encode_tail,
    .decode_tail = trellis_decode_tail,
    .check_bytes = trellis_check_bytes,
    .dequantize_row = trellis_dequantize_row,
};
