/* Kernels: every kernel has a scalar reference in ref/ (the specification)
 * and optional SIMD versions chosen at run time from the CPU's features;
 * tests compare each SIMD kernel with its reference. Two tables: the float
 * operations (GEMM, attention head, SwiGLU) chosen once per process
 * (dispatch.c), and the matmul registry keyed by weight format and CPU,
 * chosen once per tensor (registry.c, below). */
#ifndef LB_KERNELS_H
#define LB_KERNELS_H

#include "lowbit/format.h"

/* y[i*ldy + j] = sum_c x[i*ldx + c] * w[j*ldw + c], for i < n, j < m, c < k:
 * n activation rows times m weight rows (both row-major, "NT" GEMM). */
typedef void (*lb_gemm_nt_fn)(int n, int m, int k, const float *x, int ldx, const float *w, int ldw, float *y,
                              int ldy);

/* One attention head for one query over n_ctx cached positions:
 * att[t] = softmax_t(scale * sum_d q[d] kt[d * kt_stride + t]),
 * out[d] = sum_t att[t] v[t * v_stride + d]; att is scratch (n_ctx). */
typedef void (*lb_attend_fn)(const float *q, const float *kt, size_t kt_stride, const float *v, size_t v_stride,
                             int n_ctx, int hd, float scale, float *att, float *out);

/* g[i] = silu(g[i]) * u[i]: SwiGLU's gate */
typedef void (*lb_silu_mul_fn)(float *g, const float *u, size_t n);

typedef struct {
    const char *name;
    lb_gemm_nt_fn gemm_nt;
    lb_attend_fn attend;
    lb_silu_mul_fn silu_mul;
} lb_kernel_table;

void lb_gemm_nt_ref(int n, int m, int k, const float *x, int ldx, const float *w, int ldw, float *y, int ldy);
void lb_attend_ref(const float *q, const float *kt, size_t kt_stride, const float *v, size_t v_stride, int n_ctx,
                   int hd, float scale, float *att, float *out);
void lb_silu_mul_ref(float *g, const float *u, size_t n);
#if defined(__x86_64__)
void lb_gemm_nt_avx2(int n, int m, int k, const float *x, int ldx, const float *w, int ldw, float *y, int ldy);
void lb_attend_avx2(const float *q, const float *kt, size_t kt_stride, const float *v, size_t v_stride, int n_ctx,
                    int hd, float scale, float *att, float *out);
void lb_silu_mul_avx2(float *g, const float *u, size_t n);
#endif
#if defined(__aarch64__)
void lb_gemm_nt_neon(int n, int m, int k, const float *x, int ldx, const float *w, int ldw, float *y, int ldy);
void lb_attend_neon(const float *q, const float *kt, size_t kt_stride, const float *v, size_t v_stride, int n_ctx,
                    int hd, float scale, float *att, float *out);
void lb_silu_mul_neon(float *g, const float *u, size_t n);
#endif

/* The best table for this CPU (LB_CPU=generic forces the reference). */
const lb_kernel_table *lb_kernels(void);
const lb_kernel_table *lb_kernels_reference(void);

/* ---- matmul kernels keyed by format and CPU (registry.c) -------------------
 * A registry entry multiplies a stored weight W (rows x cols, in some format)
 * by n activation rows that were prepared once in the entry's activation
 * kind. Entries are tried in priority order; the first whose predicate
 * accepts the tensor's resolved layout and whose CPU features are present
 * is chosen, once per tensor (cached in lb_tensor.kernel). The last entries
 * (the dequantize-a-tile fallback) accept every format. */

