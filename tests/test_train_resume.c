/* Checkpoints and resume (docs/TRAINING.md, "Checkpoints and resume"):
 *  - N steps in one go, and k steps + checkpoint + a new trainer resuming
 *    from it + N - k steps, give bit-identical per-step losses and final
 *    weights (cross-entropy and kl distillation; quantization-aware runs
 *    with learned scales, stochastic binarization and stochastic gradient
 *    rounding; LoRA adapters over a frozen int2 base; 1 thread, and 2
 *    threads against 1);
 *  - a truncated, corrupted, foreign (other options, other model) or
 *    non-checkpoint file is refused with a clear error, the trainer
 *    unchanged; a missing file too. */
#include "test.h"

#include <unistd.h>

#include "train/qat.h"
#include "train/train_internal.h"
#include "train_check.h"

enum { STEPS = 10, K = 4, BATCH = 2, CTX = 32 };

static lb_train_opts run_opts(int distill) {
    lb_train_opts o;
    lb_train_opts_default(&o);
    o.batch = BATCH;
    o.ctx = CTX;
    o.steps = STEPS;
    o.lr = 1e-3f;
    o.distill = distill;
    return o;
}

static float *params_of(lb_trainer *t, size_t *n) {
    lb_trainer_parts p;
    lb_trainer_parts_get(t, &p);
    *n = p.tm->n_params;
    return p.tm->params;
}

/* steps [from, to) of a run, batches drawn from rng as lowbit train draws them */
static void run_steps(lb_trainer *t, const lb_train_data *d, lb_rng *rng, int from, int to, double *losses) {
    int tokens[BATCH * (CTX + 1)];
    for (int s = from; s < to; s++) {
        lb_train_step_info info;
        CHECK_OK(lb_train_data_batch(d, BATCH, CTX, rng, tokens));
        CHECK_OK(lb_trainer_step(t, tokens, &info));
        CHECK(info.step == s);
        losses[s] = info.loss;
    }
}

/* the parameters, the extra block (learned quantization scales, LoRA
 * adapters) when there is one, and the QAT random state equal */
static int same_state(lb_trainer *a, lb_trainer *b) {
    size_t na, nb;
    float *pa = params_of(a, &na), *pb = params_of(b, &nb);
    if (na != nb || memcmp(pa, pb, na * sizeof(float))) return 0;
    lb_trainer_parts ta, tb;
    lb_trainer_parts_get(a, &ta);
    lb_trainer_parts_get(b, &tb);
    const lb_train_extra *ea = &ta.tm->extra, *eb = &tb.tm->extra;
    if (ea->n != eb->n || (ea->n && memcmp(ea->params, eb->params, ea->n * sizeof(float)))) return 0;
    struct lb_qat *qa = lb_trainer_qat(a), *qb = lb_trainer_qat(b);
    if (!qa || !qb) return !qa && !qb;
    return qa->rng.state == qb->rng.state;
}

/* a trainer of m, taught by teacher when not NULL (LoRA's fp32 model) */
static lb_status create(const lb_model *m, const lb_train_opts *o, const lb_model *teacher, lb_trainer **t) {
    lb_status st = lb_trainer_create(m, o, t);
    if (st == LB_OK && teacher) st = lb_trainer_set_teacher(*t, teacher);
    return st;
}

static void test_resume_exact(lb_model *m, const lb_model *teacher, const lb_train_data *d, lb_train_opts o,
                              const char *label, const char *path) {
    lb_trainer *a, *b, *c;
    double la[STEPS], lb_[STEPS], l2[STEPS];
    lb_rng ra, rb;
    /* uninterrupted */
    lb_set_threads(1);
    CHECK_OK(create(m, &o, teacher, &a));
    lb_rng_seed(&ra, o.seed);
    run_steps(a, d, &ra, 0, STEPS, la);
    /* interrupted after K steps: checkpoint, a fresh trainer (another
     * process would start from the model file again), resume */
    CHECK_OK(create(m, &o, teacher, &b));
    lb_rng_seed(&rb, o.seed);
    run_steps(b, d, &rb, 0, K, lb_);
    CHECK_OK(lb_trainer_save_checkpoint(b, &rb, path));
    lb_trainer_free(b);
    CHECK_OK(create(m, &o, teacher, &b));
    lb_rng_seed(&rb, 12345); /* whatever: the checkpoint's state replaces it */
    CHECK_OK(lb_trainer_load_checkpoint(b, &rb, path));
    CHECK(lb_trainer_steps_done(b) == K);
    run_steps(b, d, &rb, K, STEPS, lb_);
    int same_loss = !memcmp(la, lb_, sizeof la), same_w = same_state(a, b);
    printf("%s: %d steps vs %d + checkpoint + resume + %d: losses %s, weights %s (1 thread); loss %.5f -> %.5f\n",
           label, STEPS, K, STEPS - K, same_loss ? "bit-identical" : "DIFFER",
           same_w ? "bit-identical" : "DIFFER", la[0], la[STEPS - 1]);
    CHECK(same_loss && same_w);
    /* 2 threads: the same numbers as 1 */
    lb_set_threads(2);
    lb_rng rc;
    CHECK_OK(create(m, &o, teacher, &c));
    lb_rng_seed(&rc, o.seed);
    run_steps(c, d, &rc, 0, K, l2);
    CHECK_OK(lb_trainer_save_checkpoint(c, &rc, path));
    lb_trainer_free(c);
    CHECK_OK(create(m, &o, teacher, &c));
    CHECK_OK(lb_trainer_load_checkpoint(c, &rc, path));
    run_steps(c, d, &rc, K, STEPS, l2);
    int same2 = !memcmp(la, l2, sizeof la) && same_state(a, c);
    printf("%s: the same with 2 threads (resumed too): %s\n", label, same2 ? "bit-identical" : "DIFFER");
    CHECK(same2);
    lb_set_threads(1);
    lb_trainer_free(a);
    lb_trainer_free(b);
    lb_trainer_free(c);
}

