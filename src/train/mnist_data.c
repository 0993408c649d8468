/* MNIST's IDX files (LeCun's format): a big-endian header, magic 0x00000803
 * (unsigned bytes, 3 dims) for images, 0x00000801 (1 dim) for labels, one
 * uint32 per dim, then the payload. The parser trusts nothing: the magic, the
 * dims (28 x 28 images), the exact file size (header + payload: a truncated
 * or padded file is corrupt), matching counts and labels 0..9 are checked
 * before anything is copied. */
#include <stdio.h>
#include <string.h>

#include "train/mnist.h"

static uint32_t rd_be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Checks one IDX header: magic, the count of dims, their product against the
 * bytes that follow. dims receives the n_dims values. */
static lb_status idx_header(const uint8_t *d, size_t size, uint32_t magic, int n_dims, uint32_t *dims,
                            const char *what) {
    size_t header = 4 + 4 * (size_t)n_dims;
    if (size < header)
        return lb_fail(LB_ERR_FORMAT, "MNIST %s: %zu bytes, shorter than its %zu-byte IDX header", what, size, header);
    uint32_t m = rd_be32(d);
    if (m != magic)
        return lb_fail(LB_ERR_FORMAT, "MNIST %s: magic 0x%08x, expected 0x%08x (IDX, unsigned bytes, %d dims)", what,
                       m, magic, n_dims);
    /* the product saturates at the file size + 1 (no overflow; any zero dim still gives 0) */
    uint64_t payload = 1, cap = (uint64_t)size + 1;
    for (int i = 0; i < n_dims; i++) dims[i] = rd_be32(d + 4 + 4 * i);
    for (int i = 0; i < n_dims; i++) payload = dims[i] == 0 ? 0 : payload > cap / dims[i] ? cap : payload * dims[i];
    if (payload > cap) payload = cap;
    if (payload != (uint64_t)(size - header))
        return lb_fail(LB_ERR_FORMAT, "MNIST %s: the header's dims need %s%llu payload bytes, the file has %zu (%s)",
                       what, payload == cap ? "more than " : "", (unsigned long long)(payload == cap ? size - header : payload), size - header,
                       payload > (uint64_t)(size - header) ? "truncated" : "trailing bytes");
    return LB_OK;
}

lb_status lb_mnist_parse(const uint8_t *images, size_t images_size, const uint8_t *labels, size_t labels_size,
                         lb_mnist_set *out) {
    memset(out, 0, sizeof *out);
    uint32_t idims[3] = {0}, ldims[1] = {0};
    lb_status st;
    if ((st = idx_header(images, images_size, 0x00000803u, 3, idims, "images")) != LB_OK) return st;
    if ((st = idx_header(labels, labels_size, 0x00000801u, 1, ldims, "labels")) != LB_OK) return st;
    if (idims[1] != LB_MNIST_SIDE || idims[2] != LB_MNIST_SIDE)
        return lb_fail(LB_ERR_FORMAT, "MNIST images: %u x %u pixels, expected 28 x 28", idims[1], idims[2]);
    if (idims[0] != ldims[0])
        return lb_fail(LB_ERR_FORMAT, "MNIST: %u images but %u labels", idims[0], ldims[0]);
    if (idims[0] == 0) return lb_fail(LB_ERR_FORMAT, "MNIST: no images");
    if (idims[0] > (1u << 24)) return lb_fail(LB_ERR_FORMAT, "MNIST: %u images, more than 2^24", idims[0]);
    int n = (int)idims[0];
    const uint8_t *lab = labels + 8;
    for (int i = 0; i < n; i++)
        if (lab[i] > 9) return lb_fail(LB_ERR_FORMAT, "MNIST labels: label %d of item %d is not a digit", lab[i], i);
    out->pixels = lb_alloc((size_t)n * LB_MNIST_PIXELS);
    out->labels = lb_alloc((size_t)n);
    if (!out->pixels || !out->labels) {
        lb_mnist_free(out);
        return lb_fail(LB_ERR_NOMEM, "out of memory for %d MNIST images", n);
    }
    memcpy(out->pixels, images + 16, (size_t)n * LB_MNIST_PIXELS);
    memcpy(out->labels, lab, (size_t)n);
    out->n = n;
    out->rows = out->cols = LB_MNIST_SIDE;
    return LB_OK;
}

lb_status lb_mnist_load(const char *dir, const char *split, lb_mnist_set *out) {
    memset(out, 0, sizeof *out);
    if (strcmp(split, "train") && strcmp(split, "test"))
        return lb_fail(LB_ERR_INVALID, "MNIST split '%s': expected train or test", split);
    char ipath[4096], lpath[4096];
    snprintf(ipath, sizeof ipath, "%s/%s-images-idx3-ubyte", dir, split);
    snprintf(lpath, sizeof lpath, "%s/%s-labels-idx1-ubyte", dir, split);
    lb_mapped_file fi, fl;
    lb_status st = lb_map_file(ipath, &fi);
    if (st != LB_OK) return st;
    if ((st = lb_map_file(lpath, &fl)) != LB_OK) {
        lb_unmap_file(&fi);
        return st;
    }
    st = lb_mnist_parse(fi.data, fi.size, fl.data, fl.size, out);
    lb_unmap_file(&fi);
    lb_unmap_file(&fl);
    if (st != LB_OK) return lb_fail_context(st, "%s and %s", ipath, lpath);
    return LB_OK;
}

lb_status lb_mnist_slice(const lb_mnist_set *src, int first, int n, lb_mnist_set *out) {
    memset(out, 0, sizeof *out);
    if (first < 0 || n < 0 || first > src->n || n > src->n - first)
        return lb_fail(LB_ERR_INVALID, "MNIST slice %d..%d of a set of %d images", first, first + n, src->n);
    out->pixels = lb_alloc((size_t)(n ? n : 1) * LB_MNIST_PIXELS);
    out->labels = lb_alloc((size_t)(n ? n : 1));
    if (!out->pixels || !out->labels) {
        lb_mnist_free(out);
        return lb_fail(LB_ERR_NOMEM, "out of memory for %d MNIST images", n);
    }
    memcpy(out->pixels, src->pixels + (size_t)first * LB_MNIST_PIXELS, (size_t)n * LB_MNIST_PIXELS);
    memcpy(out->labels, src->labels + first, (size_t)n);
    out->n = n;
    out->rows = out->cols = LB_MNIST_SIDE;
    return LB_OK;
}

void lb_mnist_free(lb_mnist_set *s) {
    lb_free(s->pixels);
    lb_free(s->labels);
    memset(s, 0, sizeof *s);
}

void lb_mnist_shift(const uint8_t *src, int dx, int dy, uint8_t *dst) {
    for (int y = 0; y < LB_MNIST_SIDE; y++)
        for (int x = 0; x < LB_MNIST_SIDE; x++) {
            int sx = x - dx, sy = y - dy;
            dst[y * LB_MNIST_SIDE + x] =
                sx >= 0 && sx < LB_MNIST_SIDE && sy >= 0 && sy < LB_MNIST_SIDE ? src[sy * LB_MNIST_SIDE + sx] : 0;
        }
}
