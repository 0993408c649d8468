/* Layered calibration: lb_calibrate's statistics, bit for bit, collected a
 * layer at a time (docs/SCALING.md, "Streaming").
 *
 * lb_calibrate runs the whole model over each calibration sequence in turn,
 * so every layer's statistics are open at once (a 7B shape: about 1.4 GB of
 * X^T X per layer, 45 GB for the model) and every weight page is touched.
 * Here the sequences are embedded once into a cache (the residual stream of
 * every sequence, 4 bytes x tokens x dim; lb_calib_cache) and, for l = 0 ..
 * L-1, block l runs over every cached sequence in place with the observer
 * collecting layer l's four inputs; then layer l's statistics are finished
 * and block l's mapped weight pages given back (lb_map_release). The cache
 * then holds layer l + 1's input.
 *
 * Why the bytes are lb_calibrate's: block l sees, for each sequence, the
 * same residual stream, from position 0, in one batch of the sequence's
 * length (n <= ctx, the state's batch, as lb_forward's single chunk), so
 * every linear's input is the same floats; the sequences are observed in the
 * same order, so each input's sums, dsyrk updates (one OpenBLAS thread, as
 * there) and histogram doublings happen in the same order, and the sums are
 * folded at lb_calibrate's shard boundaries (calib_shard.c: each shard's
 * partials summed from zero, added to the totals in shard order; the
 * layer's X^T X is held twice while it runs, total and partial). Only the KV cache
 * differs in size: block l runs on a one-layer view of the model (its own
 * state, one layer of KV), which changes no arithmetic.
 *
 * lb_calibrate_to_file writes the statistics file while it calibrates:
 * through the GGUF writer's fill callbacks (calib_io.c's layout: the header
 * first, every tensor's size follows from the shapes), the first tensor of
 * layer l runs layer l; the previous layer's X^T X is freed then. The keys
 * that depend on the data (lowbit.calib.n, .hist_range) are rewritten in the
 * header at the end (lb_gguf_set_late). Peak: one layer's statistics + the
 * cache + one block's pages + the per-channel vectors and histograms of all
 * layers (kept for the summary; 4 x hist_bins x 8 bytes a layer).
 * lb_calibrate_layered keeps everything, for a caller that uses the
 * statistics in memory (quantize): only the model's pages are streamed.
 *
 * With a journal (o->journal; calib_layer_journal.c) lb_calibrate_to_file
 * is resumable a layer at a time: the file is written into the journal's
 * data file, a snapshot after a finished layer (when due) says how much of
 * it is final and holds the residual stream; a resumed run passes over the
 * finished layers' tensors and runs on from the next layer. */
#include <string.h>

#include "calib_internal.h"
#include "core/blas_threads.h"
#include "core/mapped.h"
#include "model/model_internal.h"

typedef struct {
    const lb_model *m;
    lb_model view;      /* one layer of m: cfg.n_layers 1, layers at the running layer */
    lb_calib_stats *s;
    lb_calib_collector k;
    lb_calib_cache c;
    lb_state *state;    /* for the view: one layer of KV cache */
    int layer;          /* the layer whose statistics are ready (-1: none yet) */
    int keep_xtx;       /* 0: a layer's X^T X is freed once the next runs (it was written) */
    lb_calib_fill_ref *refs;
    lb_calib_layer_journal lj; /* lb_calibrate_to_file's journal (lj.j NULL: none; calib_layer_journal.c) */
    lb_progress progress;
    int progress_on;
} layered;

/* the view runs as layer 0: the collector is told the real layer */
static lb_status observe_layer(void *user, int layer, int which, const float *x, int n, int cols) {
    (void)layer;
    layered *r = user;
    return lb_calib_observe(&r->k, r->layer, which, x, n, cols);
}

