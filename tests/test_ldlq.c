/* BlockLDLQ (src/quant/ldlq.c) on problems with known answers: on random
 * correlated H its proxy loss tr(E H E^T) is below rtn's on the same H for
 * every e8p form; on a tiny case its codes equal a dense computation of the
 * block feedback written out here (H^-1 inverted and factored in double);
 * the loss it reports is the one recomputed from its output; with the
 * rotations (rotate=input, rotate=hadamard) it runs and beats rtn with the
 * same rotation. (Exact recovery and H = I: tests/test_method.c.) */
#include "test.h"

static lb_rng g;

/* H = X^T X of n samples with correlated channels (a random mixing) */
static void make_h(double *h, int C, int n, double mix) {
    float *basis = malloc(sizeof(float) * (size_t)(C * C)), *x = malloc(sizeof(float) * (size_t)C);
    for (int i = 0; i < C * C; i++) basis[i] = (float)lb_rng_normal(&g);
    memset(h, 0, sizeof(double) * (size_t)(C * C));
    for (int t = 0; t < n; t++) {
        float z[256];
        for (int k = 0; k < C; k++) z[k] = (float)lb_rng_normal(&g);
        for (int c = 0; c < C; c++) {
            x[c] = z[c];
            for (int k = 0; k < C; k++) x[c] += (float)mix * basis[c * C + k] * z[k] / sqrtf((float)C);
        }
        for (int a = 0; a < C; a++)
            for (int b = 0; b < C; b++) h[a * C + b] += (double)x[a] * x[b];
    }
    free(basis);
    free(x);
}

static double proxy_loss(const float *w, const float *q, const double *h, int R, int C) {
    double loss = 0;
    for (int r = 0; r < R; r++)
        for (int a = 0; a < C; a++)
            for (int b = 0; b < C; b++)
                loss += ((double)w[r * C + a] - q[r * C + a]) * h[a * C + b] * ((double)w[r * C + b] - q[r * C + b]);
    return loss;
}

static lb_status run(const char *method, const char *opts, const char *format, const float *w, int R, int C,
                     const double *h, float *out, lb_method_report *rep) {
    const lb_method *m = lb_method_find(method);
    lb_method_opts o;
    lb_status st = lb_test_method_opts(m, opts, &o);
    if (st != LB_OK) return st;
    o.report = rep;
    lb_layer_stats s = {.n_samples = 512, .rows = R, .cols = C, .xtx = (double *)h};
    lb_qspec spec = lb_test_spec(format);
    lb_tensor t;
    lb_quant_extras ex;
    st = lb_quantize_tensor_ex(m, &o, &s, w, R, C, &spec, "w", &t, &ex);
    if (st != LB_OK) return st;
    st = lb_dequantize(&t, out);
    lb_tensor_free(&t);
    lb_quant_extras_free(&ex);
    return st;
}

static void test_below_rtn(void) {
    static const char *formats[] = {"e8p2:row", "e8p3:row", "e8p4:row", "e8p2:tensor"};
    static const int widths[] = {64, 44};
    for (int f = 0; f < 4; f++)
        for (int wi = 0; wi < 2; wi++) {
            const int R = 24, C = widths[wi];
            double *h = malloc(sizeof(double) * (size_t)(C * C));
            float *w = malloc(sizeof(float) * (size_t)(R * C)), *ql = malloc(sizeof(float) * (size_t)(R * C)),
                  *qr = malloc(sizeof(float) * (size_t)(R * C));
            make_h(h, C, 512, 2.0);
            for (int i = 0; i < R * C; i++) w[i] = (float)lb_rng_normal(&g);
            lb_method_report rep;
            CHECK_OK(run("ldlq", "", formats[f], w, R, C, h, ql, &rep));
            CHECK_OK(run("rtn", "", formats[f], w, R, C, h, qr, NULL));
            double ll = proxy_loss(w, ql, h, R, C), lr = proxy_loss(w, qr, h, R, C);
            printf("%s x %d: ldlq proxy loss %.4g, rtn %.4g (%.3f)\n", formats[f], C, ll, lr, ll / lr);
            CHECK_MSG(ll < lr, "%s x %d: ldlq %g >= rtn %g", formats[f], C, ll, lr);
            /* the reported loss is sum e^2 = tr(dW (H + lambda I) dW^T) */
            double damped = ll, dw2 = 0;
            for (int i = 0; i < R * C; i++) dw2 += pow((double)w[i] - ql[i], 2);
            damped += rep.damping * dw2;
            CHECK_NEAR(rep.proxy_loss, damped, 1e-3 * damped);
            free(h);
            free(w);
            free(ql);
            free(qr);
        }
}

