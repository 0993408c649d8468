/* Perplexity, KL divergence to a reference model and top-1 agreement, under
 * the docs and chunks protocols described in eval.h.
 *
 * Sequences (blocks or chunks) are independent, so they run in parallel, one
 * per thread with its own KV caches; per-sequence sums are reduced in order,
 * so the result does not depend on the thread count. */
#include <math.h>
#include <string.h>

#include "lowbit/eval.h"

typedef struct {
    int *tok;
    int n;     /* tokens to run */
    int first; /* first position whose next-token prediction is scored */
} sequence;

typedef struct {
    double nll, kld;
    int64_t top1, count;
} seq_score;

/* log(sum(exp(x))) with the max shifted out; exp in float, sums in double */
static double log_sum_exp(const float *x, int n) {
    float mx = x[0];
    for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double s = 0;
    for (int i = 0; i < n; i++) s += expf(x[i] - mx);
    return mx + log(s);
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static void score_position(const float *lq, const float *lr, int vocab, int target, seq_score *sc) {
    double lse_q = log_sum_exp(lq, vocab);
    sc->nll += lse_q - lq[target];
    sc->count++;
    if (!lr) return;
    double lse_r = log_sum_exp(lr, vocab), kl = 0;
    for (int v = 0; v < vocab; v++) {
        double r = lr[v] - lse_r;
        kl += exp(r) * (r - (lq[v] - lse_q));
    }
    sc->kld += kl;
    sc->top1 += argmax(lq, vocab) == argmax(lr, vocab);
}

static void free_sequences(sequence *seqs, int n) {
    for (int i = 0; i < n; i++) lb_free(seqs[i].tok);
    lb_free(seqs);
}

static lb_status build_docs(const lb_model *m, const lb_text *t, int first, int end, int ctx, sequence **out, int *n_out) {
    sequence *seqs = lb_calloc((size_t)(end - first), sizeof *seqs);
    if (!seqs) return LB_ERR_NOMEM;
    int n = 0;
    for (int b = first; b < end; b++) {
        size_t nt;
        int *tok;
        lb_status st = lb_tokenize(m->tokenizer, t->blocks[b].text, t->blocks[b].len, 1, 0, &tok, &nt);
        if (st != LB_OK) {
            free_sequences(seqs, n);
            return lb_fail_context(st, "block %d", b + 1);
        }
        if (nt < 2) { /* nothing to predict */
            lb_free(tok);
            continue;
        }
        seqs[n].tok = tok;
        seqs[n].n = nt > (size_t)ctx ? ctx : (int)nt;
        seqs[n].first = 0;
        n++;
    }
    *out = seqs;
    *n_out = n;
    return LB_OK;
}

static lb_status build_chunks(const lb_model *m, const lb_text *t, int first, int end, int ctx, sequence **out,
                              int *n_out) {
    const char *start = t->blocks[first].text;
    const char *stop = t->blocks[end - 1].text + t->blocks[end - 1].len;
    int *all;
    size_t nt;
    lb_status st = lb_tokenize(m->tokenizer, start, (size_t)(stop - start), 1, 0, &all, &nt);
    if (st != LB_OK) return st;
    int n_chunks = (int)(nt / (size_t)ctx);
    if (n_chunks < 1) {
        lb_free(all);
        return lb_fail(LB_ERR_INVALID, "the text has %zu tokens, fewer than one chunk of %d", nt, ctx);
    }
    sequence *seqs = lb_calloc((size_t)n_chunks, sizeof *seqs);
    if (!seqs) {
        lb_free(all);
        return LB_ERR_NOMEM;
    }
    for (int c = 0; c < n_chunks; c++) {
        seqs[c].tok = lb_alloc((size_t)ctx * sizeof(int));
        if (!seqs[c].tok) {
            free_sequences(seqs, c);
            lb_free(all);
            return LB_ERR_NOMEM;
        }
        memcpy(seqs[c].tok, all + (size_t)c * ctx, (size_t)ctx * sizeof(int));
        seqs[c].tok[0] = lb_tokenizer_bos(m->tokenizer);
        seqs[c].n = ctx;
        seqs[c].first = ctx / 2;
    }
    lb_free(all);
    *out = seqs;
    *n_out = n_chunks;
    return LB_OK;
}

static lb_status check_compatible(const lb_model *m, const lb_model *ref) {
    if (!ref) return LB_OK;
    if (ref->cfg.vocab_size != m->cfg.vocab_size)
        return lb_fail(LB_ERR_INVALID, "the reference model's vocabulary (%d) differs from the model's (%d)",
                       ref->cfg.vocab_size, m->cfg.vocab_size);
    if (ref->cfg.seq_len < m->cfg.seq_len)
        return lb_fail(LB_ERR_INVALID, "the reference model's context (%d) is shorter than the model's (%d)",
                       ref->cfg.seq_len, m->cfg.seq_len);
    return LB_OK;
}

lb_status lb_evaluate(const lb_model *m, const lb_text *t, const lb_eval_opts *o, lb_eval_result *r) {
    memset(r, 0, sizeof *r);
    r->kld = r->top1 = NAN;
    if (!m->tokenizer) return lb_fail(LB_ERR_INVALID, "the model has no tokenizer (pass one with --tokenizer)");
    lb_status st = check_compatible(m, o->ref);
    if (st != LB_OK) return st;
    int ctx = o->ctx ? o->ctx : o->protocol == LB_PROTOCOL_DOCS ? m->cfg.seq_len : 256;
    if (ctx < (o->protocol == LB_PROTOCOL_CHUNKS ? 4 : 2) || ctx > m->cfg.seq_len)
        return lb_fail(LB_ERR_INVALID, "context %d is outside %d..%d (the model's context)", ctx,
                       o->protocol == LB_PROTOCOL_CHUNKS ? 4 : 2, m->cfg.seq_len);
    int first, end;
    st = lb_text_split(t, o->split, o->calib_blocks ? o->calib_blocks : 128, &first, &end);
    if (st != LB_OK) return st;

    double t0 = lb_now();
    sequence *seqs = NULL;
    int n_seqs = 0;
    st = o->protocol == LB_PROTOCOL_DOCS ? build_docs(m, t, first, end, ctx, &seqs, &n_seqs)
                                         : build_chunks(m, t, first, end, ctx, &seqs, &n_seqs);
    if (st != LB_OK) return st;
    seq_score *scores = lb_calloc((size_t)n_seqs + 1, sizeof *scores);
    if (!scores) {
        st = LB_ERR_NOMEM;
        goto done;
    }
    int vocab = m->cfg.vocab_size;
    /* the models as seen by the forward pass: a context of ctx positions, so
     * each thread's KV cache (allocated zeroed, hence resident) holds ctx
     * positions, not the model's whole context (a synthetic 7B shape: 4096,
     * 1 GB per layer-set and thread); the same positions, RoPE rows and sums */
    lb_model mv = *m, rv;
    if (mv.cfg.seq_len > ctx) mv.cfg.seq_len = ctx;
    if (o->ref) {
        rv = *o->ref;
        if (rv.cfg.seq_len > ctx) rv.cfg.seq_len = ctx;
    }
    const lb_model *ref = o->ref ? &rv : NULL;
    lb_worker_error werr; /* a worker's message, carried to this thread */
    lb_worker_error_init(&werr);
    lb_progress prog;
    lb_progress_begin(&prog, "evaluating", (uint64_t)n_seqs);
    int64_t done_count = 0;
#pragma omp parallel
    {
        lb_state *sm = NULL, *sr = NULL;
        float *lq = lb_alloc((size_t)ctx * vocab * sizeof(float));
        float *lr = o->ref ? lb_alloc((size_t)ctx * vocab * sizeof(float)) : NULL;
        lb_status ws = lq && (!o->ref || lr) ? LB_OK : LB_ERR_NOMEM;
        if (ws == LB_OK) ws = lb_state_create(&mv, ctx, &sm);
        if (ws == LB_OK && ref) ws = lb_state_create(ref, ctx, &sr);
        if (ws == LB_OK) lb_state_set_release(sm, o->stream);
        if (ws == LB_OK && sr) lb_state_set_release(sr, o->stream);
        lb_worker_error_set(&werr, ws);
#pragma omp for schedule(dynamic, 1)
        for (int i = 0; i < n_seqs; i++) {
            if (lb_worker_error_failed(&werr)) continue;
            const sequence *s = &seqs[i];
            if ((ws = lb_forward(&mv, sm, s->tok, s->n, 0, lq)) != LB_OK) {
                lb_worker_error_set(&werr, lb_fail_context(ws, "sequence %d", i));
                continue;
            }
            if (ref && (ws = lb_forward(ref, sr, s->tok, s->n, 0, lr)) != LB_OK) {
                lb_worker_error_set(&werr, lb_fail_context(ws, "sequence %d on the reference model", i));
                continue;
            }
            for (int j = s->first; j < s->n - 1; j++)
                score_position(lq + (size_t)j * vocab, o->ref ? lr + (size_t)j * vocab : NULL, vocab, s->tok[j + 1],
                               &scores[i]);
            int64_t d;
#pragma omp atomic capture
            d = ++done_count;
            if (d % 16 == 0) {
#pragma omp critical /* unnamed: a named one is an exported symbol */
                lb_progress_update(&prog, (uint64_t)d);
            }
        }
        lb_state_free(sm);
        lb_state_free(sr);
        lb_free(lq);
        lb_free(lr);
    }
    lb_progress_end(&prog);
    if ((st = lb_worker_error_raise(&werr)) != LB_OK) goto done;
    seq_score total = {0, 0, 0, 0};
    for (int i = 0; i < n_seqs; i++) {
        total.nll += scores[i].nll;
        total.kld += scores[i].kld;
        total.top1 += scores[i].top1;
        total.count += scores[i].count;
        r->tokens_processed += seqs[i].n;
    }
    if (total.count == 0) {
        st = lb_fail(LB_ERR_INVALID, "nothing to score in the %s split", lb_split_name(o->split));
        goto done;
    }
    r->tokens = total.count;
    r->sequences = n_seqs;
    r->ctx = ctx;
    r->nll = total.nll / (double)total.count;
    r->ppl = exp(r->nll);
    if (o->ref) {
        r->kld = total.kld / (double)total.count;
        r->top1 = (double)total.top1 / (double)total.count;
    }
    r->seconds = lb_now() - t0;
    if (!isfinite(r->nll) || (o->ref && !isfinite(r->kld)))
        st = lb_fail(LB_ERR_NUMERIC, "the model produced non-finite log-probabilities (NaN or Inf in its weights?)");
done:
    free_sequences(seqs, n_seqs);
    lb_free(scores);
    return st;
}
