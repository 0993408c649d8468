/* Folding input-channel scales into the model exactly (AWQ, SmoothQuant).
 *
 * For the linears reading one input x, y = W x = (W diag(s)) (x / s): the
 * linears store W diag(s) and the input's producer is divided by s, so the
 * fp32 model computes the same function (up to float rounding). Per layer,
 * the four inputs and their producers:
 *   attention input  (q, k, v)   attn_norm's weight: RMSNorm is g * x / rms,
 *                                linear in g
 *   attention output (o)         v's output rows (and bias): attention mixes
 *                                v linearly over positions
 *   MLP input        (gate, up)  ffn_norm's weight
 *   MLP hidden       (down)      up's output rows (and bias):
 *                                silu(gate x) * (up x) is linear in up's output
 * Grouped-query attention: q-heads h with the same kv head h / (n_heads /
 * n_kv_heads) read the same v rows, so o's input channels (h, d) of those
 * heads must share one scale (that of v's row (kv, d)); the scale group says
 * so with a tie map and the rows average (awq) or max (smoothquant) the
 * tied statistics.
 *
 * Order (the reference AWQ's): per layer q/k/v, then o (on v already scaled
 * by the first group), then gate/up, then down (on up already scaled); each
 * group's search sees the weights folded so far. A group is scaled when a
 * linear reading its input uses a row with an input_scales hook; every
 * linear reading it is then folded (those quantized by other rows, or left
 * f32, too), and the statistics of the input become those of x / s
 * (lb_layer_stats_scaled) for every method that quantizes those linears.
 *
 * Everything is done on copies: lb_quantize_model_calibrated commits them
 * only when the whole plan succeeded. Refused (clear error): two different
 * scaling rows or options in one group; a linear with an input scale,
 * rotation, outliers or adapter in a scaled group; a tensor outside the
 * plan that folding must change and that is not f32 (it would have to be
 * re-quantized without being asked to). */
#include "pipeline/fold.h"
#include "pipeline/slots.h"

#include <math.h>
#include <string.h>

typedef struct {
    int input;
    int consumers[3], n_consumers;
    int producer_linear; /* -1: the producer is a norm */
    int norm;            /* 0 attn_norm, 1 ffn_norm */
} group_def;

static const group_def groups[LB_CALIB_N_INPUTS] = {
    {LB_CALIB_ATTN_IN, {LB_WQ, LB_WK, LB_WV}, 3, -1, 0},
    {LB_CALIB_ATTN_OUT, {LB_WO, 0, 0}, 1, LB_WV, 0},
    {LB_CALIB_FFN_IN, {LB_W1, LB_W3, 0}, 2, -1, 1},
    {LB_CALIB_FFN_HIDDEN, {LB_W2, 0, 0}, 1, LB_W3, 0},
};

/* entry[l * LB_N_LINEARS + w]: the plan entry of that linear, or -1 */
static int *plan_entries(lb_model *m, const lb_plan *p) {
    int n = m->cfg.n_layers * LB_N_LINEARS;
    int *e = lb_alloc((size_t)(n ? n : 1) * sizeof(int));
    if (!e) return NULL;
    for (int i = 0; i < n; i++) e[i] = -1;
    for (int i = 0; i < p->n_entries; i++) {
        int l, w;
        if (lb_pipeline_find_linear(m, lb_model_tensor_at(m, p->entries[i].tensor), &l, &w)) e[l * LB_N_LINEARS + w] = i;
    }
    return e;
}

void lb_fold_free(lb_fold *f) {
    int nl = f->n_layers;
    for (int i = 0; f->w && i < nl * LB_N_LINEARS; i++) lb_free(f->w[i]);
    for (int i = 0; f->norm && i < nl * 2; i++) lb_free(f->norm[i]);
    for (int i = 0; f->in_s && i < nl * LB_CALIB_N_INPUTS; i++) lb_free(f->in_s[i]);
    for (int i = 0; f->stats && i < nl * LB_CALIB_N_INPUTS; i++) lb_layer_stats_free(&f->stats[i]);
    lb_free(f->w);
    lb_free(f->norm);
    lb_free(f->in_s);
    lb_free(f->stats);
    lb_free(f->lin);
    lb_free(f->reports);
    memset(f, 0, sizeof *f);
}

