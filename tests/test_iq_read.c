/* llama.cpp's codebook types, read (src/formats/iq_read.c, grids in
 * iq_grids.c): IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M.
 *  - the grids: each expanded table hashed (FNV-1a over its bytes, value j
 *    of entry i at byte 8 i + j or 4 i + j, as ggml stores them) against
 *    the hash of ggml's own table (scripts/gen-iq-grids.py prints them),
 *    the computed ksigns_iq2xs likewise, and a few entries copied from
 *    ggml-common.h by hand (they pin the order of the values);
 *  - known answers: hand-made blocks whose values are written out here, and
 *    random logical contents (every grid index, sign byte, scale, delta
 *    sign, the fp16 d) packed into ggml's block layout by packers written
 *    from ggml-common.h's block_iq* structs (not from iq_read.c), every
 *    dequantized weight equal to the type's formula on those contents
 *    (the same float products as ggml's dequantize_row_iq*);
 *  - the spec text, ggml ids both ways, sizes and bpw, a padded row, a
 *    tensor through lb_linear_forward's generic kernel;
 *  - refusals: too few bytes for the shape, GGUF rows that are not whole
 *    blocks (written or read) and a cut GGUF file, quantizing into the types;
 *  - stories260K with codebook linears through GGUF and back (same logits),
 *    then requantized to int8 from their decoded weights.
 * (Against ggml itself, value by value: scripts/ggml_dequant_check.c.) */
#include "test.h"

#include "formats/format_internal.h"

#include <stdint.h>
#include <unistd.h>

enum { QK = 256 };

static lb_rng rng;

static int rnd(int n) { return (int)(lb_rng_u32(&rng) % (uint32_t)n); }
static float rnd_f16(float lo, float hi) { return lb_round_fp16(lo + (hi - lo) * lb_rng_f32(&rng)); }
static void put16(uint8_t *p, unsigned v) {
    p[0] = (uint8_t)(v & 255);
    p[1] = (uint8_t)(v >> 8);
}
static void put32(uint8_t *p, uint32_t v) {
    for (int k = 0; k < 4; k++) p[k] = (uint8_t)(v >> 8 * k);
}
/* ksigns_iq2xs by its definition: 7 stored sign bits, the 8th makes the count even */
static unsigned sign8(unsigned k7) { return k7 | ((unsigned)__builtin_popcount(k7) & 1) << 7; }
static float sgn(unsigned signs, int j) { return signs >> j & 1 ? -1.0f : 1.0f; }

static uint32_t fnv1a(const void *p, size_t n) {
    const uint8_t *b = p;
    uint32_t h = 0x811C9DC5u;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x01000193u;
    return h;
}

static void test_grids(void) {
    const lb_iq_grids *G = lb_iq_grid_tables();
    /* the hashes of ggml's tables (commit 0253fb21; the tables have not
     * changed since the types were added) */
    CHECK(fnv1a(G->iq2xxs, sizeof G->iq2xxs) == 0x3db4a16eu);
    CHECK(fnv1a(G->iq2xs, sizeof G->iq2xs) == 0xebeb17ddu);
    CHECK(fnv1a(G->iq2s, sizeof G->iq2s) == 0x82981110u);
    CHECK(fnv1a(G->iq3xxs, sizeof G->iq3xxs) == 0x49a45035u);
    CHECK(fnv1a(G->iq3s, sizeof G->iq3s) == 0x71cc6c89u);
    CHECK(fnv1a(G->iq1s, sizeof G->iq1s) == 0x2fe8cbceu);
    CHECK(fnv1a(G->signs, sizeof G->signs) == 0xaba69a45u);
    CHECK(sizeof G->iq2xxs == 256 * 8 && sizeof G->iq1s == 2048 * 8 && sizeof G->iq3s == 512 * 4);
    /* entries from ggml-common.h (uint64 0x2b2b2b1908081908 is values 08 19 08 08 19 2b 2b 2b) */
    static const uint8_t xxs255[8] = {8, 25, 8, 8, 25, 43, 43, 43}, xs100[8] = {8, 25, 8, 8, 43, 25, 8, 8};
    static const uint8_t s100[8] = {43, 25, 25, 25, 8, 25, 8, 8}, s1023[8] = {43, 43, 43, 43, 43, 43, 43, 43};
    static const uint8_t x3_255[4] = {4, 28, 52, 62}, s3_100[4] = {1, 1, 15, 1};
    static const int8_t one1[8] = {1, -1, -1, -1, -1, -1, -1, -1}, one100[8] = {0, 0, 0, 0, 0, 0, -1, -1};
    CHECK(!memcmp(G->iq2xxs[255], xxs255, 8) && !memcmp(G->iq2xs[100], xs100, 8));
    CHECK(!memcmp(G->iq2s[100], s100, 8) && !memcmp(G->iq2s[1023], s1023, 8));
    CHECK(!memcmp(G->iq3xxs[255], x3_255, 4) && !memcmp(G->iq3s[100], s3_100, 4));
    CHECK(!memcmp(G->iq1s[1], one1, 8) && !memcmp(G->iq1s[100], one100, 8));
    CHECK(G->signs[0] == 0 && G->signs[1] == 129 && G->signs[3] == 3 && G->signs[127] == 255);
}

