/* The MNIST networks (issue 9 item 10) against known answers:
 *  - IDX parsing: a good tiny file pair written to a temp dir loads with its
 *    exact pixels; each kind of corruption (magic, dims, truncation, trailing
 *    bytes, count mismatch, label 10, overflowing dims, missing file) is
 *    refused with a message naming the problem;
 *  - the XNOR-popcount kernel: scalar, the run-time choice (AVX2 / NEON)
 *    and the threaded wrapper against a float dot product of +-1 vectors,
 *    exact integers, at row lengths around the 64-bit and 256-bit edges;
 *  - gradients: finite differences of the loss against the backward for
 *    every parameter kind of the fp32 MLP and CNN (dense, conv, pool, batch
 *    norm, ReLU, softmax cross-entropy) and for the smooth parameters of an
 *    XNOR net; the straight-through estimator of BinaryConnect equals the
 *    gradient of an fp32 net holding the binarized weights;
 *  - the packed inference gives the float forward's logits bit for bit;
 *  - the GGUF file round-trips and a damaged one is refused;
 *  - the shift augmentation moves every pixel by (dx, dy) and zero-fills;
 *  - a short training run on real data reaches a loose accuracy (with data).
 *
 * Finite differences: the loss (mean cross-entropy, float forward, double
 * sums) is differentiated by the 4th-order central stencil at h = 1e-3. The
 * nets are not smooth: a ReLU or a max pool whose input lies within 2h of
 * its kink makes the difference quotient disagree with the derivative. So
 * the error is largest in the first layers (every ReLU and pool after them
 * can switch) and shrinks with h: the CNN's first conv measured 5.1e-2 at
 * h = 1e-2, 1.6e-2 at 1e-3, while the last layers (no kink after them)
 * agree to 1e-5..5e-4, float rounding. We require the relative error of the
 * sampled gradient, |num - ana| / max(|num|, |ana|), below 4e-2 (2.5x the
 * worst measured), and that the same gradient 20% too large (error ~0.17)
 * is rejected. The exact checks are elsewhere: BinaryConnect's STE against
 * an fp32 net bit for bit, the packed inference against the float forward. */
#define FD_REL 4e-2
#include "test.h"

#include <unistd.h>

#include "kernels/xnor_bits.h"
#include "train/mnist.h"

static lb_rng rng;

/* ---- IDX ------------------------------------------------------------------------ */

static void be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* an image file of n 28 x 28 images (pixel i of image k = (k + i) % 256) and its label file */
static size_t make_idx(uint8_t *img, uint8_t *lab, uint32_t n, size_t *lab_size) {
    be32(img, 0x803), be32(img + 4, n), be32(img + 8, 28), be32(img + 12, 28);
    for (uint32_t k = 0; k < n; k++)
        for (int i = 0; i < 784; i++) img[16 + k * 784 + i] = (uint8_t)((k + i) % 256);
    be32(lab, 0x801), be32(lab + 4, n);
    for (uint32_t k = 0; k < n; k++) lab[8 + k] = (uint8_t)(k % 10);
    *lab_size = 8 + n;
    return 16 + (size_t)n * 784;
}

static void write_file(const char *path, const uint8_t *d, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(d, 1, n, f) != n) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    fclose(f);
}

