/* Tokenizer: llama2.c's BPE over a scored vocabulary (run.c encode/decode).
 *
 * Encoding: optional BOS; before non-empty text a dummy-prefix space; each
 * UTF-8 character becomes the piece spelling it, or one "<0xXX>" byte piece
 * per byte; then, while some adjacent pair concatenates to a vocab piece,
 * merge the pair whose piece scores highest (leftmost on ties); optional EOS.
 *
 * llama2.c rescans the whole sequence for every merge (O(n^2)); that loop is
 * kept as lb_tokenize_reference for the tests. lb_tokenize gets the same
 * tokens in O(n log n): symbols in a doubly linked list, candidate pairs in a
 * max-heap keyed by (score desc, left position asc); a merge pushes the two
 * new pairs it creates and entries made stale by it are skipped when popped.
 *
 * Where we differ from run.c, on inputs run.c mishandles anyway:
 * - pieces have explicit lengths (run.c's strcmp stops at a NUL byte);
 * - duplicate pieces resolve to the lowest id (run.c's bsearch picks any);
 * - byte fallback uses the id of the "<0xXX>" piece (run.c assumes byte+3,
 *   the same for llama2.c files) and fails if the vocab has none;
 * - the dummy prefix is a space character like any other, so a vocab without
 *   a " " piece falls back to <0x20> (run.c would emit id -1);
 * - BOS is not a merge candidate (run.c tries "<s>"+piece, never a piece);
 * - invalid UTF-8 is rejected instead of tokenized byte by byte.
 * Kept from run.c: pairs scoring <= -1e10 never merge (its initial best). */
#include "model/tokenizer_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_VOCAB (1 << 24)
#define MAX_PIECE_BYTES (1 << 20)
#define MERGE_MIN_SCORE (-1e10f) /* run.c's initial best_score */
#define FNV_SEED 2166136261u

typedef int (*pair_lookup)(const lb_tokenizer *t, const char *a, size_t na, const char *b,
                           size_t nb);

static size_t piece_len(const lb_tokenizer *t, int id) {
    return t->offsets[id + 1] - t->offsets[id] - 1;
}

static const char *piece_text(const lb_tokenizer *t, int id) {
    return t->text + t->offsets[id];
}

