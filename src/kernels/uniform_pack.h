/* The kernel layout of every uniform integer format (int1..int8, any group,
 * sym / asym fp16 offset / asym integer zero, hierarchical scales), built
 * once per tensor by lb_uniform_repack (uniform_pack.c) and read by
 * ref/uniform_ref.c and its SIMD twins (uniform_tile.h).
 *
 * Every uniform layout is affine per group: w = a_g q + b_g with q the
 * unsigned code (sym: b = -a 2^(bits-1); fp16 offset: b = m; integer zero:
 * b = -a z; hierarchical: a = D sc, b = M mn or -a 2^(bits-1)). With int8
 * activations x ~ d_x xq per 32 columns, a group's part of a dot product is
 * a_g sum_chunks d_x sum(q xq) + b_g cs_g, where cs_g = sum over the group's
 * 16-column halves of d_x sum(xq) comes from the prepared half-sums
 * (lb_act.s16) once per activation row. So the kernels need only integer
 * dot products of codes with activations, plus per group (a, b).
 *
 * Rows go in panels of 16 (LB_UPACK_PANEL; the last padded with rows of
 * code 0 and parameters 0). Per panel and 32-column chunk the 512 codes form
 * 8 units: unit k holds columns 4k..4k+3 of the 16 rows, byte 4r + j =
 * (row r, column 4k + j), 64 bytes. A unit against one activation row is
 * then 16 dot products of 4 bytes with the same 4 activation bytes: a
 * broadcast and one vpdpbusd (or vpmaddubsw + vpmaddwd on two halves of 8
 * rows), with the 16 int32 lanes = the 16 rows: no horizontal sums, and the
 * group parameters of the 16 rows are one vector load. A chunk is
 * 64 * bits bytes in planes, lowest bits first (3 = 2+1, 5 = 4+1, 6 = 4+2,
 * 7 = 4+2+1), each laid out so that one 64-byte load (or two 32-byte
 * loads, rows 0-7 and 8-15) and a shift and a mask give whole units:
 *   nibble plane (256 bytes): bytes [64m, 64m + 64), m = 0..3, hold unit m
 *     in their low nibbles and unit m + 4 in their high nibbles;
 *   2-bit plane (128 bytes): bytes [64m, 64m + 64), m = 0, 1, hold unit
 *     2s + m in bits 2s, 2s + 1 (s = 0..3);
 *   1-bit plane (64 bytes): the little-endian 64-bit word k holds unit k,
 *     bit i = byte i (an AVX-512 mask register as it is);
 *   8 bits: unit k is bytes [64k, 64k + 64) of q ^ 0x80, i.e. q - 128 as
 *     int8 (so an int8 x int8 dot cannot overflow; b becomes b + 128 a).
 *
 * A panel is its super-scales (hierarchical only), then blocks: the
 * parameters of k consecutive groups followed by those groups' chunks, so a
 * panel is read as one sequential stream. k (1, 2 or 4) makes the parameters
 * whole 64-byte lines (k >= 2 for g16, whose chunks hold two groups; row
 * groups: k = 1, padded to 64), so every chunk starts on a line. The
 * parameters of a group, the 16 rows side by side:
 *   SYM   fp16 a[16]                   b = -a 2^(bits-1)             k = 2
 *   F16   fp16 a[16], fp16 m[16]       b = m                         k = 1 (g16: 2)
 *   ZINT  fp16 a[16], u8 z[16]         b = -a z                      k = 4
 *   HSYM  int8 sc[16]                  a = D sc, b = -a 2^(bits-1)   k = 4
 *   HASYM u8 sc[16], u8 mn[16]         a = D sc, b = M mn            k = 2
 *   TERN  fp16 alpha[16]                a = alpha, b = -alpha         k = 2
 *   BIN   fp16 alpha[16]                a = 2 alpha, b = -alpha       k = 2
 *   TABLE fp32 s[16]                    a = s, b = 0                  k = 1
 * TABLE is the 16-entry codebooks (nf4, pow2:3/4; kernels/codebook.h): the
 * codes index lb_upack.table, int8 values v with w ~= s v (the same v and s
 * as codebook.h's blocks, so the same bound), and the dot products are of
 * signed values (as for 8-bit codes).
 * with the super-scales fp32 D[16] (HSYM), D[16] and M[16] (HASYM) first.
 * (D, M: each row's super-scales, copied per row so a panel is
 * self-contained). Every a and b is exact in fp32 (an fp16 times an integer
 * below 2^16), so the order of the float operations is the only difference
 * from dequantizing. The codes are the same bits as the canonical layout's,
 * the parameters the same size (hierarchical: super-scales per row), plus
 * the last panel's padding rows and up to 63 bytes per panel. */
