/* e8p, lut and vq weights x float activations, scalar: the specification
 * of x86/lookup_avx2.c. e8p and lut weights as stored (kernels/lookup.h);
 * each row is decoded into a tile, 16 rows at a time, by the kernel tables
 * (e8p) or the group's levels (lut), and multiplied by the float GEMM. vq:
 * per row and activation row, per stage, the codewords' dot products with
 * the activations, scaled once per stage (the float codebooks of
 * lb_vq_repack, the codes and scales as stored). */
#include "kernels/lookup.h"

/* e8p: out[c] = sum over stages t of scale_t * codeword_t(c / 8)[c % 8], the
 * stages added in order as e8p.c's dequantization does */
static void e8p_decode_row(const lb_tensor *w, const lb_e8p_tables *tab, int64_t r, float *out) {
    const int64_t cols = w->cols, nvec = w->layout.cols_padded / 8;
    for (int t = 0; t < lb_e8p_stages(&w->spec); t++) {
        const float a = lb_e8p_scale(w, r, t);
        const uint8_t *codes = lb_e8p_codes(w, r, t);
        const int wide = lb_e8p_wide(&w->spec, t);
        for (int64_t v = 0; v < nvec; v++) {
            unsigned code = lb_e8p_code(codes, wide, v);
            for (int i = 0; i < 8 && 8 * v + i < cols; i++) {
                float x;
                if (wide) {
                    uint32_t u;
                    memcpy(&u, &tab->src[code >> 8][i], sizeof u);
                    u ^= tab->sign[code & 255][i];
                    memcpy(&x, &u, sizeof x);
                    x += tab->shift[code & 255][i];
                } else {
                    x = tab->ball[code][i];
                }
                out[8 * v + i] = t ? out[8 * v + i] + a * x : a * x;
            }
        }
    }
}

static void lut_decode_row(const lb_tensor *w, int64_t r, float *out) {
    const int b = w->spec.bits, n = 1 << b;
    const int64_t G = w->layout.group_len;
    for (int64_t g = 0; g < lb_lut_groups(w); g++) {
        const uint8_t *levels, *codes;
        lb_lut_group(w, r, g, &levels, &codes);
        float v[16];
        for (int c = 0; c < n; c++) v[c] = lb_fp16_to_fp32(lb_rd16(levels + 2 * c));
        int64_t c0 = g * G, cnt = w->cols - c0 < G ? w->cols - c0 : G;
        for (int64_t j = 0; j < cnt; j++) out[c0 + j] = v[lb_get_bits(codes, (uint64_t)(j * b), b)];
    }
}

void lb_kernel_e8p_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *tile) {
    const lb_e8p_tables *tab = lb_e8p_kernel_tables();
    int cols = (int)w->cols;
    for (int t0 = r0; t0 < r1; t0 += LB_DEQUANT_TILE) {
        int t1 = t0 + LB_DEQUANT_TILE < r1 ? t0 + LB_DEQUANT_TILE : r1;
        for (int r = t0; r < t1; r++) e8p_decode_row(w, tab, r, tile + (size_t)(r - t0) * cols);
        lb_gemm_nt_ref(x->n, t1 - t0, cols, x->f, cols, tile, cols, y + t0, ldy);
    }
}

void lb_kernel_lut_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *tile) {
    int cols = (int)w->cols;
    for (int t0 = r0; t0 < r1; t0 += LB_DEQUANT_TILE) {
        int t1 = t0 + LB_DEQUANT_TILE < r1 ? t0 + LB_DEQUANT_TILE : r1;
        for (int r = t0; r < t1; r++) lut_decode_row(w, r, tile + (size_t)(r - t0) * cols);
        lb_gemm_nt_ref(x->n, t1 - t0, cols, x->f, cols, tile, cols, y + t0, ldy);
    }
}

void lb_kernel_vq_ref(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy, float *scratch) {
    (void)scratch;
    const int d = w->spec.vec_dim, c = w->spec.bits, stages = w->spec.vec_stages;
    const int64_t cols = w->cols, nvec = w->layout.cols_padded / d;
    for (int r = r0; r < r1; r++) {
        const uint8_t *codes = lb_vq_codes(w, r);
        for (int i = 0; i < x->n; i++) {
            const float *xi = x->f + (size_t)i * (size_t)cols;
            float sum = 0;
            for (int t = 0; t < stages; t++) {
                const float *book = lb_vq_book(w, t);
                float dot = 0;
                for (int64_t v = 0; v < nvec; v++) {
                    const float *cw = book + (size_t)lb_get_code16(codes, (uint64_t)((t * nvec + v) * c), c) * (size_t)d;
                    for (int k = 0; k < d && v * d + k < cols; k++) dot += cw[k] * xi[v * d + k];
                }
                sum += lb_vq_scale(w, r, t) * dot;
            }
            y[(size_t)i * (size_t)ldy + (size_t)r] = sum;
        }
    }
}
