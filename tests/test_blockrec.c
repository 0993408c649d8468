/* Block-wise reconstruction (src/train/blockrec.c) against known answers,
 * on stories260K's layer 1 (dim 64, hidden 172: a tiny block) fed random
 * inputs, and through the sequential driver.
 *
 * - Gradients. The optimizer follows the straight-through estimator: round()
 *   and the fp16 rounding of scales pass gradients as the identity, clamp()
 *   as its derivative. That is the exact gradient of the "soft" loss, the
 *   same block with round() replaced by the identity and no fp16 rounding
 *   (lb_blockrec_loss(soft = 1)), so the check is: the analytic gradient of
 *   every learned quantity kind (rounding offsets V, blockap's weight
 *   moves, the lower and upper bound parameters; asym, zint and sym grids;
 *   autoround's identity map and lwc's sigmoid) against the fourth-order central difference of the soft
 *   loss, on 12 sampled entries of each of the 7 linears.
 *   Tolerance. The loss (block MSE ~1e-1) is summed in double over float
 *   forwards, so its rounding noise (~1e-8) over 12h dominates: with h = 1e-3
 *   the measured errors were 2-5%, with h = 2e-2 (V, in grid steps) and
 *   3e-2 (bound factors) 5e-4..3e-3 (shrinking h makes them grow: noise,
 *   not the gradient). Interior case: bounds widened 30-50%, so no code
 *   clamps and the soft loss is smooth; required 1e-2 of the vector and
 *   2e-2 of the largest element, 3x the measured worst, while a missing
 *   term (the zero point's, a sign) is an O(1) error. Clamping case: bounds
 *   shrunk, codes clamp, and the stencil's +-2h crosses clamp kinks of some
 *   weights of a group: measured up to 0.13 (zint lo), so only 0.25 of the
 *   vector is required there: it exercises the clamp branches against sign
 *   and factor errors, not to 1%.
 * - The start reproduces the method's quantization exactly (V's start rounds
 *   to its codes; blockap's latent weights are the fp32 ones on rtn's grid);
 *   AutoRound's and Block-AP's block MSE over the data is <= the start's
 *   (kept-best rule) and lower in practice; the exported tensors decode to
 *   exactly the weights the optimized forward used.
 * - A full pipeline run (lb_quantize_model_refined, rtn int2:g32 + 20
 *   autoround steps on 8 calibration blocks): every linear refined, same
 *   bytes and bpw as plain sequential rtn, a lower NLL on a calibration
 *   sequence (expected, not a theorem); bad refinement text fails cleanly. */
#include "test.h"
#include "grad_check.h"

#include "train/blockrec.h"

static lb_rng rng;

static lb_model *load(const char *path) {
    lb_model *m = NULL;
    CHECK_OK(lb_model_load(path, NULL, &m));
    return m;
}

/* Replaces layer l's linears by their rtn quantization in spec; the
 * originals go to orig[] (owned by the caller). */
static void quantize_layer(lb_model *m, int l, const char *spec_text, lb_tensor orig[LB_N_LINEARS]) {
    lb_qspec spec = lb_test_spec(spec_text);
    for (int w = 0; w < LB_N_LINEARS; w++) {
        lb_tensor *t = &m->layers[l].linear[w].w;
        float *f = malloc((size_t)t->rows * t->cols * sizeof(float));
        CHECK_OK(lb_dequantize(t, f));
        lb_tensor q;
        CHECK_OK(lb_quantize_to_tensor(f, t->rows, t->cols, &spec, NULL, t->name, &q));
        orig[w] = *t;
        *t = q;
        free(f);
    }
}

static void restore_layer(lb_model *m, int l, lb_tensor orig[LB_N_LINEARS]) {
    for (int w = 0; w < LB_N_LINEARS; w++) {
        lb_tensor_free(&m->layers[l].linear[w].w);
        m->layers[l].linear[w].w = orig[w];
    }
}

/* A layer quantized for a test: its fp32 originals are every linear's
 * teacher, and every linear learns. */
typedef struct {
    lb_tensor orig[LB_N_LINEARS];
    const lb_tensor *teacher[LB_N_LINEARS];
    int learn[LB_N_LINEARS];
} layer_fixture;

