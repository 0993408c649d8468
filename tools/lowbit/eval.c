/* lowbit eval: perplexity, and KL divergence / top-1 agreement against a
 * reference model, always printed with text, protocol, context and tokens. */
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char *eval_help =
    "usage: lowbit eval MODEL --text FILE [--protocol docs|chunks] [--ctx N] [--ref MODEL]\n"
    "                   [--split all|calib|eval] [--calib-blocks N] [--stream auto|on|off]\n\n"
    "  --text FILE        UTF-8 text, split into blocks at blank lines\n"
    "  --protocol P       docs (default): each block scored alone from BOS, at most --ctx tokens\n"
    "                     chunks: llama.cpp's llama-perplexity: the text tokenized once, cut into\n"
    "                     chunks of --ctx tokens (first token BOS), the second half of each scored\n"
    "  --ctx N            docs: default the model's context; chunks: default 256\n"
    "  --split S          all (default), calib (the first --calib-blocks blocks), eval (the rest)\n"
    "  --calib-blocks N   size of the calibration split (default 128)\n"
    "  --ref MODEL        reference model: adds the mean KL(ref || model) per token and the\n"
    "                     top-1 agreement of the two models' next-token predictions\n"
    "  --stream S         on: each block's memory-mapped weight pages are given back after it runs,\n"
    "                     so about one block per thread stays resident (re-read from the page cache\n"
    "                     next time: the same results); off: the model stays resident; auto (default):\n"
    "                     on when the model (and --ref) stores more than a quarter of the RAM\n"
    "  --tokenizer FILE   llama2.c tokenizer (default: tok<vocab>.bin beside MODEL)\n"
    "  --json             one JSON object on stdout: ppl nll tokens sequences protocol ctx split\n"
    "                     text bpw bpw_all [kld top1] seconds peak_rss streamed\n"
    "                     tokens_per_second (through the forward pass, both models with --ref)\n"
    "                     kernels (the matmul kernels of MODEL's linears)\n";

