/* LoRA recovery over a frozen quantized base (HQQ+, QLoRA; issue 9 item 4).
 *
 * Every linear keeps its stored weight W (any format, decoded once to fp32
 * when the trainer is made, never trained) and gains a low-rank adapter:
 *
 *   y = x W^T + alpha (x A^T) B^T,   A (rank, cols), B (rows, rank)
 *
 * which is exactly what lowbit/linear.h's adapter slot computes at
 * inference (effective weight W + alpha B A). Only A and B train, in the
 * trainer's extra parameter block (own AdamW, no weight decay); the
 * embedding, norms and classifier stay as stored. As in LoRA, A starts
 * random (N(0, 1/cols)) and B at zero, so training starts from the base
 * model exactly. The adapter is stored in fp16 (2 bytes per value, counted
 * in bpw by lb_linear_slot_bytes); the forward uses A and B rounded to
 * fp16, the gradient reaching the fp32 latent copies unchanged (a
 * straight-through estimator), so the stored model computes exactly what
 * training did. Deviations from HQQ+: adapters on all seven linears of
 * every layer with one rank; no quantized-adapter option.
 *
 * Per linear, with u = x A^T (N, rank):
 *   dB += alpha dy^T u,   du = alpha dy B,   dA += du^T x,
 *   dx += dy W + du A
 * (W's own gradient is never formed: the base is frozen). */
#include <math.h>
#include <string.h>

#include "lowbit/quant.h"
#include "lowbit/train.h"
#include "train/ops.h"
#include "train/train_internal.h"

#define TRY(expr)                     \
    do {                              \
        lb_status st_ = (expr);       \
        if (st_ != LB_OK) return st_; \
    } while (0)

typedef struct {
    float *a, *b, *da, *db; /* views into the extra block: A (rank, cols), B (rows, rank) and their gradients */
    float *a16, *b16;       /* A and B rounded to fp16: what the forward uses and the file stores */
    float *u, *du, *t;      /* scratch (N, rank), (N, rank), (N, rows); u = x A^T, kept for the backward */
    size_t n_scratch;       /* N the scratch holds */
    int rank;
    float alpha;
    int exact; /* tests: A and B unrounded (finite differences) */
} lora_state;

struct lb_lora {
    lora_state *states; /* (n_layers * LB_N_LINEARS) */
    int n;
};

static void round_fp16(float *dst, const float *src, size_t n, int exact) {
    for (size_t i = 0; i < n; i++) dst[i] = exact ? src[i] : lb_round_fp16(src[i]);
}

void lb_lora_set_exact(struct lb_lora *Q, int on) {
    for (int i = 0; i < Q->n; i++) Q->states[i].exact = on;
}

static lb_status scratch(lora_state *S, int rows, int N) {
    if ((size_t)N <= S->n_scratch) return LB_OK;
    lb_free(S->u);
    lb_free(S->du);
    lb_free(S->t);
    S->u = lb_alloc((size_t)N * S->rank * sizeof(float));
    S->du = lb_alloc((size_t)N * S->rank * sizeof(float));
    S->t = lb_alloc((size_t)N * rows * sizeof(float));
    S->n_scratch = 0;
    if (!S->u || !S->du || !S->t) return lb_fail(LB_ERR_NOMEM, "out of memory for the LoRA scratch of %d rows", N);
    S->n_scratch = (size_t)N;
    return LB_OK;
}

static lb_status lora_forward(lb_train_linear *L, const float *x, int N, float *y) {
    lora_state *S = L->state;
    TRY(scratch(S, L->rows, N));
    round_fp16(S->a16, S->a, (size_t)S->rank * L->cols, S->exact);
    round_fp16(S->b16, S->b, (size_t)L->rows * S->rank, S->exact);
    lb_train_matmul_forward(y, x, L->w, N, L->cols, L->rows);
    lb_train_matmul_forward(S->u, x, S->a16, N, L->cols, S->rank);
    lb_train_matmul_forward(S->t, S->u, S->b16, N, S->rank, L->rows);
    size_t n = (size_t)N * L->rows;
    for (size_t i = 0; i < n; i++) y[i] += S->alpha * S->t[i];
    return LB_OK;
}

