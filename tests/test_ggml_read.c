/* llama.cpp's types lowbit reads (src/formats/ggml_read.c), against known
 * answers: for each of q2_K, q3_K, q4_K, q5_K, q6_K, q8_K, q5_0, q5_1,
 * q8_1, iq4_nl, iq4_xs, tq1_0, tq2_0 and mxfp4, random logical
 * contents (every weight's code, every sub-block's scale and min, the fp16
 * super-scales) are packed here into ggml's block layout, written the way
 * ggml's quantize_row_q*_K_ref packs them (ggml-common.h's structs; this
 * test's packers are written from that description, not from ggml_read.c),
 * and every dequantized weight must equal the type's formula on those
 * contents exactly (the same float products as ggml's dequantize_row_*).
 * Also: the spec text and ggml ids both ways, the sizes (bpw 1.6875 ..
 * 9.125), a padded row, a tensor run by lb_linear_forward through the
 * generic kernel, a model with q5_0 linears through GGUF and back (the
 * same logits), and the refusal to quantize into these types.
 * (Against ggml itself, value by value: scripts/ggml_dequant_check.c.) */
#include "test.h"

#include <stdint.h>
#include <unistd.h>

enum { QK = 256 };

static lb_rng rng;

static int rnd(int n) { return (int)(lb_rng_u32(&rng) % (uint32_t)n); }
static float rnd_f16(float lo, float hi) { return lb_round_fp16(lo + (hi - lo) * lb_rng_f32(&rng)); }
static void put16(uint8_t *p, float f) {
    uint16_t h = lb_fp32_to_fp16(f);
    p[0] = (uint8_t)(h & 255);
    p[1] = (uint8_t)(h >> 8);
}

/* q4_K / q5_K's twelve bytes of eight 6-bit scales and eight 6-bit mins */
static void pack_scale_min_6(const int *sc, const int *mn, uint8_t *s) {
    memset(s, 0, 12);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            s[j] = (uint8_t)sc[j];
            s[j + 4] = (uint8_t)mn[j];
        } else {
            s[j + 4] = (uint8_t)((sc[j] & 15) | ((mn[j] & 15) << 4));
            s[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
            s[j] |= (uint8_t)((mn[j] >> 4) << 6);
        }
    }
}

static const int8_t K_IQ4[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
static const float E2M1[16] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6, -0.0f, -0.5f, -1, -1.5f, -2, -3, -4, -6};

/* five (or four, then a zero) trits, first most significant, as ggml packs
 * them: the base-3 number as a fraction of 243, rounded up to 1/256 */
static uint8_t pack_trits(const int *t, int n) {
    int q = 0;
    for (int i = 0; i < n; i++) q = q * 3 + t[i];
    if (n == 4) q *= 3;
    return (uint8_t)((q * 256 + 242) / 243);
}

