/* Distillation (issue 9 item 3): the student learns the fp32 teacher's
 * next-token distribution rather than the text's one-hot targets, and, as
 * OneBit did, the teacher can write the training text itself.
 *
 * Loss per scored position i (the positions whose target is >= 0, those
 * cross-entropy would score), p = softmax(z / T):
 *   KL_i  = sum_v p_t(v) (log p_t(v) - log p_s(v))
 *   MSE_i = (1 / dim) sum_j (h_s[j] - h_t[j])^2,  h = the final RMSNorm's output
 * loss = mean_i KL_i  (+ mse_weight mean_i MSE_i for kl+mse).
 * No T^2 factor: at T = 1 (the default) it is the plain KL, and its
 * gradient is dKL_i/dz_s = (p_s - p_t) / T. d MSE_i / dh_s = 2 (h_s - h_t) / dim.
 *
 * The hidden-state term compares the final normalized state only (the
 * classifier's input; its gain, output_norm, is trained as well), not every
 * layer's: it is what the logits are a linear function of, and it needs no
 * per-layer hook in the model code, so any student whose linears run
 * through lb_train_linear ops (float, fake-quantized) distills unchanged.
 *
 * The teacher is a second lb_train_model holding the fp32 weights the
 * student started from, run forward only: the same arithmetic as the
 * student's forward, so a student equal to its teacher has KL exactly 0.
 * Every per-row quantity is computed in one thread and summed over rows
 * serially: results do not depend on the thread count. */
#include <math.h>
#include <string.h>

#include "lowbit/train.h"
#include "train/train_internal.h"

#define PAR_MIN (1L << 20) /* values below which a parallel region costs more than it saves */

const char *lb_distill_name(int distill) {
    switch (distill) {
    case LB_DISTILL_NONE: return "none";
    case LB_DISTILL_KL: return "kl";
    case LB_DISTILL_KL_MSE: return "kl+mse";
    }
    return "?";
}

lb_status lb_distill_parse(const char *text, int *out) {
    for (int k = LB_DISTILL_NONE; k <= LB_DISTILL_KL_MSE; k++)
        if (!strcmp(text, lb_distill_name(k))) {
            *out = k;
            return LB_OK;
        }
    return lb_fail(LB_ERR_INVALID, "unknown distillation loss '%s' (none, kl, kl+mse)", text);
}

/* log-sum-exp of z / temp over V values, in double */
static double row_lse(const float *z, int V, double inv_t) {
    double mx = -INFINITY, s = 0;
    for (int v = 0; v < V; v++)
        if (z[v] * inv_t > mx) mx = z[v] * inv_t;
    for (int v = 0; v < V; v++) s += exp(z[v] * inv_t - mx);
    return mx + log(s);
}

double lb_distill_kl(float *dzs, const float *zs, const float *zt, const int *targets, int N, int V, float temp,
                     float scale, double *row_kl) {
    double inv_t = 1.0 / temp;
#pragma omp parallel for schedule(static) if ((long)N * V > PAR_MIN)
    for (int i = 0; i < N; i++) {
        const float *s = zs + (size_t)i * V, *t = zt + (size_t)i * V;
        float *d = dzs ? dzs + (size_t)i * V : NULL;
        if (targets && targets[i] < 0) { /* not scored: no loss, no gradient */
            row_kl[i] = 0;
            if (d) memset(d, 0, (size_t)V * sizeof(float));
            continue;
        }
        double lse_s = row_lse(s, V, inv_t), lse_t = row_lse(t, V, inv_t), kl = 0;
        for (int v = 0; v < V; v++) {
            double ls = s[v] * inv_t - lse_s, lt = t[v] * inv_t - lse_t, pt = exp(lt);
            kl += pt * (lt - ls);
            if (d) d[v] = (float)(scale * (exp(ls) - pt) * inv_t); /* after reading s[v]: d may be s */
        }
        row_kl[i] = kl;
    }
    double sum = 0;
    for (int i = 0; i < N; i++) sum += row_kl[i];
    return sum;
}

double lb_distill_mse(float *dhs, const float *hs, const float *ht, const int *targets, int N, int dim, float scale) {
    double sum = 0;
    for (int i = 0; i < N; i++) {
        const float *s = hs + (size_t)i * dim, *t = ht + (size_t)i * dim;
        float *d = dhs ? dhs + (size_t)i * dim : NULL;
        if (targets && targets[i] < 0) {
            if (d) memset(d, 0, (size_t)dim * sizeof(float));
            continue;
        }
        double r = 0;
        for (int j = 0; j < dim; j++) {
            double e = (double)s[j] - t[j];
            r += e * e;
            if (d) d[j] = (float)(scale * 2.0 * e / dim);
        }
        sum += r / dim;
    }
    return sum;
}

lb_status lb_distill_init(lb_distill *d, const lb_model *teacher) {
    memset(d, 0, sizeof *d);
    lb_status st = lb_train_model_from_model(teacher, 0, &d->teacher);
    if (st != LB_OK) return lb_fail_context(st, "the distillation teacher");
    return LB_OK;
}

void lb_distill_free(lb_distill *d) {
    lb_train_model_free(d->teacher);
    lb_free(d->row);
    lb_free(d->dxnf);
    memset(d, 0, sizeof *d);
}

