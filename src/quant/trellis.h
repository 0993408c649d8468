/* Trellis-coded quantization in the QTIP style (src/quant/trellis.c):
 * internal to src/quant until the trellis format family stores it. */
#ifndef LB_QUANT_TRELLIS_H
#define LB_QUANT_TRELLIS_H

#include "lowbit/format.h"

/* A bitshift trellis: the codes b_t (k bits each, one per step of V
 * weights) form a circular stream, and step t's V values are table[V s_t
 * ..] with the L-bit state s_t = b_{t-L/k+1} .. b_t (newest code in the low
 * bits, indices mod T): s_t = (s_{t-1} << k | b_t) mod 2^L. Exactly k bits
 * per step are stored (tail-biting: the first state's high bits are the
 * last codes): k / V bits per weight. */
typedef struct {
    int L, k;     /* state bits (k divides L, L <= LB_TRELLIS_MAX_STATE), bits per step (1..4; 1..6 for V = 2) */
    int V;        /* weights per step (1 or 2): state s_t gives weights V t .. V t + V - 1 */
    float *table; /* V 2^L values, state s's at V s: the codebook, unit variance */
} lb_trellis;

/* table = QTIP's "1MAD" computed codebook (lb_trellis_1mad, lowbit/format.h):
 * a linear congruential step on the state, then the sum of its four bytes
 * (an Irwin-Hall variable: close to Gaussian), centred and scaled to unit
 * variance. Nothing is stored. */
lb_status lb_trellis_init(lb_trellis *t, int L, int k);
/* V = 2: table = lb_trellis_1mad2, two values per state (k up to 6) */
lb_status lb_trellis_init_v(lb_trellis *t, int L, int k, int V);
void lb_trellis_free(lb_trellis *t);

/* Scratch for one sequence of up to T steps (lb_trellis_encode). Below, a
 * sequence has T steps; x, wt and decoded values have V T entries, codes T. */
typedef struct {
    int T;
    float *cost, *next;   /* 2^L each */
    float *pm;            /* 2^(L-k): the best cost per state prefix */
    uint16_t *from;       /* T x 2^(L-k): the best predecessor's dropped high code */
    float *rolled;        /* V T: the sequence rotated by T / 2 steps */
    float *rolled_wt;     /* V T: its weights */
    uint8_t *rcodes;      /* T: its codes */
} lb_trellis_work;
lb_status lb_trellis_work_init(lb_trellis_work *w, const lb_trellis *t, int T);
void lb_trellis_work_free(lb_trellis_work *w);

/* The codes (codes[0..T), each < 2^k) whose decoded sequence is closest to
 * x[0..T) in squared error (weighted by wt[0..T) when not NULL), for the circular stream: exact (Viterbi) for a
 * given overlap, which is chosen from a first pass over x rotated by T/2
 * (QTIP's tail-biting). T >= L / k (and at most the work's T). Returns
 * the squared error. */
double lb_trellis_encode(const lb_trellis *t, lb_trellis_work *w, const float *x, const float *wt, int T,
                         uint8_t *codes);
/* lb_trellis_encode, or for T < 2 L / k every overlap tried (exact) when
 * there are at most 256 overlaps (L - k <= 8) or T < L / k. */
double lb_trellis_encode_any(const lb_trellis *t, lb_trellis_work *w, const float *x, const float *wt, int T,
                             uint8_t *codes);
/* Exact optimum among the streams whose first state's high L-k bits are
 * `overlap` (-1: any start, no tail-biting: then the stream is not
 * circular and decode_open applies). Returns the squared error. */
double lb_trellis_viterbi(const lb_trellis *t, lb_trellis_work *w, const float *x, const float *wt, int T,
                          int overlap, uint8_t *codes, uint32_t *first_state);
/* The values of a circular stream (out[0..V T)): lb_trellis_decode_steps. */
void lb_trellis_decode(const lb_trellis *t, const uint8_t *codes, int T, float *out);

/* Round-to-nearest for the trellis family: per group (row, g<N> or tensor)
 * a scale from the weights' RMS, then each sequence of the group
 * (lb_trellis_segment) encoded by lb_trellis_encode. q is initialized. */
lb_status lb_trellis_quantize(const float *w, int64_t rows, int64_t cols, lb_qtensor *q);
/* Only its scales (the codes stay as they are): what gptq starts from. */
lb_status lb_trellis_fit_scales(const float *w, int64_t rows, int64_t cols, lb_qtensor *q);
/* Stores codes[0..steps) of a sequence of len weights starting at weight
 * (row, col) of q: each code at its step's first weight, a v2 step's second
 * weight code 0 (src/formats/trellis.c); down, the sequence runs down a
 * column, else along a row. */
void lb_trellis_put_codes(lb_qtensor *q, int64_t row, int64_t col, int down, const uint8_t *codes, int64_t len);
/* A trellis for q's spec (L, k, V); lb_trellis_free it. */
lb_status lb_trellis_for_spec(lb_trellis *t, const lb_qspec *spec);

#endif