/* one random block of the legacy / iq4 / tq / mxfp4 type `name` */
static size_t make_small_block(const char *name, uint8_t *blk, float *want) {
    int q[QK];
    if (!strcmp(name, "q5_0") || !strcmp(name, "q5_1")) { /* weight j: low nibble of qs[j % 16] (j < 16) or high, fifth bit j of qh */
        int m1 = name[3] == '1';
        float d = rnd_f16(0.01f, 1.0f), m = m1 ? rnd_f16(-1.0f, 1.0f) : 0.0f;
        size_t n = m1 ? 24 : 22, qh = m1 ? 4 : 2;
        memset(blk, 0, n);
        put16(blk, d);
        if (m1) put16(blk + 2, m);
        for (int j = 0; j < 32; j++) {
            q[j] = rnd(32);
            blk[qh + 4 + j % 16] |= (uint8_t)((q[j] & 15) << (j < 16 ? 0 : 4));
            if (q[j] & 16) blk[qh + j / 8] |= (uint8_t)(1u << (j % 8));
            want[j] = m1 ? (float)q[j] * d + m : (float)(q[j] - 16) * d;
        }
        return n;
    }
    if (!strcmp(name, "q8_1")) {
        float d = rnd_f16(0.001f, 0.1f);
        memset(blk, 0, 36);
        put16(blk, d);
        put16(blk + 2, 123.0f); /* s: not part of the values */
        for (int j = 0; j < 32; j++) {
            q[j] = rnd(256) - 128;
            blk[4 + j] = (uint8_t)(int8_t)q[j];
            want[j] = (float)q[j] * d;
        }
        return 36;
    }
    if (!strcmp(name, "iq4_nl")) {
        float d = rnd_f16(0.001f, 0.1f);
        memset(blk, 0, 18);
        put16(blk, d);
        for (int j = 0; j < 32; j++) {
            q[j] = rnd(16);
            blk[2 + j % 16] |= (uint8_t)(q[j] << (j < 16 ? 0 : 4));
            want[j] = d * (float)K_IQ4[q[j]];
        }
        return 18;
    }
    if (!strcmp(name, "iq4_xs")) { /* 8 sub-blocks of 32 as iq4_nl, 6-bit scales biased by 32 */
        float d = rnd_f16(0.001f, 0.01f);
        int ls[8];
        memset(blk, 0, 136);
        put16(blk, d);
        unsigned sh = 0;
        for (int ib = 0; ib < 8; ib++) {
            ls[ib] = rnd(64);
            blk[4 + ib / 2] |= (uint8_t)((ls[ib] & 15) << (4 * (ib % 2)));
            sh |= (unsigned)(ls[ib] >> 4) << (2 * ib);
        }
        blk[2] = (uint8_t)(sh & 255);
        blk[3] = (uint8_t)(sh >> 8);
        for (int i = 0; i < QK; i++) {
            q[i] = rnd(16);
            int ib = i / 32, j = i % 32;
            blk[8 + 16 * ib + j % 16] |= (uint8_t)(q[i] << (j < 16 ? 0 : 4));
            want[i] = d * (float)(ls[ib] - 32) * (float)K_IQ4[q[i]];
        }
        return 136;
    }
    if (!strcmp(name, "tq1_0")) { /* weights 0..159: byte m of qs[0..31], trit n = weight 32n + m; 160..239: qs[32..47];
                                     240..255: qh[j], trit n = weight 240 + 4n + j */
        float d = rnd_f16(0.01f, 1.0f);
        memset(blk, 0, 54);
        for (int i = 0; i < QK; i++) q[i] = rnd(3);
        for (int m = 0; m < 32; m++) {
            int t[5] = {q[m], q[32 + m], q[64 + m], q[96 + m], q[128 + m]};
            blk[m] = pack_trits(t, 5);
        }
        for (int m = 0; m < 16; m++) {
            int t[5] = {q[160 + m], q[176 + m], q[192 + m], q[208 + m], q[224 + m]};
            blk[32 + m] = pack_trits(t, 5);
        }
        for (int j = 0; j < 4; j++) {
            int t[4] = {q[240 + j], q[244 + j], q[248 + j], q[252 + j]};
            blk[48 + j] = pack_trits(t, 4);
        }
        put16(blk + 52, d);
        for (int i = 0; i < QK; i++) want[i] = (float)(q[i] - 1) * d;
        return 54;
    }
    if (!strcmp(name, "tq2_0")) { /* weight 128h + 32l + m: bits 2l of qs[32h + m] */
        float d = rnd_f16(0.01f, 1.0f);
        memset(blk, 0, 66);
        for (int i = 0; i < QK; i++) {
            q[i] = rnd(3);
            int h = i / 128, l = (i % 128) / 32, m = i % 32;
            blk[32 * h + m] |= (uint8_t)(q[i] << (2 * l));
            want[i] = (float)(q[i] - 1) * d;
        }
        put16(blk + 64, d);
        return 66;
    }
    /* mxfp4: w = 2^(e - 127) E2M1[q] */
    int e = 100 + rnd(50);
    memset(blk, 0, 17);
    blk[0] = (uint8_t)e;
    for (int j = 0; j < 32; j++) {
        q[j] = rnd(16);
        blk[1 + j % 16] |= (uint8_t)(q[j] << (j < 16 ? 0 : 4));
        want[j] = ldexpf(E2M1[q[j]], e - 127);
    }
    return 17;
}

