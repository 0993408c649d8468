/* Hugging Face folders: config.json plus one model.safetensors or the
 * shards model.safetensors.index.json names, and tokenizer.model when
 * present (docs/INTEROP.md).
 *
 * Tensors are views into the mapped shards, except where lowbit's layout
 * differs from HF's: q_proj and k_proj rows are reordered from HF's
 * rotate-half RoPE (a head's first half of dimensions pairs with its second
 * half) to the interleaved one lowbit runs (dimensions 2j and 2j+1 pair), as
 * llama.cpp's converter does; norms stored as f16/bf16 are widened to f32
 * (the forward pass reads norms as floats); a tensor not aligned for its
 * type is copied. Those are owned copies; everything else stays mapped. */
#define _POSIX_C_SOURCE 200809L
#include <string.h>
#include <sys/stat.h>

#include "io/json.h"
#include "io/safetensors.h"
#include "model/model_internal.h"
#include "model/tokenizer_internal.h"

#define TRY(expr)                   \
    do {                            \
        st = (expr);                \
        if (st != LB_OK) goto done; \
    } while (0)

static const char *hf_linear[LB_N_LINEARS] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                              "self_attn.o_proj", "mlp.gate_proj",    "mlp.down_proj",
                                              "mlp.up_proj"};

int lb_hf_tensor_name(const lb_model *m, int i, char *buf, size_t n) {
    int L = m->cfg.n_layers;
    if (i == 0) {
        snprintf(buf, n, "model.embed_tokens.weight");
        return 0;
    }
    if (i > 9 * L) {
        snprintf(buf, n, i == 9 * L + 1 ? "model.norm.weight" : "lm_head.weight");
        return 0;
    }
    int l = (i - 1) / 9, slot = (i - 1) % 9; /* lb_model_tensor_at's order */
    if (slot == 0 || slot == 5) {
        snprintf(buf, n, "model.layers.%d.%s.weight", l, slot == 0 ? "input_layernorm" : "post_attention_layernorm");
        return 0;
    }
    int which = slot <= 4 ? slot - 1 : slot - 2;
    snprintf(buf, n, "model.layers.%d.%s.weight", l, hf_linear[which]);
    return which == LB_WQ ? m->cfg.n_heads : which == LB_WK ? m->cfg.n_kv_heads : 0;
}

void lb_hf_permute_rows(const uint8_t *src, uint8_t *dst, int64_t rows, size_t row_bytes, int n_heads, int to_hf) {
    int64_t hd = rows / n_heads, half = hd / 2;
    for (int64_t h = 0; h < n_heads; h++)
        for (int64_t i = 0; i < 2; i++)
            for (int64_t j = 0; j < half; j++) {
                int64_t inter = h * hd + 2 * j + i, rot = h * hd + i * half + j; /* the same row in both orders */
                int64_t from = to_hf ? inter : rot, to = to_hf ? rot : inter;
                memcpy(dst + (size_t)to * row_bytes, src + (size_t)from * row_bytes, row_bytes);
            }
}

/* ---- config.json -------------------------------------------------------------- */

/* An integer key (absent or null: def, or an error when def < 0). */
static lb_status cfg_int(const lb_json *j, const char *key, int64_t def, int64_t max, int *out) {
    int32_t v = lb_json_find(j, 0, key);
    if (v < 0 || j->nodes[v].type == LB_JSON_NULL) {
        if (def < 0) return lb_fail(LB_ERR_FORMAT, "config.json: \"%s\" is missing", key);
        *out = (int)def;
        return LB_OK;
    }
    int64_t x;
    if (lb_json_i64(j, v, &x) != LB_OK) return lb_fail(LB_ERR_FORMAT, "config.json: \"%s\" is not an integer", key);
    if (x < 1 || x > max) return lb_fail(LB_ERR_FORMAT, "config.json: \"%s\" = %lld is outside 1..%lld", key, (long long)x, (long long)max);
    *out = (int)x;
    return LB_OK;
}

