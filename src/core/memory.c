/* Aligned allocation with overflow-checked sizes. */
#define _GNU_SOURCE /* madvise */
#include "lowbit/core.h"

#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif
#include <sys/resource.h>

#define LB_ALIGN 64
/* Large buffers (weights, their repacked layouts, activations of a long
 * prompt) are aligned to 2 MiB and offered to transparent huge pages: a
 * 4 KiB page fault is expensive (on this project's VMs it dominated
 * repacking a 4096x4096 tensor: ~2300 faults), and streamed weights then
 * miss the TLB 512x less often. Where THP is off the advice is ignored. */
#define LB_HUGE_MIN ((size_t)4 << 20)
#define LB_HUGE_ALIGN ((size_t)2 << 20)

int lb_mul_overflows(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return 1;
    *out = a * b;
    return 0;
}

void *lb_alloc(size_t size) {
    if (size == 0) size = 1;
    if (size > SIZE_MAX - LB_ALIGN) {
        lb_fail(LB_ERR_NOMEM, "allocation of %zu bytes is too large", size);
        return NULL;
    }
    size_t rounded = (size + LB_ALIGN - 1) / LB_ALIGN * LB_ALIGN;
    void *p = NULL;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (rounded >= LB_HUGE_MIN) {
        if (posix_memalign(&p, LB_HUGE_ALIGN, rounded) != 0) p = NULL;
        if (p) (void)madvise(p, rounded / LB_HUGE_ALIGN * LB_HUGE_ALIGN, MADV_HUGEPAGE);
    } else
#endif
        p = aligned_alloc(LB_ALIGN, rounded);
    if (!p) lb_fail(LB_ERR_NOMEM, "out of memory allocating %zu bytes", size);
    return p;
}

void *lb_calloc(size_t count, size_t size) {
    size_t total;
    if (lb_mul_overflows(count, size, &total)) {
        lb_fail(LB_ERR_NOMEM, "allocation of %zu x %zu bytes overflows", count, size);
        return NULL;
    }
    void *p = lb_alloc(total);
    if (p) memset(p, 0, total);
    return p;
}

void lb_free(void *p) { free(p); }

int64_t lb_peak_rss(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0 || ru.ru_maxrss <= 0) return -1;
#if defined(__APPLE__)
    return (int64_t)ru.ru_maxrss; /* macOS: bytes */
#else
    return (int64_t)ru.ru_maxrss * 1024; /* Linux, BSDs: KiB */
#endif
}
