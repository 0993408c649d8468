/* The method table, the option parser every method shares, and the one
 * entry point that turns float weights into a packed tensor by any method.
 *
 * Options are data: a row lists {name, type, default, help} and the values
 * live in lb_method_opts, one slot per listed option. The CLI's `--clip mse`,
 * a recipe's `clip=mse` and `--tensor-type ...,clip=mse` all end in
 * lb_method_opts_set, so they accept and refuse exactly the same things. */
#include "quant/method_rows.h"
#include "quant/outliers.h"
#include "quant/rotate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const lb_method *const method_table[] = {&lb_method_rtn,         &lb_method_twn,  &lb_method_hqq,
                                                &lb_method_gptq,        &lb_method_gptaq, &lb_method_awq,
                                                &lb_method_awq_gptq,    &lb_method_smoothquant, &lb_method_squeezellm,
                                                &lb_method_onebit,       &lb_method_ptq161,
                                                &lb_method_billm,        &lb_method_littlebit,
                                                &lb_method_ldlq,         &lb_method_aqlm};
#define N_METHODS ((int)(sizeof method_table / sizeof method_table[0]))

int lb_method_count(void) { return N_METHODS; }

const lb_method *lb_method_at(int i) { return i >= 0 && i < N_METHODS ? method_table[i] : NULL; }

void lb_method_list(char *buf, size_t n) {
    size_t used = 0;
    if (n) buf[0] = '\0';
    for (int i = 0; i < N_METHODS && used < n; i++) {
        int k = snprintf(buf + used, n - used, "%s%s", i ? ", " : "", method_table[i]->name);
        if (k < 0) break;
        used += (size_t)k;
    }
}

const lb_method *lb_method_find(const char *name) {
    for (int i = 0; i < N_METHODS; i++)
        if (name && !strcmp(name, method_table[i]->name)) return method_table[i];
    char known[256];
    lb_method_list(known, sizeof known);
    lb_fail(LB_ERR_INVALID, "unknown method '%s' (available: %s)", name ? name : "", known);
    return NULL;
}

/* Options every method takes, after the row's own (value[n_options + k]):
 * the dense-and-sparse split and bias correction wrap any row
 * (src/quant/outliers.c, src/quant/bias_correct.c), so they are the
 * table's, not each row's. A row may list at most
 * LB_METHOD_MAX_OPTIONS - LB_METHOD_COMMON_OPTIONS options. */
static const char *const outlier_rules[] = {"magnitude", "sensitivity", "channel", NULL};
static const char *const rotations[] = {"none", "hadamard", "input", NULL}; /* 1: both sides, 2: input only */
static const lb_method_option common_options[LB_METHOD_COMMON_OPTIONS] = {
    {"outliers", LB_OPTION_FLOAT, "0",
     "fraction of the weights kept exactly in a sparse fp16 CSR beside the dense code (0: none)", 0, 0.5, NULL,
     NULL},
    {"outlier_rule", LB_OPTION_CHOICE, "magnitude",
     "which: magnitude (|w - row median|) | sensitivity (that^2 H_jj, needs X^T X) | channel (whole input "
     "columns by calibration max|x|)",
     0, 0, outlier_rules, "outlier rule"},
    {"bias_correct", LB_OPTION_INT, "0", "1: add (W - Q(W)) E[x] to the bias (needs calibration mean x)", 0, 1, NULL,
     NULL},
    {"rotate", LB_OPTION_CHOICE, "none",
     "incoherence processing: none | hadamard (quantize R_o W R_i^T, random-sign Hadamard transforms on both sides, "
     "as QuIP#; the linear rotates its input and output back at inference, 1 bit per row and column) | input "
     "(W R_i^T only)",
     0, 0, rotations, "rotation"},
    {"rotate_seed", LB_OPTION_INT, "1", "seed of the rotations' signs (mixed with the tensor's name)", 0, 2147483647.0,
     NULL, NULL},
};

int lb_method_common_count(void) { return LB_METHOD_COMMON_OPTIONS; }
const lb_method_option *lb_method_common_at(int i) {
    return i >= 0 && i < LB_METHOD_COMMON_OPTIONS ? &common_options[i] : NULL;
}

static int n_all(const lb_method *m) { return m->n_options + LB_METHOD_COMMON_OPTIONS; }

static const lb_method_option *opt_at(const lb_method *m, int i) {
    return i < m->n_options ? &m->options[i] : &common_options[i - m->n_options];
}

