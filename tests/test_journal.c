/* Resumable runs (src/pipeline/journal.c, src/calib/calib_journal.c;
 * docs/SCALING.md, "Resumable runs"): a run stopped after k tensors
 * (lb_journal_set_stop) and resumed from its journal writes the bytes and
 * the report records of a run never interrupted, on the streamed path (rtn)
 * and the in-memory one (outliers: slot parts journaled too); a journal of
 * another plan is refused naming the line that differs; an existing one is
 * refused without resume; every prefix of a record and every single-byte
 * change of it is refused cleanly by the record parser; a calibration
 * stopped after k blocks and resumed gives the same statistics file. The
 * layer-by-layer calibration into a file (calib_layer_journal.c) stopped
 * after k layers and resumed writes the same file and the same summary; a
 * damaged, cut or missing data file, a header of another length, a journal
 * of the other pass or of another run are refused; every prefix and
 * single-byte change of its snapshot, re-sealed with a valid checksum, is
 * refused or parses within the checked ranges. */
#define _XOPEN_SOURCE 700 /* mkdtemp, truncate */
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"
#include "tmpdir.h"
#include "calib/calib_internal.h"
#include "core/fingerprint.h"
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

/* ---- the layer-by-layer pass into a file ---------------------------------- */

#define FP "test fingerprint\n"

/* lb_calibrate_to_file over `blocks` blocks of ctx tokens (text: text_path
 * unless given), its summary kept in *summary when asked */
static lb_status layered_to(const char *out, lb_calib_journal *j, int blocks, int ctx, const char *text,
                            lb_calib_stats **summary) {
    lb_model *m = NULL;
    lb_status st = lb_model_load(model_path, tok_path, &m);
    if (st != LB_OK) return st;
    lb_calib_opts o;
    lb_calib_opts_default(&o);
    o.text_path = text ? text : text_path;
    o.calib_blocks = blocks;
    o.ctx = ctx;
    o.journal = j;
    lb_calib_stats *s = NULL;
    st = lb_calibrate_to_file(m, &o, out, &s);
    if (summary) *summary = s;
    else lb_calib_stats_free(s);
    lb_model_free(m);
    return st;
}

/* every linear's per-channel parts, counts and histogram equal (a resumed
 * run reads its journaled layers' back from the data file) */
static int same_summary(const lb_calib_stats *a, const lb_calib_stats *b) {
    lb_calib_info ia, ib;
    lb_calib_stats_info(a, &ia);
    lb_calib_stats_info(b, &ib);
    int same = ia.n_layers == ib.n_layers && ia.tokens == ib.tokens && ia.hist_bins == ib.hist_bins;
    for (int l = 0; same && l < ia.n_layers; l++)
        for (int w = 0; same && w < LB_N_LINEARS; w++) {
            const lb_layer_stats *x = lb_calib_stats_get(a, l, w), *y = lb_calib_stats_get(b, l, w);
            size_t c = (size_t)x->cols;
            same = x->n_samples == y->n_samples && x->hist_range == y->hist_range && x->cols == y->cols &&
                   !memcmp(x->mean_abs_x, y->mean_abs_x, c * 4) && !memcmp(x->max_abs_x, y->max_abs_x, c * 4) &&
                   !memcmp(x->mean_x, y->mean_x, c * 4) && !memcmp(x->hist, y->hist, (size_t)ia.hist_bins * 8) &&
                   !x->xtx && !y->xtx;
        }
    return same;
}

static void flip_byte(const char *path, long at) {
    FILE *f = fopen(path, "r+b");
    int c = f && fseek(f, at, SEEK_SET) == 0 ? fgetc(f) : EOF;
    if (c != EOF && fseek(f, at, SEEK_SET) == 0) fputc(c ^ 0x5A, f);
    if (f) fclose(f);
    CHECK(c != EOF);
}

static long file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

