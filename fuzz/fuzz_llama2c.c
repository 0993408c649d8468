/* libFuzzer target: llama2.c checkpoints (legacy and v1 headers) from
 * arbitrary bytes. A file that parses must also run: two tokens through the
 * forward pass, so every tensor view the loader made is really in bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lowbit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* a copy of exactly `size` bytes so ASan sees any over-read */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    lb_model *m = NULL;
    if (lb_model_from_llama2c(buf, size, &m) == LB_OK) {
        lb_state *s = NULL;
        int tok[2] = {0, m->cfg.vocab_size - 1};
        int n = m->cfg.seq_len >= 2 ? 2 : 1;
        if (lb_state_create(m, n, &s) == LB_OK) lb_forward(m, s, tok, n, 0, NULL);
        lb_state_free(s);
        lb_model_free(m);
    }
    free(buf);
    return 0;
}
