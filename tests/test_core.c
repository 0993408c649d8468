/* Core: half-float conversions, RNG, status messages, atomic files. */
#include "test.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#include <unistd.h>
#if defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("f16c"))) static uint16_t hw_fp16(float f) {
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}
#endif

static void test_fp16(void) {
    /* every finite fp16 survives fp16 -> fp32 -> fp16 */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7c00u) == 0x7c00u && (h & 0x3ffu)) continue; /* NaN payloads */
        if (lb_fp32_to_fp16(lb_fp16_to_fp32((uint16_t)h)) != h) bad++;
    }
    CHECK_MSG(bad == 0, "%d fp16 values do not round-trip", bad);
    CHECK(lb_fp16_to_fp32(0x3c00) == 1.0f);
    CHECK(lb_fp16_to_fp32(0xc000) == -2.0f);
    CHECK(lb_fp16_to_fp32(0x7bff) == 65504.0f);
    CHECK(lb_fp16_to_fp32(0x0001) == ldexpf(1.0f, -24));
    CHECK(lb_fp32_to_fp16(65520.0f) == 0x7c00);  /* rounds to Inf */
    CHECK(lb_fp32_to_fp16(65519.0f) == 0x7bff);
    CHECK(lb_fp32_to_fp16(1.0f + ldexpf(1.0f, -11)) == 0x3c00); /* tie to even */
    CHECK(lb_fp32_to_fp16(1.0f + 3 * ldexpf(1.0f, -11)) == 0x3c02);
    CHECK(lb_fp32_to_fp16(ldexpf(1.0f, -25)) == 0x0000);        /* tie to even (zero) */
    CHECK(lb_fp32_to_fp16(ldexpf(1.5f, -25)) == 0x0001);
    CHECK(isnan(lb_fp16_to_fp32(lb_fp32_to_fp16(NAN))));
#if defined(__x86_64__)
    if (lb_cpu_features() & LB_CPU_F16C) {
        lb_rng r;
        lb_rng_seed(&r, 7);
        int mism = 0;
        for (int i = 0; i < 2000000; i++) {
            uint32_t u = lb_rng_u32(&r);
            float f;
            memcpy(&f, &u, 4);
            if (isnan(f)) continue;
            if (lb_fp32_to_fp16(f) != hw_fp16(f)) mism++;
        }
        CHECK_MSG(mism == 0, "%d of 2e6 random floats convert differently from F16C", mism);
    } else {
        printf("note: no F16C on this CPU, hardware comparison skipped\n");
    }
#endif
}

static void test_bf16(void) {
    CHECK(lb_fp32_to_bf16(1.0f) == 0x3f80);
    CHECK(lb_bf16_to_fp32(0x3f80) == 1.0f);
    /* 1 + 2^-8 is halfway between bf16 neighbours 1 and 1 + 2^-7: ties to even */
    CHECK(lb_fp32_to_bf16(1.0f + ldexpf(1.0f, -8)) == 0x3f80);
    CHECK(lb_fp32_to_bf16(1.0f + 3 * ldexpf(1.0f, -8)) == 0x3f82);
    CHECK(isnan(lb_bf16_to_fp32(lb_fp32_to_bf16(NAN))));
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7f80u) == 0x7f80u && (h & 0x7fu)) continue;
        if (lb_fp32_to_bf16(lb_bf16_to_fp32((uint16_t)h)) != h) bad++;
    }
    CHECK(bad == 0);
}

static void test_rng(void) {
    lb_rng a, b;
    lb_rng_seed(&a, 42);
    lb_rng_seed(&b, 42);
    for (int i = 0; i < 100; i++) CHECK(lb_rng_u32(&a) == lb_rng_u32(&b));
    double sum = 0, sq = 0;
    int n = 200000;
    for (int i = 0; i < n; i++) {
        double x = lb_rng_normal(&a);
        sum += x;
        sq += x * x;
    }
    CHECK_NEAR(sum / n, 0.0, 0.01);
    CHECK_NEAR(sq / n, 1.0, 0.02);
    float f = lb_rng_f32(&a);
    CHECK(f >= 0.0f && f < 1.0f);
}

/* The randomized Hadamard transform against its definition built here as a
 * dense matrix, T = (H / sqrt(2^k)) (x) C (Sylvester H, orthonormal DCT-II
 * C), R = T diag(d): forward and transpose, both element types; R^T R = I;
 * no entry of T above sqrt(2 / n); sizes with no such form refused. */
static double rht_entry(int64_t n, int i, int j) {
    int m = lb_rht_odd(n), a = i / m, b = i % m, c = j / m, e = j % m, p = 0;
    for (int t = a & c; t; t &= t - 1) p ^= 1;
    double h = (p ? -1.0 : 1.0) / sqrt((double)(n / m));
    double cc = (b ? sqrt(2.0 / m) : sqrt(1.0 / m)) * cos(3.14159265358979323846 * (2 * e + 1) * b / (2.0 * m));
    return h * cc;
}

