/* Calibration statistics (src/calib): on stories260K over a small text,
 * X^T X, the per-channel means and maxima and the histogram equal a direct
 * double computation from the observer's rows; q/k/v and gate/up share;
 * the file round-trips exactly and refuses another model's statistics and
 * corrupt bytes; the evaluation split is never read; the result is the same
 * bytes for 1 and 2 threads; an overflowing model fails naming the linear. */
#include "test.h"

static lb_model *model;

/* Three calibration blocks, then evaluation blocks that differ between
 * the two texts (they must not change anything). */
static const char *calib_part =
    "Once upon a time, there was a little girl named Lily. She loved to play outside.\n\n"
    "Tom had a red ball. He threw it high and the dog ran after it, barking.\n\n"
    "The sun was warm. Mom said, \"Let us go to the park!\" and they went.\n\n";
static const char *eval_a = "The cat sat on the mat all day long.\n\nBob ate a big cake.\n";
static const char *eval_b = "Zebras zigzag quickly over xylophones; jumpy wizards vex them!\n";

static lb_text make_text(const char *eval) {
    char buf[2048];
    snprintf(buf, sizeof buf, "%s%s", calib_part, eval);
    lb_text t;
    if (lb_text_from_memory(buf, strlen(buf), "test.txt", &t) != LB_OK) {
        fprintf(stderr, "text: %s\n", lb_last_error());
        exit(1);
    }
    return t;
}

/* ---- the direct computation: naive double sums over the observer's rows ---- */
typedef struct {
    int64_t n[64][LB_CALIB_N_INPUTS];
    double *xtx[64][LB_CALIB_N_INPUTS], *sum[64][LB_CALIB_N_INPUTS], *sum_abs[64][LB_CALIB_N_INPUTS];
    float *max[64][LB_CALIB_N_INPUTS];
    int64_t *hist[64][LB_CALIB_N_INPUTS];
    const lb_calib_stats *ranges; /* second pass: bin with these ranges */
    const float *qx;
    int shared_ok;
} direct;

static lb_status direct_observe(void *user, int layer, int which, const float *x, int n, int cols) {
    direct *d = user;
    if (which == LB_WQ || which == LB_W1) d->qx = x;
    else if (which == LB_WK || which == LB_WV || which == LB_W3) {
        if (x != d->qx) d->shared_ok = 0;
        return LB_OK;
    }
    int in = lb_calib_input_of(which);
    if (!d->xtx[layer][in]) {
        d->xtx[layer][in] = calloc((size_t)cols * cols, sizeof(double));
        d->sum[layer][in] = calloc((size_t)cols, sizeof(double));
        d->sum_abs[layer][in] = calloc((size_t)cols, sizeof(double));
        d->max[layer][in] = calloc((size_t)cols, sizeof(float));
        d->hist[layer][in] = calloc(2048, sizeof(int64_t));
    }
    if (d->ranges) { /* second pass: the histogram only */
        double R = lb_calib_stats_get(d->ranges, layer, which)->hist_range;
        for (size_t i = 0; i < (size_t)n * cols; i++) {
            int b = (int)floor((double)x[i] / R * 1024 + 1024);
            d->hist[layer][in][b < 0 ? 0 : b > 2047 ? 2047 : b]++;
        }
        return LB_OK;
    }
    for (int r = 0; r < n; r++) {
        const float *row = x + (size_t)r * cols;
        for (int i = 0; i < cols; i++) {
            for (int j = 0; j < cols; j++) d->xtx[layer][in][i * cols + j] += (double)row[i] * (double)row[j];
            d->sum[layer][in][i] += row[i];
            d->sum_abs[layer][in][i] += fabs((double)row[i]);
            if (fabsf(row[i]) > d->max[layer][in][i]) d->max[layer][in][i] = fabsf(row[i]);
        }
    }
    d->n[layer][in] += n;
    return LB_OK;
}

