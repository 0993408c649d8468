/* The whole-model driver: every tensor a plan selects, quantized by its
 * method into a new tensor, and the model changed only when all of them
 * succeeded (a failure names its tensor and leaves the model as it was).
 * Each tensor's record (lb_tensor_report) measures the result: relative
 * weight error and, when its input's X^T X is at hand, the proxy loss
 * tr(dW H dW^T) / n of the method and of round-to-nearest on the same H.
 * Methods with an input-scaling hook (awq, smoothquant) first get their
 * scales searched and folded into copies of the weights, norms and
 * statistics (fold.c); the methods then quantize the folded copies. */
#include <math.h>
#include <string.h>

#include "core/mapped.h"
#include "pipeline_internal.h"
#include "pipeline/fold.h"
#include "pipeline/slots.h"

unsigned lb_plan_stats_needed(const lb_plan *p) {
    unsigned need = 0;
    for (int i = 0; i < p->n_entries; i++)
        if (p->entries[i].opts.method) need |= lb_method_opts_stats(&p->entries[i].opts);
    if (p->act.kind == LB_AQ_TENSOR) need |= LB_STATS_HIST_X | LB_STATS_MAX_ABS_X;
    return need;
}

/* The activation quantizer of every linear (acts[l * LB_N_LINEARS + i]),
 * static clips from the statistics of each linear's input. Computed before
 * any weight changes (the statistics are the fp32 model's), so a failure
 * here leaves the model as it was. */
static lb_status plan_acts(const lb_model *m, const lb_act_quant *act, const lb_calib_stats *stats, lb_act_quant *acts) {
    lb_status st = lb_act_check(act, 0);
    if (st != LB_OK) return lb_fail_context(st, "activation quantizer");
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int i = 0; i < LB_N_LINEARS; i++) {
            const lb_linear *L = &m->layers[l].linear[i];
            lb_act_quant *a = &acts[l * LB_N_LINEARS + i];
            *a = *act;
            if (act->kind != LB_AQ_TENSOR) continue;
            if (L->in_scale || L->rot.kind != LB_ROTATION_NONE)
                return lb_fail(LB_ERR_UNSUPPORTED,
                               "linear '%s' has an input scale or rotation: a static activation range would need "
                               "statistics of the transformed input, which calibration does not collect yet (use a "
                               "dynamic per-token quantizer, int8:token)",
                               L->w.name);
            const lb_layer_stats *ls = stats ? lb_calib_stats_get(stats, l, i) : NULL;
            if (!ls) return lb_fail(LB_ERR_INVALID, "linear '%s': a static activation range needs calibration statistics", L->w.name);
            /* linears reading one input (q, k, v; gate, up) share its histogram: one search */
            int same = -1;
            for (int k = 0; k < i && same < 0; k++)
                if (lb_calib_stats_get(stats, l, k)->hist == ls->hist) same = k;
            if (same >= 0) a->clip = acts[l * LB_N_LINEARS + same].clip;
            else if ((st = lb_act_range(ls, act, &a->clip)) != LB_OK) return lb_fail_context(st, "linear '%s'", L->w.name);
        }
    return LB_OK;
}

lb_status lb_pipeline_plan_acts(const lb_model *m, const lb_act_quant *act, const lb_calib_stats *stats,
                                lb_act_quant **acts) {
    *acts = NULL;
    if (act->kind == LB_AQ_NONE) return LB_OK;
    if (!(*acts = lb_calloc((size_t)m->cfg.n_layers * LB_N_LINEARS, sizeof **acts))) return LB_ERR_NOMEM;
    lb_status st = plan_acts(m, act, stats, *acts);
    if (st != LB_OK) {
        lb_free(*acts);
        *acts = NULL;
    }
    return st;
}

