/* Writing a model as a Hugging Face folder (lb_model_save_safetensors):
 * model.safetensors with HF's tensor names, q_proj / k_proj rows put back in
 * the rotate-half order (the inverse of model_hf.c's permutation), then
 * tokenizer.model (SentencePiece-style vocabularies) or tokenizer.json
 * (byte-level BPE ones), then config.json last: the file that makes the folder
 * loadable is the last to appear.
 *
 * Memory: the header is built from the shapes alone, then each tensor is
 * written one row at a time (copied as stored, or dequantized and rounded
 * to the target float type), so nothing bigger than a row is allocated. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mapped.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "model/model_internal.h"

#define TRY(expr)                   \
    do {                            \
        st = (expr);                \
        if (st != LB_OK) goto done; \
    } while (0)

static lb_st_dtype dtype_of(const lb_qspec *s) {
    return s->family == LB_FAMILY_F16 ? LB_ST_F16 : s->family == LB_FAMILY_BF16 ? LB_ST_BF16 : LB_ST_F32;
}

static const char *torch_name(lb_st_dtype d) {
    return d == LB_ST_F16 ? "float16" : d == LB_ST_BF16 ? "bfloat16" : "float32";
}

/* What the folder cannot hold is refused before anything is written. */
static lb_status check_writable(lb_model *m, const lb_qspec *dtype) {
    if (dtype && !lb_qspec_is_float(dtype))
        return lb_fail(LB_ERR_UNSUPPORTED, "safetensors: the target type must be f32, f16 or bf16");
    for (int i = 0; i < lb_model_n_tensors(m); i++) {
        const lb_tensor *t = lb_model_tensor_at(m, i);
        if (!dtype && !lb_qspec_is_float(&t->spec)) {
            char spec[64];
            lb_qspec_format(&t->spec, spec, sizeof spec);
            return lb_fail(LB_ERR_UNSUPPORTED, "tensor '%s' is stored as %s, which safetensors cannot hold as it is: "
                           "ask for f32, f16 or bf16 to dequantize it", t->name, spec);
        }
    }
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int i = 0; i < LB_N_LINEARS; i++)
            if (lb_linear_has_slots(&m->layers[l].linear[i]))
                return lb_fail(LB_ERR_UNSUPPORTED, "linear '%s' has slots (bias, scales, rotations, outliers, adapters "
                               "or an activation quantizer) that a Hugging Face Llama folder cannot hold; keep it as GGUF",
                               m->layers[l].linear[i].w.name);
    if (m->rope_factors)
        return lb_fail(LB_ERR_UNSUPPORTED, "the model's RoPE frequency divisors (rope_freqs) have no config.json form "
                       "lowbit writes (rope_scaling's parameters are not kept); keep it as GGUF");
    const char *pre = m->tokenizer ? lb_tokenizer_pre(m->tokenizer) : "";
    if (m->tokenizer && !strcmp(lb_tokenizer_kind(m->tokenizer), "gpt2") && strcmp(pre, "gpt-2") &&
        strcmp(pre, "llama3") && strcmp(pre, "qwen2"))
        return lb_fail(LB_ERR_UNSUPPORTED, "the model's byte-level BPE vocabulary (pre-tokenizer \"%s\") cannot be "
                       "written as tokenizer.json yet (gpt-2, llama3 and qwen2 can)", pre);
    return LB_OK;
}

/* The dtype tensor t is written as. Asked for one: that. Else its own, but
 * a norm (always f32 in memory: loading widened it) goes back to the
 * linears' half type when each of its values is exact in it, so an f16 or
 * bf16 folder is written back byte for byte. */
static lb_st_dtype out_dtype(const lb_model *m, const lb_tensor *t, const lb_qspec *dtype) {
    if (dtype) return dtype_of(dtype);
    lb_st_dtype base = dtype_of(&m->layers[0].linear[LB_WQ].w.spec);
    if (t->rows != 1 || base == LB_ST_F32 || t->spec.family != LB_FAMILY_F32) return dtype_of(&t->spec);
    const float *v = (const float *)t->data;
    for (int64_t c = 0; c < t->cols; c++) {
        float back = base == LB_ST_F16 ? lb_fp16_to_fp32(lb_fp32_to_fp16(v[c])) : lb_bf16_to_fp32(lb_fp32_to_bf16(v[c]));
        if (memcmp(&back, &v[c], sizeof back)) return LB_ST_F32;
    }
    return base;
}

