/* Static activation ranges: the clip threshold T of a per-tensor symmetric
 * activation quantizer (lowbit/linear.h, LB_AQ_TENSOR: delta = T / qmax,
 * qmax = 2^(b-1) - 1), chosen from calibration statistics of the linear's
 * input: the histogram of every x (lb_layer_stats.hist, hist_bins equal bins
 * over [-R, R)) and the exact max |x| per channel.
 *
 * The histogram is first folded to |x| (bin k: |x| in [k w, (k+1) w),
 * w = 2R / hist_bins), because the quantizer is symmetric. Rules:
 *
 *   minmax      T = max |x| (exact, from max_abs_x when present)
 *   p<P>        T = the P-th percentile of |x|, linear inside its bin, at most max |x|
 *   kl          TensorRT's entropy calibration (Migacz, "8-bit Inference
 *               with TensorRT", GTC 2017; as MXNet's and TVM's
 *               _get_optimal_threshold): for every candidate of i bins,
 *               i = 2^(b-1) .. (last nonzero bin + 1): the reference P is the
 *               first i bins with the mass beyond them added to bin i-1; Q
 *               merges those i bins (without the outliers) into 2^(b-1)
 *               groups (i / 2^(b-1) bins each, the last taking the rest) and
 *               spreads each group's count evenly over its nonzero bins; both
 *               smoothed (eps = 1e-4 moved onto zero bins, as MXNet) and
 *               normalized; T = i w for the i with least KL(P || Q).
 *               TensorRT quantizes into 128 bins for int8; here 2^(b-1) for b
 *               bits (8 for int4).
 *   mse         T minimizing the expected squared error of quantize-then-
 *               dequantize over the histogram, values uniform inside their
 *               bin: rounding error integrated exactly piece by piece between
 *               the decision boundaries (m + 1/2) delta for bins narrower than
 *               4 delta (delta^2 / 12 otherwise), clipping error (|x| - T)^2
 *               integrated exactly above T. Candidates: bin edges, searched
 *               with a stride of nb/512 bins then every edge around the best,
 *               and max |x|.
 *
 * Deviations: TensorRT's histogram spans [0, max|x|] with 2048 bins; ours is
 * calibration's, [0, R) with hist_bins / 2 bins where R is the power of two
 * above max |x|, so as few as hist_bins / 4 bins cover the data. That is why
 * calibration collects 8192 bins by default (docs/CALIBRATION.md): at least
 * TensorRT's 2048 bins over [0, max |x|]. Deterministic: integer counts,
 * sums in a fixed order, ties to the smaller threshold. */
#include <math.h>
#include <string.h>

#include "lowbit/calib.h"

#define KL_EPS 1e-4

/* folded |x| histogram: f[k], k < half */
typedef struct {
    double *f;
    int half, nb; /* nb: last nonzero bin + 1 */
    double w, total, amax;
} folded;

static lb_status fold(const int64_t *hist, int bins, double range, double max_abs, folded *h) {
    memset(h, 0, sizeof *h);
    if (!hist || bins < 4 || bins % 2 || bins > (1 << 24))
        return lb_fail(LB_ERR_INVALID, "activation range: a histogram of %d bins (need an even count >= 4)", bins);
    if (!(range > 0.0) || !isfinite(range))
        return lb_fail(LB_ERR_INVALID, "activation range: histogram range %g (every x was 0, or it is broken)", range);
    if (!(max_abs >= 0.0) || !isfinite(max_abs))
        return lb_fail(LB_ERR_INVALID, "activation range: max |x| is %g", max_abs);
    h->half = bins / 2;
    h->w = range / h->half;
    if (!(h->f = lb_calloc((size_t)h->half, sizeof(double)))) return LB_ERR_NOMEM;
    for (int k = 0; k < h->half; k++) {
        int64_t a = hist[h->half + k], b = hist[h->half - 1 - k];
        if (a < 0 || b < 0) {
            lb_free(h->f);
            h->f = NULL;
            return lb_fail(LB_ERR_INVALID, "activation range: negative histogram count");
        }
        h->f[k] = (double)a + (double)b;
        h->total += h->f[k];
        if (h->f[k] > 0) h->nb = k + 1;
    }
    if (h->nb == 0) {
        lb_free(h->f);
        h->f = NULL;
        return lb_fail(LB_ERR_INVALID, "activation range: the histogram is empty or every x is 0");
    }
    /* exact max |x| when known (it lies inside bin nb-1), else that bin's upper edge */
    h->amax = max_abs > 0.0 ? fmin(max_abs, h->nb * h->w) : h->nb * h->w;
    return LB_OK;
}

