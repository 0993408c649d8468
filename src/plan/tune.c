/* Accuracy-driven tuning: the smallest mix that meets a quality target.
 *
 * The target is a KL divergence or a perplexity ratio on the scored split
 * (the calibration split: lowbit tune reports the evaluation split only
 * afterwards). Two searches over the kept quantized tensors, each mix
 * assembled and measured as it is (lb_plan_measure):
 *
 *   bisection  over the budget: the knapsack (and refinement rounds) at the
 *              middle budget, kept when it meets the target
 *   fallback   from the cheapest mix, the most sensitive tensors first: each
 *              step takes the upgrade with the most KL (measured alone)
 *              saved per bit, until the mix meets the target
 *
 * The smaller mix that meets the target wins. */
#include "plan/plan_internal.h"

#include <math.h>
#include <string.h>

#define BISECTION_STEPS 14 /* knapsack alone: one measurement each */
#define REFINED_STEPS 6     /* with refinement: every candidate of every tensor measured again each */

typedef struct {
    const lb_sensitivity_opts *o;
    const lb_sensitivity *s;
    const lb_tune_opts *t;
    int steps;
} tuner;

static double mix_bits(const lb_sensitivity *s, const int *choice) {
    double b = 0;
    for (int t = 0; t < s->n_tensors; t++) b += s->bits[(size_t)t * s->n_candidates + choice[t]];
    return b;
}

/* Measures the mix; *met says whether it meets the target. */
static lb_status measure(tuner *u, const int *choice, lb_tune_point *p, int *met) {
    lb_eval_result r;
    lb_status st = lb_plan_measure(u->o, u->s, choice, &r);
    if (st != LB_OK) return st;
    u->steps++;
    p->bits = mix_bits(u->s, choice);
    p->kld = r.kld;
    p->ppl_ratio = exp(r.nll - u->s->nll);
    *met = (!(u->t->max_kld > 0) || p->kld <= u->t->max_kld) &&
           (!(u->t->max_ppl_ratio > 0) || p->ppl_ratio <= u->t->max_ppl_ratio);
    return LB_OK;
}

static lb_status bisection(tuner *u, int *best, lb_tune_result *r) {
    lb_tune_point *bp = &r->bisection;
    int *found = &r->bisection_met;
    const lb_sensitivity *s = u->s;
    int T = s->n_tensors, C = s->n_candidates, G = s->n_groups;
    double *gcost = lb_alloc((size_t)G * C * sizeof *gcost), kl[101], lo = 0, hi = 0;
    int *choice = lb_alloc((size_t)T * sizeof *choice);
    lb_status st = gcost && choice ? LB_OK : LB_ERR_NOMEM;
    if (st == LB_OK) lb_plan_group_sums(s, NULL, gcost, NULL);
    for (int g = 0; st == LB_OK && g < G; g++) {
        double mn = INFINITY, mx = 0;
        for (int c = 0; c < C; c++)
            if (!isnan(gcost[(size_t)g * C + c])) mn = fmin(mn, gcost[(size_t)g * C + c]), mx = fmax(mx, gcost[(size_t)g * C + c]);
        lo += mn, hi += mx;
    }
    /* the budget where the mix first meets the target, between a (fails, or
     * the cheapest) and b (meets; first the richest mix): first with the
     * knapsack alone (one measurement a step), then, inside the last
     * interval, with refinement rounds at each budget (a few steps: each
     * round measures every candidate of every group) */
    double a = lo, b = hi;
    for (int phase = 0, steps = 0; st == LB_OK && phase < 2; phase++, steps = 0) {
        int rounds = phase ? u->t->rounds : 0;
        if (phase && rounds <= 0) break;
        for (; st == LB_OK && steps <= (phase ? REFINED_STEPS : BISECTION_STEPS); steps++) {
            int first = phase == 0 && steps == 0;
            double budget = first ? hi : 0.5 * (a + b);
            if ((st = lb_plan_choose(s, budget, choice)) != LB_OK) break;
            if (rounds && (st = lb_plan_refine(u->o, s, budget, rounds, choice, kl)) != LB_OK) break;
            lb_tune_point p;
            int met;
            if ((st = measure(u, choice, &p, &met)) != LB_OK) break;
            if (first) r->richest = p;
            if (met && (!*found || p.bits < bp->bits)) {
                *found = 1;
                *bp = p;
                memcpy(best, choice, (size_t)T * sizeof *best);
            }
            if (first && !met) { /* the richest mix fails: nothing will meet the target */
                phase = 2;
                break;
            }
            if (!first) {
                if (met) b = budget;
                else a = budget;
            }
            if (b - a < 1e-3 * (hi - lo)) break;
        }
        /* refinement lowers the KL at a budget: search again from the cheapest */
        a = lo;
    }
    lb_free(gcost), lb_free(choice);
    return st;
}

