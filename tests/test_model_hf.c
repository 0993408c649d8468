/* Hugging Face folders: stories260K to safetensors and back to GGUF with
 * bit-identical logits (f32, and f16 / bf16 stored and reloaded as they
 * are), the q/k row permutation against its index formula, a sharded
 * folder named by model.safetensors.index.json, config.json and index
 * errors, tokenizer.model both ways, and vocabularies padded to
 * config.json's vocab_size. */
#include "test.h"

#include <stdarg.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "model/model_internal.h"
#include "model/tokenizer_internal.h"

static char dir[] = "/tmp/lb_mhf_XXXXXX";

static const int toks[6] = {1, 403, 407, 261, 2, 500};

static float *logits(const lb_model *m) {
    lb_state *s;
    float *lg = lb_alloc(6 * (size_t)m->cfg.vocab_size * sizeof(float));
    CHECK_OK(lb_state_create(m, 6, &s));
    CHECK_OK(lb_forward(m, s, toks, 6, 0, lg));
    lb_state_free(s);
    return lg;
}

static int same_logits(const lb_model *a, const lb_model *b) {
    float *x = logits(a), *y = logits(b);
    int same = a->cfg.vocab_size == b->cfg.vocab_size && !memcmp(x, y, 6 * (size_t)a->cfg.vocab_size * sizeof(float));
    lb_free(x);
    lb_free(y);
    return same;
}

static const char *path_in(const char *sub, const char *name) {
    static char buf[4][512];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, 512, "%s/%s%s%s", dir, sub, *name ? "/" : "", name);
    return p;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static void sh(const char *fmt, ...) {
    char cmd[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    CHECK_MSG(system(cmd) == 0, "%s", cmd);
}

static void test_permutation(void) {
    /* 3 heads of 6 rows, 2 columns: row r holds r */
    const int heads = 3, hd = 6, rows = heads * hd, cols = 2;
    float src[18 * 2], inter[18 * 2], back[18 * 2];
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) src[r * cols + c] = (float)r;
    lb_hf_permute_rows((const uint8_t *)src, (uint8_t *)inter, rows, cols * sizeof(float), heads, 0);
    /* llama.cpp's permute: reshape (heads, 2, hd/2) then swap the last two axes */
    for (int h = 0; h < heads; h++)
        for (int j = 0; j < hd / 2; j++)
            for (int i = 0; i < 2; i++)
                CHECK(inter[(h * hd + 2 * j + i) * cols + 1] == (float)(h * hd + i * (hd / 2) + j));
    lb_hf_permute_rows((const uint8_t *)inter, (uint8_t *)back, rows, cols * sizeof(float), heads, 1);
    CHECK(!memcmp(src, back, sizeof src));
}

/* The q and k rows stored in the folder against the model's own by the
 * index formula (not through lb_hf_permute_rows). */
static void check_stored_permutation(const lb_model *m, const char *file) {
    lb_mapped_file mf;
    CHECK_OK(lb_map_file(file, &mf));
    lb_st f;
    CHECK_OK(lb_st_parse(mf.data, mf.size, &f));
    const lb_st_tensor *q = lb_st_find(&f, "model.layers.2.self_attn.q_proj.weight"),
                       *k = lb_st_find(&f, "model.layers.2.self_attn.k_proj.weight");
    CHECK(q && k && q->dtype == LB_ST_F32);
    const lb_tensor *tq = &m->layers[2].linear[LB_WQ].w, *tk = &m->layers[2].linear[LB_WK].w;
    int hd = m->cfg.head_dim, half = hd / 2, bad = 0;
    for (int which = 0; q && k && which < 2; which++) {
        const lb_st_tensor *s = which ? k : q;
        const lb_tensor *t = which ? tk : tq;
        for (int64_t r = 0; r < t->rows; r++) {
            int64_t h = r / hd, i = (r % hd) / half, j = r % half;
            bad += memcmp(s->data + r * t->cols * 4, t->data + (h * hd + 2 * j + i) * t->cols * 4, (size_t)t->cols * 4) != 0;
        }
    }
    CHECK(bad == 0);
    lb_st_free(&f);
    lb_unmap_file(&mf);
}

