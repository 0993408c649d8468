/* GPTAQ (the gptaq row of src/quant/gptq.c) on a synthetic problem with
 * known structure: fp32 inputs X (correlated channels) and "quantized"
 * inputs X~ = X (I + M) + noise, a systematic distortion like the one
 * earlier quantized layers cause. The objective GPTAQ targets is
 *   L(Q) = ||X~ Q^T - X W^T||^2,
 * the quantized layer on X~ against the fp32 layer on X; GPTQ on H = X~^T X~
 * ignores the second half of the mismatch. Checked:
 * - with (x_fp - x) x^T = 0 (no distortion), gptaq writes gptq's bytes;
 * - GPTAQ's L is well below GPTQ's (alpha 1 and the default 0.25, plain and
 *   act-order), and alpha 1 below alpha 0.25 (the term is what helps);
 * - at int8, where rounding hardly matters, alpha 1 recovers most of the
 *   distance between GPTQ and the least-squares optimum over all real Q;
 * - same bytes for 1 and 2 threads; without the cross statistics gptaq
 *   fails, pointing at --sequential. */
#include "test.h"

enum { ROWS = 48, COLS = 64, N = 3000, K = 12 };

typedef struct {
    double *x, *xq; /* N x COLS */
    double *h, *d;  /* COLS x COLS: X~^T X~, (X - X~)^T X~ */
    float *w;       /* ROWS x COLS */
} problem;

static void make_problem(problem *p, double distortion, uint64_t seed) {
    lb_rng r;
    lb_rng_seed(&r, seed);
    p->x = calloc((size_t)N * COLS, sizeof(double));
    p->xq = calloc((size_t)N * COLS, sizeof(double));
    p->h = calloc((size_t)COLS * COLS, sizeof(double));
    p->d = calloc((size_t)COLS * COLS, sizeof(double));
    p->w = malloc((size_t)ROWS * COLS * sizeof(float));
    double *A = malloc((size_t)K * COLS * sizeof(double)), *M = malloc((size_t)COLS * COLS * sizeof(double));
    for (int i = 0; i < K * COLS; i++) A[i] = lb_rng_normal(&r);
    for (int i = 0; i < COLS * COLS; i++) M[i] = distortion * lb_rng_normal(&r) / sqrt((double)COLS);
    for (int i = 0; i < ROWS * COLS; i++) p->w[i] = (float)lb_rng_normal(&r);
    for (int t = 0; t < N; t++) {
        double z[K];
        for (int j = 0; j < K; j++) z[j] = lb_rng_normal(&r);
        double *x = p->x + (size_t)t * COLS, *xq = p->xq + (size_t)t * COLS;
        for (int c = 0; c < COLS; c++) {
            double v = 0.1 * lb_rng_normal(&r);
            for (int j = 0; j < K; j++) v += z[j] * A[j * COLS + c];
            x[c] = v * (0.3 + 2.0 * c / COLS);
        }
        for (int c = 0; c < COLS; c++) {
            double v = x[c] + (distortion > 0 ? 0.02 * lb_rng_normal(&r) : 0);
            for (int k = 0; k < COLS; k++) v += x[k] * M[k * COLS + c];
            xq[c] = v;
        }
        for (int a = 0; a < COLS; a++)
            for (int b = 0; b < COLS; b++) {
                p->h[a * COLS + b] += xq[a] * xq[b];
                p->d[a * COLS + b] += (x[a] - xq[a]) * xq[b];
            }
    }
    free(A);
    free(M);
}

static void free_problem(problem *p) {
    free(p->x);
    free(p->xq);
    free(p->h);
    free(p->d);
    free(p->w);
}

/* ||X~ Q^T - X W^T||^2 over all tokens and rows, q: ROWS x COLS */
static double asym_loss(const problem *p, const float *q) {
    double loss = 0;
    for (int t = 0; t < N; t++) {
        const double *x = p->x + (size_t)t * COLS, *xq = p->xq + (size_t)t * COLS;
        for (int r = 0; r < ROWS; r++) {
            double e = 0;
            for (int c = 0; c < COLS; c++) e += xq[c] * q[r * COLS + c] - x[c] * p->w[r * COLS + c];
            loss += e * e;
        }
    }
    return loss;
}

static lb_status run(const problem *p, const char *method, const char *kv, const char *spec_text, int with_d,
                     lb_tensor *out) {
    const lb_method *m = lb_method_find(method);
    lb_method_opts o;
    lb_status st = lb_test_method_opts(m, kv, &o);
    if (st != LB_OK) return st;
    lb_qspec spec = lb_test_spec(spec_text);
    lb_layer_stats ls = {.n_samples = N, .rows = ROWS, .cols = COLS, .xtx = p->h, .dxtx = with_d ? p->d : NULL};
    return lb_quantize_tensor(m, &o, &ls, p->w, ROWS, COLS, &spec, "test", out);
}

static double loss_of(const problem *p, const char *method, const char *kv, const char *spec) {
    lb_tensor t;
    if (run(p, method, kv, spec, 1, &t) != LB_OK) {
        CHECK_MSG(0, "%s %s on %s failed: %s", method, kv, spec, lb_last_error());
        return NAN;
    }
    float *q = malloc((size_t)ROWS * COLS * sizeof(float));
    CHECK_OK(lb_dequantize(&t, q));
    double l = asym_loss(p, q);
    free(q);
    lb_tensor_free(&t);
    return l;
}

static int same_bytes(const lb_tensor *a, const lb_tensor *b) {
    return a->nbytes == b->nbytes && !memcmp(a->data, b->data, a->nbytes);
}

