/* lowbit: the command line. One file per verb; this one dispatches. */
#include <string.h>

#include "cli.h"
#include "dist/dist.h"

static const struct {
    const char *name;
    int (*run)(int, char **);
    const char *what;
} verbs[] = {
    {"info", cmd_info, "architecture, tensors, formats and bits per weight of a model file"},
    {"convert", cmd_convert, "write a model (llama2.c, GGUF, Hugging Face folder) as GGUF or a safetensors folder"},
    {"quantize", cmd_quantize, "quantize a model's tensors to a low-bit format and save one GGUF file"},
    {"calibrate", cmd_calibrate, "collect activation statistics (X^T X, ranges) over calibration text"},
    {"eval", cmd_eval, "perplexity (docs or chunks protocol), KL divergence and top-1 against a reference"},
    {"generate", cmd_generate, "generate text from a prompt, with tokens/s"},
    {"plan", cmd_plan, "choose a format and method per tensor under a bit budget, by measured sensitivity"},
    {"tune", cmd_tune, "the smallest mix of formats that meets a KL or perplexity target (calibration split)"},
    {"sweep", cmd_sweep, "quantize with a grid of methods x formats, evaluate each: table, JSON lines, SVG plot"},
    {"train", cmd_train, "fine-tune an fp32 model on the training split (backpropagation, AdamW); save one GGUF file"},
    {"mnist", cmd_mnist, "train and evaluate binary / XNOR / int8 / int4 MNIST classifiers (XNOR-popcount inference)"},
    {"bench", cmd_bench, "matmul speed per format, shape, batch and threads against the measured memory bandwidth"},
    {"tokenize", cmd_tokenize, "token ids of a text under a model's or a GGUF vocab file's tokenizer"},
    {"synth", cmd_synth, "write a synthetic Llama-shaped model (seeded weights, any size) as GGUF, one tensor at a time"},
    {"demo", cmd_demo, "quantize stories260K from 8 bits down to 1 and print quality, size and speed"},
};

static void usage(FILE *f) {
    fprintf(f, "lowbit %s: extreme low-bit quantization of LLM weights, and a CPU runtime for the result\n\n"
               "usage: lowbit VERB [options]   (lowbit VERB --help for each verb)\n\n",
            LB_VERSION_STRING);
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) fprintf(f, "  %-9s %s\n", verbs[i].name, verbs[i].what);
    fprintf(f, "\nevery verb takes --json (one JSON object on stdout), --threads N, --progress/--no-progress\n");
}

static int run_verb(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("lowbit %s\n", LB_VERSION_STRING);
        return CLI_OK;
    }
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
        if (strcmp(argv[1], verbs[i].name)) continue;
        /* under mpirun: calibrate, quantize and train share the work; any
         * other verb runs once, on rank 0 */
        if (strcmp(argv[1], "calibrate") && strcmp(argv[1], "quantize") && strcmp(argv[1], "train") &&
            cli_rank0_only(argv[1], "not distributed"))
            return CLI_OK;
        return verbs[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "lowbit: unknown verb '%s'\n\n", argv[1]);
    usage(stderr);
    return CLI_USAGE;
}

int main(int argc, char **argv) {
    cli_comm = lb_dist_init(&argc, &argv);
    return lb_dist_finish(run_verb(argc, argv));
}