static void test_round_trip(void) {
    lb_model *orig, *hf, *back, *hf2, *g;
    CHECK_OK(lb_model_load(lb_test_data("models/stories260K.bin"), NULL, &orig));
    CHECK_OK(lb_model_save_safetensors(orig, path_in("f32", ""), NULL));
    check_stored_permutation(orig, path_in("f32", "model.safetensors"));
    /* the folder, its config.json and its safetensors file all name it */
    CHECK_OK(lb_model_load(path_in("f32", ""), NULL, &hf));
    CHECK(!strcmp(hf->source_format, "safetensors") && hf->tied_output && hf->tokenizer);
    CHECK(same_logits(orig, hf));
    for (int i = 0; i < lb_model_n_tensors(orig); i++) {
        const lb_tensor *a = lb_model_tensor_at(orig, i), *b = lb_model_tensor_at(hf, i);
        CHECK_MSG(a->nbytes == b->nbytes && !memcmp(a->data, b->data, a->nbytes), "%s", a->name);
    }
    CHECK(hf->cfg.norm_eps == orig->cfg.norm_eps && hf->cfg.rope_theta == orig->cfg.rope_theta &&
          hf->cfg.seq_len == orig->cfg.seq_len && hf->cfg.n_kv_heads == orig->cfg.n_kv_heads);
    CHECK_OK(lb_model_load(path_in("f32", "config.json"), NULL, &hf2));
    lb_model_free(hf2);
    CHECK_OK(lb_model_load(path_in("f32", "model.safetensors"), NULL, &hf2));
    lb_model_free(hf2);
    /* GGUF -> safetensors -> GGUF */
    CHECK_OK(lb_model_save_gguf(orig, path_in("orig.gguf", "")));
    CHECK_OK(lb_model_load(path_in("orig.gguf", ""), NULL, &g));
    CHECK_OK(lb_model_save_safetensors(g, path_in("from_gguf", ""), NULL));
    lb_model_free(g);
    CHECK_OK(lb_model_load(path_in("from_gguf", ""), NULL, &hf2));
    CHECK_OK(lb_model_save_gguf(hf2, path_in("back.gguf", "")));
    CHECK_OK(lb_model_load(path_in("back.gguf", ""), NULL, &back));
    CHECK(same_logits(orig, back));
    lb_model_free(back);
    lb_model_free(hf2);
    sh("cmp -s %s/f32/model.safetensors %s/from_gguf/model.safetensors", dir, dir);

    /* the tokenizer: tokenizer.model reads as the SPM vocabulary GGUF stores */
    CHECK_OK(lb_model_load(path_in("orig.gguf", ""), NULL, &g));
    CHECK(!strcmp(lb_tokenizer_kind(hf->tokenizer), "llama"));
    const char *text = "Once upon a time, Lily saw a big dog. \"Hi!\" she said.\n";
    int *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    CHECK_OK(lb_tokenize(hf->tokenizer, text, strlen(text), 1, 0, &a, &na));
    CHECK_OK(lb_tokenize(g->tokenizer, text, strlen(text), 1, 0, &b, &nb));
    CHECK(na == nb && na > 10 && !memcmp(a, b, na * sizeof *a));
    lb_free(a);
    lb_free(b);
    for (int i = 0; i < 512; i++) CHECK(lb_tokenizer_score(hf->tokenizer, i) == lb_tokenizer_score(g->tokenizer, i));
    /* and writes back byte for byte */
    CHECK_OK(lb_tokenizer_save_spm(hf->tokenizer, path_in("again.model", "")));
    sh("cmp -s %s/f32/tokenizer.model %s/again.model", dir, dir);
    lb_model_free(g);

    /* f16 and bf16: dequantized on the way out, stored as they are on the way
     * back; the GGUF of the reloaded folder computes the same logits */
    const char *dts[2] = {"f16", "bf16"};
    for (int k = 0; k < 2; k++) {
        lb_qspec dt;
        CHECK_OK(lb_qspec_parse(dts[k], &dt));
        CHECK_OK(lb_model_save_safetensors(orig, path_in(dts[k], ""), &dt));
        CHECK_OK(lb_model_load(path_in(dts[k], ""), NULL, &hf2));
        CHECK(lb_qspec_equal(&hf2->layers[0].linear[LB_WK].w.spec, &dt));
        CHECK(hf2->out_norm.spec.family == LB_FAMILY_F32); /* norms widened */
        CHECK_OK(lb_model_save_gguf(hf2, path_in("half.gguf", "")));
        CHECK_OK(lb_model_load(path_in("half.gguf", ""), NULL, &back));
        CHECK_MSG(same_logits(hf2, back), "%s", dts[k]);
        lb_model_free(back);
        CHECK_OK(lb_model_save_safetensors(hf2, path_in("again", ""), NULL));
        sh("cmp -s %s/again/model.safetensors %s/model.safetensors", dir, path_in(dts[k], ""));
        lb_model_free(hf2);
    }
    /* a quantized model needs a float type to go to safetensors */
    lb_model *qm;
    CHECK_OK(lb_model_load(lb_test_data("models/stories260K.bin"), NULL, &qm));
    lb_tensor *t = &qm->layers[1].linear[LB_W2].w, q;
    lb_qspec spec;
    CHECK_OK(lb_qspec_parse("int4:g32", &spec));
    CHECK_OK(lb_quantize_to_tensor((const float *)t->data, t->rows, t->cols, &spec, NULL, t->name, &q));
    *t = q;
    CHECK_FAILS(lb_model_save_safetensors(qm, path_in("quant", ""), NULL), LB_ERR_UNSUPPORTED, "ask for f32, f16 or bf16");
    CHECK(access(path_in("quant", ""), F_OK) != 0); /* nothing left behind */
    CHECK_OK(lb_qspec_parse("f32", &spec));
    CHECK_OK(lb_model_save_safetensors(qm, path_in("quant", ""), &spec));
    CHECK_OK(lb_model_load(path_in("quant", ""), NULL, &hf2));
    float *dq = lb_alloc((size_t)(t->rows * t->cols) * sizeof *dq);
    CHECK_OK(lb_dequantize(t, dq));
    CHECK(!memcmp(dq, hf2->layers[1].linear[LB_W2].w.data, (size_t)(t->rows * t->cols) * sizeof *dq));
    /* and to GGUF, converted a row at a time while the file is written */
    CHECK_OK(lb_model_save_gguf_as(qm, path_in("deq.gguf", ""), &spec));
    CHECK_OK(lb_model_load(path_in("deq.gguf", ""), NULL, &back));
    CHECK(back->layers[1].linear[LB_W2].w.spec.family == LB_FAMILY_F32);
    CHECK(!memcmp(dq, back->layers[1].linear[LB_W2].w.data, (size_t)(t->rows * t->cols) * sizeof *dq));
    CHECK(same_logits(hf2, back));
    lb_model_free(back);
    CHECK_OK(lb_qspec_parse("bf16", &spec));
    CHECK_OK(lb_model_save_gguf_as(qm, path_in("deq.gguf", ""), &spec));
    CHECK_OK(lb_model_load(path_in("deq.gguf", ""), NULL, &back));
    CHECK(back->layers[1].linear[LB_W2].w.spec.family == LB_FAMILY_BF16 && back->out_norm.spec.family == LB_FAMILY_F32);
    CHECK(lb_bf16_to_fp32(lb_rd16(back->layers[1].linear[LB_W2].w.data + 6)) == lb_bf16_to_fp32(lb_fp32_to_bf16(dq[3])));
    lb_model_free(back);
    CHECK_FAILS(lb_model_save_gguf_as(qm, path_in("deq.gguf", ""), &qm->layers[1].linear[LB_W2].w.spec), LB_ERR_INVALID,
                "f32, f16 or bf16");
    lb_free(dq);
    lb_model_free(hf2);
    lb_model_free(qm);
    lb_model_free(hf);
    lb_model_free(orig);
}

