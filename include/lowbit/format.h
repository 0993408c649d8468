/* lowbit formats: how a weight matrix is stored in bits.
 *
 * A format is data: an lb_qspec names a family (a row of the format table:
 * uniform integers, NF4, binary, ternary, ..., float pass-through; the list
 * is docs/FORMATS.md's) and its parameters (bits, group size, zero-point
 * kind, packing). The byte layout of every family is written down
 * in docs/FORMATS.md; bits per weight count every stored byte (scales, zeros,
 * second-level tables, row padding).
 *
 * Shapes: a matrix has `rows` output channels of `cols` inputs, row-major,
 * like a linear layer's weight W (y = W x). Groups run along a row. */
#ifndef LOWBIT_FORMAT_H
#define LOWBIT_FORMAT_H

#include "lowbit/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A family is a row of the format table (src/formats/format.c): one file per
 * family answers everything about it (spec text, layout, codes, packing, the
 * reference dequantization, ggml identity). A spec points at its row, so hot
 * paths never look a family up. Adding a family touches no public header:
 * the built-in rows below have handles for code that must recognize one (a
 * kernel matching a layout); others are found by name (lb_format_family_find). */
typedef struct lb_format_family lb_format_family;
typedef const lb_format_family *lb_family;
extern const lb_format_family lb_f32_family, lb_f16_family, lb_bf16_family, lb_uniform_family, lb_nf4_family,
    lb_binary_family, lb_ternary_family;
#define LB_FAMILY_F32 (&lb_f32_family)
#define LB_FAMILY_F16 (&lb_f16_family)
#define LB_FAMILY_BF16 (&lb_bf16_family)
#define LB_FAMILY_UNIFORM (&lb_uniform_family) /* b-bit integers with a scale (and zero) per group */
#define LB_FAMILY_NF4 (&lb_nf4_family)         /* 4-bit NormalFloat codebook, absmax per group */
#define LB_FAMILY_BINARY (&lb_binary_family)   /* sign(w) * alpha */
#define LB_FAMILY_TERNARY (&lb_ternary_family) /* {-1, 0, +1} * alpha */

/* How a data-free method (round-to-nearest) picks a group's grid; a trait of
 * the family, so methods need no per-family cases. */
typedef enum {
    LB_GRID_NONE,    /* float formats: nothing to pick */
    LB_GRID_UNIFORM, /* evenly spaced levels: scale (and zero) from the clipped range */
    LB_GRID_ABSMAX,  /* a codebook in [-1, 1] times the group's clipped absmax (e.g. nf4) */
    LB_GRID_SIGN,    /* +-alpha, alpha = mean|w| (binary) */
    LB_GRID_TERNARY, /* {-1, 0, +1} alpha by the method's ternary rule */
    LB_GRID_TRELLIS, /* a trellis code: no per-weight grid; the encoder searches whole sequences */
    LB_GRID_LUT,     /* a free codebook per group (lut<b>): its levels placed by 1-D k-means */
    LB_GRID_ONEBIT,  /* h_row sign(w) g_col: signs and two value vectors, fitted together (onebit: SVID) */
    LB_GRID_SALIENT, /* salient columns at 4 bits, the rest binary (ptq161): columns picked, then two grids */
    LB_GRID_SALIENT_SPLIT, /* salient columns residual-binary, the rest binary in two magnitude groups (billm) */
    LB_GRID_LOWRANK_BINARY, /* low-rank binary factors (littlebit): no codes; the whole matrix is fitted */
    LB_GRID_VECTOR   /* a vector codebook (e8p): one code per vec_dim weights and stage, scales per group
                        and stage, searched around the codebook's RMS-matched scale */
} lb_grid_kind;

typedef enum {
    LB_ZERO_SYM, /* w = d * (q - 2^(b-1)) */
    LB_ZERO_F16, /* w = d * q + m, m (the group minimum) stored as fp16 */
    LB_ZERO_INT  /* w = d * (q - z), z a b-bit integer */
} lb_zero;

/* group: weights sharing one scale along a row (16..256, a power of two), or: */
#define LB_GROUP_ROW 0      /* one scale per row */
#define LB_GROUP_TENSOR (-1) /* one scale for the whole tensor (binary, ternary) */

