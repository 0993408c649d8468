/* Load-time check that every weight of a model is a finite number.
 *
 * A NaN or Inf in an embedding or a norm otherwise passes silently: the
 * forward pass turns it into NaN logits and the tools print <unk> or a
 * perplexity of nan. Loaders call lb_model_check_finite (from
 * lb_model_finish) once, so every path into a model is covered.
 *
 * Every tensor is decoded with the reference dequantization, 16 rows at a
 * time, in parallel (for f32 a copy; f16 and bf16 keep NaN and Inf): a
 * non-finite value, scale, offset or codebook entry shows up as a
 * non-finite weight, so every stored number that reaches the forward pass is
 * covered, through one path for every family; codes themselves are integers
 * and cannot be non-finite. The cost is one pass over the weights (a few ms
 * for stories260K), well below the forward pass of a single batch. */
#include "core/mapped.h"
#include "model/model_internal.h"

#include <math.h>

enum { ROWS_PER_TILE = 16 };

static const char *kind_of(float v) { return isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf"; }

static lb_status report(const lb_tensor *t, int64_t row, int64_t col, float v, const char *why) {
    return lb_fail(LB_ERR_NUMERIC, "tensor '%s' has a non-finite value: row %lld, column %lld is %s%s", t->name,
                   (long long)row, (long long)col, kind_of(v), why);
}

/* First row of [r0, r1) (in row order, whatever the thread count) holding a
 * non-finite decoded weight, or r1. */
static int64_t first_bad_row(const lb_tensor *t, int64_t r0_all, int64_t r1_all, int *nomem) {
    int64_t tiles = (r1_all - r0_all + ROWS_PER_TILE - 1) / ROWS_PER_TILE, first = r1_all;
    int oom = 0;
#pragma omp parallel
    {
        float *buf = lb_alloc((size_t)ROWS_PER_TILE * (size_t)t->cols * sizeof(float));
        if (!buf) {
#pragma omp atomic write
            oom = 1;
        }
#pragma omp for schedule(static)
        for (int64_t k = 0; k < tiles; k++) {
            if (!buf) continue;
            int64_t r0 = r0_all + k * ROWS_PER_TILE, r1 = r0 + ROWS_PER_TILE < r1_all ? r0 + ROWS_PER_TILE : r1_all;
            lb_dequantize_rows(t, r0, r1, buf);
            for (int64_t i = 0; i < (r1 - r0) * t->cols; i++)
                if (!isfinite(buf[i])) {
                    int64_t r = r0 + i / t->cols;
#pragma omp critical /* unnamed: a named one is an exported symbol */
                    if (r < first) first = r;
                    break;
                }
        }
        lb_free(buf);
    }
    *nomem = oom;
    return first;
}

/* rows checked between page releases: about 16 MB of a mapped input */
static int64_t rows_per_piece(const lb_tensor *t) {
    size_t rb = t->layout.row_bytes ? t->layout.row_bytes : 1;
    int64_t n = (int64_t)(((size_t)16 << 20) / rb);
    return n < ROWS_PER_TILE ? ROWS_PER_TILE : n;
}

static lb_status check_tensor(const lb_tensor *t) {
    int nomem = 0;
    int64_t r = t->rows, piece = rows_per_piece(t);
    for (int64_t r0 = 0; r0 < t->rows && r == t->rows && !nomem; r0 += piece) {
        int64_t r1 = r0 + piece < t->rows ? r0 + piece : t->rows;
        int64_t bad = first_bad_row(t, r0, r1, &nomem);
        if (bad < r1) r = bad;
        /* read once here: a mapped model does not stay resident for it */
        if (t->layout.row_bytes) lb_map_release(t->data + (size_t)r0 * t->layout.row_bytes,
                                                (size_t)(r1 - r0) * t->layout.row_bytes);
    }
    if (nomem) return lb_fail(LB_ERR_NOMEM, "out of memory checking tensor '%s'", t->name);
    if (r == t->rows) return LB_OK;
    float *row = lb_alloc((size_t)t->cols * sizeof(float));
    if (!row) return LB_ERR_NOMEM;
    lb_dequantize_row(t, r, row);
    int64_t c = 0;
    while (c < t->cols - 1 && isfinite(row[c])) c++;
    char spec[64], why[128] = "";
    lb_qspec_format(&t->spec, spec, sizeof spec);
    if (!lb_qspec_is_float(&t->spec))
        snprintf(why, sizeof why, " (decoded from %s: a stored scale or offset is not finite)", spec);
    lb_status st = report(t, r, c, row[c], why);
    lb_free(row);
    return st;
}

lb_status lb_model_check_finite(lb_model *m) {
    for (int i = 0; i < lb_model_n_tensors(m); i++) {
        const lb_tensor *t = lb_model_tensor_at(m, i);
        lb_status st = check_tensor(t);
        if (st != LB_OK) return st;
        lb_map_release(t->data, t->nbytes); /* and the tail (scales some formats keep after the rows) */
    }
    return LB_OK;
}
