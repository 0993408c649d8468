/* Activation quantization of a linear's input: the spec text, its checks,
 * and the simulated quantizer lb_linear_forward applies to x' (after the
 * input scale and rotation, before the matmul).
 *
 * Symmetric b-bit integers, levels -qmax..qmax with qmax = 2^(b-1) - 1
 * (the level -2^(b-1) is not used, so the grid is symmetric about 0 and
 * +-clip are both levels: the convention of SmoothQuant's fake_quant.py and
 * of per-token absmax int8 in BitNet, METHODS.md s4 and the BitNet section).
 * Dynamic per-token: delta = max|x'_row| / qmax, recomputed for every row
 * of every call, nothing stored. Static per-tensor: delta = clip / qmax
 * with clip chosen from calibration statistics (src/calib/act_range.c),
 * values beyond +-clip saturate.
 *
 * This is the reference path: quantize, dequantize back to float, then the
 * weight's ordinary kernel. Integer kernels that consume the int8 codes
 * directly come later and must match it. Rounding is roundf (half away
 * from zero) on x / delta, a division, not a multiply by 1/delta, so the
 * codes are the exact nearest levels. Every row is one thread's work:
 * results do not depend on the thread count. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lowbit/linear.h"

static const char *const rule_names[] = {"minmax", "p", "kl", "mse"};

#define ACT_SPEC_HELP \
    "expected none, int<b>:token or int<b>:tensor[:minmax|:p<P>|:kl|:mse] (b = 4..8 bits, P a percentile in 50..100 " \
    "with at most 4 decimals, e.g. int8:token, int8:tensor:p99.99)"

/* "99.99": digits, at most 3 before the point and 4 after; 50 <= P <= 100 */
static int parse_percentile(const char *s, double *out) {
    int before = 0, after = 0, dot = 0;
    for (const char *p = s; *p; p++) {
        if (*p == '.') {
            if (dot++) return 0;
        } else if (*p >= '0' && *p <= '9') {
            if (dot) after++;
            else before++;
        } else {
            return 0;
        }
    }
    if (before < 1 || before > 3 || after > 4 || (dot && after == 0)) return 0;
    double v = strtod(s, NULL);
    if (!(v >= 50.0 && v <= 100.0)) return 0;
    *out = v;
    return 1;
}

lb_status lb_act_spec_parse(const char *text, lb_act_quant *out) {
    lb_act_quant a;
    memset(&a, 0, sizeof a);
    if (!text) return lb_fail(LB_ERR_INVALID, "activation spec: none given; " ACT_SPEC_HELP);
    size_t len = strlen(text);
    if (len == 0 || len > 63) return lb_fail(LB_ERR_INVALID, "activation spec '%.80s': %s", text, ACT_SPEC_HELP);
    if (!strcmp(text, "none")) {
        *out = a;
        return LB_OK;
    }
    char buf[64];
    memcpy(buf, text, len + 1);
    char *parts[4];
    int n = 0;
    for (char *p = buf;;) {
        if (n == 4) return lb_fail(LB_ERR_INVALID, "activation spec '%s': too many parts; %s", text, ACT_SPEC_HELP);
        parts[n++] = p;
        char *colon = strchr(p, ':');
        if (!colon) break;
        *colon = 0;
        p = colon + 1;
    }
    /* int<b> */
    if (strncmp(parts[0], "int", 3) || strlen(parts[0]) != 4 || parts[0][3] < '4' || parts[0][3] > '8')
        return lb_fail(LB_ERR_INVALID, "activation spec '%s': '%s' is not int4..int8; %s", text, parts[0], ACT_SPEC_HELP);
    a.bits = parts[0][3] - '0';
    if (n < 2) return lb_fail(LB_ERR_INVALID, "activation spec '%s': say token or tensor; %s", text, ACT_SPEC_HELP);
    if (!strcmp(parts[1], "token")) {
        a.kind = LB_AQ_TOKEN;
        if (n > 2)
            return lb_fail(LB_ERR_INVALID, "activation spec '%s': dynamic per-token scales need no range rule ('%s'); %s",
                           text, parts[2], ACT_SPEC_HELP);
    } else if (!strcmp(parts[1], "tensor")) {
        a.kind = LB_AQ_TENSOR;
        const char *r = n > 2 ? parts[2] : "minmax";
        if (n > 3) return lb_fail(LB_ERR_INVALID, "activation spec '%s': too many parts; %s", text, ACT_SPEC_HELP);
        if (!strcmp(r, "minmax")) a.rule = LB_ACT_RANGE_MINMAX;
        else if (!strcmp(r, "kl")) a.rule = LB_ACT_RANGE_KL;
        else if (!strcmp(r, "mse")) a.rule = LB_ACT_RANGE_MSE;
        else if (r[0] == 'p' && parse_percentile(r + 1, &a.percentile)) a.rule = LB_ACT_RANGE_PERCENTILE;
        else
            return lb_fail(LB_ERR_INVALID, "activation spec '%s': unknown range rule '%s'; %s", text, r, ACT_SPEC_HELP);
    } else {
        return lb_fail(LB_ERR_INVALID, "activation spec '%s': '%s' is neither token nor tensor; %s", text, parts[1],
                       ACT_SPEC_HELP);
    }
    *out = a;
    return LB_OK;
}