#ifndef LB_UNIFORM_PACK_H
#define LB_UNIFORM_PACK_H

#include <stdint.h>
#include <string.h>

#include "kernels/kernels.h"

enum { LB_UP_SYM, LB_UP_F16, LB_UP_ZINT, LB_UP_HSYM, LB_UP_HASYM, LB_UP_TERN, LB_UP_BIN, LB_UP_TABLE, LB_UP_KINDS };

#define LB_UPACK_PANEL 16 /* rows per panel: a divisor of matmul.c's ROW_TILE */

typedef struct {
    int bits, kind;
    int hshift;         /* group of 16-column half h: h >> hshift (row groups: 30) */
    int groups;         /* per row */
    int chunks;         /* 32-column chunks per row */
    int chunk_bytes;    /* 64 * bits: one chunk of a panel */
    int group_bytes;    /* one group's parameters of a panel */
    int head_bytes;     /* a panel's super-scales before its blocks (hierarchical) */
    int block_shift;    /* k = 1 << block_shift groups per block */
    size_t block_bytes; /* parameters of k groups + their chunks */
    size_t panel_bytes; /* head + blocks, rounded up to 64 */
    int8_t table[16];   /* TABLE: the value of each code */
} lb_upack;

/* the packed buffer: this header, then panels at LB_UPACK_HEAD */
#define LB_UPACK_HEAD 128
_Static_assert(sizeof(lb_upack) <= LB_UPACK_HEAD, "lb_upack must fit the packed buffer's header");

static inline const lb_upack *lb_upack_of(const lb_tensor *w) { return (const lb_upack *)w->packed; }
static inline const uint8_t *lb_upack_panel(const lb_tensor *w, int64_t panel) {
    const lb_upack *p = lb_upack_of(w);
    return (const uint8_t *)w->packed + LB_UPACK_HEAD + (size_t)panel * p->panel_bytes;
}

/* the group of 16-column half h (row groups: 0), and group g's chunks */
static inline int lb_upack_group_of(const lb_upack *p, int h) { return h >> p->hshift; }
static inline void lb_upack_group_chunks(const lb_upack *p, int g, int *c0, int *c1) {
    if (p->hshift >= 30) {
        *c0 = 0;
        *c1 = p->chunks;
        return;
    }
    int h0 = g << p->hshift, h1 = h0 + (1 << p->hshift);
    *c0 = h0 >> 1;
    *c1 = (h1 + 1) >> 1;
    if (*c1 > p->chunks) *c1 = p->chunks; /* a last group cut short by the row (ternary, binary) */
}

/* group g's parameters in a panel, and chunk c's codes */
static inline const uint8_t *lb_upack_group(const lb_upack *p, const uint8_t *panel, int g) {
    return panel + p->head_bytes + (size_t)(g >> p->block_shift) * p->block_bytes +
           (size_t)(g & ((1 << p->block_shift) - 1)) * (size_t)p->group_bytes;
}
static inline const uint8_t *lb_upack_chunk(const lb_upack *p, const uint8_t *panel, int c) {
    if (p->hshift >= 30) return panel + p->head_bytes + (size_t)p->group_bytes + (size_t)c * (size_t)p->chunk_bytes;
    int b = lb_upack_group_of(p, 2 * c) >> p->block_shift;
    int first = ((b << p->block_shift) << p->hshift) >> 1; /* the block's first chunk */
    return panel + p->head_bytes + (size_t)b * p->block_bytes + ((size_t)p->group_bytes << p->block_shift) +
           (size_t)(c - first) * (size_t)p->chunk_bytes;
}

/* The code of row r (0..15) of a panel at column j (0..31) of a chunk:
 * unsigned, or q - 128 as int8 for 8 bits. Written once here, read by the
 * reference; the repacking writes the same bits (uniform_pack.c). */