static int option_index(const lb_method *m, const char *key) {
    for (int i = 0; i < n_all(m); i++)
        if (!strcmp(opt_at(m, i)->name, key)) return i;
    return -1;
}

/* Parses text as option i's value; 0 on success. */
static lb_status parse_value(const lb_method *m, int i, const char *text, double *out) {
    const lb_method_option *opt = opt_at(m, i);
    char *end = NULL;
    switch (opt->type) {
    case LB_OPTION_CHOICE: {
        for (int c = 0; opt->choices[c]; c++)
            if (!strcmp(text, opt->choices[c])) {
                *out = c;
                return LB_OK;
            }
        char known[256];
        size_t used = 0;
        known[0] = '\0';
        for (int c = 0; opt->choices[c] && used < sizeof known; c++) {
            int k = snprintf(known + used, sizeof known - used, "%s%s", c ? ", " : "", opt->choices[c]);
            if (k < 0) break;
            used += (size_t)k;
        }
        return lb_fail(LB_ERR_INVALID, "unknown %s '%s' for method %s (known: %s)",
                       opt->noun ? opt->noun : "value", text, m->name, known);
    }
    case LB_OPTION_INT: {
        long long v = strtoll(text, &end, 10);
        if (end != text && *end == '\0' && v >= opt->min && v <= opt->max) {
            *out = (double)v;
            return LB_OK;
        }
        return lb_fail(LB_ERR_INVALID, "%s option '%s' expects an integer in %.0f..%.0f, got '%s'", m->name,
                       opt->name, opt->min, opt->max, text);
    }
    case LB_OPTION_FLOAT: {
        double v = strtod(text, &end);
        if (end != text && *end == '\0' && isfinite(v) && v >= opt->min && v <= opt->max) {
            *out = (double)(float)v; /* methods use floats: store what they will see */
            return LB_OK;
        }
        return lb_fail(LB_ERR_INVALID, "%s option '%s' expects a number in [%g, %g], got '%s'", m->name, opt->name,
                       opt->min, opt->max, text);
    }
    }
    return lb_fail(LB_ERR_INVALID, "%s option '%s' has an unknown type", m->name, opt->name);
}

void lb_method_opts_default(const lb_method *m, lb_method_opts *o) {
    memset(o, 0, sizeof *o);
    o->method = m;
    if (m && n_all(m) > LB_METHOD_MAX_OPTIONS) { /* a bad row (tested): no slot for every option */
        for (int i = 0; i < LB_METHOD_MAX_OPTIONS; i++) o->value[i] = NAN;
        return;
    }
    for (int i = 0; m && i < n_all(m); i++)
        if (parse_value(m, i, opt_at(m, i)->def, &o->value[i]) != LB_OK) o->value[i] = NAN; /* a bad row: tested */
}

lb_status lb_method_opts_set(lb_method_opts *o, const char *key, const char *value) {
    const lb_method *m = o->method;
    if (!m) return lb_fail(LB_ERR_INVALID, "options without a method");
    int i = option_index(m, key);
    if (i < 0) {
        char known[256];
        size_t used = 0;
        known[0] = '\0';
        for (int k = 0; k < n_all(m) && used < sizeof known; k++) {
            int w = snprintf(known + used, sizeof known - used, "%s%s", k ? ", " : "", opt_at(m, k)->name);
            if (w < 0) break;
            used += (size_t)w;
        }
        if (!m->n_options)
            return lb_fail(LB_ERR_INVALID,
                           "method %s has no option '%s' (it takes none); every method takes %s", m->name, key,
                           known);
        return lb_fail(LB_ERR_INVALID, "method %s has no option '%s' (known: %s)", m->name, key, known);
    }
    return parse_value(m, i, value, &o->value[i]);
}

lb_status lb_method_opts_parse(lb_method_opts *o, const char *key_value) {
    const char *eq = strchr(key_value, '=');
    if (!eq || eq == key_value || !eq[1])
        return lb_fail(LB_ERR_INVALID, "expected key=value, got '%s'", key_value);
    char key[64];
    size_t klen = (size_t)(eq - key_value);
    if (klen >= sizeof key) return lb_fail(LB_ERR_INVALID, "option name too long in '%.80s'", key_value);
    memcpy(key, key_value, klen);
    key[klen] = '\0';
    return lb_method_opts_set(o, key, eq + 1);
}

