/* The read-only file mappings lb_map_file made, and giving their pages back.
 *
 * A mapped model's pages count in the process's resident set (and in its
 * peak, ru_maxrss) for as long as they stay mapped, even though the kernel
 * could drop them at any time: reading a 13 GB model once to write it again
 * would leave 13 GB resident. madvise(MADV_DONTNEED) on a range of a
 * PROT_READ, MAP_PRIVATE file mapping unmaps those pages; as they were
 * never written, the data is still the file's and the next read faults it
 * back in. On heap memory the same call would zero it, hence the registry:
 * only ranges inside a mapping lb_map_file made are released. */
#define _GNU_SOURCE /* madvise, MADV_DONTNEED */
#include "core/mapped.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

/* a model, or a split set's or a safetensors folder's files; beyond this the
 * pages of further mappings are simply not released */
#define MAX_MAPPINGS 1024

static struct {
    uintptr_t start, end;
} mappings[MAX_MAPPINGS];
static int n_mappings;
static pthread_mutex_t mappings_lock = PTHREAD_MUTEX_INITIALIZER;

void lb_map_register(const void *p, size_t n) {
    pthread_mutex_lock(&mappings_lock);
    if (n_mappings < MAX_MAPPINGS) {
        mappings[n_mappings].start = (uintptr_t)p;
        mappings[n_mappings].end = (uintptr_t)p + n;
        n_mappings++;
    }
    pthread_mutex_unlock(&mappings_lock);
}

void lb_map_unregister(const void *p) {
    pthread_mutex_lock(&mappings_lock);
    for (int i = 0; i < n_mappings; i++)
        if (mappings[i].start == (uintptr_t)p) {
            mappings[i] = mappings[--n_mappings];
            break;
        }
    pthread_mutex_unlock(&mappings_lock);
}

void lb_map_release(const void *p, size_t n) {
#if defined(MADV_DONTNEED)
    if (!p || n == 0) return;
    uintptr_t a = (uintptr_t)p, b = a + n;
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0) return;
    pthread_mutex_lock(&mappings_lock); /* held: the mapping cannot be unmapped meanwhile */
    for (int i = 0; i < n_mappings; i++) {
        if (a < mappings[i].start || b > mappings[i].end) continue;
        /* whole pages around the range: the mapping starts on a page and its
         * last page is mapped in full */
        uintptr_t lo = a / (uintptr_t)page * (uintptr_t)page;
        uintptr_t hi = (b + (uintptr_t)page - 1) / (uintptr_t)page * (uintptr_t)page;
        (void)madvise((void *)lo, hi - lo, MADV_DONTNEED); /* advice: a failure only costs memory */
        break;
    }
    pthread_mutex_unlock(&mappings_lock);
#else
    (void)p;
    (void)n;
#endif
}
