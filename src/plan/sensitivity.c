/* Sensitivity: what quantizing one tensor, and only it, costs the model.
 *
 * For every selected tensor and candidate (format, method, options) the
 * model is loaded afresh, that tensor alone is quantized (with the fp
 * model's calibration statistics when the method needs them), and the
 * result is scored on the calibration text against the model as loaded:
 * mean KL divergence per token and the change of the negative
 * log-likelihood. The quantizer's own records give the bits as stored and
 * two cheap proxies (the method's output-error proxy tr(dW H dW^T) / n,
 * and the plain weight error ||dW||^2), so their rank correlation with the
 * measured KL says when a proxy alone could be trusted. */
#include "plan/plan_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void lb_sensitivity_free(lb_sensitivity *s) {
    if (!s) return;
    lb_free(s->tensor), lb_free(s->names), lb_free(s->weights);
    lb_free(s->bits), lb_free(s->kld), lb_free(s->dnll), lb_free(s->proxy), lb_free(s->werr);
    lb_free(s->hawq), lb_free(s->fisher), lb_free(s->group);
    for (size_t i = 0; s->rows_q && i < (size_t)s->n_tensors * s->n_candidates; i++) lb_free(s->rows_q[i]);
    lb_free(s->rows_q), lb_free(s->row0), lb_free(s->row1);
    for (size_t i = 0; s->quantized && i < (size_t)s->n_tensors * s->n_candidates; i++) lb_tensor_free(&s->quantized[i]);
    lb_free(s->quantized);
    memset(s, 0, sizeof *s);
}

/* The selection's tensors, in model order. */
static lb_status select_tensors(const lb_sensitivity_opts *o, const lb_candidate *c0, lb_model *m, lb_plan *p) {
    lb_plan_init(p);
    lb_status st = lb_plan_add_selection(p, o->tensors ? o->tensors : "linears", &c0->spec, &c0->opts);
    return st == LB_OK ? lb_plan_resolve(p, m) : st;
}

/* The weight-error proxies of tensor index ti of m against its original
 * weights w0: ||dW||^2, HAWQ's mean Hessian eigenvalue tr(H) / (n cols)
 * times it (H = X^T X over n tokens), and the Fisher-weighted error
 * sum g^2 dW^2 (squared loss gradients per weight, when the statistics have them). */
static lb_status weight_proxies(const lb_model *m, int ti, const float *w0, const lb_calib_stats *stats,
                                lb_sensitivity *out, size_t cell) {
    const lb_tensor *t = lb_model_tensor_at((lb_model *)m, ti);
    int64_t n = t->rows * t->cols;
    float *q = lb_alloc((size_t)n * sizeof *q);
    if (!q) return LB_ERR_NOMEM;
    lb_status st = lb_dequantize(t, q);
    const lb_layer_stats *ls = stats ? lb_calib_stats_for_tensor(stats, m, t) : NULL;
    double e2 = 0, fe = 0;
    for (int64_t i = 0; st == LB_OK && i < n; i++) {
        double d = (double)q[i] - (double)w0[i];
        e2 += d * d;
        if (ls && ls->grad_sq) fe += (double)ls->grad_sq[i] * d * d;
    }
    out->werr[cell] = e2;
    if (ls && ls->xtx && ls->n_samples > 0) {
        double tr = 0;
        for (int64_t j = 0; j < t->cols; j++) tr += ls->xtx[j * t->cols + j];
        out->hawq[cell] = tr / ((double)ls->n_samples * (double)t->cols) * e2;
    }
    if (ls && ls->grad_sq) out->fisher[cell] = fe;
    lb_free(q);
    return st;
}

/* Moves the quantized tensor out of m into out->quantized[cell], for
 * lb_plan_refine; refuses what changed more than the weight. */
static lb_status keep_tensor(lb_model *m, const lb_plan *p, const lb_quantize_report *rep, lb_sensitivity *out,
                             size_t cell) {
    lb_tensor *t = lb_model_tensor_at(m, p->entries[0].tensor);
    const lb_tensor_report *r = &rep->tensors[0];
    if (p->entries[0].opts.method->input_scales ||
        fabs(r->bpw - (double)t->nbytes * 8.0 / ((double)t->rows * (double)t->cols)) > 1e-9)
        return lb_fail(LB_ERR_UNSUPPORTED, "refining a plan reuses each quantized weight alone; method %s here changes "
                       "more than the weight (input scales, outliers, a bias or a rotation)", p->entries[0].opts.method->name);
    lb_tensor *k = &out->quantized[cell];
    *k = *t;
    k->kernel = NULL, k->packed = NULL;
    if (t->owned) { /* the bytes move over */
        t->owned = NULL;
    } else { /* a view into m's file (a float candidate left as it was): copied */
        if (!(k->owned = lb_alloc(t->nbytes))) return LB_ERR_NOMEM;
        memcpy(k->owned, t->data, t->nbytes);
        k->data = k->owned;
    }
    return LB_OK;
}

