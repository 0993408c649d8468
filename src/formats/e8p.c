/* E8P lattice codes (QuIP#; docs/FORMATS.md "e8p", docs/methods/e8p.md):
 * every 8 consecutive weights of a row are one point of a codebook in
 * 8 dimensions times a scale; the codebooks are e8p_lattice.c's, computed,
 * never stored.
 *
 *   e8p2  one stage: a 16-bit E8P code per 8 weights (2 bits per weight)
 *   e8p3  E8P, then a second stage on what it left: an 8-bit code of the
 *         256-point E8 ball (1 bit per weight) at its own scale
 *   e8p4  E8P, then E8P again on the residual at its own scale
 * The value of weight (r, c) is sum over stages s of
 * scale_s * codeword_s(code_s(r, c / 8))[c % 8]. One fp16 scale per row and
 * stage (":row", the default), or per tensor and stage (":tensor").
 *
 * Row layout: [fp16 scale of each stage (row scales only)][stage 0: a
 * uint16 little-endian code per 8 weights][stage 1: uint16 (e8p4) or uint8
 * (e8p3) per 8 weights]. Rows are padded to a multiple of 8 weights (the
 * padding's codes are stored and counted). Tensor scales: one fp16 per
 * stage in the tail.
 *
 * bpw = (16 + 16 (e8p4) or 8 (e8p3)) / 8 per weight of the padded row, plus
 * 16 x stages per row (row scales) or per tensor:
 *   bpw = (bits x cols_padded + 16 x stages) / cols   (row scales). */
#include "format_internal.h"

#include <math.h>
#include <string.h>

enum { SLOT_GROUP };

/* "e8p" (= e8p2), "e8p2", "e8p3", "e8p4" */
static int e8p_match(const char *head, lb_qspec *s) {
    if (strncmp(head, "e8p", 3)) return 0;
    int k = 2;
    if (head[3] && (!lb_parse_small_int(head + 3, &k) || k < 2 || k > 4)) {
        lb_fail(LB_ERR_INVALID, "'%s': e8p<k> takes k = 2 (E8P), 3 (E8P + a 1-bit E8 stage) or 4 (two E8P stages)",
                head);
        return LB_OPTION_FAILED;
    }
    s->bits = k;
    s->group = LB_GROUP_ROW;
    return 1;
}

static int e8p_parse_option(lb_qspec *s, const char *tok, unsigned seen) {
    (void)seen;
    if (!strcmp(tok, "row")) s->group = LB_GROUP_ROW;
    else if (!strcmp(tok, "tensor")) s->group = LB_GROUP_TENSOR;
    else return LB_OPTION_UNKNOWN;
    return SLOT_GROUP;
}

static void e8p_format(const lb_qspec *s, char *buf, size_t n) {
    snprintf(buf, n, "e8p%d:%s", s->bits, s->group == LB_GROUP_TENSOR ? "tensor" : "row");
}

static lb_status e8p_validate(const lb_qspec *s) {
    if (s->bits < 2 || s->bits > 4) return lb_fail(LB_ERR_INVALID, "e8p codes are 2..4 bits per weight, not %d", s->bits);
    if (s->group != LB_GROUP_ROW && s->group != LB_GROUP_TENSOR)
        return lb_fail(LB_ERR_INVALID, "e8p takes one scale per row or per tensor ('row', 'tensor'), not groups of %d",
                       s->group);
    return LB_OK;
}

/* a row: its lead scales and every stage's codes (format_internal.h: lb_e8p_stage_offset) */
static size_t e8p_row_bytes(const lb_qspec *s, const lb_layout *l) { return lb_e8p_stage_offset(s, l, lb_e8p_stages(s)); }

static size_t e8p_tail_bytes(const lb_qspec *s, const lb_layout *l) {
    return l->groups_per_row ? 0 : 2 * (size_t)lb_e8p_stages(s);
}

/* scale: n_groups x stages; vcodes: rows x vectors x stages; no scalar codes */
static lb_status e8p_qtensor_init(lb_qtensor *q) { return lb_vec_qtensor_init(q, 8, lb_e8p_stages(&q->spec)); }

static int e8p_vec_code_count(const lb_qspec *s, int stage) { return 1 << lb_e8p_code_bits(s, stage); }

static void e8p_vec_codeword(const lb_qtensor *q, int stage, unsigned code, float *out) {
    if (lb_e8p_code_bits(&q->spec, stage) == 16) lb_e8p_codeword(code, out);
    else lb_e8_ball_codeword(code, out);
}

