/* HQQ, Half-Quadratic Quantization (Badri & Shaji 2023, mobiusml/hqq;
 * METHODS.md s6): calibration-free.
 *
 * Objective, per group with its scale s from the min-max range:
 *   min over the zero (optionally the scale) of ||W - Q^-1(Q(W))||_p^p, p < 1,
 * a sparsity-promoting loss that lets a few outliers keep large errors so the
 * grid fits the bulk. Half-quadratic splitting adds an error variable W_e with
 * W - Q^-1(Q(W)) = W_e, and alternates, with beta growing by kappa each step:
 *   1. codes q = nearest grid point of W, W_r = Q^-1(q)
 *   2. W_e = shrink_lp(W - W_r, beta) = sign(d) relu(|d| - |d|^(p-1) / beta)
 *      (the generalized soft threshold; p = 1 is plain soft thresholding)
 *   3. the grid in closed form: least squares of W - W_e on the codes. HQQ's
 *      zero update z = mean(q - (W - W_e) / s) in its w = s (q - z) form is,
 *      with our fp16 offset m = -s z (w = s q + m), m = mean(W - W_e - s q).
 *   4. beta *= kappa
 * Defaults are the reference's: p = 0.7, beta = 10, kappa = 1.01, 20
 * iterations, early stop as soon as an iteration's error does not improve.
 * Initialization: the RTN min-max grid (lb_rtn_quantize, clip=minmax).
 *
 * Per zero kind:
 *   asym, fp16 offset   the reference: m updated, s fixed (scale=auto);
 *                       scale=update fits s and m jointly by least squares
 *   asym, int zero      z must be an integer in 0..2^b-1; with s fixed it only
 *                       slides the window of 2^b lattice points s k, so
 *                       scale=auto updates s and m jointly, then z =
 *                       round(-m / s) clamped (scale=fixed: zero only)
 *   sym                 the zero is fixed, so the update is HQQ's optional
 *                       scale step s = <W - W_e, L> / <L, L> (L the levels);
 *                       scale=fixed makes HQQ exactly RTN min-max
 * Deviations from the reference:
 *   - every iterate is projected onto what the format stores (s and m rounded
 *     to fp16, z to an integer) before its codes are chosen, so the error an
 *     iteration measures is exactly the error of the grid that would be
 *     written; the codes are the format's own nearest-code rounding
 *   - the early-stop error is the objective itself, sum |d|^p (the reference
 *     watches mean |d|), and the best iterate is kept (the reference keeps
 *     the zero of the step that failed to improve): HQQ's l_p error is never
 *     above RTN min-max's on the same group
 *   - float32 with double sums, on the CPU; axis is always along the row
 *     groups of the format (the reference's axis=1); the optional AdamW
 *     variant and 8-bit meta-quantization of s and z are not implemented. */
#include "quant/method_rows.h"

#include <math.h>
#include <string.h>

typedef enum { HQQ_SCALE_AUTO, HQQ_SCALE_FIXED, HQQ_SCALE_UPDATE } hqq_scale_rule;

typedef struct {
    float p, beta, kappa;
    int iters;
    hqq_scale_rule scale;
} hqq_opts;

/* One group's grid as stored: value(q) = lb_uniform_value(spec, s, m, z, q). */
typedef struct {
    float s, m;
    int z;
} grid;

/* |d|^(p-1) for d != 0 (the shrink's threshold and, times |d|, the loss). */
static inline float lp_weight(float ad, float pm1) { return pm1 == 0.0f ? 1.0f : powf(ad, pm1); }

/* One pass over the group at grid g: returns sum |w - value|^p, and (when
 * sums is not NULL) the sums the closed-form update needs, of t = w - W_e:
 * sums = {sum t, sum q, sum q^2, sum q t}. */
static double lp_error_and_sums(const lb_qspec *spec, const grid *g, const float *x, int64_t n, float pm1,
                                float inv_beta, double *sums) {
    double err = 0, st = 0, sq = 0, sqq = 0, sqt = 0;
    /* the grid's rounding and values exactly as lb_uniform_nearest_code and
     * lb_uniform_value compute them (g->s > 0 here), inlined: this loop is the
     * method's cost. test_hqq checks the result against RTN on the real grid. */
    int f16 = spec->zero == LB_ZERO_F16;
    float zf = (float)g->z, maxq = (float)((1 << spec->bits) - 1);
    for (int64_t i = 0; i < n; i++) {
        float r = f16 ? nearbyintf((x[i] - g->m) / g->s) : nearbyintf(x[i] / g->s + zf);
        int q = !(r >= 0.0f) ? 0 : r > maxq ? (int)maxq : (int)r;
        float d = x[i] - (f16 ? g->s * (float)q + g->m : g->s * (float)(q - g->z));
        float ad = fabsf(d), e = 0.0f;
        if (ad > 0.0f) {
            float a = lp_weight(ad, pm1);
            err += (double)(ad * a);
            float shrunk = ad - a * inv_beta;
            if (shrunk > 0.0f) e = d > 0 ? shrunk : -shrunk;
        }
        if (sums) {
            double t = (double)x[i] - e;
            st += t;
            sq += q;
            sqq += (double)q * q;
            sqt += q * t;
        }
    }
    if (sums) {
        sums[0] = st;
        sums[1] = sq;
        sums[2] = sqq;
        sums[3] = sqt;
    }
    return err;
}

