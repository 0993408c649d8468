/* Writing a model as one GGUF file (the conventions: model_gguf.h). */
#include <math.h>
#include <string.h>

#include "core/mapped.h"
#include "io/gguf_internal.h"
#include "lowbit/gguf.h"
#include "model/model_gguf.h"
#include "model/model_internal.h"

/* ---- writing ------------------------------------------------------------- */

static lb_status add_slot(lb_gguf_writer *w, const lb_linear *L, const char *slot, int type, uint64_t ne0,
                          uint64_t ne1, const void *data) {
    char name[128];
    lb_gguf_slot_name(name, sizeof name, L, slot);
    uint64_t ne[2] = {ne0, ne1};
    if (!data) return lb_fail(LB_ERR_NOMEM, "out of memory for slot '%s'", name); /* a failed buffer() */
    return lb_gguf_add_tensor(w, name, type, ne1 ? 2 : 1, ne, data,
                              (size_t)(ne0 * (ne1 ? ne1 : 1)) * (size_t)lb_gguf_slot_type_bytes(type));
}

/* Buffers the writer points at until the file is written. */
typedef struct {
    void **p;
    int n, cap;
} buffers;

static void *buffer(buffers *b, size_t bytes) {
    if (b->n == b->cap) {
        int cap = b->cap ? 2 * b->cap : 16;
        void **p = lb_alloc((size_t)cap * sizeof *p);
        if (!p) return NULL;
        if (b->n) memcpy(p, b->p, (size_t)b->n * sizeof *p);
        lb_free(b->p);
        b->p = p;
        b->cap = cap;
    }
    void *x = lb_alloc(bytes ? bytes : 1);
    if (x) b->p[b->n++] = x;
    return x;
}

static void buffers_free(buffers *b) {
    for (int i = 0; i < b->n; i++) lb_free(b->p[i]);
    lb_free(b->p);
}

static const uint16_t *as_fp16(buffers *b, const float *v, size_t n) {
    uint16_t *h = buffer(b, n * 2);
    for (size_t i = 0; h && i < n; i++) h[i] = lb_fp32_to_fp16(v[i]);
    return h;
}

static lb_status write_outliers(lb_gguf_writer *w, const lb_linear *L, const lb_slot_layout *lay, buffers *bufs) {
    const lb_outliers *o = &L->outliers;
    uint64_t rows = (uint64_t)L->w.rows, cols = (uint64_t)L->w.cols, nnz = (uint64_t)o->nnz;
    lb_status st = LB_OK;
    if (lay->value_bytes == 2) {
        const uint16_t *h = as_fp16(bufs, o->values, nnz);
        if (!h) return LB_ERR_NOMEM;
        TRY(add_slot(w, L, "outlier_values", LB_GGML_F16, nnz, 0, h));
    } else {
        TRY(add_slot(w, L, "outlier_values", LB_GGML_F32, nnz, 0, o->values));
    }
    if (lay->pos16) {
        uint16_t *pos = buffer(bufs, nnz * 2);
        if (!pos) return LB_ERR_NOMEM;
        for (uint64_t r = 0; r < rows; r++)
            for (int32_t k = o->row_ptr[r]; k < o->row_ptr[r + 1]; k++) pos[k] = (uint16_t)(r * cols + (uint64_t)o->col_idx[k]);
        return add_slot(w, L, "outlier_pos", GGML_I16, nnz, 0, pos);
    }
    if (lay->count_bytes == 4) {
        TRY(add_slot(w, L, "outlier_rows", GGML_I32, rows + 1, 0, o->row_ptr));
    } else {
        uint8_t *cnt = buffer(bufs, rows * (uint64_t)lay->count_bytes);
        if (!cnt) return LB_ERR_NOMEM;
        for (uint64_t r = 0; r < rows; r++) {
            uint32_t c = (uint32_t)(o->row_ptr[r + 1] - o->row_ptr[r]);
            if (lay->count_bytes == 1) cnt[r] = (uint8_t)c;
            else lb_wr16(cnt + 2 * r, (uint16_t)c);
        }
        TRY(add_slot(w, L, "outlier_counts", lay->count_bytes == 1 ? LB_GGML_I8 : GGML_I16, rows, 0, cnt));
    }
    if (lay->col_bytes == 4) return add_slot(w, L, "outlier_cols", GGML_I32, nnz, 0, o->col_idx);
    uint8_t *c16 = buffer(bufs, nnz * 2);
    if (!c16) return LB_ERR_NOMEM;
    for (uint64_t k = 0; k < nnz; k++) lb_wr16(c16 + 2 * k, (uint16_t)o->col_idx[k]);
    TRY(add_slot(w, L, "outlier_cols", GGML_I16, nnz, 0, c16));
done:
    return st;
}