static void test_rht(void) {
    static const int sizes[] = {1, 2, 3, 8, 12, 43, 64, 96, 172, 255, 510};
    CHECK(lb_rht_odd(172) == 43 && lb_rht_odd(4096) == 1 && lb_rht_odd(11008) == 43 && lb_rht_odd(257) == 0 &&
          lb_rht_odd(0) == 0 && lb_rht_odd(-4) == 0);
    CHECK_FAILS(lb_rht_check(257), LB_ERR_INVALID, "2^k m");
    float x1[4] = {1, 2, 3, 4};
    CHECK_FAILS(lb_rht_apply(x1, 514, NULL, 0), LB_ERR_INVALID, "514");
    lb_rng r;
    lb_rng_seed(&r, 11);
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int n = sizes[s];
        float *d = malloc(sizeof(float) * (size_t)n), *x = malloc(sizeof(float) * (size_t)n);
        float *y = malloc(sizeof(float) * (size_t)n);
        double *xd = malloc(sizeof(double) * (size_t)n);
        lb_rht_signs(1234 + (uint64_t)s, n, d);
        int neg = 0;
        for (int j = 0; j < n; j++) neg += d[j] < 0;
        CHECK_MSG(n < 64 || (neg > n / 4 && neg < 3 * n / 4), "n=%d: %d negative signs", n, neg);
        double emax = 0, worst = 0, worst_t = 0, worst_d = 0, worst_inv = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) emax = fmax(emax, fabs(rht_entry(n, i, j)));
        CHECK_MSG(emax <= sqrt(2.0 / n) * (1 + 1e-12), "n=%d: an entry of T is %g > sqrt(2/n)", n, emax);
        for (int j = 0; j < n; j++) x[j] = (float)lb_rng_normal(&r);
        for (int j = 0; j < n; j++) xd[j] = x[j];
        memcpy(y, x, sizeof(float) * (size_t)n);
        CHECK_OK(lb_rht_apply(y, n, d, 0));
        CHECK_OK(lb_rht_apply_f64(xd, n, d, 0));
        for (int i = 0; i < n; i++) {
            double want = 0;
            for (int j = 0; j < n; j++) want += rht_entry(n, i, j) * d[j] * x[j];
            worst = fmax(worst, fabs(y[i] - want));
            worst_d = fmax(worst_d, fabs(xd[i] - want));
        }
        /* transpose: R^T y = diag(d) T^T y */
        float *z = malloc(sizeof(float) * (size_t)n);
        memcpy(z, y, sizeof(float) * (size_t)n);
        CHECK_OK(lb_rht_apply(z, n, d, 1));
        for (int j = 0; j < n; j++) {
            double want = 0;
            for (int i = 0; i < n; i++) want += d[j] * rht_entry(n, i, j) * y[i];
            worst_t = fmax(worst_t, fabs(z[j] - want));
            worst_inv = fmax(worst_inv, fabs(z[j] - x[j])); /* R^T R = I */
        }
        CHECK_MSG(worst < 1e-5 && worst_t < 1e-5, "n=%d: forward off by %g, transpose by %g", n, worst, worst_t);
        CHECK_MSG(worst_d < 1e-12, "n=%d: the double transform off by %g", n, worst_d);
        CHECK_MSG(worst_inv < 1e-5, "n=%d: R^T R x differs from x by %g", n, worst_inv);
        free(z);
        free(d);
        free(x);
        free(y);
        free(xd);
    }
    /* rows and columns of a matrix: each vector through the transform */
    {
        enum { R = 12, C = 20 };
        float a[R * C], b[R * C], dr[C], dc[R], v[R];
        double ad[R * C];
        lb_rht_signs(3, C, dr);
        lb_rht_signs(4, R, dc);
        for (int i = 0; i < R * C; i++) a[i] = b[i] = (float)lb_rng_normal(&r), ad[i] = a[i];
        for (int t = 0; t < 2; t++) {
            CHECK_OK(lb_rht_apply_rows(a, R, C, dr, t));
            CHECK_OK(lb_rht_apply_cols(a, R, C, dc, t));
            CHECK_OK(lb_rht_apply_rows_f64(ad, R, C, dr, t));
            CHECK_OK(lb_rht_apply_cols_f64(ad, R, C, dc, t));
            for (int i = 0; i < R; i++) CHECK_OK(lb_rht_apply(b + i * C, C, dr, t));
            for (int c = 0; c < C; c++) {
                for (int i = 0; i < R; i++) v[i] = b[i * C + c];
                CHECK_OK(lb_rht_apply(v, R, dc, t));
                for (int i = 0; i < R; i++) b[i * C + c] = v[i];
            }
            for (int i = 0; i < R * C; i++) {
                CHECK_NEAR(a[i], b[i], 1e-5);
                CHECK_NEAR(ad[i], b[i], 1e-5);
            }
        }
        CHECK_FAILS(lb_rht_apply_cols(a, 257, 1, NULL, 0), LB_ERR_INVALID, "2^k m");
    }
    /* the same seed gives the same signs; another seed others */
    float a[64], b[64];
    lb_rht_signs(7, 64, a);
    lb_rht_signs(7, 64, b);
    CHECK(memcmp(a, b, sizeof a) == 0);
    lb_rht_signs(8, 64, b);
    CHECK(memcmp(a, b, sizeof a) != 0);
}

