/* Shared pieces of the lowbit command line: option parsing, JSON output,
 * and the common options every verb takes. */
#ifndef LB_CLI_H
#define LB_CLI_H

#include <stdio.h>

#include "lowbit.h"

/* exit codes: 0 ok, 1 the work failed (bad file, bad data), 2 bad usage */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

typedef struct {
    int argc;
    char **argv;
    int i;             /* next argument */
    const char *verb;
    const char *positional[4];
    int n_positional;
    int json;
    int help;
} cli_args;

/* Every verb: --json, --threads N, --progress/--no-progress, --help. Returns
 * 1 if argv[i] was one of them (consuming its value), -1 on a bad value. */
/* the ranks this process runs among (src/dist/dist.h): lb_comm_self()
 * unless started by mpirun in a -DLOWBIT_MPI=ON build */
extern const lb_comm *cli_comm;
/* a verb that runs on rank 0 alone under mpirun says so (once, on rank 0)
 * and returns 1 on the other ranks, which then exit 0 doing nothing */
int cli_rank0_only(const char *verb, const char *why);

int cli_common_option(cli_args *a);
/* "--name value" or "--name=value"; returns 1 and sets *value when argv[i]
 * is this option, -1 if its value is missing. */
int cli_option(cli_args *a, const char *name, const char *alias, const char **value);
int cli_flag(cli_args *a, const char *name);
/* Standard loop body: handles common options, positionals and unknown
 * options (reporting them). Returns 0 to continue, or an exit code. */
int cli_unknown(cli_args *a);

int cli_parse_int(const char *verb, const char *opt, const char *text, long lo, long hi, long *out);
int cli_parse_float(const char *verb, const char *opt, const char *text, double lo, double hi, double *out);
/* bytes: a positive number with an optional K, M, G (1000s; KB, MB, GB too) or KiB, MiB, GiB (1024s) */
int cli_parse_size(const char *verb, const char *opt, const char *text, double *bytes);

/* ---- llama.cpp split sets (docs/SCALING.md) --------------------------------
 * --split-max-size SIZE and --split-max-tensors N (gguf-split's) into *o;
 * *on = 1 when either was given. */
int cli_split_opts(const char *verb, const char *max_size, const char *max_tensors, lb_gguf_split_opts *o, int *on);
#define CLI_SPLIT_HELP                                                                                        \
    "  --split-max-size SIZE  write llama.cpp's split set OUT-00001-of-0000N.gguf ... (OUT less its\n"           \
    "                     .gguf) instead of OUT, no shard file over SIZE (K, M, G: 1000s; KiB, MiB,\n"            \
    "                     GiB: 1024s) unless one tensor alone is larger; llama.cpp and lowbit load the\n"       \
    "                     set from its first shard (docs/SCALING.md)\n"                                         \
    "  --split-max-tensors N  the same, at most N tensors per shard (with or without a size)\n"
/* Before any work, for a split output: the directory as lb_output_check
 * does, and no input is a shard of the same name prefix. */
int cli_split_output_check(const char *verb, const char *out, const char *const *inputs, int n_inputs);
/* "shards": the files written (split: lb_gguf_split_path of each; else [out]) */
void cli_json_shards(const char *out, int split, int n_shards);
/* the bytes of the files written (-1 when one cannot be read) */
long long cli_output_bytes(const char *out, int split, int n_shards);
/* out, or "3 shards, out-00001-of-00003.gguf ..." */
const char *cli_shards_text(const char *out, int split, int n_shards, char *buf, size_t n);

/* Prints "lowbit VERB: message" (the library's last error when msg is NULL)
 * and returns CLI_FAIL. */
