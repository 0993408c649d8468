/* lowbit plan: mixed precision by sensitivity under a bit budget.
 *
 * Measures what each candidate (format, method, options) costs each
 * selected tensor alone (lb_sensitivity_measure, on the calibration split),
 * chooses one candidate per tensor minimizing the summed KL divergence
 * within the budget (lb_allocate), and writes the choice as a recipe that
 * `lowbit quantize --recipe` applies. Reports the sensitivity table, a
 * heat map (layers x linears) and how well the cheap proxies rank the
 * tensors (docs/PLANNING.md). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "plan_cli.h"
#include "plot.h"

static const char *plan_help =
    "usage: lowbit plan MODEL (--bpw B | --size SIZE) -o RECIPE [--candidates LIST] [--tensors LIST]\n"
    "                   [--keep PATTERN=SPEC[,method=NAME][,key=value]...]... [--calib TEXT] [--calib-blocks N]\n"
    "                   [--refine N] [--granularity tensor|layer|rowblock[:N]|colblock[:N]] [--fisher] [--table FILE.md]\n"
    "                   [--svg FILE.svg] [--heat SPEC] [--score-eval] [--json]\n\n"
    "Chooses a format and method per tensor so that the selected tensors fit the budget with the\n"
    "least predicted loss, and writes the choice as a recipe for `lowbit quantize --recipe`.\n\n"
    "  --bpw B            budget: B bits per weight on average over the selected tensors, every\n"
    "                     stored bit counted (scales, zeros, padding, outliers)\n"
    "  --size SIZE        budget: the tensors' data in bytes (suffix K, M, G: 1000s; KiB, MiB,\n"
    "                     GiB: 1024s): the selected tensors plus the others as they are stored now\n"
    "                     (the GGUF header and tokenizer come on top)\n"
    "  -o, --output FILE  the recipe to write (one line per tensor)\n"
    "  --candidates LIST  what each tensor may become, ';'-separated, each SPEC[,method=NAME][,key=value]...\n"
    "                     as --tensor-type takes it (default: gptq clip=mse act_order=1 on int2:g128:asym,\n"
    "                     int2:g64:asym, int3:g128:asym, int3:g64:asym, int4:g128:asym, int4:g64:asym,\n"
    "                     int8:g64:sym)\n"
    "  --tensors LIST     the tensors planned (default linears; as quantize --tensors)\n"
    "  --keep PATTERN=SPEC[,...]  pin the matching tensors to this choice (repeatable); their bits\n"
    "                     count in the budget\n"
    "  --calib TEXT       calibration text: the sensitivities are measured on its calibration split,\n"
    "                     never on the evaluation split (default ../shared/data/text/tinystories-sample.txt)\n"
    "  --calib-blocks N   the calibration split is the first N blocks (default 128)\n"
    "  --refine N         interaction-aware refinement rounds (default 2; 0: none): the mix is assembled,\n"
    "                     each tensor's candidates measured again with the others as planned, and the\n"
    "                     budget spent again over those losses while the mix's measured KL drops\n"
    "  --granularity G    tensor (default): a choice per tensor; layer: one choice for all the planned\n"
    "                     linears of a layer (other tensors alone); rowblock[:N]: each tensor's output\n"
    "                     rows cut into N contiguous blocks (default 2), a choice per block, each block\n"
    "                     quantized on its own; the recipe gets one rows=R0:R1 line per block, and\n"
    "                     quantize stores such a tensor as a split tensor (docs/PLANNING.md); colblock[:N]:\n"
    "                     the same over each tensor's input columns (cols=C0:C1 lines, column parts)\n"
    "  --score-eval       also score the chosen mix on the evaluation split of the text (after planning;\n"
    "                     nothing is chosen on it), through f32 products of its dequantized weights\n"
    "  --fisher           also collect the squared loss gradients (a backward pass over the calibration\n"
    "                     split; fp32 models) for the Fisher proxy\n"
    "  --table FILE.md    the sensitivity table: KL divergence per tensor and candidate\n"
    "  --svg FILE.svg     heat map of the sensitivity, layers x linears, at --heat's candidate\n"
    "  --heat SPEC        the candidate the heat map shows (default the first candidate)\n"
    "  --json             one JSON object: budget, choice per tensor, predicted loss, proxies' rank\n"
    "                     correlations, the whole sensitivity table\n\n"
    "Sensitivity of a tensor to a candidate: the mean KL divergence per token from the model to the\n"
    "model with only that tensor quantized so, on the calibration split. The plan minimizes their\n"
    "sum. Proxies reported beside it, with their Spearman rank correlation to the measured KL: the\n"
    "method's output error tr(dW H dW^T)/n, the weight error ||dW||^2, HAWQ's tr(H)/(n cols) x\n"
    "||dW||^2, and with --fisher the Fisher-weighted error sum g^2 dW^2.\n";

static const char *const default_candidates =
    "int2:g128:asym;int2:g64:asym;int3:g128:asym;int3:g64:asym;int4:g128:asym;int4:g64:asym;int8:g64:sym";

/* One candidate from "SPEC[,method=NAME][,key=value]..." (--tensor-type's
 * syntax after its PATTERN=). */
