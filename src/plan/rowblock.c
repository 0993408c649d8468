/* Row-block sensitivity: a choice per range of output rows, not per tensor
 * (or, with block_axis 1, per range of input columns: a block is then the
 * rows x (c1 - c0) matrix of its columns, quantized with those channels'
 * statistics alone, lb_layer_stats_cols, as a column rule's part is).
 *
 * Each selected tensor's output rows are cut into `row_blocks` contiguous
 * ranges (boundaries on multiples of 8 rows where the tensor has at least 8
 * per block). A block is quantized on its own, as the (r1 - r0) x cols
 * matrix of its rows with the tensor's input statistics (X^T X is the
 * input's, so it holds for any subset of output rows; per-weight statistics
 * are sliced), which is exactly what a row-split tensor stores for it and
 * what its bits count. The block's rows, dequantized, are written into an
 * f32 copy of the model (every other weight as loaded) and the KL on the
 * calibration text is its sensitivity; its bits are what it adds to the
 * split tensor (its bytes, entry and padding; the tensor's 16-byte header
 * on its first block), so the plan's bpw is the file's. The kept rows (lb_sensitivity.rows_q)
 * let refine.c assemble any mix of blocks the same way: the mix is scored
 * through f32 matrix products of the dequantized weights, which differ from
 * the quantized kernels' sums only by rounding.
 *
 * For the row-independent methods (rtn, hqq, gptq: each output row's errors
 * are fed back along its own columns only, given X^T X) a block equals those
 * rows of the whole tensor quantized alike, for formats whose codes and
 * scales are per row; trellis codes running down the columns are not (a
 * block is then its own, shorter, column sequences). */
#include "plan/plan_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

int lb_plan_row_ranges(int64_t rows, int n, int64_t *bounds) {
    int k = 0;
    bounds[0] = 0;
    int64_t align = rows >= 8 * (int64_t)n ? 8 : 1;
    for (int b = 1; b <= n; b++) {
        int64_t e = b == n ? rows : (int64_t)llround((double)rows * b / n / (double)align) * align;
        if (e > rows) e = rows;
        if (e > bounds[k]) bounds[++k] = e;
    }
    return k;
}

/* Quantizes rows [r0, r1) of w0 (the tensor's f32 weights) by c into out
 * (dequantized, (r1 - r0) x cols) and their stored bits; *bits stays NAN
 * when the method cannot make the format. A block of a tensor cut in two or
 * more is a part of a split tensor (formats/split.c), charged what it adds
 * there: its entry and padding, and the first block the tensor's header. */
static lb_status quantize_block(const lb_candidate *c, const lb_layer_stats *ls, const float *block, int axis,
                                int64_t rows, int64_t cols, int64_t r0, int64_t r1, int split, const char *name,
                                float *out, double *bits) {
    const lb_method *m = c->opts.method;
    int is_float = lb_qspec_is_float(&c->spec);
    if (!is_float && m->check && m->check(&c->spec, &c->opts) != LB_OK) return LB_OK;
    lb_layer_stats bs;
    memset(&bs, 0, sizeof bs);
    unsigned need = is_float ? 0 : lb_method_opts_stats(&c->opts);
    if (need && !ls) return lb_fail(LB_ERR_INVALID, "method %s needs calibration statistics", m->name);
    lb_status st = LB_OK;
    if (need && !axis) bs = lb_layer_stats_rows(ls, r0, r1);
    if (need && axis) st = lb_layer_stats_cols(ls, r0, r1, &bs);
    lb_tensor q;
    memset(&q, 0, sizeof q);
    if (st == LB_OK)
        st = lb_quantize_tensor(m, &c->opts, need ? &bs : NULL, block, axis ? rows : r1 - r0, axis ? r1 - r0 : cols,
                                &c->spec, name, &q);
    if (st == LB_OK) st = lb_dequantize(&q, out);
    if (st == LB_OK)
        *bits = 8.0 * (double)(split ? lb_split_part_bytes(q.nbytes) + (r0 == 0 ? LB_SPLIT_HEAD_BYTES : 0) : q.nbytes);
    lb_tensor_free(&q);
    if (need && axis) lb_layer_stats_free(&bs);
    return st;
}

void lb_plan_block_get(const float *w, int64_t rows, int64_t cols, int axis, int64_t a0, int64_t a1, float *packed) {
    if (!axis) {
        memcpy(packed, w + a0 * cols, (size_t)((a1 - a0) * cols) * sizeof *packed);
        return;
    }
    for (int64_t r = 0; r < rows; r++) memcpy(packed + r * (a1 - a0), w + r * cols + a0, (size_t)(a1 - a0) * sizeof *w);
}

