/* A tiny test harness: CHECK macros count failures and keep going; a test
 * that cannot run (missing data) says so and exits 77, which CTest reports
 * as skipped rather than passed. */
#ifndef LB_TEST_H
#define LB_TEST_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* mkdtemp, fileno */
#endif

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lowbit.h"

static int lb_test_failures, lb_test_checks;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        lb_test_checks++;                                                             \
        if (!(cond)) {                                                                \
            lb_test_failures++;                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);  \
        }                                                                             \
    } while (0)

#define CHECK_MSG(cond, ...)                                                          \
    do {                                                                              \
        lb_test_checks++;                                                             \
        if (!(cond)) {                                                                \
            lb_test_failures++;                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);  \
            fprintf(stderr, __VA_ARGS__);                                             \
            fputc('\n', stderr);                                                      \
        }                                                                             \
    } while (0)

#define CHECK_OK(expr)                                                                \
    do {                                                                              \
        lb_status st_ = (expr);                                                       \
        lb_test_checks++;                                                             \
        if (st_ != LB_OK) {                                                           \
            lb_test_failures++;                                                       \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #expr,      \
                    lb_last_error());                                                 \
        }                                                                             \
    } while (0)

/* expr must fail with status `want` and a message containing `needle` */
#define CHECK_FAILS(expr, want, needle)                                               \
    do {                                                                              \
        lb_status st_ = (expr);                                                       \
        lb_test_checks++;                                                             \
        if (st_ != (want) || !strstr(lb_last_error(), (needle))) {                    \
            lb_test_failures++;                                                       \
            fprintf(stderr, "%s:%d: %s: want status %d with '%s', got %d: %s\n",     \
                    __FILE__, __LINE__, #expr, (int)(want), (needle), (int)st_,       \
                    st_ == LB_OK ? "(ok)" : lb_last_error());                         \
        }                                                                             \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                         \
    do {                                                                              \
        double a_ = (double)(a), b_ = (double)(b);                                    \
        lb_test_checks++;                                                             \
        if (!(fabs(a_ - b_) <= (tol))) {                                              \
            lb_test_failures++;                                                       \
            fprintf(stderr, "%s:%d: %s = %.9g, want %s = %.9g (tol %g)\n", __FILE__,  \
                    __LINE__, #a, a_, #b, b_, (double)(tol));                         \
        }                                                                             \
    } while (0)

/* Path of a file under ../shared/data; exits 77 (skipped) when missing. */
static inline const char *lb_test_data(const char *rel) {
    static char paths[8][512];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, 512, "%s/%s", LB_DATA_DIR, rel);
    FILE *f = fopen(p, "rb");
    if (!f) {
        fprintf(stderr, "SKIPPED: data file %s is missing (shared/ must sit beside the checkout)\n", p);
        exit(77);
    }
    fclose(f);
    return p;
}

/* Method m's default options with "key=value key=value" (or "") applied. */
static inline lb_status lb_test_method_opts(const lb_method *m, const char *kv, lb_method_opts *o) {
    if (!m) return lb_fail(LB_ERR_INVALID, "no such method");
    lb_method_opts_default(m, o);
    char buf[256];
    snprintf(buf, sizeof buf, "%s", kv);
    char *save = NULL;
    for (char *tok = strtok_r(buf, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        lb_status st = lb_method_opts_parse(o, tok);
        if (st != LB_OK) return st;
    }
    return LB_OK;
}

/* A format spec from its text; a spec the test itself got wrong ends the test. */
static inline lb_qspec lb_test_spec(const char *text) {
    lb_qspec s;
    if (lb_qspec_parse(text, &s) != LB_OK) {
        fprintf(stderr, "bad spec in the test: %s\n", lb_last_error());
        exit(1);
    }
    return s;
}

/* The logits (n x vocab) of the model over tokens tok[0..n), from position 0. */
static inline lb_status lb_test_logits(const lb_model *m, const int *tok, int n, float *logits) {
    lb_state *s;
    lb_status st = lb_state_create(m, n, &s);
    if (st != LB_OK) return st;
    st = lb_forward(m, s, tok, n, 0, logits);
    lb_state_free(s);
    return st;
}

static inline int lb_test_finish(const char *name) {
    if (lb_test_checks == 0) {
        fprintf(stderr, "%s: no checks ran\n", name);
        return 1;
    }
    printf("%s: %d checks, %d failed\n", name, lb_test_checks, lb_test_failures);
    return lb_test_failures ? 1 : 0;
}

#endif
