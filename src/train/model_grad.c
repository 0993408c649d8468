/* The whole Llama model for training: parameters and gradients as flat
 * buffers with named views, the forward that keeps every activation its
 * backward needs, and the backward, layer by layer in reverse. The forward
 * is src/model/forward.c's computation (embed; per layer RMSNorm, q k v,
 * RoPE, causal GQA attention, wo, residual, RMSNorm, SwiGLU MLP, residual;
 * final RMSNorm; classifier), with positions 0..T-1 for each of B sequences,
 * followed by the mean softmax cross-entropy of the scored targets. */
#include <math.h>
#include <string.h>

#include "lowbit/format.h"
#include "train/ops.h"
#include "train/qat.h"
#include "train/train_internal.h"

#define TRY(expr)                     \
    do {                              \
        lb_status st_ = (expr);       \
        if (st_ != LB_OK) return st_; \
    } while (0)

/* ---- the float linear: a plain GEMM and its two gradient GEMMs ------------ */

static lb_status float_linear_forward(lb_train_linear *L, const float *x, int N, float *y) {
    lb_train_matmul_forward(y, x, L->w, N, L->cols, L->rows);
    return LB_OK;
}

static lb_status float_linear_backward(lb_train_linear *L, const float *x, const float *dy, int N, float *dx) {
    lb_train_matmul_backward(dx, L->dw, dy, x, L->w, N, L->cols, L->rows);
    return LB_OK;
}

const lb_train_linear_ops lb_train_linear_float = {"float", float_linear_forward, float_linear_backward};

/* ---- layout ------------------------------------------------------------------ */

static const int linear_order[LB_N_LINEARS] = {LB_WQ, LB_WK, LB_WV, LB_WO, LB_W1, LB_W2, LB_W3};

