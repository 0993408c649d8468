/* The format table: every family is one row (struct lb_format_family, see
 * format_internal.h) defined in its own file; this file only walks the
 * table. Spec text <-> lb_qspec, layouts and sizes, tensors, the unpacked
 * lb_qtensor and dequantization all dispatch through the spec's row.
 * Adding a family: one file plus one line in LB_FORMAT_FAMILIES. */
#include "format_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The table, in the order names are matched and listed: one line per row
 * (each row is a `const lb_format_family` defined in its family's file). */
#define LB_FORMAT_FAMILIES(X) \
    X(lb_f32_family)          \
    X(lb_f16_family)          \
    X(lb_bf16_family)         \
    X(lb_uniform_family)      \
    X(lb_nf4_family)          \
    X(lb_binary_family)       \
    X(lb_ternary_family)      \
    X(lb_pow2_family)         \
    X(lb_trellis_family)      \
    X(lb_lut_family)          \
    X(lb_onebit_family)       \
    X(lb_ptq161_family)       \
    X(lb_billm_family)        \
    X(lb_littlebit_family)    \
    X(lb_e8p_family)          \
    X(lb_vq_family)           \
    X(lb_kquant_family)       \
    X(lb_iq4_family)          \
    X(lb_tq_family)           \
    X(lb_fp4_family)          \
    X(lb_fp8_family)          \
    X(lb_ggml_read_family)    \
    X(lb_split_family)        \
    /* end of the table */

#define LB_DECLARE_FAMILY(row) extern const lb_format_family row;
LB_FORMAT_FAMILIES(LB_DECLARE_FAMILY)
#define LB_FAMILY_ENTRY(row) &row,
static const lb_format_family *const families[] = {LB_FORMAT_FAMILIES(LB_FAMILY_ENTRY)};
enum { N_FAMILIES = sizeof families / sizeof families[0] };

static int known_family(lb_family f) {
    for (int i = 0; i < N_FAMILIES; i++)
        if (families[i] == f) return 1;
    return 0;
}

lb_family lb_format_family_find(const char *name) {
    lb_qspec s;
    for (int i = 0; i < N_FAMILIES && name; i++)
        if (families[i]->match(name, &s) > 0) return families[i];
    return NULL;
}

int lb_qspec_is_float(const lb_qspec *s) { return s->family && s->family->is_float; }
lb_grid_kind lb_format_grid(const lb_qspec *s) { return s->family ? s->family->grid : LB_GRID_NONE; }
const char *lb_format_family_name(const lb_qspec *s) { return s->family ? s->family->name : "?"; }

int lb_qspec_equal(const lb_qspec *a, const lb_qspec *b) {
    char x[64], y[64];
    lb_qspec_format(a, x, sizeof x);
    lb_qspec_format(b, y, sizeof y);
    return strcmp(x, y) == 0;
}

/* ---- helpers the rows share -------------------------------------------------- */

int lb_parse_small_int(const char *s, int *out) {
    if (!*s) return 0;
    long v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > 100000) return 0;
        v = v * 10 + (*s - '0');
    }
    *out = (int)v;
    return 1;
}

int lb_parse_group_option(lb_qspec *s, const char *tok, int allow_tensor) {
    int g;
    if (tok[0] == 'g' && tok[1] >= '0' && tok[1] <= '9') {
        if (!lb_parse_small_int(tok + 1, &g) || g < 16 || g > 256 || (g & (g - 1))) {
            lb_fail(LB_ERR_INVALID, "group size '%s' is not a power of two in 16..256", tok + 1);
            return LB_OPTION_FAILED;
        }
        s->group = g;
    } else if (!strcmp(tok, "row")) {
        s->group = LB_GROUP_ROW;
    } else if (allow_tensor && !strcmp(tok, "tensor")) {
        s->group = LB_GROUP_TENSOR;
    } else {
        return LB_OPTION_UNKNOWN;
    }
    return 0;
}

void lb_group_text(const lb_qspec *s, char *buf, size_t n) {
    if (s->group > 0) snprintf(buf, n, "g%d", s->group);
    else snprintf(buf, n, "%s", s->group == LB_GROUP_ROW ? "row" : "tensor");
}

