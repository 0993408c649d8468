/* A synthetic Llama-shaped model written straight to GGUF, one tensor at a
 * time: what the streaming tests and measurements (docs/SCALING.md,
 * "Streaming") quantize when no real model of the size is at hand. Nothing
 * is held in memory but one row: each tensor's bytes are made while the file
 * is written (lb_gguf_add_tensor_fill), so a model larger than RAM costs one
 * row buffer to make.
 *
 * Weights are seeded, the same bytes on every machine and thread count:
 * tensor i draws from its own xorshift stream seeded by (seed, i), so the
 * file does not depend on the order tensors are made in. Linears and
 * embeddings are Irwin-Hall(4) approximations of N(0, 0.02^2) (GPT-2 and
 * Llama initialise so; a cheap bell shape, four 16-bit uniforms per weight,
 * not Box-Muller's log and cos for billions of weights); norms are
 * 1 +- 0.05 uniform. Keys are those lb_model_save_gguf writes, without a
 * tokenizer (quantize and convert need none). */
#include <string.h>

#include "io/gguf_internal.h"
#include "lowbit/gguf.h"
#include "model/model_gguf.h"
#include "model/model_internal.h"

typedef struct {
    int64_t rows, cols;
    int ggml_type;   /* LB_GGML_F32, F16 or BF16 */
    int norm;        /* 1: a norm weight, 1 +- 0.05 */
    uint64_t seed;   /* this tensor's stream */
} synth_tensor;

static float synth_value(lb_rng *r, int norm) {
    uint32_t a = lb_rng_u32(r), b = lb_rng_u32(r);
    if (norm) return 1.0f + 0.1f * ((float)(a >> 8) / 16777216.0f - 0.5f);
    /* four 16-bit uniforms on [0, 1): sum - 2 has variance 4/12 = 1/3 */
    float s = (float)(a & 0xffff) + (float)(a >> 16) + (float)(b & 0xffff) + (float)(b >> 16);
    return 0.02f * 1.7320508f * (s / 65536.0f - 2.0f);
}

static lb_status synth_fill(void *user, lb_atomic_file *f) {
    const synth_tensor *t = user;
    size_t es = t->ggml_type == LB_GGML_F32 ? 4 : 2;
    uint8_t *row = lb_alloc((size_t)t->cols * es); /* (cols) bytes of one row */
    if (!row) return LB_ERR_NOMEM;
    lb_rng r;
    lb_rng_seed(&r, t->seed);
    for (int64_t i = 0; i < t->rows; i++) {
        for (int64_t c = 0; c < t->cols; c++) {
            float v = synth_value(&r, t->norm);
            if (es == 4) memcpy(row + 4 * c, &v, 4);
            else lb_wr16(row + 2 * c, t->ggml_type == LB_GGML_F16 ? lb_fp32_to_fp16(v) : lb_fp32_to_bf16(v));
        }
        lb_atomic_write(f, row, (size_t)t->cols * es);
    }
    lb_free(row);
    return f->err;
}

/* splitmix64: decorrelates the per-tensor seeds of neighbouring indices */
static uint64_t mix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

lb_status lb_model_synth_gguf(const lb_config *c, const lb_qspec *dtype, uint64_t seed, const char *path) {
    if (!lb_qspec_is_float(dtype)) return lb_fail(LB_ERR_INVALID, "a synthetic model is stored as f32, f16 or bf16");
    if (c->dim < 1 || c->hidden_dim < 1 || c->n_layers < 1 || c->n_heads < 1 || c->n_kv_heads < 1 ||
        c->vocab_size < 1 || c->seq_len < 1 || c->dim % c->n_heads || c->n_heads % c->n_kv_heads ||
        (c->dim / c->n_heads) % 2)
        return lb_fail(LB_ERR_INVALID, "synthetic model: dim %d, ffn %d, layers %d, heads %d/%d, vocab %d: need all "
                       "positive, heads dividing dim with an even head size, kv heads dividing heads",
                       c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size);
    int wtype = lb_format_ggml_type(dtype, c->dim);
    int64_t kv_dim = (int64_t)c->dim / c->n_heads * c->n_kv_heads;
    /* token_embd, per layer 2 norms and 7 linears, output_norm, output */
    int n = 3 + 9 * c->n_layers;
    synth_tensor *ts = lb_calloc((size_t)n, sizeof *ts);
    lb_gguf_writer *w = NULL;
    if (!ts) return LB_ERR_NOMEM;
    lb_status st = lb_gguf_writer_create(&w);
    if (st != LB_OK) goto done;
    lb_config hp = *c;
    hp.head_dim = c->dim / c->n_heads;
    TRY(lb_model_gguf_set_hparams(w, &hp, "lowbit synthetic model"));
    TRY(lb_gguf_set_str(w, "lowbit.version", LB_VERSION_STRING));
    int k = 0;
    char name[96];
#define ADD(NAME, ROWS, COLS, NORM)                                                                             \
    do {                                                                                                        \
        synth_tensor *t = &ts[k];                                                                               \
        *t = (synth_tensor){(ROWS), (COLS), (NORM) ? LB_GGML_F32 : wtype, (NORM), mix(seed ^ mix((uint64_t)k))}; \
        uint64_t ne[2] = {(uint64_t)t->cols, (uint64_t)t->rows};                                                \
        size_t es = t->ggml_type == LB_GGML_F32 ? 4 : 2;                                                        \
        TRY(lb_gguf_add_tensor_fill(w, (NAME), t->ggml_type, (NORM) ? 1 : 2, ne,                                \
                                    (size_t)t->rows * (size_t)t->cols * es, synth_fill, t));                    \
        k++;                                                                                                    \
    } while (0)
    ADD("token_embd.weight", c->vocab_size, c->dim, 0);
    for (int l = 0; l < c->n_layers; l++) {
        /* (out, in) per linear, in lb_linear_name's order: q k v o gate down up */
        const int64_t shape[LB_N_LINEARS][2] = {{c->dim, c->dim},        {kv_dim, c->dim},        {kv_dim, c->dim},
                                                {c->dim, c->dim},        {c->hidden_dim, c->dim}, {c->dim, c->hidden_dim},
                                                {c->hidden_dim, c->dim}};
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
        ADD(name, 1, c->dim, 1);
        for (int i = 0; i < LB_N_LINEARS; i++) {
            if (i == LB_W1) {
                snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
                ADD(name, 1, c->dim, 1);
            }
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, lb_linear_name(i));
            ADD(name, shape[i][0], shape[i][1], 0);
        }
    }
    ADD("output_norm.weight", 1, c->dim, 1);
    ADD("output.weight", c->vocab_size, c->dim, 0);
#undef ADD
    st = lb_gguf_write(w, path);
done:
    lb_gguf_writer_free(w);
    lb_free(ts);
    return st;
}
