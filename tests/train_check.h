/* What the training tests check of a stored model (test_train_qat.c,
 * test_train_lora.c, test_train_e2eqp.c): every linear of the file, run by the inference path
 * (lb_linear_forward: the format's kernel, int8 activations, adapters),
 * computes what the trainer's linear computed on the same input.
 *
 * Layer by layer, not only end to end, because a model with quantized
 * activations is discontinuous: a last-bit difference in a float sum (the
 * trainer's BLAS GEMM against the kernel's own order) can move a value
 * across an int8 rounding boundary, and in a model overfitted by a test's
 * few large steps such flips cascade through the layers (seen: 2e-3 of
 * the loss with OpenBLAS's SkylakeX GEMM, 0 with its Haswell one). One
 * linear on one input has no cascade, so it is held to float accuracy.
 * The includer runs with LB_KERNEL=fallback (decode, then a float GEMM):
 * the integer kernels' int8 activations are their own approximation. */
#ifndef LB_TESTS_TRAIN_CHECK_H
#define LB_TESTS_TRAIN_CHECK_H

#include <math.h>
#include <stdlib.h>

#include "lowbit/quant.h"
#include "test.h"
#include "train/train_internal.h"

/* max over the linears of max |y_file - y_trainer| / max |y_trainer|, on N
 * random input rows (N(0,1)); -1 when something could not run */
static inline double train_linear_gap(lb_trainer *t, const lb_model *m, int N, uint64_t seed) {
    lb_trainer_parts p;
    lb_trainer_parts_get(t, &p);
    lb_rng rng;
    lb_rng_seed(&rng, seed);
    double worst = 0;
    for (int i = 0; i < m->cfg.n_layers * LB_N_LINEARS; i++) {
        lb_train_linear *L = &p.tm->linears[i];
        const lb_linear *lin = &m->layers[i / LB_N_LINEARS].linear[i % LB_N_LINEARS];
        float *x = malloc(sizeof(float) * N * L->cols);
        float *yt = malloc(sizeof(float) * N * L->rows), *yf = malloc(sizeof(float) * N * L->rows);
        for (int k = 0; k < N * L->cols; k++) x[k] = (float)lb_rng_normal(&rng);
        int ok = L->ops->forward(L, x, N, yt) == LB_OK && lb_linear_forward(lin, x, N, yf, NULL) == LB_OK;
        double d = 0, ymax = 0;
        for (int k = 0; ok && k < N * L->rows; k++) {
            d = fmax(d, fabs((double)yf[k] - yt[k]));
            ymax = fmax(ymax, fabs((double)yt[k]));
        }
        free(x);
        free(yt);
        free(yf);
        if (!ok) return -1;
        worst = fmax(worst, ymax > 0 ? d / ymax : d);
    }
    return worst;
}

/* The tiny model of the whole-model gradient checks (test_train_grad.c,
 * test_train_lora.c): 2 layers, dim 8, GQA 2/1 heads, vocabulary 13. */
static inline lb_config train_tiny_config(void) {
    lb_config cfg = {.dim = 8, .hidden_dim = 12, .n_layers = 2, .n_heads = 2, .n_kv_heads = 1, .vocab_size = 13,
                     .seq_len = 8, .head_dim = 4, .norm_eps = 1e-5f, .rope_theta = 10000.0f};
    return cfg;
}
enum { TINY_B = 2, TINY_T = 6 };
/* A batch of TINY_B x TINY_T random inputs and targets, target 4 unscored. */
static inline void train_tiny_batch(lb_rng *rng, int *in, int *tg) {
    for (int i = 0; i < TINY_B * TINY_T; i++) {
        in[i] = (int)(lb_rng_u32(rng) % 13);
        tg[i] = i == 4 ? -1 : (int)(lb_rng_u32(rng) % 13);
    }
}
/* The training loss of a fixed batch, as numeric_grad's callback. */
typedef struct {
    lb_train_model *tm;
    int *in, *tg, b, t;
} train_loss_ctx;
static inline double train_loss(void *p) {
    train_loss_ctx *c = p;
    double loss = NAN;
    lb_train_model_forward(c->tm, c->in, c->tg, c->b, c->t, &loss);
    return loss;
}

/* Mean next-token NLL of tok[0..T] under m through the inference path. */
static inline double train_model_nll(const lb_model *m, const int *tok, int T) {
    int V = m->cfg.vocab_size;
    float *logits = malloc(sizeof(float) * T * V);
    CHECK_OK(lb_test_logits(m, tok, T, logits));
    double nll = 0;
    for (int t = 0; t < T; t++) {
        const float *l = logits + (size_t)t * V;
        double mx = l[0], s = 0;
        for (int v = 1; v < V; v++) mx = fmax(mx, l[v]);
        for (int v = 0; v < V; v++) s += exp(l[v] - mx);
        nll += log(s) + mx - l[tok[t + 1]];
    }
    free(logits);
    return nll / T;
}

/* A model stored from trainer t (onto the same base) computes what t does:
 * each linear to 1e-5 of its largest output, and the loss of the window
 * tok[0..T] through the inference path to 1e-5; returns that loss. */
static inline double train_check_stored(lb_trainer *t, const lb_model *m, const int *tok, int T) {
    double gap = train_linear_gap(t, m, 4, 78);
    double trained = NAN, exported = train_model_nll(m, tok, T);
    CHECK_OK(lb_trainer_loss(t, tok, &trained));
    printf("  per linear: max |y_file - y_trainer| / max |y| = %.3g; another window: file %.6f, trainer %.6f\n", gap,
           exported, trained);
    CHECK(gap >= 0 && gap < 1e-5);
    CHECK_NEAR(exported, trained, 1e-5 * trained);
    return exported;
}

/* stories260K with every linear round-to-nearest quantized to spec (a
 * LoRA base); NULL after a failed check */
static inline lb_model *train_quantized_base(const char *spec_text) {
    lb_model *m = NULL;
    CHECK_OK(lb_model_load(lb_test_data("models/stories260K.bin"), NULL, &m));
    lb_qspec spec = lb_test_spec(spec_text);
    for (int i = 0; m && i < m->cfg.n_layers * LB_N_LINEARS; i++) {
        lb_linear *lin = &m->layers[i / LB_N_LINEARS].linear[i % LB_N_LINEARS];
        int64_t rows = lin->w.rows, cols = lin->w.cols;
        float *w = malloc(sizeof(float) * rows * cols);
        lb_tensor q;
        int ok = lb_dequantize(&lin->w, w) == LB_OK &&
                 lb_quantize_to_tensor(w, rows, cols, &spec, NULL, lin->w.name, &q) == LB_OK &&
                 lb_linear_set_weight(lin, &q) == LB_OK;
        free(w);
        CHECK_MSG(ok, "quantizing %s to %s: %s", lin->w.name, spec_text, lb_last_error());
        if (!ok) {
            lb_model_free(m);
            m = NULL;
        }
    }
    return m;
}

#endif