lb_status lb_validate_group(const lb_qspec *s, int allow_tensor) {
    if (s->group > 0 ? s->group < 16 || s->group > 256 || (s->group & (s->group - 1))
                     : s->group != LB_GROUP_ROW && s->group != LB_GROUP_TENSOR)
        return lb_fail(LB_ERR_INVALID, "group size %d is not a power of two in 16..256", s->group);
    if (s->group == LB_GROUP_TENSOR && !allow_tensor)
        return lb_fail(LB_ERR_INVALID, "%s formats take a group size or 'row', not 'tensor'", s->family->name);
    return LB_OK;
}

/* ---- spec text ------------------------------------------------------------ */

lb_status lb_qspec_validate(const lb_qspec *s) {
    if (!s->family) return lb_fail(LB_ERR_INVALID, "format spec has no family");
    if (!known_family(s->family)) return lb_fail(LB_ERR_INVALID, "format spec points at an unknown family");
    return s->family->validate(s);
}

/* Splits the next ':'-separated token off *cursor (empty tokens included).
 * Returns 0 at the end of the text. */
static int next_token(char **cursor, char **tok) {
    if (!*cursor) return 0;
    *tok = *cursor;
    char *colon = strchr(*cursor, ':');
    if (colon) {
        *colon = '\0';
        *cursor = colon + 1;
    } else {
        *cursor = NULL;
    }
    return 1;
}

static void known_names(char *buf, size_t n) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < N_FAMILIES && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%s", i ? ", " : "", families[i]->names);
}

lb_status lb_qspec_parse(const char *text, lb_qspec *out) {
    char known[512], buf[128];
    known_names(known, sizeof known);
    if (!text || !*text) return lb_fail(LB_ERR_INVALID, "empty format spec (known: %s)", known);
    if (strlen(text) >= sizeof buf) return lb_fail(LB_ERR_INVALID, "format spec too long: '%.40s...'", text);
    strcpy(buf, text);

    char *cursor = buf, *head = NULL, *tok = NULL;
    next_token(&cursor, &head);
    if (!*head) return lb_fail(LB_ERR_INVALID, "format spec '%s' has no family name (known: %s)", text, known);
    lb_qspec s;
    lb_family row = NULL;
    int matched = 0;
    for (int i = 0; i < N_FAMILIES && !matched; i++) {
        memset(&s, 0, sizeof s);
        matched = families[i]->match(head, &s);
        row = families[i];
    }
    if (matched == LB_OPTION_FAILED) return lb_fail_context(LB_ERR_INVALID, "'%s' in '%s'", head, text);
    if (!matched) return lb_fail(LB_ERR_INVALID, "unknown format '%s' in '%s' (known: %s)", head, text, known);
    s.family = row;
    if (matched == 2 && cursor)
        return lb_fail(LB_ERR_INVALID, "format '%s' takes no options, got '%s'", head, cursor);

    /* each option fills one slot; a slot filled twice is a repeat ("sym:sym")
     * or a conflict ("g32:g64") */
    const char *seen[LB_MAX_OPTION_SLOTS] = {0};
    unsigned seen_slots = 0;
    while (next_token(&cursor, &tok)) {
        if (!*tok)
            return lb_fail(LB_ERR_INVALID, "empty option in '%s' (options are separated by single ':')", text);
        int slot = row->parse_option ? row->parse_option(&s, tok, seen_slots) : LB_OPTION_UNKNOWN;
        if (slot == LB_OPTION_FAILED) return lb_fail_context(LB_ERR_INVALID, "'%s' in '%s'", tok, text);
        if (slot < 0 || slot >= LB_MAX_OPTION_SLOTS)
            return lb_fail(LB_ERR_INVALID, "option '%s' does not apply to %s (in '%s')", tok, head, text);
        if (seen[slot])
            return lb_fail(LB_ERR_INVALID, "'%s' in '%s' %s the %s already given by '%s'", tok, text,
                           strcmp(seen[slot], tok) ? "conflicts with" : "repeats",
                           row->option_slots[slot] ? row->option_slots[slot] : "option", seen[slot]);
        seen[slot] = tok;
        seen_slots |= 1u << slot;
    }
    lb_status st = lb_qspec_validate(&s);
    if (st != LB_OK) return lb_fail_context(st, "format '%s'", text);
    *out = s;
    return LB_OK;
}