static lb_status cfg_float(const lb_json *j, const char *key, double def, float *out) {
    int32_t v = lb_json_find(j, 0, key);
    double x = def;
    if (v >= 0 && j->nodes[v].type != LB_JSON_NULL && lb_json_double(j, v, &x) != LB_OK)
        return lb_fail(LB_ERR_FORMAT, "config.json: \"%s\" is not a number", key);
    *out = (float)x;
    return LB_OK;
}

/* 1 when key is true, 0 when false, absent or null; -1 for anything else */
static int cfg_bool(const lb_json *j, const char *key, int def) {
    int32_t v = lb_json_find(j, 0, key);
    if (v < 0 || j->nodes[v].type == LB_JSON_NULL) return def;
    return j->nodes[v].type == LB_JSON_TRUE ? 1 : j->nodes[v].type == LB_JSON_FALSE ? 0 : -1;
}

static const char *supported_arch[] = {"LlamaForCausalLM", "MistralForCausalLM"};

static lb_status check_arch(const lb_json *j) {
    int32_t a = lb_json_find(j, 0, "architectures");
    if (a >= 0) {
        if (j->nodes[a].type != LB_JSON_ARRAY || j->nodes[a].count == 0)
            return lb_fail(LB_ERR_FORMAT, "config.json: \"architectures\" is not a list of names");
        for (int32_t c = j->nodes[a].child; c >= 0; c = j->nodes[c].next)
            for (size_t k = 0; k < sizeof supported_arch / sizeof *supported_arch; k++)
                if (lb_json_string_eq(j, c, supported_arch[k])) return LB_OK;
        const lb_json_node *x = &j->nodes[j->nodes[a].child];
        return lb_fail(LB_ERR_UNSUPPORTED, "config.json: architecture %.*s is not supported (lowbit runs "
                       "LlamaForCausalLM and MistralForCausalLM)", (int)(x->len > 64 ? 64 : x->len), j->text + x->start);
    }
    int32_t t = lb_json_find(j, 0, "model_type");
    if (lb_json_string_eq(j, t, "llama") || lb_json_string_eq(j, t, "mistral")) return LB_OK;
    return lb_fail(LB_ERR_UNSUPPORTED, "config.json: neither \"architectures\" nor \"model_type\" names a Llama-family "
                   "model (LlamaForCausalLM, MistralForCausalLM)");
}

/* Reads the hyperparameters lowbit runs and refuses the ones it does not
 * run (so a model never loads into a different computation). */
static lb_status read_config(const lb_json *j, lb_config *c, int *tied) {
    lb_status st;
    if (j->nodes[0].type != LB_JSON_OBJECT) return lb_fail(LB_ERR_FORMAT, "config.json is not a JSON object");
    if ((st = check_arch(j)) != LB_OK) return st;
    memset(c, 0, sizeof *c);
    if ((st = cfg_int(j, "hidden_size", -1, 65536, &c->dim)) || (st = cfg_int(j, "intermediate_size", -1, 1 << 18, &c->hidden_dim)) ||
        (st = cfg_int(j, "num_hidden_layers", -1, 4096, &c->n_layers)) ||
        (st = cfg_int(j, "num_attention_heads", -1, 4096, &c->n_heads)) ||
        (st = cfg_int(j, "num_key_value_heads", c->n_heads, 4096, &c->n_kv_heads)) ||
        (st = cfg_int(j, "vocab_size", -1, 1 << 22, &c->vocab_size)) ||
        (st = cfg_int(j, "max_position_embeddings", 2048, 1 << 22, &c->seq_len)) ||
        (st = cfg_float(j, "rms_norm_eps", 1e-6, &c->norm_eps)) || (st = cfg_float(j, "rope_theta", 10000.0, &c->rope_theta)))
        return st;
    int head_dim = 0, window = 0;
    if ((st = cfg_int(j, "head_dim", c->dim / c->n_heads, 65536, &head_dim))) return st;
    if (head_dim * c->n_heads != c->dim)
        return lb_fail(LB_ERR_UNSUPPORTED, "config.json: head_dim %d x %d heads is not hidden_size %d (lowbit needs "
                       "head_dim = hidden_size / num_attention_heads)", head_dim, c->n_heads, c->dim);
    /* a sliding window wider than the context changes nothing; a narrower
     * one is honoured by running at most that many positions */
    if ((st = cfg_int(j, "sliding_window", c->seq_len, 1 << 22, &window))) return st;
    if (window < c->seq_len) c->seq_len = window;
    int32_t rs = lb_json_find(j, 0, "rope_scaling");
    if (rs >= 0 && j->nodes[rs].type != LB_JSON_NULL)
        return lb_fail(LB_ERR_UNSUPPORTED, "config.json: rope_scaling is set; lowbit runs plain RoPE only");
    int32_t act = lb_json_find(j, 0, "hidden_act");
    if (act >= 0 && !lb_json_string_eq(j, act, "silu"))
        return lb_fail(LB_ERR_UNSUPPORTED, "config.json: hidden_act is not \"silu\" (lowbit's MLP is SwiGLU)");
    const char *flags[2] = {"attention_bias", "mlp_bias"};
    for (int k = 0; k < 2; k++) {
        int b = cfg_bool(j, flags[k], 0);
        if (b) return lb_fail(b < 0 ? LB_ERR_FORMAT : LB_ERR_UNSUPPORTED, "config.json: \"%s\" is %s", flags[k],
                              b < 0 ? "not true or false" : "true; lowbit's Llama has no biases");
    }
    if ((*tied = cfg_bool(j, "tie_word_embeddings", 0)) < 0)
        return lb_fail(LB_ERR_FORMAT, "config.json: \"tie_word_embeddings\" is not true or false");
    return lb_config_validate(c);
}