/* one random super-block of type `bits` into blk; want[256] the values */
static size_t make_block(int bits, uint8_t *blk, float *want) {
    int q[QK], sc[16], mn[16];
    if (bits == 2) { /* 16 sub-blocks of 16: w = d sc q - dmin m */
        float d = rnd_f16(0.01f, 1.0f), dmin = rnd_f16(0.0f, 1.0f);
        memset(blk, 0, 84);
        for (int j = 0; j < 16; j++) {
            sc[j] = rnd(16), mn[j] = rnd(16);
            blk[j] = (uint8_t)(sc[j] | mn[j] << 4);
        }
        /* weight i: 128-half h, bit pair p (shift 2p), sub-block parity s, lane l */
        for (int i = 0; i < QK; i++) {
            q[i] = rnd(4);
            int h = i / 128, r = i % 128, p = r / 32, s = (r % 32) / 16, l = r % 16;
            blk[16 + 32 * h + 16 * s + l] |= (uint8_t)(q[i] << (2 * p));
            int j = i / 16;
            want[i] = d * (float)sc[j] * (float)q[i] - dmin * (float)mn[j];
        }
        put16(blk + 80, d);
        put16(blk + 82, dmin);
        return 84;
    }
    if (bits == 3) { /* w = d (sc - 32) (q - 4), q = low 2 bits + 4 * high bit */
        float d = rnd_f16(0.01f, 1.0f);
        memset(blk, 0, 110);
        for (int j = 0; j < 16; j++) sc[j] = rnd(64);
        for (int j = 0; j < 16; j++) { /* low nibbles in bytes 0..7 (j and j + 8 share a byte), high pairs in 8..11 */
            blk[96 + j % 8] |= (uint8_t)((sc[j] & 15) << (j < 8 ? 0 : 4));
            blk[96 + 8 + j % 4] |= (uint8_t)((sc[j] >> 4) << (2 * (j / 4)));
        }
        for (int i = 0; i < QK; i++) {
            q[i] = rnd(8);
            int h = i / 128, r = i % 128, p = r / 32, s = (r % 32) / 16, l = r % 16;
            blk[32 + 32 * h + 16 * s + l] |= (uint8_t)((q[i] & 3) << (2 * p));
            if (q[i] & 4) blk[16 * s + l] |= (uint8_t)(1u << (4 * h + p)); /* hmask: bit (4h + p) of byte r % 32 */
            want[i] = d * (float)(sc[i / 16] - 32) * (float)(q[i] - 4);
        }
        put16(blk + 108, d);
        return 110;
    }
    if (bits == 4 || bits == 5) { /* 8 sub-blocks of 32: w = d sc q - dmin m */
        float d = rnd_f16(0.01f, 1.0f), dmin = rnd_f16(0.0f, 1.0f);
        size_t n = bits == 4 ? 144 : 176, qs = bits == 4 ? 16 : 48;
        memset(blk, 0, n);
        put16(blk, d);
        put16(blk + 2, dmin);
        for (int j = 0; j < 8; j++) sc[j] = rnd(64), mn[j] = rnd(64);
        pack_scale_min_6(sc, mn, blk + 4);
        for (int i = 0; i < QK; i++) {
            q[i] = rnd(1 << bits);
            int c = i / 64, r = i % 64, hi = r / 32, l = r % 32; /* chunk of 64: 32 low nibbles, then 32 high */
            blk[qs + 32 * c + l] |= (uint8_t)((q[i] & 15) << (4 * hi));
            if (q[i] & 16) blk[16 + l] |= (uint8_t)(1u << (2 * c + hi)); /* qh: bit (2c + hi) of byte l */
            int j = i / 32;
            want[i] = d * (float)sc[j] * (float)q[i] - dmin * (float)mn[j];
        }
        return n;
    }
    if (bits == 6) { /* 16 sub-blocks of 16: w = d sc (q - 32), sc int8 */
        float d = rnd_f16(0.001f, 0.1f);
        memset(blk, 0, 210);
        for (int j = 0; j < 16; j++) {
            sc[j] = rnd(256) - 128;
            blk[192 + j] = (uint8_t)(int8_t)sc[j];
        }
        for (int i = 0; i < QK; i++) {
            q[i] = rnd(64);
            /* half h of 128; inside it, quarter p of 32 weights: low nibble of ql[64h + l]
             * (p 0) / ql[64h + 32 + l] (p 1), high nibble of the same (p 2, 3); top pair at
             * bits 2p of qh[32h + l] */
            int h = i / 128, r = i % 128, p = r / 32, l = r % 32;
            blk[64 * h + (p & 1) * 32 + l] |= (uint8_t)((q[i] & 15) << (p >= 2 ? 4 : 0));
            blk[128 + 32 * h + l] |= (uint8_t)((q[i] >> 4) << (2 * p));
            want[i] = d * (float)sc[i / 16] * (float)(q[i] - 32);
        }
        put16(blk + 208, d);
        return 210;
    }
    /* q8_K: w = d q, d fp32 */
    float d = 0.001f + lb_rng_f32(&rng);
    memset(blk, 0, 292);
    memcpy(blk, &d, 4);
    for (int i = 0; i < QK; i++) {
        q[i] = rnd(256) - 128;
        blk[4 + i] = (uint8_t)(int8_t)q[i];
        want[i] = d * (float)q[i];
    }
    return 292;
}

