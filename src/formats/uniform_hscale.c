/* Uniform integers with hierarchical ("K-quant style") scales: the uniform
 * family's spec option s<k> (k = 2..8), with r<N> rows per super-group.
 *
 * Inspiration: llama.cpp's k-quants (Q2_K..Q6_K, ggml PR #1684), which store
 * each 16- or 32-weight group's scale and min as 4..8-bit integers under one
 * fp16 super-scale and super-min per 256-weight super-block. Deviation: a
 * super-block of 256 weights along a row does not fit stories260K's rows of
 * 64 and 172 inputs, so the super-group here is N whole rows (N = 1 by
 * default; r<N> shares it over N consecutive rows, which pays 16 or 32 bits
 * per N rows instead of per row).
 *
 * Values (b the super-group of the row, D/M its fp16 super-scale/super-min):
 *   asym: w = (D sc) q + (M mn),        sc, mn in 0..2^k-1
 *   sym:  w = (D sc) (q - 2^(bits-1)),  sc a k-bit two's complement
 *         (sym group scales carry a sign: RTN's symmetric grid puts the
 *         group's signed extreme on code 0, so the scale's sign follows it)
 * M is signed, so a super-group whose offsets are mostly positive is served
 * too; a group whose offset has the other sign gets mn = 0 (its grid then
 * reaches 0, which a covering fit accounts for).
 *
 * Layout: row = [group parameters: sc_0 (k bits) (mn_0 (k bits), asym) sc_1 ...,
 * a little-endian bit stream padded to a byte][code blocks, one per group,
 * packed as uniform.c packs them]; tensor tail = per super-group [D fp16]
 * [M fp16, asym]. bpw = (bits * cols_padded + pad8(groups * k * (1 or 2))) /
 * cols + (16 or 32) * ceil(rows / N) / (rows * cols).
 *
 * store_scales is the format's half of the two-level rounding (it sees no
 * weights): per super-group it picks D so the largest group scale (sym: the
 * signed extreme) lands on the largest integer, M so the signed extreme of the
 * offsets lands on 2^k-1 (both rounded away from zero to fp16, so they cover),
 * then rounds every group's min down and its scale up to integers (the
 * smallest stored grid that covers the group's grid; D is chosen so that
 * even the widest group's rounded-down min leaves its top in reach). Methods
 * that see the weights refit the integers afterwards (src/quant/rtn.c). */
#include "format_internal.h"

#include <math.h>
#include <string.h>

static int has_min(const lb_qspec *s) { return s->zero != LB_ZERO_SYM; }

int lb_hscale_parse_option(lb_qspec *s, const char *tok, int slot_scales, int slot_super) {
    int v;
    if (tok[0] == 's' && tok[1] >= '0' && tok[1] <= '9') {
        if (!lb_parse_small_int(tok + 1, &v) || v < 2 || v > 8) {
            lb_fail(LB_ERR_INVALID, "group scales of '%s' take 2 to 8 bits (s2..s8)", tok);
            return LB_OPTION_FAILED;
        }
        s->scale_bits = v;
        if (!s->super_rows) s->super_rows = 1;
        return slot_scales;
    }
    if (tok[0] == 'r' && tok[1] >= '0' && tok[1] <= '9') {
        if (!lb_parse_small_int(tok + 1, &v) || v < 1 || v > 65536) {
            lb_fail(LB_ERR_INVALID, "rows per super-scale '%s' must be 1..65536", tok + 1);
            return LB_OPTION_FAILED;
        }
        s->super_rows = v;
        return slot_super;
    }
    return LB_OPTION_UNKNOWN;
}

lb_status lb_hscale_validate(const lb_qspec *s) {
    if (s->scale_bits == 0) {
        if (s->super_rows != 0)
            return lb_fail(LB_ERR_INVALID, "rows per super-scale (r<N>) need hierarchical scales (s<k>)");
        return LB_OK;
    }
    if (s->scale_bits < 2 || s->scale_bits > 8)
        return lb_fail(LB_ERR_INVALID, "group scales take 2 to 8 bits, not %d", s->scale_bits);
    if (s->super_rows < 1 || s->super_rows > 65536)
        return lb_fail(LB_ERR_INVALID, "rows per super-scale must be 1..65536, not %d", s->super_rows);
    if (s->zero == LB_ZERO_INT)
        return lb_fail(LB_ERR_INVALID, "hierarchical scales (s<k>) store the min as an integer already; "
                                       "they do not combine with zint");
    if (s->group <= 0)
        return lb_fail(LB_ERR_INVALID, "hierarchical scales (s<k>) need groups (g16..g256), not one scale per row");
    return LB_OK;
}

static size_t param_bytes(const lb_qspec *s, const lb_layout *l) {
    return (size_t)((l->groups_per_row * s->scale_bits * (has_min(s) ? 2 : 1) + 7) / 8);
}

static size_t block_bytes(const lb_qspec *s, const lb_layout *l) { return (size_t)(l->group_len * s->bits / 8); }

