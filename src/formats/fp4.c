/* FP4 (E2M1) weights under shared scales, the two block formats ggml
 * stores (issue 10 item 6), written and read byte for byte:
 *   mxfp4 (ggml 39, OCP Microscaling): 17 B per 32 weights, 4.25 bpw:
 *     e (E8M0: the scale 2^(e - 127)), qs[16] (weight j in the low nibble
 *     of byte j, weight j + 16 in its high nibble): w = 2^(e - 127) E2M1[q]
 *   nvfp4 (ggml 40, NVIDIA's): 36 B per 64 weights, 4.5 bpw plus 32 bits per
 *     tensor: d[4] (UE4M3, an unsigned E4M3, one per 16 weights; 0x7f reads
 *     as 0), qs[32] (weights of sub-block s in bytes 8s..8s+7: weight j in
 *     the low nibble of byte 8s + j, j + 8 in its high nibble):
 *     w = T UE4M3(d) E2M1[q], T an fp32 per tensor (NVIDIA's second scale
 *     level) in the tensor tail; in a GGUF file T is llama.cpp's optional
 *     "<tensor>.scale" (f32, one value), which multiplies the matmul's
 *     output (model_gguf.c writes and reads it).
 * E2M1: 0 0.5 1 1.5 2 3 4 6, code bit 3 the sign. ggml keeps the values
 * doubled (integers 0..12) with scales halved; the products are exact in
 * both conventions, so the values are ggml's to_float bit for bit (for
 * nvfp4 before T, which llama.cpp applies after the dot product).
 *
 * Scales are searched on what is stored (round_scale): rtn's clip rules
 * and its mse search score mxfp4 candidates rounded to the nearest power of
 * two (in log2) and nvfp4's rounded to T times the nearest UE4M3 value.
 * ggml's quantizers take one rule each (mxfp4: 2^(floor(log2 amax) - 2),
 * nvfp4: UE4M3(amax / 6) with no T), which for weights of ~1e-2 puts
 * nvfp4's block scales in UE4M3's subnormal range (2^-9 steps) where 3
 * bits or fewer are left: T = amax(W) / (6 * 448) moves the largest block
 * scale onto UE4M3's largest value (METHODS.md: naive NVFP4 reaches only
 * ~Q3_K quality). A tensor scale fixes the grid of every group, so gptq
 * keeps the groups rtn fitted on the initial weights (lb_format_tensor_scaled).
 * Rows that are not whole blocks are padded (lowbit reads them; llama.cpp
 * cannot): a plan falls back from nvfp4 to mxfp4 (f16 when 32 does not
 * divide the row; llama-quantize has no fallback for either). */
#include "format_internal.h"

#include <math.h>
#include <string.h>

#define GGML_MXFP4 39
#define GGML_NVFP4 40

