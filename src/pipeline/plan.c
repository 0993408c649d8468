/* Quantization plans: ordered rules (pattern -> spec, method, options),
 * resolved against a model's tensors with the last matching rule winning.
 * This is the selection logic the CLI used to keep to itself, so the
 * library, recipes and every verb select tensors the same way. */
#define _POSIX_C_SOURCE 200809L
#include "lowbit/pipeline.h"
#include "slots.h"

#include <fnmatch.h>
#include <string.h>

void lb_plan_init(lb_plan *p) { memset(p, 0, sizeof *p); }

void lb_plan_free(lb_plan *p) {
    lb_free(p->rules);
    lb_free(p->entries);
    memset(p, 0, sizeof *p);
}

lb_status lb_plan_add_rule(lb_plan *p, const char *pattern, const lb_qspec *spec, const lb_method_opts *opts) {
    size_t len = pattern ? strlen(pattern) : 0;
    if (!len) return lb_fail(LB_ERR_INVALID, "empty tensor pattern");
    if (len >= LB_PLAN_PATTERN_MAX)
        return lb_fail(LB_ERR_INVALID, "tensor pattern longer than %d bytes", LB_PLAN_PATTERN_MAX - 1);
    if (strpbrk(pattern, " \t\r\n"))
        return lb_fail(LB_ERR_INVALID, "tensor pattern '%s' contains whitespace", pattern);
    if (!opts || !opts->method) return lb_fail(LB_ERR_INVALID, "rule '%s' has no method", pattern);
    lb_status st = lb_qspec_validate(spec);
    if (st != LB_OK) return st;
    if (spec->family == lb_format_family_find("split")) /* made by row rules, not asked for */
        return lb_fail(LB_ERR_INVALID, "format 'split' is not a target: split tensors are joined from row parts, "
                       "which row rules give (PATTERN rows=R0:R1 SPEC, docs/RECIPES.md)");
    if (p->n_rules >= LB_PLAN_MAX_RULES) return lb_fail(LB_ERR_INVALID, "more than %d rules", LB_PLAN_MAX_RULES);
    if (p->n_rules == p->cap_rules) {
        int cap = p->cap_rules ? 2 * p->cap_rules : 16;
        lb_plan_rule *r = lb_alloc((size_t)cap * sizeof *r);
        if (!r) return LB_ERR_NOMEM;
        if (p->n_rules) memcpy(r, p->rules, (size_t)p->n_rules * sizeof *r);
        lb_free(p->rules);
        p->rules = r;
        p->cap_rules = cap;
    }
    lb_plan_rule *r = &p->rules[p->n_rules++];
    memset(r, 0, sizeof *r);
    memcpy(r->pattern, pattern, len + 1);
    r->spec = *spec;
    r->opts = *opts;
    return LB_OK;
}

lb_status lb_plan_add_row_rule(lb_plan *p, const char *pattern, int64_t row0, int64_t row1, const lb_qspec *spec,
                               const lb_method_opts *opts) {
    if (row0 < 0 || row1 <= row0)
        return lb_fail(LB_ERR_INVALID, "row range %lld:%lld of '%s' is empty or negative", (long long)row0,
                       (long long)row1, pattern ? pattern : "");
    lb_status st = lb_plan_add_rule(p, pattern, spec, opts);
    if (st != LB_OK) return st;
    p->rules[p->n_rules - 1].row0 = row0;
    p->rules[p->n_rules - 1].row1 = row1;
    return LB_OK;
}

lb_status lb_plan_add_col_rule(lb_plan *p, const char *pattern, int64_t col0, int64_t col1, const lb_qspec *spec,
                               const lb_method_opts *opts) {
    if (col0 < 0 || col1 <= col0)
        return lb_fail(LB_ERR_INVALID, "column range %lld:%lld of '%s' is empty or negative", (long long)col0,
                       (long long)col1, pattern ? pattern : "");
    lb_status st = lb_plan_add_row_rule(p, pattern, col0, col1, spec, opts);
    if (st == LB_OK) p->rules[p->n_rules - 1].axis = 1;
    return st;
}

