/* Split GGUF sets (llama.cpp's gguf-split convention, docs/SCALING.md):
 * stories260K written as >= 3 shards under a byte limit and as one file;
 * the shards' keys (the first holds all, the others only the split keys),
 * their sizes against the limit, their data sections concatenated equal to
 * the single file's, the model reloaded from the first shard bit for bit
 * with the same logits; a tensor limit, a limit that fits in one shard
 * (-00001-of-00001.gguf), a writer without tensors. Then every way a set can
 * be broken must fail with a clear message and nothing leaked: a missing
 * shard, a shard of another set (other count, same count), shards swapped
 * (split.no wrong), a truncated shard, a path not named as a first shard, a
 * later shard opened first, a tensor in two shards, a tensor count that does
 * not add up; and a failed write leaves no shard and no temporary. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/gguf_internal.h"
#include "test.h"
#include "tmpdir.h"

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static long long file_size(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 ? (long long)st.st_size : -1;
}

static int copy_file(const char *from, const char *to) {
    char *buf;
    size_t n;
    if (lb_read_file(from, &buf, &n) != LB_OK) return 0;
    FILE *f = fopen(to, "wb");
    int ok = f && fwrite(buf, 1, n, f) == n;
    if (f) ok = fclose(f) == 0 && ok;
    lb_free(buf);
    return ok;
}

static const char *shard(const char *prefix_path, int no, int count) {
    static char names[4][512];
    static int next;
    char *p = names[next++ % 4];
    if (lb_gguf_split_path(p, 512, prefix_path, no, count) != LB_OK) snprintf(p, 512, "(bad)");
    return p;
}

/* ---- the model as shards ---------------------------------------------------- */

