/* A quantized model through one GGUF file and back: bit-identical logits
 * for every format family, ggml type ids where the bytes are ggml's, the
 * tokenizer carried along, and model-level bad files. */
#include "gguf_copy.h"
#include "test.h"

#include <unistd.h>

static char dir[] = "/tmp/lb_mgguf_XXXXXX";

static lb_model *load_fp32(void) {
    lb_model *m;
    if (lb_model_load(lb_test_data("models/stories260K.bin"), NULL, &m) != LB_OK) {
        fprintf(stderr, "%s\n", lb_last_error());
        exit(1);
    }
    return m;
}

static void quantize_linears(lb_model *m, const char *spec_text, int embeddings) {
    lb_qspec spec;
    CHECK_OK(lb_qspec_parse(spec_text, &spec));
    for (int i = 0; i < lb_model_n_tensors(m); i++) {
        lb_tensor *t = lb_model_tensor_at(m, i);
        int linear = !strncmp(t->name, "blk.", 4) && !strstr(t->name, "_norm.");
        if (!linear && !(embeddings && !strcmp(t->name, "token_embd.weight"))) continue;
        lb_tensor q;
        CHECK_OK(lb_quantize_to_tensor((const float *)t->data, t->rows, t->cols, &spec, NULL, t->name, &q));
        *t = q;
    }
}

static float *logits(const lb_model *m, const int *tok, int n) {
    lb_state *s;
    float *lg = lb_alloc((size_t)n * m->cfg.vocab_size * sizeof(float));
    CHECK_OK(lb_state_create(m, n, &s));
    CHECK_OK(lb_forward(m, s, tok, n, 0, lg));
    lb_state_free(s);
    return lg;
}

