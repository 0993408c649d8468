/* Block-wise reconstruction PTQ: AutoRound, OmniQuant's LWC, 2DQuant and Block-AP on
 * one transformer block at a time (blockrec.h; the math and the deviations
 * from the papers are in docs/methods/autoround.md).
 *
 * One parametrization serves all four. Group k of a refined linear has
 * base bounds lo0, hi0 and learned factors f_lo = F(a_lo), f_hi = F(a_hi)
 * (F the identity, or the sigmoid for lwc); lo = f_lo lo0, hi = f_hi hi0,
 * and the format's grid follows:
 *   asym (fp16 offset):  d = (hi - lo) / qmax, m = lo,   q = clamp(round((w - m)/d + V)),      w' = d q + m
 *   asym:zint:           d = (hi - lo) / qmax, z = clamp(round(-lo / d)),
 *                                                        q = clamp(round(w/d + V) + z),        w' = d (q - z)
 *   sym:                 d = f_hi hi0 (hi0 the start's scale), z = 2^(b-1), q as zint
 * with d (and m) rounded to fp16, as stored, so the exported tensor holds
 * exactly the weights the optimized forward used. V, the rounding offset
 * per weight, exists for autoround only (else 0). blockap rounds latent
 * weights w = w_fp32 + step0 P instead of w (P learned per weight, step0 the
 * group's starting step), as EfficientQAT's Block-AP trains W itself; its
 * gradient is the STE's, d w' / d w = 1 inside the grid. Gradients go through
 * round() and the fp16 rounding as the identity (the straight-through
 * estimator) and through clamp() as its derivative (0 outside the grid).
 *
 * The student block runs these weights on the calibration inputs given
 * (the partly quantized model's, from the sequential driver); the targets
 * are the teacher block (fp32 weights) on the same inputs; the loss is the
 * mean squared error of the block output. Norms and attention stay fp32. */
#include "train/blockrec.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/ops.h"

/* ---- state ---------------------------------------------------------------- */

typedef struct {
    int learn, rows, cols;
    float *w_teacher; /* (rows, cols) */
    float *w_fixed;   /* m's own weight, dequantized (the student's when not learned) */
    float *wq, *dw;   /* the student's weight in the last forward, and its gradient */
    /* learned linears only */
    lb_qtensor q;     /* the start, decoded; the export is written into it */
    int qmax, zkind;  /* lb_zero */
    int64_t n_groups;
    float *lo0, *hi0;
    float *p[3], *g[3], *best[3], *start[3]; /* 0: V (autoround) or the weights' moves (blockap), rows x cols;
                                                1: a_lo, 2: a_hi (n_groups) */
    float *wlat, *step0;                     /* blockap: the latent weights; per group, the start's step */
    float *v0;                               /* V's start (its range is v0 +- 0.5) */
    float *am[3], *av[3];                    /* Adam moments (lwc, 2dquant, blockap) */
    float *d, *mz;                           /* per group: d, and m (asym) or z (zint, sym) */
    uint8_t *zin;                            /* per group: z not clamped */
    uint8_t *inside;                         /* per weight: the code was not clamped */
    float *code;                             /* per weight: q */
    double *gd, *gm;                         /* per group gradient scratch */
} blin;

struct lb_blockrec {
    const lb_model *m;
    int layer;
    lb_config c;
    lb_blockrec_opts o;
    lb_blockrec_data d;
    size_t tokens;
    int tmax;
    float *attn_norm, *ffn_norm;
    blin lin[LB_N_LINEARS];
    float *y; /* (tokens, dim) targets */
    /* activations of one sequence (tmax rows) and the backward's */
    float *xn1, *rstd1, *q, *k, *v, *att, *ao, *x_mid, *xn2, *rstd2, *gt, *ut, *h, *out, *dnorm;
    float *dout, *dxm, *dxn2, *dh, *dg, *du, *dao, *dq, *dk, *dv;
};

static float fmap(const lb_blockrec *b, float a) { return b->o.kind == LB_BLOCKREC_LWC ? 1.0f / (1.0f + expf(-a)) : a; }
static float fmap_grad(const lb_blockrec *b, float a) {
    if (b->o.kind != LB_BLOCKREC_LWC) return 1.0f;
    float s = 1.0f / (1.0f + expf(-a));
    return s * (1.0f - s);
}

/* ---- the fake-quantized weight and its gradient ------------------------------ */

static int64_t group_of(const blin *L, int r, int c) { return lb_qtensor_group(&L->q, r, c); }

/* d, m or z of every group from the parameters */
static void group_grid(const lb_blockrec *b, blin *L, int soft) {
    for (int64_t k = 0; k < L->n_groups; k++) {
        float lo = fmap(b, L->p[1][k]) * L->lo0[k], hi = fmap(b, L->p[2][k]) * L->hi0[k];
        float d = L->zkind == LB_ZERO_SYM ? hi : (hi - lo) / (float)L->qmax, mz;
        if (!soft) d = lb_round_fp16(d);
        /* sym's scale may be negative (rtn, as ggml's q4_0, puts the extreme weight on the level -2^(b-1)) */
        if (!(L->zkind == LB_ZERO_SYM ? d != 0.0f : d > 0.0f) || !isfinite(d)) d = 0.0f;
        L->zin[k] = 0;
        if (L->zkind == LB_ZERO_F16) {
            mz = soft ? lo : lb_round_fp16(lo);
        } else if (L->zkind == LB_ZERO_SYM) {
            mz = (float)(1 << (L->q.spec.bits - 1));
        } else {
            float z = d > 0.0f ? -lo / d : 0.0f;
            if (!soft) z = nearbyintf(z);
            L->zin[k] = z >= 0.0f && z <= (float)L->qmax;
            mz = z < 0.0f ? 0.0f : z > (float)L->qmax ? (float)L->qmax : z;
        }
        L->d[k] = d;
        L->mz[k] = mz;
    }
}

