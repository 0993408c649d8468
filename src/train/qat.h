/* Quantization-aware training (issue 9 items 2 and 7): the fake-quantized
 * linear and its schemes, shared by fakequant.c (the linear, the generic
 * STE scheme, BinaryConnect, BWN/XNOR, TWN, BitNet, activation and gradient
 * quantization, export) and qat_schemes.c (the learned ones: TTQ, ParetoQ,
 * OneBit).
 *
 * Every scheme builds, on each forward, an lb_qtensor in the target format
 * (codes plus the scales exactly as the format stores them, after
 * lb_qtensor_store_scales) from the latent fp32 weight and its learned
 * parameters; the forward's weight is that qtensor's decoded values. So the
 * exported file, which is that same qtensor encoded, decodes to exactly the
 * weights the training forward used. */
#ifndef LB_TRAIN_QAT_H
#define LB_TRAIN_QAT_H

#include "lowbit/format.h"
#include "lowbit/linear.h"
#include "lowbit/quant.h"
#include "lowbit/train.h"
#include "train/train_internal.h"

typedef struct lb_qat_state lb_qat_state;

typedef struct {
    const char *name;
    const char *summary;
    /* LB_OK when the scheme can write this format, else a failure naming what it needs */
    lb_status (*check)(const lb_qspec *spec);
    /* learned floats this linear needs (0: none) */
    size_t (*n_learned)(const lb_qspec *spec, int rows, int cols);
    /* sets the learned parameters (and may reset the latent weight) from the latent weight */
    lb_status (*init)(lb_qat_state *S);
    /* fills S->q from the latent weight and the learned parameters */
    lb_status (*quantize)(lb_qat_state *S);
    /* d(latent weight) += and d(learned) += their share of dW_eff (rows x cols) */
    lb_status (*backward)(lb_qat_state *S, const float *dweff);
    /* after each optimizer step (BinaryConnect's clip of the latent weights); may be NULL */
    void (*after_step)(lb_qat_state *S);
    /* 1: the codes are the base model's, frozen (e2eqp): each linear keeps
     * its stored format, the model's weights are not trained */
    int from_base;
} lb_qat_scheme;

struct lb_qat_state {
    const lb_qat_scheme *scheme; /* NULL: float weights (activation / gradient quantization only) */
    lb_qspec spec;
    lb_train_linear *L;
    const lb_tensor *base; /* from_base schemes: the linear's stored tensor (init only) */
    int rows, cols;
    lb_qtensor q;        /* the last quantize's codes and stored scales */
    int have_q;
    float *weff;         /* (rows, cols): the weights the forward uses */
    float *dweff;        /* (rows, cols): scratch for dL/dW_eff */
    float *learned, *dlearned; /* views into the trainer's extra parameter block (n_learned floats) */
    size_t n_learned;
    float *aux;          /* scheme data that is not learned (BinaryConnect's alpha and clip, TTQ's threshold) */
    /* item 7 */
    int act_bits, grad_bits, grad_per_tensor, grad_stochastic, stochastic;
    lb_rng *rng;         /* the model's: stochastic rounding (gradients, BinaryConnect) */
    float *xq, *dyq;     /* scratch: quantized input (N, cols), quantized dy (N, rows) */
    size_t n_scratch_x, n_scratch_dy;
    int exact_scales;    /* tests: skip the fp16 rounding of learned scales (finite differences) */
};

/* The schemes' states; every learned scale lives in the model's extra
 * parameter block (lb_train_extra, no weight decay). */
struct lb_qat {
    lb_qat_state *states; /* (n_layers * LB_N_LINEARS) */
    int n_states;
    lb_rng rng;
};

const lb_qat_scheme *lb_qat_scheme_find(const char *name);
/* "name (summary)" lines for --help, and the list of names for errors */
void lb_qat_scheme_list(char *buf, size_t n, int names_only);

/* qat_schemes.c */
extern const lb_qat_scheme lb_qat_ttq, lb_qat_paretoq, lb_qat_onebit, lb_qat_e2eqp;

/* shared helpers (fakequant.c) */
/* S->weff from S->q (the decoded values, rows x cols) */
void lb_qat_decode(lb_qat_state *S);
/* (re)allocate S->q for S->spec */
lb_status lb_qat_q_init(lb_qat_state *S);
/* lb_qtensor_store_scales (the format's fp16 rounding) unless S->exact_scales */
lb_status lb_qat_store_scales(lb_qat_state *S);
/* per group of S->q: count of real (unpadded) weights, sum |w| and max |w| of
 * the latent weight (three lb_alloc'd arrays of n_groups, freed by the caller
 * with lb_free(*count) only: one block) */
lb_status lb_qat_group_stats(lb_qat_state *S, double **count, double **sum_abs, double **max_abs);
static inline uint8_t *lb_qat_code(lb_qat_state *S, int r, int c) {
    return &S->q.codes[(size_t)r * S->q.cols_padded + c];
}

#endif