/* lower Cholesky of a symmetric positive definite n x n (in place, double) */
static void cholesky_lower(double *a, int n) {
    for (int j = 0; j < n; j++) {
        for (int k = 0; k < j; k++) a[j * n + j] -= a[j * n + k] * a[j * n + k];
        a[j * n + j] = sqrt(a[j * n + j]);
        for (int i = j + 1; i < n; i++) {
            for (int k = 0; k < j; k++) a[i * n + j] -= a[i * n + k] * a[j * n + k];
            a[i * n + j] /= a[j * n + j];
        }
        for (int i = 0; i < j; i++) a[i * n + j] = 0;
    }
}

/* inverse by Gauss-Jordan (small, well conditioned) */
static void invert(const double *a, double *inv, int n) {
    double *m = malloc(sizeof(double) * (size_t)(n * 2 * n));
    for (int i = 0; i < n; i++)
        for (int j = 0; j < 2 * n; j++) m[i * 2 * n + j] = j < n ? a[i * n + j] : (j - n == i);
    for (int c = 0; c < n; c++) {
        double p = m[c * 2 * n + c];
        for (int j = 0; j < 2 * n; j++) m[c * 2 * n + j] /= p;
        for (int i = 0; i < n; i++)
            if (i != c) {
                double f = m[i * 2 * n + c];
                for (int j = 0; j < 2 * n; j++) m[i * 2 * n + j] -= f * m[c * 2 * n + j];
            }
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) inv[i * n + j] = m[i * 2 * n + n + j];
    free(m);
}

/* The feedback by hand on 3 rows x 20 columns (blocks of 8, 8 and 4):
 * U = L^T for the lower Cholesky L L^T of (H + lambda I)^-1; block by
 * block, the nearest E8P point of each row's current 8-vector (the last
 * block's 4 padding coordinates weighted 0) at the row's scale (ldlq's own,
 * from rtn on W), e = delta U_BB^-1, W_F -= e U_BF. */
