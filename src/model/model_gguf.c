/* Reading a model from one GGUF file (the conventions and the architectures
 * read: model_gguf.h). */
#include <math.h>
#include <string.h>

#include "io/gguf_internal.h"
#include "lowbit/gguf.h"
#include "model/model_gguf.h"
#include "model/model_internal.h"

/* ---- reading ------------------------------------------------------------- */

static lb_status get_u32_or(const lb_gguf *g, const char *key, uint32_t def, uint32_t *out) {
    if (lb_gguf_find_key(g, key) < 0) {
        *out = def;
        return LB_OK;
    }
    return lb_gguf_get_u32(g, key, out);
}

static lb_status get_f32_or(const lb_gguf *g, const char *key, float def, float *out) {
    if (lb_gguf_find_key(g, key) < 0) {
        *out = def;
        return LB_OK;
    }
    return lb_gguf_get_f32(g, key, out);
}

/* the architectures read: their key prefix and whether RoPE pairs are NEOX's */
static const struct {
    const char *name;
    int neox;
} archs[] = {{"llama", 0}, {"qwen2", 1}};

static lb_status read_config(const lb_gguf *g, lb_config *c, int *neox) {
    const char *arch;
    size_t arch_len;
    lb_status st = lb_gguf_get_str(g, "general.architecture", &arch, &arch_len);
    if (st != LB_OK) return st;
    int a = -1;
    for (int i = 0; i < (int)(sizeof archs / sizeof archs[0]); i++)
        if (arch_len == strlen(archs[i].name) && !memcmp(arch, archs[i].name, arch_len)) a = i;
    if (a < 0)
        return lb_fail(LB_ERR_UNSUPPORTED, "architecture '%.*s' is not supported (llama, qwen2)",
                       (int)(arch_len > 64 ? 64 : arch_len), arch);
    *neox = archs[a].neox;
    const char *p = archs[a].name;
    uint32_t v[7];
    char keys[7][96];
    const char *suffix[7] = {"embedding_length", "feed_forward_length", "block_count", "attention.head_count",
                             "attention.head_count_kv", "context_length", "rope.dimension_count"};
    for (int i = 0; i < 7; i++) snprintf(keys[i], sizeof keys[i], "%s.%s", p, suffix[i]);
    for (int i = 0; i < 7; i++) {
        if (i == 4 || i == 6) continue; /* optional, defaulted below */
        st = lb_gguf_get_u32(g, keys[i], &v[i]);
        if (st != LB_OK) return st;
        if (v[i] > (1u << 24)) return lb_fail(LB_ERR_FORMAT, "%s = %u is absurd", keys[i], v[i]);
    }
    if ((st = get_u32_or(g, keys[4], v[3], &v[4])) != LB_OK) return st;
    memset(c, 0, sizeof *c);
    c->dim = (int)v[0];
    c->hidden_dim = (int)v[1];
    c->n_layers = (int)v[2];
    c->n_heads = (int)v[3];
    c->n_kv_heads = v[4] > (1u << 24) ? 0 : (int)v[4];
    c->seq_len = (int)v[5];
    char key[96];
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", p);
    if ((st = get_f32_or(g, key, 1e-5f, &c->norm_eps)) != LB_OK) return st;
    snprintf(key, sizeof key, "%s.rope.freq_base", p);
    if ((st = get_f32_or(g, key, 10000.0f, &c->rope_theta)) != LB_OK) return st;
    const lb_gguf_tensor *emb = lb_gguf_find_tensor(g, "token_embd.weight");
    if (!emb) return lb_fail(LB_ERR_FORMAT, "tensor 'token_embd.weight' is missing");
    uint64_t vocab = 0;
    if (lb_gguf_find_key(g, "lowbit.shape.token_embd.weight") >= 0) {
        lb_gguf_type et;
        uint64_t n;
        const uint8_t *e;
        st = lb_gguf_get_arr(g, "lowbit.shape.token_embd.weight", &et, &n, &e);
        if (st != LB_OK) return st;
        if (et != LB_GGUF_UINT64 || n != 2) return lb_fail(LB_ERR_FORMAT, "lowbit.shape.token_embd.weight is not 2 x uint64");
        vocab = lb_rd64(e + 8);
    } else {
        vocab = emb->n_dims == 2 ? emb->ne[1] : 0;
    }
    if (vocab > (1u << 22)) return lb_fail(LB_ERR_FORMAT, "absurd vocabulary size %llu", (unsigned long long)vocab);
    snprintf(key, sizeof key, "%s.vocab_size", p);
    if (lb_gguf_find_key(g, key) >= 0) { /* optional; must agree when present */
        uint32_t declared;
        if ((st = lb_gguf_get_u32(g, key, &declared)) != LB_OK) return st;
        if (declared != vocab)
            return lb_fail(LB_ERR_FORMAT, "%s = %u, but token_embd.weight has %llu rows", key, declared,
                           (unsigned long long)vocab);
    }
    c->vocab_size = (int)vocab;
    st = lb_config_validate(c);
    if (st != LB_OK) return st;
    uint32_t rope_dims;
    if ((st = get_u32_or(g, keys[6], (uint32_t)(c->dim / c->n_heads), &rope_dims)) != LB_OK) return st;
    snprintf(key, sizeof key, "%s.rope.scaling.type", p);
    if (lb_gguf_find_key(g, key) >= 0) { /* "none" is plain RoPE; linear / yarn / longrope change positions */
        const char *s;
        size_t len;
        if ((st = lb_gguf_get_str(g, key, &s, &len)) != LB_OK) return st;
        if (!(len == 4 && !memcmp(s, "none", 4)))
            return lb_fail(LB_ERR_UNSUPPORTED, "RoPE scaling '%.*s' is not supported (plain RoPE, and Llama 3's "
                           "rope_freqs)", (int)(len > 32 ? 32 : len), s);
    }
    if ((int)rope_dims != c->dim / c->n_heads)
        return lb_fail(LB_ERR_UNSUPPORTED, "partial RoPE (%u of %d dimensions) is not supported", rope_dims,
                       c->dim / c->n_heads);
    return LB_OK;
}

