/* lowbit bench: how close lb_matmul gets to the memory limit, per format,
 * shape, batch and thread count (issue 7, item 6).
 *
 * Why it is built this way:
 * - At batch 1 a quantized matrix x vector is limited by how fast its packed
 *   bytes stream from DRAM, so the figure of merit is roofline =
 *   (bytes / measured read bandwidth) / time, with bytes = the tensor's
 *   nbytes (scales, zeros, tails: every stored byte).
 * - Looping over one matrix measures the cache, not DRAM: the weight is
 *   quantized once (random N(0,1), RTN) and copied until the copies total at
 *   least --min-mib; every timed pass calls lb_matmul once on each copy in
 *   turn, so each call reads bytes that were evicted since their last use.
 * - The bandwidth is measured in the same run, over a buffer as large as the
 *   copies, with the same thread counts: a VM's bandwidth drifts over hours,
 *   and one core cannot saturate the memory system (roofline at 1 thread is
 *   against the 1-thread bandwidth).
 * - Each copy is a tensor of its own: a kernel that repacks at load time
 *   (kernels.h) keeps one packed layout per tensor, so every copy is pinned
 *   to the kernel, and repacked, before the timing; that cost is reported
 *   per tensor. Roofline stays against the canonical bytes (what the file
 *   stores); streamed_roofline is against the bytes the kernel reads.
 * - --kernels all times every registry entry that takes the format on this
 *   CPU, marking the registry's own choice ("chosen").
 * - Medians over --reps passes (per call: pass time / copies), after one
 *   untimed warm-up pass.
 * - No activation cache is passed (cache = NULL): each call prepares its
 *   activations, as a linear whose input is not shared would. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "kernels/kernels.h"

static const char *bench_help =
    "usage: lowbit bench [--formats LIST] [--shapes RxC,...] [--batch LIST] [--threads LIST]\n"
    "                    [--kernels chosen|all|LIST] [--reps N] [--min-mib N] [--json]\n"
    "       lowbit bench block --help   (a synthetic Llama-7B-shaped transformer block)\n\n"
    "Times y = x W^T (lb_matmul) for random Gaussian weights quantized by RTN into each\n"
    "format, with the weights coming from DRAM: the quantized matrix is copied until the\n"
    "copies total at least --min-mib MiB, each copy a tensor of its own, and each timed\n"
    "pass calls lb_matmul once per copy. A kernel that repacks the weight at load time\n"
    "does so for every copy before the timing (its cost is reported per tensor).\n"
    "In the same run it measures the streaming read bandwidth (a vectorized sum over a\n"
    "buffer of the same size) for each thread count. Per configuration it reports the\n"
    "median over the passes of: microseconds per call, GB/s of packed weight bytes (scales\n"
    "and every other stored byte included), roofline = (bytes / bandwidth) / time (1.0 =\n"
    "at the memory limit of that thread count), the kernel (* marks the registry's own\n"
    "choice), the repacking cost and the bpw.\n"
    "Timings mean something only on an idle machine. Progress goes to stderr.\n\n"
    "  --formats LIST   format specs, comma-separated (default: q8_0,q4_0,int4:g64:asym,\n"
    "                   int3:g64:asym,int2:g64:asym,nf4:g64,ternary:g64:2bit,\n"
    "                   ternary:g64:1.6bit,binary:row,pow2:4:g64,int3:g16:sym:s4:r16)\n"
    "  --shapes LIST    ROWSxCOLS,... (default 4096x4096,11008x4096,4096x11008)\n"
    "  --batch LIST     activation vectors per call, 1..512 (default 1,8,32)\n"
    "  --threads LIST   thread counts, 1..1024 (default 1,2)\n"
    "  --kernels K      chosen: the registry's choice (LB_KERNEL's when set; default);\n"
    "                   all: every registry entry that takes the format on this CPU;\n"
    "                   or a list of entry names and 'fallback' (entries that do not\n"
    "                   take a format are skipped with a note on stderr)\n"
    "  --reps N         timed passes per configuration, 1..1000 (default 5)\n"
    "  --min-mib N      weight copies (and the bandwidth buffer) total at least N MiB,\n"
    "                   1..1048576; twice that (copies and repacked layouts) must stay\n"
    "                   under half the machine's memory (default 512)\n"
    "  --json           JSON lines: first one object per thread count with the measured\n"
    "                   bandwidth (\"bandwidth_gbps\"), then one per configuration with format,\n"
    "                   bpw, rows, cols, batch, threads, us, gbps, roofline, kernel, chosen,\n"
    "                   bandwidth_gbps, bytes, copies, repack_ms, packed_bytes (0: none),\n"
    "                   streamed_bytes, streamed_roofline\n";

static const char *default_formats = "q8_0,q4_0,int4:g64:asym,int3:g64:asym,int2:g64:asym,nf4:g64,ternary:g64:2bit,"
                                     "ternary:g64:1.6bit,binary:row,pow2:4:g64,int3:g16:sym:s4:r16";

#define MAX_LIST BENCH_MAX_LIST
#define MAX_REPS BENCH_MAX_REPS

typedef bench_format fmt_item;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int bench_split_list(const char *verb, const char *opt, const char *text, char items[][64]) {
    int n = 0;
    const char *p = text;
    for (;;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == 0) return cli_usage_error(verb, "%s: empty item in '%s'", opt, text), -1;
        if (len >= 64) return cli_usage_error(verb, "%s: item too long in '%s'", opt, text), -1;
        if (n >= MAX_LIST) return cli_usage_error(verb, "%s: more than %d items", opt, MAX_LIST), -1;
        memcpy(items[n], p, len);
        items[n][len] = 0;
        n++;
        if (!e) return n;
        p = e + 1;
    }
}

int bench_parse_int_list(const char *verb, const char *opt, const char *text, long lo, long hi, long *out) {
    char items[MAX_LIST][64];
    int n = bench_split_list(verb, opt, text, items);
    for (int i = 0; i < n; i++)
        if (cli_parse_int(verb, opt, items[i], lo, hi, &out[i])) return -1;
    return n;
}

int bench_parse_formats(const char *verb, const char *text, bench_format *out) {
    char items[MAX_LIST][64];
    int n = bench_split_list(verb, "--formats", text, items);
    for (int i = 0; i < n; i++) {
        memcpy(out[i].text, items[i], sizeof out[i].text);
        if (lb_qspec_parse(items[i], &out[i].spec) != LB_OK)
            return cli_usage_error(verb, "--formats: '%s': %s", items[i], lb_last_error()), -1;
    }
    return n;
}

/* "RxC": each side 1..1,048,576, at most 2^30 weights (4 GiB as f32). */
static int parse_shapes(const char *text, long *rows, long *cols) {
    char items[MAX_LIST][64];
    int n = bench_split_list("bench", "--shapes", text, items);
    for (int i = 0; i < n; i++) {
        char *x = strchr(items[i], 'x');
        if (!x) return cli_usage_error("bench", "--shapes expects ROWSxCOLS, not '%s'", items[i]), -1;
        *x = 0;
        if (cli_parse_int("bench", "--shapes (rows)", items[i], 1, 1L << 20, &rows[i]) ||
            cli_parse_int("bench", "--shapes (cols)", x + 1, 1, 1L << 20, &cols[i]))
            return -1;
        if ((int64_t)rows[i] * cols[i] > ((int64_t)1 << 30))
            return cli_usage_error("bench", "--shapes: %ldx%ld has more than 2^30 weights", rows[i], cols[i]), -1;
    }
    return n;
}