static int parse_candidate(const char *verb, const char *opt, const char *text, const lb_method_opts *base,
                           lb_candidate *c) {
    if (lb_plan_parse_choice(text, base, &c->spec, &c->opts) != LB_OK)
        return cli_usage_error(verb, "%s '%s': %s", opt, text, lb_last_error());
    return CLI_OK;
}

void candidate_label(const lb_candidate *c, char *buf, size_t n) {
    char spec[64], opts[400];
    lb_qspec_format(&c->spec, spec, sizeof spec);
    lb_method_opts_format(&c->opts, 0, opts, sizeof opts);
    snprintf(buf, n, "%s %s%s%s", spec, c->opts.method->name, *opts ? " " : "", opts);
}

/* layer index and linear index of a tensor name "blk.L.<linear>.weight" (-1 when not a linear) */
static int linear_cell(const char *name, int *layer) {
    int l, k = -1;
    char kind[32];
    if (sscanf(name, "blk.%d.%31[a-z_].weight", &l, kind) != 2) return -1;
    for (int i = 0; i < LB_N_LINEARS; i++)
        if (!strcmp(kind, lb_linear_name(i))) k = i;
    *layer = l;
    return k;
}

/* The heat map: rows are layers, columns the linears, colour log10 of the KL. */
static int heat_svg(const char *verb, const char *path, const lb_sensitivity *s, int c, const char *label,
                    const char *model) {
    int layers = 0;
    for (int t = 0; t < s->n_tensors; t++) {
        int l;
        if (linear_cell(s->names[t], &l) >= 0 && l + 1 > layers) layers = l + 1;
    }
    double lo = INFINITY, hi = -INFINITY;
    for (int t = 0; t < s->n_tensors; t++) {
        double v = s->kld[(size_t)t * s->n_candidates + c];
        if (isfinite(v) && v > 0) lo = fmin(lo, log10(v)), hi = fmax(hi, log10(v));
    }
    if (!layers || !isfinite(lo)) return cli_error(verb, "--svg: no linear has a positive KL at '%s'", label);
    if (hi - lo < 1e-9) hi = lo + 1;
    const int cw = 90, ch = 28, x0 = 110, y0 = 70, W = x0 + LB_N_LINEARS * cw + 150, H = y0 + layers * ch + 40;
    plot_buf b = {0};
    plot_buf_printf(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" "
                        "font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", W, H);
    const char *slash = strrchr(model, '/');
    plot_buf_printf(&b, "<text x=\"10\" y=\"22\" font-size=\"15\">Sensitivity of ");
    plot_buf_xml(&b, slash ? slash + 1 : model);
    plot_buf_printf(&b, ": KL divergence with one tensor at ");
    plot_buf_xml(&b, label);
    plot_buf_printf(&b, "</text>\n<text x=\"10\" y=\"42\" fill=\"#555\">nats per token, calibration split; "
                        "darker = more sensitive (log scale)</text>\n");
    for (int k = 0; k < LB_N_LINEARS; k++)
        plot_buf_printf(&b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", x0 + k * cw + cw / 2, y0 - 8,
                        lb_linear_name(k));
    for (int l = 0; l < layers; l++)
        plot_buf_printf(&b, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">layer %d</text>\n", x0 - 8,
                        y0 + l * ch + ch / 2 + 4, l);
    for (int t = 0; t < s->n_tensors; t++) {
        int l, k = linear_cell(s->names[t], &l);
        double v = s->kld[(size_t)t * s->n_candidates + c];
        if (k < 0) continue;
        double f = isfinite(v) && v > 0 ? (log10(v) - lo) / (hi - lo) : 0;
        int r = (int)(255 - 200 * f), g = (int)(245 - 215 * f), bl = (int)(235 - 200 * f);
        plot_buf_printf(&b, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"rgb(%d,%d,%d)\" stroke=\"white\">"
                            "<title>%s: %.4g</title></rect>\n", x0 + k * cw, y0 + l * ch, cw, ch, r, g, bl, s->names[t], v);
        plot_buf_printf(&b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" fill=\"%s\" font-size=\"11\">%.3g</text>\n",
                        x0 + k * cw + cw / 2, y0 + l * ch + ch / 2 + 4, f > 0.55 ? "white" : "black", v);
    }
    plot_buf_printf(&b, "<text x=\"%d\" y=\"%d\" fill=\"#555\">%.3g .. %.3g</text>\n</svg>\n",
                    x0 + LB_N_LINEARS * cw + 10, y0 + 14, pow(10, lo), pow(10, hi));
    int rc = cli_write_file(verb, path, b.data, b.len, b.failed);
    plot_buf_free(&b);
    return rc;
}

