/* lowbit quantize: quantize a model's tensors by a plan and save one GGUF
 * file. The plan (which tensor gets which format, method and options) and
 * the whole-model driver are library code (lowbit/pipeline.h); this verb
 * turns flags into rules and reports. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

static const char *quantize_help_head =
    "usage: lowbit quantize MODEL -o OUT --format SPEC [--method NAME] [--clip RULE] [--tensors LIST]\n"
    "                       [--tensor-type PATTERN=SPEC[,method=NAME][,key=value]...]... [--recipe FILE]\n"
    "                       [--save-recipe FILE] [--dry-run] [--calib TEXT] [--calib-blocks N] [--stats FILE]\n"
    "                       [--imatrix FILE]\n"
    "                       [--outliers FRACTION] [--outlier-rule RULE] [--bias-correct] [--rotate]\n"
    "                       [--rotate-seed N] [--act SPEC]\n"
    "                       [--sequential] [--refine autoround|lwc|2dquant|blockap[:OPTS]] [--report FILE.json]\n"
    "                       [--resume] [--stop-after N]\n\n"
    "Quantizes the selected tensors of MODEL (llama2.c or GGUF) and writes OUT, one GGUF file,\n"
    "atomically (nothing is left behind on failure).\n\n"
    "  -o, --output OUT   the GGUF file to write\n"
    "  --format SPEC      int<b>[:g<G>|:row][:sym|:asym][:zint]   b = 1..8 bits, G = 16..256 (default g64:asym)\n"
    "                     int<b>:g<G>[:sym|:asym]:s<k>[:r<N>]     hierarchical: group scale (and min) as k-bit\n"
    "                                                              integers (k = 2..8) x fp16 super-scales per N rows\n"
    "                     nf4[:g<G>][:dq]                          NormalFloat4, dq = 8-bit absmax\n"
    "                     binary[:g<G>|:row|:tensor]               sign(w) x mean|w|\n"
    "                     ternary[:g<G>|:row|:tensor][:2bit|:1.6bit]   {-1,0,1} x alpha (rtn: absmean; --method twn)\n"
    "                     pow2[:3|:4|:5][:g<G>|:row]               0 or +-2^-k x absmax (default 4 bits, g64)\n"
    "                     trellis<k>[:L<L>][:g<G>|:row|:tensor][:down]  QTIP bitshift trellis, k = 1..4 bits per\n"
    "                                                              weight, L-bit state (default 12), Viterbi-encoded;\n"
    "                                                              down: sequences run down the columns (for gptq);\n"
    "                                                              :s<b> b-bit log scales; :v2 two weights per step,\n"
    "                                                              k = 1..6 bits per step: k/2 bpw (trellis1:v2 0.5)\n"
    "                     lut<b>[:row|:g<G>|:tensor]               b = 1..4 bits: a free codebook of 2^b fp16 levels\n"
    "                                                              per group (default row), placed by k-means (rtn) or\n"
    "                                                              sensitivity-weighted k-means (--method squeezellm)\n"
    "                     onebit                                   OneBit: h_row x sign(w) x g_col, fp16 h and g (rtn: SVID;\n"
    "                                                              --method onebit: least squares on calibration data)\n"
    "                     ptq161[:s<p>]                            PTQ1.61: p% of the input channels (default 20) at\n"
    "                                                              int4, the rest binary; a column mask per tensor\n"
    "                     billm[:g<G>|:row]                        BiLLM: salient columns residual-binary, the rest\n"
    "                                                              binary in two groups; 2 bits per weight (g128)\n"
    "                     littlebit:r<R>                            W ~ diag(h) U diag(l) V^T diag(g): rank-R sign\n"
    "                                                              factors, fp16 h, g, l (R = 1..1024; sub-1-bit\n"
    "                                                              when R < rows cols / (rows + cols))\n"
    "                     f32, f16, bf16; ggml names q8_0, q4_0, q4_1, q5_0, q5_1\n"
    "                     q2_k..q6_k, iq4_nl, iq4_xs, tq1_0, tq2_0 llama.cpp's types, byte for byte;\n"
    "                                                              rows not whole 256-blocks fall back (warned)\n"
    "                     (see docs/FORMATS.md for layouts and bits per weight)\n"
    "  --method NAME      how weights become codes (default rtn); the methods and their options:\n";

static const char *quantize_help_tail =
    "  --clip RULE        the method's clip option (rtn: minmax, mse, aciq, aciq-gauss)\n"
    "  --outliers FRACTION  keep this fraction of each linear's weights (e.g. 0.005) exactly, in a\n"
    "                     sparse fp16 part beside the dense code (the option outliers=, any method)\n"
    "  --outlier-rule RULE  which weights: magnitude (default), sensitivity (needs X^T X: calibrates),\n"
    "                     channel (whole input columns by calibration max|x|)\n"
    "  --bias-correct     add (W - Q(W)) E[x] to each linear's bias (calibration mean; bias_correct=1)\n"
    "  --rotate           incoherence processing (rotate=hadamard, any method): quantize R_o W R_i^T,\n"
    "                     R = random-sign Hadamard transforms (x DCT for widths 2^k m, m odd <= 255);\n"
    "                     the linear rotates its input and output back at inference (docs/methods/rotate.md)\n"
    "  --rotate-seed N    seed of the rotations' signs (rotate_seed=, default 1)\n"
    "  --tensors LIST     what --format applies to, comma-separated: linears (default: the seven\n"
    "                     linears of every layer), embeddings, output, all, or glob patterns over\n"
    "                     tensor names (e.g. 'blk.*.ffn_down.weight'); norms always stay f32\n"
    "  --tensor-type PATTERN=SPEC[,method=NAME][,key=value]...\n"
    "                     an override rule (repeatable): tensors matching PATTERN get SPEC, with\n"
    "                     --method/--clip unless it names its own; e.g. 'blk.0.*=int8,clip=mse'\n"
    "  --recipe FILE      rules from a recipe file (docs/RECIPES.md); --format is then optional\n"
    "  --save-recipe FILE write the resolved plan (one line per tensor) as a recipe\n"
    "  --dry-run          print the resolved plan (with --json: an array of {tensor, spec, method,\n"
    "                     options, bpw}) and write no model\n"
    "  --calib TEXT       calibration text for methods that need statistics (gptq): its calibration\n"
    "                     split, never the evaluation split (default ../shared/data/text/tinystories-sample.txt).\n"
    "                     In one process and not --sequential, the statistics go to a temporary file beside\n"
    "                     OUT (as large as `lowbit calibrate` writes; removed at the end), read a layer at a time\n"
    "  --calib-blocks N   the calibration split is the first N blocks (default 128)\n"
    "  --stats FILE       statistics saved by `lowbit calibrate` instead of calibrating here\n"
    "  --imatrix FILE     llama.cpp's importance matrix (llama-imatrix's GGUF or legacy .dat) as the\n"
    "                     statistics: X^T X's diagonal only (gptq = rtn weighted per input)\n"
    "  --act SPEC         also quantize the input of every linear (simulated: quantize-dequantize, then\n"
    "                     the weight's kernel), symmetric int, b = 4..8 (docs/methods/act.md):\n"
    "                       int<b>:token         dynamic, one scale per token (row): absmax / (2^(b-1)-1)\n"
    "                       int<b>:tensor:RULE   static, one clip per linear from calibration statistics\n"
    "                                            (--calib/--stats as gptq); RULE minmax, p<P> (percentile\n"
    "                                            of |x|, e.g. p99.9, p99.99), kl (TensorRT entropy), mse\n"
    "                     e.g. W8A8: --format q8_0 --act int8:token\n"
    "  --sequential       true-sequential calibration: layer by layer, in the stages {q,k,v}, o,\n"
    "                     {gate,up}, down, each stage's statistics come from the model with the\n"
    "                     earlier stages already quantized (GPTQ's true-sequential; see\n"
    "                     docs/CALIBRATION.md). Not with --stats (saved statistics are the fp32 model's)\n"
    ;

static const char *quantize_help_refine =
    "  --refine KIND[:steps=N,lr=X,batch=N,seed=N,target=local|fp]\n"
    "                     block-wise reconstruction after each layer's stages (implies --sequential):\n"
    "                     the layer's uniform-format linears are learned together against the fp32\n"
    "                     layer's output on the same inputs. KIND: autoround (rounding offsets + min/max\n"
    "                     factors, signed SGD, starts from --method's codes), lwc (OmniQuant clipping),\n"
    "                     2dquant (DOBI bounds, then distillation), blockap (EfficientQAT's Block-AP:\n"
    "                     the weights trained with the grid, Adam; wlr=X their rate in grid steps,\n"
    "                     default 5e-3; phase 2: lowbit train --qat e2eqp). target: the fp32 block on\n"
    "                     the quantized inputs (local, default) or the fp32 model's block outputs (fp,\n"
    "                     blockap's default);\n"
    "                     docs/methods/autoround.md\n"
    "  --report FILE      per-tensor report as JSON, written atomically: format, method, options,\n"
    "                     bpw, relative weight error, proxy loss tr(dW H dW^T)/n of the method and of\n"
    "                     rtn on the same H (when statistics exist), damping, dead inputs, seconds\n"
    CLI_SPLIT_HELP
    "  --resume           continue an interrupted run from its journal OUT.partial: each finished tensor\n"
    "                     is journaled there (flushed to disk) while the run goes, and removed once OUT\n"
    "                     is written; the same command with --resume takes the journaled tensors and\n"
    "                     writes the same bytes as a run never interrupted. A journal of another run\n"
    "                     (other model, plan, options, statistics or lowbit version) is refused, naming\n"
    "                     what differs; without --resume an existing journal is refused too, not used\n"
    "                     or overwritten. --sequential / --refine: the later layers' statistics are\n"
    "                     computed again through the journaled quantized layers (block reconstruction\n"
    "                     of a journaled layer is run again)\n"
    "  --stop-after N     stop once N tensors are journaled, as an interruption would (exit code 3, no\n"
    "                     OUT): for testing --resume\n"
    "  --tokenizer FILE   llama2.c tokenizer to embed (default: tok<vocab>.bin beside MODEL)\n"
    "  --json             one JSON object on stdout (\"shards\": the files written; \"streamed\": each tensor\n"
    "                     quantized while the file was written, not the whole model held; \"peak_rss\")\n\n"
    "Rules apply in order, the last match winning: --format over --tensors, then the recipe's\n"
    "lines, then each --tensor-type.\n";

static void print_help(void) {
    fputs(quantize_help_head, stdout);
    for (int i = 0; i < lb_method_count(); i++) {
        const lb_method *m = lb_method_at(i);
        printf("                       %-6s %s\n", m->name, m->summary);
        for (int k = 0; k < m->n_options; k++)
            printf("                         %s=%s  %s\n", m->options[k].name, m->options[k].def, m->options[k].help);
    }
    printf("                       every method also takes:\n");
    for (int k = 0; k < lb_method_common_count(); k++) {
        const lb_method_option *o = lb_method_common_at(k);
        printf("                         %s=%s  %s\n", o->name, o->def, o->help);
    }
    fputs(quantize_help_tail, stdout);
    fputs(quantize_help_refine, stdout);
}

#define MAX_TENSOR_TYPES 64

/* The plan from the flags; usage errors print and return CLI_USAGE. */
static int build_plan(lb_plan *plan, const char *format, const char *method, const char *clip, const char *tensors,
                      const char **types, int n_types, const char *recipe, const char *const *common,
                      lb_method_opts *base, lb_qspec *spec) {
    const lb_method *m = lb_method_find(method);
    if (!m) return cli_usage_error("quantize", "%s", lb_last_error());
    lb_method_opts_default(m, base);
    if (clip && lb_method_opts_set(base, "clip", clip) != LB_OK) return cli_usage_error("quantize", "%s", lb_last_error());
    /* --outliers, --outlier-rule, --bias-correct, --rotate, --rotate-seed: the
     * common options, common[k] the value of the table's option k */
    for (int k = 0; k < LB_METHOD_COMMON_OPTIONS; k++)
        if (common[k] && lb_method_opts_set(base, lb_method_common_at(k)->name, common[k]) != LB_OK)
            return cli_usage_error("quantize", "%s", lb_last_error());
    if (format) {
        if (lb_qspec_parse(format, spec) != LB_OK) return cli_usage_error("quantize", "%s", lb_last_error());
        if (lb_plan_add_selection(plan, tensors ? tensors : "linears", spec, base) != LB_OK)
            return cli_usage_error("quantize", "--tensors: %s", lb_last_error());
    }
    if (recipe && lb_plan_load_recipe(plan, recipe) != LB_OK) return cli_error("quantize", NULL);
    for (int i = 0; i < n_types; i++)
        if (lb_plan_add_override(plan, types[i], base) != LB_OK) return cli_usage_error("quantize", "%s", lb_last_error());
    return CLI_OK;
}

