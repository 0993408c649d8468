/* Dense-and-sparse outliers and bias correction (src/quant/outliers.c,
 * bias_correct.c), their slots through the pipeline, and their compact GGUF
 * forms: known answers on synthetic weights, then the real model. */
#include "test.h"

#include <math.h>
#include <unistd.h>

#include "model/model_internal.h"

#define ROWS 48
#define COLS 256

static void gaussian(lb_rng *g, float *v, int64_t n, float sigma) {
    for (int64_t i = 0; i < n; i += 2) { /* Box-Muller */
        float u1 = lb_rng_f32(g) + 1e-7f, u2 = lb_rng_f32(g);
        float r = sqrtf(-2.0f * logf(u1)) * sigma;
        v[i] = r * cosf(6.2831853f * u2);
        if (i + 1 < n) v[i + 1] = r * sinf(6.2831853f * u2);
    }
}

/* The weight the linear computes with: dequantized dense + sparse. */
static void effective(const lb_tensor *t, const lb_quant_extras *x, float *eff) {
    CHECK_OK(lb_dequantize(t, eff));
    for (int64_t r = 0; r < x->rows && x->nnz; r++)
        for (int32_t k = x->row_ptr[r]; k < x->row_ptr[r + 1]; k++) eff[r * x->cols + x->col_idx[k]] += x->values[k];
}

static double sq_err(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return s;
}

/* tr(dW H dW^T), H = xtx */
static double proxy_loss(const float *w, const float *eff, const double *xtx) {
    double s = 0;
    for (int r = 0; r < ROWS; r++)
        for (int i = 0; i < COLS; i++) {
            double di = (double)w[r * COLS + i] - eff[r * COLS + i];
            if (di == 0) continue;
            for (int j = 0; j < COLS; j++) s += di * xtx[i * COLS + j] * ((double)w[r * COLS + j] - eff[r * COLS + j]);
        }
    return s;
}

/* Planted huge weights: found, kept exactly, and the rest rounded far better
 * than when the grid has to stretch over them. */
static void test_magnitude_known_answer(void) {
    lb_rng g;
    lb_rng_seed(&g, 7);
    static float w[ROWS * COLS], eff[ROWS * COLS], eff_rtn[ROWS * COLS];
    gaussian(&g, w, ROWS * COLS, 0.02f);
    enum { PLANTED = 40 };
    int where[PLANTED];
    for (int k = 0; k < PLANTED; k++) {
        where[k] = (int)((uint64_t)k * 7919 % (ROWS * COLS)); /* distinct: 7919 is prime, > ROWS*COLS/PLANTED */
        w[where[k]] = (k % 2 ? -1.0f : 1.0f) * (0.5f + 0.05f * (float)k);
    }
    double fraction = (double)PLANTED / (ROWS * COLS);
    uint8_t keep[ROWS * COLS];
    int64_t n_kept;
    CHECK_OK(lb_outliers_select(w, ROWS, COLS, NULL, fraction, LB_OUTLIER_MAGNITUDE, keep, &n_kept));
    CHECK(n_kept == PLANTED);
    int found = 0;
    for (int k = 0; k < PLANTED; k++) found += keep[where[k]];
    CHECK_MSG(found == PLANTED, "magnitude rule found %d of %d planted outliers", found, PLANTED);

    lb_qspec spec = lb_test_spec("int3:g64:asym");
    const lb_method *rtn = lb_method_find("rtn");
    lb_method_opts o;
    lb_tensor t, t_rtn;
    lb_quant_extras x;
    char kv[64];
    snprintf(kv, sizeof kv, "outliers=%.9g", fraction);
    CHECK_OK(lb_test_method_opts(rtn, kv, &o));
    CHECK_OK(lb_quantize_tensor_ex(rtn, &o, NULL, w, ROWS, COLS, &spec, "w", &t, &x));
    CHECK(x.nnz == PLANTED && x.bias == NULL && x.rows == ROWS && x.cols == COLS);
    effective(&t, &x, eff);
    /* every kept weight exact up to the fp16 rounding of its stored difference */
    uint8_t kept_mask[ROWS * COLS] = {0};
    for (int r = 0; r < ROWS; r++)
        for (int32_t k = x.row_ptr[r]; k < x.row_ptr[r + 1]; k++) {
            int i = r * COLS + x.col_idx[k];
            kept_mask[i] = 1;
            float bound = fabsf(x.values[k]) * 0x1p-11f + 1e-7f;
            CHECK_MSG(fabsf(eff[i] - w[i]) <= bound, "kept weight %d: %g, want %g", i, eff[i], w[i]);
            CHECK(x.values[k] == lb_round_fp16(x.values[k])); /* stored as fp16 */
        }
    for (int k = 0; k < PLANTED; k++) CHECK(kept_mask[where[k]]);
    /* RTN on the same dense format, no outliers */
    CHECK_OK(lb_quantize_tensor(rtn, NULL, NULL, w, ROWS, COLS, &spec, "w", &t_rtn));
    CHECK_OK(lb_dequantize(&t_rtn, eff_rtn));
    double e_ds = sq_err(w, eff, ROWS * COLS), e_rtn = sq_err(w, eff_rtn, ROWS * COLS);
    printf("  planted outliers, int3:g64:asym: squared error dense+sparse %.4g, rtn %.4g (ratio %.3f)\n", e_ds, e_rtn,
           e_ds / e_rtn);
    CHECK_MSG(e_ds < 0.05 * e_rtn, "dense+sparse error %g is not far below rtn's %g", e_ds, e_rtn);
    lb_tensor_free(&t);
    lb_tensor_free(&t_rtn);
    lb_quant_extras_free(&x);
    CHECK(x.nnz == 0 && x.row_ptr == NULL);
}

