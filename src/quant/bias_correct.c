/* Bias correction: the mean output shift a quantized weight causes, put
 * back through the bias.
 *
 * Papers: Nagel et al. 2019, "Data-Free Quantization Through Weight
 * Equalization and Bias Correction" (arXiv:1906.04721), and Banner et al.
 * 2019 (ACIQ) (METHODS.md s20).
 *
 * Objective: with W the weight the method was given and W' the one the
 * linear computes with (the dequantized dense part plus any sparse part),
 * the output error is (W' - W) x; its expectation over the input is
 * (W' - W) E[x]. Adding b = (W - W') E[x] to the bias makes the expected
 * output of the quantized linear equal the original's:
 *   E[W' x + b] = W' E[x] + (W - W') E[x] = W E[x].
 * E[x] is the calibration mean of this linear's input (LB_STATS_MEAN_X,
 * collected on the calibration split only).
 *
 * Deviations: DFQ derives E[x] from the preceding BatchNorm when there is
 * no data; Llama has none, so lowbit always uses the calibration mean.
 * Banner's per-channel weight mean/variance correction is not done. The
 * correction is rounded to fp16 (when it fits) so that it can be stored in
 * 16 bits per output; it is added to whatever bias the linear already has.
 * Llama linears have none, so each corrected linear gains rows x 16 bits,
 * counted in bpw. */
#include "quant/outliers.h"

#include <math.h>

lb_status lb_bias_correction(const float *w, const float *eff, int64_t rows, int64_t cols, const float *mean_x,
                             float *bias) {
    for (int64_t c = 0; c < cols; c++)
        if (!isfinite(mean_x[c]))
            return lb_fail(LB_ERR_NUMERIC, "calibration mean of input %lld is %g", (long long)c, (double)mean_x[c]);
    for (int64_t r = 0; r < rows; r++) {
        double s = 0; /* in double, in column order: the same sum on every thread count */
        for (int64_t c = 0; c < cols; c++) s += ((double)w[r * cols + c] - eff[r * cols + c]) * mean_x[c];
        float v = (float)s, h = lb_round_fp16(v);
        bias[r] = isfinite(h) ? h : v;
        if (!isfinite(bias[r]))
            return lb_fail(LB_ERR_NUMERIC, "bias correction of output %lld is not finite", (long long)r);
    }
    return LB_OK;
}
