/* Learned vector codebooks (VPTQ / AQLM family; docs/FORMATS.md "vq",
 * docs/methods/vq.md): every d consecutive weights of a row are one code
 * of c bits into a codebook of 2^c vectors that the quantizer learned for
 * this tensor (weighted k-means, src/quant/vq_kmeans.c) and that is stored
 * with it, in fp16, in the tensor tail.
 *
 *   vq<d>x<c>[:r<S>][:row|:tensor]
 *     d  weights per code, 2..16
 *     c  bits per code, 1..16 (2^c codewords per codebook)
 *     S  stages (1..4, default 1): S codebooks, each with its own code per
 *        vector and its own scale; stage s codes what stages < s left
 *        (residual VQ; an additive, AQLM-style encoding of the same sum
 *        is a choice of the method, not of the bytes)
 * The value of weight (r, c) is sum over stages s of
 * scale_s(group) * book_s[code_s(r, c / d)][c % d], one fp16 scale per row
 * and stage (":row", the default) or per tensor and stage (":tensor").
 *
 * Row layout: [fp16 scale of each stage (row scales only)][codes: stage 0's
 * code of every vector of the row, then stage 1's, ..., each c bits,
 * little-endian bit stream, the row padded to a whole byte]. Rows are
 * padded to a multiple of d weights (the padding's codes are stored and
 * counted). Tail: [codebooks: S x 2^c x d fp16 values, stage by stage,
 * codeword by codeword][fp16 scale of each stage (tensor scales only)].
 * A codebook value that is not finite makes the bytes corrupt (refused at
 * load, check_bytes).
 *
 * bpw = (rows x (16 S [row scales] + ceil(S c cols_padded / d / 8) x 8)
 *        + 16 S 2^c d + 16 S [tensor scales]) / (rows x cols). */
#include "format_internal.h"

#include <math.h>
#include <string.h>

enum { SLOT_STAGES, SLOT_GROUP };


/* "vq<d>x<c>" */
static int vq_match(const char *head, lb_qspec *s) {
    if (strncmp(head, "vq", 2)) return 0;
    char buf[32];
    const char *x = strchr(head + 2, 'x');
    size_t nd = x ? (size_t)(x - head - 2) : 0;
    int d = 0, c = 0;
    if (x && nd > 0 && nd < sizeof buf) {
        memcpy(buf, head + 2, nd);
        buf[nd] = 0;
    }
    if (!x || nd == 0 || nd >= sizeof buf || !lb_parse_small_int(buf, &d) || !lb_parse_small_int(x + 1, &c) ||
        d < 2 || d > LB_VEC_MAX_DIM || c < 1 || c > 16) {
        lb_fail(LB_ERR_INVALID,
                "'%s': vq<d>x<c> takes d = 2..%d weights per code and c = 1..16 bits per code (e.g. vq8x16: "
                "2^16 codewords of 8 weights)",
                head, LB_VEC_MAX_DIM);
        return LB_OPTION_FAILED;
    }
    s->vec_dim = d;
    s->bits = c;
    s->vec_stages = 1;
    s->group = LB_GROUP_ROW;
    return 1;
}

static int vq_parse_option(lb_qspec *s, const char *tok, unsigned seen) {
    (void)seen;
    if (!strcmp(tok, "row")) s->group = LB_GROUP_ROW;
    else if (!strcmp(tok, "tensor")) s->group = LB_GROUP_TENSOR;
    else if (tok[0] == 'r') {
        int k;
        if (!lb_parse_small_int(tok + 1, &k) || k < 1 || k > LB_VEC_MAX_STAGES) {
            lb_fail(LB_ERR_INVALID, "'%s': vq stages are r1..r%d (codebooks summed, residual VQ)", tok,
                    LB_VEC_MAX_STAGES);
            return LB_OPTION_FAILED;
        }
        s->vec_stages = k;
        return SLOT_STAGES;
    } else return LB_OPTION_UNKNOWN;
    return SLOT_GROUP;
}

static void vq_format(const lb_qspec *s, char *buf, size_t n) {
    if (s->vec_stages > 1)
        snprintf(buf, n, "vq%dx%d:r%d:%s", s->vec_dim, s->bits, s->vec_stages,
                 s->group == LB_GROUP_TENSOR ? "tensor" : "row");
    else snprintf(buf, n, "vq%dx%d:%s", s->vec_dim, s->bits, s->group == LB_GROUP_TENSOR ? "tensor" : "row");
}