static int write_table(const char *verb, const char *path, const lb_sensitivity *s, const lb_candidate *cands,
                       const int *choice) {
    plot_buf b = {0};
    char label[512];
    plot_buf_printf(&b, "| tensor |");
    for (int c = 0; c < s->n_candidates; c++) {
        candidate_label(&cands[c], label, sizeof label);
        plot_buf_printf(&b, " %s |", label);
    }
    plot_buf_printf(&b, "\n|---|");
    for (int c = 0; c < s->n_candidates; c++) plot_buf_printf(&b, "---:|");
    plot_buf_printf(&b, "\n");
    for (int t = 0; t < s->n_tensors; t++) {
        plot_buf_printf(&b, "| %s |", s->names[t]);
        for (int c = 0; c < s->n_candidates; c++) {
            size_t i = (size_t)t * s->n_candidates + c;
            if (isnan(s->kld[i])) plot_buf_printf(&b, " |");
            else plot_buf_printf(&b, choice[t] == c ? " **%.4g** (%.2f) |" : " %.4g (%.2f) |", s->kld[i],
                                 s->bits[i] / (double)s->weights[t]);
        }
        plot_buf_printf(&b, "\n");
    }
    plot_buf_printf(&b, "\nKL divergence (nats per token) with only that tensor quantized, and its bits per weight; "
                        "the plan's choice in bold.\n");
    int rc = cli_write_file(verb, path, b.data, b.len, b.failed);
    plot_buf_free(&b);
    return rc;
}

/* ---- shared with lowbit tune (plan_cli.h) ---------------------------------- */

int plan_option(plan_ctx *p, cli_args *a) {
    int r;
    const char *keep = NULL;
    if ((r = cli_option(a, "--candidates", NULL, &p->cand_text)) || (r = cli_option(a, "--tensors", NULL, &p->tensors)) ||
        (r = cli_option(a, "--calib", NULL, &p->calib_text)) || (r = cli_option(a, "--calib-blocks", NULL, &p->calib_blocks)) ||
        (r = cli_option(a, "--table", NULL, &p->table)) || (r = cli_option(a, "--svg", NULL, &p->svg)) ||
        (r = cli_option(a, "--heat", NULL, &p->heat)) || (r = cli_option(a, "--refine", NULL, &p->refine_text)) ||
        (r = cli_option(a, "--granularity", NULL, &p->granularity)))
        return r;
    if (cli_flag(a, "--fisher")) {
        p->fisher = 1;
        return 1;
    }
    if ((r = cli_option(a, "--keep", NULL, &keep)) <= 0) return r;
    if (p->n_keep == PLAN_MAX_KEEP) return cli_usage_error(p->verb, "more than %d --keep rules", PLAN_MAX_KEEP), -1;
    p->keeps[p->n_keep++] = keep;
    return 1;
}