/* A vectorizable streaming read: four independent 16-byte accumulators
 * (GCC/Clang vector extension: SSE2 on x86-64, NEON on aarch64) so the loop
 * is limited by memory, not by an add chain. Integer adds: no FP
 * reassociation question, and the compiler cannot drop the loads because
 * the result is kept. */
typedef uint64_t v2u64 __attribute__((vector_size(16)));

static uint64_t sum_chunk(const v2u64 *p, size_t n) {
    v2u64 a = {0, 0}, b = a, c = a, d = a;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        a += p[i];
        b += p[i + 1];
        c += p[i + 2];
        d += p[i + 3];
    }
    for (; i < n; i++) a += p[i];
    a += b + c + d;
    return a[0] + a[1];
}

/* Each thread reads one contiguous share. */
double bench_read_bandwidth(const uint8_t *buf, size_t bytes, int threads, int reps, uint64_t *sink) {
    double t[MAX_REPS + 1];
    size_t nvec = bytes / sizeof(v2u64);
    for (int r = 0; r <= reps; r++) { /* pass 0: warm-up, not counted */
        uint64_t total = 0;
        double t0 = lb_now();
#pragma omp parallel num_threads(threads) reduction(+ : total)
        {
            int nt = omp_get_num_threads(), id = omp_get_thread_num();
            size_t lo = nvec * (size_t)id / (size_t)nt, hi = nvec * (size_t)(id + 1) / (size_t)nt;
            total += sum_chunk((const v2u64 *)buf + lo, hi - lo);
        }
        t[r] = lb_now() - t0;
        *sink += total;
    }
    return (double)bytes / bench_median(t + 1, reps) / 1e9;
}

