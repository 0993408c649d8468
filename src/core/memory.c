/* Aligned allocation with overflow-checked sizes. */
#include "lowbit/core.h"

#include <stdlib.h>
#include <string.h>

#define LB_ALIGN 64

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
    void *p = aligned_alloc(LB_ALIGN, rounded);
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
