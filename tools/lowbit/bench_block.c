/* lowbit bench block: tokens/s of one synthetic transformer block at
 * Llama-7B shapes (hidden 4096, MLP 11008, 32 heads, SwiGLU), decode and
 * prefill, per format (issue 7, item 6).
 *
 * Why it is built this way:
 * - The library's own forward step, lb_forward_block (RMSNorm, q/k/v/o,
 *   RoPE, causal attention over the KV cache, SwiGLU MLP, residuals), on a
 *   model built in memory: the linears quantized by RTN, everything else f32.
 *   So the figure includes what a real decode step pays besides the matmuls
 *   (activation preparation shared by q/k/v and gate/up, attention, norms).
 * - Weights from DRAM: one block at 4 bits is ~110 MiB, so the model gets as
 *   many identical blocks (separate copies of the bytes) as it takes to hold
 *   --min-mib, and a pass runs the input through every block in turn, as a
 *   real model's layers do; the time per block is pass time / blocks.
 * - Weights N(0, 1/cols) (so the residual stream stays finite through any
 *   number of blocks) quantized once per shape (q, k, v and o share one
 *   quantized matrix's bytes, gate and up another): the bytes differ from a
 *   trained model's, the work and the memory traffic do not.
 * - Decode: one token at position --ctx, after the KV cache of every block
 *   was filled for positions 0..ctx-1 by an untimed prefill (reading a
 *   never-written cache would read the zero page, which is always cached).
 *   Prefill: --batch tokens at positions 0..B-1, one call per block.
 * - Repacking kernels repack every linear before the timing (lb_kernel_pin);
 *   the cost per block is reported. LB_KERNEL forces a kernel as elsewhere. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "kernels/kernels.h"
#include "model/model_internal.h"

#define VERB "bench block"

static const char *block_help =
    "usage: lowbit bench block [--formats LIST] [--modes decode,prefill] [--ctx N]\n"
    "                          [--batch LIST] [--threads LIST] [--reps N] [--min-mib N]\n"
    "                          [--dim N] [--hidden N] [--heads N] [--json]\n\n"
    "Tokens per second through one synthetic transformer block (lb_forward_block: RMSNorm,\n"
    "q/k/v/o, RoPE, causal attention over the KV cache, SwiGLU MLP) whose seven linears are\n"
    "random weights quantized by RTN into each format. The model holds as many copies of\n"
    "the block as it takes to total --min-mib MiB of linears, and each timed pass runs the\n"
    "input through all of them, so the weights come from DRAM; figures are per block (a\n"
    "32-layer model decodes at about tokens_per_s / 32, plus its classifier). Decode: one\n"
    "token at position --ctx over a KV cache filled beforehand; prefill: B tokens at\n"
    "positions 0..B-1. Medians over --reps passes after one untimed pass. Timings mean\n"
    "something only on an idle machine. Progress goes to stderr.\n\n"
    "  --formats LIST   format specs (default: q8_0,q4_0,int4:g64:asym,int3:g64:asym,\n"
    "                   int2:g64:asym,nf4:g64,ternary:g64:2bit,binary:row)\n"
    "  --modes LIST     decode, prefill or both (default decode,prefill)\n"
    "  --ctx N          decode's KV context, 0..65536 (default 512)\n"
    "  --batch LIST     prefill tokens per call, 1..4096 (default 32,128,512)\n"
    "  --threads LIST   thread counts, 1..1024 (default 1,2)\n"
    "  --reps N         timed passes per configuration, 1..1000 (default 3)\n"
    "  --min-mib N      the blocks' linears total at least N MiB, 1..1048576 (default 512)\n"
    "  --dim N          model width, 2..65536 (default 4096)\n"
    "  --hidden N       MLP width, 1..262144 (default 11008)\n"
    "  --heads N        attention heads (= KV heads), dividing dim into even head sizes\n"
    "                   (default 32)\n"
    "  --json           JSON lines, one per configuration: format, bpw, mode, batch, ctx,\n"
    "                   threads, tokens_per_s, us (per block call), blocks, block_bytes,\n"
    "                   kernel (of attn_q), repack_ms (per block), dim, hidden, heads\n";

static const char *default_formats =
    "q8_0,q4_0,int4:g64:asym,int3:g64:asym,int2:g64:asym,nf4:g64,ternary:g64:2bit,binary:row";

typedef struct {
    int json, decode, prefill;
    long ctx, reps, dim, hidden, heads;
    int n_threads, n_batch;
    long threads[BENCH_MAX_LIST], batch[BENCH_MAX_LIST];
    uint64_t min_bytes;
} block_run;

/* which stored matrix each linear copies: 0 dim x dim, 1 hidden x dim, 2 dim x hidden */
static const int source_of[LB_N_LINEARS] = {0, 0, 0, 0, 1, 2, 1};

