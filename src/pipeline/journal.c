/* Resumable quantization (issue 12 item 4; docs/SCALING.md, "Resumable
 * runs"): a journal of the finished tensors of one run, appended and
 * flushed to disk after each tensor, so an interrupted run continues from
 * its last finished tensor and writes the same bytes as a run never
 * interrupted. Every driver (quantize_model.c, quantize_stream.c,
 * quantize_sequential.c) quantizes through lb_journal_entry, which returns a
 * journaled tensor as it was quantized, or quantizes it and journals it.
 *
 * File layout, little-endian:
 *   header: magic "LBJOURNL", u32 version (1), u32 fingerprint bytes F,
 *           F bytes of fingerprint text, u64 FNV-1a of those F bytes
 *   records, one per finished tensor, in the order they finished:
 *           magic "LBJT", u32 0, u64 payload bytes P, P bytes of payload,
 *           u64 FNV-1a of the payload
 *   payload: u32 name bytes, name; u32 spec bytes, spec text (lb_qspec_format);
 *           i64 rows, cols; u64 nbytes, the packed bytes;
 *           f64 rel_error, proxy_loss, proxy_loss_rtn, seconds; u32 measured;
 *           u32 sizeof(lb_method_report), its bytes;
 *           the extras (lb_quant_extras): i64 nnz, and when nnz > 0 the CSR
 *           (rows + 1 i32, nnz i32, nnz f32); u32 flags (1 bias, 2 input
 *           signs, 4 output signs) and those arrays (rows, cols, rows f32);
 *           i32 adapter rank, and when > 0: f32 alpha, A (rank x cols f32),
 *           B (rows x rank f32)
 * A record cut short or failing its checksum (a run killed mid-write, a
 * damaged file) is dropped with everything after it, and said so
 * (lb_journal_note): those tensors are quantized again. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fingerprint.h"
#include "io/json.h"
#include "pipeline_internal.h"
#include "pipeline/slots.h"

#define JOURNAL_VERSION 1u
#define JOURNAL_MAX_FINGERPRINT (64u << 20)

typedef struct {
    char name[96];
    uint64_t off, len; /* the payload's offset in the file and its bytes */
} journal_rec;

struct lb_journal {
    int fd;
    char path[4096];
    journal_rec *recs;
    int n, cap;
    int stop_after, stopped; /* 0: never */
    double synced;           /* lb_now() of the last fdatasync */
    char note[512];
};

uint64_t lb_journal_hash(const void *data, size_t n, uint64_t h) { return lb_fnv1a(data, n, h); }
#define HASH0 LB_FNV1A_START

/* lb_alloc's counterpart of realloc: old's first n_old bytes in a new block (old freed), NULL on failure (old kept) */
static void *grow(void *old, size_t n_old, size_t n_new) {
    void *p = lb_alloc(n_new);
    if (!p) return NULL;
    if (n_old) memcpy(p, old, n_old);
    lb_free(old);
    return p;
}

