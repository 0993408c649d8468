/* llama.cpp's importance matrix both ways (src/calib/imatrix.c): stories260K's
 * statistics written as an imatrix and read back give each input's X^T X
 * diagonal (off-diagonal 0) and token count; a legacy .dat file built here by
 * the published layout (mean squares times calls) gives the same mean
 * squares; GPTQ under an imatrix is RTN (a diagonal H) and with
 * weighted_grid=1 it is not worse in the weighted error than plain RTN; bad
 * files fail with clear errors. The GGUF form against llama-quantize itself:
 * docs/RESULTS.md ("Issue 10"). */
#include "test.h"

#include <unistd.h>

static lb_model *model;

static void put32(uint8_t **p, uint32_t v) {
    lb_wr32(*p, v);
    *p += 4;
}

/* the legacy form of s (every linear; values = mean square * calls) */
static uint8_t *legacy_of(const lb_calib_stats *s, int ncall, size_t *size, int drop_last) {
    uint8_t *buf = calloc(1, 1 << 20), *p = buf;
    int n = model->cfg.n_layers * LB_N_LINEARS - drop_last;
    put32(&p, (uint32_t)n);
    for (int k = 0; k < n; k++) {
        const lb_layer_stats *ls = lb_calib_stats_get(s, k / LB_N_LINEARS, k % LB_N_LINEARS);
        char name[64];
        snprintf(name, sizeof name, "blk.%d.%s.weight", k / LB_N_LINEARS, lb_linear_name(k % LB_N_LINEARS));
        put32(&p, (uint32_t)strlen(name));
        memcpy(p, name, strlen(name));
        p += strlen(name);
        put32(&p, (uint32_t)ncall);
        put32(&p, (uint32_t)ls->cols);
        for (int j = 0; j < ls->cols; j++) {
            float v = (float)(ls->xtx[(size_t)j * ls->cols + j] / (double)ls->n_samples * ncall);
            uint32_t u;
            memcpy(&u, &v, 4);
            put32(&p, u);
        }
    }
    put32(&p, 7); /* last call, then the dataset name */
    put32(&p, 4);
    memcpy(p, "text", 4);
    p += 4;
    *size = (size_t)(p - buf);
    return buf;
}

/* every input's diagonal mean square as in s (relative 1e-6: float storage), off-diagonal 0 */
static int compare_diag(const lb_calib_stats *s, const lb_calib_stats *r) {
    int bad = 0;
    for (int l = 0; l < model->cfg.n_layers; l++)
        for (int w = 0; w < LB_N_LINEARS; w++) {
            const lb_layer_stats *a = lb_calib_stats_get(s, l, w), *b = lb_calib_stats_get(r, l, w);
            if (!b || !b->xtx || b->cols != a->cols || b->rows != a->rows || b->mean_abs_x) {
                bad++;
                continue;
            }
            for (int i = 0; i < a->cols; i++)
                for (int j = 0; j < a->cols; j++) {
                    double want = i == j ? a->xtx[(size_t)i * a->cols + i] / (double)a->n_samples : 0;
                    double got = b->xtx[(size_t)i * a->cols + j] / (double)b->n_samples;
                    if (fabs(got - want) > 1e-6 * fabs(want)) {
                        if (!bad) printf("  first difference: layer %d %s (%d, %d): %.9g against %.9g\n", l,
                                         lb_linear_name(w), i, j, got, want);
                        bad++;
                    }
                }
        }
    return bad;
}

/* stories260K's statistics over the first 4 calibration blocks */
static lb_calib_stats *calibrate4(void) {
    lb_calib_opts o;
    lb_calib_opts_default(&o);
    o.text_path = lb_test_data("text/tinystories-sample.txt");
    o.calib_blocks = 4;
    lb_calib_stats *s = NULL;
    CHECK_OK(lb_calibrate(model, &o, &s));
    return s;
}