size_t lb_distill_bytes(const lb_distill *d) {
    if (!d->teacher) return 0;
    return lb_train_model_bytes(d->teacher) + d->rows * (sizeof(double) + (size_t)d->teacher->cfg.dim * sizeof(float));
}

lb_status lb_distill_forward(lb_distill *d, lb_train_model *student, const int *inputs, const int *targets, int B,
                             int T, int kind, float temp, float mse_weight, lb_distill_loss *out) {
    const lb_config *c = &student->cfg;
    int N = B * T, V = c->vocab_size, dim = c->dim;
    if ((size_t)N != d->rows) {
        lb_free(d->row);
        lb_free(d->dxnf);
        d->rows = 0;
        d->row = lb_alloc((size_t)N * sizeof(double));
        d->dxnf = lb_alloc((size_t)N * dim * sizeof(float));
        if (!d->row || !d->dxnf) return lb_fail(LB_ERR_NOMEM, "out of memory for distillation's %d rows", N);
        d->rows = (size_t)N;
    }
    lb_status st = lb_train_model_forward(d->teacher, inputs, NULL, B, T, NULL);
    if (st == LB_OK) st = lb_train_model_forward(student, inputs, NULL, B, T, NULL);
    if (st != LB_OK) return st;
    int scored = 0;
    for (int i = 0; i < N; i++) scored += targets[i] >= 0;
    if (!scored) return lb_fail(LB_ERR_INVALID, "no target is scored (all negative)");
    float *zs = student->acts.logits;
    const float *zt = d->teacher->acts.logits;
    /* the cross-entropy of the text's targets, reported beside the loss
     * (the student's raw logits are overwritten by their gradient below) */
    double ce = 0;
    for (int i = 0; i < N; i++)
        d->row[i] = targets[i] < 0 ? 0 : row_lse(zs + (size_t)i * V, V, 1.0) - zs[(size_t)i * V + targets[i]];
    for (int i = 0; i < N; i++) ce += d->row[i];
    out->ce = ce / scored;
    out->kl = lb_distill_kl(zs, zs, zt, targets, N, V, temp, 1.0f / (float)scored, d->row) / scored;
    out->mse = NAN;
    out->loss = out->kl;
    if (kind == LB_DISTILL_KL_MSE) {
        out->mse = lb_distill_mse(d->dxnf, student->acts.xnf, d->teacher->acts.xnf, targets, N, dim,
                                  mse_weight / (float)scored) /
                   scored;
        out->loss += mse_weight * out->mse;
    }
    if (!isfinite(out->loss)) return lb_fail(LB_ERR_NUMERIC, "the distillation loss is not finite (%g)", out->loss);
    return LB_OK;
}

/* ---- teacher-generated text ---------------------------------------------- */

static lb_status data_append(lb_train_data *out, size_t *cap, int token) {
    if (out->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 4096;
        int *grown = lb_alloc(nc * sizeof(int));
        if (!grown) return lb_fail(LB_ERR_NOMEM, "out of memory for the generated tokens");
        if (out->n) memcpy(grown, out->tokens, out->n * sizeof(int));
        lb_free(out->tokens);
        out->tokens = grown;
        *cap = nc;
    }
    out->tokens[out->n++] = token;
    return LB_OK;
}

lb_status lb_train_data_generate(const lb_model *m, size_t n_tokens, float temperature, float top_p, uint64_t seed,
                                 lb_train_data *out) {
    if (!m->tokenizer) return lb_fail(LB_ERR_INVALID, "the model has no tokenizer: its BOS token is unknown");
    if (n_tokens < 1) return lb_fail(LB_ERR_INVALID, "the number of tokens to generate must be >= 1");
    if (!(temperature > 0)) return lb_fail(LB_ERR_INVALID, "teacher text needs a temperature > 0, not %g", (double)temperature);
    size_t cap = out->n; /* the stream's buffer may be larger; it is regrown from n on first append */
    lb_state *s = NULL;
    lb_sampler sampler;
    memset(&sampler, 0, sizeof sampler);
    lb_status st = lb_state_create(m, 1, &s);
    if (st == LB_OK) st = lb_sampler_init(&sampler, m->cfg.vocab_size, temperature, top_p, seed);
    int bos = lb_tokenizer_bos(m->tokenizer);
    size_t target = out->n + n_tokens;
    while (st == LB_OK && out->n < target) {
        int tok = bos; /* a sequence: BOS, then samples until BOS or a full context */
        for (int pos = 0; st == LB_OK && out->n < target && pos < m->cfg.seq_len; pos++) {
            if ((st = data_append(out, &cap, tok)) != LB_OK) break;
            out->generated++;
            if (out->n == target || pos + 1 == m->cfg.seq_len) break;
            if ((st = lb_forward(m, s, &tok, 1, pos, NULL)) != LB_OK) break;
            const float *z = lb_state_logits(s);
            for (int v = 0; v < m->cfg.vocab_size; v++)
                if (!isfinite(z[v])) st = lb_fail(LB_ERR_NUMERIC, "the teacher's logits are not finite");
            if (st != LB_OK) break;
            tok = lb_sample(&sampler, z);
            if (tok == bos) break;
        }
    }
    lb_sampler_free(&sampler);
    lb_state_free(s);
    return st;
}
