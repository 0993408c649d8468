/* lowbit info: what a model file holds. */
#include <math.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static const char *info_help =
    "usage: lowbit info MODEL [--tokenizer FILE] [--json]\n\n"
    "Prints the architecture, every tensor with its shape, format, storage type and bits\n"
    "per weight, and the totals: bpw over the quantized tensors and over the whole file.\n"
    "MODEL is a llama2.c checkpoint (legacy or v1), a GGUF file, or a Hugging Face folder\n"
    "(the folder, its config.json or its .safetensors file; docs/INTEROP.md).\n\n"
    "  --tokenizer FILE   llama2.c tokenizer (default: tok<vocab>.bin beside the model)\n"
    "  --json             one JSON object on stdout\n";


/* The linear whose weight t is, or NULL (norms, embedding, classifier). */
static const lb_linear *linear_of(const lb_model *m, const lb_tensor *t) {
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int i = 0; i < LB_N_LINEARS; i++)
            if (&m->layers[l].linear[i].w == t) return &m->layers[l].linear[i];
    return NULL;
}

/* "in_scale hadamard out_hadamard outliers(12) lora(r8) bias act(int8:tensor:kl clip=3.2)" */
static void describe_slots(const lb_linear *L, char *buf, size_t n) {
    snprintf(buf, n, "%s%s%s", L->in_scale ? "in_scale " : "", L->rot.kind == LB_ROTATION_HADAMARD ? "hadamard " : "",
             L->out_rot.kind == LB_ROTATION_HADAMARD ? "out_hadamard " : "");
    size_t o = strlen(buf);
    if (L->outliers.nnz) o += (size_t)snprintf(buf + o, n - o, "outliers(%lld) ", (long long)L->outliers.nnz);
    if (L->adapter.rank && o < n) o += (size_t)snprintf(buf + o, n - o, "lora(r%d) ", L->adapter.rank);
    if (L->bias && o < n) o += (size_t)snprintf(buf + o, n - o, "bias ");
    if (L->act.kind != LB_AQ_NONE && o < n) {
        char spec[64];
        lb_act_spec_format(&L->act, spec, sizeof spec);
        if (L->act.kind == LB_AQ_TENSOR) o += (size_t)snprintf(buf + o, n - o, "act(%s clip=%.6g) ", spec, (double)L->act.clip);
        else o += (size_t)snprintf(buf + o, n - o, "act(%s) ", spec);
    }
    if (o > 0 && o <= n) buf[o - 1] = 0;
}

