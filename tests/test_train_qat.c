/* Quantization-aware training (src/train/fakequant.c, qat_schemes.c)
 * against known answers:
 *  - each scheme's forward weight equals its paper's definition, computed
 *    here independently, on a small known matrix;
 *  - the gradients of every learned parameter (TTQ's Wp/Wn, OneBit's h/g,
 *    ParetoQ's step) against central differences of L = sum R * W_eff, with
 *    the codes held fixed (the latent weight does not move, and ParetoQ's
 *    weights sit where its codes cannot change); ParetoQ's STE term inside
 *    the clip range against the LSQ formula;
 *  - the straight-through estimators pass the gradient, and cut it where
 *    the papers cut it (ParetoQ outside its clip range, BinaryConnect beyond H);
 *  - 8-bit gradient quantization: nearest rounding within half a step,
 *    stochastic rounding unbiased;
 *  - on stories260K: a short QAT run lowers the loss, the exported file's
 *    dequantized linears equal the training forward's weights bit for bit
 *    and the exported model's loss equals the trainer's, and bad schemes or
 *    formats fail with a message.
 *
 * The learned-scale checks run with exact_scales (no fp16 rounding of the
 * scales, which would make L piecewise constant in them); L is linear in the
 * scales with the codes fixed, so the central difference is exact up to the
 * float rounding of W_eff: ~1e-7 relative. We require 1e-4. */
#include "test.h"

#include "train/qat.h"
#include "train_check.h"

static lb_rng rng;

typedef struct {
    lb_qat_state S;
    lb_train_linear L;
    float *w, *dw, *learned, *dlearned;
} rig;

/* a state for one rows x cols linear holding w, as lb_qat_attach builds it */
static int rig_make(rig *r, const char *scheme, const char *spec, int rows, int cols, const float *w, int exact) {
    memset(r, 0, sizeof *r);
    size_t n = (size_t)rows * cols;
    r->w = malloc(n * sizeof(float));
    r->dw = calloc(n, sizeof(float));
    memcpy(r->w, w, n * sizeof(float));
    r->L = (lb_train_linear){&lb_train_linear_qat, r->w, r->dw, rows, cols, &r->S};
    lb_qat_state *S = &r->S;
    S->scheme = lb_qat_scheme_find(scheme);
    CHECK(S->scheme != NULL);
    S->spec = lb_test_spec(spec);
    CHECK_OK(S->scheme->check(&S->spec));
    S->L = &r->L;
    S->rows = rows;
    S->cols = cols;
    S->rng = &rng;
    S->exact_scales = exact;
    S->weff = malloc(n * sizeof(float));
    S->dweff = malloc(n * sizeof(float));
    S->n_learned = S->scheme->n_learned(&S->spec, rows, cols);
    r->learned = S->learned = calloc(S->n_learned + 1, sizeof(float));
    r->dlearned = S->dlearned = calloc(S->n_learned + 1, sizeof(float));
    lb_status st = S->scheme->init(S);
    CHECK_OK(st);
    if (st != LB_OK) return 0;
    CHECK_OK(S->scheme->quantize(S));
    lb_qat_decode(S);
    return 1;
}

static void rig_free(rig *r) {
    if (r->S.have_q) lb_qtensor_free(&r->S.q);
    free(r->S.weff);
    free(r->S.dweff);
    lb_free(r->S.aux);
    free(r->w);
    free(r->dw);
    free(r->learned);
    free(r->dlearned);
}

static double max_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

enum { R = 6, C = 40 };
static float W[R * C];

/* ---- forward definitions ------------------------------------------------------ */

