/* Float pass-through formats: f32, f16 (IEEE binary16), bf16. Rows are
 * plain little-endian arrays, identical to ggml's F32/F16/BF16. */
#include "format_internal.h"

#include <math.h>
#include <string.h>

void lb_float_dequantize_row(const lb_qspec *s, const uint8_t *src, int64_t cols, float *out) {
    if (s->family == LB_FAMILY_F32) {
        memcpy(out, src, (size_t)cols * 4); /* little-endian hosts only (checked at build) */
    } else if (s->family == LB_FAMILY_F16) {
        for (int64_t j = 0; j < cols; j++) out[j] = lb_fp16_to_fp32(lb_rd16(src + 2 * j));
    } else {
        for (int64_t j = 0; j < cols; j++) out[j] = lb_bf16_to_fp32(lb_rd16(src + 2 * j));
    }
}

lb_status lb_format_from_float(const lb_qspec *s, const float *w, int64_t rows, int64_t cols, uint8_t *out) {
    if (!lb_qspec_is_float(s)) return lb_fail(LB_ERR_INVALID, "lb_format_from_float needs f32, f16 or bf16");
    int64_t n = rows * cols;
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(w[i]))
            return lb_fail(LB_ERR_NUMERIC, "weight %lld (row %lld, col %lld) is %s", (long long)i,
                           (long long)(i / cols), (long long)(i % cols), isnan(w[i]) ? "NaN" : "infinite");
    if (s->family == LB_FAMILY_F32) {
        memcpy(out, w, (size_t)n * 4);
        return LB_OK;
    }
    for (int64_t i = 0; i < n; i++) {
        if (s->family == LB_FAMILY_F16) {
            uint16_t h = lb_fp32_to_fp16(w[i]);
            if ((h & 0x7c00u) == 0x7c00u)
                return lb_fail(LB_ERR_NUMERIC, "weight %g (row %lld) overflows f16", (double)w[i],
                               (long long)(i / cols));
            lb_wr16(out + 2 * i, h);
        } else {
            lb_wr16(out + 2 * i, lb_fp32_to_bf16(w[i]));
        }
    }
    return LB_OK;
}
