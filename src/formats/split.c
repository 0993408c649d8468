/* Split tensors ("split"): a tensor whose output rows (or input columns)
 * are cut into contiguous ranges, each stored in a format of its own, so
 * that a row-block plan (lowbit plan --granularity rowblock,
 * docs/PLANNING.md) can be applied and saved. The bytes describe themselves:
 *
 *   header  "LBSP", u32 n (1..LB_SPLIT_MAX_PARTS), u32 axis (0: the parts
 *           are row ranges, 1: column ranges), 4 zero bytes, then per part
 *           32 bytes: u32 rows (axis 0) or columns (axis 1), its canonical
 *           spec text in 28 bytes, NUL-padded (at most 27 characters)
 *   parts   part k's bytes (as its format stores a rows_k x cols tensor, or
 *           rows x cols_k), each followed by zeros to a multiple of 16
 *           bytes, in order, from the header's end; nothing after the last
 *           part's padding
 *
 * So a part starts on a 16-byte boundary (its kernels read it in place),
 * and a split tensor's size is a sum over its parts, each part costing 32 +
 * its bytes rounded up to 16, plus 16 for the tensor (lb_split_part_bytes):
 * what a plan can charge each row block exactly. Every byte counts in bpw.
 * The size depends on the parts, not the spec: the row's sized_by_data flag
 * has format.c take the tensor's byte count as its size, and check_bytes
 * holds every field to the layout above (each part's bytes checked by its
 * own family). lb_matmul runs each part's own kernel into its rows of the
 * output, or on its columns of the input adding the products in part order
 * (kernels/matmul.c); split tensors are joined from quantized parts
 * (lb_split_join, lb_split_join_cols), never quantized into. */
#include "format_internal.h"

#include <stdio.h>
#include <string.h>

#define SPLIT_MAGIC 0x5053424cu /* "LBSP" little-endian */
#define SPLIT_ENTRY 32
#define SPLIT_SPEC 28
#define SPLIT_ALIGN 16

static int split_match(const char *head, lb_qspec *s) {
    (void)s;
    return strcmp(head, "split") ? 0 : 2;
}

static void split_format(const lb_qspec *s, char *buf, size_t n) {
    (void)s;
    snprintf(buf, n, "split");
}

static lb_status split_validate(const lb_qspec *s) {
    (void)s;
    return LB_OK;
}

static void split_shape(const lb_qspec *s, lb_layout *l) {
    (void)s;
    l->cols_padded = l->cols;
    l->group_len = l->cols;
}

/* no fixed row size: the bytes are header plus parts (sized_by_data) */
static size_t split_row_bytes(const lb_qspec *s, const lb_layout *l) {
    (void)s, (void)l;
    return 0;
}

static size_t align_up(size_t x) { return (x + SPLIT_ALIGN - 1) / SPLIT_ALIGN * SPLIT_ALIGN; }

size_t lb_split_part_bytes(size_t part_nbytes) { return SPLIT_ENTRY + align_up(part_nbytes); }

/* The axis of split bytes `data` (total bytes): 0 rows, 1 columns, -1 if
 * the header does not hold. */
static int axis_of(const uint8_t *data, size_t total) {
    if (total < LB_SPLIT_HEAD_BYTES || lb_rd32(data) != SPLIT_MAGIC || lb_rd32(data + 12)) return -1;
    uint32_t axis = lb_rd32(data + 8);
    return axis <= 1 ? (int)axis : -1;
}

/* Part k of bytes `data` (total bytes, rows x cols as a whole) as a view
 * tensor and its first row (axis 0) or column (axis 1); every field up to
 * part k checked (quiet: returns 0 on bytes that do not hold, else 1). */
static int part_at(const uint8_t *data, size_t total, int64_t rows, int64_t cols, int k, lb_tensor *view,
                   int64_t *start) {
    int axis = axis_of(data, total);
    if (axis < 0) return 0;
    uint32_t n = lb_rd32(data + 4);
    if (n < 1 || n > LB_SPLIT_MAX_PARTS || (uint32_t)k >= n || total < LB_SPLIT_HEAD_BYTES + (size_t)n * SPLIT_ENTRY)
        return 0;
    int64_t along = axis ? cols : rows, r = 0;
    size_t off = LB_SPLIT_HEAD_BYTES + (size_t)n * SPLIT_ENTRY;
    for (int i = 0; i <= k; i++) {
        const uint8_t *e = data + LB_SPLIT_HEAD_BYTES + (size_t)i * SPLIT_ENTRY;
        uint32_t pr = lb_rd32(e);
        const char *spec = (const char *)e + 4;
        if (pr < 1 || (int64_t)pr > along - r || !memchr(spec, 0, SPLIT_SPEC)) return 0;
        memset(view, 0, sizeof *view);
        int64_t vr = axis ? rows : (int64_t)pr, vc = axis ? (int64_t)pr : cols;
        if (lb_qspec_parse(spec, &view->spec) != LB_OK || view->spec.family->sized_by_data ||
            lb_layout_compute(&view->spec, vr, vc, &view->layout) != LB_OK)
            return 0;
        size_t nb = view->layout.total_bytes;
        if (nb > total || off > total - nb) return 0;
        if (i == k) {
            view->rows = vr, view->cols = vc;
            view->data = data + off, view->nbytes = nb;
            *start = r;
            return 1;
        }
        r += (int64_t)pr;
        off += align_up(nb);
    }
    return 0;
}