static void test_idx(void) {
    static uint8_t img[16 + 3 * 784 + 8], lab[8 + 3 + 8], bad[sizeof img];
    size_t ls, is = make_idx(img, lab, 3, &ls);
    lb_mnist_set s;
    CHECK_OK(lb_mnist_parse(img, is, lab, ls, &s));
    CHECK(s.n == 3 && s.rows == 28 && s.cols == 28);
    CHECK(s.n == 3 && s.pixels[784 + 5] == 6 && s.labels[2] == 2);
    lb_mnist_free(&s);

    memcpy(bad, img, is);
    bad[3] = 0x02;
    CHECK_FAILS(lb_mnist_parse(bad, is, lab, ls, &s), LB_ERR_FORMAT, "magic 0x00000802");
    CHECK_FAILS(lb_mnist_parse(img, is - 1, lab, ls, &s), LB_ERR_FORMAT, "truncated");
    CHECK_FAILS(lb_mnist_parse(img, is + 1, lab, ls, &s), LB_ERR_FORMAT, "trailing bytes");
    CHECK_FAILS(lb_mnist_parse(img, 10, lab, ls, &s), LB_ERR_FORMAT, "shorter than its 16-byte IDX header");
    CHECK_FAILS(lb_mnist_parse(img, is, lab, ls - 1, &s), LB_ERR_FORMAT, "labels");
    memcpy(bad, img, is);
    be32(bad + 8, 56), be32(bad + 12, 14); /* same payload size, wrong shape */
    CHECK_FAILS(lb_mnist_parse(bad, is, lab, ls, &s), LB_ERR_FORMAT, "56 x 14 pixels");
    memcpy(bad, img, is);
    be32(bad + 4, 0xffffffffu), be32(bad + 8, 0xffffffffu); /* dims whose product overflows 64 bits */
    CHECK_FAILS(lb_mnist_parse(bad, is, lab, ls, &s), LB_ERR_FORMAT, "truncated");
    uint8_t lab2[16];
    memcpy(lab2, lab, ls);
    be32(lab2 + 4, 2);
    CHECK_FAILS(lb_mnist_parse(img, is, lab2, ls - 1, &s), LB_ERR_FORMAT, "3 images but 2 labels");
    memcpy(lab2, lab, ls);
    lab2[9] = 10;
    CHECK_FAILS(lb_mnist_parse(img, is, lab2, ls, &s), LB_ERR_FORMAT, "label 10 of item 1");
    CHECK(s.pixels == NULL && s.n == 0); /* a failure leaves nothing */

    char dir[] = "/tmp/lb_mnist_XXXXXX", p1[64], p2[64];
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(1);
    }
    snprintf(p1, sizeof p1, "%s/train-images-idx3-ubyte", dir);
    snprintf(p2, sizeof p2, "%s/train-labels-idx1-ubyte", dir);
    write_file(p1, img, is);
    write_file(p2, lab, ls);
    CHECK_OK(lb_mnist_load(dir, "train", &s));
    CHECK(s.n == 3 && s.labels[1] == 1);
    lb_mnist_set sl;
    CHECK_OK(lb_mnist_slice(&s, 1, 2, &sl));
    CHECK(sl.n == 2 && sl.labels[0] == 1 && sl.pixels[0] == 1);
    lb_mnist_free(&sl);
    CHECK_FAILS(lb_mnist_slice(&s, 2, 2, &sl), LB_ERR_INVALID, "slice");
    CHECK(sl.pixels == NULL && sl.labels == NULL); /* a refused slice holds nothing */
    lb_mnist_free(&s);
    write_file(p1, img, is - 100); /* truncated on disk: the error names the file */
    CHECK_FAILS(lb_mnist_load(dir, "train", &s), LB_ERR_FORMAT, "train-images-idx3-ubyte");
    CHECK_FAILS(lb_mnist_load(dir, "test", &s), LB_ERR_IO, "test-images-idx3-ubyte");
    CHECK_FAILS(lb_mnist_load(dir, "eval", &s), LB_ERR_INVALID, "train or test");
    unlink(p1);
    unlink(p2);
    rmdir(dir);
}

/* ---- shift augmentation ------------------------------------------------------------------ */