/* A folder of two shards and an index, written from the f32 folder. */
static void test_sharded(void) {
    lb_model *one, *two;
    CHECK_OK(lb_model_load(path_in("f32", ""), NULL, &one));
    sh("mkdir -p %s/sharded%s", dir, "");
    sh("cp %s/f32/config.json %s/sharded/", dir, dir);
    sh("cp %s/f32/tokenizer.model %s/sharded/", dir, dir);
    lb_mapped_file mf;
    lb_st f;
    CHECK_OK(lb_map_file(path_in("f32", "model.safetensors"), &mf));
    CHECK_OK(lb_st_parse(mf.data, mf.size, &f));
    char index[16384] = "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {";
    for (int s = 0; s < 2; s++) {
        lb_st_writer *w;
        CHECK_OK(lb_st_writer_create(&w));
        size_t lo = s ? f.n_tensors / 2 : 0, hi = s ? f.n_tensors : f.n_tensors / 2;
        for (size_t i = lo; i < hi; i++) {
            const lb_st_tensor *t = &f.tensors[i];
            CHECK_OK(lb_st_writer_add(w, t->name, t->dtype, t->n_dims, t->shape));
            size_t o = strlen(index);
            snprintf(index + o, sizeof index - o, "%s\"%s\": \"model-0000%d-of-00002.safetensors\"", i ? ", " : "",
                     t->name, s + 1);
        }
        char name[64];
        snprintf(name, sizeof name, "model-0000%d-of-00002.safetensors", s + 1);
        CHECK_OK(lb_st_writer_begin(w, path_in("sharded", name)));
        for (size_t i = lo; i < hi; i++) CHECK_OK(lb_st_writer_data(w, f.tensors[i].data, f.tensors[i].nbytes));
        CHECK_OK(lb_st_writer_commit(w));
        lb_st_writer_free(w);
    }
    strcat(index, "}}");
    write_text(path_in("sharded", "model.safetensors.index.json"), index);
    CHECK_OK(lb_model_load(path_in("sharded", ""), NULL, &two));
    CHECK(two->n_shards == 2 && same_logits(one, two));
    lb_model_free(two);

    /* index errors: a shard outside the folder, a tensor in the wrong shard,
     * a shard that is missing */
    char *bad = malloc(sizeof index);
    snprintf(bad, sizeof index, "%s", index);
    char *p = strstr(bad, "model-00002-of-00002");
    memcpy(p, "../../etc/x.safeten", 19);
    write_text(path_in("sharded", "model.safetensors.index.json"), bad);
    CHECK_FAILS(lb_model_load(path_in("sharded", ""), NULL, &two), LB_ERR_FORMAT, "is not a file name in the folder");
    snprintf(bad, sizeof index, "%s", index);
    p = strstr(bad, "model-00001-of-00002");
    memcpy(p, "model-00002-of-00002", 20); /* the first tensor now points at the second shard */
    write_text(path_in("sharded", "model.safetensors.index.json"), bad);
    CHECK_FAILS(lb_model_load(path_in("sharded", ""), NULL, &two), LB_ERR_FORMAT, "which has no such tensor");
    sh("rm %s/sharded/model-00002-of-00002.safetensors%s", dir, "");
    write_text(path_in("sharded", "model.safetensors.index.json"), index);
    CHECK_FAILS(lb_model_load(path_in("sharded", ""), NULL, &two), LB_ERR_IO, "model-00002-of-00002.safetensors");
    write_text(path_in("sharded", "model.safetensors.index.json"), "{\"weight_map\": [}");
    CHECK_FAILS(lb_model_load(path_in("sharded", ""), NULL, &two), LB_ERR_FORMAT, "JSON: byte");
    free(bad);
    lb_st_free(&f);
    lb_unmap_file(&mf);
    lb_model_free(one);
}

