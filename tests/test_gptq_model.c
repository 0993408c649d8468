/* GPTQ on real layers of stories260K, with H = X^T X collected here from the
 * calibration split (blocks 1..128 of tinystories-sample.txt, never the
 * evaluation split) through the forward pass's linear observer: GPTQ's proxy
 * loss tr(dW H dW^T) must be below RTN's on blk.0.ffn_gate (64 inputs) and
 * blk.0.ffn_down (172 inputs: groups, and a padded last group). This is a
 * stand-in until src/calib provides the statistics; skipped without data. */
#include "test.h"

typedef struct {
    int layer, which, cols;
    double *h;
    int64_t n;
} collector;

/* H += x^T x for the observed linears (c[0], c[1]) */
static lb_status observe(void *user, int layer, int which, const float *x, int n, int cols) {
    collector *cs = user;
    for (int k = 0; k < 2; k++) {
        collector *c = &cs[k];
        if (layer != c->layer || which != c->which) continue;
        if (cols != c->cols) return lb_fail(LB_ERR_INVALID, "observer: %d inputs, expected %d", cols, c->cols);
        for (int i = 0; i < n; i++)
            for (int a = 0; a < cols; a++)
                for (int b = 0; b < cols; b++) c->h[a * cols + b] += (double)x[i * cols + a] * x[i * cols + b];
        c->n += n;
    }
    return LB_OK;
}

static double proxy_loss(const float *w, const lb_tensor *t, const double *h) {
    int64_t rows = t->rows, cols = t->cols;
    float *q = malloc((size_t)(rows * cols) * sizeof(float));
    if (lb_dequantize(t, q) != LB_OK) return NAN;
    double loss = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t a = 0; a < cols; a++) {
            double s = 0, da = (double)w[r * cols + a] - q[r * cols + a];
            for (int64_t b = 0; b < cols; b++) s += h[a * cols + b] * ((double)w[r * cols + b] - q[r * cols + b]);
            loss += da * s;
        }
    free(q);
    return loss;
}

/* one forward pass over the calibration blocks fills both collectors */
static void collect(lb_model *m, const lb_text *text, int first, int end, collector *cs) {
    lb_state *s = NULL;
    CHECK_OK(lb_state_create(m, m->cfg.seq_len, &s));
    if (!s) return;
    lb_state_set_observer(s, observe, cs);
    for (int b = first; b < end; b++) {
        int *tok;
        size_t nt;
        CHECK_OK(lb_tokenize(m->tokenizer, text->blocks[b].text, text->blocks[b].len, 1, 0, &tok, &nt));
        int n = nt > (size_t)m->cfg.seq_len ? m->cfg.seq_len : (int)nt;
        CHECK_OK(lb_forward(m, s, tok, n, 0, NULL));
        lb_free(tok);
    }
    lb_state_free(s);
}

static void check_layer(lb_model *m, const collector *cp, const char *name) {
    collector c = *cp;
    lb_tensor *wt = &m->layers[0].linear[c.which].w;
    int64_t rows = wt->rows, cols = wt->cols;
    CHECK(c.n > 10000);
    float *w = malloc((size_t)(rows * cols) * sizeof(float));
    CHECK_OK(lb_dequantize(wt, w));
    lb_layer_stats stats = {.n_samples = c.n, .rows = rows, .cols = cols, .xtx = c.h};
    static const char *formats[] = {"int3:g64:asym", "int2:g32:asym", "int4:g64:asym", "int3:row:sym"};
    static const char *options[] = {"", "act_order=1"};
    for (size_t f = 0; f < sizeof formats / sizeof formats[0]; f++)
        for (int k = 0; k < 2; k++) {
            lb_qspec spec = lb_test_spec(formats[f]);
            const lb_method *gptq = lb_method_find("gptq"), *rtn = lb_method_find("rtn");
            lb_method_opts o;
            lb_method_opts_default(gptq, &o);
            if (options[k][0]) CHECK_OK(lb_method_opts_parse(&o, options[k]));
            lb_method_report rep;
            o.report = &rep;
            lb_tensor g, q;
            CHECK_OK(lb_quantize_tensor(gptq, &o, &stats, w, rows, cols, &spec, name, &g));
            CHECK_OK(lb_quantize_tensor(rtn, NULL, NULL, w, rows, cols, &spec, name, &q));
            double lg = proxy_loss(w, &g, c.h), lr = proxy_loss(w, &q, c.h);
            CHECK_MSG(lg < lr, "%s %s %s: gptq %g, rtn %g", name, formats[f], options[k], lg, lr);
            printf("  %-20s %-14s %-12s gptq/rtn proxy loss %.3f (damping %g x mean diag, %lld dead inputs)\n", name,
                   formats[f], options[k][0] ? options[k] : "defaults", lg / lr, rep.damping_rel,
                   (long long)rep.dead_inputs);
            lb_tensor_free(&g);
            lb_tensor_free(&q);
        }
    free(w);
}

int main(void) {
#ifndef LB_HAVE_BLAS
    fprintf(stderr, "SKIPPED: lowbit was built without OpenBLAS/LAPACKE, which gptq needs\n");
    return 77;
#endif
    const char *model = lb_test_data("models/stories260K.bin"), *tok = lb_test_data("models/tok512.bin"),
               *txt = lb_test_data("text/tinystories-sample.txt");
    lb_model *m = NULL;
    lb_text text;
    CHECK_OK(lb_model_load(model, tok, &m));
    CHECK_OK(lb_text_load(txt, &text));
    int first = 0, end = 0;
    CHECK_OK(lb_text_split(&text, LB_SPLIT_CALIB, 128, &first, &end));
    CHECK(first == 0 && end == 128); /* the calibration split only */
    if (m && lb_test_failures == 0) {
        int dim = m->cfg.dim, hidden = m->cfg.hidden_dim;
        collector cs[2] = {{0, LB_W1, dim, calloc((size_t)dim * dim, sizeof(double)), 0},
                           {0, LB_W2, hidden, calloc((size_t)hidden * hidden, sizeof(double)), 0}};
        collect(m, &text, first, end, cs);
        check_layer(m, &cs[0], "blk.0.ffn_gate.weight");
        check_layer(m, &cs[1], "blk.0.ffn_down.weight");
        free(cs[0].h);
        free(cs[1].h);
    }
    lb_text_free(&text);
    lb_model_free(m);
    return lb_test_finish("test_gptq_model");
}
