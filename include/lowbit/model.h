/* lowbit model: a Llama-family transformer whose linears hold (quantized)
 * tensors, its loaders and savers, the forward pass with a KV cache, and the
 * sampler.
 *
 * Architecture: token embedding; per layer RMSNorm -> attention (RoPE on
 * consecutive pairs, grouped-query) -> residual, RMSNorm -> SwiGLU MLP ->
 * residual; final RMSNorm; classifier (tied to the embedding or not). */
#ifndef LOWBIT_MODEL_H
#define LOWBIT_MODEL_H

#include "lowbit/format.h"
#include "lowbit/gguf.h"
#include "lowbit/linear.h"
#include "lowbit/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int dim;        /* model width */
    int hidden_dim; /* MLP width */
    int n_layers;
    int n_heads;
    int n_kv_heads;
    int vocab_size;
    int seq_len;    /* longest context the model was trained for */
    int head_dim;   /* dim / n_heads */
    float norm_eps;
    float rope_theta;
} lb_config;

/* The seven linears of a layer, in the order lowbit lists them. */
enum { LB_WQ, LB_WK, LB_WV, LB_WO, LB_W1, LB_W2, LB_W3, LB_N_LINEARS };

typedef struct {
    lb_tensor attn_norm;              /* (dim) */
    lb_tensor ffn_norm;               /* (dim) */
    lb_linear linear[LB_N_LINEARS];   /* weights .w: wq (dim, dim), wk/wv (kv_dim, dim), wo (dim, dim),
                                         w1/w3 (hidden, dim), w2 (dim, hidden): (out, in) */
} lb_layer;

typedef struct {
    lb_config cfg;
    lb_tensor tok_embd;   /* (vocab, dim) */
    lb_tensor out_norm;   /* (dim) */
    lb_tensor output;     /* (vocab, dim); unused when tied_output */
    int tied_output;      /* classifier = token embedding */
    lb_layer *layers;     /* n_layers */
    lb_tokenizer *tokenizer; /* NULL when none was found */
    lb_mapped_file file;  /* backing store of mapped tensors */
    char source_format[16]; /* "llama2c", "llama2c-v1", "gguf", "safetensors" */
    char quant_note[256];   /* how the file was quantized (GGUF lowbit.quant.*), or "" */
    float *rope_cos, *rope_sin; /* (seq_len, head_dim/2) */
    float *rope_factors;  /* (head_dim/2) divisors of the RoPE frequencies (llama.cpp's rope_freqs.weight,
                             Llama 3's long-context scaling), lb_alloc'd, owned; NULL: none */
    lb_mapped_file *shards; /* a Hugging Face folder's safetensors files (n_shards), backing its tensors */
    int n_shards;
} lb_model;

/* Names follow GGUF's llama convention: token_embd.weight, output_norm.weight,
 * output.weight, blk.N.{attn_norm,attn_q,attn_k,attn_v,attn_output,ffn_norm,
 * ffn_gate (w1),ffn_down (w2),ffn_up (w3)}.weight. */
LB_API const char *lb_linear_name(int which); /* "attn_q", ... */
/* Every distinct tensor of the model (a tied classifier is not repeated):
 * token_embd, per layer attn_norm q k v o ffn_norm gate down up,
 * output_norm, then output unless tied. For a linear this is its weight
 * (layers[l].linear[i].w); its slots are reached through the lb_linear.
 * Replacing a weight: lb_linear_set_weight, or lb_tensor_free the tensor
 * then assign a tensor of the same shape over it. */
LB_API int lb_model_n_tensors(const lb_model *m);
LB_API lb_tensor *lb_model_tensor_at(lb_model *m, int i);
LB_API const lb_tensor *lb_model_classifier(const lb_model *m);

/* Loads llama2.c checkpoints (legacy header or v1 "ak42") and GGUF files,
 * detected by content, and Hugging Face folders (path: the folder, its
 * config.json or a .safetensors file in it; docs/INTEROP.md). tokenizer_path NULL: GGUF files carry their own;
 * for llama2.c files tok<vocab_size>.bin, then tokenizer.bin, is looked for
 * beside the model. Every size, count and offset is checked against the
 * file before use. */
LB_API lb_status lb_model_load(const char *path, const char *tokenizer_path, lb_model **out);
/* Parses a llama2.c checkpoint from memory (tensors are views into data). */
LB_API lb_status lb_model_from_llama2c(const uint8_t *data, size_t size, lb_model **out);
LB_API lb_status lb_model_from_gguf(const uint8_t *data, size_t size, lb_model **out);
LB_API void lb_model_free(lb_model *m);

