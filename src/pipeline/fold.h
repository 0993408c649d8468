/* The model-level input-scaling pass (fold.c) that lb_quantize_model_calibrated
 * runs before quantizing when a plan's method has an input_scales hook
 * (awq, awq+gptq, smoothquant). Internal to src/pipeline. */
#ifndef LB_PIPELINE_FOLD_H
#define LB_PIPELINE_FOLD_H

#include "lowbit/pipeline.h"

typedef struct {
    int n_layers;
    float **w;                /* n_layers * LB_N_LINEARS folded f32 weights, NULL: unchanged */
    float **norm;             /* n_layers * 2 folded attn_norm / ffn_norm, NULL: unchanged */
    float **in_s;             /* n_layers * LB_CALIB_N_INPUTS scales s of each input, NULL: not scaled */
    lb_layer_stats *stats;    /* n_layers * LB_CALIB_N_INPUTS statistics of x / s (owned; valid where in_s) */
    lb_layer_stats *lin;      /* n_layers * LB_N_LINEARS views of those, rows set per linear */
    lb_method_report *reports; /* n_layers * LB_CALIB_N_INPUTS: what each group's search reported */
    int any;                  /* some input was scaled */
} lb_fold;

/* Searches and folds the scales of every input whose consumers' plan
 * entries (p resolved against m) use a scaling row, into copies: m is not
 * touched. Fails, naming the layer and input, on missing or bad statistics,
 * mixed scaling rows in one group, or a quantized tensor outside the plan
 * that folding would have to change. */
lb_status lb_fold_prepare(lb_model *m, const lb_plan *p, const lb_calib_stats *stats, lb_fold *f);
/* The folded f32 weight of tensor t (a model tensor), or NULL when folding
 * does not change it; its input statistics after scaling, or NULL. */
const float *lb_fold_weight(const lb_fold *f, const lb_model *m, const lb_tensor *t);
const lb_layer_stats *lb_fold_stats(const lb_fold *f, const lb_model *m, const lb_tensor *t);
/* Allocates what committing needs: f32 tensors for the folded norms and for
 * folded linears the plan does not quantize (all f32, checked by prepare),
 * or (all_linears) for every folded linear, which must then be f32. */
lb_status lb_fold_stage(lb_fold *f, lb_model *m, const lb_plan *p, int all_linears, lb_tensor **staged);
/* Replaces m's tensors by the staged ones (and divides producers' biases);
 * cannot fail. */
void lb_fold_commit(lb_fold *f, lb_model *m, lb_tensor *staged);
void lb_fold_free(lb_fold *f);

#endif
