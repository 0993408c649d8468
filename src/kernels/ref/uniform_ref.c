/* The panel kernels, scalar: the specification of the SIMD twins
 * (uniform_tile.h) for every layout lb_uniform_repack takes (uniform
 * ints, ternary, binary, nf4, pow2). Reads the load-time layout of
 * kernels/uniform_pack.h one row at a time; a TABLE code stands for its
 * int8 table value. Per 16 columns (half a chunk of 32, the smallest group)
 * with activation block scale d and half-sum s = sum(xq), group g
 * contributes d (a_g sum(q xq) + b_g s); the integer sums are exact, the
 * float sum runs in column order. */
#include "kernels/uniform_pack.h"

void lb_kernel_uniform_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch) {
    (void)scratch;
    const lb_upack *p = lb_upack_of(w);
    for (int r = r0; r < r1; r++) {
        const uint8_t *panel = lb_upack_panel(w, r / LB_UPACK_PANEL);
        int lane = r % LB_UPACK_PANEL;
        for (int i = 0; i < x->n; i++) {
            const int8_t *xq = x->q + (size_t)i * x->ld;
            const float *xd = x->d + (size_t)i * (x->ld / 32);
            const int16_t *s16 = x->s16 + (size_t)i * (x->ld / 16);
            float s = 0.0f;
            for (int h = 0; h < 2 * p->chunks; h++) {
                int g = lb_upack_group_of(p, h), c = h >> 1;
                if (g >= p->groups) break; /* g16: the padding half of the last chunk */
                const uint8_t *chunk = lb_upack_chunk(p, panel, c);
                int isum = 0;
                for (int j = 16 * (h & 1); j < 16 * (h & 1) + 16; j++) {
                    int q = lb_upack_code(p->bits, chunk, lane, j);
                    isum += (p->kind == LB_UP_TABLE ? p->table[q] : q) * xq[32 * c + j];
                }
                float a, b;
                lb_upack_param(p, panel, lane, g, &a, &b);
                s += xd[c] * (a * (float)isum + b * (float)s16[h]);
            }
            y[(size_t)i * ldy + r] = s;
        }
    }
}