lb_status lb_hf_config_parse(const char *text, size_t len, lb_config *c, int *tied) {
    lb_json j;
    lb_status st = lb_json_parse(text, len, &j);
    if (st == LB_OK) st = read_config(&j, c, tied);
    lb_json_free(&j);
    return st;
}

/* ---- shards -------------------------------------------------------------------- */

typedef struct {
    char dir[4096];
    lb_st *st;           /* per shard */
    char **shard_names;
    int n;
    lb_json index;       /* model.safetensors.index.json (text in index_text), when sharded */
    char *index_text;
    int32_t weight_map;  /* -1: one file */
    uint8_t **used;      /* per shard, per tensor: bound to the model */
} hf_files;

/* A shard file name from the index: a plain name in the folder. */
static int plain_name(const char *s) {
    return *s && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..");
}

static lb_status add_shard(hf_files *h, lb_model *m, const char *name) {
    for (int i = 0; i < h->n; i++)
        if (!strcmp(h->shard_names[i], name)) return LB_OK;
    if (!plain_name(name))
        return lb_fail(LB_ERR_FORMAT, "model.safetensors.index.json: shard \"%.*s\" is not a file name in the folder",
                       (int)(strlen(name) > 80 ? 80 : strlen(name)), name);
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", h->dir, name);
    int i = h->n;
    size_t cap = (size_t)i + 1;
    lb_st *st2 = lb_calloc(cap, sizeof *st2);
    char **names = lb_calloc(cap, sizeof *names);
    lb_mapped_file *files = lb_calloc(cap, sizeof *files);
    uint8_t **used = lb_calloc(cap, sizeof *used);
    if (!st2 || !names || !files || !used) {
        lb_free(st2), lb_free(names), lb_free(files), lb_free(used);
        return LB_ERR_NOMEM;
    }
    if (i) {
        memcpy(st2, h->st, (size_t)i * sizeof *st2);
        memcpy(names, h->shard_names, (size_t)i * sizeof *names);
        memcpy(files, m->shards, (size_t)i * sizeof *files);
        memcpy(used, h->used, (size_t)i * sizeof *used);
    }
    lb_free(h->st), lb_free(h->shard_names), lb_free(m->shards), lb_free(h->used);
    h->st = st2, h->shard_names = names, m->shards = files, h->used = used;
    size_t len = strlen(name) + 1;
    if (!(names[i] = lb_alloc(len))) return LB_ERR_NOMEM;
    memcpy(names[i], name, len);
    h->n = m->n_shards = i + 1;
    lb_status st = lb_map_file(path, &files[i]);
    if (st == LB_OK && (st = lb_st_parse(files[i].data, files[i].size, &h->st[i])) != LB_OK)
        lb_fail_context(st, "reading '%s'", path);
    if (st == LB_OK && !(used[i] = lb_calloc(h->st[i].n_tensors + 1, 1))) st = LB_ERR_NOMEM;
    return st;
}

