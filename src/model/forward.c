/* The Llama forward pass in fp32, a batch of consecutive positions at a
 * time (prompt processing and perplexity run whole sequences as one batch;
 * generation runs one token), as three steps: embed, one block per layer,
 * head. Every linear goes through lb_linear_forward, which applies the
 * linear's slots and dispatches the weight on its format; linears reading
 * the same input share an lb_act_cache. Arithmetic follows llama2.c's run.c
 * (float accumulation, RoPE on consecutive pairs). */
#include <math.h>
#include <string.h>

#include "core/mapped.h"
#include "kernels/kernels.h"
#include "kernels/nn.h"
#include "model/model_internal.h"

struct lb_state {
    int max_batch;
    float *x;      /* (batch, dim) residual stream */
    float *xb;     /* (batch, dim) normalized input, then attention output */
    float *xb2;    /* (batch, dim) */
    float *q;      /* (batch, dim) */
    float *k, *v;  /* (batch, kv_dim) */
    float *hb;     /* (batch, hidden) */
    float *hb2;    /* (batch, hidden) */
    float *key_cache;   /* (layer, kv_head, head_dim, seq_len): transposed, see attention() */
    float *value_cache; /* (layer, seq_len, kv_dim) */
    float *logits; /* (vocab) of the last position */
    lb_act_cache *cache_attn; /* prepared forms of xb for q, k, v; then of the attention output for wo */
    lb_act_cache *cache_mlp;  /* of xb for gate, up; then of hb for down; of the final norm for the classifier */
    lb_linear_observer observer;
    void *observer_user;
    int release; /* lb_forward gives back each block's mapped pages once it ran */
};

lb_status lb_state_create(const lb_model *m, int max_batch, lb_state **out) {
    *out = NULL;
    const lb_config *c = &m->cfg;
    if (max_batch < 1) max_batch = 1;
    if (max_batch > c->seq_len) max_batch = c->seq_len;
    size_t b = (size_t)max_batch, kv_dim = (size_t)(c->head_dim * c->n_kv_heads);
    size_t cache = (size_t)c->n_layers * (size_t)c->seq_len * kv_dim;
    lb_state *s = lb_calloc(1, sizeof *s);
    if (!s) return LB_ERR_NOMEM;
    s->max_batch = max_batch;
    s->x = lb_calloc(b * (size_t)c->dim, sizeof(float));
    s->xb = lb_calloc(b * (size_t)c->dim, sizeof(float));
    s->xb2 = lb_calloc(b * (size_t)c->dim, sizeof(float));
    s->q = lb_calloc(b * (size_t)c->dim, sizeof(float));
    s->k = lb_calloc(b * kv_dim, sizeof(float));
    s->v = lb_calloc(b * kv_dim, sizeof(float));
    s->hb = lb_calloc(b * (size_t)c->hidden_dim, sizeof(float));
    s->hb2 = lb_calloc(b * (size_t)c->hidden_dim, sizeof(float));
    s->key_cache = lb_calloc(cache, sizeof(float));
    s->value_cache = lb_calloc(cache, sizeof(float));
    s->logits = lb_calloc((size_t)c->vocab_size, sizeof(float));
    int widest = c->dim > c->hidden_dim ? c->dim : c->hidden_dim;
    if (!s->x || !s->xb || !s->xb2 || !s->q || !s->k || !s->v || !s->hb || !s->hb2 || !s->key_cache ||
        !s->value_cache || !s->logits || lb_act_cache_create(max_batch, widest, &s->cache_attn) != LB_OK ||
        lb_act_cache_create(max_batch, widest, &s->cache_mlp) != LB_OK) {
        lb_state_free(s);
        return lb_fail(LB_ERR_NOMEM, "out of memory for the forward state (batch %d, context %d)", max_batch,
                       c->seq_len);
    }
    *out = s;
    return LB_OK;
}

void lb_state_free(lb_state *s) {
    if (!s) return;
    lb_free(s->x);
    lb_free(s->xb);
    lb_free(s->xb2);
    lb_free(s->q);
    lb_free(s->k);
    lb_free(s->v);
    lb_free(s->hb);
    lb_free(s->hb2);
    lb_free(s->key_cache);
    lb_free(s->value_cache);
    lb_free(s->logits);
    lb_act_cache_free(s->cache_attn);
    lb_act_cache_free(s->cache_mlp);
    lb_free(s);
}

const float *lb_state_logits(const lb_state *s) { return s->logits; }

void lb_state_set_observer(lb_state *s, lb_linear_observer fn, void *user) {
    s->observer = fn;
    s->observer_user = fn ? user : NULL;
}

/* Causal grouped-query attention of the n new positions pos..pos+n-1 over
 * the cache: xb[i] = sum_t softmax(q_i . k_t / sqrt(hd)) v_t, t <= pos + i.
 * Keys are cached transposed (per head, one row per dimension over time) so
 * the kernel's inner loops run over contiguous memory without a reduction:
 * scores accumulate q[d] * K[d][0..p], outputs accumulate att[t] * V[t][0..hd]. */
