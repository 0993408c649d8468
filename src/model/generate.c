/* Text generation: prompt in one batched forward, then one token at a time,
 * sampled as llama2.c samples, stopping at BOS like llama2.c's run.c. */
#include <math.h>
#include <string.h>

#include "lowbit/model.h"

/* A NaN or Inf logit means the forward pass broke down (e.g. an overflowing
 * weight): no sampler setting gives a meaningful token from it. */
static lb_status check_logits(const float *logits, int vocab, int pos, int prev) {
    for (int i = 0; i < vocab; i++)
        if (!isfinite(logits[i]))
            return lb_fail(LB_ERR_NUMERIC,
                           "the logits at position %d (after token %d) are not finite: token %d's is %s; "
                           "the model's weights or activations overflow",
                           pos - 1, prev, i, isnan(logits[i]) ? "NaN" : logits[i] > 0 ? "+Inf" : "-Inf");
    return LB_OK;
}

lb_status lb_generate(const lb_model *m, const char *prompt, const lb_gen_opts *o, lb_emit_fn emit, void *user,
                      lb_gen_stats *stats) {
    memset(stats, 0, sizeof *stats);
    if (!m->tokenizer) return lb_fail(LB_ERR_INVALID, "the model has no tokenizer (pass one with --tokenizer)");
    if (o->max_new < 1) return lb_fail(LB_ERR_INVALID, "the number of tokens to generate must be >= 1, not %d", o->max_new);
    int *tokens = NULL;
    size_t n_prompt = 0;
    lb_status st = lb_tokenize(m->tokenizer, prompt ? prompt : "", prompt ? strlen(prompt) : 0, 1, 0, &tokens, &n_prompt);
    if (st != LB_OK) return st;
    if ((int)n_prompt > m->cfg.seq_len) {
        lb_free(tokens);
        return lb_fail(LB_ERR_INVALID, "the prompt has %zu tokens, more than the model's context of %d", n_prompt,
                       m->cfg.seq_len);
    }
    /* positions forwarded: the prompt's, then one per new token but the last */
    int steps = (int)n_prompt - 1 + o->max_new;
    if (steps > m->cfg.seq_len) steps = m->cfg.seq_len;
    lb_state *s = NULL;
    lb_sampler sampler;
    memset(&sampler, 0, sizeof sampler);
    if ((st = lb_state_create(m, (int)n_prompt, &s)) != LB_OK) goto done;
    if ((st = lb_sampler_init(&sampler, m->cfg.vocab_size, o->temperature, o->top_p, o->seed)) != LB_OK) goto done;
    /* echo the prompt as llama2.c does: decode each prompt token after the first */
    for (size_t i = 1; i < n_prompt; i++) {
        size_t len;
        const char *piece = lb_detokenize(m->tokenizer, tokens[i - 1], tokens[i], &len);
        emit(piece, len, user);
    }
    double t0 = lb_now();
    if ((st = lb_forward(m, s, tokens, (int)n_prompt, 0, NULL)) != LB_OK) goto done;
    stats->prompt_tokens = (int)n_prompt;
    stats->prompt_seconds = lb_now() - t0;
    t0 = lb_now();
    int prev = tokens[n_prompt - 1];
    /* as llama2.c: the token sampled after position steps-1 is printed too */
    for (int pos = (int)n_prompt; pos <= steps; pos++) {
        if ((st = check_logits(lb_state_logits(s), m->cfg.vocab_size, pos, prev)) != LB_OK) goto done;
        int next = lb_sample(&sampler, lb_state_logits(s));
        if (next == lb_tokenizer_bos(m->tokenizer)) break;
        size_t len;
        const char *piece = lb_detokenize(m->tokenizer, prev, next, &len);
        emit(piece, len, user);
        stats->generated_tokens++;
        prev = next;
        if (pos < steps && (st = lb_forward(m, s, &next, 1, pos, NULL)) != LB_OK) goto done;
    }
    stats->generate_seconds = lb_now() - t0;
done:
    lb_sampler_free(&sampler);
    lb_state_free(s);
    lb_free(tokens);
    return st;
}
