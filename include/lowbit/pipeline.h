/* lowbit pipeline: quantizing a whole model by a plan.
 *
 * A plan is an ordered list of rules, each "tensors matching PATTERN get
 * this format spec, method and options"; for every tensor the last rule that
 * matches wins (as llama-quantize's --tensor-type). Patterns are `linears`
 * (the seven linears of every layer), `embeddings`, `output`, `all`, or an
 * fnmatch glob over tensor names ('blk.*.ffn_down.weight'). Norm weights are
 * never selected: they stay f32.
 *
 * Resolving a plan against a model gives one entry per selected tensor. A
 * plan can be written as a recipe (one rule per line, docs/RECIPES.md) and
 * read back; the resolved plan written as a recipe reads back to the same
 * plan. */
#ifndef LOWBIT_PIPELINE_H
#define LOWBIT_PIPELINE_H

#include "lowbit/calib.h"
#include "lowbit/model.h"
#include "lowbit/quant.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LB_PLAN_PATTERN_MAX 128 /* bytes of a pattern, NUL included */
#define LB_RECIPE_LINE_MAX 1024 /* bytes of a recipe line, newline excluded */
#define LB_PLAN_MAX_RULES 65536

typedef struct {
    char pattern[LB_PLAN_PATTERN_MAX];
    lb_qspec spec;
    lb_method_opts opts; /* opts.method is the rule's method */
    int line;            /* recipe line the rule came from (0: not from a recipe) */
} lb_plan_rule;

typedef struct {
    int tensor;    /* index for lb_model_tensor_at */
    char name[96];
    lb_qspec spec;
    lb_method_opts opts;
    int rule;      /* the rule that won */
} lb_plan_entry;

typedef struct {
    lb_plan_rule *rules;
    int n_rules, cap_rules;
    lb_plan_entry *entries; /* filled by lb_plan_resolve, in model tensor order */
    int n_entries;
} lb_plan;

LB_API void lb_plan_init(lb_plan *p);
LB_API void lb_plan_free(lb_plan *p);

/* One rule; the pattern must be non-empty, without whitespace, and shorter
 * than LB_PLAN_PATTERN_MAX. */
LB_API lb_status lb_plan_add_rule(lb_plan *p, const char *pattern, const lb_qspec *spec, const lb_method_opts *opts);
/* A comma-separated selection (the CLI's --tensors): one rule per entry, all
 * with this spec and options. An empty list or an empty entry is an error. */
LB_API lb_status lb_plan_add_selection(lb_plan *p, const char *list, const lb_qspec *spec, const lb_method_opts *opts);
/* "PATTERN=SPEC[,method=NAME][,key=value]..." (the CLI's --tensor-type). The
 * rule starts from `base` (method and options; NULL: rtn's defaults); a
 * method= that changes the method starts from that method's defaults. */
LB_API lb_status lb_plan_add_override(lb_plan *p, const char *text, const lb_method_opts *base);

/* Recipe text: one rule per line, "PATTERN SPEC [method=NAME] [key=value ...]",
 * '#' comments, blank lines. Errors say "<source>:<line>: ...". Rules are
 * appended to p; on failure p keeps the rules it had before. */
LB_API lb_status lb_plan_parse_recipe(lb_plan *p, const char *text, size_t len, const char *source);
LB_API lb_status lb_plan_load_recipe(lb_plan *p, const char *path);
/* The rules (resolved = 0) or the resolved entries, one line per tensor
 * (resolved = 1), as recipe text (lb_free the result). header: a comment
 * line to open with, or NULL. */
LB_API lb_status lb_plan_format_recipe(const lb_plan *p, int resolved, const char *header, char **out);
/* The resolved plan as a recipe file, written atomically. */
LB_API lb_status lb_plan_save_recipe(const lb_plan *p, const char *path, const char *header);

/* Applies the rules to m's tensors (last match wins) into p->entries. Fails
 * when the plan has no rules, when a rule matches no tensor or only norms,
 * or on `output` when the classifier is tied to the embedding. */
LB_API lb_status lb_plan_resolve(lb_plan *p, lb_model *m);
/* Asks each resolved entry's method whether it can produce its spec (e.g.
 * twn only makes ternary formats): fails naming the first tensor that
 * cannot, before any work. */
LB_API lb_status lb_plan_check(const lb_plan *p);
/* "method=rtn clip=mse format=int4:g64:asym tensors=linears; ..." : the rules,
 * options not at their defaults, rules that differ only in pattern merged;
 * cut with "..." to fit n. */
LB_API void lb_plan_summary(const lb_plan *p, char *buf, size_t n);

typedef struct {
    int tensors_quantized;
    double bpw;     /* over every non-float tensor of the model afterwards (lb_model_sizes) */
    double bpw_all; /* over the whole model */
    double seconds;
} lb_quantize_report;

/* Quantizes m's tensors by the plan (resolved here against m), showing
 * progress, and records the plan's summary as m->quant_note. All or
 * nothing: on failure m is unchanged and the error names the tensor. Float
 * specs convert; the methods see the tensor's current values dequantized. */
LB_API lb_status lb_quantize_model(lb_model *m, const lb_plan *plan, lb_quantize_report *report);

/* The calibration statistics a resolved plan's methods need: the OR of
 * their LB_STATS_* bits (0: every method is data-free). */
LB_API unsigned lb_plan_stats_needed(const lb_plan *p);

/* lb_quantize_model with calibration statistics (lb_calibrate, or
 * lb_calib_stats_load): each linear's method gets the statistics of its
 * input (lb_calib_stats_for_tensor). stats may be NULL when no method needs
 * any; a method that needs them and gets none fails naming the tensor. */
LB_API lb_status lb_quantize_model_calibrated(lb_model *m, const lb_plan *plan, const lb_calib_stats *stats,
                                              lb_quantize_report *report);

/* The input-scaling pass alone (awq, awq+gptq, smoothquant: the rows with
 * an input_scales hook; src/pipeline/fold.c): searches each scaled input's
 * s as lb_quantize_model_calibrated would and folds it into m (linears store
 * W diag(s), the input's producer is divided by s), without quantizing.
 * The folded model computes the same function as before. Every tensor it
 * changes must be f32 (fails otherwise, m unchanged); plan rules with other
 * methods are ignored. For checking the folding, and for W8A8 setups that
 * quantize the smoothed model's activations themselves. */
LB_API lb_status lb_fold_input_scales(lb_model *m, const lb_plan *plan, const lb_calib_stats *stats);

#ifdef __cplusplus
}
#endif
#endif
