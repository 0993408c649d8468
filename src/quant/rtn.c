/* Round-to-nearest: the data-free baseline (METHODS.md s1, s15-s19).
 *
 * Minimizes nothing globally: each group gets a grid from its own weights
 * (its range, clipped by the rule in lb_rtn_opts), then every weight is
 * rounded to the nearest grid point. Grids are chosen in the precision the
 * format stores them (fp16 scale and offset), so the mse search scores the
 * grid that is really written.
 *
 * Per grid kind (a trait of the format's family, lb_format_grid):
 *   uniform asym (fp16 offset)  s = (hi - lo) / (2^b - 1), m = lo
 *   uniform asym (int zero)     as GPTQ's quantizer: the range is widened to
 *                               contain 0, z = round(-lo / s)
 *   uniform sym, 2..7 bits      s = e / -2^(b-1), e the signed extreme (the
 *                               first weight of largest |w|, sign kept), so e
 *                               lands on code 0 and all 2^b levels are used:
 *                               ggml's quantize_row_q4_0_ref rule (Q4_0 =
 *                               int4:g32:sym). The side opposite e gets
 *                               2^(b-1) - 1 steps and clips one step short.
 *   uniform sym, 8 bits         s = max|w| / 127: ggml's quantize_row_q8_0_ref
 *                               rule (Q8_0 = int8:g32:sym); code 0 unused
 *   codebook (nf4)              absmax = max|w| (clipped by the rule), codes the
 *                               nearest level of absmax * codebook
 *   sign (binary)               alpha = mean|w| (BWN), codes sign(w)
 *   lut (a codebook per group)  its 2^b levels by unweighted 1-D k-means
 *                               (Lloyd, src/quant/kmeans.c: squeezellm's
 *                               code with every weight counting 1), codes
 *                               the nearest fp16 level
 *   onebit (h sign(w) g)        SVID: signs sign(w), h g^T the rank-1 fit of
 *                               |W| (src/quant/onebit.c, lb_onebit_svid)
 *   salient (ptq161)            the round(p cols) columns of largest norm at
 *                               int4 min-max, the rest mu + alpha sign(w - mu)
 *                               per row (src/quant/ptq161.c, lb_ptq161_rtn)
 *   salient split (billm)       BiLLM's steps without data: columns by
 *                               sum w^2, residual and split binarizations
 *                               per row and group (src/quant/billm.c)
 *   vector (e8p)                per row (or tensor) and stage a scale searched
 *                               around the codebook's RMS-matched one, codes the
 *                               nearest codeword per 8 weights (src/quant/vector.c)
 *   ternary (opts->ternary_rule, a method choice: the bytes are the same)
 *            absmean            gamma = mean|w|, t = clamp(round(w/gamma), -1, 1) (BitNet b1.58)
 *            twn                delta = 0.7 mean|w|, t = sign(w) [|w| > delta],
 *                               alpha = mean of |w| over |w| > delta (TWN)
 *   trellis                     the Viterbi search of src/quant/trellis.c
 *   low-rank binary (littlebit) no per-weight grid: Dual-SVID and least
 *                               squares on ||W - Q||_F (src/quant/littlebit.c)
 * Deviation: the asymmetric fp16-offset grid does not force 0 into the
 * range (as REFERENCE.md's textbook quantizer), so an all-positive group
 * keeps its whole grid for its own values.
 *
 * Why the signed extreme for the symmetric widths ggml has no type for
 * (int2/3/5/6/7): the old rule, max|w| / (2^(b-1) - 1), never uses code 0,
 * wasting one of 2^b levels (at 2 bits a third of the grid: {-1, 0, 1} x s).
 * Relative weight error over stories260K's 35 linears, old -> new, min-max:
 * int2 g64 0.506 -> 0.149, int3 g32 0.0493 -> 0.0293, int5 g64 0.00243 ->
 * 0.00214, int7 g64 1.37e-4 -> 1.32e-4 (lower at every width and group,
 * 16..128); clip=mse: lower at 2..5 bits (int2 g64 0.162 -> 0.122), even at 6,
 * within +-3% at 7. 8 bits keeps ggml's Q8_0 rule so q8_0 files are ggml's
 * bytes (tests/test_ggml_parity.c); the signed extreme there would be 2%
 * lower in weight error at min-max, 1-3% higher under mse.
 *
 * Codes are the nearest level to w under the stored fp16 scale (and offset),
 * where ggml rounds w * (1/d) with its fp32 d, half up (Q4_0/Q4_1) or half
 * away from zero (Q8_0): the scales written are ggml's bit for bit, a code
 * differs only where ggml's is not the nearest level of the stored grid.
 *
 * Hierarchical scales (uniform s<k>, src/formats/uniform_hscale.c: group
 * scale and min are k-bit integers times per-super-group fp16 super-scales).
 * Three steps: every group's fp16 grid by its clip rule (above); the format's
 * store_scales picks each super-group's D and M from those grids (largest
 * scale, signed extreme of the offsets) and rounds; then every group is
 * refitted on the integer lattice, against its weights (hscale_fit_group):
 *   minmax, aciq  the smallest lattice grid covering the (clipped) range:
 *                 m = M mn <= lo, then D sc (2^b - 1) >= hi - m (sym: |D sc|
 *                 >= |e| / 2^(b-1), sign of the target scale)
 *   mse           for each shrink factor p the nearest lattice grid and its
 *                 +-1 neighbours in sc (and mn), 3 (sym) or 9 (asym) grids,
 *                 scored by squared weight error with the integer scales;
 *                 then D itself is searched: 1, 0.95, .., 0.75 times the
 *                 covering D (fp16), the super-group keeps the D whose
 *                 refitted groups have the least total error.
 * GPTQ refits groups the same way (lb_rtn_hscale_fit_group) under the
 * super-scales of its initial RTN fit.
 *
 * Error weights (option weights=magnitude, lb_rtn_opts.magnitude): every
 * search above scores sum e_i (w_i - q_i)^2 with e_i = rms + |w_i| (rms the
 * group's), times the per-column weights when there are any. This is the
 * weighting ggml's data-free K-quant quantizers use (make_qkx2_quants:
 * av_x + |x|): a large weight's error counts more, and an LLM's output
 * depends more on its large weights. The codes stay the nearest levels. */
