/* Calibration's shards and their reduction across ranks
 * (calib_internal.h): the statistic is fixed by the shard size, never by
 * the number of processes, so mpirun -np N writes the bytes one process
 * writes.
 *
 * Order-dependent parts (double sums: X^T X, sum x, sum |x|): each shard's
 * partial is summed from zero in sequence order, then added to the total
 * in shard order; rank 0 holds the totals and receives the other ranks'
 * partials of a round in rank order (shard q * size + r is rank r's in
 * round q), so the additions are the same ones in the same order.
 * Order-free parts (token counts: integers; max |x|: a maximum;
 * histograms: integer counts once brought to one range) are reduced once
 * at the end. */
#include <string.h>

#include "calib_internal.h"

int lb_calib_shard_size(int n) { return n <= LB_CALIB_MAX_SHARDS ? 1 : (n + LB_CALIB_MAX_SHARDS - 1) / LB_CALIB_MAX_SHARDS; }

static size_t sums_len(const lb_calib_collector *k) {
    int n_in = k->n_layers * LB_CALIB_N_INPUTS;
    return k->offset[n_in - 1] + (size_t)k->c[n_in - 1].cols;
}

lb_status lb_calib_fold(lb_calib_collector *k, int i) {
    calib_input *c = &k->c[i];
    size_t cols = (size_t)c->cols;
    if (c->xtx) { /* dsyrk writes the upper triangle only */
        if (!k->acc_xtx[i] && !(k->acc_xtx[i] = lb_calloc(cols * cols, sizeof(double))))
            return lb_fail(LB_ERR_NOMEM, "calibration: out of memory for the shards' X^T X (%zu x %zu)", cols, cols);
        double *acc = k->acc_xtx[i];
        for (size_t a = 0; a < cols; a++)
            for (size_t b = a; b < cols; b++) acc[a * cols + b] += c->xtx[a * cols + b];
        memset(c->xtx, 0, cols * cols * sizeof(double));
    }
    double *sum = k->sum + k->offset[i], *sum_abs = k->sum_abs + k->offset[i];
    double *acc_sum = k->acc_sum + k->offset[i], *acc_abs = k->acc_sum_abs + k->offset[i];
    for (size_t j = 0; j < cols; j++) {
        acc_sum[j] += sum[j];
        acc_abs[j] += sum_abs[j];
    }
    memset(sum, 0, cols * sizeof(double));
    memset(sum_abs, 0, cols * sizeof(double));
    return LB_OK;
}

/* c's partial X^T X to or from rank `peer`: the upper triangle only (all
 * dsyrk writes), row a from column a, half the matrix, packed into
 * messages of at most 8 Mi doubles (whole rows; both sides cut alike), so
 * the cost is bandwidth, not one round trip per row */
#define XTX_PIECE ((size_t)1 << 23)
static lb_status xtx_upper(const lb_comm *comm, int peer, calib_input *c, int sending) {
    size_t cols = (size_t)c->cols, cap = cols > XTX_PIECE ? cols : XTX_PIECE;
    size_t half = cols * (cols + 1) / 2;
    cap = cap < half ? cap : half;
    double *buf = lb_alloc(cap * sizeof(double));
    if (!buf) return lb_fail(LB_ERR_NOMEM, "calibration: out of memory for a message of X^T X");
    lb_status st = LB_OK;
    for (size_t a = 0; a < cols && st == LB_OK;) {
        size_t a1 = a, n = 0; /* rows [a, a1) fill the piece */
        while (a1 < cols && n + (cols - a1) <= cap) n += cols - a1++;
        if (!sending) st = lb_comm_recv(comm, peer, buf, n * sizeof(double));
        for (size_t r = a, at = 0; r < a1 && st == LB_OK; at += cols - r, r++) {
            double *row = c->xtx + r * cols + r;
            if (sending) memcpy(buf + at, row, (cols - r) * sizeof(double));
            else memcpy(row, buf + at, (cols - r) * sizeof(double));
        }
        if (sending && st == LB_OK) st = lb_comm_send(comm, peer, buf, n * sizeof(double));
        a = a1;
    }
    lb_free(buf);
    return st;
}

lb_status lb_calib_fold_round(lb_calib_collector *k, const lb_comm *comm, int senders) {
    int n_in = k->n_layers * LB_CALIB_N_INPUTS, rank = comm ? comm->rank : 0;
    size_t len = sums_len(k);
    lb_status st = LB_OK;
    if (rank == 0) {
        for (int r = 0; r < senders && st == LB_OK; r++) {
            for (int i = 0; i < n_in && st == LB_OK && r > 0; i++)
                if (k->c[i].xtx) st = xtx_upper(comm, r, &k->c[i], 0);
            if (st == LB_OK && r > 0) st = lb_comm_recv(comm, r, k->sum, len * sizeof(double));
            if (st == LB_OK && r > 0) st = lb_comm_recv(comm, r, k->sum_abs, len * sizeof(double));
            for (int i = 0; i < n_in && st == LB_OK; i++) st = lb_calib_fold(k, i);
        }
        return st;
    }
    if (rank >= senders) return LB_OK;
    for (int i = 0; i < n_in && st == LB_OK; i++) {
        calib_input *c = &k->c[i];
        if (!c->xtx) continue;
        st = xtx_upper(comm, 0, c, 1);
        memset(c->xtx, 0, (size_t)c->cols * (size_t)c->cols * sizeof(double));
    }
    if (st == LB_OK) st = lb_comm_send(comm, 0, k->sum, len * sizeof(double));
    if (st == LB_OK) st = lb_comm_send(comm, 0, k->sum_abs, len * sizeof(double));
    memset(k->sum, 0, len * sizeof(double));
    memset(k->sum_abs, 0, len * sizeof(double));
    return st;
}

