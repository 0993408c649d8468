/* The format table: spec text <-> lb_qspec, layouts and sizes, the unpacked
 * lb_qtensor, and dispatch to the family files (uniform.c, nf4.c, binary.c,
 * ternary.c, float.c). Adding a family: one file plus one row below. */
#include "format_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const lb_format_traits *lb_format_traits_of(lb_family f) {
    switch (f) {
    case LB_FAMILY_UNIFORM: return &lb_uniform_traits;
    case LB_FAMILY_NF4: return &lb_nf4_traits;
    case LB_FAMILY_BINARY: return &lb_binary_traits;
    case LB_FAMILY_TERNARY: return &lb_ternary_traits;
    default: return NULL;
    }
}

int lb_qspec_is_float(const lb_qspec *s) {
    return s->family == LB_FAMILY_F32 || s->family == LB_FAMILY_F16 || s->family == LB_FAMILY_BF16;
}

int lb_qspec_equal(const lb_qspec *a, const lb_qspec *b) {
    char x[64], y[64];
    lb_qspec_format(a, x, sizeof x);
    lb_qspec_format(b, y, sizeof y);
    return strcmp(x, y) == 0;
}

/* ---- spec text ------------------------------------------------------------ */

static void spec_defaults(lb_qspec *s, lb_family f, int bits) {
    memset(s, 0, sizeof *s);
    s->family = f;
    s->bits = bits;
    switch (f) {
    case LB_FAMILY_UNIFORM:
        s->group = 64;
        s->zero = LB_ZERO_F16;
        break;
    case LB_FAMILY_NF4: s->group = 64; break;
    case LB_FAMILY_BINARY: s->group = LB_GROUP_ROW; break;
    case LB_FAMILY_TERNARY:
        s->group = LB_GROUP_ROW;
        s->trits_per_byte = 5;
        s->rule = LB_TERNARY_ABSMEAN;
        break;
    default: break;
    }
}

static int parse_int(const char *s, int *out) {
    if (!*s) return 0;
    long v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > 100000) return 0;
        v = v * 10 + (*s - '0');
    }
    *out = (int)v;
    return 1;
}

