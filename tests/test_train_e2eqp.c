/* EfficientQAT's phase 2, the e2eqp QAT scheme (src/train/qat_schemes.c;
 * docs/TRAINING.md "EfficientQAT"), against known answers on stories260K
 * quantized by rtn (int2:g32:asym, int3:g16:asym:zint, int3:g16:sym):
 *  - the start is the stored model: every linear's forward weight is the
 *    decoded base bit for bit (factor 1, fp16 scales stored again), and the
 *    trainer's loss is the inference path's;
 *  - the gradient of sampled step-size factors (moved off 1, scales not
 *    rounded to fp16) against the fourth-order finite difference of the
 *    loss, h = 2e-2: measured relative errors 4e-4..7e-4 against
 *    grad_check.h's 1e-3 (h = 1e-2: the float forward's noise, up to
 *    1.4e-3; h = 5e-2: the loss's curvature, 1.8e-3 at int2);
 *  - distilled from the fp32 teacher on a fixed window: the KL falls, every
 *    code and zero point stays the base's, the model's own parameters stay
 *    bit for bit;
 *  - stored onto the base: the same formats and sizes, each linear computes
 *    the trainer's, the loss end to end too;
 *  - refused: an f32 model, hierarchical scales, a --format, a random model,
 *    distillation without a teacher.
 * Checkpoint/resume bit-identity with e2eqp: tests/test_train_resume.c. */
#include "test.h"

#include "grad_check.h"
#include "train/qat.h"
#include "train_check.h"

enum { T = 64, STEPS = 20 };

static lb_train_opts e2eqp_opts(void) {
    lb_train_opts o;
    lb_train_opts_default(&o);
    o.batch = 1;
    o.ctx = T;
    o.steps = STEPS;
    o.lr = 1e-2f;
    o.weight_decay = 0;
    o.qat = "e2eqp";
    o.distill = LB_DISTILL_KL;
    return o;
}

typedef struct {
    lb_train_model *tm;
    const int *in, *tg;
} fd_ctx;

static double fd_loss(void *p) {
    fd_ctx *c = p;
    double l = 0;
    CHECK_OK(lb_train_model_forward(c->tm, c->in, c->tg, 1, T, &l));
    return l;
}

/* stories260K quantized to spec by rtn and an e2eqp trainer over it; NULL
 * (nothing held) after a failed check */
static lb_trainer *over_base(const char *spec, int distill, lb_model **base) {
    *base = train_quantized_base(spec);
    if (!*base) return NULL;
    lb_train_opts o = e2eqp_opts();
    o.distill = distill;
    lb_trainer *t = NULL;
    CHECK_OK(lb_trainer_create(*base, &o, &t));
    if (!t) {
        lb_model_free(*base);
        *base = NULL;
    }
    return t;
}

