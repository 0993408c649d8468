/* Hugging Face tokenizers' tokenizer.json, the BPE models Llama-family
 * folders ship (docs/INTEROP.md):
 *   model: {"type": "BPE", "vocab": {piece: id}, "merges": ["a b" | ["a", "b"]],
 *           "byte_fallback", "unk_token", "ignore_merges"}
 *   added_tokens: [{"id", "content", "special"}]  (special: control, else user-defined)
 *   normalizer / pre_tokenizer: which of lowbit's kinds the vocabulary is.
 * Two shapes are read:
 *   byte_fallback true (Llama 2 and its kin: pieces with U+2581, <0xXX>
 *     byte pieces): the SPM ("llama") kind, as llama.cpp treats them. SPM
 *     merges by piece score, HF by merge rank, so a piece made by merge r
 *     scores -r (the first rule that makes it), which gives the same merges
 *     whenever each piece has one rule; a space prefix when the normalizer
 *     prepends U+2581 or a Metaspace pre-tokenizer adds one.
 *   a ByteLevel pre-tokenizer (GPT-2 and its kin): the byte-level BPE
 *     ("gpt2") kind with merges by rank; the split before it picks the
 *     pre-tokenizer: ByteLevel alone with its regex is "gpt-2", a Split on
 *     Llama 3's or Qwen 2's regex then ByteLevel is "llama3" / "qwen2".
 * Anything else (WordPiece, Unigram, another split) is refused by name.
 * BOS / EOS are found by name (<s>, <|begin_of_text|>, <|endoftext|>, ...);
 * a folder's config.json overrides them (model_hf.c).
 * The writer covers the byte-level kind (SPM vocabularies go to
 * tokenizer.model), for the pre-tokenizers above. */
#include <string.h>

#include "io/json.h"
#include "model/tokenizer_internal.h"

#define SPM_SPACE "\xe2\x96\x81"
#define MAX_VOCAB (1 << 24)

static const char *llama3_regex = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                                  "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char *qwen2_regex = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
                                 "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static int32_t child_at(const lb_json *j, int32_t arr, uint32_t k) {
    int32_t c = j->nodes[arr].child;
    while (c >= 0 && k--) c = j->nodes[c].next;
    return c;
}

static int type_is(const lb_json *j, int32_t obj, const char *type) {
    return obj >= 0 && lb_json_string_eq(j, lb_json_find(j, obj, "type"), type);
}

/* The pre-tokenizer of a byte-level vocabulary; -1 (with the message) when
 * the JSON names one lowbit does not run, -2 when there is no ByteLevel. */
static int byte_level_pre(const lb_json *j, int32_t pre, lb_pretok *out) {
    if (type_is(j, pre, "ByteLevel")) {
        int32_t re = lb_json_find(j, pre, "use_regex");
        if (re >= 0 && j->nodes[re].type == LB_JSON_FALSE) {
            lb_fail(LB_ERR_UNSUPPORTED, "tokenizer.json: a ByteLevel pre-tokenizer without its regex is not supported");
            return -1;
        }
        *out = LB_PRE_GPT2;
        return 0;
    }
    if (!type_is(j, pre, "Sequence")) return -2;
    int32_t list = lb_json_find(j, pre, "pretokenizers");
    if (list < 0 || j->nodes[list].type != LB_JSON_ARRAY || j->nodes[list].count != 2 ||
        !type_is(j, child_at(j, list, 1), "ByteLevel"))
        return -2;
    int32_t split = child_at(j, list, 0), pat = lb_json_find(j, split, "pattern");
    int32_t regex = lb_json_find(j, pat, "Regex");
    if (type_is(j, split, "Split") && lb_json_string_eq(j, regex, llama3_regex)) *out = LB_PRE_LLAMA3;
    else if (type_is(j, split, "Split") && lb_json_string_eq(j, regex, qwen2_regex)) *out = LB_PRE_QWEN2;
    else {
        lb_fail(LB_ERR_UNSUPPORTED, "tokenizer.json: the split before ByteLevel is not one lowbit runs (supported: "
                "GPT-2's ByteLevel regex, Llama 3's and Qwen 2's Split regexes)");
        return -1;
    }
    return 0;
}