static void fixture_begin(layer_fixture *fx, lb_model *m, int l, const char *spec) {
    quantize_layer(m, l, spec, fx->orig);
    for (int w = 0; w < LB_N_LINEARS; w++) fx->teacher[w] = &fx->orig[w], fx->learn[w] = 1;
}

/* the block of layer l with the options opts_text on data d (NULL when creating failed: checked) */
static lb_blockrec *fixture_block(layer_fixture *fx, lb_model *m, int l, const char *opts_text,
                                  const lb_blockrec_data *d) {
    lb_blockrec_opts o;
    CHECK_OK(lb_blockrec_opts_parse(opts_text, &o));
    lb_blockrec *b = NULL;
    CHECK_OK(lb_blockrec_create(m, l, fx->teacher, fx->learn, &o, d, &b));
    return b;
}

typedef struct {
    float *x;
    int len[3];
    size_t offset[3];
    lb_blockrec_data d;
} inputs;

static void make_inputs(inputs *in, int dim) {
    int lens[3] = {12, 7, 16};
    size_t total = 0;
    for (int i = 0; i < 3; i++) {
        in->len[i] = lens[i];
        in->offset[i] = total;
        total += (size_t)lens[i];
    }
    in->x = malloc(total * dim * sizeof(float));
    for (size_t i = 0; i < total * dim; i++) in->x[i] = (float)lb_rng_normal(&rng);
    in->d = (lb_blockrec_data){in->x, 3, in->len, in->offset, NULL};
}

static double soft_loss(void *ctx) {
    lb_blockrec *b = ctx;
    double l = 0;
    CHECK_OK(lb_blockrec_loss(b, 0, 3, 1, 0, &l));
    return l;
}

/* sampled entries of every learned quantity against the stencil */
static void check_gradients(lb_model *m, const char *spec, lb_blockrec_kind kind, int interior) {
    const int L = 1;
    layer_fixture fx;
    fixture_begin(&fx, m, L, spec);
    inputs in;
    make_inputs(&in, m->cfg.dim);
    lb_blockrec *b = fixture_block(&fx, m, L, lb_blockrec_kind_name(kind), &in.d);
    if (!b) return;
    /* away from the start. interior: bounds widened by 30-50% and offsets
     * moved by up to 0.1, so every code stays strictly inside the grid and
     * the soft loss is smooth; else offsets anywhere in their range and
     * bounds shrunk, so codes clamp and the clamp branches are exercised */
    for (int w = 0; w < LB_N_LINEARS; w++)
        for (int what = 0; what < 3; what++) {
            size_t n;
            float *p = lb_blockrec_param(b, w, what, &n);
            if (!p) continue;
            for (size_t i = 0; i < n; i++)
                if (interior) p[i] += what == 0 ? 0.2f * (lb_rng_f32(&rng) - 0.5f) : 0.3f + 0.2f * lb_rng_f32(&rng);
                else p[i] += what == 0 ? 0.8f * (lb_rng_f32(&rng) - 0.5f)
                                       : (kind == LB_BLOCKREC_LWC ? -2.0f : -0.25f) * lb_rng_f32(&rng);
        }
    double base;
    CHECK_OK(lb_blockrec_loss(b, 0, 3, 1, 1, &base));
    for (int what = 0; what < 3; what++) {
        if (kind == LB_BLOCKREC_LWC && what == 0) continue;
        if (strstr(spec, ":sym") && what == 1) continue; /* sym has no lower bound */
        /* blockap rounds the latent weights without an offset: inside the
         * grid the soft weight is the latent weight whatever the bounds, so
         * the bounds' soft gradient is 0 there (measured ~1e-9, noise) and
         * only the clamping case tests it */
        if (kind == LB_BLOCKREC_BLOCKAP && interior && what) continue;
        enum { SAMPLES = 12 };
        double num[LB_N_LINEARS * SAMPLES], ana[LB_N_LINEARS * SAMPLES];
        int cnt = 0;
        for (int w = 0; w < LB_N_LINEARS; w++) {
            size_t n;
            float *p = lb_blockrec_param(b, w, what, &n);
            /* the gradient before any perturbation (each loss call overwrites it only when asked) */
            const float *g = lb_blockrec_grad(b, w, what);
            float *gcopy = malloc(n * sizeof(float));
            memcpy(gcopy, g, n * sizeof(float));
            float h = what == 0 ? 2e-2f : kind == LB_BLOCKREC_LWC ? 1e-1f : interior ? 3e-2f : 1e-2f;
            for (int s = 0; s < SAMPLES; s++) {
                size_t i = (size_t)(lb_rng_u32(&rng) % (uint32_t)n);
                num[cnt] = numeric_grad_at(soft_loss, b, p, i, h);
                ana[cnt] = gcopy[i];
                cnt++;
            }
            free(gcopy);
        }
        double dd = 0, nn = 0, amax = 0, emax = 0;
        for (int i = 0; i < cnt; i++) {
            dd += (num[i] - ana[i]) * (num[i] - ana[i]);
            nn += num[i] * num[i];
            amax = fmax(amax, fabs(num[i]));
            emax = fmax(emax, fabs(num[i] - ana[i]));
        }
        double rel = sqrt(dd / (nn > 0 ? nn : 1e-300));
        double tol = interior ? 1e-2 : 0.25;
        printf("  %s %s %s%s: gradient rel error %.2e, worst element %.2e of the largest (%.3g)\n", spec,
               lb_blockrec_kind_name(kind), what == 0 ? (kind == LB_BLOCKREC_BLOCKAP ? "W" : "V") : what == 1 ? "lo" : "hi", interior ? "" : " (clamping)", rel,
               emax / amax, amax);
        CHECK_MSG(amax > 0, "%s %d: all gradients zero", spec, what);
        CHECK_MSG(rel < tol && emax < 2 * tol * amax, "%s %s param %d: gradient rel error %.3g, worst %.3g", spec,
                  lb_blockrec_kind_name(kind), what, rel, emax / amax);
    }
    (void)base;
    lb_blockrec_free(b);
    restore_layer(m, L, fx.orig);
    free(in.x);
}