static uint32_t fnv1a(uint32_t h, const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 16777619u;
    return h;
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* "<0xXX>" exactly (sentencepiece writes upper case; run.c's sscanf also
 * takes lower case) */
static int parse_byte_piece(const char *p, size_t n, uint8_t *byte) {
    if (n != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>') return 0;
    int hi = hex_digit(p[3]), lo = hex_digit(p[4]);
    if (hi < 0 || lo < 0) return 0;
    *byte = (uint8_t)(hi * 16 + lo);
    return 1;
}

/* ---- construction ---------------------------------------------------------- */

void lb_tokenizer_free(lb_tokenizer *t) {
    if (!t) return;
    lb_free(t->scores);
    lb_free(t->offsets);
    lb_free(t->text);
    lb_free(t->hashes);
    lb_free(t->slots);
    lb_free(t->sorted);
    lb_free(t->types);
    lb_free(t->merge_left);
    lb_free(t->merge_right);
    lb_free(t->merge_slots);
    lb_free(t->dec_offsets);
    lb_free(t->dec_text);
    lb_free(t->specials);
    lb_free(t);
}

static lb_status check_vocab_size(int vocab_size) {
    if (vocab_size < 3 || vocab_size > MAX_VOCAB)
        return lb_fail(LB_ERR_INVALID, "tokenizer: vocab_size %d is out of range 3..%d", vocab_size,
                       MAX_VOCAB);
    return LB_OK;
}

/* Allocates a tokenizer with room for vocab_size scores and offsets. */
static lb_status tokenizer_new(int vocab_size, lb_tokenizer **out) {
    lb_tokenizer *t = lb_calloc(1, sizeof *t);
    if (!t) return LB_ERR_NOMEM;
    t->vocab_size = vocab_size;
    t->unk_id = -1;
    t->scores = lb_calloc((size_t)vocab_size, sizeof *t->scores);
    t->offsets = lb_calloc((size_t)vocab_size + 1, sizeof *t->offsets);
    if (!t->scores || !t->offsets) {
        lb_tokenizer_free(t);
        return LB_ERR_NOMEM;
    }
    *out = t;
    return LB_OK;
}

static int compare_sorted(const void *pa, const void *pb) {
    const lb_sorted_piece *a = pa, *b = pb;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->text, b->text, n);
    if (c) return c;
    if (a->len != b->len) return a->len < b->len ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

/* With scores, offsets and text filled in: builds the hash table, the sorted
 * index and the byte-fallback table. */
static lb_status tokenizer_index(lb_tokenizer *t) {
    int V = t->vocab_size;
    uint32_t n_slots = 1;
    while (n_slots < 2u * (uint32_t)V) n_slots <<= 1; /* load factor <= 1/2 */
    t->slot_mask = n_slots - 1;
    t->hashes = lb_alloc((size_t)V * sizeof *t->hashes);
    t->slots = lb_alloc((size_t)n_slots * sizeof *t->slots);
    t->sorted = lb_alloc((size_t)V * sizeof *t->sorted);
    if (!t->hashes || !t->slots || !t->sorted) return LB_ERR_NOMEM;
    memset(t->slots, 0xff, (size_t)n_slots * sizeof *t->slots);
    for (int b = 0; b < 256; b++) {
        t->byte_id[b] = -1;
        t->byte_text[2 * b] = (char)b;
        t->byte_text[2 * b + 1] = '\0';
    }
    t->max_piece_len = 0;
    for (int id = 0; id < V; id++) {
        const char *p = piece_text(t, id);
        size_t n = piece_len(t, id);
        if (n > t->max_piece_len) t->max_piece_len = n;
        uint32_t h = fnv1a(FNV_SEED, p, n);
        t->hashes[id] = h;
        t->sorted[id] = (lb_sorted_piece){p, n, id};
        /* ids arrive in increasing order: the first copy of a piece wins,
         * or the last one for GGUF vocabularies (llama.cpp's text->id map) */
        uint32_t s = h & t->slot_mask;
        for (;; s = (s + 1) & t->slot_mask) {
            int32_t o = t->slots[s];
            if (o < 0) {
                t->slots[s] = id;
                break;
            }
            if (t->hashes[o] == h && piece_len(t, o) == n && memcmp(piece_text(t, o), p, n) == 0) {
                if (t->last_wins) t->slots[s] = id;
                break;
            }
        }
        uint8_t byte;
        if (parse_byte_piece(p, n, &byte) && t->byte_id[byte] < 0) t->byte_id[byte] = id;
    }
    qsort(t->sorted, (size_t)V, sizeof *t->sorted, compare_sorted);
    return LB_OK;
}

lb_status lb_tokenizer_from_memory(const uint8_t *data, size_t size, int vocab_size,
                                   lb_tokenizer **out) {
    if (!out) return lb_fail(LB_ERR_INVALID, "tokenizer: NULL output pointer");
    *out = NULL;
    if (!data && size) return lb_fail(LB_ERR_INVALID, "tokenizer: NULL data");
    lb_status st = check_vocab_size(vocab_size);
    if (st) return st;
    if (size < 4)
        return lb_fail(LB_ERR_FORMAT,
                       "tokenizer file is %zu bytes, too short for its int32 max_token_length",
                       size);
    int32_t max_len = (int32_t)lb_rd32(data);
    if (max_len < 1 || max_len > MAX_PIECE_BYTES)
        return lb_fail(LB_ERR_FORMAT,
                       "tokenizer: max_token_length %d at byte offset 0 is out of range 1..%d",
                       (int)max_len, MAX_PIECE_BYTES);
    lb_tokenizer *t;
    if ((st = tokenizer_new(vocab_size, &t))) return st;
    /* pass 1: check every record, fill scores and piece offsets */
    size_t off = 4, text_bytes = 0;
    for (int i = 0; i < vocab_size; i++) {
        if (size - off < 8) {
            lb_tokenizer_free(t);
            return lb_fail(LB_ERR_FORMAT,
                           "tokenizer truncated: token %d of %d at byte offset %zu needs 8 bytes "
                           "(score, length), %zu remain",
                           i, vocab_size, off, size - off);
        }
        uint32_t bits = lb_rd32(data + off);
        float score;
        memcpy(&score, &bits, sizeof score);
        int32_t n = (int32_t)lb_rd32(data + off + 4);
        const char *bad = NULL;
        if (!isfinite(score))
            bad = "score is not finite";
        else if (n < 0)
            bad = "length is negative";
        else if (n > max_len)
            bad = "length exceeds max_token_length";
        else if ((size_t)n > size - off - 8)
            bad = "length runs past the end of the file (truncated)";
        if (bad) {
            lb_tokenizer_free(t);
            return lb_fail(LB_ERR_FORMAT,
                           "tokenizer: token %d at byte offset %zu: %s (score %g, length %d, "
                           "max_token_length %d, file %zu bytes)",
                           i, off, bad, (double)score, (int)n, (int)max_len, size);
        }
        t->scores[i] = score;
        t->offsets[i] = text_bytes;
        text_bytes += (size_t)n + 1;
        off += 8 + (size_t)n;
    }
    t->offsets[vocab_size] = text_bytes;
    /* pass 2: copy the pieces */
    t->text = lb_alloc(text_bytes);
    if (!t->text) {
        lb_tokenizer_free(t);
        return LB_ERR_NOMEM;
    }
    off = 4;
    for (int i = 0; i < vocab_size; i++) {
        size_t n = piece_len(t, i);
        memcpy(t->text + t->offsets[i], data + off + 8, n);
        t->text[t->offsets[i] + n] = '\0';
        off += 8 + n;
    }
    t->bos_id = 1; /* llama2.c's convention: <unk>, <s>, </s> come first */
    t->eos_id = 2;
    if ((st = tokenizer_index(t))) {
        lb_tokenizer_free(t);
        return st;
    }
    *out = t;
    return LB_OK;
}

lb_status lb_tokenizer_load(const char *path, int vocab_size, lb_tokenizer **out) {
    if (!out || !path) return lb_fail(LB_ERR_INVALID, "tokenizer: NULL path or output pointer");
    *out = NULL;
    lb_mapped_file f;
    lb_status st = lb_map_file(path, &f);
    if (st == LB_OK) {
        st = lb_tokenizer_from_memory(f.data, f.size, vocab_size, out);
        lb_unmap_file(&f);
    }
    if (st) return lb_fail_context(st, "loading tokenizer '%s'", path);
    return LB_OK;
}

lb_status lb_tokenizer_from_vocab(int vocab_size, const char *const *pieces, const size_t *lens,
                                  const float *scores, int bos_id, int eos_id, lb_tokenizer **out) {
    return lb_tokenizer_build(vocab_size, pieces, lens, scores, bos_id, eos_id, 0, out);
}

lb_status lb_tokenizer_build(int vocab_size, const char *const *pieces, const size_t *lens, const float *scores,
                             int bos_id, int eos_id, int last_wins, lb_tokenizer **out) {
    if (!out) return lb_fail(LB_ERR_INVALID, "tokenizer: NULL output pointer");
    *out = NULL;
    lb_status st = check_vocab_size(vocab_size);
    if (st) return st;
    if (!pieces || !scores) return lb_fail(LB_ERR_INVALID, "tokenizer: NULL pieces or scores");
    if (bos_id < -1 || bos_id >= vocab_size || eos_id < -1 || eos_id >= vocab_size)
        return lb_fail(LB_ERR_INVALID, "tokenizer: bos %d / eos %d outside -1..%d", bos_id, eos_id,
                       vocab_size - 1);
    size_t text_bytes = 0;
    for (int i = 0; i < vocab_size; i++) {
        if (!pieces[i]) return lb_fail(LB_ERR_INVALID, "tokenizer: piece %d is NULL", i);
        size_t n = lens ? lens[i] : strlen(pieces[i]);
        if (n > MAX_PIECE_BYTES)
            return lb_fail(LB_ERR_INVALID, "tokenizer: piece %d is %zu bytes, more than %d", i, n,
                           MAX_PIECE_BYTES);
        if (!isfinite(scores[i]))
            return lb_fail(LB_ERR_NUMERIC, "tokenizer: piece %d has a non-finite score", i);
        if (text_bytes > SIZE_MAX - n - 1) /* only reachable with a 32-bit size_t */
            return lb_fail(LB_ERR_INVALID, "tokenizer: pieces total more than SIZE_MAX bytes");
        text_bytes += n + 1;
    }
    lb_tokenizer *t;
    if ((st = tokenizer_new(vocab_size, &t))) return st;
    t->text = lb_alloc(text_bytes);
    if (!t->text) {
        lb_tokenizer_free(t);
        return LB_ERR_NOMEM;
    }
    size_t off = 0;
    for (int i = 0; i < vocab_size; i++) {
        size_t n = lens ? lens[i] : strlen(pieces[i]);
        memcpy(t->text + off, pieces[i], n);
        t->text[off + n] = '\0';
        t->offsets[i] = off;
        t->scores[i] = scores[i];
        off += n + 1;
    }
    t->offsets[vocab_size] = off;
    t->bos_id = bos_id;
    t->eos_id = eos_id;
    t->last_wins = last_wins;
    if ((st = tokenizer_index(t))) {
        lb_tokenizer_free(t);
        return st;
    }
    *out = t;
    return LB_OK;
}

/* Appends unused "[PAD..]" tokens up to vocab_size, as llama.cpp's converter
 * does when config.json's vocab_size (the embedding's rows) is larger than
 * the tokenizer: byte-level BPE names them by id ("[PAD<id>]"),
 * SentencePiece-style vocabularies count them from 1 with score -1000.
 * Their type is UNUSED, so they never print and are never special. */
lb_status lb_tokenizer_pad(lb_tokenizer *t, int vocab_size) {
    int V = t->vocab_size;
    if (vocab_size <= V) return LB_OK;
    lb_status st = check_vocab_size(vocab_size);
    if (st) return st;
    size_t text_bytes = t->offsets[V];
    for (int i = V; i < vocab_size; i++) text_bytes += 16 + 1; /* "[PAD" + <= 8 digits + "]" */
    float *scores = lb_alloc((size_t)vocab_size * sizeof *scores);
    size_t *offsets = lb_alloc(((size_t)vocab_size + 1) * sizeof *offsets);
    char *text = lb_alloc(text_bytes);
    int32_t *types = t->types ? lb_alloc((size_t)vocab_size * sizeof *types) : NULL;
    if (!scores || !offsets || !text || (t->types && !types)) {
        lb_free(scores), lb_free(offsets), lb_free(text), lb_free(types);
        return LB_ERR_NOMEM;
    }
    memcpy(scores, t->scores, (size_t)V * sizeof *scores);
    memcpy(offsets, t->offsets, ((size_t)V + 1) * sizeof *offsets);
    memcpy(text, t->text, t->offsets[V]);
    if (types) memcpy(types, t->types, (size_t)V * sizeof *types);
    lb_free(t->scores), lb_free(t->offsets), lb_free(t->text), lb_free(t->types);
    t->scores = scores, t->offsets = offsets, t->text = text, t->types = types;
    size_t off = t->offsets[V];
    for (int i = V; i < vocab_size; i++) {
        int n = snprintf(t->text + off, 17, "[PAD%d]", t->kind == LB_TOK_BPE ? i : i - V + 1);
        t->offsets[i] = off;
        t->scores[i] = t->kind == LB_TOK_BPE ? 0.0f : -1000.0f;
        if (t->types) t->types[i] = LB_TOKEN_UNUSED;
        off += (size_t)n + 1;
    }
    t->offsets[vocab_size] = off;
    t->vocab_size = vocab_size;
    /* the index and the decode tables are rebuilt over the longer list */
    lb_free(t->hashes), lb_free(t->slots), lb_free(t->sorted);
    t->hashes = NULL, t->slots = NULL, t->sorted = NULL;
    if ((st = tokenizer_index(t)) != LB_OK) return st;
    if (!t->types) return LB_OK;
    lb_free(t->dec_offsets), lb_free(t->dec_text), lb_free(t->specials);
    t->dec_offsets = NULL, t->dec_text = NULL, t->specials = NULL;
    return lb_tokenizer_prepare(t);
}

/* ---- accessors ---------------------------------------------------------------- */

int lb_tokenizer_vocab_size(const lb_tokenizer *t) { return t ? t->vocab_size : 0; }
int lb_tokenizer_bos(const lb_tokenizer *t) { return t ? t->bos_id : -1; }
int lb_tokenizer_eos(const lb_tokenizer *t) { return t ? t->eos_id : -1; }
int lb_tokenizer_add_bos(const lb_tokenizer *t) { return t ? t->add_bos : 0; }

const char *lb_tokenizer_kind(const lb_tokenizer *t) {
    if (!t) return "";
    return t->kind == LB_TOK_SPM ? "llama" : t->kind == LB_TOK_BPE ? "gpt2" : "llama2c";
}

const char *lb_tokenizer_pre(const lb_tokenizer *t) {
    return t && t->kind == LB_TOK_BPE ? lb_pretok_name(t->pre) : "";
}

lb_status lb_detokenize_all(const lb_tokenizer *t, const int *ids, size_t n, char **text, size_t *len) {
    if (!text || !len || !t || (!ids && n)) return lb_fail(LB_ERR_INVALID, "detokenize: NULL argument");
    *text = NULL;
    *len = 0;
    size_t total = 0, pn;
    for (size_t i = 0; i < n; i++) {
        lb_detokenize(t, i ? ids[i - 1] : -1, ids[i], &pn);
        total += pn;
    }
    char *out = lb_alloc(total + 1);
    if (!out) return LB_ERR_NOMEM;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p = lb_detokenize(t, i ? ids[i - 1] : -1, ids[i], &pn);
        memcpy(out + o, p, pn);
        o += pn;
    }
    out[o] = 0;
    *text = out;
    *len = o;
    return LB_OK;
}

const char *lb_tokenizer_piece(const lb_tokenizer *t, int id, size_t *len) {
    if (!t || id < 0 || id >= t->vocab_size) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = piece_len(t, id);
    return piece_text(t, id);
}

float lb_tokenizer_score(const lb_tokenizer *t, int id) {
    return (t && id >= 0 && id < t->vocab_size) ? t->scores[id] : NAN;
}

int lb_tokenizer_byte_piece(const lb_tokenizer *t, int id, uint8_t *byte) {
    if (!t || id < 0 || id >= t->vocab_size) return 0;
    uint8_t b;
    if (!parse_byte_piece(piece_text(t, id), piece_len(t, id), &b)) return 0;
    if (byte) *byte = b;
    return 1;
}

const char *lb_detokenize(const lb_tokenizer *t, int prev, int token, size_t *len) {
    size_t n_dummy;
    if (!len) len = &n_dummy;
    if (!t || token < 0 || token >= t->vocab_size) {
        *len = 0;
        return "";
    }
    if (t->dec_text) { /* GGUF vocabularies: decoded once at load */
        const char *p = t->dec_text + t->dec_offsets[token];
        size_t n = t->dec_offsets[token + 1] - t->dec_offsets[token] - 1;
        /* llama.cpp drops the space SPM put before the text (prev -1: the start) */
        if (t->kind == LB_TOK_SPM && t->add_space_prefix && (prev < 0 || prev == t->bos_id) && n > 0 &&
            p[0] == ' ') {
            p++;
            n--;
        }
        *len = n;
        return p;
    }
    const char *p = piece_text(t, token);
    size_t n = piece_len(t, token);
    /* sentencepiece drops the dummy-prefix space after BOS (llama2.c PR #89) */
    if (prev == t->bos_id && t->bos_id >= 0 && n > 0 && p[0] == ' ') {
        p++;
        n--;
    }
    uint8_t b;
    if (parse_byte_piece(p, n, &b)) {
        *len = 1;
        return t->byte_text + 2 * b;
    }
    *len = n;
    return p;
}

/* ---- UTF-8 ------------------------------------------------------------------- */

/* Length of the well-formed sequence at s[0..n) (Unicode table 3-7), or 0. */
static size_t utf8_char_len(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF)
        need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) lo = 0xA0; /* overlong */
        if (c == 0xED) hi = 0x9F; /* surrogates D800..DFFF */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) lo = 0x90; /* overlong */
        if (c == 0xF4) hi = 0x8F; /* past U+10FFFF */
    } else
        return 0; /* stray continuation, C0/C1 overlong lead, or F5..FF */
    if (n < need || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < need; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return need;
}

