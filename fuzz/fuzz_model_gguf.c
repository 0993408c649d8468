/* libFuzzer target: whole models from GGUF bytes (container, llama keys,
 * lowbit.* formats and shapes, the embedded tokenizer); a file that loads
 * must also run and tokenize (fuzz_common.h). */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_load_and_run(data, size, lb_model_from_gguf);
    return 0;
}
