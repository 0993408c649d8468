/* libFuzzer target: whole models from GGUF bytes (container, llama keys,
 * lowbit.* formats and shapes, the embedded tokenizer). A file that loads
 * must run two tokens through the forward pass and tokenize a short text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lowbit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    lb_model *m = NULL;
    if (lb_model_from_gguf(buf, size, &m) == LB_OK) {
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
    return 0;
}