int lb_split_parts(const lb_tensor *t) {
    if (!t->spec.family || !t->spec.family->sized_by_data || !t->data || t->nbytes < LB_SPLIT_HEAD_BYTES) return 0;
    return (int)lb_rd32(t->data + 4);
}

int lb_split_axis(const lb_tensor *t) { return lb_split_parts(t) ? axis_of(t->data, t->nbytes) : -1; }

lb_status lb_split_part(const lb_tensor *t, int k, lb_tensor *view, int64_t *start) {
    if (!part_at(t->data, t->nbytes, t->rows, t->cols, k, view, start))
        return lb_fail(LB_ERR_FORMAT, "tensor '%s': split part %d is not readable", t->name, k);
    snprintf(view->name, sizeof view->name, "%.80s#%d", t->name, k);
    return lb_tensor_resolve(view);
}

lb_status lb_split_view_build(const lb_tensor *t, lb_split_view **out) {
    *out = NULL;
    int n = lb_split_parts(t);
    if (n < 1) return lb_fail(LB_ERR_INVALID, "tensor '%s' is not a split tensor", t->name);
    lb_split_view *v = lb_calloc(1, sizeof *v + (size_t)n * sizeof v->part[0]);
    if (!v) return lb_fail(LB_ERR_NOMEM, "no memory for the parts of '%s'", t->name);
    v->n = n;
    v->axis = lb_split_axis(t);
    for (int k = 0; k < n; k++) {
        lb_status st = lb_split_part(t, k, &v->part[k], &v->start[k]);
        if (st != LB_OK) {
            lb_split_view_free(v);
            return st;
        }
    }
    v->start[n] = v->axis ? t->cols : t->rows;
    *out = v;
    return LB_OK;
}

void lb_split_view_free(lb_split_view *v) {
    for (int k = 0; v && k < v->n; k++) lb_tensor_drop_cache(&v->part[k]);
    lb_free(v);
}

static lb_status split_check_bytes(const lb_qspec *s, const lb_layout *l, const uint8_t *data) {
    (void)s;
    size_t total = l->total_bytes;
    if (total < LB_SPLIT_HEAD_BYTES || lb_rd32(data) != SPLIT_MAGIC) return lb_fail(LB_ERR_FORMAT, "split: no LBSP header");
    if (lb_rd32(data + 8) > 1) return lb_fail(LB_ERR_FORMAT, "split: axis %u (0 rows, 1 columns)", lb_rd32(data + 8));
    if (lb_rd32(data + 12)) return lb_fail(LB_ERR_FORMAT, "split: the header's reserved bytes are not zero");
    int axis = (int)lb_rd32(data + 8);
    uint32_t n = lb_rd32(data + 4);
    if (n < 1 || n > LB_SPLIT_MAX_PARTS || total < LB_SPLIT_HEAD_BYTES + (size_t)n * SPLIT_ENTRY)
        return lb_fail(LB_ERR_FORMAT, "split: %u parts in %zu bytes", n, total);
    int64_t along = 0, start;
    size_t end = LB_SPLIT_HEAD_BYTES + (size_t)n * SPLIT_ENTRY;
    for (uint32_t k = 0; k < n; k++) {
        lb_tensor v;
        if (!part_at(data, total, l->rows, l->cols, (int)k, &v, &start))
            return lb_fail(LB_ERR_FORMAT, "split: part %u's entry does not hold (%s, spec or size)", k,
                           axis ? "columns" : "rows");
        const uint8_t *e = data + LB_SPLIT_HEAD_BYTES + (size_t)k * SPLIT_ENTRY;
        for (size_t i = 4 + strlen((const char *)e + 4); i < SPLIT_ENTRY; i++)
            if (e[i]) return lb_fail(LB_ERR_FORMAT, "split: part %u's entry is not zero-padded", k);
        end = (size_t)(v.data - data) + v.nbytes;
        for (size_t i = end; i < align_up(end) && i < total; i++)
            if (data[i]) return lb_fail(LB_ERR_FORMAT, "split: the padding after part %u is not zero", k);
        if (v.spec.family->check_bytes) {
            lb_status st = v.spec.family->check_bytes(&v.spec, &v.layout, v.data);
            if (st != LB_OK) return lb_fail_context(st, "split part %u", k);
        }
        along = start + (axis ? v.cols : v.rows);
        end = align_up(end);
    }
    if (along != (axis ? l->cols : l->rows))
        return lb_fail(LB_ERR_FORMAT, "split: parts hold %lld %s of %lld", (long long)along, axis ? "columns" : "rows",
                       (long long)(axis ? l->cols : l->rows));
    if (end != total)
        return lb_fail(LB_ERR_FORMAT, "split: %zu bytes, the parts end at %zu", total, end);
    return LB_OK;
}

