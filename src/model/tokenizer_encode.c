/* Encoding and decoding for GGUF vocabularies, as llama.cpp's llama_tokenize
 * does (src/llama-vocab.cpp, read to understand, not copied):
 *
 * 1. Special tokens are cut out of the text first, longest text first:
 *    user-defined tokens always, control and unknown ones only when asked
 *    (LB_TOKENIZE_SPECIAL, llama.cpp's parse_special; its tokenizer test runs
 *    without, so "<s>" in text is plain text there).
 * 2. SPM ("llama"): each text fragment gets a leading space when it starts
 *    the input or follows a special token (if add_space_prefix), spaces
 *    become U+2581, the fragment splits into UTF-8 characters, and adjacent
 *    symbols whose concatenation is a token merge, highest token score first
 *    (leftmost on ties), until none can. A symbol that is no token (only an
 *    unmerged character) becomes its bytes' <0xXX> tokens.
 * 3. BPE ("gpt2"): each fragment is cut into words by the pre-tokenizer
 *    (pretokenize.c), each byte of a word becomes GPT-2's printable stand-in
 *    character, and adjacent symbols merge by the lowest rank in
 *    tokenizer.ggml.merges (leftmost on ties). With ignore_merges (llama3) a
 *    word that is itself a token is taken whole.
 *
 * Both merge loops keep symbols in a linked list and candidate pairs in a
 * heap; a popped pair is stale when either side has changed length since it
 * was pushed (a symbol only grows by absorbing its right neighbour).
 *
 * Where we differ from llama.cpp: a symbol left with no token and no byte
 * token is an error (llama.cpp emits nothing for it in BPE, aborts in SPM);
 * text that is not valid UTF-8 is rejected. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer_internal.h"

#define SPM_SPACE "\xe2\x96\x81"

typedef struct {
    size_t start, len; /* bytes of the working text; len 0 once merged away */
    int id;            /* token of the text, -1 if none */
    int prev, next;
} symbol;

typedef struct {
    double key;   /* higher merges first: SPM score, BPE -rank */
    int left, right;
    size_t size;  /* left.len + right.len when pushed */
    int merged;   /* token id of the concatenation (-1: BPE merge to a non-token) */
} cand;

static int cand_before(const cand *a, const cand *b) {
    return a->key > b->key || (a->key == b->key && a->left < b->left);
}