static lb_status vq_validate(const lb_qspec *s) {
    if (s->vec_dim < 2 || s->vec_dim > LB_VEC_MAX_DIM)
        return lb_fail(LB_ERR_INVALID, "vq codes cover 2..%d weights, not %d", LB_VEC_MAX_DIM, s->vec_dim);
    if (s->bits < 1 || s->bits > 16) return lb_fail(LB_ERR_INVALID, "vq codes are 1..16 bits, not %d", s->bits);
    if (s->vec_stages < 1 || s->vec_stages > LB_VEC_MAX_STAGES)
        return lb_fail(LB_ERR_INVALID, "vq takes 1..%d stages, not %d", LB_VEC_MAX_STAGES, s->vec_stages);
    if (s->group != LB_GROUP_ROW && s->group != LB_GROUP_TENSOR)
        return lb_fail(LB_ERR_INVALID, "vq takes one scale per row or per tensor ('row', 'tensor'), not groups of %d",
                       s->group);
    return LB_OK;
}

/* rows padded to whole vectors; one group per row or per tensor */
static void vq_shape(const lb_qspec *s, lb_layout *l) {
    l->cols_padded = lb_round_up(l->cols, s->vec_dim);
    l->group_len = l->cols_padded;
    l->groups_per_row = s->group == LB_GROUP_ROW ? 1 : 0;
    l->n_groups = s->group == LB_GROUP_ROW ? l->rows : 1;
}


static int64_t vecs_of(const lb_qspec *s, const lb_layout *l) { return l->cols_padded / s->vec_dim; }

static size_t vq_row_bytes(const lb_qspec *s, const lb_layout *l) {
    uint64_t bits = (uint64_t)vecs_of(s, l) * (uint64_t)s->vec_stages * (uint64_t)s->bits;
    return lb_vq_lead_bytes(s, l) + (size_t)((bits + 7) / 8);
}


static size_t vq_tail_bytes(const lb_qspec *s, const lb_layout *l) {
    return lb_vq_book_bytes(s) + (l->groups_per_row ? 0 : 2 * (size_t)s->vec_stages);
}

static lb_status vq_qtensor_init(lb_qtensor *q) {
    lb_status st = lb_vec_qtensor_init(q, q->spec.vec_dim, q->spec.vec_stages);
    if (st != LB_OK) return st;
    q->vbook_size = lb_vq_book_size(&q->spec);
    q->vbook = lb_calloc((size_t)(q->vec_stages * q->vbook_size * q->vec_dim), sizeof(float));
    return q->vbook ? LB_OK : LB_ERR_NOMEM;
}

/* scales and codebooks as stored: fp16 */
static lb_status vq_store_scales(lb_qtensor *q) {
    lb_status st = lb_vec_store_scales(q);
    if (st != LB_OK) return st;
    for (int64_t i = 0; i < q->vec_stages * q->vbook_size * q->vec_dim; i++) {
        q->vbook[i] = lb_round_fp16(q->vbook[i]);
        if (!isfinite(q->vbook[i]))
            return lb_fail(LB_ERR_NUMERIC, "vq: codebook value %lld is not finite in fp16", (long long)i);
    }
    return LB_OK;
}

static lb_status vq_check_qtensor(const lb_qtensor *q) {
    for (int64_t i = 0; i < q->vec_stages * q->vbook_size * q->vec_dim; i++)
        if (!isfinite(q->vbook[i]))
            return lb_fail(LB_ERR_NUMERIC, "vq: codebook value %lld is not finite", (long long)i);
    return LB_OK;
}

static int vq_vec_code_count(const lb_qspec *s, int stage) {
    (void)stage;
    return (int)lb_vq_book_size(s);
}

static void vq_vec_codeword(const lb_qtensor *q, int stage, unsigned code, float *out) {
    memcpy(out, q->vbook + ((int64_t)stage * q->vbook_size + code) * q->vec_dim, (size_t)q->vec_dim * sizeof(float));
}

/* the plain scan: every codeword, weighted squared error, the lowest index on a tie */
static unsigned vq_vec_nearest(const lb_qtensor *q, int stage, const float *x, const float *wt) {
    const int d = q->vec_dim;
    const float *book = q->vbook + (int64_t)stage * q->vbook_size * d;
    unsigned best = 0;
    double best_e = INFINITY;
    for (int64_t c = 0; c < q->vbook_size; c++) {
        const float *cw = book + c * d;
        double e = 0;
        for (int i = 0; i < d; i++) {
            double t = (double)x[i] - cw[i];
            e += (wt ? (double)wt[i] : 1.0) * t * t;
        }
        if (e < best_e) best_e = e, best = (unsigned)c;
    }
    return best;
}

/* The codebooks are learned on what a stage codes divided by its RMS
 * (src/quant/vector.c), so the RMS is their scale. */
static float vq_vec_unit_scale(const lb_qtensor *q, int stage) {
    (void)q;
    (void)stage;
    return 1.0f;
}

