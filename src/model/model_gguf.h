/* A model as one GGUF file, in llama.cpp's "llama" conventions so that
 * llama.cpp can read what it knows (read: also llama.cpp's "qwen2", below):
 *   keys     general.architecture = "llama", llama.* hyperparameters,
 *            tokenizer.ggml.* (sentencepiece-style vocab: spaces as U+2581,
 *            token types normal/unknown/control/byte), lowbit.* (ours)
 *   tensors  token_embd, blk.N.*, output_norm, output (absent when tied).
 * A tensor whose bytes are exactly a ggml type (lb_format_ggml_type: f32,
 * f16, bf16, the legacy, K-, IQ4, TQ and FP4 blocks) is stored under that
 * type with dims [cols, rows]; nvfp4's tensor scale is llama.cpp's
 * <name>.scale (one f32). Every other
 * lowbit format is stored as raw bytes, ggml I8 with dims [nbytes], plus
 *   lowbit.format.<tensor> = canonical spec ("int2:g64:asym")
 *   lowbit.shape.<tensor>  = [cols, rows] (uint64)
 * so any GGUF reader can still parse the file. Llama 3's RoPE frequency
 * divisors are rope_freqs.weight (head_dim / 2, f32), as llama.cpp's.
 *
 * Architectures read (issue 10 item 1): "llama" (Llama 2/3, Mistral,
 * TinyLlama, SmolLM: llama.cpp writes them all so) and "qwen2" (keys
 * qwen2.*; q/k/v biases, which are the linears' bias slots; NEOX RoPE,
 * i.e. rotate-half pairs (j, j + head_dim/2), so attn_q / attn_k rows and
 * their biases are permuted per head into the interleaved order lowbit's
 * RoPE uses, as llama.cpp's converter does for llama: the same attention,
 * exactly). Written back, such a model is a "llama" file.
 *
 * model_gguf.c reads such files, model_gguf_write.c writes them; the names
 * and types they share are here. */
#ifndef LB_MODEL_GGUF_H
#define LB_MODEL_GGUF_H

#include <stdio.h>
#include <string.h>

#include "lowbit/linear.h"
#include "lowbit/format.h"

/* ---- linear slots ----------------------------------------------------------
 * A linear's slots are extra tensors next to its weight, named after it
 * (blk.N.attn_q.weight -> blk.N.attn_q.<slot>), dims [cols, rows] as usual:
 *   bias (rows) f16 when every value is exact in fp16, else f32 (llama.cpp's
 *   name for a linear's bias); in_scale (cols) f32; hadamard_bits
 *   (ceil(cols / 8)) and out_hadamard_bits (ceil(rows / 8)) i8: the
 *   rotations' signs, bit j % 8 of byte j / 8 set for -1 (the first files
 *   held hadamard_signs (cols) f32, still read); lora_a [cols, rank] and lora_b [rank, rows] f32 with
 *   lowbit.lora_alpha.<linear> (f32);
 *   outliers (CSR, lb_linear_slot_layout picks the smallest exact form):
 *     outlier_values (nnz) f16 when every value is exact in fp16, else f32;
 *     indices, one of
 *       outlier_pos (nnz) i16 read as u16: r * cols + c, when rows x cols
 *         <= 65536 (rows non-decreasing, i.e. CSR order)
 *       outlier_counts (rows) i8 / i16 read as u8 / u16: outliers per row,
 *         with outlier_cols (nnz) i16 read as u16 (cols <= 65536) or i32
 *       outlier_rows (rows + 1) i32 row_ptr with outlier_cols (nnz) i32
 *         (the first form lowbit wrote; still read, and written when a row
 *         holds more than 65535 outliers).
 * The reader bounds-checks every form and rebuilds the i32 / f32 CSR.
 * The activation quantizer is two keys, not a tensor (it is a spec and at
 * most one number): lowbit.act.<linear> = its spec text ("int8:token",
 * "int8:tensor:kl") and, for a static one, lowbit.act_clip.<linear> (f32).
 * Files without these keys load with no activation quantizer. */
#define GGML_I16 25
#define GGML_I32 26

static inline int lb_gguf_slot_type_bytes(int type) {
    return type == LB_GGML_I8 ? 1 : (type == GGML_I16 || type == LB_GGML_F16) ? 2 : 4;
}

static inline void lb_gguf_slot_name(char *buf, size_t n, const lb_linear *L, const char *slot) {
    size_t len = strlen(L->w.name);
    if (len > 7 && !strcmp(L->w.name + len - 7, ".weight")) len -= 7;
    snprintf(buf, n, "%.*s.%s", (int)len, L->w.name, slot);
}

/* llama.cpp's per-tensor scale of a weight (NVFP4's second level, multiplying
 * the matmul's output): blk.0.attn_q.weight -> blk.0.attn_q.scale */
static inline void lb_gguf_tensor_scale_name(char *buf, size_t n, const char *weight) {
    size_t len = strlen(weight);
    if (len > 7 && !strcmp(weight + len - 7, ".weight")) len -= 7;
    snprintf(buf, n, "%.*s.scale", (int)len, weight);
}

/* <prefix>.<linear> (the weight's name without ".weight"), e.g. lowbit.lora_alpha.blk.0.attn_q */
static inline void lb_gguf_linear_key(char *buf, size_t n, const char *prefix, const lb_linear *L) {
    char lin[128];
    lb_gguf_slot_name(lin, sizeof lin, L, "");
    lin[strlen(lin) - 1] = 0;
    snprintf(buf, n, "%s.%s", prefix, lin);
}

static inline void lb_gguf_alpha_key(char *buf, size_t n, const lb_linear *L) { lb_gguf_linear_key(buf, n, "lowbit.lora_alpha", L); }

#define TRY(expr)                     \
    do {                              \
        st = (expr);                  \
        if (st != LB_OK) goto done;   \
    } while (0)

#endif