#include "quant/kmeans.h"
#include "quant/method_rows.h"
#include "quant/onebit.h"
#include "quant/salient.h"
#include "quant/littlebit.h"
#include "quant/trellis.h"
#include "quant/vector.h"

#include <math.h>

/* weights below which RTN runs on one thread */
#define RTN_PARALLEL_MIN 16384
#include <string.h>

typedef struct {
    float s, m; /* value(q) = s * q + m for fp16 offsets ... */
    int z;      /* ... s * (q - z) otherwise (see lb_uniform_value) */
} uniform_grid;

/* The grid for the clipped range [lo, hi], as stored (fp16). Symmetric grids
 * take e instead: the group's signed extreme (the value of largest magnitude,
 * sign kept), clipped. */
static uniform_grid uniform_grid_for(const lb_qspec *spec, float lo, float hi, float e) {
    uniform_grid g = {0, 0, 0};
    int maxq = (1 << spec->bits) - 1;
    if (spec->zero == LB_ZERO_F16) {
        g.s = lb_round_fp16((hi - lo) / (float)maxq);
        g.m = lb_round_fp16(lo);
    } else if (spec->zero == LB_ZERO_INT) {
        lo = fminf(lo, 0.0f);
        hi = fmaxf(hi, 0.0f);
        g.s = lb_round_fp16((hi - lo) / (float)maxq);
        if (g.s > 0) {
            float z = nearbyintf(-lo / g.s);
            g.z = z < 0 ? 0 : z > (float)maxq ? maxq : (int)z;
        }
    } else {
        int half = 1 << (spec->bits - 1);
        /* 8 bits: ggml's Q8_0 rule, |e| / 127; below: e lands on code 0 */
        g.s = lb_round_fp16(spec->bits == 8 ? fabsf(e) / (float)(half - 1) : e / (float)-half);
        g.z = half;
    }
    return g;
}

/* squared error of rounding x to the grid, each weight's term times cw[i]
 * (the importance of its input; NULL: 1) */
static double uniform_error(const lb_qspec *spec, const uniform_grid *g, const float *x, int64_t n,
                            const float *cw) {
    double err = 0;
    for (int64_t i = 0; i < n; i++) {
        int q = lb_uniform_nearest_code(spec, g->s, g->m, g->z, x[i]);
        float d = x[i] - lb_uniform_value(spec, g->s, g->m, g->z, q);
        err += (cw ? (double)cw[i] : 1.0) * d * d;
    }
    return err;
}

/* squared error of rounding x to the nearest of scale * level(c) (codebook grids) */
static double codebook_error(const lb_qspec *spec, float s, const float *x, int64_t n, const float *cw) {
    double err = 0;
    for (int64_t i = 0; i < n; i++) {
        float best = fabsf(x[i] - s * lb_format_level(spec, lb_format_nearest_level(spec, s, x[i])));
        err += (cw ? (double)cw[i] : 1.0) * best * best;
    }
    return err;
}

typedef struct {
    double mean, mean_abs, mean_abs_centered, rms, rms_centered;
    float lo, hi, amax;
    float ext; /* signed extreme: the first value of largest magnitude (ggml's Q4_0 rule; 0 if all are 0) */
} group_stats;

