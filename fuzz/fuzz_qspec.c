/* libFuzzer target for format specs (lb_qspec_parse) and the reference
 * decoders. Input: spec text up to the first newline, then two bytes of
 * shape (rows 1..16, cols 1..320), then packed bytes. Any text must parse or
 * fail with LB_ERR_INVALID; a spec that parses must format to text that
 * parses to the same spec and the same layout; the packed bytes (cut or
 * zero-padded to the layout's size) must dequantize without a crash or be
 * refused as corrupt (LB_ERR_FORMAT) by loading and unpacking alike, and a
 * quantized tensor must decode into the unpacked form, re-encode, and decode
 * again to the same values (read-only formats, llama.cpp's types lowbit
 * does not write, have no unpacked form: dequantizing is all they do). */
#include "lowbit.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t n = 0;
    while (n < size && n < 200 && data[n] != '\n') n++;
    char text[201];
    memcpy(text, data, n);
    text[n] = '\0';
    lb_qspec s;
    lb_status st = lb_qspec_parse(text, &s);
    if (st != LB_OK) {
        if (st != LB_ERR_INVALID) abort();
        return 0;
    }
    char canon[128];
    lb_qspec back;
    lb_qspec_format(&s, canon, sizeof canon);
    if (lb_qspec_parse(canon, &back) != LB_OK || !lb_qspec_equal(&s, &back)) abort();
    if (!strcmp(lb_format_family_name(&s), "split")) return 0; /* its size is its bytes': fuzz_split.c */
    const uint8_t *rest = data + (n < size ? n + 1 : n);
    size_t left = size - (size_t)(rest - data);
    int64_t rows = left > 0 ? 1 + rest[0] % 16 : 3, cols = left > 1 ? 1 + rest[1] % 320 : 40;
    if (left > 2) {
        rest += 2;
        left -= 2;
    } else {
        left = 0;
    }
    lb_layout l, l2;
    if (lb_layout_compute(&s, rows, cols, &l) != LB_OK) abort();
    if (lb_layout_compute(&back, rows, cols, &l2) != LB_OK || l.total_bytes != l2.total_bytes) abort();
    uint8_t *bytes = calloc(l.total_bytes, 1), *bytes2 = calloc(l.total_bytes, 1);
    float *out = malloc((size_t)(rows * cols) * sizeof(float)), *out2 = malloc((size_t)(rows * cols) * sizeof(float));
    if (!bytes || !bytes2 || !out || !out2) abort();
    memcpy(bytes, rest, left < l.total_bytes ? left : l.total_bytes);
    lb_tensor t = {.spec = s, .rows = rows, .cols = cols, .data = bytes, .nbytes = l.total_bytes};
    st = lb_tensor_resolve(&t);
    if (st == LB_ERR_FORMAT) {
        /* bytes the family defines as corrupt (lut levels out of order, a
         * salient mask with the wrong count): refused on load, and by the
         * unpacking too */
        lb_qtensor q;
        if (lb_qtensor_init(&q, &s, rows, cols) != LB_OK) abort();
        if (lb_qtensor_decode(&q, bytes, l.total_bytes) == LB_OK) abort();
        lb_qtensor_free(&q);
        free(bytes), free(bytes2), free(out), free(out2);
        return 0;
    }
    if (st != LB_OK || lb_dequantize(&t, out) != LB_OK) abort();
    if (!lb_qspec_is_float(&s) && lb_format_grid(&s) != LB_GRID_NONE) { /* (NONE: read-only, no codes) */
        lb_qtensor q, q2;
        if (lb_qtensor_init(&q, &s, rows, cols) != LB_OK) abort();
        if (lb_qtensor_decode(&q, bytes, l.total_bytes) != LB_OK) abort();
        /* codes decode in range; scales may be NaN/Inf in arbitrary bytes: then encode refuses */
        if (lb_qtensor_encode(&q, bytes2) == LB_OK) {
            if (lb_qtensor_init(&q2, &s, rows, cols) != LB_OK) abort();
            if (lb_qtensor_decode(&q2, bytes2, l.total_bytes) != LB_OK) abort();
            t.data = bytes2;
            if (lb_dequantize(&t, out2) != LB_OK) abort();
            /* the same values (NaN only where the first decoding had NaN too) */
            for (int64_t i = 0; i < rows * cols; i++)
                if (out[i] != out2[i] && !(out[i] != out[i] && out2[i] != out2[i])) abort();
            lb_qtensor_free(&q2);
        }
        lb_qtensor_free(&q);
    }
    free(bytes);
    free(bytes2);
    free(out);
    free(out2);
    return 0;
}