static void test_dense_feedback(void) {
    enum { R = 3, C = 20 };
    double h[C * C], hd[C * C], hinv[C * C];
    make_h(h, C, 256, 1.5);
    float w[R * C], out[R * C];
    for (int i = 0; i < R * C; i++) w[i] = (float)lb_rng_normal(&g);
    lb_method_report rep;
    CHECK_OK(run("ldlq", "", "e8p2:row", w, R, C, h, out, &rep));
    CHECK(rep.damping_raises == 0);
    memcpy(hd, h, sizeof hd);
    for (int i = 0; i < C; i++) hd[i * C + i] += rep.damping;
    invert(hd, hinv, C);
    cholesky_lower(hinv, C); /* L; U(i, j) = L(j, i) */
#define U(i, j) hinv[(j) * C + (i)]
    /* the row scales ldlq used: rtn's on W */
    lb_qtensor q;
    lb_qspec s = lb_test_spec("e8p2:row");
    CHECK_OK(lb_rtn_quantize(w, R, C, &s, NULL, &q));
    double W[R * C], want[R * C];
    for (int i = 0; i < R * C; i++) W[i] = w[i];
    for (int c0 = 0; c0 < C; c0 += 8) {
        int bl = C - c0 < 8 ? C - c0 : 8;
        for (int r = 0; r < R; r++) {
            float x[8] = {0}, wt[8] = {0}, v[8];
            float a = q.scale[r];
            for (int i = 0; i < bl; i++) x[i] = (float)W[r * C + c0 + i] / a, wt[i] = 1;
            lb_e8p_codeword(lb_e8p_nearest(x, wt), v);
            double delta[8], e[8];
            for (int i = 0; i < bl; i++) {
                want[r * C + c0 + i] = a * v[i];
                delta[i] = W[r * C + c0 + i] - (double)a * v[i];
            }
            for (int k = 0; k < bl; k++) {
                e[k] = delta[k];
                for (int m = 0; m < k; m++) e[k] -= e[m] * U(c0 + m, c0 + k);
                e[k] /= U(c0 + k, c0 + k);
            }
            for (int j = c0 + bl; j < C; j++)
                for (int k = 0; k < bl; k++) W[r * C + j] -= e[k] * U(c0 + k, j);
        }
    }
#undef U
    int same = 0;
    double diff = 0;
    for (int i = 0; i < R * C; i++) {
        same += fabs(want[i] - out[i]) < 1e-6;
        diff = fmax(diff, fabs(want[i] - out[i]));
    }
    CHECK_MSG(same == R * C, "%d of %d weights as the dense computation (largest difference %g)", same, R * C, diff);
    lb_qtensor_free(&q);
}

/* incoherence processing as QuIP# does it: under either rotation ldlq
 * still beats rtn under the same rotation, compared in the original basis
 * (W = R_o^T W~ R_i, as the pipeline unrotates) on the original H */
static void test_rotated(void) {
    enum { R = 16, C = 64 };
    double h[C * C];
    make_h(h, C, 512, 2.0);
    float w[R * C], ql[R * C], qr[R * C];
    for (int i = 0; i < R * C; i++) w[i] = (float)lb_rng_normal(&g) * (i % 7 == 0 ? 4.0f : 1.0f);
    static const char *rot[] = {"rotate=input", "rotate=hadamard"};
    const lb_method *ldlq = lb_method_find("ldlq"), *rtn = lb_method_find("rtn");
    for (int k = 0; k < 2; k++) {
        float *q[2] = {ql, qr};
        const lb_method *m[2] = {ldlq, rtn};
        for (int j = 0; j < 2; j++) {
            lb_method_opts o;
            CHECK_OK(lb_test_method_opts(m[j], rot[k], &o));
            lb_layer_stats s = {.n_samples = 512, .rows = R, .cols = C, .xtx = h};
            lb_qspec spec = lb_test_spec("e8p2:row");
            lb_tensor t;
            lb_quant_extras ex;
            CHECK_OK(lb_quantize_tensor_ex(m[j], &o, &s, w, R, C, &spec, "w", &t, &ex));
            CHECK(ex.in_signs != NULL && (k == 1) == (ex.out_signs != NULL));
            CHECK_OK(lb_dequantize(&t, q[j]));
            CHECK_OK(lb_rht_apply_rows(q[j], R, C, ex.in_signs, 1));
            if (ex.out_signs) CHECK_OK(lb_rht_apply_cols(q[j], R, C, ex.out_signs, 1));
            lb_tensor_free(&t);
            lb_quant_extras_free(&ex);
        }
        double ll = proxy_loss(w, ql, h, R, C), lr = proxy_loss(w, qr, h, R, C);
        printf("%s: ldlq proxy loss %.4g, rtn %.4g (%.3f)\n", rot[k], ll, lr, ll / lr);
        CHECK_MSG(ll < lr, "%s: ldlq %g >= rtn %g", rot[k], ll, lr);
    }
}

int main(void) {
    lb_rng_seed(&g, 8);
#ifndef LB_HAVE_BLAS
    printf("SKIPPED: ldlq needs OpenBLAS and LAPACKE\n");
    return 77;
#endif
    test_below_rtn();
    test_dense_feedback();
    test_rotated();
    return lb_test_finish("test_ldlq");
}
