/* Opening a model file: map it, recognize its kind by content (GGUF magic,
 * llama2.c v1 magic, else a legacy llama2.c header), and find the tokenizer.
 * A folder, a config.json or a .safetensors file is a Hugging Face folder
 * (model_hf.c). */
#define _POSIX_C_SOURCE 200809L
#include <string.h>
#include <sys/stat.h>

#include "model/model_internal.h"

int lb_path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* The first four bytes as text, non-printable ones as \xNN. */
static void describe_magic(const uint8_t *data, size_t size, char *out, size_t n) {
    size_t o = 0;
    out[0] = 0;
    for (size_t i = 0; i < 4 && i < size && o + 5 < n; i++) {
        uint8_t c = data[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, n - o, "\\x%02X", c);
        out[o] = 0;
    }
}

/* tok<vocab>.bin, then tokenizer.bin, in the model's directory */
static int find_sidecar_tokenizer(const char *model_path, int vocab, char *out, size_t n) {
    const char *slash = strrchr(model_path, '/');
    int dirlen = slash ? (int)(slash - model_path + 1) : 0;
    snprintf(out, n, "%.*stok%d.bin", dirlen, model_path, vocab);
    if (lb_path_exists(out)) return 1;
    snprintf(out, n, "%.*stokenizer.bin", dirlen, model_path);
    return lb_path_exists(out);
}

/* a folder, its config.json, or a .safetensors file (by name: its bytes
 * would otherwise be tried as a legacy llama2.c header) */
static int is_hf_path(const char *path) {
    size_t n = strlen(path);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    return !strcmp(base, "config.json") || (n > 12 && !strcmp(path + n - 12, ".safetensors"));
}

lb_status lb_model_load(const char *path, const char *tokenizer_path, lb_model **out) {
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) { /* a Hugging Face folder, or a mistake */
        char cfg[4096];
        snprintf(cfg, sizeof cfg, "%s/config.json", path);
        if (!lb_path_exists(cfg))
            return lb_fail(LB_ERR_IO, "'%s' is a directory, not a regular file, and not a Hugging Face folder (it "
                           "has no config.json)", path);
        return lb_model_load_hf(path, tokenizer_path, out);
    }
    if (is_hf_path(path)) return lb_model_load_hf(path, tokenizer_path, out);
    lb_mapped_file f;
    lb_status st = lb_map_file(path, &f);
    if (st != LB_OK) return st;
    lb_model *m = NULL;
    /* the kind is decided by the magic; on failure the message says which
     * kinds were considered, so a damaged GGUF is not reported as a broken
     * llama2.c header */
    char magic[32];
    describe_magic(f.data, f.size, magic, sizeof magic);
    if (f.size >= 4 && memcmp(f.data, "GGUF", 4) == 0) {
        /* a split set's other shards are mapped here and owned by the model */
        lb_gguf *g = NULL;
        lb_mapped_file *others = NULL;
        int n_others = 0;
        if ((st = lb_gguf_split_load(path, f.data, f.size, &g, &others, &n_others)) == LB_OK) {
            st = lb_model_from_gguf_parsed(g, &m);
            lb_gguf_free(g);
            if (st == LB_OK) {
                m->shards = others, m->n_shards = n_others;
            } else {
                for (int i = 0; i < n_others; i++) lb_unmap_file(&others[i]);
                lb_free(others);
            }
        }
        if (st != LB_OK) lb_fail_context(st, "loading '%s' as GGUF", path);
    } else if (f.size >= 4 && lb_rd32(f.data) == 0x616b3432u) {
        if ((st = lb_model_from_llama2c(f.data, f.size, &m)) != LB_OK)
            lb_fail_context(st, "loading '%s' as a llama2.c v1 checkpoint (magic 0x616b3432)", path);
    } else if ((st = lb_model_from_llama2c(f.data, f.size, &m)) != LB_OK) {
        lb_fail_context(st,
                        "loading '%s': not a GGUF file (magic \"%s\", not \"GGUF\"), not a llama2.c v1 checkpoint "
                        "(magic 0x616b3432), and as a legacy llama2.c checkpoint (no magic)",
                        path, magic);
    }
    if (st != LB_OK) {
        lb_unmap_file(&f);
        return st;
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
            return st; /* lb_tokenizer_load's message already names the file */
        }
        lb_tokenizer_free(m->tokenizer);
        m->tokenizer = t;
    }
    *out = m;
    return LB_OK;
}
