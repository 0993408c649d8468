/* Streaming quantization (lb_quantize_model_to_gguf; docs/SCALING.md,
 * "Streaming") writes the bytes the in-memory path writes: quantize the
 * whole model (lb_quantize_model_calibrated), then lb_model_save_gguf_split.
 * Each case runs both on stories260K, each from a fresh load, and compares
 * the files (or every shard of a split set) byte for byte, the report's
 * totals and per-tensor records, and whether it streamed. Covered: ggml
 * types with a fallback (q4_k on the 172-wide ffn_down), a tail (nvfp4's
 * <name>.scale), lowbit's own I8 form with keys (lut, hierarchical int), a
 * float target, every tensor (embeddings and classifier), a dynamic
 * activation quantizer's keys, a calibrated method (gptq), a split set, a
 * failure (nothing left), and plans that must not stream (outliers, awq). */
#define _XOPEN_SOURCE 700 /* mkdtemp */

#include "test.h"
#include "tmpdir.h"

static const char *model_path, *tok_path;
static lb_calib_stats *stats;

/* equal, or both NAN (bpw over no quantized tensor, a proxy loss without H) */
static int same_num(double a, double b) { return a == b || (isnan(a) && isnan(b)); }

typedef struct {
    const char *spec, *method, *opts, *tensors, *act;
    int calibrated, split, want_streamed;
} stream_case;

static int build_plan(const stream_case *c, lb_plan *p) {
    lb_method_opts o;
    lb_plan_init(p);
    lb_qspec spec = lb_test_spec(c->spec);
    if (lb_test_method_opts(lb_method_find(c->method), c->opts, &o) != LB_OK) return 0;
    if (lb_plan_add_selection(p, c->tensors, &spec, &o) != LB_OK) return 0;
    if (c->act && lb_act_spec_parse(c->act, &p->act) != LB_OK) return 0;
    return 1;
}

static void run_case(const stream_case *c) {
    char label[160];
    snprintf(label, sizeof label, "%s %s %s%s%s", c->spec, c->method, c->tensors, c->act ? " act " : "",
             c->act ? c->act : "");
    lb_gguf_split_opts split = {.max_bytes = 150000, .max_tensors = 0};
    const lb_gguf_split_opts *so = c->split ? &split : NULL;
    lb_model *a = NULL, *b = NULL;
    lb_plan pa, pb;
    CHECK_OK(lb_model_load(model_path, tok_path, &a));
    CHECK_OK(lb_model_load(model_path, tok_path, &b));
    if (!a || !b || !build_plan(c, &pa) || !build_plan(c, &pb)) {
        CHECK_MSG(0, "%s: setup failed: %s", label, lb_last_error());
        lb_model_free(a);
        lb_model_free(b);
        return;
    }
    CHECK_OK(lb_plan_resolve(&pa, a));
    CHECK_OK(lb_plan_resolve(&pb, b));
    lb_quantize_report ra, rb;
    int na = 0, nb = 0, streamed = -1;
    const lb_calib_stats *s = c->calibrated ? stats : NULL;
    CHECK_OK(lb_quantize_model_to_gguf(a, &pa, s, path_in("s.gguf"), so, &na, &ra, 1, &streamed));
    CHECK_MSG(streamed == c->want_streamed, "%s: streamed %d", label, streamed);
    CHECK_OK(lb_quantize_model_calibrated(b, &pb, s, &rb));
    CHECK_OK(lb_model_save_gguf_split(b, path_in("m.gguf"), NULL, NULL, NULL, so, &nb));
    CHECK_MSG(na == nb, "%s: %d and %d files", label, na, nb);
    for (int i = 0; i < (c->split ? na : 1) && na == nb; i++) {
        char fa[256], fb[256];
        if (c->split) {
            lb_gguf_split_path(fa, sizeof fa, path_in("s.gguf"), i, na);
            lb_gguf_split_path(fb, sizeof fb, path_in("m.gguf"), i, nb);
        } else {
            snprintf(fa, sizeof fa, "%s", path_in("s.gguf"));
            snprintf(fb, sizeof fb, "%s", path_in("m.gguf"));
        }
        CHECK_MSG(same_file(fa, fb), "%s: %s and %s differ", label, fa, fb);
        remove(fa);
        remove(fb);
    }
    CHECK_MSG(ra.tensors_quantized == rb.tensors_quantized && same_num(ra.bpw, rb.bpw) && same_num(ra.bpw_all, rb.bpw_all),
              "%s: report %d %.6f %.6f vs %d %.6f %.6f", label, ra.tensors_quantized, ra.bpw, ra.bpw_all,
              rb.tensors_quantized, rb.bpw, rb.bpw_all);
    for (int i = 0; i < ra.tensors_quantized && ra.tensors && rb.tensors && ra.tensors_quantized == rb.tensors_quantized;
         i++) {
        const lb_tensor_report *x = &ra.tensors[i], *y = &rb.tensors[i];
        CHECK_MSG(!strcmp(x->name, y->name) && x->bpw == y->bpw && x->rel_error == y->rel_error &&
                      same_num(x->proxy_loss, y->proxy_loss) && same_num(x->proxy_loss_rtn, y->proxy_loss_rtn),
                  "%s: record %d: %s %.6f %.6g vs %s %.6f %.6g", label, i, x->name, x->bpw, x->rel_error, y->name,
                  y->bpw, y->rel_error);
    }
    lb_quantize_report_free(&ra);
    lb_quantize_report_free(&rb);
    lb_plan_free(&pa);
    lb_plan_free(&pb);
    lb_model_free(a);
    lb_model_free(b);
}