static double percentile(const folded *h, double p) {
    double target = p / 100.0 * h->total, cum = 0.0;
    if (p >= 100.0) return h->amax;
    for (int k = 0; k < h->nb; k++) {
        if (cum + h->f[k] >= target) {
            double t = (k + (h->f[k] > 0 ? (target - cum) / h->f[k] : 0.0)) * h->w;
            return fmin(t, h->amax);
        }
        cum += h->f[k];
    }
    return h->amax;
}

/* MXNet's _smooth_distribution: eps onto the zero entries, taken evenly from
 * the others; 0 when every entry is zero */
static int smooth(double *d, int n) {
    int zeros = 0;
    for (int k = 0; k < n; k++) zeros += d[k] == 0.0;
    if (zeros == n) return 0;
    double eps1 = KL_EPS * zeros / (n - zeros);
    for (int k = 0; k < n; k++) d[k] += d[k] == 0.0 ? KL_EPS : -eps1;
    return 1;
}

static lb_status kl_threshold(const folded *h, int bits, double *out) {
    int nq = 1 << (bits - 1);
    if (h->nb <= nq) { /* the data fits in fewer bins than levels: nothing to clip */
        *out = h->amax;
        return LB_OK;
    }
    double *p = lb_alloc((size_t)h->nb * sizeof(double)), *q = lb_alloc((size_t)h->nb * sizeof(double));
    if (!p || !q) {
        lb_free(p);
        lb_free(q);
        return LB_ERR_NOMEM;
    }
    double beyond = 0.0; /* mass in bins >= i */
    for (int k = nq; k < h->nb; k++) beyond += h->f[k];
    double best = INFINITY;
    int best_i = h->nb;
    for (int i = nq; i <= h->nb; i++) {
        memcpy(p, h->f, (size_t)i * sizeof(double));
        p[i - 1] += beyond;
        int merged = i / nq;
        for (int j = 0; j < nq; j++) {
            int start = j * merged, stop = j == nq - 1 ? i : start + merged, nonzero = 0;
            double sum = 0.0;
            for (int k = start; k < stop; k++) {
                sum += h->f[k];
                nonzero += h->f[k] != 0.0;
            }
            for (int k = start; k < stop; k++) q[k] = h->f[k] != 0.0 ? sum / nonzero : 0.0;
        }
        double kl = INFINITY;
        if (smooth(p, i) && smooth(q, i)) {
            double sp = 0.0, sq = 0.0;
            for (int k = 0; k < i; k++) {
                sp += p[k];
                sq += q[k];
            }
            kl = 0.0;
            for (int k = 0; k < i; k++) {
                double pk = p[k] / sp, qk = q[k] / sq;
                if (pk > 0.0) kl += pk * log(pk / qk);
            }
        }
        if (kl < best) {
            best = kl;
            best_i = i;
        }
        if (i < h->nb) beyond -= h->f[i];
    }
    lb_free(p);
    lb_free(q);
    *out = fmin(best_i * h->w, h->amax);
    return LB_OK;
}

/* integral over [a, b] of (x - c)^2 dx */
static double sq_int(double a, double b, double c) { return ((b - c) * (b - c) * (b - c) - (a - c) * (a - c) * (a - c)) / 3.0; }

