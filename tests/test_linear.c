/* lb_linear against a dense double-precision computation of the same math:
 * x' = (x / s) R with R the randomized Hadamard transform (lowbit/core.h)
 * built as a full matrix, y = x' (W + S + alpha B A)^T R_o + b with S
 * expanded from CSR and R_o the output's transform; each slot alone
 * and all together, on f32 and quantized weights, with and without an
 * activation cache. Also: the documented storage convention (W = R_o W0
 * diag(s) R computes x W0^T), and bad slot data rejected by the setters and by lb_linear_validate. */
#include "test.h"

#include "kernels/kernels.h"

static lb_rng rng;

static void fill(float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = scale * (float)lb_rng_normal(&rng);
}

/* H[i][j] = (-1)^popcount(i & j) */
static double hadamard_entry(int i, int j) {
    int p = 0;
    for (int b = i & j; b; b &= b - 1) p ^= 1;
    return p ? -1.0 : 1.0;
}

/* T[i][j] of lowbit/core.h's transform of size n = 2^k m: H / sqrt(2^k)
 * Kronecker the orthonormal DCT-II of order m, from its definition */
static double rht_entry(int n, int i, int j) {
    int m = lb_rht_odd(n), b = i % m, e = j % m;
    double c = (b ? sqrt(2.0 / m) : sqrt(1.0 / m)) * cos(3.14159265358979323846 * (2 * e + 1) * b / (2.0 * m));
    return hadamard_entry(i / m, j / m) / sqrt((double)(n / m)) * c;
}

typedef struct {
    int rows, cols, n, rank;
    int64_t nnz;
    float *w, *x, *bias, *scale, *signs, *out_signs, *a, *b, *values;
    int32_t *row_ptr, *col_idx;
    float alpha;
} problem;

static problem make_problem(int rows, int cols, int n) {
    problem p = {.rows = rows, .cols = cols, .n = n, .rank = 3, .alpha = 0.7f};
    p.w = lb_alloc((size_t)rows * cols * 4);
    p.x = lb_alloc((size_t)n * cols * 4);
    p.bias = lb_alloc((size_t)rows * 4);
    p.scale = lb_alloc((size_t)cols * 4);
    p.signs = lb_alloc((size_t)cols * 4);
    p.out_signs = lb_alloc((size_t)rows * 4);
    lb_rht_signs(99, rows, p.out_signs);
    p.a = lb_alloc((size_t)p.rank * cols * 4);
    p.b = lb_alloc((size_t)rows * p.rank * 4);
    fill(p.w, (size_t)rows * cols, 0.1f);
    fill(p.x, (size_t)n * cols, 1.0f);
    fill(p.bias, (size_t)rows, 1.0f);
    for (int j = 0; j < cols; j++) {
        p.scale[j] = 0.25f + 2.0f * lb_rng_f32(&rng);
        p.signs[j] = lb_rng_u32(&rng) & 1 ? 1.0f : -1.0f;
    }
    fill(p.a, (size_t)p.rank * cols, 0.2f);
    fill(p.b, (size_t)rows * p.rank, 0.2f);
    /* outliers: up to 3 per row at distinct columns, some rows empty (not the first) */
    p.row_ptr = lb_alloc((size_t)(rows + 1) * 4);
    p.col_idx = lb_alloc((size_t)rows * 3 * 4);
    p.values = lb_alloc((size_t)rows * 3 * 4);
    p.row_ptr[0] = 0;
    for (int r = 0; r < rows; r++) {
        int k = p.row_ptr[r], cnt = (int)(lb_rng_u32(&rng) % 4);
        if (r == 0 && cnt == 0) cnt = 1; /* at least one, so the outlier slot exists on any shape */
        for (int c = 0; c < cnt && c < cols; c++) {
            p.col_idx[k] = (int32_t)((r * 7 + c * (cols / 3 + 1)) % cols);
            p.values[k++] = 3.0f * (float)lb_rng_normal(&rng);
        }
        p.row_ptr[r + 1] = k;
    }
    p.nnz = p.row_ptr[rows];
    return p;
}