int lb_utf8_valid(const char *text, size_t len, size_t *bad_offset) {
    const uint8_t *s = (const uint8_t *)text;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_char_len(s + i, len - i);
        if (!n) {
            if (bad_offset) *bad_offset = i; /* the first byte of the bad sequence */
            return 0;
        }
        i += n;
    }
    return 1;
}

/* ---- encoding ---------------------------------------------------------------- */

/* hash-table lookup of the concatenation a+b; lowest id or -1 */
static int lookup_hashed(const lb_tokenizer *t, const char *a, size_t na, const char *b,
                         size_t nb) {
    size_t n = na + nb;
    if (n > t->max_piece_len) return -1;
    uint32_t h = fnv1a(fnv1a(FNV_SEED, a, na), b, nb);
    for (uint32_t s = h & t->slot_mask;; s = (s + 1) & t->slot_mask) {
        int32_t id = t->slots[s];
        if (id < 0) return -1;
        const char *p = piece_text(t, id);
        if (t->hashes[id] == h && piece_len(t, id) == n && memcmp(p, a, na) == 0 &&
            memcmp(p + na, b, nb) == 0)
            return id;
    }
}

int lb_tokenizer_find(const lb_tokenizer *t, const char *a, size_t na, const char *b, size_t nb) {
    return lookup_hashed(t, a, na, b, nb);
}

