/* Incoherence processing (src/quant/rotate.c, the rotate=hadamard common
 * option): the proxy loss is invariant under the rotation, an outlier-heavy
 * weight quantizes far better rotated, the linear's slots reproduce the
 * rotated weight's function, bias correction lands in the original basis,
 * bad requests are refused; then the real model through both drivers. */
#include "test.h"

#include <math.h>
#include <unistd.h>

#include "kernels/kernels.h"
#include "model/model_internal.h"
#include "quant/rotate.h"

#define ROWS 24  /* 8 x 3 */
#define COLS 96  /* 32 x 3 */

static lb_rng g;

static void normal(float *v, int64_t n, float sigma) {
    for (int64_t i = 0; i < n; i++) v[i] = sigma * (float)lb_rng_normal(&g);
}

/* X^T X of n random rows whose channel j has scale 1 + (j % 7) */
static double *make_xtx(int n, float *mean) {
    double *h = calloc((size_t)COLS * COLS, sizeof(double));
    float x[COLS];
    memset(mean, 0, sizeof(float) * COLS);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < COLS; j++) x[j] = (float)(1 + j % 7) * (float)lb_rng_normal(&g) + 0.3f;
        for (int j = 0; j < COLS; j++) {
            mean[j] += x[j] / (float)n;
            for (int k = 0; k < COLS; k++) h[j * COLS + k] += (double)x[j] * x[k];
        }
    }
    return h;
}

static double trace_whw(const float *w, const double *h) {
    double t = 0;
    for (int r = 0; r < ROWS; r++)
        for (int j = 0; j < COLS; j++)
            for (int k = 0; k < COLS; k++) t += (double)w[r * COLS + j] * h[j * COLS + k] * w[r * COLS + k];
    return t;
}

/* R_o^T w R_i: a weight quantized under extras' rotations, in the original basis */
static void unrotate(const lb_quant_extras *x, float *w) {
    CHECK_OK(lb_rht_apply_rows(w, ROWS, COLS, x->in_signs, 1));
    if (x->out_signs) CHECK_OK(lb_rht_apply_cols(w, ROWS, COLS, x->out_signs, 1));
}

static void test_invariance(void) {
    float w[ROWS * COLS], mean[COLS];
    normal(w, ROWS * COLS, 1.0f);
    double *h = make_xtx(200, mean);
    double *dx = calloc((size_t)COLS * COLS, sizeof(double)); /* a cross term: not symmetric */
    for (int j = 0; j < COLS * COLS; j++) dx[j] = lb_rng_normal(&g);
    lb_layer_stats s = {.n_samples = 200, .rows = ROWS, .cols = COLS, .xtx = h, .mean_x = mean, .dxtx = dx};
    lb_rotated r;
    CHECK_OK(lb_rotate_begin(w, ROWS, COLS, &s, LB_STATS_XTX | LB_STATS_MEAN_X | LB_STATS_DXTX, 1, 5, "w", &r));
    if (!r.w) return;
    double a = trace_whw(w, h), b = trace_whw(r.w, r.stats.xtx);
    CHECK_MSG(fabs(a - b) < 1e-6 * a, "tr(W H W^T) %.9g, rotated %.9g", a, b);
    double da = trace_whw(w, dx), db = trace_whw(r.w, r.stats.dxtx), dm = 0;
    for (int j = 0; j < COLS * COLS; j++) dm += fabs(dx[j]);
    CHECK_MSG(fabs(da - db) < 1e-9 * dm * ROWS * 10, "tr(W D W^T) %.9g, rotated %.9g", da, db);
    for (int j = 0; j < COLS; j++)
        for (int k = 0; k < j; k++) CHECK(r.stats.xtx[j * COLS + k] == r.stats.xtx[k * COLS + j]);
    /* |W mean| = |W~ mean~| (the output rotation keeps norms) */
    double na = 0, nb = 0;
    for (int i = 0; i < ROWS; i++) {
        double u = 0, v = 0;
        for (int j = 0; j < COLS; j++) u += (double)w[i * COLS + j] * mean[j], v += (double)r.w[i * COLS + j] * r.stats.mean_x[j];
        na += u * u;
        nb += v * v;
    }
    CHECK_NEAR(sqrt(nb), sqrt(na), 1e-5 * sqrt(na));
    /* input only: the output side untouched */
    lb_rotated q;
    CHECK_OK(lb_rotate_begin(w, ROWS, COLS, NULL, 0, 0, 5, "w", &q));
    CHECK(q.out_signs == NULL && q.stats.xtx == NULL && !memcmp(q.in_signs, r.in_signs, sizeof(float) * COLS));
    lb_rotated_free(&q);
    lb_rotated_free(&r);
    free(h);
    free(dx);
}

