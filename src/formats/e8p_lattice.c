/* The E8 lattice codebooks of QuIP# (Tseng, Chee, Sun, Kuleshov, De Sa 2024,
 * "QuIP#: Even Better LLM Quantization with Hadamard Incoherence and
 * Lattice Codebooks", arXiv:2402.04396; METHODS.md s8), computed from their
 * definitions when first used: nothing but the definitions is committed.
 *
 * E8 = D8 u (D8 + 1/2), D8 the integer vectors of even sum. E8P ("E8
 * padded") is a 2^16-point subset of E8 + 1/4 = (D8^ - 1/4) u (D8^ + 1/4),
 * D8^ = D8 + 1/2 (half-integer vectors of even sum):
 *   - a source set S of 256 vectors of positive half-integers: the 227
 *     absolute-value patterns of D8^ points with norm^2 <= 10 (every
 *     pattern of 1/2, 3/2, 5/2 with that norm has a sign choice in D8^),
 *     then 29 of the 56 patterns of norm^2 12 (five 3/2, three 1/2);
 *   - a point is s in S with signs applied such that the signed vector is
 *     in D8^ (its sum even: flipping one half-integer changes the sum by an
 *     odd number, so the number of negations must have the parity of
 *     sum(s)), then +-1/4.
 * 8 + 7 + 1 bits: source index, the signs of coordinates 1..7 (0's is
 * implied by the parity), the shift. All 2^16 points are distinct.
 *
 * Our choices where the paper's code is a table: S is ordered
 * lexicographically by (2 s_0, ..., 2 s_7), the 227 first, and the 29
 * norm^2-12 patterns are the first 29 of theirs in the same order (QuIP#
 * lists a hand-picked 29, one of them twice). The codes are ours; no file
 * of QuIP#'s is read.
 *
 * Nearest point, exact: for each shift t and each source s, the best signs
 * for y = x - t maximize sum w_i sigma_i s_i y_i, i.e. sigma_i = sign(y_i),
 * unless that has the wrong number of negations; then the cheapest single
 * flip (smallest w_i s_i |y_i|) is optimal, as every sign vector with the
 * right parity differs from sign(y) in an odd number of places. So 2 x 256
 * sources are scored instead of 2^16 points.
 *
 * The 1-bit E8 ball (256 points): index 0 is 0; 1..112 the integer roots
 * +-e_i +-e_j (i < j; pairs in lexicographic order, signs ++, +-, -+, --);
 * 113..240 the half-integer roots (+-1/2)^8 with an even number of minus
 * signs, in increasing order of the minus-sign bitmask (bit i: coordinate
 * i); 241..255 the points 2 e_0, -2 e_0, ..., 2 e_7 without -2 e_7. */
#include "format_internal.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

#define N_SOURCE 256

static struct {
    float s[N_SOURCE][8];    /* source vectors (positive half-integers) */
    float norm2[N_SOURCE];   /* ||s||^2 */
    unsigned char parity[N_SOURCE]; /* number of negations needed, mod 2 (= sum(s) mod 2) */
    float ball[256][8];      /* the 1-bit E8 codebook */
} cb;
static pthread_once_t cb_once = PTHREAD_ONCE_INIT;

/* patterns of 2 s_i in {1, 3, 5}, lexicographic, with sum (2 s_i)^2 == want4
 * (4 norm^2) or <= want4 when exact is 0; appended from *n up to limit */
static void add_sources(int want4, int exact, int limit, int *n) {
    int d[8];
    for (int idx = 0; idx < 6561 && *n < limit; idx++) { /* 3^8, coordinate 0 most significant */
        int v = idx, sum2 = 0, sum = 0;
        for (int i = 7; i >= 0; i--) {
            d[i] = 1 + 2 * (v % 3);
            v /= 3;
        }
        for (int i = 0; i < 8; i++) sum2 += d[i] * d[i], sum += d[i];
        if (exact ? sum2 != want4 : sum2 > want4) continue;
        for (int i = 0; i < 8; i++) cb.s[*n][i] = 0.5f * (float)d[i];
        cb.norm2[*n] = 0.25f * (float)sum2;
        cb.parity[*n] = (unsigned char)((sum / 2) & 1); /* sum(s) = sum(d) / 2 (sum(d) is even: 8 odd terms) */
        (*n)++;
    }
}

