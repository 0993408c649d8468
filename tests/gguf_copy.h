/* One GGUF key copied from a parsed file into a writer, under another name
 * if wanted: the tests that build altered files from a good one
 * (test_model_gguf's bad files, test_gguf_arch's architectures) share it.
 * Strings, u32, f32 and arrays of numbers; string arrays (the tokenizer's)
 * are left out. */
#ifndef LB_TEST_GGUF_COPY_H
#define LB_TEST_GGUF_COPY_H

#include "test.h"

static inline void gguf_copy_kv(const lb_gguf *g, lb_gguf_writer *w, int64_t i, const char *name, const char *out) {
    lb_gguf_type t = lb_gguf_kv_type(g, i);
    if (t == LB_GGUF_STRING) {
        const char *s;
        size_t sl;
        char buf[256];
        lb_gguf_get_str(g, name, &s, &sl);
        snprintf(buf, sizeof buf, "%.*s", (int)sl, s);
        lb_gguf_set_str(w, out, buf);
    } else if (t == LB_GGUF_UINT32) {
        uint32_t v;
        lb_gguf_get_u32(g, name, &v);
        lb_gguf_set_u32(w, out, v);
    } else if (t == LB_GGUF_FLOAT32) {
        float v;
        lb_gguf_get_f32(g, name, &v);
        lb_gguf_set_f32(w, out, v);
    } else if (t == LB_GGUF_ARRAY) {
        lb_gguf_type et;
        uint64_t n;
        const uint8_t *e;
        lb_gguf_get_arr(g, name, &et, &n, &e);
        if (et != LB_GGUF_STRING) lb_gguf_set_arr(w, out, et, e, n);
    }
}

#endif
