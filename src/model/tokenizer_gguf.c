/* Tokenizers in GGUF files: reading llama.cpp's tokenizer.ggml.* keys into
 * an lb_tokenizer and writing them back.
 *
 * Read as llama.cpp's llama_vocab::load does: model "llama" is SPM (pieces
 * keep sentencepiece's U+2581 for spaces; BOS 1 and EOS 2 unless the keys
 * say otherwise; add_space_prefix and add_bos on unless the keys turn them
 * off); model "gpt2" is byte-level BPE (merges "A B" in rank order, the
 * pre-tokenizer from tokenizer.ggml.pre, "default" when absent as llama.cpp
 * does; add_bos on only for the llama3 family). Where we are stricter than
 * llama.cpp, on files llama.cpp would run wrongly anyway: a merge naming a
 * piece that is not a token, a merge without a space, a token type outside
 * 0..6, an unknown pre-tokenizer or model are errors, not warnings. */
#include <string.h>

#include "model/tokenizer_internal.h"

#define SPM_SPACE "\xe2\x96\x81" /* U+2581, sentencepiece's visible space */
/* names echoed into messages are cut here (a hostile one can be gigabytes) */
#define SHOWN(s, n) (int)((n) > 64 ? 64 : (n)), (const char *)(s)

static uint32_t pair_hash(int32_t a, int32_t b) {
    uint32_t h = (uint32_t)a * 0x9E3779B1u ^ ((uint32_t)b + 0x7F4A7C15u) * 0x85EBCA77u;
    return h ^ (h >> 15);
}

int32_t lb_tokenizer_merge_rank(const lb_tokenizer *t, int32_t left, int32_t right) {
    if (!t->merge_slots || left < 0 || right < 0) return -1;
    for (uint32_t s = pair_hash(left, right) & t->merge_mask;; s = (s + 1) & t->merge_mask) {
        int32_t r = t->merge_slots[s];
        if (r < 0) return -1;
        if (t->merge_left[r] == left && t->merge_right[r] == right) return r;
    }
}

lb_status lb_tokenizer_merges_alloc(lb_tokenizer *t, size_t n) {
    uint32_t n_slots = 2;
    while (n_slots < 2 * n) n_slots <<= 1;
    t->merge_left = lb_alloc((n ? n : 1) * sizeof *t->merge_left);
    t->merge_right = lb_alloc((n ? n : 1) * sizeof *t->merge_right);
    t->merge_slots = lb_alloc(n_slots * sizeof *t->merge_slots);
    if (!t->merge_left || !t->merge_right || !t->merge_slots) return LB_ERR_NOMEM;
    memset(t->merge_slots, 0xff, n_slots * sizeof *t->merge_slots);
    t->merge_mask = n_slots - 1;
    t->n_merges = 0;
    return LB_OK;
}

void lb_tokenizer_merge_add(lb_tokenizer *t, int32_t a, int32_t b) {
    if (lb_tokenizer_merge_rank(t, a, b) >= 0) return; /* a repeated pair keeps its first rank */
    int32_t r = (int32_t)t->n_merges++;
    t->merge_left[r] = a;
    t->merge_right[r] = b;
    uint32_t slot = pair_hash(a, b) & t->merge_mask;
    while (t->merge_slots[slot] >= 0) slot = (slot + 1) & t->merge_mask;
    t->merge_slots[slot] = r;
}

/* Reads tokenizer.ggml.merges into rank-ordered id pairs and their table. */
static lb_status read_merges(const lb_gguf *g, lb_tokenizer *t) {
    const char *key = "tokenizer.ggml.merges";
    if (lb_gguf_find_key(g, key) < 0)
        return lb_fail(LB_ERR_FORMAT, "tokenizer: a \"gpt2\" vocabulary needs %s, the file has none", key);
    lb_gguf_type et;
    uint64_t n;
    const uint8_t *e;
    lb_status st = lb_gguf_get_arr(g, key, &et, &n, &e);
    if (st) return st;
    if (et != LB_GGUF_STRING) return lb_fail(LB_ERR_FORMAT, "tokenizer: %s is not an array of strings", key);
    if (n > (1u << 26)) return lb_fail(LB_ERR_FORMAT, "tokenizer: %s has %llu entries, too many", key, (unsigned long long)n);
    if ((st = lb_tokenizer_merges_alloc(t, (size_t)n))) return st;
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        if ((st = lb_gguf_get_arr_str(g, key, i, &s, &len))) return st;
        /* the separator is the first space after the first byte (a piece may be " ") */
        const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
        if (!sp)
            return lb_fail(LB_ERR_FORMAT, "tokenizer: merge %llu \"%.*s\" has no space between two pieces",
                           (unsigned long long)i, SHOWN(s, len));
        size_t na = (size_t)(sp - s), nb = len - na - 1;
        int a = lb_tokenizer_find(t, s, na, "", 0), b = lb_tokenizer_find(t, sp + 1, nb, "", 0);
        if (a < 0 || b < 0) {
            const char *bad = a < 0 ? s : sp + 1;
            size_t bad_len = a < 0 ? na : nb;
            return lb_fail(LB_ERR_FORMAT, "tokenizer: merge %llu \"%.*s\" names \"%.*s\", which is not a token",
                           (unsigned long long)i, SHOWN(s, len), SHOWN(bad, bad_len));
        }
        lb_tokenizer_merge_add(t, a, b);
    }
    return LB_OK;
}

