/* True-sequential quantization (GPTQ, Frantar et al. 2022, arXiv:2210.17323,
 * the reference code's --true-sequential; METHODS.md s2, REFERENCE.md "seq").
 *
 * Objective: each linear's method minimizes its own error on the inputs it
 * will really see, i.e. those of the model whose earlier linears are already
 * quantized, instead of the fp32 model's. Layer by layer, and within a layer
 * in four stages by input,
 *     {q, k, v} (attn_in), o (attn_out), {gate, up} (ffn_in), down (ffn_hidden),
 * the statistics of the stage's input are collected from the current model
 * over the calibration text (lb_calib_seq: the residual stream is cached at
 * the layer's input, so a stage costs one block pass), then the stage's
 * tensors are quantized and put into the model before the next stage runs.
 *
 * Choices and deviations:
 * - The token embedding, when the plan has it, is quantized first, so the
 *   calibration runs on the embedding the quantized model will use; the
 *   classifier (untied output) is quantized last. Neither is a linear with
 *   input statistics (a method that needs them fails, as in the parallel
 *   driver).
 * - A stage with no tensor of the plan, or whose tensors' methods need no
 *   statistics, is not observed; a plan that needs no statistics at all runs
 *   no calibration and gives exactly lb_quantize_model's bytes.
 * - All or nothing, as the parallel driver: the model holds each stage's
 *   new tensors while later stages calibrate, and gets its original tensors
 *   back if anything fails.
 * - Only the statistic parts the plan's methods need are collected.
 * - The quantized linears compute in float while later stages calibrate
 *   (the dequantize-a-tile path, as GPTQ's reference runs its fake-quantized
 *   layers), not through their kernels, some of which round activations to
 *   int8: the statistics then depend on the weights alone, not on which
 *   kernels this CPU has (that rounding moved onebit's seq result from
 *   19.0x to 23.3x; docs/RESULTS.md). Afterwards each tensor chooses its
 *   kernel as usual. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h" /* lb_kernel_pin, lb_kernel_unpin */
#include "pipeline_internal.h"
#include "pipeline/slots.h"
#include "train/blockrec.h"

/* entry i of p -> (layer, linear) of m, or layer -1 for a non-linear tensor */
static void locate(lb_model *m, const lb_plan *p, int *layer, int *which) {
    for (int i = 0; i < p->n_entries; i++) {
        const lb_tensor *t = lb_model_tensor_at(m, p->entries[i].tensor);
        layer[i] = which[i] = -1;
        for (int l = 0; l < m->cfg.n_layers && layer[i] < 0; l++)
            for (int w = 0; w < LB_N_LINEARS; w++)
                if (&m->layers[l].linear[w].w == t) {
                    layer[i] = l;
                    which[i] = w;
                    break;
                }
    }
}

typedef struct {
    lb_model *m;
    const lb_plan *p;
    lb_tensor *held;      /* per entry: the new tensor, or (once swapped in) the original */
    lb_tensor_report *rec;
    char *done;           /* 1: held[i] is the new tensor; 2: swapped (held[i] is the original) */
    lb_progress *prog;
    int n_done;
    int measured; /* a report was asked for: measure each tensor */
    float *x_fp;  /* refine target=fp: the fp32 model's residual stream at the current layer's input */
} seq_run;

/* Quantizes entry i (the model as it is now) and puts it into the model. */
static lb_status quantize_into(seq_run *r, int i, const lb_calib_stats *stats) {
    const lb_plan_entry *e = &r->p->entries[i];
    lb_tensor *t = lb_model_tensor_at(r->m, e->tensor);
    lb_progress_item(r->prog, t->name);
    lb_quant_extras x;
    lb_status st = lb_journal_entry(r->p->journal, r->m, e, NULL, lb_calib_stats_for_tensor(stats, r->m, t),
                                    &r->held[i], &r->rec[i], &x, r->measured);
    if (st != LB_OK) return st;
    /* x holds rotations and a row's adapter only (the other slot-producing
     * options were refused up front; quantize_entry checked they fit): they
     * go in with the tensor, since the next stages calibrate through this
     * linear */
    lb_tensor orig = *t;
    *t = r->held[i];
    r->held[i] = orig;
    r->done[i] = 2;
    lb_kernel_pin(t, "fallback"); /* float activations while later stages calibrate */
    st = lb_pipeline_slots_apply(r->m, t, &x);
    lb_quant_extras_free(&x);
    if (st != LB_OK) return st;
    lb_progress_update(r->prog, (uint64_t)++r->n_done);
    return LB_OK;
}