static lb_status fallback(tuner *u, int *best, lb_tune_point *bp, int *found) {
    const lb_sensitivity *s = u->s;
    int T = s->n_tensors, C = s->n_candidates, G = s->n_groups;
    size_t gc = (size_t)G * C;
    double *gcost = lb_alloc(gc * sizeof *gcost), *gloss = lb_alloc(gc * sizeof *gloss);
    int *gchoice = lb_alloc((size_t)G * sizeof *gchoice), *choice = lb_alloc((size_t)T * sizeof *choice);
    lb_status st = gcost && gloss && gchoice && choice ? LB_OK : LB_ERR_NOMEM;
    if (st == LB_OK) lb_plan_group_sums(s, NULL, gcost, gloss);
    for (int g = 0; st == LB_OK && g < G; g++) { /* the cheapest mix */
        gchoice[g] = -1;
        for (int c = 0; c < C; c++) {
            size_t i = (size_t)g * C + c;
            if (!isnan(gcost[i]) && (gchoice[g] < 0 || gcost[i] < gcost[(size_t)g * C + gchoice[g]])) gchoice[g] = c;
        }
    }
    while (st == LB_OK) {
        for (int t = 0; t < T; t++) choice[t] = gchoice[s->group[t]];
        lb_tune_point p;
        int met;
        if ((st = measure(u, choice, &p, &met)) != LB_OK) break;
        if (met) {
            if (!*found || p.bits < bp->bits) {
                *found = 1;
                *bp = p;
                memcpy(best, choice, (size_t)T * sizeof *best);
            }
            break;
        }
        /* the upgrade that saves the most KL (alone) per added bit */
        int bg = -1, bc = -1;
        double gain = 0;
        for (int g = 0; g < G; g++) {
            size_t cur = (size_t)g * C + gchoice[g];
            for (int c = 0; c < C; c++) {
                size_t i = (size_t)g * C + c;
                if (isnan(gcost[i]) || gcost[i] <= gcost[cur] || gloss[i] >= gloss[cur]) continue;
                double v = (gloss[cur] - gloss[i]) / (gcost[i] - gcost[cur]);
                if (v > gain) gain = v, bg = g, bc = c;
            }
        }
        if (bg < 0) break; /* every group at its best: the target is out of reach */
        gchoice[bg] = bc;
    }
    lb_free(gcost), lb_free(gloss), lb_free(gchoice), lb_free(choice);
    return st;
}

lb_status lb_plan_tune(const lb_sensitivity_opts *o, const lb_sensitivity *s, const lb_tune_opts *t, int *choice,
                       lb_tune_result *r) {
    memset(r, 0, sizeof *r);
    if (!(t->max_kld > 0) && !(t->max_ppl_ratio > 1))
        return lb_fail(LB_ERR_INVALID, "tune: give a KL (> 0) or a perplexity ratio (> 1) to meet");
    if (!s->quantized) return lb_fail(LB_ERR_INVALID, "tune needs the quantized tensors: measure with keep_tensors = 1");
    tuner u = {o, s, t, 0};
    int *other = lb_alloc((size_t)s->n_tensors * sizeof *other);
    if (!other) return LB_ERR_NOMEM;
    lb_status st = bisection(&u, choice, r);
    r->bisection_steps = u.steps;
    u.steps = 0;
    if (st == LB_OK) st = fallback(&u, other, &r->fallback, &r->fallback_met);
    r->fallback_steps = u.steps;
    if (st == LB_OK && r->fallback_met && (!r->bisection_met || r->fallback.bits < r->bisection.bits)) {
        memcpy(choice, other, (size_t)s->n_tensors * sizeof *choice);
        r->chosen = r->fallback;
        r->strategy = "fallback";
    } else if (st == LB_OK && r->bisection_met) {
        r->chosen = r->bisection;
        r->strategy = "bisection";
    } else if (st == LB_OK) {
        st = lb_fail(LB_ERR_INVALID, "tune: no mix of these candidates meets the target (the richest: KL %.5g, "
                     "perplexity ratio %.5g)", r->richest.kld, r->richest.ppl_ratio);
    }
    lb_free(other);
    return st;
}
