/* Row-block granularity (src/plan/rowblock.c) on stories260K's first layer:
 * the ranges cover every row once; a block quantized on its own is, value
 * for value, those rows of the whole tensor quantized alike for rtn (a
 * trellis along the rows included), hqq and gptq; a trellis down the columns
 * (the only trellis gptq makes) is not, its sequences being the block's own
 * (checked as the known exception);
 * the measurement's cells equal splicing the block's rows into the model by
 * hand; one block per tensor has the tensor plan's bits and nearly its KL
 * (f32 products against the integer kernels' int8 activations); assembled mixes and refinement stay within budget and
 * only lower the KL; granularities must match the measurement. Column
 * blocks (block_axis 1) likewise: their cells equal splicing the columns. */
#include "plan/plan_internal.h"
#include "test.h"

static lb_candidate cand(const char *spec, const char *method, const char *kv) {
    lb_candidate c;
    c.spec = lb_test_spec(spec);
    CHECK_OK(lb_test_method_opts(lb_method_find(method), kv, &c.opts));
    return c;
}

/* max |rows r0:r1 of whole - block| over the block, each quantized by c */
static double block_vs_whole(const lb_candidate *c, const lb_layer_stats *ls, const float *w, int64_t rows,
                             int64_t cols, int64_t r0, int64_t r1) {
    lb_tensor whole, part;
    const lb_method *m = c->opts.method;
    lb_layer_stats bs = *ls;
    bs.rows = r1 - r0;
    CHECK_OK(lb_quantize_tensor(m, &c->opts, ls, w, rows, cols, &c->spec, "whole", &whole));
    CHECK_OK(lb_quantize_tensor(m, &c->opts, &bs, w + r0 * cols, r1 - r0, cols, &c->spec, "part", &part));
    float *a = malloc((size_t)(rows * cols) * sizeof *a), *b = malloc((size_t)((r1 - r0) * cols) * sizeof *b);
    CHECK_OK(lb_dequantize(&whole, a));
    CHECK_OK(lb_dequantize(&part, b));
    double d = 0;
    for (int64_t i = 0; i < (r1 - r0) * cols; i++) d = fmax(d, fabs((double)a[r0 * cols + i] - (double)b[i]));
    free(a), free(b);
    lb_tensor_free(&whole), lb_tensor_free(&part);
    return d;
}

/* Item t's block under candidate c, written into an f32 copy of the model
 * row by row (by hand, not through the planner's copy): the KL measured
 * must be the cell's, bit for bit. */
static void check_by_hand(const char *model, lb_model *ref, const lb_text *text, const lb_sensitivity_opts *o,
                          const lb_sensitivity *s, int t, int c) {
    lb_model *m;
    CHECK_OK(lb_model_load(model, NULL, &m));
    float *buf;
    lb_tensor saved;
    CHECK_OK(lb_plan_own_f32(m, s->tensor[t], &buf, &saved));
    const lb_tensor *w = lb_model_tensor_at(m, s->tensor[t]);
    const float *blk = s->rows_q[(size_t)t * s->n_candidates + c];
    int64_t a0 = s->row0[t], width = s->row1[t] - a0;
    if (s->block_axis)
        for (int64_t r = 0; r < w->rows; r++) memcpy(buf + r * w->cols + a0, blk + r * width, (size_t)width * sizeof *buf);
    else
        memcpy(buf + a0 * w->cols, blk, (size_t)(width * w->cols) * sizeof *buf);
    lb_eval_opts e = o->eval;
    e.ref = ref;
    lb_eval_result r;
    CHECK_OK(lb_evaluate(m, text, &e, &r));
    double want = s->kld[(size_t)t * s->n_candidates + c];
    CHECK_MSG(r.kld == want, "%s: %.9g vs %.9g", s->names[t], r.kld, want);
    lb_tensor_free(lb_model_tensor_at(m, s->tensor[t]));
    *lb_model_tensor_at(m, s->tensor[t]) = saved;
    lb_model_free(m);
}

