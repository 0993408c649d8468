/* libFuzzer target for recipes (lb_plan_parse_recipe). Any input must parse
 * or fail with LB_ERR_FORMAT, leaving the plan's rules as they were; a recipe
 * that parses must write back (lb_plan_format_recipe) to text that parses to
 * the same rules; and when the tiny untied model from the model corpus is
 * there, a plan that resolves against it must round-trip as a resolved
 * recipe too. */
#include "lowbit.h"

#include <stdlib.h>
#include <string.h>

static lb_model *model;
static int model_tried;

static void load_model(void) {
    model_tried = 1;
    char path[4096];
    const char *file = __FILE__, *slash = strrchr(file, '/');
    int dir = slash ? (int)(slash - file) : 1;
    snprintf(path, sizeof path, "%.*s/corpus/fuzz_model_gguf/untied.gguf", dir, slash ? file : ".");
    if (lb_model_load(path, NULL, &model) != LB_OK) {
        fprintf(stderr, "fuzz_recipe: %s did not load (%s); resolving is not fuzzed\n", path, lb_last_error());
        model = NULL;
    }
}

static int same_rules(const lb_plan *a, const lb_plan *b) {
    if (a->n_rules != b->n_rules) return 0;
    for (int i = 0; i < a->n_rules; i++)
        if (strcmp(a->rules[i].pattern, b->rules[i].pattern) || !lb_qspec_equal(&a->rules[i].spec, &b->rules[i].spec) ||
            !lb_method_opts_equal(&a->rules[i].opts, &b->rules[i].opts))
            return 0;
    return 1;
}

static int same_entries(const lb_plan *a, const lb_plan *b) {
    if (a->n_entries != b->n_entries) return 0;
    for (int i = 0; i < a->n_entries; i++)
        if (strcmp(a->entries[i].name, b->entries[i].name) || !lb_qspec_equal(&a->entries[i].spec, &b->entries[i].spec) ||
            !lb_method_opts_equal(&a->entries[i].opts, &b->entries[i].opts))
            return 0;
    return 1;
}

/* text -> rules again; aborts unless it parses to the same plan */
static void reparse(const lb_plan *p, int resolved) {
    char *text = NULL;
    if (lb_plan_format_recipe(p, resolved, "fuzz", &text) != LB_OK) abort();
    lb_plan back;
    lb_plan_init(&back);
    if (lb_plan_parse_recipe(&back, text, strlen(text), "written") != LB_OK) abort();
    if (!resolved && !same_rules(p, &back)) abort();
    if (resolved && (lb_plan_resolve(&back, model) != LB_OK || !same_entries(p, &back))) abort();
    lb_plan_free(&back);
    lb_free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!model_tried) {
        lb_progress_set_mode(LB_PROGRESS_OFF);
        load_model();
    }
    char *copy = malloc(size ? size : 1); /* exact size: ASan sees any over-read */
    if (!copy) return 0;
    memcpy(copy, data, size);
    lb_plan p;
    lb_plan_init(&p);
    lb_status st = lb_plan_parse_recipe(&p, copy, size, "fuzz");
    if (st != LB_OK && (st != LB_ERR_FORMAT || p.n_rules != 0)) abort();
    if (st == LB_OK) {
        reparse(&p, 0);
        if (model && lb_plan_resolve(&p, model) == LB_OK) {
            lb_plan_check(&p);
            char note[256];
            lb_plan_summary(&p, note, sizeof note);
            if (strlen(note) >= sizeof note) abort();
            reparse(&p, 1);
        }
    }
    lb_plan_free(&p);
    free(copy);
    return 0;
}
