/* The QAT schemes with learned parameters (src/train/qat.h; METHODS.md
 * sections 11, 14, 17). Each keeps its parameters in the trainer's extra
 * block (S->learned, gradients S->dlearned; AdamW without weight decay) and
 * writes its forward into the stored format's qtensor, so export is exact.
 *
 *   ttq      lut2: TTQ (Zhu et al. 2017). Threshold d = 0.05 max|w| per
 *            group (recomputed every step from the latent weights); learned
 *            Wp, Wn >= 0 per group: W_eff = Wp (w > d), -Wn (w < -d), 0.
 *            dL/dWp = sum over the positive set of dL/dW_eff, dL/dWn = -sum
 *            over the negative set; the latent gradient is dL/dW_eff scaled
 *            by Wp, 1 or Wn on the three sets. Stored as a lut2 codebook
 *            {-Wn, 0, Wp, Wp} (a 2-bit code holds three levels exactly).
 *   paretoq  a learned step alpha per group (ParetoQ, Liu et al. 2025):
 *              binary:    alpha sign(w)                       (1 bit)
 *              ternary:   alpha round(1.5 u) / 1.5            (SEQ, levels +-2/3, 0)
 *              int2 asym: alpha (round(2u - 0.5) + 0.5) / 2   (SEQ, levels +-1/4, +-3/4)
 *              int<b> sym: alpha clamp(round(w / alpha))      (LSQ)
 *            u = clamp(w / alpha, -0.99, 0.99). Gradients: the LSQ rule,
 *            d W_eff / d alpha = level - (w / alpha) inside the clip range,
 *            level outside, times LSQ's g = 1 / sqrt(n Qp) (n weights of the
 *            group, Qp its largest positive level count); the latent weight's
 *            STE passes inside the clip range only. alpha starts at mean|w|
 *            (1 bit), max|w| (ternary, 2-bit SEQ), max|w| / (2^(b-1) - 1) (LSQ).
 *   onebit   onebit: W_eff = diag(h) sign(W) diag(g) (OneBit, Xu et al.
 *            2024); h, g learned, started by SVID (lowbit's rtn for the
 *            onebit format: the rank-1 fit of |W|), the latent weights reset
 *            to 0.01 sign(W) as OneBit does; sign's backward 1.001 - tanh^2(w).
 *   e2eqp    EfficientQAT's phase 2, E2E-QP (Chen et al. 2024): the codes
 *            and zero points of a model already quantized (int<b>:g<G>,
 *            e.g. by --refine blockap) stay frozen, only the step sizes
 *            train, end to end. Learned: a factor f per group on the
 *            stored step d0 (and on the fp16 offset m0, so the real zero
 *            point -m0/d0 stays): W_eff = f W0, W0 the stored weights,
 *            so dL/df = sum over the group of dL/dW_eff W0 (exact up to
 *            the fp16 rounding of f d0, passed straight through). f starts
 *            at 1, so the first forward is the stored model. */
#include <math.h>
#include <string.h>

#include "train/qat.h"

#define TRY(expr)                     \
    do {                              \
        lb_status st_ = (expr);       \
        if (st_ != LB_OK) return st_; \
    } while (0)

static int64_t n_groups_of(const lb_qspec *spec, int rows, int cols) {
    lb_layout lay;
    if (lb_layout_compute(spec, rows, cols, &lay) != LB_OK) return 0;
    return lay.n_groups;
}

/* ---- ttq ------------------------------------------------------------------------- */

static lb_status ttq_check(const lb_qspec *spec) {
    char t[64];
    lb_qspec_format(spec, t, sizeof t);
    if (strcmp(lb_format_family_name(spec), "lut") || spec->bits != 2)
        return lb_fail(LB_ERR_INVALID,
                       "QAT scheme ttq writes a 2-bit lookup table holding {-Wn, 0, Wp} (lut2:tensor or lut2:row), "
                       "not %s",
                       t);
    return LB_OK;
}

static size_t ttq_n_learned(const lb_qspec *spec, int rows, int cols) {
    return 2 * (size_t)n_groups_of(spec, rows, cols);
}

