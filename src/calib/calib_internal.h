/* Inside src/calib: the statistics object shared by calib.c (collection)
 * and calib_io.c (the GGUF file). */
#ifndef LB_CALIB_INTERNAL_H
#define LB_CALIB_INTERNAL_H

#include "io/gguf_internal.h"
#include "lowbit/calib.h"

#define LB_CALIB_ALL_PARTS \
    (LB_STATS_XTX | LB_STATS_MEAN_ABS_X | LB_STATS_MAX_ABS_X | LB_STATS_MEAN_X | LB_STATS_HIST_X)

/* One distinct layer input. The final per-channel means (float) are what
 * lb_layer_stats shows; the double sums exist only while collecting. */
typedef struct {
    int64_t n;
    int cols;
    double *xtx;       /* (cols, cols) */
    float *mean_abs_x, *max_abs_x, *mean_x; /* (cols) */
    int64_t *hist;     /* (hist_bins) */
    double *dxtx;      /* (cols, cols): sum (x_fp - x) x^T, sequential calibration only */
    double hist_range; /* power of two; 0 until a nonzero x was seen */
} calib_input;

struct lb_calib_stats {
    lb_calib_info info;
    calib_input *in;    /* n_layers * LB_CALIB_N_INPUTS */
    lb_layer_stats *ls; /* n_layers * LB_N_LINEARS */
    int kv_dim;         /* rows of k and v */
    float **grad_sq;    /* LB_STATS_GRAD_SQ (fisher.c): per linear (n_layers * LB_N_LINEARS) the mean over
                           sequences of the squared gradient of each weight, (rows, cols); else NULL */
    /* lb_calib_stats_open (calib_io.c): the parts (LB_STATS_XTX, LB_STATS_GRAD_SQ) whose arrays point
     * into map, the statistics file's read-only mapping, instead of being s's own; 0: every array is */
    unsigned mapped_parts;
    lb_mapped_file map;
    /* with mapped_parts: per layer, its inputs' tensors' first byte and the byte after the last in the data
     * (2 n_layers), all given back with the layer: a read faults in neighbouring pages too (the kernel's
     * fault-around), whatever their tensor */
    const uint8_t **span;
};

/* Rows (outputs) and cols (inputs) of linear `which` for these statistics. */
void lb_calib_linear_shape(const lb_calib_stats *s, int which, int *rows, int *cols);
/* Allocates s->grad_sq (zeroed) and sets the part. */
lb_status lb_calib_alloc_grad_sq(lb_calib_stats *s);

/* Allocates s with its inputs (arrays of the info's parts, zeroed). */
lb_status lb_calib_alloc(const lb_calib_info *info, int kv_dim, lb_calib_stats **out);
/* Points every linear's lb_layer_stats at its input's arrays. */
void lb_calib_link(lb_calib_stats *s);

/* The accumulators of one collection: double sums per input (the float
 * means are computed from them at the end), scratch rows for dsyrk.
 * sel_layer / sel_input >= 0 restrict what is accumulated to that layer or
 * input (sequential calibration); -1: everything. */
typedef struct {
    calib_input *c; /* the stats' inputs */
    double *sum, *sum_abs; /* per input: cols each, at offset[input] */
    size_t *offset;
    double *rows; /* scratch: ctx rows x max cols, in double */
    int64_t *hist_tmp; /* scratch: hist_bins */
    const float *shared[2]; /* last q and gate input pointers */
    int n_layers, hist_bins, block;
    unsigned parts;
    int sel_layer, sel_input;
    const float *fp_rows; /* LB_STATS_DXTX: the fp32 model's rows of the observed input (same tokens) */
    double *drows;        /* scratch for x_fp - x: ctx rows x max cols, in double */
    /* shards (calib_shard.c): the order-dependent sums (X^T X, sum x,
     * sum |x|) are collected per shard from zero, in the stats' xtx and in
     * sum / sum_abs, then folded into these totals in shard order */
    double **acc_xtx;              /* per input: folded X^T X (upper triangle), allocated at its first fold */
    double *acc_sum, *acc_sum_abs; /* laid out as sum */
} lb_calib_collector;

