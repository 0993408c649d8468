/* Binary weights by table lookup (T-MAC's idea, our own code), scalar: the
 * specification of the SIMD twin, plus the activation tables and the
 * weight repacking both use (kernels/lowbin.h, LB_LOWBIN_B1_LUT).
 *
 * For each 4 activation columns a0..a3 (int8, LB_ACT_Q8_32 codes) the 16
 * possible signed sums t[i] = sum_j (bit j of i ? a_j : -a_j) are built once
 * per activation row; a binary weight row then needs one lookup per 4
 * columns, with its 4 bits as the index. |t| <= 508, so entries are int16,
 * kept as a low-byte and a high-byte table (vpshufb looks up bytes). The
 * integer sum per 32-column block is exactly the int8 kernel's
 * sum_j (2 bit_j - 1) a_j, and
 *   y = sum_b isum_b * (alpha_g(b) * d_x[b])   in block order. */
#include <string.h>

#include "kernels/lowbin.h"

void lb_act_lut_row_ref(const int8_t *q, int ld, uint8_t *tab) {
    for (int k = 0; k < ld / 4; k++) {
        const int8_t *a = q + 4 * k;
        uint8_t *e = tab + lb_lut_offset(k);
        for (int i = 0; i < 16; i++) {
            int t = 0;
            for (int j = 0; j < 4; j++) t += (i >> j & 1) ? a[j] : -a[j];
            e[i] = (uint8_t)(t & 0xFF);
            e[64 + i] = (uint8_t)((t >> 8) & 0xFF);
        }
    }
}

void lb_act_lut3_row_ref(const int8_t *q, int ld, uint8_t *tab) {
    for (int k = 0; k < ld / 2; k++) {
        const int8_t *a = q + 2 * k;
        uint8_t *e = tab + lb_lut_offset(k);
        for (int i = 0; i < 9; i++) {
            int t = (i / 3 - 1) * a[0] + (i % 3 - 1) * a[1];
            e[i] = (uint8_t)(t & 0xFF);
            e[64 + i] = (uint8_t)((t >> 8) & 0xFF);
        }
        for (int i = 9; i < 16; i++) e[i] = e[64 + i] = 0;
    }
}

lb_status lb_lut_repack(const lb_tensor *w, void **out, size_t *bytes) {
    const lb_layout *l = &w->layout;
    if (!lb_lowbin_is_binary(&w->spec, l))
        return lb_fail(LB_ERR_INVALID, "tensor '%s' is not binary with block groups", w->name);
    /* the plain binary repacking gives the bits and scales to read from */
    void *plain = NULL;
    size_t plain_bytes = 0;
    lb_status st = lb_lowbin_repack(w, &plain, &plain_bytes);
    if (st != LB_OK) return st;
    const lb_lowbin_pack *pp = plain;
    lb_lowbin_pack p = *pp;
    p.kind = LB_LOWBIN_B1_LUT;
    p.row_bytes = (size_t)p.nb * 64;
    size_t tiles = (size_t)(l->rows + 15) / 16;
    p.scale_off = 64;
    p.code_off = (p.scale_off + tiles * (size_t)p.spr * 16 * 2 + 63) / 64 * 64;
    *bytes = p.code_off + tiles * p.row_bytes;
    uint8_t *buf = lb_calloc(1, *bytes);
    if (!buf) {
        lb_free(plain);
        return lb_fail(LB_ERR_NOMEM, "out of memory repacking '%s'", w->name);
    }
    memcpy(buf, &p, sizeof p);
    const uint16_t *src_sc = (const uint16_t *)((const uint8_t *)plain + pp->scale_off);
    uint16_t *sc = (uint16_t *)(buf + p.scale_off);
    for (int64_t r = 0; r < l->rows; r++) {
        const uint8_t *bits = (const uint8_t *)plain + pp->code_off + (size_t)r * pp->row_bytes;
        size_t t = (size_t)r / 16, i = (size_t)r % 16;
        for (int g = 0; g < p.spr; g++) sc[(t * (size_t)p.spr + (size_t)g) * 16 + i] = src_sc[(size_t)r * p.spr + g];
        uint8_t *tile = buf + p.code_off + t * p.row_bytes;
        for (int pr = 0; pr < p.nb * 4; pr++) /* bits past cols are 0 in the plain layout */
            tile[(size_t)pr * 16 + i] = bits[pr];
    }
    lb_free(plain);
    *out = buf;
    return LB_OK;
}

/* gcols: columns per table (4 binary, 2 ternary) */
static void lut_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, int gcols) {
    const lb_lowbin_pack *p = lb_lowbin(w);
    const int slots = 32 / (2 * gcols); /* 16-byte pair slots per block */
    const uint16_t *sc = lb_lowbin_scales(w);
    for (int r = r0; r < r1; r++) {
        const uint8_t *tile = (const uint8_t *)w->packed + p->code_off + (size_t)(r / 16) * p->row_bytes;
        const uint16_t *st = sc + (size_t)(r / 16) * p->spr * 16;
        int i16 = r % 16;
        for (int i = 0; i < x->n; i++) {
            const uint8_t *tab = x->lut + (size_t)i * (size_t)(x->ld / (4 * gcols)) * 128;
            const float *xd = x->d + (size_t)i * (x->ld / 32);
            float s = 0.0f;
            for (int b = 0; b < p->nb; b++) {
                int isum = 0;
                for (int pr = slots * b; pr < slots * (b + 1); pr++) {
                    uint8_t v = tile[(size_t)pr * 16 + i16];
                    for (int h = 0; h < 2; h++) {
                        int idx = h ? v >> 4 : v & 15;
                        const uint8_t *e = tab + lb_lut_offset(2 * pr + h) + idx;
                        isum += (int16_t)(uint16_t)(e[0] | e[64] << 8);
                    }
                }
                s += (float)isum * (lb_fp16_to_fp32(st[(size_t)(b >> p->gshift) * 16 + i16]) * xd[b]);
            }
            y[(size_t)i * ldy + r] = s;
        }
    }
}

void lb_kernel_binary_lut_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                              float *scratch) {
    (void)scratch;
    lut_ref(w, x, r0, r1, y, ldy, 4);
}

void lb_kernel_ternary_lut_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                               float *scratch) {
    (void)scratch;
    lut_ref(w, x, r0, r1, y, ldy, 2);
}
