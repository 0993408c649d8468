/* Status codes and per-thread error messages. */
#include "lowbit/core.h"

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
