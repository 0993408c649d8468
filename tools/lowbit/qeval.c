/* Quantize, save, reload and evaluate one configuration: what `lowbit demo`
 * and `lowbit sweep` both do for every row of their tables. The model is
 * loaded afresh from its file, quantized by a plan (one rule: the selection
 * gets spec by the method with its options), written as GGUF, loaded back
 * (the numbers describe a file that exists), and evaluated against the
 * reference model. */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static int qeval_fail(char *err, size_t n, int code, const char *what) {
    snprintf(err, n, "%s%s%s", what, *what ? ": " : "", lb_last_error());
    return code;
}

int cli_quantize_eval(const cli_qeval *q, const lb_qspec *spec, const lb_method_opts *opts, const char *path,
                      cli_qeval_row *row, lb_model **keep, char *err, size_t n) {
    memset(row, 0, sizeof *row);
    row->file_bytes = -1;
    if (keep) *keep = NULL;
    err[0] = 0;
    lb_model *m = NULL;
    if (lb_model_load(q->model_path, NULL, &m) != LB_OK) return qeval_fail(err, n, CLI_FAIL, "loading the model");
    lb_plan plan;
    lb_plan_init(&plan);
    int rc = CLI_OK;
    if ((q->recipe ? lb_plan_load_recipe(&plan, q->recipe)
                   : lb_plan_add_selection(&plan, q->tensors ? q->tensors : "linears", spec, opts)) != LB_OK ||
        lb_plan_resolve(&plan, m) != LB_OK)
        rc = qeval_fail(err, n, CLI_FAIL, "plan");
    plan.act = q->act;
    /* a method that cannot make this format says so before any work */
    if (rc == CLI_OK && lb_plan_check(&plan) != LB_OK) rc = qeval_fail(err, n, CLI_SKIP, "");
    double t0 = lb_now();
    if (rc == CLI_OK && (q->recipe || spec->family != LB_FAMILY_F32 || q->act.kind != LB_AQ_NONE) &&
        (q->sequential ? lb_quantize_model_sequential(m, &plan, q->sequential, NULL)
                       : lb_quantize_model_calibrated(m, &plan, q->stats, NULL)) != LB_OK)
        rc = qeval_fail(err, n, CLI_FAIL, "quantizing");
    row->quant_seconds = lb_now() - t0;
    if (rc == CLI_OK && lb_model_save_gguf(m, path) != LB_OK) rc = qeval_fail(err, n, CLI_FAIL, "saving");
    lb_model_free(m);
    m = NULL;
    /* evaluate the file, not the memory */
    if (rc == CLI_OK && lb_model_load(path, NULL, &m) != LB_OK) rc = qeval_fail(err, n, CLI_FAIL, "reloading");
    if (rc == CLI_OK && lb_evaluate(m, q->text, &q->eval, &row->ev) != LB_OK) rc = qeval_fail(err, n, CLI_FAIL, "evaluating");
    if (rc == CLI_OK) {
        /* bpw of the selected tensors as read back from the file: every stored
         * byte of them (codes, scales, zeros, padding) and of their linears'
         * slots (outliers, bias, a static activation clip:
         * lb_linear_slot_bytes, as lb_model_sizes counts them) over their weights */
        uint64_t bytes = 0, weights = 0;
        if (lb_plan_resolve(&plan, m) != LB_OK) rc = qeval_fail(err, n, CLI_FAIL, "plan");
        for (int i = 0; rc == CLI_OK && i < plan.n_entries; i++) {
            const lb_tensor *t = lb_model_tensor_at(m, plan.entries[i].tensor);
            bytes += t->nbytes;
            weights += (uint64_t)(t->rows * t->cols);
            for (int l = 0; l < m->cfg.n_layers; l++)
                for (int k = 0; k < LB_N_LINEARS; k++)
                    if (&m->layers[l].linear[k].w == t) bytes += lb_linear_slot_bytes(&m->layers[l].linear[k]);
        }
        lb_model_size sz;
        lb_model_sizes(m, &sz);
        struct stat st;
        row->bpw = weights ? 8.0 * (double)bytes / (double)weights : 0;
        row->bpw_all = sz.bpw_all;
        row->file_bytes = stat(path, &st) == 0 ? (long long)st.st_size : -1;
    }
    lb_plan_free(&plan);
    if (rc == CLI_OK && keep) *keep = m;
    else lb_model_free(m);
    return rc;
}

void cli_gguf_path(const char *dir, const char *stem, const char *spec, char *path, size_t n) {
    int k = snprintf(path, n, "%.4000s/%.100s-", dir, stem);
    if (k < 0 || (size_t)k >= n) return;
    snprintf(path + k, n - (size_t)k, "%.200s.gguf", spec);
    for (char *p = path + k; *p; p++)
        if (*p == ':' || *p == '/' || *p == ' ' || *p == '=' || *p == ',') *p = '_';
}
