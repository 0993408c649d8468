/* What an outside tester found: bad numbers in a model (overflowing weights
 * that turn the logits to NaN, NaN or Inf stored in any float tensor), bad
 * paths (FIFOs, symlinks, devices, an output that is an input, missing
 * directories) and messages that name the wrong thing. Each case fails
 * cleanly with a message naming the culprit. */
#include "test.h"
#include "tmpdir.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    fclose(f);
}

static void discard(const char *piece, size_t len, void *user) {
    (void)piece;
    (void)len;
    (void)user;
}

/* All-NaN probabilities used to make top-p sampling read pi[-1]. */
static void test_sampler_nan(void) {
    enum { V = 16 };
    float logits[V];
    for (int i = 0; i < V; i++) logits[i] = NAN;
    const float top_ps[] = {0.0f, 0.5f, 0.9f, 1.0f};
    for (size_t k = 0; k < sizeof top_ps / sizeof top_ps[0]; k++) {
        lb_sampler s;
        CHECK_OK(lb_sampler_init(&s, V, 1.0f, top_ps[k], 7));
        int tok = lb_sample(&s, logits);
        CHECK_MSG(tok >= 0 && tok < V, "top-p %g: token %d", (double)top_ps[k], tok);
        lb_sampler_free(&s);
    }
}

/* stories260K with one exponent bit flipped in blk.1.attn_q (byte 160187):
 * the weight is finite (1.6e38) but the activations overflow to NaN from
 * the second position on. Greedy or sampled, generation must stop there. */
static void test_generate_nan_logits(const char *model_bytes, size_t size) {
    char *bad = lb_alloc(size);
    memcpy(bad, model_bytes, size);
    bad[160187] ^= 0x40;
    lb_model *m = NULL;
    CHECK_OK(lb_model_from_llama2c((const uint8_t *)bad, size, &m));
    if (!m) return;
    CHECK_OK(lb_tokenizer_load(lb_test_data("models/tok512.bin"), 512, &m->tokenizer));
    const struct {
        float temp, top_p;
    } settings[] = {{0.0f, 0.9f}, {1.0f, 0.9f}, {1.0f, 1.0f}, {0.8f, 0.0f}};
    for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++) {
        lb_gen_opts o = {.max_new = 5, .temperature = settings[i].temp, .top_p = settings[i].top_p, .seed = 1};
        lb_gen_stats stats;
        CHECK_FAILS(lb_generate(m, "", &o, discard, NULL, &stats), LB_ERR_NUMERIC,
                    "logits at position 1 (after token 403)");
        CHECK(strstr(lb_last_error(), "NaN") != NULL);
        CHECK(stats.generated_tokens == 1); /* "Once", from position 0's still finite logits */
    }
    lb_model_free(m);
    lb_free(bad);
}

/* legacy llama2.c layout: 28-byte header, then token_embd (512 x 64), then
 * the five attn_norm rows of 64 */
static size_t legacy_offset(size_t float_index) { return 28 + 4 * float_index; }

static void put_f32(char *buf, size_t off, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    lb_wr32(buf + off, u);
}

static void test_nonfinite_float_weights(const char *model_bytes, size_t size) {
    char *bad = lb_alloc(size);
    lb_model *m = NULL;
    memcpy(bad, model_bytes, size);
    put_f32(bad, legacy_offset(512 * 64 + 3), NAN);
    CHECK_FAILS(lb_model_from_llama2c((const uint8_t *)bad, size, &m), LB_ERR_NUMERIC,
                "tensor 'blk.0.attn_norm.weight' has a non-finite value: row 0, column 3 is NaN");
    memcpy(bad, model_bytes, size);
    put_f32(bad, legacy_offset(5 * 64 + 7), INFINITY);
    CHECK_FAILS(lb_model_from_llama2c((const uint8_t *)bad, size, &m), LB_ERR_NUMERIC,
                "tensor 'token_embd.weight' has a non-finite value: row 5, column 7 is +Inf");
    /* the last tensor of the file: output_norm (freq_cis follows, unused) */
    memcpy(bad, model_bytes, size);
    put_f32(bad, legacy_offset(512 * 64 + 5 * 64 + 5 * (64 * 64 * 2 + 32 * 64 * 2) + 5 * 64 + 5 * 172 * 64 * 3 + 63),
            -INFINITY);
    CHECK_FAILS(lb_model_from_llama2c((const uint8_t *)bad, size, &m), LB_ERR_NUMERIC,
                "tensor 'output_norm.weight' has a non-finite value: row 0, column 63 is -Inf");
    /* through the file loader, as the CLI meets it */
    const char *path = path_in("nan-norm.bin");
    memcpy(bad, model_bytes, size);
    put_f32(bad, legacy_offset(512 * 64 + 3), NAN);
    write_file(path, bad, size);
    CHECK_FAILS(lb_model_load(path, NULL, &m), LB_ERR_NUMERIC, "nan-norm.bin");
    CHECK(strstr(lb_last_error(), "blk.0.attn_norm.weight") != NULL);
    remove(path);
    lb_free(bad);
}

