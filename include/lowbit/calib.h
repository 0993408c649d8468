/* lowbit calibration: statistics of every linear layer's input, collected by
 * running the fp32 model over calibration text, for the calibrated methods
 * (GPTQ's X^T X, AWQ's mean |x|, SmoothQuant's max |x|, activation ranges).
 *
 * The forward pass's observer (lb_state_set_observer) sees the exact input
 * of each linear. A layer has four distinct inputs: the attention input
 * (read by q, k and v), the attention output (read by o), the MLP input
 * (gate and up) and the MLP hidden state (down). Statistics are kept once
 * per distinct input; lb_calib_stats_get gives each of the seven linears an
 * lb_layer_stats whose arrays point at its input's statistics (so q, k and v
 * share arrays; only rows differs).
 *
 * Per input, over all n calibration tokens (rows x of width cols):
 *   xtx         H = X^T X, (cols, cols), accumulated in double (cblas_dsyrk
 *               on the rows converted to double; symmetric, both halves set)
 *   mean_abs_x  mean |x| per channel; max_abs_x max |x|; mean_x mean x
 *   hist        hist_bins (default 8192) bins over [-R, R) of every x; R is
 *               the smallest power of two above every |x| seen, grown by
 *               doubling (merging bin pairs, exact) as larger values arrive
 *
 * Text: the docs protocol of lowbit/eval.h: each block is one sequence, BOS
 * + its tokens, cut at ctx tokens. Only the calibration split (the first
 * calib_blocks blocks, default 128) is read, or the whole file when the
 * caller says so (LB_SPLIT_ALL, for a file that is calibration data only);
 * the evaluation split is refused. Sequences run one after another and the
 * sums are taken in token order, so the result is the same for any thread
 * count. The sums are summed per shard of consecutive sequences, then
 * shard after shard (lb_calibrate_dist), so MPI ranks give the same bytes. */
#ifndef LOWBIT_CALIB_H
#define LOWBIT_CALIB_H

#include "lowbit/eval.h"
#include "lowbit/quant.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The distinct inputs of a layer. */
enum { LB_CALIB_ATTN_IN, LB_CALIB_ATTN_OUT, LB_CALIB_FFN_IN, LB_CALIB_FFN_HIDDEN, LB_CALIB_N_INPUTS };

/* LB_WQ.. -> LB_CALIB_*; -1 for an unknown linear. */
LB_API int lb_calib_input_of(int which);
/* "attn_in", "attn_out", "ffn_in", "ffn_hidden" */
LB_API const char *lb_calib_input_name(int input);

typedef struct {
    const char *text_path; /* text file, or NULL when text is given */
    const lb_text *text;   /* already-loaded text (wins over text_path) */
    lb_split split;        /* LB_SPLIT_CALIB (default) or LB_SPLIT_ALL; LB_SPLIT_EVAL is refused */
    int calib_blocks;      /* size of the calibration split; 0: 128 */
    int blocks;            /* use only the split's first N blocks (fails if it has fewer); 0: all */
    int64_t tokens;        /* token budget: stop after exactly this many (fails if fewer); 0: all */
    int ctx;               /* tokens per sequence, BOS included; 0: the model's seq_len */
    unsigned parts;        /* LB_STATS_XTX | MEAN_ABS_X | MAX_ABS_X | MEAN_X | HIST_X; 0: all of them */
    int hist_bins;         /* a multiple of 4 in 4..65536; 0: 8192 (act_range.c says why) */
    struct lb_calib_journal *journal; /* a resumable run's snapshots (NULL: none; below) */
} lb_calib_opts;

/* A resumable calibration (docs/SCALING.md, "Resumable runs";
 * src/calib/calib_journal.c): lb_calibrate saves its accumulators (the
 * double sums, X^T X, maxima, histograms, counts) with the next block's
 * index to `path` after a block, atomically, and with resume = 1 starts
 * from the snapshot found there, continuing in the same order: the
 * statistics are the same bytes as a run never interrupted. A snapshot
 * whose fingerprint is not this one is refused naming the first line that
 * differs; a file there with resume = 0 is refused. The caller removes the
 * file once its statistics are saved. The snapshot holds the shards' folded
 * totals and the current shard's partials (lb_calibrate_dist), so a run may
 * stop after any block. One process only: lb_calibrate_dist with a journal
 * and several ranks fails.
 * lb_calibrate_to_file journals a layer at a time instead (every,
 * stop_after, resumed, done and total count layers): it writes the file
 * into `path`.data, which a snapshot after a finished layer refers to (how
 * many of its bytes are final, their FNV-1a) together with the residual
 * stream, the next layer's input; resumed, it keeps those bytes and runs on
 * from the next layer, and it removes both files once the statistics file
 * is in place. A snapshot of the other pass, or a data file that is
 * missing, cut short or not what the snapshot recorded, is refused. */