static void test_model_roundtrip(const lb_model *m) {
    char one[512], set[512]; /* path_in's buffers rotate: keep copies */
    snprintf(one, sizeof one, "%s", path_in("one.gguf"));
    snprintf(set, sizeof set, "%s", path_in("set.gguf"));
    CHECK_OK(lb_model_save_gguf(m, one));
    lb_gguf_split_opts o = {60000, 0};
    int n = 0;
    CHECK_OK(lb_model_save_gguf_split(m, set, NULL, NULL, NULL, &o, &n));
    CHECK_MSG(n >= 3, "%d shards", n);
    CHECK(!file_exists(set)); /* the name given is the prefix, not a file */

    lb_mapped_file fone;
    lb_gguf *gone = NULL;
    CHECK_OK(lb_map_file(one, &fone));
    CHECK_OK(lb_gguf_parse(fone.data, fone.size, &gone));
    if (!gone) return;
    /* each shard: a complete GGUF; keys, sizes, data */
    int64_t tensors = 0;
    size_t at = lb_gguf_data_offset(gone); /* where this shard's data should sit in the single file */
    for (int i = 0; i < n; i++) {
        const char *p = shard(set, i, n);
        lb_mapped_file f;
        lb_gguf *g = NULL;
        CHECK_OK(lb_map_file(p, &f));
        CHECK_OK(lb_gguf_parse(f.data, f.size, &g));
        if (!g) continue;
        int no, count;
        int64_t total;
        CHECK_OK(lb_gguf_split_keys(g, &no, &count, &total));
        CHECK(no == i && count == n && total == lb_gguf_n_tensors(gone));
        CHECK(lb_gguf_kv_type(g, lb_gguf_find_key(g, "split.no")) == LB_GGUF_UINT16);
        CHECK(lb_gguf_kv_type(g, lb_gguf_find_key(g, "split.count")) == LB_GGUF_UINT16);
        CHECK(lb_gguf_kv_type(g, lb_gguf_find_key(g, "split.tensors.count")) == LB_GGUF_INT32);
        if (i == 0) { /* every key of the single file, plus the split keys */
            CHECK(lb_gguf_n_kv(g) == lb_gguf_n_kv(gone) + 4);
            for (int64_t k = 0; k < lb_gguf_n_kv(gone); k++) {
                size_t len;
                const char *key = lb_gguf_key(gone, k, &len);
                char buf[256];
                snprintf(buf, sizeof buf, "%.*s", (int)len, key);
                CHECK_MSG(lb_gguf_find_key(g, buf) >= 0, "shard 1 lacks %s", buf);
            }
        } else { /* the split keys and the (non-default) alignment only, as gguf-split */
            CHECK_MSG(lb_gguf_n_kv(g) == 5, "shard %d has %lld keys", i + 1, (long long)lb_gguf_n_kv(g));
            CHECK(lb_gguf_find_key(g, "general.alignment") >= 0);
            CHECK(lb_gguf_find_key(g, "general.architecture") < 0);
        }
        CHECK_MSG((uint64_t)f.size <= o.max_bytes || lb_gguf_n_tensors(g) == 1, "shard %d: %zu bytes, %lld tensors",
                  i + 1, f.size, (long long)lb_gguf_n_tensors(g));
        /* the data sections, concatenated, are the single file's */
        size_t d = lb_gguf_data_offset(g), len = f.size - d;
        CHECK(at + len <= fone.size && memcmp(f.data + d, fone.data + at, len) == 0);
        at += len;
        for (int64_t t = 0; t < lb_gguf_n_tensors(g); t++, tensors++) {
            const lb_gguf_tensor *a = lb_gguf_tensor_at(g, t), *b = lb_gguf_tensor_at(gone, tensors);
            CHECK(b && a->name_len == b->name_len && !memcmp(a->name, b->name, a->name_len) && a->nbytes == b->nbytes);
        }
        lb_gguf_free(g);
        lb_unmap_file(&f);
    }
    CHECK(at == fone.size && tensors == lb_gguf_n_tensors(gone));
    lb_gguf_free(gone);
    lb_unmap_file(&fone);

    /* reloaded from the first shard: every tensor bit for bit, the same logits */
    lb_model *a = NULL, *b = NULL;
    CHECK_OK(lb_model_load(one, NULL, &a));
    CHECK_OK(lb_model_load(shard(set, 0, n), NULL, &b));
    if (!a || !b) return;
    CHECK(b->n_shards == n - 1);
    CHECK(lb_model_n_tensors(a) == lb_model_n_tensors(b));
    for (int i = 0; i < lb_model_n_tensors(a); i++) {
        const lb_tensor *x = lb_model_tensor_at(a, i), *y = lb_model_tensor_at(b, i);
        CHECK_MSG(x->nbytes == y->nbytes && !memcmp(x->data, y->data, x->nbytes), "tensor %s differs", x->name);
    }
    int tok[8] = {1, 403, 407, 261, 378, 365, 292, 270};
    int V = a->cfg.vocab_size;
    float *la = malloc(8 * (size_t)V * sizeof *la), *lbuf = malloc(8 * (size_t)V * sizeof *lbuf);
    CHECK_OK(lb_test_logits(a, tok, 8, la));
    CHECK_OK(lb_test_logits(b, tok, 8, lbuf));
    CHECK(!memcmp(la, lbuf, 8 * (size_t)V * sizeof *la));
    free(la), free(lbuf);
    lb_model_free(a);
    lb_model_free(b);

    /* a tensor limit: one tensor per shard */
    lb_gguf_split_opts each = {0, 1};
    int n1 = 0;
    CHECK_OK(lb_model_save_gguf_split(m, path_in("each"), NULL, NULL, NULL, &each, &n1));
    CHECK(n1 == lb_model_n_tensors(m));
    CHECK_OK(lb_model_load(shard(path_in("each"), 0, n1), NULL, &a));
    lb_model_free(a);
    /* a limit the whole model fits under: still -00001-of-00001.gguf, as gguf-split names it */
    lb_gguf_split_opts big = {1ull << 40, 0};
    int nb = 0;
    CHECK_OK(lb_model_save_gguf_split(m, path_in("big.gguf"), NULL, NULL, NULL, &big, &nb));
    CHECK(nb == 1 && file_exists(path_in("big-00001-of-00001.gguf")) && !file_exists(path_in("big.gguf")));
    CHECK_OK(lb_model_load(path_in("big-00001-of-00001.gguf"), NULL, &a));
    lb_model_free(a);
    /* retyped while written, split all the same */
    lb_qspec f16 = lb_test_spec("f16");
    CHECK_OK(lb_model_save_gguf_split(m, path_in("h.gguf"), &f16, NULL, NULL, &o, &n1));
    CHECK_OK(lb_model_load(shard(path_in("h.gguf"), 0, n1), NULL, &a));
    CHECK(a && a->layers[0].linear[LB_WQ].w.spec.family == LB_FAMILY_F16);
    lb_model_free(a);
    CHECK(tmpdir_count(".tmp.") == 0);
}

