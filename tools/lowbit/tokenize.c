/* lowbit tokenize: the token ids of a text under a model's or a vocab file's
 * tokenizer. */
#include <string.h>

#include "cli.h"

static const char *tokenize_help =
    "usage: lowbit tokenize MODEL_OR_VOCAB (-p TEXT | -f FILE) [--bos] [--eos] [--special] [--json]\n\n"
    "Prints the token ids of TEXT (or of FILE's bytes, a final newline included), space-\n"
    "separated on one line, as llama.cpp's llama_tokenize gives them for GGUF files.\n"
    "MODEL_OR_VOCAB is a GGUF file with tokenizer.ggml.* keys (a model or a vocab-only file:\n"
    "tokenizer.ggml.model \"llama\" (SentencePiece-style) or \"gpt2\" (byte-level BPE with the\n"
    "pre-tokenizers default, gpt-2, falcon, starcoder, llama3, qwen2 and their aliases; others\n"
    "are refused by name), or a llama2.c checkpoint with its tokenizer (tok<vocab>.bin beside it\n"
    "or --tokenizer). No BOS unless asked: the vocabulary's add_bos_token is not applied.\n\n"
    "  -p, --prompt TEXT  the text\n"
    "  -f, --file FILE    read the text from FILE\n"
    "  --bos, --eos       put a BOS first / an EOS last\n"
    "  --special          control tokens written in the text (\"<s>\", \"<|endoftext|>\") become\n"
    "                     those tokens (llama.cpp's parse_special); without, they are text\n"
    "  --tokenizer FILE   llama2.c tokenizer for a llama2.c checkpoint\n"
    "  --json             one JSON object: file, tokenizer (llama2c, llama or gpt2), pre,\n"
    "                     vocab_size, n_tokens, ids, text (the ids decoded)\n";

int cmd_tokenize(int argc, char **argv) {
    cli_args a = {.argc = argc, .argv = argv, .i = 1, .verb = "tokenize"};
    const char *prompt = NULL, *file = NULL, *tok_path = NULL;
    unsigned flags = 0;
    while (a.i < argc) {
        int r;
        if ((r = cli_option(&a, "--prompt", "-p", &prompt)) || (r = cli_option(&a, "--file", "-f", &file)) ||
            (r = cli_option(&a, "--tokenizer", NULL, &tok_path))) {
            if (r < 0) return CLI_USAGE;
            continue;
        }
        if (cli_flag(&a, "--bos")) flags |= LB_TOKENIZE_BOS;
        else if (cli_flag(&a, "--eos")) flags |= LB_TOKENIZE_EOS;
        else if (cli_flag(&a, "--special")) flags |= LB_TOKENIZE_SPECIAL;
        else if ((r = cli_unknown(&a)) != 0) return r;
    }
    if (a.help) {
        fputs(tokenize_help, stdout);
        return CLI_OK;
    }
    if (a.n_positional != 1) return cli_usage_error("tokenize", "expected one MODEL_OR_VOCAB");
    if (!prompt == !file) return cli_usage_error("tokenize", "give the text with exactly one of -p TEXT or -f FILE");
    const char *path = a.positional[0];

    char *text = NULL;
    size_t len = 0;
    if (file) {
        if (lb_read_file(file, &text, &len) != LB_OK) return cli_error("tokenize", NULL);
    }
    /* GGUF: only the tokenizer is read (a model's tensors need not be loadable) */
    lb_tokenizer *tok = NULL;
    lb_model *m = NULL;
    char magic[4] = {0};
    FILE *f = fopen(path, "rb");
    int is_gguf = f && fread(magic, 1, 4, f) == 4 && !memcmp(magic, "GGUF", 4);
    if (f) fclose(f);
    int rc = CLI_OK;
    if (is_gguf) {
        if (tok_path) {
            rc = cli_usage_error("tokenize", "--tokenizer is for llama2.c checkpoints; '%s' is GGUF", path);
            goto done;
        }
        if (lb_tokenizer_load_gguf(path, &tok) != LB_OK) {
            rc = cli_error("tokenize", NULL);
            goto done;
        }
    } else {
        if ((rc = cli_load_model("tokenize", path, tok_path, &m)) != CLI_OK) goto done;
        if (!m->tokenizer) {
            rc = cli_error("tokenize", "'%s' has no tokenizer (for a llama2.c checkpoint put tok%d.bin beside it "
                           "or give --tokenizer FILE)", path, m->cfg.vocab_size);
            goto done;
        }
        tok = m->tokenizer;
    }
    int *ids = NULL;
    size_t n = 0;
    if (lb_tokenize_ex(tok, file ? text : prompt, file ? len : strlen(prompt), flags, &ids, &n) != LB_OK) {
        rc = cli_error("tokenize", NULL);
        goto done;
    }
    if (a.json) {
        char *decoded = NULL;
        size_t dl = 0;
        if (lb_detokenize_all(tok, ids, n, &decoded, &dl) != LB_OK) {
            lb_free(ids);
            rc = cli_error("tokenize", NULL);
            goto done;
        }
        json_begin_object();
        json_kstr("file", path);
        json_kstr("tokenizer", lb_tokenizer_kind(tok));
        json_kstr("pre", lb_tokenizer_pre(tok));
        json_kint("vocab_size", lb_tokenizer_vocab_size(tok));
        json_kint("n_tokens", (long long)n);
        json_key("ids");
        json_begin_array();
        for (size_t i = 0; i < n; i++) json_int(ids[i]);
        json_end_array();
        json_key("text");
        json_stringn(decoded, dl);
        json_end_object();
        json_done();
        lb_free(decoded);
    } else {
        for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        printf("\n");
    }
    lb_free(ids);
done:
    if (m) lb_model_free(m);
    else lb_tokenizer_free(tok);
    lb_free(text);
    return rc;
}
