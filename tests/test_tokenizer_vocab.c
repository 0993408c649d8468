/* llama.cpp's tokenizer test vectors (../shared/data/vocab: vocab-only GGUF
 * files from llama.cpp's test suite with .inp/.out pairs, made by its
 * test-tokenizer-0): every expected token sequence must come out exactly,
 * without BOS and without parsing special tokens, as that test runs. Each
 * sequence must also decode back to its input (true for these inputs: every
 * character is in the vocabulary or falls back to bytes). Skipped, loudly,
 * when the data folder is absent. */
#include "test.h"

static char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)size + 1);
    if (buf && fread(buf, 1, (size_t)size, f) != (size_t)size) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) buf[size] = 0;
    *n = (size_t)size;
    return buf;
}

/* One vocabulary: returns the number of test strings checked. */
static int check_vocab(const char *name, const char *want_kind, const char *want_pre) {
    char path[600], inp_path[620], out_path[620];
    snprintf(path, sizeof path, "%s", lb_test_data(name));
    snprintf(inp_path, sizeof inp_path, "%s.inp", path);
    snprintf(out_path, sizeof out_path, "%s.out", path);
    lb_tokenizer *t = NULL;
    CHECK_OK(lb_tokenizer_load_gguf(path, &t));
    if (!t) return 0;
    CHECK(!strcmp(lb_tokenizer_kind(t), want_kind));
    CHECK(!strcmp(lb_tokenizer_pre(t), want_pre));
    size_t ni, no;
    char *inp = read_all(inp_path, &ni), *out = read_all(out_path, &no);
    CHECK(inp && out);
    int n_cases = 0, n_ok = 0;
    const char *sep = "\n__ggml_vocab_test__\n";
    /* .out has one line per input, empty for an empty input */
    char *op = out;
    for (size_t pos = 0; inp && op && pos < ni;) {
        const char *next = strstr(inp + pos, sep);
        size_t len = next ? (size_t)(next - (inp + pos)) : ni - pos;
        char *eol = strchr(op, '\n');
        if (!eol) break;
        *eol = 0;
        int want[4096], nw = 0;
        for (char *q = op; *q;) {
            char *end;
            long v = strtol(q, &end, 10);
            if (end == q) break;
            if (nw < 4096) want[nw++] = (int)v;
            q = end;
        }
        int *got = NULL;
        size_t ng = 0;
        CHECK_OK(lb_tokenize_ex(t, inp + pos, len, 0, &got, &ng));
        int same = got && (int)ng == nw;
        for (int i = 0; same && i < nw; i++) same = got[i] == want[i];
        n_cases++;
        n_ok += same;
        if (!same) {
            fprintf(stderr, "%s case %d: \"%.*s\"\n  want:", name, n_cases, (int)len, inp + pos);
            for (int i = 0; i < nw; i++) fprintf(stderr, " %d", want[i]);
            fprintf(stderr, "\n  got: ");
            for (size_t i = 0; got && i < ng; i++) fprintf(stderr, " %d", got[i]);
            fputc('\n', stderr);
        }
        CHECK(same);
        char *text = NULL;
        size_t tl = 0;
        CHECK_OK(lb_detokenize_all(t, got, ng, &text, &tl));
        CHECK_MSG(text && tl == len && !memcmp(text, inp + pos, len), "%s case %d decodes to \"%s\"", name, n_cases,
                  text ? text : "");
        lb_free(text);
        lb_free(got);
        op = eol + 1;
        pos = next ? (size_t)(next - inp) + strlen(sep) : ni;
    }
    CHECK(op && *op == 0); /* as many expected lines as inputs */
    printf("%s: %d/%d test strings tokenize as llama.cpp does\n", name, n_ok, n_cases);
    free(inp);
    free(out);
    lb_tokenizer_free(t);
    return n_cases;
}

int main(void) {
    CHECK(check_vocab("vocab/ggml-vocab-llama-spm.gguf", "llama", "") > 30);
    CHECK(check_vocab("vocab/ggml-vocab-gpt-2.gguf", "gpt2", "gpt-2") > 30);
    CHECK(check_vocab("vocab/ggml-vocab-falcon.gguf", "gpt2", "falcon") > 30);
    CHECK(check_vocab("vocab/ggml-vocab-starcoder.gguf", "gpt2", "starcoder") > 30);
    return lb_test_finish("test_tokenizer_vocab");
}
