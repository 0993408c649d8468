/* Quantizes one tensor of a model (layer 0's MLP gate projection) to 4 bits
 * with round-to-nearest and MSE clipping, and saves the model as GGUF.
 *
 *   usage: quantize_one MODEL OUT.gguf
 *
 * Every lowbit call that can fail returns lb_status; lb_last_error() says
 * what went wrong and where. */
#include <stdio.h>

#include <lowbit.h>

static int failed(const char *what) {
    fprintf(stderr, "quantize_one: %s: %s\n", what, lb_last_error());
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

    lb_model *m = NULL;
    if (lb_model_load(model_path, NULL, &m) != LB_OK) return failed("loading the model");

    lb_qspec spec;
    lb_rtn_opts opts;
    lb_rtn_opts_default(&opts);
    opts.clip = LB_CLIP_MSE;
    lb_tensor *w = &m->layers[0].linear[LB_W1]; /* (hidden_dim, dim) */
    float *weights = lb_alloc((size_t)(w->rows * w->cols) * sizeof(float));
    lb_tensor q;
    int rc = 0;
    if (lb_qspec_parse("int4:g64:asym", &spec) != LB_OK) {
        rc = failed("format");
    } else if (!weights || lb_dequantize(w, weights) != LB_OK) { /* any stored format -> f32 */
        rc = failed("reading the weights");
    } else if (lb_quantize_to_tensor(weights, w->rows, w->cols, &spec, &opts, w->name, &q) != LB_OK) {
        rc = failed("quantizing");
    } else {
        size_t before = w->nbytes;
        lb_tensor_free(w);
        *w = q; /* the model owns the quantized tensor now; the forward pass runs it */
        if (lb_model_save_gguf(m, out_path) != LB_OK) {
            rc = failed("saving");
        } else {
            printf("%s: %s as int4:g64:asym, %zu bytes (was %zu)\n", out_path, w->name, w->nbytes, before);
        }
    }
    lb_free(weights);
    lb_model_free(m);
    return rc;
}
