/* The matmul kernel registry: one row per (format predicate, CPU features,
 * activation preparation, routine), in priority order. The first row that
 * accepts a tensor's resolved layout and whose features the CPU has wins;
 * the choice is made once per tensor and cached on it. The generic rows at
 * the end (float GEMM, dequantize a tile then float GEMM) accept everything,
 * so every format always has a kernel.
 *
 * Adding a kernel: a routine in ref/ (scalar, the specification) and, if it
 * is SIMD, its twin in x86/ or arm/ naming the ref row; a predicate here; a row
 * above the generic ones. A kernel that wants its own weight layout names a
 * repack function (built once per tensor on first use, kept in w->packed;
 * the scalar twin names the same one). tests/test_kernel_registry.c enumerates this
 * table, so the new row is tested without being listed anywhere else. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/billm_pack.h"
#include "kernels/binfam.h" /* onebit, ptq161, littlebit */
#include "kernels/codebook.h"
#include "kernels/kernels.h"
#include "kernels/lookup.h" /* e8p, lut and vq predicates, vq's repacking */
#include "kernels/lowbin.h" /* ternary / binary predicates and repacking */
#include "kernels/trellis_pack.h"
#include "kernels/uniform_pack.h"
#include "lowbit/linear.h" /* lb_matmul_kernel_name, public */

/* ---- predicates over resolved layouts ------------------------------------- */

static int is_f32(const lb_qspec *s, const lb_layout *l) {
    (void)l;
    return s->family == LB_FAMILY_F32;
}

static int any_format(const lb_qspec *s, const lb_layout *l) {
    (void)s;
    (void)l;
    return 1;
}

/* ggml's block layouts: fp16 scale + 32 codes per block, blocks back to back,
 * rows padded to whole blocks (the padding codes decode to 0 and meet zero
 * activations, so any cols works). */
static int uniform_sym_g32(const lb_qspec *s, const lb_layout *l, int bits, size_t block_bytes) {
    return s->family == LB_FAMILY_UNIFORM && s->bits == bits && s->zero == LB_ZERO_SYM && s->group == 32 &&
           l->group_len == 32 && l->cols_padded % 32 == 0 && l->cols_padded <= l->cols + 31 &&
           l->row_bytes == (size_t)(l->cols_padded / 32) * block_bytes && l->tail_bytes == 0;
}

static int is_q8_0(const lb_qspec *s, const lb_layout *l) { return uniform_sym_g32(s, l, 8, 34); }
static int is_q4_0(const lb_qspec *s, const lb_layout *l) { return uniform_sym_g32(s, l, 4, 18); }

/* nf4 with groups of 32 or a multiple of 64 (row groups when cols_padded %
 * 64 == 0), fp16 or dq scales; pow2 at 3 or 4 bits, groups a multiple of 32
 * (kernels/codebook.h has the layouts) */
static int is_nf4_blocks(const lb_qspec *s, const lb_layout *l) { return lb_cb_nf4_kind(s, l) >= 0; }
static int is_pow2_blocks(const lb_qspec *s, const lb_layout *l) { return lb_cb_pow2_kind(s, l) >= 0; }

/* ---- the table, in priority order ----------------------------------------- */

#define AVX2_FMA (LB_CPU_AVX2 | LB_CPU_FMA)
#define AVX2_FMA_F16C (LB_CPU_AVX2 | LB_CPU_FMA | LB_CPU_F16C)
#define NEON_DOTPROD (LB_CPU_NEON | LB_CPU_DOTPROD)
#define AVX512_POPCNT (LB_CPU_AVX512F | LB_CPU_AVX512BW | LB_CPU_AVX512VPOPCNTDQ | LB_CPU_F16C)
#define AVX512_LUT (LB_CPU_AVX512F | LB_CPU_AVX512BW | LB_CPU_F16C)
#define AVX512_LOWBIN (LB_CPU_AVX512F | LB_CPU_AVX512BW | LB_CPU_AVX512VNNI | LB_CPU_F16C)
/* 512-bit vpdpbusd; the decoders are AVX2 code inlined (codebook_x86.h) */
#define AVX512_VNNI (AVX2_FMA_F16C | LB_CPU_AVX512F | LB_CPU_AVX512BW | LB_CPU_AVX512VNNI)