void lb_qspec_format(const lb_qspec *s, char *buf, size_t n) {
    if (s->family && known_family(s->family)) s->family->format(s, buf, n);
    else snprintf(buf, n, "unknown");
}

/* ---- layouts and sizes ---------------------------------------------------- */

#define LB_MAX_DIM ((int64_t)1 << 31)
#define LB_MAX_ELEMENTS ((int64_t)1 << 40)

/* the default shape: groups of spec->group weights, rows padded to whole
 * groups; whole-row and whole-tensor groups pad rows to 8 weights so every
 * code width packs into whole bytes */
static void group_shape(const lb_qspec *s, lb_layout *l) {
    if (s->group > 0) {
        l->cols_padded = lb_round_up(l->cols, s->group);
        l->group_len = s->group;
        l->groups_per_row = l->cols_padded / s->group;
        l->n_groups = l->rows * l->groups_per_row;
    } else {
        l->cols_padded = lb_round_up(l->cols, 8);
        l->group_len = l->cols_padded;
        l->groups_per_row = s->group == LB_GROUP_ROW ? 1 : 0;
        l->n_groups = s->group == LB_GROUP_ROW ? l->rows : 1;
    }
}

lb_status lb_layout_compute(const lb_qspec *s, int64_t rows, int64_t cols, lb_layout *l) {
    memset(l, 0, sizeof *l);
    lb_status st = lb_qspec_validate(s);
    if (st != LB_OK) return st;
    if (rows < 1 || cols < 1 || rows > LB_MAX_DIM || cols > LB_MAX_DIM || rows * cols > LB_MAX_ELEMENTS)
        return lb_fail(LB_ERR_INVALID, "absurd tensor shape %lld x %lld", (long long)rows, (long long)cols);
    const lb_format_family *f = s->family;
    l->rows = rows;
    l->cols = cols;
    if (f->shape) f->shape(s, l);
    else group_shape(s, l);
    l->row_bytes = f->row_bytes(s, l);
    l->tail_bytes = f->tail_bytes ? f->tail_bytes(s, l) : 0;
    size_t body;
    if (lb_mul_overflows(l->row_bytes, (size_t)rows, &body) || body > SIZE_MAX - l->tail_bytes)
        return lb_fail(LB_ERR_INVALID, "tensor %lld x %lld is too large", (long long)rows, (long long)cols);
    l->total_bytes = body + l->tail_bytes;
    return LB_OK;
}

lb_status lb_format_size(const lb_qspec *spec, int64_t rows, int64_t cols, size_t *row_bytes,
                         size_t *tail_bytes, size_t *total_bytes) {
    lb_layout l;
    lb_status st = lb_layout_compute(spec, rows, cols, &l);
    if (st != LB_OK) return st;
    if (row_bytes) *row_bytes = l.row_bytes;
    if (tail_bytes) *tail_bytes = l.tail_bytes;
    if (total_bytes) *total_bytes = l.total_bytes;
    return LB_OK;
}

double lb_format_bpw(const lb_qspec *spec, int64_t rows, int64_t cols) {
    lb_layout l;
    if (lb_layout_compute(spec, rows, cols, &l) != LB_OK || spec->family->sized_by_data) return NAN;
    return 8.0 * (double)l.total_bytes / ((double)rows * (double)cols);
}

int lb_format_ggml_fallback(const lb_qspec *s, int64_t cols, lb_qspec *out) {
    if (!s->family || !known_family(s->family) || !s->family->ggml_fallback) return 0;
    return s->family->ggml_fallback(s, cols, out);
}

int lb_format_ggml_type(const lb_qspec *s, int64_t cols) {
    if (!s->family || !known_family(s->family) || !s->family->ggml_type) return -1;
    return s->family->ggml_type(s, cols);
}

