/* GGUF writer: collects keys and tensors, then writes header, keys, tensor
 * infos, padding and aligned tensor data through an atomic file (temporary
 * renamed at the end, removed on failure). Layout: see gguf.c. */
#include <stdlib.h>
#include <string.h>

#include "io/gguf_internal.h"
#include "io/io_util.h"

/* ==== writer =============================================================== */

typedef struct {
    char *key;
    uint32_t type;
    uint8_t *val; /* the value exactly as written after the type field */
    size_t val_len;
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
    w->kvs[w->n_kv++] = (wkv){k, type, val, val_len};
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

lb_status lb_gguf_write(lb_gguf_writer *w, const char *path) {
    size_t align = LB_GGUF_DEFAULT_ALIGNMENT;
    for (size_t i = 0; i < w->n_kv; i++) {
        const wkv *kv = &w->kvs[i];
        if (strcmp(kv->key, "general.alignment") != 0) continue;
        /* readers (ours and ggml's) only take a uint32 power of two */
        if (kv->type != LB_GGUF_UINT32 || !lb_gguf_is_pow2(lb_rd32(kv->val)))
            return lb_fail(LB_ERR_INVALID, "general.alignment must be a uint32 power of two");
        align = lb_rd32(kv->val);
    }
    /* Tensors are packed in order, each padded to the alignment: ggml's reader
     * requires exactly that. Check the total fits before creating anything. */
    uint64_t end = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        uint64_t padded = w->tensors[i].nbytes + (align - w->tensors[i].nbytes % align) % align;
        if (padded < w->tensors[i].nbytes || end > UINT64_MAX - padded)
            return lb_fail(LB_ERR_INVALID, "GGUF data section is too large");
        end += padded;
    }

    lb_atomic_file f;
    lb_status st = lb_atomic_open(&f, path);
    if (st) return st;
    lb_atomic_write(&f, "GGUF", 4);
    put_le(&f, 3, 4);
    put_le(&f, w->n_tensors, 8);
    put_le(&f, w->n_kv, 8);
    for (size_t i = 0; i < w->n_kv; i++) {
        put_str(&f, w->kvs[i].key);
        put_le(&f, w->kvs[i].type, 4);
        lb_atomic_write(&f, w->kvs[i].val, w->kvs[i].val_len);
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        put_str(&f, t->name);
        put_le(&f, t->n_dims, 4);
        for (uint32_t d = 0; d < t->n_dims; d++) put_le(&f, t->ne[d], 8);
        put_le(&f, (uint32_t)t->type, 4);
        put_le(&f, offset, 8);
        offset += t->nbytes + (align - t->nbytes % align) % align;
    }
    lb_atomic_pad(&f, align);
    for (size_t i = 0; i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        if (t->fill) { /* one tensor at a time, made as it is written */
            uint64_t before = f.written;
            st = t->fill((void *)t->data, &f);
            if (st == LB_OK && f.written - before != t->nbytes)
                st = lb_fail(LB_ERR_INVALID, "tensor '%s': %llu bytes written for the %zu declared", t->name,
                             (unsigned long long)(f.written - before), t->nbytes);
            if (st != LB_OK) {
                lb_atomic_abort(&f);
                return st;
            }
        } else {
            lb_atomic_write(&f, t->data, t->nbytes);
        }
        lb_atomic_pad(&f, align);
    }
    return lb_atomic_commit(&f); /* reports any write error and removes the temporary */
}