/* start = the method's weights; MSE never worse; export == forward */
static void check_refined(lb_model *m, const char *spec, const char *opts) {
    const int L = 1;
    layer_fixture fx;
    fixture_begin(&fx, m, L, spec);
    inputs in;
    make_inputs(&in, m->cfg.dim);
    lb_blockrec *b = fixture_block(&fx, m, L, opts, &in.d);
    if (!b) return;
    double start;
    CHECK_OK(lb_blockrec_loss(b, 0, 3, 0, 0, &start));
    int same = 1;
    for (int w = 0; w < LB_N_LINEARS; w++) {
        const lb_tensor *t = &m->layers[L].linear[w].w;
        float *f = malloc((size_t)t->rows * t->cols * sizeof(float));
        CHECK_OK(lb_dequantize(t, f));
        same &= !memcmp(f, lb_blockrec_weight(b, w), (size_t)t->rows * t->cols * sizeof(float));
        free(f);
    }
    CHECK_MSG(same, "%s: the start is not the rtn quantization", spec);
    lb_blockrec_report rep;
    CHECK_OK(lb_blockrec_optimize(b, &rep));
    printf("  %s %s: block mse %.5g -> %.5g (kept %d)\n", spec, opts, rep.mse_init, rep.mse_final, rep.kept);
    CHECK_NEAR(rep.mse_init, start, 0);
    CHECK(rep.mse_final <= rep.mse_init);
    CHECK_MSG(rep.mse_final < 0.95 * rep.mse_init, "%s %s: gained nothing (%g -> %g)", spec, opts, rep.mse_init,
              rep.mse_final);
    double again;
    CHECK_OK(lb_blockrec_loss(b, 0, 3, 0, 0, &again));
    CHECK_NEAR(again, rep.mse_final, 0);
    for (int w = 0; w < LB_N_LINEARS; w++) {
        lb_tensor t;
        CHECK_OK(lb_blockrec_export(b, w, &t));
        float *f = malloc((size_t)t.rows * t.cols * sizeof(float));
        CHECK_OK(lb_dequantize(&t, f));
        CHECK_MSG(!memcmp(f, lb_blockrec_weight(b, w), (size_t)t.rows * t.cols * sizeof(float)),
                  "%s linear %d: the export differs from the optimized forward", spec, w);
        CHECK(lb_qspec_equal(&t.spec, &m->layers[L].linear[w].w.spec));
        free(f);
        lb_tensor_free(&t);
    }
    lb_blockrec_free(b);
    restore_layer(m, L, fx.orig);
    free(in.x);
}

