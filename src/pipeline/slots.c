/* The slots a method call fills (src/quant/outliers.c, bias_correct.c),
 * moved into the model's linears by the whole-model driver. Kept apart from
 * quantize_model.c so that the driver's loop only calls check, then apply. */
#include "pipeline/slots.h"

#include <string.h>

static lb_linear *linear_of(const lb_model *m, const lb_tensor *t) {
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int i = 0; i < LB_N_LINEARS; i++)
            if (&m->layers[l].linear[i].w == t) return &m->layers[l].linear[i];
    return NULL;
}

static int has_extras(const lb_quant_extras *x) { return x && (x->nnz || x->bias); }

lb_status lb_pipeline_slots_check(const lb_model *m, const lb_tensor *t, const lb_quant_extras *x) {
    if (!has_extras(x)) return LB_OK;
    const lb_linear *L = linear_of(m, t);
    if (!L)
        return lb_fail(LB_ERR_INVALID,
                       "'%s' is not a linear's weight: outliers and bias correction need a linear's slots", t->name);
    if (x->rows != t->rows || x->cols != t->cols)
        return lb_fail(LB_ERR_INVALID, "'%s': slots for a %lld x %lld weight", t->name, (long long)x->rows,
                       (long long)x->cols);
    if (x->nnz && L->outliers.nnz)
        return lb_fail(LB_ERR_UNSUPPORTED,
                       "'%s' already has %lld outliers; quantizing it again with outliers would drop them", t->name,
                       (long long)L->outliers.nnz);
    return LB_OK;
}

lb_status lb_pipeline_slots_apply(lb_model *m, const lb_tensor *t, const lb_quant_extras *x) {
    if (!has_extras(x)) return LB_OK;
    lb_linear *L = linear_of(m, t);
    lb_status st = LB_OK;
    if (x->nnz) st = lb_linear_set_outliers(L, x->nnz, x->row_ptr, x->col_idx, x->values);
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