typedef struct {
    lb_family family;    /* the family's row (never NULL in a valid spec) */
    int bits;            /* bits per code (uniform: 1..8; each family says) */
    int group;           /* see above */
    lb_zero zero;        /* uniform */
    int double_quant;    /* nf4: absmax values themselves stored at 8 bits */
    int trits_per_byte;  /* ternary: 4 (2 bits per trit) or 5 (1.6 bits per trit) */
    int scale_bits;      /* uniform: 0 = fp16 scale (and offset) per group; 2..8 = hierarchical
                            ("s<k>"): group scale (and min) as k-bit integers times fp16 super-scales */
    int super_rows;      /* uniform hierarchical: rows sharing one super-scale ("r<N>", default 1);
                            0 when scale_bits is 0 */
    int super_cols;      /* hierarchical: columns of a row sharing one super-scale (K-quants: 256,
                            with super_rows 1); 0 = whole rows (super_rows of them) */
    int state_bits;      /* trellis: L, the bitshift trellis' state ("L<n>", default 12) */
    int seq_down;        /* trellis: 1 = sequences run down each column ("down"), 0 = along rows */
    int step_weights;    /* trellis: V, weights per trellis step: 1, or 2 ("v2": K bits per step of two
                            weights, K/2 bits per weight); 0 reads as 1 */
    int salient_pct;     /* ptq161: salient input channels in percent of the columns ("s<p>", default 20):
                            the tensor stores round(cols * p / 100) of them at 4 bits */
    int rank;            /* littlebit: rank of the binary factors ("r<R>", 1..1024) */
    int vec_dim;         /* vq: weights per vector code ("vq<d>x<c>", d = 2..16; bits holds c) */
    int vec_stages;      /* vq: codebooks whose codewords are summed (residual stages, ":r<S>", 1..4) */
    int exp_bits;        /* fp8: exponent bits, 4 (E4M3) or 5 (E5M2) */
    int ggml_type;       /* llama.cpp's own layouts (the kquant and ggml families: q4_k, iq4_xs, ...):
                            the ggml type id */
} lb_qspec;

/* Parses "int4:g64:asym", "int3:g16:asym:s6:r4", "nf4:g64:dq", "binary:row", "ternary:g64:2bit",
 * "f16", aliases "q4_0", "q4_1", "q8_0". Unknown, empty, repeated or
 * conflicting options fail with a message naming the offending part. */
LB_API lb_status lb_qspec_parse(const char *text, lb_qspec *out);
/* Canonical text of a spec (parses back to the same spec). */
LB_API void lb_qspec_format(const lb_qspec *spec, char *buf, size_t n);
LB_API lb_status lb_qspec_validate(const lb_qspec *spec);
LB_API int lb_qspec_equal(const lb_qspec *a, const lb_qspec *b);
/* Traits answered by the spec's row. */
LB_API int lb_qspec_is_float(const lb_qspec *spec);
LB_API lb_grid_kind lb_format_grid(const lb_qspec *spec);
LB_API const char *lb_format_family_name(const lb_qspec *spec); /* "int", "nf4", ...; "?" without a family */
/* The family answering to a name ("nf4", "int4", "q4_0"), NULL if none. */
LB_API lb_family lb_format_family_find(const char *name);

/* Storage size of a rows x cols matrix in this format (rows of fixed size,
 * then a tensor-level tail for per-tensor data). Fails on absurd shapes. */
LB_API lb_status lb_format_size(const lb_qspec *spec, int64_t rows, int64_t cols, size_t *row_bytes,
                         size_t *tail_bytes, size_t *total_bytes);
/* Bits per weight, counting every stored bit, for this shape. */
LB_API double lb_format_bpw(const lb_qspec *spec, int64_t rows, int64_t cols);
/* ggml type id when the bytes are exactly a ggml type's layout for this
 * shape (so llama.cpp reads them as-is), else -1. */
LB_API int lb_format_ggml_type(const lb_qspec *spec, int64_t cols);
/* A block type whose blocks do not divide a row of `cols` weights (q4_k on
 * 172 columns): writes the spec such a tensor falls back to (docs/FORMATS.md,
 * "K-quants") and returns 1; 0 when the spec needs no fallback. */
