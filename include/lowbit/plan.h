/* lowbit plan: mixed precision by sensitivity (src/plan/; docs/PLANNING.md).
 *
 * `lowbit plan` measures, for every selected tensor and every candidate (a
 * format made by a method with options), what quantizing only that tensor
 * that way does to the model (sensitivity.c), chooses one candidate per
 * tensor under a bit budget by an exact multiple-choice knapsack
 * (allocate.c), and refines the choice by measuring the assembled mix
 * (refine.c). The choice becomes an ordinary quantization plan
 * (lowbit/pipeline.h), written as a recipe. */
#ifndef LOWBIT_PLAN_H
#define LOWBIT_PLAN_H

#include "lowbit/eval.h"
#include "lowbit/pipeline.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    lb_qspec spec;
    lb_method_opts opts; /* opts.method makes spec */
} lb_candidate;

typedef struct {
    const char *model_path;      /* loaded afresh for every measurement (nothing leaks between them) */
    const char *tensors;         /* the selection (lb_plan_add_selection syntax; NULL: "linears") */
    const lb_text *text;         /* calibration text: the measurement scores eval.split of it */
    lb_eval_opts eval;           /* how the loss is measured (its ref is set here: the model as loaded) */
    const lb_calib_stats *stats; /* the fp model's statistics: for calibrated candidates, and the
                                    proxies (with X^T X); NULL: data-free candidates only */
    const uint8_t *mask;         /* [tensor * n_candidates + candidate], 0: not measured (NULL: all) */
    int keep_tensors;            /* 1: keep every quantized tensor (lb_sensitivity.quantized), for
                                    lb_plan_refine; candidates must then change only the weight */
    int row_blocks;              /* > 0: the items are row blocks, each selected tensor's output rows cut
                                    into this many contiguous ranges (src/plan/rowblock.c): a block is
                                    quantized on its own and measured with the rest of the model f32;
                                    the mask is then per (block, candidate). 0: whole tensors */
    int block_axis;              /* with row_blocks: 1 cuts the input columns instead (column blocks,
                                    written as column rules: a block is quantized as the tensor's
                                    columns alone, with those input channels' statistics) */
} lb_sensitivity_opts;

typedef struct {
    int n_tensors, n_candidates;
    int *tensor;           /* (n_tensors) lb_model_tensor_at index */
    char (*names)[96];     /* (n_tensors) */
    int64_t *weights;      /* (n_tensors) rows x cols */
    /* [t * n_candidates + c]; NAN where not measured (masked, or the method cannot make the format) */
    double *bits;          /* the tensor as stored, every bit (slots too) */
    double *kld;           /* mean KL(model || model with only tensor t quantized by c) per scored token, nats */
    double *dnll;          /* the change of the mean negative log-likelihood, nats */
    double *proxy;         /* the method's proxy loss tr(dW H dW^T) / n (lb_tensor_report; NAN without X^T X) */
    double *werr;          /* ||W - Q||_F^2, the plain weight error */
    double *hawq;          /* tr(H) / (n cols) x ||W - Q||^2: HAWQ's mean Hessian eigenvalue times it (NAN without X^T X) */
    double *fisher;        /* sum of g^2 (W - Q)^2, g^2 the mean squared loss gradient per weight (NAN without them) */
    lb_tensor *quantized;  /* [t * n_candidates + c] the quantized tensors (opts.keep_tensors; else NULL) */
    int *group;            /* (n_tensors) the group each tensor's choice is made with (lb_plan_set_granularity) */
    int n_groups;          /* each tensor alone after lb_sensitivity_measure */
    /* row blocks (opts.row_blocks > 0), else NULL: item t is rows [row0[t], row1[t]) of tensor[t],
     * and rows_q[t * n_candidates + c] those rows quantized by c on their own, dequantized
     * ((row1 - row0) x cols floats; NULL where not measured); the items are named "NAME rows R0:R1" */
    int64_t *row0, *row1;
    int block_axis;        /* 1: the blocks are input columns: row0/row1 are columns, rows_q blocks rows x
                              (row1 - row0), the items named "NAME cols C0:C1" */
    float **rows_q;
    double nll;            /* the unquantized model's mean negative log-likelihood on the same tokens */
    int64_t tokens;        /* tokens scored per measurement */
    double seconds;
} lb_sensitivity;

