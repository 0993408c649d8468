/* The MNIST networks' layers, forward beside backward (docs/MNIST.md).
 *
 * A layer is: GEMM (dense, or a valid k x k convolution as im2col + GEMM)
 * with quantized weights -> optional 2 x 2 max pool -> batch norm -> an
 * activation. Activations are (rows, C) row-major, rows = images x height x
 * width (NHWC), so one batch norm, one pool and one GEMM serve both kinds.
 *
 * Weight quantizers (latent float weights w, the GEMM sees wq):
 *   fp      wq = w
 *   sign    wq = sign(w) (BinaryConnect; stochastically +1 with probability
 *           clip((w + 1) / 2, 0, 1) while training when asked)
 *   xnor    wq = sign(w) and the output row o scaled by alpha_o = mean |w_o|
 *           (XNOR-Net); the GEMM itself sums +-1 products, integers, exactly
 *   int8/4  wq = s round(w / s), s = max |w_o| / (2^(b-1) - 1) per row
 * Their backward is the straight-through estimator: dw = dwq. Latent binary
 * weights stay in [-1, 1] (the optimizer clips them), where hardtanh's STE
 * mask 1_{|w| <= 1} is 1. The gradient of alpha itself is not propagated
 * (batch norm follows every layer, so the scale of a row cancels anyway).
 *
 * Activations: ReLU; sign (XNOR-Net: +1 for y >= 0, else -1; STE gradient
 * 1_{|y| <= 1}, hardtanh's); q8 / q4: clip(y, 0, 4) rounded to 2^b - 1 steps
 * (STE: gradient 1 on 0 < y < 4). The activation's scale per sample (XNOR-
 * Net's beta) is left out: batch norm after the next GEMM absorbs the scale
 * of each feature, and the sign after it ignores any positive scale. */
#include <math.h>
#include <string.h>

#include "train/mnist.h"
#include "train/ops.h"

#define BN_EPS 1e-5f
#define BN_MOMENTUM 0.1f
#define PAR_MIN (1L << 16)

struct lb_mnist_acts {
    int batch;
    float *x0;                 /* (B, 784) scaled pixels */
    int *targets;              /* (B) */
    struct {
        float *cols;           /* (rows_out, K) im2col (conv only) */
        float *wq;             /* (out_c, K) */
        float *alpha;          /* (out_c) xnor row scales */
        float *z;              /* (B oh ow, out_c) */
        int *arg;              /* (B ph pw, out_c) index into z of each pooled max */
        float *p;              /* pooled (== z without pool) */
        float *xhat;           /* (B ph pw, out_c) */
        float *invstd;         /* (out_c) */
        float *y, *a;          /* batch-norm output, activation output (a == y without activation) */
        float *da;             /* gradient of a */
    } l[8];
    float *probs;              /* (B, 10) */
    double *row_nll;
    const float *in0;          /* the first layer's input of the last forward */
    float *dy, *dpool, *dz, *dcols; /* backward scratch: max over layers */
    const float *logits;       /* (B, 10): the last layer's batch-norm output */
    int B;                     /* of the last forward */
    int trained;               /* the last forward was a training forward */
};

const char *lb_mnist_arch_name(lb_mnist_arch a) { return a == LB_MNIST_CNN ? "cnn" : "mlp"; }

const char *lb_mnist_mode_name(lb_mnist_mode m) {
    static const char *names[] = {"fp32", "binaryconnect", "xnor", "int8", "int4"};
    return (unsigned)m < 5 ? names[m] : "?";
}

lb_status lb_mnist_arch_parse(const char *s, lb_mnist_arch *out) {
    if (!strcmp(s, "mlp")) *out = LB_MNIST_MLP;
    else if (!strcmp(s, "cnn")) *out = LB_MNIST_CNN;
    else return lb_fail(LB_ERR_INVALID, "unknown MNIST model '%s' (mlp, cnn)", s);
    return LB_OK;
}

lb_status lb_mnist_mode_parse(const char *s, lb_mnist_mode *out) {
    for (int m = 0; m < 5; m++)
        if (!strcmp(s, lb_mnist_mode_name((lb_mnist_mode)m))) {
            *out = (lb_mnist_mode)m;
            return LB_OK;
        }
    return lb_fail(LB_ERR_INVALID, "unknown MNIST mode '%s' (fp32, binaryconnect, xnor, int8, int4)", s);
}