int main(void) {
    /* ranges: increasing, covering [0, rows), at most n, on multiples of 8 when there is room */
    int64_t bounds[65];
    for (int64_t rows = 1; rows <= 300; rows++)
        for (int n = 1; n <= 64; n++) {
            int k = lb_plan_row_ranges(rows, n, bounds);
            CHECK(k >= 1 && k <= n && bounds[0] == 0 && bounds[k] == rows);
            for (int b = 0; b < k; b++) CHECK(bounds[b] < bounds[b + 1]);
            if (rows >= 8 * n)
                for (int b = 1; b < k; b++) CHECK(bounds[b] % 8 == 0);
        }
    CHECK(lb_plan_row_ranges(172, 2, bounds) == 2 && bounds[1] == 88);
    CHECK(lb_plan_row_ranges(32, 4, bounds) == 4 && bounds[1] == 8 && bounds[3] == 24);

    const char *model = lb_test_data("models/stories260K.bin");
    lb_text text;
    CHECK_OK(lb_text_load(lb_test_data("text/tinystories-sample.txt"), &text));
    lb_model *ref;
    CHECK_OK(lb_model_load(model, NULL, &ref));
    lb_calib_opts co;
    lb_calib_opts_default(&co);
    co.text = &text;
    co.calib_blocks = 6;
    co.parts = LB_STATS_XTX;
    lb_calib_stats *st = NULL;
    CHECK_OK(lb_calibrate(ref, &co, &st));

    /* row independence: which (format, method) pairs a block reproduces exactly */
    const lb_tensor *down = NULL;
    for (int i = 0; i < lb_model_n_tensors(ref); i++)
        if (!strcmp(lb_model_tensor_at(ref, i)->name, "blk.0.ffn_down.weight")) down = lb_model_tensor_at(ref, i);
    CHECK(down && down->rows == 64 && down->cols == 172);
    float *w = malloc((size_t)(down->rows * down->cols) * sizeof *w);
    CHECK_OK(lb_dequantize(down, w));
    const lb_layer_stats *ls = lb_calib_stats_for_tensor(st, ref, down);
    struct {
        lb_candidate c;
        int exact;
    } rows_indep[] = {{cand("int2:g64:asym", "rtn", "clip=mse"), 1},
                      {cand("int3:g64:asym", "hqq", ""), 1},
                      {cand("int2:g64:asym", "gptq", "clip=mse act_order=1"), 1},
                      {cand("trellis2:s6", "rtn", ""), 1},
                      {cand("trellis2:down:s6", "gptq", ""), 0}};
    for (size_t k = 0; k < sizeof rows_indep / sizeof rows_indep[0]; k++) {
        char what[64];
        lb_qspec_format(&rows_indep[k].c.spec, what, sizeof what);
        double d = block_vs_whole(&rows_indep[k].c, ls, w, down->rows, down->cols, 16, 48);
        if (rows_indep[k].exact) CHECK_MSG(d == 0, "%s by %s: %g", what, rows_indep[k].c.opts.method->name, d);
        else CHECK_MSG(d > 0, "%s by %s: expected the block to differ", what, rows_indep[k].c.opts.method->name);
    }
    free(w);

    /* the measurement */
    lb_candidate c[3] = {cand("f32", "rtn", ""), cand("int2:g64:asym", "gptq", "clip=mse act_order=1"),
                         cand("int4:g64:asym", "gptq", "clip=mse act_order=1")};
    lb_sensitivity_opts o = {0};
    o.model_path = model;
    o.tensors = "blk.0.attn_k.weight,blk.0.ffn_down.weight";
    o.text = &text;
    o.eval.split = LB_SPLIT_CALIB;
    o.eval.calib_blocks = 6;
    o.stats = st;
    o.row_blocks = 2;
    lb_sensitivity s;
    CHECK_OK(lb_sensitivity_measure(&o, c, 3, &s));
    CHECK(s.n_tensors == 4 && s.row0 && s.rows_q && s.n_groups == 4);
    CHECK(!strcmp(s.names[1], "blk.0.attn_k.weight rows 16:32") && s.row0[3] == 32 && s.row1[3] == 64);
    CHECK(s.weights[0] == 16 * 64 && s.weights[2] == 32 * 172);
    for (int t = 0; t < 4; t++) {
        /* f32 block: its bytes as a part of a split tensor (entry, padding; the header on the first) */
        size_t part = lb_split_part_bytes(4 * (size_t)s.weights[t]) + (s.row0[t] == 0 ? LB_SPLIT_HEAD_BYTES : 0);
        CHECK(s.bits[t * 3] == 8.0 * (double)part && s.kld[t * 3] == 0);
        CHECK_MSG(s.kld[t * 3 + 1] > s.kld[t * 3 + 2] && s.kld[t * 3 + 2] > 0, "%s", s.names[t]);
        CHECK(s.bits[t * 3 + 1] < s.bits[t * 3 + 2]);
    }
    /* one cell by hand: ffn_down's rows 32:64 at int2, spliced into an f32 copy */
    check_by_hand(model, ref, &text, &o, &s, 3, 1);
    /* granularities must fit the measurement */
    CHECK_FAILS(lb_plan_set_granularity(&s, "tensor"), LB_ERR_INVALID, "per row block");
    CHECK_OK(lb_plan_set_granularity(&s, "rowblock:2"));

    /* a mix assembled from blocks; refinement within the budget, only lowering the KL */
    int choice[4] = {1, 2, 1, 2};
    lb_eval_result mix;
    CHECK_OK(lb_plan_measure(&o, &s, choice, &mix));
    CHECK(mix.kld > 0);
    double budget = 0, rk[3];
    for (int t = 0; t < 4; t++) budget += s.bits[t * 3 + choice[t]];
    CHECK_OK(lb_plan_refine(&o, &s, budget, 2, choice, rk));
    CHECK(rk[0] == mix.kld);
    double bits = 0;
    for (int t = 0; t < 4; t++) bits += s.bits[t * 3 + choice[t]];
    CHECK(bits <= budget);
    for (int i = 1; i < 3; i++) CHECK(isnan(rk[i]) || rk[i] < rk[i - 1]);
    lb_sensitivity_free(&s);

    /* one block per tensor: the tensor plan's bits, and its KL up to the kernels' arithmetic (the
     * quantized tensors run integer kernels on int8-quantized activations, row blocks f32
     * products of the dequantized weights: a few percent of the KL at these sizes) */
    o.row_blocks = 1;
    lb_sensitivity s1, s0;
    CHECK_OK(lb_sensitivity_measure(&o, c + 1, 2, &s1));
    o.row_blocks = 0;
    o.keep_tensors = 1;
    CHECK_OK(lb_sensitivity_measure(&o, c + 1, 2, &s0));
    CHECK_FAILS(lb_plan_set_granularity(&s0, "rowblock"), LB_ERR_INVALID, "per tensor");
    CHECK(s1.n_tensors == 2 && s0.n_tensors == 2);
    for (int i = 0; i < 4; i++)
        CHECK_MSG(s1.bits[i] == s0.bits[i] && fabs(s1.kld[i] - s0.kld[i]) <= 0.06 * s0.kld[i], "%d: %.9g vs %.9g", i,
                  s1.kld[i], s0.kld[i]);
    int ch[2] = {0, 1};
    lb_eval_result m1, m0;
    CHECK_OK(lb_plan_measure(&o, &s1, ch, &m1));
    CHECK_OK(lb_plan_measure(&o, &s0, ch, &m0));
    CHECK_MSG(fabs(m1.kld - m0.kld) <= 0.06 * m0.kld, "%.9g vs %.9g", m1.kld, m0.kld);
    lb_sensitivity_free(&s1), lb_sensitivity_free(&s0);

    /* column blocks: input columns cut in two, each block its columns quantized alone with
     * those channels' statistics; a cell equals splicing the block's columns by hand */
    o.row_blocks = 2, o.block_axis = 1, o.keep_tensors = 0;
    lb_sensitivity sc;
    CHECK_OK(lb_sensitivity_measure(&o, c, 3, &sc));
    CHECK(sc.n_tensors == 4 && sc.block_axis == 1 && sc.rows_q);
    CHECK_MSG(!strcmp(sc.names[3], "blk.0.ffn_down.weight cols 88:172"), "%s", sc.names[3]);
    CHECK(sc.row0[3] == 88 && sc.row1[3] == 172 && sc.weights[3] == 64 * 84 && sc.weights[1] == 32 * 32);
    for (int t = 0; t < 4; t++) {
        size_t part = lb_split_part_bytes(4 * (size_t)sc.weights[t]) + (sc.row0[t] == 0 ? LB_SPLIT_HEAD_BYTES : 0);
        CHECK(sc.bits[t * 3] == 8.0 * (double)part && sc.kld[t * 3] == 0);
        CHECK_MSG(sc.kld[t * 3 + 1] > sc.kld[t * 3 + 2] && sc.kld[t * 3 + 2] > 0, "%s", sc.names[t]);
    }
    check_by_hand(model, ref, &text, &o, &sc, 3, 1);
    CHECK_FAILS(lb_plan_set_granularity(&sc, "rowblock:2"), LB_ERR_INVALID, "per column block");
    CHECK_OK(lb_plan_set_granularity(&sc, "colblock:2"));
    int cchoice[4] = {2, 1, 1, 2};
    CHECK_OK(lb_plan_measure(&o, &sc, cchoice, &mix));
    budget = 0;
    for (int t = 0; t < 4; t++) budget += sc.bits[t * 3 + cchoice[t]];
    CHECK_OK(lb_plan_refine(&o, &sc, budget, 1, cchoice, rk));
    CHECK(rk[0] == mix.kld && mix.kld > 0);
    lb_sensitivity_free(&sc);

    lb_calib_stats_free(st);
    lb_model_free(ref);
    lb_text_free(&text);
    return lb_test_finish("test_rowblock");
}
