/* The forward pass as steps on the real model: embed, blocks, head run by
 * hand (also layer-major, as sequential calibration will) give logits
 * bit-identical to lb_forward; the linear-input observer sees what each
 * linear reads; a model whose linears carry an input scale and a Hadamard
 * rotation (weights stored transformed) computes the same function; every
 * slot kind survives a GGUF round trip; bad slots in a file are refused. */
#include "test.h"

#include <unistd.h>

#include "kernels/nn.h"

enum { N = 96, CHUNK = 32 };

static int tokens[N];

static float *forward_logits(lb_model *m, int batch) {
    lb_state *s;
    float *lg = lb_alloc((size_t)N * m->cfg.vocab_size * sizeof(float));
    CHECK_OK(lb_state_create(m, batch, &s));
    for (int i = 0; i < N; i += batch) CHECK_OK(lb_forward(m, s, tokens + i, N - i < batch ? N - i : batch, i, lg + (size_t)i * m->cfg.vocab_size));
    lb_state_free(s);
    return lg;
}

/* Every layer over the whole sequence before the next layer, CHUNK
 * positions at a time: the order a sequential calibration pipeline runs. */
static float *layer_major_logits(lb_model *m) {
    const lb_config *c = &m->cfg;
    lb_state *s;
    CHECK_OK(lb_state_create(m, CHUNK, &s));
    float *x = lb_alloc((size_t)N * c->dim * sizeof(float)), *lg = lb_alloc((size_t)N * c->vocab_size * sizeof(float));
    for (int i = 0; i < N; i += CHUNK) CHECK_OK(lb_forward_embed(m, tokens + i, CHUNK, x + (size_t)i * c->dim));
    for (int l = 0; l < c->n_layers; l++)
        for (int i = 0; i < N; i += CHUNK) CHECK_OK(lb_forward_block(m, s, l, x + (size_t)i * c->dim, CHUNK, i));
    for (int i = 0; i < N; i += CHUNK)
        CHECK_OK(lb_forward_head(m, s, x + (size_t)i * c->dim, CHUNK, lg + (size_t)i * c->vocab_size));
    CHECK(memcmp(lb_state_logits(s), lg + (size_t)(N - 1) * c->vocab_size, (size_t)c->vocab_size * sizeof(float)) == 0);
    lb_free(x);
    lb_state_free(s);
    return lg;
}

typedef struct {
    const lb_model *m;
    int calls, bad_width, bad_rows, bad_order;
    int layer_seen[8];
    const float *last_ptr[LB_N_LINEARS];
    float *copy[LB_N_LINEARS]; /* the input of each linear of layer 2 */
    int fail_at;               /* stop with an error at this call (0: never) */
} observation;

static lb_status observe(void *user, int layer, int which, const float *x, int n, int cols) {
    observation *o = user;
    const lb_config *c = &o->m->cfg;
    static const int order[LB_N_LINEARS] = {LB_WQ, LB_WK, LB_WV, LB_WO, LB_W1, LB_W3, LB_W2};
    o->calls++;
    if (o->fail_at && o->calls == o->fail_at) return lb_fail(LB_ERR_NUMERIC, "observer stops at call %d", o->calls);
    if (order[(o->calls - 1) % LB_N_LINEARS] != which || layer != (o->calls - 1) / LB_N_LINEARS) o->bad_order++;
    if (cols != (which == LB_W2 ? c->hidden_dim : c->dim)) o->bad_width++;
    if (n != CHUNK) o->bad_rows++;
    if (layer >= 0 && layer < 8) o->layer_seen[layer]++;
    o->last_ptr[which] = x;
    if (layer == 2) {
        o->copy[which] = lb_alloc((size_t)n * cols * sizeof(float));
        memcpy(o->copy[which], x, (size_t)n * cols * sizeof(float));
    }
    return LB_OK;
}

