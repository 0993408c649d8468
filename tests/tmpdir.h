/* A scratch directory for tests that write files: made with mkdtemp, paths
 * in it, a count of its entries by name (leaked temporaries, shards) and its
 * removal, and byte-for-byte file comparison. Shared by the tests that write
 * files (test_gguf, test_gguf_split, test_robustness, test_journal,
 * test_quantize_stream). */
#ifndef LB_TEST_TMPDIR_H
#define LB_TEST_TMPDIR_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[256];

/* "/tmp/lowbit_<tag>_XXXXXX" made; 0 on success */
static inline int tmpdir_make(const char *tag) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/lowbit_%s_XXXXXX", tag);
    if (mkdtemp(tmpdir)) return 0;
    perror("mkdtemp");
    return -1;
}

/* tmpdir/name; the last 8 results stay valid */
static inline const char *path_in(const char *name) {
    static char paths[8][512];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    return p;
}

/* entries of tmpdir whose name contains `part` */
static inline int tmpdir_count(const char *part) {
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, part)) n++;
    if (d) closedir(d);
    return n;
}

/* a and b both readable and equal byte for byte */
static inline int same_file(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb) same = 0;
        if (ca == EOF || cb == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

/* tmpdir, its files and its empty subdirectories */
static inline void tmpdir_remove(void) {
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        const char *p = path_in(e->d_name);
        if (remove(p) != 0) rmdir(p);
    }
    if (d) closedir(d);
    rmdir(tmpdir);
}

#endif
