/* The whole-model driver: every tensor a plan selects, quantized by its
 * method into a new tensor, and the model changed only when all of them
 * succeeded (a failure names its tensor and leaves the model as it was). */
#include "lowbit/pipeline.h"
#include "pipeline/slots.h"

#include <string.h>

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
    lb_act_quant *acts = NULL;
    if (plan->act.kind != LB_AQ_NONE) {
        if (!(acts = lb_calloc((size_t)m->cfg.n_layers * LB_N_LINEARS, sizeof *acts))) st = LB_ERR_NOMEM;
        if (st == LB_OK) st = plan_acts(m, &plan->act, stats, acts);
    }
    lb_tensor *out = st == LB_OK ? lb_calloc((size_t)(p.n_entries ? p.n_entries : 1), sizeof *out) : NULL;
    lb_quant_extras *extras = st == LB_OK ? lb_calloc((size_t)(p.n_entries ? p.n_entries : 1), sizeof *extras) : NULL;
    if (!out || !extras) {
        lb_free(out);
        lb_free(extras);
        lb_free(acts);
        lb_free(p.entries);
        return st != LB_OK ? st : LB_ERR_NOMEM;
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
        st = lb_dequantize(t, w);
        /* a linear's input statistics (NULL for the embedding, the classifier, or without stats) */
        const lb_layer_stats *ls = lb_method_opts_stats(&e->opts) ? lb_calib_stats_for_tensor(stats, m, t) : NULL;
        if (st == LB_OK)
            st = lb_quantize_tensor_ex(e->opts.method, &e->opts, ls, w, t->rows, t->cols, &e->spec, t->name,
                                       &out[done], &extras[done]);
        if (st == LB_OK) st = lb_pipeline_slots_check(m, t, &extras[done]); /* outliers, bias: pipeline/slots.c */
        lb_free(w);
        if (st != LB_OK) break;
        lb_progress_update(&prog, (uint64_t)done + 1);
    }
    lb_progress_end(&prog);
    if (st == LB_OK) {
        for (int i = 0; i < p.n_entries; i++) {
            lb_tensor *t = lb_model_tensor_at(m, p.entries[i].tensor);
            lb_tensor_free(t);
            *t = out[i];
            if (st == LB_OK) st = lb_pipeline_slots_apply(m, t, &extras[i]); /* only allocation can fail */
        }
        lb_plan_summary(plan, m->quant_note, sizeof m->quant_note);
        if (acts) { /* checked above: setting cannot fail */
            for (int l = 0; l < m->cfg.n_layers; l++)
                for (int i = 0; i < LB_N_LINEARS; i++)
                    st = lb_linear_set_act(&m->layers[l].linear[i], &acts[l * LB_N_LINEARS + i]);
            char spec[64];
            size_t used = strlen(m->quant_note);
            lb_act_spec_format(&plan->act, spec, sizeof spec);
            if (used + strlen(spec) + 6 < sizeof m->quant_note)
                snprintf(m->quant_note + used, sizeof m->quant_note - used, "; act=%s", spec);
        }
    } else {
        for (int i = 0; i <= done && i < p.n_entries; i++) lb_tensor_free(&out[i]);
    }
    for (int i = 0; i < p.n_entries; i++) lb_quant_extras_free(&extras[i]);
    lb_free(extras);
    if (st == LB_OK && report) {
        lb_model_size sz;
        lb_model_sizes(m, &sz);
        report->tensors_quantized = p.n_entries;
        report->bpw = sz.bpw;
        report->bpw_all = sz.bpw_all;
        report->seconds = lb_now() - t0;
    }
    lb_free(out);
    lb_free(acts);
    lb_free(p.entries);
    return st;
}
