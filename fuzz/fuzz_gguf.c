/* libFuzzer target for the GGUF parser: any input must either fail cleanly or
 * parse into something every public getter can walk without reading outside
 * the input (ASan watches the tensor bytes and strings we touch). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lowbit/gguf.h"

static volatile uint8_t sink; /* keeps the byte reads from being optimized away */

static void touch(const void *p, size_t n) {
    const uint8_t *b = p;
    uint8_t x = 0;
    for (size_t i = 0; i < n; i++) x ^= b[i];
    sink ^= x;
}

static size_t elem_size(lb_gguf_type t) {
    switch (t) {
    case LB_GGUF_UINT8: case LB_GGUF_INT8: case LB_GGUF_BOOL: return 1;
    case LB_GGUF_UINT16: case LB_GGUF_INT16: return 2;
    case LB_GGUF_UINT32: case LB_GGUF_INT32: case LB_GGUF_FLOAT32: return 4;
    default: return 8;
    }
}

/* Reads key i back through the by-name getters (it must be findable by name). */
static void walk_kv(const lb_gguf *g, int64_t i) {
    size_t len;
    const char *k = lb_gguf_key(g, i, &len);
    if (!k) abort();
    char *key = malloc(len + 1);
    if (!key) return;
    memcpy(key, k, len);
    key[len] = 0;
    if (lb_gguf_find_key(g, key) != i) abort();
    uint32_t u32;
    uint64_t u64, n;
    int64_t i64;
    float f;
    int b;
    const char *s;
    const uint8_t *elems;
    lb_gguf_type et, t = lb_gguf_kv_type(g, i);
    /* every getter on every key: wrong types must fail, not crash */
    (void)lb_gguf_get_u32(g, key, &u32);
    (void)lb_gguf_get_u64(g, key, &u64);
    (void)lb_gguf_get_i64(g, key, &i64);
    (void)lb_gguf_get_f32(g, key, &f);
    (void)lb_gguf_get_bool(g, key, &b);
    if (lb_gguf_get_str(g, key, &s, &len) == LB_OK) {
        if (t != LB_GGUF_STRING) abort();
        touch(s, len);
    }
    if (lb_gguf_get_arr(g, key, &et, &n, &elems) == LB_OK) {
        if (t != LB_GGUF_ARRAY) abort();
        if (et == LB_GGUF_STRING) {
            for (uint64_t j = 0; j < n; j++) {
                if (lb_gguf_get_arr_str(g, key, j, &s, &len) != LB_OK) abort();
                touch(s, len);
            }
            if (lb_gguf_get_arr_str(g, key, n, &s, &len) == LB_OK) abort();
        } else {
            touch(elems, (size_t)n * elem_size(et));
        }
    }
    free(key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lb_gguf *g = NULL;
    if (lb_gguf_parse(data, size, &g) != LB_OK) return 0;
    size_t align = lb_gguf_alignment(g);
    /* the data section is aligned, except in a file without tensors that
     * ends unpadded (gguf-py's vocab-only files): then it starts at the end */
    int unpadded_empty = lb_gguf_n_tensors(g) == 0 && lb_gguf_data_offset(g) == size;
    if (align == 0 || (align & (align - 1)) || lb_gguf_data_offset(g) > size ||
        (lb_gguf_data_offset(g) % align && !unpadded_empty))
        abort();
    for (int64_t i = 0; i < lb_gguf_n_kv(g); i++) walk_kv(g, i);
    for (int64_t i = 0; i < lb_gguf_n_tensors(g); i++) {
        const lb_gguf_tensor *t = lb_gguf_tensor_at(g, i);
        if (!t || t->offset % align) abort();
        char *name = malloc(t->name_len + 1);
        if (!name) break;
        memcpy(name, t->name, t->name_len);
        name[t->name_len] = 0;
        if (lb_gguf_find_tensor(g, name) != t) abort();
        free(name);
        touch(t->data, t->nbytes);
        /* the tensor lies inside the input */
        if (t->data < data || (size_t)(t->data - data) + t->nbytes > size) abort();
    }
    lb_gguf_free(g);
    return 0;
}