static void add_tensor(lb_train_model *tm, const char *name, int64_t rows, int64_t cols, int decay) {
    lb_train_tensor *t = &tm->tensors[tm->n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->offset = tm->n_params;
    t->rows = rows;
    t->cols = cols;
    t->decay = decay;
    tm->n_params += (size_t)(rows * cols);
}

static void bind_view(lb_train_model *tm, float *base, lb_train_view *v) {
    const lb_config *c = &tm->cfg;
    int i = 0;
    v->tok_embd = base + tm->tensors[i++].offset;
    for (int l = 0; l < c->n_layers; l++) {
        lb_train_layer_view *L = &v->layers[l];
        L->attn_norm = base + tm->tensors[i++].offset;
        for (int j = 0; j < 4; j++) L->w[linear_order[j]] = base + tm->tensors[i++].offset;
        L->ffn_norm = base + tm->tensors[i++].offset;
        L->w[LB_W1] = base + tm->tensors[i++].offset;
        L->w[LB_W2] = base + tm->tensors[i++].offset;
        L->w[LB_W3] = base + tm->tensors[i++].offset;
    }
    v->out_norm = base + tm->tensors[i++].offset;
    v->output = tm->tied ? v->tok_embd : base + tm->tensors[i++].offset;
}

lb_status lb_train_model_create(const lb_config *cfg, int tied, lb_train_model **out) {
    *out = NULL;
    const lb_config *c = cfg;
    if (c->dim < 2 || c->n_heads < 1 || c->n_kv_heads < 1 || c->n_heads % c->n_kv_heads || c->head_dim < 2 ||
        c->head_dim % 2 || c->head_dim * c->n_heads != c->dim || c->hidden_dim < 1 || c->n_layers < 1 ||
        c->vocab_size < 2 || c->seq_len < 2)
        return lb_fail(LB_ERR_INVALID,
                       "cannot train this shape: dim %d, heads %d, kv heads %d, head_dim %d, hidden %d, layers %d, "
                       "vocab %d, context %d",
                       c->dim, c->n_heads, c->n_kv_heads, c->head_dim, c->hidden_dim, c->n_layers, c->vocab_size,
                       c->seq_len);
    lb_train_model *tm = lb_calloc(1, sizeof *tm);
    if (!tm) return LB_ERR_NOMEM;
    tm->cfg = *c;
    tm->tied = tied != 0;
    int n_max = 3 + 9 * c->n_layers;
    int64_t dim = c->dim, kv = (int64_t)c->head_dim * c->n_kv_heads, hid = c->hidden_dim;
    tm->tensors = lb_calloc((size_t)n_max, sizeof *tm->tensors);
    tm->p.layers = lb_calloc((size_t)c->n_layers, sizeof *tm->p.layers);
    tm->g.layers = lb_calloc((size_t)c->n_layers, sizeof *tm->g.layers);
    tm->linears = lb_calloc((size_t)c->n_layers * LB_N_LINEARS, sizeof *tm->linears);
    if (!tm->tensors || !tm->p.layers || !tm->g.layers || !tm->linears) goto nomem;
    char name[96];
    add_tensor(tm, "token_embd.weight", c->vocab_size, dim, 1);
    for (int l = 0; l < c->n_layers; l++) {
        const int64_t shape[LB_N_LINEARS][2] = {{dim, dim}, {kv, dim}, {kv, dim}, {dim, dim},
                                                {hid, dim}, {dim, hid}, {hid, dim}};
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
        add_tensor(tm, name, 1, dim, 0);
        for (int j = 0; j < 4; j++) {
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, lb_linear_name(linear_order[j]));
            add_tensor(tm, name, shape[linear_order[j]][0], shape[linear_order[j]][1], 1);
        }
        snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
        add_tensor(tm, name, 1, dim, 0);
        for (int j = 4; j < LB_N_LINEARS; j++) {
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, lb_linear_name(linear_order[j]));
            add_tensor(tm, name, shape[linear_order[j]][0], shape[linear_order[j]][1], 1);
        }
    }
    add_tensor(tm, "output_norm.weight", 1, dim, 0);
    if (!tm->tied) add_tensor(tm, "output.weight", c->vocab_size, dim, 1);
    tm->params = lb_calloc(tm->n_params, sizeof(float));
    tm->grads = lb_calloc(tm->n_params, sizeof(float));
    int half = c->head_dim / 2;
    tm->rope_cos = lb_alloc((size_t)c->seq_len * half * sizeof(float));
    tm->rope_sin = lb_alloc((size_t)c->seq_len * half * sizeof(float));
    if (!tm->params || !tm->grads || !tm->rope_cos || !tm->rope_sin) goto nomem;
    bind_view(tm, tm->params, &tm->p);
    bind_view(tm, tm->grads, &tm->g);
    for (int l = 0; l < c->n_layers; l++)
        for (int j = 0; j < LB_N_LINEARS; j++) {
            lb_train_linear *L = &tm->linears[(size_t)l * LB_N_LINEARS + j];
            const lb_train_tensor *t = NULL;
            for (int i = 0; i < tm->n_tensors && !t; i++)
                if (tm->params + tm->tensors[i].offset == tm->p.layers[l].w[j]) t = &tm->tensors[i];
            L->ops = &lb_train_linear_float;
            L->w = tm->p.layers[l].w[j];
            L->dw = tm->g.layers[l].w[j];
            L->rows = (int)t->rows;
            L->cols = (int)t->cols;
        }
    /* RoPE angles exactly as model.c computes them */
    for (int p = 0; p < c->seq_len; p++)
        for (int i = 0; i < half; i++) {
            float freq = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)c->head_dim);
            float val = (float)p * freq;
            tm->rope_cos[(size_t)p * half + i] = cosf(val);
            tm->rope_sin[(size_t)p * half + i] = sinf(val);
        }
    *out = tm;
    return LB_OK;
nomem:
    lb_train_model_free(tm);
    return lb_fail(LB_ERR_NOMEM, "out of memory for the trainable model");
}

