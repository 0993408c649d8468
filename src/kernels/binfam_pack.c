/* Predicates, load-time layouts, input transforms and the composed
 * routines of the onebit / ptq161 / littlebit kernels (kernels/binfam.h).
 *
 * The layouts are built from the unpacked form (lb_qtensor_decode), not by
 * reading the stored bytes a second way: onebit's signs and ptq161's two
 * parts are re-encoded as binary:row and int4:row:asym tensors (the values
 * are fp16 already, so the re-encoding is exact) and handed to the uniform
 * panels' repacking, whose kernels then run on them unchanged. */
#include <string.h>

#include "formats/format_internal.h"
#include "kernels/binfam.h"
#include "kernels/uniform_pack.h"

static int family_is(const lb_qspec *s, const char *name) { return s->family && !strcmp(s->family->name, name); }

/* a spec of a part; the texts are constants, so parsing cannot fail */
static lb_qspec part_spec(const char *text) {
    lb_qspec s;
    memset(&s, 0, sizeof s);
    lb_qspec_parse(text, &s);
    return s;
}

static int part_ok(const char *text, int64_t rows, int64_t cols) {
    lb_qspec s = part_spec(text);
    lb_layout l;
    return cols >= 1 && lb_layout_compute(&s, rows, cols, &l) == LB_OK && lb_uniform_kernel_accepts(&s, &l);
}

/* ptq161's salient columns: the format's k = round(cols p / 100), checked
 * against the row size the format computed (so a change there is noticed
 * here as a refusal, not as a misread) */
static int64_t ptq161_k(const lb_qspec *s, const lb_layout *l) {
    int64_t k = (l->cols * s->salient_pct + 50) / 100;
    return l->row_bytes == 8 + (size_t)((4 * k + (l->cols - k) + 7) / 8) ? k : -1;
}

int lb_onebit_kernel_accepts(const lb_qspec *s, const lb_layout *l) {
    return family_is(s, "onebit") && l->cols < (1 << 28) && part_ok("binary:row", l->rows, l->cols);
}

int lb_ptq161_kernel_accepts(const lb_qspec *s, const lb_layout *l) {
    if (!family_is(s, "ptq161") || l->cols >= (1 << 28)) return 0;
    int64_t k = ptq161_k(s, l);
    return k >= 1 && k < l->cols && part_ok("int4:row:asym", l->rows, k) && part_ok("binary:row", l->rows, l->cols - k);
}

int lb_littlebit_kernel_accepts(const lb_qspec *s, const lb_layout *l) {
    return family_is(s, "littlebit") && s->rank >= 1 && l->cols < (1 << 28) && l->rows < (1 << 28);
}

/* ---- building the parts ------------------------------------------------------ */

/* q encoded, viewed as a tensor, repacked for the uniform panels: *packed
 * (lb_alloc'd) and its size; t keeps spec and layout only */
static lb_status make_part(const lb_qtensor *q, lb_tensor *t, void **packed, size_t *packed_bytes) {
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "part");
    t->spec = q->spec;
    t->rows = q->rows;
    t->cols = q->cols;
    lb_status st = lb_layout_compute(&t->spec, t->rows, t->cols, &t->layout);
    if (st != LB_OK) return st;
    uint8_t *data = lb_calloc(1, t->layout.total_bytes);
    if (!data) return LB_ERR_NOMEM;
    st = lb_qtensor_encode(q, data);
    t->data = data;
    t->nbytes = t->layout.total_bytes;
    if (st == LB_OK) st = lb_uniform_repack(t, packed, packed_bytes);
    lb_free(data);
    t->data = NULL;
    t->nbytes = 0;
    return st;
}

static size_t align64(size_t v) { return (v + 63) / 64 * 64; }

/* the block: header, then `extra` bytes, then the parts' packed layouts,
 * each on a cache line; the views' packed pointers are set here */