int cmd_eval(int argc, char **argv) {
    cli_args a = {.argc = argc, .argv = argv, .i = 1, .verb = "eval"};
    const char *text_path = NULL, *protocol = "docs", *ctx = NULL, *ref_path = NULL, *split = "all", *calib = "128",
               *tokenizer = NULL, *stream = "auto";
    while (a.i < argc) {
        int r;
        if ((r = cli_option(&a, "--text", NULL, &text_path)) || (r = cli_option(&a, "--protocol", NULL, &protocol)) ||
            (r = cli_option(&a, "--ctx", NULL, &ctx)) || (r = cli_option(&a, "--ref", NULL, &ref_path)) ||
            (r = cli_option(&a, "--split", NULL, &split)) || (r = cli_option(&a, "--calib-blocks", NULL, &calib)) ||
            (r = cli_option(&a, "--tokenizer", NULL, &tokenizer)) || (r = cli_option(&a, "--stream", NULL, &stream))) {
            if (r < 0) return CLI_USAGE;
            continue;
        }
        if ((r = cli_unknown(&a)) != 0) return r;
    }
    if (a.help) {
        fputs(eval_help, stdout);
        return CLI_OK;
    }
    if (a.n_positional != 1) return cli_usage_error("eval", "expected one MODEL");
    if (!text_path) return cli_usage_error("eval", "missing --text FILE");
    lb_eval_opts o = {0};
    long v;
    if (lb_protocol_parse(protocol, &o.protocol) != LB_OK || lb_split_parse(split, &o.split) != LB_OK)
        return cli_usage_error("eval", "%s", lb_last_error());
    if (ctx) {
        if (cli_parse_int("eval", "--ctx", ctx, 2, 1 << 22, &v)) return CLI_USAGE;
        o.ctx = (int)v;
    }
    if (cli_parse_int("eval", "--calib-blocks", calib, 1, 1 << 30, &v)) return CLI_USAGE;
    if (strcmp(stream, "auto") && strcmp(stream, "on") && strcmp(stream, "off"))
        return cli_usage_error("eval", "--stream is auto, on or off, not '%s'", stream);
    o.calib_blocks = (int)v;

    lb_text text;
    if (lb_text_load(text_path, &text) != LB_OK) return cli_error("eval", NULL);
    lb_model *m = NULL, *ref = NULL;
    int rc = cli_load_model("eval", a.positional[0], tokenizer, &m);
    if (rc == CLI_OK && ref_path) rc = cli_load_model("eval", ref_path, NULL, &ref);
    lb_eval_result r;
    o.ref = ref;
    if (rc == CLI_OK) { /* docs/SCALING.md, "Streaming": releasing costs minor faults, a model that fits stays */
        lb_model_size sm, sr = {0};
        lb_model_sizes(m, &sm);
        if (ref) lb_model_sizes(ref, &sr);
        long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        double ram = pages > 0 && page > 0 ? (double)pages * (double)page : 0;
        o.stream = !strcmp(stream, "on") || (!strcmp(stream, "auto") && ram > 0 &&
                                             (double)(sm.bytes_all + sr.bytes_all) > ram / 4);
    }
    if (rc == CLI_OK && lb_evaluate(m, &text, &o, &r) != LB_OK) rc = cli_error("eval", NULL);
    if (rc == CLI_OK) {
        int first, end;
        lb_text_split(&text, o.split, o.calib_blocks, &first, &end);
        lb_model_size sz;
        lb_model_sizes(m, &sz);
        if (a.json) {
            json_begin_object();
            json_kstr("model", a.positional[0]);
            json_kstr("text", text_path);
            json_kstr("split", lb_split_name(o.split));
            json_key("blocks");
            json_begin_array();
            json_int(first + 1);
            json_int(end);
            json_end_array();
            json_kstr("protocol", lb_protocol_name(o.protocol));
            json_kint("ctx", r.ctx);
            json_knum("ppl", r.ppl);
            json_knum("nll", r.nll);
            json_kint("tokens", r.tokens);
            json_kint("sequences", r.sequences);
            json_knum("bpw", sz.bpw);
            json_knum("bpw_all", sz.bpw_all);
            if (ref) {
                json_kstr("ref", ref_path);
                json_knum("kld", r.kld);
                json_knum("top1", r.top1);
            }
            json_knum("seconds", r.seconds);
            json_kint("peak_rss", lb_peak_rss());
            json_kbool("streamed", o.stream);
            /* every token through the forward pass (scored or context), per model */
            json_knum("tokens_per_second", r.seconds > 0 ? (double)r.tokens_processed * (ref ? 2 : 1) / r.seconds : NAN);
            char kernels[256];
            json_kstr("kernels", cli_model_kernels(m, kernels, sizeof kernels));
            json_end_object();
            json_done();
        } else {
            char tk[32];
            printf("text %s, split %s (blocks %d..%d), protocol %s, ctx %d: %s predicted tokens in %lld sequences\n",
                   text_path, lb_split_name(o.split), first + 1, end, lb_protocol_name(o.protocol), r.ctx,
                   fmt_thousands(r.tokens, tk, sizeof tk), (long long)r.sequences);
            printf("ppl %.4f (nll %.6f nats/token)", r.ppl, r.nll);
            if (sz.weights_quant) printf(", %.4f bpw quantized", sz.bpw);
            printf(", %.4f bpw whole model\n", sz.bpw_all);
            if (ref) printf("vs %s: KLD %.6f nats/token, top-1 agreement %.4f\n", ref_path, r.kld, r.top1);
            char kernels[256];
            printf("%.2fs (%.0f tokens/s through the forward pass%s; kernels %s)\n", r.seconds,
                   (double)r.tokens_processed * (ref ? 2 : 1) / r.seconds, ref ? ", both models" : "",
                   cli_model_kernels(m, kernels, sizeof kernels));
        }
    }
    lb_model_free(m);
    lb_model_free(ref);
    lb_text_free(&text);
    return rc;
}