/* Rows leave the trailing hooks they do not use (repack, pre, pre_cols)
 * out: zero, i.e. none. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const lb_kernel registry[] = {
#if defined(__x86_64__)
    /* every uniform int layout (q8_0 and q4_0 included), ternary, binary,
     * nf4 and pow2:3/4: the 16-row panels (load-time repack) beat the rows reading
     * ggml's blocks as stored by 1.3-2.3x and the ternary/binary LUT and
     * int8 rows by 2.3-2.8x at 4096x4096 (batch 1 and 8), and the q8_0/q4_0
     * rows on stories260K, in same-run comparisons (docs/BENCHMARKS.md);
     * those stay for rows too long for the panels' stack tables, for
     * LB_KERNEL, and (XNOR) for binarized activations */
    {"uniform_avx512", lb_uniform_kernel_accepts, AVX512_VNNI, LB_ACT_Q8_32, lb_kernel_uniform_avx512, 0, 0,
     "uniform_ref", lb_uniform_repack},
    {"uniform_avx2", lb_uniform_kernel_accepts, AVX2_FMA_F16C, LB_ACT_Q8_32, lb_kernel_uniform_avx2, 0, 0,
     "uniform_ref", lb_uniform_repack},
    {"q8_0_avx512", is_q8_0, AVX512_VNNI, LB_ACT_Q8_32, lb_kernel_q8_0_avx512, 0, 0, "q8_0_ref", NULL},
    {"q4_0_avx512", is_q4_0, AVX512_VNNI, LB_ACT_Q8_32, lb_kernel_q4_0_avx512, 0, 0, "q4_0_ref", NULL},
    {"nf4_avx512", is_nf4_blocks, AVX512_VNNI, LB_ACT_Q8_32, lb_kernel_nf4_avx512, 0, 0, "nf4_ref", NULL},
    {"pow2_avx512", is_pow2_blocks, AVX512_VNNI, LB_ACT_Q8_32, lb_kernel_pow2_avx512, 0, 0, "pow2_ref", NULL},
    {"q8_0_avx2", is_q8_0, AVX2_FMA_F16C, LB_ACT_Q8_32, lb_kernel_q8_0_avx2, 0, 0, "q8_0_ref", NULL},
    {"q4_0_avx2", is_q4_0, AVX2_FMA_F16C, LB_ACT_Q8_32, lb_kernel_q4_0_avx2, 0, 0, "q4_0_ref", NULL},
    /* binary: the table lookup beats the int8 path (AVX-512 included) in a
     * same-run comparison, so it comes first */
    {"binary_lut_avx512", lb_lowbin_is_binary, AVX512_LUT, LB_ACT_LUT, lb_kernel_binary_lut_avx512, 0, 0,
     "binary_lut_ref", lb_lut_repack},
    {"binary_lut_avx2", lb_lowbin_is_binary, AVX2_FMA_F16C, LB_ACT_LUT, lb_kernel_binary_lut_avx2, 0, 0,
     "binary_lut_ref", lb_lut_repack},
    {"ternary_lut_avx512", lb_lowbin_is_ternary, AVX512_LUT, LB_ACT_LUT3, lb_kernel_ternary_lut_avx512, 0, 0,
     "ternary_lut_ref", lb_lut3_repack},
    {"ternary_avx512", lb_lowbin_is_ternary, AVX512_LOWBIN, LB_ACT_Q8_32, lb_kernel_ternary_avx512, 0, 0, "ternary_ref",
     lb_lowbin_repack},
    {"binary_avx512", lb_lowbin_is_binary, AVX512_LOWBIN, LB_ACT_Q8_32, lb_kernel_binary_avx512, 0, 0, "binary_ref",
     lb_lowbin_repack},
    {"ternary_lut_avx2", lb_lowbin_is_ternary, AVX2_FMA_F16C, LB_ACT_LUT3, lb_kernel_ternary_lut_avx2, 0, 0,
     "ternary_lut_ref", lb_lut3_repack},
    {"ternary_avx2", lb_lowbin_is_ternary, AVX2_FMA_F16C, LB_ACT_Q8_32, lb_kernel_ternary_avx2, 0, 0, "ternary_ref",
     lb_lowbin_repack},
    {"binary_avx2", lb_lowbin_is_binary, AVX2_FMA_F16C, LB_ACT_Q8_32, lb_kernel_binary_avx2, 0, 0, "binary_ref",
     lb_lowbin_repack},