/* The f32 copy of linear (l, w) that folding edits, made on first use. */
static lb_status weight_copy(lb_fold *f, lb_model *m, const int *entry, int l, int w, float **out) {
    float **slot = &f->w[l * LB_N_LINEARS + w];
    const lb_linear *L = &m->layers[l].linear[w];
    if (!*slot) {
        if (L->in_scale || L->rot.kind != LB_ROTATION_NONE || L->out_rot.kind != LB_ROTATION_NONE ||
            L->outliers.nnz || L->adapter.rank)
            return lb_fail(LB_ERR_UNSUPPORTED,
                           "cannot fold input scales into '%s': it has an input scale, rotation, outliers or "
                           "adapter",
                           L->w.name);
        if (entry[l * LB_N_LINEARS + w] < 0 && L->w.spec.family != LB_FAMILY_F32)
            return lb_fail(LB_ERR_INVALID,
                           "folding input scales changes '%s', which is quantized and not in the plan (select it "
                           "too, or start from an f32 model)",
                           L->w.name);
        size_t n = (size_t)L->w.rows * (size_t)L->w.cols;
        *slot = lb_alloc(n * sizeof(float));
        if (!*slot) return LB_ERR_NOMEM;
        lb_status st = lb_dequantize(&L->w, *slot);
        if (st != LB_OK) {
            lb_free(*slot);
            *slot = NULL;
            return st;
        }
    }
    *out = *slot;
    return LB_OK;
}

static lb_status norm_copy(lb_fold *f, lb_model *m, int l, int k, float **out) {
    float **slot = &f->norm[l * 2 + k];
    const lb_tensor *t = k ? &m->layers[l].ffn_norm : &m->layers[l].attn_norm;
    if (!*slot) {
        *slot = lb_alloc((size_t)t->cols * sizeof(float));
        if (!*slot) return LB_ERR_NOMEM;
        lb_status st = lb_dequantize(t, *slot);
        if (st != LB_OK) return st;
    }
    *out = *slot;
    return LB_OK;
}

/* The scaling row of group gd in layer l (NULL: none), refusing two. */
static lb_status scaling_row(const lb_plan *p, const lb_model *m, const int *entry, int l, const group_def *gd,
                             const lb_method_opts **out) {
    *out = NULL;
    for (int i = 0; i < gd->n_consumers; i++) {
        int e = entry[l * LB_N_LINEARS + gd->consumers[i]];
        if (e < 0 || !p->entries[e].opts.method || !p->entries[e].opts.method->input_scales ||
            lb_qspec_is_float(&p->entries[e].spec))
            continue;
        const lb_method_opts *o = &p->entries[e].opts;
        if (*out && !lb_method_opts_equal(*out, o)) {
            char a[256], b[256];
            lb_method_opts_format(*out, 0, a, sizeof a);
            lb_method_opts_format(o, 0, b, sizeof b);
            return lb_fail(LB_ERR_INVALID,
                           "layer %d: the linears reading its %s input share one input scale, but their plan gives "
                           "them different scaling methods or options (%s %s / %s %s)",
                           l, lb_calib_input_name(gd->input), (*out)->method->name, a, o->method->name, b);
        }
        *out = o;
    }
    (void)m;
    return LB_OK;
}

