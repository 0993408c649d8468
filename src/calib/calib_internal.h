/* Inside src/calib: the statistics object shared by calib.c (collection)
 * and calib_io.c (the GGUF file). */
#ifndef LB_CALIB_INTERNAL_H
#define LB_CALIB_INTERNAL_H

#include "lowbit/calib.h"

#define LB_CALIB_ALL_PARTS \
    (LB_STATS_XTX | LB_STATS_MEAN_ABS_X | LB_STATS_MAX_ABS_X | LB_STATS_MEAN_X | LB_STATS_HIST_X)

/* One distinct layer input. The final per-channel means (float) are what
 * lb_layer_stats shows; the double sums exist only while collecting. */
typedef struct {
    int64_t n;
    int cols;
    double *xtx;       /* (cols, cols) */
    float *mean_abs_x, *max_abs_x, *mean_x; /* (cols) */
    int64_t *hist;     /* (hist_bins) */
    double hist_range; /* power of two; 0 until a nonzero x was seen */
} calib_input;

struct lb_calib_stats {
    lb_calib_info info;
    calib_input *in;    /* n_layers * LB_CALIB_N_INPUTS */
    lb_layer_stats *ls; /* n_layers * LB_N_LINEARS */
    int kv_dim;         /* rows of k and v */
};

/* Allocates s with its inputs (arrays of the info's parts, zeroed). */
lb_status lb_calib_alloc(const lb_calib_info *info, int kv_dim, lb_calib_stats **out);
/* Points every linear's lb_layer_stats at its input's arrays. */
void lb_calib_link(lb_calib_stats *s);

#endif