/* the weights being rounded: the fp32 ones, or blockap's latent ones */
static const float *latent(blin *L) {
    if (!L->wlat) return L->w_teacher;
    for (int r = 0; r < L->rows; r++)
        for (int c = 0; c < L->cols; c++) {
            size_t i = (size_t)r * L->cols + c;
            L->wlat[i] = L->w_teacher[i] + L->step0[group_of(L, r, c)] * L->p[0][i];
        }
    return L->wlat;
}

static void fq_forward(const lb_blockrec *b, blin *L, int soft) {
    group_grid(b, L, soft);
    const float *W = latent(L), *V = b->o.kind == LB_BLOCKREC_AUTOROUND ? L->p[0] : NULL;
    float qmax = (float)L->qmax;
    for (int r = 0; r < L->rows; r++)
        for (int c = 0; c < L->cols; c++) {
            size_t i = (size_t)r * L->cols + c;
            int64_t k = group_of(L, r, c);
            float d = L->d[k], mz = L->mz[k], t, q;
            int f16 = L->zkind == LB_ZERO_F16;
            if (d == 0.0f) { /* a constant group: every code decodes to m (or 0) */
                L->code[i] = f16 ? 0.0f : mz;
                L->inside[i] = 0;
                L->wq[i] = f16 ? mz : 0.0f;
                continue;
            }
            t = (f16 ? (W[i] - mz) / d : W[i] / d) + (V ? V[i] : 0.0f);
            if (!soft) t = nearbyintf(t);
            if (!f16) t += mz;
            q = t < 0.0f ? 0.0f : t > qmax ? qmax : t;
            L->inside[i] = t >= 0.0f && t <= qmax;
            L->code[i] = q;
            L->wq[i] = f16 ? d * q + mz : d * (q - mz);
        }
}

/* dw (the weight's gradient) -> the parameters' gradients (overwritten) */
static void fq_backward(const lb_blockrec *b, blin *L) {
    const float *W = L->wlat ? L->wlat : L->w_teacher; /* as the forward left it */
    memset(L->gd, 0, (size_t)L->n_groups * sizeof *L->gd);
    memset(L->gm, 0, (size_t)L->n_groups * sizeof *L->gm);
    int f16 = L->zkind == LB_ZERO_F16;
    for (int r = 0; r < L->rows; r++)
        for (int c = 0; c < L->cols; c++) {
            size_t i = (size_t)r * L->cols + c;
            int64_t k = group_of(L, r, c);
            float d = L->d[k], mz = L->mz[k], G = L->dw[i], in = (float)L->inside[i], q = L->code[i];
            if (L->g[0]) L->g[0][i] = G * in * (L->wlat ? L->step0[k] : d); /* d wq / d(latent w) = in */
            if (d == 0.0f) continue;
            if (f16) {
                L->gd[k] += (double)G * (q - in * (W[i] - mz) / d); /* t = (w - m)/d + V */
                L->gm[k] += (double)G * (1.0f - in);
            } else {
                L->gd[k] += (double)G * ((q - mz) - in * W[i] / d); /* t = w/d + V + z */
                L->gm[k] += (double)G * d * (in - 1.0f);           /* through z */
            }
        }
    double qmax = L->qmax;
    for (int64_t k = 0; k < L->n_groups; k++) {
        double d = L->d[k], dlo = 0, dhi = 0;
        float lo = fmap(b, L->p[1][k]) * L->lo0[k];
        if (d != 0) {
            if (L->zkind == LB_ZERO_F16) {
                dhi = L->gd[k] / qmax;
                dlo = -L->gd[k] / qmax + L->gm[k];
            } else if (L->zkind == LB_ZERO_SYM) {
                dhi = L->gd[k];
            } else { /* z = -lo/d: dz/dd = lo/d^2, dz/dlo = -1/d */
                double dd = L->gd[k] + (L->zin[k] ? L->gm[k] * lo / (d * d) : 0.0);
                dhi = dd / qmax;
                dlo = -dd / qmax + (L->zin[k] ? -L->gm[k] / d : 0.0);
            }
        }
        L->g[1][k] = (float)(dlo * L->lo0[k] * fmap_grad(b, L->p[1][k]));
        L->g[2][k] = (float)(dhi * L->hi0[k] * fmap_grad(b, L->p[2][k]));
    }
}

/* ---- the block, forward and backward over one sequence ---------------------- */

