/* SVG written by hand (see plot.h): fixed layout, 900 x 560 user units,
 * plot area left, legend in its own column on the right so it never covers
 * data. */
#include "plot.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void plot_buf_printf(plot_buf *b, const char *fmt, ...) {
    if (b->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int k = vsnprintf(b->data ? b->data + b->len : NULL, b->data ? room : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->failed = 1;
            return;
        }
        if (b->data && (size_t)k < room) {
            b->len += (size_t)k;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + (size_t)k + 1) cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d) {
            b->failed = 1;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
}

void plot_buf_xml(plot_buf *b, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '&': plot_buf_printf(b, "&amp;"); break;
        case '<': plot_buf_printf(b, "&lt;"); break;
        case '>': plot_buf_printf(b, "&gt;"); break;
        case '"': plot_buf_printf(b, "&quot;"); break;
        default: plot_buf_printf(b, "%c", *s);
        }
    }
}

void plot_buf_free(plot_buf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

static int finite_point(const plot_point *p) { return isfinite(p->x) && isfinite(p->y); }

int plot_pareto(const plot_point *p, int n, unsigned char *on_front) {
    int count = 0;
    for (int i = 0; i < n; i++) {
        int front = finite_point(&p[i]);
        for (int j = 0; j < n && front; j++) {
            if (j == i || !finite_point(&p[j])) continue;
            if (p[j].x <= p[i].x && p[j].y <= p[i].y && (p[j].x < p[i].x || p[j].y < p[i].y)) front = 0;
        }
        on_front[i] = (unsigned char)front;
        count += front;
    }
    return count;
}

/* ---- layout ------------------------------------------------------------------ */
enum { W = 900, H = 560, PL = 78, PT = 74, PR = 660, PB = 496, LEGEND_X = 680 };

static const char *const colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                     "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"};
#define N_COLORS (int)(sizeof colors / sizeof colors[0])

typedef struct {
    double x0, x1, ly0, ly1; /* data ranges, y as log10 */
} frame;

static double px(const frame *f, double x) { return PL + (x - f->x0) / (f->x1 - f->x0) * (PR - PL); }
static double py(const frame *f, double y) { return PB - (log10(y) - f->ly0) / (f->ly1 - f->ly0) * (PB - PT); }

/* series k's marker: circle, square, triangle, diamond, in turn */
static void marker(plot_buf *b, int k, double x, double y, const char *color) {
    switch (k % 4) {
    case 0: plot_buf_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"", x, y, color); break;
    case 1: plot_buf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"7.5\" height=\"7.5\" fill=\"%s\"", x - 3.75, y - 3.75, color); break;
    case 2:
        plot_buf_printf(b, "<polygon points=\"%.1f,%.1f %.1f,%.1f %.1f,%.1f\" fill=\"%s\"", x, y - 5, x - 4.5, y + 3.5, x + 4.5,
                        y + 3.5, color);
        break;
    default:
        plot_buf_printf(b, "<polygon points=\"%.1f,%.1f %.1f,%.1f %.1f,%.1f %.1f,%.1f\" fill=\"%s\"", x, y - 5, x + 5, y, x,
                        y + 5, x - 5, y, color);
    }
}

static int cmp_by_x(const void *a, const void *b) {
    const plot_point *p = *(const plot_point *const *)a, *q = *(const plot_point *const *)b;
    return p->x < q->x ? -1 : p->x > q->x ? 1 : p->y < q->y ? -1 : p->y > q->y;
}

/* y ticks: decades first, then 2 and 5, then 1.5 and 3, then 1.1 and 1.2 (and
 * their multiples), each only when 18 units clear of the ticks already placed */