static lb_status fold_group(lb_fold *f, lb_model *m, const lb_plan *p, const lb_calib_stats *stats, const int *entry,
                            int l, const group_def *gd) {
    const lb_method_opts *row;
    lb_status st = scaling_row(p, m, entry, l, gd, &row);
    if (st != LB_OK || !row) return st;
    if (!stats)
        return lb_fail(LB_ERR_INVALID, "method %s needs calibration statistics, and none were collected",
                       row->method->name);
    const lb_config *c = &m->cfg;
    lb_layer *L = &m->layers[l];
    float *w[3] = {NULL, NULL, NULL}, *prod = NULL;
    for (int i = 0; i < gd->n_consumers && st == LB_OK; i++) st = weight_copy(f, m, entry, l, gd->consumers[i], &w[i]);
    if (st == LB_OK)
        st = gd->producer_linear >= 0 ? weight_copy(f, m, entry, l, gd->producer_linear, &prod)
                                      : norm_copy(f, m, l, gd->norm, &prod);
    if (st != LB_OK) return st;
    const int64_t cols = L->linear[gd->consumers[0]].w.cols;

    /* the group: the consumers the plan quantizes (others are folded, not scored) */
    const float *gw[3];
    int64_t grows[3];
    lb_qspec gspec[3];
    int n = 0;
    for (int i = 0; i < gd->n_consumers; i++) {
        int e = entry[l * LB_N_LINEARS + gd->consumers[i]];
        if (e < 0 || lb_qspec_is_float(&p->entries[e].spec)) continue;
        gw[n] = w[i];
        grows[n] = L->linear[gd->consumers[i]].w.rows;
        gspec[n] = p->entries[e].spec;
        n++;
    }
    const lb_layer_stats *ls = lb_calib_stats_get(stats, l, gd->consumers[0]);
    int kv_mul = c->n_kv_heads > 0 ? c->n_heads / c->n_kv_heads : 1;
    int *tie = NULL;
    float *s = lb_alloc((size_t)cols * sizeof(float));
    if (!s) return LB_ERR_NOMEM;
    lb_scale_group g = {n, gw, grows, gspec, cols, ls, NULL, 0};
    if (gd->input == LB_CALIB_ATTN_OUT && kv_mul > 1) {
        tie = lb_alloc((size_t)cols * sizeof(int));
        if (!tie) st = LB_ERR_NOMEM;
        for (int64_t j = 0; st == LB_OK && j < cols; j++) {
            int h = (int)(j / c->head_dim), d = (int)(j % c->head_dim);
            tie[j] = (h / kv_mul) * c->head_dim + d; /* v's output row */
        }
        g.tie = tie;
        g.n_classes = (int64_t)c->n_kv_heads * c->head_dim;
    }
    lb_method_opts o = *row;
    o.report = &f->reports[l * LB_CALIB_N_INPUTS + gd->input];
    memset(o.report, 0, sizeof *o.report);
    o.report->scale_param = NAN;
    if (st == LB_OK) st = row->method->input_scales(&g, &o, s);
    for (int64_t j = 0; st == LB_OK && j < cols; j++)
        if (!(isfinite(s[j]) && s[j] > 0.0f))
            st = lb_fail(LB_ERR_NUMERIC, "method %s gave input channel %lld the scale %g", row->method->name,
                         (long long)j, (double)s[j]);
    /* grad_sq is per weight, not per input: one scaled copy cannot serve
     * every reader, so the scaled statistics go without it (a method that
     * needs it is refused as for statistics not collected) */
    lb_layer_stats in = *ls;
    in.grad_sq = NULL;
    if (st == LB_OK) st = lb_layer_stats_scaled(&in, s, &f->stats[l * LB_CALIB_N_INPUTS + gd->input]);
    lb_free(tie);
    if (st != LB_OK) {
        lb_free(s);
        return lb_fail_context(st, "layer %d, %s input", l, lb_calib_input_name(gd->input));
    }
    /* fold: consumers' columns times s, the producer divided by s */
    for (int i = 0; i < gd->n_consumers; i++) {
        int64_t rows = L->linear[gd->consumers[i]].w.rows;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < cols; j++) w[i][r * cols + j] *= s[j];
    }
    if (gd->producer_linear < 0) {
        for (int64_t j = 0; j < cols; j++) prod[j] /= s[j];
    } else {
        const lb_tensor *pt = &L->linear[gd->producer_linear].w;
        for (int64_t r = 0; r < pt->rows; r++) {
            /* row r feeds channel r (down) or channels (h, d) of its kv head (o): the first q-head's */
            int64_t j = gd->input == LB_CALIB_ATTN_OUT ? (r / c->head_dim) * kv_mul * c->head_dim + r % c->head_dim : r;
            for (int64_t k = 0; k < pt->cols; k++) prod[r * pt->cols + k] /= s[j];
        }
    }
    f->in_s[l * LB_CALIB_N_INPUTS + gd->input] = s;
    const lb_layer_stats *sc = &f->stats[l * LB_CALIB_N_INPUTS + gd->input];
    for (int i = 0; i < gd->n_consumers; i++) {
        lb_layer_stats *v = &f->lin[l * LB_N_LINEARS + gd->consumers[i]];
        *v = *sc;
        v->rows = L->linear[gd->consumers[i]].w.rows;
    }
    f->any = 1;
    return LB_OK;
}

