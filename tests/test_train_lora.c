/* LoRA recovery over a frozen quantized base (docs/TRAINING.md, "LoRA
 * recovery"), against known answers:
 *  - the gradient of every adapter value (A and B of every linear of a tiny
 *    random model, A and B unrounded) against finite differences of the
 *    loss, and the frozen linears' own gradient left at zero;
 *  - B = 0 at the start: the adapted model's loss is exactly the base's as
 *    the inference path computes it;
 *  - distilled from the fp32 teacher on a fixed batch, the KL falls and
 *    every parameter of the base stays bit for bit as it was;
 *  - stored: each linear computes the trainer's (train_check.h), the loss
 *    end to end too, the adapters cost rank (rows + cols) fp16 values per
 *    linear, and the GGUF round trip keeps the logits;
 *  - merged over an f32 base: the weight is W + alpha B A; over int2 with
 *    hqq: the adapter gone, the format kept, the loss still finite;
 *  - refused: LoRA with QAT, without a teacher, from a random model, rank
 *    above a linear's size, a linear with slots; a checkpoint of another rank.
 * Checkpoint/resume bit-identity with LoRA: tests/test_train_resume.c. */
#include "test.h"

#include <unistd.h>

#define FD_REL 1e-3
#define FD_ELEM 3e-3
#include "grad_check.h"
#include "train_check.h"

static lb_rng rng;

/* ---- gradients on a tiny random model ------------------------------------ */

static void test_grad(void) {
    lb_config cfg = train_tiny_config();
    lb_train_model *tm;
    CHECK_OK(lb_train_model_create(&cfg, 1, &tm));
    if (!tm) return;
    lb_train_model_init_random(tm, 11, 0.5f);
    CHECK_OK(lb_lora_attach(tm, 2, 1.5f, 3));
    if (!tm->lora) {
        lb_train_model_free(tm);
        return;
    }
    /* rank (rows + cols) per linear: q, k, v, o 16 + 12 + 12 + 16, gate, down, up 3 x 20; two layers */
    CHECK(tm->frozen && tm->extra.n == (size_t)2 * 2 * 116);
    /* B != 0, so that A has a gradient too */
    for (size_t i = 0; i < tm->extra.n; i++) tm->extra.params[i] = (float)(0.4 * lb_rng_normal(&rng));
    lb_lora_set_exact(tm->lora, 1);
    int in[TINY_B * TINY_T], tg[TINY_B * TINY_T];
    train_tiny_batch(&rng, in, tg);
    train_loss_ctx c = {tm, in, tg, TINY_B, TINY_T};
    double loss;
    CHECK_OK(lb_train_model_forward(tm, in, tg, TINY_B, TINY_T, &loss));
    lb_train_model_zero_grad(tm);
    CHECK(tm->extra.grads[0] == 0.0f);
    CHECK_OK(lb_train_model_backward(tm));
    double *num = malloc(tm->extra.n * sizeof(double));
    numeric_grad(train_loss, &c, tm->extra.params, tm->extra.n, 5e-3f, num);
    printf("adapters of a tiny model (rank 2, alpha 1.5, %zu values, loss %.4f):\n", tm->extra.n, loss);
    check_grad("every adapter value", num, tm->extra.grads, tm->extra.n);
    /* the frozen linears get no gradient of their own */
    double wg = 0;
    for (int i = 0; i < cfg.n_layers * LB_N_LINEARS; i++) {
        const lb_train_linear *L = &tm->linears[i];
        for (int k = 0; k < L->rows * L->cols; k++) wg = fmax(wg, fabs(L->dw[k]));
    }
    CHECK_MSG(wg == 0, "a frozen linear got a gradient (%g)", wg);
    /* the STE: with rounding on, the forward reads A and B rounded to fp16 */
    lb_lora_set_exact(tm->lora, 0);
    double rounded;
    CHECK_OK(lb_train_model_forward(tm, in, tg, TINY_B, TINY_T, &rounded));
    for (size_t i = 0; i < tm->extra.n; i++) tm->extra.params[i] = lb_round_fp16(tm->extra.params[i]);
    lb_lora_set_exact(tm->lora, 1);
    double exact;
    CHECK_OK(lb_train_model_forward(tm, in, tg, TINY_B, TINY_T, &exact));
    CHECK(rounded == exact);
    free(num);
    lb_train_model_free(tm);
}

/* ---- stories260K ------------------------------------------------------------ */

enum { T = 64, RANK = 4, STEPS = 20 };

static lb_train_opts lora_opts(void) {
    lb_train_opts o;
    lb_train_opts_default(&o);
    o.batch = 1;
    o.ctx = T;
    o.steps = STEPS;
    o.lr = 1e-2f;
    o.lora_rank = RANK;
    o.lora_alpha = 2.0f;
    o.distill = LB_DISTILL_KL;
    return o;
}