/* n signs as bits (bit set: -1), in a buffer of bufs; NULL when out of
 * memory (add_slot then fails) */
static const uint8_t *sign_bits(buffers *bufs, const float *signs, uint64_t n) {
    uint8_t *b = buffer(bufs, (size_t)(n + 7) / 8);
    if (!b) return NULL;
    memset(b, 0, (size_t)(n + 7) / 8);
    for (uint64_t j = 0; j < n; j++)
        if (signs[j] < 0) b[j / 8] |= (uint8_t)(1u << (j % 8));
    return b;
}

static lb_status write_linear_slots(lb_gguf_writer *w, const lb_linear *L, buffers *bufs) {
    uint64_t rows = (uint64_t)L->w.rows, cols = (uint64_t)L->w.cols;
    lb_status st = LB_OK;
    lb_slot_layout lay;
    lb_linear_slot_layout(L, &lay);
    if (L->bias && lay.bias_bytes == 2) {
        const uint16_t *h = as_fp16(bufs, L->bias, rows);
        if (!h) return LB_ERR_NOMEM;
        TRY(add_slot(w, L, "bias", LB_GGML_F16, rows, 0, h));
    } else if (L->bias) {
        TRY(add_slot(w, L, "bias", LB_GGML_F32, rows, 0, L->bias));
    }
    if (L->in_scale) TRY(add_slot(w, L, "in_scale", LB_GGML_F32, cols, 0, L->in_scale));
    if (L->rot.kind == LB_ROTATION_HADAMARD) TRY(add_slot(w, L, "hadamard_bits", LB_GGML_I8, (cols + 7) / 8, 0,
                                                          sign_bits(bufs, L->rot.signs, cols)));
    if (L->out_rot.kind == LB_ROTATION_HADAMARD)
        TRY(add_slot(w, L, "out_hadamard_bits", LB_GGML_I8, (rows + 7) / 8, 0, sign_bits(bufs, L->out_rot.signs, rows)));
    if (L->outliers.nnz) TRY(write_outliers(w, L, &lay, bufs));
    if (L->adapter.rank) {
        char key[192];
        lb_gguf_alpha_key(key, sizeof key, L);
        TRY(lb_gguf_set_f32(w, key, L->adapter.alpha));
        uint64_t rank = (uint64_t)L->adapter.rank;
        if (lay.adapter_bytes == 2) { /* every value exact in fp16 (onebit's low-rank term) */
            const uint16_t *a16 = as_fp16(bufs, L->adapter.a, rank * cols), *b16 = as_fp16(bufs, L->adapter.b, rows * rank);
            if (!a16 || !b16) return LB_ERR_NOMEM;
            TRY(add_slot(w, L, "lora_a", LB_GGML_F16, cols, rank, a16));
            TRY(add_slot(w, L, "lora_b", LB_GGML_F16, rank, rows, b16));
        } else {
            TRY(add_slot(w, L, "lora_a", LB_GGML_F32, cols, rank, L->adapter.a));
            TRY(add_slot(w, L, "lora_b", LB_GGML_F32, rank, rows, L->adapter.b));
        }
    }
    if (L->act.kind != LB_AQ_NONE) {
        char key[192], spec[64];
        lb_act_spec_format(&L->act, spec, sizeof spec);
        lb_gguf_linear_key(key, sizeof key, "lowbit.act", L);
        TRY(lb_gguf_set_str(w, key, spec));
        if (L->act.kind == LB_AQ_TENSOR) {
            lb_gguf_linear_key(key, sizeof key, "lowbit.act_clip", L);
            TRY(lb_gguf_set_f32(w, key, L->act.clip));
        }
    }
done:
    return st;
}