lb_status lb_calib_collector_init(lb_calib_collector *k, const lb_model *m, lb_calib_stats *s, int ctx);
void lb_calib_collector_free(lb_calib_collector *k);
/* The observer (user = the collector): checks and accumulates one linear's input. */
lb_status lb_calib_observe(void *user, int layer, int which, const float *x, int n, int cols);
/* Input i (layer * LB_CALIB_N_INPUTS + input) complete, every shard
 * folded: its means from the folded sums, the folded X^T X moved into the
 * statistics with its lower triangle mirrored. */
void lb_calib_finish_input(lb_calib_stats *s, lb_calib_collector *k, int i);

/* ---- shards (calib_shard.c) -------------------------------------------------
 * The statistic is defined over fixed shards of consecutive calibration
 * sequences, whatever runs it: X^T X, sum x and sum |x| are each the sum of
 * the shards' partial sums added in shard order, each partial summed from
 * zero in sequence order. One process computes every shard; MPI ranks
 * compute shards round-robin and rank 0 folds the partials in shard order,
 * so the bytes are the same. The shard size depends on the number of
 * sequences only. */
#define LB_CALIB_MAX_SHARDS 16
/* sequences per shard for n sequences: ceil(n / LB_CALIB_MAX_SHARDS), >= 1 */
int lb_calib_shard_size(int n);
/* totals of input i += its partial; the partial zeroed */
lb_status lb_calib_fold(lb_calib_collector *k, int i);
/* The end of a round of shards, one per rank 0..senders-1: rank 0 folds its
 * own partials, then each sender's in rank order (received into its own
 * partial buffers); the other senders send theirs and zero them. Every
 * input of the collector, every rank of comm (the ranks at or beyond
 * senders, which had no shard this round, do nothing). */
lb_status lb_calib_fold_round(lb_calib_collector *k, const lb_comm *comm, int senders);
/* The order-free parts after the last round: token counts summed, max |x|
 * maximized, histograms brought to the largest range (merging bin pairs,
 * exact) and summed, onto rank 0. */
lb_status lb_calib_reduce_free_parts(lb_calib_stats *s, lb_calib_collector *k, const lb_comm *comm);

/* The validated options of a collection: text (loaded when given by path),
 * the split's blocks [first, end), ctx, and the statistics' info. */
typedef struct {
    const lb_text *text;
    lb_text own;
    int owns_text;
    int first, end, ctx;
    lb_calib_info info;
} lb_calib_prep;
/* allowed: the LB_STATS_* parts this collection can give (o->parts beyond them fail) */
lb_status lb_calib_prepare(const lb_model *m, const lb_calib_opts *o, unsigned allowed, lb_calib_prep *p);
void lb_calib_prep_free(lb_calib_prep *p);


/* ---- journals (docs/SCALING.md, "Resumable runs") --------------------------
 * The snapshots of both passes share a framing (calib_journal.c): an 8-byte
 * magic (LBCALJNL: the whole-model pass's, LBCALLAY: the layer-by-layer
 * pass's), u32 version, u32 fingerprint bytes F, F bytes of fingerprint
 * text, the pass's body, u64 FNV-1a of every byte before it. The file is
 * written atomically (a temporary renamed over the last snapshot). */
typedef struct {
    lb_atomic_file f;
    uint64_t h;
} lb_calib_snap_writer;
/* layered: 0 the whole-model pass's magic and version, 1 the layered pass's */
lb_status lb_calib_snap_open(lb_calib_snap_writer *w, const char *path, int layered, const char *fingerprint);
void lb_calib_snap_put(lb_calib_snap_writer *w, const void *p, size_t n);
/* the checksum appended, synced, renamed into place */
lb_status lb_calib_snap_commit(lb_calib_snap_writer *w, const char *path);
typedef struct {
    const uint8_t *p;
    size_t n, at; /* n: the bytes before the checksum */
} lb_calib_snap_reader;
/* 0: n bytes copied to out; -1: fewer are left (nothing copied) */
int lb_calib_snap_take(lb_calib_snap_reader *r, void *out, size_t n);
/* The framing of data (size bytes, the file at path) checked: the magic
 * (the other pass's refused as such), the checksum, the version, the
 * fingerprint (one that is not `fingerprint` refused quoting the first line
 * that differs). On success r reads the body. */
lb_status lb_calib_snap_check(const char *path, const char *fingerprint, const uint8_t *data, size_t size, int layered,
                              lb_calib_snap_reader *r);