static void block_forward(lb_blockrec *b, float *const W[LB_N_LINEARS], const float *x, int T) {
    const lb_config *c = &b->c;
    int dim = c->dim, kv = c->n_kv_heads * c->head_dim, hid = c->hidden_dim;
    lb_train_rmsnorm_forward(b->xn1, b->rstd1, x, b->attn_norm, T, dim, c->norm_eps);
    lb_train_matmul_forward(b->q, b->xn1, W[LB_WQ], T, dim, dim);
    lb_train_matmul_forward(b->k, b->xn1, W[LB_WK], T, dim, kv);
    lb_train_matmul_forward(b->v, b->xn1, W[LB_WV], T, dim, kv);
    lb_train_rope_forward(b->q, b->k, 1, T, dim, kv, c->head_dim, b->m->rope_cos, b->m->rope_sin);
    lb_train_attention_forward(b->ao, b->att, b->q, b->k, b->v, 1, T, c->n_heads, c->n_kv_heads, c->head_dim);
    lb_train_matmul_forward(b->x_mid, b->ao, W[LB_WO], T, dim, dim);
    for (size_t i = 0; i < (size_t)T * dim; i++) b->x_mid[i] += x[i];
    lb_train_rmsnorm_forward(b->xn2, b->rstd2, b->x_mid, b->ffn_norm, T, dim, c->norm_eps);
    lb_train_matmul_forward(b->gt, b->xn2, W[LB_W1], T, dim, hid);
    lb_train_matmul_forward(b->ut, b->xn2, W[LB_W3], T, dim, hid);
    lb_train_swiglu_forward(b->h, b->gt, b->ut, (size_t)T * hid);
    lb_train_matmul_forward(b->out, b->h, W[LB_W2], T, hid, dim);
    for (size_t i = 0; i < (size_t)T * dim; i++) b->out[i] += b->x_mid[i];
}

/* dout (T, dim) -> every linear's dw (added); the block input's gradient is
 * not needed (the inputs are data), so q, k, v's input gradient is skipped. */
static lb_status block_backward(lb_blockrec *b, float *const W[LB_N_LINEARS], int T) {
    const lb_config *c = &b->c;
    int dim = c->dim, kv = c->n_kv_heads * c->head_dim, hid = c->hidden_dim;
    size_t nd = (size_t)T * dim;
    memcpy(b->dxm, b->dout, nd * sizeof(float));
    memset(b->dh, 0, (size_t)T * hid * sizeof(float));
    lb_train_matmul_backward(b->dh, b->lin[LB_W2].dw, b->dout, b->h, W[LB_W2], T, hid, dim);
    memset(b->dg, 0, (size_t)T * hid * sizeof(float));
    memset(b->du, 0, (size_t)T * hid * sizeof(float));
    lb_train_swiglu_backward(b->dg, b->du, b->dh, b->gt, b->ut, (size_t)T * hid);
    memset(b->dxn2, 0, nd * sizeof(float));
    lb_train_matmul_backward(b->dxn2, b->lin[LB_W1].dw, b->dg, b->xn2, W[LB_W1], T, dim, hid);
    lb_train_matmul_backward(b->dxn2, b->lin[LB_W3].dw, b->du, b->xn2, W[LB_W3], T, dim, hid);
    memset(b->dnorm, 0, (size_t)dim * sizeof(float)); /* the norm weight's gradient: not used */
    lb_train_rmsnorm_backward(b->dxm, b->dnorm, b->dxn2, b->x_mid, b->ffn_norm, b->rstd2, T, dim);
    memset(b->dao, 0, nd * sizeof(float));
    lb_train_matmul_backward(b->dao, b->lin[LB_WO].dw, b->dxm, b->ao, W[LB_WO], T, dim, dim);
    memset(b->dq, 0, nd * sizeof(float));
    memset(b->dk, 0, (size_t)T * kv * sizeof(float));
    memset(b->dv, 0, (size_t)T * kv * sizeof(float));
    lb_status st = lb_train_attention_backward(b->dq, b->dk, b->dv, b->dao, b->q, b->k, b->v, b->att, 1, T, c->n_heads,
                                               c->n_kv_heads, c->head_dim);
    if (st != LB_OK) return st;
    lb_train_rope_backward(b->dq, b->dk, 1, T, dim, kv, c->head_dim, b->m->rope_cos, b->m->rope_sin);
    lb_train_matmul_backward(NULL, b->lin[LB_WQ].dw, b->dq, b->xn1, W[LB_WQ], T, dim, dim);
    lb_train_matmul_backward(NULL, b->lin[LB_WK].dw, b->dk, b->xn1, W[LB_WK], T, dim, kv);
    lb_train_matmul_backward(NULL, b->lin[LB_WV].dw, b->dv, b->xn1, W[LB_WV], T, dim, kv);
    return LB_OK;
}

static void student_weights(lb_blockrec *b, float *W[LB_N_LINEARS]) {
    for (int w = 0; w < LB_N_LINEARS; w++) W[w] = b->lin[w].learn ? b->lin[w].wq : b->lin[w].w_fixed;
}