/* f16 and q8_0 tensors written into a GGUF by hand: a NaN half and a NaN
 * block scale are caught when the file is loaded. q8_0 is ggml's layout: per
 * 32 weights an fp16 scale d, then 32 int8 codes (w = d * q). */
static void test_nonfinite_gguf_weights(void) {
    lb_model *m = NULL;
    CHECK_OK(lb_model_load(lb_test_data("models/stories260K.bin"), NULL, &m));
    if (!m) return;
    lb_tensor *wq = &m->layers[0].linear[LB_WQ].w; /* 64 x 64 */
    const char *path = path_in("nan.gguf");
    lb_model *back = NULL;

    uint8_t *half = lb_alloc(64 * 64 * 2);
    for (int i = 0; i < 64 * 64; i++) lb_wr16(half + 2 * i, lb_fp32_to_fp16(0.01f * (float)(i % 7)));
    lb_wr16(half + 2 * (2 * 64 + 9), 0x7e00); /* NaN at row 2, column 9 */
    CHECK_OK(lb_qspec_parse("f16", &wq->spec));
    wq->data = wq->owned = half;
    wq->nbytes = 64 * 64 * 2;
    CHECK_OK(lb_model_save_gguf(m, path));
    CHECK_FAILS(lb_model_load(path, NULL, &back), LB_ERR_NUMERIC,
                "tensor 'blk.0.attn_q.weight' has a non-finite value: row 2, column 9 is NaN");
    lb_tensor_free(wq);

    uint8_t *q8 = lb_calloc(64 * 2, 34);
    for (int b = 0; b < 64 * 2; b++) lb_wr16(q8 + 34 * b, lb_fp32_to_fp16(0.01f));
    lb_wr16(q8 + 34 * (3 * 2 + 1), 0x7c00); /* +Inf scale: row 3, columns 32..63; code 0 * Inf is NaN */
    CHECK_OK(lb_qspec_parse("q8_0", &wq->spec));
    wq->data = wq->owned = q8;
    wq->nbytes = 64 * 2 * 34;
    CHECK_OK(lb_model_save_gguf(m, path));
    CHECK_FAILS(lb_model_load(path, NULL, &back), LB_ERR_NUMERIC,
                "tensor 'blk.0.attn_q.weight' has a non-finite value: row 3, column 32 is NaN");
    CHECK(strstr(lb_last_error(), "scale") != NULL);
    /* the same tensor with finite scales loads */
    lb_wr16(q8 + 34 * (3 * 2 + 1), lb_fp32_to_fp16(0.01f));
    CHECK_OK(lb_model_save_gguf(m, path));
    CHECK_OK(lb_model_load(path, NULL, &back));
    lb_model_free(back);
    remove(path);
    lb_model_free(m);
}

static int exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}


/* lb_output_check and lb_atomic_commit refuse to replace inputs and
 * anything that is not a regular file; errors name the user's path. */
