/* SentencePiece's tokenizer.model, the vocabulary Llama-family Hugging Face
 * folders ship: a protobuf ModelProto (sentencepiece_model.proto):
 *   1 pieces (repeated message): 1 piece (string), 2 score (float), 3 type
 *     (NORMAL 1, UNKNOWN 2, CONTROL 3, USER_DEFINED 4, UNUSED 5, BYTE 6:
 *     llama.cpp's token types are these numbers)
 *   2 trainer_spec: 3 model_type (UNIGRAM 1, the default; BPE 2), 4
 *     vocab_size, 35 byte_fallback, 40 unk_id (0), 41 bos_id (1), 42 eos_id
 *     (2), 43 pad_id (-1)
 *   3 normalizer_spec: 1 name, 3 add_dummy_prefix (true), 4
 *     remove_extra_whitespaces, 5 escape_whitespaces
 * Other fields are skipped by wire type. Read as llama.cpp reads the same
 * vocabulary from GGUF (an SPM "llama" tokenizer); only BPE models are
 * accepted, since a unigram model's encoding is a different algorithm.
 * Written from SentencePiece-style vocabularies (llama2.c's, whose spaces
 * become U+2581, and GGUF "llama" ones). The protobuf reader checks every
 * length against the bytes left. */
#include <string.h>

#include "model/tokenizer_internal.h"

#define SPM_SPACE "\xe2\x96\x81"

typedef struct {
    const uint8_t *p, *end;
} pb;

static int pb_varint(pb *b, uint64_t *v) {
    uint64_t x = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (b->p >= b->end) return 0;
        uint8_t c = *b->p++;
        if (shift == 63 && c > 1) return 0; /* past 64 bits */
        x |= (uint64_t)(c & 0x7F) << shift;
        if (!(c & 0x80)) {
            *v = x;
            return 1;
        }
    }
    return 0;
}

/* One field: its number, wire type and value (varint / fixed32 in *v, a
 * length-delimited payload in *sub). */
typedef struct {
    uint32_t field;
    int wire;
    uint64_t v;
    pb sub;
} pb_field;

static lb_status pb_next(pb *b, const uint8_t *base, const char *what, pb_field *f) {
    uint64_t key;
    size_t at = (size_t)(b->p - base);
    if (!pb_varint(b, &key)) return lb_fail(LB_ERR_FORMAT, "tokenizer.model: byte %zu: truncated field key in %s", at, what);
    f->field = (uint32_t)(key >> 3);
    f->wire = (int)(key & 7);
    if (key >> 3 == 0 || key >> 3 > 0x1FFFFFFF)
        return lb_fail(LB_ERR_FORMAT, "tokenizer.model: byte %zu: field number 0 or too large in %s", at, what);
    switch (f->wire) {
    case 0:
        if (!pb_varint(b, &f->v)) break;
        return LB_OK;
    case 1:
        if (b->end - b->p < 8) break;
        f->v = lb_rd64(b->p);
        b->p += 8;
        return LB_OK;
    case 2: {
        uint64_t n;
        if (!pb_varint(b, &n) || n > (uint64_t)(b->end - b->p)) break;
        f->sub.p = b->p;
        f->sub.end = b->p + n;
        b->p += n;
        return LB_OK;
    }
    case 5:
        if (b->end - b->p < 4) break;
        f->v = lb_rd32(b->p);
        b->p += 4;
        return LB_OK;
    default:
        return lb_fail(LB_ERR_FORMAT, "tokenizer.model: byte %zu: wire type %d (groups or unknown) in %s", at, f->wire, what);
    }
    return lb_fail(LB_ERR_FORMAT, "tokenizer.model: byte %zu: field %u of %s runs past the end of its message", at,
                   f->field, what);
}

static lb_status want_wire(const pb_field *f, int wire, const char *what) {
    if (f->wire == wire) return LB_OK;
    return lb_fail(LB_ERR_FORMAT, "tokenizer.model: %s field %u has wire type %d, expected %d", what, f->field, f->wire, wire);
}