static void test_round_trips(void) {
    static const struct {
        const char *spec;
        int embeddings;
        int ggml_q; /* ggml type of a 64-wide linear, -1 for lowbit raw */
    } cases[] = {
        {"f16", 0, LB_GGML_F16},         {"bf16", 1, LB_GGML_BF16},         {"q8_0", 0, LB_GGML_Q8_0},
        {"q4_0", 1, LB_GGML_Q4_0},       {"q4_1", 0, LB_GGML_Q4_1},         {"int3:g64:asym:zint", 0, -1},
        {"int2:row:sym", 0, -1},         {"nf4:g64:dq", 1, -1},             {"nf4:g32", 0, -1},
        {"binary:row", 0, -1},           {"binary:tensor", 1, -1},          {"ternary:g32:2bit", 0, -1},
        {"ternary:row:1.6bit", 0, -1},   {"pow2:4:g64", 0, -1},             {"pow2:3:row", 1, -1},
        {"trellis2:L6:row:s6", 0, -1},   {"trellis3:L6:g32:down", 0, -1},   {"trellis3:L6:row:down:s6:v2", 0, -1},
        {"trellis1:L4:g32:v2", 0, -1},
        {"lut3:row", 0, -1},             {"lut2:g32", 1, -1},               {"lut4:tensor", 0, -1},
        {"onebit", 0, -1},
        {"ptq161", 0, -1},               {"billm", 0, -1},                  {"billm:row", 1, -1},
        {"littlebit:r8", 0, -1},         {"littlebit:r5", 1, -1},
        {"e8p2:row", 1, -1},             {"e8p3:tensor", 0, -1},            {"e8p4:row", 0, -1},
        {"vq2x4:row", 0, -1},            {"vq4x6:r2:tensor", 1, -1},        {"vq3x5:row", 0, -1},
    };
    int tok[64];
    size_t n;
    lb_model *ref = load_fp32();
    int *enc;
    CHECK_OK(lb_tokenize(ref->tokenizer, "Once upon a time, there was a big red ball.", 44, 1, 0, &enc, &n));
    memcpy(tok, enc, n * sizeof(int));
    lb_free(enc);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        lb_model *m = load_fp32();
        quantize_linears(m, cases[c].spec, cases[c].embeddings);
        snprintf(m->quant_note, sizeof m->quant_note, "test %s", cases[c].spec);
        char path[256];
        snprintf(path, sizeof path, "%s/m%zu.gguf", dir, c);
        CHECK_OK(lb_model_save_gguf(m, path));
        lb_model *back;
        CHECK_OK(lb_model_load(path, NULL, &back));
        CHECK(strcmp(back->source_format, "gguf") == 0);
        CHECK(strcmp(back->quant_note, m->quant_note) == 0);
        CHECK(back->tied_output == 1 && back->tokenizer != NULL);
        for (int i = 0; i < lb_model_n_tensors(m); i++) {
            const lb_tensor *a = lb_model_tensor_at(m, i), *b = lb_model_tensor_at(back, i);
            CHECK(lb_qspec_equal(&a->spec, &b->spec) && a->rows == b->rows && a->cols == b->cols);
            CHECK(a->nbytes == b->nbytes && memcmp(a->data, b->data, a->nbytes) == 0);
        }
        float *la = logits(m, tok, (int)n), *lb = logits(back, tok, (int)n);
        CHECK_MSG(memcmp(la, lb, n * 512 * sizeof(float)) == 0, "%s: logits differ after save/load", cases[c].spec);
        lb_free(la);
        lb_free(lb);

        /* the container says which ggml type each tensor went under */
        lb_mapped_file f;
        CHECK_OK(lb_map_file(path, &f));
        lb_gguf *g;
        CHECK_OK(lb_gguf_parse(f.data, f.size, &g));
        const lb_gguf_tensor *q = lb_gguf_find_tensor(g, "blk.0.attn_q.weight");
        const lb_gguf_tensor *down = lb_gguf_find_tensor(g, "blk.0.ffn_down.weight");
        CHECK(q && down);
        if (q && down) {
            CHECK_MSG(q->type == (cases[c].ggml_q < 0 ? LB_GGML_I8 : cases[c].ggml_q), "%s: attn_q stored as type %d",
                      cases[c].spec, q->type);
            /* ffn_down rows are 172 wide: never whole 32-blocks, so never a block ggml type */
            int float_fmt = cases[c].ggml_q == LB_GGML_F16 || cases[c].ggml_q == LB_GGML_BF16;
            CHECK(float_fmt ? down->type == cases[c].ggml_q : down->type == LB_GGML_I8);
        }
        CHECK(lb_gguf_find_key(g, "general.architecture") >= 0 && lb_gguf_find_key(g, "tokenizer.ggml.tokens") >= 0);
        lb_gguf_free(g);
        lb_unmap_file(&f);
        lb_model_free(m);
        lb_model_free(back);
        remove(path);
    }
    lb_model_free(ref);
}

static void test_tokenizer_carried(void) {
    lb_model *m = load_fp32();
    char path[256];
    snprintf(path, sizeof path, "%s/tok.gguf", dir);
    CHECK_OK(lb_model_save_gguf(m, path));
    lb_model *back;
    CHECK_OK(lb_model_load(path, NULL, &back));
    const char *text = "Lily's mom said, \"Hello!\" \xe4\xbd\xa0\xe5\xa5\xbd\n\tdone.";
    int *a, *b;
    size_t na, nb;
    CHECK_OK(lb_tokenize(m->tokenizer, text, strlen(text), 1, 0, &a, &na));
    CHECK_OK(lb_tokenize(back->tokenizer, text, strlen(text), 1, 0, &b, &nb));
    CHECK(na == nb && memcmp(a, b, na * sizeof(int)) == 0);
    /* The file is read back as llama.cpp reads it (SPM, pieces keeping
     * U+2581 for the space); llama2.c's encode and llama.cpp's agree on this
     * vocabulary: the whole sample text tokenizes the same both ways. */
    CHECK(!strcmp(lb_tokenizer_kind(back->tokenizer), "llama") && !strcmp(lb_tokenizer_kind(m->tokenizer), "llama2c"));
    lb_free(a);
    lb_free(b);
    size_t tn;
    char *all;
    CHECK_OK(lb_read_file(lb_test_data("text/tinystories-sample.txt"), &all, &tn));
    CHECK_OK(lb_tokenize(m->tokenizer, all, tn, 1, 0, &a, &na));
    CHECK_OK(lb_tokenize(back->tokenizer, all, tn, 1, 0, &b, &nb));
    CHECK(na > 40000 && na == nb && memcmp(a, b, na * sizeof(int)) == 0);
    lb_free(all);
    lb_free(a);
    lb_free(b);
    for (int i = 0; i < 512; i++) {
        size_t l1, l2, o = 0;
        const char *p1 = lb_tokenizer_piece(m->tokenizer, i, &l1), *p2 = lb_tokenizer_piece(back->tokenizer, i, &l2);
        char esc[256];
        for (size_t j = 0; j < l1 && o + 3 < sizeof esc; j++) {
            if (p1[j] == ' ') {
                memcpy(esc + o, "\xe2\x96\x81", 3);
                o += 3;
            } else {
                esc[o++] = p1[j];
            }
        }
        CHECK(o == l2 && memcmp(esc, p2, o) == 0);
        CHECK(lb_tokenizer_score(m->tokenizer, i) == lb_tokenizer_score(back->tokenizer, i));
    }
    lb_model_free(back);
    lb_model_free(m);
    remove(path);
}