static unsigned e8p_vec_nearest(const lb_qtensor *q, int stage, const float *x, const float *wt) {
    return lb_e8p_code_bits(&q->spec, stage) == 16 ? lb_e8p_nearest(x, wt) : lb_e8_ball_nearest(x, wt);
}

/* Measured on iid N(0, 1) (20000 vectors; docs/methods/e8p.md): E8P's
 * squared error is least at 0.97 x the data's RMS (MSE 0.0922); on what
 * E8P leaves (a near-uniform error in its Voronoi cell), a second E8P stage
 * is best at 0.97 x that residual's RMS and the ball at 1.6 x. */
static float e8p_vec_unit_scale(const lb_qtensor *q, int stage) {
    return stage > 0 && lb_e8p_code_bits(&q->spec, stage) == 8 ? 1.6f : 0.97f;
}

static void e8p_encode_row(const lb_qtensor *q, int64_t row, uint8_t *dst) {
    lb_layout l = {.cols_padded = q->cols_padded, .groups_per_row = q->groups_per_row};
    if (q->groups_per_row) lb_vec_scales_encode(q, row, dst);
    for (int t = 0; t < q->vec_stages; t++) {
        uint8_t *p = dst + lb_e8p_stage_offset(&q->spec, &l, t);
        int wide = lb_e8p_code_bits(&q->spec, t) == 16;
        for (int64_t v = 0; v < q->vecs_per_row; v++) {
            unsigned c = *lb_qtensor_vcode(q, row, v, t);
            if (wide) lb_wr16(p + 2 * v, (uint16_t)c);
            else p[v] = (uint8_t)c;
        }
    }
}

static void e8p_decode_row(lb_qtensor *q, int64_t row, const uint8_t *src) {
    lb_layout l = {.cols_padded = q->cols_padded, .groups_per_row = q->groups_per_row};
    if (q->groups_per_row) lb_vec_scales_decode(q, row, src);
    for (int t = 0; t < q->vec_stages; t++) {
        const uint8_t *p = src + lb_e8p_stage_offset(&q->spec, &l, t);
        int wide = lb_e8p_code_bits(&q->spec, t) == 16;
        for (int64_t v = 0; v < q->vecs_per_row; v++)
            *lb_qtensor_vcode(q, row, v, t) = (uint16_t)(wide ? lb_rd16(p + 2 * v) : p[v]);
    }
}

static void e8p_encode_tail(const lb_qtensor *q, uint8_t *dst) {
    if (!q->groups_per_row) lb_vec_scales_encode(q, 0, dst);
}

static void e8p_decode_tail(lb_qtensor *q, const uint8_t *src) {
    if (!q->groups_per_row) lb_vec_scales_decode(q, 0, src);
}

static void e8p_dequantize_row(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row, float *out) {
    const uint8_t *r = data + (size_t)row * l->row_bytes;
    const uint8_t *scales = l->groups_per_row ? r : data + (size_t)l->rows * l->row_bytes;
    int64_t nvec = l->cols_padded / 8;
    memset(out, 0, (size_t)l->cols * sizeof(float));
    for (int t = 0; t < lb_e8p_stages(s); t++) {
        float a = lb_fp16_to_fp32(lb_rd16(scales + 2 * t)), v[8];
        const uint8_t *p = r + lb_e8p_stage_offset(s, l, t);
        int wide = lb_e8p_code_bits(s, t) == 16;
        for (int64_t k = 0; k < nvec; k++) {
            if (wide) lb_e8p_codeword(lb_rd16(p + 2 * k), v);
            else lb_e8_ball_codeword(p[k], v);
            for (int i = 0; i < 8 && 8 * k + i < l->cols; i++) out[8 * k + i] += a * v[i];
        }
    }
}

const lb_format_family lb_e8p_family = {
    .name = "e8p",
    .names = "e8p2..e8p4",
    .grid = LB_GRID_VECTOR,
    .option_slots = {"scale"},
    .match = e8p_match,
    .parse_option = e8p_parse_option,
    .format = e8p_format,
    .validate = e8p_validate,
    .row_bytes = e8p_row_bytes,
    .tail_bytes = e8p_tail_bytes,
    .qtensor_init = e8p_qtensor_init,
    .store_scales = lb_vec_store_scales,
    .encode_row = e8p_encode_row,
    .decode_row = e8p_decode_row,
    .encode_tail = e8p_encode_tail,
    .decode_tail = e8p_decode_tail,
    .dequantize_row = e8p_dequantize_row,
    .vec_code_count = e8p_vec_code_count,
    .vec_codeword = e8p_vec_codeword,
    .vec_nearest = e8p_vec_nearest,
    .vec_unit_scale = e8p_vec_unit_scale,
};
