/* Calibration statistics as a GGUF file (docs/CALIBRATION.md):
 *
 *   lowbit.calib.version          u32 1
 *   lowbit.calib.model.dim, .hidden_dim, .n_layers, .vocab_size, .kv_dim  u32
 *   lowbit.calib.tokens, .sequences   u64
 *   lowbit.calib.parts            u32 LB_STATS_* bits present
 *   lowbit.calib.hist_bins        u32
 *   lowbit.calib.source           string
 *   lowbit.calib.n                u64 array, one per input (layer-major)
 *   lowbit.calib.hist_range       f64 array, one per input
 * and per layer L and input NAME (attn_in, attn_out, ffn_in, ffn_hidden):
 *   calib.blk.L.NAME.xtx      F64 (cols, cols)
 *   calib.blk.L.NAME.mean_abs F32 (cols)     .max_abs F32 (cols)
 *   calib.blk.L.NAME.mean     F32 (cols)     .hist    I64 (hist_bins)
 * (only the parts present), and with LB_STATS_GRAD_SQ (version 2; fisher.c)
 * per layer L and linear NAME (attn_q, ..., ffn_up):
 *   calib.blk.L.NAME.grad_sq  F32 (cols, rows): mean squared gradient per weight, finite, >= 0
 * Loading checks every key, type and shape, and
 * that values are finite, n >= 0, |mean| <= mean_abs <= max_abs (within
 * rounding), hist counts n * cols, and the xtx diagonal is >= 0.
 * lb_calib_stats_load copies every array; lb_calib_stats_open checks the
 * same but leaves X^T X and the squared gradients in the file's mapping,
 * whose pages lb_calib_stats_release_layer gives back a layer at a time
 * (docs/SCALING.md, "Streaming"). Values are used as stored, in place or
 * copied: the file is little-endian and so is the host (CMake checks; a
 * big-endian host is not supported). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "calib_internal.h"
#include "core/mapped.h"
#include "io/gguf_internal.h"
#include "lowbit/gguf.h"

#define CALIB_VERSION 2 /* 2: squared gradients (files without them are still written as 1) */

static void tensor_name(char *buf, size_t n, int layer, int input, const char *part) {
    snprintf(buf, n, "calib.blk.%d.%s.%s", layer, lb_calib_input_name(input), part);
}

static void grad_name(char *buf, size_t n, int k) {
    snprintf(buf, n, "calib.blk.%d.%s.grad_sq", k / LB_N_LINEARS, lb_linear_name(k % LB_N_LINEARS));
}

/* linear k's squared gradients: present with its shape (dst NULL; *at, when
 * given, is where its data is), or copied (dst) and checked */
static lb_status read_grad(const lb_gguf *g, const lb_calib_stats *s, int k, float *dst, const void **at) {
    int rows, cols;
    lb_calib_linear_shape(s, k % LB_N_LINEARS, &rows, &cols);
    char name[96];
    grad_name(name, sizeof name, k);
    const lb_gguf_tensor *t = lb_gguf_find_tensor(g, name);
    if (!t) return lb_fail(LB_ERR_FORMAT, "tensor %s is missing", name);
    if (t->type != LB_GGML_F32 || t->n_dims != 2 || t->ne[0] != (uint64_t)cols || t->ne[1] != (uint64_t)rows ||
        t->nbytes != (size_t)rows * cols * 4)
        return lb_fail(LB_ERR_FORMAT, "tensor %s has the wrong type or shape (want F32 %d x %d)", name, cols, rows);
    if (at) *at = t->data;
    if (!dst) return LB_OK;
    if ((const void *)dst != t->data) memcpy(dst, t->data, t->nbytes); /* equal: read in place (lb_calib_stats_open) */
    for (size_t j = 0; j < (size_t)rows * cols; j++)
        if (!(dst[j] >= 0.0f) || !isfinite(dst[j])) {
            lb_map_release(t->data, t->nbytes);
            return lb_fail(LB_ERR_FORMAT, "tensor %s entry %zu is %g (squared gradients are finite and >= 0)", name, j,
                           (double)dst[j]);
        }
    lb_map_release(t->data, t->nbytes); /* a mapped file's pages: read again from the file when needed */
    return LB_OK;
}