void lb_pipeline_set_acts(lb_model *m, const lb_act_quant *act, const lb_act_quant *acts) {
    if (!acts) return;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int i = 0; i < LB_N_LINEARS; i++) /* checked by plan_acts: setting cannot fail */
            (void)lb_linear_set_act(&m->layers[l].linear[i], &acts[l * LB_N_LINEARS + i]);
    char spec[64];
    size_t used = strlen(m->quant_note);
    lb_act_spec_format(act, spec, sizeof spec);
    if (used + strlen(spec) + 6 < sizeof m->quant_note)
        snprintf(m->quant_note + used, sizeof m->quant_note - used, "; act=%s", spec);
}

lb_status lb_quantize_model(lb_model *m, const lb_plan *plan, lb_quantize_report *report) {
    return lb_quantize_model_calibrated(m, plan, NULL, report);
}

lb_status lb_pipeline_resolve(const lb_plan *plan, lb_model *m, lb_plan *p) {
    *p = *plan;
    p->entries = NULL;
    p->n_entries = 0;
    lb_status st = lb_plan_resolve(p, m);
    if (st == LB_OK) st = lb_plan_check(p);
    if (st != LB_OK) {
        lb_free(p->entries);
        p->entries = NULL;
    }
    return st;
}

/* sum over rows of d^T H d / n, d = w - q: rows in parallel, each row's sum
 * in order and the rows added in order, so the value does not depend on the
 * thread count. */
static double proxy_loss(const float *w, const float *q, int64_t rows, int64_t cols, const lb_layer_stats *ls,
                         double *row_loss) {
    const double *H = ls->xtx;
#pragma omp parallel for schedule(static) if (rows * cols * cols > (1 << 20))
    for (int64_t r = 0; r < rows; r++) {
        const float *wr = w + r * cols, *qr = q + r * cols;
        double acc = 0;
        for (int64_t i = 0; i < cols; i++) {
            double di = (double)wr[i] - (double)qr[i];
            if (di == 0) continue;
            const double *Hi = H + i * cols;
            double t = 0;
            for (int64_t j = 0; j < cols; j++) t += Hi[j] * ((double)wr[j] - (double)qr[j]);
            acc += di * t;
        }
        row_loss[r] = acc;
    }
    double total = 0;
    for (int64_t r = 0; r < rows; r++) total += row_loss[r];
    return ls->n_samples > 0 ? total / (double)ls->n_samples : NAN;
}

/* The measures of q (a tensor of w's shape) against w: relative error, and
 * the proxy loss when ls has X^T X. scratch: rows x cols floats. */
static lb_status measure(const float *w, const lb_tensor *q, const lb_quant_extras *x, const lb_layer_stats *ls,
                         float *scratch, double *row_loss, double *rel, double *proxy) {
    lb_status st = lb_dequantize(q, scratch);
    if (st != LB_OK) return st;
    for (int64_t r = 0; x && x->nnz && r < q->rows; r++) /* the sparse part is part of the weight */
        for (int32_t k = x->row_ptr[r]; k < x->row_ptr[r + 1]; k++) scratch[r * q->cols + x->col_idx[k]] += x->values[k];
    for (int64_t r = 0; x && x->adapter_rank && r < q->rows; r++) /* so is the adapter, alpha B A */
        for (int64_t c = 0; c < q->cols; c++) {
            double s = 0;
            for (int k = 0; k < x->adapter_rank; k++)
                s += (double)x->adapter_b[r * x->adapter_rank + k] * x->adapter_a[(int64_t)k * q->cols + c];
            scratch[r * q->cols + c] += x->adapter_alpha * (float)s;
        }
    if ((st = lb_pipeline_unrotate_weight(x, scratch, q->rows, q->cols)) != LB_OK) return st; /* w's basis */
    size_t n = (size_t)q->rows * (size_t)q->cols;
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)w[i] - (double)scratch[i];
        num += d * d;
        den += (double)w[i] * (double)w[i];
    }
    if (rel) *rel = den > 0 ? sqrt(num / den) : 0;
    *proxy = ls && ls->xtx && ls->cols == q->cols ? proxy_loss(w, scratch, q->rows, q->cols, ls, row_loss) : NAN;
    return LB_OK;
}