static void test_forwards(void) {
    float want[R * C];
    rig r;
    /* bwn: alpha = mean|w| per row */
    if (rig_make(&r, "bwn", "binary:row", R, C, W, 1)) {
        for (int i = 0; i < R; i++) {
            double a = 0;
            for (int j = 0; j < C; j++) a += fabs(W[i * C + j]);
            for (int j = 0; j < C; j++) want[i * C + j] = (float)(a / C) * (W[i * C + j] >= 0 ? 1 : -1);
        }
        CHECK_MSG(max_diff(r.S.weff, want, R * C) < 1e-6, "bwn forward differs by %g", max_diff(r.S.weff, want, R * C));
        rig_free(&r);
    }
    /* twn: delta = 0.7 mean|w|, alpha = mean |w| over |w| > delta, per row */
    if (rig_make(&r, "twn", "ternary:row", R, C, W, 0)) {
        for (int i = 0; i < R; i++) {
            double m = 0, s = 0;
            int k = 0;
            for (int j = 0; j < C; j++) m += fabs(W[i * C + j]);
            double delta = 0.7 * m / C;
            for (int j = 0; j < C; j++)
                if (fabs(W[i * C + j]) > delta) s += fabs(W[i * C + j]), k++;
            float alpha = lb_round_fp16((float)(s / k));
            for (int j = 0; j < C; j++)
                want[i * C + j] = fabs(W[i * C + j]) > delta ? (W[i * C + j] > 0 ? alpha : -alpha) : 0.0f;
        }
        CHECK_MSG(max_diff(r.S.weff, want, R * C) < 1e-6, "twn forward differs by %g", max_diff(r.S.weff, want, R * C));
        rig_free(&r);
    }
    /* bitnet: gamma = mean|W| over the tensor, clamp(round(w / gamma), -1, 1) gamma */
    if (rig_make(&r, "bitnet", "ternary:tensor", R, C, W, 0)) {
        double g = 0;
        for (int i = 0; i < R * C; i++) g += fabs(W[i]);
        g /= R * C;
        float gs = r.S.q.scale[0];
        CHECK_NEAR(gs, g, 1e-3 * g); /* stored as fp16 */
        for (int i = 0; i < R * C; i++) want[i] = fminf(fmaxf(roundf((float)(W[i] / g)), -1), 1) * gs;
        CHECK_MSG(max_diff(r.S.weff, want, R * C) < 1e-6, "bitnet forward differs");
        rig_free(&r);
    }
    /* ttq: threshold 0.05 max|W|; Wp, Wn start at the mean magnitude of their sets */
    if (rig_make(&r, "ttq", "lut2:tensor", R, C, W, 1)) {
        double mx = 0, sp = 0, sn = 0;
        int np = 0, nn = 0;
        for (int i = 0; i < R * C; i++) mx = fmax(mx, fabs(W[i]));
        float d = (float)(0.05 * mx);
        for (int i = 0; i < R * C; i++)
            if (W[i] > d) sp += W[i], np++;
            else if (W[i] < -d) sn -= W[i], nn++;
        CHECK_NEAR(r.learned[0], sp / np, 1e-6);
        CHECK_NEAR(r.learned[1], sn / nn, 1e-6);
        for (int i = 0; i < R * C; i++) want[i] = W[i] > d ? (float)(sp / np) : W[i] < -d ? -(float)(sn / nn) : 0.0f;
        CHECK_MSG(max_diff(r.S.weff, want, R * C) < 1e-6, "ttq forward differs");
        rig_free(&r);
    }
    /* paretoq, each mode, alpha per row: levels as METHODS.md s14 writes them */
    const char *pq[] = {"binary:row", "ternary:row", "int2:row:asym", "int3:row:sym"};
    for (int m = 0; m < 4; m++) {
        if (!rig_make(&r, "paretoq", pq[m], R, C, W, 1)) continue;
        for (int i = 0; i < R; i++) {
            double sum = 0, mx = 0;
            for (int j = 0; j < C; j++) sum += fabs(W[i * C + j]), mx = fmax(mx, fabs(W[i * C + j]));
            double a = m == 0 ? sum / C : m == 3 ? mx / 3 : mx;
            CHECK_NEAR(r.learned[i], a, 1e-6 * a);
            for (int j = 0; j < C; j++) {
                double v = W[i * C + j] / a, u = fmin(fmax(v, -0.99), 0.99), lv;
                if (m == 0) lv = v >= 0 ? 1 : -1;
                else if (m == 1) lv = round(1.5 * u) / 1.5;
                else if (m == 2) lv = (round(2 * u - 0.5) + 0.5) / 2;
                else lv = fmin(fmax(round(v), -4), 3);
                want[i * C + j] = (float)(lv * a);
            }
        }
        double e = max_diff(r.S.weff, want, R * C);
        CHECK_MSG(e < 1e-6, "paretoq %s forward differs by %g", pq[m], e);
        rig_free(&r);
    }
    /* onebit: W_eff = h sign(W) g with h, g from SVID (a rank-1 fit of |W|: close
     * to |W| for a matrix that is rank-1 in magnitude); the latent weights become 0.01 sign(W) */
    float w1[R * C];
    for (int i = 0; i < R; i++)
        for (int j = 0; j < C; j++) w1[i * C + j] = (float)((0.5 + i) * (1.0 + 0.1 * j) * (lb_rng_u32(&rng) & 1 ? 1 : -1));
    if (rig_make(&r, "onebit", "onebit", R, C, w1, 1)) {
        const float *h = r.learned, *g = r.learned + R;
        double e = 0;
        for (int i = 0; i < R; i++)
            for (int j = 0; j < C; j++) {
                float s = w1[i * C + j] >= 0 ? 1.0f : -1.0f;
                e = fmax(e, fabs(r.S.weff[i * C + j] - h[i] * s * g[j]));
                CHECK(r.w[i * C + j] == 0.01f * s);
                CHECK_NEAR(r.S.weff[i * C + j], w1[i * C + j], 1e-3 * fabs(w1[i * C + j])); /* SVID exact on rank 1 */
            }
        CHECK_MSG(e < 1e-6, "onebit forward differs from h sign g by %g", e);
        rig_free(&r);
    }
}