/* per group: the threshold 0.05 max|w| into aux (n_groups) */
static lb_status ttq_thresholds(lb_qat_state *S) {
    double *cnt, *sum, *mx;
    TRY(lb_qat_group_stats(S, &cnt, &sum, &mx));
    for (int64_t k = 0; k < S->q.n_groups; k++) S->aux[k] = (float)(0.05 * mx[k]);
    lb_free(cnt);
    return LB_OK;
}

static lb_status ttq_init(lb_qat_state *S) {
    TRY(lb_qat_q_init(S));
    size_t ng = (size_t)S->q.n_groups;
    S->aux = lb_alloc(ng * sizeof(float));
    double *acc = lb_calloc(4 * ng, sizeof(double)); /* sum and count, positive then negative */
    if (!S->aux || !acc) {
        lb_free(acc);
        return lb_fail(LB_ERR_NOMEM, "out of memory");
    }
    lb_status st = ttq_thresholds(S);
    for (int r = 0; r < S->rows && st == LB_OK; r++)
        for (int c = 0; c < S->cols; c++) {
            int64_t k = lb_qtensor_group(&S->q, r, c);
            float w = S->L->w[(size_t)r * S->cols + c];
            if (w > S->aux[k]) acc[4 * k] += w, acc[4 * k + 1] += 1;
            else if (w < -S->aux[k]) acc[4 * k + 2] -= w, acc[4 * k + 3] += 1;
        }
    /* Wp, Wn start at the mean magnitude of their sets (the L2 fit for fixed sets) */
    for (size_t k = 0; k < ng; k++) {
        S->learned[2 * k] = acc[4 * k + 1] > 0 ? (float)(acc[4 * k] / acc[4 * k + 1]) : 0.0f;
        S->learned[2 * k + 1] = acc[4 * k + 3] > 0 ? (float)(acc[4 * k + 2] / acc[4 * k + 3]) : 0.0f;
    }
    lb_free(acc);
    return st;
}

static lb_status ttq_quantize(lb_qat_state *S) {
    TRY(ttq_thresholds(S));
    for (int64_t k = 0; k < S->q.n_groups; k++) {
        /* levels must ascend: a scale driven below 0 reads as 0 (its gradient still flows) */
        float wp = fmaxf(S->learned[2 * k], 0.0f), wn = fmaxf(S->learned[2 * k + 1], 0.0f);
        float *lut = S->q.lut + k * 4;
        lut[0] = -wn;
        lut[1] = 0.0f;
        lut[2] = wp;
        lut[3] = wp;
    }
    TRY(lb_qat_store_scales(S));
    for (int r = 0; r < S->rows; r++)
        for (int c = 0; c < S->cols; c++) {
            float w = S->L->w[(size_t)r * S->cols + c], d = S->aux[lb_qtensor_group(&S->q, r, c)];
            *lb_qat_code(S, r, c) = w > d ? 2 : w < -d ? 0 : 1;
        }
    return LB_OK;
}

static lb_status ttq_backward(lb_qat_state *S, const float *dweff) {
    for (int r = 0; r < S->rows; r++)
        for (int c = 0; c < S->cols; c++) {
            size_t i = (size_t)r * S->cols + c;
            int64_t k = lb_qtensor_group(&S->q, r, c);
            int code = *lb_qat_code(S, r, c);
            float wp = S->q.lut[k * 4 + 2], wn = -S->q.lut[k * 4];
            if (code == 2) {
                S->dlearned[2 * k] += dweff[i];
                S->L->dw[i] += wp * dweff[i];
            } else if (code == 0) {
                S->dlearned[2 * k + 1] -= dweff[i];
                S->L->dw[i] += wn * dweff[i];
            } else {
                S->L->dw[i] += dweff[i];
            }
        }
    return LB_OK;
}

const lb_qat_scheme lb_qat_ttq = {"ttq", "lut2: TTQ's learned asymmetric scales {-Wn, 0, Wp}, threshold 0.05 max|w|",
                                  ttq_check, ttq_n_learned, ttq_init, ttq_quantize, ttq_backward, NULL, 0};

