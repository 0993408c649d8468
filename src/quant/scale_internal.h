/* What the input-scaling rows (awq.c, smoothquant.c) share, from scale.c:
 * checking a scale group, reducing a per-channel statistic over tied
 * channels, and scoring a candidate s by the objective both minimize. */
#ifndef LB_QUANT_SCALE_INTERNAL_H
#define LB_QUANT_SCALE_INTERNAL_H

#include "lowbit/quant.h"

/* Fails (LB_ERR_INVALID / LB_ERR_NUMERIC) naming the problem when the group
 * is malformed, a weight is not finite, or one of the statistics in `need`
 * (LB_STATS_XTX | MEAN_ABS_X | MAX_ABS_X) is missing, negative where it
 * cannot be, or not finite. */
lb_status lb_scale_check_group(const lb_scale_group *g, unsigned need, const char *method);

/* v (cols) reduced over each class of tied channels, written back to every
 * channel of the class: the mean (use_max = 0) or the max. No-op without
 * ties. Fails only without memory (untied scales would break the fold). */
lb_status lb_scale_tie(const lb_scale_group *g, float *v, int use_max);

/* sum_i tr(E_i H E_i^T), E_i = Q(W_i diag(s)) diag(s)^-1 - W_i, Q the
 * round-to-nearest min-max grid of linear i's format: the output error of
 * the group if the scales s were folded. */
lb_status lb_scale_loss(const lb_scale_group *g, const float *s, double *loss);

/* AWQ's normalization: s / sqrt(max(s) min(s)), so the scales are centred
 * on 1 in log space (any common factor cancels in W diag(s) x / s; this one
 * keeps stored weights near their old magnitude). */
void lb_scale_normalize(float *s, int64_t n);

#endif
