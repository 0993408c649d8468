/* lowbit training: fine-tuning a model's fp32 weights by backpropagation
 * and AdamW (docs/TRAINING.md). Every tensor of the model is a parameter.
 *
 * Data: the training text is the calibration split of lowbit's
 * calibration/evaluation split (lowbit/eval.h); the evaluation split, and
 * "all" (which contains it), are refused, so nothing trains on the text the
 * evaluation scores. Its blocks are tokenized as the docs protocol reads
 * them (BOS + block) and concatenated into one stream; a batch is B windows
 * of ctx + 1 tokens drawn from it at seeded random offsets. */
#ifndef LOWBIT_TRAIN_H
#define LOWBIT_TRAIN_H

#include "lowbit/eval.h"
#include "lowbit/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int batch;          /* sequences per step (default 8) */
    int ctx;            /* tokens per sequence (default 128; at most the model's context) */
    int steps;          /* optimizer steps the schedule spans (default 100) */
    int warmup;         /* linear warm-up steps (default steps / 10) */
    float lr;           /* peak learning rate (default 3e-4) */
    float min_lr;       /* learning rate at the last step, cosine from lr (default lr / 10) */
    float weight_decay; /* decoupled, matrices only (default 0.1) */
    float beta1, beta2, eps; /* default 0.9, 0.95, 1e-8 */
    float grad_clip;    /* global gradient norm limit, 0: none (default 1) */
    uint64_t seed;      /* batch sampling (default 1) */
    /* distillation (docs/TRAINING.md, "Distillation"): the loss is
     * KL(p_teacher || p_student) per token, mean over tokens, p = softmax(z /
     * temperature) (no T^2 factor), plus mse_weight x the mean squared
     * difference of the normalized final hidden states (the final RMSNorm's
     * output, the classifier's input) for LB_DISTILL_KL_MSE. The teacher is
     * a frozen fp32 copy of the model the trainer is made from, its logits
     * computed per batch. */
    int distill;        /* LB_DISTILL_NONE (default: cross-entropy on the text), _KL, _KL_MSE */
    float temperature;  /* of both softmaxes in the KL (default 1) */
    float mse_weight;   /* weight of the hidden-state MSE (default 1) */
    /* quantization-aware training (docs/TRAINING.md; all off by default) */
    const char *qat;    /* scheme: ste, binaryconnect, bwn, xnor, twn, ttq, bitnet, paretoq, onebit; NULL: fp32 */
    const char *format; /* the stored format the scheme writes; NULL: the scheme's default */
    int act_bits;       /* 0, or 4..8: per-token absmax fake-quantized linear inputs (bitnet: 8) */
    int grad_bits;      /* 0, or 2..16: each linear's output gradient quantized in the backward */
    int grad_per_tensor;  /* gradient absmax per tensor (default 0: per token) */
    int grad_stochastic;  /* stochastic rounding of gradients (default 0: nearest) */
    int stochastic;       /* binaryconnect: stochastic binarization */
    /* LoRA recovery (docs/TRAINING.md "LoRA recovery"; not with qat): the
     * model's linears stay frozen as stored (any format, decoded once) and
     * each gets an adapter alpha B A of this rank, the only thing trained
     * (embedding, norms, classifier frozen too); lb_trainer_store writes the
     * adapters into the linears' adapter slots, fp16. 0: off */
    int lora_rank;
    float lora_alpha;     /* default 1 */
} lb_train_opts;
enum { LB_DISTILL_NONE, LB_DISTILL_KL, LB_DISTILL_KL_MSE };
/* "none", "kl", "kl+mse" */
LB_API const char *lb_distill_name(int distill);
LB_API lb_status lb_distill_parse(const char *text, int *out);
/* The format a QAT scheme writes when lb_train_opts.format is NULL ("binary:row" for bwn, ...);
 * "?" for an unknown scheme or one without a default (ste). */
LB_API const char *lb_qat_default_format_name(const char *scheme);
/* 1 when a QAT scheme trains a quantized model over its stored codes and
 * formats (e2eqp: no format of its own, the model frozen), else 0. */
LB_API int lb_qat_scheme_from_base(const char *scheme);
/* Fills the defaults above (warmup and min_lr as -1: derived from steps and
 * lr when the trainer is created). */
LB_API void lb_train_opts_default(lb_train_opts *o);

typedef struct lb_trainer lb_trainer;
/* A trainer holding a copy of m's weights (m is not changed). The model
 * must be fp32 with no linear slots (LB_ERR_UNSUPPORTED otherwise); with
 * lora_rank its tensors may be of any format (the frozen base), still
 * without slots, and a distillation teacher must be set
 * (lb_trainer_set_teacher) before the first step. */
LB_API lb_status lb_trainer_create(const lb_model *m, const lb_train_opts *o, lb_trainer **out);
LB_API void lb_trainer_free(lb_trainer *t);

typedef struct {
    int step;         /* 0-based index of the step just taken */
    double loss;      /* mean cross-entropy of the batch before the update, nats/token */
    float lr;         /* learning rate used */
    double grad_norm; /* global gradient norm before clipping */
    double seconds;   /* wall time of the step */
    /* the loss's parts: cross-entropy of the batch's targets (== loss
     * without distillation), KL to the teacher and the hidden-state MSE
     * (NAN when not part of the loss); with distillation loss = kl +
     * mse_weight mse */
    double ce, kl, mse;
} lb_train_step_info;
/* One optimizer step on a batch: tokens (batch, ctx + 1), each row's first
 * ctx tokens the inputs and its last ctx the targets. */
