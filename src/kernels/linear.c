/* lb_linear: a stored weight plus optional slots (input scale, rotations
 * of the input and the output, sparse outliers, low-rank adapter, bias,
 * activation quantizer), and its forward pass
 *
 *   x' = Q((x / s) R),   y = x' (W + S + alpha B A)^T R_o + b
 *
 * (conventions in include/lowbit/linear.h). The weight goes through
 * lb_matmul (the format's cached kernel); the slots here are plain scalar
 * code, the reference tests/test_linear.c checks against dense matrices.
 * Every output element is computed by one thread in a fixed order, so
 * results do not depend on the thread count. */
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "lowbit/linear.h"

/* ---- checks -------------------------------------------------------------- */

static lb_status check_finite(const lb_linear *L, const char *what, const float *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return lb_fail(LB_ERR_NUMERIC, "linear '%s': %s[%zu] is %g", L->w.name, what, i, (double)v[i]);
    return LB_OK;
}

static lb_status check_weight(const lb_linear *L) {
    if (L->w.rows < 1 || L->w.cols < 1 || L->w.rows > INT32_MAX || L->w.cols > INT32_MAX)
        return lb_fail(LB_ERR_INVALID, "linear '%s' has an absurd shape %lld x %lld", L->w.name, (long long)L->w.rows,
                       (long long)L->w.cols);
    return LB_OK;
}

static lb_status check_in_scale(const lb_linear *L, const float *s) {
    size_t cols = (size_t)L->w.cols;
    for (size_t j = 0; j < cols; j++)
        if (!isfinite(s[j]) || s[j] == 0.0f)
            return lb_fail(isfinite(s[j]) ? LB_ERR_INVALID : LB_ERR_NUMERIC,
                           "linear '%s': input scale[%zu] is %g (must be finite and nonzero: the input is divided by it)",
                           L->w.name, j, (double)s[j]);
    return LB_OK;
}

/* a rotation over n entries (the input: cols; the output: rows) */
static lb_status check_hadamard(const lb_linear *L, const lb_rotation *rot, int64_t n, const char *side) {
    if (rot->kind == LB_ROTATION_NONE) return LB_OK;
    if (rot->kind != LB_ROTATION_HADAMARD)
        return lb_fail(LB_ERR_INVALID, "linear '%s': unknown %s rotation kind %d", L->w.name, side, (int)rot->kind);
    if (!rot->signs) return lb_fail(LB_ERR_INVALID, "linear '%s': %s Hadamard rotation without signs", L->w.name, side);
    lb_status st = lb_rht_check(n);
    if (st != LB_OK) return lb_fail_context(st, "linear '%s', %s rotation", L->w.name, side);
    for (int64_t j = 0; j < n; j++)
        if (rot->signs[j] != 1.0f && rot->signs[j] != -1.0f)
            return lb_fail(isfinite(rot->signs[j]) ? LB_ERR_INVALID : LB_ERR_NUMERIC,
                           "linear '%s': %s Hadamard sign[%lld] is %g, not +1 or -1", L->w.name, side, (long long)j,
                           (double)rot->signs[j]);
    return LB_OK;
}

static lb_status check_outliers(const lb_linear *L, int64_t nnz, const int32_t *row_ptr, const int32_t *col_idx,
                                const float *values) {
    int64_t rows = L->w.rows, cols = L->w.cols;
    if (nnz < 0 || nnz > rows * cols || nnz > INT32_MAX)
        return lb_fail(LB_ERR_INVALID, "linear '%s': %lld outliers for a %lld x %lld weight", L->w.name, (long long)nnz,
                       (long long)rows, (long long)cols);
    if (!row_ptr || !col_idx || !values)
        return lb_fail(LB_ERR_INVALID, "linear '%s': outliers without row_ptr, col_idx or values", L->w.name);
    if (row_ptr[0] != 0 || row_ptr[rows] != nnz)
        return lb_fail(LB_ERR_INVALID, "linear '%s': outlier row_ptr runs %d..%d, not 0..%lld", L->w.name, row_ptr[0],
                       row_ptr[rows], (long long)nnz);
    for (int64_t r = 0; r < rows; r++)
        if (row_ptr[r + 1] < row_ptr[r])
            return lb_fail(LB_ERR_INVALID, "linear '%s': outlier row_ptr decreases at row %lld", L->w.name, (long long)r);
    for (int64_t k = 0; k < nnz; k++)
        if (col_idx[k] < 0 || col_idx[k] >= cols)
            return lb_fail(LB_ERR_INVALID, "linear '%s': outlier %lld has column %d (width %lld)", L->w.name, (long long)k,
                           col_idx[k], (long long)cols);
    return check_finite(L, "outlier value", values, (size_t)nnz);
}

