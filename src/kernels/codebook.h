/* Block view of the 16-entry codebook formats (and ggml's Q8_0 / Q4_0) for
 * the integer kernels: a weight row is a run of 32-weight blocks, each met
 * by one LB_ACT_Q8_32 activation block. For block b of row r a kernel needs
 *   - 32 int8 values v[j] (the codebook entries as integers), and
 *   - a float scale s with weight[j] ~= s * v[j]
 * so that y = sum_b (s_b d_x[b]) sum_j v[j] q_x[b, j] (exact integer sums).
 * The scalar kernels (ref/codebook_ref.c) and the SIMD ones read the stored
 * (canonical) bytes through these helpers or their vector equivalents.
 *
 * Integer values per format (why they are exact or how far they are off):
 *   pow2 (3/4 bits): levels +-2^-(m-1), m = 1..2^(b-1)-1, so 64 * level is an
 *     integer in [-64, 64]: v = 64 * level exactly, s = scale / 64 (a power
 *     of two: exact). pow2:5 reaches 2^-14 and is left to the generic path.
 *   nf4: the levels are irrational quantiles, not integers at any scale.
 *     v = round(127 * NF4[q]), s = absmax / 127; the largest error over the
 *     16 levels is |v/127 - NF4[q]| <= LB_NF4_I8_ERR (0.00367 at q = 14,
 *     0.7229568 -> 92/127), i.e. at most 0.37% of the group's absmax per
 *     weight. That is the same kind and size of error as the int8 rounding
 *     of the activations the kernel already accepts (half a step of a
 *     127-step grid over the block's absmax), and about a tenth of NF4's own
 *     worst rounding error (half the 0.08 gap next to 0). The exact
 *     alternative (a 16-bit hi/lo split of each level, two dot products per
 *     block) would double the arithmetic per weight for an error that is
 *     already below the activation quantization's. Tests widen their bound
 *     by exactly this for the nf4 integer entries only (kernel_check.h).
 *   q8_0 / q4_0: the stored codes (q4_0: minus 8), s = the fp16 d.
 *   iq4_nl: ggml's integer table itself, s = the fp16 d (exact).
 *   mxfp4: E2M1 doubled (0..12, exact), s = 2^(e - 128), ggml's halved E8M0.
 *   (The last two are read by the uniform panel kernels only: uniform_pack.c.)
 *
 * Canonical layouts read (src/formats/nf4.c, pow2.c, ggml_blocks.h):
 *   nf4 group of G: [fp16 absmax][G/2 bytes: code j in the low nibble of
 *     byte j, code j + G/2 in the high nibble]; with dq no fp16, and the
 *     row's int8 scale codes follow its code bytes (absmax = c * s[k/256] +
 *     mean, s and mean in the tensor tail). Kernel blocks: G = 32 is Q4_0's
 *     block; G % 64 == 0 gives block c of a group from 32 bytes: the low
 *     nibbles of bytes 32c.. for c < G/64, else the high nibbles of bytes
 *     32 (c - G/64)..
 *   pow2:4 group of G: [fp16 scale][G/2 bytes, code 2i low nibble of byte
 *     i, code 2i + 1 high]: block c is 16 bytes at 2 + 16c.
 *   pow2:3 group of G: [fp16 scale][3G/8 bytes, a little-endian 3-bit
 *     stream]: block c is 12 bytes at 2 + 12c, code j at bits 3j..3j+2.
 * A group is a whole number of blocks (G % 32 == 0, cols_padded % 32 == 0),
 * so blocks line up with activation blocks. */
#ifndef LB_KERNELS_CODEBOOK_H
#define LB_KERNELS_CODEBOOK_H

#include <string.h>

#include "formats/format_internal.h"
#include "kernels/kernels.h"

/* max_q |round(127 NF4[q]) / 127 - NF4[q]| (q = 14), rounded up */
#define LB_NF4_I8_ERR 0.0036711f

/* round(127 * NF4[q]) */
static const int8_t lb_nf4_i8[16] = {-127, -88, -67, -50, -36, -23, -12, 0, 10, 20, 31, 43, 56, 71, 92, 127};

/* 64 * pow2 level of a 4-bit code (sign bit 3, magnitude m in bits 0-2); a
 * 3-bit code (sign bit 2, m in bits 0-1) reads the same table after moving
 * its sign bit to bit 3 */
static const int8_t lb_pow2_i8[16] = {0, 64, 32, 16, 8, 4, 2, 1, 0, -64, -32, -16, -8, -4, -2, -1};

