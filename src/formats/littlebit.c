/* Low-rank binary factors in the spirit of LittleBit (Lee et al. 2025,
 * arXiv 2506.13771; docs/methods/littlebit.md): a rows x cols weight is
 *
 *   W ~ diag(h) U diag(l) V^T diag(g),   U in {-1,+1}^(rows x R), V in {-1,+1}^(cols x R),
 *
 * h (rows), g (cols) and l (R) fp16. So w[r][c] = h[r] (sum_j u(r,j) l[j] v(c,j)) g[c].
 * Not one code per weight: at rank R a weight costs R (rows + cols) / (rows cols)
 * bits of signs, which is below 1 when R < rows cols / (rows + cols).
 *
 * Layout (spec "littlebit:r<R>", R = 1..1024):
 *   row r:  [h[r] fp16][u(r, 0..R-1): R bits, bit j = 1 for +1, little-endian, padded to whole bytes]
 *   tail:   [l: R fp16][g: cols fp16][per column c: v(c, 0..R-1), the same bit rows]
 * row_bytes = 2 + ceil(R / 8), tail = 2 R + 2 cols + cols ceil(R / 8);
 * bpw = 8 (rows row_bytes + tail) / (rows cols); for R a multiple of 8 that is
 * (R (rows + cols) + 16 (rows + cols + R)) / (rows cols): 0.258 at 4096 x 4096,
 * R = 512; stories260K 64 x 64 at R = 8: 0.781.
 *
 * dequantize_row is the specification and is slow: R operations per weight
 * (rows cols R per matrix, not rows cols), fine as a reference and for small
 * models. The matmul kernels (src/kernels/binfam.h: littlebit_avx2,
 * littlebit_ref) compute y = h * (U (l * (V^T (g * x)))) instead, R (rows +
 * cols) per input row. */
#include "format_internal.h"

#include <math.h>
#include <string.h>

#define LITTLEBIT_MAX_RANK 1024

enum { SLOT_RANK };

static int littlebit_match(const char *head, lb_qspec *s) {
    if (strcmp(head, "littlebit")) return 0;
    s->rank = 0; /* no default: a rank only means something against a shape; validate asks for one */
    return 1;
}

static int littlebit_parse_option(lb_qspec *s, const char *tok, unsigned seen) {
    (void)seen;
    int r;
    if (tok[0] != 'r' || !lb_parse_small_int(tok + 1, &r)) return LB_OPTION_UNKNOWN;
    if (r < 1 || r > LITTLEBIT_MAX_RANK) {
        lb_fail(LB_ERR_INVALID, "littlebit rank %d is not in 1..%d", r, LITTLEBIT_MAX_RANK);
        return LB_OPTION_FAILED;
    }
    s->rank = r;
    return SLOT_RANK;
}

static void littlebit_format(const lb_qspec *s, char *buf, size_t n) { snprintf(buf, n, "littlebit:r%d", s->rank); }

static lb_status littlebit_validate(const lb_qspec *s) {
    if (s->rank == 0) return lb_fail(LB_ERR_INVALID, "littlebit needs a rank, e.g. littlebit:r8 (r1..r%d)", LITTLEBIT_MAX_RANK);
    if (s->rank < 1 || s->rank > LITTLEBIT_MAX_RANK)
        return lb_fail(LB_ERR_INVALID, "littlebit rank %d is not in 1..%d", s->rank, LITTLEBIT_MAX_RANK);
    return LB_OK;
}

/* no column padding and a single (unused) group: the parameters are h, g, l */
static void littlebit_shape(const lb_qspec *s, lb_layout *l) {
    (void)s;
    l->cols_padded = l->cols;
    l->group_len = l->cols;
    l->groups_per_row = 0;
    l->n_groups = 1;
}

static size_t sign_bytes(int rank) { return (size_t)(rank + 7) / 8; }

static size_t littlebit_row_bytes(const lb_qspec *s, const lb_layout *l) {
    (void)l;
    return 2 + sign_bytes(s->rank);
}

static size_t littlebit_tail_bytes(const lb_qspec *s, const lb_layout *l) {
    return 2 * (size_t)s->rank + 2 * (size_t)l->cols + (size_t)l->cols * sign_bytes(s->rank);
}

static int littlebit_levels(const lb_qspec *s) {
    (void)s;
    return 1; /* codes are unused: all 0 */
}

static float littlebit_level(const lb_qspec *s, int code) {
    (void)s;
    (void)code;
    return 0.0f;
}

