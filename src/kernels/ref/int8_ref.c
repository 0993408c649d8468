/* Integer matmul kernels, scalar: the specification the SIMD versions are
 * tested against. Activations are quantized per 32 columns to int8 with an
 * fp32 scale (LB_ACT_Q8_32); each weight block of 32 meets one activation
 * block, their integer dot product is exact, and the float sum over blocks
 * runs in block order: y = sum_b (d_w[b] d_x[b]) sum_j q_w[b, j] q_x[b, j].
 *
 * Weight layouts are ggml's (src/formats/ggml_blocks.h): Q8_0 = fp16 d, 32
 * int8; Q4_0 = fp16 d, 16 bytes with code j in the low nibble of byte j and
 * code j + 16 in the high nibble, w = d (q - 8). Rows are padded to whole
 * blocks; padding meets zero activations. */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "formats/ggml_blocks.h"
#include "kernels/kernels.h"

/* d = absmax / 127 and q = round(x / d) to nearest even, as ggml's AVX2
 * quantize_row_q8_0 rounds (its scalar reference rounds ties away from zero;
 * ties are rare and this way the SIMD version here gives the same bytes).
 * Out-of-range or NaN quotients clamp to [-127, 127] (NaN to -127), so no
 * float-to-int conversion is ever undefined. */
void lb_act_q8_row_ref(const float *x, int cols, int ld, int8_t *q, float *d) {
    for (int b = 0; b < ld / 32; b++) {
        int c0 = b * 32, cnt = cols - c0 < 32 ? cols - c0 : 32;
        if (cnt <= 0) { /* padding blocks */
            memset(q + c0, 0, (size_t)(ld - c0));
            for (; b < ld / 32; b++) d[b] = 0.0f;
            return;
        }
        float amax = 0.0f;
        for (int j = 0; j < cnt; j++) amax = fmaxf(amax, fabsf(x[c0 + j]));
        float db = amax / 127.0f, id = db != 0.0f ? 1.0f / db : 0.0f;
        for (int j = 0; j < 32; j++) {
            float v = j < cnt ? x[c0 + j] * id : 0.0f;
            v = fminf(fmaxf(v, -127.0f), 127.0f);
            q[c0 + j] = (int8_t)nearbyintf(v);
        }
        d[b] = db;
    }
}

#define Q8_BYTES sizeof(lb_block_q8_0)
#define Q8_QS offsetof(lb_block_q8_0, qs)
#define Q4_BYTES sizeof(lb_block_q4_0)
#define Q4_QS offsetof(lb_block_q4_0, qs)

void lb_kernel_q8_0_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch) {
    (void)scratch;
    int nb = (int)(w->layout.cols_padded / LB_QK);
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = w->data + (size_t)r * w->layout.row_bytes;
        for (int i = 0; i < x->n; i++) {
            const int8_t *xq = x->q + (size_t)i * x->ld;
            const float *xd = x->d + (size_t)i * (x->ld / LB_QK);
            float s = 0.0f;
            for (int b = 0; b < nb; b++) {
                const uint8_t *blk = row + (size_t)b * Q8_BYTES;
                const int8_t *wq = (const int8_t *)(blk + Q8_QS), *aq = xq + b * LB_QK;
                int isum = 0;
                for (int j = 0; j < LB_QK; j++) isum += wq[j] * aq[j];
                s += (float)isum * (lb_fp16_to_fp32(lb_rd16(blk)) * xd[b]);
            }
            y[(size_t)i * ldy + r] = s;
        }
    }
}

void lb_kernel_q4_0_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch) {
    (void)scratch;
    int nb = (int)(w->layout.cols_padded / LB_QK);
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = w->data + (size_t)r * w->layout.row_bytes;
        for (int i = 0; i < x->n; i++) {
            const int8_t *xq = x->q + (size_t)i * x->ld;
            const float *xd = x->d + (size_t)i * (x->ld / LB_QK);
            float s = 0.0f;
            for (int b = 0; b < nb; b++) {
                const uint8_t *blk = row + (size_t)b * Q4_BYTES, *qs = blk + Q4_QS;
                const int8_t *aq = xq + b * LB_QK;
                int isum = 0;
                for (int j = 0; j < LB_QK / 2; j++)
                    isum += ((qs[j] & 15) - 8) * aq[j] + ((qs[j] >> 4) - 8) * aq[j + LB_QK / 2];
                s += (float)isum * (lb_fp16_to_fp32(lb_rd16(blk)) * xd[b]);
            }
            y[(size_t)i * ldy + r] = s;
        }
    }
}
