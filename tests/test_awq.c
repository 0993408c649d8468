/* Input-channel scaling (awq, awq+gptq, smoothquant; src/quant/awq.c,
 * smoothquant.c, scale.c; the folding in src/pipeline/fold.c):
 * - the objective tr(E H E^T) is the summed squared output error over the
 *   samples, and the scaled statistics are those of x / s;
 * - on a synthetic layer with a few outlier input channels, AWQ's search
 *   picks r > 0 and its output error is below round-to-nearest's (min-max
 *   and mse clipping) for the same format;
 * - the clip search never increases the output error, and lowers it at 2
 *   bits;
 * - bad options, formats, statistics (NaN, negative, all-zero channels) and
 *   tie maps are refused or stay finite;
 * - scales and bytes do not depend on the thread count;
 * - folding into stories260K (grouped-query attention) leaves the fp32
 *   logits unchanged, and a scaled quantized model is all-or-nothing
 *   (skipped without the data). */
#include "test.h"

enum { ROWS = 32, COLS = 64, NSAMP = 2048 };

typedef struct {
    double xtx[COLS * COLS];
    float mean_abs[COLS], max_abs[COLS];
    lb_layer_stats st;
} stats_buf;

/* samples x (NSAMP x COLS): standard normal, channels in `outliers` times
 * `big`, channels in [zero_lo, zero_hi) always 0 */
static void make_samples(float *x, uint64_t seed, const int *outliers, int n_out, float big, int zero_lo, int zero_hi) {
    lb_rng r;
    lb_rng_seed(&r, seed);
    for (int i = 0; i < NSAMP; i++)
        for (int j = 0; j < COLS; j++) {
            float v = (float)lb_rng_normal(&r);
            for (int k = 0; k < n_out; k++)
                if (outliers[k] == j) v *= big;
            if (j >= zero_lo && j < zero_hi) v = 0.0f;
            x[i * COLS + j] = v;
        }
}

static void stats_of(const float *x, stats_buf *b) {
    memset(b, 0, sizeof *b);
    for (int i = 0; i < NSAMP; i++)
        for (int j = 0; j < COLS; j++) {
            double v = x[i * COLS + j];
            b->mean_abs[j] += (float)(fabs(v) / NSAMP);
            b->max_abs[j] = fmaxf(b->max_abs[j], (float)fabs(v));
            for (int k = 0; k < COLS; k++) b->xtx[j * COLS + k] += v * x[i * COLS + k];
        }
    b->st = (lb_layer_stats){.n_samples = NSAMP, .rows = ROWS, .cols = COLS, .xtx = b->xtx,
                             .mean_abs_x = b->mean_abs, .max_abs_x = b->max_abs};
}

static void normal_weights(float *w, int n, uint64_t seed) {
    lb_rng r;
    lb_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) w[i] = (float)lb_rng_normal(&r);
}

static float xs[NSAMP * COLS];