void lb_plan_block_put(float *w, int64_t rows, int64_t cols, int axis, int64_t a0, int64_t a1, const float *packed) {
    if (!axis) {
        memcpy(w + a0 * cols, packed, (size_t)((a1 - a0) * cols) * sizeof *packed);
        return;
    }
    for (int64_t r = 0; r < rows; r++) memcpy(w + r * cols + a0, packed + r * (a1 - a0), (size_t)(a1 - a0) * sizeof *w);
}

lb_status lb_plan_own_f32(lb_model *m, int ti, float **buf, lb_tensor *saved) {
    lb_tensor *slot = lb_model_tensor_at(m, ti);
    *saved = *slot;
    *buf = lb_alloc((size_t)(slot->rows * slot->cols) * sizeof **buf);
    if (!*buf) return LB_ERR_NOMEM;
    lb_status st = lb_dequantize(slot, *buf);
    if (st != LB_OK) {
        lb_free(*buf), *buf = NULL;
        return st;
    }
    lb_tensor t;
    lb_tensor_wrap_f32(&t, slot->name, *buf, slot->rows, slot->cols);
    t.owned = (uint8_t *)*buf; /* lb_tensor_free(slot) frees it */
    *slot = t;
    return LB_OK;
}

lb_status lb_plan_measure_rowblocks(const lb_sensitivity_opts *o, const lb_candidate *cands, int C,
                                    lb_sensitivity *out) {
    double t0 = lb_now();
    int N = o->row_blocks, axis = o->block_axis ? 1 : 0;
    lb_model *ref = NULL, *m = NULL;
    lb_plan sel;
    lb_plan_init(&sel);
    lb_status st = lb_model_load(o->model_path, NULL, &ref);
    if (st == LB_OK) st = lb_model_load(o->model_path, NULL, &m);
    if (st == LB_OK) {
        st = lb_plan_add_selection(&sel, o->tensors ? o->tensors : "linears", &cands[0].spec, &cands[0].opts);
        if (st == LB_OK) st = lb_plan_resolve(&sel, ref);
    }
    if (st == LB_OK && o->stats) st = lb_calib_stats_check(o->stats, ref);
    int64_t *bounds = lb_alloc((size_t)(N + 1) * sizeof *bounds);
    if (st == LB_OK && !bounds) st = LB_ERR_NOMEM;
    int T = 0;
    for (int e = 0; st == LB_OK && e < sel.n_entries; e++) {
        const lb_tensor *w = lb_model_tensor_at(ref, sel.entries[e].tensor);
        T += lb_plan_row_ranges(axis ? w->cols : w->rows, N, bounds);
    }
    out->block_axis = axis;
    size_t cells = (size_t)T * (size_t)C;
    if (st == LB_OK) {
        out->n_tensors = T, out->n_candidates = C, out->n_groups = T;
        out->tensor = lb_calloc((size_t)T, sizeof *out->tensor);
        out->names = lb_calloc((size_t)T, sizeof *out->names);
        out->weights = lb_calloc((size_t)T, sizeof *out->weights);
        out->row0 = lb_calloc((size_t)T, sizeof *out->row0);
        out->row1 = lb_calloc((size_t)T, sizeof *out->row1);
        out->group = lb_calloc((size_t)T, sizeof *out->group);
        out->rows_q = lb_calloc(cells, sizeof *out->rows_q);
        double **cols[7] = {&out->bits, &out->kld, &out->dnll, &out->proxy, &out->werr, &out->hawq, &out->fisher};
        for (int k = 0; k < 7; k++)
            if ((*cols[k] = lb_alloc(cells * sizeof(double))))
                for (size_t i = 0; i < cells; i++) (*cols[k])[i] = NAN;
        if (!out->tensor || !out->names || !out->weights || !out->row0 || !out->row1 || !out->group || !out->rows_q ||
            !out->bits || !out->kld || !out->dnll || !out->proxy || !out->werr || !out->hawq || !out->fisher)
            st = LB_ERR_NOMEM;
    }
    for (int e = 0, t = 0; st == LB_OK && e < sel.n_entries; e++) {
        const lb_tensor *w = lb_model_tensor_at(ref, sel.entries[e].tensor);
        int n = lb_plan_row_ranges(axis ? w->cols : w->rows, N, bounds);
        for (int b = 0; b < n; b++, t++) {
            out->tensor[t] = sel.entries[e].tensor, out->group[t] = t;
            out->row0[t] = bounds[b], out->row1[t] = bounds[b + 1];
            out->weights[t] = (bounds[b + 1] - bounds[b]) * (axis ? w->rows : w->cols);
            snprintf(out->names[t], sizeof out->names[t], "%.60s %s %lld:%lld", sel.entries[e].name,
                     axis ? "cols" : "rows", (long long)bounds[b], (long long)bounds[b + 1]);
        }
    }
    if (st == LB_OK) st = lb_plan_ref_nll(o, ref, &out->nll);
    size_t todo = 0, done = 0;
    for (size_t i = 0; i < cells; i++) todo += !o->mask || o->mask[i];
    lb_progress prog;
    lb_progress_begin(&prog, "sensitivity", (uint64_t)todo);
    for (int t = 0; st == LB_OK && t < T;) {
        /* one tensor: its f32 weights in m, then each of its blocks */
        int ti = out->tensor[t];
        lb_tensor saved;
        float *buf = NULL;
        st = lb_plan_own_f32(m, ti, &buf, &saved);
        lb_tensor *slot = lb_model_tensor_at(m, ti);
        int64_t rows = slot->rows, cols = slot->cols;
        float *w0 = lb_alloc((size_t)(rows * cols) * sizeof *w0), *b0 = lb_alloc((size_t)(rows * cols) * sizeof *b0);
        if (st == LB_OK && (!w0 || !b0)) st = LB_ERR_NOMEM;
        if (st == LB_OK) memcpy(w0, buf, (size_t)(rows * cols) * sizeof *w0);
        const lb_layer_stats *ls = o->stats ? lb_calib_stats_for_tensor(o->stats, ref, lb_model_tensor_at(ref, ti)) : NULL;
        int split = t + 1 < T && out->tensor[t + 1] == ti; /* two blocks or more: a split tensor */
        for (; st == LB_OK && t < T && out->tensor[t] == ti; t++) {
            lb_progress_item(&prog, out->names[t]);
            int64_t r0 = out->row0[t], r1 = out->row1[t];
            size_t nb = (size_t)((r1 - r0) * (axis ? rows : cols));
            lb_plan_block_get(w0, rows, cols, axis, r0, r1, b0);
            for (int c = 0; st == LB_OK && c < C; c++) {
                size_t cell = (size_t)t * C + (size_t)c;
                if (o->mask && !o->mask[cell]) continue;
                float *q = lb_alloc(nb * sizeof *q);
                if (!q) st = LB_ERR_NOMEM;
                double bits = NAN;
                if (st == LB_OK)
                    st = quantize_block(&cands[c], ls, b0, axis, rows, cols, r0, r1, split, out->names[t], q, &bits);
                if (st == LB_OK && !isnan(bits)) {
                    double e2 = 0, fe = 0;
                    for (size_t i = 0; i < nb; i++) {
                        double d = (double)q[i] - (double)b0[i];
                        e2 += d * d;
                        /* block element i: row i / width, column i % width of the block */
                        size_t at = axis ? (size_t)(i / (size_t)(r1 - r0)) * (size_t)cols + (size_t)r0 + i % (size_t)(r1 - r0)
                                         : (size_t)r0 * (size_t)cols + i;
                        if (ls && ls->grad_sq) fe += (double)ls->grad_sq[at] * d * d;
                    }
                    lb_plan_block_put(buf, rows, cols, axis, r0, r1, q);
                    lb_tensor_resolve(slot); /* the f32 kernel's cache, if any, is stale */
                    lb_eval_opts e = o->eval;
                    e.ref = ref;
                    lb_eval_result r;
                    st = lb_evaluate(m, o->text, &e, &r);
                    lb_plan_block_put(buf, rows, cols, axis, r0, r1, b0);
                    lb_tensor_resolve(slot);
                    if (st == LB_OK) {
                        out->bits[cell] = bits, out->kld[cell] = r.kld, out->dnll[cell] = r.nll - out->nll;
                        out->werr[cell] = e2, out->tokens = r.tokens;
                        if (ls && ls->grad_sq) out->fisher[cell] = fe;
                        out->rows_q[cell] = q, q = NULL;
                    }
                }
                lb_free(q);
                if (st != LB_OK) st = lb_plan_cell_fail(st, out->names[t], &cands[c]);
                lb_progress_update(&prog, (uint64_t)++done);
            }
        }
        if (buf) { /* the model's own tensor back */
            lb_tensor_free(slot);
            *slot = saved;
        }
        lb_free(w0), lb_free(b0);
    }
    lb_progress_end(&prog);
    out->seconds = lb_now() - t0;
    lb_free(bounds);
    lb_plan_free(&sel);
    lb_model_free(m);
    lb_model_free(ref);
    return st;
}