static void heap_push(cand *h, size_t *n, cand c) {
    size_t i = (*n)++;
    while (i > 0 && cand_before(&c, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = c;
}

static cand heap_pop(cand *h, size_t *n) {
    cand top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && cand_before(&h[c + 1], &h[c])) c++;
        if (!cand_before(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

typedef struct {
    int *ids;
    size_t n, cap;
} id_list;

/* capacity is fixed up front (3 per text byte: see lb_tokenize_gguf) */
static lb_status push_id(id_list *o, int id) {
    if (o->n == o->cap) return lb_fail(LB_ERR_INVALID, "tokenize: more tokens than the bound (internal error)");
    o->ids[o->n++] = id;
    return LB_OK;
}

static void try_pair(const lb_tokenizer *t, const char *text, const symbol *s, int left, cand *heap, size_t *n_heap) {
    int right = left >= 0 ? s[left].next : -1;
    if (right < 0) return;
    cand c = {0, left, right, s[left].len + s[right].len, -1};
    if (t->kind == LB_TOK_SPM) {
        c.merged = lb_tokenizer_find(t, text + s[left].start, c.size, "", 0);
        if (c.merged < 0) return;
        c.key = t->scores[c.merged];
    } else {
        int32_t rank = lb_tokenizer_merge_rank(t, s[left].id, s[right].id);
        if (rank < 0) return;
        c.key = -(double)rank;
        c.merged = lb_tokenizer_find(t, text + s[left].start, c.size, "", 0);
    }
    heap_push(heap, n_heap, c);
}

/* Merges the symbols of text[0..len) (split at UTF-8 characters) and appends
 * the resulting tokens. */
static lb_status merge_and_emit(const lb_tokenizer *t, const char *text, size_t len, id_list *out) {
    if (len == 0) return LB_OK;
    symbol *s = lb_alloc(len * sizeof *s);
    cand *heap = lb_alloc(3 * len * sizeof *heap);
    lb_status st = LB_OK;
    if (!s || !heap) {
        st = LB_ERR_NOMEM;
        goto done;
    }
    int n = 0;
    for (size_t i = 0; i < len; n++) {
        size_t k = lb_utf8_lead_len((uint8_t)text[i]);
        if (k > len - i) k = len - i;
        s[n] = (symbol){i, k, lb_tokenizer_find(t, text + i, k, "", 0), n - 1, i + k < len ? n + 1 : -1};
        i += k;
    }
    size_t n_heap = 0;
    for (int i = 0; i + 1 < n; i++) try_pair(t, text, s, i, heap, &n_heap);
    while (n_heap) {
        cand c = heap_pop(heap, &n_heap);
        symbol *l = &s[c.left], *r = &s[c.right];
        if (l->len == 0 || r->len == 0 || l->len + r->len != c.size) continue; /* stale */
        l->len += r->len;
        l->id = c.merged;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0) s[r->next].prev = c.left;
        try_pair(t, text, s, l->prev, heap, &n_heap);
        try_pair(t, text, s, c.left, heap, &n_heap);
    }
    for (int i = 0; i >= 0 && !st; i = s[i].next) { /* symbol 0 never merges away */
        if (s[i].id >= 0) {
            st = push_id(out, s[i].id);
            continue;
        }
        for (size_t k = 0; k < s[i].len && !st; k++) {
            uint8_t b = (uint8_t)text[s[i].start + k];
            /* SPM: its <0xXX> token; BPE: the one-byte token llama.cpp looks for */
            int id = t->kind == LB_TOK_SPM && t->byte_id[b] >= 0 ? t->byte_id[b]
                                                                 : lb_tokenizer_find(t, (const char *)&b, 1, "", 0);
            if (id < 0)
                st = lb_fail(LB_ERR_INVALID, "tokenize: \"%.*s\" is not in the vocabulary and byte 0x%02X has no "
                             "token to fall back on", (int)(s[i].len > 32 ? 32 : s[i].len), text + s[i].start, b);
            else
                st = push_id(out, id);
        }
    }
done:
    lb_free(s);
    lb_free(heap);
    return st;
}

/* SPM fragment: optional leading space, spaces as U+2581, then merges. */
static lb_status encode_spm(const lb_tokenizer *t, const char *text, size_t len, int prefix, id_list *out) {
    size_t spaces = prefix;
    for (size_t i = 0; i < len; i++) spaces += text[i] == ' ';
    char *buf = lb_alloc(len + 2 * spaces + 1);
    if (!buf) return LB_ERR_NOMEM;
    size_t o = 0;
    if (prefix) {
        memcpy(buf, SPM_SPACE, 3);
        o = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(buf + o, SPM_SPACE, 3);
            o += 3;
        } else {
            buf[o++] = text[i];
        }
    }
    lb_status st = merge_and_emit(t, buf, o, out);
    lb_free(buf);
    return st;
}

/* BPE fragment: pre-tokenize, map bytes to GPT-2's characters, merge per word. */
static lb_status encode_bpe(const lb_tokenizer *t, const char *text, size_t len, id_list *out) {
    uint32_t *cpts = lb_alloc((len + 1) * sizeof *cpts);
    size_t *ends = lb_alloc((len + 1) * sizeof *ends);
    char *word = lb_alloc(2 * len + 1); /* a mapped byte takes at most 2 bytes of UTF-8 */
    lb_status st = LB_OK;
    if (!cpts || !ends || !word) {
        st = LB_ERR_NOMEM;
        goto done;
    }
    size_t n = lb_utf8_decode(text, len, cpts), n_words;
    if ((st = lb_pretokenize(t->pre, cpts, n, ends, &n_words))) goto done;
    size_t byte = 0, cpt = 0;
    for (size_t w = 0; w < n_words && !st; w++) {
        size_t wl = 0;
        for (; cpt < ends[w]; cpt++) {
            size_t k = lb_utf8_lead_len((uint8_t)text[byte]);
            for (size_t j = 0; j < k; j++) wl += lb_utf8_encode(lb_gpt2_byte_to_cpt((uint8_t)text[byte + j]), word + wl);
            byte += k;
        }
        int whole = t->ignore_merges ? lb_tokenizer_find(t, word, wl, "", 0) : -1;
        st = whole >= 0 ? push_id(out, whole) : merge_and_emit(t, word, wl, out);
    }
done:
    lb_free(cpts);
    lb_free(ends);
    lb_free(word);
    return st;
}

static int is_special_type(int32_t ty) {
    return ty == LB_TOKEN_CONTROL || ty == LB_TOKEN_USER_DEFINED || ty == LB_TOKEN_UNKNOWN;
}

typedef struct {
    size_t off, len;
    int id; /* -1: text */
} fragment;

/* Cuts the special tokens out of text: returns fragments in order. */
static lb_status partition(const lb_tokenizer *t, const char *text, size_t len, int parse_special, fragment **out,
                           size_t *n_out) {
    /* each cut adds at most two fragments and eats at least one byte */
    size_t cap = 2 * len + 1, n = 1;
    fragment *f = lb_alloc(cap * sizeof *f);
    if (!f) return LB_ERR_NOMEM;
    f[0] = (fragment){0, len, -1};
    for (size_t k = 0; k < t->n_specials; k++) {
        int id = t->specials[k];
        if (!parse_special && t->types[id] != LB_TOKEN_USER_DEFINED) continue;
        size_t sl;
        const char *sp = lb_tokenizer_piece(t, id, &sl);
        for (size_t i = 0; i < n; i++) {
            if (f[i].id >= 0 || f[i].len < sl) continue;
            const char *base = text + f[i].off;
            size_t at = 0;
            while (at + sl <= f[i].len && memcmp(base + at, sp, sl) != 0) at++;
            if (at + sl > f[i].len) continue;
            /* replace f[i] by: text before (if any), the token, the rest (if any, scanned next) */
            fragment rest = {f[i].off + at + sl, f[i].len - at - sl, -1};
            size_t add = (at > 0) + (rest.len > 0);
            memmove(f + i + 1 + add, f + i + 1, (n - i - 1) * sizeof *f);
            n += add;
            size_t j = i;
            if (at > 0) f[j++] = (fragment){f[i].off, at, -1};
            f[j] = (fragment){0, 0, id};
            if (rest.len) f[j + 1] = rest;
            i = j; /* the loop's i++ moves onto the rest */
        }
    }
    *out = f;
    *n_out = n;
    return LB_OK;
}

lb_status lb_tokenize_gguf(const lb_tokenizer *t, const char *text, size_t len, unsigned flags, int **tokens,
                           size_t *n_tokens) {
    if (!tokens || !n_tokens) return lb_fail(LB_ERR_INVALID, "tokenize: NULL output pointer");
    *tokens = NULL;
    *n_tokens = 0;
    if (!text && len) return lb_fail(LB_ERR_INVALID, "tokenize: NULL text");
    size_t bad;
    if (!lb_utf8_valid(text, len, &bad))
        return lb_fail(LB_ERR_INVALID, "tokenize: invalid UTF-8 at byte offset %zu (byte 0x%02X)", bad,
                       (unsigned)(uint8_t)text[bad]);
    if (((flags & LB_TOKENIZE_BOS) && t->bos_id < 0) || ((flags & LB_TOKENIZE_EOS) && t->eos_id < 0))
        return lb_fail(LB_ERR_INVALID, "tokenize: BOS/EOS requested but the vocab has none");
    /* Bound: SPM turns each byte into at most 3 (a space into U+2581) plus
     * the prefix, each of those into at most one token; BPE turns each byte
     * into one stand-in character of at most 2 bytes, each at most one token. */
    if (len > INT32_MAX / 4) /* symbols are indexed by int */
        return lb_fail(LB_ERR_INVALID, "tokenize: text of %zu bytes is too long (at most %d)", len, INT32_MAX / 4);
    id_list out = {lb_alloc((3 * len + 8) * sizeof(int)), 0, 3 * len + 8};
    if (!out.ids) return LB_ERR_NOMEM;
    fragment *f = NULL;
    size_t n_f = 0;
    lb_status st = LB_OK;
    if (flags & LB_TOKENIZE_BOS) st = push_id(&out, t->bos_id);
    if (!st && len) st = partition(t, text, len, (flags & LB_TOKENIZE_SPECIAL) != 0, &f, &n_f);
    int prev_special = 1; /* the input's start counts as one, for SPM's space prefix */
    for (size_t i = 0; i < n_f && !st; i++) {
        if (f[i].id >= 0) {
            st = push_id(&out, f[i].id);
            prev_special = 1;
        } else if (t->kind == LB_TOK_SPM) {
            st = encode_spm(t, text + f[i].off, f[i].len, t->add_space_prefix && prev_special, &out);
            prev_special = 0;
        } else {
            st = encode_bpe(t, text + f[i].off, f[i].len, &out);
        }
    }
    if (!st && (flags & LB_TOKENIZE_EOS)) st = push_id(&out, t->eos_id);
    lb_free(f);
    if (st) {
        lb_free(out.ids);
        return st;
    }
    *tokens = out.ids;
    *n_tokens = out.n;
    return LB_OK;
}

/* ---- preparation: decode table and the special-token list ------------------ */

static int parse_byte_token(const char *p, size_t n, uint8_t *b) {
    static const char hex[] = "0123456789ABCDEF";
    if (n != 6 || memcmp(p, "<0x", 3) || p[5] != '>') return 0;
    const char *hi = memchr(hex, p[3], 16), *lo = memchr(hex, p[4], 16);
    if (!hi || !lo || !p[3] || !p[4]) return 0;
    *b = (uint8_t)((hi - hex) * 16 + (lo - hex));
    return 1;
}

/* Writes the bytes token id prints as into out (NULL: count only). */
static size_t decoded(const lb_tokenizer *t, int id, char *out) {
    size_t n;
    const char *p = lb_tokenizer_piece(t, id, &n);
    int32_t ty = t->types[id];
    uint8_t b;
    if (ty == LB_TOKEN_CONTROL || ty == LB_TOKEN_UNKNOWN || ty == LB_TOKEN_UNUSED || ty == LB_TOKEN_UNDEFINED)
        return 0; /* llama.cpp prints these only when asked for special tokens */
    if (ty == LB_TOKEN_USER_DEFINED) {
        if (out) memcpy(out, p, n);
        return n;
    }
    if (ty == LB_TOKEN_BYTE && parse_byte_token(p, n, &b)) {
        if (out) out[0] = (char)b;
        return 1;
    }
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t k = lb_utf8_lead_len((uint8_t)p[i]);
        if (k > n - i) k = n - i;
        if (t->kind == LB_TOK_SPM) {
            int sp = k == 3 && !memcmp(p + i, SPM_SPACE, 3);
            if (out) {
                if (sp) out[o] = ' ';
                else memcpy(out + o, p + i, k);
            }
            o += sp ? 1 : k;
        } else {
            uint32_t c[4]; /* k <= 4 bytes; a piece cut short decodes to up to k code points */
            int byte = lb_utf8_decode(p + i, k, c) == 1 ? lb_gpt2_cpt_to_byte(c[0]) : -1;
            if (byte >= 0) {
                if (out) out[o] = (char)byte;
                o++;
            } else { /* not a stand-in character: printed as it is */
                if (out) memcpy(out + o, p + i, k);
                o += k;
            }
        }
        i += k;
    }
    return o;
}

typedef struct {
    size_t len;
    int32_t id;
} sized_id;

static int longer_first(const void *pa, const void *pb) {
    const sized_id *a = pa, *b = pb;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

lb_status lb_tokenizer_prepare(lb_tokenizer *t) {
    int V = t->vocab_size;
    size_t total = 0;
    t->dec_offsets = lb_alloc(((size_t)V + 1) * sizeof *t->dec_offsets);
    if (!t->dec_offsets) return LB_ERR_NOMEM;
    for (int i = 0; i < V; i++) {
        t->dec_offsets[i] = total;
        total += decoded(t, i, NULL) + 1;
    }
    t->dec_offsets[V] = total;
    t->dec_text = lb_alloc(total);
    if (!t->dec_text) return LB_ERR_NOMEM;
    for (int i = 0; i < V; i++) {
        size_t n = decoded(t, i, t->dec_text + t->dec_offsets[i]);
        t->dec_text[t->dec_offsets[i] + n] = 0;
    }
    /* special tokens with text, longest first (llama.cpp's order; ties by id) */
    sized_id *sp = lb_alloc(((size_t)V + 1) * sizeof *sp);
    if (!sp) return LB_ERR_NOMEM;
    size_t k = 0;
    for (int i = 0; i < V; i++) {
        size_t n = t->offsets[i + 1] - t->offsets[i] - 1;
        if (is_special_type(t->types[i]) && n > 0) sp[k++] = (sized_id){n, i};
    }
    qsort(sp, k, sizeof *sp, longer_first);
    t->specials = lb_alloc((k ? k : 1) * sizeof *t->specials);
    if (!t->specials) {
        lb_free(sp);
        return LB_ERR_NOMEM;
    }
    for (size_t j = 0; j < k; j++) t->specials[j] = sp[j].id;
    t->n_specials = k;
    lb_free(sp);
    return LB_OK;
}