/* A weight with 1% of its entries 30x larger: rotated, the outliers spread
 * over whole rows and columns and RTN's relative error falls to what it is
 * on an iid Gaussian matrix (the known answer of incoherence processing);
 * the linear built from the tensor and its slots computes the unrotated
 * effective weight. */
static void test_outliers_spread(void) {
    float *w = lb_alloc(sizeof(float) * ROWS * COLS), *eff = lb_alloc(sizeof(float) * ROWS * COLS);
    normal(w, ROWS * COLS, 1.0f);
    for (int k = 0; k < ROWS * COLS / 100; k++) w[(k * 7919) % (ROWS * COLS)] *= 30.0f;
    lb_qspec spec;
    CHECK_OK(lb_qspec_parse("int3:g32:asym", &spec));
    const lb_method *rtn = lb_method_find("rtn");
    double err[2] = {0, 0}, den = 0;
    for (int i = 0; i < ROWS * COLS; i++) den += (double)w[i] * w[i];
    for (int rot = 0; rot < 2; rot++) {
        lb_method_opts o;
        lb_method_opts_default(rtn, &o);
        CHECK_OK(lb_method_opts_set(&o, "rotate", rot ? "hadamard" : "none"));
        lb_tensor t;
        lb_quant_extras x;
        CHECK_OK(lb_quantize_tensor_ex(rtn, &o, NULL, w, ROWS, COLS, &spec, "w", &t, &x));
        CHECK((x.in_signs != NULL) == rot && (x.out_signs != NULL) == rot);
        CHECK_OK(lb_dequantize(&t, eff));
        if (rot) unrotate(&x, eff);
        for (int i = 0; i < ROWS * COLS; i++) err[rot] += ((double)w[i] - eff[i]) * ((double)w[i] - eff[i]);
        if (rot) { /* the linear: y = x Weff^T */
            float xin[2 * COLS], y[2 * ROWS];
            normal(xin, 2 * COLS, 1.0f);
            lb_linear L;
            lb_linear_init(&L, &t);
            CHECK_OK(lb_linear_set_hadamard(&L, x.in_signs));
            CHECK_OK(lb_linear_set_out_hadamard(&L, x.out_signs));
            lb_kernel_pin(&L.w, "fallback"); /* float activations: compare at 1e-5 */
            CHECK_OK(lb_linear_forward(&L, xin, 2, y, NULL));
            for (int i = 0; i < 2; i++)
                for (int r = 0; r < ROWS; r++) {
                    double want = 0, mag = 0;
                    for (int j = 0; j < COLS; j++) {
                        want += (double)xin[i * COLS + j] * eff[r * COLS + j];
                        mag += fabs((double)xin[i * COLS + j] * eff[r * COLS + j]);
                    }
                    CHECK_NEAR(y[i * ROWS + r], want, 1e-5 * mag);
                }
            lb_linear_free(&L);
        } else {
            lb_tensor_free(&t);
        }
        lb_quant_extras_free(&x);
    }
    double a = sqrt(err[0] / den), b = sqrt(err[1] / den);
    /* the same quantizer on an iid N(0, 1) matrix of the same shape */
    normal(w, ROWS * COLS, 1.0f);
    lb_tensor t;
    CHECK_OK(lb_quantize_to_tensor(w, ROWS, COLS, &spec, NULL, "g", &t));
    CHECK_OK(lb_dequantize(&t, eff));
    double eg = 0, dg = 0;
    for (int i = 0; i < ROWS * COLS; i++) eg += ((double)w[i] - eff[i]) * ((double)w[i] - eff[i]), dg += (double)w[i] * w[i];
    double gauss = sqrt(eg / dg);
    lb_tensor_free(&t);
    printf("  1%% outliers x30, int3:g32 rtn: relative error %.4f, rotated %.4f (iid Gaussian: %.4f)\n", a, b, gauss);
    CHECK_MSG(b < 0.75 * a && fabs(b - gauss) < 0.1 * gauss,
              "rotation did not Gaussianize the outliers: %.4f vs %.4f unrotated, %.4f Gaussian", b, a, gauss);
    lb_free(w);
    lb_free(eff);
}

