/* Byte-level BPE pre-tokenizers: the regexes llama.cpp selects by
 * tokenizer.ggml.pre, implemented by hand over Unicode classes (lowbit takes
 * no regex library). Each pre-tokenizer is a list of stages; a stage is one
 * regex, run as a regex iterator runs it: from the left, find the leftmost
 * match, cut the text before it (the gap) and the match itself into separate
 * pieces, continue after the match. Each stage sees one piece of the previous
 * stage at a time, so a lookahead like (?!\S) sees the end of the piece.
 *
 * Each matcher below answers "the length of the match starting exactly at
 * pos, 0 if none", following the regex's alternation order (the first
 * alternative that matches wins, quantifiers greedy with backtracking worked
 * out by hand in the comments).
 *
 * Also here: UTF-8 helpers, the class table lookup, GPT-2's byte map. */
#include <string.h>

#include "model/unicode.h"

unsigned lb_unicode_classes(uint32_t cpt) {
    size_t lo = 0, hi = lb_unicode_n_ranges;
    while (lo < hi) { /* first range whose last >= cpt */
        size_t mid = lo + (hi - lo) / 2;
        if (lb_unicode_ranges[mid].last < cpt)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < lb_unicode_n_ranges && lb_unicode_ranges[lo].first <= cpt) return lb_unicode_ranges[lo].classes;
    return 0;
}

size_t lb_utf8_lead_len(uint8_t c) {
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) return 2;
    if ((c & 0xF0) == 0xE0) return 3;
    if ((c & 0xF8) == 0xF0) return 4;
    return 1;
}

size_t lb_utf8_decode(const char *text, size_t len, uint32_t *cpts) {
    const uint8_t *s = (const uint8_t *)text;
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        size_t k = lb_utf8_lead_len(s[i]);
        if (k > len - i) k = 1; /* only on invalid input, which callers reject */
        uint32_t c = k == 1 ? s[i] : (uint32_t)(s[i] & (0x7F >> k));
        for (size_t j = 1; j < k; j++) c = (c << 6) | (s[i + j] & 0x3F);
        cpts[n++] = c;
        i += k;
    }
    return n;
}