/* Orders piece e against the key a+b the way compare_sorted orders pieces. */
static int compare_concat(const lb_sorted_piece *e, const char *a, size_t na, const char *b,
                          size_t nb) {
    size_t m = e->len < na ? e->len : na;
    int c = memcmp(e->text, a, m);
    if (c || e->len < na) return c ? c : -1;
    size_t rest = e->len - na;
    m = rest < nb ? rest : nb;
    c = memcmp(e->text + na, b, m);
    return c ? c : (rest > nb) - (rest < nb);
}

/* binary-search lookup of a+b (as run.c's str_lookup); lowest id or -1 */
static int lookup_sorted(const lb_tokenizer *t, const char *a, size_t na, const char *b,
                         size_t nb) {
    size_t lo = 0, hi = (size_t)t->vocab_size; /* first entry >= key: copies sort by id */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (compare_concat(&t->sorted[mid], a, na, b, nb) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < (size_t)t->vocab_size && compare_concat(&t->sorted[lo], a, na, b, nb) == 0)
        return t->sorted[lo].id;
    return -1;
}

/* The piece id that pair (left, right) merges into, or -1. */
static int merge_id(const lb_tokenizer *t, pair_lookup find, int left, int right) {
    int id = find(t, piece_text(t, left), piece_len(t, left), piece_text(t, right),
                  piece_len(t, right));
    return (id >= 0 && t->scores[id] > MERGE_MIN_SCORE) ? id : -1;
}

