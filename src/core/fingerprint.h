/* What the journals of resumable runs share (src/pipeline/journal.c,
 * src/calib/calib_journal.c, calib_layer_journal.c): the checksum, the
 * comparison of two fingerprints, texts of "what: value" lines, and the
 * read of a record's bytes. */
#ifndef LB_CORE_FINGERPRINT_H
#define LB_CORE_FINGERPRINT_H

#include <stddef.h>
#include <stdint.h>

#define LB_FNV1A_START 1469598103934665603ull

/* FNV-1a 64 of n bytes, continuing from h (LB_FNV1A_START to start). */
uint64_t lb_fnv1a(const void *data, size_t n, uint64_t h);
/* The first line where a and b differ, as "the journal has 'a's line', this run 'b's line". */
void lb_fingerprint_difference(const char *a, const char *b, char *out, size_t n);
/* Exactly n bytes of fd at offset off into buf (pread, retried on EINTR and
 * short reads): 0, or -1 (errno set; 0 at the end of the file). */
int lb_read_at(int fd, void *buf, size_t n, uint64_t off);

#endif
