/* Layered calibration and streamed forward passes (src/calib/calib_layered.c,
 * docs/SCALING.md "Streaming"), on stories260K:
 * - lb_calibrate_layered gives lb_calibrate's statistics bit for bit (every
 *   array of every layer input, n, the histogram ranges, the info);
 * - lb_calibrate_to_file writes the bytes lb_calib_stats_save writes of
 *   lb_calibrate's statistics, for all parts and for a subset with other
 *   histogram bins and a token budget; its summary has no X^T X;
 * - failures (the evaluation split, an output that cannot be written, a
 *   late GGUF key whose value cannot be made) fail and leave no file;
 * - a forward pass that releases each block's pages (lb_state_set_release)
 *   gives the same logits, bit for bit. */
#include "test.h"

#include <sys/stat.h>

#include "io/gguf_internal.h"

static lb_model *model;

static void same_stats(const lb_calib_stats *a, const lb_calib_stats *b, int with_xtx) {
    lb_calib_info ia, ib;
    lb_calib_stats_info(a, &ia);
    lb_calib_stats_info(b, &ib);
    CHECK(ia.tokens == ib.tokens && ia.sequences == ib.sequences && ia.parts == ib.parts &&
          ia.hist_bins == ib.hist_bins && !strcmp(ia.source, ib.source));
    static const int first[LB_CALIB_N_INPUTS] = {LB_WQ, LB_WO, LB_W1, LB_W2};
    for (int l = 0; l < ia.n_layers; l++)
        for (int in = 0; in < LB_CALIB_N_INPUTS; in++) {
            const lb_layer_stats *x = lb_calib_stats_get(a, l, first[in]), *y = lb_calib_stats_get(b, l, first[in]);
            size_t c = (size_t)x->cols;
            int ok = x->n_samples == y->n_samples && x->cols == y->cols && x->hist_range == y->hist_range &&
                     x->hist_bins == y->hist_bins;
#define SAME(f, bytes) (!x->f == !y->f && (!x->f || !memcmp(x->f, y->f, bytes)))
            ok = ok && SAME(mean_abs_x, c * 4) && SAME(max_abs_x, c * 4) && SAME(mean_x, c * 4) &&
                 SAME(hist, (size_t)x->hist_bins * 8);
            if (with_xtx) ok = ok && x->xtx && SAME(xtx, c * c * 8);
            else ok = ok && !y->xtx;
#undef SAME
            CHECK_MSG(ok, "layer %d %s differs from lb_calibrate's", l, lb_calib_input_name(in));
        }
}

static int same_file(const char *p, const char *q) {
    char *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    int same = lb_read_file(p, &a, &na) == LB_OK && lb_read_file(q, &b, &nb) == LB_OK && na == nb &&
               !memcmp(a, b, na);
    lb_free(a);
    lb_free(b);
    return same;
}

static void test_same_as_whole_model(const char *dir, const lb_calib_opts *o) {
    lb_calib_stats *whole = NULL, *layered = NULL, *summary = NULL;
    char p1[600], p2[600];
    snprintf(p1, sizeof p1, "%s/whole.gguf", dir);
    snprintf(p2, sizeof p2, "%s/layered.gguf", dir);
    CHECK_OK(lb_calibrate(model, o, &whole));
    CHECK_OK(lb_calibrate_layered(model, o, &layered));
    if (!whole || !layered) {
        lb_calib_stats_free(whole);
        lb_calib_stats_free(layered);
        return;
    }
    same_stats(whole, layered, 1);
    CHECK_OK(lb_calib_stats_save(whole, p1));
    CHECK_OK(lb_calibrate_to_file(model, o, p2, &summary));
    CHECK_MSG(same_file(p1, p2), "the layered statistics file differs from the whole-model one");
    if (whole && summary) same_stats(whole, summary, 0);
    lb_calib_stats_free(whole);
    lb_calib_stats_free(layered);
    lb_calib_stats_free(summary);
}

