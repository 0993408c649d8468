/* Trellis-coded quantization (QTIP, Tseng et al. 2024; METHODS.md s26):
 * a bitshift trellis with a large state and a computed codebook, encoded by
 * the Viterbi algorithm. See trellis.h for the stream; here the search.
 *
 * Viterbi over the 2^L states: the predecessors of state s are the states
 * (s >> k) | h << (L - k) for the 2^k dropped codes h, so their best cost
 * depends only on s >> k: one pass takes the minimum over h for each of the
 * 2^(L-k) prefixes, the next adds each state's own error. That is
 * O(T 2^L) per sequence, and the argmin per prefix (T x 2^(L-k) small
 * integers) is kept for the traceback.
 *
 * With V = 2 weights per step (QTIP's V; the format's "v2") nothing
 * changes but the state's own error, which is the sum of its two weights'
 * (each weighted): the search is the same over steps instead of weights. */
#include "quant/trellis.h"

#include <math.h>
#include <string.h>

lb_status lb_trellis_init(lb_trellis *t, int L, int k) { return lb_trellis_init_v(t, L, k, 1); }

lb_status lb_trellis_init_v(lb_trellis *t, int L, int k, int V) {
    memset(t, 0, sizeof *t);
    const int kmax = V == 2 ? 6 : 4;
    if ((V != 1 && V != 2) || k < 1 || k > kmax || L < k || L > LB_TRELLIS_MAX_STATE || L % k)
        return lb_fail(LB_ERR_INVALID, "trellis: L = %d, k = %d, V = %d (V 1 or 2, k in 1..%d dividing L, L <= %d)", L,
                       k, V, kmax, LB_TRELLIS_MAX_STATE);
    t->L = L;
    t->k = k;
    t->V = V;
    if (!(t->table = lb_alloc((sizeof(float) << L) * (size_t)V))) return LB_ERR_NOMEM;
    for (uint32_t s = 0; s < 1u << L; s++) {
        if (V == 2) lb_trellis_1mad2(s, t->table + 2 * s);
        else t->table[s] = lb_trellis_1mad(s);
    }
    return LB_OK;
}

lb_status lb_trellis_for_spec(lb_trellis *t, const lb_qspec *spec) {
    return lb_trellis_init_v(t, spec->state_bits, spec->bits, lb_trellis_step_weights(spec));
}

void lb_trellis_free(lb_trellis *t) {
    lb_free(t->table);
    memset(t, 0, sizeof *t);
}

lb_status lb_trellis_work_init(lb_trellis_work *w, const lb_trellis *t, int T) {
    memset(w, 0, sizeof *w);
    w->T = T;
    w->cost = lb_alloc(sizeof(float) << t->L);
    w->next = lb_alloc(sizeof(float) << t->L);
    w->from = lb_alloc((size_t)T * (sizeof(uint16_t) << (t->L - t->k)));
    w->rolled = lb_alloc((size_t)T * (size_t)t->V * sizeof(float));
    w->rolled_wt = lb_alloc((size_t)T * (size_t)t->V * sizeof(float));
    w->rcodes = lb_alloc((size_t)T);
    w->pm = lb_alloc(sizeof(float) << (t->L - t->k));
    if (!w->cost || !w->next || !w->from || !w->rolled || !w->rolled_wt || !w->rcodes || !w->pm) {
        lb_trellis_work_free(w);
        return LB_ERR_NOMEM;
    }
    return LB_OK;
}

void lb_trellis_work_free(lb_trellis_work *w) {
    lb_free(w->cost);
    lb_free(w->next);
    lb_free(w->from);
    lb_free(w->rolled);
    lb_free(w->rolled_wt);
    lb_free(w->rcodes);
    lb_free(w->pm);
    memset(w, 0, sizeof *w);
}

/* One step: next[s] = min over the dropped code h of cost[(s >> k) + h P]
 * plus the state's own error (V weights, each weighted); from[u] records
 * the best h per prefix u. Branch-free selects and H, V constants (H = 2^k)
 * let both loops vectorize. */