/* tr(E H E^T) is sum over samples of |E x|^2; stats of x / s are the scaled stats */
static void test_objective_and_scaled_stats(void) {
    static stats_buf b, bs;
    make_samples(xs, 1, NULL, 0, 1, 0, 0);
    stats_of(xs, &b);
    float w[ROWS * COLS], wq[ROWS * COLS];
    normal_weights(w, ROWS * COLS, 2);
    normal_weights(wq, ROWS * COLS, 3);
    double direct = 0;
    for (int i = 0; i < NSAMP; i++)
        for (int r = 0; r < ROWS; r++) {
            double y = 0;
            for (int j = 0; j < COLS; j++) y += ((double)wq[r * COLS + j] - w[r * COLS + j]) * xs[i * COLS + j];
            direct += y * y;
        }
    double e = lb_output_error(w, wq, ROWS, COLS, b.xtx);
    CHECK_NEAR(e / direct, 1.0, 1e-9);

    float s[COLS];
    for (int j = 0; j < COLS; j++) s[j] = 0.25f + 0.05f * (float)j;
    lb_layer_stats out;
    CHECK_OK(lb_layer_stats_scaled(&b.st, s, &out));
    for (int i = 0; i < NSAMP * COLS; i++) xs[i] /= s[i % COLS];
    stats_of(xs, &bs);
    int bad = 0;
    for (int k = 0; k < COLS * COLS; k++)
        bad += !(fabs(out.xtx[k] - bs.xtx[k]) <= 1e-6 * (fabs(bs.xtx[k]) + sqrt(bs.xtx[(k / COLS) * (COLS + 1)] *
                                                                                   bs.xtx[(k % COLS) * (COLS + 1)])));
    for (int j = 0; j < COLS; j++) {
        bad += !(fabsf(out.mean_abs_x[j] - bs.mean_abs[j]) <= 1e-5f * bs.mean_abs[j]);
        bad += !(fabsf(out.max_abs_x[j] - bs.max_abs[j]) <= 1e-6f * bs.max_abs[j]);
    }
    CHECK_MSG(bad == 0, "%d scaled statistics differ from those of x / s", bad);
    CHECK(out.mean_x == NULL && out.hist == NULL);
    lb_layer_stats_free(&out);
    s[5] = 0.0f;
    CHECK_FAILS(lb_layer_stats_scaled(&b.st, s, &out), LB_ERR_NUMERIC, "input scale of channel 5");
    s[5] = NAN;
    CHECK_FAILS(lb_layer_stats_scaled(&b.st, s, &out), LB_ERR_NUMERIC, "input scale of channel 5");
}

/* quantizes w by `method` the way the pipeline does for one linear: s from
 * the hook, W diag(s) and the stats of x / s to the row; returns the output
 * error of Q(W diag(s)) diag(s)^-1 against w under the original H */
static double scaled_error(const char *method, const char *kv, const float *w, const lb_layer_stats *st,
                           const char *format, lb_method_report *rep) {
    const lb_method *m = lb_method_find(method);
    lb_method_opts o;
    CHECK_OK(lb_test_method_opts(m, kv, &o));
    memset(rep, 0, sizeof *rep);
    o.report = rep;
    lb_qspec spec = lb_test_spec(format);
    const float *ws[1] = {w};
    int64_t rows[1] = {ROWS};
    lb_scale_group g = {1, ws, rows, &spec, COLS, st, NULL, 0};
    float s[COLS], w2[ROWS * COLS];
    lb_status status = m->input_scales(&g, &o, s);
    CHECK_OK(status);
    if (status != LB_OK) return NAN;
    double param = rep->scale_param, l = rep->scale_loss, l0 = rep->scale_loss_unscaled;
    for (int i = 0; i < ROWS * COLS; i++) w2[i] = w[i] * s[i % COLS];
    lb_layer_stats scaled;
    CHECK_OK(lb_layer_stats_scaled(st, s, &scaled));
    lb_tensor t;
    CHECK_OK(lb_quantize_tensor(m, &o, &scaled, w2, ROWS, COLS, &spec, "w", &t));
    CHECK_OK(lb_dequantize(&t, w2));
    lb_tensor_free(&t);
    lb_layer_stats_free(&scaled);
    for (int i = 0; i < ROWS * COLS; i++) w2[i] /= s[i % COLS];
    rep->scale_param = param; /* the row's quantize may have reported over them */
    rep->scale_loss = l;
    rep->scale_loss_unscaled = l0;
    return lb_output_error(w, w2, ROWS, COLS, st->xtx);
}

static double rtn_error(const char *kv, const float *w, const lb_layer_stats *st, const char *format) {
    lb_method_opts o;
    CHECK_OK(lb_test_method_opts(lb_method_find("rtn"), kv, &o));
    lb_qspec spec = lb_test_spec(format);
    float wq[ROWS * COLS];
    lb_tensor t;
    CHECK_OK(lb_quantize_tensor(o.method, &o, NULL, w, ROWS, COLS, &spec, "w", &t));
    CHECK_OK(lb_dequantize(&t, wq));
    lb_tensor_free(&t);
    return lb_output_error(w, wq, ROWS, COLS, st->xtx);
}

