/* The fixed block layouts lowbit shares byte for byte with ggml (the uniform
 * family at g32: int4:g32:sym = Q4_0, int4:g32:asym = Q4_1, int8:g32:sym =
 * Q8_0). Kernels read these structs; uniform.c writes the same bytes through
 * its generic packer, and tests/test_formats.c pins them. fp16 fields are raw
 * IEEE binary16 bits, little-endian. */
#ifndef LB_GGML_BLOCKS_H
#define LB_GGML_BLOCKS_H

#include <stdint.h>

#define LB_QK 32 /* weights per block */

typedef struct {
    uint16_t d;            /* scale */
    uint8_t qs[LB_QK / 2]; /* byte j: code j (low nibble), code j+16 (high); w = d (q - 8) */
} lb_block_q4_0;
_Static_assert(sizeof(lb_block_q4_0) == 18, "Q4_0 block is 18 bytes");

typedef struct {
    uint16_t d, m;         /* scale, minimum: w = d q + m */
    uint8_t qs[LB_QK / 2];
} lb_block_q4_1;
_Static_assert(sizeof(lb_block_q4_1) == 20, "Q4_1 block is 20 bytes");

typedef struct {
    uint16_t d;       /* scale */
    int8_t qs[LB_QK]; /* w = d q */
} lb_block_q8_0;
_Static_assert(sizeof(lb_block_q8_0) == 34, "Q8_0 block is 34 bytes");

#endif
