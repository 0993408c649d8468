/* XNOR-popcount GEMM on packed sign bits, NEON: the twin of
 * lb_xnor_gemm_ref (kernels/xnor_bits.c). Two 64-bit words per step:
 * w xor a, vcntq_u8 (popcount per byte), byte pairs added into 16-bit
 * lanes by vpadalq_u8 (at most 16 per lane per step, so the lanes are
 * summed out every 2048 steps, before they could overflow), then summed
 * across lanes. An odd last word uses a 64-bit vcnt. */
#if defined(__aarch64__)
#include <arm_neon.h>

#include "kernels/xnor_bits.h"

void lb_xnor_gemm_neon(const uint64_t *a, int n, const uint64_t *w, int m, int cols, int32_t *out, int ldo) {
    const int words = lb_xnor_words(cols), pairs = words / 2;
    for (int i = 0; i < n; i++) {
        const uint64_t *ai = a + (size_t)i * words;
        for (int o = 0; o < m; o++) {
            const uint64_t *wo = w + (size_t)o * words;
            int pc = 0;
            for (int t0 = 0; t0 < pairs; t0 += 2048) { /* 16-bit lanes: 2048 steps x 16 < 2^16 */
                int t1 = t0 + 2048 < pairs ? t0 + 2048 : pairs;
                uint16x8_t acc = vdupq_n_u16(0);
                for (int t = t0; t < t1; t++) {
                    uint8x16_t v = veorq_u8(vld1q_u8((const uint8_t *)(ai + 2 * t)), vld1q_u8((const uint8_t *)(wo + 2 * t)));
                    acc = vpadalq_u8(acc, vcntq_u8(v));
                }
                pc += (int)vaddlvq_u16(acc);
            }
            if (words & 1) pc += (int)vaddv_u8(vcnt_u8(vcreate_u8(ai[words - 1] ^ wo[words - 1])));
            out[(size_t)i * ldo + o] = cols - 2 * pc;
        }
    }
}
#endif