/* Measures every (tensor, candidate) pair the mask allows (or every (row
 * block, candidate) pair with opts.row_blocks), showing
 * progress. A candidate a method refuses for a tensor (lb_plan_check) is
 * left NAN; any other failure fails the whole call, naming the pair. */
LB_API lb_status lb_sensitivity_measure(const lb_sensitivity_opts *o, const lb_candidate *cands, int n_candidates,
                                        lb_sensitivity *out);
LB_API void lb_sensitivity_free(lb_sensitivity *s);
/* Interaction-aware refinement of a choice (choice[t] a candidate per
 * tensor, within budget bits): the model is assembled as chosen from the
 * kept tensors (o->keep_tensors), then each tensor's candidates are
 * measured again in that context (the KL of the whole mix with tensor t
 * changed to c) and the knapsack is solved again over these losses; up to
 * `rounds` times, stopping early when the choice repeats. kld[0] is the
 * measured KL of the first choice, kld[r] that after round r (kld has
 * rounds + 1 entries; NAN after an early stop). The sensitivity's kld is
 * left as first measured. */
LB_API lb_status lb_plan_refine(const lb_sensitivity_opts *o, const lb_sensitivity *s,
                                double budget, int rounds, int *choice, double *kld);
/* The KL (and mean NLL) of the model assembled from s's kept tensors as
 * choice says, against the model as loaded, scored as o->eval says. */
LB_API lb_status lb_plan_measure(const lb_sensitivity_opts *o, const lb_sensitivity *s, const int *choice,
                                 lb_eval_result *r);
/* Accuracy-driven tuning (tune.c): the smallest mix of the kept tensors
 * that meets a target on the scored split, by bisection over the budget
 * (knapsack, then `rounds` refinement rounds, at each budget tried) and by
 * falling back from the cheapest mix, most sensitive tensors first; the
 * smaller of the two that meets the target goes to choice. Fails, naming
 * the richest mix's figures, when no mix meets it. */
typedef struct {
    double max_kld;       /* > 0: the mix's mean KL per token must be at most this */
    double max_ppl_ratio; /* > 1: its perplexity over the model's at most this */
    int rounds;           /* refinement rounds at each budget bisection tries */
} lb_tune_opts;

typedef struct {
    double bits, kld, ppl_ratio;
} lb_tune_point;

typedef struct {
    lb_tune_point chosen, bisection, fallback; /* the smallest mixes that met the target */
    lb_tune_point richest;                     /* every tensor at its richest candidate */
    int bisection_met, fallback_met;
    int bisection_steps, fallback_steps;       /* mixes each search measured */
    const char *strategy;                      /* "bisection" or "fallback": the one chosen */
} lb_tune_result;

LB_API lb_status lb_plan_tune(const lb_sensitivity_opts *o, const lb_sensitivity *s, const lb_tune_opts *t, int *choice,
                              lb_tune_result *r);
/* Spearman's rank correlation of two series over the pairs where both are
 * finite (NAN when fewer than 3 such pairs or a series is constant). */
LB_API double lb_rank_correlation(const double *a, const double *b, int n);

/* Which tensors share one choice from now on: "tensor" (each alone, as
 * measured) or "layer" (the linears of one transformer block together; any
 * other tensor alone). Row-block measurements take "rowblock" or
 * "rowblock:N" (each block alone; N must be the opts.row_blocks measured). lb_plan_choose, lb_plan_refine and lb_plan_tune choose
 * per group. */
LB_API lb_status lb_plan_set_granularity(lb_sensitivity *s, const char *granularity);
/* The knapsack over the KLs measured alone: choice[t] per tensor (the same
 * within a group), at most budget bits in all. */
LB_API lb_status lb_plan_choose(const lb_sensitivity *s, double budget, int *choice);

/* Multiple-choice knapsack: n items with n_opts options each, option k of
 * item i costing cost[i * n_opts + k] >= 0 (NAN: not allowed) and adding
 * loss[i * n_opts + k]. Writes the option per item (choice, n entries) of
 * least total loss whose total cost is at most budget. Exact over costs
 * rounded up to whole units of `unit` (so the choice always fits); unit 0
 * picks the finest unit that keeps the table near 2^25 cells. Fails, saying
 * how many bits they need, when the cheapest options exceed the budget. */
LB_API lb_status lb_allocate(int n, int n_opts, const double *cost, const double *loss, double budget, double unit,
                             int *choice);

#ifdef __cplusplus
}
#endif
#endif
