/* The communicator's ordered operations over its send and recv
 * (lowbit/core.h): rank 0 is the root of every reduction and adds the
 * ranks' values in rank order, so a reduction's bytes depend on the number
 * of ranks only. Large buffers go in pieces of at most 1 GiB (MPI counts
 * are ints). */
#include <string.h>

#include "lowbit/core.h"

static const lb_comm self = {.rank = 0, .size = 1};

const lb_comm *lb_comm_self(void) { return &self; }

#define COMM_PIECE ((size_t)1 << 30)

lb_status lb_comm_send(const lb_comm *c, int to, const void *buf, size_t bytes) {
    const unsigned char *b = buf;
    do {
        size_t n = bytes < COMM_PIECE ? bytes : COMM_PIECE;
        lb_status st = c->send(c, to, b, n);
        if (st != LB_OK) return st;
        b += n;
        bytes -= n;
    } while (bytes);
    return LB_OK;
}

lb_status lb_comm_recv(const lb_comm *c, int from, void *buf, size_t bytes) {
    unsigned char *b = buf;
    do {
        size_t n = bytes < COMM_PIECE ? bytes : COMM_PIECE;
        lb_status st = c->recv(c, from, b, n);
        if (st != LB_OK) return st;
        b += n;
        bytes -= n;
    } while (bytes);
    return LB_OK;
}

lb_status lb_comm_bcast(const lb_comm *c, void *buf, size_t bytes) {
    if (!c || c->size <= 1) return LB_OK;
    if (c->rank != 0) return lb_comm_recv(c, 0, buf, bytes);
    for (int r = 1; r < c->size; r++) {
        lb_status st = lb_comm_send(c, r, buf, bytes);
        if (st != LB_OK) return st;
    }
    return LB_OK;
}

lb_status lb_comm_gather(const lb_comm *c, const void *mine, size_t bytes, void *out) {
    if (!c || c->size <= 1) {
        if (out && out != mine) memcpy(out, mine, bytes);
        return LB_OK;
    }
    if (c->rank != 0) return lb_comm_send(c, 0, mine, bytes);
    memcpy(out, mine, bytes);
    for (int r = 1; r < c->size; r++) {
        lb_status st = lb_comm_recv(c, r, (unsigned char *)out + (size_t)r * bytes, bytes);
        if (st != LB_OK) return st;
    }
    return LB_OK;
}

/* One reduction: the element type T and how two combine. Rank 0 receives
 * rank r's values in pieces of at most 1 MiB elements into a scratch and
 * combines them, rank after rank; the other ranks send in the same pieces. */
#define COMM_REDUCE(name, T, COMBINE)                                                                       \
    lb_status name(const lb_comm *c, T *v, size_t n, int all) {                                             \
        if (!c || c->size <= 1 || n == 0) return LB_OK;                                                     \
        lb_status st = LB_OK;                                                                               \
        size_t piece = n < ((size_t)1 << 20) ? n : ((size_t)1 << 20);                                       \
        if (c->rank != 0) { /* in the pieces rank 0 receives */                                             \
            for (size_t at = 0; at < n && st == LB_OK; at += piece)                                         \
                st = c->send(c, 0, v + at, (n - at < piece ? n - at : piece) * sizeof(T));                  \
        } else {                                                                                            \
            T *tmp = lb_alloc(piece * sizeof(T));                                                           \
            if (!tmp) return lb_fail(LB_ERR_NOMEM, "reduction across ranks: out of memory");                \
            for (int r = 1; r < c->size && st == LB_OK; r++)                                                \
                for (size_t at = 0; at < n && st == LB_OK; at += piece) {                                   \
                    size_t k = n - at < piece ? n - at : piece;                                             \
                    st = c->recv(c, r, tmp, k * sizeof(T));                                                \
                    for (size_t i = 0; i < k && st == LB_OK; i++) COMBINE(v[at + i], tmp[i]);               \
                }                                                                                           \
            lb_free(tmp);                                                                                   \
        }                                                                                                   \
        if (st == LB_OK && all) st = lb_comm_bcast(c, v, n * sizeof(T));                                    \
        return st;                                                                                          \
    }

#define COMM_ADD(a, b) ((a) += (b))
#define COMM_MAX(a, b) ((a) = (b) > (a) ? (b) : (a))

COMM_REDUCE(lb_comm_sum_f64, double, COMM_ADD)
COMM_REDUCE(lb_comm_sum_f32, float, COMM_ADD)
COMM_REDUCE(lb_comm_sum_i64, int64_t, COMM_ADD)
COMM_REDUCE(lb_comm_max_f32, float, COMM_MAX)