static void test_outlier_channels(void) {
    static stats_buf b;
    const int outliers[] = {3, 17, 40, 41};
    make_samples(xs, 4, outliers, 4, 25.0f, 0, 0);
    stats_of(xs, &b);
    float w[ROWS * COLS];
    normal_weights(w, ROWS * COLS, 5);
    const char *formats[] = {"int3:g32:asym", "int4:g64:asym", "int2:g32:asym"};
    for (int f = 0; f < 3; f++) {
        lb_method_report rep;
        double rtn = rtn_error("", w, &b.st, formats[f]), rtn_mse = rtn_error("clip=mse", w, &b.st, formats[f]);
        double awq = scaled_error("awq", "", w, &b.st, formats[f], &rep);
        CHECK_MSG(rep.scale_param > 0, "%s: awq kept r = %g", formats[f], rep.scale_param);
        CHECK_MSG(rep.scale_loss < rep.scale_loss_unscaled, "%s", formats[f]);
        /* r = 0 is s = 1: its loss is min-max RTN's error */
        CHECK_NEAR(rep.scale_loss_unscaled / rtn, 1.0, 1e-9);
        CHECK_MSG(awq < rtn && awq < rtn_mse, "%s: awq %g, rtn %g, rtn mse %g", formats[f], awq, rtn, rtn_mse);
        /* scaling alone (no clip search) already beats min-max RTN */
        double scale_only = scaled_error("awq", "clip_search=0", w, &b.st, formats[f], &rep);
        CHECK_MSG(scale_only < rtn, "%s: scaled %g, rtn %g", formats[f], scale_only, rtn);
        CHECK(awq <= scale_only);
#ifdef LB_HAVE_BLAS
        double ag = scaled_error("awq+gptq", "", w, &b.st, formats[f], &rep);
        CHECK_MSG(ag < rtn, "%s: awq+gptq %g, rtn %g", formats[f], ag, rtn);
        CHECK(rep.scale_param > 0);
#endif
        printf("%s: output error rtn %.4g, rtn mse %.4g, awq %.4g (scale only %.4g)\n", formats[f], rtn, rtn_mse,
               awq, scale_only);
    }
    /* smoothquant with its alpha search keeps the candidate of least error: never above s = 1 */
    lb_method_report rep;
    double sq = scaled_error("smoothquant", "alpha_search=1", w, &b.st, "int3:g32:asym", &rep);
    CHECK(rep.scale_loss <= rep.scale_loss_unscaled);
    CHECK_NEAR(rep.scale_loss_unscaled / rtn_error("", w, &b.st, "int3:g32:asym"), 1.0, 1e-9);
    CHECK_NEAR(sq / rep.scale_loss, 1.0, 1e-9); /* smoothquant rounds min-max, as its search does */
}

