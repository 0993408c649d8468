/* Activation quantization on the real model (stories260K): the plan-level
 * quantizer of lb_quantize_model_calibrated (static clips equal to
 * lb_act_range of each linear's own input statistics, all or nothing when
 * statistics are missing), the slot through a GGUF file (same quantizers,
 * bit-identical logits), files without the keys still loading, corrupt
 * keys refused, and the default histogram resolution. */
#include "test.h" /* first: it sets _POSIX_C_SOURCE for mkdtemp */

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lowbit.h"

static char dir[256];

static lb_model *load_fp32(void) {
    lb_model *m = NULL;
    CHECK_OK(lb_model_load(lb_test_data("models/stories260K.bin"), NULL, &m));
    if (!m) exit(1);
    return m;
}

static lb_calib_stats *calibrate(const lb_model *m) {
    lb_calib_opts o;
    lb_calib_opts_default(&o);
    o.text_path = lb_test_data("text/tinystories-sample.txt");
    o.blocks = 16; /* enough to exercise every input; the CLI uses all 128 */
    lb_calib_stats *s = NULL;
    CHECK_OK(lb_calibrate(m, &o, &s));
    if (!s) exit(1);
    lb_calib_info info;
    lb_calib_stats_info(s, &info);
    CHECK(info.hist_bins == 8192); /* the default: TensorRT's resolution for KL (act_range.c) */
    return s;
}

static void plan_q8(lb_plan *p, const char *act) {
    lb_plan_init(p);
    lb_qspec spec = lb_test_spec("q8_0");
    lb_method_opts o;
    CHECK_OK(lb_test_method_opts(lb_method_find("rtn"), "", &o));
    CHECK_OK(lb_plan_add_selection(p, "linears", &spec, &o));
    if (act) CHECK_OK(lb_act_spec_parse(act, &p->act));
}

static void logits_of(lb_model *m, float *out) {
    int tokens[6] = {1, 403, 407, 261, 378, 13};
    lb_state *s = NULL;
    CHECK_OK(lb_state_create(m, 6, &s));
    CHECK_OK(lb_forward(m, s, tokens, 6, 0, out));
    lb_state_free(s);
}

