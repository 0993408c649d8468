/* Quantizes the seven linears of every layer of a model to 4 bits with
 * round-to-nearest and MSE clipping, through a quantization plan (the same
 * entry point `lowbit quantize` uses), and saves the model as GGUF.
 *
 *   usage: quantize MODEL OUT.gguf
 *
 * Every lowbit call that can fail returns lb_status; lb_last_error() says
 * what went wrong and where. */
#include <stdio.h>

#include <lowbit.h>

static int failed(const char *what) {
    fprintf(stderr, "quantize: %s: %s\n", what, lb_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL OUT.gguf\n", argv[0]);
        return 2;
    }
    const char *model_path = argv[1], *out_path = argv[2];
    /* refuse a bad output (the input itself, a missing directory) before working */
    if (lb_output_check(out_path, &model_path, 1) != LB_OK) return failed("output");

    lb_qspec spec;
    if (lb_qspec_parse("int4:g64:asym", &spec) != LB_OK) return failed("format");
    lb_method_opts opts; /* a method is a row of the method table; its options are key=value */
    lb_method_opts_default(lb_method_find("rtn"), &opts);
    if (lb_method_opts_set(&opts, "clip", "mse") != LB_OK) return failed("options");

    lb_model *m = NULL;
    if (lb_model_load(model_path, NULL, &m) != LB_OK) return failed("loading the model");
    lb_plan plan; /* which tensor gets which format and method: here, every linear the same */
    lb_plan_init(&plan);
    lb_quantize_report report = {0}; /* per-tensor records too: lb_quantize_report_free */
    int rc = 0;
    if (lb_plan_add_selection(&plan, "linears", &spec, &opts) != LB_OK) {
        rc = failed("plan");
    } else if (lb_quantize_model(m, &plan, &report) != LB_OK) { /* all or nothing */
        rc = failed("quantizing");
    } else if (lb_model_save_gguf(m, out_path) != LB_OK) {
        rc = failed("saving");
    } else {
        printf("%s: %d tensors as int4:g64:asym, %.4f bpw quantized, %.4f bpw whole model\n", out_path,
               report.tensors_quantized, report.bpw, report.bpw_all);
    }
    lb_quantize_report_free(&report);
    lb_plan_free(&plan);
    lb_model_free(m);
    return rc;
}
