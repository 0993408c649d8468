/* Calibration statistics: run the model over the calibration split and
 * accumulate, per distinct linear input, X^T X (double), per-channel
 * sums of x and |x|, max |x|, and a histogram (lowbit/calib.h).
 *
 * The observer is called once per linear with the input rows; q/k/v and
 * gate/up receive one pointer, so only q (LB_WQ) and gate (LB_W1) are
 * accumulated and k, v, up are checked to carry that same pointer. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "calib_internal.h"
#include "core/blas_threads.h"

#ifdef LB_HAVE_BLAS
#include <cblas.h>
#endif

int lb_calib_input_of(int which) {
    switch (which) {
    case LB_WQ: case LB_WK: case LB_WV: return LB_CALIB_ATTN_IN;
    case LB_WO: return LB_CALIB_ATTN_OUT;
    case LB_W1: case LB_W3: return LB_CALIB_FFN_IN;
    case LB_W2: return LB_CALIB_FFN_HIDDEN;
    default: return -1;
    }
}

const char *lb_calib_input_name(int input) {
    static const char *const names[] = {"attn_in", "attn_out", "ffn_in", "ffn_hidden"};
    return input >= 0 && input < LB_CALIB_N_INPUTS ? names[input] : "?";
}

void lb_calib_opts_default(lb_calib_opts *o) {
    memset(o, 0, sizeof *o);
    o->split = LB_SPLIT_CALIB;
}

static int input_cols(const lb_calib_info *info, int input) {
    return input == LB_CALIB_FFN_HIDDEN ? info->hidden_dim : info->dim;
}

void lb_calib_stats_free(lb_calib_stats *s) {
    if (!s) return;
    if (s->in) {
        for (int i = 0; i < s->info.n_layers * LB_CALIB_N_INPUTS; i++) {
            calib_input *c = &s->in[i];
            if (!(s->mapped_parts & LB_STATS_XTX)) lb_free(c->xtx); /* else the file's, unmapped below */
            lb_free(c->mean_abs_x);
            lb_free(c->max_abs_x);
            lb_free(c->mean_x);
            lb_free(c->hist);
            lb_free(c->dxtx);
        }
    }
    if (s->grad_sq && !(s->mapped_parts & LB_STATS_GRAD_SQ))
        for (int i = 0; i < s->info.n_layers * LB_N_LINEARS; i++) lb_free(s->grad_sq[i]);
    lb_free(s->grad_sq);
    lb_free(s->in);
    lb_free(s->ls);
    lb_free(s->span);
    lb_unmap_file(&s->map);
    lb_free(s);
}

void lb_calib_linear_shape(const lb_calib_stats *s, int which, int *rows, int *cols) {
    *rows = which == LB_WK || which == LB_WV ? s->kv_dim : which == LB_W1 || which == LB_W3 ? s->info.hidden_dim
                                                                                          : s->info.dim;
    *cols = which == LB_W2 ? s->info.hidden_dim : s->info.dim;
}

lb_status lb_calib_alloc_grad_sq(lb_calib_stats *s) {
    if (s->grad_sq) return LB_OK;
    int n = s->info.n_layers * LB_N_LINEARS;
    if (!(s->grad_sq = lb_calloc((size_t)n, sizeof *s->grad_sq))) return LB_ERR_NOMEM;
    for (int i = 0; i < n; i++) {
        int rows, cols;
        lb_calib_linear_shape(s, i % LB_N_LINEARS, &rows, &cols);
        if (!(s->grad_sq[i] = lb_calloc((size_t)rows * cols, sizeof(float))))
            return lb_fail(LB_ERR_NOMEM, "calibration: out of memory for the squared gradients");
    }
    s->info.parts |= LB_STATS_GRAD_SQ;
    return LB_OK;
}