LB_API lb_status lb_trainer_step(lb_trainer *t, const int *tokens, lb_train_step_info *info);
#ifdef LB_ADVANCED_API /* for extending lowbit (methods, formats, tools); not a stable API */
/* Data-parallel training over the ranks of comm (docs/SCALING.md, "MPI"):
 * each rank's lb_trainer_step takes its own batch (the same batch size on
 * every rank), and after the backward pass the gradients and the loss are
 * summed over the ranks in rank order (lb_comm_sum_f32: the same bytes on
 * every rank) and divided by the number of ranks: the gradient of the mean
 * loss over the ranks' batches together. Every rank then clips and takes
 * the same AdamW step, so the parameters stay identical. NULL or size 1:
 * one process. Collective from then on: every rank must step together. */
LB_API void lb_trainer_set_comm(lb_trainer *t, const lb_comm *comm);
#endif
/* Mean cross-entropy of a batch (same layout) without changing anything. */
LB_API lb_status lb_trainer_loss(lb_trainer *t, const int *tokens, double *loss);
/* Replaces every tensor of m (the model the trainer was made from, or one
 * of its shape) by the trained fp32 values; with a QAT scheme the linears
 * are written in the scheme's stored format, decoding to exactly the
 * weights the training forward used (and with the activation quantizer
 * when activations were quantized); embedding, norms and classifier stay fp32.
 * With lora_rank only the adapters are written (into each linear's adapter
 * slot, fp16, as the forward used them): m must be the base the trainer
 * was made from, whose tensors stay as they are. */
LB_API lb_status lb_trainer_store(const lb_trainer *t, lb_model *m);
/* Every linear of m that has an adapter gets weight + alpha B A,
 * requantized into its weight's format by the named method (NULL: hqq) with
 * its default options and no statistics, and loses the adapter: the LoRA
 * recovery's merged form, without the adapter's bits. */
LB_API lb_status lb_lora_merge(lb_model *m, const char *method);
/* Bytes the trainer holds: parameters, gradients, AdamW moments, activations
 * (and the teacher's parameters and activations when distilling). */
LB_API size_t lb_trainer_bytes(const lb_trainer *t);
/* Distill from another fp32 model of the same shape instead of the one the
 * trainer was made from (o.distill must not be LB_DISTILL_NONE): e.g. a
 * student that has drifted, taught by the original. */
LB_API lb_status lb_trainer_set_teacher(lb_trainer *t, const lb_model *teacher);
/* Steps taken so far (a resumed trainer counts the checkpoint's). */
LB_API int lb_trainer_steps_done(const lb_trainer *t);
/* A trainer for a model of this shape trained from scratch: matrices
 * N(0, init_std^2) from init_seed, norm weights 1 (no teacher: distill must
 * be LB_DISTILL_NONE). */
LB_API lb_status lb_trainer_create_random(const lb_config *cfg, int tied, uint64_t init_seed, float init_std,
                                          const lb_train_opts *o, lb_trainer **out);

/* ---- checkpoints (src/train/checkpoint.c, docs/TRAINING.md "Checkpoints and
 * resume") ------------------------------------------------------------------
 * A versioned file holding everything a run's continuation depends on: the
 * parameters, AdamW's moments and step count, the step index, the batch
 * sampler's rng state, the options (and the model's shape), with a checksum
 * over all of it. Written atomically (FILE.tmp.<pid>, fsync, rename). Loading
 * checks the header, the size, the checksum, the shape and the options
 * against the trainer: a truncated, corrupt or foreign file is refused with
 * LB_ERR_FORMAT (LB_ERR_INVALID when it belongs to another run), the trainer
 * left as it was. */
LB_API lb_status lb_trainer_save_checkpoint(const lb_trainer *t, const lb_rng *rng, const char *path);
LB_API lb_status lb_trainer_load_checkpoint(lb_trainer *t, lb_rng *rng, const char *path);
/* The same from bytes in memory (the fuzz target's entry). */
LB_API lb_status lb_trainer_load_checkpoint_memory(lb_trainer *t, lb_rng *rng, const uint8_t *data, size_t size);

/* ---- data ------------------------------------------------------------------ */
typedef struct {
    int *tokens; /* BOS + block, for every block of the split, concatenated */
    size_t n;
    int first_block, end_block; /* the blocks used: [first, end) */
    size_t generated; /* tokens of the stream generated by a teacher (lb_train_data_generate) */
} lb_train_data;
/* Tokenizes the split's blocks with m's tokenizer. split must be
 * LB_SPLIT_CALIB (the training split): LB_SPLIT_EVAL and LB_SPLIT_ALL fail
 * with LB_ERR_INVALID. calib_blocks 0: 128. */
LB_API lb_status lb_train_data_load(const lb_model *m, const lb_text *text, lb_split split, int calib_blocks,
                                    lb_train_data *out);
LB_API void lb_train_data_free(lb_train_data *d);
/* batch windows of ctx + 1 consecutive tokens at offsets drawn from rng
 * into out (batch, ctx + 1); fails when the data has fewer than ctx + 1 tokens. */
/* Teacher-generated training text (OneBit's recipe where real text is
 * scarce): n_tokens sampled from m, appended to out's stream (which may be
 * empty, or hold a split: mixed). Sequences as the docs protocol reads text:
 * BOS, then tokens sampled one at a time (llama2.c's sampler: softmax(z /
 * temperature), nucleus top_p, seeded) until the model samples BOS or its
 * context is full, then a new sequence; the last one is cut at n_tokens.
 * Same seed, same tokens. */
LB_API lb_status lb_train_data_generate(const lb_model *m, size_t n_tokens, float temperature, float top_p,
                                        uint64_t seed, lb_train_data *out);
LB_API lb_status lb_train_data_batch(const lb_train_data *d, int batch, int ctx, lb_rng *rng, int *out);

#ifdef __cplusplus
}
#endif
#endif
