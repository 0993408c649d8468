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

lb_status lb_plan_resolve(lb_plan *p, lb_model *m) {
    lb_free(p->entries);
    p->entries = NULL;
    p->n_entries = 0;
    if (p->n_rules == 0) return lb_fail(LB_ERR_INVALID, "the quantization plan has no rules");
    int n = lb_model_n_tensors(m);
    int *winner = lb_alloc((size_t)n * sizeof *winner);
    if (!winner) return LB_ERR_NOMEM;
    for (int i = 0; i < n; i++) winner[i] = -1;
    lb_status st = LB_OK;
    for (int k = 0; k < p->n_rules && st == LB_OK; k++) {
        const lb_plan_rule *r = &p->rules[k];
        int hits = 0, norm_hits = 0;
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
                winner[i] = k;
                hits++;
            }
        }
        if (!hits && norm_hits)
            st = rule_error(r, lb_fail(LB_ERR_INVALID, "'%s' selects only norm weights; norms stay f32", r->pattern));
        else if (!hits)
            st = rule_error(r, lb_fail(LB_ERR_INVALID, "'%s' matches no tensor (see lowbit info MODEL)", r->pattern));
    }
    int count = 0;
    for (int i = 0; i < n; i++) count += winner[i] >= 0;
    if (st == LB_OK && count) {
        p->entries = lb_alloc((size_t)count * sizeof *p->entries);
        if (!p->entries) st = LB_ERR_NOMEM;
    }
    for (int i = 0; i < n && st == LB_OK; i++) {
        if (winner[i] < 0) continue;
        lb_plan_entry *e = &p->entries[p->n_entries++];
        const lb_plan_rule *r = &p->rules[winner[i]];
        memset(e, 0, sizeof *e);
        e->tensor = i;
        snprintf(e->name, sizeof e->name, "%s", lb_model_tensor_at(m, i)->name);
        /* a K-quant on rows that are not whole blocks: the fallback, never
         * silently (asked keeps the rule's spec; the CLI prints both) */
        e->spec = e->asked = r->spec;
        (void)lb_format_ggml_fallback(&r->spec, lb_model_tensor_at(m, i)->cols, &e->spec);
        e->opts = r->opts;
        e->rule = winner[i];
    }
    lb_free(winner);
    if (st != LB_OK) {
        lb_free(p->entries);
        p->entries = NULL;
        p->n_entries = 0;
    }
    return st;
}

lb_status lb_plan_check(const lb_plan *p) {
    for (int i = 0; i < p->n_entries; i++) {
        const lb_plan_entry *e = &p->entries[i];
        const lb_method *m = e->opts.method;
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
        if (used + strlen(head) + strlen(r->pattern) + reserve > n) {
            append(buf, n, &used, used ? "; ..." : "...");
            return;
        }
        append(buf, n, &used, head);
        append(buf, n, &used, r->pattern);
        int j = k + 1;
        for (; j < p->n_rules && same_treatment(r, &p->rules[j]); j++) {
            if (used + 1 + strlen(p->rules[j].pattern) + reserve > n) {
                append(buf, n, &used, ",...");
                return;
            }
            append(buf, n, &used, ",");
            append(buf, n, &used, p->rules[j].pattern);
        }
        k = j;
    }
}