static void free_problem(problem *p) {
    void *ptrs[] = {p->w, p->x, p->bias, p->scale, p->signs, p->out_signs, p->a, p->b, p->values, p->row_ptr, p->col_idx};
    for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++) lb_free(ptrs[i]);
}

enum { SLOT_BIAS = 1, SLOT_SCALE = 2, SLOT_ROT = 4, SLOT_OUTLIERS = 8, SLOT_ADAPTER = 16, SLOT_OROT = 32, SLOT_ALL = 63 };

/* The dense reference in double: wd is the dequantized stored weight. */
static void dense_reference(const problem *p, int slots, const float *wd, double *y, double *mag) {
    int rows = p->rows, cols = p->cols, n = p->n;
    double *xt = calloc((size_t)n * cols, sizeof(double)), *weff = calloc((size_t)rows * cols, sizeof(double));
    for (int i = 0; i < n; i++) {
        double *row = xt + (size_t)i * cols;
        for (int j = 0; j < cols; j++) row[j] = p->x[(size_t)i * cols + j] / (slots & SLOT_SCALE ? p->scale[j] : 1.0f);
        if (slots & SLOT_ROT) { /* column vector x' = T diag(d) x, as a full matrix product */
            double *t = calloc((size_t)cols, sizeof(double));
            for (int j = 0; j < cols; j++)
                for (int k = 0; k < cols; k++) t[j] += rht_entry(cols, j, k) * p->signs[k] * row[k];
            memcpy(row, t, sizeof(double) * (size_t)cols);
            free(t);
        }
    }
    for (size_t j = 0; j < (size_t)rows * cols; j++) weff[j] = wd[j];
    if (slots & SLOT_OUTLIERS)
        for (int r = 0; r < rows; r++)
            for (int k = p->row_ptr[r]; k < p->row_ptr[r + 1]; k++) weff[(size_t)r * cols + p->col_idx[k]] += p->values[k];
    if (slots & SLOT_ADAPTER)
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                for (int k = 0; k < p->rank; k++)
                    weff[(size_t)r * cols + c] += (double)p->alpha * p->b[r * p->rank + k] * p->a[(size_t)k * cols + c];
    double *u = calloc((size_t)rows, sizeof(double)), *um = calloc((size_t)rows, sizeof(double));
    for (int i = 0; i < n; i++) {
        for (int r = 0; r < rows; r++) {
            u[r] = um[r] = 0;
            for (int c = 0; c < cols; c++) {
                u[r] += xt[(size_t)i * cols + c] * weff[(size_t)r * cols + c];
                um[r] += fabs(xt[(size_t)i * cols + c] * weff[(size_t)r * cols + c]);
            }
        }
        for (int r = 0; r < rows; r++) { /* column vector y = R_o^T u = diag(d_o) T^T u */
            double s = 0, m = 0;
            if (!(slots & SLOT_OROT)) s = u[r], m = um[r];
            for (int k = 0; (slots & SLOT_OROT) && k < rows; k++) {
                s += p->out_signs[r] * rht_entry(rows, k, r) * u[k];
                m += fabs(rht_entry(rows, k, r)) * um[k];
            }
            if (slots & SLOT_BIAS) s += p->bias[r], m += fabs(p->bias[r]);
            y[(size_t)i * rows + r] = s;
            mag[(size_t)i * rows + r] = m;
        }
    }
    free(u);
    free(um);
    free(xt);
    free(weff);
}