size_t lb_utf8_encode(uint32_t c, char *out) {
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xC0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | (c >> 12));
        out[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (c >> 18));
    out[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* printable Latin-1 bytes stand for themselves in GPT-2's vocabulary */
static int gpt2_keeps(unsigned b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE; }

/* The remapped bytes are 0x00..0x20 (33), 0x7F..0xA0 (34) and 0xAD, taking
 * U+0100.. in that order. */
uint32_t lb_gpt2_byte_to_cpt(uint8_t byte) {
    if (gpt2_keeps(byte)) return byte;
    if (byte <= 0x20) return 0x100 + byte;
    if (byte <= 0xA0) return 0x100 + 33 + (byte - 0x7Fu);
    return 0x100 + 33 + 34; /* 0xAD */
}

int lb_gpt2_cpt_to_byte(uint32_t cpt) {
    if (cpt < 0x100) return gpt2_keeps(cpt) ? (int)cpt : -1;
    if (cpt < 0x100 + 33) return (int)(cpt - 0x100);
    if (cpt < 0x100 + 33 + 34) return (int)(cpt - 0x100 - 33 + 0x7F);
    return cpt == 0x100 + 33 + 34 ? 0xAD : -1;
}

/* ---- matchers ------------------------------------------------------------ */

typedef struct {
    const uint32_t *c;
    size_t end; /* one past the piece being split */
} piece;

static unsigned cls(const piece *p, size_t i) { return i < p->end ? lb_unicode_classes(p->c[i]) : 0; }
static int is_ws(const piece *p, size_t i) { return (cls(p, i) & LB_UC_SPACE) != 0; }
static int is_letter(const piece *p, size_t i) { return (cls(p, i) & LB_UC_LETTER) != 0; }
static int is_number(const piece *p, size_t i) { return (cls(p, i) & LB_UC_NUMBER) != 0; }
/* [^\s\p{L}\p{N}], inside the piece */
static int is_other(const piece *p, size_t i) {
    return i < p->end && !(cls(p, i) & (LB_UC_SPACE | LB_UC_LETTER | LB_UC_NUMBER));
}
static int is_crlf(const piece *p, size_t i) { return i < p->end && (p->c[i] == '\r' || p->c[i] == '\n'); }
static uint32_t lower_ascii(uint32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

static size_t run(const piece *p, size_t i, int (*in)(const piece *, size_t)) {
    while (in(p, i)) i++;
    return i;
}

/* 's|'t|'re|'ve|'m|'ll|'d, case-insensitive for llama3's (?i:...) form */
static size_t contraction(const piece *p, size_t pos, int any_case) {
    if (p->c[pos] != '\'' || pos + 1 >= p->end) return 0;
    uint32_t a = p->c[pos + 1], b = pos + 2 < p->end ? p->c[pos + 2] : 0;
    if (any_case) {
        a = lower_ascii(a);
        b = lower_ascii(b);
    }
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

/* \s+(?!\S): greedy whitespace, then give one back when a non-space follows
 * (the lookahead must see whitespace or the end); 0 if that leaves nothing */
static size_t spaces_not_before_text(const piece *p, size_t pos) {
    size_t r = run(p, pos, is_ws);
    if (r == pos) return 0;
    if (r == p->end) return r - pos;
    return r - pos >= 2 ? r - pos - 1 : 0;
}

/* GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)
 * A lone whitespace before text matches nothing: it becomes a gap piece. */
static size_t match_gpt2(const piece *p, size_t pos) {
    size_t n = contraction(p, pos, 0);
    if (n) return n;
    /* " ?X+": the optional space is taken when X follows it; without it X
     * would have to start at the space, which no X class contains */
    size_t at = (p->c[pos] == ' ' && pos + 1 < p->end) ? pos + 1 : pos;
    if (is_letter(p, at)) return run(p, at, is_letter) - pos;
    if (is_number(p, at)) return run(p, at, is_number) - pos;
    if (is_other(p, at)) return run(p, at, is_other) - pos;
    return spaces_not_before_text(p, pos);
}

/* llama3 (digits = 3) and qwen2 (digits = 1):
 * (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,digits}
 * | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static size_t match_llama3(const piece *p, size_t pos, size_t digits) {
    size_t n = contraction(p, pos, 1);
    if (n) return n;
    /* one leading char that is not CR/LF/letter/number, if letters follow */
    if (!is_crlf(p, pos) && !is_letter(p, pos) && !is_number(p, pos) && is_letter(p, pos + 1))
        return run(p, pos + 1, is_letter) - pos;
    if (is_letter(p, pos)) return run(p, pos, is_letter) - pos;
    if (is_number(p, pos)) {
        size_t e = pos;
        while (e - pos < digits && is_number(p, e)) e++;
        return e - pos;
    }
    size_t at = (p->c[pos] == ' ' && pos + 1 < p->end) ? pos + 1 : pos;
    if (is_other(p, at)) return run(p, run(p, at, is_other), is_crlf) - pos;
    /* \s*[\r\n]+: backtracking ends the match after the last CR/LF of the run */
    size_t r = run(p, pos, is_ws);
    for (size_t k = r; k > pos; k--)
        if (is_crlf(p, k - 1)) return k - pos;
    n = spaces_not_before_text(p, pos);
    if (n) return n;
    return r - pos; /* \s+ */
}

static int is_punct_or_sym_bt(const piece *p, size_t i) {
    if (i >= p->end) return 0;
    uint32_t c = p->c[i];
    return (cls(p, i) & LB_UC_PUNCT) || (c && c < 128 && strchr("$+<=>^~|`", (int)c));
}
static int is_punct_or_sym(const piece *p, size_t i) { return is_punct_or_sym_bt(p, i) && p->c[i] != '`'; }
static int is_ascii_digit(const piece *p, size_t i) { return i < p->end && p->c[i] >= '0' && p->c[i] <= '9'; }

typedef enum {
    ST_GPT2,
    ST_LLAMA3,
    ST_QWEN2,
    ST_PUNCT,      /* [\p{P}\$\+<=>\^~\|]+ */
    ST_PUNCT_BT,   /* [\p{P}\$\+<=>\^~\|`]+ */
    ST_NUMBER,     /* \p{N} */
    ST_NUMBERS,    /* \p{N}+ */
    ST_DIGITS3,    /* [0-9][0-9][0-9] */
    ST_NONE
} stage;

static size_t match(stage s, const piece *p, size_t pos) {
    switch (s) {
    case ST_GPT2: return match_gpt2(p, pos);
    case ST_LLAMA3: return match_llama3(p, pos, 3);
    case ST_QWEN2: return match_llama3(p, pos, 1);
    case ST_PUNCT: return run(p, pos, is_punct_or_sym) - pos;
    case ST_PUNCT_BT: return run(p, pos, is_punct_or_sym_bt) - pos;
    case ST_NUMBER: return is_number(p, pos) ? 1 : 0;
    case ST_NUMBERS: return run(p, pos, is_number) - pos;
    case ST_DIGITS3: return is_ascii_digit(p, pos) && is_ascii_digit(p, pos + 1) && is_ascii_digit(p, pos + 2) ? 3 : 0;
    default: return 0;
    }
}

static const struct {
    const char *names; /* tokenizer.ggml.pre values, '|'-separated */
    stage stages[4];
    int ignore_merges;
} pretoks[LB_PRE_COUNT] = {
    [LB_PRE_DEFAULT] = {"default", {ST_PUNCT, ST_GPT2, ST_NUMBERS, ST_DIGITS3}, 0},
    [LB_PRE_GPT2] = {"gpt-2|phi-2|mpt|olmo", {ST_GPT2, ST_NONE}, 0},
    [LB_PRE_FALCON] = {"falcon", {ST_PUNCT_BT, ST_GPT2, ST_DIGITS3, ST_NONE}, 0},
    [LB_PRE_STARCODER] = {"starcoder|refact|smollm", {ST_NUMBER, ST_GPT2, ST_NONE}, 0},
    [LB_PRE_LLAMA3] = {"llama3|llama-v3|llama-bpe|falcon3", {ST_LLAMA3, ST_NONE}, 1},
    [LB_PRE_QWEN2] = {"qwen2|deepseek-r1-qwen", {ST_QWEN2, ST_NONE}, 0},
};

static int name_in(const char *names, const char *name, size_t len) {
    for (const char *p = names; *p;) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == len && memcmp(p, name, len) == 0) return 1;
        p += n + (bar != NULL);
    }
    return 0;
}