/* a U+2581 prefix: a Prepend normalizer (in a Sequence or alone), or a Metaspace pre-tokenizer adding one */
static int spm_space_prefix(const lb_json *j, int32_t norm, int32_t pre) {
    if (type_is(j, norm, "Prepend")) return 1;
    if (type_is(j, norm, "Sequence")) {
        int32_t list = lb_json_find(j, norm, "normalizers");
        for (int32_t c = list >= 0 ? j->nodes[list].child : -1; c >= 0; c = j->nodes[c].next)
            if (type_is(j, c, "Prepend")) return 1;
    }
    if (type_is(j, pre, "Metaspace")) {
        int32_t scheme = lb_json_find(j, pre, "prepend_scheme"), add = lb_json_find(j, pre, "add_prefix_space");
        if (scheme >= 0) return !lb_json_string_eq(j, scheme, "never");
        return add < 0 || j->nodes[add].type == LB_JSON_TRUE;
    }
    return 0;
}

typedef struct {
    char **pieces;
    size_t *lens;
    int32_t *types;
    float *scores;
    int n;
} vocab;

static lb_status set_piece(vocab *v, const lb_json *j, int32_t node, int64_t id, int is_key, int32_t type) {
    if (id < 0 || id >= v->n) return lb_fail(LB_ERR_FORMAT, "tokenizer.json: token id %lld is outside 0..%d", (long long)id, v->n - 1);
    char *s;
    size_t len;
    lb_status st = is_key ? lb_json_key(j, node, &s, &len) : lb_json_string(j, node, &s, &len);
    if (st != LB_OK) return st;
    if (v->pieces[id]) {
        int same = v->lens[id] == len && !memcmp(v->pieces[id], s, len);
        lb_free(s);
        if (!same) return lb_fail(LB_ERR_FORMAT, "tokenizer.json: id %lld names two different tokens", (long long)id);
    } else {
        v->pieces[id] = s;
        v->lens[id] = len;
    }
    if (type) v->types[id] = type;
    return LB_OK;
}

static int find_named(const lb_tokenizer *t, const char *const *names) {
    for (int k = 0; names[k]; k++) {
        int id = lb_tokenizer_find(t, names[k], strlen(names[k]), "", 0);
        if (id >= 0) return id;
    }
    return -1;
}

/* merge k as two strings: "a b" (split at the first space after the first byte) or ["a", "b"] */
static lb_status merge_ids(const lb_tokenizer *t, const lb_json *j, int32_t m, size_t k, int *a, int *b) {
    char *s = NULL, *s2 = NULL;
    size_t len, len2;
    lb_status st;
    *a = *b = -1;
    if (j->nodes[m].type == LB_JSON_ARRAY && j->nodes[m].count == 2) {
        if ((st = lb_json_string(j, j->nodes[m].child, &s, &len)) == LB_OK &&
            (st = lb_json_string(j, j->nodes[j->nodes[m].child].next, &s2, &len2)) == LB_OK) {
            *a = lb_tokenizer_find(t, s, len, "", 0);
            *b = lb_tokenizer_find(t, s2, len2, "", 0);
        }
    } else if ((st = lb_json_string(j, m, &s, &len)) == LB_OK) {
        const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
        if (sp) {
            *a = lb_tokenizer_find(t, s, (size_t)(sp - s), "", 0);
            *b = lb_tokenizer_find(t, sp + 1, len - (size_t)(sp - s) - 1, "", 0);
        }
    }
    lb_free(s);
    lb_free(s2);
    if (st != LB_OK || *a < 0 || *b < 0)
        return lb_fail(LB_ERR_FORMAT, "tokenizer.json: merge %zu is not two tokens of the vocabulary", k);
    return LB_OK;
}