lb_status lb_train_model_from_model(const lb_model *m, int dequantize, lb_train_model **out) {
    *out = NULL;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int j = 0; j < LB_N_LINEARS; j++)
            if (lb_linear_has_slots(&m->layers[l].linear[j]))
                return lb_fail(LB_ERR_UNSUPPORTED,
                               "layer %d's %s has slots (input scale, rotation, outliers, adapter, bias or activation "
                               "quantizer): the fp32 trainer takes a plain fp32 model",
                               l, lb_linear_name(j));
    lb_train_model *tm;
    TRY(lb_train_model_create(&m->cfg, m->tied_output, &tm));
    lb_model *mm = (lb_model *)m; /* lb_model_tensor_at takes a non-const model; nothing is changed */
    if (lb_model_n_tensors(mm) != tm->n_tensors) {
        lb_train_model_free(tm);
        return lb_fail(LB_ERR_INVALID, "the model lists %d tensors, the trainer %d", lb_model_n_tensors(mm),
                       tm->n_tensors);
    }
    for (int i = 0; i < tm->n_tensors; i++) {
        const lb_tensor *t = lb_model_tensor_at(mm, i);
        const lb_train_tensor *tt = &tm->tensors[i];
        if (t->spec.family != LB_FAMILY_F32 && !dequantize) {
            char spec[64];
            lb_qspec_format(&t->spec, spec, sizeof spec);
            lb_train_model_free(tm);
            return lb_fail(LB_ERR_UNSUPPORTED,
                           "tensor %s is stored as %s, not f32: the fp32 trainer takes an fp32 model (a quantized "
                           "base: --lora)",
                           t->name, spec);
        }
        if (t->rows * t->cols != tt->rows * tt->cols) {
            lb_train_model_free(tm);
            return lb_fail(LB_ERR_INVALID, "tensor %s has %lld x %lld values, the trainer expects %s of %lld x %lld",
                           t->name, (long long)t->rows, (long long)t->cols, tt->name, (long long)tt->rows,
                           (long long)tt->cols);
        }
        if (t->spec.family == LB_FAMILY_F32) {
            memcpy(tm->params + tt->offset, t->data, (size_t)(tt->rows * tt->cols) * sizeof(float));
        } else {
            lb_status st = lb_dequantize(t, tm->params + tt->offset);
            if (st != LB_OK) {
                lb_train_model_free(tm);
                return lb_fail_context(st, "dequantizing %s", t->name);
            }
        }
    }
    /* the model's own table, so the training forward rotates bit for bit as inference does */
    size_t rope = (size_t)m->cfg.seq_len * (size_t)(m->cfg.head_dim / 2) * sizeof(float);
    memcpy(tm->rope_cos, m->rope_cos, rope);
    memcpy(tm->rope_sin, m->rope_sin, rope);
    *out = tm;
    return LB_OK;
}

void lb_train_model_init_random(lb_train_model *tm, uint64_t seed, float std) {
    lb_rng rng;
    lb_rng_seed(&rng, seed);
    for (int i = 0; i < tm->n_tensors; i++) {
        const lb_train_tensor *t = &tm->tensors[i];
        float *p = tm->params + t->offset;
        size_t n = (size_t)(t->rows * t->cols);
        for (size_t j = 0; j < n; j++) p[j] = t->decay ? (float)(std * lb_rng_normal(&rng)) : 1.0f;
    }
}

lb_status lb_train_model_store(const lb_train_model *tm, lb_model *m) {
    if (lb_model_n_tensors(m) != tm->n_tensors || m->cfg.dim != tm->cfg.dim || m->cfg.n_layers != tm->cfg.n_layers)
        return lb_fail(LB_ERR_INVALID, "the model's shape is not the trained one");
    for (int i = 0; i < tm->n_tensors; i++) {
        const lb_train_tensor *tt = &tm->tensors[i];
        size_t bytes = (size_t)(tt->rows * tt->cols) * sizeof(float);
        uint8_t *data = lb_alloc(bytes);
        if (!data) return lb_fail(LB_ERR_NOMEM, "out of memory storing %s", tt->name);
        memcpy(data, tm->params + tt->offset, bytes);
        lb_tensor *t = lb_model_tensor_at(m, i);
        lb_tensor nt;
        lb_tensor_wrap_f32(&nt, t->name, (const float *)data, t->rows, t->cols);
        nt.owned = data;
        lb_status st = lb_tensor_resolve(&nt);
        if (st != LB_OK) {
            lb_free(data);
            return st;
        }
        lb_tensor_free(t);
        *t = nt;
    }
    return LB_OK;
}