/* ---- learned-parameter gradients ---------------------------------------------- */

/* L = sum Rm * W_eff */
static double proj_loss(rig *r, const float *Rm) {
    CHECK_OK(r->S.scheme->quantize(&r->S));
    lb_qat_decode(&r->S);
    double s = 0;
    for (int i = 0; i < r->S.rows * r->S.cols; i++) s += (double)Rm[i] * r->S.weff[i];
    return s;
}

/* analytic d L / d learned against central differences (scaled by `scale` per entry when given) */
static void check_learned_grad(const char *what, rig *r, const float *Rm, const float *scale) {
    size_t n = r->S.n_learned;
    memset(r->dlearned, 0, n * sizeof(float));
    proj_loss(r, Rm);
    CHECK_OK(r->S.scheme->backward(&r->S, Rm));
    double worst = 0, big = 0;
    for (size_t k = 0; k < n; k++) {
        float keep = r->learned[k], h = 1e-3f * fmaxf(fabsf(keep), 1e-3f);
        r->learned[k] = keep + h;
        double lp = proj_loss(r, Rm);
        r->learned[k] = keep - h;
        double lm = proj_loss(r, Rm);
        r->learned[k] = keep;
        double num = (lp - lm) / (2.0 * ((double)(keep + h) - keep)), ana = r->dlearned[k] / (scale ? scale[k] : 1.0f);
        worst = fmax(worst, fabs(num - ana));
        big = fmax(big, fabs(num));
    }
    printf("  %-34s %zu parameters: max |d| %.3e, worst error %.2e\n", what, n, big, worst);
    CHECK_MSG(big > 0 && worst < 1e-4 * big, "%s: learned gradient off by %g (of %g)", what, worst, big);
    proj_loss(r, Rm); /* leave the state as quantized with the unperturbed values */
}

