/* Quantize and write in one pass (issue 12 item 1; docs/SCALING.md,
 * "Streaming"): each tensor the plan selects is quantized while the GGUF
 * file is written, written, and freed before the next, and the input's
 * mapped pages it read are given back (lb_map_release), so the peak
 * resident memory is about one tensor's floats and codes, not the model.
 *
 * The header (tensor infos with offsets, keys) is written first, so every
 * byte count must follow from the plan alone: each output tensor's from its
 * spec and shape (lb_format_size). That rules out what makes data-dependent
 * parts or changes other tensors: outliers (their count), bias correction
 * (whether the bias fits fp16), rotations and adapters (more slot tensors),
 * and the input-scaling methods (awq, smoothquant: they rewrite norms and
 * neighbouring weights), and row rules (a split tensor's size is its parts').
 * Such plans take the in-memory path,
 * lb_quantize_model_calibrated then lb_model_save_gguf_split, which writes
 * the same bytes with every quantized tensor held until the end. Any plan
 * streamed writes exactly what that path would: the tensors are quantized
 * by the same lb_pipeline_quantize_entry, one at a time, and no method's
 * result depends on another tensor's.
 *
 * Across MPI ranks (lb_quantize_model_to_gguf_dist; docs/SCALING.md, "MPI"),
 * that independence is what lets plan entry k be quantized by rank
 * k mod size: the other ranks quantize their entries in order and send each
 * tensor's bytes and record to rank 0, which receives them in the writer's
 * fill callback, in file order, and writes the bytes one process writes.
 *
 * Statistics read in place from their file (lb_calib_stats_open) are given
 * back a layer at a time: after the last entry of a layer a rank quantizes,
 * lb_calib_stats_release_layer drops that layer's mapped statistics, so a rank
 * holds about one layer's statistics, not the model's. Entries go in
 * layer order (the model's tensor order), but nothing depends on it: a
 * released page is read again from the file if asked for. */
#include <math.h>
#include <string.h>

#include "model/model_internal.h"
#include "pipeline_internal.h"
#include "pipeline/slots.h"

int lb_plan_streamable(const lb_plan *p) {
    for (int i = 0; i < p->n_entries; i++) {
        const lb_method_opts *o = &p->entries[i].opts;
        if (p->entries[i].n_parts) return 0; /* a split tensor's size is its parts' (formats/split.c), not a spec's */
        if (!o->method) continue;
        if (o->method->input_scales) return 0;
        /* NAN (an option the row does not have) compares false */
        if (lb_method_opts_get(o, "outliers") > 0 || lb_method_opts_get(o, "bias_correct") > 0 ||
            lb_method_opts_get(o, "rotate") > 0 || lb_method_opts_get(o, "lowrank") > 0)
            return 0;
    }
    return 1;
}

typedef struct {
    lb_model *m;
    const lb_plan *p;           /* resolved */
    const lb_calib_stats *stats;
    const int *entry_of;        /* per tensor index: its plan entry, -1 when none */
    lb_tensor *shell;           /* per entry: the quantized tensor's metadata (data NULL), for the sizes */
    lb_tensor_report *rec;      /* per entry */
    int measured;
    int made_slots;             /* a tensor produced slot parts after all: redo in memory */
    lb_progress prog;
    int done;
    const lb_comm *comm;        /* the ranks (size 1: this process alone) */
    const int *layer_end;       /* per entry: the layer whose statistics go once it is done, or -1 */
} stream_ctx;

/* What a rank sends rank 0 before each of its tensors (then, on success,
 * the tensor's bytes and its lb_tensor_report), and what rank 0 sends each
 * rank at the end: status LB_OK, or the failure. */
typedef struct {
    int32_t status;
    int32_t made_slots;
    uint64_t nbytes;
    char error[512];
} dist_head;

static int owner_of(const lb_comm *comm, int k) { return comm->size > 1 ? k % comm->size : 0; }
static int entry_owner(const stream_ctx *c, int k) { return owner_of(c->comm, k); }

/* Per entry of p: the layer of its linear when it is the last entry of that
 * layer this rank quantizes, else -1. NULL when out of memory: then no
 * layer is released early, which costs memory only. */
