/* The predicates of the lookup kernels, e8p's kernel tables and vq's
 * float codebooks (kernels/lookup.h has the layouts and why the tables are
 * split this way). */
#include <pthread.h>

#include "kernels/lookup.h"

int lb_e8p_kernel_accepts(const lb_qspec *s, const lb_layout *l) {
    return !strcmp(s->family->name, "e8p") && s->bits >= 2 && s->bits <= 4 && l->cols_padded % 8 == 0 &&
           l->cols_padded < (1 << 30) && l->rows < (1 << 30);
}

int lb_lut_kernel_accepts(const lb_qspec *s, const lb_layout *l) {
    return !strcmp(s->family->name, "lut") && s->bits >= 1 && s->bits <= 4 && l->group_len % 8 == 0 &&
           l->cols_padded % l->group_len == 0 && l->cols_padded < (1 << 30) && l->rows < (1 << 30);
}

int lb_vq_kernel_accepts(const lb_qspec *s, const lb_layout *l) {
    return !strcmp(s->family->name, "vq") && s->vec_dim >= 2 && s->vec_dim <= LB_VEC_MAX_DIM && s->bits >= 1 &&
           s->bits <= 16 && s->vec_stages >= 1 && s->vec_stages <= LB_VEC_MAX_STAGES && l->cols_padded < (1 << 30) &&
           l->rows < (1 << 30);
}

lb_status lb_vq_repack(const lb_tensor *w, void **out, size_t *bytes) {
    const lb_qspec *s = &w->spec;
    const lb_layout *l = &w->layout;
    if (!lb_vq_kernel_accepts(s, l)) return lb_fail(LB_ERR_INVALID, "tensor '%s' is not a vq code", w->name);
    lb_vq_pack p = {.d = s->vec_dim, .c = s->bits, .stages = s->vec_stages, .book_size = lb_vq_book_size(s)};
    p.book_off = (sizeof p + 63) / 64 * 64;
    const size_t n = (size_t)p.stages * (size_t)p.book_size * (size_t)p.d, total = p.book_off + n * sizeof(float);
    uint8_t *buf = lb_alloc(total);
    if (!buf) return lb_fail(LB_ERR_NOMEM, "converting the codebooks of '%s' to floats (%zu bytes)", w->name, total);
    memcpy(buf, &p, sizeof p);
    const uint8_t *stored = w->data + (size_t)l->rows * l->row_bytes; /* the tail starts with the books */
    float *book = (float *)(buf + p.book_off);
    for (size_t i = 0; i < n; i++) book[i] = lb_fp16_to_fp32(lb_rd16(stored + 2 * i));
    *out = buf;
    *bytes = total;
    return LB_OK;
}

static lb_e8p_tables tables;
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static uint32_t float_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static void build(void) {
    float cw[8];
    for (unsigned s = 0; s < 256; s++) {
        /* no signs, shift +1/4: the magnitudes, coordinate 0 negated by parity */
        lb_e8p_codeword(s << 8 | 1u, cw);
        for (int i = 0; i < 8; i++) tables.src[s][i] = cw[i] - 0.25f;
    }
    for (unsigned b = 0; b < 256; b++) {
        unsigned signs = b >> 1;
        tables.sign[b][0] = (unsigned)__builtin_popcount(signs) & 1 ? float_bits(-0.0f) : 0;
        for (int i = 1; i < 8; i++) tables.sign[b][i] = signs >> (i - 1) & 1 ? float_bits(-0.0f) : 0;
        for (int i = 0; i < 8; i++) tables.shift[b][i] = b & 1 ? 0.25f : -0.25f;
    }
    for (unsigned c = 0; c < 256; c++) lb_e8_ball_codeword(c, tables.ball[c]);
}

const lb_e8p_tables *lb_e8p_kernel_tables(void) {
    pthread_once(&tables_once, build);
    return &tables;
}