/* MSE over the sequences idx[0..n), gradients when asked */
static lb_status loss_over(lb_blockrec *b, const int *idx, int n, int soft, int grad, double *loss) {
    float *W[LB_N_LINEARS];
    for (int w = 0; w < LB_N_LINEARS; w++)
        if (b->lin[w].learn) fq_forward(b, &b->lin[w], soft);
    student_weights(b, W);
    size_t count = 0;
    for (int i = 0; i < n; i++) count += (size_t)b->d.len[idx[i]] * (size_t)b->c.dim;
    if (grad)
        for (int w = 0; w < LB_N_LINEARS; w++)
            memset(b->lin[w].dw, 0, (size_t)b->lin[w].rows * b->lin[w].cols * sizeof(float));
    double sum = 0;
    lb_status st = LB_OK;
    for (int i = 0; i < n && st == LB_OK; i++) {
        int s = idx[i], T = b->d.len[s];
        size_t off = b->d.offset[s] * (size_t)b->c.dim, nd = (size_t)T * b->c.dim;
        block_forward(b, W, b->d.x + off, T);
        const float *y = b->y + off;
        for (size_t j = 0; j < nd; j++) {
            double e = (double)b->out[j] - y[j];
            sum += e * e;
            b->dout[j] = (float)(2.0 * e / (double)count);
        }
        if (grad) st = block_backward(b, W, T);
    }
    if (st != LB_OK) return st;
    if (grad)
        for (int w = 0; w < LB_N_LINEARS; w++)
            if (b->lin[w].learn) fq_backward(b, &b->lin[w]);
    *loss = count ? sum / (double)count : 0.0;
    return LB_OK;
}

lb_status lb_blockrec_loss(lb_blockrec *b, int s0, int s1, int soft, int grad, double *loss) {
    if (s0 < 0 || s1 > b->d.n_seq || s0 > s1) return lb_fail(LB_ERR_INVALID, "blockrec: no sequences [%d, %d)", s0, s1);
    int *idx = lb_alloc((size_t)(s1 - s0 + 1) * sizeof *idx);
    if (!idx) return LB_ERR_NOMEM;
    for (int i = s0; i < s1; i++) idx[i - s0] = i;
    lb_status st = loss_over(b, idx, s1 - s0, soft, grad, loss);
    lb_free(idx);
    return st;
}

float *lb_blockrec_param(lb_blockrec *b, int w, int what, size_t *n) {
    blin *L = &b->lin[w];
    if (!L->learn || what < 0 || what > 2 || !L->p[what]) return NULL;
    if (n) *n = what == 0 ? (size_t)L->rows * L->cols : (size_t)L->n_groups;
    return L->p[what];
}
const float *lb_blockrec_grad(const lb_blockrec *b, int w, int what) {
    return b->lin[w].learn && what >= 0 && what <= 2 ? b->lin[w].g[what] : NULL;
}
const float *lb_blockrec_weight(const lb_blockrec *b, int w) {
    return b->lin[w].learn ? b->lin[w].wq : b->lin[w].w_fixed;
}

/* ---- start ------------------------------------------------------------------- */

/* the weight error of group k's weights on the grid (lo, hi), rounding to nearest */
static double grid_error(const blin *L, const float *w, int n, float lo, float hi) {
    float d = L->zkind == LB_ZERO_SYM ? hi : (hi - lo) / (float)L->qmax;
    d = lb_round_fp16(d);
    if (!(d > 0.0f)) return INFINITY;
    float m = lb_round_fp16(lo), z = L->zkind == LB_ZERO_SYM ? (float)(1 << (L->q.spec.bits - 1)) : nearbyintf(-lo / d);
    if (z < 0.0f) z = 0.0f;
    if (z > (float)L->qmax) z = (float)L->qmax;
    double e = 0;
    for (int j = 0; j < n; j++) {
        float t = L->zkind == LB_ZERO_F16 ? nearbyintf((w[j] - m) / d) : nearbyintf(w[j] / d) + z;
        t = t < 0.0f ? 0.0f : t > (float)L->qmax ? (float)L->qmax : t;
        float v = L->zkind == LB_ZERO_F16 ? d * t + m : d * (t - z);
        e += (double)(w[j] - v) * (w[j] - v);
    }
    return e;
}

/* lo0, hi0 of group k: the start's grid (autoround, blockap), the weights' min and max
 * (lwc), or DOBI's search (2dquant) */
static void base_bounds(lb_blockrec *b, blin *L, int64_t k, const float *w, int n) {
    float d0 = L->q.scale[k];
    if (b->o.kind == LB_BLOCKREC_AUTOROUND || b->o.kind == LB_BLOCKREC_BLOCKAP) {
        if (L->zkind == LB_ZERO_F16) {
            L->lo0[k] = L->q.offset[k];
            L->hi0[k] = L->q.offset[k] + d0 * (float)L->qmax;
        } else if (L->zkind == LB_ZERO_INT) {
            L->lo0[k] = -(float)L->q.zero[k] * d0;
            L->hi0[k] = (float)(L->qmax - L->q.zero[k]) * d0;
        } else {
            L->lo0[k] = 0.0f;
            L->hi0[k] = d0;
        }
        return;
    }
    float lo = w[0], hi = w[0], amax = 0.0f;
    for (int j = 0; j < n; j++) {
        lo = w[j] < lo ? w[j] : lo;
        hi = w[j] > hi ? w[j] : hi;
        amax = fabsf(w[j]) > amax ? fabsf(w[j]) : amax;
    }
    if (L->zkind == LB_ZERO_SYM) { /* the scale putting the largest weight on the top level */
        lo = 0.0f;
        hi = amax / (float)((1 << (L->q.spec.bits - 1)) - 1);
    }
    if (b->o.kind == LB_BLOCKREC_2DQUANT) {
        /* DOBI: the symmetric shrink of both bounds with the least weight
         * error, then each bound alone around it */
        float best_lo = lo, best_hi = hi;
        double best = grid_error(L, w, n, lo, hi);
        for (int i = 1; i <= 50; i++) {
            float r = 1.0f - 0.01f * (float)i;
            double e = grid_error(L, w, n, r * lo, r * hi);
            if (e < best) best = e, best_lo = r * lo, best_hi = r * hi;
        }
        float blo = best_lo, bhi = best_hi;
        for (int side = 0; side < 2 && L->zkind != LB_ZERO_SYM; side++)
            for (int i = -20; i <= 20; i++) {
                float r = 1.0f + 0.01f * (float)i;
                float tlo = side ? blo : r * blo, thi = side ? r * bhi : bhi;
                double e = grid_error(L, w, n, tlo, thi);
                if (e < best) best = e, best_lo = tlo, best_hi = thi;
            }
        lo = best_lo;
        hi = best_hi;
    }
    L->lo0[k] = lo;
    L->hi0[k] = hi;
}