/* expected squared error per value (times the count) of clipping at t with
 * qmax levels per side, values uniform inside their bins */
static double mse_at(const folded *h, double t, double qmax) {
    double delta = t / qmax, err = 0.0;
    for (int k = 0; k < h->nb; k++) {
        if (h->f[k] == 0.0) continue;
        double a = k * h->w, b = (k + 1) * h->w, e = 0.0;
        if (b > t) { /* the clipped part, every value there goes to t */
            double lo = fmax(a, t);
            e += sq_int(lo, b, t);
            b = lo;
        }
        if (b > a) { /* the part inside [0, t]: rounding */
            if (b - a > 4.0 * delta) {
                e += (b - a) * delta * delta / 12.0;
            } else {
                for (double x = a; x < b;) {
                    double m = floor(x / delta + 0.5), edge = fmin(b, (m + 0.5) * delta);
                    if (!(edge > x)) edge = b; /* rounding at a boundary: never loop */
                    e += sq_int(x, edge, m * delta);
                    x = edge;
                }
            }
        }
        err += h->f[k] * e / h->w;
    }
    return err;
}

static double mse_threshold(const folded *h, int bits) {
    double qmax = (double)((1 << (bits - 1)) - 1);
    int stride = h->nb > 512 ? (h->nb + 511) / 512 : 1, best_k = h->nb;
    double best = INFINITY;
    for (int k = stride; k <= h->nb; k += stride) {
        double e = mse_at(h, fmin(k * h->w, h->amax), qmax);
        if (e < best) best = e, best_k = k;
    }
    int lo = best_k - stride < 1 ? 1 : best_k - stride, hi = best_k + stride > h->nb ? h->nb : best_k + stride;
    for (int k = lo; k <= hi; k++) {
        double e = mse_at(h, fmin(k * h->w, h->amax), qmax);
        if (e < best) best = e, best_k = k;
    }
    double t = fmin(best_k * h->w, h->amax);
    if (mse_at(h, h->amax, qmax) < best) t = h->amax;
    return t;
}

lb_status lb_act_range_from_hist(const int64_t *hist, int bins, double range, double max_abs, const lb_act_quant *a,
                                 float *clip) {
    *clip = 0.0f;
    if (a->kind != LB_AQ_TENSOR)
        return lb_fail(LB_ERR_INVALID, "activation range: only a static (per-tensor) quantizer has a range to calibrate");
    lb_status st = lb_act_check(a, 0);
    if (st != LB_OK) return st;
    folded h;
    if ((st = fold(hist, bins, range, max_abs, &h)) != LB_OK) return st;
    double t = h.amax;
    switch (a->rule) {
    case LB_ACT_RANGE_MINMAX:
        break;
    case LB_ACT_RANGE_PERCENTILE:
        t = percentile(&h, a->percentile);
        break;
    case LB_ACT_RANGE_KL:
        st = kl_threshold(&h, a->bits, &t);
        break;
    case LB_ACT_RANGE_MSE:
        t = mse_threshold(&h, a->bits);
        break;
    }
    lb_free(h.f);
    if (st != LB_OK) return st;
    if (!(t > 0.0) || !isfinite(t) || t > 3.4e38)
        return lb_fail(LB_ERR_NUMERIC, "activation range: threshold %g is unusable", t);
    *clip = (float)t;
    return LB_OK;
}

lb_status lb_act_range(const lb_layer_stats *s, const lb_act_quant *a, float *clip) {
    *clip = 0.0f;
    if (!s || !s->hist)
        return lb_fail(LB_ERR_INVALID, "a static activation range needs the input's histogram in the calibration "
                                       "statistics (collected by default)");
    double amax = 0.0;
    if (s->max_abs_x)
        for (int64_t j = 0; j < s->cols; j++) amax = fmax(amax, (double)s->max_abs_x[j]);
    return lb_act_range_from_hist(s->hist, s->hist_bins, s->hist_range, amax, a, clip);
}
