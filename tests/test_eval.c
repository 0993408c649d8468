/* Evaluation: the fp32 perplexity of stories260K pinned under both
 * protocols (REFERENCE.md's independent implementation for docs, llama.cpp
 * for chunks), KLD/top-1 sanity, thread independence, and bad texts. */
#include "test.h"

static lb_model *model;
static lb_text text;

static lb_eval_result eval(lb_protocol p, int ctx, lb_split split, const lb_model *ref) {
    lb_eval_opts o = {.protocol = p, .ctx = ctx, .split = split, .ref = ref};
    lb_eval_result r;
    lb_status st = lb_evaluate(model, &text, &o, &r);
    if (st != LB_OK) {
        fprintf(stderr, "evaluate: %s\n", lb_last_error());
        exit(1);
    }
    return r;
}

static void test_blocks(void) {
    CHECK(text.n_blocks == 1230);
    /* the last block keeps the file's final newline, like text.split("\n\n") */
    const lb_span *last = &text.blocks[1229];
    CHECK(last->len > 0 && last->text[last->len - 1] == '\n');
    CHECK(text.blocks[0].text[text.blocks[0].len - 1] == '.');
    int first, end;
    CHECK_OK(lb_text_split(&text, LB_SPLIT_EVAL, 128, &first, &end));
    CHECK(first == 128 && end == 1230);
    CHECK_OK(lb_text_split(&text, LB_SPLIT_CALIB, 128, &first, &end));
    CHECK(first == 0 && end == 128);
    CHECK_FAILS(lb_text_split(&text, LB_SPLIT_EVAL, 5000, &first, &end), LB_ERR_INVALID, "split");

    lb_text t;
    CHECK_OK(lb_text_from_memory("a\n\n  \t\n\nb c\nd\n\n\n", 16, "mem", &t));
    CHECK(t.n_blocks == 2);
    CHECK(t.blocks[0].len == 1 && t.blocks[1].len == 5 && !strncmp(t.blocks[1].text, "b c\nd", 5));
    lb_text_free(&t);
    CHECK_OK(lb_text_from_memory("x\ny\n", 4, "mem", &t));
    CHECK(t.n_blocks == 1 && t.blocks[0].len == 4);
    lb_text_free(&t);
    CHECK_FAILS(lb_text_from_memory("", 0, "empty.txt", &t), LB_ERR_INVALID, "empty.txt' is empty");
    CHECK_FAILS(lb_text_from_memory(" \n\n\t\n", 5, "blank.txt", &t), LB_ERR_INVALID, "is empty");
    CHECK_FAILS(lb_text_from_memory("ok \xff\xfe", 5, "bin.txt", &t), LB_ERR_INVALID, "not valid UTF-8 (byte offset 3)");
    CHECK_FAILS(lb_text_from_memory("a\0b", 3, "nul.txt", &t), LB_ERR_INVALID, "NUL byte at offset 1");
    CHECK_FAILS(lb_text_load("/nonexistent/text.txt", &t), LB_ERR_IO, "cannot open");
}

static void test_pinned(void) {
    /* docs protocol, evaluation split: 7.1305 over 85,132 predicted tokens
     * (REFERENCE.md, float64 numpy); calibration split 4.291, all 6.681 */
    lb_eval_result r = eval(LB_PROTOCOL_DOCS, 0, LB_SPLIT_EVAL, NULL);
    CHECK(r.tokens == 85132);
    CHECK(r.sequences == 1102);
    CHECK(r.ctx == 512);
    CHECK_NEAR(r.ppl, 7.1305, 7.1305 * 1e-4);
    printf("docs eval: ppl %.5f over %lld tokens, %.2fs\n", r.ppl, (long long)r.tokens, r.seconds);
    r = eval(LB_PROTOCOL_DOCS, 0, LB_SPLIT_CALIB, NULL);
    CHECK(r.tokens == 12520);
    CHECK_NEAR(r.ppl, 4.291, 4.291 * 2e-4);
    r = eval(LB_PROTOCOL_DOCS, 0, LB_SPLIT_ALL, NULL);
    CHECK_NEAR(r.ppl, 6.681, 6.681 * 2e-4);
    /* chunks protocol, ctx 256, evaluation split: llama.cpp's llama-perplexity
     * gives 6.139 (MACHINE.md); 127 scored positions per chunk */
    r = eval(LB_PROTOCOL_CHUNKS, 256, LB_SPLIT_EVAL, NULL);
    CHECK_MSG(fabs(r.ppl / 6.139 - 1) < 0.005, "chunks ppl %.4f vs llama.cpp 6.139", r.ppl);
    CHECK(r.tokens == r.sequences * 127);
    printf("chunks eval ctx 256: ppl %.5f over %lld tokens (%lld chunks)\n", r.ppl, (long long)r.tokens,
           (long long)r.sequences);
}

