/* billm, AVX2 (F16C for the parameters): the twin of ref/billm_ref.c on the
 * layout of kernels/billm_pack.h. Per group and row, the eight values
 * T[4 s + q] come from the seven fp16 parameters in one vector (vcvtph2ps,
 * three vpermps for mu, +-a1 and +-a2, the signs by xor), in the format's
 * order of operations, so they equal lb_billm_value bit for bit. A chunk of
 * 8 permuted columns is decoded with a 32-bit broadcast of its codes and a
 * shift per lane (vpsrlvd by 2j leaves code j in lane j's low two bits),
 * then one vpermilps from the run's 4-entry table, copied into both
 * 128-bit halves (vpermilps reads only the low two index bits, so the
 * codes above need no mask); the chunk holding a group's salient/other
 * boundary masks the code and ors in 4 for its salient lanes, then looks up
 * all 8 entries with vpermps. Four weight rows are decoded together (their
 * group boundaries are the same), each decoded vector meeting one or two
 * activation rows; one 8-lane accumulator per (weight row, activation row),
 * summed across lanes at the row's end: each output's additions are in an
 * order fixed by the layout alone (not by the row range or the batch), so
 * threads change nothing. */
#if defined(__x86_64__)
#include <immintrin.h>
#include <string.h>

#include "formats/format_internal.h"
#include "kernels/billm_pack.h"
#include "kernels/x86/avx2_sums.h"

#define LB_AVX2 __attribute__((target("avx2,fma,f16c")))
#define ROWS 4 /* weight rows decoded together (a row's sums do not depend on its companions) */

/* the 8 values of a group, lanes 0-3 the other columns' (q = 0..3), lanes
 * 4-7 the salient ones'; gp: its parameters (the 2 bytes read past them are
 * its first codes, landing in lane 7, which no index reads) */
LB_AVX2 static inline __attribute__((always_inline)) __m256 group_table(const uint8_t *gp) {
    const __m256 e = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)gp));
    const __m256i mu = _mm256_setr_epi32(LB_BILLM_MU_C, LB_BILLM_MU_C, LB_BILLM_MU_P, LB_BILLM_MU_P, LB_BILLM_MU_S,
                                         LB_BILLM_MU_S, LB_BILLM_MU_S, LB_BILLM_MU_S);
    const __m256i a = _mm256_setr_epi32(LB_BILLM_A_C, LB_BILLM_A_C, LB_BILLM_A_P, LB_BILLM_A_P, LB_BILLM_A1,
                                        LB_BILLM_A1, LB_BILLM_A1, LB_BILLM_A1);
    const __m256 neg_b0 = _mm256_castsi256_ps(_mm256_setr_epi32((int)0x80000000u, 0, (int)0x80000000u, 0,
                                                                (int)0x80000000u, 0, (int)0x80000000u, 0));
    const __m256 neg_b1 = _mm256_castsi256_ps(_mm256_setr_epi32(0, 0, 0, 0, (int)0x80000000u, (int)0x80000000u, 0, 0));
    __m256 t = _mm256_add_ps(_mm256_permutevar8x32_ps(e, mu), _mm256_xor_ps(_mm256_permutevar8x32_ps(e, a), neg_b0));
    __m256 a2 = _mm256_xor_ps(_mm256_permutevar8x32_ps(e, _mm256_set1_epi32(LB_BILLM_A2)), neg_b1);
    return _mm256_blend_ps(t, _mm256_add_ps(t, a2), 0xF0); /* (mu_s + s0 a1) + s1 a2 on the salient lanes only */
}

/* codes of the chunk at byte c of a group's codes: code j in lane j's low bits */
LB_AVX2 static inline __attribute__((always_inline)) __m256i chunk_codes(const uint8_t *c) {
    uint32_t v;
    memcpy(&v, c, 4);
    return _mm256_srlv_epi32(_mm256_set1_epi32((int)v), _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14));
}