static size_t layer_rows_out(const lb_mnist_layer *L, int B) { return (size_t)B * L->out_h * L->out_w; }
static size_t layer_rows_pool(const lb_mnist_layer *L, int B) { return (size_t)B * L->ph * L->pw; }
static size_t layer_rows_in(const lb_mnist_layer *L, int B) { return (size_t)B * L->in_h * L->in_w; }

static void add_layer(lb_mnist_net *n, int conv, int in_h, int in_w, int in_c, int k, int out_c, int pool) {
    lb_mnist_layer *L = &n->layers[n->n_layers++];
    memset(L, 0, sizeof *L);
    L->conv = conv;
    L->in_h = in_h, L->in_w = in_w, L->in_c = in_c, L->k = conv ? k : 1;
    L->out_h = conv ? in_h - k + 1 : 1, L->out_w = conv ? in_w - k + 1 : 1, L->out_c = out_c;
    L->pool = pool;
    L->ph = L->out_h / pool, L->pw = L->out_w / pool;
    L->K = conv ? k * k * in_c : in_h * in_w * in_c;
    if (!conv) L->in_h = L->in_w = 1, L->in_c = L->K; /* a dense layer reads the flattened (NHWC) input */
    L->w_off = n->n_params;
    n->n_params += (size_t)out_c * L->K;
    L->gamma_off = n->n_params;
    n->n_params += (size_t)out_c;
    L->beta_off = n->n_params;
    n->n_params += (size_t)out_c;
}

lb_status lb_mnist_net_create(const lb_mnist_config *cfg, uint64_t seed, lb_mnist_net **out) {
    *out = NULL;
    if (cfg->hidden < 0 || cfg->hidden > 8192) return lb_fail(LB_ERR_INVALID, "MNIST hidden width %d: 1..8192", cfg->hidden);
    if ((unsigned)cfg->mode > LB_MNIST_INT4) return lb_fail(LB_ERR_INVALID, "MNIST mode %d unknown", (int)cfg->mode);
    lb_mnist_net *n = lb_calloc(1, sizeof *n);
    if (!n) return LB_ERR_NOMEM;
    n->arch = cfg->arch;
    n->mode = cfg->mode;
    n->hidden = cfg->hidden ? cfg->hidden : cfg->arch == LB_MNIST_CNN ? 256 : 512;
    n->fp_ends = cfg->fp_ends >= 0 ? cfg->fp_ends : cfg->mode == LB_MNIST_XNOR;
    n->stochastic = cfg->mode == LB_MNIST_BINARYCONNECT && cfg->stochastic;
    int H = n->hidden;
    if (cfg->arch == LB_MNIST_CNN) { /* LeNet-style: 32 and 64 5x5 filters, each pooled, then H, then 10 */
        add_layer(n, 1, 28, 28, 1, 5, 32, 2);
        add_layer(n, 1, 12, 12, 32, 5, 64, 2);
        add_layer(n, 0, 4, 4, 64, 1, H, 1);
        add_layer(n, 0, 1, 1, H, 1, 10, 1);
    } else { /* three hidden layers, as BinaryConnect's MLP (narrower) */
        add_layer(n, 0, 28, 28, 1, 1, H, 1);
        add_layer(n, 0, 1, 1, H, 1, H, 1);
        add_layer(n, 0, 1, 1, H, 1, H, 1);
        add_layer(n, 0, 1, 1, H, 1, 10, 1);
    }
    static const lb_mnist_wq wq_of[] = {LB_MW_FP, LB_MW_SIGN, LB_MW_XNOR, LB_MW_INT8, LB_MW_INT4};
    static const lb_mnist_act act_of[] = {LB_MA_RELU, LB_MA_RELU, LB_MA_SIGN, LB_MA_Q8, LB_MA_Q4};
    for (int l = 0; l < n->n_layers; l++) {
        lb_mnist_layer *L = &n->layers[l];
        int end = l == 0 || l == n->n_layers - 1;
        L->wq = end && n->fp_ends ? LB_MW_FP : wq_of[n->mode];
        L->act = l == n->n_layers - 1 ? LB_MA_NONE : act_of[n->mode];
        L->binary_in = l > 0 && n->layers[l - 1].act == LB_MA_SIGN;
        if (l == 0 && !n->fp_ends && (n->mode == LB_MNIST_INT8 || n->mode == LB_MNIST_INT4))
            L->in_q = n->mode == LB_MNIST_INT8 ? 8 : 4;
    }
    n->params = lb_calloc(n->n_params, sizeof(float));
    n->grads = lb_calloc(n->n_params, sizeof(float));
    int ok = n->params && n->grads;
    for (int l = 0; l < n->n_layers; l++) {
        n->layers[l].run_mean = lb_calloc((size_t)n->layers[l].out_c, sizeof(float));
        n->layers[l].run_var = lb_calloc((size_t)n->layers[l].out_c, sizeof(float));
        ok &= n->layers[l].run_mean && n->layers[l].run_var;
    }
    if (!ok) {
        lb_mnist_net_free(n);
        return lb_fail(LB_ERR_NOMEM, "out of memory for an MNIST network of %zu parameters", n->n_params);
    }
    lb_rng rng;
    lb_rng_seed(&rng, seed ? seed : 1);
    for (int l = 0; l < n->n_layers; l++) {
        lb_mnist_layer *L = &n->layers[l];
        /* He-uniform for the float nets; the binary ones start inside [-1, 1] at the same scale */
        float lim = sqrtf(6.0f / (float)L->K);
        for (size_t i = 0; i < (size_t)L->out_c * L->K; i++) n->params[L->w_off + i] = lim * (2.0f * lb_rng_f32(&rng) - 1.0f);
        for (int c = 0; c < L->out_c; c++) {
            n->params[L->gamma_off + c] = 1.0f;
            L->run_var[c] = 1.0f;
        }
    }
    n->rng_state = seed ^ 0x9e3779b97f4a7c15ull;
    *out = n;
    return LB_OK;
}

