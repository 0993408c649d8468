/* Fake-quantized linears for quantization-aware training (issue 9 items 2
 * and 7; docs/TRAINING.md "Quantization-aware training"): the linear that
 * runs a scheme (quantize the latent weight into the target format, decode,
 * GEMM; backward through the scheme's straight-through estimator), the
 * data-free schemes, int8 activations and 8-bit gradients, the extra
 * parameter block the learned scales live in, and the export into the real
 * stored format.
 *
 * Schemes here (the learned ones are in qat_schemes.c):
 *   ste            any stored format: Q(W) = lowbit's round-to-nearest of W
 *                  (lb_rtn_quantize), backward the identity (the plain STE)
 *   bwn, xnor      binary: alpha = mean|w| per group, W_eff = alpha sign(W),
 *                  XNOR-Net's gradient dW = dW_eff (1/n + alpha 1{|w| <= 1})
 *                  through alpha and sign (XNOR-Net's binarized inputs are not
 *                  built: xnor is its weight half, the same as bwn)
 *   binaryconnect  binary: sign(W) (deterministic, or stochastic with
 *                  P(+1) = hard_sigmoid(w / H)), the latent weights clipped to
 *                  [-H, H] after every step; the scale alpha is fixed at the
 *                  start (mean|w0| per group, H = max|w0|): BinaryConnect has
 *                  no scale because it trains from scratch at unit scale, a
 *                  pretrained model needs one
 *   twn            ternary: TWN's 0.7 mean|w| threshold, STE
 *   bitnet         ternary: BitNet b1.58's absmean rounding, STE, and int8
 *                  per-token absmax activations in every linear (BitLinear) */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "train/ops.h"
#include "train/qat.h"

#define TRY(expr)                     \
    do {                              \
        lb_status st_ = (expr);       \
        if (st_ != LB_OK) return st_; \
    } while (0)

/* ---- shared helpers ---------------------------------------------------------- */

lb_status lb_qat_q_init(lb_qat_state *S) {
    if (S->have_q) lb_qtensor_free(&S->q);
    S->have_q = 0;
    TRY(lb_qtensor_init(&S->q, &S->spec, S->rows, S->cols));
    S->have_q = 1;
    return LB_OK;
}

void lb_qat_decode(lb_qat_state *S) {
    for (int r = 0; r < S->rows; r++)
        for (int c = 0; c < S->cols; c++) S->weff[(size_t)r * S->cols + c] = lb_qtensor_value(&S->q, r, c);
}

lb_status lb_qat_store_scales(lb_qat_state *S) { return S->exact_scales ? LB_OK : lb_qtensor_store_scales(&S->q); }

static int64_t group_of(const lb_qat_state *S, int r, int c) { return lb_qtensor_group(&S->q, r, c); }

lb_status lb_qat_group_stats(lb_qat_state *S, double **count, double **sum_abs, double **max_abs) {
    size_t ng = (size_t)S->q.n_groups;
    double *block = lb_calloc(3 * ng, sizeof(double));
    if (!block) return lb_fail(LB_ERR_NOMEM, "out of memory for group statistics");
    *count = block;
    *sum_abs = block + ng;
    *max_abs = block + 2 * ng;
    for (int r = 0; r < S->rows; r++)
        for (int c = 0; c < S->cols; c++) {
            int64_t k = group_of(S, r, c);
            double a = fabs(S->L->w[(size_t)r * S->cols + c]);
            (*count)[k] += 1;
            (*sum_abs)[k] += a;
            if (a > (*max_abs)[k]) (*max_abs)[k] = a;
        }
    return LB_OK;
}


static lb_status need_family(const lb_qspec *spec, const char *family, const char *scheme, const char *example) {
    if (!strcmp(lb_format_family_name(spec), family)) return LB_OK;
    char t[64];
    lb_qspec_format(spec, t, sizeof t);
    return lb_fail(LB_ERR_INVALID, "QAT scheme %s writes the %s family (e.g. %s), not %s", scheme, family, example, t);
}

static size_t no_learned(const lb_qspec *spec, int rows, int cols) {
    (void)spec, (void)rows, (void)cols;
    return 0;
}

static lb_status no_init(lb_qat_state *S) { return lb_qat_q_init(S); }

static lb_status ste_backward(lb_qat_state *S, const float *dweff) {
    size_t n = (size_t)S->rows * S->cols;
    for (size_t i = 0; i < n; i++) S->L->dw[i] += dweff[i];
    return LB_OK;
}