/* hand-made blocks, values worked out by hand from the entries above */
static void test_known_blocks(void) {
    uint8_t b[110];
    float y[QK];
    /* iq2_xxs, d = 1, sub-block 0: group 0 entry 255 with S[1] (signs of
     * values 0 and 7), scale 1: db = 1.5 / 4 = 0.375 */
    memset(b, 0, sizeof b);
    put16(b, 0x3c00);
    b[2] = 255;
    put32(b + 6, 1u | 1u << 28);
    lb_iq2_xxs_block(b, y);
    static const float want_xxs[8] = {-3.0f, 9.375f, 3.0f, 3.0f, 9.375f, 16.125f, 16.125f, -16.125f};
    CHECK(!memcmp(y, want_xxs, sizeof want_xxs));
    CHECK(y[8] == 3.0f && y[31] == 3.0f && y[32] == 1.0f); /* entry 0 is all 8s; sub-block 1: scale 0, 0.125 */
    /* iq3_s, d = 0.5, sub-block 1 (scale nibble 3: 0.5 * 7 = 3.5), group 0
     * entries 100 (qs) and 356 (qh bit 1 adds 256), sign byte 0x0f */
    memset(b, 0, sizeof b);
    put16(b, 0x3800);
    b[2 + 8] = 100;
    b[2 + 9] = 100;
    b[66 + 1] = 2;
    b[74 + 4] = 0x0f;
    b[106] = 3 << 4;
    lb_iq3_s_block(b, y);
    const uint8_t *g356 = lb_iq_grid_tables()->iq3s[356];
    CHECK(y[32] == -3.5f && y[33] == -3.5f && y[34] == -52.5f && y[35] == -3.5f);
    CHECK(y[36] == 3.5f * (float)g356[0] && y[39] == 3.5f * (float)g356[3]);
    CHECK(y[0] == 0.5f); /* sub-block 0: scale 0, entry 0 (all 1s) */
    /* iq1_s, d = 2, sub-block 0 scale 1 (dl = 6), delta negative, group 0
     * entry 100: 6 (0 - 1/8) = -0.75 and 6 (-1 - 1/8) = -6.75 */
    memset(b, 0, sizeof b);
    put16(b, 0x4000);
    b[2] = 100;
    put16(b + 34, 1u << 12 | 0x8000u);
    lb_iq1_s_block(b, y);
    CHECK(y[0] == -0.75f && y[5] == -0.75f && y[6] == -6.75f && y[7] == -6.75f);
    CHECK(y[32] == 2 * (-1 + 0.125f)); /* sub-block 1: entry 0 (all -1), scale 0, positive delta */
    /* iq1_m, d = 1 (fp16 0x3c00 spread over the top nibbles), sub-block 0
     * scales 1 and 2 (dl 3 and 5); group 0 entry 1 with positive delta,
     * group 2 entry 1 + 256 with negative delta */
    memset(b, 0, sizeof b);
    put16(b + 48, 0x0u << 12 | 1u | 2u << 3);
    put16(b + 50, 0x0u << 12);
    put16(b + 52, 0xcu << 12);
    put16(b + 54, 0x3u << 12);
    b[0] = 1;
    b[2] = 1;
    b[33] = 1 | 8;
    lb_iq1_m_block(b, y);
    const int8_t *g257 = lb_iq_grid_tables()->iq1s[257];
    CHECK(y[0] == 3 * 1.125f && y[1] == 3 * -0.875f && y[16] == 5 * ((float)g257[0] - 0.125f));
}