/* Binds model tensor t to the GGUF tensor of the same name. */
static lb_status bind_tensor(const lb_gguf *g, lb_tensor *t) {
    const lb_gguf_tensor *gt = lb_gguf_find_tensor(g, t->name);
    if (!gt) return lb_fail(LB_ERR_FORMAT, "tensor '%s' is missing", t->name);
    char key[160];
    snprintf(key, sizeof key, "lowbit.format.%s", t->name);
    lb_status st;
    uint64_t cols, rows;
    if (lb_gguf_find_key(g, key) >= 0) {
        const char *s;
        size_t len;
        char spec[64];
        if ((st = lb_gguf_get_str(g, key, &s, &len)) != LB_OK) return st;
        if (len >= sizeof spec) return lb_fail(LB_ERR_FORMAT, "%s is too long", key);
        memcpy(spec, s, len);
        spec[len] = 0;
        if ((st = lb_qspec_parse(spec, &t->spec)) != LB_OK) return lb_fail_context(LB_ERR_FORMAT, "%s", key);
        if (gt->type != LB_GGML_I8 || gt->n_dims != 1)
            return lb_fail(LB_ERR_FORMAT, "tensor '%s' has a lowbit format but is not stored as 1-D I8", t->name);
        snprintf(key, sizeof key, "lowbit.shape.%s", t->name);
        lb_gguf_type et;
        uint64_t n;
        const uint8_t *e;
        if ((st = lb_gguf_get_arr(g, key, &et, &n, &e)) != LB_OK) return st;
        if (et != LB_GGUF_UINT64 || n != 2) return lb_fail(LB_ERR_FORMAT, "%s is not 2 x uint64", key);
        cols = lb_rd64(e);
        rows = lb_rd64(e + 8);
    } else {
        if ((st = lb_qspec_from_ggml_type(gt->type, &t->spec)) != LB_OK)
            return lb_fail_context(st, "tensor '%s'", t->name);
        if (gt->n_dims > 2) return lb_fail(LB_ERR_FORMAT, "tensor '%s' has %u dimensions", t->name, gt->n_dims);
        cols = gt->ne[0];
        rows = gt->n_dims == 2 ? gt->ne[1] : 1;
    }
    if (cols != (uint64_t)t->cols || rows != (uint64_t)t->rows)
        return lb_fail(LB_ERR_FORMAT, "tensor '%s' is %llu x %llu, the model needs %lld x %lld", t->name,
                       (unsigned long long)rows, (unsigned long long)cols, (long long)t->rows, (long long)t->cols);
    t->data = gt->data;
    t->nbytes = gt->nbytes;
    lb_layout l;
    if (lb_format_ggml_type(&t->spec, t->cols) >= 0 && lb_layout_compute(&t->spec, t->rows, t->cols, &l) == LB_OK &&
        l.tail_bytes == 4 && gt->nbytes == (size_t)t->rows * l.row_bytes) {
        /* nvfp4: the tensor scale from <name>.scale (1 when absent, as llama.cpp), after the blocks in one buffer */
        char name[128];
        float scale = 1.0f;
        lb_gguf_tensor_scale_name(name, sizeof name, t->name);
        const lb_gguf_tensor *s = lb_gguf_find_tensor(g, name);
        if (s && (s->type != LB_GGML_F32 || s->n_dims != 1 || s->ne[0] != 1))
            return lb_fail(LB_ERR_FORMAT, "tensor '%s' is not one f32", name);
        if (s) memcpy(&scale, s->data, 4);
        if (!(t->owned = lb_alloc(gt->nbytes + 4))) return LB_ERR_NOMEM;
        memcpy(t->owned, gt->data, gt->nbytes);
        memcpy(t->owned + gt->nbytes, &scale, 4);
        t->data = t->owned;
        t->nbytes = gt->nbytes + 4;
    }
    return LB_OK; /* the byte count is checked against the format by lb_model_finish */
}