/* ---- paretoq ---------------------------------------------------------------------- */

typedef enum { PQ_SIGN, PQ_SEQ3, PQ_SEQ4, PQ_LSQ } pq_mode;

static int pq_mode_of(const lb_qspec *spec, pq_mode *mode) {
    const char *f = lb_format_family_name(spec);
    if (!strcmp(f, "binary")) *mode = PQ_SIGN;
    else if (!strcmp(f, "ternary")) *mode = PQ_SEQ3;
    else if (spec->family == LB_FAMILY_UNIFORM && spec->bits == 2 && spec->zero == LB_ZERO_F16) *mode = PQ_SEQ4;
    else if (spec->family == LB_FAMILY_UNIFORM && spec->zero == LB_ZERO_SYM && spec->bits >= 2) *mode = PQ_LSQ;
    else return 0;
    return 1;
}

static lb_status paretoq_check(const lb_qspec *spec) {
    pq_mode m = PQ_SIGN;
    if (pq_mode_of(spec, &m)) return LB_OK;
    char t[64];
    lb_qspec_format(spec, t, sizeof t);
    return lb_fail(LB_ERR_INVALID,
                   "QAT scheme paretoq writes binary (1 bit), ternary (SEQ), int2 asym (2-bit SEQ, e.g. int2:row:asym) "
                   "or int<b> sym (LSQ, e.g. int3:row), not %s",
                   t);
}

/* one learned step per group (paretoq, e2eqp) */
static size_t per_group(const lb_qspec *spec, int rows, int cols) { return (size_t)n_groups_of(spec, rows, cols); }

static float pq_qp(const lb_qspec *spec, pq_mode m) {
    return m == PQ_LSQ ? (float)((1 << (spec->bits - 1)) - 1) : m == PQ_SEQ4 ? 2.0f : 1.0f;
}

static lb_status paretoq_init(lb_qat_state *S) {
    TRY(lb_qat_q_init(S));
    pq_mode m = PQ_SIGN;
    pq_mode_of(&S->spec, &m);
    double *cnt, *sum, *mx;
    TRY(lb_qat_group_stats(S, &cnt, &sum, &mx));
    for (int64_t k = 0; k < S->q.n_groups; k++) {
        double a = m == PQ_SIGN ? (cnt[k] > 0 ? sum[k] / cnt[k] : 0) : m == PQ_LSQ ? mx[k] / pq_qp(&S->spec, m) : mx[k];
        S->learned[k] = (float)(a > 0 ? a : 1e-6);
    }
    lb_free(cnt);
    return LB_OK;
}

/* the level (W_eff / alpha) of w and whether w / alpha is inside the clip range */
static float pq_level(pq_mode m, int bits, float v, int *inside) {
    switch (m) {
    case PQ_SIGN:
        *inside = 1;
        return v >= 0 ? 1.0f : -1.0f;
    case PQ_SEQ3:
    case PQ_SEQ4: {
        float u = fminf(fmaxf(v, -0.99f), 0.99f);
        *inside = fabsf(v) < 0.99f;
        return m == PQ_SEQ3 ? roundf(1.5f * u) / 1.5f : (roundf(2.0f * u - 0.5f) + 0.5f) / 2.0f;
    }
    case PQ_LSQ: {
        float lo = -(float)(1 << (bits - 1)), hi = (float)((1 << (bits - 1)) - 1);
        *inside = v >= lo && v <= hi;
        return fminf(fmaxf(roundf(v), lo), hi);
    }
    }
    return 0.0f;
}

static float pq_alpha(const lb_qat_state *S, int64_t k) { return fmaxf(S->learned[k], 1e-8f); }