lb_status lb_fold_prepare(lb_model *m, const lb_plan *p, const lb_calib_stats *stats, lb_fold *f) {
    memset(f, 0, sizeof *f);
    int need = 0;
    for (int i = 0; i < p->n_entries; i++)
        if (p->entries[i].opts.method && p->entries[i].opts.method->input_scales) need = 1;
    if (!need) return LB_OK;
    int nl = m->cfg.n_layers;
    f->n_layers = nl;
    f->w = lb_calloc((size_t)nl * LB_N_LINEARS, sizeof *f->w);
    f->norm = lb_calloc((size_t)nl * 2, sizeof *f->norm);
    f->in_s = lb_calloc((size_t)nl * LB_CALIB_N_INPUTS, sizeof *f->in_s);
    f->stats = lb_calloc((size_t)nl * LB_CALIB_N_INPUTS, sizeof *f->stats);
    f->lin = lb_calloc((size_t)nl * LB_N_LINEARS, sizeof *f->lin);
    f->reports = lb_calloc((size_t)nl * LB_CALIB_N_INPUTS, sizeof *f->reports);
    int *entry = plan_entries(m, p);
    lb_status st = f->w && f->norm && f->in_s && f->stats && f->lin && f->reports && entry ? LB_OK : LB_ERR_NOMEM;
    for (int l = 0; l < nl && st == LB_OK; l++)
        for (int g = 0; g < LB_CALIB_N_INPUTS && st == LB_OK; g++) st = fold_group(f, m, p, stats, entry, l, &groups[g]);
    lb_free(entry);
    if (st != LB_OK) lb_fold_free(f);
    return st;
}

const float *lb_fold_weight(const lb_fold *f, const lb_model *m, const lb_tensor *t) {
    int l, w;
    if (!f->any || !lb_pipeline_find_linear(m, t, &l, &w)) return NULL;
    return f->w[l * LB_N_LINEARS + w];
}

const lb_layer_stats *lb_fold_stats(const lb_fold *f, const lb_model *m, const lb_tensor *t) {
    int l, w;
    if (!f->any || !lb_pipeline_find_linear(m, t, &l, &w)) return NULL;
    return f->in_s[l * LB_CALIB_N_INPUTS + lb_calib_input_of(w)] ? &f->lin[l * LB_N_LINEARS + w] : NULL;
}

/* staged[l * 9 + w] for linears, [l * 9 + 7 + k] for the norms; empty
 * (data NULL) where nothing changes. */