lb_status lb_calib_alloc(const lb_calib_info *info, int kv_dim, lb_calib_stats **out) {
    *out = NULL;
    if (info->n_layers <= 0 || info->dim <= 0 || info->hidden_dim <= 0 || kv_dim <= 0 || info->n_layers > 4096 ||
        info->dim > (1 << 20) || info->hidden_dim > (1 << 20))
        return lb_fail(LB_ERR_INVALID, "calibration: bad model shape");
    lb_calib_stats *s = lb_calloc(1, sizeof *s);
    if (!s) return LB_ERR_NOMEM;
    s->info = *info;
    s->kv_dim = kv_dim;
    s->in = lb_calloc((size_t)info->n_layers * LB_CALIB_N_INPUTS, sizeof *s->in);
    s->ls = lb_calloc((size_t)info->n_layers * LB_N_LINEARS, sizeof *s->ls);
    if (!s->in || !s->ls) goto nomem;
    for (int i = 0; i < info->n_layers * LB_CALIB_N_INPUTS; i++) {
        calib_input *c = &s->in[i];
        size_t cols = (size_t)input_cols(info, i % LB_CALIB_N_INPUTS);
        c->cols = (int)cols;
        if ((info->parts & LB_STATS_XTX) && !(c->xtx = lb_calloc(cols * cols, sizeof(double)))) goto nomem;
        if ((info->parts & LB_STATS_DXTX) && !(c->dxtx = lb_calloc(cols * cols, sizeof(double)))) goto nomem;
        if ((info->parts & LB_STATS_MEAN_ABS_X) && !(c->mean_abs_x = lb_calloc(cols, sizeof(float)))) goto nomem;
        if ((info->parts & LB_STATS_MAX_ABS_X) && !(c->max_abs_x = lb_calloc(cols, sizeof(float)))) goto nomem;
        if ((info->parts & LB_STATS_MEAN_X) && !(c->mean_x = lb_calloc(cols, sizeof(float)))) goto nomem;
        if ((info->parts & LB_STATS_HIST_X) && !(c->hist = lb_calloc((size_t)info->hist_bins, sizeof(int64_t))))
            goto nomem;
    }
    *out = s;
    return LB_OK;
nomem:
    lb_calib_stats_free(s);
    return lb_fail(LB_ERR_NOMEM, "calibration statistics: out of memory (%d layers, dim %d, hidden %d)",
                   info->n_layers, info->dim, info->hidden_dim);
}

void lb_calib_link(lb_calib_stats *s) {
    for (int l = 0; l < s->info.n_layers; l++) {
        for (int w = 0; w < LB_N_LINEARS; w++) {
            const calib_input *c = &s->in[l * LB_CALIB_N_INPUTS + lb_calib_input_of(w)];
            lb_layer_stats *t = &s->ls[l * LB_N_LINEARS + w];
            int rows = w == LB_WK || w == LB_WV ? s->kv_dim
                       : w == LB_W1 || w == LB_W3 ? s->info.hidden_dim : s->info.dim;
            *t = (lb_layer_stats){.n_samples = c->n, .rows = rows, .cols = c->cols, .xtx = c->xtx,
                                  .mean_abs_x = c->mean_abs_x, .max_abs_x = c->max_abs_x, .mean_x = c->mean_x,
                                  .hist = c->hist, .hist_bins = c->hist ? s->info.hist_bins : 0,
                                  .hist_range = c->hist ? c->hist_range : 0, .dxtx = c->dxtx,
                                  .grad_sq = s->grad_sq ? s->grad_sq[l * LB_N_LINEARS + w] : NULL};
        }
    }
}

const lb_layer_stats *lb_calib_stats_get(const lb_calib_stats *s, int layer, int which) {
    if (!s || layer < 0 || layer >= s->info.n_layers || which < 0 || which >= LB_N_LINEARS) return NULL;
    return &s->ls[layer * LB_N_LINEARS + which];
}

const lb_layer_stats *lb_calib_stats_for_tensor(const lb_calib_stats *s, const lb_model *m, const lb_tensor *t) {
    if (!s || !m || !t) return NULL;
    int layers = m->cfg.n_layers < s->info.n_layers ? m->cfg.n_layers : s->info.n_layers;
    for (int l = 0; l < layers; l++)
        for (int w = 0; w < LB_N_LINEARS; w++)
            if (&m->layers[l].linear[w].w == t) return lb_calib_stats_get(s, l, w);
    return NULL;
}