/* Checks arguments and text, allocates *tokens (room for every case) and
 * writes the initial symbols after an optional BOS: the dummy-prefix space
 * then each character of text, as its piece or as byte pieces. */
static lb_status encode_start(const lb_tokenizer *t, const char *text, size_t len, int add_bos,
                              int add_eos, pair_lookup find, int **tokens, size_t *n_tokens,
                              int **buf, size_t *n_head) {
    if (!tokens || !n_tokens) return lb_fail(LB_ERR_INVALID, "tokenize: NULL output pointer");
    *tokens = NULL;
    *n_tokens = 0;
    if (!t || (!text && len)) return lb_fail(LB_ERR_INVALID, "tokenize: NULL tokenizer or text");
    size_t bad;
    if (!lb_utf8_valid(text, len, &bad))
        return lb_fail(LB_ERR_INVALID, "tokenize: invalid UTF-8 at byte offset %zu (byte 0x%02X)",
                       bad, (unsigned)(uint8_t)text[bad]);
    if ((add_bos && t->bos_id < 0) || (add_eos && t->eos_id < 0))
        return lb_fail(LB_ERR_INVALID, "tokenize: BOS/EOS requested but the vocab has none");
    if (len > SIZE_MAX / sizeof(int) - 4)
        return lb_fail(LB_ERR_INVALID, "tokenize: text of %zu bytes is too long", len);
    int *out = lb_alloc((len + 4) * sizeof(int)); /* BOS, dummy prefix, bytes, EOS */
    if (!out) return LB_ERR_NOMEM;
    size_t n = 0;
    if (add_bos) out[n++] = t->bos_id;
    for (size_t i = 0; len > 0 && i <= len;) {
        /* i == 0 is the dummy prefix; text byte k is at step k + 1 */
        const char *c = i == 0 ? " " : text + i - 1;
        size_t cn = i == 0 ? 1 : utf8_char_len((const uint8_t *)c, len - (i - 1));
        int id = find(t, c, cn, "", 0);
        if (id >= 0) {
            out[n++] = id;
        } else {
            for (size_t k = 0; k < cn; k++) {
                uint8_t byte = (uint8_t)c[k];
                if (t->byte_id[byte] < 0) {
                    lb_free(out);
                    if (i == 0)
                        return lb_fail(LB_ERR_INVALID,
                                       "tokenize: the vocab has neither a \" \" piece for the "
                                       "dummy prefix nor a <0x20> byte piece");
                    return lb_fail(LB_ERR_INVALID,
                                   "tokenize: the character at byte offset %zu is not in the vocab "
                                   "and there is no byte-fallback piece <0x%02X>",
                                   i - 1, (unsigned)byte);
                }
                out[n++] = t->byte_id[byte];
            }
        }
        i += cn;
    }
    *buf = out;
    *n_head = n;
    return LB_OK;
}