static void test_learned_grads(void) {
    float Rm[R * C];
    for (int i = 0; i < R * C; i++) Rm[i] = (float)lb_rng_normal(&rng);
    rig r;
    printf("learned-parameter gradients, L = sum R W_eff, codes fixed:\n");
    if (rig_make(&r, "ttq", "lut2:row", R, C, W, 1)) {
        check_learned_grad("ttq Wp, Wn (lut2:row)", &r, Rm, NULL);
        /* latent gradient: dW_eff scaled by Wp, 1, Wn on the three sets */
        memset(r.dw, 0, sizeof(float) * R * C);
        CHECK_OK(r.S.scheme->backward(&r.S, Rm));
        int ok = 1;
        for (int i = 0; i < R * C; i++) {
            int code = r.S.q.codes[(i / C) * r.S.q.cols_padded + i % C];
            float f = code == 2 ? r.learned[2 * (i / C)] : code == 0 ? r.learned[2 * (i / C) + 1] : 1.0f;
            ok &= fabsf(r.dw[i] - f * Rm[i]) <= 1e-6f * fabsf(Rm[i]);
        }
        CHECK_MSG(ok, "ttq latent gradient is not dW_eff scaled by Wp / 1 / Wn");
        rig_free(&r);
    }
    float w1[R * C];
    for (int i = 0; i < R * C; i++) w1[i] = (float)lb_rng_normal(&rng);
    if (rig_make(&r, "onebit", "onebit", R, C, w1, 1)) {
        for (int k = 0; k < R + C; k++) r.learned[k] *= 1.0f + 0.3f * (float)lb_rng_normal(&rng); /* generic h, g */
        check_learned_grad("onebit h, g", &r, Rm, NULL);
        rig_free(&r);
    }
    /* ParetoQ: with every |w| / alpha beyond the clip range (ternary, SEQ) or the
     * grid (LSQ) the codes cannot move, W_eff = alpha level, and dL/dalpha =
     * g sum R level, g = 1 / sqrt(n Qp) */
    const char *pq[] = {"binary:row", "ternary:row", "int2:row:asym", "int3:row:sym"};
    const float qp[] = {1, 1, 2, 3};
    for (int m = 0; m < 4; m++) {
        if (!rig_make(&r, "paretoq", pq[m], R, C, W, 1)) continue;
        for (int i = 0; i < R; i++) r.learned[i] = m == 3 ? 0.1f : 0.5f; /* |W| >= 1 below: beyond 0.99 alpha, 3 alpha */
        for (int i = 0; i < R * C; i++) r.w[i] = (W[i] >= 0 ? 1.0f : -1.0f) * (1.0f + fabsf(W[i]));
        float g[R];
        for (int i = 0; i < R; i++) g[i] = 1.0f / sqrtf(C * qp[m]);
        char what[64];
        snprintf(what, sizeof what, "paretoq alpha (%s, saturated)", pq[m]);
        check_learned_grad(what, &r, Rm, g);
        /* the latent STE is cut outside the clip range (not for 1 bit) */
        memset(r.dw, 0, sizeof(float) * R * C);
        CHECK_OK(r.S.scheme->backward(&r.S, Rm));
        double dwmax = 0;
        for (int i = 0; i < R * C; i++) dwmax = fmax(dwmax, fabs(r.dw[i]));
        if (m == 0) CHECK_MSG(max_diff(r.dw, Rm, R * C) == 0, "paretoq 1-bit STE is not the identity");
        else CHECK_MSG(dwmax == 0, "paretoq %s passes latent gradient outside its clip range", pq[m]);
        /* inside the range: LSQ's rule level - w / alpha, and the STE passes */
        for (int i = 0; i < R; i++) r.learned[i] = m == 3 ? 1.0f : 2.0f;
        for (int i = 0; i < R * C; i++) r.w[i] = W[i];
        memset(r.dw, 0, sizeof(float) * R * C);
        memset(r.dlearned, 0, sizeof(float) * R);
        proj_loss(&r, Rm);
        CHECK_OK(r.S.scheme->backward(&r.S, Rm));
        if (m > 0) {
            double e = 0;
            for (int i = 0; i < R; i++) {
                double want = 0, a = r.learned[i];
                for (int j = 0; j < C; j++) {
                    double v = W[i * C + j] / a, lv = r.S.weff[i * C + j] / a;
                    want += Rm[i * C + j] * (lv - v); /* all inside: |W| < 0.99 alpha (and < 3 alpha) */
                }
                e = fmax(e, fabs(r.dlearned[i] - g[i] * want) / fmax(fabs(g[i] * want), 1e-6));
            }
            CHECK_MSG(e < 1e-4, "paretoq %s: the LSQ step gradient differs (rel %g)", pq[m], e);
            CHECK_MSG(max_diff(r.dw, Rm, R * C) == 0, "paretoq %s: STE does not pass inside the range", pq[m]);
        }
        rig_free(&r);
    }
    /* STE passes the gradient unchanged (ste, twn, bitnet) */
    const char *ste[][2] = {{"ste", "int3:g32"}, {"twn", "ternary:row"}, {"bitnet", "ternary:tensor"}};
    for (int s = 0; s < 3; s++)
        if (rig_make(&r, ste[s][0], ste[s][1], R, C, W, 0)) {
            CHECK_OK(r.S.scheme->backward(&r.S, Rm));
            CHECK_MSG(max_diff(r.dw, Rm, R * C) == 0, "%s: the STE does not pass the gradient", ste[s][0]);
            rig_free(&r);
        }
    /* BinaryConnect: the STE cut beyond H = max|w0|, latent weights clipped back to [-H, H] */
    if (rig_make(&r, "binaryconnect", "binary:row", R, C, W, 0)) {
        float H = r.S.aux[R + 0];
        r.w[0] = 2 * H;
        CHECK_OK(r.S.scheme->backward(&r.S, Rm));
        CHECK(r.dw[0] == 0 && r.dw[1] == Rm[1]);
        r.S.scheme->after_step(&r.S);
        CHECK(r.w[0] == H);
        rig_free(&r);
    }
    /* BWN: XNOR-Net's gradient sign(w_i) mean_j(dW_eff_j sign(w_j)) + alpha dW_eff_i */
    if (rig_make(&r, "bwn", "binary:row", R, C, W, 1)) {
        CHECK_OK(r.S.scheme->backward(&r.S, Rm));
        double e = 0;
        for (int i = 0; i < R; i++) {
            double gs = 0, a = 0;
            for (int j = 0; j < C; j++) gs += Rm[i * C + j] * (W[i * C + j] >= 0 ? 1 : -1), a += fabs(W[i * C + j]);
            for (int j = 0; j < C; j++)
                e = fmax(e, fabs(r.dw[i * C + j] - ((W[i * C + j] >= 0 ? 1 : -1) * gs / C + a / C * Rm[i * C + j])));
        }
        CHECK_MSG(e < 1e-5, "bwn gradient differs by %g", e);
        rig_free(&r);
    }
}

