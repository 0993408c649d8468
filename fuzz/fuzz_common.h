/* Shared by the model fuzz targets: a model that loaded must also run, so
 * every tensor view its loader made is really in bounds. */
#ifndef LB_FUZZ_COMMON_H
#define LB_FUZZ_COMMON_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lowbit.h"

typedef lb_status (*fuzz_model_parser)(const uint8_t *data, size_t size, lb_model **out);

/* Parses a copy of exactly `size` bytes (so ASan sees any over-read); on
 * success runs two tokens through the forward pass and, when the model has a
 * tokenizer, tokenizes a short text. */
static inline void fuzz_load_and_run(const uint8_t *data, size_t size, fuzz_model_parser parse) {
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return;
    memcpy(buf, data, size);
    lb_model *m = NULL;
    if (parse(buf, size, &m) == LB_OK) {
        lb_state *s = NULL;
        int tok[2] = {0, m->cfg.vocab_size - 1};
        int n = m->cfg.seq_len >= 2 ? 2 : 1;
        if (lb_state_create(m, n, &s) == LB_OK) lb_forward(m, s, tok, n, 0, NULL);
        lb_state_free(s);
        if (m->tokenizer) {
            int *t = NULL;
            size_t nt;
            if (lb_tokenize(m->tokenizer, "Once upon a time", 16, 1, 0, &t, &nt) == LB_OK) lb_free(t);
        }
        lb_model_free(m);
    }
    free(buf);
}

#endif
