/* Sequential calibration: the statistics of one layer input at a time,
 * collected from the model as it is at that moment (its earlier linears
 * already quantized), for true-sequential quantization
 * (lb_quantize_model_sequential, src/pipeline/quantize_sequential.c).
 *
 * Rerunning the whole model for every stage would cost O(layers^2) block
 * passes. Instead the residual stream of every calibration sequence is kept
 * at the input of the current layer (the cache): observing an input of layer
 * l runs only block l over the cache (into scratch, the cache unchanged);
 * advancing past layer l runs block l in place, once the layer is final.
 * Cost: 4 bytes x calibration tokens x dim of memory (stories260K: 12,648
 * tokens x 64 = 3.2 MB; a 7B model, dim 4096, over the same tokens: 207 MB),
 * and per layer one block pass per observed stage plus one to advance.
 *
 * GPTAQ's cross statistics (LB_STATS_DXTX: sum (x_fp - x) x^T) also need
 * the fp32 model's input of the same linear for the same tokens: a second
 * cache holds the fp32 residual stream, and when the cache reaches layer l
 * (begin for layer 0, advance for the next) block l, still fp32 then, runs
 * over it in place while its four inputs are kept (fp_in). Extra memory:
 * 4 bytes x tokens x (4 dim + hidden_dim) (stories260K: 22 MB; a 7B model,
 * dim 4096 and hidden 11008, over 12,648 tokens: 1.4 GB).
 *
 * Sequences, budget and summation order are lb_calibrate's (the same
 * tokenization, one forward batch per sequence from position 0, sums in
 * token order through the same observer), so the first stage of layer 0 sees
 * exactly the fp32 statistics lb_calibrate collects, bit for bit. */
#include <string.h>

#include "calib_internal.h"
#include "core/blas_threads.h"
#include "core/mapped.h"

#ifdef LB_HAVE_BLAS
#include <cblas.h>
#endif

struct lb_calib_seq {
    lb_calib_stats *s;
    lb_calib_collector k;
    lb_state *state;
    int dim, ctx;
    lb_calib_cache c; /* the sequences, and the residual stream at the current layer's input */
    float *scratch; /* (ctx, dim) */
    int layer;      /* the layer whose input the cache holds */
    /* LB_STATS_DXTX only: */
    float *x_fp;    /* (tokens, dim) the fp32 model's residual stream, at layer + 1's input */
    float *fp_in[LB_CALIB_N_INPUTS]; /* (tokens, cols) the fp32 model's inputs of layer `layer` */
    size_t fp_row;  /* capture: first row of the sequence being run */
};

void lb_calib_seq_free(lb_calib_seq *r) {
    if (!r) return;
    lb_calib_stats_free(r->s);
    lb_calib_collector_free(&r->k);
    lb_state_free(r->state);
    lb_calib_cache_free(&r->c);
    lb_free(r->scratch);
    lb_free(r->x_fp);
    for (int i = 0; i < LB_CALIB_N_INPUTS; i++) lb_free(r->fp_in[i]);
    lb_free(r);
}

void lb_calib_cache_free(lb_calib_cache *c) {
    lb_free(c->block);
    lb_free(c->len);
    lb_free(c->offset);
    lb_free(c->x);
    memset(c, 0, sizeof *c);
}

lb_status lb_calib_cache_load(lb_calib_cache *c, const lb_model *m, const lb_calib_opts *o, const lb_calib_prep *p,
                              int release_embedding) {
    memset(c, 0, sizeof *c);
    int cap = p->end - p->first, dim = m->cfg.dim;
    c->block = lb_calloc((size_t)cap, sizeof *c->block);
    c->len = lb_calloc((size_t)cap, sizeof *c->len);
    c->offset = lb_calloc((size_t)cap, sizeof *c->offset);
    int **toks = lb_calloc((size_t)cap, sizeof *toks);
    if (!c->block || !c->len || !c->offset || !toks) {
        lb_free(toks);
        lb_calib_cache_free(c);
        return lb_fail(LB_ERR_NOMEM, "calibration: out of memory for %d sequences", cap);
    }
    lb_status st = LB_OK;
    int64_t done = 0;
    for (int b = p->first; b < p->end; b++) {
        if (o->tokens && done >= o->tokens) break;
        size_t nt;
        int *tok = NULL;
        st = lb_tokenize(m->tokenizer, p->text->blocks[b].text, p->text->blocks[b].len, 1, 0, &tok, &nt);
        if (st != LB_OK) {
            st = lb_fail_context(st, "calibration block %d", b + 1);
            break;
        }
        int n = nt > (size_t)p->ctx ? p->ctx : (int)nt;
        if (o->tokens && (int64_t)n > o->tokens - done) n = (int)(o->tokens - done);
        toks[c->n_seq] = tok;
        c->block[c->n_seq] = b;
        c->len[c->n_seq] = n;
        c->offset[c->n_seq] = (size_t)done;
        c->n_seq++;
        done += n;
    }
    if (st == LB_OK && done == 0) st = lb_fail(LB_ERR_INVALID, "calibration: the text gave no tokens");
    if (st == LB_OK && o->tokens && done < o->tokens)
        st = lb_fail(LB_ERR_INVALID, "calibration: asked for %lld tokens, but %s has only %lld",
                     (long long)o->tokens, p->info.source, (long long)done);
    size_t bytes;
    if (st == LB_OK && (lb_mul_overflows((size_t)done, (size_t)dim * sizeof(float), &bytes) ||
                        !(c->x = lb_alloc(bytes))))
        st = lb_fail(LB_ERR_NOMEM, "calibration: no memory for the residual stream of %lld tokens (dim %d)",
                     (long long)done, dim);
    for (int i = 0; st == LB_OK && i < c->n_seq; i++)
        st = lb_forward_embed(m, toks[i], c->len[i], c->x + c->offset[i] * (size_t)dim);
    for (int i = 0; i < c->n_seq; i++) lb_free(toks[i]);
    lb_free(toks);
    if (st == LB_OK && release_embedding) lb_map_release(m->tok_embd.data, m->tok_embd.nbytes);
    if (st != LB_OK) {
        lb_calib_cache_free(c);
        return st;
    }
    c->tokens = done;
    return LB_OK;
}

