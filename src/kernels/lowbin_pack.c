/* Load-time repacking of ternary and binary weights into the kernel layout
 * of lowbin.h, from the stored bytes (ternary.c, binary.c: fp16 lead scales
 * per group/row, or one per tensor in the tail, then the codes). */
#include <string.h>

#include "kernels/lowbin.h"

/* groups that are whole 32-column blocks (a power of two >= 32), a row, or
 * the tensor */
static int block_groups(const lb_qspec *s, const lb_layout *l) {
    if (s->group == LB_GROUP_ROW || s->group == LB_GROUP_TENSOR) return 1;
    return s->group >= 32 && l->group_len == s->group && (l->group_len & (l->group_len - 1)) == 0;
}

int lb_lowbin_is_ternary(const lb_qspec *s, const lb_layout *l) {
    return s->family == LB_FAMILY_TERNARY && s->bits == 2 && (s->trits_per_byte == 4 || s->trits_per_byte == 5) &&
           block_groups(s, l);
}

int lb_lowbin_is_binary(const lb_qspec *s, const lb_layout *l) {
    return s->family == LB_FAMILY_BINARY && s->bits == 1 && block_groups(s, l);
}

lb_status lb_lowbin_repack(const lb_tensor *w, void **out, size_t *bytes) {
    const lb_layout *l = &w->layout;
    const lb_qspec *s = &w->spec;
    int ternary = lb_lowbin_is_ternary(s, l);
    if (!ternary && !lb_lowbin_is_binary(s, l))
        return lb_fail(LB_ERR_INVALID, "tensor '%s' is not ternary/binary with block groups", w->name);
    lb_lowbin_pack p;
    memset(&p, 0, sizeof p);
    p.kind = !ternary ? LB_LOWBIN_B1 : s->trits_per_byte == 4 ? LB_LOWBIN_T2 : LB_LOWBIN_T5;
    p.nb = (int)((l->cols + 31) / 32);
    p.chunk_cols = p.kind == LB_LOWBIN_T2 ? 256 : p.kind == LB_LOWBIN_T5 ? 320 : 512;
    p.row_bytes = (size_t)((p.nb * 32 + p.chunk_cols - 1) / p.chunk_cols) * LB_LOWBIN_CHUNK;
    p.spr = s->group > 0 ? (int)l->groups_per_row : 1;
    p.gshift = 30;
    if (s->group > 0)
        for (p.gshift = 0; (32 << p.gshift) < s->group; p.gshift++) {
        }
    size_t rows = (size_t)l->rows;
    p.scale_off = 64;
    p.code_off = (p.scale_off + rows * (size_t)p.spr * 2 + 63) / 64 * 64;
    *bytes = p.code_off + rows * p.row_bytes;
    uint8_t *buf = lb_calloc(1, *bytes);
    if (!buf) return lb_fail(LB_ERR_NOMEM, "out of memory repacking '%s'", w->name);
    memcpy(buf, &p, sizeof p);
    uint16_t *sc = (uint16_t *)(buf + p.scale_off);
    size_t lead = 2 * (size_t)l->groups_per_row;
    for (size_t r = 0; r < rows; r++) {
        const uint8_t *src = w->data + r * l->row_bytes;
        for (int g = 0; g < p.spr; g++)
            sc[r * p.spr + g] = l->groups_per_row ? lb_rd16(src + 2 * g) : lb_rd16(w->data + rows * l->row_bytes);
        uint8_t *dst = buf + p.code_off + r * p.row_bytes;
        const uint8_t *codes = src + lead;
        if (p.kind == LB_LOWBIN_B1) {
            memcpy(dst, codes, (size_t)(l->cols_padded / 8));
            /* bits past cols: 0 (they meet zero activations either way) */
            for (int64_t j = l->cols; j < l->cols_padded; j++) dst[j >> 3] &= (uint8_t)~(1u << (j & 7));
            continue;
        }
        int digits = p.kind == LB_LOWBIN_T2 ? 4 : 5;
        for (size_t c = 0; c < p.row_bytes / LB_LOWBIN_CHUNK; c++)
            for (int i = 0; i < LB_LOWBIN_CHUNK; i++) {
                unsigned v = 0;
                for (int d = 0; d < digits; d++) {
                    int64_t j = (int64_t)c * p.chunk_cols + d * 64 + i;
                    int code = j < l->cols ? lb_lowbin_stored_trit(codes, s->trits_per_byte, j) : 1;
                    v = digits == 4 ? v | (unsigned)code << (2 * d) : v * 3 + (unsigned)code;
                }
                /* 1.6-bit: v / 243 as a fraction of 256, rounded up (see lowbin.h) */
                dst[c * LB_LOWBIN_CHUNK + i] = (uint8_t)(digits == 4 ? v : (v * 256 + 242) / 243);
            }
    }
    *out = buf;
    return LB_OK;
}

lb_status lb_lut3_repack(const lb_tensor *w, void **out, size_t *bytes) {
    const lb_layout *l = &w->layout;
    const lb_qspec *s = &w->spec;
    if (!lb_lowbin_is_ternary(s, l))
        return lb_fail(LB_ERR_INVALID, "tensor '%s' is not ternary with block groups", w->name);
    lb_lowbin_pack p;
    memset(&p, 0, sizeof p);
    p.kind = LB_LOWBIN_T_LUT;
    p.nb = (int)((l->cols + 31) / 32);
    p.chunk_cols = 32;
    p.row_bytes = (size_t)p.nb * 128; /* per tile of 16 rows: 8 pair slots of 16 bytes per block */
    p.spr = s->group > 0 ? (int)l->groups_per_row : 1;
    p.gshift = 30;
    if (s->group > 0)
        for (p.gshift = 0; (32 << p.gshift) < s->group; p.gshift++) {
        }
    size_t tiles = (size_t)(l->rows + 15) / 16;
    p.scale_off = 64;
    p.code_off = (p.scale_off + tiles * (size_t)p.spr * 16 * 2 + 63) / 64 * 64;
    *bytes = p.code_off + tiles * p.row_bytes;
    uint8_t *buf = lb_calloc(1, *bytes);
    if (!buf) return lb_fail(LB_ERR_NOMEM, "out of memory repacking '%s'", w->name);
    memcpy(buf, &p, sizeof p);
    uint16_t *sc = (uint16_t *)(buf + p.scale_off);
    size_t rows = (size_t)l->rows, lead = 2 * (size_t)l->groups_per_row;
    for (size_t r = 0; r < rows; r++) {
        const uint8_t *src = w->data + r * l->row_bytes;
        size_t t = r / 16, i = r % 16;
        for (int g = 0; g < p.spr; g++)
            sc[(t * (size_t)p.spr + (size_t)g) * 16 + i] =
                l->groups_per_row ? lb_rd16(src + 2 * g) : lb_rd16(w->data + rows * l->row_bytes);
        uint8_t *tile = buf + p.code_off + t * p.row_bytes;
        for (int64_t k = 0; k < (int64_t)p.nb * 16; k++) { /* group k: columns 2k, 2k + 1 */
            int c0 = 2 * k < l->cols ? lb_lowbin_stored_trit(src + lead, s->trits_per_byte, 2 * k) : 1;
            int c1 = 2 * k + 1 < l->cols ? lb_lowbin_stored_trit(src + lead, s->trits_per_byte, 2 * k + 1) : 1;
            tile[(size_t)(k / 2) * 16 + i] |= (uint8_t)((3 * c0 + c1) << (4 * (k & 1)));
        }
    }
    *out = buf;
    return LB_OK;
}
