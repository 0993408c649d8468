/* Decode speed of one model in several formats and kernels, in one run:
 * f32, then each quantized format (linears only, RTN) with the kernel the
 * registry picks and with the dequantize-a-tile fallback pinned. Greedy
 * decoding from BOS for -n positions, one token per forward (as generation
 * does after the prompt); the configurations are interleaved run by run so
 * drift in machine load hits all of them alike; one short warm-up pass
 * each, then the median of -r runs.
 *
 *   build/bench_decode [MODEL] [-n 256] [-r 5] [-t THREADS] [-f q8_0,q4_0|all] [-p 64]
 *                      [--no-fallback] [--json]
 *
 * Prints per configuration decode tokens/s (median, min..max), the ratio to
 * f32, the kernel of the first linear, how many of the greedy tokens agree
 * with f32's, and the prefill rate (-p positions in one batched forward,
 * median over the runs). `-f all` is every family at lowbit bench's default
 * specs (issue 7's stories260K table: every quantized format at least as
 * fast as f32). --json prints one object per configuration instead.
 * Not a test: the machine must be idle for the numbers to mean anything
 * (see ../shared/docs/MACHINE.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "lowbit.h"

#define MAX_CONFIGS 40
#define MAX_RUNS 101

typedef struct {
    char label[48];
    lb_model *m;
    const char *kernel; /* of the first linear, blk.0.attn_q */
    double tps[MAX_RUNS], pps[MAX_RUNS]; /* decode, prefill tokens/s per run */
    int *tokens;
} config;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* the seven linears of every layer: blk.N.<linear>.weight */
static int is_linear(const char *name) {
    if (strncmp(name, "blk.", 4)) return 0;
    for (int j = 0; j < LB_N_LINEARS; j++) {
        char suffix[32];
        snprintf(suffix, sizeof suffix, ".%s.weight", lb_linear_name(j));
        size_t n = strlen(name), k = strlen(suffix);
        if (n > k && !strcmp(name + n - k, suffix)) return 1;
    }
    return 0;
}

static lb_status quantize_linears(lb_model *m, const lb_qspec *spec) {
    for (int i = 0; i < lb_model_n_tensors(m); i++) {
        lb_tensor *t = lb_model_tensor_at(m, i), q;
        if (!is_linear(t->name)) continue;
        float *w = lb_alloc((size_t)(t->rows * t->cols) * sizeof(float));
        if (!w) return LB_ERR_NOMEM;
        lb_status st = lb_dequantize(t, w);
        if (st == LB_OK) st = lb_quantize_to_tensor(w, t->rows, t->cols, spec, NULL, t->name, &q);
        lb_free(w);
        if (st != LB_OK) return st;
        lb_tensor_free(t);
        *t = q;
    }
    return LB_OK;
}

static void pin_linears(lb_model *m, const char *force) {
    for (int i = 0; i < lb_model_n_tensors(m); i++)
        if (is_linear(lb_model_tensor_at(m, i)->name)) lb_kernel_pin(lb_model_tensor_at(m, i), force);
}

static const char *first_linear_kernel(lb_model *m) {
    for (int i = 0; i < lb_model_n_tensors(m); i++)
        if (is_linear(lb_model_tensor_at(m, i)->name)) return lb_matmul_kernel_name(lb_model_tensor_at(m, i));
    return "-";
}

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

/* greedy decode of n positions from BOS; tokens/s, tokens into out */
static lb_status decode(const lb_model *m, int n, int *out, double *tps) {
    lb_state *s;
    lb_status st = lb_state_create(m, 1, &s);
    if (st != LB_OK) return st;
    int tok = m->tokenizer ? lb_tokenizer_bos(m->tokenizer) : 1;
    double t0 = lb_now();
    for (int pos = 0; pos < n && st == LB_OK; pos++) {
        st = lb_forward(m, s, &tok, 1, pos, NULL);
        tok = argmax(lb_state_logits(s), m->cfg.vocab_size);
        out[pos] = tok;
    }
    *tps = n / (lb_now() - t0);
    lb_state_free(s);
    return st;
}

/* one batched forward of n positions (BOS, then the greedy tokens): tokens/s */
static lb_status prefill(const lb_model *m, int n, const int *tokens, double *tps) {
    lb_state *s;
    lb_status st = lb_state_create(m, n, &s);
    if (st != LB_OK) return st;
    double t0 = lb_now();
    st = lb_forward(m, s, tokens, n, 0, NULL);
    *tps = n / (lb_now() - t0);
    lb_state_free(s);
    return st;
}

static double median(const double *x, int runs, double *lo, double *hi) {
    double v[MAX_RUNS];
    memcpy(v, x, sizeof(double) * (size_t)runs);
    qsort(v, (size_t)runs, sizeof(double), cmp_double);
    *lo = v[0];
    *hi = v[runs - 1];
    return runs % 2 ? v[runs / 2] : 0.5 * (v[runs / 2 - 1] + v[runs / 2]);
}

/* lowbit bench's default list: one or two specs per family */
#define ALL_FORMATS                                                                                              \
    "q8_0,q4_0,int4:g64:asym,int3:g64:asym,int2:g64:asym,nf4:g64,ternary:g64:2bit,ternary:g64:1.6bit,binary:row," \
    "pow2:4:g64,int3:g16:sym:s4:r16"