static void test_output_paths(void) {
    const char *in = path_in("in.bin"), *out = path_in("out.gguf");
    write_file(in, "model", 5);
    const char *inputs[3] = {in, NULL, "/no/such/input"};
    CHECK_OK(lb_output_check(out, inputs, 3));
    CHECK_FAILS(lb_output_check(in, inputs, 3), LB_ERR_INVALID, "is the same file as the input");
    const char *hard = path_in("hard.bin");
    CHECK(link(in, hard) == 0);
    CHECK_FAILS(lb_output_check(hard, inputs, 1), LB_ERR_INVALID, "is the same file as the input");
    remove(hard);
    const char *sym = path_in("sym.gguf");
    CHECK(symlink("in.bin", sym) == 0);
    CHECK_FAILS(lb_output_check(sym, NULL, 0), LB_ERR_IO, "is a symbolic link");
    CHECK_FAILS(lb_output_check("/dev/null", NULL, 0), LB_ERR_IO, "'/dev/null' is a character device");
    const char *fifo = path_in("fifo");
    CHECK(mkfifo(fifo, 0600) == 0);
    CHECK_FAILS(lb_output_check(fifo, NULL, 0), LB_ERR_IO, "is a FIFO");
    CHECK_FAILS(lb_output_check(tmpdir, NULL, 0), LB_ERR_IO, "is a directory");
    CHECK_FAILS(lb_output_check("/no/such/dir/x.gguf", NULL, 0), LB_ERR_IO,
                "cannot create '/no/such/dir/x.gguf': directory '/no/such/dir': No such file or directory");
    CHECK_FAILS(lb_output_check("", NULL, 0), LB_ERR_INVALID, "empty output path");
    if (geteuid() != 0) { /* root may write anywhere */
        const char *ro = path_in("ro");
        CHECK(mkdir(ro, 0500) == 0);
        char p[600];
        snprintf(p, sizeof p, "%s/x.gguf", ro);
        CHECK_FAILS(lb_output_check(p, NULL, 0), LB_ERR_IO, "is not writable");
        rmdir(ro);
    }

    /* the library's own writer: commit will not rename over a symlink or FIFO
     * that appeared after the check, and removes its temporary */
    lb_atomic_file f;
    CHECK_OK(lb_atomic_open(&f, sym));
    lb_atomic_write(&f, "x", 1);
    CHECK_FAILS(lb_atomic_commit(&f), LB_ERR_IO, "is a symbolic link");
    struct stat st;
    CHECK(lstat(sym, &st) == 0 && S_ISLNK(st.st_mode));
    CHECK_OK(lb_atomic_open(&f, fifo));
    CHECK_FAILS(lb_atomic_commit(&f), LB_ERR_IO, "is a FIFO");
    CHECK(lstat(fifo, &st) == 0 && S_ISFIFO(st.st_mode));
    CHECK(!(tmpdir_count(".tmp.") > 0));
    /* a regular file is replaced */
    CHECK_OK(lb_atomic_open(&f, out));
    lb_atomic_write(&f, "new", 3);
    CHECK_OK(lb_atomic_commit(&f));
    CHECK(exists(out));
    /* open errors name the user's path, then the temporary */
    CHECK_FAILS(lb_atomic_open(&f, "/no/such/dir/x.gguf"), LB_ERR_IO, "cannot create '/no/such/dir/x.gguf' (temporary '/no/such/dir/x.gguf.tmp.");
    CHECK(strstr(lb_last_error(), "No such file or directory") != NULL);
    remove(out);
    remove(sym);
    remove(in);
    remove(fifo);
}

/* Inputs that are not regular files fail at once (a FIFO used to block
 * the open forever). */
static void test_input_paths(void) {
    const char *fifo = path_in("in.fifo");
    CHECK(mkfifo(fifo, 0600) == 0);
    lb_mapped_file f;
    CHECK_FAILS(lb_map_file(fifo, &f), LB_ERR_IO, "is a FIFO, not a regular file");
    char *buf;
    size_t n;
    CHECK_FAILS(lb_read_file(fifo, &buf, &n), LB_ERR_IO, "is a FIFO, not a regular file");
    CHECK_FAILS(lb_read_file(tmpdir, &buf, &n), LB_ERR_IO, "is a directory, not a regular file");
    lb_tokenizer *t;
    CHECK_FAILS(lb_tokenizer_load(fifo, 512, &t), LB_ERR_IO, "is a FIFO, not a regular file");
    lb_model *m;
    CHECK_FAILS(lb_model_load(fifo, NULL, &m), LB_ERR_IO, "is a FIFO, not a regular file");
    remove(fifo);
}

/* A process killed by SIGINT/SIGTERM/SIGHUP while writing removes its
 * temporary and still dies of that signal. */
static void test_signal_cleanup(void) {
    const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        int ready[2];
        CHECK(pipe(ready) == 0);
        const char *out = path_in("sig.gguf");
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            /* as a foreground program: the test runner may have started us
             * with SIGINT ignored, which lowbit leaves alone. (The handlers
             * are installed by the first lb_atomic_open of a process: this
             * test runs before any other in main, so it is this child's.) */
            signal(sigs[i], SIG_DFL);
            lb_atomic_file f;
            if (lb_atomic_open(&f, out) != LB_OK) _exit(3);
            lb_atomic_write(&f, "partial", 7);
            fflush(f.fp);
            if (write(ready[1], "r", 1) != 1) _exit(4);
            for (;;) pause();
        }
        char c;
        CHECK(read(ready[0], &c, 1) == 1);
        char tmp[600];
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld", out, (long)pid);
        CHECK_MSG(exists(tmp), "the temporary %s should exist while writing", tmp);
        kill(pid, sigs[i]);
        int status = 0;
        waitpid(pid, &status, 0);
        CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == sigs[i], "signal %d: wait status 0x%x", sigs[i], status);
        CHECK_MSG(!exists(tmp), "signal %d left %s behind", sigs[i], tmp);
        CHECK(!exists(out));
        remove(tmp);
        close(ready[0]);
        close(ready[1]);
    }
}

