/* safetensors files (huggingface/safetensors' published format):
 *
 *   u64 little-endian N | N bytes of JSON header | data
 *
 * The header is one object: each tensor name maps to {"dtype": "F16",
 * "shape": [rows, cols], "data_offsets": [begin, end]} with offsets
 * relative to the start of data; the optional "__metadata__" maps strings
 * to strings. The reader checks every offset and size against the file:
 * sizes equal to the shape's product times the dtype's size, ranges in
 * bounds, not overlapping, covering the data without holes (the format
 * forbids them), nothing past the last one. Tensors are views into the
 * caller's bytes. Internal to the library (io layer). */
#ifndef LB_IO_SAFETENSORS_H
#define LB_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "lowbit/core.h"

#define LB_ST_MAX_DIMS 8
/* headers beyond this are refused (the reference implementation's limit) */
#define LB_ST_MAX_HEADER (100u << 20)

typedef enum {
    LB_ST_BOOL, LB_ST_U8, LB_ST_I8, LB_ST_F8_E5M2, LB_ST_F8_E4M3, LB_ST_I16, LB_ST_U16, LB_ST_F16, LB_ST_BF16,
    LB_ST_I32, LB_ST_U32, LB_ST_F32, LB_ST_F64, LB_ST_I64, LB_ST_U64, LB_ST_N_DTYPES
} lb_st_dtype;

typedef struct {
    char *name;            /* decoded, NUL-terminated */
    lb_st_dtype dtype;
    int n_dims;            /* 0 for a scalar */
    uint64_t shape[LB_ST_MAX_DIMS];
    uint64_t begin, end;   /* offsets into the data section */
    const uint8_t *data;   /* end - begin bytes */
    size_t nbytes;
} lb_st_tensor;

typedef struct {
    lb_st_tensor *tensors; /* in file order (by offset) */
    size_t n_tensors;
    char **meta_keys, **meta_values; /* __metadata__, decoded */
    size_t n_meta;
    size_t data_start;     /* 8 + N */
} lb_st;

lb_status lb_st_parse(const uint8_t *data, size_t size, lb_st *out);
void lb_st_free(lb_st *f);
const lb_st_tensor *lb_st_find(const lb_st *f, const char *name);
const char *lb_st_meta(const lb_st *f, const char *key); /* NULL when absent */
const char *lb_st_dtype_name(lb_st_dtype d);             /* "F16", ... */
size_t lb_st_dtype_size(lb_st_dtype d);                   /* bytes per element */

/* ---- writing ----------------------------------------------------------------
 * Declare every tensor (name, dtype, shape) and metadata first; begin writes
 * the header (padded with spaces to a multiple of 8 bytes, so data starts
 * 8-aligned) to a temporary beside path; then the tensors' bytes in the order
 * they were added, in as many pieces as convenient; commit checks the count
 * and renames. free without commit removes the temporary. Nothing is
 * buffered beyond the header. */
typedef struct lb_st_writer lb_st_writer;
lb_status lb_st_writer_create(lb_st_writer **out);
lb_status lb_st_writer_meta(lb_st_writer *w, const char *key, const char *value);
lb_status lb_st_writer_add(lb_st_writer *w, const char *name, lb_st_dtype dtype, int n_dims, const uint64_t *shape);
lb_status lb_st_writer_begin(lb_st_writer *w, const char *path);
lb_status lb_st_writer_data(lb_st_writer *w, const void *data, size_t n);
lb_status lb_st_writer_commit(lb_st_writer *w);
void lb_st_writer_free(lb_st_writer *w);

#endif