lb_status lb_qspec_validate(const lb_qspec *s) {
    int grouped = s->group > 0;
    if (s->family < 0 || s->family >= LB_FAMILY_COUNT)
        return lb_fail(LB_ERR_INVALID, "unknown format family %d", (int)s->family);
    if (lb_qspec_is_float(s)) return LB_OK;
    if (grouped && (s->group < 16 || s->group > 256 || (s->group & (s->group - 1))))
        return lb_fail(LB_ERR_INVALID, "group size %d is not a power of two in 16..256", s->group);
    if (!grouped && s->group != LB_GROUP_ROW && s->group != LB_GROUP_TENSOR)
        return lb_fail(LB_ERR_INVALID, "group size %d is not a power of two in 16..256", s->group);
    switch (s->family) {
    case LB_FAMILY_UNIFORM:
        if (s->bits < 1 || s->bits > 8)
            return lb_fail(LB_ERR_INVALID, "int formats take 1 to 8 bits, not %d", s->bits);
        if (s->group == LB_GROUP_TENSOR)
            return lb_fail(LB_ERR_INVALID, "int formats take a group size or 'row', not 'tensor'");
        if (s->zero == LB_ZERO_SYM && s->bits < 2)
            return lb_fail(LB_ERR_INVALID,
                           "int1 cannot be symmetric (its levels would be -1 and 0); use "
                           "'binary' for sign x scale or int1:asym");
        if (s->zero != LB_ZERO_SYM && s->zero != LB_ZERO_F16 && s->zero != LB_ZERO_INT)
            return lb_fail(LB_ERR_INVALID, "unknown zero-point kind %d", (int)s->zero);
        break;
    case LB_FAMILY_NF4:
        if (s->bits != 4) return lb_fail(LB_ERR_INVALID, "nf4 has 4 bits, not %d", s->bits);
        if (s->group == LB_GROUP_TENSOR)
            return lb_fail(LB_ERR_INVALID, "nf4 takes a group size or 'row', not 'tensor'");
        break;
    case LB_FAMILY_BINARY:
        if (s->bits != 1) return lb_fail(LB_ERR_INVALID, "binary has 1 bit, not %d", s->bits);
        break;
    case LB_FAMILY_TERNARY:
        if (s->bits != 2) return lb_fail(LB_ERR_INVALID, "ternary codes are 2 bits, not %d", s->bits);
        if (s->trits_per_byte != 4 && s->trits_per_byte != 5)
            return lb_fail(LB_ERR_INVALID, "ternary packs 4 or 5 trits per byte, not %d",
                           s->trits_per_byte);
        if (s->rule != LB_TERNARY_ABSMEAN && s->rule != LB_TERNARY_TWN)
            return lb_fail(LB_ERR_INVALID, "unknown ternary rule %d", (int)s->rule);
        break;
    default: break;
    }
    return LB_OK;
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

/* Option slots: each option sets one; setting a slot twice is an error
 * ("g32:g64" conflicts, "sym:sym" repeats). */
enum { SLOT_GROUP, SLOT_SYMMETRY, SLOT_ZERO, SLOT_DQ, SLOT_RULE, SLOT_PACKING, SLOT_COUNT };
static const char *slot_name[SLOT_COUNT] = {"group size", "symmetry", "zero point", "double quantization",
                                            "ternary rule", "trit packing"};

lb_status lb_qspec_parse(const char *text, lb_qspec *out) {
    static const char *known = "int1..int8, nf4, binary, ternary, f32, f16, bf16, q4_0, q4_1, q8_0";
    char buf[128];
    if (!text || !*text) return lb_fail(LB_ERR_INVALID, "empty format spec (known: %s)", known);
    if (strlen(text) >= sizeof buf) return lb_fail(LB_ERR_INVALID, "format spec too long: '%.40s...'", text);
    strcpy(buf, text);

    char *cursor = buf;
    char *tok = NULL;
    lb_qspec s;
    int bits;
    next_token(&cursor, &tok);
    if (!*tok) return lb_fail(LB_ERR_INVALID, "format spec '%s' has no family name (known: %s)", text, known);
    if (!strcmp(tok, "f32") || !strcmp(tok, "f16") || !strcmp(tok, "bf16") || !strcmp(tok, "q4_0") ||
        !strcmp(tok, "q4_1") || !strcmp(tok, "q8_0")) {
        if (!strcmp(tok, "f32")) spec_defaults(&s, LB_FAMILY_F32, 32);
        else if (!strcmp(tok, "f16")) spec_defaults(&s, LB_FAMILY_F16, 16);
        else if (!strcmp(tok, "bf16")) spec_defaults(&s, LB_FAMILY_BF16, 16);
        else {
            spec_defaults(&s, LB_FAMILY_UNIFORM, tok[1] == '8' ? 8 : 4);
            s.group = 32;
            s.zero = !strcmp(tok, "q4_1") ? LB_ZERO_F16 : LB_ZERO_SYM;
        }
        if (cursor) return lb_fail(LB_ERR_INVALID, "format '%s' takes no options, got '%s'", tok, cursor);
        *out = s;
        return LB_OK;
    } else if (!strncmp(tok, "int", 3)) {
        if (!parse_int(tok + 3, &bits) || bits < 1 || bits > 8)
            return lb_fail(LB_ERR_INVALID, "'%s' in '%s': int formats take 1 to 8 bits (int1..int8)", tok, text);
        spec_defaults(&s, LB_FAMILY_UNIFORM, bits);
    } else if (!strcmp(tok, "nf4")) {
        spec_defaults(&s, LB_FAMILY_NF4, 4);
    } else if (!strcmp(tok, "binary")) {
        spec_defaults(&s, LB_FAMILY_BINARY, 1);
    } else if (!strcmp(tok, "ternary")) {
        spec_defaults(&s, LB_FAMILY_TERNARY, 2);
    } else {
        return lb_fail(LB_ERR_INVALID, "unknown format '%s' in '%s' (known: %s)", tok, text, known);
    }
    const char *family = tok;

    const char *seen[SLOT_COUNT] = {0};
    while (next_token(&cursor, &tok)) {
        int g, slot;
        if (!*tok)
            return lb_fail(LB_ERR_INVALID, "empty option in '%s' (options are separated by single ':')", text);
        if (tok[0] == 'g' && tok[1] >= '0' && tok[1] <= '9') {
            if (!parse_int(tok + 1, &g) || g < 16 || g > 256 || (g & (g - 1)))
                return lb_fail(LB_ERR_INVALID, "group size '%s' in '%s' is not a power of two in 16..256",
                               tok + 1, text);
            s.group = g;
            slot = SLOT_GROUP;
        } else if (!strcmp(tok, "row")) {
            s.group = LB_GROUP_ROW;
            slot = SLOT_GROUP;
        } else if (!strcmp(tok, "tensor") &&
                   (s.family == LB_FAMILY_BINARY || s.family == LB_FAMILY_TERNARY)) {
            s.group = LB_GROUP_TENSOR;
            slot = SLOT_GROUP;
        } else if (s.family == LB_FAMILY_UNIFORM && (!strcmp(tok, "sym") || !strcmp(tok, "asym"))) {
            if (seen[SLOT_SYMMETRY] && strcmp(seen[SLOT_SYMMETRY], tok))
                return lb_fail(LB_ERR_INVALID, "'%s' is both sym and asym", text);
            if (tok[0] == 's' && seen[SLOT_ZERO])
                return lb_fail(LB_ERR_INVALID, "'%s': a symmetric format has no zero point", text);
            if (tok[0] == 's') s.zero = LB_ZERO_SYM;
            else if (!seen[SLOT_ZERO]) s.zero = LB_ZERO_F16;
            slot = SLOT_SYMMETRY;
        } else if (s.family == LB_FAMILY_UNIFORM && (!strcmp(tok, "zint") || !strcmp(tok, "zf16"))) {
            if (seen[SLOT_SYMMETRY] && s.zero == LB_ZERO_SYM)
                return lb_fail(LB_ERR_INVALID, "'%s': a symmetric format has no zero point", text);
            s.zero = !strcmp(tok, "zint") ? LB_ZERO_INT : LB_ZERO_F16;
            slot = SLOT_ZERO;
        } else if (s.family == LB_FAMILY_NF4 && !strcmp(tok, "dq")) {
            s.double_quant = 1;
            slot = SLOT_DQ;
        } else if (s.family == LB_FAMILY_TERNARY && !strcmp(tok, "absmean")) {
            s.rule = LB_TERNARY_ABSMEAN;
            slot = SLOT_RULE;
        } else if (s.family == LB_FAMILY_TERNARY && !strcmp(tok, "twn")) {
            s.rule = LB_TERNARY_TWN;
            slot = SLOT_RULE;
        } else if (s.family == LB_FAMILY_TERNARY && !strcmp(tok, "2bit")) {
            s.trits_per_byte = 4;
            slot = SLOT_PACKING;
        } else if (s.family == LB_FAMILY_TERNARY && !strcmp(tok, "1.6bit")) {
            s.trits_per_byte = 5;
            slot = SLOT_PACKING;
        } else {
            return lb_fail(LB_ERR_INVALID, "option '%s' does not apply to %s (in '%s')", tok, family, text);
        }
        if (seen[slot])
            return lb_fail(LB_ERR_INVALID, "'%s' in '%s' %s the %s already given by '%s'", tok, text,
                           strcmp(seen[slot], tok) ? "conflicts with" : "repeats", slot_name[slot], seen[slot]);
        seen[slot] = tok;
    }
    lb_status st = lb_qspec_validate(&s);
    if (st != LB_OK) return lb_fail_context(st, "format '%s'", text);
    *out = s;
    return LB_OK;
}

static void group_text(const lb_qspec *s, char *buf, size_t n) {
    if (s->group > 0) snprintf(buf, n, "g%d", s->group);
    else snprintf(buf, n, "%s", s->group == LB_GROUP_ROW ? "row" : "tensor");
}

void lb_qspec_format(const lb_qspec *s, char *buf, size_t n) {
    char g[16];
    group_text(s, g, sizeof g);
    switch (s->family) {
    case LB_FAMILY_F32: snprintf(buf, n, "f32"); break;
    case LB_FAMILY_F16: snprintf(buf, n, "f16"); break;
    case LB_FAMILY_BF16: snprintf(buf, n, "bf16"); break;
    case LB_FAMILY_UNIFORM:
        snprintf(buf, n, "int%d:%s:%s", s->bits, g,
                 s->zero == LB_ZERO_SYM ? "sym" : s->zero == LB_ZERO_F16 ? "asym" : "asym:zint");
        break;
    case LB_FAMILY_NF4: snprintf(buf, n, "nf4:%s%s", g, s->double_quant ? ":dq" : ""); break;
    case LB_FAMILY_BINARY: snprintf(buf, n, "binary:%s", g); break;
    case LB_FAMILY_TERNARY:
        snprintf(buf, n, "ternary:%s:%s:%s", s->rule == LB_TERNARY_TWN ? "twn" : "absmean", g,
                 s->trits_per_byte == 4 ? "2bit" : "1.6bit");
        break;
    default: snprintf(buf, n, "unknown"); break;
    }
}

/* ---- layouts and sizes ---------------------------------------------------- */

#define LB_MAX_DIM ((int64_t)1 << 31)
#define LB_MAX_ELEMENTS ((int64_t)1 << 40)

lb_status lb_layout_compute(const lb_qspec *s, int64_t rows, int64_t cols, lb_layout *l) {
    memset(l, 0, sizeof *l);
    lb_status st = lb_qspec_validate(s);
    if (st != LB_OK) return st;
    if (rows < 1 || cols < 1 || rows > LB_MAX_DIM || cols > LB_MAX_DIM || rows * cols > LB_MAX_ELEMENTS)
        return lb_fail(LB_ERR_INVALID, "absurd tensor shape %lld x %lld", (long long)rows, (long long)cols);
    l->rows = rows;
    l->cols = cols;
    if (lb_qspec_is_float(s)) {
        size_t es = s->family == LB_FAMILY_F32 ? 4 : 2;
        l->cols_padded = cols;
        l->group_len = cols;
        l->groups_per_row = 1;
        l->n_groups = rows;
        l->row_bytes = (size_t)cols * es;
        l->total_bytes = l->row_bytes * (size_t)rows;
        return LB_OK;
    }
    if (s->group > 0) {
        l->cols_padded = lb_round_up(cols, s->group);
        l->group_len = s->group;
        l->groups_per_row = l->cols_padded / s->group;
        l->n_groups = rows * l->groups_per_row;
    } else {
        /* whole-row and whole-tensor groups: pad rows to 8 weights so every
         * code width packs into whole bytes */
        l->cols_padded = lb_round_up(cols, 8);
        l->group_len = l->cols_padded;
        l->groups_per_row = s->group == LB_GROUP_ROW ? 1 : 0;
        l->n_groups = s->group == LB_GROUP_ROW ? rows : 1;
    }
    const lb_format_traits *t = lb_format_traits_of(s->family);
    l->row_bytes = t->row_bytes(s, l);
    l->tail_bytes = t->tail_bytes ? t->tail_bytes(s, l) : 0;
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
    if (lb_layout_compute(spec, rows, cols, &l) != LB_OK) return NAN;
    return 8.0 * (double)l.total_bytes / ((double)rows * (double)cols);
}

int lb_format_ggml_type(const lb_qspec *s, int64_t cols) {
    switch (s->family) {
    case LB_FAMILY_F32: return LB_GGML_F32;
    case LB_FAMILY_F16: return LB_GGML_F16;
    case LB_FAMILY_BF16: return LB_GGML_BF16;
    case LB_FAMILY_UNIFORM:
        /* ggml blocks never pad, so the row must be whole blocks */
        if (s->group != 32 || cols % 32) return -1;
        if (s->bits == 8 && s->zero == LB_ZERO_SYM) return LB_GGML_Q8_0;
        if (s->bits == 4 && s->zero == LB_ZERO_SYM) return LB_GGML_Q4_0;
        if (s->bits == 4 && s->zero == LB_ZERO_F16) return LB_GGML_Q4_1;
        return -1;
    default: return -1;
    }
}

lb_status lb_qspec_from_ggml_type(int type, lb_qspec *out) {
    const char *name = NULL;
    switch (type) {
    case LB_GGML_F32: name = "f32"; break;
    case LB_GGML_F16: name = "f16"; break;
    case LB_GGML_BF16: name = "bf16"; break;
    case LB_GGML_Q8_0: name = "q8_0"; break;
    case LB_GGML_Q4_0: name = "q4_0"; break;
    case LB_GGML_Q4_1: name = "q4_1"; break;
    default: {
        lb_ggml_type_info info;
        if (lb_ggml_type_lookup(type, &info))
            return lb_fail(LB_ERR_UNSUPPORTED, "ggml type %s (%d) is not supported by lowbit yet", info.name, type);
        return lb_fail(LB_ERR_UNSUPPORTED, "unknown ggml type %d", type);
    }
    }
    return lb_qspec_parse(name, out);
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

lb_status lb_tensor_resolve(lb_tensor *t) {
    t->kernel = NULL;
    lb_status st = lb_layout_compute(&t->spec, t->rows, t->cols, &t->layout);
    if (st != LB_OK) return lb_fail_context(st, "tensor '%s'", t->name);
    if (t->nbytes != t->layout.total_bytes)
        return lb_fail(LB_ERR_FORMAT, "tensor '%s' has %zu bytes, its shape %lld x %lld needs %zu", t->name, t->nbytes,
                       (long long)t->rows, (long long)t->cols, t->layout.total_bytes);
    return LB_OK;
}

void lb_tensor_free(lb_tensor *t) {
    lb_free(t->owned);
    t->owned = NULL;
    t->data = NULL;
}

static void dequantize_rows(const lb_tensor *t, const lb_layout *l, int64_t r0, int64_t r1, float *out) {
    if (lb_qspec_is_float(&t->spec)) {
        size_t es = t->spec.family == LB_FAMILY_F32 ? 4 : 2;
        for (int64_t r = r0; r < r1; r++)
            lb_float_dequantize_row(&t->spec, t->data + (size_t)r * (size_t)t->cols * es, t->cols,
                                    out + (r - r0) * t->cols);
        return;
    }
    const lb_format_traits *traits = lb_format_traits_of(t->spec.family);
    for (int64_t r = r0; r < r1; r++) traits->dequantize_row(&t->spec, l, t->data, r, out + (r - r0) * t->cols);
}

/* the hot path: the layout resolved when the tensor got its bytes */
void lb_dequantize_rows(const lb_tensor *t, int64_t r0, int64_t r1, float *out) {
    dequantize_rows(t, &t->layout, r0, r1, out);
}

void lb_dequantize_row(const lb_tensor *t, int64_t row, float *out) { lb_dequantize_rows(t, row, row + 1, out); }

/* the checked path: whole tensors, layout recomputed and checked against the bytes */
lb_status lb_dequantize(const lb_tensor *t, float *out) {
    lb_layout l;
    lb_status st = lb_layout_compute(&t->spec, t->rows, t->cols, &l);
    if (st != LB_OK) return st;
    if (t->nbytes != l.total_bytes)
        return lb_fail(LB_ERR_FORMAT, "tensor '%s' holds %zu bytes, its format needs %zu", t->name,
                       t->nbytes, l.total_bytes);
    dequantize_rows(t, &l, 0, t->rows, out);
    return LB_OK;
}

/* ---- the unpacked form -------------------------------------------------------- */

lb_status lb_qtensor_init(lb_qtensor *q, const lb_qspec *spec, int64_t rows, int64_t cols) {
    memset(q, 0, sizeof *q);
    if (lb_qspec_is_float(spec))
        return lb_fail(LB_ERR_INVALID, "float formats have no codes to unpack");
    lb_layout l;
    lb_status st = lb_layout_compute(spec, rows, cols, &l);
    if (st != LB_OK) return st;
    q->spec = *spec;
    q->rows = rows;
    q->cols = cols;
    q->cols_padded = l.cols_padded;
    q->group_len = l.group_len;
    q->groups_per_row = l.groups_per_row;
    q->n_groups = l.n_groups;
    q->codes = lb_calloc((size_t)rows, (size_t)l.cols_padded);
    q->scale = lb_calloc((size_t)l.n_groups, sizeof(float));
    q->offset = lb_calloc((size_t)l.n_groups, sizeof(float));
    q->zero = lb_calloc((size_t)l.n_groups, 1);
    if (spec->family == LB_FAMILY_NF4 && spec->double_quant) {
        q->dq_blocks = (l.n_groups + 255) / 256;
        q->dq_code = lb_calloc((size_t)l.n_groups, 1);
        q->dq_block_scale = lb_calloc((size_t)q->dq_blocks, sizeof(float));
        if (!q->dq_code || !q->dq_block_scale) goto nomem;
    }
    if (!q->codes || !q->scale || !q->offset || !q->zero) goto nomem;
    return LB_OK;
nomem:
    lb_qtensor_free(q);
    return LB_ERR_NOMEM;
}

void lb_qtensor_free(lb_qtensor *q) {
    lb_free(q->codes);
    lb_free(q->scale);
    lb_free(q->offset);
    lb_free(q->zero);
    lb_free(q->dq_code);
    lb_free(q->dq_block_scale);
    memset(q, 0, sizeof *q);
}

lb_status lb_store_scales_fp16(lb_qtensor *q) {
    for (int64_t k = 0; k < q->n_groups; k++) {
        q->scale[k] = lb_round_fp16(q->scale[k]);
        q->offset[k] = q->spec.family == LB_FAMILY_UNIFORM && q->spec.zero == LB_ZERO_F16
                           ? lb_round_fp16(q->offset[k])
                           : 0.0f;
        if (!isfinite(q->scale[k]) || !isfinite(q->offset[k]))
            return lb_fail(LB_ERR_NUMERIC,
                           "group %lld: scale or offset is not finite in fp16 (weights beyond +-65504?)",
                           (long long)k);
    }
    return LB_OK;
}

lb_status lb_qtensor_store_scales(lb_qtensor *q) {
    const lb_format_traits *t = lb_format_traits_of(q->spec.family);
    return t->store_scales ? t->store_scales(q) : lb_store_scales_fp16(q);
}

int lb_format_levels(const lb_qspec *spec) {
    const lb_format_traits *t = lb_format_traits_of(spec->family);
    return t ? t->levels(spec) : 0;
}

float lb_format_level(const lb_qspec *spec, int code) {
    return lb_format_traits_of(spec->family)->level(spec, code);
}

float lb_uniform_value(const lb_qspec *spec, float d, float m, int z, int q) {
    return spec->zero == LB_ZERO_F16 ? d * (float)q + m : d * (float)(q - z);
}

int lb_uniform_nearest_code(const lb_qspec *spec, float d, float m, int z, float w) {
    int maxq = (1 << spec->bits) - 1;
    float r;
    if (d == 0.0f) r = spec->zero == LB_ZERO_F16 ? 0.0f : (float)z; /* every code decodes to m, or 0 */
    else if (spec->zero == LB_ZERO_F16) r = nearbyintf((w - m) / d);
    else r = nearbyintf(w / d + (float)z);
    if (!(r >= 0.0f)) return 0; /* also catches NaN */
    return r > (float)maxq ? maxq : (int)r;
}

/* the zero point of group k as lb_uniform_* take it */
static int uniform_zero(const lb_qtensor *q, int64_t k) {
    return q->spec.zero == LB_ZERO_INT ? q->zero[k] : 1 << (q->spec.bits - 1);
}

float lb_qtensor_value(const lb_qtensor *q, int64_t row, int64_t col) {
    int64_t k = lb_qtensor_group(q, row, col);
    int code = q->codes[row * q->cols_padded + col];
    if (q->spec.family == LB_FAMILY_UNIFORM)
        return lb_uniform_value(&q->spec, q->scale[k], q->offset[k], uniform_zero(q, k), code);
    return q->scale[k] * lb_format_level(&q->spec, code);
}

int lb_qtensor_nearest_code(const lb_qtensor *q, int64_t group, float w) {
    const lb_qspec *s = &q->spec;
    float d = q->scale[group];
    if (s->family == LB_FAMILY_UNIFORM)
        return lb_uniform_nearest_code(s, d, q->offset[group], uniform_zero(q, group), w);
    /* codebook families: nearest level by scan (at most 16 levels) */
    int n = lb_format_levels(s), best = 0;
    float best_err = INFINITY;
    for (int c = 0; c < n; c++) {
        float e = fabsf(w - d * lb_format_level(s, c));
        if (e < best_err) {
            best_err = e;
            best = c;
        }
    }
    return best;
}

lb_status lb_qtensor_encode(const lb_qtensor *q, uint8_t *out) {
    lb_layout l;
    lb_status st = lb_layout_compute(&q->spec, q->rows, q->cols, &l);
    if (st != LB_OK) return st;
    const lb_format_traits *t = lb_format_traits_of(q->spec.family);
    int levels = t->levels(&q->spec);
    for (int64_t i = 0; i < q->rows * q->cols_padded; i++)
        if (q->codes[i] >= levels)
            return lb_fail(LB_ERR_INVALID, "code %d at weight %lld is out of range for %d levels",
                           q->codes[i], (long long)i, levels);
    for (int64_t k = 0; k < q->n_groups; k++) {
        if (!isfinite(q->scale[k]) || !isfinite(q->offset[k]))
            return lb_fail(LB_ERR_NUMERIC, "group %lld has a non-finite scale or offset", (long long)k);
        if (q->spec.family == LB_FAMILY_UNIFORM && q->zero[k] >= levels)
            return lb_fail(LB_ERR_INVALID, "zero point %d of group %lld is out of range", q->zero[k],
                           (long long)k);
    }
    memset(out, 0, l.total_bytes);
    for (int64_t r = 0; r < q->rows; r++) t->encode_row(q, r, out + (size_t)r * l.row_bytes);
    if (t->encode_tail) t->encode_tail(q, out + (size_t)q->rows * l.row_bytes);
    return LB_OK;
}

lb_status lb_qtensor_decode(lb_qtensor *q, const uint8_t *data, size_t nbytes) {
    lb_layout l;
    lb_status st = lb_layout_compute(&q->spec, q->rows, q->cols, &l);
    if (st != LB_OK) return st;
    if (nbytes != l.total_bytes)
        return lb_fail(LB_ERR_FORMAT, "packed tensor has %zu bytes, the format needs %zu", nbytes, l.total_bytes);
    const lb_format_traits *t = lb_format_traits_of(q->spec.family);
    if (t->decode_tail) t->decode_tail(q, data + (size_t)q->rows * l.row_bytes);
    for (int64_t r = 0; r < q->rows; r++) t->decode_row(q, r, data + (size_t)r * l.row_bytes);
    return LB_OK;
}