/* ---- ste: round-to-nearest in any format ------------------------------------- */

static lb_status ste_check(const lb_qspec *spec) {
    if (lb_qspec_is_float(spec))
        return lb_fail(LB_ERR_INVALID, "QAT needs a quantized format, not a float one (f32, f16, bf16)");
    return LB_OK;
}

static lb_status rtn_into(lb_qat_state *S, lb_ternary_rule rule) {
    lb_rtn_opts o;
    lb_rtn_opts_default(&o);
    o.ternary_rule = rule;
    if (S->have_q) lb_qtensor_free(&S->q);
    S->have_q = 0;
    TRY(lb_rtn_quantize(S->L->w, S->rows, S->cols, &S->spec, &o, &S->q));
    S->have_q = 1;
    return LB_OK;
}

static lb_status ste_quantize(lb_qat_state *S) { return rtn_into(S, LB_TERNARY_ABSMEAN); }

static const lb_qat_scheme qat_ste = {"ste", "any format: round-to-nearest, straight-through estimator",
                                      ste_check, no_learned, no_init, ste_quantize, ste_backward, NULL, 0};

/* ---- bwn / xnor: alpha = mean|w| per group ------------------------------------ */

static lb_status binary_check(const lb_qspec *spec) { return need_family(spec, "binary", "bwn/binaryconnect", "binary:row"); }

static lb_status bwn_quantize(lb_qat_state *S) {
    double *cnt, *sum, *mx;
    TRY(lb_qat_group_stats(S, &cnt, &sum, &mx));
    for (int64_t k = 0; k < S->q.n_groups; k++) S->q.scale[k] = cnt[k] > 0 ? (float)(sum[k] / cnt[k]) : 0.0f;
    lb_free(cnt);
    TRY(lb_qat_store_scales(S));
    for (int r = 0; r < S->rows; r++)
        for (int c = 0; c < S->cols; c++) *lb_qat_code(S, r, c) = S->L->w[(size_t)r * S->cols + c] >= 0.0f;
    return LB_OK;
}

/* W_eff_i = alpha sign(w_i), alpha = (1/n) sum_j |w_j| over the group:
 * dL/dw_i = sign(w_i) (1/n) sum_j dW_eff_j sign(w_j) + alpha dW_eff_i 1{|w_i| <= 1}
 * (XNOR-Net eq. for the weights; sign's STE cancelled beyond 1) */
static lb_status bwn_backward(lb_qat_state *S, const float *dweff) {
    size_t ng = (size_t)S->q.n_groups;
    double *gs = lb_calloc(2 * ng, sizeof(double));
    if (!gs) return lb_fail(LB_ERR_NOMEM, "out of memory for the binary scales' gradient");
    double *cnt = gs + ng;
    const float *w = S->L->w;
    for (int r = 0; r < S->rows; r++)
        for (int c = 0; c < S->cols; c++) {
            size_t i = (size_t)r * S->cols + c;
            int64_t k = group_of(S, r, c);
            gs[k] += dweff[i] * (w[i] >= 0 ? 1.0 : -1.0);
            cnt[k] += 1;
        }
    for (int r = 0; r < S->rows; r++)
        for (int c = 0; c < S->cols; c++) {
            size_t i = (size_t)r * S->cols + c;
            int64_t k = group_of(S, r, c);
            double s = w[i] >= 0 ? 1.0 : -1.0;
            S->L->dw[i] += (float)(s * gs[k] / cnt[k] + (fabsf(w[i]) <= 1.0f ? S->q.scale[k] * dweff[i] : 0.0));
        }
    lb_free(gs);
    return LB_OK;
}

static const lb_qat_scheme qat_bwn = {"bwn", "binary: alpha = mean|w| per group, XNOR-Net's gradient",
                                      binary_check, no_learned, no_init, bwn_quantize, bwn_backward, NULL, 0};
static const lb_qat_scheme qat_xnor = {"xnor", "binary: XNOR-Net's weights (= bwn; inputs stay real)",
                                       binary_check, no_learned, no_init, bwn_quantize, bwn_backward, NULL, 0};

/* ---- binaryconnect: fixed alpha, clipped latent weights ------------------------- */