static size_t format_bytes(const lb_qspec *spec, int64_t rows, int64_t cols) {
    size_t rb, tb, total = 0;
    return lb_format_size(spec, rows, cols, &rb, &tb, &total) == LB_OK ? total : 0;
}

static size_t block_bytes(const lb_qspec *spec, long dim, long hidden) {
    return 4 * format_bytes(spec, dim, dim) + 2 * format_bytes(spec, hidden, dim) + format_bytes(spec, dim, hidden);
}

/* t (named and shaped by lb_model_alloc) as f32: N(0, 1) draws from rng, or `value` everywhere. */
static lb_status f32_tensor(lb_tensor *t, int64_t rows, int64_t cols, lb_rng *rng, float value) {
    static lb_qspec f32;
    if (!f32.family && lb_qspec_parse("f32", &f32) != LB_OK) return LB_ERR_INVALID;
    float *v = lb_alloc((size_t)(rows * cols) * sizeof(float));
    if (!v) return LB_ERR_NOMEM;
    for (int64_t i = 0; i < rows * cols; i++) v[i] = rng ? (float)lb_rng_normal(rng) : value;
    char name[96];
    snprintf(name, sizeof name, "%s", t->name);
    lb_status st = lb_quantize_to_tensor(v, rows, cols, &f32, NULL, name, t);
    lb_free(v);
    return st;
}

/* The model: `blocks` layers whose linears are copies of three quantized
 * matrices; norms of ones; a 32-token f32 embedding (unused by the blocks). */
static lb_status build_model(const block_run *b, const bench_format *f, int blocks, int seq_len, lb_model **out) {
    lb_config cfg = {.dim = (int)b->dim, .hidden_dim = (int)b->hidden, .n_layers = blocks, .n_heads = (int)b->heads,
                     .n_kv_heads = (int)b->heads, .vocab_size = 32, .seq_len = seq_len, .norm_eps = 1e-5f,
                     .rope_theta = 10000.0f};
    lb_model *m;
    lb_status st = lb_model_alloc(&cfg, 1, &m);
    if (st != LB_OK) return st;
    lb_tensor src[3];
    int n_src = 0;
    const int64_t shapes[3][2] = {{b->dim, b->dim}, {b->hidden, b->dim}, {b->dim, b->hidden}};
    lb_rng rng;
    lb_rng_seed(&rng, 0x626c6f636bULL);
    for (; n_src < 3 && st == LB_OK; n_src++) {
        int64_t rows = shapes[n_src][0], cols = shapes[n_src][1];
        float *w = lb_alloc((size_t)(rows * cols) * sizeof(float));
        if (!w) {
            st = LB_ERR_NOMEM;
            break;
        }
        float s = 1.0f / sqrtf((float)cols);
        for (int64_t i = 0; i < rows * cols; i++) w[i] = s * (float)lb_rng_normal(&rng);
        st = lb_quantize_to_tensor(w, rows, cols, &f->spec, NULL, "block", &src[n_src]);
        lb_free(w);
        if (st != LB_OK) break;
    }
    for (int l = 0; l < blocks && st == LB_OK; l++) {
        lb_layer *L = &m->layers[l];
        if ((st = f32_tensor(&L->attn_norm, 1, b->dim, NULL, 1.0f)) != LB_OK ||
            (st = f32_tensor(&L->ffn_norm, 1, b->dim, NULL, 1.0f)) != LB_OK)
            break;
        for (int i = 0; i < LB_N_LINEARS && st == LB_OK; i++) {
            const lb_tensor *s = &src[source_of[i]];
            lb_tensor t = *s;
            snprintf(t.name, sizeof t.name, "%s", L->linear[i].w.name);
            t.kernel = NULL;
            t.packed = NULL;
            if (!(t.owned = lb_alloc(s->nbytes))) {
                st = LB_ERR_NOMEM;
                break;
            }
            memcpy(t.owned, s->data, s->nbytes);
            t.data = t.owned;
            L->linear[i].w = t;
        }
    }
    for (int i = 0; i < n_src; i++) lb_tensor_free(&src[i]);
    if (st == LB_OK) st = f32_tensor(&m->tok_embd, cfg.vocab_size, b->dim, &rng, 0);
    if (st == LB_OK) st = f32_tensor(&m->out_norm, 1, b->dim, NULL, 1.0f);
    if (st == LB_OK) {
        /* lb_model_finish decodes every weight to check it is finite: the
         * blocks are byte copies of block 0, so it checks block 0 (seen as a
         * 1-layer model) and builds the RoPE tables; the copies are resolved */
        m->cfg.n_layers = 1;
        st = lb_model_finish(m);
        m->cfg.n_layers = blocks;
        for (int l = 1; l < blocks && st == LB_OK; l++)
            for (int i = 0; i < LB_N_LINEARS && st == LB_OK; i++) st = lb_tensor_resolve(&m->layers[l].linear[i].w);
    }
    if (st != LB_OK) {
        lb_model_free(m);
        return st;
    }
    *out = m;
    return LB_OK;
}