static lb_status encode_finish(const lb_tokenizer *t, int add_eos, int *out, size_t n,
                               int **tokens, size_t *n_tokens) {
    if (add_eos) out[n++] = t->eos_id;
    *tokens = out;
    *n_tokens = n;
    return LB_OK;
}

static unsigned bos_eos_flags(int add_bos, int add_eos) {
    return (add_bos ? LB_TOKENIZE_BOS : 0u) | (add_eos ? LB_TOKENIZE_EOS : 0u);
}

lb_status lb_tokenize_reference(const lb_tokenizer *t, const char *text, size_t len, int add_bos,
                                int add_eos, int **tokens, size_t *n_tokens) {
    if (t && t->kind != LB_TOK_LLAMA2C) /* the O(n^2) reference is llama2.c's loop only */
        return lb_tokenize_gguf(t, text, len, bos_eos_flags(add_bos, add_eos), tokens, n_tokens);
    int *out = NULL;
    size_t n = 0;
    lb_status st =
        encode_start(t, text, len, add_bos, add_eos, lookup_sorted, tokens, n_tokens, &out, &n);
    if (st) return st;
    size_t first = add_bos ? 1 : 0;
    /* run.c's loop: find the best pair anywhere, merge it, shift the tail */
    for (;;) {
        float best_score = MERGE_MIN_SCORE;
        int best_id = -1;
        size_t best_i = 0;
        for (size_t i = first; i + 1 < n; i++) {
            int id = merge_id(t, lookup_sorted, out[i], out[i + 1]);
            if (id >= 0 && t->scores[id] > best_score) {
                best_score = t->scores[id];
                best_id = id;
                best_i = i;
            }
        }
        if (best_id < 0) break;
        out[best_i] = best_id;
        memmove(out + best_i + 1, out + best_i + 2, (n - best_i - 2) * sizeof *out);
        n--;
    }
    return encode_finish(t, add_eos, out, n, tokens, n_tokens);
}