static void test_round_trips(const char *dir) {
    lb_calib_stats *s = calibrate4(), *r = NULL;
    if (!s) return;
    char path[300];
    snprintf(path, sizeof path, "%s/imatrix.gguf", dir);
    CHECK_OK(lb_calib_stats_save_imatrix(s, path));
    CHECK_OK(lb_calib_stats_load_imatrix(path, model, &r));
    lb_calib_info a, b;
    lb_calib_stats_info(s, &a);
    lb_calib_stats_info(r, &b);
    CHECK(r && b.tokens == a.tokens && b.parts == LB_STATS_XTX);
    if (r) CHECK_MSG(compare_diag(s, r) == 0, "GGUF imatrix: %d values differ", compare_diag(s, r));
    lb_calib_stats_free(r);
    /* the GGUF form's keys, as llama-quantize wants them */
    char *data;
    size_t size;
    lb_gguf *g = NULL;
    CHECK_OK(lb_read_file(path, &data, &size));
    CHECK_OK(lb_gguf_parse((const uint8_t *)data, size, &g));
    const char *v;
    size_t vl;
    uint32_t u;
    CHECK(lb_gguf_get_str(g, "general.type", &v, &vl) == LB_OK && vl == 7 && !memcmp(v, "imatrix", 7));
    CHECK(lb_gguf_get_u32(g, "imatrix.chunk_size", &u) == LB_OK && lb_gguf_get_u32(g, "imatrix.chunk_count", &u) == LB_OK);
    CHECK(lb_gguf_find_key(g, "imatrix.datasets") >= 0 && lb_gguf_n_tensors(g) == 2 * 5 * LB_N_LINEARS);
    const lb_gguf_tensor *t = lb_gguf_find_tensor(g, "blk.4.ffn_down.weight.in_sum2");
    CHECK(t && t->type == LB_GGML_F32 && t->ne[0] == 172 && t->ne[1] == 1);
    lb_gguf_free(g);
    lb_free(data);

    /* the legacy form */
    uint8_t *leg = legacy_of(s, 3, &size, 0);
    CHECK_OK(lb_calib_stats_imatrix_from_memory(leg, size, model, &r));
    if (r) CHECK_MSG(compare_diag(s, r) == 0, "legacy imatrix: %d values differ", compare_diag(s, r));
    lb_calib_stats_free(r);

    /* bad files: each a clear error, nothing returned */
    CHECK_FAILS(lb_calib_stats_imatrix_from_memory(leg, size / 2, model, &r), LB_ERR_FORMAT, "truncated");
    CHECK(r == NULL);
    free(leg);
    leg = legacy_of(s, 3, &size, 1); /* the last linear (blk.4.ffn_up) missing: its input is still covered by gate */
    CHECK_OK(lb_calib_stats_imatrix_from_memory(leg, size, model, &r));
    lb_calib_stats_free(r);
    free(leg);
    leg = legacy_of(s, 3, &size, 2); /* ffn_down missing: layer 4's MLP hidden input has no entry */
    CHECK_FAILS(lb_calib_stats_imatrix_from_memory(leg, size, model, &r), LB_ERR_INVALID, "ffn_hidden");
    free(leg);
    leg = legacy_of(s, 0, &size, 0);
    CHECK_FAILS(lb_calib_stats_imatrix_from_memory(leg, size, model, &r), LB_ERR_FORMAT, "0 calls");
    free(leg);
    leg = legacy_of(s, 3, &size, 0);
    /* entry 1 (blk.0.attn_k) disagrees with attn_q, which reads the same input */
    size_t at = 4 + 4 + strlen("blk.0.attn_q.weight") + 8 + 64 * 4 + 4 + strlen("blk.0.attn_k.weight") + 8;
    lb_wr32(leg + at, 0x447a0000u); /* 1000 */
    CHECK_FAILS(lb_calib_stats_imatrix_from_memory(leg, size, model, &r), LB_ERR_INVALID, "disagrees");
    lb_wr32(leg + at, 0xbf800000u); /* -1 */
    CHECK_FAILS(lb_calib_stats_imatrix_from_memory(leg, size, model, &r), LB_ERR_INVALID, ">= 0 expected");
    free(leg);
    /* a GGUF file that is not an imatrix */
    CHECK_FAILS(lb_calib_stats_load_imatrix(lb_test_data("models/tok512.bin"), model, &r), LB_ERR_FORMAT, "");
    snprintf(path, sizeof path, "%s/stats.gguf", dir);
    CHECK_OK(lb_calib_stats_save(s, path));
    CHECK_FAILS(lb_calib_stats_load_imatrix(path, model, &r), LB_ERR_FORMAT, "not an imatrix");
    lb_calib_stats_free(s);
}