static int *layer_ends(lb_model *m, const lb_plan *p, const lb_comm *comm) {
    int L = m->cfg.n_layers;
    int *end = lb_alloc((size_t)(p->n_entries ? p->n_entries : 1) * sizeof *end);
    char *seen = lb_calloc((size_t)(L ? L : 1), 1);
    for (int k = p->n_entries - 1; end && seen && k >= 0; k--) {
        end[k] = -1;
        if (owner_of(comm, k) != comm->rank) continue;
        int l, w;
        if (lb_pipeline_find_linear(m, lb_model_tensor_at(m, p->entries[k].tensor), &l, &w) && !seen[l]) {
            seen[l] = 1;
            end[k] = l;
        }
    }
    if (!seen) {
        lb_free(end);
        end = NULL;
    }
    lb_free(seen);
    return end;
}

/* rank 0: entry k's tensor (metadata as t's, spec the entry's) from its rank */
static lb_status recv_entry(stream_ctx *c, int k, const lb_tensor *t, lb_tensor *out) {
    const lb_plan_entry *e = &c->p->entries[k];
    int from = entry_owner(c, k);
    dist_head h;
    lb_status st = lb_comm_recv(c->comm, from, &h, sizeof h);
    if (st != LB_OK) return st;
    h.error[sizeof h.error - 1] = 0;
    if (h.status != LB_OK) {
        c->made_slots |= h.made_slots;
        return lb_fail((lb_status)h.status, "rank %d: %s", from, h.error);
    }
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", t->name);
    out->spec = e->spec;
    out->rows = t->rows;
    out->cols = t->cols;
    out->nbytes = (size_t)h.nbytes;
    if (!(out->owned = lb_alloc(out->nbytes ? out->nbytes : 1)))
        return lb_fail(LB_ERR_NOMEM, "tensor '%s' from rank %d: out of memory", t->name, from);
    out->data = out->owned;
    lb_tensor_report rec;
    st = lb_comm_recv(c->comm, from, out->owned, out->nbytes);
    if (st == LB_OK) st = lb_comm_recv(c->comm, from, &rec, sizeof rec);
    if (st == LB_OK) { /* pointers are the sender's: the entry's spec and options are the same, here */
        rec.spec = e->spec;
        rec.opts = e->opts;
        rec.opts.report = NULL;
        c->rec[k] = rec;
        st = lb_tensor_resolve(out);
    }
    if (st != LB_OK) lb_tensor_free(out);
    return st;
}

/* a rank other than 0: quantizes entries rank, rank + size, ... in order and
 * sends each to rank 0; then waits for rank 0's end (its file written, or
 * failed) */
static lb_status stream_worker(lb_model *m, const lb_plan *p, const lb_calib_stats *stats, int measured,
                               const lb_comm *comm) {
    int *layer_end = layer_ends(m, p, comm);
    lb_status st = LB_OK;
    dist_head h;
    for (int k = comm->rank; k < p->n_entries; k += comm->size) {
        const lb_plan_entry *e = &p->entries[k];
        const lb_tensor *t = lb_model_tensor_at(m, e->tensor);
        lb_tensor out;
        lb_tensor_report rec;
        lb_quant_extras x;
        memset(&out, 0, sizeof out);
        memset(&rec, 0, sizeof rec);
        memset(&x, 0, sizeof x);
        memset(&h, 0, sizeof h);
        h.status = lb_pipeline_quantize_entry(m, e, NULL, lb_calib_stats_for_tensor(stats, m, t), &out, &rec, &x,
                                              measured);
        if (h.status == LB_OK && (x.nnz || x.bias || x.in_signs || x.out_signs || x.adapter_rank)) {
            lb_quant_extras_free(&x);
            lb_tensor_free(&out);
            h.made_slots = 1;
            h.status = lb_fail(LB_ERR_UNSUPPORTED, "tensor '%s': its method made slot parts, which a distributed "
                               "quantization cannot place (run it in one process)", t->name);
        }
        if (h.status != LB_OK) snprintf(h.error, sizeof h.error, "%s", lb_last_error());
        else if (layer_end) lb_calib_stats_release_layer(stats, layer_end[k]);
        h.nbytes = out.nbytes;
        st = lb_comm_send(comm, 0, &h, sizeof h);
        if (st == LB_OK && h.status == LB_OK) st = lb_comm_send(comm, 0, out.data, out.nbytes);
        if (st == LB_OK && h.status == LB_OK) st = lb_comm_send(comm, 0, &rec, sizeof rec);
        lb_tensor_free(&out);
        if (st != LB_OK || h.status != LB_OK) break; /* rank 0 stops at this tensor: its end comes next */
    }
    lb_free(layer_end);
    if (st != LB_OK) return st;
    if ((st = lb_comm_recv(comm, 0, &h, sizeof h)) != LB_OK) return st;
    h.error[sizeof h.error - 1] = 0;
    return h.status == LB_OK ? LB_OK : lb_fail((lb_status)h.status, "rank 0 failed: %s", h.error);
}

