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
    test_errors();
    test_atomic_file();
    test_worker_error();
    char buf[256];
    lb_cpu_describe(buf, sizeof buf);
    printf("cpu: %s, threads %d\n", buf, lb_get_threads());
    return lb_test_finish("test_core");
}