static void run_direct(const lb_text *t, int end, int ctx, direct *d) {
    lb_state *s;
    CHECK_OK(lb_state_create(model, ctx, &s));
    lb_state_set_observer(s, direct_observe, d);
    for (int b = 0; b < end; b++) {
        int *tok;
        size_t nt;
        CHECK_OK(lb_tokenize(model->tokenizer, t->blocks[b].text, t->blocks[b].len, 1, 0, &tok, &nt));
        CHECK_OK(lb_forward(model, s, tok, nt > (size_t)ctx ? ctx : (int)nt, 0, NULL));
        lb_free(tok);
    }
    lb_state_free(s);
}

static void test_known_answer(void) {
    lb_text t = make_text(eval_a);
    lb_calib_opts o;
    lb_calib_opts_default(&o);
    o.text = &t;
    o.calib_blocks = 3;
    o.ctx = 24; /* cuts the first block */
    o.hist_bins = 2048; /* the direct binning below is written for 2048 bins (the default is 8192) */
    lb_calib_stats *s = NULL;
    CHECK_OK(lb_calibrate(model, &o, &s));
    if (!s) return;
    static direct d;
    d.shared_ok = 1;
    run_direct(&t, 3, 24, &d);
    d.ranges = s;
    run_direct(&t, 3, 24, &d); /* second pass: histogram at the final ranges */
    CHECK(d.shared_ok);
    lb_calib_info info;
    lb_calib_stats_info(s, &info);
    CHECK(info.tokens == d.n[0][0] && info.sequences == 3 && info.hist_bins == 2048);
    double worst_h = 0;
    int mean_bad = 0, max_bad = 0, hist_bad = 0, range_bad = 0;
    for (int l = 0; l < model->cfg.n_layers; l++) {
        for (int w = 0; w < LB_N_LINEARS; w++) {
            const lb_layer_stats *ls = lb_calib_stats_get(s, l, w);
            int in = lb_calib_input_of(w);
            int64_t n = d.n[l][in];
            CHECK(ls->n_samples == n && ls->n_samples == info.tokens);
            int cols = (int)ls->cols;
            for (int i = 0; i < cols * cols; i++) {
                /* relative to the Cauchy-Schwarz scale sqrt(H_aa H_bb) of the entry */
                int a = i / cols, b = i % cols;
                double want = d.xtx[l][in][i], scale = sqrt(d.xtx[l][in][a * cols + a] * d.xtx[l][in][b * cols + b]);
                double err = fabs(ls->xtx[i] - want) / (scale + 1e-300);
                if (err > worst_h) worst_h = err;
            }
            float max_abs = 0;
            for (int i = 0; i < cols; i++) {
                mean_bad += ls->mean_x[i] != (float)(d.sum[l][in][i] / (double)n);
                mean_bad += fabsf(ls->mean_abs_x[i] - (float)(d.sum_abs[l][in][i] / (double)n)) >
                            1e-6f * ls->mean_abs_x[i];
                max_bad += ls->max_abs_x[i] != d.max[l][in][i];
                if (ls->max_abs_x[i] > max_abs) max_abs = ls->max_abs_x[i];
            }
            /* the range is the smallest power of two above every |x| */
            range_bad += !(ls->hist_range > max_abs && ls->hist_range / 2 <= max_abs);
            for (int b = 0; b < 2048; b++) hist_bad += ls->hist[b] != d.hist[l][in][b];
        }
    }
    /* the same products summed in another order: agreement to rounding */
    CHECK_MSG(worst_h < 1e-13, "worst relative X^T X error %g", worst_h);
    CHECK_MSG(mean_bad == 0, "%d mean mismatches", mean_bad);
    CHECK(max_bad == 0);
    CHECK(range_bad == 0);
    CHECK_MSG(hist_bad == 0, "%d histogram bins differ from direct binning", hist_bad);
    /* sharing: q/k/v one set of arrays, gate/up another; rows per linear */
    for (int l = 0; l < model->cfg.n_layers; l++) {
        const lb_layer_stats *q = lb_calib_stats_get(s, l, LB_WQ), *k = lb_calib_stats_get(s, l, LB_WK),
                             *v = lb_calib_stats_get(s, l, LB_WV), *g = lb_calib_stats_get(s, l, LB_W1),
                             *u = lb_calib_stats_get(s, l, LB_W3), *dn = lb_calib_stats_get(s, l, LB_W2);
        CHECK(q->xtx == k->xtx && q->xtx == v->xtx && q->mean_abs_x == v->mean_abs_x && q->hist == k->hist);
        CHECK(g->xtx == u->xtx && g->max_abs_x == u->max_abs_x && g->xtx != q->xtx);
        CHECK(q->rows == model->cfg.dim && k->rows == model->cfg.n_kv_heads * model->cfg.head_dim);
        CHECK(g->rows == model->cfg.hidden_dim && dn->cols == model->cfg.hidden_dim && dn->rows == model->cfg.dim);
    }
    CHECK(lb_calib_stats_get(s, model->cfg.n_layers, 0) == NULL && lb_calib_stats_get(s, 0, 7) == NULL);
    /* by tensor, as the quantization driver finds them */
    int linears = 0, others = 0;
    for (int i = 0; i < lb_model_n_tensors(model); i++) {
        const lb_tensor *tensor = lb_model_tensor_at(model, i);
        const lb_layer_stats *ls = lb_calib_stats_for_tensor(s, model, tensor);
        if (ls) linears += ls->rows == tensor->rows && ls->cols == tensor->cols;
        else others++;
    }
    CHECK(linears == LB_N_LINEARS * model->cfg.n_layers && others == 2 + 2 * model->cfg.n_layers + !model->tied_output);
    CHECK(lb_calib_stats_for_tensor(s, model, &model->layers[1].linear[LB_W2].w) == lb_calib_stats_get(s, 1, LB_W2));
    CHECK(lb_calib_stats_for_tensor(NULL, model, &model->layers[1].linear[LB_W2].w) == NULL);
    for (int l = 0; l < 64; l++)
        for (int i = 0; i < LB_CALIB_N_INPUTS; i++) {
            free(d.xtx[l][i]);
            free(d.sum[l][i]);
            free(d.sum_abs[l][i]);
            free(d.max[l][i]);
            free(d.hist[l][i]);
        }
    lb_calib_stats_free(s);
    lb_text_free(&t);
}

