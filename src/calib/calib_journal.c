/* Resumable calibration (lowbit/calib.h, lb_calib_journal; docs/SCALING.md,
 * "Resumable runs"): the collection's accumulators after a finished block,
 * saved atomically (a temporary renamed over the last snapshot, so a run
 * killed while saving keeps the one before), and restored to continue from
 * the next block. What is saved is the collection's exact state, in the
 * doubles and counts it accumulates in: the blocks after it add to the same
 * sums in the same order, so the statistics come out byte for byte as an
 * uninterrupted run's. The means are computed from the sums at the end
 * (finish), never from a snapshot.
 *
 * The framing (here, shared with the layer-by-layer pass's snapshot,
 * calib_layer_journal.c): an 8-byte magic, u32 version, u32 fingerprint
 * bytes F, F bytes of fingerprint text, the body, u64 FNV-1a of every byte
 * before it. A snapshot of the other pass is refused as such, naming the
 * flag that resumes it.
 *
 * The whole-model pass's file, little-endian:
 *   magic "LBCALJNL", u32 version (2), u32 fingerprint bytes F, F bytes of
 *   fingerprint text, i32 blocks done, i32 blocks in the run, i64 tokens
 *   done, i64 sequences, u32 inputs (layers x 4), u32 histogram bins; per
 *   input: i32 cols, i64 rows seen, f64 histogram range, then the arrays it
 *   has: X^T X's (cols x cols f64, upper triangle as accumulated: the
 *   current shard's partial), max |x| (cols f32), the histogram (bins i64),
 *   the collector's sums of x and |x| (cols f64 each: the current shard's
 *   partials), the shards' folded totals of x and |x| (cols f64 each), i32
 *   1 when the folded X^T X total follows (cols x cols f64, upper triangle)
 *   or 0 (no shard folded yet, or no X^T X); then u64 FNV-1a of every byte
 *   before it.
 *
 * The statistic is defined over shards of sequences (calib_internal.h,
 * calib_shard.c): each shard's partial sums from zero, added to the totals
 * in shard order. A snapshot after any block holds both, so the resumed run
 * continues the current shard's partials and folds them where an
 * uninterrupted run does. Version 2; version 1 (before the shards) is
 * refused. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "calib_internal.h"
#include "core/fingerprint.h"

#define CALIB_JOURNAL_VERSION 2u
#define LAYER_JOURNAL_VERSION 1u /* calib_layer_journal.c's */

/* ---- the framing both passes' snapshots share ---------------------------- */

static const char *const snap_magic[2] = {"LBCALJNL", "LBCALLAY"};
static const uint32_t snap_version[2] = {CALIB_JOURNAL_VERSION, LAYER_JOURNAL_VERSION};
static const char *const snap_pass[2] = {"the whole-model pass's (--whole-model)", "the layer-by-layer pass's"};

lb_status lb_calib_snap_open(lb_calib_snap_writer *w, const char *path, int layered, const char *fingerprint) {
    w->h = LB_FNV1A_START;
    lb_status st = lb_atomic_open(&w->f, path);
    if (st != LB_OK) return lb_fail_context(st, "calibration journal");
    uint32_t v = snap_version[layered], f = (uint32_t)strlen(fingerprint);
    lb_calib_snap_put(w, snap_magic[layered], 8);
    lb_calib_snap_put(w, &v, 4);
    lb_calib_snap_put(w, &f, 4);
    lb_calib_snap_put(w, fingerprint, f);
    return LB_OK;
}

void lb_calib_snap_put(lb_calib_snap_writer *w, const void *p, size_t n) {
    if (!n) return;
    lb_atomic_write(&w->f, p, n);
    w->h = lb_fnv1a(p, n, w->h);
}

lb_status lb_calib_snap_commit(lb_calib_snap_writer *w, const char *path) {
    uint64_t h = w->h;
    lb_atomic_write(&w->f, &h, 8);
    lb_status st = lb_atomic_commit(&w->f); /* fsync, then renamed over the last snapshot */
    return st == LB_OK ? LB_OK : lb_fail_context(st, "calibration journal '%s'", path);
}

