/* llama.cpp's tensor types that lowbit reads but does not write (issue 10
 * item 3): Q8_K and Q8_1, as ggml stores them (ggml-common.h's
 * block_* structs), so that `lowbit eval`, `info` and `generate` run
 * llama.cpp's files and `quantize` can start from them. (Q4_0, Q4_1, Q5_0,
 * Q5_1 and Q8_0 are the uniform family's, Q2_K..Q6_K kquant.c's, IQ4_NL
 * and IQ4_XS iq4.c's, TQ1_0 and TQ2_0 tq.c's, MXFP4 and NVFP4 fp4.c's:
 * those write them too.)
 * The row has no unpacked form (no grid, no codes): quantizing into it is
 * refused. The spec is the type's name; spec.ggml_type holds its id and
 * spec.group its block (32 or 256 weights); a row of another length is
 * padded to whole blocks, which llama.cpp cannot read.
 *
 * Blocks (fp16 unless said; w the weight, q its code):
 *   q8_K (292 B) d (fp32), qs[256] (int8), bsums[16] (unused): w = d q
 *   q8_1 (36 B)  d, s (d times the codes' sum, unused), qs[32] (int8): w = q d
 * Which bits of which byte belong to which weight follows ggml's
 * dequantize_row_*, and so does the float arithmetic (the same products in
 * the same order), so the values are ggml's bit for bit when both are
 * compiled without contracting a * b - c into a fused multiply-add
 * (checked against ggml's own to_float: docs/RESULTS.md, "Issue 10").
 *
 * The codebook types IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S and
 * IQ1_M are read here too (blocks of 256; their decoders and layouts are in
 * iq_read.c, ggml's grid tables in iq_grids.c). */
#include "format_internal.h"

#include <math.h>
#include <string.h>

#define QK_K 256

static float f16(const uint8_t *p) { return lb_fp16_to_fp32(lb_rd16(p)); }

static void q8_k(const uint8_t *b, float *y) {
    float d;
    memcpy(&d, b, 4); /* little-endian fp32, as GGUF */
    for (int j = 0; j < QK_K; j++) y[j] = d * (float)(int8_t)b[4 + j];
}

static void q8_1(const uint8_t *b, float *y) {
    float d = f16(b);
    for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)b[4 + j] * d;
}



/* the types: name, ggml id, weights per block, bytes per block, decoder */
static const struct {
    const char *name;
    int ggml, block, bytes;
    void (*block_to_float)(const uint8_t *b, float *y);
} types[] = {
    {"q8_1", 9, 32, 36, q8_1}, {"q8_k", 15, QK_K, 292, q8_k},
    /* the codebook types (iq_read.c, grids in iq_grids.c) */
    {"iq2_xxs", 16, QK_K, 66, lb_iq2_xxs_block}, {"iq2_xs", 17, QK_K, 74, lb_iq2_xs_block},
    {"iq3_xxs", 18, QK_K, 98, lb_iq3_xxs_block}, {"iq1_s", 19, QK_K, 50, lb_iq1_s_block},
    {"iq3_s", 21, QK_K, 110, lb_iq3_s_block},    {"iq2_s", 22, QK_K, 82, lb_iq2_s_block},
    {"iq1_m", 29, QK_K, 56, lb_iq1_m_block},
};
enum { N_TYPES = sizeof types / sizeof types[0] };

static int type_index(int ggml) {
    for (int i = 0; i < N_TYPES; i++)
        if (types[i].ggml == ggml) return i;
    return -1;
}

static void set_type(lb_qspec *s, int i) {
    s->ggml_type = types[i].ggml;
    s->group = types[i].block;
}

static int gr_match(const char *head, lb_qspec *s) {
    for (int i = 0; i < N_TYPES; i++)
        if (!strcmp(head, types[i].name)) {
            set_type(s, i);
            return 2; /* no options */
        }
    return 0;
}

static void gr_format(const lb_qspec *s, char *buf, size_t n) {
    int i = type_index(s->ggml_type);
    snprintf(buf, n, "%s", i >= 0 ? types[i].name : "ggml?");
}

static lb_status gr_validate(const lb_qspec *s) {
    int i = type_index(s->ggml_type);
    if (i < 0 || s->group != types[i].block)
        return lb_fail(LB_ERR_INVALID, "no llama.cpp type lowbit reads has ggml id %d and blocks of %d", s->ggml_type,
                       s->group);
    return LB_OK;
}

static size_t gr_row_bytes(const lb_qspec *s, const lb_layout *l) {
    return (size_t)l->groups_per_row * (size_t)types[type_index(s->ggml_type)].bytes;
}

static void gr_dequantize_row(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row, float *out) {
    int t = type_index(s->ggml_type), block = types[t].block;
    const uint8_t *src = data + (size_t)row * l->row_bytes;
    float y[QK_K];
    for (int64_t g = 0; g < l->groups_per_row; g++, src += types[t].bytes) {
        types[t].block_to_float(src, y);
        int64_t c0 = g * block, n = l->cols - c0 < block ? l->cols - c0 : block;
        memcpy(out + c0, y, (size_t)n * sizeof(float));
    }
}

static int gr_ggml_type(const lb_qspec *s, int64_t cols) {
    int i = type_index(s->ggml_type);
    return i >= 0 && cols % types[i].block == 0 ? types[i].ggml : -1;
}

static int gr_from_ggml(int type, lb_qspec *out) {
    int i = type_index(type);
    if (i < 0) return 0;
    set_type(out, i);
    return 1;
}

const lb_format_family lb_ggml_read_family = {
    .name = "ggml",
    .names = "q8_1, q8_k, iq2_xxs, iq2_xs, iq2_s, iq3_xxs, iq3_s, iq1_s, iq1_m (read only)",
    .grid = LB_GRID_NONE,
    .match = gr_match,
    .format = gr_format,
    .validate = gr_validate,
    .row_bytes = gr_row_bytes,
    .dequantize_row = gr_dequantize_row,
    .ggml_type = gr_ggml_type,
    .from_ggml = gr_from_ggml,
};