int cli_error(const char *verb, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
int cli_usage_error(const char *verb, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Writes data to path atomically (failed: an allocation of it failed), with
 * the verb's error on failure. */
int cli_write_file(const char *verb, const char *path, const char *data, size_t len, int failed);
/* Loads a model, with the verb's error on failure. */
int cli_load_model(const char *verb, const char *path, const char *tokenizer, lb_model **out);
/* The matmul kernels the model's linears and classifier run on (lb_matmul's
 * choice, distinct names comma-separated in first-use order) into buf. */
const char *cli_model_kernels(lb_model *m, char *buf, size_t n);
/* Default data paths (../shared/data/..., or the build's copy of that path). */
const char *cli_data_path(const char *rel, char *buf, size_t n);

/* Minimal JSON writer on stdout: objects, arrays, keys, values; commas are
 * inserted automatically. */
void json_begin_object(void);
void json_end_object(void);
void json_begin_array(void);
void json_end_array(void);
void json_key(const char *k);
void json_string(const char *s);
void json_stringn(const char *s, size_t n);
void json_number(double v); /* NaN/Inf -> null */
void json_int(long long v);
void json_bool(int v);
void json_null(void);
void json_done(void); /* final newline */
/* a key and its value */
void json_kstr(const char *k, const char *v);
void json_knum(const char *k, double v);
void json_kint(const char *k, long long v);
void json_kbool(const char *k, int v);

/* "1,234,567" */
const char *fmt_thousands(long long v, char *buf, size_t n);

/* ---- quantize + evaluate one configuration (demo and sweep) ---------------- */
enum { CLI_SKIP = 3 }; /* cli_quantize_eval: the method cannot make this format */
typedef struct {
    const char *model_path; /* loaded afresh for each configuration */
    const char *tensors;    /* the selection quantized (NULL: linears) */
    const char *recipe;     /* a recipe file: its rules are the plan (spec, opts and tensors unused) */
    const lb_text *text;
    lb_eval_opts eval;      /* .ref: the fp32 model, for KLD and top-1 */
    const lb_calib_stats *stats; /* for methods that need calibration statistics (NULL: none) */
    lb_act_quant act;       /* activation quantizer of every linear (kind LB_AQ_NONE: none) */
    const lb_calib_opts *sequential; /* non-NULL: true-sequential quantization over this calibration text
                                        (lb_quantize_model_sequential; stats is then unused) */
} cli_qeval;
typedef struct {
    double bpw;       /* the selected tensors as stored in the file, every bit counted */
    double bpw_all;   /* the whole model */
    double quant_seconds;
    long long file_bytes;
    lb_eval_result ev;
} cli_qeval_row;
/* Loads q->model_path, quantizes its selection to spec by opts (f32: left
 * as is), saves it as GGUF at path, loads the file back and evaluates it.
 * CLI_OK, CLI_SKIP (lb_plan_check refused: nothing done) or CLI_FAIL, with
 * the message in err. keep (optional) receives the reloaded model. */
int cli_quantize_eval(const cli_qeval *q, const lb_qspec *spec, const lb_method_opts *opts, const char *path,
                      cli_qeval_row *row, lb_model **keep, char *err, size_t n);
/* DIR/STEM-<label, with : / space = , as _>.gguf */
void cli_gguf_path(const char *dir, const char *stem, const char *label, char *path, size_t n);

/* ---- resumable runs (resume.c; docs/SCALING.md, "Resumable runs") ---------- */
enum { CLI_STOPPED = 3 }; /* --stop-after: stopped as an interruption would, the journal kept */
/* OUT.partial */
const char *cli_journal_path(const char *out, char *buf, size_t n);
/* Opens the journal of a run writing out (lb_journal_fingerprint over m, the
 * plan, the files and extra), says what was resumed or dropped on stderr,
 * sets --stop-after (NULL: none) and plan->journal. CLI_OK, or the exit code
 * after the error is printed. */
int cli_journal_open(const char *verb, lb_model *m, lb_plan *plan, const char *out, const char *const *labels,
                     const char *const *files, int n_files, const char *extra, int resume, const char *stop_after,
                     lb_journal **j);

/* the verbs */
int cmd_info(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_sweep(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_tune(int argc, char **argv);
int cmd_calibrate(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_mnist(int argc, char **argv);

#endif
