/* Opening a model file: map it, recognize its kind by content (GGUF magic,
 * llama2.c v1 magic, else a legacy llama2.c header), and find the tokenizer. */
#include <string.h>

#include "model/model_internal.h"

static int file_exists(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

/* tok<vocab>.bin, then tokenizer.bin, in the model's directory */
static int find_sidecar_tokenizer(const char *model_path, int vocab, char *out, size_t n) {
    const char *slash = strrchr(model_path, '/');
    int dirlen = slash ? (int)(slash - model_path + 1) : 0;
    snprintf(out, n, "%.*stok%d.bin", dirlen, model_path, vocab);
    if (file_exists(out)) return 1;
    snprintf(out, n, "%.*stokenizer.bin", dirlen, model_path);
    return file_exists(out);
}

lb_status lb_model_load(const char *path, const char *tokenizer_path, lb_model **out) {
    *out = NULL;
    lb_mapped_file f;
    lb_status st = lb_map_file(path, &f);
    if (st != LB_OK) return st;
    lb_model *m = NULL;
    if (f.size >= 4 && memcmp(f.data, "GGUF", 4) == 0)
        st = lb_model_from_gguf(f.data, f.size, &m);
    else
        st = lb_model_from_llama2c(f.data, f.size, &m);
    if (st != LB_OK) {
        lb_unmap_file(&f);
        return lb_fail_context(st, "loading '%s'", path);
    }
    m->file = f; /* tensors point into the mapping: the model owns it now */

    char found[4096];
    const char *tok = tokenizer_path;
    if (!tok && !m->tokenizer && find_sidecar_tokenizer(path, m->cfg.vocab_size, found, sizeof found)) tok = found;
    if (tok) {
        lb_tokenizer *t;
        st = lb_tokenizer_load(tok, m->cfg.vocab_size, &t);
        if (st != LB_OK) {
            lb_model_free(m);
            return lb_fail_context(st, "loading tokenizer '%s'", tok);
        }
        lb_tokenizer_free(m->tokenizer);
        m->tokenizer = t;
    }
    *out = m;
    return LB_OK;
}
