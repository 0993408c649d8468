/* Time of one method quantizing a random Gaussian matrix (default 4096 x
 * 4096, the size issue 6 budgets HQQ at <= 2 s on 2 threads): one warm-up
 * run, then the median of -r runs, in seconds and ns per weight.
 *
 *   build/bench_quantize [-m hqq] [-f int4:g64:asym] [-n 4096] [-k 4096]
 *                        [-r 3] [-t THREADS] [-o key=value]... [-c 1] [-w 1]
 *
 * -w 0: no warm-up run (for methods that take minutes).
 * -c 1: calibrated methods get statistics of random inputs: X (cols x cols,
 * N(0,1)), X^T X + 0.01 I, mean|x| and max|x| per channel, mean x (the
 * time to make them is not counted).
 *
 * Not a test: the machine must be idle for the numbers to mean anything
 * (see ../shared/docs/MACHINE.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lowbit.h"

#ifdef LB_HAVE_BLAS
#include <cblas.h>
#endif

#define MAX_RUNS 101

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int usage(void) {
    fprintf(stderr, "usage: bench_quantize [-m METHOD] [-f SPEC] [-n ROWS] [-k COLS] [-r RUNS] [-t THREADS] "
                    "[-o key=value]... [-c 1] [-w 1]\n");
    return 2;
}

int main(int argc, char **argv) {
    const char *method = "hqq", *format = "int4:g64:asym";
    long rows = 4096, cols = 4096;
    int runs = 3, threads = 0, calibrated = 0, warmup = 1;
    const char *kv[16];
    int n_kv = 0;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) return usage();
        const char *a = argv[i], *v = argv[++i];
        if (!strcmp(a, "-m")) method = v;
        else if (!strcmp(a, "-f")) format = v;
        else if (!strcmp(a, "-n")) rows = atol(v);
        else if (!strcmp(a, "-k")) cols = atol(v);
        else if (!strcmp(a, "-r")) runs = atoi(v);
        else if (!strcmp(a, "-t")) threads = atoi(v);
        else if (!strcmp(a, "-o") && n_kv < 16) kv[n_kv++] = v;
        else if (!strcmp(a, "-c")) calibrated = atoi(v);
        else if (!strcmp(a, "-w")) warmup = atoi(v);
        else return usage();
    }
    if (rows < 1 || cols < 1 || rows * cols > (1L << 30) || runs < 1 || runs > MAX_RUNS) return usage();
    const lb_method *m = lb_method_find(method);
    lb_qspec spec;
    if (!m || lb_qspec_parse(format, &spec) != LB_OK) {
        fprintf(stderr, "bench_quantize: %s\n", lb_last_error());
        return 1;
    }
    lb_method_opts o;
    lb_method_opts_default(m, &o);
    for (int i = 0; i < n_kv; i++)
        if (lb_method_opts_parse(&o, kv[i]) != LB_OK) {
            fprintf(stderr, "bench_quantize: %s\n", lb_last_error());
            return 1;
        }
    if (threads > 0) lb_set_threads(threads);
    float *w = malloc((size_t)rows * (size_t)cols * sizeof *w);
    if (!w) return 1;
    lb_rng r;
    lb_rng_seed(&r, 1);
    for (long i = 0; i < rows * cols; i++) w[i] = (float)(0.02 * lb_rng_normal(&r));
    /* random-input statistics for calibrated methods */
    lb_layer_stats stats = {.n_samples = cols, .rows = rows, .cols = cols};
    if (calibrated) {
#ifdef LB_HAVE_BLAS
        size_t cc = (size_t)cols * (size_t)cols;
        double *x = malloc(cc * sizeof(double));
        stats.xtx = calloc(cc, sizeof(double));
        stats.mean_abs_x = calloc((size_t)cols, sizeof(float));
        stats.max_abs_x = calloc((size_t)cols, sizeof(float));
        stats.mean_x = calloc((size_t)cols, sizeof(float));
        if (!x || !stats.xtx || !stats.mean_abs_x || !stats.max_abs_x || !stats.mean_x) return 1;
        for (size_t i = 0; i < cc; i++) x[i] = lb_rng_normal(&r);
        for (size_t i = 0; i < cc; i++) {
            size_t c = i % (size_t)cols;
            double a = x[i] < 0 ? -x[i] : x[i];
            stats.mean_abs_x[c] += (float)(a / (double)cols);
            stats.mean_x[c] += (float)(x[i] / (double)cols);
            if (a > stats.max_abs_x[c]) stats.max_abs_x[c] = (float)a;
        }
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)cols, (int)cols, 1.0, x, (int)cols, 0.0, stats.xtx,
                    (int)cols);
        for (long i = 0; i < cols; i++) {
            stats.xtx[i * cols + i] += 0.01;
            for (long j = 0; j < i; j++) stats.xtx[i * cols + j] = stats.xtx[j * cols + i];
        }
        free(x);
#else
        fprintf(stderr, "bench_quantize: -c 1 needs OpenBLAS (lowbit was built without it)\n");
        return 1;
#endif
    }
    double t[MAX_RUNS];
    for (int k = warmup ? -1 : 0; k < runs; k++) {
        lb_tensor q;
        double t0 = lb_now();
        if (lb_quantize_tensor(m, &o, calibrated ? &stats : NULL, w, rows, cols, &spec, "w", &q) != LB_OK) {
            fprintf(stderr, "bench_quantize: %s\n", lb_last_error());
            free(w);
            return 1;
        }
        double dt = lb_now() - t0;
        lb_tensor_free(&q);
        if (k >= 0) t[k] = dt;
    }
    qsort(t, (size_t)runs, sizeof t[0], cmp_double);
    char opts[256];
    lb_method_opts_format(&o, 0, opts, sizeof opts);
    printf("%s%s%s %s %ldx%ld, %d threads: median %.3f s (min %.3f, max %.3f) of %d, %.1f ns/weight\n", method,
           opts[0] ? " " : "", opts, format, rows, cols, lb_get_threads(), t[runs / 2], t[0], t[runs - 1], runs,
           1e9 * t[runs / 2] / ((double)rows * (double)cols));
    free(w);
    free(stats.xtx);
    free(stats.mean_abs_x);
    free(stats.max_abs_x);
    free(stats.mean_x);
    return 0;
}
