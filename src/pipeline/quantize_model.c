/* The whole-model driver: every tensor a plan selects, quantized by its
 * method into a new tensor, and the model changed only when all of them
 * succeeded (a failure names its tensor and leaves the model as it was).
 * Methods with an input-scaling hook (awq, smoothquant) first get their
 * scales searched and folded into copies of the weights, norms and
 * statistics (fold.c); the methods then quantize the folded copies. */
#include "lowbit/pipeline.h"
#include "pipeline/fold.h"

#include <string.h>

unsigned lb_plan_stats_needed(const lb_plan *p) {
    unsigned need = 0;
    for (int i = 0; i < p->n_entries; i++)
        if (p->entries[i].opts.method) need |= p->entries[i].opts.method->stats;
    return need;
}

lb_status lb_quantize_model(lb_model *m, const lb_plan *plan, lb_quantize_report *report) {
    return lb_quantize_model_calibrated(m, plan, NULL, report);
}

lb_status lb_quantize_model_calibrated(lb_model *m, const lb_plan *plan, const lb_calib_stats *stats,
                                       lb_quantize_report *report) {
    double t0 = lb_now();
    if (report) memset(report, 0, sizeof *report);
    lb_plan p = *plan; /* the caller's plan stays const: resolve a shallow copy */
    p.entries = NULL;
    p.n_entries = 0;
    lb_status st = stats ? lb_calib_stats_check(stats, m) : LB_OK;
    if (st == LB_OK) st = lb_plan_resolve(&p, m);
    if (st == LB_OK) st = lb_plan_check(&p);
    if (st != LB_OK) {
        lb_free(p.entries);
        return st;
    }
    lb_fold fold;
    st = lb_fold_prepare(m, &p, stats, &fold);
    if (st != LB_OK) {
        lb_free(p.entries);
        return st;
    }
    lb_tensor *out = lb_calloc((size_t)(p.n_entries ? p.n_entries : 1), sizeof *out);
    if (!out) {
        lb_fold_free(&fold);
        lb_free(p.entries);
        return LB_ERR_NOMEM;
    }
    lb_progress prog;
    lb_progress_begin(&prog, "quantizing", (uint64_t)p.n_entries);
    int done = 0;
    for (; done < p.n_entries && st == LB_OK; done++) {
        const lb_plan_entry *e = &p.entries[done];
        const lb_tensor *t = lb_model_tensor_at(m, e->tensor);
        size_t n;
        float *w = NULL;
        if (lb_mul_overflows((size_t)t->rows, (size_t)t->cols * sizeof(float), &n) || !(w = lb_alloc(n))) {
            st = lb_fail(LB_ERR_NOMEM, "no memory to dequantize '%s'", t->name);
            break;
        }
        const float *folded = lb_fold_weight(&fold, m, t);
        if (folded) {
            memcpy(w, folded, n);
        } else {
            st = lb_dequantize(t, w);
        }
        /* a linear's input statistics (NULL for the embedding, the classifier, or without stats), those of
         * the scaled input when its scale was folded */
        const lb_layer_stats *ls = NULL;
        if (e->opts.method && e->opts.method->stats) {
            ls = lb_fold_stats(&fold, m, t);
            if (!ls) ls = lb_calib_stats_for_tensor(stats, m, t);
        }
        if (st == LB_OK)
            st = lb_quantize_tensor(e->opts.method, &e->opts, ls, w, t->rows, t->cols, &e->spec, t->name, &out[done]);
        lb_free(w);
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
        }
        lb_plan_summary(plan, m->quant_note, sizeof m->quant_note);
    } else {
        for (int i = 0; i < done; i++) lb_tensor_free(&out[i]);
    }
    if (st == LB_OK && report) {
        lb_model_size sz;
        lb_model_sizes(m, &sz);
        report->tensors_quantized = p.n_entries;
        report->bpw = sz.bpw;
        report->bpw_all = sz.bpw_all;
        report->seconds = lb_now() - t0;
    }
    lb_fold_free(&fold);
    lb_free(out);
    lb_free(p.entries);
    return st;
}
