/* The slots a method call fills (src/quant/outliers.c, bias_correct.c,
 * rotate.c; a row's own adapter: onebit lowrank=r),
 * moved into the model's linears by the whole-model driver. Kept apart from
 * quantize_model.c so that the driver's loop only calls check, then apply. */
#include "pipeline/slots.h"

#include <string.h>

int lb_pipeline_find_linear(const lb_model *m, const lb_tensor *t, int *layer, int *which) {
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int w = 0; w < LB_N_LINEARS; w++)
            if (&m->layers[l].linear[w].w == t) {
                *layer = l;
                *which = w;
                return 1;
            }
    return 0;
}

static lb_linear *linear_of(const lb_model *m, const lb_tensor *t) {
    int l, w;
    return lb_pipeline_find_linear(m, t, &l, &w) ? &m->layers[l].linear[w] : NULL;
}

static int has_extras(const lb_quant_extras *x) {
    return x && (x->nnz || x->bias || x->in_signs || x->out_signs || x->adapter_rank);
}

lb_status lb_pipeline_slots_check(const lb_model *m, const lb_tensor *t, const lb_quant_extras *x) {
    if (!has_extras(x)) return LB_OK;
    const lb_linear *L = linear_of(m, t);
    if (!L)
        return lb_fail(LB_ERR_INVALID,
                       "'%s' is not a linear's weight: outliers, bias correction and rotations need a linear's slots", t->name);
    if (x->rows != t->rows || x->cols != t->cols)
        return lb_fail(LB_ERR_INVALID, "'%s': slots for a %lld x %lld weight", t->name, (long long)x->rows,
                       (long long)x->cols);
    if ((x->in_signs || x->out_signs) &&
        (L->in_scale || L->rot.kind != LB_ROTATION_NONE || L->out_rot.kind != LB_ROTATION_NONE))
        return lb_fail(LB_ERR_UNSUPPORTED,
                       "'%s' already has an input scale or a rotation; rotate=hadamard on top of it is not built yet",
                       t->name);
    if (x->nnz && L->outliers.nnz)
        return lb_fail(LB_ERR_UNSUPPORTED,
                       "'%s' already has %lld outliers; quantizing it again with outliers would drop them", t->name,
                       (long long)L->outliers.nnz);
    if (x->adapter_rank && L->adapter.rank)
        return lb_fail(LB_ERR_UNSUPPORTED,
                       "'%s' already has a rank-%d adapter; quantizing it again with a low-rank term would replace it",
                       t->name, L->adapter.rank);
    return LB_OK;
}

lb_status lb_pipeline_slots_apply(lb_model *m, const lb_tensor *t, const lb_quant_extras *x) {
    if (!has_extras(x)) return LB_OK;
    lb_linear *L = linear_of(m, t);
    lb_status st = LB_OK;
    if (x->nnz) st = lb_linear_set_outliers(L, x->nnz, x->row_ptr, x->col_idx, x->values);
    if (st == LB_OK && x->in_signs) st = lb_linear_set_hadamard(L, x->in_signs);
    if (st == LB_OK && x->out_signs) st = lb_linear_set_out_hadamard(L, x->out_signs);
    if (st == LB_OK && x->adapter_rank)
        st = lb_linear_set_adapter(L, x->adapter_rank, x->adapter_a, x->adapter_b, x->adapter_alpha);
    if (st == LB_OK && x->bias) {
        float *b = lb_alloc((size_t)t->rows * sizeof(float));
        if (!b) return LB_ERR_NOMEM;
        for (int64_t r = 0; r < t->rows; r++) b[r] = (L->bias ? L->bias[r] : 0.0f) + x->bias[r];
        st = lb_linear_set_bias(L, b);
        lb_free(b);
    }
    return st;
}

size_t lb_pipeline_slot_bytes(const lb_model *m, const lb_tensor *t) {
    const lb_linear *L = linear_of(m, t);
    return L ? lb_linear_slot_bytes(L) : 0;
}

void lb_pipeline_slots_unrotate(lb_model *m, const lb_tensor *t) {
    lb_linear *L = linear_of(m, t);
    if (!L) return;
    lb_linear_set_hadamard(L, NULL); /* removing a slot cannot fail */
    lb_linear_set_out_hadamard(L, NULL);
    lb_linear_set_adapter(L, 0, NULL, NULL, 0.0f);
}

lb_status lb_pipeline_unrotate_weight(const lb_quant_extras *x, float *w, int64_t rows, int64_t cols) {
    /* W = R_o^T W~ R_i: the rows through R_i^T, the columns through R_o^T */
    lb_status st = x && x->in_signs ? lb_rht_apply_rows(w, rows, cols, x->in_signs, 1) : LB_OK;
    if (st == LB_OK && x && x->out_signs) st = lb_rht_apply_cols(w, rows, cols, x->out_signs, 1);
    return st;
}

lb_status lb_pipeline_check_rotations(const lb_plan *p, const lb_act_quant *act) {
    if (act->kind != LB_AQ_TENSOR) return LB_OK;
    for (int i = 0; i < p->n_entries; i++)
        if (p->entries[i].opts.method && lb_method_opts_get(&p->entries[i].opts, "rotate") != 0)
            return lb_fail(LB_ERR_UNSUPPORTED,
                           "rotate=hadamard with a static activation range: the range would come from the unrotated "
                           "input's statistics; use a dynamic activation quantizer (int8:token)");
    return LB_OK;
}
