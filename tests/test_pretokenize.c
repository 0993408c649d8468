/* The byte-level BPE pre-tokenizers on hand-written cases whose split
 * follows from the regexes by hand (pretokenize.c's comments give the
 * reasoning): contractions, digit groups, whitespace runs before text and at
 * the end, CR/LF, punctuation runs, non-ASCII letters and digits. Also the
 * Unicode class table and GPT-2's byte map. */
#include "test.h"

#include "model/unicode.h"

/* The words of text under pre, joined with '|'. */
static const char *split(lb_pretok pre, const char *text) {
    static char out[1024];
    size_t len = strlen(text);
    uint32_t cpts[256];
    size_t ends[256], n_words, n = lb_utf8_decode(text, len, cpts), o = 0, byte = 0, cpt = 0;
    if (lb_pretokenize(pre, cpts, n, ends, &n_words) != LB_OK) return "(error)";
    for (size_t w = 0; w < n_words; w++) {
        if (w) out[o++] = '|';
        for (; cpt < ends[w]; cpt++) {
            size_t k = lb_utf8_lead_len((uint8_t)text[byte]);
            memcpy(out + o, text + byte, k);
            o += k;
            byte += k;
        }
    }
    out[o] = 0;
    return out;
}

#define SPLITS(pre, text, want)                                                          \
    do {                                                                                 \
        const char *got_ = split(pre, text);                                             \
        CHECK_MSG(!strcmp(got_, want), "%s: \"%s\" -> \"%s\", want \"%s\"", #pre, text, \
                  got_, want);                                                           \
    } while (0)

static void test_gpt2(void) {
    SPLITS(LB_PRE_GPT2, "Hello world", "Hello| world");
    SPLITS(LB_PRE_GPT2, "I've been 'told he's", "I|'ve| been| '|told| he|'s");
    SPLITS(LB_PRE_GPT2, "'RE 'Ll", "'|RE| '|Ll"); /* contractions are lower case only */
    SPLITS(LB_PRE_GPT2, "  Hello", " | Hello");   /* \s+(?!\S) gives the last space back */
    SPLITS(LB_PRE_GPT2, "a   b", "a|  | b");
    SPLITS(LB_PRE_GPT2, "a   ", "a|   "); /* at the end the whole run goes */
    SPLITS(LB_PRE_GPT2, "\tx", "\t|x");    /* a lone tab before text matches nothing: a gap */
    SPLITS(LB_PRE_GPT2, "a\n\nb", "a|\n|\n|b");
    SPLITS(LB_PRE_GPT2, "3333 x33", "3333| x|33");
    SPLITS(LB_PRE_GPT2, "x!!!? ...", "x|!!!?| ...");
    SPLITS(LB_PRE_GPT2, "na\xc3\xafve caf\xc3\xa9", "na\xc3\xafve| caf\xc3\xa9");           /* naïve café */
    SPLITS(LB_PRE_GPT2, "\xd0\x9f\xd1\x80\xd0\xb8 \xe4\xbd\xa0\xe5\xa5\xbd!", /* При 你好! */
           "\xd0\x9f\xd1\x80\xd0\xb8| \xe4\xbd\xa0\xe5\xa5\xbd|!");
    SPLITS(LB_PRE_GPT2, "a\xc2\xa0" "b", "a|\xc2\xa0|b"); /* NBSP is whitespace, but not the ' ' of " ?" */
    SPLITS(LB_PRE_GPT2, "", "");
}

static void test_falcon_starcoder_default(void) {
    SPLITS(LB_PRE_FALCON, "3333 12345", "333|3| |123|45"); /* [0-9]{3} leaves the space a gap */
    SPLITS(LB_PRE_FALCON, "x `y`", "x| |`|y|`");
    SPLITS(LB_PRE_FALCON, "a+=b", "a|+=|b"); /* punctuation and $+<=>^~|` runs are cut first */
    SPLITS(LB_PRE_DEFAULT, "3333 a`", "333|3| a|`"); /* default: no backtick in the first class */
    SPLITS(LB_PRE_DEFAULT, "x+1", "x|+|1");
    SPLITS(LB_PRE_STARCODER, "a123 b", "a|1|2|3| b");
    SPLITS(LB_PRE_STARCODER, "x\xd9\xa3\xd9\xa4", "x|\xd9\xa3|\xd9\xa4"); /* Arabic-Indic digits are \p{N} */
}