void lb_act_spec_format(const lb_act_quant *a, char *buf, size_t n) {
    if (!n) return;
    if (a->kind == LB_AQ_TOKEN) {
        snprintf(buf, n, "int%d:token", a->bits);
    } else if (a->kind == LB_AQ_TENSOR) {
        char rule[32];
        if (a->rule == LB_ACT_RANGE_PERCENTILE) {
            /* at most 4 decimals were accepted: %.4f reproduces them exactly */
            snprintf(rule, sizeof rule, "p%.4f", a->percentile);
            char *end = rule + strlen(rule);
            while (end[-1] == '0') *--end = 0;
            if (end[-1] == '.') *--end = 0;
        } else {
            snprintf(rule, sizeof rule, "%s", (unsigned)a->rule < 4 ? rule_names[a->rule] : "?");
        }
        snprintf(buf, n, "int%d:tensor:%s", a->bits, rule);
    } else {
        snprintf(buf, n, "none");
    }
}

lb_status lb_act_check(const lb_act_quant *a, int need_clip) {
    if (a->kind == LB_AQ_NONE) return LB_OK;
    if (a->kind != LB_AQ_TOKEN && a->kind != LB_AQ_TENSOR)
        return lb_fail(LB_ERR_INVALID, "activation quantizer of unknown kind %d", (int)a->kind);
    if (a->bits < 4 || a->bits > 8)
        return lb_fail(LB_ERR_INVALID, "activation quantizer with %d bits (4..8 allowed)", a->bits);
    if (a->kind == LB_AQ_TOKEN) return LB_OK;
    if ((unsigned)a->rule > LB_ACT_RANGE_MSE)
        return lb_fail(LB_ERR_INVALID, "activation quantizer with unknown range rule %d", (int)a->rule);
    if (a->rule == LB_ACT_RANGE_PERCENTILE && !(a->percentile >= 50.0 && a->percentile <= 100.0))
        return lb_fail(LB_ERR_INVALID, "activation percentile %g outside 50..100", a->percentile);
    if (need_clip && !(isfinite(a->clip) && a->clip > 0.0f))
        return lb_fail(isfinite(a->clip) ? LB_ERR_INVALID : LB_ERR_NUMERIC,
                       "static activation quantizer with clip %g (must be finite and > 0: calibrate it)",
                       (double)a->clip);
    return LB_OK;
}

/* one row: delta > 0 */
static void qdq_row(const float *x, float *out, int cols, float delta, float qmax) {
    for (int j = 0; j < cols; j++) {
        float q = roundf(x[j] / delta);
        q = q > qmax ? qmax : q < -qmax ? -qmax : q;
        out[j] = q * delta;
    }
}

lb_status lb_act_quantize_rows(const lb_act_quant *a, const float *x, int n, int cols, float *out) {
    lb_status st = lb_act_check(a, 1);
    if (st != LB_OK) return st;
    if (n < 0 || cols < 1) return lb_fail(LB_ERR_INVALID, "activation quantizer: %d rows of %d columns", n, cols);
    size_t total = (size_t)n * (size_t)cols;
    if (a->kind == LB_AQ_NONE) {
        if (out != x) memmove(out, x, total * sizeof(float));
        return LB_OK;
    }
    float qmax = (float)((1 << (a->bits - 1)) - 1);
#pragma omp parallel for schedule(static) if (total > 65536)
    for (int i = 0; i < n; i++) {
        const float *xr = x + (size_t)i * cols;
        float *yr = out + (size_t)i * cols;
        float delta;
        if (a->kind == LB_AQ_TOKEN) {
            float amax = 0.0f;
            for (int j = 0; j < cols; j++) amax = fmaxf(amax, fabsf(xr[j]));
            delta = amax / qmax;
        } else {
            delta = a->clip / qmax;
        }
        if (delta > 0.0f && isfinite(delta)) qdq_row(xr, yr, cols, delta, qmax);
        else if (yr != xr) memmove(yr, xr, (size_t)cols * sizeof(float)); /* all zeros (or not finite: left to fail later) */
    }
    return LB_OK;
}
