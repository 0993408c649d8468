/* True-sequential quantization (lb_quantize_model_sequential) and its
 * calibration machinery (lb_calib_seq), and the per-tensor quantize report.
 *
 * - lb_calib_seq on an unquantized model, every input of every layer
 *   observed and the cache advanced layer by layer, reproduces lb_calibrate
 *   bit for bit (the residual-stream cache is exact); misuse is refused.
 * - Data-free plans give the parallel driver's bytes; in a mixed plan the
 *   rtn tensors are byte-identical to the parallel ones, the gptq tensors of
 *   layer 0's q/k (fp32 inputs in both modes) too, and later gptq tensors
 *   differ (their inputs come from the quantized layers).
 * - GPTAQ's (x_fp - x) x^T is exactly 0 on an unquantized model (the fp32
 *   cache is aligned with the working one); sequential gptaq equals gptq on
 *   layer 0's q/k/v (no mismatch yet) and differs after; parallel refuses it.
 * - Same bytes with 1 and 2 threads; all or nothing on a failure midway.
 * - The report: records in plan order whose rel_error and proxy losses
 *   recompute from the tensors and statistics; GPTQ's proxy loss is below
 *   RTN's on every real layer (not a theorem: GPTQ is greedy and its grids
 *   come from updated weights, but REFERENCE.md saw it in all 1,960 of its
 *   comparisons, mean ratio 0.70, so a layer above 1 here means a bug).
 * Uses stories260K and the calibration split (skipped without the data). */
#include "test.h"

static lb_model *load(const char *path) {
    lb_model *m = NULL;
    CHECK_OK(lb_model_load(path, NULL, &m));
    return m;
}

static const lb_tensor *tensor_named(lb_model *m, const char *name) {
    for (int i = 0; i < lb_model_n_tensors(m); i++)
        if (!strcmp(lb_model_tensor_at(m, i)->name, name)) return lb_model_tensor_at(m, i);
    return NULL;
}

static int same_tensor(lb_model *a, lb_model *b, const char *name) {
    const lb_tensor *x = tensor_named(a, name), *y = tensor_named(b, name);
    return x && y && x->nbytes == y->nbytes && x->spec.family == y->spec.family && !memcmp(x->data, y->data, x->nbytes);
}

static int same_model(lb_model *a, lb_model *b) {
    for (int i = 0; i < lb_model_n_tensors(a); i++)
        if (!same_tensor(a, b, lb_model_tensor_at(a, i)->name)) return 0;
    return 1;
}

/* every array of two layer statistics equal, bit for bit */
static int same_stats(const lb_layer_stats *a, const lb_layer_stats *b) {
    size_t c = (size_t)a->cols;
    if (a->n_samples != b->n_samples || a->cols != b->cols || a->rows != b->rows || a->hist_bins != b->hist_bins ||
        a->hist_range != b->hist_range)
        return 0;
    return !memcmp(a->xtx, b->xtx, c * c * sizeof(double)) && !memcmp(a->mean_abs_x, b->mean_abs_x, c * sizeof(float)) &&
           !memcmp(a->max_abs_x, b->max_abs_x, c * sizeof(float)) && !memcmp(a->mean_x, b->mean_x, c * sizeof(float)) &&
           !memcmp(a->hist, b->hist, (size_t)a->hist_bins * sizeof(int64_t));
}