static lb_status assemble(lb_binfam_pack *hdr, int n_parts, void **part_packed, const size_t *part_bytes,
                          size_t extra_bytes, uint8_t **block, size_t *bytes) {
    size_t off = align64(sizeof *hdr) + align64(extra_bytes), at[2];
    for (int i = 0; i < n_parts; i++) {
        at[i] = off;
        off += align64(part_bytes[i]);
    }
    uint8_t *b = lb_calloc(1, off);
    if (!b) return LB_ERR_NOMEM;
    for (int i = 0; i < n_parts; i++) {
        memcpy(b + at[i], part_packed[i], part_bytes[i]);
        hdr->part[i].packed = b + at[i];
    }
    memcpy(b, hdr, sizeof *hdr);
    *block = b;
    *bytes = off;
    return LB_OK;
}

static lb_status decode(const lb_tensor *w, lb_qtensor *q) {
    memset(q, 0, sizeof *q);
    lb_status st = lb_qtensor_init(q, &w->spec, w->rows, w->cols);
    if (st == LB_OK) st = lb_qtensor_decode(q, w->data, w->nbytes);
    return st;
}

static lb_status done(lb_status st, const lb_tensor *w) {
    return st == LB_OK ? LB_OK : lb_fail(st, "repacking '%s' for its kernel failed", w->name);
}

/* onebit's rows are binary:row's byte for byte (fp16 h as alpha, then the
 * sign bits, cols padded to 8): the part is a view of the stored rows, and g
 * is read from the tail; no decoding. */
static lb_status onebit_view(const lb_tensor *w, void **out, size_t *bytes) {
    lb_binfam_pack hdr;
    memset(&hdr, 0, sizeof hdr);
    lb_tensor *t = &hdr.part[0];
    snprintf(t->name, sizeof t->name, "part");
    t->spec = part_spec("binary:row");
    t->rows = w->rows;
    t->cols = w->cols;
    lb_status st = lb_layout_compute(&t->spec, t->rows, t->cols, &t->layout);
    if (st != LB_OK) return st;
    if (t->layout.row_bytes != w->layout.row_bytes || t->layout.tail_bytes != 0) return LB_ERR_UNSUPPORTED;
    t->data = w->data;
    t->nbytes = t->layout.total_bytes;
    void *pp = NULL;
    size_t pb = 0;
    st = lb_uniform_repack(t, &pp, &pb);
    t->data = NULL;
    t->nbytes = 0;
    hdr.cols = w->cols;
    hdr.g_off = align64(sizeof hdr);
    uint8_t *block = NULL;
    if (st == LB_OK) st = assemble(&hdr, 1, &pp, &pb, (size_t)w->cols * sizeof(float), &block, bytes);
    lb_free(pp);
    if (st != LB_OK) return st;
    const uint8_t *tail = w->data + (size_t)w->rows * w->layout.row_bytes;
    float *g = (float *)(block + hdr.g_off);
    for (int64_t c = 0; c < w->cols; c++) g[c] = lb_fp16_to_fp32(lb_rd16(tail + 2 * c));
    *out = block;
    return LB_OK;
}

lb_status lb_onebit_repack(const lb_tensor *w, void **out, size_t *bytes) {
    if (!lb_onebit_kernel_accepts(&w->spec, &w->layout)) return lb_fail(LB_ERR_INVALID, "tensor '%s' is not onebit", w->name);
    lb_status st = onebit_view(w, out, bytes);
    if (st == LB_ERR_UNSUPPORTED) /* the two row layouts parted: the generic path takes over */
        return lb_fail(st, "onebit rows of '%s' are not binary:row's bytes", w->name);
    return done(st, w);
}