/* the reference: the row's part found and decoded by its own family, or
 * along columns every part's piece of the row (bytes that do not hold give
 * zeros from there: this must stay in bounds on anything) */
static void split_dequantize_row(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row,
                                 float *out) {
    (void)s;
    size_t total = l->total_bytes;
    int axis = axis_of(data, total);
    uint32_t n = axis >= 0 ? lb_rd32(data + 4) : 0;
    lb_tensor v;
    int64_t start, done = 0; /* columns written */
    for (uint32_t k = 0; k < n && k < LB_SPLIT_MAX_PARTS; k++) {
        if (!part_at(data, total, l->rows, l->cols, (int)k, &v, &start)) break;
        if (axis) {
            v.spec.family->dequantize_row(&v.spec, &v.layout, v.data, row, out + start);
            done = start + v.cols;
        } else if (row < start + v.rows) {
            v.spec.family->dequantize_row(&v.spec, &v.layout, v.data, row - start, out);
            return;
        }
    }
    memset(out + done, 0, (size_t)(l->cols - done) * sizeof *out);
}

static lb_status join(const lb_tensor *parts, int n, int axis, const char *name, lb_tensor *out) {
    memset(out, 0, sizeof *out);
    if (n < 1 || n > LB_SPLIT_MAX_PARTS)
        return lb_fail(LB_ERR_INVALID, "a split tensor has 1..%d parts, not %d", LB_SPLIT_MAX_PARTS, n);
    int64_t along = 0;
    size_t total = LB_SPLIT_HEAD_BYTES;
    for (int k = 0; k < n; k++) {
        const lb_tensor *p = &parts[k];
        char spec[64];
        lb_qspec_format(&p->spec, spec, sizeof spec);
        if (p->spec.family && p->spec.family->sized_by_data)
            return lb_fail(LB_ERR_INVALID, "'%s': a split part cannot be split itself", name);
        if (strlen(spec) >= SPLIT_SPEC)
            return lb_fail(LB_ERR_INVALID, "'%s': part format '%s' is too long for a split entry (%d characters at "
                           "most)", name, spec, SPLIT_SPEC - 1);
        if (!axis && p->cols != parts[0].cols)
            return lb_fail(LB_ERR_INVALID, "'%s': split parts have %lld and %lld columns", name,
                           (long long)parts[0].cols, (long long)p->cols);
        if (axis && p->rows != parts[0].rows)
            return lb_fail(LB_ERR_INVALID, "'%s': column parts have %lld and %lld rows", name,
                           (long long)parts[0].rows, (long long)p->rows);
        int64_t count = axis ? p->cols : p->rows;
        if (p->rows < 1 || p->cols < 1 || count > UINT32_MAX || p->nbytes != p->layout.total_bytes)
            return lb_fail(LB_ERR_INVALID, "'%s': split part %d is not a resolved tensor", name, k);
        along += count;
        total += lb_split_part_bytes(p->nbytes);
    }
    uint8_t *buf = lb_calloc(total, 1);
    if (!buf) return lb_fail(LB_ERR_NOMEM, "no memory for split tensor '%s' (%zu bytes)", name, total);
    lb_wr32(buf, SPLIT_MAGIC);
    lb_wr32(buf + 4, (uint32_t)n);
    lb_wr32(buf + 8, (uint32_t)axis);
    size_t off = LB_SPLIT_HEAD_BYTES + (size_t)n * SPLIT_ENTRY;
    for (int k = 0; k < n; k++) {
        uint8_t *e = buf + LB_SPLIT_HEAD_BYTES + (size_t)k * SPLIT_ENTRY;
        lb_wr32(e, (uint32_t)(axis ? parts[k].cols : parts[k].rows));
        lb_qspec_format(&parts[k].spec, (char *)e + 4, SPLIT_SPEC);
        memcpy(buf + off, parts[k].data, parts[k].nbytes);
        off += align_up(parts[k].nbytes);
    }
    snprintf(out->name, sizeof out->name, "%s", name ? name : "");
    lb_qspec_parse("split", &out->spec);
    out->rows = axis ? parts[0].rows : along, out->cols = axis ? along : parts[0].cols;
    out->data = out->owned = buf;
    out->nbytes = total;
    lb_status st = lb_tensor_resolve(out);
    if (st != LB_OK) lb_tensor_free(out);
    return st;
}

lb_status lb_split_join(const lb_tensor *parts, int n, const char *name, lb_tensor *out) {
    return join(parts, n, 0, name, out);
}

lb_status lb_split_join_cols(const lb_tensor *parts, int n, const char *name, lb_tensor *out) {
    return join(parts, n, 1, name, out);
}

const lb_format_family lb_split_family = {
    .name = "split",
    .names = "split",
    .grid = LB_GRID_NONE,
    .sized_by_data = 1,
    .match = split_match,
    .format = split_format,
    .validate = split_validate,
    .shape = split_shape,
    .row_bytes = split_row_bytes,
    .check_bytes = split_check_bytes,
    .dequantize_row = split_dequantize_row,
};
