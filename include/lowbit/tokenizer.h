/* lowbit tokenizer: llama2.c / sentencepiece-style BPE over a scored vocab.
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

LB_API int lb_tokenizer_vocab_size(const lb_tokenizer *t);
LB_API int lb_tokenizer_bos(const lb_tokenizer *t);
LB_API int lb_tokenizer_eos(const lb_tokenizer *t);
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
/* The same result by llama2.c's direct O(n^2) rescan: the reference the
 * fast path is tested against. */
LB_API lb_status lb_tokenize_reference(const lb_tokenizer *t, const char *text, size_t len, int add_bos,
                                int add_eos, int **tokens, size_t *n_tokens);

/* Bytes to print for `token` following `prev`: byte tokens become their
 * byte, the leading space of a piece right after BOS is dropped. The result
 * points into the tokenizer (valid until it is freed); an id outside the
 * vocabulary gives "" with length 0; len may be NULL. */
LB_API const char *lb_detokenize(const lb_tokenizer *t, int prev, int token, size_t *len);

/* 1 if text is valid UTF-8 (no overlongs, surrogates or code points past
 * U+10FFFF); otherwise 0 and *bad_offset is the first byte of the bad
 * sequence (the lead byte of a truncated one). */
LB_API int lb_utf8_valid(const char *text, size_t len, size_t *bad_offset);

#ifdef __cplusplus
}
#endif
#endif
