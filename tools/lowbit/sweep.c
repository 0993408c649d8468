/* lowbit sweep: a grid of methods x formats, each configuration quantized
 * through the library's plan (cli_quantize_eval, shared with the demo),
 * written as GGUF to a temporary folder, reloaded and evaluated against the
 * fp32 model; a markdown table, JSON lines and an SVG plot of perplexity
 * ratio against bits per weight with the Pareto front. */
#define _POSIX_C_SOURCE 200809L
#ifndef LB_ADVANCED_API
#define LB_ADVANCED_API /* lb_atomic_* for the output files */
#endif
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "plot.h"

static const char *sweep_help =
    "usage: lowbit sweep MODEL --text FILE [--methods LIST] [--formats LIST] [--grid FILE]\n"
    "                    [--split S] [--protocol P] [--ctx N] [--calib-blocks N] [--max-blocks N]\n"
    "                    [--act LIST] [--sequential] [--trained LIST] [--recipes LIST] [--md FILE] [--svg FILE]\n"
    "                    [--json] [--keep DIR]\n\n"
    "Quantizes the seven linears of every layer of MODEL with every configuration of a grid\n"
    "(methods x formats), saves and reloads each as GGUF, evaluates it against the fp32 model and\n"
    "prints a markdown table: method | format | bpw | file size | ppl | ppl/fp32 | KLD | top-1 |\n"
    "seconds to quantize. One progress line per configuration on stderr.\n\n"
    "  --methods LIST   comma-separated methods, each NAME[:key=value]...[:seq]: 'rtn,rtn:clip=mse,twn'\n"
    "                   (the methods and their options: lowbit quantize --help); ':seq' quantizes\n"
    "                   that method true-sequentially (as --sequential does for all)\n"
    "  --formats LIST   comma-separated format specs: 'int4:g64:asym,nf4:g64,ternary:g64:1.6bit'\n"
    "  --grid FILE      the grid as text, one line per group of configurations, recipe-like:\n"
    "                     FORMAT[,FORMAT...] [method=NAME] [key=value ...] [seq]   # comment\n"
    "                   every format of the line with that method (default rtn) and options\n"
    "                   Default grid (no --grid, --methods, --formats): rtn and rtn:clip=mse over\n"
    "                   int8:g32:sym int4:g64:asym int4:g32:asym nf4:g64 int3:g64:asym int3:g32:asym\n"
    "                   int2:g64:asym int2:g32:asym; rtn and twn over ternary:g64:1.6bit; rtn over\n"
    "                   binary:row (19 configurations). --methods alone crosses them with these ten\n"
    "                   formats; --formats alone with rtn and rtn:clip=mse.\n"
    "  --act LIST       comma-separated activation quantizers, each configuration run with each:\n"
    "                   none, int<b>:token, int<b>:tensor:minmax|p<P>|kl|mse (lowbit quantize --help);\n"
    "                   e.g. --formats q8_0 --act none,int8:token,int8:tensor:kl (W8A8). Static ones\n"
    "                   calibrate on the calibration split, as gptq\n"
    "  --split S        all, calib, eval (default: the evaluation split)\n"
    "  --protocol P     docs (default) or chunks, as lowbit eval\n"
    "  --ctx N          context (docs: default the model's; chunks: default 256)\n"
    "  --calib-blocks N size of the calibration split (default 128)\n"
    "  --max-blocks N   evaluate only the first N blocks of the split (quick looks, tests)\n"
    "  --sequential     every method quantizes true-sequentially: each stage's statistics\n"
    "                   from the partly quantized model (docs/CALIBRATION.md, \"Sequential mode\");\n"
    "                   default: from the fp32 model, collected once for the whole grid\n"
    ;

static const char *sweep_help_recipes =
    "  --recipes LIST   comma-separated recipe files (lowbit plan -o, say), each FILE[:seq]: MODEL\n"
    "                   quantized by the recipe (true-sequentially with :seq), a row of the series\n"
    "                   'recipe' ('recipe seq'), format its file name, \"recipe\": FILE in its JSON line\n"
    "  --trained LIST   comma-separated GGUF files written by lowbit train (fine-tuned, distilled or\n"
    "                   quantization-aware trained models of MODEL's shape): each a row of its own,\n"
    "                   evaluated as stored (no quantization) against MODEL, method 'trained', format\n"
    "                   its linears', \"trained\": true in its JSON line\n"
    "  --md FILE        the markdown table to FILE instead of stdout\n"
    "  --svg FILE       plot: ppl / fp32 ppl (log scale) against bpw, one line per method, the\n"
    "                   Pareto front (no other point with <= bpw and <= ppl, one of them lower)\n"
    "                   dashed and ringed\n"
    "  --json           JSON lines on stdout, one object per configuration: method options label act\n"
    "                   format status bpw bpw_all file_bytes ppl ppl_ratio fp32_ppl kld top1 tokens\n"
    "                   split protocol ctx seconds (to quantize) eval_seconds trained recipe [reason]\n"
    "  --keep DIR       keep the GGUF files in DIR (default: a temporary folder, removed)\n\n"
    "A method that cannot make a format (e.g. twn and int4) is skipped with a note; a configuration\n"
    "that fails is reported and the sweep goes on (exit status 1 at the end). Bad specs, methods or\n"
    "options in the grid are usage errors before any work (exit status 2). Output files are\n"
    "written atomically, after the last configuration.\n";