size_t lb_hscale_row_bytes(const lb_qspec *s, const lb_layout *l) {
    return param_bytes(s, l) + (size_t)l->groups_per_row * block_bytes(s, l);
}

static int64_t n_super(const lb_qspec *s, int64_t rows) { return (rows + s->super_rows - 1) / s->super_rows; }

/* super-groups of a tensor: whole rows (r<N>) or super_cols-column pieces of each row */
static int64_t n_super_of(const lb_qtensor *q) {
    const lb_qspec *s = &q->spec;
    return s->super_cols ? q->rows * ((q->cols_padded + s->super_cols - 1) / s->super_cols) : n_super(s, q->rows);
}

size_t lb_hscale_tail_bytes(const lb_qspec *s, const lb_layout *l) {
    return (size_t)n_super(s, l->rows) * (has_min(s) ? 4 : 2);
}

lb_status lb_hscale_qtensor_init(lb_qtensor *q) {
    q->n_super = n_super_of(q);
    q->super_scale = lb_calloc((size_t)q->n_super, sizeof(float));
    q->super_min = lb_calloc((size_t)q->n_super, sizeof(float));
    q->scale_code = lb_calloc((size_t)q->n_groups, 1);
    q->min_code = lb_calloc((size_t)q->n_groups, 1);
    return q->super_scale && q->super_min && q->scale_code && q->min_code ? LB_OK : LB_ERR_NOMEM;
}

/* x in fp16, rounded away from zero (|result| >= |x|), so a super-scale
 * chosen to reach the largest group value does reach it; may be infinite. */
static float fp16_away(float x) {
    uint16_t h = lb_fp32_to_fp16(x);
    if (fabsf(lb_fp16_to_fp32(h)) < fabsf(x)) h++; /* sign-magnitude: +1 is one step further from 0 */
    return lb_fp16_to_fp32(h);
}

/* the first value of largest magnitude, sign kept (0 if all are 0) */
static float signed_extreme(const float *v, int64_t n, int64_t stride) {
    float e = 0.0f;
    for (int64_t i = 0; i < n; i++)
        if (fabsf(v[i * stride]) > fabsf(e)) e = v[i * stride];
    return e;
}

/* covering rounding: up for x >= 0, down below (with a slack of 1e-4, so a
 * value that is an integer up to float rounding stays that integer) */
static float away(float x) { return x >= 0 ? ceilf(x - 1e-4f) : floorf(x + 1e-4f); }

/* the integer min whose M mn is the largest value <= m (m' = M mn <= m:
 * mn rounds down for M > 0, up for M < 0), in 0..mmax */
static float cover_min(float m, float M, int mmax) {
    if (M == 0.0f || !isfinite(m)) return M == 0.0f ? 0.0f : m;
    float mn = M > 0 ? -away(-m / M) : away(m / M);
    return fminf(fmaxf(mn, 0.0f), (float)mmax);
}

lb_status lb_hscale_store_scales(lb_qtensor *q) {
    const lb_qspec *s = &q->spec;
    int imin = lb_hscale_scale_min(s), imax = lb_hscale_scale_max(s), mmax = (1 << s->scale_bits) - 1;
    float maxq = (float)((1 << s->bits) - 1);
    for (int64_t b = 0; b < q->n_super; b++) {
        int64_t k0, k1;
        lb_hscale_super_span(q, b, &k0, &k1);
        float D, M = 0.0f;
        if (s->zero == LB_ZERO_SYM) {
            /* the signed extreme lands on the most negative integer, -2^(k-1) */
            D = fp16_away(signed_extreme(q->scale + k0, k1 - k0, 1) / (float)imin);
        } else {
            /* M first; then D so that every group's grid, from its rounded
             * min m' <= m, still reaches its top: d >= d_g + (m - m') / (2^b - 1) */
            M = fp16_away(signed_extreme(q->offset + k0, k1 - k0, 1) / (float)mmax);
            float need = 0.0f;
            for (int64_t k = k0; k < k1; k++)
                need = fmaxf(need, q->scale[k] + (q->offset[k] - M * cover_min(q->offset[k], M, mmax)) / maxq);
            D = fp16_away(need / (float)imax);
        }
        if (!isfinite(D) || !isfinite(M))
            return lb_fail(LB_ERR_NUMERIC,
                           "super-group %lld: super-scale or super-min is not finite in fp16 (weights beyond "
                           "+-65504?)",
                           (long long)b);
        q->super_scale[b] = D;
        q->super_min[b] = M;
        /* every group: the smallest stored grid covering its grid */
        for (int64_t k = k0; k < k1; k++) {
            float mn = has_min(s) ? cover_min(q->offset[k], M, mmax) : 0.0f, sc;
            float d = has_min(s) ? q->scale[k] + (q->offset[k] - M * mn) / maxq : q->scale[k];
            sc = D != 0.0f ? away(d / D) : 0.0f;
            if (!isfinite(sc) || !isfinite(mn))
                return lb_fail(LB_ERR_NUMERIC, "group %lld: scale or offset is not finite", (long long)k);
            /* clamp in float first: the int conversion of a huge value is undefined */
            sc = fminf(fmaxf(sc, (float)imin), (float)imax);
            lb_hscale_set_group(q, k, (int)sc, (int)mn);
        }
    }
    return LB_OK;
}