lb_status lb_qspec_from_ggml_type(int type, lb_qspec *out) {
    for (int i = 0; i < N_FAMILIES; i++) {
        lb_qspec s;
        memset(&s, 0, sizeof s);
        if (families[i]->from_ggml && families[i]->from_ggml(type, &s)) {
            s.family = families[i];
            lb_status st = lb_qspec_validate(&s);
            if (st == LB_OK) *out = s;
            return st;
        }
    }
    lb_ggml_type_info info;
    if (lb_ggml_type_lookup(type, &info))
        return lb_fail(LB_ERR_UNSUPPORTED, "ggml type %s (%d) is not supported by lowbit yet", info.name, type);
    return lb_fail(LB_ERR_UNSUPPORTED, "unknown ggml type %d", type);
}

/* ---- tensors ---------------------------------------------------------------- */

void lb_tensor_wrap_f32(lb_tensor *t, const char *name, const float *data, int64_t rows, int64_t cols) {
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name ? name : "");
    t->spec.family = LB_FAMILY_F32;
    t->spec.bits = 32;
    t->rows = rows;
    t->cols = cols;
    t->data = (const uint8_t *)data;
    t->nbytes = (size_t)(rows * cols) * sizeof(float);
    lb_tensor_resolve(t);
}

void lb_tensor_drop_cache(lb_tensor *t) {
    if (t->packed && t->spec.family && t->spec.family->sized_by_data) lb_split_view_free(t->packed);
    else lb_free(t->packed);
    t->packed = NULL;
    t->kernel = NULL;
}

lb_status lb_tensor_resolve(lb_tensor *t) {
    lb_tensor_drop_cache(t);
    lb_status st = lb_layout_compute(&t->spec, t->rows, t->cols, &t->layout);
    if (st != LB_OK) return lb_fail_context(st, "tensor '%s'", t->name);
    if (t->spec.family->sized_by_data) t->layout.tail_bytes = t->layout.total_bytes = t->nbytes;
    if (t->nbytes != t->layout.total_bytes)
        return lb_fail(LB_ERR_FORMAT, "tensor '%s' has %zu bytes, its shape %lld x %lld needs %zu", t->name, t->nbytes,
                       (long long)t->rows, (long long)t->cols, t->layout.total_bytes);
    const lb_format_family *f = t->spec.family;
    if (f->check_bytes && t->data && (st = f->check_bytes(&t->spec, &t->layout, t->data)) != LB_OK)
        return lb_fail_context(st, "tensor '%s'", t->name);
    return LB_OK;
}

void lb_tensor_free(lb_tensor *t) {
    lb_tensor_drop_cache(t);
    lb_free(t->owned);
    t->owned = NULL;
    t->data = NULL;
}

/* the hot path: the spec's row and the layout resolved when the tensor got
 * its bytes; nothing is looked up or validated here */
void lb_dequantize_rows(const lb_tensor *t, int64_t r0, int64_t r1, float *out) {
    const lb_format_family *f = t->spec.family;
    for (int64_t r = r0; r < r1; r++) f->dequantize_row(&t->spec, &t->layout, t->data, r, out + (r - r0) * t->cols);
}

void lb_dequantize_row(const lb_tensor *t, int64_t row, float *out) { lb_dequantize_rows(t, row, row + 1, out); }

/* the checked path: whole tensors, layout recomputed and checked against the bytes */
lb_status lb_dequantize(const lb_tensor *t, float *out) {
    lb_layout l;
    lb_status st = lb_layout_compute(&t->spec, t->rows, t->cols, &l);
    if (st != LB_OK) return st;
    if (t->spec.family->sized_by_data) {
        l.tail_bytes = l.total_bytes = t->nbytes;
        if ((st = t->spec.family->check_bytes(&t->spec, &l, t->data)) != LB_OK)
            return lb_fail_context(st, "tensor '%s'", t->name);
    }
    if (t->nbytes != l.total_bytes)
        return lb_fail(LB_ERR_FORMAT, "tensor '%s' holds %zu bytes, its format needs %zu", t->name,
                       t->nbytes, l.total_bytes);
    for (int64_t r = 0; r < t->rows; r++) t->spec.family->dequantize_row(&t->spec, &l, t->data, r, out + r * t->cols);
    return LB_OK;
}