static const struct {
    const char *name;
    int ggml, bytes;
    double bpw;
} TYPES[] = {
    {"iq2_xxs", 16, 66, 2.0625}, {"iq2_xs", 17, 74, 2.3125}, {"iq2_s", 22, 82, 2.5625}, {"iq3_xxs", 18, 98, 3.0625},
    {"iq3_s", 21, 110, 3.4375},  {"iq1_s", 19, 50, 1.5625},  {"iq1_m", 29, 56, 1.75},
};
enum { N_TYPES = sizeof TYPES / sizeof TYPES[0] };

/* one block of random logical contents of type `name` packed into blk; want[256] its values */
static size_t make_block(const char *name, uint8_t *blk, float *want) {
    const lb_iq_grids *G = lb_iq_grid_tables();
    for (int t = 0; t < N_TYPES; t++)
        if (!strcmp(name, TYPES[t].name)) memset(blk, 0, (size_t)TYPES[t].bytes);
    float d = rnd_f16(0.001f, 0.1f);
    if (strcmp(name, "iq1_m")) put16(blk, lb_fp32_to_fp16(d));
    if (!strcmp(name, "iq2_xxs") || !strcmp(name, "iq3_xxs")) {
        /* per sub-block: grid indices (iq2: 4 bytes, one per group of 8;
         * iq3: 64 bytes first, two per group), then a uint32 of four 7-bit
         * sign indices and the 4-bit scale a */
        int iq3 = name[2] == '3';
        for (int ib = 0; ib < 8; ib++) {
            unsigned a = (unsigned)rnd(16);
            uint32_t aux = a << 28;
            float db = iq3 ? d * (0.5f + (float)a) * 0.5f : d * (0.5f + (float)a) * 0.25f;
            for (int l = 0; l < 4; l++) {
                unsigned k = (unsigned)rnd(128), i1 = (unsigned)rnd(256), i2 = (unsigned)rnd(256);
                aux |= k << 7 * l;
                for (int j = 0; j < 8; j++) {
                    unsigned g = iq3 ? (j < 4 ? G->iq3xxs[i1][j] : G->iq3xxs[i2][j - 4]) : G->iq2xxs[i1][j];
                    want[32 * ib + 8 * l + j] = db * (float)g * sgn(sign8(k), j);
                }
                if (iq3) {
                    blk[2 + 8 * ib + 2 * l] = (uint8_t)i1;
                    blk[2 + 8 * ib + 2 * l + 1] = (uint8_t)i2;
                } else {
                    blk[2 + 8 * ib + l] = (uint8_t)i1;
                }
            }
            put32(blk + (iq3 ? 66 + 4 * ib : 2 + 8 * ib + 4), aux);
        }
        return iq3 ? 98 : 66;
    }
    if (!strcmp(name, "iq2_xs") || !strcmp(name, "iq2_s")) {
        /* per sub-block a scale byte (low nibble: groups 0-1, high: 2-3);
         * iq2_xs: per group a uint16 of a 9-bit index and a 7-bit sign index;
         * iq2_s: per group an index byte, 2 more index bits in qh, a sign byte */
        int xs = name[4] == 'x';
        for (int ib = 0; ib < 8; ib++) {
            unsigned lo = (unsigned)rnd(16), hi = (unsigned)rnd(16);
            blk[(xs ? 66 : 74) + ib] = (uint8_t)(lo | hi << 4);
            for (int l = 0; l < 4; l++) {
                unsigned a = l < 2 ? lo : hi, i = (unsigned)rnd(xs ? 512 : 1024), s;
                float db = d * (0.5f + (float)a) * 0.25f;
                if (xs) {
                    unsigned k = (unsigned)rnd(128);
                    put16(blk + 2 + 2 * (4 * ib + l), i | k << 9);
                    s = sign8(k);
                } else {
                    s = (unsigned)rnd(256);
                    blk[2 + 4 * ib + l] = (uint8_t)(i & 255);
                    blk[66 + ib] |= (uint8_t)((i >> 8) << 2 * l);
                    blk[34 + 4 * ib + l] = (uint8_t)s;
                }
                const uint8_t *g = xs ? G->iq2xs[i] : G->iq2s[i];
                for (int j = 0; j < 8; j++) want[32 * ib + 8 * l + j] = db * (float)g[j] * sgn(s, j);
            }
        }
        return xs ? 74 : 82;
    }
    if (!strcmp(name, "iq3_s")) {
        /* 64 index bytes (two per group), qh (bit 2l / 2l + 1 of sub-block
         * ib's byte: the 9th bit of its group l's first / second index), 32
         * sign bytes, 4 bytes of two 4-bit scales */
        for (int ib = 0; ib < 8; ib++) {
            unsigned a = (unsigned)rnd(16);
            blk[106 + ib / 2] |= (uint8_t)(a << 4 * (ib & 1));
            float db = d * (float)(1 + 2 * a);
            for (int l = 0; l < 4; l++) {
                unsigned i1 = (unsigned)rnd(512), i2 = (unsigned)rnd(512), s = (unsigned)rnd(256);
                blk[2 + 8 * ib + 2 * l] = (uint8_t)(i1 & 255);
                blk[2 + 8 * ib + 2 * l + 1] = (uint8_t)(i2 & 255);
                blk[66 + ib] |= (uint8_t)((i1 >> 8) << 2 * l | (i2 >> 8) << (2 * l + 1));
                blk[74 + 4 * ib + l] = (uint8_t)s;
                for (int j = 0; j < 8; j++)
                    want[32 * ib + 8 * l + j] = db * (float)(j < 4 ? G->iq3s[i1][j] : G->iq3s[i2][j - 4]) * sgn(s, j);
            }
        }
        return 110;
    }
    if (!strcmp(name, "iq1_s")) {
        /* 32 index bytes, then per sub-block a uint16: 3 more index bits per
         * group, the 3-bit scale a at bit 12, delta's sign at bit 15 */
        for (int ib = 0; ib < 8; ib++) {
            unsigned a = (unsigned)rnd(8), neg = (unsigned)rnd(2), h = a << 12 | neg << 15;
            float dl = d * (float)(2 * a + 1), delta = neg ? -0.125f : 0.125f;
            for (int l = 0; l < 4; l++) {
                unsigned i = (unsigned)rnd(2048);
                blk[2 + 4 * ib + l] = (uint8_t)(i & 255);
                h |= (i >> 8) << 3 * l;
                for (int j = 0; j < 8; j++) want[32 * ib + 8 * l + j] = dl * ((float)G->iq1s[i][j] + delta);
            }
            put16(blk + 34 + 2 * ib, h);
        }
        return 50;
    }
    /* iq1_m: 32 index bytes, 16 qh bytes (a nibble per group: 3 index bits,
     * delta's sign), 4 uint16 scales: sub-block ib's two 3-bit scales at bit
     * 6 (ib % 2) of word ib / 2, fp16 d's nibble k at bits 12..15 of word k */
    unsigned sc[4] = {0, 0, 0, 0}, dh = lb_fp32_to_fp16(d);
    for (int k = 0; k < 4; k++) sc[k] = (dh >> 4 * k & 15) << 12;
    for (int ib = 0; ib < 8; ib++) {
        unsigned a1 = (unsigned)rnd(8), a2 = (unsigned)rnd(8);
        sc[ib / 2] |= (a1 | a2 << 3) << 6 * (ib & 1);
        float dl[2] = {d * (float)(2 * a1 + 1), d * (float)(2 * a2 + 1)};
        for (int l = 0; l < 4; l++) {
            unsigned i = (unsigned)rnd(2048), neg = (unsigned)rnd(2);
            blk[4 * ib + l] = (uint8_t)(i & 255);
            blk[32 + 2 * ib + l / 2] |= (uint8_t)(((i >> 8) | neg << 3) << 4 * (l & 1));
            for (int j = 0; j < 8; j++)
                want[32 * ib + 8 * l + j] = dl[l / 2] * ((float)G->iq1s[i][j] + (neg ? -0.125f : 0.125f));
        }
    }
    for (int k = 0; k < 4; k++) put16(blk + 48 + 2 * k, sc[k]);
    return 56;
}