static lb_status write_weights(lb_model *m, const lb_qspec *dtype, const char *path) {
    lb_st_writer *w;
    lb_status st = lb_st_writer_create(&w);
    if (st != LB_OK) return st;
    float *row = NULL;
    uint8_t *conv = NULL;
    int64_t max_cols = 0;
    TRY(lb_st_writer_meta(w, "format", "pt")); /* transformers refuses files without it */
    for (int i = 0; i < lb_model_n_tensors(m); i++) {
        const lb_tensor *t = lb_model_tensor_at(m, i);
        char name[128];
        lb_hf_tensor_name(m, i, name, sizeof name);
        uint64_t shape[2] = {(uint64_t)t->rows, (uint64_t)t->cols};
        if (t->rows == 1) shape[0] = (uint64_t)t->cols;
        TRY(lb_st_writer_add(w, name, out_dtype(m, t, dtype), t->rows == 1 ? 1 : 2, shape));
        if (t->cols > max_cols) max_cols = t->cols;
    }
    row = lb_alloc((size_t)max_cols * sizeof *row);
    conv = lb_alloc((size_t)max_cols * 4);
    if (!row || !conv) TRY(LB_ERR_NOMEM);
    TRY(lb_st_writer_begin(w, path));
    for (int i = 0; i < lb_model_n_tensors(m); i++) {
        const lb_tensor *t = lb_model_tensor_at(m, i);
        char name[128];
        int heads = lb_hf_tensor_name(m, i, name, sizeof name);
        lb_st_dtype out = out_dtype(m, t, dtype);
        int same = lb_qspec_is_float(&t->spec) && dtype_of(&t->spec) == out;
        size_t es = lb_st_dtype_size(out), row_bytes = (size_t)t->cols * es;
        int64_t hd = heads ? t->rows / heads : 0, half = hd / 2;
        for (int64_t r = 0; r < t->rows; r++) {
            /* HF row r = (head h, half i, index j) is interleaved row 2j + i of head h */
            int64_t src = r;
            if (heads) {
                int64_t h = r / hd, k = r % hd;
                src = h * hd + 2 * (k % half) + k / half;
            }
            if (same) {
                TRY(lb_st_writer_data(w, t->data + (size_t)src * row_bytes, row_bytes));
                continue;
            }
            lb_dequantize_row(t, src, row);
            for (int64_t c = 0; c < t->cols; c++) {
                if (out == LB_ST_F32) memcpy(conv + 4 * c, &row[c], 4);
                else lb_wr16(conv + 2 * c, out == LB_ST_F16 ? lb_fp32_to_fp16(row[c]) : lb_fp32_to_bf16(row[c]));
            }
            TRY(lb_st_writer_data(w, conv, row_bytes));
        }
        lb_map_release(t->data, t->nbytes); /* a mapped input's pages are read: RSS holds one tensor */
    }
    TRY(lb_st_writer_commit(w));
done:
    lb_st_writer_free(w);
    lb_free(row);
    lb_free(conv);
    return st;
}

