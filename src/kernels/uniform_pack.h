/* The kernel layout of every uniform integer format (int1..int8, any group,
 * sym / asym fp16 offset / asym integer zero, hierarchical scales), built
 * once per tensor by lb_uniform_repack (uniform_pack.c) and read by
 * ref/uniform_ref.c and its SIMD twins.
 *
 * Every uniform layout is affine per group: w = a_g q + b_g with q the
 * unsigned code (sym: b = -a 2^(bits-1); fp16 offset: b = m; integer zero:
 * b = -a z; hierarchical: a = D sc, b = M mn or -a 2^(bits-1)). With int8
 * activations x ~ d_x xq per 32 columns, a group's part of a dot product is
 * d_x (a_g sum(q xq) + b_g sum(xq)), and sum(xq) per 16 columns is prepared
 * once per activation row (lb_act.s16). So the kernels need only the
 * integer dot products of codes with activations, plus per group (a, b).
 *
 * Codes: per 32 columns (a "chunk", rows padded to whole chunks with code 0,
 * which meets zero activations), 4*bits bytes split into planes so that a
 * chunk decodes to 32 bytes in column order with a few shifts and masks:
 *   nibble plane (16 bytes; bits 4..7): byte j = low 4 bits of codes j | j+16 << 4
 *   2-bit plane (8 bytes; bits 2, 3, 6, 7): byte j = 2 bits of codes j, j+8, j+16, j+24
 *   1-bit plane (4 bytes; bits 1, 3, 5, 7): bit i = 1 bit of code i
 * in that order, lowest bits first (3 = 2+1, 5 = 4+1, 6 = 4+2, 7 = 4+2+1).
 * 8 bits: 32 bytes of q ^ 0x80, i.e. q - 128 as int8 (so an int8 x int8
 * dot works without overflow; b becomes b + 128 a).
 *
 * Group parameters follow each row's codes, as compact as stored:
 *   SYM   fp16 a[G]                          b = -a 2^(bits-1)
 *   F16   fp16 a[G], fp16 m[G]               b = m
 *   ZINT  fp16 a[G], u8 z[G]                 b = -a z
 *   HSYM  fp32 D, int8 sc[G]                 a = D sc, b = -a 2^(bits-1)
 *   HASYM fp32 D, fp32 M, u8 sc[G], u8 mn[G] a = D sc, b = M mn
 * (G groups per row; fp32 D, M are the row's super-scales, copied per row
 * so a row is self-contained). Every a and b is exact in fp32 (an fp16
 * times an integer below 2^16), so the order of the float operations is
 * the only difference from dequantizing. The bytes read stay close to the
 * canonical layout's: the codes are the same bits, the parameters the same
 * size or a byte more per group. */
#ifndef LB_UNIFORM_PACK_H
#define LB_UNIFORM_PACK_H

#include <stdint.h>
#include <string.h>

#include "kernels/kernels.h"

enum { LB_UP_SYM, LB_UP_F16, LB_UP_ZINT, LB_UP_HSYM, LB_UP_HASYM };

typedef struct {
    int bits, kind;
    int hshift;       /* group of 16-column half h: h >> hshift (g16's padding half: groups) */
    int groups;       /* per row */
    int chunks;       /* 32-column chunks per row */
    int chunk_bytes;  /* 4 * bits */
    size_t row_bytes; /* codes + parameters */
    size_t codes_bytes;
} lb_upack;

/* the packed buffer: this header, then rows at LB_UPACK_ROWS */
#define LB_UPACK_ROWS 64

static inline const lb_upack *lb_upack_of(const lb_tensor *w) { return (const lb_upack *)w->packed; }
static inline const uint8_t *lb_upack_row(const lb_tensor *w, int64_t r) {
    const lb_upack *p = lb_upack_of(w);
    return (const uint8_t *)w->packed + LB_UPACK_ROWS + (size_t)r * p->row_bytes;
}

static inline float lb_upack_f32(const uint8_t *p) {
    float f;
    memcpy(&f, p, 4);
    return f;
}