/* ---- broken sets -------------------------------------------------------------- */

static lb_status load(const char *path) {
    lb_model *m = NULL;
    lb_status st = lb_model_load(path, NULL, &m);
    lb_model_free(m);
    return st;
}

static void test_broken_sets(const lb_model *m) {
    /* tensor limits make the counts known: 47 tensors in 3, 5, and 3 shards */
    lb_gguf_split_opts o = {0, 16};
    int n = 0, n2 = 0;
    char set[512];
    snprintf(set, sizeof set, "%s", path_in("b.gguf"));
    CHECK_OK(lb_model_save_gguf_split(m, set, NULL, NULL, NULL, &o, &n));
    if (n < 3) return;
    /* the same model under another limit: another count */
    lb_gguf_split_opts o2 = {0, 10};
    CHECK_OK(lb_model_save_gguf_split(m, path_in("c.gguf"), NULL, NULL, NULL, &o2, &n2));
    CHECK(n2 != n);
    /* the same count, other tensors (f16): another fingerprint */
    lb_qspec f16 = lb_test_spec("f16");
    int nh = 0;
    CHECK_OK(lb_model_save_gguf_split(m, path_in("h2.gguf"), &f16, NULL, NULL, &o, &nh));

    char keep[512];
    snprintf(keep, sizeof keep, "%s", path_in("keep.gguf"));
    char s2[512]; /* shard() and path_in() hand out rotating buffers: keep a copy */
    snprintf(s2, sizeof s2, "%s", shard(set, 1, n));
    CHECK(rename(s2, keep) == 0);
    CHECK_FAILS(load(shard(set, 0, n)), LB_ERR_IO, "shard 2 of");
    /* a shard of a set of another count, under this set's name */
    CHECK(copy_file(shard(path_in("c.gguf"), 1, n2), s2));
    CHECK_FAILS(load(shard(set, 0, n)), LB_ERR_FORMAT, "it belongs to a set of");
    /* same count, another set */
    if (nh == n) {
        CHECK(copy_file(shard(path_in("h2.gguf"), 1, nh), s2));
        CHECK_FAILS(load(shard(set, 0, n)), LB_ERR_FORMAT, "from another split set");
    } else {
        CHECK_MSG(0, "the f16 set has %d shards, not %d: the same-count case did not run", nh, n);
    }
    /* shards 2 and 3 swapped: split.no is wrong for the name */
    CHECK_OK(lb_model_save_gguf_split(m, set, NULL, NULL, NULL, &o, &n)); /* a fresh set */
    {
        char a[512], b[512];
        snprintf(a, sizeof a, "%s", shard(set, 1, n));
        snprintf(b, sizeof b, "%s", shard(set, 2, n));
        CHECK(rename(a, keep) == 0 && rename(b, a) == 0 && rename(keep, b) == 0);
        CHECK_FAILS(load(shard(set, 0, n)), LB_ERR_FORMAT, "has split.no 2: it is shard 3");
    }
    /* a truncated shard */
    CHECK_OK(lb_model_save_gguf_split(m, set, NULL, NULL, NULL, &o, &n));
    CHECK(truncate(shard(set, n - 1, n), file_size(shard(set, n - 1, n)) / 2) == 0);
    char needle[64];
    snprintf(needle, sizeof needle, "shard %d of %d, ", n, n);
    CHECK_FAILS(load(shard(set, 0, n)), LB_ERR_FORMAT, needle);
    /* the first shard under a name that does not say where the others are */
    CHECK_OK(lb_model_save_gguf_split(m, set, NULL, NULL, NULL, &o, &n));
    CHECK(copy_file(shard(set, 0, n), path_in("renamed.gguf")));
    CHECK_FAILS(load(path_in("renamed.gguf")), LB_ERR_FORMAT, "cannot be found");
    /* a later shard opened first */
    CHECK_FAILS(load(shard(set, 1, n)), LB_ERR_FORMAT, "open the first shard");
    /* the first shard alone, by bytes: refused, not a model missing tensors */
    lb_mapped_file f;
    lb_model *bad = NULL;
    CHECK_OK(lb_map_file(shard(set, 0, n), &f));
    CHECK_FAILS(lb_model_from_gguf(f.data, f.size, &bad), LB_ERR_UNSUPPORTED, "shard 1 of a split set of");
    lb_unmap_file(&f);
    /* and the set itself still loads */
    CHECK_OK(load(shard(set, 0, n)));
}