/* with_xtx 0: the per-channel parts only (a journaled layer's, for the summary) */
static lb_status alloc_layer(layered *r, int l, int with_xtx) {
    const lb_calib_info *info = &r->s->info;
    for (int in = 0; in < LB_CALIB_N_INPUTS; in++) {
        calib_input *c = &r->s->in[l * LB_CALIB_N_INPUTS + in];
        size_t cols = (size_t)c->cols;
        if ((with_xtx && (info->parts & LB_STATS_XTX) && !(c->xtx = lb_calloc(cols * cols, sizeof(double)))) ||
            ((info->parts & LB_STATS_MEAN_ABS_X) && !(c->mean_abs_x = lb_calloc(cols, sizeof(float)))) ||
            ((info->parts & LB_STATS_MAX_ABS_X) && !(c->max_abs_x = lb_calloc(cols, sizeof(float)))) ||
            ((info->parts & LB_STATS_MEAN_X) && !(c->mean_x = lb_calloc(cols, sizeof(float)))) ||
            ((info->parts & LB_STATS_HIST_X) && !(c->hist = lb_calloc((size_t)info->hist_bins, sizeof(int64_t)))))
            return lb_fail(LB_ERR_NOMEM, "layered calibration: out of memory for layer %d's statistics", l);
    }
    return LB_OK;
}

static void drop_xtx(layered *r, int l) {
    for (int in = 0; in < LB_CALIB_N_INPUTS; in++) {
        calib_input *c = &r->s->in[l * LB_CALIB_N_INPUTS + in];
        lb_free(c->xtx);
        c->xtx = NULL;
    }
}

/* Layer l's statistics: block l over every cached sequence, in place. */
static lb_status run_layer(layered *r, int l) {
    if (r->layer >= 0 && !r->keep_xtx) drop_xtx(r, r->layer);
    lb_status st = alloc_layer(r, l, 1);
    if (st != LB_OK) return st;
    r->layer = l;
    r->view.layers = r->m->layers + l;
    int dim = r->m->cfg.dim;
    int blas_threads = lb_blas_threads_single(); /* as lb_calibrate: dsyrk's order independent of threads */
    /* lb_calibrate's shards (calib_shard.c): each run of `per` sequences
     * summed from zero, folded into the totals in order */
    int per = lb_calib_shard_size(r->c.n_seq);
    for (int i = 0; i < r->c.n_seq && st == LB_OK; i++) {
        for (int in = 0; i > 0 && i % per == 0 && in < LB_CALIB_N_INPUTS && st == LB_OK; in++)
            st = lb_calib_fold(&r->k, l * LB_CALIB_N_INPUTS + in);
        if (st != LB_OK) break;
        r->k.block = r->c.block[i];
        st = lb_forward_block(&r->view, r->state, 0, r->c.x + r->c.offset[i] * (size_t)dim, r->c.len[i], 0);
    }
    for (int in = 0; in < LB_CALIB_N_INPUTS && st == LB_OK; in++) st = lb_calib_fold(&r->k, l * LB_CALIB_N_INPUTS + in);
    lb_blas_threads_restore(blas_threads);
    if (st != LB_OK) return lb_fail_context(st, "layered calibration, layer %d", l);
    lb_model_release_layer(r->m, l);
    for (int in = 0; in < LB_CALIB_N_INPUTS; in++) lb_calib_finish_input(r->s, &r->k, l * LB_CALIB_N_INPUTS + in);
    lb_progress_update(&r->progress, (uint64_t)(l + 1));
    return LB_OK;
}

static void layered_free(layered *r) {
    lb_calib_collector_free(&r->k);
    lb_calib_cache_free(&r->c);
    lb_state_free(r->state);
    lb_free(r->refs);
}

/* The statistics' skeleton (every input's width, no arrays yet), the cache
 * of embedded sequences, the collector, a one-layer state. */
