/* Split tensors (src/formats/split.c) and row rules (src/pipeline/plan.c):
 * a split tensor dequantizes and multiplies as its parts do, row for row
 * (or, split along columns, piece by piece, its product the parts' added in
 * order) and bit for bit; its bytes are checked field by field (every truncation
 * and header byte flip refused or harmless); row rules resolve last match
 * wins row by row; a recipe's row rules quantize each part as a tensor of
 * its rows (the bytes plan/rowblock.c measured), and the file saves, loads
 * and evaluates as the model in memory. */
#include "test.h"
#include "lowbit.h"

#include <math.h>
#include <unistd.h>

static void fill(float *w, int64_t n, uint64_t seed) {
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        w[i] = (float)((double)(seed >> 11) / 9007199254740992.0 - 0.5) * (i % 7 == 0 ? 4.0f : 1.0f);
    }
}

/* three parts of a 100 x 96 weight: rows 0:40 int4, 40:64 q8_0, 64:100 trellis3 */
static void make_split(const float *w, int64_t cols, lb_tensor *parts, lb_tensor *out) {
    static const char *specs[3] = {"int4:g32:asym", "q8_0", "trellis3:row"};
    static const int64_t r[4] = {0, 40, 64, 100};
    lb_method_opts o;
    lb_method_opts_default(lb_method_find("rtn"), &o);
    for (int k = 0; k < 3; k++) {
        lb_qspec s = lb_test_spec(specs[k]);
        CHECK_OK(lb_quantize_tensor(lb_method_find("rtn"), &o, NULL, w + r[k] * cols, r[k + 1] - r[k], cols, &s, "p",
                                    &parts[k]));
    }
    CHECK_OK(lb_split_join(parts, 3, "w", out));
}

