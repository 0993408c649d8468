/* Row-split tensors ("split"): a tensor whose output rows are cut into
 * contiguous ranges, each stored in a format of its own, so that a
 * row-block plan (lowbit plan --granularity rowblock, docs/PLANNING.md) can
 * be applied and saved. The bytes describe themselves:
 *
 *   header  "LBSP", u32 n (1..LB_SPLIT_MAX_PARTS), then per part 64 bytes:
 *           u64 rows, u64 offset, u64 nbytes, 40 bytes of canonical spec
 *           text, NUL-padded
 *   parts   part k's bytes (as its format stores a rows_k x cols tensor)
 *           at `offset`: the header's end, then each part's end, rounded up
 *           to 64 bytes (zero padding), so every part starts where its
 *           kernels can read it in place; no bytes after the last part.
 *
 * Every byte counts in bpw (header and padding too). The size depends on
 * the parts, not the spec: the row's sized_by_data flag has format.c take
 * the tensor's byte count as its size, and check_bytes holds every field to
 * the canonical layout above (each part's bytes checked by its own family).
 * Parts are rows of a tensor, so each one's format must be row-independent
 * in its bytes (every family is: a part is a whole tensor of its own).
 * lb_matmul runs each part's own kernel into its rows of the output
 * (kernels/matmul.c); split tensors are joined from quantized parts
 * (lb_split_join), never quantized into. */
#include "format_internal.h"

#include <stdio.h>
#include <string.h>

#define SPLIT_MAGIC 0x5053424cu /* "LBSP" little-endian */
#define SPLIT_HEAD 8
#define SPLIT_ENTRY 64
#define SPLIT_SPEC 40
#define SPLIT_ALIGN 64

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

/* Part k of bytes `data` (total bytes, rows x cols as a whole) as a view
 * tensor and its first row; every field checked (quiet: returns 0 on bytes
 * that do not hold, else 1). */
static int part_at(const uint8_t *data, size_t total, int64_t rows, int64_t cols, int k, lb_tensor *view,
                   int64_t *row0) {
    if (total < SPLIT_HEAD || lb_rd32(data) != SPLIT_MAGIC) return 0;
    uint32_t n = lb_rd32(data + 4);
    if (n < 1 || n > LB_SPLIT_MAX_PARTS || (uint32_t)k >= n || total < SPLIT_HEAD + (size_t)n * SPLIT_ENTRY) return 0;
    int64_t r = 0;
    size_t end = SPLIT_HEAD + (size_t)n * SPLIT_ENTRY;
    for (int i = 0; i <= k; i++) {
        const uint8_t *e = data + SPLIT_HEAD + (size_t)i * SPLIT_ENTRY;
        uint64_t pr = lb_rd64(e), off = lb_rd64(e + 8), nb = lb_rd64(e + 16);
        if (pr < 1 || pr > (uint64_t)(rows - r) || off != align_up(end) || nb > total || off > total - nb) return 0;
        if (i == k) {
            const char *spec = (const char *)e + 24;
            if (!memchr(spec, 0, SPLIT_SPEC)) return 0;
            memset(view, 0, sizeof *view);
            if (lb_qspec_parse(spec, &view->spec) != LB_OK || view->spec.family->sized_by_data) return 0;
            view->rows = (int64_t)pr, view->cols = cols;
            view->data = data + off, view->nbytes = (size_t)nb;
            if (lb_layout_compute(&view->spec, view->rows, cols, &view->layout) != LB_OK ||
                view->layout.total_bytes != nb)
                return 0;
            *row0 = r;
            return 1;
        }
        r += (int64_t)pr;
        end = (size_t)(off + nb);
    }
    return 0;
}

int lb_split_parts(const lb_tensor *t) {
    if (!t->spec.family || !t->spec.family->sized_by_data || !t->data || t->nbytes < SPLIT_HEAD) return 0;
    return (int)lb_rd32(t->data + 4);
}

