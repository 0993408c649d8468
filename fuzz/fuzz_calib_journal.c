/* libFuzzer target for calibration journals (src/calib/calib_journal.c,
 * src/calib/calib_layer_journal.c): the input as the whole-model pass's
 * snapshot (lb_calib_journal_load, into statistics and accumulators of a
 * fixed tiny shape) and as the layer-by-layer pass's
 * (lb_calib_layer_snapshot_parse), each as given and re-sealed with a valid
 * checksum so the bodies are reached, and checked against the fingerprint
 * the input carries (the body parsed) and against another one (the
 * difference quoted). Either it parses into counts and sizes the parser
 * checked, or it fails cleanly; ASan sees any read past the exact-size copy.
 *
 * The shape is the seeds' (fuzz/corpus/fuzz_calib_journal), which lowbit
 * calibrate itself wrote:
 *   lowbit synth -o tiny.gguf --dim 8 --ffn 16 --layers 3 --heads 2 --vocab 512 --ctx 16 --seed 1
 *   C="lowbit calibrate tiny.gguf --tokenizer tok512.bin --text tinystories-sample.txt \
 *      --calib-blocks 3 --ctx 8 --hist-bins 16"      # 24 tokens in 3 sequences
 *   $C -o l.gguf --journal-every 1 --stop-after 1    # l.gguf.partial: layered_1 (and 2)
 *   $C -o w.gguf --whole-model --stop-after 1         # w.gguf.partial: whole_1 (and 2) */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "calib/calib_internal.h"
#include "core/fingerprint.h"
#include "model/model_internal.h"

enum { DIM = 8, FFN = 16, LAYERS = 3, KV_DIM = 8, BINS = 16, CTX = 8, BLOCKS = 3, TOKENS = 24, SEQUENCES = 3 };

static lb_calib_stats *skeleton(unsigned parts) {
    lb_calib_info info;
    memset(&info, 0, sizeof info);
    info.dim = DIM;
    info.hidden_dim = FFN;
    info.n_layers = LAYERS;
    info.vocab_size = 512;
    info.parts = parts;
    info.hist_bins = BINS;
    info.tokens = TOKENS;
    info.sequences = SEQUENCES;
    lb_calib_stats *s = NULL;
    return lb_calib_alloc(&info, KV_DIM, &s) == LB_OK ? s : NULL;
}

static void whole_model(const uint8_t *data, size_t size, const char *fingerprint) {
    lb_calib_stats *s = skeleton(LB_CALIB_ALL_PARTS);
    lb_model m;
    memset(&m, 0, sizeof m);
    m.cfg.dim = DIM;
    m.cfg.hidden_dim = FFN;
    m.cfg.n_layers = LAYERS;
    lb_calib_collector k;
    if (!s || lb_calib_collector_init(&k, &m, s, CTX) != LB_OK) {
        lb_calib_stats_free(s);
        return;
    }
    lb_calib_journal j = {.path = "fuzz.partial", .fingerprint = fingerprint, .total = BLOCKS};
    int done = 0;
    int64_t tokens = 0;
    if (lb_calib_journal_load(&j, data, size, s, &k, &done, &tokens) == LB_OK) {
        if (done < 1 || done > BLOCKS || tokens < 0 || s->info.sequences < 0) abort();
        for (int i = 0; i < LAYERS * LB_CALIB_N_INPUTS; i++)
            if (s->in[i].n < 0) abort();
    }
    lb_calib_collector_free(&k);
    lb_calib_stats_free(s);
}

static void layered(const uint8_t *data, size_t size, const char *fingerprint) {
    lb_calib_stats *s = skeleton(0);
    lb_calib_layer_snapshot snap;
    if (s && lb_calib_layer_snapshot_parse("fuzz.partial", fingerprint, data, size, s, DIM, &snap) == LB_OK) {
        if (snap.done < 1 || snap.done >= LAYERS || snap.data_start > snap.data_kept || !snap.x) abort();
        for (int i = 0; i < snap.done * LB_CALIB_N_INPUTS; i++)
            if (s->in[i].n < 0 || s->in[i].n > TOKENS || !(s->in[i].hist_range >= 0)) abort();
        for (int i = 0; i < TOKENS * DIM; i++) { /* every value of the stream read: ASan sees one past the copy */
            float v;
            memcpy(&v, snap.x + 4 * (size_t)i, 4);
            if (!isfinite(v)) abort(); /* the parser refuses non-finite values */
        }
    }
    lb_calib_stats_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* the fingerprint the input carries (after magic and version), when it has one */
    char *own = NULL;
    uint32_t f = 0;
    if (size >= 16) memcpy(&f, data + 12, 4);
    if (size >= 16 && f <= size - 16 && (own = malloc((size_t)f + 1))) {
        memcpy(own, data + 16, f);
        own[f] = 0;
    }
    uint8_t *copy = malloc(size ? size : 1); /* exact size: ASan sees any over-read */
    if (!copy) {
        free(own);
        return 0;
    }
    for (int sealed = 0; sealed < 2; sealed++) {
        memcpy(copy, data, size);
        if (sealed && size >= 8) {
            uint64_t h = lb_fnv1a(copy, size - 8, LB_FNV1A_START);
            memcpy(copy + size - 8, &h, 8);
        }
        const char *fp = own ? own : "fuzz fingerprint\n";
        whole_model(copy, size, fp);
        layered(copy, size, fp);
        if (sealed) { /* another run's fingerprint: refused, the first differing line quoted */
            whole_model(copy, size, "lowbit 0.0.0, journal version 1\nanother run\n");
            layered(copy, size, "lowbit 0.0.0, journal version 1\nanother run\n");
        }
    }
    free(copy);
    free(own);
    return 0;
}
