/* lb_matmul: y = x W^T for a weight in any format, through the kernel the
 * registry chose for the tensor (registry.c). This file holds the parts
 * every kernel shares: activation preparation and the lb_act_cache that
 * shares it between weights reading one input, the row-tile loop that
 * spreads a product over threads, and the two generic routines (float
 * GEMM, and dequantize a tile of rows with the format's reference decoder
 * then float GEMM) that every format falls back to.
 *
 * Each output element is computed by one thread in a fixed order, so the
 * result does not depend on the thread count. */
#include <string.h>

#include "kernels/kernels.h"
#include "lowbit/linear.h"

/* ---- activation preparation ----------------------------------------------- */

static int act_ld(int cols) { return (cols + LB_ACT_PAD - 1) / LB_ACT_PAD * LB_ACT_PAD; }

static int sign_ld(int cols) { return (cols + LB_ACT_SIGN_PAD - 1) / LB_ACT_SIGN_PAD * LB_ACT_SIGN_PAD; }

size_t lb_act_bytes(lb_act_kind kind, int n, int cols) {
    if (kind == LB_ACT_SIGN) return ((size_t)n * (size_t)(sign_ld(cols) / 8) + 63) / 64 * 64 + (size_t)n * sizeof(float);
    if (kind != LB_ACT_Q8_32 && kind != LB_ACT_LUT && kind != LB_ACT_LUT3) return 0;
    size_t ld = (size_t)act_ld(cols), q = (size_t)n * ld;
    q = (q + 63) / 64 * 64; /* the scales start on a cache line */
    /* the scales, then the sums per 16 columns, then (LUT kinds) the tables on a cache line */
    size_t bytes = q + (size_t)n * (ld / 32) * sizeof(float) + (size_t)n * (ld / 16) * sizeof(int16_t);
    if (kind == LB_ACT_LUT) bytes = (bytes + 63) / 64 * 64 + (size_t)n * (ld / 16) * 128;
    if (kind == LB_ACT_LUT3) bytes = (bytes + 63) / 64 * 64 + (size_t)n * (ld / 8) * 128;
    return bytes;
}

void lb_act_prepare(lb_act_kind kind, const float *x, int n, int cols, void *buf, lb_act *out) {
    memset(out, 0, sizeof *out);
    out->kind = kind;
    out->n = n;
    out->cols = cols;
    out->ld = cols;
    if (kind == LB_ACT_F32) {
        out->f = x;
        return;
    }
    if (kind == LB_ACT_SIGN) { /* binarized: one cheap pass, no SIMD twin needed */
        int sld = sign_ld(cols);
        size_t bbytes = ((size_t)n * (size_t)(sld / 8) + 63) / 64 * 64;
        uint8_t *bits = buf;
        float *beta = (float *)((uint8_t *)buf + bbytes);
        for (int i = 0; i < n; i++) lb_act_sign_row_ref(x + (size_t)i * cols, cols, sld, bits + (size_t)i * (sld / 8), beta + i);
        out->bits = bits;
        out->beta = beta;
        out->ld = sld;
        return;
    }
    int ld = act_ld(cols);
    size_t qbytes = ((size_t)n * (size_t)ld + 63) / 64 * 64;
    int8_t *q = buf;
    float *d = (float *)((uint8_t *)buf + qbytes);
    void (*row)(const float *, int, int, int8_t *, float *) = lb_act_q8_row_ref;
#if defined(__x86_64__)
    unsigned f = lb_cpu_features();
    if ((f & LB_CPU_AVX2) && (f & LB_CPU_FMA) && (f & LB_CPU_F16C)) row = lb_act_q8_row_avx2;
#endif
#if defined(__aarch64__)
    if (lb_cpu_features() & LB_CPU_NEON) row = lb_act_q8_row_neon;
#endif
    if ((long)n * cols <= 65536) { /* no OpenMP entry for small inputs: it costs more than the work */
        for (int i = 0; i < n; i++) row(x + (size_t)i * cols, cols, ld, q + (size_t)i * ld, d + (size_t)i * (ld / 32));
    } else {
#pragma omp parallel for schedule(static)
        for (int i = 0; i < n; i++) row(x + (size_t)i * cols, cols, ld, q + (size_t)i * ld, d + (size_t)i * (ld / 32));
    }
    /* the sums per 16 columns: scalar, the same for every CPU */
    int16_t *s16 = (int16_t *)(d + (size_t)n * (ld / 32));
    for (size_t h = 0; h < (size_t)n * (ld / 16); h++) {
        int s = 0;
        for (int j = 0; j < 16; j++) s += q[h * 16 + j];
        s16[h] = (int16_t)s;
    }
    out->q = q;
    out->d = d;
    out->ld = ld;
    out->s16 = s16;
    if (kind == LB_ACT_LUT || kind == LB_ACT_LUT3) { /* tables from the int8 codes just made */
        size_t dbytes = (size_t)n * (size_t)(ld / 32) * sizeof(float);
        size_t sbytes = (size_t)n * (size_t)(ld / 16) * sizeof(int16_t);
        uint8_t *tab = (uint8_t *)buf + (qbytes + dbytes + sbytes + 63) / 64 * 64;
        size_t tab_row = (size_t)(kind == LB_ACT_LUT ? ld / 16 : ld / 8) * 128;
        for (int i = 0; i < n; i++) {
            if (kind == LB_ACT_LUT) lb_act_lut_row_ref(q + (size_t)i * ld, ld, tab + (size_t)i * tab_row);
            else lb_act_lut3_row_ref(q + (size_t)i * ld, ld, tab + (size_t)i * tab_row);
        }
        out->lut = tab;
    }
}