/* target=fp: the targets are the teacher on data.x_teacher, i.e. what a
 * blockrec whose own inputs are x_teacher computes as targets */
static void check_teacher_inputs(lb_model *m) {
    layer_fixture fx;
    fixture_begin(&fx, m, 1, "int2:g32:asym");
    inputs a, t;
    make_inputs(&a, m->cfg.dim);
    make_inputs(&t, m->cfg.dim);
    lb_blockrec_data d = a.d;
    d.x_teacher = t.x;
    lb_blockrec *b1 = fixture_block(&fx, m, 1, "autoround", &d), *b2 = fixture_block(&fx, m, 1, "autoround", &t.d);
    if (b1 && b2)
        CHECK(!memcmp(lb_blockrec_targets(b1), lb_blockrec_targets(b2), (12 + 7 + 16) * (size_t)m->cfg.dim * sizeof(float)));
    lb_blockrec_free(b1);
    lb_blockrec_free(b2);
    restore_layer(m, 1, fx.orig);
    free(a.x);
    free(t.x);
}

static double nll(const lb_model *m, const int *tok, int n) {
    float *logits = malloc((size_t)n * m->cfg.vocab_size * sizeof(float));
    CHECK_OK(lb_test_logits(m, tok, n, logits));
    double s = 0;
    for (int i = 0; i + 1 < n; i++) {
        const float *z = logits + (size_t)i * m->cfg.vocab_size;
        double mx = z[0], sum = 0;
        for (int j = 1; j < m->cfg.vocab_size; j++) mx = fmax(mx, z[j]);
        for (int j = 0; j < m->cfg.vocab_size; j++) sum += exp(z[j] - mx);
        s += log(sum) - (z[tok[i + 1]] - mx);
    }
    free(logits);
    return s / (n - 1);
}

static void check_pipeline(const char *model, const char *text) {
    lb_calib_opts co;
    lb_calib_opts_default(&co);
    co.text_path = text;
    co.blocks = 8;
    lb_qspec spec = lb_test_spec("int2:g32:asym");
    lb_method_opts rtn;
    lb_method_opts_default(lb_method_find("rtn"), &rtn);
    lb_plan plan;
    lb_plan_init(&plan);
    CHECK_OK(lb_plan_add_selection(&plan, "linears", &spec, &rtn));
    lb_model *plain = load(model), *ref = load(model), *bad = load(model);
    if (!plain || !ref || !bad) return;
    lb_quantize_report rp, rr;
    CHECK_OK(lb_quantize_model_sequential(plain, &plan, &co, &rp));
    CHECK_OK(lb_quantize_model_refined(ref, &plan, &co, "autoround:steps=20,batch=4", &rr));
    CHECK_NEAR(rr.bpw, rp.bpw, 0);
    lb_quantize_report_free(&rp);
    lb_quantize_report_free(&rr);
    int changed = 0;
    for (int l = 0; l < ref->cfg.n_layers; l++)
        for (int w = 0; w < LB_N_LINEARS; w++) {
            const lb_tensor *a = &plain->layers[l].linear[w].w, *b = &ref->layers[l].linear[w].w;
            CHECK(lb_qspec_equal(&a->spec, &b->spec) && a->nbytes == b->nbytes);
            changed += a->nbytes == b->nbytes && memcmp(a->data, b->data, a->nbytes) != 0;
        }
    CHECK_MSG(changed == ref->cfg.n_layers * LB_N_LINEARS, "only %d linears refined", changed);
    CHECK(strstr(ref->quant_note, "refine autoround") != NULL);
    const char *story = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park "
                        "with her friends. One day, she saw a big red ball.";
    int *tok = NULL;
    size_t nt = 0;
    CHECK_OK(lb_tokenize(ref->tokenizer, story, strlen(story), 1, 0, &tok, &nt));
    double n_plain = nll(plain, tok, (int)nt), n_ref = nll(ref, tok, (int)nt);
    printf("  pipeline int2:g32 rtn: nll %.4f, + autoround (20 steps) %.4f\n", n_plain, n_ref);
    CHECK(n_ref < n_plain);
    lb_free(tok);
    /* bad text: refused before anything changes */
    CHECK_FAILS(lb_quantize_model_refined(bad, &plan, &co, "autoround:steps=-1", NULL), LB_ERR_INVALID, "steps");
    CHECK_FAILS(lb_quantize_model_refined(bad, &plan, &co, "adaround", NULL), LB_ERR_INVALID, "unknown refinement");
    CHECK(bad->layers[0].linear[0].w.spec.family != LB_FAMILY_UNIFORM);
    lb_model_free(plain);
    lb_model_free(ref);
    lb_model_free(bad);
    lb_plan_free(&plan);
}

