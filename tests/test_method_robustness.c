/* Every row of the method table against the inputs issue 6 lists as hostile,
 * on every format family it accepts: constant rows (zero and non-zero), an
 * all-zero matrix, dead input channels (H_jj = 0), a rank-deficient H, a
 * single row, NaN / Inf weights, NaN / Inf statistics. A method either
 * refuses the pair up front (LB_ERR_INVALID with a message) or returns a
 * tensor whose values are finite, reproduce constant rows (they are exactly
 * representable on every grid, up to the fp16 scale) and keep zeros zero;
 * non-finite inputs always fail with LB_ERR_NUMERIC. Each row runs twice:
 * alone, and with the options every row takes (outliers, bias correction).
 * Rows added later are covered without touching this file. */
#include "test.h"

/* (no per-tensor grids: one scale or codebook cannot hold the test's
 * different constant rows) */
static const char *const formats[] = {"int4:g32:asym", "int3:g64:sym", "int2:g16:asym", "int4:g32:asym:zint",
                                      "int8:g32:sym",  "nf4:g64",      "pow2:4:g64",    "ternary:g64",
                                      "binary:row",    "int3:g16:asym:s4", "int2:g32:sym:s6", "lut2:g32",
                                      "lut3:row",      "lut1:g16",      "onebit",
                                      "ptq161",        "billm:g16",     "littlebit:r4",
                                      "e8p2:row",      "e8p3:row",      "vq4x4:row",     "vq2x3:r2:row"};
#define N_FORMATS ((int)(sizeof formats / sizeof formats[0]))

enum { R = 8, C = 64 };

/* All statistics a row may ask for, from X = 256 samples of a mix of
 * channels; channels in `dead` (a bitmask over the first 64) are always 0. */
typedef struct {
    lb_layer_stats s;
    double xtx[C * C];
    float mean_abs[C], max_abs[C], mean[C], grad[R * C];
    int64_t hist[64];
} stats_buf;

static void make_stats(stats_buf *b, uint64_t dead, int rank) {
    memset(b, 0, sizeof *b);
    lb_rng r;
    lb_rng_seed(&r, 7);
    float x[C], basis[4][C];
    for (int k = 0; k < 4; k++)
        for (int c = 0; c < C; c++) basis[k][c] = (float)lb_rng_normal(&r);
    int n = 256;
    for (int t = 0; t < n; t++) {
        for (int c = 0; c < C; c++) x[c] = 0;
        for (int k = 0; k < rank; k++) {
            float z = (float)lb_rng_normal(&r);
            for (int c = 0; c < C; c++) x[c] += z * basis[k][c];
        }
        for (int c = 0; c < C; c++) {
            if (rank >= 4) x[c] += 0.1f * (float)lb_rng_normal(&r); /* full rank unless asked */
            if (dead >> c & 1) x[c] = 0;
        }
        for (int a = 0; a < C; a++) {
            b->mean_abs[a] += fabsf(x[a]) / (float)n;
            b->mean[a] += x[a] / (float)n;
            if (fabsf(x[a]) > b->max_abs[a]) b->max_abs[a] = fabsf(x[a]);
            for (int c = 0; c < C; c++) b->xtx[a * C + c] += (double)x[a] * x[c];
            int bin = (int)floorf((x[a] + 16.0f) * 2.0f);
            b->hist[bin < 0 ? 0 : bin > 63 ? 63 : bin]++;
        }
    }
    for (int i = 0; i < R * C; i++) b->grad[i] = 1.0f;
    b->s = (lb_layer_stats){.n_samples = n,
                            .rows = R,
                            .cols = C,
                            .xtx = b->xtx,
                            .mean_abs_x = b->mean_abs,
                            .max_abs_x = b->max_abs,
                            .grad_sq = b->grad,
                            .mean_x = b->mean,
                            .hist = b->hist,
                            .hist_bins = 64,
                            .hist_range = 16.0};
}

/* The common options every row takes, tried on top of each row's defaults. */
static const char *common = "";

/* Quantizes and dequantizes (dense plus the sparse outliers); LB_OK with
 * out filled, or the failure. */
