/* The billm format (src/formats/billm.c) and method (src/quant/billm.c):
 * spec text, sizes and bpw counted by hand (every bit: the group bits, the
 * mask, seven values per group), bytes pinned for a hand-made row, round
 * trips with random masks over group sizes and odd widths, corrupt masks
 * refused; then known answers: a matrix exactly on the format's values
 * comes back exactly and its planted salient columns are the mask (the
 * method and rtn), and the calibrated objective is below binary:row's rtn
 * and gptq on the same problem. */
#include "salient_check.h"

static lb_rng g;

static void test_spec(void) {
    static const struct {
        const char *in, *out;
    } cases[] = {{"billm", "billm:g128"}, {"billm:row", "billm:row"}, {"billm:g64", "billm:g64"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[64];
        lb_qspec s = lb_test_spec(cases[i].in);
        lb_qspec_format(&s, buf, sizeof buf);
        CHECK_MSG(!strcmp(buf, cases[i].out), "'%s' -> '%s', want '%s'", cases[i].in, buf, cases[i].out);
    }
    lb_qspec s;
    CHECK_FAILS(lb_qspec_parse("billm:tensor", &s), LB_ERR_INVALID, "does not apply");
    CHECK_FAILS(lb_qspec_parse("billm:g48", &s), LB_ERR_INVALID, "power of two");
    CHECK_FAILS(lb_qspec_parse("billm:s20", &s), LB_ERR_INVALID, "does not apply");
    CHECK_FAILS(lb_qspec_parse("billm:g64:row", &s), LB_ERR_INVALID, "conflicts with the group size");
}

/* rows of 14 bytes per group + 2 bits per weight (padded to 4 weights), a mask of ceil(cols / 8) */
static void test_sizes(void) {
    static const struct {
        const char *spec;
        int64_t rows, cols;
        size_t bytes;
    } cases[] = {
        {"billm", 64, 64, 64 * (14 + 16) + 8},
        {"billm", 64, 172, 64 * (2 * 14 + 43) + 22}, /* groups of 128 and 44: no padding to whole groups */
        {"billm:row", 64, 172, 64 * (14 + 43) + 22},
        {"billm:row", 3, 10, 3 * (14 + 3) + 2},      /* 10 -> 12 weights */
        {"billm:g64", 2, 300, 2 * (5 * 14 + 75) + 38},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lb_qspec s = lb_test_spec(cases[i].spec);
        size_t total = 0;
        CHECK_OK(lb_format_size(&s, cases[i].rows, cases[i].cols, NULL, NULL, &total));
        CHECK_MSG(total == cases[i].bytes, "%s %lldx%lld: %zu bytes, want %zu", cases[i].spec,
                  (long long)cases[i].rows, (long long)cases[i].cols, total, cases[i].bytes);
    }
    /* 4096 x 4096 at g128: 46 bytes per 128 weights, 2.875 bpw plus the mask (the paper's nominal: 1.08) */
    lb_qspec s = lb_test_spec("billm");
    CHECK_NEAR(lb_format_bpw(&s, 4096, 4096), (4096.0 * 32 * 46 + 512) * 8 / (4096.0 * 4096), 1e-12);
}

/* one row of 6 (padded to 8), one group: columns 1 and 4 salient */
static void test_pinned(void) {
    lb_qspec s = lb_test_spec("billm:row");
    lb_qtensor q;
    CHECK_OK(lb_qtensor_init(&q, &s, 1, 6));
    q.col_mask[1] = q.col_mask[4] = 1;
    const uint8_t codes[8] = {1, 2, 3, 0, 1, 2, 0, 0};
    memcpy(q.codes, codes, 8);
    const float e[7] = {0.5f, 1.0f, 0.25f, 0.0f, 0.125f, -0.5f, 2.0f}; /* mu_s a1 a2 mu_c a_c mu_p a_p */
    memcpy(q.extra, e, sizeof e);
    uint8_t bytes[17];
    CHECK_OK(lb_qtensor_encode(&q, bytes));
    const uint8_t want[17] = {0x00, 0x38, 0x00, 0x3C, 0x00, 0x34, 0x00, 0x00, 0x00, 0x30, 0x00, 0xB8, 0x00, 0x40,
                              0x39, 0x09, /* codes 1 2 3 0 | 1 2 0 0, two bits each */
                              0x12};      /* mask: columns 1, 4 */
    CHECK(!memcmp(bytes, want, 17));
    lb_tensor t = {.spec = s, .rows = 1, .cols = 6, .data = bytes, .nbytes = 17};
    CHECK_OK(lb_tensor_resolve(&t));
    float out[6];
    lb_dequantize_row(&t, 0, out);
    /* concentrated +, salient (-a1 +a2), sparse +, concentrated -, salient (+a1 -a2), sparse - */
    const float values[6] = {0.125f, -0.25f, 1.5f, -0.125f, 1.25f, -2.5f};
    for (int c = 0; c < 6; c++) CHECK_MSG(out[c] == values[c], "column %d: %g, want %g", c, out[c], values[c]);
    bytes[16] = 0x52; /* column 6: past the last */
    CHECK_FAILS(lb_tensor_resolve(&t), LB_ERR_FORMAT, "past the last column");
    lb_qtensor back;
    CHECK_OK(lb_qtensor_init(&back, &s, 1, 6));
    CHECK_FAILS(lb_qtensor_decode(&back, bytes, 17), LB_ERR_FORMAT, "past the last column");
    lb_qtensor_free(&back);
    lb_qtensor_free(&q);
}

static void test_round_trips(void) {
    static const struct {
        const char *spec;
        int64_t rows, cols;
    } cases[] = {{"billm:row", 3, 10}, {"billm", 4, 172}, {"billm:g64", 2, 300}, {"billm:g16", 3, 33}, {"billm", 2, 5}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lb_qspec s = lb_test_spec(cases[i].spec);
        const int64_t rows = cases[i].rows, cols = cases[i].cols;
        lb_qtensor q, back;
        CHECK_OK(lb_qtensor_init(&q, &s, rows, cols));
        for (int64_t c = 0; c < cols; c++) q.col_mask[c] = lb_rng_u32(&g) % 3 == 0;
        for (int64_t i2 = 0; i2 < rows * q.cols_padded; i2++) q.codes[i2] = (uint8_t)(lb_rng_u32(&g) % 4);
        for (int64_t i2 = 0; i2 < q.n_groups * q.n_extra; i2++) q.extra[i2] = (float)lb_rng_normal(&g);
        CHECK_OK(lb_qtensor_store_scales(&q));
        size_t total;
        CHECK_OK(lb_format_size(&s, rows, cols, NULL, NULL, &total));
        uint8_t *bytes = lb_alloc(total), *again = lb_alloc(total);
        CHECK_OK(lb_qtensor_encode(&q, bytes));
        CHECK_OK(lb_qtensor_init(&back, &s, rows, cols));
        CHECK_OK(lb_qtensor_decode(&back, bytes, total));
        CHECK(!memcmp(q.codes, back.codes, (size_t)(rows * q.cols_padded)) &&
              !memcmp(q.col_mask, back.col_mask, (size_t)cols));
        CHECK(!memcmp(q.extra, back.extra, (size_t)(q.n_groups * q.n_extra) * sizeof(float)));
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

enum { ER = 4, EC = 32 };
static const int planted[4] = {3, 9, 20, 27};

/* Exactly on the format's values: the planted columns hold, in every row,
 * the four values mu_s +- a1 +- a2 once each (so residual binarization
 * finds mu_s, a1, a2 exactly), the others +-c, half of each sign per row.
 * The structural search's error is 0 at exactly 4 salient columns (fewer
 * leave a planted column to one binarization, more put a +-c among the
 * four levels), so the mask is the planted columns. */
static void exact_matrix(float *w, float c_other) {
    const float mu = 0.25f, a1 = 2.0f, a2 = 0.5f;
    const float four[4] = {mu + a1 + a2, mu + a1 - a2, mu - a1 + a2, mu - a1 - a2};
    for (int r = 0; r < ER; r++) {
        int s = 0, b = 0;
        for (int c = 0; c < EC; c++) {
            if (s < 4 && c == planted[s]) w[r * EC + c] = four[(s++ + r) % 4];
            else w[r * EC + c] = ((b++ + r) & 1) ? c_other : -c_other;
        }
    }
}

static void test_exact(void) {
    float w[ER * EC], out[ER * EC];
    planted_stats p;
    planted_stats_make(&p, ER, EC, NULL, 3);
    const char *runs[][3] = {{"rtn", "", "billm"}, {"billm", "", "billm"}, {"billm", "", "billm:g16"},
                             {"billm", "saliency=magnitude", "billm:row"}};
    for (size_t k = 0; k < sizeof runs / sizeof runs[0]; k++) {
        exact_matrix(w, 0.25f);
        lb_qtensor q;
        lb_status st = salient_run(runs[k][0], runs[k][1], &p.s, w, ER, EC, runs[k][2], &q, out);
#ifndef LB_HAVE_BLAS
        if (st == LB_ERR_UNSUPPORTED) continue;
#endif
        CHECK_MSG(st == LB_OK, "%s %s: %s", runs[k][0], runs[k][1], lb_last_error());
        if (st != LB_OK) continue;
        for (int i = 0; i < ER * EC; i++)
            CHECK_MSG(out[i] == w[i], "%s %s %s: weight %d is %g, want %g", runs[k][0], runs[k][1], runs[k][2], i,
                      out[i], w[i]);
        int salient = 0, hits = 0;
        for (int c = 0; c < EC; c++) salient += q.col_mask[c];
        for (int i = 0; i < 4; i++) hits += q.col_mask[planted[i]];
        /* g16: each group of 16 holds two planted columns, found alone */
        CHECK_MSG(salient == 4 && hits == 4, "%s %s %s: mask of %d columns, %d of them planted", runs[k][0],
                  runs[k][1], runs[k][2], salient, hits);
        lb_qtensor_free(&q);
    }
    /* no salient columns allowed: the other weights, two magnitudes (+-0.125,
     * +-1), are the two groups the break-point search splits exactly */
    for (int r = 0; r < ER; r++)
        for (int c = 0; c < EC; c++) w[r * EC + c] = (c + r) % 4 < 2 ? ((c & 1) ? 0.125f : -0.125f) : ((c & 1) ? 1.0f : -1.0f);
    lb_qtensor q;
    lb_status st = salient_run("billm", "max_salient=0", &p.s, w, ER, EC, "billm", &q, out);
    if (st != LB_ERR_UNSUPPORTED) {
        CHECK_OK(st);
        for (int i = 0; i < ER * EC; i++) CHECK_MSG(out[i] == w[i], "split: weight %d is %g, want %g", i, out[i], w[i]);
        if (st == LB_OK) lb_qtensor_free(&q);
    }
    planted_stats_free(&p);
}

static void test_objective(void) {
    enum { R = 32, C = 64 };
    float *w = lb_alloc(R * C * sizeof(float)), *out = lb_alloc(R * C * sizeof(float)), amp[C];
    for (int i = 0; i < R * C; i++) w[i] = (float)lb_rng_normal(&g);
    for (int c = 0; c < C; c++) amp[c] = c % 9 == 0 ? 6.0f : 1.0f;
    planted_stats p;
    planted_stats_make(&p, R, C, amp, 13);
    const char *runs[][3] = {{"rtn", "", "binary:row"}, {"gptq", "", "binary:row"}, {"rtn", "", "billm"},
                             {"billm", "", "billm"}};
    double loss[4];
    for (int k = 0; k < 4; k++) {
        lb_qtensor q;
        lb_status st = salient_run(runs[k][0], runs[k][1], &p.s, w, R, C, runs[k][2], &q, out);
#ifndef LB_HAVE_BLAS
        if (st == LB_ERR_UNSUPPORTED) {
            printf("SKIPPED %s: built without OpenBLAS\n", runs[k][0]);
            loss[k] = NAN;
            continue;
        }
#endif
        CHECK_OK(st);
        loss[k] = salient_loss(w, out, R, C, p.xtx);
        printf("  %-6s %-10s tr(dW H dW^T) = %.6g\n", runs[k][0], runs[k][2], loss[k]);
        if (st == LB_OK) lb_qtensor_free(&q);
    }
    CHECK_MSG(!(loss[3] >= loss[0]) && !(loss[3] >= loss[1]) && !(loss[3] >= loss[2]),
              "billm's %g is not below binary's rtn %g / gptq %g and rtn on billm %g", loss[3], loss[0], loss[1], loss[2]);
    planted_stats_free(&p);
    lb_free(w);
    lb_free(out);
}

int main(void) {
    lb_set_threads(2);
    lb_rng_seed(&g, 19);
    test_spec();
    test_sizes();
    test_pinned();
    test_round_trips();
    test_exact();
    test_objective();
    return lb_test_finish("test_billm");
}
