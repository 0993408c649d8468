/* What the salient-column tests (test_ptq161.c, test_billm.c) share: a
 * method run on a problem with statistics, the result unpacked again, and
 * calibration statistics of planted inputs. */
#ifndef LB_SALIENT_CHECK_H
#define LB_SALIENT_CHECK_H

#include "test.h"

/* Statistics of n samples x (cols): channel c has scale amp[c] (NULL: 1),
 * channels mixed a little so X^T X is not diagonal. */
typedef struct {
    lb_layer_stats s;
    double *xtx;
    float *mean_abs, *max_abs;
} planted_stats;

static void planted_stats_make(planted_stats *p, int64_t rows, int64_t cols, const float *amp, uint64_t seed) {
    lb_rng r;
    lb_rng_seed(&r, seed);
    p->xtx = calloc((size_t)(cols * cols), sizeof(double));
    p->mean_abs = calloc((size_t)cols, sizeof(float));
    p->max_abs = calloc((size_t)cols, sizeof(float));
    float *x = calloc((size_t)cols, sizeof(float));
    const int n = 512;
    for (int t = 0; t < n; t++) {
        float common = (float)lb_rng_normal(&r);
        for (int64_t c = 0; c < cols; c++) x[c] = (amp ? amp[c] : 1.0f) * ((float)lb_rng_normal(&r) + 0.3f * common);
        for (int64_t a = 0; a < cols; a++) {
            p->mean_abs[a] += fabsf(x[a]) / (float)n;
            if (fabsf(x[a]) > p->max_abs[a]) p->max_abs[a] = fabsf(x[a]);
            for (int64_t c = 0; c < cols; c++) p->xtx[a * cols + c] += (double)x[a] * x[c];
        }
    }
    free(x);
    p->s = (lb_layer_stats){.n_samples = n, .rows = rows, .cols = cols, .xtx = p->xtx, .mean_abs_x = p->mean_abs,
                            .max_abs_x = p->max_abs};
}

static void planted_stats_free(planted_stats *p) {
    free(p->xtx);
    free(p->mean_abs);
    free(p->max_abs);
}

/* method `name` (options kv) on w into spec `format`: the unpacked result
 * (q, lb_qtensor_free) and the dequantized values (out, rows x cols) */
static lb_status salient_run(const char *name, const char *kv, const lb_layer_stats *stats, const float *w,
                             int64_t rows, int64_t cols, const char *format, lb_qtensor *q, float *out) {
    const lb_method *m = lb_method_find(name);
    lb_method_opts o;
    lb_status st = lb_test_method_opts(m, kv, &o);
    if (st != LB_OK) return st;
    lb_qspec s = lb_test_spec(format);
    lb_tensor t;
    if ((st = lb_quantize_tensor(m, &o, stats, w, rows, cols, &s, "w", &t)) != LB_OK) return st;
    if ((st = lb_dequantize(&t, out)) == LB_OK && (st = lb_qtensor_init(q, &s, rows, cols)) == LB_OK)
        st = lb_qtensor_decode(q, t.data, t.nbytes);
    lb_tensor_free(&t);
    return st;
}

/* tr((W - Q) H (W - Q)^T) */
static double salient_loss(const float *w, const float *q, int64_t rows, int64_t cols, const double *h) {
    return lb_output_error(w, q, rows, cols, h);
}

#endif