/* stopped after `stop` of stories260K's 5 layers (a snapshot every `every`), resumed: the same file and summary */
static void check_layered(int stop, int every) {
    const char *ref = path_in("l-ref.gguf"), *out = path_in("l.gguf"), *jp = path_in("l.gguf.partial"),
               *dp = path_in("l.gguf.partial.data");
    char msg[64];
    snprintf(msg, sizeof msg, "stopped after %d of 5 layers", stop);
    lb_calib_stats *a = NULL, *b = NULL;
    CHECK_OK(layered_to(ref, NULL, 12, 96, NULL, &a));
    lb_calib_journal j = {.path = jp, .fingerprint = FP, .every = every, .stop_after = stop};
    CHECK_FAILS(layered_to(out, &j, 12, 96, NULL, NULL), LB_ERR_INVALID, msg);
    CHECK(j.stopped == 1 && j.done == stop && j.total == 5 && access(jp, F_OK) == 0 && access(dp, F_OK) == 0 &&
          access(out, F_OK) != 0);
    lb_calib_journal k = {.path = jp, .fingerprint = FP};
    CHECK_FAILS(layered_to(out, &k, 12, 96, NULL, NULL), LB_ERR_INVALID, "exists");
    lb_calib_journal other = {.path = jp, .fingerprint = "another\n", .resume = 1};
    CHECK_FAILS(layered_to(out, &other, 12, 96, NULL, NULL), LB_ERR_INVALID, "this run 'another'");
    /* the other pass's resume: refused as such (and the whole-model one's by this pass: check_pass_mixup) */
    lb_calib_journal whole = {.path = jp, .fingerprint = FP, .resume = 1};
    CHECK_FAILS(calibrate_to(out, &whole, 12), LB_ERR_INVALID, "the layer-by-layer pass's journal");
    lb_calib_journal r = {.path = jp, .fingerprint = FP, .resume = 1, .every = 1};
    CHECK_OK(layered_to(out, &r, 12, 96, NULL, &b));
    CHECK(r.resumed == stop && r.done == 5 && r.total == 5 && !r.stopped);
    CHECK_MSG(same_file(ref, out), "layered: resumed after %d layers, the statistics differ", stop);
    CHECK_MSG(a && b && same_summary(a, b), "layered: resumed after %d layers, the summary differs", stop);
    CHECK(access(jp, F_OK) != 0 && access(dp, F_OK) != 0);
    lb_calib_stats_free(a);
    lb_calib_stats_free(b);
    remove(ref);
    remove(out);
}

/* resumed twice; then a damaged, cut or missing data file and a header of
 * another length: refused, naming the file; the journal left as it was */
static void check_layered_damage(void) {
    const char *ref = path_in("d-ref.gguf"), *out = path_in("d.gguf"), *jp = path_in("d.gguf.partial"),
               *dp = path_in("d.gguf.partial.data");
    CHECK_OK(layered_to(ref, NULL, 12, 96, NULL, NULL));
    lb_calib_journal j1 = {.path = jp, .fingerprint = FP, .every = 1, .stop_after = 1};
    CHECK_FAILS(layered_to(out, &j1, 12, 96, NULL, NULL), LB_ERR_INVALID, "stopped after 1 of 5");
    lb_calib_journal j2 = {.path = jp, .fingerprint = FP, .every = 1, .stop_after = 3, .resume = 1};
    CHECK_FAILS(layered_to(out, &j2, 12, 96, NULL, NULL), LB_ERR_INVALID, "stopped after 3 of 5");
    CHECK(j2.resumed == 1);
    long kept = file_size(dp);
    CHECK(kept > 0);
    lb_calib_journal r = {.path = jp, .fingerprint = FP, .resume = 1};
    flip_byte(dp, kept / 2);
    CHECK_FAILS(layered_to(out, &r, 12, 96, NULL, NULL), LB_ERR_FORMAT, "is not what the journal");
    flip_byte(dp, kept / 2);
    CHECK(truncate(dp, kept - 100) == 0);
    CHECK_FAILS(layered_to(out, &r, 12, 96, NULL, NULL), LB_ERR_FORMAT, "is cut short");
    CHECK(rename(dp, path_in("d.data.moved")) == 0);
    CHECK_FAILS(layered_to(out, &r, 12, 96, NULL, NULL), LB_ERR_IO, "cannot open");
    CHECK(access(out, F_OK) != 0 && access(jp, F_OK) == 0);
    remove(path_in("d.data.moved"));
    /* a fresh stop at 2, then the same text under a longer name: the header
     * (lowbit.calib.source) would move the kept tensors */
    remove(jp);
    lb_calib_journal j3 = {.path = jp, .fingerprint = FP, .every = 1, .stop_after = 2};
    CHECK_FAILS(layered_to(out, &j3, 12, 96, NULL, NULL), LB_ERR_INVALID, "stopped after 2 of 5");
    char *text = NULL;
    size_t n = 0;
    CHECK_OK(lb_read_file(text_path, &text, &n));
    /* 100 characters longer: past the header's 32-byte padding (a few more fit in it, and then the
     * header is simply the resumed command's) */
    const char *copy = path_in("the-same-text-under-a-name-one-hundred-characters-longer-than-the-first-one-"
                               "so-that-the-header-grows-past-its-padding.txt");
    FILE *f = fopen(copy, "wb");
    CHECK(f && text && fwrite(text, 1, n, f) == n);
    if (f) fclose(f);
    lb_free(text);
    CHECK_FAILS(layered_to(out, &r, 12, 96, copy, NULL), LB_ERR_INVALID, "statistics header is");
    CHECK_OK(layered_to(out, &r, 12, 96, NULL, NULL)); /* and with the first text: resumed */
    CHECK(r.resumed == 2 && same_file(ref, out));
    CHECK(access(jp, F_OK) != 0 && access(dp, F_OK) != 0);
    remove(copy);
    remove(ref);
    remove(out);
}