static lb_status attention(const lb_model *m, lb_state *s, int l, int n, int pos) {
    const lb_config *c = &m->cfg;
    int hd = c->head_dim, kv_dim = hd * c->n_kv_heads, group = c->n_heads / c->n_kv_heads, T = c->seq_len;
    const float *kc = s->key_cache + (size_t)l * T * kv_dim;
    const float *vc = s->value_cache + (size_t)l * T * kv_dim;
    float scale = 1.0f / sqrtf((float)hd);
    const lb_kernel_table *k = lb_kernels();
    int failed = 0;
#pragma omp parallel if ((long)n * (pos + n) * c->dim > 65536)
    {
        float *att = lb_alloc((size_t)(pos + n) * sizeof(float));
#pragma omp for schedule(static)
        for (int ih = 0; ih < n * c->n_heads; ih++) {
            int i = ih / c->n_heads, h = ih % c->n_heads, p = pos + i;
            const float *q = s->q + (size_t)i * c->dim + (size_t)h * hd;
            const float *kh = kc + (size_t)(h / group) * hd * T;
            float *o = s->xb + (size_t)i * c->dim + (size_t)h * hd;
            if (!att) { /* lb_fail here would set a worker thread's message: report below */
#pragma omp atomic write
                failed = 1;
                continue;
            }
            k->attend(q, kh, (size_t)T, vc + (size_t)(h / group) * hd, (size_t)kv_dim, p + 1, hd, scale, att, o);
        }
        lb_free(att);
    }
    return failed ? lb_fail(LB_ERR_NOMEM, "out of memory for attention scores") : LB_OK;
}

#define TRY(expr)                          \
    do {                                   \
        lb_status st_ = (expr);            \
        if (st_ != LB_OK) return st_;      \
    } while (0)

/* One linear of a block: shows its input to the observer, then runs it. */
static lb_status block_linear(const lb_model *m, lb_state *s, int l, int which, const float *x, int n, float *y,
                              lb_act_cache *cache) {
    const lb_linear *L = &m->layers[l].linear[which];
    if (s->observer) TRY(s->observer(s->observer_user, l, which, x, n, (int)L->w.cols));
    return lb_linear_forward(L, x, n, y, cache);
}

lb_status lb_forward_embed(const lb_model *m, const int *tokens, int n, float *x) {
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= m->cfg.vocab_size)
            return lb_fail(LB_ERR_INVALID, "token id %d (input %d) is outside the vocabulary (0..%d)", tokens[i], i,
                           m->cfg.vocab_size - 1);
    for (int i = 0; i < n; i++) lb_dequantize_row(&m->tok_embd, tokens[i], x + (size_t)i * m->cfg.dim);
    return LB_OK;
}

lb_status lb_forward_block(const lb_model *m, lb_state *s, int l, float *x, int n, int pos) {
    const lb_config *c = &m->cfg;
    if (l < 0 || l >= c->n_layers) return lb_fail(LB_ERR_INVALID, "layer %d of a %d-layer model", l, c->n_layers);
    if (n < 1 || n > s->max_batch)
        return lb_fail(LB_ERR_INVALID, "a block runs 1..%d positions at once (the state's batch), not %d", s->max_batch, n);
    if (pos < 0 || pos > c->seq_len - n)
        return lb_fail(LB_ERR_INVALID, "positions %d..%d exceed the model's context of %d tokens", pos, pos + n - 1,
                       c->seq_len);
    int dim = c->dim, kv_dim = c->head_dim * c->n_kv_heads, hidden = c->hidden_dim;
    const lb_layer *L = &m->layers[l];

    /* attention: x += wo(attention(rope(wq xn), rope(wk xn), wv xn)), xn = rmsnorm(x) */
    lb_rmsnorm_forward(s->xb, x, (const float *)L->attn_norm.data, n, dim, c->norm_eps);
    lb_act_cache_reset(s->cache_attn);
    TRY(block_linear(m, s, l, LB_WQ, s->xb, n, s->q, s->cache_attn));
    TRY(block_linear(m, s, l, LB_WK, s->xb, n, s->k, s->cache_attn));
    TRY(block_linear(m, s, l, LB_WV, s->xb, n, s->v, s->cache_attn));
    lb_rope_forward(s->q, s->k, n, dim, kv_dim, c->head_dim, pos, m->rope_cos, m->rope_sin);
    float *kc = s->key_cache + (size_t)l * c->seq_len * kv_dim, *vc = s->value_cache + (size_t)l * c->seq_len * kv_dim;
    for (int i = 0; i < n; i++) {
        const float *k = s->k + (size_t)i * kv_dim;
        /* element j of k is (head j / hd, dim j % hd): row j of the transposed cache */
        for (int j = 0; j < kv_dim; j++) kc[(size_t)j * c->seq_len + pos + i] = k[j];
        memcpy(vc + (size_t)(pos + i) * kv_dim, s->v + (size_t)i * kv_dim, (size_t)kv_dim * sizeof(float));
    }
    TRY(attention(m, s, l, n, pos)); /* -> xb */
    lb_act_cache_reset(s->cache_attn);
    TRY(block_linear(m, s, l, LB_WO, s->xb, n, s->xb2, s->cache_attn));
    for (size_t j = 0; j < (size_t)n * dim; j++) x[j] += s->xb2[j];

    /* MLP: x += w2(silu(w1 xn) * w3 xn), xn = rmsnorm(x) */
    lb_rmsnorm_forward(s->xb, x, (const float *)L->ffn_norm.data, n, dim, c->norm_eps);
    lb_act_cache_reset(s->cache_mlp);
    TRY(block_linear(m, s, l, LB_W1, s->xb, n, s->hb, s->cache_mlp));
    TRY(block_linear(m, s, l, LB_W3, s->xb, n, s->hb2, s->cache_mlp));
    lb_kernels()->silu_mul(s->hb, s->hb2, (size_t)n * hidden);
    lb_act_cache_reset(s->cache_mlp);
    TRY(block_linear(m, s, l, LB_W2, s->hb, n, s->xb, s->cache_mlp));
    for (size_t j = 0; j < (size_t)n * dim; j++) x[j] += s->xb[j];
    return LB_OK;
}