static group_stats stats_of(const float *x, int64_t n) {
    group_stats st;
    memset(&st, 0, sizeof st);
    st.lo = INFINITY;
    st.hi = -INFINITY;
    double sum = 0, sum_abs = 0, sum_sq = 0;
    for (int64_t i = 0; i < n; i++) {
        sum += x[i];
        sum_abs += fabs(x[i]);
        sum_sq += (double)x[i] * x[i];
        st.lo = fminf(st.lo, x[i]);
        st.hi = fmaxf(st.hi, x[i]);
        if (fabsf(x[i]) > fabsf(st.ext)) st.ext = x[i];
    }
    st.mean = sum / (double)n;
    st.mean_abs = sum_abs / (double)n;
    st.rms = sqrt(sum_sq / (double)n);
    double c_abs = 0, c_sq = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = x[i] - st.mean;
        c_abs += fabs(d);
        c_sq += d * d;
    }
    st.mean_abs_centered = c_abs / (double)n;
    st.rms_centered = sqrt(c_sq / (double)n);
    st.amax = fmaxf(fabsf(st.lo), fabsf(st.hi));
    return st;
}

/* ACIQ clip of [lo, hi]: mean +- alpha for asymmetric grids, +-alpha around 0
 * for symmetric ones (and *e, the clipped signed extreme: alpha with the
 * extreme's sign), never wider than the data. */
static void aciq_range(const group_stats *st, lb_clip clip, int bits, int symmetric, float *lo, float *hi,
                       float *e) {
    *e = st->ext;
    if (symmetric) {
        double spread = clip == LB_CLIP_ACIQ ? st->mean_abs : st->rms;
        double ratio = clip == LB_CLIP_ACIQ ? lb_aciq_laplace_ratio(bits) : lb_aciq_gauss_ratio(bits);
        float c = fminf(st->amax, (float)(ratio * spread));
        *lo = -c;
        *hi = c;
        *e = copysignf(c, st->ext);
    } else {
        double spread = clip == LB_CLIP_ACIQ ? st->mean_abs_centered : st->rms_centered;
        double ratio = clip == LB_CLIP_ACIQ ? lb_aciq_laplace_ratio(bits) : lb_aciq_gauss_ratio(bits);
        *lo = fmaxf(st->lo, (float)(st->mean - ratio * spread));
        *hi = fminf(st->hi, (float)(st->mean + ratio * spread));
    }
}

static float shrink_factor(const lb_rtn_opts *o, int i) {
    if (o->mse_steps <= 1) return 1.0f;
    return 1.0f - (1.0f - o->mse_min_shrink) * (float)i / (float)(o->mse_steps - 1);
}

/* An absmax codebook's scale for a group of largest |x| amax and signed
 * extreme ext: the extreme onto the table's level of largest magnitude. A
 * table whose ends are +-L (nf4, pow2) takes amax / L; a lopsided one
 * (iq4_nl: -127 .. 113) the signed extreme onto its longer end lm, so the
 * scale is negative when that end and the extreme differ in sign. */
static float codebook_scale(const lb_qspec *spec, float amax, float ext, float *lm, int *lopsided) {
    int levels = lb_format_levels(spec);
    float l0 = INFINITY, l1 = -INFINITY; /* the table's ends */
    for (int c = 0; c < levels; c++) {
        l0 = fminf(l0, lb_format_level(spec, c));
        l1 = fmaxf(l1, lb_format_level(spec, c));
    }
    *lm = fabsf(l0) >= fabsf(l1) ? l0 : l1;
    *lopsided = fabsf(l0) != fabsf(l1);
    return *lopsided ? ext / *lm : amax / fabsf(*lm);
}

