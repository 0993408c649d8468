/* GGUF writer: collects keys and tensors, then writes header, keys, tensor
 * infos, padding and aligned tensor data through an atomic file (temporary
 * renamed at the end, removed on failure). Layout: see gguf.c. The same
 * collected writer can instead be written as llama.cpp's split set
 * (lb_gguf_write_split, at the end): each shard is this file's layout over a
 * run of the tensors, with the split keys added. */
#include <stdlib.h>
#include <string.h>

#include "core/mapped.h"
#include "io/gguf_internal.h"
#include "io/io_util.h"

/* ==== writer =============================================================== */

typedef struct {
    char *key;
    uint32_t type;
    uint8_t *val; /* the value exactly as written after the type field */
    size_t val_len;
    lb_gguf_late_value late; /* non-NULL: rewritten in place once every tensor is written */
    void *late_user;
} wkv;

typedef struct {
    char *name;
    int type;
    uint32_t n_dims;
    uint64_t ne[LB_GGUF_MAX_DIMS];
    const void *data; /* referenced, not copied */
    size_t nbytes;
    lb_gguf_tensor_fill fill; /* non-NULL: writes the bytes itself (data is then its user pointer) */
} wtensor;

struct lb_gguf_writer {
    wkv *kvs;
    size_t n_kv, cap_kv;
    wtensor *tensors;
    size_t n_tensors, cap_tensors;
};

/* ggml keeps names in char[64] (GGML_MAX_NAME) and refuses longer ones */
#define GGUF_MAX_TENSOR_NAME 63
/* gguf.md: keys are at most 65535 bytes */
#define GGUF_MAX_KEY 65535

lb_status lb_gguf_writer_create(lb_gguf_writer **out) {
    *out = calloc(1, sizeof **out);
    return *out ? LB_OK : lb_fail(LB_ERR_NOMEM, "out of memory for a GGUF writer");
}

void lb_gguf_writer_free(lb_gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kvs[i].key);
        free(w->kvs[i].val);
    }
    for (size_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->kvs);
    free(w->tensors);
    free(w);
}

/* Takes ownership of val (freed on failure too). */
static lb_status set_value(lb_gguf_writer *w, const char *key, uint32_t type, uint8_t *val,
                           size_t val_len) {
    if (!val) return lb_fail(LB_ERR_NOMEM, "out of memory setting GGUF key");
    size_t klen = key ? strlen(key) : 0;
    if (klen == 0 || klen > GGUF_MAX_KEY) {
        free(val);
        return lb_fail(LB_ERR_INVALID, "GGUF key must be 1..%d bytes", GGUF_MAX_KEY);
    }
    for (size_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kvs[i].key, key) == 0) { /* replace, keeping the first position */
            free(w->kvs[i].val);
            w->kvs[i].type = type;
            w->kvs[i].val = val;
            w->kvs[i].val_len = val_len;
            return LB_OK;
        }
    char *k = lb_io_strdup(key);
    if (!k || !lb_io_grow((void **)&w->kvs, &w->cap_kv, w->n_kv, sizeof *w->kvs, 16)) {
        free(k);
        free(val);
        return lb_fail(LB_ERR_NOMEM, "out of memory setting GGUF key '%s'", key);
    }
    w->kvs[w->n_kv++] = (wkv){k, type, val, val_len, NULL, NULL};
    return LB_OK;
}

static lb_status set_scalar(lb_gguf_writer *w, const char *key, uint32_t type, const void *v) {
    size_t n = lb_gguf_scalar_size(type);
    uint8_t *val = malloc(n);
    if (val) memcpy(val, v, n); /* host is little-endian (CMake checks) */
    return set_value(w, key, type, val, n);
}

lb_status lb_gguf_set_u32(lb_gguf_writer *w, const char *key, uint32_t v) {
    return set_scalar(w, key, LB_GGUF_UINT32, &v);
}
lb_status lb_gguf_set_i32(lb_gguf_writer *w, const char *key, int32_t v) {
    return set_scalar(w, key, LB_GGUF_INT32, &v);
}
lb_status lb_gguf_set_u64(lb_gguf_writer *w, const char *key, uint64_t v) {
    return set_scalar(w, key, LB_GGUF_UINT64, &v);
}
lb_status lb_gguf_set_f32(lb_gguf_writer *w, const char *key, float v) {
    return set_scalar(w, key, LB_GGUF_FLOAT32, &v);
}
lb_status lb_gguf_set_bool(lb_gguf_writer *w, const char *key, int v) {
    return set_scalar(w, key, LB_GGUF_BOOL, &(uint8_t){v ? 1 : 0});
}