/* A tensor stored as another type while the file is written
 * (lb_model_save_gguf_as): a float type a row at a time; a quantized one
 * from the whole tensor dequantized, then rtn (one tensor's floats at a
 * time), or made by the caller's per-tensor function (streaming
 * quantization, lb_model_save_gguf_stream). tail: what the quantized
 * tensor's tail held (nvfp4's scale, written as the next tensor,
 * <name>.scale). */
typedef struct {
    const lb_tensor *t;
    lb_qspec to;
    int whole; /* 1: the tensor's bytes with its tail (lowbit's I8 form), 0: the rows only */
    uint8_t tail[4];
    lb_quantize_fn quantize; /* the caller's quantizer (the model layer has none of its own) */
    void *user;
    lb_model_requant_fn requant; /* non-NULL: makes the whole tensor instead (quantize unused) */
    int index;                   /* t's index in lb_model_tensor_at's order, for requant */
} retyped;

static lb_status write_requantized(void *user, lb_atomic_file *f) {
    retyped *r = user;
    const lb_tensor *t = r->t;
    lb_tensor q;
    lb_status st;
    if (r->requant) {
        st = r->requant(r->index, t, &r->to, &q, r->user);
    } else {
        float *w = lb_alloc((size_t)(t->rows * t->cols) * sizeof(float));
        if (!w) return LB_ERR_NOMEM;
        st = lb_dequantize(t, w);
        if (st == LB_OK) st = r->quantize(w, t->rows, t->cols, &r->to, t->name, &q, r->user);
        lb_free(w);
    }
    lb_map_release(t->data, t->nbytes); /* the input's pages are read; RSS holds one tensor, not the model */
    if (st != LB_OK) return lb_fail_context(st, "tensor '%s' as the target format", t->name);
    size_t body = (size_t)q.rows * q.layout.row_bytes;
    if (q.nbytes - body == 4) memcpy(r->tail, q.data + body, 4);
    lb_atomic_write(f, q.data, r->whole ? q.nbytes : body);
    lb_tensor_free(&q);
    return LB_OK;
}

static lb_status write_tail(void *user, lb_atomic_file *f) {
    const retyped *r = user;
    lb_atomic_write(f, r->tail, 4);
    return LB_OK;
}

static lb_status write_retyped(void *user, lb_atomic_file *f) {
    const retyped *r = user;
    const lb_tensor *t = r->t;
    size_t es = r->to.family == LB_FAMILY_F32 ? 4 : 2;
    float *row = lb_alloc((size_t)t->cols * sizeof *row);
    uint8_t *out = lb_alloc((size_t)t->cols * es);
    if (!row || !out) {
        lb_free(row);
        lb_free(out);
        return LB_ERR_NOMEM;
    }
    for (int64_t r0 = 0; r0 < t->rows; r0++) {
        lb_dequantize_row(t, r0, row);
        for (int64_t c = 0; c < t->cols; c++) {
            if (es == 4) memcpy(out + 4 * c, &row[c], 4);
            else lb_wr16(out + 2 * c, r->to.family == LB_FAMILY_F16 ? lb_fp32_to_fp16(row[c]) : lb_fp32_to_bf16(row[c]));
        }
        lb_atomic_write(f, out, (size_t)t->cols * es);
    }
    lb_free(row);
    lb_free(out);
    lb_map_release(t->data, t->nbytes);
    return LB_OK;
}

/* The keys llama.cpp reads a Llama's shape from (and general.*), as every
 * lowbit GGUF writer sets them: a saved model, a synthetic one. */