LB_API int lb_format_ggml_fallback(const lb_qspec *spec, int64_t cols, lb_qspec *out);
/* The spec whose layout is ggml type `type`, if lowbit has one. */
LB_API lb_status lb_qspec_from_ggml_type(int type, lb_qspec *out);

/* ggml's type table (ids as in ggml.h): name, weights per block, bytes per
 * block. Returns 0 for ids lowbit does not know. */
typedef struct {
    const char *name;
    int block_size;
    int type_size;
} lb_ggml_type_info;
LB_API int lb_ggml_type_lookup(int type, lb_ggml_type_info *out);
enum {
    LB_GGML_F32 = 0,
    LB_GGML_F16 = 1,
    LB_GGML_Q4_0 = 2,
    LB_GGML_Q4_1 = 3,
    LB_GGML_Q5_0 = 6,
    LB_GGML_Q5_1 = 7,
    LB_GGML_Q8_0 = 8,
    LB_GGML_I8 = 24,
    LB_GGML_BF16 = 30
};

/* ---- layouts and tensors ---------------------------------------------------
 * Where everything sits for one (spec, rows, cols): resolved once, when a
 * tensor is created or loaded, so hot paths never re-parse or re-validate. */
typedef struct {
    int64_t rows, cols, cols_padded;
    int64_t group_len, groups_per_row, n_groups;
    size_t row_bytes, tail_bytes, total_bytes;
} lb_layout;

LB_API lb_status lb_layout_compute(const lb_qspec *spec, int64_t rows, int64_t cols, lb_layout *out);

typedef struct {
    char name[96];
    lb_qspec spec;
    int64_t rows, cols;  /* 1-D tensors have rows = 1 */
    const uint8_t *data; /* packed bytes, `nbytes` long */
    size_t nbytes;
    uint8_t *owned;      /* lb_alloc'd storage when the tensor owns its bytes */
    lb_layout layout;    /* resolved from spec, rows, cols by lb_tensor_resolve */
    const void *kernel;  /* matmul kernel chosen for this tensor (kernels layer cache; NULL: not yet) */
    void *packed;        /* that kernel's load-time repacking of data (lb_alloc'd, owned; NULL: the kernel
                            reads data as stored). A struct copy that is not the owner (a view) sets it NULL */
} lb_tensor;

/* Computes t->layout from t->spec, rows and cols, checks nbytes against it,
 * and clears the kernel cache (freeing any repacked copy). Called whenever a tensor gets its bytes. */
LB_API lb_status lb_tensor_resolve(lb_tensor *t);

/* Reference dequantization (the specification of every format). */
LB_API void lb_dequantize_row(const lb_tensor *t, int64_t row, float *out /* cols */);
/* rows [r0, r1) into out ((r1 - r0) x cols) */
LB_API void lb_dequantize_rows(const lb_tensor *t, int64_t r0, int64_t r1, float *out);
LB_API lb_status lb_dequantize(const lb_tensor *t, float *out /* rows x cols */);
/* Wraps f32 data of the given shape (not owned; caller keeps it alive). */
LB_API void lb_tensor_wrap_f32(lb_tensor *t, const char *name, const float *data, int64_t rows, int64_t cols);
LB_API void lb_tensor_free(lb_tensor *t);
/* Frees what the kernels cached on t (its repacking; for a split tensor
 * the parts' views and their caches) and forgets its kernel. */
LB_API void lb_tensor_drop_cache(lb_tensor *t);

/* ---- split tensors (src/formats/split.c) ----------------------------------
 * Spec "split": the output rows (or the input columns) cut into contiguous
 * parts, each stored in a format of its own (a row-block plan applied). The
 * bytes are a header naming the axis and each part's rows or columns and
 * format, then the parts' bytes, each padded to 16; every byte counts in
 * bpw. Joined from quantized parts, never quantized into. */
#define LB_SPLIT_MAX_PARTS 256
#define LB_SPLIT_HEAD_BYTES 16 /* a split tensor's bytes: this, plus lb_split_part_bytes of each part */
/* what a part of part_nbytes bytes adds to a split tensor: its 32-byte entry
 * and its bytes padded to 16 (so a plan charges each row block exactly) */