/* The closed-form update of the grid from the pass sums, projected onto what
 * the format stores. */
static grid closed_form_grid(const lb_qspec *spec, grid g, const double *sm, int64_t n, int update_scale) {
    double st = sm[0], sq = sm[1], sqq = sm[2], sqt = sm[3], nn = (double)n;
    int maxq = (1 << spec->bits) - 1;
    if (spec->zero == LB_ZERO_SYM) {
        double l0 = lb_format_level(spec, 0); /* level(q) = q + l0 */
        double ll = sqq + 2 * l0 * sq + nn * l0 * l0, lt = sqt + l0 * st;
        if (update_scale && ll > 0 && lt > 0) g.s = lb_round_fp16((float)(lt / ll));
        return g;
    }
    /* current grid as value = s q + m */
    double s = g.s, m = spec->zero == LB_ZERO_F16 ? g.m : -(double)g.s * g.z;
    if (update_scale) {
        double var = sqq - sq * sq / nn;
        if (var > 0) {
            double s2 = (sqt - sq * st / nn) / var;
            if (s2 > 0 && isfinite(s2)) s = lb_round_fp16((float)s2);
        }
    }
    m = (st - s * sq) / nn;
    g.s = (float)s;
    if (spec->zero == LB_ZERO_F16) {
        g.m = lb_round_fp16((float)m);
    } else if (s > 0) {
        double z = nearbyint(-m / s);
        g.z = z < 0 ? 0 : z > maxq ? maxq : (int)z;
    }
    return g;
}

/* Optimizes group k (weights x[0..n)) from the grid already in q. */
static void fit_group(lb_qtensor *q, int64_t k, const float *x, int64_t n, const hqq_opts *o) {
    const lb_qspec *spec = &q->spec;
    grid g = {q->scale[k], q->offset[k], spec->zero == LB_ZERO_INT ? q->zero[k] : 1 << (spec->bits - 1)};
    if (!(g.s > 0.0f) || n < 2) return; /* a constant group: every code decodes to the same value */
    int update_scale = o->scale == HQQ_SCALE_UPDATE || (o->scale == HQQ_SCALE_AUTO && spec->zero != LB_ZERO_F16);
    float pm1 = o->p - 1.0f;
    double beta = o->beta;
    grid best = g;
    double best_err = INFINITY;
    for (int t = 0; t <= o->iters; t++) {
        double sm[4];
        double err = lp_error_and_sums(spec, &g, x, n, pm1, (float)(1.0 / beta), t < o->iters ? sm : NULL);
        if (err < best_err) {
            best_err = err;
            best = g;
        } else {
            break; /* early stop: no improvement */
        }
        if (t == o->iters) break;
        g = closed_form_grid(spec, g, sm, n, update_scale);
        if (!(g.s > 0.0f) || !isfinite(g.m)) break;
        beta *= o->kappa;
    }
    q->scale[k] = best.s;
    if (spec->zero == LB_ZERO_F16) q->offset[k] = best.m;
    if (spec->zero == LB_ZERO_INT) q->zero[k] = (uint8_t)best.z;
}

static lb_status check_opts(const hqq_opts *o) {
    if (!(o->p > 0.0f && o->p <= 1.0f) || !(o->beta > 0.0f && isfinite(o->beta)) ||
        !(o->kappa >= 1.0f && isfinite(o->kappa)) || o->iters < 0 || o->iters > 10000)
        return lb_fail(LB_ERR_INVALID, "hqq needs p in (0, 1], beta > 0, kappa >= 1 and 0..10000 iterations");
    return LB_OK;
}