lb_status lb_gguf_set_str(lb_gguf_writer *w, const char *key, const char *s) {
    size_t n = strlen(s);
    uint8_t *val = n <= SIZE_MAX - 8 ? malloc(8 + n) : NULL;
    if (val) {
        lb_wr64(val, n);
        memcpy(val + 8, s, n);
    }
    return set_value(w, key, LB_GGUF_STRING, val, 8 + n);
}

lb_status lb_gguf_set_arr(lb_gguf_writer *w, const char *key, lb_gguf_type elem_type,
                          const void *elems, uint64_t n) {
    size_t esize = lb_gguf_scalar_size(elem_type), bytes;
    if (esize == 0) /* strings go through lb_gguf_set_arr_str */
        return lb_fail(LB_ERR_INVALID, "GGUF array element type %d is not numeric", (int)elem_type);
    if (n > SIZE_MAX || lb_mul_overflows((size_t)n, esize, &bytes) || bytes > SIZE_MAX - 12 ||
        (n && !elems))
        return lb_fail(LB_ERR_INVALID, "bad GGUF array of %" PRIu64 " elements", n);
    uint8_t *val = malloc(12 + bytes);
    if (val) {
        lb_wr32(val, (uint32_t)elem_type);
        lb_wr64(val + 4, n);
        if (bytes) memcpy(val + 12, elems, bytes);
    }
    return set_value(w, key, LB_GGUF_ARRAY, val, 12 + bytes);
}

/* lens may be NULL (then each string is NUL-terminated) */
lb_status lb_gguf_set_arr_str(lb_gguf_writer *w, const char *key, const char *const *strs,
                              const size_t *lens, uint64_t n) {
    size_t total = 12;
    for (uint64_t i = 0; i < n; i++) {
        size_t len = lens ? lens[i] : strlen(strs[i]);
        if (total > SIZE_MAX - 8 || len > SIZE_MAX - 8 - total)
            return lb_fail(LB_ERR_INVALID, "GGUF string array is too large");
        total += 8 + len;
    }
    uint8_t *val = malloc(total);
    if (val) {
        size_t at = 12;
        lb_wr32(val, LB_GGUF_STRING);
        lb_wr64(val + 4, n);
        for (uint64_t i = 0; i < n; i++) {
            size_t len = lens ? lens[i] : strlen(strs[i]);
            lb_wr64(val + at, len);
            if (len) memcpy(val + at + 8, strs[i], len);
            at += 8 + len;
        }
    }
    return set_value(w, key, LB_GGUF_ARRAY, val, total);
}

lb_status lb_gguf_add_tensor(lb_gguf_writer *w, const char *name, int ggml_type, uint32_t n_dims,
                             const uint64_t *ne, const void *data, size_t nbytes) {
    size_t want, len = name ? strlen(name) : 0;
    if (len == 0 || len > GGUF_MAX_TENSOR_NAME)
        return lb_fail(LB_ERR_INVALID, "tensor name '%s' must be 1..%d bytes", name ? name : "",
                       GGUF_MAX_TENSOR_NAME);
    if (!ne && n_dims) return lb_fail(LB_ERR_INVALID, "tensor '%s': NULL dims", name);
    lb_status st = lb_gguf_tensor_nbytes(name, len, ggml_type, n_dims, ne, LB_ERR_INVALID,
                                 LB_ERR_INVALID, &want);
    if (st) return st;
    if (nbytes != want)
        return lb_fail(LB_ERR_INVALID, "tensor '%s': %zu bytes given, type and dims need %zu",
                       name, nbytes, want);
    if (!data) return lb_fail(LB_ERR_INVALID, "tensor '%s': NULL data", name);
    for (size_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return lb_fail(LB_ERR_INVALID, "tensor '%s' added twice", name);
    char *nm = lb_io_strdup(name);
    if (!nm || !lb_io_grow((void **)&w->tensors, &w->cap_tensors, w->n_tensors, sizeof *w->tensors, 16)) {
        free(nm);
        return lb_fail(LB_ERR_NOMEM, "out of memory adding tensor '%s'", name);
    }
    wtensor *t = &w->tensors[w->n_tensors++];
    *t = (wtensor){nm, ggml_type, n_dims, {1, 1, 1, 1}, data, nbytes, NULL};
    memcpy(t->ne, ne, n_dims * sizeof *ne);
    return LB_OK;
}

lb_status lb_gguf_add_tensor_fill(lb_gguf_writer *w, const char *name, int ggml_type, uint32_t n_dims,
                                  const uint64_t *ne, size_t nbytes, lb_gguf_tensor_fill fill, void *user) {
    lb_status st = lb_gguf_add_tensor(w, name, ggml_type, n_dims, ne, user, nbytes);
    if (st == LB_OK) w->tensors[w->n_tensors - 1].fill = fill;
    return st;
}

lb_status lb_gguf_set_late(lb_gguf_writer *w, const char *key, lb_gguf_late_value fn, void *user) {
    for (size_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kvs[i].key, key) == 0) {
            w->kvs[i].late = fn;
            w->kvs[i].late_user = user;
            return LB_OK;
        }
    return lb_fail(LB_ERR_INVALID, "GGUF key '%s' must be set before it is made late", key);
}