LB_API size_t lb_split_part_bytes(size_t part_nbytes);
/* parts[0..n-1] (resolved tensors with the same cols, rows in order) as one
 * owned split tensor named `name` */
LB_API lb_status lb_split_join(const lb_tensor *parts, int n, const char *name, lb_tensor *out);
/* parts[0..n-1] (resolved tensors with the same rows, columns in order) as
 * one owned split tensor whose parts are column ranges */
LB_API lb_status lb_split_join_cols(const lb_tensor *parts, int n, const char *name, lb_tensor *out);
/* the number of parts of a split tensor, 0 for any other */
LB_API int lb_split_parts(const lb_tensor *t);
/* what a split tensor's parts cut: 0 rows, 1 columns; -1 for any other tensor */
LB_API int lb_split_axis(const lb_tensor *t);
/* part k as a resolved view into t's bytes (not owned) and its first row
 * (or column, along columns) */
LB_API lb_status lb_split_part(const lb_tensor *t, int k, lb_tensor *view, int64_t *start);
/* every part's view at once (the kernels' cache of a split tensor:
 * lb_matmul runs part k's own kernel into rows start[k]..start[k+1], or on
 * those columns of the input, adding the parts' products in order) */
typedef struct {
    int n, axis;
    int64_t start[LB_SPLIT_MAX_PARTS + 1];
    lb_tensor part[];
} lb_split_view;
LB_API lb_status lb_split_view_build(const lb_tensor *t, lb_split_view **out);
LB_API void lb_split_view_free(lb_split_view *v);

/* ---- the unpacked form -----------------------------------------------------
 * What a quantization method produces and a format packs: one code per
 * weight plus per-group parameters. The value of code q in group k is
 *   uniform sym:  scale[k] * (q - 2^(b-1))
 *   uniform f16:  scale[k] * q + offset[k]
 *   uniform int:  scale[k] * (q - zero[k])
 *   (uniform with hierarchical scales, spec.scale_bits = k > 0: the same
 *   values, where scale[k] = super_scale[b] * int(scale_code[k]) and
 *   offset[k] = super_min[b] * min_code[k], b the group's super-group (lb_qtensor_super);
 *   int() reads a k-bit two's complement for sym, unsigned for asym)
 *   nf4:          scale[k] * NF4[q]
 *   binary:       q ? scale[k] : -scale[k]
 *   ternary:      scale[k] * (q - 1)
 *   trellis:      scale[k] * table[state], the state made of q and the
 *                 codes before it in its sequence, along the row or (down)
 *                 the column (src/formats/trellis.c)
 *   lut:          lut[k * 2^b + q], group k's own codebook (scale and
 *                 offset unused, 0; src/formats/lut.c)
 *   onebit:       (q ? scale[row] : -scale[row]) * col_scale[col]
 *                 (OneBit's diag(h) sign(W) diag(g); src/formats/onebit.c)
 *   ptq161:       salient column (col_mask): scale[k] * q + offset[k] (4-bit q);
 *                 other columns: extra[2k+1] + (q ? extra[2k] : -extra[2k])
 *   billm:        2-bit q, b0 = q & 1, b1 = q >> 1, e = extra + 7k:
 *                 salient column: e[0] + (b0 ? e[1] : -e[1]) + (b1 ? e[2] : -e[2]);
 *                 others: group g = b1 (0 concentrated, 1 sparse),
 *                 e[3 + 2g] + (b0 ? e[4 + 2g] : -e[4 + 2g]) (src/formats/billm.c;
 *                 the indices are named by LB_BILLM_* below)
 *   vector (e8p, vq): sum over stages s of scale[s * n_groups + k] *
 *                 codeword_s(vcode)[col % vec_dim], vcode the stage's code
 *                 of the vector holding (row, col) (codes is unused: NULL)
 * Rows are padded to cols_padded; padding codes are stored (and counted). */
/* billm's seven per-group values in stored order (extra + 7k above): the
 * salient columns' mean and two scales, then mean and scale of the
 * concentrated and of the sparse group. */
enum { LB_BILLM_MU_S, LB_BILLM_A1, LB_BILLM_A2, LB_BILLM_MU_C, LB_BILLM_A_C, LB_BILLM_MU_P, LB_BILLM_A_P, LB_BILLM_VALUES };