/* Keeps the fp32 model's input of each distinct linear input of the layer
 * being run (q, o, gate and down: the first reader of each). */
static lb_status capture(void *user, int layer, int which, const float *x, int n, int cols) {
    (void)layer;
    lb_calib_seq *r = user;
    if (which != LB_WQ && which != LB_WO && which != LB_W1 && which != LB_W2) return LB_OK;
    memcpy(r->fp_in[lb_calib_input_of(which)] + r->fp_row * (size_t)cols, x, (size_t)n * (size_t)cols * sizeof(float));
    return LB_OK;
}

/* Runs block `layer` of m (still fp32) over the fp32 cache in place,
 * keeping its inputs: fp_in then holds layer `layer`'s fp32 inputs, x_fp
 * layer + 1's input. */
static lb_status fp_layer(lb_calib_seq *r, const lb_model *m, int layer) {
    lb_state_set_observer(r->state, capture, r);
    lb_status st = LB_OK;
    for (int i = 0; i < r->c.n_seq && st == LB_OK; i++) {
        r->fp_row = r->c.offset[i];
        st = lb_forward_block(m, r->state, layer, r->x_fp + r->c.offset[i] * (size_t)r->dim, r->c.len[i], 0);
    }
    lb_state_set_observer(r->state, NULL, NULL);
    return st;
}

static lb_status fp_begin(lb_calib_seq *r, const lb_model *m) {
    size_t tokens = (size_t)r->s->info.tokens, dim = (size_t)r->dim;
    int ok = (r->x_fp = lb_alloc(tokens * dim * sizeof(float))) != NULL;
    for (int i = 0; i < LB_CALIB_N_INPUTS; i++) {
        size_t cols = (size_t)r->s->in[i].cols; /* layer 0's inputs: the same widths in every layer */
        ok &= (r->fp_in[i] = lb_alloc(tokens * cols * sizeof(float))) != NULL;
    }
    if (!ok)
        return lb_fail(LB_ERR_NOMEM, "sequential calibration: no memory for the fp32 inputs of %zu tokens", tokens);
    memcpy(r->x_fp, r->c.x, tokens * dim * sizeof(float));
    return fp_layer(r, m, 0);
}

lb_status lb_calib_seq_begin(const lb_model *m, const lb_calib_opts *o, lb_calib_seq **out) {
    *out = NULL;
    lb_calib_opts def;
    if (!o) {
        lb_calib_opts_default(&def);
        o = &def;
    }
    lb_calib_prep p;
    lb_status st = lb_calib_prepare(m, o, LB_CALIB_ALL_PARTS | LB_STATS_DXTX, &p);
    if (st != LB_OK) return st;
    lb_calib_seq *r = lb_calloc(1, sizeof *r);
    if (!r) {
        lb_calib_prep_free(&p);
        return LB_ERR_NOMEM;
    }
    r->dim = m->cfg.dim;
    r->ctx = p.ctx;
    st = lb_calib_alloc(&p.info, m->cfg.n_kv_heads * m->cfg.head_dim, &r->s);
    if (st == LB_OK) st = lb_calib_collector_init(&r->k, m, r->s, p.ctx);
    if (st == LB_OK) st = lb_state_create(m, p.ctx, &r->state);
    if (st == LB_OK && !(r->scratch = lb_alloc((size_t)p.ctx * (size_t)r->dim * sizeof(float))))
        st = lb_fail(LB_ERR_NOMEM, "sequential calibration: out of memory");
    if (st == LB_OK && (st = lb_calib_cache_load(&r->c, m, o, &p, 0)) == LB_OK) {
        r->s->info.tokens = r->c.tokens;
        r->s->info.sequences = r->c.n_seq;
    }
    if (st == LB_OK && (p.info.parts & LB_STATS_DXTX)) st = fp_begin(r, m);
    lb_calib_prep_free(&p);
    if (st != LB_OK) {
        lb_calib_seq_free(r);
        return st;
    }
    lb_calib_link(r->s);
    *out = r;
    return LB_OK;
}