/* A vocabulary shorter than config.json's vocab_size is padded with
 * llama.cpp's unused "[PAD..]" tokens: SentencePiece-style counted from 1,
 * byte-level BPE by id; written back, the folder reads the same again. */
static void test_padded_vocab(void) {
    lb_model *m, *again;
    lb_tokenizer *t;
    /* SPM: the f32 folder's tokenizer.model cut to 500 pieces */
    sh("mkdir -p %s/padspm && cp %s/f32/config.json %s/f32/model.safetensors %s/padspm/", dir, dir, dir, dir);
    CHECK_OK(lb_tokenizer_load_spm(path_in("f32", "tokenizer.model"), &t));
    t->vocab_size = 500; /* only the pieces are written */
    CHECK_OK(lb_tokenizer_save_spm(t, path_in("padspm", "tokenizer.model")));
    t->vocab_size = 512;
    CHECK_OK(lb_model_load(path_in("padspm", ""), NULL, &m));
    CHECK(lb_tokenizer_vocab_size(m->tokenizer) == 512);
    size_t n;
    const char *p = lb_tokenizer_piece(m->tokenizer, 500, &n);
    CHECK(n == 6 && !memcmp(p, "[PAD1]", 6) && lb_tokenizer_score(m->tokenizer, 500) == -1000.0f);
    p = lb_tokenizer_piece(m->tokenizer, 511, &n);
    CHECK(n == 7 && !memcmp(p, "[PAD12]", 7) && m->tokenizer->types[511] == LB_TOKEN_UNUSED);
    for (int i = 0; i < 500; i++) {
        const char *a = lb_tokenizer_piece(t, i, &n), *b;
        size_t nb;
        b = lb_tokenizer_piece(m->tokenizer, i, &nb);
        CHECK(n == nb && !memcmp(a, b, n) && t->types[i] == m->tokenizer->types[i]);
    }
    CHECK(!strcmp(lb_detokenize(m->tokenizer, 1, 505, &n), "") && n == 0); /* unused tokens print nothing */
    int *ids = NULL;
    size_t nid = 0;
    const char *text = "Once upon a time, a little [PAD3] dog.";
    CHECK_OK(lb_tokenize(m->tokenizer, text, strlen(text), 1, 0, &ids, &nid));
    for (size_t i = 0; i < nid; i++) CHECK(ids[i] < 500);
    lb_free(ids);
    CHECK_OK(lb_model_save_safetensors(m, path_in("padspm2", ""), NULL));
    CHECK_OK(lb_model_load(path_in("padspm2", ""), NULL, &again));
    CHECK(lb_tokenizer_vocab_size(again->tokenizer) == 512 && again->tokenizer->types[511] == LB_TOKEN_UNUSED);
    lb_model_free(again);
    lb_model_free(m);
    lb_tokenizer_free(t);

    /* byte-level BPE: 256 byte tokens, one merge and <|endoftext|> (257 ids) */
    sh("mkdir -p %s/padbpe && cp %s/f32/config.json %s/f32/model.safetensors %s/padbpe/", dir, dir, dir, dir);
    char *json = malloc(16384), *o = json;
    o += sprintf(o, "{\"added_tokens\": [{\"id\": 257, \"content\": \"<|endoftext|>\", \"special\": true}],"
                    " \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true},"
                    " \"model\": {\"type\": \"BPE\", \"vocab\": {");
    for (int b = 0; b < 256; b++) {
        uint32_t c = lb_gpt2_byte_to_cpt((uint8_t)b);
        o += sprintf(o, "\"\\u%04x\": %d, ", (unsigned)c, b);
    }
    o += sprintf(o, "\"ab\": 256, \"<|endoftext|>\": 257}, \"merges\": [\"a b\"]}}");
    write_text(path_in("padbpe", "tokenizer.json"), json);
    free(json);
    CHECK_OK(lb_model_load(path_in("padbpe", ""), NULL, &m));
    CHECK(lb_tokenizer_vocab_size(m->tokenizer) == 512);
    p = lb_tokenizer_piece(m->tokenizer, 258, &n);
    CHECK(n == 8 && !memcmp(p, "[PAD258]", 8) && m->tokenizer->types[258] == LB_TOKEN_UNUSED);
    p = lb_tokenizer_piece(m->tokenizer, 511, &n);
    CHECK(n == 8 && !memcmp(p, "[PAD511]", 8) && m->tokenizer->types[511] == LB_TOKEN_UNUSED);
    CHECK_OK(lb_tokenize_ex(m->tokenizer, "cab[PAD300]<|endoftext|>", 24, LB_TOKENIZE_SPECIAL, &ids, &nid));
    CHECK_MSG(nid == 11 && ids[0] == 'c' && ids[1] == 256 && ids[2] == '[' && ids[10] == 257, "%zu ids", nid);
    lb_free(ids);
    /* tokenizer.json is written without the padding, and reads back padded */
    CHECK_OK(lb_model_save_safetensors(m, path_in("padbpe2", ""), NULL));
    CHECK_OK(lb_tokenizer_load_hf_json(path_in("padbpe2", "tokenizer.json"), &t));
    CHECK(lb_tokenizer_vocab_size(t) == 258);
    lb_tokenizer_free(t);
    CHECK_OK(lb_model_load(path_in("padbpe2", ""), NULL, &again));
    CHECK(lb_tokenizer_vocab_size(again->tokenizer) == 512);
    for (int i = 0; i < 512; i++) {
        const char *a = lb_tokenizer_piece(m->tokenizer, i, &n), *b;
        size_t nb;
        b = lb_tokenizer_piece(again->tokenizer, i, &nb);
        CHECK(n == nb && !memcmp(a, b, n) && m->tokenizer->types[i] == again->tokenizer->types[i]);
    }
    lb_model_free(again);
    lb_model_free(m);
}