/* the start, then the factors' gradient */
static void test_start_and_grad(const char *spec, const lb_train_data *d) {
    lb_model *base;
    lb_trainer *t = over_base(spec, LB_DISTILL_NONE, &base); /* cross-entropy: EfficientQAT's own loss */
    if (!t) return;
    lb_trainer_parts p;
    lb_trainer_parts_get(t, &p);
    struct lb_qat *Q = lb_trainer_qat(t);
    CHECK(p.tm->frozen && Q && Q->n_states == base->cfg.n_layers * LB_N_LINEARS);
    int same = 1;
    size_t groups = 0;
    for (int i = 0; i < Q->n_states; i++) {
        const lb_qat_state *S = &Q->states[i];
        same &= !memcmp(S->weff, S->L->w, (size_t)S->rows * S->cols * sizeof(float));
        same &= lb_qspec_equal(&S->spec, &base->layers[i / LB_N_LINEARS].linear[i % LB_N_LINEARS].w.spec);
        groups += S->n_learned;
    }
    CHECK_MSG(same, "%s: the start is not the stored model", spec);
    CHECK(groups == p.tm->extra.n);
    lb_rng r;
    lb_rng_seed(&r, 5);
    int tok[T + 1];
    CHECK_OK(lb_train_data_batch(d, 1, T, &r, tok));
    double start, file = train_model_nll(base, tok, T);
    CHECK_OK(lb_trainer_loss(t, tok, &start));
    printf("%s: %zu step-size factors; start loss %.6f, the stored model's %.6f\n", spec, groups, start, file);
    CHECK_NEAR(start, file, 1e-5 * file);
    /* gradients, away from the start */
    for (int i = 0; i < Q->n_states; i++) Q->states[i].exact_scales = 1;
    for (size_t k = 0; k < p.tm->extra.n; k++) p.tm->extra.params[k] = 0.8f + 0.4f * lb_rng_f32(&r);
    int in[T], tg[T];
    memcpy(in, tok, sizeof in);
    memcpy(tg, tok + 1, sizeof tg);
    double loss;
    CHECK_OK(lb_train_model_forward(p.tm, in, tg, 1, T, &loss));
    lb_train_model_zero_grad(p.tm);
    CHECK_OK(lb_train_model_backward(p.tm));
    enum { SAMPLES = 48 };
    double num[SAMPLES];
    float ana[SAMPLES];
    fd_ctx c = {p.tm, in, tg};
    for (int s = 0; s < SAMPLES; s++) {
        size_t k = (size_t)(lb_rng_u32(&r) % (uint32_t)p.tm->extra.n);
        ana[s] = p.tm->extra.grads[k];
        num[s] = numeric_grad_at(fd_loss, &c, p.tm->extra.params, k, 2e-2f);
    }
    char what[96];
    snprintf(what, sizeof what, "%s: %d sampled step-size factors", spec, SAMPLES);
    check_grad(what, num, ana, SAMPLES);
    lb_trainer_free(t);
    lb_model_free(base);
}

static void test_training(const lb_model *fp32, const lb_train_data *d) {
    lb_model *base;
    lb_trainer *t = over_base("int2:g32:asym", LB_DISTILL_KL, &base);
    if (!t) return;
    lb_trainer_parts p;
    lb_trainer_parts_get(t, &p);
    float *params0 = malloc(p.tm->n_params * sizeof(float));
    memcpy(params0, p.tm->params, p.tm->n_params * sizeof(float));
    /* the codes and zero points as stored */
    struct lb_qat *Q = lb_trainer_qat(t);
    size_t *bytes0 = calloc((size_t)Q->n_states, sizeof *bytes0);
    lb_rng r;
    lb_rng_seed(&r, 9);
    int fixed[T + 1], tok[T + 1], other[T + 1];
    CHECK_OK(lb_train_data_batch(d, 1, T, &r, fixed));
    CHECK_OK(lb_train_data_batch(d, 1, T, &r, other));
    memcpy(tok, fixed, sizeof tok);
    CHECK_FAILS(lb_trainer_step(t, tok, NULL), LB_ERR_INVALID, "set a teacher");
    CHECK_OK(lb_trainer_set_teacher(t, fp32));
    lb_train_step_info first, last;
    for (int s = 0; s < STEPS; s++) {
        memcpy(tok, fixed, sizeof tok);
        CHECK_OK(lb_trainer_step(t, tok, s ? &last : &first));
    }
    printf("int2:g32:asym, e2eqp: %d kl steps on one window: kl %.4f -> %.4f (ce %.4f -> %.4f)\n", STEPS, first.kl,
           last.kl, first.ce, last.ce);
    CHECK_MSG(last.kl < 0.9 * first.kl, "e2eqp did not lower the KL (%g -> %g)", first.kl, last.kl);
    CHECK_MSG(!memcmp(params0, p.tm->params, p.tm->n_params * sizeof(float)), "the frozen model changed");
    double fmin = INFINITY, fmax = -INFINITY;
    for (size_t k = 0; k < p.tm->extra.n; k++) {
        fmin = fmin < p.tm->extra.params[k] ? fmin : p.tm->extra.params[k];
        fmax = fmax > p.tm->extra.params[k] ? fmax : p.tm->extra.params[k];
    }
    printf("  factors now in [%.4f, %.4f]\n", fmin, fmax);
    CHECK(fmin < 1.0 && fmax > 1.0);
    /* codes and zero points: still the base's */
    int codes_same = 1;
    for (int i = 0; i < Q->n_states; i++) {
        const lb_qat_state *S = &Q->states[i];
        const lb_tensor *w = &base->layers[i / LB_N_LINEARS].linear[i % LB_N_LINEARS].w;
        lb_qtensor q0;
        CHECK_OK(lb_qtensor_init(&q0, &w->spec, S->rows, S->cols));
        CHECK_OK(lb_qtensor_decode(&q0, w->data, w->nbytes));
        codes_same &= !memcmp(q0.codes, S->q.codes, (size_t)S->rows * q0.cols_padded);
        bytes0[i] = w->nbytes;
        lb_qtensor_free(&q0);
    }
    CHECK_MSG(codes_same, "a code changed");
    /* stored onto the base */
    CHECK_OK(lb_trainer_store(t, base));
    int formats = 1;
    lb_qspec spec = lb_test_spec("int2:g32:asym");
    for (int i = 0; i < Q->n_states; i++) {
        const lb_tensor *w = &base->layers[i / LB_N_LINEARS].linear[i % LB_N_LINEARS].w;
        formats &= lb_qspec_equal(&w->spec, &spec) && w->nbytes == bytes0[i];
    }
    CHECK_MSG(formats, "the stored formats or sizes changed");
    CHECK(base->tok_embd.spec.family == LB_FAMILY_F32);
    train_check_stored(t, base, other, T);
    free(bytes0);
    free(params0);
    lb_trainer_free(t);
    lb_model_free(base);
}