static void test_shift(void) {
    uint8_t src[LB_MNIST_PIXELS], dst[LB_MNIST_PIXELS];
    for (int i = 0; i < LB_MNIST_PIXELS; i++) src[i] = (uint8_t)(1 + i % 251); /* no pixel is 0 */
    const int moves[][2] = {{0, 0}, {1, 0}, {0, -2}, {-3, 2}, {4, 4}};
    for (size_t m = 0; m < sizeof moves / sizeof moves[0]; m++) {
        int dx = moves[m][0], dy = moves[m][1], bad = 0;
        lb_mnist_shift(src, dx, dy, dst);
        for (int y = 0; y < LB_MNIST_SIDE; y++)
            for (int x = 0; x < LB_MNIST_SIDE; x++) {
                int sx = x - dx, sy = y - dy, inside = sx >= 0 && sx < LB_MNIST_SIDE && sy >= 0 && sy < LB_MNIST_SIDE;
                bad += dst[y * LB_MNIST_SIDE + x] != (inside ? src[sy * LB_MNIST_SIDE + sx] : 0);
            }
        CHECK_MSG(!bad, "shift (%d, %d): %d pixels wrong", dx, dy, bad);
    }
    lb_mnist_shift(src, 1, 0, dst); /* spot checks against the definition above */
    CHECK(dst[0] == 0 && dst[1] == src[0] && dst[LB_MNIST_SIDE + 5] == src[LB_MNIST_SIDE + 4]);
    lb_mnist_shift(src, 0, 0, dst);
    CHECK(!memcmp(src, dst, sizeof src));
}

/* ---- XNOR-popcount kernel ------------------------------------------------------------ */

static void test_xnor_kernel(void) {
    const char *name;
    lb_xnor_gemm_fn simd = lb_xnor_gemm_select(&name);
    if (simd == lb_xnor_gemm_ref)
        printf("test_mnist: NOTE: no SIMD XNOR kernel on this CPU (or LB_CPU=generic): only the scalar kernel "
               "is checked against the float reference here\n");
    else
        printf("test_mnist: XNOR kernel '%s' checked against the scalar one and the float reference\n", name);
#if defined(__x86_64__)
    if (!(lb_cpu_features() & LB_CPU_AVX2) && !getenv("LB_CPU"))
        printf("test_mnist: WARNING: THIS CPU LACKS AVX2: THE AVX2 XNOR KERNEL WAS NOT TESTED\n");
#endif
    static const int cols_list[] = {1, 63, 64, 65, 191, 256, 257, 300, 784, 800, 1024, 1100};
    for (size_t t = 0; t < sizeof cols_list / sizeof cols_list[0]; t++) {
        int cols = cols_list[t], n = 7, m = 13, words = lb_xnor_words(cols);
        float *a = malloc((size_t)n * cols * sizeof(float)), *w = malloc((size_t)m * cols * sizeof(float));
        uint64_t *ab = malloc((size_t)n * words * 8), *wb = malloc((size_t)m * words * 8);
        int32_t *r0 = malloc((size_t)n * m * 4), *r1 = malloc((size_t)n * m * 4), *r2 = malloc((size_t)n * m * 4);
        for (int i = 0; i < n * cols; i++) a[i] = lb_rng_f32(&rng) < 0.5f ? -1.0f : 1.0f;
        for (int i = 0; i < m * cols; i++) w[i] = lb_rng_f32(&rng) < 0.3f ? -1.0f : 1.0f;
        if (t == 0) a[0] = w[0] = 1.0f; /* one column: all-agree and all-disagree rows both occur below */
        lb_xnor_pack(a, n, cols, cols, ab);
        lb_xnor_pack(w, m, cols, cols, wb);
        int pad_ok = 1; /* bits past cols are zero */
        for (int i = 0; i < n && cols % 64; i++) pad_ok &= (ab[(size_t)i * words + words - 1] >> (cols % 64)) == 0;
        CHECK_MSG(pad_ok, "cols %d: padding bits set", cols);
        lb_xnor_gemm_ref(ab, n, wb, m, cols, r0, m);
        simd(ab, n, wb, m, cols, r1, m);
        lb_xnor_gemm(ab, n, wb, m, cols, r2, m);
        int bad_ref = 0, bad_simd = 0, bad_thr = 0;
        for (int i = 0; i < n; i++)
            for (int o = 0; o < m; o++) {
                float dot = 0.0f; /* integers below 2^24: exact in float */
                for (int j = 0; j < cols; j++) dot += a[(size_t)i * cols + j] * w[(size_t)o * cols + j];
                bad_ref += r0[i * m + o] != (int32_t)dot;
                bad_simd += r1[i * m + o] != r0[i * m + o];
                bad_thr += r2[i * m + o] != r0[i * m + o];
            }
        CHECK_MSG(bad_ref == 0, "cols %d: scalar XNOR differs from the float dot product in %d of %d", cols, bad_ref, n * m);
        CHECK_MSG(bad_simd == 0, "cols %d: %s XNOR differs from the scalar one in %d of %d", cols, name, bad_simd, n * m);
        CHECK_MSG(bad_thr == 0, "cols %d: threaded XNOR differs from the scalar one in %d", cols, bad_thr);
        free(a), free(w), free(ab), free(wb), free(r0), free(r1), free(r2);
    }
}