static void set_slots(lb_linear *L, const problem *p, int slots) {
    if (slots & SLOT_BIAS) CHECK_OK(lb_linear_set_bias(L, p->bias));
    if (slots & SLOT_SCALE) CHECK_OK(lb_linear_set_in_scale(L, p->scale));
    if (slots & SLOT_ROT) CHECK_OK(lb_linear_set_hadamard(L, p->signs));
    if (slots & SLOT_OROT) CHECK_OK(lb_linear_set_out_hadamard(L, p->out_signs));
    if (slots & SLOT_OUTLIERS) CHECK_OK(lb_linear_set_outliers(L, p->nnz, p->row_ptr, p->col_idx, p->values));
    if (slots & SLOT_ADAPTER) CHECK_OK(lb_linear_set_adapter(L, p->rank, p->a, p->b, p->alpha));
}

static void test_against_dense(const char *spec_text, int rows, int cols, int n) {
    problem p = make_problem(rows, cols, n);
    lb_qspec spec;
    lb_tensor t;
    CHECK_OK(lb_qspec_parse(spec_text, &spec));
    CHECK_OK(lb_quantize_to_tensor(p.w, rows, cols, &spec, NULL, "w", &t));
    float *wd = lb_alloc((size_t)rows * cols * 4), *y = lb_alloc((size_t)n * rows * 4), *yc = lb_alloc((size_t)n * rows * 4);
    double *ref = calloc((size_t)n * rows, sizeof(double)), *mag = calloc((size_t)n * rows, sizeof(double));
    CHECK_OK(lb_dequantize(&t, wd));
    lb_linear L;
    lb_linear_init(&L, &t);
    /* the slots are under test here, against float math (1e-5): keep the weight
     * on the float path; the int8-activation kernels and their own bound are
     * tested in test_kernel_registry */
    lb_kernel_pin(&L.w, "fallback");
    lb_act_cache *cache;
    CHECK_OK(lb_act_cache_create(n, cols, &cache));
    const int cases[] = {0,           SLOT_BIAS,   SLOT_SCALE,           SLOT_ROT,           SLOT_OUTLIERS,
                         SLOT_ADAPTER, SLOT_OROT, SLOT_SCALE | SLOT_ROT, SLOT_ROT | SLOT_OROT, SLOT_ALL};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int slots = cases[c];
        /* start from an empty linear over the same weight */
        CHECK_OK(lb_linear_set_bias(&L, NULL));
        CHECK_OK(lb_linear_set_in_scale(&L, NULL));
        CHECK_OK(lb_linear_set_hadamard(&L, NULL));
        CHECK_OK(lb_linear_set_out_hadamard(&L, NULL));
        CHECK_OK(lb_linear_set_outliers(&L, 0, NULL, NULL, NULL));
        CHECK_OK(lb_linear_set_adapter(&L, 0, NULL, NULL, 0));
        CHECK(!lb_linear_has_slots(&L) && lb_linear_slot_bytes(&L) == 0);
        set_slots(&L, &p, slots);
        CHECK(lb_linear_has_slots(&L) == (slots != 0));
        CHECK_OK(lb_linear_validate(&L));
        CHECK_OK(lb_linear_forward(&L, p.x, n, y, NULL));
        lb_act_cache_reset(cache);
        CHECK_OK(lb_linear_forward(&L, p.x, n, yc, cache));
        CHECK_MSG(memcmp(y, yc, (size_t)n * rows * 4) == 0, "%s slots %d: the cache changed the result", spec_text, slots);
        dense_reference(&p, slots, wd, ref, mag);
        double worst = 0;
        for (size_t j = 0; j < (size_t)n * rows; j++) worst = fmax(worst, fabs(y[j] - ref[j]) / (mag[j] + 1e-30));
        CHECK_MSG(worst < 1e-5, "%s %dx%d n=%d slots %d: relative error %g", spec_text, rows, cols, n, slots, worst);
    }
    lb_act_cache_free(cache);
    lb_linear_free(&L);
    CHECK(L.w.data == NULL && L.bias == NULL && L.w.rows == rows && L.w.cols == cols); /* empty, same shape */
    lb_free(wd);
    lb_free(y);
    lb_free(yc);
    free(ref);
    free(mag);
    free_problem(&p);
}

