/* Resumable runs (src/pipeline/journal.c, src/calib/calib_journal.c;
 * docs/SCALING.md, "Resumable runs"): a run stopped after k tensors
 * (lb_journal_set_stop) and resumed from its journal writes the bytes and
 * the report records of a run never interrupted, on the streamed path (rtn)
 * and the in-memory one (outliers: slot parts journaled too); a journal of
 * another plan is refused naming the line that differs; an existing one is
 * refused without resume; every prefix of a record and every single-byte
 * change of it is refused cleanly by the record parser; a calibration
 * stopped after k blocks and resumed gives the same statistics file. */
#define _XOPEN_SOURCE 700 /* mkdtemp */

#include "test.h"
#include "tmpdir.h"
#include "pipeline/pipeline_internal.h"

static const char *model_path, *tok_path, *text_path;

static void make_plan(lb_plan *p, const char *spec_text, const char *opts) {
    lb_method_opts o;
    lb_plan_init(p);
    lb_qspec spec = lb_test_spec(spec_text);
    CHECK_OK(lb_test_method_opts(lb_method_find("rtn"), opts, &o));
    CHECK_OK(lb_plan_add_selection(p, "linears", &spec, &o));
}

/* quantize to out through the journal at jpath (NULL: none), stopping after stop tensors (0: never) */
static lb_status quantize_to(const char *out, const char *spec, const char *opts, const char *jpath, int resume,
                             int stop, lb_quantize_report *rep, int *streamed) {
    lb_model *m = NULL;
    lb_status st = lb_model_load(model_path, tok_path, &m);
    if (st != LB_OK) return st;
    lb_plan p;
    make_plan(&p, spec, opts);
    lb_journal *j = NULL;
    char *fp = NULL;
    if (jpath) {
        st = lb_journal_fingerprint(m, &p, NULL, NULL, 0, NULL, &fp);
        if (st == LB_OK) st = lb_journal_open(jpath, fp, resume, &j);
        lb_free(fp);
        if (st == LB_OK) lb_journal_set_stop(j, stop);
        p.journal = j;
    }
    int n_shards = 0;
    if (st == LB_OK) st = lb_quantize_model_to_gguf(m, &p, NULL, out, NULL, &n_shards, rep, 1, streamed);
    if (st != LB_OK && j) CHECK(lb_journal_stopped(j) == (stop > 0));
    if (j) lb_journal_close(j, st == LB_OK);
    lb_plan_free(&p);
    lb_model_free(m);
    return st;
}

static void check_resume(const char *spec, const char *opts, int stop, int want_streamed) {
    char name[64];
    snprintf(name, sizeof name, "%s %s", spec, opts);
    lb_quantize_report ra, rb;
    int sa = -1, sb = -1;
    const char *ref = path_in("ref.gguf"), *out = path_in("res.gguf"), *jp = path_in("res.gguf.partial");
    CHECK_OK(quantize_to(ref, spec, opts, NULL, 0, 0, &ra, &sa));
    /* stopped after `stop` tensors: no output, the journal holds them */
    CHECK_FAILS(quantize_to(out, spec, opts, jp, 0, stop, &rb, &sb), LB_ERR_INVALID, "stopped after");
    CHECK(access(out, F_OK) != 0 && access(jp, F_OK) == 0);
    /* not silently reused, nor overwritten */
    CHECK_FAILS(quantize_to(out, spec, opts, jp, 0, 0, &rb, &sb), LB_ERR_INVALID, "exists");
    /* another plan's journal: refused, the line named */
    CHECK_FAILS(quantize_to(out, "int2", opts, jp, 1, 0, &rb, &sb), LB_ERR_INVALID, "this run 'tensor blk.0.attn_q");
    CHECK_OK(quantize_to(out, spec, opts, jp, 1, 0, &rb, &sb));
    CHECK_MSG(same_file(ref, out), "%s: resumed output differs", name);
    CHECK(access(jp, F_OK) != 0);
    CHECK(sa == want_streamed && sb == want_streamed);
    CHECK(ra.tensors_quantized == rb.tensors_quantized && ra.bpw == rb.bpw && ra.bpw_all == rb.bpw_all);
    for (int i = 0; i < ra.tensors_quantized && i < rb.tensors_quantized; i++) {
        const lb_tensor_report *a = &ra.tensors[i], *b = &rb.tensors[i];
        CHECK_MSG(!strcmp(a->name, b->name) && a->bpw == b->bpw && a->rel_error == b->rel_error &&
                      lb_qspec_equal(&a->spec, &b->spec),
                  "%s: record %d differs: %s %g %g", name, i, b->name, a->rel_error, b->rel_error);
    }
    lb_quantize_report_free(&ra);
    lb_quantize_report_free(&rb);
    remove(ref);
    remove(out);
}

/* A record for tensor blk.0.attn_q.weight (with a sparse part and a bias):
 * every truncation and every single-byte change fails or parses into
 * something whose sizes the parser checked. */
