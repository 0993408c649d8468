/* The training loop's pieces behind lowbit/train.h: a trainer (model
 * copy, AdamW state, schedule) taking one step per batch, and the data: the
 * training split tokenized as one stream, batches drawn from it. */
#include <math.h>
#include <string.h>

#include "lowbit/train.h"
#include "train/qat.h"
#include "train/train_internal.h"

struct lb_trainer {
    lb_train_opts o;
    lb_train_model *tm;
    lb_adamw adam;
    lb_adamw extra_adam; /* tm->extra: learned quantization scales (QAT) or adapters (LoRA) */
    int step;
    int *inputs, *targets; /* (batch, ctx) */
    lb_distill distill;    /* teacher and scratch when o.distill != LB_DISTILL_NONE */
    const lb_comm *comm;   /* data-parallel ranks (NULL: one process) */
};

void lb_trainer_set_comm(lb_trainer *t, const lb_comm *comm) { t->comm = comm; }

/* Data parallelism: the ranks' gradients (the model's unless frozen, the
 * extra block's) and loss parts summed in rank order and averaged; every
 * rank gets the same bytes. */
static lb_status reduce_ranks(lb_trainer *t, double *loss, lb_distill_loss *parts) {
    const lb_comm *c = t->comm;
    if (!c || c->size <= 1) return LB_OK;
    lb_train_extra *X = &t->tm->extra;
    float inv = 1.0f / (float)c->size;
    lb_status st = LB_OK;
    if (!t->tm->frozen) {
        st = lb_comm_sum_f32(c, t->tm->grads, t->tm->n_params, 1);
        for (size_t i = 0; st == LB_OK && i < t->tm->n_params; i++) t->tm->grads[i] *= inv;
    }
    if (st == LB_OK && X->n) {
        st = lb_comm_sum_f32(c, X->grads, X->n, 1);
        for (size_t i = 0; st == LB_OK && i < X->n; i++) X->grads[i] *= inv;
    }
    double v[4] = {*loss, parts->ce, parts->kl, parts->mse};
    if (st == LB_OK) st = lb_comm_sum_f64(c, v, 4, 1);
    if (st != LB_OK) return lb_fail_context(st, "step %d: reducing the gradients across ranks", t->step);
    *loss = v[0] / c->size;
    parts->ce = v[1] / c->size;
    parts->kl = v[2] / c->size;
    parts->mse = v[3] / c->size;
    return LB_OK;
}

void lb_trainer_parts_get(lb_trainer *t, lb_trainer_parts *p) {
    p->o = &t->o;
    p->tm = t->tm;
    p->adam = &t->adam;
    p->step = &t->step;
    p->extra_adam = &t->extra_adam;
}

int lb_trainer_steps_done(const lb_trainer *t) { return t->step; }

void lb_train_opts_default(lb_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->batch = 8;
    o->ctx = 128;
    o->steps = 100;
    o->warmup = -1;
    o->lr = 3e-4f;
    o->min_lr = -1.0f;
    o->weight_decay = 0.1f;
    o->beta1 = 0.9f;
    o->beta2 = 0.95f;
    o->eps = 1e-8f;
    o->grad_clip = 1.0f;
    o->seed = 1;
    o->distill = LB_DISTILL_NONE;
    o->temperature = 1.0f;
    o->mse_weight = 1.0f;
    o->lora_alpha = 1.0f;
}

/* LoRA and e2eqp train over the model as stored (any format, decoded and
 * frozen); their distillation teacher is set apart */
static int frozen_base(const lb_train_opts *o) { return o->lora_rank > 0 || lb_qat_scheme_from_base(o->qat); }

