/* GGUF container: a validating parser over a memory buffer (the writer is
 * gguf_write.c). Spec: ggml's docs/gguf.md. All fields are little-endian:
 *
 *   "GGUF" | u32 version | u64 n_tensors | u64 n_kv
 *   n_kv      x { string key | u32 value_type | value }
 *   n_tensors x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
 *   zero padding up to a multiple of the alignment (general.alignment, else 32)
 *   data section: tensor i at data_start + offset_i, each offset a multiple of
 *   the alignment, each tensor padded to it
 *
 * string = u64 length + bytes (no NUL); array = u32 elem_type | u64 count |
 * count elements. Version 2 has the same layout as 3 on little-endian hosts
 * (3 only added big-endian files, which we refuse).
 *
 * The parser trusts nothing: every count is bounded by the bytes left before
 * anything is allocated for it, every length and offset is checked with
 * overflow-safe arithmetic before it is used, and the result only holds views
 * into the caller's buffer. Keys and tensor names are kept in sorted indexes
 * so lookups and the duplicate checks are O(log n) / O(n log n) even for
 * hostile files with millions of entries. */
#include <stdlib.h>
#include <string.h>

#include "io/gguf_internal.h"

size_t lb_gguf_scalar_size(uint32_t t) {
    switch (t) {
    case LB_GGUF_UINT8: case LB_GGUF_INT8: case LB_GGUF_BOOL: return 1;
    case LB_GGUF_UINT16: case LB_GGUF_INT16: return 2;
    case LB_GGUF_UINT32: case LB_GGUF_INT32: case LB_GGUF_FLOAT32: return 4;
    case LB_GGUF_UINT64: case LB_GGUF_INT64: case LB_GGUF_FLOAT64: return 8;
    default: return 0; /* string, array or unknown */
    }
}

const char *lb_gguf_type_name(uint32_t t) {
    static const char *const names[] = {"uint8", "int8",  "uint16", "int16",  "uint32",
                                        "int32", "float32", "bool", "string", "array",
                                        "uint64", "int64", "float64"};
    return t < sizeof names / sizeof names[0] ? names[t] : "unknown";
}

int lb_gguf_name_cmp(const char *a, size_t alen, const char *b, size_t blen) {
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c ? c : (alen > blen) - (alen < blen);
}

/* Bytes of a tensor of ggml `type` with dims ne[0..n_dims), shared by the
 * parser (bad = LB_ERR_FORMAT, unknown types LB_ERR_UNSUPPORTED) and the
 * writer (both LB_ERR_INVALID). ggml rows are whole blocks, so ne[0] must be
 * a multiple of the block size; the element count must fit int64 (ggml's
 * ne are int64). */
lb_status lb_gguf_tensor_nbytes(const char *name, size_t name_len, int type, uint32_t n_dims,
                                const uint64_t *ne, lb_status bad, lb_status unknown,
                                size_t *nbytes) {
    lb_ggml_type_info ti;
    if (n_dims < 1 || n_dims > LB_GGUF_MAX_DIMS)
        return lb_fail(bad, "tensor '%.*s' has %" PRIu32 " dimensions (must be 1..%d)",
                       SHOWN(name, name_len), n_dims, LB_GGUF_MAX_DIMS);
    uint64_t count = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] == 0)
            return lb_fail(bad, "tensor '%.*s' has ne[%" PRIu32 "] = 0", SHOWN(name, name_len), d);
        if (count > (uint64_t)INT64_MAX / ne[d])
            return lb_fail(bad, "tensor '%.*s' has 2^63 or more elements",
                           SHOWN(name, name_len));
        count *= ne[d];
    }
    if (!lb_ggml_type_lookup(type, &ti))
        return lb_fail(unknown, "tensor '%.*s' has unknown ggml type %d", SHOWN(name, name_len),
                       type);
    if (ne[0] % (uint64_t)ti.block_size != 0)
        return lb_fail(bad,
                       "tensor '%.*s' of type %s has ne[0] = %" PRIu64
                       ", not a multiple of the block size %d",
                       SHOWN(name, name_len), ti.name, ne[0], ti.block_size);
    uint64_t blocks = count / (uint64_t)ti.block_size;
    if (blocks > SIZE_MAX / (uint64_t)ti.type_size)
        return lb_fail(bad, "tensor '%.*s' is too large for this machine", SHOWN(name, name_len));
    *nbytes = (size_t)blocks * (size_t)ti.type_size;
    return LB_OK;
}