/* The backward follows the forward of the same x (lb_train_model_backward
 * refuses to run otherwise), whose u = x A^T is still in the scratch; it
 * is scaled in place, the next forward recomputing it. */
static lb_status lora_backward(lb_train_linear *L, const float *x, const float *dy, int N, float *dx) {
    lora_state *S = L->state;
    if ((size_t)N > S->n_scratch) return lb_fail(LB_ERR_INVALID, "LoRA backward of %d rows without their forward", N);
    int r = S->rank;
    size_t nr = (size_t)N * r;
    for (size_t i = 0; i < nr; i++) S->u[i] *= S->alpha;
    memset(S->du, 0, nr * sizeof(float));
    /* du += dy B (dx's slot), dB += dy^T (alpha u) */
    lb_train_matmul_backward(S->du, S->db, dy, S->u, S->b16, N, r, L->rows);
    for (size_t i = 0; i < nr; i++) S->du[i] *= S->alpha;
    /* dx += du A, dA += du^T x */
    lb_train_matmul_backward(dx, S->da, S->du, x, S->a16, N, L->cols, r);
    if (dx) lb_train_matmul_backward(dx, NULL, dy, x, L->w, N, L->cols, L->rows); /* dx += dy W; W frozen */
    return LB_OK;
}

const lb_train_linear_ops lb_train_linear_lora = {"lora", lora_forward, lora_backward};

void lb_lora_free(struct lb_lora *Q) {
    if (!Q) return;
    for (int i = 0; i < Q->n; i++) {
        lora_state *S = &Q->states[i];
        lb_free(S->a16);
        lb_free(S->b16);
        lb_free(S->u);
        lb_free(S->du);
        lb_free(S->t);
    }
    lb_free(Q->states);
    lb_free(Q);
}

lb_status lb_lora_attach(lb_train_model *tm, int rank, float alpha, uint64_t seed) {
    if (rank < 1) return lb_fail(LB_ERR_INVALID, "LoRA rank must be >= 1, not %d", rank);
    if (!(alpha > 0 && alpha < 1e6)) return lb_fail(LB_ERR_INVALID, "LoRA alpha must be in (0, 1e6), not %g", alpha);
    if (tm->qat) return lb_fail(LB_ERR_INVALID, "LoRA trains adapters over the stored weights: not with QAT");
    int n = tm->cfg.n_layers * LB_N_LINEARS;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        const lb_train_linear *L = &tm->linears[i];
        if (rank > L->rows || rank > L->cols)
            return lb_fail(LB_ERR_INVALID, "LoRA rank %d exceeds layer %d's %s (%d x %d)", rank, i / LB_N_LINEARS,
                           lb_linear_name(i % LB_N_LINEARS), L->rows, L->cols);
        total += (size_t)rank * (L->rows + L->cols);
    }
    struct lb_lora *Q = lb_calloc(1, sizeof *Q);
    if (!Q || !(Q->states = lb_calloc((size_t)n, sizeof *Q->states))) {
        lb_free(Q);
        return LB_ERR_NOMEM;
    }
    Q->n = n;
    lb_status st = lb_train_extra_alloc(tm, total, "lora.adapters");
    lb_rng rng;
    lb_rng_seed(&rng, seed ^ 0x10aull);
    size_t off = 0;
    for (int i = 0; i < n && st == LB_OK; i++) {
        lb_train_linear *L = &tm->linears[i];
        lora_state *S = &Q->states[i];
        S->rank = rank;
        S->alpha = alpha;
        size_t na = (size_t)rank * L->cols, nb = (size_t)L->rows * rank;
        S->a = tm->extra.params + off;
        S->da = tm->extra.grads + off;
        S->b = tm->extra.params + off + na;
        S->db = tm->extra.grads + off + na;
        off += na + nb;
        S->a16 = lb_alloc(na * sizeof(float));
        S->b16 = lb_alloc(nb * sizeof(float));
        if (!S->a16 || !S->b16) {
            st = lb_fail(LB_ERR_NOMEM, "out of memory for LoRA adapters");
            break;
        }
        float std = 1.0f / sqrtf((float)L->cols);
        for (size_t k = 0; k < na; k++) S->a[k] = std * (float)lb_rng_normal(&rng);
        /* B = 0 (extra_alloc zeroed it): the adapted model starts as the base */
    }
    if (st != LB_OK) {
        lb_lora_free(Q);
        lb_train_extra_alloc(tm, 0, "");
        return st;
    }
    for (int i = 0; i < n; i++) {
        tm->linears[i].ops = &lb_train_linear_lora;
        tm->linears[i].state = &Q->states[i];
    }
    tm->lora = Q;
    tm->frozen = 1;
    return LB_OK;
}