/* clip search never raises the output error, and finds something at 2 bits */
static void test_clip_search(void) {
    static stats_buf b;
    const int outliers[] = {7};
    make_samples(xs, 6, outliers, 1, 8.0f, 0, 0);
    stats_of(xs, &b);
    const char *formats[] = {"int2:g32:asym", "int3:g64:asym", "int4:g16:sym", "int3:g16:asym:zint", "int4:row:asym"};
    const lb_method *awq = lb_method_find("awq");
    for (int f = 0; f < 5; f++)
        for (uint64_t seed = 10; seed < 13; seed++) {
            float w[ROWS * COLS], wq[ROWS * COLS];
            normal_weights(w, ROWS * COLS, seed);
            lb_qspec spec = lb_test_spec(formats[f]);
            double loss[2];
            for (int c = 0; c < 2; c++) {
                lb_method_opts o;
                CHECK_OK(lb_test_method_opts(awq, c ? "clip_search=1" : "clip_search=0", &o));
                lb_method_report rep;
                memset(&rep, 0, sizeof rep);
                o.report = &rep;
                lb_tensor t;
                CHECK_OK(lb_quantize_tensor(awq, &o, &b.st, w, ROWS, COLS, &spec, "w", &t));
                CHECK_OK(lb_dequantize(&t, wq));
                lb_tensor_free(&t);
                loss[c] = lb_output_error(w, wq, ROWS, COLS, b.xtx);
                if (c) CHECK_NEAR(rep.proxy_loss / loss[c], 1.0, 1e-9); /* what it reports is what it made */
            }
            CHECK_MSG(loss[1] <= loss[0], "%s seed %d: clipped %g > unclipped %g", formats[f], (int)seed, loss[1],
                      loss[0]);
            if (f == 0) CHECK_MSG(loss[1] < 0.95 * loss[0], "int2: clip search %g vs %g", loss[1], loss[0]);
        }
}

static void test_bad_input(void) {
    const lb_method *awq = lb_method_find("awq"), *sq = lb_method_find("smoothquant"),
                    *ag = lb_method_find("awq+gptq");
    CHECK(awq && sq && ag);
    lb_method_opts o;
    CHECK_FAILS(lb_test_method_opts(awq, "grid=0", &o), LB_ERR_INVALID, "grid");
    CHECK_FAILS(lb_test_method_opts(awq, "max_shrink=1", &o), LB_ERR_INVALID, "max_shrink");
    CHECK_FAILS(lb_test_method_opts(awq, "max_shrink=-0.1", &o), LB_ERR_INVALID, "max_shrink");
    CHECK_FAILS(lb_test_method_opts(awq, "clip_search=2", &o), LB_ERR_INVALID, "clip_search");
    CHECK_FAILS(lb_test_method_opts(awq, "alpha=0.5", &o), LB_ERR_INVALID, "has no option 'alpha'");
    CHECK_FAILS(lb_test_method_opts(sq, "alpha=1.5", &o), LB_ERR_INVALID, "alpha");
    CHECK_FAILS(lb_test_method_opts(sq, "alpha=nan", &o), LB_ERR_INVALID, "alpha");
    CHECK_FAILS(lb_test_method_opts(ag, "grid=20", &o), LB_ERR_INVALID, "has no option 'grid'");

    static stats_buf b;
    const int zero_outliers[] = {1};
    make_samples(xs, 7, zero_outliers, 1, 10.0f, 8, 16); /* channels 8..15 always zero */
    stats_of(xs, &b);
    float w[ROWS * COLS];
    normal_weights(w, ROWS * COLS, 8);
    lb_qspec int3 = lb_test_spec("int3:g32:asym"), nf4 = lb_test_spec("nf4:g64"), tern = lb_test_spec("ternary:g64:2bit");
    lb_tensor t;
    CHECK_FAILS(lb_quantize_tensor(awq, NULL, &b.st, w, ROWS, COLS, &nf4, "w", &t), LB_ERR_INVALID, "uniform (int)");
    CHECK_FAILS(lb_quantize_tensor(sq, NULL, &b.st, w, ROWS, COLS, &tern, "w", &t), LB_ERR_INVALID, "uniform (int)");

    /* all-zero channels: every scale finite and > 0, the whole row works */
    const float *ws[1] = {w};
    int64_t rows[1] = {ROWS};
    lb_scale_group g = {1, ws, rows, &int3, COLS, &b.st, NULL, 0};
    const lb_method *scalers[] = {awq, sq};
    for (int k = 0; k < 2; k++) {
        float s[COLS];
        lb_method_opts_default(scalers[k], &o);
        CHECK_OK(scalers[k]->input_scales(&g, &o, s));
        int bad = 0;
        for (int j = 0; j < COLS; j++) bad += !(isfinite(s[j]) && s[j] > 0);
        CHECK_MSG(bad == 0, "%s: %d scales not finite and positive", scalers[k]->name, bad);
        lb_method_report rep;
        double e = scaled_error(scalers[k]->name, "", w, &b.st, "int3:g32:asym", &rep);
        CHECK(isfinite(e));
    }
    /* NaN / negative statistics: a clear error, no scales */
    float s[COLS];
    lb_method_opts_default(awq, &o);
    b.mean_abs[9] = NAN;
    CHECK_FAILS(awq->input_scales(&g, &o, s), LB_ERR_NUMERIC, "mean|x| of input channel 9 is nan");
    b.mean_abs[9] = -1.0f;
    CHECK_FAILS(awq->input_scales(&g, &o, s), LB_ERR_NUMERIC, "mean|x| of input channel 9");
    b.mean_abs[9] = 0.0f;
    b.xtx[3 * COLS + 4] = NAN;
    CHECK_FAILS(awq->input_scales(&g, &o, s), LB_ERR_NUMERIC, "X^T X entry (3, 4)");
    CHECK_FAILS(lb_quantize_tensor(awq, NULL, &b.st, w, ROWS, COLS, &int3, "w", &t), LB_ERR_NUMERIC, "X^T X");
    b.xtx[3 * COLS + 4] = 0.0;
    lb_method_opts_default(sq, &o);
    b.max_abs[2] = INFINITY;
    CHECK_FAILS(sq->input_scales(&g, &o, s), LB_ERR_NUMERIC, "max|x| of input channel 2");
    b.max_abs[2] = 1.0f;
    /* statistics of another width, missing statistics, bad ties */
    lb_layer_stats narrow = b.st;
    narrow.cols = COLS / 2;
    g.stats = &narrow;
    CHECK_FAILS(sq->input_scales(&g, &o, s), LB_ERR_INVALID, "statistics are for 32 input channels");
    lb_layer_stats none = b.st;
    none.max_abs_x = NULL;
    g.stats = &none;
    CHECK_FAILS(sq->input_scales(&g, &o, s), LB_ERR_INVALID, "needs calibration statistics (max|x|)");
    g.stats = &b.st;
    int tie[COLS];
    for (int j = 0; j < COLS; j++) tie[j] = j % 8;
    g.tie = tie;
    g.n_classes = 8;
    for (int k = 0; k < 2; k++) {
        lb_method_opts_default(scalers[k], &o);
        CHECK_OK(scalers[k]->input_scales(&g, &o, s));
        int untied = 0;
        for (int j = 8; j < COLS; j++) untied += s[j] != s[j % 8];
        CHECK_MSG(untied == 0, "%s: %d tied channels got another scale", scalers[k]->name, untied);
    }
    tie[5] = 8;
    CHECK_FAILS(awq->input_scales(&g, &o, s), LB_ERR_INVALID, "tied to class 8 of 8");
}

