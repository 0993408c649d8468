/* REFERENCE.md's round-to-nearest table, reproduced within 1%: stories260K
 * with the seven linears of every layer quantized, docs protocol on the
 * evaluation split, perplexity as a ratio to fp32. The textbook quantizer
 * there: fp16 scale s = (max - min) / (2^b - 1) and fp16 offset m = the
 * group minimum (lowbit's int<b>:<group>:asym); MSE clip = the best of 50
 * shrink factors of [min, max]; ternary absmean and sign x mean|w| with fp16
 * scales. 28 evaluations: the slowest test. With LB_TEST_QUICK set (the
 * sanitizer build, where the point is memory safety, not the numbers twice)
 * a subset covering every bit width, grouping, clip rule and family runs. */
#include "test.h"

static const struct {
    const char *spec;
    lb_clip clip;
    double ratio; /* REFERENCE.md: evaluation ppl / 7.1305 */
} table[] = {
    {"int4:g16:asym", LB_CLIP_MINMAX, 1.057},  {"int4:g32:asym", LB_CLIP_MINMAX, 1.096},
    {"int4:g64:asym", LB_CLIP_MINMAX, 1.124},  {"int4:row:asym", LB_CLIP_MINMAX, 1.151},
    {"int4:g16:asym", LB_CLIP_MSE, 1.053},     {"int4:g32:asym", LB_CLIP_MSE, 1.078},
    {"int4:g64:asym", LB_CLIP_MSE, 1.095},     {"int4:row:asym", LB_CLIP_MSE, 1.117},
    {"int3:g16:asym", LB_CLIP_MINMAX, 1.431},  {"int3:g32:asym", LB_CLIP_MINMAX, 1.664},
    {"int3:g64:asym", LB_CLIP_MINMAX, 2.085},  {"int3:row:asym", LB_CLIP_MINMAX, 2.239},
    {"int3:g16:asym", LB_CLIP_MSE, 1.395},     {"int3:g32:asym", LB_CLIP_MSE, 1.454},
    {"int3:g64:asym", LB_CLIP_MSE, 1.780},     {"int3:row:asym", LB_CLIP_MSE, 1.788},
    {"int2:g16:asym", LB_CLIP_MINMAX, 18.1},   {"int2:g32:asym", LB_CLIP_MINMAX, 42.9},
    {"int2:g64:asym", LB_CLIP_MINMAX, 134},    {"int2:row:asym", LB_CLIP_MINMAX, 154},
    {"int2:g16:asym", LB_CLIP_MSE, 5.08},      {"int2:g32:asym", LB_CLIP_MSE, 7.64},
    {"int2:g64:asym", LB_CLIP_MSE, 11.1},      {"int2:row:asym", LB_CLIP_MSE, 11.7},
    {"ternary:g32", LB_CLIP_MINMAX, 71}, {"ternary:row", LB_CLIP_MINMAX, 85},
    {"binary:g32", LB_CLIP_MINMAX, 247},       {"binary:row", LB_CLIP_MINMAX, 256},
};

/* both clip rules, a group and a row grid, a sign family: int4 g16 minmax,
 * int2 g64 mse, binary row (each cell is a full evaluation, ~17 s under
 * ASan; the other widths and families run the same quantizer and kernels,
 * and every cell runs in `make test`) */
static const int quick_cells[] = {0, 22, 27};

int main(void) {
    int quick = getenv("LB_TEST_QUICK") != NULL;
    if (quick)
        printf("LB_TEST_QUICK: checking %zu of %zu cells\n", sizeof quick_cells / sizeof quick_cells[0],
               sizeof table / sizeof table[0]);
    const char *model_path = lb_test_data("models/stories260K.bin");
    lb_text text;
    lb_model *fp32;
    CHECK_OK(lb_text_load(lb_test_data("text/tinystories-sample.txt"), &text));
    CHECK_OK(lb_model_load(model_path, NULL, &fp32));
    lb_eval_opts o = {.protocol = LB_PROTOCOL_DOCS, .split = LB_SPLIT_EVAL};
    lb_eval_result base;
    CHECK_OK(lb_evaluate(fp32, &text, &o, &base));
    size_t n_cells = quick ? sizeof quick_cells / sizeof quick_cells[0] : sizeof table / sizeof table[0];
    for (size_t c = 0; c < n_cells; c++) {
        size_t i = quick ? (size_t)quick_cells[c] : c;
        lb_qspec spec;
        lb_rtn_opts ro;
        lb_rtn_opts_default(&ro);
        ro.clip = table[i].clip;
        CHECK_OK(lb_qspec_parse(table[i].spec, &spec));
        lb_model *m;
        CHECK_OK(lb_model_load(model_path, NULL, &m));
        for (int l = 0; l < m->cfg.n_layers; l++)
            for (int k = 0; k < LB_N_LINEARS; k++) {
                lb_tensor *w = &m->layers[l].linear[k].w, q;
                CHECK_OK(lb_quantize_to_tensor((const float *)w->data, w->rows, w->cols, &spec, &ro, w->name, &q));
                *w = q; /* the mapped original needs no freeing */
            }
        lb_eval_result r;
        CHECK_OK(lb_evaluate(m, &text, &o, &r));
        double ratio = r.ppl / base.ppl;
        printf("%-22s %-6s ratio %9.4f  reference %8.3f  (%+.2f%%)\n", table[i].spec, lb_clip_name(table[i].clip), ratio,
               table[i].ratio, 100 * (ratio / table[i].ratio - 1));
        CHECK_MSG(fabs(ratio / table[i].ratio - 1) < 0.01, "%s %s: ratio %.4f vs reference %.3f", table[i].spec,
                  lb_clip_name(table[i].clip), ratio, table[i].ratio);
        lb_model_free(m);
    }
    lb_model_free(fp32);
    lb_text_free(&text);
    return lb_test_finish("test_rtn_reference");
}