/* ==== parser =============================================================== */

typedef struct {
    const char *key; /* view, key_len bytes */
    size_t key_len;
    uint32_t type;       /* lb_gguf_type */
    uint32_t elem_type;  /* arrays */
    uint64_t n;          /* arrays: element count */
    const uint8_t *val;  /* scalar bytes, string bytes, or first array element */
    size_t val_len;      /* strings */
    const uint8_t **strs; /* string arrays: each element's length prefix */
} gguf_kv;

typedef struct {
    const char *s;
    size_t len;
    int64_t idx;
    size_t at; /* byte offset in the file, for messages */
} name_ref;

struct lb_gguf {
    const uint8_t *data;
    size_t size;
    uint32_t version;
    size_t alignment, data_offset;
    int64_t n_kv, n_tensors;
    gguf_kv *kvs;                /* (n_kv) in file order */
    lb_gguf_tensor *tensors;     /* (n_tensors) in file order */
    name_ref *key_index;         /* (n_kv) sorted by key */
    name_ref *tensor_index;      /* (n_tensors) sorted by name */
    /* a split set's merged view (lb_gguf_concat): owns its shards; kvs and
     * key_index are shard 0's (borrowed), tensors and tensor_index its own */
    lb_gguf **shards;
    int n_shards;
};

typedef struct {
    const uint8_t *base;
    size_t size, pos;
} reader;

static lb_status need(const reader *r, uint64_t n, const char *what) {
    if (n > r->size - r->pos)
        return lb_fail(LB_ERR_FORMAT,
                       "truncated: %s at byte %zu needs %" PRIu64 " bytes but the file ends at %zu",
                       what, r->pos, n, r->size);
    return LB_OK;
}

static lb_status read_u32(reader *r, const char *what, uint32_t *v) {
    lb_status st = need(r, 4, what);
    if (st) return st;
    *v = lb_rd32(r->base + r->pos);
    r->pos += 4;
    return LB_OK;
}

static lb_status read_u64(reader *r, const char *what, uint64_t *v) {
    lb_status st = need(r, 8, what);
    if (st) return st;
    *v = lb_rd64(r->base + r->pos);
    r->pos += 8;
    return LB_OK;
}

static lb_status read_str(reader *r, const char *what, const char **s, size_t *len) {
    uint64_t n;
    lb_status st = read_u64(r, what, &n);
    if (st || (st = need(r, n, what))) return st;
    *s = (const char *)(r->base + r->pos);
    *len = (size_t)n;
    r->pos += (size_t)n;
    return LB_OK;
}

/* A scalar of type t at r (bool must be 0 or 1, as the spec says). */
static lb_status read_scalar(reader *r, uint32_t t, const uint8_t **val) {
    size_t sz = lb_gguf_scalar_size(t);
    lb_status st = need(r, sz, lb_gguf_type_name(t));
    if (st) return st;
    *val = r->base + r->pos;
    if (t == LB_GGUF_BOOL && **val > 1)
        return lb_fail(LB_ERR_FORMAT, "bool at byte %zu is %u (must be 0 or 1)", r->pos, **val);
    r->pos += sz;
    return LB_OK;
}