void lb_mnist_net_free(lb_mnist_net *n) {
    if (!n) return;
    for (int l = 0; l < n->n_layers; l++) {
        lb_free(n->layers[l].run_mean);
        lb_free(n->layers[l].run_var);
    }
    lb_free(n->params);
    lb_free(n->grads);
    lb_free(n);
}

lb_status lb_mnist_acts_create(const lb_mnist_net *n, int batch, lb_mnist_acts **out) {
    *out = NULL;
    if (batch < 1 || batch > 65536) return lb_fail(LB_ERR_INVALID, "MNIST batch %d: 1..65536", batch);
    lb_mnist_acts *a = lb_calloc(1, sizeof *a);
    if (!a) return LB_ERR_NOMEM;
    a->batch = batch;
    int ok = (a->x0 = lb_alloc((size_t)batch * LB_MNIST_PIXELS * sizeof(float))) != NULL;
    ok &= (a->targets = lb_alloc((size_t)batch * sizeof(int))) != NULL;
    ok &= (a->probs = lb_alloc((size_t)batch * 10 * sizeof(float))) != NULL;
    ok &= (a->row_nll = lb_alloc((size_t)batch * sizeof(double))) != NULL;
    size_t max_y = 0, max_z = 0, max_cols = 0;
    for (int l = 0; ok && l < n->n_layers; l++) {
        const lb_mnist_layer *L = &n->layers[l];
        size_t ro = layer_rows_out(L, batch), rp = layer_rows_pool(L, batch), C = (size_t)L->out_c;
        if (L->conv) ok &= (a->l[l].cols = lb_alloc(ro * L->K * sizeof(float))) != NULL;
        ok &= (a->l[l].wq = lb_alloc(C * L->K * sizeof(float))) != NULL;
        ok &= (a->l[l].alpha = lb_alloc(C * sizeof(float))) != NULL;
        ok &= (a->l[l].z = lb_alloc(ro * C * sizeof(float))) != NULL;
        if (L->pool > 1) {
            ok &= (a->l[l].arg = lb_alloc(rp * C * sizeof(int))) != NULL;
            ok &= (a->l[l].p = lb_alloc(rp * C * sizeof(float))) != NULL;
        } else {
            a->l[l].p = a->l[l].z;
        }
        ok &= (a->l[l].xhat = lb_alloc(rp * C * sizeof(float))) != NULL;
        ok &= (a->l[l].invstd = lb_alloc(C * sizeof(float))) != NULL;
        ok &= (a->l[l].y = lb_alloc(rp * C * sizeof(float))) != NULL;
        a->l[l].a = a->l[l].y;
        if (L->act != LB_MA_NONE) ok &= (a->l[l].a = lb_alloc(rp * C * sizeof(float))) != NULL;
        ok &= (a->l[l].da = lb_alloc(rp * C * sizeof(float))) != NULL;
        max_y = rp * C > max_y ? rp * C : max_y;
        max_z = ro * C > max_z ? ro * C : max_z;
        size_t nc = L->conv ? ro * L->K : layer_rows_in(L, batch) * L->in_c;
        max_cols = nc > max_cols ? nc : max_cols;
    }
    ok = ok && (a->dy = lb_alloc(max_y * sizeof(float))) && (a->dpool = lb_alloc(max_y * sizeof(float))) && (a->dz = lb_alloc(max_z * sizeof(float))) &&
         (a->dcols = lb_alloc(max_cols * sizeof(float)));
    for (int l = n->n_layers; l < 8; l++) a->l[l].p = NULL;
    a->B = 0;
    if (!ok) {
        lb_mnist_acts_free(a);
        return lb_fail(LB_ERR_NOMEM, "out of memory for MNIST activations of batch %d", batch);
    }
    *out = a;
    return LB_OK;
}