/* ---- 8-bit gradients --------------------------------------------------------------- */

static void test_grad_quant(void) {
    enum { N = 4, M = 64 };
    float dy[N * M], q[N * M];
    for (int i = 0; i < N * M; i++) dy[i] = (float)lb_rng_normal(&rng) * (i < M ? 100.0f : 1.0f);
    lb_qat_quantize_grad(dy, N, M, 8, 0, 0, &rng, q);
    double e = 0;
    for (int n = 0; n < N; n++) {
        double amax = 0;
        for (int j = 0; j < M; j++) amax = fmax(amax, fabs(dy[n * M + j]));
        for (int j = 0; j < M; j++) e = fmax(e, fabs(q[n * M + j] - dy[n * M + j]) / (amax / 127));
    }
    CHECK_MSG(e <= 0.5 + 1e-4, "nearest 8-bit gradient rounding off by %g steps", e);
    /* per tensor: the small rows share the big row's step */
    lb_qat_quantize_grad(dy, N, M, 8, 1, 0, &rng, q);
    int zeros = 0;
    for (int i = M; i < N * M; i++) zeros += q[i] == 0;
    CHECK(zeros > (N - 1) * M / 2);
    /* stochastic rounding is unbiased: the mean of many draws approaches dy */
    double acc[M] = {0};
    for (int t = 0; t < 4000; t++) {
        lb_qat_quantize_grad(dy, 1, M, 4, 0, 1, &rng, q);
        for (int j = 0; j < M; j++) acc[j] += q[j];
    }
    double amax = 0, bias = 0;
    for (int j = 0; j < M; j++) amax = fmax(amax, fabs(dy[j]));
    for (int j = 0; j < M; j++) bias = fmax(bias, fabs(acc[j] / 4000 - dy[j]) / (amax / 7));
    CHECK_MSG(bias < 0.05, "stochastic rounding biased by %g steps", bias);
}