/* Block reconstruction of layer l (refine set): the layer's entries in a
 * uniform format are learned together against the fp32 layer (their
 * originals, held since quantize_into swapped them), on the cache's inputs;
 * each refined tensor replaces the method's in the model. */
static lb_status refine_layer(seq_run *r, const int *layer, const int *which, int l, lb_calib_seq *cs,
                              const lb_blockrec_opts *ro) {
    const lb_tensor *teacher[LB_N_LINEARS] = {0};
    int learn[LB_N_LINEARS] = {0}, entry[LB_N_LINEARS], any = 0;
    for (int i = 0; i < r->p->n_entries; i++) {
        if (layer[i] != l || r->done[i] != 2) continue;
        const lb_qspec *s = &r->p->entries[i].spec;
        teacher[which[i]] = &r->held[i];
        entry[which[i]] = i;
        learn[which[i]] = s->family == LB_FAMILY_UNIFORM && !s->scale_bits;
        any |= learn[which[i]];
    }
    if (!any && ro->target_fp && r->x_fp)
        return lb_fail(LB_ERR_UNSUPPORTED, "refine target=fp follows the fp32 stream through refined layers: blk.%d "
                       "has no uniform-format linear to refine", l);
    if (!any) return LB_OK;
    lb_blockrec_data d = {0};
    lb_calib_seq_inputs(cs, &d.x, &d.n_seq, &d.len, &d.offset);
    size_t rows = d.offset[d.n_seq - 1] + (size_t)d.len[d.n_seq - 1], bytes = rows * (size_t)r->m->cfg.dim * sizeof(float);
    if (ro->target_fp) { /* the fp32 stream starts as the cache at the first refined layer, then follows the teachers */
        if (!r->x_fp) {
            if (!(r->x_fp = lb_alloc(bytes))) return lb_fail(LB_ERR_NOMEM, "refine: no memory for the fp32 stream");
            memcpy(r->x_fp, d.x, bytes);
        }
        d.x_teacher = r->x_fp;
    }
    char what[128];
    snprintf(what, sizeof what, "blk.%d %s", l, lb_blockrec_kind_name(ro->kind));
    lb_progress_item(r->prog, what);
    lb_blockrec *b;
    lb_status st = lb_blockrec_create(r->m, l, teacher, learn, ro, &d, &b);
    if (st != LB_OK) return lb_fail_context(st, "block reconstruction of blk.%d", l);
    lb_blockrec_report rep;
    st = lb_blockrec_optimize(b, &rep);
    if (st == LB_OK && ro->target_fp) memcpy(r->x_fp, lb_blockrec_targets(b), bytes); /* the next layer's fp32 input */
    for (int w = 0; w < LB_N_LINEARS && st == LB_OK; w++) {
        if (!learn[w]) continue;
        lb_tensor t;
        st = lb_blockrec_export(b, w, &t);
        if (st != LB_OK) break;
        lb_tensor *cur = lb_model_tensor_at(r->m, r->p->entries[entry[w]].tensor);
        lb_tensor_free(cur);
        *cur = t;
        lb_kernel_pin(cur, "fallback");
    }
    lb_blockrec_free(b);
    if (st == LB_OK) {
        snprintf(what, sizeof what, "blk.%d %s: block mse %.4g -> %.4g (%s)", l, lb_blockrec_kind_name(ro->kind),
                 rep.mse_init, rep.mse_final, rep.kept == 0 ? "start kept" : rep.kept == 1 ? "best step" : "last step");
        lb_progress_item(r->prog, what);
        if (getenv("LB_BLOCKREC_LOG")) fprintf(stderr, "%s\n", what);
    }
    return st;
}

static lb_status run_sequential(lb_model *m, const lb_plan *plan, const lb_calib_opts *calib,
                                const lb_blockrec_opts *ro, lb_quantize_report *report);