lb_status lb_calib_stats_writer(const lb_calib_stats *s, lb_gguf_writer *w, lb_gguf_tensor_fill fill,
                                lb_calib_fill_ref *refs) {
    const lb_calib_info *i = &s->info;
    size_t n_in = (size_t)i->n_layers * LB_CALIB_N_INPUTS;
    uint64_t *ns = lb_calloc(n_in, sizeof *ns);
    double *ranges = lb_calloc(n_in, sizeof *ranges);
    lb_status st = ns && ranges ? LB_OK : LB_ERR_NOMEM;
    for (size_t k = 0; k < n_in && st == LB_OK; k++) {
        ns[k] = (uint64_t)s->in[k].n;
        ranges[k] = s->in[k].hist_range;
    }
    if (st == LB_OK) st = lb_gguf_set_str(w, "general.architecture", "lowbit-calib");
    int has_g = s->grad_sq && (i->parts & LB_STATS_GRAD_SQ);
    if (st == LB_OK) st = lb_gguf_set_u32(w, "lowbit.calib.version", has_g ? 2 : 1);
    if (st == LB_OK) st = lb_gguf_set_u32(w, "lowbit.calib.model.dim", (uint32_t)i->dim);
    if (st == LB_OK) st = lb_gguf_set_u32(w, "lowbit.calib.model.hidden_dim", (uint32_t)i->hidden_dim);
    if (st == LB_OK) st = lb_gguf_set_u32(w, "lowbit.calib.model.n_layers", (uint32_t)i->n_layers);
    if (st == LB_OK) st = lb_gguf_set_u32(w, "lowbit.calib.model.vocab_size", (uint32_t)i->vocab_size);
    if (st == LB_OK) st = lb_gguf_set_u32(w, "lowbit.calib.model.kv_dim", (uint32_t)s->kv_dim);
    if (st == LB_OK) st = lb_gguf_set_u64(w, "lowbit.calib.tokens", (uint64_t)i->tokens);
    if (st == LB_OK) st = lb_gguf_set_u64(w, "lowbit.calib.sequences", (uint64_t)i->sequences);
    /* the file has no place for (x_fp - x) x^T (sequential calibration's, never saved) */
    if (st == LB_OK)
        st = lb_gguf_set_u32(w, "lowbit.calib.parts", (i->parts & LB_CALIB_ALL_PARTS) | (has_g ? LB_STATS_GRAD_SQ : 0));
    if (st == LB_OK) st = lb_gguf_set_u32(w, "lowbit.calib.hist_bins", (uint32_t)i->hist_bins);
    if (st == LB_OK) st = lb_gguf_set_str(w, "lowbit.calib.source", i->source);
    if (st == LB_OK) st = lb_gguf_set_arr(w, "lowbit.calib.n", LB_GGUF_UINT64, ns, n_in);
    if (st == LB_OK) st = lb_gguf_set_arr(w, "lowbit.calib.hist_range", LB_GGUF_FLOAT64, ranges, n_in);
    for (size_t k = 0; k < n_in && st == LB_OK; k++) {
        const calib_input *c = &s->in[k];
        int layer = (int)(k / LB_CALIB_N_INPUTS), input = (int)(k % LB_CALIB_N_INPUTS);
        uint64_t cols = (uint64_t)c->cols, sq[2] = {cols, cols}, bins = (uint64_t)i->hist_bins;
        char name[96];
        struct { const char *part; const void *data; unsigned bit; int type; uint32_t dims; const uint64_t *ne; size_t bytes; } t[] = {
            [LB_CALIB_PART_XTX] = {"xtx", c->xtx, LB_STATS_XTX, GGML_F64, 2, sq, cols * cols * 8},
            [LB_CALIB_PART_MEAN_ABS] = {"mean_abs", c->mean_abs_x, LB_STATS_MEAN_ABS_X, LB_GGML_F32, 1, &cols, cols * 4},
            [LB_CALIB_PART_MAX_ABS] = {"max_abs", c->max_abs_x, LB_STATS_MAX_ABS_X, LB_GGML_F32, 1, &cols, cols * 4},
            [LB_CALIB_PART_MEAN] = {"mean", c->mean_x, LB_STATS_MEAN_X, LB_GGML_F32, 1, &cols, cols * 4},
            [LB_CALIB_PART_HIST] = {"hist", c->hist, LB_STATS_HIST_X, GGML_I64, 1, &bins, bins * 8},
        };
        for (int j = 0; j < LB_CALIB_N_PARTS && st == LB_OK; j++) {
            tensor_name(name, sizeof name, layer, input, t[j].part);
            if (!fill) {
                if (t[j].data) st = lb_gguf_add_tensor(w, name, t[j].type, t[j].dims, t[j].ne, t[j].data, t[j].bytes);
            } else if (i->parts & t[j].bit) { /* made while the file is written */
                lb_calib_fill_ref *r = &refs[k * LB_CALIB_N_PARTS + (size_t)j];
                r->input = (int)k;
                r->part = j;
                st = lb_gguf_add_tensor_fill(w, name, t[j].type, t[j].dims, t[j].ne, t[j].bytes, fill, r);
            }
        }
    }
    for (int k = 0; has_g && k < i->n_layers * LB_N_LINEARS && st == LB_OK; k++) {
        int rows, cols;
        lb_calib_linear_shape(s, k % LB_N_LINEARS, &rows, &cols);
        uint64_t ne[2] = {(uint64_t)cols, (uint64_t)rows};
        char name[96];
        grad_name(name, sizeof name, k);
        st = lb_gguf_add_tensor(w, name, LB_GGML_F32, 2, ne, s->grad_sq[k], (size_t)rows * cols * 4);
    }
    lb_free(ns);
    lb_free(ranges);
    return st;
}