static void print_plan(lb_model *m, const lb_plan *plan, int json) {
    if (json) json_begin_array();
    else printf("%-32s %-28s %-6s %-44s %8s\n", "tensor", "spec", "method", "options", "bpw");
    for (int i = 0; i < plan->n_entries; i++) {
        const lb_plan_entry *e = &plan->entries[i];
        const lb_tensor *t = lb_model_tensor_at(m, e->tensor);
        char spec[64], opts[512];
        lb_qspec_format(&e->spec, spec, sizeof spec);
        lb_method_opts_format(&e->opts, 1, opts, sizeof opts);
        double bpw = lb_format_bpw(&e->spec, t->rows, t->cols);
        if (json) {
            json_begin_object();
            json_kstr("tensor", e->name);
            json_kstr("spec", spec);
            if (!lb_qspec_equal(&e->spec, &e->asked)) {
                char asked[64];
                lb_qspec_format(&e->asked, asked, sizeof asked);
                json_kstr("fallback_from", asked);
            }
            json_kstr("method", e->opts.method->name);
            json_kstr("options", opts);
            json_knum("bpw", bpw);
            json_end_object();
        } else {
            printf("%-32s %-28s %-6s %-44s %8.4f\n", e->name, spec, e->opts.method->name, opts, bpw);
        }
    }
    if (json) {
        json_end_array();
        json_done();
    }
}