static lb_status opts_check(const lb_model *m, lb_train_opts *o) {
    if (o->warmup < 0) o->warmup = o->steps / 10;
    if (o->min_lr < 0) o->min_lr = o->lr / 10;
    if (o->batch < 1 || o->batch > 65536) return lb_fail(LB_ERR_INVALID, "batch must be 1..65536, not %d", o->batch);
    if (o->ctx < 1 || o->ctx > m->cfg.seq_len)
        return lb_fail(LB_ERR_INVALID, "ctx must be 1..%d (the model's context), not %d", m->cfg.seq_len, o->ctx);
    if (o->steps < 1) return lb_fail(LB_ERR_INVALID, "steps must be >= 1, not %d", o->steps);
    if (o->warmup > o->steps) return lb_fail(LB_ERR_INVALID, "warm-up (%d) exceeds the steps (%d)", o->warmup, o->steps);
    if (!(o->lr > 0 && o->lr < 10)) return lb_fail(LB_ERR_INVALID, "learning rate must be in (0, 10), not %g", o->lr);
    if (!(o->min_lr >= 0 && o->min_lr <= o->lr))
        return lb_fail(LB_ERR_INVALID, "final learning rate must be in [0, lr = %g], not %g", o->lr, o->min_lr);
    if (!(o->weight_decay >= 0 && o->weight_decay < 10))
        return lb_fail(LB_ERR_INVALID, "weight decay must be in [0, 10), not %g", o->weight_decay);
    if (!(o->beta1 >= 0 && o->beta1 < 1) || !(o->beta2 >= 0 && o->beta2 < 1))
        return lb_fail(LB_ERR_INVALID, "AdamW's betas must be in [0, 1), not %g and %g", o->beta1, o->beta2);
    if (!(o->eps > 0 && o->eps < 1)) return lb_fail(LB_ERR_INVALID, "AdamW's eps must be in (0, 1), not %g", o->eps);
    if (!(o->grad_clip >= 0 && isfinite(o->grad_clip)))
        return lb_fail(LB_ERR_INVALID, "gradient clipping norm must be >= 0 (0: off), not %g", o->grad_clip);
    if (o->distill < LB_DISTILL_NONE || o->distill > LB_DISTILL_KL_MSE)
        return lb_fail(LB_ERR_INVALID, "unknown distillation loss %d", o->distill);
    if (!(o->temperature > 0 && o->temperature <= 100))
        return lb_fail(LB_ERR_INVALID, "distillation temperature must be in (0, 100], not %g", o->temperature);
    if (!(o->mse_weight >= 0 && o->mse_weight < 1e6))
        return lb_fail(LB_ERR_INVALID, "the hidden-state MSE weight must be in [0, 1e6), not %g", o->mse_weight);
    if (o->lora_rank < 0 || o->lora_rank > 65536)
        return lb_fail(LB_ERR_INVALID, "LoRA rank must be 1..65536 (0: off), not %d", o->lora_rank);
    if (o->lora_rank && (o->qat || o->act_bits || o->grad_bits))
        return lb_fail(LB_ERR_INVALID, "LoRA trains adapters over the stored weights: it does not combine with "
                                       "quantization-aware training (--qat, --act-bits, --grad-bits)");
    return LB_OK;
}

/* The fake-quantized linears or the adapters, and the optimizer of their
 * parameters, once the weights hold their starting values (learned scales
 * start from them). */
static lb_status attach_linears(lb_trainer *t, const lb_model *m) {
    const lb_train_opts *o = &t->o;
    lb_status st;
    if (o->lora_rank) {
        st = lb_lora_attach(t->tm, o->lora_rank, o->lora_alpha, o->seed);
    } else {
        lb_qat_opts qo = {o->qat, o->format, o->act_bits, o->grad_bits, o->grad_per_tensor, o->grad_stochastic,
                          o->stochastic, o->seed, m};
        st = lb_qat_attach(t->tm, &qo);
    }
    if (st == LB_OK && t->tm->extra.n) st = lb_adamw_init(&t->extra_adam, t->tm->extra.n);
    return st;
}