static void build(void) {
    int n = 0;
    add_sources(40, 0, N_SOURCE, &n); /* norm^2 <= 10: 227 */
    add_sources(48, 1, N_SOURCE, &n); /* norm^2 == 12: the first 29 */
    /* the ball */
    memset(cb.ball, 0, sizeof cb.ball);
    int k = 1;
    for (int i = 0; i < 8; i++)
        for (int j = i + 1; j < 8; j++)
            for (int sg = 0; sg < 4; sg++, k++) {
                cb.ball[k][i] = sg & 2 ? -1.0f : 1.0f;
                cb.ball[k][j] = sg & 1 ? -1.0f : 1.0f;
            }
    for (int m = 0; m < 256; m++) {
        if (__builtin_popcount((unsigned)m) & 1) continue;
        for (int i = 0; i < 8; i++) cb.ball[k][i] = m >> i & 1 ? -0.5f : 0.5f;
        k++;
    }
    for (int i = 0; i < 8; i++)
        for (int sg = 0; sg < 2 && k < 256; sg++, k++) cb.ball[k][i] = sg ? -2.0f : 2.0f;
}

static void ensure_built(void) { pthread_once(&cb_once, build); }

void lb_e8p_codeword(unsigned code, float out[8]) {
    ensure_built();
    const float *s = cb.s[code >> 8 & 255];
    unsigned signs = code >> 1 & 127, neg = (unsigned)__builtin_popcount(signs);
    float shift = code & 1 ? 0.25f : -0.25f;
    out[0] = ((neg & 1) != cb.parity[code >> 8 & 255] ? -s[0] : s[0]) + shift;
    for (int i = 1; i < 8; i++) out[i] = (signs >> (i - 1) & 1 ? -s[i] : s[i]) + shift;
}

unsigned lb_e8p_nearest(const float x[8], const float *wt) {
    ensure_built();
    static const float one[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    const float *w = wt ? wt : one;
    unsigned best = 0;
    float best_cost = INFINITY;
    for (int sh = 0; sh < 2; sh++) {
        float t = sh ? 0.25f : -0.25f, ay[8], wy[8], wyy = 0; /* wyy: sum w y^2, which depends on the shift */
        unsigned negmask = 0;
        int negs = 0;
        for (int i = 0; i < 8; i++) {
            float y = x[i] - t;
            if (y < 0) negmask |= 1u << i, negs++;
            ay[i] = fabsf(y);
            wy[i] = w[i] * ay[i];
            wyy += wy[i] * ay[i];
        }
        for (int j = 0; j < N_SOURCE; j++) {
            const float *s = cb.s[j];
            /* cost = sum w (y - sigma s)^2 = sum w y^2 + sum w s^2 - 2 sum w sigma s y */
            float gain = 0, wss = 0, mn = INFINITY;
            int arg = 0;
            for (int i = 0; i < 8; i++) {
                float g = s[i] * wy[i];
                gain += g;
                wss += w[i] * s[i] * s[i];
                if (g < mn) mn = g, arg = i;
            }
            unsigned mask = negmask;
            if ((unsigned)(negs & 1) != cb.parity[j]) {
                gain -= 2.0f * mn;
                mask ^= 1u << arg;
            }
            float cost = wyy + wss - 2.0f * gain;
            if (cost < best_cost) {
                best_cost = cost;
                best = (unsigned)j << 8 | (mask >> 1 & 127) << 1 | (unsigned)sh;
            }
        }
    }
    return best;
}

void lb_e8_ball_codeword(unsigned code, float out[8]) {
    ensure_built();
    memcpy(out, cb.ball[code & 255], 8 * sizeof(float));
}

unsigned lb_e8_ball_nearest(const float x[8], const float *wt) {
    ensure_built();
    unsigned best = 0;
    float best_cost = INFINITY;
    for (unsigned j = 0; j < 256; j++) {
        float cost = 0;
        for (int i = 0; i < 8; i++) {
            float d = x[i] - cb.ball[j][i];
            cost += (wt ? wt[i] : 1.0f) * d * d;
        }
        if (cost < best_cost) best_cost = cost, best = j;
    }
    return best;
}