typedef enum {
    LB_CB_Q8_0,
    LB_CB_Q4_0,
    LB_CB_NF4_32,
    LB_CB_NF4_64,
    LB_CB_POW2_4,
    LB_CB_POW2_3,
    LB_CB_IQ4NL, /* ggml's IQ4_NL: [fp16 d][16 bytes as nf4 g32], v = kvalues_iq4nl[q] exactly */
    LB_CB_MXFP4  /* ggml's MXFP4: [E8M0 e][16 bytes as nf4 g32], v = 2 E2M1[q], s = 2^(e - 128) exactly */
} lb_cb_kind;

typedef struct {
    lb_cb_kind kind;
    const uint8_t *data;
    size_t rb;       /* bytes per row */
    int nb;          /* blocks per row */
    int bpg, lg;     /* blocks per group; log2(bpg) when groups_per_row > 1, else -1 (one group) */
    int gpr;         /* groups per row */
    size_t gb;       /* bytes per group (without nf4:dq's scale code) */
    int hb;          /* bytes before a group's codes: 2 (fp16 scale) or 0 (nf4:dq) */
    int dq;          /* nf4 double quantization */
    size_t dq_off;   /* nf4:dq: offset of the row's scale codes */
    const uint8_t *tail;
    float k;         /* s = scale * k */
} lb_cb;

static inline lb_cb lb_cb_of(const lb_tensor *w, lb_cb_kind kind) {
    const lb_layout *l = &w->layout;
    lb_cb c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.data = w->data;
    c.rb = l->row_bytes;
    c.nb = (int)(l->cols_padded / 32);
    c.gpr = (int)(l->groups_per_row ? l->groups_per_row : 1);
    c.bpg = (int)(l->group_len / 32);
    c.lg = -1;
    if (c.gpr > 1)
        for (c.lg = 0; (1 << c.lg) < c.bpg; c.lg++) {}
    c.dq = w->spec.double_quant;
    c.hb = c.dq ? 0 : 2;
    c.tail = w->data + (size_t)l->rows * l->row_bytes;
    switch (kind) {
    case LB_CB_Q8_0: c.gb = 34; c.k = 1.0f; break;
    case LB_CB_Q4_0: c.gb = 18; c.k = 1.0f; break;
    case LB_CB_NF4_32:
    case LB_CB_NF4_64: c.gb = (size_t)c.hb + (size_t)l->group_len / 2; c.k = 1.0f / 127.0f; break;
    case LB_CB_POW2_4: c.gb = 2 + (size_t)l->group_len / 2; c.k = 1.0f / 64.0f; break;
    case LB_CB_POW2_3: c.gb = 2 + (size_t)l->group_len * 3 / 8; c.k = 1.0f / 64.0f; break;
    case LB_CB_IQ4NL: c.gb = 18; c.k = 1.0f; break;
    case LB_CB_MXFP4: c.gb = 17; c.hb = 1; c.k = 1.0f; break;
    }
    c.dq_off = (size_t)c.gpr * c.gb;
    return c;
}

static inline int lb_cb_group(const lb_cb *c, int b) { return c->lg < 0 ? 0 : b >> c->lg; }
static inline int lb_cb_in_group(const lb_cb *c, int b) { return c->lg < 0 ? b : b & (c->bpg - 1); }