static lb_status read_array(reader *r, gguf_kv *kv) {
    lb_status st;
    if ((st = read_u32(r, "array element type", &kv->elem_type)) ||
        (st = read_u64(r, "array length", &kv->n)))
        return st;
    uint32_t et = kv->elem_type;
    size_t left = r->size - r->pos;
    if (et == LB_GGUF_ARRAY)
        return lb_fail(LB_ERR_UNSUPPORTED, "nested arrays (arrays of arrays) are not supported");
    if (et != LB_GGUF_STRING && lb_gguf_scalar_size(et) == 0)
        return lb_fail(LB_ERR_FORMAT, "unknown array element type %" PRIu32, et);
    size_t esize = et == LB_GGUF_STRING ? 8 : lb_gguf_scalar_size(et); /* a string is >= its length */
    if (kv->n > left / esize)
        return lb_fail(LB_ERR_FORMAT,
                       "array of %" PRIu64 " %s at byte %zu cannot fit in the %zu bytes left",
                       kv->n, lb_gguf_type_name(et), r->pos, left);
    kv->val = r->base + r->pos;
    if (et != LB_GGUF_STRING) {
        if (et == LB_GGUF_BOOL)
            for (uint64_t i = 0; i < kv->n; i++)
                if (kv->val[i] > 1)
                    return lb_fail(LB_ERR_FORMAT, "bool element %" PRIu64 " is %u (must be 0 or 1)",
                                   i, kv->val[i]);
        r->pos += (size_t)kv->n * esize;
        return LB_OK;
    }
    /* string arrays are indexed once so lb_gguf_get_arr_str is O(1); n is
     * bounded by left/8, so the index is never larger than the buffer */
    kv->strs = lb_calloc((size_t)kv->n, sizeof *kv->strs);
    if (!kv->strs) return LB_ERR_NOMEM;
    for (uint64_t i = 0; i < kv->n; i++) {
        const char *s;
        size_t len;
        kv->strs[i] = r->base + r->pos;
        if ((st = read_str(r, "array string", &s, &len)))
            return lb_fail_context(st, "element %" PRIu64, i);
    }
    return LB_OK;
}

static lb_status read_kv(reader *r, uint64_t i, gguf_kv *kv) {
    size_t at = r->pos;
    lb_status st = read_str(r, "key", &kv->key, &kv->key_len);
    if (st) return lb_fail_context(st, "key %" PRIu64, i);
    /* the by-name API takes C strings, so a NUL inside a key would make it unreachable */
    if (memchr(kv->key, 0, kv->key_len))
        return lb_fail(LB_ERR_FORMAT, "key %" PRIu64 " at byte %zu contains a NUL byte", i, at);
    if ((st = read_u32(r, "value type", &kv->type)))
        return lb_fail_context(st, "key '%.*s'", SHOWN(kv->key, kv->key_len));
    if (kv->type == LB_GGUF_ARRAY)
        st = read_array(r, kv);
    else if (kv->type == LB_GGUF_STRING) {
        const char *s = NULL;
        st = read_str(r, "string", &s, &kv->val_len);
        kv->val = (const uint8_t *)s;
    } else if (lb_gguf_scalar_size(kv->type))
        st = read_scalar(r, kv->type, &kv->val);
    else
        st = lb_fail(LB_ERR_FORMAT, "unknown value type %" PRIu32 " at byte %zu", kv->type,
                     r->pos - 4);
    if (st) return lb_fail_context(st, "key '%.*s'", SHOWN(kv->key, kv->key_len));
    return LB_OK;
}