lb_status lb_ptq161_repack(const lb_tensor *w, void **out, size_t *bytes) {
    if (!lb_ptq161_kernel_accepts(&w->spec, &w->layout)) return lb_fail(LB_ERR_INVALID, "tensor '%s' is not ptq161", w->name);
    const int64_t rows = w->rows, cols = w->cols, k = ptq161_k(&w->spec, &w->layout);
    lb_qtensor q, s, b;
    memset(&s, 0, sizeof s);
    memset(&b, 0, sizeof b);
    void *pp[2] = {NULL, NULL};
    size_t pb[2] = {0, 0};
    lb_qspec ss = part_spec("int4:row:asym"), bs = part_spec("binary:row");
    lb_status st = decode(w, &q);
    if (st == LB_OK) st = lb_qtensor_init(&s, &ss, rows, k);
    if (st == LB_OK) st = lb_qtensor_init(&b, &bs, rows, cols - k);
    if (st != LB_OK) goto out;
    lb_binfam_pack hdr;
    memset(&hdr, 0, sizeof hdr);
    hdr.cols = cols;
    hdr.k = k;
    hdr.ks = (k + LB_ACT_PAD - 1) / LB_ACT_PAD * LB_ACT_PAD;
    hdr.width = hdr.ks + cols - k;
    hdr.perm_off = align64(sizeof hdr);
    hdr.mu_off = hdr.perm_off + align64((size_t)cols * sizeof(int32_t));
    int32_t *perm = lb_alloc((size_t)cols * sizeof(int32_t));
    if (!perm) {
        st = LB_ERR_NOMEM;
        goto out;
    }
    int64_t ns = 0, nb = 0;
    for (int64_t c = 0; c < cols; c++) { /* a mask with another count than k fails at load */
        if (q.col_mask[c] && ns < k) perm[ns++] = (int32_t)c;
        else if (!q.col_mask[c] && nb < cols - k) perm[k + nb++] = (int32_t)c;
    }
    if (ns != k || nb != cols - k) st = lb_fail(LB_ERR_FORMAT, "ptq161: the column mask does not hold %lld salient columns", (long long)k);
    for (int64_t r = 0; r < rows && st == LB_OK; r++) {
        s.scale[r] = q.scale[r];
        s.offset[r] = q.offset[r];
        b.scale[r] = q.extra[2 * r];
        for (int64_t p = 0; p < k; p++) s.codes[r * s.cols_padded + p] = q.codes[r * q.cols_padded + perm[p]];
        for (int64_t p = 0; p < cols - k; p++) b.codes[r * b.cols_padded + p] = q.codes[r * q.cols_padded + perm[k + p]] & 1;
    }
    if (st == LB_OK) st = make_part(&s, &hdr.part[0], &pp[0], &pb[0]);
    if (st == LB_OK) st = make_part(&b, &hdr.part[1], &pp[1], &pb[1]);
    uint8_t *block = NULL;
    size_t extra = hdr.mu_off - hdr.perm_off + (size_t)rows * sizeof(float);
    if (st == LB_OK) st = assemble(&hdr, 2, pp, pb, extra, &block, bytes);
    if (st == LB_OK) {
        memcpy(block + hdr.perm_off, perm, (size_t)cols * sizeof(int32_t));
        float *mu = (float *)(block + hdr.mu_off);
        for (int64_t r = 0; r < rows; r++) mu[r] = q.extra[2 * r + 1];
        *out = block;
    }
    lb_free(perm);
out:
    lb_free(pp[0]);
    lb_free(pp[1]);
    lb_qtensor_free(&q);
    lb_qtensor_free(&s);
    lb_qtensor_free(&b);
    return done(st, w);
}

