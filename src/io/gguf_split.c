/* Split sets in llama.cpp's gguf-split convention, reading side: the split
 * keys of one file, the names of the shards, the checks that N parsed files
 * are one set, and opening a set from its first shard's path. The writing
 * side is lb_gguf_write_split in gguf_write.c. Layout and keys: gguf.h and
 * docs/SCALING.md.
 *
 * Why every check: a loader that trusted the keys would bind a tensor from a
 * stale shard of another run, or miss one silently; llama.cpp refuses a set
 * whose shards disagree on split.count or split.no, and we refuse the same,
 * plus a tensor in two shards, a tensor count that does not add up, and
 * (lowbit sets) a shard whose fingerprint is another set's. */
#include <stdio.h>
#include <string.h>

#include "io/gguf_internal.h"

static int ends_with(const char *s, size_t n, const char *tail) {
    size_t k = strlen(tail);
    return n >= k && memcmp(s + n - k, tail, k) == 0;
}

/* prefix (plen bytes) + "-%05d-of-%05d.gguf" for shard no (0-based) */
static lb_status shard_name(char *buf, size_t n, const char *prefix, size_t plen, int no, int count) {
    if (count < 1 || count > LB_GGUF_SPLIT_MAX_SHARDS || no < 0 || no >= count)
        return lb_fail(LB_ERR_INVALID, "shard %d of %d: out of range (1..%d shards)", no + 1, count,
                       LB_GGUF_SPLIT_MAX_SHARDS);
    if (plen > (size_t)INT32_MAX) return lb_fail(LB_ERR_INVALID, "split path is too long");
    int k = snprintf(buf, n, "%.*s-%05d-of-%05d.gguf", (int)plen, prefix, no + 1, count);
    if (k < 0 || (size_t)k >= n) return lb_fail(LB_ERR_INVALID, "split path '%.*s...' is too long", (int)plen, prefix);
    return LB_OK;
}

lb_status lb_gguf_split_path(char *buf, size_t n, const char *path, int no, int count) {
    size_t len = strlen(path);
    /* llama.cpp's tools take "out.gguf" and write out-00001-of-0000N.gguf */
    if (ends_with(path, len, ".gguf")) len -= 5;
    if (len == 0) return lb_fail(LB_ERR_INVALID, "split path '%s' has no prefix", path);
    return shard_name(buf, n, path, len, no, count);
}

lb_status lb_gguf_split_keys(const lb_gguf *g, int *no, int *count, int64_t *n_tensors_total) {
    *no = 0, *count = 0, *n_tensors_total = -1;
    int64_t ic = lb_gguf_find_key(g, LB_GGUF_KEY_SPLIT_COUNT), ino = lb_gguf_find_key(g, LB_GGUF_KEY_SPLIT_NO);
    int64_t it = lb_gguf_find_key(g, LB_GGUF_KEY_SPLIT_TENSORS);
    if (ic < 0 && ino < 0) return LB_OK; /* a plain file (a stray split.tensors.count alone means nothing) */
    if (ic < 0 || ino < 0)
        return lb_fail(LB_ERR_FORMAT, "has %s but no %s", ic < 0 ? LB_GGUF_KEY_SPLIT_NO : LB_GGUF_KEY_SPLIT_COUNT,
                       ic < 0 ? LB_GGUF_KEY_SPLIT_COUNT : LB_GGUF_KEY_SPLIT_NO);
    uint32_t c, k;
    lb_status st;
    if ((st = lb_gguf_get_u32(g, LB_GGUF_KEY_SPLIT_COUNT, &c)) || (st = lb_gguf_get_u32(g, LB_GGUF_KEY_SPLIT_NO, &k)))
        return st;
    if (c < 1 || c > LB_GGUF_SPLIT_MAX_SHARDS)
        return lb_fail(LB_ERR_FORMAT, "split.count %u is not 1..%d", c, LB_GGUF_SPLIT_MAX_SHARDS);
    if (k >= c) return lb_fail(LB_ERR_FORMAT, "split.no %u is not below split.count %u", k, c);
    if (it >= 0) {
        int64_t t;
        if ((st = lb_gguf_get_i64(g, LB_GGUF_KEY_SPLIT_TENSORS, &t))) return st;
        if (t < 0 || t > INT32_MAX)
            return lb_fail(LB_ERR_FORMAT, "split.tensors.count %lld is not 0..%d", (long long)t, INT32_MAX);
        *n_tensors_total = t;
    }
    *no = (int)k, *count = (int)c;
    return LB_OK;
}