/* rank 0: every other rank's end (a small message: never waits for them) */
static void stream_end(const lb_comm *comm, lb_status st) {
    dist_head h;
    memset(&h, 0, sizeof h);
    h.status = st;
    if (st != LB_OK) snprintf(h.error, sizeof h.error, "%s", lb_last_error());
    for (int r = 1; r < comm->size; r++) lb_comm_send(comm, r, &h, sizeof h);
}

static lb_status stream_one(int i, const lb_tensor *t, const lb_qspec *spec, lb_tensor *out, void *user) {
    stream_ctx *c = user;
    int k = c->entry_of[i];
    const lb_plan_entry *e = &c->p->entries[k];
    (void)spec; /* the entry's: targets[i] points at it */
    lb_progress_item(&c->prog, t->name);
    lb_quant_extras x;
    memset(&x, 0, sizeof x);
    const lb_layer_stats *ls = lb_calib_stats_for_tensor(c->stats, c->m, t);
    /* several ranks: rank 0 receives the other ranks' entries (the CLI refuses --resume there, so no journal) */
    lb_status st = entry_owner(c, k) ? recv_entry(c, k, t, out)
                                     : lb_journal_entry(c->p->journal, c->m, e, NULL, ls, out, &c->rec[k], &x,
                                                        c->measured);
    if (st != LB_OK) return st;
    if (!entry_owner(c, k) && c->layer_end) lb_calib_stats_release_layer(c->stats, c->layer_end[k]);
    if (x.nnz || x.bias || x.in_signs || x.out_signs || x.adapter_rank) {
        /* a method row making slot parts that lb_plan_streamable did not foresee */
        lb_quant_extras_free(&x);
        lb_tensor_free(out);
        c->made_slots = 1;
        return lb_fail(LB_ERR_UNSUPPORTED, "tensor '%s': its method made slot parts, which streaming cannot place",
                       t->name);
    }
    c->shell[k] = *out;
    c->shell[k].data = NULL; /* metadata only: the writer frees *out */
    c->shell[k].owned = NULL;
    c->shell[k].packed = NULL;
    lb_progress_update(&c->prog, (uint64_t)++c->done);
    return LB_OK;
}

/* The report's per-tensor bpw (plus slots) and totals, counted by
 * lb_model_sizes over the model as the in-memory path leaves it: each
 * quantized tensor's metadata swapped in, then the originals back. */
static void stream_totals(stream_ctx *c, double t0, lb_quantize_report *report) {
    const lb_plan *p = c->p;
    lb_tensor *saved = lb_calloc((size_t)(p->n_entries ? p->n_entries : 1), sizeof *saved);
    if (!saved) return; /* only the totals are lost; the file is written */
    for (int k = 0; k < p->n_entries; k++) {
        lb_tensor *t = lb_model_tensor_at(c->m, p->entries[k].tensor);
        saved[k] = *t;
        *t = c->shell[k];
    }
    for (int k = 0; k < p->n_entries; k++) {
        const lb_tensor *t = lb_model_tensor_at(c->m, p->entries[k].tensor);
        c->rec[k].bpw += (double)lb_pipeline_slot_bytes(c->m, t) * 8.0 / ((double)t->rows * (double)t->cols);
    }
    lb_pipeline_report_totals(c->m, p->n_entries, t0, report);
    for (int k = 0; k < p->n_entries; k++) *lb_model_tensor_at(c->m, p->entries[k].tensor) = saved[k];
    lb_free(saved);
}

/* The streaming path; *fallback = 1 when the plan turned out not to stream
 * (nothing written, m as it was). */
