/* Kernels for the binary families whose weights are not one plain sign
 * matrix: onebit, ptq161 and littlebit (binfam_pack.c builds their layouts;
 * ref/binfam_ref.c is the specification, x86/binfam_avx2.c the SIMD twins).
 *
 * Each is a small transform of the input (the registry row's `pre` hook,
 * run once per lb_matmul, not per row tile) followed by kernels that exist
 * already, or by a short float loop:
 *
 *   onebit    W = diag(h) S diag(g):  x' = g * x, then y = (h S) x' by the
 *             uniform panels' binary kernel (S with per-row alpha = h is a
 *             binary:row tensor: kernels/uniform_pack.h, kind BIN), on int8
 *             activations (LB_ACT_Q8_32 of x').
 *   ptq161    the columns gathered salient first: x' = [x_salient | 0 pad |
 *             x_binary], the salient block padded to a multiple of
 *             LB_ACT_PAD so the binary block starts on a whole activation
 *             block; then y = D x'_s + B x'_b + mu (sum x'_b), D the salient
 *             part as an int4:row:asym tensor (w = d q + m), B the binary part
 *             as a binary:row tensor (alpha), mu the binary part's per-row
 *             offset times the sum of its (quantized) activations. D and B
 *             run on the uniform panels too.
 *   littlebit W = diag(h) U diag(l) V^T diag(g): pre computes
 *             t = l * (V^T (g * x)) (n x R, float, padded with zeros to R8 =
 *             R rounded up to 8) and the rows then need y_r = h_r (u_r . t):
 *             R (rows + cols) sign-adds per input row instead of rows cols.
 *
 * Float activations for littlebit (its R-wide inner vector is tiny); the
 * other two quantize x' exactly as LB_ACT_Q8_32 quantizes any input, so
 * their error bound is that of the binary/uniform kernels on x'. */
#ifndef LB_KERNELS_BINFAM_H
#define LB_KERNELS_BINFAM_H

#include "kernels/kernels.h"

/* The layouts the rows take. onebit: any shape whose binary:row view the
 * uniform panels take; ptq161: at least one salient and one binary column
 * (s0 and s100 stay on the generic path); littlebit: any rank. */
int lb_onebit_kernel_accepts(const lb_qspec *s, const lb_layout *l);
int lb_ptq161_kernel_accepts(const lb_qspec *s, const lb_layout *l);
int lb_littlebit_kernel_accepts(const lb_qspec *s, const lb_layout *l);

/* Repack hooks (one lb_alloc'd block each; the views inside point into it). */
lb_status lb_onebit_repack(const lb_tensor *w, void **out, size_t *bytes);
lb_status lb_ptq161_repack(const lb_tensor *w, void **out, size_t *bytes);
lb_status lb_littlebit_repack(const lb_tensor *w, void **out, size_t *bytes);

/* The packed block of onebit and ptq161: views of the parts as tensors of
 * families that have kernels (their `packed` inside this block, data NULL). */
typedef struct {
    lb_tensor part[2];   /* onebit: [0] the signs (binary:row); ptq161: [0] salient int4, [1] binary */
    int64_t cols;        /* of the original tensor */
    int64_t k, ks, width; /* ptq161: salient columns, where the binary block starts, x' columns */
    size_t g_off;        /* onebit: fp32 g[cols] */
    size_t perm_off;     /* ptq161: int32 source column of x' column p (k salient, then cols - k binary) */
    size_t mu_off;       /* ptq161: fp32 mu[rows] */
} lb_binfam_pack;

static inline const lb_binfam_pack *lb_binfam(const lb_tensor *w) { return (const lb_binfam_pack *)w->packed; }
static inline const float *lb_binfam_floats(const lb_tensor *w, size_t off) {
    return (const float *)((const uint8_t *)w->packed + off);
}

/* littlebit's packed block: fp32 h[rows], l[R], g[cols]; U's sign bits,
 * rows x R8 / 8 bytes (bit j of row r = u(r, j), 0 past R); V^T's, R rows
 * of cols8 / 8 bytes (bit c of row j = v(c, j), 0 past cols), cols8 = cols
 * rounded up to 8. */
typedef struct {
    int rank, r8;
    int64_t rows, cols, cols8;
    size_t h_off, l_off, g_off, u_off, vt_off;
} lb_littlebit_pack;

static inline const lb_littlebit_pack *lb_lbit(const lb_tensor *w) { return (const lb_littlebit_pack *)w->packed; }
static inline const uint8_t *lb_lbit_bytes(const lb_tensor *w, size_t off) { return (const uint8_t *)w->packed + off; }

/* The pre hooks (kernels.h: lb_kernel.pre / pre_cols). onebit and ptq161's
 * are exact float copies / products, shared by the scalar and SIMD rows. */
int lb_onebit_pre_cols(const lb_tensor *w);
void lb_onebit_pre(const lb_tensor *w, const float *x, int n, float *out);
int lb_ptq161_pre_cols(const lb_tensor *w);
void lb_ptq161_pre(const lb_tensor *w, const float *x, int n, float *out);
int lb_littlebit_pre_cols(const lb_tensor *w);
/* littlebit's first factor with a given scaled sign dot:
 * t[i, j] = l_j sdot(V^T_j, g, x_i, cols), zeros for R <= j < R8 */
typedef float (*lb_sign_dot_scaled_fn)(const uint8_t *bits, const float *g, const float *x, int64_t n);
void lb_littlebit_first_factor(const lb_tensor *w, const float *x, int n, float *out, lb_sign_dot_scaled_fn sdot);
/* sum_j (bit j ? v_j : -v_j) over j < n, in j order: v = x (n a multiple of 8)
 * and v = fl(g x) (any n) */
float lb_sign_dot_ref(const uint8_t *bits, const float *x, int64_t n8);
float lb_sign_dot_scaled_ref(const uint8_t *bits, const float *g, const float *x, int64_t n);

/* The composed routines over an inner Q8_32 kernel (uniform_ref, uniform_avx2, ...). */
void lb_binfam_onebit_run(lb_kernel_fn inner, const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                          float *scratch);
void lb_binfam_ptq161_run(lb_kernel_fn inner, const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                          float *scratch);

#endif
