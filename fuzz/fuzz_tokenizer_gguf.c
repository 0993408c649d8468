/* libFuzzer target for tokenizers read from GGUF (tokenizer.ggml.* keys).
 * Input: [text length, u16 LE][text][GGUF file]. The file must parse and
 * load or fail cleanly (an error, no tokenizer left); a loaded vocab must
 * encode the text without crashing, twice to the same ids (with and without
 * special-token parsing), decode every id, and survive a write/read round
 * trip that encodes the text to the same ids again. */
#define _POSIX_C_SOURCE 200809L /* mkstemp */
#include "lowbit/gguf.h"
#include "lowbit/tokenizer.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void encode(const lb_tokenizer *t, const char *text, size_t len, unsigned flags, int **ids, size_t *n,
                   lb_status *st) {
    *ids = NULL;
    *n = 0;
    *st = lb_tokenize_ex(t, text, len, flags, ids, n);
    if (*st != LB_OK && (*ids || *n)) abort();
}

static int same(const int *a, size_t na, const int *b, size_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
}

/* Reads the tokenizer back from what lb_tokenizer_write_gguf made of it. */
static lb_tokenizer *round_trip(const lb_tokenizer *t) {
    lb_gguf_writer *w = NULL;
    if (lb_gguf_writer_create(&w) != LB_OK) return NULL;
    lb_tokenizer *back = NULL;
    char path[] = "/tmp/lb_fuzz_tok_XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0 && lb_tokenizer_write_gguf(t, w) == LB_OK && lb_gguf_write(w, path) == LB_OK &&
        lb_tokenizer_load_gguf(path, &back) != LB_OK)
        abort(); /* what we wrote, we must read */
    lb_gguf_writer_free(w);
    if (fd >= 0) {
        remove(path);
        close(fd);
    }
    return back;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    size_t text_len = lb_rd16(data);
    if (text_len > size - 2) text_len = size - 2;
    const char *text = (const char *)data + 2;
    size_t file_size = size - 2 - text_len;
    uint8_t *copy = malloc(file_size ? file_size : 1); /* exact size: ASan sees over-reads */
    memcpy(copy, data + 2 + text_len, file_size);
    lb_gguf *g = NULL;
    lb_tokenizer *t = NULL;
    if (lb_gguf_parse(copy, file_size, &g) == LB_OK) {
        lb_status st = lb_tokenizer_from_gguf(g, &t);
        if (st != LB_OK && t) abort();
    }
    lb_gguf_free(g);
    free(copy); /* the tokenizer owns copies of everything it needs */
    if (t) {
        int *a, *b;
        size_t na, nb;
        lb_status sa, sb;
        for (unsigned flags = 0; flags < 8; flags += 4) {
            encode(t, text, text_len, flags | LB_TOKENIZE_BOS, &a, &na, &sa);
            encode(t, text, text_len, flags | LB_TOKENIZE_BOS, &b, &nb, &sb);
            if (sa != sb || !same(a, na, b, nb)) abort();
            for (size_t i = 0; i < na; i++)
                if (a[i] < 0 || a[i] >= lb_tokenizer_vocab_size(t)) abort();
            lb_free(b);
            char *back = NULL;
            size_t len;
            if (sa == LB_OK && lb_detokenize_all(t, a, na, &back, &len) != LB_OK) abort();
            lb_free(back);
            lb_free(a);
        }
        lb_tokenizer *t2 = round_trip(t);
        if (t2) {
            encode(t, text, text_len, 0, &a, &na, &sa);
            encode(t2, text, text_len, 0, &b, &nb, &sb);
            if (sa != sb || !same(a, na, b, nb)) abort();
            lb_free(a);
            lb_free(b);
        }
        lb_tokenizer_free(t2);
        lb_tokenizer_free(t);
    }
    return 0;
}