static lb_status quantize_stream(lb_model *m, const lb_plan *plan, const lb_calib_stats *stats, const char *path,
                                 const lb_gguf_split_opts *split, int *n_shards, lb_quantize_report *report,
                                 int measure, int *fallback, const lb_comm *comm) {
    double t0 = lb_now();
    lb_plan p;
    lb_status st = stats ? lb_calib_stats_check(stats, m) : LB_OK;
    if (st != LB_OK) return st;
    if ((st = lb_pipeline_resolve(plan, m, &p)) != LB_OK) return st;
    if (!lb_plan_streamable(&p)) {
        lb_free(p.entries);
        *fallback = 1;
        return LB_OK;
    }
    if (comm->rank != 0) { /* the same plan on every rank: this rank's entries, sent to rank 0 */
        st = stream_worker(m, &p, stats, report && measure, comm);
        lb_free(p.entries);
        return st;
    }
    int n = lb_model_n_tensors(m), cap = p.n_entries ? p.n_entries : 1;
    lb_act_quant *acts = NULL;
    st = lb_pipeline_check_rotations(&p, &plan->act);
    if (st == LB_OK) st = lb_pipeline_plan_acts(m, &plan->act, stats, &acts);
    stream_ctx c = {.m = m, .p = &p, .stats = stats, .measured = report && measure, .comm = comm};
    int *layer_end = layer_ends(m, &p, comm);
    c.layer_end = layer_end;
    int *entry_of = lb_alloc((size_t)n * sizeof *entry_of);
    const lb_qspec **targets = lb_calloc((size_t)n, sizeof *targets);
    c.shell = lb_calloc((size_t)cap, sizeof *c.shell);
    c.rec = lb_calloc((size_t)cap, sizeof *c.rec);
    /* the keys as the in-memory path sets them: the plan's note, the
     * activation quantizers; m's own restored after writing */
    char note[sizeof m->quant_note];
    lb_act_quant *old_acts = lb_calloc((size_t)m->cfg.n_layers * LB_N_LINEARS, sizeof *old_acts);
    if (st == LB_OK && (!entry_of || !targets || !c.shell || !c.rec || !old_acts)) st = LB_ERR_NOMEM;
    if (st == LB_OK) {
        for (int i = 0; i < n; i++) entry_of[i] = -1;
        for (int k = 0; k < p.n_entries; k++) {
            entry_of[p.entries[k].tensor] = k;
            targets[p.entries[k].tensor] = &p.entries[k].spec;
        }
        c.entry_of = entry_of;
        memcpy(note, m->quant_note, sizeof note);
        for (int l = 0; l < m->cfg.n_layers; l++)
            for (int i = 0; i < LB_N_LINEARS; i++) old_acts[l * LB_N_LINEARS + i] = m->layers[l].linear[i].act;
        lb_plan_summary(plan, m->quant_note, sizeof m->quant_note);
        lb_pipeline_set_acts(m, &plan->act, acts);
        lb_progress_begin(&c.prog, "quantizing", (uint64_t)p.n_entries);
        st = lb_model_save_gguf_stream(m, path, targets, stream_one, &c, split, n_shards);
        lb_progress_end(&c.prog);
        memcpy(m->quant_note, note, sizeof note);
        for (int l = 0; l < m->cfg.n_layers; l++)
            for (int i = 0; i < LB_N_LINEARS; i++) m->layers[l].linear[i].act = old_acts[l * LB_N_LINEARS + i];
        if (st != LB_OK && c.made_slots && comm->size == 1) *fallback = 1;
    }
    if (comm->size > 1) stream_end(comm, st);
    if (st == LB_OK && report) {
        memset(report, 0, sizeof *report);
        stream_totals(&c, t0, report);
        report->tensors = c.rec;
        c.rec = NULL;
    }
    lb_free(old_acts);
    lb_free(c.rec);
    lb_free(c.shell);
    lb_free(targets);
    lb_free(entry_of);
    lb_free(layer_end);
    lb_free(acts);
    lb_free(p.entries);
    return st;
}

lb_status lb_quantize_model_to_gguf(lb_model *m, const lb_plan *plan, const lb_calib_stats *stats, const char *path,
                                    const lb_gguf_split_opts *split, int *n_shards, lb_quantize_report *report,
                                    int measure, int *streamed) {
    return lb_quantize_model_to_gguf_dist(m, plan, stats, path, split, n_shards, report, measure, streamed, NULL);
}

lb_status lb_quantize_model_to_gguf_dist(lb_model *m, const lb_plan *plan, const lb_calib_stats *stats,
                                         const char *path, const lb_gguf_split_opts *split, int *n_shards,
                                         lb_quantize_report *report, int measure, int *streamed,
                                         const lb_comm *comm) {
    *n_shards = 0;
    *streamed = 0;
    if (!comm) comm = lb_comm_self();
    if (report) memset(report, 0, sizeof *report);
    int fallback = 0;
    lb_status st = quantize_stream(m, plan, stats, path, split, n_shards, report, measure, &fallback, comm);
    if (!fallback) {
        *streamed = st == LB_OK;
        return st;
    }
    if (comm->rank != 0) return LB_OK; /* not streamable: rank 0 quantizes in memory alone */
    st = lb_quantize_model_calibrated(m, plan, stats, report);
    if (st == LB_OK) st = lb_model_save_gguf_split(m, path, NULL, NULL, NULL, split, n_shards);
    return st;
}