/* tmpdir's entries but . and .. */
static int count_entries(void) { return tmpdir_count("") - 2; }

/* A tensor that fails mid-file (gptq without statistics): an error naming
 * it, no file and no temporary left, the model's weights untouched. */
static void test_failure(void) {
    lb_model *m = NULL;
    CHECK_OK(lb_model_load(model_path, tok_path, &m));
    if (!m) return;
    stream_case c = {"int4", "gptq", "", "linears", NULL, 0, 0, 1};
    lb_plan p;
    CHECK(build_plan(&c, &p));
    const lb_tensor *t = lb_model_tensor_at(m, 2);
    const uint8_t *before = t->data;
    lb_qspec spec_before = t->spec;
    int n = -1, streamed = -1;
    lb_status st = lb_quantize_model_to_gguf(m, &p, NULL, path_in("f.gguf"), NULL, &n, NULL, 1, &streamed);
    CHECK_MSG(st != LB_OK && strstr(lb_last_error(), "blk.0."), "status %d: %s", (int)st, lb_last_error());
    CHECK(n == 0 && streamed == 0);
    CHECK(count_entries() == 0);
    CHECK(t->data == before && lb_qspec_equal(&t->spec, &spec_before));
    lb_plan_free(&p);
    lb_model_free(m);
}

int main(void) {
    model_path = lb_test_data("models/stories260K.bin");
    tok_path = lb_test_data("models/tok512.bin");
    const char *text = lb_test_data("text/tinystories-sample.txt");
    if (tmpdir_make("stream")) return 1;
    lb_model *m = NULL;
    lb_calib_opts co;
    lb_calib_opts_default(&co);
    co.text_path = text;
    co.calib_blocks = 8;
    CHECK_OK(lb_model_load(model_path, tok_path, &m));
    if (m) CHECK_OK(lb_calibrate(m, &co, &stats));
    lb_model_free(m);

    const stream_case cases[] = {
        {"int4:g64:asym", "rtn", "clip=mse", "linears", NULL, 0, 0, 1},
        {"q4_k", "rtn", "", "linears", NULL, 0, 0, 1},            /* ffn_down (172 wide) falls back */
        {"nvfp4", "rtn", "", "linears", NULL, 0, 0, 1},           /* a tensor scale: <name>.scale */
        {"lut2", "rtn", "", "linears", NULL, 0, 0, 1},            /* lowbit's I8 form and its keys */
        {"int3:g16:asym:s6:r16", "rtn", "", "all", NULL, 0, 0, 1}, /* every tensor */
        {"f16", "rtn", "", "linears", NULL, 0, 0, 1},             /* a float target */
        {"q8_0", "rtn", "", "linears", "int8:token", 0, 0, 1},    /* the activation keys */
        {"int4:g64:asym", "gptq", "", "linears", NULL, 1, 0, 1},  /* calibrated, measured against H */
        {"int4:g64:asym", "rtn", "", "linears", NULL, 0, 1, 1},   /* a split set */
        {"int4:g64:asym", "rtn", "outliers=0.01", "linears", NULL, 0, 0, 0}, /* outliers: in memory */
        {"int4:g64:asym", "awq", "", "linears", NULL, 1, 0, 0},   /* input scales: in memory */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_case(&cases[i]);
    CHECK(count_entries() == 0);
    test_failure();
    lb_calib_stats_free(stats);
    tmpdir_remove();
    return lb_test_finish("test_quantize_stream");
}