static lb_status check_adapter(const lb_linear *L, int rank, const float *a, const float *b, float alpha) {
    if (rank < 0 || rank > 65536) return lb_fail(LB_ERR_INVALID, "linear '%s': adapter rank %d", L->w.name, rank);
    if (!a || !b) return lb_fail(LB_ERR_INVALID, "linear '%s': adapter without A or B", L->w.name);
    if (!isfinite(alpha)) return lb_fail(LB_ERR_NUMERIC, "linear '%s': adapter alpha is %g", L->w.name, (double)alpha);
    lb_status st = check_finite(L, "adapter A", a, (size_t)rank * (size_t)L->w.cols);
    return st != LB_OK ? st : check_finite(L, "adapter B", b, (size_t)L->w.rows * (size_t)rank);
}

lb_status lb_linear_validate(const lb_linear *L) {
    lb_status st = check_weight(L);
    if (st != LB_OK) return st;
    if (!L->w.data) return lb_fail(LB_ERR_INVALID, "linear '%s' has no weight data", L->w.name);
    if (L->bias && (st = check_finite(L, "bias", L->bias, (size_t)L->w.rows)) != LB_OK) return st;
    if (L->in_scale && (st = check_in_scale(L, L->in_scale)) != LB_OK) return st;
    if ((st = check_hadamard(L, &L->rot, L->w.cols, "input")) != LB_OK) return st;
    if ((st = check_hadamard(L, &L->out_rot, L->w.rows, "output")) != LB_OK) return st;
    if (L->outliers.nnz &&
        (st = check_outliers(L, L->outliers.nnz, L->outliers.row_ptr, L->outliers.col_idx, L->outliers.values)) != LB_OK)
        return st;
    if (L->adapter.rank &&
        (st = check_adapter(L, L->adapter.rank, L->adapter.a, L->adapter.b, L->adapter.alpha)) != LB_OK)
        return st;
    if ((st = lb_act_check(&L->act, 1)) != LB_OK) return lb_fail_context(st, "linear '%s'", L->w.name);
    return LB_OK;
}

int lb_linear_has_slots(const lb_linear *L) {
    return L->bias || L->in_scale || L->rot.kind != LB_ROTATION_NONE || L->out_rot.kind != LB_ROTATION_NONE ||
           L->outliers.nnz || L->adapter.rank || L->act.kind != LB_AQ_NONE;
}

static int all_fp16(const float *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (lb_round_fp16(v[i]) != v[i]) return 0; /* out of fp16 range rounds to inf: also refused */
    return 1;
}

void lb_linear_slot_layout(const lb_linear *L, lb_slot_layout *out) {
    int64_t rows = L->w.rows, cols = L->w.cols;
    memset(out, 0, sizeof *out);
    out->bias_bytes = L->bias && all_fp16(L->bias, (size_t)rows) ? 2 : 4;
    const lb_outliers *o = &L->outliers;
    out->value_bytes = o->nnz && all_fp16(o->values, (size_t)o->nnz) ? 2 : 4;
    out->pos16 = rows * cols <= 65536;
    int32_t most = 0;
    for (int64_t r = 0; o->nnz && r < rows; r++)
        if (o->row_ptr[r + 1] - o->row_ptr[r] > most) most = o->row_ptr[r + 1] - o->row_ptr[r];
    out->count_bytes = most <= 255 ? 1 : most <= 65535 ? 2 : 4;
    out->col_bytes = cols <= 65536 ? 2 : 4;
    const lb_adapter *a = &L->adapter;
    out->adapter_bytes = a->rank && all_fp16(a->a, (size_t)a->rank * cols) && all_fp16(a->b, rows * (size_t)a->rank) ? 2 : 4;
}

size_t lb_linear_slot_bytes(const lb_linear *L) {
    size_t rows = (size_t)L->w.rows, cols = (size_t)L->w.cols, b = 0;
    lb_slot_layout lay;
    lb_linear_slot_layout(L, &lay);
    if (L->bias) b += rows * (size_t)lay.bias_bytes;
    if (L->in_scale) b += cols * sizeof(float);
    /* Hadamard signs: one bit each */
    if (L->rot.kind == LB_ROTATION_HADAMARD) b += (cols + 7) / 8;
    if (L->out_rot.kind == LB_ROTATION_HADAMARD) b += (rows + 7) / 8;
    if (L->outliers.nnz) {
        size_t nnz = (size_t)L->outliers.nnz;
        b += nnz * (size_t)lay.value_bytes;
        if (lay.pos16) b += nnz * 2;
        else b += (lay.count_bytes == 4 ? (rows + 1) * 4 : rows * (size_t)lay.count_bytes) + nnz * (size_t)lay.col_bytes;
    }
    if (L->adapter.rank) b += (size_t)L->adapter.rank * (rows + cols) * (size_t)lay.adapter_bytes + sizeof(float); /* + alpha */
    if (L->act.kind == LB_AQ_TENSOR) b += sizeof(float); /* the clip; per-token scales are computed, not stored */
    return b;
}

