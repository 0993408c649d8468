/* libFuzzer target for calibration statistics files
 * (lb_calib_stats_from_memory, and lb_calib_stats_open's in-place parse).
 * Any input must load or fail cleanly; a file that loads must give every
 * linear of every layer statistics of the declared shape whose arrays can be
 * read in full (ASan checks the bounds), with histogram counts summing to
 * n x cols. The in-place parse (X^T X and squared gradients left in the
 * input's bytes where aligned) must agree with the copying one: the same
 * status, the same values byte for byte. */
#include "lowbit.h"

#include <stdlib.h>
#include <string.h>

#include "calib/calib_internal.h"

static void read_all(const lb_calib_stats *s) {
    lb_calib_info info;
    lb_calib_stats_info(s, &info);
    volatile double sink = 0;
    for (int l = 0; l < info.n_layers; l++)
        for (int w = 0; w < LB_N_LINEARS; w++) {
            const lb_layer_stats *ls = lb_calib_stats_get(s, l, w);
            if (!ls || ls->n_samples != info.tokens || ls->cols <= 0 || ls->rows <= 0) abort();
            size_t c = (size_t)ls->cols;
            if (ls->xtx) sink += ls->xtx[0] + ls->xtx[c * c - 1];
            if (ls->grad_sq) sink += ls->grad_sq[0] + ls->grad_sq[(size_t)ls->rows * c - 1];
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
}

/* a and b hold the same values (both parsed from one input) */
static void same_values(const lb_calib_stats *a, const lb_calib_stats *b) {
    lb_calib_info ia, ib;
    lb_calib_stats_info(a, &ia);
    lb_calib_stats_info(b, &ib);
    if (memcmp(&ia, &ib, sizeof ia)) abort();
    for (int l = 0; l < ia.n_layers; l++)
        for (int w = 0; w < LB_N_LINEARS; w++) {
            const lb_layer_stats *x = lb_calib_stats_get(a, l, w), *y = lb_calib_stats_get(b, l, w);
            size_t c = (size_t)x->cols, r = (size_t)x->rows;
#define SAME(f, bytes) (!x->f == !y->f && (!x->f || !memcmp(x->f, y->f, bytes)))
            if (x->n_samples != y->n_samples || x->rows != y->rows || x->cols != y->cols ||
                x->hist_bins != y->hist_bins || memcmp(&x->hist_range, &y->hist_range, sizeof x->hist_range) ||
                !SAME(xtx, c * c * 8) || !SAME(grad_sq, r * c * 4) || !SAME(mean_abs_x, c * 4) ||
                !SAME(max_abs_x, c * 4) || !SAME(mean_x, c * 4) || !SAME(hist, (size_t)x->hist_bins * 8))
                abort();
#undef SAME
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *copy = malloc(size ? size : 1); /* exact size: ASan sees any over-read */
    if (!copy) return 0;
    memcpy(copy, data, size);
    lb_calib_stats *s = NULL, *t = NULL;
    lb_status st = lb_calib_stats_from_memory(copy, size, NULL, &s);
    lb_status st2 = lb_calib_stats_parse_in_place(copy, size, NULL, &t);
    if ((st == LB_OK) != (st2 == LB_OK)) abort(); /* one check, whichever way the arrays are held */
    if (st == LB_OK) {
        read_all(s);
        read_all(t);
        same_values(s, t);
    } else if (s || t) {
        abort(); /* failure leaves no result */
    }
    lb_calib_stats_free(s);
    lb_calib_stats_free(t);
    free(copy);
    return 0;
}
