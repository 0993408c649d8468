/* libFuzzer target for the tokenizer. The first input byte picks a mode:
 *  even: the input is [mode][vocab selector][text length, u16 LE][llama2.c
 *        tokenizer file...][text]; the file must load or fail cleanly, and a
 *        loaded vocab must give the same tokens (or the same error) on both
 *        encode paths;
 *  odd:  the rest is text for a small built-in vocab in the llama2.c format
 *        (control tokens, all 256 byte pieces, letters, merges with tied
 *        scores): both paths agree, and valid UTF-8 decodes back to itself. */
#include "lowbit/tokenizer.h"

#include <stdlib.h>
#include <string.h>

#define REFERENCE_MAX_BYTES 1024 /* the O(n^2) reference gets slow past this */

static lb_tokenizer *builtin;

static void put_piece(uint8_t **p, const char *s, size_t n, float score) {
    uint32_t bits;
    memcpy(&bits, &score, sizeof bits);
    lb_wr32(*p, bits);
    lb_wr32(*p + 4, (uint32_t)n);
    memcpy(*p + 8, s, n);
    *p += 8 + n;
}

/* The built-in vocab, written as a llama2.c file so the loader runs too. */
static lb_tokenizer *make_builtin(void) {
    static const char *words[] = {
        " ",   "a",   "b",   "c",    "e",    "h",    "t",   "n",   "o",    "s",    "T",
        ".",   ",",   "\xc3\xa9",    " t",   "he",   " a",  "an",  "aa",   "ab",   "ba",
        "aaa", "bab", " the", "the", "on",  "ce",   " on",  "hea", "ab ", "\n\n", "at",
        " c",  " ca", " cat", "tt",  "ttt", "ee",   "e\xc3\xa9", " T", " The", "st", "es", "se"};
    enum { N_WORDS = sizeof words / sizeof words[0] };
    size_t cap = 4 + (3 + 256 + N_WORDS) * (8 + 16);
    uint8_t *file = malloc(cap), *p = file + 4;
    lb_wr32(file, 16);
    put_piece(&p, "<unk>", 5, 0.0f);
    put_piece(&p, "\n<s>\n", 5, 0.0f);
    put_piece(&p, "\n</s>\n", 6, 0.0f);
    for (int b = 0; b < 256; b++) {
        char s[8];
        static const char hex[] = "0123456789ABCDEF";
        memcpy(s, "<0x", 3);
        s[3] = hex[b >> 4];
        s[4] = hex[b & 15];
        s[5] = '>';
        put_piece(&p, s, 6, 0.0f);
    }
    for (int i = 0; i < N_WORDS; i++) /* scores repeat every 4: many ties */
        put_piece(&p, words[i], strlen(words[i]), -(float)(i % 4));
    lb_tokenizer *t = NULL;
    if (lb_tokenizer_from_memory(file, (size_t)(p - file), 3 + 256 + N_WORDS, &t) != LB_OK) abort();
    free(file);
    return t;
}

static void check_encodings(const lb_tokenizer *t, const char *text, size_t len, int round_trip) {
    int *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    lb_status sa = lb_tokenize(t, text, len, 1, 1, &a, &na);
    int valid = lb_utf8_valid(text, len, NULL);
    /* invalid UTF-8 is always refused; the built-in vocab encodes all else */
    if (sa == LB_OK && !valid) abort();
    if (round_trip && valid && sa != LB_OK) abort();
    if (len <= REFERENCE_MAX_BYTES) {
        lb_status sb = lb_tokenize_reference(t, text, len, 1, 1, &b, &nb);
        if (sa != sb || na != nb || (na && memcmp(a, b, na * sizeof *a) != 0)) abort();
    }
    if (sa == LB_OK) {
        /* every token decodes to something; with a byte-complete vocab the
         * concatenation is the text again */
        char *back = malloc(len + 1);
        size_t used = 0;
        for (size_t i = 1; i + 1 < na; i++) {
            size_t n;
            const char *piece = lb_detokenize(t, a[i - 1], a[i], &n);
            if (!piece || n > 16 * 1024 * 1024) abort();
            if (round_trip) {
                if (used + n > len) abort();
                memcpy(back + used, piece, n);
                used += n;
            }
        }
        if (round_trip && (used != len || (len && memcmp(back, text, len) != 0))) abort();
        free(back);
    }
    lb_free(a);
    lb_free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    if (data[0] & 1) {
        if (!builtin) builtin = make_builtin();
        check_encodings(builtin, (const char *)data + 1, size - 1, 1);
        return 0;
    }
    if (size < 4) return 0;
    int vocab_size = 3 + data[1] % 61;
    size_t text_len = lb_rd16(data + 2);
    if (text_len > size - 4) text_len = size - 4;
    const uint8_t *file = data + 4;
    size_t file_size = size - 4 - text_len;
    /* an exact-size copy, so ASan catches any read past the file */
    uint8_t *copy = malloc(file_size ? file_size : 1);
    memcpy(copy, file, file_size);
    lb_tokenizer *t = NULL;
    lb_status st = lb_tokenizer_from_memory(copy, file_size, vocab_size, &t);
    if (st != LB_OK && (t != NULL || st != LB_ERR_FORMAT)) abort();
    if (t) {
        for (int id = -1; id <= vocab_size; id++) {
            size_t n;
            uint8_t byte;
            (void)lb_tokenizer_piece(t, id, &n);
            (void)lb_tokenizer_byte_piece(t, id, &byte);
            (void)lb_detokenize(t, 1, id, &n);
        }
        check_encodings(t, (const char *)data + size - text_len, text_len, 0);
        lb_tokenizer_free(t);
    }
    free(copy);
    return 0;
}
