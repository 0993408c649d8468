/* Status codes and per-thread error messages. */
#include "lowbit/core.h"

#include <pthread.h>
#include <stdarg.h>
#include <string.h>

static _Thread_local char last_error[1024];

const char *lb_status_name(lb_status s) {
    switch (s) {
    case LB_OK: return "ok";
    case LB_ERR_INVALID: return "invalid argument";
    case LB_ERR_IO: return "I/O error";
    case LB_ERR_FORMAT: return "bad file format";
    case LB_ERR_UNSUPPORTED: return "unsupported";
    case LB_ERR_NUMERIC: return "non-finite value";
    case LB_ERR_NOMEM: return "out of memory";
    }
    return "unknown status";
}

const char *lb_last_error(void) { return last_error[0] ? last_error : "no error recorded"; }

lb_status lb_fail(lb_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return s;
}

lb_status lb_fail_context(lb_status s, const char *fmt, ...) {
    char prefix[512], old[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, last_error, sizeof old);
    /* the joined message may be cut to the buffer: the precision says so */
    snprintf(last_error, sizeof last_error, "%.500s: %.500s", prefix, old[0] ? old : lb_status_name(s));
    return s;
}

/* One lock for every lb_worker_error: errors are rare, so contention is not
 * a concern; a pthread mutex works for OpenMP threads and any others. */
static pthread_mutex_t worker_error_lock = PTHREAD_MUTEX_INITIALIZER;

void lb_worker_error_init(lb_worker_error *e) {
    e->status = LB_OK;
    e->message[0] = 0;
}

void lb_worker_error_set(lb_worker_error *e, lb_status s) {
    if (s == LB_OK) return;
    pthread_mutex_lock(&worker_error_lock);
    if (e->status == LB_OK) {
        snprintf(e->message, sizeof e->message, "%s", last_error[0] ? last_error : lb_status_name(s));
        /* release: a thread that sees the status also sees the message */
        __atomic_store_n(&e->status, s, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&worker_error_lock);
}

int lb_worker_error_failed(const lb_worker_error *e) { return __atomic_load_n(&e->status, __ATOMIC_ACQUIRE) != LB_OK; }

lb_status lb_worker_error_raise(const lb_worker_error *e) {
    lb_status s = __atomic_load_n(&e->status, __ATOMIC_ACQUIRE);
    if (s == LB_OK) return LB_OK;
    return lb_fail(s, "%s", e->message);
}