uint64_t bench_phys_bytes(void) {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
}

typedef struct {
    int json;
    long reps;
    int n_threads;
    long threads[MAX_LIST];
    double bw[MAX_LIST]; /* GB/s per thread count */
    /* which registry entries to time: "chosen" (the registry's choice, or
     * LB_KERNEL's), "all" (every entry taking the format on this CPU), or a
     * list of entry names and "fallback" */
    int all;
    int n_kernels; /* 0: the registry's choice */
    char kernels[MAX_LIST][64];
} bench_run;

/* The registry entries to time for one tensor, as force strings for
 * lb_kernel_pin; NULL means the normal choice. */
static int kernels_to_time(const bench_run *b, const char *label, const lb_tensor *q, const char *force[MAX_LIST]) {
    unsigned cpu = lb_cpu_features();
    int n = 0;
    if (b->all) {
        for (int i = 0; i < lb_kernel_count() && n < MAX_LIST; i++) {
            const lb_kernel *k = lb_kernel_at(i);
            if ((k->cpu & cpu) == k->cpu && k->accepts(&q->spec, &q->layout)) force[n++] = k->name;
        }
    } else if (b->n_kernels) {
        for (int i = 0; i < b->n_kernels; i++) {
            const lb_kernel *k = lb_kernel_find(b->kernels[i]);
            if (k && !((k->cpu & cpu) == k->cpu && k->accepts(&q->spec, &q->layout))) {
                fprintf(stderr, "bench: %s: kernel %s does not take this format on this CPU; skipped\n", label,
                        k->name);
                continue;
            }
            force[n++] = b->kernels[i]; /* an entry name, or "fallback" */
        }
    } else {
        const char *env = getenv("LB_KERNEL");
        force[n++] = env && *env ? env : NULL;
    }
    return n;
}

/* Times one (format, shape): quantize, copy, then per kernel: give every copy
 * its own tensor pinned to the kernel (repacking it, timed), then every
 * batch x thread count. Returns CLI_OK or CLI_FAIL (message printed). */
