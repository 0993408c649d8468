/* Shared by the loaders (io/) and the model code. */
#ifndef LB_MODEL_INTERNAL_H
#define LB_MODEL_INTERNAL_H

#include "lowbit/gguf.h"
#include "lowbit/model.h"

lb_status lb_config_validate(const lb_config *c);
/* A model with every tensor named and shaped from the config, no data yet. */
lb_status lb_model_alloc(const lb_config *c, int tied_output, lb_model **out);
/* Checks that every tensor has data of the size its format needs and that
 * every weight is finite, then builds the RoPE tables. Loaders call it last. */
lb_status lb_model_finish(lb_model *m);
/* Fails with LB_ERR_NUMERIC naming the tensor, row and column of the first
 * NaN or Inf weight (float tensors as stored, quantized ones as decoded). */
lb_status lb_model_check_finite(lb_model *m);

/* model_gguf_write.c: general.* and llama.* shape keys of c into w
 * (name: general.name) */
lb_status lb_model_gguf_set_hparams(lb_gguf_writer *w, const lb_config *c, const char *name);

/* Streaming quantization (src/pipeline's lb_quantize_model_to_gguf;
 * docs/SCALING.md, "Streaming"): tensor i of the model (t) made into *out,
 * an owned tensor of t's shape in spec, while the file is written; the
 * writer frees it once its bytes are out. */
typedef lb_status (*lb_model_requant_fn)(int i, const lb_tensor *t, const lb_qspec *spec, lb_tensor *out, void *user);
/* Writes m as lb_model_save_gguf_split does, except that tensor i is made by
 * requant into targets[i] where that is non-NULL (every other tensor as
 * stored): one tensor in memory at a time, the header computed up front from
 * the specs (lb_format_size), so the bytes are those of saving the model
 * after each tensor was replaced by its requant result. The linears' slots,
 * keys and quant note are m's own. */
lb_status lb_model_save_gguf_stream(const lb_model *m, const char *path, const lb_qspec *const *targets,
                                    lb_model_requant_fn requant, void *user, const lb_gguf_split_opts *split,
                                    int *n_shards);

/* Gives back the mapped pages of layer l's weights and norms (only pages
 * of read-only mappings lb_map_file made; heap tensors and load-time
 * repacked panels stay): a later read faults them in again from the page
 * cache. For passes that run a model a layer at a time (docs/SCALING.md,
 * "Streaming"). */
void lb_model_release_layer(const lb_model *m, int l);

/* Hugging Face folders (model_hf.c, model_hf_write.c; docs/INTEROP.md).
 * path: the folder, its config.json or a .safetensors file in it. */
/* model_gguf.c: a model from a parsed GGUF (one file or a split set's
 * merged view); tensors are views into its buffers, which must outlive it */
lb_status lb_model_from_gguf_parsed(const lb_gguf *g, lb_model **out);
lb_status lb_model_load_hf(const char *path, const char *tokenizer_path, lb_model **out);
/* the path names something (stat, not open: opening a FIFO that happens to
 * carry the name would block; loaders refuse anything but a regular file) */
int lb_path_exists(const char *path);
/* config.json's text into a config (validated) and tie_word_embeddings */
lb_status lb_hf_config_parse(const char *text, size_t len, lb_config *c, int *tied);
/* The HF name of lb_model_tensor_at(m, i) into buf; returns the number of
 * heads its rows are grouped in for the RoPE permutation (q_proj: n_heads,
 * k_proj: n_kv_heads), 0 for every other tensor. */
int lb_hf_tensor_name(const lb_model *m, int i, char *buf, size_t n);
/* rows = n_heads x head_dim rows of row_bytes each, from HF's rotate-half
 * order to the interleaved one (to_hf 0) or back (to_hf 1), as llama.cpp's
 * convert_hf_to_gguf.py permute(): within head h, interleaved row 2j + i is
 * HF row i * head_dim/2 + j (i = 0, 1). src and dst must not overlap. */
void lb_hf_permute_rows(const uint8_t *src, uint8_t *dst, int64_t rows, size_t row_bytes, int n_heads, int to_hf);

#endif
