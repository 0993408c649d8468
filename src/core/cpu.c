/* CPU feature detection (once) and thread count. */
#include "lowbit/core.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
/* the kernel's AT_HWCAP bit (asm/hwcap.h), spelled out for older headers */
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

static unsigned detect(void) {
    unsigned f = 0;
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int osxsave = (c >> 27) & 1;
    if (c & (1u << 12)) f |= LB_CPU_FMA;
    if (c & (1u << 29)) f |= LB_CPU_F16C;
    if (!osxsave) return 0;
    /* the OS must save the ymm (and for AVX-512, the zmm/opmask) state */
    unsigned xlo, xhi;
    __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    int ymm_ok = (xlo & 0x6) == 0x6;
    int zmm_ok = (xlo & 0xe6) == 0xe6;
    if (!ymm_ok) return 0;
    if (__get_cpuid_max(0, NULL) >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        if (b & (1u << 5)) f |= LB_CPU_AVX2;
        if (zmm_ok) {
            if (b & (1u << 16)) f |= LB_CPU_AVX512F;
            if (b & (1u << 30)) f |= LB_CPU_AVX512BW;
            if (c & (1u << 1)) f |= LB_CPU_AVX512VBMI;
            if (c & (1u << 11)) f |= LB_CPU_AVX512VNNI;
            if (c & (1u << 14)) f |= LB_CPU_AVX512VPOPCNTDQ;
        }
    }
#elif defined(__aarch64__)
    f |= LB_CPU_NEON; /* Advanced SIMD is part of the AArch64 base architecture */
#if defined(__linux__)
    unsigned long hw = getauxval(AT_HWCAP);
    if (hw & HWCAP_ASIMDDP) f |= LB_CPU_DOTPROD;
#endif
#endif
    return f;
}

static unsigned features;
static pthread_once_t features_once = PTHREAD_ONCE_INIT;

static void detect_once(void) {
    const char *env = getenv("LB_CPU");
    features = (env && strcmp(env, "generic") == 0) ? 0 : detect();
}

/* pthread_once: the first caller detects, concurrent callers wait for it
 * (kernels may ask from inside parallel regions) */
unsigned lb_cpu_features(void) {
    pthread_once(&features_once, detect_once);
    return features;
}

void lb_cpu_describe(char *buf, size_t n) {
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {{LB_CPU_AVX2, "avx2"},
                 {LB_CPU_FMA, "fma"},
                 {LB_CPU_F16C, "f16c"},
                 {LB_CPU_AVX512F, "avx512f"},
                 {LB_CPU_AVX512BW, "avx512bw"},
                 {LB_CPU_AVX512VNNI, "avx512vnni"},
                 {LB_CPU_AVX512VPOPCNTDQ, "avx512vpopcntdq"},
                 {LB_CPU_AVX512VBMI, "avx512vbmi"},
                 {LB_CPU_NEON, "neon"},
                 {LB_CPU_DOTPROD, "dotprod"}};
    unsigned f = lb_cpu_features();
    size_t used = 0;
    if (n) buf[0] = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!(f & names[i].bit)) continue;
        int w = snprintf(buf + used, n - used, "%s%s", used ? " " : "", names[i].name);
        if (w < 0 || (size_t)w >= n - used) break;
        used += (size_t)w;
    }
    if (used == 0 && n) snprintf(buf, n, "generic");
}

void lb_set_threads(int n) {
#ifdef _OPENMP
    if (n <= 0) n = omp_get_num_procs();
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}

int lb_get_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