lb_status lb_format_from_float(const lb_qspec *s, const float *w, int64_t rows, int64_t cols, uint8_t *out) {
    lb_status st = lb_qspec_validate(s);
    if (st != LB_OK) return st;
    if (!s->family->from_float)
        return lb_fail(LB_ERR_INVALID, "lb_format_from_float needs a float format (f32, f16, bf16), not %s",
                       s->family->name);
    return s->family->from_float(s, w, rows, cols, out);
}

/* ---- the unpacked form -------------------------------------------------------- */

lb_status lb_qtensor_init(lb_qtensor *q, const lb_qspec *spec, int64_t rows, int64_t cols) {
    memset(q, 0, sizeof *q);
    lb_layout l;
    lb_status st = lb_layout_compute(spec, rows, cols, &l);
    if (st != LB_OK) return st;
    if (spec->family->is_float) return lb_fail(LB_ERR_INVALID, "float formats have no codes to unpack");
    if (spec->family->sized_by_data)
        return lb_fail(LB_ERR_UNSUPPORTED, "split tensors are joined from quantized parts (a recipe's rows= lines, "
                                           "docs/RECIPES.md), not quantized into");
    if (!spec->family->decode_row) { /* read-only families (llama.cpp's IQ4_XS, ...): bytes -> floats, nothing else */
        char t[64];
        lb_qspec_format(spec, t, sizeof t);
        return lb_fail(LB_ERR_UNSUPPORTED, "%s is read-only in lowbit: its tensors run and dequantize, but cannot be "
                       "unpacked, quantized into or written (quantize into another format)", t);
    }
    q->spec = *spec;
    q->rows = rows;
    q->cols = cols;
    q->cols_padded = l.cols_padded;
    q->group_len = l.group_len;
    q->groups_per_row = l.groups_per_row;
    q->n_groups = l.n_groups;
    q->tensor_scale = 1.0f;
    q->codes = lb_calloc((size_t)rows, (size_t)l.cols_padded);
    q->scale = lb_calloc((size_t)l.n_groups, sizeof(float));
    q->offset = lb_calloc((size_t)l.n_groups, sizeof(float));
    q->zero = lb_calloc((size_t)l.n_groups, 1);
    if (!q->codes || !q->scale || !q->offset || !q->zero ||
        (spec->family->qtensor_init && spec->family->qtensor_init(q) != LB_OK)) {
        lb_qtensor_free(q);
        return LB_ERR_NOMEM;
    }
    return LB_OK;
}

void lb_qtensor_free(lb_qtensor *q) {
    lb_free(q->codes);
    lb_free(q->scale);
    lb_free(q->offset);
    lb_free(q->zero);
    lb_free(q->dq_code);
    lb_free(q->dq_block_scale);
    lb_free(q->super_scale);
    lb_free(q->super_min);
    lb_free(q->scale_code);
    lb_free(q->min_code);
    lb_free(q->lut);
    lb_free(q->col_scale);
    lb_free(q->col_mask);
    lb_free(q->extra);
    lb_free(q->lowrank.u_sign);
    lb_free(q->lowrank.v_sign);
    lb_free(q->lowrank.h);
    lb_free(q->lowrank.g);
    lb_free(q->lowrank.l);
    lb_free(q->vcodes);
    lb_free(q->vbook);
    memset(q, 0, sizeof *q);
}

lb_status lb_store_scales_fp16(lb_qtensor *q) {
    for (int64_t k = 0; k < q->n_groups; k++) {
        q->scale[k] = lb_round_fp16(q->scale[k]);
        q->offset[k] = 0.0f;
        if (!isfinite(q->scale[k]))
            return lb_fail(LB_ERR_NUMERIC,
                           "group %lld: scale or offset is not finite in fp16 (weights beyond +-65504?)",
                           (long long)k);
    }
    return LB_OK;
}

lb_status lb_qtensor_store_scales(lb_qtensor *q) {
    const lb_format_family *f = q->spec.family;
    return f->store_scales ? f->store_scales(q) : lb_store_scales_fp16(q);
}