#endif
#if defined(__aarch64__)
    {"q8_0_dotprod", is_q8_0, NEON_DOTPROD, LB_ACT_Q8_32, lb_kernel_q8_0_dotprod, 0, 0, "q8_0_ref", NULL},
    {"q4_0_dotprod", is_q4_0, NEON_DOTPROD, LB_ACT_Q8_32, lb_kernel_q4_0_dotprod, 0, 0, "q4_0_ref", NULL},
    {"q8_0_neon", is_q8_0, LB_CPU_NEON, LB_ACT_Q8_32, lb_kernel_q8_0_neon, 0, 0, "q8_0_ref", NULL},
    {"q4_0_neon", is_q4_0, LB_CPU_NEON, LB_ACT_Q8_32, lb_kernel_q4_0_neon, 0, 0, "q4_0_ref", NULL},
    /* the 16-row panels for every other layout they take (uniform ints,
     * ternary, binary, nf4, pow2:3/4); after the q8_0/q4_0 rows, which read
     * the blocks as stored, because no ARM CPU was at hand to time the two
     * against each other (qemu-user's timings say nothing) */
    {"uniform_dotprod", lb_uniform_kernel_accepts, NEON_DOTPROD, LB_ACT_Q8_32, lb_kernel_uniform_dotprod, 0, 0,
     "uniform_ref", lb_uniform_repack},
    {"uniform_neon", lb_uniform_kernel_accepts, LB_CPU_NEON, LB_ACT_Q8_32, lb_kernel_uniform_neon, 0, 0, "uniform_ref",
     lb_uniform_repack},
#endif
    {"ternary_ref", lb_lowbin_is_ternary, 0, LB_ACT_Q8_32, lb_kernel_ternary_ref, 0, 0, NULL, lb_lowbin_repack},
    {"binary_ref", lb_lowbin_is_binary, 0, LB_ACT_Q8_32, lb_kernel_binary_ref, 0, 0, NULL, lb_lowbin_repack},
    {"ternary_lut_ref", lb_lowbin_is_ternary, 0, LB_ACT_LUT3, lb_kernel_ternary_lut_ref, 0, 0, NULL, lb_lut3_repack},
    {"binary_lut_ref", lb_lowbin_is_binary, 0, LB_ACT_LUT, lb_kernel_binary_lut_ref, 0, 0, NULL, lb_lut_repack},
    /* opt-in (LB_ACT_SIGN: lb_matmul_binarized, or LB_KERNEL naming one) */
#if defined(__x86_64__)
    {"xnor_avx512", lb_lowbin_is_binary, AVX512_POPCNT, LB_ACT_SIGN, lb_kernel_xnor_avx512, 0, 0, "xnor_ref",
     lb_lowbin_repack},
    {"xnor_avx2", lb_lowbin_is_binary, AVX2_FMA_F16C, LB_ACT_SIGN, lb_kernel_xnor_avx2, 0, 0, "xnor_ref",
     lb_lowbin_repack},
#endif
    {"xnor_ref", lb_lowbin_is_binary, 0, LB_ACT_SIGN, lb_kernel_xnor_ref, 0, 0, NULL, lb_lowbin_repack},
    {"q8_0_ref", is_q8_0, 0, LB_ACT_Q8_32, lb_kernel_q8_0_ref, 0, 0, NULL, NULL},
    {"q4_0_ref", is_q4_0, 0, LB_ACT_Q8_32, lb_kernel_q4_0_ref, 0, 0, NULL, NULL},