static lb_status read_tokenizer(const lb_gguf *g, lb_model *m) {
    if (lb_gguf_find_key(g, "tokenizer.ggml.tokens") < 0) return LB_OK; /* none stored */
    lb_status st = lb_tokenizer_from_gguf(g, &m->tokenizer);
    if (st) return st;
    if (lb_tokenizer_vocab_size(m->tokenizer) != m->cfg.vocab_size)
        return lb_fail(LB_ERR_FORMAT, "tokenizer.ggml.tokens has %d entries, the model's vocabulary %d",
                       lb_tokenizer_vocab_size(m->tokenizer), m->cfg.vocab_size);
    return LB_OK;
}

static const char *type_name(int type) {
    switch (type) {
    case LB_GGML_F32: return "f32";
    case LB_GGML_F16: return "f16";
    case LB_GGML_I8: return "i8";
    case GGML_I16: return "i16";
    default: return "i32";
    }
}

/* Slot tensor <linear>.<slot> of n_dims dims [ne0, ne1] (0: any size, the
 * size found returned there) and one of the types `types` (ended by -1; the
 * one found in *type), its bytes copied into an aligned buffer; *out NULL
 * when the file has no such tensor. */
static lb_status read_slot(const lb_gguf *g, const lb_linear *L, const char *slot, const int *types, uint32_t n_dims,
                           uint64_t *ne0, uint64_t *ne1, void **out, int *type) {
    char name[128];
    lb_gguf_slot_name(name, sizeof name, L, slot);
    *out = NULL;
    const lb_gguf_tensor *t = lb_gguf_find_tensor(g, name);
    if (!t) return LB_OK;
    int ok = 0;
    for (int i = 0; types[i] >= 0; i++) ok |= (int)t->type == types[i];
    if (!ok || t->n_dims != n_dims || (*ne0 && t->ne[0] != *ne0) || (n_dims == 2 && *ne1 && t->ne[1] != *ne1))
        return lb_fail(LB_ERR_FORMAT, "tensor '%s' is not a %u-D %s tensor of the linear's shape", name, n_dims,
                       type_name(types[0]));
    uint64_t n = t->ne[0] * (n_dims == 2 ? t->ne[1] : 1);
    size_t eb = (size_t)lb_gguf_slot_type_bytes((int)t->type);
    if (n == 0 || t->ne[0] > (1u << 30) || (n_dims == 2 && t->ne[1] > (1u << 30)) || t->nbytes != n * eb)
        return lb_fail(LB_ERR_FORMAT, "tensor '%s' has %zu bytes for %llu values", name, t->nbytes,
                       (unsigned long long)n);
    if (!(*out = lb_alloc((size_t)n * eb))) return LB_ERR_NOMEM;
    memcpy(*out, t->data, (size_t)n * eb);
    *ne0 = t->ne[0];
    if (n_dims == 2) *ne1 = t->ne[1];
    *type = (int)t->type;
    return LB_OK;
}