static lb_status littlebit_qtensor_init(lb_qtensor *q) {
    size_t rows = (size_t)q->rows, cols = (size_t)q->cols, R = (size_t)q->spec.rank;
    q->lowrank.rank = q->spec.rank;
    q->lowrank.u_sign = lb_calloc(rows, R);
    q->lowrank.v_sign = lb_calloc(cols, R);
    q->lowrank.h = lb_calloc(rows, sizeof(float));
    q->lowrank.g = lb_calloc(cols, sizeof(float));
    q->lowrank.l = lb_calloc(R, sizeof(float));
    if (!q->lowrank.u_sign || !q->lowrank.v_sign || !q->lowrank.h || !q->lowrank.g || !q->lowrank.l)
        return LB_ERR_NOMEM;
    return LB_OK;
}

static lb_status round_fp16_all(float *x, int64_t n, const char *what) {
    for (int64_t i = 0; i < n; i++) {
        x[i] = lb_round_fp16(x[i]);
        if (!isfinite(x[i]))
            return lb_fail(LB_ERR_NUMERIC, "littlebit: %s[%lld] is not finite in fp16 (beyond +-65504?)", what,
                           (long long)i);
    }
    return LB_OK;
}

static lb_status littlebit_store_scales(lb_qtensor *q) {
    q->scale[0] = 0.0f; /* the one group's scale and offset are unused */
    q->offset[0] = 0.0f;
    lb_status st = round_fp16_all(q->lowrank.h, q->rows, "h");
    if (st == LB_OK) st = round_fp16_all(q->lowrank.g, q->cols, "g");
    if (st == LB_OK) st = round_fp16_all(q->lowrank.l, q->lowrank.rank, "l");
    return st;
}

static lb_status check_finite_vector(const float *x, int64_t n, const char *what) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return lb_fail(LB_ERR_NUMERIC, "littlebit: %s[%lld] is not finite", what, (long long)i);
    return LB_OK;
}

static lb_status littlebit_check_qtensor(const lb_qtensor *q) {
    if (q->lowrank.rank != q->spec.rank)
        return lb_fail(LB_ERR_INVALID, "littlebit: factors of rank %d for a rank-%d spec", q->lowrank.rank, q->spec.rank);
    size_t nu = (size_t)q->rows * (size_t)q->lowrank.rank, nv = (size_t)q->cols * (size_t)q->lowrank.rank;
    for (size_t i = 0; i < nu; i++)
        if (q->lowrank.u_sign[i] > 1) return lb_fail(LB_ERR_INVALID, "littlebit: sign byte %d of U is not 0/1", q->lowrank.u_sign[i]);
    for (size_t i = 0; i < nv; i++)
        if (q->lowrank.v_sign[i] > 1) return lb_fail(LB_ERR_INVALID, "littlebit: sign byte %d of V is not 0/1", q->lowrank.v_sign[i]);
    lb_status st = check_finite_vector(q->lowrank.h, q->rows, "h");
    if (st == LB_OK) st = check_finite_vector(q->lowrank.g, q->cols, "g");
    if (st == LB_OK) st = check_finite_vector(q->lowrank.l, q->lowrank.rank, "l");
    return st;
}

static void put_fp16(uint8_t *dst, float v) { lb_wr16(dst, lb_fp32_to_fp16(v)); }

static float get_fp16(const uint8_t *src) { return lb_fp16_to_fp32(lb_rd16(src)); }

static void pack_signs(const uint8_t *sign, int R, uint8_t *dst) {
    for (int j = 0; j < R; j++) lb_put_bits(dst, (uint64_t)j, sign[j], 1);
}

static void unpack_signs(const uint8_t *src, int R, uint8_t *sign) {
    for (int j = 0; j < R; j++) sign[j] = (uint8_t)(src[j >> 3] >> (j & 7) & 1);
}

static void littlebit_encode_row(const lb_qtensor *q, int64_t row, uint8_t *dst) {
    int R = q->lowrank.rank;
    put_fp16(dst, q->lowrank.h[row]);
    pack_signs(q->lowrank.u_sign + row * R, R, dst + 2);
}

static void littlebit_decode_row(lb_qtensor *q, int64_t row, const uint8_t *src) {
    int R = q->lowrank.rank;
    q->lowrank.h[row] = get_fp16(src);
    unpack_signs(src + 2, R, q->lowrank.u_sign + row * R);
}