static lb_status dequantized(const lb_tensor *t, int rows, int cols, float **out) {
    if (t->rows != rows || t->cols != cols)
        return lb_fail(LB_ERR_INVALID, "blockrec: '%s' is %lldx%lld, not %dx%d", t->name, (long long)t->rows,
                       (long long)t->cols, rows, cols);
    *out = lb_alloc((size_t)rows * cols * sizeof(float));
    if (!*out) return LB_ERR_NOMEM;
    return lb_dequantize(t, *out);
}

#define ALLOC(p, n)                                                  \
    do {                                                             \
        if (!((p) = lb_calloc((size_t)(n), sizeof *(p)))) return LB_ERR_NOMEM; \
    } while (0)

static lb_status init_learned(lb_blockrec *b, blin *L, const lb_tensor *t) {
    const lb_qspec *s = &t->spec;
    if (s->family != LB_FAMILY_UNIFORM || s->scale_bits)
        return lb_fail(LB_ERR_UNSUPPORTED, "block reconstruction refines uniform formats (int<b>:g<G>, no :s<k>), "
                       "not '%s'", t->name);
    lb_status st = lb_qtensor_init(&L->q, s, L->rows, L->cols);
    if (st == LB_OK) st = lb_qtensor_decode(&L->q, t->data, t->nbytes);
    if (st != LB_OK) return st;
    L->qmax = (1 << s->bits) - 1;
    L->zkind = s->zero;
    L->n_groups = L->q.n_groups;
    size_t nw = (size_t)L->rows * L->cols, ng = (size_t)L->n_groups;
    ALLOC(L->lo0, ng);
    ALLOC(L->hi0, ng);
    ALLOC(L->d, ng);
    ALLOC(L->mz, ng);
    ALLOC(L->zin, ng);
    ALLOC(L->gd, ng);
    ALLOC(L->gm, ng);
    ALLOC(L->inside, nw);
    ALLOC(L->code, nw);
    ALLOC(L->wq, nw);
    int blockap = b->o.kind == LB_BLOCKREC_BLOCKAP;
    if (blockap) {
        ALLOC(L->wlat, nw);
        ALLOC(L->step0, ng);
    }
    for (int what = b->o.kind == LB_BLOCKREC_AUTOROUND || blockap ? 0 : 1; what < 3; what++) {
        size_t n = what ? ng : nw;
        ALLOC(L->p[what], n);
        ALLOC(L->g[what], n);
        ALLOC(L->best[what], n);
        ALLOC(L->start[what], n);
        if (b->o.kind != LB_BLOCKREC_AUTOROUND) {
            ALLOC(L->am[what], n);
            ALLOC(L->av[what], n);
        }
    }
    float *wg = lb_alloc((size_t)L->q.group_len * sizeof *wg);
    if (!wg) return LB_ERR_NOMEM;
    float a0 = b->o.kind == LB_BLOCKREC_LWC ? 4.0f : 1.0f; /* OmniQuant's start: sigmoid(4) = 0.982 */
    for (int64_t k = 0; k < L->n_groups; k++) {
        /* the weights of group k: a row's columns [c0, c1) */
        int64_t r = L->q.groups_per_row ? k / L->q.groups_per_row : 0;
        int64_t c0 = L->q.groups_per_row ? (k % L->q.groups_per_row) * L->q.group_len : 0;
        int64_t c1 = c0 + L->q.group_len < L->cols ? c0 + L->q.group_len : L->cols;
        if (!L->q.groups_per_row) { /* one group for the whole tensor */
            lb_free(wg);
            return lb_fail(LB_ERR_UNSUPPORTED, "block reconstruction needs groups or rows, not one scale per tensor "
                           "('%s')", t->name);
        }
        memcpy(wg, L->w_teacher + r * L->cols + c0, (size_t)(c1 - c0) * sizeof *wg);
        base_bounds(b, L, k, wg, (int)(c1 - c0));
        L->p[1][k] = L->p[2][k] = a0;
        if (blockap) L->step0[k] = L->zkind == LB_ZERO_SYM ? L->hi0[k] : (L->hi0[k] - L->lo0[k]) / (float)L->qmax;
    }
    lb_free(wg);
    if (b->o.kind == LB_BLOCKREC_AUTOROUND) { /* V's start: the offset that rounds to the start's code */
        ALLOC(L->v0, nw);
        group_grid(b, L, 0);
        for (int r = 0; r < L->rows; r++)
            for (int c = 0; c < L->cols; c++) {
                size_t i = (size_t)r * L->cols + c;
                int64_t k = group_of(L, r, c);
                float d = L->d[k], code = (float)L->q.codes[(size_t)r * L->q.cols_padded + c];
                float v = 0.0f;
                if (d != 0.0f)
                    v = L->zkind == LB_ZERO_F16 ? code - (L->w_teacher[i] - L->mz[k]) / d
                                                : (code - L->mz[k]) - L->w_teacher[i] / d;
                L->p[0][i] = L->v0[i] = v;
            }
    }
    if (blockap) { /* where the method did not round to nearest, the latent weight starts on its code */
        fq_forward(b, L, 0);
        for (int r = 0; r < L->rows; r++)
            for (int c = 0; c < L->cols; c++) {
                size_t i = (size_t)r * L->cols + c;
                float s0 = L->step0[group_of(L, r, c)];
                if (L->code[i] != (float)L->q.codes[(size_t)r * L->q.cols_padded + c] && s0 != 0.0f)
                    L->p[0][i] = (lb_qtensor_value(&L->q, r, c) - L->w_teacher[i]) / s0;
            }
    }
    for (int what = 0; what < 3; what++)
        if (L->p[what]) memcpy(L->start[what], L->p[what], (what ? ng : nw) * sizeof(float));
    return LB_OK;
}