static lb_status layered_begin(layered *r, const lb_model *m, const lb_calib_opts *o) {
    memset(r, 0, sizeof *r);
    r->m = m;
    r->layer = -1;
    r->lj.data_fd = -1;
    lb_calib_opts def;
    if (!o) {
        lb_calib_opts_default(&def);
        o = &def;
    }
    lb_calib_prep p;
    lb_status st = lb_calib_prepare(m, o, LB_CALIB_ALL_PARTS, &p);
    if (st != LB_OK) return st;
    lb_calib_info skeleton = p.info;
    skeleton.parts = 0; /* lb_calib_alloc allocates the arrays of these parts: none, layer by layer here */
    st = lb_calib_alloc(&skeleton, m->cfg.n_kv_heads * m->cfg.head_dim, &r->s);
    if (st == LB_OK) {
        r->s->info.parts = p.info.parts;
        st = lb_calib_cache_load(&r->c, m, o, &p, 1);
    }
    lb_calib_prep_free(&p);
    /* the view's context is the longest sequence: the state's buffers and KV
     * cache (allocated zeroed, so resident) hold that many positions, not the
     * model's whole context (4096 for a 7B shape: about 0.9 GB of buffers);
     * positions, RoPE rows and sums are the same */
    int longest = 1;
    for (int i = 0; st == LB_OK && i < r->c.n_seq; i++) longest = r->c.len[i] > longest ? r->c.len[i] : longest;
    r->view = *m;
    r->view.cfg.n_layers = 1;
    r->view.cfg.seq_len = longest;
    if (st == LB_OK) st = lb_calib_collector_init(&r->k, m, r->s, longest);
    if (st == LB_OK) st = lb_state_create(&r->view, longest, &r->state);
    if (st == LB_OK) {
        r->s->info.tokens = r->c.tokens;
        r->s->info.sequences = r->c.n_seq;
        lb_state_set_observer(r->state, observe_layer, r);
        lb_progress_begin(&r->progress, "calibrate (layers)", (uint64_t)m->cfg.n_layers);
        r->progress_on = 1;
    }
    return st;
}

lb_status lb_calibrate_layered(const lb_model *m, const lb_calib_opts *o, lb_calib_stats **out) {
    *out = NULL;
    layered r;
    lb_status st = layered_begin(&r, m, o);
    r.keep_xtx = 1;
    for (int l = 0; st == LB_OK && l < m->cfg.n_layers; l++) st = run_layer(&r, l);
    if (r.progress_on) lb_progress_end(&r.progress);
    layered_free(&r);
    if (st != LB_OK) {
        lb_calib_stats_free(r.s);
        return st;
    }
    lb_calib_link(r.s);
    *out = r.s;
    return LB_OK;
}

/* ---- to a file, while calibrating -------------------------------------------- */

/* Layer l's statistics: run, or (a resumed run's journaled layer) already
 * in the file, its per-channel parts read back from there for the summary
 * and its counts restored from the journal. */
static lb_status next_layer(layered *r, int l, lb_atomic_file *f) {
    if (l >= r->lj.kept) {
        lb_status st = lb_calib_layer_journal_next(&r->lj, r->s, &r->c, r->m->cfg.dim, f, l);
        return st == LB_OK ? run_layer(r, l) : st;
    }
    if (r->layer >= 0 && !r->keep_xtx) drop_xtx(r, r->layer);
    r->layer = l;
    lb_progress_update(&r->progress, (uint64_t)(l + 1));
    return alloc_layer(r, l, 0);
}