static void test_reference_metrics(void) {
    /* against itself: no divergence, full agreement */
    lb_eval_result r = eval(LB_PROTOCOL_DOCS, 64, LB_SPLIT_CALIB, model);
    CHECK_NEAR(r.kld, 0.0, 1e-9);
    CHECK(r.top1 == 1.0);
    /* a coarsely quantized copy: KLD > 0, top-1 < 1, and KLD bounds the nll gap's sign */
    lb_model *q;
    CHECK_OK(lb_model_load(lb_test_data("models/stories260K.bin"), NULL, &q));
    lb_qspec s;
    CHECK_OK(lb_qspec_parse("int3:g64:asym", &s));
    for (int l = 0; l < q->cfg.n_layers; l++)
        for (int i = 0; i < LB_N_LINEARS; i++) {
            lb_tensor *w = &q->layers[l].linear[i].w, t;
            CHECK_OK(lb_quantize_to_tensor((const float *)w->data, w->rows, w->cols, &s, NULL, w->name, &t));
            *w = t;
        }
    lb_eval_opts o = {.protocol = LB_PROTOCOL_DOCS, .ctx = 64, .split = LB_SPLIT_CALIB, .ref = model};
    lb_eval_result rq, rf = eval(LB_PROTOCOL_DOCS, 64, LB_SPLIT_CALIB, NULL);
    CHECK_OK(lb_evaluate(q, &text, &o, &rq));
    CHECK(rq.kld > 0.01 && rq.kld < 5);
    CHECK(rq.top1 > 0.3 && rq.top1 < 1.0);
    CHECK(rq.ppl > rf.ppl);
    /* same numbers with one thread */
    lb_set_threads(1);
    lb_eval_result r1;
    CHECK_OK(lb_evaluate(q, &text, &o, &r1));
    lb_set_threads(2);
    CHECK(r1.nll == rq.nll && r1.kld == rq.kld && r1.top1 == rq.top1);

    /* the reference's logits computed once: the same numbers bit for bit,
     * under both protocols, with ref given or not; other sequences refused */
    lb_ref_logits *rl;
    CHECK_OK(lb_ref_logits_build(q, &text, &o, (size_t)1 << 30, &rl));
    CHECK(rl != NULL);
    CHECK(lb_ref_logits_bytes(rl) > (size_t)rq.tokens * model->cfg.vocab_size * sizeof(float));
    lb_eval_opts oc = o;
    oc.ref_logits = rl;
    lb_eval_result rc;
    CHECK_OK(lb_evaluate(q, &text, &oc, &rc));
    CHECK(rc.nll == rq.nll && rc.kld == rq.kld && rc.top1 == rq.top1 && rc.tokens == rq.tokens);
    oc.ref = NULL;
    CHECK_OK(lb_evaluate(q, &text, &oc, &rc));
    CHECK(rc.nll == rq.nll && rc.kld == rq.kld && rc.top1 == rq.top1);
    oc.split = LB_SPLIT_EVAL;
    CHECK_FAILS(lb_evaluate(q, &text, &oc, &rc), LB_ERR_INVALID, "other sequences");
    oc.split = LB_SPLIT_CALIB, oc.ctx = 32;
    CHECK_FAILS(lb_evaluate(q, &text, &oc, &rc), LB_ERR_INVALID, "other sequences");
    lb_ref_logits_free(rl);
    lb_eval_opts ch = {.protocol = LB_PROTOCOL_CHUNKS, .ctx = 64, .split = LB_SPLIT_CALIB, .ref = model};
    CHECK_OK(lb_evaluate(q, &text, &ch, &rq));
    CHECK_OK(lb_ref_logits_build(q, &text, &ch, (size_t)1 << 30, &rl));
    ch.ref_logits = rl, ch.ref = NULL;
    CHECK_OK(lb_evaluate(q, &text, &ch, &rc));
    CHECK(rc.nll == rq.nll && rc.kld == rq.kld && rc.top1 == rq.top1 && rc.tokens == rq.tokens);
    lb_ref_logits_free(rl);
    /* over the byte cap: none, and no error; no reference: an error */
    CHECK_OK(lb_ref_logits_build(q, &text, &o, 1000, &rl));
    CHECK(rl == NULL && lb_ref_logits_bytes(rl) == 0);
    ch.ref = NULL, ch.ref_logits = NULL;
    CHECK_FAILS(lb_ref_logits_build(q, &text, &ch, (size_t)1 << 30, &rl), LB_ERR_INVALID, "no reference");
    lb_model_free(q);

    lb_eval_opts bad = {.protocol = LB_PROTOCOL_CHUNKS, .ctx = 1000, .split = LB_SPLIT_EVAL};
    CHECK_FAILS(lb_evaluate(model, &text, &bad, &r), LB_ERR_INVALID, "outside");
    lb_text tiny;
    CHECK_OK(lb_text_from_memory("Once upon a time.", 17, "tiny", &tiny));
    bad.ctx = 256;
    bad.split = LB_SPLIT_ALL;
    CHECK_FAILS(lb_evaluate(model, &tiny, &bad, &r), LB_ERR_INVALID, "fewer than one chunk");
    lb_text_free(&tiny);
}

int main(void) {
    CHECK_OK(lb_model_load(lb_test_data("models/stories260K.bin"), NULL, &model));
    CHECK_OK(lb_text_load(lb_test_data("text/tinystories-sample.txt"), &text));
    test_blocks();
    test_pinned();
    test_reference_metrics();
    lb_text_free(&text);
    lb_model_free(model);
    return lb_test_finish("test_eval");
}
