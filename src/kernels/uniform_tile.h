/* The uniform integer kernels' loops, written once for any vector width:
 * included by x86/uniform_avx2.c, x86/uniform_avx512.c, arm/uniform_neon.c
 * and arm/uniform_dotprod.c after they define, for 16 lanes (one lane per
 * row of a panel, kernels/uniform_pack.h):
 *   LB_TGT          the function attribute enabling the ISA
 *   NA_MAX, NA_MID  activation rows per register tile (NA_MID: the
 *                   remainder tile; 1 when there is none)
 *   NACC(NA)        (optional) independent sums per activation row
 *   VB, VI, VF      64 code bytes (one unit), 16 int32, 16 floats
 *   vb_load(p)            64 bytes
 *   vb_field(x, s, m)     each byte (x >> s) & m (s + width <= 8)
 *   vb_or(x, y), vb_shl(x, n)   bytes (small values: no carries)
 *   vb_plane1(p, s)       the 64 bits at p as bytes (bit i) << s
 *   vb_table(t), vb_lookup(x, tab)   a 16-byte table in every 128-bit lane;
 *                         each byte x (0..15) replaced by tab[x] (vpshufb)
 *   vi_zero(), vi_add(x, y, bits), vi_dot(acc, w, a4, bits), vi_dot8(acc, w, a4)
 *                         acc + per lane the dot product of its 4 code
 *                         bytes (unsigned; dot8: q - 128, signed) with the 4
 *                         activation bytes at a4; the sums of at most one
 *                         chunk (8 units) of b-bit codes, in whatever form
 *                         the ISA likes (AVX2: int16 pairs up to 4 bits)
 *   vf_zero(), vf_from_vi(v, bits): the sums as 16 floats,
 *   vf_fma(a, b, c) = a b + c,
 *   vf_fma_s(a, s, c) = a s + c, vf_scale(a, s) = a s, vf_mul(a, b),
 *   vf_h16(p), vf_u8(p), vf_i8(p), vf_f32(p): 16 fp16 / u8 / int8 / fp32,
 *   vf_store(p, v)
 *
 * Per panel of 16 weight rows and tile of NA activation rows: per group the
 * 16 rows' (a, b) as vectors, b times the activation rows' group sums
 * (the offsets), then per chunk of the group (g16: per half) the units'
 * integer dot products in int32 lanes, converted once and scaled by a d_x.
 * Each unit is decoded once for the NA activation rows. */

/* unit k (0..7) of a panel's chunk, as code bytes (kernels/uniform_pack.h);
 * the loops over units are unrolled (GCC unroll) so that k, and with it
 * every shift and offset here, is a constant */
LB_TGT static LB_INLINE VB unit(const uint8_t *c, int bits, int k) {
    switch (bits) {
    case 1: return vb_plane1(c + 8 * k, 0);
    case 2: return vb_field(vb_load(c + 64 * (k & 1)), 2 * (k >> 1), 3);
    case 3: return vb_or(vb_field(vb_load(c + 64 * (k & 1)), 2 * (k >> 1), 3), vb_plane1(c + 128 + 8 * k, 2));
    case 4: return vb_field(vb_load(c + 64 * (k & 3)), 4 * (k >> 2), 15);
    case 5: return vb_or(vb_field(vb_load(c + 64 * (k & 3)), 4 * (k >> 2), 15), vb_plane1(c + 256 + 8 * k, 4));
    case 6:
        return vb_or(vb_field(vb_load(c + 64 * (k & 3)), 4 * (k >> 2), 15),
                     vb_shl(vb_field(vb_load(c + 256 + 64 * (k & 1)), 2 * (k >> 1), 3), 4));
    case 7:
        return vb_or(vb_or(vb_field(vb_load(c + 64 * (k & 3)), 4 * (k >> 2), 15),
                           vb_shl(vb_field(vb_load(c + 256 + 64 * (k & 1)), 2 * (k >> 1), 3), 4)),
                     vb_plane1(c + 384 + 8 * k, 6));
    default: return vb_load(c + 64 * k); /* 8 bits: q - 128 */
    }
}

/* group g's scales a and offsets b of the 16 rows (D, M: the panel's
 * super-scales when hierarchical) */
