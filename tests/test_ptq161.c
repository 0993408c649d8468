/* The ptq161 format (src/formats/ptq161.c) and method (src/quant/ptq161.c):
 * spec text, sizes and bpw counted by hand, bytes pinned for a hand-made
 * row, round trips with random masks, corrupt masks refused; then known
 * answers: a matrix exactly on the format's grids comes back exactly (the
 * method and rtn), the closed-form row values against a brute-force 1-D
 * search along each of them, planted salient channels found (by max|x|,
 * and by rtn's column norm), the refit never worse, and the calibrated
 * objective below binary:row rtn's and gptq's on the same problem. */
#include "salient_check.h"

#include "quant/salient.h"

static lb_rng g;

static void test_spec(void) {
    static const struct {
        const char *in, *out;
    } cases[] = {{"ptq161", "ptq161:s20"}, {"ptq161:s5", "ptq161:s5"}, {"ptq161:s0", "ptq161:s0"},
                 {"ptq161:s100", "ptq161:s100"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[64];
        lb_qspec s = lb_test_spec(cases[i].in);
        lb_qspec_format(&s, buf, sizeof buf);
        CHECK_MSG(!strcmp(buf, cases[i].out), "'%s' -> '%s', want '%s'", cases[i].in, buf, cases[i].out);
    }
    lb_qspec s;
    CHECK_FAILS(lb_qspec_parse("ptq161:s101", &s), LB_ERR_INVALID, "0..100");
    CHECK_FAILS(lb_qspec_parse("ptq161:g64", &s), LB_ERR_INVALID, "does not apply");
    CHECK_FAILS(lb_qspec_parse("ptq161:s10:s20", &s), LB_ERR_INVALID, "conflicts with the salient share");
    CHECK_FAILS(lb_qspec_parse("ptq161:sx", &s), LB_ERR_INVALID, "does not apply");
    CHECK(lb_format_grid(&(lb_qspec){.family = lb_format_family_find("ptq161")}) == LB_GRID_SALIENT);
}

/* rows of 8 bytes of values + ceil((4k + cols - k) / 8), k = round(cols p / 100); a mask of ceil(cols / 8) */
static void test_sizes(void) {
    static const struct {
        const char *spec;
        int64_t rows, cols;
        size_t bytes;
    } cases[] = {
        {"ptq161", 64, 64, 64 * (8 + 13) + 8},       /* k = 13: 52 + 51 bits */
        {"ptq161", 64, 172, 64 * (8 + 35) + 22},     /* k = 34: 136 + 138 bits */
        {"ptq161:s50", 3, 10, 3 * (8 + 4) + 2},      /* k = 5: 25 bits */
        {"ptq161:s0", 2, 16, 2 * (8 + 2) + 2},       /* binary with (alpha, mu) */
        {"ptq161:s100", 2, 16, 2 * (8 + 8) + 2},     /* all int4 */
        {"ptq161", 1, 10, 8 + 2 + 2},                /* k = 2: 16 bits */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lb_qspec s = lb_test_spec(cases[i].spec);
        size_t total = 0;
        CHECK_OK(lb_format_size(&s, cases[i].rows, cases[i].cols, NULL, NULL, &total));
        CHECK_MSG(total == cases[i].bytes, "%s %lldx%lld: %zu bytes, want %zu", cases[i].spec,
                  (long long)cases[i].rows, (long long)cases[i].cols, total, cases[i].bytes);
    }
    lb_qspec s = lb_test_spec("ptq161");
    /* 4096 x 4096: k = 819, 6553 bits -> 820 bytes + 8 a row, a 512-byte mask: the paper's "1.61" */
    CHECK_NEAR(lb_format_bpw(&s, 4096, 4096), (4096.0 * 828 + 512) * 8 / (4096.0 * 4096), 1e-12);
    CHECK(lb_format_bpw(&s, 4096, 4096) > 1.617 && lb_format_bpw(&s, 4096, 4096) < 1.618);
}

/* one row of 10: salient columns 3 and 7 (k = 2 at s20), d 0.5, m -1, alpha 0.25, mu 0.125 */
static void test_pinned(void) {
    lb_qspec s = lb_test_spec("ptq161");
    lb_qtensor q;
    CHECK_OK(lb_qtensor_init(&q, &s, 1, 10));
    CHECK(q.n_salient == 2);
    memset(q.col_mask, 0, 10);
    q.col_mask[3] = q.col_mask[7] = 1;
    const uint8_t codes[10] = {1, 0, 1, 5, 1, 0, 0, 15, 1, 0};
    memcpy(q.codes, codes, 10);
    q.scale[0] = 0.5f;
    q.offset[0] = -1.0f;
    q.extra[0] = 0.25f;
    q.extra[1] = 0.125f;
    uint8_t bytes[12];
    CHECK_OK(lb_qtensor_encode(&q, bytes));
    const uint8_t want[12] = {0x00, 0x38, 0x00, 0xBC, 0x00, 0x34, 0x00, 0x30, /* fp16 0.5, -1, 0.25, 0.125 */
                              0xF5,                                           /* codes 5, 15 */
                              0x4D,                                           /* signs 1 0 1 1 0 0 1 0 */
                              0x88, 0x00};                                    /* mask: columns 3, 7 */
    CHECK(!memcmp(bytes, want, 12));
    lb_tensor t = {.spec = s, .rows = 1, .cols = 10, .data = bytes, .nbytes = 12};
    CHECK_OK(lb_tensor_resolve(&t));
    float out[10];
    lb_dequantize_row(&t, 0, out);
    const float values[10] = {0.375f, -0.125f, 0.375f, 1.5f, 0.375f, -0.125f, -0.125f, 6.5f, 0.375f, -0.125f};
    for (int c = 0; c < 10; c++) CHECK_MSG(out[c] == values[c], "column %d: %g, want %g", c, out[c], values[c]);
    /* corrupt masks: a third salient column, a bit past the row */
    bytes[10] = 0x89;
    CHECK_FAILS(lb_tensor_resolve(&t), LB_ERR_FORMAT, "3 salient columns");
    lb_dequantize_row(&t, 0, out); /* still in bounds (ASan would see) */
    lb_qtensor back;
    CHECK_OK(lb_qtensor_init(&back, &s, 1, 10));
    CHECK_FAILS(lb_qtensor_decode(&back, bytes, 12), LB_ERR_FORMAT, "column mask");
    bytes[10] = 0x80;
    bytes[11] = 0x04; /* columns 7 and 10: 10 is past the last column */
    CHECK_FAILS(lb_tensor_resolve(&t), LB_ERR_FORMAT, "past the last column");
    /* a method that left the mask with the wrong count cannot encode */
    q.col_mask[0] = 1;
    CHECK_FAILS(lb_qtensor_encode(&q, bytes), LB_ERR_FORMAT, "3 salient columns");
    lb_qtensor_free(&back);
    lb_qtensor_free(&q);
}

static void test_round_trips(void) {
    static const struct {
        const char *spec;
        int64_t rows, cols;
    } cases[] = {{"ptq161", 3, 10}, {"ptq161:s0", 5, 64}, {"ptq161", 4, 172}, {"ptq161:s100", 2, 17}, {"ptq161:s7", 3, 33}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lb_qspec s = lb_test_spec(cases[i].spec);
        const int64_t rows = cases[i].rows, cols = cases[i].cols;
        lb_qtensor q, back;
        CHECK_OK(lb_qtensor_init(&q, &s, rows, cols));
        /* a random mask of exactly k columns: shuffle the default one */
        for (int64_t c = cols - 1; c > 0; c--) {
            int64_t j = (int64_t)(lb_rng_u32(&g) % (uint32_t)(c + 1));
            uint8_t t = q.col_mask[c];
            q.col_mask[c] = q.col_mask[j];
            q.col_mask[j] = t;
        }
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t c = 0; c < cols; c++) q.codes[r * cols + c] = (uint8_t)(lb_rng_u32(&g) % (q.col_mask[c] ? 16 : 2));
            q.scale[r] = (float)lb_rng_normal(&g);
            q.offset[r] = (float)lb_rng_normal(&g);
            q.extra[2 * r] = (float)lb_rng_normal(&g);
            q.extra[2 * r + 1] = (float)lb_rng_normal(&g);
        }
        CHECK_OK(lb_qtensor_store_scales(&q));
        size_t total;
        CHECK_OK(lb_format_size(&s, rows, cols, NULL, NULL, &total));
        uint8_t *bytes = lb_alloc(total), *again = lb_alloc(total);
        CHECK_OK(lb_qtensor_encode(&q, bytes));
        CHECK_OK(lb_qtensor_init(&back, &s, rows, cols));
        CHECK_OK(lb_qtensor_decode(&back, bytes, total));
        CHECK(!memcmp(q.codes, back.codes, (size_t)(rows * cols)) && !memcmp(q.col_mask, back.col_mask, (size_t)cols));
        CHECK(!memcmp(q.extra, back.extra, (size_t)(rows * 2) * sizeof(float)));
        CHECK(!memcmp(q.scale, back.scale, (size_t)rows * sizeof(float)) &&
              !memcmp(q.offset, back.offset, (size_t)rows * sizeof(float)));
        CHECK_OK(lb_qtensor_encode(&back, again));
        CHECK(!memcmp(bytes, again, total));
        lb_tensor t = {.spec = s, .rows = rows, .cols = cols, .data = bytes, .nbytes = total};
        CHECK_OK(lb_tensor_resolve(&t));
        float *row = lb_alloc((size_t)cols * sizeof(float));
        for (int64_t r = 0; r < rows; r++) {
            lb_dequantize_row(&t, r, row);
            for (int64_t c = 0; c < cols; c++)
                CHECK_MSG(row[c] == lb_qtensor_value(&q, r, c), "%s: (%lld, %lld) %g != %g", cases[i].spec,
                          (long long)r, (long long)c, row[c], lb_qtensor_value(&q, r, c));
        }
        lb_free(row);
        lb_free(bytes);
        lb_free(again);
        lb_qtensor_free(&q);
        lb_qtensor_free(&back);
    }
}

