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

/* The context and the sequences o selects from t, tokenized by m's tokenizer. */
static lb_status prepare(const lb_model *m, const lb_text *t, const lb_eval_opts *o, int *ctx_out, sequence **seqs,
                         int *n_seqs) {
    *seqs = NULL, *n_seqs = 0;
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
    *ctx_out = ctx;
    return o->protocol == LB_PROTOCOL_DOCS ? build_docs(m, t, first, end, ctx, seqs, n_seqs)
                                           : build_chunks(m, t, first, end, ctx, seqs, n_seqs);
}

/* The view of a model the forward pass runs: a context of ctx positions, so
 * each thread's KV cache (allocated zeroed, hence resident) holds ctx
 * positions, not the model's whole context (a synthetic 7B shape: 4096, 1 GB
 * per layer-set and thread); the same positions, RoPE rows and sums. */
static lb_model view_of(const lb_model *m, int ctx) {
    lb_model v = *m;
    if (v.cfg.seq_len > ctx) v.cfg.seq_len = ctx;
    return v;
}

/* One more sequence done, from any thread: progress every 16. */
static void tick(lb_progress *prog, int64_t *done) {
    int64_t d;
#pragma omp atomic capture
    d = ++*done;
    if (d % 16 == 0) {
#pragma omp critical /* unnamed: a named one is an exported symbol */
        lb_progress_update(prog, (uint64_t)d);
    }
}

struct lb_ref_logits {
    int n_seqs, vocab;
    sequence *seqs; /* the sequences it was built on, to check each use against */
    size_t *row;    /* [n_seqs]: sequence i's first scored position's row in logits */
    float *logits;  /* a row of vocab floats per scored position, in sequence order */
    size_t bytes;
};

void lb_ref_logits_free(lb_ref_logits *c) {
    if (!c) return;
    free_sequences(c->seqs, c->n_seqs);
    lb_free(c->row);
    lb_free(c->logits);
    lb_free(c);
}

size_t lb_ref_logits_bytes(const lb_ref_logits *c) { return c ? c->bytes : 0; }

lb_status lb_ref_logits_build(const lb_model *m, const lb_text *t, const lb_eval_opts *o, size_t max_bytes,
                              lb_ref_logits **out) {
    *out = NULL;
    if (!o->ref) return lb_fail(LB_ERR_INVALID, "reference logits: no reference model");
    int ctx;
    sequence *seqs;
    int n_seqs;
    lb_status st = prepare(m, t, o, &ctx, &seqs, &n_seqs);
    if (st != LB_OK) return st;
    int vocab = m->cfg.vocab_size;
    size_t rows = 0;
    for (int i = 0; i < n_seqs; i++) rows += (size_t)(seqs[i].n - 1 - seqs[i].first);
    size_t bytes = rows * (size_t)vocab * sizeof(float) + (size_t)n_seqs * sizeof(size_t);
    for (int i = 0; i < n_seqs; i++) bytes += (size_t)seqs[i].n * sizeof(int);
    lb_ref_logits *c = NULL;
    if (bytes > max_bytes || !(c = lb_calloc(1, sizeof *c))) {
        free_sequences(seqs, n_seqs);
        return c || bytes > max_bytes ? LB_OK : LB_ERR_NOMEM;
    }
    c->seqs = seqs, c->n_seqs = n_seqs, c->vocab = vocab, c->bytes = bytes;
    c->row = lb_alloc(((size_t)n_seqs + 1) * sizeof *c->row);
    c->logits = lb_alloc((rows ? rows : 1) * (size_t)vocab * sizeof(float));
    if (!c->row || !c->logits) {
        lb_ref_logits_free(c);
        return LB_ERR_NOMEM;
    }
    for (int i = 0, r = 0; i < n_seqs; r += seqs[i].n - 1 - seqs[i].first, i++) c->row[i] = (size_t)r;
    lb_model rv = view_of(o->ref, ctx);
    lb_worker_error werr;
    lb_worker_error_init(&werr);
    lb_progress prog;
    lb_progress_begin(&prog, "reference logits", (uint64_t)n_seqs);
    int64_t done_count = 0;
#pragma omp parallel
    {
        lb_state *sr = NULL;
        float *lr = lb_alloc((size_t)ctx * vocab * sizeof(float));
        lb_status ws = lr ? lb_state_create(&rv, ctx, &sr) : LB_ERR_NOMEM;
        if (ws == LB_OK) lb_state_set_release(sr, o->stream);
        lb_worker_error_set(&werr, ws);
#pragma omp for schedule(dynamic, 1)
        for (int i = 0; i < n_seqs; i++) {
            if (lb_worker_error_failed(&werr)) continue;
            const sequence *s = &seqs[i];
            if ((ws = lb_forward(&rv, sr, s->tok, s->n, 0, lr)) != LB_OK) {
                lb_worker_error_set(&werr, lb_fail_context(ws, "sequence %d on the reference model", i));
                continue;
            }
            memcpy(c->logits + c->row[i] * (size_t)vocab, lr + (size_t)s->first * vocab,
                   (size_t)(s->n - 1 - s->first) * vocab * sizeof(float));
            tick(&prog, &done_count);
        }
        lb_state_free(sr);
        lb_free(lr);
    }
    lb_progress_end(&prog);
    if ((st = lb_worker_error_raise(&werr)) != LB_OK) {
        lb_ref_logits_free(c);
        return st;
    }
    *out = c;
    return LB_OK;
}