static void test_calib_seq(const char *model, const lb_calib_opts *o) {
    lb_model *m = load(model);
    if (!m) return;
    lb_calib_stats *par = NULL;
    lb_calib_seq *seq = NULL;
    CHECK_OK(lb_calibrate(m, o, &par));
    CHECK_OK(lb_calib_seq_begin(m, o, &seq));
    if (!par || !seq) goto done;
    /* out of order: layer 1 before layer 0 is advanced */
    CHECK_FAILS(lb_calib_seq_observe(seq, m, 1, LB_CALIB_ATTN_IN), LB_ERR_INVALID, "is at layer 0");
    for (int l = 0; l < m->cfg.n_layers; l++) {
        for (int in = 0; in < LB_CALIB_N_INPUTS; in++) CHECK_OK(lb_calib_seq_observe(seq, m, l, in));
        CHECK_FAILS(lb_calib_seq_observe(seq, m, l, LB_CALIB_FFN_IN), LB_ERR_INVALID, "already observed");
        if (l + 1 < m->cfg.n_layers) CHECK_OK(lb_calib_seq_advance(seq, m, l));
    }
    lb_calib_info a, b;
    lb_calib_stats_info(par, &a);
    lb_calib_stats_info(lb_calib_seq_stats(seq), &b);
    CHECK(a.tokens == b.tokens && a.sequences == b.sequences && a.tokens > 500);
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int w = 0; w < LB_N_LINEARS; w++)
            CHECK_MSG(same_stats(lb_calib_stats_get(par, l, w), lb_calib_stats_get(lb_calib_seq_stats(seq), l, w)),
                      "layer %d %s: the cached residual stream does not reproduce lb_calibrate", l, lb_linear_name(w));
    /* GPTAQ's cross statistics: on an unquantized model the fp32 cache and
     * the working cache hold the same stream, so (x_fp - x) x^T is exactly 0
     * for every input of every layer (a misaligned fp32 row would not be);
     * lb_calibrate, with no fp32 inputs of its own, refuses the part */
    lb_calib_opts od = *o;
    od.parts = LB_STATS_XTX | LB_STATS_DXTX;
    lb_calib_seq *sd = NULL;
    lb_calib_stats *refused = NULL;
    CHECK_FAILS(lb_calibrate(m, &od, &refused), LB_ERR_UNSUPPORTED, "only sequential calibration");
    CHECK_OK(lb_calib_seq_begin(m, &od, &sd));
    for (int l = 0; sd && l < m->cfg.n_layers; l++) {
        for (int in = 0; in < LB_CALIB_N_INPUTS; in++) CHECK_OK(lb_calib_seq_observe(sd, m, l, in));
        for (int in = 0; in < LB_CALIB_N_INPUTS; in++) {
            static const int reader[LB_CALIB_N_INPUTS] = {LB_WQ, LB_WO, LB_W1, LB_W2};
            const lb_layer_stats *ls = lb_calib_stats_get(lb_calib_seq_stats(sd), l, reader[in]);
            int zero = ls->dxtx != NULL;
            for (int64_t i = 0; zero && i < ls->cols * ls->cols; i++) zero = ls->dxtx[i] == 0.0;
            CHECK_MSG(zero, "layer %d %s: (x_fp - x) x^T is not 0 on an unquantized model", l, lb_calib_input_name(in));
            CHECK(!memcmp(ls->xtx, lb_calib_stats_get(par, l, reader[in])->xtx, (size_t)(ls->cols * ls->cols) * sizeof(double)));
        }
        if (l + 1 < m->cfg.n_layers) CHECK_OK(lb_calib_seq_advance(sd, m, l));
    }
    lb_calib_seq_free(sd);

    /* the evaluation split is refused as by lb_calibrate */
    lb_calib_opts bad = *o;
    bad.split = LB_SPLIT_EVAL;
    lb_calib_seq *none = NULL;
    CHECK_FAILS(lb_calib_seq_begin(m, &bad, &none), LB_ERR_INVALID, "never reads the evaluation split");
    CHECK(none == NULL);
done:
    lb_calib_seq_free(seq);
    lb_calib_stats_free(par);
    lb_model_free(m);
}