/* ---- life cycle and setters ---------------------------------------------- */

void lb_linear_init(lb_linear *L, const lb_tensor *w) {
    memset(L, 0, sizeof *L);
    L->w = *w;
}

static void free_outliers(lb_outliers *o) {
    lb_free(o->row_ptr);
    lb_free(o->col_idx);
    lb_free(o->values);
    memset(o, 0, sizeof *o);
}

static void free_adapter(lb_adapter *a) {
    lb_free(a->a);
    lb_free(a->b);
    memset(a, 0, sizeof *a);
}

void lb_linear_free(lb_linear *L) {
    lb_free(L->bias);
    lb_free(L->in_scale);
    lb_free(L->rot.signs);
    lb_free(L->out_rot.signs);
    free_outliers(&L->outliers);
    free_adapter(&L->adapter);
    lb_tensor_free(&L->w);
    lb_tensor w = L->w; /* keep name and shape: an empty linear of the same kind */
    memset(L, 0, sizeof *L);
    L->w = w;
}

lb_status lb_linear_set_weight(lb_linear *L, const lb_tensor *w) {
    if (w->rows != L->w.rows || w->cols != L->w.cols)
        return lb_fail(LB_ERR_INVALID, "linear '%s' is %lld x %lld, the new weight '%s' %lld x %lld", L->w.name,
                       (long long)L->w.rows, (long long)L->w.cols, w->name, (long long)w->rows, (long long)w->cols);
    lb_tensor t = *w;
    lb_status st = lb_tensor_resolve(&t);
    if (st != LB_OK) return st;
    lb_tensor_free(&L->w);
    L->w = t;
    return LB_OK;
}

/* A copy of n elements of size es, or NULL (recorded as LB_ERR_NOMEM). */
static void *copy_of(const void *src, size_t n, size_t es) {
    void *p = lb_alloc(n * es);
    if (p) memcpy(p, src, n * es);
    return p;
}

static lb_status replace_floats(lb_linear *L, float **slot, const float *src, size_t n) {
    float *c = NULL;
    if (src && !(c = copy_of(src, n, sizeof(float))))
        return lb_fail(LB_ERR_NOMEM, "out of memory for a slot of linear '%s'", L->w.name);
    lb_free(*slot);
    *slot = c;
    return LB_OK;
}

lb_status lb_linear_set_bias(lb_linear *L, const float *bias) {
    lb_status st = check_weight(L);
    if (st == LB_OK && bias) st = check_finite(L, "bias", bias, (size_t)L->w.rows);
    return st != LB_OK ? st : replace_floats(L, &L->bias, bias, (size_t)L->w.rows);
}

lb_status lb_linear_set_in_scale(lb_linear *L, const float *scale) {
    lb_status st = check_weight(L);
    if (st == LB_OK && scale) st = check_in_scale(L, scale);
    return st != LB_OK ? st : replace_floats(L, &L->in_scale, scale, (size_t)L->w.cols);
}

static lb_status set_rotation(lb_linear *L, lb_rotation *rot, const float *signs, int64_t n, const char *side) {
    lb_status st = check_weight(L);
    lb_rotation want = {LB_ROTATION_HADAMARD, (float *)signs};
    if (st == LB_OK && signs) st = check_hadamard(L, &want, n, side);
    if (st == LB_OK) st = replace_floats(L, &rot->signs, signs, (size_t)n);
    if (st == LB_OK) rot->kind = signs ? LB_ROTATION_HADAMARD : LB_ROTATION_NONE;
    return st;
}

lb_status lb_linear_set_hadamard(lb_linear *L, const float *signs) {
    return set_rotation(L, &L->rot, signs, L->w.cols, "input");
}

lb_status lb_linear_set_out_hadamard(lb_linear *L, const float *signs) {
    return set_rotation(L, &L->out_rot, signs, L->w.rows, "output");
}