lb_status lb_model_gguf_set_hparams(lb_gguf_writer *w, const lb_config *c, const char *name) {
    lb_status st;
    if ((st = lb_gguf_set_str(w, "general.architecture", "llama")) != LB_OK ||
        (st = lb_gguf_set_str(w, "general.name", name)) != LB_OK ||
        (st = lb_gguf_set_u32(w, "general.alignment", LB_GGUF_DEFAULT_ALIGNMENT)) != LB_OK ||
        (st = lb_gguf_set_u32(w, "llama.context_length", (uint32_t)c->seq_len)) != LB_OK ||
        (st = lb_gguf_set_u32(w, "llama.embedding_length", (uint32_t)c->dim)) != LB_OK ||
        (st = lb_gguf_set_u32(w, "llama.block_count", (uint32_t)c->n_layers)) != LB_OK ||
        (st = lb_gguf_set_u32(w, "llama.feed_forward_length", (uint32_t)c->hidden_dim)) != LB_OK ||
        (st = lb_gguf_set_u32(w, "llama.attention.head_count", (uint32_t)c->n_heads)) != LB_OK ||
        (st = lb_gguf_set_u32(w, "llama.attention.head_count_kv", (uint32_t)c->n_kv_heads)) != LB_OK ||
        (st = lb_gguf_set_u32(w, "llama.rope.dimension_count", (uint32_t)c->head_dim)) != LB_OK ||
        (st = lb_gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", c->norm_eps)) != LB_OK ||
        (st = lb_gguf_set_f32(w, "llama.rope.freq_base", c->rope_theta)) != LB_OK)
        return st;
    return lb_gguf_set_u32(w, "llama.vocab_size", (uint32_t)c->vocab_size);
}

lb_status lb_model_save_gguf(const lb_model *m, const char *path) { return lb_model_save_gguf_as(m, path, NULL); }

/* The tensors' new forms: one type for all (dtype, made by quantize when
 * not a float type), or per tensor (targets[i], NULL: as stored, made by
 * requant); both NULL: everything as stored. */
typedef struct {
    const lb_qspec *dtype;
    lb_quantize_fn quantize;
    const lb_qspec *const *targets;
    lb_model_requant_fn requant;
    void *user;
} save_how;

static lb_status save_gguf(const lb_model *mc, const char *path, const save_how *how,
                           const lb_gguf_split_opts *split, int *n_shards);

lb_status lb_model_save_gguf_as(const lb_model *m, const char *path, const lb_qspec *dtype) {
    if (dtype && !lb_qspec_is_float(dtype))
        return lb_fail(LB_ERR_INVALID, "saving as GGUF: the target type must be f32, f16 or bf16");
    save_how how = {dtype, NULL, NULL, NULL, NULL};
    return save_gguf(m, path, &how, NULL, NULL);
}

lb_status lb_model_save_gguf_quantized(const lb_model *m, const char *path, const lb_qspec *spec,
                                       lb_quantize_fn quantize, void *user) {
    lb_status st = lb_qspec_validate(spec);
    if (st != LB_OK) return lb_fail_context(st, "saving as GGUF");
    if (!lb_qspec_is_float(spec) && !quantize)
        return lb_fail(LB_ERR_INVALID, "saving as GGUF in a quantized format needs a quantizer");
    save_how how = {spec, quantize, NULL, NULL, user};
    return save_gguf(m, path, &how, NULL, NULL);
}

lb_status lb_model_save_gguf_split(const lb_model *m, const char *path, const lb_qspec *spec,
                                   lb_quantize_fn quantize, void *user, const lb_gguf_split_opts *split,
                                   int *n_shards) {
    *n_shards = 0;
    if (spec) {
        lb_status st = lb_qspec_validate(spec);
        if (st != LB_OK) return lb_fail_context(st, "saving as GGUF");
        if (!lb_qspec_is_float(spec) && !quantize)
            return lb_fail(LB_ERR_INVALID, "saving as GGUF in a quantized format needs a quantizer");
    }
    save_how how = {spec, quantize, NULL, NULL, user};
    return save_gguf(m, path, &how, split, n_shards);
}

lb_status lb_model_save_gguf_stream(const lb_model *m, const char *path, const lb_qspec *const *targets,
                                    lb_model_requant_fn requant, void *user, const lb_gguf_split_opts *split,
                                    int *n_shards) {
    *n_shards = 0;
    save_how how = {NULL, NULL, targets, requant, user};
    return save_gguf(m, path, &how, split, n_shards);
}

static lb_status save_gguf(const lb_model *mc, const char *path, const save_how *how,
                           const lb_gguf_split_opts *split, int *n_shards) {
    lb_model *m = (lb_model *)mc; /* tensor iteration only reads */
    const lb_qspec *dtype = how->dtype;
    const lb_config *c = &m->cfg;
    for (int l = 0; l < c->n_layers; l++)
        for (int i = 0; i < LB_N_LINEARS; i++) {
            const lb_linear *L = &m->layers[l].linear[i];
            if (L->rot.kind != LB_ROTATION_NONE && L->rot.kind != LB_ROTATION_HADAMARD)
                return lb_fail(LB_ERR_UNSUPPORTED,
                               "linear '%s' has a rotation of kind %d, which lowbit cannot store in GGUF yet (saving "
                               "without it would change the model)",
                               L->w.name, (int)L->rot.kind);
        }
    lb_gguf_writer *w;
    buffers bufs = {0};
    lb_status st = lb_gguf_writer_create(&w);
    if (st != LB_OK) return st;
    TRY(lb_model_gguf_set_hparams(w, c, "lowbit model"));
    if (m->tokenizer) TRY(lb_tokenizer_write_gguf(m->tokenizer, w));
    TRY(lb_gguf_set_str(w, "lowbit.version", LB_VERSION_STRING));
    /* dequantized to a float type, the note no longer describes the file */
    if (m->quant_note[0] && !dtype) TRY(lb_gguf_set_str(w, "lowbit.quant.note", m->quant_note));

    int retyping = dtype || how->targets;
    retyped *rt = retyping ? buffer(&bufs, (size_t)lb_model_n_tensors(m) * sizeof *rt) : NULL;
    if (retyping && !rt) TRY(LB_ERR_NOMEM);
    for (int i = 0; i < lb_model_n_tensors(m); i++) {
        const lb_tensor *t = lb_model_tensor_at(m, i);
        int type = lb_format_ggml_type(&t->spec, t->cols);
        lb_qspec to;
        if (dtype) { /* norms stay f32: the forward pass reads them as floats */
            to = *dtype;
            if (t->rows == 1) lb_qspec_parse("f32", &to);
        }
        lb_qspec fb;
        if (dtype && t->rows > 1 && lb_format_ggml_fallback(&to, t->cols, &fb)) to = fb; /* llama-quantize's rule */
        /* per tensor: a target is always made by requant (even into the stored
         * spec, as the in-memory quantizer would), the plan's spec as resolved */
        const lb_qspec *target = how->targets ? how->targets[i] : NULL;
        if (target) to = *target;
        if (target || (dtype && !lb_qspec_equal(&to, &t->spec) && !lb_qspec_is_float(&to))) {
            uint64_t ne[2] = {(uint64_t)t->cols, (uint64_t)t->rows};
            size_t row_bytes, tail, total;
            TRY(lb_format_size(&to, t->rows, t->cols, &row_bytes, &tail, &total));
            int gt = lb_format_ggml_type(&to, t->cols);
            rt[i] = (retyped){t, to, gt < 0, {0}, how->quantize, how->user, how->requant, i};
            if (gt >= 0) { /* 1-D when one row, as a tensor saved as stored */
                TRY(lb_gguf_add_tensor_fill(w, t->name, gt, t->rows == 1 ? 1 : 2, ne, total - tail, write_requantized,
                                            &rt[i]));
                if (tail) { /* nvfp4: llama.cpp's <name>.scale, filled after the tensor itself */
                    char name[128];
                    uint64_t one[1] = {1};
                    lb_gguf_tensor_scale_name(name, sizeof name, t->name);
                    if (tail != 4) TRY(lb_fail(LB_ERR_UNSUPPORTED, "a %zu-byte tail has no GGUF form", tail));
                    TRY(lb_gguf_add_tensor_fill(w, name, LB_GGML_F32, 1, one, 4, write_tail, &rt[i]));
                }
            } else {
                char key[160], spec[64];
                uint64_t n[1] = {total};
                lb_qspec_format(&to, spec, sizeof spec);
                snprintf(key, sizeof key, "lowbit.format.%s", t->name);
                TRY(lb_gguf_set_str(w, key, spec));
                snprintf(key, sizeof key, "lowbit.shape.%s", t->name);
                TRY(lb_gguf_set_arr(w, key, LB_GGUF_UINT64, ne, 2));
                TRY(lb_gguf_add_tensor_fill(w, t->name, LB_GGML_I8, 1, n, total, write_requantized, &rt[i]));
            }
        } else if (dtype && !lb_qspec_equal(&to, &t->spec)) {
            uint64_t ne[2] = {(uint64_t)t->cols, (uint64_t)t->rows};
            size_t es = to.family == LB_FAMILY_F32 ? 4 : 2;
            rt[i] = (retyped){t, to, 0, {0}, NULL, NULL, NULL, 0};
            TRY(lb_gguf_add_tensor_fill(w, t->name, lb_format_ggml_type(&to, t->cols), t->rows == 1 ? 1 : 2, ne,
                                        (size_t)(t->rows * t->cols) * es, write_retyped, &rt[i]));
        } else if (type >= 0) {
            uint64_t ne[2] = {(uint64_t)t->cols, (uint64_t)t->rows};
            size_t row_bytes, body = t->nbytes; /* from the spec: a tensor's cached layout may be stale */
            if (lb_format_size(&t->spec, t->rows, t->cols, &row_bytes, NULL, NULL) == LB_OK &&
                (size_t)t->rows * row_bytes < t->nbytes)
                body = (size_t)t->rows * row_bytes;
            TRY(lb_gguf_add_tensor(w, t->name, type, t->rows == 1 ? 1 : 2, ne, t->data, body));
            if (t->nbytes > body) { /* nvfp4's tensor scale: llama.cpp's <name>.scale, one f32 */
                char name[128];
                uint64_t one[1] = {1};
                lb_gguf_tensor_scale_name(name, sizeof name, t->name);
                if (t->nbytes - body != 4) TRY(lb_fail(LB_ERR_UNSUPPORTED, "tensor '%s': a %zu-byte tail has no "
                                                       "GGUF form", t->name, t->nbytes - body));
                TRY(lb_gguf_add_tensor(w, name, LB_GGML_F32, 1, one, t->data + body, 4));
            }
        } else {
            char key[160], spec[64];
            uint64_t ne[1] = {t->nbytes}, shape[2] = {(uint64_t)t->cols, (uint64_t)t->rows};
            lb_qspec_format(&t->spec, spec, sizeof spec);
            snprintf(key, sizeof key, "lowbit.format.%s", t->name);
            TRY(lb_gguf_set_str(w, key, spec));
            snprintf(key, sizeof key, "lowbit.shape.%s", t->name);
            TRY(lb_gguf_set_arr(w, key, LB_GGUF_UINT64, shape, 2));
            TRY(lb_gguf_add_tensor(w, t->name, LB_GGML_I8, 1, ne, t->data, t->nbytes));
        }
    }
    for (int l = 0; l < c->n_layers; l++)
        for (int i = 0; i < LB_N_LINEARS; i++) TRY(write_linear_slots(w, &m->layers[l].linear[i], &bufs));
    if (m->rope_factors) {
        uint64_t ne[1] = {(uint64_t)(c->head_dim / 2)};
        TRY(lb_gguf_add_tensor(w, "rope_freqs.weight", LB_GGML_F32, 1, ne, m->rope_factors, ne[0] * sizeof(float)));
    }
    if (split) TRY(lb_gguf_write_split(w, path, split, n_shards));
    else TRY(lb_gguf_write(w, path));
    if (!split && n_shards) *n_shards = 1;
done:
    lb_gguf_writer_free(w);
    buffers_free(&bufs);
    return st;
}