/* hand-made shards: plain files carrying split keys as uint32 (accepted: any
 * integer type that fits), to reach the checks a consistent writer never trips */
static lb_status hand_shard(const char *path, int no, int count, int total, const char *tensor) {
    lb_gguf_writer *w;
    lb_status st = lb_gguf_writer_create(&w);
    if (st) return st;
    static const float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    uint64_t ne[1] = {8};
    if (!st) st = lb_gguf_set_u32(w, "split.no", (uint32_t)no);
    if (!st) st = lb_gguf_set_u32(w, "split.count", (uint32_t)count);
    if (!st) st = lb_gguf_set_i32(w, "split.tensors.count", total);
    if (!st) st = lb_gguf_add_tensor(w, tensor, LB_GGML_F32, 1, ne, x, sizeof x);
    if (!st) st = lb_gguf_write(w, path);
    lb_gguf_writer_free(w);
    return st;
}

static lb_status merge_files(const char *a, const char *b) {
    lb_mapped_file fa, fb;
    lb_gguf *g[2] = {NULL, NULL}, *out = NULL;
    lb_status st = lb_map_file(a, &fa);
    if (st) return st;
    if ((st = lb_map_file(b, &fb))) {
        lb_unmap_file(&fa);
        return st;
    }
    if (!(st = lb_gguf_parse(fa.data, fa.size, &g[0])) && !(st = lb_gguf_parse(fb.data, fb.size, &g[1]))) {
        st = lb_gguf_split_merge(g, 2, &out);
        if (!st && (lb_gguf_n_tensors(out) != 2 || lb_gguf_n_shards(out) != 2 || !lb_gguf_find_tensor(out, "b")))
            st = lb_fail(LB_ERR_INVALID, "merged view is wrong");
        lb_gguf_free(out);
    } else {
        lb_gguf_free(g[0]);
    }
    lb_unmap_file(&fa);
    lb_unmap_file(&fb);
    return st;
}

