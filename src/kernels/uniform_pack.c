/* Load-time repacking of uniform integer formats into the kernel layout
 * described in uniform_pack.h: codes unpacked from the canonical bytes
 * (src/formats/uniform.c, uniform_hscale.c) and re-packed per 32 columns
 * into bit planes, group parameters copied compactly after each row. */
#include <stdlib.h>

#include "formats/format_internal.h"
#include "kernels/uniform_pack.h"

int lb_uniform_kernel_accepts(const lb_qspec *s, const lb_layout *l) {
    if (s->family != LB_FAMILY_UNIFORM || s->bits < 1 || s->bits > 8 || l->groups_per_row < 1) return 0;
    if (l->cols_padded > (1 << 28) || l->groups_per_row > LB_UPACK_MAX_GROUPS) return 0;
    if (s->group == LB_GROUP_ROW) return l->groups_per_row == 1 && l->group_len == l->cols_padded;
    /* powers of two 16..256: whole 16-column halves per group */
    return s->group >= 16 && s->group <= 256 && l->group_len == s->group && l->cols_padded % s->group == 0;
}

static int log2i(int64_t v) {
    int k = 0;
    while ((int64_t)1 << (k + 1) <= v) k++;
    return k;
}

/* one chunk of 32 codes (column order) into its planes */
static void pack_chunk(int bits, const uint8_t *v, uint8_t *dst) {
    if (bits == 8) {
        for (int j = 0; j < 32; j++) dst[j] = v[j] ^ 0x80;
        return;
    }
    int shift = 0;
    if (bits >= 4) {
        for (int j = 0; j < 16; j++) dst[j] = (uint8_t)((v[j] & 15) | (v[j + 16] & 15) << 4);
        dst += 16;
        shift = 4;
    }
    int rest = bits - shift;
    if (rest & 2) {
        for (int j = 0; j < 8; j++) {
            unsigned b = 0;
            for (int k = 0; k < 4; k++) b |= (unsigned)(v[j + 8 * k] >> shift & 3) << (2 * k);
            dst[j] = (uint8_t)b;
        }
        dst += 8;
        shift += 2;
    }
    if (rest & 1) {
        for (int j = 0; j < 4; j++) {
            unsigned b = 0;
            for (int k = 0; k < 8; k++) b |= (unsigned)(v[8 * j + k] >> shift & 1) << k;
            dst[j] = (uint8_t)b;
        }
    }
}

static size_t param_bytes(int kind, int groups) {
    switch (kind) {
    case LB_UP_SYM: return 2 * (size_t)groups;
    case LB_UP_F16: return 4 * (size_t)groups;
    case LB_UP_ZINT: return 3 * (size_t)groups;
    case LB_UP_HSYM: return 4 + (size_t)groups;
    default: return 8 + 2 * (size_t)groups;
    }
}

lb_status lb_uniform_repack(const lb_tensor *w, void **out, size_t *bytes) {
    const lb_qspec *s = &w->spec;
    const lb_layout *l = &w->layout;
    if (!lb_uniform_kernel_accepts(s, l)) return lb_fail(LB_ERR_INVALID, "uniform repack: layout not taken");
    lb_upack p = {.bits = s->bits, .groups = (int)l->groups_per_row};
    p.kind = s->scale_bits ? (s->zero == LB_ZERO_SYM ? LB_UP_HSYM : LB_UP_HASYM)
                           : (s->zero == LB_ZERO_SYM ? LB_UP_SYM : s->zero == LB_ZERO_F16 ? LB_UP_F16 : LB_UP_ZINT);
    p.hshift = s->group == LB_GROUP_ROW ? 30 : log2i(l->group_len) - 4;
    p.chunks = (int)((l->cols_padded + 31) / 32);
    p.chunk_bytes = 4 * s->bits;
    p.codes_bytes = (size_t)p.chunks * (size_t)p.chunk_bytes;
    p.row_bytes = p.codes_bytes + param_bytes(p.kind, p.groups);
    size_t total = LB_UPACK_ROWS + (size_t)l->rows * p.row_bytes;
    /* codes past cols_padded (the last chunk's tail) stay 0: they meet zero activations */
    uint8_t *buf = lb_calloc(1, total), *codes = lb_calloc((size_t)p.chunks, 32);
    if (!buf || !codes) {
        lb_free(buf);
        lb_free(codes);
        return lb_fail(LB_ERR_NOMEM, "out of memory repacking '%s' for the uniform kernels", w->name);
    }
    memcpy(buf, &p, sizeof p);
    int G = p.groups, kb = s->scale_bits, np = s->zero == LB_ZERO_SYM ? 1 : 2;
    size_t cb = (size_t)(l->group_len * s->bits / 8);
    size_t hb = s->zero == LB_ZERO_F16 ? 4 : 2;                      /* fp16 header per block */
    size_t pb = kb ? (size_t)((G * kb * np + 7) / 8) : 0;            /* hierarchical: parameter bits */
    const uint8_t *tail = w->data + (size_t)l->rows * l->row_bytes; /* hierarchical: super-scales */
    for (int64_t r = 0; r < l->rows; r++) {
        const uint8_t *src = w->data + (size_t)r * l->row_bytes;
        uint8_t *dst = buf + LB_UPACK_ROWS + (size_t)r * p.row_bytes, *par = dst + p.codes_bytes;
        for (int g = 0; g < G; g++) {
            const uint8_t *blk = kb ? src + pb + (size_t)g * cb : src + (size_t)g * (hb + cb) + hb;
            lb_uniform_unpack_codes(s, blk, l->group_len, 0, l->group_len, codes + (size_t)g * l->group_len);
        }
        for (int c = 0; c < p.chunks; c++) pack_chunk(s->bits, codes + (size_t)c * 32, dst + (size_t)c * p.chunk_bytes);
        if (!kb) {
            const uint8_t *zs = src + (size_t)G * (hb + cb);
            for (int g = 0; g < G; g++) {
                const uint8_t *blk = src + (size_t)g * (hb + cb);
                memcpy(par + 2 * (size_t)g, blk, 2); /* the fp16 scale, bit for bit */
                if (p.kind == LB_UP_F16) memcpy(par + 2 * (size_t)G + 2 * (size_t)g, blk + 2, 2);
                if (p.kind == LB_UP_ZINT)
                    par[2 * (size_t)G + (size_t)g] = (uint8_t)lb_get_bits(zs, (uint64_t)g * (uint64_t)s->bits, s->bits);
            }
        } else {
            int64_t b = r / s->super_rows;
            const uint8_t *sup = tail + (size_t)b * (np == 2 ? 4 : 2);
            float D = lb_fp16_to_fp32(lb_rd16(sup)), M = np == 2 ? lb_fp16_to_fp32(lb_rd16(sup + 2)) : 0.0f;
            memcpy(par, &D, 4);
            if (np == 2) memcpy(par + 4, &M, 4);
            uint8_t *sc = par + 4 * (size_t)np, *mn = sc + G;
            for (int g = 0; g < G; g++) {
                unsigned code = lb_get_bits(src, (uint64_t)g * (uint64_t)(np * kb), kb);
                sc[g] = (uint8_t)lb_hscale_int(s, code); /* two's complement for sym */
                if (np == 2) mn[g] = (uint8_t)lb_get_bits(src, (uint64_t)(g * 2 + 1) * (uint64_t)kb, kb);
            }
        }
    }
    lb_free(codes);
    *out = buf;
    *bytes = total;
    return LB_OK;
}