double lb_method_opts_get(const lb_method_opts *o, const char *key) {
    int i = o->method ? option_index(o->method, key) : -1;
    return i < 0 ? NAN : o->value[i];
}

/* Shortest text that parses back to option i's value. */
static void value_text(const lb_method *m, int i, double v, char *buf, size_t n) {
    const lb_method_option *opt = opt_at(m, i);
    if (opt->type == LB_OPTION_CHOICE) {
        int c = (int)v;
        snprintf(buf, n, "%s", c >= 0 && v == c ? opt->choices[c] : "?");
    } else if (opt->type == LB_OPTION_INT) {
        snprintf(buf, n, "%.0f", v);
    } else {
        for (int digits = 6; digits <= 9; digits++) {
            snprintf(buf, n, "%.*g", digits, v);
            if ((double)(float)strtod(buf, NULL) == v) break;
        }
    }
}

const char *lb_method_opts_text(const lb_method_opts *o, const char *key, char *buf, size_t n) {
    int i = o->method ? option_index(o->method, key) : -1;
    if (i < 0) return NULL;
    value_text(o->method, i, o->value[i], buf, n);
    return buf;
}

void lb_method_opts_format(const lb_method_opts *o, int all, char *buf, size_t n) {
    size_t used = 0;
    if (n) buf[0] = '\0';
    lb_method_opts def;
    lb_method_opts_default(o->method, &def);
    /* the common options appear only when set, even with all = 1: a row's
     * full option text stays what it was before they existed */
    for (int i = 0; o->method && i < n_all(o->method) && used < n; i++) {
        if ((!all || i >= o->method->n_options) && o->value[i] == def.value[i]) continue;
        char v[64];
        value_text(o->method, i, o->value[i], v, sizeof v);
        int k = snprintf(buf + used, n - used, "%s%s=%s", used ? " " : "", opt_at(o->method, i)->name, v);
        if (k < 0) break;
        used += (size_t)k;
    }
}

int lb_method_opts_equal(const lb_method_opts *a, const lb_method_opts *b) {
    if (a->method != b->method) return 0;
    for (int i = 0; a->method && i < n_all(a->method); i++)
        if (a->value[i] != b->value[i]) return 0;
    return 1;
}

/* ---- packing a method's result ------------------------------------------ */

/* Which method runs: a row with its options, or RTN's own opts (the
 * lb_quantize_to_tensor shorthand, which passes them through untouched). */
typedef struct {
    const lb_method *method;
    const lb_method_opts *opts;
    const lb_layer_stats *stats;
    const lb_rtn_opts *rtn;
} quantizer;

static unsigned stats_present(const lb_layer_stats *s) {
    if (!s) return 0;
    return (s->xtx ? LB_STATS_XTX : 0u) | (s->mean_abs_x ? LB_STATS_MEAN_ABS_X : 0u) |
           (s->max_abs_x ? LB_STATS_MAX_ABS_X : 0u) | (s->grad_sq ? LB_STATS_GRAD_SQ : 0u) |
           (s->mean_x ? LB_STATS_MEAN_X : 0u) | (s->hist && s->hist_bins > 0 ? LB_STATS_HIST_X : 0u) |
           (s->dxtx ? LB_STATS_DXTX : 0u);
}

/* the common options' values: value[n_options + k] */
#define COMMON(o, k) ((o)->value[(o)->method->n_options + (k)])
enum { OPT_OUTLIERS, OPT_OUTLIER_RULE, OPT_BIAS_CORRECT, OPT_ROTATE, OPT_ROTATE_SEED };

/* what the row itself needs with these options (not the common options) */
static unsigned row_stats(const lb_method *m, const lb_method_opts *o) {
    return m->stats | (m->stats_for ? m->stats_for(o) : 0u);
}

unsigned lb_method_opts_stats(const lb_method_opts *o) {
    if (!o || !o->method) return 0;
    unsigned need = row_stats(o->method, o);
    if (COMMON(o, OPT_OUTLIERS) > 0) {
        if ((int)COMMON(o, OPT_OUTLIER_RULE) == LB_OUTLIER_SENSITIVITY) need |= LB_STATS_XTX;
        if ((int)COMMON(o, OPT_OUTLIER_RULE) == LB_OUTLIER_CHANNEL) need |= LB_STATS_MAX_ABS_X;
    }
    if (COMMON(o, OPT_BIAS_CORRECT) != 0) need |= LB_STATS_MEAN_X;
    return need;
}

/* Index of the first non-finite value, or -1. */
static int64_t first_nonfinite_f(const float *v, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return i;
    return -1;
}