#define MAX_CONFIGS 512
#define MAX_SERIES 32

/* A method with its options as the grid gives it ("NAME[:key=value][:seq]"). */
typedef struct {
    lb_method_opts opts;
    int sequential; /* ":seq" (or --sequential): true-sequential calibration */
} grid_method;

typedef struct {
    lb_method_opts opts;
    lb_act_quant act;
    int sequential;
    char label[160]; /* "rtn" or "rtn clip=mse", " act=int8:token" when activations are quantized */
} series;

typedef struct {
    lb_qspec spec;
    char spec_text[64];
    int series;
    int status; /* CLI_OK, CLI_SKIP, CLI_FAIL */
    const char *trained; /* a model file from lowbit train, evaluated as stored; NULL: MODEL quantized */
    const char *recipe;  /* a recipe (lowbit plan's, say) quantizing MODEL; NULL: spec by the series' method */
    char reason[1200];
    cli_qeval_row r;
} config;

#define MAX_ACTS 8

typedef struct {
    series s[MAX_SERIES];
    int n_series;
    config c[MAX_CONFIGS];
    int n;
    lb_act_quant acts[MAX_ACTS]; /* --act: every configuration with each (none: just kind LB_AQ_NONE) */
    int n_acts;
} grid;

static int same_act(const lb_act_quant *a, const lb_act_quant *b) {
    char x[64], y[64];
    lb_act_spec_format(a, x, sizeof x);
    lb_act_spec_format(b, y, sizeof y);
    return !strcmp(x, y);
}

/* the series for these options, calibration mode and activation quantizer (added if new) */
static int grid_series(grid *g, const grid_method *gm, const lb_act_quant *act) {
    const lb_method_opts *o = &gm->opts;
    for (int i = 0; i < g->n_series; i++)
        if (lb_method_opts_equal(&g->s[i].opts, o) && g->s[i].sequential == gm->sequential &&
            same_act(&g->s[i].act, act))
            return i;
    if (g->n_series == MAX_SERIES) return cli_usage_error("sweep", "more than %d methods in the grid", MAX_SERIES), -1;
    series *s = &g->s[g->n_series];
    s->opts = *o;
    s->act = *act;
    s->sequential = gm->sequential;
    char text[100], act_text[64] = "";
    lb_method_opts_format(o, 0, text, sizeof text);
    if (act->kind != LB_AQ_NONE) {
        char spec[48];
        lb_act_spec_format(act, spec, sizeof spec);
        snprintf(act_text, sizeof act_text, " act=%s", spec);
    }
    snprintf(s->label, sizeof s->label, "%s%s%s%s%s", o->method->name, text[0] ? " " : "", text,
             gm->sequential ? " seq" : "", act_text);
    return g->n_series++;
}

static int grid_add(grid *g, const char *spec_text, const grid_method *o, const char *where) {
    lb_act_quant none = {0};
    for (int k = 0; k < (g->n_acts ? g->n_acts : 1); k++) {
        if (g->n == MAX_CONFIGS) return cli_usage_error("sweep", "more than %d configurations", MAX_CONFIGS);
        config *c = &g->c[g->n];
        memset(c, 0, sizeof *c);
        if (lb_qspec_parse(spec_text, &c->spec) != LB_OK) return cli_usage_error("sweep", "%s%s", where, lb_last_error());
        lb_qspec_format(&c->spec, c->spec_text, sizeof c->spec_text);
        if ((c->series = grid_series(g, o, g->n_acts ? &g->acts[k] : &none)) < 0) return CLI_USAGE;
        g->n++;
    }
    return CLI_OK;
}

/* --trained FILE: a series of its own ("trained NAME"), one configuration
 * left as stored (format f32: the plan quantizes nothing; the row's format
 * is the file's, read after loading) */