static inline float lb_cb_rd_f32(const uint8_t *p) {
    uint32_t u = lb_rd32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* nf4:dq: s of group g of row r, c * s[k / 256] + mean (times k) */
static inline float lb_cb_dq_scale(const lb_cb *c, const uint8_t *row, int r, int g) {
    int64_t k = (int64_t)r * c->gpr + g;
    float absmax = (float)(int8_t)row[c->dq_off + (size_t)g] * lb_cb_rd_f32(c->tail + 4 + 4 * (size_t)(k / 256)) +
                   lb_cb_rd_f32(c->tail);
    return absmax * c->k;
}

/* s of block b of row r (row = its bytes); the SIMD files convert the fp16
 * with F16C instead (codebook_x86.h), the same value */
static inline float lb_cb_scale(const lb_cb *c, const uint8_t *row, int r, int b) {
    int g = lb_cb_group(c, b);
    if (c->dq) return lb_cb_dq_scale(c, row, r, g);
    if (c->kind == LB_CB_MXFP4) return lb_e8m0_half(row[(size_t)g * c->gb]);
    return lb_fp16_to_fp32(lb_rd16(row + (size_t)g * c->gb)) * c->k;
}

/* where block b's code bytes start */
static inline const uint8_t *lb_cb_codes_at(const lb_cb *c, lb_cb_kind kind, const uint8_t *row, int b) {
    const uint8_t *grp = row + (size_t)lb_cb_group(c, b) * c->gb + c->hb;
    int in = lb_cb_in_group(c, b);
    switch (kind) {
    case LB_CB_NF4_64: return grp + 32 * (size_t)(in < c->bpg / 2 ? in : in - c->bpg / 2);
    case LB_CB_POW2_4: return grp + 16 * (size_t)in;
    case LB_CB_POW2_3: return grp + 12 * (size_t)in;
    default: return grp; /* one block per group */
    }
}

/* nf4 G % 64 == 0: block b takes the high nibbles */
static inline int lb_cb_high(const lb_cb *c, int b) { return lb_cb_in_group(c, b) >= c->bpg / 2; }

/* block b's 32 integer values, scalar */
static inline void lb_cb_values(const lb_cb *c, const uint8_t *row, int b, int8_t v[32]) {
    const uint8_t *p = lb_cb_codes_at(c, c->kind, row, b);
    for (int j = 0; j < 32; j++) {
        switch (c->kind) {
        case LB_CB_Q8_0: v[j] = (int8_t)p[j]; break;
        case LB_CB_Q4_0: v[j] = (int8_t)((j < 16 ? p[j] & 15 : p[j - 16] >> 4) - 8); break;
        case LB_CB_NF4_32: v[j] = lb_nf4_i8[j < 16 ? p[j] & 15 : p[j - 16] >> 4]; break;
        case LB_CB_IQ4NL: v[j] = lb_iq4_values[j < 16 ? p[j] & 15 : p[j - 16] >> 4]; break;
        case LB_CB_MXFP4: v[j] = lb_mxfp4_values[j < 16 ? p[j] & 15 : p[j - 16] >> 4]; break;
        case LB_CB_NF4_64: v[j] = lb_nf4_i8[lb_cb_high(c, b) ? p[j] >> 4 : p[j] & 15]; break;
        case LB_CB_POW2_4: v[j] = lb_pow2_i8[j & 1 ? p[j / 2] >> 4 : p[j / 2] & 15]; break;
        case LB_CB_POW2_3: {
            unsigned q = lb_get_bits(p, (uint64_t)(3 * j), 3);
            v[j] = lb_pow2_i8[(q & 3) | (q & 4) << 1];
            break;
        }
        }
    }
}

/* Predicates: the layouts above (rows a whole number of 32-blocks) */
static inline int lb_cb_nf4_kind(const lb_qspec *s, const lb_layout *l) {
    if (s->family != LB_FAMILY_NF4 || l->cols_padded % 32 || l->tail_bytes != (s->double_quant ? 4 + 4 * (size_t)((l->n_groups + 255) / 256) : 0))
        return -1;
    if (l->group_len == 32) return LB_CB_NF4_32;
    if (l->group_len % 64 == 0) return LB_CB_NF4_64;
    return -1;
}

/* iq4_nl and mxfp4 as ggml stores them (their families pad rows to whole blocks) */
static inline int lb_cb_table4_kind(const lb_qspec *s, const lb_layout *l) {
    if (l->group_len != 32 || l->cols_padded % 32 || l->tail_bytes) return -1;
    if (!strcmp(s->family->name, "iq4") && s->ggml_type == 20) return LB_CB_IQ4NL;
    if (!strcmp(s->family->name, "fp4") && s->ggml_type == 39) return LB_CB_MXFP4;
    return -1;
}

/* the int8 table of a 16-entry kind */
static inline const int8_t *lb_cb_table4(lb_cb_kind kind) {
    switch (kind) {
    case LB_CB_NF4_32:
    case LB_CB_NF4_64: return lb_nf4_i8;
    case LB_CB_IQ4NL: return lb_iq4_values;
    case LB_CB_MXFP4: return lb_mxfp4_values;
    default: return lb_pow2_i8;
    }
}

static inline int lb_cb_pow2_kind(const lb_qspec *s, const lb_layout *l) {
    if (strcmp(s->family->name, "pow2") || l->cols_padded % 32 || l->group_len % 32 || l->tail_bytes) return -1;
    if (s->bits == 4) return LB_CB_POW2_4;
    if (s->bits == 3) return LB_CB_POW2_3;
    return -1;
}

#endif