/* One measurement: tensor `name` alone quantized by c, scored against ref. */
static lb_status measure_one(const lb_sensitivity_opts *o, const lb_candidate *c, const char *name, lb_model *ref,
                             const float *w0, lb_sensitivity *out, size_t cell) {
    lb_model *m = NULL;
    lb_plan p;
    lb_plan_init(&p);
    lb_quantize_report rep;
    memset(&rep, 0, sizeof rep);
    lb_status st = lb_model_load(o->model_path, NULL, &m);
    if (st == LB_OK) st = lb_plan_add_rule(&p, name, &c->spec, &c->opts);
    if (st == LB_OK) st = lb_plan_resolve(&p, m);
    if (st == LB_OK && lb_plan_check(&p) != LB_OK) goto done; /* this method cannot make this format: NAN */
    if (st == LB_OK) st = lb_quantize_model_calibrated(m, &p, o->stats, &rep);
    if (st == LB_OK) {
        lb_eval_opts e = o->eval;
        e.ref = ref;
        lb_eval_result r;
        if ((st = lb_evaluate(m, o->text, &e, &r)) == LB_OK) {
            const lb_tensor_report *t = &rep.tensors[0];
            double n = (double)t->rows * (double)t->cols;
            out->bits[cell] = t->bpw * n;
            out->kld[cell] = r.kld;
            out->dnll[cell] = r.nll - out->nll;
            out->proxy[cell] = t->proxy_loss;
            st = weight_proxies(m, p.entries[0].tensor, w0, o->stats, out, cell);
            out->tokens = r.tokens;
        }
    }
    if (st == LB_OK && o->keep_tensors) st = keep_tensor(m, &p, &rep, out, cell);
done:
    lb_quantize_report_free(&rep);
    lb_plan_free(&p);
    lb_model_free(m);
    return st;
}

lb_status lb_plan_cell_fail(lb_status st, const char *item, const lb_candidate *c) {
    char what[64];
    lb_qspec_format(&c->spec, what, sizeof what);
    return lb_fail_context(st, "sensitivity of '%s' to %s by %s", item, what, c->opts.method->name);
}

lb_status lb_plan_ref_nll(const lb_sensitivity_opts *o, const lb_model *ref, double *nll) {
    lb_eval_opts e = o->eval;
    e.ref = NULL, e.ref_logits = NULL; /* no KL of the model with itself */
    lb_eval_result r;
    lb_status st = lb_evaluate(ref, o->text, &e, &r);
    if (st == LB_OK) *nll = r.nll;
    return st;
}