/* min over real Q of L: each row solves H q = X~^T X w = (H + D) w (normal
 * equations, Cholesky in double) */
static double optimum(const problem *p) {
    double *L = malloc((size_t)COLS * COLS * sizeof(double)), *q = malloc((size_t)ROWS * COLS * sizeof(double));
    memcpy(L, p->h, (size_t)COLS * COLS * sizeof(double));
    for (int i = 0; i < COLS; i++) {
        for (int k = 0; k < i; k++) L[i * COLS + i] -= L[i * COLS + k] * L[i * COLS + k];
        L[i * COLS + i] = sqrt(L[i * COLS + i]);
        for (int j = i + 1; j < COLS; j++) {
            for (int k = 0; k < i; k++) L[j * COLS + i] -= L[j * COLS + k] * L[i * COLS + k];
            L[j * COLS + i] /= L[i * COLS + i];
        }
    }
    for (int r = 0; r < ROWS; r++) {
        double b[COLS], y[COLS];
        for (int a = 0; a < COLS; a++) {
            b[a] = 0;
            for (int c = 0; c < COLS; c++) b[a] += (p->h[a * COLS + c] + p->d[c * COLS + a]) * p->w[r * COLS + c];
        }
        for (int i = 0; i < COLS; i++) {
            y[i] = b[i];
            for (int k = 0; k < i; k++) y[i] -= L[i * COLS + k] * y[k];
            y[i] /= L[i * COLS + i];
        }
        for (int i = COLS - 1; i >= 0; i--) {
            double v = y[i];
            for (int k = i + 1; k < COLS; k++) v -= L[k * COLS + i] * q[r * COLS + k];
            q[r * COLS + i] = v / L[i * COLS + i];
        }
    }
    float *qf = malloc((size_t)ROWS * COLS * sizeof(float));
    for (int i = 0; i < ROWS * COLS; i++) qf[i] = (float)q[i];
    double l = asym_loss(p, qf);
    free(qf);
    free(L);
    free(q);
    return l;
}

int main(void) {
    problem same;
    make_problem(&same, 0.0, 7); /* X~ = X: D = 0 */
    double dmax = 0;
    for (int i = 0; i < COLS * COLS; i++) dmax = fmax(dmax, fabs(same.d[i]));
    CHECK(dmax == 0);
    lb_tensor a, b;
    CHECK_OK(run(&same, "gptq", "", "int4:g32:asym", 0, &a));
    CHECK_OK(run(&same, "gptaq", "alpha=1", "int4:g32:asym", 1, &b));
    CHECK_MSG(same_bytes(&a, &b), "gptaq with (x_fp - x) x^T = 0 differs from gptq");
    lb_tensor_free(&a);
    lb_tensor_free(&b);
    free_problem(&same);

    problem p;
    make_problem(&p, 0.15, 11);
    const char *specs[] = {"int4:g32:asym", "int3:g64:asym"};
    for (int s = 0; s < 2; s++) {
        for (int ao = 0; ao < 2; ao++) {
            const char *base = ao ? "act_order=1" : "";
            char kv1[64], kv25[64];
            snprintf(kv1, sizeof kv1, "%s alpha=1", base);
            snprintf(kv25, sizeof kv25, "%s", base);
            double lq = loss_of(&p, "gptq", base, specs[s]), l1 = loss_of(&p, "gptaq", kv1, specs[s]),
                   l25 = loss_of(&p, "gptaq", kv25, specs[s]);
            printf("%s act_order=%d: L gptq %.4g, gptaq alpha 0.25 %.4g (%.3f), alpha 1 %.4g (%.3f)\n", specs[s], ao,
                   lq, l25, l25 / lq, l1, l1 / lq);
            CHECK_MSG(l1 < 0.8 * lq, "%s ao %d: gptaq alpha 1 %g not well below gptq %g", specs[s], ao, l1, lq);
            CHECK_MSG(l25 < lq && l1 < l25, "%s ao %d: alpha 0.25 %g, alpha 1 %g, gptq %g", specs[s], ao, l25, l1, lq);
        }
    }
    /* int8: rounding is small, the input mismatch dominates GPTQ's loss */
    double lq = loss_of(&p, "gptq", "", "int8:g32:asym"), l1 = loss_of(&p, "gptaq", "alpha=1", "int8:g32:asym");
    double lopt = optimum(&p);
    printf("int8: L gptq %.4g, gptaq alpha 1 %.4g, optimum over real Q %.4g\n", lq, l1, lopt);
    CHECK_MSG(lopt < l1 && l1 - lopt < 0.25 * (lq - lopt), "int8: gptaq %g should close most of gptq %g -> optimum %g",
              l1, lq, lopt);

    /* threads */
    lb_set_threads(1);
    CHECK_OK(run(&p, "gptaq", "act_order=1", "int4:g32:asym", 1, &a));
    lb_set_threads(2);
    CHECK_OK(run(&p, "gptaq", "act_order=1", "int4:g32:asym", 1, &b));
    lb_set_threads(0);
    CHECK_MSG(same_bytes(&a, &b), "gptaq differs between 1 and 2 threads");
    lb_tensor_free(&a);
    lb_tensor_free(&b);
    /* without the cross statistics */
    CHECK_FAILS(run(&p, "gptaq", "", "int4:g32:asym", 0, &a), LB_ERR_INVALID, "use --sequential");
    free_problem(&p);
    return lb_test_finish("test_gptaq");
}