/* Whether the logits were built on exactly these sequences. */
static lb_status check_logits(const lb_ref_logits *c, const lb_model *m, const sequence *seqs, int n_seqs) {
    int same = c->vocab == m->cfg.vocab_size && c->n_seqs == n_seqs;
    for (int i = 0; same && i < n_seqs; i++)
        same = c->seqs[i].n == seqs[i].n && c->seqs[i].first == seqs[i].first &&
               !memcmp(c->seqs[i].tok, seqs[i].tok, (size_t)seqs[i].n * sizeof(int));
    return same ? LB_OK
                : lb_fail(LB_ERR_INVALID, "the reference logits were computed on other sequences (another text, "
                                          "split, protocol, context or tokenizer)");
}

lb_status lb_evaluate(const lb_model *m, const lb_text *t, const lb_eval_opts *o, lb_eval_result *r) {
    memset(r, 0, sizeof *r);
    r->kld = r->top1 = NAN;
    double t0 = lb_now();
    int ctx;
    sequence *seqs;
    int n_seqs;
    lb_status st = prepare(m, t, o, &ctx, &seqs, &n_seqs);
    if (st != LB_OK) return st;
    const lb_ref_logits *rl = o->ref_logits;
    int with_ref = o->ref || rl;
    if (rl && (st = check_logits(rl, m, seqs, n_seqs)) != LB_OK) {
        free_sequences(seqs, n_seqs);
        return st;
    }
    seq_score *scores = lb_calloc((size_t)n_seqs + 1, sizeof *scores);
    if (!scores) {
        st = LB_ERR_NOMEM;
        goto done;
    }
    int vocab = m->cfg.vocab_size;
    lb_model mv = view_of(m, ctx), rv;
    if (o->ref && !rl) rv = view_of(o->ref, ctx);
    const lb_model *ref = o->ref && !rl ? &rv : NULL; /* run beside m */
    lb_worker_error werr; /* a worker's message, carried to this thread */
    lb_worker_error_init(&werr);
    lb_progress prog;
    lb_progress_begin(&prog, "evaluating", (uint64_t)n_seqs);
    int64_t done_count = 0;
#pragma omp parallel
    {
        lb_state *sm = NULL, *sr = NULL;
        float *lq = lb_alloc((size_t)ctx * vocab * sizeof(float));
        float *lr = ref ? lb_alloc((size_t)ctx * vocab * sizeof(float)) : NULL;
        lb_status ws = lq && (!ref || lr) ? LB_OK : LB_ERR_NOMEM;
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
            /* the reference's row for position s->first, then one per position */
            const float *lri = rl ? rl->logits + rl->row[i] * (size_t)vocab : lr ? lr + (size_t)s->first * vocab : NULL;
            for (int j = s->first; j < s->n - 1; j++)
                score_position(lq + (size_t)j * vocab, lri ? lri + (size_t)(j - s->first) * vocab : NULL, vocab,
                               s->tok[j + 1], &scores[i]);
            tick(&prog, &done_count);
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
    if (with_ref) {
        r->kld = total.kld / (double)total.count;
        r->top1 = (double)total.top1 / (double)total.count;
    }
    r->seconds = lb_now() - t0;
    if (!isfinite(r->nll) || (with_ref && !isfinite(r->kld)))
        st = lb_fail(LB_ERR_NUMERIC, "the model produced non-finite log-probabilities (NaN or Inf in its weights?)");
done:
    free_sequences(seqs, n_seqs);
    lb_free(scores);
    return st;
}