void lb_calib_stats_info(const lb_calib_stats *s, lb_calib_info *out) { *out = s->info; }

lb_status lb_calib_stats_check(const lb_calib_stats *s, const lb_model *m) {
    const lb_calib_info *i = &s->info;
    const lb_config *c = &m->cfg;
    int kv_dim = c->n_kv_heads * c->head_dim;
    if (i->dim != c->dim || i->hidden_dim != c->hidden_dim || i->n_layers != c->n_layers ||
        i->vocab_size != c->vocab_size || s->kv_dim != kv_dim)
        return lb_fail(LB_ERR_INVALID,
                       "calibration statistics are for another model: they were collected on dim %d, hidden %d, "
                       "%d layers, vocab %d, kv_dim %d; this model has dim %d, hidden %d, %d layers, vocab %d, "
                       "kv_dim %d",
                       i->dim, i->hidden_dim, i->n_layers, i->vocab_size, s->kv_dim, c->dim, c->hidden_dim,
                       c->n_layers, c->vocab_size, kv_dim);
    return LB_OK;
}

/* ---- collection ------------------------------------------------------------ */

/* x's bin index over [-R, R) in hist_bins bins: both sides are exact
 * power-of-two scalings, so doubling R and merging bin pairs gives the same
 * bins as binning at the doubled range from the start. */
static int hist_bin(float x, double range, int bins) {
    double t = (double)x * ((double)(bins / 2) / range) + (double)(bins / 2);
    int i = (int)floor(t);
    return i < 0 ? 0 : i >= bins ? bins - 1 : i;
}

static void hist_add(calib_input *c, const float *x, size_t count, int bins, int64_t *scratch) {
    float m = 0;
    for (size_t i = 0; i < count; i++) m = fmaxf(m, fabsf(x[i]));
    if (m > 0 && c->hist_range == 0) { /* first nonzero x: the power of two above it (zeros sit at bins/2) */
        int e;
        frexp((double)m, &e);
        c->hist_range = ldexp(1.0, e);
    }
    while (m >= c->hist_range && m > 0) { /* double the range: bin i -> bins/4 + i/2 */
        memset(scratch, 0, (size_t)bins * sizeof *scratch);
        for (int i = 0; i < bins; i++) scratch[bins / 4 + i / 2] += c->hist[i];
        memcpy(c->hist, scratch, (size_t)bins * sizeof *scratch);
        c->hist_range *= 2;
    }
    if (c->hist_range == 0) { /* every x so far is zero */
        c->hist[bins / 2] += (int64_t)count;
        return;
    }
    for (size_t i = 0; i < count; i++) c->hist[hist_bin(x[i], c->hist_range, bins)]++;
}