/* Everything but the tensor-name check (lb_gguf_concat's), shard by shard. */
static lb_status check_set(lb_gguf *const *shards, int n) {
    int64_t total = -1, counted = 0;
    uint64_t fp0 = 0;
    int has_fp = lb_gguf_find_key(shards[0], LB_GGUF_KEY_SPLIT_FINGERPRINT) >= 0;
    lb_status st0 = has_fp ? lb_gguf_get_u64(shards[0], LB_GGUF_KEY_SPLIT_FINGERPRINT, &fp0) : LB_OK;
    if (st0 != LB_OK) return lb_fail_context(st0, "shard 1 of %d", n);
    for (int i = 0; i < n; i++) {
        int no, count;
        int64_t t;
        lb_status st = lb_gguf_split_keys(shards[i], &no, &count, &t);
        if (st) return lb_fail_context(st, "shard %d of %d", i + 1, n);
        if (count == 0) return lb_fail(LB_ERR_FORMAT, "shard %d of %d has no split keys (split.no, split.count)", i + 1, n);
        if (count != n)
            return lb_fail(LB_ERR_FORMAT, "shard %d of %d has split.count %d: it belongs to a set of %d shards", i + 1,
                           n, count, count);
        if (no != i)
            return lb_fail(LB_ERR_FORMAT, "shard %d of %d has split.no %d: it is shard %d of its set", i + 1, n, no,
                           no + 1);
        if (i == 0 && t < 0) return lb_fail(LB_ERR_FORMAT, "shard 1 of %d has no split.tensors.count", n);
        if (i == 0) total = t;
        else if (t >= 0 && t != total)
            return lb_fail(LB_ERR_FORMAT, "shard %d of %d has split.tensors.count %lld, shard 1 %lld", i + 1, n,
                           (long long)t, (long long)total);
        if (has_fp) {
            uint64_t fp;
            if (lb_gguf_find_key(shards[i], LB_GGUF_KEY_SPLIT_FINGERPRINT) < 0 ||
                lb_gguf_get_u64(shards[i], LB_GGUF_KEY_SPLIT_FINGERPRINT, &fp) != LB_OK || fp != fp0)
                return lb_fail(LB_ERR_FORMAT, "shard %d of %d is from another split set (its %s differs from shard "
                               "1's)", i + 1, n, LB_GGUF_KEY_SPLIT_FINGERPRINT);
        }
        counted += lb_gguf_n_tensors(shards[i]);
    }
    if (counted != total)
        return lb_fail(LB_ERR_FORMAT, "the %d shards hold %lld tensors, split.tensors.count says %lld", n,
                       (long long)counted, (long long)total);
    return LB_OK;
}

lb_status lb_gguf_split_merge(lb_gguf **shards, int n, lb_gguf **out) {
    *out = NULL;
    lb_status st = n < 1 || n > LB_GGUF_SPLIT_MAX_SHARDS
                       ? lb_fail(LB_ERR_INVALID, "a split set of %d shards (1..%d)", n, LB_GGUF_SPLIT_MAX_SHARDS)
                       : check_set(shards, n);
    if (st != LB_OK) {
        for (int i = 0; i < n; i++) lb_gguf_free(shards[i]);
        return st;
    }
    return lb_gguf_concat(shards, n, out);
}

lb_status lb_gguf_split_load(const char *path, const uint8_t *data, size_t size, lb_gguf **out,
                             lb_mapped_file **others, int *n_others) {
    *out = NULL, *others = NULL, *n_others = 0;
    lb_gguf *first;
    lb_status st = lb_gguf_parse(data, size, &first);
    if (st) return st;
    int no, count;
    int64_t total;
    if ((st = lb_gguf_split_keys(first, &no, &count, &total)) != LB_OK) {
        lb_gguf_free(first);
        return lb_fail_context(st, "'%s'", path);
    }
    if (count == 0) { /* a plain file */
        *out = first;
        return LB_OK;
    }
    /* the others are found by name: PREFIX-00001-of-0000N.gguf -> PREFIX-0000i-of-0000N.gguf */
    char tail[32], name[4096];
    size_t len = strlen(path);
    snprintf(tail, sizeof tail, "-%05d-of-%05d.gguf", no + 1, count);
    int named = ends_with(path, len, tail);
    size_t plen = named ? len - strlen(tail) : 0;
    if (no != 0) {
        lb_gguf_free(first);
        if (named && shard_name(name, sizeof name, path, plen, 0, count) == LB_OK)
            return lb_fail(LB_ERR_FORMAT, "'%s' is shard %d of a split set of %d: open the first shard, '%s'", path,
                           no + 1, count, name);
        return lb_fail(LB_ERR_FORMAT, "'%s' is shard %d of a split set of %d: open the first shard", path, no + 1,
                       count);
    }
    if (count > 1 && !named) {
        lb_gguf_free(first);
        return lb_fail(LB_ERR_FORMAT, "'%s' is the first shard of a split set of %d, but its name does not end in "
                       "'%s', so the other shards cannot be found (llama.cpp's naming: PREFIX%s)", path, count, tail, tail);
    }
    lb_gguf **g = lb_calloc((size_t)count, sizeof *g);
    lb_mapped_file *files = count > 1 ? lb_calloc((size_t)count - 1, sizeof *files) : NULL;
    if (!g || (count > 1 && !files)) {
        lb_free(g), lb_free(files), lb_gguf_free(first);
        return LB_ERR_NOMEM;
    }
    g[0] = first;
    int mapped = 0;
    for (int i = 1; i < count && st == LB_OK; i++) {
        if ((st = shard_name(name, sizeof name, path, plen, i, count)) != LB_OK) break;
        if ((st = lb_map_file(name, &files[i - 1])) != LB_OK) {
            lb_fail_context(st, "shard %d of %d of '%s'", i + 1, count, path);
            break;
        }
        mapped = i;
        if ((st = lb_gguf_parse(files[i - 1].data, files[i - 1].size, &g[i])) != LB_OK)
            lb_fail_context(st, "shard %d of %d, '%s'", i + 1, count, name);
    }
    if (st == LB_OK) {
        st = lb_gguf_split_merge(g, count, out); /* takes the parsed shards */
        if (st != LB_OK) lb_fail_context(st, "split set '%s'", path);
    } else {
        for (int i = 0; i < count; i++) lb_gguf_free(g[i]);
    }
    lb_free(g);
    if (st != LB_OK) {
        for (int i = 0; i < mapped; i++) lb_unmap_file(&files[i]);
        lb_free(files);
        return st;
    }
    *others = files;
    *n_others = count - 1;
    return LB_OK;
}