/* ---- the activation cache ---------------------------------------------------
 * Per kind: the prepared form of the input seen first since the last reset,
 * remembered with the (pointer, n, cols) it came from. */
typedef struct {
    int valid;
    const float *x;
    int n, cols;
    lb_act act;
    void *buf;
    size_t cap;
} act_slot;

struct lb_act_cache {
    int max_rows, max_cols;
    act_slot slot[LB_ACT_KINDS];
};

lb_status lb_act_cache_create(int max_rows, int max_cols, lb_act_cache **out) {
    *out = lb_calloc(1, sizeof **out);
    if (!*out) return LB_ERR_NOMEM;
    (*out)->max_rows = max_rows;
    (*out)->max_cols = max_cols;
    return LB_OK;
}

void lb_act_cache_free(lb_act_cache *c) {
    if (!c) return;
    for (int k = 0; k < LB_ACT_KINDS; k++) lb_free(c->slot[k].buf);
    lb_free(c);
}

void lb_act_cache_reset(lb_act_cache *c) {
    if (!c) return;
    for (int k = 0; k < LB_ACT_KINDS; k++) c->slot[k].valid = 0;
}

/* The prepared form of x in `kind`: from the cache when it holds this very
 * input, else prepared into the cache (grown when needed) or, without a
 * cache, into `local` when it fits (decode: one row) or else into *priv
 * (the caller frees it). */
static lb_status prepare(lb_act_cache *c, lb_act_kind kind, const float *x, int n, int cols, lb_act *out,
                         void *local, size_t local_bytes, void **priv) {
    size_t bytes = lb_act_bytes(kind, n, cols);
    if (!c) {
        void *buf = local;
        if (bytes > local_bytes && !(buf = *priv = lb_alloc(bytes)))
            return lb_fail(LB_ERR_NOMEM, "out of memory preparing %d x %d activations", n, cols);
        lb_act_prepare(kind, x, n, cols, buf, out);
        return LB_OK;
    }
    act_slot *s = &c->slot[kind];
    if (s->valid && s->x == x && s->n == n && s->cols == cols) {
        *out = s->act;
        return LB_OK;
    }
    if (bytes > s->cap) {
        size_t want = lb_act_bytes(kind, n > c->max_rows ? n : c->max_rows, cols > c->max_cols ? cols : c->max_cols);
        void *b = lb_alloc(want > bytes ? want : bytes);
        if (!b) return lb_fail(LB_ERR_NOMEM, "out of memory preparing %d x %d activations", n, cols);
        lb_free(s->buf);
        s->buf = b;
        s->cap = want > bytes ? want : bytes;
    }
    lb_act_prepare(kind, x, n, cols, s->buf, &s->act);
    s->valid = 1;
    s->x = x;
    s->n = n;
    s->cols = cols;
    *out = s->act;
    return LB_OK;
}