lb_status lb_quantize_model_sequential(lb_model *m, const lb_plan *plan, const lb_calib_opts *calib,
                                       lb_quantize_report *report) {
    return run_sequential(m, plan, calib, NULL, report);
}

lb_status lb_quantize_model_refined(lb_model *m, const lb_plan *plan, const lb_calib_opts *calib, const char *refine,
                                    lb_quantize_report *report) {
    lb_blockrec_opts ro;
    lb_status st = lb_blockrec_opts_parse(refine, &ro);
    if (st != LB_OK) return st;
    return run_sequential(m, plan, calib, &ro, report);
}

static lb_status run_sequential(lb_model *m, const lb_plan *plan, const lb_calib_opts *calib,
                                const lb_blockrec_opts *ro, lb_quantize_report *report) {
    double t0 = lb_now();
    if (report) memset(report, 0, sizeof *report);
    lb_plan p;
    lb_status st = lb_pipeline_resolve(plan, m, &p);
    if (st != LB_OK) return st;
    /* Outliers and bias corrections change a linear's slots, which later
     * stages would have to calibrate through and a failure would have to
     * undo; a static activation range needs the fp32 model's statistics;
     * input scales (awq, smoothquant) would have to be searched per stage.
     * None of these is built for this driver yet. */
    for (int i = 0; i < p.n_entries && st == LB_OK; i++)
        if (p.entries[i].opts.method && p.entries[i].opts.method->input_scales)
            st = lb_fail(LB_ERR_UNSUPPORTED,
                         "sequential quantization does not fold input scales (method %s) yet; quantize without "
                         "--sequential",
                         p.entries[i].opts.method->name);
        else if (lb_method_opts_get(&p.entries[i].opts, "outliers") > 0 ||
            lb_method_opts_get(&p.entries[i].opts, "bias_correct") != 0)
            st = lb_fail(LB_ERR_UNSUPPORTED,
                         "sequential quantization does not take outliers or bias correction yet ('%s'); quantize "
                         "without --sequential",
                         lb_model_tensor_at(m, p.entries[i].tensor)->name);
    if (st == LB_OK) st = lb_pipeline_check_rotations(&p, &plan->act);
    if (st == LB_OK && plan->act.kind == LB_AQ_TENSOR)
        st = lb_fail(LB_ERR_UNSUPPORTED, "sequential quantization takes a dynamic activation quantizer "
                                         "(int8:token), not a static one (its ranges come from the fp32 model's "
                                         "statistics): quantize without --sequential");
    lb_act_quant *acts = NULL;
    if (st == LB_OK) st = lb_pipeline_plan_acts(m, &plan->act, NULL, &acts);
    if (st != LB_OK) {
        lb_free(p.entries);
        return st;
    }
    unsigned need = lb_plan_stats_needed(&p);
    if (!need && !ro) { /* nothing to calibrate: the parallel driver gives the same bytes */
        lb_free(p.entries);
        lb_free(acts);
        st = lb_quantize_model_calibrated(m, plan, NULL, report);
        if (st == LB_OK && report) report->sequential = 1;
        return st;
    }
    int cap = p.n_entries ? p.n_entries : 1;
    seq_run r = {.m = m, .p = &p, .measured = report != NULL};
    int *layer = lb_calloc((size_t)cap, sizeof *layer), *which = lb_calloc((size_t)cap, sizeof *which);
    r.held = lb_calloc((size_t)cap, sizeof *r.held);
    r.rec = lb_calloc((size_t)cap, sizeof *r.rec);
    r.done = lb_calloc((size_t)cap, 1);
    if (!layer || !which || !r.held || !r.rec || !r.done) st = LB_ERR_NOMEM;
    lb_progress prog;
    lb_progress_begin(&prog, "quantizing (sequential)", (uint64_t)p.n_entries);
    r.prog = &prog;
    if (st == LB_OK) locate(m, &p, layer, which);

    /* the embedding first: the calibration below runs on it */
    for (int i = 0; st == LB_OK && i < p.n_entries; i++)
        if (layer[i] < 0 && lb_model_tensor_at(m, p.entries[i].tensor) == &m->tok_embd) st = quantize_into(&r, i, NULL);

    lb_calib_opts co;
    if (calib) co = *calib;
    else lb_calib_opts_default(&co);
    co.parts = need ? need : LB_STATS_XTX; /* refine with a data-free method: the cache alone is used */
    lb_calib_seq *cs = NULL;
    if (st == LB_OK) {
        lb_progress_item(&prog, "embedding the calibration text");
        st = lb_calib_seq_begin(m, &co, &cs);
    }
    for (int l = 0; st == LB_OK && l < m->cfg.n_layers; l++) {
        for (int input = 0; st == LB_OK && input < LB_CALIB_N_INPUTS; input++) {
            int any = 0, needs = 0;
            for (int i = 0; i < p.n_entries; i++)
                if (layer[i] == l && lb_calib_input_of(which[i]) == input) {
                    any = 1;
                    /* a resumed run's journaled tensors need no statistics */
                    needs |= p.entries[i].opts.method && lb_method_opts_stats(&p.entries[i].opts) &&
                             !lb_journal_has(p.journal, lb_model_tensor_at(m, p.entries[i].tensor)->name);
                }
            if (!any) continue;
            if (needs) {
                char what[96];
                snprintf(what, sizeof what, "blk.%d %s statistics", l, lb_calib_input_name(input));
                lb_progress_item(&prog, what);
                st = lb_calib_seq_observe(cs, m, l, input);
                if (st != LB_OK) st = lb_fail_context(st, "sequential calibration of blk.%d %s", l, lb_calib_input_name(input));
            }
            /* a data-free stage gets no statistics (its records have no proxy loss) */
            const lb_calib_stats *stats = needs ? lb_calib_seq_stats(cs) : NULL;
            for (int i = 0; st == LB_OK && i < p.n_entries; i++)
                if (layer[i] == l && lb_calib_input_of(which[i]) == input) st = quantize_into(&r, i, stats);
        }
        if (st == LB_OK && ro) st = refine_layer(&r, layer, which, l, cs, ro);
        if (st == LB_OK && l + 1 < m->cfg.n_layers) {
            char what[96];
            snprintf(what, sizeof what, "blk.%d output", l);
            lb_progress_item(&prog, what);
            st = lb_calib_seq_advance(cs, m, l);
        }
    }
    lb_calib_seq_free(cs);
    /* the rest (the classifier) last */
    for (int i = 0; st == LB_OK && i < p.n_entries; i++)
        if (!r.done[i]) st = quantize_into(&r, i, NULL);
    lb_progress_end(&prog);

    for (int i = 0; i < p.n_entries && r.done; i++) {
        if (r.done[i] == 2 && st != LB_OK) { /* put the original back, without the rotations (adapter) it came with */
            lb_tensor *t = lb_model_tensor_at(m, p.entries[i].tensor);
            if (lb_method_opts_get(&p.entries[i].opts, "rotate") != 0 || lb_method_opts_get(&p.entries[i].opts, "lowrank") > 0)
                lb_pipeline_slots_unrotate(m, t);
            lb_tensor q = *t;
            *t = r.held[i];
            r.held[i] = q;
        }
        if (r.done[i] == 2 && st == LB_OK) lb_kernel_unpin(lb_model_tensor_at(m, p.entries[i].tensor));
        if (r.done[i]) lb_tensor_free(&r.held[i]); /* the original on success, the new tensor on failure */
    }
    if (st == LB_OK) {
        lb_plan_summary(plan, m->quant_note, sizeof m->quant_note);
        if (ro) {
            size_t used = strlen(m->quant_note);
            snprintf(m->quant_note + used, sizeof m->quant_note - used, "; refine %s steps=%d lr=%g batch=%d target=%s",
                     lb_blockrec_kind_name(ro->kind), ro->steps, (double)ro->lr, ro->batch,
                     ro->target_fp ? "fp" : "local");
        }
        lb_pipeline_set_acts(m, &plan->act, acts);
        if (report) {
            lb_pipeline_report_totals(m, p.n_entries, t0, report);
            report->sequential = 1;
            report->tensors = r.rec;
            r.rec = NULL;
        }
    }
    lb_free(acts);
    lb_free(layer);
    lb_free(which);
    lb_free(r.held);
    lb_free(r.rec);
    lb_free(r.done);
    lb_free(r.x_fp);
    lb_free(p.entries);
    return st;
}
