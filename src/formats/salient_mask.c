/* The column mask the salient-column families (ptq161, billm) keep in the
 * tensor tail: one bit per input channel, little-endian within bytes,
 * 1 = salient; the bits past the last column are 0. */
#include "format_internal.h"

size_t lb_col_mask_bytes(const lb_layout *l) { return (size_t)((l->cols + 7) / 8); }

void lb_col_mask_encode(const lb_qtensor *q, uint8_t *dst) {
    for (int64_t c = 0; c < q->cols; c++) dst[c >> 3] |= (uint8_t)((q->col_mask[c] & 1) << (c & 7));
}

void lb_col_mask_decode(lb_qtensor *q, const uint8_t *src) {
    for (int64_t c = 0; c < q->cols_padded; c++) q->col_mask[c] = c < q->cols ? (uint8_t)lb_col_mask_bit(src, c) : 0;
}

lb_status lb_col_mask_count(const lb_layout *l, const uint8_t *mask, int64_t *count) {
    int64_t n = 0;
    for (int64_t c = 0; c < l->cols; c++) n += lb_col_mask_bit(mask, c);
    for (int64_t c = l->cols; c < (int64_t)lb_col_mask_bytes(l) * 8; c++)
        if (lb_col_mask_bit(mask, c)) return lb_fail(LB_ERR_FORMAT, "column mask has bit %lld set past the last column", (long long)c);
    *count = n;
    return LB_OK;
}