typedef struct {
    const char **pieces;
    size_t *lens;
    float *scores;
    int32_t *types;
    size_t n, cap;
    int64_t unk, bos, eos, model_type, add_dummy_prefix;
} spm_model;

static lb_status read_piece(const uint8_t *base, pb sub, spm_model *s) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 1024;
        if (cap > (1u << 24)) return lb_fail(LB_ERR_FORMAT, "tokenizer.model: more than %u pieces", 1u << 24);
        const char **p = lb_alloc(cap * sizeof *p);
        size_t *l = lb_alloc(cap * sizeof *l);
        float *sc = lb_alloc(cap * sizeof *sc);
        int32_t *ty = lb_alloc(cap * sizeof *ty);
        if (p && l && sc && ty && s->n) {
            memcpy(p, s->pieces, s->n * sizeof *p);
            memcpy(l, s->lens, s->n * sizeof *l);
            memcpy(sc, s->scores, s->n * sizeof *sc);
            memcpy(ty, s->types, s->n * sizeof *ty);
        }
        lb_free(s->pieces), lb_free(s->lens), lb_free(s->scores), lb_free(s->types);
        s->pieces = p, s->lens = l, s->scores = sc, s->types = ty, s->cap = cap;
        if (!p || !l || !sc || !ty) return LB_ERR_NOMEM;
    }
    size_t i = s->n;
    s->pieces[i] = NULL;
    s->lens[i] = 0;
    s->scores[i] = 0;
    s->types[i] = LB_TOKEN_NORMAL;
    while (sub.p < sub.end) {
        pb_field f;
        lb_status st = pb_next(&sub, base, "a piece", &f);
        if (st != LB_OK) return st;
        if (f.field == 1) {
            if ((st = want_wire(&f, 2, "piece")) != LB_OK) return st;
            s->pieces[i] = (const char *)f.sub.p;
            s->lens[i] = (size_t)(f.sub.end - f.sub.p);
        } else if (f.field == 2) {
            if ((st = want_wire(&f, 5, "piece")) != LB_OK) return st;
            uint32_t u = (uint32_t)f.v;
            memcpy(&s->scores[i], &u, 4);
        } else if (f.field == 3) {
            if ((st = want_wire(&f, 0, "piece")) != LB_OK) return st;
            if (f.v < 1 || f.v > 6)
                return lb_fail(LB_ERR_FORMAT, "tokenizer.model: piece %zu has type %llu, outside SentencePiece's 1..6", i,
                               (unsigned long long)f.v);
            s->types[i] = (int32_t)f.v;
        }
    }
    if (!s->pieces[i] || !s->lens[i]) return lb_fail(LB_ERR_FORMAT, "tokenizer.model: piece %zu has no text", i);
    s->n++;
    return LB_OK;
}

/* int32 fields arrive as varints of the sign-extended 64-bit value */
static lb_status read_spec(const uint8_t *base, pb sub, const char *what, spm_model *s, int trainer) {
    while (sub.p < sub.end) {
        pb_field f;
        lb_status st = pb_next(&sub, base, what, &f);
        if (st != LB_OK) return st;
        int64_t *dst = NULL;
        if (trainer) dst = f.field == 3 ? &s->model_type : f.field == 40 ? &s->unk : f.field == 41 ? &s->bos : f.field == 42 ? &s->eos : NULL;
        else dst = f.field == 3 ? &s->add_dummy_prefix : NULL;
        if (!dst) continue;
        if ((st = want_wire(&f, 0, what)) != LB_OK) return st;
        *dst = (int64_t)(int32_t)(uint32_t)f.v;
    }
    return LB_OK;
}

static lb_status check_id(const char *name, int64_t id, size_t n) {
    if (id < -1 || id >= (int64_t)n)
        return lb_fail(LB_ERR_FORMAT, "tokenizer.model: %s %lld is outside the %zu pieces", name, (long long)id, n);
    return LB_OK;
}