enum { ER = 4, EC = 20 }; /* s20: k = 4 */
static const int planted[4] = {2, 5, 11, 17};

/* W exactly on the grids: salient columns d q + m with q = 0 and 15 in
 * every row (so min-max finds d, m), the others mu +- alpha, eight of each
 * sign per row (so the mean is mu and the mean deviation alpha) */
static void exact_matrix(float *w) {
    const float d = 0.125f, m = -1.0f, alpha = 0.25f, mu = 0.0625f;
    const int q[ER][4] = {{0, 15, 1, 14}, {15, 0, 14, 1}, {1, 0, 15, 14}, {14, 15, 0, 1}};
    for (int r = 0; r < ER; r++) {
        int s = 0, b = 0;
        for (int c = 0; c < EC; c++) {
            if (s < 4 && c == planted[s]) w[r * EC + c] = d * (float)q[r][s++] + m;
            else w[r * EC + c] = mu + (((b++ + r) & 1) ? alpha : -alpha);
        }
    }
}

static void test_exact(void) {
    float w[ER * EC], out[ER * EC], amp[EC];
    exact_matrix(w);
    for (int c = 0; c < EC; c++) amp[c] = 1.0f;
    for (int i = 0; i < 4; i++) amp[planted[i]] = 5.0f;
    planted_stats p;
    planted_stats_make(&p, ER, EC, amp, 3);
    const char *runs[][2] = {{"rtn", ""}, {"ptq161", ""}, {"ptq161", "feedback=0"}, {"ptq161", "saliency=hessian refit=0"}};
    for (size_t k = 0; k < sizeof runs / sizeof runs[0]; k++) {
        lb_qtensor q;
        lb_status st = salient_run(runs[k][0], runs[k][1], &p.s, w, ER, EC, "ptq161", &q, out);
#ifndef LB_HAVE_BLAS
        if (st == LB_ERR_UNSUPPORTED && strcmp(runs[k][1], "feedback=0")) continue;
#endif
        CHECK_MSG(st == LB_OK, "%s %s: %s", runs[k][0], runs[k][1], lb_last_error());
        if (st != LB_OK) continue;
        for (int i = 0; i < ER * EC; i++)
            CHECK_MSG(out[i] == w[i], "%s %s: weight %d is %g, want %g", runs[k][0], runs[k][1], i, out[i], w[i]);
        for (int i = 0; i < 4; i++) CHECK(q.col_mask[planted[i]]);
        lb_qtensor_free(&q);
    }
    planted_stats_free(&p);
}