/* One process's built-in calibration (docs/SCALING.md, "Streaming"): the
 * statistics written layer by layer into a temporary file beside OUT
 * (lb_calibrate_to_file: lb_calibrate_layered's values, one layer's X^T X
 * in memory at a time), then read from it a layer at a time as --stats
 * reads a file (lb_calib_stats_open). The file is removed once mapped (the
 * mapping keeps its data until the statistics are freed), so nothing stays
 * behind however the run ends; the atomic writer removes its own temporary
 * if calibration fails or is interrupted. Costs the statistics' size on
 * OUT's disk while it runs, instead of in memory. */
static lb_status calibrate_beside(const lb_model *m, const lb_calib_opts *o, const char *out, lb_calib_stats **stats) {
    char path[4200];
    snprintf(path, sizeof path, "%.4000s.calib.%ld", out, (long)getpid());
    lb_calib_stats *summary = NULL;
    lb_status st = lb_calibrate_to_file(m, o, path, &summary);
    lb_calib_stats_free(summary); /* every part but X^T X: for printing, not needed here */
    if (st == LB_OK) {
        st = lb_calib_stats_open(path, m, stats);
        remove(path);
    }
    if (st != LB_OK) return lb_fail_context(st, "calibrating (the statistics go to a temporary file beside -o)");
    return LB_OK;
}

