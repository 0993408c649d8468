/* A text buffer, the Pareto front of a point set, and an SVG line plot with
 * a logarithmic y axis, for `lowbit sweep`. No dependencies beyond libc, so
 * tests can compile plot.c on its own. */
#ifndef LB_PLOT_H
#define LB_PLOT_H

#include <stddef.h>

/* A growable NUL-terminated string; failed is set (and text dropped) when an
 * allocation fails. */
typedef struct {
    char *data;
    size_t len, cap;
    int failed;
} plot_buf;
void plot_buf_printf(plot_buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* s with & < > " escaped for XML text and attributes */
void plot_buf_xml(plot_buf *b, const char *s);
void plot_buf_free(plot_buf *b);

typedef struct {
    double x, y;       /* bpw, ppl ratio */
    int series;        /* index into plot_opts.series */
    const char *label; /* short name shown beside Pareto points (e.g. the format) */
    const char *tip;   /* hover text, or NULL */
} plot_point;

/* on_front[i] = 1 when no other point is at least as good in both x and y
 * and better in one (smaller is better in both); points with non-finite
 * coordinates are never on the front. Returns the number on the front. */
int plot_pareto(const plot_point *p, int n, unsigned char *on_front);

typedef struct {
    const char *title, *subtitle; /* subtitle may be NULL */
    const char *xlabel, *ylabel;
    const char *const *series; /* legend names */
    int n_series;
    double reference_y; /* a dashed horizontal line labelled reference_label (e.g. 1: fp32), 0: none */
    const char *reference_label;
} plot_opts;

/* The whole SVG document: one polyline per series through its points sorted
 * by x, markers, the Pareto front as a thick dashed line with ringed points
 * and labels, log-scale y ticks (1, 1.1, 1.2, 1.5, 2, 3, 5, 10, ... as room
 * allows), integer x ticks, a legend right of the plot. y must be > 0;
 * other points are left out. Returns 0, or -1 when out is failed. */
int plot_svg(plot_buf *out, const plot_point *p, int n, const plot_opts *o);

#endif