typedef struct lb_calib_journal {
    const char *path;
    const char *fingerprint; /* what the run's statistics depend on (lb_journal_fingerprint's text) */
    int resume;
    int every;      /* a snapshot every this many blocks; 0: after a block once 30 s passed since the last */
    int stop_after; /* > 0: fail once this many blocks are done, the snapshot written (for tests) */
    /* set by lb_calibrate */
    int resumed;    /* blocks the snapshot held */
    int done, total;
    int stopped;    /* 1: stop_after stopped it */
} lb_calib_journal;

LB_API void lb_calib_opts_default(lb_calib_opts *o);

typedef struct lb_calib_stats lb_calib_stats;

/* Runs m (fp32 or whatever it holds now) over the text and collects the
 * statistics. NaN/Inf activations fail with LB_ERR_NUMERIC naming the layer,
 * the linear and the block; an empty split, or fewer blocks or tokens than
 * asked, fail with LB_ERR_INVALID. Progress: blocks done. */
LB_API lb_status lb_calibrate(const lb_model *m, const lb_calib_opts *o, lb_calib_stats **out);
LB_API void lb_calib_stats_free(lb_calib_stats *s);

/* Layered calibration (src/calib/calib_layered.c; docs/SCALING.md,
 * "Streaming"): lb_calibrate's statistics, bit for bit, collected a layer at
 * a time over the residual stream of every calibration sequence kept at the
 * current layer's input (4 bytes x tokens x dim), each block's mapped weight
 * pages given back once it ran. lb_calibrate_layered holds every layer's
 * statistics, as lb_calibrate. lb_calibrate_to_file writes the statistics
 * file while it calibrates, byte for byte what lb_calib_stats_save writes of
 * lb_calibrate's, holding one layer's X^T X at a time; *out then has every
 * part but X^T X (xtx NULL: a summary, for printing, not for quantizing).
 * Both fold at lb_calibrate's shards (one layer's X^T X is held twice while
 * that layer runs: total and partial); one process. lb_calibrate_to_file
 * keeps o->journal per layer (above); lb_calibrate_layered ignores it. */
LB_API lb_status lb_calibrate_layered(const lb_model *m, const lb_calib_opts *o, lb_calib_stats **out);
LB_API lb_status lb_calibrate_to_file(const lb_model *m, const lb_calib_opts *o, const char *path,
                                      lb_calib_stats **out);

/* Adds LB_STATS_GRAD_SQ to s (collected on m over o's calibration text, as
 * lb_calibrate chooses sequences): per weight of every linear, the mean over
 * sequences of the squared gradient of the sequence's mean next-token
 * cross-entropy (the empirical Fisher diagonal; src/calib/fisher.c). m must
 * be fp32. The statistics' lb_layer_stats then carry grad_sq. */
LB_API lb_status lb_calib_fisher(const lb_model *m, const lb_calib_opts *o, lb_calib_stats *s);

/* The statistics of linear `which` (LB_WQ..) of layer `layer`, rows set to
 * that linear's output width; NULL when out of range. Valid while s lives. */
LB_API const lb_layer_stats *lb_calib_stats_get(const lb_calib_stats *s, int layer, int which);

/* The statistics of the linear whose weight is t (a tensor of m, e.g. from
 * lb_model_tensor_at), or NULL when t is no linear's weight (embedding,
 * norms, classifier) or s is NULL. For lb_quantize_tensor's stats argument.
 * The statistics describe the input before the linear's own input scale or
 * rotation (what the observer sees). */
LB_API const lb_layer_stats *lb_calib_stats_for_tensor(const lb_calib_stats *s, const lb_model *m,
                                                       const lb_tensor *t);