lb_status lb_blockrec_create(const lb_model *m, int layer, const lb_tensor *const teacher[LB_N_LINEARS],
                             const int learn[LB_N_LINEARS], const lb_blockrec_opts *o, const lb_blockrec_data *data,
                             lb_blockrec **out) {
    *out = NULL;
    if (layer < 0 || layer >= m->cfg.n_layers) return lb_fail(LB_ERR_INVALID, "blockrec: no layer %d", layer);
    if (!data || data->n_seq < 1) return lb_fail(LB_ERR_INVALID, "blockrec: no calibration sequences");
    lb_blockrec *b = lb_calloc(1, sizeof *b);
    if (!b) return LB_ERR_NOMEM;
    b->m = m;
    b->layer = layer;
    b->c = m->cfg;
    b->o = *o;
    b->d = *data;
    const lb_config *c = &b->c;
    for (int i = 0; i < data->n_seq; i++) {
        b->tokens += (size_t)data->len[i];
        b->tmax = data->len[i] > b->tmax ? data->len[i] : b->tmax;
    }
    lb_status st = LB_OK;
    if (b->tmax > c->seq_len) st = lb_fail(LB_ERR_INVALID, "blockrec: a sequence of %d tokens is longer than the "
                                           "model's context %d", b->tmax, c->seq_len);
    const lb_layer *ly = &m->layers[layer];
    if (st == LB_OK) st = dequantized(&ly->attn_norm, 1, c->dim, &b->attn_norm);
    if (st == LB_OK) st = dequantized(&ly->ffn_norm, 1, c->dim, &b->ffn_norm);
    for (int w = 0; w < LB_N_LINEARS && st == LB_OK; w++) {
        blin *L = &b->lin[w];
        const lb_linear *lin = &ly->linear[w];
        L->rows = (int)lin->w.rows;
        L->cols = (int)lin->w.cols;
        if (lin->in_scale || lin->rot.kind || lin->out_rot.kind || lin->outliers.nnz || lin->adapter.rank ||
            lin->bias || lin->act.kind != LB_AQ_NONE) {
            st = lb_fail(LB_ERR_UNSUPPORTED, "block reconstruction runs plain linears: '%s' has slots (scales, "
                         "rotations, outliers, adapter, bias or an activation quantizer)", lin->w.name);
            break;
        }
        st = dequantized(&lin->w, L->rows, L->cols, &L->w_fixed);
        if (st == LB_OK) st = dequantized(teacher && teacher[w] ? teacher[w] : &lin->w, L->rows, L->cols, &L->w_teacher);
        if (st == LB_OK && !(L->dw = lb_calloc((size_t)L->rows * L->cols, sizeof(float)))) st = LB_ERR_NOMEM;
        if (st == LB_OK && learn && learn[w]) {
            L->learn = 1;
            st = init_learned(b, L, &lin->w);
        }
    }
    size_t T = (size_t)b->tmax, dim = (size_t)c->dim, kv = (size_t)c->n_kv_heads * c->head_dim,
           hid = (size_t)c->hidden_dim;
    float **bufs[] = {&b->xn1, &b->q, &b->ao, &b->x_mid, &b->xn2, &b->out, &b->dout, &b->dxm, &b->dxn2, &b->dao, &b->dq};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0] && st == LB_OK; i++)
        if (!(*bufs[i] = lb_alloc(T * dim * sizeof(float)))) st = LB_ERR_NOMEM;
    float **hbufs[] = {&b->gt, &b->ut, &b->h, &b->dh, &b->dg, &b->du};
    for (size_t i = 0; i < sizeof hbufs / sizeof hbufs[0] && st == LB_OK; i++)
        if (!(*hbufs[i] = lb_alloc(T * hid * sizeof(float)))) st = LB_ERR_NOMEM;
    if (st == LB_OK && (!(b->k = lb_alloc(T * kv * sizeof(float))) || !(b->v = lb_alloc(T * kv * sizeof(float))) ||
                        !(b->dk = lb_alloc(T * kv * sizeof(float))) || !(b->dv = lb_alloc(T * kv * sizeof(float))) ||
                        !(b->rstd1 = lb_alloc(T * sizeof(float))) || !(b->rstd2 = lb_alloc(T * sizeof(float))) ||
                        !(b->dnorm = lb_alloc(dim * sizeof(float))) ||
                        !(b->att = lb_alloc((size_t)c->n_heads * T * T * sizeof(float))) ||
                        !(b->y = lb_alloc(b->tokens * dim * sizeof(float)))))
        st = lb_fail(LB_ERR_NOMEM, "blockrec: out of memory for the activations of %zu tokens", b->tokens);
    /* the targets: the teacher block on the same inputs */
    if (st == LB_OK) {
        float *W[LB_N_LINEARS];
        for (int w = 0; w < LB_N_LINEARS; w++) W[w] = b->lin[w].w_teacher;
        for (int s = 0; s < data->n_seq; s++) {
            block_forward(b, W, (data->x_teacher ? data->x_teacher : data->x) + data->offset[s] * dim, data->len[s]);
            memcpy(b->y + data->offset[s] * dim, b->out, (size_t)data->len[s] * dim * sizeof(float));
        }
    }
    if (st != LB_OK) {
        lb_blockrec_free(b);
        return st;
    }
    *out = b;
    return LB_OK;
}

