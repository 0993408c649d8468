/* lowbit tune: the smallest file that meets a quality target.
 *
 * Measures the candidates as `lowbit plan` does (plan_cli.h), then searches
 * the mixes for the smallest that meets --max-kld or --max-ppl-ratio on the
 * calibration split (lb_plan_tune: bisection over the budget, and falling
 * back from the cheapest mix), writes it, and only then scores the written
 * model on the evaluation split, reported apart: nothing is tuned on it.
 * Each candidate used for every tensor (the uniform mixes) is measured too,
 * so the answer can be set against the best uniform file that meets the
 * target. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <string.h>
#include <sys/stat.h>

#include "plan_cli.h"

static const char *tune_help =
    "usage: lowbit tune MODEL (--max-kld X | --max-ppl-ratio R) -o OUT.gguf [--save-recipe FILE]\n"
    "                   [--candidates LIST] [--tensors LIST] [--keep PATTERN=SPEC[,...]]... [--refine N]\n"
    "                   [--granularity tensor|layer] [--fisher]\n"
    "                   [--calib TEXT] [--calib-blocks N] [--table FILE.md] [--svg FILE.svg] [--heat SPEC] [--json]\n\n"
    "Finds the smallest mix of the candidates (one per tensor) whose KL divergence to MODEL, or\n"
    "perplexity over MODEL's, meets the target on the calibration split, writes it as OUT.gguf,\n"
    "and reports the written file's figures on the evaluation split separately (nothing is tuned\n"
    "on evaluation data).\n\n"
    "  --max-kld X        mean KL divergence per token at most X (nats)\n"
    "  --max-ppl-ratio R  perplexity at most R x the model's (both may be given)\n"
    "  -o, --output FILE  the quantized model (GGUF)\n"
    "  --save-recipe FILE the chosen mix as a recipe\n"
    "  --refine N         refinement rounds at each budget the bisection tries (default 1)\n"
    "  --candidates, --tensors, --keep, --granularity, --fisher, --calib, --calib-blocks, --table, --svg,\n"
    "  --heat             as lowbit plan\n"
    "                     (lowbit plan --help); the default candidates are plan's\n"
    "  --json             one JSON object: the target, the chosen mix (bits, calibration KL and ratio,\n"
    "                     evaluation KL and ratio), each search's result, the uniform mixes\n\n"
    "Searches: bisection over the bit budget (plan's knapsack and refinement at each budget), and\n"
    "fallback from the cheapest mix, upgrading the most sensitive tensors first; the smaller mix\n"
    "that meets the target is written. docs/PLANNING.md.\n";

static void point_json(const char *key, const lb_tune_point *q, double weights, int met) {
    json_key(key);
    if (!met) {
        json_null();
        return;
    }
    json_begin_object();
    json_knum("bpw", q->bits / weights);
    json_knum("kld", q->kld);
    json_knum("ppl_ratio", q->ppl_ratio);
    json_end_object();
}

int cmd_tune(int argc, char **argv) {
    cli_args a = {.argc = argc, .argv = argv, .i = 1, .verb = "tune"};
    plan_ctx p;
    memset(&p, 0, sizeof p);
    p.verb = "tune";
    const char *out = NULL, *kld_text = NULL, *ratio_text = NULL, *save_recipe = NULL;
    while (a.i < argc) {
        int r;
        if ((r = cli_option(&a, "--output", "-o", &out)) || (r = cli_option(&a, "--max-kld", NULL, &kld_text)) ||
            (r = cli_option(&a, "--max-ppl-ratio", NULL, &ratio_text)) ||
            (r = cli_option(&a, "--save-recipe", NULL, &save_recipe)) || (r = plan_option(&p, &a))) {
            if (r < 0) return CLI_USAGE;
            continue;
        }
        if ((r = cli_unknown(&a)) != 0) return r;
    }
    if (a.help) {
        fputs(tune_help, stdout);
        return CLI_OK;
    }
    if (a.n_positional != 1) return cli_usage_error("tune", "expected one MODEL");
    if (!out) return cli_usage_error("tune", "missing -o OUT.gguf");
    if (!kld_text && !ratio_text) return cli_usage_error("tune", "give the target: --max-kld X or --max-ppl-ratio R");
    lb_tune_opts to = {0, 0, 1};
    if (kld_text && cli_parse_float("tune", "--max-kld", kld_text, 1e-9, 100, &to.max_kld)) return CLI_USAGE;
    if (ratio_text && cli_parse_float("tune", "--max-ppl-ratio", ratio_text, 1.000001, 1e6, &to.max_ppl_ratio))
        return CLI_USAGE;
    int rc = plan_prepare(&p, "1");
    to.rounds = (int)p.rounds;
    const char *inputs[2] = {a.positional[0], p.copts.text_path};
    if (rc == CLI_OK && lb_output_check(out, inputs, 2) != LB_OK) rc = cli_error("tune", NULL);
    const char *inputs_r[3] = {a.positional[0], p.copts.text_path, out};
    if (rc == CLI_OK && save_recipe && lb_output_check(save_recipe, inputs_r, 3) != LB_OK) rc = cli_error("tune", NULL);
    if (rc == CLI_OK) rc = plan_measure(&p, a.positional[0], 1);
    int T = p.s.n_tensors, C = p.n_cands;

    /* the uniform mixes: every free candidate on every tensor it can make (pinned tensors as pinned) */
    lb_tune_point uni[PLAN_MAX_CANDS];
    int uni_ok[PLAN_MAX_CANDS] = {0}, uni_met[PLAN_MAX_CANDS] = {0}, best_uni = -1;
    int *choice = lb_calloc((size_t)(T ? T : 1), sizeof *choice);
    if (rc == CLI_OK && !choice) rc = cli_error("tune", "out of memory");
    for (int c = 0; rc == CLI_OK && c < p.n_free; c++) {
        uni_ok[c] = 1;
        for (int t = 0; t < T; t++) {
            int pinned = -1;
            for (int k = p.n_free; k < C; k++)
                if (p.mask[(size_t)t * C + k]) pinned = k;
            choice[t] = pinned >= 0 ? pinned : c;
            if (!p.s.quantized[(size_t)t * C + choice[t]].data) uni_ok[c] = 0;
        }
        if (!uni_ok[c]) continue;
        lb_eval_result r;
        if (lb_plan_measure(&p.so, &p.s, choice, &r) != LB_OK) {
            rc = cli_error("tune", NULL);
            break;
        }
        uni[c] = (lb_tune_point){plan_bits(&p, choice, NULL), r.kld, exp(r.nll - p.s.nll)};
        uni_met[c] = (!(to.max_kld > 0) || r.kld <= to.max_kld) && (!(to.max_ppl_ratio > 0) || uni[c].ppl_ratio <= to.max_ppl_ratio);
        if (uni_met[c] && (best_uni < 0 || uni[c].bits < uni[best_uni].bits)) best_uni = c;
    }
    lb_tune_result tr;
    memset(&tr, 0, sizeof tr);
    if (rc == CLI_OK && lb_plan_tune(&p.so, &p.s, &to, choice, &tr) != LB_OK) rc = cli_error("tune", NULL);

    /* the file: the chosen mix quantized as the recipe would quantize it */
    lb_plan chosen;
    lb_plan_init(&chosen);
    if (rc == CLI_OK) rc = plan_choice(&p, choice, &chosen);
    char header[600];
    snprintf(header, sizeof header, "lowbit tune for %.300s: %.4f bpw over %d tensors, calibration KL %.5g, "
             "perplexity ratio %.5g", a.positional[0], tr.chosen.bits / p.weights, T, tr.chosen.kld,
             tr.chosen.ppl_ratio);
    if (rc == CLI_OK && save_recipe && lb_plan_save_recipe(&chosen, save_recipe, header) != LB_OK)
        rc = cli_error("tune", NULL);
    lb_quantize_report rep;
    memset(&rep, 0, sizeof rep);
    if (rc == CLI_OK && lb_quantize_model_calibrated(p.m, &chosen, p.stats, &rep) != LB_OK) rc = cli_error("tune", NULL);
    if (rc == CLI_OK && lb_model_save_gguf(p.m, out) != LB_OK) rc = cli_error("tune", NULL);
    if (rc == CLI_OK) rc = plan_reports(&p, choice);

    /* then, and only then, the evaluation split: the file as written against the model */
    lb_model *ref = NULL, *file = NULL;
    lb_eval_result ev, fp;
    if (rc == CLI_OK && (lb_model_load(a.positional[0], NULL, &ref) != LB_OK || lb_model_load(out, NULL, &file) != LB_OK))
        rc = cli_error("tune", NULL);
    lb_eval_opts eo = {0};
    eo.split = LB_SPLIT_EVAL;
    eo.calib_blocks = p.copts.calib_blocks;
    if (rc == CLI_OK && lb_evaluate(ref, &p.text, &eo, &fp) != LB_OK) rc = cli_error("tune", NULL);
    eo.ref = ref;
    if (rc == CLI_OK && lb_evaluate(file, &p.text, &eo, &ev) != LB_OK) rc = cli_error("tune", NULL);
    struct stat sb;
    long long bytes = rc == CLI_OK && stat(out, &sb) == 0 ? (long long)sb.st_size : -1;
    if (rc == CLI_OK && a.json) {
        json_begin_object();
        json_kstr("model", a.positional[0]);
        json_kstr("output", out);
        json_key("max_kld");
        if (to.max_kld > 0) json_number(to.max_kld);
        else json_null();
        json_key("max_ppl_ratio");
        if (to.max_ppl_ratio > 0) json_number(to.max_ppl_ratio);
        else json_null();
        json_kstr("strategy", tr.strategy);
        json_knum("bpw", rep.bpw);
        json_kint("file_bytes", bytes);
        json_knum("calib_kld", tr.chosen.kld);
        json_knum("calib_ppl_ratio", tr.chosen.ppl_ratio);
        json_knum("eval_kld", ev.kld);
        json_knum("eval_ppl", ev.ppl);
        json_knum("eval_ppl_ratio", ev.ppl / fp.ppl);
        json_kint("eval_tokens", ev.tokens);
        point_json("bisection", &tr.bisection, p.weights, tr.bisection_met);
        point_json("fallback", &tr.fallback, p.weights, tr.fallback_met);
        json_kint("mixes_measured", tr.bisection_steps + tr.fallback_steps);
        json_key("uniform"); /* each candidate on every tensor: calibration figures, and whether it meets the target */
        json_begin_array();
        for (int c = 0; c < p.n_free; c++) {
            char label[512];
            candidate_label(&p.cands[c], label, sizeof label);
            json_begin_object();
            json_kstr("candidate", label);
            if (uni_ok[c]) {
                json_knum("bpw", uni[c].bits / p.weights);
                json_knum("kld", uni[c].kld);
                json_knum("ppl_ratio", uni[c].ppl_ratio);
                json_kbool("meets", uni_met[c]);
            } else {
                json_key("bpw");
                json_null();
            }
            json_end_object();
        }
        json_end_array();
        json_knum("seconds", lb_now() - p.t0);
        json_kint("peak_rss", lb_peak_rss());
        plan_json(&p, choice);
        json_end_object();
        json_done();
    } else if (rc == CLI_OK) {
        plan_print_choice(&p, choice);
        char b[32], label[512] = "none of them";
        if (best_uni >= 0) candidate_label(&p.cands[best_uni], label, sizeof label);
        printf("%s: %.4f bpw, %s bytes (%s); calibration split: KL %.5f, perplexity ratio %.4f; evaluation split: "
               "KL %.5f, perplexity %.4f = %.4f x the model's (%lld tokens)\n",
               out, rep.bpw, fmt_thousands(bytes, b, sizeof b), tr.strategy, tr.chosen.kld, tr.chosen.ppl_ratio,
               ev.kld, ev.ppl, ev.ppl / fp.ppl, (long long)ev.tokens);
        printf("smallest uniform mix that meets the target on calibration: %s", label);
        if (best_uni >= 0) printf(" at %.4f bpw", uni[best_uni].bits / p.weights);
        printf("; %d mixes measured, %.1fs\n", tr.bisection_steps + tr.fallback_steps, lb_now() - p.t0);
    }
    lb_model_free(ref), lb_model_free(file);
    lb_quantize_report_free(&rep);
    lb_plan_free(&chosen);
    lb_free(choice);
    plan_free(&p);
    return rc;
}
