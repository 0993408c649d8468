/* safetensors reader and writer (see safetensors.h for the layout and the
 * rules). Every number in the header is checked before it is used as an
 * offset; the data section must be exactly the tensors' bytes end to end, as
 * the format requires, so a file that parses has no byte that two tensors
 * share and none that nothing explains. */
#include "io/safetensors.h"

#include <stdlib.h>
#include <string.h>

#include "io/io_util.h"
#include "io/json.h"

static const struct {
    const char *name;
    size_t size;
} dtypes[LB_ST_N_DTYPES] = {
    [LB_ST_BOOL] = {"BOOL", 1},       [LB_ST_U8] = {"U8", 1},    [LB_ST_I8] = {"I8", 1},
    [LB_ST_F8_E5M2] = {"F8_E5M2", 1}, [LB_ST_F8_E4M3] = {"F8_E4M3", 1}, [LB_ST_I16] = {"I16", 2},
    [LB_ST_U16] = {"U16", 2},         [LB_ST_F16] = {"F16", 2},  [LB_ST_BF16] = {"BF16", 2},
    [LB_ST_I32] = {"I32", 4},         [LB_ST_U32] = {"U32", 4},  [LB_ST_F32] = {"F32", 4},
    [LB_ST_F64] = {"F64", 8},         [LB_ST_I64] = {"I64", 8},  [LB_ST_U64] = {"U64", 8},
};

const char *lb_st_dtype_name(lb_st_dtype d) { return (unsigned)d < LB_ST_N_DTYPES ? dtypes[d].name : "?"; }
size_t lb_st_dtype_size(lb_st_dtype d) { return (unsigned)d < LB_ST_N_DTYPES ? dtypes[d].size : 0; }

/* names echoed into messages are cut (a hostile one can be megabytes) */
#define SHOWN(s) (int)(strlen(s) > 80 ? 80 : strlen(s)), (s)

void lb_st_free(lb_st *f) {
    for (size_t i = 0; i < f->n_tensors; i++) lb_free(f->tensors[i].name);
    for (size_t i = 0; i < f->n_meta; i++) {
        lb_free(f->meta_keys[i]);
        lb_free(f->meta_values[i]);
    }
    lb_free(f->tensors);
    lb_free(f->meta_keys);
    lb_free(f->meta_values);
    memset(f, 0, sizeof *f);
}

