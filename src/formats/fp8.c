/* FP8 weights under a scale per group (issue 10 item 6): each weight one
 * byte, an 8-bit float, times its group's fp16 scale:
 *   fp8_e4m3  OCP E4M3FN: 1 sign, 4 exponent (bias 7), 3 mantissa bits; no
 *             infinities, S.1111.111 is NaN; largest 448, smallest 2^-9
 *   fp8_e5m2  1 sign, 5 exponent (bias 15), 2 mantissa bits, IEEE-like:
 *             exponent 31 holds the infinities and NaNs; largest 57344
 * Options: g<N> (16..256) | row (the default: one scale per output channel,
 * as FP8 checkpoints keep it) | tensor. Row layout: the row's fp16 scales,
 * then one FP8 byte per weight; a tensor scale sits in the tail
 * (lead_scales.c). w = scale * fp8(byte).
 *
 * Why a scale at all: weights of ~1e-2 sit at E4M3's subnormal end (2^-6 =
 * 0.016 is its smallest normal), where only 3 bits remain; the scale moves
 * a group's largest weight onto the format's largest value, and rtn's mse
 * rule searches below it (the grid is relative, so only the ends move).
 * The codebook is the finite bytes in byte order (254 for E4M3, 248 for
 * E5M2): a code is the index of its byte among them, so every code is a
 * number; stored data holding a NaN or an infinity is rejected as corrupt
 * (check_bytes). Rounding (nearest_level): RNE on the format's grid,
 * saturating at the largest finite value, as a hardware cast with
 * saturation does. */
#include "format_internal.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

enum { SLOT_GROUP };

static int mant_bits(const lb_qspec *s) { return s->exp_bits == 4 ? 3 : 2; }
static int bias(const lb_qspec *s) { return s->exp_bits == 4 ? 7 : 15; }

static int finite_byte(int exp_bits, unsigned b) {
    return exp_bits == 4 ? (b & 0x7f) != 0x7f : ((b >> 2) & 31) != 31;
}

/* the value of byte b, from its fields */
static float byte_value(int exp_bits, unsigned b) {
    int m = exp_bits == 4 ? 3 : 2, bi = exp_bits == 4 ? 7 : 15;
    int e = (int)(b >> m) & ((1 << exp_bits) - 1), man = (int)b & ((1 << m) - 1);
    float v = e == 0 ? ldexpf((float)man, 1 - bi - m) : ldexpf((float)((1 << m) + man), e - bi - m);
    return b & 0x80 ? -v : v;
}

/* per variant [e4m3, e5m2]: the value of every byte (non-finite: 0), the
 * finite bytes in order (code -> byte) and back (byte -> code) */
static struct {
    float value[256];
    uint8_t byte[256], code[256];
    int n;
} tab[2];
static pthread_once_t tab_once = PTHREAD_ONCE_INIT;
static void build(void) {
    for (int v = 0; v < 2; v++)
        for (unsigned b = 0; b < 256; b++) {
            int fin = finite_byte(v ? 5 : 4, b);
            tab[v].value[b] = fin ? byte_value(v ? 5 : 4, b) : 0.0f;
            if (fin) {
                tab[v].code[b] = (uint8_t)tab[v].n;
                tab[v].byte[tab[v].n++] = (uint8_t)b;
            }
        }
}
static int variant(const lb_qspec *s) {
    pthread_once(&tab_once, build);
    return s->exp_bits == 4 ? 0 : 1;
}

static float max_value(const lb_qspec *s) { return s->exp_bits == 4 ? 448.0f : 57344.0f; }

/* "fp8_e4m3" / "fp8_e5m2", default one scale per row */
static int fp8_match(const char *head, lb_qspec *s) {
    if (strcmp(head, "fp8_e4m3") && strcmp(head, "fp8_e5m2")) return 0;
    s->bits = 8;
    s->exp_bits = head[5] == '4' ? 4 : 5;
    s->group = LB_GROUP_ROW;
    return 1;
}

static int fp8_parse_option(lb_qspec *s, const char *tok, unsigned seen) {
    (void)seen;
    return lb_parse_group_option(s, tok, 1);
}

static void fp8_format(const lb_qspec *s, char *buf, size_t n) {
    char g[16];
    lb_group_text(s, g, sizeof g);
    snprintf(buf, n, "fp8_e%dm%d:%s", s->exp_bits, mant_bits(s), g);
}

static lb_status fp8_validate(const lb_qspec *s) {
    if (s->bits != 8 || (s->exp_bits != 4 && s->exp_bits != 5))
        return lb_fail(LB_ERR_INVALID, "fp8 codes are 8 bits with 4 (e4m3) or 5 (e5m2) exponent bits, not %d / %d",
                       s->bits, s->exp_bits);
    return lb_validate_group(s, 1);
}