static void test_llama3_qwen2(void) {
    SPLITS(LB_PRE_LLAMA3, "HELLO'S 12345", "HELLO|'S| |123|45");
    SPLITS(LB_PRE_LLAMA3, " hello\n\nworld", " hello|\n\n|world");
    SPLITS(LB_PRE_LLAMA3, "x  \n y", "x|  \n| y");
    SPLITS(LB_PRE_LLAMA3, "(hello) ...\n\nok", "(hello|)| ...\n\n|ok");
    SPLITS(LB_PRE_LLAMA3, "a   ", "a|   ");
    SPLITS(LB_PRE_LLAMA3, "a   b", "a|  | b");
    SPLITS(LB_PRE_QWEN2, "12345 x", "1|2|3|4|5| x");
}

static void test_tables(void) {
    CHECK(lb_unicode_classes('a') == LB_UC_LETTER && lb_unicode_classes('7') == LB_UC_NUMBER);
    CHECK(lb_unicode_classes('!') == LB_UC_PUNCT && lb_unicode_classes('$') == 0); /* $ is \p{S} */
    CHECK(lb_unicode_classes(' ') == LB_UC_SPACE && lb_unicode_classes(0x3000) == LB_UC_SPACE);
    CHECK(lb_unicode_classes(0x1C) == 0); /* not White_Space, though Python's isspace says so */
    CHECK(lb_unicode_classes(0x4F60) == LB_UC_LETTER && lb_unicode_classes(0x2167) == LB_UC_NUMBER); /* 你, Ⅷ */
    CHECK(lb_unicode_classes(0x10FFFF) == 0 && lb_unicode_classes(0xE000) == 0);
    /* GPT-2's map is a bijection from bytes onto 256 printable characters */
    int ok = 1;
    for (int b = 0; b < 256; b++) {
        uint32_t c = lb_gpt2_byte_to_cpt((uint8_t)b);
        ok &= lb_gpt2_cpt_to_byte(c) == b && (c > ' ' && c != 0x7F && c != 0xAD && (c < 0x80 || c > 0xA0));
    }
    CHECK(ok);
    CHECK(lb_gpt2_byte_to_cpt(' ') == 0x120 && lb_gpt2_byte_to_cpt('\n') == 0x10A && lb_gpt2_byte_to_cpt('a') == 'a');
    CHECK(lb_gpt2_cpt_to_byte(0x200) == -1 && lb_gpt2_cpt_to_byte(0x7F) == -1);
}

static void test_names(void) {
    lb_pretok p;
    int ignore;
    CHECK_OK(lb_pretok_from_name("gpt-2", 5, &p, &ignore));
    CHECK(p == LB_PRE_GPT2 && !ignore);
    CHECK_OK(lb_pretok_from_name("llama-bpe", 9, &p, &ignore));
    CHECK(p == LB_PRE_LLAMA3 && ignore);
    CHECK_OK(lb_pretok_from_name("smollm", 6, &p, &ignore));
    CHECK(p == LB_PRE_STARCODER);
    CHECK_FAILS(lb_pretok_from_name("bloom", 5, &p, &ignore), LB_ERR_UNSUPPORTED, "'bloom'");
    CHECK_FAILS(lb_pretok_from_name("gpt-", 4, &p, &ignore), LB_ERR_UNSUPPORTED, "supported: default, gpt-2");
}

int main(void) {
    test_gpt2();
    test_falcon_starcoder_default();
    test_llama3_qwen2();
    test_tables();
    test_names();
    return lb_test_finish("test_pretokenize");
}