/* A whole-model snapshot given to the layered pass: refused as the other pass's. */
static void check_pass_mixup(void) {
    const char *out = path_in("w.gguf"), *jp = path_in("w.gguf.partial");
    lb_calib_journal j = {.path = jp, .fingerprint = FP, .every = 1, .stop_after = 2};
    CHECK_FAILS(calibrate_to(out, &j, 8), LB_ERR_INVALID, "stopped after 2 of 8");
    lb_calib_journal r = {.path = jp, .fingerprint = FP, .resume = 1};
    CHECK_FAILS(layered_to(out, &r, 8, 96, NULL, NULL), LB_ERR_INVALID,
                "the whole-model pass's (--whole-model) journal");
    remove(jp);
}

/* (copy of) data with its last 8 bytes set to the FNV-1a of the rest: the body parser reached */
static uint8_t *sealed(const uint8_t *data, size_t n) {
    uint8_t *c = malloc(n ? n : 1);
    if (c && n) memcpy(c, data, n);
    if (c && n >= 8) {
        uint64_t h = lb_fnv1a(c, n - 8, LB_FNV1A_START);
        memcpy(c + n - 8, &h, 8);
    }
    return c;
}

/* A real snapshot (2 blocks of 16 tokens, stopped after 2 layers): parsed;
 * every prefix and every single-byte change, re-sealed, refused or parsed
 * within the ranges the parser checks. */
static void check_layer_snapshot_parser(void) {
    const char *out = path_in("p.gguf"), *jp = path_in("p.gguf.partial");
    lb_calib_stats *ref = NULL;
    CHECK_OK(layered_to(path_in("p-ref.gguf"), NULL, 2, 16, NULL, &ref));
    lb_calib_journal j = {.path = jp, .fingerprint = FP, .every = 1, .stop_after = 2};
    CHECK_FAILS(layered_to(out, &j, 2, 16, NULL, NULL), LB_ERR_INVALID, "stopped after 2 of 5");
    lb_mapped_file mf;
    memset(&mf, 0, sizeof mf);
    CHECK_OK(lb_map_file(jp, &mf));
    if (!ref || !mf.data) return;
    lb_calib_info info = ref->info;
    info.parts = 0; /* the skeleton: counts only */
    lb_calib_stats *s = NULL;
    CHECK_OK(lb_calib_alloc(&info, ref->kv_dim, &s));
    lb_calib_layer_snapshot snap;
    CHECK_OK(lb_calib_layer_snapshot_parse(jp, FP, mf.data, mf.size, s, info.dim, &snap));
    CHECK(snap.done == 2 && snap.data_start > 24 && snap.data_kept > snap.data_start && snap.x);
    CHECK(s && s->in[7].n == info.tokens && s->in[8].n == 0);
    int parsed = 0, odd = 0;
    for (size_t k = 0; k < mf.size; k++) {
        uint8_t *c = sealed(mf.data, k);
        if (c && lb_calib_layer_snapshot_parse(jp, FP, c, k, s, info.dim, &snap) == LB_OK) parsed++;
        free(c);
    }
    CHECK_MSG(parsed == 0, "%d prefixes of a layered snapshot parsed", parsed);
    parsed = 0;
    for (size_t k = 0; k + 8 < mf.size; k++) {
        uint8_t *c = sealed(mf.data, mf.size);
        if (!c) break;
        c[k] ^= 0xA5;
        uint64_t h = lb_fnv1a(c, mf.size - 8, LB_FNV1A_START);
        memcpy(c + mf.size - 8, &h, 8);
        if (lb_calib_layer_snapshot_parse(jp, FP, c, mf.size, s, info.dim, &snap) == LB_OK) {
            parsed++;
            odd += snap.done < 1 || snap.done > 4 || snap.data_start > snap.data_kept;
        }
        free(c);
    }
    CHECK(parsed > 0 && odd == 0); /* a changed float of the stream or a count parses; nothing out of range does */
    lb_unmap_file(&mf);
    lb_calib_stats_free(s);
    lb_calib_stats_free(ref);
    remove(jp);
    remove(path_in("p.gguf.partial.data"));
    remove(path_in("p-ref.gguf"));
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
    check_layered(1, 0); /* the stop's own snapshot */
    check_layered(3, 2);
    check_layered(4, 1); /* the last snapshot there is */
    check_layered_damage();
    check_pass_mixup();
    check_layer_snapshot_parser();
    CHECK(tmpdir_count("") == 2); /* . and ..: every case cleaned up after itself */
    tmpdir_remove();
    return lb_test_finish("test_journal");
}