static void test_merge_checks(void) {
    const char *a = path_in("m-00001-of-00002.gguf"), *b = path_in("m-00002-of-00002.gguf");
    CHECK_OK(hand_shard(a, 0, 2, 2, "a"));
    CHECK_OK(hand_shard(b, 1, 2, 2, "b"));
    CHECK_OK(merge_files(a, b));
    CHECK_OK(hand_shard(b, 1, 2, 2, "a"));
    CHECK_FAILS(merge_files(a, b), LB_ERR_FORMAT, "tensor 'a' is in shard 1 and in shard 2");
    CHECK_OK(hand_shard(b, 1, 2, 3, "b"));
    CHECK_FAILS(merge_files(a, b), LB_ERR_FORMAT, "split.tensors.count 3, shard 1 2");
    CHECK_OK(hand_shard(a, 0, 2, 3, "a"));
    CHECK_FAILS(merge_files(a, b), LB_ERR_FORMAT, "hold 2 tensors, split.tensors.count says 3");
    CHECK_OK(hand_shard(b, 2, 2, 3, "b"));
    CHECK_FAILS(merge_files(a, b), LB_ERR_FORMAT, "split.no 2 is not below split.count 2");
    /* one key without the other */
    lb_gguf_writer *w;
    CHECK_OK(lb_gguf_writer_create(&w));
    CHECK_OK(lb_gguf_set_u32(w, "split.count", 2));
    CHECK_OK(lb_gguf_write(w, path_in("half.gguf")));
    lb_gguf_writer_free(w);
    CHECK_FAILS(load(path_in("half.gguf")), LB_ERR_FORMAT, "has split.count but no split.no");
    /* the writer: no tensors makes one shard; impossible limits fail before anything is made */
    CHECK_OK(lb_gguf_writer_create(&w));
    CHECK_OK(lb_gguf_set_str(w, "general.name", "empty"));
    int n = 0;
    lb_gguf_split_opts o = {1, 0};
    CHECK_OK(lb_gguf_write_split(w, path_in("empty.gguf"), &o, &n));
    CHECK(n == 1 && file_exists(path_in("empty-00001-of-00001.gguf")));
    lb_gguf_writer_free(w);
    char buf[16];
    CHECK_FAILS(lb_gguf_split_path(buf, sizeof buf, "a-long-prefix.gguf", 0, 2), LB_ERR_INVALID, "too long");
    CHECK_FAILS(lb_gguf_split_path(buf, sizeof buf, ".gguf", 0, 2), LB_ERR_INVALID, "no prefix");
}

/* a tensor whose bytes fail while being written, in the last shard */
static lb_status failing_fill(void *user, lb_atomic_file *f) {
    (void)user, (void)f;
    return lb_fail(LB_ERR_IO, "made to fail");
}

static void test_write_failures(const lb_model *m) {
    /* a fill that fails in the last shard: no shard, no temporary */
    lb_gguf_writer *w;
    CHECK_OK(lb_gguf_writer_create(&w));
    static const float x[64] = {0};
    uint64_t ne[1] = {64};
    CHECK_OK(lb_gguf_add_tensor(w, "t0", LB_GGML_F32, 1, ne, x, sizeof x));
    CHECK_OK(lb_gguf_add_tensor(w, "t1", LB_GGML_F32, 1, ne, x, sizeof x));
    CHECK_OK(lb_gguf_add_tensor_fill(w, "t2", LB_GGML_F32, 1, ne, sizeof x, failing_fill, (void *)x));
    lb_gguf_split_opts one = {0, 1};
    int n = -1;
    CHECK_FAILS(lb_gguf_write_split(w, path_in("fail.gguf"), &one, &n), LB_ERR_IO, "made to fail");
    CHECK(n == 0 && tmpdir_count("fail") == 0);
    lb_gguf_writer_free(w);
    /* a rename that fails after the first shards were renamed: those are removed again */
    lb_gguf_split_opts o = {60000, 0};
    CHECK_OK(lb_model_save_gguf_split(m, path_in("r.gguf"), NULL, NULL, NULL, &o, &n));
    for (int i = 0; i < n; i++) remove(shard(path_in("r.gguf"), i, n));
    CHECK(mkdir(shard(path_in("r.gguf"), n - 1, n), 0700) == 0);
    CHECK_FAILS(lb_model_save_gguf_split(m, path_in("r.gguf"), NULL, NULL, NULL, &o, &n), LB_ERR_IO, "is a directory");
    CHECK_MSG(tmpdir_count("r-0") == 1, "%d entries", tmpdir_count("r-0")); /* only the directory */
    CHECK(tmpdir_count(".tmp.") == 0);
}

int main(void) {
    const char *model = lb_test_data("models/stories260K.bin");
    if (tmpdir_make("split") != 0) return 1;
    lb_model *m = NULL;
    CHECK_OK(lb_model_load(model, lb_test_data("models/tok512.bin"), &m));
    if (m) {
        test_model_roundtrip(m);
        test_broken_sets(m);
        test_write_failures(m);
    }
    test_merge_checks();
    lb_model_free(m);
    CHECK(tmpdir_count(".tmp.") == 0);
    tmpdir_remove();
    return lb_test_finish("test_gguf_split");
}