static lb_status bc_init(lb_qat_state *S) {
    TRY(lb_qat_q_init(S));
    size_t ng = (size_t)S->q.n_groups;
    S->aux = lb_alloc(2 * ng * sizeof(float)); /* alpha (ng), H (ng) */
    if (!S->aux) return lb_fail(LB_ERR_NOMEM, "out of memory");
    double *cnt, *sum, *mx;
    TRY(lb_qat_group_stats(S, &cnt, &sum, &mx));
    for (size_t k = 0; k < ng; k++) {
        S->aux[k] = cnt[k] > 0 ? (float)(sum[k] / cnt[k]) : 0.0f;
        S->aux[ng + k] = (float)mx[k];
    }
    lb_free(cnt);
    return LB_OK;
}

static lb_status bc_quantize(lb_qat_state *S) {
    memcpy(S->q.scale, S->aux, (size_t)S->q.n_groups * sizeof(float));
    TRY(lb_qat_store_scales(S));
    const float *H = S->aux + S->q.n_groups;
    for (int r = 0; r < S->rows; r++)
        for (int c = 0; c < S->cols; c++) {
            float w = S->L->w[(size_t)r * S->cols + c];
            int code = w >= 0.0f;
            float h = H[group_of(S, r, c)];
            if (S->stochastic && h > 0) {
                float p = fminf(fmaxf((w / h + 1.0f) * 0.5f, 0.0f), 1.0f); /* hard sigmoid */
                code = lb_rng_f32(S->rng) < p;
            }
            *lb_qat_code(S, r, c) = (uint8_t)code;
        }
    return LB_OK;
}

static lb_status bc_backward(lb_qat_state *S, const float *dweff) {
    const float *H = S->aux + S->q.n_groups;
    for (int r = 0; r < S->rows; r++)
        for (int c = 0; c < S->cols; c++) {
            size_t i = (size_t)r * S->cols + c;
            if (fabsf(S->L->w[i]) <= H[group_of(S, r, c)]) S->L->dw[i] += dweff[i];
        }
    return LB_OK;
}

static void bc_after_step(lb_qat_state *S) {
    const float *H = S->aux + S->q.n_groups;
    for (int r = 0; r < S->rows; r++)
        for (int c = 0; c < S->cols; c++) {
            float *w = &S->L->w[(size_t)r * S->cols + c], h = H[group_of(S, r, c)];
            *w = fminf(fmaxf(*w, -h), h);
        }
}

static const lb_qat_scheme qat_bc = {"binaryconnect",
                                     "binary: sign (--stochastic: hard-sigmoid sampling), clipped latent weights",
                                     binary_check, no_learned, bc_init, bc_quantize, bc_backward, bc_after_step, 0};

/* ---- twn, bitnet: ternary by lowbit's RTN rules --------------------------------- */

static lb_status ternary_check(const lb_qspec *spec) {
    return need_family(spec, "ternary", "twn/bitnet", "ternary:tensor");
}
static lb_status twn_quantize(lb_qat_state *S) { return rtn_into(S, LB_TERNARY_TWN); }

static const lb_qat_scheme qat_twn = {"twn", "ternary: TWN threshold 0.7 mean|w|, STE", ternary_check, no_learned,
                                      no_init, twn_quantize, ste_backward, NULL, 0};
static const lb_qat_scheme qat_bitnet = {"bitnet",
                                         "ternary: BitNet b1.58 absmean weights, int8 per-token activations, STE",
                                         ternary_check, no_learned, no_init, ste_quantize, ste_backward, NULL, 0};

/* ---- the table ------------------------------------------------------------------ */

static const lb_qat_scheme *const schemes[] = {&qat_ste,     &qat_bc, &qat_bwn,       &qat_xnor,
                                               &qat_twn,     &lb_qat_ttq,            &qat_bitnet,    &lb_qat_paretoq,
                                               &lb_qat_onebit, &lb_qat_e2eqp};
#define N_SCHEMES (int)(sizeof schemes / sizeof schemes[0])

const lb_qat_scheme *lb_qat_scheme_find(const char *name) {
    for (int i = 0; i < N_SCHEMES; i++)
        if (!strcmp(schemes[i]->name, name)) return schemes[i];
    return NULL;
}

void lb_qat_scheme_list(char *buf, size_t n, int names_only) {
    size_t at = 0;
    buf[0] = 0;
    for (int i = 0; i < N_SCHEMES && at < n; i++) {
        int w = names_only ? snprintf(buf + at, n - at, "%s%s", i ? ", " : "", schemes[i]->name)
                           : snprintf(buf + at, n - at, "  %-14s %s\n", schemes[i]->name, schemes[i]->summary);
        if (w < 0) break;
        at += (size_t)w;
    }
}

