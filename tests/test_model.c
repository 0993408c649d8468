/* The real model end to end: llama2.c loaders (legacy and v1 give identical
 * logits), llama2.c's documented greedy and seeded samples, batched vs
 * token-by-token forward, thread-count independence, and corrupt files. */
#include "test.h"

#include <unistd.h>

/* llama2.c doc/stories260K.md: ./run stories260K.bin -z tok512.bin -t 0.0 */
static const char *greedy_sample =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a "
    "big, red ball. She wanted to play with it, but it was too high.\n"
    "Lily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do. She said, \"I want to "
    "play with your ball, but I can't find it.\"\n"
    "Lily was sad and didn't know what to do. She said, \"I'm sorry, Lily. I didn't know what to do.\"\n"
    "Lily didn't want to help her mom, so she said, \"I'm sorry, mom. I didn't know what to do.\" Her mom said, "
    "\"Don't worry, Lily. We can help you.";

/* the same document: ./run ... -t 1.0 -p 0.9 -s 133742 */
static const char *topp_sample =
    "Once upon a time, there was a little boy named Timmy. Timmy loved to play with his toys and eat sandwiches. One "
    "day, Timmy's mom told him it was time to rest for a while. Timmy's friend Billy came over and took him a down.\n"
    "Timmy's mom saw that Timmy was sad, but Timmy said, \"I didn't understand what is it! We need to find some "
    "leafs.\" Timmy thought about it and took a deep breath on a spoon. He hoped it was important to be kind and "
    "continued to find its image next time.\n"
    "After they finished getting, Timmy's dad came up to his house and promised to help Timmy.";

typedef struct {
    char buf[8192];
    size_t len;
} text_buf;

static void collect(const char *piece, size_t len, void *user) {
    text_buf *t = user;
    if (t->len + len < sizeof t->buf) {
        memcpy(t->buf + t->len, piece, len);
        t->len += len;
        t->buf[t->len] = 0;
    }
}

static lb_model *load(const char *rel) {
    lb_model *m = NULL;
    lb_status st = lb_model_load(lb_test_data(rel), NULL, &m);
    if (st != LB_OK) {
        fprintf(stderr, "load %s: %s\n", rel, lb_last_error());
        exit(1);
    }
    return m;
}

static void test_config(lb_model *m) {
    const lb_config *c = &m->cfg;
    CHECK(c->dim == 64 && c->hidden_dim == 172 && c->n_layers == 5 && c->n_heads == 8 && c->n_kv_heads == 4 &&
          c->vocab_size == 512 && c->seq_len == 512 && c->head_dim == 8);
    CHECK(m->tied_output == 1);
    CHECK(m->tokenizer != NULL);
    lb_model_size sz;
    lb_model_sizes(m, &sz);
    CHECK(sz.weights_all == 260032 - 0); /* every stored weight (no freq_cis) */
    CHECK(sz.bytes_quant == 0);
}

static void test_generation(lb_model *m) {
    lb_gen_opts o = {.max_new = 256, .temperature = 0.0f, .top_p = 0.9f, .seed = 1};
    lb_gen_stats stats;
    text_buf out = {.len = 0};
    CHECK_OK(lb_generate(m, "", &o, collect, &out, &stats));
    CHECK_MSG(strcmp(out.buf, greedy_sample) == 0, "greedy sample differs:\n%s", out.buf);
    CHECK(stats.generated_tokens == 256);

    out.len = 0;
    out.buf[0] = 0;
    CHECK_OK(lb_generate(m, "Once upon a time", &o, collect, &out, &stats));
    const char *want = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.";
    CHECK_MSG(strncmp(out.buf, want, strlen(want)) == 0, "prompted greedy sample: %s", out.buf);

    lb_gen_opts t = {.max_new = 256, .temperature = 1.0f, .top_p = 0.9f, .seed = 133742};
    out.len = 0;
    out.buf[0] = 0;
    CHECK_OK(lb_generate(m, "", &t, collect, &out, &stats));
    CHECK_MSG(strcmp(out.buf, topp_sample) == 0, "seeded top-p sample differs:\n%s", out.buf);

    /* the context bounds a long request: 512 positions, the last sample printed too */
    o.max_new = 10000;
    CHECK_OK(lb_generate(m, "", &o, collect, &out, &stats));
    CHECK(stats.generated_tokens <= 512);
    o.max_new = 0;
    CHECK_FAILS(lb_generate(m, "", &o, collect, &out, &stats), LB_ERR_INVALID, ">= 1");
}

