/* Progress line for long work: on stderr, only on a terminal unless forced. */
#define _POSIX_C_SOURCE 200809L
#include "lowbit/core.h"

#include <time.h>
#include <unistd.h>

static lb_progress_mode progress_mode = LB_PROGRESS_AUTO;
/* bars begun while one is showing stay hidden: a verb's own bar over many
 * library calls is not broken up by theirs (the calling thread only) */
static int bars_showing;

double lb_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void lb_progress_set_mode(lb_progress_mode m) { progress_mode = m; }

static int progress_enabled(void) {
    if (progress_mode == LB_PROGRESS_ON) return 1;
    if (progress_mode == LB_PROGRESS_OFF) return 0;
    return isatty(STDERR_FILENO);
}

static void draw(lb_progress *p) {
    double el = lb_now() - p->t_start;
    double frac = p->total ? (double)p->done / (double)p->total : 0.0;
    double eta = (frac > 0 && frac < 1) ? el * (1 - frac) / frac : 0;
    /* \033[K clears what a longer item left on the line */
    fprintf(stderr, "\r%s: %llu/%llu (%3.0f%%) %.1fs elapsed, ~%.1fs left%s%s\033[K", p->label,
            (unsigned long long)p->done, (unsigned long long)p->total, 100 * frac, el, eta, p->item[0] ? "  " : "",
            p->item);
    fflush(stderr);
}

void lb_progress_begin(lb_progress *p, const char *label, uint64_t total) {
    p->label = label;
    p->total = total;
    p->done = 0;
    p->item[0] = 0;
    p->t_start = p->t_last = lb_now();
    p->active = progress_enabled() && !bars_showing;
    if (p->active) bars_showing++;
}

void lb_progress_update(lb_progress *p, uint64_t done) {
    p->done = done;
    if (!p->active) return;
    double t = lb_now();
    if (t - p->t_last < 0.1 && done < p->total) return;
    p->t_last = t;
    draw(p);
}

void lb_progress_item(lb_progress *p, const char *item) {
    snprintf(p->item, sizeof p->item, "%s", item ? item : "");
    if (!p->active) return;
    /* a new item is worth showing at once, but not more than ~10 times a second */
    double t = lb_now();
    if (t - p->t_last < 0.1) return;
    p->t_last = t;
    draw(p);
}

void lb_progress_end(lb_progress *p) {
    if (!p->active) return;
    p->done = p->total;
    p->item[0] = 0;
    draw(p);
    fputc('\n', stderr);
    p->active = 0;
    bars_showing--;
}
