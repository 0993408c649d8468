/* Training checkpoints: everything the continuation of a run depends on, so
 * that k steps, a checkpoint, a resume and N - k more steps give the same
 * losses and weights, bit for bit, as N steps in one go.
 *
 * State: the parameters, AdamW's two moments and its step count t, the
 * trainer's step index (the schedule's position), the batch sampler's rng
 * state, and the options and model shape, kept to refuse a checkpoint of
 * another run (a resumed run with other options would not continue this
 * one). With quantization-aware training also the learned scales, their
 * AdamW moments and step count, and the stochastic-rounding rng; the
 * schemes' fixed data (BinaryConnect's alpha, TTQ's threshold) comes from
 * the starting weights, which a resumed run starts from too. Activations
 * and gradients are recomputed from these every step; the distillation
 * teacher is the unchanged model the run started from.
 *
 * File layout, little-endian:
 *   magic "LBTRCKPT", u32 version (2), u32 header bytes (from the magic),
 *   shape: u32 dim hidden layers heads kv_heads vocab seq_len head_dim,
 *          f32 norm_eps rope_theta, u32 tied, u32 n_tensors, u64 n_params
 *   state: u32 step, u64 adam_t, u64 rng_state
 *   opts:  u32 batch ctx steps warmup, f32 lr min_lr weight_decay beta1 beta2
 *          eps grad_clip, u64 seed, u32 distill, f32 temperature mse_weight
 *   qat:   u64 FNV-1a of the QAT and LoRA options' text (scheme|format|act_bits|...),
 *          u64 n_qat (the extra block: learned scales or LoRA adapters), u64 their
 *          adam_t, u64 the QAT rng state
 *   then n_params f32 parameters, n_params f32 first moments, n_params f32
 *   second moments, then n_qat f32 extra parameters, first and second
 *   moments, then u64 FNV-1a of every byte before it. With LoRA the model's
 *   own parameters are the frozen base (adam_t 0, moments 0). Version 1 (no qat
 *   part) was never released: it is refused like any other.
 * Parsing checks the magic, the version, the exact size the header implies
 * (before reading any array), the checksum, then the shape and the options
 * against the trainer's; only then is anything copied into the trainer. */
#include <math.h>
#include <string.h>

#include <stdio.h>

#include "lowbit/train.h"
#include "train/qat.h"
#include "train/train_internal.h"

#define CKPT_MAGIC "LBTRCKPT"
#define CKPT_VERSION 2u
#define CKPT_HEADER_BYTES 188u /* magic 8 + version 4 + header size 4 + shape 56 + state 20 + opts 64 + qat 32 */

static uint64_t fnv1a(uint64_t h, const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}
#define FNV_START 14695981039346656037ull

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* the header as bytes; its fields in the order the layout above lists them */
typedef struct {
    uint8_t b[CKPT_HEADER_BYTES];
    size_t at;
} header_buf;
static void put32(header_buf *h, uint32_t v) {
    lb_wr32(h->b + h->at, v);
    h->at += 4;
}
static void put64(header_buf *h, uint64_t v) {
    lb_wr64(h->b + h->at, v);
    h->at += 8;
}
static void putf(header_buf *h, float f) { put32(h, f32_bits(f)); }

/* the QAT options as one number: a run resumes with the scheme it started with */
static uint64_t qat_opts_hash(const lb_train_opts *o) {
    char text[512];
    int n = snprintf(text, sizeof text, "%s|%s|%d|%d|%d|%d|%d", o->qat ? o->qat : "", o->format ? o->format : "",
                     o->act_bits, o->grad_bits, o->grad_per_tensor, o->grad_stochastic, o->stochastic);
    if (o->lora_rank) /* appended only with LoRA: QAT checkpoints keep their hash */
        snprintf(text + n, sizeof text - (size_t)n, "|lora %d %a", o->lora_rank, (double)o->lora_alpha);
    return fnv1a(FNV_START, (const uint8_t *)text, strlen(text));
}

