/* Block-wise reconstruction PTQ (issue 9 item 5): the quantization of one
 * transformer block refined by gradient descent on the block's output error
 * against the fp32 block, through the block's backward (train/ops.h).
 *
 *   autoround  AutoRound / SignRound (Cheng et al. 2023, arXiv:2309.05516):
 *              a learned rounding offset V per weight and factors alpha,
 *              beta in [0.5, 1] on each group's max and min, signed SGD,
 *              best step kept; starts from the method's grid and codes
 *   lwc        OmniQuant's learnable weight clipping (Shao et al. 2023,
 *              arXiv:2308.13137): max and min scaled by sigmoid(learned),
 *              round to nearest through the straight-through estimator, Adam
 *   2dquant    2DQuant (Liu et al. 2024, arXiv:2406.06649): DOBI, a search
 *              of each group's bounds on the weights, then DQC, the bounds
 *              refined by distillation against the fp32 block, Adam
 *   blockap    EfficientQAT's phase 1, Block-AP (Chen et al. 2024,
 *              arXiv:2407.11062): the weights themselves trained with the
 *              bounds (step and zero point), round to nearest through the
 *              straight-through estimator, Adam; starts from the method's
 *              grid and the fp32 weights. Its phase 2 (the step sizes alone,
 *              end to end, codes frozen) is the trainer's e2eqp scheme.
 *
 * The math, defaults and deviations: docs/methods/autoround.md. Formats:
 * the uniform family without hierarchical scales (int<b>:g<G>:sym|asym|zint). */
#ifndef LB_TRAIN_BLOCKREC_H
#define LB_TRAIN_BLOCKREC_H

#include "lowbit/model.h"

typedef enum { LB_BLOCKREC_AUTOROUND, LB_BLOCKREC_LWC, LB_BLOCKREC_2DQUANT, LB_BLOCKREC_BLOCKAP } lb_blockrec_kind;

typedef struct {
    lb_blockrec_kind kind;
    int steps;      /* optimizer steps (default 200) */
    float lr;       /* autoround: 1 / steps; lwc: 1e-2; 2dquant, blockap (the bounds): 2e-3 */
    float wlr;      /* blockap: the weights' rate, in units of their group's starting step */
    int batch;      /* calibration sequences per step (default 8) */
    uint64_t seed;  /* minibatch order (default 1) */
    int target_fp;  /* 1 (target=fp): the targets are the fp32 model's block outputs (the teacher on
                       data.x_teacher, AutoRound's choice); 0 (target=local, default): the teacher on
                       the student's inputs */
} lb_blockrec_opts;

/* "autoround", "lwc", "2dquant" or "blockap", then ":key=value" options separated by
 * ',' or ':' (steps, lr, batch, seed, target=local|fp; blockap: wlr). Unset
 * values take the kind's defaults (blockap: target=fp, as EfficientQAT). */
lb_status lb_blockrec_opts_parse(const char *text, lb_blockrec_opts *o);
const char *lb_blockrec_kind_name(lb_blockrec_kind k);

/* The block's inputs: n_seq sequences, sequence i is len[i] rows of x
 * (dim wide) from row offset[i], at positions 0..len[i]-1. */
typedef struct {
    const float *x;
    int n_seq;
    const int *len;
    const size_t *offset;
    const float *x_teacher; /* the teacher's inputs in the same layout (the fp32 model's), or NULL: x */
} lb_blockrec_data;

typedef struct {
    double mse_init, mse_final; /* block output MSE over all the data, before and after */
    int kept;                   /* 0: the start was kept, 1: the best step, 2: the last step */
    int steps;
} lb_blockrec_report;

typedef struct lb_blockrec lb_blockrec;

/* Refinement of block `layer` of m. teacher[w]: the fp32 weight of linear
 * w (any format, dequantized), NULL: m's own. learn[w]: linear w is
 * refined; its tensor in m is the starting quantization and must be of the
 * uniform family without hierarchical scales. The targets, the teacher
 * block over data's inputs, are computed here; data must outlive b. */
lb_status lb_blockrec_create(const lb_model *m, int layer, const lb_tensor *const teacher[LB_N_LINEARS],
                             const int learn[LB_N_LINEARS], const lb_blockrec_opts *o, const lb_blockrec_data *data,
                             lb_blockrec **out);
void lb_blockrec_free(lb_blockrec *b);
/* The targets (the teacher block's outputs), laid out as data.x. */
const float *lb_blockrec_targets(const lb_blockrec *b);

/* The block output's MSE over sequences [s0, s1) against the targets. soft:
 * rounding replaced by the identity and scales not rounded to fp16 (the
 * function whose exact gradient the straight-through estimator computes:
 * what the finite-difference test checks). grad: the gradients of the
 * learned quantities are overwritten with this loss's. */
lb_status lb_blockrec_loss(lb_blockrec *b, int s0, int s1, int soft, int grad, double *loss);

/* The learned quantities of linear w and their gradients: what 0 = the
 * rounding offsets (rows x cols, autoround) or the weights' moves in
 * units of their group's starting step (blockap), 1 = the lower-bound
 * parameter per group, 2 = the upper one. NULL when absent. */
float *lb_blockrec_param(lb_blockrec *b, int w, int what, size_t *n);
const float *lb_blockrec_grad(const lb_blockrec *b, int w, int what);
/* The weight (rows x cols) linear w had in the last forward. */
const float *lb_blockrec_weight(const lb_blockrec *b, int w);

/* Runs the optimizer, keeping whichever of the start, the best step (by its
 * minibatch loss) and the last step has the lowest MSE over all the data. */
lb_status lb_blockrec_optimize(lb_blockrec *b, lb_blockrec_report *rep);

/* Linear w as a uniform tensor holding exactly the weights of the current
 * parameters' (non-soft) forward; out owns its bytes. */
lb_status lb_blockrec_export(lb_blockrec *b, int w, lb_tensor *out);

#endif
