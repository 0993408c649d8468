/* llama.cpp's architecture variants, read (src/model/model_gguf.c, issue 10
 * item 1). A "qwen2" file (keys qwen2.*, q/k/v biases, NEOX RoPE: each
 * head's attn_q / attn_k rows in rotate-half order) is built here from
 * stories260K with random biases, by the published convention (rows
 * permuted per head, as llama.cpp's converter does not do for qwen2): it
 * gives the logits of the same model written as "llama" (interleaved rows)
 * bit for bit, and written back it is a "llama" file with the same logits.
 * Llama 3's rope_freqs.weight divides the RoPE frequencies (the tables are
 * checked against the formula) and survives a round trip. An unknown
 * architecture, RoPE scaling and a malformed rope_freqs are refused. */
#include "gguf_copy.h"
#include "test.h"

#include <math.h>
#include <unistd.h>

static char dir[] = "/tmp/lb_garch_XXXXXX";

static lb_model *load(const char *path) {
    lb_model *m = NULL;
    lb_status st = lb_model_load(path, NULL, &m);
    CHECK_MSG(st == LB_OK, "loading %s: %s", path, lb_last_error());
    return m;
}

static float *logits(const lb_model *m) {
    static const int tok[] = {1, 403, 407, 261, 378, 429, 446, 259, 317, 436, 420, 271, 383, 290, 287, 263};
    enum { N = sizeof tok / sizeof tok[0] };
    float *lg = lb_alloc((size_t)N * m->cfg.vocab_size * sizeof(float));
    CHECK_OK(lb_test_logits(m, tok, N, lg));
    return lg;
}

static int same_logits(const lb_model *a, const lb_model *b) {
    float *x = logits(a), *y = logits(b);
    int same = !memcmp(x, y, (size_t)16 * a->cfg.vocab_size * sizeof(float));
    lb_free(x);
    lb_free(y);
    return same;
}

/* What the copy changes: the architecture (keys "llama." renamed), NEOX
 * rows for attn_q / attn_k and their biases, one key set to a string, one
 * extra f32 tensor. */
typedef struct {
    const char *arch;
    int neox, n_heads, n_kv_heads;
    const char *set_key, *set_value;
    const char *add_tensor;
    const float *add_data;
    uint64_t add_n;
} edit;

/* interleaved (2j + i) -> rotate-half (i half + j) within each head */
static void to_neox(const uint8_t *src, uint8_t *dst, uint64_t rows, size_t row_bytes, int heads) {
    uint64_t hd = rows / (uint64_t)heads, half = hd / 2;
    for (uint64_t h = 0; h < (uint64_t)heads; h++)
        for (uint64_t i = 0; i < 2; i++)
            for (uint64_t j = 0; j < half; j++)
                memcpy(dst + (h * hd + i * half + j) * row_bytes, src + (h * hd + 2 * j + i) * row_bytes, row_bytes);
}

static void copy_gguf(const char *from, const char *to, const edit *e) {
    lb_mapped_file f;
    lb_gguf *g;
    lb_gguf_writer *w;
    CHECK_OK(lb_map_file(from, &f));
    CHECK_OK(lb_gguf_parse(f.data, f.size, &g));
    CHECK_OK(lb_gguf_writer_create(&w));
    for (int64_t i = 0; i < lb_gguf_n_kv(g); i++) {
        size_t kl;
        const char *k = lb_gguf_key(g, i, &kl);
        char name[256], out[256];
        snprintf(name, sizeof name, "%.*s", (int)kl, k);
        snprintf(out, sizeof out, "%s", name);
        if (!strncmp(name, "llama.", 6)) snprintf(out, sizeof out, "%s.%s", e->arch, name + 6);
        if (e->set_key && !strcmp(out, e->set_key)) continue;
        if (!strcmp(name, "general.architecture")) lb_gguf_set_str(w, out, e->arch);
        else gguf_copy_kv(g, w, i, name, out); /* the tokenizer's string arrays are left out */
    }
    if (e->set_key) lb_gguf_set_str(w, e->set_key, e->set_value);
    void *bufs[64];
    int nb = 0;
    for (int64_t i = 0; i < lb_gguf_n_tensors(g); i++) {
        const lb_gguf_tensor *t = lb_gguf_tensor_at(g, i);
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)t->name_len, t->name);
        const void *data = t->data;
        int q = strstr(name, ".attn_q.") != NULL, k = strstr(name, ".attn_k.") != NULL;
        if (e->neox && (q || k) && nb < 64) {
            uint64_t rows = t->n_dims == 2 ? t->ne[1] : t->ne[0];
            uint8_t *p = malloc(t->nbytes);
            to_neox(t->data, p, rows, t->nbytes / rows, q ? e->n_heads : e->n_kv_heads);
            data = bufs[nb++] = p;
        }
        lb_gguf_add_tensor(w, name, t->type, t->n_dims, t->ne, data, t->nbytes);
    }
    if (e->add_tensor) lb_gguf_add_tensor(w, e->add_tensor, LB_GGML_F32, 1, &e->add_n, e->add_data, e->add_n * 4);
    CHECK_OK(lb_gguf_write(w, to));
    for (int i = 0; i < nb; i++) free(bufs[i]);
    lb_gguf_writer_free(w);
    lb_gguf_free(g);
    lb_unmap_file(&f);
}

