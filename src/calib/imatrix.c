/* llama.cpp's importance matrix ("imatrix", tools/imatrix) both ways
 * (issue 10 item 5; docs/CALIBRATION.md, "imatrix"):
 *
 * GGUF form (what llama-imatrix writes by default and llama-quantize
 * --imatrix reads): keys general.type = "imatrix", imatrix.datasets (string
 * array), imatrix.chunk_count and imatrix.chunk_size (u32), and per linear
 * weight NAME (blk.L.attn_q.weight, ...) two F32 tensors:
 *   NAME.in_sum2  (cols, 1): sum over the calibration tokens of x_j^2, the
 *                 diagonal of X^T X
 *   NAME.counts   (1, 1):    the tokens
 * Legacy .dat form (read only): i32 n_entries, then per entry i32 length,
 * the name, i32 ncall, i32 nval, nval f32 values = (sum / count) * ncall;
 * then optionally i32 last_call, i32 length and the dataset name.
 *
 * lowbit's statistics carry the whole X^T X; an imatrix keeps its diagonal.
 * So an imatrix read here becomes statistics with LB_STATS_XTX only, the
 * off-diagonal entries 0: GPTQ under a diagonal H is round-to-nearest with
 * each input's error weighted by its mean square (with weighted_grid=1 the
 * grid search is weighted too), which is how llama-quantize uses it. A
 * legacy file's values are mean squares times calls: its n is the calls
 * (the token count is not stored), so diag / n is still the mean square.
 * Linears that share an input (q, k, v; gate, up) carry the same values in
 * both forms; reading takes the first present and checks the others agree
 * within float rounding. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "calib_internal.h"
#include "lowbit/gguf.h"

#define IMATRIX_CHUNK 512 /* imatrix.chunk_size written: llama-imatrix's default context */

static void weight_name(char *buf, size_t n, int layer, int which, const char *suffix) {
    snprintf(buf, n, "blk.%d.%s.weight%s", layer, lb_linear_name(which), suffix);
}

lb_status lb_calib_stats_save_imatrix(const lb_calib_stats *s, const char *path) {
    const lb_calib_info *info = &s->info;
    if (!(info->parts & LB_STATS_XTX))
        return lb_fail(LB_ERR_INVALID, "an imatrix needs X^T X's diagonal: these statistics have no xtx");
    lb_gguf_writer *w = NULL;
    lb_status st = lb_gguf_writer_create(&w);
    const char *datasets[1] = {info->source};
    if (st == LB_OK) st = lb_gguf_set_str(w, "general.type", "imatrix");
    size_t dlen[1] = {strlen(info->source)};
    if (st == LB_OK) st = lb_gguf_set_arr_str(w, "imatrix.datasets", datasets, dlen, 1);
    if (st == LB_OK)
        st = lb_gguf_set_u32(w, "imatrix.chunk_count", (uint32_t)((info->tokens + IMATRIX_CHUNK - 1) / IMATRIX_CHUNK));
    if (st == LB_OK) st = lb_gguf_set_u32(w, "imatrix.chunk_size", IMATRIX_CHUNK);
    /* the writer keeps pointers to the data until it writes: one buffer for all */
    int n_lin = info->n_layers * LB_N_LINEARS, widest = info->dim > info->hidden_dim ? info->dim : info->hidden_dim;
    float *sum2 = lb_alloc((size_t)n_lin * (size_t)widest * sizeof(float)), *count = lb_alloc((size_t)n_lin * sizeof(float));
    if ((!sum2 || !count) && st == LB_OK) st = LB_ERR_NOMEM;
    for (int k = 0; k < n_lin && st == LB_OK; k++) {
        int layer = k / LB_N_LINEARS, which = k % LB_N_LINEARS;
        /* what the methods see: the linear's view of its input */
        const lb_layer_stats *ls = lb_calib_stats_get(s, layer, which);
        float *v = sum2 + (size_t)k * (size_t)widest;
        count[k] = (float)ls->n_samples;
        for (int j = 0; j < ls->cols; j++) v[j] = (float)ls->xtx[(size_t)j * (size_t)ls->cols + (size_t)j];
        char name[128];
        uint64_t ne[2] = {(uint64_t)ls->cols, 1}, one[2] = {1, 1};
        weight_name(name, sizeof name, layer, which, ".in_sum2");
        st = lb_gguf_add_tensor(w, name, LB_GGML_F32, 2, ne, v, (size_t)ls->cols * 4);
        weight_name(name, sizeof name, layer, which, ".counts");
        if (st == LB_OK) st = lb_gguf_add_tensor(w, name, LB_GGML_F32, 2, one, &count[k], 4);
    }
    if (st == LB_OK) st = lb_gguf_write(w, path);
    lb_gguf_writer_free(w);
    lb_free(sum2);
    lb_free(count);
    if (st != LB_OK) return lb_fail_context(st, "writing the imatrix '%s'", path);
    return LB_OK;
}

/* ---- reading ------------------------------------------------------------------ */

