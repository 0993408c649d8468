/* What an outside tester found: bad numbers in a model (overflowing weights
 * that turn the logits to NaN, NaN or Inf stored in any float tensor), bad
 * paths (FIFOs, symlinks, devices, an output that is an input, missing
 * directories) and messages that name the wrong thing. Each case fails
 * cleanly with a message naming the culprit. */
#include "test.h"

#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/lb_robust_XXXXXX";

static const char *tmp_path(const char *name) {
    static char paths[4][512];
    static int next;
    char *p = paths[next++ % 4];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    return p;
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    fclose(f);
}

static void discard(const char *piece, size_t len, void *user) {
    (void)piece;
    (void)len;
    (void)user;
}

/* All-NaN probabilities used to make top-p sampling read pi[-1]. */
static void test_sampler_nan(void) {
    enum { V = 16 };
    float logits[V];
    for (int i = 0; i < V; i++) logits[i] = NAN;
    const float top_ps[] = {0.0f, 0.5f, 0.9f, 1.0f};
    for (size_t k = 0; k < sizeof top_ps / sizeof top_ps[0]; k++) {
        lb_sampler s;
        CHECK_OK(lb_sampler_init(&s, V, 1.0f, top_ps[k], 7));
        int tok = lb_sample(&s, logits);
        CHECK_MSG(tok >= 0 && tok < V, "top-p %g: token %d", (double)top_ps[k], tok);
        lb_sampler_free(&s);
    }
}

/* stories260K with one exponent bit flipped in blk.1.attn_q (byte 160187):
 * the weight is finite (1.6e38) but the activations overflow to NaN from
 * the second position on. Greedy or sampled, generation must stop there. */
static void test_generate_nan_logits(const char *model_bytes, size_t size) {
    char *bad = lb_alloc(size);
    memcpy(bad, model_bytes, size);
    bad[160187] ^= 0x40;
    lb_model *m = NULL;
    CHECK_OK(lb_model_from_llama2c((const uint8_t *)bad, size, &m));
    if (!m) return;
    CHECK_OK(lb_tokenizer_load(lb_test_data("models/tok512.bin"), 512, &m->tokenizer));
    const struct {
        float temp, top_p;
    } settings[] = {{0.0f, 0.9f}, {1.0f, 0.9f}, {1.0f, 1.0f}, {0.8f, 0.0f}};
    for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++) {
        lb_gen_opts o = {.max_new = 5, .temperature = settings[i].temp, .top_p = settings[i].top_p, .seed = 1};
        lb_gen_stats stats;
        CHECK_FAILS(lb_generate(m, "", &o, discard, NULL, &stats), LB_ERR_NUMERIC,
                    "logits at position 1 (after token 403)");
        CHECK(strstr(lb_last_error(), "NaN") != NULL);
        CHECK(stats.generated_tokens == 1); /* "Once", from position 0's still finite logits */
    }
    lb_model_free(m);
    lb_free(bad);
}

/* legacy llama2.c layout: 28-byte header, then token_embd (512 x 64), then
 * the five attn_norm rows of 64 */
static size_t legacy_offset(size_t float_index) { return 28 + 4 * float_index; }

static void put_f32(char *buf, size_t off, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    lb_wr32(buf + off, u);
}

