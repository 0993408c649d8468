/* Uniform integer formats (every int<b> layout but q8_0 / q4_0, which have
 * their own rows), scalar: the specification of the SIMD twins. Reads the
 * load-time layout of kernels/uniform_pack.h. Per 16 columns (half a chunk
 * of 32, the smallest group) with activation block scale d and half-sum
 * s = sum(xq), group g contributes d (a_g sum(q xq) + b_g s); the integer
 * sums are exact, the float sum runs in column order. */
#include "kernels/uniform_pack.h"

/* the 32 codes of a chunk in column order (8 bits: q - 128, signed) */
void lb_uniform_decode_chunk_ref(int bits, const uint8_t *src, int v[32]) {
    if (bits == 8) {
        for (int j = 0; j < 32; j++) v[j] = (int8_t)src[j];
        return;
    }
    int shift = 0;
    for (int j = 0; j < 32; j++) v[j] = 0;
    if (bits >= 4) {
        for (int j = 0; j < 16; j++) {
            v[j] = src[j] & 15;
            v[j + 16] = src[j] >> 4;
        }
        src += 16;
        shift = 4;
    }
    int rest = bits - shift;
    if (rest & 2) {
        for (int j = 0; j < 32; j++) v[j] |= (src[j & 7] >> (2 * (j >> 3)) & 3) << shift;
        src += 8;
        shift += 2;
    }
    if (rest & 1)
        for (int j = 0; j < 32; j++) v[j] |= (src[j >> 3] >> (j & 7) & 1) << shift;
}

static float h2f(uint16_t h) { return lb_fp16_to_fp32(h); }

void lb_kernel_uniform_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch) {
    (void)scratch;
    const lb_upack *p = lb_upack_of(w);
    float a[2 * LB_UPACK_SEG + 1], b[2 * LB_UPACK_SEG + 1];
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = lb_upack_row(w, r);
        for (int i = 0; i < x->n; i++) {
            const int8_t *xq = x->q + (size_t)i * x->ld;
            const float *xd = x->d + (size_t)i * (x->ld / 32);
            const int16_t *s16 = x->s16 + (size_t)i * (x->ld / 16);
            float s = 0.0f;
            for (int c0 = 0; c0 < p->chunks; c0 += LB_UPACK_SEG) {
                int c1 = c0 + LB_UPACK_SEG < p->chunks ? c0 + LB_UPACK_SEG : p->chunks;
                int g0 = lb_upack_group_of(p, 2 * c0), g1 = lb_upack_group_of(p, 2 * c1 - 1) + 1;
                if (g1 > p->groups) g1 = p->groups;
                lb_upack_expand(p, row, g0, g1, h2f, a, b);
                for (int c = c0; c < c1; c++) {
                    int v[32];
                    lb_uniform_decode_chunk_ref(p->bits, row + (size_t)c * p->chunk_bytes, v);
                    for (int h = 0; h < 2; h++) {
                        int isum = 0;
                        for (int j = 16 * h; j < 16 * h + 16; j++) isum += v[j] * xq[c * 32 + j];
                        int g = lb_upack_group_of(p, 2 * c + h) - g0;
                        s += xd[c] * (a[g] * (float)isum + b[g] * (float)s16[2 * c + h]);
                    }
                }
            }
            y[(size_t)i * ldy + r] = s;
        }
    }
}