static int bench_one(const bench_run *b, const fmt_item *f, long rows, long cols, const long *batch, int n_batch,
                     uint64_t min_bytes) {
    int rc = CLI_FAIL;
    float *w = NULL, *x = NULL, *y = NULL;
    uint8_t *copies = NULL;
    lb_tensor q, *ts = NULL;
    size_t n_copies = 0;
    int have_q = 0;
    long max_batch = 1;
    for (int i = 0; i < n_batch; i++)
        if (batch[i] > max_batch) max_batch = batch[i];

    fprintf(stderr, "bench: %s %ldx%ld: quantizing\n", f->text, rows, cols);
    w = lb_alloc((size_t)rows * (size_t)cols * sizeof(float));
    x = lb_alloc((size_t)max_batch * (size_t)cols * sizeof(float));
    y = lb_alloc((size_t)max_batch * (size_t)rows * sizeof(float));
    if (!w || !x || !y) {
        cli_error("bench", "out of memory for a %ldx%ld matrix", rows, cols);
        goto done;
    }
    lb_rng rng;
    lb_rng_seed(&rng, 0x6c6f77626974ULL ^ ((uint64_t)rows << 20) ^ (uint64_t)cols);
    for (size_t i = 0; i < (size_t)rows * (size_t)cols; i++) w[i] = (float)lb_rng_normal(&rng);
    for (size_t i = 0; i < (size_t)max_batch * (size_t)cols; i++) x[i] = (float)lb_rng_normal(&rng);
    if (lb_quantize_to_tensor(w, rows, cols, &f->spec, NULL, "bench", &q) != LB_OK) {
        cli_error("bench", "%s %ldx%ld: %s", f->text, rows, cols, lb_last_error());
        goto done;
    }
    have_q = 1;
    lb_free(w);
    w = NULL;

    /* copies at 64-byte strides (lb_alloc's alignment for every copy) */
    size_t stride = (q.nbytes + 63) & ~(size_t)63;
    n_copies = (size_t)((min_bytes + q.nbytes - 1) / q.nbytes);
    if (n_copies < 1) n_copies = 1;
    if (stride > SIZE_MAX / n_copies || !(copies = lb_alloc(stride * n_copies)) ||
        !(ts = lb_calloc(n_copies, sizeof *ts))) {
        cli_error("bench", "cannot allocate %zu copies of %zu bytes", n_copies, stride);
        goto done;
    }
    /* each copy is a tensor of its own (same format, shape and layout), so a
     * kernel that repacks keeps one packed layout per copy */
    for (size_t c = 0; c < n_copies; c++) {
        memcpy(copies + c * stride, q.data, q.nbytes);
        ts[c] = q;
        ts[c].data = copies + c * stride;
        ts[c].owned = NULL;
        ts[c].kernel = NULL;
        ts[c].packed = NULL;
    }
    fprintf(stderr, "bench: %s %ldx%ld: %zu bytes, %zu copies (%.0f MiB)\n", f->text, rows, cols, q.nbytes, n_copies,
            (double)(stride * n_copies) / 1048576.0);
    double bpw = 8.0 * (double)q.nbytes / ((double)rows * (double)cols);
    const lb_kernel *chosen = lb_kernel_select(&q.spec, &q.layout, lb_cpu_features(), NULL);
    const char *force[MAX_LIST];
    int n_force = kernels_to_time(b, f->text, &q, force);

    for (int ki = 0; ki < n_force; ki++) {
        /* the packed size, from one extra repacking of copy 0 (the registry
         * keeps no size); then every copy pinned, the time per tensor */
        const lb_kernel *want = lb_kernel_select(&q.spec, &q.layout, lb_cpu_features(), force[ki]);
        size_t packed_bytes = 0;
        if (want->repack) {
            void *p = NULL;
            if (want->repack(&ts[0], &p, &packed_bytes) != LB_OK) {
                cli_error("bench", "%s %ldx%ld: repacking for %s: %s", f->text, rows, cols, want->name,
                          lb_last_error());
                goto done;
            }
            lb_free(p);
        }
        double t0 = lb_now();
        for (size_t c = 0; c < n_copies; c++)
            if (lb_kernel_pin(&ts[c], force[ki]) != want) {
                cli_error("bench", "%s %ldx%ld: kernel %s gave way to %s (out of memory for its repacking?)", f->text,
                          rows, cols, want->name, lb_matmul_kernel_name(&ts[c]));
                goto done;
            }
        double repack_ms = (lb_now() - t0) * 1e3 / (double)n_copies;
        size_t streamed = packed_bytes ? packed_bytes : q.nbytes; /* a repacking kernel reads only its layout */
        if (want->repack)
            fprintf(stderr, "bench: %s %ldx%ld: %s repacks %zu -> %zu bytes, %.3f ms per tensor\n", f->text, rows,
                    cols, want->name, q.nbytes, packed_bytes, repack_ms);

        for (int bi = 0; bi < n_batch; bi++)
            for (int ti = 0; ti < b->n_threads; ti++) {
                int n = (int)batch[bi];
                lb_set_threads((int)b->threads[ti]);
                double t[MAX_REPS + 1];
                for (long r = 0; r <= b->reps; r++) { /* pass 0: warm-up */
                    double t1 = lb_now();
                    for (size_t c = 0; c < n_copies; c++)
                        if (lb_matmul(&ts[c], x, n, y, NULL) != LB_OK) {
                            cli_error("bench", "%s %ldx%ld batch %d: %s", f->text, rows, cols, n, lb_last_error());
                            goto done;
                        }
                    t[r] = lb_now() - t1;
                }
                for (int i = 0; i < n * (int)rows; i++)
                    if (!isfinite(y[i])) {
                        cli_error("bench", "%s %ldx%ld batch %d: non-finite output", f->text, rows, cols, n);
                        goto done;
                    }
                double sec = bench_median(t + 1, (int)b->reps) / (double)n_copies;
                if (!(sec > 0)) sec = 1e-9; /* a clock too coarse for tiny shapes: keep the figures finite */
                double us = sec * 1e6, gbps = (double)q.nbytes / sec / 1e9, bw = b->bw[ti];
                double roofline = gbps / bw, streamed_roofline = (double)streamed / sec / 1e9 / bw;
                const char *kernel = lb_matmul_kernel_name(&ts[0]);
                int is_chosen = want == chosen;
                if (b->json) {
                    json_begin_object();
                    json_kstr("format", f->text);
                    json_knum("bpw", bpw);
                    json_kint("rows", rows);
                    json_kint("cols", cols);
                    json_kint("batch", n);
                    json_kint("threads", b->threads[ti]);
                    json_knum("us", us);
                    json_knum("gbps", gbps);
                    json_knum("roofline", roofline);
                    json_kstr("kernel", kernel);
                    json_kbool("chosen", is_chosen);
                    json_knum("bandwidth_gbps", bw);
                    json_kint("bytes", (long long)q.nbytes);
                    json_kint("copies", (long long)n_copies);
                    json_knum("repack_ms", repack_ms);
                    json_kint("packed_bytes", (long long)packed_bytes);
                    json_kint("streamed_bytes", (long long)streamed);
                    json_knum("streamed_roofline", streamed_roofline);
                    json_end_object();
                    json_done();
                } else {
                    char shape[32], kname[64], packed[32];
                    snprintf(shape, sizeof shape, "%ldx%ld", rows, cols);
                    snprintf(kname, sizeof kname, "%s%s", kernel, is_chosen ? " *" : "");
                    if (packed_bytes)
                        snprintf(packed, sizeof packed, "%.3f", (double)packed_bytes / (double)q.nbytes);
                    else
                        snprintf(packed, sizeof packed, "-");
                    printf("%-22s %6.3f %-11s %5d %7ld %-22s %11.1f %8.2f %8.3f %9.3f %6s\n", f->text, bpw, shape, n,
                           b->threads[ti], kname, us, gbps, roofline, repack_ms, packed);
                }
                fflush(stdout);
            }
    }
    rc = CLI_OK;
done:
    for (size_t c = 0; ts && c < n_copies; c++) lb_tensor_free(&ts[c]); /* views: frees only their packed layouts */
    lb_free(ts);
    if (have_q) lb_tensor_free(&q);
    lb_free(copies);
    lb_free(w);
    lb_free(x);
    lb_free(y);
    return rc;
}