lb_status lb_trainer_create(const lb_model *m, const lb_train_opts *opts, lb_trainer **out) {
    *out = NULL;
    lb_train_opts o;
    if (opts) o = *opts;
    else lb_train_opts_default(&o);
    lb_status st = opts_check(m, &o);
    if (st != LB_OK) return st;
    lb_trainer *t = lb_calloc(1, sizeof *t);
    if (!t) return LB_ERR_NOMEM;
    t->o = o;
    size_t n = (size_t)o.batch * o.ctx;
    t->inputs = lb_alloc(n * sizeof(int));
    t->targets = lb_alloc(n * sizeof(int));
    if (!t->inputs || !t->targets) st = lb_fail(LB_ERR_NOMEM, "out of memory for a %d x %d batch", o.batch, o.ctx);
    if (st == LB_OK) st = lb_train_model_from_model(m, frozen_base(&o), &t->tm);
    if (st == LB_OK) st = lb_adamw_init(&t->adam, t->tm->n_params);
    /* a frozen base is quantized: its teacher is set apart (lb_trainer_set_teacher) */
    if (st == LB_OK && o.distill != LB_DISTILL_NONE && !frozen_base(&o)) st = lb_distill_init(&t->distill, m);
    if (st == LB_OK) st = attach_linears(t, m);
    if (st != LB_OK) {
        lb_trainer_free(t);
        return st;
    }
    *out = t;
    return LB_OK;
}

void lb_trainer_free(lb_trainer *t) {
    if (!t) return;
    lb_train_model_free(t->tm);
    lb_adamw_free(&t->adam);
    lb_adamw_free(&t->extra_adam);
    lb_free(t->inputs);
    lb_free(t->targets);
    lb_distill_free(&t->distill);
    lb_free(t);
}

lb_status lb_trainer_set_teacher(lb_trainer *t, const lb_model *teacher) {
    if (t->o.distill == LB_DISTILL_NONE) return lb_fail(LB_ERR_INVALID, "a teacher needs a distillation loss (kl, kl+mse)");
    const lb_config *a = &t->tm->cfg, *b = &teacher->cfg;
    if (a->dim != b->dim || a->hidden_dim != b->hidden_dim || a->n_layers != b->n_layers || a->n_heads != b->n_heads ||
        a->n_kv_heads != b->n_kv_heads || a->vocab_size != b->vocab_size)
        return lb_fail(LB_ERR_INVALID, "the teacher's shape (dim %d, hidden %d, %d layers, %d/%d heads, vocab %d) is not "
                                       "the student's (dim %d, hidden %d, %d layers, %d/%d heads, vocab %d)",
                       b->dim, b->hidden_dim, b->n_layers, b->n_heads, b->n_kv_heads, b->vocab_size, a->dim,
                       a->hidden_dim, a->n_layers, a->n_heads, a->n_kv_heads, a->vocab_size);
    lb_distill d;
    lb_status st = lb_distill_init(&d, teacher);
    if (st != LB_OK) return st;
    lb_distill_free(&t->distill);
    t->distill = d;
    return LB_OK;
}

lb_status lb_trainer_create_random(const lb_config *cfg, int tied, uint64_t init_seed, float init_std,
                                   const lb_train_opts *opts, lb_trainer **out) {
    *out = NULL;
    lb_train_opts o;
    if (opts) o = *opts;
    else lb_train_opts_default(&o);
    if (o.distill != LB_DISTILL_NONE)
        return lb_fail(LB_ERR_INVALID, "distillation needs a teacher: train from a model (--from), not a config");
    if (frozen_base(&o))
        return lb_fail(LB_ERR_INVALID, "LoRA and e2eqp train over a trained model (--from), not a random one");
    if (!(init_std > 0 && init_std < 10)) return lb_fail(LB_ERR_INVALID, "init std must be in (0, 10), not %g", init_std);
    lb_model shape = {.cfg = *cfg}; /* opts_check reads the context length only */
    lb_status st = opts_check(&shape, &o);
    if (st != LB_OK) return st;
    lb_trainer *t = lb_calloc(1, sizeof *t);
    if (!t) return LB_ERR_NOMEM;
    t->o = o;
    size_t n = (size_t)o.batch * o.ctx;
    t->inputs = lb_alloc(n * sizeof(int));
    t->targets = lb_alloc(n * sizeof(int));
    if (!t->inputs || !t->targets) st = lb_fail(LB_ERR_NOMEM, "out of memory for a %d x %d batch", o.batch, o.ctx);
    if (st == LB_OK) st = lb_train_model_create(cfg, tied, &t->tm);
    if (st == LB_OK) st = lb_adamw_init(&t->adam, t->tm->n_params);
    if (st == LB_OK) {
        lb_train_model_init_random(t->tm, init_seed, init_std);
        st = attach_linears(t, NULL);
    }
    if (st != LB_OK) {
        lb_trainer_free(t);
        return st;
    }
    *out = t;
    return LB_OK;
}

