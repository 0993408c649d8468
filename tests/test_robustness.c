/* What an outside tester found: bad numbers in a model (overflowing weights
 * that turn the logits to NaN, NaN or Inf stored in any float tensor), bad
 * paths (FIFOs, symlinks, devices, an output that is an input, missing
 * directories) and messages that name the wrong thing. Each case fails
 * cleanly with a message naming the culprit. */
#include "test.h"

#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/lb_robust_XXXXXX";

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
    lb_free(model);
    rmdir(tmpdir);
    return lb_test_finish("test_robustness");
}