static lb_status refuse(void *user, const char *key, uint8_t *val, size_t val_len) {
    (void)user, (void)val, (void)val_len;
    return lb_fail(LB_ERR_INVALID, "no value for %s", key);
}

static void test_failures(const char *dir, lb_calib_opts o) {
    char p[600];
    lb_calib_stats *s = NULL;
    snprintf(p, sizeof p, "%s/eval.gguf", dir);
    o.split = LB_SPLIT_EVAL;
    CHECK_FAILS(lb_calibrate_to_file(model, &o, p, &s), LB_ERR_INVALID, "evaluation split");
    CHECK_FAILS(lb_calibrate_layered(model, &o, &s), LB_ERR_INVALID, "evaluation split");
    o.split = LB_SPLIT_CALIB;
    snprintf(p, sizeof p, "%s/no/such/dir.gguf", dir);
    CHECK(lb_calibrate_to_file(model, &o, p, &s) != LB_OK && !s);
    /* a late key whose value cannot be made: the write fails, nothing left */
    snprintf(p, sizeof p, "%s/late.gguf", dir);
    lb_gguf_writer *w = NULL;
    CHECK_OK(lb_gguf_writer_create(&w));
    CHECK_OK(lb_gguf_set_u32(w, "a", 1));
    CHECK_FAILS(lb_gguf_set_late(w, "b", refuse, NULL), LB_ERR_INVALID, "must be set before");
    CHECK_OK(lb_gguf_set_late(w, "a", refuse, NULL));
    CHECK_FAILS(lb_gguf_write(w, p), LB_ERR_INVALID, "no value for a");
    lb_gguf_writer_free(w);
    struct stat st;
    CHECK_MSG(stat(p, &st) != 0, "a failed write left %s", p);
}

static void test_release_same_logits(void) {
    int tok[40], n = 40;
    for (int i = 0; i < n; i++) tok[i] = (i * 37 + 1) % model->cfg.vocab_size;
    size_t bytes = (size_t)n * (size_t)model->cfg.vocab_size * sizeof(float);
    float *a = lb_alloc(bytes), *b = lb_alloc(bytes);
    lb_state *s = NULL, *r = NULL;
    CHECK_OK(lb_state_create(model, n, &s));
    CHECK_OK(lb_state_create(model, n, &r));
    lb_state_set_release(r, 1);
    for (int pass = 0; pass < 2; pass++) { /* the second pass reads the released pages again */
        CHECK_OK(lb_forward(model, s, tok, n, 0, a));
        CHECK_OK(lb_forward(model, r, tok, n, 0, b));
        CHECK_MSG(!memcmp(a, b, bytes), "released pages change the logits (pass %d)", pass);
    }
    lb_state_free(s);
    lb_state_free(r);
    lb_free(a);
    lb_free(b);
}

int main(void) {
    CHECK_OK(lb_model_load(lb_test_data("models/stories260K.bin"), NULL, &model));
    if (!model) return 1;
    char dir[] = "/tmp/lb_calib_layered_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    lb_calib_opts o;
    lb_calib_opts_default(&o);
    o.text_path = lb_test_data("text/tinystories-sample.txt");
    o.calib_blocks = 6;
    test_same_as_whole_model(dir, &o);
    lb_calib_opts sub = o; /* a subset of the parts, other bins, a budget cutting a sequence, a shorter context */
    sub.parts = LB_STATS_XTX | LB_STATS_MAX_ABS_X | LB_STATS_HIST_X;
    sub.hist_bins = 64;
    sub.tokens = 500;
    sub.ctx = 100;
    test_same_as_whole_model(dir, &sub);
    lb_calib_opts many = o; /* more sequences than shards: 40 in 14 shards of 3, folded in order */
    many.calib_blocks = 40;
    many.ctx = 32;
    test_same_as_whole_model(dir, &many);
    test_failures(dir, o);
    test_release_same_logits();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    lb_model_free(model);
    return lb_test_finish("test_calib_layered");
}
