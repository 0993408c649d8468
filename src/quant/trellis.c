/* Trellis-coded quantization (QTIP, Tseng et al. 2024; METHODS.md s26):
 * a bitshift trellis with a large state and a computed codebook, encoded by
 * the Viterbi algorithm. See trellis.h for the stream; here the search.
 *
 * Viterbi over the 2^L states: the predecessors of state s are the states
 * (s >> k) | h << (L - k) for the 2^k dropped codes h, so their best cost
 * depends only on s >> k: one pass takes the minimum over h for each of the
 * 2^(L-k) prefixes, the next adds each state's own error. That is
 * O(T 2^L) per sequence, and the argmin per prefix (T x 2^(L-k) small
 * integers) is kept for the traceback. */
#include "quant/trellis.h"

#include <math.h>
#include <string.h>

float lb_trellis_1mad(uint32_t state) {
    uint32_t x = state * 34038481u + 76625530u;
    int y = (int)(x & 255) + (int)(x >> 8 & 255) + (int)(x >> 16 & 255) + (int)(x >> 24);
    /* four iid uniform bytes: mean 510, variance 4 (256^2 - 1) / 12 = 21845 */
    return (float)(y - 510) / 147.800537f;
}

lb_status lb_trellis_init(lb_trellis *t, int L, int k) {
    memset(t, 0, sizeof *t);
    if (k < 1 || k > 4 || L < k || L > LB_TRELLIS_MAX_L || L % k)
        return lb_fail(LB_ERR_INVALID, "trellis: L = %d, k = %d (k in 1..4 dividing L, L <= %d)", L, k,
                       LB_TRELLIS_MAX_L);
    t->L = L;
    t->k = k;
    if (!(t->table = lb_alloc(sizeof(float) << L))) return LB_ERR_NOMEM;
    for (uint32_t s = 0; s < 1u << L; s++) t->table[s] = lb_trellis_1mad(s);
    return LB_OK;
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
    w->rolled = lb_alloc((size_t)T * sizeof(float));
    w->rcodes = lb_alloc((size_t)T);
    w->pm = lb_alloc(sizeof(float) << (t->L - t->k));
    if (!w->cost || !w->next || !w->from || !w->rolled || !w->rcodes || !w->pm) {
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
    lb_free(w->rcodes);
    lb_free(w->pm);
    memset(w, 0, sizeof *w);
}

/* One step: next[s] = min over the dropped code h of cost[(s >> k) + h P]
 * plus the state's own error; from[u] records the best h per prefix u.
 * Branch-free selects and H a constant (H = 2^k) let both loops vectorize. */
static inline __attribute__((always_inline)) void step(const float *restrict cost, float *restrict next,
                                                       float *restrict pm, uint16_t *restrict from,
                                                       const float *restrict tab, float xi, int P, int H) {
    for (int u = 0; u < P; u++) pm[u] = cost[u], from[u] = 0;
    for (int h = 1; h < H; h++) {
        const float *c = cost + (size_t)h * (size_t)P;
        for (int u = 0; u < P; u++) {
            int better = c[u] < pm[u];
            pm[u] = better ? c[u] : pm[u];
            from[u] = better ? (uint16_t)h : from[u];
        }
    }
    for (int u = 0; u < P; u++) {
        const float *tu = tab + (size_t)u * (size_t)H;
        float *nu = next + (size_t)u * (size_t)H;
        for (int j = 0; j < H; j++) {
            float d = xi - tu[j];
            nu[j] = pm[u] + d * d;
        }
    }
}

double lb_trellis_viterbi(const lb_trellis *t, lb_trellis_work *w, const float *x, int T, int overlap,
                          uint8_t *codes, uint32_t *first_state) {
    const int L = t->L, k = t->k, S = 1 << L, P = 1 << (L - k), H = 1 << k;
    const uint32_t low = (uint32_t)P - 1;
    float *cost = w->cost, *next = w->next;
    const float *tab = t->table;
    for (int s = 0; s < S; s++) {
        float d = x[0] - tab[s];
        cost[s] = overlap < 0 || (s >> k) == overlap ? d * d : INFINITY;
    }
    float *pm = w->pm;
    for (int i = 1; i < T; i++) {
        uint16_t *from = w->from + (size_t)i * (size_t)P;
        switch (k) { /* H a constant in each: the loops vectorize */
        case 1: step(cost, next, pm, from, tab, x[i], P, 2); break;
        case 2: step(cost, next, pm, from, tab, x[i], P, 4); break;
        case 3: step(cost, next, pm, from, tab, x[i], P, 8); break;
        default: step(cost, next, pm, from, tab, x[i], P, 16); break;
        }
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

double lb_trellis_encode(const lb_trellis *t, lb_trellis_work *w, const float *x, int T, uint8_t *codes) {
    /* first pass: x rotated by half, so that the original wrap-around sits
     * mid-sequence; the state reached at the original first weight gives
     * the overlap (its high L-k bits are the codes of the last weights) */
    float *rolled = w->rolled;
    uint8_t *rc = w->rcodes;
    int half = T / 2;
    for (int i = 0; i < T; i++) rolled[i] = x[(i + T - half) % T];
    lb_trellis_viterbi(t, w, rolled, T, -1, rc, NULL);
    uint32_t s0 = 0;
    for (int j = 0; j < t->L / t->k; j++) s0 |= (uint32_t)rc[half - j] << (j * t->k); /* state at w_0 */
    return lb_trellis_viterbi(t, w, x, T, (int)(s0 >> t->k), codes, NULL);
}

void lb_trellis_decode(const lb_trellis *t, const uint8_t *codes, int T, float *out) {
    const int k = t->k, n = t->L / k;
    uint32_t s = 0;
    for (int j = n - 1; j >= 1; j--) s = s << k | codes[(T - j) % T]; /* the wrapped-in codes */
    for (int i = 0; i < T; i++) {
        s = (s << k | codes[i]) & ((1u << t->L) - 1);
        out[i] = t->table[s];
    }
}