/* config.json: each problem refused with a message naming it. */
static void test_config_errors(void) {
    lb_model *m;
    sh("mkdir -p %s/cfg%s", dir, "");
    sh("cp %s/f32/model.safetensors %s/cfg/", dir, dir);
    const char *base = "\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, \"intermediate_size\": 172, "
                       "\"num_hidden_layers\": 5, \"num_attention_heads\": 8, \"num_key_value_heads\": 4, "
                       "\"vocab_size\": 512, \"max_position_embeddings\": 512, \"rms_norm_eps\": 1e-5";
    char text[2048];
    snprintf(text, sizeof text, "{%s, \"tie_word_embeddings\": true}", base);
    write_text(path_in("cfg", "config.json"), text);
    CHECK_OK(lb_model_load(path_in("cfg", ""), NULL, &m)); /* no tokenizer.model: none */
    CHECK(m && m->tokenizer == NULL && m->cfg.rope_theta == 10000.0f);
    lb_model_free(m);
    const struct {
        const char *extra, *needle;
        lb_status want;
    } bad[] = {
        {"\"tie_word_embeddings\": false", "lm_head.weight is missing", LB_ERR_FORMAT},
        {"\"tie_word_embeddings\": 1", "not true or false", LB_ERR_FORMAT},
        {"\"tie_word_embeddings\": true, \"rope_scaling\": {\"type\": \"linear\"}", "rope_scaling", LB_ERR_UNSUPPORTED},
        {"\"tie_word_embeddings\": true, \"hidden_act\": \"gelu\"", "hidden_act", LB_ERR_UNSUPPORTED},
        {"\"tie_word_embeddings\": true, \"attention_bias\": true", "no biases", LB_ERR_UNSUPPORTED},
        {"\"tie_word_embeddings\": true, \"head_dim\": 16", "head_dim 16", LB_ERR_UNSUPPORTED},
        {"\"tie_word_embeddings\": true, \"architectures\": [\"GPT2LMHeadModel\"]", "GPT2LMHeadModel", LB_ERR_UNSUPPORTED},
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        /* a repeated key: the first one wins, so the extra goes first */
        snprintf(text, sizeof text, "{%s, %s}", bad[k].extra, base);
        write_text(path_in("cfg", "config.json"), text);
        CHECK_FAILS(lb_model_load(path_in("cfg", ""), NULL, &m), bad[k].want, bad[k].needle);
    }
    const struct {
        const char *text, *needle;
    } broken[] = {
        {"{\"hidden_size\": 64,", "config.json"},
        {"[]", "not a JSON object"},
        {"{\"model_type\": \"llama\"}", "\"hidden_size\" is missing"},
        {"{\"model_type\": \"gpt2\"}", "neither \"architectures\" nor \"model_type\""},
        {"{\"model_type\": \"llama\", \"hidden_size\": 64.5}", "\"hidden_size\" is not an integer"},
        {"{\"model_type\": \"llama\", \"hidden_size\": -64}", "outside 1..65536"},
    };
    for (size_t k = 0; k < sizeof broken / sizeof *broken; k++) {
        write_text(path_in("cfg", "config.json"), broken[k].text);
        CHECK_FAILS(lb_model_load(path_in("cfg", ""), NULL, &m), k < 2 ? LB_ERR_FORMAT : k == 3 ? LB_ERR_UNSUPPORTED : LB_ERR_FORMAT,
                    broken[k].needle);
    }
    /* a config that disagrees with the tensors */
    snprintf(text, sizeof text, "{%s, \"tie_word_embeddings\": true}", base);
    char *w = strstr(text, "\"intermediate_size\": 172");
    memcpy(w, "\"intermediate_size\": 171", 24);
    write_text(path_in("cfg", "config.json"), text);
    CHECK_FAILS(lb_model_load(path_in("cfg", ""), NULL, &m), LB_ERR_FORMAT, "config.json implies [171, 64]");
    /* a directory that is no Hugging Face folder */
    sh("mkdir -p %s/empty%s", dir, "");
    CHECK_FAILS(lb_model_load(path_in("empty", ""), NULL, &m), LB_ERR_IO, "is a directory, not a regular file, and not a "
                "Hugging Face folder (it has no config.json)");
    /* no weights at all */
    sh("rm %s/cfg/model.safetensors%s", dir, "");
    CHECK_FAILS(lb_model_load(path_in("cfg", ""), NULL, &m), LB_ERR_IO, "neither model.safetensors");
}

