/* The training layer against known answers:
 *  - every op's backward against central finite differences of its forward,
 *  - the whole model's gradient (every parameter, tied and untied, GQA) on a
 *    tiny random model against finite differences of its loss,
 *  - the training forward against the inference forward on stories260K,
 *  - AdamW against a step computed by hand, the schedule, clipping,
 *  - a few steps on stories260K's training split lower the training loss,
 *  - the evaluation split is refused, results do not depend on threads.
 *
 * Tolerance of the finite-difference checks. The ops run in float; a check
 * perturbs one input by +-h and +-2h and takes the fourth-order central
 * stencil (8 (L(x+h) - L(x-h)) - (L(x+2h) - L(x-2h))) / 12h, with L (a fixed
 * random projection of the op's output, or the loss) accumulated in double.
 * Its error: truncation ~h^4 |L^(5)| / 30, and the float rounding of the
 * forward, ~6e-8 |L| sqrt(n) * 1.5 / h. For the ops (inputs of order 1,
 * h = 1e-2) both are ~1e-5 of the gradient's scale; measured relative errors
 * are 1e-6..6e-5. For the tiny model, h = 1e-2 leaves a truncation error of
 * 1.4e-3 in the embedding's gradient (halving h divides it by 13, as h^4
 * predicts: it is the stencil, not the gradient), so the model runs at
 * h = 5e-3 (measured: 1e-4). We require the relative error of the whole
 * gradient vector, |num - ana| / max(|num|, |ana|), below 1e-3, and every
 * element within 3e-3 of the largest (per tensor for the model, so none
 * hides behind the others): 10x the measured errors, and 3x below a
 * gradient wrong by 1% in one element, which check_grad() also builds and
 * requires the criterion to reject. */
#include "test.h"

#include "train/ops.h"
#include "train/train_internal.h"

#ifdef LB_HAVE_BLAS
#include <cblas.h>
#endif

#define FD_H 1e-2f       /* ops: inputs of order 1 */
#define FD_H_MODEL 5e-3f /* the model: its embedding rows (rms 0.5) meet RMSNorm, whose higher derivatives grow as 1/rms^k */
#define FD_REL 1e-3
#define FD_ELEM 3e-3
#include "grad_check.h"
#include "train_check.h"