lb_status lb_calib_stats_save(const lb_calib_stats *s, const char *path) {
    lb_gguf_writer *w = NULL;
    lb_status st = lb_gguf_writer_create(&w);
    if (st == LB_OK) st = lb_calib_stats_writer(s, w, NULL, NULL);
    if (st == LB_OK) st = lb_gguf_write(w, path);
    lb_gguf_writer_free(w);
    if (st != LB_OK) return lb_fail_context(st, "writing calibration statistics '%s'", path);
    return LB_OK;
}

static lb_status get_dim(const lb_gguf *g, const char *key, int lo, int hi, int *out) {
    uint32_t v;
    if (lb_gguf_get_u32(g, key, &v) != LB_OK) return lb_fail(LB_ERR_FORMAT, "missing or bad key %s", key);
    if (v < (uint32_t)lo || v > (uint32_t)hi) return lb_fail(LB_ERR_FORMAT, "%s = %u outside %d..%d", key, v, lo, hi);
    *out = (int)v;
    return LB_OK;
}

/* The tensor `part` of input k, checked for type and shape, copied into dst
 * (dst NULL: only checked; *at, when given, is where its data is). */
static lb_status read_tensor(const lb_gguf *g, int layer, int input, const char *part, int type, uint64_t ne0,
                             uint32_t dims, void *dst, size_t bytes, const void **at) {
    char name[96];
    tensor_name(name, sizeof name, layer, input, part);
    const lb_gguf_tensor *t = lb_gguf_find_tensor(g, name);
    if (!t) return lb_fail(LB_ERR_FORMAT, "tensor %s is missing", name);
    if (t->type != type || t->n_dims != dims || t->ne[0] != ne0 || (dims == 2 && t->ne[1] != ne0) ||
        t->nbytes != bytes)
        return lb_fail(LB_ERR_FORMAT, "tensor %s has the wrong type or shape (want %s, %llu%s)", name,
                       type == GGML_F64 ? "F64" : type == GGML_I64 ? "I64" : "F32", (unsigned long long)ne0,
                       dims == 2 ? " x the same" : "");
    if (at) *at = t->data;
    if (dst) {
        memcpy(dst, t->data, bytes);
        lb_map_release(t->data, bytes); /* a mapped file's pages: the copy is what stays */
    }
    return LB_OK;
}

/* [*lo, *hi): the bytes of layer's inputs' tensors in g's data (every
 * tensor present: checked before) */