/* Chooses group k's parameters from its real weights x[0..n). */
static void fit_group(lb_qtensor *q, int64_t k, const float *x, int64_t n, const float *cw, const lb_rtn_opts *o,
                      float *twn_threshold) {
    const lb_qspec *spec = &q->spec;
    group_stats st = stats_of(x, n);
    switch (lb_format_grid(spec)) {
    case LB_GRID_UNIFORM: {
        int symmetric = spec->zero == LB_ZERO_SYM;
        float lo = st.lo, hi = st.hi, e = st.ext;
        uniform_grid best = uniform_grid_for(spec, lo, hi, e);
        if (o->clip == LB_CLIP_ACIQ || o->clip == LB_CLIP_ACIQ_GAUSS) {
            aciq_range(&st, o->clip, spec->bits, symmetric, &lo, &hi, &e);
            best = uniform_grid_for(spec, lo, hi, e);
        } else if (o->clip == LB_CLIP_MSE) {
            double best_err = uniform_error(spec, &best, x, n, cw);
            for (int i = 1; i < o->mse_steps; i++) {
                float p = shrink_factor(o, i);
                uniform_grid g = uniform_grid_for(spec, p * lo, p * hi, p * e);
                double err = uniform_error(spec, &g, x, n, cw);
                if (err < best_err) {
                    best_err = err;
                    best = g;
                }
            }
        }
        q->scale[k] = best.s;
        q->offset[k] = spec->zero == LB_ZERO_F16 ? best.m : 0.0f;
        q->zero[k] = spec->zero == LB_ZERO_INT ? (uint8_t)best.z : 0;
        break;
    }
    case LB_GRID_ABSMAX: {
        int lopsided;
        float lm, base = codebook_scale(spec, st.amax, st.ext, &lm, &lopsided);
        float s = lb_qtensor_round_scale(q, base);
        if (o->clip == LB_CLIP_ACIQ || o->clip == LB_CLIP_ACIQ_GAUSS) {
            float lo, hi, e;
            aciq_range(&st, o->clip, spec->bits, 1, &lo, &hi, &e);
            s = lb_qtensor_round_scale(q, lopsided ? e / lm : hi / fabsf(lm));
        } else if (o->clip == LB_CLIP_MSE) {
            double best_err = codebook_error(spec, s, x, n, cw);
            /* coarse stored scales (mxfp4's powers of two) may round every
             * shrink factor onto one value: their neighbours above and below
             * are tried too */
            int extra = lb_format_coarse_scales(spec) ? 2 : 0;
            for (int i = 1; i < o->mse_steps + extra; i++) {
                float f = i < o->mse_steps ? shrink_factor(o, i) : i == o->mse_steps ? 2.0f : 0.5f;
                float c = lb_qtensor_round_scale(q, f * base);
                double e = codebook_error(spec, c, x, n, cw);
                if (e < best_err) {
                    best_err = e;
                    s = c;
                }
            }
        }
        q->scale[k] = s;
        break;
    }
    case LB_GRID_SIGN: q->scale[k] = lb_round_fp16((float)st.mean_abs); break;
    case LB_GRID_TERNARY:
        if (o->ternary_rule == LB_TERNARY_ABSMEAN) {
            q->scale[k] = lb_round_fp16((float)st.mean_abs);
        } else {
            float delta = (float)(0.7 * st.mean_abs);
            double sum = 0;
            int64_t cnt = 0;
            for (int64_t i = 0; i < n; i++)
                if (fabsf(x[i]) > delta) {
                    sum += fabsf(x[i]);
                    cnt++;
                }
            q->scale[k] = lb_round_fp16(cnt ? (float)(sum / (double)cnt) : 0.0f);
            twn_threshold[k] = delta;
        }
        break;
    default: break;
    }
}

/* ---- hierarchical scales ----------------------------------------------------- */

#define HS_SUPER_STEPS 6   /* D factors tried by clip=mse: 1, 0.95, ..., 0.75 */
#define HS_SLACK 1e-4f     /* ceil/floor slack: a range that is exactly on the lattice stays on it */

static double lattice_error(const lb_qtensor *q, int64_t k, int sc, int mn, const float *x, int64_t n,
                            const float *cw) {
    const lb_qspec *spec = &q->spec;
    int64_t b = lb_qtensor_super(q, k);
    float s = q->super_scale[b] * (float)sc, m = spec->zero == LB_ZERO_SYM ? 0.0f : q->super_min[b] * (float)mn;
    uniform_grid g = {s, m, 1 << (spec->bits - 1)};
    return uniform_error(spec, &g, x, n, cw);
}

/* the target scale of a symmetric grid for the signed extreme e (unrounded:
 * fp16 rounding would move a target that is exactly on the lattice off it) */
static float sym_target(const lb_qspec *spec, float e) {
    int half = 1 << (spec->bits - 1);
    return spec->bits == 8 ? fabsf(e) / (float)(half - 1) : e / (float)-half;
}

static int clamp_int(float v, int lo, int hi) { return v < (float)lo ? lo : v > (float)hi ? hi : (int)v; }

/* 1 the first time `bit` is asked about (and marks it): neighbouring shrink
 * factors mostly land on the same integers, each is scored once */
static int first_visit(uint64_t *seen, int bit) {
    if (seen[bit >> 6] >> (bit & 63) & 1) return 0;
    seen[bit >> 6] |= (uint64_t)1 << (bit & 63);
    return 1;
}

