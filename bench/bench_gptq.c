/* GPTQ speed on one square layer: random N(0,1) weights and a random
 * positive-definite H = X^T X (X: n x n, N(0,1)) + 0.01 I, quantized by the
 * gptq row. Prints the median of -r runs of the whole call and of its
 * factorization (the Cholesky factor of H^-1; the rest is the column
 * updates and grid fitting).
 *
 *   build/bench_gptq [-n 4096] [-r 3] [-t 2] [-f int4:g128] [-o key=value ...]
 *
 * Not a test: the machine must be idle for the numbers to mean anything. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lowbit.h"

#ifdef LB_HAVE_BLAS
#include <cblas.h>
#endif

#define MAX_RUNS 51

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int n = 4096, runs = 3, threads = 2;
    const char *format = "int4:g128";
    const char *kv[8];
    int n_kv = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-n") && i + 1 < argc) n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-t") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-f") && i + 1 < argc) format = argv[++i];
        else if (!strcmp(argv[i], "-o") && i + 1 < argc && n_kv < 8) kv[n_kv++] = argv[++i];
        else {
            fprintf(stderr, "usage: bench_gptq [-n 4096] [-r 3] [-t 2] [-f int4:g128] [-o key=value ...]\n");
            return 2;
        }
    }
    if (n < 16 || runs < 1 || runs > MAX_RUNS) {
        fprintf(stderr, "bench_gptq: -n >= 16, -r 1..%d\n", MAX_RUNS);
        return 2;
    }
#ifndef LB_HAVE_BLAS
    (void)threads;
    (void)format;
    (void)kv;
    (void)cmp_double;
    fprintf(stderr, "bench_gptq: lowbit was built without OpenBLAS/LAPACKE; gptq needs them\n");
    return 1;
#else
    lb_set_threads(threads);
    lb_qspec spec;
    const lb_method *m = lb_method_find("gptq");
    if (!m || lb_qspec_parse(format, &spec) != LB_OK) {
        fprintf(stderr, "bench_gptq: %s\n", lb_last_error());
        return 1;
    }
    lb_method_opts o;
    lb_method_opts_default(m, &o);
    for (int i = 0; i < n_kv; i++)
        if (lb_method_opts_parse(&o, kv[i]) != LB_OK) {
            fprintf(stderr, "bench_gptq: %s\n", lb_last_error());
            return 1;
        }
    size_t nn = (size_t)n * (size_t)n;
    float *w = malloc(nn * sizeof(float));
    double *x = malloc(nn * sizeof(double)), *h = calloc(nn, sizeof(double));
    if (!w || !x || !h) {
        fprintf(stderr, "bench_gptq: out of memory\n");
        return 1;
    }
    lb_rng r;
    lb_rng_seed(&r, 1);
    for (size_t i = 0; i < nn; i++) w[i] = (float)lb_rng_normal(&r);
    for (size_t i = 0; i < nn; i++) x[i] = lb_rng_normal(&r);
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, n, n, 1.0, x, n, 0.0, h, n);
    for (int i = 0; i < n; i++) {
        h[(size_t)i * n + i] += 0.01;
        for (int j = 0; j < i; j++) h[(size_t)i * n + j] = h[(size_t)j * n + i];
    }
    free(x);
    lb_layer_stats stats = {.n_samples = n, .rows = n, .cols = n, .xtx = h};
    double total[MAX_RUNS], factor[MAX_RUNS];
    lb_method_report rep;
    o.report = &rep;
    for (int k = 0; k < runs; k++) {
        lb_tensor t;
        double t0 = lb_now();
        if (lb_quantize_tensor(m, &o, &stats, w, n, n, &spec, "w", &t) != LB_OK) {
            fprintf(stderr, "bench_gptq: %s\n", lb_last_error());
            return 1;
        }
        total[k] = lb_now() - t0;
        factor[k] = rep.factor_seconds;
        lb_tensor_free(&t);
    }
    qsort(total, (size_t)runs, sizeof(double), cmp_double);
    qsort(factor, (size_t)runs, sizeof(double), cmp_double);
    char opts[256];
    lb_method_opts_format(&o, 0, opts, sizeof opts);
    printf("gptq %dx%d %s %s, %d threads, median of %d: %.3f s (factor H^-1 %.3f s, updates and grids %.3f s; "
           "min %.3f max %.3f); damping %g x mean(diag)\n",
           n, n, format, opts[0] ? opts : "(defaults)", threads, runs, total[runs / 2], factor[runs / 2],
           total[runs / 2] - factor[runs / 2], total[0], total[runs - 1], rep.damping_rel);
    free(w);
    free(h);
    return 0;
#endif
}
