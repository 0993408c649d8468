/* A format family's round trip, shared by the format tests: every family row
 * must pass it (tests/test_formats.c runs the built-in ones, each new family's
 * own test runs it on its specs). */
#ifndef LB_FORMAT_CHECK_H
#define LB_FORMAT_CHECK_H

#include "test.h"

/* Random codes and fp16-exact parameters -> encode -> decode must give them
 * back, re-encoding must give the same bytes, and the reference
 * dequantization must agree with the value of every code. */
static inline int format_round_trip(const lb_qspec *s, int64_t rows, int64_t cols, lb_rng *r) {
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

/* A vector family's (e8p, vq) round trip of a filled q (codes, scales and,
 * for learned codebooks, vbook): encode -> decode gives them back,
 * re-encoding gives the same bytes, the reference dequantization agrees with
 * every value, and a byte short is refused. what names the case. */
static inline void format_vec_round_trip(const lb_qtensor *q, const char *what) {
    const int64_t rows = q->rows, cols = q->cols;
    lb_qtensor back;
    CHECK_OK(lb_qtensor_init(&back, &q->spec, rows, cols));
    size_t nb;
    CHECK_OK(lb_format_size(&q->spec, rows, cols, NULL, NULL, &nb));
    uint8_t *a = malloc(nb), *b = malloc(nb);
    float *deq = malloc(sizeof(float) * (size_t)(rows * cols));
    CHECK_OK(lb_qtensor_encode(q, a));
    CHECK_OK(lb_qtensor_decode(&back, a, nb));
    CHECK(!memcmp(q->vcodes, back.vcodes, (size_t)(rows * q->vecs_per_row * q->vec_stages) * 2));
    CHECK(!memcmp(q->scale, back.scale, (size_t)(q->n_groups * q->vec_stages) * sizeof(float)));
    if (q->vbook)
        CHECK(!memcmp(q->vbook, back.vbook, (size_t)(q->vec_stages * q->vbook_size * q->vec_dim) * sizeof(float)));
    CHECK_OK(lb_qtensor_encode(&back, b));
    CHECK(!memcmp(a, b, nb));
    lb_tensor t = {.spec = q->spec, .rows = rows, .cols = cols, .data = a, .nbytes = nb};
    CHECK_OK(lb_tensor_resolve(&t));
    CHECK_OK(lb_dequantize(&t, deq));
    int same = 1;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) same &= deq[r * cols + c] == lb_qtensor_value(q, r, c);
    CHECK_MSG(same, "%s x %lld: dequantize == lb_qtensor_value", what, (long long)cols);
    /* a byte short is refused */
    CHECK_FAILS(lb_qtensor_decode(&back, a, nb - 1), LB_ERR_FORMAT, "bytes");
    t.nbytes = nb - 1;
    CHECK_FAILS(lb_tensor_resolve(&t), LB_ERR_FORMAT, "bytes");
    lb_tensor_free(&t);
    free(a);
    free(b);
    free(deq);
    lb_qtensor_free(&back);
}

#endif
