/* Squared gradients per weight (lb_calib_fisher, src/calib/fisher.c; issue 9
 * item 6) on stories260K over the first 3 calibration blocks at ctx 64:
 * - what is saved and loaded back equals a direct computation (the trainer's
 *   fp32 forward and backward per sequence, the squared gradients averaged
 *   over sequences in double), exactly;
 * - the file says version 2 only when it carries them; squeezellm
 *   weights=fisher runs on the loaded statistics and fails clearly without;
 * - a quantized model is refused. */
#include "test.h"

#include <unistd.h>

#include "train/train_internal.h"

int main(void) {
    const char *model = lb_test_data("models/stories260K.bin"), *text = lb_test_data("text/tinystories-sample.txt");
    lb_model *m = NULL;
    CHECK_OK(lb_model_load(model, NULL, &m));
    if (!m) return lb_test_finish("test_fisher");
    lb_calib_opts o;
    lb_calib_opts_default(&o);
    o.text_path = text;
    o.blocks = 3;
    o.ctx = 64;
    lb_calib_stats *s = NULL, *back = NULL;
    CHECK_OK(lb_calibrate(m, &o, &s));
    CHECK(lb_calib_stats_get(s, 0, LB_WQ)->grad_sq == NULL);
    CHECK_OK(lb_calib_fisher(m, &o, s));
    char dir[] = "/tmp/lb_fisher_XXXXXX", path[64];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/s.gguf", dir);
    CHECK_OK(lb_calib_stats_save(s, path));
    CHECK_OK(lb_calib_stats_load(path, m, &back));

    /* direct: the same sequences (BOS + block, cut at ctx) through the trainer */
    lb_text t;
    CHECK_OK(lb_text_load(text, &t));
    int first, end;
    CHECK_OK(lb_text_split(&t, LB_SPLIT_CALIB, 128, &first, &end));
    lb_train_model *tm = NULL;
    CHECK_OK(lb_train_model_from_model(m, 0, &tm));
    int nl = m->cfg.n_layers * LB_N_LINEARS;
    double **acc = calloc((size_t)nl, sizeof *acc);
    for (int i = 0; i < nl; i++) acc[i] = calloc((size_t)tm->linears[i].rows * tm->linears[i].cols, sizeof(double));
    int seqs = 0;
    for (int b = first; b < first + 3; b++) {
        int *tok = NULL;
        size_t nt = 0;
        CHECK_OK(lb_tokenize(m->tokenizer, t.blocks[b].text, t.blocks[b].len, 1, 0, &tok, &nt));
        int n = nt > 64 ? 64 : (int)nt;
        double loss;
        lb_train_model_zero_grad(tm);
        CHECK_OK(lb_train_model_forward(tm, tok, tok + 1, 1, n - 1, &loss));
        CHECK_OK(lb_train_model_backward(tm));
        for (int i = 0; i < nl; i++)
            for (size_t j = 0; j < (size_t)tm->linears[i].rows * tm->linears[i].cols; j++)
                acc[i][j] += (double)tm->linears[i].dw[j] * tm->linears[i].dw[j];
        seqs++;
        lb_free(tok);
    }
    int same = 1, nonzero = 0;
    for (int i = 0; i < nl; i++) {
        const lb_layer_stats *ls = lb_calib_stats_get(back, i / LB_N_LINEARS, i % LB_N_LINEARS);
        CHECK(ls && ls->grad_sq);
        if (!ls || !ls->grad_sq) break;
        CHECK(ls->rows == tm->linears[i].rows && ls->cols == tm->linears[i].cols);
        for (size_t j = 0; j < (size_t)tm->linears[i].rows * tm->linears[i].cols; j++) {
            same &= ls->grad_sq[j] == (float)(acc[i][j] / seqs);
            nonzero += ls->grad_sq[j] > 0;
        }
        free(acc[i]);
    }
    free(acc);
    CHECK_MSG(same, "the loaded squared gradients differ from the direct computation");
    CHECK(nonzero > 0);
    lb_calib_info info;
    lb_calib_stats_info(back, &info);
    CHECK(info.parts & LB_STATS_GRAD_SQ);

    /* squeezellm weights=fisher reads them */
    lb_method_opts so;
    CHECK_OK(lb_test_method_opts(lb_method_find("squeezellm"), "weights=fisher", &so));
    lb_qspec lut = lb_test_spec("lut3");
    const lb_tensor *w = &m->layers[1].linear[LB_WQ].w;
    float *wf = malloc((size_t)w->rows * w->cols * sizeof(float));
    CHECK_OK(lb_dequantize(w, wf));
    lb_tensor q;
    CHECK_OK(lb_quantize_tensor(lb_method_find("squeezellm"), &so, lb_calib_stats_get(back, 1, LB_WQ), wf, w->rows,
                                w->cols, &lut, w->name, &q));
    lb_tensor_free(&q);
    lb_layer_stats nog = *lb_calib_stats_get(back, 1, LB_WQ);
    nog.grad_sq = NULL;
    CHECK_FAILS(lb_quantize_tensor(lb_method_find("squeezellm"), &so, &nog, wf, w->rows, w->cols, &lut, w->name, &q),
                LB_ERR_INVALID, "calibrate --fisher");
    free(wf);

    /* the trainer copies fp32 models only */
    lb_tensor orig = m->layers[0].linear[LB_WQ].w;
    lb_qspec i4 = lb_test_spec("int4:g32:asym");
    float *w0 = malloc((size_t)orig.rows * orig.cols * sizeof(float));
    CHECK_OK(lb_dequantize(&orig, w0));
    CHECK_OK(lb_quantize_to_tensor(w0, orig.rows, orig.cols, &i4, NULL, orig.name, &m->layers[0].linear[LB_WQ].w));
    CHECK(lb_calib_fisher(m, &o, s) != LB_OK);
    lb_tensor_free(&m->layers[0].linear[LB_WQ].w);
    m->layers[0].linear[LB_WQ].w = orig;
    free(w0);

    lb_train_model_free(tm);
    lb_text_free(&t);
    lb_calib_stats_free(s);
    lb_calib_stats_free(back);
    remove(path);
    rmdir(dir);
    lb_model_free(m);
    return lb_test_finish("test_fisher");
}