/* The format a scheme writes when --format is not given (ste has none: any format fits). */
const char *lb_qat_default_format(const char *scheme) {
    static const char *const map[][2] = {{"binaryconnect", "binary:row"}, {"bwn", "binary:row"},
                                         {"xnor", "binary:row"},          {"twn", "ternary:row"},
                                         {"bitnet", "ternary:tensor"},    {"ttq", "lut2:tensor"},
                                         {"paretoq", "int2:row:asym"},    {"onebit", "onebit"}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(map[i][0], scheme)) return map[i][1];
    return NULL;
}

const char *lb_qat_default_format_name(const char *scheme) {
    const char *f = lb_qat_default_format(scheme);
    return f ? f : "?";
}

int lb_qat_scheme_from_base(const char *scheme) {
    const lb_qat_scheme *s = scheme ? lb_qat_scheme_find(scheme) : NULL;
    return s && s->from_base;
}

/* ---- item 7: int8 activations, 8-bit gradients ------------------------------------ */

static lb_status quantize_input(lb_qat_state *S, const float *x, int N, const float **out) {
    *out = x;
    if (!S->act_bits) return LB_OK;
    size_t need = (size_t)N * S->cols;
    if (need > S->n_scratch_x) {
        lb_free(S->xq);
        S->xq = lb_alloc(need * sizeof(float));
        S->n_scratch_x = S->xq ? need : 0;
        if (!S->xq) return lb_fail(LB_ERR_NOMEM, "out of memory for quantized activations");
    }
    lb_act_quant a = {.kind = LB_AQ_TOKEN, .bits = S->act_bits};
    TRY(lb_act_quantize_rows(&a, x, N, S->cols, S->xq));
    *out = S->xq;
    return LB_OK;
}

/* dy (N, rows) to `grad_bits`-bit integers times an absmax scale per row
 * (one per token) or per tensor; nearest rounding, or stochastic (floor(v + u),
 * u uniform in [0, 1): unbiased) */
void lb_qat_quantize_grad(const float *dy, int N, int rows, int bits, int per_tensor, int stochastic, lb_rng *rng,
                          float *out) {
    float qmax = (float)((1 << (bits - 1)) - 1);
    float tmax = 0.0f;
    if (per_tensor)
        for (size_t i = 0; i < (size_t)N * rows; i++) tmax = fmaxf(tmax, fabsf(dy[i]));
    for (int n = 0; n < N; n++) {
        const float *d = dy + (size_t)n * rows;
        float *o = out + (size_t)n * rows, amax = tmax;
        if (!per_tensor)
            for (int j = 0; j < rows; j++) amax = fmaxf(amax, fabsf(d[j]));
        float s = amax / qmax;
        for (int j = 0; j < rows; j++) {
            if (!(s > 0)) {
                o[j] = 0.0f;
                continue;
            }
            float v = d[j] / s, q = stochastic ? floorf(v + lb_rng_f32(rng)) : roundf(v);
            o[j] = fminf(fmaxf(q, -qmax), qmax) * s;
        }
    }
}

/* ---- the fake-quantized linear ------------------------------------------------------ */

static lb_status qat_linear_forward(lb_train_linear *L, const float *x, int N, float *y) {
    lb_qat_state *S = L->state;
    const float *w = L->w, *xin;
    if (S->scheme) {
        TRY(S->scheme->quantize(S));
        lb_qat_decode(S);
        w = S->weff;
    }
    TRY(quantize_input(S, x, N, &xin));
    lb_train_matmul_forward(y, xin, w, N, L->cols, L->rows);
    return LB_OK;
}

static lb_status qat_linear_backward(lb_train_linear *L, const float *x, const float *dy, int N, float *dx) {
    lb_qat_state *S = L->state;
    const float *xin, *dyin = dy;
    TRY(quantize_input(S, x, N, &xin)); /* the forward's input again (deterministic) */
    if (S->grad_bits) {
        size_t need = (size_t)N * L->rows;
        if (need > S->n_scratch_dy) {
            lb_free(S->dyq);
            S->dyq = lb_alloc(need * sizeof(float));
            S->n_scratch_dy = S->dyq ? need : 0;
            if (!S->dyq) return lb_fail(LB_ERR_NOMEM, "out of memory for quantized gradients");
        }
        lb_qat_quantize_grad(dy, N, L->rows, S->grad_bits, S->grad_per_tensor, S->grad_stochastic, S->rng, S->dyq);
        dyin = S->dyq;
    }
    if (!S->scheme) {
        lb_train_matmul_backward(dx, L->dw, dyin, xin, L->w, N, L->cols, L->rows);
        return LB_OK;
    }
    memset(S->dweff, 0, (size_t)L->rows * L->cols * sizeof(float));
    lb_train_matmul_backward(dx, S->dweff, dyin, xin, S->weff, N, L->cols, L->rows);
    return S->scheme->backward(S, S->dweff);
}

