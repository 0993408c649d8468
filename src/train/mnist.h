/* Low-bit networks beyond LLMs: small MNIST classifiers
 * (an MLP and a LeNet-style CNN) trained with BinaryConnect, XNOR-Net, or
 * int8 / int4 fake quantization, and run with XNOR-popcount for the layers
 * whose weights and inputs are both binary (issue 9 item 10, docs/MNIST.md).
 *
 * mnist_data.c reads the IDX files; mnist_net.c holds the layers (forward
 * and backward), mnist_train.c the optimizer loop, the packed inference and
 * the GGUF file. Activations are row-major (rows, C): for a dense layer rows
 * are images, for a convolution rows are image x y x x positions (NHWC), so
 * batch norm, activations and the GEMMs are the same code for both. */
#ifndef LB_TRAIN_MNIST_H
#define LB_TRAIN_MNIST_H

#include <stdint.h>

#include "lowbit/core.h"

/* ---- mnist_data.c ---------------------------------------------------------- */
#define LB_MNIST_SIDE 28
#define LB_MNIST_PIXELS (LB_MNIST_SIDE * LB_MNIST_SIDE)

typedef struct {
    int n;           /* images */
    int rows, cols;  /* 28 x 28 */
    uint8_t *pixels; /* (n, rows * cols), 0..255 */
    uint8_t *labels; /* (n), 0..9 */
} lb_mnist_set;

/* Parses an IDX image file (magic 0x00000803, dims n x rows x cols,
 * big-endian) and its label file (0x00000801, n) from memory. Checks the
 * magic, the dims (rows = cols = 28), that the sizes are exactly header +
 * payload (a truncated or padded file is refused), that both hold the same
 * number of items and that every label is 0..9. Copies the data. */
lb_status lb_mnist_parse(const uint8_t *images, size_t images_size, const uint8_t *labels, size_t labels_size,
                         lb_mnist_set *out);
/* Reads DIR/<split>-images-idx3-ubyte and DIR/<split>-labels-idx1-ubyte,
 * split "train" or "test"; errors name the file. */
lb_status lb_mnist_load(const char *dir, const char *split, lb_mnist_set *out);
/* Images first..first+n-1 of src as a new set (copies). */
lb_status lb_mnist_slice(const lb_mnist_set *src, int first, int n, lb_mnist_set *out);
/* dst = src's 28 x 28 image moved right by dx and down by dy pixels, the
 * uncovered border 0 (dst != src) */
void lb_mnist_shift(const uint8_t *src, int dx, int dy, uint8_t *dst);
void lb_mnist_free(lb_mnist_set *s);

/* ---- the network (mnist_net.c) ---------------------------------------------- */
typedef enum { LB_MNIST_MLP, LB_MNIST_CNN } lb_mnist_arch;
typedef enum {
    LB_MNIST_FP32,
    LB_MNIST_BINARYCONNECT, /* +-1 weights (sign of latent weights in [-1,1]), real activations (ReLU) */
    LB_MNIST_XNOR,          /* alpha sign(w) weights and sign activations: XNOR-popcount at inference */
    LB_MNIST_INT8,          /* int8 weights (per output row) and activations, fake-quantized */
    LB_MNIST_INT4
} lb_mnist_mode;

/* what a layer does to its weights */
typedef enum { LB_MW_FP, LB_MW_SIGN, LB_MW_XNOR, LB_MW_INT8, LB_MW_INT4 } lb_mnist_wq;
/* the activation after a layer's batch norm */
typedef enum { LB_MA_NONE, LB_MA_RELU, LB_MA_SIGN, LB_MA_Q8, LB_MA_Q4 } lb_mnist_act;

/* the clip range of quantized activations: [0, LB_MNIST_ACT_CLIP] after batch norm */
#define LB_MNIST_ACT_CLIP 4.0f

typedef struct {
    int conv;                 /* 1: k x k valid convolution (im2col + GEMM) over in_h x in_w x in_c; 0: dense */
    int in_h, in_w, in_c, k;  /* dense: in_h = in_w = 1, in_c = inputs */
    int out_h, out_w, out_c;  /* before pooling */
    int pool;                 /* 2: 2 x 2 max pool after the GEMM, 1: none */
    int ph, pw;               /* after pooling */
    int K;                    /* GEMM depth: k k in_c (conv) or in_c (dense) */
    lb_mnist_wq wq;
    lb_mnist_act act;
    int in_q;                 /* first layer of the int modes: pixels quantized to this many bits, else 0 */
    int binary_in;            /* the input is +-1 (previous act is sign): XNOR-popcount at inference when wq is sign/xnor */
    size_t w_off, gamma_off, beta_off; /* into the parameter buffer; w (out_c, K) */
    float *run_mean, *run_var; /* (out_c) batch-norm statistics for inference */
} lb_mnist_layer;

typedef struct {
    lb_mnist_arch arch;
    lb_mnist_mode mode;
    int hidden;        /* MLP width / CNN fully connected width */
    int fp_ends;       /* first and last layer full precision */
    int stochastic;    /* BinaryConnect: stochastic binarization while training */
    int n_layers;
    lb_mnist_layer layers[8];
    size_t n_params;
    float *params, *grads;
    uint64_t rng_state; /* stochastic binarization */
} lb_mnist_net;

typedef struct {
    lb_mnist_arch arch;
    lb_mnist_mode mode;
    int hidden;   /* 0: default (MLP 512, CNN 256) */
    int fp_ends;  /* -1: the paper's default (XNOR: yes; others: no) */
    int stochastic;
} lb_mnist_config;