/* bias_correct under a rotation: (W - Weff) E[x] in the original basis */
static void test_bias_correct(void) {
    float *w = lb_alloc(sizeof(float) * ROWS * COLS), *eff = lb_alloc(sizeof(float) * ROWS * COLS), mean[COLS];
    normal(w, ROWS * COLS, 1.0f);
    double *h = make_xtx(100, mean);
    lb_layer_stats s = {.n_samples = 100, .rows = ROWS, .cols = COLS, .xtx = h, .mean_x = mean};
    lb_qspec spec;
    CHECK_OK(lb_qspec_parse("int2:g32:asym", &spec));
    const lb_method *gptq = lb_method_find("gptq");
    lb_method_opts o;
    lb_method_opts_default(gptq, &o);
    CHECK_OK(lb_method_opts_set(&o, "rotate", "hadamard"));
    CHECK_OK(lb_method_opts_set(&o, "bias_correct", "1"));
    lb_tensor t;
    lb_quant_extras x;
    CHECK_OK(lb_quantize_tensor_ex(gptq, &o, &s, w, ROWS, COLS, &spec, "w", &t, &x));
    CHECK(x.bias != NULL && x.in_signs && x.out_signs);
    CHECK_OK(lb_dequantize(&t, eff));
    unrotate(&x, eff);
    for (int r = 0; x.bias && r < ROWS; r++) {
        double want = 0, mag = 0;
        for (int j = 0; j < COLS; j++) {
            want += ((double)w[r * COLS + j] - eff[r * COLS + j]) * mean[j];
            mag += fabs(((double)w[r * COLS + j] - eff[r * COLS + j]) * mean[j]);
        }
        CHECK_NEAR(x.bias[r], want, 1e-3 * mag + 1e-3 * fabs(want)); /* fp16-rounded */
        CHECK(lb_round_fp16(x.bias[r]) == x.bias[r]);
    }
    lb_tensor_free(&t);
    lb_quant_extras_free(&x);
    free(h);
    lb_free(w);
    lb_free(eff);
}

static void test_refusals(void) {
    float w[ROWS * COLS], wide[2 * 257];
    normal(w, ROWS * COLS, 1.0f);
    normal(wide, 2 * 257, 1.0f);
    const lb_method *rtn = lb_method_find("rtn"), *awq = lb_method_find("awq");
    lb_method_opts o, oa;
    lb_method_opts_default(rtn, &o);
    CHECK_OK(lb_method_opts_set(&o, "rotate", "hadamard"));
    CHECK_FAILS(lb_method_opts_set(&o, "rotate", "givens"), LB_ERR_INVALID, "rotation");
    lb_qspec q4, f16;
    CHECK_OK(lb_qspec_parse("int4:g32", &q4));
    CHECK_OK(lb_qspec_parse("f16", &f16));
    lb_tensor t;
    lb_quant_extras x;
    CHECK_FAILS(lb_quantize_tensor(rtn, &o, NULL, w, ROWS, COLS, &q4, "w", &t), LB_ERR_INVALID, "lb_quantize_tensor_ex");
    CHECK_FAILS(lb_quantize_tensor_ex(rtn, &o, NULL, w, ROWS, COLS, &q4, "w", &t, NULL), LB_ERR_INVALID, "slots");
    CHECK_FAILS(lb_quantize_tensor_ex(rtn, &o, NULL, w, ROWS, COLS, &f16, "w", &t, &x), LB_ERR_INVALID, "float");
    CHECK_FAILS(lb_quantize_tensor_ex(rtn, &o, NULL, wide, 2, 257, &q4, "wide", &t, &x), LB_ERR_INVALID, "2^k m");
    CHECK(t.data == NULL && x.in_signs == NULL);
    /* awq reads per-channel mean |x|, which no rotation carries over */
    float mean_abs[COLS], mean[COLS];
    for (int j = 0; j < COLS; j++) mean_abs[j] = 1.0f;
    double *h = make_xtx(50, mean);
    lb_layer_stats s = {.n_samples = 50, .rows = ROWS, .cols = COLS, .xtx = h, .mean_abs_x = mean_abs};
    lb_method_opts_default(awq, &oa);
    CHECK_OK(lb_method_opts_set(&oa, "rotate", "hadamard"));
    CHECK_FAILS(lb_quantize_tensor_ex(awq, &oa, &s, w, ROWS, COLS, &q4, "w", &t, &x), LB_ERR_UNSUPPORTED, "|x|");
    free(h);
    /* the signs: from the seed and the name */
    lb_quant_extras a, b;
    lb_tensor ta, tb;
    CHECK_OK(lb_quantize_tensor_ex(rtn, &o, NULL, w, ROWS, COLS, &q4, "w", &ta, &a));
    CHECK_OK(lb_quantize_tensor_ex(rtn, &o, NULL, w, ROWS, COLS, &q4, "w", &tb, &b));
    CHECK(!memcmp(a.in_signs, b.in_signs, sizeof(float) * COLS) && ta.nbytes == tb.nbytes &&
          !memcmp(ta.data, tb.data, ta.nbytes));
    lb_tensor_free(&tb);
    lb_quant_extras_free(&b);
    CHECK_OK(lb_quantize_tensor_ex(rtn, &o, NULL, w, ROWS, COLS, &q4, "v", &tb, &b));
    CHECK(memcmp(a.in_signs, b.in_signs, sizeof(float) * COLS) != 0);
    lb_tensor_free(&tb);
    lb_quant_extras_free(&b);
    CHECK_OK(lb_method_opts_set(&o, "rotate_seed", "2"));
    CHECK_OK(lb_quantize_tensor_ex(rtn, &o, NULL, w, ROWS, COLS, &q4, "w", &tb, &b));
    CHECK(memcmp(a.in_signs, b.in_signs, sizeof(float) * COLS) != 0);
    lb_tensor_free(&ta);
    lb_tensor_free(&tb);
    lb_quant_extras_free(&a);
    lb_quant_extras_free(&b);
}

