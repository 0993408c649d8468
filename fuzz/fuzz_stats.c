/* libFuzzer target for calibration statistics files
 * (lb_calib_stats_from_memory). Any input must load or fail cleanly; a file
 * that loads must give every linear of every layer statistics of the
 * declared shape whose arrays can be read in full (ASan checks the bounds),
 * with histogram counts summing to n x cols. */
#include "lowbit.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *copy = malloc(size ? size : 1); /* exact size: ASan sees any over-read */
    if (!copy) return 0;
    memcpy(copy, data, size);
    lb_calib_stats *s = NULL;
    lb_status st = lb_calib_stats_from_memory(copy, size, NULL, &s);
    if (st == LB_OK) {
        lb_calib_info info;
        lb_calib_stats_info(s, &info);
        volatile double sink = 0;
        for (int l = 0; l < info.n_layers; l++)
            for (int w = 0; w < LB_N_LINEARS; w++) {
                const lb_layer_stats *ls = lb_calib_stats_get(s, l, w);
                if (!ls || ls->n_samples != info.tokens || ls->cols <= 0 || ls->rows <= 0) abort();
                size_t c = (size_t)ls->cols;
                if (ls->xtx) sink += ls->xtx[0] + ls->xtx[c * c - 1];
                for (size_t j = 0; j < c; j++)
                    sink += (ls->mean_abs_x ? ls->mean_abs_x[j] : 0) + (ls->max_abs_x ? ls->max_abs_x[j] : 0) +
                            (ls->mean_x ? ls->mean_x[j] : 0);
                if (ls->hist) {
                    uint64_t total = 0;
                    for (int b = 0; b < ls->hist_bins; b++) total += (uint64_t)ls->hist[b];
                    if (total != (uint64_t)ls->n_samples * c) abort();
                }
            }
        (void)sink;
        lb_calib_stats_free(s);
    } else if (s) {
        abort(); /* failure leaves no result */
    }
    free(copy);
    return 0;
}