#if defined(__x86_64__)
    {"nf4_avx2", is_nf4_blocks, AVX2_FMA_F16C, LB_ACT_Q8_32, lb_kernel_nf4_avx2, 0, 0, "nf4_ref", NULL},
    {"pow2_avx2", is_pow2_blocks, AVX2_FMA_F16C, LB_ACT_Q8_32, lb_kernel_pow2_avx2, 0, 0, "pow2_ref", NULL},
#endif
    {"nf4_ref", is_nf4_blocks, 0, LB_ACT_Q8_32, lb_kernel_nf4_ref, 0, 0, NULL, NULL},
    {"pow2_ref", is_pow2_blocks, 0, LB_ACT_Q8_32, lb_kernel_pow2_ref, 0, 0, NULL, NULL},
    /* the panels' scalar twin: after the scalar rows reading formats as
     * stored (no repacking for a scalar loop), first for every other layout */
    {"uniform_ref", lb_uniform_kernel_accepts, 0, LB_ACT_Q8_32, lb_kernel_uniform_ref, 0, 0, NULL, lb_uniform_repack},
    /* trellis codes, either direction: 1MAD decoded from backwards streams
     * (kernels/trellis_pack.h) */
#if defined(__x86_64__)
    {"trellis_avx2", lb_trellis_kernel_accepts, AVX2_FMA, LB_ACT_F32, lb_kernel_trellis_avx2, LB_DEQUANT_TILE, 0,
     "trellis_ref", lb_trellis_repack},
#endif
#if defined(__aarch64__)
    {"trellis_neon", lb_trellis_kernel_accepts, LB_CPU_NEON, LB_ACT_F32, lb_kernel_trellis_neon, LB_DEQUANT_TILE, 0,
     "trellis_ref", lb_trellis_repack},
#endif
    {"trellis_ref", lb_trellis_kernel_accepts, 0, LB_ACT_F32, lb_kernel_trellis_ref, LB_DEQUANT_TILE, 0, NULL,
     lb_trellis_repack},
    /* e8p (E8P lattice codes, every stage count) and lut (per-group levels):
     * table lookups on the stored bytes; vq (learned codebooks): lookups in
     * its codebooks made floats once per tensor; float activations
     * (kernels/lookup.h) */
#if defined(__x86_64__)
    {"e8p_avx2", lb_e8p_kernel_accepts, AVX2_FMA_F16C, LB_ACT_F32, lb_kernel_e8p_avx2, LB_DEQUANT_TILE, 0, "e8p_ref",
     NULL},
    {"lut_avx2", lb_lut_kernel_accepts, AVX2_FMA_F16C, LB_ACT_F32, lb_kernel_lut_avx2, LB_DEQUANT_TILE, 0, "lut_ref",
     NULL},
    {"vq_avx2", lb_vq_kernel_accepts, AVX2_FMA_F16C, LB_ACT_F32, lb_kernel_vq_avx2, LB_DEQUANT_TILE, 0, "vq_ref",
     lb_vq_repack},
#endif
#if defined(__aarch64__)
    {"e8p_neon", lb_e8p_kernel_accepts, LB_CPU_NEON, LB_ACT_F32, lb_kernel_e8p_neon, LB_DEQUANT_TILE, 0, "e8p_ref",
     NULL},
    {"lut_neon", lb_lut_kernel_accepts, LB_CPU_NEON, LB_ACT_F32, lb_kernel_lut_neon, LB_DEQUANT_TILE, 0, "lut_ref",
     NULL},
    {"vq_neon", lb_vq_kernel_accepts, LB_CPU_NEON, LB_ACT_F32, lb_kernel_vq_neon, LB_DEQUANT_TILE, 0, "vq_ref",
     lb_vq_repack},
