/* Interaction-aware refinement of a mixed-precision plan.
 *
 * The first plan adds up each tensor's KL measured alone, but errors
 * compound: on stories260K the summed KL of a 3-bit mix is well under the
 * KL the mix really has. Here the model is assembled as planned from the
 * quantized tensors lb_sensitivity_measure kept (views: nothing is
 * quantized again, which is exact because a non-sequential method's result
 * for one tensor does not depend on the others), and every tensor's
 * candidates are measured again with all the other tensors as planned: the
 * KL of the whole mix with tensor t changed to c. The knapsack is solved
 * over those losses (a coordinate-wise linearization around the plan), the
 * new plan is measured, and that repeats while it helps. */
#include "plan/plan_internal.h"

#include <math.h>
#include <string.h>

typedef struct {
    lb_model *m, *ref;
    lb_tensor *saved;  /* (T) the model's own tensors while views stand in for them */
    int *showing;      /* (T) the candidate tensor t shows, -1: its own */
    float **orig;      /* row blocks: (T) each block's own rows, f32; the model's tensors are f32 copies */
    const lb_sensitivity *s;
} assembly;

/* row blocks: the first block of its tensor (which owns the f32 copy) */
static int first_block(const lb_sensitivity *s, int t) { return t == 0 || s->tensor[t - 1] != s->tensor[t]; }

static void show(assembly *a, int t, int c) {
    if (a->showing[t] == c) return;
    lb_tensor *slot = lb_model_tensor_at(a->m, a->s->tensor[t]);
    if (a->s->rows_q) { /* row (column) blocks: written into the tensor's f32 copy */
        const float *src = c < 0 ? a->orig[t] : a->s->rows_q[(size_t)t * a->s->n_candidates + c];
        lb_plan_block_put((float *)slot->owned, slot->rows, slot->cols, a->s->block_axis, a->s->row0[t],
                          a->s->row1[t], src);
        lb_tensor_resolve(slot);
        a->showing[t] = c;
        return;
    }
    if (a->showing[t] >= 0) lb_free(slot->packed); /* a view's own repacking */
    if (c < 0) {
        *slot = a->saved[t];
    } else {
        *slot = a->s->quantized[(size_t)t * a->s->n_candidates + c];
        slot->owned = NULL, slot->packed = NULL, slot->kernel = NULL; /* a view: the kernel is chosen again */
    }
    a->showing[t] = c;
}

static lb_status assemble(const lb_sensitivity_opts *o, const lb_sensitivity *s, assembly *a) {
    memset(a, 0, sizeof *a);
    a->s = s;
    if (!s->quantized && !s->rows_q)
        return lb_fail(LB_ERR_INVALID, "refining a plan needs the quantized tensors: measure with keep_tensors = 1");
    lb_status st = lb_model_load(o->model_path, NULL, &a->m);
    if (st == LB_OK) st = lb_model_load(o->model_path, NULL, &a->ref);
    if (st != LB_OK) return st;
    a->saved = lb_alloc((size_t)s->n_tensors * sizeof *a->saved);
    a->showing = lb_alloc((size_t)s->n_tensors * sizeof *a->showing);
    if (!a->saved || !a->showing) return LB_ERR_NOMEM;
    for (int t = 0; t < s->n_tensors; t++) {
        a->saved[t] = *lb_model_tensor_at(a->m, s->tensor[t]);
        a->showing[t] = -1;
    }
    if (!s->rows_q) return LB_OK;
    if (!(a->orig = lb_calloc((size_t)s->n_tensors, sizeof *a->orig))) return LB_ERR_NOMEM;
    for (int t = 0; st == LB_OK && t < s->n_tensors; t++) {
        float *buf = NULL;
        if (first_block(s, t) && (st = lb_plan_own_f32(a->m, s->tensor[t], &buf, &a->saved[t])) != LB_OK) {
            a->showing[t] = -2; /* nothing to put back */
            break;
        }
        const lb_tensor *slot = lb_model_tensor_at(a->m, s->tensor[t]);
        size_t n = (size_t)((s->row1[t] - s->row0[t]) * (s->block_axis ? slot->rows : slot->cols));
        if (!(a->orig[t] = lb_alloc(n * sizeof(float)))) st = LB_ERR_NOMEM;
        else lb_plan_block_get((const float *)slot->owned, slot->rows, slot->cols, s->block_axis, s->row0[t], s->row1[t],
                               a->orig[t]);
    }
    return st;
}

static void disassemble(assembly *a) {
    if (a->orig) { /* row blocks: the model's own tensors back in place of the f32 copies */
        for (int t = 0; t < a->s->n_tensors && a->showing[t] != -2; t++) {
            if (first_block(a->s, t)) {
                lb_tensor *slot = lb_model_tensor_at(a->m, a->s->tensor[t]);
                lb_tensor_free(slot);
                *slot = a->saved[t];
            }
        }
        for (int t = 0; t < a->s->n_tensors; t++) lb_free(a->orig[t]);
        lb_free(a->orig);
        a->orig = NULL;
    } else {
        for (int t = 0; a->showing && t < a->s->n_tensors; t++) show(a, t, -1);
    }
    lb_free(a->saved), lb_free(a->showing);
    lb_model_free(a->m), lb_model_free(a->ref);
}