int plan_prepare(plan_ctx *p, const char *default_refine) {
    const char *v = p->verb;
    if (p->granularity && (!strncmp(p->granularity, "rowblock", 8) || !strncmp(p->granularity, "colblock", 8))) {
        long n = 2;
        p->block_axis = p->granularity[0] == 'c';
        const char *kind = p->block_axis ? "colblock" : "rowblock";
        char what[32];
        snprintf(what, sizeof what, "--granularity %s:N", kind);
        if (p->granularity[8] && (p->granularity[8] != ':' || cli_parse_int(v, what, p->granularity + 9, 1, 64, &n)))
            return p->granularity[8] == ':' ? CLI_USAGE
                                            : cli_usage_error(v, "--granularity '%s': %s or %s:N", p->granularity, kind,
                                                              kind);
        p->row_blocks = (int)n;
        if (p->n_keep || p->svg)
            return cli_usage_error(v, "--granularity %s: --keep and --svg work per tensor, not per block", kind);
    } else if (p->granularity && strcmp(p->granularity, "tensor") && strcmp(p->granularity, "layer")) {
        return cli_usage_error(v, "--granularity '%s': tensor, layer, rowblock[:N] or colblock[:N]", p->granularity);
    }
    lb_plan_init(&p->keep_plan);
    if (cli_parse_int(v, "--refine", p->refine_text ? p->refine_text : default_refine, 0, 100, &p->rounds))
        return CLI_USAGE;
    lb_calib_opts_default(&p->copts);
    if (p->calib_blocks) {
        long n;
        if (cli_parse_int(v, "--calib-blocks", p->calib_blocks, 1, 1 << 30, &n)) return CLI_USAGE;
        p->copts.calib_blocks = (int)n;
    }
    p->copts.text_path = p->calib_text ? p->calib_text
                                       : cli_data_path("text/tinystories-sample.txt", p->calib_buf, sizeof p->calib_buf);
    lb_method_opts_default(lb_method_find("gptq"), &p->base);
    if (lb_method_opts_set(&p->base, "clip", "mse") != LB_OK || lb_method_opts_set(&p->base, "act_order", "1") != LB_OK)
        return cli_error(v, NULL);
    char list[4096];
    const char *text = p->cand_text ? p->cand_text : default_candidates;
    if (snprintf(list, sizeof list, "%s", text) >= (int)sizeof list)
        return cli_usage_error(v, "--candidates is longer than %zu bytes", sizeof list - 1);
    char *save = NULL;
    for (char *item = strtok_r(list, ";", &save); item; item = strtok_r(NULL, ";", &save)) {
        if (p->n_cands == PLAN_MAX_CANDS) return cli_usage_error(v, "more than %d candidates", PLAN_MAX_CANDS);
        if (parse_candidate(v, "--candidates", item, &p->base, &p->cands[p->n_cands])) return CLI_USAGE;
        p->n_cands++;
    }
    if (!p->n_cands) return cli_usage_error(v, "--candidates is empty");
    p->n_free = p->n_cands;
    for (int k = 0; k < p->n_keep; k++) {
        if (lb_plan_add_override(&p->keep_plan, p->keeps[k], &p->base) != LB_OK)
            return cli_usage_error(v, "--keep: %s", lb_last_error());
        p->cands[p->n_cands].spec = p->keep_plan.rules[k].spec;
        p->cands[p->n_cands].opts = p->keep_plan.rules[k].opts;
        p->n_cands++;
    }
    if (p->heat) {
        lb_candidate h;
        if (parse_candidate(v, "--heat", p->heat, &p->base, &h)) return CLI_USAGE;
        for (p->heat_c = 0; p->heat_c < p->n_free && !(lb_qspec_equal(&p->cands[p->heat_c].spec, &h.spec) &&
                                                       lb_method_opts_equal(&p->cands[p->heat_c].opts, &h.opts));
             p->heat_c++) {}
        if (p->heat_c == p->n_free) return cli_usage_error(v, "--heat '%s' is not one of the candidates", p->heat);
    }
    return CLI_OK;
}