lb_status lb_sensitivity_measure(const lb_sensitivity_opts *o, const lb_candidate *cands, int n_candidates,
                                 lb_sensitivity *out) {
    memset(out, 0, sizeof *out);
    if (!o || !o->model_path || !o->text || !cands || n_candidates < 1)
        return lb_fail(LB_ERR_INVALID, "sensitivity: no model, text or candidates");
    if (o->row_blocks < 0) return lb_fail(LB_ERR_INVALID, "sensitivity: %d row blocks", o->row_blocks);
    if (o->row_blocks > 0) {
        lb_status st = lb_plan_measure_rowblocks(o, cands, n_candidates, out);
        if (st != LB_OK) lb_sensitivity_free(out);
        return st;
    }
    double t0 = lb_now();
    lb_model *ref = NULL;
    lb_plan sel;
    lb_plan_init(&sel);
    lb_status st = lb_model_load(o->model_path, NULL, &ref);
    if (st == LB_OK) st = select_tensors(o, &cands[0], ref, &sel);
    if (st == LB_OK && o->stats) st = lb_calib_stats_check(o->stats, ref);
    int T = st == LB_OK ? sel.n_entries : 0, C = n_candidates;
    size_t cells = (size_t)T * (size_t)C;
    if (st == LB_OK) {
        out->n_tensors = T, out->n_candidates = C;
        out->tensor = lb_calloc((size_t)T, sizeof *out->tensor);
        out->names = lb_calloc((size_t)T, sizeof *out->names);
        out->weights = lb_calloc((size_t)T, sizeof *out->weights);
        double **cols[7] = {&out->bits, &out->kld, &out->dnll, &out->proxy, &out->werr, &out->hawq, &out->fisher};
        for (int k = 0; k < 7; k++)
            if ((*cols[k] = lb_alloc(cells * sizeof(double))))
                for (size_t i = 0; i < cells; i++) (*cols[k])[i] = NAN;
        if (o->keep_tensors) out->quantized = lb_calloc(cells, sizeof *out->quantized);
        if ((out->group = lb_alloc((size_t)(T ? T : 1) * sizeof *out->group)))
            for (int t = 0; t < T; t++) out->group[t] = t;
        out->n_groups = T;
        if (!out->tensor || !out->names || !out->weights || !out->bits || !out->kld || !out->dnll || !out->proxy ||
            !out->werr || !out->hawq || !out->fisher || !out->group || (o->keep_tensors && !out->quantized))
            st = LB_ERR_NOMEM;
    }
    for (int t = 0; st == LB_OK && t < T; t++) {
        const lb_tensor *w = lb_model_tensor_at(ref, sel.entries[t].tensor);
        out->tensor[t] = sel.entries[t].tensor;
        snprintf(out->names[t], sizeof out->names[t], "%s", sel.entries[t].name);
        out->weights[t] = w->rows * w->cols;
    }
    if (st == LB_OK) st = lb_plan_ref_nll(o, ref, &out->nll);
    size_t todo = 0, done = 0;
    for (size_t i = 0; i < cells; i++) todo += !o->mask || o->mask[i];
    lb_progress prog;
    lb_progress_begin(&prog, "sensitivity", (uint64_t)todo);
    for (int t = 0; st == LB_OK && t < T; t++) {
        lb_progress_item(&prog, out->names[t]);
        const lb_tensor *w = lb_model_tensor_at(ref, out->tensor[t]);
        float *wd = lb_alloc((size_t)out->weights[t] * sizeof *wd);
        if (!wd) st = LB_ERR_NOMEM;
        if (st == LB_OK) st = lb_dequantize(w, wd);
        for (int c = 0; st == LB_OK && c < C; c++) {
            size_t cell = (size_t)t * C + (size_t)c;
            if (o->mask && !o->mask[cell]) continue;
            st = measure_one(o, &cands[c], out->names[t], ref, wd, out, cell);
            if (st != LB_OK) st = lb_plan_cell_fail(st, out->names[t], &cands[c]);
            lb_progress_update(&prog, (uint64_t)++done);
        }
        lb_free(wd);
    }
    lb_progress_end(&prog);
    out->seconds = lb_now() - t0;
    lb_plan_free(&sel);
    lb_model_free(ref);
    if (st != LB_OK) lb_sensitivity_free(out);
    return st;
}

/* ---- rank correlation ------------------------------------------------------ */

typedef struct {
    double v;
    int i;
} ranked;

static int by_value(const void *pa, const void *pb) {
    const ranked *a = pa, *b = pb;
    return (a->v > b->v) - (a->v < b->v);
}

/* average ranks (ties share the mean of their positions) into r */
static void ranks(const double *x, const int *idx, int n, ranked *tmp, double *r) {
    for (int k = 0; k < n; k++) tmp[k] = (ranked){x[idx[k]], k};
    qsort(tmp, (size_t)n, sizeof *tmp, by_value);
    for (int a = 0; a < n;) {
        int b = a;
        while (b + 1 < n && tmp[b + 1].v == tmp[a].v) b++;
        for (int k = a; k <= b; k++) r[tmp[k].i] = 0.5 * (a + b);
        a = b + 1;
    }
}

double lb_rank_correlation(const double *a, const double *b, int n) {
    int *idx = lb_alloc((size_t)(n > 0 ? n : 1) * sizeof *idx), m = 0;
    double *ra = lb_alloc((size_t)(n > 0 ? n : 1) * sizeof *ra), *rb = lb_alloc((size_t)(n > 0 ? n : 1) * sizeof *rb);
    ranked *tmp = lb_alloc((size_t)(n > 0 ? n : 1) * sizeof *tmp);
    double rho = NAN;
    if (idx && ra && rb && tmp) {
        for (int i = 0; i < n; i++)
            if (isfinite(a[i]) && isfinite(b[i])) idx[m++] = i;
        if (m >= 3) {
            ranks(a, idx, m, tmp, ra);
            ranks(b, idx, m, tmp, rb);
            double ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0;
            for (int k = 0; k < m; k++) ma += ra[k], mb += rb[k];
            ma /= m, mb /= m;
            for (int k = 0; k < m; k++) {
                sab += (ra[k] - ma) * (rb[k] - mb);
                saa += (ra[k] - ma) * (ra[k] - ma);
                sbb += (rb[k] - mb) * (rb[k] - mb);
            }
            if (saa > 0 && sbb > 0) rho = sab / sqrt(saa * sbb);
        }
    }
    lb_free(idx), lb_free(ra), lb_free(rb), lb_free(tmp);
    return rho;
}
