/* lowbit core: status codes, error messages, memory, half floats, RNG, mapped
 * files, CPU features, threads and progress reporting. Everything above this
 * layer uses these; nothing here knows about formats or models.
 *
 * The public API is what the headers declare LB_API: the shared library
 * exports exactly those symbols (it is built with -fvisibility=hidden, and CI
 * checks `nm -D` against the headers). Pieces for extending lowbit rather than
 * using it (error recording, byte readers, atomic files, progress lines, the
 * unpacked lb_qtensor) are declared only when LB_ADVANCED_API is defined
 * before including lowbit.h (zstd's static-linking-only idea): they are
 * exported too, but may change between versions. */
#ifndef LOWBIT_CORE_H
#define LOWBIT_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LB_VERSION_STRING "0.1.0"

#if defined(__GNUC__) || defined(__clang__)
#define LB_API __attribute__((visibility("default")))
#else
#define LB_API
#endif

/* ---- status and errors --------------------------------------------------
 * Every public function that can fail returns lb_status. On failure a
 * human-readable message naming the problem is kept per thread and returned
 * by lb_last_error() until the next failure on that thread. */
typedef enum {
    LB_OK = 0,
    LB_ERR_INVALID,     /* bad argument: unknown spec, absurd size, wrong shape */
    LB_ERR_IO,          /* a file could not be opened, read, written or renamed */
    LB_ERR_FORMAT,      /* a file is corrupt, truncated or not what it claims */
    LB_ERR_UNSUPPORTED, /* valid but not implemented (e.g. unknown GGUF type) */
    LB_ERR_NUMERIC,     /* NaN or Inf where finite numbers are required */
    LB_ERR_NOMEM        /* allocation failed */
} lb_status;

LB_API const char *lb_status_name(lb_status s);
LB_API const char *lb_last_error(void);
#ifdef LB_ADVANCED_API /* for extending lowbit (methods, formats, tools); not a stable API */
/* Records a formatted message for this thread and returns s (so callers can
 * write `return lb_fail(LB_ERR_FORMAT, "...", ...)`). */