static inline __attribute__((always_inline)) void step(const float *restrict cost, float *restrict next,
                                                       float *restrict pm, uint16_t *restrict from,
                                                       const float *restrict tab, const float *xi, const float *wi,
                                                       int P, int H, int V) {
    for (int u = 0; u < P; u++) pm[u] = cost[u], from[u] = 0;
    for (int h = 1; h < H; h++) {
        const float *c = cost + (size_t)h * (size_t)P;
        for (int u = 0; u < P; u++) {
            int better = c[u] < pm[u];
            pm[u] = better ? c[u] : pm[u];
            from[u] = better ? (uint16_t)h : from[u];
        }
    }
    const float x0 = xi[0], w0 = wi[0], x1 = V == 2 ? xi[1] : 0.0f, w1 = V == 2 ? wi[1] : 0.0f;
    for (int u = 0; u < P; u++) {
        const float *tu = tab + (size_t)u * (size_t)H * (size_t)V;
        float *nu = next + (size_t)u * (size_t)H;
        for (int j = 0; j < H; j++) {
            float d = x0 - tu[V * j], e = w0 * d * d;
            if (V == 2) {
                float d1 = x1 - tu[V * j + 1];
                e += w1 * d1 * d1;
            }
            nu[j] = pm[u] + e;
        }
    }
}

/* step with H and V constants: one instance per (k, V) */
static void step_any(const float *cost, float *next, float *pm, uint16_t *from, const float *tab, const float *xi,
                     const float *wi, int P, int k, int V) {
    switch (V * 8 + k) {
    case 9: step(cost, next, pm, from, tab, xi, wi, P, 2, 1); break;
    case 10: step(cost, next, pm, from, tab, xi, wi, P, 4, 1); break;
    case 11: step(cost, next, pm, from, tab, xi, wi, P, 8, 1); break;
    case 12: step(cost, next, pm, from, tab, xi, wi, P, 16, 1); break;
    case 17: step(cost, next, pm, from, tab, xi, wi, P, 2, 2); break;
    case 18: step(cost, next, pm, from, tab, xi, wi, P, 4, 2); break;
    case 19: step(cost, next, pm, from, tab, xi, wi, P, 8, 2); break;
    case 20: step(cost, next, pm, from, tab, xi, wi, P, 16, 2); break;
    case 21: step(cost, next, pm, from, tab, xi, wi, P, 32, 2); break;
    default: step(cost, next, pm, from, tab, xi, wi, P, 64, 2); break;
    }
}

double lb_trellis_viterbi(const lb_trellis *t, lb_trellis_work *w, const float *x, const float *wt, int T,
                          int overlap, uint8_t *codes, uint32_t *first_state) {
    const int L = t->L, k = t->k, V = t->V, S = 1 << L, P = 1 << (L - k), H = 1 << k;
    const uint32_t low = (uint32_t)P - 1;
    float *cost = w->cost, *next = w->next;
    const float *tab = t->table;
    const float ones[2] = {1.0f, 1.0f};
    for (int s = 0; s < S; s++) {
        float e = 0.0f;
        for (int v = 0; v < V; v++) {
            float d = x[v] - tab[V * s + v];
            e += (wt ? wt[v] : 1.0f) * d * d;
        }
        cost[s] = overlap < 0 || (s >> k) == overlap ? e : INFINITY;
    }
    float *pm = w->pm;
    for (int i = 1; i < T; i++) {
        uint16_t *from = w->from + (size_t)i * (size_t)P;
        step_any(cost, next, pm, from, tab, x + V * i, wt ? wt + V * i : ones, P, k, V);
        float *tmp = cost;
        cost = next;
        next = tmp;
    }
    /* the end: circular streams end in a state whose low L-k bits are the overlap */
    int end = -1;
    float best = INFINITY;
    for (int s = 0; s < S; s++)
        if ((overlap < 0 || (uint32_t)(s & (int)low) == (uint32_t)overlap) && cost[s] < best) best = cost[s], end = s;
    if (end < 0) end = 0; /* every path infinite: cannot happen for finite x */
    uint32_t s = (uint32_t)end;
    for (int i = T - 1; i >= 1; i--) {
        codes[i] = (uint8_t)(s & (uint32_t)(H - 1));
        uint32_t u = s >> k;
        s = u | (uint32_t)w->from[(size_t)i * (size_t)P + u] << (L - k);
    }
    codes[0] = (uint8_t)(s & (uint32_t)(H - 1));
    if (first_state) *first_state = s;
    return (double)best;
}

