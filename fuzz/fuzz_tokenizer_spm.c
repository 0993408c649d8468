/* libFuzzer target: SentencePiece tokenizer.model protobufs from arbitrary
 * bytes; a vocabulary that loads must also encode and decode a text. */
#include <stdlib.h>
#include <string.h>

#include "lowbit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    lb_tokenizer *t;
    if (lb_tokenizer_from_spm(buf, size, &t) == LB_OK) {
        int *ids = NULL;
        size_t n;
        if (lb_tokenize(t, "Once upon a time, \xc3\xa9!", 19, 1, 0, &ids, &n) == LB_OK) {
            char *s = NULL;
            size_t len;
            if (lb_detokenize_all(t, ids, n, &s, &len) == LB_OK) lb_free(s);
            lb_free(ids);
        }
        lb_tokenizer_free(t);
    }
    free(buf);
    return 0;
}