const char *lb_mnist_arch_name(lb_mnist_arch a);
const char *lb_mnist_mode_name(lb_mnist_mode m);
lb_status lb_mnist_arch_parse(const char *s, lb_mnist_arch *out);
lb_status lb_mnist_mode_parse(const char *s, lb_mnist_mode *out);

/* Builds the layers; parameters initialized from seed (He-uniform weights,
 * gamma 1, beta 0, running var 1). */
lb_status lb_mnist_net_create(const lb_mnist_config *cfg, uint64_t seed, lb_mnist_net **out);
void lb_mnist_net_free(lb_mnist_net *n);

/* Activations of a batch kept for the backward. */
typedef struct lb_mnist_acts lb_mnist_acts;
lb_status lb_mnist_acts_create(const lb_mnist_net *n, int batch, lb_mnist_acts **out);
void lb_mnist_acts_free(lb_mnist_acts *a);

/* Forward of B images (pixels 0..255) to logits (B, 10) in a->logits;
 * train: batch statistics (and running averages updated), else running.
 * With labels, returns the mean cross-entropy in *loss and the count of
 * correct predictions in *correct (either may be NULL). */
lb_status lb_mnist_forward(lb_mnist_net *n, lb_mnist_acts *a, const uint8_t *pixels, const uint8_t *labels, int B,
                           int train, double *loss, int *correct);
/* The float forward on already-scaled inputs x (B, 784) (gradient checks). */
lb_status lb_mnist_forward_x(lb_mnist_net *n, lb_mnist_acts *a, const float *x, const uint8_t *labels, int B,
                             int train, double *loss, int *correct);
/* Adds d(mean loss)/d(param) of the last training forward into n->grads
 * (straight-through estimators where quantizers sit). */
lb_status lb_mnist_backward(lb_mnist_net *n, lb_mnist_acts *a);
const float *lb_mnist_logits(const lb_mnist_acts *a);

/* Pieces the inference (mnist_infer.c) shares with the training forward, so
 * both do the same arithmetic. */
/* wq (out_c, K) and alpha (out_c, 1 unless xnor) of layer l; train with
 * stochastic: BinaryConnect's stochastic signs from *rng_state. */
void lb_mnist_layer_weights(const lb_mnist_net *n, int l, float *wq, float *alpha, int train, uint64_t *rng_state);
/* cols (B oh ow, k k in_c) from x (B in_h in_w, in_c), (ky, kx, c) order */
void lb_mnist_im2col(const lb_mnist_layer *L, const float *x, int B, float *cols);
/* z (rows, C) *= alpha per column */
void lb_mnist_scale_cols(float *z, size_t rows, int C, const float *alpha);
/* p = 2 x 2 max pool of z (B oh ow, C) (arg: the index into z of each max, may be NULL) */
void lb_mnist_pool_forward(const lb_mnist_layer *L, const float *z, int B, float *p, int *arg);
/* y = batch norm of p with running statistics, then a = activation(y) (a may be y) */
void lb_mnist_bn_act_eval(const lb_mnist_net *n, int l, const float *p, size_t rows, float *y, float *a);
/* scaled (and for int modes quantized) input pixels: x (B, 784) */
void lb_mnist_input(const lb_mnist_net *n, const uint8_t *pixels, int B, float *x);

/* ---- training, inference, file (mnist_train.c) ------------------------------- */
typedef struct {
    int epochs, batch;
    float lr, min_lr;  /* cosine from lr to min_lr over all steps */
    uint64_t seed;
    int threads;
    int shift;         /* augmentation: each training image moved by a random (dx, dy) in
                          [-shift, shift]^2, zero-filled (0: none) */
} lb_mnist_train_opts;

typedef struct {
    int epoch;
    double loss, train_acc, val_acc, seconds;
} lb_mnist_epoch_info;

typedef void (*lb_mnist_epoch_cb)(const lb_mnist_epoch_info *info, void *user);
/* Adam over shuffled batches of train; after every epoch, accuracy on val
 * (when val->n > 0) reported through cb. Latent binary weights are clipped
 * to [-1, 1] after each step. */
lb_status lb_mnist_train(lb_mnist_net *n, const lb_mnist_set *train, const lb_mnist_set *val,
                         const lb_mnist_train_opts *o, lb_mnist_epoch_cb cb, void *user);
/* Accuracy of the float inference forward (running statistics). */
lb_status lb_mnist_accuracy(lb_mnist_net *n, const lb_mnist_set *s, int batch, double *acc);

/* Inference with binary x binary layers through XNOR-popcount on packed
 * bits (the rest in float, the same arithmetic as the float forward so the
 * logits agree bit for bit): logits (B, 10). */
typedef struct lb_mnist_infer lb_mnist_infer;
lb_status lb_mnist_infer_create(const lb_mnist_net *n, int batch, lb_mnist_infer **out);
void lb_mnist_infer_free(lb_mnist_infer *p);
lb_status lb_mnist_infer_run(lb_mnist_infer *p, const uint8_t *pixels, int B, float *logits);
int lb_mnist_infer_xnor_layers(const lb_mnist_infer *p); /* layers run by XNOR-popcount */

/* GGUF: the config as mnist.* keys and every parameter and batch-norm
 * statistic as f32 tensors; written atomically. The loader checks the keys,
 * every tensor's name, shape and type, and that values are finite. */
lb_status lb_mnist_save(const lb_mnist_net *n, const char *path, const char *note);
lb_status lb_mnist_load_net(const char *path, lb_mnist_net **out);

#endif
