/* The tokenizer's state, shared by tokenizer.c (llama2.c's scored BPE, the
 * piece index, accessors), tokenizer_gguf.c (tokenizer.ggml.* keys in and
 * out) and tokenizer_encode.c (llama.cpp's SPM and byte-level BPE). */
#ifndef LB_MODEL_TOKENIZER_INTERNAL_H
#define LB_MODEL_TOKENIZER_INTERNAL_H

#include "lowbit/tokenizer.h"
#include "model/unicode.h"

typedef enum {
    LB_TOK_LLAMA2C = 0, /* llama2.c's run.c encode: pieces with ' ', bytes up front, -1e10 cutoff */
    LB_TOK_SPM,         /* tokenizer.ggml.model "llama", as llama.cpp's llm_tokenizer_spm */
    LB_TOK_BPE          /* tokenizer.ggml.model "gpt2", byte-level BPE with merges by rank */
} lb_tok_kind;

/* llama.cpp's token types (tokenizer.ggml.token_type) */
enum {
    LB_TOKEN_UNDEFINED = 0,
    LB_TOKEN_NORMAL = 1,
    LB_TOKEN_UNKNOWN = 2,
    LB_TOKEN_CONTROL = 3,
    LB_TOKEN_USER_DEFINED = 4,
    LB_TOKEN_UNUSED = 5,
    LB_TOKEN_BYTE = 6
};

typedef struct {
    const char *text;
    size_t len;
    int id;
} lb_sorted_piece;

struct lb_tokenizer {
    int vocab_size;
    int bos_id, eos_id;      /* -1: the vocab has none */
    size_t max_piece_len;    /* bytes of the longest piece */
    float *scores;           /* (vocab_size) */
    size_t *offsets;         /* (vocab_size + 1): piece i is text[offsets[i]..offsets[i+1]-1) */
    char *text;              /* every piece followed by a NUL, so pieces print as C strings */
    uint32_t *hashes;        /* (vocab_size) FNV-1a of each piece */
    int32_t *slots;          /* (slot_mask + 1) open-addressing table of ids, -1 empty */
    uint32_t slot_mask;
    lb_sorted_piece *sorted; /* (vocab_size) by bytes then id: the reference's bsearch */
    int byte_id[256];        /* id of the "<0xXX>" piece for each byte, -1 if none */
    char byte_text[512];     /* byte b as a one-byte C string at 2*b, for decode */

    /* GGUF vocabularies (kind != LB_TOK_LLAMA2C) */
    lb_tok_kind kind;
    int last_wins;           /* duplicate pieces resolve to the highest id (llama.cpp's map) */
    int32_t *types;          /* (vocab_size) LB_TOKEN_*, NULL for llama2.c files */
    int unk_id;
    int add_bos, add_eos;    /* the vocab's own defaults (tokenizer.ggml.add_*_token) */
    int add_space_prefix;    /* SPM: a space before text that starts the input or follows a special token */
    lb_pretok pre;           /* BPE */
    int ignore_merges;       /* BPE llama3: a word that is a token is not merged */
    char pre_name[65];       /* tokenizer.ggml.pre as stored ("" when absent) */
    size_t n_merges;         /* BPE: merge r joins merge_left[r] and merge_right[r] */
    int32_t *merge_left, *merge_right;
    int32_t *merge_slots;    /* (merge_mask + 1) open-addressing table of ranks, -1 empty */
    uint32_t merge_mask;
    size_t *dec_offsets;     /* (vocab_size + 1) the bytes each token prints as, in dec_text */
    char *dec_text;
    int32_t *specials;       /* control, unknown and user-defined ids, longest text first */
    size_t n_specials;
};

/* Builds a tokenizer from raw pieces (as stored, no space conversion);
 * last_wins picks llama.cpp's rule for duplicate pieces. */
lb_status lb_tokenizer_build(int vocab_size, const char *const *pieces, const size_t *lens, const float *scores,
                             int bos_id, int eos_id, int last_wins, lb_tokenizer **out);
/* Appends llama.cpp's unused "[PAD..]" tokens up to vocab_size (no-op when
 * the vocabulary is not smaller). */
lb_status lb_tokenizer_pad(lb_tokenizer *t, int vocab_size);
/* id of the piece a+b, -1 if none */
int lb_tokenizer_find(const lb_tokenizer *t, const char *a, size_t na, const char *b, size_t nb);
/* room for n merges (an empty table), then merges added in rank order (a
 * repeated pair keeps its first rank); shared by the GGUF and tokenizer.json readers */
lb_status lb_tokenizer_merges_alloc(lb_tokenizer *t, size_t n);
void lb_tokenizer_merge_add(lb_tokenizer *t, int32_t a, int32_t b);
/* rank of merge (left, right), -1 if none */
int32_t lb_tokenizer_merge_rank(const lb_tokenizer *t, int32_t left, int32_t right);
/* Fills dec_offsets/dec_text and specials from kind and types (tokenizer_encode.c). */
lb_status lb_tokenizer_prepare(lb_tokenizer *t);
/* lb_tokenize for kind != LB_TOK_LLAMA2C (tokenizer_encode.c) */
lb_status lb_tokenize_gguf(const lb_tokenizer *t, const char *text, size_t len, unsigned flags, int **tokens,
                           size_t *n_tokens);

#endif