/* Runs `passes` + 1 passes (the first untimed) of n tokens at pos through
 * every block, from the same input each pass; the median seconds per block. */
static lb_status time_blocks(const lb_model *m, lb_state *s, float *x, const float *x0, int n, int pos, long reps,
                             double *sec) {
    double t[BENCH_MAX_REPS + 1];
    int blocks = m->cfg.n_layers;
    size_t bytes = (size_t)n * (size_t)m->cfg.dim * sizeof(float);
    for (long r = 0; r <= reps; r++) {
        memcpy(x, x0, bytes);
        double t0 = lb_now();
        for (int l = 0; l < blocks; l++) {
            lb_status st = lb_forward_block(m, s, l, x, n, pos);
            if (st != LB_OK) return st;
        }
        t[r] = lb_now() - t0;
    }
    for (size_t i = 0; i < (size_t)n * (size_t)m->cfg.dim; i++)
        if (!isfinite(x[i])) return lb_fail(LB_ERR_NUMERIC, "non-finite block output");
    *sec = bench_median(t + 1, (int)reps) / blocks;
    if (!(*sec > 0)) *sec = 1e-9; /* a clock too coarse for tiny shapes: keep the figures finite */
    return LB_OK;
}

static void report(const block_run *b, const bench_format *f, double bpw, const char *mode, long batch, long ctx,
                   long threads, double sec, int blocks, size_t bbytes, const char *kernel, double repack_ms) {
    double tps = (double)batch / sec, us = sec * 1e6;
    if (b->json) {
        json_begin_object();
        json_kstr("format", f->text);
        json_knum("bpw", bpw);
        json_kstr("mode", mode);
        json_kint("batch", batch);
        json_kint("ctx", ctx);
        json_kint("threads", threads);
        json_knum("tokens_per_s", tps);
        json_knum("us", us);
        json_kint("blocks", blocks);
        json_kint("block_bytes", (long long)bbytes);
        json_kstr("kernel", kernel);
        json_knum("repack_ms", repack_ms);
        json_kint("dim", b->dim);
        json_kint("hidden", b->hidden);
        json_kint("heads", b->heads);
        json_end_object();
        json_done();
    } else {
        printf("%-22s %6.3f %-8s %5ld %5ld %7ld %-14s %12.1f %12.1f %9.2f\n", f->text, bpw, mode, batch, ctx, threads,
               kernel, tps, us, repack_ms);
    }
    fflush(stdout);
}