/* An optional id key: *id stays as given when absent; must name a token. */
static lb_status read_id(const lb_gguf *g, const char *key, int n, int *id) {
    if (lb_gguf_find_key(g, key) < 0) return LB_OK;
    int64_t v;
    lb_status st = lb_gguf_get_i64(g, key, &v);
    if (st) return st;
    if (v < 0 || v >= n)
        return lb_fail(LB_ERR_FORMAT, "tokenizer: %s = %lld is outside the vocabulary of %d tokens", key, (long long)v, n);
    *id = (int)v;
    return LB_OK;
}

static lb_status read_flag(const lb_gguf *g, const char *key, int *v) {
    if (lb_gguf_find_key(g, key) < 0) return LB_OK;
    return lb_gguf_get_bool(g, key, v);
}

/* A numeric per-token array: absent is fine (*elems NULL); present, it has
 * the element type want and at least n entries (llama.cpp accepts more). */
static lb_status read_token_array(const lb_gguf *g, const char *key, lb_gguf_type want, uint64_t n,
                                  const uint8_t **elems) {
    *elems = NULL;
    if (lb_gguf_find_key(g, key) < 0) return LB_OK;
    lb_gguf_type et;
    uint64_t m;
    lb_status st = lb_gguf_get_arr(g, key, &et, &m, elems);
    if (st) return st;
    if (et != want || m < n)
        return lb_fail(LB_ERR_FORMAT, "tokenizer: %s has %llu entries of type %d, the vocabulary needs %llu of type %d",
                       key, (unsigned long long)m, (int)et, (unsigned long long)n, (int)want);
    return LB_OK;
}