static int add_trained_item(const char *item, void *user) {
    grid *g = user;
    if (g->n == MAX_CONFIGS || g->n_series == MAX_SERIES)
        return cli_usage_error("sweep", "--trained: more than %d models", MAX_SERIES);
    series *se = &g->s[g->n_series];
    memset(se, 0, sizeof *se);
    lb_method_opts_default(lb_method_find("rtn"), &se->opts);
    const char *slash = strrchr(item, '/');
    snprintf(se->label, sizeof se->label, "trained %.140s", slash ? slash + 1 : item);
    config *c = &g->c[g->n];
    memset(c, 0, sizeof *c);
    lb_qspec_parse("f32", &c->spec);
    snprintf(c->spec_text, sizeof c->spec_text, "(as trained)");
    c->series = g->n_series++;
    c->trained = item;
    g->n++;
    return CLI_OK;
}

/* --recipes FILE[:seq]: MODEL quantized by the recipe (true-sequentially with
 * :seq), a row of the series "recipe" (or "recipe seq"); the format column is
 * the file's name */
static int add_recipe_item(const char *item, void *user) {
    grid *g = user;
    size_t n = strlen(item);
    int seq = n > 4 && !strcmp(item + n - 4, ":seq");
    if (seq) ((char *)item)[n - 4] = '\0'; /* the list is the sweep's own copy */
    const char *label = seq ? "recipe seq" : "recipe";
    int k = 0;
    while (k < g->n_series && strcmp(g->s[k].label, label)) k++;
    if (g->n == MAX_CONFIGS || (k == g->n_series && g->n_series == MAX_SERIES))
        return cli_usage_error("sweep", "--recipes: more than %d configurations", MAX_CONFIGS);
    if (k == g->n_series) {
        series *se = &g->s[g->n_series++];
        memset(se, 0, sizeof *se);
        lb_method_opts_default(lb_method_find("rtn"), &se->opts);
        se->sequential = seq;
        snprintf(se->label, sizeof se->label, "%s", label);
    }
    config *c = &g->c[g->n++];
    memset(c, 0, sizeof *c);
    lb_qspec_parse("f32", &c->spec);
    const char *slash = strrchr(item, '/');
    snprintf(c->spec_text, sizeof c->spec_text, "%.63s", slash ? slash + 1 : item);
    c->series = k;
    c->recipe = item;
    return CLI_OK;
}

static int add_act_item(const char *item, void *user) {
    grid *g = user;
    if (g->n_acts == MAX_ACTS) return cli_usage_error("sweep", "--act: more than %d activation quantizers", MAX_ACTS);
    if (lb_act_spec_parse(item, &g->acts[g->n_acts]) != LB_OK) return cli_usage_error("sweep", "--act: %s", lb_last_error());
    g->n_acts++;
    return CLI_OK;
}

/* set by --sequential: every method of the grid quantizes true-sequentially */
static int all_sequential;

/* "NAME[:key=value]...[:seq]" */
static int parse_method(const char *text, grid_method *gm, const char *where) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", text);
    char *save = NULL, *tok = strtok_r(buf, ":", &save);
    const lb_method *m = tok ? lb_method_find(tok) : NULL;
    if (!m) return cli_usage_error("sweep", "%s%s", where, tok ? lb_last_error() : "empty method");
    lb_method_opts_default(m, &gm->opts);
    gm->sequential = all_sequential;
    while ((tok = strtok_r(NULL, ":", &save))) {
        if (!strcmp(tok, "seq")) gm->sequential = 1;
        else if (lb_method_opts_parse(&gm->opts, tok) != LB_OK)
            return cli_usage_error("sweep", "%s%s", where, lb_last_error());
    }
    return CLI_OK;
}

/* items of a comma list, each non-empty */
static int for_each_item(const char *list, const char *opt, int (*fn)(const char *, void *), void *user) {
    char buf[4096];
    if (strlen(list) >= sizeof buf) return cli_usage_error("sweep", "%s: list too long", opt);
    snprintf(buf, sizeof buf, "%s", list);
    char *p = buf;
    for (;;) {
        char *comma = strchr(p, ',');
        if (comma) *comma = 0;
        if (!*p) return cli_usage_error("sweep", "%s: empty entry in '%s'", opt, list);
        int rc = fn(p, user);
        if (rc) return rc;
        if (!comma) return CLI_OK;
        p = comma + 1;
    }
}

typedef struct {
    grid *g;
    grid_method *methods;
    int n_methods;
    const char *where;
} cross;

static int add_method_item(const char *item, void *user) {
    cross *x = user;
    if (x->n_methods == MAX_SERIES) return cli_usage_error("sweep", "more than %d methods", MAX_SERIES);
    return parse_method(item, &x->methods[x->n_methods++], "--methods: ");
}

static int add_format_item(const char *item, void *user) {
    cross *x = user;
    for (int k = 0; k < x->n_methods; k++) {
        int rc = grid_add(x->g, item, &x->methods[k], x->where);
        if (rc) return rc;
    }
    return CLI_OK;
}