int lb_calib_snap_take(lb_calib_snap_reader *r, void *out, size_t n) {
    if (n > r->n - r->at) return -1;
    memcpy(out, r->p + r->at, n);
    r->at += n;
    return 0;
}

lb_status lb_calib_snap_check(const char *path, const char *fingerprint, const uint8_t *data, size_t size, int layered,
                              lb_calib_snap_reader *r) {
    uint64_t h;
    if (size >= 8 && memcmp(data, snap_magic[!layered], 8) == 0)
        return lb_fail(LB_ERR_INVALID, "'%s' is %s journal, not this command's: resume it %s, or remove it to start "
                       "over", path, snap_pass[!layered], layered ? "with --whole-model" : "without --whole-model");
    if (size < 24 || memcmp(data, snap_magic[layered], 8) != 0)
        return lb_fail(LB_ERR_FORMAT, "'%s' is not a lowbit calibration journal (or it is cut short): remove it to "
                       "start over", path);
    memcpy(&h, data + size - 8, 8);
    if (lb_fnv1a(data, size - 8, LB_FNV1A_START) != h)
        return lb_fail(LB_ERR_FORMAT, "calibration journal '%s' fails its checksum (damaged or cut short): remove "
                       "it to start over", path);
    *r = (lb_calib_snap_reader){.p = data, .n = size - 8, .at = 8};
    uint32_t v, f;
    if (lb_calib_snap_take(r, &v, 4) || lb_calib_snap_take(r, &f, 4) || v != snap_version[layered] || f > r->n - r->at)
        return lb_fail(LB_ERR_FORMAT, "calibration journal '%s': version or header not this lowbit's: remove it to "
                       "start over", path);
    const char *text = (const char *)data + r->at;
    size_t want = strlen(fingerprint);
    if (f != want || memcmp(text, fingerprint, want) != 0 || memchr(text, 0, f)) {
        char *copy = lb_alloc((size_t)f + 1), diff[600];
        if (!copy) return LB_ERR_NOMEM;
        memcpy(copy, text, f);
        copy[f] = 0;
        lb_fingerprint_difference(copy, fingerprint, diff, sizeof diff);
        lb_free(copy);
        return lb_fail(LB_ERR_INVALID, "calibration journal '%s' was written by another run (other model, text or "
                       "options): %s; rerun that command, or remove the journal to start over", path, diff);
    }
    r->at += f;
    return LB_OK;
}

lb_status lb_calib_journal_find(lb_calib_journal *j, int total, lb_mapped_file *mf, int *found) {
    *found = 0;
    j->total = total;
    j->resumed = j->done = j->stopped = 0;
    if (!j->path || !j->fingerprint) return lb_fail(LB_ERR_INVALID, "calibration journal: no path or fingerprint");
    struct stat sb;
    if (stat(j->path, &sb) != 0) return LB_OK; /* nothing to resume: from the start */
    if (!j->resume)
        return lb_fail(LB_ERR_INVALID, "'%s' exists: the journal of an interrupted calibration; resume it (the same "
                       "command with --resume) or remove it to start over", j->path);
    lb_status st = lb_map_file(j->path, mf);
    if (st != LB_OK) return lb_fail_context(st, "calibration journal");
    *found = 1;
    return LB_OK;
}

int lb_calib_journal_due(lb_calib_journal *j, int done, double last_save, int *stop) {
    j->done = done;
    *stop = j->stop_after > 0 && done >= j->stop_after && done < j->total;
    int due = j->every > 0 ? done % j->every == 0 : lb_now() - last_save >= 30.0;
    return done < j->total && (*stop || due); /* the last one: the statistics are the result */
}

lb_status lb_calib_journal_stop(lb_calib_journal *j, const char *units) {
    j->stopped = 1;
    return lb_fail(LB_ERR_INVALID, "stopped after %d of %d %s, as asked (the journal '%s' holds them)", j->done,
                   j->total, units, j->path);
}

/* ---- the whole-model pass's snapshot -------------------------------------- */