static void layer_span(const lb_gguf *g, int layer, const uint8_t **lo, const uint8_t **hi) {
    static const char *const parts[LB_CALIB_N_PARTS] = {"xtx", "mean_abs", "max_abs", "mean", "hist"};
    *lo = *hi = NULL;
    for (int input = 0; input < LB_CALIB_N_INPUTS; input++)
        for (int j = 0; j < LB_CALIB_N_PARTS; j++) {
            char name[96];
            tensor_name(name, sizeof name, layer, input, parts[j]);
            const lb_gguf_tensor *t = lb_gguf_find_tensor(g, name);
            if (!t) continue; /* a part the file does not have */
            const uint8_t *a = t->data, *b = a + t->nbytes;
            if (!*lo || a < *lo) *lo = a;
            if (!*hi || b > *hi) *hi = b;
        }
}

static lb_status check_input(const calib_input *c, int bins, int layer, int input) {
    const char *nm = lb_calib_input_name(input);
    size_t cols = (size_t)c->cols;
    for (size_t j = 0; j < cols; j++) {
        float ma = c->mean_abs_x ? c->mean_abs_x[j] : 0, mx = c->max_abs_x ? c->max_abs_x[j] : INFINITY;
        float me = c->mean_x ? c->mean_x[j] : 0;
        if (!isfinite(ma) || !isfinite(me) || isnan(mx) || (c->max_abs_x && !isfinite(mx)) || ma < 0 ||
            ma > mx * 1.0001f + 1e-30f || fabsf(me) > (c->mean_abs_x ? ma * 1.0001f + 1e-30f : INFINITY))
            return lb_fail(LB_ERR_FORMAT, "layer %d %s channel %zu: inconsistent statistics (mean %g, mean |x| %g, "
                           "max |x| %g)", layer, nm, j, (double)me, (double)ma, (double)mx);
    }
    if (c->xtx)
        for (size_t a = 0; a < cols * cols; a++)
            if (!isfinite(c->xtx[a]) || (a % (cols + 1) == 0 && c->xtx[a] < 0))
                return lb_fail(LB_ERR_FORMAT, "layer %d %s: x^T x entry %zu is %g", layer, nm, a, c->xtx[a]);
    if (c->hist) {
        if (!(c->hist_range >= 0) || !isfinite(c->hist_range))
            return lb_fail(LB_ERR_FORMAT, "layer %d %s: bad histogram range %g", layer, nm, c->hist_range);
        if (c->hist_range > 0) {
            int e;
            if (frexp(c->hist_range, &e) != 0.5)
                return lb_fail(LB_ERR_FORMAT, "layer %d %s: histogram range %g is not a power of two", layer, nm,
                               c->hist_range);
        }
        uint64_t total = 0;
        for (int b = 0; b < bins; b++) {
            if (c->hist[b] < 0 || (uint64_t)c->hist[b] > UINT64_MAX / 2 - total)
                return lb_fail(LB_ERR_FORMAT, "layer %d %s: bad histogram count in bin %d", layer, nm, b);
            total += (uint64_t)c->hist[b];
        }
        if (total != (uint64_t)c->n * cols)
            return lb_fail(LB_ERR_FORMAT, "layer %d %s: the histogram counts %llu values, not n x cols = %llu",
                           layer, nm, (unsigned long long)total, (unsigned long long)c->n * cols);
    }
    return LB_OK;
}

/* in_place: X^T X and the squared gradients are left where g's tensors are
 * (the caller keeps the data mapped as long as the statistics live,
 * lb_calib_stats_open), each checked and its pages given back; only
 * arrays aligned for their type are (a file's general.alignment may be
 * smaller than 8), the others copied. 0: everything copied. */
