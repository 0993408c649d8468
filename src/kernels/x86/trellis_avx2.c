/* Trellis codes x float activations, AVX2 (+FMA): the twin of
 * ref/trellis_ref.c on the repacked layout of kernels/trellis_pack.h.
 *
 * Eight weights at a time: their states lie in the 16 bytes at byte
 * k (P - 8 - j0) / 8 of the sequence's stream (weights j0..j0+7, lane l the
 * window at bit k (7 - l) of that load); vbroadcasti128 + vpshufb put each
 * lane's 4 bytes in place, vpsrlvd and an and cut its L bits, and 1MAD is
 * vpmulld + vpaddd, then the byte sum by vpmaddubsw and vpmaddwd against
 * ones: ten instructions per 8 weights and no table. Batch 1 multiplies
 * the integer values v by x directly (one scale per sequence, applied to
 * the sequence's sum); larger batches decode 16 rows into a float tile and
 * run the float GEMM on it, as the generic path does.
 *
 * v2 (two weights per step): the same eight states give 16 weights, the
 * second value of each by one more vpmulld + vpaddd and byte sum. The
 * lanes hold steps 0, 1, 4, 5, 2, 3, 6, 7 of the eight, so that vunpcklps
 * and vunpckhps of the first and second values are weights 0..7 and 8..15
 * in order (no lane-crossing shuffle). Down the columns a load gives 16
 * rows (8 steps); a range starting at the second row of a step decodes
 * from its first and drops that row. */
#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels/trellis_pack.h"
#include "kernels/x86/avx2_sums.h"

#define LB_AVX2 __attribute__((target("avx2,fma")))
#define LB_INLINE __attribute__((always_inline)) inline

typedef struct {
    __m256i idx, shift, lmask, mul, add, ones8, ones16, c510;
} decoder;

/* lane l reads the window at bit (7 - step) k + res of a 16-byte load,
 * step = l, or with v2 the order that unpacking puts in place (above) */
LB_AVX2 static decoder decoder_for(int k, int L, int res, int V) {
    static const int pair_order[8] = {0, 1, 4, 5, 2, 3, 6, 7};
    decoder d;
    int8_t idx[32];
    int32_t sh[8];
    for (int l = 0; l < 8; l++) {
        int bit = (7 - (V == 2 ? pair_order[l] : l)) * k + res;
        for (int b = 0; b < 4; b++) idx[(l / 4) * 16 + (l % 4) * 4 + b] = (int8_t)(bit / 8 + b);
        sh[l] = bit % 8;
    }
    d.idx = _mm256_loadu_si256((const __m256i *)idx);
    d.shift = _mm256_loadu_si256((const __m256i *)sh);
    d.lmask = _mm256_set1_epi32((int)((1u << L) - 1));
    d.mul = _mm256_set1_epi32((int)LB_TRELLIS_1MAD_MUL);
    d.add = _mm256_set1_epi32((int)LB_TRELLIS_1MAD_ADD);
    d.ones8 = _mm256_set1_epi8(1);
    d.ones16 = _mm256_set1_epi16(1);
    d.c510 = _mm256_set1_epi32(510);
    return d;
}

/* the centred byte sums of 8 generator outputs, as floats */
LB_AVX2 static LB_INLINE __m256 byte_sums(const decoder *d, __m256i x) {
    __m256i y = _mm256_madd_epi16(_mm256_maddubs_epi16(x, d->ones8), d->ones16);
    return _mm256_cvtepi32_ps(_mm256_sub_epi32(y, d->c510));
}

/* the first generator outputs of the 8 states whose 16 bytes start at p */
LB_AVX2 static LB_INLINE __m256i outputs8(const decoder *d, const uint8_t *p) {
    __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    __m256i s = _mm256_and_si256(_mm256_srlv_epi32(_mm256_shuffle_epi8(b, d->idx), d->shift), d->lmask);
    return _mm256_add_epi32(_mm256_mullo_epi32(s, d->mul), d->add);
}

/* v of the 8 weights whose 16 bytes start at p */
LB_AVX2 static LB_INLINE __m256 decode8(const decoder *d, const uint8_t *p) { return byte_sums(d, outputs8(d, p)); }

