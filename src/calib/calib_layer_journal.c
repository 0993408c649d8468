/* The layer-by-layer pass's journal (calib_internal.h; docs/SCALING.md,
 * "Resumable runs"): lb_calibrate_to_file resumed after its last finished
 * layer, writing the bytes a run never interrupted writes.
 *
 * What a finished layer leaves: its statistics, already in the output file
 * (written in layer order by the GGUF writer's fill callbacks), and the
 * residual stream, the next layer's input. So the journal does not copy the
 * statistics: the output's temporary is the journal's data file,
 * <journal>.data, written once; after layer l (when due) the data file is
 * synced and a snapshot records where layers 0..l's bytes end in it and
 * their FNV-1a, and beside that only what is not in the file or not yet
 * final: each finished input's token count and histogram range (the header
 * keys written last, lb_gguf_set_late) and the residual stream, 4 bytes x
 * tokens x dim, rewritten with every snapshot. A resumed run checks the data
 * file against the snapshot, cuts it there (what a killed run wrote after
 * the snapshot is dropped), writes the header again over its start (the same
 * length, checked), passes over the kept layers' tensors reading back the
 * small ones for its summary, and goes on from layer l + 1 with the restored
 * stream: the same arithmetic in the same order, so the same bytes.
 *
 * Snapshot body, after calib_journal.c's framing (magic LBCALLAY, version
 * 1, fingerprint), little-endian: i32 layers done D (1 .. L-1), i32 layers
 * L, u64 data section offset, u64 bytes of the data file that hold layers
 * 0..D-1, u64 FNV-1a of the data file's bytes from the data section to
 * there, i64 tokens, i64 sequences, u32 histogram bins, u32 dim; per input
 * of the D layers (D x 4, layer-major): i64 n, f64 histogram range; u64
 * values (tokens x dim), the residual stream's f32 values; the framing's
 * checksum. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "calib_internal.h"
#include "core/atomic_resume.h"
#include "core/fingerprint.h"

static uint64_t hash_zeros(uint64_t h, uint64_t n) {
    static const uint8_t zeros[256];
    for (; n > 0; n -= n < sizeof zeros ? n : sizeof zeros) h = lb_fnv1a(zeros, n < sizeof zeros ? n : sizeof zeros, h);
    return h;
}

lb_status lb_calib_layer_snapshot_parse(const char *path, const char *fingerprint, const uint8_t *data, size_t size,
                                        lb_calib_stats *s, int dim, lb_calib_layer_snapshot *out) {
    memset(out, 0, sizeof *out);
    lb_calib_snap_reader r;
    lb_status st = lb_calib_snap_check(path, fingerprint, data, size, 1, &r);
    if (st != LB_OK) return st;
    int32_t counts[2];
    uint64_t where[3], values;
    int64_t totals[2];
    uint32_t shape[2];
    int layers = s->info.n_layers;
    if (lb_calib_snap_take(&r, counts, sizeof counts) || lb_calib_snap_take(&r, where, sizeof where) ||
        lb_calib_snap_take(&r, totals, sizeof totals) || lb_calib_snap_take(&r, shape, sizeof shape) ||
        counts[1] != layers || counts[0] < 1 || counts[0] >= layers || where[0] < 24 || where[0] > where[1])
        return lb_fail(LB_ERR_FORMAT, "calibration journal '%s' does not fit this run (%d layers)", path, layers);
    if (totals[0] != s->info.tokens || totals[1] != s->info.sequences || shape[0] != (uint32_t)s->info.hist_bins ||
        shape[1] != (uint32_t)dim)
        return lb_fail(LB_ERR_FORMAT, "calibration journal '%s' holds %lld tokens of %lld sequences, %u bins, dim %u; "
                       "this run has %lld, %lld, %d, %d", path, (long long)totals[0], (long long)totals[1], shape[0],
                       shape[1], (long long)s->info.tokens, (long long)s->info.sequences, s->info.hist_bins, dim);
    for (int i = 0; i < counts[0] * LB_CALIB_N_INPUTS; i++) {
        calib_input *c = &s->in[i];
        if (lb_calib_snap_take(&r, &c->n, 8) || lb_calib_snap_take(&r, &c->hist_range, 8) || c->n < 0 ||
            c->n > s->info.tokens || !isfinite(c->hist_range) || c->hist_range < 0)
            return lb_fail(LB_ERR_FORMAT, "calibration journal '%s': input %d's counts are damaged", path, i);
    }
    uint64_t want = (uint64_t)s->info.tokens * (uint64_t)dim;
    if (lb_calib_snap_take(&r, &values, 8) || values != want || (r.n - r.at) / 4 != want || (r.n - r.at) % 4)
        return lb_fail(LB_ERR_FORMAT, "calibration journal '%s': its residual stream is not %lld tokens x %d", path,
                       (long long)s->info.tokens, dim);
    out->x = r.p + r.at;
    for (uint64_t k = 0; k < want; k++) { /* the observer fails on these: a finished layer never left one */
        float v;
        memcpy(&v, out->x + 4 * k, 4);
        if (!isfinite(v))
            return lb_fail(LB_ERR_FORMAT, "calibration journal '%s': its residual stream has %g", path, (double)v);
    }
    out->done = counts[0];
    out->data_start = where[0];
    out->data_kept = where[1];
    out->data_hash = where[2];
    return LB_OK;
}

