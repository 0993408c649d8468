/* What `lowbit plan` and `lowbit tune` share (plan.c): their common options,
 * the candidates, the sensitivity measurement, the reports and the recipe. */
#ifndef LB_PLAN_CLI_H
#define LB_PLAN_CLI_H

#include "cli.h"

#define PLAN_MAX_CANDS 64
#define PLAN_MAX_KEEP 64
#define PLAN_REF_LOGITS_BYTES ((size_t)1 << 30) /* the fp model's logits kept for the measurements, at most */

typedef struct {
    const char *verb; /* "plan" or "tune" */
    /* options */
    const char *cand_text, *tensors, *calib_text, *calib_blocks, *table, *svg, *heat, *refine_text, *granularity;
    const char *keeps[PLAN_MAX_KEEP];
    int n_keep;
    /* from plan_prepare: candidates (the list, then one per --keep rule) */
    lb_method_opts base;
    lb_candidate cands[PLAN_MAX_CANDS + PLAN_MAX_KEEP];
    int n_cands, n_free, heat_c;
    lb_plan keep_plan;
    lb_calib_opts copts;
    char calib_buf[4096];
    long rounds;
    int fisher; /* --fisher: squared gradients for the Fisher proxy */
    int row_blocks; /* --granularity rowblock[:N] or colblock[:N]: N (default 2); 0 otherwise */
    int block_axis; /* colblock: 1 (the blocks are column ranges) */
    /* from plan_measure */
    const char *model_path;
    lb_model *m;
    lb_text text;
    lb_calib_stats *stats;
    uint8_t *mask;
    lb_sensitivity_opts so;
    lb_ref_logits *ref_logits; /* the fp model's logits on the calibration split (so.eval.ref_logits) */
    lb_sensitivity s;
    double weights; /* of the planned tensors */
    double t0;
} plan_ctx;

/* Consumes one of the shared options at a->argv[a->i]: 1 if it did, 0 if
 * not, -1 on a usage error. */
int plan_option(plan_ctx *p, cli_args *a);
/* Candidates, --keep, --heat, --calib*, --refine (default_refine when not
 * given): CLI_OK or CLI_USAGE. */
int plan_prepare(plan_ctx *p, const char *default_refine);
/* Loads MODEL and the text, calibrates, measures every allowed (tensor,
 * candidate) pair (keeping the tensors when keep is set). */
int plan_measure(plan_ctx *p, const char *model_path, int keep);
/* --table and --svg, with the choice marked. */
int plan_reports(plan_ctx *p, const int *choice);
/* The choice as a plan, one rule per tensor, resolved against p->m. */
int plan_choice(plan_ctx *p, const int *choice, lb_plan *out);
/* Sum of the choice's bits, and of its KLs measured alone. */
double plan_bits(const plan_ctx *p, const int *choice, double *kld_alone);
/* "candidates", "choice" and "sensitivity" keys of the JSON object. */
void plan_json(const plan_ctx *p, const int *choice);
/* The choice per tensor as a table on stdout. */
void plan_print_choice(const plan_ctx *p, const int *choice);
void candidate_label(const lb_candidate *c, char *buf, size_t n);
/* The proxies' names, and proxy k's Spearman correlation with the measured KL. */
#define PLAN_N_PROXIES 4
extern const char *const plan_proxy_names[PLAN_N_PROXIES];
double plan_rank_correlation(const plan_ctx *p, int k);
void plan_free(plan_ctx *p);

#endif