/* The covering lattice grid for [lo, hi] (asym) or extreme e (sym). */
static void covering(const lb_qtensor *q, int64_t b, float lo, float hi, float e, int *sc, int *mn) {
    const lb_qspec *spec = &q->spec;
    float D = q->super_scale[b], M = q->super_min[b];
    int smin = lb_hscale_scale_min(spec), smax = lb_hscale_scale_max(spec), mmax = (1 << spec->scale_bits) - 1;
    *mn = 0;
    if (spec->zero == LB_ZERO_SYM) {
        float x = D != 0.0f ? sym_target(spec, e) / D : 0.0f;
        *sc = clamp_int(x >= 0 ? ceilf(x - HS_SLACK) : floorf(x + HS_SLACK), smin, smax);
        return;
    }
    if (M != 0.0f) {
        float x = lo / M; /* m = M mn <= lo: mn rounds down for M > 0, up for M < 0 */
        /* with no scale to climb from a lower min (D = 0: every group of the
         * super-group is constant), the nearest min is the best grid */
        *mn = clamp_int(D <= 0.0f ? nearbyintf(x) : M > 0 ? floorf(x + HS_SLACK) : ceilf(x - HS_SLACK), 0, mmax);
    }
    float m = M * (float)*mn, maxq = (float)((1 << spec->bits) - 1);
    *sc = D > 0.0f ? clamp_int(ceilf((hi - m) / (maxq * D) - HS_SLACK), 0, smax) : 0;
}

/* A codebook group under hierarchical scales (iq4_xs): the integer sc whose
 * D sc is nearest the group's own scale, or (mse) the best of the integers
 * near each shrunk target; the error is the codebook's. */
static double codebook_fit_group(lb_qtensor *q, int64_t k, const float *x, int64_t n, const float *cw,
                                 const lb_rtn_opts *o) {
    const lb_qspec *spec = &q->spec;
    group_stats st = stats_of(x, n);
    int lopsided;
    int smin = lb_hscale_scale_min(spec), smax = lb_hscale_scale_max(spec);
    float lm, t = codebook_scale(spec, st.amax, st.ext, &lm, &lopsided), D = q->super_scale[lb_qtensor_super(q, k)];
    if (D == 0.0f) {
        lb_hscale_set_group(q, k, 0, 0);
        return codebook_error(spec, 0.0f, x, n, cw);
    }
    int sc = clamp_int(nearbyintf(t / D), smin, smax);
    double best = codebook_error(spec, D * (float)sc, x, n, cw);
    uint64_t seen[4] = {0}; /* scale_bits <= 8: 256 bits cover sc - smin */
    first_visit(seen, sc - smin);
    for (int i = 1; o->clip == LB_CLIP_MSE && i < o->mse_steps; i++) {
        int c0 = clamp_int(nearbyintf(shrink_factor(o, i) * t / D), smin, smax);
        for (int c = c0 - 1; c <= c0 + 1; c++) {
            if (c < smin || c > smax || !first_visit(seen, c - smin)) continue;
            double err = codebook_error(spec, D * (float)c, x, n, cw);
            if (err < best) {
                best = err;
                sc = c;
            }
        }
    }
    lb_hscale_set_group(q, k, sc, 0);
    return best;
}

double lb_rtn_hscale_fit_group(lb_qtensor *q, int64_t k, const float *x, int64_t n, const float *cw,
                               const lb_rtn_opts *o) {
    const lb_qspec *spec = &q->spec;
    if (lb_format_grid(spec) == LB_GRID_ABSMAX) return codebook_fit_group(q, k, x, n, cw, o);
    int64_t b = lb_qtensor_super(q, k);
    group_stats st = stats_of(x, n);
    float lo = st.lo, hi = st.hi, e = st.ext;
    int sc, mn;
    if (o->clip != LB_CLIP_MSE) {
        if (o->clip == LB_CLIP_ACIQ || o->clip == LB_CLIP_ACIQ_GAUSS)
            aciq_range(&st, o->clip, spec->bits, spec->zero == LB_ZERO_SYM, &lo, &hi, &e);
        covering(q, b, lo, hi, e, &sc, &mn);
        lb_hscale_set_group(q, k, sc, mn);
        return lattice_error(q, k, sc, mn, x, n, cw);
    }
    float D = q->super_scale[b], M = q->super_min[b], maxq = (float)((1 << spec->bits) - 1);
    int smin = lb_hscale_scale_min(spec), smax = lb_hscale_scale_max(spec), mmax = (1 << spec->scale_bits) - 1;
    covering(q, b, lo, hi, e, &sc, &mn);
    double best = lattice_error(q, k, sc, mn, x, n, cw);
    /* neighbouring shrink factors mostly land on the same lattice points:
     * score each (sc, mn) once (a bitmap over the k-bit integer pairs) */
    uint64_t seen[1024];
    int span = smax - smin + 1;
    memset(seen, 0, (size_t)((span * (mmax + 1) + 63) / 64) * sizeof(uint64_t));
    for (int i = 0; i < o->mse_steps; i++) {
        float p = shrink_factor(o, i);
        int mn0 = 0, sc0;
        if (spec->zero == LB_ZERO_SYM) {
            sc0 = D != 0.0f ? clamp_int(nearbyintf(sym_target(spec, p * e) / D), smin, smax) : 0;
        } else {
            mn0 = M != 0.0f ? clamp_int(nearbyintf(p * lo / M), 0, mmax) : 0;
            sc0 = D > 0.0f ? clamp_int(nearbyintf((p * hi - M * (float)mn0) / (maxq * D)), 0, smax) : 0;
        }
        int dm = spec->zero == LB_ZERO_SYM ? 0 : 1;
        for (int a = -dm; a <= dm; a++)
            for (int c = -1; c <= 1; c++) {
                int tm = mn0 + a, ts = sc0 + c;
                if (tm < 0 || tm > mmax || ts < smin || ts > smax) continue;
                if (!first_visit(seen, tm * span + (ts - smin))) continue;
                double err = lattice_error(q, k, ts, tm, x, n, cw);
                if (err < best) {
                    best = err;
                    sc = ts;
                    mn = tm;
                }
            }
    }
    lb_hscale_set_group(q, k, sc, mn);
    return best;
}