static void acts_free(lb_train_acts *a) {
    float **f[] = {&a->x, &a->x_mid, &a->xn1, &a->xn2, &a->rstd1, &a->rstd2, &a->q, &a->k, &a->v, &a->att,
                   &a->ao, &a->g, &a->u, &a->h, &a->xnf, &a->rstdf, &a->logits, &a->dx, &a->dxn, &a->dq,
                   &a->dk, &a->dv, &a->dao, &a->dg, &a->du, &a->dh};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        lb_free(*f[i]);
        *f[i] = NULL;
    }
    lb_free(a->inputs);
    lb_free(a->targets);
    lb_free(a->row_nll);
    memset(a, 0, sizeof *a);
}

void lb_train_model_free(lb_train_model *tm) {
    if (!tm) return;
    lb_qat_free(tm->qat);
    lb_lora_free(tm->lora);
    lb_train_extra_alloc(tm, 0, "");
    acts_free(&tm->acts);
    lb_free(tm->tensors);
    lb_free(tm->p.layers);
    lb_free(tm->g.layers);
    lb_free(tm->linears);
    lb_free(tm->params);
    lb_free(tm->grads);
    lb_free(tm->rope_cos);
    lb_free(tm->rope_sin);
    lb_free(tm);
}

/* Sized for B x T on first use and whenever B x T changes. */
static lb_status acts_ensure(lb_train_model *tm, int B, int T) {
    lb_train_acts *a = &tm->acts;
    if (a->B == B && a->T == T) return LB_OK;
    acts_free(a);
    const lb_config *c = &tm->cfg;
    size_t N = (size_t)B * T, L = (size_t)c->n_layers, dim = (size_t)c->dim, hid = (size_t)c->hidden_dim;
    size_t kv = (size_t)c->head_dim * c->n_kv_heads, V = (size_t)c->vocab_size;
    struct {
        float **p;
        size_t n;
    } f[] = {{&a->x, (L + 1) * N * dim}, {&a->x_mid, L * N * dim}, {&a->xn1, L * N * dim}, {&a->xn2, L * N * dim},
             {&a->rstd1, L * N}, {&a->rstd2, L * N}, {&a->q, L * N * dim}, {&a->k, L * N * kv},
             {&a->v, L * N * kv}, {&a->att, L * (size_t)B * c->n_heads * T * T}, {&a->ao, L * N * dim},
             {&a->g, L * N * hid}, {&a->u, L * N * hid}, {&a->h, L * N * hid}, {&a->xnf, N * dim},
             {&a->rstdf, N}, {&a->logits, N * V}, {&a->dx, N * dim}, {&a->dxn, N * dim}, {&a->dq, N * dim},
             {&a->dk, N * kv}, {&a->dv, N * kv}, {&a->dao, N * dim}, {&a->dg, N * hid}, {&a->du, N * hid},
             {&a->dh, N * hid}};
    size_t bytes = 0;
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        *f[i].p = lb_alloc(f[i].n * sizeof(float));
        bytes += f[i].n * sizeof(float);
        if (!*f[i].p) goto nomem;
    }
    a->inputs = lb_alloc(N * sizeof(int));
    a->targets = lb_alloc(N * sizeof(int));
    a->row_nll = lb_alloc(N * sizeof(double));
    if (!a->inputs || !a->targets || !a->row_nll) goto nomem;
    a->bytes = bytes + N * (2 * sizeof(int) + sizeof(double));
    a->B = B;
    a->T = T;
    return LB_OK;