/* Channel rule: the planted input columns, whole; sensitivity: weighted by H_jj. */
static void test_channel_and_sensitivity(void) {
    lb_rng g;
    lb_rng_seed(&g, 11);
    static float w[ROWS * COLS];
    static double xtx[COLS * COLS];
    float max_abs[COLS];
    gaussian(&g, w, ROWS * COLS, 0.02f);
    for (int j = 0; j < COLS; j++) max_abs[j] = 1.0f + 0.001f * (float)j;
    max_abs[3] = 40.0f;
    max_abs[200] = 30.0f;
    lb_layer_stats s = {.n_samples = 100, .rows = ROWS, .cols = COLS, .max_abs_x = max_abs, .xtx = xtx};
    static uint8_t keep[ROWS * COLS];
    int64_t n_kept;
    CHECK_OK(lb_outliers_select(w, ROWS, COLS, &s, 2.0 / COLS, LB_OUTLIER_CHANNEL, keep, &n_kept));
    CHECK(n_kept == 2 * ROWS);
    int bad = 0;
    for (int r = 0; r < ROWS; r++)
        for (int j = 0; j < COLS; j++) bad += keep[r * COLS + j] != (j == 3 || j == 200);
    CHECK_MSG(bad == 0, "channel rule: %d weights differ from columns 3 and 200", bad);
    /* a tiny fraction still keeps one channel, the largest */
    CHECK_OK(lb_outliers_select(w, ROWS, COLS, &s, 1e-6, LB_OUTLIER_CHANNEL, keep, &n_kept));
    CHECK(n_kept == ROWS && keep[3] && keep[COLS + 3] && !keep[200]);

    /* sensitivity: column 17's inputs carry 1e4 times the energy, so most
     * of the picks are its weights; and the kept set is exactly the top
     * by (w - row median)^2 H_jj (computed here independently) */
    for (int j = 0; j < COLS; j++) xtx[j * COLS + j] = 1.0;
    xtx[17 * COLS + 17] = 1e4;
    CHECK_OK(lb_outliers_select(w, ROWS, COLS, &s, (double)ROWS / (ROWS * COLS), LB_OUTLIER_SENSITIVITY, keep, &n_kept));
    int in17 = 0;
    for (int r = 0; r < ROWS; r++) in17 += keep[r * COLS + 17];
    CHECK(n_kept == ROWS);
    CHECK_MSG(in17 >= ROWS * 3 / 4, "sensitivity kept %d of column 17's %d weights", in17, ROWS);
    double min_kept = INFINITY, max_other = 0;
    for (int r = 0; r < ROWS; r++) {
        float sorted[COLS];
        memcpy(sorted, w + r * COLS, sizeof sorted);
        for (int a = 1; a < COLS; a++) /* insertion sort: the test's own median */
            for (int b = a; b > 0 && sorted[b - 1] > sorted[b]; b--) {
                float t = sorted[b];
                sorted[b] = sorted[b - 1];
                sorted[b - 1] = t;
            }
        double med = 0.5 * ((double)sorted[COLS / 2 - 1] + sorted[COLS / 2]);
        for (int j = 0; j < COLS; j++) {
            double d = w[r * COLS + j] - med, score = d * d * xtx[j * COLS + j];
            if (keep[r * COLS + j]) min_kept = fmin(min_kept, score);
            else max_other = fmax(max_other, score);
        }
    }
    CHECK_MSG(min_kept >= max_other * (1 - 1e-6), "sensitivity: a kept score %g below another's %g", min_kept,
              max_other);
    /* without H_jj weighting (magnitude) column 17 is nothing special */
    CHECK_OK(lb_outliers_select(w, ROWS, COLS, &s, (double)ROWS / (ROWS * COLS), LB_OUTLIER_MAGNITUDE, keep, &n_kept));
    in17 = 0;
    for (int r = 0; r < ROWS; r++) in17 += keep[r * COLS + 17];
    CHECK(in17 < 5);
    /* refusals */
    CHECK_FAILS(lb_outliers_select(w, ROWS, COLS, NULL, 0.01, LB_OUTLIER_CHANNEL, keep, &n_kept), LB_ERR_INVALID,
                "max|x|");
    CHECK_FAILS(lb_outliers_select(w, ROWS, COLS, NULL, 0.01, LB_OUTLIER_SENSITIVITY, keep, &n_kept), LB_ERR_INVALID,
                "X^T X");
    CHECK_FAILS(lb_outliers_select(w, ROWS, COLS, NULL, 0.7, LB_OUTLIER_MAGNITUDE, keep, &n_kept), LB_ERR_INVALID,
                "outside [0, 0.5]");
    CHECK_FAILS(lb_outliers_select(w, ROWS, COLS, NULL, NAN, LB_OUTLIER_MAGNITUDE, keep, &n_kept), LB_ERR_INVALID,
                "outside");
    float keep_w = w[5];
    w[5] = NAN;
    CHECK_FAILS(lb_outliers_select(w, ROWS, COLS, NULL, 0.01, LB_OUTLIER_MAGNITUDE, keep, &n_kept), LB_ERR_NUMERIC,
                "row 0, column 5 is NaN");
    w[5] = keep_w;
}