void lb_pipeline_report_begin(lb_tensor_report *rec, const lb_tensor *t, const lb_plan_entry *e) {
    memset(rec, 0, sizeof *rec);
    snprintf(rec->name, sizeof rec->name, "%s", t->name);
    rec->spec = e->spec;
    rec->opts = e->opts;
    rec->opts.report = NULL;
    rec->rows = t->rows;
    rec->cols = t->cols;
}

/* A split entry: each row part quantized as a tensor of its rows by its own
 * method, with those rows' statistics, then the parts joined
 * (formats/split.c). A part is what the plan's row blocks measured
 * (plan/rowblock.c), so the file holds what was planned. A column part is a
 * tensor of its columns, with the statistics of those input channels alone.
 * The method report is the last part's, its seconds the sum. */
static lb_status quantize_parts(const lb_plan_entry *e, const lb_layer_stats *stats, const float *w, const lb_tensor *t,
                                lb_method_report *report, lb_tensor *out) {
    lb_tensor *parts = lb_calloc((size_t)e->n_parts, sizeof *parts);
    if (!parts) return lb_fail(LB_ERR_NOMEM, "no memory for the parts of '%s'", t->name);
    int axis = e->split_axis;
    float *piece = axis ? lb_alloc((size_t)(t->rows * t->cols) * sizeof *piece) : NULL;
    lb_status st = !axis || piece ? LB_OK : lb_fail(LB_ERR_NOMEM, "no memory for the column parts of '%s'", t->name);
    int k = 0;
    for (; k < e->n_parts && st == LB_OK; k++) {
        const lb_plan_part *q = &e->parts[k];
        lb_method_opts o = q->opts;
        o.report = report;
        int need = lb_method_opts_stats(&o) && stats;
        lb_layer_stats ls;
        memset(&ls, 0, sizeof ls);
        if (need && !axis) ls = lb_layer_stats_rows(stats, q->row0, q->row1);
        if (need && axis && (st = lb_layer_stats_cols(stats, q->row0, q->row1, &ls)) != LB_OK) break;
        char name[128];
        snprintf(name, sizeof name, "%.90s %s %lld:%lld", t->name, axis ? "cols" : "rows", (long long)q->row0,
                 (long long)q->row1);
        int64_t width = q->row1 - q->row0;
        for (int64_t r = 0; axis && r < t->rows; r++)
            memcpy(piece + r * width, w + r * t->cols + q->row0, (size_t)width * sizeof *piece);
        st = axis ? lb_quantize_tensor(o.method, &o, need ? &ls : NULL, piece, t->rows, width, &q->spec, name, &parts[k])
                  : lb_quantize_tensor(o.method, &o, need ? &ls : NULL, w + q->row0 * t->cols, width, t->cols,
                                       &q->spec, name, &parts[k]);
        if (need && axis) lb_layer_stats_free(&ls);
    }
    lb_free(piece);
    if (st == LB_OK)
        st = axis ? lb_split_join_cols(parts, e->n_parts, t->name, out) : lb_split_join(parts, e->n_parts, t->name, out);
    for (int i = 0; i < k; i++) lb_tensor_free(&parts[i]);
    lb_free(parts);
    return st;
}