typedef struct {
    lb_qspec spec;
    int64_t rows, cols, cols_padded;
    int64_t group_len;      /* weights per group within a row (cols_padded for row/tensor) */
    int64_t groups_per_row; /* 0 when the tensor has a single group */
    int64_t n_groups;       /* entries in scale/offset/zero */
    uint8_t *codes;         /* rows x cols_padded */
    float *scale;           /* n_groups, exactly as stored once lb_qtensor_store_scales ran */
    float *offset;          /* n_groups (uniform LB_ZERO_F16) */
    uint8_t *zero;          /* n_groups (uniform LB_ZERO_INT) */
    /* nf4 double quantization: scale[k] = dq_code[k] * dq_block_scale[k/256] + dq_offset */
    int8_t *dq_code;
    float *dq_block_scale;
    int64_t dq_blocks;
    float dq_offset;
    /* uniform hierarchical scales (spec.scale_bits > 0), else NULL / 0 */
    /* a scale multiplying every group's (nvfp4's fp32 T), 1 elsewhere; set
     * by lb_qtensor_fit_tensor before groups are fitted */
    float tensor_scale;
    float *super_scale;  /* n_super: fp16 values */
    float *super_min;    /* n_super (asym): fp16 values */
    int64_t n_super;     /* super-groups: ceil(rows / spec.super_rows), or rows * the
                            row's ceil(cols_padded / spec.super_cols) */
    uint8_t *scale_code; /* n_groups, k-bit (sym: two's complement bits) */
    uint8_t *min_code;   /* n_groups (asym) */
    /* lut formats: each group's codebook, n_groups x 2^bits fp16 values,
     * finite and non-decreasing within a group once
     * lb_qtensor_store_scales ran; else NULL */
    float *lut;
    /* a value per input column multiplying every weight of that column
     * (onebit's g), else NULL: cols entries, fp16 values once stored;
     * lb_qtensor_value reads padding columns (col >= cols) as 0 */
    float *col_scale;
    /* salient-column families (ptq161, billm), else NULL / 0 */
    uint8_t *col_mask;   /* cols_padded: 1 = a salient input channel (stored once, in the tensor tail) */
    int64_t n_salient;   /* ptq161: salient columns the layout holds (fixed by spec and cols); billm: -1 (any) */
    float *extra;        /* n_groups x n_extra: per-group values beyond scale/offset, as stored (fp16) */
    int n_extra;
    /* Low-rank binary factors (littlebit, src/formats/littlebit.c), else 0 / NULL. Not one code
     * per weight: codes stay allocated but unused (all 0), and the value of (row, col) is
     *   h[row] * (sum_j u(row, j) l[j] v(col, j)) * g[col],  u, v = +1 where the sign byte is 1, else -1 */
    struct {
        int rank;        /* spec.rank */
        uint8_t *u_sign; /* rows x rank: 1 = +1, 0 = -1 */
        uint8_t *v_sign; /* cols x rank */
        float *h;        /* rows: fp16 values once lb_qtensor_store_scales ran */
        float *g;        /* cols: likewise */
        float *l;        /* rank: likewise */
    } lowrank;
    /* vector families (grid LB_GRID_VECTOR), else 0 / NULL: one code per
     * vec_dim consecutive weights of a row and per stage (residual VQ: stage
     * s codes what stages < s left), and scale holds n_groups x vec_stages
     * values, stage-major (scale[s * n_groups + k]; stage 0 first, so
     * scale[k] is the first stage's). The codebooks belong to the family:
     * computed (e8p: lattice points) or learned (vbook: filled by the
     * method, stored by the family in the tensor tail). */
    int vec_dim;          /* weights per vector code (e8p: 8) */
    int vec_stages;       /* additive stages (1..LB_VEC_MAX_STAGES) */
    int64_t vecs_per_row; /* cols_padded / vec_dim */
    uint16_t *vcodes;     /* rows x vecs_per_row x vec_stages: lb_qtensor_vcode() */
    /* learned codebooks, else NULL / 0: vec_stages x vbook_size x vec_dim
     * values (stage s's entry c at vbook + (s * vbook_size + c) * vec_dim),
     * as the family stores them once lb_qtensor_store_scales ran; allocated
     * by the family's qtensor_init hook */
    float *vbook;
    int64_t vbook_size; /* entries per stage */
} lb_qtensor;
#define LB_VEC_MAX_STAGES 4
#define LB_VEC_MAX_DIM 16

