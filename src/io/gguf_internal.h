/* Shared by the GGUF reader (gguf.c) and writer (gguf_write.c). */
#ifndef LB_GGUF_INTERNAL_H
#define LB_GGUF_INTERNAL_H

#include <inttypes.h>

#include "lowbit/format.h"
#include "lowbit/gguf.h"

/* names echoed into messages are cut here (a hostile name can be gigabytes) */
#define SHOWN(s, n) (int)((n) > 64 ? 64 : (n)), (const char *)(s)

size_t lb_gguf_scalar_size(uint32_t t); /* 0 for string, array or unknown */
const char *lb_gguf_type_name(uint32_t t);
static inline int lb_gguf_is_pow2(uint64_t a) { return a != 0 && (a & (a - 1)) == 0; }
int lb_gguf_name_cmp(const char *a, size_t alen, const char *b, size_t blen);
/* Bytes of a tensor of ggml `type` with dims ne[0..n_dims): the parser
 * passes bad = LB_ERR_FORMAT, unknown = LB_ERR_UNSUPPORTED, the writer
 * LB_ERR_INVALID for both. */
lb_status lb_gguf_tensor_nbytes(const char *name, size_t name_len, int type, uint32_t n_dims, const uint64_t *ne,
                                lb_status bad, lb_status unknown, size_t *nbytes);

/* A tensor whose bytes are produced while the file is written: fill(user, f)
 * must lb_atomic_write exactly nbytes (checked), so a writer can convert
 * one tensor at a time instead of holding every converted tensor. */
typedef lb_status (*lb_gguf_tensor_fill)(void *user, lb_atomic_file *f);
lb_status lb_gguf_add_tensor_fill(lb_gguf_writer *w, const char *name, int ggml_type, uint32_t n_dims,
                                  const uint64_t *ne, size_t nbytes, lb_gguf_tensor_fill fill, void *user);

/* A key whose value is known only once the tensors are written (statistics
 * gathered while their tensors are filled): set it first with a value of
 * the final length; after the last tensor, fn(user, key, val, val_len)
 * rewrites val in place (the same length) and the writer writes it over the
 * key's place in the header, before the file is committed. */
typedef lb_status (*lb_gguf_late_value)(void *user, const char *key, uint8_t *val, size_t val_len);
lb_status lb_gguf_set_late(lb_gguf_writer *w, const char *key, lb_gguf_late_value fn, void *user);

/* lb_gguf_write into f, an atomic file the caller opened and commits or
 * aborts (a resumable run's output, core/atomic_resume.h: its tensors'
 * fill callbacks may lb_atomic_skip bytes an earlier run wrote). */
lb_status lb_gguf_write_to(lb_gguf_writer *w, lb_atomic_file *f);
/* Where the data section of the file w writes begins: the header's bytes, padded to the alignment. */
lb_status lb_gguf_writer_data_offset(const lb_gguf_writer *w, uint64_t *offset);

/* gguf.c: the merged view of a split set's shards (lb_gguf_split_merge
 * checks their keys first); takes the shards, freed on failure too. */
lb_status lb_gguf_concat(lb_gguf **shards, int n, lb_gguf **out);

#define LB_GGUF_KEY_SPLIT_NO "split.no"
#define LB_GGUF_KEY_SPLIT_COUNT "split.count"
#define LB_GGUF_KEY_SPLIT_TENSORS "split.tensors.count"
#define LB_GGUF_KEY_SPLIT_FINGERPRINT "lowbit.split.fingerprint"

#endif
