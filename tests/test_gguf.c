/* GGUF container: writer -> parser round trips (every value type, string and
 * numeric arrays, tensors of several ggml types, custom alignment), the exact
 * bytes the writer lays down, atomic-write behaviour on failure, and a
 * catalogue of hand-built corrupt files that must each fail with the right
 * status and message, including a valid file cut at every byte offset. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"
#include "tmpdir.h"

/* ---- a byte builder for hand-made files ---------------------------------- */
typedef struct {
    uint8_t *p;
    size_t n, cap;
} bytes;

static void put(bytes *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void put8(bytes *b, uint8_t v) { put(b, &v, 1); }
static void put32(bytes *b, uint32_t v) { put(b, &v, 4); } /* little-endian host */
static void put64(bytes *b, uint64_t v) { put(b, &v, 8); }
static void putstr(bytes *b, const char *s) {
    put64(b, strlen(s));
    put(b, s, strlen(s));
}
static void put_zeros(bytes *b, size_t n) {
    for (size_t i = 0; i < n; i++) put8(b, 0);
}
static void pad_to(bytes *b, size_t a) { put_zeros(b, (a - b->n % a) % a); }
static void put_header(bytes *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    put(b, "GGUF", 4);
    put32(b, version);
    put64(b, n_tensors);
    put64(b, n_kv);
}
static void put_kv_u32(bytes *b, const char *key, uint32_t v) {
    putstr(b, key);
    put32(b, LB_GGUF_UINT32);
    put32(b, v);
}

typedef struct {
    const char *name;
    uint32_t n_dims;
    uint64_t ne[4];
    uint32_t type;
    uint64_t offset;
} tdesc;

static void put_tinfo(bytes *b, const tdesc *t) {
    putstr(b, t->name);
    put32(b, t->n_dims);
    for (uint32_t d = 0; d < t->n_dims; d++) put64(b, d < 4 ? t->ne[d] : 1);
    put32(b, t->type);
    put64(b, t->offset);
}

/* A v3 file with no keys, n tensors, default alignment, data_bytes of data. */
static void build_tensors(bytes *b, const tdesc *t, int n, size_t data_bytes) {
    put_header(b, 3, (uint64_t)n, 0);
    for (int i = 0; i < n; i++) put_tinfo(b, &t[i]);
    pad_to(b, 32);
    put_zeros(b, data_bytes);
}

/* Parses a copy of exactly len bytes (so ASan sees any overread). */
static lb_status parse_len(const uint8_t *p, size_t len) {
    uint8_t *copy = malloc(len ? len : 1);
    if (len) memcpy(copy, p, len);
    lb_gguf *g = NULL;
    lb_status st = lb_gguf_parse(copy, len, &g);
    CHECK((st == LB_OK) == (g != NULL));
    lb_gguf_free(g);
    free(copy);
    return st;
}
static lb_status parse_bytes(bytes *b) {
    lb_status st = parse_len(b->p, b->n);
    free(b->p);
    memset(b, 0, sizeof *b);
    return st;
}

/* ---- files ------------------------------------------------------------------ */
static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* ---- round trips -------------------------------------------------------------- */
static const lb_gguf_type numeric_types[] = {
    LB_GGUF_UINT8, LB_GGUF_INT8,   LB_GGUF_UINT16, LB_GGUF_INT16,  LB_GGUF_UINT32, LB_GGUF_INT32,
    LB_GGUF_FLOAT32, LB_GGUF_BOOL, LB_GGUF_UINT64, LB_GGUF_INT64, LB_GGUF_FLOAT64};
static const size_t numeric_sizes[] = {1, 1, 2, 2, 4, 4, 4, 1, 8, 8, 8};
#define N_NUMERIC (sizeof numeric_types / sizeof numeric_types[0])

static void test_kv_roundtrip(void) {
    uint8_t arrays[N_NUMERIC][5 * 8];
    const char *strs[] = {"a", "", "hello world", "\xe2\x82\xac"};
    const char *nul_strs[] = {"x\0y", "zz"};
    const size_t nul_lens[] = {3, 2};
    char key[64];
    lb_gguf_writer *w = NULL;
    CHECK_OK(lb_gguf_writer_create(&w));
    CHECK_OK(lb_gguf_set_str(w, "general.architecture", "llama"));
    CHECK_OK(lb_gguf_set_str(w, "t.replaced", "first"));
    CHECK_OK(lb_gguf_set_u32(w, "t.u32", 4000000000u));
    CHECK_OK(lb_gguf_set_i32(w, "t.i32", -123456));
    CHECK_OK(lb_gguf_set_u64(w, "t.u64", UINT64_MAX - 5));
    CHECK_OK(lb_gguf_set_f32(w, "t.f32", 3.25f));
    CHECK_OK(lb_gguf_set_bool(w, "t.true", 7));
    CHECK_OK(lb_gguf_set_bool(w, "t.false", 0));
    CHECK_OK(lb_gguf_set_str(w, "t.empty", ""));
    for (size_t t = 0; t < N_NUMERIC; t++) {
        for (size_t i = 0; i < sizeof arrays[t]; i++)
            arrays[t][i] = numeric_types[t] == LB_GGUF_BOOL ? (uint8_t)(i & 1)
                                                             : (uint8_t)(i * 37 + t * 11 + 1);
        snprintf(key, sizeof key, "arr.%d", (int)numeric_types[t]);
        CHECK_OK(lb_gguf_set_arr(w, key, numeric_types[t], arrays[t], 5));
    }
    CHECK_OK(lb_gguf_set_arr(w, "arr.empty", LB_GGUF_FLOAT32, NULL, 0));
    CHECK_OK(lb_gguf_set_arr_str(w, "arr.str", strs, NULL, 4));
    CHECK_OK(lb_gguf_set_arr_str(w, "arr.str_nul", nul_strs, nul_lens, 2));
    CHECK_OK(lb_gguf_set_arr_str(w, "arr.str_empty", NULL, NULL, 0));
    CHECK_OK(lb_gguf_set_str(w, "t.replaced", "second")); /* keeps its first position */
    CHECK_FAILS(lb_gguf_set_arr(w, "bad", LB_GGUF_STRING, strs, 1), LB_ERR_INVALID, "is not numeric");
    CHECK_FAILS(lb_gguf_set_arr(w, "bad", LB_GGUF_ARRAY, strs, 1), LB_ERR_INVALID, "is not numeric");
    CHECK_FAILS(lb_gguf_set_u32(w, "", 1), LB_ERR_INVALID, "key");
    CHECK_OK(lb_gguf_write(w, path_in("kv.gguf")));
    lb_gguf_writer_free(w);

    lb_mapped_file f;
    lb_gguf *g = NULL;
    CHECK_OK(lb_map_file(path_in("kv.gguf"), &f));
    CHECK_OK(lb_gguf_parse(f.data, f.size, &g));
    if (!g) {
        lb_unmap_file(&f);
        return;
    }
    CHECK(lb_gguf_version(g) == 3);
    CHECK(lb_gguf_alignment(g) == 32);
    CHECK(lb_gguf_n_tensors(g) == 0);
    CHECK(lb_gguf_n_kv(g) == 9 + (int64_t)N_NUMERIC + 4);
    CHECK(lb_gguf_data_offset(g) % 32 == 0 && lb_gguf_data_offset(g) == f.size);
    size_t len;
    const char *k = lb_gguf_key(g, 1, &len);
    CHECK(k && len == 10 && memcmp(k, "t.replaced", 10) == 0);
    CHECK(lb_gguf_find_key(g, "t.replaced") == 1);
    CHECK(lb_gguf_find_key(g, "t.replace") == -1);
    CHECK(lb_gguf_key(g, -1, &len) == NULL && lb_gguf_key(g, lb_gguf_n_kv(g), &len) == NULL);
    CHECK(lb_gguf_kv_type(g, 2) == LB_GGUF_UINT32);
    CHECK(lb_gguf_kv_type(g, lb_gguf_find_key(g, "arr.str")) == LB_GGUF_ARRAY);

    const char *s;
    uint32_t u32;
    uint64_t u64;
    int64_t i64;
    float f32;
    int b;
    CHECK_OK(lb_gguf_get_str(g, "t.replaced", &s, &len));
    CHECK(len == 6 && memcmp(s, "second", 6) == 0);
    CHECK_OK(lb_gguf_get_str(g, "t.empty", &s, &len));
    CHECK(len == 0);
    CHECK_OK(lb_gguf_get_u32(g, "t.u32", &u32));
    CHECK(u32 == 4000000000u);
    CHECK_OK(lb_gguf_get_u64(g, "t.u32", &u64));
    CHECK(u64 == 4000000000u);
    CHECK_OK(lb_gguf_get_i64(g, "t.i32", &i64));
    CHECK(i64 == -123456);
    CHECK_OK(lb_gguf_get_u64(g, "t.u64", &u64));
    CHECK(u64 == UINT64_MAX - 5);
    CHECK_OK(lb_gguf_get_f32(g, "t.f32", &f32));
    CHECK(f32 == 3.25f);
    CHECK_OK(lb_gguf_get_bool(g, "t.true", &b));
    CHECK(b == 1);
    CHECK_OK(lb_gguf_get_bool(g, "t.false", &b));
    CHECK(b == 0);
    /* typed getter errors name the key */
    CHECK_FAILS(lb_gguf_get_u32(g, "t.u64", &u32), LB_ERR_FORMAT, "'t.u64' (uint64) value does not fit uint32");
    CHECK_FAILS(lb_gguf_get_i64(g, "t.u64", &i64), LB_ERR_FORMAT, "does not fit int64");
    CHECK_FAILS(lb_gguf_get_u64(g, "t.i32", &u64), LB_ERR_FORMAT, "does not fit uint64");
    CHECK_FAILS(lb_gguf_get_u32(g, "t.f32", &u32), LB_ERR_FORMAT, "expected an integer");
    CHECK_FAILS(lb_gguf_get_u32(g, "t.true", &u32), LB_ERR_FORMAT, "expected an integer");
    CHECK_FAILS(lb_gguf_get_f32(g, "t.u32", &f32), LB_ERR_FORMAT, "'t.u32' has type uint32");
    CHECK_FAILS(lb_gguf_get_str(g, "no.such.key", &s, &len), LB_ERR_FORMAT, "'no.such.key' is missing");
    CHECK_FAILS(lb_gguf_get_bool(g, "t.u32", &b), LB_ERR_FORMAT, "expected bool");

    for (size_t t = 0; t < N_NUMERIC; t++) {
        lb_gguf_type et;
        uint64_t n;
        const uint8_t *el;
        snprintf(key, sizeof key, "arr.%d", (int)numeric_types[t]);
        CHECK_OK(lb_gguf_get_arr(g, key, &et, &n, &el));
        CHECK_MSG(et == numeric_types[t] && n == 5 && el &&
                      memcmp(el, arrays[t], 5 * numeric_sizes[t]) == 0,
                  "array of type %d", (int)numeric_types[t]);
    }
    lb_gguf_type et;
    uint64_t n;
    const uint8_t *el;
    CHECK_OK(lb_gguf_get_arr(g, "arr.empty", &et, &n, &el));
    CHECK(et == LB_GGUF_FLOAT32 && n == 0);
    CHECK_OK(lb_gguf_get_arr(g, "arr.str", &et, &n, &el));
    CHECK(et == LB_GGUF_STRING && n == 4 && el == NULL);
    for (uint64_t i = 0; i < 4; i++) {
        CHECK_OK(lb_gguf_get_arr_str(g, "arr.str", i, &s, &len));
        CHECK(len == strlen(strs[i]) && memcmp(s, strs[i], len) == 0);
    }
    CHECK_OK(lb_gguf_get_arr_str(g, "arr.str_nul", 0, &s, &len));
    CHECK(len == 3 && memcmp(s, "x\0y", 3) == 0);
    CHECK_OK(lb_gguf_get_arr_str(g, "arr.str_nul", 1, &s, &len));
    CHECK(len == 2 && memcmp(s, "zz", 2) == 0);
    CHECK_OK(lb_gguf_get_arr(g, "arr.str_empty", &et, &n, NULL));
    CHECK(et == LB_GGUF_STRING && n == 0);
    CHECK_FAILS(lb_gguf_get_arr_str(g, "arr.str", 4, &s, &len), LB_ERR_INVALID, "out of range");
    CHECK_FAILS(lb_gguf_get_arr_str(g, "arr.str_empty", 0, &s, &len), LB_ERR_INVALID, "out of range");
    CHECK_FAILS(lb_gguf_get_arr_str(g, "arr.0", 0, &s, &len), LB_ERR_FORMAT, "array of uint8");
    CHECK_FAILS(lb_gguf_get_arr(g, "t.u32", &et, &n, &el), LB_ERR_FORMAT, "expected array");
    lb_gguf_free(g);
    lb_unmap_file(&f);
}

/* Scalar types the writer has no setter for, in a hand-built v2 file. */
static void test_all_scalar_types(void) {
    bytes b = {0};
    put_header(&b, 2, 0, 7);
    putstr(&b, "u8"), put32(&b, LB_GGUF_UINT8), put8(&b, 200);
    putstr(&b, "i8"), put32(&b, LB_GGUF_INT8), put8(&b, (uint8_t)-5);
    putstr(&b, "u16"), put32(&b, LB_GGUF_UINT16), put(&b, &(uint16_t){65535}, 2);
    putstr(&b, "i16"), put32(&b, LB_GGUF_INT16), put(&b, &(int16_t){-300}, 2);
    putstr(&b, "i64"), put32(&b, LB_GGUF_INT64), put(&b, &(int64_t){-((int64_t)1 << 40)}, 8);
    putstr(&b, "f64"), put32(&b, LB_GGUF_FLOAT64), put(&b, &(double){0.5}, 8);
    putstr(&b, "i64max"), put32(&b, LB_GGUF_INT64), put(&b, &(int64_t){INT64_MAX}, 8);
    pad_to(&b, 32);
    lb_gguf *g = NULL;
    CHECK_OK(lb_gguf_parse(b.p, b.n, &g));
    if (g) {
        uint32_t u32;
        int64_t i64;
        uint64_t u64;
        float f;
        CHECK(lb_gguf_version(g) == 2);
        CHECK(lb_gguf_get_u32(g, "u8", &u32) == LB_OK && u32 == 200);
        CHECK(lb_gguf_get_i64(g, "i8", &i64) == LB_OK && i64 == -5);
        CHECK(lb_gguf_get_u32(g, "u16", &u32) == LB_OK && u32 == 65535);
        CHECK(lb_gguf_get_i64(g, "i16", &i64) == LB_OK && i64 == -300);
        CHECK(lb_gguf_get_i64(g, "i64", &i64) == LB_OK && i64 == -((int64_t)1 << 40));
        CHECK(lb_gguf_get_u64(g, "i64max", &u64) == LB_OK && u64 == (uint64_t)INT64_MAX);
        CHECK(lb_gguf_get_f32(g, "f64", &f) == LB_OK && f == 0.5f);
        CHECK_FAILS(lb_gguf_get_u32(g, "i8", &u32), LB_ERR_FORMAT, "'i8' (int8) value does not fit uint32");
        CHECK_FAILS(lb_gguf_get_u32(g, "i64max", &u32), LB_ERR_FORMAT, "does not fit uint32");
        CHECK(lb_gguf_kv_type(g, 0) == LB_GGUF_UINT8 && lb_gguf_kv_type(g, 5) == LB_GGUF_FLOAT64);
        lb_gguf_free(g);
    }
    free(b.p);
}

/* The tensors every tensor test writes: several ggml types and ranks. */
typedef struct {
    const char *name;
    int type;
    uint32_t n_dims;
    uint64_t ne[4];
    size_t nbytes;
    uint8_t data[160];
} test_tensor;

static test_tensor tensors[] = {
    {"tok_embd.weight", LB_GGML_F32, 2, {8, 3}, 96, {0}},
    {"output_norm.weight", LB_GGML_F16, 1, {64}, 128, {0}},
    {"blk.0.attn_q.weight", LB_GGML_Q4_0, 2, {64, 2}, 72, {0}}, /* 2x2 blocks of 18 bytes */
    {"blk.0.idx", LB_GGML_I8, 3, {5, 3, 2}, 30, {0}},
    {"blk.0.ffn_up.weight", LB_GGML_Q8_0, 4, {32, 1, 2, 2}, 136, {0}}, /* 4 blocks of 34 */
};
#define N_TENSORS (int)(sizeof tensors / sizeof tensors[0])

static lb_status write_tensors(const char *path, uint32_t alignment) {
    lb_gguf_writer *w = NULL;
    CHECK_OK(lb_gguf_writer_create(&w));
    lb_status st = lb_gguf_set_str(w, "general.architecture", "test");
    if (alignment) st = st ? st : lb_gguf_set_u32(w, "general.alignment", alignment);
    for (int i = 0; i < N_TENSORS && !st; i++)
        st = lb_gguf_add_tensor(w, tensors[i].name, tensors[i].type, tensors[i].n_dims,
                                tensors[i].ne, tensors[i].data, tensors[i].nbytes);
    st = st ? st : lb_gguf_write(w, path);
    lb_gguf_writer_free(w);
    return st;
}

static void check_tensors(const char *path, size_t alignment) {
    lb_mapped_file f;
    lb_gguf *g = NULL;
    CHECK_OK(lb_map_file(path, &f));
    CHECK_OK(lb_gguf_parse(f.data, f.size, &g));
    if (!g) {
        lb_unmap_file(&f);
        return;
    }
    CHECK(lb_gguf_alignment(g) == alignment);
    CHECK(lb_gguf_data_offset(g) % alignment == 0);
    CHECK(f.size % alignment == 0); /* the last tensor is padded too */
    CHECK(lb_gguf_n_tensors(g) == N_TENSORS);
    uint64_t expect_offset = 0;
    for (int i = 0; i < N_TENSORS; i++) {
        const test_tensor *want = &tensors[i];
        const lb_gguf_tensor *t = lb_gguf_find_tensor(g, want->name);
        CHECK_MSG(t == lb_gguf_tensor_at(g, i), "tensor %d order", i);
        if (!t) continue;
        CHECK(t->name_len == strlen(want->name) && memcmp(t->name, want->name, t->name_len) == 0);
        CHECK(t->type == want->type && t->n_dims == want->n_dims && t->nbytes == want->nbytes);
        for (int d = 0; d < 4; d++) CHECK(t->ne[d] == (d < (int)want->n_dims ? want->ne[d] : 1));
        CHECK(t->offset == expect_offset); /* packed in order, as ggml's reader requires */
        CHECK(t->data == f.data + lb_gguf_data_offset(g) + t->offset);
        CHECK_MSG(memcmp(t->data, want->data, want->nbytes) == 0, "tensor '%s' bytes", want->name);
        expect_offset += (want->nbytes + alignment - 1) / alignment * alignment;
    }
    CHECK(lb_gguf_find_tensor(g, "missing") == NULL);
    CHECK(lb_gguf_find_tensor(g, "blk.0") == NULL);
    CHECK(lb_gguf_tensor_at(g, N_TENSORS) == NULL && lb_gguf_tensor_at(g, -1) == NULL);
    lb_gguf_free(g);
    lb_unmap_file(&f);
}

static void test_tensor_roundtrip(void) {
    lb_rng rng;
    lb_rng_seed(&rng, 42);
    for (int i = 0; i < N_TENSORS; i++)
        for (size_t j = 0; j < tensors[i].nbytes; j++)
            tensors[i].data[j] = (uint8_t)lb_rng_u32(&rng);
    CHECK_OK(write_tensors(path_in("t.gguf"), 0));
    check_tensors(path_in("t.gguf"), 32);
    /* deterministic: the same input writes the same bytes */
    CHECK_OK(write_tensors(path_in("t2.gguf"), 0));
    char *a, *b;
    size_t na, nb;
    CHECK_OK(lb_read_file(path_in("t.gguf"), &a, &na));
    CHECK_OK(lb_read_file(path_in("t2.gguf"), &b, &nb));
    CHECK(na == nb && memcmp(a, b, na) == 0);
    lb_free(a);
    lb_free(b);

    CHECK_OK(write_tensors(path_in("a64.gguf"), 64));
    check_tensors(path_in("a64.gguf"), 64);
    CHECK_OK(write_tensors(path_in("a4096.gguf"), 4096));
    check_tensors(path_in("a4096.gguf"), 4096);
    CHECK_FAILS(write_tensors(path_in("a48.gguf"), 48), LB_ERR_INVALID, "power of two");
    CHECK(!file_exists(path_in("a48.gguf")));
    lb_gguf_writer *w = NULL;
    CHECK_OK(lb_gguf_writer_create(&w));
    CHECK_OK(lb_gguf_set_u64(w, "general.alignment", 64));
    CHECK_FAILS(lb_gguf_write(w, path_in("a64u.gguf")), LB_ERR_INVALID, "uint32");
    CHECK(!file_exists(path_in("a64u.gguf")));
    lb_gguf_writer_free(w);
}

/* The writer's bytes, field by field, against a hand-built file. */
static void test_exact_layout(void) {
    const uint8_t data[3] = {1, 2, 3};
    const uint64_t ne[1] = {3};
    lb_gguf_writer *w = NULL;
    CHECK_OK(lb_gguf_writer_create(&w));
    CHECK_OK(lb_gguf_set_u32(w, "a", 7));
    CHECK_OK(lb_gguf_add_tensor(w, "t", LB_GGML_I8, 1, ne, data, 3));
    CHECK_OK(lb_gguf_write(w, path_in("exact.gguf")));
    lb_gguf_writer_free(w);
    bytes b = {0};
    put_header(&b, 3, 1, 1);
    put_kv_u32(&b, "a", 7);
    put_tinfo(&b, &(tdesc){"t", 1, {3}, LB_GGML_I8, 0});
    pad_to(&b, 32);
    put(&b, data, 3);
    pad_to(&b, 32);
    char *got;
    size_t n;
    CHECK_OK(lb_read_file(path_in("exact.gguf"), &got, &n));
    CHECK_MSG(n == b.n && memcmp(got, b.p, n) == 0, "wrote %zu bytes, expected %zu", n, b.n);
    lb_free(got);
    free(b.p);
}

static void test_writer_failures(void) {
    uint8_t buf[256] = {0};
    lb_gguf_writer *w = NULL;
    CHECK_OK(lb_gguf_writer_create(&w));
    const uint64_t ne2[2] = {32, 2}, ne48[1] = {48}, ne0[2] = {4, 0};
    CHECK_FAILS(lb_gguf_add_tensor(w, "x", LB_GGML_F32, 2, ne2, buf, 255), LB_ERR_INVALID, "need 256");
    CHECK_FAILS(lb_gguf_add_tensor(w, "x", LB_GGML_F32, 0, ne2, buf, 0), LB_ERR_INVALID, "dimensions");
    CHECK_FAILS(lb_gguf_add_tensor(w, "x", LB_GGML_F32, 5, ne2, buf, 256), LB_ERR_INVALID, "dimensions");
    CHECK_FAILS(lb_gguf_add_tensor(w, "x", LB_GGML_F32, 2, ne0, buf, 0), LB_ERR_INVALID, "ne[1] = 0");
    CHECK_FAILS(lb_gguf_add_tensor(w, "x", 4, 2, ne2, buf, 36), LB_ERR_INVALID, "unknown ggml type 4");
    CHECK_FAILS(lb_gguf_add_tensor(w, "x", LB_GGML_Q4_0, 1, ne48, buf, 27), LB_ERR_INVALID, "block size 32");
    CHECK_FAILS(lb_gguf_add_tensor(w, "x", LB_GGML_F32, 2, ne2, NULL, 256), LB_ERR_INVALID, "NULL data");
    CHECK_FAILS(lb_gguf_add_tensor(w, "", LB_GGML_F32, 2, ne2, buf, 256), LB_ERR_INVALID, "name");
    CHECK_FAILS(lb_gguf_add_tensor(w, "0123456789012345678901234567890123456789012345678901234567890123",
                                   LB_GGML_F32, 2, ne2, buf, 256),
                LB_ERR_INVALID, "1..63 bytes");
    CHECK_OK(lb_gguf_add_tensor(w, "x", LB_GGML_F32, 2, ne2, buf, 256));
    CHECK_FAILS(lb_gguf_add_tensor(w, "x", LB_GGML_F32, 2, ne2, buf, 256), LB_ERR_INVALID, "added twice");

    /* nothing is created when the directory is missing */
    CHECK_FAILS(lb_gguf_write(w, path_in("no/such/dir.gguf")), LB_ERR_IO, "cannot create");
    CHECK(!file_exists(path_in("no")));
    /* a failure at the very end (commit refuses to replace a directory) removes the temporary */
    CHECK(mkdir(path_in("isdir"), 0700) == 0);
    CHECK_FAILS(lb_gguf_write(w, path_in("isdir")), LB_ERR_IO, "is a directory");
    struct stat st;
    CHECK(stat(path_in("isdir"), &st) == 0 && S_ISDIR(st.st_mode));
    CHECK(tmpdir_count(".tmp.") == 0);
    lb_gguf_writer_free(w);
}

/* A valid file cut short anywhere before its last tensor byte must fail as
 * FORMAT (and never read past the cut); from there on it is complete. */
static void test_truncation(void) {
    lb_mapped_file f;
    lb_gguf *g = NULL;
    CHECK_OK(lb_map_file(path_in("t.gguf"), &f));
    CHECK_OK(lb_gguf_parse(f.data, f.size, &g));
    if (!g) {
        lb_unmap_file(&f);
        return;
    }
    size_t end = 0;
    for (int64_t i = 0; i < lb_gguf_n_tensors(g); i++) {
        const lb_gguf_tensor *t = lb_gguf_tensor_at(g, i);
        size_t e = lb_gguf_data_offset(g) + t->offset + t->nbytes;
        if (e > end) end = e;
    }
    lb_gguf_free(g);
    CHECK(end > 0 && end <= f.size);
    size_t wrong = 0, first_wrong = 0;
    for (size_t len = 0; len <= f.size; len++) {
        lb_status st = parse_len(f.data, len);
        if (st != (len < end ? LB_ERR_FORMAT : LB_OK) && wrong++ == 0) first_wrong = len;
    }
    CHECK_MSG(wrong == 0, "%zu of %zu truncations misjudged, first at %zu", wrong, f.size + 1,
              first_wrong);
    lb_unmap_file(&f);
}

static void test_bad_headers(void) {
    bytes b = {0};
    CHECK_FAILS(parse_len(NULL, 0), LB_ERR_FORMAT, "truncated: magic");
    put(&b, "GGUX", 4), put32(&b, 3), put64(&b, 0), put64(&b, 0), pad_to(&b, 32);
    CHECK_FAILS(parse_bytes(&b), LB_ERR_FORMAT, "bad magic 47 47 55 58");
    put_header(&b, 1, 0, 0), pad_to(&b, 32);
    CHECK_FAILS(parse_bytes(&b), LB_ERR_UNSUPPORTED, "version 1");
    put_header(&b, 4, 0, 0), pad_to(&b, 32);
    CHECK_FAILS(parse_bytes(&b), LB_ERR_UNSUPPORTED, "version 4");
    put_header(&b, 0x03000000, 0, 0), pad_to(&b, 32);
    CHECK_FAILS(parse_bytes(&b), LB_ERR_UNSUPPORTED, "big-endian");
    put_header(&b, 3, (uint64_t)1 << 60, 0), put_zeros(&b, 100);
    CHECK_FAILS(parse_bytes(&b), LB_ERR_FORMAT, "1152921504606846976 tensors");
    put_header(&b, 3, 0, (uint64_t)1 << 60), put_zeros(&b, 100);
    CHECK_FAILS(parse_bytes(&b), LB_ERR_FORMAT, "header claims 1152921504606846976 keys");
    put_header(&b, 3, UINT64_MAX, UINT64_MAX), put_zeros(&b, 100);
    CHECK_FAILS(parse_bytes(&b), LB_ERR_FORMAT, "more than the");
    /* an empty, valid file parses, also without the padding before its
     * (empty) data section: gguf-py ends tensor-less files right after the
     * keys, as in llama.cpp's vocab-only test files. With a tensor the
     * padding must be there. */
    put_header(&b, 3, 0, 0), pad_to(&b, 32);
    CHECK_OK(parse_bytes(&b));
    put_header(&b, 3, 0, 0);
    CHECK_OK(parse_bytes(&b));
    put_header(&b, 3, 1, 0), put_tinfo(&b, &(tdesc){"t", 1, {1}, LB_GGML_I8, 0});
    CHECK_FAILS(parse_bytes(&b), LB_ERR_FORMAT, "data section");
}

static void test_bad_kvs(void) {
    bytes b = {0};
    put_header(&b, 3, 0, 1), putstr(&b, "k"), put32(&b, 13), put32(&b, 0), pad_to(&b, 32);
    CHECK_FAILS(parse_bytes(&b), LB_ERR_FORMAT, "key 'k': unknown value type 13");
    put_header(&b, 3, 0, 1), putstr(&b, "k"), put32(&b, LB_GGUF_ARRAY), put32(&b, LB_GGUF_ARRAY);
    put64(&b, 1), put32(&b, LB_GGUF_UINT8), put64(&b, 1), put8(&b, 0), pad_to(&b, 32);
    CHECK_FAILS(parse_bytes(&b), LB_ERR_UNSUPPORTED, "nested arrays");
    put_header(&b, 3, 0, 1), putstr(&b, "k"), put32(&b, LB_GGUF_ARRAY), put32(&b, 99);
    put64(&b, 0), pad_to(&b, 32);
    CHECK_FAILS(parse_bytes(&b), LB_ERR_FORMAT, "unknown array element type 99");
    put_header(&b, 3, 0, 1), putstr(&b, "k"), put32(&b, LB_GGUF_ARRAY), put32(&b, LB_GGUF_UINT32);
    put64(&b, (uint64_t)1 << 62), pad_to(&b, 64);
    CHECK_FAILS(parse_bytes(&b), LB_ERR_FORMAT, "cannot fit");
    put_header(&b, 3, 0, 1), putstr(&b, "k"), put32(&b, LB_GGUF_ARRAY), put32(&b, LB_GGUF_STRING);
    put64(&b, 2), putstr(&b, "ok"), put64(&b, 1000), pad_to(&b, 64);
    CHECK_FAILS(parse_bytes(&b), LB_ERR_FORMAT, "element 1: truncated");
    put_header(&b, 3, 0, 1), putstr(&b, "k"), put32(&b, LB_GGUF_STRING), put64(&b, 1000);
    pad_to(&b, 64);
    CHECK_FAILS(parse_bytes(&b), LB_ERR_FORMAT, "key 'k': truncated: string");
    put_header(&b, 3, 0, 1), put64(&b, UINT64_MAX), pad_to(&b, 64);
    CHECK_FAILS(parse_bytes(&b), LB_ERR_FORMAT, "key 0: truncated");
    put_header(&b, 3, 0, 1), putstr(&b, "k"), put32(&b, LB_GGUF_BOOL), put8(&b, 2), pad_to(&b, 32);
    CHECK_FAILS(parse_bytes(&b), LB_ERR_FORMAT, "must be 0 or 1");
    put_header(&b, 3, 0, 1), putstr(&b, "k"), put32(&b, LB_GGUF_ARRAY), put32(&b, LB_GGUF_BOOL);
    put64(&b, 3), put8(&b, 1), put8(&b, 0), put8(&b, 9), pad_to(&b, 32);
    CHECK_FAILS(parse_bytes(&b), LB_ERR_FORMAT, "bool element 2");
    put_header(&b, 3, 0, 1), put64(&b, 3), put(&b, "a\0b", 3), put32(&b, LB_GGUF_UINT8);
    put8(&b, 0), pad_to(&b, 32);
    CHECK_FAILS(parse_bytes(&b), LB_ERR_FORMAT, "NUL byte");
    put_header(&b, 3, 0, 3), put_kv_u32(&b, "a", 1), put_kv_u32(&b, "dup", 2);
    put_kv_u32(&b, "dup", 3), pad_to(&b, 32);
    CHECK_FAILS(parse_bytes(&b), LB_ERR_FORMAT, "duplicate key 'dup' (at bytes 41 and 60)");
    put_header(&b, 3, 0, 1), put_kv_u32(&b, "general.alignment", 48), pad_to(&b, 64);
    CHECK_FAILS(parse_bytes(&b), LB_ERR_FORMAT, "general.alignment 48 is not a power of two");
    put_header(&b, 3, 0, 1), put_kv_u32(&b, "general.alignment", 0), pad_to(&b, 64);
    CHECK_FAILS(parse_bytes(&b), LB_ERR_FORMAT, "not a power of two");
    put_header(&b, 3, 0, 1), putstr(&b, "general.alignment"), put32(&b, LB_GGUF_UINT64);
    put64(&b, 64), pad_to(&b, 64);
    CHECK_FAILS(parse_bytes(&b), LB_ERR_FORMAT, "general.alignment has type uint64 (must be uint32)");
    /* a valid custom alignment moves the data section */
    put_header(&b, 3, 1, 1), put_kv_u32(&b, "general.alignment", 256);
    put_tinfo(&b, &(tdesc){"t", 1, {1}, LB_GGML_I8, 0}), pad_to(&b, 64);
    CHECK_FAILS(parse_bytes(&b), LB_ERR_FORMAT, "next multiple of 256");
}

static void test_bad_tensors(void) {
    bytes b = {0};
    const uint32_t F32 = LB_GGML_F32, Q4_0 = LB_GGML_Q4_0;
    build_tensors(&b, (tdesc[]){{"w", 2, {4, 2}, F32, 0}}, 1, 32);
    CHECK_OK(parse_bytes(&b));
    build_tensors(&b, (tdesc[]){{"w", 2, {4, 2}, 4, 0}}, 1, 32);
    CHECK_FAILS(parse_bytes(&b), LB_ERR_UNSUPPORTED, "tensor 'w' has unknown ggml type 4");
    build_tensors(&b, (tdesc[]){{"w", 2, {4, 2}, 0xffffffffu, 0}}, 1, 32);
    CHECK_FAILS(parse_bytes(&b), LB_ERR_UNSUPPORTED, "unknown ggml type 4294967295");
    build_tensors(&b, (tdesc[]){{"q", 2, {48, 2}, Q4_0, 0}}, 1, 64);
    CHECK_FAILS(parse_bytes(&b), LB_ERR_FORMAT, "ne[0] = 48, not a multiple of the block size 32");
    build_tensors(&b, (tdesc[]){{"w", 0, {4}, F32, 0}}, 1, 32);
    CHECK_FAILS(parse_bytes(&b), LB_ERR_FORMAT, "tensor 'w' has 0 dimensions");
    build_tensors(&b, (tdesc[]){{"w", 5, {4}, F32, 0}}, 1, 32);
    CHECK_FAILS(parse_bytes(&b), LB_ERR_FORMAT, "tensor 'w' has 5 dimensions");
    build_tensors(&b, (tdesc[]){{"w", 3, {4, 1, 0}, F32, 0}}, 1, 32);
    CHECK_FAILS(parse_bytes(&b), LB_ERR_FORMAT, "ne[2] = 0");
    build_tensors(&b, (tdesc[]){{"w", 2, {(uint64_t)1 << 32, (uint64_t)1 << 31}, F32, 0}}, 1, 32);
    CHECK_FAILS(parse_bytes(&b), LB_ERR_FORMAT, "has 2^63 or more elements");
    build_tensors(&b, (tdesc[]){{"w", 1, {4}, F32, 16}}, 1, 64);
    CHECK_FAILS(parse_bytes(&b), LB_ERR_FORMAT, "tensor 'w' offset 16 is not aligned to 32");
    build_tensors(&b, (tdesc[]){{"a", 1, {16}, F32, 0}, {"b", 1, {16}, F32, 32}}, 2, 96);
    CHECK_FAILS(parse_bytes(&b), LB_ERR_FORMAT, "tensors 'a' (data offset 0, 64 bytes) and 'b' (data offset 32) overlap");
    /* overlap is found whatever the order of the infos */
    build_tensors(&b, (tdesc[]){{"b", 1, {8}, F32, 64}, {"c", 1, {8}, F32, 128}, {"a", 1, {32}, F32, 0}}, 3, 160);
    CHECK_FAILS(parse_bytes(&b), LB_ERR_FORMAT, "tensors 'a' (data offset 0, 128 bytes) and 'b' (data offset 64) overlap");
    build_tensors(&b, (tdesc[]){{"a", 1, {8}, F32, 0}, {"b", 1, {8}, F32, 32}}, 2, 32);
    CHECK_FAILS(parse_bytes(&b), LB_ERR_FORMAT, "tensor 'b' data (offset 128, 32 bytes) runs past the end of the file (128 bytes)");
    build_tensors(&b, (tdesc[]){{"a", 1, {8}, F32, (uint64_t)1 << 63}}, 1, 32);
    CHECK_FAILS(parse_bytes(&b), LB_ERR_FORMAT, "runs past the end of the file");
    build_tensors(&b, (tdesc[]){{"x", 1, {8}, F32, 0}, {"x", 1, {8}, F32, 32}}, 2, 64);
    CHECK_FAILS(parse_bytes(&b), LB_ERR_FORMAT, "duplicate tensor name 'x'");
    build_tensors(&b, (tdesc[]){{"w", 1, {8}, F32, 0}}, 1, 32);
    b.p[24 + 8] = 0; /* the name "w" becomes "\0" */
    CHECK_FAILS(parse_bytes(&b), LB_ERR_FORMAT, "contains a NUL byte");
    /* a tensor info cut inside its dims */
    put_header(&b, 3, 1, 0), putstr(&b, "w"), put32(&b, 4), put64(&b, 4), put_zeros(&b, 26);
    CHECK_FAILS(parse_bytes(&b), LB_ERR_FORMAT, "tensor 'w': truncated: ggml type");
    /* with general.alignment 64 the data section and offsets follow it */
    put_header(&b, 3, 2, 1), put_kv_u32(&b, "general.alignment", 64);
    put_tinfo(&b, &(tdesc){"a", 1, {8}, F32, 0}), put_tinfo(&b, &(tdesc){"b", 1, {8}, F32, 32});
    pad_to(&b, 64), put_zeros(&b, 128);
    CHECK_FAILS(parse_bytes(&b), LB_ERR_FORMAT, "offset 32 is not aligned to 64");
}

int main(void) {
    if (tmpdir_make("gguf") != 0) return 1;
    test_kv_roundtrip();
    test_all_scalar_types();
    test_tensor_roundtrip();
    test_exact_layout();
    test_writer_failures();
    test_truncation();
    test_bad_headers();
    test_bad_kvs();
    test_bad_tensors();
    CHECK(tmpdir_count(".tmp.") == 0);
    tmpdir_remove();
    CHECK(!file_exists(tmpdir));
    return lb_test_finish("test_gguf");
}