/* Writes a GGUF like the model's but with one change, and checks loading fails. */
static void expect_bad(const char *what, const char *drop_key, const char *drop_tensor, const char *key, const char *value,
                       lb_status want, const char *needle) {
    lb_model *m = load_fp32();
    quantize_linears(m, "int3:g64:asym", 0);
    lb_gguf_writer *w = NULL;
    CHECK_OK(lb_gguf_writer_create(&w));
    lb_mapped_file f;
    char path[256], path2[256];
    snprintf(path, sizeof path, "%s/good.gguf", dir);
    snprintf(path2, sizeof path2, "%s/bad.gguf", dir);
    CHECK_OK(lb_model_save_gguf(m, path));
    CHECK_OK(lb_map_file(path, &f));
    lb_gguf *g;
    CHECK_OK(lb_gguf_parse(f.data, f.size, &g));
    /* copy every key and tensor except the dropped ones, overriding `key` */
    for (int64_t i = 0; i < lb_gguf_n_kv(g); i++) {
        size_t kl;
        const char *k = lb_gguf_key(g, i, &kl);
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)kl, k);
        if (drop_key && !strcmp(name, drop_key)) continue;
        if (key && !strcmp(name, key)) continue;
        gguf_copy_kv(g, w, i, name, name);
    }
    if (key) lb_gguf_set_str(w, key, value);
    for (int64_t i = 0; i < lb_gguf_n_tensors(g); i++) {
        const lb_gguf_tensor *t = lb_gguf_tensor_at(g, i);
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)t->name_len, t->name);
        if (drop_tensor && !strcmp(name, drop_tensor)) continue;
        lb_gguf_add_tensor(w, name, t->type, t->n_dims, t->ne, t->data, t->nbytes);
    }
    CHECK_OK(lb_gguf_write(w, path2));
    lb_model *bad = NULL;
    lb_status st = lb_model_load(path2, NULL, &bad);
    CHECK_MSG(st == want && strstr(lb_last_error(), needle), "%s: status %d, '%s'", what, (int)st, lb_last_error());
    lb_model_free(bad);
    lb_gguf_free(g);
    lb_unmap_file(&f);
    lb_gguf_writer_free(w);
    lb_model_free(m);
    remove(path);
    remove(path2);
}

/* A lut file whose codebook was damaged on disk (a NaN level, levels out of
 * order): loading refuses it, naming the tensor. */