static lb_status read_tensor_info(reader *r, uint64_t i, size_t alignment, lb_gguf_tensor *t) {
    size_t at = r->pos;
    uint32_t type;
    lb_status st = read_str(r, "tensor name", &t->name, &t->name_len);
    if (st) return lb_fail_context(st, "tensor info %" PRIu64, i);
    if (memchr(t->name, 0, t->name_len))
        return lb_fail(LB_ERR_FORMAT, "tensor %" PRIu64 " name at byte %zu contains a NUL byte", i,
                       at);
    if ((st = read_u32(r, "n_dims", &t->n_dims))) goto fail;
    if (t->n_dims < 1 || t->n_dims > LB_GGUF_MAX_DIMS)
        return lb_fail(LB_ERR_FORMAT, "tensor '%.*s' has %" PRIu32 " dimensions (must be 1..%d)",
                       SHOWN(t->name, t->name_len), t->n_dims, LB_GGUF_MAX_DIMS);
    for (uint32_t d = 0; d < LB_GGUF_MAX_DIMS; d++) {
        t->ne[d] = 1; /* unused dims are 1, as in ggml */
        if (d < t->n_dims && (st = read_u64(r, "dimension", &t->ne[d]))) goto fail;
    }
    if ((st = read_u32(r, "ggml type", &type)) || (st = read_u64(r, "offset", &t->offset)))
        goto fail;
    if (type > (uint32_t)INT32_MAX) /* cannot be a ggml type id, and would not fit `int` */
        return lb_fail(LB_ERR_UNSUPPORTED, "tensor '%.*s' has unknown ggml type %" PRIu32,
                       SHOWN(t->name, t->name_len), type);
    t->type = (int)type;
    if ((st = lb_gguf_tensor_nbytes(t->name, t->name_len, t->type, t->n_dims, t->ne, LB_ERR_FORMAT,
                            LB_ERR_UNSUPPORTED, &t->nbytes)))
        return st;
    if (t->offset % alignment != 0)
        return lb_fail(LB_ERR_FORMAT, "tensor '%.*s' offset %" PRIu64 " is not aligned to %zu",
                       SHOWN(t->name, t->name_len), t->offset, alignment);
    return LB_OK;
fail:
    return lb_fail_context(st, "tensor '%.*s'", SHOWN(t->name, t->name_len));
}

static int cmp_name_ref(const void *a, const void *b) {
    const name_ref *x = a, *y = b;
    return lb_gguf_name_cmp(x->s, x->len, y->s, y->len);
}

/* Sorts refs by name and rejects the first duplicate. */
static lb_status index_names(name_ref *refs, int64_t n, const char *what) {
    if (n > 1) qsort(refs, (size_t)n, sizeof *refs, cmp_name_ref);
    for (int64_t i = 1; i < n; i++)
        if (cmp_name_ref(&refs[i - 1], &refs[i]) == 0) {
            size_t a = refs[i - 1].at, b = refs[i].at;
            return lb_fail(LB_ERR_FORMAT, "duplicate %s '%.*s' (at bytes %zu and %zu)", what,
                           SHOWN(refs[i].s, refs[i].len), a < b ? a : b, a < b ? b : a);
        }
    return LB_OK;
}

static int64_t find_name(const name_ref *refs, int64_t n, const char *name) {
    size_t len = strlen(name);
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = lb_gguf_name_cmp(refs[mid].s, refs[mid].len, name, len);
        if (c == 0) return refs[mid].idx;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

typedef struct {
    uint64_t start;
    int64_t idx;
} extent;

static int cmp_extent(const void *a, const void *b) {
    const extent *x = a, *y = b;
    return (x->start > y->start) - (x->start < y->start);
}

/* Every tensor inside the buffer, then no two sharing a byte (sorted by offset). */
static lb_status check_tensor_data(lb_gguf *g) {
    size_t room = g->size - g->data_offset;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        lb_gguf_tensor *t = &g->tensors[i];
        if (t->offset > room || t->nbytes > room - t->offset) {
            uint64_t at = (uint64_t)g->data_offset + t->offset; /* may exceed size_t, not u64 */
            if (at < t->offset) at = UINT64_MAX;
            return lb_fail(LB_ERR_FORMAT,
                           "tensor '%.*s' data (offset %" PRIu64
                           ", %zu bytes) runs past the end of the file (%zu bytes)",
                           SHOWN(t->name, t->name_len), at, t->nbytes, g->size);
        }
        t->data = g->data + g->data_offset + t->offset;
    }
    if (g->n_tensors < 2) return LB_OK;
    extent *ex = lb_calloc((size_t)g->n_tensors, sizeof *ex);
    if (!ex) return LB_ERR_NOMEM;
    for (int64_t i = 0; i < g->n_tensors; i++) ex[i] = (extent){g->tensors[i].offset, i};
    qsort(ex, (size_t)g->n_tensors, sizeof *ex, cmp_extent);
    lb_status st = LB_OK;
    for (int64_t i = 1; i < g->n_tensors && !st; i++) {
        const lb_gguf_tensor *a = &g->tensors[ex[i - 1].idx], *b = &g->tensors[ex[i].idx];
        if (a->offset + a->nbytes > b->offset) /* both inside the buffer: no overflow */
            st = lb_fail(LB_ERR_FORMAT,
                         "tensors '%.*s' (data offset %" PRIu64 ", %zu bytes) and '%.*s' (data "
                         "offset %" PRIu64 ") overlap",
                         SHOWN(a->name, a->name_len), a->offset, a->nbytes,
                         SHOWN(b->name, b->name_len), b->offset);
    }
    lb_free(ex);
    return st;
}

