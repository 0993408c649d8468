/* The text of --refine: "autoround|lwc|2dquant|blockap[:key=value,...]"
 * (blockrec.h), apart from the method so that the parser stands alone. */
#define _POSIX_C_SOURCE 200809L /* strtok_r */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/blockrec.h"

/* blockap's default weight rate, in steps of the group's grid per update: a
 * weight can cross one rounding boundary in ~100 of the default 200 steps
 * (EfficientQAT's 2e-5 on Llama-2's ~0.03 steps is ~7e-4 over 4096 steps) */
#define BLOCKAP_WLR 5e-3f

const char *lb_blockrec_kind_name(lb_blockrec_kind k) {
    return k == LB_BLOCKREC_AUTOROUND ? "autoround" : k == LB_BLOCKREC_LWC ? "lwc" : k == LB_BLOCKREC_2DQUANT ? "2dquant"
                                                                                                      : "blockap";
}

lb_status lb_blockrec_opts_parse(const char *text, lb_blockrec_opts *o) {
    memset(o, 0, sizeof *o);
    if (!text) return lb_fail(LB_ERR_INVALID, "no refinement given");
    char buf[256];
    if (strlen(text) >= sizeof buf) return lb_fail(LB_ERR_INVALID, "refinement text too long");
    strcpy(buf, text);
    char *save = NULL, *tok = strtok_r(buf, ":,", &save);
    if (!tok) return lb_fail(LB_ERR_INVALID, "empty refinement (autoround, lwc, 2dquant or blockap)");
    if (!strcmp(tok, "autoround")) o->kind = LB_BLOCKREC_AUTOROUND;
    else if (!strcmp(tok, "lwc")) o->kind = LB_BLOCKREC_LWC;
    else if (!strcmp(tok, "2dquant")) o->kind = LB_BLOCKREC_2DQUANT;
    else if (!strcmp(tok, "blockap")) o->kind = LB_BLOCKREC_BLOCKAP;
    else return lb_fail(LB_ERR_INVALID, "unknown refinement '%s' (autoround, lwc, 2dquant or blockap)", tok);
    o->steps = 200;
    o->batch = 8;
    o->seed = 1;
    int lr_set = 0, target_set = 0;
    while ((tok = strtok_r(NULL, ":,", &save))) {
        char *eq = strchr(tok, '=');
        if (!eq) return lb_fail(LB_ERR_INVALID, "refinement option '%s' is not key=value", tok);
        *eq = 0;
        const char *val = eq + 1;
        if (!strcmp(tok, "target")) {
            if (!strcmp(val, "fp")) o->target_fp = 1;
            else if (!strcmp(val, "local")) o->target_fp = 0;
            else return lb_fail(LB_ERR_INVALID, "refinement option target=%s: local or fp", val);
            target_set = 1;
            continue;
        }
        char *end;
        double v = strtod(val, &end);
        if (end == val || *end) return lb_fail(LB_ERR_INVALID, "refinement option %s: '%s' is not a number", tok, val);
        if (!strcmp(tok, "steps") && v >= 0 && v <= 1e6 && v == floor(v)) o->steps = (int)v;
        else if (!strcmp(tok, "lr") && v > 0 && v < 10) {
            o->lr = (float)v;
            lr_set = 1;
        } else if (!strcmp(tok, "wlr") && v > 0 && v < 10 && o->kind == LB_BLOCKREC_BLOCKAP) {
            o->wlr = (float)v;
        } else if (!strcmp(tok, "batch") && v >= 1 && v <= 1e6 && v == floor(v)) o->batch = (int)v;
        else if (!strcmp(tok, "seed") && v >= 0 && v == floor(v)) o->seed = (uint64_t)v;
        else return lb_fail(LB_ERR_INVALID, "refinement option %s=%s: unknown key or out of range "
                            "(steps >= 0, 0 < lr < 10, batch >= 1, seed >= 0; blockap: 0 < wlr < 10)", tok, val);
    }
    if (!lr_set)
        o->lr = o->kind == LB_BLOCKREC_AUTOROUND ? (o->steps ? 1.0f / (float)o->steps : 5e-3f)
                : o->kind == LB_BLOCKREC_LWC     ? 1e-2f
                                                 : 2e-3f;
    if (o->kind == LB_BLOCKREC_BLOCKAP) {
        if (!o->wlr) o->wlr = BLOCKAP_WLR;
        if (!target_set) o->target_fp = 1; /* EfficientQAT's: the fp32 block on the fp32 stream */
    }
    return LB_OK;
}