/* Refits every group of super-group b on its lattice; mse also searches D.
 * Returns the super-group's squared error. */
static double hscale_fit_super(lb_qtensor *q, int64_t b, const float *w, int64_t cols, const float *colw,
                               int64_t colw_stride, const lb_rtn_opts *o) {
    int64_t k0, k1;
    lb_hscale_super_span(q, b, &k0, &k1);
    float D0 = q->super_scale[b], best_D = D0;
    double best_err = INFINITY;
    int steps = o->clip == LB_CLIP_MSE ? HS_SUPER_STEPS : 1;
    for (int i = 0; i <= steps; i++) {
        /* the last pass refits with the winner, so the groups hold its integers */
        float D = i == steps ? best_D : i == 0 ? D0 : lb_round_fp16(D0 * (1.0f - 0.05f * (float)i));
        if (i == steps && steps == 1) break; /* one candidate: already fitted */
        q->super_scale[b] = D;
        double err = 0;
        for (int64_t k = k0; k < k1; k++) {
            int64_t r = k / q->groups_per_row, c0 = k % q->groups_per_row * q->group_len;
            int64_t n = cols - c0 < q->group_len ? cols - c0 : q->group_len;
            if (n > 0)
                err += lb_rtn_hscale_fit_group(q, k, w + r * cols + c0, n, colw ? colw + r * colw_stride + c0 : NULL, o);
        }
        if (i < steps && err < best_err) {
            best_err = err;
            best_D = D;
        }
    }
    return best_err;
}

static int assign_code(const lb_qtensor *q, int64_t k, float x, const lb_rtn_opts *o, const float *twn_threshold) {
    const lb_qspec *spec = &q->spec;
    switch (lb_format_grid(spec)) {
    case LB_GRID_SIGN: return x >= 0.0f;
    case LB_GRID_TERNARY: {
        if (o->ternary_rule == LB_TERNARY_TWN) {
            if (fabsf(x) <= twn_threshold[k]) return 1;
            return x > 0 ? 2 : 0;
        }
        float g = q->scale[k];
        if (g == 0.0f) return 1;
        float t = nearbyintf(x / g);
        return t > 0 ? 2 : t < 0 ? 0 : 1;
    }
    default: return lb_qtensor_nearest_code(q, k, x);
    }
}

static lb_status check_finite(const float *w, int64_t rows, int64_t cols) {
    for (int64_t i = 0; i < rows * cols; i++)
        if (!isfinite(w[i]))
            return lb_fail(LB_ERR_NUMERIC, "weight at row %lld, column %lld is %s", (long long)(i / cols),
                           (long long)(i % cols), isnan(w[i]) ? "NaN" : "infinite");
    return LB_OK;
}

/* Sign and ternary grids pick their scale by their own rule: no clipping. */
static lb_status check_clip(const lb_qspec *spec, lb_clip clip) {
    lb_grid_kind grid = lb_format_grid(spec);
    if ((grid == LB_GRID_SIGN || grid == LB_GRID_TERNARY || grid == LB_GRID_TRELLIS || grid == LB_GRID_LUT ||
         grid == LB_GRID_ONEBIT || grid == LB_GRID_SALIENT || grid == LB_GRID_SALIENT_SPLIT ||
         grid == LB_GRID_LOWRANK_BINARY || grid == LB_GRID_VECTOR) &&
        clip != LB_CLIP_MINMAX)
        return lb_fail(LB_ERR_INVALID,
                       "clipping rule '%s' applies to formats with a uniform or codebook grid (int, nf4, ...); "
                       "%s formats choose their scale by their own rule",
                       lb_clip_name(clip), lb_format_family_name(spec));
    return LB_OK;
}

