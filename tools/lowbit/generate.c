/* lowbit generate: text from a prompt, and how fast it came. */
#include <math.h>
#include <string.h>

#include "cli.h"

static const char *generate_help =
    "usage: lowbit generate MODEL [-p PROMPT] [-n N] [--temp T] [--top-p P] [--seed S]\n\n"
    "Generates up to N tokens after PROMPT (stops early at a BOS token or the end of the\n"
    "model's context) and reports on stderr the generation rate (one token per forward),\n"
    "the prompt rate (the prompt in one batched forward) and the matmul kernels used.\n"
    "Sampling follows llama2.c: greedy at temperature 0, else softmax(logits/T) with nucleus\n"
    "(top-p) sampling; same seed, same text.\n\n"
    "  -p, --prompt TEXT  prompt (default: empty, start from BOS)\n"
    "  -n N               tokens to generate (default 256)\n"
    "  --temp T           temperature, 0..100 (default 1.0; 0 = greedy)\n"
    "  --top-p P          nucleus mass, 0..1 (default 0.9; 0 or 1 = off)\n"
    "  --seed S           sampling seed (default 42)\n"
    "  --tokenizer FILE   llama2.c tokenizer (default: tok<vocab>.bin beside MODEL)\n"
    "  --json             one JSON object on stdout instead of streaming text: text,\n"
    "                     prompt_tokens, generated_tokens, tokens_per_second (generation),\n"
    "                     generate_seconds, prompt_tokens_per_second, prompt_seconds, threads,\n"
    "                     kernels (the matmul kernels of the linears and classifier)\n";

typedef struct {
    int json;
    char *text;
    size_t len, cap;
} gen_out;

static void emit(const char *piece, size_t len, void *user) {
    gen_out *g = user;
    if (!g->json) {
        /* as llama2.c: skip lone unprintable bytes (control characters) */
        if (len == 1 && (unsigned char)piece[0] < 32 && piece[0] != '\n' && piece[0] != '\t') return;
        fwrite(piece, 1, len, stdout);
        fflush(stdout);
        return;
    }
    if (g->len + len + 1 > g->cap) {
        size_t cap = (g->cap + len + 1) * 2;
        char *t = lb_alloc(cap);
        if (!t) return;
        if (g->text) memcpy(t, g->text, g->len);
        lb_free(g->text);
        g->text = t;
        g->cap = cap;
    }
    memcpy(g->text + g->len, piece, len);
    g->len += len;
}

int cmd_generate(int argc, char **argv) {
    cli_args a = {.argc = argc, .argv = argv, .i = 1, .verb = "generate"};
    const char *prompt = "", *n = "256", *temp = "1.0", *top_p = "0.9", *seed = "42", *tokenizer = NULL;
    while (a.i < argc) {
        int r;
        if ((r = cli_option(&a, "--prompt", "-p", &prompt)) || (r = cli_option(&a, "-n", NULL, &n)) ||
            (r = cli_option(&a, "--temp", NULL, &temp)) || (r = cli_option(&a, "--top-p", NULL, &top_p)) ||
            (r = cli_option(&a, "--seed", NULL, &seed)) || (r = cli_option(&a, "--tokenizer", NULL, &tokenizer))) {
            if (r < 0) return CLI_USAGE;
            continue;
        }
        if ((r = cli_unknown(&a)) != 0) return r;
    }
    if (a.help) {
        fputs(generate_help, stdout);
        return CLI_OK;
    }
    if (a.n_positional != 1) return cli_usage_error("generate", "expected one MODEL");
    long nv, sv;
    double tv, pv;
    if (cli_parse_int("generate", "-n", n, 1, 1 << 22, &nv) || cli_parse_float("generate", "--temp", temp, 0, 100, &tv) ||
        cli_parse_float("generate", "--top-p", top_p, 0, 1, &pv) ||
        cli_parse_int("generate", "--seed", seed, 0, 0x7fffffffL, &sv))
        return CLI_USAGE;
    lb_model *m;
    if (cli_load_model("generate", a.positional[0], tokenizer, &m)) return CLI_FAIL;
    lb_gen_opts o = {.max_new = (int)nv, .temperature = (float)tv, .top_p = (float)pv, .seed = (uint64_t)sv};
    lb_gen_stats st;
    gen_out out = {.json = a.json};
    int rc = CLI_OK;
    if (lb_generate(m, prompt, &o, emit, &out, &st) != LB_OK) rc = cli_error("generate", NULL);
    /* decode (one token per forward) and prompt (one batched forward) rates apart:
     * they are bound by different things (weight streaming vs arithmetic) */
    double tps = st.generate_seconds > 0 ? st.generated_tokens / st.generate_seconds : NAN;
    double pps = st.prompt_seconds > 0 ? st.prompt_tokens / st.prompt_seconds : NAN;
    char kernels[256];
    if (rc == CLI_OK) cli_model_kernels(m, kernels, sizeof kernels);
    if (rc == CLI_OK && a.json) {
        json_begin_object();
        json_key("text");
        json_stringn(out.text ? out.text : "", out.len);
        json_kint("prompt_tokens", st.prompt_tokens);
        json_kint("generated_tokens", st.generated_tokens);
        json_knum("tokens_per_second", tps);
        json_knum("generate_seconds", st.generate_seconds);
        json_knum("prompt_tokens_per_second", pps);
        json_knum("prompt_seconds", st.prompt_seconds);
        json_kint("threads", lb_get_threads());
        json_kstr("kernels", kernels);
        json_end_object();
        json_done();
    } else if (rc == CLI_OK) {
        printf("\n");
        fflush(stdout);
        fprintf(stderr,
                "%d tokens generated at %.1f tokens/s; prompt of %d tokens at %.1f tokens/s (%.3fs); "
                "%d threads, kernels %s\n",
                st.generated_tokens, tps, st.prompt_tokens, pps, st.prompt_seconds, lb_get_threads(), kernels);
    }
    lb_free(out.text);
    lb_model_free(m);
    return rc;
}