static lb_status save(lb_calib_journal *j, const lb_calib_stats *s, const lb_calib_collector *k, int blocks_done,
                      int64_t tokens) {
    lb_calib_snap_writer w;
    lb_status st = lb_calib_snap_open(&w, j->path, 0, j->fingerprint);
    if (st != LB_OK) return st;
    uint32_t n_in = (uint32_t)(s->info.n_layers * LB_CALIB_N_INPUTS), bins = (uint32_t)s->info.hist_bins;
    int32_t counts[2] = {blocks_done, j->total};
    int64_t totals[2] = {tokens, s->info.sequences};
    lb_calib_snap_put(&w, counts, sizeof counts);
    lb_calib_snap_put(&w, totals, sizeof totals);
    lb_calib_snap_put(&w, &n_in, 4);
    lb_calib_snap_put(&w, &bins, 4);
    for (uint32_t i = 0; i < n_in; i++) {
        const calib_input *c = &s->in[i];
        size_t cols = (size_t)c->cols;
        int32_t c32 = c->cols;
        lb_calib_snap_put(&w, &c32, 4);
        lb_calib_snap_put(&w, &c->n, 8);
        lb_calib_snap_put(&w, &c->hist_range, 8);
        if (c->xtx) lb_calib_snap_put(&w, c->xtx, cols * cols * sizeof(double));
        if (c->max_abs_x) lb_calib_snap_put(&w, c->max_abs_x, cols * sizeof(float));
        if (c->hist) lb_calib_snap_put(&w, c->hist, (size_t)bins * sizeof(int64_t));
        lb_calib_snap_put(&w, k->sum + k->offset[i], cols * sizeof(double));
        lb_calib_snap_put(&w, k->sum_abs + k->offset[i], cols * sizeof(double));
        lb_calib_snap_put(&w, k->acc_sum + k->offset[i], cols * sizeof(double));
        lb_calib_snap_put(&w, k->acc_sum_abs + k->offset[i], cols * sizeof(double));
        int32_t has_acc = c->xtx && k->acc_xtx[i] ? 1 : 0;
        lb_calib_snap_put(&w, &has_acc, 4);
        if (has_acc) lb_calib_snap_put(&w, k->acc_xtx[i], cols * cols * sizeof(double));
    }
    return lb_calib_snap_commit(&w, j->path);
}

lb_status lb_calib_journal_load(const lb_calib_journal *j, const uint8_t *data, size_t size, lb_calib_stats *s,
                                lb_calib_collector *k, int *blocks_done, int64_t *tokens) {
    lb_calib_snap_reader r;
    lb_status st = lb_calib_snap_check(j->path, j->fingerprint, data, size, 0, &r);
    if (st != LB_OK) return st;
    int32_t counts[2];
    int64_t totals[2];
    uint32_t n_in, bins;
    if (lb_calib_snap_take(&r, counts, sizeof counts) || lb_calib_snap_take(&r, totals, sizeof totals) ||
        lb_calib_snap_take(&r, &n_in, 4) || lb_calib_snap_take(&r, &bins, 4) ||
        n_in != (uint32_t)(s->info.n_layers * LB_CALIB_N_INPUTS) || bins != (uint32_t)s->info.hist_bins ||
        counts[1] != j->total || counts[0] < 1 || counts[0] > j->total || totals[0] < 0 || totals[1] < 0)
        return lb_fail(LB_ERR_FORMAT, "calibration journal '%s' does not fit this run's statistics", j->path);
    for (uint32_t i = 0; i < n_in; i++) {
        calib_input *c = &s->in[i];
        size_t cols = (size_t)c->cols;
        int32_t c32;
        int bad = lb_calib_snap_take(&r, &c32, 4) || c32 != c->cols || lb_calib_snap_take(&r, &c->n, 8) ||
                  lb_calib_snap_take(&r, &c->hist_range, 8) ||
                  (c->xtx && lb_calib_snap_take(&r, c->xtx, cols * cols * sizeof(double))) ||
                  (c->max_abs_x && lb_calib_snap_take(&r, c->max_abs_x, cols * sizeof(float))) ||
                  (c->hist && lb_calib_snap_take(&r, c->hist, (size_t)bins * sizeof(int64_t))) ||
                  lb_calib_snap_take(&r, k->sum + k->offset[i], cols * sizeof(double)) ||
                  lb_calib_snap_take(&r, k->sum_abs + k->offset[i], cols * sizeof(double)) ||
                  lb_calib_snap_take(&r, k->acc_sum + k->offset[i], cols * sizeof(double)) ||
                  lb_calib_snap_take(&r, k->acc_sum_abs + k->offset[i], cols * sizeof(double));
        int32_t has_acc = 0;
        bad = bad || lb_calib_snap_take(&r, &has_acc, 4) || has_acc < 0 || has_acc > 1 || (has_acc && !c->xtx);
        if (!bad && has_acc) {
            if (!k->acc_xtx[i] && !(k->acc_xtx[i] = lb_calloc(cols * cols, sizeof(double))))
                return lb_fail(LB_ERR_NOMEM, "calibration journal: out of memory for the shards' X^T X");
            bad = lb_calib_snap_take(&r, k->acc_xtx[i], cols * cols * sizeof(double));
        }
        if (bad || c->n < 0)
            return lb_fail(LB_ERR_FORMAT, "calibration journal '%s' does not fit this run's statistics", j->path);
    }
    if (r.at != r.n) return lb_fail(LB_ERR_FORMAT, "calibration journal '%s' has bytes after its data", j->path);
    *blocks_done = counts[0];
    *tokens = totals[0];
    s->info.sequences = totals[1];
    return LB_OK;
}

