/* Mapped input files and atomic output files.
 *
 * Inputs must be regular files: they are opened non-blocking (a FIFO would
 * otherwise block the open until a writer appears) and checked with fstat
 * before anything is read.
 *
 * Outputs are written to "<path>.tmp.<pid>" and renamed over path. The
 * temporaries of open atomic files are kept in a small registry; the first
 * lb_atomic_open installs SIGINT/SIGTERM/SIGHUP handlers (only for signals
 * still at their default action) that unlink every registered temporary and
 * re-raise the signal, so an interrupted run leaves nothing behind. */
#define _POSIX_C_SOURCE 200809L
#include "lowbit/core.h"
#include "core/atomic_resume.h"
#include "core/mapped.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *file_kind(mode_t m) {
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    if (S_ISLNK(m)) return "a symbolic link";
    return "not a regular file";
}

/* Opens path for reading if it is a regular file (never blocks on a FIFO). */
static lb_status open_regular(const char *path, int *fd_out, struct stat *st) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return lb_fail(LB_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    if (fstat(fd, st) != 0) {
        int e = errno;
        close(fd);
        return lb_fail(LB_ERR_IO, "cannot stat '%s': %s", path, strerror(e));
    }
    if (!S_ISREG(st->st_mode)) {
        close(fd);
        return lb_fail(LB_ERR_IO, "'%s' is %s, not a regular file", path, file_kind(st->st_mode));
    }
    *fd_out = fd;
    return LB_OK;
}

lb_status lb_map_file(const char *path, lb_mapped_file *out) {
    memset(out, 0, sizeof *out);
    int fd;
    struct stat st;
    lb_status s = open_regular(path, &fd, &st);
    if (s != LB_OK) return s;
    size_t size = (size_t)st.st_size;
    if (size == 0) {
        close(fd);
        return lb_fail(LB_ERR_FORMAT, "'%s' is empty", path);
    }
    void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p != MAP_FAILED) {
        close(fd);
        out->data = p;
        out->size = size;
        out->is_mapped = 1;
        lb_map_register(p, size);
        return LB_OK;
    }
    /* e.g. a pipe-backed or special filesystem: read it instead */
    uint8_t *buf = lb_alloc(size);
    if (!buf) {
        close(fd);
        return LB_ERR_NOMEM;
    }
    size_t got = 0;
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n <= 0) {
            close(fd);
            lb_free(buf);
            return lb_fail(LB_ERR_IO, "cannot read '%s'", path);
        }
        got += (size_t)n;
    }
    close(fd);
    out->data = buf;
    out->size = size;
    return LB_OK;
}

void lb_unmap_file(lb_mapped_file *f) {
    if (!f->data) return;
    if (f->is_mapped) {
        lb_map_unregister(f->data);
        munmap((void *)f->data, f->size);
    }
    else
        lb_free((void *)f->data);
    memset(f, 0, sizeof *f);
}

lb_status lb_read_file(const char *path, char **out, size_t *size) {
    *out = NULL;
    *size = 0;
    int fd;
    struct stat st;
    lb_status s = open_regular(path, &fd, &st);
    if (s != LB_OK) return s;
    FILE *fp = fdopen(fd, "rb");
    if (!fp) {
        close(fd);
        return lb_fail(LB_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            fclose(fp);
            return lb_fail(LB_ERR_NOMEM, "out of memory reading '%s'", path);
        }
        len += fread(buf + len, 1, cap - len - 1, fp);
        if (len < cap - 1) break;
        cap *= 2;
        char *nb = realloc(buf, cap);
        if (!nb) free(buf);
        buf = nb;
    }
    int err = ferror(fp);
    fclose(fp);
    if (err) {
        free(buf);
        return lb_fail(LB_ERR_IO, "cannot read '%s'", path);
    }
    buf[len] = 0;
    /* hand back an lb_alloc'd copy so callers free everything with lb_free */
    char *res = lb_alloc(len + 1);
    if (res) memcpy(res, buf, len + 1);
    free(buf);
    if (!res) return LB_ERR_NOMEM;
    *out = res;
    *size = len;
    return LB_OK;
}