lb_status lb_plan_add_selection(lb_plan *p, const char *list, const lb_qspec *spec, const lb_method_opts *opts) {
    if (!list || !*list) return lb_fail(LB_ERR_INVALID, "empty tensor selection (try linears, embeddings, output, all)");
    int before = p->n_rules;
    for (const char *tok = list;;) {
        const char *end = strchr(tok, ',');
        size_t n = end ? (size_t)(end - tok) : strlen(tok);
        char pattern[LB_PLAN_PATTERN_MAX];
        lb_status st = LB_OK;
        if (n == 0) st = lb_fail(LB_ERR_INVALID, "empty entry in the tensor selection '%s'", list);
        else if (n >= sizeof pattern) st = lb_fail(LB_ERR_INVALID, "tensor pattern longer than %d bytes", LB_PLAN_PATTERN_MAX - 1);
        if (st == LB_OK) {
            memcpy(pattern, tok, n);
            pattern[n] = '\0';
            st = lb_plan_add_rule(p, pattern, spec, opts);
        }
        if (st != LB_OK) {
            p->n_rules = before;
            return st;
        }
        if (!end) break;
        tok = end + 1;
    }
    return LB_OK;
}

/* Applies "method=NAME" and then "key=value" items to o (items: n strings). */
static lb_status apply_items(lb_method_opts *o, char **items, int n) {
    int method_at = -1;
    for (int i = 0; i < n; i++)
        if (!strncmp(items[i], "method=", 7)) {
            if (method_at >= 0) return lb_fail(LB_ERR_INVALID, "method given twice");
            method_at = i;
        }
    if (method_at >= 0) {
        const lb_method *m = lb_method_find(items[method_at] + 7);
        if (!m) return LB_ERR_INVALID;
        if (m != o->method) lb_method_opts_default(m, o);
    }
    for (int i = 0; i < n; i++) {
        if (i == method_at) continue;
        lb_status st = lb_method_opts_parse(o, items[i]);
        if (st != LB_OK) return st;
    }
    return LB_OK;
}

lb_status lb_plan_parse_choice(const char *text, const lb_method_opts *base, lb_qspec *spec, lb_method_opts *opts) {
    char buf[LB_RECIPE_LINE_MAX];
    if (!text || strlen(text) >= sizeof buf)
        return lb_fail(LB_ERR_INVALID, "a format choice longer than %d bytes", LB_RECIPE_LINE_MAX - 1);
    strcpy(buf, text);
    char *items[LB_METHOD_MAX_OPTIONS + 2];
    int n = 0;
    char *save = NULL;
    if (!buf[0] || buf[0] == ',') return lb_fail(LB_ERR_INVALID, "empty format in '%s'", text);
    for (char *c = strchr(buf, ','); c; c = strchr(c + 1, ','))
        if (c[1] == ',' || c[1] == '\0') return lb_fail(LB_ERR_INVALID, "empty item in '%s'", text);
    strtok_r(buf, ",", &save);
    for (char *tok = strtok_r(NULL, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n == (int)(sizeof items / sizeof items[0])) return lb_fail(LB_ERR_INVALID, "too many options in '%s'", text);
        items[n++] = tok;
    }
    if (base) *opts = *base;
    else lb_method_opts_default(lb_method_find("rtn"), opts);
    lb_status st = lb_qspec_parse(buf, spec);
    return st == LB_OK ? apply_items(opts, items, n) : st;
}

lb_status lb_plan_add_override(lb_plan *p, const char *text, const lb_method_opts *base) {
    char buf[LB_RECIPE_LINE_MAX];
    if (!text || strlen(text) >= sizeof buf)
        return lb_fail(LB_ERR_INVALID, "tensor type override longer than %d bytes", LB_RECIPE_LINE_MAX - 1);
    strcpy(buf, text);
    char *eq = strchr(buf, '=');
    if (!eq || eq == buf || !eq[1])
        return lb_fail(LB_ERR_INVALID, "expected PATTERN=SPEC[,method=NAME][,key=value...], got '%s'", text);
    *eq = '\0';
    lb_qspec spec;
    lb_method_opts o;
    lb_status st = lb_plan_parse_choice(eq + 1, base, &spec, &o);
    if (st == LB_OK) st = lb_plan_add_rule(p, buf, &spec, &o);
    return st == LB_OK ? st : lb_fail_context(st, "--tensor-type '%s'", text);
}