void lb_mnist_acts_free(lb_mnist_acts *a) {
    if (!a) return;
    for (int l = 0; l < 8; l++) {
        lb_free(a->l[l].cols);
        lb_free(a->l[l].wq);
        lb_free(a->l[l].alpha);
        if (a->l[l].p != a->l[l].z) lb_free(a->l[l].p);
        lb_free(a->l[l].z);
        lb_free(a->l[l].arg);
        lb_free(a->l[l].xhat);
        lb_free(a->l[l].invstd);
        if (a->l[l].a != a->l[l].y) lb_free(a->l[l].a);
        lb_free(a->l[l].y);
        lb_free(a->l[l].da);
    }
    lb_free(a->x0);
    lb_free(a->targets);
    lb_free(a->probs);
    lb_free(a->row_nll);
    lb_free(a->dy);
    lb_free(a->dpool);
    lb_free(a->dz);
    lb_free(a->dcols);
    lb_free(a);
}

const float *lb_mnist_logits(const lb_mnist_acts *a) { return a->logits; }

/* ---- weights -------------------------------------------------------------- */

static float rng_uniform(uint64_t *s) { /* xorshift64*, 24 bits in [0, 1) */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return (float)((*s * 0x2545F4914F6CDD1Dull) >> 40) / 16777216.0f;
}

void lb_mnist_layer_weights(const lb_mnist_net *n, int l, float *wq, float *alpha, int train, uint64_t *rng_state) {
    const lb_mnist_layer *L = &n->layers[l];
    const float *w = n->params + L->w_off;
    int K = L->K;
    for (int o = 0; o < L->out_c; o++) {
        const float *wo = w + (size_t)o * K;
        float *q = wq + (size_t)o * K;
        alpha[o] = 1.0f;
        switch (L->wq) {
        case LB_MW_FP:
            memcpy(q, wo, (size_t)K * sizeof(float));
            break;
        case LB_MW_SIGN:
            if (train && n->stochastic && rng_state) {
                for (int j = 0; j < K; j++) {
                    float p = (wo[j] + 1.0f) * 0.5f; /* hard sigmoid */
                    q[j] = rng_uniform(rng_state) < p ? 1.0f : -1.0f;
                }
            } else {
                for (int j = 0; j < K; j++) q[j] = wo[j] >= 0.0f ? 1.0f : -1.0f;
            }
            break;
        case LB_MW_XNOR: {
            double s = 0.0;
            for (int j = 0; j < K; j++) {
                s += fabsf(wo[j]);
                q[j] = wo[j] >= 0.0f ? 1.0f : -1.0f;
            }
            alpha[o] = (float)(s / K);
            break;
        }
        case LB_MW_INT8:
        case LB_MW_INT4: {
            float qmax = L->wq == LB_MW_INT8 ? 127.0f : 7.0f, m = 0.0f;
            for (int j = 0; j < K; j++) m = fabsf(wo[j]) > m ? fabsf(wo[j]) : m;
            float sc = m > 0.0f ? m / qmax : 1.0f;
            for (int j = 0; j < K; j++) {
                float v = rintf(wo[j] / sc);
                q[j] = (v > qmax ? qmax : v < -qmax ? -qmax : v) * sc;
            }
            break;
        }
        }
    }
}

/* ---- im2col, pooling -------------------------------------------------------- */

