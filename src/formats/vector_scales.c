/* What the vector families (e8p, vq) share: their unpacked form (vector
 * codes instead of one code per weight, one scale per group and stage) and
 * their stored scales, per group one fp16 per stage, at the start of each
 * row or, for one group per tensor, in the tensor tail. */
#include "format_internal.h"

#include <math.h>

lb_status lb_vec_qtensor_init(lb_qtensor *q, int vec_dim, int stages) {
    q->vec_dim = vec_dim;
    q->vec_stages = stages;
    q->vecs_per_row = q->cols_padded / vec_dim;
    lb_free(q->codes);
    q->codes = NULL;
    lb_free(q->scale);
    q->scale = lb_calloc((size_t)(q->n_groups * stages), sizeof(float));
    q->vcodes = lb_calloc((size_t)(q->rows * q->vecs_per_row * stages), sizeof(uint16_t));
    return q->scale && q->vcodes ? LB_OK : LB_ERR_NOMEM;
}

lb_status lb_vec_store_scales(lb_qtensor *q) {
    for (int64_t i = 0; i < q->n_groups * q->vec_stages; i++) {
        q->scale[i] = lb_round_fp16(q->scale[i]);
        if (!isfinite(q->scale[i]))
            return lb_fail(LB_ERR_NUMERIC, "%s: scale %lld is not finite in fp16 (weights beyond +-65504?)",
                           q->spec.family->name, (long long)i);
    }
    return LB_OK;
}

void lb_vec_scales_encode(const lb_qtensor *q, int64_t g, uint8_t *dst) {
    for (int t = 0; t < q->vec_stages; t++) lb_wr16(dst + 2 * t, lb_fp32_to_fp16(q->scale[t * q->n_groups + g]));
}

void lb_vec_scales_decode(lb_qtensor *q, int64_t g, const uint8_t *src) {
    for (int t = 0; t < q->vec_stages; t++) q->scale[t * q->n_groups + g] = lb_fp16_to_fp32(lb_rd16(src + 2 * t));
}