lb_status lb_tokenizer_from_spm(const uint8_t *data, size_t size, lb_tokenizer **out) {
    if (!out) return lb_fail(LB_ERR_INVALID, "tokenizer: NULL output pointer");
    *out = NULL;
    spm_model s = {.unk = 0, .bos = 1, .eos = 2, .model_type = 1, .add_dummy_prefix = 1};
    pb b = {data, data + size};
    lb_tokenizer *t = NULL;
    lb_status st = LB_OK;
    while (b.p < b.end && st == LB_OK) {
        pb_field f;
        if ((st = pb_next(&b, data, "the model", &f)) != LB_OK) break;
        if (f.field < 1 || f.field > 3) continue;
        if ((st = want_wire(&f, 2, "model")) != LB_OK) break;
        if (f.field == 1) st = read_piece(data, f.sub, &s);
        else st = read_spec(data, f.sub, f.field == 2 ? "trainer_spec" : "normalizer_spec", &s, f.field == 2);
    }
    if (st != LB_OK) goto done;
    if (s.n < 3) {
        st = lb_fail(LB_ERR_FORMAT, "tokenizer.model: %zu pieces (not a SentencePiece model?)", s.n);
        goto done;
    }
    if (s.model_type != 2) {
        st = lb_fail(LB_ERR_UNSUPPORTED, "tokenizer.model: SentencePiece model type %lld (%s) is not supported; lowbit "
                     "reads BPE models (type 2), as Llama's", (long long)s.model_type,
                     s.model_type == 1 ? "unigram" : s.model_type == 3 ? "word" : s.model_type == 4 ? "char" : "unknown");
        goto done;
    }
    if ((st = check_id("unk_id", s.unk, s.n)) || (st = check_id("bos_id", s.bos, s.n)) || (st = check_id("eos_id", s.eos, s.n)))
        goto done;
    if ((st = lb_tokenizer_build((int)s.n, s.pieces, s.lens, s.scores, (int)s.bos, (int)s.eos, 1, &t)) != LB_OK) goto done;
    t->kind = LB_TOK_SPM;
    t->unk_id = (int)s.unk;
    t->add_bos = 1;
    t->add_eos = 0;
    t->add_space_prefix = s.add_dummy_prefix != 0;
    if (!(t->types = lb_alloc(s.n * sizeof *t->types))) {
        st = LB_ERR_NOMEM;
        goto done;
    }
    memcpy(t->types, s.types, s.n * sizeof *t->types);
    st = lb_tokenizer_prepare(t);
done:
    lb_free(s.pieces), lb_free(s.lens), lb_free(s.scores), lb_free(s.types);
    if (st != LB_OK) {
        lb_tokenizer_free(t);
        return st;
    }
    *out = t;
    return LB_OK;
}

lb_status lb_tokenizer_load_spm(const char *path, lb_tokenizer **out) {
    if (!out || !path) return lb_fail(LB_ERR_INVALID, "tokenizer: NULL path or output pointer");
    *out = NULL;
    lb_mapped_file f;
    lb_status st = lb_map_file(path, &f);
    if (st != LB_OK) return st;
    st = lb_tokenizer_from_spm(f.data, f.size, out);
    lb_unmap_file(&f);
    if (st != LB_OK) return lb_fail_context(st, "reading '%s'", path);
    return LB_OK;
}

/* ---- writing ---------------------------------------------------------------- */

typedef struct {
    uint8_t *p;
    size_t n, cap;
    int failed;
} pb_buf;

static void put(pb_buf *b, const void *data, size_t n) {
    if (b->failed || n == 0) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) cap *= 2;
        uint8_t *q = lb_alloc(cap);
        if (!q) {
            b->failed = 1;
            return;
        }
        if (b->n) memcpy(q, b->p, b->n);
        lb_free(b->p);
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void put_varint(pb_buf *b, uint64_t v) {
    uint8_t t[10];
    size_t k = 0;
    do {
        t[k++] = (uint8_t)((v & 0x7F) | (v > 0x7F ? 0x80 : 0));
        v >>= 7;
    } while (v);
    put(b, t, k);
}