static const char *default_grid_formats = "int8:g32:sym,int4:g64:asym,int4:g32:asym,nf4:g64,int3:g64:asym,"
                                          "int3:g32:asym,int2:g64:asym,int2:g32:asym";
static const char *default_formats = "int8:g32:sym,int4:g64:asym,int4:g32:asym,nf4:g64,int3:g64:asym,int3:g32:asym,"
                                     "int2:g64:asym,int2:g32:asym,ternary:g64:1.6bit,binary:row";

static int grid_cross(grid *g, const char *methods, const char *formats) {
    grid_method ms[MAX_SERIES];
    cross x = {g, ms, 0, "--formats: "};
    int rc = for_each_item(methods, "--methods", add_method_item, &x);
    if (!rc) rc = for_each_item(formats, "--formats", add_format_item, &x);
    return rc;
}

/* --grid FILE: "FORMAT[,FORMAT...] [method=NAME] [key=value ...]" per line */
static int grid_load(grid *g, const char *path) {
    char *text;
    size_t size;
    if (lb_read_file(path, &text, &size) != LB_OK) return cli_error("sweep", NULL);
    int rc = CLI_OK, line_no = 0;
    for (char *line = text; rc == CLI_OK && line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        line_no++;
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        char where[600];
        snprintf(where, sizeof where, "%.500s:%d: ", path, line_no);
        char *save = NULL, *formats = strtok_r(line, " \t\r", &save);
        if (formats) {
            char *toks[LB_METHOD_MAX_OPTIONS + 2];
            int n_toks = 0;
            const char *method = "rtn";
            int seq = 0;
            for (char *t; (t = strtok_r(NULL, " \t\r", &save));) {
                if (!strncmp(t, "method=", 7)) method = t + 7;
                else if (!strcmp(t, "seq")) seq = 1;
                else if (n_toks < LB_METHOD_MAX_OPTIONS + 2) toks[n_toks++] = t;
                else rc = cli_usage_error("sweep", "%stoo many options", where);
            }
            grid_method o;
            if (rc == CLI_OK) rc = parse_method(method, &o, where);
            o.sequential |= seq;
            for (int i = 0; rc == CLI_OK && i < n_toks; i++)
                if (lb_method_opts_parse(&o.opts, toks[i]) != LB_OK)
                    rc = cli_usage_error("sweep", "%s%s", where, lb_last_error());
            cross x = {g, &o, 1, where};
            if (rc == CLI_OK) rc = for_each_item(formats, where, add_format_item, &x);
        }
        line = nl ? nl + 1 : NULL;
    }
    lb_free(text);
    if (rc == CLI_OK && g->n == 0) rc = cli_usage_error("sweep", "%s: no configurations", path);
    return rc;
}