/* How an entry wants its activations. */
typedef enum {
    LB_ACT_F32,   /* x as is: n x cols floats */
    LB_ACT_Q8_32, /* per 32 columns an fp32 scale d = absmax / 127 and 32 int8
                     round-to-nearest-even(x / d), as ggml's Q8_0 (whose scale is fp16) */
    LB_ACT_LUT,   /* T-MAC style tables: LB_ACT_Q8_32 (q, d as there) plus, per 4 columns
                     (a0..a3), the 16 sums t[i] = sum_j (bit j of i ? a_j : -a_j) as int16,
                     stored per 16 columns (groups 4u..4u+3) as 128 bytes: the four
                     groups' low bytes (16 each), then their high bytes */
    LB_ACT_LUT3,  /* the same for ternary weights (bitnet.cpp's TL1 idea): per 2 columns
                     (a0, a1) t[3 c0 + c1] = (c0 - 1) a0 + (c1 - 1) a1 for codes c in 0..2,
                     entries 9..15 zero; same byte layout (16 columns -> 8 per 128 bytes) */
    LB_ACT_SIGN,  /* binarized (XNOR-Net): per row beta = mean |x| over cols and one bit per
                     column, 1 for x >= 0 (+beta), 0 for x < 0 or NaN (-beta); bits past cols 0.
                     Opt-in only (lb_matmul_binarized, or LB_KERNEL naming an entry): it
                     changes the product, so the normal selection never picks such entries */
    LB_ACT_KINDS
} lb_act_kind;

/* Columns of an LB_ACT_Q8_32 row are stored up to a multiple of this (zeros
 * past cols), so any weight padding (groups <= 256) finds zero activations. */
#define LB_ACT_PAD 256

/* Prepared activations: n rows of cols inputs. */
typedef struct {
    lb_act_kind kind;
    int n, cols;
    const float *f; /* LB_ACT_F32: n x cols, row-major */
    const int8_t *q; /* LB_ACT_Q8_32: n x ld int8, ld = cols rounded up to LB_ACT_PAD */
    const float *d;  /* LB_ACT_Q8_32: n x ld/32 block scales (0 for blocks past cols) */
    int ld;          /* LB_ACT_SIGN: columns per row rounded up to LB_ACT_SIGN_PAD */
    const uint8_t *lut;  /* LB_ACT_LUT: n x (ld / 16) x 128 bytes; LB_ACT_LUT3: n x (ld / 8) x 128 */
    const uint8_t *bits; /* LB_ACT_SIGN: n x ld / 8 bytes, bit j of a row = column j */
    const float *beta;   /* LB_ACT_SIGN: n row scales */
    /* LB_ACT_Q8_32: n x ld/16 sums of q over 16 columns, for weights with an
     * offset per group (w = a q + b: the b part is b * sum(q) * d) */
    const int16_t *s16;
} lb_act;

#define LB_ACT_SIGN_PAD 512 /* one zmm of bits */

/* Buffer bytes for preparing n x cols inputs in `kind` (0 for LB_ACT_F32). */
size_t lb_act_bytes(lb_act_kind kind, int n, int cols);
/* Prepares x (n x cols) into buf (lb_act_bytes long, 64-byte aligned) and
 * describes it in *out. The SIMD and scalar preparations give identical
 * bytes, so the choice never changes a result. */
void lb_act_prepare(lb_act_kind kind, const float *x, int n, int cols, void *buf, lb_act *out);
/* One row of LB_ACT_Q8_32: cols floats into ld/32 blocks (ld % 32 == 0, ld >= cols). */
void lb_act_q8_row_ref(const float *x, int cols, int ld, int8_t *q, float *d);
/* The tables of one row of LB_ACT_LUT from its int8 codes (ld % 32 == 0). */
void lb_act_lut_row_ref(const int8_t *q, int ld, uint8_t *tab);
void lb_act_lut3_row_ref(const int8_t *q, int ld, uint8_t *tab);
/* One row of LB_ACT_SIGN: beta and ld / 8 bytes of bits (ld % 512 == 0, ld >= cols). */
void lb_act_sign_row_ref(const float *x, int cols, int ld, uint8_t *bits, float *beta);
#if defined(__x86_64__)
void lb_act_q8_row_avx2(const float *x, int cols, int ld, int8_t *q, float *d);
#endif
#if defined(__aarch64__)
void lb_act_q8_row_neon(const float *x, int cols, int ld, int8_t *q, float *d);
#endif

/* y[i*ldy + r] = sum_c x[i, c] W[r, c] for i < x->n and r0 <= r < r1.
 * scratch: the entry's scratch_rows x cols floats (NULL when it needs none). */
