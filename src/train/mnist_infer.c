/* Inference of a trained MNIST network with its binary x binary layers (sign
 * weights, +-1 inputs) on packed bits through XNOR-popcount
 * (kernels/xnor_bits.h). The weights are quantized and packed once; the
 * other layers run as the float forward does. The integers of the XNOR
 * GEMM equal the float GEMM's sums of +-1 products exactly (integers far
 * below 2^24 add exactly in float), and both scale them by the same alpha
 * afterwards, so these logits are the float forward's, bit for bit. */
#include <string.h>

#include "kernels/xnor_bits.h"
#include "train/mnist.h"
#include "train/ops.h"

struct lb_mnist_infer {
    const lb_mnist_net *n;
    int batch, n_xnor;
    float *x0;
    struct {
        int xnor;         /* run by XNOR-popcount */
        float *wq, *alpha;
        uint64_t *wbits;  /* (out_c, words) when xnor */
        float *cols;      /* im2col (conv) */
        uint64_t *xbits;  /* (rows_out, words) when xnor */
        int32_t *dots;    /* (rows_out, out_c) when xnor */
        float *z, *p, *y, *a;
    } l[8];
};

void lb_mnist_infer_free(lb_mnist_infer *p) {
    if (!p) return;
    for (int l = 0; l < 8; l++) {
        lb_free(p->l[l].wq);
        lb_free(p->l[l].alpha);
        lb_free(p->l[l].wbits);
        lb_free(p->l[l].cols);
        lb_free(p->l[l].xbits);
        lb_free(p->l[l].dots);
        lb_free(p->l[l].z);
        lb_free(p->l[l].p);
        lb_free(p->l[l].y);
        lb_free(p->l[l].a);
    }
    lb_free(p->x0);
    lb_free(p);
}

lb_status lb_mnist_infer_create(const lb_mnist_net *n, int batch, lb_mnist_infer **out) {
    *out = NULL;
    if (batch < 1 || batch > 65536) return lb_fail(LB_ERR_INVALID, "MNIST inference batch %d: 1..65536", batch);
    lb_mnist_infer *p = lb_calloc(1, sizeof *p);
    if (!p) return LB_ERR_NOMEM;
    p->n = n;
    p->batch = batch;
    int ok = (p->x0 = lb_alloc((size_t)batch * LB_MNIST_PIXELS * sizeof(float))) != NULL;
    for (int l = 0; ok && l < n->n_layers; l++) {
        const lb_mnist_layer *L = &n->layers[l];
        size_t ro = (size_t)batch * L->out_h * L->out_w, rp = (size_t)batch * L->ph * L->pw, C = (size_t)L->out_c;
        int words = lb_xnor_words(L->K);
        p->l[l].xnor = L->binary_in && (L->wq == LB_MW_SIGN || L->wq == LB_MW_XNOR);
        p->n_xnor += p->l[l].xnor;
        ok &= (p->l[l].wq = lb_alloc(C * L->K * sizeof(float))) && (p->l[l].alpha = lb_alloc(C * sizeof(float)));
        if (ok) lb_mnist_layer_weights(n, l, p->l[l].wq, p->l[l].alpha, 0, NULL);
        if (L->conv) ok &= (p->l[l].cols = lb_alloc(ro * L->K * sizeof(float))) != NULL;
        if (ok && p->l[l].xnor) {
            ok &= (p->l[l].wbits = lb_alloc(C * words * sizeof(uint64_t))) && (p->l[l].xbits = lb_alloc(ro * words * sizeof(uint64_t))) &&
                  (p->l[l].dots = lb_alloc(ro * C * sizeof(int32_t)));
            if (ok) lb_xnor_pack(p->l[l].wq, L->out_c, L->K, L->K, p->l[l].wbits);
        }
        ok &= (p->l[l].z = lb_alloc(ro * C * sizeof(float))) && (p->l[l].p = lb_alloc(rp * C * sizeof(float))) &&
              (p->l[l].y = lb_alloc(rp * C * sizeof(float))) && (p->l[l].a = lb_alloc(rp * C * sizeof(float)));
    }
    if (!ok) {
        lb_mnist_infer_free(p);
        return lb_fail(LB_ERR_NOMEM, "out of memory for MNIST inference of batch %d", batch);
    }
    *out = p;
    return LB_OK;
}

int lb_mnist_infer_xnor_layers(const lb_mnist_infer *p) { return p->n_xnor; }

lb_status lb_mnist_infer_run(lb_mnist_infer *p, const uint8_t *pixels, int B, float *logits) {
    if (B < 1 || B > p->batch) return lb_fail(LB_ERR_INVALID, "MNIST inference of %d images, made for %d", B, p->batch);
    const lb_mnist_net *n = p->n;
    lb_mnist_input(n, pixels, B, p->x0);
    const float *in = p->x0;
    for (int l = 0; l < n->n_layers; l++) {
        const lb_mnist_layer *L = &n->layers[l];
        size_t ro = (size_t)B * L->out_h * L->out_w, rp = (size_t)B * L->ph * L->pw;
        const float *cols = in;
        if (L->conv) {
            lb_mnist_im2col(L, in, B, p->l[l].cols);
            cols = p->l[l].cols;
        }
        float *z = p->l[l].z;
        if (p->l[l].xnor) {
            lb_xnor_pack(cols, (int)ro, L->K, L->K, p->l[l].xbits);
            lb_xnor_gemm(p->l[l].xbits, (int)ro, p->l[l].wbits, L->out_c, L->K, p->l[l].dots, L->out_c);
            for (size_t i = 0; i < ro * L->out_c; i++) z[i] = (float)p->l[l].dots[i];
        } else {
            lb_train_matmul_forward(z, cols, p->l[l].wq, (int)ro, L->K, L->out_c);
        }
        if (L->wq == LB_MW_XNOR) lb_mnist_scale_cols(z, ro, L->out_c, p->l[l].alpha);
        const float *pooled = z;
        if (L->pool > 1) {
            lb_mnist_pool_forward(L, z, B, p->l[l].p, NULL);
            pooled = p->l[l].p;
        }
        lb_mnist_bn_act_eval(n, l, pooled, rp, p->l[l].y, p->l[l].a);
        in = L->act == LB_MA_NONE ? p->l[l].y : p->l[l].a;
    }
    memcpy(logits, in, (size_t)B * 10 * sizeof(float));
    return LB_OK;
}
