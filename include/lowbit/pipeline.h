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
    int64_t row0, row1;  /* a row rule (lb_plan_add_row_rule): output rows [row0, row1) of each
                            matching tensor; 0, 0: the whole tensor */
    int axis;            /* 1: a column rule (lb_plan_add_col_rule): row0, row1 are input columns */
} lb_plan_rule;

/* One row range (or column range) of a split entry: its own format, method
 * and options. */
typedef struct {
    int64_t row0, row1; /* rows, or columns when the entry's split_axis is 1 */
    lb_qspec spec;
    lb_method_opts opts;
    int rule;
} lb_plan_part;

typedef struct {
    int tensor;    /* index for lb_model_tensor_at */
    char name[96];
    lb_qspec spec;
    lb_method_opts opts;
    int rule;      /* the rule that won */
    lb_qspec asked; /* the rule's spec when spec is its fallback (a K-quant on rows that are not
                       whole blocks: lb_format_ggml_fallback), else the same as spec */
    /* Row rules cut this tensor into parts (spec is then "split": the parts
     * quantized one by one, each a tensor of its rows, and joined,
     * lb_split_join; opts is the part whose statistics cover every part's);
     * NULL / 0 otherwise. Stored with the entries (freed with them). */
    const lb_plan_part *parts;
    int n_parts;
    int split_axis; /* what the parts cut: 0 rows (row rules), 1 columns (column rules) */
} lb_plan_entry;

typedef struct {
    lb_plan_rule *rules;
    int n_rules, cap_rules;
    lb_plan_entry *entries; /* filled by lb_plan_resolve, in model tensor order */
    int n_entries;
    /* Activation quantizer for the input of every linear of every layer
     * (lowbit/linear.h; kind LB_AQ_NONE by lb_plan_init: none), set by
     * lb_quantize_model_calibrated after the weights, whatever their method.
     * A static one (LB_AQ_TENSOR) gets each linear's clip from the
     * statistics' histogram of its input (lb_act_range; clip here is
     * ignored); a linear with an input scale or rotation is refused there,
     * since the statistics describe x, not the x' it would quantize. */
    lb_act_quant act;
    /* The journal of a resumable run (lb_journal_open; NULL, by lb_plan_init:
     * none): every driver (lb_quantize_model_calibrated, _to_gguf,
     * _sequential, _refined) takes tensors journaled by an interrupted run
     * instead of quantizing them, and journals each one it quantizes. */
    struct lb_journal *journal;
} lb_plan;

LB_API void lb_plan_init(lb_plan *p);
LB_API void lb_plan_free(lb_plan *p);

/* One rule; the pattern must be non-empty, without whitespace, and shorter
 * than LB_PLAN_PATTERN_MAX. */
LB_API lb_status lb_plan_add_rule(lb_plan *p, const char *pattern, const lb_qspec *spec, const lb_method_opts *opts);
/* A row rule: output rows [row0, row1) of every tensor matching pattern
 * (a recipe's "PATTERN rows=R0:R1 SPEC ...", what lowbit plan --granularity
 * rowblock writes). Resolving, the last matching rule wins row by row, whole
 * rules included; a tensor whose rows end up with different rules becomes a
 * split tensor (lowbit/format.h), every row needing a rule. */
LB_API lb_status lb_plan_add_row_rule(lb_plan *p, const char *pattern, int64_t row0, int64_t row1,
                                      const lb_qspec *spec, const lb_method_opts *opts);
/* A column rule: input columns [col0, col1) of every tensor matching
 * pattern (a recipe's "PATTERN cols=C0:C1 SPEC ..."), resolved as row rules
 * are, column by column; a tensor is cut by row rules or by column rules,
 * not both. Its parts are quantized each as a tensor of its columns, with
 * those columns' statistics (lb_layer_stats_cols). */
LB_API lb_status lb_plan_add_col_rule(lb_plan *p, const char *pattern, int64_t col0, int64_t col1,
                                      const lb_qspec *spec, const lb_method_opts *opts);
/* A comma-separated selection (the CLI's --tensors): one rule per entry, all
 * with this spec and options. An empty list or an empty entry is an error. */
LB_API lb_status lb_plan_add_selection(lb_plan *p, const char *list, const lb_qspec *spec, const lb_method_opts *opts);
/* "SPEC[,method=NAME][,key=value]...": a format and the method (with options)
 * that makes it, starting from `base` (method and options; NULL: rtn's
 * defaults); a method= that changes the method starts from that method's
 * defaults. */
LB_API lb_status lb_plan_parse_choice(const char *text, const lb_method_opts *base, lb_qspec *spec, lb_method_opts *opts);
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
 * twn only makes ternary formats), and refuses rotations with a static
 * activation range: fails naming the first tensor that cannot, before any
 * work. */
LB_API lb_status lb_plan_check(const lb_plan *p);
/* "method=rtn clip=mse format=int4:g64:asym tensors=linears; ..." : the rules,
 * options not at their defaults, rules that differ only in pattern merged;
 * cut with "..." to fit n. */
LB_API void lb_plan_summary(const lb_plan *p, char *buf, size_t n);