static lb_status parse(const lb_gguf *g, int in_place, lb_calib_stats **out) {
    uint32_t version, parts;
    uint64_t tokens, sequences;
    lb_calib_info info;
    memset(&info, 0, sizeof info);
    int kv_dim = 0;
    if (lb_gguf_get_u32(g, "lowbit.calib.version", &version) != LB_OK)
        return lb_fail(LB_ERR_FORMAT, "not a calibration statistics file (no lowbit.calib.version)");
    if (version < 1 || version > CALIB_VERSION)
        return lb_fail(LB_ERR_UNSUPPORTED, "calibration statistics version %u (this lowbit reads %d)", version,
                       CALIB_VERSION);
    lb_status st;
    if ((st = get_dim(g, "lowbit.calib.model.dim", 1, 1 << 20, &info.dim)) ||
        (st = get_dim(g, "lowbit.calib.model.hidden_dim", 1, 1 << 20, &info.hidden_dim)) ||
        (st = get_dim(g, "lowbit.calib.model.n_layers", 1, 4096, &info.n_layers)) ||
        (st = get_dim(g, "lowbit.calib.model.vocab_size", 1, 1 << 24, &info.vocab_size)) ||
        (st = get_dim(g, "lowbit.calib.model.kv_dim", 1, 1 << 20, &kv_dim)) ||
        (st = get_dim(g, "lowbit.calib.hist_bins", 4, 65536, &info.hist_bins)))
        return st;
    if (info.hist_bins % 4) return lb_fail(LB_ERR_FORMAT, "lowbit.calib.hist_bins %d is not a multiple of 4", info.hist_bins);
    uint32_t known = LB_CALIB_ALL_PARTS | (version >= 2 ? LB_STATS_GRAD_SQ : 0);
    if (lb_gguf_get_u32(g, "lowbit.calib.parts", &parts) != LB_OK || !parts || (parts & ~known))
        return lb_fail(LB_ERR_FORMAT, "missing or bad lowbit.calib.parts");
    if (lb_gguf_get_u64(g, "lowbit.calib.tokens", &tokens) != LB_OK ||
        lb_gguf_get_u64(g, "lowbit.calib.sequences", &sequences) != LB_OK || tokens > INT64_MAX / 2 ||
        sequences > tokens)
        return lb_fail(LB_ERR_FORMAT, "missing or bad lowbit.calib.tokens / sequences");
    info.parts = parts;
    info.tokens = (int64_t)tokens;
    info.sequences = (int64_t)sequences;
    const char *src;
    size_t src_len = 0;
    if (lb_gguf_get_str(g, "lowbit.calib.source", &src, &src_len) == LB_OK)
        snprintf(info.source, sizeof info.source, "%.*s", (int)(src_len < 511 ? src_len : 511), src);
    for (size_t k = 0; k < src_len && k < 511; k++)
        if (info.source[k] == '\0') info.source[k] = '?';
    size_t n_in = (size_t)info.n_layers * LB_CALIB_N_INPUTS;
    lb_gguf_type et;
    uint64_t cnt;
    const uint8_t *ns, *ranges;
    if (lb_gguf_get_arr(g, "lowbit.calib.n", &et, &cnt, &ns) != LB_OK || et != LB_GGUF_UINT64 || cnt != n_in)
        return lb_fail(LB_ERR_FORMAT, "lowbit.calib.n: want %zu u64 values", n_in);
    if (lb_gguf_get_arr(g, "lowbit.calib.hist_range", &et, &cnt, &ranges) != LB_OK || et != LB_GGUF_FLOAT64 ||
        cnt != n_in)
        return lb_fail(LB_ERR_FORMAT, "lowbit.calib.hist_range: want %zu f64 values", n_in);
    /* every tensor present with its shape before anything is allocated: the
     * sizes the keys claim are then bounded by the file's own bytes */
    unsigned mapped = in_place ? (unsigned)(LB_STATS_XTX | LB_STATS_GRAD_SQ) : 0;
    for (size_t k = 0; k < n_in; k++) {
        int layer = (int)(k / LB_CALIB_N_INPUTS), input = (int)(k % LB_CALIB_N_INPUTS);
        size_t cols = (size_t)(input == LB_CALIB_FFN_HIDDEN ? info.hidden_dim : info.dim);
        const void *at = NULL;
        if (((parts & LB_STATS_XTX) &&
             (st = read_tensor(g, layer, input, "xtx", GGML_F64, cols, 2, NULL, cols * cols * 8, &at))) ||
            ((parts & LB_STATS_MEAN_ABS_X) &&
             (st = read_tensor(g, layer, input, "mean_abs", LB_GGML_F32, cols, 1, NULL, cols * 4, NULL))) ||
            ((parts & LB_STATS_MAX_ABS_X) &&
             (st = read_tensor(g, layer, input, "max_abs", LB_GGML_F32, cols, 1, NULL, cols * 4, NULL))) ||
            ((parts & LB_STATS_MEAN_X) &&
             (st = read_tensor(g, layer, input, "mean", LB_GGML_F32, cols, 1, NULL, cols * 4, NULL))) ||
            ((parts & LB_STATS_HIST_X) && (st = read_tensor(g, layer, input, "hist", GGML_I64,
                                                            (uint64_t)info.hist_bins, 1, NULL,
                                                            (size_t)info.hist_bins * 8, NULL))))
            return st;
        if ((uintptr_t)at % _Alignof(double)) mapped &= ~(unsigned)LB_STATS_XTX;
    }
    if (!(parts & LB_STATS_XTX)) mapped &= ~(unsigned)LB_STATS_XTX;
    if (!(parts & LB_STATS_GRAD_SQ)) mapped &= ~(unsigned)LB_STATS_GRAD_SQ;
    lb_calib_stats *s;
    /* the squared gradients allocated below, once checked; X^T X not at all when read in place */
    info.parts = parts & ~(uint32_t)LB_STATS_GRAD_SQ & ~(mapped & LB_STATS_XTX);
    if ((st = lb_calib_alloc(&info, kv_dim, &s))) return st;
    s->info.parts = parts & ~(uint32_t)LB_STATS_GRAD_SQ;
    s->mapped_parts = mapped & LB_STATS_XTX; /* so that a failure below frees none of the file's arrays */
    int n_lin = info.n_layers * LB_N_LINEARS;
    if (mapped && !(s->span = lb_calloc((size_t)info.n_layers * 2, sizeof *s->span))) st = LB_ERR_NOMEM;
    for (int l = 0; s->span && l < info.n_layers; l++) layer_span(g, l, &s->span[2 * l], &s->span[2 * l + 1]);
    for (int k = 0; (parts & LB_STATS_GRAD_SQ) && k < n_lin && st == LB_OK; k++) {
        const void *at = NULL;
        st = read_grad(g, s, k, NULL, &at);
        if ((uintptr_t)at % _Alignof(float)) mapped &= ~(unsigned)LB_STATS_GRAD_SQ;
    }
    if (st == LB_OK && (mapped & LB_STATS_GRAD_SQ)) {
        if (!(s->grad_sq = lb_calloc((size_t)n_lin, sizeof *s->grad_sq))) st = LB_ERR_NOMEM;
        s->mapped_parts |= LB_STATS_GRAD_SQ;
        s->info.parts |= LB_STATS_GRAD_SQ;
        for (int k = 0; k < n_lin && st == LB_OK; k++) {
            const void *at = NULL;
            if ((st = read_grad(g, s, k, NULL, &at)) == LB_OK) {
                s->grad_sq[k] = (float *)(uintptr_t)at; /* read-only: lb_calib_stats_open says so */
                st = read_grad(g, s, k, s->grad_sq[k], NULL);
            }
        }
    } else if (st == LB_OK && (parts & LB_STATS_GRAD_SQ)) {
        st = lb_calib_alloc_grad_sq(s);
        for (int k = 0; k < n_lin && st == LB_OK; k++) st = read_grad(g, s, k, s->grad_sq[k], NULL);
    }
    for (size_t k = 0; k < n_in && st == LB_OK; k++) {
        calib_input *c = &s->in[k];
        int layer = (int)(k / LB_CALIB_N_INPUTS), input = (int)(k % LB_CALIB_N_INPUTS);
        uint64_t n;
        memcpy(&n, ns + 8 * k, 8);
        memcpy(&c->hist_range, ranges + 8 * k, 8);
        if (n != tokens) {
            st = lb_fail(LB_ERR_FORMAT, "layer %d %s saw %llu tokens, not lowbit.calib.tokens = %llu", layer,
                         lb_calib_input_name(input), (unsigned long long)n, (unsigned long long)tokens);
            break;
        }
        c->n = (int64_t)n;
        size_t cols = (size_t)c->cols;
        size_t xtx_bytes = cols * cols * 8;
        if (s->mapped_parts & LB_STATS_XTX) {
            const void *at = NULL;
            st = read_tensor(g, layer, input, "xtx", GGML_F64, cols, 2, NULL, xtx_bytes, &at);
            c->xtx = (double *)(uintptr_t)at; /* read-only: lb_calib_stats_open says so */
        } else if (c->xtx) {
            st = read_tensor(g, layer, input, "xtx", GGML_F64, cols, 2, c->xtx, xtx_bytes, NULL);
        }
        if (st == LB_OK && c->mean_abs_x)
            st = read_tensor(g, layer, input, "mean_abs", LB_GGML_F32, cols, 1, c->mean_abs_x, cols * 4, NULL);
        if (st == LB_OK && c->max_abs_x)
            st = read_tensor(g, layer, input, "max_abs", LB_GGML_F32, cols, 1, c->max_abs_x, cols * 4, NULL);
        if (st == LB_OK && c->mean_x)
            st = read_tensor(g, layer, input, "mean", LB_GGML_F32, cols, 1, c->mean_x, cols * 4, NULL);
        if (st == LB_OK && c->hist)
            st = read_tensor(g, layer, input, "hist", GGML_I64, (uint64_t)info.hist_bins, 1, c->hist,
                             (size_t)info.hist_bins * 8, NULL);
        if (st == LB_OK) st = check_input(c, info.hist_bins, layer, input);
        /* checked in place: its pages go back, read again from the file when a tensor needs them */
        if (s->mapped_parts & LB_STATS_XTX) lb_map_release(c->xtx, xtx_bytes);
    }
    if (st != LB_OK) {
        lb_calib_stats_free(s);
        return st;
    }
    lb_calib_link(s);
    *out = s;
    return LB_OK;
}