lb_status lb_lora_store(const lb_train_model *tm, lb_model *m) {
    const struct lb_lora *Q = tm->lora;
    if (!Q) return LB_OK;
    for (int i = 0; i < Q->n; i++) {
        lora_state *S = &Q->states[i];
        const lb_train_linear *L = &tm->linears[i];
        lb_linear *lin = &m->layers[i / LB_N_LINEARS].linear[i % LB_N_LINEARS];
        if (lin->w.rows != L->rows || lin->w.cols != L->cols)
            return lb_fail(LB_ERR_INVALID, "%s is %lld x %lld, the trainer's %d x %d", lin->w.name,
                           (long long)lin->w.rows, (long long)lin->w.cols, L->rows, L->cols);
        round_fp16(S->a16, S->a, (size_t)S->rank * L->cols, 0);
        round_fp16(S->b16, S->b, (size_t)L->rows * S->rank, 0);
        lb_status st = lb_linear_set_adapter(lin, S->rank, S->a16, S->b16, S->alpha);
        if (st != LB_OK) return lb_fail_context(st, "storing the adapter of %s", lin->w.name);
    }
    return LB_OK;
}

lb_status lb_lora_merge(lb_model *m, const char *method_name) {
    const lb_method *method = lb_method_find(method_name ? method_name : "hqq");
    if (!method) {
        char names[512];
        lb_method_list(names, sizeof names);
        return lb_fail(LB_ERR_INVALID, "unknown method '%s' to requantize merged weights with (known: %s)", method_name,
                       names);
    }
    lb_method_opts opts;
    lb_method_opts_default(method, &opts);
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int j = 0; j < LB_N_LINEARS; j++) {
            lb_linear *lin = &m->layers[l].linear[j];
            const lb_adapter *ad = &lin->adapter;
            if (!ad->rank) continue;
            int64_t rows = lin->w.rows, cols = lin->w.cols;
            float *w = lb_alloc((size_t)(rows * cols) * sizeof(float));
            if (!w) return lb_fail(LB_ERR_NOMEM, "out of memory merging %s", lin->w.name);
            lb_status st = lb_dequantize(&lin->w, w);
            for (int64_t r = 0; st == LB_OK && r < rows; r++)
                for (int k = 0; k < ad->rank; k++) {
                    float s = ad->alpha * ad->b[r * ad->rank + k];
                    const float *ak = ad->a + (size_t)k * cols;
                    float *wr = w + (size_t)r * cols;
                    for (int64_t c = 0; c < cols; c++) wr[c] += s * ak[c];
                }
            lb_tensor q;
            memset(&q, 0, sizeof q);
            if (st == LB_OK)
                st = lb_quantize_tensor(method, &opts, NULL, w, rows, cols, &lin->w.spec, lin->w.name, &q);
            lb_free(w);
            if (st == LB_OK) {
                st = lb_linear_set_weight(lin, &q);
                if (st != LB_OK) lb_tensor_free(&q);
            }
            if (st == LB_OK) st = lb_linear_set_adapter(lin, 0, NULL, NULL, 0);
            if (st != LB_OK) return lb_fail_context(st, "merging the adapter of %s with %s", lin->w.name, method->name);
        }
    return LB_OK;
}