static lb_status parse_into(lb_gguf *g, reader *r) {
    lb_status st;
    uint32_t version;
    uint64_t n_tensors, n_kv;
    if ((st = need(r, 4, "magic"))) return st;
    const uint8_t *m = r->base;
    if (memcmp(m, "GGUF", 4) != 0)
        return lb_fail(LB_ERR_FORMAT,
                       "not a GGUF file: bad magic %02x %02x %02x %02x (expected 'GGUF')", m[0],
                       m[1], m[2], m[3]);
    r->pos = 4;
    if ((st = read_u32(r, "version", &version))) return st;
    if (version != 2 && version != 3)
        return lb_fail(LB_ERR_UNSUPPORTED,
                       "unsupported GGUF version %" PRIu32 " (lowbit reads 2 and 3)%s", version,
                       version > 0xffff && (version & 0xffff) == 0 ? "; a big-endian file?" : "");
    g->version = version;
    if ((st = read_u64(r, "tensor count", &n_tensors)) ||
        (st = read_u64(r, "key/value count", &n_kv)))
        return st;
    /* Every kv takes >= 13 bytes (key length, type, a 1-byte value), every
     * tensor info >= 32 (name length, n_dims, one dim, type, offset): refuse
     * counts the rest of the buffer cannot hold before allocating for them. */
    size_t left = r->size - r->pos;
    if (n_kv > left / 13 || n_tensors > (left - (size_t)n_kv * 13) / 32)
        return lb_fail(LB_ERR_FORMAT,
                       "header claims %" PRIu64 " keys and %" PRIu64
                       " tensors, more than the %zu bytes after it can hold",
                       n_kv, n_tensors, left);
    g->n_kv = (int64_t)n_kv;
    g->n_tensors = (int64_t)n_tensors;
    g->kvs = lb_calloc((size_t)n_kv, sizeof *g->kvs);
    g->key_index = lb_calloc((size_t)n_kv, sizeof *g->key_index);
    g->tensors = lb_calloc((size_t)n_tensors, sizeof *g->tensors);
    g->tensor_index = lb_calloc((size_t)n_tensors, sizeof *g->tensor_index);
    if (!g->kvs || !g->key_index || !g->tensors || !g->tensor_index) return LB_ERR_NOMEM;

    for (uint64_t i = 0; i < n_kv; i++) {
        gguf_kv *kv = &g->kvs[i];
        size_t at = r->pos;
        if ((st = read_kv(r, i, kv))) return st;
        g->key_index[i] = (name_ref){kv->key, kv->key_len, (int64_t)i, at};
    }
    if ((st = index_names(g->key_index, g->n_kv, "key"))) return st;

    g->alignment = LB_GGUF_DEFAULT_ALIGNMENT;
    int64_t ai = lb_gguf_find_key(g, "general.alignment");
    if (ai >= 0) {
        const gguf_kv *kv = &g->kvs[ai];
        if (kv->type != LB_GGUF_UINT32)
            return lb_fail(LB_ERR_FORMAT, "general.alignment has type %s (must be uint32)",
                           lb_gguf_type_name(kv->type));
        uint32_t a = lb_rd32(kv->val);
        if (!lb_gguf_is_pow2(a))
            return lb_fail(LB_ERR_FORMAT, "general.alignment %" PRIu32 " is not a power of two", a);
        g->alignment = a;
    }

    for (uint64_t i = 0; i < n_tensors; i++) {
        lb_gguf_tensor *t = &g->tensors[i];
        size_t at = r->pos;
        if ((st = read_tensor_info(r, i, g->alignment, t))) return st;
        g->tensor_index[i] = (name_ref){t->name, t->name_len, (int64_t)i, at};
    }
    if ((st = index_names(g->tensor_index, g->n_tensors, "tensor name"))) return st;

    /* the data section starts at the next multiple of the alignment; ggml's
     * writer always pads there, so the padding must be present - except in a
     * file without tensors, which gguf-py ends right after the keys (the
     * vocab-only files of llama.cpp's test suite) */
    size_t rem = r->pos % g->alignment, pad = rem ? g->alignment - rem : 0;
    if (n_tensors == 0 && pad > r->size - r->pos) pad = r->size - r->pos;
    if (pad > r->size - r->pos)
        return lb_fail(LB_ERR_FORMAT,
                       "truncated: tensor infos end at byte %zu, the data section should start at "
                       "the next multiple of %zu but the file ends at %zu",
                       r->pos, g->alignment, r->size);
    g->data_offset = r->pos + pad;
    return check_tensor_data(g);
}

