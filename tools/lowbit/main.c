/* lowbit: the command line. One file per verb; this one dispatches. */
#define _POSIX_C_SOURCE 200809L /* setenv, execv, getrlimit */
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

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

/* OpenBLAS (0.3.21, Debian 12's) gives each of its worker threads a 128 MB
 * buffer as the library loads, and when the allocation is refused it retries
 * forever (OpenBLAS issue #5289): under a data limit below that (ulimit -d,
 * prlimit --data; --as counts it too) every command would keep a core spinning
 * and hang at exit. Such a limit (under 256 MB per core) restarts lowbit once,
 * before any work, with OPENBLAS_NUM_THREADS=1: no worker threads, and the
 * calling thread takes its buffer only when a method uses BLAS. A user's own
 * OPENBLAS_NUM_THREADS is left as it is. */
static void blas_threads_fit_limit(char **argv) {
#if defined(LB_HAVE_BLAS) && defined(__linux__)
    if (getenv("OPENBLAS_NUM_THREADS")) return;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 2) return;
    const rlim_t need = (rlim_t)cores * (256u << 20);
    struct rlimit data, as;
    if (getrlimit(RLIMIT_DATA, &data) || getrlimit(RLIMIT_AS, &as)) return;
    if ((data.rlim_cur == RLIM_INFINITY || data.rlim_cur >= need) && (as.rlim_cur == RLIM_INFINITY || as.rlim_cur >= need))
        return;
    if (setenv("OPENBLAS_NUM_THREADS", "1", 1)) return;
    execv("/proc/self/exe", argv);
    /* exec failed: go on; only a command using BLAS threads can hang */
#else
    (void)argv;
#endif
}

int main(int argc, char **argv) {
    blas_threads_fit_limit(argv);
    cli_comm = lb_dist_init(&argc, &argv);
    return lb_dist_finish(run_verb(argc, argv));
}