/* Calibration-like inputs: n samples with a nonzero mean per channel; their
 * X^T X, mean x and max|x|. */
static void make_inputs(lb_rng *g, int n, float *x, double *xtx, float *mean, float *max_abs) {
    gaussian(g, x, (int64_t)n * COLS, 1.0f);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < COLS; j++) x[i * COLS + j] += 0.5f + 0.5f * sinf((float)j); /* the mean */
    for (int j = 0; j < COLS; j++) {
        double s = 0;
        float m = 0;
        for (int i = 0; i < n; i++) s += x[i * COLS + j], m = fmaxf(m, fabsf(x[i * COLS + j]));
        mean[j] = (float)(s / n);
        max_abs[j] = m;
    }
    for (int a = 0; a < COLS; a++)
        for (int b = 0; b < COLS; b++) {
            double s = 0;
            for (int i = 0; i < n; i++) s += (double)x[i * COLS + a] * x[i * COLS + b];
            xtx[a * COLS + b] = s;
        }
}

/* Bias correction removes the mean output shift; GPTQ with outliers keeps
 * its kept weights out of the error feedback and beats GPTQ without. */
static void test_bias_and_gptq(void) {
    enum { N = 512 };
    lb_rng g;
    lb_rng_seed(&g, 3);
    static float x[N * COLS], w[ROWS * COLS], eff[ROWS * COLS], eff2[ROWS * COLS];
    static double xtx[COLS * COLS];
    float mean[COLS], max_abs[COLS];
    make_inputs(&g, N, x, xtx, mean, max_abs);
    gaussian(&g, w, ROWS * COLS, 0.05f);
    for (int k = 0; k < 30; k++) w[(k * 4099) % (ROWS * COLS)] = (k % 2 ? 1.5f : -1.2f);
    lb_layer_stats s = {.n_samples = N, .rows = ROWS, .cols = COLS, .xtx = xtx, .mean_x = mean, .max_abs_x = max_abs};
    lb_qspec spec = lb_test_spec("int2:g64:asym");
    const lb_method *rtn = lb_method_find("rtn");
    lb_method_opts o;
    lb_tensor t;
    lb_quant_extras xb;

    /* bias correction: mean over the samples of (x W'^T + b) - x W^T is 0 */
    CHECK_OK(lb_test_method_opts(rtn, "bias_correct=1", &o));
    CHECK_OK(lb_quantize_tensor_ex(rtn, &o, &s, w, ROWS, COLS, &spec, "w", &t, &xb));
    CHECK(xb.bias != NULL && xb.nnz == 0);
    effective(&t, &xb, eff);
    double worst_before = 0, worst_after = 0;
    for (int r = 0; r < ROWS && xb.bias; r++) {
        double shift = 0; /* mean output shift = (W' - W) mean_x */
        for (int j = 0; j < COLS; j++) shift += ((double)eff[r * COLS + j] - w[r * COLS + j]) * mean[j];
        double after = shift + xb.bias[r];
        worst_before = fmax(worst_before, fabs(shift));
        worst_after = fmax(worst_after, fabs(after));
        /* what remains is the fp16 rounding of the stored bias */
        CHECK_MSG(fabs(after) <= fabs(shift) * 0x1p-11 + 1e-6, "row %d: shift %g, after correction %g", r, shift, after);
    }
    printf("  bias correction, int2:g64:asym: worst mean output shift %.4g -> %.4g\n", worst_before, worst_after);
    CHECK(worst_before > 0.05); /* the test means something: int2 shifts the mean visibly */
    lb_tensor_free(&t);
    lb_quant_extras_free(&xb);
    /* bias correction needs the mean: refused without statistics */
    CHECK_FAILS(lb_quantize_tensor_ex(rtn, &o, NULL, w, ROWS, COLS, &spec, "w", &t, &xb), LB_ERR_INVALID, "mean x");

    /* GPTQ + outliers against GPTQ alone, under H: lower proxy loss */
    const lb_method *gptq = lb_method_find("gptq");
    lb_qspec spec3 = lb_test_spec("int3:g64:asym");
    double loss[3];
    const char *variants[3] = {"", "outliers=0.005", "outliers=0.005 act_order=1"};
    for (int v = 0; v < 3; v++) {
        CHECK_OK(lb_test_method_opts(gptq, variants[v], &o));
        lb_status st = lb_quantize_tensor_ex(gptq, &o, &s, w, ROWS, COLS, &spec3, "w", &t, &xb);
        if (st == LB_ERR_UNSUPPORTED) { /* built without BLAS */
            printf("  gptq: not built, skipped\n");
            return;
        }
        CHECK_OK(st);
        effective(&t, &xb, eff2);
        loss[v] = proxy_loss(w, eff2, xtx);
        CHECK(v == 0 ? xb.nnz == 0 : xb.nnz == (int64_t)llround(0.005 * ROWS * COLS));
        lb_tensor_free(&t);
        lb_quant_extras_free(&xb);
    }
    /* RTN + the same outliers, under the same H */
    CHECK_OK(lb_test_method_opts(rtn, "outliers=0.005", &o));
    CHECK_OK(lb_quantize_tensor_ex(rtn, &o, NULL, w, ROWS, COLS, &spec3, "w", &t, &xb));
    effective(&t, &xb, eff2);
    double rtn_loss = proxy_loss(w, eff2, xtx);
    lb_tensor_free(&t);
    lb_quant_extras_free(&xb);
    printf("  proxy loss int3:g64:asym: gptq %.4g, gptq+outliers %.4g, act-order %.4g, rtn+outliers %.4g\n", loss[0],
           loss[1], loss[2], rtn_loss);
    CHECK(loss[1] < 0.5 * loss[0]);
    CHECK(loss[1] < rtn_loss && loss[2] < rtn_loss);

    /* the same bytes and slots for any thread count (a smoke check: 48 rows are one gptq tile;
     * test_gptq covers its tiling) */
    {
        lb_tensor t1, t3;
        lb_quant_extras x1, x3;
        CHECK_OK(lb_test_method_opts(gptq, "outliers=0.01 bias_correct=1 act_order=1", &o));
        int threads = lb_get_threads();
        lb_set_threads(1);
        CHECK_OK(lb_quantize_tensor_ex(gptq, &o, &s, w, ROWS, COLS, &spec3, "w", &t1, &x1));
        lb_set_threads(3);
        CHECK_OK(lb_quantize_tensor_ex(gptq, &o, &s, w, ROWS, COLS, &spec3, "w", &t3, &x3));
        lb_set_threads(threads);
        CHECK(t1.nbytes == t3.nbytes && !memcmp(t1.data, t3.data, t1.nbytes));
        CHECK(x1.nnz == x3.nnz && x1.nnz > 0 && !memcmp(x1.col_idx, x3.col_idx, (size_t)x1.nnz * 4) &&
              !memcmp(x1.values, x3.values, (size_t)x1.nnz * 4) && !memcmp(x1.bias, x3.bias, ROWS * 4));
        lb_tensor_free(&t1);
        lb_tensor_free(&t3);
        lb_quant_extras_free(&x1);
        lb_quant_extras_free(&x3);
    }

    /* Known answer for GPTQ's handling of kept weights: keep every column
     * but the first. Column 0's rounding error e is then fully compensated
     * by the exact later columns, and OBS says the loss left is exactly
     * e^2 / [H^-1]_00 per row (were kept weights to spread error, or to lose
     * the updates, the sum would differ). */
    static uint8_t keep[ROWS * COLS];
    static float kept[ROWS * COLS];
    for (int i = 0; i < ROWS * COLS; i++) keep[i] = i % COLS != 0, kept[i] = w[i];
    CHECK_OK(lb_test_method_opts(gptq, "percdamp=0", &o));
    o.keep = keep;
    o.kept = kept;
    CHECK_OK(lb_quantize_tensor(gptq, &o, &s, w, ROWS, COLS, &spec3, "w", &t));
    CHECK_OK(lb_dequantize(&t, eff2));
    for (int i = 0; i < ROWS * COLS; i++)
        if (keep[i]) eff2[i] = kept[i];
    lb_tensor_free(&t);
    /* [H^-1]_00 by a Cholesky solve in double, H z = e_0 */
    static double L[COLS * COLS];
    double z[COLS];
    memcpy(L, xtx, sizeof L);
    for (int j = 0; j < COLS; j++) {
        for (int k = 0; k < j; k++) L[j * COLS + j] -= L[j * COLS + k] * L[j * COLS + k];
        L[j * COLS + j] = sqrt(L[j * COLS + j]);
        for (int i = j + 1; i < COLS; i++) {
            for (int k = 0; k < j; k++) L[i * COLS + j] -= L[i * COLS + k] * L[j * COLS + k];
            L[i * COLS + j] /= L[j * COLS + j];
        }
    }
    for (int i = 0; i < COLS; i++) { /* L y = e_0 */
        double v = i == 0;
        for (int k = 0; k < i; k++) v -= L[i * COLS + k] * z[k];
        z[i] = v / L[i * COLS + i];
    }
    for (int i = COLS - 1; i >= 0; i--) { /* L^T z = y */
        double v = z[i];
        for (int k = i + 1; k < COLS; k++) v -= L[k * COLS + i] * z[k];
        z[i] = v / L[i * COLS + i];
    }
    double want = 0;
    for (int r = 0; r < ROWS; r++) {
        double e = (double)w[r * COLS] - eff2[r * COLS];
        want += e * e / z[0];
    }
    double got = proxy_loss(w, eff2, xtx);
    printf("  gptq, every column but the first kept: loss %.6g, OBS says %.6g\n", got, want);
    CHECK(want > 0);
    CHECK_MSG(fabs(got - want) <= 1e-3 * want, "loss %g, want %g", got, want);
}

