/* libFuzzer target for llama.cpp importance matrices
 * (lb_calib_stats_imatrix_from_memory), GGUF and legacy .dat forms, for a
 * small model shape (dim 8, hidden 16, two layers, kv_dim 4). Any input
 * must load or fail cleanly; a file that loads gives every linear X^T X of
 * its input's width with a finite, non-negative diagonal and n >= 1. */
#include "lowbit.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static lb_model m;
    m.cfg = (lb_config){.dim = 8, .hidden_dim = 16, .n_layers = 2, .n_heads = 2, .n_kv_heads = 1, .vocab_size = 16,
                        .seq_len = 8, .head_dim = 4};
    uint8_t *copy = malloc(size ? size : 1); /* exact size: ASan sees any over-read */
    if (!copy) return 0;
    memcpy(copy, data, size);
    lb_calib_stats *s = NULL;
    lb_status st = lb_calib_stats_imatrix_from_memory(copy, size, &m, &s);
    if (st == LB_OK) {
        for (int l = 0; l < 2; l++)
            for (int w = 0; w < LB_N_LINEARS; w++) {
                const lb_layer_stats *ls = lb_calib_stats_get(s, l, w);
                int want = w == LB_W2 ? 16 : 8;
                if (!ls || !ls->xtx || ls->cols != want || ls->n_samples < 1) abort();
                for (int j = 0; j < want; j++) {
                    double d = ls->xtx[(size_t)j * (size_t)want + (size_t)j];
                    if (!isfinite(d) || d < 0) abort();
                }
            }
        lb_calib_stats_free(s);
    } else if (s) {
        abort(); /* failure leaves no result */
    }
    free(copy);
    return 0;
}
