/* lowbit synth: a synthetic Llama-shaped model as GGUF (seeded weights),
 * written one tensor at a time: the input of the streaming tests and
 * measurements (docs/SCALING.md, "Streaming"). */
#include <string.h>

#include "cli.h"

static const char *synth_help =
    "usage: lowbit synth -o OUT.gguf [--dim N] [--ffn N] [--layers N] [--heads N] [--kv-heads N]\n"
    "                    [--vocab N] [--ctx N] [--type f32|f16|bf16] [--seed N] [--json]\n\n"
    "Writes a Llama-shaped model with seeded random weights (linears and embeddings ~ N(0, 0.02^2),\n"
    "norms 1 +- 0.05; no tokenizer), atomically, one row in memory at a time: the same bytes for the\n"
    "same arguments on any machine. For measuring quantize and convert on a model of a given size.\n\n"
    "  -o, --output OUT   the GGUF file to write\n"
    "  --dim N            model width (default 4096)\n"
    "  --ffn N            MLP width (default 11008)\n"
    "  --layers N         transformer blocks (default 32: Llama-2-7B's shape, 13.5 GB as f16)\n"
    "  --heads N          attention heads (default 32); --kv-heads N (default: --heads)\n"
    "  --vocab N          vocabulary (default 32000); --ctx N context length (default 4096)\n"
    "  --type T           f32, f16 (default) or bf16; norms are f32\n"
    "  --seed N           the weights' seed (default 1)\n"
    "  --json             one JSON object: output, shape, type, tensors, file_bytes, seconds, peak_rss\n";

int cmd_synth(int argc, char **argv) {
    cli_args a = {.argc = argc, .argv = argv, .i = 1, .verb = "synth"};
    const char *out = NULL, *type = "f16", *v[8] = {NULL};
    static const char *names[8] = {"--dim", "--ffn", "--layers", "--heads", "--kv-heads", "--vocab", "--ctx", "--seed"};
    while (a.i < argc) {
        int r = cli_option(&a, "--output", "-o", &out);
        if (r == 0) r = cli_option(&a, "--type", NULL, &type);
        for (int k = 0; r == 0 && k < 8; k++) r = cli_option(&a, names[k], NULL, &v[k]);
        if (r < 0) return CLI_USAGE;
        if (r == 0 && (r = cli_unknown(&a)) != 0) return r;
    }
    if (a.help) {
        fputs(synth_help, stdout);
        return CLI_OK;
    }
    if (a.n_positional != 0) return cli_usage_error("synth", "takes no positional arguments (the model goes to -o)");
    if (!out) return cli_usage_error("synth", "missing -o OUT");
    long val[8] = {4096, 11008, 32, 32, -1, 32000, 4096, 1};
    static const long hi[8] = {1 << 16, 1 << 18, 4096, 1024, 1024, 1 << 22, 1 << 24, 2147483647};
    for (int k = 0; k < 8; k++)
        if (v[k] && cli_parse_int("synth", names[k], v[k], k == 7 ? 0 : 1, hi[k], &val[k])) return CLI_USAGE;
    lb_config c = {.dim = (int)val[0], .hidden_dim = (int)val[1], .n_layers = (int)val[2], .n_heads = (int)val[3],
                   .n_kv_heads = (int)(val[4] < 0 ? val[3] : val[4]), .vocab_size = (int)val[5],
                   .seq_len = (int)val[6], .norm_eps = 1e-5f, .rope_theta = 10000.0f};
    c.head_dim = c.dim / c.n_heads;
    lb_qspec spec;
    if (lb_qspec_parse(type, &spec) != LB_OK || !lb_qspec_is_float(&spec))
        return cli_usage_error("synth", "--type must be f32, f16 or bf16, not '%s'", type);
    if (c.dim % c.n_heads || c.n_heads % c.n_kv_heads || c.head_dim % 2)
        return cli_usage_error("synth", "--heads %d must divide --dim %d with an even head size, and --kv-heads %d "
                               "must divide --heads", c.n_heads, c.dim, c.n_kv_heads);
    if (lb_output_check(out, NULL, 0) != LB_OK) return cli_error("synth", NULL);
    double t0 = lb_now();
    if (lb_model_synth_gguf(&c, &spec, (uint64_t)val[7], out) != LB_OK) return cli_error("synth", NULL);
    double secs = lb_now() - t0;
    long long bytes = cli_output_bytes(out, 0, 1);
    int tensors = 3 + 9 * c.n_layers;
    if (a.json) {
        json_begin_object();
        json_kstr("output", out);
        json_kint("dim", c.dim);
        json_kint("ffn", c.hidden_dim);
        json_kint("layers", c.n_layers);
        json_kint("heads", c.n_heads);
        json_kint("kv_heads", c.n_kv_heads);
        json_kint("vocab", c.vocab_size);
        json_kstr("type", type);
        json_kint("tensors", tensors);
        json_kint("file_bytes", bytes);
        json_knum("seconds", secs);
        json_kint("peak_rss", lb_peak_rss());
        json_end_object();
        json_done();
    } else {
        char b[32];
        printf("%s: synthetic %d-layer model (dim %d, ffn %d, heads %d/%d, vocab %d), %s, %d tensors, %s bytes, "
               "%.2fs, peak RSS %.1f MB\n", out, c.n_layers, c.dim, c.hidden_dim, c.n_heads, c.n_kv_heads,
               c.vocab_size, type, tensors, fmt_thousands(bytes, b, sizeof b), secs, (double)lb_peak_rss() / 1e6);
    }
    return CLI_OK;
}