static void test_refusals(const lb_model *fp32) {
    lb_trainer *t = NULL;
    lb_train_opts o = e2eqp_opts();
    CHECK_FAILS(lb_trainer_create(fp32, &o, &t), LB_ERR_INVALID, "int<b>:g<G>");
    o.distill = LB_DISTILL_NONE;
    CHECK_FAILS(lb_trainer_create_random(&fp32->cfg, 1, 1, 0.02f, &o, &t), LB_ERR_INVALID, "not a random one");
    o.distill = LB_DISTILL_KL;
    lb_model *h = train_quantized_base("int2:g32:asym:s4:r4");
    if (h) {
        CHECK_FAILS(lb_trainer_create(h, &o, &t), LB_ERR_INVALID, "fp16 scales");
        lb_model_free(h);
    }
    lb_model *b = train_quantized_base("int2:g32:asym");
    if (b) {
        o.format = "int2:g32:asym";
        CHECK_FAILS(lb_trainer_create(b, &o, &t), LB_ERR_INVALID, "no --format");
        lb_model_free(b);
    }
    CHECK(t == NULL);
}

int main(void) {
    /* the stored model runs through the fallback path: see test_train_lora.c */
    setenv("LB_KERNEL", "fallback", 1);
    lb_model *fp32;
    lb_text text;
    CHECK_OK(lb_model_load(lb_test_data("models/stories260K.bin"), NULL, &fp32));
    CHECK_OK(lb_text_load(lb_test_data("text/tinystories-sample.txt"), &text));
    lb_train_data d;
    CHECK_OK(lb_train_data_load(fp32, &text, LB_SPLIT_CALIB, 128, &d));
    test_start_and_grad("int2:g32:asym", &d);
    test_start_and_grad("int3:g16:asym:zint", &d);
    test_start_and_grad("int3:g16:sym", &d);
    test_training(fp32, &d);
    test_refusals(fp32);
    lb_train_data_free(&d);
    lb_text_free(&text);
    lb_model_free(fp32);
    return lb_test_finish("test_train_e2eqp");
}