LB_API void lb_qtensor_free(lb_qtensor *q);
#ifdef LB_ADVANCED_API /* for extending lowbit (methods, formats, tools); not a stable API */
LB_API lb_status lb_qtensor_init(lb_qtensor *q, const lb_qspec *spec, int64_t rows, int64_t cols);
/* Index of the group that holds weight (row, col). */
static inline int64_t lb_qtensor_group(const lb_qtensor *q, int64_t row, int64_t col) {
    return q->groups_per_row ? row * q->groups_per_row + col / q->group_len : 0;
}
/* Vector families: the code of stage s for the vector holding (row, vector v) */
static inline uint16_t *lb_qtensor_vcode(const lb_qtensor *q, int64_t row, int64_t v, int stage) {
    return q->vcodes + (row * q->vecs_per_row + v) * q->vec_stages + stage;
}
/* Vector families: stage s's scale for `row` (scale is stage-major, one
 * group per row or one per tensor) */
static inline float lb_qtensor_vec_scale(const lb_qtensor *q, int stage, int64_t row) {
    return q->scale[stage * q->n_groups + (q->groups_per_row ? row : 0)];
}
/* Vector families: stage s's codeword of `code` at scale 1 (vec_dim values),
 * and the code whose codeword is nearest to x (vec_dim values, in codeword
 * units) in squared error weighted by wt (vec_dim weights >= 0; NULL: 1).
 * The search is exact (e8p: no approximation). */
LB_API void lb_qtensor_vec_codeword(const lb_qtensor *q, int stage, unsigned code, float *out);
LB_API unsigned lb_qtensor_vec_nearest(const lb_qtensor *q, int stage, const float *x, const float *wt);
/* The scale (over the RMS of what a stage quantizes) at which stage s's
 * codebook best quantizes iid Gaussian data: where rtn starts its search. */
LB_API float lb_qtensor_vec_unit_scale(const lb_qtensor *q, int stage);
/* Replaces scale/offset (lut: the levels) by the values the format actually stores (fp16
 * rounding, or nf4 double quantization). Methods call it before choosing
 * codes, so codes are chosen against the real grid. */
LB_API lb_status lb_qtensor_store_scales(lb_qtensor *q);
/* Number of codes, and the value of a code with scale 1 and zero offset
 * (uniform: q - 2^(b-1) for sym, q otherwise). */
LB_API int lb_format_levels(const lb_qspec *spec);
LB_API float lb_format_level(const lb_qspec *spec, int code);
/* A uniform grid: value(q) = d q + m for LB_ZERO_F16, d (q - z) otherwise
 * (z = 2^(b-1) for LB_ZERO_SYM). The one definition of rounding to it. */
LB_API float lb_uniform_value(const lb_qspec *spec, float d, float m, int z, int q);
LB_API int lb_uniform_nearest_code(const lb_qspec *spec, float d, float m, int z, float w);
/* Value that (row, col)'s code decodes to, and the code nearest to w in
 * that weight's group. */
LB_API float lb_qtensor_value(const lb_qtensor *q, int64_t row, int64_t col);
LB_API int lb_qtensor_nearest_code(const lb_qtensor *q, int64_t group, float w);
/* The code whose level times d is nearest w: the family's rounding
 * (nearest_level, fp8) or a scan over the levels (the first nearest). */
LB_API int lb_format_nearest_level(const lb_qspec *spec, float d, float w);
/* The stored scale nearest s (fp16 for most families; mxfp4: a power of
 * two; nvfp4: tensor_scale times a UE4M3 value), so a search scores what is
 * written. */
LB_API float lb_qtensor_round_scale(const lb_qtensor *q, float s);
/* Tensor-level parameters from all the weights (nvfp4's tensor_scale), before
 * any group is fitted; nothing for most families. */
LB_API void lb_qtensor_fit_tensor(lb_qtensor *q, const float *w, int64_t rows, int64_t cols);
/* 1 when a tensor-level parameter fixes every group's grid (nvfp4): such
 * groups are fitted once, on the whole tensor (gptq keeps them static). */
