/* GGUF tokenizers on hand-made vocabularies with known answers: merge order
 * by rank (BPE) and by score (SPM), leftmost on ties, byte fallback, the
 * space prefix, special tokens (user-defined always, control only when
 * asked), decode, write/read round trip; and malformed vocabularies (unknown
 * model or pre-tokenizer, merges naming unknown tokens, empty vocab, ids out
 * of range, bad types, truncated files) failing with a message that names
 * the problem. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include "test.h"

#include <unistd.h>

#include "model/unicode.h"

static char dir[] = "/tmp/lb_tokgguf_XXXXXX";

typedef struct {
    const char *model, *pre;
    const char **tokens;
    int n_tokens;
    const int32_t *types; /* NULL: none stored */
    const float *scores;  /* NULL: none stored */
    const char **merges;
    int n_merges;         /* -1: no merges key */
    int bos;              /* -1: no key */
    int no_space_prefix;  /* 1: add_space_prefix = false */
} vocab;

/* Writes v as a tensor-less GGUF file and returns its path. */
static const char *write_vocab(const vocab *v, const char *name) {
    static char path[256];
    snprintf(path, sizeof path, "%s/%s.gguf", dir, name);
    lb_gguf_writer *w;
    CHECK_OK(lb_gguf_writer_create(&w));
    CHECK_OK(lb_gguf_set_str(w, "general.architecture", "llama"));
    if (v->model) CHECK_OK(lb_gguf_set_str(w, "tokenizer.ggml.model", v->model));
    if (v->pre) CHECK_OK(lb_gguf_set_str(w, "tokenizer.ggml.pre", v->pre));
    if (v->tokens) CHECK_OK(lb_gguf_set_arr_str(w, "tokenizer.ggml.tokens", v->tokens, NULL, (uint64_t)v->n_tokens));
    if (v->types) CHECK_OK(lb_gguf_set_arr(w, "tokenizer.ggml.token_type", LB_GGUF_INT32, v->types, (uint64_t)v->n_tokens));
    if (v->scores) CHECK_OK(lb_gguf_set_arr(w, "tokenizer.ggml.scores", LB_GGUF_FLOAT32, v->scores, (uint64_t)v->n_tokens));
    if (v->n_merges >= 0) CHECK_OK(lb_gguf_set_arr_str(w, "tokenizer.ggml.merges", v->merges, NULL, (uint64_t)v->n_merges));
    if (v->bos >= 0) CHECK_OK(lb_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)v->bos));
    if (v->no_space_prefix) CHECK_OK(lb_gguf_set_bool(w, "tokenizer.ggml.add_space_prefix", 0));
    CHECK_OK(lb_gguf_write(w, path));
    lb_gguf_writer_free(w);
    return path;
}

/* The ids of text as a space-separated string. */
static const char *ids(const lb_tokenizer *t, const char *text, unsigned flags) {
    static char out[512];
    int *tok;
    size_t n, o = 0;
    out[0] = 0;
    if (lb_tokenize_ex(t, text, strlen(text), flags, &tok, &n) != LB_OK) return lb_last_error();
    for (size_t i = 0; i < n && o < sizeof out - 12; i++) o += (size_t)snprintf(out + o, sizeof out - o, i ? " %d" : "%d", tok[i]);
    lb_free(tok);
    return out;
}

#define ENCODES(t, text, flags, want)                                                             \
    do {                                                                                          \
        const char *got_ = ids(t, text, flags);                                                   \
        CHECK_MSG(!strcmp(got_, want), "\"%s\" -> \"%s\", want \"%s\"", text, got_, want);         \
    } while (0)

/* A byte-level vocabulary: the 256 stand-ins (ids 0..255 in byte order),
 * then extra tokens; merges as given. */
static lb_tokenizer *bpe_vocab(const char **extra, int n_extra, const char **merges, int n_merges, const char *pre) {
    static char stand_in[256][4];
    const char *tokens[300];
    for (int b = 0; b < 256; b++) {
        size_t k = lb_utf8_encode(lb_gpt2_byte_to_cpt((uint8_t)b), stand_in[b]);
        stand_in[b][k] = 0;
        tokens[b] = stand_in[b];
    }
    for (int i = 0; i < n_extra; i++) tokens[256 + i] = extra[i];
    vocab v = {"gpt2", pre, tokens, 256 + n_extra, NULL, NULL, merges, n_merges, -1, 0};
    lb_tokenizer *t = NULL;
    CHECK_OK(lb_tokenizer_load_gguf(write_vocab(&v, "bpe"), &t));
    if (!t) exit(1);
    return t;
}