/* logits of a fixed token sequence, n at a time */
static float *logits_of(lb_model *m, const int *tok, int n, int batch) {
    lb_state *s;
    float *lg = lb_alloc((size_t)n * m->cfg.vocab_size * sizeof(float));
    if (lb_state_create(m, batch, &s) != LB_OK) exit(1);
    for (int i = 0; i < n; i += batch) {
        int k = n - i < batch ? n - i : batch;
        if (lb_forward(m, s, tok + i, k, i, lg + (size_t)i * m->cfg.vocab_size) != LB_OK) exit(1);
    }
    lb_state_free(s);
    return lg;
}

static void test_forward_paths(lb_model *legacy, lb_model *v1) {
    enum { N = 200 };
    int tok[N];
    lb_rng r;
    lb_rng_seed(&r, 11);
    tok[0] = 1;
    for (int i = 1; i < N; i++) tok[i] = (int)(lb_rng_u32(&r) % 512);
    size_t nl = (size_t)N * 512;
    float *a = logits_of(legacy, tok, N, N), *b = logits_of(v1, tok, N, N);
    CHECK_MSG(memcmp(a, b, nl * sizeof(float)) == 0, "legacy and v1 files give different logits");
    /* one token at a time vs all at once: same math, different tiling */
    float *c = logits_of(legacy, tok, N, 1);
    double maxd = 0;
    for (size_t i = 0; i < nl; i++) maxd = fmax(maxd, fabs((double)a[i] - c[i]));
    CHECK_MSG(maxd < 1e-3, "batched vs single-token logits differ by %g", maxd);
    /* odd batch sizes land on the same numbers as single tokens or as the
     * whole batch up to rounding */
    float *d = logits_of(legacy, tok, N, 7);
    maxd = 0;
    for (size_t i = 0; i < nl; i++) maxd = fmax(maxd, fabs((double)a[i] - d[i]));
    CHECK(maxd < 1e-3);
    /* thread count does not change a single bit */
    lb_set_threads(1);
    float *e = logits_of(legacy, tok, N, N);
    lb_set_threads(2);
    float *f = logits_of(legacy, tok, N, N);
    CHECK(memcmp(e, f, nl * sizeof(float)) == 0);
    CHECK(memcmp(a, f, nl * sizeof(float)) == 0);
    lb_free(a);
    lb_free(b);
    lb_free(c);
    lb_free(d);
    lb_free(e);
    lb_free(f);

    lb_state *s;
    CHECK_OK(lb_state_create(legacy, 4, &s));
    int bad[2] = {1, 512};
    CHECK_FAILS(lb_forward(legacy, s, bad, 2, 0, NULL), LB_ERR_INVALID, "outside the vocabulary");
    CHECK_FAILS(lb_forward(legacy, s, bad, 1, 512, NULL), LB_ERR_INVALID, "exceed the model's context");
    lb_state_free(s);
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n) exit(1);
    fclose(f);
}