void lb_state_set_release(lb_state *s, int on) { s->release = on != 0; }

void lb_model_release_layer(const lb_model *m, int l) {
    const lb_layer *L = &m->layers[l];
    lb_map_release(L->attn_norm.data, L->attn_norm.nbytes);
    lb_map_release(L->ffn_norm.data, L->ffn_norm.nbytes);
    for (int w = 0; w < LB_N_LINEARS; w++) lb_map_release(L->linear[w].w.data, L->linear[w].w.nbytes);
}

lb_status lb_forward_head(const lb_model *m, lb_state *s, const float *x, int n, float *logits) {
    const lb_config *c = &m->cfg;
    if (n < 1 || n > s->max_batch)
        return lb_fail(LB_ERR_INVALID, "the head runs 1..%d rows at once (the state's batch), not %d", s->max_batch, n);
    int dim = c->dim;
    const float *out_norm = (const float *)m->out_norm.data;
    const lb_tensor *cls = lb_model_classifier(m);
    lb_act_cache_reset(s->cache_mlp);
    if (logits) {
        lb_rmsnorm_forward(s->xb, x, out_norm, n, dim, c->norm_eps);
        TRY(lb_matmul(cls, s->xb, n, logits, s->cache_mlp));
        memcpy(s->logits, logits + (size_t)(n - 1) * c->vocab_size, (size_t)c->vocab_size * sizeof(float));
    } else {
        lb_rmsnorm_forward(s->xb, x + (size_t)(n - 1) * dim, out_norm, 1, dim, c->norm_eps);
        TRY(lb_matmul(cls, s->xb, 1, s->logits, s->cache_mlp));
    }
    return LB_OK;
}

lb_status lb_forward(const lb_model *m, lb_state *s, const int *tokens, int n, int pos, float *logits) {
    const lb_config *c = &m->cfg;
    if (n < 1) return lb_fail(LB_ERR_INVALID, "nothing to run: %d tokens", n);
    if (pos < 0 || pos > c->seq_len - n)
        return lb_fail(LB_ERR_INVALID, "positions %d..%d exceed the model's context of %d tokens", pos, pos + n - 1,
                       c->seq_len);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return lb_fail(LB_ERR_INVALID, "token id %d at position %d is outside the vocabulary (0..%d)", tokens[i],
                           pos + i, c->vocab_size - 1);
    for (int done = 0; done < n;) {
        int chunk = n - done < s->max_batch ? n - done : s->max_batch, p = pos + done;
        TRY(lb_forward_embed(m, tokens + done, chunk, s->x));
        if (s->release) lb_map_release(m->tok_embd.data, m->tok_embd.nbytes);
        for (int l = 0; l < c->n_layers; l++) {
            TRY(lb_forward_block(m, s, l, s->x, chunk, p));
            if (s->release) lb_model_release_layer(m, l);
        }
        TRY(lb_forward_head(m, s, s->x, chunk, logits ? logits + (size_t)done * c->vocab_size : NULL));
        if (s->release) {
            const lb_tensor *cls = lb_model_classifier(m);
            lb_map_release(cls->data, cls->nbytes);
            lb_map_release(m->out_norm.data, m->out_norm.nbytes);
        }
        done += chunk;
    }
    return LB_OK;
}