int cmd_bench(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "block")) return cmd_bench_block(argc - 1, argv + 1);
    cli_args a = {.argc = argc, .argv = argv, .i = 1, .verb = "bench"};
    const char *formats = default_formats, *shapes = "4096x4096,11008x4096,4096x11008", *batches = "1,8,32",
               *threads = "1,2", *reps = "5", *min_mib = "512", *kernels = "chosen";
    while (a.i < argc) {
        int r;
        /* --threads takes a list here, so it is read before the common options */
        if ((r = cli_option(&a, "--formats", NULL, &formats)) || (r = cli_option(&a, "--shapes", NULL, &shapes)) ||
            (r = cli_option(&a, "--batch", NULL, &batches)) || (r = cli_option(&a, "--threads", "-t", &threads)) ||
            (r = cli_option(&a, "--reps", NULL, &reps)) || (r = cli_option(&a, "--min-mib", NULL, &min_mib)) ||
            (r = cli_option(&a, "--kernels", NULL, &kernels))) {
            if (r < 0) return CLI_USAGE;
            continue;
        }
        if ((r = cli_unknown(&a)) != 0) return r;
    }
    if (a.help) {
        fputs(bench_help, stdout);
        return CLI_OK;
    }
    if (a.n_positional) return cli_usage_error("bench", "unexpected argument '%s'", a.positional[0]);

    bench_run b = {.json = a.json};
    long rows[MAX_LIST], cols[MAX_LIST], batch[MAX_LIST], mib;
    int n_shapes, n_batch;
    if ((n_shapes = parse_shapes(shapes, rows, cols)) < 0 ||
        (n_batch = bench_parse_int_list("bench", "--batch", batches, 1, 512, batch)) < 0 ||
        (b.n_threads = bench_parse_int_list("bench", "--threads", threads, 1, 1024, b.threads)) < 0 ||
        cli_parse_int("bench", "--reps", reps, 1, MAX_REPS, &b.reps) ||
        cli_parse_int("bench", "--min-mib", min_mib, 1, 1L << 20, &mib))
        return CLI_USAGE;
    if (!strcmp(kernels, "all")) {
        b.all = 1;
    } else if (strcmp(kernels, "chosen")) {
        if ((b.n_kernels = bench_split_list("bench", "--kernels", kernels, b.kernels)) < 0) return CLI_USAGE;
        for (int i = 0; i < b.n_kernels; i++)
            if (strcmp(b.kernels[i], "fallback") && !lb_kernel_find(b.kernels[i]))
                return cli_usage_error("bench", "--kernels: no registry entry '%s' (lowbit bench --help)",
                                       b.kernels[i]);
    }

    fmt_item fmts[MAX_LIST];
    int n_fmt = bench_parse_formats("bench", formats, fmts);
    if (n_fmt < 0) return CLI_USAGE;
    for (int i = 0; i < n_fmt; i++)
        for (int s = 0; s < n_shapes; s++) {
            size_t rb, tb, total;
            if (lb_format_size(&fmts[i].spec, rows[s], cols[s], &rb, &tb, &total) != LB_OK)
                return cli_usage_error("bench", "--formats: '%s' cannot hold a %ldx%ld matrix: %s", fmts[i].text,
                                       rows[s], cols[s], lb_last_error());
        }

    /* Memory: the copies, their repacked layouts (about as large, for
     * kernels that repack) and the largest f32 source matrix must fit, with
     * room to spare, or the benchmark would swap or be killed half-way.
     * Refused before any work. */
    uint64_t min_bytes = (uint64_t)mib << 20, phys = bench_phys_bytes(), largest = 0;
    for (int s = 0; s < n_shapes; s++)
        if ((uint64_t)rows[s] * (uint64_t)cols[s] * 4 > largest) largest = (uint64_t)rows[s] * (uint64_t)cols[s] * 4;
    if (phys && 2 * min_bytes + largest > phys / 2)
        return cli_usage_error("bench",
                               "--min-mib %ld (twice: copies and their repacked layouts) with a %llu MiB f32 matrix "
                               "needs more than half of this machine's memory (%llu MiB)",
                               mib, (unsigned long long)(largest >> 20), (unsigned long long)(phys >> 20));

    char cpu[128];
    lb_cpu_describe(cpu, sizeof cpu);
    fprintf(stderr, "bench: CPU %s; measuring read bandwidth over %ld MiB\n", cpu, mib);
    uint8_t *buf = lb_alloc((size_t)min_bytes);
    if (!buf) return cli_error("bench", "cannot allocate %ld MiB for the bandwidth buffer", mib);
    memset(buf, 0x5a, (size_t)min_bytes); /* touch every page before timing */
    uint64_t sink = 0;
    int bw_reps = b.reps < 5 ? 5 : (int)b.reps; /* cheap next to the matmuls: never fewer than 5 */
    for (int ti = 0; ti < b.n_threads; ti++) {
        b.bw[ti] = bench_read_bandwidth(buf, (size_t)min_bytes, (int)b.threads[ti], bw_reps, &sink);
        if (b.json) {
            json_begin_object();
            json_kstr("measure", "read_bandwidth");
            json_kint("threads", b.threads[ti]);
            json_knum("bandwidth_gbps", b.bw[ti]);
            json_kint("buffer_mib", mib);
            json_kint("reps", bw_reps);
            json_kstr("cpu", cpu);
            json_end_object();
            json_done();
        } else {
            printf("read bandwidth, %ld MiB buffer, %ld thread%s: %.2f GB/s (median of %d)\n", mib, b.threads[ti],
                   b.threads[ti] == 1 ? "" : "s", b.bw[ti], bw_reps);
        }
    }
    lb_free(buf);
    if (sink == 1) fputc('\n', stderr); /* keeps the sums alive; 0x5a bytes never sum to 1 */
    if (!b.json)
        printf("\n%-22s %6s %-11s %5s %7s %-22s %11s %8s %8s %9s %6s\n", "format", "bpw", "shape", "batch", "threads",
               "kernel (* chosen)", "us", "GB/s", "roofline", "repack_ms", "packed");
    fflush(stdout);

    int rc = CLI_OK;
    for (int i = 0; i < n_fmt && rc == CLI_OK; i++)
        for (int s = 0; s < n_shapes && rc == CLI_OK; s++)
            rc = bench_one(&b, &fmts[i], rows[s], cols[s], batch, n_batch, min_bytes);
    return rc;
}