typedef struct {
    int id;         /* current piece, -1 once merged into its left neighbour */
    int prev, next; /* neighbours in the list, -1 at the ends */
} symbol;

typedef struct {
    float score;    /* of the merged piece */
    int left;       /* symbol index of the left side: its position in the text */
    int left_id, right_id, merged_id;
} merge_cand;

/* heap order: higher score first, then leftmost (run.c's strict '>' scan) */
static int cand_before(const merge_cand *a, const merge_cand *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_push(merge_cand *heap, size_t *n, merge_cand c) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!cand_before(&c, &heap[parent])) break;
        heap[i] = heap[parent];
        i = parent;
    }
    heap[i] = c;
}

static merge_cand heap_pop(merge_cand *heap, size_t *n) {
    merge_cand top = heap[0], last = heap[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && cand_before(&heap[c + 1], &heap[c])) c++;
        if (!cand_before(&heap[c], &last)) break;
        heap[i] = heap[c];
        i = c;
    }
    if (*n) heap[i] = last;
    return top;
}

static void push_pair(const lb_tokenizer *t, const symbol *sym, int left, merge_cand *heap,
                      size_t *n_heap) {
    int right = sym[left].next;
    if (right < 0) return;
    int id = merge_id(t, lookup_hashed, sym[left].id, sym[right].id);
    if (id < 0) return;
    heap_push(heap, n_heap,
              (merge_cand){t->scores[id], left, sym[left].id, sym[right].id, id});
}

