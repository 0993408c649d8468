/* How close each quantizer gets to the rate-distortion bound on an iid
 * N(0, 1) source (issue 8's weight-level targets): relative RMSE against
 * 2^-bpw, the smallest relative RMSE any quantizer at bpw bits per weight
 * can reach on a Gaussian (REFERENCE.md's last table; MACHINE.md has
 * llama.cpp's types on the same source).
 *
 *   build/bench_rd [-n WEIGHTS] [-t THREADS] [-f SPEC[,SPEC...]] [-m METHOD [-o "KEY=VALUE ..."]]
 *                  [--trellis-only | --formats-only | --v2-only] [--json]
 *
 * -m: the formats through this method row (with -o's options) instead of
 * rtn; it gets no statistics (aqlm: hweight=none, plain squared error).
 *
 * Rows: lowbit's formats (-f: these instead of the built-in list) through
 * rtn (clip=mse; ternary, binary, e8p and vq by their own scale rule) on a
 * 256 x (n / 256)
 * matrix, every stored bit counted; then bitshift trellises (src/quant/
 * trellis.c: QTIP's 1MAD codebook, tail-biting, sequences of 256, one scale
 * per tensor chosen on the first 16 sequences) at k = 1..4 bits per weight
 * and state sizes L, and with two weights per step (V = 2, "v2": k / 2 bits
 * per weight, the pair codebook lb_trellis_1mad2). Deterministic (fixed seed); times are printed for the
 * trellis encoder (weights per second), not asserted. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lowbit.h"
#include "quant/trellis.h"

#define SEQ 256

static int json;

static void report(const char *name, double bpw, double rel, double seconds, long n) {
    double bound = pow(2.0, -bpw);
    if (json)
        printf("{\"quantizer\": \"%s\", \"bpw\": %.4f, \"rel_rmse\": %.5f, \"bound\": %.5f, \"x_bound\": %.4f, "
               "\"seconds\": %.3f, \"weights\": %ld}\n",
               name, bpw, rel, bound, rel / bound, seconds, n);
    else
        printf("| %-28s | %6.4f | %.4f | %.4f | %5.3f | %8.2f |\n", name, bpw, rel, bound, rel / bound, seconds);
}

/* the squared error of sequences [s0, s1) of x (n_seq x SEQ) at scale a */
static double trellis_error(const lb_trellis *t, const float *x, int s0, int s1, float a, uint8_t *codes) {
    double err = 0;
    int failed = 0;
#pragma omp parallel reduction(+ : err) reduction(| : failed)
    {
        lb_trellis_work w;
        float xs[SEQ], y[SEQ];
        const int steps = SEQ / t->V;
        if (lb_trellis_work_init(&w, t, steps) != LB_OK) failed = 1;
#pragma omp for schedule(dynamic, 1)
        for (int s = s0; s < s1; s++) {
            if (failed) continue;
            for (int i = 0; i < SEQ; i++) xs[i] = x[(size_t)s * SEQ + i] / a;
            uint8_t *c = codes + (size_t)s * SEQ;
            lb_trellis_encode(t, &w, xs, NULL, steps, c);
            lb_trellis_decode(t, c, steps, y);
            for (int i = 0; i < SEQ; i++) {
                double d = (double)x[(size_t)s * SEQ + i] - (double)a * y[i];
                err += d * d;
            }
        }
        lb_trellis_work_free(&w);
    }
    if (failed) {
        fprintf(stderr, "bench_rd: out of memory\n");
        exit(1);
    }
    return err;
}

