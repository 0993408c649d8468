/* Inside lowbit: giving back the pages of a read-only file mapping once
 * they have been read (streaming quantize and convert, the load-time check;
 * docs/SCALING.md, "Streaming"). */
#ifndef LB_CORE_MAPPED_H
#define LB_CORE_MAPPED_H

#include <stddef.h>

/* lb_map_file's and lb_unmap_file's bookkeeping: the mappings made, so that
 * lb_map_release can tell their pages from any other memory. */
void lb_map_register(const void *p, size_t n);
void lb_map_unregister(const void *p);
/* Drops the pages of [p, p + n) from this process's resident set when the
 * range lies in a read-only mapping lb_map_file made; anything else
 * (lb_alloc'd weights, a file read into memory) is left alone. The bytes
 * stay readable: the next access maps the page again from the page cache or
 * the file. Pages a neighbouring tensor shares are dropped too, which costs
 * that tensor a fault, nothing else. */
void lb_map_release(const void *p, size_t n);

#endif
