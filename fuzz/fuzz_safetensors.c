/* libFuzzer target: safetensors files from arbitrary bytes. A file that
 * parses must describe only bytes inside it: every tensor's data is read. */
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1); /* exactly size bytes, so ASan sees an over-read */
    if (!buf) return 0;
    memcpy(buf, data, size);
    lb_st f;
    if (lb_st_parse(buf, size, &f) == LB_OK) {
        unsigned sum = 0;
        for (size_t i = 0; i < f.n_tensors; i++)
            for (size_t k = 0; k < f.tensors[i].nbytes; k++) sum += f.tensors[i].data[k];
        if (f.n_tensors) (void)lb_st_find(&f, f.tensors[f.n_tensors - 1].name);
        (void)lb_st_meta(&f, "format");
        if (sum == 0xFFFFFFFFu) abort(); /* keeps the reads */
        lb_st_free(&f);
    }
    free(buf);
    return 0;
}