static size_t fp8_row_bytes(const lb_qspec *s, const lb_layout *l) {
    (void)s;
    return lb_lead_scales_row_bytes(l) + (size_t)l->cols_padded;
}

static int fp8_levels(const lb_qspec *s) { return tab[variant(s)].n; }

static float fp8_level(const lb_qspec *s, int code) {
    int v = variant(s);
    return tab[v].value[tab[v].byte[code & 255]];
}

/* the byte of v rounded to the nearest finite FP8 value (ties to even), saturating */
static unsigned nearest_byte(const lb_qspec *s, float v) {
    if (!(v == v)) return 0;
    int m = mant_bits(s), emin = 1 - bias(s);
    unsigned sign = v < 0 ? 0x80u : 0u;
    float a = fabsf(v);
    if (a >= max_value(s)) return sign | (s->exp_bits == 4 ? 0x7eu : 0x7bu);
    int e;
    frexpf(a, &e); /* a in [2^(e-1), 2^e) */
    int step_exp = (e - 1 < emin ? emin : e - 1) - m;
    float r = ldexpf(nearbyintf(ldexpf(a, -step_exp)), step_exp); /* RNE on the binade's grid */
    if (r == 0.0f) return 0;
    if (r > max_value(s)) r = max_value(s);
    frexpf(r, &e);
    unsigned b;
    if (e - 1 < emin) { /* subnormal: r = man 2^(emin - m) */
        b = (unsigned)ldexpf(r, m - emin);
    } else {
        unsigned man = (unsigned)(ldexpf(r, m - (e - 1)) - (float)(1 << m));
        b = (unsigned)(e - 1 + bias(s)) << m | man;
    }
    return sign | b;
}

static int fp8_nearest_level(const lb_qspec *s, float v) { return tab[variant(s)].code[nearest_byte(s, v)]; }

static void fp8_encode_row(const lb_qtensor *q, int64_t row, uint8_t *dst) {
    const uint8_t *byte = tab[variant(&q->spec)].byte, *c = q->codes + row * q->cols_padded;
    lb_lead_scales_encode(q, row, dst);
    dst += 2 * q->groups_per_row;
    for (int64_t j = 0; j < q->cols_padded; j++) dst[j] = byte[c[j]];
}

static void fp8_decode_row(lb_qtensor *q, int64_t row, const uint8_t *src) {
    const uint8_t *code = tab[variant(&q->spec)].code, *b = src + 2 * q->groups_per_row;
    uint8_t *c = q->codes + row * q->cols_padded;
    lb_lead_scales_decode(q, row, src);
    for (int64_t j = 0; j < q->cols_padded; j++) c[j] = code[b[j]];
}

static void fp8_dequantize_row(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row, float *out) {
    const float *v = tab[variant(s)].value;
    const uint8_t *c = data + (size_t)row * l->row_bytes + 2 * (size_t)l->groups_per_row;
    for (int64_t j = 0; j < l->cols; j++) {
        float d = lb_lead_scale(l, data, row, l->groups_per_row ? j / l->group_len : 0);
        out[j] = d * v[c[j]];
    }
}

/* a stored NaN or infinity is corruption: no quantizer writes one */
static lb_status fp8_check_bytes(const lb_qspec *s, const lb_layout *l, const uint8_t *data) {
    for (int64_t r = 0; r < l->rows; r++) {
        const uint8_t *c = data + (size_t)r * l->row_bytes + 2 * (size_t)l->groups_per_row;
        for (int64_t j = 0; j < l->cols_padded; j++)
            if (!finite_byte(s->exp_bits, c[j]))
                return lb_fail(LB_ERR_FORMAT, "fp8 byte 0x%02x at row %lld, column %lld is not a finite value", c[j],
                               (long long)r, (long long)j);
    }
    return LB_OK;
}

const lb_format_family lb_fp8_family = {
    .name = "fp8",
    .names = "fp8_e4m3, fp8_e5m2",
    .grid = LB_GRID_ABSMAX,
    .option_slots = {"group size"},
    .match = fp8_match,
    .parse_option = fp8_parse_option,
    .format = fp8_format,
    .validate = fp8_validate,
    .row_bytes = fp8_row_bytes,
    .tail_bytes = lb_lead_scales_tail_bytes,
    .levels = fp8_levels,
    .level = fp8_level,
    .nearest_level = fp8_nearest_level,
    .encode_row = fp8_encode_row,
    .decode_row = fp8_decode_row,
    .encode_tail = lb_lead_scales_encode_tail,
    .decode_tail = lb_lead_scales_decode_tail,
    .check_bytes = fp8_check_bytes,
    .dequantize_row = fp8_dequantize_row,
};