static char *dup_string(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* ---- output checks --------------------------------------------------------- */

/* An existing output may only be a regular file (it is replaced by rename,
 * which would turn a symlink, device or FIFO into a plain file). */
static lb_status check_replaceable(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT) return LB_OK;
        return lb_fail(LB_ERR_IO, "cannot stat output '%s': %s", path, strerror(errno));
    }
    if (S_ISLNK(st.st_mode))
        return lb_fail(LB_ERR_IO, "output '%s' is a symbolic link: refusing to replace the link with a file (write to its target's path instead)",
                       path);
    if (!S_ISREG(st.st_mode))
        return lb_fail(LB_ERR_IO, "output '%s' is %s: refusing to replace it with a file", path, file_kind(st.st_mode));
    return LB_OK;
}

lb_status lb_output_check(const char *out_path, const char *const *inputs, int n_inputs) {
    if (!out_path || !*out_path) return lb_fail(LB_ERR_INVALID, "empty output path");
    lb_status s = check_replaceable(out_path);
    if (s != LB_OK) return s;
    struct stat out_st;
    int out_exists = stat(out_path, &out_st) == 0;
    for (int i = 0; i < n_inputs; i++) {
        if (!inputs[i]) continue;
        struct stat in_st;
        int same = strcmp(inputs[i], out_path) == 0 ||
                   (out_exists && stat(inputs[i], &in_st) == 0 && in_st.st_dev == out_st.st_dev &&
                    in_st.st_ino == out_st.st_ino);
        if (same)
            return lb_fail(LB_ERR_INVALID,
                           "output '%s' is the same file as the input '%s': refusing to overwrite an input", out_path,
                           inputs[i]);
    }
    /* the directory must exist and take new files: checked now, not after the work */
    const char *slash = strrchr(out_path, '/');
    char *dir = slash ? dup_string(out_path) : dup_string(".");
    if (!dir) return lb_fail(LB_ERR_NOMEM, "out of memory");
    if (slash) dir[slash == out_path ? 1 : (size_t)(slash - out_path)] = 0;
    struct stat dir_st;
    if (stat(dir, &dir_st) != 0)
        s = lb_fail(LB_ERR_IO, "cannot create '%s': directory '%s': %s", out_path, dir, strerror(errno));
    else if (!S_ISDIR(dir_st.st_mode))
        s = lb_fail(LB_ERR_IO, "cannot create '%s': '%s' is not a directory", out_path, dir);
    else if (access(dir, W_OK | X_OK) != 0)
        s = lb_fail(LB_ERR_IO, "cannot create '%s': directory '%s' is not writable: %s", out_path, dir, strerror(errno));
    free(dir);
    return s;
}

/* ---- temporaries removed on SIGINT / SIGTERM / SIGHUP ----------------------
 * Slots hold the tmp_path pointers of open atomic files; a path is stored
 * before its file is created and cleared after it is renamed or removed. The
 * handler only reads slots and calls unlink (async-signal-safe). */
#define MAX_TEMPORARIES 64
static const char *temporaries[MAX_TEMPORARIES];
static const int cleanup_signals[] = {SIGINT, SIGTERM, SIGHUP};
static pthread_once_t handlers_once = PTHREAD_ONCE_INIT;

static void remove_temporaries_and_reraise(int sig) {
    for (int i = 0; i < MAX_TEMPORARIES; i++) {
        const char *p = __atomic_load_n(&temporaries[i], __ATOMIC_ACQUIRE);
        if (p) unlink(p);
    }
    /* SA_RESETHAND restored the default action: die of the same signal */
    raise(sig);
}

