/* lowbit quantize: quantize a model's tensors and save one GGUF file. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <fnmatch.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static const char *quantize_help =
    "usage: lowbit quantize MODEL -o OUT --format SPEC [--method rtn] [--clip RULE] [--tensors LIST]\n\n"
    "Quantizes the selected tensors of MODEL (llama2.c or GGUF) and writes OUT, one GGUF file,\n"
    "atomically (nothing is left behind on failure).\n\n"
    "  -o, --output OUT   the GGUF file to write\n"
    "  --format SPEC      int<b>[:g<G>|:row][:sym|:asym][:zint]   b = 1..8 bits, G = 16..256 (default g64:asym)\n"
    "                     nf4[:g<G>][:dq]                          NormalFloat4, dq = 8-bit absmax\n"
    "                     binary[:g<G>|:row|:tensor]               sign(w) x mean|w|\n"
    "                     ternary[:g<G>|:row|:tensor][:2bit|:1.6bit]   {-1,0,1} x absmean\n"
    "                     pow2[:3|:4|:5][:g<G>|:row]               0 or +-2^-k x absmax (default 4 bits, g64)\n"
    "                     f32, f16, bf16; ggml names q8_0, q4_0, q4_1\n"
    "                     (see docs/FORMATS.md for layouts and bits per weight)\n"
    "  --method rtn       round-to-nearest (the only method so far)\n"
    "  --clip RULE        minmax (default) | mse (best of 50 shrink factors) | aciq | aciq-gauss\n"
    "  --tensors LIST     comma-separated: linears (default: the seven linears of every layer),\n"
    "                     embeddings, output, all, or glob patterns over tensor names\n"
    "                     (e.g. 'blk.*.ffn_down.weight'); norms always stay f32\n"
    "  --tokenizer FILE   llama2.c tokenizer to embed (default: tok<vocab>.bin beside MODEL)\n"
    "  --json             one JSON object on stdout\n";

/* blk.N.<linear>.weight for one of the seven linears */
static int is_linear(const char *name) {
    if (strncmp(name, "blk.", 4)) return 0;
    for (int i = 0; i < LB_N_LINEARS; i++) {
        char suffix[32];
        snprintf(suffix, sizeof suffix, ".%s.weight", lb_linear_name(i));
        size_t n = strlen(name), s = strlen(suffix);
        if (n > s && !strcmp(name + n - s, suffix)) return 1;
    }
    return 0;
}

/* Marks selected[i] for every tensor LIST names (norms never: they stay
 * f32); fails on a token that selects nothing else. */
static int select_tensors(const char *verb, lb_model *m, const char *list, char *selected) {
    char buf[1024];
    if (strlen(list) >= sizeof buf) return cli_usage_error(verb, "--tensors list is too long");
    strcpy(buf, list);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int hits = 0, norm_hits = 0;
        if (!strcmp(tok, "output") && m->tied_output)
            return cli_usage_error(verb, "this model's classifier is tied to the token embedding: select 'embeddings'");
        for (int i = 0; i < lb_model_n_tensors(m); i++) {
            const char *name = lb_model_tensor_at(m, i)->name;
            int hit;
            if (!strcmp(tok, "linears")) hit = is_linear(name);
            else if (!strcmp(tok, "embeddings")) hit = !strcmp(name, "token_embd.weight");
            else if (!strcmp(tok, "output")) hit = !strcmp(name, "output.weight");
            else if (!strcmp(tok, "all")) hit = 1;
            else hit = fnmatch(tok, name, 0) == 0;
            if (hit && strstr(name, "_norm.")) { /* norms are never candidates */
                norm_hits++;
            } else if (hit) {
                selected[i] = 1;
                hits++;
            }
        }
        if (!hits && norm_hits) return cli_usage_error(verb, "--tensors: '%s' selects only norm weights; norms stay f32", tok);
        if (!hits) return cli_usage_error(verb, "--tensors: '%s' matches no tensor (see lowbit info MODEL)", tok);
    }
    return CLI_OK;
}