/* After the data: each late key's value made again (the same length) and
 * written over its place in the header. */
static void write_late_keys(const wkv *const *kvs, size_t n_kv, lb_atomic_file *f) {
    uint64_t at = 24; /* magic, version, tensor count, key count */
    for (size_t i = 0; i < n_kv && f->err == LB_OK; i++) {
        const wkv *kv = kvs[i];
        at += 8 + strlen(kv->key) + 4; /* the key, its type: the value follows */
        if (kv->late) {
            lb_status st = kv->late(kv->late_user, kv->key, kv->val, kv->val_len);
            if (st != LB_OK) f->err = st;
            else if (fflush(f->fp) != 0 || fseek(f->fp, (long)at, SEEK_SET) != 0 ||
                     fwrite(kv->val, 1, kv->val_len, f->fp) != kv->val_len || fseek(f->fp, 0, SEEK_END) != 0)
                f->err = lb_fail(LB_ERR_IO, "cannot rewrite key %s of '%s' (temporary '%s')", kv->key, f->final_path,
                                 f->tmp_path);
        }
        at += kv->val_len;
    }
}

/* the low n bytes of v, little-endian */
static void put_le(lb_atomic_file *f, uint64_t v, size_t n) {
    uint8_t b[8];
    lb_wr64(b, v);
    lb_atomic_write(f, b, n);
}

static void put_str(lb_atomic_file *f, const char *s) {
    put_le(f, strlen(s), 8);
    lb_atomic_write(f, s, strlen(s));
}

/* general.alignment as the writer holds it (default 32), checked */
static lb_status writer_alignment(const lb_gguf_writer *w, size_t *align, const wkv **kv_out) {
    *align = LB_GGUF_DEFAULT_ALIGNMENT;
    *kv_out = NULL;
    for (size_t i = 0; i < w->n_kv; i++) {
        const wkv *kv = &w->kvs[i];
        if (strcmp(kv->key, "general.alignment") != 0) continue;
        /* readers (ours and ggml's) only take a uint32 power of two */
        if (kv->type != LB_GGUF_UINT32 || !lb_gguf_is_pow2(lb_rd32(kv->val)))
            return lb_fail(LB_ERR_INVALID, "general.alignment must be a uint32 power of two");
        *align = lb_rd32(kv->val);
        *kv_out = kv;
    }
    return LB_OK;
}

/* what write_file copies of a stored tensor between page releases */
#define WRITE_PIECE ((size_t)16 << 20)

static uint64_t padded_size(size_t nbytes, size_t align) { return nbytes + (align - nbytes % align) % align; }

/* One file: the keys kvs[0..n_kv) and the tensors w->tensors[t0..t1), into an
 * open atomic file, neither committed nor aborted here (the caller does
 * either). The data section's total was checked by the caller. */