static lb_status score(const lb_sensitivity_opts *o, assembly *a, lb_eval_result *r) {
    lb_eval_opts e = o->eval;
    e.ref = a->ref;
    return lb_evaluate(a->m, o->text, &e, r);
}

static lb_status check_choice(const lb_sensitivity *s, const int *choice) {
    for (int t = 0; t < s->n_tensors; t++)
        if (choice[t] < 0 || choice[t] >= s->n_candidates ||
            !(s->rows_q ? (const void *)s->rows_q[(size_t)t * s->n_candidates + choice[t]]
                        : (const void *)s->quantized[(size_t)t * s->n_candidates + choice[t]].data))
            return lb_fail(LB_ERR_INVALID, "plan: tensor '%s' has no measured candidate %d", s->names[t], choice[t]);
    return LB_OK;
}

lb_status lb_plan_measure(const lb_sensitivity_opts *o, const lb_sensitivity *s, const int *choice, lb_eval_result *r) {
    assembly a;
    lb_status st = assemble(o, s, &a);
    if (st == LB_OK) st = check_choice(s, choice);
    for (int t = 0; st == LB_OK && t < s->n_tensors; t++) show(&a, t, choice[t]);
    if (st == LB_OK) st = score(o, &a, r);
    disassemble(&a);
    return st;
}

/* Shows group g at candidate c (c < 0: as the choice has it). */
static void show_group(assembly *a, int g, int c, const int *choice) {
    for (int t = 0; t < a->s->n_tensors; t++)
        if (a->s->group[t] == g) show(a, t, c < 0 ? choice[t] : c);
}

lb_status lb_plan_refine(const lb_sensitivity_opts *o, const lb_sensitivity *s,
                         double budget, int rounds, int *choice, double *kld) {
    if (rounds < 0) return lb_fail(LB_ERR_INVALID, "plan: %d refinement rounds", rounds);
    for (int r = 0; r <= rounds; r++) kld[r] = NAN;
    int T = s->n_tensors, C = s->n_candidates, G = s->n_groups;
    size_t gcells = (size_t)G * C;
    assembly a;
    lb_status st = assemble(o, s, &a);
    if (st == LB_OK) st = check_choice(s, choice);
    double *loss = lb_alloc(gcells * sizeof *loss), *gcost = lb_alloc(gcells * sizeof *gcost);
    int *next = lb_alloc((size_t)T * sizeof *next), *gchoice = lb_alloc((size_t)G * sizeof *gchoice);
    if (st == LB_OK && (!loss || !gcost || !next || !gchoice)) st = LB_ERR_NOMEM;
    if (st == LB_OK) lb_plan_group_sums(s, NULL, gcost, NULL);
    lb_eval_result r;
    for (int t = 0; st == LB_OK && t < T; t++) show(&a, t, choice[t]);
    if (st == LB_OK && (st = score(o, &a, &r)) == LB_OK) kld[0] = r.kld;
    size_t todo = 0;
    for (size_t i = 0; st == LB_OK && i < gcells; i++) todo += !isnan(gcost[i]);
    lb_progress prog;
    lb_progress_begin(&prog, "refining", (uint64_t)todo * (uint64_t)rounds);
    uint64_t done = 0;
    for (int round = 1; st == LB_OK && round <= rounds; round++) {
        /* every candidate of every group, the others as planned */
        for (int t = 0; t < T; t++) gchoice[s->group[t]] = choice[t];
        for (int g = 0; st == LB_OK && g < G; g++) {
            for (int t = 0; t < T; t++)
                if (s->group[t] == g) lb_progress_item(&prog, s->names[t]);
            for (int c = 0; st == LB_OK && c < C; c++) {
                size_t i = (size_t)g * C + c;
                loss[i] = 0;
                if (isnan(gcost[i])) continue;
                if (c == gchoice[g]) {
                    loss[i] = kld[round - 1];
                } else {
                    show_group(&a, g, c, choice);
                    if ((st = score(o, &a, &r)) == LB_OK) loss[i] = r.kld;
                    show_group(&a, g, -1, choice);
                }
                lb_progress_update(&prog, ++done);
            }
        }
        if (st == LB_OK) st = lb_plan_allocate_groups(s, loss, budget, next);
        if (st != LB_OK) break;
        if (!memcmp(next, choice, (size_t)T * sizeof *next)) break; /* a fixed point */
        for (int t = 0; t < T; t++) show(&a, t, next[t]);
        if ((st = score(o, &a, &r)) != LB_OK) break;
        if (!(r.kld < kld[round - 1])) break; /* the linearization overshot: keep the better plan */
        kld[round] = r.kld;
        memcpy(choice, next, (size_t)T * sizeof *choice);
    }
    lb_progress_end(&prog);
    lb_free(loss), lb_free(gcost), lb_free(next), lb_free(gchoice);
    disassemble(&a);
    return st;
}
