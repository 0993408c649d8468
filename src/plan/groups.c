/* Granularity: which tensors share one choice. Each tensor alone (the
 * default), each row block alone (measured per block, rowblock.c), or a
 * layer's linears together (one format per transformer block, as hand-made
 * llama.cpp mixes often are); the knapsack then runs over the groups, a
 * group's cost and loss the sums over its tensors. */
#include "plan/plan_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

lb_status lb_plan_set_granularity(lb_sensitivity *s, const char *granularity) {
    int rowblock = granularity && !strncmp(granularity, "rowblock", 8);
    int colblock = granularity && !strncmp(granularity, "colblock", 8);
    if (rowblock + colblock != (s->row0 != NULL) || (colblock && !s->block_axis) || (rowblock && s->block_axis))
        return lb_fail(LB_ERR_INVALID, "granularity '%s': the sensitivities were measured %s",
                       granularity ? granularity : "tensor",
                       !s->row0       ? "per tensor (rowblock and colblock need them per block)"
                       : s->block_axis ? "per column block (only colblock fits them)"
                                       : "per row block (only rowblock fits them)");
    rowblock |= colblock;
    if (rowblock) { /* each block alone, as measured */
        for (int t = 0; t < s->n_tensors; t++) s->group[t] = t;
        s->n_groups = s->n_tensors;
        return LB_OK;
    }
    int layer = granularity && !strcmp(granularity, "layer");
    if (granularity && !layer && strcmp(granularity, "tensor"))
        return lb_fail(LB_ERR_INVALID, "granularity '%s': tensor or layer", granularity);
    int max_layer = -1, *g = s->group;
    for (int t = 0; t < s->n_tensors; t++) {
        int l;
        g[t] = layer && sscanf(s->names[t], "blk.%d.", &l) == 1 && l >= 0 ? l : -1;
        if (g[t] > max_layer) max_layer = g[t];
    }
    /* the layers first (numbered as the model numbers them, empty ones dropped), then every other tensor alone */
    int n = 0;
    for (int l = 0; l <= max_layer; l++) {
        int used = 0;
        for (int t = 0; t < s->n_tensors; t++)
            if (g[t] == l) g[t] = -2 - n, used = 1;
        n += used;
    }
    for (int t = 0; t < s->n_tensors; t++) g[t] = g[t] <= -2 ? -2 - g[t] : n++;
    s->n_groups = n;
    return LB_OK;
}

void lb_plan_group_sums(const lb_sensitivity *s, const double *cells, double *gcost, double *gloss) {
    int C = s->n_candidates;
    size_t gc = (size_t)s->n_groups * C;
    for (size_t i = 0; i < gc; i++) {
        gcost[i] = 0;
        if (gloss) gloss[i] = 0;
    }
    for (int t = 0; t < s->n_tensors; t++)
        for (int c = 0; c < C; c++) {
            size_t i = (size_t)t * C + c, j = (size_t)s->group[t] * C + c;
            gcost[j] += s->bits[i]; /* NAN spreads: the group cannot take c */
            if (gloss) gloss[j] += isnan(s->bits[i]) ? 0 : (cells ? cells : s->kld)[i];
        }
}

lb_status lb_plan_allocate_groups(const lb_sensitivity *s, const double *gloss, double budget, int *choice) {
    int C = s->n_candidates, G = s->n_groups;
    double *gcost = lb_alloc((size_t)G * C * sizeof *gcost);
    int *gchoice = lb_alloc((size_t)G * sizeof *gchoice);
    lb_status st = gcost && gchoice ? LB_OK : LB_ERR_NOMEM;
    if (st == LB_OK) {
        lb_plan_group_sums(s, NULL, gcost, NULL);
        st = lb_allocate(G, C, gcost, gloss, budget, 0, gchoice);
    }
    for (int t = 0; st == LB_OK && t < s->n_tensors; t++) choice[t] = gchoice[s->group[t]];
    lb_free(gcost), lb_free(gchoice);
    return st;
}

lb_status lb_plan_choose(const lb_sensitivity *s, double budget, int *choice) {
    size_t gc = (size_t)s->n_groups * s->n_candidates;
    double *gcost = lb_alloc(gc * sizeof *gcost), *gloss = lb_alloc(gc * sizeof *gloss);
    lb_status st = gcost && gloss ? LB_OK : LB_ERR_NOMEM;
    if (st == LB_OK) {
        lb_plan_group_sums(s, NULL, gcost, gloss);
        st = lb_plan_allocate_groups(s, gloss, budget, choice);
    }
    lb_free(gcost), lb_free(gloss);
    return st;
}
