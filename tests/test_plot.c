/* The sweep's plot (tools/lowbit/plot.c, compiled into this test): the Pareto
 * front of a known point set, and the SVG's structure (one polyline per
 * series, the front, log ticks, escaped text, no NaN). */
#include "test.h"

#include <math.h>

#include "../tools/lowbit/plot.c"

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

static void test_pareto(void) {
    /* (bpw, ppl ratio) and whether each is on the front */
    const struct {
        double x, y;
        int front;
    } known[] = {
        {1, 100, 1},     /* A: the fewest bits but J */
        {2, 50, 1},      /* B */
        {2, 60, 0},      /* C: same bits as B, worse */
        {3, 60, 0},      /* D: more bits and worse than B */
        {4, 2, 1},       /* E */
        {4, 2, 1},       /* F: E's twin: neither is better, both stay */
        {5, 2.5, 0},     /* G: dominated by E */
        {8, 1.0, 1},     /* H */
        {NAN, 1, 0},     /* I: not a number, never on the front */
        {0.5, 1000, 1},  /* J: fewest bits of all */
        {9, 1.0, 0},     /* K: as good as H with more bits */
        {7, INFINITY, 0} /* L: failed evaluation */
    };
    enum { N = sizeof known / sizeof known[0] };
    plot_point p[N];
    unsigned char on[N];
    int want = 0;
    for (int i = 0; i < N; i++) {
        p[i] = (plot_point){known[i].x, known[i].y, 0, NULL, NULL};
        want += known[i].front;
    }
    CHECK(plot_pareto(p, N, on) == want);
    for (int i = 0; i < N; i++) CHECK_MSG(on[i] == known[i].front, "point %d: on front %d, want %d", i, on[i], known[i].front);
    /* the order of the points does not matter */
    plot_point r[N];
    unsigned char on_r[N];
    for (int i = 0; i < N; i++) r[i] = p[N - 1 - i];
    CHECK(plot_pareto(r, N, on_r) == want);
    for (int i = 0; i < N; i++) CHECK(on_r[i] == known[N - 1 - i].front);
    /* one point is its own front; none is empty */
    CHECK(plot_pareto(p, 1, on) == 1 && on[0] == 1);
    CHECK(plot_pareto(p, 0, on) == 0);
}

static void test_svg(void) {
    const char *names[] = {"rtn", "rtn clip=mse & <more>"};
    plot_point p[] = {
        {1.2, 250, 0, "binary:row", "tip <1>"}, {2.6, 130, 0, "int2:g64:asym", NULL}, {4.6, 1.12, 0, "int4:g64:asym", NULL},
        {2.6, 11, 1, "int2:g64:asym", NULL},    {4.6, 1.09, 1, "int4:g64:asym", NULL}, {8.7, 1.001, 1, "int8:g32:sym", NULL},
        {3.0, NAN, 1, "broken", NULL}, /* left out */
    };
    plot_opts o = {.title = "Perplexity & bits",
                   .subtitle = "model m, text t",
                   .xlabel = "bits per weight",
                   .ylabel = "ppl / fp32",
                   .series = names,
                   .n_series = 2,
                   .reference_y = 1,
                   .reference_label = "fp32"};
    plot_buf b = {0};
    CHECK(plot_svg(&b, p, (int)(sizeof p / sizeof p[0]), &o) == 0);
    CHECK(b.data && !b.failed);
    const char *s = b.data ? b.data : "";
    CHECK(!strncmp(s, "<?xml", 5) && strstr(s, "</svg>\n"));
    CHECK(count(s, "<polyline class=\"series\"") == 2);
    CHECK(count(s, "<polyline class=\"pareto\"") == 1);
    /* the front: binary, rtn clip=mse's int2, int4 (1.09) and int8: four rings + the legend's */
    CHECK_MSG(count(s, "r=\"8\" fill=\"none\"") == 4, "%d rings", count(s, "r=\"8\" fill=\"none\""));
    CHECK(strstr(s, "Perplexity &amp; bits") && strstr(s, "rtn clip=mse &amp; &lt;more&gt;") && strstr(s, "tip &lt;1&gt;"));
    CHECK(!strstr(s, "broken") && !strstr(s, "nan") && !strstr(s, "inf"));
    /* log ticks over 1..250: the decades and 2, 5 at least */
    CHECK(strstr(s, ">1</text>") && strstr(s, ">10</text>") && strstr(s, ">100</text>") && strstr(s, ">2</text>"));
    CHECK(strstr(s, ">5</text>") && strstr(s, ">9</text>")); /* x ticks: integers to 9 */
    plot_buf_free(&b);

    /* no points: still a whole document */
    CHECK(plot_svg(&b, p, 0, &o) == 0 && strstr(b.data, "</svg>") && !strstr(b.data, "nan"));
    plot_buf_free(&b);
}

int main(void) {
    test_pareto();
    test_svg();
    return lb_test_finish("test_plot");
}
