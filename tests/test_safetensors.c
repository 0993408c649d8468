/* The container layer under Hugging Face folders: the JSON reader and
 * writer, and safetensors files built byte by byte from the published
 * format (huggingface/safetensors: u64 little-endian header length, JSON
 * header of {dtype, shape, data_offsets} plus __metadata__, then the data),
 * valid and malformed, each malformed one with the message it must give. */
#include "test.h"

#include <unistd.h>

#include "io/json.h"
#include "io/safetensors.h"

static void test_json(void) {
    const char *doc = "{\"a\": [1, -2.5e3, true, false, null], \"s\": \"x\\u00e9\\ud83d\\ude00\\n\\\"\","
                      " \"big\": 18446744073709551615, \"o\": {}, \"e\": []}";
    lb_json j;
    CHECK_OK(lb_json_parse(doc, strlen(doc), &j));
    CHECK(j.nodes[0].type == LB_JSON_OBJECT && j.nodes[0].count == 5);
    int32_t a = lb_json_find(&j, 0, "a");
    CHECK(a >= 0 && j.nodes[a].type == LB_JSON_ARRAY && j.nodes[a].count == 5);
    double d = 0;
    int32_t second = j.nodes[j.nodes[a].child].next;
    CHECK_OK(lb_json_double(&j, second, &d));
    CHECK(d == -2500.0);
    int64_t i64;
    CHECK_FAILS(lb_json_i64(&j, second, &i64), LB_ERR_FORMAT, "expected an integer");
    char *s;
    size_t len;
    CHECK_OK(lb_json_string(&j, lb_json_find(&j, 0, "s"), &s, &len));
    CHECK(len == 1 + 2 + 4 + 2 && !memcmp(s, "x\xc3\xa9\xf0\x9f\x98\x80\n\"", len));
    lb_free(s);
    CHECK(lb_json_string_eq(&j, lb_json_find(&j, 0, "s"), "x\xc3\xa9\xf0\x9f\x98\x80\n\""));
    uint64_t u;
    CHECK_OK(lb_json_u64(&j, lb_json_find(&j, 0, "big"), &u));
    CHECK(u == UINT64_MAX);
    CHECK(lb_json_find(&j, 0, "missing") < 0 && lb_json_find(&j, a, "a") < 0);
    lb_json_free(&j);

    /* malformed text: each names what is wrong and where */
    const struct {
        const char *text, *needle;
    } bad[] = {
        {"", "byte 0: unexpected end"},
        {"[1, 2", "byte 5: expected ',' or ']'"},
        {"{\"a\" 1}", "byte 5: expected ':'"},
        {"{\"a\": 1,}", "expected a member name"},
        {"[01]", "expected ',' or ']'"},
        {"[1.]", "digit must follow the decimal point"},
        {"[-]", "not a value"},
        {"\"abc", "unterminated string"},
        {"\"a\tb\"", "control character"},
        {"\"\\x\"", "unknown escape"},
        {"\"\\ud800\"", "high surrogate without its low half"},
        {"\"\\udc00\"", "lone low surrogate"},
        {"\"\\u12\"", "four hex digits"},
        {"{} x", "byte 3: text after the JSON value"},
        {"tru", "not a value"},
        {"[1e]", "exponent needs digits"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        lb_json b;
        CHECK_FAILS(lb_json_parse(bad[k].text, strlen(bad[k].text), &b), LB_ERR_FORMAT, bad[k].needle);
    }
    /* nesting is limited, not recursive: 100000 brackets cost a message */
    size_t deep = 100000;
    char *t = malloc(deep);
    memset(t, '[', deep);
    lb_json b;
    CHECK_FAILS(lb_json_parse(t, deep, &b), LB_ERR_FORMAT, "nested deeper than 64");
    memset(t, '[', 64);
    memset(t + 64, ']', 64);
    CHECK_OK(lb_json_parse(t, 128, &b));
    lb_json_free(&b);
    free(t);

    /* the writer's strings read back as written */
    lb_json_buf w = {0};
    const char raw[] = "q\"b\\s\n\x01\xc3\xa9";
    lb_json_raws(&w, "[");
    lb_json_str(&w, raw, sizeof raw - 1);
    lb_json_raws(&w, ",");
    lb_json_float(&w, 1e-5f);
    lb_json_raws(&w, ",");
    lb_json_float(&w, 0.1f);
    lb_json_raws(&w, "]");
    CHECK(!w.failed);
    CHECK_OK(lb_json_parse(w.data, w.len, &b));
    int32_t c = b.nodes[0].child;
    CHECK(lb_json_string_eq(&b, c, raw));
    CHECK_OK(lb_json_double(&b, b.nodes[c].next, &d));
    CHECK((float)d == 1e-5f);
    CHECK_OK(lb_json_double(&b, b.nodes[b.nodes[c].next].next, &d));
    CHECK((float)d == 0.1f);
    lb_json_free(&b);
    lb_json_buf_free(&w);
}

/* header text + data into a safetensors file image */
static size_t build(uint8_t *out, const char *header, const void *data, size_t n) {
    uint64_t h = strlen(header);
    for (int k = 0; k < 8; k++) out[k] = (uint8_t)(h >> (8 * k));
    memcpy(out + 8, header, h);
    if (n) memcpy(out + 8 + h, data, n);
    return 8 + h + n;
}

static void test_hand_written(void) {
    static uint8_t file[4096];
    const float w[6] = {1, 2, 3, 4, 5, 6};
    const uint16_t h[2] = {0x3c00, 0xc000}; /* f16 1.0, -2.0 */
    uint8_t data[28];
    memcpy(data, w, 24);
    memcpy(data + 24, h, 4);
    /* keys in any order, the metadata anywhere, spaces padding the header */
    size_t n = build(file,
                     "{\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[24,28]},"
                     "\"__metadata__\":{\"format\":\"pt\"},"
                     "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}   ",
                     data, sizeof data);
    lb_st f;
    CHECK_OK(lb_st_parse(file, n, &f));
    CHECK(f.n_tensors == 2 && f.n_meta == 1);
    const lb_st_tensor *a = lb_st_find(&f, "a"), *b = lb_st_find(&f, "b");
    CHECK(a && a->dtype == LB_ST_F32 && a->n_dims == 2 && a->shape[0] == 2 && a->shape[1] == 3 && a->nbytes == 24);
    CHECK(a && !memcmp(a->data, w, 24));
    CHECK(b && b->dtype == LB_ST_F16 && b->n_dims == 1 && b->nbytes == 4 && lb_rd16(b->data + 2) == 0xc000);
    CHECK(f.tensors[0].begin == 0); /* in file order */
    CHECK(lb_st_meta(&f, "format") && !strcmp(lb_st_meta(&f, "format"), "pt"));
    lb_st_free(&f);
    /* a scalar and an empty tensor are legal */
    n = build(file, "{\"s\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]},"
                    "\"z\":{\"dtype\":\"BF16\",\"shape\":[0,4],\"data_offsets\":[8,8]}}", data, 8);
    CHECK_OK(lb_st_parse(file, n, &f));
    CHECK(f.n_tensors == 2);
    lb_st_free(&f);

    const struct {
        const char *header;
        size_t data_len;
        const char *needle;
    } bad[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", 12, "need 16"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],"
         "\"data_offsets\":[4,12]}}", 12, "overlap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],"
         "\"data_offsets\":[8,12]}}", 12, "belong to no tensor"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, "4 bytes after the last tensor"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "run past the end of the data"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 8, "end before they begin"},
        {"{\"a\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype Q4"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "shape"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4, "data_offsets is not [begin, end]"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "has no data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[0],"
         "\"data_offsets\":[4,4]}}", 4, "appears twice"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4, "need more than"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4, "JSON: byte"},
        {"[1]", 0, "does not start with '{'"},
        {"{\"__metadata__\":{\"k\":1}}", 0, "__metadata__ values must be strings"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        uint8_t zeros[16] = {0};
        n = build(file, bad[k].header, zeros, bad[k].data_len);
        CHECK_FAILS(lb_st_parse(file, n, &f), bad[k].data_len == 4 && strstr(bad[k].needle, "Q4") ? LB_ERR_UNSUPPORTED
                                                                                                 : LB_ERR_FORMAT,
                    bad[k].needle);
    }
    /* truncated files and header lengths past the end */
    CHECK_FAILS(lb_st_parse(file, 5, &f), LB_ERR_FORMAT, "too short for the 8-byte header length");
    n = build(file, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", w, 4);
    CHECK_OK(lb_st_parse(file, n, &f));
    lb_st_free(&f);
    for (size_t cut = 0; cut < n; cut++) CHECK(lb_st_parse(file, cut, &f) == LB_ERR_FORMAT);
    for (int k = 0; k < 8; k++) file[k] = 0xff;
    CHECK_FAILS(lb_st_parse(file, n, &f), LB_ERR_FORMAT, "runs past the end of the file");
}

static void test_writer(void) {
    char dir[] = "/tmp/lb_st_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    lb_st_writer *w;
    CHECK_OK(lb_st_writer_create(&w));
    uint64_t s1[2] = {3, 1}, s2[1] = {3};
    CHECK_OK(lb_st_writer_meta(w, "format", "pt"));
    CHECK_OK(lb_st_writer_add(w, "x.weight", LB_ST_F32, 2, s1));
    CHECK_OK(lb_st_writer_add(w, "y \"quoted\"", LB_ST_F16, 1, s2));
    CHECK_FAILS(lb_st_writer_add(w, "x.weight", LB_ST_F32, 1, s2), LB_ERR_INVALID, "added twice");
    CHECK_OK(lb_st_writer_begin(w, path));
    float x[3] = {1.5f, -2, 3};
    uint16_t y[3] = {1, 2, 3};
    CHECK_OK(lb_st_writer_data(w, x, 8)); /* in pieces of any size */
    CHECK_OK(lb_st_writer_data(w, (uint8_t *)x + 8, 4));
    CHECK_OK(lb_st_writer_data(w, y, 6));
    CHECK_FAILS(lb_st_writer_data(w, y, 1), LB_ERR_INVALID, "more than the tensors declared");
    CHECK_OK(lb_st_writer_commit(w));
    lb_st_writer_free(w);
    lb_mapped_file mf;
    CHECK_OK(lb_map_file(path, &mf));
    lb_st f;
    CHECK_OK(lb_st_parse(mf.data, mf.size, &f));
    CHECK(f.data_start % 8 == 0);
    const lb_st_tensor *t = lb_st_find(&f, "x.weight"), *u = lb_st_find(&f, "y \"quoted\"");
    CHECK(t && t->n_dims == 2 && !memcmp(t->data, x, 12));
    CHECK(u && u->dtype == LB_ST_F16 && !memcmp(u->data, y, 6));
    CHECK(lb_st_meta(&f, "format") && !strcmp(lb_st_meta(&f, "format"), "pt"));
    lb_st_free(&f);
    lb_unmap_file(&mf);
    /* too few bytes: commit fails and nothing is left under the name */
    snprintf(path, sizeof path, "%s/short.safetensors", dir);
    CHECK_OK(lb_st_writer_create(&w));
    CHECK_OK(lb_st_writer_add(w, "x", LB_ST_F32, 2, s1));
    CHECK_OK(lb_st_writer_begin(w, path));
    CHECK_OK(lb_st_writer_data(w, x, 4));
    CHECK_FAILS(lb_st_writer_commit(w), LB_ERR_INVALID, "4 of the declared 12");
    lb_st_writer_free(w);
    CHECK(access(path, F_OK) != 0);
    /* abandoned after begin: the temporary goes too */
    CHECK_OK(lb_st_writer_create(&w));
    CHECK_OK(lb_st_writer_add(w, "x", LB_ST_F32, 2, s1));
    CHECK_OK(lb_st_writer_begin(w, path));
    lb_st_writer_free(w);
    CHECK(access(path, F_OK) != 0);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

int main(void) {
    test_json();
    test_hand_written();
    test_writer();
    printf("test_safetensors: %d checks, %d failures\n", lb_test_checks, lb_test_failures);
    return lb_test_failures ? 1 : 0;
}
