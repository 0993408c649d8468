/* AQLM's additive encoding of the vq family's residual stages
 * (src/quant/aqlm.c; docs/methods/vq.md "AQLM"). Internal to src/quant;
 * the tests reach the pieces through it. */
#ifndef LB_QUANT_AQLM_H
#define LB_QUANT_AQLM_H

#include "lowbit/format.h"

#define LB_AQLM_MAX_BEAM 256
#define LB_AQLM_MAX_ROUNDS 100

/* The objective after each step: objective[0] at the residual-VQ start,
 * then after each round's codebook step (odd entries) and code step (even
 * entries); n entries. */
typedef struct {
    int n;
    double objective[2 * LB_AQLM_MAX_ROUNDS + 1];
} lb_aqlm_trace;

/* Beam search over the M codes of one vector x (d values, weights wt >= 0;
 * NULL: 1): books holds M codebooks of K codewords of d values (codebook m,
 * codeword k at books + (m K + k) d), scales the M stage scales, and the
 * value of codes b is sum_m scales[m] books_m[b_m]. Starting from the tuple
 * in codes (the beam's one entry), for m = 0..M-1 every entry is extended
 * by all K choices of code m and the `beam` tuples of least weighted squared
 * error sum_i wt_i (x_i - value_i)^2 kept (ties: the earlier entry, then
 * the lower code). With beam >= K^(M-1) no tuple is ever dropped, so the
 * result is the best of all K^M. codes gets the best tuple found if its
 * error is lower than the starting tuple's (else it is left as it was);
 * returns the error of what codes holds. scratch: lb_aqlm_beam_scratch(...)
 * doubles. Serial. */
size_t lb_aqlm_beam_scratch(int d, int M, int64_t K, int beam);
double lb_aqlm_beam_search(const float *x, const float *wt, int d, int M, int64_t K, const float *books,
                           const float *scales, int beam, uint16_t *codes, double *scratch);

/* AQLM on a vq<d>x<c>:r<M> tensor (M >= 2; q lb_qtensor_init'ed for the
 * spec): the residual-VQ start (lb_rtn_quantize_weighted with colw), then
 * `rounds` rounds of (codebooks and scales refit by least squares with the
 * codes fixed; codes by beam search with the codebooks fixed) on the
 * objective sum_{r,c} colw[c] keepw(r, c) (w - q)^2 (colw NULL: 1; keep
 * NULL: every weight counts, else weights with keep[r cols + c] count 0),
 * stopping early when a round lowers it by less than 1e-4 relatively. No
 * step raises the objective. trace may be NULL. Deterministic for any
 * thread count. */
lb_status lb_aqlm_quantize(const float *w, int64_t rows, int64_t cols, const float *colw, const uint8_t *keep,
                           const lb_qspec *spec, int beam, int rounds, lb_qtensor *q, lb_aqlm_trace *trace);

/* The least-squares step alone on q (vq, M >= 2, codes as they are):
 * codebooks (jointly where M K <= 1024, else one stage at a time) and
 * scales refit, rounded to fp16, undone if that raised the objective;
 * *objective gets the objective after it. */
lb_status lb_aqlm_refit(lb_qtensor *q, const float *w, int64_t cols, const float *colw, const uint8_t *keep,
                        double *objective);

/* The objective above for what q holds. */
double lb_aqlm_objective(const lb_qtensor *q, const float *w, int64_t cols, const float *colw, const uint8_t *keep);

#endif