int lb_format_levels(const lb_qspec *spec) {
    const lb_format_family *f = spec->family;
    return f && f->levels ? f->levels(spec) : 0;
}

float lb_format_level(const lb_qspec *spec, int code) { return spec->family->level(spec, code); }

void lb_qtensor_vec_codeword(const lb_qtensor *q, int stage, unsigned code, float *out) {
    q->spec.family->vec_codeword(q, stage, code, out);
}

unsigned lb_qtensor_vec_nearest(const lb_qtensor *q, int stage, const float *x, const float *wt) {
    return q->spec.family->vec_nearest(q, stage, x, wt);
}

float lb_qtensor_vec_unit_scale(const lb_qtensor *q, int stage) { return q->spec.family->vec_unit_scale(q, stage); }

/* the stages summed in order, as the families' dequantize_row does */
static float vec_value(const lb_qtensor *q, int64_t row, int64_t col) {
    int64_t k = lb_qtensor_group(q, row, col), v = col / q->vec_dim;
    float sum = 0.0f, cw[LB_VEC_MAX_DIM];
    for (int s = 0; s < q->vec_stages; s++) {
        q->spec.family->vec_codeword(q, s, *lb_qtensor_vcode(q, row, v, s), cw);
        sum += q->scale[s * q->n_groups + k] * cw[col % q->vec_dim];
    }
    return sum;
}

float lb_qtensor_value(const lb_qtensor *q, int64_t row, int64_t col) {
    const lb_format_family *f = q->spec.family;
    if (f->value_at) return f->value_at(q, row, col);
    if (q->vec_dim) return vec_value(q, row, col);
    int64_t k = lb_qtensor_group(q, row, col);
    int code = q->codes[row * q->cols_padded + col];
    float v = f->code_value ? f->code_value(q, k, code) : q->scale[k] * f->level(&q->spec, code);
    if (q->col_scale) v *= col < q->cols ? q->col_scale[col] : 0.0f;
    return v;
}

/* the per-column values, stored or decoded, must be numbers */
static lb_status check_col_scale(const lb_qtensor *q, const char *what) {
    for (int64_t c = 0; q->col_scale && c < q->cols; c++)
        if (!isfinite(q->col_scale[c]))
            return lb_fail(LB_ERR_NUMERIC, "%s: the value of column %lld is %s", what, (long long)c,
                           isnan(q->col_scale[c]) ? "NaN" : "infinite");
    return LB_OK;
}

int lb_qtensor_nearest_code(const lb_qtensor *q, int64_t group, float w) {
    const lb_format_family *f = q->spec.family;
    if (f->nearest_code) return f->nearest_code(q, group, w);
    return lb_format_nearest_level(&q->spec, q->scale[group], w);
}

int lb_format_nearest_level(const lb_qspec *spec, float d, float w) {
    const lb_format_family *f = spec->family;
    if (f->nearest_level && d != 0.0f) return f->nearest_level(spec, w / d);
    /* codebook families: nearest level by scan */
    int n = f->levels(spec), best = 0;
    float best_err = INFINITY;
    for (int c = 0; c < n; c++) {
        float e = fabsf(w - d * f->level(spec, c));
        if (e < best_err) {
            best_err = e;
            best = c;
        }
    }
    return best;
}

float lb_qtensor_round_scale(const lb_qtensor *q, float s) {
    const lb_format_family *f = q->spec.family;
    return f->round_scale ? f->round_scale(q, s) : lb_round_fp16(s);
}

void lb_qtensor_fit_tensor(lb_qtensor *q, const float *w, int64_t rows, int64_t cols) {
    if (q->spec.family->fit_tensor) q->spec.family->fit_tensor(q, w, rows, cols);
}

int lb_format_tensor_scaled(const lb_qspec *spec) { return spec->family && spec->family->fit_tensor != NULL; }
int lb_format_coarse_scales(const lb_qspec *spec) { return spec->family && spec->family->round_scale != NULL; }