double lb_trellis_encode(const lb_trellis *t, lb_trellis_work *w, const float *x, const float *wt, int T,
                         uint8_t *codes) {
    /* first pass: x rotated by half, so that the original wrap-around sits
     * mid-sequence; the state reached at the original first weight gives
     * the overlap (its high L-k bits are the codes of the last weights) */
    float *rolled = w->rolled;
    uint8_t *rc = w->rcodes;
    int half = T / 2, V = t->V;
    float *rwt = wt ? w->rolled_wt : NULL;
    for (int i = 0; i < T; i++)
        for (int v = 0; v < V; v++) {
            rolled[V * i + v] = x[V * ((i + T - half) % T) + v];
            if (wt) rwt[V * i + v] = wt[V * ((i + T - half) % T) + v];
        }
    lb_trellis_viterbi(t, w, rolled, rwt, T, -1, rc, NULL);
    uint32_t s0 = 0;
    for (int j = 0; j < t->L / t->k; j++) /* state at w_0 (circularly: T may be under 2 L / k) */
        s0 |= (uint32_t)rc[((half - j) % T + T) % T] << (j * t->k);
    return lb_trellis_viterbi(t, w, x, wt, T, (int)(s0 >> t->k), codes, NULL);
}

void lb_trellis_decode(const lb_trellis *t, const uint8_t *codes, int T, float *out) {
    lb_trellis_decode_steps(t->L, t->k, t->V, codes, T, out);
}

/* The scale per unit-variance codebook value that the bench_rd search
 * picked on N(0, 1) at L = 12 (docs/methods/trellis.md), per k; for V = 2
 * per k at L = 12 (k = 5: L = 15) */
static float default_alpha(int k, int V) {
    static const float a[5] = {0, 0.875f, 1.075f, 1.025f, 1.125f};
    static const float a2[7] = {0, 0.70f, 0.85f, 0.95f, 1.05f, 1.05f, 1.125f};
    return V == 2 ? a2[k] : a[k];
}

/* every overlap tried: exact, for sequences too short for the rotated first pass */
static double encode_short(const lb_trellis *t, lb_trellis_work *w, const float *x, const float *wt, int T,
                           uint8_t *codes, uint8_t *tmp) {
    double best = INFINITY;
    for (int o = 0; o < 1 << (t->L - t->k); o++) {
        double e = lb_trellis_viterbi(t, w, x, wt, T, o, tmp, NULL);
        if (e < best) best = e, memcpy(codes, tmp, (size_t)T);
    }
    return best;
}

double lb_trellis_encode_any(const lb_trellis *t, lb_trellis_work *w, const float *x, const float *wt, int T,
                             uint8_t *codes) {
    /* short sequences: every overlap when there are at most 256 of them (or
     * the state is longer than the sequence); else the rotated pass, whose
     * cost does not grow 2^(L-k)-fold (v2's 16-step columns of 32 rows) */
    const int n = t->L / t->k;
    if (T >= 2 * n || (T >= n && t->L - t->k > 8)) return lb_trellis_encode(t, w, x, wt, T, codes);
    uint8_t tmp[LB_TRELLIS_MAX_SEQ];
    return encode_short(t, w, x, wt, T, codes, tmp);
}

lb_status lb_trellis_fit_scales(const float *w, int64_t rows, int64_t cols, lb_qtensor *q) {
    /* the RMS of each group's real weights (padding excluded) times alpha */
    const int64_t span = q->groups_per_row ? q->group_len : q->cols_padded;
    const float alpha = default_alpha(q->spec.bits, lb_trellis_step_weights(&q->spec));
    if (q->groups_per_row == 0) {
        double ss = 0;
        for (int64_t i = 0; i < rows * cols; i++) ss += (double)w[i] * w[i];
        q->scale[0] = (float)(sqrt(ss / (double)(rows * cols)) * alpha);
    } else {
        for (int64_t r = 0; r < rows; r++)
            for (int64_t g = 0; g < q->groups_per_row; g++) {
                int64_t c0 = g * span, c1 = c0 + span < cols ? c0 + span : cols;
                double ss = 0;
                for (int64_t c = c0; c < c1; c++) ss += (double)w[r * cols + c] * w[r * cols + c];
                q->scale[r * q->groups_per_row + g] = c1 > c0 ? (float)(sqrt(ss / (double)(c1 - c0)) * alpha) : 0.0f;
            }
    }
    return lb_qtensor_store_scales(q); /* fp16, as stored */
}