lb_status lb_fold_stage(lb_fold *f, lb_model *m, const lb_plan *p, int all_linears, lb_tensor **staged) {
    *staged = NULL;
    if (!f->any) return LB_OK;
    int nl = f->n_layers;
    lb_tensor *t = lb_calloc((size_t)nl * 9, sizeof *t);
    int *entry = plan_entries(m, p);
    lb_status st = t && entry ? LB_OK : LB_ERR_NOMEM;
    lb_qspec f32;
    if (st == LB_OK) st = lb_qspec_parse("f32", &f32);
    for (int l = 0; l < nl && st == LB_OK; l++) {
        lb_layer *L = &m->layers[l];
        for (int w = 0; w < LB_N_LINEARS && st == LB_OK; w++) {
            const float *v = f->w[l * LB_N_LINEARS + w];
            if (!v || (!all_linears && entry[l * LB_N_LINEARS + w] >= 0)) continue; /* the plan's output replaces it */
            if (L->linear[w].w.spec.family != LB_FAMILY_F32) {
                st = lb_fail(LB_ERR_INVALID, "folding input scales without quantizing needs f32 linears; '%s' is not",
                             L->linear[w].w.name);
                break;
            }
            st = lb_quantize_to_tensor(v, L->linear[w].w.rows, L->linear[w].w.cols, &f32, NULL, L->linear[w].w.name,
                                       &t[l * 9 + w]);
        }
        for (int k = 0; k < 2 && st == LB_OK; k++) {
            const float *v = f->norm[l * 2 + k];
            const lb_tensor *nt = k ? &L->ffn_norm : &L->attn_norm;
            if (v) st = lb_quantize_to_tensor(v, nt->rows, nt->cols, &f32, NULL, nt->name, &t[l * 9 + 7 + k]);
        }
    }
    lb_free(entry);
    if (st != LB_OK && t) {
        for (int i = 0; i < nl * 9; i++) lb_tensor_free(&t[i]);
        lb_free(t);
        return st;
    }
    *staged = t;
    return st;
}

void lb_fold_commit(lb_fold *f, lb_model *m, lb_tensor *staged) {
    if (!f->any || !staged) return;
    const lb_config *c = &m->cfg;
    int kv_mul = c->n_kv_heads > 0 ? c->n_heads / c->n_kv_heads : 1;
    for (int l = 0; l < f->n_layers; l++) {
        lb_layer *L = &m->layers[l];
        for (int i = 0; i < 9; i++) {
            lb_tensor *nt = &staged[l * 9 + i];
            if (!nt->data) continue;
            lb_tensor *dst = i < 7 ? &L->linear[i].w : i == 7 ? &L->attn_norm : &L->ffn_norm;
            lb_tensor_free(dst);
            *dst = *nt;
        }
        /* producers' biases: their output rows were divided by s */
        const float *so = f->in_s[l * LB_CALIB_N_INPUTS + LB_CALIB_ATTN_OUT];
        if (so && L->linear[LB_WV].bias)
            for (int64_t r = 0; r < L->linear[LB_WV].w.rows; r++)
                L->linear[LB_WV].bias[r] /= so[(r / c->head_dim) * kv_mul * c->head_dim + r % c->head_dim];
        const float *sh = f->in_s[l * LB_CALIB_N_INPUTS + LB_CALIB_FFN_HIDDEN];
        if (sh && L->linear[LB_W3].bias)
            for (int64_t r = 0; r < L->linear[LB_W3].w.rows; r++) L->linear[LB_W3].bias[r] /= sh[r];
    }
    lb_free(staged);
}

lb_status lb_fold_input_scales(lb_model *m, const lb_plan *plan, const lb_calib_stats *stats) {
    lb_plan p = *plan; /* resolve a shallow copy: the caller's plan stays const */
    p.entries = NULL;
    p.n_entries = 0;
    lb_status st = stats ? lb_calib_stats_check(stats, m) : LB_OK;
    if (st == LB_OK) st = lb_plan_resolve(&p, m);
    if (st == LB_OK) st = lb_plan_check(&p);
    lb_fold f;
    memset(&f, 0, sizeof f);
    if (st == LB_OK) st = lb_fold_prepare(m, &p, stats, &f);
    lb_tensor *staged = NULL;
    if (st == LB_OK) st = lb_fold_stage(&f, m, &p, 1, &staged);
    if (st == LB_OK) lb_fold_commit(&f, m, staged);
    lb_fold_free(&f);
    lb_free(p.entries);
    return st;
}