/* Every part `need` names is present, shaped like the weight and finite (a
 * statistics file is checked when it is read, but statistics built in memory
 * or from an activation that overflowed are not), so rows never test this. */
static lb_status check_stats_for(const char *who, unsigned need, const lb_layer_stats *s, int64_t rows,
                                 int64_t cols) {
    static const char *names[] = {"X^T X", "mean|x|", "max|x|", "sum g^2", "mean x", "histogram of x",
                                  "(x_fp - x) x^T, which only sequential calibration collects: use --sequential"};
    unsigned missing = need & ~stats_present(s);
    for (int b = 0; b < 7; b++)
        if (missing & (1u << b))
            return lb_fail(LB_ERR_INVALID, "%s needs calibration statistics (%s), and none were collected", who,
                           names[b]);
    if (!need) return LB_OK;
    if (s->rows != rows || s->cols != cols)
        return lb_fail(LB_ERR_INVALID, "statistics are for a %lld x %lld linear, the weight is %lld x %lld",
                       (long long)s->rows, (long long)s->cols, (long long)rows, (long long)cols);
    if (need & LB_STATS_XTX)
        for (int64_t i = 0; i < cols * cols; i++)
            if (!isfinite(s->xtx[i]))
                return lb_fail(LB_ERR_NUMERIC, "calibration statistics: X^T X entry (%lld, %lld) is %s",
                               (long long)(i / cols), (long long)(i % cols), isnan(s->xtx[i]) ? "NaN" : "infinite");
    if (need & LB_STATS_DXTX)
        for (int64_t i = 0; i < cols * cols; i++)
            if (!isfinite(s->dxtx[i]))
                return lb_fail(LB_ERR_NUMERIC, "calibration statistics: (x_fp - x) x^T entry (%lld, %lld) is %s",
                               (long long)(i / cols), (long long)(i % cols), isnan(s->dxtx[i]) ? "NaN" : "infinite");
    const struct {
        unsigned bit;
        const float *v;
        int64_t n;
        const char *name;
    } parts[] = {{LB_STATS_MEAN_ABS_X, s->mean_abs_x, cols, names[1]},
                 {LB_STATS_MAX_ABS_X, s->max_abs_x, cols, names[2]},
                 {LB_STATS_GRAD_SQ, s->grad_sq, rows * cols, names[3]},
                 {LB_STATS_MEAN_X, s->mean_x, cols, names[4]}};
    for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++) {
        int64_t i = need & parts[k].bit ? first_nonfinite_f(parts[k].v, parts[k].n) : -1;
        if (i >= 0)
            return lb_fail(LB_ERR_NUMERIC, "calibration statistics: %s entry %lld is %s", parts[k].name,
                           (long long)i, isnan(parts[k].v[i]) ? "NaN" : "infinite");
    }
    return LB_OK;
}

static lb_status check_stats(const lb_method *m, const lb_method_opts *o, const lb_layer_stats *s, int64_t rows,
                             int64_t cols) {
    char who[64];
    snprintf(who, sizeof who, "method %s", m->name);
    return check_stats_for(who, row_stats(m, o), s, rows, cols);
}

static lb_status quantize_packed(const quantizer *qz, const float *w, int64_t rows, int64_t cols,
                                 const lb_qspec *spec, const char *name, lb_tensor *out) {
    memset(out, 0, sizeof *out);
    size_t total;
    lb_status st = lb_format_size(spec, rows, cols, NULL, NULL, &total);
    if (st != LB_OK) return st;
    uint8_t *bytes = lb_alloc(total);
    if (!bytes) return LB_ERR_NOMEM;
    if (lb_qspec_is_float(spec)) {
        st = lb_format_from_float(spec, w, rows, cols, bytes);
    } else {
        lb_qtensor q;
        if (qz->rtn) {
            st = lb_rtn_quantize(w, rows, cols, spec, qz->rtn, &q);
        } else {
            st = qz->method->check ? qz->method->check(spec, qz->opts) : LB_OK;
            unsigned need = row_stats(qz->method, qz->opts);
            if (st == LB_OK) st = check_stats(qz->method, qz->opts, qz->stats, rows, cols);
            if (st == LB_OK) st = qz->method->quantize(w, rows, cols, need ? qz->stats : NULL, spec, qz->opts, &q);
        }
        if (st == LB_OK) {
            st = lb_qtensor_encode(&q, bytes);
            lb_qtensor_free(&q);
        }
    }
    if (st != LB_OK) {
        lb_free(bytes);
        return name ? lb_fail_context(st, "quantizing '%s'", name) : st;
    }
    snprintf(out->name, sizeof out->name, "%s", name ? name : "");
    out->spec = *spec;
    out->rows = rows;
    out->cols = cols;
    out->data = bytes;
    out->owned = bytes;
    out->nbytes = total;
    return lb_tensor_resolve(out);
}