lb_status lb_rtn_quantize(const float *w, int64_t rows, int64_t cols, const lb_qspec *spec,
                          const lb_rtn_opts *opts, lb_qtensor *q) {
    return lb_rtn_quantize_weighted(w, rows, cols, NULL, spec, opts, q);
}

lb_status lb_rtn_quantize_weighted(const float *w, int64_t rows, int64_t cols, const float *colw, const lb_qspec *spec,
                                   const lb_rtn_opts *opts, lb_qtensor *q) {
    lb_rtn_opts defaults;
    if (!opts) {
        lb_rtn_opts_default(&defaults);
        opts = &defaults;
    }
    if (lb_qspec_is_float(spec)) return lb_fail(LB_ERR_INVALID, "round-to-nearest needs a quantized format");
    lb_grid_kind grid = lb_format_grid(spec);
    lb_status st = check_clip(spec, opts->clip);
    if (st != LB_OK) return st;
    if (opts->clip == LB_CLIP_MSE && (opts->mse_steps < 1 || opts->mse_steps > 10000 ||
                                      !(opts->mse_min_shrink > 0.0f && opts->mse_min_shrink <= 1.0f)))
        return lb_fail(LB_ERR_INVALID, "mse clipping needs 1..10000 steps and a shrink factor in (0, 1]");
    if (opts->ternary_rule != LB_TERNARY_ABSMEAN && opts->ternary_rule != LB_TERNARY_TWN)
        return lb_fail(LB_ERR_INVALID, "unknown ternary rule %d", (int)opts->ternary_rule);
    st = check_finite(w, rows, cols);
    if (st != LB_OK) return st;
    st = lb_qtensor_init(q, spec, rows, cols);
    if (st != LB_OK) return st;
    if (grid == LB_GRID_TRELLIS) { /* nearest for a trellis: the Viterbi search over whole sequences */
        if ((st = lb_trellis_quantize(w, rows, cols, q)) != LB_OK) lb_qtensor_free(q);
        return st;
    }
    if (grid == LB_GRID_LUT) { /* a free codebook per group: unweighted k-means places its levels */
        st = lb_lut_quantize(w, rows, cols, NULL, NULL, NULL, LB_KMEANS_ITERS, LB_KMEANS_INIT_OPTIMAL, q);
        if (st != LB_OK) lb_qtensor_free(q);
        return st;
    }
    if (grid == LB_GRID_ONEBIT) { /* signs and two value vectors: SVID, the rank-1 fit of |W| */
        if ((st = lb_onebit_svid(w, rows, cols, q)) != LB_OK) lb_qtensor_free(q);
        return st;
    }
    if (grid == LB_GRID_SALIENT || grid == LB_GRID_SALIENT_SPLIT) { /* a column mask, then each row's grids */
        st = grid == LB_GRID_SALIENT ? lb_ptq161_rtn(w, rows, cols, q) : lb_billm_rtn(w, rows, cols, q);
        if (st != LB_OK) lb_qtensor_free(q);
        return st;
    }
    if (grid == LB_GRID_LOWRANK_BINARY) { /* no grid per weight: the whole matrix fitted (Dual-SVID + least squares) */
        if ((st = lb_littlebit_quantize(w, rows, cols, NULL, q)) != LB_OK) lb_qtensor_free(q);
        return st;
    }
    if (grid == LB_GRID_VECTOR) { /* vector codebooks: a scale search, then the exact nearest codeword */
        if ((st = lb_vector_rtn(w, rows, cols, colw, q)) != LB_OK) lb_qtensor_free(q);
        return st;
    }

    lb_qtensor_fit_tensor(q, w, rows, cols); /* nvfp4's tensor scale, before the groups */
    float *twn = NULL;
    if (grid == LB_GRID_TERNARY && opts->ternary_rule == LB_TERNARY_TWN) {
        twn = lb_calloc((size_t)q->n_groups, sizeof(float));
        if (!twn) {
            lb_qtensor_free(q);
            return LB_ERR_NOMEM;
        }
    }
    /* weights=magnitude: per-weight error weights (ew, rows x cols), the
     * column weights folded in; every search below reads them by row */
    float *ew = NULL;
    int64_t ew_stride = 0;
    if (opts->magnitude && q->groups_per_row > 0) {
        if (!(ew = lb_alloc((size_t)(rows * cols) * sizeof(float)))) {
            lb_free(twn);
            lb_qtensor_free(q);
            return LB_ERR_NOMEM;
        }
        ew_stride = cols;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c0 = 0; c0 < cols; c0 += q->group_len) {
                int64_t n = cols - c0 < q->group_len ? cols - c0 : q->group_len;
                const float *x = w + r * cols + c0;
                double ss = 0;
                for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
                float rms = (float)sqrt(ss / (double)n);
                for (int64_t i = 0; i < n; i++)
                    ew[r * cols + c0 + i] = (colw ? colw[c0 + i] : 1.0f) * (rms + fabsf(x[i]));
            }
    }
    const float *cw_all = ew ? ew : colw; /* row r's group at c0: cw_all + r * ew_stride + c0 */
    if (q->groups_per_row == 0) {
        fit_group(q, 0, w, rows * cols, NULL, opts, twn); /* one group: the whole tensor (no mse rule) */
    } else {
/* small tensors (and AWQ's many trial roundings of them) stay on one
 * thread: a parallel region costs more than their work, and far more when
 * the cores are oversubscribed */
#pragma omp parallel for schedule(dynamic, 4) if (rows * cols >= RTN_PARALLEL_MIN)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t g = 0; g < q->groups_per_row; g++) {
                int64_t c0 = g * q->group_len;
                int64_t n = cols - c0 < q->group_len ? cols - c0 : q->group_len;
                if (n > 0)
                    fit_group(q, r * q->groups_per_row + g, w + r * cols + c0, n,
                              cw_all ? cw_all + r * ew_stride + c0 : NULL, opts, twn);
            }
    }
    st = lb_qtensor_store_scales(q);
    if (st == LB_OK && spec->scale_bits) {
#pragma omp parallel for schedule(dynamic, 1) if (rows * cols >= RTN_PARALLEL_MIN)
        for (int64_t b = 0; b < q->n_super; b++) hscale_fit_super(q, b, w, cols, cw_all, ew_stride, opts);
    }
    if (st == LB_OK) {
#pragma omp parallel for schedule(static) if (rows * cols >= RTN_PARALLEL_MIN)
        for (int64_t r = 0; r < rows; r++) {
            uint8_t *codes = q->codes + r * q->cols_padded;
            for (int64_t c = 0; c < q->cols_padded; c++) {
                int64_t k = lb_qtensor_group(q, r, c);
                /* padding decodes to (nearly) zero, so kernels may run over it */
                float x = c < cols ? w[r * cols + c] : 0.0f;
                codes[c] = (uint8_t)assign_code(q, k, x, opts, twn);
            }
        }
    }
    lb_free(twn);
    lb_free(ew);
    if (st != LB_OK) lb_qtensor_free(q);
    return st;
}