int plan_measure(plan_ctx *p, const char *model_path, int keep) {
    const char *v = p->verb;
    p->t0 = lb_now();
    p->model_path = model_path;
    if (cli_load_model(v, model_path, NULL, &p->m)) return CLI_FAIL;
    if (lb_text_load(p->copts.text_path, &p->text) != LB_OK) return cli_error(v, NULL);
    /* the planned tensors, and which of them a --keep rule pins (the last match wins, as in recipes) */
    lb_plan sel;
    lb_plan_init(&sel);
    int rc = CLI_OK;
    if (lb_plan_add_selection(&sel, p->tensors ? p->tensors : "linears", &p->cands[0].spec, &p->cands[0].opts) != LB_OK ||
        lb_plan_resolve(&sel, p->m) != LB_OK)
        rc = cli_usage_error(v, "--tensors: %s", lb_last_error());
    if (rc == CLI_OK && p->n_keep && lb_plan_resolve(&p->keep_plan, p->m) != LB_OK)
        rc = cli_usage_error(v, "--keep: %s", lb_last_error());
    int T = sel.n_entries, C = p->n_cands;
    if (rc == CLI_OK && !(p->mask = lb_calloc((size_t)T * C, 1))) rc = cli_error(v, "out of memory");
    for (int t = 0; rc == CLI_OK && t < T; t++) {
        int pinned = -1;
        for (int e = 0; e < p->keep_plan.n_entries; e++)
            if (p->keep_plan.entries[e].tensor == sel.entries[t].tensor) pinned = p->n_free + p->keep_plan.entries[e].rule;
        for (int c = 0; c < C; c++) p->mask[(size_t)t * C + c] = pinned < 0 ? c < p->n_free : c == pinned;
    }
    lb_plan_free(&sel);
    /* the fp model's statistics: X^T X for the proxies, and what the candidates need */
    unsigned need = LB_STATS_XTX;
    for (int c = 0; c < C; c++) need |= lb_method_opts_stats(&p->cands[c].opts);
    if (rc == CLI_OK && (need & LB_STATS_DXTX))
        rc = cli_usage_error(v, "gptaq needs the sequential driver: plan with gptq candidates, then quantize the recipe "
                             "with --sequential (and method=gptaq if wanted)");
    p->copts.text = &p->text;
    p->copts.parts = need;
    if (rc == CLI_OK && lb_calibrate(p->m, &p->copts, &p->stats) != LB_OK) rc = cli_error(v, NULL);
    if (rc == CLI_OK && p->fisher && lb_calib_fisher(p->m, &p->copts, p->stats) != LB_OK) rc = cli_error(v, NULL);
    p->so.model_path = model_path;
    p->so.tensors = p->tensors;
    p->so.text = &p->text;
    p->so.eval.split = LB_SPLIT_CALIB;
    p->so.eval.calib_blocks = p->copts.calib_blocks;
    p->so.stats = p->stats;
    p->so.mask = p->row_blocks ? NULL : p->mask; /* no --keep with row blocks: every candidate everywhere */
    p->so.keep_tensors = keep;
    p->so.row_blocks = p->row_blocks;
    p->so.block_axis = p->block_axis;
    /* every measurement scores a model against the fp one on the same
     * sequences: the fp model's logits computed once instead of beside each
     * (about a quarter of a plan's time on stories260K), when they fit in
     * PLAN_REF_LOGITS_BYTES; else the fp model runs each time, as before */
    if (rc == CLI_OK) {
        lb_eval_opts e = p->so.eval;
        e.ref = p->m;
        if (lb_ref_logits_build(p->m, &p->text, &e, PLAN_REF_LOGITS_BYTES, &p->ref_logits) != LB_OK)
            rc = cli_error(v, NULL);
        p->so.eval.ref_logits = p->ref_logits;
    }
    if (rc == CLI_OK && lb_sensitivity_measure(&p->so, p->cands, C, &p->s) != LB_OK) rc = cli_error(v, NULL);
    for (int t = 0; rc == CLI_OK && t < p->s.n_tensors; t++) p->weights += (double)p->s.weights[t];
    if (rc == CLI_OK && lb_plan_set_granularity(&p->s, p->granularity) != LB_OK) rc = cli_error(v, NULL);
    return rc;
}