void lb_mnist_im2col(const lb_mnist_layer *L, const float *x, int B, float *cols) {
    int k = L->k, C = L->in_c, oh = L->out_h, ow = L->out_w;
#pragma omp parallel for schedule(static) if ((long)B * oh * ow * L->K > PAR_MIN)
    for (int r = 0; r < B * oh * ow; r++) {
        int b = r / (oh * ow), oy = r / ow % oh, ox = r % ow;
        float *dst = cols + (size_t)r * L->K;
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++)
                memcpy(dst + (size_t)(ky * k + kx) * C,
                       x + (((size_t)b * L->in_h + oy + ky) * L->in_w + ox + kx) * C, (size_t)C * sizeof(float));
    }
}

/* dx (B in_h in_w, in_c) += the columns' gradients; one thread per image */
static void col2im_add(const lb_mnist_layer *L, const float *dcols, int B, float *dx) {
    int k = L->k, C = L->in_c, oh = L->out_h, ow = L->out_w;
#pragma omp parallel for schedule(static) if ((long)B * oh * ow * L->K > PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                const float *src = dcols + (((size_t)b * oh + oy) * ow + ox) * L->K;
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++) {
                        float *d = dx + (((size_t)b * L->in_h + oy + ky) * L->in_w + ox + kx) * C;
                        const float *s = src + (size_t)(ky * k + kx) * C;
                        for (int c = 0; c < C; c++) d[c] += s[c];
                    }
            }
}

void lb_mnist_scale_cols(float *z, size_t rows, int C, const float *alpha) {
    for (size_t r = 0; r < rows; r++)
        for (int c = 0; c < C; c++) z[r * C + c] *= alpha[c];
}

void lb_mnist_pool_forward(const lb_mnist_layer *L, const float *z, int B, float *p, int *arg) {
    int C = L->out_c, ph = L->ph, pw = L->pw;
#pragma omp parallel for schedule(static) if ((long)B * ph * pw * C > PAR_MIN)
    for (int r = 0; r < B * ph * pw; r++) {
        int b = r / (ph * pw), py = r / pw % ph, px = r % pw;
        for (int c = 0; c < C; c++) {
            int best = -1;
            float m = 0.0f;
            for (int dy = 0; dy < 2; dy++)
                for (int dx = 0; dx < 2; dx++) {
                    int idx = (int)((((size_t)b * L->out_h + 2 * py + dy) * L->out_w + 2 * px + dx) * C + c);
                    if (best < 0 || z[idx] > m) best = idx, m = z[idx];
                }
            p[(size_t)r * C + c] = m;
            if (arg) arg[(size_t)r * C + c] = best;
        }
    }
}

/* ---- batch norm and activations --------------------------------------------- */

static float act_forward(lb_mnist_act act, float y) {
    switch (act) {
    case LB_MA_RELU: return y > 0.0f ? y : 0.0f;
    case LB_MA_SIGN: return y >= 0.0f ? 1.0f : -1.0f;
    case LB_MA_Q8:
    case LB_MA_Q4: {
        float levels = act == LB_MA_Q8 ? 255.0f : 15.0f, step = LB_MNIST_ACT_CLIP / levels;
        float c = y < 0.0f ? 0.0f : y > LB_MNIST_ACT_CLIP ? LB_MNIST_ACT_CLIP : y;
        return rintf(c / step) * step;
    }
    default: return y;
    }
}

/* the straight-through gradient mask of each activation at y */
static float act_mask(lb_mnist_act act, float y) {
    switch (act) {
    case LB_MA_RELU: return y > 0.0f ? 1.0f : 0.0f;
    case LB_MA_SIGN: return fabsf(y) <= 1.0f ? 1.0f : 0.0f;
    case LB_MA_Q8:
    case LB_MA_Q4: return y > 0.0f && y < LB_MNIST_ACT_CLIP ? 1.0f : 0.0f;
    default: return 1.0f;
    }
}

void lb_mnist_bn_act_eval(const lb_mnist_net *n, int l, const float *p, size_t rows, float *y, float *a) {
    const lb_mnist_layer *L = &n->layers[l];
    const float *gamma = n->params + L->gamma_off, *beta = n->params + L->beta_off;
    int C = L->out_c;
    for (size_t r = 0; r < rows; r++)
        for (int c = 0; c < C; c++) {
            float inv = 1.0f / sqrtf(L->run_var[c] + BN_EPS);
            float v = gamma[c] * ((p[r * C + c] - L->run_mean[c]) * inv) + beta[c];
            y[r * C + c] = v;
            a[r * C + c] = act_forward(L->act, v);
        }
}