static void test_observer(lb_model *m) {
    const lb_config *c = &m->cfg;
    lb_state *s;
    CHECK_OK(lb_state_create(m, CHUNK, &s));
    observation o = {.m = m};
    lb_state_set_observer(s, observe, &o);
    CHECK_OK(lb_forward(m, s, tokens, CHUNK, 0, NULL));
    CHECK(o.calls == c->n_layers * LB_N_LINEARS);
    CHECK(o.bad_order == 0 && o.bad_width == 0 && o.bad_rows == 0);
    for (int l = 0; l < c->n_layers; l++) CHECK(o.layer_seen[l] == LB_N_LINEARS);
    /* q, k, v read one input; gate and up read one input */
    CHECK(o.last_ptr[LB_WQ] == o.last_ptr[LB_WK] && o.last_ptr[LB_WK] == o.last_ptr[LB_WV]);
    CHECK(o.last_ptr[LB_W1] == o.last_ptr[LB_W3]);
    size_t nd = (size_t)CHUNK * c->dim;
    CHECK(memcmp(o.copy[LB_WQ], o.copy[LB_WK], nd * 4) == 0 && memcmp(o.copy[LB_WQ], o.copy[LB_WV], nd * 4) == 0);
    CHECK(memcmp(o.copy[LB_W1], o.copy[LB_W3], nd * 4) == 0);
    /* what q reads is the normalized residual: unit RMS up to the norm weight */
    double ss = 0;
    const float *nw = (const float *)m->layers[2].attn_norm.data;
    for (int j = 0; j < c->dim; j++) ss += (double)(o.copy[LB_WQ][j] / nw[j]) * (o.copy[LB_WQ][j] / nw[j]);
    CHECK_NEAR(ss / c->dim, 1.0, 1e-3);
    for (int i = 0; i < LB_N_LINEARS; i++) lb_free(o.copy[i]);
    /* an observer's error stops the pass and comes back */
    observation f = {.m = m, .fail_at = 9};
    lb_state_set_observer(s, observe, &f);
    CHECK_FAILS(lb_forward(m, s, tokens, CHUNK, 0, NULL), LB_ERR_NUMERIC, "observer stops at call 9");
    CHECK(f.calls == 9);
    for (int i = 0; i < LB_N_LINEARS; i++) lb_free(f.copy[i]);
    lb_state_set_observer(s, NULL, NULL);
    /* bad arguments to the steps */
    float *x = lb_calloc((size_t)CHUNK * c->dim, sizeof(float));
    CHECK_FAILS(lb_forward_block(m, s, c->n_layers, x, 1, 0), LB_ERR_INVALID, "layer");
    CHECK_FAILS(lb_forward_block(m, s, 0, x, CHUNK + 1, 0), LB_ERR_INVALID, "batch");
    CHECK_FAILS(lb_forward_block(m, s, 0, x, 2, c->seq_len - 1), LB_ERR_INVALID, "context");
    CHECK_FAILS(lb_forward_head(m, s, x, 0, NULL), LB_ERR_INVALID, "rows");
    int bad = c->vocab_size;
    CHECK_FAILS(lb_forward_embed(m, &bad, 1, x), LB_ERR_INVALID, "outside the vocabulary");
    lb_free(x);
    lb_state_free(s);
}

/* Every linear gets an input scale and rotations of its input and output
 * (172 = 4 x 43: Hadamard x DCT), with the weight stored as R_o W diag(s) R:
 * same function. */
static void transform_model(lb_model *m) {
    lb_rng r;
    lb_rng_seed(&r, 5);
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int i = 0; i < LB_N_LINEARS; i++) {
            lb_linear *L = &m->layers[l].linear[i];
            int64_t rows = L->w.rows, cols = L->w.cols;
            float *w = lb_alloc((size_t)(rows * cols) * 4), *s = lb_alloc((size_t)cols * 4), *d = lb_alloc((size_t)cols * 4);
            float *e = lb_alloc((size_t)rows * 4);
            lb_rht_signs((uint64_t)(l * LB_N_LINEARS + i), rows, e);
            for (int64_t j = 0; j < cols; j++) {
                s[j] = 0.5f + lb_rng_f32(&r);
                d[j] = lb_rng_u32(&r) & 1 ? 1.0f : -1.0f;
            }
            CHECK_OK(lb_linear_set_in_scale(L, s));
            CHECK_OK(lb_linear_set_hadamard(L, d));
            CHECK_OK(lb_linear_set_out_hadamard(L, e));
            CHECK_OK(lb_dequantize(&L->w, w));
            CHECK_OK(lb_linear_transform_weight(L, w, rows));
            lb_qspec f32;
            lb_tensor t;
            CHECK_OK(lb_qspec_parse("f32", &f32));
            CHECK_OK(lb_quantize_to_tensor(w, rows, cols, &f32, NULL, L->w.name, &t));
            CHECK_OK(lb_linear_set_weight(L, &t));
            lb_free(w);
            lb_free(s);
            lb_free(d);
            lb_free(e);
        }
}