static void header_write(header_buf *h, const lb_trainer_parts *p, const lb_rng *rng) {
    const lb_config *c = &p->tm->cfg;
    const lb_train_opts *o = p->o;
    memset(h, 0, sizeof *h);
    memcpy(h->b, CKPT_MAGIC, 8);
    h->at = 8;
    put32(h, CKPT_VERSION);
    put32(h, CKPT_HEADER_BYTES);
    const int shape[8] = {c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size, c->seq_len,
                          c->head_dim};
    for (int i = 0; i < 8; i++) put32(h, (uint32_t)shape[i]);
    putf(h, c->norm_eps);
    putf(h, c->rope_theta);
    put32(h, (uint32_t)p->tm->tied);
    put32(h, (uint32_t)p->tm->n_tensors);
    put64(h, (uint64_t)p->tm->n_params);
    put32(h, (uint32_t)*p->step);
    put64(h, (uint64_t)p->adam->t);
    put64(h, rng->state);
    put32(h, (uint32_t)o->batch);
    put32(h, (uint32_t)o->ctx);
    put32(h, (uint32_t)o->steps);
    put32(h, (uint32_t)o->warmup);
    const float f[7] = {o->lr, o->min_lr, o->weight_decay, o->beta1, o->beta2, o->eps, o->grad_clip};
    for (int i = 0; i < 7; i++) putf(h, f[i]);
    put64(h, o->seed);
    put32(h, (uint32_t)o->distill);
    putf(h, o->temperature);
    putf(h, o->mse_weight);
    put64(h, qat_opts_hash(o));
    put64(h, (uint64_t)p->tm->extra.n);
    put64(h, (uint64_t)p->extra_adam->t);
    put64(h, p->tm->qat ? p->tm->qat->rng.state : 0);
}

/* n floats little-endian, through a small buffer; the checksum follows the bytes */
static void write_floats(lb_atomic_file *f, const float *x, size_t n, uint64_t *hash) {
    uint8_t buf[4096];
    for (size_t i = 0; i < n;) {
        size_t k = 0;
        for (; i < n && k + 4 <= sizeof buf; i++, k += 4) lb_wr32(buf + k, f32_bits(x[i]));
        *hash = fnv1a(*hash, buf, k);
        lb_atomic_write(f, buf, k);
    }
}

lb_status lb_trainer_save_checkpoint(const lb_trainer *t, const lb_rng *rng, const char *path) {
    lb_trainer_parts p;
    lb_trainer_parts_get((lb_trainer *)t, &p); /* read only */
    header_buf h;
    header_write(&h, &p, rng);
    lb_atomic_file f;
    lb_status st = lb_atomic_open(&f, path);
    if (st != LB_OK) return st;
    uint64_t hash = fnv1a(FNV_START, h.b, sizeof h.b);
    lb_atomic_write(&f, h.b, sizeof h.b);
    write_floats(&f, p.tm->params, p.tm->n_params, &hash);
    write_floats(&f, p.adam->m, p.adam->n, &hash);
    write_floats(&f, p.adam->v, p.adam->n, &hash);
    if (p.tm->extra.n) {
        write_floats(&f, p.tm->extra.params, p.tm->extra.n, &hash);
        write_floats(&f, p.extra_adam->m, p.extra_adam->n, &hash);
        write_floats(&f, p.extra_adam->v, p.extra_adam->n, &hash);
    }
    uint8_t tail[8];
    lb_wr64(tail, hash);
    lb_atomic_write(&f, tail, 8);
    st = lb_atomic_commit(&f); /* fflush, fsync, rename */
    if (st != LB_OK) return lb_fail_context(st, "writing checkpoint '%s'", path);
    return LB_OK;
}

/* header field at byte offset `at` */
static uint32_t get32(const uint8_t *d, size_t *at) {
    uint32_t v = lb_rd32(d + *at);
    *at += 4;
    return v;
}
static uint64_t get64(const uint8_t *d, size_t *at) {
    uint64_t v = lb_rd64(d + *at);
    *at += 8;
    return v;
}