/* ||W - Q|| / ||W|| and tr(dW H dW^T) / n recomputed here (long double, in another order) */
static void check_record(lb_model *orig, lb_model *q, const lb_calib_stats *stats, const lb_tensor_report *r) {
    const lb_tensor *tw = tensor_named(orig, r->name), *tq = tensor_named(q, r->name);
    const lb_layer_stats *ls = lb_calib_stats_for_tensor(stats, q, tq);
    if (!tw || !tq || !ls) {
        CHECK_MSG(0, "%s: tensor or statistics missing", r->name);
        return;
    }
    int64_t R = tw->rows, C = tw->cols;
    float *w = lb_alloc((size_t)(R * C) * sizeof(float)), *d = lb_alloc((size_t)(R * C) * sizeof(float));
    CHECK_OK(lb_dequantize(tw, w));
    CHECK_OK(lb_dequantize(tq, d));
    long double num = 0, den = 0, loss = 0;
    for (int64_t i = 0; i < R * C; i++) {
        num += ((long double)w[i] - d[i]) * ((long double)w[i] - d[i]);
        den += (long double)w[i] * w[i];
        d[i] = w[i] - d[i];
    }
    for (int64_t i = 0; i < C; i++)
        for (int64_t j = 0; j < C; j++) {
            long double col = 0;
            for (int64_t k = 0; k < R; k++) col += (long double)d[k * C + i] * d[k * C + j];
            loss += col * ls->xtx[i * C + j];
        }
    double rel = (double)sqrtl(num / den), proxy = (double)(loss / ls->n_samples);
    CHECK_MSG(fabs(r->rel_error - rel) <= 1e-9 * rel, "%s: rel_error %.12g, recomputed %.12g", r->name, r->rel_error,
              rel);
    CHECK_MSG(fabs(r->proxy_loss - proxy) <= 1e-9 * proxy, "%s: proxy %.12g, recomputed %.12g", r->name,
              r->proxy_loss, proxy);
    CHECK_NEAR(r->bpw, 8.0 * (double)tq->nbytes / (double)(R * C), 1e-12);
    lb_free(w);
    lb_free(d);
}

static void test_report(const char *model, const lb_calib_opts *o, const lb_plan *plan) {
    lb_model *m = load(model), *orig = load(model);
    lb_calib_stats *stats = NULL;
    if (!m || !orig) goto done;
    CHECK_OK(lb_calibrate(m, o, &stats));
    lb_quantize_report rep;
    CHECK_OK(lb_quantize_model_calibrated(m, plan, stats, &rep));
    CHECK(rep.tensors_quantized == 35 && rep.tensors != NULL && !rep.sequential);
    if (!rep.tensors) goto done;
    int below = 0;
    double ratio_sum = 0;
    for (int i = 0; i < rep.tensors_quantized; i++) {
        const lb_tensor_report *r = &rep.tensors[i];
        CHECK(!strcmp(r->opts.method->name, "gptq") && r->opts.report == NULL && r->method.damping > 0);
        CHECK_MSG(r->proxy_loss > 0 && r->proxy_loss_rtn > 0, "%s: proxy %g, rtn %g", r->name, r->proxy_loss,
                  r->proxy_loss_rtn);
        below += r->proxy_loss < r->proxy_loss_rtn;
        ratio_sum += r->proxy_loss / r->proxy_loss_rtn;
    }
    CHECK_MSG(below == 35, "gptq's proxy loss is below rtn's on %d of 35 layers", below);
    CHECK_MSG(ratio_sum / 35 < 0.8, "mean gptq/rtn proxy ratio %g", ratio_sum / 35);
    /* plan order, recomputable */
    CHECK(!strcmp(rep.tensors[0].name, "blk.0.attn_q.weight") && !strcmp(rep.tensors[34].name, "blk.4.ffn_up.weight"));
    check_record(orig, m, stats, &rep.tensors[0]);
    check_record(orig, m, stats, &rep.tensors[12]); /* blk.1.ffn_down: 64 x 172, padded last group */
    lb_quantize_report_free(&rep);
    CHECK(rep.tensors == NULL);
done:
    lb_calib_stats_free(stats);
    lb_model_free(m);
    lb_model_free(orig);
}