static lb_status open_shards(hf_files *h, lb_model *m) {
    char path[8192];
    lb_status st;
    h->weight_map = -1;
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", h->dir);
    if (!lb_path_exists(path)) {
        snprintf(path, sizeof path, "%s/model.safetensors", h->dir);
        if (!lb_path_exists(path))
            return lb_fail(LB_ERR_IO, "'%s' has neither model.safetensors nor model.safetensors.index.json", h->dir);
        return add_shard(h, m, "model.safetensors");
    }
    size_t len;
    if ((st = lb_read_file(path, &h->index_text, &len)) != LB_OK) return st;
    if ((st = lb_json_parse(h->index_text, len, &h->index)) != LB_OK) return lb_fail_context(st, "reading '%s'", path);
    h->weight_map = lb_json_find(&h->index, 0, "weight_map");
    if (h->weight_map < 0 || h->index.nodes[h->weight_map].type != LB_JSON_OBJECT)
        return lb_fail(LB_ERR_FORMAT, "'%s' has no \"weight_map\" object", path);
    for (int32_t c = h->index.nodes[h->weight_map].child; c >= 0; c = h->index.nodes[c].next) {
        char *name;
        if ((st = lb_json_string(&h->index, c, &name, NULL)) != LB_OK)
            return lb_fail_context(LB_ERR_FORMAT, "'%s': weight_map", path);
        st = add_shard(h, m, name);
        lb_free(name);
        if (st != LB_OK) return st;
    }
    if (h->n == 0) return lb_fail(LB_ERR_FORMAT, "'%s': weight_map names no tensor", path);
    return LB_OK;
}

/* The safetensors tensor called name: in the shard the index names, or in
 * the one file; NULL when absent. *shard, *index: where it is. */
static const lb_st_tensor *find_tensor(hf_files *h, const char *name, int *shard, lb_status *st) {
    *st = LB_OK;
    int s = 0;
    if (h->weight_map >= 0) {
        int32_t e = lb_json_find(&h->index, h->weight_map, name);
        if (e < 0) return NULL;
        for (s = 0; s < h->n; s++)
            if (lb_json_string_eq(&h->index, e, h->shard_names[s])) break;
    }
    const lb_st_tensor *t = s < h->n ? lb_st_find(&h->st[s], name) : NULL;
    if (!t && h->weight_map >= 0) {
        *st = lb_fail(LB_ERR_FORMAT, "model.safetensors.index.json puts '%s' in '%s', which has no such tensor", name,
                      s < h->n ? h->shard_names[s] : "?");
        return NULL;
    }
    if (t) h->used[s][t - h->st[s].tensors] = 1;
    *shard = s;
    return t;
}