/* ---- the generic routines ------------------------------------------------- */

static void f32_rows(lb_gemm_nt_fn gemm, const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy) {
    int cols = (int)w->cols;
    gemm(x->n, r1 - r0, cols, x->f, cols, (const float *)w->data + (size_t)r0 * cols, cols, y + r0, ldy);
}

static void dequant_rows(lb_gemm_nt_fn gemm, const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                         float *tile) {
    int cols = (int)w->cols;
    for (int t0 = r0; t0 < r1; t0 += LB_DEQUANT_TILE) {
        int t1 = t0 + LB_DEQUANT_TILE < r1 ? t0 + LB_DEQUANT_TILE : r1;
        lb_dequantize_rows(w, t0, t1, tile);
        gemm(x->n, t1 - t0, cols, x->f, cols, tile, cols, y + t0, ldy);
    }
}

void lb_kernel_f32_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch) {
    (void)scratch;
    f32_rows(lb_gemm_nt_ref, w, x, r0, r1, y, ldy);
}

void lb_kernel_dequant_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch) {
    dequant_rows(lb_gemm_nt_ref, w, x, r0, r1, y, ldy, scratch);
}

#if defined(__x86_64__)
void lb_kernel_f32_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch) {
    (void)scratch;
    f32_rows(lb_gemm_nt_avx2, w, x, r0, r1, y, ldy);
}

void lb_kernel_dequant_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                            float *scratch) {
    dequant_rows(lb_gemm_nt_avx2, w, x, r0, r1, y, ldy, scratch);
}
#endif
#if defined(__aarch64__)
void lb_kernel_f32_neon(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch) {
    (void)scratch;
    f32_rows(lb_gemm_nt_neon, w, x, r0, r1, y, ldy);
}

void lb_kernel_dequant_neon(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                            float *scratch) {
    dequant_rows(lb_gemm_nt_neon, w, x, r0, r1, y, ldy, scratch);
}
#endif

/* ---- lb_matmul ------------------------------------------------------------
 * Weight rows are cut into tiles of ROW_TILE (the parallel tasks, each row's
 * outputs computed by one thread, so results do not depend on the thread
 * count). A routine reading prepared int8 activations is called on blocks of
 * ACT_TILE activation rows, so that during one call the weight tile
 * (16 rows) and the activation block (64 rows, 64 x 4 KiB at 4096 columns)
 * stay in L2 while the routine's register tiles reuse them; a prefill of 512
 * rows would otherwise stream every activation from L3 for every weight row.
 * The float routines (f32 GEMM, dequantize a tile) get all rows at once: the
 * GEMM blocks on its own, and the dequantized tile must be made only once.
 * Which activation block a row falls in never changes its value: routines
 * compute each (row, weight row) independently of the others in the call. */

#define ROW_TILE 16 /* weight rows per task: a multiple of every routine's row grouping (4, 2) */
#define ACT_TILE 64 /* activation rows per call of an int8 routine */
/* Below this many multiply-adds a product runs on the calling thread: an
 * OpenMP fork/join (a few microseconds) costs more than the work. */
#define SERIAL_MACS 131072L
/* Scratch up to this many floats lives on the stack (the dequantize-a-tile
 * path: 16 rows of up to 256 columns), so decoding a small model allocates
 * nothing; larger models amortize the allocation over bigger products. */
#define STACK_SCRATCH 4096
/* Transformed inputs (kernels.h: pre) up to this many floats live on the
 * stack too (a decode row of up to 4096 columns, ptq161's padding included). */
#define PRE_LOCAL 4608