LB_API int lb_format_tensor_scaled(const lb_qspec *spec);
/* 1 when the family stores scales coarser than fp16 (mxfp4: powers of two),
 * so a search tries neighbouring stored scales too. */
LB_API int lb_format_coarse_scales(const lb_qspec *spec);
/* Packs into out (lb_format_size bytes). Fails on out-of-range codes,
 * non-finite scales or lut levels that are not finite and ascending. */
LB_API lb_status lb_qtensor_encode(const lb_qtensor *q, uint8_t *out);
/* Unpacks packed bytes (the inverse of encode; q must be lb_qtensor_init'ed
 * with the same spec and shape). Bytes the family defines as corrupt (lut
 * levels not finite and ascending) fail with LB_ERR_FORMAT. */
LB_API lb_status lb_qtensor_decode(lb_qtensor *q, const uint8_t *data, size_t nbytes);

/* Hierarchical scales (uniform and kquant, spec.scale_bits = k > 0). Integer
 * range of a group scale: sym -2^(k-1)..2^(k-1)-1, asym 0..2^k-1; of a group
 * min: 0..2^k-1. Super-groups: super_rows whole rows (super_cols 0, the
 * uniform family's r<N>), or super_cols columns of one row (K-quants'
 * 256-weight blocks), numbered row by row. Either way a super-group's
 * groups are consecutive group indices. */
static inline int64_t lb_hscale_groups_per_super(const lb_qtensor *q) {
    return q->spec.super_cols ? q->spec.super_cols / q->group_len : q->spec.super_rows * q->groups_per_row;
}
static inline int64_t lb_qtensor_super(const lb_qtensor *q, int64_t k) {
    if (!q->spec.super_cols) return k / q->groups_per_row / q->spec.super_rows;
    int64_t per = lb_hscale_groups_per_super(q), per_row = (q->groups_per_row + per - 1) / per;
    return k / q->groups_per_row * per_row + k % q->groups_per_row / per;
}
/* the groups [*k0, *k1) of super-group b */
static inline void lb_hscale_super_span(const lb_qtensor *q, int64_t b, int64_t *k0, int64_t *k1) {
    int64_t per = lb_hscale_groups_per_super(q), end;
    if (q->spec.super_cols) {
        int64_t per_row = (q->groups_per_row + per - 1) / per, row = b / per_row;
        *k0 = row * q->groups_per_row + b % per_row * per;
        end = (row + 1) * q->groups_per_row;
    } else {
        *k0 = b * per;
        end = q->n_groups;
    }
    *k1 = *k0 + per < end ? *k0 + per : end;
}
static inline int lb_hscale_scale_min(const lb_qspec *s) { return s->zero == LB_ZERO_SYM ? -(1 << (s->scale_bits - 1)) : 0; }
static inline int lb_hscale_scale_max(const lb_qspec *s) {
    return s->zero == LB_ZERO_SYM ? (1 << (s->scale_bits - 1)) - 1 : (1 << s->scale_bits) - 1;
}
/* the integer a stored scale code means (sign-extended for sym) */
static inline int lb_hscale_int(const lb_qspec *s, unsigned code) {
    int k = s->scale_bits;
    return s->zero == LB_ZERO_SYM && (code >> (k - 1) & 1) ? (int)code - (1 << k) : (int)code;
}
/* Sets group k to scale integer sc and min integer mn (asym; ignored for sym)
 * under its super-group's super-scales, clamping both into range: scale[k]
 * and offset[k] become exactly the values dequantization computes. */
static inline void lb_hscale_set_group(lb_qtensor *q, int64_t k, int sc, int mn) {
    const lb_qspec *s = &q->spec;
    int64_t b = lb_qtensor_super(q, k);
    int lo = lb_hscale_scale_min(s), hi = lb_hscale_scale_max(s), mmax = (1 << s->scale_bits) - 1;
    sc = sc < lo ? lo : sc > hi ? hi : sc;
    mn = mn < 0 ? 0 : mn > mmax ? mmax : mn;
    q->scale_code[k] = (uint8_t)((unsigned)sc & ((1u << s->scale_bits) - 1u));
    q->scale[k] = q->super_scale[b] * (float)sc;
    if (s->zero == LB_ZERO_SYM) {
        q->offset[k] = 0.0f;
    } else {
        q->min_code[k] = (uint8_t)mn;
        q->offset[k] = q->super_min[b] * (float)mn;
    }
}