static void test_bpe_merges(void) {
    /* ranks decide, not the order of the text: "b c" (rank 0) before "a b" */
    const char *extra[] = {"ab", "bc", "abc", "\xc4\xa0" "a", "aa"}; /* 256..260; "Ġa" is " a" */
    const char *by_rank[] = {"b c", "a b", "a bc", "\xc4\xa0 a", "a a"};
    lb_tokenizer *t = bpe_vocab(extra, 5, by_rank, 5, "gpt-2");
    ENCODES(t, "abc", 0, "258");        /* a (bc) -> abc */
    ENCODES(t, "ab", 0, "256");
    ENCODES(t, "aaa", 0, "260 97");     /* leftmost pair first on a tie */
    /* words "x", " abc"; Ġ a b c: b+c (0), then a+bc (2) before Ġ+a (3), then Ġ+abc is no merge */
    ENCODES(t, "x abc", 0, "120 32 258");
    ENCODES(t, " a", 0, "259");
    lb_tokenizer_free(t);
    const char *other_order[] = {"a b", "b c", "ab c"};
    const char *extra2[] = {"ab", "bc", "abc"};
    t = bpe_vocab(extra2, 3, other_order, 3, "gpt-2");
    ENCODES(t, "abc", 0, "258");        /* (ab) c -> abc */
    ENCODES(t, "bcab", 0, "257 256");
    /* llama3's ignore_merges: a word that is a token is taken whole, even
     * where no merge sequence builds it; other pre-tokenizers merge */
    const char *extra3[] = {"ab", "abc"}, *merges3[] = {"a b"};
    lb_tokenizer *l3 = bpe_vocab(extra3, 2, merges3, 1, "llama3");
    ENCODES(l3, "abc", 0, "257");
    CHECK(lb_tokenizer_add_bos(l3) == 1 && !strcmp(lb_tokenizer_pre(l3), "llama3"));
    lb_tokenizer_free(l3);
    l3 = bpe_vocab(extra3, 2, merges3, 1, "gpt-2");
    ENCODES(l3, "abc", 0, "256 99");
    CHECK(lb_tokenizer_add_bos(l3) == 0);
    lb_tokenizer_free(l3);
    char *text;
    size_t len;
    int in[] = {256, 32, 257, 10}; /* "ab", "Ġ" (byte ' '), "bc", "Ċ" (byte '\n') */
    CHECK_OK(lb_detokenize_all(t, in, 4, &text, &len));
    CHECK(len == 6 && !memcmp(text, "ab bc\n", 6));
    lb_free(text);
    lb_tokenizer_free(t);
}

/* SPM: <unk> <s> </s>, the 256 byte tokens (3..258), then pieces. */
#define SP "\xe2\x96\x81"
static const char *spm_tokens[266];
static int32_t spm_types[266];
static float spm_scores[266];

static vocab spm_vocab(void) {
    static char bytes[256][8];
    static const char *pieces[] = {SP, "a", "b", SP "a", "ab", "<x>"}; /* 259..264 */
    static const float piece_scores[] = {-1, -2, -3, -4, -5, 0};
    spm_tokens[0] = "<unk>", spm_tokens[1] = "<s>", spm_tokens[2] = "</s>";
    spm_types[0] = 2, spm_types[1] = spm_types[2] = 3;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        spm_tokens[3 + b] = bytes[b];
        spm_types[3 + b] = 6;
    }
    for (int i = 0; i < 6; i++) {
        spm_tokens[259 + i] = pieces[i];
        spm_types[259 + i] = i == 5 ? 4 : 1; /* "<x>" is user-defined */
        spm_scores[259 + i] = piece_scores[i];
    }
    return (vocab){"llama", NULL, spm_tokens, 265, spm_types, spm_scores, NULL, -1, -1, 0};
}


/* t written to DIR/NAME.gguf by lb_tokenizer_write_gguf and read back (NULL,
 * with a failed check, when either step fails) */