/* c's histogram at range r (a power of two >= its own): bin i -> bins/4 +
 * i/2 per doubling, as calib.c's hist_add grows it; zeros stay in bins/2 */
static void hist_to_range(calib_input *c, double r, int bins, int64_t *tmp) {
    if (c->hist_range == 0) { /* every x seen was zero (or none was): all counts in bins/2 */
        c->hist_range = r;
        return;
    }
    while (c->hist_range < r) {
        memset(tmp, 0, (size_t)bins * sizeof *tmp);
        for (int i = 0; i < bins; i++) tmp[bins / 4 + i / 2] += c->hist[i];
        memcpy(c->hist, tmp, (size_t)bins * sizeof *tmp);
        c->hist_range *= 2;
    }
}

lb_status lb_calib_reduce_free_parts(lb_calib_stats *s, lb_calib_collector *k, const lb_comm *comm) {
    if (!comm || comm->size <= 1) return LB_OK;
    int n_in = k->n_layers * LB_CALIB_N_INPUTS, size = comm->size;
    int64_t *n = lb_alloc((size_t)n_in * sizeof *n);
    double *range = lb_alloc((size_t)n_in * sizeof *range), *all = lb_alloc((size_t)n_in * size * sizeof *all);
    lb_status st = n && range && all ? LB_OK : lb_fail(LB_ERR_NOMEM, "calibration: out of memory");
    for (int i = 0; i < n_in && st == LB_OK; i++) {
        n[i] = k->c[i].n;
        range[i] = k->c[i].hist_range;
    }
    if (st == LB_OK) st = lb_comm_sum_i64(comm, n, (size_t)n_in, 0);
    if (st == LB_OK) st = lb_comm_gather(comm, range, (size_t)n_in * sizeof *range, all);
    if (st == LB_OK && comm->rank == 0)
        for (int i = 0; i < n_in; i++) {
            k->c[i].n = n[i];
            for (int r = 0; r < size; r++) range[i] = all[(size_t)r * n_in + i] > range[i] ? all[(size_t)r * n_in + i] : range[i];
        }
    if (st == LB_OK) st = lb_comm_bcast(comm, range, (size_t)n_in * sizeof *range);
    for (int i = 0; i < n_in && st == LB_OK; i++) {
        calib_input *c = &k->c[i];
        if (c->max_abs_x) st = lb_comm_max_f32(comm, c->max_abs_x, (size_t)c->cols, 0);
        if (st == LB_OK && c->hist) {
            hist_to_range(c, range[i], s->info.hist_bins, k->hist_tmp);
            st = lb_comm_sum_i64(comm, c->hist, (size_t)s->info.hist_bins, 0);
        }
    }
    lb_free(n);
    lb_free(range);
    lb_free(all);
    return st;
}

lb_status lb_calib_stats_bcast(const lb_comm *comm, lb_calib_stats **s) {
    if (!comm || comm->size <= 1) return LB_OK;
    struct {
        lb_calib_info info;
        int kv_dim;
    } head;
    memset(&head, 0, sizeof head);
    if (comm->rank == 0) {
        head.info = (*s)->info;
        head.kv_dim = (*s)->kv_dim;
    }
    lb_status st = lb_comm_bcast(comm, &head, sizeof head);
    if (st == LB_OK && comm->rank != 0) {
        *s = NULL;
        st = lb_calib_alloc(&head.info, head.kv_dim, s);
        if (st == LB_OK && (head.info.parts & LB_STATS_GRAD_SQ)) st = lb_calib_alloc_grad_sq(*s);
    }
    if (st != LB_OK) return st;
    lb_calib_stats *t = *s;
    for (int i = 0; i < t->info.n_layers * LB_CALIB_N_INPUTS && st == LB_OK; i++) {
        calib_input *c = &t->in[i];
        size_t cols = (size_t)c->cols;
        st = lb_comm_bcast(comm, &c->n, sizeof c->n);
        if (st == LB_OK) st = lb_comm_bcast(comm, &c->hist_range, sizeof c->hist_range);
        if (st == LB_OK && c->xtx) st = lb_comm_bcast(comm, c->xtx, cols * cols * sizeof(double));
        if (st == LB_OK && c->dxtx) st = lb_comm_bcast(comm, c->dxtx, cols * cols * sizeof(double));
        if (st == LB_OK && c->mean_abs_x) st = lb_comm_bcast(comm, c->mean_abs_x, cols * sizeof(float));
        if (st == LB_OK && c->max_abs_x) st = lb_comm_bcast(comm, c->max_abs_x, cols * sizeof(float));
        if (st == LB_OK && c->mean_x) st = lb_comm_bcast(comm, c->mean_x, cols * sizeof(float));
        if (st == LB_OK && c->hist) st = lb_comm_bcast(comm, c->hist, (size_t)t->info.hist_bins * sizeof(int64_t));
    }
    for (int i = 0; t->grad_sq && i < t->info.n_layers * LB_N_LINEARS && st == LB_OK; i++) {
        int rows, cols;
        lb_calib_linear_shape(t, i % LB_N_LINEARS, &rows, &cols);
        st = lb_comm_bcast(comm, t->grad_sq[i], (size_t)rows * (size_t)cols * sizeof(float));
    }
    if (st == LB_OK) lb_calib_link(t);
    return st;
}
