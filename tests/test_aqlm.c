/* AQLM on the vq family's summed codebooks (src/quant/aqlm.c), on known
 * answers: the beam search against brute force over every code tuple; a
 * vector that IS a sum of codewords, which greedy residual coding misses and
 * the joint search finds exactly; the objective never rising over the
 * rounds and ending below the residual-VQ start (rtn's) on the same input;
 * rounds=0 is rtn byte for byte; the method row's refusals and its
 * statistics depending on hweight; thread-count independence. */
#include "test.h"

#include "quant/aqlm.h"
#include "quant/method_rows.h"

static lb_rng g;

static float unif(void) { return 2.0f * lb_rng_f32(&g) - 1.0f; }

/* the error of the best of all K^M tuples, by enumeration */
static double brute_force(const float *x, const float *wt, int d, int M, int K, const float *books,
                          const float *scales, uint16_t *best) {
    double min = INFINITY;
    int n = 1;
    for (int m = 0; m < M; m++) n *= K;
    for (int t = 0; t < n; t++) {
        uint16_t b[LB_VEC_MAX_STAGES];
        for (int m = 0, u = t; m < M; m++, u /= K) b[m] = (uint16_t)(u % K);
        double e = 0;
        for (int i = 0; i < d; i++) {
            double v = 0;
            for (int m = 0; m < M; m++) v += (double)scales[m] * books[(m * K + b[m]) * d + i];
            e += (double)wt[i] * (x[i] - v) * (x[i] - v);
        }
        if (e < min) min = e, memcpy(best, b, sizeof b);
    }
    return min;
}

static void test_beam_vs_brute_force(void) {
    enum { D = 3, M = 3, K = 4 };
    float books[M * K * D], scales[M], x[D], wt[D];
    double *scratch = malloc(lb_aqlm_beam_scratch(D, M, K, 64) * sizeof(double));
    int below_greedy_start = 0;
    for (int trial = 0; trial < 200; trial++) {
        for (int i = 0; i < M * K * D; i++) books[i] = unif();
        for (int m = 0; m < M; m++) scales[m] = 0.5f + lb_rng_f32(&g);
        for (int i = 0; i < D; i++) x[i] = 2.0f * unif(), wt[i] = trial % 2 ? 0.1f + lb_rng_f32(&g) : 1.0f;
        uint16_t want[LB_VEC_MAX_STAGES];
        double best = brute_force(x, wt, D, M, K, books, scales, want);
        /* beam >= K^(M-1) keeps every tuple: the brute-force optimum, from any start */
        static const int beams[] = {K * K, 64};
        for (int bi = 0; bi < 2; bi++) {
            uint16_t codes[M] = {(uint16_t)(trial % K), (uint16_t)(trial / 4 % K), (uint16_t)(trial / 16 % K)};
            double e = lb_aqlm_beam_search(x, wt, D, M, K, books, scales, beams[bi], codes, scratch);
            CHECK_MSG(fabs(e - best) <= 1e-9 * (1 + best), "trial %d beam %d: %.12g, brute force %.12g", trial,
                      beams[bi], e, best);
        }
        /* a small beam never returns worse than where it started */
        for (int beam = 1; beam <= 3; beam++) {
            uint16_t codes[M] = {(uint16_t)(trial % K), 1, 2}, start[M];
            memcpy(start, codes, sizeof codes);
            double e0 = 0;
            for (int i = 0; i < D; i++) {
                double v = 0;
                for (int m = 0; m < M; m++) v += (double)scales[m] * books[(m * K + start[m]) * D + i];
                e0 += (double)wt[i] * (x[i] - v) * (x[i] - v);
            }
            double e = lb_aqlm_beam_search(x, wt, D, M, K, books, scales, beam, codes, scratch);
            CHECK_MSG(e <= e0 && e >= best - 1e-9 * (1 + best), "beam %d: %g from %g (best %g)", beam, e, e0, best);
            below_greedy_start += e < e0;
        }
    }
    CHECK(below_greedy_start > 100); /* the search does move */
    free(scratch);
}

