/* libFuzzer target: llama2.c checkpoints (legacy and v1 headers) from
 * arbitrary bytes; a file that parses must also run (fuzz_common.h). */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_load_and_run(data, size, lb_model_from_llama2c);
    return 0;
}