/* Options: parsed, refused, formatted only when set, and their statistics. */
static void test_options(void) {
    const lb_method *rtn = lb_method_find("rtn"), *twn = lb_method_find("twn");
    lb_method_opts o;
    CHECK_OK(lb_test_method_opts(rtn, "clip=mse outliers=0.01 outlier_rule=channel bias_correct=1", &o));
    char buf[256];
    lb_method_opts_format(&o, 0, buf, sizeof buf);
    CHECK_MSG(!strcmp(buf, "clip=mse outliers=0.01 outlier_rule=channel bias_correct=1"), "%s", buf);
    CHECK(lb_method_opts_stats(&o) == (LB_STATS_MAX_ABS_X | LB_STATS_MEAN_X));
    lb_method_opts_default(rtn, &o);
    lb_method_opts_format(&o, 1, buf, sizeof buf); /* all = 1: the row's own, common ones only when set */
    CHECK_MSG(!strcmp(buf, "clip=minmax mse_steps=50 mse_min_shrink=0.5 weights=plain"), "%s", buf);
    CHECK(lb_method_opts_stats(&o) == 0);
    CHECK_OK(lb_method_opts_parse(&o, "outlier_rule=sensitivity"));
    CHECK(lb_method_opts_stats(&o) == 0); /* no outliers asked: the rule needs nothing */
    CHECK_OK(lb_method_opts_parse(&o, "outliers=0.001"));
    CHECK(lb_method_opts_stats(&o) == LB_STATS_XTX);
    CHECK_OK(lb_test_method_opts(twn, "outliers=0.02", &o)); /* every method takes them */
    CHECK_FAILS(lb_method_opts_parse(&o, "outliers=0.6"), LB_ERR_INVALID, "'outliers' expects a number in [0, 0.5]");
    CHECK_FAILS(lb_method_opts_parse(&o, "outliers=-0.1"), LB_ERR_INVALID, "'outliers' expects");
    CHECK_FAILS(lb_method_opts_parse(&o, "outliers=nan"), LB_ERR_INVALID, "'outliers' expects");
    CHECK_FAILS(lb_method_opts_parse(&o, "outlier_rule=biggest"), LB_ERR_INVALID, "unknown outlier rule 'biggest'");
    CHECK_FAILS(lb_method_opts_parse(&o, "bias_correct=2"), LB_ERR_INVALID, "'bias_correct' expects an integer in 0..1");

    /* the plain entry point and float formats refuse them */
    float w[4 * 64] = {0};
    w[3] = 1;
    lb_tensor t;
    lb_quant_extras x;
    CHECK_OK(lb_test_method_opts(rtn, "outliers=0.01", &o));
    CHECK_FAILS(lb_quantize_tensor(rtn, &o, NULL, w, 4, 64, &(lb_qspec){0}, "w", &t), LB_ERR_INVALID,
                "lb_quantize_tensor_ex");
    lb_qspec f16 = lb_test_spec("f16"), i4 = lb_test_spec("int4:g64:asym");
    CHECK_FAILS(lb_quantize_tensor_ex(rtn, &o, NULL, w, 4, 64, &f16, "w", &t, &x), LB_ERR_INVALID, "not float");
    CHECK_FAILS(lb_quantize_tensor_ex(rtn, &o, NULL, w, 4, 64, &i4, "w", &t, NULL), LB_ERR_INVALID, "slots");
    /* a fraction too small for this tensor keeps nothing and needs no slots */
    CHECK_OK(lb_test_method_opts(rtn, "outliers=0.001", &o));
    CHECK_OK(lb_quantize_tensor_ex(rtn, &o, NULL, w, 4, 64, &i4, "w", &t, &x));
    CHECK(x.nnz == 0 && x.bias == NULL);
    lb_tensor_free(&t);
}