typedef struct {
    int dim, hidden_dim, n_layers, vocab_size; /* the model fingerprint */
    int64_t tokens;    /* calibration tokens (rows of every input) */
    int64_t sequences; /* blocks run */
    unsigned parts;    /* LB_STATS_* collected */
    int hist_bins;
    char source[512];  /* "FILE, calibration split blocks 1..128" */
} lb_calib_info;
LB_API void lb_calib_stats_info(const lb_calib_stats *s, lb_calib_info *out);

/* Refuses (LB_ERR_INVALID) statistics collected on a model of another
 * shape, naming both shapes. */
LB_API lb_status lb_calib_stats_check(const lb_calib_stats *s, const lb_model *m);

/* ---- static activation ranges (src/calib/act_range.c) ----------------------
 * The clip threshold of a static per-tensor activation quantizer a
 * (a->kind LB_AQ_TENSOR; lowbit/linear.h) by a->rule, for a->bits bits:
 * minmax (max |x|), percentile a->percentile of |x|, kl (TensorRT entropy
 * calibration: 2^(b-1) quantized bins, least KL(clipped reference ||
 * expanded quantized distribution)) or mse (least expected squared
 * rounding + clipping error). From a histogram of x (bins equal bins over
 * [-range, range)) and max_abs (exact max |x|; 0: the last nonzero bin's
 * upper edge). The threshold is at most max |x|. */
LB_API lb_status lb_act_range_from_hist(const int64_t *hist, int bins, double range, double max_abs,
                                        const lb_act_quant *a, float *clip);
/* The same from a linear's statistics (hist, and max_abs_x when present). */
LB_API lb_status lb_act_range(const lb_layer_stats *s, const lb_act_quant *a, float *clip);

/* GGUF file (docs/CALIBRATION.md): keys lowbit.calib.*, one set of tensors
 * per layer input. Written atomically. load/from_memory check every key,
 * shape and type, and the values' consistency; m non-NULL also checks the
 * fingerprint (lb_calib_stats_check). The result owns its arrays. */
LB_API lb_status lb_calib_stats_save(const lb_calib_stats *s, const char *path);
LB_API lb_status lb_calib_stats_load(const char *path, const lb_model *m, lb_calib_stats **out);
LB_API lb_status lb_calib_stats_from_memory(const uint8_t *data, size_t size, const lb_model *m,
                                            lb_calib_stats **out);
/* The file checked as lb_calib_stats_load checks it (every key, tensor and
 * value, up front), but X^T X and the squared gradients, the statistics'
 * bulk (a 7B shape: 1.4 GB of X^T X a layer), stay in the file's read-only
 * mapping, which s holds until lb_calib_stats_free: the values are those
 * load gives, read from the file when used, so a caller going layer by
 * layer (lb_quantize_model_to_gguf) holds about one layer's statistics,
 * not the model's (docs/SCALING.md, "Streaming"). Read-only: nothing may
 * write through the lb_layer_stats arrays (lb_calib_fisher refuses such
 * statistics); arrays the file does not align for their type
 * (general.alignment below 8), and every array of a file that cannot be
 * mapped, are copied as by load. The file must not change while s lives
 * (lowbit's writers replace files by renaming, which a mapping survives). */
LB_API lb_status lb_calib_stats_open(const char *path, const lb_model *m, lb_calib_stats **out);
/* Gives back the mapped pages of layer's X^T X and squared gradients of
 * statistics from lb_calib_stats_open, once that layer's tensors are done;
 * they stay readable (faulted in again from the file). Nothing for
 * statistics in memory. */
LB_API void lb_calib_stats_release_layer(const lb_calib_stats *s, int layer);

/* llama.cpp's importance matrix (src/calib/imatrix.c; docs/CALIBRATION.md,
 * "imatrix"). save: the GGUF form llama-quantize --imatrix reads, per linear
 * weight NAME.in_sum2 = X^T X's diagonal and NAME.counts = the tokens (s
 * must have LB_STATS_XTX); written atomically. load / from_memory: the GGUF
 * or legacy .dat form for model m (every linear of m needs its entry, of
 * its input's width), as statistics with LB_STATS_XTX only, X^T X's
 * off-diagonal entries 0 (GPTQ then rounds to nearest with each input's
 * error weighted by its mean square, as llama-quantize does). */