static lb_tokenizer *write_read(const lb_tokenizer *t, const char *name) {
    lb_gguf_writer *w;
    char path[256];
    snprintf(path, sizeof path, "%s/%s.gguf", dir, name);
    CHECK_OK(lb_gguf_writer_create(&w));
    CHECK_OK(lb_tokenizer_write_gguf(t, w));
    CHECK_OK(lb_gguf_write(w, path));
    lb_gguf_writer_free(w);
    lb_tokenizer *back = NULL;
    CHECK_OK(lb_tokenizer_load_gguf(path, &back));
    return back;
}
static void test_spm(void) {
    vocab v = spm_vocab();
    lb_tokenizer *t = NULL;
    CHECK_OK(lb_tokenizer_load_gguf(write_vocab(&v, "spm"), &t));
    if (!t) return;
    CHECK(!strcmp(lb_tokenizer_kind(t), "llama") && lb_tokenizer_add_bos(t) && lb_tokenizer_bos(t) == 1);
    ENCODES(t, "ab", 0, "262 261");          /* "▁a" (-4) scores above "ab" (-5) */
    ENCODES(t, "ac", 0, "262 102");          /* c is not a piece: <0x63> */
    ENCODES(t, " a", 0, "259 262");          /* the prefix space and the text's own */
    ENCODES(t, "ab", LB_TOKENIZE_BOS | LB_TOKENIZE_EOS, "1 262 261 2");
    ENCODES(t, "a<x>b", 0, "262 264 259 261"); /* user-defined: always cut out; a space prefix follows it */
    ENCODES(t, "a<s>", 0, "262 63 118 65");  /* control tokens are text unless asked */
    ENCODES(t, "a<s>", LB_TOKENIZE_SPECIAL, "262 1");
    ENCODES(t, "", 0, "");
    ENCODES(t, "", LB_TOKENIZE_BOS, "1");
    char *text;
    size_t len;
    int in[] = {1, 262, 261, 2, 264, 102};
    CHECK_OK(lb_detokenize_all(t, in, 6, &text, &len));
    CHECK_MSG(len == 6 && !memcmp(text, "ab<x>c", 6), "decoded \"%s\"", text); /* BOS's space dropped, </s> silent */
    lb_free(text);
    /* write and read back: the same vocabulary */
    lb_tokenizer *back = write_read(t, "spm_back");
    if (back) {
        ENCODES(back, "a<x>b", 0, "262 264 259 261");
        ENCODES(back, "a<s>", LB_TOKENIZE_SPECIAL, "262 1");
        CHECK(lb_tokenizer_score(back, 262) == -4.0f);
    }
    lb_tokenizer_free(back);
    lb_tokenizer_free(t);
    v.no_space_prefix = 1;
    CHECK_OK(lb_tokenizer_load_gguf(write_vocab(&v, "spm_noprefix"), &t));
    if (t) ENCODES(t, "ab", 0, "263"); /* no "▁" before the text: "ab" itself */
    lb_tokenizer_free(t);
}

static void test_bpe_round_trip(void) {
    const char *extra[] = {"ab", "bc", "abc", "<|end|>"};
    const char *merges[] = {"b c", "a b", "a bc"};
    lb_tokenizer *t = bpe_vocab(extra, 4, merges, 3, "falcon");
    lb_tokenizer *back = write_read(t, "bpe_back");
    if (back) {
        CHECK(!strcmp(lb_tokenizer_pre(back), "falcon"));
        const char *texts[] = {"abc abcabc 12345", "x+=abc\n\n", "<|end|>"};
        for (int i = 0; i < 3; i++) {
            char want[512];
            snprintf(want, sizeof want, "%s", ids(t, texts[i], 0));
            ENCODES(back, texts[i], 0, want);
        }
    }
    lb_tokenizer_free(back);
    lb_tokenizer_free(t);
}

/* Loading v must fail with status want and a message containing needle. */
#define REJECTS(v, want, needle)                                                      \
    do {                                                                              \
        lb_tokenizer *t_ = NULL;                                                      \
        CHECK_FAILS(lb_tokenizer_load_gguf(write_vocab(&(v), "bad"), &t_), want, needle); \
        CHECK(t_ == NULL);                                                            \
    } while (0)