static const int F32_ONLY[] = {LB_GGML_F32, -1}, F32_F16[] = {LB_GGML_F32, LB_GGML_F16, -1};
static const int I16_ONLY[] = {GGML_I16, -1}, I32_ONLY[] = {GGML_I32, -1}, I8_I16[] = {LB_GGML_I8, GGML_I16, -1};
static const int I16_I32[] = {GGML_I16, GGML_I32, -1}, I8_ONLY[] = {LB_GGML_I8, -1};

/* a rotation's n signs stored as bits (write_linear_slots), as floats in
 * *out (NULL when the file has none); bits past n must be clear */
static lb_status read_sign_bits(const lb_gguf *g, const lb_linear *L, const char *slot, uint64_t n, float **out) {
    uint64_t nb = (n + 7) / 8, none = 0;
    void *raw = NULL;
    int t;
    *out = NULL;
    lb_status st = read_slot(g, L, slot, I8_ONLY, 1, &nb, &none, &raw, &t);
    if (st != LB_OK || !raw) return st;
    const uint8_t *b = raw;
    if (n % 8 && b[nb - 1] >> (n % 8)) {
        lb_free(raw);
        return lb_fail(LB_ERR_FORMAT, "%s of '%s': bits set past its %llu signs", slot, L->w.name, (unsigned long long)n);
    }
    float *s = lb_alloc((size_t)n * sizeof(float));
    if (s)
        for (uint64_t j = 0; j < n; j++) s[j] = b[j / 8] >> (j % 8) & 1 ? -1.0f : 1.0f;
    lb_free(raw);
    *out = s;
    return s ? LB_OK : LB_ERR_NOMEM;
}

/* f16 bytes widened to f32 in place of *buf (f32: unchanged) */
static lb_status widen_f16(void **buf, int type, uint64_t n) {
    if (!*buf || type != LB_GGML_F16) return LB_OK;
    float *f = lb_alloc((size_t)n * sizeof(float));
    if (!f) return LB_ERR_NOMEM;
    for (uint64_t i = 0; i < n; i++) f[i] = lb_fp16_to_fp32(lb_rd16((const uint8_t *)*buf + 2 * i));
    lb_free(*buf);
    *buf = f;
    return LB_OK;
}

/* Any stored outlier index form (above) as an i32 CSR (row_ptr rows + 1,
 * col_idx nnz), every count and index checked against the shape; the
 * setter checks the rest (columns in range, values finite). */