/* The storage convention: a layer W0 stored as R_o W0 diag(s) R computes x W0^T. */
static void test_convention(void) {
    const int rows = 24, cols = 64, n = 5;
    problem p = make_problem(rows, cols, n);
    float *stored = lb_alloc((size_t)rows * cols * 4), *y = lb_alloc((size_t)n * rows * 4);
    float *xt = lb_alloc((size_t)n * cols * 4);
    memcpy(stored, p.w, (size_t)rows * cols * 4);
    lb_tensor t;
    lb_tensor_wrap_f32(&t, "w", stored, rows, cols);
    lb_linear L;
    lb_linear_init(&L, &t);
    CHECK_OK(lb_linear_set_in_scale(&L, p.scale));
    CHECK_OK(lb_linear_set_hadamard(&L, p.signs));
    CHECK_OK(lb_linear_set_out_hadamard(&L, p.out_signs)); /* 24 = 8 x 3 */
    CHECK_OK(lb_linear_transform_weight(&L, stored, rows));
    CHECK_OK(lb_linear_forward(&L, p.x, n, y, NULL));
    for (int i = 0; i < n; i++)
        for (int r = 0; r < rows; r++) {
            double want = 0, mag = 0;
            for (int c = 0; c < cols; c++) {
                want += (double)p.x[i * cols + c] * p.w[r * cols + c];
                mag += fabs((double)p.x[i * cols + c] * p.w[r * cols + c]);
            }
            CHECK_NEAR(y[i * rows + r], want, 1e-5 * mag);
        }
    /* the input the stored weight reads, in place or not */
    memcpy(xt, p.x, (size_t)n * cols * 4);
    CHECK_OK(lb_linear_transform_input(&L, xt, n, xt));
    float *x2 = lb_alloc((size_t)n * cols * 4);
    CHECK_OK(lb_linear_transform_input(&L, p.x, n, x2));
    CHECK(memcmp(xt, x2, (size_t)n * cols * 4) == 0);
    /* rotation preserves norms: |x / s| = |x'| */
    double a = 0, b = 0;
    for (int c = 0; c < cols; c++) {
        a += (double)(p.x[c] / p.scale[c]) * (p.x[c] / p.scale[c]);
        b += (double)x2[c] * x2[c];
    }
    CHECK_NEAR(sqrt(a), sqrt(b), 1e-5 * sqrt(a));
    CHECK_FAILS(lb_linear_transform_weight(&L, stored, rows - 1), LB_ERR_INVALID, "rows");
    lb_linear_free(&L);
    lb_free(stored);
    lb_free(y);
    lb_free(xt);
    lb_free(x2);
    free_problem(&p);
}