int quantize_model(const char *verb, lb_model *m, const quantize_job *job, int *n_quantized) {
    int n = lb_model_n_tensors(m);
    char *selected = lb_calloc((size_t)n, 1);
    if (!selected) return cli_error(verb, NULL);
    int rc = select_tensors(verb, m, job->tensors, selected), total = 0;
    for (int i = 0; i < n; i++) total += selected[i];
    lb_progress prog;
    lb_progress_begin(&prog, "quantizing", (uint64_t)total);
    int done = 0;
    for (int i = 0; i < n && rc == CLI_OK; i++) {
        if (!selected[i]) continue;
        lb_tensor *t = lb_model_tensor_at(m, i);
        float *w = lb_alloc((size_t)(t->rows * t->cols) * sizeof(float));
        lb_tensor q;
        if (!w || lb_dequantize(t, w) != LB_OK ||
            lb_quantize_to_tensor(w, t->rows, t->cols, &job->spec, &job->rtn, t->name, &q) != LB_OK) {
            rc = cli_error(verb, NULL);
        } else {
            lb_tensor_free(t);
            *t = q;
            lb_progress_update(&prog, (uint64_t)++done);
        }
        lb_free(w);
    }
    lb_progress_end(&prog);
    lb_free(selected);
    *n_quantized = done;
    return rc;
}

int cmd_quantize(int argc, char **argv) {
    cli_args a = {.argc = argc, .argv = argv, .i = 1, .verb = "quantize"};
    const char *out = NULL, *format = NULL, *method = "rtn", *clip = "minmax", *tokenizer = NULL;
    quantize_job job = {.tensors = "linears"};
    while (a.i < argc) {
        int r;
        if ((r = cli_option(&a, "--output", "-o", &out)) || (r = cli_option(&a, "--format", "-f", &format)) ||
            (r = cli_option(&a, "--method", NULL, &method)) || (r = cli_option(&a, "--clip", NULL, &clip)) ||
            (r = cli_option(&a, "--tensors", NULL, &job.tensors)) ||
            (r = cli_option(&a, "--tokenizer", NULL, &tokenizer))) {
            if (r < 0) return CLI_USAGE;
            continue;
        }
        if ((r = cli_unknown(&a)) != 0) return r;
    }
    if (a.help) {
        fputs(quantize_help, stdout);
        return CLI_OK;
    }
    if (a.n_positional != 1) return cli_usage_error("quantize", "expected one MODEL");
    if (!out) return cli_usage_error("quantize", "missing -o OUT");
    if (!format) return cli_usage_error("quantize", "missing --format SPEC");
    if (strcmp(method, "rtn")) return cli_usage_error("quantize", "unknown method '%s' (available: rtn)", method);
    if (lb_qspec_parse(format, &job.spec) != LB_OK) return cli_usage_error("quantize", "%s", lb_last_error());
    lb_rtn_opts_default(&job.rtn);
    if (lb_clip_parse(clip, &job.rtn.clip) != LB_OK) return cli_usage_error("quantize", "%s", lb_last_error());

    double t0 = lb_now();
    lb_model *m;
    if (cli_load_model("quantize", a.positional[0], tokenizer, &m)) return CLI_FAIL;
    int n_done = 0;
    int rc = quantize_model("quantize", m, &job, &n_done);
    char spec[64];
    lb_qspec_format(&job.spec, spec, sizeof spec);
    if (rc == CLI_OK) {
        snprintf(m->quant_note, sizeof m->quant_note, "method=rtn clip=%s format=%s tensors=%s", lb_clip_name(job.rtn.clip),
                 spec, job.tensors);
        if (lb_model_save_gguf(m, out) != LB_OK) rc = cli_error("quantize", NULL);
    }
    if (rc == CLI_OK) {
        lb_model_size sz;
        lb_model_sizes(m, &sz);
        struct stat st;
        long long bytes = stat(out, &st) == 0 ? (long long)st.st_size : -1;
        double secs = lb_now() - t0;
        if (a.json) {
            json_begin_object();
            json_kstr("input", a.positional[0]);
            json_kstr("output", out);
            json_kstr("format", spec);
            json_kstr("method", "rtn");
            json_kstr("clip", lb_clip_name(job.rtn.clip));
            json_kint("tensors_quantized", n_done);
            json_knum("bpw", sz.bpw);
            json_knum("bpw_all", sz.bpw_all);
            json_kint("file_bytes", bytes);
            json_knum("seconds", secs);
            json_end_object();
            json_done();
        } else {
            char b[32];
            printf("%s: %d tensors as %s (rtn, clip %s): %.4f bpw quantized, %.4f bpw whole model, %s bytes, %.2fs\n", out,
                   n_done, spec, lb_clip_name(job.rtn.clip), sz.bpw, sz.bpw_all, fmt_thousands(bytes, b, sizeof b), secs);
        }
    }
    lb_model_free(m);
    return rc;
}