/* The start both passes share: j's counters reset, j->total = total; a
 * journal at j->path refused unless j->resume, else mapped into *mf
 * (*found 1; the caller unmaps). *found 0: nothing to resume. */
lb_status lb_calib_journal_find(lb_calib_journal *j, int total, lb_mapped_file *mf, int *found);
/* After `done` of j->total units (j->done set): 1 when a snapshot is due
 * (every j->every, or 30 s after last_save), never after the last unit;
 * *stop: j->stop_after reached, the snapshot then due too. */
int lb_calib_journal_due(lb_calib_journal *j, int done, double last_save, int *stop);
/* The stop as asked (j->stopped set): LB_ERR_INVALID, "stopped after done of total <units>". */
lb_status lb_calib_journal_stop(lb_calib_journal *j, const char *units);

/* The whole-model pass's snapshot (size bytes) restored into s and k;
 * *blocks_done and *tokens from its counts. Checks every size against s,
 * k and j->total; on failure s and k may be half-restored. */
lb_status lb_calib_journal_load(const lb_calib_journal *j, const uint8_t *data, size_t size, lb_calib_stats *s,
                                lb_calib_collector *k, int *blocks_done, int64_t *tokens);
/* Resumable calibration (calib_journal.c; j NULL: nothing). begin: the
 * snapshot at j->path restored into s and k when resuming, *first the
 * block to go on from (p->first when none) and *tokens the tokens done. */
lb_status lb_calib_journal_begin(lb_calib_journal *j, const lb_calib_prep *p, lb_calib_stats *s,
                                 lb_calib_collector *k, int *first, int64_t *tokens);
/* After the block before `next`: a snapshot when due (j->every, or 30 s
 * since *last_save), and the stop (LB_ERR_INVALID, j->stopped) when
 * j->stop_after blocks are done. */
lb_status lb_calib_journal_block(lb_calib_journal *j, const lb_calib_prep *p, const lb_calib_stats *s,
                                 const lb_calib_collector *k, int next, int64_t tokens, double *last_save);

/* The calibration sequences of lb_calibrate (the same tokenization: BOS +
 * block, cut at ctx, the token budget cutting the last one), embedded: the
 * residual stream at layer 0's input, kept and advanced a layer at a time by
 * sequential (calib_seq.c) and layered (calib_layered.c) calibration.
 * Memory: 4 bytes x tokens x dim. */
typedef struct {
    int n_seq;
    int *block;     /* text block of each sequence (for messages) */
    int *len;       /* tokens of each sequence */
    size_t *offset; /* first row of each sequence in x */
    float *x;       /* (tokens, dim) */
    int64_t tokens;
} lb_calib_cache;
/* release_embedding: give back the embedding's mapped pages once read */
lb_status lb_calib_cache_load(lb_calib_cache *c, const lb_model *m, const lb_calib_opts *o, const lb_calib_prep *p,
                              int release_embedding);
void lb_calib_cache_free(lb_calib_cache *c);

/* ---- the layer-by-layer pass's journal (calib_layer_journal.c) --------------
 * lb_calibrate_to_file writes the statistics file in layer order into a
 * temporary that outlives the process, <journal>.data; after layer l's
 * tensors (when due) the journal records how many bytes of it are layers
 * 0..l's, their FNV-1a, each finished input's token count and histogram
 * range, and the residual stream (layer l + 1's input). A resumed run keeps
 * those bytes, reads back the small parts for its summary and runs on from
 * layer l + 1. */
typedef struct {
    lb_calib_journal *j; /* NULL: not journaled */
    char *data_path;     /* j->path + ".data" */
    int data_fd;         /* a resumed run's data file, read-only (-1: none) */
    int kept;            /* layers the journal held (0: from the start) */
    uint64_t data_start; /* the data section's offset (the header's bytes, padded) */
    uint64_t data_kept;  /* bytes of the file that hold layers 0..kept-1 (0: none) */
    uint64_t hash;       /* FNV-1a of the file's bytes [data_start, hashed_to) */
    uint64_t hashed_to;
    int saved;           /* a journal refers to the data file: it is kept on failure */
    double last_save;
} lb_calib_layer_journal;
/* j NULL: lj not journaled. Otherwise the journal at j->path, when there
 * is one and j->resume: the snapshot checked, restored into s (finished
 * inputs' n and histogram range) and c (the residual stream), and the data
 * file checked (its size, the FNV-1a of the kept bytes). */