static void test_bad_input(void) {
    const int rows = 6, cols = 12;
    problem p = make_problem(rows, cols, 2);
    lb_tensor t;
    lb_tensor_wrap_f32(&t, "blk.0.attn_q.weight", p.w, rows, cols);
    lb_linear L;
    lb_linear_init(&L, &t);
    CHECK_OK(lb_linear_validate(&L));
    float bad[64];
    /* NaN / Inf in slot data: setters refuse, the linear is unchanged */
    memcpy(bad, p.bias, rows * 4);
    bad[3] = NAN;
    CHECK_FAILS(lb_linear_set_bias(&L, bad), LB_ERR_NUMERIC, "blk.0.attn_q.weight");
    CHECK(L.bias == NULL);
    memcpy(bad, p.scale, cols * 4);
    bad[0] = INFINITY;
    CHECK_FAILS(lb_linear_set_in_scale(&L, bad), LB_ERR_NUMERIC, "input scale[0]");
    bad[0] = 0.0f;
    CHECK_FAILS(lb_linear_set_in_scale(&L, bad), LB_ERR_INVALID, "nonzero");
    /* a rotation needs a width 2^k m (m odd, <= 255) and +-1 signs */
    {
        float zeros[257] = {0}, ones[257];
        for (int j = 0; j < 257; j++) ones[j] = 1.0f;
        lb_tensor t257;
        lb_tensor_wrap_f32(&t257, "wide", zeros, 1, 257);
        lb_linear W;
        lb_linear_init(&W, &t257);
        CHECK_FAILS(lb_linear_set_hadamard(&W, ones), LB_ERR_INVALID, "2^k m");
        CHECK(W.rot.kind == LB_ROTATION_NONE && W.rot.signs == NULL);
        CHECK_OK(lb_linear_set_out_hadamard(&W, ones)); /* its one row: 1 = 2^0 x 1 */
        W.out_rot.signs[0] = 0.5f; /* behind the setter's back */
        CHECK_FAILS(lb_linear_validate(&W), LB_ERR_INVALID, "output Hadamard sign[0]");
        W.out_rot.signs[0] = 1.0f;
        CHECK_OK(lb_linear_validate(&W));
        lb_linear_free(&W);
    }
    CHECK_OK(lb_linear_set_hadamard(&L, p.signs)); /* 12 = 4 x 3 */
    CHECK_OK(lb_linear_set_hadamard(&L, NULL));
    CHECK(L.rot.kind == LB_ROTATION_NONE);
    /* outliers: columns in range, row_ptr consistent, values finite */
    int32_t rp[7] = {0, 1, 1, 2, 2, 2, 2}, ci[2] = {0, 12};
    float v[2] = {1, 2};
    CHECK_FAILS(lb_linear_set_outliers(&L, 2, rp, ci, v), LB_ERR_INVALID, "column 12");
    ci[1] = 11;
    rp[6] = 3;
    CHECK_FAILS(lb_linear_set_outliers(&L, 2, rp, ci, v), LB_ERR_INVALID, "row_ptr");
    rp[6] = 2;
    rp[2] = 0;
    CHECK_FAILS(lb_linear_set_outliers(&L, 2, rp, ci, v), LB_ERR_INVALID, "decreases");
    rp[2] = 1;
    v[1] = NAN;
    CHECK_FAILS(lb_linear_set_outliers(&L, 2, rp, ci, v), LB_ERR_NUMERIC, "outlier value");
    v[1] = 2;
    CHECK_FAILS(lb_linear_set_outliers(&L, -1, rp, ci, v), LB_ERR_INVALID, "outliers");
    CHECK_OK(lb_linear_set_outliers(&L, 2, rp, ci, v));
    CHECK(L.outliers.nnz == 2);
    /* adapter: a sane rank, finite factors */
    CHECK_FAILS(lb_linear_set_adapter(&L, -2, p.a, p.b, 1.0f), LB_ERR_INVALID, "rank -2");
    CHECK_FAILS(lb_linear_set_adapter(&L, 1 << 20, p.a, p.b, 1.0f), LB_ERR_INVALID, "rank");
    CHECK_FAILS(lb_linear_set_adapter(&L, 2, p.a, p.b, NAN), LB_ERR_NUMERIC, "alpha");
    CHECK_FAILS(lb_linear_set_adapter(&L, 2, NULL, p.b, 1.0f), LB_ERR_INVALID, "without A");
    p.a[5] = NAN;
    CHECK_FAILS(lb_linear_set_adapter(&L, 2, p.a, p.b, 1.0f), LB_ERR_NUMERIC, "adapter A");
    CHECK(L.adapter.rank == 0);
    /* slots filled directly are caught by validation */
    float *keep = L.outliers.values;
    float direct[2] = {1, NAN};
    L.outliers.values = direct;
    CHECK_FAILS(lb_linear_validate(&L), LB_ERR_NUMERIC, "outlier value");
    L.outliers.values = keep;
    L.rot.kind = LB_ROTATION_HADAMARD;
    CHECK_FAILS(lb_linear_validate(&L), LB_ERR_INVALID, "without signs");
    L.rot.kind = (lb_rotation_kind)7;
    CHECK_FAILS(lb_linear_validate(&L), LB_ERR_INVALID, "unknown input rotation");
    L.rot.kind = LB_ROTATION_NONE;
    float nanbias[6] = {0, 0, 0, 0, 0, NAN};
    L.bias = nanbias;
    CHECK_FAILS(lb_linear_validate(&L), LB_ERR_NUMERIC, "bias[5]");
    L.bias = NULL;
    CHECK_OK(lb_linear_validate(&L));
    /* a replacement weight must have the same shape */
    lb_tensor other;
    lb_tensor_wrap_f32(&other, "other", p.w, cols, rows);
    CHECK_FAILS(lb_linear_set_weight(&L, &other), LB_ERR_INVALID, "other");
    lb_tensor_wrap_f32(&other, "other", p.w, rows, cols);
    CHECK_OK(lb_linear_set_weight(&L, &other));
    CHECK(strcmp(L.w.name, "other") == 0 && L.outliers.nnz == 2); /* slots stay */
    float y[12];
    CHECK_FAILS(lb_linear_forward(&L, p.x, 0, y, NULL), LB_ERR_INVALID, "rows");
    lb_linear_free(&L);
    /* Hadamard signs other than +-1 on a power-of-two width */
    lb_tensor_wrap_f32(&t, "h", p.w, 3, 4);
    lb_linear_init(&L, &t);
    float signs[4] = {1, -1, 0.5f, 1};
    CHECK_FAILS(lb_linear_set_hadamard(&L, signs), LB_ERR_INVALID, "sign[2]");
    signs[2] = NAN;
    CHECK_FAILS(lb_linear_set_hadamard(&L, signs), LB_ERR_NUMERIC, "sign[2]");
    signs[2] = -1;
    CHECK_OK(lb_linear_set_hadamard(&L, signs));
    CHECK(lb_linear_slot_bytes(&L) == 1); /* signs are stored as bits */
    CHECK_OK(lb_linear_set_out_hadamard(&L, signs)); /* 3 rows: the first 3 */
    CHECK(lb_linear_slot_bytes(&L) == 2);
    lb_linear_free(&L);
    free_problem(&p);
}