static int write_atomic(const char *path, const plot_buf *b) {
    return cli_write_file("sweep", path, b->data, b->len, b->failed);
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

typedef struct {
    const char *model_path, *text_path;
    lb_eval_opts eval;
    int first, end; /* blocks of the split evaluated, [first, end) */
    int ctx;
    double fp32_ppl;
    const char *command;
} sweep_ctx;

static void markdown(plot_buf *b, const sweep_ctx *s, const grid *g) {
    plot_buf_printf(b, "Made by `%s`: model %s, text %s, %s split (blocks %d..%d), %s protocol, ctx %d; "
                       "fp32 perplexity %.4f.\n\n",
                    s->command, s->model_path, s->text_path, lb_split_name(s->eval.split), s->first + 1, s->end,
                    lb_protocol_name(s->eval.protocol), s->ctx, s->fp32_ppl);
    plot_buf_printf(b, "| method | format | bpw | file size | ppl | ppl/fp32 | KLD | top-1 | seconds |\n"
                       "|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < g->n; i++) {
        const config *c = &g->c[i];
        if (c->status != CLI_OK) continue;
        char sz[32];
        plot_buf_printf(b, "| %s | %s | %.3f | %s | %.4f | %.3f | %.5f | %.4f | %.2f |\n", g->s[c->series].label,
                        c->spec_text, c->r.bpw, fmt_thousands(c->r.file_bytes, sz, sizeof sz), c->r.ev.ppl,
                        c->r.ev.ppl / s->fp32_ppl, c->r.ev.kld, c->r.ev.top1, c->r.quant_seconds);
    }
    int notes = 0;
    for (int i = 0; i < g->n; i++) {
        const config *c = &g->c[i];
        if (c->status == CLI_OK) continue;
        if (!notes++) plot_buf_printf(b, "\n");
        plot_buf_printf(b, "- %s: %s %s: %s\n", c->status == CLI_SKIP ? "skipped" : "failed", g->s[c->series].label,
                        c->spec_text, c->reason);
    }
    plot_buf_printf(b, "\nbpw: the quantized linears as stored, every bit counted (codes, scales, zeros, padding, and slots: outlier indices and values, biases, rotation signs, adapters); "
                       "file size: the whole GGUF file; KLD: mean KL(fp32 || quantized) per token, nats; top-1: "
                       "agreement of the two models' next-token argmax; seconds: time to quantize.\n");
}

static void json_line(const sweep_ctx *s, const grid *g, const config *c) {
    const series *se = &g->s[c->series];
    char opts[512];
    lb_method_opts_format(&se->opts, 1, opts, sizeof opts);
    int ok = c->status == CLI_OK;
    json_begin_object();
    json_kstr("method", c->trained ? "trained" : c->recipe ? "recipe" : se->opts.method->name);
    json_kstr("options", c->trained || c->recipe ? "" : opts);
    json_kstr("label", se->label);
    char act_text[64];
    lb_act_spec_format(&se->act, act_text, sizeof act_text);
    json_kstr("act", act_text);
    json_kbool("sequential", se->sequential);
    json_kstr("format", c->spec_text);
    json_kstr("status", ok ? "ok" : c->status == CLI_SKIP ? "skipped" : "failed");
    json_knum("bpw", ok ? c->r.bpw : NAN);
    json_knum("bpw_all", ok ? c->r.bpw_all : NAN);
    if (ok) json_kint("file_bytes", c->r.file_bytes);
    else {
        json_key("file_bytes");
        json_null();
    }
    json_knum("ppl", ok ? c->r.ev.ppl : NAN);
    json_knum("ppl_ratio", ok ? c->r.ev.ppl / s->fp32_ppl : NAN);
    json_knum("fp32_ppl", s->fp32_ppl);
    json_knum("kld", ok ? c->r.ev.kld : NAN);
    json_knum("top1", ok ? c->r.ev.top1 : NAN);
    json_kint("tokens", ok ? c->r.ev.tokens : 0);
    json_kstr("split", lb_split_name(s->eval.split));
    json_kstr("protocol", lb_protocol_name(s->eval.protocol));
    json_kint("ctx", s->ctx);
    json_knum("seconds", ok ? c->r.quant_seconds : NAN);
    json_knum("eval_seconds", ok ? c->r.ev.seconds : NAN);
    json_kbool("trained", c->trained != NULL);
    if (c->trained) json_kstr("file", c->trained);
    if (c->recipe) json_kstr("recipe", c->recipe);
    else {
        json_key("recipe");
        json_null();
    }
    if (!ok) json_kstr("reason", c->reason);
    json_end_object();
    json_done();
}

static int svg(const char *path, const sweep_ctx *s, const grid *g) {
    plot_point *pts = calloc((size_t)g->n + 1, sizeof *pts);
    char(*tips)[256] = calloc((size_t)g->n + 1, sizeof *tips);
    const char *names[MAX_SERIES];
    if (!pts || !tips) {
        free(pts);
        free(tips);
        return cli_error("sweep", "out of memory");
    }
    int n = 0;
    for (int i = 0; i < g->n; i++) {
        const config *c = &g->c[i];
        if (c->status != CLI_OK) continue;
        snprintf(tips[n], sizeof tips[n], "%s %s: %.3f bpw, ppl %.4f (%.3fx fp32), KLD %.4f", g->s[c->series].label,
                 c->spec_text, c->r.bpw, c->r.ev.ppl, c->r.ev.ppl / s->fp32_ppl, c->r.ev.kld);
        pts[n] = (plot_point){c->r.bpw, c->r.ev.ppl / s->fp32_ppl, c->series, c->spec_text, tips[n]};
        n++;
    }
    for (int k = 0; k < g->n_series; k++) names[k] = g->s[k].label;
    char sub[1200];
    snprintf(sub, sizeof sub, "model %.300s, text %.300s, %s split (blocks %d..%d), %s protocol, ctx %d; fp32 ppl %.4f",
             base_name(s->model_path), base_name(s->text_path), lb_split_name(s->eval.split), s->first + 1, s->end,
             lb_protocol_name(s->eval.protocol), s->ctx, s->fp32_ppl);
    plot_opts o = {.title = "Perplexity relative to fp32 against bits per weight",
                   .subtitle = sub,
                   .xlabel = "bits per weight of the quantized linears (every stored bit)",
                   .ylabel = "perplexity / fp32 perplexity (log scale)",
                   .series = names,
                   .n_series = g->n_series,
                   .reference_y = 1,
                   .reference_label = "fp32"};
    plot_buf b = {0};
    plot_svg(&b, pts, n, &o);
    int rc = write_atomic(path, &b);
    plot_buf_free(&b);
    free(pts);
    free(tips);
    return rc;
}

static int default_grid(grid *g, const char *methods, const char *formats) {
    if (methods || formats) return grid_cross(g, methods ? methods : "rtn,rtn:clip=mse", formats ? formats : default_formats);
    /* clip rules apply to grids of levels: binary and ternary rows take rtn's own
     * scale rule, and twn's threshold rule besides */
    int rc = grid_cross(g, "rtn,rtn:clip=mse", default_grid_formats);
    if (!rc) rc = grid_cross(g, "rtn,twn", "ternary:g64:1.6bit");
    if (!rc) rc = grid_cross(g, "rtn", "binary:row");
    return rc;
}

int cmd_sweep(int argc, char **argv) {
    cli_args a = {.argc = argc, .argv = argv, .i = 1, .verb = "sweep"};
    const char *text_path = NULL, *methods = NULL, *formats = NULL, *grid_path = NULL, *split = "eval", *protocol = "docs",
               *ctx = NULL, *calib = "128", *max_blocks = NULL, *md_path = NULL, *svg_path = NULL, *keep = NULL,
               *acts = NULL, *trained = NULL, *recipes = NULL;
    int sequential = 0;
    while (a.i < argc) {
        int r;
        if ((r = cli_option(&a, "--text", NULL, &text_path)) || (r = cli_option(&a, "--methods", NULL, &methods)) ||
            (r = cli_option(&a, "--formats", NULL, &formats)) || (r = cli_option(&a, "--grid", NULL, &grid_path)) ||
            (r = cli_option(&a, "--split", NULL, &split)) || (r = cli_option(&a, "--protocol", NULL, &protocol)) ||
            (r = cli_option(&a, "--ctx", NULL, &ctx)) || (r = cli_option(&a, "--calib-blocks", NULL, &calib)) ||
            (r = cli_option(&a, "--max-blocks", NULL, &max_blocks)) || (r = cli_option(&a, "--md", NULL, &md_path)) ||
            (r = cli_option(&a, "--svg", NULL, &svg_path)) || (r = cli_option(&a, "--keep", NULL, &keep)) ||
            (r = cli_option(&a, "--act", NULL, &acts)) || (r = cli_option(&a, "--trained", NULL, &trained)) ||
            (r = cli_option(&a, "--recipes", NULL, &recipes))) {
            if (r < 0) return CLI_USAGE;
            continue;
        }
        if (cli_flag(&a, "--sequential")) {
            sequential = 1;
            continue;
        }
        if ((r = cli_unknown(&a)) != 0) return r;
    }
    if (a.help) {
        char list[512];
        lb_method_list(list, sizeof list);
        fputs(sweep_help, stdout);
        fputs(sweep_help_recipes, stdout);
        printf("\nMethods in this build: %s.\n", list);
        return CLI_OK;
    }
    if (a.n_positional != 1) return cli_usage_error("sweep", "expected one MODEL");
    if (!text_path) return cli_usage_error("sweep", "missing --text FILE");
    if (grid_path && (methods || formats)) return cli_usage_error("sweep", "--grid replaces --methods and --formats: give one or the other");
    sweep_ctx s = {.model_path = a.positional[0], .text_path = text_path};
    long v;
    if (lb_protocol_parse(protocol, &s.eval.protocol) != LB_OK || lb_split_parse(split, &s.eval.split) != LB_OK)
        return cli_usage_error("sweep", "%s", lb_last_error());
    if (ctx) {
        if (cli_parse_int("sweep", "--ctx", ctx, 2, 1 << 22, &v)) return CLI_USAGE;
        s.eval.ctx = (int)v;
    }
    if (cli_parse_int("sweep", "--calib-blocks", calib, 1, 1 << 30, &v)) return CLI_USAGE;
    s.eval.calib_blocks = (int)v;
    long max_b = 0;
    if (max_blocks && cli_parse_int("sweep", "--max-blocks", max_blocks, 1, 1 << 30, &max_b)) return CLI_USAGE;
    grid *g = calloc(1, sizeof *g);
    if (!g) return cli_error("sweep", "out of memory");
    all_sequential = sequential;
    int rc = acts ? for_each_item(acts, "--act", add_act_item, g) : CLI_OK;
    /* --trained or --recipes alone: just those rows; with --methods/--formats/--grid: both */
    if (rc == CLI_OK && ((!trained && !recipes) || grid_path || methods || formats))
        rc = grid_path ? grid_load(g, grid_path) : default_grid(g, methods, formats);
    char *trained_list = NULL; /* the rows point at their file names in it: it lives as long as the grid */
    if (rc == CLI_OK && trained) {
        trained_list = strdup(trained);
        if (!trained_list) rc = cli_error("sweep", "out of memory");
    }
    if (rc == CLI_OK && trained) {
        for (char *p = trained_list, *save = NULL, *item; rc == CLI_OK && (item = strtok_r(p, ",", &save)); p = NULL)
            rc = add_trained_item(item, g);
    }
    char *recipe_list = recipes ? strdup(recipes) : NULL; /* as trained_list */
    if (rc == CLI_OK && recipes && !recipe_list) rc = cli_error("sweep", "out of memory");
    for (char *p = recipe_list, *save = NULL, *item; rc == CLI_OK && recipe_list && (item = strtok_r(p, ",", &save));
         p = NULL)
        rc = add_recipe_item(item, g);
    const char *inputs[3] = {a.positional[0], text_path, grid_path};
    if (rc == CLI_OK && md_path && lb_output_check(md_path, inputs, 3) != LB_OK) rc = cli_error("sweep", NULL);
    if (rc == CLI_OK && svg_path && lb_output_check(svg_path, inputs, 3) != LB_OK) rc = cli_error("sweep", NULL);
    if (rc != CLI_OK) {
        free(g);
        free(trained_list);
        free(recipe_list);
        return rc;
    }
    /* the command, for the table's header */
    char command[2048];
    size_t k = (size_t)snprintf(command, sizeof command, "lowbit sweep");
    for (int i = 1; i < argc && k < sizeof command; i++)
        k += (size_t)snprintf(command + k, sizeof command - k, " %s", argv[i]);
    s.command = command;

    char dir[4096];
    if (keep) {
        if (mkdir(keep, 0755) != 0 && access(keep, W_OK) != 0) {
            free(g);
            free(trained_list);
        free(recipe_list);
            return cli_error("sweep", "cannot create directory '%s'", keep);
        }
        snprintf(dir, sizeof dir, "%s", keep);
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/lowbit-sweep-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(dir)) {
            free(g);
            free(trained_list);
        free(recipe_list);
            return cli_error("sweep", "cannot create a temporary directory in %s", tmp && *tmp ? tmp : "/tmp");
        }
    }
    double t0 = lb_now();
    lb_text text;
    lb_model *ref = NULL;
    int text_loaded = lb_text_load(text_path, &text) == LB_OK;
    if (!text_loaded) rc = cli_error("sweep", NULL);
    if (rc == CLI_OK) rc = cli_load_model("sweep", s.model_path, NULL, &ref);
    lb_text view; /* the split, cut to --max-blocks */
    if (rc == CLI_OK && lb_text_split(&text, s.eval.split, s.eval.calib_blocks, &s.first, &s.end) != LB_OK)
        rc = cli_error("sweep", NULL);
    if (rc == CLI_OK) {
        view = text;
        if (max_b && s.end - s.first > max_b) s.end = s.first + (int)max_b;
        view.n_blocks = s.end;
    }
    int n_ok = 0, n_failed = 0, n_skipped = 0;
    cli_qeval q = {.model_path = s.model_path, .tensors = "linears", .text = &view, .eval = s.eval};
    q.eval.ref = ref;
    /* methods that need statistics (gptq) get them from the fp32 model over
     * the same text's calibration split, collected once for the whole grid:
     * never from the blocks being evaluated */
    lb_calib_stats *stats = NULL;
    lb_calib_opts seq_calib;
    unsigned need = 0, need_seq = 0; /* of the parallel series; of the sequential ones */
    for (int i = 0; i < g->n_series; i++) {
        unsigned n = lb_method_opts_stats(&g->s[i].opts);
        if (g->s[i].act.kind == LB_AQ_TENSOR) n |= LB_STATS_HIST_X | LB_STATS_MAX_ABS_X;
        if (rc == CLI_OK && (n & LB_STATS_DXTX) && !g->s[i].sequential)
            rc = cli_usage_error("sweep", "method %s compares the fp32 and the partly quantized model's inputs: it "
                                 "needs true-sequential calibration (':seq' after its options, or --sequential)",
                                 g->s[i].opts.method->name);
        *(g->s[i].sequential ? &need_seq : &need) |= n;
    }
    for (int i = 0; rc == CLI_OK && i < g->n; i++) { /* a recipe's methods, as resolved on MODEL */
        const config *c = &g->c[i];
        if (!c->recipe) continue;
        lb_plan rp;
        lb_plan_init(&rp);
        if (lb_plan_load_recipe(&rp, c->recipe) != LB_OK || lb_plan_resolve(&rp, ref) != LB_OK)
            rc = cli_usage_error("sweep", "--recipes: %s", lb_last_error());
        unsigned n = rc == CLI_OK ? lb_plan_stats_needed(&rp) : 0;
        if (rc == CLI_OK && (n & LB_STATS_DXTX) && !g->s[c->series].sequential)
            rc = cli_usage_error("sweep", "recipe %s has gptaq rules: they need ':seq' after the file name", c->recipe);
        *(g->s[c->series].sequential ? &need_seq : &need) |= n;
        lb_plan_free(&rp);
    }
    if (rc == CLI_OK && (need | need_seq) && s.eval.split != LB_SPLIT_EVAL)
        rc = cli_usage_error("sweep", "calibrated methods need --split eval (they calibrate on the calibration split)");
    /* the fp32 model itself: the denominator of every ratio (after the checks
     * above, so that a bad grid fails at once, not after an evaluation) */
    lb_eval_result base;
    if (rc == CLI_OK && lb_evaluate(ref, &view, &s.eval, &base) != LB_OK) rc = cli_error("sweep", NULL);
    if (rc == CLI_OK) {
        s.fp32_ppl = base.ppl;
        s.ctx = base.ctx;
        fprintf(stderr, "lowbit sweep: %d configurations; fp32 ppl %.4f on %s (%s split, blocks %d..%d, %s, ctx %d)\n", g->n,
                base.ppl, text_path, lb_split_name(s.eval.split), s.first + 1, s.end, lb_protocol_name(s.eval.protocol),
                s.ctx);
    }
    lb_calib_opts_default(&seq_calib);
    seq_calib.text = &text;
    seq_calib.calib_blocks = s.eval.calib_blocks;
    /* parallel series share statistics of the fp32 model, collected once;
     * each sequential configuration calibrates its own partly quantized model */
    if (rc == CLI_OK && need && lb_calibrate(ref, &seq_calib, &stats) != LB_OK) rc = cli_error("sweep", NULL);
    q.stats = stats;
    for (int i = 0; rc == CLI_OK && i < g->n; i++) {
        config *c = &g->c[i];
        const char *label = g->s[c->series].label;
        char path[4400], stem[200];
        snprintf(stem, sizeof stem, "sweep-%03d-%.150s", i + 1, label);
        cli_gguf_path(dir, stem, c->spec_text, path, sizeof path);
        q.act = g->s[c->series].act;
        q.sequential = g->s[c->series].sequential ? &seq_calib : NULL;
        q.model_path = c->trained ? c->trained : s.model_path;
        q.recipe = c->recipe;
        lb_model *kept = NULL;
        c->status = cli_quantize_eval(&q, &c->spec, &g->s[c->series].opts, path, &c->r, c->trained ? &kept : NULL,
                                      c->reason, sizeof c->reason);
        if (kept) { /* the trained file's format: its first linear's (the plan left it as stored) */
            if (kept->cfg.dim != ref->cfg.dim || kept->cfg.n_layers != ref->cfg.n_layers ||
                kept->cfg.vocab_size != ref->cfg.vocab_size) {
                c->status = CLI_FAIL;
                snprintf(c->reason, sizeof c->reason, "%s is not a model of %s's shape", c->trained, s.model_path);
            }
            lb_qspec_format(&kept->layers[0].linear[0].w.spec, c->spec_text, sizeof c->spec_text);
            lb_model_free(kept);
        }
        if (!keep) remove(path);
        if (c->status == CLI_OK) {
            n_ok++;
            fprintf(stderr, "[%d/%d] %-16s %-22s %6.3f bpw  ppl %9.4f (%7.3fx)  KLD %.5f  top-1 %.4f  %.2fs + eval %.2fs\n",
                    i + 1, g->n, label, c->spec_text, c->r.bpw, c->r.ev.ppl, c->r.ev.ppl / s.fp32_ppl, c->r.ev.kld,
                    c->r.ev.top1, c->r.quant_seconds, c->r.ev.seconds);
        } else {
            c->status == CLI_SKIP ? n_skipped++ : n_failed++;
            fprintf(stderr, "[%d/%d] %-16s %-22s %s: %s\n", i + 1, g->n, label, c->spec_text,
                    c->status == CLI_SKIP ? "SKIPPED" : "FAILED", c->reason);
        }
        if (a.json) json_line(&s, g, c);
    }
    if (rc == CLI_OK) {
        plot_buf md = {0};
        markdown(&md, &s, g);
        if (md_path) rc = write_atomic(md_path, &md);
        else if (!a.json) fputs(md.data ? md.data : "", stdout);
        plot_buf_free(&md);
    }
    if (rc == CLI_OK && svg_path) rc = svg(svg_path, &s, g);
    if (rc == CLI_OK)
        fprintf(stderr, "lowbit sweep: %d evaluated, %d skipped, %d failed, %.1fs\n", n_ok, n_skipped, n_failed, lb_now() - t0);
    if (rc == CLI_OK && n_failed) rc = CLI_FAIL;
    if (!keep) rmdir(dir);
    free(trained_list);
        free(recipe_list);
    lb_calib_stats_free(stats);
    lb_model_free(ref);
    if (text_loaded) lb_text_free(&text);
    free(g);
    return rc;
}