static void test_recovery(const lb_model *fp32, const lb_train_data *d, const char *dir) {
    lb_model *base = train_quantized_base("int2:g32:asym");
    if (!base) return;
    lb_train_opts o = lora_opts();
    lb_trainer *t;
    CHECK_OK(lb_trainer_create(base, &o, &t));
    if (!t) {
        lb_model_free(base);
        return;
    }
    lb_trainer_parts p;
    lb_trainer_parts_get(t, &p);
    float *params0 = malloc(p.tm->n_params * sizeof(float));
    memcpy(params0, p.tm->params, p.tm->n_params * sizeof(float));
    lb_rng r;
    lb_rng_seed(&r, 9);
    int fixed[T + 1], tok[T + 1], other[T + 1];
    CHECK_OK(lb_train_data_batch(d, 1, T, &r, fixed));
    CHECK_OK(lb_train_data_batch(d, 1, T, &r, other));
    /* B = 0: the base exactly (the trainer's decoded weights against the kernels) */
    double start, base_nll = train_model_nll(base, fixed, T), base_other = train_model_nll(base, other, T);
    CHECK_OK(lb_trainer_loss(t, fixed, &start));
    CHECK_NEAR(start, base_nll, 1e-5 * base_nll);
    /* no teacher yet: refused */
    memcpy(tok, fixed, sizeof tok);
    CHECK_FAILS(lb_trainer_step(t, tok, NULL), LB_ERR_INVALID, "set a teacher");
    CHECK_OK(lb_trainer_set_teacher(t, fp32));
    lb_train_step_info first, last;
    for (int s = 0; s < STEPS; s++) {
        memcpy(tok, fixed, sizeof tok);
        CHECK_OK(lb_trainer_step(t, tok, s ? &last : &first));
    }
    printf("stories260K, int2:g32:asym base, rank %d, alpha 2: %d kl steps on one window: kl %.4f -> %.4f "
           "(ce %.4f -> %.4f)\n",
           RANK, STEPS, first.kl, last.kl, first.ce, last.ce);
    CHECK_MSG(last.kl < 0.7 * first.kl, "LoRA did not lower the KL (%g -> %g)", first.kl, last.kl);
    CHECK_MSG(!memcmp(params0, p.tm->params, p.tm->n_params * sizeof(float)), "the frozen base changed");
    /* stored onto the base: the file computes what the trainer does */
    CHECK_OK(lb_trainer_store(t, base));
    size_t slot = 0, want = 0;
    for (int i = 0; i < base->cfg.n_layers * LB_N_LINEARS; i++) {
        const lb_linear *lin = &base->layers[i / LB_N_LINEARS].linear[i % LB_N_LINEARS];
        CHECK(lin->adapter.rank == RANK && lin->adapter.alpha == 2.0f);
        slot += lb_linear_slot_bytes(lin);
        want += (size_t)2 * RANK * (size_t)(lin->w.rows + lin->w.cols);
    }
    printf("  adapters: %zu bytes stored, %zu expected (fp16 A and B)\n", slot, want);
    CHECK(slot >= want && slot <= want + (size_t)base->cfg.n_layers * LB_N_LINEARS * 8);
    double exported = train_check_stored(t, base, other, T);
    /* GGUF round trip */
    char path[300];
    snprintf(path, sizeof path, "%s/lora.gguf", dir);
    CHECK_OK(lb_model_save_gguf(base, path));
    lb_model *back;
    CHECK_OK(lb_model_load(path, NULL, &back));
    if (back) {
        CHECK(train_model_nll(back, other, T) == exported);
        lb_model_free(back);
    }
    remove(path);
    /* merged into int2 by hqq: no adapter, the same format, a working model */
    CHECK_OK(lb_lora_merge(base, "hqq"));
    int left = 0, same_spec = 1;
    lb_qspec spec = lb_test_spec("int2:g32:asym");
    for (int i = 0; i < base->cfg.n_layers * LB_N_LINEARS; i++) {
        const lb_linear *lin = &base->layers[i / LB_N_LINEARS].linear[i % LB_N_LINEARS];
        left += lin->adapter.rank != 0;
        same_spec &= lb_qspec_equal(&lin->w.spec, &spec);
    }
    double merged = train_model_nll(base, other, T);
    printf("  merged by hqq into int2:g32:asym: %.6f on the other window (base %.6f, adapted %.6f)\n", merged,
           base_other, exported);
    CHECK(!left && same_spec && isfinite(merged));
    CHECK_FAILS(lb_lora_merge(base, "nosuch"), LB_ERR_INVALID, "unknown method");
    free(params0);
    lb_trainer_free(t);
    lb_model_free(base);
}