static int write_all(int fd, const void *buf, size_t n) {
    const uint8_t *p = buf;
    while (n) {
        ssize_t r = write(fd, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* A payload's name, read without trusting it: 0 when it does not fit. */
static int payload_name(const uint8_t *p, uint64_t len, char *name, size_t n) {
    uint32_t k;
    if (len < 4) return 0;
    memcpy(&k, p, 4);
    if (k == 0 || k >= n || 4 + (uint64_t)k > len) return 0;
    memcpy(name, p + 4, k);
    name[k] = 0;
    return memchr(name, 0, k) == NULL;
}

/* Reads and checks the records from off on; drops the first bad one and all after it. */
static lb_status scan_records(lb_journal *j, uint64_t off, uint64_t size) {
    int dropped = 0;
    uint8_t *buf = NULL;
    size_t cap = 0;
    lb_status st = LB_OK;
    while (off < size) {
        uint8_t head[16];
        uint64_t len, sum;
        if (size - off < 24 || lb_read_at(j->fd, head, 16, off) || memcmp(head, "LBJT", 4) != 0) {
            dropped = 1;
            break;
        }
        memcpy(&len, head + 8, 8);
        if (len > size - off - 24) {
            dropped = 1;
            break;
        }
        if (len > cap) {
            uint8_t *nb = grow(buf, 0, (size_t)len);
            if (!nb) {
                st = LB_ERR_NOMEM;
                break;
            }
            buf = nb;
            cap = (size_t)len;
        }
        char name[96];
        if (lb_read_at(j->fd, buf, (size_t)len, off + 16) || lb_read_at(j->fd, &sum, 8, off + 16 + len) ||
            lb_journal_hash(buf, (size_t)len, HASH0) != sum || !payload_name(buf, len, name, sizeof name)) {
            dropped = 1;
            break;
        }
        if (j->n == j->cap) {
            int nc = j->cap ? 2 * j->cap : 64;
            journal_rec *nr = grow(j->recs, (size_t)j->n * sizeof *nr, (size_t)nc * sizeof *nr);
            if (!nr) {
                st = LB_ERR_NOMEM;
                break;
            }
            j->recs = nr;
            j->cap = nc;
        }
        journal_rec *r = &j->recs[j->n++];
        snprintf(r->name, sizeof r->name, "%s", name);
        r->off = off + 16;
        r->len = len;
        off += 24 + len;
    }
    lb_free(buf);
    if (st != LB_OK) return st;
    if (dropped) {
        snprintf(j->note, sizeof j->note,
                 "the journal's record after %d finished tensors is cut short or damaged (a run killed while "
                 "writing it?): it and the %llu bytes after it are dropped, and those tensors quantized again",
                 j->n, (unsigned long long)(size - off));
        if (ftruncate(j->fd, (off_t)off) != 0)
            return lb_fail(LB_ERR_IO, "journal '%s': cannot drop its damaged tail: %s", j->path, strerror(errno));
    }
    if (lseek(j->fd, (off_t)off, SEEK_SET) < 0) return lb_fail(LB_ERR_IO, "journal '%s': %s", j->path, strerror(errno));
    return LB_OK;
}

/* The header goes to PATH.new, renamed to PATH once complete: a run killed
 * before that leaves no journal, never one without its fingerprint. */
static lb_status create_new(lb_journal *j, const char *fingerprint) {
    char tmp[sizeof j->path + 8];
    snprintf(tmp, sizeof tmp, "%s.new", j->path);
    j->fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (j->fd < 0) return lb_fail(LB_ERR_IO, "cannot create the journal '%s': %s", tmp, strerror(errno));
    uint32_t v = JOURNAL_VERSION, f = (uint32_t)strlen(fingerprint);
    uint64_t h = lb_journal_hash(fingerprint, f, HASH0);
    if (write_all(j->fd, "LBJOURNL", 8) || write_all(j->fd, &v, 4) || write_all(j->fd, &f, 4) ||
        write_all(j->fd, fingerprint, f) || write_all(j->fd, &h, 8) || fdatasync(j->fd) != 0 || rename(tmp, j->path) != 0) {
        lb_status st = lb_fail(LB_ERR_IO, "cannot write the journal '%s': %s", j->path, strerror(errno));
        unlink(tmp);
        return st;
    }
    return LB_OK;
}

static lb_status open_existing(lb_journal *j, const char *fingerprint) {
    j->fd = open(j->path, O_RDWR | O_CLOEXEC);
    if (j->fd < 0) return lb_fail(LB_ERR_IO, "cannot open the journal '%s': %s", j->path, strerror(errno));
    struct stat sb;
    if (fstat(j->fd, &sb) != 0) return lb_fail(LB_ERR_IO, "journal '%s': %s", j->path, strerror(errno));
    uint64_t size = (uint64_t)sb.st_size;
    uint8_t head[16];
    uint32_t v, f;
    if (size < 24 || lb_read_at(j->fd, head, 16, 0) || memcmp(head, "LBJOURNL", 8) != 0)
        return lb_fail(LB_ERR_FORMAT, "'%s' is not a lowbit journal (or its header is cut short): remove it to start "
                       "over", j->path);
    memcpy(&v, head + 8, 4);
    memcpy(&f, head + 12, 4);
    if (v != JOURNAL_VERSION)
        return lb_fail(LB_ERR_FORMAT, "journal '%s' is of version %u, this lowbit writes %u: remove it to start over",
                       j->path, v, JOURNAL_VERSION);
    if (f > JOURNAL_MAX_FINGERPRINT || (uint64_t)f + 24 > size)
        return lb_fail(LB_ERR_FORMAT, "journal '%s': its header is cut short or damaged: remove it to start over",
                       j->path);
    char *text = lb_alloc((size_t)f + 1);
    if (!text) return LB_ERR_NOMEM;
    uint64_t h;
    if (lb_read_at(j->fd, text, f, 16) || lb_read_at(j->fd, &h, 8, 16 + (uint64_t)f) || lb_journal_hash(text, f, HASH0) != h) {
        lb_free(text);
        return lb_fail(LB_ERR_FORMAT, "journal '%s': its header fails its checksum: remove it to start over", j->path);
    }
    text[f] = 0;
    if (strlen(text) != f || strcmp(text, fingerprint) != 0) {
        char diff[600];
        lb_fingerprint_difference(text, fingerprint, diff, sizeof diff);
        lb_free(text);
        return lb_fail(LB_ERR_INVALID, "journal '%s' was written by another run (other input, plan, options or "
                       "statistics): %s; rerun that command, or remove the journal to start over", j->path, diff);
    }
    lb_free(text);
    return scan_records(j, 24 + (uint64_t)f, size);
}

lb_status lb_journal_open(const char *path, const char *fingerprint, int resume, lb_journal **out) {
    *out = NULL;
    if (!path || !fingerprint) return lb_fail(LB_ERR_INVALID, "lb_journal_open: NULL path or fingerprint");
    lb_journal *j = lb_calloc(1, sizeof *j);
    if (!j) return LB_ERR_NOMEM;
    j->fd = -1;
    j->synced = lb_now();
    if (strlen(path) >= sizeof j->path) {
        lb_free(j);
        return lb_fail(LB_ERR_INVALID, "journal path too long");
    }
    snprintf(j->path, sizeof j->path, "%s", path);
    struct stat sb;
    int exists = stat(path, &sb) == 0;
    lb_status st;
    if (exists && !resume)
        st = lb_fail(LB_ERR_INVALID, "'%s' exists: the journal of an interrupted run; resume it (the same command "
                     "with --resume) or remove it to start over", path);
    else st = exists ? open_existing(j, fingerprint) : create_new(j, fingerprint);
    if (st != LB_OK) {
        if (j->fd >= 0) close(j->fd);
        if (!exists && j->fd >= 0) unlink(path);
        lb_free(j->recs);
        lb_free(j);
        return st;
    }
    *out = j;
    return LB_OK;
}

int lb_journal_done(const lb_journal *j) { return j ? j->n : 0; }
const char *lb_journal_note(const lb_journal *j) { return j ? j->note : ""; }
void lb_journal_set_stop(lb_journal *j, int after) {
    if (j) j->stop_after = after;
}
int lb_journal_stopped(const lb_journal *j) { return j ? j->stopped : 0; }

lb_status lb_journal_close(lb_journal *j, int remove_file) {
    if (!j) return LB_OK;
    lb_status st = LB_OK;
    if (j->fd >= 0) {
        if (!remove_file) (void)fdatasync(j->fd);
        close(j->fd);
    }
    if (remove_file && unlink(j->path) != 0 && errno != ENOENT)
        st = lb_fail(LB_ERR_IO, "cannot remove the journal '%s': %s", j->path, strerror(errno));
    lb_free(j->recs);
    lb_free(j);
    return st;
}

/* ---- records ------------------------------------------------------------ */

/* records are built in the library's growable buffer (io/json.h's
 * lb_json_buf: bytes of any value, a failed allocation kept in .failed) */
static void put(lb_json_buf *b, const void *src, size_t n) { lb_json_raw(b, src, n); }
static void put_u32(lb_json_buf *b, uint32_t v) { put(b, &v, 4); }
static void put_i64(lb_json_buf *b, int64_t v) { put(b, &v, 8); }
static void put_f64(lb_json_buf *b, double v) { put(b, &v, 8); }
static void put_text(lb_json_buf *b, const char *s) {
    put_u32(b, (uint32_t)strlen(s));
    put(b, s, strlen(s));
}

static lb_status journal_append(lb_journal *j, const lb_tensor *t, const lb_tensor_report *rec, int measured,
                                const lb_quant_extras *x) {
    lb_json_buf b = {0};
    char spec[64];
    lb_qspec_format(&t->spec, spec, sizeof spec);
    put_text(&b, t->name);
    put_text(&b, spec);
    put_i64(&b, t->rows);
    put_i64(&b, t->cols);
    put_i64(&b, (int64_t)t->nbytes);
    put(&b, t->data, t->nbytes);
    put_f64(&b, rec->rel_error);
    put_f64(&b, rec->proxy_loss);
    put_f64(&b, rec->proxy_loss_rtn);
    put_f64(&b, rec->seconds);
    put_u32(&b, (uint32_t)measured);
    put_u32(&b, (uint32_t)sizeof rec->method);
    put(&b, &rec->method, sizeof rec->method);
    put_i64(&b, x->nnz);
    if (x->nnz) {
        put(&b, x->row_ptr, (size_t)(t->rows + 1) * 4);
        put(&b, x->col_idx, (size_t)x->nnz * 4);
        put(&b, x->values, (size_t)x->nnz * 4);
    }
    put_u32(&b, (x->bias ? 1u : 0u) | (x->in_signs ? 2u : 0u) | (x->out_signs ? 4u : 0u));
    if (x->bias) put(&b, x->bias, (size_t)t->rows * 4);
    if (x->in_signs) put(&b, x->in_signs, (size_t)t->cols * 4);
    if (x->out_signs) put(&b, x->out_signs, (size_t)t->rows * 4);
    put_u32(&b, (uint32_t)x->adapter_rank);
    if (x->adapter_rank) {
        put(&b, &x->adapter_alpha, 4);
        put(&b, x->adapter_a, (size_t)x->adapter_rank * (size_t)t->cols * 4);
        put(&b, x->adapter_b, (size_t)x->adapter_rank * (size_t)t->rows * 4);
    }
    if (b.failed) {
        lb_free(b.data);
        return LB_ERR_NOMEM;
    }
    if (j->n == j->cap) {
        int nc = j->cap ? 2 * j->cap : 64;
        journal_rec *nr = grow(j->recs, (size_t)j->n * sizeof *nr, (size_t)nc * sizeof *nr);
        if (!nr) {
            lb_free(b.data);
            return LB_ERR_NOMEM;
        }
        j->recs = nr;
        j->cap = nc;
    }
    off_t at = lseek(j->fd, 0, SEEK_CUR);
    uint8_t head[16] = {'L', 'B', 'J', 'T'};
    uint64_t len = b.len, sum = lb_journal_hash(b.data, b.len, HASH0);
    memcpy(head + 8, &len, 8);
    /* written through to the kernel after every tensor (a killed process
     * loses nothing); on the disk at most every 5 s, when the run stops and
     * at close: a power loss may cost the last seconds' tensors, whose torn
     * records the checksums catch */
    int bad = at < 0 || write_all(j->fd, head, 16) || write_all(j->fd, b.data, b.len) || write_all(j->fd, &sum, 8);
    if (!bad && lb_now() - j->synced >= 5.0) {
        bad = fdatasync(j->fd) != 0;
        j->synced = lb_now();
    }
    lb_free(b.data);
    if (bad) return lb_fail(LB_ERR_IO, "cannot write the journal '%s': %s", j->path, strerror(errno));
    journal_rec *r = &j->recs[j->n++];
    snprintf(r->name, sizeof r->name, "%s", t->name);
    r->off = (uint64_t)at + 16;
    r->len = len;
    return LB_OK;
}

typedef struct {
    const uint8_t *p;
    uint64_t n, at;
    int bad;
} rbuf;

static const uint8_t *take(rbuf *b, uint64_t n) {
    if (b->bad || n > b->n - b->at) {
        b->bad = 1;
        return NULL;
    }
    const uint8_t *p = b->p + b->at;
    b->at += n;
    return p;
}
static uint32_t take_u32(rbuf *b) {
    uint32_t v = 0;
    const uint8_t *p = take(b, 4);
    if (p) memcpy(&v, p, 4);
    return v;
}
static int64_t take_i64(rbuf *b) {
    int64_t v = 0;
    const uint8_t *p = take(b, 8);
    if (p) memcpy(&v, p, 8);
    return v;
}
static double take_f64(rbuf *b) {
    double v = 0;
    const uint8_t *p = take(b, 8);
    if (p) memcpy(&v, p, 8);
    return v;
}
/* a float array of n values, copied (NULL when n is 0 or the payload is short) */
static float *take_floats(rbuf *b, uint64_t n, lb_status *st) {
    if (!n || n > (b->n - b->at) / 4) {
        if (n) b->bad = 1;
        return NULL;
    }
    float *a = lb_alloc((size_t)n * 4);
    if (!a) {
        *st = LB_ERR_NOMEM;
        return NULL;
    }
    memcpy(a, take(b, n * 4), (size_t)n * 4);
    return a;
}

/* Parses record payload p (len bytes) for tensor t of the plan's entry into
 * out, rec and x; every size is checked against t. */
lb_status lb_journal_parse_record(const uint8_t *p, uint64_t len, const lb_tensor *t, lb_tensor *out,
                                  lb_tensor_report *rec, lb_quant_extras *x) {
    rbuf b = {.p = p, .n = len};
    lb_status st = LB_OK;
    memset(out, 0, sizeof *out);
    memset(x, 0, sizeof *x);
    uint32_t k = take_u32(&b);
    const uint8_t *name = take(&b, k);
    uint32_t ks = take_u32(&b);
    const uint8_t *spec = take(&b, ks);
    char spec_text[64];
    if (b.bad || k != strlen(t->name) || memcmp(name, t->name, k) != 0 || ks == 0 || ks >= sizeof spec_text)
        return lb_fail(LB_ERR_FORMAT, "journal record of '%s': damaged name or format", t->name);
    memcpy(spec_text, spec, ks);
    spec_text[ks] = 0;
    if (lb_qspec_parse(spec_text, &out->spec) != LB_OK)
        return lb_fail(LB_ERR_FORMAT, "journal record of '%s': format '%s': %s", t->name, spec_text, lb_last_error());
    snprintf(out->name, sizeof out->name, "%s", t->name);
    out->rows = take_i64(&b);
    out->cols = take_i64(&b);
    int64_t nbytes = take_i64(&b);
    if (b.bad || out->rows != t->rows || out->cols != t->cols || nbytes <= 0 || (uint64_t)nbytes > b.n - b.at)
        return lb_fail(LB_ERR_FORMAT, "journal record of '%s': its shape or size is not the tensor's", t->name);
    if (!(out->owned = lb_alloc((size_t)nbytes))) return LB_ERR_NOMEM;
    memcpy(out->owned, take(&b, (uint64_t)nbytes), (size_t)nbytes);
    out->data = out->owned;
    out->nbytes = (size_t)nbytes;
    if ((st = lb_tensor_resolve(out)) != LB_OK) {
        lb_tensor_free(out);
        return lb_fail_context(st, "journal record of '%s'", t->name);
    }
    rec->rel_error = take_f64(&b);
    rec->proxy_loss = take_f64(&b);
    rec->proxy_loss_rtn = take_f64(&b);
    rec->seconds = take_f64(&b);
    uint32_t measured = take_u32(&b);
    if (!measured) rec->rel_error = rec->proxy_loss = rec->proxy_loss_rtn = NAN;
    if (take_u32(&b) != sizeof rec->method) b.bad = 1;
    const uint8_t *mr = take(&b, sizeof rec->method);
    if (mr) memcpy(&rec->method, mr, sizeof rec->method);
    int64_t nnz = take_i64(&b);
    x->rows = t->rows;
    x->cols = t->cols;
    if (nnz < 0 || nnz > t->rows * t->cols) b.bad = 1;
    else if (nnz) {
        x->nnz = nnz;
        uint64_t nr = (uint64_t)t->rows + 1;
        if (nr > (b.n - b.at) / 4 || (uint64_t)nnz > (b.n - b.at) / 4) b.bad = 1;
        else if (!(x->row_ptr = lb_alloc(nr * 4)) || !(x->col_idx = lb_alloc((size_t)nnz * 4))) st = LB_ERR_NOMEM;
        else {
            memcpy(x->row_ptr, take(&b, nr * 4), nr * 4);
            const uint8_t *ci = take(&b, (uint64_t)nnz * 4);
            if (ci) memcpy(x->col_idx, ci, (size_t)nnz * 4);
            x->values = take_floats(&b, (uint64_t)nnz, &st);
            /* the CSR: row pointers rising from 0 to nnz, columns in range and ascending within a row */
            if (!b.bad && (x->row_ptr[0] != 0 || x->row_ptr[t->rows] != nnz)) b.bad = 1;
            for (int64_t r = 0; !b.bad && r < t->rows; r++) {
                if (x->row_ptr[r + 1] < x->row_ptr[r]) b.bad = 1;
                for (int32_t i = x->row_ptr[r]; !b.bad && i < x->row_ptr[r + 1]; i++)
                    if (x->col_idx[i] < 0 || x->col_idx[i] >= t->cols || (i > x->row_ptr[r] && x->col_idx[i] <= x->col_idx[i - 1]))
                        b.bad = 1;
            }
        }
    }
    uint32_t flags = st == LB_OK ? take_u32(&b) : 0;
    if (flags & ~7u) b.bad = 1;
    if (!b.bad && st == LB_OK && (flags & 1)) x->bias = take_floats(&b, (uint64_t)t->rows, &st);
    if (!b.bad && st == LB_OK && (flags & 2)) x->in_signs = take_floats(&b, (uint64_t)t->cols, &st);
    if (!b.bad && st == LB_OK && (flags & 4)) x->out_signs = take_floats(&b, (uint64_t)t->rows, &st);
    int32_t rank = st == LB_OK ? (int32_t)take_u32(&b) : 0;
    if (rank < 0 || rank > 1024) b.bad = 1;
    else if (rank && !b.bad && st == LB_OK) {
        x->adapter_rank = rank;
        const uint8_t *al = take(&b, 4);
        if (al) memcpy(&x->adapter_alpha, al, 4);
        x->adapter_a = take_floats(&b, (uint64_t)rank * (uint64_t)t->cols, &st);
        if (!b.bad && st == LB_OK) x->adapter_b = take_floats(&b, (uint64_t)rank * (uint64_t)t->rows, &st);
    }
    if (st == LB_OK && (b.bad || b.at != b.n)) st = lb_fail(LB_ERR_FORMAT, "journal record of '%s' is damaged", t->name);
    if (st != LB_OK) {
        lb_tensor_free(out);
        lb_quant_extras_free(x);
    }
    return st;
}

static const journal_rec *find(const lb_journal *j, const char *name) {
    for (int i = j->n - 1; i >= 0; i--)
        if (strcmp(j->recs[i].name, name) == 0) return &j->recs[i];
    return NULL;
}

int lb_journal_has(const lb_journal *j, const char *name) { return j && find(j, name) != NULL; }

lb_status lb_journal_entry(lb_journal *j, lb_model *m, const lb_plan_entry *e, const float *w_in,
                           const lb_layer_stats *stats, lb_tensor *out, lb_tensor_report *rec, lb_quant_extras *extras,
                           int measured) {
    if (!j) return lb_pipeline_quantize_entry(m, e, w_in, stats, out, rec, extras, measured);
    const lb_tensor *t = lb_model_tensor_at(m, e->tensor);
    const journal_rec *r = find(j, t->name);
    if (!r) {
        lb_status st = lb_pipeline_quantize_entry(m, e, w_in, stats, out, rec, extras, measured);
        if (st == LB_OK && (st = journal_append(j, out, rec, measured, extras)) != LB_OK) {
            lb_tensor_free(out);
            lb_quant_extras_free(extras);
        }
        if (st == LB_OK && j->stop_after && j->n >= j->stop_after) {
            j->stopped = 1;
            lb_tensor_free(out);
            lb_quant_extras_free(extras);
            st = lb_fail(LB_ERR_INVALID, "stopped after %d finished tensors, as asked (the journal '%s' holds them)",
                         j->n, j->path);
        }
        return st;
    }
    lb_pipeline_report_begin(rec, t, e);
    uint8_t *buf = lb_alloc(r->len ? (size_t)r->len : 1);
    if (!buf) return LB_ERR_NOMEM;
    lb_status st = lb_read_at(j->fd, buf, (size_t)r->len, r->off)
                       ? lb_fail(LB_ERR_IO, "cannot read the journal '%s': %s", j->path, strerror(errno))
                       : lb_journal_parse_record(buf, r->len, t, out, rec, extras);
    lb_free(buf);
    if (st == LB_OK && (st = lb_pipeline_slots_check(m, t, extras)) != LB_OK) {
        lb_tensor_free(out);
        lb_quant_extras_free(extras);
    }
    if (st == LB_OK) rec->bpw = (double)out->nbytes * 8.0 / ((double)t->rows * (double)t->cols);
    return st;
}

/* ---- the fingerprint ---------------------------------------------------- */

/* a formatted line appended to b (lb_json_buf, as the records) */
static void addf(lb_json_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void addf(lb_json_buf *b, const char *fmt, ...) {
    char line[1024], *p = line;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (k < 0) {
        b->failed = 1;
        return;
    }
    if ((size_t)k >= sizeof line) { /* a long line: formatted again at its length */
        if (!(p = lb_alloc((size_t)k + 1))) {
            b->failed = 1;
            return;
        }
        va_start(ap, fmt);
        vsnprintf(p, (size_t)k + 1, fmt, ap);
        va_end(ap);
    }
    lb_json_raw(b, p, (size_t)k);
    if (p != line) lb_free(p);
}

/* The size and FNV-1a of a whole file. */
static lb_status hash_file(const char *path, uint64_t *size, uint64_t *h) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return lb_fail(LB_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    static const size_t chunk = 1 << 20;
    uint8_t *buf = lb_alloc(chunk);
    if (!buf) {
        close(fd);
        return LB_ERR_NOMEM;
    }
    *size = 0;
    *h = HASH0;
    ssize_t r;
    while ((r = read(fd, buf, chunk)) != 0) {
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) break;
        *h = lb_journal_hash(buf, (size_t)r, *h);
        *size += (uint64_t)r;
    }
    lb_free(buf);
    close(fd);
    return r < 0 ? lb_fail(LB_ERR_IO, "cannot read '%s': %s", path, strerror(errno)) : LB_OK;
}

lb_status lb_journal_fingerprint(lb_model *m, const lb_plan *plan, const char *const *labels,
                                 const char *const *files, int n_files, const char *extra, char **out) {
    *out = NULL;
    lb_plan p;
    memset(&p, 0, sizeof p);
    lb_status st = plan ? lb_pipeline_resolve(plan, m, &p) : LB_OK;
    if (st != LB_OK) return st;
    lb_json_buf b = {0};
    addf(&b, "lowbit %s, journal version %u\n", LB_VERSION_STRING, JOURNAL_VERSION);
    /* the input model: its tensor table whole, and a sample of every
     * tensor's bytes (the first and last 4 KiB), not all of them: hashing
     * all would read the whole model again before any work */
    uint64_t table = HASH0, sample = HASH0;
    int n = lb_model_n_tensors(m);
    for (int i = 0; i < n; i++) {
        const lb_tensor *t = lb_model_tensor_at(m, i);
        char spec[64];
        lb_qspec_format(&t->spec, spec, sizeof spec);
        int64_t shape[3] = {t->rows, t->cols, (int64_t)t->nbytes};
        table = lb_journal_hash(t->name, strlen(t->name) + 1, table);
        table = lb_journal_hash(spec, strlen(spec) + 1, table);
        table = lb_journal_hash(shape, sizeof shape, table);
        if (!t->data) continue;
        size_t head = t->nbytes < 4096 ? t->nbytes : 4096;
        sample = lb_journal_hash(t->data, head, sample);
        if (t->nbytes > head) sample = lb_journal_hash(t->data + t->nbytes - head, head, sample);
    }
    addf(&b, "model: %d tensors, tensor table %016llx, data sample %016llx\n", n, (unsigned long long)table,
         (unsigned long long)sample);
    for (int i = 0; i < n_files && st == LB_OK; i++) {
        if (!files[i]) continue;
        uint64_t size = 0, h = 0;
        if ((st = hash_file(files[i], &size, &h)) == LB_OK)
            addf(&b, "%s: %llu bytes, FNV-1a %016llx\n", labels[i], (unsigned long long)size, (unsigned long long)h);
    }
    if (extra && *extra) addf(&b, "%s\n", extra);
    if (plan) addf(&b, "plan: %d tensors\n", p.n_entries);
    for (int k = 0; k < p.n_entries; k++) {
        const lb_plan_entry *e = &p.entries[k];
        char spec[64], opts[512];
        lb_qspec_format(&e->spec, spec, sizeof spec);
        lb_method_opts_format(&e->opts, 1, opts, sizeof opts);
        addf(&b, "tensor %s: %s %s %s\n", e->name, spec, e->opts.method ? e->opts.method->name : "-", opts);
        for (int q = 0; q < e->n_parts; q++) { /* a split tensor: each part's rows and treatment */
            const lb_plan_part *pt = &e->parts[q];
            lb_qspec_format(&pt->spec, spec, sizeof spec);
            lb_method_opts_format(&pt->opts, 1, opts, sizeof opts);
            addf(&b, "  %s %lld:%lld: %s %s %s\n", e->split_axis ? "cols" : "rows", (long long)pt->row0,
                 (long long)pt->row1, spec,
                 pt->opts.method->name, opts);
        }
    }
    lb_free(p.entries);
    if (st == LB_OK && b.failed) st = LB_ERR_NOMEM;
    if (st != LB_OK) {
        lb_free(b.data);
        return st;
    }
    *out = b.data;
    return LB_OK;
}