static lb_status fill_tensor(void *user, lb_atomic_file *f) {
    const lb_calib_fill_ref *ref = user;
    layered *r = ref->user;
    int l = ref->input / LB_CALIB_N_INPUTS;
    if (l != r->layer) {
        if (l != r->layer + 1) /* the writer goes in the file's order, layer-major */
            return lb_fail(LB_ERR_INVALID, "layered calibration: layer %d asked after layer %d", l, r->layer);
        lb_status st = next_layer(r, l, f);
        if (st != LB_OK) return st;
    }
    calib_input *c = &r->s->in[ref->input];
    size_t cols = (size_t)c->cols, n = cols * sizeof(float);
    void *p;
    switch (ref->part) {
    case LB_CALIB_PART_XTX: p = c->xtx, n = cols * cols * sizeof(double); break;
    case LB_CALIB_PART_MEAN_ABS: p = c->mean_abs_x; break;
    case LB_CALIB_PART_MAX_ABS: p = c->max_abs_x; break;
    case LB_CALIB_PART_MEAN: p = c->mean_x; break;
    default: p = c->hist, n = (size_t)r->s->info.hist_bins * sizeof(int64_t); break;
    }
    if (l < r->lj.kept) return lb_calib_layer_journal_keep(&r->lj, f, p, n); /* X^T X: p NULL, passed over */
    lb_calib_layer_journal_put(&r->lj, f, p, n);
    return f->err;
}

/* lowbit.calib.n and .hist_range, known once every layer ran: an array
 * value is its element type (u32), count (u64), then the elements */
static lb_status late_value(void *user, const char *key, uint8_t *val, size_t val_len) {
    layered *r = user;
    size_t n_in = (size_t)r->s->info.n_layers * LB_CALIB_N_INPUTS;
    if (val_len != 12 + 8 * n_in || r->layer != r->s->info.n_layers - 1)
        return lb_fail(LB_ERR_INVALID, "layered calibration: key %s written before every layer ran", key);
    int ranges = !strcmp(key, "lowbit.calib.hist_range");
    for (size_t k = 0; k < n_in; k++) {
        if (ranges) memcpy(val + 12 + 8 * k, &r->s->in[k].hist_range, 8);
        else {
            uint64_t n = (uint64_t)r->s->in[k].n;
            memcpy(val + 12 + 8 * k, &n, 8);
        }
    }
    return LB_OK;
}

lb_status lb_calibrate_to_file(const lb_model *m, const lb_calib_opts *o, const char *path, lb_calib_stats **out) {
    *out = NULL;
    layered r;
    lb_gguf_writer *w = NULL;
    lb_atomic_file f;
    memset(&f, 0, sizeof f);
    lb_status st = layered_begin(&r, m, o);
    /* the journal (o->journal): a resumed run's layers restored into r.s, its stream into r.c */
    if (st == LB_OK) st = lb_calib_layer_journal_begin(&r.lj, o ? o->journal : NULL, r.s, &r.c, m->cfg.dim);
    size_t n_refs = (size_t)m->cfg.n_layers * LB_CALIB_N_INPUTS * LB_CALIB_N_PARTS;
    if (st == LB_OK && !(r.refs = lb_calloc(n_refs, sizeof *r.refs))) st = LB_ERR_NOMEM;
    for (size_t i = 0; st == LB_OK && i < n_refs; i++) r.refs[i].user = &r;
    if (st == LB_OK) st = lb_gguf_writer_create(&w);
    if (st == LB_OK) st = lb_calib_stats_writer(r.s, w, fill_tensor, r.refs);
    if (st == LB_OK) st = lb_gguf_set_late(w, "lowbit.calib.n", late_value, &r);
    if (st == LB_OK) st = lb_gguf_set_late(w, "lowbit.calib.hist_range", late_value, &r);
    if (st == LB_OK) st = lb_calib_layer_journal_open(&r.lj, &f, path, w);
    if (st == LB_OK) st = lb_gguf_write_to(w, &f);
    st = lb_calib_layer_journal_end(&r.lj, &f, st); /* committed, or kept for --resume, or removed */
    if (r.progress_on) lb_progress_end(&r.progress);
    lb_gguf_writer_free(w);
    if (r.s && r.layer >= 0) drop_xtx(&r, r.layer);
    layered_free(&r);
    if (st != LB_OK) {
        lb_calib_stats_free(r.s);
        return lb_fail_context(st, "layered calibration into '%s'", path);
    }
    lb_calib_link(r.s);
    *out = r.s;
    return LB_OK;
}