/* batch statistics (sums in double, rows in order: the result does not
 * depend on threads), running averages updated */
static void bn_train_forward(lb_mnist_net *n, int l, lb_mnist_acts *a, size_t rows) {
    lb_mnist_layer *L = &n->layers[l];
    const float *gamma = n->params + L->gamma_off, *beta = n->params + L->beta_off, *p = a->l[l].p;
    float *xhat = a->l[l].xhat, *y = a->l[l].y, *out = a->l[l].a, *invstd = a->l[l].invstd;
    int C = L->out_c;
#pragma omp parallel for schedule(static) if ((long)rows * C > PAR_MIN)
    for (int c = 0; c < C; c++) {
        double s = 0.0, ss = 0.0;
        for (size_t r = 0; r < rows; r++) s += p[r * C + c];
        double mean = s / rows;
        for (size_t r = 0; r < rows; r++) {
            double d = p[r * C + c] - mean;
            ss += d * d;
        }
        double var = ss / rows;
        float inv = (float)(1.0 / sqrt(var + BN_EPS));
        invstd[c] = inv;
        for (size_t r = 0; r < rows; r++) {
            float xh = (float)(p[r * C + c] - mean) * inv;
            xhat[r * C + c] = xh;
            float v = gamma[c] * xh + beta[c];
            y[r * C + c] = v;
            out[r * C + c] = act_forward(L->act, v);
        }
        L->run_mean[c] = (1.0f - BN_MOMENTUM) * L->run_mean[c] + BN_MOMENTUM * (float)mean;
        L->run_var[c] = (1.0f - BN_MOMENTUM) * L->run_var[c] + BN_MOMENTUM * (float)(rows > 1 ? ss / (rows - 1) : var);
    }
}

/* dp = d(batch norm)^T dy; dgamma += sum dy xhat, dbeta += sum dy */
static void bn_train_backward(lb_mnist_net *n, int l, lb_mnist_acts *a, const float *dy, float *dp, size_t rows) {
    lb_mnist_layer *L = &n->layers[l];
    const float *gamma = n->params + L->gamma_off, *xhat = a->l[l].xhat, *invstd = a->l[l].invstd;
    float *dgamma = n->grads + L->gamma_off, *dbeta = n->grads + L->beta_off;
    int C = L->out_c;
#pragma omp parallel for schedule(static) if ((long)rows * C > PAR_MIN)
    for (int c = 0; c < C; c++) {
        double sdy = 0.0, sdyx = 0.0;
        for (size_t r = 0; r < rows; r++) {
            sdy += dy[r * C + c];
            sdyx += (double)dy[r * C + c] * xhat[r * C + c];
        }
        dgamma[c] += (float)sdyx;
        dbeta[c] += (float)sdy;
        /* dx = gamma invstd (dy - mean(dy) - xhat mean(dy xhat)) */
        float k = gamma[c] * invstd[c], mdy = (float)(sdy / rows), mdyx = (float)(sdyx / rows);
        for (size_t r = 0; r < rows; r++) dp[r * C + c] = k * (dy[r * C + c] - mdy - xhat[r * C + c] * mdyx);
    }
}

/* ---- forward and backward ----------------------------------------------------- */

void lb_mnist_input(const lb_mnist_net *n, const uint8_t *pixels, int B, float *x) {
    int bits = n->layers[0].in_q;
    float levels = bits ? (float)((1 << bits) - 1) : 0.0f;
    for (size_t i = 0; i < (size_t)B * LB_MNIST_PIXELS; i++) {
        float v = pixels[i] / 255.0f;
        x[i] = bits ? rintf(v * levels) / levels : v;
    }
}