static inline int lb_upack_code(int bits, const uint8_t *chunk, int r, int j) {
    int k = j >> 2, i = 4 * r + (j & 3), v = 0, shift = 0;
    if (bits == 8) return (int8_t)chunk[64 * k + i];
    if (bits >= 4) {
        v = chunk[64 * (k & 3) + i] >> (4 * (k >> 2)) & 15;
        chunk += 256;
        shift = 4;
    }
    if ((bits - shift) & 2) {
        v |= (chunk[64 * (k & 1) + i] >> (2 * (k >> 1)) & 3) << shift;
        chunk += 128;
        shift += 2;
    }
    if ((bits - shift) & 1) v |= (chunk[8 * k + (i >> 3)] >> (i & 7) & 1) << shift;
    return v;
}

static inline float lb_upack_f32(const uint8_t *p) {
    float f;
    memcpy(&f, p, 4);
    return f;
}

/* a and b of row r (0..15) of a panel for group g (8-bit codes: b + 128 a,
 * see above); the reference's view of what the SIMD twins load as vectors */
static inline void lb_upack_param(const lb_upack *p, const uint8_t *panel, int r, int g, float *a, float *b) {
    const uint8_t *gp = lb_upack_group(p, panel, g);
    float z = (float)(1 << (p->bits - 1));
    switch (p->kind) {
    case LB_UP_SYM:
        *a = lb_fp16_to_fp32(lb_rd16(gp + 2 * r));
        *b = -*a * z;
        break;
    case LB_UP_F16:
        *a = lb_fp16_to_fp32(lb_rd16(gp + 2 * r));
        *b = lb_fp16_to_fp32(lb_rd16(gp + 32 + 2 * r));
        break;
    case LB_UP_ZINT:
        *a = lb_fp16_to_fp32(lb_rd16(gp + 2 * r));
        *b = -*a * (float)gp[32 + r];
        break;
    case LB_UP_HSYM:
        *a = lb_upack_f32(panel + 4 * r) * (float)(int8_t)gp[r];
        *b = -*a * z;
        break;
    case LB_UP_HASYM:
        *a = lb_upack_f32(panel + 4 * r) * (float)gp[r];
        *b = lb_upack_f32(panel + 64 + 4 * r) * (float)gp[16 + r];
        break;
    case LB_UP_TERN:
        *a = lb_fp16_to_fp32(lb_rd16(gp + 2 * r));
        *b = -*a;
        break;
    case LB_UP_BIN:
        *b = -lb_fp16_to_fp32(lb_rd16(gp + 2 * r));
        *a = -2.0f * *b;
        break;
    default: /* LB_UP_TABLE */
        *a = lb_upack_f32(gp + 4 * r);
        *b = 0.0f;
        break;
    }
    if (p->bits == 8) *b += 128.0f * *a; /* codes are stored as q - 128 */
}

/* cs[g] = sum over the halves h of group g of d_x(h) sum(xq over h), for
 * every group of one activation row: the activation side of the offsets,
 * formed once per activation row and call, not per weight row. */
static inline void lb_upack_act_sums(const lb_upack *p, const float *xd, const int16_t *s16, float *cs) {
    int halves = 2 * p->chunks, per = p->hshift >= 30 ? halves : 1 << p->hshift;
    for (int g = 0; g < p->groups; g++) {
        int h0 = g * per, h1 = h0 + per < halves ? h0 + per : halves;
        float t = 0.0f;
        for (int h = h0; h < h1; h++) t += xd[h >> 1] * (float)s16[h];
        cs[g] = t;
    }
}

/* Groups per row the kernels take: the activation sums of a tile of up to
 * LB_UPACK_MAX_ACT activation rows live on the stack (32 KiB; g16: 16368
 * columns, larger groups proportionally more). */
#define LB_UPACK_MAX_GROUPS 1023
#define LB_UPACK_MAX_ACT 8

/* registry predicate: every uniform layout these kernels take */
int lb_uniform_kernel_accepts(const lb_qspec *s, const lb_layout *l);
lb_status lb_uniform_repack(const lb_tensor *w, void **out, size_t *bytes);

#endif
