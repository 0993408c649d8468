/* The billm kernels' predicate, load-time layout and input permutation
 * (kernels/billm_pack.h). The layout is built from the unpacked form
 * (lb_qtensor_decode), not by reading the stored bytes a second way; the
 * parameters are fp16 values already, so writing them back as fp16 is
 * exact. */
#include <string.h>

#include "formats/format_internal.h"
#include "kernels/billm_pack.h"

int lb_billm_kernel_accepts(const lb_qspec *s, const lb_layout *l) {
    if (!s->family || strcmp(s->family->name, "billm") || l->cols < 1 || l->cols >= (1 << 28)) return 0;
    int64_t g = l->group_len, cp = l->cols_padded;
    int pow2 = g >= 16 && g <= 256 && !(g & (g - 1)) && s->group == g;
    if (!pow2 && !(s->group == LB_GROUP_ROW && g == cp)) return 0;
    /* the format's row bytes: a change there is a refusal here, not a misread */
    return l->row_bytes == (size_t)(LB_BILLM_PARAM_BYTES * l->groups_per_row + cp / 4) && cp % 4 == 0;
}

static size_t align64(size_t v) { return (v + 63) / 64 * 64; }

lb_status lb_billm_repack(const lb_tensor *w, void **out, size_t *bytes) {
    if (!lb_billm_kernel_accepts(&w->spec, &w->layout)) return lb_fail(LB_ERR_INVALID, "tensor '%s' is not billm", w->name);
    lb_qtensor q;
    memset(&q, 0, sizeof q);
    lb_status st = lb_qtensor_init(&q, &w->spec, w->rows, w->cols);
    if (st == LB_OK) st = lb_qtensor_decode(&q, w->data, w->nbytes);
    if (st != LB_OK) {
        lb_qtensor_free(&q);
        return lb_fail(st, "repacking '%s' for its kernel failed", w->name);
    }
    lb_billm_pack p;
    memset(&p, 0, sizeof p);
    p.rows = w->rows;
    p.cols = w->cols;
    p.width = (w->layout.cols_padded + 15) / 16 * 16;
    p.group = w->spec.group == LB_GROUP_ROW ? p.width : w->layout.group_len;
    p.groups = w->layout.groups_per_row;
    p.row_bytes = LB_BILLM_PARAM_BYTES * (size_t)p.groups + (size_t)(p.width / 4);
    p.ns_off = align64(sizeof p);
    p.src_off = p.ns_off + align64((size_t)p.groups * sizeof(int32_t));
    p.rows_off = p.src_off + align64((size_t)p.width * sizeof(int32_t));
    *bytes = p.rows_off + (size_t)p.rows * p.row_bytes + 64;
    uint8_t *b = lb_calloc(1, *bytes);
    if (!b) {
        lb_qtensor_free(&q);
        return lb_fail(LB_ERR_NOMEM, "repacking '%s' for its kernel failed", w->name);
    }
    memcpy(b, &p, sizeof p);
    int32_t *ns = (int32_t *)(b + p.ns_off), *src = (int32_t *)(b + p.src_off);
    /* the permutation: per group, salient columns, then the others, then padding */
    for (int64_t g = 0; g < p.groups; g++) {
        int64_t c0 = g * p.group, len = lb_billm_group_len(&p, g), at = c0;
        int64_t c1 = c0 + len < p.cols ? c0 + len : p.cols;
        for (int64_t c = c0; c < c1; c++)
            if (q.col_mask[c]) src[at++] = (int32_t)c;
        ns[g] = (int32_t)(at - c0);
        for (int64_t c = c0; c < c1; c++)
            if (!q.col_mask[c]) src[at++] = (int32_t)c;
        for (; at < c0 + len; at++) src[at] = -1;
    }
    for (int64_t r = 0; r < p.rows; r++) {
        uint8_t *row = b + p.rows_off + (size_t)r * p.row_bytes;
        for (int64_t g = 0; g < p.groups; g++) {
            uint8_t *gp = row + lb_billm_group_at(&p, g), *codes = gp + LB_BILLM_PARAM_BYTES;
            const float *e = q.extra + (r * p.groups + g) * LB_BILLM_VALUES;
            for (int i = 0; i < LB_BILLM_VALUES; i++) lb_wr16(gp + 2 * i, lb_fp32_to_fp16(e[i]));
            int64_t c0 = g * p.group, len = lb_billm_group_len(&p, g);
            for (int64_t j = 0; j < len; j++) {
                int32_t c = src[c0 + j];
                unsigned code = c < 0 ? 0u : q.codes[r * q.cols_padded + c] & 3u;
                codes[j >> 2] |= (uint8_t)(code << (2 * (j & 3)));
            }
        }
    }
    lb_qtensor_free(&q);
    *out = b;
    return LB_OK;
}

int lb_billm_pre_cols(const lb_tensor *w) { return (int)lb_billm(w)->width; }

void lb_billm_pre(const lb_tensor *w, const float *x, int n, float *out) {
    const lb_billm_pack *p = lb_billm(w);
    const int32_t *src = (const int32_t *)((const uint8_t *)w->packed + p->src_off);
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * p->cols;
        float *o = out + (size_t)i * p->width;
        for (int64_t c = 0; c < p->width; c++) o[c] = src[c] < 0 ? 0.0f : xi[src[c]];
    }
}