static void test_slots_in_model(lb_model *m, const float *want) {
    lb_model_size before, after;
    lb_model_sizes(m, &before);
    transform_model(m);
    lb_model_sizes(m, &after);
    /* input scales (f32) and the two rotations' signs (bits) of every linear */
    uint64_t slot_bytes = 0;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int i = 0; i < LB_N_LINEARS; i++) {
            const lb_tensor *w = &m->layers[l].linear[i].w;
            slot_bytes += (uint64_t)(4 * w->cols + (w->cols + 7) / 8 + (w->rows + 7) / 8);
        }
    CHECK(after.bytes_all == before.bytes_all + slot_bytes);
    float *got = forward_logits(m, CHUNK);
    double worst = 0, scale = 0;
    for (size_t i = 0; i < (size_t)N * m->cfg.vocab_size; i++) {
        worst = fmax(worst, fabs((double)got[i] - want[i]));
        scale = fmax(scale, fabs((double)want[i]));
    }
    CHECK_MSG(worst < 1e-4 * scale, "transformed model: logits differ by %g (largest %g)", worst, scale);
    lb_free(got);
}

/* Position just past tensor name `name` in a GGUF's tensor infos. */
static size_t after_name(const char *buf, size_t size, const char *name) {
    size_t n = strlen(name);
    for (size_t i = 8; i + n + 16 < size; i++)
        if (!memcmp(buf + i, name, n) && lb_rd64(buf + i - 8) == n) return i + n;
    return 0;
}

/* Slot tensors of the wrong shape, type or company are refused on load. */
static void test_corrupt_slots(const char *path) {
    char *buf, *bad;
    size_t size;
    lb_model *m;
    CHECK_OK(lb_read_file(path, &buf, &size));
    bad = lb_alloc(size);
    size_t o = after_name(buf, size, "blk.1.ffn_down.bias");
    CHECK(o > 0 && lb_rd32(buf + o) == 1 && lb_rd64(buf + o + 4) == 64);
    memcpy(bad, buf, size);
    lb_wr64(bad + o + 4, 32); /* 32 of the 64 outputs */
    CHECK_FAILS(lb_model_from_gguf((const uint8_t *)bad, size, &m), LB_ERR_FORMAT, "blk.1.ffn_down.bias");
    /* the 64 x 172 linear's outliers are stored as u16 flat positions (i16) */
    o = after_name(buf, size, "blk.1.ffn_down.outlier_pos");
    CHECK(o > 0 && lb_rd32(buf + o) == 1 && lb_rd64(buf + o + 4) == 3 && lb_rd32(buf + o + 12) == 25);
    memcpy(bad, buf, size);
    lb_wr32(bad + o + 12, 0); /* positions as f32 */
    CHECK_FAILS(lb_model_from_gguf((const uint8_t *)bad, size, &m), LB_ERR_FORMAT, "outlier_pos");
    /* a position past the weight, and positions out of row order */
    uint64_t data_at = 0;
    {
        lb_gguf *g = NULL;
        CHECK_OK(lb_gguf_parse((const uint8_t *)buf, size, &g));
        const lb_gguf_tensor *t = g ? lb_gguf_find_tensor(g, "blk.1.ffn_down.outlier_pos") : NULL;
        CHECK(t != NULL);
        if (t) data_at = (uint64_t)((const char *)t->data - buf);
        lb_gguf_free(g);
    }
    CHECK(data_at > 0 && lb_rd16(buf + data_at) == 9 * 172 + 3); /* row 9, column 3 */
    memcpy(bad, buf, size);
    lb_wr16(bad + data_at + 4, (uint16_t)(64 * 172)); /* one past the last weight */
    CHECK_FAILS(lb_model_from_gguf((const uint8_t *)bad, size, &m), LB_ERR_FORMAT, "outside the weight");
    memcpy(bad, buf, size);
    lb_wr16(bad + data_at + 4, 0); /* row 0 after row 9 */
    CHECK_FAILS(lb_model_from_gguf((const uint8_t *)bad, size, &m), LB_ERR_FORMAT, "earlier row");
    o = after_name(buf, size, "blk.1.ffn_down.outlier_values");
    CHECK(o > 0);
    memcpy(bad, buf, size);
    bad[o - 1] = 'z'; /* outlier_valuez: values missing */
    CHECK_FAILS(lb_model_from_gguf((const uint8_t *)bad, size, &m), LB_ERR_FORMAT, "do not match");
    o = after_name(buf, size, "blk.1.ffn_down.lora_b");
    CHECK(o > 0 && lb_rd32(buf + o) == 2 && lb_rd64(buf + o + 4) == 2);
    memcpy(bad, buf, size);
    lb_wr64(bad + o + 4, 1); /* rank 1 against lora_a's rank 2 */
    CHECK_FAILS(lb_model_from_gguf((const uint8_t *)bad, size, &m), LB_ERR_FORMAT, "lora_a and lora_b");
    /* the input rotation's 172 signs as 22 bytes of bits (i8): the wrong
     * count, and a bit set past the 172nd sign */
    o = after_name(buf, size, "blk.1.ffn_down.hadamard_bits");
    CHECK(o > 0 && lb_rd32(buf + o) == 1 && lb_rd64(buf + o + 4) == 22 && lb_rd32(buf + o + 12) == 24);
    memcpy(bad, buf, size);
    lb_wr64(bad + o + 4, 21);
    CHECK_FAILS(lb_model_from_gguf((const uint8_t *)bad, size, &m), LB_ERR_FORMAT, "hadamard_bits");
    {
        lb_gguf *g = NULL;
        CHECK_OK(lb_gguf_parse((const uint8_t *)buf, size, &g));
        const lb_gguf_tensor *t = g ? lb_gguf_find_tensor(g, "blk.1.ffn_down.hadamard_bits") : NULL;
        CHECK(t != NULL);
        if (t) data_at = (uint64_t)((const char *)t->data - buf);
        lb_gguf_free(g);
    }
    memcpy(bad, buf, size);
    bad[data_at + 21] |= (char)0x80; /* sign 175 of 172 */
    CHECK_FAILS(lb_model_from_gguf((const uint8_t *)bad, size, &m), LB_ERR_FORMAT, "past its 172 signs");
    lb_free(bad);
    lb_free(buf);
}