int cmd_info(int argc, char **argv) {
    cli_args a = {.argc = argc, .argv = argv, .i = 1, .verb = "info"};
    const char *tokenizer = NULL;
    while (a.i < argc) {
        int r = cli_option(&a, "--tokenizer", NULL, &tokenizer);
        if (r < 0) return CLI_USAGE;
        if (r == 0 && (r = cli_unknown(&a)) != 0) return r;
    }
    if (a.help) {
        fputs(info_help, stdout);
        return CLI_OK;
    }
    if (a.n_positional != 1) return cli_usage_error("info", "expected one MODEL");
    lb_model *m;
    if (cli_load_model("info", a.positional[0], tokenizer, &m)) return CLI_FAIL;
    struct stat st;
    long long file_size = stat(a.positional[0], &st) == 0 ? (long long)st.st_size : -1;
    lb_model_size sz;
    lb_model_sizes(m, &sz);
    const lb_config *c = &m->cfg;
    /* a GGUF split set: the first shard is m->file, the others m->shards */
    int gguf_files = !strcmp(m->source_format, "gguf") ? 1 + m->n_shards : 0;
    if (a.json) {
        json_begin_object();
        json_kstr("file", a.positional[0]);
        json_kstr("file_format", m->source_format);
        json_kint("file_bytes", file_size); /* a split set: the first shard's */
        if (gguf_files) json_kint("gguf_shards", gguf_files);
        json_kstr("architecture", "llama");
        json_key("config");
        json_begin_object();
        const struct {
            const char *k;
            int v;
        } cfg[] = {{"dim", c->dim},       {"hidden_dim", c->hidden_dim}, {"n_layers", c->n_layers},
                   {"n_heads", c->n_heads}, {"n_kv_heads", c->n_kv_heads}, {"vocab_size", c->vocab_size},
                   {"seq_len", c->seq_len}, {"head_dim", c->head_dim}};
        for (size_t i = 0; i < sizeof cfg / sizeof cfg[0]; i++) {
            json_kint(cfg[i].k, cfg[i].v);
        }
        json_knum("norm_eps", c->norm_eps);
        json_knum("rope_theta", c->rope_theta);
        json_kbool("tied_output", m->tied_output);
        json_end_object();
        json_kbool("tokenizer", m->tokenizer != NULL);
        json_kstr("quant_note", m->quant_note);
        json_key("tensors");
        json_begin_array();
    } else {
        printf("%s: %s, llama: dim %d, hidden %d, %d layers, %d heads (%d kv), vocab %d, context %d%s\n",
               a.positional[0], m->source_format, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
               c->vocab_size, c->seq_len, m->tied_output ? ", classifier tied to the embedding" : "");
        if (gguf_files > 1) printf("split set: %d shards (llama.cpp's gguf-split naming), opened from the first\n", gguf_files);
        printf("tokenizer: %s\n", m->tokenizer ? "yes" : "none found (pass --tokenizer)");
        if (m->quant_note[0]) printf("quantized: %s\n", m->quant_note);
        printf("\n%-28s %12s  %-28s %-7s %10s %8s  %s\n", "tensor", "shape", "format", "stored", "bytes", "bpw", "kernel");
    }
    for (int i = 0; i < lb_model_n_tensors(m); i++) {
        const lb_tensor *t = lb_model_tensor_at(m, i);
        const lb_linear *L = linear_of(m, t);
        char slots[160] = "";
        if (L && lb_linear_has_slots(L)) describe_slots(L, slots, sizeof slots);
        char spec[64], shape[32];
        lb_qspec_format(&t->spec, spec, sizeof spec);
        int gt = lb_format_ggml_type(&t->spec, t->cols);
        lb_ggml_type_info gi;
        const char *stored = gt >= 0 && lb_ggml_type_lookup(gt, &gi) ? gi.name : "lowbit";
        double bpw = 8.0 * (double)t->nbytes / (double)(t->rows * t->cols);
        if (a.json) {
            json_begin_object();
            json_kstr("name", t->name);
            json_kint("rows", t->rows);
            json_kint("cols", t->cols);
            json_kstr("format", spec);
            json_kstr("stored_as", stored);
            json_kint("bytes", (long long)t->nbytes);
            json_knum("bpw", bpw);
            if (t->rows > 1) json_kstr("kernel", lb_matmul_kernel_name(t)); /* what lb_matmul runs on this CPU */
            if (slots[0]) {
                json_kstr("slots", slots);
                json_kint("slot_bytes", (long long)lb_linear_slot_bytes(L));
            }
            json_end_object();
        } else {
            snprintf(shape, sizeof shape, "%lldx%lld", (long long)t->rows, (long long)t->cols);
            printf("%-28s %12s  %-28s %-7s %10zu %8.4f  %s\n", t->name, shape, spec, stored, t->nbytes, bpw,
                   t->rows > 1 ? lb_matmul_kernel_name(t) : "-");
            if (slots[0]) printf("  + %-54s %-7s %10zu\n", slots, "slots", lb_linear_slot_bytes(L));
        }
    }
    if (a.json) {
        json_end_array();
        json_kint("weights", (long long)sz.weights_all);
        json_kint("quantized_weights", (long long)sz.weights_quant);
        json_knum("bpw", sz.bpw);
        json_knum("bpw_all", sz.bpw_all);
        json_end_object();
        json_done();
    } else {
        char w1[32], w2[32];
        printf("\n%s weights; %s quantized", fmt_thousands((long long)sz.weights_all, w1, sizeof w1),
               fmt_thousands((long long)sz.weights_quant, w2, sizeof w2));
        if (sz.weights_quant) printf(" at %.4f bpw", sz.bpw);
        printf("; whole model %.4f bpw (%s bytes of tensors)\n", sz.bpw_all, fmt_thousands((long long)sz.bytes_all, w1, sizeof w1));
    }
    lb_model_free(m);
    return CLI_OK;
}