int plan_reports(plan_ctx *p, const int *choice) {
    int rc = CLI_OK;
    if (p->table) rc = write_table(p->verb, p->table, &p->s, p->cands, choice);
    char label[512];
    candidate_label(&p->cands[p->heat_c], label, sizeof label);
    if (rc == CLI_OK && p->svg) rc = heat_svg(p->verb, p->svg, &p->s, p->heat_c, label, p->model_path);
    return rc;
}

/* The chosen mix as a plan: a rule per tensor, or per row block (a row
 * rule; blocks of one tensor with one choice resolve to a whole tensor). */
int plan_choice(plan_ctx *p, const int *choice, lb_plan *out) {
    lb_plan_init(out);
    for (int t = 0; t < p->s.n_tensors; t++) {
        const lb_candidate *c = &p->cands[choice[t]];
        const char *name = lb_model_tensor_at(p->m, p->s.tensor[t])->name;
        lb_status st = !p->row_blocks ? lb_plan_add_rule(out, p->s.names[t], &c->spec, &c->opts)
                       : p->block_axis ? lb_plan_add_col_rule(out, name, p->s.row0[t], p->s.row1[t], &c->spec, &c->opts)
                                       : lb_plan_add_row_rule(out, name, p->s.row0[t], p->s.row1[t], &c->spec, &c->opts);
        if (st != LB_OK) return cli_error(p->verb, NULL);
    }
    return lb_plan_resolve(out, p->m) == LB_OK ? CLI_OK : cli_error(p->verb, NULL);
}

double plan_bits(const plan_ctx *p, const int *choice, double *kld_alone) {
    double bits = 0, kl = 0;
    for (int t = 0; t < p->s.n_tensors; t++) {
        size_t i = (size_t)t * p->n_cands + choice[t];
        bits += p->s.bits[i];
        kl += p->s.kld[i];
    }
    if (kld_alone) *kld_alone = kl;
    return bits;
}

void plan_json(const plan_ctx *p, const int *choice) {
    const lb_sensitivity *s = &p->s;
    char label[512];
    json_key("candidates");
    json_begin_array();
    for (int c = 0; c < p->n_cands; c++) {
        candidate_label(&p->cands[c], label, sizeof label);
        json_string(label);
    }
    json_end_array();
    json_key("choice");
    json_begin_array();
    for (int t = 0; t < s->n_tensors; t++) {
        size_t i = (size_t)t * p->n_cands + choice[t];
        candidate_label(&p->cands[choice[t]], label, sizeof label);
        json_begin_object();
        json_kstr("tensor", s->names[t]);
        json_kstr("candidate", label);
        json_knum("bpw", s->bits[i] / (double)s->weights[t]);
        json_knum("kld", s->kld[i]);
        json_end_object();
    }
    json_end_array();
    json_key("sensitivity"); /* [tensor][candidate]: {bits, kld, dnll, proxy, weight_error}, null where not measured */
    json_begin_array();
    for (int t = 0; t < s->n_tensors; t++) {
        json_begin_array();
        for (int c = 0; c < p->n_cands; c++) {
            size_t i = (size_t)t * p->n_cands + c;
            if (isnan(s->bits[i])) {
                json_null();
                continue;
            }
            json_begin_object();
            json_knum("bits", s->bits[i]);
            json_knum("kld", s->kld[i]);
            json_knum("dnll", s->dnll[i]);
            json_knum("proxy", s->proxy[i]);
            json_knum("weight_error", s->werr[i]);
            json_knum("hawq", s->hawq[i]);
            json_knum("fisher", s->fisher[i]);
            json_end_object();
        }
        json_end_array();
    }
    json_end_array();
}

const char *const plan_proxy_names[PLAN_N_PROXIES] = {"method", "weight_error", "hawq", "fisher"};

double plan_rank_correlation(const plan_ctx *p, int k) {
    const double *x[PLAN_N_PROXIES] = {p->s.proxy, p->s.werr, p->s.hawq, p->s.fisher};
    return lb_rank_correlation(x[k], p->s.kld, p->s.n_tensors * p->n_cands);
}