/* the same bytes and scales for 1, 2 and 3 threads, on a layer big enough
 * for the parallel branches (rows cols^2 > 2^22) */
static void test_threads(void) {
    enum { R = 288, C = 128, N = 512 };
    float *x = lb_alloc((size_t)N * C * sizeof(float)), *w = lb_alloc((size_t)R * C * sizeof(float));
    double *h = lb_calloc((size_t)C * C, sizeof(double));
    float *mean_abs = lb_calloc(C, sizeof(float));
    if (!x || !w || !h || !mean_abs) {
        CHECK(0);
        return;
    }
    lb_rng r;
    lb_rng_seed(&r, 21);
    for (int i = 0; i < N * C; i++) x[i] = (float)lb_rng_normal(&r) * (i % C < 4 ? 12.0f : 1.0f);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < C; j++) {
            mean_abs[j] += fabsf(x[i * C + j]) / N;
            for (int k = 0; k < C; k++) h[j * C + k] += (double)x[i * C + j] * x[i * C + k];
        }
    for (int i = 0; i < R * C; i++) w[i] = (float)lb_rng_normal(&r);
    lb_layer_stats st = {.n_samples = N, .rows = R, .cols = C, .xtx = h, .mean_abs_x = mean_abs};
    const lb_method *awq = lb_method_find("awq");
    lb_qspec spec = lb_test_spec("int3:g32:asym");
    const float *ws[1] = {w};
    int64_t rows[1] = {R};
    lb_scale_group g = {1, ws, rows, &spec, C, &st, NULL, 0};
    int threads = lb_get_threads();
    lb_tensor t[3];
    float s[3][C];
    for (int k = 0; k < 3; k++) {
        lb_set_threads(k + 1);
        lb_method_opts o;
        lb_method_opts_default(awq, &o);
        CHECK_OK(awq->input_scales(&g, &o, s[k]));
        CHECK_OK(lb_quantize_tensor(awq, &o, &st, w, R, C, &spec, "w", &t[k]));
    }
    lb_set_threads(threads);
    for (int k = 1; k < 3; k++) {
        CHECK_MSG(!memcmp(s[0], s[k], sizeof s[0]), "awq scales: 1 and %d threads differ", k + 1);
        CHECK_MSG(t[0].nbytes == t[k].nbytes && !memcmp(t[0].data, t[k].data, t[0].nbytes),
                  "awq bytes: 1 and %d threads differ", k + 1);
    }
    for (int k = 0; k < 3; k++) lb_tensor_free(&t[k]);
    lb_free(x);
    lb_free(w);
    lb_free(h);
    lb_free(mean_abs);
}