static void put_key(pb_buf *b, uint32_t field, int wire) { put_varint(b, (uint64_t)field << 3 | (uint64_t)wire); }
static void put_int(pb_buf *b, uint32_t field, int64_t v) {
    put_key(b, field, 0);
    put_varint(b, (uint64_t)v); /* negative int32: sign-extended, ten bytes, as protobuf does */
}
static void put_bytes(pb_buf *b, uint32_t field, const void *data, size_t n) {
    put_key(b, field, 2);
    put_varint(b, n);
    put(b, data, n);
}

lb_status lb_tokenizer_save_spm(const lb_tokenizer *t, const char *path) {
    if (!t || !path) return lb_fail(LB_ERR_INVALID, "tokenizer: NULL tokenizer or path");
    if (t->kind == LB_TOK_BPE)
        return lb_fail(LB_ERR_UNSUPPORTED, "tokenizer: a byte-level BPE vocabulary (\"gpt2\") cannot be written as "
                       "SentencePiece's tokenizer.model");
    int llama2c = t->kind == LB_TOK_LLAMA2C, any_byte = 0;
    pb_buf out = {0}, piece = {0}, text = {0};
    for (int i = 0; i < t->vocab_size; i++) {
        size_t len;
        const char *p = lb_tokenizer_piece(t, i, &len);
        uint8_t byte;
        int32_t type;
        text.n = 0;
        for (size_t k = 0; k < len; k++) { /* llama2.c pieces hold ' ' where sentencepiece stores U+2581 */
            if (llama2c && p[k] == ' ') put(&text, SPM_SPACE, 3);
            else put(&text, p + k, 1);
        }
        if (!llama2c) type = t->types[i];
        else if (i == 0) type = LB_TOKEN_UNKNOWN; /* as lb_tokenizer_write_gguf types llama2.c's ids */
        else if (i == t->bos_id || i == t->eos_id) type = LB_TOKEN_CONTROL;
        else if (lb_tokenizer_byte_piece(t, i, &byte)) type = LB_TOKEN_BYTE;
        else type = LB_TOKEN_NORMAL;
        if (type < LB_TOKEN_NORMAL) type = LB_TOKEN_NORMAL; /* llama.cpp's "undefined" has no SentencePiece number */
        any_byte |= type == LB_TOKEN_BYTE;
        piece.n = 0;
        put_bytes(&piece, 1, text.p ? text.p : (const uint8_t *)"", text.n);
        uint32_t u;
        memcpy(&u, &t->scores[i], 4);
        uint8_t f[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
        put_key(&piece, 2, 5);
        put(&piece, f, 4);
        put_int(&piece, 3, type);
        put_bytes(&out, 1, piece.p, piece.n);
    }
    pb_buf spec = {0};
    put_int(&spec, 3, 2); /* BPE */
    put_int(&spec, 4, t->vocab_size);
    put_int(&spec, 35, any_byte);
    put_int(&spec, 40, llama2c ? 0 : t->unk_id);
    put_int(&spec, 41, t->bos_id);
    put_int(&spec, 42, t->eos_id);
    put_int(&spec, 43, -1);
    put_bytes(&out, 2, spec.p, spec.n);
    spec.n = 0;
    put_bytes(&spec, 1, "identity", 8);
    put_int(&spec, 3, llama2c ? 1 : t->add_space_prefix);
    put_int(&spec, 4, 0);
    put_int(&spec, 5, 1);
    put_bytes(&out, 3, spec.p, spec.n);
    lb_status st = LB_OK;
    if (out.failed || piece.failed || text.failed || spec.failed) {
        st = LB_ERR_NOMEM;
    } else {
        lb_atomic_file f;
        if ((st = lb_atomic_open(&f, path)) == LB_OK) {
            lb_atomic_write(&f, out.p, out.n);
            st = lb_atomic_commit(&f);
        }
    }
    lb_free(out.p), lb_free(piece.p), lb_free(text.p), lb_free(spec.p);
    return st;
}