/* Two codebooks of 4 two-dimensional codewords; every vector is exactly
 * C1[i] + C2[j] (values exact in float). For x = C1[1] + C2[1] = (2, 0):
 * greedy stage 1 takes C1's nearest codeword, C1[2] = (2.375, 0) (squared
 * distance 0.14, against 1 for C1[1]); what is left, (-0.375, 0), is
 * nearest to C2[0] = (0, 0.5), leaving a squared error of 0.39. The joint
 * search from the greedy codes (beam K = K^(M-1): exhaustive) finds every
 * vector exactly. */
static void test_greedy_misses_joint_finds(void) {
    enum { D = 2, M = 2, K = 4 };
    const float books[M * K * D] = {/* C1 */ 0, 0, 1, 0, 2.375f, 0, 0, 3,
                                    /* C2 */ 0, 0.5f, 1, 0, 0, -2, -3, 1};
    const float scales[M] = {1, 1};
    double *scratch = malloc(lb_aqlm_beam_scratch(D, M, K, 8) * sizeof(double));
    int greedy_missed = 0;
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++) {
            float x[D];
            for (int c = 0; c < D; c++) x[c] = books[i * D + c] + books[(K + j) * D + c];
            /* greedy residual coding, stage by stage */
            uint16_t codes[M];
            float res[D] = {x[0], x[1]};
            for (int m = 0; m < M; m++) {
                double be = INFINITY;
                for (int k = 0; k < K; k++) {
                    double e = 0;
                    for (int c = 0; c < D; c++) e += (res[c] - books[(m * K + k) * D + c]) * (res[c] - books[(m * K + k) * D + c]);
                    if (e < be) be = e, codes[m] = (uint16_t)k;
                }
                for (int c = 0; c < D; c++) res[c] -= books[(m * K + codes[m]) * D + c];
            }
            double greedy = res[0] * res[0] + res[1] * res[1];
            greedy_missed += greedy > 0;
            if (i == 1 && j == 1) CHECK_MSG(greedy > 0.1, "greedy error %g at (1, 1)", greedy);
            double e = lb_aqlm_beam_search(x, NULL, D, M, K, books, scales, K, codes, scratch);
            CHECK_MSG(e == 0.0, "(%d, %d): joint search error %g (greedy %g)", i, j, e, greedy);
        }
    CHECK(greedy_missed >= 2);
    free(scratch);
}

/* The objective at every step no higher than at the one before, the last
 * below the residual-VQ start, and equal to the objective of what is
 * returned; rounds=0 is that start (rtn, weighted the same). */
static void test_descent_and_never_worse(void) {
    enum { R = 48, C = 60 };
    static float w[R * C], colw[C];
    for (int i = 0; i < R * C; i++) w[i] = (float)lb_rng_normal(&g) * (1.0f + (float)(i / C % 5));
    for (int c = 0; c < C; c++) colw[c] = 0.05f + lb_rng_f32(&g);
    static const char *specs[] = {"vq2x4:r2:row", "vq3x3:r3:tensor", "vq4x5:r2:row", "vq2x2:r4:row"};
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++)
        for (int weighted = 0; weighted < 2; weighted++) {
            lb_qspec sp = lb_test_spec(specs[s]);
            const float *cw = weighted ? colw : NULL;
            lb_qtensor q0, q;
            lb_aqlm_trace tr;
            CHECK_OK(lb_aqlm_quantize(w, R, C, cw, NULL, &sp, 8, 0, &q0, &tr));
            CHECK(tr.n == 1);
            double start = lb_aqlm_objective(&q0, w, C, cw, NULL);
            CHECK(start == tr.objective[0]);
            CHECK_OK(lb_aqlm_quantize(w, R, C, cw, NULL, &sp, 8, 6, &q, &tr));
            CHECK(tr.n >= 3 && tr.objective[0] == start);
            for (int t = 1; t < tr.n; t++)
                CHECK_MSG(tr.objective[t] <= tr.objective[t - 1] * (1 + 1e-12), "%s step %d: %.10g after %.10g",
                          specs[s], t, tr.objective[t], tr.objective[t - 1]);
            double end = lb_aqlm_objective(&q, w, C, cw, NULL);
            CHECK_NEAR(end, tr.objective[tr.n - 1], 1e-9 * end);
            printf("%-16s %s: residual VQ %.5g, aqlm %.5g (%.3f) after %d steps\n", specs[s],
                   weighted ? "weighted" : "plain   ", start, end, end / start, tr.n - 1);
            CHECK_MSG(end < 0.98 * start, "%s: aqlm %g, residual VQ %g", specs[s], end, start);
            lb_qtensor_free(&q0);
            lb_qtensor_free(&q);
        }
}