/* A synthetic model whose linears are larger than 65536 weights: the
 * per-row count forms (u8 and u16 counts, u16 columns) and fp32 values
 * survive save and load. */
static void test_count_forms(void) {
    lb_config c = {.dim = 128, .hidden_dim = 640, .n_layers = 1, .n_heads = 4, .n_kv_heads = 4, .vocab_size = 8,
                   .seq_len = 8, .norm_eps = 1e-5f, .rope_theta = 10000.0f};
    lb_model *m = NULL;
    CHECK_OK(lb_model_alloc(&c, 1, &m));
    if (!m) return;
    lb_rng g;
    lb_rng_seed(&g, 5);
    for (int i = 0; i < lb_model_n_tensors(m); i++) {
        lb_tensor *t = lb_model_tensor_at(m, i);
        size_t n = (size_t)(t->rows * t->cols);
        float *d = lb_alloc(n * sizeof(float));
        gaussian(&g, d, (int64_t)n, 0.05f);
        if (t->rows == 1)
            for (size_t k = 0; k < n; k++) d[k] = 1.0f;
        t->data = t->owned = (uint8_t *)d;
        t->nbytes = n * sizeof(float);
        CHECK_OK(lb_tensor_resolve(t));
    }
    CHECK_OK(lb_model_finish(m));
    lb_linear *w1 = &m->layers[0].linear[LB_W1], *w2 = &m->layers[0].linear[LB_W2]; /* (640,128), (128,640) */
    /* w1: 3 outliers in rows 0 and 639: u8 counts; fp16 values */
    int32_t rp1[641], ci1[3] = {5, 127, 0};
    float v1[3] = {0.5f, -1.0f, 0.25f};
    for (int r = 0; r <= 640; r++) rp1[r] = r == 0 ? 0 : r < 640 ? 2 : 3;
    CHECK_OK(lb_linear_set_outliers(w1, 3, rp1, ci1, v1));
    /* w2: 300 outliers in row 7 (u16 counts), values not exact in fp16 (f32) */
    int32_t rp2[129], ci2[300];
    float v2[300];
    for (int r = 0; r <= 128; r++) rp2[r] = r <= 7 ? 0 : 300;
    for (int k = 0; k < 300; k++) ci2[k] = 2 * k, v2[k] = 0.1f + 1e-4f * (float)k;
    CHECK_OK(lb_linear_set_outliers(w2, 300, rp2, ci2, v2));
    float bias[128];
    for (int r = 0; r < 128; r++) bias[r] = lb_round_fp16(0.01f * (float)r);
    CHECK_OK(lb_linear_set_bias(w2, bias));
    lb_slot_layout l1, l2;
    lb_linear_slot_layout(w1, &l1);
    lb_linear_slot_layout(w2, &l2);
    CHECK(!l1.pos16 && l1.count_bytes == 1 && l1.col_bytes == 2 && l1.value_bytes == 2);
    CHECK(!l2.pos16 && l2.count_bytes == 2 && l2.col_bytes == 2 && l2.value_bytes == 4 && l2.bias_bytes == 2);
    /* bytes counted as stored: counts + u16 columns + values (+ fp16 bias) */
    CHECK(lb_linear_slot_bytes(w1) == 640 * 1 + 3 * 2 + 3 * 2);
    CHECK(lb_linear_slot_bytes(w2) == 128 * 2 + 300 * 2 + 300 * 4 + 128 * 2);
    char dir[] = "/tmp/lb_outliers_XXXXXX", path[256];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/m.gguf", dir);
    CHECK_OK(lb_model_save_gguf(m, path));
    lb_model *back = NULL;
    CHECK_OK(lb_model_load(path, NULL, &back));
    if (back) {
        const lb_linear *b1 = &back->layers[0].linear[LB_W1], *b2 = &back->layers[0].linear[LB_W2];
        CHECK(b1->outliers.nnz == 3 && !memcmp(b1->outliers.row_ptr, rp1, sizeof rp1) &&
              !memcmp(b1->outliers.col_idx, ci1, sizeof ci1) && !memcmp(b1->outliers.values, v1, sizeof v1));
        CHECK(b2->outliers.nnz == 300 && !memcmp(b2->outliers.row_ptr, rp2, sizeof rp2) &&
              !memcmp(b2->outliers.col_idx, ci2, sizeof ci2) && !memcmp(b2->outliers.values, v2, sizeof v2));
        CHECK(b2->bias && !memcmp(b2->bias, bias, sizeof bias));
        lb_model_free(back);
    }
    remove(path);
    rmdir(dir);
    lb_model_free(m);
}