/* ---- resolving ------------------------------------------------------------ */

/* blk.N.<linear>.weight for one of the seven linears */
static int is_linear(const char *name) {
    if (strncmp(name, "blk.", 4)) return 0;
    size_t n = strlen(name);
    for (int i = 0; i < LB_N_LINEARS; i++) {
        char suffix[32];
        snprintf(suffix, sizeof suffix, ".%s.weight", lb_linear_name(i));
        size_t s = strlen(suffix);
        if (n > s && !strcmp(name + n - s, suffix)) return 1;
    }
    return 0;
}

static int is_norm(const char *name) { return strstr(name, "_norm.") != NULL; }

static int rule_matches(const char *pattern, const char *name) {
    if (!strcmp(pattern, "linears")) return is_linear(name);
    if (!strcmp(pattern, "embeddings")) return !strcmp(name, "token_embd.weight");
    if (!strcmp(pattern, "output")) return !strcmp(name, "output.weight");
    if (!strcmp(pattern, "all")) return 1;
    return fnmatch(pattern, name, 0) == 0;
}

static lb_status rule_error(const lb_plan_rule *r, lb_status st) {
    return r->line ? lb_fail_context(st, "recipe line %d", r->line) : st;
}

static const char *axis_word(int axis) { return axis ? "columns" : "rows"; }

/* What the range rules matching tensor `name` cut: 0 rows, 1 columns (0
 * when none match); both fails. */
static lb_status range_axis(const lb_plan *p, const char *name, int *axis) {
    int seen[2] = {0, 0};
    for (int k = 0; k < p->n_rules; k++) {
        const lb_plan_rule *r = &p->rules[k];
        if (r->row1 && !is_norm(name) && rule_matches(r->pattern, name)) seen[r->axis] = 1;
    }
    *axis = seen[1];
    if (seen[0] && seen[1])
        return lb_fail(LB_ERR_INVALID, "'%s' is cut by row rules and by column rules: one or the other", name);
    return LB_OK;
}

/* The rule of each row (axis 0) or column (axis 1) of a tensor, `along` of
 * them: the whole tensor's winner, then every range rule of that axis
 * matching it, in order; *split set when they are not all one rule's. A
 * range past the tensor's fails. */
static lb_status row_winners(const lb_plan *p, const char *name, int64_t along, int axis, int whole, int *row_rule,
                             int *split) {
    for (int64_t r = 0; r < along; r++) row_rule[r] = whole;
    int any = 0;
    for (int k = 0; k < p->n_rules; k++) {
        const lb_plan_rule *r = &p->rules[k];
        if (!r->row1 || r->axis != axis || is_norm(name) || !rule_matches(r->pattern, name)) continue;
        if (r->row1 > along)
            return rule_error(r, lb_fail(LB_ERR_INVALID, "%s %lld:%lld of '%s', which has %lld %s", axis_word(axis),
                                         (long long)r->row0, (long long)r->row1, name, (long long)along,
                                         axis_word(axis)));
        for (int64_t j = r->row0; j < r->row1; j++) row_rule[j] = k;
        any = 1;
    }
    *split = 0;
    for (int64_t j = 0; any && j < along; j++) {
        if (row_rule[j] < 0) {
            int64_t e = j;
            while (e < along && row_rule[e] < 0) e++;
            return lb_fail(LB_ERR_INVALID, "%s %lld:%lld of '%s' are selected by no rule (%s rules cover the "
                           "rest of it)", axis_word(axis), (long long)j, (long long)e, name, axis ? "column" : "row");
        }
        if (row_rule[j] != row_rule[0]) *split = 1;
    }
    return LB_OK;
}

/* the parts of a split tensor: runs of rows (columns) won by one rule (two
 * range rules alike are two parts: a row-block plan measured each block on
 * its own, and a trellis down the columns codes a block differently from
 * the whole) */