/* The data file the snapshot refers to: there, long enough, its kept bytes
 * those the snapshot hashed. Left open in lj->data_fd for the summary. */
static lb_status check_data(lb_calib_layer_journal *lj, const lb_calib_layer_snapshot *snap) {
    const char *jp = lj->j->path, *dp = lj->data_path;
    lj->data_fd = open(dp, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (lj->data_fd < 0 || fstat(lj->data_fd, &sb) != 0)
        return lb_fail(LB_ERR_IO, "cannot open '%s', the statistics the journal '%s' refers to: %s; remove the journal "
                       "to start over", dp, jp, strerror(errno));
    if ((uint64_t)sb.st_size < snap->data_kept)
        return lb_fail(LB_ERR_FORMAT, "'%s' is cut short: %llu bytes, where the journal '%s' has %d layers end at byte "
                       "%llu; remove both to start over", dp, (unsigned long long)sb.st_size, jp, snap->done,
                       (unsigned long long)snap->data_kept);
    static const size_t chunk = 1 << 20;
    uint8_t *buf = lb_alloc(chunk);
    if (!buf) return LB_ERR_NOMEM;
    uint64_t h = LB_FNV1A_START;
    int bad = 0;
    for (uint64_t at = snap->data_start; at < snap->data_kept && !bad;) {
        size_t n = snap->data_kept - at < chunk ? (size_t)(snap->data_kept - at) : chunk;
        bad = lb_read_at(lj->data_fd, buf, n, at);
        h = lb_fnv1a(buf, n, h);
        at += n;
    }
    lb_free(buf);
    if (bad) return lb_fail(LB_ERR_IO, "cannot read '%s': %s", dp, strerror(errno));
    if (h != snap->data_hash)
        return lb_fail(LB_ERR_FORMAT, "'%s' is not what the journal '%s' recorded (the FNV-1a of its bytes %llu..%llu, "
                       "%d layers' statistics, differs: damaged?); remove both to start over", dp, jp,
                       (unsigned long long)snap->data_start, (unsigned long long)snap->data_kept, snap->done);
    return LB_OK;
}

lb_status lb_calib_layer_journal_begin(lb_calib_layer_journal *lj, lb_calib_journal *j, lb_calib_stats *s,
                                       lb_calib_cache *c, int dim) {
    memset(lj, 0, sizeof *lj);
    lj->data_fd = -1;
    lj->j = j;
    if (!j) return LB_OK;
    lj->last_save = lb_now();
    lb_mapped_file mf;
    int found;
    lb_status st = lb_calib_journal_find(j, s->info.n_layers, &mf, &found);
    size_t n = j->path ? strlen(j->path) + 6 : 0;
    if (st == LB_OK && !(lj->data_path = lb_alloc(n))) st = LB_ERR_NOMEM;
    if (st == LB_OK) snprintf(lj->data_path, n, "%s.data", j->path);
    if (st != LB_OK || !found) {
        if (found) lb_unmap_file(&mf);
        return st; /* none: from the first layer */
    }
    lb_calib_layer_snapshot snap;
    st = lb_calib_layer_snapshot_parse(j->path, j->fingerprint, mf.data, mf.size, s, dim, &snap);
    if (st == LB_OK) st = check_data(lj, &snap);
    if (st == LB_OK) memcpy(c->x, snap.x, (size_t)s->info.tokens * (size_t)dim * sizeof(float));
    lb_unmap_file(&mf);
    if (st != LB_OK) return st;
    lj->kept = snap.done;
    lj->data_start = snap.data_start;
    lj->data_kept = lj->hashed_to = snap.data_kept;
    lj->hash = snap.data_hash;
    lj->saved = 1;
    j->resumed = j->done = snap.done;
    return LB_OK;
}

static lb_status save(lb_calib_layer_journal *lj, const lb_calib_stats *s, const lb_calib_cache *c, int dim, int done,
                      uint64_t kept) {
    lb_calib_snap_writer w;
    lb_status st = lb_calib_snap_open(&w, lj->j->path, 1, lj->j->fingerprint);
    if (st != LB_OK) return st;
    int32_t counts[2] = {done, s->info.n_layers};
    uint64_t where[3] = {lj->data_start, kept, lj->hash}, values = (uint64_t)c->tokens * (uint64_t)dim;
    int64_t totals[2] = {s->info.tokens, s->info.sequences};
    uint32_t shape[2] = {(uint32_t)s->info.hist_bins, (uint32_t)dim};
    lb_calib_snap_put(&w, counts, sizeof counts);
    lb_calib_snap_put(&w, where, sizeof where);
    lb_calib_snap_put(&w, totals, sizeof totals);
    lb_calib_snap_put(&w, shape, sizeof shape);
    for (int i = 0; i < done * LB_CALIB_N_INPUTS; i++) {
        lb_calib_snap_put(&w, &s->in[i].n, 8);
        lb_calib_snap_put(&w, &s->in[i].hist_range, 8);
    }
    lb_calib_snap_put(&w, &values, 8);
    lb_calib_snap_put(&w, c->x, (size_t)values * sizeof(float));
    return lb_calib_snap_commit(&w, lj->j->path);
}

lb_status lb_calib_layer_journal_next(lb_calib_layer_journal *lj, const lb_calib_stats *s, const lb_calib_cache *c,
                                      int dim, lb_atomic_file *f, int layer) {
    lb_calib_journal *j = lj->j;
    if (!j) return LB_OK;
    if (layer == 0) { /* a run from the start: the data section begins here */
        lj->data_start = lj->hashed_to = f->written;
        lj->hash = LB_FNV1A_START;
        return LB_OK;
    }
    if (layer == lj->kept) /* the first layer after the journaled ones: where the snapshot said */
        return f->written == lj->data_kept
                   ? LB_OK
                   : lb_fail(LB_ERR_INVALID, "calibration journal '%s': layer %d's statistics would start at byte %llu "
                             "of '%s', the journal says %llu", j->path, layer, (unsigned long long)f->written,
                             lj->data_path, (unsigned long long)lj->data_kept);
    lj->hash = hash_zeros(lj->hash, f->written - lj->hashed_to); /* the last tensor's padding */
    lj->hashed_to = f->written;
    int stop;
    if (!lb_calib_journal_due(j, layer, lj->last_save, &stop)) return LB_OK;
    /* the bytes on the disk before the snapshot that refers to them, and
     * from now on kept when the process dies */
    lb_atomic_persist(f);
    lb_status st = lb_atomic_sync(f);
    if (st == LB_OK) st = save(lj, s, c, dim, layer, f->written);
    lj->last_save = lb_now();
    if (st != LB_OK) return st;
    lj->saved = 1;
    return stop ? lb_calib_journal_stop(j, "layers") : LB_OK;
}

lb_status lb_calib_layer_journal_keep(lb_calib_layer_journal *lj, lb_atomic_file *f, void *dst, size_t n) {
    const char *jp = lj->j->path;
    if (f->written < lj->data_start || f->written + n > lj->data_kept)
        return lb_fail(LB_ERR_INVALID, "calibration journal '%s': a kept tensor lies outside its layers' bytes "
                       "%llu..%llu", jp, (unsigned long long)lj->data_start, (unsigned long long)lj->data_kept);
    if (dst && lb_read_at(lj->data_fd, dst, n, f->written) != 0)
        return lb_fail(LB_ERR_IO, "cannot read '%s': %s", lj->data_path, strerror(errno));
    lb_atomic_skip(f, n);
    return f->err;
}

void lb_calib_layer_journal_put(lb_calib_layer_journal *lj, lb_atomic_file *f, const void *p, size_t n) {
    if (lj->j && f->err == LB_OK) {
        lj->hash = lb_fnv1a(p, n, hash_zeros(lj->hash, f->written - lj->hashed_to));
        lj->hashed_to = f->written + n;
    }
    lb_atomic_write(f, p, n);
}

lb_status lb_calib_layer_journal_open(lb_calib_layer_journal *lj, lb_atomic_file *f, const char *path,
                                      const lb_gguf_writer *w) {
    if (!lj->j) return lb_atomic_open(f, path);
    /* the header is written again over the kept file's: it must end where
     * the kept one did, or it would overwrite (and the tensors not meet) the
     * kept statistics; lowbit.calib.source holds the --text path */
    uint64_t start = 0;
    lb_status st = lj->kept ? lb_gguf_writer_data_offset(w, &start) : LB_OK;
    if (st == LB_OK && lj->kept && start != lj->data_start)
        st = lb_fail(LB_ERR_INVALID, "calibration journal '%s': this run's statistics header is %llu bytes, the "
                     "interrupted run's %llu (another --text path?): rerun that command, or remove the journal to "
                     "start over", lj->j->path, (unsigned long long)start, (unsigned long long)lj->data_start);
    return st == LB_OK ? lb_atomic_open_resumable(f, path, lj->data_path, lj->data_kept) : st;
}

lb_status lb_calib_layer_journal_end(lb_calib_layer_journal *lj, lb_atomic_file *f, lb_status st) {
    if (f->tmp_path) { /* opened */
        if (st == LB_OK) st = lb_atomic_commit(f);
        else if (lj->saved) lb_atomic_close_kept(f);
        else lb_atomic_abort(f);
    }
    /* the statistics are in place: the journal has served (the CLI warns if it stays) */
    if (st == LB_OK && lj->j) {
        lj->j->done = lj->j->total;
        (void)unlink(lj->j->path);
    }
    if (lj->data_fd >= 0) close(lj->data_fd);
    lb_free(lj->data_path);
    memset(lj, 0, sizeof *lj);
    lj->data_fd = -1;
    return st;
}
