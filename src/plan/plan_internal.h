/* What the files of src/plan share: allocation over groups of tensors (a
 * group takes one candidate for all its tensors: a layer, or each tensor
 * alone). */
#ifndef LB_PLAN_INTERNAL_H
#define LB_PLAN_INTERNAL_H

#include "lowbit/plan.h"

/* gcost[g * C + c]: the bits of group g's tensors at candidate c (NAN when
 * one of them cannot take it); gloss likewise the sum of cells[t * C + c]
 * (cells NULL: s->kld). Both (n_groups x C), lb_alloc'd by the caller. */
void lb_plan_group_sums(const lb_sensitivity *s, const double *cells, double *gcost, double *gloss);
/* The knapsack over groups with losses gloss (n_groups x C): the choice per
 * tensor (its group's). */
lb_status lb_plan_allocate_groups(const lb_sensitivity *s, const double *gloss, double budget, int *choice);

/* Row blocks (rowblock.c): rows cut into at most n contiguous ranges,
 * bounds[0] = 0 < ... < bounds[k] = rows (on multiples of 8 rows when each
 * block has at least 8); returns k. */
int lb_plan_row_ranges(int64_t rows, int n, int64_t *bounds);
/* Block [a0, a1) along axis (0 rows, 1 columns) of a rows x cols matrix w,
 * copied into packed (block rows x width, row-major) or, back, from it. */
void lb_plan_block_get(const float *w, int64_t rows, int64_t cols, int axis, int64_t a0, int64_t a1, float *packed);
void lb_plan_block_put(float *w, int64_t rows, int64_t cols, int axis, int64_t a0, int64_t a1, const float *packed);
/* Replaces model tensor ti by an owned f32 copy of its weights (*buf, which
 * the model's tensor now owns), so rows can be written; *saved is the
 * tensor as it was, to put back (after lb_tensor_free of the copy). On
 * failure nothing changed and *buf is NULL. */
lb_status lb_plan_own_f32(lb_model *m, int ti, float **buf, lb_tensor *saved);
/* lb_sensitivity_measure with o->row_blocks > 0: out zeroed by the caller,
 * freed by it on failure. */
lb_status lb_plan_measure_rowblocks(const lb_sensitivity_opts *o, const lb_candidate *cands, int C,
                                    lb_sensitivity *out);

/* sensitivity.c: the model's own loss (nll per token) on the scored tokens,
 * the baseline every sensitivity cell is measured against */
lb_status lb_plan_ref_nll(const lb_sensitivity_opts *o, const lb_model *ref, double *nll);
/* st with the context of the cell that failed: item (a tensor or a row
 * block) under candidate c */
lb_status lb_plan_cell_fail(lb_status st, const char *item, const lb_candidate *c);

#endif