/* GPTQ under an imatrix (a diagonal H) is RTN; with weighted_grid=1 its
 * grids minimize the error weighted by the mean squares, so that weighted
 * error is no larger than plain RTN's */
static void test_gptq_under_imatrix(const char *dir) {
    lb_calib_stats *s = calibrate4(), *r = NULL;
    char path[300];
    snprintf(path, sizeof path, "%s/i2.gguf", dir);
    CHECK_OK(lb_calib_stats_save_imatrix(s, path));
    CHECK_OK(lb_calib_stats_load_imatrix(path, model, &r));
    if (!r) return;
    const lb_tensor *w = &model->layers[1].linear[LB_W1].w;
    const lb_layer_stats *ls = lb_calib_stats_get(r, 1, LB_W1);
    float *x = malloc((size_t)(w->rows * w->cols) * sizeof(float)), *q = malloc((size_t)(w->rows * w->cols) * sizeof(float));
    CHECK_OK(lb_dequantize(w, x));
    lb_qspec spec = lb_test_spec("q4_0");
    lb_method_opts go, ro, gw;
    CHECK_OK(lb_test_method_opts(lb_method_find("gptq"), "clip=mse", &go));
    CHECK_OK(lb_test_method_opts(lb_method_find("gptq"), "clip=mse weighted_grid=1", &gw));
    CHECK_OK(lb_test_method_opts(lb_method_find("rtn"), "clip=mse", &ro));
    lb_tensor a, b, c;
    CHECK_OK(lb_quantize_tensor(lb_method_find("gptq"), &go, ls, x, w->rows, w->cols, &spec, "w", &a));
    CHECK_OK(lb_quantize_tensor(lb_method_find("rtn"), &ro, NULL, x, w->rows, w->cols, &spec, "w", &b));
    CHECK_OK(lb_quantize_tensor(lb_method_find("gptq"), &gw, ls, x, w->rows, w->cols, &spec, "w", &c));
    CHECK_MSG(a.nbytes == b.nbytes && !memcmp(a.data, b.data, a.nbytes), "gptq under an imatrix differs from rtn");
    double err[2] = {0, 0};
    const lb_tensor *t2[2] = {&b, &c};
    for (int v = 0; v < 2; v++) {
        CHECK_OK(lb_dequantize(t2[v], q));
        for (int64_t i = 0; i < w->rows * w->cols; i++) {
            double d = (double)x[i] - q[i];
            err[v] += ls->xtx[(size_t)(i % w->cols) * (size_t)(w->cols + 1)] * d * d;
        }
    }
    printf("  imatrix-weighted error: rtn %.6g, gptq weighted_grid=1 %.6g\n", err[0], err[1]);
    CHECK(err[1] <= err[0]);
    lb_tensor_free(&a);
    lb_tensor_free(&b);
    lb_tensor_free(&c);
    free(x);
    free(q);
    lb_calib_stats_free(s);
    lb_calib_stats_free(r);
}

int main(void) {
    CHECK_OK(lb_model_load(lb_test_data("models/stories260K.bin"), NULL, &model));
    if (!model) return 1;
    char dir[] = "/tmp/lb_imatrix_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    test_round_trips(dir);
    test_gptq_under_imatrix(dir);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    lb_model_free(model);
    return lb_test_finish("test_imatrix");
}