/* Trellis codes (src/formats/trellis.c). A sequence of T codes is a
 * circular stream; code i's value (before the scale) is
 * lb_trellis_1mad(state_i), state_i = the L/k codes ending at i (newest in
 * the low bits, indices mod T). A span of n weights (a group, or a padded
 * row) is cut into lb_trellis_segments(n) near-equal sequences of at most
 * LB_TRELLIS_MAX_SEQ; sequence i starts at *start and has *len weights. */
#define LB_TRELLIS_MAX_STATE 16
#define LB_TRELLIS_MAX_SEQ 256
LB_API float lb_trellis_1mad(uint32_t state);
LB_API int64_t lb_trellis_segments(int64_t n);
LB_API void lb_trellis_segment(int64_t n, int64_t i, int64_t *start, int64_t *len);
LB_API void lb_trellis_decode_seq(int L, int k, const uint8_t *codes, int64_t T, float *out);
/* Two values per step ("v2", V = 2): step t's code (K bits) shifts into
 * the state, and the state gives the pair lb_trellis_1mad2(state): the
 * 1MAD value of the state, and 1MAD's byte sum of the next step of the same
 * linear congruential generator (close to two iid N(0, 1): tests/
 * test_trellis.c). A span of n weights is cut into sequences of whole steps:
 * lb_trellis_step_segments(n, V) pieces of at most LB_TRELLIS_MAX_SEQ / V
 * steps over ceil(n / V) steps; *start and *len count weights (the last
 * step of an odd n has one real weight). V = 1 is lb_trellis_segment. */
LB_API void lb_trellis_1mad2(uint32_t state, float out[2]);
/* V of a trellis spec: its step_weights, 0 read as 1 */
static inline int lb_trellis_step_weights(const lb_qspec *s) { return s->step_weights == 2 ? 2 : 1; }
LB_API int64_t lb_trellis_step_segments(int64_t n, int V);
LB_API void lb_trellis_step_segment(int64_t n, int V, int64_t i, int64_t *start, int64_t *len);
/* The values of a circular stream of `steps` codes, V per step: out[0..V steps). */
LB_API void lb_trellis_decode_steps(int L, int k, int V, const uint8_t *codes, int64_t steps, float *out);

/* The E8P codebook (QuIP#; src/formats/e8p_lattice.c): 2^16 points of
 * E8 + 1/4 in 8 dimensions. code = source << 8 | signs << 1 | shift: source
 * indexes 256 vectors of positive half-integers (the 227 of D8 + 1/2 with
 * norm^2 <= 10, then 29 of norm^2 12), signs negate coordinates 1..7
 * (coordinate 0's sign is implied: the point before the shift lies in
 * D8 + 1/2, whose coordinates sum to an even number), shift adds +1/4 (1)
 * or -1/4 (0). lb_e8p_nearest is exact: the nearest of all 2^16 points to
 * x in squared error weighted by wt (NULL: 1). */
LB_API void lb_e8p_codeword(unsigned code, float out[8]);
LB_API unsigned lb_e8p_nearest(const float x[8], const float *wt);
/* A 1-bit-per-weight E8 codebook (the residual stage of QuIP#'s 3-bit
 * form): 256 points of E8 around 0: 0, the 240 roots (norm^2 2) and 15 of
 * the 16 points +-2 e_i (all but -2 e_7). Order in e8p_lattice.c; exact search. */
LB_API void lb_e8_ball_codeword(unsigned code, float out[8]);
LB_API unsigned lb_e8_ball_nearest(const float x[8], const float *wt);
#endif /* LB_ADVANCED_API */

/* Converts float data into a float family (f32/f16/bf16): no codes involved. */
LB_API lb_status lb_format_from_float(const lb_qspec *spec, const float *w, int64_t rows, int64_t cols,
                               uint8_t *out);

#ifdef __cplusplus
}
#endif
#endif
