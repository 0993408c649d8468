/* lowbit tokenizer: llama2.c / sentencepiece-style BPE over a scored vocab,
 * and the two kinds llama.cpp embeds in GGUF files (lb_tokenizer_from_gguf):
 * SentencePiece-style ("llama") and byte-level BPE ("gpt2" with the
 * pre-tokenizer tokenizer.ggml.pre names). docs/TOKENIZERS.md says what is
 * supported. What follows describes the llama2.c kind; GGUF vocabularies
 * tokenize exactly as llama.cpp's llama_tokenize does.
 *
 * Encoding follows llama2.c's run.c: an optional BOS, a dummy-prefix space
 * before non-empty text, one token per UTF-8 character found in the vocab
 * (else one byte-fallback token per byte: the id of its "<0xXX>" piece,
 * byte+3 in llama2.c files), then repeated merges of the adjacent pair whose
 * concatenated piece is in the vocab with the highest score (leftmost on
 * ties; as in run.c, pairs scoring <= -1e10 never merge), then an optional
 * EOS. */
#ifndef LOWBIT_TOKENIZER_H
#define LOWBIT_TOKENIZER_H

#include "lowbit/core.h"
#include "lowbit/gguf.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lb_tokenizer lb_tokenizer;

/* llama2.c tokenizer file: int32 max_token_length, then per token: float
 * score, int32 length, bytes. vocab_size tokens are read (the file does not
 * store the count; it comes from the model). */
LB_API lb_status lb_tokenizer_load(const char *path, int vocab_size, lb_tokenizer **out);
LB_API lb_status lb_tokenizer_from_memory(const uint8_t *data, size_t size, int vocab_size,
                                   lb_tokenizer **out);
/* From pieces and scores (as stored in GGUF). Pieces are raw bytes, spaces
 * as ' ' (callers convert sentencepiece's U+2581); lens may be NULL for
 * NUL-terminated pieces; bos/eos ids may be -1 (none). Non-finite scores
 * fail with LB_ERR_NUMERIC. */
LB_API lb_status lb_tokenizer_from_vocab(int vocab_size, const char *const *pieces, const size_t *lens,
                                  const float *scores, int bos_id, int eos_id, lb_tokenizer **out);
LB_API void lb_tokenizer_free(lb_tokenizer *t);

/* From the tokenizer.ggml.* keys of a parsed GGUF file (a model or a
 * vocab-only file): model "llama" (SPM) or "gpt2" (byte-level BPE with
 * merges and pre). Everything is copied: g may be freed afterwards.
 * LB_ERR_UNSUPPORTED names an unknown model or pre-tokenizer and lists the
 * supported ones; malformed keys (missing tokens, merges naming unknown
 * tokens, ids outside the vocab, arrays of the wrong type or length) fail
 * with LB_ERR_FORMAT naming the key. */
LB_API lb_status lb_tokenizer_from_gguf(const lb_gguf *g, lb_tokenizer **out);
/* Maps, parses and reads a GGUF file's tokenizer. */
LB_API lb_status lb_tokenizer_load_gguf(const char *path, lb_tokenizer **out);
/* Adds the tokenizer.ggml.* keys that lb_tokenizer_from_gguf reads back to
 * the same tokenizer (llama2.c vocabularies are written as "llama"). */
LB_API lb_status lb_tokenizer_write_gguf(const lb_tokenizer *t, lb_gguf_writer *w);
/* SentencePiece's tokenizer.model (the protobuf ModelProto Hugging Face
 * folders ship): pieces with scores and types, unk/bos/eos ids and
 * add_dummy_prefix, read as a SentencePiece-style ("llama") vocabulary, the
 * way llama.cpp reads it from GGUF. Only BPE models are read (a unigram
 * model encodes by another algorithm: LB_ERR_UNSUPPORTED); every protobuf
 * length is checked (LB_ERR_FORMAT with the byte offset). */
LB_API lb_status lb_tokenizer_from_spm(const uint8_t *data, size_t size, lb_tokenizer **out);
LB_API lb_status lb_tokenizer_load_spm(const char *path, lb_tokenizer **out);
/* Writes a SentencePiece-style vocabulary (llama2.c's or "llama") as
 * tokenizer.model, atomically; a byte-level BPE one fails with
 * LB_ERR_UNSUPPORTED. */
LB_API lb_status lb_tokenizer_save_spm(const lb_tokenizer *t, const char *path);
/* Hugging Face tokenizers' tokenizer.json with a BPE model: byte_fallback
 * ones (Llama 2's kin) read as the SPM ("llama") kind with scores from the
 * merge ranks, ByteLevel ones (GPT-2's, Llama 3's, Qwen 2's split) as the
 * byte-level BPE ("gpt2") kind; other models and splits fail with
 * LB_ERR_UNSUPPORTED naming them, malformed files with LB_ERR_FORMAT.
 * BOS/EOS are found by name (<s>, <|begin_of_text|>, <|endoftext|>, ...). */
