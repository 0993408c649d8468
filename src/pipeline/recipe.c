/* Recipes: a quantization plan as text, one rule per line,
 *
 *     PATTERN [rows=R0:R1 | cols=C0:C1] SPEC [method=NAME] [key=value ...]    # comment
 *
 * (rows=: a row rule, lb_plan_add_row_rule, as lowbit plan --granularity
 * rowblock writes; cols=: a column rule, lb_plan_add_col_rule; the tensor
 * becomes a split tensor)
 * read by a parser that expects hostile input (it is fuzzed: fuzz_recipe.c)
 * and reports the line of every problem, and written so that what it writes
 * reads back to the same plan. The format is documented in docs/RECIPES.md. */
#include "lowbit/pipeline.h"

#include <stdio.h>
#include <string.h>

#define MAX_FIELDS (3 + 1 + LB_METHOD_MAX_OPTIONS) /* pattern, rows= or cols=, spec, method=, options */

/* Splits line (NUL-terminated, modified) into fields; a '#' at the start of
 * a field starts a comment. Returns the field count, or -1 if too many. */
static int split_fields(char *line, char **fields) {
    int n = 0;
    char *p = line;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\r') p++;
        if (!*p || *p == '#') return n;
        if (n == MAX_FIELDS) return -1;
        fields[n++] = p;
        while (*p && *p != ' ' && *p != '\t' && *p != '\r') p++;
        if (*p) *p++ = '\0';
    }
}

static lb_status parse_line(lb_plan *p, char *line, int line_no) {
    char *f[MAX_FIELDS];
    int n = split_fields(line, f);
    if (n < 0) return lb_fail(LB_ERR_FORMAT, "more than %d fields", MAX_FIELDS);
    if (n == 0) return LB_OK;
    if (n == 1) return lb_fail(LB_ERR_FORMAT, "expected PATTERN SPEC [method=NAME] [key=value ...], got only '%s'", f[0]);
    long long row0 = 0, row1 = 0;
    int cols = !strncmp(f[1], "cols=", 5);
    if (cols || !strncmp(f[1], "rows=", 5)) { /* a row rule, as lowbit plan --granularity rowblock writes */
        const char *what = cols ? "cols=C0:C1 with 0 <= C0 < C1" : "rows=R0:R1 with 0 <= R0 < R1";
        int used = 0;
        if (sscanf(f[1] + 5, "%lld:%lld%n", &row0, &row1, &used) != 2 || f[1][5 + used] || f[1][5] < '0' ||
            f[1][5] > '9' || row0 < 0 || row1 <= row0)
            return lb_fail(LB_ERR_FORMAT, "'%s': expected %s", f[1], what);
        if (n < 3)
            return lb_fail(LB_ERR_FORMAT, "expected PATTERN %s SPEC [method=NAME] [key=value ...]",
                           cols ? "cols=C0:C1" : "rows=R0:R1");
        f[1] = f[0]; /* the rest reads as an ordinary rule */
        memmove(f, f + 1, (size_t)--n * sizeof *f);
    }
    lb_qspec spec;
    lb_status st = lb_qspec_parse(f[1], &spec);
    if (st != LB_OK) return st;
    lb_method_opts o;
    lb_method_opts_default(lb_method_find("rtn"), &o);
    int method_seen = 0;
    for (int i = 2; i < n; i++) /* the method first: the options are its own */
        if (!strncmp(f[i], "method=", 7)) {
            if (method_seen++) return lb_fail(LB_ERR_FORMAT, "method given twice");
            const lb_method *m = lb_method_find(f[i] + 7);
            if (!m) return LB_ERR_INVALID;
            lb_method_opts_default(m, &o);
        }
    for (int i = 2; i < n; i++)
        if (strncmp(f[i], "method=", 7) && (st = lb_method_opts_parse(&o, f[i])) != LB_OK) return st;
    st = !row1 ? lb_plan_add_rule(p, f[0], &spec, &o)
         : cols ? lb_plan_add_col_rule(p, f[0], row0, row1, &spec, &o)
                : lb_plan_add_row_rule(p, f[0], row0, row1, &spec, &o);
    if (st == LB_OK) p->rules[p->n_rules - 1].line = line_no;
    return st;
}