static void install_handlers(void) {
    for (size_t i = 0; i < sizeof cleanup_signals / sizeof cleanup_signals[0]; i++) {
        struct sigaction old, sa;
        /* leave alone signals the program ignores (nohup) or handles itself */
        if (sigaction(cleanup_signals[i], NULL, &old) != 0 || old.sa_handler != SIG_DFL) continue;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = remove_temporaries_and_reraise;
        sigemptyset(&sa.sa_mask);
        for (size_t j = 0; j < sizeof cleanup_signals / sizeof cleanup_signals[0]; j++)
            sigaddset(&sa.sa_mask, cleanup_signals[j]);
        sa.sa_flags = SA_RESETHAND;
        sigaction(cleanup_signals[i], &sa, NULL);
    }
}

/* Returns 0 when every slot is taken (the file is still written, just not
 * cleaned up on a signal). */
static int register_temporary(const char *path) {
    pthread_once(&handlers_once, install_handlers);
    for (int i = 0; i < MAX_TEMPORARIES; i++) {
        const char *expected = NULL;
        if (__atomic_compare_exchange_n(&temporaries[i], &expected, path, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED))
            return 1;
    }
    return 0;
}

static void unregister_temporary(const char *path) {
    for (int i = 0; i < MAX_TEMPORARIES; i++) {
        const char *expected = path;
        if (__atomic_compare_exchange_n(&temporaries[i], &expected, NULL, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED))
            return;
    }
}

/* ---- atomic output files ----------------------------------------------------- */

lb_status lb_atomic_open(lb_atomic_file *f, const char *path) {
    memset(f, 0, sizeof *f);
    size_t n = strlen(path) + 32;
    f->final_path = dup_string(path);
    f->tmp_path = malloc(n);
    if (!f->final_path || !f->tmp_path) {
        free(f->final_path);
        free(f->tmp_path);
        return lb_fail(LB_ERR_NOMEM, "out of memory");
    }
    snprintf(f->tmp_path, n, "%s.tmp.%ld", path, (long)getpid());
    register_temporary(f->tmp_path);
    /* O_NOFOLLOW: a symlink planted at the temporary's name is not followed */
    int fd = open(f->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0666);
    f->fp = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!f->fp) {
        lb_status s = lb_fail(LB_ERR_IO, "cannot create '%s' (temporary '%s'): %s", path, f->tmp_path, strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(f->tmp_path);
        }
        unregister_temporary(f->tmp_path);
        free(f->final_path);
        free(f->tmp_path);
        memset(f, 0, sizeof *f);
        return s;
    }
    return LB_OK;
}

void lb_atomic_write(lb_atomic_file *f, const void *data, size_t n) {
    if (f->err != LB_OK || n == 0) return;
    if (fwrite(data, 1, n, f->fp) != n)
        f->err = lb_fail(LB_ERR_IO, "cannot write '%s' (temporary '%s'): %s", f->final_path, f->tmp_path,
                         strerror(errno));
    else
        f->written += n;
}

void lb_atomic_pad(lb_atomic_file *f, size_t alignment) {
    static const uint8_t zeros[256];
    while (f->err == LB_OK && f->written % alignment) {
        size_t pad = alignment - (size_t)(f->written % alignment);
        lb_atomic_write(f, zeros, pad < sizeof zeros ? pad : sizeof zeros);
    }
}

static void atomic_release(lb_atomic_file *f) {
    if (f->tmp_path) unregister_temporary(f->tmp_path);
    free(f->final_path);
    free(f->tmp_path);
    memset(f, 0, sizeof *f);
}

void lb_atomic_abort(lb_atomic_file *f) {
    if (f->fp) fclose(f->fp);
    if (f->tmp_path) remove(f->tmp_path);
    atomic_release(f);
}

void lb_atomic_finish(lb_atomic_file *f) {
    if (!f->fp) return;
    if (f->err == LB_OK && (fflush(f->fp) != 0 || fsync(fileno(f->fp)) != 0))
        f->err = lb_fail(LB_ERR_IO, "cannot flush '%s' (temporary '%s'): %s", f->final_path, f->tmp_path,
                         strerror(errno));
    if (fclose(f->fp) != 0 && f->err == LB_OK)
        f->err = lb_fail(LB_ERR_IO, "cannot close '%s' (temporary '%s'): %s", f->final_path, f->tmp_path,
                         strerror(errno));
    f->fp = NULL;
}