lb_status lb_split_part(const lb_tensor *t, int k, lb_tensor *view, int64_t *row0) {
    if (!part_at(t->data, t->nbytes, t->rows, t->cols, k, view, row0))
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
    for (int k = 0; k < n; k++) {
        lb_status st = lb_split_part(t, k, &v->part[k], &v->row0[k]);
        if (st != LB_OK) {
            lb_split_view_free(v);
            return st;
        }
    }
    v->row0[n] = t->rows;
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
    if (total < SPLIT_HEAD || lb_rd32(data) != SPLIT_MAGIC) return lb_fail(LB_ERR_FORMAT, "split: no LBSP header");
    uint32_t n = lb_rd32(data + 4);
    if (n < 1 || n > LB_SPLIT_MAX_PARTS || total < SPLIT_HEAD + (size_t)n * SPLIT_ENTRY)
        return lb_fail(LB_ERR_FORMAT, "split: %u parts in %zu bytes", n, total);
    int64_t rows = 0, row0;
    size_t end = SPLIT_HEAD + (size_t)n * SPLIT_ENTRY;
    for (uint32_t k = 0; k < n; k++) {
        lb_tensor v;
        if (!part_at(data, total, l->rows, l->cols, (int)k, &v, &row0))
            return lb_fail(LB_ERR_FORMAT, "split: part %u's entry does not hold (rows, offset, size or spec)", k);
        const uint8_t *e = data + SPLIT_HEAD + (size_t)k * SPLIT_ENTRY;
        for (size_t i = 24 + strlen((const char *)e + 24); i < SPLIT_ENTRY; i++)
            if (e[i]) return lb_fail(LB_ERR_FORMAT, "split: part %u's entry is not zero-padded", k);
        for (size_t i = end; i < (size_t)(v.data - data); i++)
            if (data[i]) return lb_fail(LB_ERR_FORMAT, "split: padding before part %u is not zero", k);
        if (v.spec.family->check_bytes) {
            lb_status st = v.spec.family->check_bytes(&v.spec, &v.layout, v.data);
            if (st != LB_OK) return lb_fail_context(st, "split part %u", k);
        }
        rows = row0 + v.rows;
        end = (size_t)(v.data - data) + v.nbytes;
    }
    if (rows != l->rows) return lb_fail(LB_ERR_FORMAT, "split: parts hold %lld rows of %lld", (long long)rows, (long long)l->rows);
    if (end != total) return lb_fail(LB_ERR_FORMAT, "split: %zu bytes after the last part", total - end);
    return LB_OK;
}

/* the reference: the row's part found and decoded by its own family (bytes
 * that do not hold give zeros: this must stay in bounds on anything) */
static void split_dequantize_row(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row,
                                 float *out) {
    (void)s;
    size_t total = l->total_bytes;
    uint32_t n = total >= SPLIT_HEAD ? lb_rd32(data + 4) : 0;
    lb_tensor v;
    int64_t row0;
    for (uint32_t k = 0; k < n && k < LB_SPLIT_MAX_PARTS; k++) {
        if (!part_at(data, total, l->rows, l->cols, (int)k, &v, &row0)) break;
        if (row < row0 + v.rows) {
            v.spec.family->dequantize_row(&v.spec, &v.layout, v.data, row - row0, out);
            return;
        }
    }
    memset(out, 0, (size_t)l->cols * sizeof *out);
}

lb_status lb_split_join(const lb_tensor *parts, int n, const char *name, lb_tensor *out) {
    memset(out, 0, sizeof *out);
    if (n < 1 || n > LB_SPLIT_MAX_PARTS)
        return lb_fail(LB_ERR_INVALID, "a split tensor has 1..%d parts, not %d", LB_SPLIT_MAX_PARTS, n);
    int64_t rows = 0;
    size_t total = SPLIT_HEAD + (size_t)n * SPLIT_ENTRY;
    for (int k = 0; k < n; k++) {
        const lb_tensor *p = &parts[k];
        char spec[64];
        lb_qspec_format(&p->spec, spec, sizeof spec);
        if (p->spec.family && p->spec.family->sized_by_data)
            return lb_fail(LB_ERR_INVALID, "'%s': a split part cannot be split itself", name);
        if (strlen(spec) >= SPLIT_SPEC)
            return lb_fail(LB_ERR_INVALID, "'%s': part format '%s' is too long for a split entry", name, spec);
        if (p->cols != parts[0].cols)
            return lb_fail(LB_ERR_INVALID, "'%s': split parts have %lld and %lld columns", name,
                           (long long)parts[0].cols, (long long)p->cols);
        if (p->rows < 1 || p->nbytes != p->layout.total_bytes)
            return lb_fail(LB_ERR_INVALID, "'%s': split part %d is not a resolved tensor", name, k);
        rows += p->rows;
        total = align_up(total) + p->nbytes;
    }
    uint8_t *buf = lb_calloc(total, 1);
    if (!buf) return lb_fail(LB_ERR_NOMEM, "no memory for split tensor '%s' (%zu bytes)", name, total);
    lb_wr32(buf, SPLIT_MAGIC);
    lb_wr32(buf + 4, (uint32_t)n);
    size_t off = SPLIT_HEAD + (size_t)n * SPLIT_ENTRY;
    for (int k = 0; k < n; k++) {
        uint8_t *e = buf + SPLIT_HEAD + (size_t)k * SPLIT_ENTRY;
        off = align_up(off);
        lb_wr64(e, (uint64_t)parts[k].rows);
        lb_wr64(e + 8, off);
        lb_wr64(e + 16, parts[k].nbytes);
        lb_qspec_format(&parts[k].spec, (char *)e + 24, SPLIT_SPEC);
        memcpy(buf + off, parts[k].data, parts[k].nbytes);
        off += parts[k].nbytes;
    }
    snprintf(out->name, sizeof out->name, "%s", name ? name : "");
    lb_qspec_parse("split", &out->spec);
    out->rows = rows, out->cols = parts[0].cols;
    out->data = out->owned = buf;
    out->nbytes = total;
    lb_status st = lb_tensor_resolve(out);
    if (st != LB_OK) lb_tensor_free(out);
    return st;
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