static lb_status write_file(const lb_gguf_writer *w, const wkv *const *kvs, size_t n_kv, size_t t0, size_t t1,
                            size_t align, lb_atomic_file *f) {
    lb_atomic_write(f, "GGUF", 4);
    put_le(f, 3, 4);
    put_le(f, t1 - t0, 8);
    put_le(f, n_kv, 8);
    for (size_t i = 0; i < n_kv; i++) {
        put_str(f, kvs[i]->key);
        put_le(f, kvs[i]->type, 4);
        lb_atomic_write(f, kvs[i]->val, kvs[i]->val_len);
    }
    uint64_t offset = 0;
    for (size_t i = t0; i < t1; i++) {
        const wtensor *t = &w->tensors[i];
        put_str(f, t->name);
        put_le(f, t->n_dims, 4);
        for (uint32_t d = 0; d < t->n_dims; d++) put_le(f, t->ne[d], 8);
        put_le(f, (uint32_t)t->type, 4);
        put_le(f, offset, 8);
        offset += padded_size(t->nbytes, align);
    }
    lb_atomic_pad(f, align);
    for (size_t i = t0; i < t1; i++) {
        const wtensor *t = &w->tensors[i];
        if (t->fill) { /* one tensor at a time, made as it is written */
            uint64_t before = f->written;
            lb_status st = t->fill((void *)t->data, f);
            if (st == LB_OK && f->written - before != t->nbytes)
                st = lb_fail(LB_ERR_INVALID, "tensor '%s': %llu bytes written for the %zu declared", t->name,
                             (unsigned long long)(f->written - before), t->nbytes);
            if (st != LB_OK) return st;
        } else {
            /* in pieces, each given back once written (when it is a mapped
             * input's): a 262 MB embedding is never resident whole */
            const uint8_t *p = t->data;
            for (size_t at = 0; at < t->nbytes; at += WRITE_PIECE) {
                size_t k = t->nbytes - at < WRITE_PIECE ? t->nbytes - at : WRITE_PIECE;
                lb_atomic_write(f, p + at, k);
                lb_map_release(p + at, k);
            }
        }
        lb_atomic_pad(f, align);
    }
    write_late_keys(kvs, n_kv, f);
    return f->err;
}

/* The alignment, checked, and the keys in order: what lb_gguf_write and
 * lb_gguf_write_to check before creating or writing anything. */
static lb_status write_prepare(const lb_gguf_writer *w, size_t *align, const wkv ***kvs_out) {
    const wkv *align_kv;
    lb_status st = writer_alignment(w, align, &align_kv);
    if (st) return st;
    /* Tensors are packed in order, each padded to the alignment: ggml's reader
     * requires exactly that. Check the total fits before creating anything. */
    uint64_t end = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        uint64_t padded = padded_size(w->tensors[i].nbytes, *align);
        if (padded < w->tensors[i].nbytes || end > UINT64_MAX - padded)
            return lb_fail(LB_ERR_INVALID, "GGUF data section is too large");
        end += padded;
    }
    const wkv **kvs = w->n_kv ? malloc(w->n_kv * sizeof *kvs) : NULL;
    if (w->n_kv && !kvs) return lb_fail(LB_ERR_NOMEM, "out of memory writing a GGUF file");
    for (size_t i = 0; i < w->n_kv; i++) kvs[i] = &w->kvs[i];
    *kvs_out = kvs;
    return LB_OK;
}

lb_status lb_gguf_write(lb_gguf_writer *w, const char *path) {
    size_t align;
    const wkv **kvs = NULL;
    lb_status st = write_prepare(w, &align, &kvs);
    if (st) return st;
    lb_atomic_file f;
    st = lb_atomic_open(&f, path);
    if (st == LB_OK) {
        st = write_file(w, kvs, w->n_kv, 0, w->n_tensors, align, &f);
        if (st == LB_OK) st = lb_atomic_commit(&f); /* reports any write error and removes the temporary */
        else lb_atomic_abort(&f);
    }
    free(kvs);
    return st;
}

lb_status lb_gguf_write_to(lb_gguf_writer *w, lb_atomic_file *f) {
    size_t align;
    const wkv **kvs = NULL;
    lb_status st = write_prepare(w, &align, &kvs);
    if (st == LB_OK) st = write_file(w, kvs, w->n_kv, 0, w->n_tensors, align, f);
    free(kvs);
    return st;
}