static lb_status outlier_csr(const lb_linear *L, uint64_t nnz, const void *pos, uint64_t n_pos, const void *counts,
                             int counts_type, const void *rp, const void *cols_raw, int cols_type, uint64_t n_cols,
                             int32_t **row_ptr, int32_t **col_idx) {
    uint64_t rows = (uint64_t)L->w.rows, cols = (uint64_t)L->w.cols;
    int forms = (pos != NULL) + (counts != NULL) + (rp != NULL);
    if (forms != 1 || (pos && (cols_raw || n_pos != nnz)) || (!pos && (!cols_raw || n_cols != nnz)))
        return lb_fail(LB_ERR_FORMAT,
                       "outliers of '%s': expected outlier_values with exactly one of outlier_pos, outlier_counts + "
                       "outlier_cols, outlier_rows + outlier_cols, of matching lengths",
                       L->w.name);
    if (nnz > rows * cols || nnz > INT32_MAX)
        return lb_fail(LB_ERR_FORMAT, "outliers of '%s': %llu for a %llu x %llu weight", L->w.name,
                       (unsigned long long)nnz, (unsigned long long)rows, (unsigned long long)cols);
    *row_ptr = lb_alloc((size_t)(rows + 1) * sizeof(int32_t));
    *col_idx = lb_alloc((size_t)nnz * sizeof(int32_t));
    if (!*row_ptr || !*col_idx) return LB_ERR_NOMEM;
    int32_t *r_p = *row_ptr, *c_i = *col_idx;
    if (pos) {
        if (rows * cols > 65536)
            return lb_fail(LB_ERR_FORMAT, "outliers of '%s': 16-bit positions for a %llu x %llu weight", L->w.name,
                           (unsigned long long)rows, (unsigned long long)cols);
        memset(r_p, 0, (size_t)(rows + 1) * sizeof(int32_t));
        uint64_t prev_row = 0;
        for (uint64_t k = 0; k < nnz; k++) {
            uint64_t p = lb_rd16((const uint8_t *)pos + 2 * k), r = p / cols;
            if (p >= rows * cols || r < prev_row)
                return lb_fail(LB_ERR_FORMAT, "outliers of '%s': position %llu (outlier %llu) is %s", L->w.name,
                               (unsigned long long)p, (unsigned long long)k,
                               p >= rows * cols ? "outside the weight" : "in an earlier row than the one before");
            prev_row = r;
            r_p[r + 1]++;
            c_i[k] = (int32_t)(p % cols);
        }
        for (uint64_t r = 0; r < rows; r++) r_p[r + 1] += r_p[r];
        return LB_OK;
    }
    if (counts) {
        uint64_t sum = 0;
        r_p[0] = 0;
        for (uint64_t r = 0; r < rows; r++) {
            sum += counts_type == LB_GGML_I8 ? ((const uint8_t *)counts)[r] : lb_rd16((const uint8_t *)counts + 2 * r);
            if (sum > nnz) break;
            r_p[r + 1] = (int32_t)sum;
        }
        if (sum != nnz)
            return lb_fail(LB_ERR_FORMAT, "outliers of '%s': outlier_counts add up to %s%llu, not the %llu values",
                           L->w.name, sum > nnz ? "more than " : "", (unsigned long long)sum, (unsigned long long)nnz);
    } else {
        memcpy(r_p, rp, (size_t)(rows + 1) * sizeof(int32_t)); /* the setter checks it runs 0..nnz, non-decreasing */
    }
    for (uint64_t k = 0; k < nnz; k++)
        c_i[k] = cols_type == GGML_I16 ? (int32_t)lb_rd16((const uint8_t *)cols_raw + 2 * k)
                                       : ((const int32_t *)cols_raw)[k];
    return LB_OK;
}