void lb_hscale_encode_row(const lb_qtensor *q, int64_t row, uint8_t *dst) {
    const lb_qspec *s = &q->spec;
    lb_layout l = {.group_len = q->group_len, .groups_per_row = q->groups_per_row};
    size_t pb = param_bytes(s, &l), cb = block_bytes(s, &l);
    int kb = s->scale_bits, per = has_min(s) ? 2 : 1;
    for (int64_t g = 0; g < q->groups_per_row; g++) {
        int64_t k = row * q->groups_per_row + g;
        lb_put_bits(dst, (uint64_t)(g * per * kb), q->scale_code[k], kb);
        if (per == 2) lb_put_bits(dst, (uint64_t)((g * 2 + 1) * kb), q->min_code[k], kb);
        lb_uniform_pack_codes(s, q->codes + row * q->cols_padded + g * q->group_len, q->group_len,
                              dst + pb + (size_t)g * cb);
    }
}

void lb_hscale_decode_row(lb_qtensor *q, int64_t row, const uint8_t *src) {
    const lb_qspec *s = &q->spec;
    lb_layout l = {.group_len = q->group_len, .groups_per_row = q->groups_per_row};
    size_t pb = param_bytes(s, &l), cb = block_bytes(s, &l);
    int kb = s->scale_bits, per = has_min(s) ? 2 : 1;
    for (int64_t g = 0; g < q->groups_per_row; g++) {
        int64_t k = row * q->groups_per_row + g;
        int sc = lb_hscale_int(s, lb_get_bits(src, (uint64_t)(g * per * kb), kb));
        int mn = per == 2 ? (int)lb_get_bits(src, (uint64_t)((g * 2 + 1) * kb), kb) : 0;
        lb_hscale_set_group(q, k, sc, mn);
        lb_uniform_unpack_codes(s, src + pb + (size_t)g * cb, q->group_len, 0, q->group_len,
                                q->codes + row * q->cols_padded + g * q->group_len);
    }
}

void lb_hscale_encode_tail(const lb_qtensor *q, uint8_t *dst) {
    size_t per = has_min(&q->spec) ? 4 : 2;
    for (int64_t b = 0; b < q->n_super; b++) {
        lb_wr16(dst + (size_t)b * per, lb_fp32_to_fp16(q->super_scale[b]));
        if (per == 4) lb_wr16(dst + (size_t)b * per + 2, lb_fp32_to_fp16(q->super_min[b]));
    }
}

void lb_hscale_decode_tail(lb_qtensor *q, const uint8_t *src) {
    size_t per = has_min(&q->spec) ? 4 : 2;
    for (int64_t b = 0; b < q->n_super; b++) {
        q->super_scale[b] = lb_fp16_to_fp32(lb_rd16(src + (size_t)b * per));
        q->super_min[b] = per == 4 ? lb_fp16_to_fp32(lb_rd16(src + (size_t)b * per + 2)) : 0.0f;
    }
}

/* The meaning of the bytes: d = D sc, m = M mn in fp32, then d q + m (asym)
 * or d (q - 2^(bits-1)) (sym), the expressions lb_uniform_value computes. */
void lb_hscale_dequantize_row(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row, float *out) {
    const uint8_t *src = data + (size_t)row * l->row_bytes;
    const uint8_t *tail = data + (size_t)l->rows * l->row_bytes;
    size_t pb = param_bytes(s, l), cb = block_bytes(s, l), per = has_min(s) ? 4 : 2;
    int64_t b = row / s->super_rows;
    float D = lb_fp16_to_fp32(lb_rd16(tail + (size_t)b * per));
    float M = per == 4 ? lb_fp16_to_fp32(lb_rd16(tail + (size_t)b * per + 2)) : 0.0f;
    int kb = s->scale_bits, np = has_min(s) ? 2 : 1, z = 1 << (s->bits - 1);
    uint8_t codes[256];
    for (int64_t g = 0; g < l->groups_per_row; g++) {
        float d = D * (float)lb_hscale_int(s, lb_get_bits(src, (uint64_t)(g * np * kb), kb));
        float m = np == 2 ? M * (float)lb_get_bits(src, (uint64_t)((g * 2 + 1) * kb), kb) : 0.0f;
        int64_t c0 = g * l->group_len;
        int64_t n = l->cols - c0 < l->group_len ? l->cols - c0 : l->group_len;
        if (n <= 0) break;
        lb_uniform_unpack_codes(s, src + pb + (size_t)g * cb, l->group_len, 0, n, codes);
        float *o = out + c0;
        if (np == 2)
            for (int64_t j = 0; j < n; j++) o[j] = d * (float)codes[j] + m;
        else
            for (int64_t j = 0; j < n; j++) o[j] = d * (float)((int)codes[j] - z);
    }
}