static lb_status hqq_run(const float *w, int64_t rows, int64_t cols, const lb_qspec *spec, const hqq_opts *o,
                         lb_qtensor *q) {
    lb_status st = check_opts(o);
    if (st != LB_OK) return st;
    lb_rtn_opts ro;
    lb_rtn_opts_default(&ro); /* clip=minmax: HQQ's starting grid (refuses NaN/Inf weights) */
    st = lb_rtn_quantize(w, rows, cols, spec, &ro, q);
    if (st != LB_OK) return st;
    if (q->groups_per_row == 0) {
        fit_group(q, 0, w, rows * cols, o);
    } else {
#pragma omp parallel for schedule(dynamic, 4)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t g = 0; g < q->groups_per_row; g++) {
                int64_t c0 = g * q->group_len;
                int64_t n = cols - c0 < q->group_len ? cols - c0 : q->group_len;
                if (n > 0) fit_group(q, r * q->groups_per_row + g, w + r * cols + c0, n, o);
            }
    }
    st = lb_qtensor_store_scales(q); /* the grids are already as stored: this only checks them */
    if (st != LB_OK) {
        lb_qtensor_free(q);
        return st;
    }
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        uint8_t *codes = q->codes + r * q->cols_padded;
        for (int64_t c = 0; c < q->cols_padded; c++) {
            float x = c < cols ? w[r * cols + c] : 0.0f; /* padding decodes to (nearly) zero */
            codes[c] = (uint8_t)lb_qtensor_nearest_code(q, lb_qtensor_group(q, r, c), x);
        }
    }
    return LB_OK;
}

static void hqq_opts_from(const lb_method_opts *mo, hqq_opts *o);

lb_status lb_hqq_default_fit(const float *w, int64_t rows, int64_t cols, const lb_qspec *spec, lb_qtensor *q) {
    lb_method_opts mo;
    lb_method_opts_default(&lb_method_hqq, &mo);
    hqq_opts o;
    hqq_opts_from(&mo, &o);
    return hqq_run(w, rows, cols, spec, &o, q);
}

/* ---- the hqq row --------------------------------------------------------- */

static const char *const scale_choices[] = {"auto", "fixed", "update", NULL};

static const lb_method_option hqq_options[] = {
    {"p", LB_OPTION_FLOAT, "0.7", "the l_p norm of the weight error minimized (p < 1 tolerates outliers)", 0.05, 1,
     NULL, NULL},
    {"beta", LB_OPTION_FLOAT, "10", "half-quadratic penalty at the first iteration", 1e-3, 1e6, NULL, NULL},
    {"kappa", LB_OPTION_FLOAT, "1.01", "growth of beta per iteration", 1, 10, NULL, NULL},
    {"iters", LB_OPTION_INT, "20", "iterations at most (early stop when the error stops improving)", 0, 10000,
     NULL, NULL},
    {"scale", LB_OPTION_CHOICE, "auto",
     "auto (fp16 offsets: zero only, as the reference; int zeros and sym: scale too) | fixed | update", 0, 0,
     scale_choices, "scale rule"},
};

static void hqq_opts_from(const lb_method_opts *mo, hqq_opts *o) {
    o->p = (float)mo->value[0];
    o->beta = (float)mo->value[1];
    o->kappa = (float)mo->value[2];
    o->iters = (int)mo->value[3];
    o->scale = (hqq_scale_rule)(int)mo->value[4];
}

static lb_status hqq_check(const lb_qspec *spec, const lb_method_opts *mo) {
    (void)mo;
    if (lb_format_grid(spec) != LB_GRID_UNIFORM) {
        char text[64];
        lb_qspec_format(spec, text, sizeof text);
        return lb_fail(LB_ERR_INVALID, "method hqq quantizes to uniform int formats (int1..int8) only, not '%s'",
                       text);
    }
    if (spec->scale_bits) {
        /* HQQ's closed-form zero/scale steps move fp16 values; on the integer
         * lattice of hierarchical scales they would need a rounding step
         * of their own (not implemented) */
        char text[64];
        lb_qspec_format(spec, text, sizeof text);
        return lb_fail(LB_ERR_UNSUPPORTED,
                       "method hqq does not support hierarchical scales (s<k>) yet, in '%s'; use rtn or gptq", text);
    }
    return LB_OK;
}

static lb_status hqq_quantize(const float *w, int64_t rows, int64_t cols, const lb_layer_stats *stats,
                              const lb_qspec *spec, const lb_method_opts *mo, lb_qtensor *q) {
    (void)stats; /* hqq_check already ran (lb_quantize_tensor) */
    hqq_opts o;
    hqq_opts_from(mo, &o);
    return hqq_run(w, rows, cols, spec, &o, q);
}

const lb_method lb_method_hqq = {
    .name = "hqq",
    .summary = "half-quadratic quantization: per group, the zero (and scale) minimizing the l_p (p<1) weight "
               "error (data-free)",
    .stats = LB_STATS_NONE,
    .options = hqq_options,
    .n_options = (int)(sizeof hqq_options / sizeof hqq_options[0]),
    .check = hqq_check,
    .quantize = hqq_quantize,
};