/* Both entry points: m must be given; NULL options become m's defaults (in
 * *defaults), and options must be m's own. */
static lb_status resolve_opts(const lb_method *m, const lb_method_opts **opts, lb_method_opts *defaults) {
    if (!m) return lb_fail(LB_ERR_INVALID, "no method given");
    if (!*opts) {
        lb_method_opts_default(m, defaults);
        *opts = defaults;
    }
    if ((*opts)->method != m)
        return lb_fail(LB_ERR_INVALID, "options of method %s given to method %s",
                       (*opts)->method ? (*opts)->method->name : "(none)", m->name);
    return LB_OK;
}

lb_status lb_quantize_tensor(const lb_method *m, const lb_method_opts *opts, const lb_layer_stats *stats,
                             const float *w, int64_t rows, int64_t cols, const lb_qspec *spec, const char *name,
                             lb_tensor *out) {
    memset(out, 0, sizeof *out);
    lb_method_opts defaults;
    lb_status st = resolve_opts(m, &opts, &defaults);
    if (st != LB_OK) return st;
    if (COMMON(opts, OPT_OUTLIERS) != 0 || COMMON(opts, OPT_BIAS_CORRECT) != 0 || COMMON(opts, OPT_ROTATE) != 0)
        return lb_fail(LB_ERR_INVALID,
                       "outliers, bias correction and rotations fill a linear's slots: use lb_quantize_tensor_ex");
    quantizer qz = {m, opts, stats, NULL};
    return quantize_packed(&qz, w, rows, cols, spec, name, out);
}

/* ---- dense-and-sparse and bias correction around any row ------------------ */

/* lb_quantize_tensor_ex in the basis the weight is quantized in (after any
 * rotation): opts resolved, out and extras zeroed by the caller */
static lb_status quantize_ex(const lb_method *m, const lb_method_opts *opts, const lb_layer_stats *stats,
                             const float *w, int64_t rows, int64_t cols, const lb_qspec *spec, const char *name,
                             lb_tensor *out, lb_quant_extras *extras) {
    double fraction = COMMON(opts, OPT_OUTLIERS);
    int bias_correct = COMMON(opts, OPT_BIAS_CORRECT) != 0;
    quantizer qz = {m, opts, stats, NULL};
    if (fraction == 0 && !bias_correct) {
        /* a row's own slot parts (onebit's adapter) go straight to extras;
         * with outliers or bias correction they would have to enter the
         * sparse part and the bias change, which is not built: the row
         * sees no extras and refuses */
        lb_method_opts run = *opts;
        run.extras = extras;
        qz.opts = &run;
        lb_status st = quantize_packed(&qz, w, rows, cols, spec, name, out);
        if (st == LB_OK && extras && extras->adapter_rank) {
            extras->rows = rows;
            extras->cols = cols;
        }
        if (st != LB_OK) lb_quant_extras_free(extras);
        return st;
    }

    const char *who = name ? name : "the weight";
    if (!extras)
        return lb_fail(LB_ERR_INVALID, "'%s': outliers and bias correction need somewhere to put their slots", who);
    if (lb_qspec_is_float(spec))
        return lb_fail(LB_ERR_INVALID, "'%s': outliers and bias correction apply to quantized formats, not float ones",
                       who);
    lb_status st = check_stats_for("outliers / bias correction", lb_method_opts_stats(opts) & ~row_stats(m, opts), stats, rows,
                                   cols);
    if (st != LB_OK) return name ? lb_fail_context(st, "quantizing '%s'", name) : st;
    size_t n = (size_t)(rows * cols);
    uint8_t *keep = lb_alloc(n);
    float *dense = lb_alloc(n * sizeof(float)), *kept = lb_alloc(n * sizeof(float));
    float *deq = lb_alloc(n * sizeof(float)), *eff = lb_alloc(n * sizeof(float));
    if (!keep || !dense || !kept || !deq || !eff) {
        st = LB_ERR_NOMEM;
        goto done;
    }
    int64_t n_kept = 0;
    st = lb_outliers_select(w, rows, cols, stats, fraction, (lb_outlier_rule)(int)COMMON(opts, OPT_OUTLIER_RULE),
                            keep, &n_kept);
    if (st != LB_OK) goto done;
    lb_outliers_dense_input(w, rows, cols, spec->group, keep, dense);
    memcpy(kept, dense, n * sizeof(float));
    lb_method_opts run = *opts;
    run.extras = NULL;
    run.keep = n_kept ? keep : NULL;
    run.kept = n_kept ? kept : NULL;
    qz.opts = &run;
    if ((st = quantize_packed(&qz, dense, rows, cols, spec, name, out)) != LB_OK) {
        name = NULL; /* it named the tensor already */
        goto done;
    }
    if ((st = lb_dequantize(out, deq)) != LB_OK) goto done;
    extras->rows = rows;
    extras->cols = cols;
    if (n_kept) {
        st = lb_outliers_build(w, dense, kept, deq, rows, cols, keep, n_kept, extras, eff);
    } else {
        memcpy(eff, deq, n * sizeof(float));
    }
    if (st == LB_OK && bias_correct) {
        if (!(extras->bias = lb_alloc((size_t)rows * sizeof(float)))) st = LB_ERR_NOMEM;
        else st = lb_bias_correction(w, eff, rows, cols, stats->mean_x, extras->bias);
    }
done:
    if (st != LB_OK) {
        lb_tensor_free(out);
        memset(out, 0, sizeof *out);
        lb_quant_extras_free(extras);
        if (name && st != LB_ERR_NOMEM) st = lb_fail_context(st, "quantizing '%s'", name);
    }
    lb_free(keep);
    lb_free(dense);
    lb_free(kept);
    lb_free(deq);
    lb_free(eff);
    return st;
}