static lb_rng rng;
static void fill(float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(scale * lb_rng_normal(&rng));
}
static double dot_d(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* ---- ops: L = sum(out * R) for a fixed random R ------------------------------ */

enum { B = 2, T = 5, NH = 4, NKV = 2, HD = 4, DIM = NH * HD, KVD = NKV * HD, N = B * T, HID = 6, V = 7, VOC = 9 };

typedef struct {
    float x[N * DIM], w[DIM], q[N * DIM], k[N * KVD], v[N * KVD], g[N * HID], u[N * HID], logits[N * V];
    float wm[HID * DIM], xm[N * DIM], embd[VOC * DIM];
    int tokens[N], targets[N];
    float r_dim[N * DIM], r_kv[N * KVD], r_hid[N * HID];
    float cos_t[T * HD / 2], sin_t[T * HD / 2];
} op_ctx;

static double rmsnorm_loss(void *p) {
    op_ctx *c = p;
    float out[N * DIM], rstd[N];
    lb_train_rmsnorm_forward(out, rstd, c->x, c->w, N, DIM, 1e-5f);
    return dot_d(out, c->r_dim, N * DIM);
}
static double matmul_loss(void *p) {
    op_ctx *c = p;
    float y[N * HID];
    lb_train_matmul_forward(y, c->xm, c->wm, N, DIM, HID);
    return dot_d(y, c->r_hid, N * HID);
}
static double rope_loss(void *p) {
    op_ctx *c = p;
    float q[N * DIM], k[N * KVD];
    memcpy(q, c->q, sizeof q);
    memcpy(k, c->k, sizeof k);
    lb_train_rope_forward(q, k, B, T, DIM, KVD, HD, c->cos_t, c->sin_t);
    return dot_d(q, c->r_dim, N * DIM) + dot_d(k, c->r_kv, N * KVD);
}
static double attention_loss(void *p) {
    op_ctx *c = p;
    float out[N * DIM], att[B * NH * T * T];
    lb_train_attention_forward(out, att, c->q, c->k, c->v, B, T, NH, NKV, HD);
    return dot_d(out, c->r_dim, N * DIM);
}
static double swiglu_loss(void *p) {
    op_ctx *c = p;
    float h[N * HID];
    lb_train_swiglu_forward(h, c->g, c->u, N * HID);
    return dot_d(h, c->r_hid, N * HID);
}
static double embedding_loss(void *p) {
    op_ctx *c = p;
    float x[N * DIM];
    lb_train_embedding_forward(x, c->tokens, N, c->embd, DIM);
    return dot_d(x, c->r_dim, N * DIM);
}
static double ce_loss(void *p) {
    op_ctx *c = p;
    float z[N * V];
    double nll[N];
    int scored;
    memcpy(z, c->logits, sizeof z);
    return lb_train_cross_entropy_forward(z, nll, c->targets, N, V, &scored) / scored;
}

static void test_ops(void) {
    printf("op gradients against central differences (h = %g):\n", (double)FD_H);
    op_ctx *c = calloc(1, sizeof *c);
    double *num = malloc(sizeof(double) * N * DIM * 4);
    fill(c->x, N * DIM, 1);
    for (int j = 0; j < DIM; j++) c->w[j] = 1.0f + 0.3f * (float)lb_rng_normal(&rng);
    fill(c->q, N * DIM, 1);
    fill(c->k, N * KVD, 1);
    fill(c->v, N * KVD, 1);
    fill(c->g, N * HID, 1.5f);
    fill(c->u, N * HID, 1);
    fill(c->logits, N * V, 2);
    fill(c->wm, HID * DIM, 0.5f);
    fill(c->xm, N * DIM, 1);
    fill(c->embd, VOC * DIM, 1);
    fill(c->r_dim, N * DIM, 1);
    fill(c->r_kv, N * KVD, 1);
    fill(c->r_hid, N * HID, 1);
    for (int i = 0; i < N; i++) {
        c->tokens[i] = (i * 5) % VOC; /* repeats: a row gathered twice sums */
        c->targets[i] = i == 3 ? -1 : (i * 3) % V; /* one unscored row */
    }
    for (int t = 0; t < T; t++)
        for (int i = 0; i < HD / 2; i++) {
            float a = (float)t * powf(10000.0f, -(float)(2 * i) / HD);
            c->cos_t[t * HD / 2 + i] = cosf(a);
            c->sin_t[t * HD / 2 + i] = sinf(a);
        }

    { /* RMSNorm: x and w */
        float out[N * DIM], rstd[N], dx[N * DIM] = {0}, dw[DIM] = {0};
        lb_train_rmsnorm_forward(out, rstd, c->x, c->w, N, DIM, 1e-5f);
        lb_train_rmsnorm_backward(dx, dw, c->r_dim, c->x, c->w, rstd, N, DIM);
        numeric_grad(rmsnorm_loss, c, c->x, N * DIM, FD_H, num);
        check_grad("rmsnorm dx", num, dx, N * DIM);
        numeric_grad(rmsnorm_loss, c, c->w, DIM, FD_H, num);
        check_grad("rmsnorm dw", num, dw, DIM);
    }
    { /* matmul: x and w */
        float dx[N * DIM] = {0}, dw[HID * DIM] = {0};
        lb_train_matmul_backward(dx, dw, c->r_hid, c->xm, c->wm, N, DIM, HID);
        numeric_grad(matmul_loss, c, c->xm, N * DIM, FD_H, num);
        check_grad("matmul dx", num, dx, N * DIM);
        numeric_grad(matmul_loss, c, c->wm, HID * DIM, FD_H, num);
        check_grad("matmul dw", num, dw, HID * DIM);
    }
    { /* RoPE: q and k */
        float dq[N * DIM], dk[N * KVD];
        memcpy(dq, c->r_dim, sizeof dq);
        memcpy(dk, c->r_kv, sizeof dk);
        lb_train_rope_backward(dq, dk, B, T, DIM, KVD, HD, c->cos_t, c->sin_t);
        numeric_grad(rope_loss, c, c->q, N * DIM, FD_H, num);
        check_grad("rope dq", num, dq, N * DIM);
        numeric_grad(rope_loss, c, c->k, N * KVD, FD_H, num);
        check_grad("rope dk", num, dk, N * KVD);
    }
    { /* attention (GQA: 4 q-heads on 2 kv-heads, causal): q, k, v */
        float out[N * DIM], att[B * NH * T * T], dq[N * DIM] = {0}, dk[N * KVD] = {0}, dv[N * KVD] = {0};
        lb_train_attention_forward(out, att, c->q, c->k, c->v, B, T, NH, NKV, HD);
        CHECK_OK(lb_train_attention_backward(dq, dk, dv, c->r_dim, c->q, c->k, c->v, att, B, T, NH, NKV, HD));
        numeric_grad(attention_loss, c, c->q, N * DIM, FD_H, num);
        check_grad("attention dq", num, dq, N * DIM);
        numeric_grad(attention_loss, c, c->k, N * KVD, FD_H, num);
        check_grad("attention dk", num, dk, N * KVD);
        numeric_grad(attention_loss, c, c->v, N * KVD, FD_H, num);
        check_grad("attention dv", num, dv, N * KVD);
        /* causality: the first position of a sequence sees only itself */
        CHECK_NEAR(att[0], 1.0, 1e-6);
        CHECK(att[1] == 0.0f);
    }
    { /* SwiGLU: g and u */
        float dg[N * HID] = {0}, du[N * HID] = {0};
        lb_train_swiglu_backward(dg, du, c->r_hid, c->g, c->u, N * HID);
        numeric_grad(swiglu_loss, c, c->g, N * HID, FD_H, num);
        check_grad("swiglu dg", num, dg, N * HID);
        numeric_grad(swiglu_loss, c, c->u, N * HID, FD_H, num);
        check_grad("swiglu du", num, du, N * HID);
    }
    { /* embedding */
        float dembd[VOC * DIM] = {0};
        lb_train_embedding_backward(dembd, c->r_dim, c->tokens, N, DIM);
        numeric_grad(embedding_loss, c, c->embd, VOC * DIM, FD_H, num);
        /* rows of tokens never used have zero gradient both ways */
        check_grad("embedding d(embd)", num, dembd, VOC * DIM);
    }
    { /* cross-entropy with one unscored row: the loss itself, mean over scored rows */
        float z[N * V];
        double nll[N];
        int scored;
        memcpy(z, c->logits, sizeof z);
        lb_train_cross_entropy_forward(z, nll, c->targets, N, V, &scored);
        CHECK(scored == N - 1);
        CHECK(nll[3] == 0.0);
        lb_train_cross_entropy_backward(z, z, c->targets, N, V, 1.0f / (float)scored);
        numeric_grad(ce_loss, c, c->logits, N * V, FD_H, num);
        check_grad("cross-entropy dlogits", num, z, N * V);
        for (int j = 0; j < V; j++) CHECK(z[3 * V + j] == 0.0f);
    }
    free(num);
    free(c);
}

/* ---- the whole model --------------------------------------------------------- */

static void test_model_grad(int tied) {
    lb_config cfg = train_tiny_config();
    lb_train_model *tm;
    CHECK_OK(lb_train_model_create(&cfg, tied, &tm));
    if (!tm) return;
    lb_train_model_init_random(tm, 7 + tied, 0.5f);
    for (int l = 0; l < cfg.n_layers; l++) /* norm weights away from 1 so their gradient is generic */
        for (int j = 0; j < cfg.dim; j++) {
            tm->p.layers[l].attn_norm[j] = 1.0f + 0.3f * (float)lb_rng_normal(&rng);
            tm->p.layers[l].ffn_norm[j] = 1.0f + 0.3f * (float)lb_rng_normal(&rng);
        }
    int in[TINY_B * TINY_T], tg[TINY_B * TINY_T];
    train_tiny_batch(&rng, in, tg);
    train_loss_ctx c = {tm, in, tg, TINY_B, TINY_T};
    double loss;
    CHECK_OK(lb_train_model_forward(tm, in, tg, TINY_B, TINY_T, &loss));
    lb_train_model_zero_grad(tm);
    CHECK_OK(lb_train_model_backward(tm));
    double *num = malloc(tm->n_params * sizeof(double));
    numeric_grad(train_loss, &c, tm->params, tm->n_params, FD_H_MODEL, num);
    printf("whole model (%s classifier, %zu parameters, loss %.4f):\n", tied ? "tied" : "untied", tm->n_params, loss);
    check_grad("every parameter", num, tm->grads, tm->n_params);
    for (int i = 0; i < tm->n_tensors; i++) { /* each tensor on its own, so none hides behind the others */
        const lb_train_tensor *t = &tm->tensors[i];
        size_t n = (size_t)(t->rows * t->cols);
        CHECK_MSG(grad_close(t->name, num + t->offset, tm->grads + t->offset, n, getenv("LB_TRAIN_VERBOSE") != NULL),
                  "%s: gradient disagrees with finite differences", t->name);
    }
    /* gradients add up: a second backward of the same forward doubles them */
    float g0 = tm->grads[tm->tensors[1].offset];
    CHECK_OK(lb_train_model_forward(tm, in, tg, TINY_B, TINY_T, &loss));
    CHECK_OK(lb_train_model_backward(tm));
    CHECK_NEAR(tm->grads[tm->tensors[1].offset], 2 * g0, 1e-6 * fabs(g0) + 1e-9);
    CHECK_FAILS(lb_train_model_backward(tm), LB_ERR_INVALID, "forward with targets");
    in[0] = 13;
    CHECK_FAILS(lb_train_model_forward(tm, in, tg, TINY_B, TINY_T, &loss), LB_ERR_INVALID, "outside the vocabulary");
    free(num);
    lb_train_model_free(tm);
}

/* ---- AdamW, schedule, clipping ------------------------------------------- */

static void test_adamw(void) {
    /* two tensors: a decayed 1x2 "matrix" and an undecayed 1x1 "norm" */
    lb_train_tensor t[2] = {{"w", 0, 1, 2, 1}, {"norm", 2, 1, 1, 0}};
    float p[3] = {1.0f, -2.0f, 1.0f};
    lb_adamw a;
    CHECK_OK(lb_adamw_init(&a, 3));
    lb_adamw_opts o = {0.9f, 0.999f, 1e-8f, 0.1f};
    /* step 1, g = 0.5: m = 0.05, v = 0.00025, mhat = 0.5, vhat = 0.25, update 1;
     * p = 1 - 0.1 (1 + 0.1 * 1) = 0.89. For p = -2 with g = 0: no Adam move,
     * decay only: -2 - 0.1 * 0.1 * (-2) = -1.98. The norm (g = 0.5, no decay): 0.9. */
    float g1[3] = {0.5f, 0.0f, 0.5f};
    lb_adamw_step(&a, p, g1, t, 2, 0.1f, &o);
    CHECK_NEAR(p[0], 0.89, 1e-6);
    CHECK_NEAR(p[1], -1.98, 1e-6);
    CHECK_NEAR(p[2], 0.9, 1e-6);
    /* step 2, g = -0.25: m = 0.9 * 0.05 - 0.025 = 0.02, v = 0.999 * 0.00025 + 0.001 * 0.0625 = 0.00031225,
     * mhat = 0.02 / 0.19 = 0.1052632, vhat = 0.00031225 / 0.001999 = 0.1562031, sqrt = 0.3952254,
     * update 0.2663375; p = 0.89 - 0.1 (0.2663375 + 0.1 * 0.89) = 0.8544663 */
    float g2[3] = {-0.25f, 0.0f, -0.25f};
    lb_adamw_step(&a, p, g2, t, 2, 0.1f, &o);
    CHECK_NEAR(p[0], 0.8544663, 2e-6);
    CHECK_NEAR(p[2], 0.9 - 0.02663375, 2e-6);
    lb_adamw_free(&a);

    /* schedule: 10 steps, 2 of warm-up, 1e-3 -> 1e-4 */
    CHECK_NEAR(lb_lr_schedule(0, 10, 2, 1e-3f, 1e-4f), 5e-4, 1e-9);
    CHECK_NEAR(lb_lr_schedule(1, 10, 2, 1e-3f, 1e-4f), 1e-3, 1e-9);
    CHECK_NEAR(lb_lr_schedule(2, 10, 2, 1e-3f, 1e-4f), 1e-3, 1e-9);
    /* halfway through the cosine (step 2 + 3.5 of 7): the mean of the two */
    CHECK_NEAR(lb_lr_schedule(9, 10, 2, 1e-3f, 1e-4f), 1e-4, 1e-9);
    CHECK_NEAR(lb_lr_schedule(5, 10, 2, 1e-3f, 1e-4f), 1e-4 + 0.45e-3 * (1 + cos(3.14159265358979323846 * 3.0 / 7.0)), 1e-9);

    /* clipping: (3, 4) has norm 5; to 1 -> (0.6, 0.8); a norm under the limit is left alone */
    float gc[2] = {3, 4};
    CHECK_NEAR(lb_grad_clip(gc, 2, 1.0), 5.0, 1e-9);
    CHECK_NEAR(gc[0], 0.6, 1e-7);
    CHECK_NEAR(gc[1], 0.8, 1e-7);
    CHECK_NEAR(lb_grad_clip(gc, 2, 2.0), 1.0, 1e-7);
    CHECK_NEAR(gc[0], 0.6, 1e-7);
}

/* ---- stories260K ------------------------------------------------------------- */

static void test_forward_matches_inference(lb_model *m, const lb_train_data *d) {
    enum { SB = 2, ST = 96 };
    lb_train_model *tm;
    CHECK_OK(lb_train_model_from_model(m, 0, &tm));
    if (!tm) return;
    int in[SB * ST];
    for (int i = 0; i < SB * ST; i++) in[i] = d->tokens[(i / ST) * 500 + i % ST]; /* two different windows */
    CHECK_OK(lb_train_model_forward(tm, in, NULL, SB, ST, NULL));
    lb_state *s;
    CHECK_OK(lb_state_create(m, ST, &s));
    float *ref = malloc(sizeof(float) * ST * m->cfg.vocab_size);
    double maxdiff = 0, maxabs = 0;
    for (int b = 0; b < SB; b++) {
        CHECK_OK(lb_forward(m, s, in + b * ST, ST, 0, ref));
        const float *mine = tm->acts.logits + (size_t)b * ST * m->cfg.vocab_size;
        for (size_t j = 0; j < (size_t)ST * m->cfg.vocab_size; j++) {
            maxdiff = fmax(maxdiff, fabs((double)mine[j] - ref[j]));
            maxabs = fmax(maxabs, fabs((double)ref[j]));
        }
    }
    printf("stories260K: training forward vs lb_forward, %d x %d positions: max |logit diff| %.3g (max |logit| %.3g)\n",
           SB, ST, maxdiff, maxabs);
    CHECK_MSG(maxdiff < 1e-4, "training forward differs from inference by %g", maxdiff);
    free(ref);
    lb_state_free(s);
    lb_train_model_free(tm);
}

static double mean_loss(lb_trainer *t, const int *batches, int nb, int rows) {
    double sum = 0, l;
    for (int i = 0; i < nb; i++) {
        CHECK_OK(lb_trainer_loss(t, batches + (size_t)i * rows, &l));
        sum += l;
    }
    return sum / nb;
}

static void test_training_lowers_loss(lb_model *m, const lb_train_data *d) {
    lb_train_opts o;
    lb_train_opts_default(&o);
    o.batch = 4;
    o.ctx = 64;
    o.steps = 20;
    o.lr = 3e-4f;
    lb_trainer *t;
    CHECK_OK(lb_trainer_create(m, &o, &t));
    if (!t) return;
    /* a fixed set of training-split batches, measured before and after */
    enum { NB = 4 };
    int rows = o.batch * (o.ctx + 1);
    int *fixed = malloc(sizeof(int) * NB * rows), *batch = malloc(sizeof(int) * rows);
    lb_rng r;
    lb_rng_seed(&r, 99);
    for (int i = 0; i < NB; i++) CHECK_OK(lb_train_data_batch(d, o.batch, o.ctx, &r, fixed + (size_t)i * rows));
    double before = mean_loss(t, fixed, NB, rows);
    lb_rng_seed(&r, 1);
    lb_train_step_info info = {0};
    for (int s = 0; s < o.steps; s++) {
        CHECK_OK(lb_train_data_batch(d, o.batch, o.ctx, &r, batch));
        CHECK_OK(lb_trainer_step(t, batch, &info));
    }
    double after = mean_loss(t, fixed, NB, rows);
    printf("stories260K: %d steps (batch %d, ctx %d, lr %g): training-split loss %.4f -> %.4f; last lr %.3g, "
           "grad norm %.3f; trainer holds %.1f MB\n",
           o.steps, o.batch, o.ctx, (double)o.lr, before, after, (double)info.lr, info.grad_norm,
           (double)lb_trainer_bytes(t) / 1e6);
    CHECK_MSG(after < before - 0.03, "training did not lower the loss: %.4f -> %.4f", before, after);
    CHECK_NEAR(info.lr, o.lr / 10, 1e-9); /* the schedule ends at min_lr */

    /* the stored model computes the trainer's loss through the inference path */
    lb_model *m2;
    CHECK_OK(lb_model_load(lb_test_data("models/stories260K.bin"), NULL, &m2));
    CHECK_OK(lb_trainer_store(t, m2));
    lb_state *s;
    CHECK_OK(lb_state_create(m2, o.ctx, &s));
    float *logits = malloc(sizeof(float) * o.ctx * m2->cfg.vocab_size);
    double nll = 0;
    for (int b = 0; b < o.batch; b++) {
        const int *row = fixed + (size_t)b * (o.ctx + 1);
        CHECK_OK(lb_forward(m2, s, row, o.ctx, 0, logits));
        for (int i = 0; i < o.ctx; i++) {
            const float *z = logits + (size_t)i * m2->cfg.vocab_size;
            double mx = z[0], sum = 0;
            for (int j = 1; j < m2->cfg.vocab_size; j++) mx = fmax(mx, z[j]);
            for (int j = 0; j < m2->cfg.vocab_size; j++) sum += exp(z[j] - mx);
            nll += log(sum) - (z[row[i + 1]] - mx);
        }
    }
    double l0;
    CHECK_OK(lb_trainer_loss(t, fixed, &l0));
    CHECK_NEAR(nll / (o.batch * o.ctx), l0, 1e-4);
    free(logits);
    lb_state_free(s);
    lb_model_free(m2);
    free(fixed);
    free(batch);
    lb_trainer_free(t);
}

/* one step's gradient with 1 and with 2 threads (OpenMP and OpenBLAS) */
static void test_thread_independence(lb_model *m, const lb_train_data *d) {
    float *grads[2] = {0};
    size_t n = 0;
    for (int k = 0; k < 2; k++) {
        lb_set_threads(k + 1);
#ifdef LB_HAVE_BLAS
        openblas_set_num_threads(k + 1);
#endif
        lb_train_model *tm;
        CHECK_OK(lb_train_model_from_model(m, 0, &tm));
        if (!tm) return;
        enum { SB = 4, ST = 64 };
        int rows[SB * (ST + 1)], in[SB * ST], tg[SB * ST];
        lb_rng r;
        lb_rng_seed(&r, 5);
        CHECK_OK(lb_train_data_batch(d, SB, ST, &r, rows));
        for (int b = 0; b < SB; b++)
            for (int i = 0; i < ST; i++) {
                in[b * ST + i] = rows[b * (ST + 1) + i];
                tg[b * ST + i] = rows[b * (ST + 1) + i + 1];
            }
        double loss;
        CHECK_OK(lb_train_model_forward(tm, in, tg, SB, ST, &loss));
        lb_train_model_zero_grad(tm);
        CHECK_OK(lb_train_model_backward(tm));
        n = tm->n_params;
        grads[k] = malloc(n * sizeof(float));
        memcpy(grads[k], tm->grads, n * sizeof(float));
        lb_train_model_free(tm);
    }
    lb_set_threads(0);
    CHECK_MSG(grads[0] && grads[1] && !memcmp(grads[0], grads[1], n * sizeof(float)),
              "the gradient with 1 thread differs from the one with 2");
    free(grads[0]);
    free(grads[1]);
}

static void test_refusals(lb_model *m, const lb_text *text) {
    lb_train_data d;
    CHECK_FAILS(lb_train_data_load(m, text, LB_SPLIT_EVAL, 128, &d), LB_ERR_INVALID, "not 'eval'");
    CHECK_FAILS(lb_train_data_load(m, text, LB_SPLIT_ALL, 128, &d), LB_ERR_INVALID, "not 'all'");
    lb_train_opts o;
    lb_train_opts_default(&o);
    lb_trainer *t;
    o.ctx = 513;
    CHECK_FAILS(lb_trainer_create(m, &o, &t), LB_ERR_INVALID, "ctx must be");
    lb_train_opts_default(&o);
    o.lr = NAN;
    CHECK_FAILS(lb_trainer_create(m, &o, &t), LB_ERR_INVALID, "learning rate");
    lb_train_opts_default(&o);
    o.warmup = 200;
    CHECK_FAILS(lb_trainer_create(m, &o, &t), LB_ERR_INVALID, "warm-up");
    /* a model with a tensor stored otherwise than f32 (here f16) is not the fp32 trainer's */
    lb_model *q;
    CHECK_OK(lb_model_load(lb_test_data("models/stories260K.bin"), NULL, &q));
    lb_linear *L = &q->layers[0].linear[LB_WQ];
    size_t n = (size_t)(L->w.rows * L->w.cols);
    float *w = malloc(sizeof(float) * n);
    uint8_t *half = malloc(2 * n);
    CHECK_OK(lb_dequantize(&L->w, w));
    lb_tensor ht = L->w;
    ht.spec = lb_test_spec("f16");
    CHECK_OK(lb_format_from_float(&ht.spec, w, ht.rows, ht.cols, half));
    ht.data = half;
    ht.nbytes = 2 * n;
    ht.owned = NULL;
    ht.packed = NULL;
    ht.kernel = NULL;
    CHECK_OK(lb_tensor_resolve(&ht));
    CHECK_OK(lb_linear_set_weight(L, &ht));
    CHECK_FAILS(lb_trainer_create(q, NULL, &t), LB_ERR_UNSUPPORTED, "not f32");
    free(w);
    lb_model_free(q);
    free(half);
}

int main(void) {
    lb_rng_seed(&rng, 12345);
    test_ops();
    test_model_grad(1);
    test_model_grad(0);
    test_adamw();

    lb_model *m;
    lb_text text;
    CHECK_OK(lb_model_load(lb_test_data("models/stories260K.bin"), NULL, &m));
    CHECK_OK(lb_text_load(lb_test_data("text/tinystories-sample.txt"), &text));
    lb_train_data d;
    CHECK_OK(lb_train_data_load(m, &text, LB_SPLIT_CALIB, 128, &d));
    CHECK(d.first_block == 0 && d.end_block == 128 && d.n > 1000);
    printf("training split: blocks %d..%d, %zu tokens\n", d.first_block + 1, d.end_block, d.n);
    test_forward_matches_inference(m, &d);
    test_thread_independence(m, &d);
    test_training_lowers_loss(m, &d);
    test_refusals(m, &text);
    lb_train_data_free(&d);
    lb_text_free(&text);
    lb_model_free(m);
    return lb_test_finish("test_train_grad");
}