static void y_ticks(plot_buf *b, const frame *f) {
    static const double mant[][2] = {{1, 0}, {2, 5}, {1.5, 3}, {1.1, 1.2}};
    double placed[64];
    int n_placed = 0;
    for (int level = 0; level < 4; level++) {
        for (int d = (int)floor(f->ly0) - 1; d <= (int)ceil(f->ly1); d++) {
            for (int k = 0; k < 2; k++) {
                double m = mant[level][k];
                if (m == 0) continue;
                double v = m * pow(10, d);
                if (log10(v) < f->ly0 - 1e-9 || log10(v) > f->ly1 + 1e-9) continue;
                double y = py(f, v);
                int clear = 1;
                for (int i = 0; i < n_placed && clear; i++) clear = fabs(placed[i] - y) >= 18;
                if (!clear || n_placed == 64) continue;
                placed[n_placed++] = y;
                char text[32];
                snprintf(text, sizeof text, "%g", v);
                plot_buf_printf(b, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" class=\"grid\"/>\n", PL, y, PR, y);
                plot_buf_printf(b, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" class=\"axis\"/>\n", PL - 5, y, PL, y);
                plot_buf_printf(b, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\" class=\"tick\">%s</text>\n", PL - 8, y + 4, text);
            }
        }
    }
}

typedef struct {
    double x0, y0, x1, y1;
} box;

static int overlaps(const box *a, const box *b) { return a->x0 < b->x1 && b->x0 < a->x1 && a->y0 < b->y1 && b->y0 < a->y1; }