lb_status lb_calib_observe(void *user, int layer, int which, const float *x, int n, int cols) {
    lb_calib_collector *k = user;
    int input = lb_calib_input_of(which);
    /* sequential calibration observes one input at a time: the rest pass by */
    if ((k->sel_layer >= 0 && layer != k->sel_layer) || (k->sel_input >= 0 && input != k->sel_input)) return LB_OK;
    if (which == LB_WK || which == LB_WV || which == LB_W3) {
        if (x != k->shared[which == LB_W3]) /* the forward pass promises one pointer */
            return lb_fail(LB_ERR_INVALID, "calibration: layer %d %s does not share its input", layer,
                           lb_linear_name(which));
        return LB_OK;
    }
    if (which == LB_WQ || which == LB_W1) k->shared[which == LB_W1] = x;
    size_t idx = (size_t)layer * LB_CALIB_N_INPUTS + (size_t)input;
    calib_input *c = &k->c[idx];
    if (cols != c->cols) return lb_fail(LB_ERR_INVALID, "calibration: layer %d %s has %d input columns, not %d",
                                        layer, lb_linear_name(which), cols, c->cols);
    size_t count = (size_t)n * (size_t)cols;
    for (size_t i = 0; i < count; i++) {
        if (!isfinite(x[i]))
            return lb_fail(LB_ERR_NUMERIC, "calibration: non-finite activation %g at the input of layer %d %s "
                           "(block %d, position %zu, channel %zu): the model overflows",
                           (double)x[i], layer, lb_linear_name(which), k->block + 1, i / (size_t)cols,
                           i % (size_t)cols);
    }
    double *sum = k->sum + k->offset[idx], *sum_abs = k->sum_abs + k->offset[idx];
    for (int r = 0; r < n; r++) {
        const float *row = x + (size_t)r * (size_t)cols;
        for (int j = 0; j < cols; j++) {
            sum[j] += row[j];
            sum_abs[j] += fabs((double)row[j]);
            if (c->max_abs_x && fabsf(row[j]) > c->max_abs_x[j]) c->max_abs_x[j] = fabsf(row[j]);
        }
    }
    if (c->xtx || c->dxtx)
        for (size_t i = 0; i < count; i++) k->rows[i] = x[i];
    if (c->dxtx) { /* GPTAQ's cross term: (x_fp - x)^T x, the same single-threaded BLAS order */
        if (!k->fp_rows)
            return lb_fail(LB_ERR_INVALID, "calibration: (x_fp - x) x^T needs the fp32 model's inputs (sequential only)");
        for (size_t i = 0; i < count; i++) k->drows[i] = (double)k->fp_rows[i] - (double)x[i];
#ifdef LB_HAVE_BLAS
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cols, cols, n, 1.0, k->drows, cols, k->rows, cols, 1.0,
                    c->dxtx, cols);
#else
        for (int r = 0; r < n; r++) {
            const double *d = k->drows + (size_t)r * (size_t)cols, *row = k->rows + (size_t)r * (size_t)cols;
            for (int i = 0; i < cols; i++)
                for (int j = 0; j < cols; j++) c->dxtx[(size_t)i * cols + j] += d[i] * row[j];
        }
#endif
    }
    if (c->xtx) {
#ifdef LB_HAVE_BLAS
        /* one OpenBLAS thread (set by lb_calibrate): the sums' order is fixed */
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, cols, n, 1.0, k->rows, cols, 1.0, c->xtx, cols);
#else
        for (int r = 0; r < n; r++) { /* scalar reference: upper triangle, row by row */
            const double *row = k->rows + (size_t)r * (size_t)cols;
            for (int i = 0; i < cols; i++)
                for (int j = i; j < cols; j++) c->xtx[(size_t)i * cols + j] += row[i] * row[j];
        }
#endif
    }
    if (c->hist) hist_add(c, x, count, k->hist_bins, k->hist_tmp);
    c->n += n;
    return LB_OK;
}

void lb_calib_finish_input(lb_calib_stats *s, lb_calib_collector *k, int i) {
    calib_input *c = &s->in[i];
    const double *sum = k->acc_sum + k->offset[i], *sum_abs = k->acc_sum_abs + k->offset[i];
    size_t cols = (size_t)c->cols;
    if (c->xtx && k->acc_xtx[i]) { /* the folded total becomes the statistic; the last partial (zeros) goes */
        double *t = c->xtx;
        c->xtx = k->acc_xtx[i];
        k->acc_xtx[i] = NULL;
        lb_free(t);
    }
    for (size_t j = 0; j < cols; j++) {
        if (c->mean_x) c->mean_x[j] = c->n ? (float)(sum[j] / (double)c->n) : 0;
        if (c->mean_abs_x) c->mean_abs_x[j] = c->n ? (float)(sum_abs[j] / (double)c->n) : 0;
    }
    if (c->xtx) /* mirror the upper triangle */
        for (size_t a = 0; a < cols; a++)
            for (size_t b = 0; b < a; b++) c->xtx[a * cols + b] = c->xtx[b * cols + a];
}

static void finish(lb_calib_stats *s, lb_calib_collector *k) {
    for (int i = 0; i < s->info.n_layers * LB_CALIB_N_INPUTS; i++) lb_calib_finish_input(s, k, i);
    lb_calib_link(s);
}

