/* llama2.c checkpoints, both exports of karpathy/llama2.c:
 *
 * legacy:  int32 dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
 *          seq_len (vocab_size < 0: the classifier is stored, not shared), then
 *          fp32 token_embd, attn_norm[L], wq[L], wk[L], wv[L], wo[L],
 *          ffn_norm[L], w1[L], w2[L], w3[L], output_norm, freq_cis_real and
 *          freq_cis_imag (seq_len x head_dim/2 each, ignored: RoPE is
 *          recomputed), [output].
 * v1:      uint32 magic 0x616b3432 ("ak42"), int32 version 1, the same 7
 *          int32, uint8 shared_classifier, zero padding to 256 bytes, then fp32
 *          attn_norm[L], ffn_norm[L], output_norm, token_embd, wq[L], wk[L],
 *          wv[L], wo[L], w1[L], w2[L], w3[L], [output].
 * Weights are (out, in) row-major, as PyTorch stores them. The file must be
 * exactly as long as its header implies; tensors are views into it. */
#include <string.h>

#include "model/model_internal.h"

#define V1_MAGIC 0x616b3432u
#define V1_HEADER 256

static lb_status read_config(const uint8_t *p, lb_config *c, int *vocab_signed) {
    int32_t v[7];
    for (int i = 0; i < 7; i++) v[i] = (int32_t)lb_rd32(p + 4 * i);
    memset(c, 0, sizeof *c);
    c->dim = v[0];
    c->hidden_dim = v[1];
    c->n_layers = v[2];
    c->n_heads = v[3];
    c->n_kv_heads = v[4];
    *vocab_signed = v[5];
    c->seq_len = v[6];
    c->norm_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    /* the other fields first (validate's order), with a placeholder vocab */
    c->vocab_size = 3;
    lb_status st = lb_config_validate(c);
    if (st != LB_OK) return st;
    /* the vocabulary on the stored value: negating INT32_MIN is undefined, and
     * the message should show what the file says */
    int64_t vocab_abs = v[5] < 0 ? -(int64_t)v[5] : v[5];
    if (vocab_abs < 3 || vocab_abs > (1 << 22))
        return lb_fail(LB_ERR_FORMAT, "absurd vocabulary size %d%s", v[5],
                       v[5] < 0 ? " (negative marks an unshared classifier; the size is its magnitude)" : "");
    c->vocab_size = (int)vocab_abs;
    return lb_config_validate(c);
}

/* Points t at n floats at *off, advancing it; the caller checked the total. */
static void take(lb_tensor *t, const uint8_t *data, size_t *off) {
    t->data = data + *off;
    t->nbytes = (size_t)(t->rows * t->cols) * sizeof(float);
    *off += t->nbytes;
}

lb_status lb_model_from_llama2c(const uint8_t *data, size_t size, lb_model **out) {
    *out = NULL;
    int v1 = size >= 4 && lb_rd32(data) == V1_MAGIC;
    size_t header = v1 ? V1_HEADER : 28;
    if (size < header)
        return lb_fail(LB_ERR_FORMAT, "file of %zu bytes is too short for a llama2.c %s header (%zu bytes)", size,
                       v1 ? "v1" : "legacy", header);
    lb_config c;
    int vocab_signed, shared;
    lb_status st;
    if (v1) {
        int32_t version = (int32_t)lb_rd32(data + 4);
        if (version != 1)
            return lb_fail(LB_ERR_UNSUPPORTED, "llama2.c export version %d is not supported (only version 1, fp32)",
                           version);
        st = read_config(data + 8, &c, &vocab_signed);
        if (data[36] > 1) return lb_fail(LB_ERR_FORMAT, "v1 header: shared_classifier flag is %d, not 0 or 1", data[36]);
        shared = data[36];
        if (vocab_signed < 0) return lb_fail(LB_ERR_FORMAT, "v1 header: negative vocab_size %d", vocab_signed);
    } else {
        st = read_config(data, &c, &vocab_signed);
        shared = vocab_signed > 0;
    }
    if (st != LB_OK) return lb_fail_context(st, "llama2.c %s header", v1 ? "v1" : "legacy");

    /* expected size, in floats, with every term bounded by validate() */
    uint64_t d = (uint64_t)c.dim, h = (uint64_t)c.hidden_dim, L = (uint64_t)c.n_layers, V = (uint64_t)c.vocab_size;
    uint64_t kv = d / (uint64_t)c.n_heads * (uint64_t)c.n_kv_heads, hd = d / (uint64_t)c.n_heads;
    uint64_t floats = V * d + L * (2 * d + 2 * d * d + 2 * kv * d + 3 * d * h) + d;
    if (!v1) floats += (uint64_t)c.seq_len * hd; /* freq_cis real + imag */
    if (!shared) floats += V * d;
    uint64_t need = (uint64_t)header + 4 * floats;
    if (size < need)
        return lb_fail(LB_ERR_FORMAT, "llama2.c checkpoint is truncated: its header implies %llu bytes, the file has %zu",
                       (unsigned long long)need, size);
    if (size > need)
        return lb_fail(LB_ERR_FORMAT,
                       "file has %llu bytes more than a llama2.c checkpoint with this header (dim %d, %d layers, "
                       "vocab %d): not a llama2.c checkpoint, or a different export",
                       (unsigned long long)(size - need), c.dim, c.n_layers, c.vocab_size);

    lb_model *m;
    st = lb_model_alloc(&c, shared, &m);
    if (st != LB_OK) return st;
    size_t off = header;
    int nl = c.n_layers;
    if (v1) {
        for (int l = 0; l < nl; l++) take(&m->layers[l].attn_norm, data, &off);
        for (int l = 0; l < nl; l++) take(&m->layers[l].ffn_norm, data, &off);
        take(&m->out_norm, data, &off);
        take(&m->tok_embd, data, &off);
        for (int i = 0; i < LB_N_LINEARS; i++)
            for (int l = 0; l < nl; l++) take(&m->layers[l].linear[i].w, data, &off);
    } else {
        take(&m->tok_embd, data, &off);
        for (int l = 0; l < nl; l++) take(&m->layers[l].attn_norm, data, &off);
        for (int i = LB_WQ; i <= LB_WO; i++)
            for (int l = 0; l < nl; l++) take(&m->layers[l].linear[i].w, data, &off);
        for (int l = 0; l < nl; l++) take(&m->layers[l].ffn_norm, data, &off);
        for (int i = LB_W1; i <= LB_W3; i++)
            for (int l = 0; l < nl; l++) take(&m->layers[l].linear[i].w, data, &off);
        take(&m->out_norm, data, &off);
        off += (size_t)((uint64_t)c.seq_len * hd * 4);
    }
    if (!shared) take(&m->output, data, &off);
    snprintf(m->source_format, sizeof m->source_format, "%s", v1 ? "llama2c-v1" : "llama2c");
    st = lb_model_finish(m);
    if (st != LB_OK) {
        lb_model_free(m);
        return st;
    }
    *out = m;
    return LB_OK;
}
