/* Training the MNIST networks (Adam on the latent weights, cosine learning
 * rate, shuffled mini-batches), their accuracy, and their GGUF file. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "lowbit/gguf.h"
#include "train/mnist.h"
#include "train/train_internal.h"

#define GGML_F32 0

lb_status lb_mnist_accuracy(lb_mnist_net *n, const lb_mnist_set *s, int batch, double *acc) {
    *acc = 0.0;
    if (s->n < 1) return lb_fail(LB_ERR_INVALID, "MNIST accuracy of an empty set");
    lb_mnist_acts *a = NULL;
    lb_status st = lb_mnist_acts_create(n, batch, &a);
    long correct = 0;
    for (int i = 0; st == LB_OK && i < s->n; i += batch) {
        int B = s->n - i < batch ? s->n - i : batch, c = 0;
        st = lb_mnist_forward(n, a, s->pixels + (size_t)i * LB_MNIST_PIXELS, s->labels + i, B, 0, NULL, &c);
        correct += c;
    }
    lb_mnist_acts_free(a);
    if (st == LB_OK) *acc = (double)correct / s->n;
    return st;
}

/* latent binary weights live in [-1, 1] (BinaryConnect's clip) */
static void clip_latent(lb_mnist_net *n) {
    for (int l = 0; l < n->n_layers; l++) {
        const lb_mnist_layer *L = &n->layers[l];
        if (L->wq != LB_MW_SIGN && L->wq != LB_MW_XNOR) continue;
        float *w = n->params + L->w_off;
        for (size_t i = 0; i < (size_t)L->out_c * L->K; i++) w[i] = w[i] > 1.0f ? 1.0f : w[i] < -1.0f ? -1.0f : w[i];
    }
}

lb_status lb_mnist_train(lb_mnist_net *n, const lb_mnist_set *train, const lb_mnist_set *val,
                         const lb_mnist_train_opts *o, lb_mnist_epoch_cb cb, void *user) {
    if (o->epochs < 1 || o->batch < 2) return lb_fail(LB_ERR_INVALID, "MNIST training: epochs %d (>= 1), batch %d (>= 2)", o->epochs, o->batch);
    if (train->n < o->batch)
        return lb_fail(LB_ERR_INVALID, "MNIST training: %d images, fewer than one batch of %d", train->n, o->batch);
    int steps_per_epoch = train->n / o->batch; /* the last partial batch is dropped (reshuffled next epoch) */
    int total = steps_per_epoch * o->epochs;
    lb_mnist_acts *a = NULL;
    lb_adamw opt;
    memset(&opt, 0, sizeof opt);
    int *perm = lb_alloc((size_t)train->n * sizeof(int));
    uint8_t *bp = lb_alloc((size_t)o->batch * LB_MNIST_PIXELS), *bl = lb_alloc((size_t)o->batch);
    lb_status st = perm && bp && bl ? LB_OK : lb_fail(LB_ERR_NOMEM, "out of memory for MNIST batches");
    if (st == LB_OK) st = lb_mnist_acts_create(n, o->batch, &a);
    if (st == LB_OK) st = lb_adamw_init(&opt, n->n_params);
    lb_train_tensor all = {.offset = 0, .rows = 1, .cols = (int64_t)n->n_params, .decay = 0};
    snprintf(all.name, sizeof all.name, "mnist");
    lb_adamw_opts ao = {.beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.0f};
    lb_rng rng;
    lb_rng_seed(&rng, o->seed ? o->seed : 1);
    for (int i = 0; st == LB_OK && i < train->n; i++) perm[i] = i;
    int step = 0;
    for (int e = 0; st == LB_OK && e < o->epochs; e++) {
        double t0 = lb_now(), loss_sum = 0.0;
        long correct = 0;
        for (int i = train->n - 1; i > 0; i--) { /* Fisher-Yates */
            int j = (int)(lb_rng_u32(&rng) % (uint32_t)(i + 1)), t = perm[i];
            perm[i] = perm[j], perm[j] = t;
        }
        for (int s = 0; st == LB_OK && s < steps_per_epoch; s++, step++) {
            for (int b = 0; b < o->batch; b++) {
                int k = perm[s * o->batch + b];
                const uint8_t *img = train->pixels + (size_t)k * LB_MNIST_PIXELS;
                if (o->shift) {
                    int span = 2 * o->shift + 1, dx = (int)(lb_rng_u32(&rng) % (uint32_t)span) - o->shift,
                        dy = (int)(lb_rng_u32(&rng) % (uint32_t)span) - o->shift;
                    lb_mnist_shift(img, dx, dy, bp + (size_t)b * LB_MNIST_PIXELS);
                } else {
                    memcpy(bp + (size_t)b * LB_MNIST_PIXELS, img, LB_MNIST_PIXELS);
                }
                bl[b] = train->labels[k];
            }
            double loss = 0.0;
            int c = 0;
            memset(n->grads, 0, n->n_params * sizeof(float));
            st = lb_mnist_forward(n, a, bp, bl, o->batch, 1, &loss, &c);
            if (st == LB_OK) st = lb_mnist_backward(n, a);
            if (st != LB_OK) break;
            if (!isfinite(loss)) {
                st = lb_fail(LB_ERR_NUMERIC, "MNIST training diverged at epoch %d step %d (loss %g): lower --lr", e + 1, s + 1, loss);
                break;
            }
            float lr = lb_lr_schedule(step, total, 0, o->lr, o->min_lr);
            lb_adamw_step(&opt, n->params, n->grads, &all, 1, lr, &ao);
            clip_latent(n);
            loss_sum += loss;
            correct += c;
        }
        if (st != LB_OK) break;
        lb_mnist_epoch_info info = {.epoch = e + 1,
                                    .loss = loss_sum / steps_per_epoch,
                                    .train_acc = (double)correct / ((double)steps_per_epoch * o->batch),
                                    .val_acc = NAN};
        if (val && val->n > 0) st = lb_mnist_accuracy(n, val, 500, &info.val_acc);
        info.seconds = lb_now() - t0;
        if (st == LB_OK && cb) cb(&info, user);
    }
    lb_adamw_free(&opt);
    lb_mnist_acts_free(a);
    lb_free(perm);
    lb_free(bp);
    lb_free(bl);
    return st;
}