const lb_train_linear_ops lb_train_linear_qat = {"qat", qat_linear_forward, qat_linear_backward};

/* ---- attaching schemes to a model, the parameter block, export ----------------------- */

void lb_qat_free(struct lb_qat *Q) {
    if (!Q) return;
    for (int i = 0; i < Q->n_states; i++) {
        lb_qat_state *S = &Q->states[i];
        if (S->have_q) lb_qtensor_free(&S->q);
        lb_free(S->weff);
        lb_free(S->dweff);
        lb_free(S->aux);
        lb_free(S->xq);
        lb_free(S->dyq);
    }
    lb_free(Q->states);
    lb_free(Q);
}

lb_status lb_qat_attach(lb_train_model *tm, const lb_qat_opts *o) {
    if (!o->scheme && !o->act_bits && !o->grad_bits) return LB_OK;
    const lb_qat_scheme *scheme = NULL;
    lb_qspec spec;
    memset(&spec, 0, sizeof spec);
    if (o->scheme) {
        scheme = lb_qat_scheme_find(o->scheme);
        if (!scheme) {
            char names[256];
            lb_qat_scheme_list(names, sizeof names, 1);
            return lb_fail(LB_ERR_INVALID, "unknown QAT scheme '%s' (known: %s)", o->scheme, names);
        }
        if (scheme->from_base) {
            if (o->format)
                return lb_fail(LB_ERR_INVALID, "QAT scheme %s keeps the model's stored formats: no --format", o->scheme);
            if (!o->base) return lb_fail(LB_ERR_INVALID, "QAT scheme %s trains a quantized model's step sizes", o->scheme);
        } else {
            const char *fmt = o->format ? o->format : lb_qat_default_format(o->scheme);
            if (!fmt) return lb_fail(LB_ERR_INVALID, "QAT scheme %s needs a format (--format SPEC)", o->scheme);
            lb_status ps = lb_qspec_parse(fmt, &spec);
            if (ps != LB_OK) return lb_fail_context(ps, "QAT format '%s'", fmt);
            TRY(scheme->check(&spec));
        }
    } else if (o->format) {
        return lb_fail(LB_ERR_INVALID, "a format (%s) without a QAT scheme: say which (--qat SCHEME)", o->format);
    }
    if (o->act_bits && (o->act_bits < 4 || o->act_bits > 8))
        return lb_fail(LB_ERR_INVALID, "activation bits must be 4..8 (or 0: off), not %d", o->act_bits);
    if (o->grad_bits && (o->grad_bits < 2 || o->grad_bits > 16))
        return lb_fail(LB_ERR_INVALID, "gradient bits must be 2..16 (or 0: off), not %d", o->grad_bits);
    int n = tm->cfg.n_layers * LB_N_LINEARS;
    struct lb_qat *Q = lb_calloc(1, sizeof *Q);
    if (!Q) return LB_ERR_NOMEM;
    Q->states = lb_calloc((size_t)n, sizeof *Q->states);
    if (!Q->states) {
        lb_free(Q);
        return LB_ERR_NOMEM;
    }
    Q->n_states = n;
    lb_rng_seed(&Q->rng, o->seed ^ 0x9a7ull);
    lb_status st = LB_OK;
    size_t n_learned = 0;
    for (int i = 0; i < n && st == LB_OK; i++) {
        lb_qat_state *S = &Q->states[i];
        lb_train_linear *L = &tm->linears[i];
        S->scheme = scheme;
        S->spec = spec;
        S->L = L;
        if (scheme && scheme->from_base) {
            S->base = &o->base->layers[i / LB_N_LINEARS].linear[i % LB_N_LINEARS].w;
            S->spec = S->base->spec;
            st = scheme->check(&S->spec);
            if (st != LB_OK) st = lb_fail_context(st, "%s", S->base->name);
        }
        S->rows = L->rows;
        S->cols = L->cols;
        /* BitLinear quantizes its inputs to int8 by definition */
        S->act_bits = o->act_bits ? o->act_bits : (scheme && !strcmp(scheme->name, "bitnet") ? 8 : 0);
        S->grad_bits = o->grad_bits;
        S->grad_per_tensor = o->grad_per_tensor;
        S->grad_stochastic = o->grad_stochastic;
        S->stochastic = o->stochastic;
        S->rng = &Q->rng;
        if (scheme && st == LB_OK) {
            size_t nw = (size_t)L->rows * L->cols;
            S->weff = lb_alloc(nw * sizeof(float));
            S->dweff = lb_alloc(nw * sizeof(float));
            if (!S->weff || !S->dweff) st = lb_fail(LB_ERR_NOMEM, "out of memory for fake-quantized weights");
            S->n_learned = scheme->n_learned(&S->spec, L->rows, L->cols);
            n_learned += S->n_learned;
        }
    }
    if (st == LB_OK) st = lb_train_extra_alloc(tm, n_learned, "qat.learned");
    size_t off = 0;
    for (int i = 0; i < n && st == LB_OK; i++) {
        lb_qat_state *S = &Q->states[i];
        if (S->n_learned) {
            S->learned = tm->extra.params + off;
            S->dlearned = tm->extra.grads + off;
            off += S->n_learned;
        }
        if (scheme) {
            st = scheme->init(S);
            if (st == LB_OK) st = scheme->quantize(S); /* the first forward's weights, readable at once */
            if (st == LB_OK) lb_qat_decode(S);
            if (st != LB_OK) st = lb_fail_context(st, "layer %d's %s", i / LB_N_LINEARS, lb_linear_name(i % LB_N_LINEARS));
        }
        S->L->ops = &lb_train_linear_qat;
        S->L->state = S;
    }
    if (st != LB_OK) {
        for (int i = 0; i < n; i++) {
            tm->linears[i].ops = &lb_train_linear_float;
            tm->linears[i].state = NULL;
        }
        lb_qat_free(Q);
        lb_train_extra_alloc(tm, 0, ""); /* releases the block */
        return st;
    }
    tm->qat = Q;
    if (scheme && scheme->from_base) tm->frozen = 1; /* only the extra block trains */
    return LB_OK;
}