static lb_status from_memory(const uint8_t *data, size_t size, const lb_model *m, int in_place,
                             lb_calib_stats **out) {
    *out = NULL;
    lb_gguf *g;
    lb_status st = lb_gguf_parse(data, size, &g);
    if (st != LB_OK) return st;
    lb_calib_stats *s = NULL;
    st = parse(g, in_place, &s);
    lb_gguf_free(g);
    if (st == LB_OK && m && (st = lb_calib_stats_check(s, m)) != LB_OK) {
        lb_calib_stats_free(s);
        s = NULL;
    }
    *out = s;
    return st;
}

lb_status lb_calib_stats_from_memory(const uint8_t *data, size_t size, const lb_model *m, lb_calib_stats **out) {
    return from_memory(data, size, m, 0, out);
}

/* path mapped and parsed (in_place: as lb_calib_stats_open); the mapping
 * goes to the statistics when their arrays point into it, else is undone */
static lb_status map_and_parse(const char *path, const lb_model *m, int in_place, lb_calib_stats **out) {
    *out = NULL;
    lb_mapped_file f;
    lb_status st = lb_map_file(path, &f);
    if (st != LB_OK) return st;
    /* a file read into memory (no mmap) is copied as by load: its buffer then goes */
    st = from_memory(f.data, f.size, m, in_place && f.is_mapped, out);
    if (st == LB_OK && (*out)->mapped_parts) (*out)->map = f; /* unmapped by lb_calib_stats_free */
    else lb_unmap_file(&f);
    if (st != LB_OK)
        return lb_fail_context(st, "%s calibration statistics '%s'", in_place ? "opening" : "loading", path);
    return LB_OK;
}

lb_status lb_calib_stats_load(const char *path, const lb_model *m, lb_calib_stats **out) {
    return map_and_parse(path, m, 0, out);
}

lb_status lb_calib_stats_open(const char *path, const lb_model *m, lb_calib_stats **out) {
    return map_and_parse(path, m, 1, out);
}

lb_status lb_calib_stats_parse_in_place(const uint8_t *data, size_t size, const lb_model *m, lb_calib_stats **out) {
    return from_memory(data, size, m, 1, out);
}

void lb_calib_stats_release_layer(const lb_calib_stats *s, int layer) {
    if (!s || !s->mapped_parts || !s->span || layer < 0 || layer >= s->info.n_layers) return;
    /* X^T X and whatever the reads faulted in around it */
    lb_map_release(s->span[2 * layer], (size_t)(s->span[2 * layer + 1] - s->span[2 * layer]));
    for (int w = 0; (s->mapped_parts & LB_STATS_GRAD_SQ) && w < LB_N_LINEARS; w++) {
        int rows, cols;
        lb_calib_linear_shape(s, w, &rows, &cols);
        lb_map_release(s->grad_sq[layer * LB_N_LINEARS + w], (size_t)rows * (size_t)cols * sizeof(float));
    }
}