lb_status lb_gguf_parse(const uint8_t *data, size_t size, lb_gguf **out) {
    *out = NULL;
    lb_gguf *g = lb_calloc(1, sizeof *g);
    if (!g) return LB_ERR_NOMEM;
    g->data = data;
    g->size = data ? size : 0;
    reader r = {data, g->size, 0};
    lb_status st = parse_into(g, &r);
    if (st) {
        lb_gguf_free(g);
        return st;
    }
    *out = g;
    return LB_OK;
}

void lb_gguf_free(lb_gguf *g) {
    if (!g) return;
    if (g->shards) { /* a merged view: the keys belong to shard 0 */
        for (int i = 0; i < g->n_shards; i++) lb_gguf_free(g->shards[i]);
        lb_free(g->shards);
        lb_free(g->tensors);
        lb_free(g->tensor_index);
        lb_free(g);
        return;
    }
    if (g->kvs)
        for (int64_t i = 0; i < g->n_kv; i++) lb_free((void *)g->kvs[i].strs);
    lb_free(g->kvs);
    lb_free(g->key_index);
    lb_free(g->tensors);
    lb_free(g->tensor_index);
    lb_free(g);
}

/* A merged view of a split set's parsed shards: shard 0's keys, every
 * shard's tensors in shard order (each tensor's data pointer into its own
 * shard's buffer; its offset stays relative to that shard's data section).
 * A tensor name in two shards fails here, naming both shards. Takes the
 * shards in every case (freed on failure). */
lb_status lb_gguf_concat(lb_gguf **shards, int n, lb_gguf **out) {
    *out = NULL;
    lb_status st = LB_OK;
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += shards[i]->n_tensors; /* each bounded by its buffer */
    lb_gguf *g = lb_calloc(1, sizeof *g);
    lb_gguf **own = lb_calloc((size_t)n, sizeof *own);
    if (g) g->tensors = lb_calloc((size_t)total, sizeof *g->tensors);
    if (g) g->tensor_index = lb_calloc((size_t)total, sizeof *g->tensor_index);
    if (!g || !own || !g->tensors || !g->tensor_index) {
        if (g) lb_free(g->tensors), lb_free(g->tensor_index);
        lb_free(g), lb_free(own);
        for (int i = 0; i < n; i++) lb_gguf_free(shards[i]);
        return LB_ERR_NOMEM;
    }
    memcpy(own, shards, (size_t)n * sizeof *own);
    const lb_gguf *first = own[0];
    *g = (lb_gguf){first->data, first->size, first->version, first->alignment, first->data_offset,
                   first->n_kv, total, first->kvs, g->tensors, first->key_index, g->tensor_index, own, n};
    int64_t k = 0;
    for (int i = 0; i < n; i++)
        for (int64_t j = 0; j < own[i]->n_tensors; j++, k++) {
            g->tensors[k] = own[i]->tensors[j];
            /* `at` holds the shard here: the message names shards, not bytes */
            g->tensor_index[k] = (name_ref){g->tensors[k].name, g->tensors[k].name_len, k, (size_t)i};
        }
    if (total > 1) qsort(g->tensor_index, (size_t)total, sizeof *g->tensor_index, cmp_name_ref);
    for (int64_t i = 1; i < total && st == LB_OK; i++)
        if (cmp_name_ref(&g->tensor_index[i - 1], &g->tensor_index[i]) == 0) {
            size_t a = g->tensor_index[i - 1].at, b = g->tensor_index[i].at;
            st = lb_fail(LB_ERR_FORMAT, "tensor '%.*s' is in shard %zu and in shard %zu of the split set",
                         SHOWN(g->tensor_index[i].s, g->tensor_index[i].len), (a < b ? a : b) + 1,
                         (a < b ? b : a) + 1);
        }
    if (st != LB_OK) {
        lb_gguf_free(g);
        return st;
    }
    *out = g;
    return LB_OK;
}