static int fill_parts(const lb_plan *p, const int *row_rule, int64_t along, int axis, int64_t cols, lb_plan_part *out) {
    int n = 0;
    for (int64_t j = 0; j < along;) {
        int64_t e = j + 1;
        while (e < along && row_rule[e] == row_rule[j]) e++;
        if (out) {
            const lb_plan_rule *r = &p->rules[row_rule[e - 1]];
            lb_plan_part *q = &out[n];
            memset(q, 0, sizeof *q);
            q->row0 = j, q->row1 = e;
            q->spec = r->spec;
            (void)lb_format_ggml_fallback(&r->spec, axis ? e - j : cols, &q->spec);
            q->opts = r->opts;
            q->rule = row_rule[e - 1];
        }
        n++;
        j = e;
    }
    return n;
}

/* A split entry's opts: the part whose method's statistics include every
 * other part's (what the drivers hand the entry) */
static lb_status split_opts(const lb_plan_entry *e, lb_method_opts *out) {
    unsigned all = 0;
    for (int k = 0; k < e->n_parts; k++) all |= lb_method_opts_stats(&e->parts[k].opts);
    for (int k = 0; k < e->n_parts; k++)
        if ((lb_method_opts_stats(&e->parts[k].opts) & all) == all) {
            *out = e->parts[k].opts;
            return LB_OK;
        }
    return lb_fail(LB_ERR_UNSUPPORTED, "the %s parts of '%s' need different calibration statistics, which no one "
                   "of their methods covers: give its parts methods with nested needs", e->split_axis ? "column" : "row",
                   e->name);
}