static lb_status write_config(const lb_model *m, lb_st_dtype dt, const char *path) {
    const lb_config *c = &m->cfg;
    lb_json_buf b = {0};
    const struct {
        const char *k;
        long long v;
    } ints[] = {{"hidden_size", c->dim},          {"intermediate_size", c->hidden_dim},
                {"num_hidden_layers", c->n_layers}, {"num_attention_heads", c->n_heads},
                {"num_key_value_heads", c->n_kv_heads}, {"head_dim", c->head_dim},
                {"vocab_size", c->vocab_size},    {"max_position_embeddings", c->seq_len}};
    lb_json_raws(&b, "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n");
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
        lb_json_raws(&b, "  ");
        lb_json_strs(&b, ints[i].k);
        lb_json_raws(&b, ": ");
        lb_json_int(&b, ints[i].v);
        lb_json_raws(&b, ",\n");
    }
    lb_json_raws(&b, "  \"rms_norm_eps\": ");
    lb_json_float(&b, c->norm_eps);
    lb_json_raws(&b, ",\n  \"rope_theta\": ");
    lb_json_float(&b, c->rope_theta);
    lb_json_raws(&b, ",\n  \"hidden_act\": \"silu\",\n  \"attention_bias\": false,\n  \"mlp_bias\": false,\n");
    lb_json_raws(&b, "  \"rope_scaling\": null,\n  \"tie_word_embeddings\": ");
    lb_json_raws(&b, m->tied_output ? "true" : "false");
    if (m->tokenizer && lb_tokenizer_bos(m->tokenizer) >= 0) {
        lb_json_raws(&b, ",\n  \"bos_token_id\": ");
        lb_json_int(&b, lb_tokenizer_bos(m->tokenizer));
    }
    if (m->tokenizer && lb_tokenizer_eos(m->tokenizer) >= 0) {
        lb_json_raws(&b, ",\n  \"eos_token_id\": ");
        lb_json_int(&b, lb_tokenizer_eos(m->tokenizer));
    }
    lb_json_raws(&b, ",\n  \"torch_dtype\": ");
    lb_json_strs(&b, torch_name(dt));
    lb_json_raws(&b, ",\n  \"transformers_version\": \"4.40.0\"\n}\n");
    if (b.failed) {
        lb_json_buf_free(&b);
        return LB_ERR_NOMEM;
    }
    lb_atomic_file f;
    lb_status st = lb_atomic_open(&f, path);
    if (st == LB_OK) {
        lb_atomic_write(&f, b.data, b.len);
        st = lb_atomic_commit(&f);
    }
    lb_json_buf_free(&b);
    return st;
}

static int exists(const char *path) {
    struct stat s;
    return lstat(path, &s) == 0;
}

lb_status lb_model_save_safetensors(const lb_model *mc, const char *dir, const lb_qspec *dtype) {
    lb_model *m = (lb_model *)mc; /* tensor iteration only reads */
    lb_status st = check_writable(m, dtype);
    if (st != LB_OK) return st;
    char paths[4][8192];
    /* written in this order; config.json, which makes the folder loadable, last */
    const char *names[4] = {"model.safetensors", "tokenizer.model", "tokenizer.json", "config.json"};
    int existed[4] = {0}, written = 0, made_dir = 0;
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        if (mkdir(dir, 0755) != 0) return lb_fail(LB_ERR_IO, "cannot create the folder '%s': %s", dir, strerror(errno));
        made_dir = 1;
    } else if (!S_ISDIR(sb.st_mode)) {
        return lb_fail(LB_ERR_IO, "'%s' exists and is not a folder", dir);
    }
    char index[8192];
    snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir);
    if (exists(index)) {
        st = lb_fail(LB_ERR_IO, "'%s' already holds model.safetensors.index.json (a sharded model), which would take "
                     "precedence over the model.safetensors written here: choose another folder", dir);
        goto done;
    }
    for (int k = 0; k < 4; k++) {
        snprintf(paths[k], sizeof paths[k], "%s/%s", dir, names[k]);
        existed[k] = exists(paths[k]);
        TRY(lb_output_check(paths[k], NULL, 0));
    }
    /* the other vocabulary file (or either, with no tokenizer) would be read in place of ours */
    int bpe = m->tokenizer && !strcmp(lb_tokenizer_kind(m->tokenizer), "gpt2");
    for (int k = 1; k <= 2; k++)
        if (existed[k] && (!m->tokenizer || k != (bpe ? 2 : 1))) {
            st = lb_fail(LB_ERR_IO, "'%s' already holds %s, which does not belong to this model: choose another "
                         "folder", dir, names[k]);
            goto done;
        }
    lb_st_dtype dt = dtype_of(dtype ? dtype : &m->layers[0].linear[LB_WQ].w.spec);
    TRY(write_weights(m, dtype, paths[0]));
    written = 1;
    if (m->tokenizer && !bpe) TRY(lb_tokenizer_save_spm(m->tokenizer, paths[1]));
    written = 2;
    if (m->tokenizer && bpe) TRY(lb_tokenizer_save_hf_json(m->tokenizer, paths[2]));
    written = 3;
    TRY(write_config(m, dt, paths[3]));
    written = 4;
done:
    if (st != LB_OK) { /* leave no folder that looks complete: remove what this call created */
        for (int k = 0; k < written; k++)
            if (!existed[k]) unlink(paths[k]);
        if (made_dir) rmdir(dir);
        return lb_fail_context(st, "writing the Hugging Face folder '%s'", dir);
    }
    return LB_OK;
}
