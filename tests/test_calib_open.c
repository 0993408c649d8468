/* Statistics read in place from their file (lb_calib_stats_open;
 * docs/SCALING.md, "Streaming"), on stories260K (8 calibration blocks,
 * every part, plus squared gradients over 3 blocks at ctx 64):
 * - open gives load's values byte for byte (every array of every linear,
 *   n, histogram ranges, info) with X^T X and the squared gradients left in
 *   the mapping, and still after every layer's pages were given back; the
 *   mapping's resident pages (/proc/self/smaps) drop when they are;
 * - bytes that do not align X^T X for double (the file at an odd 4-byte
 *   offset, through the in-place parse) get X^T X copied, the same values;
 * - quantization from opened statistics writes the file loaded statistics
 *   give, with the same report: gptq and squeezellm weights=fisher
 *   streamed, awq in memory (its scaled copies of the statistics);
 * - a NaN in one layer's X^T X, a negative diagonal, a truncated file, a
 *   model of another shape: open fails as load does, naming it, no result;
 * - lb_calib_fisher refuses opened statistics; releasing a layer of
 *   statistics in memory changes nothing. */
#define _XOPEN_SOURCE 700 /* mkdtemp */

#include "test.h"
#include "tmpdir.h"

#include <stdint.h>

#include "calib/calib_internal.h"

static const char *model_path, *tok_path;

/* every array of every linear equal, and the info */
static int same_values(const lb_calib_stats *a, const lb_calib_stats *b) {
    lb_calib_info ia, ib;
    lb_calib_stats_info(a, &ia);
    lb_calib_stats_info(b, &ib);
    int ok = !memcmp(&ia, &ib, sizeof ia);
    for (int l = 0; ok && l < ia.n_layers; l++)
        for (int w = 0; ok && w < LB_N_LINEARS; w++) {
            const lb_layer_stats *x = lb_calib_stats_get(a, l, w), *y = lb_calib_stats_get(b, l, w);
            size_t c = (size_t)x->cols, r = (size_t)x->rows;
#define SAME(f, bytes) (!x->f == !y->f && (!x->f || !memcmp(x->f, y->f, bytes)))
            ok = x->n_samples == y->n_samples && x->rows == y->rows && x->cols == y->cols &&
                 x->hist_bins == y->hist_bins && x->hist_range == y->hist_range && SAME(xtx, c * c * 8) &&
                 SAME(grad_sq, r * c * 4) && SAME(mean_abs_x, c * 4) && SAME(max_abs_x, c * 4) &&
                 SAME(mean_x, c * 4) && SAME(hist, (size_t)x->hist_bins * 8) && !x->dxtx && !y->dxtx;
#undef SAME
            if (!ok) fprintf(stderr, "layer %d linear %d differs\n", l, w);
        }
    return ok;
}

/* resident kB of the mapping holding p (/proc/self/smaps), -1 when unknown */
static long mapping_rss_kb(const void *p) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return -1;
    char line[512];
    int inside = 0;
    long kb = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            inside = (uintptr_t)p >= lo && (uintptr_t)p < hi;
            continue;
        }
        if (inside && sscanf(line, "Rss: %ld kB", &kb) == 1) break;
    }
    fclose(f);
    return kb;
}

/* the file at path with one X^T X entry (layer 1, ffn_hidden) set to v */
static void write_poisoned(const char *path, const char *out, size_t entry, double v) {
    char *buf = NULL;
    size_t n = 0;
    lb_gguf *g = NULL;
    CHECK_OK(lb_read_file(path, &buf, &n));
    if (buf) CHECK_OK(lb_gguf_parse((const uint8_t *)buf, n, &g));
    const lb_gguf_tensor *t = g ? lb_gguf_find_tensor(g, "calib.blk.1.ffn_hidden.xtx") : NULL;
    CHECK(t != NULL);
    if (t) {
        memcpy((uint8_t *)buf + ((const uint8_t *)t->data - (const uint8_t *)buf) + entry * 8, &v, 8);
        FILE *f = fopen(out, "wb");
        CHECK(f && fwrite(buf, 1, n, f) == n);
        if (f) fclose(f);
    }
    lb_gguf_free(g);
    lb_free(buf);
}