/* Writes the model (all tensors as they are now, plus the tokenizer) as one
 * GGUF file, atomically. note: free text recorded as lowbit.quant.note.
 * Linear slots are stored as extra tensors (docs/FORMATS.md); a slot the
 * file cannot hold (a rotation kind other than Hadamard) fails with
 * LB_ERR_UNSUPPORTED and nothing written, rather than being dropped. */
LB_API lb_status lb_model_save_gguf(const lb_model *m, const char *path);
/* The same with every tensor stored as the float type dtype (f32, f16 or
 * bf16; norms stay f32), quantized ones dequantized: each converted tensor is
 * made a row at a time while the file is written, never held whole. dtype
 * NULL: lb_model_save_gguf. */
LB_API lb_status lb_model_save_gguf_as(const lb_model *m, const char *path, const lb_qspec *dtype);
/* A quantizer for lb_model_save_gguf_quantized: w (rows x cols floats) into
 * *out in format spec (lb_quantize_to_tensor with a method's options, say). */
typedef lb_status (*lb_quantize_fn)(const float *w, int64_t rows, int64_t cols, const lb_qspec *spec,
                                    const char *name, lb_tensor *out, void *user);
/* The same with every 2-D tensor (linears, embedding, classifier) stored in
 * spec, any format: a float one as lb_model_save_gguf_as; a quantized one
 * dequantized whole and quantized by `quantize` one tensor at a time while
 * the file is written, with llama-quantize's fallback per tensor where rows
 * are not whole blocks (lb_format_ggml_fallback). Norms stay f32. */
LB_API lb_status lb_model_save_gguf_quantized(const lb_model *m, const char *path, const lb_qspec *spec,
                                              lb_quantize_fn quantize, void *user);
/* Any of the three as llama.cpp's split set (gguf.h, docs/SCALING.md):
 * spec NULL keeps every tensor as stored, a float spec retypes, another
 * quantizes through `quantize`; split non-NULL writes the shards
 * lb_gguf_split_path(path, i, n) under its limits (lb_gguf_write_split:
 * all renamed into place together, none left on failure), split NULL one
 * file at path. *n_shards: how many files were written. lb_model_load
 * opens a set from its first shard. */
LB_API lb_status lb_model_save_gguf_split(const lb_model *m, const char *path, const lb_qspec *spec,
                                          lb_quantize_fn quantize, void *user, const lb_gguf_split_opts *split,
                                          int *n_shards);

/* Writes a synthetic Llama-shaped model of config c (dim, hidden_dim,
 * n_layers, n_heads, n_kv_heads, vocab_size, seq_len, norm_eps,
 * rope_theta; head_dim follows) to path as GGUF, weights stored as dtype
 * (f32, f16 or bf16; norms f32), seeded: the same bytes for the same
 * arguments everywhere. Tensors are made while the file is written, one
 * row in memory at a time, so any size fits (lowbit synth;
 * docs/SCALING.md, "Streaming"). */
LB_API lb_status lb_model_synth_gguf(const lb_config *c, const lb_qspec *dtype, uint64_t seed, const char *path);

/* Writes the model as a Hugging Face folder dir (created if missing):
 * config.json, model.safetensors (HF tensor names, q/k rows back in the
 * rotate-half order) and the vocabulary: tokenizer.model for
 * SentencePiece-style ones, tokenizer.json for byte-level BPE ones. dtype: every tensor stored as this float spec (f32, f16
 * or bf16; quantized tensors are dequantized), or NULL to keep each tensor's
 * own float type (a quantized tensor then fails with LB_ERR_UNSUPPORTED).
 * One tensor at a time is converted; each file is written atomically and on
 * failure the files this call created are removed. */
LB_API lb_status lb_model_save_safetensors(const lb_model *m, const char *dir, const lb_qspec *dtype);

/* Total stored bytes and weight count over all tensors, and over the
 * quantized (non-float) ones, with their bits per weight (bpw is NAN when
 * nothing is quantized). A linear's slots count as bytes of its weight. */
typedef struct {
    uint64_t bytes_all, weights_all;
    uint64_t bytes_quant, weights_quant;
    double bpw, bpw_all;
} lb_model_size;
LB_API void lb_model_sizes(lb_model *m, lb_model_size *out);

/* ---- forward pass ----------------------------------------------------- */
typedef struct lb_state lb_state;

/* Scratch and KV cache for one sequence of up to cfg.seq_len positions,
 * processed max_batch tokens at a time. */
