/* Seeded random numbers. The generator is llama2.c's xorshift64* so that a
 * seeded top-p sample reproduces llama2.c's output token for token. */
#include "lowbit/core.h"

#include <math.h>

void lb_rng_seed(lb_rng *r, uint64_t seed) { r->state = seed ? seed : 0x9E3779B97F4A7C15ull; }

uint32_t lb_rng_u32(lb_rng *r) {
    r->state ^= r->state >> 12;
    r->state ^= r->state << 25;
    r->state ^= r->state >> 27;
    return (uint32_t)((r->state * 0x2545F4914F6CDD1Dull) >> 32);
}

float lb_rng_f32(lb_rng *r) { return (float)(lb_rng_u32(r) >> 8) / 16777216.0f; }

double lb_rng_normal(lb_rng *r) {
    /* Box-Muller on two 32-bit uniforms; u1 in (0, 1] so log() is finite */
    double u1 = ((double)lb_rng_u32(r) + 1.0) / 4294967296.0;
    double u2 = (double)lb_rng_u32(r) / 4294967296.0;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
