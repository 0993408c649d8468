/* Per-tensor sensitivity (lb_sensitivity_measure) on stories260K's first
 * layer: f32 costs nothing and 32 bits a weight; each cell equals quantizing
 * that tensor by hand and evaluating; more bits cost less KL on every tensor;
 * a format the method refuses and masked cells stay NAN; a mix assembled
 * from the kept tensors scores what quantizing it scores, and refinement
 * only lowers its KL within the budget; with calibration statistics the
 * proxy is there and calibrated candidates run. */
#include "test.h"

static lb_candidate cand(const char *spec, const char *method, const char *kv) {
    lb_candidate c;
    c.spec = lb_test_spec(spec);
    CHECK_OK(lb_test_method_opts(lb_method_find(method), kv, &c.opts));
    return c;
}

int main(void) {
    const char *model = lb_test_data("models/stories260K.bin");
    lb_text text;
    CHECK_OK(lb_text_load(lb_test_data("text/tinystories-sample.txt"), &text));
    lb_candidate c[5] = {cand("f32", "rtn", ""), cand("int8:g32:sym", "rtn", ""), cand("int2:g64:asym", "rtn", "clip=mse"),
                         cand("int4:g64:asym", "twn", ""), cand("int3:g64:asym", "rtn", "")};
    lb_sensitivity_opts o = {0};
    o.model_path = model;
    o.tensors = "blk.0.*";
    o.text = &text;
    o.eval.split = LB_SPLIT_CALIB;
    o.eval.calib_blocks = 6;
    uint8_t mask[7 * 5];
    memset(mask, 1, sizeof mask);
    mask[2 * 5 + 4] = 0;
    o.mask = mask;
    lb_sensitivity s;
    CHECK_OK(lb_sensitivity_measure(&o, c, 5, &s));
    CHECK(s.n_tensors == 7 && s.n_candidates == 5 && s.tokens > 100 && s.nll > 0);
    for (int t = 0; t < s.n_tensors; t++) {
        const double *b = s.bits + t * 5, *k = s.kld + t * 5;
        CHECK_MSG(b[0] == 32.0 * s.weights[t] && fabs(k[0]) < 1e-9 && s.werr[t * 5] == 0, "%s", s.names[t]);
        if (strstr(s.names[t], "ffn_down")) /* 172 columns: the last group is padded, and counted */
            CHECK(b[1] > 8.5 * s.weights[t] && b[2] > 2.5 * s.weights[t]);
        else
            CHECK_MSG(b[1] == 8.5 * s.weights[t] && b[2] == 2.5 * s.weights[t], "%s", s.names[t]);
        CHECK_MSG(k[1] > 0 && k[1] < k[2], "%s: int8 %g, int2 %g", s.names[t], k[1], k[2]);
        CHECK(isnan(b[3]) && isnan(k[3])); /* twn makes only ternary formats */
        CHECK(isnan(s.proxy[t * 5 + 2]));  /* no statistics, no proxy */
        CHECK(s.werr[t * 5 + 1] > 0 && s.werr[t * 5 + 1] < s.werr[t * 5 + 2]);
        CHECK(t == 2 ? isnan(k[4]) : k[4] > k[1] && k[4] < k[2]);
        CHECK(s.dnll[t * 5 + 0] == 0);
        CHECK(isnan(s.hawq[t * 5 + 1])); /* no statistics */
    }
    CHECK(!strcmp(s.names[0], "blk.0.attn_q.weight"));

    /* one cell by hand: attn_v alone at int2, evaluated against the model */
    lb_model *ref, *m;
    CHECK_OK(lb_model_load(model, NULL, &ref));
    CHECK_OK(lb_model_load(model, NULL, &m));
    lb_plan p;
    lb_plan_init(&p);
    CHECK_OK(lb_plan_add_rule(&p, "blk.0.attn_v.weight", &c[2].spec, &c[2].opts));
    CHECK_OK(lb_quantize_model(m, &p, NULL));
    lb_eval_opts e = o.eval;
    e.ref = ref;
    lb_eval_result r;
    CHECK_OK(lb_evaluate(m, &text, &e, &r));
    CHECK(!strcmp(s.names[2], "blk.0.attn_v.weight") && r.kld == s.kld[2 * 5 + 2] && r.nll - s.nll == s.dnll[2 * 5 + 2]);
    lb_plan_free(&p);
    lb_model_free(m);
    lb_sensitivity_free(&s);

    /* refinement: the mix assembled from the kept tensors scores what the
     * same mix quantized by a recipe scores, and each round only lowers it */
    lb_candidate k3[3] = {cand("int2:g64:asym", "rtn", "clip=mse"), cand("int4:g64:asym", "rtn", "clip=mse"),
                          cand("int8:g64:sym", "rtn", "")};
    o.mask = NULL;
    o.keep_tensors = 1;
    CHECK_OK(lb_sensitivity_measure(&o, k3, 3, &s));
    CHECK(s.quantized && s.quantized[0].data && s.quantized[0].spec.bits == 2);
    int choice[7] = {0, 1, 2, 0, 1, 2, 0};
    lb_eval_result mix;
    CHECK_OK(lb_plan_measure(&o, &s, choice, &mix));
    CHECK_OK(lb_model_load(model, NULL, &m));
    lb_plan_init(&p);
    for (int t = 0; t < 7; t++) CHECK_OK(lb_plan_add_rule(&p, s.names[t], &k3[choice[t]].spec, &k3[choice[t]].opts));
    CHECK_OK(lb_quantize_model(m, &p, NULL));
    CHECK_OK(lb_evaluate(m, &text, &e, &r));
    CHECK_MSG(r.kld == mix.kld && r.nll == mix.nll, "assembled %.9g, quantized %.9g", mix.kld, r.kld);
    lb_plan_free(&p);
    lb_model_free(m);
    double budget = 0, rk[4];
    for (int t = 0; t < 7; t++) budget += s.bits[t * 3 + choice[t]];
    CHECK_OK(lb_plan_refine(&o, &s, budget, 3, choice, rk));
    CHECK(rk[0] == mix.kld);
    double bits = 0;
    for (int t = 0; t < 7; t++) bits += s.bits[t * 3 + choice[t]];
    CHECK(bits <= budget);
    for (int i = 1; i < 4; i++) CHECK(isnan(rk[i]) || rk[i] < rk[i - 1]);
    CHECK(!isnan(rk[1])); /* this hand-made mix is not the best at its size */
    CHECK_OK(lb_plan_measure(&o, &s, choice, &mix));
    double last = rk[0];
    for (int i = 1; i < 4; i++)
        if (!isnan(rk[i])) last = rk[i];
    CHECK(mix.kld == last);
    lb_sensitivity_free(&s);
    /* a candidate that changes more than the weight cannot be kept */
    lb_candidate ol = cand("int4:g64:asym", "rtn", "outliers=0.01");
    CHECK_FAILS(lb_sensitivity_measure(&o, &ol, 1, &s), LB_ERR_UNSUPPORTED, "changes more than the weight");

    /* granularity: a layer's tensors share one choice; the knapsack over the
     * two layers equals the best of the four layer choices that fit */
    o.tensors = "blk.0.attn_q.weight,blk.0.attn_k.weight,blk.1.attn_q.weight";
    CHECK_OK(lb_sensitivity_measure(&o, k3, 3, &s));
    CHECK(s.n_groups == 3 && s.group[2] == 2);
    CHECK_FAILS(lb_plan_set_granularity(&s, "row"), LB_ERR_INVALID, "tensor or layer");
    CHECK_OK(lb_plan_set_granularity(&s, "layer"));
    CHECK(s.n_groups == 2 && s.group[0] == 0 && s.group[1] == 0 && s.group[2] == 1);
    double gb[2][3], gl[2][3];
    for (int k = 0; k < 3; k++) {
        gb[0][k] = s.bits[0 * 3 + k] + s.bits[1 * 3 + k], gl[0][k] = s.kld[0 * 3 + k] + s.kld[1 * 3 + k];
        gb[1][k] = s.bits[2 * 3 + k], gl[1][k] = s.kld[2 * 3 + k];
    }
    double gbudget = gb[0][2] + gb[1][0]; /* layer 0 at int8, layer 1 at int2 fits, so does the reverse */
    int gch[3];
    CHECK_OK(lb_plan_choose(&s, gbudget, gch));
    CHECK(gch[0] == gch[1]);
    double want = INFINITY;
    for (int x = 0; x < 3; x++)
        for (int y = 0; y < 3; y++)
            if (gb[0][x] + gb[1][y] <= gbudget && gl[0][x] + gl[1][y] < want) want = gl[0][x] + gl[1][y];
    CHECK(fabs(gl[0][gch[0]] + gl[1][gch[2]] - want) < 1e-12);
    CHECK_OK(lb_plan_refine(&o, &s, gbudget, 2, gch, rk));
    CHECK(gch[0] == gch[1] && gb[0][gch[0]] + gb[1][gch[2]] <= gbudget);
    lb_sensitivity_free(&s);
    o.tensors = "blk.0.*";
    o.keep_tensors = 0;

    /* with the model's statistics: the method's proxy, and gptq */
    lb_calib_opts co;
    lb_calib_opts_default(&co);
    co.text = &text;
    co.calib_blocks = 6;
    co.parts = LB_STATS_XTX;
    lb_calib_stats *st = NULL;
    CHECK_OK(lb_calibrate(ref, &co, &st));
    lb_candidate g[2] = {cand("int2:g64:asym", "rtn", "clip=mse"), cand("int2:g64:asym", "gptq", "clip=mse")};
    o.stats = st;
    o.mask = NULL;
    o.tensors = "blk.0.ffn_*";
    CHECK_OK(lb_sensitivity_measure(&o, g, 2, &s));
    CHECK(s.n_tensors == 3);
    double kl[6], px[6];
    for (int i = 0; i < 6; i++) {
        CHECK(isfinite(s.proxy[i]) && s.proxy[i] > 0 && s.kld[i] > 0);
        kl[i] = s.kld[i], px[i] = s.proxy[i];
    }
    for (int t = 0; t < 3; t++) {
        CHECK_MSG(s.proxy[t * 2 + 1] < s.proxy[t * 2], "%s: gptq's own loss", s.names[t]);
        /* HAWQ's factor tr(H) / (n cols) is the tensor's: the same for both candidates */
        double f0 = s.hawq[t * 2] / s.werr[t * 2], f1 = s.hawq[t * 2 + 1] / s.werr[t * 2 + 1];
        CHECK_MSG(f0 > 0 && fabs(f0 - f1) <= 1e-12 * f0, "%s: %g vs %g", s.names[t], f0, f1);
        CHECK(isnan(s.fisher[t * 2])); /* no squared gradients collected */
    }
    CHECK(isfinite(lb_rank_correlation(kl, px, 6)));
    lb_sensitivity_free(&s);

    /* a candidate that needs statistics, without them: the pair is named */
    o.stats = NULL;
    CHECK_FAILS(lb_sensitivity_measure(&o, g, 2, &s), LB_ERR_INVALID, "sensitivity of 'blk.0.ffn_gate.weight'");
    lb_calib_stats_free(st);
    lb_model_free(ref);
    lb_text_free(&text);
    return lb_test_finish("test_sensitivity");
}