static int bench_format_block(const block_run *b, const bench_format *f) {
    size_t bbytes = block_bytes(&f->spec, b->dim, b->hidden);
    long max_batch = 1;
    for (int i = 0; i < b->n_batch && b->prefill; i++)
        if (b->batch[i] > max_batch) max_batch = b->batch[i];
    int blocks = (int)((b->min_bytes + bbytes - 1) / bbytes);
    if (blocks < 1) blocks = 1;
    int seq_len = (int)(b->ctx + 1 > max_batch ? b->ctx + 1 : max_batch);
    double weights = 4.0 * b->dim * b->dim + 3.0 * b->dim * b->hidden, bpw = 8.0 * (double)bbytes / weights;

    fprintf(stderr, "bench block: %s: %d blocks of %zu bytes; quantizing\n", f->text, blocks, bbytes);
    lb_model *m = NULL;
    lb_state *s = NULL;
    float *x = NULL, *x0 = NULL;
    int rc = CLI_FAIL;
    if (build_model(b, f, blocks, seq_len, &m) != LB_OK) {
        cli_error(VERB, "%s: %s", f->text, lb_last_error());
        goto done;
    }
    /* every linear pinned to its kernel (repacked) before any timing */
    const char *env = getenv("LB_KERNEL");
    double t0 = lb_now();
    for (int l = 0; l < blocks; l++)
        for (int i = 0; i < LB_N_LINEARS; i++) lb_kernel_pin(&m->layers[l].linear[i].w, env && *env ? env : NULL);
    double repack_ms = (lb_now() - t0) * 1e3 / blocks;
    const char *kernel = lb_matmul_kernel_name(&m->layers[0].linear[LB_WQ].w);

    /* the KV fill runs up to 128 positions per call even when only decode is timed */
    long state_batch = max_batch;
    if (b->decode && b->ctx > state_batch) state_batch = b->ctx < 128 ? b->ctx : 128;
    size_t xn = (size_t)state_batch * (size_t)b->dim;
    x = lb_alloc(xn * sizeof(float));
    x0 = lb_alloc(xn * sizeof(float));
    if (!x || !x0 || lb_state_create(m, (int)state_batch, &s) != LB_OK) {
        cli_error(VERB, "%s: out of memory for the forward state", f->text);
        goto done;
    }
    lb_rng rng;
    lb_rng_seed(&rng, 0x78ULL);
    for (size_t i = 0; i < xn; i++) x0[i] = (float)lb_rng_normal(&rng);

    if (b->decode && b->ctx > 0) { /* the KV cache of every block, positions 0..ctx-1, untimed */
        fprintf(stderr, "bench block: %s: filling the KV cache (%ld positions)\n", f->text, b->ctx);
        lb_set_threads((int)b->threads[b->n_threads - 1]);
        for (long p = 0; p < b->ctx; p += state_batch) {
            int n = (int)(b->ctx - p < state_batch ? b->ctx - p : state_batch);
            memcpy(x, x0, (size_t)n * (size_t)b->dim * sizeof(float));
            for (int l = 0; l < blocks; l++)
                if (lb_forward_block(m, s, l, x, n, (int)p) != LB_OK) {
                    cli_error(VERB, "%s: %s", f->text, lb_last_error());
                    goto done;
                }
        }
    }
    fprintf(stderr, "bench block: %s: timing\n", f->text);
    for (int ti = 0; ti < b->n_threads; ti++) {
        lb_set_threads((int)b->threads[ti]);
        double sec;
        if (b->decode) {
            if (time_blocks(m, s, x, x0, 1, (int)b->ctx, b->reps, &sec) != LB_OK) {
                cli_error(VERB, "%s decode: %s", f->text, lb_last_error());
                goto done;
            }
            report(b, f, bpw, "decode", 1, b->ctx, b->threads[ti], sec, blocks, bbytes, kernel, repack_ms);
        }
        for (int bi = 0; bi < b->n_batch && b->prefill; bi++) {
            /* positions 0..B-1: overwrites the decode context's first B
             * positions with the same kind of values, harmless to timing */
            if (time_blocks(m, s, x, x0, (int)b->batch[bi], 0, b->reps, &sec) != LB_OK) {
                cli_error(VERB, "%s prefill %ld: %s", f->text, b->batch[bi], lb_last_error());
                goto done;
            }
            report(b, f, bpw, "prefill", b->batch[bi], 0, b->threads[ti], sec, blocks, bbytes, kernel, repack_ms);
        }
    }
    rc = CLI_OK;
done:
    lb_state_free(s);
    lb_model_free(m);
    lb_free(x);
    lb_free(x0);
    return rc;
}