void lb_qat_after_step(lb_train_model *tm) {
    if (!tm->qat) return;
    for (int i = 0; i < tm->qat->n_states; i++) {
        lb_qat_state *S = &tm->qat->states[i];
        if (S->scheme && S->scheme->after_step) S->scheme->after_step(S);
    }
}

lb_status lb_qat_store(lb_train_model *tm, lb_model *m) {
    if (!tm->qat) return LB_OK;
    for (int i = 0; i < tm->qat->n_states; i++) {
        lb_qat_state *S = &tm->qat->states[i];
        lb_linear *lin = &m->layers[i / LB_N_LINEARS].linear[i % LB_N_LINEARS];
        if (S->scheme) {
            int stochastic = S->stochastic;
            S->stochastic = 0; /* the deterministic weights are the model (BinaryConnect's test-time rule) */
            lb_status st = S->scheme->quantize(S);
            S->stochastic = stochastic;
            if (st != LB_OK) return st;
            lb_qat_decode(S); /* what the trainer's next forward uses too */
            lb_tensor t;
            memset(&t, 0, sizeof t);
            size_t total;
            TRY(lb_format_size(&S->spec, S->rows, S->cols, NULL, NULL, &total));
            uint8_t *bytes = lb_alloc(total);
            if (!bytes) return lb_fail(LB_ERR_NOMEM, "out of memory exporting %s", lin->w.name);
            st = lb_qtensor_encode(&S->q, bytes);
            if (st != LB_OK) {
                lb_free(bytes);
                return lb_fail_context(st, "exporting %s", lin->w.name);
            }
            snprintf(t.name, sizeof t.name, "%s", lin->w.name);
            t.spec = S->spec;
            t.rows = S->rows;
            t.cols = S->cols;
            t.data = t.owned = bytes;
            t.nbytes = total;
            st = lb_tensor_resolve(&t);
            if (st == LB_OK) st = lb_linear_set_weight(lin, &t);
            if (st != LB_OK) {
                lb_free(bytes);
                return lb_fail_context(st, "exporting %s", lin->w.name);
            }
        }
        if (S->act_bits) {
            lb_act_quant a = {.kind = LB_AQ_TOKEN, .bits = S->act_bits};
            TRY(lb_linear_set_act(lin, &a));
        }
    }
    return LB_OK;
}
