/* What the files of src/train share: the trainable model (one flat buffer
 * of parameters and one of gradients, llm.c style, with typed views into
 * both), its linears, the activations a backward needs, and the optimizer.
 *
 * A linear is a weight plus the ops that run it (lb_train_linear_ops): the
 * float linear today; a fake-quantized linear (issue 9 item 2) supplies its
 * own forward (quantize-dequantize the latent weight, then the GEMM) and
 * backward (the straight-through estimator into the latent weight's
 * gradient, plus gradients of its own learned scales kept in `state`)
 * without the model code changing. */
#ifndef LB_TRAIN_INTERNAL_H
#define LB_TRAIN_INTERNAL_H

#include "lowbit/model.h"
#include "lowbit/train.h"

typedef struct lb_train_linear lb_train_linear;
typedef struct {
    const char *name; /* "float" */
    /* y (N, rows) = x (N, cols) through the linear */
    lb_status (*forward)(lb_train_linear *L, const float *x, int N, float *y);
    /* dx (N, cols) += dy W_eff (dx may be NULL); the linear's parameter
     * gradients (L->dw, its state's) += their share of dy (N, rows) */
    lb_status (*backward)(lb_train_linear *L, const float *x, const float *dy, int N, float *dx);
} lb_train_linear_ops;

struct lb_train_linear {
    const lb_train_linear_ops *ops;
    float *w, *dw; /* (rows = out, cols = in): views into the model's parameter and gradient buffers */
    int rows, cols;
    void *state;   /* the ops' own data; NULL for the float linear */
};
extern const lb_train_linear_ops lb_train_linear_float;

/* One tensor of the flat buffers, in lb_model_tensor_at's order (so tensor
 * i is the model's tensor i): token_embd, per layer attn_norm q k v o
 * ffn_norm gate down up, output_norm, then output unless tied. */
typedef struct {
    char name[96];
    size_t offset; /* floats from the buffer's start */
    int64_t rows, cols;
    int decay;     /* weight decay applies: matrices yes, norm weights no */
} lb_train_tensor;

typedef struct {
    float *attn_norm, *ffn_norm; /* (dim) */
    float *w[LB_N_LINEARS];      /* as lb_layer's linears */
} lb_train_layer_view;

/* Named pointers into one flat buffer (parameters or gradients). */
typedef struct {
    float *tok_embd;  /* (vocab, dim) */
    float *out_norm;  /* (dim) */
    float *output;    /* (vocab, dim): == tok_embd when tied */
    lb_train_layer_view *layers;
} lb_train_view;

/* Activations of a forward over B x T positions, kept for the backward;
 * N = B * T rows. */
typedef struct {
    int B, T;
    int *inputs, *targets; /* (N) */
    float *x;        /* (n_layers + 1, N, dim): the residual entering each layer, then the final one */
    float *x_mid;    /* (n_layers, N, dim): the residual after attention */
    float *xn1, *xn2; /* (n_layers, N, dim): normalized attention / MLP inputs */
    float *rstd1, *rstd2; /* (n_layers, N) */
    float *q;        /* (n_layers, N, dim) after RoPE */
    float *k, *v;    /* (n_layers, N, kv_dim), k after RoPE */
    float *att;      /* (n_layers, B, n_heads, T, T) softmax probabilities */
    float *ao;       /* (n_layers, N, dim) attention output (wo's input) */
    float *g, *u, *h; /* (n_layers, N, hidden): gate, up, silu(gate) * up (down's input) */
    float *xnf, *rstdf; /* (N, dim), (N): final norm */
    float *logits;   /* (N, vocab): logits, then probabilities, then their gradient */
    double *row_nll; /* (N) */
    /* backward scratch */
    float *dx, *dxn, *dq, *dk, *dv, *dao, *dg, *du, *dh; /* (N, dim) x3, (N, kv_dim) x2, (N, dim), (N, hidden) x3 */
    size_t bytes;
} lb_train_acts;

/* Parameters the attached linears add beside the model's tensors (QAT's
 * learned scales, LoRA's adapters): one flat block trained by its own
 * AdamW without weight decay and saved in checkpoints; n 0: none. */
typedef struct {
    float *params, *grads; /* (n) each */
    size_t n;
    lb_train_tensor tensor; /* one tensor spanning the block, decay 0, for lb_adamw_step */
} lb_train_extra;