/* ---- the rtn row ------------------------------------------------------- */

static const char *const clip_choices[] = {"minmax", "mse", "aciq", "aciq-gauss", "aciq-laplace", NULL};
static const char *const weight_choices[] = {"plain", "magnitude", NULL};

static const lb_method_option rtn_options[] = {
    {"clip", LB_OPTION_CHOICE, "minmax",
     "grid range: minmax | mse (best shrink of the range) | aciq (Laplace) | aciq-gauss", 0, 0, clip_choices,
     "clipping rule"},
    {"mse_steps", LB_OPTION_INT, "50", "shrink factors tried by clip=mse", 1, 10000, NULL, NULL},
    {"mse_min_shrink", LB_OPTION_FLOAT, "0.5", "smallest shrink factor tried by clip=mse", 0.001, 1, NULL, NULL},
    {"weights", LB_OPTION_CHOICE, "plain",
     "error weights of the grid searches: plain | magnitude (rms + |w|, ggml's data-free K-quant weighting)", 0, 0,
     weight_choices, "error weighting"},
};

static void rtn_opts_from(const lb_method_opts *o, lb_rtn_opts *ro) {
    lb_rtn_opts_default(ro);
    lb_clip_parse(clip_choices[(int)o->value[0]], &ro->clip);
    ro->mse_steps = (int)o->value[1];
    ro->mse_min_shrink = (float)o->value[2];
    ro->magnitude = (int)o->value[3] == 1;
}

/* The clipping check lb_rtn_quantize makes, here too so a plan fails before
 * any tensor is quantized. */
static lb_status rtn_check(const lb_qspec *spec, const lb_method_opts *o) {
    lb_rtn_opts ro;
    rtn_opts_from(o, &ro);
    return check_clip(spec, ro.clip);
}

static lb_status rtn_quantize_row(const float *w, int64_t rows, int64_t cols, const lb_layer_stats *stats,
                                  const lb_qspec *spec, const lb_method_opts *o, lb_qtensor *q) {
    (void)stats;
    lb_rtn_opts ro;
    rtn_opts_from(o, &ro);
    return lb_rtn_quantize(w, rows, cols, spec, &ro, q);
}

const lb_method lb_method_rtn = {
    .name = "rtn",
    .summary = "round-to-nearest on a per-group grid chosen from the weights alone (data-free)",
    .stats = LB_STATS_NONE,
    .options = rtn_options,
    .n_options = (int)(sizeof rtn_options / sizeof rtn_options[0]),
    .check = rtn_check,
    .quantize = rtn_quantize_row,
};