/* tokenizer.model: hand-made protobufs, valid and not */
static void test_spm_errors(void) {
    lb_tokenizer *t;
    /* three pieces: <unk> (type 2), <s> (3), "a" (score -1); trainer_spec model_type BPE */
    static const uint8_t ok[] = {0x0a, 0x09, 0x0a, 0x05, '<', 'u', 'n', 'k', '>', 0x18, 0x02,
                                 0x0a, 0x07, 0x0a, 0x03, '<', 's', '>', 0x18, 0x03,
                                 0x0a, 0x08, 0x0a, 0x01, 'a', 0x15, 0x00, 0x00, 0x80, 0xbf,
                                 0x12, 0x05, 0x18, 0x02, 0xd0, 0x02, 0x02};
    /* trainer_spec: model_type (3) = 2, eos_id (42, key 42 << 3 = 0xd0 0x02) = 2 */
    CHECK_OK(lb_tokenizer_from_spm(ok, sizeof ok, &t));
    if (t) {
        CHECK(lb_tokenizer_vocab_size(t) == 3 && lb_tokenizer_score(t, 2) == -1.0f && lb_tokenizer_bos(t) == 1);
        lb_tokenizer_free(t);
    }
    for (size_t cut = 1; cut < sizeof ok; cut++) {
        lb_status st = lb_tokenizer_from_spm(ok, cut, &t);
        CHECK(st == LB_ERR_FORMAT || st == LB_ERR_UNSUPPORTED || st == LB_OK);
        lb_tokenizer_free(t);
    }
    uint8_t b[sizeof ok];
    memcpy(b, ok, sizeof ok);
    b[10] = 9; /* type 9 */
    CHECK_FAILS(lb_tokenizer_from_spm(b, sizeof b, &t), LB_ERR_FORMAT, "type 9");
    memcpy(b, ok, sizeof ok);
    b[33] = 0x01; /* model_type unigram */
    CHECK_FAILS(lb_tokenizer_from_spm(b, sizeof b, &t), LB_ERR_UNSUPPORTED, "unigram");
    memcpy(b, ok, sizeof ok);
    b[1] = 0x30; /* the first piece's length past the end */
    CHECK_FAILS(lb_tokenizer_from_spm(b, sizeof b, &t), LB_ERR_FORMAT, "runs past the end");
    memcpy(b, ok, sizeof ok);
    b[2] = 0x0d; /* piece text with wire type 5 */
    CHECK_FAILS(lb_tokenizer_from_spm(b, sizeof b, &t), LB_ERR_FORMAT, "wire type 5");
    memcpy(b, ok, sizeof ok);
    b[36] = 0x07; /* eos_id 7 of 3 pieces */
    CHECK_FAILS(lb_tokenizer_from_spm(b, sizeof b, &t), LB_ERR_FORMAT, "eos_id 7");
    CHECK_FAILS(lb_tokenizer_from_spm((const uint8_t *)"\x0b", 1, &t), LB_ERR_FORMAT, "wire type 3");
}

int main(void) {
    lb_test_data("models/stories260K.bin");
    CHECK(mkdtemp(dir) != NULL);
    test_permutation();
    test_round_trip();
    test_sharded();
    test_padded_vocab();
    test_config_errors();
    test_spm_errors();
    sh("rm -rf %s%s", dir, "");
    printf("test_model_hf: %d checks, %d failures\n", lb_test_checks, lb_test_failures);
    return lb_test_failures ? 1 : 0;
}