static void check_parser(void) {
    lb_model *m = NULL;
    CHECK_OK(lb_model_load(model_path, tok_path, &m));
    if (!m) return;
    lb_plan p;
    make_plan(&p, "int3", "outliers=0.02 bias_correct=0");
    CHECK_OK(lb_plan_resolve(&p, m));
    const char *jp = path_in("parse.partial");
    char *fp = NULL;
    lb_journal *j = NULL;
    CHECK_OK(lb_journal_fingerprint(m, &p, NULL, NULL, 0, "extra line", &fp));
    CHECK(fp && strstr(fp, "extra line\n") && strstr(fp, "model: "));
    CHECK_OK(lb_journal_open(jp, fp, 0, &j));
    lb_tensor out;
    lb_tensor_report rec;
    lb_quant_extras x;
    memset(&x, 0, sizeof x);
    CHECK_OK(lb_journal_entry(j, m, &p.entries[0], NULL, NULL, &out, &rec, &x, 1));
    CHECK(x.nnz > 0);
    lb_tensor_free(&out);
    lb_quant_extras_free(&x);
    lb_journal_close(j, 0);
    /* the payload from the file: after the header (24 + fingerprint) and the record's 16-byte head */
    FILE *f = fopen(jp, "rb");
    size_t hdr = 24 + strlen(fp), size = 0;
    uint8_t *all = NULL;
    if (f) {
        fseek(f, 0, SEEK_END);
        size = (size_t)ftell(f);
        fseek(f, 0, SEEK_SET);
        all = malloc(size);
        if (all && fread(all, 1, size, f) != size) size = 0;
        fclose(f);
    }
    CHECK(all && size > hdr + 24);
    const lb_tensor *t = lb_model_tensor_at(m, p.entries[0].tensor);
    if (all && size > hdr + 24) {
        const uint8_t *pay = all + hdr + 16;
        uint64_t len = size - hdr - 24;
        CHECK_OK(lb_journal_parse_record(pay, len, t, &out, &rec, &x));
        lb_tensor_free(&out);
        lb_quant_extras_free(&x);
        int bad = 0;
        for (uint64_t k = 0; k < len; k++) /* every prefix fails */
            if (lb_journal_parse_record(pay, k, t, &out, &rec, &x) == LB_OK) {
                bad++;
                lb_tensor_free(&out);
                lb_quant_extras_free(&x);
            }
        CHECK_MSG(bad == 0, "%d prefixes of a record parsed", bad);
        uint8_t *copy = malloc(len);
        for (uint64_t k = 0; copy && k < len; k += 7) { /* flipped bytes: fail or parse, never crash */
            memcpy(copy, pay, len);
            copy[k] ^= 0xA5;
            if (lb_journal_parse_record(copy, len, t, &out, &rec, &x) == LB_OK) {
                lb_tensor_free(&out);
                lb_quant_extras_free(&x);
            }
        }
        free(copy);
    }
    free(all);
    lb_free(fp);
    remove(jp);
    lb_plan_free(&p);
    lb_model_free(m);
}

static lb_status calibrate_to(const char *out, lb_calib_journal *j, int blocks) {
    lb_model *m = NULL;
    lb_status st = lb_model_load(model_path, tok_path, &m);
    if (st != LB_OK) return st;
    lb_calib_opts o;
    lb_calib_opts_default(&o);
    o.text_path = text_path;
    o.calib_blocks = blocks;
    o.ctx = blocks > 16 ? 32 : 96;
    o.journal = j;
    lb_calib_stats *s = NULL;
    st = lb_calibrate(m, &o, &s);
    if (st == LB_OK) st = lb_calib_stats_save(s, out);
    lb_calib_stats_free(s);
    lb_model_free(m);
    return st;
}

/* blocks > 16: shards of several sequences (calib_shard.c), so stop_after
 * can stop inside a shard (its partials in the snapshot) or at its end */
static void check_calibration(int blocks, int stop_after, int every) {
    const char *ref = path_in("c-ref.gguf"), *out = path_in("c.gguf"), *jp = path_in("c.gguf.partial");
    char msg[64];
    snprintf(msg, sizeof msg, "stopped after %d of %d", stop_after, blocks);
    CHECK_OK(calibrate_to(ref, NULL, blocks));
    lb_calib_journal j = {.path = jp, .fingerprint = "test fingerprint\n", .every = every, .stop_after = stop_after};
    CHECK_FAILS(calibrate_to(out, &j, blocks), LB_ERR_INVALID, msg);
    CHECK(j.stopped == 1 && j.done == stop_after && access(jp, F_OK) == 0);
    lb_calib_journal k = {.path = jp, .fingerprint = "test fingerprint\n"};
    CHECK_FAILS(calibrate_to(out, &k, blocks), LB_ERR_INVALID, "exists");
    lb_calib_journal other = {.path = jp, .fingerprint = "another\n", .resume = 1};
    CHECK_FAILS(calibrate_to(out, &other, blocks), LB_ERR_INVALID, "this run 'another'");
    lb_calib_journal r = {.path = jp, .fingerprint = "test fingerprint\n", .resume = 1, .every = 1};
    CHECK_OK(calibrate_to(out, &r, blocks));
    CHECK(r.resumed == stop_after && r.done == blocks && r.total == blocks && !r.stopped);
    CHECK_MSG(same_file(ref, out), "resumed calibration statistics differ");
    remove(jp);
    remove(ref);
    remove(out);
}

int main(void) {
    model_path = lb_test_data("models/stories260K.bin");
    tok_path = lb_test_data("models/tok512.bin");
    text_path = lb_test_data("text/tinystories-sample.txt");
    if (tmpdir_make("journal")) return 1;
    lb_progress_set_mode(LB_PROGRESS_OFF);
    check_resume("int4", "", 6, 1);
    check_resume("int3", "outliers=0.01", 9, 0);
    check_parser();
    check_calibration(8, 3, 2);
    check_calibration(40, 4, 2); /* shards of 3 sequences: stopped inside the second */
    check_calibration(40, 6, 0); /* at the second's end */
    CHECK(tmpdir_count("") == 2); /* . and ..: every case cleaned up after itself */
    tmpdir_remove();
    return lb_test_finish("test_journal");
}