/* ---- stories260K --------------------------------------------------------- */

static double max_logit_diff(lb_model *a, lb_model *b) {
    int toks[24];
    for (int i = 0; i < 24; i++) toks[i] = 1 + (i * 37) % (a->cfg.vocab_size - 1);
    lb_state *sa = NULL, *sb = NULL;
    size_t n = (size_t)24 * (size_t)a->cfg.vocab_size;
    float *la = lb_alloc(n * sizeof(float)), *lbuf = lb_alloc(n * sizeof(float));
    double d = INFINITY;
    if (la && lbuf && lb_state_create(a, 24, &sa) == LB_OK && lb_state_create(b, 24, &sb) == LB_OK &&
        lb_forward(a, sa, toks, 24, 0, la) == LB_OK && lb_forward(b, sb, toks, 24, 0, lbuf) == LB_OK) {
        d = 0;
        for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)la[i] - lbuf[i]));
    }
    lb_state_free(sa);
    lb_state_free(sb);
    lb_free(la);
    lb_free(lbuf);
    return d;
}

static int same_bytes(const lb_tensor *x, const lb_tensor *y) {
    return x->nbytes == y->nbytes && !memcmp(x->data, y->data, x->nbytes);
}

static void test_model(void) {
    const char *model = LB_DATA_DIR "/models/stories260K.bin", *text = LB_DATA_DIR "/text/tinystories-sample.txt";
    lb_model *ref = NULL, *m = NULL;
    CHECK_OK(lb_model_load(model, NULL, &ref));
    if (!ref) return;
    CHECK(ref->cfg.n_heads != ref->cfg.n_kv_heads); /* the grouped-query case the tie is for */
    lb_calib_opts co;
    lb_calib_opts_default(&co);
    co.text_path = text;
    co.blocks = 8;
    lb_calib_stats *stats = NULL;
    CHECK_OK(lb_calibrate(ref, &co, &stats));
    const char *methods[] = {"awq", "smoothquant", "awq+gptq"};
    for (int k = 0; k < 3 && stats; k++) {
        lb_method_opts o;
        lb_method_opts_default(lb_method_find(methods[k]), &o);
        lb_qspec spec = lb_test_spec("int3:g32:asym");
        lb_plan plan;
        lb_plan_init(&plan);
        CHECK_OK(lb_plan_add_selection(&plan, "linears", &spec, &o));
        CHECK_OK(lb_model_load(model, NULL, &m));
        if (!m) break;
        CHECK_OK(lb_fold_input_scales(m, &plan, stats));
        /* the folding changed weights and norms (else the check below is empty) ... */
        int changed = 0;
        for (int i = 0; i < lb_model_n_tensors(m); i++)
            changed += !same_bytes(lb_model_tensor_at(m, i), lb_model_tensor_at(ref, i));
        CHECK_MSG(changed >= 9 * m->cfg.n_layers - 2, "%s: only %d tensors changed", methods[k], changed);
        /* ... and the fp32 function did not */
        double d = max_logit_diff(ref, m);
        CHECK_MSG(d < 1e-3, "%s: folded fp32 logits differ by %g", methods[k], d);
        printf("%s: folded fp32 model, max |logit difference| %.3g over 24 positions\n", methods[k], d);
        lb_model_free(m);
        m = NULL;
        lb_plan_free(&plan);
    }

    /* quantizing: all or nothing; the norms carry the scales afterwards */
    lb_method_opts awq;
    lb_method_opts_default(lb_method_find("awq"), &awq);
    lb_qspec spec = lb_test_spec("int4:g64:asym");
    lb_plan plan;
    lb_plan_init(&plan);
    CHECK_OK(lb_plan_add_selection(&plan, "linears", &spec, &awq));
    CHECK_OK(lb_model_load(model, NULL, &m));
    if (m && stats) {
        lb_quantize_report rep;
        CHECK_FAILS(lb_quantize_model(m, &plan, &rep), LB_ERR_INVALID, "needs calibration statistics");
        int changed = 0;
        for (int i = 0; i < lb_model_n_tensors(m); i++)
            changed += !same_bytes(lb_model_tensor_at(m, i), lb_model_tensor_at(ref, i));
        CHECK(changed == 0);
        /* two scaling rows on one input: refused before any work */
        lb_method_opts sq;
        lb_method_opts_default(lb_method_find("smoothquant"), &sq);
        lb_plan mixed;
        lb_plan_init(&mixed);
        CHECK_OK(lb_plan_add_selection(&mixed, "linears", &spec, &awq));
        CHECK_OK(lb_plan_add_selection(&mixed, "blk.0.attn_k.weight", &spec, &sq));
        CHECK_FAILS(lb_quantize_model_calibrated(m, &mixed, stats, &rep), LB_ERR_INVALID,
                    "different scaling methods");
        lb_plan_free(&mixed);
        CHECK_OK(lb_quantize_model_calibrated(m, &plan, stats, &rep));
        CHECK(rep.tensors_quantized == 35);
        lb_quantize_report_free(&rep); /* its per-tensor records */
        CHECK(!same_bytes(&m->layers[0].attn_norm, &ref->layers[0].attn_norm));
        CHECK(m->layers[0].attn_norm.spec.family == LB_FAMILY_F32);
        /* a quantized producer outside the plan cannot take the fold */
        lb_plan wo_only;
        lb_plan_init(&wo_only);
        CHECK_OK(lb_plan_add_selection(&wo_only, "blk.0.attn_output.weight", &spec, &awq));
        CHECK_FAILS(lb_quantize_model_calibrated(m, &wo_only, stats, &rep), LB_ERR_INVALID, "not in the plan");
        lb_plan_free(&wo_only);
    }
    lb_plan_free(&plan);
    lb_model_free(m);
    lb_calib_stats_free(stats);
    lb_model_free(ref);
}

int main(void) {
    test_objective_and_scaled_stats();
    test_outlier_channels();
    test_clip_search();
    test_bad_input();
    test_threads();
    FILE *f = fopen(LB_DATA_DIR "/models/stories260K.bin", "rb");
    if (f) {
        fclose(f);
        test_model();
    } else {
        printf("stories260K missing: the model checks were skipped\n");
    }
    return lb_test_finish("test_awq");
}