static void test_type(int bits, const char *name, int ggml_id, double bpw) { /* bits 0: a small type by name */
    lb_qspec s;
    CHECK_OK(lb_qspec_parse(name, &s));
    char back[32];
    lb_qspec_format(&s, back, sizeof back);
    CHECK_MSG(!strcmp(back, name) || (!strcmp(name, "q5_0") && !strcmp(back, "int5:g32:sym")) ||
                  (!strcmp(name, "q5_1") && !strcmp(back, "int5:g32:asym")),
              "%s prints as %s", name, back);
    CHECK(lb_format_ggml_type(&s, 512) == ggml_id && lb_format_ggml_type(&s, 300) == -1);
    lb_qspec g;
    CHECK_OK(lb_qspec_from_ggml_type(ggml_id, &g));
    CHECK(lb_qspec_equal(&g, &s));
    /* 3 rows of 2 super-blocks */
    enum { ROWS = 3, COLS = 2 * QK };
    size_t row_bytes, total;
    CHECK_OK(lb_format_size(&s, ROWS, COLS, &row_bytes, NULL, &total));
    lb_ggml_type_info ti;
    CHECK(lb_ggml_type_lookup(ggml_id, &ti) && row_bytes == (size_t)(COLS / ti.block_size) * (size_t)ti.type_size &&
          total == ROWS * row_bytes);
    CHECK_NEAR(8.0 * (double)total / (ROWS * COLS), bpw, 1e-9);
    uint8_t *bytes = malloc(total);
    float *want = malloc(sizeof(float) * ROWS * COLS), *got = malloc(sizeof(float) * ROWS * COLS);
    int per_row = COLS / ti.block_size;
    for (int b = 0; b < per_row * ROWS; b++)
        CHECK((bits ? make_block(bits, bytes + (size_t)b * ti.type_size, want + (size_t)b * ti.block_size)
                    : make_small_block(name, bytes + (size_t)b * ti.type_size, want + (size_t)b * ti.block_size)) ==
              (size_t)ti.type_size);
    lb_tensor t = {.spec = s, .rows = ROWS, .cols = COLS, .data = bytes, .nbytes = total};
    snprintf(t.name, sizeof t.name, "%s", name);
    CHECK_OK(lb_tensor_resolve(&t));
    CHECK_OK(lb_dequantize(&t, got));
    int bad = 0;
    for (int i = 0; i < ROWS * COLS; i++) bad += got[i] != want[i];
    printf("%s: %d of %d weights differ from the formula (bpw %.4f)\n", name, bad, ROWS * COLS, bpw);
    CHECK(bad == 0);
    /* a linear through the run-time kernel choice: y = W x in float to 1e-5 */
    float x[COLS], y[ROWS];
    for (int c = 0; c < COLS; c++) x[c] = (float)lb_rng_normal(&rng);
    lb_linear lin;
    lb_linear_init(&lin, &t);
    CHECK_OK(lb_linear_forward(&lin, x, 1, y, NULL));
    for (int r = 0; r < ROWS; r++) {
        double ref = 0, mag = 0;
        for (int c = 0; c < COLS; c++) ref += (double)want[r * COLS + c] * x[c], mag += fabs((double)want[r * COLS + c] * x[c]);
        CHECK_MSG(fabs(y[r] - ref) <= 1e-5 * mag + 1e-6, "%s row %d: %g against %g", name, r, y[r], ref);
    }
    if (!strcmp(lb_format_family_name(&s), "ggml")) {
        /* quantizing into a read-only type: refused, nothing written */
        lb_tensor q;
        CHECK_FAILS(lb_quantize_to_tensor(want, ROWS, COLS, &s, NULL, "w", &q), LB_ERR_UNSUPPORTED, "read-only");
    } else {
        /* a writable type (the K-quants): unpacking the random blocks and
         * packing them again gives the same bytes */
        lb_qtensor q;
        uint8_t *again = calloc(1, total);
        CHECK_OK(lb_qtensor_init(&q, &s, ROWS, COLS));
        CHECK_OK(lb_qtensor_decode(&q, bytes, total));
        CHECK_OK(lb_qtensor_encode(&q, again));
        CHECK_MSG(!memcmp(again, bytes, total), "%s: decode then encode changes the bytes", name);
        lb_qtensor_free(&q);
        free(again);
    }
    free(bytes);
    free(want);
    free(got);
}

