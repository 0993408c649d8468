/* libFuzzer target for training checkpoints (lb_trainer_load_checkpoint_memory)
 * against a tiny trainer made from a config (the shape and options the seeds in
 * fuzz/corpus/fuzz_checkpoint were written with). Any input must load or fail
 * cleanly; a failure leaves the trainer as it was (step 0, rng untouched); a
 * checkpoint that loads must be at a step within the run and the trainer must
 * take a step from it without crashing (a NaN parameter may fail the step
 * with LB_ERR_NUMERIC, never more).
 *
 * The file ends in a checksum of everything before it, which random mutations
 * almost never keep valid; so every input is also tried with its checksum
 * recomputed, to reach the shape, option and consistency checks behind it. */
#include "lowbit.h"

#include <stdlib.h>
#include <string.h>

static const lb_config fuzz_cfg = {.dim = 8, .hidden_dim = 12, .n_layers = 1, .n_heads = 2, .n_kv_heads = 1,
                                   .vocab_size = 13, .seq_len = 8, .head_dim = 4, .norm_eps = 1e-5f,
                                   .rope_theta = 10000.0f};

static void try_load(const uint8_t *data, size_t size) {
    uint8_t *copy = malloc(size ? size : 1); /* exact size: ASan sees any over-read */
    if (!copy) return;
    memcpy(copy, data, size);
    lb_train_opts o;
    lb_train_opts_default(&o);
    o.batch = 1;
    o.ctx = 4;
    o.steps = 10;
    lb_trainer *t = NULL;
    if (lb_trainer_create_random(&fuzz_cfg, 1, 1, 0.5f, &o, &t) != LB_OK) abort();
    lb_rng rng = {42};
    if (lb_trainer_load_checkpoint_memory(t, &rng, copy, size) == LB_OK) {
        int done = lb_trainer_steps_done(t);
        if (done < 0 || done > o.steps) abort();
        int tokens[5] = {1, 2, 3, 12, 0};
        lb_train_step_info info;
        lb_status st = lb_trainer_step(t, tokens, &info);
        if (st != LB_OK && st != LB_ERR_NUMERIC && st != LB_ERR_INVALID) abort();
    } else if (lb_trainer_steps_done(t) != 0 || rng.state != 42) {
        abort(); /* a refused checkpoint changed the trainer */
    }
    lb_trainer_free(t);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    try_load(data, size);
    if (size >= 8 && size <= (1u << 20)) { /* the same bytes with a valid checksum (FNV-1a 64, little-endian) */
        uint8_t *fixed = malloc(size);
        if (!fixed) return 0;
        memcpy(fixed, data, size);
        uint64_t h = 14695981039346656037ull;
        for (size_t i = 0; i < size - 8; i++) {
            h ^= fixed[i];
            h *= 1099511628211ull;
        }
        for (int i = 0; i < 8; i++) fixed[size - 8 + i] = (uint8_t)(h >> (8 * i));
        try_load(fixed, size);
        free(fixed);
    }
    return 0;
}