/* With a token budget the sequences run depend on every earlier block's
 * length: every rank tokenizes the split up to the budget to find the last
 * block run, [first, *last), and that block's cut length *last_n. */
static lb_status budget_cut(const lb_model *m, const lb_calib_opts *o, const lb_text *t, int first, int end, int ctx,
                            const char *source, int *last, int *last_n) {
    int64_t done = 0;
    *last = first;
    *last_n = 0;
    for (int b = first; b < end && done < o->tokens; b++) {
        size_t nt;
        int *tok = NULL;
        lb_status st = lb_tokenize(m->tokenizer, t->blocks[b].text, t->blocks[b].len, 1, 0, &tok, &nt);
        lb_free(tok);
        if (st != LB_OK) return lb_fail_context(st, "calibration block %d", b + 1);
        int n = nt > (size_t)ctx ? ctx : (int)nt;
        if ((int64_t)n > o->tokens - done) n = (int)(o->tokens - done);
        done += n;
        *last = b + 1;
        *last_n = n;
    }
    if (done == 0) return lb_fail(LB_ERR_INVALID, "calibration: the text gave no tokens");
    if (done < o->tokens)
        return lb_fail(LB_ERR_INVALID, "calibration: asked for %lld tokens, but %s has only %lld",
                       (long long)o->tokens, source, (long long)done);
    return LB_OK;
}

/* What run_blocks needs besides the blocks: the run's last block (cut at
 * last_n tokens when last_n > 0) and the journal's (one process). */
typedef struct {
    const lb_model *m;
    const lb_calib_opts *o;
    const lb_calib_prep *prep;
    lb_state *state;
    lb_calib_stats *s;
    lb_calib_collector *k;
    lb_calib_rank_time *me;
    lb_progress *p;
    int last, last_n;
    double last_save;
} run_ctx;

/* Runs blocks [b0, b1) with the collector observing; after each block but
 * the shard's last, the journal's snapshot when due (the shard's last is
 * journaled once the shard is folded: run) */
static lb_status run_blocks(run_ctx *r, int b0, int b1) {
    const lb_text *t = r->prep->text;
    int ctx = r->prep->ctx;
    for (int b = b0; b < b1; b++) {
        size_t nt;
        int *tok = NULL;
        lb_status st = lb_tokenize(r->m->tokenizer, t->blocks[b].text, t->blocks[b].len, 1, 0, &tok, &nt);
        if (st != LB_OK) return lb_fail_context(st, "calibration block %d", b + 1);
        int n = nt > (size_t)ctx ? ctx : (int)nt;
        if (b == r->last - 1 && r->last_n > 0 && n > r->last_n) n = r->last_n;
        r->k->block = b;
        st = lb_forward(r->m, r->state, tok, n, 0, NULL);
        lb_free(tok);
        if (st != LB_OK) return st;
        r->me->tokens += n;
        r->me->blocks++;
        lb_progress_update(r->p, (uint64_t)r->me->blocks);
        r->s->info.sequences = r->me->blocks;
        if (b + 1 < b1 &&
            (st = lb_calib_journal_block(r->o->journal, r->prep, r->s, r->k, b + 1, r->me->tokens, &r->last_save)) !=
                LB_OK)
            return st;
    }
    return LB_OK;
}

/* The split's sequences in shards (calib_shard.c), shard q * size + rank in
 * round q, each round's partials folded on rank 0 in shard order; then the
 * order-free parts. A resumed run (one process: lb_calib_journal) goes on
 * from block `from`: the shards before it are in the restored totals, the
 * current shard's partials restored with them, me's counts are the
 * snapshot's. */