/* What quantizing one tensor gave (lb_quantize_report.tensors). */
typedef struct {
    char name[96];
    lb_qspec spec;
    lb_method_opts opts;      /* the method and its options (opts.report is NULL) */
    int64_t rows, cols;
    double bpw;               /* this tensor as stored: bytes x 8 / weights */
    double rel_error;         /* ||W - Q||_F / ||W||_F, Q dequantized (0 when W is all zero) */
    /* tr(dW H dW^T) / n with H = X^T X of the tensor's input over the n
     * calibration tokens, undamped: the mean over tokens of the squared
     * output error ||dW x||^2. The statistics are those the tensor was
     * quantized with (sequential: of the partly quantized model). NAN when
     * no X^T X is at hand (a data-free plan, or not a linear). */
    double proxy_loss;
    double proxy_loss_rtn;    /* the same for round-to-nearest: same spec, rtn's default options */
    lb_method_report method;  /* what the method reported (gptq: damping used, dead inputs, its own damped loss) */
    double seconds;           /* wall time of this tensor's method call */
} lb_tensor_report;

typedef struct {
    int tensors_quantized;
    double bpw;     /* over every non-float tensor of the model afterwards (lb_model_sizes) */
    double bpw_all; /* over the whole model */
    double seconds;
    int sequential; /* 1: lb_quantize_model_sequential made it */
    /* tensors_quantized records, in plan order (owned: lb_quantize_report_free) */
    lb_tensor_report *tensors;
} lb_quantize_report;

/* Frees report->tensors (safe on a zeroed or failed report). */
LB_API void lb_quantize_report_free(lb_quantize_report *r);
/* The report as one JSON object ({"sequential", "tensors_quantized", "bpw",
 * "bpw_all", "seconds", "totals": {...}, "tensors": [{name, format, method,
 * options, rows, cols, bpw, rel_error, proxy_loss, proxy_loss_rtn, damping,
 * damping_rel, damping_raises, dead_inputs, seconds}, ...]}; NaN as null),
 * written atomically. docs/CALIBRATION.md describes the fields. */
LB_API lb_status lb_quantize_report_save_json(const lb_quantize_report *r, const char *path);

/* Quantizes m's tensors by the plan (resolved here against m), showing
 * progress, and records the plan's summary as m->quant_note. All or
 * nothing: on failure m is unchanged and the error names the tensor. Float
 * specs convert; the methods see the tensor's current values dequantized.
 * report (optional) is filled on success; free it with
 * lb_quantize_report_free. */
LB_API lb_status lb_quantize_model(lb_model *m, const lb_plan *plan, lb_quantize_report *report);

/* The calibration statistics a resolved plan's entries need: the OR of
 * lb_method_opts_stats over them, and LB_STATS_HIST_X | LB_STATS_MAX_ABS_X
 * for a static activation quantizer (0: everything is data-free). */
LB_API unsigned lb_plan_stats_needed(const lb_plan *p);

/* lb_quantize_model with calibration statistics (lb_calibrate, or
 * lb_calib_stats_load): each linear's method gets the statistics of its
 * input (lb_calib_stats_for_tensor). stats may be NULL when no method needs
 * any; a method that needs them and gets none fails naming the tensor.
 * The options every method takes (outliers=, bias_correct=1: see
 * lb_quantize_tensor_ex) put a sparse part and a bias change into the
 * linear's slots; they fail on a tensor that is not a linear's weight, and
 * on a linear that already has outliers (the method sees only its dense
 * weight, so they would be lost). */
LB_API lb_status lb_quantize_model_calibrated(lb_model *m, const lb_plan *plan, const lb_calib_stats *stats,
                                              lb_quantize_report *report);

/* Quantizes as lb_quantize_model_calibrated and writes the result as
 * lb_model_save_gguf_split(m, path, NULL, NULL, NULL, split, n_shards)
 * would (split NULL: one file), the same bytes, streaming when the plan
 * allows (*streamed = 1): each tensor quantized while the file is written,
 * written and freed before the next, m's weights left as they were, so
 * memory holds about one tensor rather than the quantized model
 * (docs/SCALING.md, "Streaming"). Plans with data-dependent or cross-tensor
 * parts (lb_plan_streamable) take the in-memory path (*streamed = 0): m is
 * then quantized as by lb_quantize_model_calibrated. All or nothing: on
 * failure no file is left. report (optional) gets the totals and records;
 * measure 0 leaves out the records' error measures when streaming (their
 * rel_error, proxy losses: a second f32 copy of each tensor and another
 * quantization; the in-memory path always measures). Statistics from
 * lb_calib_stats_open are given back a layer at a time when streaming
 * (lb_calib_stats_release_layer after a layer's last tensor), so memory
 * holds about one layer's statistics, not the model's. */
LB_API lb_status lb_quantize_model_to_gguf(lb_model *m, const lb_plan *plan, const lb_calib_stats *stats,
                                           const char *path, const lb_gguf_split_opts *split, int *n_shards,
                                           lb_quantize_report *report, int measure, int *streamed);