static void test_errors(void) {
    CHECK(lb_fail(LB_ERR_FORMAT, "bad thing %d", 7) == LB_ERR_FORMAT);
    CHECK(strcmp(lb_last_error(), "bad thing 7") == 0);
    CHECK(lb_fail_context(LB_ERR_FORMAT, "loading %s", "x.bin") == LB_ERR_FORMAT);
    CHECK(strcmp(lb_last_error(), "loading x.bin: bad thing 7") == 0);
    CHECK(strcmp(lb_status_name(LB_ERR_NUMERIC), "non-finite value") == 0);
    size_t out;
    CHECK(lb_mul_overflows(SIZE_MAX / 2, 3, &out));
    CHECK(!lb_mul_overflows(1000, 1000, &out) && out == 1000000);
    CHECK(lb_calloc(SIZE_MAX / 4, 8) == NULL);
}

static void test_atomic_file(void) {
    char dir[] = "/tmp/lb_core_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/out.bin", dir);
    lb_atomic_file f;
    CHECK_OK(lb_atomic_open(&f, path));
    lb_atomic_write(&f, "abc", 3);
    lb_atomic_pad(&f, 8);
    CHECK(access(path, F_OK) != 0); /* nothing under the final name yet */
    CHECK_OK(lb_atomic_commit(&f));
    lb_mapped_file m;
    CHECK_OK(lb_map_file(path, &m));
    CHECK(m.size == 8 && memcmp(m.data, "abc\0\0\0\0\0", 8) == 0);
    lb_unmap_file(&m);
    /* aborted writes leave nothing behind */
    char path2[256];
    snprintf(path2, sizeof path2, "%s/never.bin", dir);
    CHECK_OK(lb_atomic_open(&f, path2));
    lb_atomic_write(&f, "x", 1);
    lb_atomic_abort(&f);
    CHECK(access(path2, F_OK) != 0);
    /* a directory that does not exist: clear error, no file */
    CHECK_FAILS(lb_atomic_open(&f, "/nonexistent-dir/x.bin"), LB_ERR_IO, "cannot create");
    CHECK_FAILS(lb_map_file("/nonexistent-dir/x.bin", &m), LB_ERR_IO, "cannot open");
    CHECK_FAILS(lb_map_file(dir, &m), LB_ERR_IO, "not a regular file");
    remove(path);
    rmdir(dir);
}

/* A worker thread's message reaches the caller (lb_last_error is per thread). */
static void test_worker_error(void) {
    lb_worker_error e;
    lb_worker_error_init(&e);
    CHECK(!lb_worker_error_failed(&e));
    CHECK(lb_worker_error_raise(&e) == LB_OK);
    lb_fail(LB_ERR_IO, "the caller's own earlier message");
    int on_worker = 0;
#pragma omp parallel for num_threads(4) schedule(static)
    for (int i = 0; i < 64; i++) {
        if (i != 37) continue;
        lb_worker_error_set(&e, lb_fail(LB_ERR_FORMAT, "item %d failed in a worker", i));
#ifdef _OPENMP
        on_worker = omp_get_thread_num() != 0;
#endif
    }
    CHECK(lb_worker_error_failed(&e));
    CHECK_FAILS(lb_worker_error_raise(&e), LB_ERR_FORMAT, "item 37 failed in a worker");
    printf("worker error raised on the caller (set on %s thread)\n", on_worker ? "another" : "the same");
    /* the first error wins; LB_OK is not an error */
    lb_worker_error_set(&e, lb_fail(LB_ERR_NOMEM, "a later failure"));
    lb_worker_error_set(&e, LB_OK);
    CHECK_FAILS(lb_worker_error_raise(&e), LB_ERR_FORMAT, "item 37 failed in a worker");
    /* many threads failing at once: exactly one message, whole */
    lb_worker_error_init(&e);
#pragma omp parallel for num_threads(4)
    for (int i = 0; i < 1000; i++) lb_worker_error_set(&e, lb_fail(LB_ERR_IO, "failure number %d of many", i));
    CHECK_FAILS(lb_worker_error_raise(&e), LB_ERR_IO, "failure number ");
    CHECK(strstr(lb_last_error(), " of many") != NULL);
}

int main(void) {
    test_fp16();
    test_bf16();
    test_rng();
    test_rht();
    test_errors();
    test_atomic_file();
    test_worker_error();
    char buf[256];
    lb_cpu_describe(buf, sizeof buf);
    printf("cpu: %s, threads %d\n", buf, lb_get_threads());
    return lb_test_finish("test_core");
}