const float *lb_blockrec_targets(const lb_blockrec *b) { return b->y; }

void lb_blockrec_free(lb_blockrec *b) {
    if (!b) return;
    for (int w = 0; w < LB_N_LINEARS; w++) {
        blin *L = &b->lin[w];
        lb_free(L->w_teacher);
        lb_free(L->w_fixed);
        lb_free(L->wq);
        lb_free(L->dw);
        if (L->learn) lb_qtensor_free(&L->q);
        lb_free(L->lo0);
        lb_free(L->hi0);
        for (int i = 0; i < 3; i++) {
            lb_free(L->p[i]);
            lb_free(L->g[i]);
            lb_free(L->best[i]);
            lb_free(L->start[i]);
            lb_free(L->am[i]);
            lb_free(L->av[i]);
        }
        lb_free(L->v0);
        lb_free(L->wlat);
        lb_free(L->step0);
        lb_free(L->d);
        lb_free(L->mz);
        lb_free(L->zin);
        lb_free(L->inside);
        lb_free(L->code);
        lb_free(L->gd);
        lb_free(L->gm);
    }
    float *bufs[] = {b->attn_norm, b->ffn_norm, b->y, b->xn1, b->rstd1, b->q, b->k, b->v, b->att, b->ao, b->x_mid,
                     b->xn2, b->rstd2, b->gt, b->ut, b->h, b->out, b->dnorm, b->dout, b->dxm, b->dxn2, b->dh, b->dg,
                     b->du, b->dao, b->dq, b->dk, b->dv};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) lb_free(bufs[i]);
    lb_free(b);
}

/* ---- optimization ------------------------------------------------------------ */

static size_t param_len(const blin *L, int what) { return what ? (size_t)L->n_groups : (size_t)L->rows * L->cols; }

/* copy every learned quantity: to = 0 params <- src, 1 dst <- params */
static void copy_params(lb_blockrec *b, int which /* 0 best, 1 start */, int to_params) {
    for (int w = 0; w < LB_N_LINEARS; w++) {
        blin *L = &b->lin[w];
        if (!L->learn) continue;
        for (int i = 0; i < 3; i++) {
            if (!L->p[i]) continue;
            float *other = which ? L->start[i] : L->best[i];
            if (to_params) memcpy(L->p[i], other, param_len(L, i) * sizeof(float));
            else memcpy(other, L->p[i], param_len(L, i) * sizeof(float));
        }
    }
}

static void swap_best(lb_blockrec *b) {
    for (int w = 0; w < LB_N_LINEARS; w++)
        for (int i = 0; i < 3; i++) {
            float *t = b->lin[w].p[i];
            b->lin[w].p[i] = b->lin[w].best[i];
            b->lin[w].best[i] = t;
        }
}

static float sgnf(float g) { return g > 0.0f ? 1.0f : g < 0.0f ? -1.0f : 0.0f; }

