/* lowbit demo: the main job in one command. Quantizes the real model with a
 * handful of formats from 8 bits down to 1, writes each as a GGUF file and
 * loads it back (the table describes files that exist), evaluates each on
 * the evaluation split against the fp32 model, and prints one table. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

static const char *demo_help =
    "usage: lowbit demo [MODEL] [--text FILE] [--keep DIR]\n\n"
    "Quantizes MODEL (default ../shared/data/models/stories260K.bin) with formats from 8 bits\n"
    "down to 1 (round-to-nearest, the seven linears of every layer), saves and reloads each\n"
    "GGUF file, and evaluates it on the evaluation split of --text (default\n"
    "../shared/data/text/tinystories-sample.txt, blocks 129..end, docs protocol) against the\n"
    "fp32 model. Prints: format | bpw | file size | ppl | ppl/fp32 | KLD | top-1 | tokens/s.\n\n"
    "  bpw        bits per weight of the quantized linears, every scale, zero and pad counted\n"
    "  file size  the whole GGUF file (embedding and norms stay f32)\n"
    "  KLD        mean KL(fp32 || quantized) of the next-token distribution, nats per token\n"
    "  top-1      how often both models predict the same next token\n"
    "  tokens/s   greedy generation of 256 tokens from BOS, batch 1, median of 3 runs\n\n"
    "  --keep DIR keep the GGUF files in DIR (default: a temporary directory, removed)\n"
    "  --json     one JSON object on stdout\n";

typedef struct {
    const char *spec;
    const char *clip;
} demo_format;

static const demo_format formats[] = {
    {"f32", "minmax"},           {"q8_0", "minmax"},  {"int4:g64:asym", "mse"}, {"nf4:g64", "mse"},
    {"int3:g32:asym", "mse"},    {"int2:g64:asym", "mse"}, {"ternary:g64:1.6bit", "minmax"},
    {"binary:row", "minmax"},
};
#define N_FORMATS (sizeof formats / sizeof formats[0])

typedef struct {
    char spec[64];
    const char *clip;
    double bpw, bpw_all, ppl, kld, top1, tps;
    long long file_bytes;
} demo_row;

static void demo_file_path(const char *dir, const char *spec, char *path, size_t n) {
    cli_gguf_path(dir, "stories260K", spec, path, n);
}

static double median3(double a, double b, double c) {
    return a > b ? (b > c ? b : a > c ? c : a) : (a > c ? a : b > c ? c : b);
}

static void discard(const char *piece, size_t len, void *user) {
    (void)piece;
    (void)len;
    (void)user;
}

static int run_format(const char *model_path, const char *dir, const demo_format *f, const lb_model *ref,
                      const lb_text *text, demo_row *row) {
    /* f->spec by rtn with f->clip over the seven linears of every layer */
    lb_qspec spec;
    lb_method_opts opts;
    lb_method_opts_default(lb_method_find("rtn"), &opts);
    if (lb_qspec_parse(f->spec, &spec) != LB_OK || lb_method_opts_set(&opts, "clip", f->clip) != LB_OK)
        return cli_error("demo", NULL);
    lb_qspec_format(&spec, row->spec, sizeof row->spec);
    row->clip = f->clip;
    char path[4200], err[1200];
    demo_file_path(dir, f->spec, path, sizeof path);
    cli_qeval q = {.model_path = model_path, .tensors = "linears", .text = text,
                   .eval = {.protocol = LB_PROTOCOL_DOCS, .split = LB_SPLIT_EVAL, .ref = ref}};
    cli_qeval_row r;
    lb_model *m = NULL;
    if (cli_quantize_eval(&q, &spec, &opts, path, &r, &m, err, sizeof err) != CLI_OK) return cli_error("demo", "%s", err);
    /* tokens/s: median of three greedy runs of 256 tokens from BOS */
    lb_gen_opts g = {.max_new = 256, .temperature = 0.0f, .top_p = 0.0f, .seed = 1};
    double tps[3] = {0, 0, 0};
    int rc = CLI_OK;
    for (int k = 0; k < 3 && rc == CLI_OK; k++) {
        lb_gen_stats gs;
        if (lb_generate(m, "", &g, discard, NULL, &gs) != LB_OK) rc = cli_error("demo", NULL);
        else tps[k] = gs.generated_tokens / gs.generate_seconds;
    }
    row->bpw = r.bpw;
    row->bpw_all = r.bpw_all;
    row->file_bytes = r.file_bytes;
    row->ppl = r.ev.ppl;
    row->kld = r.ev.kld;
    row->top1 = r.ev.top1;
    row->tps = median3(tps[0], tps[1], tps[2]);
    lb_model_free(m);
    return rc;
}