#endif
    {"e8p_ref", lb_e8p_kernel_accepts, 0, LB_ACT_F32, lb_kernel_e8p_ref, LB_DEQUANT_TILE, 0, NULL, NULL},
    {"lut_ref", lb_lut_kernel_accepts, 0, LB_ACT_F32, lb_kernel_lut_ref, LB_DEQUANT_TILE, 0, NULL, NULL},
    {"vq_ref", lb_vq_kernel_accepts, 0, LB_ACT_F32, lb_kernel_vq_ref, 0, 0, NULL, lb_vq_repack},
    /* onebit, ptq161, littlebit: an input transform per product, then the
     * uniform panels on their parts, or littlebit's two factors
     * (kernels/binfam.h) */
#if defined(__x86_64__)
    {"onebit_avx512", lb_onebit_kernel_accepts, AVX512_VNNI, LB_ACT_Q8_32, lb_kernel_onebit_avx512, 0, 0, "onebit_ref",
     lb_onebit_repack, lb_onebit_pre, lb_onebit_pre_cols},
    {"ptq161_avx512", lb_ptq161_kernel_accepts, AVX512_VNNI, LB_ACT_Q8_32, lb_kernel_ptq161_avx512, 0, 0, "ptq161_ref",
     lb_ptq161_repack, lb_ptq161_pre, lb_ptq161_pre_cols},
    {"onebit_avx2", lb_onebit_kernel_accepts, AVX2_FMA_F16C, LB_ACT_Q8_32, lb_kernel_onebit_avx2, 0, 0, "onebit_ref",
     lb_onebit_repack, lb_onebit_pre, lb_onebit_pre_cols},
    {"ptq161_avx2", lb_ptq161_kernel_accepts, AVX2_FMA_F16C, LB_ACT_Q8_32, lb_kernel_ptq161_avx2, 0, 0, "ptq161_ref",
     lb_ptq161_repack, lb_ptq161_pre, lb_ptq161_pre_cols},
    {"littlebit_avx2", lb_littlebit_kernel_accepts, AVX2_FMA, LB_ACT_F32, lb_kernel_littlebit_avx2, 0, 0,
     "littlebit_ref", lb_littlebit_repack, lb_littlebit_pre_avx2, lb_littlebit_pre_cols},
#endif
#if defined(__aarch64__)
    {"onebit_dotprod", lb_onebit_kernel_accepts, NEON_DOTPROD, LB_ACT_Q8_32, lb_kernel_onebit_dotprod, 0, 0, "onebit_ref",
     lb_onebit_repack, lb_onebit_pre, lb_onebit_pre_cols},
    {"ptq161_dotprod", lb_ptq161_kernel_accepts, NEON_DOTPROD, LB_ACT_Q8_32, lb_kernel_ptq161_dotprod, 0, 0,
     "ptq161_ref", lb_ptq161_repack, lb_ptq161_pre, lb_ptq161_pre_cols},
    {"onebit_neon", lb_onebit_kernel_accepts, LB_CPU_NEON, LB_ACT_Q8_32, lb_kernel_onebit_neon, 0, 0, "onebit_ref",
     lb_onebit_repack, lb_onebit_pre, lb_onebit_pre_cols},
    {"ptq161_neon", lb_ptq161_kernel_accepts, LB_CPU_NEON, LB_ACT_Q8_32, lb_kernel_ptq161_neon, 0, 0, "ptq161_ref",
     lb_ptq161_repack, lb_ptq161_pre, lb_ptq161_pre_cols},
#endif
    {"onebit_ref", lb_onebit_kernel_accepts, 0, LB_ACT_Q8_32, lb_kernel_onebit_ref, 0, 0, NULL, lb_onebit_repack,
     lb_onebit_pre, lb_onebit_pre_cols},
    {"ptq161_ref", lb_ptq161_kernel_accepts, 0, LB_ACT_Q8_32, lb_kernel_ptq161_ref, 0, 0, NULL, lb_ptq161_repack,
     lb_ptq161_pre, lb_ptq161_pre_cols},
    {"littlebit_ref", lb_littlebit_kernel_accepts, 0, LB_ACT_F32, lb_kernel_littlebit_ref, 0, 0, NULL,
     lb_littlebit_repack, lb_littlebit_pre_ref, lb_littlebit_pre_cols},
    /* billm: the columns permuted salient first within each group (pre), then
     * a float lookup per weight from each group's 8 values
     * (kernels/billm_pack.h says why not int8 planes) */