static void test_type(const char *name, int ggml_id, int block_bytes, double bpw) {
    lb_qspec s;
    CHECK_OK(lb_qspec_parse(name, &s));
    char back[32];
    lb_qspec_format(&s, back, sizeof back);
    CHECK_MSG(!strcmp(back, name), "%s prints as %s", name, back);
    CHECK(!strcmp(lb_format_family_name(&s), "ggml"));
    CHECK(lb_format_ggml_type(&s, 512) == ggml_id && lb_format_ggml_type(&s, 300) == -1);
    lb_qspec g;
    CHECK_OK(lb_qspec_from_ggml_type(ggml_id, &g));
    CHECK(lb_qspec_equal(&g, &s));
    enum { ROWS = 3, COLS = 2 * QK };
    size_t row_bytes, total;
    CHECK_OK(lb_format_size(&s, ROWS, COLS, &row_bytes, NULL, &total));
    lb_ggml_type_info ti;
    CHECK(lb_ggml_type_lookup(ggml_id, &ti) && ti.block_size == QK && ti.type_size == block_bytes);
    CHECK(row_bytes == 2 * (size_t)block_bytes && total == ROWS * row_bytes);
    CHECK_NEAR(lb_format_bpw(&s, ROWS, COLS), bpw, 1e-12);
    uint8_t *bytes = malloc(total);
    float *want = malloc(sizeof(float) * ROWS * COLS), *got = malloc(sizeof(float) * ROWS * COLS);
    for (int b = 0; b < 2 * ROWS; b++)
        CHECK(make_block(name, bytes + (size_t)b * block_bytes, want + b * QK) == (size_t)block_bytes);
    lb_tensor t = {.spec = s, .rows = ROWS, .cols = COLS, .data = bytes, .nbytes = total};
    snprintf(t.name, sizeof t.name, "%s", name);
    CHECK_OK(lb_tensor_resolve(&t));
    CHECK_OK(lb_dequantize(&t, got));
    int bad = 0;
    for (int i = 0; i < ROWS * COLS; i++) bad += memcmp(&got[i], &want[i], 4) != 0;
    printf("%s: %d of %d weights differ from the formula (bpw %.4f)\n", name, bad, ROWS * COLS, bpw);
    CHECK(bad == 0);
    /* through lb_linear_forward (the generic dequantize-then-GEMM kernel) */
    float x[COLS], y[ROWS];
    for (int c = 0; c < COLS; c++) x[c] = (float)lb_rng_normal(&rng);
    lb_linear lin;
    lb_linear_init(&lin, &t);
    CHECK_OK(lb_linear_forward(&lin, x, 1, y, NULL));
    for (int r = 0; r < ROWS; r++) {
        double ref = 0, mag = 0;
        for (int c = 0; c < COLS; c++) {
            double p = (double)want[r * COLS + c] * x[c];
            ref += p, mag += fabs(p);
        }
        CHECK_MSG(fabs(y[r] - ref) <= 1e-5 * mag + 1e-6, "%s row %d: %g against %g", name, r, y[r], ref);
    }
    /* a row of 100 weights: one block, padded (lowbit reads it; llama.cpp cannot) */
    lb_tensor p = {.spec = s, .rows = 1, .cols = 100, .data = bytes, .nbytes = (size_t)block_bytes};
    CHECK_OK(lb_tensor_resolve(&p));
    CHECK_OK(lb_dequantize(&p, got));
    CHECK(!memcmp(got, want, 100 * sizeof(float)));
    /* too few (or too many) bytes for the shape: refused */
    lb_tensor cut = t;
    cut.nbytes = total - 1;
    CHECK_FAILS(lb_tensor_resolve(&cut), LB_ERR_FORMAT, "bytes");
    cut.nbytes = total + (size_t)block_bytes;
    CHECK_FAILS(lb_tensor_resolve(&cut), LB_ERR_FORMAT, "bytes");
    /* quantizing into a read-only type: refused, nothing written */
    lb_tensor q;
    CHECK_FAILS(lb_quantize_to_tensor(want, ROWS, COLS, &s, NULL, "w", &q), LB_ERR_UNSUPPORTED, "read-only");
    lb_qtensor qt;
    CHECK_FAILS(lb_qtensor_init(&qt, &s, ROWS, COLS), LB_ERR_UNSUPPORTED, "read-only");
    free(bytes);
    free(want);
    free(got);
}