nomem:
    acts_free(a);
    return lb_fail(LB_ERR_NOMEM, "out of memory for the activations of %d x %d positions (%.1f MB and more)", B, T,
                   (double)bytes / 1e6);
}

size_t lb_train_model_bytes(const lb_train_model *tm) { return 2 * tm->n_params * sizeof(float) + tm->acts.bytes; }

void lb_train_model_zero_grad(lb_train_model *tm) {
    memset(tm->grads, 0, tm->n_params * sizeof(float));
    if (tm->extra.n) memset(tm->extra.grads, 0, tm->extra.n * sizeof(float));
}

lb_status lb_train_extra_alloc(lb_train_model *tm, size_t n, const char *name) {
    lb_train_extra *e = &tm->extra;
    lb_free(e->params);
    lb_free(e->grads);
    memset(e, 0, sizeof *e);
    if (!n) return LB_OK;
    e->params = lb_calloc(n, sizeof(float));
    e->grads = lb_calloc(n, sizeof(float));
    if (!e->params || !e->grads) {
        lb_free(e->params);
        lb_free(e->grads);
        memset(e, 0, sizeof *e);
        return lb_fail(LB_ERR_NOMEM, "out of memory for %zu parameters (%s)", n, name);
    }
    e->n = n;
    snprintf(e->tensor.name, sizeof e->tensor.name, "%s", name);
    e->tensor.rows = 1;
    e->tensor.cols = (int64_t)n;
    e->tensor.decay = 0;
    return LB_OK;
}

/* ---- forward ---------------------------------------------------------------- */