LB_API lb_status lb_fail(lb_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Prefixes the current message with context ("loading x.bin: ...") and
 * returns s unchanged. */
LB_API lb_status lb_fail_context(lb_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Errors inside parallel workers. lb_last_error() is per thread, so a
 * message recorded by an OpenMP worker is lost to the caller; a worker that
 * fails calls lb_worker_error_set (which copies its thread's message; the
 * first error wins), others may stop early when lb_worker_error_failed, and
 * after the parallel region the calling thread calls lb_worker_error_raise,
 * which records the message on its own thread and returns the status
 * (LB_OK when no worker failed). Safe from any number of threads. */
typedef struct {
    lb_status status;
    char message[1024]; /* as long as lb_last_error() can be */
} lb_worker_error;
LB_API void lb_worker_error_init(lb_worker_error *e);
LB_API void lb_worker_error_set(lb_worker_error *e, lb_status s);
LB_API int lb_worker_error_failed(const lb_worker_error *e);
LB_API lb_status lb_worker_error_raise(const lb_worker_error *e);
#endif /* LB_ADVANCED_API */

/* ---- memory ---------------------------------------------------------------
 * 64-byte aligned (one cache line, one zmm register). lb_alloc returns NULL
 * and records LB_ERR_NOMEM on failure or on size overflow. */
LB_API void *lb_alloc(size_t size);
LB_API void *lb_calloc(size_t count, size_t size);
LB_API void lb_free(void *p);
/* The process's peak resident set so far, in bytes (getrusage's ru_maxrss:
 * heap, stacks and every mapped file page touched and still mapped); -1
 * where the system does not report it. Verbs print it as peak_rss. */
LB_API int64_t lb_peak_rss(void);
#ifdef LB_ADVANCED_API /* for extending lowbit (methods, formats, tools); not a stable API */
/* a*b and a*b*c without overflow; return 0 and set *out on success. */
LB_API int lb_mul_overflows(size_t a, size_t b, size_t *out);
#endif /* LB_ADVANCED_API */

/* ---- half precision -------------------------------------------------------
 * IEEE binary16 and bfloat16, round-to-nearest-even, NaN preserved. */
LB_API uint16_t lb_fp32_to_fp16(float f);
LB_API float lb_fp16_to_fp32(uint16_t h);
LB_API uint16_t lb_fp32_to_bf16(float f);
LB_API float lb_bf16_to_fp32(uint16_t h);
/* f rounded to the nearest fp16 value, returned as float */
LB_API float lb_round_fp16(float f);

/* ---- little-endian loads and stores (files are little-endian) ------------ */
#ifdef LB_ADVANCED_API /* for extending lowbit (methods, formats, tools); not a stable API */
static inline uint16_t lb_rd16(const void *p) {
    const uint8_t *b = (const uint8_t *)p;
    return (uint16_t)(b[0] | (b[1] << 8));
}
static inline uint32_t lb_rd32(const void *p) {
    const uint8_t *b = (const uint8_t *)p;
    return (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
}
static inline uint64_t lb_rd64(const void *p) {
    return (uint64_t)lb_rd32(p) | ((uint64_t)lb_rd32((const uint8_t *)p + 4) << 32);
}
static inline void lb_wr16(void *p, uint16_t v) {
    uint8_t *b = (uint8_t *)p;
    b[0] = (uint8_t)v;
    b[1] = (uint8_t)(v >> 8);
}
static inline void lb_wr32(void *p, uint32_t v) {
    uint8_t *b = (uint8_t *)p;
    for (int i = 0; i < 4; i++) b[i] = (uint8_t)(v >> (8 * i));
}
static inline void lb_wr64(void *p, uint64_t v) {
    lb_wr32(p, (uint32_t)v);
    lb_wr32((uint8_t *)p + 4, (uint32_t)(v >> 32));
}
#endif /* LB_ADVANCED_API */

/* ---- random numbers -------------------------------------------------------
 * xorshift64* as in llama2.c (so seeded sampling matches it), plus
 * Gaussian draws for tests. Same seed, same sequence, on every machine. */
typedef struct {
    uint64_t state;
} lb_rng;
LB_API void lb_rng_seed(lb_rng *r, uint64_t seed);
LB_API uint32_t lb_rng_u32(lb_rng *r);
LB_API float lb_rng_f32(lb_rng *r);    /* uniform in [0, 1), 24 bits */
LB_API double lb_rng_normal(lb_rng *r); /* N(0, 1), Box-Muller */

/* ---- randomized Hadamard transforms (src/core/rht.c) -----------------------
 * Incoherence processing: R = T diag(d), d a vector of signs (+1 / -1),
 * T = (H / sqrt(2^k)) (x) C for n = 2^k m, m odd and at most
 * LB_RHT_MAX_ODD: H the Sylvester Walsh-Hadamard matrix of order 2^k, C
 * the orthonormal DCT-II of order m (C = [1] when n is a power of two).
 * T is orthonormal and no entry exceeds sqrt(2 / n). */
#define LB_RHT_MAX_ODD 255
/* m for n = 2^k m, or 0 when n has no such form */
LB_API int lb_rht_odd(int64_t n);
/* LB_OK when n has that form (and the DCT of its m is built: after that
 * lb_rht_apply on n cannot fail); else LB_ERR_INVALID saying why */
LB_API lb_status lb_rht_check(int64_t n);
/* x (n) <- R x = T diag(d) x (transpose 0) or R^T x = diag(d) T^T x (1);
 * signs NULL: d = 1. Fails (LB_ERR_INVALID) for an n of no such form. */
LB_API lb_status lb_rht_apply(float *x, int64_t n, const float *signs, int transpose);
LB_API lb_status lb_rht_apply_f64(double *x, int64_t n, const float *signs, int transpose);
/* The same on every row (length cols) of a (rows x cols, row-major):
 * a <- a R^T (transpose: a R); or on every column (length rows): a <- R a
 * (transpose: R^T a). */
LB_API lb_status lb_rht_apply_rows(float *a, int64_t rows, int64_t cols, const float *signs, int transpose);
LB_API lb_status lb_rht_apply_cols(float *a, int64_t rows, int64_t cols, const float *signs, int transpose);
LB_API lb_status lb_rht_apply_rows_f64(double *a, int64_t rows, int64_t cols, const float *signs, int transpose);
LB_API lb_status lb_rht_apply_cols_f64(double *a, int64_t rows, int64_t cols, const float *signs, int transpose);
/* n signs (+1.0f or -1.0f) from a seed, the same on every machine */
LB_API void lb_rht_signs(uint64_t seed, int64_t n, float *signs);

/* ---- files ---------------------------------------------------------------- */
typedef struct {
    const uint8_t *data;
    size_t size;
    int is_mapped; /* 1: mmap'ed, 0: read into an lb_alloc buffer */
} lb_mapped_file;
/* Inputs must be regular files: a FIFO, device or directory fails at once
 * (LB_ERR_IO naming what it is) instead of blocking or reading forever. */
/* Maps a whole file read-only (falls back to reading it into memory). */
LB_API lb_status lb_map_file(const char *path, lb_mapped_file *out);
LB_API void lb_unmap_file(lb_mapped_file *f);
/* Reads a whole file into a NUL-terminated buffer (caller lb_free's). */
LB_API lb_status lb_read_file(const char *path, char **out, size_t *size);

/* Checks an output path before any work is done: it fails (naming the path)
 * when out_path is one of the inputs (same path, or the same file through a
 * link), exists but is not a regular file (a symlink, device, FIFO or
 * directory would be replaced by a plain file), or its directory is missing
 * or not writable. inputs may contain NULL entries (skipped). */
LB_API lb_status lb_output_check(const char *out_path, const char *const *inputs, int n_inputs);

#ifdef LB_ADVANCED_API /* for extending lowbit (methods, formats, tools); not a stable API */
/* Atomic output: write to "<path>.tmp.<pid>", then rename over path on commit.
 * Abort (or a failed commit) removes the temporary, so a failed write never
 * leaves a partial file behind under the final name. Commit refuses to
 * rename over anything but a regular file. While a file is open, its
 * temporary is also removed if the process dies of SIGINT, SIGTERM or SIGHUP:
 * the first lb_atomic_open installs handlers for those of the three still at
 * their default action (handlers the program set itself are left alone);
 * they unlink open temporaries and re-raise the signal. */
typedef struct {
    FILE *fp;
    char *final_path;
    char *tmp_path;
    uint64_t written;
    lb_status err; /* first write error, reported by commit */
} lb_atomic_file;
LB_API lb_status lb_atomic_open(lb_atomic_file *f, const char *path);
LB_API void lb_atomic_write(lb_atomic_file *f, const void *data, size_t n);
LB_API void lb_atomic_pad(lb_atomic_file *f, size_t alignment); /* zero bytes up to a multiple */
LB_API lb_status lb_atomic_commit(lb_atomic_file *f);
LB_API void lb_atomic_abort(lb_atomic_file *f);
/* Flushes, syncs and closes the temporary without renaming it, keeping the
 * first error for commit (which then only renames) or abort (which removes
 * the temporary): a set of files is written and finished one by one, with
 * one file descriptor open at a time, and renamed together only when every
 * one of them is complete (lb_gguf_write_split). */
LB_API void lb_atomic_finish(lb_atomic_file *f);
#endif /* LB_ADVANCED_API */

/* ---- CPU features and threads -------------------------------------------- */
enum {
    LB_CPU_AVX2 = 1 << 0,
    LB_CPU_FMA = 1 << 1,
    LB_CPU_F16C = 1 << 2,
    LB_CPU_AVX512F = 1 << 3,
    LB_CPU_AVX512BW = 1 << 4,
    LB_CPU_AVX512VNNI = 1 << 5,
    LB_CPU_AVX512VPOPCNTDQ = 1 << 6,
    LB_CPU_AVX512VBMI = 1 << 7,
    LB_CPU_NEON = 1 << 8,
    /* ARM features from bit 16 up (x86 ones grow from bit 9) */
    LB_CPU_DOTPROD = 1 << 16 /* ARMv8.2 SDOT/UDOT (FEAT_DotProd) */
};
/* Detected once (thread-safe); LB_CPU environment variable "generic" masks
 * everything off (to test the scalar paths on any machine). */
LB_API unsigned lb_cpu_features(void);
/* Writes a space-separated feature list, e.g. "avx2 fma f16c avx512f". */
LB_API void lb_cpu_describe(char *buf, size_t n);

LB_API void lb_set_threads(int n); /* <= 0: all cores */
LB_API int lb_get_threads(void);

/* ---- timing and progress ----------------------------------------------------
 * A progress line on stderr, redrawn at most ~10 times a second, shown only
 * when stderr is a terminal (LB_PROGRESS_AUTO) or when forced on. */
LB_API double lb_now(void); /* monotonic seconds */
typedef enum { LB_PROGRESS_AUTO, LB_PROGRESS_ON, LB_PROGRESS_OFF } lb_progress_mode;
LB_API void lb_progress_set_mode(lb_progress_mode m);
#ifdef LB_ADVANCED_API /* for extending lowbit (methods, formats, tools); not a stable API */
typedef struct {
    const char *label;
    uint64_t total, done;
    double t_start, t_last;
    int active;
    char item[96]; /* what is being worked on, shown after the counts ("" : nothing) */
} lb_progress;
LB_API void lb_progress_begin(lb_progress *p, const char *label, uint64_t total);
LB_API void lb_progress_update(lb_progress *p, uint64_t done);
/* Names the item now in work (a tensor); NULL or "" clears it. */
LB_API void lb_progress_item(lb_progress *p, const char *item);
LB_API void lb_progress_end(lb_progress *p);
#endif /* LB_ADVANCED_API */

/* ---- a communicator (src/core/comm.c) --------------------------------------
 * What distributed runs (calibration, quantization, training over MPI ranks)
 * need, without MPI: the CLI's src/dist/ implements send and recv over MPI;
 * the library only calls them. size 1 (lb_comm_self, or NULL wherever a
 * comm is taken) is one process, and every operation is then a no-op.
 * Reductions are ordered: rank 0 receives the ranks' values in rank order
 * and adds them to its own left to right, so the bytes depend only on the
 * number of ranks, never on timing. A failed send / recv is an error;
 * the caller decides (the CLI aborts every rank). */
#ifdef LB_ADVANCED_API /* for extending lowbit (methods, formats, tools); not a stable API */
typedef struct lb_comm lb_comm;
struct lb_comm {
    int rank, size;
    void *impl; /* the implementation's (MPI_Comm) */
    lb_status (*send)(const lb_comm *c, int to, const void *buf, size_t bytes);
    lb_status (*recv)(const lb_comm *c, int from, void *buf, size_t bytes);
};
/* rank 0 of 1 */
LB_API const lb_comm *lb_comm_self(void);
/* point to point, any size (in pieces of at most 1 GiB; the receiver
 * names the same size) */
LB_API lb_status lb_comm_send(const lb_comm *c, int to, const void *buf, size_t bytes);
LB_API lb_status lb_comm_recv(const lb_comm *c, int from, void *buf, size_t bytes);
/* rank 0's buf to every rank */
LB_API lb_status lb_comm_bcast(const lb_comm *c, void *buf, size_t bytes);
/* v := v_0 + v_1 + ... + v_{size-1}, added left to right on rank 0, then sent
 * to every rank (all = 1) or left on rank 0 only (all = 0) */
LB_API lb_status lb_comm_sum_f64(const lb_comm *c, double *v, size_t n, int all);
LB_API lb_status lb_comm_sum_f32(const lb_comm *c, float *v, size_t n, int all);
LB_API lb_status lb_comm_sum_i64(const lb_comm *c, int64_t *v, size_t n, int all);
/* elementwise maximum (order-free), on every rank (all = 1) or rank 0 */
LB_API lb_status lb_comm_max_f32(const lb_comm *c, float *v, size_t n, int all);
/* rank 0 receives each rank's `bytes` into out (size * bytes, rank order);
 * other ranks only send (out may be NULL there) */
LB_API lb_status lb_comm_gather(const lb_comm *c, const void *mine, size_t bytes, void *out);
#endif /* LB_ADVANCED_API */

#ifdef __cplusplus
}
#endif
#endif