static void test_corrupt_files(void) {
    char *buf;
    size_t size;
    CHECK_OK(lb_read_file(lb_test_data("models/stories260K.bin"), &buf, &size));
    char *v1;
    size_t v1size;
    CHECK_OK(lb_read_file(lb_test_data("models/stories260K-v1.bin"), &v1, &v1size));
    lb_model *m;
    /* truncated anywhere: a clear message, never a crash */
    const size_t cuts[] = {0, 3, 27, 28, 100, 4096, 1056539};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        lb_status st = lb_model_from_llama2c((const uint8_t *)buf, cuts[i], &m);
        CHECK_MSG(st == LB_ERR_FORMAT, "cut at %zu: status %d", cuts[i], (int)st);
    }
    CHECK_FAILS(lb_model_from_llama2c((const uint8_t *)buf, 1000, &m), LB_ERR_FORMAT, "truncated");
    CHECK_FAILS(lb_model_from_llama2c((const uint8_t *)v1, 255, &m), LB_ERR_FORMAT, "too short");
    CHECK_FAILS(lb_model_from_llama2c((const uint8_t *)v1, v1size - 4, &m), LB_ERR_FORMAT, "truncated");
    /* absurd dimensions */
    char *bad = lb_alloc(size + 8);
    memcpy(bad, buf, size);
    lb_wr32(bad, 0x7fffffff);
    CHECK_FAILS(lb_model_from_llama2c((const uint8_t *)bad, size, &m), LB_ERR_FORMAT, "absurd model width");
    memcpy(bad, buf, size);
    lb_wr32(bad + 12, 7); /* 7 heads do not divide 64 */
    CHECK_FAILS(lb_model_from_llama2c((const uint8_t *)bad, size, &m), LB_ERR_FORMAT, "does not divide");
    memcpy(bad, buf, size);
    lb_wr32(bad + 24, 0);
    CHECK_FAILS(lb_model_from_llama2c((const uint8_t *)bad, size, &m), LB_ERR_FORMAT, "context length");
    memcpy(bad, buf, size);
    lb_wr32(bad + 8, 6); /* one layer more than stored */
    CHECK_FAILS(lb_model_from_llama2c((const uint8_t *)bad, size, &m), LB_ERR_FORMAT, "truncated");
    memcpy(bad, buf, size);
    CHECK_FAILS(lb_model_from_llama2c((const uint8_t *)bad, size + 8, &m), LB_ERR_FORMAT, "more than");
    memcpy(bad, v1, v1size);
    lb_wr32(bad + 4, 2);
    CHECK_FAILS(lb_model_from_llama2c((const uint8_t *)bad, v1size, &m), LB_ERR_UNSUPPORTED, "version 2");
    /* through the file loader: the message names the file */
    char dir[] = "/tmp/lb_model_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/cut.bin", dir);
    write_file(path, buf, 5000);
    CHECK_FAILS(lb_model_load(path, NULL, &m), LB_ERR_FORMAT, "cut.bin");
    remove(path);
    snprintf(path, sizeof path, "%s/empty.bin", dir);
    write_file(path, buf, 0);
    CHECK_FAILS(lb_model_load(path, NULL, &m), LB_ERR_FORMAT, "empty");
    remove(path);
    /* a corrupt tokenizer next to a good model */
    snprintf(path, sizeof path, "%s/tok.bin", dir);
    write_file(path, "\x07\0\0\0\0\0", 6);
    CHECK_FAILS(lb_model_load(lb_test_data("models/stories260K.bin"), path, &m), LB_ERR_FORMAT, "tokenizer");
    remove(path);
    rmdir(dir);
    lb_free(bad);
    lb_free(buf);
    lb_free(v1);
}

int main(void) {
    lb_model *legacy = load("models/stories260K.bin");
    lb_model *v1 = load("models/stories260K-v1.bin");
    CHECK(strcmp(legacy->source_format, "llama2c") == 0 && strcmp(v1->source_format, "llama2c-v1") == 0);
    test_config(legacy);
    test_config(v1);
    test_generation(legacy);
    test_forward_paths(legacy, v1);
    test_corrupt_files();
    lb_model_free(legacy);
    lb_model_free(v1);
    return lb_test_finish("test_model");
}