lb_status lb_tokenizer_from_hf_json(const char *text, size_t len, lb_tokenizer **out) {
    if (!out) return lb_fail(LB_ERR_INVALID, "tokenizer: NULL output pointer");
    *out = NULL;
    lb_json j;
    lb_status st = lb_json_parse(text, len, &j);
    if (st != LB_OK) return lb_fail_context(st, "tokenizer.json");
    vocab v = {0};
    lb_tokenizer *t = NULL;
    int32_t model = lb_json_find(&j, 0, "model"), voc = lb_json_find(&j, model, "vocab"),
            merges = lb_json_find(&j, model, "merges"), added = lb_json_find(&j, 0, "added_tokens");
    int32_t fb = lb_json_find(&j, model, "byte_fallback"), pre_node = lb_json_find(&j, 0, "pre_tokenizer");
    lb_pretok pre = LB_PRE_DEFAULT;
    int spm = fb >= 0 && j.nodes[fb].type == LB_JSON_TRUE, bpe = 0;
    if (!type_is(&j, model, "BPE")) {
        st = lb_fail(LB_ERR_UNSUPPORTED, "tokenizer.json: model type is not \"BPE\" (WordPiece and Unigram models are not supported)");
        goto done;
    }
    if (!spm) {
        int r = byte_level_pre(&j, pre_node, &pre);
        if (r == -1) {
            st = LB_ERR_UNSUPPORTED;
            goto done;
        }
        if (r == -2) {
            st = lb_fail(LB_ERR_UNSUPPORTED, "tokenizer.json: a BPE model with neither byte_fallback nor a ByteLevel "
                         "pre-tokenizer is not a kind lowbit runs");
            goto done;
        }
        bpe = 1;
    }
    if (voc < 0 || j.nodes[voc].type != LB_JSON_OBJECT || merges < 0 || j.nodes[merges].type != LB_JSON_ARRAY ||
        (added >= 0 && j.nodes[added].type != LB_JSON_ARRAY)) {
        st = lb_fail(LB_ERR_FORMAT, "tokenizer.json: model.vocab (an object), model.merges (a list) or added_tokens (a list) is missing or malformed");
        goto done;
    }
    /* the vocabulary's size: one past the largest id */
    int64_t max_id = -1, id;
    for (int32_t c = j.nodes[voc].child; c >= 0; c = j.nodes[c].next) {
        if (lb_json_i64(&j, c, &id) != LB_OK || id < 0 || id >= MAX_VOCAB) {
            st = lb_fail(LB_ERR_FORMAT, "tokenizer.json: a vocab id (byte %zu) is not an integer in 0..%d", j.nodes[c].start, MAX_VOCAB - 1);
            goto done;
        }
        if (id > max_id) max_id = id;
    }
    for (int32_t c = added >= 0 ? j.nodes[added].child : -1; c >= 0; c = j.nodes[c].next) {
        int32_t idn = lb_json_find(&j, c, "id");
        if (lb_json_i64(&j, idn, &id) != LB_OK || id < 0 || id >= MAX_VOCAB || lb_json_find(&j, c, "content") < 0) {
            st = lb_fail(LB_ERR_FORMAT, "tokenizer.json: an added token (byte %zu) has no id in 0..%d or no content", j.nodes[c].start, MAX_VOCAB - 1);
            goto done;
        }
        if (id > max_id) max_id = id;
    }
    /* ids run 0..max_id without gaps, so there are at least that many entries:
     * checked before allocating for max_id (a hostile file could name 2^24) */
    if (max_id >= 0 && (uint64_t)max_id >= (uint64_t)j.nodes[voc].count + (added >= 0 ? j.nodes[added].count : 0)) {
        st = lb_fail(LB_ERR_FORMAT, "tokenizer.json: ids reach %lld, but there are only %u tokens (ids must run from "
                     "0 without gaps)", (long long)max_id, j.nodes[voc].count + (added >= 0 ? j.nodes[added].count : 0));
        goto done;
    }
    if (max_id < 2) {
        st = lb_fail(LB_ERR_FORMAT, "tokenizer.json: a vocabulary of %lld tokens", (long long)(max_id + 1));
        goto done;
    }
    v.n = (int)max_id + 1;
    v.pieces = lb_calloc((size_t)v.n, sizeof *v.pieces);
    v.lens = lb_calloc((size_t)v.n, sizeof *v.lens);
    v.types = lb_calloc((size_t)v.n, sizeof *v.types);
    v.scores = lb_calloc((size_t)v.n, sizeof *v.scores);
    if (!v.pieces || !v.lens || !v.types || !v.scores) {
        st = LB_ERR_NOMEM;
        goto done;
    }
    for (int32_t c = j.nodes[voc].child; c >= 0; c = j.nodes[c].next) {
        lb_json_i64(&j, c, &id);
        if ((st = set_piece(&v, &j, c, id, 1, 0)) != LB_OK) goto done;
    }
    for (int32_t c = added >= 0 ? j.nodes[added].child : -1; c >= 0; c = j.nodes[c].next) {
        int32_t sp = lb_json_find(&j, c, "special");
        lb_json_i64(&j, lb_json_find(&j, c, "id"), &id);
        int special = sp >= 0 && j.nodes[sp].type == LB_JSON_TRUE;
        if ((st = set_piece(&v, &j, lb_json_find(&j, c, "content"), id, 0, special ? LB_TOKEN_CONTROL : LB_TOKEN_USER_DEFINED)))
            goto done;
    }
    for (int i = 0; i < v.n; i++)
        if (!v.pieces[i]) {
            st = lb_fail(LB_ERR_FORMAT, "tokenizer.json: no token has id %d (ids must run 0..%d without gaps)", i, v.n - 1);
            goto done;
        }
    if ((st = lb_tokenizer_build(v.n, (const char *const *)v.pieces, v.lens, v.scores, -1, -1, 1, &t)) != LB_OK) goto done;
    static const char *bos_names[] = {"<s>", "<|begin_of_text|>", "<|endoftext|>", "<|im_start|>", NULL};
    static const char *eos_names[] = {"</s>", "<|end_of_text|>", "<|endoftext|>", "<|im_end|>", NULL};
    t->bos_id = find_named(t, bos_names);
    t->eos_id = find_named(t, eos_names);
    t->kind = bpe ? LB_TOK_BPE : LB_TOK_SPM;
    t->pre = pre;
    snprintf(t->pre_name, sizeof t->pre_name, "%s", bpe ? lb_pretok_name(pre) : "");
    int32_t im = lb_json_find(&j, model, "ignore_merges");
    t->ignore_merges = bpe ? (im >= 0 ? j.nodes[im].type == LB_JSON_TRUE : pre == LB_PRE_LLAMA3) : 0;
    t->add_bos = spm || pre == LB_PRE_LLAMA3;
    t->add_eos = 0;
    t->add_space_prefix = spm && spm_space_prefix(&j, lb_json_find(&j, 0, "normalizer"), pre_node);
    int32_t unk = lb_json_find(&j, model, "unk_token");
    t->unk_id = -1;
    if (unk >= 0 && j.nodes[unk].type == LB_JSON_STRING) {
        char *u;
        size_t ul;
        if ((st = lb_json_string(&j, unk, &u, &ul)) != LB_OK) goto done;
        t->unk_id = lb_tokenizer_find(t, u, ul, "", 0);
        lb_free(u);
    }
    if (!(t->types = lb_alloc((size_t)v.n * sizeof *t->types))) {
        st = LB_ERR_NOMEM;
        goto done;
    }
    for (int i = 0; i < v.n; i++) {
        uint8_t byte;
        t->types[i] = v.types[i] ? v.types[i] : i == t->unk_id ? LB_TOKEN_UNKNOWN
                      : spm && lb_tokenizer_byte_piece(t, i, &byte) ? LB_TOKEN_BYTE : LB_TOKEN_NORMAL;
    }
    if (spm) { /* scores from merge ranks; pieces no rule makes rank after every rule */
        for (int i = 0; i < v.n; i++) t->scores[i] = -1e9f;
        for (int32_t m = j.nodes[merges].child, k = 0; m >= 0; m = j.nodes[m].next, k++) {
            int a, b;
            if ((st = merge_ids(t, &j, m, (size_t)k, &a, &b)) != LB_OK) goto done;
            size_t na, nb;
            const char *pa = lb_tokenizer_piece(t, a, &na), *pb = lb_tokenizer_piece(t, b, &nb);
            int made = lb_tokenizer_find(t, pa, na, pb, nb);
            if (made >= 0 && t->scores[made] < -(float)k) t->scores[made] = -(float)k;
        }
    } else {
        if ((st = lb_tokenizer_merges_alloc(t, j.nodes[merges].count)) != LB_OK) goto done;
        for (int32_t m = j.nodes[merges].child, k = 0; m >= 0; m = j.nodes[m].next, k++) {
            int a, b;
            if ((st = merge_ids(t, &j, m, (size_t)k, &a, &b)) != LB_OK) goto done;
            lb_tokenizer_merge_add(t, a, b);
        }
    }
    st = lb_tokenizer_prepare(t);
done:
    for (int i = 0; v.pieces && i < v.n; i++) lb_free(v.pieces[i]);
    lb_free(v.pieces), lb_free(v.lens), lb_free(v.types), lb_free(v.scores);
    lb_json_free(&j);
    if (st != LB_OK) {
        lb_tokenizer_free(t);
        return st;
    }
    *out = t;
    return LB_OK;
}