/* ---- stories260K: training, export, errors ---------------------------------------------- */

static void test_export(const lb_model *m0, const lb_train_data *d, const char *scheme, const char *format, int steps) {
    enum { T = 64 };
    lb_train_opts o;
    lb_train_opts_default(&o);
    o.batch = 1;
    o.ctx = T;
    o.steps = steps;
    o.lr = 2e-3f;
    o.qat = scheme;
    o.format = format;
    lb_trainer *t;
    CHECK_OK(lb_trainer_create(m0, &o, &t));
    if (!t) return;
    lb_rng r;
    lb_rng_seed(&r, 5);
    int tok[T + 1], fixed[T + 1];
    CHECK_OK(lb_train_data_batch(d, 1, T, &r, fixed));
    double before, after;
    CHECK_OK(lb_trainer_loss(t, fixed, &before));
    for (int s = 0; s < steps; s++) {
        memcpy(tok, fixed, sizeof tok); /* the same window: the loss on it must fall */
        CHECK_OK(lb_trainer_step(t, tok, NULL));
    }
    CHECK_OK(lb_trainer_loss(t, fixed, &after));
    lb_model *m;
    CHECK_OK(lb_model_load(lb_test_data("models/stories260K.bin"), NULL, &m));
    CHECK_OK(lb_trainer_store(t, m));
    /* the file's linears decode to exactly the forward's weights */
    double wdiff = 0;
    struct lb_qat *Q = lb_trainer_qat(t);
    for (int i = 0; Q && i < Q->n_states; i++) {
        lb_qat_state *S = &Q->states[i];
        const lb_tensor *w = &m->layers[i / LB_N_LINEARS].linear[i % LB_N_LINEARS].w;
        float *deq = malloc(sizeof(float) * S->rows * S->cols);
        CHECK_OK(lb_dequantize(w, deq));
        wdiff = fmax(wdiff, max_diff(deq, S->weff, (size_t)S->rows * S->cols));
        CHECK(lb_qspec_equal(&w->spec, &S->spec));
        free(deq);
    }
    /* on a window not trained on (the trained one's loss is near 0) */
    int other[T + 1];
    CHECK_OK(lb_train_data_batch(d, 1, T, &r, other));
    double trained;
    CHECK_OK(lb_trainer_loss(t, other, &trained));
    double exported = train_model_nll(m, other, T);
    printf("  %-8s %-22s %d steps on one window: loss %.4f -> %.4f; another window: exported model %.6f, "
           "trainer %.6f; max |W_file - W_forward| %g\n",
           scheme, format ? format : lb_qat_default_format_name(scheme), steps, before, after, exported, trained, wdiff);
    CHECK_MSG(after < before - 0.05, "%s: QAT did not lower the loss (%g -> %g)", scheme, before, after);
    CHECK_MSG(wdiff == 0, "%s: the exported weights differ from the forward's by %g", scheme, wdiff);
    /* each linear exactly; end to end exactly too unless activations are
     * quantized, whose rounding flips cascade (train_check.h) */
    double gap = train_linear_gap(t, m, 4, 77);
    printf("           per linear on random inputs: max |y_file - y_trainer| / max |y| = %.3g\n", gap);
    CHECK_MSG(gap >= 0 && gap < 1e-5, "%s: a stored linear computes other outputs than the trainer's (%g)", scheme,
              gap);
    double tol = Q && Q->states[0].act_bits ? 1e-2 : 1e-5;
    CHECK_MSG(fabs(exported - trained) < tol * fabs(trained), "%s: exported loss %.6f, trainer %.6f", scheme, exported,
              trained);
    lb_model_free(m);
    lb_trainer_free(t);
}