lb_status lb_tokenizer_from_gguf(const lb_gguf *g, lb_tokenizer **out) {
    if (!out) return lb_fail(LB_ERR_INVALID, "tokenizer: NULL output pointer");
    *out = NULL;
    if (!g) return lb_fail(LB_ERR_INVALID, "tokenizer: NULL GGUF");
    const char *model;
    size_t model_len;
    if (lb_gguf_find_key(g, "tokenizer.ggml.model") < 0)
        return lb_fail(LB_ERR_FORMAT, "tokenizer: the file has no tokenizer.ggml.model key (no tokenizer)");
    lb_status st = lb_gguf_get_str(g, "tokenizer.ggml.model", &model, &model_len);
    if (st) return st;
    lb_tok_kind kind;
    if (model_len == 5 && !memcmp(model, "llama", 5))
        kind = LB_TOK_SPM;
    else if (model_len == 4 && !memcmp(model, "gpt2", 4))
        kind = LB_TOK_BPE;
    else
        return lb_fail(LB_ERR_UNSUPPORTED, "tokenizer: tokenizer.ggml.model \"%.*s\" is not supported; supported: "
                       "llama (SentencePiece-style), gpt2 (byte-level BPE)", SHOWN(model, model_len));
    lb_pretok pre = LB_PRE_DEFAULT;
    int ignore_merges = 0;
    const char *pre_s = "";
    size_t pre_len = 0;
    if (kind == LB_TOK_BPE && lb_gguf_find_key(g, "tokenizer.ggml.pre") >= 0) {
        if ((st = lb_gguf_get_str(g, "tokenizer.ggml.pre", &pre_s, &pre_len))) return st;
        if ((st = lb_pretok_from_name(pre_s, pre_len, &pre, &ignore_merges))) return st;
    }

    lb_gguf_type et;
    uint64_t n;
    const uint8_t *e, *scores, *types;
    if (lb_gguf_find_key(g, "tokenizer.ggml.tokens") < 0)
        return lb_fail(LB_ERR_FORMAT, "tokenizer: the file has no tokenizer.ggml.tokens");
    if ((st = lb_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n, &e))) return st;
    if (et != LB_GGUF_STRING) return lb_fail(LB_ERR_FORMAT, "tokenizer: tokenizer.ggml.tokens is not an array of strings");
    if (n < 1 || n > (1u << 24))
        return lb_fail(LB_ERR_FORMAT, "tokenizer: tokenizer.ggml.tokens has %llu entries, outside 1..%u",
                       (unsigned long long)n, 1u << 24);
    if ((st = read_token_array(g, "tokenizer.ggml.scores", LB_GGUF_FLOAT32, n, &scores))) return st;
    if ((st = read_token_array(g, "tokenizer.ggml.token_type", LB_GGUF_INT32, n, &types))) return st;
    int V = (int)n;
    int bos = kind == LB_TOK_SPM && V > 1 ? 1 : -1, eos = kind == LB_TOK_SPM && V > 2 ? 2 : -1;
    int unk = kind == LB_TOK_SPM ? 0 : -1;
    if ((st = read_id(g, "tokenizer.ggml.bos_token_id", V, &bos)) || (st = read_id(g, "tokenizer.ggml.eos_token_id", V, &eos)) ||
        (st = read_id(g, "tokenizer.ggml.unknown_token_id", V, &unk)))
        return st;
    int add_bos = kind == LB_TOK_SPM || pre == LB_PRE_LLAMA3, add_eos = 0, add_space = kind == LB_TOK_SPM;
    if ((st = read_flag(g, "tokenizer.ggml.add_bos_token", &add_bos)) ||
        (st = read_flag(g, "tokenizer.ggml.add_eos_token", &add_eos)) ||
        (st = read_flag(g, "tokenizer.ggml.add_space_prefix", &add_space)))
        return st;

    const char **pieces = lb_calloc(n, sizeof *pieces);
    size_t *lens = lb_calloc(n, sizeof *lens);
    float *sc = lb_calloc(n, sizeof *sc);
    lb_tokenizer *t = NULL;
    if (!pieces || !lens || !sc) {
        st = LB_ERR_NOMEM;
        goto done;
    }
    for (uint64_t i = 0; i < n; i++) {
        if ((st = lb_gguf_get_arr_str(g, "tokenizer.ggml.tokens", i, &pieces[i], &lens[i]))) goto done;
        if (scores) {
            uint32_t u = lb_rd32(scores + 4 * i);
            memcpy(&sc[i], &u, 4);
        }
    }
    /* scores only rank SPM merges; a non-finite one is an error there (lb_tokenizer_build) */
    if ((st = lb_tokenizer_build(V, pieces, lens, sc, bos, eos, 1, &t))) goto done;
    t->kind = kind;
    t->unk_id = unk;
    t->add_bos = add_bos;
    t->add_eos = add_eos;
    t->add_space_prefix = add_space;
    t->pre = pre;
    t->ignore_merges = ignore_merges;
    memcpy(t->pre_name, pre_s, pre_len < 64 ? pre_len : 64);
    t->types = lb_alloc(n * sizeof *t->types);
    if (!t->types) {
        st = LB_ERR_NOMEM;
        goto done;
    }
    for (uint64_t i = 0; i < n; i++) {
        int32_t ty = types ? (int32_t)lb_rd32(types + 4 * i) : LB_TOKEN_NORMAL;
        if (ty < LB_TOKEN_UNDEFINED || ty > LB_TOKEN_BYTE) {
            st = lb_fail(LB_ERR_FORMAT, "tokenizer: token %llu has type %d, outside llama.cpp's 0..6",
                         (unsigned long long)i, (int)ty);
            goto done;
        }
        t->types[i] = ty;
    }
    if (kind == LB_TOK_BPE && (st = read_merges(g, t))) goto done;
    st = lb_tokenizer_prepare(t);
done:
    lb_free(pieces);
    lb_free(lens);
    lb_free(sc);
    if (st) {
        lb_tokenizer_free(t);
        return st;
    }
    *out = t;
    return LB_OK;
}

lb_status lb_tokenizer_load_gguf(const char *path, lb_tokenizer **out) {
    if (!out || !path) return lb_fail(LB_ERR_INVALID, "tokenizer: NULL path or output pointer");
    *out = NULL;
    lb_mapped_file f;
    lb_status st = lb_map_file(path, &f);
    if (st) return st;
    lb_gguf *g = NULL;
    if ((st = lb_gguf_parse(f.data, f.size, &g)) == LB_OK) st = lb_tokenizer_from_gguf(g, out);
    lb_gguf_free(g);
    lb_unmap_file(&f);
    if (st) return lb_fail_context(st, "reading the tokenizer of '%s'", path);
    return LB_OK;
}

/* ---- writing -------------------------------------------------------------- */

/* llama2.c pieces hold ' ' where sentencepiece (and llama.cpp) store U+2581. */
static char *spm_escape(const char *p, size_t len, size_t *out_len) {
    size_t spaces = 0;
    for (size_t j = 0; j < len; j++) spaces += p[j] == ' ';
    char *s = lb_alloc(len + 2 * spaces + 1);
    if (!s) return NULL;
    size_t o = 0;
    for (size_t j = 0; j < len; j++) {
        if (p[j] == ' ') {
            memcpy(s + o, SPM_SPACE, 3);
            o += 3;
        } else {
            s[o++] = p[j];
        }
    }
    s[o] = 0;
    *out_len = o;
    return s;
}