#if defined(__x86_64__)
    {"billm_avx2", lb_billm_kernel_accepts, AVX2_FMA_F16C, LB_ACT_F32, lb_kernel_billm_avx2, 0, 0, "billm_ref",
     lb_billm_repack, lb_billm_pre, lb_billm_pre_cols},
#endif
    {"billm_ref", lb_billm_kernel_accepts, 0, LB_ACT_F32, lb_kernel_billm_ref, 0, 0, NULL, lb_billm_repack,
     lb_billm_pre, lb_billm_pre_cols},
#if defined(__x86_64__)
    {"f32_avx2", is_f32, AVX2_FMA, LB_ACT_F32, lb_kernel_f32_avx2, 0, 1, "f32_ref", NULL},
#endif
#if defined(__aarch64__)
    {"f32_neon", is_f32, LB_CPU_NEON, LB_ACT_F32, lb_kernel_f32_neon, 0, 1, "f32_ref", NULL},
#endif
    {"f32_ref", is_f32, 0, LB_ACT_F32, lb_kernel_f32_ref, 0, 1, NULL, NULL},
#if defined(__x86_64__)
    {"dequant_avx2", any_format, AVX2_FMA, LB_ACT_F32, lb_kernel_dequant_avx2, LB_DEQUANT_TILE, 1, "dequant_ref", NULL},
#endif
#if defined(__aarch64__)
    {"dequant_neon", any_format, LB_CPU_NEON, LB_ACT_F32, lb_kernel_dequant_neon, LB_DEQUANT_TILE, 1, "dequant_ref", NULL},
#endif
    {"dequant_ref", any_format, 0, LB_ACT_F32, lb_kernel_dequant_ref, LB_DEQUANT_TILE, 1, NULL, NULL},
};
#pragma GCC diagnostic pop

#define N_ENTRIES ((int)(sizeof registry / sizeof registry[0]))

int lb_kernel_count(void) { return N_ENTRIES; }

const lb_kernel *lb_kernel_at(int i) { return i >= 0 && i < N_ENTRIES ? &registry[i] : NULL; }

const lb_kernel *lb_kernel_find(const char *name) {
    for (int i = 0; name && i < N_ENTRIES; i++)
        if (!strcmp(registry[i].name, name)) return &registry[i];
    return NULL;
}

static int usable(const lb_kernel *k, const lb_qspec *s, const lb_layout *l, unsigned cpu) {
    return (k->cpu & cpu) == k->cpu && k->accepts(s, l);
}

const lb_kernel *lb_kernel_select(const lb_qspec *s, const lb_layout *l, unsigned cpu, const char *force) {
    int only_generic = force && !strcmp(force, "fallback");
    if (force && !only_generic) {
        const lb_kernel *k = lb_kernel_find(force);
        if (k && usable(k, s, l, cpu)) return k;
    }
    for (int i = 0; i < N_ENTRIES; i++)
        if ((!only_generic || registry[i].generic) && registry[i].act != LB_ACT_SIGN && usable(&registry[i], s, l, cpu))
            return &registry[i];
    return NULL; /* unreachable: dequant_ref accepts everything */
}

/* LB_KERNEL, read once (benign race: every thread reads the same value). */
static const char *forced_kernel(void) {
    static int done;
    static const char *force;
    if (!done) {
        const char *env = getenv("LB_KERNEL");
        if (env && *env && strcmp(env, "fallback") && !lb_kernel_find(env)) {
            fprintf(stderr, "lowbit: LB_KERNEL=%s names no kernel (known: fallback", env);
            for (int i = 0; i < N_ENTRIES; i++) fprintf(stderr, ", %s", registry[i].name);
            fprintf(stderr, "); using the normal choice\n");
        }
        force = env && *env ? env : NULL;
        done = 1;
    }
    return force;
}