static lb_status run(const lb_model *m, const lb_calib_opts *o, const lb_calib_prep *prep, int from,
                     lb_calib_stats *s, lb_calib_collector *k, const lb_comm *comm, lb_calib_rank_time *me) {
    const lb_text *t = prep->text;
    int first = prep->first, end = prep->end, ctx = prep->ctx;
    int rank = comm->rank, size = comm->size, last = end, last_n = 0;
    lb_status st = o->tokens ? budget_cut(m, o, t, first, end, ctx, s->info.source, &last, &last_n) : LB_OK;
    if (st != LB_OK) return st;
    int n_seq = last - first, per = lb_calib_shard_size(n_seq), n_shards = (n_seq + per - 1) / per;
    lb_state *state = NULL;
    if ((st = lb_state_create(m, ctx, &state)) != LB_OK) return st;
    lb_state_set_observer(state, lb_calib_observe, k);
    lb_progress p;
    lb_progress_begin(&p, "calibrate", size == 1 ? (uint64_t)n_seq : (uint64_t)((n_shards / size + 1) * per));
    lb_progress_update(&p, (uint64_t)me->blocks);
    run_ctx r = {.m = m, .o = o, .prep = prep, .state = state, .s = s, .k = k, .me = me, .p = &p,
                 .last = last, .last_n = last_n, .last_save = lb_now()};
    me->shards = 0;
    for (int q = 0; q * size < n_shards && st == LB_OK; q++) {
        int shard = q * size + rank, b0 = first + shard * per, b1 = b0 + per < last ? b0 + per : last;
        if (size == 1 && b1 <= from) continue; /* resumed: folded before the snapshot */
        double t0 = lb_now();
        if (shard < n_shards) {
            st = run_blocks(&r, b0 > from ? b0 : from, b1);
            me->shards++;
        }
        double t1 = lb_now();
        me->work_seconds += t1 - t0;
        int senders = n_shards - q * size < size ? n_shards - q * size : size;
        if (st == LB_OK) st = lb_calib_fold_round(k, comm, senders);
        me->reduce_seconds += lb_now() - t1;
        /* the shard's last block, its partials folded: the snapshot holds no partials */
        if (st == LB_OK && shard < n_shards)
            st = lb_calib_journal_block(o->journal, prep, s, k, b1, me->tokens, &r.last_save);
    }
    lb_progress_end(&p);
    lb_state_free(state);
    double t1 = lb_now();
    int64_t counts[2] = {me->tokens, me->blocks};
    if (st == LB_OK) st = lb_calib_reduce_free_parts(s, k, comm);
    if (st == LB_OK) st = lb_comm_sum_i64(comm, counts, 2, 1);
    me->reduce_seconds += lb_now() - t1;
    if (st != LB_OK) return st;
    s->info.tokens = counts[0];
    s->info.sequences = counts[1];
    if (counts[0] == 0) return lb_fail(LB_ERR_INVALID, "calibration: the text gave no tokens");
    return LB_OK;
}