/* v2: v of the 16 weights of the 8 steps whose 16 bytes start at p */
LB_AVX2 static LB_INLINE void decode16(const decoder *d, const uint8_t *p, __m256 *lo, __m256 *hi) {
    __m256i x = outputs8(d, p);
    __m256 first = byte_sums(d, x), second = byte_sums(d, _mm256_add_epi32(_mm256_mullo_epi32(x, d->mul), d->add));
    *lo = _mm256_unpacklo_ps(first, second);
    *hi = _mm256_unpackhi_ps(first, second);
}

/* x[j..j+8) with the lanes at or past len zero */
LB_AVX2 static LB_INLINE __m256 load_below(const float *x, int j, int len) {
    return len - j >= 8 ? _mm256_loadu_ps(x + j) : _mm256_maskload_ps(x + j, lanes_below(len - j));
}

/* x . v over one sequence of len weights (stream, P as trellis_pack.h says) */
LB_AVX2 static LB_INLINE __m256 seq_dot(const decoder *d, const uint8_t *stream, const float *xs, int P, int len, int k) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int j = 0;
    for (; j + 16 <= len; j += 16) {
        a0 = _mm256_fmadd_ps(decode8(d, stream + (size_t)((P - 8 - j) * k / 8)), _mm256_loadu_ps(xs + j), a0);
        a1 = _mm256_fmadd_ps(decode8(d, stream + (size_t)((P - 16 - j) * k / 8)), _mm256_loadu_ps(xs + j + 8), a1);
    }
    for (; j < len; j += 8)
        a0 = _mm256_fmadd_ps(decode8(d, stream + (size_t)((P - 8 - j) * k / 8)), load_below(xs, j, len), a0);
    return _mm256_add_ps(a0, a1);
}

/* v2: the same, 16 weights (8 steps, P counting steps) per load */
LB_AVX2 static LB_INLINE __m256 seq_dot_v2(const decoder *d, const uint8_t *stream, const float *xs, int P, int len,
                                           int k) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), lo, hi;
    int j = 0;
    for (; j + 16 <= len; j += 16) {
        decode16(d, stream + (size_t)((P - 8 - j / 2) * k / 8), &lo, &hi);
        a0 = _mm256_fmadd_ps(lo, _mm256_loadu_ps(xs + j), a0);
        a1 = _mm256_fmadd_ps(hi, _mm256_loadu_ps(xs + j + 8), a1);
    }
    if (j < len) {
        decode16(d, stream + (size_t)((P - 8 - j / 2) * k / 8), &lo, &hi);
        a0 = _mm256_fmadd_ps(lo, load_below(xs, j, len), a0);
        if (j + 8 < len) a1 = _mm256_fmadd_ps(hi, load_below(xs, j + 8, len), a1);
    }
    return _mm256_add_ps(a0, a1);
}

/* y[r] = x . W[r] for one activation row */
LB_AVX2 static void gemv(const lb_tensor *w, const decoder *d, const float *x, int r0, int r1, float *y) {
    const lb_trellis_pack *p = lb_trellis_packed(w);
    const lb_trellis_seq *seq = lb_trellis_seqs(w);
    for (int r = r0; r < r1; r++) {
        const float *scale = lb_trellis_scales(w) + (size_t)r * p->nseq;
        const uint8_t *row = lb_trellis_row(w, r);
        __m256 tot = _mm256_setzero_ps();
        for (int s = 0; s < p->nseq; s++) {
            const uint8_t *stream = row + seq[s].off;
            const float *xs = x + seq[s].start;
            __m256 dot = p->V == 2 ? seq_dot_v2(d, stream, xs, seq[s].padded, seq[s].len, p->k)
                                   : seq_dot(d, stream, xs, seq[s].padded, seq[s].len, p->k);
            tot = _mm256_fmadd_ps(dot, _mm256_set1_ps(scale[s]), tot);
        }
        y[r] = hsum(tot);
    }
}

/* o[j] = v of a sequence's weight j times c, j < len */
LB_AVX2 static LB_INLINE void seq_decode(const decoder *d, const uint8_t *stream, int P, int len, int k, __m256 c,
                                         float *o) {
    for (int j = 0; j < len; j += 8) {
        __m256 v = _mm256_mul_ps(decode8(d, stream + (size_t)((P - 8 - j) * k / 8)), c);
        if (len - j >= 8)
            _mm256_storeu_ps(o + j, v);
        else
            _mm256_maskstore_ps(o + j, lanes_below(len - j), v);
    }
}