#ifdef LB_ADVANCED_API /* for extending lowbit (methods, formats, tools); not a stable API */
/* The same across the ranks of comm (NULL: one process; docs/SCALING.md,
 * "MPI"), collectively: every rank passes the same model, plan and
 * statistics. When streaming, plan entry k is quantized by rank k mod size
 * and rank 0 writes the file, receiving each tensor in file order: the same
 * bytes as one process. A plan that does not stream is quantized by rank 0
 * alone (the others return LB_OK, *streamed = 0). Only rank 0 writes and
 * fills report; a failure on any rank fails rank 0 (no file left), and
 * rank 0's failure is returned on every rank that reaches its end. */
LB_API lb_status lb_quantize_model_to_gguf_dist(lb_model *m, const lb_plan *plan, const lb_calib_stats *stats,
                                                const char *path, const lb_gguf_split_opts *split, int *n_shards,
                                                lb_quantize_report *report, int measure, int *streamed,
                                                const lb_comm *comm);
#endif
/* 1 when every tensor of a resolved plan can be quantized as it is written:
 * no input-scaling method (awq, smoothquant), no outliers, bias correction,
 * rotation or low-rank adapter (parts whose size or presence depends on the
 * data, or that change other tensors). */
LB_API int lb_plan_streamable(const lb_plan *p);

/* True-sequential quantization (GPTQ's "true-sequential"; docs/CALIBRATION.md,
 * "Sequential mode"): layer by layer, and within a layer in the stages
 * {q, k, v}, o, {gate, up}, down, the statistics of a stage's input are
 * collected from the model as it is then (earlier layers and stages
 * already quantized) over the calibration text `calib` (as lb_calibrate;
 * its parts are ignored: the plan's methods decide), and that stage is
 * quantized at once. A token embedding in the plan is quantized first (the
 * calibration then runs on it), the classifier last. A plan whose methods
 * need no statistics calibrates nothing and equals lb_quantize_model. All or
 * nothing as lb_quantize_model; same bytes for any thread count. */
LB_API lb_status lb_quantize_model_sequential(lb_model *m, const lb_plan *plan, const lb_calib_opts *calib,
                                              lb_quantize_report *report);
/* The same, and after each layer's stages the layer's uniform-format
 * linears are refined together by block-wise reconstruction against the
 * fp32 layer on the same (partly quantized model's) inputs: refine is
 * "autoround", "lwc" or "2dquant" with options (":steps=200,lr=..,batch=8,seed=1";
 * src/train/blockrec.h, docs/methods/autoround.md). Calibrates even for a
 * plan whose methods need no statistics (rtn): the inputs are needed. */
LB_API lb_status lb_quantize_model_refined(lb_model *m, const lb_plan *plan, const lb_calib_opts *calib,
                                           const char *refine, lb_quantize_report *report);

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

/* ---- resumable runs (docs/SCALING.md, "Resumable runs") ------------------
 * A journal holds the finished tensors of one quantization run (packed bytes,
 * slot parts, report record), appended and flushed to disk after each, and
 * the run's fingerprint: a run interrupted at any point, resumed with the
 * same fingerprint, writes the same bytes as one never interrupted. */
typedef struct lb_journal lb_journal;
/* Opens the journal at path for a run whose fingerprint is the text given.
 * No file: a new journal. A file and resume 0: refused (an interrupted run's
 * journal is never used or overwritten silently). A file and resume 1: its
 * fingerprint must be this one (else an error quoting the first line that
 * differs); its records are checked, and a record cut short or damaged is
 * dropped with all after it (lb_journal_note says so). */
LB_API lb_status lb_journal_open(const char *path, const char *fingerprint, int resume, lb_journal **out);
/* What makes a run's tensors differ, as text, one "what: value" line each:
 * the lowbit and journal versions; the model's tensor table (names, formats,
 * shapes, byte counts) and a hash of the first and last 4 KiB of every
 * tensor; each files[i] (may be NULL: skipped) under labels[i] as its size
 * and the FNV-1a of all its bytes; extra (a line of the caller's options,
 * or NULL); and the plan resolved against m (NULL: no plan, for a
 * calibration), per tensor its format, method and every option. lb_free(*out). */
LB_API lb_status lb_journal_fingerprint(lb_model *m, const lb_plan *plan, const char *const *labels,
                                        const char *const *files, int n_files, const char *extra, char **out);
/* The tensors the journal holds. */
LB_API int lb_journal_done(const lb_journal *j);
/* What opening dropped ("" when nothing). */
LB_API const char *lb_journal_note(const lb_journal *j);
/* Make the drivers fail once the journal holds n tensors (0: never), as an
 * interruption would: for tests. lb_journal_stopped then says 1. */
LB_API void lb_journal_set_stop(lb_journal *j, int n);
LB_API int lb_journal_stopped(const lb_journal *j);
/* Closes it, and with remove_file 1 deletes the file (after a run's output is written). */
LB_API lb_status lb_journal_close(lb_journal *j, int remove_file);
/* FNV-1a 64 of n bytes, continuing from h (1469598103934665603 to start). */
LB_API uint64_t lb_journal_hash(const void *data, size_t n, uint64_t h);

#endif