static void test_sequential(const char *model, const lb_calib_opts *o, const lb_plan *gptq_plan) {
    lb_model *par = load(model), *seq = load(model), *seq2 = load(model);
    lb_calib_stats *stats = NULL;
    lb_quantize_report rep;
    if (!par || !seq || !seq2) goto done;

    /* data-free: no calibration at all, the parallel driver's bytes */
    lb_qspec i3 = lb_test_spec("int3:g64:asym");
    lb_method_opts rtn;
    lb_method_opts_default(lb_method_find("rtn"), &rtn);
    lb_plan plan_rtn;
    lb_plan_init(&plan_rtn);
    CHECK_OK(lb_plan_add_selection(&plan_rtn, "linears", &i3, &rtn));
    CHECK_OK(lb_quantize_model(par, &plan_rtn, NULL));
    CHECK_OK(lb_quantize_model_sequential(seq, &plan_rtn, NULL, &rep)); /* no text needed */
    CHECK(rep.sequential && rep.tensors_quantized == 35 && isnan(rep.tensors[3].proxy_loss));
    lb_quantize_report_free(&rep);
    CHECK_MSG(same_model(par, seq), "a data-free plan differs between sequential and parallel");
    lb_plan_free(&plan_rtn);
    lb_model_free(par);
    lb_model_free(seq);
    par = load(model);
    seq = load(model);
    if (!par || !seq) goto done;

    /* mixed: gptq on the linears but rtn on every attn_v and ffn_up */
    lb_plan mixed = *gptq_plan;
    mixed.rules = NULL;
    mixed.n_rules = mixed.cap_rules = 0;
    mixed.entries = NULL;
    mixed.n_entries = 0;
    for (int i = 0; i < gptq_plan->n_rules; i++)
        CHECK_OK(lb_plan_add_rule(&mixed, gptq_plan->rules[i].pattern, &gptq_plan->rules[i].spec,
                                  &gptq_plan->rules[i].opts));
    CHECK_OK(lb_plan_add_override(&mixed, "blk.*.attn_v.weight=int3:g64:asym,method=rtn", NULL));
    CHECK_OK(lb_plan_add_override(&mixed, "blk.*.ffn_up.weight=int3:g64:asym,method=rtn", NULL));
    CHECK_OK(lb_calibrate(par, o, &stats));
    CHECK_OK(lb_quantize_model_calibrated(par, &mixed, stats, NULL));
    lb_set_threads(1);
    CHECK_OK(lb_quantize_model_sequential(seq, &mixed, o, &rep));
    lb_set_threads(2);
    CHECK_OK(lb_quantize_model_sequential(seq2, &mixed, o, NULL));
    lb_set_threads(0);
    CHECK_MSG(same_model(seq, seq2), "sequential quantization differs between 1 and 2 threads");
    CHECK(rep.sequential && rep.tensors_quantized == 35 && !strcmp(rep.tensors[2].opts.method->name, "rtn"));
    for (int l = 0; l < 5; l++) {
        char v[64], up[64];
        snprintf(v, sizeof v, "blk.%d.attn_v.weight", l);
        snprintf(up, sizeof up, "blk.%d.ffn_up.weight", l);
        CHECK_MSG(same_tensor(par, seq, v) && same_tensor(par, seq, up), "layer %d: rtn tensors differ", l);
    }
    CHECK_MSG(same_tensor(par, seq, "blk.0.attn_q.weight") && same_tensor(par, seq, "blk.0.attn_k.weight"),
              "layer 0's q/k see the fp32 inputs in both modes: they must match");
    /* attn_output reads the output of the quantized q/k/v; later layers' inputs all differ */
    const char *later[] = {"blk.0.attn_output.weight", "blk.0.ffn_down.weight", "blk.2.attn_q.weight",
                           "blk.4.ffn_gate.weight"};
    for (int i = 0; i < 4; i++) CHECK_MSG(!same_tensor(par, seq, later[i]), "%s: sequential equals parallel", later[i]);
    /* proxy losses under the sequential H: gptq still wins on every layer */
    for (int i = 0; i < rep.tensors_quantized; i++) {
        const lb_tensor_report *r = &rep.tensors[i];
        if (!strcmp(r->opts.method->name, "gptq"))
            CHECK_MSG(r->proxy_loss < r->proxy_loss_rtn, "%s: gptq %g, rtn %g", r->name, r->proxy_loss, r->proxy_loss_rtn);
        else
            CHECK_MSG(r->proxy_loss == r->proxy_loss_rtn, "%s: an rtn tensor's loss is rtn's", r->name);
    }
    lb_quantize_report_free(&rep);

    /* all or nothing: a NaN in layer 3 fails after layers 0..2 were swapped in */
    lb_model_free(seq);
    seq = load(model);
    lb_model *ref = load(model);
    if (seq && ref) {
        /* the model maps its file read-only: give the tensor its own copy to poison */
        lb_tensor *t = (lb_tensor *)tensor_named(seq, "blk.3.attn_output.weight");
        float *w = lb_alloc(t->nbytes);
        memcpy(w, t->data, t->nbytes);
        t->owned = (uint8_t *)w;
        t->data = t->owned;
        float saved = w[5];
        w[5] = NAN;
        CHECK_FAILS(lb_quantize_model_sequential(seq, &mixed, o, &rep), LB_ERR_NUMERIC,
                    "blk.3.attn_output.weight");
        w[5] = saved;
        CHECK_MSG(same_model(seq, ref), "a failed sequential run changed the model");
        CHECK(seq->quant_note[0] == '\0' && rep.tensors == NULL);
    }
    lb_model_free(ref);
    lb_plan_free(&mixed);
done:
    lb_calib_stats_free(stats);
    lb_model_free(par);
    lb_model_free(seq);
    lb_model_free(seq2);
}

