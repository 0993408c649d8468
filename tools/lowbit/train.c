/* lowbit train: fine-tune a model's fp32 weights (or train one from a
 * config) on the training split of a text and/or on text the model itself
 * generates, by cross-entropy or distillation to the fp32 teacher
 * (backpropagation + AdamW, lowbit/train.h); progress lines with the
 * evaluation split's perplexity every N steps; checkpoints to resume from;
 * the result written as GGUF atomically. The evaluation split is only ever
 * evaluated, never trained on. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <string.h>
#include <sys/resource.h>

#include "cli.h"
#include "model/model_internal.h" /* lb_model_alloc, lb_model_finish: a model from a config (--config) */

static const char *train_help =
    "usage: lowbit train MODEL --text FILE -o OUT [--split train] [--calib-blocks N] [--steps N] [--batch B]\n"
    "                    [--ctx T] [--lr X] [--min-lr X] [--warmup N] [--weight-decay X] [--grad-clip X]\n"
    "                    [--seed N] [--log-every N] [--distill kl|kl+mse|none] [--temperature T]\n"
    "                    [--mse-weight W] [--teacher-text N [--mix] [--teacher-seed S] [--teacher-top-p P]]\n"
    "                    [--eval-every N [--eval-blocks N]] [--checkpoint FILE --save-every N] [--resume FILE]\n"
    "                    [--qat SCHEME [--format SPEC] [--stochastic]]\n"
    "                    [--act-bits 8] [--grad-bits 8 [--grad-scale token|tensor] [--grad-round nearest|stochastic]]\n"
    "                    [--lora RANK [--lora-alpha A] [--merge METHOD]]\n"
    "       lowbit train --from MODEL ...            (the same: MODEL as an option)\n"
    "       lowbit train --config SPEC --tokenizer FILE --text FILE -o OUT ...   (from scratch)\n\n"
    "Trains every tensor of an fp32 MODEL (llama2.c or GGUF, no quantized tensors or linear slots)\n"
    "by backpropagation and AdamW and writes OUT, one GGUF file, atomically (nothing is left behind\n"
    "on failure). The training stream: the blocks of the training split of FILE, each tokenized as\n"
    "BOS + block, concatenated; or text the model generates (--teacher-text), or both (--mix). Each\n"
    "step reads B windows of T + 1 tokens at seeded random offsets. docs/TRAINING.md has the math.\n\n"
    "  -o, --output OUT    the GGUF file to write\n"
    "  --from MODEL        the model to start from (the same as the positional MODEL)\n"
    "  --config SPEC       train from scratch: comma-separated key=value, dim= hidden= layers= heads=\n"
    "                      kv_heads= (default heads) seq_len= (default 256) vocab= (default the\n"
    "                      tokenizer's) tied= (0/1, default 1) init_std= (default 0.02) init_seed=\n"
    "                      (default 1); needs --tokenizer (llama2.c tok*.bin, or a GGUF model's)\n"
    "  --text FILE         UTF-8 text, split into blocks at blank lines\n"
    "  --split S           train (default; also 'calib'): the first --calib-blocks blocks. 'eval' and\n"
    "                      'all' (which contains eval) are refused: evaluation text is never trained on\n"
    "  --calib-blocks N    size of the training (calibration) split (default 128, as lowbit eval's)\n"
    "  --steps N           optimizer steps (default 100)\n"
    "  --batch B           sequences per step (default 8); under mpirun per rank: a step reads B x ranks,\n"
    "                      the gradients averaged over the ranks (docs/SCALING.md, \"MPI\")\n"
    "  --ctx T             tokens per sequence (default 128, at most the model's context)\n"
    "  --lr X              peak learning rate (default 3e-4)\n"
    "  --min-lr X          learning rate at the last step, cosine from --lr (default lr/10)\n"
    "  --warmup N          linear warm-up steps (default steps/10)\n"
    "  --weight-decay X    AdamW's decoupled weight decay on matrices, not norms (default 0.1)\n"
    "  --grad-clip X       clip the global gradient norm to X, 0: off (default 1)\n"
    "  --seed N            batch sampling seed (default 1)\n"
    "  --log-every N       a progress line every N steps (default steps/20, at least 1)\n"
    "  --tokenizer FILE    llama2.c tokenizer (default: tok<vocab>.bin beside MODEL)\n";
/* (three strings: one would exceed the 4095 characters C11 promises) */
static const char *train_help2 =
    "Distillation (the teacher: a frozen fp32 copy of MODEL, its logits computed per batch):\n"
    "  --distill L         none (default: cross-entropy on the text's next tokens), kl: KL(teacher ||\n"
    "                      student) of the next-token distributions, mean over tokens, kl+mse: plus\n"
    "                      the MSE of the normalized final hidden states\n"
    "  --temperature T     softmax temperature of both distributions in the KL (default 1; no T^2)\n"
    "  --mse-weight W      weight of the hidden-state MSE in kl+mse (default 1)\n"
    "  --teacher T         the fp32 teacher (of MODEL's shape) for --distill and --teacher-text,\n"
    "                      when not MODEL itself: e.g. the original for a student that has drifted;\n"
    "                      with --config, the model that writes --teacher-text (same vocabulary)\n"
    "  --teacher-text N    train on N tokens the teacher generates (sequences from BOS, sampled as lowbit\n"
    "                      generate: temperature 1, top-p 0.9, seeded) instead of the text's split\n"
    "  --mix               train on the split and the generated tokens, concatenated\n"
    "  --teacher-seed S    sampling seed of the generated text (default 1)\n"
    "  --teacher-top-p P   nucleus mass of the generated text (default 0.9; 1: plain sampling)\n"
    "LoRA recovery (HQQ+): MODEL is a quantized model (any format, linears without slots):\n"
    "  --lora RANK         freeze MODEL as stored and train a rank-RANK adapter alpha B A on each of its\n"
    "                      linears (A random, B 0), the only thing trained, by distillation from the fp32\n"
    "                      --teacher (needs --distill kl or kl+mse, or cross-entropy with --distill none).\n"
    "                      OUT is MODEL with the adapters in its linears' adapter slots (fp16; counted in\n"
    "                      bpw by lowbit eval / info); the forward used those fp16 values\n"
    "  --lora-alpha A      the adapter's scale alpha (default 1)\n"
    "  --merge METHOD      instead, write W + alpha B A requantized into each weight's format by METHOD\n"
    "                      (hqq, rtn, ...; default options, no statistics): no adapter bits in OUT\n"
    "EfficientQAT's phase 2 (E2E-QP): MODEL is quantized in int<b>:g<G> (fp16 scales), e.g. by\n"
    "lowbit quantize --refine blockap (phase 1):\n"
    "  --qat e2eqp         train only each group's step size (a factor on its stored scale and offset),\n"
    "                      codes and zero points frozen, end to end; no --format (OUT keeps MODEL's\n"
    "                      formats and size). Distillation needs the fp32 --teacher\n";