static int same_stats(const lb_calib_stats *a, const lb_calib_stats *b) {
    lb_calib_info ia, ib;
    lb_calib_stats_info(a, &ia);
    lb_calib_stats_info(b, &ib);
    if (ia.tokens != ib.tokens || ia.sequences != ib.sequences || ia.parts != ib.parts || ia.n_layers != ib.n_layers)
        return 0;
    for (int l = 0; l < ia.n_layers; l++)
        for (int w = 0; w < LB_N_LINEARS; w++) {
            const lb_layer_stats *x = lb_calib_stats_get(a, l, w), *y = lb_calib_stats_get(b, l, w);
            size_t c = (size_t)x->cols;
            if (x->n_samples != y->n_samples || x->rows != y->rows || x->cols != y->cols ||
                x->hist_range != y->hist_range || memcmp(x->xtx, y->xtx, c * c * 8) ||
                memcmp(x->mean_abs_x, y->mean_abs_x, c * 4) || memcmp(x->max_abs_x, y->max_abs_x, c * 4) ||
                memcmp(x->mean_x, y->mean_x, c * 4) || x->hist_bins != y->hist_bins || memcmp(x->hist, y->hist, (size_t)x->hist_bins * 8))
                return 0;
        }
    return 1;
}

static lb_calib_stats *calib_text(const lb_text *t, int threads) {
    lb_set_threads(threads);
    lb_calib_opts o;
    lb_calib_opts_default(&o);
    o.text = t;
    o.calib_blocks = 3;
    lb_calib_stats *s = NULL;
    CHECK_OK(lb_calibrate(model, &o, &s));
    lb_set_threads(0);
    return s;
}