lb_status lb_tokenize_ex(const lb_tokenizer *t, const char *text, size_t len, unsigned flags, int **tokens,
                         size_t *n_tokens) {
    if (t && t->kind != LB_TOK_LLAMA2C) return lb_tokenize_gguf(t, text, len, flags, tokens, n_tokens);
    /* llama2.c vocabularies know no special tokens inside text */
    return lb_tokenize(t, text, len, (flags & LB_TOKENIZE_BOS) != 0, (flags & LB_TOKENIZE_EOS) != 0, tokens,
                       n_tokens);
}

lb_status lb_tokenize(const lb_tokenizer *t, const char *text, size_t len, int add_bos,
                      int add_eos, int **tokens, size_t *n_tokens) {
    if (t && t->kind != LB_TOK_LLAMA2C)
        return lb_tokenize_gguf(t, text, len, bos_eos_flags(add_bos, add_eos), tokens, n_tokens);
    int *out = NULL;
    size_t n = 0;
    lb_status st =
        encode_start(t, text, len, add_bos, add_eos, lookup_hashed, tokens, n_tokens, &out, &n);
    if (st) return st;
    size_t first = add_bos ? 1 : 0, n_sym = n - first;
    if (n_sym < 2) return encode_finish(t, add_eos, out, n, tokens, n_tokens);
    if (n_sym > INT32_MAX / 4) {
        lb_free(out);
        return lb_fail(LB_ERR_INVALID, "tokenize: text of %zu bytes is too long", len);
    }
    /* at most n_sym - 1 initial pairs plus 2 per merge, and n_sym - 1 merges */
    symbol *sym = lb_alloc(n_sym * sizeof *sym);
    merge_cand *heap = lb_alloc(3 * n_sym * sizeof *heap);
    if (!sym || !heap) {
        lb_free(sym);
        lb_free(heap);
        lb_free(out);
        return LB_ERR_NOMEM;
    }
    for (size_t i = 0; i < n_sym; i++)
        sym[i] = (symbol){out[first + i], (int)i - 1, i + 1 < n_sym ? (int)i + 1 : -1};
    size_t n_heap = 0;
    for (size_t i = 0; i + 1 < n_sym; i++) push_pair(t, sym, (int)i, heap, &n_heap);
    while (n_heap) {
        merge_cand c = heap_pop(heap, &n_heap);
        /* Stale if either side changed since the push: a merge gives the left
         * symbol a longer piece (a new id) and kills the right one (id -1),
         * and a symbol's next only changes when it merges. */
        int left = c.left, right = sym[left].next;
        if (sym[left].id != c.left_id || right < 0 || sym[right].id != c.right_id) continue;
        sym[left].id = c.merged_id;
        sym[left].next = sym[right].next;
        if (sym[right].next >= 0) sym[sym[right].next].prev = left;
        sym[right].id = -1;
        if (sym[left].prev >= 0) push_pair(t, sym, sym[left].prev, heap, &n_heap);
        push_pair(t, sym, left, heap, &n_heap);
    }
    n = first;
    for (int i = 0; i >= 0; i = sym[i].next) out[n++] = sym[i].id; /* symbol 0 never dies */
    lb_free(sym);
    lb_free(heap);
    return encode_finish(t, add_eos, out, n, tokens, n_tokens);
}
