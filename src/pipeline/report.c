/* The quantize report as JSON (lowbit quantize --report FILE): one object,
 * written atomically, so a failed or interrupted write leaves no file.
 * Numbers are printed with %.17g (they read back to the same double); NaN
 * and Inf, which JSON lacks, are null. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "lowbit/pipeline.h"

void lb_quantize_report_free(lb_quantize_report *r) {
    if (!r) return;
    lb_free(r->tensors);
    r->tensors = NULL;
}

static void put(lb_atomic_file *f, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void put(lb_atomic_file *f, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0) lb_atomic_write(f, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

static void put_num(lb_atomic_file *f, const char *key, double v, int comma) {
    if (isfinite(v)) put(f, "\"%s\": %.17g%s", key, v, comma ? ", " : "");
    else put(f, "\"%s\": null%s", key, comma ? ", " : "");
}

/* a JSON string: quotes, backslashes and control characters escaped */
static void put_str(lb_atomic_file *f, const char *key, const char *s) {
    put(f, "\"%s\": \"", key);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') put(f, "\\%c", *c);
        else if (*c < 0x20) put(f, "\\u%04x", *c);
        else lb_atomic_write(f, c, 1);
    }
    put(f, "\", ");
}

lb_status lb_quantize_report_save_json(const lb_quantize_report *r, const char *path) {
    if (r->tensors_quantized > 0 && !r->tensors)
        return lb_fail(LB_ERR_INVALID, "the quantize report has no per-tensor records to write");
    lb_atomic_file f;
    lb_status st = lb_atomic_open(&f, path);
    if (st != LB_OK) return st;
    /* totals: over the tensors that have each measure */
    double proxy = 0, proxy_rtn = 0, seconds = 0, weights = 0, bits = 0;
    int with_proxy = 0;
    for (int i = 0; i < r->tensors_quantized; i++) {
        const lb_tensor_report *t = &r->tensors[i];
        double w = (double)t->rows * (double)t->cols;
        weights += w;
        bits += t->bpw * w;
        seconds += t->seconds;
        if (isfinite(t->proxy_loss) && isfinite(t->proxy_loss_rtn)) {
            proxy += t->proxy_loss;
            proxy_rtn += t->proxy_loss_rtn;
            with_proxy++;
        }
    }
    put(&f, "{\"sequential\": %s, \"tensors_quantized\": %d, ", r->sequential ? "true" : "false",
        r->tensors_quantized);
    put_num(&f, "bpw", r->bpw, 1);
    put_num(&f, "bpw_all", r->bpw_all, 1);
    put_num(&f, "seconds", r->seconds, 1);
    put(&f, "\"totals\": {\"weights\": %.0f, ", weights);
    put_num(&f, "bpw", weights > 0 ? bits / weights : NAN, 1);
    put(&f, "\"tensors_with_proxy\": %d, ", with_proxy);
    put_num(&f, "proxy_loss", with_proxy ? proxy : NAN, 1);
    put_num(&f, "proxy_loss_rtn", with_proxy ? proxy_rtn : NAN, 1);
    put_num(&f, "seconds", seconds, 0);
    put(&f, "},\n\"tensors\": [");
    for (int i = 0; i < r->tensors_quantized; i++) {
        const lb_tensor_report *t = &r->tensors[i];
        char spec[64], opts[512];
        lb_qspec_format(&t->spec, spec, sizeof spec);
        if (t->opts.method) lb_method_opts_format(&t->opts, 1, opts, sizeof opts);
        else opts[0] = 0;
        put(&f, "%s\n  {", i ? "," : "");
        put_str(&f, "name", t->name);
        put_str(&f, "format", spec);
        put_str(&f, "method", t->opts.method ? t->opts.method->name : "");
        put_str(&f, "options", opts);
        put(&f, "\"rows\": %lld, \"cols\": %lld, ", (long long)t->rows, (long long)t->cols);
        put_num(&f, "bpw", t->bpw, 1);
        put_num(&f, "rel_error", t->rel_error, 1);
        put_num(&f, "proxy_loss", t->proxy_loss, 1);
        put_num(&f, "proxy_loss_rtn", t->proxy_loss_rtn, 1);
        put_num(&f, "damping", t->method.damping, 1);
        put_num(&f, "damping_rel", t->method.damping_rel, 1);
        put(&f, "\"damping_raises\": %d, \"dead_inputs\": %lld, ", t->method.damping_raises,
            (long long)t->method.dead_inputs);
        put_num(&f, "seconds", t->seconds, 0);
        put(&f, "}");
    }
    put(&f, "\n]}\n");
    return lb_atomic_commit(&f);
}