lb_status lb_calib_journal_begin(lb_calib_journal *j, const lb_calib_prep *p, lb_calib_stats *s,
                                 lb_calib_collector *k, int *first, int64_t *tokens) {
    *first = p->first;
    *tokens = 0;
    if (!j) return LB_OK;
    lb_mapped_file mf;
    int found;
    lb_status st = lb_calib_journal_find(j, p->end - p->first, &mf, &found);
    if (st != LB_OK || !found) return st; /* none: from the first block */
    int done = 0;
    st = lb_calib_journal_load(j, mf.data, mf.size, s, k, &done, tokens);
    lb_unmap_file(&mf);
    if (st != LB_OK) {
        /* the accumulators may be half-restored: start them from zero again */
        for (int i = 0; i < s->info.n_layers * LB_CALIB_N_INPUTS; i++) {
            calib_input *c = &s->in[i];
            size_t cols = (size_t)c->cols;
            c->n = 0;
            c->hist_range = 0;
            if (c->xtx) memset(c->xtx, 0, cols * cols * sizeof(double));
            if (c->max_abs_x) memset(c->max_abs_x, 0, cols * sizeof(float));
            if (c->hist) memset(c->hist, 0, (size_t)s->info.hist_bins * sizeof(int64_t));
            memset(k->sum + k->offset[i], 0, cols * sizeof(double));
            memset(k->sum_abs + k->offset[i], 0, cols * sizeof(double));
            memset(k->acc_sum + k->offset[i], 0, cols * sizeof(double));
            memset(k->acc_sum_abs + k->offset[i], 0, cols * sizeof(double));
            lb_free(k->acc_xtx[i]);
            k->acc_xtx[i] = NULL;
        }
        s->info.sequences = 0;
        *tokens = 0;
        return st;
    }
    j->resumed = j->done = done;
    *first = p->first + done;
    return LB_OK;
}

lb_status lb_calib_journal_block(lb_calib_journal *j, const lb_calib_prep *p, const lb_calib_stats *s,
                                 const lb_calib_collector *k, int next, int64_t tokens, double *last_save) {
    if (!j) return LB_OK;
    int stop;
    if (!lb_calib_journal_due(j, next - p->first, *last_save, &stop)) return LB_OK;
    lb_status st = save(j, s, k, j->done, tokens);
    *last_save = lb_now();
    if (st != LB_OK) return st;
    return stop ? lb_calib_journal_stop(j, "calibration blocks") : LB_OK;
}
