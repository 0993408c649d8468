/* lowbit train: fine-tune a model's fp32 weights on the training split of a
 * text (backpropagation + AdamW, lowbit/train.h), print progress, write the
 * result as GGUF atomically. The evaluation split is never read. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <string.h>
#include <sys/resource.h>

#include "cli.h"

static const char *train_help =
    "usage: lowbit train MODEL --text FILE -o OUT [--split train] [--calib-blocks N] [--steps N] [--batch B]\n"
    "                    [--ctx T] [--lr X] [--min-lr X] [--warmup N] [--weight-decay X] [--grad-clip X]\n"
    "                    [--seed N] [--log-every N] [--qat SCHEME [--format SPEC] [--stochastic]]\n"
    "                    [--act-bits 8] [--grad-bits 8 [--grad-scale token|tensor] [--grad-round nearest|stochastic]]\n\n"
    "Fine-tunes every tensor of an fp32 MODEL (llama2.c or GGUF, no quantized tensors or linear slots)\n"
    "by backpropagation and AdamW on the training split of FILE, and writes OUT, one GGUF file,\n"
    "atomically (nothing is left behind on failure). The blocks of the split are tokenized as\n"
    "BOS + block and concatenated; each step reads B windows of T + 1 tokens at seeded random\n"
    "offsets. docs/TRAINING.md has the math.\n\n"
    "  -o, --output OUT    the GGUF file to write\n"
    "  --text FILE         UTF-8 text, split into blocks at blank lines\n"
    "  --split S           train (default; also 'calib'): the first --calib-blocks blocks. 'eval' and\n"
    "                      'all' (which contains eval) are refused: evaluation text is never trained on\n"
    "  --calib-blocks N    size of the training (calibration) split (default 128, as lowbit eval's)\n"
    "  --steps N           optimizer steps (default 100)\n"
    "  --batch B           sequences per step (default 8)\n"
    "  --ctx T             tokens per sequence (default 128, at most the model's context)\n"
    "  --lr X              peak learning rate (default 3e-4)\n"
    "  --min-lr X          learning rate at the last step, cosine from --lr (default lr/10)\n"
    "  --warmup N          linear warm-up steps (default steps/10)\n"
    "  --weight-decay X    AdamW's decoupled weight decay on matrices, not norms (default 0.1)\n"
    "  --grad-clip X       clip the global gradient norm to X, 0: off (default 1)\n"
    "  --seed N            batch sampling seed (default 1)\n"
    "  --log-every N       a progress line every N steps (default steps/20, at least 1)\n"
    "  --tokenizer FILE    llama2.c tokenizer (default: tok<vocab>.bin beside MODEL)\n"
    "  --qat SCHEME        quantization-aware training of every linear (embedding, norms and classifier\n"
    "                      stay fp32): the forward uses the weights quantized to --format, the backward a\n"
    "                      straight-through estimator, learned scales train with AdamW (no decay). OUT is\n"
    "                      a normal quantized model in that format, decoding to the trained forward's weights.\n"
    "                      ste (any format, round-to-nearest), binaryconnect, bwn, xnor (binary:row),\n"
    "                      twn (ternary:row), bitnet (ternary:tensor, int8 activations), ttq (lut2:tensor),\n"
    "                      paretoq (int2:row:asym; also binary, ternary, int<b> sym), onebit (onebit);\n"
    "                      the format in parentheses is the default\n"
    "  --format SPEC       the stored format the scheme writes (docs/FORMATS.md)\n"
    "  --stochastic        binaryconnect: stochastic binarization (P(+1) = hard sigmoid)\n"
    "  --act-bits B        fake-quantize every linear's input to B bits (4..8), per-token absmax, STE;\n"
    "                      OUT gets the matching activation quantizer (bitnet: 8 always)\n"
    "  --grad-bits B       quantize every linear's output gradient to B bits (2..16) in the backward\n"
    "  --grad-scale S      token (default: absmax per row of the gradient) or tensor\n"
    "  --grad-round R      nearest (default) or stochastic (unbiased) rounding of gradients\n"
    "  --json              one JSON object on stdout: model output text split blocks tokens steps batch\n"
    "                      ctx lr ... log (step loss lr grad_norm tokens_per_second) first_loss last_loss\n"
    "                      seconds tokens_per_second trainer_bytes peak_rss_bytes\n";

typedef struct {
    int step;
    double loss, grad_norm, tps;
    float lr;
} log_row;

static long long peak_rss_bytes(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return -1;
    return (long long)ru.ru_maxrss * 1024; /* Linux: kilobytes */
}