static void test_malformed(void) {
    const char *tokens[] = {"a", "b", "ab", "c"};
    const char *merges[] = {"a b"};
    vocab ok = {"gpt2", "gpt-2", tokens, 4, NULL, NULL, merges, 1, -1, 0};
    lb_tokenizer *t = NULL;
    CHECK_OK(lb_tokenizer_load_gguf(write_vocab(&ok, "small"), &t));
    if (t) {
        ENCODES(t, "ab", 0, "2");
        /* no stand-in for ' ' (or any byte) in this vocab: an error, not a dropped byte */
        CHECK_FAILS(lb_tokenize_ex(t, "a d", 3, 0, &(int *){0}, &(size_t){0}), LB_ERR_INVALID, "no token to fall back on");
        CHECK_FAILS(lb_tokenize_ex(t, "a", 1, LB_TOKENIZE_BOS, &(int *){0}, &(size_t){0}), LB_ERR_INVALID, "BOS");
        CHECK_FAILS(lb_tokenize_ex(t, "\xff", 1, 0, &(int *){0}, &(size_t){0}), LB_ERR_INVALID, "UTF-8");
    }
    lb_tokenizer_free(t);
    vocab v = ok;
    v.model = "bert";
    REJECTS(v, LB_ERR_UNSUPPORTED, "\"bert\" is not supported; supported: llama");
    v = ok, v.model = NULL;
    REJECTS(v, LB_ERR_FORMAT, "no tokenizer.ggml.model");
    v = ok, v.pre = "bloom";
    REJECTS(v, LB_ERR_UNSUPPORTED, "pre-tokenizer 'bloom' (tokenizer.ggml.pre) is not supported; supported: default");
    v = ok, v.n_merges = -1;
    REJECTS(v, LB_ERR_FORMAT, "needs tokenizer.ggml.merges");
    const char *unknown[] = {"a zz"}, *nospace[] = {"ab"};
    v = ok, v.merges = unknown;
    REJECTS(v, LB_ERR_FORMAT, "merge 0 \"a zz\" names \"zz\", which is not a token");
    v = ok, v.merges = nospace;
    REJECTS(v, LB_ERR_FORMAT, "has no space");
    v = ok, v.n_tokens = 0;
    REJECTS(v, LB_ERR_FORMAT, "0 entries");
    v = ok, v.tokens = NULL;
    REJECTS(v, LB_ERR_FORMAT, "no tokenizer.ggml.tokens");
    v = ok, v.bos = 4;
    REJECTS(v, LB_ERR_FORMAT, "bos_token_id = 4 is outside the vocabulary of 4 tokens");
    int32_t types[] = {1, 1, 9, 1};
    v = ok, v.types = types;
    REJECTS(v, LB_ERR_FORMAT, "token 2 has type 9");
    float scores[] = {0, NAN, 0, 0};
    v = spm_vocab(), v.n_tokens = 4, v.tokens = tokens, v.scores = scores, v.types = NULL, v.bos = 0;
    REJECTS(v, LB_ERR_NUMERIC, "non-finite score");
    /* a truncated file: the GGUF parser names it */
    const char *path = write_vocab(&ok, "cut");
    char *data;
    size_t size;
    CHECK_OK(lb_read_file(path, &data, &size));
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(data, 1, size / 2, f) == size / 2); /* into the keys, not just the padding */
    if (f) fclose(f);
    lb_free(data);
    CHECK_FAILS(lb_tokenizer_load_gguf(path, &t), LB_ERR_FORMAT, "truncated");
    CHECK_FAILS(lb_tokenizer_load_gguf("/nonexistent/x.gguf", &t), LB_ERR_IO, "x.gguf");
}

int main(void) {
    CHECK(mkdtemp(dir) != NULL);
    test_bpe_merges();
    test_spm();
    test_bpe_round_trip();
    test_malformed();
    const char *made[] = {"bpe", "spm", "spm_back", "spm_noprefix", "bpe_back", "small", "bad", "cut"};
    for (size_t i = 0; i < sizeof made / sizeof made[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s.gguf", dir, made[i]);
        remove(path);
    }
    CHECK(rmdir(dir) == 0);
    return lb_test_finish("test_tokenizer_gguf");
}