static lb_status paretoq_quantize(lb_qat_state *S) {
    pq_mode m = PQ_SIGN;
    pq_mode_of(&S->spec, &m);
    for (int64_t k = 0; k < S->q.n_groups; k++) {
        float a = pq_alpha(S, k);
        S->q.scale[k] = m == PQ_SEQ3 ? a / 1.5f : m == PQ_SEQ4 ? a / 2.0f : a;
        if (m == PQ_SEQ4) S->q.offset[k] = -0.75f * a;
    }
    TRY(lb_qat_store_scales(S));
    int half = 1 << (S->spec.bits - 1);
    for (int r = 0; r < S->rows; r++)
        for (int c = 0; c < S->cols; c++) {
            float a = pq_alpha(S, lb_qtensor_group(&S->q, r, c));
            int inside;
            float lv = pq_level(m, S->spec.bits, S->L->w[(size_t)r * S->cols + c] / a, &inside);
            int code = m == PQ_SIGN ? lv > 0 : m == PQ_SEQ3 ? (int)lroundf(lv * 1.5f) + 1
                                         : m == PQ_SEQ4 ? (int)lroundf(lv * 2.0f - 0.5f) + 2
                                                        : (int)lroundf(lv) + half;
            *lb_qat_code(S, r, c) = (uint8_t)code;
        }
    return LB_OK;
}

static lb_status paretoq_backward(lb_qat_state *S, const float *dweff) {
    pq_mode m = PQ_SIGN;
    pq_mode_of(&S->spec, &m);
    double *cnt = lb_calloc((size_t)S->q.n_groups, sizeof(double));
    if (!cnt) return lb_fail(LB_ERR_NOMEM, "out of memory for the step sizes' gradient");
    for (int r = 0; r < S->rows; r++)
        for (int c = 0; c < S->cols; c++) cnt[lb_qtensor_group(&S->q, r, c)] += 1;
    float qp = pq_qp(&S->spec, m);
    for (int r = 0; r < S->rows; r++)
        for (int c = 0; c < S->cols; c++) {
            size_t i = (size_t)r * S->cols + c;
            int64_t k = lb_qtensor_group(&S->q, r, c);
            float a = pq_alpha(S, k), v = S->L->w[i] / a;
            int inside;
            float lv = pq_level(m, S->spec.bits, v, &inside);
            float g = (float)(1.0 / sqrt(cnt[k] * qp));
            float dlevel = m == PQ_SIGN ? lv : lv - (inside ? v : 0.0f);
            S->dlearned[k] += g * dlevel * dweff[i];
            if (inside) S->L->dw[i] += dweff[i];
        }
    lb_free(cnt);
    return LB_OK;
}

const lb_qat_scheme lb_qat_paretoq = {"paretoq",
                                      "learned step per group: sign (1 bit), SEQ (ternary, int2 asym), LSQ (int<b> sym)",
                                      paretoq_check, per_group, paretoq_init, paretoq_quantize,
                                      paretoq_backward, NULL, 0};

/* ---- onebit ----------------------------------------------------------------------- */

static lb_status onebit_check(const lb_qspec *spec) {
    if (!strcmp(lb_format_family_name(spec), "onebit")) return LB_OK;
    char t[64];
    lb_qspec_format(spec, t, sizeof t);
    return lb_fail(LB_ERR_INVALID, "QAT scheme onebit writes the onebit format (diag(h) sign(W) diag(g)), not %s", t);
}

static size_t onebit_n_learned(const lb_qspec *spec, int rows, int cols) {
    (void)spec;
    return (size_t)rows + (size_t)cols;
}

static lb_status onebit_init(lb_qat_state *S) {
    lb_rtn_opts o;
    lb_rtn_opts_default(&o);
    if (S->have_q) lb_qtensor_free(&S->q);
    S->have_q = 0;
    TRY(lb_rtn_quantize(S->L->w, S->rows, S->cols, &S->spec, &o, &S->q)); /* SVID */
    S->have_q = 1;
    float *h = S->learned, *g = S->learned + S->rows;
    for (int r = 0; r < S->rows; r++) h[r] = S->q.scale[lb_qtensor_group(&S->q, r, 0)];
    for (int c = 0; c < S->cols; c++) g[c] = S->q.col_scale[c];
    for (int r = 0; r < S->rows; r++)
        for (int c = 0; c < S->cols; c++) S->L->w[(size_t)r * S->cols + c] = *lb_qat_code(S, r, c) ? 0.01f : -0.01f;
    return LB_OK;
}