lb_status lb_quantize_tensor_ex(const lb_method *m, const lb_method_opts *opts, const lb_layer_stats *stats,
                                const float *w, int64_t rows, int64_t cols, const lb_qspec *spec, const char *name,
                                lb_tensor *out, lb_quant_extras *extras) {
    memset(out, 0, sizeof *out);
    if (extras) memset(extras, 0, sizeof *extras);
    lb_method_opts defaults;
    lb_status st = resolve_opts(m, &opts, &defaults);
    if (st != LB_OK) return st;
    if (COMMON(opts, OPT_ROTATE) == 0) return quantize_ex(m, opts, stats, w, rows, cols, spec, name, out, extras);
    const char *who = name ? name : "the weight";
    if (!extras) return lb_fail(LB_ERR_INVALID, "'%s': a rotation needs somewhere to put its slots", who);
    if (lb_qspec_is_float(spec))
        return lb_fail(LB_ERR_INVALID, "'%s': rotate=hadamard applies to quantized formats, not float ones", who);
    lb_rotated rot;
    st = lb_rotate_begin(w, rows, cols, stats, lb_method_opts_stats(opts), COMMON(opts, OPT_ROTATE) == 1,
                         (uint64_t)COMMON(opts, OPT_ROTATE_SEED), name, &rot);
    if (st != LB_OK) return st;
    st = quantize_ex(m, opts, stats ? &rot.stats : NULL, rot.w, rows, cols, spec, name, out, extras);
    if (st == LB_OK && extras->bias && rot.out_signs) { /* (W~ - Q~) R_i E[x] = R_o (...): back to the output's basis */
        lb_rht_apply(extras->bias, rows, rot.out_signs, 1);
        for (int64_t r = 0; r < rows; r++) extras->bias[r] = lb_round_fp16(extras->bias[r]);
    }
    if (st == LB_OK) {
        extras->rows = rows;
        extras->cols = cols;
        extras->in_signs = rot.in_signs;
        extras->out_signs = rot.out_signs;
        rot.in_signs = rot.out_signs = NULL;
    }
    lb_rotated_free(&rot);
    return st;
}

lb_status lb_quantize_to_tensor(const float *w, int64_t rows, int64_t cols, const lb_qspec *spec,
                                const lb_rtn_opts *opts, const char *name, lb_tensor *out) {
    lb_rtn_opts defaults;
    if (!opts) {
        lb_rtn_opts_default(&defaults);
        opts = &defaults;
    }
    quantizer qz = {&lb_method_rtn, NULL, NULL, opts};
    return quantize_packed(&qz, w, rows, cols, spec, name, out);
}