/* stories260K with its 64-wide attention linears in q5_0 (blocks of 32, so
 * ggml's layout exactly): written as GGUF and read back, the same logits */
static void test_gguf_round_trip(void) {
    lb_model *m = NULL;
    CHECK_OK(lb_model_load(lb_test_data("models/stories260K.bin"), NULL, &m));
    if (!m) return;
    lb_qspec s;
    CHECK_OK(lb_qspec_parse("q5_0", &s));
    for (int l = 0; l < m->cfg.n_layers; l++) {
        lb_linear *lin = &m->layers[l].linear[LB_WQ];
        size_t total;
        CHECK_OK(lb_format_size(&s, lin->w.rows, lin->w.cols, NULL, NULL, &total));
        uint8_t *b = malloc(total);
        for (size_t i = 0; i < total; i += 22) make_small_block("q5_0", b + i, (float[32]){0});
        lb_tensor t = {.spec = s, .rows = lin->w.rows, .cols = lin->w.cols, .data = b, .owned = b, .nbytes = total};
        snprintf(t.name, sizeof t.name, "%s", lin->w.name);
        CHECK_OK(lb_tensor_resolve(&t));
        CHECK_OK(lb_linear_set_weight(lin, &t));
    }
    char dir[] = "/tmp/lb_ggml_read_XXXXXX", path[300];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/q5_0.gguf", dir);
    CHECK_OK(lb_model_save_gguf(m, path));
    lb_model *back = NULL;
    CHECK_OK(lb_model_load(path, NULL, &back));
    if (back) {
        CHECK(lb_qspec_equal(&back->layers[0].linear[LB_WQ].w.spec, &s));
        int tok[4] = {1, 300, 25, 77};
        float *a = malloc(sizeof(float) * 4 * m->cfg.vocab_size), *b = malloc(sizeof(float) * 4 * m->cfg.vocab_size);
        CHECK_OK(lb_test_logits(m, tok, 4, a));
        CHECK_OK(lb_test_logits(back, tok, 4, b));
        CHECK_MSG(!memcmp(a, b, sizeof(float) * 4 * m->cfg.vocab_size), "q5_0 linears: logits changed through GGUF");
        free(a);
        free(b);
        lb_model_free(back);
    }
    remove(path);
    rmdir(dir);
    lb_model_free(m);
}

int main(void) {
    /* the float path (dequantize a tile, float GEMM) for every type: the
     * int8-activation kernels of the writable ones have their own bounds
     * (test_kernel_registry); here the 1e-5 check is of the bytes' meaning */
    setenv("LB_KERNEL", "fallback", 1);
    lb_rng_seed(&rng, 256);
    test_type(2, "q2_k", 10, 2.625);
    test_type(3, "q3_k", 11, 3.4375);
    test_type(4, "q4_k", 12, 4.5);
    test_type(5, "q5_k", 13, 5.5);
    test_type(6, "q6_k", 14, 6.5625);
    test_type(8, "q8_k", 15, 9.125);
    test_type(0, "q5_0", 6, 5.5); /* written too: the uniform family's int5:g32:sym */
    test_type(0, "q5_1", 7, 6.0); /* int5:g32:asym */
    test_type(0, "q8_1", 9, 9.0);
    test_type(0, "iq4_nl", 20, 4.5);
    test_type(0, "iq4_xs", 23, 4.25);
    test_type(0, "tq1_0", 34, 1.6875);
    test_type(0, "tq2_0", 35, 2.0625);
    test_type(0, "mxfp4", 39, 4.25);

    /* a row shorter than a super-block is padded (lowbit can read it; llama.cpp cannot) */
    lb_qspec s;
    CHECK_OK(lb_qspec_parse("q4_0", &s)); /* the uniform family's, which writes it */
    CHECK(s.family == LB_FAMILY_UNIFORM);
    CHECK_OK(lb_qspec_parse("q4_k", &s));
    size_t rb;
    CHECK_OK(lb_format_size(&s, 1, 100, &rb, NULL, NULL));
    CHECK(rb == 144);
    CHECK_FAILS(lb_qspec_parse("q4_k:g64", &s), LB_ERR_INVALID, "");
    CHECK_FAILS(lb_qspec_parse("q7_k", &s), LB_ERR_INVALID, "");
    test_gguf_round_trip();
    return lb_test_finish("test_ggml_read");
}