/* The eval split never read: other evaluation bytes give the same bytes, and
 * the token count is exactly the calibration blocks' (BOS + tokens each). */
static void test_eval_split_unread_and_threads(void) {
    lb_text ta = make_text(eval_a), tb = make_text(eval_b);
    lb_calib_stats *a = calib_text(&ta, 1), *b = calib_text(&tb, 2), *c = calib_text(&ta, 2);
    if (a && b && c) {
        CHECK(same_stats(a, b));
        CHECK(same_stats(a, c));
        int64_t want = 0;
        for (int i = 0; i < 3; i++) {
            int *tok;
            size_t nt;
            CHECK_OK(lb_tokenize(model->tokenizer, ta.blocks[i].text, ta.blocks[i].len, 1, 0, &tok, &nt));
            want += (int64_t)nt;
            lb_free(tok);
        }
        lb_calib_info info;
        lb_calib_stats_info(a, &info);
        CHECK_MSG(info.tokens == want, "%lld tokens, calibration split has %lld", (long long)info.tokens,
                  (long long)want);
    }
    lb_calib_opts o;
    lb_calib_opts_default(&o);
    o.text = &ta;
    o.calib_blocks = 3;
    o.split = LB_SPLIT_EVAL;
    lb_calib_stats *s = (lb_calib_stats *)1;
    CHECK_FAILS(lb_calibrate(model, &o, &s), LB_ERR_INVALID, "evaluation split");
    CHECK(s == NULL);
    lb_calib_stats_free(a);
    lb_calib_stats_free(b);
    lb_calib_stats_free(c);
    lb_text_free(&ta);
    lb_text_free(&tb);
}

static void test_budgets(void) {
    lb_text t = make_text(eval_a);
    lb_calib_opts o;
    lb_calib_opts_default(&o);
    o.text = &t;
    o.calib_blocks = 3;
    o.tokens = 50;
    lb_calib_stats *s = NULL;
    CHECK_OK(lb_calibrate(model, &o, &s));
    if (s) {
        lb_calib_info info;
        lb_calib_stats_info(s, &info);
        CHECK(info.tokens == 50 && lb_calib_stats_get(s, 1, LB_W2)->n_samples == 50);
        int64_t total = 0;
        const lb_layer_stats *ls = lb_calib_stats_get(s, 0, LB_WO);
        for (int b = 0; b < ls->hist_bins; b++) total += ls->hist[b];
        CHECK(total == 50 * ls->cols);
        lb_calib_stats_free(s);
    }
    o.tokens = 100000;
    CHECK_FAILS(lb_calibrate(model, &o, &s), LB_ERR_INVALID, "has only");
    o.tokens = 0;
    o.blocks = 4;
    CHECK_FAILS(lb_calibrate(model, &o, &s), LB_ERR_INVALID, "has only 3");
    o.blocks = 1;
    CHECK_OK(lb_calibrate(model, &o, &s));
    if (s) {
        lb_calib_info info;
        lb_calib_stats_info(s, &info);
        CHECK(info.sequences == 1);
        lb_calib_stats_free(s);
    }
    o.blocks = 0;
    o.parts = LB_STATS_GRAD_SQ;
    CHECK_FAILS(lb_calibrate(model, &o, &s), LB_ERR_UNSUPPORTED, "gradients");
    o.parts = LB_STATS_MEAN_ABS_X; /* only what is asked is collected */
    CHECK_OK(lb_calibrate(model, &o, &s));
    if (s) {
        const lb_layer_stats *ls = lb_calib_stats_get(s, 0, LB_WQ);
        CHECK(ls->mean_abs_x && !ls->xtx && !ls->hist && !ls->max_abs_x && !ls->mean_x);
        lb_calib_stats_free(s);
    }
    lb_text_free(&t);
    lb_text w;
    CHECK(lb_text_from_memory(" \n\n \n", 5, "blank.txt", &w) != LB_OK); /* empty text: refused when loaded */
    o.text = NULL;
    o.parts = 0;
    CHECK_FAILS(lb_calibrate(model, &o, &s), LB_ERR_INVALID, "no text");
}