/* Same bits for any thread count (rows large enough for the parallel paths). */
static void test_threads(void) {
    const int rows = 300, cols = 256, n = 300;
    problem p = make_problem(rows, cols, n);
    lb_tensor t;
    lb_tensor_wrap_f32(&t, "w", p.w, rows, cols);
    lb_linear L;
    lb_linear_init(&L, &t);
    set_slots(&L, &p, SLOT_ALL);
    float *y1 = lb_alloc((size_t)n * rows * 4), *y2 = lb_alloc((size_t)n * rows * 4);
    lb_set_threads(1);
    CHECK_OK(lb_linear_forward(&L, p.x, n, y1, NULL));
    lb_set_threads(2);
    CHECK_OK(lb_linear_forward(&L, p.x, n, y2, NULL));
    CHECK(memcmp(y1, y2, (size_t)n * rows * 4) == 0);
    lb_linear_free(&L);
    lb_free(y1);
    lb_free(y2);
    free_problem(&p);
}

int main(void) {
    lb_rng_seed(&rng, 7);
    const char *specs[] = {"f32", "int4:g32:asym", "ternary:g64:2bit"};
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
        test_against_dense(specs[s], 37, 64, 5);
        test_against_dense(specs[s], 13, 128, 1);
        test_against_dense(specs[s], 20, 172, 3); /* 172 = 4 x 43: Hadamard x DCT */
    }
    test_against_dense("f32", 1, 1, 1);
    test_convention();
    test_bad_input();
    test_threads();
    return lb_test_finish("test_linear");
}