/* lowbit.act.<linear> (+ lowbit.act_clip.<linear>), when present */
static lb_status read_linear_act(const lb_gguf *g, lb_linear *L) {
    char key[192], spec[64];
    lb_gguf_linear_key(key, sizeof key, "lowbit.act", L);
    if (lb_gguf_find_key(g, key) < 0) return LB_OK;
    const char *s;
    size_t len;
    lb_status st = lb_gguf_get_str(g, key, &s, &len);
    if (st != LB_OK) return st;
    if (len >= sizeof spec) return lb_fail(LB_ERR_FORMAT, "%s is too long", key);
    memcpy(spec, s, len);
    spec[len] = 0;
    lb_act_quant a;
    if (lb_act_spec_parse(spec, &a) != LB_OK) return lb_fail_context(LB_ERR_FORMAT, "%s", key);
    lb_gguf_linear_key(key, sizeof key, "lowbit.act_clip", L);
    int has_clip = lb_gguf_find_key(g, key) >= 0;
    if (has_clip != (a.kind == LB_AQ_TENSOR))
        return lb_fail(LB_ERR_FORMAT, "%s: %s", key,
                       has_clip ? "a clip for an activation quantizer that is not static"
                                : "missing: a static activation quantizer needs its clip");
    if (has_clip && (st = lb_gguf_get_f32(g, key, &a.clip)) != LB_OK) return st;
    if ((st = lb_linear_set_act(L, &a)) != LB_OK) return lb_fail_context(LB_ERR_FORMAT, "%s", key);
    return LB_OK;
}

/* Reads whichever slots the file has for L; the setters check them. */
static lb_status read_linear_slots(const lb_gguf *g, lb_linear *L) {
    uint64_t rows = (uint64_t)L->w.rows, cols = (uint64_t)L->w.cols;
    uint64_t n_bias = rows, n_scale = cols, n_signs = cols, n_rp = rows + 1, n_cnt = rows, n_pos = 0, n_ci = 0, nnz = 0,
             none = 0;
    uint64_t a0 = cols, rank = 0, b0 = 0, b1 = rows;
    void *bias = NULL, *scale = NULL, *signs = NULL, *rp = NULL, *cnt = NULL, *pos = NULL, *ci = NULL, *val = NULL,
         *a = NULL, *b = NULL;
    int32_t *row_ptr = NULL, *col_idx = NULL;
    float *in_bits = NULL, *out_bits = NULL;
    int t_bias = 0, t_val = 0, t_cnt = 0, t_ci = 0, t;
    lb_status st = LB_OK;
    TRY(read_slot(g, L, "bias", F32_F16, 1, &n_bias, &none, &bias, &t_bias));
    TRY(widen_f16(&bias, t_bias, rows));
    TRY(read_slot(g, L, "in_scale", F32_ONLY, 1, &n_scale, &none, &scale, &t));
    TRY(read_slot(g, L, "hadamard_signs", F32_ONLY, 1, &n_signs, &none, &signs, &t));
    TRY(read_sign_bits(g, L, "hadamard_bits", cols, &in_bits));
    TRY(read_sign_bits(g, L, "out_hadamard_bits", rows, &out_bits));
    if (signs && in_bits)
        TRY(lb_fail(LB_ERR_FORMAT, "'%s' has both hadamard_signs and hadamard_bits", L->w.name));
    TRY(read_slot(g, L, "outlier_rows", I32_ONLY, 1, &n_rp, &none, &rp, &t));
    TRY(read_slot(g, L, "outlier_counts", I8_I16, 1, &n_cnt, &none, &cnt, &t_cnt));
    TRY(read_slot(g, L, "outlier_pos", I16_ONLY, 1, &n_pos, &none, &pos, &t));
    TRY(read_slot(g, L, "outlier_cols", I16_I32, 1, &n_ci, &none, &ci, &t_ci));
    TRY(read_slot(g, L, "outlier_values", F32_F16, 1, &nnz, &none, &val, &t_val));
    TRY(widen_f16(&val, t_val, nnz));
    TRY(read_slot(g, L, "lora_a", F32_F16, 2, &a0, &rank, &a, &t));
    TRY(widen_f16(&a, t, a0 * rank));
    TRY(read_slot(g, L, "lora_b", F32_F16, 2, &b0, &b1, &b, &t));
    TRY(widen_f16(&b, t, b0 * b1));
    if (bias) TRY(lb_linear_set_bias(L, bias));
    if (scale) TRY(lb_linear_set_in_scale(L, scale));
    if (signs) TRY(lb_linear_set_hadamard(L, signs));
    if (in_bits) TRY(lb_linear_set_hadamard(L, in_bits));
    if (out_bits) TRY(lb_linear_set_out_hadamard(L, out_bits));
    if (rp || cnt || pos || ci || val) {
        if (!val)
            TRY(lb_fail(LB_ERR_FORMAT, "outliers of '%s': indices without outlier_values (the slot tensors do not match)", L->w.name));
        TRY(outlier_csr(L, nnz, pos, n_pos, cnt, t_cnt, rp, ci, t_ci, n_ci, &row_ptr, &col_idx));
        TRY(lb_linear_set_outliers(L, (int64_t)nnz, row_ptr, col_idx, val));
    }
    if ((a || b) && !(a && b && b0 == rank))
        TRY(lb_fail(LB_ERR_FORMAT, "adapter of '%s': lora_a and lora_b are not rank x %llu and %llu x rank", L->w.name,
                    (unsigned long long)cols, (unsigned long long)rows));
    if (a) {
        char key[192];
        float alpha;
        lb_gguf_alpha_key(key, sizeof key, L);
        TRY(lb_gguf_get_f32(g, key, &alpha));
        if (rank > 65536) TRY(lb_fail(LB_ERR_FORMAT, "adapter of '%s' has rank %llu", L->w.name, (unsigned long long)rank));
        TRY(lb_linear_set_adapter(L, (int)rank, a, b, alpha));
    }
    TRY(read_linear_act(g, L));
done:
    lb_free(bias);
    lb_free(scale);
    lb_free(signs);
    lb_free(in_bits);
    lb_free(out_bits);
    lb_free(rp);
    lb_free(cnt);
    lb_free(pos);
    lb_free(ci);
    lb_free(val);
    lb_free(row_ptr);
    lb_free(col_idx);
    lb_free(a);
    lb_free(b);
    return st;
}

