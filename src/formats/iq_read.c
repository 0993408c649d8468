/* llama.cpp's codebook ("i-quant") types, read (issue 10 item 3): one
 * 256-weight block of IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S or
 * IQ1_M to floats, as ggml stores them (ggml-common.h's block_iq*). The
 * read-only family (ggml_read.c) holds their rows; the grids are ggml's
 * tables (iq_grids.c). Each block is 8 sub-blocks of 32 weights, each of 4
 * groups of 8 (iq3: two grid entries of 4 per group); d is the fp16 block
 * scale, G[i] grid entry i, s a group's sign byte (bit j negates value j),
 * S[k] ggml's ksigns_iq2xs (7 stored sign bits, the 8th their parity).
 * Multi-byte fields are little-endian.
 *
 *   iq2_xxs (66 B)  d, then per sub-block 8 bytes: 4 grid indices (one per
 *                   group), a uint32 whose bits 7l.. are group l's S index
 *                   and bits 28..31 the scale a: w = d (0.5 + a) / 4 G[i]_j (+-)
 *   iq2_xs (74 B)   d, 32 uint16 (9-bit index, 7-bit S index), 8 bytes of two
 *                   4-bit scales (low: groups 0-1, high: 2-3); w as iq2_xxs
 *   iq2_s (82 B)    d, 32 index bytes, 32 sign bytes s, 8 bytes qh (bits 2l..
 *                   2l+1: group l's index bits 8-9), 8 scale bytes as iq2_xs
 *   iq3_xxs (98 B)  d, 64 index bytes (two per group), 8 uint32 as iq2_xxs's:
 *                   w = d (0.5 + a) / 2 G[i]_j (+-)
 *   iq3_s (110 B)   d, 64 index bytes, 8 bytes qh (bit k: bit 8 of the
 *                   sub-block's index k), 32 sign bytes s, 4 bytes of two
 *                   4-bit scales a (sub-blocks 2m, 2m + 1): w = d (1 + 2a) G[i]_j (+-)
 *   iq1_s (50 B)    d, 32 index bytes, 8 uint16 (bits 3l..3l+2: group l's
 *                   index bits 8-10, 12..14 the scale a, 15 the sign of
 *                   delta): w = d (2a + 1) (G[i]_j + delta), delta = +-1/8
 *   iq1_m (56 B)    32 index bytes, 16 qh bytes (per group a nibble: index
 *                   bits 8-10, bit 3 the sign of delta), 8 bytes as 4 uint16:
 *                   per sub-block two 3-bit scales (groups 0-1, 2-3), and the
 *                   top nibbles of the four together the fp16 d; w as iq1_s
 *
 * The float arithmetic follows ggml's dequantize_row_iq* (the same products
 * in the same order: the sub-block scale first, then times the grid value,
 * then the sign as a factor of -1 or 1), so the values are ggml's bit for
 * bit (scripts/ggml_dequant_check.c). */
#include "format_internal.h"

static float f16(const uint8_t *p) { return lb_fp16_to_fp32(lb_rd16(p)); }

/* one group of 8: values lo[0..3] then hi[0..3] under db, value j negated
 * when bit j of signs is set (ggml multiplies by -1) */
static void signed_group(float db, const uint8_t *lo, const uint8_t *hi, unsigned signs, float *y) {
    for (int j = 0; j < 8; j++) y[j] = db * (float)(j < 4 ? lo[j] : hi[j - 4]) * (signs >> j & 1 ? -1.0f : 1.0f);
}

/* iq2_xs / iq2_s: the two scales of sub-block byte sc */
static void iq2_scales(float d, unsigned sc, float db[2]) {
    db[0] = d * (0.5f + (float)(sc & 15)) * 0.25f;
    db[1] = d * (0.5f + (float)(sc >> 4)) * 0.25f;
}

void lb_iq2_xxs_block(const uint8_t *b, float *y) {
    const lb_iq_grids *G = lb_iq_grid_tables();
    float d = f16(b);
    for (int ib = 0; ib < 8; ib++, y += 32) {
        const uint8_t *q = b + 2 + 8 * ib;
        uint32_t aux = lb_rd32(q + 4);
        float db = d * (0.5f + (float)(aux >> 28)) * 0.25f;
        for (int l = 0; l < 4; l++) {
            const uint8_t *g = G->iq2xxs[q[l]];
            signed_group(db, g, g + 4, G->signs[aux >> 7 * l & 127], y + 8 * l);
        }
    }
}