LB_API lb_status lb_calib_stats_save_imatrix(const lb_calib_stats *s, const char *path);
LB_API lb_status lb_calib_stats_load_imatrix(const char *path, const lb_model *m, lb_calib_stats **out);
LB_API lb_status lb_calib_stats_imatrix_from_memory(const uint8_t *data, size_t size, const lb_model *m,
                                                    lb_calib_stats **out);

#ifdef LB_ADVANCED_API /* for extending lowbit (methods, formats, tools); not a stable API */
/* Calibration across the ranks of comm (NULL: one process; docs/SCALING.md,
 * "MPI"). The statistic is defined over fixed shards of the calibration
 * sequences (at most 16 shards of ceil(n / 16) consecutive sequences): the
 * double sums are summed from zero per shard, then the shards' sums are
 * added in shard order; counts, maxima and histograms are order-free. Rank r
 * runs shards r, r + size, ...; rank 0 adds the partials in shard order, so
 * every number of ranks gives rank 0 the statistics one process gives, byte
 * for byte. Every rank needs m and the text; *out is set on rank 0 only
 * (NULL elsewhere). times (rank 0: size entries, or NULL) receives each
 * rank's blocks, tokens and seconds. Collective: every rank must call it. */
typedef struct {
    int rank, shards, blocks;
    int64_t tokens;
    double work_seconds;   /* running its sequences through the model, observing */
    double reduce_seconds; /* sending / receiving and folding partials, waiting for the other ranks */
    double seconds;        /* the whole call */
} lb_calib_rank_time;
LB_API lb_status lb_calibrate_dist(const lb_model *m, const lb_calib_opts *o, const lb_comm *comm,
                                   lb_calib_stats **out, lb_calib_rank_time *times);
/* Rank 0's statistics *s to every rank of comm (the others' *s is
 * replaced by a new copy), for a distributed step after a distributed
 * calibration. Collective. */
LB_API lb_status lb_calib_stats_bcast(const lb_comm *comm, lb_calib_stats **s);

/* Sequential calibration, for true-sequential quantization
 * (lb_quantize_model_sequential): statistics of one layer input at a time,
 * from the model as it is when asked (its earlier linears already
 * quantized). The calibration sequences' residual stream is cached at the
 * current layer's input (4 x tokens x dim bytes), so a stage costs one
 * block pass, not a whole forward. Same text, split, budget and summation
 * order as lb_calibrate: layer 0's attn_in statistics equal lb_calibrate's
 * on the same model, bit for bit.
 * begin: tokenizes the split (o as lb_calibrate) and embeds it with m's
 *   current embedding; the cache holds layer 0's input.
 * observe: runs block `layer` (the cache's layer) of m over the cache into
 *   scratch, accumulating input `input` (LB_CALIB_*) only; once per input.
 * advance: runs block `layer` of m over the cache in place; the cache then
 *   holds layer + 1's input.
 * stats: the statistics so far (inputs never observed have n = 0).
 * With LB_STATS_DXTX in o->parts (GPTAQ), the fp32 model's inputs are kept
 * too: begin runs layer 0 and advance(l) runs layer l + 1 over a second,
 * fp32 cache, so layer l + 1 must still be fp32 when advance(l) is called;
 * observe then also sums (x_fp - x) x^T. Extra memory: 4 x tokens x
 * (4 dim + hidden_dim) bytes. */
typedef struct lb_calib_seq lb_calib_seq;
LB_API lb_status lb_calib_seq_begin(const lb_model *m, const lb_calib_opts *o, lb_calib_seq **out);
LB_API lb_status lb_calib_seq_observe(lb_calib_seq *r, const lb_model *m, int layer, int input);
LB_API lb_status lb_calib_seq_advance(lb_calib_seq *r, const lb_model *m, int layer);
LB_API const lb_calib_stats *lb_calib_seq_stats(const lb_calib_seq *r);
LB_API void lb_calib_seq_free(lb_calib_seq *r);
/* The cache: the residual stream at the current layer's input, n_seq
 * sequences, sequence i being len[i] rows (dim wide) of x from row
 * offset[i] (block reconstruction reads it; valid until the next advance). */
LB_API void lb_calib_seq_inputs(const lb_calib_seq *r, const float **x, int *n_seq, const int **len,
                                const size_t **offset);
#endif /* LB_ADVANCED_API */

#ifdef __cplusplus
}
#endif
#endif