int main(int argc, char **argv) {
    long n = 1L << 20;
    int trellis_only = 0, formats_only = 0, v2_only = 0;
    const char *only = NULL; /* -f: comma-separated specs */
    const char *method = "rtn", *method_opts = ""; /* -m, -o */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-n") && i + 1 < argc) n = atol(argv[++i]);
        else if (!strcmp(argv[i], "-t") && i + 1 < argc) lb_set_threads(atoi(argv[++i]));
        else if (!strcmp(argv[i], "-f") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "-m") && i + 1 < argc) method = argv[++i];
        else if (!strcmp(argv[i], "-o") && i + 1 < argc) method_opts = argv[++i];
        else if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--trellis-only")) trellis_only = 1;
        else if (!strcmp(argv[i], "--formats-only")) formats_only = 1;
        else if (!strcmp(argv[i], "--v2-only")) v2_only = trellis_only = 1; /* the V = 2 trellises alone */
        else {
            fprintf(stderr, "usage: bench_rd [-n WEIGHTS] [-t THREADS] [-f SPEC[,SPEC...]] [-m METHOD [-o \"KEY=VALUE "
                            "...\"]] [--trellis-only | --formats-only | --v2-only] [--json]\n");
            return 2;
        }
    }
    n = n / (256L * SEQ) * (256L * SEQ);
    if (n < 256L * SEQ) n = 256L * SEQ;
    float *x = malloc(sizeof(float) * (size_t)n), *y = malloc(sizeof(float) * (size_t)n);
    uint8_t *codes = malloc((size_t)n);
    if (!x || !y || !codes) return 1;
    lb_rng r;
    lb_rng_seed(&r, 2026);
    double energy = 0;
    for (long i = 0; i < n; i++) x[i] = (float)lb_rng_normal(&r), energy += (double)x[i] * x[i];
    if (!json) {
        printf("iid N(0,1), %ld weights, %d threads; bound = 2^-bpw (relative RMSE)\n\n", n, lb_get_threads());
        printf("| %-28s | %6s | %6s | %6s | %5s | %8s |\n", "quantizer", "bpw", "rel. RMSE", "bound", "x bound",
               "seconds");
        printf("|---|---:|---:|---:|---:|---:|\n");
    }
    static const char *specs[] = {"int4:g64:asym", "nf4:g64",       "int3:g64:asym", "int3:g128:sym:s4:r16",
                                  "int2:g64:asym", "int2:g32:asym:s4:r16", "ternary:g64:1.6bit", "binary:g64",
                                  "e8p2:row",      "e8p2:tensor",   "e8p3:row",      "e8p4:row",
                                  "vq4x8:row",     "vq8x8:r2:row",  "vq6x12:row"};
    /* -f: the caller's list (at most 64 specs) */
    const char *list[64];
    size_t n_specs = sizeof specs / sizeof specs[0];
    char buf[1024];
    if (only) {
        snprintf(buf, sizeof buf, "%s", only);
        n_specs = 0;
        for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok && n_specs < 64; tok = strtok_r(NULL, ",", &save))
            list[n_specs++] = tok;
    } else {
        for (size_t s = 0; s < n_specs; s++) list[s] = specs[s];
    }
    const lb_method *rtn = lb_method_find(method);
    if (!rtn) {
        fprintf(stderr, "bench_rd: %s\n", lb_last_error());
        return 2;
    }
    int is_rtn = !strcmp(method, "rtn");
    for (size_t s = 0; !trellis_only && s < n_specs; s++) {
        lb_qspec spec;
        lb_method_opts o;
        lb_tensor t;
        if (lb_qspec_parse(list[s], &spec) != LB_OK) {
            fprintf(stderr, "bench_rd: %s\n", lb_last_error());
            return 1;
        }
        lb_method_opts_default(rtn, &o);
        /* ternary, binary, e8p and vq choose their scales by their own rule */
        lb_grid_kind grid = lb_format_grid(&spec);
        int mse = is_rtn && grid != LB_GRID_TERNARY && grid != LB_GRID_SIGN && grid != LB_GRID_VECTOR;
        if (mse) lb_method_opts_set(&o, "clip", "mse");
        char obuf[256];
        snprintf(obuf, sizeof obuf, "%s", method_opts);
        for (char *save = NULL, *tok = strtok_r(obuf, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
            if (lb_method_opts_parse(&o, tok) != LB_OK) {
                fprintf(stderr, "bench_rd: %s\n", lb_last_error());
                return 2;
            }
        double t0 = lb_now();
        if (lb_quantize_tensor(rtn, &o, NULL, x, 256, n / 256, &spec, "x", &t) != LB_OK || lb_dequantize(&t, y) != LB_OK) {
            fprintf(stderr, "bench_rd: %s: %s\n", list[s], lb_last_error());
            return 1;
        }
        double secs = lb_now() - t0, err = 0;
        for (long i = 0; i < n; i++) err += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        char name[64];
        snprintf(name, sizeof name, "%s %s%s%s%s", list[s], method, mse ? " mse" : "", method_opts[0] ? " " : "",
                 method_opts);
        report(name, 8.0 * (double)t.nbytes / (double)n, sqrt(err / energy), secs, n);
        lb_tensor_free(&t);
    }
    /* trellises: (L, k) with the weights they get (2^L work per weight) */
    /* {L, k, V}: V = 2 is k / 2 bits per weight */
    static const int configs[][3] = {{8, 2, 1},  {12, 2, 1}, {16, 2, 1}, {12, 1, 1}, {16, 1, 1}, {12, 3, 1},
                                     {15, 3, 1}, {12, 4, 1}, {16, 4, 1}, {12, 1, 2}, {16, 1, 2}, {12, 2, 2},
                                     {12, 3, 2}, {15, 3, 2}, {12, 4, 2}, {15, 5, 2}, {12, 6, 2}};
    for (size_t c = 0; !formats_only && c < sizeof configs / sizeof configs[0]; c++) {
        int L = configs[c][0], k = configs[c][1], V = configs[c][2];
        if (v2_only && V != 2) continue;
        long m = L >= 15 ? n / 16 : n; /* L = 15, 16 cost 8-16x L = 12: fewer weights */
        int n_seq = (int)(m / SEQ);
        lb_trellis t;
        if (lb_trellis_init_v(&t, L, k, V) != LB_OK) return 1;
        /* the scale: a grid over [0.4, 1.2] on the first 16 sequences */
        float best_a = 1.0f;
        double best_e = INFINITY;
        for (float a = 0.4f; a < 1.21f; a += 0.025f) {
            double e = trellis_error(&t, x, 0, 16, a, codes);
            if (e < best_e) best_e = e, best_a = a;
        }
        double t0 = lb_now(), e = trellis_error(&t, x, 0, n_seq, best_a, codes), secs = lb_now() - t0, en = 0;
        for (long i = 0; i < (long)n_seq * SEQ; i++) en += (double)x[i] * x[i];
        char name[64];
        if (V == 2) snprintf(name, sizeof name, "trellis L=%d k=%d v2 1mad2 a=%.3f", L, k, best_a);
        else snprintf(name, sizeof name, "trellis L=%d k=%d 1mad a=%.3f", L, k, best_a);
        /* k bits per step of V weights (tail-biting) and one fp16 scale per 4096 x 4096 tensor */
        report(name, (double)k / V + 16.0 / (4096.0 * 4096.0), sqrt(e / en), secs, (long)n_seq * SEQ);
        if (!json) fprintf(stderr, "  %s: %.0f weights/s\n", name, (double)n_seq * SEQ / secs);
        lb_trellis_free(&t);
    }
    free(x);
    free(y);
    free(codes);
    return 0;
}