static lb_status onebit_quantize(lb_qat_state *S) {
    const float *h = S->learned, *g = S->learned + S->rows;
    for (int r = 0; r < S->rows; r++) S->q.scale[lb_qtensor_group(&S->q, r, 0)] = h[r];
    memcpy(S->q.col_scale, g, (size_t)S->cols * sizeof(float));
    TRY(lb_qat_store_scales(S));
    for (int r = 0; r < S->rows; r++)
        for (int c = 0; c < S->cols; c++) *lb_qat_code(S, r, c) = S->L->w[(size_t)r * S->cols + c] >= 0.0f;
    return LB_OK;
}

static lb_status onebit_backward(lb_qat_state *S, const float *dweff) {
    float *dh = S->dlearned, *dg = S->dlearned + S->rows;
    for (int r = 0; r < S->rows; r++) {
        float h = S->q.scale[lb_qtensor_group(&S->q, r, 0)];
        for (int c = 0; c < S->cols; c++) {
            size_t i = (size_t)r * S->cols + c;
            float s = *lb_qat_code(S, r, c) ? 1.0f : -1.0f, g = S->q.col_scale[c], d = dweff[i];
            float t = tanhf(S->L->w[i]);
            dh[r] += d * s * g;
            dg[c] += d * s * h;
            S->L->dw[i] += d * h * g * (1.001f - t * t);
        }
    }
    return LB_OK;
}

/* ---- e2eqp ------------------------------------------------------------------------- */

static lb_status e2eqp_check(const lb_qspec *spec) {
    if (spec->family == LB_FAMILY_UNIFORM && !spec->scale_bits && spec->group > 0) return LB_OK;
    char t[64];
    lb_qspec_format(spec, t, sizeof t);
    return lb_fail(LB_ERR_INVALID,
                   "QAT scheme e2eqp trains the step sizes of a model stored in int<b>:g<G> (fp16 scales, e.g. "
                   "quantized with --refine blockap), not %s",
                   t);
}

/* aux: d0 then m0 (n_groups each), the stored step and offset */
static lb_status e2eqp_init(lb_qat_state *S) {
    TRY(lb_qat_q_init(S));
    TRY(lb_qtensor_decode(&S->q, S->base->data, S->base->nbytes));
    int64_t n = S->q.n_groups;
    lb_free(S->aux);
    if (!(S->aux = lb_alloc(2 * (size_t)n * sizeof(float)))) return LB_ERR_NOMEM;
    for (int64_t k = 0; k < n; k++) {
        S->aux[k] = S->q.scale[k];
        S->aux[n + k] = S->q.offset ? S->q.offset[k] : 0.0f;
        S->learned[k] = 1.0f;
    }
    return LB_OK;
}

static lb_status e2eqp_quantize(lb_qat_state *S) {
    int64_t n = S->q.n_groups;
    for (int64_t k = 0; k < n; k++) {
        S->q.scale[k] = S->learned[k] * S->aux[k];
        if (S->q.offset) S->q.offset[k] = S->learned[k] * S->aux[n + k];
    }
    return lb_qat_store_scales(S); /* the codes are the stored ones */
}

static lb_status e2eqp_backward(lb_qat_state *S, const float *dweff) {
    for (int r = 0; r < S->rows; r++) {
        const float *w0 = S->L->w + (size_t)r * S->cols, *g = dweff + (size_t)r * S->cols;
        for (int c = 0; c < S->cols; c++) S->dlearned[lb_qtensor_group(&S->q, r, c)] += g[c] * w0[c];
    }
    return LB_OK;
}

const lb_qat_scheme lb_qat_e2eqp = {"e2eqp",
                                    "EfficientQAT's E2E-QP: a quantized MODEL's step sizes trained, codes frozen",
                                    e2eqp_check, per_group, e2eqp_init, e2eqp_quantize, e2eqp_backward, NULL, 1};

const lb_qat_scheme lb_qat_onebit = {"onebit", "onebit: diag(h) sign(W) diag(g), h and g learned from SVID",
                                     onebit_check, onebit_n_learned, onebit_init, onebit_quantize, onebit_backward,
                                     NULL, 0};