int plot_svg(plot_buf *b, const plot_point *p, int n, const plot_opts *o) {
    const plot_point **v = calloc((size_t)n + 1, sizeof *v);
    unsigned char *front = calloc((size_t)n + 1, 1);
    box *labels = calloc((size_t)n + 1, sizeof *labels);
    if (!v || !front || !labels) {
        free(v);
        free(front);
        free(labels);
        b->failed = 1;
        return -1;
    }
    int m = 0;
    for (int i = 0; i < n; i++)
        if (finite_point(&p[i]) && p[i].y > 0) v[m++] = &p[i];
    qsort(v, (size_t)m, sizeof *v, cmp_by_x);

    frame f = {0, 1, 0, 1};
    if (m) {
        double xmin = v[0]->x, xmax = v[m - 1]->x, ymin = v[0]->y, ymax = v[0]->y;
        for (int i = 0; i < m; i++) {
            ymin = fmin(ymin, v[i]->y);
            ymax = fmax(ymax, v[i]->y);
        }
        if (o->reference_y > 0) {
            ymin = fmin(ymin, o->reference_y);
            ymax = fmax(ymax, o->reference_y);
        }
        f.x0 = floor(xmin) > 0 ? floor(xmin) - (xmin - floor(xmin) < 0.2) : 0;
        f.x1 = ceil(xmax) + (ceil(xmax) - xmax < 0.2);
        f.ly0 = log10(ymin) - 0.03;
        f.ly1 = log10(ymax) + 0.06;
        if (f.ly1 - f.ly0 < 0.2) f.ly1 = f.ly0 + 0.2;
    }
    /* the picture widens so the longest legend label fits (12px Helvetica:
     * about 7 px per character, generously) */
    int width = W, height = H;
    for (int s = 0; s < o->n_series; s++) {
        int need = LEGEND_X + 36 + (int)(7.0 * (double)strlen(o->series[s])) + 16;
        if (need > width) width = need;
    }
    if (PT + 8 + 22 * (o->n_series + 2) + 40 > height) height = PT + 8 + 22 * (o->n_series + 2) + 40;
    plot_buf_printf(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                       "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                       "font-family=\"Helvetica, Arial, sans-serif\">\n",
                    width, height, width, height);
    plot_buf_printf(b, "<style>.grid{stroke:#e4e4e4;stroke-width:1}.axis{stroke:#333;stroke-width:1}"
                       ".tick{font-size:12px;fill:#333}.label{font-size:13px;fill:#111}.pt{font-size:10px;fill:#333}"
                       ".legend{font-size:12px;fill:#111}</style>\n");
    plot_buf_printf(b, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", width, height);
    plot_buf_printf(b, "<text x=\"%d\" y=\"26\" text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\">", W / 2);
    plot_buf_xml(b, o->title);
    plot_buf_printf(b, "</text>\n");
    if (o->subtitle) {
        plot_buf_printf(b, "<text x=\"%d\" y=\"46\" text-anchor=\"middle\" font-size=\"12\" fill=\"#444\">", W / 2);
        plot_buf_xml(b, o->subtitle);
        plot_buf_printf(b, "</text>\n");
    }
    /* ticks and grid */
    int xstep = f.x1 - f.x0 > 12 ? 2 : 1;
    for (double x = ceil(f.x0); x <= f.x1 + 1e-9; x += xstep) {
        double X = px(&f, x);
        plot_buf_printf(b, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" class=\"grid\"/>\n", X, PT, X, PB);
        plot_buf_printf(b, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" class=\"axis\"/>\n", X, PB, X, PB + 5);
        plot_buf_printf(b, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" class=\"tick\">%g</text>\n", X, PB + 19, x);
    }
    y_ticks(b, &f);
    plot_buf_printf(b, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" class=\"axis\"/>\n", PL, PT, PR - PL,
                    PB - PT);
    plot_buf_printf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" class=\"label\">", (PL + PR) / 2, PB + 42);
    plot_buf_xml(b, o->xlabel);
    plot_buf_printf(b, "</text>\n<text x=\"20\" y=\"%d\" text-anchor=\"middle\" class=\"label\" transform=\"rotate(-90 20 %d)\">",
                    (PT + PB) / 2, (PT + PB) / 2);
    plot_buf_xml(b, o->ylabel);
    plot_buf_printf(b, "</text>\n");
    if (o->reference_y > 0 && m) {
        double Y = py(&f, o->reference_y);
        plot_buf_printf(b, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#888\" stroke-dasharray=\"2,3\"/>\n", PL, Y, PR, Y);
        plot_buf_printf(b, "<text x=\"%d\" y=\"%.1f\" class=\"pt\">", PL + 6, Y - 4);
        plot_buf_xml(b, o->reference_label ? o->reference_label : "");
        plot_buf_printf(b, "</text>\n");
    }
    /* one polyline per series, then the Pareto front over everything */
    for (int s = 0; s < o->n_series; s++) {
        const char *color = colors[s % N_COLORS];
        plot_buf_printf(b, "<polyline class=\"series\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\" points=\"", color);
        for (int i = 0; i < m; i++)
            if (v[i]->series == s) plot_buf_printf(b, "%.1f,%.1f ", px(&f, v[i]->x), py(&f, v[i]->y));
        plot_buf_printf(b, "\"/>\n");
    }
    plot_point *sorted = calloc((size_t)m + 1, sizeof *sorted);
    if (!sorted) b->failed = 1;
    for (int i = 0; sorted && i < m; i++) sorted[i] = *v[i];
    int n_front = sorted ? plot_pareto(sorted, m, front) : 0;
    if (n_front) {
        plot_buf_printf(b, "<polyline class=\"pareto\" fill=\"none\" stroke=\"#000\" stroke-width=\"3\" stroke-opacity=\"0.55\" "
                           "stroke-dasharray=\"8,5\" points=\"");
        for (int i = 0; i < m; i++)
            if (front[i]) plot_buf_printf(b, "%.1f,%.1f ", px(&f, v[i]->x), py(&f, v[i]->y));
        plot_buf_printf(b, "\"/>\n");
    }
    for (int i = 0; i < m; i++) {
        double X = px(&f, v[i]->x), Y = py(&f, v[i]->y);
        if (front[i]) plot_buf_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"8\" fill=\"none\" stroke=\"#000\" stroke-width=\"1.5\"/>\n", X, Y);
        marker(b, v[i]->series, X, Y, colors[v[i]->series % N_COLORS]);
        if (v[i]->tip) {
            plot_buf_printf(b, "><title>");
            plot_buf_xml(b, v[i]->tip);
            plot_buf_printf(b, "</title></%s>\n", v[i]->series % 4 == 0 ? "circle" : v[i]->series % 4 == 1 ? "rect" : "polygon");
        } else {
            plot_buf_printf(b, "/>\n");
        }
    }
    /* labels of Pareto points: the first placement, nearest first, clear of the
     * other labels and markers and inside the plot; far ones get a leader line;
     * a point with no room keeps only its hover text */
    int n_labels = 0;
    for (int i = 0; i < m; i++) {
        if (!front[i] || !v[i]->label) continue;
        double X = px(&f, v[i]->x), Y = py(&f, v[i]->y), w = 5.6 * (double)strlen(v[i]->label);
        static const double off[][2] = {{10, -8}, {10, 14}, {-10, -8}, {-10, 14}, {10, -22}, {-10, -22}, {10, 28},
                                        {-10, 28}, {14, -38}, {-14, -38}, {14, -54}, {-14, -54}, {18, -70}, {-18, -70}};
        for (int k = 0; k < (int)(sizeof off / sizeof off[0]); k++) {
            double x0 = off[k][0] > 0 ? X + off[k][0] : X + off[k][0] - w, y1 = Y + off[k][1] + 2;
            box bx = {x0 - 1, y1 - 11, x0 + w + 1, y1 + 1};
            int clear = bx.x0 >= PL + 2 && bx.x1 <= PR - 2 && bx.y0 >= PT + 2 && bx.y1 <= PB - 2;
            for (int j = 0; j < n_labels && clear; j++) clear = !overlaps(&bx, &labels[j]);
            for (int j = 0; j < m && clear; j++) {
                box pt = {px(&f, v[j]->x) - 8, py(&f, v[j]->y) - 8, px(&f, v[j]->x) + 8, py(&f, v[j]->y) + 8};
                clear = !overlaps(&bx, &pt);
            }
            if (!clear) continue;
            labels[n_labels++] = bx;
            if (fabs(off[k][1]) > 20)
                plot_buf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#999\" stroke-width=\"0.8\"/>\n",
                                X + (off[k][0] > 0 ? 5 : -5), Y + (off[k][1] < 0 ? -6 : 6), off[k][0] > 0 ? bx.x0 + 1 : bx.x1 - 1,
                                off[k][1] < 0 ? y1 : y1 - 11);
            plot_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"pt\">", x0, y1 - 2);
            plot_buf_xml(b, v[i]->label);
            plot_buf_printf(b, "</text>\n");
            break;
        }
    }
    /* legend */
    int ly = PT + 8;
    for (int s = 0; s < o->n_series; s++, ly += 22) {
        const char *color = colors[s % N_COLORS];
        plot_buf_printf(b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"1.8\"/>", LEGEND_X, ly,
                        LEGEND_X + 28, ly, color);
        marker(b, s, LEGEND_X + 14, ly, color);
        plot_buf_printf(b, "/>\n<text x=\"%d\" y=\"%d\" class=\"legend\">", LEGEND_X + 36, ly + 4);
        plot_buf_xml(b, o->series[s]);
        plot_buf_printf(b, "</text>\n");
    }
    plot_buf_printf(b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#000\" stroke-width=\"3\" stroke-opacity=\"0.55\" "
                       "stroke-dasharray=\"8,5\"/><circle cx=\"%d\" cy=\"%d\" r=\"7\" fill=\"none\" stroke=\"#000\" stroke-width=\"1.5\"/>\n"
                       "<text x=\"%d\" y=\"%d\" class=\"legend\">Pareto front</text>\n",
                    LEGEND_X, ly, LEGEND_X + 28, ly, LEGEND_X + 14, ly, LEGEND_X + 36, ly + 4);
    plot_buf_printf(b, "<text x=\"%d\" y=\"%d\" class=\"pt\">no other point has both bpw and</text>\n"
                       "<text x=\"%d\" y=\"%d\" class=\"pt\">ppl as low, one of them lower</text>\n",
                    LEGEND_X + 36, ly + 18, LEGEND_X + 36, ly + 30);
    plot_buf_printf(b, "</svg>\n");
    free(sorted);
    free(v);
    free(front);
    free(labels);
    return b->failed ? -1 : 0;
}