lb_status lb_calib_prepare(const lb_model *m, const lb_calib_opts *o, unsigned allowed, lb_calib_prep *p) {
    memset(p, 0, sizeof *p);
    if (!m->tokenizer) return lb_fail(LB_ERR_INVALID, "calibration needs the model's tokenizer");
    if (o->split == LB_SPLIT_EVAL)
        return lb_fail(LB_ERR_INVALID, "calibration never reads the evaluation split (use calib or all)");
    if (o->blocks < 0 || o->tokens < 0 || o->ctx < 0 || o->calib_blocks < 0)
        return lb_fail(LB_ERR_INVALID, "calibration: blocks, tokens, ctx and calib_blocks must be >= 0");
    int ctx = o->ctx ? o->ctx : m->cfg.seq_len;
    if (ctx < 1 || ctx > m->cfg.seq_len)
        return lb_fail(LB_ERR_INVALID, "calibration: ctx %d outside 1..%d (the model's context)", ctx, m->cfg.seq_len);
    /* 8192: the static activation ranges (act_range.c) want TensorRT's 2048
     * bins over [0, max |x|]; R is the power of two above max |x|, so
     * [0, max |x|] gets between a quarter and a half of the bins */
    int bins = o->hist_bins ? o->hist_bins : 8192;
    if (bins < 4 || bins > 65536 || bins % 4)
        return lb_fail(LB_ERR_INVALID, "calibration: histogram bins must be a multiple of 4 in 4..65536, not %d",
                       bins);
    unsigned parts = o->parts ? o->parts : LB_CALIB_ALL_PARTS;
    if (parts & LB_STATS_DXTX & ~allowed)
        return lb_fail(LB_ERR_UNSUPPORTED, "(x_fp - x) x^T needs the fp32 and the partly quantized model's inputs: "
                       "only sequential calibration collects it");
    if (parts & ~allowed)
        return lb_fail(LB_ERR_UNSUPPORTED, "calibration collects x^T x, mean |x|, max |x|, mean x and the "
                       "histogram; not gradients");
    p->text = o->text;
    if (!p->text) {
        if (!o->text_path) return lb_fail(LB_ERR_INVALID, "calibration: no text given");
        lb_status st = lb_text_load(o->text_path, &p->own);
        if (st != LB_OK) return st;
        p->text = &p->own;
        p->owns_text = 1;
    }
    int calib_blocks = o->calib_blocks ? o->calib_blocks : 128;
    lb_status st = lb_text_split(p->text, o->split, calib_blocks, &p->first, &p->end);
    if (st == LB_OK && o->blocks) {
        if (o->blocks > p->end - p->first)
            st = lb_fail(LB_ERR_INVALID, "calibration: asked for %d blocks, but the %s split of '%s' has only %d",
                         o->blocks, lb_split_name(o->split), p->text->path, p->end - p->first);
        else
            p->end = p->first + o->blocks;
    }
    if (st != LB_OK) {
        lb_calib_prep_free(p);
        return st;
    }
    p->ctx = ctx;
    p->info = (lb_calib_info){.dim = m->cfg.dim, .hidden_dim = m->cfg.hidden_dim, .n_layers = m->cfg.n_layers,
                              .vocab_size = m->cfg.vocab_size, .parts = parts, .hist_bins = bins};
    snprintf(p->info.source, sizeof p->info.source, "%.400s, %s split blocks %d..%d, ctx %d", p->text->path,
             lb_split_name(o->split), p->first + 1, p->end, ctx);
    return LB_OK;
}

void lb_calib_prep_free(lb_calib_prep *p) {
    if (p->owns_text) lb_text_free(&p->own);
    p->owns_text = 0;
    p->text = NULL;
}

lb_status lb_calib_collector_init(lb_calib_collector *k, const lb_model *m, lb_calib_stats *s, int ctx) {
    memset(k, 0, sizeof *k);
    k->n_layers = m->cfg.n_layers;
    k->hist_bins = s->info.hist_bins;
    k->parts = s->info.parts;
    k->sel_layer = k->sel_input = -1;
    size_t n_in = (size_t)m->cfg.n_layers * LB_CALIB_N_INPUTS, total = 0;
    k->c = s->in;
    k->offset = lb_calloc(n_in, sizeof *k->offset);
    for (size_t i = 0; k->offset && i < n_in; i++) {
        k->offset[i] = total;
        total += (size_t)s->in[i].cols;
    }
    int wide = m->cfg.hidden_dim > m->cfg.dim ? m->cfg.hidden_dim : m->cfg.dim;
    k->sum = lb_calloc(total, sizeof(double));
    k->sum_abs = lb_calloc(total, sizeof(double));
    int need_rows = (k->parts & (LB_STATS_XTX | LB_STATS_DXTX)) != 0;
    k->rows = need_rows ? lb_alloc((size_t)ctx * (size_t)wide * sizeof(double)) : NULL;
    k->drows = (k->parts & LB_STATS_DXTX) ? lb_alloc((size_t)ctx * (size_t)wide * sizeof(double)) : NULL;
    k->hist_tmp = lb_alloc((size_t)k->hist_bins * sizeof(int64_t));
    k->acc_xtx = lb_calloc(n_in, sizeof *k->acc_xtx);
    k->acc_sum = lb_calloc(total, sizeof(double));
    k->acc_sum_abs = lb_calloc(total, sizeof(double));
    if (!k->offset || !k->sum || !k->sum_abs || !k->hist_tmp || (need_rows && !k->rows) || !k->acc_xtx ||
        !k->acc_sum || !k->acc_sum_abs ||
        ((k->parts & LB_STATS_DXTX) && !k->drows)) {
        lb_calib_collector_free(k);
        return lb_fail(LB_ERR_NOMEM, "calibration: out of memory for the accumulators");
    }
    return LB_OK;
}

