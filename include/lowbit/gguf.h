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

/* ---- split sets: llama.cpp's gguf-split convention ------------------------
 * One logical GGUF as N complete GGUF files PREFIX-00001-of-0000N.gguf ..
 * (1-based in the name), a tensor never cut across files. Every shard has
 * split.no (uint16, 0-based), split.count (uint16, N) and
 * split.tensors.count (int32, the tensors over all shards); the first holds
 * every other key too, the others only the split keys (and
 * general.alignment when it is not the default). lowbit also writes
 * lowbit.split.fingerprint (uint64, the same in every shard: a hash of the
 * keys and tensor infos) so a shard of another lowbit set is caught;
 * llama.cpp ignores it. docs/SCALING.md. */
#define LB_GGUF_SPLIT_MAX_SHARDS 65535 /* split.count is a uint16 */
typedef struct {
    uint64_t max_bytes;   /* a shard's file size at most this (0: no limit), unless one tensor alone exceeds it */
    uint32_t max_tensors; /* at most this many tensors per shard (0: no limit) */
} lb_gguf_split_opts;
/* "PATH-%05d-of-%05d.gguf" with PATH's ".gguf" ending, if any, removed (the
 * prefix), for shard `no` (0-based) of `count`. LB_ERR_INVALID when it does
 * not fit in n bytes or no/count are out of range. */
LB_API lb_status lb_gguf_split_path(char *buf, size_t n, const char *path, int no, int count);
/* Writes w as shards under the limits (at least one, each holding at least
 * one tensor; a writer without tensors makes one shard), named by
 * lb_gguf_split_path(path, i, n); with limits that fit in one file that is
 * still PREFIX-00001-of-00001.gguf, as gguf-split names it. Atomic as a set:
 * every shard is written and closed under a temporary name first, then
 * renamed; on any failure the shards this call wrote (renamed or not) are
 * removed. Split keys the writer holds are replaced. *n_shards: how many. */
LB_API lb_status lb_gguf_write_split(lb_gguf_writer *w, const char *path, const lb_gguf_split_opts *opts,
                                     int *n_shards);
/* The split keys of one parsed file: *count = 0 when it has none (a plain
 * file); LB_ERR_FORMAT when some are missing, mistyped or out of range
 * (split.no >= split.count, a negative split.tensors.count). */
LB_API lb_status lb_gguf_split_keys(const lb_gguf *g, int *no, int *count, int64_t *n_tensors_total);
/* Checks n parsed files as one split set, shard i at index i: split keys in
 * each, split.no == i, split.count == n, the same split.tensors.count
 * everywhere and equal to the tensors counted, the same
 * lowbit.split.fingerprint where the first has one, no tensor name twice;
 * then a merged view (first shard's keys, all tensors, each tensor's data
 * in its own shard's buffer). Takes the shards, freed on failure too. */
LB_API lb_status lb_gguf_split_merge(lb_gguf **shards, int n, lb_gguf **out);
/* Opening from a path: parses data (path's bytes, mapped by the caller);
 * without split keys that is the result (*n_others = 0). With them, path
 * must be the first shard, named ...-00001-of-0000N.gguf; the N-1 others are
 * mapped into *others (lb_free the array after lb_unmap_file on each; they
 * must outlive *out, as data must) and merged. Every failure (a missing,
 * unreadable or inconsistent shard, a path not named as a first shard) is
 * LB_ERR_IO / LB_ERR_FORMAT naming the file, with nothing left open. */
LB_API lb_status lb_gguf_split_load(const char *path, const uint8_t *data, size_t size, lb_gguf **out,
                                    lb_mapped_file **others, int *n_others);
/* 1 for a plain file, N for a merged split set. In a merged view the
 * version, alignment, data offset and keys are the first shard's, and each
 * tensor's offset is relative to its own shard's data section (its data
 * pointer is what to use). */
LB_API int lb_gguf_n_shards(const lb_gguf *g);

#ifdef __cplusplus
}
#endif
#endif