/* rows of ctx + 1 tokens -> inputs (first ctx), targets (last ctx) */
static void split_rows(lb_trainer *t, const int *tokens) {
    int B = t->o.batch, T = t->o.ctx;
    for (int b = 0; b < B; b++) {
        memcpy(t->inputs + (size_t)b * T, tokens + (size_t)b * (T + 1), (size_t)T * sizeof(int));
        memcpy(t->targets + (size_t)b * T, tokens + (size_t)b * (T + 1) + 1, (size_t)T * sizeof(int));
    }
}

lb_status lb_trainer_loss(lb_trainer *t, const int *tokens, double *loss) {
    split_rows(t, tokens);
    return lb_train_model_forward(t->tm, t->inputs, t->targets, t->o.batch, t->o.ctx, loss);
}

lb_status lb_trainer_step(lb_trainer *t, const int *tokens, lb_train_step_info *info) {
    double t0 = lb_now(), loss;
    lb_distill_loss parts = {NAN, NAN, NAN, NAN};
    lb_status st;
    if (t->o.distill != LB_DISTILL_NONE) {
        if (!t->distill.teacher)
            return lb_fail(LB_ERR_INVALID, "training over a quantized model (LoRA, e2eqp) distills from the fp32 "
                                           "model: set a teacher (--teacher FP32)");
        split_rows(t, tokens);
        st = lb_distill_forward(&t->distill, t->tm, t->inputs, t->targets, t->o.batch, t->o.ctx, t->o.distill,
                                t->o.temperature, t->o.mse_weight, &parts);
        if (st != LB_OK) return st;
        loss = parts.loss;
        lb_train_model_zero_grad(t->tm);
        st = lb_train_model_backward_from(t->tm, t->o.distill == LB_DISTILL_KL_MSE ? t->distill.dxnf : NULL);
    } else {
        st = lb_trainer_loss(t, tokens, &loss);
        if (st != LB_OK) return st;
        parts.ce = loss;
        lb_train_model_zero_grad(t->tm);
        st = lb_train_model_backward(t->tm);
    }
    if (st == LB_OK) st = reduce_ranks(t, &loss, &parts);
    if (st != LB_OK) return st;
    double norm;
    lb_train_extra *X = &t->tm->extra;
    int frozen = t->tm->frozen;
    if (X->n) { /* one global norm over the trained gradients: the model's (unless frozen) and the extra block's */
        double n1 = frozen ? 0 : lb_grad_clip(t->tm->grads, t->tm->n_params, 0), n2 = lb_grad_clip(X->grads, X->n, 0);
        norm = sqrt(n1 * n1 + n2 * n2);
        if (t->o.grad_clip > 0 && norm > t->o.grad_clip) {
            float s = (float)(t->o.grad_clip / norm);
            for (size_t i = 0; i < t->tm->n_params && !frozen; i++) t->tm->grads[i] *= s;
            for (size_t i = 0; i < X->n; i++) X->grads[i] *= s;
        }
    } else {
        norm = lb_grad_clip(t->tm->grads, t->tm->n_params, t->o.grad_clip);
    }
    if (!isfinite(norm)) return lb_fail(LB_ERR_NUMERIC, "step %d: the gradient is not finite", t->step);
    float lr = lb_lr_schedule(t->step, t->o.steps, t->o.warmup, t->o.lr, t->o.min_lr);
    lb_adamw_opts ao = {t->o.beta1, t->o.beta2, t->o.eps, t->o.weight_decay};
    if (!frozen) lb_adamw_step(&t->adam, t->tm->params, t->tm->grads, t->tm->tensors, t->tm->n_tensors, lr, &ao);
    if (X->n) lb_adamw_step(&t->extra_adam, X->params, X->grads, &X->tensor, 1, lr, &ao); /* decay 0 */
    lb_qat_after_step(t->tm);
    if (info) {
        info->step = t->step;
        info->loss = loss;
        info->lr = lr;
        info->grad_norm = norm;
        info->seconds = lb_now() - t0;
        info->ce = parts.ce;
        info->kl = parts.kl;
        info->mse = parts.mse;
    }
    t->step++;
    return LB_OK;
}