static lb_status bind(hf_files *h, lb_model *m, int i) {
    lb_tensor *t = lb_model_tensor_at(m, i);
    char name[128];
    int heads = lb_hf_tensor_name(m, i, name, sizeof name), shard;
    lb_status st;
    const lb_st_tensor *s = find_tensor(h, name, &shard, &st);
    if (st != LB_OK) return st;
    if (!s) return lb_fail(LB_ERR_FORMAT, "tensor '%s' is missing from the folder's safetensors", name);
    const char *spec = s->dtype == LB_ST_F32 ? "f32" : s->dtype == LB_ST_F16 ? "f16" : s->dtype == LB_ST_BF16 ? "bf16" : NULL;
    if (!spec)
        return lb_fail(LB_ERR_UNSUPPORTED, "tensor '%s' has dtype %s; lowbit reads F32, F16 and BF16 weights "
                       "(pre-quantized checkpoints are not read)", name, lb_st_dtype_name(s->dtype));
    int vec = t->rows == 1;
    if ((vec && (s->n_dims != 1 || s->shape[0] != (uint64_t)t->cols)) ||
        (!vec && (s->n_dims != 2 || s->shape[0] != (uint64_t)t->rows || s->shape[1] != (uint64_t)t->cols)))
        return lb_fail(LB_ERR_FORMAT, "tensor '%s' has shape [%llu%s%llu%s], config.json implies [%lld%s%lld]", name,
                       (unsigned long long)(s->n_dims ? s->shape[0] : 0), s->n_dims > 1 ? ", " : "",
                       (unsigned long long)(s->n_dims > 1 ? s->shape[1] : 0), s->n_dims > 2 ? ", ..." : "",
                       vec ? (long long)t->cols : (long long)t->rows, vec ? "" : ", ", vec ? 0LL : (long long)t->cols);
    if (vec && s->dtype != LB_ST_F32) { /* a norm: widened to f32 */
        float *f = lb_alloc((size_t)t->cols * sizeof *f);
        if (!f) return LB_ERR_NOMEM;
        for (int64_t k = 0; k < t->cols; k++) {
            uint16_t v = lb_rd16(s->data + 2 * k);
            f[k] = s->dtype == LB_ST_F16 ? lb_fp16_to_fp32(v) : lb_bf16_to_fp32(v);
        }
        t->owned = (uint8_t *)f;
        t->data = t->owned;
        t->nbytes = (size_t)t->cols * sizeof *f;
        return lb_qspec_parse("f32", &t->spec);
    }
    if ((st = lb_qspec_parse(spec, &t->spec)) != LB_OK) return st;
    size_t es = lb_st_dtype_size(s->dtype);
    if (heads || (uintptr_t)s->data % es) {
        if (!(t->owned = lb_alloc(s->nbytes ? s->nbytes : 1))) return LB_ERR_NOMEM;
        if (heads) lb_hf_permute_rows(s->data, t->owned, t->rows, (size_t)t->cols * es, heads, 0);
        else memcpy(t->owned, s->data, s->nbytes);
        t->data = t->owned;
    } else {
        t->data = s->data;
    }
    t->nbytes = s->nbytes;
    return LB_OK;
}

/* Every tensor of every shard must have been bound, or be one lowbit knows
 * to ignore (old checkpoints' rotary_emb.inv_freq, recomputed from theta). */
static lb_status check_unused(const hf_files *h) {
    for (int s = 0; s < h->n; s++)
        for (size_t k = 0; k < h->st[s].n_tensors; k++) {
            const char *name = h->st[s].tensors[k].name;
            size_t n = strlen(name);
            if (h->used[s][k] || (n > 20 && !strcmp(name + n - 20, "rotary_emb.inv_freq"))) continue;
            return lb_fail(LB_ERR_UNSUPPORTED, "'%s' holds tensor '%.*s', which a Llama model as lowbit runs it does "
                           "not have (a bias, an adapter, another architecture?)", h->shard_names[s],
                           (int)(n > 80 ? 80 : n), name);
        }
    return LB_OK;
}

/* bos_token_id / eos_token_id of config.json (a list: its first), -1 when absent */
static void config_token_ids(const char *text, size_t len, int *bos, int *eos) {
    lb_json j;
    *bos = *eos = -1;
    if (lb_json_parse(text, len, &j) != LB_OK) return;
    const char *keys[2] = {"bos_token_id", "eos_token_id"};
    int *dst[2] = {bos, eos};
    for (int k = 0; k < 2; k++) {
        int32_t v = lb_json_find(&j, 0, keys[k]);
        if (v >= 0 && j.nodes[v].type == LB_JSON_ARRAY) v = j.nodes[v].child;
        int64_t id;
        if (v >= 0 && lb_json_i64(&j, v, &id) == LB_OK && id >= 0 && id < (1 << 24)) *dst[k] = (int)id;
    }
    lb_json_free(&j);
}

/* tokenizer.model, else tokenizer.json (its BOS / EOS guessed by name, so
 * config.json's ids win), else none: the model still runs on token ids */
