/* GGUF (version 3) container: a key/value header, tensor infos, aligned
 * tensor data, all little-endian. This layer knows the container only; what
 * the keys and tensors mean for a model lives in model_gguf.c.
 *
 * The parser works on a memory buffer (a mapped file), checks every length,
 * count, offset and type against the buffer before use, and keeps views into
 * the buffer (no copies): the buffer must outlive the lb_gguf. */
#ifndef LOWBIT_GGUF_H
#define LOWBIT_GGUF_H

#include "lowbit/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    LB_GGUF_UINT8 = 0,
    LB_GGUF_INT8 = 1,
    LB_GGUF_UINT16 = 2,
    LB_GGUF_INT16 = 3,
    LB_GGUF_UINT32 = 4,
    LB_GGUF_INT32 = 5,
    LB_GGUF_FLOAT32 = 6,
    LB_GGUF_BOOL = 7,
    LB_GGUF_STRING = 8,
    LB_GGUF_ARRAY = 9,
    LB_GGUF_UINT64 = 10,
    LB_GGUF_INT64 = 11,
    LB_GGUF_FLOAT64 = 12
} lb_gguf_type;

#define LB_GGUF_MAX_DIMS 4
#define LB_GGUF_DEFAULT_ALIGNMENT 32

typedef struct {
    const char *name; /* NOT NUL-terminated in the buffer: use name_len */
    size_t name_len;
    uint32_t n_dims;
    uint64_t ne[LB_GGUF_MAX_DIMS]; /* ne[0] is the fastest-varying (columns) */
    int type;                      /* ggml type id */
    uint64_t offset;               /* relative to the data section */
    const uint8_t *data;           /* start of the tensor's bytes */
    size_t nbytes;                 /* from type and dims */
} lb_gguf_tensor;

typedef struct lb_gguf lb_gguf;

/* Parses and validates: magic, version (2 or 3), counts bounded by the
 * buffer, every string and array inside the buffer, known value types,
 * general.alignment a power of two, known ggml tensor types with ne[0] a
 * multiple of their block size, offsets aligned, tensor data inside the
 * buffer and not overlapping. The data section starts at the next multiple
 * of the alignment after the tensor infos; only a file without tensors may
 * end before it (gguf-py writes vocab-only files so), its data offset is
 * then the end of the buffer. */
LB_API lb_status lb_gguf_parse(const uint8_t *data, size_t size, lb_gguf **out);
LB_API void lb_gguf_free(lb_gguf *g);

LB_API uint32_t lb_gguf_version(const lb_gguf *g);
LB_API size_t lb_gguf_alignment(const lb_gguf *g);
LB_API size_t lb_gguf_data_offset(const lb_gguf *g); /* start of the data section in the buffer */

/* key/value access; -1 when absent */
LB_API int64_t lb_gguf_n_kv(const lb_gguf *g);
LB_API int64_t lb_gguf_find_key(const lb_gguf *g, const char *key);
LB_API const char *lb_gguf_key(const lb_gguf *g, int64_t i, size_t *len);
LB_API lb_gguf_type lb_gguf_kv_type(const lb_gguf *g, int64_t i);
/* Typed getters by key. Missing key or wrong type -> LB_ERR_FORMAT with the
 * key named. Integer getters accept any integer type whose value fits. */
LB_API lb_status lb_gguf_get_u32(const lb_gguf *g, const char *key, uint32_t *out);
LB_API lb_status lb_gguf_get_u64(const lb_gguf *g, const char *key, uint64_t *out);
LB_API lb_status lb_gguf_get_i64(const lb_gguf *g, const char *key, int64_t *out);
LB_API lb_status lb_gguf_get_f32(const lb_gguf *g, const char *key, float *out);
LB_API lb_status lb_gguf_get_bool(const lb_gguf *g, const char *key, int *out);
/* String views (not NUL-terminated). */
LB_API lb_status lb_gguf_get_str(const lb_gguf *g, const char *key, const char **s, size_t *len);
/* Arrays: element type and count; numeric arrays give a pointer to the
 * packed little-endian elements; string arrays are read one at a time. */
LB_API lb_status lb_gguf_get_arr(const lb_gguf *g, const char *key, lb_gguf_type *elem_type,
                          uint64_t *n, const uint8_t **elems);
LB_API lb_status lb_gguf_get_arr_str(const lb_gguf *g, const char *key, uint64_t i, const char **s,
                              size_t *len);

LB_API int64_t lb_gguf_n_tensors(const lb_gguf *g);
LB_API const lb_gguf_tensor *lb_gguf_tensor_at(const lb_gguf *g, int64_t i);
LB_API const lb_gguf_tensor *lb_gguf_find_tensor(const lb_gguf *g, const char *name);

/* ---- writer ---------------------------------------------------------------
 * Collects keys and tensors, then writes the whole file atomically (temporary
 * file renamed at the end). Values are copied; tensor data is referenced and
 * must stay valid until lb_gguf_write returns. Keys are written in the order
 * they were first set; setting a key again replaces its value. */
typedef struct lb_gguf_writer lb_gguf_writer;
LB_API lb_status lb_gguf_writer_create(lb_gguf_writer **out);
LB_API void lb_gguf_writer_free(lb_gguf_writer *w);
LB_API lb_status lb_gguf_set_u32(lb_gguf_writer *w, const char *key, uint32_t v);
LB_API lb_status lb_gguf_set_i32(lb_gguf_writer *w, const char *key, int32_t v);
LB_API lb_status lb_gguf_set_u64(lb_gguf_writer *w, const char *key, uint64_t v);
LB_API lb_status lb_gguf_set_f32(lb_gguf_writer *w, const char *key, float v);
LB_API lb_status lb_gguf_set_bool(lb_gguf_writer *w, const char *key, int v);
LB_API lb_status lb_gguf_set_str(lb_gguf_writer *w, const char *key, const char *s);
/* numeric array: n elements of elem_type, packed little-endian in `elems` */
LB_API lb_status lb_gguf_set_arr(lb_gguf_writer *w, const char *key, lb_gguf_type elem_type,
                          const void *elems, uint64_t n);
LB_API lb_status lb_gguf_set_arr_str(lb_gguf_writer *w, const char *key, const char *const *strs,
                              const size_t *lens, uint64_t n);
/* ne[0] fastest; nbytes must equal what type and dims imply. The data is
 * not copied: it must stay valid (and unchanged) until lb_gguf_write. */
LB_API lb_status lb_gguf_add_tensor(lb_gguf_writer *w, const char *name, int ggml_type, uint32_t n_dims,
                             const uint64_t *ne, const void *data, size_t nbytes);
LB_API lb_status lb_gguf_write(lb_gguf_writer *w, const char *path);

#ifdef __cplusplus
}
#endif
#endif