typedef void (*lb_kernel_fn)(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                             float *scratch);

typedef struct {
    const char *name;
    /* a predicate over the resolved layout, e.g. "uniform 8-bit sym g32" */
    int (*accepts)(const lb_qspec *s, const lb_layout *l);
    unsigned cpu;     /* LB_CPU_* features the routine needs (0: plain C) */
    lb_act_kind act;  /* how activations are prepared */
    lb_kernel_fn run;
    int scratch_rows; /* rows of cols floats of per-call scratch */
    int generic;      /* part of the format-agnostic path (f32 GEMM, dequantize a tile) */
    const char *twin; /* SIMD entries: the scalar entry computing the same integer sums */
    /* Load-time repacking (NULL: the routine reads w->data as stored): a new
     * lb_alloc'd buffer in the routine's own layout, built from the canonical
     * bytes once per tensor and kept in w->packed; *bytes its size. A scalar
     * twin shares its SIMD entry's repack (so the two read the same layout). */
    lb_status (*repack)(const lb_tensor *w, void **out, size_t *bytes);
    /* Optional input transform by the tensor, once per lb_matmul before the
     * activations are prepared (NULL: none): pre(w, x, n, out) writes n rows
     * of pre_cols(w) floats to out, which the routine then receives
     * (prepared in `act`) in place of x. Reads w->packed. onebit: g * x;
     * ptq161: the columns reordered salient first; littlebit: the first
     * factor (kernels/binfam.h). Such inputs depend on the tensor, so they
     * bypass the lb_act_cache. */
    void (*pre)(const lb_tensor *w, const float *x, int n, float *out);
    int (*pre_cols)(const lb_tensor *w);
} lb_kernel;

int lb_kernel_count(void);
const lb_kernel *lb_kernel_at(int i); /* in priority order */
const lb_kernel *lb_kernel_find(const char *name);
/* The first entry accepting (spec, layout) whose features are all in cpu.
 * force: NULL (normal choice), "fallback" (only generic entries: the path
 * before format kernels existed), or an entry name (that entry when it
 * accepts the layout and cpu has its features, else the normal choice). */
const lb_kernel *lb_kernel_select(const lb_qspec *s, const lb_layout *l, unsigned cpu, const char *force);
/* The kernel for t on this CPU (lb_cpu_features(), env LB_KERNEL as force),
 * chosen on first use and cached in t->kernel. */
const lb_kernel *lb_kernel_for(const lb_tensor *t);

/* Sets t's cached kernel to lb_kernel_select(..., lb_cpu_features(), force)
 * (benchmarks compare kernels on one tensor in one run), repacking for it;
 * returns it (a generic one when repacking failed for want of memory). */
const lb_kernel *lb_kernel_pin(lb_tensor *t, const char *force);
/* Drops t's cached kernel and repacking: the next use chooses again, as
 * lb_kernel_for does (after a lb_kernel_pin that was meant for a while). */
void lb_kernel_unpin(lb_tensor *t);
/* Makes k (which must accept t's layout) t's kernel, with its repacking:
 * what tests use to run one entry's routine directly. */
lb_status lb_kernel_use(lb_tensor *t, const lb_kernel *k);

/* The best opt-in binarized-activation (LB_ACT_SIGN) entry for t on this
 * CPU, with t's repacking in place (NULL with an error set when none takes
 * t's format, or repacking failed). lb_matmul_binarized runs it. */
const lb_kernel *lb_kernel_for_binarized(const lb_tensor *t);

/* Rows per call of the generic dequantize-a-tile path. */
#define LB_DEQUANT_TILE 16