lb_status lb_plan_parse_recipe(lb_plan *p, const char *text, size_t len, const char *source) {
    if (!source) source = "recipe";
    int before = p->n_rules, line_no = 0;
    char line[LB_RECIPE_LINE_MAX + 1];
    lb_status st = LB_OK;
    size_t pos = 0;
    while (pos < len && st == LB_OK) {
        line_no++;
        size_t end = pos;
        while (end < len && text[end] != '\n') end++;
        size_t n = end - pos;
        if (n > LB_RECIPE_LINE_MAX) {
            st = lb_fail(LB_ERR_FORMAT, "%s:%d: line longer than %d bytes", source, line_no, LB_RECIPE_LINE_MAX);
            break;
        }
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)text[pos + i];
            if ((c < 0x20 && c != '\t' && c != '\r') || c == 0x7f) {
                st = lb_fail(LB_ERR_FORMAT, "%s:%d: byte 0x%02x at column %zu: not a text recipe", source, line_no,
                             c, i + 1);
                break;
            }
        }
        if (st != LB_OK) break;
        memcpy(line, text + pos, n);
        line[n] = '\0';
        st = parse_line(p, line, line_no);
        if (st != LB_OK) st = lb_fail_context(st == LB_ERR_NOMEM ? st : LB_ERR_FORMAT, "%s:%d", source, line_no);
        pos = end + 1;
    }
    if (st == LB_OK && p->n_rules == before)
        st = lb_fail(LB_ERR_FORMAT, "%s: no rules (only comments and blank lines)", source);
    if (st != LB_OK) p->n_rules = before;
    return st;
}

lb_status lb_plan_load_recipe(lb_plan *p, const char *path) {
    char *text;
    size_t size;
    lb_status st = lb_read_file(path, &text, &size);
    if (st != LB_OK) return st;
    st = lb_plan_parse_recipe(p, text, size, path);
    lb_free(text);
    return st;
}

/* A growing text buffer. */
typedef struct {
    char *s;
    size_t len, cap;
    lb_status err;
} text_buf;

static void put(text_buf *b, const char *a, const char *c, const char *d, const char *e) {
    const char *parts[4] = {a, c, d, e};
    for (int i = 0; i < 4 && b->err == LB_OK; i++) {
        size_t n = parts[i] ? strlen(parts[i]) : 0;
        if (!n) continue;
        if (b->len + n + 1 > b->cap) {
            size_t cap = b->cap ? b->cap : 4096;
            while (cap < b->len + n + 1) cap *= 2;
            char *s = lb_alloc(cap);
            if (!s) {
                b->err = LB_ERR_NOMEM;
                return;
            }
            if (b->len) memcpy(s, b->s, b->len);
            lb_free(b->s);
            b->s = s;
            b->cap = cap;
        }
        memcpy(b->s + b->len, parts[i], n);
        b->len += n;
        b->s[b->len] = '\0';
    }
}

static void put_rule(text_buf *b, const char *pattern, int axis, int64_t row0, int64_t row1, const lb_qspec *spec,
                     const lb_method_opts *o) {
    char spec_text[64], opts[512], rows[64] = "", head[LB_PLAN_PATTERN_MAX + 160];
    lb_qspec_format(spec, spec_text, sizeof spec_text);
    lb_method_opts_format(o, 1, opts, sizeof opts); /* every option: the recipe does not depend on defaults */
    if (row1) snprintf(rows, sizeof rows, " %s=%lld:%lld", axis ? "cols" : "rows", (long long)row0, (long long)row1);
    snprintf(head, sizeof head, "%s%s %s method=%s", pattern, rows, spec_text, o->method->name);
    put(b, head, opts[0] ? " " : "", opts, "\n");
}

lb_status lb_plan_format_recipe(const lb_plan *p, int resolved, const char *header, char **out) {
    text_buf b = {NULL, 0, 0, LB_OK};
    *out = NULL;
    if (resolved && !p->n_entries) return lb_fail(LB_ERR_INVALID, "the plan is not resolved (or selects nothing)");
    if (header) {
        char h[512]; /* one comment line, whatever the header holds */
        snprintf(h, sizeof h, "%s", header);
        for (char *c = h; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
        put(&b, "# ", h, "\n", NULL);
    }
    put(&b, "# PATTERN SPEC method=NAME [key=value ...]; the last matching line wins (docs/RECIPES.md)\n", NULL,
        NULL, NULL);
    if (resolved)
        for (int i = 0; i < p->n_entries; i++) {
            const lb_plan_entry *e = &p->entries[i];
            if (!e->n_parts) put_rule(&b, e->name, 0, 0, 0, &e->spec, &e->opts);
            for (int k = 0; k < e->n_parts; k++) /* a split tensor: its row (column) parts */
                put_rule(&b, e->name, e->split_axis, e->parts[k].row0, e->parts[k].row1, &e->parts[k].spec,
                         &e->parts[k].opts);
        }
    else
        for (int i = 0; i < p->n_rules; i++) {
            const lb_plan_rule *r = &p->rules[i];
            put_rule(&b, r->pattern, r->axis, r->row0, r->row1, &r->spec, &r->opts);
        }
    if (b.err != LB_OK) {
        lb_free(b.s);
        return b.err;
    }
    *out = b.s;
    return LB_OK;
}

lb_status lb_plan_save_recipe(const lb_plan *p, const char *path, const char *header) {
    char *text;
    lb_status st = lb_plan_format_recipe(p, 1, header, &text);
    if (st != LB_OK) return st;
    lb_atomic_file f;
    st = lb_atomic_open(&f, path);
    if (st == LB_OK) {
        lb_atomic_write(&f, text, strlen(text));
        st = lb_atomic_commit(&f);
    }
    lb_free(text);
    return st;
}