static void test_format(void) {
    const int64_t rows = 100, cols = 96;
    float *w = malloc(sizeof(float) * rows * cols), *a = malloc(sizeof(float) * rows * cols);
    float *b = malloc(sizeof(float) * rows * cols);
    fill(w, rows * cols, 1);
    lb_tensor parts[3], t;
    make_split(w, cols, parts, &t);
    CHECK(lb_split_parts(&t) == 3 && !strcmp(lb_format_family_name(&t.spec), "split"));
    /* bytes: the 16-byte header, a 32-byte entry per part, each part padded to 16 */
    size_t want = 16 + 3 * 32;
    for (int k = 0; k < 3; k++) want += (parts[k].nbytes + 15) / 16 * 16;
    CHECK(t.nbytes == want);
    size_t charged = LB_SPLIT_HEAD_BYTES;
    for (int k = 0; k < 3; k++) charged += lb_split_part_bytes(parts[k].nbytes);
    CHECK(charged == t.nbytes); /* what a plan charges its blocks is the file's size */
    /* dequantized: the parts' rows, exactly */
    CHECK_OK(lb_dequantize(&t, a));
    int64_t r0 = 0;
    for (int k = 0; k < 3; k++) {
        CHECK_OK(lb_dequantize(&parts[k], b + r0 * cols));
        r0 += parts[k].rows;
    }
    CHECK(!memcmp(a, b, sizeof(float) * rows * cols));
    float row[96];
    lb_dequantize_row(&t, 57, row);
    CHECK(!memcmp(row, a + 57 * cols, sizeof row));
    /* views */
    lb_tensor v;
    int64_t v0;
    CHECK_OK(lb_split_part(&t, 2, &v, &v0));
    CHECK(v0 == 64 && v.rows == 36 && v.nbytes == parts[2].nbytes && !memcmp(v.data, parts[2].data, v.nbytes));
    CHECK(((uintptr_t)v.data - (uintptr_t)t.data) % 16 == 0);
    CHECK_FAILS(lb_split_part(&t, 3, &v, &v0), LB_ERR_FORMAT, "split part 3");
    /* products: each part's own kernel into its rows, the same bits as the parts alone, for 1 and 5 inputs */
    for (int n = 1; n <= 5; n += 4) {
        float *x = malloc(sizeof(float) * n * cols), *y = malloc(sizeof(float) * n * rows);
        float *yp = malloc(sizeof(float) * n * 40);
        fill(x, n * cols, 7 + n);
        CHECK_OK(lb_matmul(&t, x, n, y, NULL));
        r0 = 0;
        int same = 1;
        for (int k = 0; k < 3; k++) {
            CHECK_OK(lb_matmul(&parts[k], x, n, yp, NULL));
            for (int i = 0; i < n; i++)
                same &= !memcmp(y + i * rows + r0, yp + i * parts[k].rows, sizeof(float) * parts[k].rows);
            r0 += parts[k].rows;
        }
        CHECK_MSG(same, "split product differs from its parts' (n = %d)", n);
        /* and a shared activation cache changes nothing */
        lb_act_cache *c;
        CHECK_OK(lb_act_cache_create(n, (int)cols, &c));
        float *y2 = malloc(sizeof(float) * n * rows);
        CHECK_OK(lb_matmul(&t, x, n, y2, c));
        CHECK(!memcmp(y, y2, sizeof(float) * n * rows));
        /* against the dequantized weights in double precision */
        double err = 0, scale = 0;
        for (int i = 0; i < n; i++)
            for (int64_t j = 0; j < rows; j++) {
                double s = 0;
                for (int64_t q = 0; q < cols; q++) s += (double)x[i * cols + q] * a[j * cols + q];
                err = fmax(err, fabs(s - y[i * rows + j]));
                scale = fmax(scale, fabs(s));
            }
        CHECK_MSG(err < 0.02 * scale, "split product off the dequantized weights by %g of %g", err, scale);
        CHECK(!strcmp(lb_matmul_kernel_name(&t), "split"));
        lb_act_cache_free(c);
        free(x), free(y), free(yp), free(y2);
    }
    /* joining refuses what cannot be a split */
    CHECK_FAILS(lb_split_join(parts, 0, "w", &v), LB_ERR_INVALID, "1..256 parts");
    lb_tensor nested[2] = {t, parts[0]};
    CHECK_FAILS(lb_split_join(nested, 2, "w", &v), LB_ERR_INVALID, "cannot be split itself");
    lb_tensor narrow;
    lb_qspec s4 = lb_test_spec("int4:g32:asym");
    lb_method_opts o;
    lb_method_opts_default(lb_method_find("rtn"), &o);
    CHECK_OK(lb_quantize_tensor(lb_method_find("rtn"), &o, NULL, w, 4, 64, &s4, "n", &narrow));
    lb_tensor mixed[2] = {parts[0], narrow};
    CHECK_FAILS(lb_split_join(mixed, 2, "w", &v), LB_ERR_INVALID, "96 and 64 columns");
    lb_tensor_free(&narrow);
    /* nothing quantizes into split */
    lb_qspec sp = lb_test_spec("split");
    CHECK_FAILS(lb_quantize_tensor(lb_method_find("rtn"), &o, NULL, w, rows, cols, &sp, "w", &v), LB_ERR_UNSUPPORTED,
                "joined from quantized parts");
    CHECK(isnan(lb_format_bpw(&sp, rows, cols)));

    /* damaged bytes: every truncation refused; every header byte flip refused
     * or, when it still holds, decoding stays in bounds (ASan watches) */
    uint8_t *copy = malloc(t.nbytes);
    for (size_t n = 0; n < t.nbytes; n += n < 300 ? 1 : 97) {
        memcpy(copy, t.data, t.nbytes);
        lb_tensor d = t;
        d.owned = NULL, d.packed = NULL, d.kernel = NULL, d.data = copy, d.nbytes = n;
        CHECK_MSG(lb_tensor_resolve(&d) != LB_OK, "%zu of %zu bytes accepted", n, t.nbytes);
        lb_tensor_drop_cache(&d);
    }
    int accepted = 0;
    for (size_t i = 0; i < 16 + 3 * 32 + 32; i++)
        for (int bit = 0; bit < 8; bit += 3) {
            memcpy(copy, t.data, t.nbytes);
            copy[i] ^= (uint8_t)(1u << bit);
            lb_tensor d = t;
            d.owned = NULL, d.packed = NULL, d.kernel = NULL, d.data = copy;
            if (lb_tensor_resolve(&d) == LB_OK) {
                accepted++;
                CHECK_OK(lb_dequantize(&d, b)); /* a flip inside a part's own bytes: its values change, nothing else */
                float *x = a, *y = malloc(sizeof(float) * rows);
                CHECK_OK(lb_matmul(&d, x, 1, y, NULL));
                free(y);
            }
            lb_tensor_drop_cache(&d);
        }
    /* only flips in the first part's bytes (from offset 112) can hold */
    CHECK_MSG(accepted > 0 && accepted <= 3 * 32, "%d header flips accepted", accepted);
    /* specific fields */
    static const struct {
        size_t at;
        uint8_t v;
        const char *needle;
    } bad[] = {{0, 'X', "no LBSP header"},         {4, 0, "0 parts"},
               {5, 1, "parts in"},                 {8, 2, "axis 2"},    {12, 1, "reserved bytes are not zero"},
               {16, 101, "part 0's entry does not hold"}, {16 + 4, 'Q', "part 0's entry does not hold"},
               {16 + 4 + 20, 'x', "part 0's entry is not zero-padded"},
               {48 + 4 + 4, '9', "part 1's entry does not hold"}};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        memcpy(copy, t.data, t.nbytes);
        copy[bad[k].at] = bad[k].v;
        lb_tensor d = t;
        d.owned = NULL, d.packed = NULL, d.kernel = NULL, d.data = copy;
        CHECK_FAILS(lb_tensor_resolve(&d), LB_ERR_FORMAT, bad[k].needle);
        lb_tensor_drop_cache(&d);
    }
    /* a padding byte after a part that does not end on 16, and bytes after the last part */
    int padded = 0;
    size_t off = 16 + 3 * 32;
    for (int k = 0; k < 3; k++) {
        size_t end = off + parts[k].nbytes;
        if (end % 16 && !padded) {
            memcpy(copy, t.data, t.nbytes);
            copy[end] = 1;
            lb_tensor d = t;
            d.owned = NULL, d.packed = NULL, d.kernel = NULL, d.data = copy;
            char needle[64];
            snprintf(needle, sizeof needle, "the padding after part %d is not zero", k);
            CHECK_FAILS(lb_tensor_resolve(&d), LB_ERR_FORMAT, needle);
            lb_tensor_drop_cache(&d);
            padded = 1;
        }
        off = (end + 15) / 16 * 16;
    }
    CHECK_MSG(padded, "no part of the test tensor ends off a 16-byte boundary: pick other shapes");
    uint8_t *longer = calloc(t.nbytes + 16, 1);
    memcpy(longer, t.data, t.nbytes);
    lb_tensor d = t;
    d.owned = NULL, d.packed = NULL, d.kernel = NULL, d.data = longer, d.nbytes = t.nbytes + 16;
    CHECK_FAILS(lb_tensor_resolve(&d), LB_ERR_FORMAT, "the parts end at");
    lb_tensor_drop_cache(&d);
    free(longer);
    free(copy);
    for (int k = 0; k < 3; k++) lb_tensor_free(&parts[k]);
    lb_tensor_free(&t);
    free(w), free(a), free(b);
}