lb_status lb_littlebit_repack(const lb_tensor *w, void **out, size_t *bytes) {
    if (!lb_littlebit_kernel_accepts(&w->spec, &w->layout))
        return lb_fail(LB_ERR_INVALID, "tensor '%s' is not littlebit", w->name);
    lb_qtensor q;
    lb_status st = decode(w, &q);
    if (st != LB_OK) {
        lb_qtensor_free(&q);
        return done(st, w);
    }
    lb_littlebit_pack p;
    memset(&p, 0, sizeof p);
    p.rank = w->spec.rank;
    p.r8 = (p.rank + 7) / 8 * 8;
    p.rows = w->rows;
    p.cols = w->cols;
    p.cols8 = (w->cols + 7) / 8 * 8;
    p.h_off = align64(sizeof p);
    p.l_off = p.h_off + align64((size_t)p.rows * sizeof(float));
    p.g_off = p.l_off + align64((size_t)p.rank * sizeof(float));
    p.u_off = p.g_off + align64((size_t)p.cols * sizeof(float));
    p.vt_off = p.u_off + align64((size_t)p.rows * (size_t)(p.r8 / 8));
    *bytes = p.vt_off + (size_t)p.rank * (size_t)(p.cols8 / 8);
    uint8_t *b = lb_calloc(1, *bytes);
    if (!b) {
        lb_qtensor_free(&q);
        return done(LB_ERR_NOMEM, w);
    }
    memcpy(b, &p, sizeof p);
    memcpy(b + p.h_off, q.lowrank.h, (size_t)p.rows * sizeof(float));
    memcpy(b + p.l_off, q.lowrank.l, (size_t)p.rank * sizeof(float));
    memcpy(b + p.g_off, q.lowrank.g, (size_t)p.cols * sizeof(float));
    uint8_t *u = b + p.u_off, *vt = b + p.vt_off;
    const int R = p.rank;
    for (int64_t r = 0; r < p.rows; r++)
        for (int j = 0; j < R; j++) u[r * (p.r8 / 8) + j / 8] |= (uint8_t)(q.lowrank.u_sign[r * R + j] << (j % 8));
    for (int64_t c = 0; c < p.cols; c++)
        for (int j = 0; j < R; j++) vt[j * (p.cols8 / 8) + c / 8] |= (uint8_t)(q.lowrank.v_sign[c * R + j] << (c % 8));
    lb_qtensor_free(&q);
    *out = b;
    return LB_OK;
}

/* ---- the input transforms ------------------------------------------------------ */

int lb_onebit_pre_cols(const lb_tensor *w) { return (int)lb_binfam(w)->cols; }

void lb_onebit_pre(const lb_tensor *w, const float *x, int n, float *out) {
    const int64_t cols = lb_binfam(w)->cols;
    const float *g = lb_binfam_floats(w, lb_binfam(w)->g_off);
    for (int i = 0; i < n; i++)
        for (int64_t c = 0; c < cols; c++) out[(size_t)i * cols + c] = x[(size_t)i * cols + c] * g[c];
}

int lb_ptq161_pre_cols(const lb_tensor *w) { return (int)lb_binfam(w)->width; }

void lb_ptq161_pre(const lb_tensor *w, const float *x, int n, float *out) {
    const lb_binfam_pack *p = lb_binfam(w);
    const int32_t *perm = (const int32_t *)((const uint8_t *)w->packed + p->perm_off);
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * p->cols;
        float *o = out + (size_t)i * p->width;
        for (int64_t c = 0; c < p->k; c++) o[c] = xi[perm[c]];
        for (int64_t c = p->k; c < p->ks; c++) o[c] = 0.0f;
        for (int64_t c = p->k; c < p->cols; c++) o[p->ks + c - p->k] = xi[perm[c]];
    }
}

int lb_littlebit_pre_cols(const lb_tensor *w) { return lb_lbit(w)->r8; }

float lb_sign_dot_ref(const uint8_t *bits, const float *x, int64_t n8) {
    float s = 0.0f;
    for (int64_t j = 0; j < n8; j++) s += (bits[j >> 3] >> (j & 7) & 1) ? x[j] : -x[j];
    return s;
}

float lb_sign_dot_scaled_ref(const uint8_t *bits, const float *g, const float *x, int64_t n) {
    float s = 0.0f;
    for (int64_t j = 0; j < n; j++) {
        float v = g[j] * x[j];
        s += (bits[j >> 3] >> (j & 7) & 1) ? v : -v;
    }
    return s;
}

/* Every output is one scaled sign dot, computed by one thread: the same
 * values at any thread count. */