/* rows[0..ROWS) against activation rows xs[0..NA) (x' rows), into acc */
LB_AVX2 static inline __attribute__((always_inline)) void rows_block(const lb_billm_pack *p, const int32_t *ns,
                                                                    const uint8_t *const *rows, const float *const *xs,
                                                                    const int na, float out[ROWS][2]) {
    __m256 acc[ROWS][2];
    for (int q = 0; q < ROWS; q++) acc[q][0] = acc[q][1] = _mm256_setzero_ps();
    const __m256i three = _mm256_set1_epi32(3), four = _mm256_set1_epi32(4);
    for (int64_t g = 0; g < p->groups; g++) {
        const size_t at = lb_billm_group_at(p, g);
        const int64_t len = lb_billm_group_len(p, g), x0 = g * p->group;
        const int full = ns[g] >> 3, mixed = ns[g] & 7, chunks = (int)(len >> 3);
        __m256 t8[ROWS], t4[ROWS];
        for (int q = 0; q < ROWS; q++) {
            t8[q] = group_table(rows[q] + at);
            t4[q] = _mm256_permute2f128_ps(t8[q], t8[q], 0x11); /* salient values in both halves */
        }
        int k = 0;
        for (; k < full; k++)
            for (int q = 0; q < ROWS; q++) {
                __m256 wv = _mm256_permutevar_ps(t4[q], chunk_codes(rows[q] + at + LB_BILLM_PARAM_BYTES + 2 * k));
                for (int i = 0; i < na; i++) acc[q][i] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xs[i] + x0 + 8 * k), acc[q][i]);
            }
        if (mixed) {
            __m256i sal = _mm256_and_si256(lanes_below(mixed), four);
            for (int q = 0; q < ROWS; q++) {
                __m256i idx = _mm256_or_si256(_mm256_and_si256(chunk_codes(rows[q] + at + LB_BILLM_PARAM_BYTES + 2 * k), three), sal);
                __m256 wv = _mm256_permutevar8x32_ps(t8[q], idx);
                for (int i = 0; i < na; i++) acc[q][i] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xs[i] + x0 + 8 * k), acc[q][i]);
            }
            k++;
        }
        for (int q = 0; q < ROWS; q++) t4[q] = _mm256_permute2f128_ps(t8[q], t8[q], 0x00); /* the others' */
        for (; k < chunks; k++)
            for (int q = 0; q < ROWS; q++) {
                __m256 wv = _mm256_permutevar_ps(t4[q], chunk_codes(rows[q] + at + LB_BILLM_PARAM_BYTES + 2 * k));
                for (int i = 0; i < na; i++) acc[q][i] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xs[i] + x0 + 8 * k), acc[q][i]);
            }
    }
    for (int q = 0; q < ROWS; q++)
        for (int i = 0; i < na; i++) out[q][i] = hsum(acc[q][i]);
}

LB_AVX2 static void rows_block1(const lb_billm_pack *p, const int32_t *ns, const uint8_t *const *rows,
                                const float *const *xs, float out[ROWS][2]) {
    rows_block(p, ns, rows, xs, 1, out);
}

LB_AVX2 static void rows_block2(const lb_billm_pack *p, const int32_t *ns, const uint8_t *const *rows,
                                const float *const *xs, float out[ROWS][2]) {
    rows_block(p, ns, rows, xs, 2, out);
}

LB_AVX2 void lb_kernel_billm_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                                  float *scratch) {
    (void)scratch;
    const lb_billm_pack *p = lb_billm(w);
    const int32_t *ns = lb_billm_ns(w);
    for (int r = r0; r < r1; r += ROWS) {
        const int nr = r1 - r < ROWS ? r1 - r : ROWS;
        const uint8_t *rows[ROWS];
        for (int q = 0; q < ROWS; q++) rows[q] = lb_billm_row(w, r + (q < nr ? q : nr - 1)); /* short block: repeats */
        for (int i0 = 0; i0 < x->n; i0 += 2) {
            const float *xs[2] = {x->f + (size_t)i0 * x->ld, x->f + (size_t)(i0 + 1 < x->n ? i0 + 1 : i0) * x->ld};
            float out[ROWS][2];
            if (i0 + 1 < x->n) rows_block2(p, ns, rows, xs, out);
            else rows_block1(p, ns, rows, xs, out);
            for (int q = 0; q < nr; q++)
                for (int i = i0; i < x->n && i < i0 + 2; i++) y[(size_t)i * ldy + r + q] = out[q][i - i0];
        }
    }
}
#endif