static uint8_t *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*n);
    if (b && fread(b, 1, *n, f) != *n) *n = 0;
    fclose(f);
    return b;
}

/* GGUF as llama.cpp writes it: a tensor of each type under its ggml id,
 * 2 x 256; read back with the right sizes and specs. Rows that are not
 * whole blocks are refused by the writer and by the reader, and so is a
 * file cut short. */
static void test_gguf(void) {
    char dir[] = "/tmp/lb_iq_read_XXXXXX", path[300];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/iq.gguf", dir);
    lb_gguf_writer *w;
    CHECK_OK(lb_gguf_writer_create(&w));
    uint8_t *data[N_TYPES];
    float want[2 * QK];
    for (int i = 0; i < N_TYPES; i++) {
        data[i] = malloc(2 * (size_t)TYPES[i].bytes);
        make_block(TYPES[i].name, data[i], want);
        make_block(TYPES[i].name, data[i] + TYPES[i].bytes, want);
        uint64_t ne[2] = {QK, 2}, odd[2] = {300, 2};
        CHECK_OK(lb_gguf_add_tensor(w, TYPES[i].name, TYPES[i].ggml, 2, ne, data[i], 2 * (size_t)TYPES[i].bytes));
        CHECK_FAILS(lb_gguf_add_tensor(w, "odd", TYPES[i].ggml, 2, odd, data[i], 2 * (size_t)TYPES[i].bytes),
                    LB_ERR_INVALID, "not a multiple of the block size");
    }
    CHECK_OK(lb_gguf_write(w, path));
    lb_gguf_writer_free(w);
    size_t n = 0;
    uint8_t *file = read_all(path, &n);
    CHECK(file && n > 0);
    lb_gguf *g = NULL;
    CHECK_OK(lb_gguf_parse(file, n, &g));
    for (int i = 0; g && i < N_TYPES; i++) {
        const lb_gguf_tensor *t = lb_gguf_find_tensor(g, TYPES[i].name);
        lb_qspec s;
        CHECK(t && t->type == TYPES[i].ggml && t->nbytes == 2 * (size_t)TYPES[i].bytes);
        CHECK(t && !memcmp(t->data, data[i], t->nbytes));
        CHECK_OK(lb_qspec_from_ggml_type(TYPES[i].ggml, &s));
        CHECK(!strcmp(lb_format_family_name(&s), "ggml"));
    }
    lb_gguf_free(g);
    /* ne[0] of the first tensor (after its name and n_dims) made 300 */
    const char *name = TYPES[0].name;
    uint8_t *at = NULL;
    for (size_t k = 0; k + 8 + strlen(name) < n && !at; k++)
        if (!memcmp(file + k, name, strlen(name))) at = file + k + strlen(name) + 4;
    CHECK(at && lb_rd64(at) == QK);
    if (at) {
        at[0] = 300 & 255;
        at[1] = 300 >> 8;
        g = NULL;
        CHECK_FAILS(lb_gguf_parse(file, n, &g), LB_ERR_FORMAT, "not a multiple of the block size");
        at[0] = 0;
        at[1] = 1;
    }
    g = NULL;
    CHECK(lb_gguf_parse(file, n - 32, &g) == LB_ERR_FORMAT && g == NULL); /* past the last tensor's padding */
    free(file);
    for (int i = 0; i < N_TYPES; i++) free(data[i]);
    remove(path);
    rmdir(dir);
}