/* ---- the file ----------------------------------------------------------------- */

static const char *tensor_kinds[5] = {"weight", "bn_gamma", "bn_beta", "bn_mean", "bn_var"};

/* tensor kind t of layer l: its data and element counts (ne[0] fastest) */
static float *tensor_of(const lb_mnist_net *n, int l, int t, uint64_t ne[2], uint32_t *n_dims) {
    const lb_mnist_layer *L = &n->layers[l];
    ne[0] = (uint64_t)L->out_c, ne[1] = 1, *n_dims = 1;
    switch (t) {
    case 0: ne[0] = (uint64_t)L->K, ne[1] = (uint64_t)L->out_c, *n_dims = 2; return n->params + L->w_off;
    case 1: return n->params + L->gamma_off;
    case 2: return n->params + L->beta_off;
    case 3: return L->run_mean;
    default: return L->run_var;
    }
}

lb_status lb_mnist_save(const lb_mnist_net *n, const char *path, const char *note) {
    lb_gguf_writer *w = NULL;
    lb_status st = lb_gguf_writer_create(&w);
    if (st != LB_OK) return st;
    if (st == LB_OK) st = lb_gguf_set_str(w, "general.architecture", "lowbit-mnist");
    if (st == LB_OK) st = lb_gguf_set_str(w, "mnist.arch", lb_mnist_arch_name(n->arch));
    if (st == LB_OK) st = lb_gguf_set_str(w, "mnist.mode", lb_mnist_mode_name(n->mode));
    if (st == LB_OK) st = lb_gguf_set_u32(w, "mnist.hidden", (uint32_t)n->hidden);
    if (st == LB_OK) st = lb_gguf_set_bool(w, "mnist.fp_ends", n->fp_ends);
    if (st == LB_OK) st = lb_gguf_set_bool(w, "mnist.stochastic", n->stochastic);
    if (st == LB_OK && note) st = lb_gguf_set_str(w, "mnist.note", note);
    for (int l = 0; st == LB_OK && l < n->n_layers; l++)
        for (int t = 0; st == LB_OK && t < 5; t++) {
            char name[64];
            uint64_t ne[2];
            uint32_t nd;
            const float *d = tensor_of(n, l, t, ne, &nd);
            snprintf(name, sizeof name, "l%d.%s", l, tensor_kinds[t]);
            st = lb_gguf_add_tensor(w, name, GGML_F32, nd, ne, d, (size_t)(ne[0] * ne[1]) * sizeof(float));
        }
    if (st == LB_OK) st = lb_gguf_write(w, path);
    lb_gguf_writer_free(w);
    return st;
}