static void test_refusals(const lb_model *m) {
    lb_train_opts o;
    lb_train_opts_default(&o);
    lb_trainer *t = NULL;
    o.qat = "nosuch";
    CHECK_FAILS(lb_trainer_create(m, &o, &t), LB_ERR_INVALID, "unknown QAT scheme 'nosuch'");
    o.qat = "bwn";
    o.format = "ternary:row";
    CHECK_FAILS(lb_trainer_create(m, &o, &t), LB_ERR_INVALID, "writes the binary family");
    o.qat = "ttq";
    o.format = "int2:row";
    CHECK_FAILS(lb_trainer_create(m, &o, &t), LB_ERR_INVALID, "lut2");
    o.qat = "paretoq";
    o.format = "nf4:g64";
    CHECK_FAILS(lb_trainer_create(m, &o, &t), LB_ERR_INVALID, "paretoq writes");
    o.qat = "ste";
    o.format = NULL;
    CHECK_FAILS(lb_trainer_create(m, &o, &t), LB_ERR_INVALID, "needs a format");
    o.format = "f16";
    CHECK_FAILS(lb_trainer_create(m, &o, &t), LB_ERR_INVALID, "quantized format");
    o.qat = "onebit";
    o.format = "int9";
    CHECK_FAILS(lb_trainer_create(m, &o, &t), LB_ERR_INVALID, "QAT format");
    CHECK(t == NULL);
}

int main(void) {
    /* the exported model through the dequantize + float GEMM kernels, the
     * training forward's arithmetic: the low-bit kernels' own int8 activation
     * rounding is theirs, not the export's (cli_train_qat.sh evaluates through them) */
    setenv("LB_KERNEL", "fallback", 1);
    lb_rng_seed(&rng, 2024);
    for (int i = 0; i < R * C; i++) W[i] = (float)(0.1 * lb_rng_normal(&rng));
    test_forwards();
    test_learned_grads();
    test_grad_quant();

    lb_model *m;
    lb_text text;
    CHECK_OK(lb_model_load(lb_test_data("models/stories260K.bin"), NULL, &m));
    CHECK_OK(lb_text_load(lb_test_data("text/tinystories-sample.txt"), &text));
    lb_train_data d;
    CHECK_OK(lb_train_data_load(m, &text, LB_SPLIT_CALIB, 128, &d));
    printf("stories260K, QAT then export:\n");
    test_export(m, &d, "bitnet", NULL, 12);
    test_export(m, &d, "bwn", NULL, 12);
    test_export(m, &d, "onebit", NULL, 12);
    test_export(m, &d, "ttq", NULL, 12);
    test_export(m, &d, "paretoq", "int2:g64:asym:s4:r16", 12);
    test_export(m, &d, "paretoq", "int3:row:sym", 12);
    test_export(m, &d, "twn", NULL, 12);
    test_export(m, &d, "ste", "int2:g32:asym", 12);
    test_refusals(m);
    lb_train_data_free(&d);
    lb_text_free(&text);
    lb_model_free(m);
    return lb_test_finish("test_train_qat");
}