static const char *train_help3 =
    "Quantization-aware training:\n"
    "  --qat SCHEME        quantization-aware training of every linear (embedding, norms and classifier\n"
    "                      stay fp32): the forward uses the weights quantized to --format, the backward a\n"
    "                      straight-through estimator, learned scales train with AdamW (no decay). OUT is\n"
    "                      a normal quantized model in that format, decoding to the trained forward's weights.\n"
    "                      ste (any format, round-to-nearest), binaryconnect, bwn, xnor (binary:row),\n"
    "                      twn (ternary:row), bitnet (ternary:tensor, int8 activations), ttq (lut2:tensor),\n"
    "                      paretoq (int2:row:asym; also binary, ternary, int<b> sym), onebit (onebit),\n"
    "                      e2eqp (MODEL's own formats, above); the format in parentheses is the default\n"
    "  --format SPEC       the stored format the scheme writes (docs/FORMATS.md)\n"
    "  --stochastic        binaryconnect: stochastic binarization (P(+1) = hard sigmoid)\n"
    "  --act-bits B        fake-quantize every linear's input to B bits (4..8), per-token absmax, STE;\n"
    "                      OUT gets the matching activation quantizer (bitnet: 8 always)\n"
    "  --grad-bits B       quantize every linear's output gradient to B bits (2..16) in the backward\n"
    "  --grad-scale S      token (default: absmax per row of the gradient) or tensor\n"
    "  --grad-round R      nearest (default) or stochastic (unbiased) rounding of gradients\n"
    "Evaluation and checkpoints:\n"
    "  --eval-every N      every N steps (and before the first, and after the last) the perplexity of\n"
    "                      the evaluation split of --text (docs protocol, model context), on the\n"
    "                      progress line and in --json; evaluation only, never training data\n"
    "  --eval-blocks N     evaluate only the first N blocks of the evaluation split (quicker looks)\n"
    "  --checkpoint FILE   where --save-every writes the run's state (atomically: FILE.tmp, fsync, rename)\n"
    "  --save-every N      a checkpoint every N steps\n"
    "  --resume FILE       continue the run a checkpoint was written by, from its step: the same\n"
    "                      command with --resume gives the same losses and weights as a run never\n"
    "                      interrupted (the options must be the run's; a checkpoint of another run is\n"
    "                      refused). --checkpoint defaults to FILE\n"
    "  --stop-after N      stop after step N as an interruption would (after its checkpoint), writing\n"
    "                      no OUT: to test resuming, or to train in slices\n"
    "  --json              one JSON object on stdout: model output text split blocks tokens steps batch\n"
    "                      ctx lr seed threads distill temperature mse_weight teacher teacher_tokens resumed_from\n"
    "                      log (step loss ce kl mse lr grad_norm tokens_per_second [eval_ppl]) first_loss\n"
    "                      last_loss eval (ppl tokens blocks, per evaluation) seconds tokens_per_second\n"
    "                      trainer_bytes peak_rss_bytes trained\n\n"
    "OUT's metadata note (lowbit.quant.note, lowbit info) starts with 'lowbit train:' and gives the\n"
    "steps, the loss and the data; lowbit sweep --trained takes such files as rows marked trained.\n";

typedef struct {
    int step;
    double loss, ce, kl, mse, grad_norm, tps, eval_ppl;
    float lr;
} log_row;

/* --config "dim=64,hidden=172,..." */
typedef struct {
    lb_config cfg;
    int tied;
    double init_std;
    long init_seed;
} scratch_config;

