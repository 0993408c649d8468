/* libFuzzer target for split-set checking (lb_gguf_split_merge): the input
 * is 1..4 shards, each parsed by the GGUF parser (fuzz_gguf covers that
 * alone), then checked as one set: split keys of any type and value, counts
 * that do not add up, names in two shards, fingerprints. A set that merges
 * must be walkable (every tensor findable by name, its bytes inside its own
 * shard's buffer) and, when its keys make a model, must load and run.
 *
 * Input: byte 0 gives the shard count ((b & 3) + 1); each shard but the last
 * is a u32 little-endian length (cut to what is left) and that many bytes;
 * the last takes the rest. Each shard is copied into a buffer of exactly its
 * size so ASan sees any read past it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lowbit.h"
#include "model/model_internal.h"

static volatile uint8_t sink;

static void walk(const lb_gguf *g) {
    for (int64_t i = 0; i < lb_gguf_n_tensors(g); i++) {
        const lb_gguf_tensor *t = lb_gguf_tensor_at(g, i);
        char name[128];
        if (t->name_len >= sizeof name) abort(); /* the parser bounds names */
        memcpy(name, t->name, t->name_len);
        name[t->name_len] = 0;
        if (lb_gguf_find_tensor(g, name) != t) abort(); /* unique across shards */
        uint8_t x = 0;
        for (size_t k = 0; k < t->nbytes; k++) x ^= t->data[k];
        sink ^= x;
    }
}

static void run_model(const lb_gguf *g) {
    lb_model *m = NULL;
    if (lb_model_from_gguf_parsed(g, &m) != LB_OK) return;
    lb_state *s = NULL;
    int tok[1] = {0};
    if (lb_state_create(m, 1, &s) == LB_OK) lb_forward(m, s, tok, 1, 0, NULL);
    lb_state_free(s);
    lb_model_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int n = (data[0] & 3) + 1;
    size_t at = 1;
    uint8_t *bufs[4] = {NULL};
    lb_gguf *g[4] = {NULL};
    int ok = 1;
    for (int i = 0; i < n && ok; i++) {
        size_t len = size - at;
        if (i < n - 1) {
            if (size - at < 4) {
                ok = 0;
                break;
            }
            uint32_t l = (uint32_t)data[at] | (uint32_t)data[at + 1] << 8 | (uint32_t)data[at + 2] << 16 |
                         (uint32_t)data[at + 3] << 24;
            at += 4;
            len = l < size - at ? l : size - at;
        }
        bufs[i] = malloc(len ? len : 1);
        if (!bufs[i]) {
            ok = 0;
            break;
        }
        memcpy(bufs[i], data + at, len);
        at += len;
        if (lb_gguf_parse(bufs[i], len, &g[i]) != LB_OK) ok = 0;
    }
    if (ok) {
        lb_gguf *merged = NULL;
        if (lb_gguf_split_merge(g, n, &merged) == LB_OK) { /* takes the shards either way */
            if (lb_gguf_n_shards(merged) != n) abort();
            walk(merged);
            run_model(merged);
            lb_gguf_free(merged);
        }
    } else {
        for (int i = 0; i < n; i++) lb_gguf_free(g[i]);
    }
    for (int i = 0; i < n; i++) free(bufs[i]);
    return 0;
}
