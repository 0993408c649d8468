/* JSON (RFC 8259) reader and writer; see json.h. The parser is a loop over
 * three states (a value is expected, a member key is expected, a value just
 * ended) with the open containers on a fixed stack, so hostile nesting
 * costs a message, not the C stack. */
#include "io/json.h"
#include "io/io_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- reading ---------------------------------------------------------------- */

static lb_status json_error(size_t pos, const char *what) {
    return lb_fail(LB_ERR_FORMAT, "JSON: byte %zu: %s", pos, what);
}

static size_t skip_ws(const char *s, size_t n, size_t p) {
    while (p < n && (s[p] == ' ' || s[p] == '\t' || s[p] == '\n' || s[p] == '\r')) p++;
    return p;
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int read_hex4(const char *s, unsigned *out) {
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        int h = hex_value(s[k]);
        if (h < 0) return 0;
        v = v << 4 | (unsigned)h;
    }
    *out = v;
    return 1;
}

/* Checks the string starting after the opening quote at p; sets *end to the
 * closing quote and *escaped when it holds a backslash. Surrogates must come
 * in pairs, so every string decodes to valid code points. */
static lb_status scan_string(const char *s, size_t n, size_t p, size_t *end, uint8_t *escaped) {
    *escaped = 0;
    while (p < n) {
        unsigned char c = (unsigned char)s[p];
        if (c == '"') {
            *end = p;
            return LB_OK;
        }
        if (c < 0x20) return json_error(p, "control character inside a string (must be escaped)");
        if (c != '\\') {
            p++;
            continue;
        }
        *escaped = 1;
        if (p + 1 >= n) break;
        char e = s[p + 1];
        if (e == 'u') {
            unsigned u, lo;
            if (p + 6 > n || !read_hex4(s + p + 2, &u)) return json_error(p, "\\u needs four hex digits");
            p += 6;
            if (u >= 0xDC00 && u <= 0xDFFF) return json_error(p - 6, "\\u escape is a lone low surrogate");
            if (u >= 0xD800 && u <= 0xDBFF) {
                if (p + 6 > n || s[p] != '\\' || s[p + 1] != 'u' || !read_hex4(s + p + 2, &lo) || lo < 0xDC00 ||
                    lo > 0xDFFF)
                    return json_error(p - 6, "\\u escape is a high surrogate without its low half");
                p += 6;
            }
            continue;
        }
        if (!strchr("\"\\/bfnrt", e) || e == 0) return json_error(p, "unknown escape in a string");
        p += 2;
    }
    return json_error(n, "unterminated string");
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? from p; *end past it */
static lb_status scan_number(const char *s, size_t n, size_t p, size_t *end) {
    size_t q = p;
    if (q < n && s[q] == '-') q++;
    if (q >= n || s[q] < '0' || s[q] > '9') return json_error(p, "not a value (expected a number, string, "
                                                                 "object, array, true, false or null)");
    if (s[q] == '0') q++;
    else
        while (q < n && s[q] >= '0' && s[q] <= '9') q++;
    if (q < n && s[q] == '.') {
        q++;
        if (q >= n || s[q] < '0' || s[q] > '9') return json_error(q, "a digit must follow the decimal point");
        while (q < n && s[q] >= '0' && s[q] <= '9') q++;
    }
    if (q < n && (s[q] == 'e' || s[q] == 'E')) {
        q++;
        if (q < n && (s[q] == '+' || s[q] == '-')) q++;
        if (q >= n || s[q] < '0' || s[q] > '9') return json_error(q, "an exponent needs digits");
        while (q < n && s[q] >= '0' && s[q] <= '9') q++;
    }
    *end = q;
    return LB_OK;
}

static int32_t new_node(lb_json *j) {
    /* node indices are int32 */
    if (j->n_nodes >= (size_t)INT32_MAX || !lb_io_grow((void **)&j->nodes, &j->cap, j->n_nodes, sizeof *j->nodes, 64))
        return -1;
    lb_json_node *x = &j->nodes[j->n_nodes];
    memset(x, 0, sizeof *x);
    x->next = x->child = -1;
    return (int32_t)j->n_nodes++;
}

enum { WANT_VALUE, WANT_KEY, AFTER_VALUE };

lb_status lb_json_parse(const char *s, size_t n, lb_json *j) {
    memset(j, 0, sizeof *j);
    j->text = s;
    j->len = n;
    int32_t stack[LB_JSON_MAX_DEPTH], last[LB_JSON_MAX_DEPTH];
    int depth = 0, state = WANT_VALUE;
    size_t p = 0, key_start = 0, key_len = 0;
    uint8_t key_escaped = 0;
    lb_status st = LB_OK;
    for (;;) {
        p = skip_ws(s, n, p);
        if (state == AFTER_VALUE) {
            if (depth == 0) {
                if (p != n) st = json_error(p, "text after the JSON value");
                break;
            }
            lb_json_node *top = &j->nodes[stack[depth - 1]];
            char close = top->type == LB_JSON_OBJECT ? '}' : ']';
            if (p < n && s[p] == ',') {
                p++;
                state = top->type == LB_JSON_OBJECT ? WANT_KEY : WANT_VALUE;
            } else if (p < n && s[p] == close) {
                top->len = ++p - top->start;
                depth--;
            } else {
                st = json_error(p, top->type == LB_JSON_OBJECT ? "expected ',' or '}'" : "expected ',' or ']'");
                break;
            }
            continue;
        }
        if (state == WANT_KEY) {
            size_t end = p;
            if (p >= n || s[p] != '"') {
                st = json_error(p, "expected a member name (a string)");
                break;
            }
            if ((st = scan_string(s, n, p + 1, &end, &key_escaped)) != LB_OK) break;
            key_start = p + 1;
            key_len = end - p - 1;
            p = skip_ws(s, n, end + 1);
            if (p >= n || s[p] != ':') {
                st = json_error(p, "expected ':' after a member name");
                break;
            }
            p++;
            state = WANT_VALUE;
            continue;
        }
        /* WANT_VALUE */
        if (p >= n) {
            st = json_error(p, "unexpected end of the text (a value is missing)");
            break;
        }
        int32_t id = new_node(j);
        if (id < 0) {
            st = lb_fail(LB_ERR_NOMEM, "JSON: out of memory at byte %zu", p);
            break;
        }
        lb_json_node *x = &j->nodes[id];
        x->start = p;
        if (depth > 0) {
            lb_json_node *parent = &j->nodes[stack[depth - 1]];
            if (parent->type == LB_JSON_OBJECT) {
                x->key_start = key_start;
                x->key_len = key_len;
                x->key_escaped = key_escaped;
            }
            if (parent->count == 0) parent->child = id;
            else j->nodes[last[depth - 1]].next = id;
            parent->count++;
            last[depth - 1] = id;
        }
        char c = s[p];
        if (c == '{' || c == '[') {
            if (depth == LB_JSON_MAX_DEPTH) {
                st = json_error(p, "nested deeper than 64 levels");
                break;
            }
            x->type = c == '{' ? LB_JSON_OBJECT : LB_JSON_ARRAY;
            stack[depth++] = id;
            p = skip_ws(s, n, p + 1);
            if (p < n && s[p] == (c == '{' ? '}' : ']')) {
                x->len = ++p - x->start;
                depth--;
                state = AFTER_VALUE;
            } else {
                state = c == '{' ? WANT_KEY : WANT_VALUE;
            }
            continue;
        }
        if (c == '"') {
            size_t end = p;
            x->type = LB_JSON_STRING;
            if ((st = scan_string(s, n, p + 1, &end, &x->escaped)) != LB_OK) break;
            x->start = p + 1;
            x->len = end - p - 1;
            p = end + 1;
        } else if (n - p >= 4 && !memcmp(s + p, "true", 4)) {
            x->type = LB_JSON_TRUE;
            x->len = 4;
            p += 4;
        } else if (n - p >= 5 && !memcmp(s + p, "false", 5)) {
            x->type = LB_JSON_FALSE;
            x->len = 5;
            p += 5;
        } else if (n - p >= 4 && !memcmp(s + p, "null", 4)) {
            x->type = LB_JSON_NULL;
            x->len = 4;
            p += 4;
        } else {
            size_t end = p;
            x->type = LB_JSON_NUMBER;
            if ((st = scan_number(s, n, p, &end)) != LB_OK) break;
            x->len = end - p;
            p = end;
        }
        state = AFTER_VALUE;
    }
    if (st != LB_OK) lb_json_free(j);
    return st;
}

void lb_json_free(lb_json *j) {
    free(j->nodes); /* lb_io_grow's */
    memset(j, 0, sizeof *j);
}

/* Appends code point u as UTF-8 at o. */
static size_t put_utf8(char *o, unsigned u) {
    if (u < 0x80) {
        o[0] = (char)u;
        return 1;
    }
    if (u < 0x800) {
        o[0] = (char)(0xC0 | u >> 6);
        o[1] = (char)(0x80 | (u & 0x3F));
        return 2;
    }
    if (u < 0x10000) {
        o[0] = (char)(0xE0 | u >> 12);
        o[1] = (char)(0x80 | (u >> 6 & 0x3F));
        o[2] = (char)(0x80 | (u & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | u >> 18);
    o[1] = (char)(0x80 | (u >> 12 & 0x3F));
    o[2] = (char)(0x80 | (u >> 6 & 0x3F));
    o[3] = (char)(0x80 | (u & 0x3F));
    return 4;
}

/* Decodes a span the parser checked into o (at most len bytes: every escape
 * is longer than what it stands for); returns the decoded length. */
static size_t decode_span(const char *s, size_t len, char *o) {
    size_t k = 0;
    for (size_t p = 0; p < len;) {
        if (s[p] != '\\') {
            o[k++] = s[p++];
            continue;
        }
        char e = s[p + 1];
        if (e == 'u') {
            unsigned u = 0, lo = 0xDC00;
            read_hex4(s + p + 2, &u);
            p += 6;
            if (u >= 0xD800 && u <= 0xDBFF) {
                read_hex4(s + p + 2, &lo);
                p += 6;
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
            }
            k += put_utf8(o + k, u);
            continue;
        }
        static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
        o[k++] = to[strchr(from, e) - from];
        p += 2;
    }
    return k;
}

static lb_status decode_alloc(const char *s, size_t len, int escaped, char **out, size_t *out_len) {
    char *o = lb_alloc(len + 1);
    if (!o) return LB_ERR_NOMEM;
    size_t k = escaped ? decode_span(s, len, o) : len;
    if (!escaped) memcpy(o, s, len);
    o[k] = 0;
    *out = o;
    if (out_len) *out_len = k;
    return LB_OK;
}

lb_status lb_json_string(const lb_json *j, int32_t i, char **out, size_t *len) {
    *out = NULL;
    if (i < 0 || (size_t)i >= j->n_nodes || j->nodes[i].type != LB_JSON_STRING)
        return lb_fail(LB_ERR_FORMAT, "JSON: byte %zu: expected a string", i >= 0 && (size_t)i < j->n_nodes ? j->nodes[i].start : 0);
    const lb_json_node *x = &j->nodes[i];
    return decode_alloc(j->text + x->start, x->len, x->escaped, out, len);
}

lb_status lb_json_key(const lb_json *j, int32_t i, char **out, size_t *len) {
    const lb_json_node *x = &j->nodes[i];
    return decode_alloc(j->text + x->key_start, x->key_len, x->key_escaped, out, len);
}

/* span (raw, escaped or not) equals the NUL-terminated s once decoded */
static int span_eq(const char *raw, size_t len, int escaped, const char *s) {
    size_t n = strlen(s);
    if (!escaped) return len == n && !memcmp(raw, s, n);
    if (n > len) return 0; /* decoding never lengthens */
    char small[256], *o = len < sizeof small ? small : lb_alloc(len + 1);
    if (!o) return 0;
    size_t k = decode_span(raw, len, o);
    int eq = k == n && !memcmp(o, s, n);
    if (o != small) lb_free(o);
    return eq;
}

int32_t lb_json_find(const lb_json *j, int32_t obj, const char *key) {
    if (obj < 0 || (size_t)obj >= j->n_nodes || j->nodes[obj].type != LB_JSON_OBJECT) return -1;
    for (int32_t c = j->nodes[obj].child; c >= 0; c = j->nodes[c].next) {
        const lb_json_node *x = &j->nodes[c];
        if (span_eq(j->text + x->key_start, x->key_len, x->key_escaped, key)) return c;
    }
    return -1;
}

int lb_json_string_eq(const lb_json *j, int32_t i, const char *s) {
    if (i < 0 || (size_t)i >= j->n_nodes || j->nodes[i].type != LB_JSON_STRING) return 0;
    const lb_json_node *x = &j->nodes[i];
    return span_eq(j->text + x->start, x->len, x->escaped, s);
}

lb_status lb_json_double(const lb_json *j, int32_t i, double *out) {
    if (i < 0 || (size_t)i >= j->n_nodes || j->nodes[i].type != LB_JSON_NUMBER)
        return lb_fail(LB_ERR_FORMAT, "JSON: expected a number");
    const lb_json_node *x = &j->nodes[i];
    char buf[64];
    if (x->len >= sizeof buf) return lb_fail(LB_ERR_FORMAT, "JSON: byte %zu: number of %zu characters", x->start, x->len);
    memcpy(buf, j->text + x->start, x->len);
    buf[x->len] = 0;
    double v = strtod(buf, NULL);
    if (!isfinite(v)) return lb_fail(LB_ERR_FORMAT, "JSON: byte %zu: number %s is out of range", x->start, buf);
    *out = v;
    return LB_OK;
}

/* integer text: digits only after an optional '-', no overflow past 2^64-1 */
static lb_status integer_value(const lb_json *j, int32_t i, uint64_t *mag, int *neg) {
    if (i < 0 || (size_t)i >= j->n_nodes || j->nodes[i].type != LB_JSON_NUMBER)
        return lb_fail(LB_ERR_FORMAT, "JSON: expected an integer");
    const lb_json_node *x = &j->nodes[i];
    const char *s = j->text + x->start;
    size_t p = 0;
    *neg = s[0] == '-';
    p += (size_t)*neg;
    uint64_t v = 0;
    for (; p < x->len; p++) {
        if (s[p] < '0' || s[p] > '9')
            return lb_fail(LB_ERR_FORMAT, "JSON: byte %zu: expected an integer, found %.*s", x->start,
                           (int)(x->len > 32 ? 32 : x->len), s);
        unsigned d = (unsigned)(s[p] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return lb_fail(LB_ERR_FORMAT, "JSON: byte %zu: integer out of range", x->start);
        v = v * 10 + d;
    }
    *mag = v;
    return LB_OK;
}

lb_status lb_json_u64(const lb_json *j, int32_t i, uint64_t *out) {
    uint64_t v = 0;
    int neg = 0;
    lb_status st = integer_value(j, i, &v, &neg);
    if (st != LB_OK) return st;
    if (neg && v) return lb_fail(LB_ERR_FORMAT, "JSON: byte %zu: negative where a count is expected", j->nodes[i].start);
    *out = v;
    return LB_OK;
}

lb_status lb_json_i64(const lb_json *j, int32_t i, int64_t *out) {
    uint64_t v = 0;
    int neg = 0;
    lb_status st = integer_value(j, i, &v, &neg);
    if (st != LB_OK) return st;
    if (v > (uint64_t)INT64_MAX) return lb_fail(LB_ERR_FORMAT, "JSON: byte %zu: integer out of range", j->nodes[i].start);
    *out = neg ? -(int64_t)v : (int64_t)v;
    return LB_OK;
}

/* ---- writing ---------------------------------------------------------------- */

void lb_json_buf_free(lb_json_buf *b) {
    lb_free(b->data);
    memset(b, 0, sizeof *b);
}

void lb_json_raw(lb_json_buf *b, const char *s, size_t n) {
    if (b->failed) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = lb_alloc(cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        if (b->len) memcpy(p, b->data, b->len);
        lb_free(b->data);
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
}

void lb_json_raws(lb_json_buf *b, const char *s) { lb_json_raw(b, s, strlen(s)); }

void lb_json_str(lb_json_buf *b, const char *s, size_t n) {
    lb_json_raw(b, "\"", 1);
    size_t run = 0; /* bytes copied as they are, flushed before each escape */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        lb_json_raw(b, s + run, i - run);
        char esc[8];
        if (c == '"' || c == '\\') snprintf(esc, sizeof esc, "\\%c", c);
        else if (c == '\n') snprintf(esc, sizeof esc, "\\n");
        else if (c == '\t') snprintf(esc, sizeof esc, "\\t");
        else if (c == '\r') snprintf(esc, sizeof esc, "\\r");
        else snprintf(esc, sizeof esc, "\\u%04x", c);
        lb_json_raws(b, esc);
        run = i + 1;
    }
    lb_json_raw(b, s + run, n - run);
    lb_json_raw(b, "\"", 1);
}

void lb_json_strs(lb_json_buf *b, const char *s) { lb_json_str(b, s, strlen(s)); }

void lb_json_int(lb_json_buf *b, long long v) {
    char t[32];
    snprintf(t, sizeof t, "%lld", v);
    lb_json_raws(b, t);
}

void lb_json_uint(lb_json_buf *b, unsigned long long v) {
    char t[32];
    snprintf(t, sizeof t, "%llu", v);
    lb_json_raws(b, t);
}

void lb_json_float(lb_json_buf *b, float v) {
    char t[48];
    for (int prec = 6; prec <= 9; prec++) { /* 9 significant digits always round-trip a float */
        snprintf(t, sizeof t, "%.*g", prec, (double)v);
        if (strtof(t, NULL) == v) break;
    }
    lb_json_raws(b, t);
}