/* One linear's entry: mean squares (nval = cols) and the n they are over. */
typedef struct {
    const char *name;
    size_t name_len;
    const uint8_t *values; /* f32, little-endian, possibly unaligned */
    int64_t nval;
    double n;     /* tokens (GGUF) or calls (legacy) */
} entry;

static float rd_f32(const uint8_t *p) {
    uint32_t u = lb_rd32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Parses the legacy .dat form into up to cap entries (pointing into data). */
static lb_status parse_legacy(const uint8_t *data, size_t size, entry *e, int cap, int *n_out) {
    size_t at = 0;
#define NEED(k, what)                                                                                                  \
    if ((k) > size - at)                                                                                               \
        return lb_fail(LB_ERR_FORMAT, "imatrix (legacy .dat): truncated in %s at byte %zu", what, at);
    NEED(4, "the entry count");
    int32_t n = (int32_t)lb_rd32(data);
    at = 4;
    if (n < 1 || n > cap) return lb_fail(LB_ERR_FORMAT, "imatrix (legacy .dat): %d entries (1..%d expected)", n, cap);
    for (int i = 0; i < n; i++) {
        NEED(4, "a name length");
        int32_t len = (int32_t)lb_rd32(data + at);
        at += 4;
        if (len < 1 || len > 1024) return lb_fail(LB_ERR_FORMAT, "imatrix (legacy .dat): entry %d has a name of %d bytes", i, len);
        NEED((size_t)len + 8, "an entry's name and counts");
        e[i].name = (const char *)data + at;
        e[i].name_len = (size_t)len;
        at += (size_t)len;
        int32_t ncall = (int32_t)lb_rd32(data + at), nval = (int32_t)lb_rd32(data + at + 4);
        at += 8;
        if (ncall < 1 || nval < 1 || nval > (1 << 24))
            return lb_fail(LB_ERR_FORMAT, "imatrix (legacy .dat): entry %d: %d calls, %d values", i, ncall, nval);
        NEED((size_t)nval * 4, "an entry's values");
        e[i].values = data + at;
        e[i].nval = nval;
        e[i].n = ncall;
        at += (size_t)nval * 4;
    }
#undef NEED
    *n_out = n; /* the trailing chunk count and dataset name are not needed */
    return LB_OK;
}

/* The GGUF form's NAME.in_sum2 / NAME.counts pairs (one matrix each). */
static lb_status parse_gguf(const lb_gguf *g, entry *e, int cap, int *n_out) {
    const char *type;
    size_t tl;
    if (lb_gguf_get_str(g, "general.type", &type, &tl) == LB_OK && (tl != 7 || memcmp(type, "imatrix", 7)))
        return lb_fail(LB_ERR_FORMAT, "this GGUF file is a '%.*s', not an imatrix", (int)(tl > 64 ? 64 : tl), type);
    int n = 0;
    for (int64_t i = 0; i < lb_gguf_n_tensors(g); i++) {
        const lb_gguf_tensor *t = lb_gguf_tensor_at(g, i);
        size_t len = t->name_len;
        if (len <= 8 || len > 200 || memcmp(t->name + len - 8, ".in_sum2", 8)) continue;
        char tname[256], cname[256];
        snprintf(tname, sizeof tname, "%.*s", (int)len, t->name);
        snprintf(cname, sizeof cname, "%.*s.counts", (int)(len - 8), t->name);
        const lb_gguf_tensor *c = lb_gguf_find_tensor(g, cname);
        if (!c) return lb_fail(LB_ERR_FORMAT, "imatrix: '%s' has no '%s'", tname, cname);
        if (t->type != LB_GGML_F32 || c->type != LB_GGML_F32 || t->n_dims > 2 || c->n_dims > 2 ||
            (t->n_dims == 2 && t->ne[1] != 1) || c->ne[0] != 1 || (c->n_dims == 2 && c->ne[1] != 1))
            return lb_fail(LB_ERR_FORMAT,
                           "imatrix: '%s' / '%s' must be F32 with one matrix (mixture-of-experts entries are not "
                           "read)", tname, cname);
        if (n == cap) return lb_fail(LB_ERR_FORMAT, "imatrix: more than %d entries", cap);
        e[n].name = t->name;
        e[n].name_len = len - 8;
        e[n].values = t->data;
        e[n].nval = (int64_t)t->ne[0];
        e[n].n = rd_f32(c->data);
        n++;
    }
    if (n == 0) return lb_fail(LB_ERR_FORMAT, "this GGUF file is not an imatrix (no NAME.in_sum2 tensors)");
    *n_out = n;
    return LB_OK;
}

static const entry *find_entry(const entry *e, int n, int layer, int which) {
    char name[128];
    weight_name(name, sizeof name, layer, which, "");
    for (int i = 0; i < n; i++)
        if (e[i].name_len == strlen(name) && !memcmp(e[i].name, name, e[i].name_len)) return &e[i];
    return NULL;
}

/* Fills input `input` of layer `layer` from the first entry of its linears;
 * every other present one must agree (the same input seen by llama.cpp). */
static lb_status fill_input(calib_input *c, const entry *e, int n, int layer, int input) {
    const entry *first = NULL;
    for (int which = 0; which < LB_N_LINEARS; which++) {
        if (lb_calib_input_of(which) != input) continue;
        const entry *x = find_entry(e, n, layer, which);
        if (!x) continue;
        if (x->nval != c->cols)
            return lb_fail(LB_ERR_INVALID, "imatrix: blk.%d.%s.weight has %lld values, the model's input has %d",
                           layer, lb_linear_name(which), (long long)x->nval, c->cols);
        if (!(x->n > 0) || !isfinite(x->n))
            return lb_fail(LB_ERR_INVALID, "imatrix: blk.%d.%s.weight saw no calibration tokens (count %g)", layer,
                           lb_linear_name(which), x->n);
        for (int64_t j = 0; j < x->nval; j++) {
            float v = rd_f32(x->values + 4 * j);
            if (!isfinite(v) || v < 0)
                return lb_fail(LB_ERR_INVALID, "imatrix: blk.%d.%s.weight value %lld is %g (finite, >= 0 expected)",
                               layer, lb_linear_name(which), (long long)j, (double)v);
            double mean = v / x->n; /* a sum over n tokens, or a mean square times n calls */
            if (first) {
                double want = c->xtx[(size_t)j * (size_t)c->cols + (size_t)j] / (double)c->n;
                if (fabs(mean - want) > 1e-5 * fmax(fabs(want), 1e-30) + 1e-30)
                    return lb_fail(LB_ERR_INVALID, "imatrix: blk.%d.%s.weight disagrees with %.*s, which reads the "
                                   "same input (value %lld)", layer, lb_linear_name(which), (int)first->name_len,
                                   first->name, (long long)j);
            } else {
                c->xtx[(size_t)j * (size_t)c->cols + (size_t)j] = v;
            }
        }
        if (!first) {
            first = x;
            c->n = (int64_t)llround(x->n);
            if (c->n < 1) c->n = 1;
            /* keep diag / n the mean square when n was rounded */
            double f = (double)c->n / x->n;
            for (int j = 0; j < c->cols; j++) c->xtx[(size_t)j * (size_t)c->cols + (size_t)j] *= f;
        }
    }
    if (!first)
        return lb_fail(LB_ERR_INVALID, "imatrix: no entry for layer %d's %s input (blk.%d.%s.weight, ...)", layer,
                       lb_calib_input_name(input), layer,
                       lb_linear_name(input == LB_CALIB_ATTN_IN ? LB_WQ : input == LB_CALIB_ATTN_OUT ? LB_WO
                                      : input == LB_CALIB_FFN_IN ? LB_W1 : LB_W2));
    return LB_OK;
}

lb_status lb_calib_stats_imatrix_from_memory(const uint8_t *data, size_t size, const lb_model *m,
                                             lb_calib_stats **out) {
    *out = NULL;
    const lb_config *cfg = &m->cfg;
    int cap = cfg->n_layers * LB_N_LINEARS * 4 + 16; /* room for other tensors' entries too */
    entry *e = lb_calloc((size_t)cap, sizeof *e);
    if (!e) return LB_ERR_NOMEM;
    lb_gguf *g = NULL;
    int n = 0;
    lb_status st;
    if (size >= 4 && !memcmp(data, "GGUF", 4)) {
        st = lb_gguf_parse(data, size, &g);
        if (st == LB_OK) st = parse_gguf(g, e, cap, &n);
    } else {
        st = parse_legacy(data, size, e, cap, &n);
    }
    lb_calib_info info = {.dim = cfg->dim, .hidden_dim = cfg->hidden_dim, .n_layers = cfg->n_layers,
                          .vocab_size = cfg->vocab_size, .parts = LB_STATS_XTX, .hist_bins = 0};
    snprintf(info.source, sizeof info.source, "a llama.cpp imatrix (%s form)", g ? "GGUF" : "legacy .dat");
    lb_calib_stats *s = NULL;
    if (st == LB_OK) st = lb_calib_alloc(&info, cfg->n_kv_heads * cfg->head_dim, &s);
    for (int k = 0; st == LB_OK && k < cfg->n_layers * LB_CALIB_N_INPUTS; k++)
        st = fill_input(&s->in[k], e, n, k / LB_CALIB_N_INPUTS, k % LB_CALIB_N_INPUTS);
    if (st == LB_OK) {
        s->info.tokens = s->in[0].n;
        s->info.sequences = 0;
        lb_calib_link(s);
        *out = s;
    } else {
        lb_calib_stats_free(s);
    }
    lb_gguf_free(g);
    lb_free(e);
    return st;
}

lb_status lb_calib_stats_load_imatrix(const char *path, const lb_model *m, lb_calib_stats **out) {
    *out = NULL;
    char *data;
    size_t size;
    lb_status st = lb_read_file(path, &data, &size);
    if (st != LB_OK) return st;
    st = lb_calib_stats_imatrix_from_memory((const uint8_t *)data, size, m, out);
    lb_free(data);
    if (st != LB_OK) return lb_fail_context(st, "reading the imatrix '%s'", path);
    return LB_OK;
}