void lb_calib_collector_free(lb_calib_collector *k) {
    lb_free(k->offset);
    lb_free(k->sum);
    lb_free(k->sum_abs);
    lb_free(k->rows);
    lb_free(k->drows);
    lb_free(k->hist_tmp);
    if (k->acc_xtx)
        for (int i = 0; i < k->n_layers * LB_CALIB_N_INPUTS; i++) lb_free(k->acc_xtx[i]);
    lb_free(k->acc_xtx);
    lb_free(k->acc_sum);
    lb_free(k->acc_sum_abs);
    memset(k, 0, sizeof *k);
}

lb_status lb_calibrate(const lb_model *m, const lb_calib_opts *o, lb_calib_stats **out) {
    return lb_calibrate_dist(m, o, NULL, out, NULL);
}

lb_status lb_calibrate_dist(const lb_model *m, const lb_calib_opts *o, const lb_comm *comm, lb_calib_stats **out,
                            lb_calib_rank_time *times) {
    *out = NULL;
    if (!comm) comm = lb_comm_self();
    lb_calib_rank_time me = {.rank = comm->rank};
    double t_start = lb_now();
    lb_calib_opts def;
    if (!o) {
        lb_calib_opts_default(&def);
        o = &def;
    }
    lb_calib_prep p;
    lb_status st = lb_calib_prepare(m, o, LB_CALIB_ALL_PARTS, &p);
    if (st != LB_OK) return st;
    lb_calib_stats *s = NULL;
    lb_calib_collector k;
    memset(&k, 0, sizeof k);
    st = lb_calib_alloc(&p.info, m->cfg.n_kv_heads * m->cfg.head_dim, &s);
    if (st == LB_OK) st = lb_calib_collector_init(&k, m, s, p.ctx);
    /* OpenBLAS may thread internally; one thread keeps dsyrk's summation
     * order, hence the bytes, independent of the thread count. Set once:
     * changing it per call is slow (OpenBLAS resizes its pool). */
    int blas_threads = lb_blas_threads_single();
    int from = p.first;
    int64_t done = 0;
    /* a journal is one process's: the ranks' partials are never in one place between folds */
    if (st == LB_OK && o->journal && comm->size > 1)
        st = lb_fail(LB_ERR_INVALID, "calibration: a journaled (resumable) run is for one process, not %d ranks",
                     comm->size);
    if (st == LB_OK) st = lb_calib_journal_begin(o->journal, &p, s, &k, &from, &done);
    me.tokens = done; /* a resumed run's: the snapshot's counts */
    me.blocks = (int)s->info.sequences;
    if (st == LB_OK) st = run(m, o, &p, from, s, &k, comm, &me);
    lb_blas_threads_restore(blas_threads);
    me.seconds = lb_now() - t_start;
    /* collective whatever each rank passed as times */
    lb_calib_rank_time *all = comm->rank == 0 ? (times ? times : lb_calloc((size_t)comm->size, sizeof *all)) : NULL;
    if (st == LB_OK && comm->rank == 0 && !all) st = LB_ERR_NOMEM;
    if (st == LB_OK) st = lb_comm_gather(comm, &me, sizeof me, all);
    if (all != times) lb_free(all);
    if (st == LB_OK && comm->rank == 0) finish(s, &k);
    lb_calib_collector_free(&k);
    lb_calib_prep_free(&p);
    if (st != LB_OK || comm->rank != 0) { /* the statistics are rank 0's */
        lb_calib_stats_free(s);
        return st;
    }
    *out = s;
    return LB_OK;
}