/* Every slot kind survives a GGUF round trip bit for bit. */
static void test_slots_round_trip(lb_model *m) {
    const lb_config *c = &m->cfg;
    /* add the slots transform_model did not: bias, outliers, adapter */
    lb_linear *L = &m->layers[1].linear[LB_W2]; /* (64, 172) */
    float bias[64], a[2 * 172], b[64 * 2], vals[3] = {0.5f, -0.25f, 2.0f};
    int32_t rp[65] = {0}, ci[3] = {3, 171, 0};
    for (int r = 0; r < 64; r++) {
        bias[r] = 0.01f * (float)(r - 32);
        b[2 * r] = 0.02f;
        b[2 * r + 1] = -0.01f * (float)(r % 5);
        rp[r + 1] = r < 10 ? (r < 9 ? 0 : 2) : 3; /* row 9: two outliers, row 10: one */
    }
    for (int j = 0; j < 2 * 172; j++) a[j] = 0.001f * (float)(j % 17);
    CHECK_OK(lb_linear_set_bias(L, bias));
    CHECK_OK(lb_linear_set_outliers(L, 3, rp, ci, vals));
    CHECK_OK(lb_linear_set_adapter(L, 2, a, b, 0.5f));
    /* an adapter whose values are all exact in fp16 (onebit lowrank=r's) is
     * stored as f16: 2 bytes a value, plus the f32 alpha */
    lb_linear *L16 = &m->layers[0].linear[LB_W1]; /* (172, 64) */
    float a16[3 * 64], b16[172 * 3];
    for (int j = 0; j < 3 * 64; j++) a16[j] = 0.125f * (float)(j % 7 - 3);
    for (int j = 0; j < 172 * 3; j++) b16[j] = 0.25f * (float)(j % 3) - 0.0625f;
    size_t before16 = lb_linear_slot_bytes(L16);
    CHECK_OK(lb_linear_set_adapter(L16, 3, a16, b16, 1.0f));
    CHECK(lb_linear_slot_bytes(L16) == before16 + 3 * (172 + 64) * 2 + 4);
    float *want = forward_logits(m, CHUNK);

    char dir[] = "/tmp/lb_block_XXXXXX", path[256];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/slots.gguf", dir);
    CHECK_OK(lb_model_save_gguf(m, path));
    lb_model *back = NULL;
    CHECK_OK(lb_model_load(path, NULL, &back));
    if (back) {
        for (int l = 0; l < c->n_layers; l++)
            for (int i = 0; i < LB_N_LINEARS; i++) {
                const lb_linear *x = &m->layers[l].linear[i], *y = &back->layers[l].linear[i];
                CHECK(lb_linear_slot_bytes(x) == lb_linear_slot_bytes(y) && x->rot.kind == y->rot.kind &&
                      x->out_rot.kind == y->out_rot.kind && x->rot.kind == LB_ROTATION_HADAMARD &&
                      x->out_rot.kind == LB_ROTATION_HADAMARD);
                CHECK(memcmp(x->in_scale, y->in_scale, (size_t)x->w.cols * 4) == 0);
                CHECK(memcmp(x->rot.signs, y->rot.signs, (size_t)x->w.cols * 4) == 0 &&
                      memcmp(x->out_rot.signs, y->out_rot.signs, (size_t)x->w.rows * 4) == 0);
            }
        const lb_linear *y = &back->layers[1].linear[LB_W2];
        CHECK(y->bias && memcmp(y->bias, bias, sizeof bias) == 0);
        CHECK(y->outliers.nnz == 3 && memcmp(y->outliers.row_ptr, rp, sizeof rp) == 0 &&
              memcmp(y->outliers.col_idx, ci, sizeof ci) == 0 && memcmp(y->outliers.values, vals, sizeof vals) == 0);
        CHECK(y->adapter.rank == 2 && y->adapter.alpha == 0.5f && memcmp(y->adapter.a, a, sizeof a) == 0 &&
              memcmp(y->adapter.b, b, sizeof b) == 0);
        const lb_linear *y16 = &back->layers[0].linear[LB_W1];
        CHECK(y16->adapter.rank == 3 && y16->adapter.alpha == 1.0f && memcmp(y16->adapter.a, a16, sizeof a16) == 0 &&
              memcmp(y16->adapter.b, b16, sizeof b16) == 0);
        float *got = forward_logits(back, CHUNK);
        CHECK_MSG(memcmp(got, want, (size_t)N * c->vocab_size * 4) == 0, "logits change through a GGUF round trip");
        lb_free(got);
        lb_model_free(back);
    }
    test_corrupt_slots(path);
    remove(path);

    /* bad slot data in a file is refused on load, naming the linear */
    float keep = L->bias[7];
    L->bias[7] = NAN; /* behind the setter's back, so the file carries it */
    CHECK_OK(lb_model_save_gguf(m, path));
    CHECK_FAILS(lb_model_load(path, NULL, &back), LB_ERR_NUMERIC, "blk.1.ffn_down.weight");
    remove(path);
    L->bias[7] = keep;

    /* a slot GGUF cannot hold: refuse, write nothing */
    L->rot.kind = (lb_rotation_kind)9;
    CHECK_FAILS(lb_model_save_gguf(m, path), LB_ERR_UNSUPPORTED, "blk.1.ffn_down.weight");
    CHECK(access(path, F_OK) != 0);
    L->rot.kind = LB_ROTATION_NONE;
    rmdir(dir);
    lb_free(want);
}

int main(void) {
    lb_model *m;
    CHECK_OK(lb_model_load(lb_test_data("models/stories260K.bin"), NULL, &m));
    if (!m) return 1;
    lb_rng r;
    lb_rng_seed(&r, 3);
    tokens[0] = 1;
    for (int i = 1; i < N; i++) tokens[i] = (int)(lb_rng_u32(&r) % (uint32_t)m->cfg.vocab_size);
    float *a = forward_logits(m, CHUNK), *b = layer_major_logits(m);
    CHECK_MSG(memcmp(a, b, (size_t)N * m->cfg.vocab_size * 4) == 0, "layer-major blocks differ from lb_forward");
    lb_free(b);
    test_observer(m);
    test_slots_in_model(m, a);
    test_slots_round_trip(m);
    lb_free(a);
    lb_model_free(m);
    return lb_test_finish("test_forward_block");
}