/* ---- gradients ------------------------------------------------------------------------ */

static double loss_of(lb_mnist_net *n, lb_mnist_acts *a, const float *x, const uint8_t *y, int B) {
    double loss = 0.0;
    lb_mnist_forward_x(n, a, x, y, B, 1, &loss, NULL);
    return loss;
}

/* checks the gradient of `count` random parameters in [lo, hi) of the
 * parameter buffer; returns the relative error (and checks it) */
static double check_grad(lb_mnist_net *n, const float *x, const uint8_t *y, int B, size_t lo, size_t hi, int count,
                         const char *what) {
    lb_mnist_acts *a = NULL;
    CHECK_OK(lb_mnist_acts_create(n, B, &a));
    if (!a) return 1.0;
    memset(n->grads, 0, n->n_params * sizeof(float));
    loss_of(n, a, x, y, B);
    CHECK_OK(lb_mnist_backward(n, a));
    double num2 = 0, ana2 = 0, err2 = 0, wrong2 = 0;
    const float h = 1e-3f;
    for (int c = 0; c < count; c++) {
        size_t i = lo + (size_t)(lb_rng_u32(&rng) % (uint32_t)(hi - lo));
        float keep = n->params[i];
        double L[4];
        const float steps[4] = {h, -h, 2 * h, -2 * h};
        for (int s = 0; s < 4; s++) {
            n->params[i] = keep + steps[s];
            L[s] = loss_of(n, a, x, y, B);
        }
        n->params[i] = keep;
        double num = (8 * (L[0] - L[1]) - (L[2] - L[3])) / (12 * h), ana = n->grads[i];
        num2 += num * num, ana2 += ana * ana, err2 += (num - ana) * (num - ana);
        wrong2 += (num - 1.2 * ana) * (num - 1.2 * ana); /* the gradient 20% too large */
    }
    double scale = sqrt(num2 > ana2 ? num2 : ana2), rel = scale > 0 ? sqrt(err2) / scale : 1.0;
    double rel_wrong = scale > 0 ? sqrt(wrong2) / scale : 0.0;
    printf("test_mnist: gradient %-34s relative error %.2e (gradient norm %.3g; 20%% too large: %.2e)\n", what, rel,
           scale, rel_wrong);
    CHECK_MSG(scale > 1e-6, "%s: the gradient is zero: nothing checked", what);
    CHECK_MSG(rel < FD_REL, "%s: relative error %g", what, rel);
    CHECK_MSG(rel_wrong > FD_REL, "%s: a gradient 20%% off passes (%g)", what, rel_wrong);
    lb_mnist_acts_free(a);
    return rel;
}

static void random_batch(float *x, uint8_t *y, int B) {
    for (int i = 0; i < B * LB_MNIST_PIXELS; i++) x[i] = lb_rng_f32(&rng);
    for (int i = 0; i < B; i++) y[i] = (uint8_t)(lb_rng_u32(&rng) % 10);
}