const lb_st_tensor *lb_st_find(const lb_st *f, const char *name) {
    for (size_t i = 0; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

const char *lb_st_meta(const lb_st *f, const char *key) {
    for (size_t i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta_keys[i], key)) return f->meta_values[i];
    return NULL;
}

static lb_status read_metadata(const lb_json *j, int32_t obj, lb_st *f) {
    if (j->nodes[obj].type != LB_JSON_OBJECT)
        return lb_fail(LB_ERR_FORMAT, "safetensors: __metadata__ is not an object of strings");
    size_t n = j->nodes[obj].count;
    f->meta_keys = lb_calloc(n ? n : 1, sizeof *f->meta_keys);
    f->meta_values = lb_calloc(n ? n : 1, sizeof *f->meta_values);
    if (!f->meta_keys || !f->meta_values) return LB_ERR_NOMEM;
    for (int32_t c = j->nodes[obj].child; c >= 0; c = j->nodes[c].next) {
        if (j->nodes[c].type != LB_JSON_STRING)
            return lb_fail(LB_ERR_FORMAT, "safetensors: __metadata__ values must be strings (byte %zu of the header)",
                           j->nodes[c].start);
        lb_status st = lb_json_key(j, c, &f->meta_keys[f->n_meta], NULL);
        if (st == LB_OK) st = lb_json_string(j, c, &f->meta_values[f->n_meta], NULL);
        f->n_meta += f->meta_keys[f->n_meta] != NULL;
        if (st != LB_OK) return st;
    }
    return LB_OK;
}

/* One tensor entry {"dtype", "shape", "data_offsets"}; t->name is set. */
static lb_status read_entry(const lb_json *j, int32_t e, lb_st_tensor *t) {
    if (j->nodes[e].type != LB_JSON_OBJECT)
        return lb_fail(LB_ERR_FORMAT, "safetensors: tensor '%.*s': its entry is not an object", SHOWN(t->name));
    int32_t dt = lb_json_find(j, e, "dtype"), sh = lb_json_find(j, e, "shape"), off = lb_json_find(j, e, "data_offsets");
    if (dt < 0 || sh < 0 || off < 0)
        return lb_fail(LB_ERR_FORMAT, "safetensors: tensor '%.*s' has no %s", SHOWN(t->name),
                       dt < 0 ? "dtype" : sh < 0 ? "shape" : "data_offsets");
    int d;
    for (d = 0; d < LB_ST_N_DTYPES; d++)
        if (lb_json_string_eq(j, dt, dtypes[d].name)) break;
    if (d == LB_ST_N_DTYPES) {
        const lb_json_node *x = &j->nodes[dt];
        return lb_fail(LB_ERR_UNSUPPORTED, "safetensors: tensor '%.*s' has dtype %.*s, which is not one of the format's "
                       "(BOOL U8 I8 F8_E5M2 F8_E4M3 I16 U16 F16 BF16 I32 U32 F32 F64 I64 U64)", SHOWN(t->name),
                       x->type == LB_JSON_STRING ? (int)(x->len > 32 ? 32 : x->len) : 9,
                       x->type == LB_JSON_STRING ? j->text + x->start : "non-text");
    }
    t->dtype = (lb_st_dtype)d;
    if (j->nodes[sh].type != LB_JSON_ARRAY || j->nodes[sh].count > LB_ST_MAX_DIMS)
        return lb_fail(LB_ERR_FORMAT, "safetensors: tensor '%.*s': shape is not an array of at most %d sizes",
                       SHOWN(t->name), LB_ST_MAX_DIMS);
    uint64_t elems = 1;
    int overflow = 0;
    t->n_dims = 0;
    for (int32_t c = j->nodes[sh].child; c >= 0; c = j->nodes[c].next) {
        uint64_t v;
        lb_status st = lb_json_u64(j, c, &v);
        if (st != LB_OK) return lb_fail_context(st, "safetensors: tensor '%.*s': shape", SHOWN(t->name));
        t->shape[t->n_dims++] = v;
        if (v && elems > UINT64_MAX / v) overflow = 1;
        elems *= v;
    }
    uint64_t b, en;
    int32_t c0 = j->nodes[off].child;
    if (j->nodes[off].type != LB_JSON_ARRAY || j->nodes[off].count != 2 || lb_json_u64(j, c0, &b) != LB_OK ||
        lb_json_u64(j, j->nodes[c0].next, &en) != LB_OK)
        return lb_fail(LB_ERR_FORMAT, "safetensors: tensor '%.*s': data_offsets is not [begin, end] (two byte offsets)",
                       SHOWN(t->name));
    if (en < b)
        return lb_fail(LB_ERR_FORMAT, "safetensors: tensor '%.*s': data_offsets [%llu, %llu] end before they begin",
                       SHOWN(t->name), (unsigned long long)b, (unsigned long long)en);
    uint64_t es = dtypes[d].size;
    if (overflow || elems > UINT64_MAX / es || elems * es != en - b)
        return lb_fail(LB_ERR_FORMAT,
                       "safetensors: tensor '%.*s': %llu bytes in data_offsets, but its shape and dtype %s need %s%llu",
                       SHOWN(t->name), (unsigned long long)(en - b), dtypes[d].name,
                       overflow || elems > UINT64_MAX / es ? "more than " : "",
                       overflow || elems > UINT64_MAX / es ? (unsigned long long)UINT64_MAX : (unsigned long long)(elems * es));
    t->begin = b;
    t->end = en;
    return LB_OK;
}

static int by_offset(const void *a, const void *b) {
    const lb_st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The data section is the tensors end to end: each starts where the one
 * before ended, the first at 0, the last at the end of the file. */
static lb_status check_layout(lb_st *f, uint64_t data_len) {
    qsort(f->tensors, f->n_tensors, sizeof *f->tensors, by_offset);
    uint64_t at = 0;
    const char *prev = NULL;
    for (size_t i = 0; i < f->n_tensors; i++) {
        lb_st_tensor *t = &f->tensors[i];
        if (t->end > data_len)
            return lb_fail(LB_ERR_FORMAT, "safetensors: tensor '%.*s': data_offsets [%llu, %llu] run past the end "
                           "of the data (%llu bytes)", SHOWN(t->name), (unsigned long long)t->begin,
                           (unsigned long long)t->end, (unsigned long long)data_len);
        if (t->begin < at)
            return lb_fail(LB_ERR_FORMAT, "safetensors: tensors '%.*s' and '%.*s' overlap (bytes %llu..%llu of the "
                           "data belong to both)", SHOWN(prev), SHOWN(t->name), (unsigned long long)t->begin,
                           (unsigned long long)at);
        if (t->begin > at)
            return lb_fail(LB_ERR_FORMAT, "safetensors: bytes %llu..%llu of the data belong to no tensor (the format "
                           "allows no holes)", (unsigned long long)at, (unsigned long long)t->begin);
        at = t->end;
        prev = t->name;
    }
    if (at != data_len)
        return lb_fail(LB_ERR_FORMAT, "safetensors: %llu bytes after the last tensor's data (the file is longer "
                       "than its header says)", (unsigned long long)(data_len - at));
    if (f->n_tensors > 1) { /* JSON allows repeated keys; a tensor name must be unique */
        char **names = lb_alloc(f->n_tensors * sizeof *names);
        if (!names) return LB_ERR_NOMEM;
        for (size_t i = 0; i < f->n_tensors; i++) names[i] = f->tensors[i].name;
        qsort(names, f->n_tensors, sizeof *names, by_name);
        lb_status st = LB_OK;
        for (size_t i = 1; i < f->n_tensors && st == LB_OK; i++)
            if (!strcmp(names[i - 1], names[i]))
                st = lb_fail(LB_ERR_FORMAT, "safetensors: tensor '%.*s' appears twice in the header", SHOWN(names[i]));
        lb_free(names);
        return st;
    }
    return LB_OK;
}

lb_status lb_st_parse(const uint8_t *data, size_t size, lb_st *f) {
    memset(f, 0, sizeof *f);
    if (size < 8)
        return lb_fail(LB_ERR_FORMAT, "safetensors: file of %zu bytes is too short for the 8-byte header length", size);
    uint64_t n = lb_rd64(data);
    if (n > size - 8)
        return lb_fail(LB_ERR_FORMAT, "safetensors: header length %llu runs past the end of the file (%zu bytes)",
                       (unsigned long long)n, size);
    if (n > LB_ST_MAX_HEADER)
        return lb_fail(LB_ERR_FORMAT, "safetensors: header of %llu bytes is larger than the %u the format allows",
                       (unsigned long long)n, LB_ST_MAX_HEADER);
    if (n < 2 || data[8] != '{')
        return lb_fail(LB_ERR_FORMAT, "safetensors: the header does not start with '{' (not a safetensors file?)");
    lb_json j;
    lb_status st = lb_json_parse((const char *)data + 8, (size_t)n, &j);
    if (st != LB_OK) return lb_fail_context(st, "safetensors header");
    f->data_start = 8 + (size_t)n;
    size_t cap = j.nodes[0].count;
    f->tensors = lb_calloc(cap ? cap : 1, sizeof *f->tensors);
    if (!f->tensors) {
        st = LB_ERR_NOMEM;
        goto done;
    }
    int seen_meta = 0;
    for (int32_t c = j.nodes[0].child; c >= 0; c = j.nodes[c].next) {
        char *name;
        if ((st = lb_json_key(&j, c, &name, NULL)) != LB_OK) goto done;
        if (!strcmp(name, "__metadata__")) {
            lb_free(name);
            if (seen_meta++) {
                st = lb_fail(LB_ERR_FORMAT, "safetensors: __metadata__ appears twice");
                goto done;
            }
            if ((st = read_metadata(&j, c, f)) != LB_OK) goto done;
            continue;
        }
        lb_st_tensor *t = &f->tensors[f->n_tensors++];
        t->name = name;
        if ((st = read_entry(&j, c, t)) != LB_OK) goto done;
    }
    if ((st = check_layout(f, size - f->data_start)) != LB_OK) goto done;
    for (size_t i = 0; i < f->n_tensors; i++) {
        f->tensors[i].data = data + f->data_start + f->tensors[i].begin;
        f->tensors[i].nbytes = (size_t)(f->tensors[i].end - f->tensors[i].begin);
    }
done:
    lb_json_free(&j);
    if (st != LB_OK) lb_st_free(f);
    return st;
}

/* ---- writing ---------------------------------------------------------------- */

typedef struct {
    char *name;
    lb_st_dtype dtype;
    int n_dims;
    uint64_t shape[LB_ST_MAX_DIMS];
    uint64_t nbytes;
} entry;

struct lb_st_writer {
    entry *entries;
    size_t n, cap;
    lb_json_buf meta; /* "key":"value" pairs, comma-separated */
    lb_atomic_file file;
    int open;
    uint64_t total, written;
};

lb_status lb_st_writer_create(lb_st_writer **out) {
    *out = lb_calloc(1, sizeof **out);
    return *out ? LB_OK : LB_ERR_NOMEM;
}

lb_status lb_st_writer_meta(lb_st_writer *w, const char *key, const char *value) {
    if (w->open) return lb_fail(LB_ERR_INVALID, "safetensors writer: metadata after the header was written");
    if (w->meta.len) lb_json_raw(&w->meta, ",", 1);
    lb_json_strs(&w->meta, key);
    lb_json_raw(&w->meta, ":", 1);
    lb_json_strs(&w->meta, value);
    return w->meta.failed ? LB_ERR_NOMEM : LB_OK;
}

lb_status lb_st_writer_add(lb_st_writer *w, const char *name, lb_st_dtype dtype, int n_dims, const uint64_t *shape) {
    if (w->open) return lb_fail(LB_ERR_INVALID, "safetensors writer: tensor '%s' added after the header", name);
    if ((unsigned)dtype >= LB_ST_N_DTYPES || n_dims < 0 || n_dims > LB_ST_MAX_DIMS || !strcmp(name, "__metadata__"))
        return lb_fail(LB_ERR_INVALID, "safetensors writer: tensor '%s': bad dtype, rank or name", name);
    for (size_t i = 0; i < w->n; i++)
        if (!strcmp(w->entries[i].name, name)) return lb_fail(LB_ERR_INVALID, "safetensors writer: tensor '%s' added twice", name);
    if (!lb_io_grow((void **)&w->entries, &w->cap, w->n, sizeof *w->entries, 64)) return LB_ERR_NOMEM;
    entry *e = &w->entries[w->n];
    memset(e, 0, sizeof *e);
    if (!(e->name = lb_io_strdup(name))) return LB_ERR_NOMEM;
    e->dtype = dtype;
    e->n_dims = n_dims;
    uint64_t bytes = dtypes[dtype].size;
    for (int d = 0; d < n_dims; d++) {
        e->shape[d] = shape[d];
        if (shape[d] && bytes > UINT64_MAX / shape[d]) {
            free(e->name);
            return lb_fail(LB_ERR_INVALID, "safetensors writer: tensor '%s' is too large", name);
        }
        bytes *= shape[d];
    }
    e->nbytes = bytes;
    w->n++;
    return LB_OK;
}

lb_status lb_st_writer_begin(lb_st_writer *w, const char *path) {
    lb_json_buf h = {0};
    lb_json_raw(&h, "{", 1);
    if (w->meta.len) {
        lb_json_raws(&h, "\"__metadata__\":{");
        lb_json_raw(&h, w->meta.data, w->meta.len);
        lb_json_raw(&h, "}", 1);
    }
    uint64_t at = 0;
    for (size_t i = 0; i < w->n; i++) {
        const entry *e = &w->entries[i];
        if (i || w->meta.len) lb_json_raw(&h, ",", 1);
        lb_json_strs(&h, e->name);
        lb_json_raws(&h, ":{\"dtype\":");
        lb_json_strs(&h, dtypes[e->dtype].name);
        lb_json_raws(&h, ",\"shape\":[");
        for (int d = 0; d < e->n_dims; d++) {
            if (d) lb_json_raw(&h, ",", 1);
            lb_json_uint(&h, e->shape[d]);
        }
        lb_json_raws(&h, "],\"data_offsets\":[");
        lb_json_uint(&h, at);
        lb_json_raw(&h, ",", 1);
        lb_json_uint(&h, at + e->nbytes);
        lb_json_raws(&h, "]}");
        at += e->nbytes;
    }
    lb_json_raw(&h, "}", 1);
    while (!h.failed && h.len % 8) lb_json_raw(&h, " ", 1); /* 8 + len stays a multiple of 8: data 8-aligned */
    if (h.failed) {
        lb_json_buf_free(&h);
        return LB_ERR_NOMEM;
    }
    lb_status st = lb_atomic_open(&w->file, path);
    if (st == LB_OK) {
        uint8_t len[8];
        for (int k = 0; k < 8; k++) len[k] = (uint8_t)((uint64_t)h.len >> (8 * k));
        lb_atomic_write(&w->file, len, 8);
        lb_atomic_write(&w->file, h.data, h.len);
        w->open = 1;
        w->total = at;
    }
    lb_json_buf_free(&h);
    return st;
}

lb_status lb_st_writer_data(lb_st_writer *w, const void *data, size_t n) {
    if (!w->open) return lb_fail(LB_ERR_INVALID, "safetensors writer: data before the header");
    if (n > w->total - w->written)
        return lb_fail(LB_ERR_INVALID, "safetensors writer: %llu bytes more than the tensors declared",
                       (unsigned long long)(n - (w->total - w->written)));
    lb_atomic_write(&w->file, data, n);
    w->written += n;
    return LB_OK;
}

lb_status lb_st_writer_commit(lb_st_writer *w) {
    if (!w->open) return lb_fail(LB_ERR_INVALID, "safetensors writer: commit before the header");
    w->open = 0;
    if (w->written != w->total) {
        lb_atomic_abort(&w->file);
        return lb_fail(LB_ERR_INVALID, "safetensors writer: %llu of the declared %llu data bytes were written",
                       (unsigned long long)w->written, (unsigned long long)w->total);
    }
    return lb_atomic_commit(&w->file);
}

void lb_st_writer_free(lb_st_writer *w) {
    if (!w) return;
    if (w->open) lb_atomic_abort(&w->file);
    for (size_t i = 0; i < w->n; i++) free(w->entries[i].name);
    free(w->entries);
    lb_json_buf_free(&w->meta);
    lb_free(w);
}