static int fail(const char *what) {
    fprintf(stderr, "bench_decode: %s: %s\n", what, lb_last_error());
    return 1;
}

int main(int argc, char **argv) {
    const char *path = LB_DATA_DIR "/models/stories260K.bin", *formats = "q8_0,q4_0";
    int n = 256, runs = 5, threads = 0, np = 64, fallback = 1, json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-n") && i + 1 < argc) n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-t") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-f") && i + 1 < argc) formats = argv[++i];
        else if (!strcmp(argv[i], "-p") && i + 1 < argc) np = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-fallback")) fallback = 0;
        else if (!strcmp(argv[i], "--json")) json = 1;
        else if (argv[i][0] != '-') path = argv[i];
        else {
            fprintf(stderr, "usage: bench_decode [MODEL] [-n positions] [-r runs] [-t threads] [-f q8_0,q4_0,...|all]\n"
                            "                    [-p prefill positions] [--no-fallback] [--json]\n");
            return 2;
        }
    }
    if (!strcmp(formats, "all")) formats = ALL_FORMATS;
    if (runs < 1 || runs > MAX_RUNS || n < 1 || np < 1) {
        fprintf(stderr, "bench_decode: need 1..%d runs and at least one position\n", MAX_RUNS);
        return 2;
    }
    lb_set_threads(threads);

    config cfg[MAX_CONFIGS];
    int nc = 0;
    memset(cfg, 0, sizeof cfg);
    /* f32, then per format: registry choice, fallback pinned */
    char list[1024];
    snprintf(list, sizeof list, "f32,%s", formats);
    for (char *save = NULL, *f = strtok_r(list, ",", &save); f && nc + 2 <= MAX_CONFIGS; f = strtok_r(NULL, ",", &save)) {
        int is_f32 = !strcmp(f, "f32");
        for (int fb = 0; fb < (is_f32 || !fallback ? 1 : 2); fb++) {
            config *c = &cfg[nc];
            if (lb_model_load(path, NULL, &c->m) != LB_OK) return fail(path);
            if (!is_f32) {
                lb_qspec spec;
                if (lb_qspec_parse(f, &spec) != LB_OK || quantize_linears(c->m, &spec) != LB_OK) return fail(f);
            }
            if (fb) pin_linears(c->m, "fallback");
            c->kernel = first_linear_kernel(c->m);
            snprintf(c->label, sizeof c->label, "%s%s", f, fb ? " (fallback)" : "");
            if (n > c->m->cfg.seq_len) n = c->m->cfg.seq_len;
            if (np > n) np = n; /* the prefill replays the decoded tokens */
            nc++;
        }
    }
    for (int c = 0; c < nc; c++)
        if (!(cfg[c].tokens = malloc(sizeof(int) * (size_t)n))) return 1;

    char cpu[128];
    lb_cpu_describe(cpu, sizeof cpu);
    if (!json)
        printf("bench_decode: %s, %d positions greedy from BOS, batch 1 (prefill: %d positions in one forward), "
               "%d threads, CPU %s, median of %d runs (configurations interleaved)\n",
               path, n, np, lb_get_threads(), cpu, runs);
    for (int c = 0; c < nc; c++) /* warm-up: page faults, first-touch of the KV cache, kernel choice */
        if (decode(cfg[c].m, n < 8 ? n : 8, cfg[c].tokens, &cfg[c].tps[0]) != LB_OK) return fail(cfg[c].label);
    for (int r = 0; r < runs; r++)
        for (int c = 0; c < nc; c++)
            if (decode(cfg[c].m, n, cfg[c].tokens, &cfg[c].tps[r]) != LB_OK ||
                prefill(cfg[c].m, np, cfg[c].tokens, &cfg[c].pps[r]) != LB_OK)
                return fail(cfg[c].label);

    double f32_median = 0;
    if (!json)
        printf("%-26s %-14s %10s %19s %8s %12s %12s\n", "config", "kernel", "tokens/s", "min..max", "x f32",
               "same as f32", "prefill t/s");
    for (int c = 0; c < nc; c++) {
        double lo, hi, plo, phi;
        double med = median(cfg[c].tps, runs, &lo, &hi), pmed = median(cfg[c].pps, runs, &plo, &phi);
        if (c == 0) f32_median = med;
        int same = 0;
        while (same < n && cfg[c].tokens[same] == cfg[0].tokens[same]) same++;
        if (json)
            printf("{\"config\":\"%s\",\"kernel\":\"%s\",\"threads\":%d,\"positions\":%d,\"runs\":%d,"
                   "\"tokens_per_second\":%.1f,\"min\":%.1f,\"max\":%.1f,\"x_f32\":%.4f,\"same_as_f32\":%d,"
                   "\"prefill_positions\":%d,\"prefill_tokens_per_second\":%.1f}\n",
                   cfg[c].label, cfg[c].kernel, lb_get_threads(), n, runs, med, lo, hi, med / f32_median, same, np,
                   pmed);
        else
            printf("%-26s %-14s %10.1f %9.1f..%-9.1f %8.3f %8d/%-3d %12.1f\n", cfg[c].label, cfg[c].kernel, med, lo, hi,
                   med / f32_median, same, n, pmed);
    }
    for (int c = 0; c < nc; c++) {
        free(cfg[c].tokens);
        lb_model_free(cfg[c].m);
    }
    return 0;
}
