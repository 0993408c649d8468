/* Small helpers the container readers and writers of src/io share (plain
 * malloc / realloc: these arrays and names are freed with free()). */
#ifndef LB_IO_UTIL_H
#define LB_IO_UTIL_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* a malloc'ed copy of s, NULL out of memory */
static inline char *lb_io_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* Room for item n of *arr (elem bytes each, *cap of them): doubles the
 * array (`first` items the first time) when it is full. 1 when there is
 * room; 0 out of memory, the array unchanged. */
static inline int lb_io_grow(void **arr, size_t *cap, size_t n, size_t elem, size_t first) {
    if (n < *cap) return 1;
    size_t nc = *cap ? *cap * 2 : first;
    void *p = nc <= SIZE_MAX / elem ? realloc(*arr, nc * elem) : NULL;
    if (!p) return 0;
    *arr = p;
    *cap = nc;
    return 1;
}

#endif
