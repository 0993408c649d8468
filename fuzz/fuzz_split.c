/* libFuzzer target for split tensors (src/formats/split.c): the header and
 * its parts' bytes. Input: two bytes of shape (rows 1..64, cols 1..256),
 * then the tensor's bytes. They must be refused as corrupt (LB_ERR_FORMAT)
 * or hold: then every part is a view that resolves, the reference
 * dequantization row by row equals the whole-tensor one, and a product runs
 * each part's kernel without a crash (ASan and UBSan watch the reads). */
#include "lowbit.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    int64_t rows = 1 + data[0] % 64, cols = 1 + data[1] % 256;
    size_t n = size - 2;
    uint8_t *bytes = malloc(n ? n : 1);
    float *out = malloc((size_t)(rows * cols) * sizeof(float)), *row = malloc((size_t)cols * sizeof(float));
    float *x = calloc((size_t)cols, sizeof(float)), *y = malloc((size_t)rows * sizeof(float));
    if (!bytes || !out || !row || !x || !y) abort();
    memcpy(bytes, data + 2, n);
    lb_tensor t;
    memset(&t, 0, sizeof t);
    if (lb_qspec_parse("split", &t.spec) != LB_OK) abort();
    t.rows = rows, t.cols = cols, t.data = bytes, t.nbytes = n;
    lb_status st = lb_tensor_resolve(&t);
    if (st != LB_OK && st != LB_ERR_FORMAT) abort();
    if (st == LB_OK) {
        lb_split_view *v;
        if (lb_split_view_build(&t, &v) != LB_OK || v->n != lb_split_parts(&t) ||
            v->start[v->n] != (v->axis ? cols : rows))
            abort();
        lb_split_view_free(v);
        if (lb_dequantize(&t, out) != LB_OK) abort();
        for (int64_t r = 0; r < rows; r++) {
            lb_dequantize_row(&t, r, row);
            if (memcmp(row, out + r * cols, (size_t)cols * sizeof(float))) abort();
        }
        for (int64_t c = 0; c < cols; c++) x[c] = (float)(c % 5) - 2.0f;
        if (lb_matmul(&t, x, 1, y, NULL) != LB_OK) abort();
    }
    lb_tensor_drop_cache(&t);
    free(bytes), free(out), free(row), free(x), free(y);
    return 0;
}