static void littlebit_encode_tail(const lb_qtensor *q, uint8_t *dst) {
    int R = q->lowrank.rank;
    for (int j = 0; j < R; j++) put_fp16(dst + 2 * j, q->lowrank.l[j]);
    dst += 2 * (size_t)R;
    for (int64_t c = 0; c < q->cols; c++) put_fp16(dst + 2 * c, q->lowrank.g[c]);
    dst += 2 * (size_t)q->cols;
    for (int64_t c = 0; c < q->cols; c++) pack_signs(q->lowrank.v_sign + c * R, R, dst + (size_t)c * sign_bytes(R));
}

static void littlebit_decode_tail(lb_qtensor *q, const uint8_t *src) {
    int R = q->lowrank.rank;
    for (int j = 0; j < R; j++) q->lowrank.l[j] = get_fp16(src + 2 * j);
    src += 2 * (size_t)R;
    for (int64_t c = 0; c < q->cols; c++) q->lowrank.g[c] = get_fp16(src + 2 * c);
    src += 2 * (size_t)q->cols;
    for (int64_t c = 0; c < q->cols; c++) unpack_signs(src + (size_t)c * sign_bytes(R), R, q->lowrank.v_sign + c * R);
}

/* The one definition of a weight's value, shared by the packed and the
 * unpacked forms so both give the same float: coef[j] = u(r,j) l[j] for the
 * row, then h (sum_j v(c,j) coef[j]) g, summed in j order. */
static void row_coefficients(const uint8_t *u_sign, const float *l, int R, float *coef) {
    for (int j = 0; j < R; j++) coef[j] = u_sign[j] ? l[j] : -l[j];
}

static float weight_from(float h, const float *coef, const uint8_t *v_sign, int R, float g) {
    float acc = 0.0f;
    for (int j = 0; j < R; j++) acc += v_sign[j] ? coef[j] : -coef[j];
    return h * acc * g;
}

static float littlebit_value_at(const lb_qtensor *q, int64_t row, int64_t col) {
    int R = q->lowrank.rank;
    float coef[LITTLEBIT_MAX_RANK];
    row_coefficients(q->lowrank.u_sign + row * R, q->lowrank.l, R, coef);
    return weight_from(q->lowrank.h[row], coef, q->lowrank.v_sign + col * R, R, q->lowrank.g[col]);
}

static void littlebit_dequantize_row(const lb_qspec *s, const lb_layout *ly, const uint8_t *data, int64_t row,
                                     float *out) {
    const int R = s->rank;
    const size_t sb = sign_bytes(R);
    const uint8_t *src = data + (size_t)row * ly->row_bytes;
    const uint8_t *tail = data + (size_t)ly->rows * ly->row_bytes;
    const uint8_t *g16 = tail + 2 * (size_t)R, *vbits = g16 + 2 * (size_t)ly->cols;
    float l[LITTLEBIT_MAX_RANK], coef[LITTLEBIT_MAX_RANK];
    uint8_t sign[LITTLEBIT_MAX_RANK];
    for (int j = 0; j < R; j++) l[j] = get_fp16(tail + 2 * j);
    unpack_signs(src + 2, R, sign);
    row_coefficients(sign, l, R, coef);
    float h = get_fp16(src);
    for (int64_t c = 0; c < ly->cols; c++) {
        unpack_signs(vbits + (size_t)c * sb, R, sign);
        out[c] = weight_from(h, coef, sign, R, get_fp16(g16 + 2 * c));
    }
}

const lb_format_family lb_littlebit_family = {
    .name = "littlebit",
    .names = "littlebit:r<R>",
    .grid = LB_GRID_LOWRANK_BINARY,
    .option_slots = {"rank"},
    .match = littlebit_match,
    .parse_option = littlebit_parse_option,
    .format = littlebit_format,
    .validate = littlebit_validate,
    .shape = littlebit_shape,
    .row_bytes = littlebit_row_bytes,
    .tail_bytes = littlebit_tail_bytes,
    .levels = littlebit_levels,
    .level = littlebit_level,
    .value_at = littlebit_value_at,
    .qtensor_init = littlebit_qtensor_init,
    .store_scales = littlebit_store_scales,
    .check_qtensor = littlebit_check_qtensor,
    .encode_row = littlebit_encode_row,
    .decode_row = littlebit_decode_row,
    .encode_tail = littlebit_encode_tail,
    .decode_tail = littlebit_decode_tail,
    .dequantize_row = littlebit_dequantize_row,
};