/* stories260K (rows of 64 and 172 weights: padded, so stored in lowbit's
 * own GGUF form under the type's name) with its linears in the codebook
 * types: through GGUF and back the same logits, then `quantize`'s path,
 * the decoded weights requantized to int8 */
static void test_model(void) {
    lb_model *m = NULL;
    CHECK_OK(lb_model_load(lb_test_data("models/stories260K.bin"), NULL, &m));
    if (!m) return;
    int k = 0;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int which = 0; which < LB_N_LINEARS; which++, k++) {
            lb_linear *lin = &m->layers[l].linear[which];
            lb_qspec s;
            CHECK_OK(lb_qspec_parse(TYPES[k % N_TYPES].name, &s));
            size_t total;
            CHECK_OK(lb_format_size(&s, lin->w.rows, lin->w.cols, NULL, NULL, &total));
            uint8_t *b = malloc(total);
            float junk[QK];
            for (size_t i = 0; i < total; i += (size_t)TYPES[k % N_TYPES].bytes)
                make_block(TYPES[k % N_TYPES].name, b + i, junk);
            lb_tensor t = {.spec = s, .rows = lin->w.rows, .cols = lin->w.cols, .data = b, .owned = b, .nbytes = total};
            snprintf(t.name, sizeof t.name, "%s", lin->w.name);
            CHECK_OK(lb_tensor_resolve(&t));
            CHECK_OK(lb_linear_set_weight(lin, &t));
        }
    char dir[] = "/tmp/lb_iq_model_XXXXXX", path[300];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/iq.gguf", dir);
    CHECK_OK(lb_model_save_gguf(m, path));
    lb_model *back = NULL;
    CHECK_OK(lb_model_load(path, NULL, &back));
    int tok[4] = {1, 300, 25, 77};
    size_t nl = (size_t)4 * (size_t)m->cfg.vocab_size;
    float *a = malloc(sizeof(float) * nl), *c = malloc(sizeof(float) * nl);
    if (back) {
        CHECK(!strcmp(lb_format_family_name(&back->layers[0].linear[0].w.spec), "ggml"));
        CHECK_OK(lb_test_logits(m, tok, 4, a));
        CHECK_OK(lb_test_logits(back, tok, 4, c));
        CHECK_MSG(!memcmp(a, c, sizeof(float) * nl), "codebook linears: logits changed through GGUF");
        /* requantized from the decoded weights */
        lb_tensor *w0 = &back->layers[0].linear[0].w;
        float *dec = malloc(sizeof(float) * (size_t)(w0->rows * w0->cols));
        CHECK_OK(lb_dequantize(w0, dec));
        lb_plan plan;
        lb_plan_init(&plan);
        const char *recipe = "linears int8:g32:sym\n";
        CHECK_OK(lb_plan_parse_recipe(&plan, recipe, strlen(recipe), "r"));
        CHECK_OK(lb_plan_resolve(&plan, back));
        CHECK_OK(lb_quantize_model(back, &plan, NULL));
        CHECK(back->layers[0].linear[0].w.spec.family == LB_FAMILY_UNIFORM);
        float *req = malloc(sizeof(float) * (size_t)(w0->rows * w0->cols));
        CHECK_OK(lb_dequantize(&back->layers[0].linear[0].w, req));
        double err = 0, mag = 0;
        for (int64_t i = 0; i < w0->rows * w0->cols; i++) err += fabs(req[i] - dec[i]), mag += fabs(dec[i]);
        CHECK_MSG(err <= 0.01 * mag, "int8 from iq2_xxs: mean error %g of mean magnitude %g", err, mag);
        CHECK_OK(lb_test_logits(back, tok, 4, c));
        free(dec);
        free(req);
        lb_plan_free(&plan);
        lb_model_free(back);
    }
    free(a);
    free(c);
    remove(path);
    rmdir(dir);
    lb_model_free(m);
}

int main(void) {
    setenv("LB_KERNEL", "fallback", 1);
    lb_rng_seed(&rng, 19);
    test_grids();
    test_known_blocks();
    for (int i = 0; i < N_TYPES; i++) test_type(TYPES[i].name, TYPES[i].ggml, TYPES[i].bytes, TYPES[i].bpw);
    test_gguf();
    test_model();
    return lb_test_finish("test_iq_read");
}
