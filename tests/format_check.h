/* A format family's round trip, shared by the format tests: every family row
 * must pass it (tests/test_formats.c runs the built-in ones, each new family's
 * own test runs it on its specs). */
#ifndef LB_FORMAT_CHECK_H
#define LB_FORMAT_CHECK_H

#include "test.h"

/* Random codes and fp16-exact parameters -> encode -> decode must give them
 * back, re-encoding must give the same bytes, and the reference
 * dequantization must agree with the value of every code. */
static int format_round_trip(const lb_qspec *s, int64_t rows, int64_t cols, lb_rng *r) {
    lb_qtensor q, back;
    int fails = 0;
    if (lb_qtensor_init(&q, s, rows, cols) != LB_OK) return 1;
    int levels = lb_format_levels(s);
    for (int64_t i = 0; i < rows * q.cols_padded; i++) q.codes[i] = (uint8_t)(lb_rng_u32(r) % (uint32_t)levels);
    for (int64_t k = 0; k < q.n_groups; k++) {
        q.scale[k] = (float)lb_rng_normal(r);
        q.offset[k] = (float)lb_rng_normal(r);
        q.zero[k] = (uint8_t)(lb_rng_u32(r) % (uint32_t)levels);
        /* a per-group codebook (lut): random levels, ascending as the format demands */
        for (int c = 0; q.lut && c < levels; c++) {
            float v = (float)lb_rng_normal(r), *lv = q.lut + k * levels;
            int j = c;
            for (; j > 0 && lv[j - 1] > v; j--) lv[j] = lv[j - 1];
            lv[j] = v;
        }
    }
    for (int64_t c = 0; q.col_scale && c < cols; c++) q.col_scale[c] = (float)lb_rng_normal(r); /* onebit's g */
    if (lb_qtensor_store_scales(&q) != LB_OK) fails++;
    size_t total;
    lb_format_size(s, rows, cols, NULL, NULL, &total);
    uint8_t *bytes = lb_alloc(total), *bytes2 = lb_alloc(total);
    if (lb_qtensor_encode(&q, bytes) != LB_OK) fails++;
    if (lb_qtensor_init(&back, s, rows, cols) != LB_OK) fails++;
    if (lb_qtensor_decode(&back, bytes, total) != LB_OK) fails++;
    if (memcmp(q.codes, back.codes, (size_t)(rows * q.cols_padded))) fails++;
    for (int64_t k = 0; k < q.n_groups; k++) {
        if (q.scale[k] != back.scale[k] || q.offset[k] != back.offset[k]) fails++;
        if (s->family == LB_FAMILY_UNIFORM && s->zero == LB_ZERO_INT && q.zero[k] != back.zero[k]) fails++;
        if (q.lut && memcmp(q.lut + k * levels, back.lut + k * levels, (size_t)levels * sizeof(float))) fails++;
    }
    for (int64_t c = 0; q.col_scale && c < cols; c++)
        if (!back.col_scale || q.col_scale[c] != back.col_scale[c]) fails++;
    if (lb_qtensor_encode(&back, bytes2) != LB_OK || memcmp(bytes, bytes2, total)) fails++;
    lb_tensor t = {.spec = *s, .rows = rows, .cols = cols, .data = bytes, .nbytes = total};
    if (lb_tensor_resolve(&t) != LB_OK) fails++;
    float *row = lb_alloc((size_t)cols * sizeof(float));
    for (int64_t i = 0; i < rows; i++) {
        lb_dequantize_row(&t, i, row);
        for (int64_t c = 0; c < cols; c++)
            if (row[c] != lb_qtensor_value(&q, i, c)) {
                fails++;
                break;
            }
    }
    lb_free(row);
    lb_free(bytes);
    lb_free(bytes2);
    lb_qtensor_free(&q);
    lb_qtensor_free(&back);
    return fails;
}

#endif