static size_t find_bytes(const char *hay, size_t n, const char *needle) {
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (!memcmp(hay + i, needle, k)) return i;
    return (size_t)-1;
}

static int count_of(const char *hay, const char *needle) {
    int c = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) c++;
    return c;
}

/* Messages that repeated their context, hid the real value, or blamed the
 * wrong format. */
static void test_messages(const char *model_bytes, size_t size) {
    lb_model *m = NULL;
    /* the tokenizer's file is named once */
    const char *tok = path_in("t.bin");
    write_file(tok, "\x07\0\0\0", 4);
    CHECK_FAILS(lb_model_load(lb_test_data("models/stories260K.bin"), tok, &m), LB_ERR_FORMAT, "loading tokenizer '");
    CHECK_MSG(count_of(lb_last_error(), "loading tokenizer") == 1, "%s", lb_last_error());
    remove(tok);

    /* vocab INT32_MIN in a legacy header: the stored value, not 0 */
    char *bad = lb_alloc(size);
    memcpy(bad, model_bytes, size);
    lb_wr32(bad + 20, 0x80000000u);
    CHECK_FAILS(lb_model_from_llama2c((const uint8_t *)bad, size, &m), LB_ERR_FORMAT,
                "absurd vocabulary size -2147483648");
    lb_wr32(bad + 20, 1u << 30);
    CHECK_FAILS(lb_model_from_llama2c((const uint8_t *)bad, size, &m), LB_ERR_FORMAT, "absurd vocabulary size 1073741824");

    /* a wrong or damaged GGUF magic: the message says which formats were tried */
    const char *path = path_in("x.gguf");
    memcpy(bad, "GGUX", 4);
    write_file(path, bad, 64);
    CHECK_FAILS(lb_model_load(path, NULL, &m), LB_ERR_FORMAT, "not a GGUF file (magic \"GGUX\"");
    CHECK(strstr(lb_last_error(), "not a llama2.c v1 checkpoint") && strstr(lb_last_error(), "as a legacy llama2.c checkpoint"));
    /* starts with GGUF but is cut: the GGUF error, no word of llama2.c */
    write_file(path, "GGUF\x03\0\0\0\0\0", 10);
    CHECK_FAILS(lb_model_load(path, NULL, &m), LB_ERR_FORMAT, "as GGUF: truncated");
    CHECK_MSG(!strstr(lb_last_error(), "llama2.c"), "%s", lb_last_error());
    /* a v1 checkpoint is named as such */
    lb_wr32(bad, 0x616b3432u);
    lb_wr32(bad + 4, 1);
    write_file(path, bad, 300);
    CHECK_FAILS(lb_model_load(path, NULL, &m), LB_ERR_FORMAT, "as a llama2.c v1 checkpoint");
    lb_free(bad);

    /* llama.vocab_size disagreeing with token_embd's rows */
    CHECK_OK(lb_model_load(lb_test_data("models/stories260K.bin"), NULL, &m));
    if (m) {
        CHECK_OK(lb_model_save_gguf(m, path));
        lb_model_free(m);
        m = NULL;
        char *g;
        size_t gsize;
        CHECK_OK(lb_read_file(path, &g, &gsize));
        size_t at = find_bytes(g, gsize, "llama.vocab_size");
        CHECK(at != (size_t)-1);
        if (at != (size_t)-1) {
            CHECK(lb_rd32(g + at + 16) == 4 /* GGUF uint32 */ && lb_rd32(g + at + 20) == 512);
            lb_wr32(g + at + 20, 500);
            write_file(path, g, gsize);
            CHECK_FAILS(lb_model_load(path, NULL, &m), LB_ERR_FORMAT,
                        "llama.vocab_size = 500, but token_embd.weight has 512 rows");
        }
        lb_free(g);
    }
    remove(path);
}

int main(void) {
    if (tmpdir_make("robust") != 0) return 1;
    char *model;
    size_t size;
    CHECK_OK(lb_read_file(lb_test_data("models/stories260K.bin"), &model, &size));
    test_signal_cleanup(); /* first: no atomic file opened yet in this process */
    test_sampler_nan();
    test_generate_nan_logits(model, size);
    test_nonfinite_float_weights(model, size);
    test_nonfinite_gguf_weights();
    test_output_paths();
    test_input_paths();
    test_messages(model, size);
    lb_free(model);
    rmdir(tmpdir);
    return lb_test_finish("test_robustness");
}