static void test_gradients(void) {
    enum { B = 6 };
    float *x = malloc((size_t)B * LB_MNIST_PIXELS * sizeof(float));
    uint8_t y[B];
    random_batch(x, y, B);
    lb_mnist_net *n = NULL;
    lb_mnist_config mlp = {.arch = LB_MNIST_MLP, .mode = LB_MNIST_FP32, .hidden = 16, .fp_ends = -1};
    CHECK_OK(lb_mnist_net_create(&mlp, 3, &n));
    for (int l = 0; n && l < n->n_layers; l++) {
        const lb_mnist_layer *L = &n->layers[l];
        char what[64];
        snprintf(what, sizeof what, "mlp fp32 layer %d weights", l);
        check_grad(n, x, y, B, L->w_off, L->w_off + (size_t)L->out_c * L->K, 12, what);
        snprintf(what, sizeof what, "mlp fp32 layer %d bn gamma+beta", l);
        check_grad(n, x, y, B, L->gamma_off, L->beta_off + L->out_c, 8, what);
    }
    lb_mnist_net_free(n);

    lb_mnist_config cnn = {.arch = LB_MNIST_CNN, .mode = LB_MNIST_FP32, .hidden = 8, .fp_ends = -1};
    CHECK_OK(lb_mnist_net_create(&cnn, 4, &n));
    for (int l = 0; n && l < n->n_layers; l++) {
        const lb_mnist_layer *L = &n->layers[l];
        char what[64];
        snprintf(what, sizeof what, "cnn fp32 layer %d (%s) weights", l, L->conv ? "conv" : "dense");
        check_grad(n, x, y, B, L->w_off, L->w_off + (size_t)L->out_c * L->K, 10, what);
        snprintf(what, sizeof what, "cnn fp32 layer %d bn gamma+beta", l);
        check_grad(n, x, y, B, L->gamma_off, L->beta_off + L->out_c, 6, what);
    }
    lb_mnist_net_free(n);

    /* XNOR: the loss is smooth in the parameters after the last sign only:
     * the last layer's full-precision weights and its batch norm */
    lb_mnist_config xn = {.arch = LB_MNIST_MLP, .mode = LB_MNIST_XNOR, .hidden = 16, .fp_ends = -1};
    CHECK_OK(lb_mnist_net_create(&xn, 5, &n));
    if (n) {
        const lb_mnist_layer *L = &n->layers[n->n_layers - 1];
        CHECK(L->wq == LB_MW_FP && n->layers[1].wq == LB_MW_XNOR && n->layers[1].binary_in);
        check_grad(n, x, y, B, L->w_off, L->w_off + (size_t)L->out_c * L->K, 12, "xnor mlp last layer weights");
        check_grad(n, x, y, B, L->gamma_off, L->beta_off + L->out_c, 8, "xnor mlp last bn gamma+beta");
    }
    lb_mnist_net_free(n);
    free(x);
}

/* BinaryConnect's straight-through gradient: that of an fp32 net whose
 * weights are the signs (same forward, so the same gradient, exactly) */
static void test_ste(void) {
    enum { B = 5 };
    float *x = malloc((size_t)B * LB_MNIST_PIXELS * sizeof(float));
    uint8_t y[B];
    random_batch(x, y, B);
    lb_mnist_net *bc = NULL, *fp = NULL;
    lb_mnist_config cb = {.arch = LB_MNIST_MLP, .mode = LB_MNIST_BINARYCONNECT, .hidden = 12, .fp_ends = -1};
    lb_mnist_config cf = {.arch = LB_MNIST_MLP, .mode = LB_MNIST_FP32, .hidden = 12, .fp_ends = -1};
    CHECK_OK(lb_mnist_net_create(&cb, 6, &bc));
    CHECK_OK(lb_mnist_net_create(&cf, 6, &fp));
    lb_mnist_acts *a1 = NULL, *a2 = NULL;
    CHECK_OK(lb_mnist_acts_create(bc, B, &a1));
    CHECK_OK(lb_mnist_acts_create(fp, B, &a2));
    if (bc && fp && a1 && a2) {
        CHECK(bc->n_params == fp->n_params);
        memcpy(fp->params, bc->params, bc->n_params * sizeof(float));
        for (int l = 0; l < bc->n_layers; l++) {
            const lb_mnist_layer *L = &bc->layers[l];
            CHECK(L->wq == LB_MW_SIGN);
            for (size_t i = L->w_off; i < L->w_off + (size_t)L->out_c * L->K; i++)
                fp->params[i] = bc->params[i] >= 0 ? 1.0f : -1.0f;
        }
        memset(bc->grads, 0, bc->n_params * sizeof(float));
        memset(fp->grads, 0, fp->n_params * sizeof(float));
        double l1 = 0, l2 = 0;
        CHECK_OK(lb_mnist_forward_x(bc, a1, x, y, B, 1, &l1, NULL));
        CHECK_OK(lb_mnist_forward_x(fp, a2, x, y, B, 1, &l2, NULL));
        CHECK_OK(lb_mnist_backward(bc, a1));
        CHECK_OK(lb_mnist_backward(fp, a2));
        CHECK(l1 == l2);
        size_t diff = 0;
        double gn = 0;
        for (size_t i = 0; i < bc->n_params; i++) {
            diff += bc->grads[i] != fp->grads[i];
            gn += fabs(bc->grads[i]);
        }
        CHECK_MSG(diff == 0 && gn > 0, "BinaryConnect's STE gradient differs from the fp32 one in %zu of %zu", diff,
                  bc->n_params);
    }
    lb_mnist_acts_free(a1);
    lb_mnist_acts_free(a2);
    lb_mnist_net_free(bc);
    lb_mnist_net_free(fp);
    free(x);
}