/* merged over an f32 base: W + alpha B A, to float rounding */
static void test_merge_f32(void) {
    lb_model *m;
    CHECK_OK(lb_model_load(lb_test_data("models/stories260K.bin"), NULL, &m));
    if (!m) return;
    lb_linear *lin = &m->layers[1].linear[LB_W2];
    int64_t rows = lin->w.rows, cols = lin->w.cols;
    enum { R = 3 };
    float *a = malloc(sizeof(float) * R * cols), *b = malloc(sizeof(float) * rows * R);
    float *w0 = malloc(sizeof(float) * rows * cols), *w1 = malloc(sizeof(float) * rows * cols);
    for (int64_t i = 0; i < R * cols; i++) a[i] = lb_round_fp16((float)(0.1 * lb_rng_normal(&rng)));
    for (int64_t i = 0; i < rows * R; i++) b[i] = lb_round_fp16((float)(0.1 * lb_rng_normal(&rng)));
    CHECK_OK(lb_dequantize(&lin->w, w0));
    CHECK_OK(lb_linear_set_adapter(lin, R, a, b, 0.5f));
    CHECK_OK(lb_lora_merge(m, "rtn"));
    CHECK(lin->adapter.rank == 0);
    CHECK_OK(lb_dequantize(&lin->w, w1));
    double worst = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            double want = w0[r * cols + c];
            for (int k = 0; k < R; k++) want += 0.5 * b[r * R + k] * a[k * cols + c];
            worst = fmax(worst, fabs(w1[r * cols + c] - want) / (fabs(want) + 1e-3));
        }
    printf("merge over an f32 base: max relative |W1 - (W0 + alpha B A)| = %.3g\n", worst);
    CHECK(worst < 1e-5);
    free(a);
    free(b);
    free(w0);
    free(w1);
    lb_model_free(m);
}

static void test_refusals(const lb_model *fp32) {
    lb_trainer *t = NULL;
    lb_train_opts o = lora_opts();
    o.qat = "bitnet";
    CHECK_FAILS(lb_trainer_create(fp32, &o, &t), LB_ERR_INVALID, "quantization-aware");
    o = lora_opts();
    o.act_bits = 8;
    CHECK_FAILS(lb_trainer_create(fp32, &o, &t), LB_ERR_INVALID, "quantization-aware");
    o = lora_opts();
    o.lora_rank = 65; /* every linear of stories260K has a side of 64 */
    CHECK_FAILS(lb_trainer_create(fp32, &o, &t), LB_ERR_INVALID, "exceeds");
    o.lora_rank = -1;
    CHECK_FAILS(lb_trainer_create(fp32, &o, &t), LB_ERR_INVALID, "LoRA rank");
    o = lora_opts();
    o.lora_alpha = 0;
    CHECK_FAILS(lb_trainer_create(fp32, &o, &t), LB_ERR_INVALID, "alpha");
    o = lora_opts();
    CHECK_FAILS(lb_trainer_create_random(&fp32->cfg, 1, 1, 0.02f, &o, &t), LB_ERR_INVALID, "");
    /* a linear with a slot: the base must be plain */
    lb_model *m;
    CHECK_OK(lb_model_load(lb_test_data("models/stories260K.bin"), NULL, &m));
    if (!m) return;
    float *s = malloc(sizeof(float) * m->cfg.dim);
    for (int i = 0; i < m->cfg.dim; i++) s[i] = 2.0f;
    CHECK_OK(lb_linear_set_in_scale(&m->layers[0].linear[0], s));
    o = lora_opts();
    CHECK_FAILS(lb_trainer_create(m, &o, &t), LB_ERR_UNSUPPORTED, "");
    CHECK(t == NULL);
    free(s);
    lb_model_free(m);
}

int main(void) {
    /* The stored model runs through the fallback path (each tile decoded,
     * then a float GEMM), so that "the file computes what the trainer did"
     * is checked to float accuracy: the integer kernels quantize the
     * activations to int8 (LB_ACT_Q8_32, as llama.cpp's q8 dot products),
     * ~1% of an output here, and their accuracy against the scalar
     * reference is test_kernel_registry's. Read once, before any matmul. */
    setenv("LB_KERNEL", "fallback", 1);
    lb_rng_seed(&rng, 2024);
    test_grad();
    lb_model *fp32;
    lb_text text;
    CHECK_OK(lb_model_load(lb_test_data("models/stories260K.bin"), NULL, &fp32));
    CHECK_OK(lb_text_load(lb_test_data("text/tinystories-sample.txt"), &text));
    lb_train_data d;
    CHECK_OK(lb_train_data_load(fp32, &text, LB_SPLIT_CALIB, 64, &d));
    char dir[] = "/tmp/lb_lora_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    test_recovery(fp32, &d, dir);
    test_merge_f32();
    test_refusals(fp32);
    rmdir(dir);
    lb_train_data_free(&d);
    lb_text_free(&text);
    lb_model_free(fp32);
    return lb_test_finish("test_train_lora");
}