/* qwen2's NEOX RoPE: the rows of attn_q / attn_k (and their biases) of each
 * head from rotate-half order into lowbit's interleaved order. A tensor tail
 * (nvfp4's scale) is not per row and stays. */
static lb_status neox_to_interleaved(lb_linear *L, int heads) {
    lb_tensor *t = &L->w;
    if (L->in_scale || L->outliers.nnz || L->adapter.rank || L->rot.kind || L->out_rot.kind)
        return lb_fail(LB_ERR_UNSUPPORTED, "'%s': slots other than a bias on a NEOX-RoPE model", t->name);
    lb_layout l;
    lb_status st = lb_layout_compute(&t->spec, t->rows, t->cols, &l);
    if (st != LB_OK) return st;
    if (t->rows % (2 * heads) || t->nbytes != l.total_bytes)
        return lb_fail(LB_ERR_FORMAT, "'%s': %lld rows, %zu bytes do not make %d heads", t->name, (long long)t->rows,
                       t->nbytes, heads);
    uint8_t *p = lb_alloc(t->nbytes ? t->nbytes : 1);
    if (!p) return LB_ERR_NOMEM;
    size_t body = (size_t)t->rows * l.row_bytes;
    lb_hf_permute_rows(t->data, p, t->rows, l.row_bytes, heads, 0);
    memcpy(p + body, t->data + body, t->nbytes - body);
    lb_free(t->owned);
    t->owned = p;
    t->data = p;
    if (L->bias) {
        float *b = lb_alloc((size_t)t->rows * sizeof(float));
        if (!b) return LB_ERR_NOMEM;
        lb_hf_permute_rows((const uint8_t *)L->bias, (uint8_t *)b, t->rows, sizeof(float), heads, 0);
        memcpy(L->bias, b, (size_t)t->rows * sizeof(float));
        lb_free(b);
    }
    return LB_OK;
}