static const float e2m1[16] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6, -0.0f, -0.5f, -1, -1.5f, -2, -3, -4, -6};
const int8_t lb_mxfp4_values[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
#define e2m1_x2 lb_mxfp4_values
#define e8m0_half lb_e8m0_half

static int is_nv(const lb_qspec *s) { return s->ggml_type == GGML_NVFP4; }
static int block_len(const lb_qspec *s) { return is_nv(s) ? 64 : 32; }

/* ---- the scale encodings ------------------------------------------------------ */

/* 2^(e - 127) for the codes a quantizer writes (0..254) */
static float e8m0_value(unsigned e) { return ldexpf(1.0f, (int)e - 127); }

/* the E8M0 byte of the power of two nearest s in log2 (s > 0), clamped to 0..254 */
static unsigned e8m0_nearest(float s) {
    if (!(s > 0.0f)) return 0;
    int e;
    float m = frexpf(s, &e); /* s = m 2^e, m in [0.5, 1) */
    int x = m >= 0.70710678f ? e : e - 1;
    x += 127;
    return x < 0 ? 0u : x > 254 ? 254u : (unsigned)x;
}

/* UE4M3 codes 0..0x7e ascend (lb_ue4m3_half, format_internal.h) */
#define ue4m3_half lb_ue4m3_half
static float ue4m3_value(unsigned b) { return 2.0f * ue4m3_half(b); }

/* the code of the UE4M3 value nearest v (v >= 0), by bisection over the ascending codes */
static unsigned ue4m3_nearest(float v) {
    if (!(v > 0.0f)) return 0;
    unsigned lo = 0, hi = 0x7e;
    if (v >= ue4m3_value(hi)) return hi;
    while (hi - lo > 1) {
        unsigned mid = (lo + hi) / 2;
        if (ue4m3_value(mid) <= v) lo = mid;
        else hi = mid;
    }
    return v - ue4m3_value(lo) <= ue4m3_value(hi) - v ? lo : hi;
}

/* ---- spec text and layout ------------------------------------------------------ */

static void set_type(lb_qspec *s, int nv) {
    s->bits = 4;
    s->group = nv ? 16 : 32;
    s->ggml_type = nv ? GGML_NVFP4 : GGML_MXFP4;
}

static int fp4_match(const char *head, lb_qspec *s) {
    if (strcmp(head, "mxfp4") && strcmp(head, "nvfp4")) return 0;
    set_type(s, head[0] == 'n');
    return 2; /* no options */
}

static void fp4_format(const lb_qspec *s, char *buf, size_t n) { snprintf(buf, n, is_nv(s) ? "nvfp4" : "mxfp4"); }

static lb_status fp4_validate(const lb_qspec *s) {
    if ((s->ggml_type != GGML_MXFP4 && s->ggml_type != GGML_NVFP4) || s->bits != 4 ||
        s->group != (is_nv(s) ? 16 : 32))
        return lb_fail(LB_ERR_INVALID, "mxfp4 / nvfp4: 4-bit E2M1 codes under a scale per 32 / 16 weights (ggml "
                                       "types 39 and 40), not ggml type %d, groups of %d", s->ggml_type, s->group);
    return LB_OK;
}

/* groups of 32 (mxfp4) or 16 (nvfp4) over rows padded to whole blocks */
static void fp4_shape(const lb_qspec *s, lb_layout *l) {
    l->cols_padded = lb_round_up(l->cols, block_len(s));
    l->group_len = s->group;
    l->groups_per_row = l->cols_padded / s->group;
    l->n_groups = l->rows * l->groups_per_row;
}

static size_t fp4_row_bytes(const lb_qspec *s, const lb_layout *l) {
    return (size_t)(l->cols_padded / block_len(s)) * (is_nv(s) ? 36 : 17);
}

static size_t fp4_tail_bytes(const lb_qspec *s, const lb_layout *l) {
    (void)l;
    return is_nv(s) ? 4 : 0;
}

static int fp4_levels(const lb_qspec *s) {
    (void)s;
    return 16;
}

static float fp4_level(const lb_qspec *s, int code) {
    (void)s;
    return e2m1[code & 15];
}

/* ---- scales --------------------------------------------------------------------- */

/* scale_code[k]: mxfp4's E8M0 byte, nvfp4's UE4M3 byte */
static lb_status fp4_qtensor_init(lb_qtensor *q) {
    q->scale_code = lb_calloc((size_t)q->n_groups, 1);
    q->tensor_scale = 1.0f;
    return q->scale_code ? LB_OK : LB_ERR_NOMEM;
}

static float fp4_round_scale(const lb_qtensor *q, float s) {
    if (is_nv(&q->spec)) return q->tensor_scale * ue4m3_value(ue4m3_nearest(fabsf(s) / q->tensor_scale));
    return e8m0_value(e8m0_nearest(fabsf(s)));
}

/* nvfp4's T: the largest block scale (amax / 6) onto UE4M3's largest, 448 */
static void fp4_fit_tensor(lb_qtensor *q, const float *w, int64_t rows, int64_t cols) {
    if (!is_nv(&q->spec)) return;
    float amax = 0.0f;
    for (int64_t i = 0; i < rows * cols; i++) amax = fmaxf(amax, fabsf(w[i]));
    q->tensor_scale = amax > 0.0f ? amax / (6.0f * 448.0f) : 1.0f;
}

static lb_status fp4_store_scales(lb_qtensor *q) {
    int nv = is_nv(&q->spec);
    if (nv && !(isfinite(q->tensor_scale) && q->tensor_scale > 0.0f))
        return lb_fail(LB_ERR_NUMERIC, "nvfp4: the tensor scale %g is not a positive number", (double)q->tensor_scale);
    for (int64_t k = 0; k < q->n_groups; k++) {
        float s = fabsf(q->scale[k]);
        if (!isfinite(s)) return lb_fail(LB_ERR_NUMERIC, "group %lld: scale is not finite", (long long)k);
        unsigned c = nv ? ue4m3_nearest(s / q->tensor_scale) : e8m0_nearest(s);
        q->scale_code[k] = (uint8_t)c;
        q->scale[k] = nv ? q->tensor_scale * ue4m3_value(c) : e8m0_value(c);
        q->offset[k] = 0.0f;
    }
    return LB_OK;
}

/* the value as dequantize_row computes it (ggml's product, then T) */
static float fp4_code_value(const lb_qtensor *q, int64_t k, int code) {
    if (is_nv(&q->spec)) return (float)e2m1_x2[code & 15] * ue4m3_half(q->scale_code[k]) * q->tensor_scale;
    return (float)e2m1_x2[code & 15] * e8m0_half(q->scale_code[k]);
}

/* ---- bytes ---------------------------------------------------------------------- */

static void fp4_encode_row(const lb_qtensor *q, int64_t row, uint8_t *dst) {
    const uint8_t *c = q->codes + row * q->cols_padded;
    const uint8_t *sc = q->scale_code + row * q->groups_per_row;
    if (is_nv(&q->spec)) {
        for (int64_t b = 0; b < q->cols_padded / 64; b++, dst += 36, c += 64, sc += 4) {
            for (int s = 0; s < 4; s++) {
                dst[s] = sc[s];
                for (int j = 0; j < 8; j++) dst[4 + 8 * s + j] = (uint8_t)(c[16 * s + j] | c[16 * s + 8 + j] << 4);
            }
        }
        return;
    }
    for (int64_t b = 0; b < q->cols_padded / 32; b++, dst += 17, c += 32) {
        dst[0] = sc[b];
        for (int j = 0; j < 16; j++) dst[1 + j] = (uint8_t)(c[j] | c[j + 16] << 4);
    }
}

static void fp4_decode_row(lb_qtensor *q, int64_t row, const uint8_t *src) {
    uint8_t *c = q->codes + row * q->cols_padded;
    int64_t k0 = row * q->groups_per_row;
    int nv = is_nv(&q->spec);
    for (int64_t b = 0; b < q->cols_padded / block_len(&q->spec); b++) {
        const uint8_t *blk = src + (size_t)b * (nv ? 36 : 17);
        for (int s = 0; s < (nv ? 4 : 1); s++) {
            int64_t k = k0 + b * (nv ? 4 : 1) + s;
            unsigned code = nv ? (blk[s] == 0x7f ? 0u : blk[s]) : blk[0];
            q->scale_code[k] = (uint8_t)code;
            q->scale[k] = nv ? q->tensor_scale * ue4m3_value(code) : e8m0_value(code);
            q->offset[k] = 0.0f;
            const uint8_t *qs = nv ? blk + 4 + 8 * s : blk + 1;
            int half = nv ? 8 : 16;
            uint8_t *cc = c + b * block_len(&q->spec) + (nv ? 16 * s : 0);
            for (int j = 0; j < half; j++) {
                cc[j] = qs[j] & 15;
                cc[j + half] = qs[j] >> 4;
            }
        }
    }
}

static float tail_scale(const lb_qspec *s, const lb_layout *l, const uint8_t *data) {
    return is_nv(s) ? lb_nvfp4_tensor_scale(l, data) : 1.0f;
}

static void fp4_encode_tail(const lb_qtensor *q, uint8_t *dst) {
    if (!is_nv(&q->spec)) return;
    uint32_t u;
    memcpy(&u, &q->tensor_scale, 4);
    lb_wr32(dst, u);
}

static void fp4_decode_tail(lb_qtensor *q, const uint8_t *src) {
    if (!is_nv(&q->spec)) return;
    uint32_t u = lb_rd32(src);
    memcpy(&q->tensor_scale, &u, 4); /* before the rows (lb_qtensor_decode): their scales take T */
}

/* a tensor scale that is not a positive number is corruption */
static lb_status fp4_check_bytes(const lb_qspec *s, const lb_layout *l, const uint8_t *data) {
    float t = tail_scale(s, l, data);
    if (!(isfinite(t) && t > 0.0f))
        return lb_fail(LB_ERR_FORMAT, "nvfp4: the tensor scale %g is not a positive number", (double)t);
    return LB_OK;
}

/* ggml's dequantize_row_mxfp4 / _nvfp4: (float)kvalues[q] * half-scale (nvfp4: then T) */
static void fp4_dequantize_row(const lb_qspec *s, const lb_layout *l, const uint8_t *data, int64_t row, float *out) {
    const uint8_t *src = data + (size_t)row * l->row_bytes;
    int nv = is_nv(s), bl = block_len(s);
    float t = tail_scale(s, l, data), y[64];
    for (int64_t b = 0; b < l->cols_padded / bl; b++) {
        const uint8_t *blk = src + (size_t)b * (nv ? 36 : 17);
        if (nv) {
            for (int sb = 0; sb < 4; sb++) {
                float d = ue4m3_half(blk[sb]);
                for (int j = 0; j < 8; j++) {
                    y[16 * sb + j] = (float)e2m1_x2[blk[4 + 8 * sb + j] & 15] * d * t;
                    y[16 * sb + j + 8] = (float)e2m1_x2[blk[4 + 8 * sb + j] >> 4] * d * t;
                }
            }
        } else {
            float d = e8m0_half(blk[0]);
            for (int j = 0; j < 16; j++) {
                y[j] = (float)e2m1_x2[blk[1 + j] & 15] * d;
                y[j + 16] = (float)e2m1_x2[blk[1 + j] >> 4] * d;
            }
        }
        int64_t c0 = b * bl, n = l->cols - c0 < bl ? l->cols - c0 : bl;
        memcpy(out + c0, y, (size_t)n * sizeof(float));
    }
}

static int fp4_ggml_type(const lb_qspec *s, int64_t cols) { return cols % block_len(s) == 0 ? s->ggml_type : -1; }

static int fp4_from_ggml(int type, lb_qspec *out) {
    if (type != GGML_MXFP4 && type != GGML_NVFP4) return 0;
    set_type(out, type == GGML_NVFP4);
    return 1;
}

static int fp4_ggml_fallback(const lb_qspec *s, int64_t cols, lb_qspec *out) {
    if (cols % block_len(s) == 0) return 0;
    return lb_qspec_parse(cols % 32 ? "f16" : "mxfp4", out) == LB_OK;
}

const lb_format_family lb_fp4_family = {
    .name = "fp4",
    .names = "mxfp4, nvfp4",
    .grid = LB_GRID_ABSMAX,
    .match = fp4_match,
    .format = fp4_format,
    .validate = fp4_validate,
    .shape = fp4_shape,
    .row_bytes = fp4_row_bytes,
    .tail_bytes = fp4_tail_bytes,
    .levels = fp4_levels,
    .level = fp4_level,
    .code_value = fp4_code_value,
    .round_scale = fp4_round_scale,
    .fit_tensor = fp4_fit_tensor,
    .qtensor_init = fp4_qtensor_init,
    .store_scales = fp4_store_scales,
    .encode_row = fp4_encode_row,
    .decode_row = fp4_decode_row,
    .encode_tail = fp4_encode_tail,
    .decode_tail = fp4_decode_tail,
    .check_bytes = fp4_check_bytes,
    .dequantize_row = fp4_dequantize_row,
    .ggml_type = fp4_ggml_type,
    .from_ggml = fp4_from_ggml,
    .ggml_fallback = fp4_ggml_fallback,
};