static lb_status load_tokenizer(const char *dir, const char *tokenizer_path, int bos, int eos, lb_model *m) {
    char path[8192];
    lb_status st = LB_OK;
    lb_tokenizer *t = NULL;
    int json = 0;
    if (tokenizer_path) {
        snprintf(path, sizeof path, "%s", tokenizer_path);
        size_t n = strlen(path);
        json = n >= 5 && !strcmp(path + n - 5, ".json");
        st = json ? lb_tokenizer_load_hf_json(path, &t)
             : n >= 6 && !strcmp(path + n - 6, ".model") ? lb_tokenizer_load_spm(path, &t)
                                                        : lb_tokenizer_load(path, m->cfg.vocab_size, &t);
    } else {
        snprintf(path, sizeof path, "%s/tokenizer.model", dir);
        if (!lb_path_exists(path)) {
            snprintf(path, sizeof path, "%s/tokenizer.json", dir);
            if (!lb_path_exists(path)) return LB_OK;
            json = 1;
        }
        st = json ? lb_tokenizer_load_hf_json(path, &t) : lb_tokenizer_load_spm(path, &t);
    }
    if (st != LB_OK) return st;
    /* a vocabulary shorter than the embedding is padded, as llama.cpp's
     * converter pads it; a longer one is an error */
    if (lb_tokenizer_vocab_size(t) < m->cfg.vocab_size && (st = lb_tokenizer_pad(t, m->cfg.vocab_size)) != LB_OK) {
        lb_tokenizer_free(t);
        return st;
    }
    if (lb_tokenizer_vocab_size(t) != m->cfg.vocab_size) {
        int v = lb_tokenizer_vocab_size(t);
        lb_tokenizer_free(t);
        return lb_fail(LB_ERR_FORMAT, "'%s' has %d tokens, config.json's vocab_size is %d", path, v, m->cfg.vocab_size);
    }
    if (json && bos >= 0 && bos < t->vocab_size) t->bos_id = bos;
    if (json && eos >= 0 && eos < t->vocab_size) t->eos_id = eos;
    m->tokenizer = t;
    return LB_OK;
}

lb_status lb_model_load_hf(const char *path, const char *tokenizer_path, lb_model **out) {
    *out = NULL;
    hf_files h;
    memset(&h, 0, sizeof h);
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        snprintf(h.dir, sizeof h.dir, "%s", path);
    } else { /* config.json or a .safetensors file: its folder */
        const char *slash = strrchr(path, '/');
        snprintf(h.dir, sizeof h.dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
        if (slash == path) snprintf(h.dir, sizeof h.dir, "/");
    }
    char cfg_path[8192], *text = NULL;
    size_t len;
    lb_config c;
    int tied = 0;
    lb_model *m = NULL;
    lb_status st;
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", h.dir);
    TRY(lb_read_file(cfg_path, &text, &len));
    if ((st = lb_hf_config_parse(text, len, &c, &tied)) != LB_OK) {
        lb_fail_context(st, "reading '%s'", cfg_path);
        goto done;
    }
    TRY(lb_model_alloc(&c, 1, &m));
    TRY(open_shards(&h, m));
    {
        /* looked up even when tied: a stored copy of the embedding is then
         * accounted for (check_unused), not read */
        lb_status fs;
        int shard;
        const lb_st_tensor *head = find_tensor(&h, "lm_head.weight", &shard, &fs);
        TRY(fs);
        if (!tied && !head) TRY(lb_fail(LB_ERR_FORMAT, "lm_head.weight is missing and tie_word_embeddings is not true"));
        m->tied_output = tied;
    }
    for (int i = 0; i < lb_model_n_tensors(m); i++) TRY(bind(&h, m, i));
    TRY(check_unused(&h));
    {
        int bos, eos;
        config_token_ids(text, len, &bos, &eos);
        TRY(load_tokenizer(h.dir, tokenizer_path, bos, eos, m));
    }
    snprintf(m->source_format, sizeof m->source_format, "safetensors");
    TRY(lb_model_finish(m));
done:
    for (int s = 0; s < h.n; s++) {
        lb_st_free(&h.st[s]);
        lb_free(h.shard_names[s]);
        lb_free(h.used[s]);
    }
    lb_free(h.st);
    lb_free(h.shard_names);
    lb_free(h.used);
    lb_json_free(&h.index);
    lb_free(h.index_text);
    lb_free(text);
    if (st != LB_OK) {
        lb_model_free(m);
        return lb_fail_context(st, "loading the Hugging Face folder '%s'", h.dir);
    }
    *out = m;
    return LB_OK;
}