/* The entries' routines: generic (matmul.c), integer ref/ and x86/. */
void lb_kernel_f32_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
void lb_kernel_dequant_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
void lb_kernel_q8_0_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
void lb_kernel_q4_0_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
/* ternary and binary weights, repacked by lb_lowbin_repack (kernels/lowbin.h) */
void lb_kernel_ternary_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
void lb_kernel_binary_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
/* binary weights by table lookup (LB_ACT_LUT), repacked by lb_lut_repack */
void lb_kernel_binary_lut_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                              float *scratch);
void lb_kernel_ternary_lut_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                               float *scratch);
/* binary weights x binarized activations (LB_ACT_SIGN): XNOR + popcount */
void lb_kernel_xnor_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
void lb_kernel_nf4_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
void lb_kernel_pow2_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
/* trellis codes along rows, on trellis_pack.h's repacking (float activations) */
void lb_kernel_trellis_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
/* e8p and lut weights as stored, float activations (kernels/lookup.h) */
void lb_kernel_e8p_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
void lb_kernel_lut_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
/* vq codes on lb_vq_repack's float codebooks (kernels/lookup.h) */
void lb_kernel_vq_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
/* onebit, ptq161, littlebit (kernels/binfam.h), after their pre transforms */
void lb_kernel_onebit_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
void lb_kernel_ptq161_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
void lb_kernel_littlebit_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                             float *scratch);
void lb_littlebit_pre_ref(const lb_tensor *w, const float *x, int n, float *out);
/* billm on kernels/billm_pack.h's layout, after its column permutation (float activations) */
void lb_kernel_billm_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
/* every uniform int layout, on uniform_pack.h's repacking */
void lb_kernel_uniform_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
#if defined(__x86_64__)
void lb_kernel_uniform_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                            float *scratch);
void lb_kernel_uniform_avx512(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                              float *scratch);
#endif
#if defined(__aarch64__)
void lb_kernel_uniform_neon(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                            float *scratch);
void lb_kernel_uniform_dotprod(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                               float *scratch);
void lb_kernel_onebit_neon(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
void lb_kernel_ptq161_neon(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
void lb_kernel_trellis_neon(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                            float *scratch);
void lb_kernel_e8p_neon(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
void lb_kernel_vq_neon(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
void lb_kernel_lut_neon(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
void lb_kernel_onebit_dotprod(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                              float *scratch);
void lb_kernel_ptq161_dotprod(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                              float *scratch);
#endif
#if defined(__x86_64__)
void lb_kernel_f32_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
void lb_kernel_dequant_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                            float *scratch);
void lb_kernel_q8_0_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
void lb_kernel_q4_0_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
void lb_kernel_ternary_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
void lb_kernel_binary_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
void lb_kernel_ternary_avx512(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                              float *scratch);
void lb_kernel_binary_avx512(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                             float *scratch);
void lb_kernel_binary_lut_avx512(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                                 float *scratch);
void lb_kernel_ternary_lut_avx512(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                                  float *scratch);
void lb_kernel_ternary_lut_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                                float *scratch);
void lb_kernel_binary_lut_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                               float *scratch);
void lb_kernel_xnor_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
void lb_kernel_xnor_avx512(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
void lb_kernel_nf4_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
void lb_kernel_pow2_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
void lb_kernel_trellis_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                            float *scratch);
void lb_kernel_e8p_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
void lb_kernel_lut_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
void lb_kernel_vq_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
void lb_kernel_onebit_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
void lb_kernel_ptq161_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
void lb_kernel_littlebit_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                              float *scratch);
void lb_littlebit_pre_avx2(const lb_tensor *w, const float *x, int n, float *out);
void lb_kernel_billm_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
void lb_kernel_onebit_avx512(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
void lb_kernel_ptq161_avx512(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
/* AVX-512 F+BW+VNNI (512-bit vpdpbusd) */
void lb_kernel_q8_0_avx512(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
void lb_kernel_q4_0_avx512(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
void lb_kernel_nf4_avx512(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
void lb_kernel_pow2_avx512(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
#endif
#if defined(__aarch64__) /* arm/: _neon on every AArch64 CPU, _dotprod with FEAT_DotProd */
void lb_kernel_f32_neon(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
void lb_kernel_dequant_neon(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                            float *scratch);
void lb_kernel_q8_0_neon(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
void lb_kernel_q4_0_neon(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch);
void lb_kernel_q8_0_dotprod(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                            float *scratch);
void lb_kernel_q4_0_dotprod(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                            float *scratch);
#endif

#endif