int main(void) {
    const char *model = lb_test_data("models/stories260K.bin"), *text = lb_test_data("text/tinystories-sample.txt");
    lb_rng_seed(&rng, 7);
    lb_model *m = load(model);
    if (!m) return lb_test_finish("test_blockrec");
    lb_blockrec_opts o;
    CHECK_OK(lb_blockrec_opts_parse("autoround", &o));
    CHECK(o.steps == 200 && fabsf(o.lr - 5e-3f) < 1e-9f && o.batch == 8);
    CHECK_OK(lb_blockrec_opts_parse("2dquant:steps=10,lr=0.01", &o));
    CHECK(o.kind == LB_BLOCKREC_2DQUANT && o.steps == 10 && fabsf(o.lr - 0.01f) < 1e-9f);
    CHECK_FAILS(lb_blockrec_opts_parse("lwc:lr=abc", &o), LB_ERR_INVALID, "not a number");
    CHECK_OK(lb_blockrec_opts_parse("autoround:target=fp", &o));
    CHECK(o.target_fp == 1);
    CHECK_FAILS(lb_blockrec_opts_parse("autoround:target=x", &o), LB_ERR_INVALID, "local or fp");
    /* blockap: EfficientQAT's target by default, its own weight rate */
    CHECK_OK(lb_blockrec_opts_parse("blockap", &o));
    CHECK(o.kind == LB_BLOCKREC_BLOCKAP && o.target_fp == 1 && o.wlr > 0 && fabsf(o.lr - 2e-3f) < 1e-9f);
    CHECK_OK(lb_blockrec_opts_parse("blockap:wlr=0.02,target=local", &o));
    CHECK(fabsf(o.wlr - 0.02f) < 1e-9f && o.target_fp == 0);
    CHECK_FAILS(lb_blockrec_opts_parse("autoround:wlr=0.02", &o), LB_ERR_INVALID, "unknown key");
    check_teacher_inputs(m);

    const char *specs[] = {"int3:g16:asym", "int3:g16:asym:zint", "int3:g16:sym"};
    for (int i = 0; i < 3; i++) check_gradients(m, specs[i], LB_BLOCKREC_AUTOROUND, 1);
    for (int i = 0; i < 3; i++) check_gradients(m, specs[i], LB_BLOCKREC_AUTOROUND, 0);
    check_gradients(m, "int2:g32:asym", LB_BLOCKREC_LWC, 0);
    for (int i = 0; i < 3; i++) check_gradients(m, specs[i], LB_BLOCKREC_BLOCKAP, 1);
    for (int i = 0; i < 3; i++) check_gradients(m, specs[i], LB_BLOCKREC_BLOCKAP, 0);
    check_refined(m, "int2:g32:asym", "autoround:steps=40,batch=2");
    check_refined(m, "int3:g16:asym:zint", "autoround:steps=40,batch=2");
    check_refined(m, "int3:g16:sym", "autoround:steps=40,batch=2"); /* rtn's sym scales are negative */
    check_refined(m, "int2:g32:asym", "blockap:steps=40,batch=2,target=local");
    check_refined(m, "int3:g16:asym:zint", "blockap:steps=40,batch=2,target=local");
    check_refined(m, "int3:g16:sym", "blockap:steps=40,batch=2,target=local");
    lb_model_free(m);
    check_pipeline(model, text);
    return lb_test_finish("test_blockrec");
}
