/* lowbit calibrate: collect the statistics of every linear's input over
 * calibration text and save them as a GGUF file (docs/CALIBRATION.md). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* two strings: C99 compilers need take none longer than 4095 bytes */
static const char *const calibrate_help[2] = {
    "usage: lowbit calibrate MODEL -o STATS.gguf [--text FILE] [--calib-blocks N] [--tokens N]\n"
    "                        [--ctx N] [--split calib|all] [--hist-bins N] [--fisher] [--imatrix FILE]\n"
    "                        [--whole-model] [--tokenizer FILE] [--resume] [--journal-every N]\n"
    "                        [--stop-after N] [--json]\n\n"
    "Runs the model over calibration text and saves, per linear input of every layer (q/k/v\n"
    "share one, gate/up another): X^T X in double, mean |x|, max |x| and mean x per channel,\n"
    "and a 8192-bin histogram of x. Only the calibration split is read: the evaluation\n"
    "split (what `lowbit eval --split eval` scores) never is.\n\n"
    "  -o, --output FILE  statistics file to write (GGUF)\n"
    "  --text FILE        UTF-8 text split into blocks at blank lines\n"
    "                     (default: ../shared/data/text/tinystories-sample.txt)\n"
    "  --calib-blocks N   the calibration split is the first N blocks (default 128, as eval's)\n"
    "  --tokens N         stop after exactly N tokens (fails if the split has fewer)\n"
    "  --ctx N            tokens per block, BOS included (default: the model's context)\n"
    "  --split S          calib (default) or all (the whole file: only for a file that holds\n"
    "                     no evaluation text)\n"
    "  --hist-bins N      histogram bins over [-R, R), a multiple of 4 in 4..65536 (default 8192:\n"
    "                     static activation ranges want at least 2048 over [0, max |x|])\n"
    "  --fisher           also the squared gradients per weight of every linear (the mean over\n"
    "                     calibration sequences of (d loss / d w)^2, one fp32 backward per sequence:\n"
    "                     the Fisher diagonal of `--method squeezellm` weights=fisher; fp32 models)\n"
    "  --imatrix FILE     also write the statistics as llama.cpp's importance matrix (GGUF form:\n"
    "                     X^T X's diagonal per linear), for llama-quantize --imatrix\n"
    "  --whole-model      run the whole model per sequence, every layer's statistics in memory\n"
    "                     (the default runs one layer at a time over all sequences and writes each\n"
    "                     layer's statistics before the next: the same bytes, a fraction of the\n"
    "                     memory; --fisher needs the whole model, --imatrix all statistics at once)\n"
    "  --tokenizer FILE   llama2.c tokenizer (default: tok<vocab>.bin beside the model)\n",
    "  --resume           continue an interrupted run from its journal STATS.gguf.partial, writing the\n"
    "                     same bytes as a run never interrupted (with no journal: from the start). Every\n"
    "                     run keeps one while it works, removed once STATS.gguf is written. The layer-\n"
    "                     by-layer pass writes STATS.gguf into STATS.gguf.partial.data as it goes; after\n"
    "                     a finished layer the journal records how much of it is final and the residual\n"
    "                     stream (4 bytes x tokens x dim), and --resume goes on from the next layer. The\n"
    "                     whole-model pass saves its accumulators (sums, X^T X of every layer, maxima,\n"
    "                     histograms) there after a block and goes on from the next block. A journal of\n"
    "                     another run (model, text, options, lowbit version) or of the other pass is\n"
    "                     refused naming what differs, a damaged one (or data file) is refused; without\n"
    "                     --resume an existing one is refused too. --imatrix with --resume, --journal-every\n"
    "                     or --stop-after takes the whole-model pass; --fisher's gradient pass runs after\n"
    "                     the blocks, whole\n"
    "  --journal-every N  save the journal every N layers (whole-model: N blocks); default: after a\n"
    "                     layer (block) once 30 s passed since the last save\n"
    "  --stop-after N     stop after layer N (whole-model: block N) as an interruption would, the\n"
    "                     journal saved (exit code 3, no STATS): for testing --resume\n"
    "  --json             one JSON object on stdout\n\n"
    "Under mpirun (a -DLOWBIT_MPI=ON build) the ranks share the sequences of the whole-model pass\n"
    "and rank 0 writes the same bytes one process writes; each rank's time is printed. The\n"
    "layer-by-layer pass is not distributed, and several ranks keep no journal: --resume,\n"
    "--journal-every and --stop-after are refused there (docs/SCALING.md, \"MPI\").\n"};