static void vq_encode_row(const lb_qtensor *q, int64_t row, uint8_t *dst) {
    const int c = q->spec.bits;
    if (q->groups_per_row) lb_vec_scales_encode(q, row, dst);
    uint8_t *p = dst + (q->groups_per_row ? 2 * (size_t)q->vec_stages : 0);
    for (int t = 0; t < q->vec_stages; t++)
        for (int64_t v = 0; v < q->vecs_per_row; v++)
            lb_put_code16(p, (uint64_t)((t * q->vecs_per_row + v) * c), *lb_qtensor_vcode(q, row, v, t), c);
}

static void vq_decode_row(lb_qtensor *q, int64_t row, const uint8_t *src) {
    const int c = q->spec.bits;
    if (q->groups_per_row) lb_vec_scales_decode(q, row, src);
    const uint8_t *p = src + (q->groups_per_row ? 2 * (size_t)q->vec_stages : 0);
    for (int t = 0; t < q->vec_stages; t++)
        for (int64_t v = 0; v < q->vecs_per_row; v++)
            *lb_qtensor_vcode(q, row, v, t) = (uint16_t)lb_get_code16(p, (uint64_t)((t * q->vecs_per_row + v) * c), c);
}

static void vq_encode_tail(const lb_qtensor *q, uint8_t *dst) {
    int64_t nb = q->vec_stages * q->vbook_size * q->vec_dim;
    for (int64_t i = 0; i < nb; i++) lb_wr16(dst + 2 * i, lb_fp32_to_fp16(q->vbook[i]));
    if (!q->groups_per_row) lb_vec_scales_encode(q, 0, dst + 2 * nb);
}

static void vq_decode_tail(lb_qtensor *q, const uint8_t *src) {
    int64_t nb = q->vec_stages * q->vbook_size * q->vec_dim;
    for (int64_t i = 0; i < nb; i++) q->vbook[i] = lb_fp16_to_fp32(lb_rd16(src + 2 * i));
    if (!q->groups_per_row) lb_vec_scales_decode(q, 0, src + 2 * nb);
}

/* a codebook value that is not a number is corrupt data */
static lb_status vq_check_bytes(const lb_qspec *s, const lb_layout *l, const uint8_t *data) {
    const uint8_t *book = data + (size_t)l->rows * l->row_bytes;
    for (size_t i = 0; i < lb_vq_book_bytes(s) / 2; i++)
        if (!isfinite(lb_fp16_to_fp32(lb_rd16(book + 2 * i))))
            return lb_fail(LB_ERR_FORMAT, "vq: codebook value %zu (stage %zu, codeword %zu) is not finite", i,
                           i / ((size_t)lb_vq_book_size(s) * (size_t)s->vec_dim),
                           i / (size_t)s->vec_dim % (size_t)lb_vq_book_size(s));
    return LB_OK;
}

static void vq_dequantize_row(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row, float *out) {
    const int d = s->vec_dim, c = s->bits;
    const uint8_t *tail = data + (size_t)l->rows * l->row_bytes, *scales = lb_vq_scales_at(s, l, data, row);
    const uint8_t *codes = data + (size_t)row * l->row_bytes + lb_vq_lead_bytes(s, l);
    int64_t nvec = vecs_of(s, l), K = lb_vq_book_size(s);
    memset(out, 0, (size_t)l->cols * sizeof(float));
    for (int t = 0; t < s->vec_stages; t++) {
        float a = lb_fp16_to_fp32(lb_rd16(scales + 2 * t));
        const uint8_t *book = tail + 2 * (size_t)(t * K * d);
        for (int64_t k = 0; k < nvec; k++) {
            unsigned code = lb_get_code16(codes, (uint64_t)((t * nvec + k) * c), c);
            const uint8_t *cw = book + 2 * (size_t)code * (size_t)d;
            for (int i = 0; i < d && d * k + i < l->cols; i++)
                out[d * k + i] += a * lb_fp16_to_fp32(lb_rd16(cw + 2 * i));
        }
    }
}

const lb_format_family lb_vq_family = {
    .name = "vq",
    .names = "vq<d>x<c>",
    .grid = LB_GRID_VECTOR,
    .option_slots = {"stages", "scale"},
    .match = vq_match,
    .parse_option = vq_parse_option,
    .format = vq_format,
    .validate = vq_validate,
    .shape = vq_shape,
    .row_bytes = vq_row_bytes,
    .tail_bytes = vq_tail_bytes,
    .qtensor_init = vq_qtensor_init,
    .store_scales = vq_store_scales,
    .check_qtensor = vq_check_qtensor,
    .encode_row = vq_encode_row,
    .decode_row = vq_decode_row,
    .encode_tail = vq_encode_tail,
    .decode_tail = vq_decode_tail,
    .check_bytes = vq_check_bytes,
    .dequantize_row = vq_dequantize_row,
    .vec_code_count = vq_vec_code_count,
    .vec_codeword = vq_vec_codeword,
    .vec_nearest = vq_vec_nearest,
    .vec_unit_scale = vq_vec_unit_scale,
};