static int parse_config(const char *spec, scratch_config *sc) {
    memset(sc, 0, sizeof *sc);
    sc->cfg.seq_len = 256;
    sc->cfg.norm_eps = 1e-5f;
    sc->cfg.rope_theta = 10000.0f;
    sc->tied = 1;
    sc->init_std = 0.02;
    sc->init_seed = 1;
    char buf[512];
    if (strlen(spec) >= sizeof buf) return cli_usage_error("train", "--config: too long");
    snprintf(buf, sizeof buf, "%s", spec);
    char *save = NULL;
    for (char *kv = strtok_r(buf, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq) return cli_usage_error("train", "--config: '%s' is not key=value", kv);
        *eq = 0;
        const char *k = kv, *v = eq + 1;
        struct {
            const char *name;
            int *dst;
            long lo, hi;
        } ints[] = {{"dim", &sc->cfg.dim, 2, 1 << 16},        {"hidden", &sc->cfg.hidden_dim, 1, 1 << 18},
                    {"layers", &sc->cfg.n_layers, 1, 1024},   {"heads", &sc->cfg.n_heads, 1, 1024},
                    {"kv_heads", &sc->cfg.n_kv_heads, 1, 1024}, {"seq_len", &sc->cfg.seq_len, 2, 1 << 20},
                    {"vocab", &sc->cfg.vocab_size, 2, 1 << 22}, {"tied", &sc->tied, 0, 1}};
        int found = 0;
        for (size_t i = 0; i < sizeof ints / sizeof ints[0] && !found; i++)
            if (!strcmp(k, ints[i].name)) {
                long x;
                char opt[64];
                snprintf(opt, sizeof opt, "--config %s", k);
                if (cli_parse_int("train", opt, v, ints[i].lo, ints[i].hi, &x)) return CLI_USAGE;
                *ints[i].dst = (int)x;
                found = 1;
            }
        if (found) continue;
        if (!strcmp(k, "init_std")) {
            if (cli_parse_float("train", "--config init_std", v, 1e-6, 10, &sc->init_std)) return CLI_USAGE;
        } else if (!strcmp(k, "init_seed")) {
            if (cli_parse_int("train", "--config init_seed", v, 0, 0x7fffffffL, &sc->init_seed)) return CLI_USAGE;
        } else
            return cli_usage_error("train", "--config: unknown key '%s' (dim hidden layers heads kv_heads seq_len vocab "
                                            "tied init_std init_seed)",
                                   k);
    }
    if (!sc->cfg.dim || !sc->cfg.hidden_dim || !sc->cfg.n_layers || !sc->cfg.n_heads)
        return cli_usage_error("train", "--config needs dim, hidden, layers and heads");
    if (!sc->cfg.n_kv_heads) sc->cfg.n_kv_heads = sc->cfg.n_heads;
    if (sc->cfg.dim % sc->cfg.n_heads)
        return cli_usage_error("train", "--config: dim %d is not a multiple of heads %d", sc->cfg.dim, sc->cfg.n_heads);
    sc->cfg.head_dim = sc->cfg.dim / sc->cfg.n_heads;
    return CLI_OK;
}

/* an untrained model of the config's shape with the tokenizer: the trainer's
 * values are stored into it (lb_trainer_store) before it is used */
static int scratch_model(scratch_config *sc, const char *tokenizer_path, lb_model **out) {
    *out = NULL;
    lb_tokenizer *tok = NULL;
    size_t len = strlen(tokenizer_path);
    const char *base = strrchr(tokenizer_path, '/');
    base = base ? base + 1 : tokenizer_path;
    int named = 0; /* llama2.c's tok<vocab>.bin names its size */
    if (!sc->cfg.vocab_size && sscanf(base, "tok%d.bin", &named) == 1 && named > 2) sc->cfg.vocab_size = named;
    if (!sc->cfg.vocab_size && !(len > 5 && !strcmp(tokenizer_path + len - 5, ".gguf")))
        return cli_usage_error("train", "a llama2.c tokenizer file does not store its size: give --config vocab=N");
    lb_status st = len > 5 && !strcmp(tokenizer_path + len - 5, ".gguf")
                       ? lb_tokenizer_load_gguf(tokenizer_path, &tok)
                       : lb_tokenizer_load(tokenizer_path, sc->cfg.vocab_size, &tok);
    if (st != LB_OK) return cli_error("train", NULL);
    int tv = lb_tokenizer_vocab_size(tok);
    if (!sc->cfg.vocab_size) sc->cfg.vocab_size = tv;
    if (sc->cfg.vocab_size != tv) {
        lb_tokenizer_free(tok);
        return cli_error("train", "--config vocab=%d but the tokenizer has %d tokens", sc->cfg.vocab_size, tv);
    }
    if (lb_config_validate(&sc->cfg) != LB_OK || lb_model_alloc(&sc->cfg, sc->tied, out) != LB_OK) {
        lb_tokenizer_free(tok);
        return cli_error("train", NULL);
    }
    (*out)->tokenizer = tok;
    snprintf((*out)->source_format, sizeof (*out)->source_format, "gguf");
    return CLI_OK;
}

/* the evaluation split's perplexity of the trainer's current weights, stored into m */
static int evaluate_now(lb_trainer *t, lb_model *m, int *finished, const lb_text *eval_view, int calib_blocks,
                        lb_eval_result *r) {
    if (lb_trainer_store(t, m) != LB_OK) return cli_error("train", NULL);
    if (!*finished) { /* a --config model gets its RoPE tables on the first store */
        if (lb_model_finish(m) != LB_OK) return cli_error("train", NULL);
        *finished = 1;
    }
    lb_eval_opts eo = {.protocol = LB_PROTOCOL_DOCS, .split = LB_SPLIT_EVAL, .calib_blocks = calib_blocks};
    if (lb_evaluate(m, eval_view, &eo, r) != LB_OK) return cli_error("train", NULL);
    return CLI_OK;
}

