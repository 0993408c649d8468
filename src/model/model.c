/* The model container: tensor names and shapes from the config, iteration,
 * sizes, and the RoPE table. Loading and saving live in io/. */
#include "model/model_internal.h"

#include <math.h>
#include <string.h>

static const char *linear_names[LB_N_LINEARS] = {"attn_q",   "attn_k",   "attn_v", "attn_output",
                                                 "ffn_gate", "ffn_down", "ffn_up"};

const char *lb_linear_name(int which) { return which >= 0 && which < LB_N_LINEARS ? linear_names[which] : "?"; }

lb_status lb_config_validate(const lb_config *c) {
    if (c->dim < 1 || c->dim > 65536) return lb_fail(LB_ERR_FORMAT, "absurd model width dim=%d", c->dim);
    if (c->hidden_dim < 1 || c->hidden_dim > (1 << 18))
        return lb_fail(LB_ERR_FORMAT, "absurd MLP width hidden_dim=%d", c->hidden_dim);
    if (c->n_layers < 1 || c->n_layers > 4096) return lb_fail(LB_ERR_FORMAT, "absurd layer count n_layers=%d", c->n_layers);
    if (c->n_heads < 1 || c->n_heads > 4096 || c->dim % c->n_heads)
        return lb_fail(LB_ERR_FORMAT, "n_heads=%d does not divide dim=%d", c->n_heads, c->dim);
    if ((c->dim / c->n_heads) % 2)
        return lb_fail(LB_ERR_FORMAT, "head size %d is odd (RoPE rotates pairs)", c->dim / c->n_heads);
    if (c->n_kv_heads < 1 || c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads)
        return lb_fail(LB_ERR_FORMAT, "n_kv_heads=%d does not divide n_heads=%d", c->n_kv_heads, c->n_heads);
    if (c->vocab_size < 3 || c->vocab_size > (1 << 22))
        return lb_fail(LB_ERR_FORMAT, "absurd vocabulary size %d", c->vocab_size);
    if (c->seq_len < 1 || c->seq_len > (1 << 22)) return lb_fail(LB_ERR_FORMAT, "absurd context length %d", c->seq_len);
    if (!(c->norm_eps > 0 && c->norm_eps < 1)) return lb_fail(LB_ERR_FORMAT, "absurd RMSNorm epsilon %g", (double)c->norm_eps);
    if (!(c->rope_theta > 1 && c->rope_theta < 1e12)) return lb_fail(LB_ERR_FORMAT, "absurd RoPE base %g", (double)c->rope_theta);
    /* total weights must stay addressable */
    double weights = (double)c->n_layers * ((double)c->dim * c->dim * 2 + 2.0 * c->dim * c->dim / c->n_heads * c->n_kv_heads +
                                            3.0 * c->dim * c->hidden_dim) + 2.0 * c->vocab_size * c->dim;
    if (weights > 1e12) return lb_fail(LB_ERR_FORMAT, "model of %.3g weights is too large", weights);
    return LB_OK;
}

static void shape(lb_tensor *t, const char *name, int64_t rows, int64_t cols) {
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->spec.family = LB_FAMILY_F32;
    t->spec.bits = 32;
    t->rows = rows;
    t->cols = cols;
}

lb_status lb_model_alloc(const lb_config *c, int tied_output, lb_model **out) {
    *out = NULL;
    lb_status st = lb_config_validate(c);
    if (st != LB_OK) return st;
    lb_model *m = lb_calloc(1, sizeof *m);
    if (!m) return LB_ERR_NOMEM;
    m->cfg = *c;
    m->cfg.head_dim = c->dim / c->n_heads;
    m->tied_output = tied_output;
    m->layers = lb_calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers) {
        lb_free(m);
        return LB_ERR_NOMEM;
    }
    int kv_dim = c->dim / c->n_heads * c->n_kv_heads;
    shape(&m->tok_embd, "token_embd.weight", c->vocab_size, c->dim);
    shape(&m->out_norm, "output_norm.weight", 1, c->dim);
    shape(&m->output, "output.weight", c->vocab_size, c->dim);
    const int64_t lin_shape[LB_N_LINEARS][2] = {{c->dim, c->dim},        {kv_dim, c->dim},        {kv_dim, c->dim},
                                               {c->dim, c->dim},        {c->hidden_dim, c->dim}, {c->dim, c->hidden_dim},
                                               {c->hidden_dim, c->dim}};
    for (int l = 0; l < c->n_layers; l++) {
        char name[96];
        lb_layer *L = &m->layers[l];
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
        shape(&L->attn_norm, name, 1, c->dim);
        snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
        shape(&L->ffn_norm, name, 1, c->dim);
        for (int i = 0; i < LB_N_LINEARS; i++) {
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, linear_names[i]);
            shape(&L->linear[i].w, name, lin_shape[i][0], lin_shape[i][1]);
        }
    }
    *out = m;
    return LB_OK;
}

int lb_model_n_tensors(const lb_model *m) { return 2 + 9 * m->cfg.n_layers + (m->tied_output ? 0 : 1); }