int cmd_demo(int argc, char **argv) {
    cli_args a = {.argc = argc, .argv = argv, .i = 1, .verb = "demo"};
    const char *keep = NULL, *text_path = NULL;
    while (a.i < argc) {
        int r;
        if ((r = cli_option(&a, "--keep", NULL, &keep)) || (r = cli_option(&a, "--text", NULL, &text_path))) {
            if (r < 0) return CLI_USAGE;
            continue;
        }
        if ((r = cli_unknown(&a)) != 0) return r;
    }
    if (a.help) {
        fputs(demo_help, stdout);
        return CLI_OK;
    }
    if (a.n_positional > 1) return cli_usage_error("demo", "expected at most one MODEL");
    char model_buf[4096], text_buf[4096];
    const char *model_path = a.n_positional ? a.positional[0] : cli_data_path("models/stories260K.bin", model_buf, sizeof model_buf);
    if (!text_path) text_path = cli_data_path("text/tinystories-sample.txt", text_buf, sizeof text_buf);

    char dir[4096];
    if (keep) {
        if (mkdir(keep, 0755) != 0 && access(keep, W_OK) != 0) return cli_error("demo", "cannot create directory '%s'", keep);
        snprintf(dir, sizeof dir, "%s", keep);
    } else {
        snprintf(dir, sizeof dir, "/tmp/lowbit-demo-XXXXXX");
        if (!mkdtemp(dir)) return cli_error("demo", "cannot create a temporary directory");
    }
    double t0 = lb_now();
    lb_text text;
    lb_model *ref = NULL;
    demo_row rows[N_FORMATS];
    memset(rows, 0, sizeof rows);
    int rc = lb_text_load(text_path, &text) == LB_OK ? CLI_OK : cli_error("demo", NULL);
    if (rc == CLI_OK) rc = cli_load_model("demo", model_path, NULL, &ref);
    int first = 0, end = 0;
    if (rc == CLI_OK && lb_text_split(&text, LB_SPLIT_EVAL, 128, &first, &end) != LB_OK) rc = cli_error("demo", NULL);
    if (rc == CLI_OK && !a.json) {
        char cpu[128];
        lb_cpu_describe(cpu, sizeof cpu);
        printf("lowbit demo: %s quantized with round-to-nearest (the 7 linears of every layer)\n", model_path);
        printf("eval: %s, evaluation split (blocks %d..%d), docs protocol, ctx %d, against the fp32 model\n", text_path,
               first + 1, end, ref->cfg.seq_len);
        printf("%d threads, cpu: %s\n\n", lb_get_threads(), cpu);
        printf("| %-28s | %-6s | %7s | %10s | %8s | %8s | %8s | %6s | %8s |\n", "format", "clip", "bpw", "file size",
               "ppl", "ppl/fp32", "KLD", "top-1", "tokens/s");
        printf("|------------------------------|--------|---------|------------|----------|----------|----------|--------|----------|\n");
        fflush(stdout);
    }
    for (size_t i = 0; i < N_FORMATS && rc == CLI_OK; i++) {
        rc = run_format(model_path, dir, &formats[i], ref, &text, &rows[i]);
        if (rc == CLI_OK && !a.json) {
            char sz[32];
            printf("| %-28s | %-6s | %7.3f | %10s | %8.4f | %8.3f | %8.5f | %6.4f | %8.0f |\n", rows[i].spec, rows[i].clip,
                   rows[i].bpw, fmt_thousands(rows[i].file_bytes, sz, sizeof sz), rows[i].ppl,
                   rows[i].ppl / rows[0].ppl, rows[i].kld, rows[i].top1, rows[i].tps);
            fflush(stdout);
        }
    }
    if (rc == CLI_OK && a.json) {
        json_begin_object();
        json_kstr("model", model_path);
        json_kstr("text", text_path);
        json_kstr("split", "eval");
        json_kstr("protocol", "docs");
        json_kint("ctx", ref->cfg.seq_len);
        json_kint("threads", lb_get_threads());
        json_key("rows");
        json_begin_array();
        for (size_t i = 0; i < N_FORMATS; i++) {
            json_begin_object();
            json_kstr("format", rows[i].spec);
            json_kstr("clip", rows[i].clip);
            json_knum("bpw", rows[i].bpw);
            json_knum("bpw_all", rows[i].bpw_all);
            json_kint("file_bytes", rows[i].file_bytes);
            json_knum("ppl", rows[i].ppl);
            json_knum("ppl_ratio", rows[i].ppl / rows[0].ppl);
            json_knum("kld", rows[i].kld);
            json_knum("top1", rows[i].top1);
            json_knum("tokens_per_second", rows[i].tps);
            json_end_object();
        }
        json_end_array();
        json_knum("seconds", lb_now() - t0);
        json_kint("peak_rss", lb_peak_rss());
        json_end_object();
        json_done();
    } else if (rc == CLI_OK) {
        printf("\nbpw: the quantized linears, every stored bit counted (scales, zeros, padding of the 172-wide\n"
               "rows); file size: the whole GGUF (f32 embedding and norms). %.1fs in all.\n",
               lb_now() - t0);
    }
    if (!keep) {
        for (size_t i = 0; i < N_FORMATS; i++) {
            char path[4200];
            demo_file_path(dir, formats[i].spec, path, sizeof path);
            remove(path);
        }
        rmdir(dir);
    }
    lb_model_free(ref);
    lb_text_free(&text);
    return rc;
}