lb_status lb_train_model_forward(lb_train_model *tm, const int *inputs, const int *targets, int B, int T,
                                 double *loss) {
    const lb_config *c = &tm->cfg;
    tm->have_loss = 0;
    if (B < 1 || T < 1 || T > c->seq_len)
        return lb_fail(LB_ERR_INVALID, "a training batch is B >= 1 sequences of 1..%d tokens, not %d x %d", c->seq_len,
                       B, T);
    size_t N = (size_t)B * T;
    for (size_t i = 0; i < N; i++) {
        if (inputs[i] < 0 || inputs[i] >= c->vocab_size)
            return lb_fail(LB_ERR_INVALID, "input token %d (sequence %zu, position %zu) is outside the vocabulary (0..%d)",
                           inputs[i], i / T, i % T, c->vocab_size - 1);
        if (targets && targets[i] >= c->vocab_size)
            return lb_fail(LB_ERR_INVALID, "target token %d (sequence %zu, position %zu) is outside the vocabulary",
                           targets[i], i / T, i % T);
    }
    TRY(acts_ensure(tm, B, T));
    lb_train_acts *a = &tm->acts;
    size_t dim = (size_t)c->dim, kv = (size_t)c->head_dim * c->n_kv_heads, hid = (size_t)c->hidden_dim;
    int n = (int)N;
    memcpy(a->inputs, inputs, N * sizeof(int));
    lb_train_embedding_forward(a->x, inputs, n, tm->p.tok_embd, c->dim);
    for (int l = 0; l < c->n_layers; l++) {
        const lb_train_layer_view *P = &tm->p.layers[l];
        lb_train_linear *lin = &tm->linears[(size_t)l * LB_N_LINEARS];
        float *x = a->x + l * N * dim, *x_mid = a->x_mid + l * N * dim, *x_out = a->x + (l + 1) * N * dim;
        float *xn1 = a->xn1 + l * N * dim, *xn2 = a->xn2 + l * N * dim, *q = a->q + l * N * dim;
        float *k = a->k + l * N * kv, *v = a->v + l * N * kv, *ao = a->ao + l * N * dim;
        float *att = a->att + (size_t)l * B * c->n_heads * T * T;
        float *g = a->g + l * N * hid, *u = a->u + l * N * hid, *h = a->h + l * N * hid;
        /* attention: x_mid = x + wo(attention(rope(wq xn1), rope(wk xn1), wv xn1)) */
        lb_train_rmsnorm_forward(xn1, a->rstd1 + l * N, x, P->attn_norm, n, c->dim, c->norm_eps);
        TRY(lin[LB_WQ].ops->forward(&lin[LB_WQ], xn1, n, q));
        TRY(lin[LB_WK].ops->forward(&lin[LB_WK], xn1, n, k));
        TRY(lin[LB_WV].ops->forward(&lin[LB_WV], xn1, n, v));
        lb_train_rope_forward(q, k, B, T, c->dim, (int)kv, c->head_dim, tm->rope_cos, tm->rope_sin);
        lb_train_attention_forward(ao, att, q, k, v, B, T, c->n_heads, c->n_kv_heads, c->head_dim);
        TRY(lin[LB_WO].ops->forward(&lin[LB_WO], ao, n, x_mid));
        for (size_t j = 0; j < N * dim; j++) x_mid[j] += x[j];
        /* MLP: x_out = x_mid + w2(silu(w1 xn2) * w3 xn2) */
        lb_train_rmsnorm_forward(xn2, a->rstd2 + l * N, x_mid, P->ffn_norm, n, c->dim, c->norm_eps);
        TRY(lin[LB_W1].ops->forward(&lin[LB_W1], xn2, n, g));
        TRY(lin[LB_W3].ops->forward(&lin[LB_W3], xn2, n, u));
        lb_train_swiglu_forward(h, g, u, N * hid);
        TRY(lin[LB_W2].ops->forward(&lin[LB_W2], h, n, x_out));
        for (size_t j = 0; j < N * dim; j++) x_out[j] += x_mid[j];
    }
    lb_train_rmsnorm_forward(a->xnf, a->rstdf, a->x + (size_t)c->n_layers * N * dim, tm->p.out_norm, n, c->dim,
                             c->norm_eps);
    lb_train_matmul_forward(a->logits, a->xnf, tm->p.output, n, c->dim, c->vocab_size);
    if (!targets) return LB_OK;
    memcpy(a->targets, targets, N * sizeof(int));
    double sum = lb_train_cross_entropy_forward(a->logits, a->row_nll, targets, n, c->vocab_size, &tm->scored);
    if (tm->scored == 0) return lb_fail(LB_ERR_INVALID, "no target is scored (all negative)");
    if (loss) *loss = sum / tm->scored;
    if (!isfinite(sum)) return lb_fail(LB_ERR_NUMERIC, "the training loss is not finite (%g)", sum);
    tm->have_loss = 1;
    return LB_OK;
}

/* ---- backward --------------------------------------------------------------- */

lb_status lb_train_model_backward(lb_train_model *tm) {
    if (!tm->have_loss) return lb_fail(LB_ERR_INVALID, "backward needs a forward with targets first");
    lb_train_acts *a = &tm->acts;
    tm->have_loss = 0; /* the probabilities become their gradient */
    lb_train_cross_entropy_backward(a->logits, a->logits, a->targets, a->B * a->T, tm->cfg.vocab_size,
                                    1.0f / (float)tm->scored);
    return lb_train_model_backward_from(tm, NULL);
}