/* the closed form: no point of a fine 1-D grid along any of the four
 * values (the others at the optimum) is lower, and the grid's best is
 * within its resolution of it */
static void test_closed_form(void) {
    enum { N = 12 };
    planted_stats p;
    planted_stats_make(&p, 1, N, NULL, 5);
    for (int rep = 0; rep < 5; rep++) {
        float w[N], opt[4] = {0.1f, 0, 0.1f, 0};
        uint8_t mask[N] = {0}, codes[N];
        for (int c = 0; c < N; c++) {
            w[c] = (float)lb_rng_normal(&g);
            mask[c] = c % 4 == rep % 4 || c == 7;
            codes[c] = (uint8_t)(lb_rng_u32(&g) % (mask[c] ? 16 : 2));
        }
        double best = lb_ptq161_fit_row(p.xtx, N, w, mask, codes, opt);
        CHECK_NEAR(best, lb_ptq161_row_loss(p.xtx, N, w, mask, codes, opt), 1e-6 * (best + 1));
        for (int i = 0; i < 4; i++) {
            double grid_best = INFINITY;
            for (int t = -2000; t <= 2000; t++) {
                float v[4];
                memcpy(v, opt, sizeof v);
                v[i] = opt[i] + (float)t * 1e-3f * (fabsf(opt[i]) + 0.1f);
                double l = lb_ptq161_row_loss(p.xtx, N, w, mask, codes, v);
                CHECK_MSG(l >= best - 1e-9 * (fabs(best) + 1), "value %d, step %d: %.12g below the optimum %.12g", i, t, l, best);
                if (l < grid_best) grid_best = l;
            }
            CHECK_MSG(grid_best <= best * (1 + 1e-6) + 1e-9, "value %d: the grid's best %.12g, the closed form %.12g", i,
                      grid_best, best);
        }
    }
    planted_stats_free(&p);
}