lb_status lb_atomic_commit(lb_atomic_file *f) {
    lb_atomic_finish(f); /* nothing when already finished */
    lb_status s = f->err;
    /* checked again just before the rename: something may have appeared there */
    if (s == LB_OK) s = check_replaceable(f->final_path);
    if (s == LB_OK && rename(f->tmp_path, f->final_path) != 0)
        s = lb_fail(LB_ERR_IO, "cannot rename '%s' to '%s': %s", f->tmp_path, f->final_path, strerror(errno));
    if (s != LB_OK) remove(f->tmp_path);
    atomic_release(f);
    return s;
}

/* ---- resumable outputs (core/atomic_resume.h) ------------------------------ */

lb_status lb_atomic_open_resumable(lb_atomic_file *f, const char *path, const char *tmp, uint64_t keep) {
    memset(f, 0, sizeof *f);
    f->final_path = dup_string(path);
    f->tmp_path = dup_string(tmp);
    if (!f->final_path || !f->tmp_path) {
        free(f->final_path);
        free(f->tmp_path);
        memset(f, 0, sizeof *f);
        return lb_fail(LB_ERR_NOMEM, "out of memory");
    }
    if (!keep) register_temporary(f->tmp_path); /* nothing refers to it yet: a signal removes it */
    /* O_NOFOLLOW: a symlink planted at the temporary's name is not followed */
    int fd = open(tmp, O_WRONLY | O_CREAT | (keep ? 0 : O_TRUNC) | O_NOFOLLOW | O_CLOEXEC, 0666);
    struct stat st;
    lb_status s = LB_OK;
    if (fd < 0)
        s = lb_fail(LB_ERR_IO, "cannot open '%s' (the output '%s' being written): %s", tmp, path, strerror(errno));
    else if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        s = lb_fail(LB_ERR_IO, "'%s' (the output '%s' being written) is not a regular file", tmp, path);
    else if (keep && (uint64_t)st.st_size < keep)
        s = lb_fail(LB_ERR_IO, "'%s' holds %llu bytes, fewer than the %llu an interrupted run wrote", tmp,
                    (unsigned long long)st.st_size, (unsigned long long)keep);
    else if (keep && ftruncate(fd, (off_t)keep) != 0)
        s = lb_fail(LB_ERR_IO, "cannot cut '%s' to %llu bytes: %s", tmp, (unsigned long long)keep, strerror(errno));
    else if (!(f->fp = fdopen(fd, "wb")))
        s = lb_fail(LB_ERR_IO, "cannot open '%s': %s", tmp, strerror(errno));
    if (s != LB_OK) {
        if (fd >= 0) close(fd);
        if (fd >= 0 && !keep) unlink(tmp);
        atomic_release(f);
    }
    return s;
}

void lb_atomic_skip(lb_atomic_file *f, uint64_t n) {
    if (f->err != LB_OK || n == 0) return;
    if (fseeko(f->fp, (off_t)n, SEEK_CUR) != 0)
        f->err = lb_fail(LB_ERR_IO, "cannot seek in '%s': %s", f->tmp_path, strerror(errno));
    else
        f->written += n;
}

lb_status lb_atomic_sync(lb_atomic_file *f) {
    if (f->err == LB_OK && (fflush(f->fp) != 0 || fdatasync(fileno(f->fp)) != 0))
        f->err = lb_fail(LB_ERR_IO, "cannot flush '%s' (temporary '%s'): %s", f->final_path, f->tmp_path,
                         strerror(errno));
    return f->err;
}

void lb_atomic_persist(lb_atomic_file *f) {
    if (f->tmp_path) unregister_temporary(f->tmp_path);
}

void lb_atomic_close_kept(lb_atomic_file *f) {
    lb_atomic_finish(f);
    atomic_release(f);
}
