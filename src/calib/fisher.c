/* Squared gradients per weight over the calibration text (issue 9 item 6):
 * the diagonal of the empirical Fisher information that SqueezeLLM uses as
 * its sensitivity (squeezellm weights=fisher) and sensitivity analysis reads.
 *
 * For every calibration sequence s (the sequences lb_calibrate runs: BOS +
 * block, cut at ctx, the token budget cutting the last one), g_s = the
 * gradient of the sequence's mean next-token cross-entropy with respect to
 * each linear weight, from the fp32 model's backward (src/train/model_grad.c);
 * the statistic is mean over sequences of g_s^2, per weight. SqueezeLLM sums
 * per-sample squared gradients (a sample being a sequence); the mean differs
 * by the sequence count, a constant that does not change the weighting.
 * The model must be fp32 (the trainer copies it; quantized tensors are
 * refused), sums run in double in sequence order, so the result does not
 * depend on the thread count. */
#include <math.h>
#include <string.h>

#include "calib_internal.h"
#include "train/train_internal.h"

static lb_status accumulate(const lb_train_model *tm, double **acc, int n_layers) {
    for (int l = 0; l < n_layers; l++)
        for (int w = 0; w < LB_N_LINEARS; w++) {
            const lb_train_linear *L = &tm->linears[l * LB_N_LINEARS + w];
            double *a = acc[l * LB_N_LINEARS + w];
            size_t n = (size_t)L->rows * L->cols;
            for (size_t i = 0; i < n; i++) a[i] += (double)L->dw[i] * L->dw[i];
        }
    return LB_OK;
}

lb_status lb_calib_fisher(const lb_model *m, const lb_calib_opts *o, lb_calib_stats *s) {
    lb_status st = lb_calib_stats_check(s, m);
    if (st != LB_OK) return st;
    if (s->mapped_parts) /* their arrays are the file's read-only pages: writing them would fault */
        return lb_fail(LB_ERR_INVALID, "squared gradients cannot be added to statistics read in place from their "
                       "file (lb_calib_stats_open): load them (lb_calib_stats_load)");
    lb_calib_opts def;
    if (!o) {
        lb_calib_opts_default(&def);
        o = &def;
    }
    lb_calib_opts oo = *o;
    oo.parts = 0; /* the activation parts are not collected here */
    lb_calib_prep p;
    st = lb_calib_prepare(m, &oo, LB_CALIB_ALL_PARTS, &p);
    if (st != LB_OK) return st;
    lb_train_model *tm = NULL;
    st = lb_train_model_from_model(m, 0, &tm);
    if (st != LB_OK) st = lb_fail_context(st, "squared gradients need the fp32 model");
    int n_lin = m->cfg.n_layers * LB_N_LINEARS;
    double **acc = st == LB_OK ? lb_calloc((size_t)n_lin, sizeof *acc) : NULL;
    if (st == LB_OK && !acc) st = LB_ERR_NOMEM;
    for (int i = 0; i < n_lin && st == LB_OK; i++) {
        const lb_train_linear *L = &tm->linears[i];
        if (!(acc[i] = lb_calloc((size_t)L->rows * L->cols, sizeof(double)))) st = LB_ERR_NOMEM;
    }
    if (st == LB_OK) st = lb_calib_alloc_grad_sq(s);
    lb_progress prog;
    lb_progress_begin(&prog, "squared gradients", (uint64_t)(p.end - p.first));
    int64_t done = 0, seqs = 0;
    for (int b = p.first; b < p.end && st == LB_OK; b++) {
        if (oo.tokens && done >= oo.tokens) break;
        int *tok = NULL;
        size_t nt;
        st = lb_tokenize(m->tokenizer, p.text->blocks[b].text, p.text->blocks[b].len, 1, 0, &tok, &nt);
        if (st != LB_OK) {
            st = lb_fail_context(st, "calibration block %d", b + 1);
            break;
        }
        int n = nt > (size_t)p.ctx ? p.ctx : (int)nt;
        if (oo.tokens && (int64_t)n > oo.tokens - done) n = (int)(oo.tokens - done);
        done += n;
        if (n >= 2) { /* a sequence of one token predicts nothing */
            double loss;
            lb_train_model_zero_grad(tm);
            st = lb_train_model_forward(tm, tok, tok + 1, 1, n - 1, &loss);
            if (st == LB_OK) st = lb_train_model_backward(tm);
            if (st == LB_OK) st = accumulate(tm, acc, m->cfg.n_layers);
            seqs++;
        }
        lb_free(tok);
        lb_progress_update(&prog, (uint64_t)(b - p.first + 1));
    }
    lb_progress_end(&prog);
    if (st == LB_OK && seqs == 0) st = lb_fail(LB_ERR_INVALID, "squared gradients: no calibration sequence of 2+ tokens");
    for (int i = 0; i < n_lin && st == LB_OK; i++) {
        const lb_train_linear *L = &tm->linears[i];
        size_t n = (size_t)L->rows * L->cols;
        for (size_t j = 0; j < n; j++) {
            s->grad_sq[i][j] = (float)(acc[i][j] / (double)seqs);
            if (!isfinite(s->grad_sq[i][j]))
                st = lb_fail(LB_ERR_NUMERIC, "squared gradient of blk.%d %s entry %zu is not finite", i / LB_N_LINEARS,
                             lb_linear_name(i % LB_N_LINEARS), j);
        }
    }
    if (acc)
        for (int i = 0; i < n_lin; i++) lb_free(acc[i]);
    lb_free(acc);
    lb_train_model_free(tm);
    lb_calib_prep_free(&p);
    if (st == LB_OK) lb_calib_link(s);
    return st;
}