lb_status lb_plan_resolve(lb_plan *p, lb_model *m) {
    lb_free(p->entries);
    p->entries = NULL;
    p->n_entries = 0;
    if (p->n_rules == 0) return lb_fail(LB_ERR_INVALID, "the quantization plan has no rules");
    int n = lb_model_n_tensors(m);
    int *winner = lb_alloc((size_t)n * sizeof *winner);
    int *n_parts = lb_calloc((size_t)n, sizeof *n_parts);
    if (!winner || !n_parts) {
        lb_free(winner);
        lb_free(n_parts);
        return LB_ERR_NOMEM;
    }
    for (int i = 0; i < n; i++) winner[i] = -1;
    lb_status st = LB_OK;
    int any_rows = 0;
    for (int k = 0; k < p->n_rules && st == LB_OK; k++) {
        const lb_plan_rule *r = &p->rules[k];
        int hits = 0, norm_hits = 0;
        any_rows |= r->row1 > 0;
        if (!strcmp(r->pattern, "output") && m->tied_output) {
            st = rule_error(r, lb_fail(LB_ERR_INVALID, "this model's classifier is tied to the token embedding: select 'embeddings'"));
            break;
        }
        for (int i = 0; i < n; i++) {
            const char *name = lb_model_tensor_at(m, i)->name;
            if (!rule_matches(r->pattern, name)) continue;
            if (is_norm(name)) { /* norms are never candidates */
                norm_hits++;
            } else {
                if (!r->row1) winner[i] = k;
                else if (winner[i] < 0) winner[i] = -2; /* selected by row rules only (so far) */
                hits++;
            }
        }
        if (!hits && norm_hits)
            st = rule_error(r, lb_fail(LB_ERR_INVALID, "'%s' selects only norm weights; norms stay f32", r->pattern));
        else if (!hits)
            st = rule_error(r, lb_fail(LB_ERR_INVALID, "'%s' matches no tensor (see lowbit info MODEL)", r->pattern));
    }
    /* row rules: each selected tensor's rows, its parts counted */
    int count = 0, total_parts = 0;
    int64_t max_rows = 1; /* rows or columns: the longest axis */
    for (int i = 0; i < n; i++) {
        const lb_tensor *t = lb_model_tensor_at(m, i);
        count += winner[i] != -1;
        if (t->rows > max_rows) max_rows = t->rows;
        if (t->cols > max_rows) max_rows = t->cols;
    }
    int *row_rule = any_rows && st == LB_OK ? lb_alloc((size_t)max_rows * sizeof *row_rule) : NULL;
    if (any_rows && st == LB_OK && !row_rule) st = LB_ERR_NOMEM;
    for (int i = 0; any_rows && i < n && st == LB_OK; i++) {
        if (winner[i] == -1) continue;
        const lb_tensor *t = lb_model_tensor_at(m, i);
        int split = 0, axis;
        if ((st = range_axis(p, t->name, &axis)) != LB_OK) break;
        int64_t along = axis ? t->cols : t->rows;
        st = row_winners(p, t->name, along, axis, winner[i] >= 0 ? winner[i] : -1, row_rule, &split);
        if (st != LB_OK) break;
        if (split) total_parts += n_parts[i] = fill_parts(p, row_rule, along, axis, t->cols, NULL);
        else winner[i] = row_rule[0]; /* every row one rule's: a whole-tensor entry */
        if (n_parts[i] > LB_SPLIT_MAX_PARTS)
            st = lb_fail(LB_ERR_INVALID, "'%s' would have %d %s parts (at most %d)", t->name, n_parts[i],
                         axis ? "column" : "row", LB_SPLIT_MAX_PARTS);
    }
    /* the entries, and the parts after them in the same block */
    lb_plan_part *parts = NULL;
    if (st == LB_OK && count) {
        size_t head = ((size_t)count * sizeof *p->entries + 63) / 64 * 64;
        p->entries = lb_alloc(head + (size_t)total_parts * sizeof *parts);
        if (!p->entries) st = LB_ERR_NOMEM;
        else parts = (lb_plan_part *)((char *)p->entries + head);
    }
    lb_qspec split_spec;
    if (st == LB_OK && total_parts) st = lb_qspec_parse("split", &split_spec);
    for (int i = 0; i < n && st == LB_OK; i++) {
        if (winner[i] == -1) continue;
        lb_plan_entry *e = &p->entries[p->n_entries++];
        const lb_tensor *t = lb_model_tensor_at(m, i);
        memset(e, 0, sizeof *e);
        e->tensor = i;
        snprintf(e->name, sizeof e->name, "%s", t->name);
        if (n_parts[i]) {
            int split, axis;
            if ((st = range_axis(p, t->name, &axis)) != LB_OK) break;
            int64_t along = axis ? t->cols : t->rows;
            st = row_winners(p, t->name, along, axis, winner[i] >= 0 ? winner[i] : -1, row_rule, &split);
            if (st != LB_OK) break;
            e->split_axis = axis;
            e->n_parts = fill_parts(p, row_rule, along, axis, t->cols, parts);
            e->parts = parts;
            parts += e->n_parts;
            e->spec = e->asked = split_spec;
            e->rule = e->parts[e->n_parts - 1].rule;
            st = split_opts(e, &e->opts);
            continue;
        }
        const lb_plan_rule *r = &p->rules[winner[i]];
        /* a K-quant on rows that are not whole blocks: the fallback, never
         * silently (asked keeps the rule's spec; the CLI prints both) */
        e->spec = e->asked = r->spec;
        (void)lb_format_ggml_fallback(&r->spec, t->cols, &e->spec);
        e->opts = r->opts;
        e->rule = winner[i];
    }
    lb_free(winner);
    lb_free(n_parts);
    lb_free(row_rule);
    if (st != LB_OK) {
        lb_free(p->entries);
        p->entries = NULL;
        p->n_entries = 0;
    }
    return st;
}

/* A row (column) part is quantized as a tensor of its rows (columns) by its
 * method alone: nothing that adds a slot to the linear (outliers, bias
 * correction, rotations, input scales) is possible for a part of it. */