int cmd_bench_block(int argc, char **argv) {
    cli_args a = {.argc = argc, .argv = argv, .i = 1, .verb = VERB};
    const char *formats = default_formats, *modes = "decode,prefill", *ctx = "512", *batches = "32,128,512",
               *threads = "1,2", *reps = "3", *min_mib = "512", *dim = "4096", *hidden = "11008", *heads = "32";
    while (a.i < argc) {
        int r;
        if ((r = cli_option(&a, "--formats", NULL, &formats)) || (r = cli_option(&a, "--modes", NULL, &modes)) ||
            (r = cli_option(&a, "--ctx", NULL, &ctx)) || (r = cli_option(&a, "--batch", NULL, &batches)) ||
            (r = cli_option(&a, "--threads", "-t", &threads)) || (r = cli_option(&a, "--reps", NULL, &reps)) ||
            (r = cli_option(&a, "--min-mib", NULL, &min_mib)) || (r = cli_option(&a, "--dim", NULL, &dim)) ||
            (r = cli_option(&a, "--hidden", NULL, &hidden)) || (r = cli_option(&a, "--heads", NULL, &heads))) {
            if (r < 0) return CLI_USAGE;
            continue;
        }
        if ((r = cli_unknown(&a)) != 0) return r;
    }
    if (a.help) {
        fputs(block_help, stdout);
        return CLI_OK;
    }
    if (a.n_positional) return cli_usage_error(VERB, "unexpected argument '%s'", a.positional[0]);

    block_run b = {.json = a.json};
    long mib;
    if (cli_parse_int(VERB, "--ctx", ctx, 0, 65536, &b.ctx) ||
        (b.n_batch = bench_parse_int_list(VERB, "--batch", batches, 1, 4096, b.batch)) < 0 ||
        (b.n_threads = bench_parse_int_list(VERB, "--threads", threads, 1, 1024, b.threads)) < 0 ||
        cli_parse_int(VERB, "--reps", reps, 1, BENCH_MAX_REPS, &b.reps) ||
        cli_parse_int(VERB, "--min-mib", min_mib, 1, 1L << 20, &mib) ||
        cli_parse_int(VERB, "--dim", dim, 2, 65536, &b.dim) ||
        cli_parse_int(VERB, "--hidden", hidden, 1, 1L << 18, &b.hidden) ||
        cli_parse_int(VERB, "--heads", heads, 1, 4096, &b.heads))
        return CLI_USAGE;
    if (b.dim % b.heads || (b.dim / b.heads) % 2)
        return cli_usage_error(VERB, "--heads %ld must divide --dim %ld into even head sizes", b.heads, b.dim);
    char mitems[BENCH_MAX_LIST][64];
    int n_modes = bench_split_list(VERB, "--modes", modes, mitems);
    if (n_modes < 0) return CLI_USAGE;
    for (int i = 0; i < n_modes; i++) {
        if (!strcmp(mitems[i], "decode")) b.decode = 1;
        else if (!strcmp(mitems[i], "prefill")) b.prefill = 1;
        else return cli_usage_error(VERB, "--modes: '%s' is neither decode nor prefill", mitems[i]);
    }
    bench_format fmts[BENCH_MAX_LIST];
    int n_fmt = bench_parse_formats(VERB, formats, fmts);
    if (n_fmt < 0) return CLI_USAGE;

    /* Memory, refused before any work: the blocks' linears (twice: their
     * repacked layouts), the largest f32 source matrix, the KV cache of
     * every block and the forward state must fit in half the machine. */
    b.min_bytes = (uint64_t)mib << 20;
    long max_batch = 1;
    for (int i = 0; i < b.n_batch && b.prefill; i++)
        if (b.batch[i] > max_batch) max_batch = b.batch[i];
    uint64_t seq = (uint64_t)(b.ctx + 1 > max_batch ? b.ctx + 1 : max_batch), phys = bench_phys_bytes();
    for (int i = 0; i < n_fmt; i++) {
        uint64_t bb = block_bytes(&fmts[i].spec, b.dim, b.hidden);
        if (!bb)
            return cli_usage_error(VERB, "--formats: '%s' cannot hold a %ldx%ld matrix: %s", fmts[i].text, b.hidden,
                                   b.dim, lb_last_error());
        uint64_t blocks = (b.min_bytes + bb - 1) / bb;
        uint64_t rows = (uint64_t)(max_batch > 128 ? max_batch : 128); /* the state's batch, at most */
        uint64_t need = 2 * blocks * bb + (uint64_t)b.dim * (uint64_t)b.hidden * 4 +
                        blocks * seq * (uint64_t)b.dim * 8 + rows * (uint64_t)(6 * b.dim + 2 * b.hidden) * 4;
        if (blocks > 4096)
            return cli_usage_error(VERB, "--min-mib %ld needs %llu blocks of %s at this shape (at most 4096)", mib,
                                   (unsigned long long)blocks, fmts[i].text);
        if (phys && need > phys / 2)
            return cli_usage_error(VERB,
                                   "%s: %llu blocks with a %llu-position KV cache need %llu MiB, more than half of "
                                   "this machine's memory (%llu MiB)",
                                   fmts[i].text, (unsigned long long)blocks, (unsigned long long)seq,
                                   (unsigned long long)(need >> 20), (unsigned long long)(phys >> 20));
    }

    char cpu[128];
    lb_cpu_describe(cpu, sizeof cpu);
    fprintf(stderr, "bench block: CPU %s; dim %ld, MLP %ld, %ld heads\n", cpu, b.dim, b.hidden, b.heads);
    if (!b.json)
        printf("%-22s %6s %-8s %5s %5s %7s %-14s %12s %12s %9s\n", "format", "bpw", "mode", "batch", "ctx", "threads",
               "kernel", "tokens/s", "us/block", "repack_ms");
    int rc = CLI_OK;
    for (int i = 0; i < n_fmt && rc == CLI_OK; i++) rc = bench_format_block(&b, &fmts[i]);
    return rc;
}