/* planted channels: by max|x| for the method, by column norm for rtn */
static void test_saliency(void) {
    enum { R = 16, C = 40 }; /* s10: k = 4 */
    const int want[4] = {1, 7, 8, 30};
    float w[R * C], out[R * C], amp[C];
    for (int i = 0; i < R * C; i++) w[i] = 0.1f * (float)lb_rng_normal(&g);
    for (int c = 0; c < C; c++) amp[c] = 1.0f;
    for (int i = 0; i < 4; i++) amp[want[i]] = 20.0f;
    planted_stats p;
    planted_stats_make(&p, R, C, amp, 9);
    lb_qtensor q;
    CHECK_OK(salient_run("ptq161", "feedback=0", &p.s, w, R, C, "ptq161:s10", &q, out));
    int hits = 0;
    for (int i = 0; i < 4; i++) hits += q.col_mask[want[i]];
    CHECK_MSG(hits == 4, "ptq161 found %d of the 4 planted channels", hits);
    lb_qtensor_free(&q);
    for (int r = 0; r < R; r++)
        for (int i = 0; i < 4; i++) w[r * C + want[i]] *= 10.0f; /* now the columns' norms stand out */
    CHECK_OK(salient_run("rtn", "", NULL, w, R, C, "ptq161:s10", &q, out));
    hits = 0;
    for (int i = 0; i < 4; i++) hits += q.col_mask[want[i]];
    CHECK_MSG(hits == 4, "rtn found %d of the 4 planted columns", hits);
    lb_qtensor_free(&q);
    planted_stats_free(&p);
}

/* the calibrated objective: the refit never worse than the start for the
 * same codes; everything below binary:row's rtn and gptq */
static void test_objective(void) {
    enum { R = 32, C = 64 };
    float *w = lb_alloc(R * C * sizeof(float)), *out = lb_alloc(R * C * sizeof(float)), amp[C];
    for (int i = 0; i < R * C; i++) w[i] = (float)lb_rng_normal(&g);
    for (int c = 0; c < C; c++) amp[c] = c % 9 == 0 ? 6.0f : 1.0f;
    planted_stats p;
    planted_stats_make(&p, R, C, amp, 13);
    const char *runs[][3] = {{"rtn", "", "binary:row"},          {"gptq", "", "binary:row"},
                             {"ptq161", "feedback=0 refit=0", "ptq161"}, {"ptq161", "feedback=0", "ptq161"},
                             {"ptq161", "", "ptq161"}};
    double loss[5];
    for (int k = 0; k < 5; k++) {
        lb_qtensor q;
        lb_status st = salient_run(runs[k][0], runs[k][1], &p.s, w, R, C, runs[k][2], &q, out);
#ifndef LB_HAVE_BLAS
        if (st == LB_ERR_UNSUPPORTED) {
            printf("SKIPPED %s %s: built without OpenBLAS\n", runs[k][0], runs[k][1]);
            loss[k] = NAN;
            continue;
        }
#endif
        CHECK_OK(st);
        loss[k] = salient_loss(w, out, R, C, p.xtx);
        printf("  %-6s %-20s %-10s tr(dW H dW^T) = %.6g\n", runs[k][0], runs[k][1], runs[k][2], loss[k]);
        if (st == LB_OK) lb_qtensor_free(&q);
    }
    CHECK_MSG(loss[3] <= loss[2], "the refit raised the objective: %g > %g", loss[3], loss[2]);
    for (int k = 2; k < 5; k++)
        CHECK_MSG(!(loss[k] >= loss[0]) && !(loss[k] >= loss[1]), "%s %s: %g not below binary's rtn %g / gptq %g",
                  runs[k][0], runs[k][1], loss[k], loss[0], loss[1]);
    CHECK_MSG(!(loss[4] >= loss[3]), "feedback did not lower the objective: %g >= %g", loss[4], loss[3]);
    planted_stats_free(&p);
    lb_free(w);
    lb_free(out);
}

int main(void) {
    lb_set_threads(2);
    lb_rng_seed(&g, 17);
    test_spec();
    test_sizes();
    test_pinned();
    test_round_trips();
    test_exact();
    test_closed_form();
    test_saliency();
    test_objective();
    return lb_test_finish("test_ptq161");
}