static lb_status get_str(const lb_gguf *g, const char *key, char *buf, size_t n) {
    const char *s;
    size_t len;
    lb_status st = lb_gguf_get_str(g, key, &s, &len);
    if (st != LB_OK) return st;
    if (len >= n) return lb_fail(LB_ERR_FORMAT, "%s: %zu bytes, too long", key, len);
    memcpy(buf, s, len);
    buf[len] = 0;
    return LB_OK;
}

static lb_status load_from(const lb_gguf *g, lb_mnist_net **out) {
    char arch[16], mode[32], gen[32];
    uint32_t hidden;
    int fp_ends, stochastic;
    lb_status st = get_str(g, "general.architecture", gen, sizeof gen);
    if (st == LB_OK && strcmp(gen, "lowbit-mnist"))
        st = lb_fail(LB_ERR_FORMAT, "general.architecture is '%s', not lowbit-mnist (not an MNIST network)", gen);
    if (st == LB_OK) st = get_str(g, "mnist.arch", arch, sizeof arch);
    if (st == LB_OK) st = get_str(g, "mnist.mode", mode, sizeof mode);
    if (st == LB_OK) st = lb_gguf_get_u32(g, "mnist.hidden", &hidden);
    if (st == LB_OK) st = lb_gguf_get_bool(g, "mnist.fp_ends", &fp_ends);
    if (st == LB_OK) st = lb_gguf_get_bool(g, "mnist.stochastic", &stochastic);
    lb_mnist_config cfg = {0};
    if (st == LB_OK) st = lb_mnist_arch_parse(arch, &cfg.arch);
    if (st == LB_OK) st = lb_mnist_mode_parse(mode, &cfg.mode);
    if (st == LB_OK && (hidden < 1 || hidden > 8192)) st = lb_fail(LB_ERR_FORMAT, "mnist.hidden %u: 1..8192", hidden);
    if (st != LB_OK) return st;
    cfg.hidden = (int)hidden, cfg.fp_ends = fp_ends, cfg.stochastic = stochastic;
    lb_mnist_net *n = NULL;
    if ((st = lb_mnist_net_create(&cfg, 1, &n)) != LB_OK) return st;
    int expected = 5 * n->n_layers;
    if (lb_gguf_n_tensors(g) != expected)
        st = lb_fail(LB_ERR_FORMAT, "%lld tensors, a %s %s network has %d", (long long)lb_gguf_n_tensors(g), arch, mode, expected);
    for (int l = 0; st == LB_OK && l < n->n_layers; l++)
        for (int t = 0; st == LB_OK && t < 5; t++) {
            char name[64];
            uint64_t ne[2];
            uint32_t nd;
            float *d = tensor_of(n, l, t, ne, &nd);
            snprintf(name, sizeof name, "l%d.%s", l, tensor_kinds[t]);
            const lb_gguf_tensor *T = lb_gguf_find_tensor(g, name);
            if (!T) {
                st = lb_fail(LB_ERR_FORMAT, "tensor %s missing", name);
                break;
            }
            if (T->type != GGML_F32 || T->n_dims != nd || T->ne[0] != ne[0] || (nd == 2 && T->ne[1] != ne[1])) {
                st = lb_fail(LB_ERR_FORMAT, "tensor %s: type %d, %u dims (%llu x %llu), expected f32 %llu x %llu", name,
                             T->type, T->n_dims, (unsigned long long)T->ne[0],
                             (unsigned long long)(T->n_dims > 1 ? T->ne[1] : 1), (unsigned long long)ne[0],
                             (unsigned long long)ne[1]);
                break;
            }
            size_t cnt = (size_t)(ne[0] * ne[1]);
            memcpy(d, T->data, cnt * sizeof(float));
            for (size_t i = 0; i < cnt; i++)
                if (!isfinite(d[i]) || (t == 4 && d[i] < 0.0f)) {
                    st = lb_fail(LB_ERR_FORMAT, "tensor %s: element %zu is %g", name, i, (double)d[i]);
                    break;
                }
        }
    if (st != LB_OK) {
        lb_mnist_net_free(n);
        return st;
    }
    *out = n;
    return LB_OK;
}

lb_status lb_mnist_load_net(const char *path, lb_mnist_net **out) {
    *out = NULL;
    lb_mapped_file f;
    lb_status st = lb_map_file(path, &f);
    if (st != LB_OK) return st;
    lb_gguf *g = NULL;
    st = lb_gguf_parse(f.data, f.size, &g);
    if (st == LB_OK) st = load_from(g, out);
    lb_gguf_free(g);
    lb_unmap_file(&f);
    if (st != LB_OK) return lb_fail_context(st, "%s", path);
    return LB_OK;
}
