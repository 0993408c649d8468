/* lowbit convert: a model from any file lowbit reads to GGUF or to a Hugging
 * Face safetensors folder (docs/INTEROP.md). */
#define _XOPEN_SOURCE 700 /* realpath */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static const char *convert_help =
    "usage: lowbit convert IN -o OUT [--to gguf|safetensors] [--format SPEC] [--tokenizer FILE]\n"
    "                      [--split-max-size SIZE] [--split-max-tensors N] [--json]\n\n"
    "Writes the model IN (a llama2.c checkpoint, a GGUF file, or a Hugging Face folder: the folder,\n"
    "its config.json or its .safetensors file) as one GGUF file or as a Hugging Face folder holding\n"
    "config.json, model.safetensors (HF tensor names, q/k rows in HF's rotate-half order) and\n"
    "tokenizer.model (or tokenizer.json for byte-level BPE vocabularies). Tensors are written\n"
    "one at a time from the input's mapping.\n\n"
    "  -o, --output OUT   the GGUF file, or the folder (created if missing)\n"
    "  --to KIND          gguf or safetensors (default: gguf when OUT ends in .gguf, else safetensors)\n"
    "  --format SPEC      store every tensor as f32, f16 or bf16 (quantized ones are dequantized;\n"
    "                     in GGUF the norms stay f32), or, GGUF only, every 2-D tensor in any\n"
    "                     format (q4_k, iq4_xs, nvfp4, int3:g64:asym, ...): each dequantized and\n"
    "                     quantized by data-free rtn (clip mse) one tensor at a time, rows that are\n"
    "                     not whole blocks falling back as llama-quantize does (said on stderr).\n"
    "                     Default: as stored; a quantized model then converts to GGUF only\n"
    "                     (safetensors holds no lowbit format). For calibrated methods, recipes and\n"
    "                     per-tensor choices, use lowbit quantize.\n"
    CLI_SPLIT_HELP
    "  --tokenizer FILE   the input's tokenizer, when it is not found beside IN\n"
    "  --json             one JSON object on stdout (\"shards\": the GGUF files written)\n";

/* convert's quantizer: rtn, clip mse (data-free: convert has no calibration text) */
static lb_status convert_rtn_opts(lb_method_opts *o) {
    lb_method_opts_default(lb_method_find("rtn"), o);
    return lb_method_opts_parse(o, "clip=mse");
}

static lb_status convert_quantize(const float *w, int64_t rows, int64_t cols, const lb_qspec *spec, const char *name,
                                  lb_tensor *out, void *user) {
    return lb_quantize_tensor(lb_method_find("rtn"), (const lb_method_opts *)user, NULL, w, rows, cols, spec, name, out);
}

static int ends_with(const char *s, const char *tail) {
    size_t n = strlen(s), k = strlen(tail);
    return n >= k && !strcmp(s + n - k, tail);
}

