/* Option parsing, errors and a small JSON writer for the lowbit CLI. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int cli_option(cli_args *a, const char *name, const char *alias, const char **value) {
    const char *arg = a->argv[a->i];
    size_t n = strlen(name);
    if (!strncmp(arg, name, n) && arg[n] == '=') {
        *value = arg + n + 1;
        a->i++;
        return 1;
    }
    if (strcmp(arg, name) && (!alias || strcmp(arg, alias))) return 0;
    if (a->i + 1 >= a->argc) {
        cli_usage_error(a->verb, "option %s needs a value", arg);
        return -1;
    }
    *value = a->argv[a->i + 1];
    a->i += 2;
    return 1;
}

int cli_flag(cli_args *a, const char *name) {
    if (strcmp(a->argv[a->i], name)) return 0;
    a->i++;
    return 1;
}

int cli_parse_int(const char *verb, const char *opt, const char *text, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < lo || v > hi)
        return cli_usage_error(verb, "%s expects an integer in %ld..%ld, not '%s'", opt, lo, hi, text);
    *out = v;
    return 0;
}

int cli_parse_float(const char *verb, const char *opt, const char *text, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !(v >= lo && v <= hi))
        return cli_usage_error(verb, "%s expects a number in %g..%g, not '%s'", opt, lo, hi, text);
    *out = v;
    return 0;
}

int cli_common_option(cli_args *a) {
    const char *v;
    int r;
    if (cli_flag(a, "--json")) return a->json = 1;
    if (cli_flag(a, "--help") || cli_flag(a, "-h")) return a->help = 1;
    if (cli_flag(a, "--progress")) {
        lb_progress_set_mode(LB_PROGRESS_ON);
        return 1;
    }
    if (cli_flag(a, "--no-progress")) {
        lb_progress_set_mode(LB_PROGRESS_OFF);
        return 1;
    }
    if ((r = cli_option(a, "--threads", "-t", &v)) != 0) {
        long n = 0;
        if (r < 0 || cli_parse_int(a->verb, "--threads", v, 1, 1024, &n)) return -1;
        lb_set_threads((int)n);
        return 1;
    }
    return 0;
}

int cli_unknown(cli_args *a) {
    int r = cli_common_option(a);
    if (r > 0) return 0;
    if (r < 0) return CLI_USAGE;
    const char *arg = a->argv[a->i];
    if (arg[0] == '-' && arg[1] != 0) return cli_usage_error(a->verb, "unknown option '%s'", arg);
    if (a->n_positional >= 4) return cli_usage_error(a->verb, "unexpected argument '%s'", arg);
    a->positional[a->n_positional++] = arg;
    a->i++;
    return 0;
}

int cli_error(const char *verb, const char *fmt, ...) {
    fprintf(stderr, "lowbit %s: ", verb);
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
    } else {
        fputs(lb_last_error(), stderr);
    }
    fputc('\n', stderr);
    return CLI_FAIL;
}

int cli_usage_error(const char *verb, const char *fmt, ...) {
    fprintf(stderr, "lowbit %s: ", verb);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see: lowbit %s --help)\n", verb);
    return CLI_USAGE;
}

int cli_write_file(const char *verb, const char *path, const char *data, size_t len, int failed) {
    lb_atomic_file f;
    if (failed) return cli_error(verb, "%s: out of memory", path);
    if (lb_atomic_open(&f, path) != LB_OK) return cli_error(verb, NULL);
    lb_atomic_write(&f, data, len);
    if (lb_atomic_commit(&f) != LB_OK) return cli_error(verb, NULL);
    return CLI_OK;
}

int cli_load_model(const char *verb, const char *path, const char *tokenizer, lb_model **out) {
    if (lb_model_load(path, tokenizer, out) != LB_OK) return cli_error(verb, NULL);
    return CLI_OK;
}

static void add_name(char *buf, size_t n, const char *name) {
    size_t len = strlen(name);
    for (const char *p = buf; (p = strstr(p, name)) != NULL; p += len)
        if ((p == buf || p[-1] == ',') && (p[len] == ',' || !p[len])) return; /* listed already */
    size_t used = strlen(buf);
    snprintf(buf + used, n - used, "%s%s", used ? "," : "", name);
}

const char *cli_model_kernels(lb_model *m, char *buf, size_t n) {
    buf[0] = 0;
    for (int i = 0; i < lb_model_n_tensors(m); i++) {
        const lb_tensor *t = lb_model_tensor_at(m, i);
        if (!strncmp(t->name, "blk.", 4) && t->rows > 1) add_name(buf, n, lb_matmul_kernel_name(t)); /* linears */
    }
    add_name(buf, n, lb_matmul_kernel_name(lb_model_classifier(m)));
    return buf;
}

const char *cli_data_path(const char *rel, char *buf, size_t n) {
    snprintf(buf, n, "../shared/data/%s", rel);
    FILE *f = fopen(buf, "rb");
    if (f) {
        fclose(f);
        return buf;
    }
#ifdef LB_DEFAULT_DATA_DIR
    snprintf(buf, n, "%s/%s", LB_DEFAULT_DATA_DIR, rel);
#endif
    return buf;
}

const char *fmt_thousands(long long v, char *buf, size_t n) {
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%lld", v < 0 ? -v : v);
    size_t len = strlen(tmp), o = 0;
    if (v < 0 && o + 1 < n) buf[o++] = '-';
    for (size_t i = 0; i < len && o + 2 < n; i++) {
        if (i && (len - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = tmp[i];
    }
    buf[o] = 0;
    return buf;
}

/* ---- JSON ------------------------------------------------------------------ */

static int json_depth;
static int json_need_comma[64];
static int json_after_key;

static void json_sep(void) {
    if (json_after_key) {
        json_after_key = 0;
        return;
    }
    if (json_depth > 0 && json_need_comma[json_depth]) fputc(',', stdout);
    if (json_depth > 0) json_need_comma[json_depth] = 1;
}

void json_begin_object(void) {
    json_sep();
    fputc('{', stdout);
    json_need_comma[++json_depth] = 0;
}
void json_end_object(void) {
    fputc('}', stdout);
    json_depth--;
}
void json_begin_array(void) {
    json_sep();
    fputc('[', stdout);
    json_need_comma[++json_depth] = 0;
}
void json_end_array(void) {
    fputc(']', stdout);
    json_depth--;
}
void json_stringn(const char *s, size_t n) {
    json_sep();
    fputc('"', stdout);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c < 0x20) printf("\\u%04x", c);
        else fputc(c, stdout);
    }
    fputc('"', stdout);
}
void json_string(const char *s) { json_stringn(s, strlen(s)); }
void json_key(const char *k) {
    json_string(k);
    fputc(':', stdout);
    json_after_key = 1;
}
void json_number(double v) {
    json_sep();
    if (isfinite(v)) printf("%.10g", v);
    else fputs("null", stdout);
}
void json_int(long long v) {
    json_sep();
    printf("%lld", v);
}
void json_bool(int v) {
    json_sep();
    fputs(v ? "true" : "false", stdout);
}
void json_null(void) {
    json_sep();
    fputs("null", stdout);
}
void json_kstr(const char *k, const char *v) {
    json_key(k);
    json_string(v);
}
void json_knum(const char *k, double v) {
    json_key(k);
    json_number(v);
}
void json_kint(const char *k, long long v) {
    json_key(k);
    json_int(v);
}
void json_kbool(const char *k, int v) {
    json_key(k);
    json_bool(v);
}
void json_done(void) {
    fputc('\n', stdout);
    fflush(stdout);
}