void lb_littlebit_first_factor(const lb_tensor *w, const float *x, int n, float *out, lb_sign_dot_scaled_fn sdot) {
    const lb_littlebit_pack *p = lb_lbit(w);
    const float *g = (const float *)lb_lbit_bytes(w, p->g_off), *l = (const float *)lb_lbit_bytes(w, p->l_off);
    const uint8_t *vt = lb_lbit_bytes(w, p->vt_off);
    const long total = (long)n * p->r8;
    const size_t vrow = (size_t)(p->cols8 / 8);
#pragma omp parallel for schedule(static) if ((double)total * (double)p->cols > 1048576.0)
    for (long e = 0; e < total; e++) {
        int i = (int)(e / p->r8), j = (int)(e % p->r8);
        out[e] = j < p->rank ? l[j] * sdot(vt + (size_t)j * vrow, g, x + (size_t)i * p->cols, p->cols) : 0.0f;
    }
}

/* ---- the composed routines ------------------------------------------------------- */

void lb_binfam_onebit_run(lb_kernel_fn inner, const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                          float *scratch) {
    inner(&lb_binfam(w)->part[0], x, r0, r1, y, ldy, scratch);
}

/* activation rows i0..i1 and columns c0.. (a multiple of LB_ACT_PAD) of a
 * prepared LB_ACT_Q8_32 input, as an input of its own (the row stride stays) */
static lb_act q8_slice(const lb_act *a, int i0, int i1, int64_t c0, int64_t cols) {
    lb_act s = *a;
    size_t ld = (size_t)a->ld;
    s.n = i1 - i0;
    s.cols = (int)cols;
    s.q = a->q + (size_t)i0 * ld + (size_t)c0;
    s.d = a->d + (size_t)i0 * (ld / 32) + (size_t)c0 / 32;
    s.s16 = a->s16 + (size_t)i0 * (ld / 16) + (size_t)c0 / 16;
    return s;
}

#define PTQ_ROWS 64 /* activation rows per pass (run_kernel's ACT_TILE) */
#define PTQ_TILE 16 /* weight rows per pass */

void lb_binfam_ptq161_run(lb_kernel_fn inner, const lb_tensor *w, const lb_act *x, int r0, int r1, float *y, int ldy,
                          float *scratch) {
    const lb_binfam_pack *p = lb_binfam(w);
    const float *mu = lb_binfam_floats(w, p->mu_off);
    const int64_t nbin = p->cols - p->k, blocks = (nbin + 31) / 32;
    float part[PTQ_ROWS * PTQ_TILE], xsum[PTQ_ROWS];
    for (int i0 = 0; i0 < x->n; i0 += PTQ_ROWS) {
        int i1 = i0 + PTQ_ROWS < x->n ? i0 + PTQ_ROWS : x->n;
        lb_act xs = q8_slice(x, i0, i1, 0, p->k), xb = q8_slice(x, i0, i1, p->ks, nbin);
        /* sum of the binary block's activations as quantized: the mu term */
        for (int i = 0; i < i1 - i0; i++) {
            const float *d = xb.d + (size_t)i * (x->ld / 32);
            const int16_t *s16 = xb.s16 + (size_t)i * (x->ld / 16);
            float s = 0.0f;
            for (int64_t b = 0; b < blocks; b++) s += d[b] * (float)(s16[2 * b] + s16[2 * b + 1]);
            xsum[i] = s;
        }
        float *yi = y + (size_t)i0 * ldy;
        for (int t0 = r0; t0 < r1; t0 += PTQ_TILE) {
            int t1 = t0 + PTQ_TILE < r1 ? t0 + PTQ_TILE : r1;
            inner(&p->part[0], &xs, t0, t1, yi, ldy, scratch);
            for (int i = 0; i < i1 - i0; i++)
                for (int r = t0; r < t1; r++) part[i * PTQ_TILE + (r - t0)] = yi[(size_t)i * ldy + r];
            inner(&p->part[1], &xb, t0, t1, yi, ldy, scratch);
            for (int i = 0; i < i1 - i0; i++)
                for (int r = t0; r < t1; r++)
                    yi[(size_t)i * ldy + r] += part[i * PTQ_TILE + (r - t0)] + mu[r] * xsum[i];
        }
    }
}