LB_API lb_status lb_tokenizer_from_hf_json(const char *text, size_t len, lb_tokenizer **out);
LB_API lb_status lb_tokenizer_load_hf_json(const char *path, lb_tokenizer **out);
/* Writes a byte-level BPE vocabulary (pre-tokenizer gpt-2, llama3 or qwen2)
 * as tokenizer.json, atomically; others fail with LB_ERR_UNSUPPORTED. */
LB_API lb_status lb_tokenizer_save_hf_json(const lb_tokenizer *t, const char *path);

LB_API int lb_tokenizer_vocab_size(const lb_tokenizer *t);
LB_API int lb_tokenizer_bos(const lb_tokenizer *t);
LB_API int lb_tokenizer_eos(const lb_tokenizer *t);
/* 1 if the vocabulary asks for a BOS before text (tokenizer.ggml.add_bos_token) */
LB_API int lb_tokenizer_add_bos(const lb_tokenizer *t);
/* "llama2c", "llama" (SPM from GGUF) or "gpt2" */
LB_API const char *lb_tokenizer_kind(const lb_tokenizer *t);
/* the pre-tokenizer of a "gpt2" vocabulary ("gpt-2", "falcon", ...), else "" */
LB_API const char *lb_tokenizer_pre(const lb_tokenizer *t);
/* NULL (length 0) and NaN for ids outside the vocabulary */
LB_API const char *lb_tokenizer_piece(const lb_tokenizer *t, int id, size_t *len);
LB_API float lb_tokenizer_score(const lb_tokenizer *t, int id);
/* 1 if the piece is a byte-fallback token "<0xXX>" (then *byte is set). */
LB_API int lb_tokenizer_byte_piece(const lb_tokenizer *t, int id, uint8_t *byte);

/* Encodes text (len bytes; need not be NUL-terminated). *tokens is lb_alloc'd,
 * caller lb_free's it. Fails with LB_ERR_INVALID on invalid UTF-8, on a
 * character the vocab cannot represent, or when BOS/EOS is asked for and the
 * vocab has none. Runs in O(n log n) with a heap of candidate merges. */
LB_API lb_status lb_tokenize(const lb_tokenizer *t, const char *text, size_t len, int add_bos, int add_eos,
                      int **tokens, size_t *n_tokens);
#define LB_TOKENIZE_BOS 1u     /* a BOS first */
#define LB_TOKENIZE_EOS 2u     /* an EOS last */
#define LB_TOKENIZE_SPECIAL 4u /* control tokens spelled in the text ("<s>") become those tokens */
/* lb_tokenize with flags. User-defined tokens of a GGUF vocabulary are
 * always matched in the text, control ones only with LB_TOKENIZE_SPECIAL
 * (llama.cpp's parse_special); llama2.c vocabularies have neither. */
LB_API lb_status lb_tokenize_ex(const lb_tokenizer *t, const char *text, size_t len, unsigned flags, int **tokens,
                                size_t *n_tokens);
/* The same result by llama2.c's direct O(n^2) rescan: the reference the
 * fast path is tested against. */
LB_API lb_status lb_tokenize_reference(const lb_tokenizer *t, const char *text, size_t len, int add_bos,
                                int add_eos, int **tokens, size_t *n_tokens);

/* Bytes to print for `token` following `prev`: byte tokens become their
 * byte, the leading space of a piece right after BOS is dropped (for a
 * GGUF "llama" vocabulary with add_space_prefix also at the start, prev -1,
 * as llama.cpp's detokenize drops the space its encode added). The result
 * points into the tokenizer (valid until it is freed); an id outside the
 * vocabulary gives "" with length 0; len may be NULL. */
LB_API const char *lb_detokenize(const lb_tokenizer *t, int prev, int token, size_t *len);
/* All of ids as text (lb_detokenize of each, prev -1 first); *text is
 * lb_alloc'd and NUL-terminated. GGUF vocabularies print control and unknown
 * tokens as nothing, byte-level BPE pieces as the bytes they stand for. */
LB_API lb_status lb_detokenize_all(const lb_tokenizer *t, const int *ids, size_t n, char **text, size_t *len);

/* 1 if text is valid UTF-8 (no overlongs, surrogates or code points past
 * U+10FFFF); otherwise 0 and *bad_offset is the first byte of the bad
 * sequence (the lead byte of a truncated one). */
LB_API int lb_utf8_valid(const char *text, size_t len, size_t *bad_offset);

#ifdef __cplusplus
}
#endif
#endif
