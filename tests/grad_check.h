/* Finite-difference gradient checks shared by the training tests
 * (test_train_grad.c, test_train_distill.c, test_blockrec.c): the numeric gradient by a
 * fourth-order central stencil, and a criterion on the whole vector and on
 * its worst element that must also reject a gradient 1% wrong in one
 * element. The includer may set FD_REL / FD_ELEM before including. */
#ifndef LB_TESTS_GRAD_CHECK_H
#define LB_TESTS_GRAD_CHECK_H

#include <math.h>
#include <stdlib.h>

#include "test.h"

#ifndef FD_REL
#define FD_REL 1e-3 /* relative error of the gradient vector */
#endif
#ifndef FD_ELEM
#define FD_ELEM 3e-3 /* worst element's error, relative to the largest element */
#endif

/* relative vector error and worst element error (relative to the largest) */
static inline int grad_close(const char *what, const double *num, const float *ana, size_t n, int verbose) {
    double dd = 0, nn = 0, aa = 0, amax = 0, emax = 0;
    for (size_t i = 0; i < n; i++) {
        double d = num[i] - ana[i];
        dd += d * d;
        nn += num[i] * num[i];
        aa += (double)ana[i] * ana[i];
        if (fabs(ana[i]) > amax) amax = fabs(ana[i]);
        if (fabs(d) > emax) emax = fabs(d);
    }
    double rel = sqrt(dd) / fmax(fmax(sqrt(nn), sqrt(aa)), 1e-30), elem = emax / fmax(amax, 1e-30);
    if (verbose) printf("  %-28s n=%-5zu |grad| %.3e  rel err %.2e  worst elem %.2e\n", what, n, sqrt(aa), rel, elem);
    return rel < FD_REL && elem < FD_ELEM && amax > 0;
}

/* the criterion must reject a gradient 1% wrong in one element */
static inline void check_grad(const char *what, const double *num, const float *ana, size_t n) {
    CHECK_MSG(grad_close(what, num, ana, n, 1), "%s: analytic gradient disagrees with finite differences", what);
    float *bad = malloc(n * sizeof(float));
    size_t worst = 0;
    for (size_t i = 0; i < n; i++) {
        bad[i] = ana[i];
        if (fabs(ana[i]) > fabs(ana[worst])) worst = i;
    }
    bad[n / 2] += 0.01f * fabsf(ana[worst]);
    CHECK_MSG(!grad_close(what, num, bad, n, 0), "%s: the check would not see a 1%% error", what);
    free(bad);
}

/* the derivative of loss() in x[i] alone: the fourth-order central stencil
 * (8 (L(x+h) - L(x-h)) - (L(x+2h) - L(x-2h))) / 12h; x[i] is restored */
typedef double (*loss_fn)(void *ctx);
static inline double numeric_grad_at(loss_fn f, void *ctx, float *x, size_t i, float h) {
    float x0 = x[i];
    double l[4];
    const float steps[4] = {h, -h, 2 * h, -2 * h};
    for (int s = 0; s < 4; s++) {
        x[i] = x0 + steps[s];
        l[s] = f(ctx);
    }
    x[i] = x0;
    return (8.0 * (l[0] - l[1]) - (l[2] - l[3])) / (12.0 * (double)h);
}

/* numeric gradient of loss() with respect to x[0..n) */
static inline void numeric_grad(loss_fn f, void *ctx, float *x, size_t n, float h, double *out) {
    for (size_t i = 0; i < n; i++) out[i] = numeric_grad_at(f, ctx, x, i, h);
}

#endif
