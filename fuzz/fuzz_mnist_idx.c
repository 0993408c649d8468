/* libFuzzer target for the MNIST IDX reader (lb_mnist_parse). The input is
 * split in two: its first 4 bytes (little-endian) give the image file's
 * length (capped at what follows), the rest is the label file. Any input must parse or
 * fail cleanly; a set that parsed has n >= 1 images of 28 x 28 whose pixels
 * and labels can all be read (ASan checks the bounds), labels 0..9. */
#include <stdlib.h>
#include <string.h>

#include "train/mnist.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 4) return 0;
    size_t rest = size - 4, ni = (size_t)data[0] | (size_t)data[1] << 8 | (size_t)data[2] << 16 | (size_t)data[3] << 24;
    if (ni > rest) ni = rest;
    size_t nl = rest - ni;
    /* exact-size copies: ASan sees any over-read of either file */
    uint8_t *img = malloc(ni ? ni : 1), *lab = malloc(nl ? nl : 1);
    if (!img || !lab) {
        free(img);
        free(lab);
        return 0;
    }
    memcpy(img, data + 4, ni);
    memcpy(lab, data + 4 + ni, nl);
    lb_mnist_set s;
    if (lb_mnist_parse(img, ni, lab, nl, &s) == LB_OK) {
        if (s.n < 1 || s.rows != 28 || s.cols != 28) abort();
        volatile unsigned sink = 0;
        for (size_t i = 0; i < (size_t)s.n * LB_MNIST_PIXELS; i++) sink += s.pixels[i];
        for (int i = 0; i < s.n; i++)
            if (s.labels[i] > 9) abort();
        (void)sink;
        lb_mnist_free(&s);
    } else if (s.pixels || s.labels || s.n) {
        abort(); /* a failure leaves nothing */
    }
    free(img);
    free(lab);
    return 0;
}