/* stories260K: every linear rotated on both sides (int8: the function
 * barely changes), slots counted in bpw, save and load bit-identical;
 * sequential GPTQ with rotations; a static activation range refused. */
static void test_real_model(void) {
    lb_model *m = NULL, *f = NULL;
    CHECK_OK(lb_model_load(lb_test_data("models/stories260K.bin"), NULL, &m));
    CHECK_OK(lb_model_load(lb_test_data("models/stories260K.bin"), NULL, &f));
    if (!m || !f) return;
    int tok[6] = {1, 403, 407, 261, 378, 1};
    float *want = lb_alloc(6 * 512 * sizeof(float)), *got = lb_alloc(6 * 512 * sizeof(float));
    CHECK_OK(lb_test_logits(f, tok, 6, want));
    lb_plan plan;
    lb_plan_init(&plan);
    /* the same format without rotations: how far int8 moves the logits */
    lb_model *u = NULL;
    CHECK_OK(lb_model_load(lb_test_data("models/stories260K.bin"), NULL, &u));
    const char *plain = "linears int8:g64:asym\n";
    CHECK_OK(lb_plan_parse_recipe(&plan, plain, strlen(plain), "r"));
    CHECK_OK(lb_quantize_model(u, &plan, NULL));
    CHECK_OK(lb_test_logits(u, tok, 6, got));
    double worst_plain = 0;
    for (int i = 0; i < 6 * 512; i++) worst_plain = fmax(worst_plain, fabs(got[i] - want[i]));
    lb_model_free(u);
    lb_plan_free(&plan);
    lb_plan_init(&plan);
    const char *recipe = "linears int8:g64:asym rotate=hadamard\n";
    CHECK_OK(lb_plan_parse_recipe(&plan, recipe, strlen(recipe), "r"));
    lb_quantize_report rep;
    CHECK_OK(lb_quantize_model(m, &plan, &rep));
    uint64_t want_bytes = 0;
    int64_t weights = 0;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int i = 0; i < LB_N_LINEARS; i++) {
            const lb_linear *L = &m->layers[l].linear[i];
            CHECK(L->rot.kind == LB_ROTATION_HADAMARD && L->out_rot.kind == LB_ROTATION_HADAMARD);
            want_bytes += L->w.nbytes + (uint64_t)(L->w.cols + 7) / 8 + (uint64_t)(L->w.rows + 7) / 8;
            weights += L->w.rows * L->w.cols;
        }
    CHECK_NEAR(rep.bpw, 8.0 * (double)want_bytes / (double)weights, 1e-9);
    lb_quantize_report_free(&rep);
    CHECK_OK(lb_test_logits(m, tok, 6, got));
    double worst = 0, scale = 0;
    for (int i = 0; i < 6 * 512; i++) worst = fmax(worst, fabs(got[i] - want[i])), scale = fmax(scale, fabs(want[i]));
    printf("  stories260K int8:g64: logits within %.4f of fp32 rotated, %.4f not (largest %.2f)\n", worst, worst_plain,
           scale);
    CHECK_MSG(worst < 1.5 * worst_plain, "rotated int8 logits off by %g (unrotated: %g)", worst, worst_plain);
    char dir[] = "/tmp/lb_rotate_XXXXXX", path[256];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/r.gguf", dir);
    CHECK_OK(lb_model_save_gguf(m, path));
    lb_model *back = NULL;
    CHECK_OK(lb_model_load(path, NULL, &back));
    if (back) {
        float *again = lb_alloc(6 * 512 * sizeof(float));
        CHECK_OK(lb_test_logits(back, tok, 6, again));
        CHECK_MSG(!memcmp(again, got, 6 * 512 * sizeof(float)), "logits change through save and load");
        lb_free(again);
        lb_model_free(back);
    }
    remove(path);
    rmdir(dir);
    /* rotating again on top of the rotations: refused, model unchanged */
    CHECK_FAILS(lb_quantize_model(m, &plan, NULL), LB_ERR_UNSUPPORTED, "already has");
    lb_plan_free(&plan);

    /* sequential GPTQ under rotations, and a static activation range refused */
    lb_calib_opts co;
    lb_calib_opts_default(&co);
    co.text_path = lb_test_data("text/tinystories-sample.txt");
    co.calib_blocks = 8;
    lb_plan_init(&plan);
    recipe = "linears int4:g64:asym method=gptq rotate=hadamard\n";
    CHECK_OK(lb_plan_parse_recipe(&plan, recipe, strlen(recipe), "r"));
    CHECK_OK(lb_act_spec_parse("int8:tensor:minmax", &plan.act));
    CHECK_FAILS(lb_quantize_model_sequential(f, &plan, &co, NULL), LB_ERR_UNSUPPORTED, "rotate");
    CHECK(f->layers[0].linear[0].rot.kind == LB_ROTATION_NONE && f->layers[0].linear[0].w.spec.family == LB_FAMILY_F32);
    plan.act.kind = LB_AQ_NONE;
    /* yardstick: the same without rotations */
    lb_model *u2 = NULL;
    CHECK_OK(lb_model_load(lb_test_data("models/stories260K.bin"), NULL, &u2));
    lb_plan p2;
    lb_plan_init(&p2);
    const char *plain2 = "linears int4:g64:asym method=gptq\n";
    CHECK_OK(lb_plan_parse_recipe(&p2, plain2, strlen(plain2), "r"));
    CHECK_OK(lb_quantize_model_sequential(u2, &p2, &co, NULL));
    CHECK_OK(lb_test_logits(u2, tok, 6, got));
    double worst_seq_plain = 0;
    for (int i = 0; i < 6 * 512; i++) worst_seq_plain = fmax(worst_seq_plain, fabs(got[i] - want[i]));
    lb_plan_free(&p2);
    lb_model_free(u2);
    CHECK_OK(lb_quantize_model_sequential(f, &plan, &co, NULL));
    CHECK(f->layers[4].linear[LB_W2].rot.kind == LB_ROTATION_HADAMARD &&
          f->layers[4].linear[LB_W2].out_rot.kind == LB_ROTATION_HADAMARD);
    CHECK_OK(lb_test_logits(f, tok, 6, got));
    worst = 0;
    for (int i = 0; i < 6 * 512; i++) worst = fmax(worst, fabs(got[i] - want[i]));
    printf("  stories260K int4:g64 gptq --sequential: logits within %.3f of fp32 rotated, %.3f not\n", worst,
           worst_seq_plain);
    CHECK_MSG(worst < 2 * worst_seq_plain, "sequential rotated int4 logits off by %g (unrotated: %g)", worst,
              worst_seq_plain);
    lb_plan_free(&plan);
    lb_free(want);
    lb_free(got);
    lb_model_free(m);
    lb_model_free(f);
}

int main(void) {
    lb_rng_seed(&g, 42);
    test_invariance();
    test_outliers_spread();
    test_bias_correct();
    test_refusals();
    test_real_model();
    return lb_test_finish("test_rotate");
}
