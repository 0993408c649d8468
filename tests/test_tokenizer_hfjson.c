/* Hugging Face tokenizer.json: llama.cpp's GPT-2 test vocabulary written as
 * tokenizer.json and read back tokenizes its test strings to the same ids
 * (and writes back byte for byte); a hand-written byte_fallback (Llama-style)
 * file gives the ids HF's BPE gives by hand; malformed files each fail with
 * their message. */
#include "test.h"

#include <unistd.h>

static char dir[] = "/tmp/lb_thj_XXXXXX";

static char *read_all(const char *path, size_t *len) {
    char *text = NULL;
    CHECK_OK(lb_read_file(path, &text, len));
    return text;
}

static void test_gpt2_round_trip(void) {
    lb_tokenizer *g, *j, *s;
    CHECK_OK(lb_tokenizer_load_gguf(lb_test_data("vocab/ggml-vocab-gpt-2.gguf"), &g));
    char path[256], again[256];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    snprintf(again, sizeof again, "%s/again.json", dir);
    CHECK_OK(lb_tokenizer_save_hf_json(g, path));
    CHECK_OK(lb_tokenizer_load_hf_json(path, &j));
    CHECK(!strcmp(lb_tokenizer_kind(j), "gpt2") && !strcmp(lb_tokenizer_pre(j), "gpt-2"));
    CHECK(lb_tokenizer_vocab_size(j) == lb_tokenizer_vocab_size(g));
    CHECK(lb_tokenizer_bos(j) == lb_tokenizer_bos(g) && lb_tokenizer_eos(j) == lb_tokenizer_eos(g));
    size_t len;
    char *text = read_all(lb_test_data("vocab/ggml-vocab-gpt-2.gguf.inp"), &len);
    int *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    CHECK_OK(lb_tokenize_ex(g, text, len, LB_TOKENIZE_SPECIAL, &a, &na));
    CHECK_OK(lb_tokenize_ex(j, text, len, LB_TOKENIZE_SPECIAL, &b, &nb));
    CHECK(na == nb && na > 500 && !memcmp(a, b, na * sizeof *a));
    lb_free(a);
    lb_free(b);
    lb_free(text);
    CHECK_OK(lb_tokenizer_save_hf_json(j, again));
    char cmd[600];
    snprintf(cmd, sizeof cmd, "cmp -s %s %s", path, again);
    CHECK(system(cmd) == 0);
    lb_tokenizer_free(j);
    lb_tokenizer_free(g);
    /* SentencePiece vocabularies go to tokenizer.model instead */
    CHECK_OK(lb_tokenizer_load_gguf(lb_test_data("vocab/ggml-vocab-llama-spm.gguf"), &s));
    CHECK_FAILS(lb_tokenizer_save_hf_json(s, again), LB_ERR_UNSUPPORTED, "tokenizer.model");
    lb_tokenizer_free(s);
}

/* <unk> <s> </s> then pieces; merges "▁ a", "a b", "▁a b"; byte fallback for '!' */
#define SP "\xe2\x96\x81"
static const char *llama_json =
    "{\"version\": \"1.0\", \"added_tokens\": [{\"id\": 0, \"content\": \"<unk>\", \"special\": true},"
    " {\"id\": 1, \"content\": \"<s>\", \"special\": true}, {\"id\": 2, \"content\": \"</s>\", \"special\": true}],"
    " \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": \"" SP "\"},"
    " {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"" SP "\"}]},"
    " \"pre_tokenizer\": null,"
    " \"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"byte_fallback\": true, \"vocab\": {\"<unk>\": 0,"
    " \"<s>\": 1, \"</s>\": 2, \"" SP "\": 3, \"a\": 4, \"b\": 5, \"" SP "a\": 6, \"ab\": 7, \"" SP "ab\": 8,"
    " \"<0x21>\": 9}, \"merges\": [\"" SP " a\", [\"a\", \"b\"], \"" SP "a b\"]}}";

static void test_llama_style(void) {
    lb_tokenizer *t;
    CHECK_OK(lb_tokenizer_from_hf_json(llama_json, strlen(llama_json), &t));
    if (!t) return;
    CHECK(!strcmp(lb_tokenizer_kind(t), "llama") && lb_tokenizer_bos(t) == 1 && lb_tokenizer_eos(t) == 2);
    int *ids = NULL;
    size_t n = 0;
    CHECK_OK(lb_tokenize(t, "ab ab!", 6, 1, 0, &ids, &n));
    CHECK_MSG(n == 4 && ids[0] == 1 && ids[1] == 8 && ids[2] == 8 && ids[3] == 9, "got %zu ids", n);
    lb_free(ids);
    uint8_t byte;
    CHECK(lb_tokenizer_byte_piece(t, 9, &byte) && byte == '!');
    lb_tokenizer_free(t);
}

static void test_malformed(void) {
    const struct {
        const char *from, *to, *needle;
        lb_status want;
    } cases[] = {
        {"\"type\": \"BPE\"", "\"type\": \"WordPiece\"", "not \"BPE\"", LB_ERR_UNSUPPORTED},
        {"\"b\": 5", "\"b\": 15", "ids reach 15", LB_ERR_FORMAT},
        {"\"b\": 5", "\"b\": 10", "no token has id 5", LB_ERR_FORMAT},
        {"\"b\": 5", "\"b\": -5", "not an integer in 0..", LB_ERR_FORMAT},
        {"\"b\": 5", "\"b\": 2", "names two different tokens", LB_ERR_FORMAT},
        {"[\"a\", \"b\"]", "[\"a\", \"q\"]", "merge 1 is not two tokens", LB_ERR_FORMAT},
        {"\"byte_fallback\": true", "\"byte_fallback\": false", "neither byte_fallback nor a ByteLevel", LB_ERR_UNSUPPORTED},
        {"\"pre_tokenizer\": null", "\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": "
         "\"Split\", \"pattern\": {\"Regex\": \"x+\"}}, {\"type\": \"ByteLevel\"}]}", "split before ByteLevel",
         LB_ERR_UNSUPPORTED},
        {"\"merges\": [", "\"merges\": {", "JSON: byte", LB_ERR_FORMAT},
        {"\"vocab\": {", "\"vocab\": [", "JSON: byte", LB_ERR_FORMAT},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        char buf[4096];
        const char *at = strstr(llama_json, cases[k].from);
        CHECK(at != NULL);
        if (!at) continue;
        snprintf(buf, sizeof buf, "%.*s%s%s", (int)(at - llama_json), llama_json, cases[k].to, at + strlen(cases[k].from));
        if (strstr(cases[k].needle, "split before")) { /* the split is only looked at for a byte-level model */
            char *fb = strstr(buf, "\"byte_fallback\": true");
            memcpy(fb, "\"byte_fallback\": 0   ", 21);
        }
        lb_tokenizer *t;
        CHECK_FAILS(lb_tokenizer_from_hf_json(buf, strlen(buf), &t), cases[k].want, cases[k].needle);
    }
    lb_tokenizer *t;
    CHECK_FAILS(lb_tokenizer_from_hf_json("{\"model\": 3}", 12, &t), LB_ERR_UNSUPPORTED, "not \"BPE\"");
}

int main(void) {
    lb_test_data("vocab/ggml-vocab-gpt-2.gguf");
    CHECK(mkdtemp(dir) != NULL);
    test_gpt2_round_trip();
    test_llama_style();
    test_malformed();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    printf("test_tokenizer_hfjson: %d checks, %d failures\n", lb_test_checks, lb_test_failures);
    return lb_test_failures ? 1 : 0;
}