/* ==== split sets (llama.cpp's gguf-split convention; gguf.h) =============== */

static int is_split_key(const char *key) {
    return strcmp(key, LB_GGUF_KEY_SPLIT_NO) == 0 || strcmp(key, LB_GGUF_KEY_SPLIT_COUNT) == 0 ||
           strcmp(key, LB_GGUF_KEY_SPLIT_TENSORS) == 0 || strcmp(key, LB_GGUF_KEY_SPLIT_FINGERPRINT) == 0;
}

static uint64_t kv_bytes(const wkv *kv) { return 8 + strlen(kv->key) + 4 + kv->val_len; }
static uint64_t info_bytes(const wtensor *t) { return 8 + strlen(t->name) + 4 + 8ull * t->n_dims + 4 + 8; }

/* FNV-1a, 64-bit: a fingerprint to tell sets apart, not a checksum of the data */
static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

lb_status lb_gguf_writer_data_offset(const lb_gguf_writer *w, uint64_t *offset) {
    size_t align;
    const wkv *align_kv;
    lb_status st = writer_alignment(w, &align, &align_kv);
    if (st) return st;
    uint64_t n = 24; /* magic, version, tensor count, key count */
    for (size_t i = 0; i < w->n_kv; i++) n += kv_bytes(&w->kvs[i]);
    for (size_t i = 0; i < w->n_tensors; i++) n += info_bytes(&w->tensors[i]);
    *offset = n + (align - n % align) % align;
    return LB_OK;
}

/* Greedy, in tensor order as gguf-split: a shard is closed when the next
 * tensor would take its file past max_bytes (header and padding counted,
 * where gguf-split counts tensor data only) or past max_tensors; it always
 * takes one tensor. starts[s] is shard s's first tensor, starts[n] the end. */
static lb_status plan_shards(const lb_gguf_writer *w, const lb_gguf_split_opts *o, size_t align, uint64_t base0,
                             uint64_t base_rest, size_t *starts, int *n_out) {
    size_t i = 0;
    int n = 0;
    do {
        if (n == LB_GGUF_SPLIT_MAX_SHARDS)
            return lb_fail(LB_ERR_INVALID, "these limits need more than %d shards (split.count is a uint16)",
                           LB_GGUF_SPLIT_MAX_SHARDS);
        starts[n++] = i;
        uint64_t head = n == 1 ? base0 : base_rest, data = 0;
        for (uint32_t k = 0; i < w->n_tensors; k++, i++) {
            const wtensor *t = &w->tensors[i];
            uint64_t h = head + info_bytes(t), size = h + (align - h % align) % align + data;
            size += padded_size(t->nbytes, align);
            if (k > 0 && ((o->max_bytes && size > o->max_bytes) || (o->max_tensors && k >= o->max_tensors))) break;
            head += info_bytes(t);
            data += padded_size(t->nbytes, align);
        }
    } while (i < w->n_tensors);
    starts[n] = w->n_tensors;
    *n_out = n;
    return LB_OK;
}