static double mean_of(const float *v, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += v[i];
    return n ? s / (double)n : 0;
}

static float max_of(const float *v, int64_t n) {
    float m = 0;
    for (int64_t i = 0; i < n; i++) m = v[i] > m ? v[i] : m;
    return m;
}

int cmd_calibrate(int argc, char **argv) {
    cli_args a = {.argc = argc, .argv = argv, .i = 1, .verb = "calibrate"};
    const char *out = NULL, *text_path = NULL, *blocks = NULL, *tokens = NULL, *ctx = NULL, *split = NULL,
               *tokenizer = NULL, *bins = NULL, *imatrix = NULL, *every = NULL, *stop_after = NULL;
    int fisher = 0, resume = 0, whole = 0;
    while (a.i < argc) {
        int r;
        if (cli_flag(&a, "--resume")) {
            resume = 1;
            continue;
        }
        if (cli_flag(&a, "--fisher")) {
            fisher = 1;
            continue;
        }
        if (cli_flag(&a, "--whole-model")) {
            whole = 1;
            continue;
        }
        if ((r = cli_option(&a, "--output", "-o", &out)) || (r = cli_option(&a, "--text", NULL, &text_path)) ||
            (r = cli_option(&a, "--calib-blocks", NULL, &blocks)) || (r = cli_option(&a, "--tokens", NULL, &tokens)) ||
            (r = cli_option(&a, "--ctx", NULL, &ctx)) || (r = cli_option(&a, "--split", NULL, &split)) ||
            (r = cli_option(&a, "--tokenizer", NULL, &tokenizer)) || (r = cli_option(&a, "--hist-bins", NULL, &bins)) ||
            (r = cli_option(&a, "--imatrix", NULL, &imatrix)) || (r = cli_option(&a, "--journal-every", NULL, &every)) ||
            (r = cli_option(&a, "--stop-after", NULL, &stop_after))) {
            if (r < 0) return CLI_USAGE;
            continue;
        }
        if ((r = cli_unknown(&a)) != 0) return r;
    }
    if (a.help) {
        fputs(calibrate_help[0], stdout);
        fputs(calibrate_help[1], stdout);
        return CLI_OK;
    }
    if (a.n_positional != 1) return cli_usage_error("calibrate", "expected one MODEL");
    if (!out) return cli_usage_error("calibrate", "missing -o STATS.gguf");
    lb_calib_opts o;
    lb_calib_opts_default(&o);
    long v;
    if (blocks) {
        if (cli_parse_int("calibrate", "--calib-blocks", blocks, 1, 1 << 30, &v)) return CLI_USAGE;
        o.calib_blocks = (int)v;
    }
    if (tokens) {
        if (cli_parse_int("calibrate", "--tokens", tokens, 1, 1L << 40, &v)) return CLI_USAGE;
        o.tokens = v;
    }
    if (bins) { /* the multiple-of-4 rule is lb_calibrate's, reported as its error */
        if (cli_parse_int("calibrate", "--hist-bins", bins, 4, 65536, &v)) return CLI_USAGE;
        o.hist_bins = (int)v;
    }
    if (ctx) {
        if (cli_parse_int("calibrate", "--ctx", ctx, 1, 1 << 20, &v)) return CLI_USAGE;
        o.ctx = (int)v;
    }
    if (split) {
        if (!strcmp(split, "calib")) o.split = LB_SPLIT_CALIB;
        else if (!strcmp(split, "all")) o.split = LB_SPLIT_ALL;
        else return cli_usage_error("calibrate", "--split is calib or all (calibration never reads the "
                                    "evaluation split), not '%s'", split);
    }
    char text_buf[512];
    if (!text_path) text_path = cli_data_path("text/tinystories-sample.txt", text_buf, sizeof text_buf);
    o.text_path = text_path;
    const char *inputs[3] = {a.positional[0], tokenizer, text_path};
    if (lb_output_check(out, inputs, 3) != LB_OK || (imatrix && lb_output_check(imatrix, inputs, 3) != LB_OK))
        return cli_error("calibrate", NULL);
    if (imatrix && !strcmp(imatrix, out)) return cli_usage_error("calibrate", "--imatrix and -o name the same file");
    /* the journal beside the output (docs/SCALING.md, "Resumable runs") */
    char jpath[4200], extra[256];
    lb_calib_journal journal = {.path = cli_journal_path(out, jpath, sizeof jpath), .resume = resume};
    if (every) {
        if (cli_parse_int("calibrate", "--journal-every", every, 1, 1 << 30, &v)) return CLI_USAGE;
        journal.every = (int)v;
    }
    if (stop_after) {
        if (cli_parse_int("calibrate", "--stop-after", stop_after, 1, 1 << 30, &v)) return CLI_USAGE;
        journal.stop_after = (int)v;
    }
    snprintf(extra, sizeof extra, "calibration: --calib-blocks %d --tokens %lld --ctx %d --split %s --hist-bins %d",
             o.calib_blocks, (long long)o.tokens, o.ctx, o.split == LB_SPLIT_ALL ? "all" : "calib", o.hist_bins);
    o.journal = &journal;

    lb_model *m;
    if (cli_load_model("calibrate", a.positional[0], tokenizer, &m)) return CLI_FAIL;
    /* under mpirun (cli_comm of several ranks): the whole-model pass, its
     * sequences shared by the ranks (lb_calibrate_dist), rank 0 saves. Not
     * the layered pass (not distributed) nor a journal (no one rank holds
     * the accumulators between folds) */
    const lb_comm *comm = cli_comm;
    if (comm->size > 1 && (resume || every || stop_after)) {
        lb_model_free(m);
        return cli_usage_error("calibrate", "--resume, --journal-every and --stop-after are for one process, not "
                               "under mpirun with %d ranks (docs/SCALING.md, \"MPI\")", comm->size);
    }
    const char *label = "calibration text";
    char *fingerprint = NULL;
    if (lb_journal_fingerprint(m, NULL, &label, &text_path, 1, extra, &fingerprint) != LB_OK) {
        lb_model_free(m);
        return cli_error("calibrate", NULL);
    }
    journal.fingerprint = fingerprint;
    double t0 = lb_now();
    lb_calib_stats *s = NULL;
    /* docs/SCALING.md, "Streaming": layer by layer into the file unless the
     * gradients (the whole model's backward) or the imatrix (every layer's
     * X^T X diagonal, from statistics in memory) are asked for. Both passes
     * into a file keep a journal ("Resumable runs"): the layered one after
     * a finished layer, the whole-model one after a block. The in-memory
     * layered pass (--imatrix) keeps none, so asking for the journal
     * (--resume, --journal-every, --stop-after) with --imatrix takes the
     * whole-model pass. */
    int journaled = resume || every || stop_after;
    const char *path = whole || fisher || (imatrix && journaled) || comm->size > 1 ? "whole_model"
                       : imatrix                                                 ? "layered"
                                                                                 : "layered_to_file";
    const char *units = path[0] == 'w' ? "blocks" : "layers";
    lb_calib_rank_time *times = lb_calloc((size_t)comm->size, sizeof *times);
    lb_status cst = times ? LB_OK : lb_fail(LB_ERR_NOMEM, "calibrate: out of memory");
    if (cst == LB_OK && comm->size > 1) {
        /* an interrupted single-process run's journal is neither resumed nor
         * overwritten here: rank 0 looks, every rank learns its answer */
        int32_t stale = comm->rank == 0 && access(jpath, F_OK) == 0;
        o.journal = NULL;
        cst = lb_comm_bcast(comm, &stale, sizeof stale);
        if (cst == LB_OK && stale)
            cst = lb_fail(LB_ERR_INVALID, "'%s' exists: the journal of an interrupted calibration; resume it in one "
                          "process (the same command with --resume, without mpirun) or remove it", jpath);
        if (cst == LB_OK && comm->rank == 0 && !whole && !fisher)
            fprintf(stderr, "lowbit calibrate: %d ranks: the whole-model pass over the ranks (the layer-by-layer "
                    "pass is not distributed; the statistics are the same bytes)\n", comm->size);
        if (cst == LB_OK) cst = lb_calibrate_dist(m, &o, comm, &s, times);
        if (cst == LB_OK && comm->rank != 0) { /* rank 0 has the statistics */
            lb_free(times);
            lb_free(fingerprint);
            lb_model_free(m);
            return CLI_OK;
        }
        if (cst == LB_OK && fisher)
            fprintf(stderr, "lowbit calibrate: --fisher is not distributed: rank 0 computes it alone\n");
    } else if (cst == LB_OK && path[0] == 'w') {
        cst = lb_calibrate_dist(m, &o, comm, &s, times); /* one process: lb_calibrate, and its time */
    } else if (cst == LB_OK && imatrix) { /* in memory, no journal: an interrupted run's is not overwritten */
        o.journal = NULL;
        if (access(jpath, F_OK) == 0)
            cst = lb_fail(LB_ERR_INVALID, "'%s' exists: the journal of an interrupted calibration; resume it (the "
                          "same command with --resume) or remove it to start over", jpath);
        else cst = lb_calibrate_layered(m, &o, &s);
    } else if (cst == LB_OK) {
        cst = lb_calibrate_to_file(m, &o, out, &s); /* journaled per layer; the journal removed once written */
    }
    if (cst == LB_OK && journal.resumed)
        fprintf(stderr, "lowbit calibrate: resumed: %d of %d %s done (journal %s)\n", journal.resumed, journal.total,
                units, jpath);
    if (cst != LB_OK || (fisher && lb_calib_fisher(m, &o, s) != LB_OK) ||
        (strcmp(path, "layered_to_file") != 0 && lb_calib_stats_save(s, out) != LB_OK) ||
        (imatrix && lb_calib_stats_save_imatrix(s, imatrix) != LB_OK)) {
        lb_free(times);
        lb_calib_stats_free(s);
        lb_model_free(m);
        lb_free(fingerprint);
        if (!journal.stopped) return cli_error("calibrate", NULL);
        if (a.json) {
            json_begin_object();
            json_kbool("stopped", 1);
            json_kint("done", journal.done);
            json_kint(units, journal.total);
            json_kint("resumed", journal.resumed);
            json_kstr("journal", jpath);
            json_end_object();
            json_done();
        } else {
            printf("stopped after %d of %d %s; journal %s (the same command with --resume continues)\n",
                   journal.done, journal.total, units, jpath);
        }
        return CLI_STOPPED;
    }
    lb_free(fingerprint);
    /* the statistics are written: the journal has served (several ranks: none was used) */
    if (comm->size == 1 && remove(jpath) != 0 && errno != ENOENT) fprintf(stderr, "lowbit calibrate: warning: cannot remove %s\n", jpath);
    double seconds = lb_now() - t0;
    if (comm->size > 1)
        for (int r = 0; r < comm->size; r++)
            fprintf(stderr, "lowbit calibrate: rank %d: %d shards, %d blocks, %lld tokens, %.3f s running, %.3f s "
                    "reducing / waiting, %.3f s in all\n", r, times[r].shards, times[r].blocks,
                    (long long)times[r].tokens, times[r].work_seconds, times[r].reduce_seconds, times[r].seconds);
    lb_calib_info info;
    lb_calib_stats_info(s, &info);
    static const int first_linear[LB_CALIB_N_INPUTS] = {LB_WQ, LB_WO, LB_W1, LB_W2};
    char b1[32];
    if (a.json) {
        json_begin_object();
        json_kstr("model", a.positional[0]);
        json_kstr("source", info.source);
        json_kstr("output", out);
        if (imatrix) json_kstr("imatrix", imatrix);
        json_kint("tokens", info.tokens);
        json_kint("sequences", info.sequences);
        json_kint("hist_bins", info.hist_bins);
        json_kbool("fisher", fisher);
        json_kint("resumed", journal.resumed);
        json_kstr("calibration", path);
        json_knum("seconds", seconds);
        json_kint("peak_rss", lb_peak_rss());
        json_kint("ranks", comm->size);
        json_key("rank_times");
        json_begin_array();
        for (int r = 0; r < comm->size; r++) {
            json_begin_object();
            json_kint("rank", r);
            json_kint("shards", times[r].shards);
            json_kint("blocks", times[r].blocks);
            json_kint("tokens", times[r].tokens);
            json_knum("work_seconds", times[r].work_seconds);
            json_knum("reduce_seconds", times[r].reduce_seconds);
            json_knum("seconds", times[r].seconds);
            json_end_object();
        }
        json_end_array();
        json_key("inputs");
        json_begin_array();
    } else {
        printf("calibration: %s\n", info.source);
        printf("%s tokens in %lld blocks, %.2f s (%s); statistics of %d layer inputs -> %s\n",
               fmt_thousands(info.tokens, b1, sizeof b1), (long long)info.sequences, seconds,
               strcmp(path, "whole_model") ? "layer by layer" : "whole model", info.n_layers * LB_CALIB_N_INPUTS, out);
        printf("%-6s %-11s %-22s %6s %8s %12s %12s %12s\n", "layer", "input", "read by", "cols", "tokens",
               "mean |x|", "max |x|", "hist range");
    }
    static const char *const readers[LB_CALIB_N_INPUTS] = {"attn_q attn_k attn_v", "attn_output",
                                                            "ffn_gate ffn_up", "ffn_down"};
    for (int l = 0; l < info.n_layers; l++) {
        for (int in = 0; in < LB_CALIB_N_INPUTS; in++) {
            const lb_layer_stats *ls = lb_calib_stats_get(s, l, first_linear[in]);
            double mean_abs = mean_of(ls->mean_abs_x, ls->cols);
            float max_abs = max_of(ls->max_abs_x, ls->cols);
            if (a.json) {
                json_begin_object();
                json_kint("layer", l);
                json_kstr("input", lb_calib_input_name(in));
                json_kstr("read_by", readers[in]);
                json_kint("cols", ls->cols);
                json_kint("tokens", ls->n_samples);
                json_knum("mean_abs_x", mean_abs);
                json_knum("max_abs_x", max_abs);
                json_knum("hist_range", ls->hist_range);
                json_end_object();
            } else {
                printf("%-6d %-11s %-22s %6lld %8lld %12.5g %12.5g %12.5g\n", l, lb_calib_input_name(in), readers[in],
                       (long long)ls->cols, (long long)ls->n_samples, mean_abs, (double)max_abs, ls->hist_range);
            }
        }
    }
    if (a.json) {
        json_end_array();
        json_end_object();
        json_done();
    }
    lb_free(times);
    lb_calib_stats_free(s);
    lb_model_free(m);
    return CLI_OK;
}
