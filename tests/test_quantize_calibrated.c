/* The whole-model driver with calibration statistics: lb_plan_stats_needed
 * says which statistics a plan's methods need; lb_quantize_model_calibrated
 * hands every linear the statistics of its own input, so the model it makes
 * is byte for byte what quantizing each tensor by hand with
 * lb_calib_stats_for_tensor makes; without statistics a method that needs
 * them fails naming the tensor and leaves the model as it was. Uses
 * stories260K and the calibration split (skipped without the data). */
#include "test.h"

static int same_model_bytes(lb_model *a, lb_model *b) {
    for (int i = 0; i < lb_model_n_tensors(a); i++) {
        const lb_tensor *x = lb_model_tensor_at(a, i), *y = lb_model_tensor_at(b, i);
        if (x->nbytes != y->nbytes || memcmp(x->data, y->data, x->nbytes)) return 0;
    }
    return 1;
}

int main(void) {
    const char *model = lb_test_data("models/stories260K.bin"), *text = lb_test_data("text/tinystories-sample.txt");
    FILE *f = fopen(model, "rb");
    if (!f) {
        printf("SKIPPED: %s is missing\n", model);
        return 77;
    }
    fclose(f);
    lb_model *m = NULL, *hand = NULL;
    CHECK_OK(lb_model_load(model, NULL, &m));
    CHECK_OK(lb_model_load(model, NULL, &hand));
    if (!m || !hand) return lb_test_finish("test_quantize_calibrated");

    lb_qspec spec = lb_test_spec("int3:g64:asym");
    lb_method_opts gptq, rtn;
    lb_method_opts_default(lb_method_find("gptq"), &gptq);
    lb_method_opts_default(lb_method_find("rtn"), &rtn);
    lb_plan plan, plan_rtn;
    lb_plan_init(&plan);
    lb_plan_init(&plan_rtn);
    CHECK_OK(lb_plan_add_selection(&plan, "linears", &spec, &gptq));
    CHECK_OK(lb_plan_add_selection(&plan_rtn, "linears", &spec, &rtn));
    CHECK_OK(lb_plan_resolve(&plan, m));
    CHECK_OK(lb_plan_resolve(&plan_rtn, m));
    CHECK(lb_plan_stats_needed(&plan) & LB_STATS_XTX);
    CHECK(lb_plan_stats_needed(&plan_rtn) == 0);

    /* without statistics: refused, naming a tensor, the model untouched */
    lb_quantize_report rep;
    CHECK_FAILS(lb_quantize_model(m, &plan, &rep), LB_ERR_INVALID, "needs calibration statistics");
    CHECK(same_model_bytes(m, hand));

    lb_calib_opts o;
    lb_calib_opts_default(&o);
    o.text_path = text;
    o.blocks = 16; /* the first 16 blocks of the calibration split */
    lb_calib_stats *stats = NULL;
    CHECK_OK(lb_calibrate(m, &o, &stats));
    if (!stats) return lb_test_finish("test_quantize_calibrated");
    CHECK_OK(lb_quantize_model_calibrated(m, &plan, stats, &rep));
    CHECK(rep.tensors_quantized == 35);
    lb_quantize_report_free(&rep);

    /* by hand: each linear with its own input's statistics */
    for (int i = 0; i < plan.n_entries; i++) {
        lb_tensor *t = lb_model_tensor_at(hand, plan.entries[i].tensor);
        const lb_layer_stats *ls = lb_calib_stats_for_tensor(stats, hand, t);
        CHECK_MSG(ls != NULL, "no statistics for %s", t->name);
        float *w = lb_alloc((size_t)(t->rows * t->cols) * sizeof(float));
        lb_tensor q;
        CHECK_OK(lb_dequantize(t, w));
        CHECK_OK(lb_quantize_tensor(lb_method_find("gptq"), &gptq, ls, w, t->rows, t->cols, &spec, t->name, &q));
        lb_free(w);
        lb_tensor_free(t);
        *t = q;
    }
    CHECK_MSG(same_model_bytes(m, hand), "lb_quantize_model_calibrated differs from quantizing by hand");

    /* statistics of a model of another shape are refused before any work */
    lb_model *tiny = NULL;
    CHECK_OK(lb_model_load("fuzz/corpus/fuzz_model_gguf/untied.gguf", NULL, &tiny));
    if (tiny) {
        lb_plan p2;
        lb_plan_init(&p2);
        CHECK_OK(lb_plan_add_selection(&p2, "linears", &spec, &gptq));
        CHECK_FAILS(lb_quantize_model_calibrated(tiny, &p2, stats, &rep), LB_ERR_INVALID, "another model");
        lb_plan_free(&p2);
        lb_model_free(tiny);
    }
    lb_calib_stats_free(stats);
    lb_plan_free(&plan);
    lb_plan_free(&plan_rtn);
    lb_model_free(m);
    lb_model_free(hand);
    return lb_test_finish("test_quantize_calibrated");
}