LB_TGT static LB_INLINE void group_params(const lb_upack *p, const uint8_t *panel, int g, VF D, VF M, int bits,
                                          VF *a, VF *b) {
    const uint8_t *gp = lb_upack_group(p, panel, g);
    float z = -(float)(1 << (bits - 1));
    switch (p->kind) {
    case LB_UP_SYM: *a = vf_h16(gp), *b = vf_scale(*a, z); break;
    case LB_UP_F16: *a = vf_h16(gp), *b = vf_h16(gp + 32); break;
    case LB_UP_ZINT: *a = vf_h16(gp), *b = vf_scale(vf_mul(*a, vf_u8(gp + 32)), -1.0f); break;
    case LB_UP_HSYM: *a = vf_mul(D, vf_i8(gp)), *b = vf_scale(*a, z); break;
    case LB_UP_HASYM: *a = vf_mul(D, vf_u8(gp)), *b = vf_mul(M, vf_u8(gp + 16)); break;
    case LB_UP_TERN: *a = vf_h16(gp), *b = vf_scale(*a, -1.0f); break;
    case LB_UP_BIN: *b = vf_scale(vf_h16(gp), -1.0f), *a = vf_scale(*b, -2.0f); break;
    default: *a = vf_f32(gp), *b = vf_zero(); break; /* LB_UP_TABLE */
    }
    if (bits == 8) *b = vf_fma_s(*a, 128.0f, *b); /* codes stored as q - 128 */
}

/* Independent int32 sums per activation row, so that few activation rows
 * still keep several vpdpbusd in flight (one chain would wait on each
 * one's latency): units k go to sum k % NACC, added up after the chunk. */
#ifndef NACC
#define NACC(NA) ((NA) >= 4 ? 1 : 4 / (NA))
#endif

/* the units [u0, u1) of chunk c against NA activation rows, into s[] */
#define UNITS(NA, chunk, u0, u1, c)                                                                              \
    _Pragma("GCC unroll 8") for (int k = (u0); k < (u1); k++) {                                                  \
        VB wv = unit((chunk), bits, k);                                                                          \
        if (lut) wv = vb_lookup(wv, tab);                                                                        \
        _Pragma("GCC unroll 8") for (int i = 0; i < NA; i++) {                                                   \
            VI *si = &s[i * NACC(NA) + k % NACC(NA)];                                                            \
            *si = dbits == 8 ? vi_dot8(*si, wv, xq[i] + 32 * (size_t)(c) + 4 * k)                                \
                             : vi_dot(*si, wv, xq[i] + 32 * (size_t)(c) + 4 * k, dbits);                         \
        }                                                                                                        \
    }

/* s[] zeroed, and summed into one int32 vector per activation row */
#define SUMS_ZERO(NA)                                                                                            \
    for (int j = 0; j < NA * NACC(NA); j++) s[j] = vi_zero();
#define SUMS_FOLD(NA, i) vi_fold(s + (i) * NACC(NA), NACC(NA), dbits)

LB_TGT static LB_INLINE VF vi_fold(const VI *s, int n, int bits) {
    VI t = s[0];
    for (int j = 1; j < n; j++) t = vi_add(t, s[j], bits);
    return vf_from_vi(t, bits);
}

/* Software prefetch this many bytes ahead of the chunk being read: with
 * several activation rows the loop is compute-heavy enough that the
 * hardware prefetcher alone let batch 8 run at twice its cache-resident
 * time from DRAM; 2 KiB ahead halved that gap in a same-session sweep of
 * 0.5-4 KiB (docs/BENCHMARKS.md). */
#define PREFETCH 2048
LB_TGT static LB_INLINE void prefetch_chunk(const uint8_t *chunk, int bytes) {
    for (int o = 0; o < bytes; o += 64) __builtin_prefetch(chunk + PREFETCH + o, 0, 3);
}

/* one panel against activation rows i0 .. i0 + NA - 1: out[i][lane] */
LB_TGT static LB_INLINE void panel_tile(const lb_upack *p, const uint8_t *panel, const lb_act *x, int i0,
                                        const float *cs, int NA, int bits, int g16, int lut, float (*out)[16]) {
    /* lut: codes index p->table, signed values, dotted like 8-bit codes */
    const int dbits = lut ? 8 : bits;
    VB tab = vb_table(p->table);
    const int8_t *xq[NA_MAX];
    const float *xd[NA_MAX];
    for (int i = 0; i < NA; i++) {
        xq[i] = x->q + (size_t)(i0 + i) * (size_t)x->ld;
        xd[i] = x->d + (size_t)(i0 + i) * (size_t)(x->ld / 32);
    }
    VF D = vf_zero(), M = vf_zero(), acc[NA_MAX];
    if (p->kind == LB_UP_HSYM || p->kind == LB_UP_HASYM) D = vf_f32(panel);
    if (p->kind == LB_UP_HASYM) M = vf_f32(panel + 64);
    for (int i = 0; i < NA; i++) acc[i] = vf_zero();
    for (int g = 0; g < p->groups; g++) {
        VF a, b;
        group_params(p, panel, g, D, M, bits, &a, &b);
        for (int i = 0; i < NA; i++) acc[i] = vf_fma_s(b, cs[(size_t)i * (size_t)p->groups + (size_t)g], acc[i]);
        VI s[4 * NA_MAX];
        if (g16) { /* group g is half g & 1 of chunk g >> 1: units 0-3 or 4-7 */
            int c = g >> 1, u0 = 4 * (g & 1);
            const uint8_t *chunk = lb_upack_chunk(p, panel, c);
            if (!(g & 1)) prefetch_chunk(chunk, p->chunk_bytes);
            SUMS_ZERO(NA)
            UNITS(NA, chunk, u0, u0 + 4, c)
            for (int i = 0; i < NA; i++) acc[i] = vf_fma(SUMS_FOLD(NA, i), vf_scale(a, xd[i][c]), acc[i]);
            continue;
        }
        int c0, c1;
        lb_upack_group_chunks(p, g, &c0, &c1);
        const uint8_t *chunk = lb_upack_chunk(p, panel, c0);
        for (int c = c0; c < c1; c++, chunk += p->chunk_bytes) {
            prefetch_chunk(chunk, p->chunk_bytes);
            SUMS_ZERO(NA)
            UNITS(NA, chunk, 0, 8, c)
            for (int i = 0; i < NA; i++) acc[i] = vf_fma(SUMS_FOLD(NA, i), vf_scale(a, xd[i][c]), acc[i]);
        }
    }
    for (int i = 0; i < NA; i++) vf_store(out[i], acc[i]);
}