/* each from a fresh model: a plan that does not stream quantizes it in place */
static void quantize_both(const char *spec, const char *method, const char *opts, const lb_calib_stats *loaded,
                          const lb_calib_stats *opened, int want_streamed) {
    lb_model *ma = NULL, *mb = NULL;
    CHECK_OK(lb_model_load(model_path, tok_path, &ma));
    CHECK_OK(lb_model_load(model_path, tok_path, &mb));
    if (!ma || !mb) {
        lb_model_free(ma);
        lb_model_free(mb);
        return;
    }
    lb_plan p;
    lb_method_opts o;
    lb_qspec q = lb_test_spec(spec);
    lb_plan_init(&p);
    CHECK_OK(lb_test_method_opts(lb_method_find(method), opts, &o));
    CHECK_OK(lb_plan_add_selection(&p, "linears", &q, &o));
    CHECK_OK(lb_plan_resolve(&p, ma));
    lb_quantize_report ra, rb;
    int na = 0, nb = 0, sa = -1, sb = -1;
    CHECK_OK(lb_quantize_model_to_gguf(ma, &p, loaded, path_in("a.gguf"), NULL, &na, &ra, 1, &sa));
    CHECK_OK(lb_quantize_model_to_gguf(mb, &p, opened, path_in("b.gguf"), NULL, &nb, &rb, 1, &sb));
    CHECK_MSG(sa == want_streamed && sb == want_streamed && same_file(path_in("a.gguf"), path_in("b.gguf")),
              "%s %s: loaded and opened statistics give other files (streamed %d %d)", spec, method, sa, sb);
    int same = ra.tensors_quantized == rb.tensors_quantized && ra.tensors_quantized > 0;
    for (int i = 0; same && i < ra.tensors_quantized; i++) {
        const lb_tensor_report *x = &ra.tensors[i], *y = &rb.tensors[i];
        same = !strcmp(x->name, y->name) && x->rel_error == y->rel_error && x->proxy_loss == y->proxy_loss &&
               x->proxy_loss_rtn == y->proxy_loss_rtn && !isnan(x->proxy_loss);
    }
    CHECK_MSG(same, "%s %s: the reports differ", spec, method);
    lb_quantize_report_free(&ra);
    lb_quantize_report_free(&rb);
    lb_plan_free(&p);
    lb_model_free(ma);
    lb_model_free(mb);
    remove(path_in("a.gguf"));
    remove(path_in("b.gguf"));
}