/* Column parts: a 48 x 100 weight as columns 0:32 int4, 32:64 q8_0, 64:100
 * trellis3: each row is the parts' pieces side by side, and the product
 * the parts' products on their columns of x, added in part order. */
static void test_format_cols(void) {
    const int64_t rows = 48, cols = 100;
    static const char *specs[3] = {"int4:g32:asym", "q8_0", "trellis3:row"};
    static const int64_t c[4] = {0, 32, 64, 100};
    float *w = malloc(sizeof(float) * rows * cols), *a = malloc(sizeof(float) * rows * cols);
    float *piece = malloc(sizeof(float) * rows * cols);
    fill(w, rows * cols, 3);
    lb_method_opts o;
    lb_method_opts_default(lb_method_find("rtn"), &o);
    lb_tensor parts[3], t;
    for (int k = 0; k < 3; k++) {
        int64_t ck = c[k + 1] - c[k];
        for (int64_t r = 0; r < rows; r++) memcpy(piece + r * ck, w + r * cols + c[k], sizeof(float) * ck);
        lb_qspec sk = lb_test_spec(specs[k]);
        CHECK_OK(lb_quantize_tensor(lb_method_find("rtn"), &o, NULL, piece, rows, ck, &sk, "p", &parts[k]));
    }
    CHECK_OK(lb_split_join_cols(parts, 3, "w", &t));
    CHECK(t.rows == rows && t.cols == cols && lb_split_parts(&t) == 3 && lb_split_axis(&t) == 1);
    size_t charged = LB_SPLIT_HEAD_BYTES;
    for (int k = 0; k < 3; k++) charged += lb_split_part_bytes(parts[k].nbytes);
    CHECK(charged == t.nbytes);
    /* dequantized: every row is the parts' pieces of it */
    CHECK_OK(lb_dequantize(&t, a));
    int same = 1;
    for (int k = 0; k < 3; k++) {
        int64_t ck = c[k + 1] - c[k];
        CHECK_OK(lb_dequantize(&parts[k], piece));
        for (int64_t r = 0; r < rows; r++) same &= !memcmp(a + r * cols + c[k], piece + r * ck, sizeof(float) * ck);
    }
    CHECK_MSG(same, "a column split's rows are not its parts' pieces");
    lb_tensor v;
    int64_t v0;
    CHECK_OK(lb_split_part(&t, 2, &v, &v0));
    CHECK(v0 == 64 && v.rows == rows && v.cols == 36 && v.nbytes == parts[2].nbytes);
    /* products: the parts' own products on their columns, added in order, bit for bit */
    for (int n = 1; n <= 5; n += 4) {
        float *x = malloc(sizeof(float) * n * cols), *y = malloc(sizeof(float) * n * rows);
        float *want = calloc((size_t)(n * rows), sizeof(float)), *yk = malloc(sizeof(float) * n * rows);
        float *xk = malloc(sizeof(float) * n * cols);
        fill(x, n * cols, 11 + n);
        CHECK_OK(lb_matmul(&t, x, n, y, NULL));
        for (int k = 0; k < 3; k++) {
            int64_t ck = c[k + 1] - c[k];
            for (int i = 0; i < n; i++) memcpy(xk + i * ck, x + i * cols + c[k], sizeof(float) * ck);
            CHECK_OK(lb_matmul(&parts[k], xk, n, yk, NULL));
            for (int64_t i = 0; i < n * rows; i++) want[i] = k ? want[i] + yk[i] : yk[i];
        }
        CHECK_MSG(!memcmp(y, want, sizeof(float) * n * rows), "column split product differs from its parts' (n = %d)", n);
        lb_act_cache *ac;
        CHECK_OK(lb_act_cache_create(n, (int)cols, &ac));
        CHECK_OK(lb_matmul(&t, x, n, yk, ac));
        CHECK(!memcmp(y, yk, sizeof(float) * n * rows));
        lb_act_cache_free(ac);
        double err = 0, scale = 0;
        for (int i = 0; i < n; i++)
            for (int64_t j = 0; j < rows; j++) {
                double sum = 0;
                for (int64_t q = 0; q < cols; q++) sum += (double)x[i * cols + q] * a[j * cols + q];
                err = fmax(err, fabs(sum - y[i * rows + j]));
                scale = fmax(scale, fabs(sum));
            }
        CHECK_MSG(err < 0.02 * scale, "column split product off the dequantized weights by %g of %g", err, scale);
        free(x), free(y), free(want), free(yk), free(xk);
    }
    /* the axis is part of the bytes: read as rows, the column counts do not hold */
    uint8_t *copy = malloc(t.nbytes);
    memcpy(copy, t.data, t.nbytes);
    copy[8] = 0;
    lb_tensor d = t;
    d.owned = NULL, d.packed = NULL, d.kernel = NULL, d.data = copy;
    CHECK(lb_tensor_resolve(&d) == LB_ERR_FORMAT);
    lb_tensor_drop_cache(&d);
    for (size_t n = 0; n < t.nbytes; n += n < 200 ? 1 : 61) {
        d = t;
        d.owned = NULL, d.packed = NULL, d.kernel = NULL, d.data = t.data, d.nbytes = n;
        CHECK_MSG(lb_tensor_resolve(&d) != LB_OK, "%zu of %zu bytes of a column split accepted", n, t.nbytes);
        lb_tensor_drop_cache(&d);
    }
    free(copy);
    /* joining refuses parts of different heights */
    lb_tensor shorter;
    lb_qspec s8 = lb_test_spec("q8_0");
    CHECK_OK(lb_quantize_tensor(lb_method_find("rtn"), &o, NULL, w, rows - 1, 32, &s8, "s", &shorter));
    lb_tensor mixed[2] = {parts[0], shorter};
    CHECK_FAILS(lb_split_join_cols(mixed, 2, "w", &v), LB_ERR_INVALID, "48 and 47 rows");
    lb_tensor_free(&shorter);
    for (int k = 0; k < 3; k++) lb_tensor_free(&parts[k]);
    lb_tensor_free(&t);
    free(w), free(a), free(piece);
}

