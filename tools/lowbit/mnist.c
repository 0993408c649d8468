/* lowbit mnist: train small binary / low-bit MNIST classifiers (an MLP or a
 * LeNet-style CNN; BinaryConnect, XNOR-Net, int8 / int4 fake quantization
 * or fp32) and evaluate them, the binary x binary layers through
 * XNOR-popcount on packed bits (docs/MNIST.md). Training never reads the
 * test set: validation is the last --val images of the training file. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "kernels/xnor_bits.h"
#include "train/mnist.h"

static const char *mnist_help =
    "usage: lowbit mnist train --model mlp|cnn --mode MODE -o OUT [--epochs N] [--batch B] [--lr X]\n"
    "                          [--min-lr X] [--seed N] [--hidden H] [--fp-ends yes|no] [--stochastic]\n"
    "                          [--val N] [--train-limit N] [--shift S] [--data DIR]\n"
    "       lowbit mnist eval FILE [--split test|val] [--val N] [--batch B] [--repeat R] [--data DIR]\n\n"
    "train: trains a classifier on DIR/train-* (IDX files) minus its last --val images, which are the\n"
    "validation set (accuracy after every epoch); writes OUT, one GGUF file, atomically. The test set\n"
    "is never read by train.\n"
    "  --model M         mlp (784-H-H-H-10) or cnn (conv5x5x32, pool, conv5x5x64, pool, H, 10)\n"
    "  --mode MODE       fp32, binaryconnect (+-1 weights, real activations), xnor (alpha sign(w)\n"
    "                    weights and sign activations), int8, int4 (fake-quantized weights and\n"
    "                    activations, straight-through estimators)\n"
    "  --epochs N        passes over the training images (default 10)\n"
    "  --batch B         images per step (default 100)\n"
    "  --lr X            Adam's peak learning rate, cosine down to --min-lr (default 3e-3; min lr/100)\n"
    "  --seed N          initialization and shuffling seed (default 1)\n"
    "  --hidden H        width of the hidden dense layers (default mlp 512, cnn 256)\n"
    "  --fp-ends yes|no  first and last layer full precision (default: yes for xnor, as XNOR-Net;\n"
    "                    no for the others, as BinaryConnect)\n"
    "  --stochastic      BinaryConnect: stochastic binarization while training\n"
    "  --val N           validation images held out from the end of the training file (default 1000)\n"
    "  --train-limit N   train on the first N training images only (quick runs)\n"
    "  --shift S         augmentation: every training image moved by a random (dx, dy), |dx|, |dy| <= S\n"
    "                    pixels (0..4, default 0: none), zero-filled, seeded\n"
    "  --data DIR        the MNIST folder (default ../shared/data/mnist)\n"
    "eval: accuracy of FILE on the test set (or --split val: the validation images train held out),\n"
    "through the float forward and through the packed inference (XNOR-popcount for the layers whose\n"
    "weights and inputs are both binary), the two compared, and images/s of each (median of --repeat\n"
    "passes, default 5, at --batch images, default 100).\n"
    "  --json            one JSON object on stdout\n";

typedef struct {
    int json;
    lb_mnist_epoch_info log[1000];
    int n_log;
    int epochs;
} train_ctx;

static void on_epoch(const lb_mnist_epoch_info *e, void *user) {
    train_ctx *c = user;
    if (c->n_log < 1000) c->log[c->n_log++] = *e;
    if (!c->json) {
        printf("epoch %3d/%d  loss %.4f  train acc %6.2f%%  val acc %6.2f%%  %6.1f s\n", e->epoch, c->epochs, e->loss,
               100 * e->train_acc, 100 * e->val_acc, e->seconds);
        fflush(stdout);
    }
}

static int load_split(const char *verb, const char *dir, const char *split, int val_n, lb_mnist_set *train,
                      lb_mnist_set *val) {
    lb_mnist_set all;
    if (lb_mnist_load(dir, split, &all) != LB_OK) return cli_error(verb, NULL);
    if (val_n >= all.n) {
        int have = all.n;
        lb_mnist_free(&all);
        return cli_error(verb, "--val %d: the training file has only %d images", val_n, have);
    }
    lb_status st = lb_mnist_slice(&all, 0, all.n - val_n, train);
    if (st == LB_OK) st = lb_mnist_slice(&all, all.n - val_n, val_n, val);
    lb_mnist_free(&all);
    return st == LB_OK ? CLI_OK : cli_error(verb, NULL);
}

static int cmd_mnist_train(int argc, char **argv) {
    cli_args a = {.argc = argc, .argv = argv, .i = 1, .verb = "mnist train"};
    const char *model = "mlp", *mode = "fp32", *out = NULL, *epochs = NULL, *batch = NULL, *lr = NULL, *min_lr = NULL,
               *seed = NULL, *hidden = NULL, *fp_ends = NULL, *val = NULL, *limit = NULL, *shift = NULL, *data = NULL;
    int stochastic = 0;
    while (a.i < argc) {
        int r;
        if ((r = cli_option(&a, "--model", NULL, &model)) || (r = cli_option(&a, "--mode", NULL, &mode)) ||
            (r = cli_option(&a, "--output", "-o", &out)) || (r = cli_option(&a, "--epochs", NULL, &epochs)) ||
            (r = cli_option(&a, "--batch", NULL, &batch)) || (r = cli_option(&a, "--lr", NULL, &lr)) ||
            (r = cli_option(&a, "--min-lr", NULL, &min_lr)) || (r = cli_option(&a, "--seed", NULL, &seed)) ||
            (r = cli_option(&a, "--hidden", NULL, &hidden)) || (r = cli_option(&a, "--fp-ends", NULL, &fp_ends)) ||
            (r = cli_option(&a, "--val", NULL, &val)) || (r = cli_option(&a, "--train-limit", NULL, &limit)) ||
            (r = cli_option(&a, "--shift", NULL, &shift)) ||
            (r = cli_option(&a, "--data", NULL, &data))) {
            if (r < 0) return CLI_USAGE;
            continue;
        }
        if (cli_flag(&a, "--stochastic")) {
            stochastic = 1;
            continue;
        }
        if ((r = cli_unknown(&a)) != 0) return r;
    }
    if (a.help) {
        fputs(mnist_help, stdout);
        return CLI_OK;
    }
    if (a.n_positional) return cli_usage_error(a.verb, "unexpected argument '%s'", a.positional[0]);
    if (!out) return cli_usage_error(a.verb, "missing -o OUT");
    lb_mnist_config cfg = {.fp_ends = -1, .stochastic = stochastic};
    if (lb_mnist_arch_parse(model, &cfg.arch) != LB_OK) return cli_usage_error(a.verb, "%s", lb_last_error());
    if (lb_mnist_mode_parse(mode, &cfg.mode) != LB_OK) return cli_usage_error(a.verb, "%s", lb_last_error());
    if (stochastic && cfg.mode != LB_MNIST_BINARYCONNECT)
        return cli_usage_error(a.verb, "--stochastic is BinaryConnect's (--mode binaryconnect)");
    if (fp_ends) {
        if (!strcmp(fp_ends, "yes")) cfg.fp_ends = 1;
        else if (!strcmp(fp_ends, "no")) cfg.fp_ends = 0;
        else return cli_usage_error(a.verb, "--fp-ends '%s': yes or no", fp_ends);
    }
    lb_mnist_train_opts o = {.epochs = 10, .batch = 100, .lr = 3e-3f, .min_lr = -1, .seed = 1};
    long v, val_n = 1000, lim = 0;
    double d;
    if (epochs && cli_parse_int(a.verb, "--epochs", epochs, 1, 10000, &v)) return CLI_USAGE;
    if (epochs) o.epochs = (int)v;
    if (batch && cli_parse_int(a.verb, "--batch", batch, 2, 65536, &v)) return CLI_USAGE;
    if (batch) o.batch = (int)v;
    if (seed && cli_parse_int(a.verb, "--seed", seed, 0, 0x7fffffffL, &v)) return CLI_USAGE;
    if (seed) o.seed = (uint64_t)v;
    if (hidden && cli_parse_int(a.verb, "--hidden", hidden, 1, 8192, &v)) return CLI_USAGE;
    if (hidden) cfg.hidden = (int)v;
    if (val && cli_parse_int(a.verb, "--val", val, 0, 1 << 24, &val_n)) return CLI_USAGE;
    if (limit && cli_parse_int(a.verb, "--train-limit", limit, 1, 1 << 24, &lim)) return CLI_USAGE;
    if (shift && cli_parse_int(a.verb, "--shift", shift, 0, 4, &v)) return CLI_USAGE;
    if (shift) o.shift = (int)v;
    if (lr && cli_parse_float(a.verb, "--lr", lr, 1e-9, 10, &d)) return CLI_USAGE;
    if (lr) o.lr = (float)d;
    if (min_lr && cli_parse_float(a.verb, "--min-lr", min_lr, 0, 10, &d)) return CLI_USAGE;
    o.min_lr = min_lr ? (float)d : o.lr / 100;
    char dbuf[4096];
    if (!data) data = cli_data_path("mnist", dbuf, sizeof dbuf);

    const char *inputs[1] = {NULL};
    if (lb_output_check(out, inputs, 1) != LB_OK) return cli_error(a.verb, NULL);
    lb_mnist_set train, vset;
    int rc = load_split(a.verb, data, "train", (int)val_n, &train, &vset);
    if (rc != CLI_OK) return rc;
    if (lim && lim < train.n) train.n = (int)lim; /* the first lim images (the buffer stays as allocated) */
    lb_mnist_net *n = NULL;
    if (lb_mnist_net_create(&cfg, o.seed, &n) != LB_OK) rc = cli_error(a.verb, NULL);
    train_ctx ctx = {.json = a.json, .epochs = o.epochs};
    if (rc == CLI_OK && !a.json)
        printf("mnist train: %s %s (hidden %d, first/last layer %s%s), %zu parameters; %d training images, %d "
               "validation (the last of %s/train-*); %d epochs of batch %d, lr %g -> %g, seed %llu, %d threads\n",
               lb_mnist_arch_name(n->arch), lb_mnist_mode_name(n->mode), n->hidden,
               n->mode == LB_MNIST_FP32 ? "fp32 like the rest" : n->fp_ends ? "full precision" : "quantized", n->stochastic ? ", stochastic" : "", n->n_params, train.n,
               vset.n, data, o.epochs, o.batch, (double)o.lr, (double)o.min_lr, (unsigned long long)o.seed,
               lb_get_threads());
    fflush(stdout);
    double t0 = lb_now();
    if (rc == CLI_OK && lb_mnist_train(n, &train, &vset, &o, on_epoch, &ctx) != LB_OK) rc = cli_error(a.verb, NULL);
    double seconds = lb_now() - t0;
    if (rc == CLI_OK) {
        char note[256];
        char aug[48] = "";
        if (o.shift) snprintf(aug, sizeof aug, ", shifted by up to %d pixel(s)", o.shift);
        snprintf(note, sizeof note, "lowbit mnist train: %d epochs of batch %d, lr %g, seed %llu, %d training images%s",
                 o.epochs, o.batch, (double)o.lr, (unsigned long long)o.seed, train.n, aug);
        if (lb_mnist_save(n, out, note) != LB_OK) rc = cli_error(a.verb, NULL);
    }
    if (rc == CLI_OK) {
        double val_acc = ctx.n_log ? ctx.log[ctx.n_log - 1].val_acc : NAN;
        if (a.json) {
            json_begin_object();
            json_kstr("model", lb_mnist_arch_name(n->arch));
            json_kstr("mode", lb_mnist_mode_name(n->mode));
            json_kint("hidden", n->hidden);
            json_kbool("fp_ends", n->fp_ends);
            json_kbool("stochastic", n->stochastic);
            json_kint("parameters", (long long)n->n_params);
            json_kint("train_images", train.n);
            json_kint("val_images", vset.n);
            json_kint("epochs", o.epochs);
            json_kint("batch", o.batch);
            json_knum("lr", o.lr);
            json_kint("seed", (long long)o.seed);
            json_kint("shift", o.shift);
            json_kint("threads", lb_get_threads());
            json_key("log");
            json_begin_array();
            for (int i = 0; i < ctx.n_log; i++) {
                json_begin_object();
                json_kint("epoch", ctx.log[i].epoch);
                json_knum("loss", ctx.log[i].loss);
                json_knum("train_acc", ctx.log[i].train_acc);
                json_knum("val_acc", ctx.log[i].val_acc);
                json_knum("seconds", ctx.log[i].seconds);
                json_end_object();
            }
            json_end_array();
            json_knum("val_acc", val_acc);
            json_knum("seconds", seconds);
            json_kstr("output", out);
            json_end_object();
            json_done();
        } else {
            printf("saved %s (validation accuracy %.2f%%, %.1f s)\n", out, 100 * val_acc, seconds);
        }
    }
    lb_mnist_net_free(n);
    lb_mnist_free(&train);
    lb_mnist_free(&vset);
    return rc;
}

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static int cmd_mnist_eval(int argc, char **argv) {
    cli_args a = {.argc = argc, .argv = argv, .i = 1, .verb = "mnist eval"};
    const char *split = "test", *val = NULL, *batch = NULL, *repeat = NULL, *data = NULL;
    while (a.i < argc) {
        int r;
        if ((r = cli_option(&a, "--split", NULL, &split)) || (r = cli_option(&a, "--val", NULL, &val)) ||
            (r = cli_option(&a, "--batch", NULL, &batch)) || (r = cli_option(&a, "--repeat", NULL, &repeat)) ||
            (r = cli_option(&a, "--data", NULL, &data))) {
            if (r < 0) return CLI_USAGE;
            continue;
        }
        if ((r = cli_unknown(&a)) != 0) return r;
    }
    if (a.help) {
        fputs(mnist_help, stdout);
        return CLI_OK;
    }
    if (a.n_positional != 1) return cli_usage_error(a.verb, "expected one FILE");
    if (strcmp(split, "test") && strcmp(split, "val")) return cli_usage_error(a.verb, "--split '%s': test or val", split);
    long val_n = 1000, B = 100, R = 5;
    if (val && cli_parse_int(a.verb, "--val", val, 1, 1 << 24, &val_n)) return CLI_USAGE;
    if (batch && cli_parse_int(a.verb, "--batch", batch, 1, 65536, &B)) return CLI_USAGE;
    if (repeat && cli_parse_int(a.verb, "--repeat", repeat, 1, 1000, &R)) return CLI_USAGE;
    char dbuf[4096];
    if (!data) data = cli_data_path("mnist", dbuf, sizeof dbuf);
    lb_mnist_net *n = NULL;
    if (lb_mnist_load_net(a.positional[0], &n) != LB_OK) return cli_error(a.verb, NULL);
    lb_mnist_set set, other;
    int rc;
    if (!strcmp(split, "test")) {
        rc = lb_mnist_load(data, "test", &set) == LB_OK ? CLI_OK : cli_error(a.verb, NULL);
        memset(&other, 0, sizeof other);
    } else {
        rc = load_split(a.verb, data, "train", (int)val_n, &other, &set);
    }
    lb_mnist_infer *inf = NULL;
    lb_mnist_acts *acts = NULL;
    float *logits = NULL;
    if (rc == CLI_OK && (lb_mnist_infer_create(n, (int)B, &inf) != LB_OK || lb_mnist_acts_create(n, (int)B, &acts) != LB_OK))
        rc = cli_error(a.verb, NULL);
    if (rc == CLI_OK && !(logits = lb_alloc((size_t)B * 10 * sizeof(float)))) rc = cli_error(a.verb, "out of memory");
    double t_float[1000], t_packed[1000], max_diff = 0.0;
    long correct_f = 0, correct_p = 0, agree = 0;
    for (int r = 0; rc == CLI_OK && r < R; r++) {
        double t0 = lb_now();
        for (int i = 0; rc == CLI_OK && i < set.n; i += (int)B) {
            int b = set.n - i < B ? set.n - i : (int)B, c = 0;
            if (lb_mnist_forward(n, acts, set.pixels + (size_t)i * LB_MNIST_PIXELS, set.labels + i, b, 0, NULL, &c) != LB_OK)
                rc = cli_error(a.verb, NULL);
            if (r == 0) correct_f += c;
        }
        double t1 = lb_now();
        for (int i = 0; rc == CLI_OK && i < set.n; i += (int)B) {
            int b = set.n - i < B ? set.n - i : (int)B;
            if (lb_mnist_infer_run(inf, set.pixels + (size_t)i * LB_MNIST_PIXELS, b, logits) != LB_OK) {
                rc = cli_error(a.verb, NULL);
                break;
            }
            if (r > 0) continue;
            /* the packed path against the float forward on the same images */
            lb_mnist_forward(n, acts, set.pixels + (size_t)i * LB_MNIST_PIXELS, NULL, b, 0, NULL, NULL);
            const float *ref = lb_mnist_logits(acts);
            for (int k = 0; k < b; k++) {
                int best = 0, best_ref = 0;
                for (int j = 0; j < 10; j++) {
                    double dd = fabs((double)logits[k * 10 + j] - ref[k * 10 + j]);
                    max_diff = dd > max_diff ? dd : max_diff;
                    best = logits[k * 10 + j] > logits[k * 10 + best] ? j : best;
                    best_ref = ref[k * 10 + j] > ref[k * 10 + best_ref] ? j : best_ref;
                }
                correct_p += best == set.labels[i + k];
                agree += best == best_ref;
            }
        }
        double t2 = lb_now();
        t_float[r] = t1 - t0;
        t_packed[r] = t2 - t1;
    }
    if (rc == CLI_OK) {
        /* the first pass also compared the two paths: the speeds are from the others when there are any */
        int first = R > 1 ? 1 : 0, cnt = (int)R - first;
        qsort(t_float + first, (size_t)cnt, sizeof(double), cmp_double);
        qsort(t_packed + first, (size_t)cnt, sizeof(double), cmp_double);
        double ips_f = set.n / t_float[first + cnt / 2], ips_p = set.n / t_packed[first + cnt / 2];
        const char *kname;
        lb_xnor_gemm_select(&kname);
        double acc_f = (double)correct_f / set.n, acc_p = (double)correct_p / set.n;
        if (a.json) {
            json_begin_object();
            json_kstr("file", a.positional[0]);
            json_kstr("model", lb_mnist_arch_name(n->arch));
            json_kstr("mode", lb_mnist_mode_name(n->mode));
            json_kstr("split", split);
            json_kint("images", set.n);
            json_knum("accuracy", acc_f);
            json_knum("accuracy_packed", acc_p);
            json_kint("prediction_agreement", agree);
            json_knum("max_logit_diff", max_diff);
            json_kint("xnor_layers", lb_mnist_infer_xnor_layers(inf));
            json_kstr("xnor_kernel", kname);
            json_knum("images_per_second_float", ips_f);
            json_knum("images_per_second_packed", ips_p);
            json_kint("batch", B);
            json_kint("repeat", R);
            json_kint("threads", lb_get_threads());
            json_end_object();
            json_done();
        } else {
            printf("%s: %s %s on the %s set (%d images)\n", a.positional[0], lb_mnist_arch_name(n->arch),
                   lb_mnist_mode_name(n->mode), split, set.n);
            printf("accuracy %.2f%% (float forward), %.2f%% (packed: %d layers by XNOR-popcount, %s kernel); "
                   "predictions agree on %ld of %d, max logit difference %g\n",
                   100 * acc_f, 100 * acc_p, lb_mnist_infer_xnor_layers(inf), kname, agree, set.n, max_diff);
            printf("images/s: %.0f float forward, %.0f packed (median of %d passes, batch %ld, %d threads)\n", ips_f,
                   ips_p, cnt, B, lb_get_threads());
        }
    }
    lb_free(logits);
    lb_mnist_infer_free(inf);
    lb_mnist_acts_free(acts);
    lb_mnist_free(&set);
    lb_mnist_free(&other);
    lb_mnist_net_free(n);
    return rc;
}

int cmd_mnist(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "train")) return cmd_mnist_train(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "eval")) return cmd_mnist_eval(argc - 1, argv + 1);
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        fputs(mnist_help, stdout);
        return CLI_OK;
    }
    fputs(mnist_help, stderr);
    return cli_usage_error("mnist", argc >= 2 ? "unknown subcommand '%s' (train, eval)" : "expected train or eval%s",
                           argc >= 2 ? argv[1] : "");
}