void lb_iq2_xs_block(const uint8_t *b, float *y) {
    const lb_iq_grids *G = lb_iq_grid_tables();
    float d = f16(b), db[2];
    for (int ib = 0; ib < 8; ib++, y += 32) {
        iq2_scales(d, b[66 + ib], db);
        for (int l = 0; l < 4; l++) {
            unsigned q = lb_rd16(b + 2 + 2 * (4 * ib + l));
            const uint8_t *g = G->iq2xs[q & 511];
            signed_group(db[l / 2], g, g + 4, G->signs[q >> 9], y + 8 * l);
        }
    }
}

void lb_iq2_s_block(const uint8_t *b, float *y) {
    const lb_iq_grids *G = lb_iq_grid_tables();
    float d = f16(b), db[2];
    for (int ib = 0; ib < 8; ib++, y += 32) {
        iq2_scales(d, b[74 + ib], db);
        for (int l = 0; l < 4; l++) {
            unsigned i = b[2 + 4 * ib + l] | (b[66 + ib] >> 2 * l & 3u) << 8;
            const uint8_t *g = G->iq2s[i];
            signed_group(db[l / 2], g, g + 4, b[34 + 4 * ib + l], y + 8 * l);
        }
    }
}

void lb_iq3_xxs_block(const uint8_t *b, float *y) {
    const lb_iq_grids *G = lb_iq_grid_tables();
    float d = f16(b);
    for (int ib = 0; ib < 8; ib++, y += 32) {
        const uint8_t *q = b + 2 + 8 * ib;
        uint32_t aux = lb_rd32(b + 66 + 4 * ib);
        float db = d * (0.5f + (float)(aux >> 28)) * 0.5f;
        for (int l = 0; l < 4; l++)
            signed_group(db, G->iq3xxs[q[2 * l]], G->iq3xxs[q[2 * l + 1]], G->signs[aux >> 7 * l & 127], y + 8 * l);
    }
}

void lb_iq3_s_block(const uint8_t *b, float *y) {
    const lb_iq_grids *G = lb_iq_grid_tables();
    float d = f16(b);
    for (int ib = 0; ib < 8; ib++, y += 32) {
        const uint8_t *q = b + 2 + 8 * ib;
        unsigned qh = b[66 + ib];
        float db = d * (float)(1 + 2 * (b[106 + ib / 2] >> 4 * (ib & 1) & 15));
        for (int l = 0; l < 4; l++) {
            unsigned i1 = q[2 * l] | (qh >> 2 * l & 1u) << 8, i2 = q[2 * l + 1] | (qh >> (2 * l + 1) & 1u) << 8;
            signed_group(db, G->iq3s[i1], G->iq3s[i2], b[74 + 4 * ib + l], y + 8 * l);
        }
    }
}

/* iq1_s / iq1_m: one group of 8 under dl, shifted by delta before scaling */
static void shifted_group(float dl, const int8_t *g, float delta, float *y) {
    for (int j = 0; j < 8; j++) y[j] = dl * ((float)g[j] + delta);
}

void lb_iq1_s_block(const uint8_t *b, float *y) {
    const lb_iq_grids *G = lb_iq_grid_tables();
    float d = f16(b);
    for (int ib = 0; ib < 8; ib++, y += 32) {
        unsigned h = lb_rd16(b + 34 + 2 * ib);
        float dl = d * (float)(2 * (h >> 12 & 7) + 1), delta = h & 0x8000 ? -0.125f : 0.125f;
        for (int l = 0; l < 4; l++)
            shifted_group(dl, G->iq1s[b[2 + 4 * ib + l] | (h >> 3 * l & 7) << 8], delta, y + 8 * l);
    }
}

void lb_iq1_m_block(const uint8_t *b, float *y) {
    const lb_iq_grids *G = lb_iq_grid_tables();
    unsigned sc[4];
    for (int k = 0; k < 4; k++) sc[k] = lb_rd16(b + 48 + 2 * k);
    unsigned dh = sc[0] >> 12 | (sc[1] >> 8 & 0x00f0) | (sc[2] >> 4 & 0x0f00) | (sc[3] & 0xf000);
    float d = lb_fp16_to_fp32((uint16_t)dh);
    for (int ib = 0; ib < 8; ib++, y += 32) {
        unsigned s = sc[ib / 2] >> 6 * (ib & 1);
        float dl[2] = {d * (float)(2 * (s & 7) + 1), d * (float)(2 * (s >> 3 & 7) + 1)};
        for (int l = 0; l < 4; l++) {
            unsigned h = b[32 + 2 * ib + l / 2] >> 4 * (l & 1) & 15;
            shifted_group(dl[l / 2], G->iq1s[b[4 * ib + l] | (h & 7) << 8], h & 8 ? -0.125f : 0.125f, y + 8 * l);
        }
    }
}