static void test_pipeline_and_file(void) {
    lb_model *m = load_fp32();
    lb_calib_stats *stats = calibrate(m);
    const int L = m->cfg.n_layers, V = m->cfg.vocab_size;
    /* static without statistics: refused, model untouched (weights still f32, no act) */
    lb_plan p;
    plan_q8(&p, "int8:tensor:kl");
    CHECK(lb_plan_stats_needed(&p) == (LB_STATS_HIST_X | LB_STATS_MAX_ABS_X)); /* rtn needs none; the static range does */
    CHECK_FAILS(lb_quantize_model_calibrated(m, &p, NULL, NULL), LB_ERR_INVALID, "statistics");
    CHECK(m->layers[0].linear[LB_WQ].w.spec.family == LB_FAMILY_F32 && m->layers[0].linear[LB_WQ].act.kind == LB_AQ_NONE);
    CHECK_OK(lb_plan_resolve(&p, m));
    CHECK((lb_plan_stats_needed(&p) & (LB_STATS_HIST_X | LB_STATS_MAX_ABS_X)) == (LB_STATS_HIST_X | LB_STATS_MAX_ABS_X));
    CHECK_OK(lb_quantize_model_calibrated(m, &p, stats, NULL));
    CHECK(strstr(m->quant_note, "act=int8:tensor:kl") != NULL);
    int clip_bad = 0;
    for (int l = 0; l < L; l++)
        for (int i = 0; i < LB_N_LINEARS; i++) {
            const lb_act_quant *a = &m->layers[l].linear[i].act;
            float want = 0;
            /* k, v and up read q's and gate's input: the same clip, not searched again */
            int first = i == LB_WK || i == LB_WV ? LB_WQ : i == LB_W3 ? LB_W1 : i;
            if (first != i) want = m->layers[l].linear[first].act.clip;
            else CHECK_OK(lb_act_range(lb_calib_stats_get(stats, l, i), a, &want));
            clip_bad += a->kind != LB_AQ_TENSOR || a->bits != 8 || a->rule != LB_ACT_RANGE_KL || a->clip != want;
        }
    CHECK_MSG(clip_bad == 0, "%d linears without their own input's KL clip", clip_bad);
    /* q, k and v read one input: one clip; the MLP hidden state is a different input */
    CHECK(m->layers[0].linear[LB_WQ].act.clip == m->layers[0].linear[LB_WV].act.clip);
    CHECK(m->layers[0].linear[LB_WQ].act.clip != m->layers[0].linear[LB_W2].act.clip);
    /* mix in dynamic quantizers, then through a file */
    lb_act_quant tok;
    CHECK_OK(lb_act_spec_parse("int6:token", &tok));
    CHECK_OK(lb_linear_set_act(&m->layers[1].linear[LB_WO], &tok));
    CHECK_OK(lb_linear_set_act(&m->layers[2].linear[LB_W2], NULL));
    char path[300];
    snprintf(path, sizeof path, "%s/act.gguf", dir);
    CHECK_OK(lb_model_save_gguf(m, path));
    lb_model *back = NULL;
    CHECK_OK(lb_model_load(path, NULL, &back));
    if (!back) exit(1);
    int slot_bad = 0;
    for (int l = 0; l < L; l++)
        for (int i = 0; i < LB_N_LINEARS; i++) {
            const lb_act_quant *a = &m->layers[l].linear[i].act, *b = &back->layers[l].linear[i].act;
            slot_bad += a->kind != b->kind || a->bits != b->bits || (a->kind == LB_AQ_TENSOR && (a->rule != b->rule || a->clip != b->clip));
        }
    CHECK_MSG(slot_bad == 0, "%d activation quantizers changed through the file", slot_bad);
    CHECK(back->layers[1].linear[LB_WO].act.kind == LB_AQ_TOKEN && back->layers[2].linear[LB_W2].act.kind == LB_AQ_NONE);
    float *y1 = malloc((size_t)6 * V * 4), *y2 = malloc((size_t)6 * V * 4), *y0 = malloc((size_t)6 * V * 4);
    logits_of(m, y1);
    logits_of(back, y2);
    CHECK_MSG(memcmp(y1, y2, (size_t)6 * V * 4) == 0, "logits differ after the file round trip");
    /* the quantizers do act: without them the logits differ */
    for (int l = 0; l < L; l++)
        for (int i = 0; i < LB_N_LINEARS; i++) CHECK_OK(lb_linear_set_act(&back->layers[l].linear[i], NULL));
    logits_of(back, y0);
    CHECK(memcmp(y0, y1, (size_t)6 * V * 4) != 0);
    lb_model_free(back);

    /* corrupt keys: a bad spec, a static quantizer without its clip; both refused naming the key */
    lb_mapped_file f;
    CHECK_OK(lb_map_file(path, &f));
    uint8_t *bytes = malloc(f.size);
    memcpy(bytes, f.data, f.size);
    size_t size = f.size;
    lb_unmap_file(&f);
    const struct {
        const char *from, *to, *needle;
    } cases[] = {{"int6:token", "int9:token", "lowbit.act.blk.1.attn_output"},
                 {"lowbit.act_clip.blk.0.attn_q", "lowbit.act_clxp.blk.0.attn_q", "needs its clip"}};
    for (int c = 0; c < 2; c++) {
        uint8_t *copy = malloc(size);
        memcpy(copy, bytes, size);
        size_t n = strlen(cases[c].from);
        int found = 0;
        for (size_t i = 0; i + n <= size && !found; i++)
            if (!memcmp(copy + i, cases[c].from, n)) memcpy(copy + i, cases[c].to, n), found = 1;
        CHECK(found);
        lb_model *bad = NULL;
        CHECK_FAILS(lb_model_from_gguf(copy, size, &bad), LB_ERR_FORMAT, cases[c].needle);
        CHECK(bad == NULL);
        free(copy);
    }
    free(bytes);
    remove(path);

    /* a file written without activation quantizers loads without them */
    lb_model *plain = load_fp32();
    snprintf(path, sizeof path, "%s/plain.gguf", dir);
    CHECK_OK(lb_model_save_gguf(plain, path));
    lb_model *pb = NULL;
    CHECK_OK(lb_model_load(path, NULL, &pb));
    int any = 0;
    for (int l = 0; pb && l < L; l++)
        for (int i = 0; i < LB_N_LINEARS; i++) any += pb->layers[l].linear[i].act.kind != LB_AQ_NONE;
    CHECK(pb && any == 0);
    lb_model_free(pb);
    lb_model_free(plain);
    remove(path);

    /* a static range for a linear with an input scale is refused (the statistics are of x, not x / s) */
    lb_model *sm = load_fp32();
    float *s = malloc((size_t)m->cfg.dim * 4);
    for (int j = 0; j < m->cfg.dim; j++) s[j] = 2.0f;
    CHECK_OK(lb_linear_set_in_scale(&sm->layers[0].linear[LB_WQ], s));
    lb_plan p2;
    plan_q8(&p2, "int8:tensor:mse");
    CHECK_FAILS(lb_quantize_model_calibrated(sm, &p2, stats, NULL), LB_ERR_UNSUPPORTED, "input scale");
    CHECK(sm->layers[0].linear[LB_WK].w.spec.family == LB_FAMILY_F32);
    lb_plan_free(&p2);
    plan_q8(&p2, "int8:token"); /* dynamic works on x' whatever the transform */
    CHECK_OK(lb_quantize_model_calibrated(sm, &p2, NULL, NULL));
    CHECK(sm->layers[0].linear[LB_WQ].act.kind == LB_AQ_TOKEN);
    lb_plan_free(&p2);
    lb_model_free(sm);
    free(s);
    free(y0);
    free(y1);
    free(y2);
    lb_plan_free(&p);
    lb_calib_stats_free(stats);
    lb_model_free(m);
}

int main(void) {
    lb_progress_set_mode(LB_PROGRESS_OFF);
    snprintf(dir, sizeof dir, "/tmp/lowbit-test-act-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    test_pipeline_and_file();
    rmdir(dir);
    return lb_test_finish("test_act_model");
}