lb_status lb_qtensor_encode(const lb_qtensor *q, uint8_t *out) {
    lb_layout l;
    lb_status st = lb_layout_compute(&q->spec, q->rows, q->cols, &l);
    if (st != LB_OK) return st;
    const lb_format_family *f = q->spec.family;
    if (q->vec_dim) { /* vector codes and every stage's scales */
        for (int s = 0; s < q->vec_stages; s++) {
            int count = f->vec_code_count(&q->spec, s);
            for (int64_t i = 0; i < q->rows * q->vecs_per_row; i++)
                if (q->vcodes[i * q->vec_stages + s] >= count)
                    return lb_fail(LB_ERR_INVALID, "stage %d code %u of vector %lld is out of range for %d codes", s,
                                   (unsigned)q->vcodes[i * q->vec_stages + s], (long long)i, count);
        }
        for (int64_t k = 0; k < q->n_groups * q->vec_stages; k++)
            if (!isfinite(q->scale[k])) return lb_fail(LB_ERR_NUMERIC, "scale %lld is not finite", (long long)k);
    }
    int levels = q->vec_dim ? 0 : f->levels(&q->spec);
    for (int64_t i = 0; !q->vec_dim && i < q->rows * q->cols_padded; i++)
        if (q->codes[i] >= levels)
            return lb_fail(LB_ERR_INVALID, "code %d at weight %lld is out of range for %d levels",
                           q->codes[i], (long long)i, levels);
    for (int64_t k = 0; k < q->n_groups; k++) {
        if (!isfinite(q->scale[k]) || !isfinite(q->offset[k]))
            return lb_fail(LB_ERR_NUMERIC, "group %lld has a non-finite scale or offset", (long long)k);
        /* integer zero points (zero[] stays 0 in families without them) */
        if (!q->vec_dim && q->zero[k] >= levels)
            return lb_fail(LB_ERR_INVALID, "zero point %d of group %lld is out of range", q->zero[k],
                           (long long)k);
        /* per-group codebooks (lut): what check_bytes will demand of the bytes */
        for (int c = 0; q->lut && c < levels; c++) {
            float v = q->lut[k * levels + c];
            if (!isfinite(v) || (c && v < q->lut[k * levels + c - 1]))
                return lb_fail(LB_ERR_INVALID, "group %lld: level %d (%g) is %s", (long long)k, c, (double)v,
                               isfinite(v) ? "below the level before it (levels ascend)" : "not finite");
        }
    }
    if ((st = check_col_scale(q, "encoding")) != LB_OK) return st;
    for (int64_t i = 0; i < q->n_groups * q->n_extra; i++)
        if (!isfinite(q->extra[i]))
            return lb_fail(LB_ERR_NUMERIC, "group %lld has a non-finite value (%d of %d)", (long long)(i / q->n_extra),
                           (int)(i % q->n_extra), q->n_extra);
    if (f->check_qtensor && (st = f->check_qtensor(q)) != LB_OK) return st;
    memset(out, 0, l.total_bytes);
    for (int64_t r = 0; r < q->rows; r++) f->encode_row(q, r, out + (size_t)r * l.row_bytes);
    if (f->encode_tail) f->encode_tail(q, out + (size_t)q->rows * l.row_bytes);
    /* what a loader would refuse (a mask with the wrong count) is refused here */
    return f->check_bytes ? f->check_bytes(&q->spec, &l, out) : LB_OK;
}

lb_status lb_qtensor_decode(lb_qtensor *q, const uint8_t *data, size_t nbytes) {
    lb_layout l;
    lb_status st = lb_layout_compute(&q->spec, q->rows, q->cols, &l);
    if (st != LB_OK) return st;
    if (nbytes != l.total_bytes)
        return lb_fail(LB_ERR_FORMAT, "packed tensor has %zu bytes, the format needs %zu", nbytes, l.total_bytes);
    const lb_format_family *f = q->spec.family;
    if (f->check_bytes && (st = f->check_bytes(&q->spec, &l, data)) != LB_OK) return st;
    if (f->decode_tail) f->decode_tail(q, data + (size_t)q->rows * l.row_bytes);
    for (int64_t r = 0; r < q->rows; r++) f->decode_row(q, r, data + (size_t)r * l.row_bytes);
    return check_col_scale(q, "decoding");
}
