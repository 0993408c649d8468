/* Token sampling as llama2.c's run.c does it, so a seeded run reproduces
 * its output: argmax at temperature 0; otherwise softmax(logits / T), one
 * xorshift draw, and either a plain multinomial draw or nucleus (top-p)
 * sampling over the tokens sorted by probability. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lowbit/model.h"

typedef struct {
    float prob;
    int index;
} prob_index;

lb_status lb_sampler_init(lb_sampler *s, int vocab_size, float temperature, float top_p, uint64_t seed) {
    memset(s, 0, sizeof *s);
    if (!(temperature >= 0.0f) || temperature > 100.0f)
        return lb_fail(LB_ERR_INVALID, "temperature %g is outside 0..100", (double)temperature);
    if (!(top_p >= 0.0f && top_p <= 1.0f)) return lb_fail(LB_ERR_INVALID, "top-p %g is outside 0..1", (double)top_p);
    s->temperature = temperature;
    s->top_p = top_p;
    s->vocab_size = vocab_size;
    lb_rng_seed(&s->rng, seed);
    s->probs = lb_alloc((size_t)vocab_size * sizeof(float));
    s->scratch = lb_alloc((size_t)vocab_size * sizeof(prob_index));
    if (!s->probs || !s->scratch) {
        lb_sampler_free(s);
        return LB_ERR_NOMEM;
    }
    return LB_OK;
}

void lb_sampler_free(lb_sampler *s) {
    lb_free(s->probs);
    lb_free(s->scratch);
    s->probs = NULL;
    s->scratch = NULL;
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static int sample_mult(const float *p, int n, float coin) {
    float cdf = 0.0f;
    for (int i = 0; i < n; i++) {
        cdf += p[i];
        if (coin < cdf) return i;
    }
    return n - 1; /* rounding */
}

static int by_prob_desc(const void *a, const void *b) {
    float pa = ((const prob_index *)a)->prob, pb = ((const prob_index *)b)->prob;
    return pa > pb ? -1 : pa < pb ? 1 : 0;
}

/* Smallest set of most likely tokens whose mass exceeds top_p; tokens below
 * (1 - top_p) / (n - 1) cannot be in it and are dropped before sorting. */
static int sample_topp(const float *p, int n, float top_p, prob_index *pi, float coin) {
    int n0 = 0;
    /* NaN probabilities pass no comparison: with none left there is nothing
     * to sample (lb_generate rejects non-finite logits before this) */
    float cutoff = (1.0f - top_p) / (float)(n - 1);
    for (int i = 0; i < n; i++)
        if (p[i] >= cutoff) {
            pi[n0].index = i;
            pi[n0].prob = p[i];
            n0++;
        }
    if (n0 == 0) return 0;
    qsort(pi, (size_t)n0, sizeof *pi, by_prob_desc);
    float cum = 0.0f;
    int last = n0 - 1;
    for (int i = 0; i < n0; i++) {
        cum += pi[i].prob;
        if (cum > top_p) {
            last = i;
            break;
        }
    }
    float r = coin * cum, cdf = 0.0f;
    for (int i = 0; i <= last; i++) {
        cdf += pi[i].prob;
        if (r < cdf) return pi[i].index;
    }
    return pi[last].index;
}

int lb_sample(lb_sampler *s, const float *logits) {
    int n = s->vocab_size;
    if (s->temperature == 0.0f) return argmax(logits, n);
    for (int i = 0; i < n; i++) s->probs[i] = logits[i] / s->temperature;
    float max = s->probs[0], sum = 0.0f;
    for (int i = 1; i < n; i++) max = s->probs[i] > max ? s->probs[i] : max;
    for (int i = 0; i < n; i++) {
        s->probs[i] = expf(s->probs[i] - max);
        sum += s->probs[i];
    }
    for (int i = 0; i < n; i++) s->probs[i] /= sum;
    float coin = lb_rng_f32(&s->rng);
    if (s->top_p <= 0.0f || s->top_p >= 1.0f) return sample_mult(s->probs, n, coin);
    return sample_topp(s->probs, n, s->top_p, (prob_index *)s->scratch, coin);
}