/* Rows i0..i1-1 of a prepared input, as a prepared input of its own (a
 * per-row field added to lb_act must be offset here too). */
static lb_act act_rows(const lb_act *a, int i0, int i1) {
    lb_act s = *a;
    s.n = i1 - i0;
    if (a->f) s.f = a->f + (size_t)i0 * (size_t)a->ld;
    if (a->q) s.q = a->q + (size_t)i0 * (size_t)a->ld;
    if (a->d) s.d = a->d + (size_t)i0 * (size_t)(a->ld / 32);
    if (a->lut) s.lut = a->lut + (size_t)i0 * (size_t)(a->kind == LB_ACT_LUT ? a->ld / 16 : a->ld / 8) * 128;
    if (a->bits) s.bits = a->bits + (size_t)i0 * (size_t)(a->ld / 8);
    if (a->beta) s.beta = a->beta + i0;
    if (a->s16) s.s16 = a->s16 + (size_t)i0 * (size_t)(a->ld / 16);
    return s;
}

/* Weight rows r0..r1-1 against every activation row. */
static void run_rows(const lb_kernel *k, const lb_tensor *w, const lb_act *act, int r0, int r1, float *y, int ldy,
                     float *scratch) {
    if (k->act == LB_ACT_F32 || act->n <= ACT_TILE) {
        k->run(w, act, r0, r1, y, ldy, scratch);
        return;
    }
    for (int i0 = 0; i0 < act->n; i0 += ACT_TILE) {
        int i1 = i0 + ACT_TILE < act->n ? i0 + ACT_TILE : act->n;
        lb_act sub = act_rows(act, i0, i1);
        k->run(w, &sub, r0, r1, y + (size_t)i0 * (size_t)ldy, ldy, scratch);
    }
}

static lb_status run_kernel(const lb_kernel *k, const lb_tensor *w, const float *x, int n, float *y, int ldy,
                            lb_act_cache *cache) {
    int rows = (int)w->rows, cols = (int)w->cols;
    int n_tiles = (rows + ROW_TILE - 1) / ROW_TILE;
    lb_act act;
    _Alignas(64) unsigned char local[5120]; /* one prepared row of up to 4096 columns (q, d, s16) */
    void *priv = NULL;
    /* an entry transforming its input first (kernels.h: pre) prepares the
     * transformed rows, which belong to this tensor: no cache */
    _Alignas(64) float pre_local[PRE_LOCAL];
    float *pre_buf = NULL;
    const float *xin = x;
    int xcols = cols;
    if (k->pre) {
        xcols = k->pre_cols(w);
        size_t need = (size_t)n * (size_t)xcols;
        float *buf = need <= PRE_LOCAL ? pre_local : (pre_buf = lb_alloc(need * sizeof(float)));
        if (!buf) return lb_fail(LB_ERR_NOMEM, "out of memory transforming %d x %d activations", n, cols);
        k->pre(w, x, n, buf);
        xin = buf;
        cache = NULL;
    }
    lb_status st = prepare(cache, k->act, xin, n, xcols, &act, local, sizeof local, &priv);
    if (st != LB_OK) {
        lb_free(pre_buf);
        return st;
    }
    size_t scratch_floats = (size_t)k->scratch_rows * (size_t)cols;
    int failed = 0;
    if (n_tiles == 1 || (long)n * rows * cols <= SERIAL_MACS || lb_get_threads() == 1) {
        /* Same values as the tiled loop: ranges start at multiples of ROW_TILE
         * either way, and routines group rows by divisors of it */
        _Alignas(64) float stack[STACK_SCRATCH];
        float *scratch = scratch_floats <= STACK_SCRATCH ? stack : lb_alloc(scratch_floats * sizeof(float));
        if (k->scratch_rows && !scratch) failed = 1;
        else run_rows(k, w, &act, 0, rows, y, ldy, scratch);
        if (scratch != stack) lb_free(scratch);
        lb_free(priv);
        lb_free(pre_buf);
        return failed ? lb_fail(LB_ERR_NOMEM, "out of memory for a %d-column scratch tile", cols) : LB_OK;
    }
#pragma omp parallel
    {
        _Alignas(64) float stack[STACK_SCRATCH];
        float *scratch = scratch_floats <= STACK_SCRATCH ? stack : lb_alloc(scratch_floats * sizeof(float));
#pragma omp for schedule(static)
        for (int t = 0; t < n_tiles; t++) {
            int r0 = t * ROW_TILE, r1 = r0 + ROW_TILE < rows ? r0 + ROW_TILE : rows;
            if (k->scratch_rows && !scratch) {
#pragma omp atomic write
                failed = 1;
                continue;
            }
            run_rows(k, w, &act, r0, r1, y, ldy, scratch);
        }
        if (scratch != stack) lb_free(scratch);
    }
    lb_free(priv);
    lb_free(pre_buf);
    return failed ? lb_fail(LB_ERR_NOMEM, "out of memory for a %d-column scratch tile", cols) : LB_OK;
}