lb_status lb_linear_set_outliers(lb_linear *L, int64_t nnz, const int32_t *row_ptr, const int32_t *col_idx,
                                 const float *values) {
    lb_status st = check_weight(L);
    if (st != LB_OK) return st;
    if (nnz == 0) {
        free_outliers(&L->outliers);
        return LB_OK;
    }
    if ((st = check_outliers(L, nnz, row_ptr, col_idx, values)) != LB_OK) return st;
    lb_outliers o = {nnz, copy_of(row_ptr, (size_t)L->w.rows + 1, sizeof(int32_t)),
                     copy_of(col_idx, (size_t)nnz, sizeof(int32_t)), copy_of(values, (size_t)nnz, sizeof(float))};
    if (!o.row_ptr || !o.col_idx || !o.values) {
        free_outliers(&o);
        return lb_fail(LB_ERR_NOMEM, "out of memory for %lld outliers of linear '%s'", (long long)nnz, L->w.name);
    }
    free_outliers(&L->outliers);
    L->outliers = o;
    return LB_OK;
}

lb_status lb_linear_set_adapter(lb_linear *L, int rank, const float *a, const float *b, float alpha) {
    lb_status st = check_weight(L);
    if (st != LB_OK) return st;
    if (rank == 0) {
        free_adapter(&L->adapter);
        return LB_OK;
    }
    if ((st = check_adapter(L, rank, a, b, alpha)) != LB_OK) return st;
    lb_adapter ad = {rank, copy_of(a, (size_t)rank * (size_t)L->w.cols, sizeof(float)),
                     copy_of(b, (size_t)L->w.rows * (size_t)rank, sizeof(float)), alpha};
    if (!ad.a || !ad.b) {
        free_adapter(&ad);
        return lb_fail(LB_ERR_NOMEM, "out of memory for a rank-%d adapter of linear '%s'", rank, L->w.name);
    }
    free_adapter(&L->adapter);
    L->adapter = ad;
    return LB_OK;
}

lb_status lb_linear_set_act(lb_linear *L, const lb_act_quant *a) {
    lb_status st = check_weight(L);
    if (st != LB_OK) return st;
    if (!a || a->kind == LB_AQ_NONE) {
        memset(&L->act, 0, sizeof L->act);
        return LB_OK;
    }
    if ((st = lb_act_check(a, 1)) != LB_OK) return lb_fail_context(st, "linear '%s'", L->w.name);
    L->act = *a;
    return LB_OK;
}

/* ---- transforms ---------------------------------------------------------- */

static int has_input_transform(const lb_linear *L) { return L->in_scale || L->rot.kind != LB_ROTATION_NONE; }

/* row <- (row o s^(+1 or -1)) R, for one row of cols entries */
static void transform_row(const lb_linear *L, float *row, int divide) {
    int cols = (int)L->w.cols;
    if (L->in_scale) {
        if (divide)
            for (int j = 0; j < cols; j++) row[j] /= L->in_scale[j];
        else
            for (int j = 0; j < cols; j++) row[j] *= L->in_scale[j];
    }
    if (L->rot.kind == LB_ROTATION_HADAMARD) lb_rht_apply(row, cols, L->rot.signs, 0); /* checked by the setter */
}

/* the transforms' DCT tables are built before any parallel loop uses them */
static lb_status prepare_rotations(const lb_linear *L) {
    lb_status st = L->rot.kind == LB_ROTATION_HADAMARD ? lb_rht_check(L->w.cols) : LB_OK;
    if (st == LB_OK && L->out_rot.kind == LB_ROTATION_HADAMARD) st = lb_rht_check(L->w.rows);
    return st;
}

lb_status lb_linear_transform_input(const lb_linear *L, const float *x, int n, float *out) {
    size_t cols = (size_t)L->w.cols;
    if (n < 0) return lb_fail(LB_ERR_INVALID, "linear '%s': %d input rows", L->w.name, n);
    lb_status st = prepare_rotations(L);
    if (st != LB_OK) return st;
    if (out != x) memcpy(out, x, (size_t)n * cols * sizeof(float));
#pragma omp parallel for schedule(static) if ((size_t)n * cols > 65536)
    for (int i = 0; i < n; i++) transform_row(L, out + (size_t)i * cols, 1);
    return LB_OK;
}

lb_status lb_linear_transform_weight(const lb_linear *L, float *w, int64_t rows) {
    if (rows != L->w.rows)
        return lb_fail(LB_ERR_INVALID, "linear '%s' has %lld rows, not %lld", L->w.name, (long long)L->w.rows,
                       (long long)rows);
    size_t cols = (size_t)L->w.cols;
    lb_status st = prepare_rotations(L);
    if (st != LB_OK) return st;
#pragma omp parallel for schedule(static) if ((size_t)rows * cols > 65536)
    for (int64_t r = 0; r < rows; r++) transform_row(L, w + (size_t)r * cols, 0);
    if (L->out_rot.kind != LB_ROTATION_HADAMARD) return LB_OK;
    return lb_rht_apply_cols(w, rows, (int64_t)cols, L->out_rot.signs, 0); /* W <- R_o W */
}