static lb_status roundtrip(const lb_method *m, const stats_buf *b, const float *w, int rows, const char *format,
                           float *out) {
    lb_method_opts o;
    lb_status st = lb_test_method_opts(m, common, &o);
    if (st != LB_OK) return st;
    lb_qspec spec = lb_test_spec(format);
    lb_layer_stats s = b->s;
    s.rows = rows;
    lb_tensor t;
    lb_quant_extras x;
    st = lb_quantize_tensor_ex(m, &o, &s, w, rows, C, &spec, "w", &t, &x);
    if (st != LB_OK) return st;
    st = lb_dequantize(&t, out);
    for (int r = 0; r < rows && x.nnz; r++)
        for (int32_t k = x.row_ptr[r]; k < x.row_ptr[r + 1]; k++) out[r * C + x.col_idx[k]] += x.values[k];
    if (x.bias && !*common) st = lb_fail(LB_ERR_INVALID, "a bias correction nobody asked for");
    for (int r = 0; r < rows && x.bias && st == LB_OK; r++)
        if (!isfinite(x.bias[r])) st = lb_fail(LB_ERR_NUMERIC, "bias correction %d is %g", r, x.bias[r]);
    lb_quant_extras_free(&x);
    lb_tensor_free(&t);
    return st;
}

/* Does method m accept this format at all (on a plain random matrix)? */
static int accepts(const lb_method *m, const stats_buf *b, const char *format) {
    float w[R * C], out[R * C];
    lb_rng r;
    lb_rng_seed(&r, 3);
    for (int i = 0; i < R * C; i++) w[i] = (float)lb_rng_normal(&r);
    lb_status st = roundtrip(m, b, w, R, format, out);
    if (st == LB_ERR_INVALID || st == LB_ERR_UNSUPPORTED) {
        CHECK_MSG(strlen(lb_last_error()) > 10, "%s on %s refused without a message", m->name, format);
        return 0;
    }
    CHECK_MSG(st == LB_OK, "%s on %s: %s", m->name, format, lb_last_error());
    return st == LB_OK;
}

/* dead: input channels that are always zero, whose weights do not matter
 * (GPTQ zeroes them, as its reference does) */
static void check_values(const lb_method *m, const char *format, const char *what, const float *w, const float *q,
                         int n, uint64_t dead) {
    for (int i = 0; i < n; i++) {
        CHECK_MSG(isfinite(q[i]), "%s on %s, %s: value %d is %g", m->name, format, what, i, q[i]);
        if (dead >> (i % C) & 1) continue;
        /* a constant is representable on every grid: at most the fp16 rounding of the scale */
        CHECK_MSG(fabsf(q[i] - w[i]) <= 1e-3f * fabsf(w[i]) + 1e-6f, "%s on %s, %s: value %d is %g, want %g", m->name,
                  format, what, i, q[i], w[i]);
        if (fabsf(q[i] - w[i]) > 1e-3f * fabsf(w[i]) + 1e-6f) return; /* one message per case */
    }
}