/* a[j], b[j] of groups g0 + j < g1 of a packed row (8-bit codes: b + 128 a,
 * see above), then a zero sentinel at j = g1 - g0 (a g16 row's last chunk
 * may end in a padding half past the last group). The fp16 conversion is
 * passed in, so SIMD callers use their instruction. */
static inline void lb_upack_expand(const lb_upack *p, const uint8_t *row, int g0, int g1, float (*h2f)(uint16_t),
                                   float *a, float *b) {
    const uint8_t *par = row + p->codes_bytes;
    size_t G = (size_t)p->groups;
    float z = (float)(1 << (p->bits - 1)), D = 0.0f, M = 0.0f;
    int n = g1 - g0;
    switch (p->kind) {
    case LB_UP_SYM:
        for (int j = 0; j < n; j++) {
            a[j] = h2f(lb_rd16(par + 2 * (size_t)(g0 + j)));
            b[j] = -a[j] * z;
        }
        break;
    case LB_UP_F16:
        for (int j = 0; j < n; j++) {
            a[j] = h2f(lb_rd16(par + 2 * (size_t)(g0 + j)));
            b[j] = h2f(lb_rd16(par + 2 * G + 2 * (size_t)(g0 + j)));
        }
        break;
    case LB_UP_ZINT:
        for (int j = 0; j < n; j++) {
            a[j] = h2f(lb_rd16(par + 2 * (size_t)(g0 + j)));
            b[j] = -a[j] * (float)par[2 * G + (size_t)(g0 + j)];
        }
        break;
    case LB_UP_HSYM:
        D = lb_upack_f32(par);
        for (int j = 0; j < n; j++) {
            a[j] = D * (float)(int8_t)par[4 + g0 + j];
            b[j] = -a[j] * z;
        }
        break;
    default: /* LB_UP_HASYM */
        D = lb_upack_f32(par);
        M = lb_upack_f32(par + 4);
        for (int j = 0; j < n; j++) {
            a[j] = D * (float)par[8 + g0 + j];
            b[j] = M * (float)par[8 + G + (size_t)(g0 + j)];
        }
        break;
    }
    if (p->bits == 8) /* codes are stored as q - 128 */
        for (int j = 0; j < n; j++) b[j] += 128.0f * a[j];
    a[n] = b[n] = 0.0f;
}

/* Columns are walked in segments of LB_UPACK_SEG chunks, for which the group
 * parameters are expanded to floats first: at most 2 * LB_UPACK_SEG groups
 * (g16), and a segment is whole groups (2 * LB_UPACK_SEG halves is a
 * multiple of every group's 16 halves, and row groups are one group). */
#define LB_UPACK_SEG 64

/* the group of 16-column half h (row groups: 0) */
static inline int lb_upack_group_of(const lb_upack *p, int h) { return h >> p->hshift; }

/* cs[g] = sum over the halves h of group g of d_x(h) sum(xq over h), for
 * every group of one activation row, and cs[groups] = 0 (the sentinel; a
 * padding half's sum is 0 anyway): the activation side of the offsets,
 * formed once per activation row and call, not per weight row. */
static inline void lb_upack_act_sums(const lb_upack *p, const float *xd, const int16_t *s16, float *cs) {
    int halves = 2 * p->chunks, per = p->hshift >= 30 ? halves : 1 << p->hshift;
    for (int g = 0; g < p->groups; g++) {
        int h0 = g * per, h1 = h0 + per < halves ? h0 + per : halves;
        float t = 0.0f;
        for (int h = h0; h < h1; h++) t += xd[h >> 1] * (float)s16[h];
        cs[g] = t;
    }
    cs[p->groups] = 0.0f;
}

/* Groups per row the kernels take: the activation sums of 4 rows
 * (lb_upack_act_sums) live on the stack, 4 * (LB_UPACK_MAX_GROUPS + 1)
 * floats (g16: 32767 columns; larger groups proportionally more). */
#define LB_UPACK_MAX_GROUPS 2047

/* registry predicate: every uniform layout these kernels take */
int lb_uniform_kernel_accepts(const lb_qspec *s, const lb_layout *l);
lb_status lb_uniform_repack(const lb_tensor *w, void **out, size_t *bytes);

#endif