typedef struct {
    lb_config cfg;
    int tied;
    int n_tensors;
    lb_train_tensor *tensors;
    size_t n_params;
    float *params, *grads; /* (n_params) each */
    lb_train_view p, g;
    lb_train_linear *linears; /* (n_layers, LB_N_LINEARS) */
    float *rope_cos, *rope_sin; /* (seq_len, head_dim / 2), as lb_model's */
    lb_train_acts acts;
    struct lb_qat *qat;   /* fake-quantized linears (fakequant.c), or NULL */
    struct lb_lora *lora; /* adapters over frozen linears (lora.c), or NULL */
    lb_train_extra extra; /* the learned scales or the adapters */
    int frozen;           /* the model's own tensors are not trained (LoRA): only extra is */
    int have_loss; /* the last forward had targets: backward may run */
    int scored;    /* targets scored by it */
} lb_train_model;

/* ---- model_grad.c ---- */
/* A model of this shape with zeroed parameters (the RoPE table computed as model.c does). */
lb_status lb_train_model_create(const lb_config *cfg, int tied, lb_train_model **out);
/* Copies every tensor of an fp32 model; a quantized tensor or a linear with
 * slots is refused (LB_ERR_UNSUPPORTED): this is the fp32 trainer. With
 * dequantize, tensors of any format are read as their decoded values (the
 * frozen base of LoRA); linears with slots are still refused. */
lb_status lb_train_model_from_model(const lb_model *m, int dequantize, lb_train_model **out);
/* Matrices N(0, std^2), norm weights 1: a seeded random model (tests, from scratch). */
void lb_train_model_init_random(lb_train_model *tm, uint64_t seed, float std);
/* Replaces m's tensors by owned f32 copies of the trained values (same
 * shapes and names); m must have the shape tm was made from. */
lb_status lb_train_model_store(const lb_train_model *tm, lb_model *m);
void lb_train_model_free(lb_train_model *tm);

/* Forward over B sequences of T tokens (inputs (B, T), B * T rows). With
 * targets (B, T; negative = not scored) the mean cross-entropy goes to
 * *loss and the backward may follow; without, the logits stay readable
 * through acts.logits. */
lb_status lb_train_model_forward(lb_train_model *tm, const int *inputs, const int *targets, int B, int T,
                                 double *loss);
/* Adds d(mean loss)/d(param) of the last forward into tm->grads. */
lb_status lb_train_model_backward(lb_train_model *tm);
/* The backward from another loss (distillation): after a forward (with or
 * without targets), acts.logits holds d(loss)/d(logits) (N, vocab), and
 * dxnf, when not NULL, d(loss)/d(acts.xnf) (N, dim), the normalized final
 * hidden state; adds d(loss)/d(param) into tm->grads. */
lb_status lb_train_model_backward_from(lb_train_model *tm, const float *dxnf);
void lb_train_model_zero_grad(lb_train_model *tm);
/* tm->extra: n zeroed parameters and gradients under the name given
 * (nothing allocated when n is 0); freed with the model. */
lb_status lb_train_extra_alloc(lb_train_model *tm, size_t n, const char *name);
/* bytes of parameters, gradients and activations now allocated */
size_t lb_train_model_bytes(const lb_train_model *tm);

/* ---- distill.c ---- */
/* Sum over scored rows (targets[i] >= 0; all when targets is NULL) of
 * KL(softmax(zt / temp) || softmax(zs / temp)), each row's in row_kl (N);
 * when dzs is not NULL it receives scale (p_s - p_t) / temp (0 on unscored
 * rows). dzs may be zs (each value is read before it is overwritten). */
double lb_distill_kl(float *dzs, const float *zs, const float *zt, const int *targets, int N, int V, float temp,
                     float scale, double *row_kl);
/* Sum over scored rows of mean_j (hs - ht)^2; dhs (not NULL) = scale 2 (hs - ht) / dim. */
double lb_distill_mse(float *dhs, const float *hs, const float *ht, const int *targets, int N, int dim, float scale);

typedef struct {
    lb_train_model *teacher; /* frozen: forward only */
    double *row;             /* (rows) per-row losses */
    float *dxnf;             /* (rows, dim) the MSE's gradient */
    size_t rows;
} lb_distill;
typedef struct {
    double loss, ce, kl, mse; /* loss = kl (+ mse_weight mse); ce of the targets, reported; mse NAN without it */
} lb_distill_loss;
lb_status lb_distill_init(lb_distill *d, const lb_model *teacher);
void lb_distill_free(lb_distill *d);
size_t lb_distill_bytes(const lb_distill *d);
/* Teacher and student forward on inputs (B, T); the loss's parts into *out;
 * the gradient's start left for lb_train_model_backward_from(student,
 * kind == LB_DISTILL_KL_MSE ? d->dxnf : NULL): d(loss)/d(logits) in the
 * student's acts.logits, d(loss)/d(xnf) in d->dxnf. */