/* The folder an HF input lives in (resolved), or "" for a single file. */
static void input_folder(const char *in, char *out, size_t n) {
    struct stat st;
    char buf[PATH_MAX];
    out[0] = 0;
    if (stat(in, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(buf, sizeof buf, "%s", in);
    } else if (ends_with(in, "config.json") || ends_with(in, ".safetensors")) {
        const char *slash = strrchr(in, '/');
        snprintf(buf, sizeof buf, "%.*s", slash ? (int)(slash - in) : 1, slash ? in : ".");
    } else {
        return;
    }
    char real[PATH_MAX];
    if (realpath(buf, real)) snprintf(out, n, "%s", real);
}

int cmd_convert(int argc, char **argv) {
    cli_args a = {.argc = argc, .argv = argv, .i = 1, .verb = "convert"};
    const char *out = NULL, *to = NULL, *format = NULL, *tokenizer = NULL, *split_size = NULL, *split_tensors = NULL;
    while (a.i < argc) {
        int r = cli_option(&a, "--output", "-o", &out);
        if (r == 0) r = cli_option(&a, "--to", NULL, &to);
        if (r == 0) r = cli_option(&a, "--format", NULL, &format);
        if (r == 0) r = cli_option(&a, "--tokenizer", NULL, &tokenizer);
        if (r == 0) r = cli_option(&a, "--split-max-size", NULL, &split_size);
        if (r == 0) r = cli_option(&a, "--split-max-tensors", NULL, &split_tensors);
        if (r < 0) return CLI_USAGE;
        if (r == 0 && (r = cli_unknown(&a)) != 0) return r;
    }
    if (a.help) {
        fputs(convert_help, stdout);
        return CLI_OK;
    }
    if (a.n_positional != 1) return cli_usage_error("convert", "expected one model IN");
    if (!out) return cli_usage_error("convert", "missing -o OUT");
    const char *in = a.positional[0];
    int to_gguf;
    if (!to) to_gguf = ends_with(out, ".gguf");
    else if (!strcmp(to, "gguf")) to_gguf = 1;
    else if (!strcmp(to, "safetensors")) to_gguf = 0;
    else return cli_usage_error("convert", "--to must be gguf or safetensors, not '%s'", to);
    lb_gguf_split_opts split;
    int splitting, n_shards = 0;
    if (cli_split_opts("convert", split_size, split_tensors, &split, &splitting)) return CLI_USAGE;
    if (splitting && !to_gguf)
        return cli_usage_error("convert", "--split-max-size / --split-max-tensors split a GGUF output (--to gguf)");
    lb_qspec spec;
    if (format) {
        if (lb_qspec_parse(format, &spec) != LB_OK) return cli_usage_error("convert", "--format: %s", lb_last_error());
        if (!lb_qspec_is_float(&spec) && !to_gguf)
            return cli_usage_error("convert", "--format %s is a quantized format, which a safetensors folder cannot "
                                   "hold: write GGUF (--to gguf)", format);
    }
    /* checked before any work: never over an input, never a half-made folder */
    const char *inputs[2] = {in, tokenizer};
    if (to_gguf && splitting && cli_split_output_check("convert", out, inputs, 2)) return CLI_FAIL;
    if (to_gguf && !splitting && lb_output_check(out, inputs, 2) != LB_OK) return cli_error("convert", NULL);
    if (!to_gguf) {
        char in_dir[PATH_MAX], out_dir[PATH_MAX];
        input_folder(in, in_dir, sizeof in_dir);
        if (in_dir[0] && realpath(out, out_dir) && !strcmp(in_dir, out_dir))
            return cli_error("convert", "output folder '%s' is the input's folder: refusing to overwrite an input", out);
        struct stat st;
        if (stat(out, &st) == 0 && !S_ISDIR(st.st_mode))
            return cli_error("convert", "output '%s' exists and is not a folder", out);
    }
    double t0 = lb_now();
    lb_model *m;
    if (cli_load_model("convert", in, tokenizer, &m)) return CLI_FAIL;
    int rc = CLI_OK;
    if (to_gguf && format && !lb_qspec_is_float(&spec)) {
        lb_method_opts opts;
        if (convert_rtn_opts(&opts) != LB_OK) return cli_error("convert", NULL);
        for (int i = 0; i < lb_model_n_tensors(m); i++) {
            const lb_tensor *t = lb_model_tensor_at(m, i);
            lb_qspec fb;
            char to_text[64];
            if (t->rows > 1 && lb_format_ggml_fallback(&spec, t->cols, &fb)) {
                lb_qspec_format(&fb, to_text, sizeof to_text);
                fprintf(stderr, "lowbit convert: warning: %s: rows of %lld weights are not whole blocks of %s: %s "
                        "instead\n", t->name, (long long)t->cols, format, to_text);
            }
        }
        if (lb_model_save_gguf_split(m, out, &spec, convert_quantize, &opts, splitting ? &split : NULL, &n_shards) !=
            LB_OK)
            rc = cli_error("convert", NULL);
    } else if (to_gguf) {
        if (lb_model_save_gguf_split(m, out, format ? &spec : NULL, NULL, NULL, splitting ? &split : NULL,
                                     &n_shards) != LB_OK)
            rc = cli_error("convert", NULL);
    } else if (lb_model_save_safetensors(m, out, format ? &spec : NULL) != LB_OK) {
        rc = cli_error("convert", NULL);
    }
    if (rc == CLI_OK) {
        double seconds = lb_now() - t0;
        if (a.json) {
            json_begin_object();
            json_kstr("input", in);
            json_kstr("input_format", m->source_format);
            json_kstr("output", out);
            if (to_gguf) cli_json_shards(out, splitting, n_shards);
            json_kstr("to", to_gguf ? "gguf" : "safetensors");
            if (format) json_kstr("format", format);
            else {
                json_key("format");
                json_null();
            }
            json_kint("tensors", lb_model_n_tensors(m));
            json_kbool("tokenizer", m->tokenizer != NULL);
            json_knum("seconds", seconds);
            json_kint("peak_rss", lb_peak_rss());
            json_end_object();
            json_done();
        } else {
            char where[4200];
            printf("%s (%s) -> %s (%s%s%s), %d tensors%s, %.2f s, peak RSS %.1f MB\n", in, m->source_format,
                   to_gguf ? cli_shards_text(out, splitting, n_shards, where, sizeof where) : out,
                   to_gguf ? "GGUF" : "safetensors folder", format ? ", " : "", format ? format : "",
                   lb_model_n_tensors(m), m->tokenizer ? " and the tokenizer" : "", seconds, (double)lb_peak_rss() / 1e6);
        }
    }
    lb_model_free(m);
    return rc;
}