lb_status lb_pipeline_quantize_entry(lb_model *m, const lb_plan_entry *e, const float *w_in,
                                     const lb_layer_stats *stats, lb_tensor *out, lb_tensor_report *rec,
                                     lb_quant_extras *extras, int measured) {
    const lb_tensor *t = lb_model_tensor_at(m, e->tensor);
    lb_pipeline_report_begin(rec, t, e);
    rec->proxy_loss = rec->proxy_loss_rtn = NAN;
    size_t n;
    float *w = NULL, *scratch = NULL;
    double *row_loss = NULL;
    if (lb_mul_overflows((size_t)t->rows, (size_t)t->cols * sizeof(float), &n) || !(w = lb_alloc(n)) ||
        !(scratch = lb_alloc(n)) || !(row_loss = lb_alloc((size_t)t->rows * sizeof(double)))) {
        lb_free(w);
        lb_free(scratch);
        return lb_fail(LB_ERR_NOMEM, "no memory to dequantize '%s'", t->name);
    }
    lb_status st = LB_OK;
    if (w_in) memcpy(w, w_in, n);
    else st = lb_dequantize(t, w);
    lb_map_release(t->data, t->nbytes); /* a mapped input's pages: w holds the weights now */
    /* the method sees statistics only if it (or its common options: outliers,
     * bias correction) asks for them */
    const lb_layer_stats *ls = lb_method_opts_stats(&e->opts) ? stats : NULL;
    lb_method_opts opts = e->opts;
    opts.report = &rec->method;
    double t0 = lb_now();
    if (st == LB_OK && e->n_parts) {
        memset(extras, 0, sizeof *extras); /* a part makes no slots (lb_plan_check) */
        st = quantize_parts(e, stats, w, t, &rec->method, out);
    }
    else if (st == LB_OK)
        st = lb_quantize_tensor_ex(e->opts.method, &opts, ls, w, t->rows, t->cols, &e->spec, t->name, out, extras);
    rec->seconds = lb_now() - t0;
    if (st == LB_OK) {
        st = lb_pipeline_slots_check(m, t, extras); /* outliers, bias: pipeline/slots.c */
        if (st != LB_OK) {
            lb_tensor_free(out);
            lb_quant_extras_free(extras);
        }
    }
    if (st == LB_OK) {
        /* the packed weight; the drivers add the linear's slots once they are set */
        rec->bpw = (double)out->nbytes * 8.0 / ((double)t->rows * (double)t->cols);
        if (measured) st = measure(w, out, extras, stats, scratch, row_loss, &rec->rel_error, &rec->proxy_loss);
        if (st != LB_OK) {
            lb_tensor_free(out);
            lb_quant_extras_free(extras);
        }
    }
    if (st == LB_OK && measured && stats && stats->xtx && !e->n_parts) {
        /* the data-free baseline on the same H: rtn at its defaults, same spec (none for a split tensor) */
        const lb_method *rtn = lb_method_find("rtn");
        lb_method_opts ro;
        lb_method_opts_default(rtn, &ro);
        lb_tensor r;
        if (e->opts.method == rtn && lb_method_opts_equal(&ro, &e->opts)) {
            rec->proxy_loss_rtn = rec->proxy_loss;
        } else if (lb_quantize_tensor(rtn, &ro, NULL, w, t->rows, t->cols, &e->spec, t->name, &r) == LB_OK) {
            st = measure(w, &r, NULL, stats, scratch, row_loss, NULL, &rec->proxy_loss_rtn);
            lb_tensor_free(&r);
            if (st != LB_OK) {
                lb_tensor_free(out);
                lb_quant_extras_free(extras);
            }
        } /* else: rtn cannot make this spec; proxy_loss_rtn stays NAN */
    }
    lb_free(w);
    lb_free(scratch);
    lb_free(row_loss);
    return st;
}

void lb_pipeline_report_totals(lb_model *m, int n, double t0, lb_quantize_report *report) {
    lb_model_size sz;
    lb_model_sizes(m, &sz);
    report->tensors_quantized = n;
    report->bpw = sz.bpw;
    report->bpw_all = sz.bpw_all;
    report->seconds = lb_now() - t0;
}

