/* Option parsing, errors and a small JSON writer for the lowbit CLI. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

int cli_parse_size(const char *verb, const char *opt, const char *text, double *bytes) {
    char *end;
    double v = strtod(text, &end);
    static const struct {
        const char *suffix;
        double mult;
    } units[] = {{"", 1}, {"B", 1}, {"K", 1e3}, {"KB", 1e3}, {"M", 1e6}, {"MB", 1e6}, {"G", 1e9}, {"GB", 1e9},
                 {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0}};
    for (size_t i = 0; end != text && v > 0 && isfinite(v) && i < sizeof units / sizeof units[0]; i++)
        if (!strcmp(end, units[i].suffix)) {
            *bytes = v * units[i].mult;
            return CLI_OK;
        }
    return cli_usage_error(verb, "%s '%s': a positive number with an optional K, M, G, KiB, MiB or GiB", opt, text);
}

int cli_split_opts(const char *verb, const char *max_size, const char *max_tensors, lb_gguf_split_opts *o, int *on) {
    memset(o, 0, sizeof *o);
    *on = max_size || max_tensors;
    if (max_size) {
        double b = 0;
        if (cli_parse_size(verb, "--split-max-size", max_size, &b)) return CLI_USAGE;
        if (b < 1 || b >= 1.8e19) return cli_usage_error(verb, "--split-max-size '%s': 1 byte .. 2^64", max_size);
        o->max_bytes = (uint64_t)b;
    }
    long n = 0;
    if (max_tensors && cli_parse_int(verb, "--split-max-tensors", max_tensors, 1, INT32_MAX, &n)) return CLI_USAGE;
    if (max_tensors) o->max_tensors = (uint32_t)n;
    return CLI_OK;
}

/* "-00001-of-00003.gguf": the 20 characters a shard's name ends in */
static int split_prefix_len(const char *path, size_t *plen) {
    size_t n = strlen(path);
    int a, b, k = 0;
    if (n <= 20 || sscanf(path + n - 20, "-%5d-of-%5d.gguf%n", &a, &b, &k) != 2 || k != 20) return 0;
    *plen = n - 20;
    return 1;
}

int cli_split_output_check(const char *verb, const char *out, const char *const *inputs, int n_inputs) {
    char first[4096];
    if (lb_gguf_split_path(first, sizeof first, out, 0, 1) != LB_OK) return cli_error(verb, NULL);
    /* the directory, and the one name known before the count is */
    if (lb_output_check(first, inputs, n_inputs) != LB_OK) return cli_error(verb, NULL);
    size_t plen, olen;
    if (!split_prefix_len(first, &olen)) return CLI_OK;
    for (int i = 0; i < n_inputs; i++)
        if (inputs[i] && split_prefix_len(inputs[i], &plen) && plen == olen && !strncmp(inputs[i], first, plen))
            return cli_error(verb, "the shards of '%s' would be named as the input's '%s': refusing to overwrite an "
                             "input", out, inputs[i]);
    return CLI_OK;
}

void cli_json_shards(const char *out, int split, int n_shards) {
    char name[4096];
    json_key("shards");
    json_begin_array();
    for (int i = 0; i < (split ? n_shards : 1); i++)
        json_string(split && lb_gguf_split_path(name, sizeof name, out, i, n_shards) == LB_OK ? name : out);
    json_end_array();
}

long long cli_output_bytes(const char *out, int split, int n_shards) {
    char name[4096];
    long long total = 0;
    for (int i = 0; i < (split ? n_shards : 1); i++) {
        struct stat st;
        const char *p = split && lb_gguf_split_path(name, sizeof name, out, i, n_shards) == LB_OK ? name : out;
        if (stat(p, &st) != 0) return -1;
        total += (long long)st.st_size;
    }
    return total;
}

const char *cli_shards_text(const char *out, int split, int n_shards, char *buf, size_t n) {
    char first[4096];
    if (!split || lb_gguf_split_path(first, sizeof first, out, 0, n_shards) != LB_OK) snprintf(buf, n, "%s", out);
    else snprintf(buf, n, "%d shard%s, %s%s", n_shards, n_shards == 1 ? "" : "s", first, n_shards > 1 ? " ..." : "");
    return buf;
}

const lb_comm *cli_comm;

int cli_rank0_only(const char *verb, const char *why) {
    if (!cli_comm || cli_comm->size <= 1) return 0;
    if (cli_comm->rank == 0)
        fprintf(stderr, "lowbit %s: %s: runs on rank 0 alone; the other %d rank(s) do nothing\n", verb, why,
                cli_comm->size - 1);
    return cli_comm->rank != 0;
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