/* The least-squares step on a matrix that IS a_r (C1[b1] + C2[b2]) with
 * the codes known (fp16 scales and codewords): from the true codes and
 * perturbed codebooks it returns to an objective at the fp16 rounding of
 * the refit values (they are the true ones up to the shift C1 + s, C2 - s
 * that per-row scales a_r common to both stages leave free), jointly
 * (M K = 32; exactly) and one stage at a time (M K = 1536; block
 * coordinate descent, 16 sweeps: near). */
static void test_refit_recovers_codebooks(void) {
    static const char *specs[] = {"vq2x4:r2:row", "vq2x9:r3:row"};
    enum { R = 256, C = 128 };
    static float w[R * C];
    for (int sp = 0; sp < 2; sp++) {
        lb_qspec s = lb_test_spec(specs[sp]);
        lb_qtensor q;
        CHECK_OK(lb_qtensor_init(&q, &s, R, C));
        const int64_t K = q.vbook_size, d = q.vec_dim;
        for (int64_t i = 0; i < q.vec_stages * K * d; i++) q.vbook[i] = lb_round_fp16(unif());
        for (int r = 0; r < R; r++)
            for (int m = 0; m < q.vec_stages; m++) q.scale[m * q.n_groups + r] = lb_round_fp16(0.5f + lb_rng_f32(&g));
        for (int r = 0; r < R; r++)
            for (int64_t v = 0; v < q.vecs_per_row; v++)
                for (int m = 0; m < q.vec_stages; m++) *lb_qtensor_vcode(&q, r, v, m) = (uint16_t)(lb_rng_u32(&g) % K);
        for (int i = 0; i < R * C; i++) w[i] = lb_qtensor_value(&q, i / C, i % C);
        CHECK(lb_aqlm_objective(&q, w, C, NULL, NULL) < 1e-9);
        for (int64_t i = 0; i < q.vec_stages * K * d; i++) q.vbook[i] = lb_round_fp16(q.vbook[i] + 0.3f * unif());
        double before = lb_aqlm_objective(&q, w, C, NULL, NULL), after = 0, energy = 0;
        for (int i = 0; i < R * C; i++) energy += (double)w[i] * w[i];
        CHECK_OK(lb_aqlm_refit(&q, w, C, NULL, NULL, &after));
        CHECK_NEAR(after, lb_aqlm_objective(&q, w, C, NULL, NULL), 1e-12 * (1 + after));
        printf("%s, true codes: perturbed codebooks %.4g, refit %.4g (energy %.4g)\n", specs[sp], before, after,
               energy);
        if (sp == 0) CHECK_MSG(after < 1e-9 * energy, "%s: refit %g from %g", specs[sp], after, before);
        else CHECK_MSG(after < 1e-3 * before, "%s: refit %g from %g", specs[sp], after, before);
        lb_qtensor_free(&q);
    }
}

/* The method row: rounds=0 hweight=none is rtn byte for byte; aqlm's squared
 * error below rtn's; hweight=diag needs X^T X, hweight=none does not; the
 * same bytes on 1 and 2 threads; refusals. */
