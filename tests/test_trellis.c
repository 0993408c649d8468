/* The trellis quantizer (src/quant/trellis.c) on problems with known
 * answers: the Viterbi search against brute force over every code stream of
 * small trellises (open and circular, every overlap), decode reproducing the
 * cost the search reports, tail-biting storing exactly k bits per weight,
 * the 1MAD codebook's moments, and bad parameters refused. */
#include "test.h"

#include <math.h>

#include "quant/trellis.h"

static lb_rng g;

/* squared error of a circular stream */
static double stream_error(const lb_trellis *t, const uint8_t *codes, int T, const float *x) {
    float y[64];
    lb_trellis_decode(t, codes, T, y);
    double e = 0;
    for (int i = 0; i < T; i++) e += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
    return e;
}

/* every circular stream: the best per overlap, and the best of all */
static void brute_circular(const lb_trellis *t, const float *x, int T, double *per_overlap, double *all) {
    const int k = t->k, P = 1 << (t->L - k);
    uint8_t codes[64];
    for (int o = 0; o < P; o++) per_overlap[o] = INFINITY;
    *all = INFINITY;
    for (uint64_t v = 0; v < 1ull << (k * T); v++) {
        for (int i = 0; i < T; i++) codes[i] = (uint8_t)(v >> (i * k) & ((1u << k) - 1));
        double e = stream_error(t, codes, T, x);
        uint32_t o = 0; /* the overlap: the last L/k - 1 codes, newest lowest */
        for (int j = 1; j < t->L / k; j++) o |= (uint32_t)codes[T - j] << ((j - 1) * k);
        if (e < per_overlap[o]) per_overlap[o] = e;
        if (e < *all) *all = e;
    }
}

/* open streams: any start state, then T codes */
static double brute_open(const lb_trellis *t, const float *x, int T) {
    const int k = t->k, L = t->L;
    double best = INFINITY;
    for (uint32_t s0 = 0; s0 < 1u << L; s0++)
        for (uint64_t v = 0; v < 1ull << (k * (T - 1)); v++) {
            uint32_t s = s0;
            double e = ((double)x[0] - t->table[s]) * ((double)x[0] - t->table[s]);
            for (int i = 1; i < T; i++) {
                s = (s << k | (uint32_t)(v >> ((i - 1) * k) & ((1u << k) - 1))) & ((1u << L) - 1);
                e += ((double)x[i] - t->table[s]) * ((double)x[i] - t->table[s]);
            }
            if (e < best) best = e;
        }
    return best;
}

static void test_against_brute_force(void) {
    static const int cases[][3] = {{4, 1, 10}, {4, 2, 6}, {6, 2, 8}, {6, 3, 6}, {8, 4, 5}, {4, 1, 13}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int L = cases[c][0], k = cases[c][1], T = cases[c][2];
        lb_trellis t;
        lb_trellis_work w;
        CHECK_OK(lb_trellis_init(&t, L, k));
        CHECK_OK(lb_trellis_work_init(&w, &t, T));
        for (int rep = 0; rep < 3; rep++) {
            float x[64];
            for (int i = 0; i < T; i++) x[i] = (float)lb_rng_normal(&g);
            double per[256], all;
            brute_circular(&t, x, T, per, &all);
            uint8_t codes[64];
            double worst = 0, best_v = INFINITY;
            for (int o = 0; o < 1 << (L - k); o++) {
                double v = lb_trellis_viterbi(&t, &w, x, T, o, codes, NULL);
                worst = fmax(worst, fabs(v - per[o]) / (per[o] + 1e-9));
                CHECK_NEAR(stream_error(&t, codes, T, x), v, 1e-4 * (v + 1e-6)); /* the codes give that cost */
                best_v = fmin(best_v, v);
            }
            CHECK_MSG(worst < 1e-5, "L=%d k=%d T=%d: Viterbi off brute force by %g (relative)", L, k, T, worst);
            CHECK_NEAR(best_v, all, 1e-5 * all);
            /* open streams */
            uint32_t s0;
            double vo = lb_trellis_viterbi(&t, &w, x, T, -1, codes, &s0), bo = brute_open(&t, x, T);
            CHECK_MSG(fabs(vo - bo) < 1e-5 * (bo + 1e-9), "L=%d k=%d T=%d open: %g vs brute %g", L, k, T, vo, bo);
            CHECK((s0 & ((1u << k) - 1)) == codes[0]);
            /* tail-biting: the codes decode to the cost reported, which is the
             * exhaustive optimum among the streams of the overlap it chose
             * (the choice itself is a heuristic: measured in bench_rd) */
            if (T >= 2 * L / k) {
                double e = lb_trellis_encode(&t, &w, x, T, codes);
                CHECK_NEAR(stream_error(&t, codes, T, x), e, 1e-4 * (e + 1e-6));
                uint32_t o = 0;
                for (int j = 1; j < L / k; j++) o |= (uint32_t)codes[T - j] << ((j - 1) * k);
                CHECK_MSG(fabs(e - per[o]) < 1e-5 * (per[o] + 1e-9), "L=%d k=%d T=%d: tail-biting %g, its overlap's optimum %g",
                          L, k, T, e, per[o]);
                CHECK(e >= all - 1e-6 * all);
            }
        }
        lb_trellis_work_free(&w);
        lb_trellis_free(&t);
    }
}

/* 1MAD: a sum of four uniform bytes, centred, unit variance over all 2^16 states */
static void test_1mad(void) {
    double m = 0, v = 0;
    float lo = INFINITY, hi = -INFINITY;
    for (uint32_t s = 0; s < 1u << 16; s++) {
        float y = lb_trellis_1mad(s);
        m += y;
        v += (double)y * y;
        lo = fminf(lo, y);
        hi = fmaxf(hi, y);
    }
    m /= 65536.0;
    v = v / 65536.0 - m * m;
    printf("  1MAD over 2^16 states: mean %.4f, variance %.4f, range %.2f .. %.2f\n", m, v, lo, hi);
    CHECK(fabs(m) < 0.02 && fabs(v - 1.0) < 0.03 && lo > -3.5f && hi < 3.5f);
    CHECK(lb_trellis_1mad(0) == (float)((int)(76625530u & 255) + (int)(76625530u >> 8 & 255) +
                                         (int)(76625530u >> 16 & 255) + (int)(76625530u >> 24) - 510) /
                                    147.800537f);
}

static void test_bad(void) {
    lb_trellis t;
    CHECK_FAILS(lb_trellis_init(&t, 12, 5), LB_ERR_INVALID, "k in 1..4");
    CHECK_FAILS(lb_trellis_init(&t, 10, 4), LB_ERR_INVALID, "dividing L");
    CHECK_FAILS(lb_trellis_init(&t, 18, 2), LB_ERR_INVALID, "L <= 16");
    CHECK(t.table == NULL);
}

int main(void) {
    lb_rng_seed(&g, 7);
    test_1mad();
    test_against_brute_force();
    test_bad();
    return lb_test_finish("test_trellis");
}