/* ---- on the data: training, packed inference, file --------------------------------------- */

static void packed_equals_float(lb_mnist_net *n, const lb_mnist_set *s, const char *what) {
    enum { B = 50 };
    lb_mnist_infer *inf = NULL;
    lb_mnist_acts *a = NULL;
    CHECK_OK(lb_mnist_infer_create(n, B, &inf));
    CHECK_OK(lb_mnist_acts_create(n, B, &a));
    float logits[B * 10];
    long diff = 0;
    int n_img = s->n < 500 ? s->n : 500;
    for (int i = 0; inf && a && i + B <= n_img; i += B) {
        CHECK_OK(lb_mnist_infer_run(inf, s->pixels + (size_t)i * LB_MNIST_PIXELS, B, logits));
        CHECK_OK(lb_mnist_forward(n, a, s->pixels + (size_t)i * LB_MNIST_PIXELS, NULL, B, 0, NULL, NULL));
        const float *ref = lb_mnist_logits(a);
        for (int j = 0; j < B * 10; j++) diff += logits[j] != ref[j];
    }
    int xl = inf ? lb_mnist_infer_xnor_layers(inf) : -1;
    printf("test_mnist: %s: %d layers by XNOR-popcount, %ld logits differ from the float forward\n", what, xl, diff);
    CHECK_MSG(diff == 0, "%s: packed logits differ from the float forward in %ld", what, diff);
    lb_mnist_infer_free(inf);
    lb_mnist_acts_free(a);
}