lb_status lb_mnist_forward_x(lb_mnist_net *n, lb_mnist_acts *a, const float *x, const uint8_t *labels, int B,
                             int train, double *loss, int *correct) {
    if (B < 1 || B > a->batch) return lb_fail(LB_ERR_INVALID, "MNIST forward of %d images with activations for %d", B, a->batch);
    const float *in = x;
    for (int l = 0; l < n->n_layers; l++) {
        lb_mnist_layer *L = &n->layers[l];
        size_t ro = layer_rows_out(L, B), rp = layer_rows_pool(L, B);
        lb_mnist_layer_weights(n, l, a->l[l].wq, a->l[l].alpha, train, &n->rng_state);
        const float *cols = in;
        if (L->conv) {
            lb_mnist_im2col(L, in, B, a->l[l].cols);
            cols = a->l[l].cols;
        }
        lb_train_matmul_forward(a->l[l].z, cols, a->l[l].wq, (int)ro, L->K, L->out_c);
        if (L->wq == LB_MW_XNOR) lb_mnist_scale_cols(a->l[l].z, ro, L->out_c, a->l[l].alpha);
        if (L->pool > 1) lb_mnist_pool_forward(L, a->l[l].z, B, a->l[l].p, a->l[l].arg);
        if (train) bn_train_forward(n, l, a, rp);
        else lb_mnist_bn_act_eval(n, l, a->l[l].p, rp, a->l[l].y, a->l[l].a);
        in = a->l[l].a;
    }
    a->B = B;
    a->in0 = x;
    a->trained = train && labels;
    a->logits = in;
    if (correct && labels) {
        int c = 0;
        for (int i = 0; i < B; i++) {
            int best = 0;
            for (int j = 1; j < 10; j++) best = in[i * 10 + j] > in[i * 10 + best] ? j : best;
            c += best == labels[i];
        }
        *correct = c;
    }
    if (labels) {
        for (int i = 0; i < B; i++) a->targets[i] = labels[i];
        memcpy(a->probs, in, (size_t)B * 10 * sizeof(float));
        int scored;
        double total = lb_train_cross_entropy_forward(a->probs, a->row_nll, a->targets, B, 10, &scored);
        if (loss) *loss = total / B;
    }
    return LB_OK;
}

lb_status lb_mnist_forward(lb_mnist_net *n, lb_mnist_acts *a, const uint8_t *pixels, const uint8_t *labels, int B,
                           int train, double *loss, int *correct) {
    if (B < 1 || B > a->batch) return lb_fail(LB_ERR_INVALID, "MNIST forward of %d images with activations for %d", B, a->batch);
    lb_mnist_input(n, pixels, B, a->x0);
    return lb_mnist_forward_x(n, a, a->x0, labels, B, train, loss, correct);
}

lb_status lb_mnist_backward(lb_mnist_net *n, lb_mnist_acts *a) {
    if (!a->trained || a->B < 1) return lb_fail(LB_ERR_INVALID, "MNIST backward without a training forward with labels");
    int B = a->B, last = n->n_layers - 1;
    lb_train_cross_entropy_backward(a->l[last].da, a->probs, a->targets, B, 10, 1.0f / B);
    for (int l = last; l >= 0; l--) {
        lb_mnist_layer *L = &n->layers[l];
        size_t ro = layer_rows_out(L, B), rp = layer_rows_pool(L, B), C = (size_t)L->out_c;
        const float *da = a->l[l].da, *y = a->l[l].y;
        float *dy = a->dy;
        for (size_t i = 0; i < rp * C; i++) dy[i] = da[i] * act_mask(L->act, y[i]);
        if (L->pool > 1) { /* the batch norm's gradient goes to each pooled maximum's place in z */
            bn_train_backward(n, l, a, dy, a->dpool, rp);
            memset(a->dz, 0, ro * C * sizeof(float));
            for (size_t i = 0; i < rp * C; i++) a->dz[a->l[l].arg[i]] += a->dpool[i];
        } else {
            bn_train_backward(n, l, a, dy, a->dz, rp);
        }
        float *dz = a->dz;
        if (L->wq == LB_MW_XNOR) lb_mnist_scale_cols(dz, ro, L->out_c, a->l[l].alpha);
        const float *cols = L->conv ? a->l[l].cols : l ? a->l[l - 1].a : a->in0;
        float *dcols = NULL;
        if (l > 0) {
            dcols = L->conv ? a->dcols : a->l[l - 1].da;
            memset(dcols, 0, ro * L->K * sizeof(float));
        }
        /* straight-through: the latent weights' gradient is the quantized weights' */
        lb_train_matmul_backward(dcols, n->grads + L->w_off, dz, cols, a->l[l].wq, (int)ro, L->K, L->out_c);
        if (l > 0 && L->conv) {
            memset(a->l[l - 1].da, 0, layer_rows_in(L, B) * L->in_c * sizeof(float));
            col2im_add(L, dcols, B, a->l[l - 1].da);
        }
    }
    return LB_OK;
}