/* Weight rows r0..r1-1 (whole panels but at the end of the matrix) against
 * every activation row, NA_MAX activation rows at a time. */
LB_TGT static LB_INLINE void uniform_matmul(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                                            int bits, int g16, int lut) {
    const lb_upack *p = lb_upack_of(w);
    size_t G = (size_t)p->groups, ld32 = (size_t)x->ld / 32, ld16 = (size_t)x->ld / 16;
    float cs[LB_UPACK_MAX_ACT * LB_UPACK_MAX_GROUPS];
    _Alignas(64) float out[NA_MAX][16];
    for (int i0 = 0; i0 < x->n;) {
        int na = x->n - i0 >= NA_MAX ? NA_MAX : x->n - i0 >= NA_MID ? NA_MID : 1;
        for (int i = 0; i < na; i++)
            lb_upack_act_sums(p, x->d + (size_t)(i0 + i) * ld32, x->s16 + (size_t)(i0 + i) * ld16, cs + (size_t)i * G);
        for (int pn = r0 / LB_UPACK_PANEL; pn * LB_UPACK_PANEL < r1; pn++) {
            const uint8_t *panel = lb_upack_panel(w, pn);
            if (na == NA_MAX) panel_tile(p, panel, x, i0, cs, NA_MAX, bits, g16, lut, out);
            else if (na == NA_MID) panel_tile(p, panel, x, i0, cs, NA_MID, bits, g16, lut, out);
            else panel_tile(p, panel, x, i0, cs, 1, bits, g16, lut, out);
            int lo = pn * LB_UPACK_PANEL > r0 ? pn * LB_UPACK_PANEL : r0;
            int hi = pn * LB_UPACK_PANEL + LB_UPACK_PANEL < r1 ? pn * LB_UPACK_PANEL + LB_UPACK_PANEL : r1;
            for (int i = 0; i < na; i++)
                for (int r = lo; r < hi; r++) y[(size_t)(i0 + i) * (size_t)ldy + r] = out[i][r - pn * LB_UPACK_PANEL];
        }
        i0 += na;
    }
}

/* one specialization per (bits, g16): the decode and the group walk are
 * then straight-line code */
#define UNIFORM_CASE(B)                                                                                          \
    case B:                                                                                                      \
        if (g16) uniform_matmul(w, x, r0, r1, y, ldy, B, 1, 0);                                                  \
        else uniform_matmul(w, x, r0, r1, y, ldy, B, 0, 0);                                                      \
        break;

#define UNIFORM_ENTRY(NAME)                                                                                      \
    LB_TGT void NAME(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch) {   \
        (void)scratch;                                                                                           \
        int g16 = lb_upack_of(w)->hshift == 0;                                                                   \
        if (lb_upack_of(w)->kind == LB_UP_TABLE) { /* nf4, pow2, iq4_nl, mxfp4; nvfp4: groups of 16 */          \
            if (lb_upack_of(w)->bits == 3) uniform_matmul(w, x, r0, r1, y, ldy, 3, 0, 1);                        \
            else if (g16) uniform_matmul(w, x, r0, r1, y, ldy, 4, 1, 1);                                         \
            else uniform_matmul(w, x, r0, r1, y, ldy, 4, 0, 1);                                                  \
            return;                                                                                              \
        }                                                                                                        \
        switch (lb_upack_of(w)->bits) {                                                                          \
            UNIFORM_CASE(1)                                                                                      \
            UNIFORM_CASE(2)                                                                                      \
            UNIFORM_CASE(3)                                                                                      \
            UNIFORM_CASE(4)                                                                                      \
            UNIFORM_CASE(5)                                                                                      \
            UNIFORM_CASE(6)                                                                                      \
            UNIFORM_CASE(7)                                                                                      \
            UNIFORM_CASE(8)                                                                                      \
        }                                                                                                        \
    }