lb_status lb_tokenizer_load_hf_json(const char *path, lb_tokenizer **out) {
    if (!out || !path) return lb_fail(LB_ERR_INVALID, "tokenizer: NULL path or output pointer");
    *out = NULL;
    char *text;
    size_t len;
    lb_status st = lb_read_file(path, &text, &len);
    if (st != LB_OK) return st;
    st = lb_tokenizer_from_hf_json(text, len, out);
    lb_free(text);
    if (st != LB_OK) return lb_fail_context(st, "reading '%s'", path);
    return LB_OK;
}

/* ---- writing (byte-level BPE) ------------------------------------------------ */

static void write_pre(lb_json_buf *b, lb_pretok pre) {
    static const char *byte_level = "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":";
    if (pre == LB_PRE_GPT2) {
        lb_json_raws(b, byte_level);
        lb_json_raws(b, "true}");
        return;
    }
    lb_json_raws(b, "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":");
    lb_json_strs(b, pre == LB_PRE_LLAMA3 ? llama3_regex : qwen2_regex);
    lb_json_raws(b, "},\"behavior\":\"Isolated\",\"invert\":false},");
    lb_json_raws(b, byte_level);
    lb_json_raws(b, "false}]}");
}

lb_status lb_tokenizer_save_hf_json(const lb_tokenizer *t, const char *path) {
    if (!t || !path) return lb_fail(LB_ERR_INVALID, "tokenizer: NULL tokenizer or path");
    if (t->kind != LB_TOK_BPE)
        return lb_fail(LB_ERR_UNSUPPORTED, "tokenizer: only byte-level BPE vocabularies are written as tokenizer.json "
                       "(SentencePiece-style ones go to tokenizer.model)");
    if (t->pre != LB_PRE_GPT2 && t->pre != LB_PRE_LLAMA3 && t->pre != LB_PRE_QWEN2)
        return lb_fail(LB_ERR_UNSUPPORTED, "tokenizer: the pre-tokenizer \"%s\" cannot be written as tokenizer.json "
                       "yet (gpt-2, llama3 and qwen2 can)", lb_pretok_name(t->pre));
    /* trailing "[PAD<id>]" tokens are left out, so the folder reads back
     * padded to config.json's vocab_size as before */
    int n = t->vocab_size;
    for (char pad[24]; n > 0 && t->types[n - 1] == LB_TOKEN_UNUSED; n--) {
        size_t len;
        const char *p = lb_tokenizer_piece(t, n - 1, &len);
        if (len != (size_t)snprintf(pad, sizeof pad, "[PAD%d]", n - 1) || memcmp(p, pad, len)) break;
    }
    lb_json_buf b = {0};
    lb_json_raws(&b, "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":[");
    int first = 1;
    for (int i = 0; i < n; i++) {
        int ty = t->types[i];
        if (ty != LB_TOKEN_CONTROL && ty != LB_TOKEN_USER_DEFINED) continue;
        size_t len;
        const char *p = lb_tokenizer_piece(t, i, &len);
        lb_json_raws(&b, first ? "{\"id\":" : ",{\"id\":");
        first = 0;
        lb_json_int(&b, i);
        lb_json_raws(&b, ",\"content\":");
        lb_json_str(&b, p, len);
        lb_json_raws(&b, ",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":");
        lb_json_raws(&b, ty == LB_TOKEN_CONTROL ? "false,\"special\":true}" : "true,\"special\":false}");
    }
    lb_json_raws(&b, "],\"normalizer\":null,\"pre_tokenizer\":");
    write_pre(&b, t->pre);
    lb_json_raws(&b, ",\"post_processor\":null,\"decoder\":{\"type\":\"ByteLevel\",\"add_prefix_space\":true,"
                     "\"trim_offsets\":true,\"use_regex\":true},\"model\":{\"type\":\"BPE\",\"dropout\":null,"
                     "\"unk_token\":null,\"continuing_subword_prefix\":null,\"end_of_word_suffix\":null,"
                     "\"fuse_unk\":false,\"byte_fallback\":false,\"ignore_merges\":");
    lb_json_raws(&b, t->ignore_merges ? "true" : "false");
    lb_json_raws(&b, ",\"vocab\":{");
    for (int i = 0; i < n; i++) {
        size_t len;
        const char *p = lb_tokenizer_piece(t, i, &len);
        if (i) lb_json_raw(&b, ",", 1);
        lb_json_str(&b, p, len);
        lb_json_raw(&b, ":", 1);
        lb_json_int(&b, i);
    }
    lb_json_raws(&b, "},\"merges\":[");
    for (size_t r = 0; r < t->n_merges; r++) {
        size_t na, nb;
        const char *a = lb_tokenizer_piece(t, t->merge_left[r], &na), *c = lb_tokenizer_piece(t, t->merge_right[r], &nb);
        if (r) lb_json_raw(&b, ",", 1);
        lb_json_raw(&b, "[", 1); /* pairs, not "a b": a piece may hold a space */
        lb_json_str(&b, a, na);
        lb_json_raw(&b, ",", 1);
        lb_json_str(&b, c, nb);
        lb_json_raw(&b, "]", 1);
    }
    lb_json_raws(&b, "]}}\n");
    lb_status st = LB_OK;
    if (b.failed) {
        st = LB_ERR_NOMEM;
    } else {
        lb_atomic_file f;
        if ((st = lb_atomic_open(&f, path)) == LB_OK) {
            lb_atomic_write(&f, b.data, b.len);
            st = lb_atomic_commit(&f);
        }
    }
    lb_json_buf_free(&b);
    return st;
}