LB_API lb_status lb_state_create(const lb_model *m, int max_batch, lb_state **out);
LB_API void lb_state_free(lb_state *s);

/* Runs tokens[0..n) at positions pos..pos+n-1, appending to the KV cache
 * (positions >= pos are overwritten). logits: n x vocab, or NULL to skip the
 * classifier except for the last token, which goes to lb_state_logits().
 * It is lb_forward_embed, lb_forward_block for every layer, lb_forward_head,
 * in chunks of max_batch positions. */
LB_API lb_status lb_forward(const lb_model *m, lb_state *s, const int *tokens, int n, int pos, float *logits);
LB_API const float *lb_state_logits(const lb_state *s); /* last position's logits */
/* on: lb_forward gives back each block's (and the embedding's and the
 * classifier's) memory-mapped weight pages once it ran, so a forward pass
 * over a model larger than memory keeps about one block resident; the next
 * pass faults them in again from the page cache. Only pages of read-only
 * file mappings; heap tensors and load-time repacked panels stay. The
 * results are the same bits (docs/SCALING.md, "Streaming"). Default off. */
LB_API void lb_state_set_release(lb_state *s, int on);

/* The steps of lb_forward, for running (and changing) a model one block at
 * a time. x is the residual stream, (n, dim) row-major, n <= max_batch.
 * lb_forward_embed: x = the embedding rows of tokens[0..n).
 * lb_forward_block: one transformer block, layer `layer`, of positions
 *   pos..pos+n-1, in place on x; writes that layer's KV cache.
 * lb_forward_head: final RMSNorm and classifier of x; logits (n x vocab), or
 *   NULL for the last row only; the last row's logits also go to
 *   lb_state_logits(). */
LB_API lb_status lb_forward_embed(const lb_model *m, const int *tokens, int n, float *x);
LB_API lb_status lb_forward_block(const lb_model *m, lb_state *s, int layer, float *x, int n, int pos);
LB_API lb_status lb_forward_head(const lb_model *m, lb_state *s, const float *x, int n, float *logits);

/* Called by lb_forward_block with the exact input each linear of a block
 * reads, before the linear's own input scale / rotation (use
 * lb_linear_transform_input for the input its stored weight sees): x is
 * (n, cols), cols the linear's input width. Called once per linear, in the
 * order q k v o gate up down; q, k and v receive the same x pointer (one
 * normalized input), as do gate (LB_W1) and up (LB_W3). x is only valid
 * during the call. A status other than LB_OK stops the forward pass and is
 * returned by it. The classifier is not observed. */
typedef lb_status (*lb_linear_observer)(void *user, int layer, int which /* LB_WQ.. */, const float *x, int n,
                                        int cols);
/* fn NULL: no observer. */
LB_API void lb_state_set_observer(lb_state *s, lb_linear_observer fn, void *user);

/* ---- sampling ------------------------------------------------------------
 * llama2.c's sampler: greedy at temperature 0; otherwise softmax(logits / T)
 * and, with 0 < top_p < 1, nucleus sampling; one xorshift draw per token. */
typedef struct {
    float temperature;
    float top_p;
    lb_rng rng;
    int vocab_size;
    float *probs;  /* vocab */
    void *scratch; /* vocab (prob, index) pairs */
} lb_sampler;
LB_API lb_status lb_sampler_init(lb_sampler *s, int vocab_size, float temperature, float top_p, uint64_t seed);
LB_API void lb_sampler_free(lb_sampler *s);
LB_API int lb_sample(lb_sampler *s, const float *logits);

/* ---- text generation ----------------------------------------------------
 * As llama2.c's generate(): BOS + the prompt, then sampled tokens until
 * max_new tokens, a BOS token, or the end of the context (like llama2.c, the
 * token sampled after the last position is still printed); each new piece
 * goes to emit() as soon as it is known. llama2.c's "-n steps" with a prompt
 * of P tokens (BOS included) is max_new = steps - P + 1. */
typedef struct {
    int max_new;       /* tokens to generate, >= 1 */
    float temperature; /* 0: greedy */
    float top_p;       /* 0 or 1: off */
    uint64_t seed;
} lb_gen_opts;
typedef struct {
    int prompt_tokens, generated_tokens;
    double prompt_seconds, generate_seconds; /* prompt: one batched forward */
} lb_gen_stats;
typedef void (*lb_emit_fn)(const char *piece, size_t len, void *user);
LB_API lb_status lb_generate(const lb_model *m, const char *prompt, const lb_gen_opts *opts, lb_emit_fn emit, void *user,
                      lb_gen_stats *stats);

#ifdef __cplusplus
}
#endif
#endif
