/* Scale sections shared by the binary and ternary families: fp16 scales
 * lead each row, or a per-tensor scale sits in the tail. */
#include "format_internal.h"

size_t lb_lead_scales_row_bytes(const lb_layout *l) { return 2 * (size_t)l->groups_per_row; }

size_t lb_lead_scales_tail_bytes(const lb_qspec *s, const lb_layout *l) {
    (void)l;
    return s->group == LB_GROUP_TENSOR ? 2 : 0;
}

void lb_lead_scales_encode(const lb_qtensor *q, int64_t row, uint8_t *dst) {
    for (int64_t g = 0; g < q->groups_per_row; g++)
        lb_wr16(dst + 2 * g, lb_fp32_to_fp16(q->scale[row * q->groups_per_row + g]));
}

void lb_lead_scales_decode(lb_qtensor *q, int64_t row, const uint8_t *src) {
    for (int64_t g = 0; g < q->groups_per_row; g++) {
        q->scale[row * q->groups_per_row + g] = lb_fp16_to_fp32(lb_rd16(src + 2 * g));
        q->offset[row * q->groups_per_row + g] = 0.0f;
    }
}

void lb_lead_scales_encode_tail(const lb_qtensor *q, uint8_t *dst) {
    if (q->spec.group == LB_GROUP_TENSOR) lb_wr16(dst, lb_fp32_to_fp16(q->scale[0]));
}

void lb_lead_scales_decode_tail(lb_qtensor *q, const uint8_t *src) {
    if (q->spec.group == LB_GROUP_TENSOR) {
        q->scale[0] = lb_fp16_to_fp32(lb_rd16(src));
        q->offset[0] = 0.0f;
    }
}

float lb_lead_scale(const lb_layout *l, const uint8_t *data, int64_t row, int64_t g) {
    if (l->groups_per_row == 0) return lb_fp16_to_fp32(lb_rd16(data + (size_t)l->rows * l->row_bytes));
    return lb_fp16_to_fp32(lb_rd16(data + (size_t)row * l->row_bytes + 2 * (size_t)g));
}