const char *lb_pretok_supported(void) {
    return "default, gpt-2, phi-2, mpt, olmo, falcon, starcoder, refact, smollm, llama3, llama-v3, llama-bpe, "
           "falcon3, qwen2, deepseek-r1-qwen";
}

lb_status lb_pretok_from_name(const char *name, size_t len, lb_pretok *out, int *ignore_merges) {
    for (int i = 0; i < LB_PRE_COUNT; i++)
        if (name_in(pretoks[i].names, name, len)) {
            *out = (lb_pretok)i;
            *ignore_merges = pretoks[i].ignore_merges;
            return LB_OK;
        }
    return lb_fail(LB_ERR_UNSUPPORTED, "tokenizer: pre-tokenizer '%.*s' (tokenizer.ggml.pre) is not supported; "
                   "supported: %s", (int)(len > 64 ? 64 : len), name, lb_pretok_supported());
}

const char *lb_pretok_name(lb_pretok p) {
    static const char *first[LB_PRE_COUNT] = {"default", "gpt-2", "falcon", "starcoder", "llama3", "qwen2"};
    return (unsigned)p < LB_PRE_COUNT ? first[p] : "?";
}

/* Splits piece [start, end) by stage s, appending the piece ends to ends. */
static void split(stage s, const uint32_t *cpts, size_t start, size_t end, size_t *ends, size_t *n) {
    piece p = {cpts, end};
    size_t gap = start;
    for (size_t pos = start; pos < end;) {
        size_t m = match(s, &p, pos);
        if (!m) {
            pos++;
            continue;
        }
        if (pos > gap) ends[(*n)++] = pos;
        pos += m;
        ends[(*n)++] = pos;
        gap = pos;
    }
    if (gap < end) ends[(*n)++] = end;
}

lb_status lb_pretokenize(lb_pretok pre, const uint32_t *cpts, size_t n, size_t *ends, size_t *n_words) {
    if ((unsigned)pre >= LB_PRE_COUNT) return lb_fail(LB_ERR_INVALID, "pretokenize: unknown pre-tokenizer %d", (int)pre);
    *n_words = 0;
    if (n == 0) return LB_OK;
    /* pieces only get cut finer, so every stage fits in n ends; the stage
     * reads the previous ends while writing new ones, so it copies them */
    size_t *prev = lb_alloc(n * sizeof *prev);
    if (!prev) return LB_ERR_NOMEM;
    size_t n_prev = 1;
    prev[0] = n;
    for (int k = 0; k < 4 && pretoks[pre].stages[k] != ST_NONE; k++) {
        size_t m = 0, start = 0;
        for (size_t i = 0; i < n_prev; i++) {
            split(pretoks[pre].stages[k], cpts, start, prev[i], ends, &m);
            start = prev[i];
        }
        memcpy(prev, ends, m * sizeof *ends);
        n_prev = m;
    }
    memcpy(ends, prev, n_prev * sizeof *ends);
    *n_words = n_prev;
    lb_free(prev);
    return LB_OK;
}