lb_status lb_train_model_backward_from(lb_train_model *tm, const float *dxnf) {
    const lb_config *c = &tm->cfg;
    lb_train_acts *a = &tm->acts;
    if (a->B < 1) return lb_fail(LB_ERR_INVALID, "backward needs a forward first");
    int B = a->B, T = a->T, n = B * T;
    size_t N = (size_t)n, dim = (size_t)c->dim, kv = (size_t)c->head_dim * c->n_kv_heads, hid = (size_t)c->hidden_dim;
    /* classifier and final norm: dx = d(final residual); a loss on the
     * normalized final hidden state (distillation's MSE) starts in dxn */
    if (dxnf) memcpy(a->dxn, dxnf, N * dim * sizeof(float));
    else memset(a->dxn, 0, N * dim * sizeof(float));
    /* a frozen model (LoRA's, e2eqp's) needs only the gradients flowing to
     * its linears' extra parameters: no classifier, norm or embedding weight
     * gradients (they stay 0) */
    int fz = tm->frozen;
    lb_train_matmul_backward(a->dxn, fz ? NULL : tm->g.output, a->logits, a->xnf, tm->p.output, n, c->dim,
                             c->vocab_size);
    memset(a->dx, 0, N * dim * sizeof(float));
    lb_train_rmsnorm_backward(a->dx, fz ? NULL : tm->g.out_norm, a->dxn, a->x + (size_t)c->n_layers * N * dim, tm->p.out_norm,
                              a->rstdf, n, c->dim);
    for (int l = c->n_layers - 1; l >= 0; l--) {
        const lb_train_layer_view *P = &tm->p.layers[l];
        lb_train_layer_view *G = &tm->g.layers[l];
        lb_train_linear *lin = &tm->linears[(size_t)l * LB_N_LINEARS];
        float *x = a->x + l * N * dim, *x_mid = a->x_mid + l * N * dim;
        float *xn1 = a->xn1 + l * N * dim, *xn2 = a->xn2 + l * N * dim, *q = a->q + l * N * dim;
        float *k = a->k + l * N * kv, *v = a->v + l * N * kv, *ao = a->ao + l * N * dim;
        float *att = a->att + (size_t)l * B * c->n_heads * T * T;
        float *g = a->g + l * N * hid, *u = a->u + l * N * hid, *h = a->h + l * N * hid;
        /* MLP; dx holds d(x_out), which the residual passes to x_mid unchanged */
        memset(a->dh, 0, N * hid * sizeof(float));
        TRY(lin[LB_W2].ops->backward(&lin[LB_W2], h, a->dx, n, a->dh));
        memset(a->dg, 0, N * hid * sizeof(float));
        memset(a->du, 0, N * hid * sizeof(float));
        lb_train_swiglu_backward(a->dg, a->du, a->dh, g, u, N * hid);
        memset(a->dxn, 0, N * dim * sizeof(float));
        TRY(lin[LB_W1].ops->backward(&lin[LB_W1], xn2, a->dg, n, a->dxn));
        TRY(lin[LB_W3].ops->backward(&lin[LB_W3], xn2, a->du, n, a->dxn));
        lb_train_rmsnorm_backward(a->dx, fz ? NULL : G->ffn_norm, a->dxn, x_mid, P->ffn_norm, a->rstd2 + l * N, n, c->dim);
        /* attention; dx now holds d(x_mid), passed to x by the residual */
        memset(a->dao, 0, N * dim * sizeof(float));
        TRY(lin[LB_WO].ops->backward(&lin[LB_WO], ao, a->dx, n, a->dao));
        memset(a->dq, 0, N * dim * sizeof(float));
        memset(a->dk, 0, N * kv * sizeof(float));
        memset(a->dv, 0, N * kv * sizeof(float));
        TRY(lb_train_attention_backward(a->dq, a->dk, a->dv, a->dao, q, k, v, att, B, T, c->n_heads, c->n_kv_heads,
                                        c->head_dim));
        lb_train_rope_backward(a->dq, a->dk, B, T, c->dim, (int)kv, c->head_dim, tm->rope_cos, tm->rope_sin);
        memset(a->dxn, 0, N * dim * sizeof(float));
        TRY(lin[LB_WQ].ops->backward(&lin[LB_WQ], xn1, a->dq, n, a->dxn));
        TRY(lin[LB_WK].ops->backward(&lin[LB_WK], xn1, a->dk, n, a->dxn));
        TRY(lin[LB_WV].ops->backward(&lin[LB_WV], xn1, a->dv, n, a->dxn));
        lb_train_rmsnorm_backward(a->dx, fz ? NULL : G->attn_norm, a->dxn, x, P->attn_norm, a->rstd1 + l * N, n, c->dim);
    }
    if (!fz) lb_train_embedding_backward(tm->g.tok_embd, a->dx, a->inputs, n, c->dim);
    return LB_OK;
}