int cmd_quantize(int argc, char **argv) {
    cli_args a = {.argc = argc, .argv = argv, .i = 1, .verb = "quantize"};
    const char *out = NULL, *format = NULL, *method = "rtn", *clip = NULL, *tokenizer = NULL, *tensors = NULL;
    const char *recipe = NULL, *save_recipe = NULL, *types[MAX_TENSOR_TYPES];
    const char *calib_text = NULL, *calib_blocks = NULL, *stats_path = NULL, *act = NULL, *report_path = NULL,
               *imatrix = NULL;
    const char *refine = NULL, *split_size = NULL, *split_tensors = NULL, *stop_after = NULL;
    /* the common options in the table's order (lb_method_common_at) */
    const char *common[LB_METHOD_COMMON_OPTIONS] = {NULL};
    enum { C_OUTLIERS, C_OUTLIER_RULE, C_BIAS_CORRECT, C_ROTATE, C_ROTATE_SEED };
    int n_types = 0, dry_run = 0, sequential = 0, resume = 0;
    while (a.i < argc) {
        int r;
        const char *type = NULL;
        if ((r = cli_option(&a, "--output", "-o", &out)) || (r = cli_option(&a, "--format", "-f", &format)) ||
            (r = cli_option(&a, "--method", NULL, &method)) || (r = cli_option(&a, "--clip", NULL, &clip)) ||
            (r = cli_option(&a, "--tensors", NULL, &tensors)) || (r = cli_option(&a, "--recipe", NULL, &recipe)) ||
            (r = cli_option(&a, "--save-recipe", NULL, &save_recipe)) ||
            (r = cli_option(&a, "--tokenizer", NULL, &tokenizer)) || (r = cli_option(&a, "--calib", NULL, &calib_text)) ||
            (r = cli_option(&a, "--calib-blocks", NULL, &calib_blocks)) || (r = cli_option(&a, "--stats", NULL, &stats_path)) ||
            (r = cli_option(&a, "--imatrix", NULL, &imatrix)) ||
            (r = cli_option(&a, "--outliers", NULL, &common[C_OUTLIERS])) ||
            (r = cli_option(&a, "--outlier-rule", NULL, &common[C_OUTLIER_RULE])) || (r = cli_option(&a, "--act", NULL, &act)) ||
            (r = cli_option(&a, "--rotate-seed", NULL, &common[C_ROTATE_SEED])) ||
            (r = cli_option(&a, "--report", NULL, &report_path)) || (r = cli_option(&a, "--refine", NULL, &refine)) ||
            (r = cli_option(&a, "--split-max-size", NULL, &split_size)) ||
            (r = cli_option(&a, "--split-max-tensors", NULL, &split_tensors)) ||
            (r = cli_option(&a, "--stop-after", NULL, &stop_after))) {
            if (r < 0) return CLI_USAGE;
            continue;
        }
        if ((r = cli_option(&a, "--tensor-type", NULL, &type))) {
            if (r < 0) return CLI_USAGE;
            if (n_types == MAX_TENSOR_TYPES) return cli_usage_error("quantize", "more than %d --tensor-type rules", MAX_TENSOR_TYPES);
            types[n_types++] = type;
            continue;
        }
        if (cli_flag(&a, "--dry-run")) {
            dry_run = 1;
            continue;
        }
        if (cli_flag(&a, "--bias-correct")) {
            common[C_BIAS_CORRECT] = "1";
            continue;
        }
        if (cli_flag(&a, "--rotate")) {
            common[C_ROTATE] = "hadamard";
            continue;
        }
        if (cli_flag(&a, "--resume")) {
            resume = 1;
            continue;
        }
        if (cli_flag(&a, "--sequential")) {
            sequential = 1;
            continue;
        }
        if ((r = cli_unknown(&a)) != 0) return r;
    }
    if (a.help) {
        print_help();
        return CLI_OK;
    }
    if (a.n_positional != 1) return cli_usage_error("quantize", "expected one MODEL");
    if (!out && !dry_run) return cli_usage_error("quantize", "missing -o OUT");
    if (!format && !recipe) return cli_usage_error("quantize", "missing --format SPEC (or --recipe FILE)");
    if (tensors && !format) return cli_usage_error("quantize", "--tensors selects what --format applies to: give --format");
    /* saved statistics: lowbit's (--stats) or llama.cpp's importance matrix (--imatrix) */
    if (stats_path && imatrix) return cli_usage_error("quantize", "--stats and --imatrix both give statistics: one of them");
    const char *saved = stats_path ? "--stats" : imatrix ? "--imatrix" : NULL;
    if (saved && (calib_text || calib_blocks))
        return cli_usage_error("quantize", "%s gives saved statistics: --calib/--calib-blocks would not be used", saved);
    if (refine) sequential = 1; /* block reconstruction runs in the sequential driver */
    if (saved && sequential)
        return cli_usage_error("quantize", "--sequential calibrates the partly quantized model as it goes: saved "
                               "%s (the fp32 model's) cannot be used", saved);
    if ((resume || stop_after) && dry_run) return cli_usage_error("quantize", "--dry-run writes nothing: no --resume or --stop-after");
    if (report_path && dry_run) return cli_usage_error("quantize", "--dry-run quantizes nothing: no --report");
    lb_gguf_split_opts split;
    int splitting, n_shards = 0;
    if (cli_split_opts("quantize", split_size, split_tensors, &split, &splitting)) return CLI_USAGE;
    lb_calib_opts copts;
    lb_calib_opts_default(&copts);
    if (calib_blocks) {
        long v;
        if (cli_parse_int("quantize", "--calib-blocks", calib_blocks, 1, 1 << 30, &v)) return CLI_USAGE;
        copts.calib_blocks = (int)v;
    }
    char calib_buf[4096];
    copts.text_path = calib_text ? calib_text : cli_data_path("text/tinystories-sample.txt", calib_buf, sizeof calib_buf);
    lb_plan plan;
    lb_plan_init(&plan);
    lb_method_opts base;
    lb_qspec spec;
    memset(&spec, 0, sizeof spec);
    int rc = build_plan(&plan, format, method, clip, tensors, types, n_types, recipe, common, &base, &spec);
    if (rc == CLI_OK && act && lb_act_spec_parse(act, &plan.act) != LB_OK)
        rc = cli_usage_error("quantize", "--act: %s", lb_last_error());
    if (rc != CLI_OK) {
        lb_plan_free(&plan);
        return rc;
    }
    /* before the work: an unusable -o fails now, not after quantizing */
    const char *inputs[6] = {a.positional[0], tokenizer, recipe, copts.text_path, stats_path, imatrix};
    if (out && (splitting ? cli_split_output_check("quantize", out, inputs, 6)
                          : lb_output_check(out, inputs, 6) != LB_OK ? cli_error("quantize", NULL) : CLI_OK)) {
        lb_plan_free(&plan);
        return CLI_FAIL;
    }
    const char *inputs_r[7] = {a.positional[0], tokenizer, recipe, copts.text_path, stats_path, imatrix, out};
    if (report_path && lb_output_check(report_path, inputs_r, 7) != LB_OK) {
        lb_plan_free(&plan);
        return cli_error("quantize", NULL);
    }

    /* under mpirun (docs/SCALING.md, "MPI"): the streamed path shares the
     * tensors among the ranks; the sequential drivers and --dry-run do not */
    if ((refine || sequential || dry_run) &&
        cli_rank0_only("quantize", dry_run ? "--dry-run" : "--sequential / --refine is not distributed")) {
        lb_plan_free(&plan);
        return CLI_OK;
    }
    const lb_comm *comm = refine || sequential || dry_run ? lb_comm_self() : cli_comm;
    double t0 = lb_now();
    lb_model *m;
    if (cli_load_model("quantize", a.positional[0], tokenizer, &m)) {
        lb_plan_free(&plan);
        return CLI_FAIL;
    }
    if (lb_plan_resolve(&plan, m) != LB_OK) rc = cli_usage_error("quantize", "%s", lb_last_error());
    if (rc == CLI_OK && lb_plan_check(&plan) != LB_OK) rc = cli_error("quantize", NULL);
    for (int i = 0; rc == CLI_OK && comm->rank == 0 && i < plan.n_entries; i++) {
        const lb_plan_entry *e = &plan.entries[i];
        if (lb_qspec_equal(&e->spec, &e->asked)) continue;
        char f[64], g[64];
        lb_qspec_format(&e->asked, f, sizeof f);
        lb_qspec_format(&e->spec, g, sizeof g);
        fprintf(stderr, "lowbit quantize: warning: %s: rows of %lld weights are not whole blocks of %s: %s instead "
                        "(docs/FORMATS.md, \"K-quants\")\n",
                e->name, (long long)lb_model_tensor_at(m, e->tensor)->cols, f, g);
    }
    /* an already-quantized input (a llama.cpp Q4_K_M, say) is requantized from its decoded weights */
    for (int i = 0; rc == CLI_OK && comm->rank == 0 && i < plan.n_entries; i++) {
        const lb_tensor *t = lb_model_tensor_at(m, plan.entries[i].tensor);
        if (t && !lb_qspec_is_float(&t->spec)) {
            char f[64];
            lb_qspec_format(&t->spec, f, sizeof f);
            fprintf(stderr, "lowbit quantize: warning: %s is stored as %s, not as floats: its decoded weights are "
                            "requantized and the two errors add up (start from the f32/f16/bf16 model if you have it)\n",
                    t->name, f);
            break;
        }
    }
    char header[4200];
    snprintf(header, sizeof header, "lowbit quantize plan for %.4000s: %d tensors", a.positional[0], plan.n_entries);
    if (rc == CLI_OK && dry_run) {
        print_plan(m, &plan, a.json);
        if (save_recipe && lb_plan_save_recipe(&plan, save_recipe, header) != LB_OK) rc = cli_error("quantize", NULL);
        lb_model_free(m);
        lb_plan_free(&plan);
        return rc;
    }
    /* the journal of finished tensors: opened before calibrating, so a stale
     * or foreign one is refused before any work. The sequential drivers
     * calibrate each stage on the model with the journaled tensors in place:
     * the same state as the run that journaled them */
    lb_journal *journal = NULL;
    /* several ranks: the tensors are quantized on every rank, so no one
     * rank's journal would hold them all; no journal, and no resume */
    if (rc == CLI_OK && comm->size > 1 && (resume || stop_after))
        rc = cli_usage_error("quantize", "--resume and --stop-after are for one process, not under mpirun with %d "
                             "ranks (docs/SCALING.md, \"MPI\"): run the resumable quantization in one process",
                             comm->size);
    if (rc == CLI_OK && comm->size == 1) {
        int calibrating = (lb_plan_stats_needed(&plan) || refine) && !saved;
        const char *labels[4] = {"statistics (--stats)", "importance matrix (--imatrix)", "calibration text", "recipe"};
        const char *files[4] = {stats_path, imatrix, calibrating ? copts.text_path : NULL, recipe};
        char extra[600];
        snprintf(extra, sizeof extra, "calibration: %s%d blocks; sequential %d; refine %.400s",
                 calibrating ? "the calibration split's first " : "none, ", calibrating ? copts.calib_blocks ? copts.calib_blocks : 128 : 0,
                 sequential, refine ? refine : "none");
        rc = cli_journal_open("quantize", m, &plan, out, labels, files, 4, extra, resume, stop_after, &journal);
    }
    int resumed = lb_journal_done(journal);
    /* statistics only when a method needs them: saved ones, or the calibration split run now */
    lb_calib_stats *stats = NULL;
    if (rc == CLI_OK && (lb_plan_stats_needed(&plan) & LB_STATS_DXTX) && !sequential)
        rc = cli_usage_error("quantize", "method gptaq compares the fp32 and the partly quantized model's inputs: "
                             "it needs --sequential");
    if (rc == CLI_OK && lb_plan_stats_needed(&plan) && !sequential) {
        unsigned extra = lb_plan_stats_needed(&plan) & ~(unsigned)LB_STATS_XTX;
        if (imatrix && extra)
            rc = cli_usage_error("quantize", "an imatrix holds only X^T X's diagonal; this plan's methods need more "
                                 "(statistics parts 0x%x: mean or max |x|, histograms, gradients): calibrate here "
                                 "or use --stats", extra);
        else if (imatrix ? lb_calib_stats_load_imatrix(imatrix, m, &stats) != LB_OK
                 : stats_path ? lb_calib_stats_open(stats_path, m, &stats) != LB_OK /* read a layer at a time */
                              : comm->size > 1 ? lb_calibrate_dist(m, &copts, comm, &stats, NULL) != LB_OK ||
                                                     lb_calib_stats_bcast(comm, &stats) != LB_OK /* every rank quantizes with them */
                                               : calibrate_beside(m, &copts, out, &stats) != LB_OK) /* the same statistics, a layer at a time */
            rc = cli_error("quantize", NULL);
    }
    lb_quantize_report rep;
    memset(&rep, 0, sizeof rep);
    int streamed = 0;
    /* sequential and refined quantization change the model as they go (each
     * stage calibrates on the partly quantized model): in memory, then saved.
     * Otherwise each tensor is quantized while the file is written, when the
     * plan allows (docs/SCALING.md, "Streaming"). */
    lb_status qst = LB_OK;
    if (rc == CLI_OK && (refine || sequential)) {
        qst = refine ? lb_quantize_model_refined(m, &plan, &copts, refine, &rep)
                     : lb_quantize_model_sequential(m, &plan, &copts, &rep);
        if (qst == LB_OK) qst = lb_model_save_gguf_split(m, out, NULL, NULL, NULL, splitting ? &split : NULL, &n_shards);
    } else if (rc == CLI_OK) {
        qst = lb_quantize_model_to_gguf_dist(m, &plan, stats, out, splitting ? &split : NULL, &n_shards, &rep,
                                             report_path != NULL, &streamed, comm);
    }
    if (qst != LB_OK && lb_journal_stopped(journal)) { /* --stop-after: an interruption on purpose */
        char jp[4200];
        if (a.json) {
            json_begin_object();
            json_kbool("stopped", 1);
            json_kint("done", lb_journal_done(journal));
            json_kint("tensors", plan.n_entries);
            json_kint("resumed", resumed);
            json_kstr("journal", cli_journal_path(out, jp, sizeof jp));
            json_end_object();
            json_done();
        } else {
            printf("stopped after %d of %d tensors; journal %s (the same command with --resume continues)\n",
                   lb_journal_done(journal), plan.n_entries, cli_journal_path(out, jp, sizeof jp));
        }
        rc = CLI_STOPPED;
    } else if (qst != LB_OK) {
        rc = cli_error("quantize", NULL);
    }
    if (rc == CLI_OK && comm->size > 1 && comm->rank == 0)
        fprintf(stderr, "lowbit quantize: %s\n",
                streamed ? "the tensors were shared among the ranks (round-robin), rank 0 wrote the file"
                         : "this plan does not stream (docs/SCALING.md, \"Streaming\"): rank 0 quantized alone");
    /* the output is written: the journal has served (kept on failure, to
     * resume, unless it holds nothing: a failure before the first tensor) */
    if (journal && lb_journal_close(journal, rc == CLI_OK || !lb_journal_done(journal)) != LB_OK)
        rc = cli_error("quantize", NULL);
    plan.journal = NULL;
    lb_calib_stats_free(stats);
    if (comm->rank != 0) { /* rank 0 writes, saves and reports */
        lb_quantize_report_free(&rep);
        lb_model_free(m);
        lb_plan_free(&plan);
        return rc;
    }
    if (rc == CLI_OK && save_recipe && lb_plan_save_recipe(&plan, save_recipe, header) != LB_OK)
        rc = cli_error("quantize", NULL);
    if (rc == CLI_OK && report_path && lb_quantize_report_save_json(&rep, report_path) != LB_OK)
        rc = cli_error("quantize", NULL);
    if (rc == CLI_OK) {
        char spec_text[64] = "", clip_text[32], opts[512];
        if (format) lb_qspec_format(&spec, spec_text, sizeof spec_text);
        const char *clip_used = lb_method_opts_text(&base, "clip", clip_text, sizeof clip_text);
        lb_method_opts_format(&base, 1, opts, sizeof opts);
        long long bytes = cli_output_bytes(out, splitting, n_shards);
        double secs = lb_now() - t0;
        if (a.json) {
            json_begin_object();
            json_kstr("input", a.positional[0]);
            json_kstr("output", out);
            cli_json_shards(out, splitting, n_shards);
            if (format) json_kstr("format", spec_text);
            else {
                json_key("format");
                json_null();
            }
            json_kstr("method", base.method->name);
            if (clip_used) json_kstr("clip", clip_used);
            else {
                json_key("clip");
                json_null();
            }
            json_kstr("options", opts);
            char act_text[64];
            lb_act_spec_format(&plan.act, act_text, sizeof act_text);
            json_kstr("act", act_text);
            json_kint("rules", plan.n_rules);
            json_kbool("sequential", sequential);
            json_kbool("streamed", streamed);
            json_kint("resumed", resumed);
            if (report_path) json_kstr("report", report_path);
            else {
                json_key("report");
                json_null();
            }
            json_kint("tensors_quantized", rep.tensors_quantized);
            json_knum("bpw", rep.bpw);
            json_knum("bpw_all", rep.bpw_all);
            json_kint("file_bytes", bytes);
            json_knum("seconds", secs);
            json_kint("peak_rss", lb_peak_rss());
            json_end_object();
            json_done();
        } else {
            char b[32], how[160];
            if (format && clip_used) snprintf(how, sizeof how, "as %s (%s, clip %s)", spec_text, base.method->name, clip_used);
            else if (format) snprintf(how, sizeof how, "as %s (%s)", spec_text, base.method->name);
            else snprintf(how, sizeof how, "by recipe %.100s", recipe);
            char act_text[64], act_note[96] = "";
            lb_act_spec_format(&plan.act, act_text, sizeof act_text);
            if (plan.act.kind != LB_AQ_NONE) snprintf(act_note, sizeof act_note, ", activations %s", act_text);
            char where[4200];
            printf("%s: %d tensors %s%s%s%s: %.4f bpw quantized, %.4f bpw whole model, %s bytes, %.2fs, peak RSS %.1f MB\n",
                   cli_shards_text(out, splitting, n_shards, where, sizeof where),
                   rep.tensors_quantized, how, format && (recipe || n_types) ? " with overrides" : "",
                   sequential ? ", sequential" : "", act_note, rep.bpw,
                   rep.bpw_all, fmt_thousands(bytes, b, sizeof b), secs, (double)lb_peak_rss() / 1e6);
        }
    }
    lb_quantize_report_free(&rep);
    lb_model_free(m);
    lb_plan_free(&plan);
    return rc;
}
