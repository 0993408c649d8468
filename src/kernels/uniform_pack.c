/* Load-time repacking into the panel layout described in uniform_pack.h:
 * each row's codes and group parameters read from the canonical bytes (one
 * reader per family: uniform ints, src/formats/uniform.c and
 * uniform_hscale.c; ternary and binary; nf4, pow2, iq4_nl and mxfp4 through
 * codebook.h),
 * then a panel's 16 rows re-packed into bit planes, the parameters side by
 * side before their groups' chunks. */
#include <stdlib.h>

#include "formats/format_internal.h"
#include "kernels/codebook.h"
#include "kernels/lowbin.h"
#include "kernels/uniform_pack.h"

/* nvfp4 (src/formats/fp4.c): 64-weight blocks of four 16-weight groups, an fp32 tensor scale in the tail */
static int is_nvfp4(const lb_qspec *s, const lb_layout *l) {
    return !strcmp(s->family->name, "fp4") && s->ggml_type == 40 && l->group_len == 16 && l->cols_padded % 64 == 0 &&
           l->tail_bytes == 4;
}

int lb_uniform_kernel_accepts(const lb_qspec *s, const lb_layout *l) {
    if (s->family == LB_FAMILY_TERNARY || s->family == LB_FAMILY_BINARY) /* groups >= 32, a row or the tensor */
        return (lb_lowbin_is_ternary(s, l) || lb_lowbin_is_binary(s, l)) && l->cols_padded <= (1 << 28) &&
               (s->group == LB_GROUP_ROW || s->group == LB_GROUP_TENSOR || l->groups_per_row <= LB_UPACK_MAX_GROUPS);
    if (lb_cb_table4_kind(s, l) >= 0 || is_nvfp4(s, l)) /* ggml's iq4_nl, mxfp4, nvfp4: each block a group */
        return l->cols_padded <= (1 << 28) && l->groups_per_row <= LB_UPACK_MAX_GROUPS;
    if (lb_cb_nf4_kind(s, l) >= 0 || lb_cb_pow2_kind(s, l) >= 0) /* whole 32-blocks; groups a power of two or a row */
        return l->cols_padded <= (1 << 28) && l->groups_per_row >= 1 && l->groups_per_row <= LB_UPACK_MAX_GROUPS &&
               (l->groups_per_row == 1 || (l->group_len & (l->group_len - 1)) == 0);
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

/* One chunk of a panel from its codes v[r][32 * c + j] (row r, column j),
 * into the planes: the inverse of lb_upack_code (8 bits: q ^ 0x80). Byte
 * i = 4 r + j of unit k is (row r, column 4k + j). */
static void pack_chunk(int bits, const uint8_t *v, size_t ld, uint8_t *dst) {
#define CODE(k, i) v[(size_t)((i) >> 2) * ld + 4 * (k) + ((i) & 3)]
    if (bits == 8) {
        for (int k = 0; k < 8; k++)
            for (int i = 0; i < 64; i++) dst[64 * k + i] = (uint8_t)(CODE(k, i) ^ 0x80);
        return;
    }
    int shift = 0;
    if (bits >= 4) {
        for (int m = 0; m < 4; m++)
            for (int i = 0; i < 64; i++) dst[64 * m + i] = (uint8_t)((CODE(m, i) & 15) | (CODE(m + 4, i) & 15) << 4);
        dst += 256;
        shift = 4;
    }
    if ((bits - shift) & 2) {
        for (int m = 0; m < 2; m++)
            for (int i = 0; i < 64; i++) {
                unsigned b = 0;
                for (int t = 0; t < 4; t++) b |= (unsigned)(CODE(2 * t + m, i) >> shift & 3) << (2 * t);
                dst[64 * m + i] = (uint8_t)b;
            }
        dst += 128;
        shift += 2;
    }
    if ((bits - shift) & 1)
        for (int k = 0; k < 8; k++)
            for (int i = 0; i < 64; i += 8) {
                unsigned b = 0;
                for (int t = 0; t < 8; t++) b |= (unsigned)(CODE(k, i + t) >> shift & 1) << t;
                dst[8 * k + (i >> 3)] = (uint8_t)b;
            }
#undef CODE
}

/* parameter sizes and the blocks (uniform_pack.h) */
static void block_layout(lb_upack *p) {
    static const int bytes[LB_UP_KINDS] = {[LB_UP_SYM] = 32, [LB_UP_F16] = 64, [LB_UP_ZINT] = 48, [LB_UP_HSYM] = 16,
                                [LB_UP_HASYM] = 32, [LB_UP_TERN] = 32, [LB_UP_BIN] = 32, [LB_UP_TABLE] = 64};
    static const int shift[LB_UP_KINDS] = {[LB_UP_SYM] = 1, [LB_UP_F16] = 0, [LB_UP_ZINT] = 2, [LB_UP_HSYM] = 2,
                                [LB_UP_HASYM] = 1, [LB_UP_TERN] = 1, [LB_UP_BIN] = 1, [LB_UP_TABLE] = 0};
    static const int head[LB_UP_KINDS] = {[LB_UP_HSYM] = 64, [LB_UP_HASYM] = 128}; /* the others: 0 */
    p->group_bytes = bytes[p->kind];
    p->head_bytes = head[p->kind];
    p->block_shift = shift[p->kind];
    if (p->hshift == 0 && p->block_shift == 0) p->block_shift = 1; /* g16: two groups per chunk */
    if (p->hshift >= 30) {                                          /* one group: its own line */
        p->block_shift = 0;
        p->group_bytes = 64;
    }
    int chunks = p->hshift >= 30 ? p->chunks : p->hshift == 0 ? 1 << (p->block_shift - 1)
                                                                : (1 << p->block_shift) << (p->hshift - 1);
    p->block_bytes = ((size_t)p->group_bytes << p->block_shift) + (size_t)chunks * (size_t)p->chunk_bytes;
    size_t blocks = ((size_t)p->groups + ((size_t)1 << p->block_shift) - 1) >> p->block_shift;
    p->panel_bytes = ((size_t)p->head_bytes + blocks * p->block_bytes + 63) / 64 * 64;
}

/* Uniform int rows: row r's codes into codes[], its parameters into lane
 * `lane` of its panel */
static void uniform_row(const lb_tensor *w, const lb_upack *p, int64_t r, int lane, uint8_t *panel, uint8_t *codes) {
    const lb_qspec *s = &w->spec;
    const lb_layout *l = &w->layout;
    const uint8_t *src = w->data + (size_t)r * l->row_bytes;
    int G = p->groups, kb = s->scale_bits, np = s->zero == LB_ZERO_SYM ? 1 : 2;
    size_t cb = (size_t)(l->group_len * s->bits / 8), hb = s->zero == LB_ZERO_F16 ? 4 : 2;
    size_t pb = kb ? (size_t)((G * kb * np + 7) / 8) : 0; /* hierarchical: parameter bits */
    for (int g = 0; g < G; g++) {
        const uint8_t *blk = kb ? src + pb + (size_t)g * cb : src + (size_t)g * (hb + cb) + hb;
        lb_uniform_unpack_codes(s, blk, l->group_len, 0, l->group_len, codes + (size_t)g * l->group_len);
    }
    if (!kb) {
        const uint8_t *zs = src + (size_t)G * (hb + cb);
        for (int g = 0; g < G; g++) {
            const uint8_t *blk = src + (size_t)g * (hb + cb);
            uint8_t *gp = (uint8_t *)lb_upack_group(p, panel, g);
            memcpy(gp + 2 * lane, blk, 2); /* the fp16 scale, bit for bit */
            if (p->kind == LB_UP_F16) memcpy(gp + 32 + 2 * lane, blk + 2, 2);
            if (p->kind == LB_UP_ZINT)
                gp[32 + lane] = (uint8_t)lb_get_bits(zs, (uint64_t)g * (uint64_t)s->bits, s->bits);
        }
        return;
    }
    const uint8_t *tail = w->data + (size_t)l->rows * l->row_bytes; /* super-scales */
    const uint8_t *sup = tail + (size_t)(r / s->super_rows) * (np == 2 ? 4 : 2);
    float D = lb_fp16_to_fp32(lb_rd16(sup)), M = np == 2 ? lb_fp16_to_fp32(lb_rd16(sup + 2)) : 0.0f;
    memcpy(panel + 4 * lane, &D, 4);
    if (np == 2) memcpy(panel + 64 + 4 * lane, &M, 4);
    for (int g = 0; g < G; g++) {
        uint8_t *gp = (uint8_t *)lb_upack_group(p, panel, g);
        unsigned code = lb_get_bits(src, (uint64_t)g * (uint64_t)(np * kb), kb);
        gp[lane] = (uint8_t)lb_hscale_int(s, code); /* two's complement for sym */
        if (np == 2) gp[16 + lane] = (uint8_t)lb_get_bits(src, (uint64_t)(g * 2 + 1) * (uint64_t)kb, kb);
    }
}

/* Ternary and binary rows (ternary.c, binary.c): fp16 lead scales per
 * group (or one per tensor in the tail), then trits or sign bits. */
static void lowbin_row(const lb_tensor *w, const lb_upack *p, int64_t r, int lane, uint8_t *panel, uint8_t *codes) {
    const lb_qspec *s = &w->spec;
    const lb_layout *l = &w->layout;
    const uint8_t *src = w->data + (size_t)r * l->row_bytes, *t = src + 2 * (size_t)l->groups_per_row;
    for (int g = 0; g < p->groups; g++) {
        const uint8_t *sc = l->groups_per_row ? src + 2 * g : w->data + (size_t)l->rows * l->row_bytes;
        memcpy((uint8_t *)lb_upack_group(p, panel, g) + 2 * lane, sc, 2);
    }
    for (int64_t j = 0; j < l->cols; j++)
        codes[j] = (uint8_t)(p->kind == LB_UP_TERN ? lb_lowbin_stored_trit(t, s->trits_per_byte, j) : t[j >> 3] >> (j & 7) & 1);
}

/* nf4, pow2, iq4_nl and mxfp4 rows through codebook.h's blocks: each block's int8 values
 * back to their index in the table, each group's float scale as is */
static void table_row(const lb_upack *p, const lb_cb *cb, int64_t r, int lane, uint8_t *panel, uint8_t *codes) {
    const uint8_t *row = cb->data + (size_t)r * cb->rb;
    uint8_t code_of[256] = {0}; /* value + 128 -> its first code */
    for (int q = (1 << p->bits) - 1; q >= 0; q--) code_of[p->table[q] + 128] = (uint8_t)q;
    for (int b = 0; b < cb->nb; b++) {
        int8_t v[32];
        lb_cb_values(cb, row, b, v);
        for (int j = 0; j < 32; j++) codes[32 * b + j] = code_of[v[j] + 128];
        if (lb_cb_in_group(cb, b) == 0) {
            float sc = lb_cb_scale(cb, row, (int)r, b);
            memcpy((uint8_t *)lb_upack_group(p, panel, lb_cb_group(cb, b)) + 4 * lane, &sc, 4);
        }
    }
}

/* an nvfp4 row: per 16 weights the UE4M3 scale (halved, as the doubled
 * E2M1 table wants) times the tensor scale, codes as stored */
static void nvfp4_row(const lb_tensor *w, const lb_upack *p, int64_t r, int lane, uint8_t *panel, uint8_t *codes) {
    const lb_layout *l = &w->layout;
    const uint8_t *row = w->data + (size_t)r * l->row_bytes;
    float t = lb_nvfp4_tensor_scale(l, w->data);
    for (int64_t b = 0; b < l->cols_padded / 64; b++) {
        const uint8_t *blk = row + (size_t)b * 36;
        for (int s = 0; s < 4; s++) {
            float sc = lb_ue4m3_half(blk[s]) * t;
            memcpy((uint8_t *)lb_upack_group(p, panel, (int)(4 * b + s)) + 4 * lane, &sc, 4);
            for (int j = 0; j < 8; j++) {
                codes[64 * b + 16 * s + j] = blk[4 + 8 * s + j] & 15;
                codes[64 * b + 16 * s + j + 8] = blk[4 + 8 * s + j] >> 4;
            }
        }
    }
}

lb_status lb_uniform_repack(const lb_tensor *w, void **out, size_t *bytes) {
    const lb_qspec *s = &w->spec;
    const lb_layout *l = &w->layout;
    if (!lb_uniform_kernel_accepts(s, l)) return lb_fail(LB_ERR_INVALID, "uniform repack: layout not taken");
    int lowbin = s->family == LB_FAMILY_TERNARY || s->family == LB_FAMILY_BINARY;
    lb_upack p = {.bits = s->bits, .groups = (int)l->groups_per_row};
    p.kind = s->scale_bits ? (s->zero == LB_ZERO_SYM ? LB_UP_HSYM : LB_UP_HASYM)
                           : (s->zero == LB_ZERO_SYM ? LB_UP_SYM : s->zero == LB_ZERO_F16 ? LB_UP_F16 : LB_UP_ZINT);
    if (lowbin) p.kind = s->family == LB_FAMILY_TERNARY ? LB_UP_TERN : LB_UP_BIN;
    int nf4 = lb_cb_nf4_kind(s, l), pow2 = lb_cb_pow2_kind(s, l), t4 = lb_cb_table4_kind(s, l);
    int kind = t4 >= 0 ? t4 : nf4 >= 0 ? nf4 : pow2;
    lb_cb book;
    memset(&book, 0, sizeof book);
    if (kind >= 0) {
        book = lb_cb_of(w, (lb_cb_kind)kind);
        p.kind = LB_UP_TABLE;
        p.bits = kind == LB_CB_POW2_3 ? 3 : 4;
        const int8_t *table = lb_cb_table4((lb_cb_kind)kind);
        for (int q = 0; q < (1 << p.bits); q++) /* pow2:3: sign bit 2 moves to the 4-bit table's bit 3 */
            p.table[q] = table[p.bits == 3 ? (q & 3) | (q & 4) << 1 : q];
    }
    int nvfp4 = is_nvfp4(s, l);
    if (nvfp4) { /* groups of 16: the g16 walk */
        p.kind = LB_UP_TABLE;
        p.bits = 4;
        memcpy(p.table, lb_mxfp4_values, 16);
    }
    int row_group = s->group == LB_GROUP_ROW || s->group == LB_GROUP_TENSOR ||
                    (p.kind == LB_UP_TABLE && l->groups_per_row == 1);
    if (row_group) p.groups = 1;
    p.hshift = row_group ? 30 : log2i(l->group_len) - 4;
    p.chunks = (int)((l->cols_padded + 31) / 32);
    p.chunk_bytes = 64 * p.bits;
    block_layout(&p);
    int64_t panels = (l->rows + LB_UPACK_PANEL - 1) / LB_UPACK_PANEL;
    size_t total = LB_UPACK_HEAD + (size_t)panels * p.panel_bytes;
    /* padding rows and columns past cols_padded: code 0 and parameters 0,
     * contributing nothing. Panels are independent: they are packed in
     * parallel, each thread unpacking a panel's 16 rows side by side. */
    size_t ld = (size_t)p.chunks * 32;
    uint8_t *buf = lb_calloc(1, total);
    if (!buf) return lb_fail(LB_ERR_NOMEM, "out of memory repacking '%s' for the uniform kernels", w->name);
    memcpy(buf, &p, sizeof p);
    int failed = 0;
#pragma omp parallel if (panels > 1 && (size_t)l->rows * ld >= ((size_t)1 << 20))
    {
        uint8_t *codes = lb_alloc(LB_UPACK_PANEL * ld);
        if (!codes) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t pn = 0; pn < panels; pn++) {
            if (!codes) continue;
            uint8_t *panel = buf + LB_UPACK_HEAD + (size_t)pn * p.panel_bytes;
            memset(codes, 0, LB_UPACK_PANEL * ld);
            for (int lane = 0; lane < LB_UPACK_PANEL && pn * LB_UPACK_PANEL + lane < l->rows; lane++) {
                int64_t r = pn * LB_UPACK_PANEL + lane;
                uint8_t *row_codes = codes + (size_t)lane * ld;
                if (nvfp4) nvfp4_row(w, &p, r, lane, panel, row_codes);
                else if (p.kind == LB_UP_TABLE) table_row(&p, &book, r, lane, panel, row_codes);
                else if (lowbin) lowbin_row(w, &p, r, lane, panel, row_codes);
                else uniform_row(w, &p, r, lane, panel, row_codes);
            }
            for (int c = 0; c < p.chunks; c++)
                pack_chunk(p.bits, codes + 32 * (size_t)c, ld, (uint8_t *)lb_upack_chunk(&p, panel, c));
        }
        lb_free(codes);
    }
    if (failed) {
        lb_free(buf);
        return lb_fail(LB_ERR_NOMEM, "out of memory repacking '%s' for the uniform kernels", w->name);
    }
    *out = buf;
    *bytes = total;
    return LB_OK;
}
