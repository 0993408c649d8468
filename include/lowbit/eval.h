/* lowbit evaluation: perplexity under two stated protocols, and the KL
 * divergence and top-1 agreement of a model's next-token distribution with a
 * reference model's.
 *
 * Texts are split into blocks at blank lines. A fixed split keeps methods
 * honest: the first calib_blocks blocks (default 128) are calibration data,
 * the rest evaluation data; nothing may calibrate on evaluation blocks.
 *
 * Protocols:
 *   docs    each block scored on its own: BOS + block, at most ctx tokens
 *           (default the model's context), every token after BOS predicted.
 *   chunks  llama.cpp's llama-perplexity: the split's text (from its first
 *           block to its last) tokenized once with BOS, cut into chunks of ctx
 *           tokens whose first token is replaced by BOS; the second half of
 *           each chunk is scored (positions ctx/2 .. ctx-1 predicted). A
 *           trailing partial chunk is dropped. */
#ifndef LOWBIT_EVAL_H
#define LOWBIT_EVAL_H

#include "lowbit/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const char *text;
    size_t len;
} lb_span;

typedef struct {
    char *data; /* the whole file, NUL-terminated */
    size_t size;
    lb_span *blocks; /* runs of non-blank lines; see lb_text_load */
    int n_blocks;
    char path[512];
} lb_text;

/* Reads and splits a text file into blocks: a separator is the newline
 * ending a non-blank line plus the blank (whitespace-only) lines after it; a
 * block is every byte between separators. The last block of a file that ends
 * in one newline keeps it, exactly as text.split("\n\n") would. Empty (or
 * whitespace-only) files, NUL bytes and invalid UTF-8 fail with a message
 * naming the file and byte offset. */
LB_API lb_status lb_text_load(const char *path, lb_text *out);
LB_API lb_status lb_text_from_memory(const char *data, size_t size, const char *name, lb_text *out);
LB_API void lb_text_free(lb_text *t);

typedef enum { LB_SPLIT_ALL, LB_SPLIT_CALIB, LB_SPLIT_EVAL } lb_split;
LB_API lb_status lb_split_parse(const char *text, lb_split *out);
LB_API const char *lb_split_name(lb_split s);
/* Blocks [*first, *end) of the split; fails if the split is empty. */
LB_API lb_status lb_text_split(const lb_text *t, lb_split split, int calib_blocks, int *first, int *end);

typedef enum { LB_PROTOCOL_DOCS, LB_PROTOCOL_CHUNKS } lb_protocol;
LB_API lb_status lb_protocol_parse(const char *text, lb_protocol *out);
LB_API const char *lb_protocol_name(lb_protocol p);

/* A reference model's logits at every position lb_evaluate scores, computed
 * once (lb_ref_logits_build), for evaluations repeated against the same
 * reference on the same text: lowbit plan and tune measure hundreds of
 * quantized models against one fp model. */
typedef struct lb_ref_logits lb_ref_logits;

typedef struct {
    lb_protocol protocol;
    int ctx;          /* 0: docs -> the model's context; chunks -> 256 */
    lb_split split;
    int calib_blocks; /* 0: 128 */
    const lb_model *ref; /* reference model for KLD and top-1, or NULL */
    int stream;       /* 1: each block's mapped weight pages given back after it runs (lb_state_set_release):
                         about one block resident, the same results */
    const lb_ref_logits *ref_logits; /* the reference's logits computed once, used instead of running ref
                                        (which may then be NULL): the same results bit for bit; the
                                        sequences to score must be the ones it was built on, else
                                        lb_evaluate fails */
} lb_eval_opts;

typedef struct {
    double nll;        /* mean negative log-likelihood per predicted token, nats */
    double ppl;        /* exp(nll) */
    int64_t tokens;    /* predicted tokens */
    int64_t sequences; /* blocks or chunks scored */
    int ctx;           /* context actually used */
    double kld;        /* mean KL(ref || model) per predicted token, nats (NAN without ref) */
    double top1;       /* fraction of predicted positions where both argmaxes agree (NAN without ref) */
    double seconds;
    int64_t tokens_processed; /* tokens through the forward pass (per model) */
} lb_eval_result;

LB_API lb_status lb_evaluate(const lb_model *m, const lb_text *text, const lb_eval_opts *o, lb_eval_result *r);

/* Runs o->ref over the sequences lb_evaluate would score under o (tokenized
 * by m's tokenizer) and keeps its logits at the scored positions, as float:
 * positions x vocab x 4 bytes. If that is more than max_bytes, *out is NULL
 * and the result LB_OK: the caller evaluates against o->ref as before. */
LB_API lb_status lb_ref_logits_build(const lb_model *m, const lb_text *text, const lb_eval_opts *o, size_t max_bytes,
                                     lb_ref_logits **out);
LB_API size_t lb_ref_logits_bytes(const lb_ref_logits *c);
LB_API void lb_ref_logits_free(lb_ref_logits *c);

#ifdef __cplusplus
}
#endif
#endif