/* Order: token_embd, per layer attn_norm q k v o ffn_norm gate down up,
 * output_norm, output. */
lb_tensor *lb_model_tensor_at(lb_model *m, int i) {
    if (i < 0 || i >= lb_model_n_tensors(m)) return NULL;
    if (i == 0) return &m->tok_embd;
    i--;
    if (i < 9 * m->cfg.n_layers) {
        lb_layer *L = &m->layers[i / 9];
        int slot = i % 9;
        if (slot == 0) return &L->attn_norm;
        if (slot <= 4) return &L->linear[slot - 1].w;
        if (slot == 5) return &L->ffn_norm;
        return &L->linear[slot - 2].w;
    }
    i -= 9 * m->cfg.n_layers;
    return i == 0 ? &m->out_norm : &m->output;
}

const lb_tensor *lb_model_classifier(const lb_model *m) { return m->tied_output ? &m->tok_embd : &m->output; }

lb_status lb_model_finish(lb_model *m) {
    for (int i = 0; i < lb_model_n_tensors(m); i++) {
        lb_tensor *t = lb_model_tensor_at(m, i);
        if (!t->data) return lb_fail(LB_ERR_FORMAT, "tensor '%s' is missing", t->name);
        lb_status st = lb_tensor_resolve(t);
        if (st != LB_OK) return st;
        if (t->spec.family == LB_FAMILY_F32 && (uintptr_t)t->data % sizeof(float))
            return lb_fail(LB_ERR_FORMAT, "f32 tensor '%s' is not 4-byte aligned in the file", t->name);
        /* the 1-row tensors are the norms, which the forward pass reads as plain floats */
        if (t->rows == 1 && t->spec.family != LB_FAMILY_F32)
            return lb_fail(LB_ERR_UNSUPPORTED, "norm weight '%s' must be f32", t->name);
    }
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int i = 0; i < LB_N_LINEARS; i++) {
            lb_status st = lb_linear_validate(&m->layers[l].linear[i]);
            if (st != LB_OK) return st;
        }
    lb_status st = lb_model_check_finite(m);
    if (st != LB_OK) return st;
    /* RoPE angles as llama2.c computes them: pos * theta^(-i/head_dim) for even i */
    int half = m->cfg.head_dim / 2;
    m->rope_cos = lb_alloc((size_t)m->cfg.seq_len * (size_t)half * sizeof(float));
    m->rope_sin = lb_alloc((size_t)m->cfg.seq_len * (size_t)half * sizeof(float));
    if (!m->rope_cos || !m->rope_sin) return LB_ERR_NOMEM;
    for (int p = 0; p < m->cfg.seq_len; p++)
        for (int i = 0; i < half; i++) {
            float freq = 1.0f / powf(m->cfg.rope_theta, (float)(2 * i) / (float)m->cfg.head_dim);
            if (m->rope_factors) freq /= m->rope_factors[i]; /* as ggml_rope_ext's freq_factors */
            float val = (float)p * freq;
            m->rope_cos[(size_t)p * half + i] = cosf(val);
            m->rope_sin[(size_t)p * half + i] = sinf(val);
        }
    return LB_OK;
}

void lb_model_free(lb_model *m) {
    if (!m) return;
    if (m->layers) {
        for (int l = 0; l < m->cfg.n_layers; l++)
            for (int i = 0; i < LB_N_LINEARS; i++) lb_linear_free(&m->layers[l].linear[i]);
        for (int i = 0; i < lb_model_n_tensors(m); i++) lb_tensor_free(lb_model_tensor_at(m, i));
    }
    lb_free(m->layers);
    lb_free(m->rope_cos);
    lb_free(m->rope_sin);
    lb_free(m->rope_factors);
    lb_tokenizer_free(m->tokenizer);
    lb_unmap_file(&m->file);
    for (int i = 0; i < m->n_shards; i++) lb_unmap_file(&m->shards[i]);
    lb_free(m->shards);
    lb_free(m);
}

void lb_model_sizes(lb_model *m, lb_model_size *out) {
    memset(out, 0, sizeof *out);
    for (int i = 0; i < lb_model_n_tensors(m); i++) {
        const lb_tensor *t = lb_model_tensor_at(m, i);
        uint64_t w = (uint64_t)(t->rows * t->cols);
        out->bytes_all += t->nbytes;
        out->weights_all += w;
        if (!lb_qspec_is_float(&t->spec)) {
            out->bytes_quant += t->nbytes;
            out->weights_quant += w;
        }
    }
    /* a linear's slots are stored bits of that linear */
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int i = 0; i < LB_N_LINEARS; i++) {
            const lb_linear *L = &m->layers[l].linear[i];
            uint64_t b = lb_linear_slot_bytes(L);
            out->bytes_all += b;
            if (!lb_qspec_is_float(&L->w.spec)) out->bytes_quant += b;
        }
    out->bpw = out->weights_quant ? 8.0 * (double)out->bytes_quant / (double)out->weights_quant : NAN;
    out->bpw_all = 8.0 * (double)out->bytes_all / (double)out->weights_all;
}