/* ---- forward ------------------------------------------------------------- */

/* y += x S^T, S in CSR: y (n, rows), x (n, cols) */
static void add_outliers(const lb_linear *L, const float *x, int n, float *y) {
    int rows = (int)L->w.rows, cols = (int)L->w.cols;
    const lb_outliers *o = &L->outliers;
#pragma omp parallel for schedule(static) if ((long)n * o->nnz > 65536)
    for (int i = 0; i < n; i++)
        for (int r = 0; r < rows; r++) {
            float s = 0.0f;
            for (int32_t k = o->row_ptr[r]; k < o->row_ptr[r + 1]; k++) s += o->values[k] * x[(size_t)i * cols + o->col_idx[k]];
            y[(size_t)i * rows + r] += s;
        }
}

/* y += alpha (x A^T) B^T */
static lb_status add_adapter(const lb_linear *L, const float *x, int n, float *y) {
    int rows = (int)L->w.rows, cols = (int)L->w.cols, rank = L->adapter.rank;
    const lb_kernel_table *k = lb_kernels();
    _Alignas(64) float local[4096]; /* decode of a small model: no allocation */
    size_t nt = (size_t)n * (size_t)rank, nu = (size_t)n * (size_t)rows;
    float *t = nt + nu <= sizeof local / sizeof local[0] ? local : lb_alloc((nt + nu) * sizeof(float));
    if (!t) return lb_fail(LB_ERR_NOMEM, "out of memory for the adapter of linear '%s'", L->w.name);
    float *u = t + nt;
    k->gemm_nt(n, rank, cols, x, cols, L->adapter.a, cols, t, rank); /* (n, rank) */
    k->gemm_nt(n, rows, rank, t, rank, L->adapter.b, rank, u, rows); /* (n, rows) */
    float alpha = L->adapter.alpha;
    for (size_t j = 0; j < (size_t)n * rows; j++) y[j] += alpha * u[j];
    if (t != local) lb_free(t);
    return LB_OK;
}

lb_status lb_linear_forward(const lb_linear *L, const float *x, int n, float *y, lb_act_cache *cache) {
    if (n < 1) return lb_fail(LB_ERR_INVALID, "linear '%s': %d input rows", L->w.name, n);
    int rows = (int)L->w.rows;
    const float *xin = x;
    float *xt = NULL;
    lb_status st = LB_OK;
    /* decode's transformed input (one row of a small model) fits on the stack */
    _Alignas(64) float local[4096];
    if (has_input_transform(L) || L->act.kind != LB_AQ_NONE) {
        size_t len = (size_t)n * (size_t)L->w.cols;
        xt = len <= sizeof local / sizeof local[0] ? local : lb_alloc(len * sizeof(float));
        if (!xt) return lb_fail(LB_ERR_NOMEM, "out of memory for the transformed input of linear '%s'", L->w.name);
        if (has_input_transform(L)) st = lb_linear_transform_input(L, x, n, xt);
        else memcpy(xt, x, (size_t)n * (size_t)L->w.cols * sizeof(float));
        /* simulated activation quantization: x' rounded to the integer grid
         * and back (src/kernels/act_quant.c); outliers and adapter read the
         * same quantized x' as the weight */
        if (st == LB_OK && L->act.kind != LB_AQ_NONE) st = lb_act_quantize_rows(&L->act, xt, n, (int)L->w.cols, xt);
        xin = xt;
        cache = NULL; /* the cache holds forms of x, not of x' */
    }
    if (st == LB_OK) st = lb_matmul(&L->w, xin, n, y, cache);
    if (st == LB_OK && L->outliers.nnz) add_outliers(L, xin, n, y);
    if (st == LB_OK && L->adapter.rank) st = add_adapter(L, xin, n, y);
    if (st == LB_OK && L->out_rot.kind == LB_ROTATION_HADAMARD && (st = lb_rht_check(rows)) == LB_OK) {
#pragma omp parallel for schedule(static) if ((size_t)n * (size_t)rows > 65536)
        for (int i = 0; i < n; i++) lb_rht_apply(y + (size_t)i * rows, rows, L->out_rot.signs, 1);
    }
    if (st == LB_OK && L->bias)
        for (int i = 0; i < n; i++)
            for (int r = 0; r < rows; r++) y[(size_t)i * rows + r] += L->bias[r];
    if (xt != local) lb_free(xt);
    return st;
}