static void test_method(const lb_method *m) {
    stats_buf *b = malloc(sizeof *b), *dead = malloc(sizeof *dead), *low = malloc(sizeof *low);
    const uint64_t dead_mask = 0xF0F0ull | 1ull << 63; /* 9 dead channels, the last column among them */
    make_stats(b, 0, 4);
    make_stats(dead, dead_mask, 4);
    make_stats(low, 0, 2);                        /* rank 2: H singular before damping */
    float w[R * C], q[R * C];
    /* the row reads statistics at its defaults (aqlm's depend on its options) */
    lb_method_opts defaults;
    lb_method_opts_default(m, &defaults);
    const int uses_stats = (m->stats | (m->stats_for ? m->stats_for(&defaults) : 0u)) != 0;
    for (int f = 0; f < N_FORMATS; f++) {
        const char *fmt = formats[f];
        if (!accepts(m, b, fmt)) continue;
        /* constant rows, different per row (zero, positive, negative) */
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) w[r * C + c] = r == 0 ? 0.0f : (r & 1 ? 0.25f : -1.5f) * (float)r;
        const stats_buf *sets[] = {b, dead, low};
        const char *names[] = {"constant rows", "constant rows, dead inputs", "constant rows, rank-2 H"};
        const uint64_t masks[] = {0, uses_stats ? dead_mask : 0, 0};
        /* GPTQ zeroes dead columns, so with dead inputs a row is {0, c}: exact
         * on fp16 group grids, but on hierarchical ones a group's min is an
         * integer multiple of a super-min shared with the row's other groups,
         * and c lands within a grid step, not on it; binary (+-alpha) cannot
         * hold two values, and ternary's alpha is the mean |w| of the row,
         * zeros included; an E8P point has no zero coordinate (E8 + 1/4), so
         * a vector of 0s and cs is not one (only a zero row is: scale 0) */
        int inexact_dead = uses_stats && (lb_test_spec(fmt).scale_bits || !strncmp(fmt, "binary", 6) ||
                                        !strncmp(fmt, "ternary", 7) || !strncmp(fmt, "e8p", 3));
        for (int k = 0; k < 3; k++) {
            if (k == 1 && inexact_dead) continue;
            lb_status st = roundtrip(m, sets[k], w, R, fmt, q);
            CHECK_MSG(st == LB_OK, "%s on %s, %s: %s", m->name, fmt, names[k], lb_last_error());
            if (st == LB_OK) check_values(m, fmt, names[k], w, q, R * C, masks[k]);
        }
        /* all zeros, one row */
        memset(w, 0, sizeof w);
        lb_status st = roundtrip(m, b, w, 1, fmt, q);
        CHECK_MSG(st == LB_OK, "%s on %s, one zero row: %s", m->name, fmt, lb_last_error());
        if (st == LB_OK) check_values(m, fmt, "one zero row", w, q, C, 0);
        /* random weights, dead inputs: finite */
        lb_rng r;
        lb_rng_seed(&r, 11);
        for (int i = 0; i < R * C; i++) w[i] = (float)lb_rng_normal(&r);
        st = roundtrip(m, dead, w, R, fmt, q);
        CHECK_MSG(st == LB_OK, "%s on %s, dead inputs: %s", m->name, fmt, lb_last_error());
        for (int i = 0; st == LB_OK && i < R * C; i++)
            if (!isfinite(q[i])) {
                CHECK_MSG(0, "%s on %s, dead inputs: value %d is %g", m->name, fmt, i, q[i]);
                break;
            }
        /* non-finite weights */
        w[3 * C + 17] = NAN;
        CHECK_FAILS(roundtrip(m, b, w, R, fmt, q), LB_ERR_NUMERIC, "NaN");
        w[3 * C + 17] = -INFINITY;
        CHECK_FAILS(roundtrip(m, b, w, R, fmt, q), LB_ERR_NUMERIC, "");
        w[3 * C + 17] = 0.5f;
        /* non-finite statistics the row reads */
        lb_method_opts o;
        if (lb_test_method_opts(m, common, &o) == LB_OK && lb_method_opts_stats(&o)) {
            stats_buf *bad = malloc(sizeof *bad);
            *bad = *b;
            make_stats(bad, 0, 4);
            bad->xtx[5 * C + 7] = bad->xtx[7 * C + 5] = NAN;
            bad->mean_abs[9] = bad->max_abs[9] = bad->mean[9] = INFINITY;
            bad->grad[9] = NAN;
            CHECK_FAILS(roundtrip(m, bad, w, R, fmt, q), LB_ERR_NUMERIC, "calibration statistics");
            free(bad);
        }
    }
    free(b);
    free(dead);
    free(low);
}

int main(void) {
    lb_set_threads(2);
    const char *commons[] = {"", "outliers=0.02 outlier_rule=sensitivity bias_correct=1"};
    for (int c = 0; c < 2; c++)
        for (int i = 0; i < lb_method_count(); i++) {
            const lb_method *m = lb_method_at(i);
            int before = lb_test_failures;
            common = commons[c];
            test_method(m);
            printf("%-10s %-55s %s\n", m->name, common, lb_test_failures == before ? "ok" : "FAILED");
        }
    return lb_test_finish("test_method_robustness");
}