static void test_file(const char *dir) {
    lb_text t = make_text(eval_a);
    lb_calib_stats *a = calib_text(&t, 0), *b = NULL;
    char path[600], bad[600];
    snprintf(path, sizeof path, "%s/stats.gguf", dir);
    snprintf(bad, sizeof bad, "%s/bad.gguf", dir);
    CHECK_OK(lb_calib_stats_save(a, path));
    CHECK_OK(lb_calib_stats_load(path, model, &b));
    if (a && b) CHECK(same_stats(a, b));
    lb_calib_stats_free(b);
    /* another model's shape is refused, naming both */
    lb_model other = *model;
    other.cfg.dim = 128;
    CHECK_FAILS(lb_calib_stats_load(path, &other, &b), LB_ERR_INVALID, "another model");
    CHECK(b == NULL);
    /* truncations and flipped bytes fail cleanly */
    char *data;
    size_t size;
    CHECK_OK(lb_read_file(path, &data, &size));
    int ok_count = 0;
    for (size_t cut = 0; cut < size; cut += size / 97 + 1) {
        lb_calib_stats *s = NULL;
        lb_status st = lb_calib_stats_from_memory((const uint8_t *)data, cut, NULL, &s);
        ok_count += st == LB_OK;
        lb_calib_stats_free(s);
    }
    CHECK(ok_count == 0);
    /* a histogram count changed: the counts no longer sum to n x cols */
    const lb_layer_stats *ls = lb_calib_stats_get(a, 0, LB_WQ);
    int64_t needle[4];
    memcpy(needle, ls->hist + 1020, sizeof needle);
    for (size_t i = 0; i + sizeof needle <= size; i += 8)
        if (!memcmp(data + i, needle, sizeof needle)) {
            data[i] ^= 1;
            break;
        }
    lb_calib_stats *s = NULL;
    CHECK_FAILS(lb_calib_stats_from_memory((const uint8_t *)data, size, NULL, &s), LB_ERR_FORMAT, "histogram");
    CHECK_FAILS(lb_calib_stats_load(bad, NULL, &s), LB_ERR_IO, "bad.gguf");
    lb_free(data);
    lb_calib_stats_free(a);
    lb_text_free(&t);
}

/* rms_att of layer 0 at 3e38: the attention input overflows to Inf. */
static void test_overflow(const char *dir) {
    char *data;
    size_t size;
    CHECK_OK(lb_read_file(lb_test_data("models/stories260K.bin"), &data, &size));
    const lb_config *c = &model->cfg;
    size_t off = 28 + (size_t)c->vocab_size * c->dim * 4;
    for (int i = 0; i < c->dim; i++) {
        float v = 3e38f;
        memcpy(data + off + 4 * (size_t)i, &v, 4);
    }
    char path[600];
    snprintf(path, sizeof path, "%s/huge.bin", dir);
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(data, 1, size, f) == size);
    if (f) fclose(f);
    lb_free(data);
    lb_model *m = NULL;
    CHECK_OK(lb_model_load(path, lb_test_data("models/tok512.bin"), &m));
    if (!m) return;
    lb_text t = make_text(eval_a);
    lb_calib_opts o;
    lb_calib_opts_default(&o);
    o.text = &t;
    o.calib_blocks = 3;
    lb_calib_stats *s = NULL;
    CHECK_FAILS(lb_calibrate(m, &o, &s), LB_ERR_NUMERIC, "layer 0 attn_q");
    CHECK(s == NULL);
    lb_text_free(&t);
    lb_model_free(m);
}

int main(void) {
    CHECK_OK(lb_model_load(lb_test_data("models/stories260K.bin"), NULL, &model));
    if (!model) return 1;
    char dir[] = "/tmp/lb_calib_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    test_known_answer();
    test_eval_split_unread_and_threads();
    test_budgets();
    test_file(dir);
    test_overflow(dir);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    lb_model_free(model);
    return lb_test_finish("test_calib");
}