lb_status lb_calib_layer_journal_begin(lb_calib_layer_journal *lj, lb_calib_journal *j, lb_calib_stats *s,
                                       lb_calib_cache *c, int dim);
/* Layer `layer` is next, f->written the offset where its tensors begin:
 * layers before it are finished, c holds its input. Saves the journal when
 * due; the stop (lb_calib_journal_stop) when asked. */
lb_status lb_calib_layer_journal_next(lb_calib_layer_journal *lj, const lb_calib_stats *s, const lb_calib_cache *c,
                                      int dim, lb_atomic_file *f, int layer);
/* A tensor of a finished layer the file already holds (n bytes at
 * f->written): skipped, and read into dst unless dst is NULL. */
lb_status lb_calib_layer_journal_keep(lb_calib_layer_journal *lj, lb_atomic_file *f, void *dst, size_t n);
/* n bytes of a tensor of the running layer written to f (hashed when journaled) */
void lb_calib_layer_journal_put(lb_calib_layer_journal *lj, lb_atomic_file *f, const void *p, size_t n);
/* The output file for w: the data file (a resumed run's, checked to hold
 * w's header length, or new), or an ordinary atomic file when not journaled. */
lb_status lb_calib_layer_journal_open(lb_calib_layer_journal *lj, lb_atomic_file *f, const char *path,
                                      const lb_gguf_writer *w);
/* ok: f committed (renamed over its path) and the journal removed; else f
 * closed, kept when a journal refers to it, removed otherwise. Frees lj. */
lb_status lb_calib_layer_journal_end(lb_calib_layer_journal *lj, lb_atomic_file *f, lb_status st);

/* The layered snapshot's body, parsed and checked against s (layers,
 * tokens, sequences, histogram bins) and dim: the finished inputs' n and
 * histogram range set in s, x the residual stream's tokens x dim floats
 * (pointing into data, unaligned). */
typedef struct {
    int done;
    uint64_t data_start, data_kept, data_hash;
    const uint8_t *x;
} lb_calib_layer_snapshot;
lb_status lb_calib_layer_snapshot_parse(const char *path, const char *fingerprint, const uint8_t *data, size_t size,
                                        lb_calib_stats *s, int dim, lb_calib_layer_snapshot *out);

/* ---- the statistics file (calib_io.c) ---- */
#define GGML_I64 27
#define GGML_F64 28
/* The tensors of one input, in the file's order. */
enum { LB_CALIB_PART_XTX, LB_CALIB_PART_MEAN_ABS, LB_CALIB_PART_MAX_ABS, LB_CALIB_PART_MEAN, LB_CALIB_PART_HIST,
       LB_CALIB_N_PARTS };
/* What a tensor made while the file is written is: input (layer *
 * LB_CALIB_N_INPUTS + input) and part; user is the caller's. */
typedef struct {
    void *user;
    int input, part;
} lb_calib_fill_ref;
/* Sets w's keys and tensors for s, in the file's order (lb_calib_stats_save
 * is this and lb_gguf_write). fill NULL: the tensors reference s's arrays.
 * Otherwise every tensor of s->info.parts is made by fill while the file is
 * written, its user pointer &refs[input * LB_CALIB_N_PARTS + part] (refs:
 * n_layers * LB_CALIB_N_INPUTS * LB_CALIB_N_PARTS, user set by the caller,
 * input and part set here), and the keys lowbit.calib.n and
 * lowbit.calib.hist_range hold s's values as they are now: the caller
 * makes them late keys (lb_gguf_set_late) to write the final ones. */
lb_status lb_calib_stats_writer(const lb_calib_stats *s, lb_gguf_writer *w, lb_gguf_tensor_fill fill,
                                lb_calib_fill_ref *refs);
/* lb_calib_stats_open's parse of the file's bytes: X^T X and the squared
 * gradients, where data aligns them for their type, point into data (which
 * must outlive *out, unchanged: s->mapped_parts says which parts do), the
 * rest copied; the same checks and values as lb_calib_stats_from_memory.
 * For the fuzz target and the tests, which compare the two. */
lb_status lb_calib_stats_parse_in_place(const uint8_t *data, size_t size, const lb_model *m, lb_calib_stats **out);

#endif