static lb_status check_part(const lb_plan_entry *e, const lb_plan_part *q) {
    const lb_method *m = q->opts.method;
    char buf[32];
    const char *slot = lb_method_opts_get(&q->opts, "outliers") > 0 ? "outliers"
                       : lb_method_opts_get(&q->opts, "bias_correct") != 0 ? "bias_correct"
                       : strcmp(lb_method_opts_text(&q->opts, "rotate", buf, sizeof buf), "none") ? "rotate"
                       : m->input_scales ? m->name
                       : NULL;
    if (slot)
        return lb_fail(LB_ERR_UNSUPPORTED, "'%s' %s %lld:%lld: %s changes the whole linear, which a part "
                       "cannot (quantize the tensor whole for it)", e->name, axis_word(e->split_axis),
                       (long long)q->row0, (long long)q->row1, slot);
    if (lb_qspec_is_float(&q->spec) || !m->check) return LB_OK;
    lb_status st = m->check(&q->spec, &q->opts);
    return st == LB_OK ? st : lb_fail_context(st, "quantizing '%s' %s %lld:%lld", e->name, axis_word(e->split_axis),
                                              (long long)q->row0, (long long)q->row1);
}

lb_status lb_plan_check(const lb_plan *p) {
    for (int i = 0; i < p->n_entries; i++) {
        const lb_plan_entry *e = &p->entries[i];
        const lb_method *m = e->opts.method;
        if (e->n_parts) {
            for (int k = 0; k < e->n_parts; k++) {
                lb_status st = check_part(e, &e->parts[k]);
                if (st != LB_OK) return st;
            }
            continue;
        }
        if (lb_qspec_is_float(&e->spec) || !m->check) continue;
        lb_status st = m->check(&e->spec, &e->opts);
        if (st != LB_OK) return lb_fail_context(st, "quantizing '%s'", e->name);
    }
    /* checked again where the quantization starts; here so that a command
     * fails on its arguments, not after calibrating */
    return lb_pipeline_check_rotations(p, &p->act);
}

/* ---- summary ---------------------------------------------------------- */

static int same_treatment(const lb_plan_rule *a, const lb_plan_rule *b) {
    return lb_qspec_equal(&a->spec, &b->spec) && lb_method_opts_equal(&a->opts, &b->opts);
}

static void append(char *buf, size_t n, size_t *used, const char *text) {
    size_t len = strlen(text);
    if (*used + len >= n) len = n - 1 - *used;
    memcpy(buf + *used, text, len);
    *used += len;
    buf[*used] = '\0';
}

/* the pattern, with a row rule's rows: "blk.3.ffn_down.weight[rows 0:32]" */
static const char *pattern_text(const lb_plan_rule *r, char *buf, size_t n) {
    if (r->row1)
        snprintf(buf, n, "%s[%s %lld:%lld]", r->pattern, r->axis ? "cols" : "rows", (long long)r->row0,
                 (long long)r->row1);
    else snprintf(buf, n, "%s", r->pattern);
    return buf;
}

void lb_plan_summary(const lb_plan *p, char *buf, size_t n) {
    const size_t reserve = 6; /* room for "; ..." and the NUL */
    if (n < reserve) {
        if (n) buf[0] = '\0';
        return;
    }
    buf[0] = '\0';
    size_t used = 0;
    for (int k = 0; k < p->n_rules;) {
        const lb_plan_rule *r = &p->rules[k];
        char opts[256], spec[64], head[512];
        lb_method_opts_format(&r->opts, 0, opts, sizeof opts);
        lb_qspec_format(&r->spec, spec, sizeof spec);
        snprintf(head, sizeof head, "%smethod=%s%s%s format=%s tensors=", k ? "; " : "", r->opts.method->name,
                 opts[0] ? " " : "", opts, spec);
        char pat[LB_PLAN_PATTERN_MAX + 48];
        pattern_text(r, pat, sizeof pat);
        if (used + strlen(head) + strlen(pat) + reserve > n) {
            append(buf, n, &used, used ? "; ..." : "...");
            return;
        }
        append(buf, n, &used, head);
        append(buf, n, &used, pat);
        int j = k + 1;
        for (; j < p->n_rules && same_treatment(r, &p->rules[j]); j++) {
            pattern_text(&p->rules[j], pat, sizeof pat);
            if (used + 1 + strlen(pat) + reserve > n) {
                append(buf, n, &used, ",...");
                return;
            }
            append(buf, n, &used, ",");
            append(buf, n, &used, pat);
        }
        k = j;
    }
}