/* A split tensor (formats/split.c) is not one format: each part runs its own
 * kernel. Row parts write their rows of y (ldy the whole tensor's rows),
 * sharing the prepared activations through the cache. Column parts each
 * take their columns of x (copied contiguous: prepared on their own) and
 * their products are added into y in part order, so the sums do not depend
 * on threads. The parts' views, with their kernels and repackings, are the
 * tensor's cache (w->packed), built once. */
static lb_status split_matmul(const lb_tensor *w, const float *x, int n, float *y, lb_act_cache *cache) {
    void **slot = (void **)&((lb_tensor *)w)->packed;
    lb_split_view *v = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (!v) {
        lb_status st = lb_split_view_build(w, &v);
        if (st != LB_OK) return st;
        void *expected = NULL;
        if (!__atomic_compare_exchange_n(slot, &expected, (void *)v, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            lb_split_view_free(v);
            v = expected;
        }
    }
    if (!v->axis) {
        for (int k = 0; k < v->n; k++) {
            lb_tensor *p = &v->part[k];
            lb_status st = run_kernel(lb_kernel_for(p), p, x, n, y + v->start[k], (int)w->rows, cache);
            if (st != LB_OK) return st;
        }
        return LB_OK;
    }
    int64_t widest = 0;
    for (int k = 0; k < v->n; k++) widest = v->part[k].cols > widest ? v->part[k].cols : widest;
    size_t ny = (size_t)n * (size_t)w->rows;
    float *xk = lb_alloc((size_t)n * (size_t)widest * sizeof *xk), *yk = lb_alloc(ny * sizeof *yk);
    lb_status st = xk && yk ? LB_OK : lb_fail(LB_ERR_NOMEM, "out of memory for the column parts of '%s'", w->name);
    for (int k = 0; st == LB_OK && k < v->n; k++) {
        lb_tensor *p = &v->part[k];
        for (int i = 0; i < n; i++)
            memcpy(xk + (size_t)i * p->cols, x + (size_t)i * w->cols + v->start[k], (size_t)p->cols * sizeof *xk);
        st = run_kernel(lb_kernel_for(p), p, xk, n, k ? yk : y, (int)w->rows, NULL);
        for (size_t i = 0; k && st == LB_OK && i < ny; i++) y[i] += yk[i];
    }
    lb_free(xk);
    lb_free(yk);
    return st;
}

lb_status lb_matmul(const lb_tensor *w, const float *x, int n, float *y, lb_act_cache *cache) {
    if (lb_split_parts(w)) return split_matmul(w, x, n, y, cache);
    return run_kernel(lb_kernel_for(w), w, x, n, y, (int)w->rows, cache);
}

lb_status lb_matmul_binarized(const lb_tensor *w, const float *x, int n, float *y, lb_act_cache *cache) {
    const lb_kernel *k = lb_kernel_for_binarized(w);
    if (!k) return LB_ERR_UNSUPPORTED; /* lb_kernel_for_binarized said why */
    return run_kernel(k, w, x, n, y, (int)w->rows, cache);
}