/* v2: the same, 16 weights per load */
LB_AVX2 static LB_INLINE void seq_decode_v2(const decoder *d, const uint8_t *stream, int P, int len, int k, __m256 c,
                                            float *o) {
    for (int j = 0; j < len; j += 16) {
        __m256 lo, hi;
        decode16(d, stream + (size_t)((P - 8 - j / 2) * k / 8), &lo, &hi);
        lo = _mm256_mul_ps(lo, c);
        hi = _mm256_mul_ps(hi, c);
        if (len - j >= 16) {
            _mm256_storeu_ps(o + j, lo);
            _mm256_storeu_ps(o + j + 8, hi);
            continue;
        }
        _mm256_maskstore_ps(o + j, lanes_below(len - j), lo);
        if (len - j > 8) _mm256_maskstore_ps(o + j + 8, lanes_below(len - j - 8), hi);
    }
}

LB_AVX2 static void decode_row(const lb_tensor *w, const decoder *d, int r, float *out) {
    const lb_trellis_pack *p = lb_trellis_packed(w);
    const lb_trellis_seq *seq = lb_trellis_seqs(w);
    const float *scale = lb_trellis_scales(w) + (size_t)r * p->nseq;
    const uint8_t *row = lb_trellis_row(w, r);
    for (int s = 0; s < p->nseq; s++) {
        const __m256 c = _mm256_set1_ps(scale[s]);
        if (p->V == 2)
            seq_decode_v2(d, row + seq[s].off, seq[s].padded, seq[s].len, p->k, c, out + seq[s].start);
        else
            seq_decode(d, row + seq[s].off, seq[s].padded, seq[s].len, p->k, c, out + seq[s].start);
    }
}
/* down: y[r] for r0 <= r < r1, 8 rows of one piece at a time, walking the
 * columns (one 16-byte load per column gives the 8 rows' states) */
LB_AVX2 static void gemv_down(const lb_tensor *w, const decoder *dec, const float *x, int r0, int r1, float *y) {
    const lb_trellis_pack *p = lb_trellis_packed(w);
    for (int row = r0; row < r1;) {
        int first, m, res; /* first == row: one weight per step */
        const uint8_t *base = lb_trellis_down_window(w, row, r1, &first, &m, &res);
        const decoder *d = &dec[res];
        __m256 tot = _mm256_setzero_ps();
        for (int g = 0; g < p->groups; g++) {
            int c = (int)(g * p->group_len), c1 = lb_trellis_group_end(w, g);
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
            for (; c + 2 <= c1; c += 2) {
                a0 = _mm256_fmadd_ps(decode8(d, base + (size_t)c * p->row_bytes), _mm256_broadcast_ss(x + c), a0);
                a1 = _mm256_fmadd_ps(decode8(d, base + (size_t)(c + 1) * p->row_bytes), _mm256_broadcast_ss(x + c + 1), a1);
            }
            if (c < c1) a0 = _mm256_fmadd_ps(decode8(d, base + (size_t)c * p->row_bytes), _mm256_broadcast_ss(x + c), a0);
            tot = _mm256_fmadd_ps(_mm256_add_ps(a0, a1), _mm256_loadu_ps(lb_trellis_down_scales(w, g) + row), tot);
        }
        _mm256_maskstore_ps(y + row, lanes_below(m), tot);
        row += m;
    }
}

/* down: rows t0..t1 into a row-major tile */
LB_AVX2 static void decode_tile_down(const lb_tensor *w, const decoder *dec, int t0, int t1, float *tile) {
    const lb_trellis_pack *p = lb_trellis_packed(w);
    const int cols = (int)w->cols;
    float v[8];
    for (int row = t0; row < t1;) {
        int first, m, res; /* first == row: one weight per step */
        const uint8_t *base = lb_trellis_down_window(w, row, t1, &first, &m, &res);
        const decoder *d = &dec[res];
        float *out = tile + (size_t)(row - t0) * cols;
        for (int c = 0; c < cols; c++) {
            __m256 a = _mm256_loadu_ps(lb_trellis_down_scales(w, (int)(c / p->group_len)) + row);
            _mm256_storeu_ps(v, _mm256_mul_ps(decode8(d, base + (size_t)c * p->row_bytes), a));
            for (int l = 0; l < m; l++) out[(size_t)l * cols + c] = v[l];
        }
        row += m;
    }
}