/* The real model through the pipeline: slots filled, counted in bpw as
 * stored, bit-identical after save and load; an old-form file still loads. */
static void test_pipeline_real_model(void) {
    lb_model *m = NULL;
    CHECK_OK(lb_model_load(lb_test_data("models/stories260K.bin"), NULL, &m));
    if (!m) return;
    lb_calib_opts co;
    lb_calib_opts_default(&co);
    co.text_path = lb_test_data("text/tinystories-sample.txt");
    co.calib_blocks = 8;
    lb_calib_stats *stats = NULL;
    CHECK_OK(lb_calibrate(m, &co, &stats));
    lb_plan plan;
    lb_plan_init(&plan);
    const char *recipe = "linears int3:g64:asym clip=mse outliers=0.01 bias_correct=1\n";
    CHECK_OK(lb_plan_parse_recipe(&plan, recipe, strlen(recipe), "r"));
    /* without statistics: refused, model unchanged */
    CHECK_FAILS(lb_quantize_model(m, &plan, NULL), LB_ERR_INVALID, "mean x");
    CHECK(m->layers[0].linear[0].w.spec.family == LB_FAMILY_F32 && !m->layers[0].linear[0].bias);
    CHECK(lb_plan_stats_needed(&plan) == 0); /* not resolved yet: no entries */
    lb_quantize_report rep;
    CHECK_OK(lb_quantize_model_calibrated(m, &plan, stats, &rep));
    uint64_t want_bytes = 0;
    int64_t nnz_all = 0, weights = 0;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int i = 0; i < LB_N_LINEARS; i++) {
            const lb_linear *L = &m->layers[l].linear[i];
            int64_t n = L->w.rows * L->w.cols;
            CHECK(L->bias != NULL);
            CHECK(L->outliers.nnz == llround(0.01 * (double)n));
            /* 64x64 and 64x172: u16 flat positions, fp16 values and bias */
            want_bytes += L->w.nbytes + (uint64_t)L->outliers.nnz * 4 + (uint64_t)L->w.rows * 2;
            nnz_all += L->outliers.nnz;
            weights += n;
        }
    CHECK_NEAR(rep.bpw, 8.0 * (double)want_bytes / (double)weights, 1e-9);
    printf("  stories260K int3:g64:asym + 1%% outliers + bias: %lld outliers, %.4f bpw\n", (long long)nnz_all, rep.bpw);
    lb_quantize_report_free(&rep); /* its per-tensor records */
    int tok[6] = {1, 403, 407, 261, 378, 1};
    float *want = lb_alloc(6 * 512 * sizeof(float)), *got = lb_alloc(6 * 512 * sizeof(float));
    CHECK_OK(lb_test_logits(m, tok, 6, want));
    char dir[] = "/tmp/lb_outliers_XXXXXX", path[256];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/q.gguf", dir);
    CHECK_OK(lb_model_save_gguf(m, path));
    lb_model *back = NULL;
    CHECK_OK(lb_model_load(path, NULL, &back));
    if (back) {
        lb_model_size a, b;
        lb_model_sizes(m, &a);
        lb_model_sizes(back, &b);
        CHECK(a.bytes_quant == b.bytes_quant && a.bytes_quant == want_bytes);
        CHECK_OK(lb_test_logits(back, tok, 6, got));
        CHECK_MSG(!memcmp(got, want, 6 * 512 * sizeof(float)), "logits change through save and load");
        lb_model_free(back);
    }
    remove(path);
    rmdir(dir);
    /* quantizing again with outliers would drop the ones it has: refused */
    CHECK_FAILS(lb_quantize_model_calibrated(m, &plan, stats, NULL), LB_ERR_UNSUPPORTED, "already has");
    lb_free(want);
    lb_free(got);
    lb_plan_free(&plan);
    lb_calib_stats_free(stats);
    lb_model_free(m);

    /* the first slot form (i32 row_ptr and columns, f32 values) still loads */
    lb_model *old = NULL;
    CHECK_OK(lb_model_load("fuzz/corpus/fuzz_model_gguf/slots.gguf", NULL, &old));
    int found = 0;
    for (int l = 0; old && l < old->cfg.n_layers; l++)
        for (int i = 0; i < LB_N_LINEARS; i++) found += (int)old->layers[l].linear[i].outliers.nnz;
    CHECK(found == 2);
    lb_model_free(old);
}

int main(void) {
    test_magnitude_known_answer();
    test_channel_and_sensitivity();
    test_bias_and_gptq();
    test_options();
    test_count_forms();
    test_pipeline_real_model();
    return lb_test_finish("test_outliers");
}