lb_status lb_quantize_model_calibrated(lb_model *m, const lb_plan *plan, const lb_calib_stats *stats,
                                       lb_quantize_report *report) {
    double t0 = lb_now();
    if (report) memset(report, 0, sizeof *report);
    lb_plan p;
    lb_status st = stats ? lb_calib_stats_check(stats, m) : LB_OK;
    if (st != LB_OK) return st;
    st = lb_pipeline_resolve(plan, m, &p);
    if (st != LB_OK) return st;
    int cap = p.n_entries ? p.n_entries : 1;
    lb_act_quant *acts = NULL;
    st = lb_pipeline_check_rotations(&p, &plan->act);
    if (st == LB_OK) st = lb_pipeline_plan_acts(m, &plan->act, stats, &acts);
    lb_tensor *out = lb_calloc((size_t)cap, sizeof *out);
    lb_tensor_report *rec = lb_calloc((size_t)cap, sizeof *rec);
    lb_quant_extras *extras = lb_calloc((size_t)cap, sizeof *extras);
    if (st != LB_OK || !out || !rec || !extras) {
        lb_free(out);
        lb_free(rec);
        lb_free(extras);
        lb_free(acts);
        lb_free(p.entries);
        return st != LB_OK ? st : LB_ERR_NOMEM;
    }
    lb_fold fold;
    st = lb_fold_prepare(m, &p, stats, &fold); /* cleans up after itself on failure */
    int have_fold = st == LB_OK;
    if (st == LB_OK && fold.any && plan->act.kind == LB_AQ_TENSOR)
        st = lb_fail(LB_ERR_UNSUPPORTED, "a static activation range is calibrated on the unscaled inputs, and this "
                                         "plan folds input scales (awq / smoothquant): use a dynamic activation "
                                         "quantizer (int8:token)");
    if (st != LB_OK) {
        if (have_fold) lb_fold_free(&fold);
        lb_free(out);
        lb_free(rec);
        lb_free(extras);
        lb_free(acts);
        lb_free(p.entries);
        return st;
    }
    lb_progress prog;
    lb_progress_begin(&prog, "quantizing", (uint64_t)p.n_entries);
    int done = 0;
    for (; done < p.n_entries && st == LB_OK; done++) {
        const lb_plan_entry *e = &p.entries[done];
        const lb_tensor *t = lb_model_tensor_at(m, e->tensor);
        lb_progress_item(&prog, t->name);
        /* a linear's input statistics (NULL for the embedding, the classifier, or without stats), those of
         * the scaled input, and its scaled weight, when its scale was folded */
        const lb_layer_stats *ls = lb_fold_stats(&fold, m, t);
        if (!ls) ls = lb_calib_stats_for_tensor(stats, m, t);
        st = lb_journal_entry(p.journal, m, e, lb_fold_weight(&fold, m, t), ls, &out[done], &rec[done], &extras[done],
                              report != NULL);
        if (st != LB_OK) break;
        lb_progress_update(&prog, (uint64_t)done + 1);
    }
    lb_progress_end(&prog);
    lb_tensor *staged = NULL;
    if (st == LB_OK) st = lb_fold_stage(&fold, m, &p, 0, &staged);
    if (st == LB_OK) {
        lb_fold_commit(&fold, m, staged);
        for (int i = 0; i < p.n_entries; i++) {
            lb_tensor *t = lb_model_tensor_at(m, p.entries[i].tensor);
            lb_tensor_free(t);
            *t = out[i];
            if (st == LB_OK) st = lb_pipeline_slots_apply(m, t, &extras[i]); /* only allocation can fail */
            rec[i].bpw += (double)lb_pipeline_slot_bytes(m, t) * 8.0 / ((double)t->rows * (double)t->cols);
        }
        lb_plan_summary(plan, m->quant_note, sizeof m->quant_note);
        lb_pipeline_set_acts(m, &plan->act, acts);
    } else {
        for (int i = 0; i <= done && i < p.n_entries; i++) lb_tensor_free(&out[i]);
    }
    for (int i = 0; i < p.n_entries; i++) lb_quant_extras_free(&extras[i]);
    lb_free(extras);
    if (st == LB_OK && report) {
        lb_pipeline_report_totals(m, p.n_entries, t0, report);
        report->tensors = rec;
        rec = NULL;
    }
    lb_free(rec);
    lb_fold_free(&fold);
    lb_free(out);
    lb_free(acts);
    lb_free(p.entries);
    return st;
}
