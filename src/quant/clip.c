/* Clipping rules for round-to-nearest: which part of a group's range the
 * grid covers. Clipping trades a few large errors on outliers for a finer
 * grid everywhere else; below 4 bits it is most of what RTN can do.
 *
 * ACIQ (Banner, Nahshan, Soudry 2019) minimizes clipping noise + rounding
 * noise for an assumed distribution; its optimal alpha/b (Laplace) and
 * alpha/sigma (Gaussian) per bit width are the tables of METHODS.md s19. The
 * mse rule is a grid search and lives with the quantizer (rtn.c) because it
 * must round exactly as the format stores. */
#include "lowbit/quant.h"

#include <string.h>

static const float laplace_ratio[9] = {1.05f, 1.86f, 2.83f, 3.89f, 5.03f, 6.20f, 7.41f, 8.64f, 9.89f};
static const float gauss_ratio[9] = {1.24f /* M=0 unused: use M=1 */, 1.24f, 1.71f, 2.15f, 2.55f,
                                     2.93f, 3.28f, 3.61f, 3.92f};

float lb_aciq_laplace_ratio(int bits) { return laplace_ratio[bits < 0 ? 0 : bits > 8 ? 8 : bits]; }
float lb_aciq_gauss_ratio(int bits) { return gauss_ratio[bits < 1 ? 1 : bits > 8 ? 8 : bits]; }

lb_status lb_clip_parse(const char *text, lb_clip *out) {
    static const struct {
        const char *name;
        lb_clip clip;
    } names[] = {{"minmax", LB_CLIP_MINMAX}, {"mse", LB_CLIP_MSE}, {"aciq", LB_CLIP_ACIQ},
                 {"aciq-laplace", LB_CLIP_ACIQ}, {"aciq-gauss", LB_CLIP_ACIQ_GAUSS}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (text && !strcmp(text, names[i].name)) {
            *out = names[i].clip;
            return LB_OK;
        }
    return lb_fail(LB_ERR_INVALID, "unknown clipping rule '%s' (known: minmax, mse, aciq, aciq-gauss)",
                   text ? text : "");
}

const char *lb_clip_name(lb_clip c) {
    switch (c) {
    case LB_CLIP_MINMAX: return "minmax";
    case LB_CLIP_MSE: return "mse";
    case LB_CLIP_ACIQ: return "aciq";
    case LB_CLIP_ACIQ_GAUSS: return "aciq-gauss";
    }
    return "unknown";
}

void lb_rtn_opts_default(lb_rtn_opts *o) {
    memset(o, 0, sizeof *o);
    o->clip = LB_CLIP_MINMAX;
    o->mse_steps = 50;
    o->mse_min_shrink = 0.5f;
    o->ternary_rule = LB_TERNARY_ABSMEAN;
}