lb_status lb_trainer_store(const lb_trainer *t, lb_model *m) {
    if (t->tm->lora) return lb_lora_store(t->tm, m); /* the base stays as stored */
    if (t->tm->frozen) return lb_qat_store(t->tm, m); /* e2eqp: only the linears' scales changed */
    lb_status st = lb_train_model_store(t->tm, m);
    return st == LB_OK ? lb_qat_store(t->tm, m) : st;
}

struct lb_qat *lb_trainer_qat(lb_trainer *t) { return t->tm->qat; }

size_t lb_trainer_bytes(const lb_trainer *t) {
    size_t q = 2 * t->tm->extra.n * sizeof(float) + 2 * t->extra_adam.n * sizeof(float);
    return lb_train_model_bytes(t->tm) + 2 * t->adam.n * sizeof(float) + 2 * (size_t)t->o.batch * t->o.ctx * sizeof(int) +
           q + lb_distill_bytes(&t->distill);
}

/* ---- data ------------------------------------------------------------------ */

lb_status lb_train_data_load(const lb_model *m, const lb_text *text, lb_split split, int calib_blocks,
                             lb_train_data *out) {
    memset(out, 0, sizeof *out);
    if (split != LB_SPLIT_CALIB)
        return lb_fail(LB_ERR_INVALID,
                       "training reads only the training (calib) split, not '%s': the evaluation split is kept for "
                       "measuring, and 'all' contains it",
                       lb_split_name(split));
    if (!m->tokenizer) return lb_fail(LB_ERR_INVALID, "the model has no tokenizer to read training text with");
    if (calib_blocks == 0) calib_blocks = 128;
    int first, end;
    lb_status st = lb_text_split(text, split, calib_blocks, &first, &end);
    if (st != LB_OK) return st;
    size_t cap = 0;
    for (int b = first; b < end; b++) {
        int *tok;
        size_t n;
        st = lb_tokenize(m->tokenizer, text->blocks[b].text, text->blocks[b].len, 1, 0, &tok, &n);
        if (st != LB_OK) {
            lb_train_data_free(out);
            return lb_fail_context(st, "block %d of '%s'", b + 1, text->path);
        }
        if (out->n + n > cap) {
            size_t nc = cap ? cap * 2 : 4096;
            while (nc < out->n + n) nc *= 2;
            int *grown = lb_alloc(nc * sizeof(int));
            if (!grown) {
                lb_free(tok);
                lb_train_data_free(out);
                return lb_fail(LB_ERR_NOMEM, "out of memory for the training tokens");
            }
            if (out->n) memcpy(grown, out->tokens, out->n * sizeof(int));
            lb_free(out->tokens);
            out->tokens = grown;
            cap = nc;
        }
        memcpy(out->tokens + out->n, tok, n * sizeof(int));
        out->n += n;
        lb_free(tok);
    }
    out->first_block = first;
    out->end_block = end;
    return LB_OK;
}

void lb_train_data_free(lb_train_data *d) {
    lb_free(d->tokens);
    memset(d, 0, sizeof *d);
}

lb_status lb_train_data_batch(const lb_train_data *d, int batch, int ctx, lb_rng *rng, int *out) {
    size_t w = (size_t)ctx + 1;
    if (ctx < 1 || d->n < w)
        return lb_fail(LB_ERR_INVALID, "the training text has %zu tokens, fewer than one window of ctx + 1 = %zu",
                       d->n, w);
    size_t starts = d->n - w + 1;
    for (int b = 0; b < batch; b++) {
        /* two draws: the stream may hold more than 2^32 tokens */
        uint64_t r = ((uint64_t)lb_rng_u32(rng) << 32) | lb_rng_u32(rng);
        memcpy(out + (size_t)b * w, d->tokens + r % starts, w * sizeof(int));
    }
    return LB_OK;
}