static void test_on_data(void) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s", lb_test_data("mnist/train-images-idx3-ubyte"));
    *strrchr(dir, '/') = 0;
    lb_mnist_set all, train, val;
    CHECK_OK(lb_mnist_load(dir, "train", &all));
    if (all.n < 8000) {
        CHECK_MSG(0, "the MNIST training file has %d images, the test expects 8000", all.n);
        return;
    }
    /* the validation images are the last 1,000 of the training file, as lowbit mnist train's default */
    CHECK_OK(lb_mnist_slice(&all, 0, 5000, &train));
    CHECK_OK(lb_mnist_slice(&all, all.n - 1000, 1000, &val));
    lb_mnist_train_opts o = {.epochs = 1, .batch = 100, .lr = 3e-3f, .min_lr = 3e-5f, .seed = 1};
    static const struct {
        lb_mnist_arch arch;
        lb_mnist_mode mode;
        int hidden;
        double min_acc;
    } runs[] = {
        {LB_MNIST_MLP, LB_MNIST_BINARYCONNECT, 256, 0.85},
        {LB_MNIST_MLP, LB_MNIST_XNOR, 256, 0.80},
        {LB_MNIST_CNN, LB_MNIST_XNOR, 64, 0.80},
    };
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        lb_mnist_config cfg = {.arch = runs[r].arch, .mode = runs[r].mode, .hidden = runs[r].hidden, .fp_ends = -1};
        lb_mnist_net *n = NULL;
        CHECK_OK(lb_mnist_net_create(&cfg, 1, &n));
        if (!n) continue;
        double t0 = lb_now(), acc = 0;
        CHECK_OK(lb_mnist_train(n, &train, NULL, &o, NULL, NULL));
        CHECK_OK(lb_mnist_accuracy(n, &val, 250, &acc));
        char what[64];
        snprintf(what, sizeof what, "%s %s", lb_mnist_arch_name(n->arch), lb_mnist_mode_name(n->mode));
        printf("test_mnist: %s, 1 epoch on 5,000 images: validation accuracy %.2f%% (%.1f s; requires > %.0f%%)\n",
               what, 100 * acc, lb_now() - t0, 100 * runs[r].min_acc);
        CHECK_MSG(acc > runs[r].min_acc, "%s: validation accuracy %.4f", what, acc);
        for (int l = 0; l < n->n_layers; l++) /* latent binary weights stay clipped */
            if (n->layers[l].wq == LB_MW_XNOR || n->layers[l].wq == LB_MW_SIGN)
                for (size_t i = 0; i < (size_t)n->layers[l].out_c * n->layers[l].K; i++)
                    if (fabsf(n->params[n->layers[l].w_off + i]) > 1.0f) {
                        CHECK_MSG(0, "%s layer %d: latent weight %g outside [-1, 1]", what, l,
                                  (double)n->params[n->layers[l].w_off + i]);
                        break;
                    }
        packed_equals_float(n, &val, what);

        /* the file: the same logits after a round trip; damage refused, nothing loaded */
        char path[] = "/tmp/lb_mnist_net_XXXXXX";
        int fd = mkstemp(path);
        if (fd >= 0) close(fd);
        CHECK_OK(lb_mnist_save(n, path, "test"));
        lb_mnist_net *m = NULL;
        CHECK_OK(lb_mnist_load_net(path, &m));
        if (m) {
            double acc2 = 0;
            CHECK(m->arch == n->arch && m->mode == n->mode && m->hidden == n->hidden && m->fp_ends == n->fp_ends);
            CHECK(memcmp(m->params, n->params, n->n_params * sizeof(float)) == 0);
            CHECK_OK(lb_mnist_accuracy(m, &val, 250, &acc2));
            CHECK(acc2 == acc);
            lb_mnist_net_free(m);
        }
        if (r == 0) {
            lb_mapped_file f;
            CHECK_OK(lb_map_file(path, &f));
            uint8_t *buf = malloc(f.size);
            memcpy(buf, f.data, f.size);
            size_t size = f.size;
            lb_unmap_file(&f);
            write_file(path, buf, size - 100);
            CHECK_FAILS(lb_mnist_load_net(path, &m), LB_ERR_FORMAT, path);
            CHECK(m == NULL);
            /* a NaN in a weight */
            float nan = NAN;
            memcpy(buf + size - 4 * (size_t)(n->n_params), &nan, 4); /* somewhere inside the tensor data */
            write_file(path, buf, size);
            lb_status st = lb_mnist_load_net(path, &m);
            CHECK_MSG(st == LB_ERR_FORMAT && strstr(lb_last_error(), "element"), "a NaN weight: %s", lb_last_error());
            lb_mnist_net_free(m);
            free(buf);
            m = NULL;
            CHECK_FAILS(lb_mnist_load_net(lb_test_data("vocab/ggml-vocab-llama-spm.gguf"), &m), LB_ERR_FORMAT,
                        "general.architecture");
        }
        unlink(path);
        lb_mnist_net_free(n);
    }
    lb_mnist_free(&all);
    lb_mnist_free(&train);
    lb_mnist_free(&val);
}

int main(void) {
    lb_rng_seed(&rng, 20261201);
    test_idx();
    test_shift();
    test_xnor_kernel();
    if (!getenv("LB_TEST_NO_GRAD")) { /* test_mnist_kernels (qemu in test-arm): the kernel only */
        test_gradients();
        test_ste();
    }
    if (!getenv("LB_TEST_KERNELS_ONLY")) test_on_data();
    return lb_test_finish("test_mnist");
}