/* k's repacking of t, published in t->packed (NULL when k reads the stored
 * bytes). Racing threads build the same bytes; the first to publish wins. */
static lb_status attach_packed(const lb_tensor *t, const lb_kernel *k) {
    void **slot = (void **)&((lb_tensor *)t)->packed;
    if (!k->repack) return LB_OK;
    if (__atomic_load_n(slot, __ATOMIC_ACQUIRE)) return LB_OK;
    void *p = NULL;
    size_t bytes = 0;
    lb_status st = k->repack(t, &p, &bytes);
    if (st != LB_OK) return st;
    void *expected = NULL;
    if (!__atomic_compare_exchange_n(slot, &expected, p, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) lb_free(p);
    return LB_OK;
}

/* The selection for t, repacked for; a kernel whose repacking fails (out of
 * memory) gives way to the generic path, which needs none. */
static const lb_kernel *choose(const lb_tensor *t, const char *force) {
    const lb_kernel *k = lb_kernel_select(&t->spec, &t->layout, lb_cpu_features(), force);
    if (attach_packed(t, k) == LB_OK) return k;
    return lb_kernel_select(&t->spec, &t->layout, lb_cpu_features(), "fallback");
}

const lb_kernel *lb_kernel_for(const lb_tensor *t) {
    /* t is const to its users, but the kernel and packed slots are caches:
     * threads may race to fill them, and every one of them stores the same
     * choice (packed is published before kernel, so a kernel seen set has
     * its layout ready) */
    const void **slot = (const void **)&t->kernel;
    const lb_kernel *k = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (k) return k;
    k = choose(t, forced_kernel());
    __atomic_store_n(slot, (const void *)k, __ATOMIC_RELEASE);
    return k;
}

static void forget(lb_tensor *t) { lb_tensor_drop_cache(t); }

void lb_kernel_unpin(lb_tensor *t) { forget(t); }

const lb_kernel *lb_kernel_pin(lb_tensor *t, const char *force) {
    forget(t);
    const lb_kernel *k = choose(t, force);
    __atomic_store_n(&t->kernel, (const void *)k, __ATOMIC_RELEASE);
    return k;
}

lb_status lb_kernel_use(lb_tensor *t, const lb_kernel *k) {
    if (!k->accepts(&t->spec, &t->layout))
        return lb_fail(LB_ERR_INVALID, "kernel %s does not take tensor '%s' (%lld x %lld)", k->name, t->name,
                       (long long)t->rows, (long long)t->cols);
    forget(t);
    lb_status st = attach_packed(t, k);
    if (st != LB_OK) return st;
    t->kernel = k;
    return LB_OK;
}

const lb_kernel *lb_kernel_for_binarized(const lb_tensor *t) {
    const lb_kernel *k = NULL;
    unsigned cpu = lb_cpu_features();
    for (int i = 0; i < N_ENTRIES && !k; i++)
        if (registry[i].act == LB_ACT_SIGN && usable(&registry[i], &t->spec, &t->layout, cpu)) k = &registry[i];
    if (!k) {
        lb_fail(LB_ERR_UNSUPPORTED, "binarized matmul: tensor '%s' is not binary with groups of >= 32 weights, a row or the tensor",
                t->name);
        return NULL;
    }
    /* t->packed is the layout of t's own kernel: usable when that kernel
     * repacks the same way (or has not built one yet) */
    const lb_kernel *own = lb_kernel_for(t);
    if (own->repack != k->repack && __atomic_load_n(&t->packed, __ATOMIC_ACQUIRE)) {
        lb_fail(LB_ERR_UNSUPPORTED, "binarized matmul: tensor '%s' holds another kernel's layout (%s)", t->name, own->name);
        return NULL;
    }
    if (attach_packed(t, k) != LB_OK) return NULL;
    return k;
}

const char *lb_matmul_kernel_name(const lb_tensor *w) {
    if (lb_split_parts(w)) return "split"; /* each part its own kernel (lb_matmul) */
    return lb_kernel_for(w)->name;
}