int lb_gguf_n_shards(const lb_gguf *g) { return g->shards ? g->n_shards : 1; }

uint32_t lb_gguf_version(const lb_gguf *g) { return g->version; }
size_t lb_gguf_alignment(const lb_gguf *g) { return g->alignment; }
size_t lb_gguf_data_offset(const lb_gguf *g) { return g->data_offset; }
int64_t lb_gguf_n_kv(const lb_gguf *g) { return g->n_kv; }
int64_t lb_gguf_n_tensors(const lb_gguf *g) { return g->n_tensors; }

int64_t lb_gguf_find_key(const lb_gguf *g, const char *key) {
    return find_name(g->key_index, g->n_kv, key);
}

const char *lb_gguf_key(const lb_gguf *g, int64_t i, size_t *len) {
    if (i < 0 || i >= g->n_kv) return NULL;
    if (len) *len = g->kvs[i].key_len;
    return g->kvs[i].key;
}

/* (lb_gguf_type)-1 for an index out of range */
lb_gguf_type lb_gguf_kv_type(const lb_gguf *g, int64_t i) {
    if (i < 0 || i >= g->n_kv) return (lb_gguf_type)-1;
    return (lb_gguf_type)g->kvs[i].type;
}

/* The kv for key, of `type` unless that is UINT32_MAX; NULL (failed) otherwise. */
static const gguf_kv *kv_get(const lb_gguf *g, const char *key, uint32_t type) {
    int64_t i = lb_gguf_find_key(g, key);
    if (i < 0) {
        lb_fail(LB_ERR_FORMAT, "key '%s' is missing", key);
        return NULL;
    }
    if (type != UINT32_MAX && g->kvs[i].type != type) {
        lb_fail(LB_ERR_FORMAT, "key '%s' has type %s, expected %s", key,
                lb_gguf_type_name(g->kvs[i].type), lb_gguf_type_name(type));
        return NULL;
    }
    return &g->kvs[i];
}

/* Any integer value, sign-extended to 64 bits in *bits, if it lies in
 * [signed_ok ? INT64_MIN : 0, max]; `want` names the target type. */
static lb_status get_int(const lb_gguf *g, const char *key, int signed_ok, uint64_t max,
                         const char *want, uint64_t *bits) {
    const gguf_kv *kv = kv_get(g, key, UINT32_MAX);
    if (!kv) return LB_ERR_FORMAT;
    uint32_t t = kv->type;
    int is_signed = t == LB_GGUF_INT8 || t == LB_GGUF_INT16 || t == LB_GGUF_INT32 ||
                    t == LB_GGUF_INT64;
    size_t sz = lb_gguf_scalar_size(t);
    if (!sz || t == LB_GGUF_BOOL || t == LB_GGUF_FLOAT32 || t == LB_GGUF_FLOAT64)
        return lb_fail(LB_ERR_FORMAT, "key '%s' has type %s, expected an integer", key,
                       lb_gguf_type_name(t));
    uint64_t v = 0;
    memcpy(&v, kv->val, sz); /* the host is little-endian (CMake checks) */
    int neg = is_signed && ((v >> (8 * sz - 1)) & 1);
    if (neg && sz < 8) v |= ~(uint64_t)0 << (8 * sz);
    if (neg ? !signed_ok : v > max)
        return lb_fail(LB_ERR_FORMAT, "key '%s' (%s) value does not fit %s", key, lb_gguf_type_name(t),
                       want);
    *bits = v;
    return LB_OK;
}