lb_status lb_gguf_write_split(lb_gguf_writer *w, const char *path, const lb_gguf_split_opts *opts, int *n_shards) {
    *n_shards = 0;
    size_t align;
    const wkv *align_kv;
    lb_status st = writer_alignment(w, &align, &align_kv);
    if (st) return st;
    uint64_t end = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        uint64_t padded = padded_size(w->tensors[i].nbytes, align);
        if (padded < w->tensors[i].nbytes || end > UINT64_MAX - padded)
            return lb_fail(LB_ERR_INVALID, "GGUF data section is too large");
        end += padded;
    }
    if (w->n_tensors > INT32_MAX) return lb_fail(LB_ERR_INVALID, "split.tensors.count is an int32: too many tensors");

    /* the split keys, their values patched per shard before it is written */
    uint8_t v_no[2] = {0}, v_count[2], v_total[4], v_fp[8];
    wkv split[4] = {{(char *)LB_GGUF_KEY_SPLIT_NO, LB_GGUF_UINT16, v_no, 2, NULL, NULL},
                    {(char *)LB_GGUF_KEY_SPLIT_COUNT, LB_GGUF_UINT16, v_count, 2, NULL, NULL},
                    {(char *)LB_GGUF_KEY_SPLIT_TENSORS, LB_GGUF_INT32, v_total, 4, NULL, NULL},
                    {(char *)LB_GGUF_KEY_SPLIT_FINGERPRINT, LB_GGUF_UINT64, v_fp, 8, NULL, NULL}};
    const wkv **kvs = malloc((w->n_kv + 5) * sizeof *kvs);
    size_t *starts = malloc((w->n_tensors + 2) * sizeof *starts);
    lb_atomic_file *files = NULL;
    char *name = NULL;
    size_t name_cap = strlen(path) + 32;
    int n = 0, opened = 0;
    if (!kvs || !starts || !(name = malloc(name_cap))) {
        st = lb_fail(LB_ERR_NOMEM, "out of memory writing '%s'", path);
        goto done;
    }
    /* shard 1: every key of the writer but old split keys, then the split keys */
    size_t n_kv0 = 0;
    uint64_t base0 = 24, base_rest = 24, fp = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < w->n_kv; i++)
        if (!is_split_key(w->kvs[i].key)) {
            kvs[n_kv0++] = &w->kvs[i];
            base0 += kv_bytes(&w->kvs[i]);
            fp = fnv(fp, w->kvs[i].key, strlen(w->kvs[i].key) + 1);
            fp = fnv(fp, &w->kvs[i].type, sizeof w->kvs[i].type);
            fp = fnv(fp, w->kvs[i].val, w->kvs[i].val_len);
        }
    for (int k = 0; k < 4; k++) base0 += kv_bytes(&split[k]), base_rest += kv_bytes(&split[k]);
    if (align_kv) base_rest += kv_bytes(align_kv); /* the others need it to place their data */
    if ((st = plan_shards(w, opts, align, base0, base_rest, starts, &n)) != LB_OK) goto done;

    /* the fingerprint covers the keys, every tensor's info and the cut */
    fp = fnv(fp, &n, sizeof n);
    for (int s = 0; s < n; s++)
        for (size_t i = starts[s]; i < starts[s + 1]; i++) {
            const wtensor *t = &w->tensors[i];
            fp = fnv(fp, t->name, strlen(t->name) + 1);
            fp = fnv(fp, &s, sizeof s);
            fp = fnv(fp, &t->type, sizeof t->type);
            fp = fnv(fp, t->ne, sizeof t->ne);
        }
    lb_wr16(v_count, (uint16_t)n);
    lb_wr32(v_total, (uint32_t)w->n_tensors);
    lb_wr64(v_fp, fp);
    if (!(files = calloc((size_t)n, sizeof *files))) {
        st = lb_fail(LB_ERR_NOMEM, "out of memory writing '%s'", path);
        goto done;
    }
    /* every shard complete under its temporary name before any is renamed */
    for (int s = 0; s < n && st == LB_OK; s++) {
        size_t nk = s == 0 ? n_kv0 : 0;
        if (s > 0 && align_kv) kvs[nk++] = align_kv;
        for (int k = 0; k < 4; k++) kvs[nk++] = &split[k];
        lb_wr16(v_no, (uint16_t)s);
        if ((st = lb_gguf_split_path(name, name_cap, path, s, n)) != LB_OK) break;
        if ((st = lb_atomic_open(&files[s], name)) != LB_OK) break;
        opened = s + 1;
        st = write_file(w, kvs, nk, starts[s], starts[s + 1], align, &files[s]);
        lb_atomic_finish(&files[s]); /* closed: one descriptor open at a time */
        if (st == LB_OK) st = files[s].err;
    }
    int committed = 0, commit_failed = 0; /* shards renamed into place; a failed rename released its own */
    for (int s = 0; s < opened && st == LB_OK; s++) {
        if ((st = lb_atomic_commit(&files[s])) != LB_OK) commit_failed = 1;
        else committed = s + 1;
    }
    if (st != LB_OK) { /* nothing of this set stays: shards already renamed, then the temporaries */
        for (int s = 0; s < committed; s++)
            if (lb_gguf_split_path(name, name_cap, path, s, n) == LB_OK) remove(name);
        for (int s = committed + commit_failed; s < opened; s++) lb_atomic_abort(&files[s]);
        goto done;
    }
    *n_shards = n;
done:
    free(files);
    free(name);
    free(starts);
    free(kvs);
    return st;
}
