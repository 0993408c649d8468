/* What `lowbit bench` (bench.c: one matmul at a time) and `lowbit bench
 * block` (bench_block.c: a synthetic transformer block) share: list
 * parsing, medians, the streaming-read bandwidth and the memory guard. */
#ifndef LB_TOOLS_BENCH_H
#define LB_TOOLS_BENCH_H

#include <stdint.h>

#include "cli.h"

#define BENCH_MAX_LIST 64
#define BENCH_MAX_REPS 1000

typedef struct {
    char text[64];
    lb_qspec spec;
} bench_format;

double bench_median(double *v, int n); /* sorts v */
/* Comma-separated list into at most BENCH_MAX_LIST items of < 64 characters
 * (empty items refused); the count, or -1 after a usage message. */
int bench_split_list(const char *verb, const char *opt, const char *text, char items[][64]);
int bench_parse_int_list(const char *verb, const char *opt, const char *text, long lo, long hi, long *out);
/* Parses --formats; the count, or -1 after a usage message. */
int bench_parse_formats(const char *verb, const char *text, bench_format *out);
/* Median GB/s of streaming through buf (bytes, a multiple of 64) with
 * `threads` threads after one untimed pass; *sink keeps the loads alive. */
double bench_read_bandwidth(const uint8_t *buf, size_t bytes, int threads, int reps, uint64_t *sink);
/* Physical memory in bytes (0 when unknown). */
uint64_t bench_phys_bytes(void);

/* `lowbit bench block ...` (argv[0] is "block"). */
int cmd_bench_block(int argc, char **argv);

#endif