static void path_of(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", dir, name); }

static void test_qwen2(void) {
    lb_model *m = load(lb_test_data("models/stories260K.bin"));
    lb_rng r;
    lb_rng_seed(&r, 3);
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int i = LB_WQ; i <= LB_WV; i++) {
            lb_linear *L = &m->layers[l].linear[i];
            float *b = malloc((size_t)L->w.rows * sizeof(float));
            for (int64_t j = 0; j < L->w.rows; j++) b[j] = 0.1f * (float)lb_rng_normal(&r);
            CHECK_OK(lb_linear_set_bias(L, b));
            free(b);
        }
    char llama[256], qwen[256], back[256];
    path_of(llama, sizeof llama, "llama.gguf");
    path_of(qwen, sizeof qwen, "qwen2.gguf");
    path_of(back, sizeof back, "back.gguf");
    CHECK_OK(lb_model_save_gguf(m, llama));
    edit e = {.arch = "qwen2", .neox = 1, .n_heads = m->cfg.n_heads, .n_kv_heads = m->cfg.n_kv_heads};
    copy_gguf(llama, qwen, &e);
    lb_model *a = load(llama), *q = load(qwen);
    CHECK_MSG(same_logits(m, a), "the llama file's logits differ from the model's");
    CHECK_MSG(same_logits(a, q), "the qwen2 file (NEOX rows, biases) gives other logits than the llama file");
    CHECK(q->layers[0].linear[LB_WK].bias != NULL);
    CHECK_OK(lb_model_save_gguf(q, back));
    lb_model *b = load(back);
    CHECK_MSG(same_logits(a, b), "the qwen2 model written back gives other logits");
    /* the copy without the permutation is another model: the test sees rows */
    e.neox = 0;
    copy_gguf(llama, qwen, &e);
    lb_model *wrong = load(qwen);
    CHECK_MSG(!same_logits(a, wrong), "unpermuted rows give the same logits: the check cannot fail");
    lb_model_free(wrong);
    lb_model_free(b);
    lb_model_free(q);
    lb_model_free(a);
    lb_model_free(m);
    remove(llama);
    remove(qwen);
    remove(back);
}

static void test_rope_freqs(void) {
    lb_model *m = load(lb_test_data("models/stories260K.bin"));
    char plain[256], l3[256], back[256];
    path_of(plain, sizeof plain, "plain.gguf");
    path_of(l3, sizeof l3, "l3.gguf");
    path_of(back, sizeof back, "l3back.gguf");
    CHECK_OK(lb_model_save_gguf(m, plain));
    int half = m->cfg.head_dim / 2;
    float f[64];
    for (int i = 0; i < half; i++) f[i] = 1.0f + (float)(i % 5) * 1.75f;
    edit e = {.arch = "llama", .add_tensor = "rope_freqs.weight", .add_data = f, .add_n = (uint64_t)half};
    copy_gguf(plain, l3, &e);
    lb_model *a = load(l3);
    CHECK(a->rope_factors && !memcmp(a->rope_factors, f, (size_t)half * 4));
    int bad = 0;
    for (int p = 0; p < a->cfg.seq_len; p += 7)
        for (int i = 0; i < half; i++) {
            float freq = 1.0f / powf(a->cfg.rope_theta, (float)(2 * i) / (float)a->cfg.head_dim);
            freq /= f[i];
            bad += a->rope_cos[(size_t)p * half + i] != cosf((float)p * freq) ||
                   a->rope_sin[(size_t)p * half + i] != sinf((float)p * freq);
        }
    CHECK_MSG(bad == 0, "%d RoPE table entries are not pos theta^(-2i/d) / factor", bad);
    CHECK_MSG(!same_logits(m, a), "rope_freqs changed nothing");
    CHECK_OK(lb_model_save_gguf(a, back));
    lb_model *b = load(back);
    CHECK(b->rope_factors && !memcmp(b->rope_factors, f, (size_t)half * 4) && same_logits(a, b));
    char hf[256];
    path_of(hf, sizeof hf, "hf");
    CHECK_FAILS(lb_model_save_safetensors(b, hf, NULL), LB_ERR_UNSUPPORTED, "rope_freqs");
    /* refused: a malformed rope_freqs, another architecture, RoPE scaling */
    lb_model *x = NULL;
    f[1] = -1.0f;
    copy_gguf(plain, l3, &e);
    CHECK_FAILS(lb_model_load(l3, NULL, &x), LB_ERR_FORMAT, "rope_freqs.weight[1]");
    e.add_n = 3;
    copy_gguf(plain, l3, &e);
    CHECK_FAILS(lb_model_load(l3, NULL, &x), LB_ERR_FORMAT, "rope_freqs.weight is not");
    edit gem = {.arch = "gemma"};
    copy_gguf(plain, l3, &gem);
    CHECK_FAILS(lb_model_load(l3, NULL, &x), LB_ERR_UNSUPPORTED, "architecture 'gemma'");
    edit yarn = {.arch = "llama", .set_key = "llama.rope.scaling.type", .set_value = "yarn"};
    copy_gguf(plain, l3, &yarn);
    CHECK_FAILS(lb_model_load(l3, NULL, &x), LB_ERR_UNSUPPORTED, "RoPE scaling 'yarn'");
    yarn.set_value = "none";
    copy_gguf(plain, l3, &yarn);
    lb_model *n = load(l3);
    CHECK(same_logits(m, n));
    lb_model_free(n);
    lb_model_free(b);
    lb_model_free(a);
    lb_model_free(m);
    remove(plain);
    remove(l3);
    remove(back);
}

int main(void) {
    if (!mkdtemp(dir)) return 1;
    test_qwen2();
    test_rope_freqs();
    rmdir(dir);
    return lb_test_finish("test_gguf_arch");
}