int cmd_train(int argc, char **argv) {
    cli_args a = {.argc = argc, .argv = argv, .i = 1, .verb = "train"};
    const char *text_path = NULL, *out = NULL, *split_text = "train", *calib = "128", *tokenizer = NULL;
    const char *steps = NULL, *batch = NULL, *ctx = NULL, *lr = NULL, *min_lr = NULL, *warmup = NULL, *wd = NULL,
               *clip = NULL, *seed = NULL, *log_every = NULL, *from = NULL, *config = NULL, *distill = NULL,
               *temperature = NULL, *mse_weight = NULL, *teacher_text = NULL, *teacher_seed = "1",
               *teacher_top_p = "0.9", *eval_every = NULL, *eval_blocks = NULL, *ckpt_path = NULL, *save_every = NULL,
               *resume = NULL, *stop_after = NULL, *teacher_path = NULL, *qat = NULL, *format = NULL,
               *act_bits = NULL, *grad_bits = NULL, *grad_scale = "token", *grad_round = "nearest", *lora = NULL,
               *lora_alpha = NULL, *merge = NULL;
    int mix = 0, stochastic = 0;
    while (a.i < argc) {
        int r;
        if ((r = cli_option(&a, "--text", NULL, &text_path)) || (r = cli_option(&a, "--output", "-o", &out)) ||
            (r = cli_option(&a, "--split", NULL, &split_text)) || (r = cli_option(&a, "--calib-blocks", NULL, &calib)) ||
            (r = cli_option(&a, "--tokenizer", NULL, &tokenizer)) || (r = cli_option(&a, "--steps", NULL, &steps)) ||
            (r = cli_option(&a, "--batch", NULL, &batch)) || (r = cli_option(&a, "--ctx", NULL, &ctx)) ||
            (r = cli_option(&a, "--lr", NULL, &lr)) || (r = cli_option(&a, "--min-lr", NULL, &min_lr)) ||
            (r = cli_option(&a, "--warmup", NULL, &warmup)) || (r = cli_option(&a, "--weight-decay", NULL, &wd)) ||
            (r = cli_option(&a, "--grad-clip", NULL, &clip)) || (r = cli_option(&a, "--seed", NULL, &seed)) ||
            (r = cli_option(&a, "--log-every", NULL, &log_every)) || (r = cli_option(&a, "--from", NULL, &from)) ||
            (r = cli_option(&a, "--config", NULL, &config)) || (r = cli_option(&a, "--distill", NULL, &distill)) ||
            (r = cli_option(&a, "--temperature", NULL, &temperature)) ||
            (r = cli_option(&a, "--mse-weight", NULL, &mse_weight)) ||
            (r = cli_option(&a, "--teacher-text", NULL, &teacher_text)) ||
            (r = cli_option(&a, "--teacher-seed", NULL, &teacher_seed)) ||
            (r = cli_option(&a, "--teacher-top-p", NULL, &teacher_top_p)) ||
            (r = cli_option(&a, "--eval-every", NULL, &eval_every)) ||
            (r = cli_option(&a, "--eval-blocks", NULL, &eval_blocks)) ||
            (r = cli_option(&a, "--checkpoint", NULL, &ckpt_path)) ||
            (r = cli_option(&a, "--save-every", NULL, &save_every)) || (r = cli_option(&a, "--resume", NULL, &resume)) ||
            (r = cli_option(&a, "--stop-after", NULL, &stop_after)) ||
            (r = cli_option(&a, "--teacher", NULL, &teacher_path)) || (r = cli_option(&a, "--qat", NULL, &qat)) ||
            (r = cli_option(&a, "--format", NULL, &format)) || (r = cli_option(&a, "--act-bits", NULL, &act_bits)) ||
            (r = cli_option(&a, "--grad-bits", NULL, &grad_bits)) ||
            (r = cli_option(&a, "--grad-scale", NULL, &grad_scale)) ||
            (r = cli_option(&a, "--grad-round", NULL, &grad_round)) || (r = cli_option(&a, "--lora", NULL, &lora)) ||
            (r = cli_option(&a, "--lora-alpha", NULL, &lora_alpha)) || (r = cli_option(&a, "--merge", NULL, &merge))) {
            if (r < 0) return CLI_USAGE;
            continue;
        }
        if (cli_flag(&a, "--mix")) {
            mix = 1;
            continue;
        }
        if (cli_flag(&a, "--stochastic")) {
            stochastic = 1;
            continue;
        }
        if ((r = cli_unknown(&a)) != 0) return r;
    }
    if (a.help) {
        fputs(train_help, stdout);
        fputs(train_help2, stdout);
        fputs(train_help3, stdout);
        return CLI_OK;
    }
    const char *model_path = from;
    if (from && a.n_positional) return cli_usage_error("train", "MODEL given twice (positional and --from)");
    if (!from && a.n_positional == 1) model_path = a.positional[0];
    if (a.n_positional > 1) return cli_usage_error("train", "expected one MODEL");
    if (config && model_path) return cli_usage_error("train", "--config trains from scratch: give it or a MODEL, not both");
    if (!config && !model_path) return cli_usage_error("train", "expected one MODEL (or --from MODEL, or --config SPEC)");
    if (config && !tokenizer) return cli_usage_error("train", "--config needs --tokenizer FILE (the vocabulary)");
    if (!text_path && !teacher_text) return cli_usage_error("train", "missing --text FILE (or --teacher-text N)");
    if (mix && (!teacher_text || !text_path)) return cli_usage_error("train", "--mix mixes --text's split with --teacher-text");
    if (eval_every && !text_path) return cli_usage_error("train", "--eval-every evaluates on --text's evaluation split");
    if (save_every && !ckpt_path && !resume) return cli_usage_error("train", "--save-every needs --checkpoint FILE");
    if (!ckpt_path) ckpt_path = resume;
    if (stop_after && !ckpt_path) return cli_usage_error("train", "--stop-after needs --checkpoint FILE (or --resume FILE)");
    if (!out && !stop_after) return cli_usage_error("train", "missing -o OUT");
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
    long v, calib_blocks, every = 0, n_teacher = 0, t_seed = 1, e_every = 0, e_blocks = 0, s_every = 0, stop = 0;
    double d, t_top_p = 0.9;
    scratch_config sc;
    if (config && parse_config(config, &sc)) return CLI_USAGE;
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
    if (distill && lb_distill_parse(distill, &o.distill) != LB_OK) return cli_usage_error("train", "--distill: %s", lb_last_error());
    if (temperature && cli_parse_float("train", "--temperature", temperature, 1e-3, 100, &d)) return CLI_USAGE;
    if (temperature) o.temperature = (float)d;
    if (mse_weight && cli_parse_float("train", "--mse-weight", mse_weight, 0, 1e5, &d)) return CLI_USAGE;
    if (mse_weight) o.mse_weight = (float)d;
    if (teacher_text && cli_parse_int("train", "--teacher-text", teacher_text, 1, 1L << 40, &n_teacher)) return CLI_USAGE;
    if (cli_parse_int("train", "--teacher-seed", teacher_seed, 0, 0x7fffffffL, &t_seed)) return CLI_USAGE;
    if (cli_parse_float("train", "--teacher-top-p", teacher_top_p, 0, 1, &t_top_p)) return CLI_USAGE;
    if (eval_every && cli_parse_int("train", "--eval-every", eval_every, 1, 100000000, &e_every)) return CLI_USAGE;
    if (eval_blocks && cli_parse_int("train", "--eval-blocks", eval_blocks, 1, 1 << 30, &e_blocks)) return CLI_USAGE;
    if (save_every && cli_parse_int("train", "--save-every", save_every, 1, 100000000, &s_every)) return CLI_USAGE;
    if (stop_after && cli_parse_int("train", "--stop-after", stop_after, 1, 100000000, &stop)) return CLI_USAGE;
    if (teacher_path && o.distill == LB_DISTILL_NONE && !teacher_text)
        return cli_usage_error("train", "--teacher is for --distill kl|kl+mse or --teacher-text");
    if (config && o.distill != LB_DISTILL_NONE)
        return cli_usage_error("train", "--config trains from scratch with cross-entropy: --distill is for --from MODEL");
    if (config && teacher_text && !teacher_path)
        return cli_usage_error("train", "--config with --teacher-text needs the --teacher MODEL that writes the text");
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
    if (lora && cli_parse_int("train", "--lora", lora, 1, 65536, &v)) return CLI_USAGE;
    if (lora) o.lora_rank = (int)v;
    if (lora_alpha && cli_parse_float("train", "--lora-alpha", lora_alpha, 1e-6, 1e5, &d)) return CLI_USAGE;
    if (lora_alpha) o.lora_alpha = (float)d;
    if ((lora_alpha || merge) && !lora) return cli_usage_error("train", "--lora-alpha and --merge go with --lora RANK");
    if (lora && (qat || o.act_bits || o.grad_bits))
        return cli_usage_error("train", "--lora trains adapters over the stored weights: not with --qat, --act-bits or "
                                        "--grad-bits");
    if (lora && config) return cli_usage_error("train", "--lora adapts a MODEL, not a --config trained from scratch");
    int from_base = lb_qat_scheme_from_base(qat); /* e2eqp: over a quantized MODEL, as --lora */
    if ((lora || from_base) && o.distill != LB_DISTILL_NONE && !teacher_path)
        return cli_usage_error("train", "%s%s with --distill needs the fp32 --teacher (MODEL is quantized)",
                               lora ? "--lora" : "--qat ", lora ? "" : qat);
    if (from_base && format) return cli_usage_error("train", "--qat %s keeps MODEL's formats: no --format", qat);
    if (from_base && config) return cli_usage_error("train", "--qat %s trains a quantized MODEL, not a --config", qat);
    if (merge && !lb_method_find(merge)) {
        char names[512];
        lb_method_list(names, sizeof names);
        return cli_usage_error("train", "--merge: unknown method '%s' (known: %s)", merge, names);
    }

    /* under mpirun: data-parallel, --batch per rank; rank 0 evaluates, saves and prints */
    const lb_comm *comm = cli_comm;
    int ranks = comm->size;
    if (comm->rank != 0 && !freopen("/dev/null", "w", stdout)) return cli_error("train", "cannot silence rank %d", comm->rank);
    /* before the work: an unusable -o or checkpoint fails now, not after training */
    const char *inputs[5] = {model_path, tokenizer, text_path, resume, teacher_path};
    if (out && lb_output_check(out, inputs, 5) != LB_OK) return cli_error("train", NULL);
    if (ckpt_path && (s_every || stop) && lb_output_check(ckpt_path, inputs, 3) != LB_OK) return cli_error("train", NULL);
    lb_text text = {0};
    int have_text = 0;
    if (text_path) {
        if (lb_text_load(text_path, &text) != LB_OK) return cli_error("train", NULL);
        have_text = 1;
    }
    lb_model *m = NULL, *teacher = NULL;
    lb_trainer *t = NULL;
    lb_train_data data = {0};
    int *tokens = NULL, finished = config == NULL;
    log_row *log = NULL;
    lb_eval_result *evals = NULL;
    int n_log = 0, n_evals = 0, rc = CLI_OK, eval_first = 0, eval_end = 0;
    lb_text eval_view;
    if (config) rc = scratch_model(&sc, tokenizer, &m);
    else rc = cli_load_model("train", model_path, tokenizer, &m);
    if (rc == CLI_OK && teacher_path) rc = cli_load_model("train", teacher_path, tokenizer, &teacher);
    if (rc == CLI_OK && teacher && teacher->cfg.vocab_size != m->cfg.vocab_size)
        rc = cli_error("train", "the teacher %s has a vocabulary of %d tokens, the model %d: its text and logits do not fit",
                       teacher_path, teacher->cfg.vocab_size, m->cfg.vocab_size);
    /* the training stream: the split, the teacher's text, or both (split first) */
    if (rc == CLI_OK && have_text && (!teacher_text || mix) &&
        lb_train_data_load(m, &text, split, (int)calib_blocks, &data) != LB_OK)
        rc = cli_error("train", NULL);
    if (rc == CLI_OK && teacher_text) {
        if (!a.json) {
            fprintf(stderr, "lowbit train: generating %ld tokens with %s (temperature 1, top-p %g, seed %ld)\n",
                    n_teacher, teacher_path ? teacher_path : model_path, t_top_p, t_seed);
        }
        double tg = lb_now();
        if (lb_train_data_generate(teacher ? teacher : m, (size_t)n_teacher, 1.0f, (float)t_top_p, (uint64_t)t_seed, &data) != LB_OK)
            rc = cli_error("train", NULL);
        else if (!a.json)
            fprintf(stderr, "lowbit train: %zu tokens generated in %.1fs\n", data.generated, lb_now() - tg);
    }
    if (rc == CLI_OK && e_every) {
        if (lb_text_split(&text, LB_SPLIT_EVAL, (int)calib_blocks, &eval_first, &eval_end) != LB_OK)
            rc = cli_error("train", NULL);
        eval_view = text;
        if (e_blocks && eval_end - eval_first > e_blocks) eval_end = eval_first + (int)e_blocks;
        eval_view.n_blocks = eval_end;
    }
    if (rc == CLI_OK) {
        lb_status st = config ? lb_trainer_create_random(&sc.cfg, sc.tied, (uint64_t)sc.init_seed, (float)sc.init_std,
                                                         &o, &t)
                              : lb_trainer_create(m, &o, &t);
        if (st == LB_OK && teacher && o.distill != LB_DISTILL_NONE) st = lb_trainer_set_teacher(t, teacher);
        if (st != LB_OK) rc = cli_error("train", NULL);
        else lb_trainer_set_comm(t, comm);
    }
    if (rc == CLI_OK) {
        /* every rank draws the whole batch of every rank (one seeded stream) and takes its rows */
        tokens = lb_alloc((size_t)o.batch * ranks * (o.ctx + 1) * sizeof(int));
        /* rows: every N steps, the first and last, every evaluation (and the one before step 1) */
        log = lb_alloc(((size_t)o.steps / (size_t)every + (size_t)(e_every ? o.steps / e_every : 0) + 4) * sizeof *log);
        evals = lb_alloc(((size_t)(e_every ? o.steps / e_every : 0) + 3) * sizeof *evals);
        if (!tokens || !log || !evals) rc = cli_error("train", "out of memory");
    }
    lb_rng rng;
    lb_rng_seed(&rng, o.seed);
    int start = 0;
    if (rc == CLI_OK && resume) {
        if (lb_trainer_load_checkpoint(t, &rng, resume) != LB_OK) rc = cli_error("train", NULL);
        else start = lb_trainer_steps_done(t);
    }
    if (rc == CLI_OK && stop && stop <= start)
        rc = cli_usage_error("train", "--stop-after %ld: the run is at step %d already", stop, start);
    const char *what = config ? config : model_path;
    if (rc == CLI_OK && !a.json) {
        char stream[400];
        if (data.generated && data.generated < data.n)
            snprintf(stream, sizeof stream, "split train (blocks 1..%d) + %zu generated tokens = %zu tokens",
                     data.end_block, data.generated, data.n);
        else if (data.generated)
            snprintf(stream, sizeof stream, "%zu tokens generated by the teacher", data.n);
        else
            snprintf(stream, sizeof stream, "split train (blocks 1..%d, %zu tokens)", data.end_block, data.n);
        printf("train %s%s on %s, %s: %d steps of %d x %d tokens, lr %g -> %g, warm-up %d, weight decay %g, clip %g, "
               "seed %llu, loss %s",
               config ? "from scratch, " : "", what, text_path && (!teacher_text || mix) ? text_path : "teacher text",
               stream, o.steps, o.batch, o.ctx, (double)o.lr, (double)(o.min_lr >= 0 ? o.min_lr : o.lr / 10),
               o.warmup >= 0 ? o.warmup : o.steps / 10, (double)o.weight_decay, (double)o.grad_clip,
               (unsigned long long)o.seed, o.distill == LB_DISTILL_NONE ? "cross-entropy" : lb_distill_name(o.distill));
        if (o.distill == LB_DISTILL_KL)
            printf(" to the fp32 teacher %s (temperature %g)", teacher_path ? teacher_path : "(MODEL)",
                   (double)o.temperature);
        if (o.distill == LB_DISTILL_KL_MSE)
            printf(" to the fp32 teacher %s (temperature %g, MSE weight %g)", teacher_path ? teacher_path : "(MODEL)",
                   (double)o.temperature, (double)o.mse_weight);
        printf(", %d threads\n", lb_get_threads());
        if (ranks > 1)
            printf("data-parallel over %d ranks: %d x %d tokens per rank, %d sequences per step in all, gradients "
                   "averaged in rank order\n", ranks, o.batch, o.ctx, o.batch * ranks);
        if (qat || o.act_bits || o.grad_bits)
            printf("quantization-aware: scheme %s, format %s, activations %s, gradients %s\n", qat ? qat : "none (fp32 weights)",
                   from_base ? "MODEL's own (codes frozen)" : qat ? (format ? format : lb_qat_default_format_name(qat)) : "f32",
                   o.act_bits || (qat && !strcmp(qat, "bitnet")) ? "quantized per token" : "fp32",
                   o.grad_bits ? (o.grad_per_tensor ? "quantized, per tensor" : "quantized, per token") : "fp32");
        if (o.lora_rank) {
            double values = 0, weights = 0;
            for (int l = 0; l < m->cfg.n_layers; l++)
                for (int j = 0; j < LB_N_LINEARS; j++) {
                    const lb_tensor *w = &m->layers[l].linear[j].w;
                    values += (double)o.lora_rank * (double)(w->rows + w->cols);
                    weights += (double)w->rows * (double)w->cols;
                }
            double bits = 16 * values + 32.0 * m->cfg.n_layers * LB_N_LINEARS; /* fp16 A and B, fp32 alpha */
            printf("LoRA: rank %d, alpha %g, over the frozen linears of %s: %.0f adapter values, +%.4f bpw of the "
                   "linears (fp16 A and B, an fp32 alpha each)%s\n",
                   o.lora_rank, (double)o.lora_alpha, model_path, values, bits / weights,
                   merge ? " (merged at the end: 0 in OUT)" : "");
        }
        if (start) printf("resumed from %s at step %d\n", resume, start);
        if (e_every)
            printf("eval: %s, evaluation split (blocks %d..%d), docs protocol, model context, every %ld steps\n",
                   text_path, eval_first + 1, eval_end, e_every);
        fflush(stdout);
    }
    /* the perplexity before the first step (of a fresh run) */
    if (comm->rank != 0) { /* rank 0 evaluates and writes */
        e_every = 0;
        s_every = 0;
        ckpt_path = NULL;
        out = NULL;
    }
    if (rc == CLI_OK && e_every && start == 0) {
        rc = evaluate_now(t, m, &finished, &eval_view, (int)calib_blocks, &evals[n_evals]);
        if (rc == CLI_OK) {
            if (!a.json) printf("step %6d/%d  eval ppl %.4f (%lld tokens)\n", 0, o.steps, evals[n_evals].ppl,
                                (long long)evals[n_evals].tokens);
            log[n_log++] = (log_row){.step = 0, .loss = NAN, .ce = NAN, .kl = NAN, .mse = NAN, .grad_norm = NAN,
                                     .tps = NAN, .eval_ppl = evals[n_evals].ppl};
            n_evals++;
        }
    }
    double t0 = lb_now(), t_log = t0, first_loss = NAN, last_loss = NAN, train_seconds = 0;
    int since_log = 0, end = stop && stop < o.steps ? (int)stop : o.steps;
    for (int s = start; rc == CLI_OK && s < end; s++) {
        lb_train_step_info info;
        if (lb_train_data_batch(&data, o.batch * ranks, o.ctx, &rng, tokens) != LB_OK ||
            lb_trainer_step(t, tokens + (size_t)comm->rank * o.batch * (o.ctx + 1), &info) != LB_OK) {
            rc = cli_error("train", NULL);
            break;
        }
        if (s == start) first_loss = info.loss;
        last_loss = info.loss;
        since_log++;
        int do_eval = e_every && ((s + 1) % e_every == 0 || s == o.steps - 1);
        if (ckpt_path && s_every && (s + 1) % s_every == 0 && lb_trainer_save_checkpoint(t, &rng, ckpt_path) != LB_OK) {
            rc = cli_error("train", NULL);
            break;
        }
        if ((s + 1) % every == 0 || s == start || s == o.steps - 1 || do_eval) {
            double now = lb_now();
            train_seconds += now - t_log;
            log_row *r = &log[n_log++];
            *r = (log_row){.step = s + 1, .loss = info.loss, .ce = info.ce, .kl = info.kl, .mse = info.mse,
                           .grad_norm = info.grad_norm, .lr = info.lr, .eval_ppl = NAN};
            r->tps = (double)since_log * o.batch * ranks * o.ctx / (now - t_log);
            since_log = 0;
            if (do_eval) {
                rc = evaluate_now(t, m, &finished, &eval_view, (int)calib_blocks, &evals[n_evals]);
                if (rc != CLI_OK) break;
                r->eval_ppl = evals[n_evals++].ppl;
            }
            if (!a.json) {
                printf("step %6d/%d  loss %.4f", r->step, o.steps, r->loss);
                if (o.distill != LB_DISTILL_NONE) {
                    printf(" (kl %.4f", r->kl);
                    if (o.distill == LB_DISTILL_KL_MSE) printf(", mse %.4f", r->mse);
                    printf(", ce %.4f)", r->ce);
                }
                printf("  lr %.3e  grad norm %7.3f  %8.0f tokens/s", (double)r->lr, r->grad_norm, r->tps);
                if (do_eval) printf("  eval ppl %.4f", r->eval_ppl);
                printf("\n");
                fflush(stdout);
            }
            t_log = lb_now(); /* tokens/s counts training only, not the evaluations */
        }
    }
    train_seconds += lb_now() - t_log;
    double seconds = lb_now() - t0;
    int steps_run = rc == CLI_OK ? end - start : 0;
    if (rc == CLI_OK && stop && end < o.steps) {
        /* an interruption on purpose: the checkpoint is the result */
        if (ckpt_path && lb_trainer_save_checkpoint(t, &rng, ckpt_path) != LB_OK) rc = cli_error("train", NULL);
        else if (!a.json) printf("stopped after step %d of %d%s%s\n", end, o.steps, ckpt_path ? "; checkpoint " : "",
                                 ckpt_path ? ckpt_path : "");
        out = NULL;
    }
    if (rc == CLI_OK && out) {
        char data_text[200];
        if (data.generated && data.generated < data.n)
            snprintf(data_text, sizeof data_text, "the training split (blocks 1..%d) of %.80s and %zu teacher tokens",
                     data.end_block, text_path, data.generated);
        else if (data.generated)
            snprintf(data_text, sizeof data_text, "%zu teacher-generated tokens (seed %ld)", data.generated, t_seed);
        else
            snprintf(data_text, sizeof data_text, "the training split (blocks 1..%d) of %.120s", data.end_block, text_path);
        snprintf(m->quant_note, sizeof m->quant_note, "lowbit train: %d steps of %d x %d tokens on %.130s, lr %g, loss %s%s, "
                 "last %.4f%s%.20s",
                 o.steps, o.batch * ranks, o.ctx, data_text, (double)o.lr,
                 o.distill == LB_DISTILL_NONE ? "cross-entropy" : lb_distill_name(o.distill), config ? " from scratch" : "",
                 last_loss, qat ? ", qat " : lora ? ", lora rank " : "", qat ? qat : lora ? lora : "");
        if (lora && merge) {
            size_t k = strlen(m->quant_note);
            snprintf(m->quant_note + k, sizeof m->quant_note - k, ", merged by %s", merge);
        }
        if (lb_trainer_store(t, m) != LB_OK || (merge && lb_lora_merge(m, merge) != LB_OK) ||
            (!finished && lb_model_finish(m) != LB_OK) || lb_model_save_gguf(m, out) != LB_OK)
            rc = cli_error("train", NULL);
    }
    if (rc == CLI_OK) {
        double tps = steps_run > 0 ? (double)steps_run * o.batch * ranks * o.ctx / train_seconds : 0;
        size_t bytes = lb_trainer_bytes(t);
        long long rss = lb_peak_rss(); /* "peak_rss_bytes": the key predates the other verbs' peak_rss */
        if (a.json) {
            json_begin_object();
            json_kstr("model", config ? "" : model_path);
            if (config) json_kstr("config", config);
            if (out) json_kstr("output", out);
            else json_kstr("checkpoint", ckpt_path ? ckpt_path : "");
            json_kstr("text", text_path ? text_path : "");
            json_kstr("split", data.generated == data.n ? "none" : "train");
            json_key("blocks");
            json_begin_array();
            if (data.generated < data.n) {
                json_int(data.first_block + 1);
                json_int(data.end_block);
            }
            json_end_array();
            json_kint("tokens", (long long)data.n);
            json_kint("teacher_tokens", (long long)data.generated);
            json_kint("steps", o.steps);
            json_kint("batch", o.batch);
            json_kint("ranks", ranks); /* batch is per rank: a step reads batch x ranks sequences */
            json_kint("ctx", o.ctx);
            json_knum("lr", o.lr);
            json_kint("seed", (long long)o.seed);
            json_kstr("qat", qat ? qat : "none");
            json_kstr("format", from_base ? "model" : qat ? (format ? format : lb_qat_default_format_name(qat)) : "f32");
            json_kint("act_bits", o.act_bits);
            json_kint("grad_bits", o.grad_bits);
            json_kint("lora_rank", o.lora_rank);
            if (o.lora_rank) {
                json_knum("lora_alpha", o.lora_alpha);
                json_kstr("merge", merge ? merge : "");
            }
            json_kint("threads", lb_get_threads());
            json_kstr("distill", lb_distill_name(o.distill));
            json_kstr("teacher", o.distill == LB_DISTILL_NONE && !teacher_text ? "" : teacher_path ? teacher_path : model_path);
            json_knum("temperature", o.temperature);
            json_knum("mse_weight", o.mse_weight);
            json_kint("resumed_from", start);
            json_key("log");
            json_begin_array();
            for (int i = 0; i < n_log; i++) {
                json_begin_object();
                json_kint("step", log[i].step);
                json_knum("loss", log[i].loss);
                json_knum("ce", log[i].ce);
                json_knum("kl", log[i].kl);
                json_knum("mse", log[i].mse);
                json_knum("lr", log[i].lr);
                json_knum("grad_norm", log[i].grad_norm);
                json_knum("tokens_per_second", log[i].tps);
                if (!isnan(log[i].eval_ppl)) json_knum("eval_ppl", log[i].eval_ppl);
                json_end_object();
            }
            json_end_array();
            json_knum("first_loss", first_loss);
            json_knum("last_loss", last_loss);
            json_key("eval");
            json_begin_array();
            for (int i = 0; i < n_evals; i++) {
                json_begin_object();
                json_knum("ppl", evals[i].ppl);
                json_kint("tokens", evals[i].tokens);
                json_end_object();
            }
            json_end_array();
            if (e_every) {
                json_key("eval_blocks");
                json_begin_array();
                json_int(eval_first + 1);
                json_int(eval_end);
                json_end_array();
            }
            json_knum("seconds", seconds);
            json_knum("tokens_per_second", tps);
            json_kint("trainer_bytes", (long long)bytes);
            json_kint("peak_rss_bytes", rss);
            json_kbool("trained", out != NULL);
            json_end_object();
            json_done();
        } else {
            printf("done: %d steps in %.1fs, %.0f tokens/s training (%d threads%s); loss %.4f -> %.4f (per-batch, "
                   "training data)\n",
                   steps_run, seconds, tps, lb_get_threads(), o.distill != LB_DISTILL_NONE ? ", teacher included" : "",
                   first_loss, last_loss);
            printf("memory: trainer %.1f MB (parameters, gradients, AdamW moments, activations%s), peak RSS %.1f MB\n",
                   (double)bytes / 1e6, o.distill != LB_DISTILL_NONE ? ", teacher" : "", (double)rss / 1e6);
            if (out) printf("wrote %s\n", out);
        }
    }
    lb_free(tokens);
    lb_free(log);
    lb_free(evals);
    lb_train_data_free(&data);
    lb_trainer_free(t);
    lb_model_free(m);
    lb_model_free(teacher);
    if (have_text) lb_text_free(&text);
    return rc;
}