/* Llama 3's RoPE frequency divisors (rope_freqs.weight: head_dim / 2 positive f32), if the file has them */
static lb_status read_rope_factors(const lb_gguf *g, lb_model *m) {
    const lb_gguf_tensor *t = lb_gguf_find_tensor(g, "rope_freqs.weight");
    if (!t) return LB_OK;
    int half = m->cfg.head_dim / 2;
    if (t->type != LB_GGML_F32 || t->n_dims != 1 || t->ne[0] != (uint64_t)half)
        return lb_fail(LB_ERR_FORMAT, "rope_freqs.weight is not %d f32 values", half);
    if (!(m->rope_factors = lb_alloc((size_t)half * sizeof(float)))) return LB_ERR_NOMEM;
    memcpy(m->rope_factors, t->data, (size_t)half * sizeof(float));
    for (int i = 0; i < half; i++)
        if (!(m->rope_factors[i] > 0.0f && isfinite(m->rope_factors[i])))
            return lb_fail(LB_ERR_FORMAT, "rope_freqs.weight[%d] = %g is not a positive number", i,
                           (double)m->rope_factors[i]);
    return LB_OK;
}

lb_status lb_model_from_gguf(const uint8_t *data, size_t size, lb_model **out) {
    *out = NULL;
    lb_gguf *g = NULL;
    lb_status st = lb_gguf_parse(data, size, &g);
    if (st != LB_OK) return st;
    int no, count;
    int64_t total;
    /* the other shards are found by the first one's path: lb_model_load */
    if ((st = lb_gguf_split_keys(g, &no, &count, &total)) == LB_OK && count > 1)
        st = lb_fail(LB_ERR_UNSUPPORTED, "this is shard %d of a split set of %d: load the set by its first "
                     "shard's path (lb_model_load)", no + 1, count);
    if (st == LB_OK) st = lb_model_from_gguf_parsed(g, out);
    lb_gguf_free(g);
    return st;
}

lb_status lb_model_from_gguf_parsed(const lb_gguf *g, lb_model **out) {
    *out = NULL;
    lb_model *m = NULL;
    lb_config c;
    lb_status st;
    int neox = 0;
    TRY(read_config(g, &c, &neox));
    TRY(lb_model_alloc(&c, lb_gguf_find_tensor(g, "output.weight") == NULL, &m));
    for (int i = 0; i < lb_model_n_tensors(m); i++) TRY(bind_tensor(g, lb_model_tensor_at(m, i)));
    for (int l = 0; l < c.n_layers; l++)
        for (int i = 0; i < LB_N_LINEARS; i++) TRY(read_linear_slots(g, &m->layers[l].linear[i]));
    for (int l = 0; neox && l < c.n_layers; l++) {
        TRY(neox_to_interleaved(&m->layers[l].linear[LB_WQ], c.n_heads));
        TRY(neox_to_interleaved(&m->layers[l].linear[LB_WK], c.n_kv_heads));
    }
    TRY(read_rope_factors(g, m));
    TRY(read_tokenizer(g, m));
    if (lb_gguf_find_key(g, "lowbit.quant.note") >= 0) {
        const char *s;
        size_t len;
        TRY(lb_gguf_get_str(g, "lowbit.quant.note", &s, &len));
        snprintf(m->quant_note, sizeof m->quant_note, "%.*s", (int)len, s);
    }
    snprintf(m->source_format, sizeof m->source_format, "gguf");
    TRY(lb_model_finish(m));
done:
    if (st != LB_OK) {
        lb_model_free(m);
        return st;
    }
    *out = m;
    return LB_OK;
}