/* v2 down: y[r] for r0 <= r < r1, 16 rows at a time walking the columns */
LB_AVX2 static void gemv_down_v2(const lb_tensor *w, const decoder *dec, const float *x, int r0, int r1, float *y) {
    const lb_trellis_pack *p = lb_trellis_packed(w);
    float out[16];
    for (int row = r0; row < r1;) {
        int first, m, res;
        const uint8_t *base = lb_trellis_down_window(w, row, r1, &first, &m, &res);
        const decoder *d = &dec[res];
        __m256 tot0 = _mm256_setzero_ps(), tot1 = _mm256_setzero_ps();
        for (int g = 0; g < p->groups; g++) {
            int c = (int)(g * p->group_len), c1 = lb_trellis_group_end(w, g);
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), lo, hi;
            for (; c < c1; c++) {
                __m256 xc = _mm256_broadcast_ss(x + c);
                decode16(d, base + (size_t)c * p->row_bytes, &lo, &hi);
                a0 = _mm256_fmadd_ps(lo, xc, a0);
                a1 = _mm256_fmadd_ps(hi, xc, a1);
            }
            const float *a = lb_trellis_down_scales(w, g) + first;
            tot0 = _mm256_fmadd_ps(a0, _mm256_loadu_ps(a), tot0);
            tot1 = _mm256_fmadd_ps(a1, _mm256_loadu_ps(a + 8), tot1);
        }
        _mm256_storeu_ps(out, tot0);
        _mm256_storeu_ps(out + 8, tot1);
        for (int i = 0; i < m; i++) y[row + i] = out[row - first + i];
        row += m;
    }
}

/* v2 down: rows t0..t1 into a row-major tile */
LB_AVX2 static void decode_tile_down_v2(const lb_tensor *w, const decoder *dec, int t0, int t1, float *tile) {
    const lb_trellis_pack *p = lb_trellis_packed(w);
    const int cols = (int)w->cols;
    float v[16];
    for (int row = t0; row < t1;) {
        int first, m, res;
        const uint8_t *base = lb_trellis_down_window(w, row, t1, &first, &m, &res);
        const decoder *d = &dec[res];
        float *out = tile + (size_t)(row - t0) * cols;
        for (int c = 0; c < cols; c++) {
            const float *a = lb_trellis_down_scales(w, (int)(c / p->group_len)) + first;
            __m256 lo, hi;
            decode16(d, base + (size_t)c * p->row_bytes, &lo, &hi);
            _mm256_storeu_ps(v, _mm256_mul_ps(lo, _mm256_loadu_ps(a)));
            _mm256_storeu_ps(v + 8, _mm256_mul_ps(hi, _mm256_loadu_ps(a + 8)));
            for (int i = 0; i < m; i++) out[(size_t)i * cols + c] = v[row - first + i];
        }
        row += m;
    }
}

LB_AVX2 void lb_kernel_trellis_avx2(const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                                    float *tile) {
    const lb_trellis_pack *p = lb_trellis_packed(w);
    const int v2 = p->V == 2;
    decoder d[8];
    for (int res = 0; res < (p->down ? 8 : 1); res++) d[res] = decoder_for(p->k, p->L, res, p->V);
    if (x->n == 1) {
        if (p->down)
            (v2 ? gemv_down_v2 : gemv_down)(w, d, x->f, r0, r1, y);
        else
            gemv(w, d, x->f, r0, r1, y);
        return;
    }
    int cols = (int)w->cols;
    for (int t0 = r0; t0 < r1; t0 += LB_DEQUANT_TILE) {
        int t1 = t0 + LB_DEQUANT_TILE < r1 ? t0 + LB_DEQUANT_TILE : r1;
        if (p->down)
            (v2 ? decode_tile_down_v2 : decode_tile_down)(w, d, t0, t1, tile);
        else
            for (int r = t0; r < t1; r++) decode_row(w, d, r, tile + (size_t)(r - t0) * cols);
        lb_gemm_nt_avx2(x->n, t1 - t0, cols, x->f, cols, tile, cols, y + t0, ldy);
    }
}
#endif