static void test_nonfinite_float_weights(const char *model_bytes, size_t size) {
    char *bad = lb_alloc(size);
    lb_model *m = NULL;
    memcpy(bad, model_bytes, size);
    put_f32(bad, legacy_offset(512 * 64 + 3), NAN);
    CHECK_FAILS(lb_model_from_llama2c((const uint8_t *)bad, size, &m), LB_ERR_NUMERIC,
                "tensor 'blk.0.attn_norm.weight' has a non-finite value: row 0, column 3 is NaN");
    memcpy(bad, model_bytes, size);
    put_f32(bad, legacy_offset(5 * 64 + 7), INFINITY);
    CHECK_FAILS(lb_model_from_llama2c((const uint8_t *)bad, size, &m), LB_ERR_NUMERIC,
                "tensor 'token_embd.weight' has a non-finite value: row 5, column 7 is +Inf");
    /* the last tensor of the file: output_norm (freq_cis follows, unused) */
    memcpy(bad, model_bytes, size);
    put_f32(bad, legacy_offset(512 * 64 + 5 * 64 + 5 * (64 * 64 * 2 + 32 * 64 * 2) + 5 * 64 + 5 * 172 * 64 * 3 + 63),
            -INFINITY);
    CHECK_FAILS(lb_model_from_llama2c((const uint8_t *)bad, size, &m), LB_ERR_NUMERIC,
                "tensor 'output_norm.weight' has a non-finite value: row 0, column 63 is -Inf");
    /* through the file loader, as the CLI meets it */
    const char *path = tmp_path("nan-norm.bin");
    memcpy(bad, model_bytes, size);
    put_f32(bad, legacy_offset(512 * 64 + 3), NAN);
    write_file(path, bad, size);
    CHECK_FAILS(lb_model_load(path, NULL, &m), LB_ERR_NUMERIC, "nan-norm.bin");
    CHECK(strstr(lb_last_error(), "blk.0.attn_norm.weight") != NULL);
    remove(path);
    lb_free(bad);
}

/* f16 and q8_0 tensors written into a GGUF by hand: a NaN half and a NaN
 * block scale are caught when the file is loaded. q8_0 is ggml's layout: per
 * 32 weights an fp16 scale d, then 32 int8 codes (w = d * q). */
static void test_nonfinite_gguf_weights(void) {
    lb_model *m = NULL;
    CHECK_OK(lb_model_load(lb_test_data("models/stories260K.bin"), NULL, &m));
    if (!m) return;
    lb_tensor *wq = &m->layers[0].linear[LB_WQ]; /* 64 x 64 */
    const char *path = tmp_path("nan.gguf");
    lb_model *back = NULL;

    uint8_t *half = lb_alloc(64 * 64 * 2);
    for (int i = 0; i < 64 * 64; i++) lb_wr16(half + 2 * i, lb_fp32_to_fp16(0.01f * (float)(i % 7)));
    lb_wr16(half + 2 * (2 * 64 + 9), 0x7e00); /* NaN at row 2, column 9 */
    CHECK_OK(lb_qspec_parse("f16", &wq->spec));
    wq->data = wq->owned = half;
    wq->nbytes = 64 * 64 * 2;
    CHECK_OK(lb_model_save_gguf(m, path));
    CHECK_FAILS(lb_model_load(path, NULL, &back), LB_ERR_NUMERIC,
                "tensor 'blk.0.attn_q.weight' has a non-finite value: row 2, column 9 is NaN");
    lb_tensor_free(wq);

    uint8_t *q8 = lb_calloc(64 * 2, 34);
    for (int b = 0; b < 64 * 2; b++) lb_wr16(q8 + 34 * b, lb_fp32_to_fp16(0.01f));
    lb_wr16(q8 + 34 * (3 * 2 + 1), 0x7c00); /* +Inf scale: row 3, columns 32..63; code 0 * Inf is NaN */
    CHECK_OK(lb_qspec_parse("q8_0", &wq->spec));
    wq->data = wq->owned = q8;
    wq->nbytes = 64 * 2 * 34;
    CHECK_OK(lb_model_save_gguf(m, path));
    CHECK_FAILS(lb_model_load(path, NULL, &back), LB_ERR_NUMERIC,
                "tensor 'blk.0.attn_q.weight' has a non-finite value: row 3, column 32 is NaN");
    CHECK(strstr(lb_last_error(), "scale") != NULL);
    /* the same tensor with finite scales loads */
    lb_wr16(q8 + 34 * (3 * 2 + 1), lb_fp32_to_fp16(0.01f));
    CHECK_OK(lb_model_save_gguf(m, path));
    CHECK_OK(lb_model_load(path, NULL, &back));
    lb_model_free(back);
    remove(path);
    lb_model_free(m);
}

int main(void) {
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    char *model;
    size_t size;
    CHECK_OK(lb_read_file(lb_test_data("models/stories260K.bin"), &model, &size));
    test_sampler_nan();
    test_generate_nan_logits(model, size);
    test_nonfinite_float_weights(model, size);
    test_nonfinite_gguf_weights();
    lb_free(model);
    rmdir(tmpdir);
    return lb_test_finish("test_robustness");
}