static void test_method_row(void) {
    enum { R = 40, C = 36 };
    static float w[R * C], out[R * C], ref[R * C];
    static double xtx[C * C];
    for (int i = 0; i < R * C; i++) w[i] = (float)lb_rng_normal(&g);
    for (int a = 0; a < C; a++)
        for (int b = 0; b < C; b++) xtx[a * C + b] = a == b ? 1.0 + a % 7 : 0.1;
    lb_layer_stats st = {.n_samples = 16, .rows = R, .cols = C, .xtx = xtx};
    const lb_method *aqlm = lb_method_find("aqlm"), *rtn = lb_method_find("rtn");
    CHECK(aqlm && rtn);
    lb_qspec s = lb_test_spec("vq2x4:r2:row");
    lb_method_opts o;
    lb_tensor a, b;
    CHECK_OK(lb_test_method_opts(aqlm, "rounds=0 hweight=none", &o));
    CHECK(lb_method_opts_stats(&o) == 0);
    CHECK_OK(lb_quantize_tensor(aqlm, &o, NULL, w, R, C, &s, "w", &a));
    CHECK_OK(lb_quantize_tensor(rtn, NULL, NULL, w, R, C, &s, "w", &b));
    CHECK(a.nbytes == b.nbytes && !memcmp(a.data, b.data, a.nbytes));
    lb_tensor_free(&a);
    CHECK_OK(lb_dequantize(&b, ref));
    lb_tensor_free(&b);
    CHECK_OK(lb_test_method_opts(aqlm, "hweight=none", &o));
    CHECK_OK(lb_quantize_tensor(aqlm, &o, NULL, w, R, C, &s, "w", &a));
    CHECK_OK(lb_dequantize(&a, out));
    lb_tensor_free(&a);
    double ea = 0, er = 0;
    for (int i = 0; i < R * C; i++) ea += (out[i] - w[i]) * (out[i] - w[i]), er += (ref[i] - w[i]) * (ref[i] - w[i]);
    printf("vq2x4:r2:row gaussian %dx%d: rtn squared error %.4g, aqlm %.4g (%.3f)\n", R, C, er, ea, ea / er);
    CHECK_MSG(ea < 0.98 * er, "aqlm %g, rtn %g", ea, er);
    /* threads */
    lb_set_threads(1);
    CHECK_OK(lb_quantize_tensor(aqlm, NULL, &st, w, R, C, &s, "w", &a));
    lb_set_threads(2);
    CHECK_OK(lb_quantize_tensor(aqlm, NULL, &st, w, R, C, &s, "w", &b));
    CHECK(a.nbytes == b.nbytes && !memcmp(a.data, b.data, a.nbytes));
    lb_tensor_free(&a);
    lb_tensor_free(&b);
    /* statistics follow hweight */
    lb_method_opts_default(aqlm, &o);
    CHECK(lb_method_opts_stats(&o) == LB_STATS_XTX);
    CHECK_FAILS(lb_quantize_tensor(aqlm, NULL, NULL, w, R, C, &s, "w", &a), LB_ERR_INVALID, "X^T X");
    CHECK_FAILS(lb_test_method_opts(aqlm, "hweight=full", &o), LB_ERR_INVALID, "diag, none");
    CHECK_FAILS(lb_test_method_opts(aqlm, "beam=0", &o), LB_ERR_INVALID, "1..256");
    /* one codebook, or not vq: refused */
    lb_qspec one = lb_test_spec("vq2x4:row"), e8 = lb_test_spec("e8p3:row"), i4 = lb_test_spec("int4");
    CHECK_FAILS(lb_quantize_tensor(aqlm, NULL, &st, w, R, C, &one, "w", &a), LB_ERR_INVALID, "vq<d>x<c>:r<M>");
    CHECK_FAILS(lb_quantize_tensor(aqlm, NULL, &st, w, R, C, &e8, "w", &a), LB_ERR_INVALID, "vq<d>x<c>:r<M>");
    CHECK_FAILS(lb_quantize_tensor(aqlm, NULL, &st, w, R, C, &i4, "w", &a), LB_ERR_INVALID, "vq<d>x<c>:r<M>");
    w[7] = NAN;
    CHECK_FAILS(lb_quantize_tensor(aqlm, NULL, &st, w, R, C, &s, "w", &a), LB_ERR_NUMERIC, "NaN");
}

int main(void) {
    lb_rng_seed(&g, 8);
    lb_set_threads(2);
    test_beam_vs_brute_force();
    test_greedy_misses_joint_finds();
    test_descent_and_never_worse();
    test_refit_recovers_codebooks();
    test_method_row();
    return lb_test_finish("test_aqlm");
}