static void write_bytes(const char *path, const uint8_t *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    CHECK(fwrite(data, 1, n, f) == n);
    fclose(f);
}

static void test_refusals(lb_model *m, const lb_train_data *d, const char *path, const char *bad) {
    lb_train_opts o = run_opts(LB_DISTILL_NONE);
    lb_trainer *t;
    CHECK_OK(lb_trainer_create(m, &o, &t));
    lb_rng rng;
    lb_rng_seed(&rng, o.seed);
    double losses[STEPS];
    run_steps(t, d, &rng, 0, 2, losses);
    CHECK_OK(lb_trainer_save_checkpoint(t, &rng, path));
    char *data;
    size_t size;
    CHECK_OK(lb_read_file(path, &data, &size));
    lb_trainer *u;
    CHECK_OK(lb_trainer_create(m, &o, &u));
    size_t n;
    float *p = params_of(u, &n);
    float *before = malloc(n * sizeof(float));
    memcpy(before, p, n * sizeof(float));
    lb_rng r2 = {77};
    /* truncated anywhere: header, arrays, checksum */
    const size_t cuts[] = {0, 5, 15, 100, 156, 157, size / 2, size - 8, size - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        write_bytes(bad, (const uint8_t *)data, cuts[i]);
        lb_status st = lb_trainer_load_checkpoint(u, &r2, bad);
        CHECK_MSG(st == LB_ERR_FORMAT, "cut at %zu: status %d (%s)", cuts[i], (int)st, lb_last_error());
    }
    printf("truncated: %s\n", lb_last_error());
    /* one flipped bit in the parameters: the checksum */
    data[size / 2] ^= 0x10;
    write_bytes(bad, (const uint8_t *)data, size);
    CHECK_FAILS(lb_trainer_load_checkpoint(u, &r2, bad), LB_ERR_FORMAT, "checksum");
    data[size / 2] ^= 0x10;
    data[8] = 9; /* a version from the future */
    write_bytes(bad, (const uint8_t *)data, size);
    CHECK_FAILS(lb_trainer_load_checkpoint(u, &r2, bad), LB_ERR_FORMAT, "version 9");
    data[8] = 1;
    data[0] = 'X';
    write_bytes(bad, (const uint8_t *)data, size);
    CHECK_FAILS(lb_trainer_load_checkpoint(u, &r2, bad), LB_ERR_FORMAT, "not a lowbit training checkpoint");
    CHECK_FAILS(lb_trainer_load_checkpoint(u, &r2, "/nonexistent/ckpt"), LB_ERR_IO, "nonexistent");
    /* nothing changed by the refusals */
    CHECK(!memcmp(before, p, n * sizeof(float)) && r2.state == 77 && lb_trainer_steps_done(u) == 0);
    lb_trainer_free(u);
    /* another run's options, another model */
    lb_train_opts o2 = o;
    o2.lr = 2e-3f;
    CHECK_OK(lb_trainer_create(m, &o2, &u));
    CHECK_FAILS(lb_trainer_load_checkpoint(u, &r2, path), LB_ERR_INVALID, "lr 0.001");
    lb_trainer_free(u);
    o2 = o;
    o2.distill = LB_DISTILL_KL;
    CHECK_OK(lb_trainer_create(m, &o2, &u));
    CHECK_FAILS(lb_trainer_load_checkpoint(u, &r2, path), LB_ERR_INVALID, "--distill none");
    lb_trainer_free(u);
    o2 = o; /* a QAT run cannot resume a float run's checkpoint, nor one of another scheme */
    o2.qat = "bwn";
    CHECK_OK(lb_trainer_create(m, &o2, &u));
    CHECK_FAILS(lb_trainer_load_checkpoint(u, &r2, path), LB_ERR_INVALID, "quantization-aware or LoRA options");
    lb_trainer_free(u);
    o2.qat = "paretoq";
    o2.format = "int2:row:asym";
    CHECK_OK(lb_trainer_create(m, &o2, &u));
    CHECK_FAILS(lb_trainer_load_checkpoint(u, &r2, path), LB_ERR_INVALID, "learned scales or adapter values");
    lb_trainer_free(u);
    lb_config small = m->cfg;
    small.n_layers = 2;
    CHECK_OK(lb_trainer_create_random(&small, 1, 1, 0.02f, &o, &u));
    CHECK_FAILS(lb_trainer_load_checkpoint(u, &r2, path), LB_ERR_INVALID, "another model");
    lb_trainer_free(u);
    /* a from-scratch trainer is seeded: the same seed, the same weights */
    lb_trainer *r1, *r3;
    CHECK_OK(lb_trainer_create_random(&small, 1, 5, 0.02f, &o, &r1));
    CHECK_OK(lb_trainer_create_random(&small, 1, 5, 0.02f, &o, &r3));
    size_t n1, n3;
    float *p1 = params_of(r1, &n1), *p3 = params_of(r3, &n3);
    CHECK(n1 == n3 && !memcmp(p1, p3, n1 * sizeof(float)));
    lb_trainer_free(r1);
    lb_trainer_free(r3);
    free(before);
    lb_free(data);
    lb_trainer_free(t);
}