void plan_print_choice(const plan_ctx *p, const int *choice) {
    printf("%-28s %-44s %8s %10s\n", "tensor", "choice", "bpw", "KL alone");
    for (int t = 0; t < p->s.n_tensors; t++) {
        size_t i = (size_t)t * p->n_cands + choice[t];
        char label[512];
        candidate_label(&p->cands[choice[t]], label, sizeof label);
        printf("%-28s %-44s %8.4f %10.5f\n", p->s.names[t], label, p->s.bits[i] / (double)p->s.weights[t], p->s.kld[i]);
    }
}

void plan_free(plan_ctx *p) {
    lb_free(p->mask);
    lb_ref_logits_free(p->ref_logits);
    lb_sensitivity_free(&p->s);
    lb_calib_stats_free(p->stats);
    lb_plan_free(&p->keep_plan);
    lb_text_free(&p->text);
    lb_model_free(p->m);
}

/* ---- lowbit plan ------------------------------------------------------------ */

int cmd_plan(int argc, char **argv) {
    cli_args a = {.argc = argc, .argv = argv, .i = 1, .verb = "plan"};
    plan_ctx p;
    memset(&p, 0, sizeof p);
    p.verb = "plan";
    const char *out = NULL, *bpw_text = NULL, *size_text = NULL;
    while (a.i < argc) {
        int r;
        if ((r = cli_option(&a, "--output", "-o", &out)) || (r = cli_option(&a, "--bpw", NULL, &bpw_text)) ||
            (r = cli_option(&a, "--size", NULL, &size_text)) || (r = cli_flag(&a, "--score-eval")) ||
            (r = plan_option(&p, &a))) {
            if (r < 0) return CLI_USAGE;
            continue;
        }
        if ((r = cli_unknown(&a)) != 0) return r;
    }
    if (a.help) {
        fputs(plan_help, stdout);
        return CLI_OK;
    }
    if (a.n_positional != 1) return cli_usage_error("plan", "expected one MODEL");
    if (!out) return cli_usage_error("plan", "missing -o RECIPE");
    if (!bpw_text == !size_text) return cli_usage_error("plan", "give the budget as --bpw B or --size SIZE (one of them)");
    double bpw = 0, size = 0;
    if (bpw_text && cli_parse_float("plan", "--bpw", bpw_text, 0.01, 64, &bpw)) return CLI_USAGE;
    if (size_text && cli_parse_size("plan", "--size", size_text, &size)) return CLI_USAGE;
    int score_eval = 0;
    for (int i = 1; i < argc; i++) score_eval |= !strcmp(argv[i], "--score-eval");
    int rc = plan_prepare(&p, "2");
    const char *inputs[2] = {a.positional[0], p.copts.text_path};
    if (rc == CLI_OK && lb_output_check(out, inputs, 2) != LB_OK) rc = cli_error("plan", NULL);
    if (rc == CLI_OK) rc = plan_measure(&p, a.positional[0], p.rounds > 0 || score_eval);

    /* the budget over the planned tensors */
    int T = p.s.n_tensors;
    double budget = 0, other_bits = 0;
    if (rc == CLI_OK) {
        if (bpw_text) budget = bpw * p.weights;
        else {
            for (int i = 0; i < lb_model_n_tensors(p.m); i++) {
                int planned = 0;
                for (int t = 0; t < T; t++) planned |= p.s.tensor[t] == i;
                if (!planned) other_bits += 8.0 * (double)lb_model_tensor_at(p.m, i)->nbytes;
            }
            budget = 8.0 * size - other_bits;
            if (budget <= 0)
                rc = cli_error("plan", "--size %s: the tensors not planned already take %.0f bytes", size_text,
                               other_bits / 8);
        }
    }
    double measured[101];
    int *choice = lb_calloc((size_t)(T ? T : 1), sizeof *choice);
    if (rc == CLI_OK && !choice) rc = cli_error("plan", "out of memory");
    if (rc == CLI_OK && lb_plan_choose(&p.s, budget, choice) != LB_OK) rc = cli_error("plan", NULL);
    for (int r = 0; r <= 100; r++) measured[r] = NAN;
    if (rc == CLI_OK && p.rounds && lb_plan_refine(&p.so, &p.s, budget, (int)p.rounds, choice, measured) != LB_OK)
        rc = cli_error("plan", NULL);
    double final_kld = NAN;
    for (int r = 0; r <= p.rounds; r++)
        if (!isnan(measured[r])) final_kld = measured[r];

    /* the recipe: one rule per tensor */
    lb_plan chosen;
    lb_plan_init(&chosen);
    double alone = 0, bits = rc == CLI_OK ? plan_bits(&p, choice, &alone) : 0;
    char header[600];
    snprintf(header, sizeof header, "lowbit plan for %.300s: %.4f bpw over %d tensors (budget %.4f), KL on the "
             "calibration split %.5g summed alone, %.5g measured", a.positional[0], bits / p.weights, T,
             budget / p.weights, alone, final_kld);
    if (rc == CLI_OK) rc = plan_choice(&p, choice, &chosen);
    if (rc == CLI_OK && lb_plan_save_recipe(&chosen, out, header) != LB_OK) rc = cli_error("plan", NULL);
    /* the mix on the evaluation split, for the record only */
    lb_eval_result ev = {.ppl = NAN, .kld = NAN};
    if (rc == CLI_OK && score_eval) {
        lb_sensitivity_opts eo = p.so;
        eo.eval.split = LB_SPLIT_EVAL;
        eo.eval.ref_logits = NULL; /* computed on the calibration split */
        if (lb_plan_measure(&eo, &p.s, choice, &ev) != LB_OK) rc = cli_error("plan", NULL);
    }
    if (rc == CLI_OK) rc = plan_reports(&p, choice);

    /* proxies: rank correlation with the measured KL over every measured cell */
    double rho[PLAN_N_PROXIES];
    for (int k = 0; k < PLAN_N_PROXIES; k++) rho[k] = rc == CLI_OK ? plan_rank_correlation(&p, k) : NAN;
    if (rc == CLI_OK && a.json) {
        json_begin_object();
        json_kstr("model", a.positional[0]);
        json_kstr("recipe", out);
        json_knum("budget_bpw", budget / p.weights);
        json_knum("bpw", bits / p.weights);
        json_knum("bits", bits);
        json_knum("predicted_kld", alone);
        json_key("measured_kld"); /* the mix on the calibration split: first plan, then after each round that helped */
        json_begin_array();
        for (int r = 0; r <= p.rounds && !isnan(measured[r]); r++) json_number(measured[r]);
        json_end_array();
        json_knum("kld", final_kld);
        json_kint("tensors", T);
        json_kstr("granularity", p.granularity ? p.granularity : "tensor");
        if (score_eval) {
            json_knum("eval_ppl", ev.ppl);
            json_knum("eval_kld", ev.kld);
            json_kint("eval_tokens", ev.tokens);
        }
        json_kint("scored_tokens", p.s.tokens);
        json_key("rank_correlation"); /* Spearman, each proxy against the KL over every measured pair */
        json_begin_object();
        for (int k = 0; k < PLAN_N_PROXIES; k++) json_knum(plan_proxy_names[k], rho[k]);
        json_end_object();
        json_knum("seconds", lb_now() - p.t0);
        json_kint("peak_rss", lb_peak_rss());
        plan_json(&p, choice);
        json_end_object();
        json_done();
    } else if (rc == CLI_OK) {
        plan_print_choice(&p, choice);
        printf("%s: %.4f bpw over %d tensors (budget %.4f); KL on %lld calibration tokens: %.5f summed over the "
               "tensors alone", out, bits / p.weights, T, budget / p.weights, (long long)p.s.tokens, alone);
        for (int r = 0; r <= p.rounds && !isnan(measured[r]); r++)
            printf(r ? ", %.5f after round %d" : ", %.5f measured for the first plan", measured[r], r);
        printf("; proxies' rank correlation with the KL:");
        for (int k = 0; k < PLAN_N_PROXIES; k++) printf(" %s %.3f", plan_proxy_names[k], rho[k]);
        if (score_eval)
            printf("; evaluation split (%lld tokens, f32 products): ppl %.4f, KL %.5f", (long long)ev.tokens, ev.ppl,
                   ev.kld);
        printf("; %.1fs\n", lb_now() - p.t0);
    }
    lb_plan_free(&chosen);
    lb_free(choice);
    plan_free(&p);
    return rc;
}
