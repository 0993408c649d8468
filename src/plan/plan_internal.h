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

#endif