int main(void) {
    lb_model *m;
    lb_text text;
    CHECK_OK(lb_model_load(lb_test_data("models/stories260K.bin"), NULL, &m));
    CHECK_OK(lb_text_load(lb_test_data("text/tinystories-sample.txt"), &text));
    lb_train_data d;
    CHECK_OK(lb_train_data_load(m, &text, LB_SPLIT_CALIB, 128, &d));
    char dir[] = "/tmp/lb_resume_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256], bad[256];
    snprintf(path, sizeof path, "%s/run.ckpt", dir);
    snprintf(bad, sizeof bad, "%s/bad.ckpt", dir);
    test_resume_exact(m, NULL, &d, run_opts(LB_DISTILL_NONE), "none", path);
    test_resume_exact(m, NULL, &d, run_opts(LB_DISTILL_KL), "kl", path);
    /* QAT: learned per-row steps (paretoq) with distillation; the rng of
     * stochastic binarization and of stochastic gradient rounding */
    lb_train_opts q = run_opts(LB_DISTILL_KL);
    q.qat = "paretoq";
    q.format = "int2:row:asym";
    test_resume_exact(m, NULL, &d, q, "kl, qat paretoq int2:row:asym", path);
    q = run_opts(LB_DISTILL_NONE);
    q.qat = "binaryconnect";
    q.stochastic = 1;
    q.grad_bits = 8;
    q.grad_stochastic = 1;
    test_resume_exact(m, NULL, &d, q, "qat binaryconnect stochastic, 8-bit stochastic gradients", path);
    /* LoRA: adapters in the extra block, the base frozen (no AdamW steps of
     * its own), the teacher the fp32 model */
    lb_model *base = train_quantized_base("int2:g32:asym");
    if (base) {
        q = run_opts(LB_DISTILL_KL);
        q.lora_rank = 2;
        q.lr = 1e-2f;
        test_resume_exact(base, m, &d, q, "kl, lora rank 2 over int2:g32:asym", path);
        /* another rank's checkpoint is refused */
        lb_trainer *u;
        lb_rng r2;
        CHECK_OK(create(base, &q, m, &u));
        lb_rng_seed(&r2, 1);
        CHECK_OK(lb_trainer_save_checkpoint(u, &r2, path));
        lb_trainer_free(u);
        q.lora_rank = 3;
        CHECK_OK(create(base, &q, m, &u));
        CHECK_FAILS(lb_trainer_load_checkpoint(u, &r2, path), LB_ERR_INVALID, "adapter values");
        lb_trainer_free(u);
        /* e2eqp: the step-size factors in the extra block over the frozen codes */
        q = run_opts(LB_DISTILL_KL);
        q.qat = "e2eqp";
        q.lr = 1e-2f;
        test_resume_exact(base, m, &d, q, "kl, e2eqp over int2:g32:asym", path);
        lb_model_free(base);
    }
    test_refusals(m, &d, path, bad);
    remove(path);
    remove(bad);
    rmdir(dir);
    lb_train_data_free(&d);
    lb_text_free(&text);
    lb_model_free(m);
    return lb_test_finish("test_train_resume");
}