static void test_bad_lut_levels(void) {
    lb_model *m = load_fp32();
    quantize_linears(m, "lut2:g32", 0);
    char path[256];
    snprintf(path, sizeof path, "%s/lut.gguf", dir);
    CHECK_OK(lb_model_save_gguf(m, path));
    char *buf;
    size_t size;
    CHECK_OK(lb_read_file(path, &buf, &size));
    lb_gguf *g;
    CHECK_OK(lb_gguf_parse((const uint8_t *)buf, size, &g));
    const lb_gguf_tensor *t = lb_gguf_find_tensor(g, "blk.1.ffn_up.weight");
    CHECK(t != NULL);
    if (t) {
        /* ffn_up is 172 x 64: two groups of 32 per row, each 8 bytes of levels + 8 of codes;
         * level 0 of row 3, group 1 */
        size_t row_bytes = 2 * 16, at = (size_t)((const char *)t->data - buf) + 3 * row_bytes + 16;
        const uint16_t bad[2] = {0x7e00, 0x7bff}; /* NaN; 65504, above level 1 */
        const char *needle[2] = {"row 3, group 1, level 0 is nan", "row 3, group 1, level 1"};
        for (int k = 0; k < 2; k++) {
            char save[2] = {buf[at], buf[at + 1]};
            buf[at] = (char)(bad[k] & 0xff);
            buf[at + 1] = (char)(bad[k] >> 8);
            lb_model *back = NULL;
            lb_status st = lb_model_from_gguf((const uint8_t *)buf, size, &back);
            CHECK_MSG(st == LB_ERR_FORMAT && strstr(lb_last_error(), needle[k]) &&
                          strstr(lb_last_error(), "blk.1.ffn_up.weight"),
                      "damaged level %d: status %d, '%s'", k, (int)st, lb_last_error());
            lb_model_free(back);
            buf[at] = save[0];
            buf[at + 1] = save[1];
        }
        lb_model *back = NULL;
        CHECK_OK(lb_model_from_gguf((const uint8_t *)buf, size, &back)); /* restored: loads */
        lb_model_free(back);
    }
    lb_gguf_free(g);
    lb_free(buf);
    lb_model_free(m);
    remove(path);
}

static void test_bad_files(void) {
    expect_bad("missing tensor", NULL, "blk.2.ffn_up.weight", NULL, NULL, LB_ERR_FORMAT, "'blk.2.ffn_up.weight' is missing");
    expect_bad("architecture", NULL, NULL, "general.architecture", "gpt2", LB_ERR_UNSUPPORTED, "'gpt2' is not supported");
    expect_bad("unknown format", NULL, NULL, "lowbit.format.blk.0.attn_k.weight", "int9:g64", LB_ERR_FORMAT,
               "lowbit.format.blk.0.attn_k.weight");
    expect_bad("other format", NULL, NULL, "lowbit.format.blk.0.attn_k.weight", "int4:g64:asym", LB_ERR_FORMAT,
               "blk.0.attn_k.weight");
    expect_bad("missing shape", "lowbit.shape.blk.1.attn_v.weight", NULL, NULL, NULL, LB_ERR_FORMAT,
               "lowbit.shape.blk.1.attn_v.weight");
    expect_bad("missing width", "llama.embedding_length", NULL, NULL, NULL, LB_ERR_FORMAT, "llama.embedding_length");

    /* truncations of a real file, through the file loader */
    lb_model *m = load_fp32();
    quantize_linears(m, "q4_0", 0);
    char path[256];
    snprintf(path, sizeof path, "%s/cut.gguf", dir);
    CHECK_OK(lb_model_save_gguf(m, path));
    char *buf;
    size_t size;
    CHECK_OK(lb_read_file(path, &buf, &size));
    for (size_t cut = 0; cut < size; cut += size / 97 + 1) {
        lb_model *bad = NULL;
        lb_status st = lb_model_from_gguf((const uint8_t *)buf, cut, &bad);
        CHECK_MSG(st == LB_ERR_FORMAT, "cut at %zu: status %d", cut, (int)st);
        lb_model_free(bad);
    }
    lb_free(buf);
    lb_model_free(m);
    remove(path);
    test_bad_lut_levels();
}

int main(void) {
    CHECK(mkdtemp(dir) != NULL);
    test_round_trips();
    test_tokenizer_carried();
    test_bad_files();
    rmdir(dir);
    return lb_test_finish("test_model_gguf");
}