#define TRY(expr)                   \
    do {                            \
        st = (expr);                \
        if (st != LB_OK) goto done; \
    } while (0)

lb_status lb_tokenizer_write_gguf(const lb_tokenizer *t, lb_gguf_writer *w) {
    if (!t || !w) return lb_fail(LB_ERR_INVALID, "tokenizer: NULL tokenizer or writer");
    int n = t->vocab_size, llama2c = t->kind == LB_TOK_LLAMA2C;
    lb_status st = LB_OK;
    char **pieces = lb_calloc((size_t)n, sizeof *pieces);
    size_t *lens = lb_calloc((size_t)n, sizeof *lens);
    int32_t *types = lb_calloc((size_t)n, sizeof *types);
    char **merges = NULL;
    size_t *merge_lens = NULL;
    if (!pieces || !lens || !types) {
        st = LB_ERR_NOMEM;
        goto done;
    }
    for (int i = 0; i < n; i++) {
        size_t len;
        const char *p = lb_tokenizer_piece(t, i, &len);
        pieces[i] = llama2c ? spm_escape(p, len, &lens[i]) : (char *)p;
        if (!llama2c) lens[i] = len;
        if (!pieces[i]) {
            st = LB_ERR_NOMEM;
            goto done;
        }
        uint8_t byte;
        if (!llama2c) types[i] = t->types[i];
        /* llama2.c vocabularies put <unk> at id 0 (as sentencepiece does) */
        else if (i == 0) types[i] = LB_TOKEN_UNKNOWN;
        else if (i == t->bos_id || i == t->eos_id) types[i] = LB_TOKEN_CONTROL;
        else if (lb_tokenizer_byte_piece(t, i, &byte)) types[i] = LB_TOKEN_BYTE;
        else types[i] = LB_TOKEN_NORMAL;
    }
    TRY(lb_gguf_set_str(w, "tokenizer.ggml.model", t->kind == LB_TOK_BPE ? "gpt2" : "llama"));
    if (t->kind == LB_TOK_BPE) TRY(lb_gguf_set_str(w, "tokenizer.ggml.pre", t->pre_name[0] ? t->pre_name : "default"));
    TRY(lb_gguf_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)pieces, lens, (uint64_t)n));
    TRY(lb_gguf_set_arr(w, "tokenizer.ggml.scores", LB_GGUF_FLOAT32, t->scores, (uint64_t)n));
    TRY(lb_gguf_set_arr(w, "tokenizer.ggml.token_type", LB_GGUF_INT32, types, (uint64_t)n));
    if (t->kind == LB_TOK_BPE) {
        size_t m = t->n_merges ? t->n_merges : 1;
        merges = lb_calloc(m, sizeof *merges);
        merge_lens = lb_calloc(m, sizeof *merge_lens);
        if (!merges || !merge_lens) {
            st = LB_ERR_NOMEM;
            goto done;
        }
        for (size_t r = 0; r < t->n_merges; r++) {
            size_t na, nb;
            const char *a = lb_tokenizer_piece(t, t->merge_left[r], &na), *b = lb_tokenizer_piece(t, t->merge_right[r], &nb);
            merges[r] = lb_alloc(na + nb + 2);
            if (!merges[r]) {
                st = LB_ERR_NOMEM;
                goto done;
            }
            memcpy(merges[r], a, na);
            merges[r][na] = ' ';
            memcpy(merges[r] + na + 1, b, nb);
            merges[r][na + nb + 1] = 0;
            merge_lens[r] = na + nb + 1;
        }
        TRY(lb_gguf_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)merges, merge_lens, t->n_merges));
    }
    if (llama2c) TRY(lb_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", 0));
    else if (t->unk_id >= 0) TRY(lb_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)t->unk_id));
    if (t->bos_id >= 0) TRY(lb_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)t->bos_id));
    if (t->eos_id >= 0) TRY(lb_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)t->eos_id));
    if (!llama2c) {
        TRY(lb_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", t->add_bos));
        TRY(lb_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", t->add_eos));
        if (t->kind == LB_TOK_SPM) TRY(lb_gguf_set_bool(w, "tokenizer.ggml.add_space_prefix", t->add_space_prefix));
    }
done:
    if (pieces && llama2c)
        for (int i = 0; i < n; i++) lb_free(pieces[i]);
    if (merges)
        for (size_t r = 0; r < t->n_merges; r++) lb_free(merges[r]);
    lb_free(merges);
    lb_free(merge_lens);
    lb_free(pieces);
    lb_free(lens);
    lb_free(types);
    return st;
}