void lb_trellis_put_codes(lb_qtensor *q, int64_t row, int64_t col, int down, const uint8_t *codes, int64_t len) {
    const int V = lb_trellis_step_weights(&q->spec);
    for (int64_t j = 0; j < len; j++) {
        int64_t r = down ? row + j : row, c = down ? col : col + j;
        q->codes[r * q->cols_padded + c] = j % V ? 0 : codes[j / V];
    }
}

lb_status lb_trellis_quantize(const float *w, int64_t rows, int64_t cols, lb_qtensor *q) {
    const int V = lb_trellis_step_weights(&q->spec);
    const int64_t span = q->groups_per_row ? q->group_len : q->cols_padded;
    lb_status st = lb_trellis_fit_scales(w, rows, cols, q);
    if (st != LB_OK) return st;
    lb_trellis t;
    if ((st = lb_trellis_for_spec(&t, &q->spec)) != LB_OK) return st;
    lb_worker_error err;
    lb_worker_error_init(&err);
#pragma omp parallel if (rows * cols >= 4096)
    {
        lb_trellis_work wk;
        float x[LB_TRELLIS_MAX_SEQ], wt[LB_TRELLIS_MAX_SEQ];
        uint8_t cd[LB_TRELLIS_MAX_SEQ];
        if (lb_trellis_work_init(&wk, &t, LB_TRELLIS_MAX_SEQ / V) != LB_OK)
            lb_worker_error_set(&err, lb_fail(LB_ERR_NOMEM, "out of memory for the trellis search"));
        if (q->spec.seq_down) {
            /* each column's pieces of rows, weights scale^2 (the error in w's
             * units); an odd piece's missing last weight weighs 0 */
#pragma omp for schedule(dynamic, 4)
            for (int64_t c = 0; c < q->cols_padded; c++) {
                if (lb_worker_error_failed(&err)) continue;
                for (int64_t p = 0; p < lb_trellis_step_segments(rows, V); p++) {
                    int64_t r0, len;
                    lb_trellis_step_segment(rows, V, p, &r0, &len);
                    int64_t steps = (len + V - 1) / V;
                    for (int64_t j = 0; j < steps * V; j++) {
                        float a = j < len ? q->scale[lb_qtensor_group(q, r0 + j, c)] : 0.0f;
                        x[j] = j < len && c < cols && a != 0.0f ? w[(r0 + j) * cols + c] / a : 0.0f;
                        wt[j] = j >= len ? 0.0f : a != 0.0f ? a * a : 1.0f;
                    }
                    lb_trellis_encode_any(&t, &wk, x, wt, (int)steps, cd);
                    lb_trellis_put_codes(q, r0, c, 1, cd, len);
                }
            }
        } else {
#pragma omp for schedule(dynamic, 1)
            for (int64_t r = 0; r < rows; r++) {
                if (lb_worker_error_failed(&err)) continue;
                for (int64_t g = 0; g < q->cols_padded / span; g++) {
                    float a = q->scale[q->groups_per_row ? r * q->groups_per_row + g : 0];
                    for (int64_t p = 0; p < lb_trellis_step_segments(span, V); p++) {
                        int64_t start, len; /* span is a multiple of 8: whole steps */
                        lb_trellis_step_segment(span, V, p, &start, &len);
                        int64_t c0 = g * span + start;
                        for (int64_t j = 0; j < len; j++)
                            x[j] = c0 + j < cols && a != 0.0f ? w[r * cols + c0 + j] / a : 0.0f;
                        lb_trellis_encode_any(&t, &wk, x, NULL, (int)(len / V), cd);
                        lb_trellis_put_codes(q, r, c0, 0, cd, len);
                    }
                }
            }
        }
        lb_trellis_work_free(&wk);
    }
    lb_trellis_free(&t);
    return lb_worker_error_raise(&err);
}