/* gptaq end to end: layer 0's q/k/v inputs are the same in the fp32 and the
 * quantized model, so (x_fp - x) x^T = 0 there and gptaq writes gptq's
 * bytes; from attn_output on, the inputs differ and so do the tensors. */
static void test_gptaq_sequential(const char *model, const lb_calib_opts *o, const lb_plan *gptq_plan) {
    lb_model *g = load(model), *a = load(model);
    if (!g || !a) goto done;
    lb_qspec spec = gptq_plan->rules[0].spec;
    lb_method_opts gptaq;
    lb_method_opts_default(lb_method_find("gptaq"), &gptaq);
    lb_plan plan;
    lb_plan_init(&plan);
    CHECK_OK(lb_plan_add_selection(&plan, "linears", &spec, &gptaq));
    CHECK_OK(lb_quantize_model_sequential(g, gptq_plan, o, NULL));
    lb_quantize_report rep;
    CHECK_OK(lb_quantize_model_sequential(a, &plan, o, &rep));
    CHECK(rep.tensors_quantized == 35 && !strcmp(rep.tensors[0].opts.method->name, "gptaq"));
    lb_quantize_report_free(&rep);
    CHECK_MSG(same_tensor(g, a, "blk.0.attn_q.weight") && same_tensor(g, a, "blk.0.attn_v.weight"),
              "layer 0's q/v: no input mismatch yet, gptaq must equal gptq");
    CHECK(!same_tensor(g, a, "blk.0.attn_output.weight") && !same_tensor(g, a, "blk.3.ffn_down.weight"));
    /* parallel calibration has no fp32 / quantized pair: refused, pointing at sequential mode */
    lb_calib_stats *stats = NULL;
    CHECK_OK(lb_calibrate(g, o, &stats));
    lb_model *p = load(model);
    if (p) CHECK_FAILS(lb_quantize_model_calibrated(p, &plan, stats, NULL), LB_ERR_INVALID, "use --sequential");
    lb_model_free(p);
    lb_calib_stats_free(stats);
    lb_plan_free(&plan);
done:
    lb_model_free(g);
    lb_model_free(a);
}

int main(void) {
    const char *model = lb_test_data("models/stories260K.bin"), *text = lb_test_data("text/tinystories-sample.txt");
    FILE *f = fopen(model, "rb");
    if (!f) {
        printf("SKIPPED: %s is missing\n", model);
        return 77;
    }
    fclose(f);
    lb_calib_opts o;
    lb_calib_opts_default(&o);
    o.text_path = text;
    o.blocks = 8; /* the first 8 blocks of the calibration split (~800 tokens: the test stays quick on a busy machine) */
    test_calib_seq(model, &o);

    lb_qspec spec = lb_test_spec("int3:g64:asym");
    lb_method_opts gptq;
    lb_method_opts_default(lb_method_find("gptq"), &gptq);
    lb_plan plan;
    lb_plan_init(&plan);
    CHECK_OK(lb_plan_add_selection(&plan, "linears", &spec, &gptq));
    lb_calib_opts o16 = o; /* the report check: a single parallel run, 16 blocks as test_quantize_calibrated */
    o16.blocks = 16;
    test_report(model, &o16, &plan);
    test_sequential(model, &o, &plan);
    test_gptaq_sequential(model, &o, &plan);
    lb_plan_free(&plan);
    return lb_test_finish("test_sequential");
}
