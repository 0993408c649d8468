/* Mapped input files and atomic output files. */
#define _POSIX_C_SOURCE 200809L
#include "lowbit/core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

lb_status lb_map_file(const char *path, lb_mapped_file *out) {
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return lb_fail(LB_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return lb_fail(LB_ERR_IO, "'%s' is not a regular file", path);
    }
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
    if (f->is_mapped)
        munmap((void *)f->data, f->size);
    else
        lb_free((void *)f->data);
    memset(f, 0, sizeof *f);
}

lb_status lb_read_file(const char *path, char **out, size_t *size) {
    *out = NULL;
    *size = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return lb_fail(LB_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
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
    f->fp = fopen(f->tmp_path, "wb");
    if (!f->fp) {
        lb_status s = lb_fail(LB_ERR_IO, "cannot create '%s': %s", f->tmp_path, strerror(errno));
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
        f->err = lb_fail(LB_ERR_IO, "cannot write '%s': %s", f->tmp_path, strerror(errno));
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
    free(f->final_path);
    free(f->tmp_path);
    memset(f, 0, sizeof *f);
}

void lb_atomic_abort(lb_atomic_file *f) {
    if (f->fp) fclose(f->fp);
    if (f->tmp_path) remove(f->tmp_path);
    atomic_release(f);
}

lb_status lb_atomic_commit(lb_atomic_file *f) {
    lb_status s = f->err;
    if (s == LB_OK && (fflush(f->fp) != 0 || fsync(fileno(f->fp)) != 0))
        s = lb_fail(LB_ERR_IO, "cannot flush '%s': %s", f->tmp_path, strerror(errno));
    if (fclose(f->fp) != 0 && s == LB_OK)
        s = lb_fail(LB_ERR_IO, "cannot close '%s': %s", f->tmp_path, strerror(errno));
    f->fp = NULL;
    if (s == LB_OK && rename(f->tmp_path, f->final_path) != 0)
        s = lb_fail(LB_ERR_IO, "cannot rename '%s' to '%s': %s", f->tmp_path, f->final_path,
                    strerror(errno));
    if (s != LB_OK) remove(f->tmp_path);
    atomic_release(f);
    return s;
}