int main(void) {
    model_path = lb_test_data("models/stories260K.bin");
    tok_path = lb_test_data("models/tok512.bin");
    const char *text = lb_test_data("text/tinystories-sample.txt");
    if (tmpdir_make("calib_open")) return 1;
    lb_model *m = NULL;
    CHECK_OK(lb_model_load(model_path, tok_path, &m));
    if (!m) return lb_test_finish("test_calib_open");
    lb_calib_opts co;
    lb_calib_opts_default(&co);
    co.text_path = text;
    co.calib_blocks = 8;
    lb_calib_stats *made = NULL, *loaded = NULL, *opened = NULL;
    CHECK_OK(lb_calibrate(m, &co, &made));
    co.blocks = 3;
    co.ctx = 64;
    if (made) CHECK_OK(lb_calib_fisher(m, &co, made));
    char path[512]; /* path_in's results are reused after 8 calls */
    snprintf(path, sizeof path, "%s", path_in("s.gguf"));
    if (made) CHECK_OK(lb_calib_stats_save(made, path));
    lb_calib_stats_free(made);
    CHECK_OK(lb_calib_stats_load(path, m, &loaded));
    CHECK_OK(lb_calib_stats_open(path, m, &opened));
    if (!loaded || !opened) return lb_test_finish("test_calib_open");

    /* in place, the same values; the pages go back layer by layer and come again */
    CHECK(opened->mapped_parts == (LB_STATS_XTX | LB_STATS_GRAD_SQ) && loaded->mapped_parts == 0);
    CHECK(opened->map.data && (const uint8_t *)lb_calib_stats_get(opened, 0, LB_WQ)->xtx > opened->map.data);
    CHECK(same_values(loaded, opened));
    long bulk_kb = 0;
    for (int w = 0; w < LB_N_LINEARS; w++) {
        const lb_layer_stats *ls = lb_calib_stats_get(opened, 0, w);
        bulk_kb += (long)(ls->rows * ls->cols * 4 / 1024);
    }
    long touched = mapping_rss_kb(opened->map.data);
    for (int l = 0; l < m->cfg.n_layers; l++) lb_calib_stats_release_layer(opened, l);
    lb_calib_stats_release_layer(opened, -1); /* out of range: nothing */
    lb_calib_stats_release_layer(opened, m->cfg.n_layers);
    long released = mapping_rss_kb(opened->map.data);
    if (touched < 0) {
        fprintf(stderr, "test_calib_open: no /proc/self/smaps: the resident pages are NOT checked\n");
    } else {
        CHECK_MSG(touched >= bulk_kb && released * 16 < touched, "mapping resident %ld kB read, %ld kB released "
                  "(layer 0's squared gradients alone are %ld kB)", touched, released, bulk_kb);
    }
    CHECK(same_values(loaded, opened));
    for (int l = 0; l < m->cfg.n_layers; l++) lb_calib_stats_release_layer(loaded, l); /* in memory: nothing */
    CHECK(same_values(loaded, opened));

    /* X^T X not aligned for double in the bytes: copied; the gradients (4-aligned) stay in place */
    char *bytes = NULL;
    size_t n = 0;
    CHECK_OK(lb_read_file(path, &bytes, &n));
    uint8_t *odd = malloc(n + 8);
    lb_calib_stats *shifted = NULL;
    if (bytes && odd) {
        memcpy(odd + 4, bytes, n);
        CHECK_OK(lb_calib_stats_parse_in_place(odd + 4, n, m, &shifted));
    }
    CHECK(shifted && shifted->mapped_parts == LB_STATS_GRAD_SQ);
    CHECK(shifted && same_values(loaded, shifted));
    CHECK(shifted && (const uint8_t *)lb_calib_stats_get(shifted, 2, LB_W2)->grad_sq > odd &&
          (const uint8_t *)lb_calib_stats_get(shifted, 2, LB_W2)->grad_sq < odd + n + 4);
    lb_calib_stats_free(shifted);
    free(odd);

    /* quantized from either: the same bytes and report */
    quantize_both("int4:g64:asym", "gptq", "", loaded, opened, 1);
    quantize_both("lut3", "squeezellm", "weights=fisher", loaded, opened, 1);
    quantize_both("int4:g64:asym", "awq", "", loaded, opened, 0); /* input scales: in memory, folded copies */

    /* read-only: no squared gradients added to them */
    CHECK_FAILS(lb_calib_fisher(m, &co, opened), LB_ERR_INVALID, "lb_calib_stats_load");

    /* bad files fail open as they fail load, naming the problem, with no result */
    struct { size_t entry; double v; const char *needle; } bad[] = {
        {5, NAN, "layer 1 ffn_hidden: x^T x entry 5 is nan"},
        {173 * 3, -1.0, "layer 1 ffn_hidden: x^T x entry 519 is -1"}, /* the diagonal of a 172-wide input */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        write_poisoned(path, path_in("bad.gguf"), bad[i].entry, bad[i].v);
        lb_calib_stats *x = (lb_calib_stats *)1, *y = (lb_calib_stats *)1;
        CHECK_FAILS(lb_calib_stats_load(path_in("bad.gguf"), m, &x), LB_ERR_FORMAT, bad[i].needle);
        CHECK_FAILS(lb_calib_stats_open(path_in("bad.gguf"), m, &y), LB_ERR_FORMAT, bad[i].needle);
        CHECK(!x && !y);
    }
    FILE *f = fopen(path_in("bad.gguf"), "wb");
    CHECK(f && bytes && fwrite(bytes, 1, n / 2, f) == n / 2);
    if (f) fclose(f);
    lb_calib_stats *y = (lb_calib_stats *)1;
    CHECK(lb_calib_stats_open(path_in("bad.gguf"), m, &y) != LB_OK && !y &&
          strstr(lb_last_error(), "opening calibration statistics"));
    remove(path_in("bad.gguf"));
    lb_model other = *m;
    other.cfg.n_layers--;
    y = (lb_calib_stats *)1;
    CHECK_FAILS(lb_calib_stats_open(path, &other, &y), LB_ERR_INVALID, "another model");
    CHECK(!y);

    lb_free(bytes);
    lb_calib_stats_free(loaded);
    lb_calib_stats_free(opened);
    remove(path);
    CHECK(tmpdir_count("") == 2); /* . and .. */
    tmpdir_remove();
    lb_model_free(m);
    return lb_test_finish("test_calib_open");
}