lb_status lb_gguf_get_u32(const lb_gguf *g, const char *key, uint32_t *out) {
    uint64_t v = 0;
    lb_status st = get_int(g, key, 0, UINT32_MAX, "uint32", &v);
    if (!st) *out = (uint32_t)v;
    return st;
}

lb_status lb_gguf_get_u64(const lb_gguf *g, const char *key, uint64_t *out) {
    uint64_t v = 0;
    lb_status st = get_int(g, key, 0, UINT64_MAX, "uint64", &v);
    if (!st) *out = v;
    return st;
}

lb_status lb_gguf_get_i64(const lb_gguf *g, const char *key, int64_t *out) {
    uint64_t v = 0;
    lb_status st = get_int(g, key, 1, INT64_MAX, "int64", &v);
    if (!st) memcpy(out, &v, 8); /* two's complement bits, no implementation-defined cast */
    return st;
}

/* float32, or float64 rounded to float */
lb_status lb_gguf_get_f32(const lb_gguf *g, const char *key, float *out) {
    const gguf_kv *kv = kv_get(g, key, UINT32_MAX);
    if (!kv) return LB_ERR_FORMAT;
    if (kv->type == LB_GGUF_FLOAT32) {
        memcpy(out, kv->val, 4);
    } else if (kv->type == LB_GGUF_FLOAT64) {
        double d;
        memcpy(&d, kv->val, 8);
        *out = (float)d;
    } else {
        return lb_fail(LB_ERR_FORMAT, "key '%s' has type %s, expected float32", key,
                       lb_gguf_type_name(kv->type));
    }
    return LB_OK;
}

lb_status lb_gguf_get_bool(const lb_gguf *g, const char *key, int *out) {
    const gguf_kv *kv = kv_get(g, key, LB_GGUF_BOOL);
    if (!kv) return LB_ERR_FORMAT;
    *out = kv->val[0] != 0;
    return LB_OK;
}

lb_status lb_gguf_get_str(const lb_gguf *g, const char *key, const char **s, size_t *len) {
    const gguf_kv *kv = kv_get(g, key, LB_GGUF_STRING);
    if (!kv) return LB_ERR_FORMAT;
    *s = (const char *)kv->val;
    *len = kv->val_len;
    return LB_OK;
}

/* elems is NULL for string arrays (use lb_gguf_get_arr_str); any output may be NULL */
lb_status lb_gguf_get_arr(const lb_gguf *g, const char *key, lb_gguf_type *elem_type, uint64_t *n,
                          const uint8_t **elems) {
    const gguf_kv *kv = kv_get(g, key, LB_GGUF_ARRAY);
    if (!kv) return LB_ERR_FORMAT;
    if (elem_type) *elem_type = (lb_gguf_type)kv->elem_type;
    if (n) *n = kv->n;
    if (elems) *elems = kv->elem_type == LB_GGUF_STRING ? NULL : kv->val;
    return LB_OK;
}

lb_status lb_gguf_get_arr_str(const lb_gguf *g, const char *key, uint64_t i, const char **s,
                              size_t *len) {
    const gguf_kv *kv = kv_get(g, key, LB_GGUF_ARRAY);
    if (!kv) return LB_ERR_FORMAT;
    if (kv->elem_type != LB_GGUF_STRING)
        return lb_fail(LB_ERR_FORMAT, "key '%s' is an array of %s, expected strings", key,
                       lb_gguf_type_name(kv->elem_type));
    if (i >= kv->n)
        return lb_fail(LB_ERR_INVALID, "index %" PRIu64 " out of range for key '%s' (%" PRIu64
                       " strings)", i, key, kv->n);
    *len = (size_t)lb_rd64(kv->strs[i]);
    *s = (const char *)kv->strs[i] + 8;
    return LB_OK;
}

const lb_gguf_tensor *lb_gguf_tensor_at(const lb_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const lb_gguf_tensor *lb_gguf_find_tensor(const lb_gguf *g, const char *name) {
    return lb_gguf_tensor_at(g, find_name(g->tensor_index, g->n_tensors, name));
}