/* Runs block `layer` of m over every cached sequence: into scratch when
 * observing (the cache stays), in place when advancing. */
static lb_status pass(lb_calib_seq *r, const lb_model *m, int layer, int in_place, const float *fp_in) {
    lb_state_set_observer(r->state, in_place ? NULL : lb_calib_observe, &r->k);
    /* as lb_calibrate: one OpenBLAS thread, so dsyrk's sums do not depend on the thread count */
    int blas_threads = lb_blas_threads_single();
    lb_status st = LB_OK;
    /* lb_calibrate's shards: the sums of each run of `per` sequences folded in order */
    int per = lb_calib_shard_size(r->c.n_seq), idx = r->k.sel_layer * LB_CALIB_N_INPUTS + r->k.sel_input;
    for (int i = 0; i < r->c.n_seq && st == LB_OK; i++) {
        if (!in_place && i > 0 && i % per == 0) st = lb_calib_fold(&r->k, idx);
        if (st != LB_OK) break;
        float *x = r->c.x + r->c.offset[i] * (size_t)r->dim;
        if (!in_place) {
            memcpy(r->scratch, x, (size_t)r->c.len[i] * (size_t)r->dim * sizeof(float));
            x = r->scratch;
        }
        r->k.block = r->c.block[i];
        /* the fp32 rows of the same tokens, for (x_fp - x) x^T */
        r->k.fp_rows = fp_in ? fp_in + r->c.offset[i] * (size_t)r->s->in[r->k.sel_input].cols : NULL;
        st = lb_forward_block(m, r->state, layer, x, r->c.len[i], 0);
    }
    if (st == LB_OK && !in_place) st = lb_calib_fold(&r->k, idx);
    lb_blas_threads_restore(blas_threads);
    lb_state_set_observer(r->state, NULL, NULL);
    return st;
}

static lb_status check_model(const lb_calib_seq *r, const lb_model *m, int layer) {
    lb_status st = lb_calib_stats_check(r->s, m);
    if (st != LB_OK) return st;
    if (layer != r->layer)
        return lb_fail(LB_ERR_INVALID, "sequential calibration is at layer %d, not %d (layers go in order)", r->layer,
                       layer);
    return LB_OK;
}

lb_status lb_calib_seq_observe(lb_calib_seq *r, const lb_model *m, int layer, int input) {
    lb_status st = check_model(r, m, layer);
    if (st != LB_OK) return st;
    if (input < 0 || input >= LB_CALIB_N_INPUTS)
        return lb_fail(LB_ERR_INVALID, "sequential calibration: no layer input %d", input);
    int idx = layer * LB_CALIB_N_INPUTS + input;
    if (r->s->in[idx].n) /* observing twice would add the tokens twice */
        return lb_fail(LB_ERR_INVALID, "sequential calibration: layer %d %s was already observed", layer,
                       lb_calib_input_name(input));
    r->k.sel_layer = layer;
    r->k.sel_input = input;
    st = pass(r, m, layer, 0, r->x_fp ? r->fp_in[input] : NULL);
    r->k.sel_layer = r->k.sel_input = -1;
    if (st != LB_OK) return st;
    lb_calib_finish_input(r->s, &r->k, idx);
    lb_calib_link(r->s);
    return LB_OK;
}

lb_status lb_calib_seq_advance(lb_calib_seq *r, const lb_model *m, int layer) {
    lb_status st = check_model(r, m, layer);
    if (st == LB_OK) st = pass(r, m, layer, 1, NULL);
    if (st == LB_OK) r->layer++;
    /* the next layer is still fp32: its fp32 inputs now (DXTX) */
    if (st == LB_OK && r->x_fp && r->layer < m->cfg.n_layers) st = fp_layer(r, m, r->layer);
    return st;
}

const lb_calib_stats *lb_calib_seq_stats(const lb_calib_seq *r) { return r ? r->s : NULL; }

void lb_calib_seq_inputs(const lb_calib_seq *r, const float **x, int *n_seq, const int **len, const size_t **offset) {
    *x = r->c.x;
    *n_seq = r->c.n_seq;
    *len = r->c.len;
    *offset = r->c.offset;
}