static void step(lb_blockrec *b, int t) {
    const lb_blockrec_opts *o = &b->o;
    for (int w = 0; w < LB_N_LINEARS; w++) {
        blin *L = &b->lin[w];
        if (!L->learn) continue;
        if (o->kind == LB_BLOCKREC_AUTOROUND) {
            /* signed SGD, the learning rate decaying linearly to 0 (AutoRound's schedule) */
            float lr = o->lr * (1.0f - (float)t / (float)o->steps);
            size_t nw = param_len(L, 0);
            for (size_t i = 0; i < nw; i++) {
                float v = L->p[0][i] - lr * sgnf(L->g[0][i]);
                float lo = L->v0[i] - 0.5f, hi = L->v0[i] + 0.5f;
                L->p[0][i] = v < lo ? lo : v > hi ? hi : v;
            }
            for (int i = 1; i < 3; i++)
                for (int64_t k = 0; k < L->n_groups; k++) {
                    float a = L->p[i][k] - lr * sgnf(L->g[i][k]);
                    L->p[i][k] = a < 0.5f ? 0.5f : a > 1.0f ? 1.0f : a;
                }
        } else { /* Adam, constant rate (blockap: the weights' moves too, at their own rate) */
            const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
            float c1 = 1.0f - powf(b1, (float)(t + 1)), c2 = 1.0f - powf(b2, (float)(t + 1));
            int clamp = o->kind == LB_BLOCKREC_2DQUANT || o->kind == LB_BLOCKREC_BLOCKAP; /* bounds stay bounds */
            for (int i = L->p[0] ? 0 : 1; i < 3; i++) {
                float lr = i ? o->lr : o->wlr;
                size_t n = param_len(L, i);
                for (size_t k = 0; k < n; k++) {
                    float g = L->g[i][k];
                    L->am[i][k] = b1 * L->am[i][k] + (1.0f - b1) * g;
                    L->av[i][k] = b2 * L->av[i][k] + (1.0f - b2) * g * g;
                    float a = L->p[i][k] - lr * (L->am[i][k] / c1) / (sqrtf(L->av[i][k] / c2) + eps);
                    if (i && clamp) a = a < 0.3f ? 0.3f : a > 1.5f ? 1.5f : a;
                    L->p[i][k] = a;
                }
            }
        }
    }
}

lb_status lb_blockrec_optimize(lb_blockrec *b, lb_blockrec_report *rep) {
    memset(rep, 0, sizeof *rep);
    int n = b->d.n_seq, batch = b->o.batch < n ? b->o.batch : n;
    int *perm = lb_alloc((size_t)n * sizeof *perm);
    if (!perm) return LB_ERR_NOMEM;
    for (int i = 0; i < n; i++) perm[i] = i;
    lb_rng rng;
    lb_rng_seed(&rng, b->o.seed);
    double init, best = INFINITY, loss;
    lb_status st = lb_blockrec_loss(b, 0, n, 0, 0, &init);
    copy_params(b, 0, 0);
    int pos = n;
    for (int t = 0; t < b->o.steps && st == LB_OK; t++) {
        if (pos + batch > n) { /* a new epoch: reshuffle */
            for (int i = n - 1; i > 0; i--) {
                int j = (int)(lb_rng_u32(&rng) % (uint32_t)(i + 1)), tmp = perm[i];
                perm[i] = perm[j];
                perm[j] = tmp;
            }
            pos = 0;
        }
        st = loss_over(b, perm + pos, batch, 0, 1, &loss);
        pos += batch;
        if (st != LB_OK) break;
        if (loss < best) { /* the parameters this loss was measured with */
            best = loss;
            copy_params(b, 0, 0);
        }
        step(b, t);
    }
    lb_free(perm);
    if (st != LB_OK) return st;
    /* the start, the best step and the last step, over all the data */
    double last, kb;
    st = lb_blockrec_loss(b, 0, n, 0, 0, &last);
    if (st == LB_OK) {
        swap_best(b); /* params: the best step's; the best slot: the last step's */
        st = lb_blockrec_loss(b, 0, n, 0, 0, &kb);
    }
    if (st != LB_OK) return st;
    rep->mse_init = init;
    rep->steps = b->o.steps;
    rep->kept = 1;
    rep->mse_final = kb;
    if (last < kb) {
        swap_best(b);
        rep->kept = 2;
        rep->mse_final = last;
    }
    if (!(rep->mse_final < init)) { /* never worse than the start */
        copy_params(b, 1, 1);
        rep->kept = 0;
        rep->mse_final = init;
    }
    return lb_blockrec_loss(b, 0, n, 0, 0, &loss); /* leaves wq as the kept parameters' */
}

/* ---- export ------------------------------------------------------------------ */

lb_status lb_blockrec_export(lb_blockrec *b, int w, lb_tensor *out) {
    memset(out, 0, sizeof *out);
    blin *L = &b->lin[w];
    if (!L->learn) return lb_fail(LB_ERR_INVALID, "blockrec: linear %d was not refined", w);
    fq_forward(b, L, 0);
    lb_qtensor *q = &L->q;
    for (int64_t k = 0; k < L->n_groups; k++) {
        q->scale[k] = L->d[k];
        if (L->zkind == LB_ZERO_F16) q->offset[k] = L->mz[k];
        if (L->zkind == LB_ZERO_INT) q->zero[k] = (uint8_t)L->mz[k];
    }
    for (int r = 0; r < L->rows; r++)
        for (int c = 0; c < L->cols; c++)
            q->codes[(size_t)r * q->cols_padded + c] = (uint8_t)L->code[(size_t)r * L->cols + c];
    const lb_tensor *t = &b->m->layers[b->layer].linear[w].w;
    size_t total;
    lb_status st = lb_format_size(&q->spec, L->rows, L->cols, NULL, NULL, &total);
    if (st != LB_OK) return st;
    uint8_t *bytes = lb_alloc(total);
    if (!bytes) return LB_ERR_NOMEM;
    st = lb_qtensor_encode(q, bytes);
    if (st != LB_OK) {
        lb_free(bytes);
        return st;
    }
    snprintf(out->name, sizeof out->name, "%s", t->name);
    out->spec = q->spec;
    out->rows = L->rows;
    out->cols = L->cols;
    out->data = bytes;
    out->owned = bytes;
    out->nbytes = total;
    return lb_tensor_resolve(out);
}