static lb_status parse(lb_plan *p, const char *text) {
    lb_plan_init(p);
    return lb_plan_parse_recipe(p, text, strlen(text), "r");
}

static void test_rules(lb_model *m) {
    lb_plan p;
    /* last match wins row by row; a tensor whose rows agree is whole */
    CHECK_OK(parse(&p, "linears int4:g32:asym\n"
                       "blk.0.ffn_down.weight rows=0:32 int2:g64:asym method=rtn clip=mse\n"
                       "blk.0.ffn_down.weight rows=16:24 q8_0\n"
                       "blk.1.attn_q.weight rows=0:64 int8:g32:sym\n"
                       "blk.2.attn_k.weight rows=0:16 int4:g32:asym\n"));
    CHECK(p.rules[1].row0 == 0 && p.rules[1].row1 == 32 && p.rules[0].row1 == 0);
    CHECK_OK(lb_plan_resolve(&p, m));
    CHECK(p.n_entries == 35);
    int splits = 0;
    for (int i = 0; i < p.n_entries; i++) {
        const lb_plan_entry *e = &p.entries[i];
        splits += e->n_parts > 0;
        if (!strcmp(e->name, "blk.0.ffn_down.weight")) {
            CHECK(e->n_parts == 4 && !strcmp(lb_format_family_name(&e->spec), "split"));
            static const int64_t b[5] = {0, 16, 24, 32, 64};
            static const char *fam[4] = {"int", "int", "int", "int"};
            for (int k = 0; k < 4 && e->n_parts == 4; k++) {
                CHECK(e->parts[k].row0 == b[k] && e->parts[k].row1 == b[k + 1]);
                CHECK(!strcmp(lb_format_family_name(&e->parts[k].spec), fam[k]));
            }
            char s[64];
            lb_qspec_format(&e->parts[1].spec, s, sizeof s);
            CHECK_MSG(!strcmp(s, "int8:g32:sym"), "part 1 is %s", s);
            CHECK(lb_method_opts_get(&e->parts[0].opts, "clip") == 1 && lb_method_opts_get(&e->parts[3].opts, "clip") == 0);
        } else if (!strcmp(e->name, "blk.1.attn_q.weight")) { /* every row int8: a whole tensor */
            char s[64];
            lb_qspec_format(&e->spec, s, sizeof s);
            CHECK(e->n_parts == 0 && !strcmp(s, "int8:g32:sym"));
        } else if (!strcmp(e->name, "blk.2.attn_k.weight")) { /* two rules alike are still two parts */
            CHECK(e->n_parts == 2 && e->parts[0].rule == 4 && e->parts[1].rule == 0 &&
                  lb_qspec_equal(&e->parts[0].spec, &e->parts[1].spec));
        }
    }
    CHECK(splits == 2);
    /* written resolved, a split tensor is its parts' row lines, which read back to the same entries */
    char *text;
    CHECK_OK(lb_plan_format_recipe(&p, 1, NULL, &text));
    CHECK(strstr(text, "blk.0.ffn_down.weight rows=16:24 int8:g32:sym method=rtn") != NULL);
    CHECK(strstr(text, "blk.0.ffn_down.weight rows=32:64 int4:g32:asym method=rtn") != NULL);
    lb_plan back;
    CHECK_OK(parse(&back, text));
    CHECK_OK(lb_plan_resolve(&back, m));
    CHECK(back.n_entries == p.n_entries);
    for (int i = 0; i < p.n_entries && i < back.n_entries; i++) {
        const lb_plan_entry *x = &p.entries[i], *y = &back.entries[i];
        CHECK(x->n_parts == y->n_parts && lb_qspec_equal(&x->spec, &y->spec));
        for (int k = 0; k < x->n_parts && k < y->n_parts; k++)
            CHECK(x->parts[k].row0 == y->parts[k].row0 && x->parts[k].row1 == y->parts[k].row1 &&
                  lb_qspec_equal(&x->parts[k].spec, &y->parts[k].spec) &&
                  lb_method_opts_equal(&x->parts[k].opts, &y->parts[k].opts));
    }
    lb_free(text);
    lb_plan_free(&back);
    /* a resumable run's fingerprint names every part: a changed part is a different plan */
    char *fp1, *fp2;
    CHECK_OK(lb_journal_fingerprint(m, &p, NULL, NULL, 0, NULL, &fp1));
    lb_plan q;
    CHECK_OK(parse(&q, "linears int4:g32:asym\n"
                       "blk.0.ffn_down.weight rows=0:32 int2:g64:asym method=rtn clip=mse\n"
                       "blk.0.ffn_down.weight rows=16:24 q8_0\n"
                       "blk.1.attn_q.weight rows=0:64 int8:g32:sym\n"
                       "blk.2.attn_k.weight rows=0:16 int3:g32:asym\n"));
    CHECK_OK(lb_journal_fingerprint(m, &q, NULL, NULL, 0, NULL, &fp2));
    CHECK(strstr(fp1, "  rows 0:16: int4:g32:asym rtn") != NULL && strstr(fp2, "  rows 0:16: int3:g32:asym rtn") != NULL);
    CHECK(strcmp(fp1, fp2) != 0);
    lb_free(fp1), lb_free(fp2);
    lb_plan_free(&q);
    char sum[512];
    lb_plan_summary(&p, sum, sizeof sum);
    CHECK_MSG(strstr(sum, "blk.0.ffn_down.weight[rows 16:24]") != NULL, "summary: %s", sum);
    lb_plan_free(&p);

    /* column rules: the same, along the input columns */
    CHECK_OK(parse(&p, "linears int4:g32:asym\n"
                       "blk.0.ffn_down.weight cols=0:64 int2:g64:asym\n"
                       "blk.0.ffn_down.weight cols=64:172 int3:g32:asym method=rtn clip=mse\n"));
    CHECK(p.rules[1].axis == 1 && p.rules[1].row1 == 64 && p.rules[0].axis == 0);
    CHECK_OK(lb_plan_resolve(&p, m));
    int found = 0;
    for (int i = 0; i < p.n_entries; i++) {
        const lb_plan_entry *e = &p.entries[i];
        if (strcmp(e->name, "blk.0.ffn_down.weight")) {
            CHECK(e->n_parts == 0);
            continue;
        }
        found = 1;
        CHECK(e->n_parts == 2 && e->split_axis == 1 && !strcmp(lb_format_family_name(&e->spec), "split"));
        CHECK(e->n_parts == 2 && e->parts[0].row0 == 0 && e->parts[0].row1 == 64 && e->parts[1].row0 == 64 &&
              e->parts[1].row1 == 172 && lb_method_opts_get(&e->parts[1].opts, "clip") == 1);
    }
    CHECK(found);
    CHECK_OK(lb_plan_format_recipe(&p, 1, NULL, &text));
    CHECK_MSG(strstr(text, "blk.0.ffn_down.weight cols=64:172 int3:g32:asym method=rtn") != NULL, "%s", text);
    CHECK_OK(parse(&back, text));
    CHECK_OK(lb_plan_resolve(&back, m));
    for (int i = 0; i < p.n_entries && i < back.n_entries; i++) {
        const lb_plan_entry *x = &p.entries[i], *y = &back.entries[i];
        CHECK(x->n_parts == y->n_parts && x->split_axis == y->split_axis);
        for (int k = 0; k < x->n_parts && k < y->n_parts; k++)
            CHECK(x->parts[k].row0 == y->parts[k].row0 && x->parts[k].row1 == y->parts[k].row1 &&
                  lb_qspec_equal(&x->parts[k].spec, &y->parts[k].spec));
    }
    lb_free(text);
    lb_plan_free(&back);
    CHECK_OK(lb_journal_fingerprint(m, &p, NULL, NULL, 0, NULL, &fp1));
    CHECK_MSG(strstr(fp1, "  cols 0:64: int2:g64:asym rtn") != NULL, "%s", fp1);
    lb_free(fp1);
    lb_plan_summary(&p, sum, sizeof sum);
    CHECK_MSG(strstr(sum, "blk.0.ffn_down.weight[cols 64:172]") != NULL, "summary: %s", sum);
    lb_plan_free(&p);

    /* what does not resolve */
    static const struct {
        const char *text, *needle;
    } bad[] = {
        {"blk.0.ffn_down.weight rows=0:32 int4\n", "rows 32:64 of 'blk.0.ffn_down.weight' are selected by no rule"},
        {"linears int4\nblk.0.attn_k.weight rows=16:40 int2\n", "rows 16:40 of 'blk.0.attn_k.weight', which has 32"},
        {"linears int4\nblk.0.attn_k.weight rows=0:16 int2 method=gptq outliers=0.01\n", "outliers changes the whole linear"},
        {"linears int4\nblk.0.attn_k.weight rows=0:16 int4 method=awq\n", "awq changes the whole linear"},
        {"linears int4\nblk.0.attn_k.weight rows=0:16 int2 rotate=hadamard\n", "rotate changes the whole linear"},
        {"linears int4\nblk.0.attn_k.weight rows=0:16 binary method=twn\n", "rows 0:16"},
        {"linears int4\nblk.0.attn_k.weight rows=0:16 int2\nblk.0.*.weight cols=0:16 int2\n",
         "'blk.0.attn_k.weight' is cut by row rules and by column rules"},
        {"linears int4\nblk.0.attn_k.weight cols=16:80 int2\n", "columns 16:80 of 'blk.0.attn_k.weight', which has 64"},
        {"blk.0.attn_k.weight cols=0:32 int4\n", "columns 32:64 of 'blk.0.attn_k.weight' are selected by no rule"},
        {"linears int4\nblk.0.attn_k.weight cols=0:16 int2 method=gptq outliers=0.01\n",
         "'blk.0.attn_k.weight' columns 0:16: outliers changes the whole linear"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        CHECK_OK(parse(&p, bad[k].text));
        lb_status st = lb_plan_resolve(&p, m);
        if (st == LB_OK) st = lb_plan_check(&p);
        CHECK_MSG(st != LB_OK && strstr(lb_last_error(), bad[k].needle), "'%s': %s", bad[k].text, lb_last_error());
        lb_plan_free(&p);
    }
    static const struct {
        const char *text, *needle;
    } unparsable[] = {
        {"linears int4\nblk.0.attn_k.weight rows=5:3 int2\n", "r:2: 'rows=5:3': expected rows=R0:R1"},
        {"linears int4\nblk.0.attn_k.weight rows=a:3 int2\n", "r:2: 'rows=a:3'"},
        {"linears int4\nblk.0.attn_k.weight rows=0:8\n", "r:2: expected PATTERN rows=R0:R1 SPEC"},
        {"linears int4\nblk.0.attn_k.weight rows=0:8x int2\n", "r:2: 'rows=0:8x'"},
        {"linears int4\nblk.0.attn_k.weight rows=0:8 split\n", "format 'split' is not a target"},
        {"linears int4\nblk.0.attn_k.weight cols=5:3 int2\n", "r:2: 'cols=5:3': expected cols=C0:C1"},
        {"linears int4\nblk.0.attn_k.weight cols=0:8\n", "r:2: expected PATTERN cols=C0:C1 SPEC"},
        {"linears split\n", "r:1: format 'split' is not a target"},
    };
    for (size_t k = 0; k < sizeof unparsable / sizeof unparsable[0]; k++) {
        lb_plan_init(&p);
        CHECK_FAILS(lb_plan_parse_recipe(&p, unparsable[k].text, strlen(unparsable[k].text), "r"), LB_ERR_FORMAT,
                    unparsable[k].needle);
        lb_plan_free(&p);
    }
}

/* quantized by a recipe with row rules: each part is its rows quantized
 * alone (gptq with the input's X^T X), saved and loaded intact, evaluated
 * as in memory */
static void test_quantize(const char *path, lb_model *ref) {
    lb_text text;
    CHECK_OK(lb_text_load(lb_test_data("text/tinystories-sample.txt"), &text));
    lb_calib_opts co;
    lb_calib_opts_default(&co);
    co.text = &text;
    co.calib_blocks = 6;
    co.parts = LB_STATS_XTX;
    lb_calib_stats *stats = NULL;
    CHECK_OK(lb_calibrate(ref, &co, &stats));
    lb_model *m;
    CHECK_OK(lb_model_load(path, NULL, &m));
    lb_plan p;
    CHECK_OK(parse(&p, "linears int4:g32:asym method=gptq\n"
                       "blk.*.ffn_down.weight rows=0:32 int2:g32:asym method=gptq\n"
                       "blk.3.ffn_gate.weight rows=88:172 trellis3:down:s6 method=gptq\n"));
    lb_quantize_report rep;
    CHECK_OK(lb_quantize_model_calibrated(m, &p, stats, &rep));
    CHECK(rep.tensors_quantized == 35);
    lb_tensor *down = NULL, *gate = NULL;
    const lb_tensor *down0 = NULL;
    for (int i = 0; i < lb_model_n_tensors(m); i++) {
        if (!strcmp(lb_model_tensor_at(m, i)->name, "blk.2.ffn_down.weight"))
            down = lb_model_tensor_at(m, i), down0 = lb_model_tensor_at(ref, i);
        if (!strcmp(lb_model_tensor_at(m, i)->name, "blk.3.ffn_gate.weight")) gate = lb_model_tensor_at(m, i);
    }
    CHECK(down && gate && lb_split_parts(down) == 2 && lb_split_parts(gate) == 2);
    /* part 0 of blk.2.ffn_down: rows 0:32 quantized alone by gptq int2 with the input's X^T X */
    const lb_layer_stats *ls = lb_calib_stats_for_tensor(stats, ref, down0);
    lb_layer_stats rows = lb_layer_stats_rows(ls, 0, 32);
    lb_method_opts o;
    lb_method_opts_default(lb_method_find("gptq"), &o);
    lb_qspec s2 = lb_test_spec("int2:g32:asym");
    lb_tensor alone, v;
    int64_t v0;
    CHECK_OK(lb_quantize_tensor(o.method, &o, &rows, (const float *)down0->data, 32, down0->cols, &s2, "a", &alone));
    CHECK_OK(lb_split_part(down, 0, &v, &v0));
    CHECK(v.nbytes == alone.nbytes && !memcmp(v.data, alone.data, v.nbytes));
    lb_tensor_free(&alone);
    /* bpw in the report counts the whole split tensor's bytes (header, padding) */
    for (int i = 0; i < rep.tensors_quantized; i++)
        if (!strcmp(rep.tensors[i].name, "blk.2.ffn_down.weight"))
            CHECK_NEAR(rep.tensors[i].bpw, 8.0 * (double)down->nbytes / (64.0 * 172.0), 1e-12);
    /* saved and loaded: the same bytes, the same perplexity */
    char dir[] = "/tmp/lb_split_XXXXXX", file[64];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(file, sizeof file, "%s/s.gguf", dir);
    CHECK_OK(lb_model_save_gguf(m, file));
    lb_model *back;
    CHECK_OK(lb_model_load(file, NULL, &back));
    for (int i = 0; i < lb_model_n_tensors(m); i++) {
        const lb_tensor *a = lb_model_tensor_at(m, i), *b = lb_model_tensor_at(back, i);
        CHECK(a->nbytes == b->nbytes && lb_qspec_equal(&a->spec, &b->spec) && !memcmp(a->data, b->data, a->nbytes));
    }
    lb_eval_opts eo = {.protocol = LB_PROTOCOL_DOCS, .split = LB_SPLIT_CALIB, .calib_blocks = 40};
    lb_eval_result r1, r2;
    CHECK_OK(lb_evaluate(m, &text, &eo, &r1));
    CHECK_OK(lb_evaluate(back, &text, &eo, &r2));
    CHECK(r1.nll == r2.nll && r1.tokens > 0 && isfinite(r1.ppl));
    remove(file);
    rmdir(dir);
    lb_model_free(back);
    lb_quantize_report_free(&rep);
    lb_plan_free(&p);
    /* column rules: each part its columns quantized alone by gptq with
     * those input channels' X^T X block; saved, loaded and evaluated the same */
    CHECK_OK(parse(&p, "linears int4:g32:asym method=gptq\n"
                       "blk.*.ffn_down.weight cols=0:64 int2:g32:asym method=gptq\n"));
    lb_model *mc;
    CHECK_OK(lb_model_load(path, NULL, &mc));
    CHECK_OK(lb_quantize_model_calibrated(mc, &p, stats, &rep));
    down = NULL;
    for (int i = 0; i < lb_model_n_tensors(mc); i++)
        if (!strcmp(lb_model_tensor_at(mc, i)->name, "blk.2.ffn_down.weight")) down = lb_model_tensor_at(mc, i);
    CHECK(down && lb_split_parts(down) == 2 && lb_split_axis(down) == 1);
    lb_layer_stats cs;
    CHECK_OK(lb_layer_stats_cols(ls, 0, 64, &cs));
    CHECK(cs.cols == 64 && cs.rows == 64 && cs.xtx[3 * 64 + 5] == ls->xtx[3 * 172 + 5]);
    float *piece = malloc(sizeof(float) * 64 * 64);
    for (int r = 0; r < 64; r++) memcpy(piece + r * 64, (const float *)down0->data + r * 172, sizeof(float) * 64);
    CHECK_OK(lb_quantize_tensor(o.method, &o, &cs, piece, 64, 64, &s2, "a", &alone));
    CHECK_OK(lb_split_part(down, 0, &v, &v0));
    CHECK(v0 == 0 && v.cols == 64 && v.nbytes == alone.nbytes && !memcmp(v.data, alone.data, v.nbytes));
    lb_tensor_free(&alone);
    lb_layer_stats_free(&cs);
    free(piece);
    CHECK_FAILS(lb_layer_stats_cols(ls, 100, 200, &cs), LB_ERR_INVALID, "columns 100:200");
    char dir2[] = "/tmp/lb_split_XXXXXX";
    CHECK(mkdtemp(dir2) != NULL);
    snprintf(file, sizeof file, "%s/c.gguf", dir2);
    CHECK_OK(lb_model_save_gguf(mc, file));
    CHECK_OK(lb_model_load(file, NULL, &back));
    CHECK_OK(lb_evaluate(mc, &text, &eo, &r1));
    CHECK_OK(lb_evaluate(back, &text, &eo, &r2));
    CHECK(r1.nll == r2.nll && isfinite(r1.ppl) && r1.ppl < 100);
    remove(file);
    rmdir(dir2);
    lb_model_free(back);
    lb_model_free(mc);
    lb_quantize_report_free(&rep);
    lb_plan_free(&p);
    /* sequential mode takes row rules too (gptaq's cross statistics hold for any rows) */
    CHECK_OK(parse(&p, "blk.0.attn_k.weight int4:g32:asym method=gptaq\n"
                       "blk.0.attn_k.weight rows=0:16 int2:g32:asym method=gptaq\n"));
    lb_model *sq;
    CHECK_OK(lb_model_load(path, NULL, &sq));
    CHECK_OK(lb_quantize_model_sequential(sq, &p, &co, NULL));
    for (int i = 0; i < lb_model_n_tensors(sq); i++)
        if (!strcmp(lb_model_tensor_at(sq, i)->name, "blk.0.attn_k.weight")) CHECK(lb_split_parts(lb_model_tensor_at(sq, i)) == 2);
    lb_model_free(sq);
    lb_plan_free(&p);
    lb_model_free(m);
    lb_calib_stats_free(stats);
    lb_text_free(&text);
}

int main(void) {
    test_format();
    test_format_cols();
    const char *path = lb_test_data("models/stories260K.bin");
    lb_model *m;
    CHECK_OK(lb_model_load(path, NULL, &m));
    test_rules(m);
    test_quantize(path, m);
    lb_model_free(m);
    return lb_test_finish("test_split");
}