int cmd_train(int argc, char **argv) {
    cli_args a = {.argc = argc, .argv = argv, .i = 1, .verb = "train"};
    const char *text_path = NULL, *out = NULL, *split_text = "train", *calib = "128", *tokenizer = NULL;
    const char *steps = NULL, *batch = NULL, *ctx = NULL, *lr = NULL, *min_lr = NULL, *warmup = NULL, *wd = NULL,
               *clip = NULL, *seed = NULL, *log_every = NULL, *qat = NULL, *format = NULL, *act_bits = NULL,
               *grad_bits = NULL, *grad_scale = "token", *grad_round = "nearest";
    int stochastic = 0;
    while (a.i < argc) {
        int r;
        if ((r = cli_option(&a, "--text", NULL, &text_path)) || (r = cli_option(&a, "--output", "-o", &out)) ||
            (r = cli_option(&a, "--split", NULL, &split_text)) || (r = cli_option(&a, "--calib-blocks", NULL, &calib)) ||
            (r = cli_option(&a, "--tokenizer", NULL, &tokenizer)) || (r = cli_option(&a, "--steps", NULL, &steps)) ||
            (r = cli_option(&a, "--batch", NULL, &batch)) || (r = cli_option(&a, "--ctx", NULL, &ctx)) ||
            (r = cli_option(&a, "--lr", NULL, &lr)) || (r = cli_option(&a, "--min-lr", NULL, &min_lr)) ||
            (r = cli_option(&a, "--warmup", NULL, &warmup)) || (r = cli_option(&a, "--weight-decay", NULL, &wd)) ||
            (r = cli_option(&a, "--grad-clip", NULL, &clip)) || (r = cli_option(&a, "--seed", NULL, &seed)) ||
            (r = cli_option(&a, "--log-every", NULL, &log_every)) || (r = cli_option(&a, "--qat", NULL, &qat)) ||
            (r = cli_option(&a, "--format", NULL, &format)) || (r = cli_option(&a, "--act-bits", NULL, &act_bits)) ||
            (r = cli_option(&a, "--grad-bits", NULL, &grad_bits)) ||
            (r = cli_option(&a, "--grad-scale", NULL, &grad_scale)) ||
            (r = cli_option(&a, "--grad-round", NULL, &grad_round))) {
            if (r < 0) return CLI_USAGE;
            continue;
        }
        if (!strcmp(argv[a.i], "--stochastic")) {
            stochastic = 1;
            a.i++;
            continue;
        }
        if ((r = cli_unknown(&a)) != 0) return r;
    }
    if (a.help) {
        fputs(train_help, stdout);
        return CLI_OK;
    }
    if (a.n_positional != 1) return cli_usage_error("train", "expected one MODEL");
    if (!text_path) return cli_usage_error("train", "missing --text FILE");
    if (!out) return cli_usage_error("train", "missing -o OUT");
    lb_split split;
    if (!strcmp(split_text, "train")) split = LB_SPLIT_CALIB;
    else if (lb_split_parse(split_text, &split) != LB_OK)
        return cli_usage_error("train", "unknown split '%s' (train, also called calib)", split_text);
    if (split != LB_SPLIT_CALIB)
        return cli_usage_error("train", "--split %s: training reads only the training split ('train', the first "
                                        "--calib-blocks blocks); the evaluation split is kept for measuring%s",
                               split_text, split == LB_SPLIT_ALL ? ", and 'all' contains it" : "");

    lb_train_opts o;
    lb_train_opts_default(&o);
    long v, calib_blocks, every = 0;
    double d;
    if (cli_parse_int("train", "--calib-blocks", calib, 1, 1 << 30, &calib_blocks)) return CLI_USAGE;
    if (steps && cli_parse_int("train", "--steps", steps, 1, 100000000, &v)) return CLI_USAGE;
    if (steps) o.steps = (int)v;
    if (batch && cli_parse_int("train", "--batch", batch, 1, 65536, &v)) return CLI_USAGE;
    if (batch) o.batch = (int)v;
    if (ctx && cli_parse_int("train", "--ctx", ctx, 1, 1 << 20, &v)) return CLI_USAGE;
    if (ctx) o.ctx = (int)v;
    if (warmup && cli_parse_int("train", "--warmup", warmup, 0, 100000000, &v)) return CLI_USAGE;
    if (warmup) o.warmup = (int)v;
    if (seed && cli_parse_int("train", "--seed", seed, 0, 0x7fffffffL, &v)) return CLI_USAGE;
    if (seed) o.seed = (uint64_t)v;
    if (log_every && cli_parse_int("train", "--log-every", log_every, 1, 100000000, &every)) return CLI_USAGE;
    if (lr && cli_parse_float("train", "--lr", lr, 1e-12, 10, &d)) return CLI_USAGE;
    if (lr) o.lr = (float)d;
    if (min_lr && cli_parse_float("train", "--min-lr", min_lr, 0, 10, &d)) return CLI_USAGE;
    if (min_lr) o.min_lr = (float)d;
    if (wd && cli_parse_float("train", "--weight-decay", wd, 0, 10, &d)) return CLI_USAGE;
    if (wd) o.weight_decay = (float)d;
    if (clip && cli_parse_float("train", "--grad-clip", clip, 0, 1e9, &d)) return CLI_USAGE;
    if (clip) o.grad_clip = (float)d;
    if (!every) every = o.steps / 20 > 0 ? o.steps / 20 : 1;
    o.qat = qat;
    o.format = format;
    o.stochastic = stochastic;
    if (act_bits && cli_parse_int("train", "--act-bits", act_bits, 4, 8, &v)) return CLI_USAGE;
    if (act_bits) o.act_bits = (int)v;
    if (grad_bits && cli_parse_int("train", "--grad-bits", grad_bits, 2, 16, &v)) return CLI_USAGE;
    if (grad_bits) o.grad_bits = (int)v;
    if (strcmp(grad_scale, "token") && strcmp(grad_scale, "tensor"))
        return cli_usage_error("train", "--grad-scale must be token or tensor, not '%s'", grad_scale);
    o.grad_per_tensor = !strcmp(grad_scale, "tensor");
    if (strcmp(grad_round, "nearest") && strcmp(grad_round, "stochastic"))
        return cli_usage_error("train", "--grad-round must be nearest or stochastic, not '%s'", grad_round);
    o.grad_stochastic = !strcmp(grad_round, "stochastic");
    if (format && !qat) return cli_usage_error("train", "--format needs --qat SCHEME (which scheme writes it)");
    if (stochastic && (!qat || strcmp(qat, "binaryconnect")))
        return cli_usage_error("train", "--stochastic is binaryconnect's option (--qat binaryconnect)");

    /* before the work: an unusable -o fails now, not after training */
    const char *inputs[3] = {a.positional[0], tokenizer, text_path};
    if (lb_output_check(out, inputs, 3) != LB_OK) return cli_error("train", NULL);
    lb_text text;
    if (lb_text_load(text_path, &text) != LB_OK) return cli_error("train", NULL);
    lb_model *m = NULL;
    lb_trainer *t = NULL;
    lb_train_data data = {0};
    int *tokens = NULL;
    log_row *log = NULL;
    int n_log = 0, rc = cli_load_model("train", a.positional[0], tokenizer, &m);
    if (rc == CLI_OK && lb_train_data_load(m, &text, split, (int)calib_blocks, &data) != LB_OK)
        rc = cli_error("train", NULL);
    if (rc == CLI_OK && lb_trainer_create(m, &o, &t) != LB_OK) rc = cli_error("train", NULL);
    if (rc == CLI_OK) {
        tokens = lb_alloc((size_t)o.batch * (o.ctx + 1) * sizeof(int));
        log = lb_alloc(((size_t)o.steps / (size_t)every + 2) * sizeof *log);
        if (!tokens || !log) rc = cli_error("train", "out of memory");
    }
    if (rc == CLI_OK && !a.json)
        printf("train %s on %s, split train (blocks 1..%d, %zu tokens): %d steps of %d x %d tokens, lr %g -> %g, "
               "warm-up %d, weight decay %g, clip %g, seed %llu, %d threads\n",
               a.positional[0], text_path, data.end_block, data.n, o.steps, o.batch, o.ctx, (double)o.lr,
               (double)(o.min_lr >= 0 ? o.min_lr : o.lr / 10), o.warmup >= 0 ? o.warmup : o.steps / 10,
               (double)o.weight_decay, (double)o.grad_clip, (unsigned long long)o.seed, lb_get_threads());
    if (rc == CLI_OK && !a.json && (qat || o.act_bits || o.grad_bits))
        printf("quantization-aware: scheme %s, format %s, activations %s, gradients %s\n", qat ? qat : "none (fp32 weights)",
               qat ? (format ? format : lb_qat_default_format_name(qat)) : "f32",
               o.act_bits || (qat && !strcmp(qat, "bitnet")) ? "quantized per token" : "fp32",
               o.grad_bits ? (o.grad_per_tensor ? "quantized, per tensor" : "quantized, per token") : "fp32");
    lb_rng rng;
    lb_rng_seed(&rng, o.seed);
    double t0 = lb_now(), t_log = t0, first_loss = NAN, last_loss = NAN;
    int since_log = 0;
    for (int s = 0; rc == CLI_OK && s < o.steps; s++) {
        lb_train_step_info info;
        if (lb_train_data_batch(&data, o.batch, o.ctx, &rng, tokens) != LB_OK ||
            lb_trainer_step(t, tokens, &info) != LB_OK) {
            rc = cli_error("train", NULL);
            break;
        }
        if (s == 0) first_loss = info.loss;
        last_loss = info.loss;
        since_log++;
        if ((s + 1) % every == 0 || s == 0 || s == o.steps - 1) {
            double now = lb_now();
            log_row *r = &log[n_log++];
            r->step = s + 1;
            r->loss = info.loss;
            r->lr = info.lr;
            r->grad_norm = info.grad_norm;
            r->tps = (double)since_log * o.batch * o.ctx / (now - t_log);
            t_log = now;
            since_log = 0;
            if (!a.json) {
                printf("step %6d/%d  loss %.4f  lr %.3e  grad norm %7.3f  %8.0f tokens/s\n", r->step, o.steps, r->loss,
                       (double)r->lr, r->grad_norm, r->tps);
                fflush(stdout);
            }
        }
    }
    double seconds = lb_now() - t0;
    if (rc == CLI_OK) {
        snprintf(m->quant_note, sizeof m->quant_note,
                 "lowbit train: %d steps of %d x %d tokens on the training split (blocks 1..%d) of %.120s, lr %g%s%.20s",
                 o.steps, o.batch, o.ctx, data.end_block, text_path, (double)o.lr, qat ? ", qat " : "", qat ? qat : "");
        if (lb_trainer_store(t, m) != LB_OK || lb_model_save_gguf(m, out) != LB_OK) rc = cli_error("train", NULL);
    }
    if (rc == CLI_OK) {
        double tps = (double)o.steps * o.batch * o.ctx / seconds;
        size_t bytes = lb_trainer_bytes(t);
        long long rss = peak_rss_bytes();
        if (a.json) {
            json_begin_object();
            json_kstr("model", a.positional[0]);
            json_kstr("output", out);
            json_kstr("text", text_path);
            json_kstr("split", "train");
            json_key("blocks");
            json_begin_array();
            json_int(data.first_block + 1);
            json_int(data.end_block);
            json_end_array();
            json_kint("tokens", (long long)data.n);
            json_kint("steps", o.steps);
            json_kint("batch", o.batch);
            json_kint("ctx", o.ctx);
            json_knum("lr", o.lr);
            json_kint("seed", (long long)o.seed);
            json_kstr("qat", qat ? qat : "none");
            json_kstr("format", qat ? (format ? format : lb_qat_default_format_name(qat)) : "f32");
            json_kint("act_bits", o.act_bits);
            json_kint("grad_bits", o.grad_bits);
            json_kint("threads", lb_get_threads());
            json_key("log");
            json_begin_array();
            for (int i = 0; i < n_log; i++) {
                json_begin_object();
                json_kint("step", log[i].step);
                json_knum("loss", log[i].loss);
                json_knum("lr", log[i].lr);
                json_knum("grad_norm", log[i].grad_norm);
                json_knum("tokens_per_second", log[i].tps);
                json_end_object();
            }
            json_end_array();
            json_knum("first_loss", first_loss);
            json_knum("last_loss", last_loss);
            json_knum("seconds", seconds);
            json_knum("tokens_per_second", tps);
            json_kint("trainer_bytes", (long long)bytes);
            json_kint("peak_rss_bytes", rss);
            json_end_object();
            json_done();
        } else {
            printf("done: %d steps in %.1fs, %.0f tokens/s (%d threads); loss %.4f -> %.4f (per-batch, training "
                   "split)\n",
                   o.steps, seconds, tps, lb_get_threads(), first_loss, last_loss);
            printf("memory: trainer %.1f MB (parameters, gradients, AdamW moments, activations), peak RSS %.1f MB\n",
                   (double)bytes / 1e6, (double)rss / 1e6);
            printf("wrote %s\n", out);
        }
    }
    lb_free(tokens);
    lb_free(log);
    lb_train_data_free(&data);
    lb_trainer_free(t);
    lb_model_free(m);
    lb_text_free(&text);
    return rc;
}