lb_status lb_distill_forward(lb_distill *d, lb_train_model *student, const int *inputs, const int *targets, int B,
                             int T, int kind, float temp, float mse_weight, lb_distill_loss *out);

/* ---- adamw.c ---- */
typedef struct {
    float beta1, beta2, eps, weight_decay;
} lb_adamw_opts;
typedef struct {
    size_t n;
    float *m, *v; /* (n) first and second moments */
    int64_t t;    /* steps taken */
} lb_adamw;
lb_status lb_adamw_init(lb_adamw *a, size_t n);
void lb_adamw_free(lb_adamw *a);
/* One step at learning rate lr over every tensor of the flat buffers
 * (decay only where tensors[i].decay). */
void lb_adamw_step(lb_adamw *a, float *params, const float *grads, const lb_train_tensor *tensors, int n_tensors,
                   float lr, const lb_adamw_opts *o);
/* Global L2 norm of grads (summed in double, in order); when above max_norm
 * > 0, grads are scaled by max_norm / norm. Returns the norm before clipping. */
double lb_grad_clip(float *grads, size_t n, double max_norm);
/* Linear warm-up from lr_max / warmup over steps 0..warmup-1, then a cosine
 * from lr_max down to lr_min at the last step (step counts from 0). */
float lb_lr_schedule(int step, int total, int warmup, float lr_max, float lr_min);

/* ---- trainer.c: its parts, for the checkpoint ---- */
typedef struct {
    lb_train_opts *o;
    lb_train_model *tm;
    lb_adamw *adam;
    int *step;
    lb_adamw *extra_adam; /* tm->extra's optimizer (n 0 without) */
} lb_trainer_parts;
void lb_trainer_parts_get(lb_trainer *t, lb_trainer_parts *p);

/* ---- lora.c: adapters over frozen linears (LoRA recovery) ---- */
extern const lb_train_linear_ops lb_train_linear_lora;
/* Every linear of tm (holding the decoded base) gets a rank-`rank` adapter
 * in tm->extra (A random from seed, B 0) and the model is frozen. */
lb_status lb_lora_attach(lb_train_model *tm, int rank, float alpha, uint64_t seed);
void lb_lora_free(struct lb_lora *q);
/* tests: the forward uses A and B unrounded (finite differences) */
void lb_lora_set_exact(struct lb_lora *q, int on);
/* m's linears get the adapters in fp16, as the training forward used them */
lb_status lb_lora_store(const lb_train_model *tm, lb_model *m);

/* ---- fakequant.c: quantization-aware training (src/train/qat.h) ---- */
typedef struct {
    const char *scheme; /* NULL: no weight quantization */
    const char *format; /* target format spec; NULL: the scheme's default */
    int act_bits;       /* 0, or 4..8: per-token absmax fake-quantized linear inputs (STE) */
    int grad_bits;      /* 0, or 2..16: quantized dy in every linear's backward */
    int grad_per_tensor, grad_stochastic; /* gradient scale per tensor (else per token); stochastic rounding */
    int stochastic;     /* binaryconnect: stochastic binarization */
    uint64_t seed;
    const lb_model *base; /* from_base schemes (e2eqp): the quantized model tm was made from */
} lb_qat_opts;
extern const lb_train_linear_ops lb_train_linear_qat;
/* Replaces every linear of tm by the fake-quantized one (nothing when o
 * asks for nothing); bad scheme / format fail with a message, tm unchanged. */
lb_status lb_qat_attach(lb_train_model *tm, const lb_qat_opts *o);
void lb_qat_free(struct lb_qat *q);
void lb_qat_after_step(lb_train_model *tm);
/* m's linears (m already holding the trained tensors) become the stored
 * format the training forward decoded, with the activation quantizer */
lb_status lb_qat_store(lb_train_model *tm, lb_model *m);
const char *lb_qat_default_format(const char *scheme);
/* trainer.c: the trainer's QAT state (NULL without one), for tests */
struct lb_trainer;
struct lb_qat *lb_trainer_qat(struct lb_trainer *t);
void lb_qat_quantize_grad(const float *dy, int N, int rows, int bits, int per_tensor, int stochastic, lb_rng *rng,
                          float *out);

#endif