lb_status lb_trainer_load_checkpoint_memory(lb_trainer *t, lb_rng *rng, const uint8_t *d, size_t size) {
    lb_trainer_parts p;
    lb_trainer_parts_get(t, &p);
    if (size < 16 || memcmp(d, CKPT_MAGIC, 8) != 0)
        return lb_fail(LB_ERR_FORMAT, "not a lowbit training checkpoint (no '%s' magic)", CKPT_MAGIC);
    uint32_t version = lb_rd32(d + 8), hbytes = lb_rd32(d + 12);
    if (version != CKPT_VERSION)
        return lb_fail(LB_ERR_FORMAT, "checkpoint version %u; this lowbit reads version %u", version, CKPT_VERSION);
    if (hbytes != CKPT_HEADER_BYTES || size < CKPT_HEADER_BYTES)
        return lb_fail(LB_ERR_FORMAT, "checkpoint header of %u bytes in a file of %zu (version %u has %u): truncated or "
                                      "corrupt",
                       hbytes, size, CKPT_VERSION, CKPT_HEADER_BYTES);
    /* the size the shape implies, before reading any array: the trainer's own parameter count */
    size_t at = 16;
    uint32_t shape[8];
    for (int i = 0; i < 8; i++) shape[i] = get32(d, &at);
    float norm_eps = bits_f32(get32(d, &at)), rope_theta = bits_f32(get32(d, &at));
    uint32_t tied = get32(d, &at), n_tensors = get32(d, &at);
    uint64_t n_params = get64(d, &at);
    uint32_t step = get32(d, &at);
    uint64_t adam_t = get64(d, &at), rng_state = get64(d, &at);
    if (n_params != (uint64_t)p.tm->n_params)
        return lb_fail(LB_ERR_INVALID, "the checkpoint holds %llu parameters, this model has %zu: another model's",
                       (unsigned long long)n_params, p.tm->n_params);
    size_t n_qat_have = p.tm->extra.n;
    uint64_t n_qat = lb_rd64(d + CKPT_HEADER_BYTES - 24);
    if (n_qat != (uint64_t)n_qat_have)
        return lb_fail(LB_ERR_INVALID, "the checkpoint holds %llu learned scales or adapter values, this run has %zu: "
                                       "another run's (resume with the --qat / --lora options the run started with)",
                       (unsigned long long)n_qat, n_qat_have);
    uint64_t want = (uint64_t)CKPT_HEADER_BYTES + 3 * 4 * n_params + 3 * 4 * n_qat + 8;
    if ((uint64_t)size != want)
        return lb_fail(LB_ERR_FORMAT, "checkpoint of %zu bytes; its header implies %llu: truncated or corrupt", size,
                       (unsigned long long)want);
    uint64_t hash = fnv1a(FNV_START, d, size - 8);
    if (hash != lb_rd64(d + size - 8))
        return lb_fail(LB_ERR_FORMAT, "checkpoint checksum mismatch: the file is corrupt");
    const lb_config *c = &p.tm->cfg;
    const int have[8] = {c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size, c->seq_len,
                         c->head_dim};
    static const char *names[8] = {"dim", "hidden", "layers", "heads", "kv heads", "vocab", "context", "head dim"};
    for (int i = 0; i < 8; i++)
        if (shape[i] != (uint32_t)have[i])
            return lb_fail(LB_ERR_INVALID, "the checkpoint's model has %s %u, this one %d: another model's", names[i],
                           shape[i], have[i]);
    if (f32_bits(norm_eps) != f32_bits(c->norm_eps) || f32_bits(rope_theta) != f32_bits(c->rope_theta) ||
        tied != (uint32_t)p.tm->tied || n_tensors != (uint32_t)p.tm->n_tensors)
        return lb_fail(LB_ERR_INVALID, "the checkpoint's model differs from this one (norm eps, RoPE theta, tied "
                                       "classifier or tensor count)");
    /* the options: a run resumes with the options it started with */
    const lb_train_opts *o = p.o;
    const uint32_t ints[4] = {(uint32_t)o->batch, (uint32_t)o->ctx, (uint32_t)o->steps, (uint32_t)o->warmup};
    static const char *int_names[4] = {"batch", "ctx", "steps", "warmup"};
    for (int i = 0; i < 4; i++) {
        uint32_t v = get32(d, &at);
        if (v != ints[i])
            return lb_fail(LB_ERR_INVALID, "the checkpoint was made with --%s %u, this run has %u: resume with the "
                                           "options the run started with",
                           int_names[i], v, ints[i]);
    }
    const float fl[7] = {o->lr, o->min_lr, o->weight_decay, o->beta1, o->beta2, o->eps, o->grad_clip};
    static const char *fl_names[7] = {"lr", "min-lr", "weight-decay", "beta1", "beta2", "eps", "grad-clip"};
    for (int i = 0; i < 7; i++) {
        float v = bits_f32(get32(d, &at));
        if (f32_bits(v) != f32_bits(fl[i]))
            return lb_fail(LB_ERR_INVALID, "the checkpoint was made with %s %g, this run has %g: resume with the "
                                           "options the run started with",
                           fl_names[i], (double)v, (double)fl[i]);
    }
    uint64_t seed = get64(d, &at);
    uint32_t distill = get32(d, &at);
    float temp = bits_f32(get32(d, &at)), mse_w = bits_f32(get32(d, &at));
    if (seed != o->seed)
        return lb_fail(LB_ERR_INVALID, "the checkpoint was made with --seed %llu, this run has %llu",
                       (unsigned long long)seed, (unsigned long long)o->seed);
    if (distill != (uint32_t)o->distill || f32_bits(temp) != f32_bits(o->temperature) ||
        f32_bits(mse_w) != f32_bits(o->mse_weight))
        return lb_fail(LB_ERR_INVALID, "the checkpoint was made with --distill %s (temperature %g, MSE weight %g), "
                                       "this run has %s (%g, %g)",
                       distill <= LB_DISTILL_KL_MSE ? lb_distill_name((int)distill) : "?", (double)temp, (double)mse_w,
                       lb_distill_name(o->distill), (double)o->temperature, (double)o->mse_weight);
    uint64_t qhash = get64(d, &at);
    at += 8; /* n_qat, checked above */
    uint64_t qadam_t = get64(d, &at), qrng = get64(d, &at);
    if (qhash != qat_opts_hash(o))
        return lb_fail(LB_ERR_INVALID, "the checkpoint was made with other quantization-aware or LoRA options (--qat, "
                                       "--format, --act-bits, --grad-bits, --lora, ...): resume with the options the "
                                       "run started with");
    if (qadam_t != (n_qat ? step : 0))
        return lb_fail(LB_ERR_FORMAT, "checkpoint at step %u with %llu optimizer steps of its learned scales or adapters: "
                                      "inconsistent",
                       step, (unsigned long long)qadam_t);
    if (step > (uint32_t)o->steps || adam_t != (p.tm->frozen ? 0 : step)) /* LoRA trains only the extra block */
        return lb_fail(LB_ERR_FORMAT, "checkpoint at step %u with %llu optimizer steps of %d: inconsistent", step,
                       (unsigned long long)adam_t, o->steps);
    /* checked: now the state */
    const uint8_t *arr = d + CKPT_HEADER_BYTES;
    float *dst[3] = {p.tm->params, p.adam->m, p.adam->v};
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i < p.tm->n_params; i++) dst[k][i] = bits_f32(lb_rd32(arr + 4 * ((size_t)k * n_params + i)));
    if (n_qat) {
        const uint8_t *qarr = arr + 3 * 4 * (size_t)n_params;
        float *qdst[3] = {p.tm->extra.params, p.extra_adam->m, p.extra_adam->v};
        for (int k = 0; k < 3; k++)
            for (size_t i = 0; i < n_qat_have; i++) qdst[k][i] = bits_f32(lb_rd32(qarr + 4 * ((size_t)k * n_qat + i)));
        p.extra_adam->t = (int64_t)qadam_t;
    }
    if (p.tm->qat) p.tm->qat->rng.state = qrng; /* stochastic rounding's, learned scales or not */
    *p.step = (int)step;
    p.adam->t = (int64_t)adam_t;
    rng->state = rng_state;
    return LB_OK;
}

lb_status lb_trainer_load_checkpoint(lb_trainer *t, lb_rng *rng, const char *path) {
    char *data;
    size_t size;
    lb_status st = lb_read_file(path, &data, &size);
    if (st != LB_OK) return st;
    st = lb_trainer_load_checkpoint_memory(t, rng, (const uint8_t *)data, size);
    lb_free(data);
    if (st != LB_OK) return lb_fail_context(st, "checkpoint '%s'", path);
    return LB_OK;
}
