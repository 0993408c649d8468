/* Quantization plans: rules apply in order with the last match winning,
 * norms are never selected, selections that select nothing are errors, a
 * tied classifier cannot be selected as `output`, recipes round-trip and
 * bad recipe lines are reported with their line numbers; lb_quantize_model
 * is byte-identical to quantizing each tensor by hand and all-or-nothing. */
#include "test.h"

#include <unistd.h>

static lb_method_opts rtn_opts(const char *clip) {
    lb_method_opts o;
    lb_method_opts_default(lb_method_find("rtn"), &o);
    if (lb_method_opts_set(&o, "clip", clip) != LB_OK) exit(1);
    return o;
}

static const lb_plan_entry *entry(const lb_plan *p, const char *name) {
    for (int i = 0; i < p->n_entries; i++)
        if (!strcmp(p->entries[i].name, name)) return &p->entries[i];
    return NULL;
}

static int entry_is(const lb_plan *p, const char *name, const char *spec_text, const char *method) {
    const lb_plan_entry *e = entry(p, name);
    lb_qspec s = lb_test_spec(spec_text);
    return e && lb_qspec_equal(&e->spec, &s) && !strcmp(e->opts.method->name, method);
}

static void test_rule_order(lb_model *m) {
    lb_plan p;
    lb_plan_init(&p);
    lb_qspec i4 = lb_test_spec("int4:g64:asym"), i8 = lb_test_spec("int8:g32:sym"), bin = lb_test_spec("binary:row");
    lb_method_opts mm = rtn_opts("minmax"), mse = rtn_opts("mse");
    CHECK_OK(lb_plan_add_selection(&p, "linears", &i4, &mm));
    CHECK_OK(lb_plan_add_rule(&p, "blk.0.*", &i8, &mse));
    CHECK_OK(lb_plan_add_override(&p, "blk.0.ffn_down.weight=binary:row", &mm));
    CHECK_OK(lb_plan_resolve(&p, m));
    CHECK(p.n_entries == 35);
    CHECK(entry_is(&p, "blk.0.attn_q.weight", "int8:g32:sym", "rtn"));
    CHECK(lb_method_opts_get(&entry(&p, "blk.0.attn_q.weight")->opts, "clip") == 1); /* mse */
    CHECK(entry_is(&p, "blk.0.ffn_down.weight", "binary:row", "rtn"));
    CHECK(entry_is(&p, "blk.1.attn_q.weight", "int4:g64:asym", "rtn"));
    CHECK(entry(&p, "blk.0.attn_norm.weight") == NULL && entry(&p, "token_embd.weight") == NULL);
    /* the same rules in the other order: the broad rule last wins everywhere */
    lb_plan q;
    lb_plan_init(&q);
    CHECK_OK(lb_plan_add_rule(&q, "blk.0.ffn_down.weight", &bin, &mm));
    CHECK_OK(lb_plan_add_rule(&q, "blk.0.*", &i8, &mse));
    CHECK_OK(lb_plan_add_rule(&q, "linears", &i4, &mm));
    CHECK_OK(lb_plan_resolve(&q, m));
    for (int i = 0; i < q.n_entries; i++) CHECK(lb_qspec_equal(&q.entries[i].spec, &i4) && q.entries[i].rule == 2);
    /* an override names its own method; its options start from that method's defaults */
    CHECK_OK(lb_plan_add_override(&q, "blk.2.ffn_*=ternary:row,method=twn", &mse));
    CHECK_OK(lb_plan_resolve(&q, m));
    CHECK(entry_is(&q, "blk.2.ffn_up.weight", "ternary:row", "twn"));
    CHECK_OK(lb_plan_check(&q));
    /* and one that keeps the base method changes only the options it names */
    CHECK_OK(lb_plan_add_override(&q, "blk.3.*=int3,mse_steps=7", &mse));
    CHECK(lb_method_opts_get(&q.rules[q.n_rules - 1].opts, "clip") == 1);
    CHECK(lb_method_opts_get(&q.rules[q.n_rules - 1].opts, "mse_steps") == 7);
    /* the summary for the note: options not at their defaults, merged patterns */
    char note[256];
    lb_plan_summary(&p, note, sizeof note);
    CHECK_MSG(!strcmp(note, "method=rtn format=int4:g64:asym tensors=linears; method=rtn clip=mse format=int8:g32:sym "
                            "tensors=blk.0.*; method=rtn format=binary:row tensors=blk.0.ffn_down.weight"),
              "%s", note);
    char small[40];
    lb_plan_summary(&p, small, sizeof small);
    CHECK_MSG(strlen(small) < sizeof small && strstr(small, "..."), "%s", small);
    lb_plan_free(&q);
    lb_plan_free(&p);
}

static void test_selection_errors(lb_model *tied, lb_model *untied) {
    lb_plan p;
    lb_plan_init(&p);
    lb_qspec q8 = lb_test_spec("q8_0");
    lb_method_opts mm = rtn_opts("minmax");
    /* the outside finding: --tensors '' used to quantize nothing and report nan bpw */
    CHECK_FAILS(lb_plan_add_selection(&p, "", &q8, &mm), LB_ERR_INVALID, "empty tensor selection");
    CHECK_FAILS(lb_plan_add_selection(&p, "linears,,embeddings", &q8, &mm), LB_ERR_INVALID, "empty entry");
    CHECK_FAILS(lb_plan_add_selection(&p, "linears,", &q8, &mm), LB_ERR_INVALID, "empty entry");
    CHECK_FAILS(lb_plan_add_selection(&p, ",linears", &q8, &mm), LB_ERR_INVALID, "empty entry");
    CHECK(p.n_rules == 0);
    CHECK_FAILS(lb_plan_resolve(&p, tied), LB_ERR_INVALID, "no rules");
    CHECK_FAILS(lb_plan_add_rule(&p, "a b", &q8, &mm), LB_ERR_INVALID, "whitespace");
    /* norms never: `all` skips them, a pattern of only norms is an error */
    CHECK_OK(lb_plan_add_selection(&p, "all", &q8, &mm));
    CHECK_OK(lb_plan_resolve(&p, tied));
    CHECK(p.n_entries == 36);
    for (int i = 0; i < p.n_entries; i++) CHECK(!strstr(p.entries[i].name, "_norm."));
    CHECK_OK(lb_plan_add_selection(&p, "*norm*", &q8, &mm));
    CHECK_FAILS(lb_plan_resolve(&p, tied), LB_ERR_INVALID, "'*norm*' selects only norm weights");
    CHECK(p.n_entries == 0);
    lb_plan_free(&p);
    lb_plan_init(&p);
    CHECK_OK(lb_plan_add_selection(&p, "blk.9.*", &q8, &mm));
    CHECK_FAILS(lb_plan_resolve(&p, tied), LB_ERR_INVALID, "'blk.9.*' matches no tensor");
    lb_plan_free(&p);
    /* output: an error on a tied model, the classifier on an untied one */
    lb_plan_init(&p);
    CHECK_OK(lb_plan_add_selection(&p, "output", &q8, &mm));
    CHECK_FAILS(lb_plan_resolve(&p, tied), LB_ERR_INVALID, "tied to the token embedding");
    if (untied) {
        CHECK_OK(lb_plan_resolve(&p, untied));
        CHECK(p.n_entries == 1 && !strcmp(p.entries[0].name, "output.weight"));
    }
    lb_plan_free(&p);
    /* overrides that do not parse */
    lb_plan_init(&p);
    CHECK_FAILS(lb_plan_add_override(&p, "blk.0.*", &mm), LB_ERR_INVALID, "expected PATTERN=SPEC");
    CHECK_FAILS(lb_plan_add_override(&p, "=int4", &mm), LB_ERR_INVALID, "expected PATTERN=SPEC");
    CHECK_FAILS(lb_plan_add_override(&p, "x=", &mm), LB_ERR_INVALID, "expected PATTERN=SPEC");
    CHECK_FAILS(lb_plan_add_override(&p, "x=,clip=mse", &mm), LB_ERR_INVALID, "empty format");
    CHECK_FAILS(lb_plan_add_override(&p, "x=int4,,clip=mse", &mm), LB_ERR_INVALID, "empty item");
    CHECK_FAILS(lb_plan_add_override(&p, "x=int4,bogus=1", &mm), LB_ERR_INVALID, "known: clip, mse_steps");
    CHECK_FAILS(lb_plan_add_override(&p, "x=fp4", &mm), LB_ERR_INVALID, "unknown format 'fp4'");
    CHECK_FAILS(lb_plan_add_override(&p, "x=int4,method=nosuch", &mm), LB_ERR_INVALID, "available: rtn, twn");
    CHECK(p.n_rules == 0);
    /* twn on an int format: refused by the method's check, naming the tensor */
    CHECK_OK(lb_plan_add_override(&p, "blk.1.attn_k.weight=int4,method=twn", &mm));
    CHECK_OK(lb_plan_resolve(&p, tied));
    CHECK_FAILS(lb_plan_check(&p), LB_ERR_INVALID, "'blk.1.attn_k.weight': method twn quantizes to ternary");
    lb_plan_free(&p);
}

static int same_entries(const lb_plan *a, const lb_plan *b) {
    if (a->n_entries != b->n_entries) return 0;
    for (int i = 0; i < a->n_entries; i++)
        if (strcmp(a->entries[i].name, b->entries[i].name) || !lb_qspec_equal(&a->entries[i].spec, &b->entries[i].spec) ||
            !lb_method_opts_equal(&a->entries[i].opts, &b->entries[i].opts))
            return 0;
    return 1;
}

static void test_recipe_round_trip(lb_model *m) {
    const char *recipe = "# a recipe\n"
                         "\n"
                         "linears int4:g64:asym clip=mse mse_steps=20\n"
                         "  embeddings   q8_0   # the embedding, 8 bits\n"
                         "blk.*.ffn_down.weight ternary:g64:2bit method=twn\r\n"
                         "blk.0.attn_?.weight nf4:g64 mse_min_shrink=0.75 method=rtn clip=mse\n";
    lb_plan p, back, rules_back;
    lb_plan_init(&p);
    lb_plan_init(&back);
    lb_plan_init(&rules_back);
    CHECK_OK(lb_plan_parse_recipe(&p, recipe, strlen(recipe), "r.txt"));
    CHECK(p.n_rules == 4 && p.rules[1].line == 4 && p.rules[3].line == 6);
    CHECK(!strcmp(p.rules[2].opts.method->name, "twn"));
    CHECK_OK(lb_plan_resolve(&p, m));
    CHECK(p.n_entries == 36);
    CHECK(entry_is(&p, "blk.3.ffn_down.weight", "ternary:g64:2bit", "twn"));
    CHECK(entry_is(&p, "blk.0.attn_v.weight", "nf4:g64", "rtn"));
    CHECK(entry_is(&p, "blk.0.attn_output.weight", "int4:g64:asym", "rtn"));
    CHECK(lb_method_opts_get(&entry(&p, "blk.0.attn_v.weight")->opts, "mse_min_shrink") == 0.75);
    /* the resolved plan, one line per tensor, reads back to the same plan */
    char *text = NULL;
    CHECK_OK(lb_plan_format_recipe(&p, 1, "test\nheader", &text));
    CHECK(text && !strstr(text, "test\nheader"));
    if (text) {
        CHECK_OK(lb_plan_parse_recipe(&back, text, strlen(text), "saved"));
        CHECK(back.n_rules == 36);
        CHECK_OK(lb_plan_resolve(&back, m));
        CHECK(same_entries(&p, &back));
        /* its summary (the GGUF note) merges per-tensor lines and is cut to fit */
        char note[256];
        lb_plan_summary(&back, note, sizeof note);
        CHECK_MSG(strstr(note, "method=rtn format=int8:g32:sym tensors=token_embd.weight; method=rtn clip=mse "
                               "mse_min_shrink=0.75 format=nf4:g64 tensors=blk.0.attn_q.weight,blk.0.attn_k.weight,"
                               "blk.0.attn_v.weight; ") == note &&
                      strlen(note) < sizeof note && !strcmp(note + strlen(note) - 3, "..."),
                  "%s", note);
    }
    lb_free(text);
    /* so do the rules themselves */
    CHECK_OK(lb_plan_format_recipe(&p, 0, NULL, &text));
    if (text) {
        CHECK_OK(lb_plan_parse_recipe(&rules_back, text, strlen(text), "rules"));
        CHECK(rules_back.n_rules == p.n_rules);
        CHECK_OK(lb_plan_resolve(&rules_back, m));
        CHECK(same_entries(&p, &rules_back));
    }
    lb_free(text);
    /* through a file, written atomically */
    char dir[] = "/tmp/lowbit-plan-XXXXXX", path[64];
    if (mkdtemp(dir)) {
        snprintf(path, sizeof path, "%s/r.txt", dir);
        CHECK_OK(lb_plan_save_recipe(&p, path, "saved by test_plan"));
        lb_plan f;
        lb_plan_init(&f);
        CHECK_OK(lb_plan_load_recipe(&f, path));
        CHECK_OK(lb_plan_resolve(&f, m));
        CHECK(same_entries(&p, &f));
        lb_plan_free(&f);
        remove(path);
        rmdir(dir);
    }
    lb_plan_free(&p);
    lb_plan_free(&back);
    lb_plan_free(&rules_back);
}

static void test_bad_recipes(void) {
    static const struct {
        const char *text;
        const char *needle;
    } bad[] = {
        {"linears int4\n\nembeddings fp4\n", "r:3: unknown format 'fp4'"},
        {"linears\n", "r:1: expected PATTERN SPEC"},
        {"# only\n\n  # comments\n", "r: no rules"},
        {"", "r: no rules"},
        {"linears int4 method=nosuch\n", "r:1: unknown method 'nosuch' (available: rtn, twn"},
        {"linears int4 method=rtn method=twn\n", "r:1: method given twice"},
        {"linears int4\nlinears int4 clipp=mse\n", "r:2: method rtn has no option 'clipp' (known: clip, mse_steps"},
        {"linears ternary method=twn clip=mse\n", "r:1: method twn has no option 'clip' (it takes none)"},
        {"linears int4 clip=best\n", "r:1: unknown clipping rule 'best'"},
        {"linears int4 mse_steps=-3\n", "r:1: rtn option 'mse_steps' expects an integer"},
        {"linears int4 clip\n", "r:1: expected key=value"},
        {"linears int4\nblk.0.ffn_down.weight rows=0:32:64 int2 method=gptq\n", "r:2: 'rows=0:32:64': expected rows=R0:R1"},
        {"linears int4\n\x7f" "ELF\x01\x02\n", "r:2: byte 0x7f at column 1"},
        {"linears int4 a=1 b=2 c=3 d=4 e=5 f=6 g=7 h=8 i=9 j=10 k=11 l=12 m=13 n=14 o=15 p=16 q=17 r=18 s=19\n", "r:1: more than"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lb_plan p;
        lb_plan_init(&p);
        CHECK_FAILS(lb_plan_parse_recipe(&p, bad[i].text, strlen(bad[i].text), "r"), LB_ERR_FORMAT, bad[i].needle);
        CHECK(p.n_rules == 0);
        lb_plan_free(&p);
    }
    /* a NUL byte, and a line past the limit */
    lb_plan p;
    lb_plan_init(&p);
    const char nul[] = "linears int4\nembed\0dings q8_0\n";
    CHECK_FAILS(lb_plan_parse_recipe(&p, nul, sizeof nul - 1, "r"), LB_ERR_FORMAT, "r:2: byte 0x00 at column 6");
    char *longline = malloc(LB_RECIPE_LINE_MAX + 40);
    memset(longline, 'x', LB_RECIPE_LINE_MAX + 39);
    memcpy(longline, "# ok\n", 5);
    longline[LB_RECIPE_LINE_MAX + 39] = '\0';
    CHECK_FAILS(lb_plan_parse_recipe(&p, longline, strlen(longline), "r"), LB_ERR_FORMAT, "r:2: line longer than 1024");
    free(longline);
    /* rules appended to a plan that had some: a failure keeps the old ones */
    CHECK_OK(lb_plan_parse_recipe(&p, "linears int4\n", 13, "r"));
    CHECK_FAILS(lb_plan_parse_recipe(&p, "all q8_0\nx fp4\n", 15, "s"), LB_ERR_FORMAT, "s:2:");
    CHECK(p.n_rules == 1);
    CHECK_FAILS(lb_plan_load_recipe(&p, "/nonexistent/recipe.txt"), LB_ERR_IO, "recipe.txt");
    lb_plan_free(&p);
}

static void test_quantize_model(void) {
    char *buf;
    size_t size;
    CHECK_OK(lb_read_file(lb_test_data("models/stories260K.bin"), &buf, &size));
    lb_model *m = NULL, *ref = NULL;
    CHECK_OK(lb_model_from_llama2c((const uint8_t *)buf, size, &m));
    CHECK_OK(lb_model_from_llama2c((const uint8_t *)buf, size, &ref));
    if (!m || !ref) return;
    lb_plan p;
    lb_plan_init(&p);
    lb_qspec i4 = lb_test_spec("int4:g64:asym"), i8 = lb_test_spec("int8:g32:sym");
    lb_method_opts mse = rtn_opts("mse");
    CHECK_OK(lb_plan_add_selection(&p, "linears", &i4, &mse));
    CHECK_OK(lb_plan_add_override(&p, "blk.4.ffn_up.weight=int8:g32:sym", &mse));
    /* a NaN in the last layer: nothing changes, the error names the tensor */
    int nan_tensor = -1;
    for (int i = 0; i < lb_model_n_tensors(m); i++)
        if (!strcmp(lb_model_tensor_at(m, i)->name, "blk.4.attn_k.weight")) nan_tensor = i;
    CHECK(nan_tensor >= 0);
    float *w = (float *)lb_model_tensor_at(m, nan_tensor)->data; /* a view into buf */
    float saved = w[3];
    w[3] = NAN;
    const uint8_t *before = lb_model_tensor_at(m, 2)->data;
    CHECK_FAILS(lb_quantize_model(m, &p, NULL), LB_ERR_NUMERIC, "quantizing 'blk.4.attn_k.weight'");
    CHECK(lb_model_tensor_at(m, 2)->data == before && lb_model_tensor_at(m, 2)->spec.family == LB_FAMILY_F32);
    CHECK(m->quant_note[0] == '\0');
    w[3] = saved;
    lb_quantize_report rep;
    CHECK_OK(lb_quantize_model(m, &p, &rep));
    CHECK(rep.tensors_quantized == 35);
    CHECK_MSG(rep.bpw > 4.627 && rep.bpw < 4.9 && rep.bpw_all > rep.bpw, "bpw %g, all %g", rep.bpw, rep.bpw_all);
    CHECK(strstr(m->quant_note, "method=rtn clip=mse format=int4:g64:asym tensors=linears") == m->quant_note);
    CHECK(rep.tensors != NULL && !strcmp(rep.tensors[0].name, "blk.0.attn_q.weight") && isnan(rep.tensors[0].proxy_loss));
    lb_quantize_report_free(&rep);
    /* byte-identical to quantizing each tensor with its entry by hand */
    CHECK_OK(lb_plan_resolve(&p, ref));
    int same = 1;
    for (int i = 0; i < p.n_entries; i++) {
        const lb_plan_entry *e = &p.entries[i];
        lb_tensor *t = lb_model_tensor_at(ref, e->tensor), q;
        CHECK_OK(lb_quantize_tensor(e->opts.method, &e->opts, NULL, (const float *)t->data, t->rows, t->cols, &e->spec,
                                    t->name, &q));
        const lb_tensor *got = lb_model_tensor_at(m, e->tensor);
        same &= got->nbytes == q.nbytes && !memcmp(got->data, q.data, q.nbytes) && lb_qspec_equal(&got->spec, &e->spec);
        lb_tensor_free(&q);
    }
    CHECK(same);
    CHECK(entry_is(&p, "blk.4.ffn_up.weight", "int8:g32:sym", "rtn"));
    CHECK(lb_qspec_equal(&lb_model_tensor_at(m, entry(&p, "blk.4.ffn_up.weight")->tensor)->spec, &i8));
    lb_plan_free(&p);
    lb_model_free(m);
    lb_model_free(ref);
    lb_free(buf);
}

int main(void) {
    lb_progress_set_mode(LB_PROGRESS_OFF);
    lb_model *m = NULL, *untied = NULL;
    CHECK_OK(lb_model_load(lb_test_data("models/stories260K.bin"), NULL, &m));
    if (!m) return 1;
    CHECK_OK(lb_model_load("fuzz/corpus/fuzz_model_gguf/untied.gguf", NULL, &untied)); /* a tiny untied model */
    CHECK(m->tied_output);
    test_rule_order(m);
    test_selection_errors(m, untied);
    test_recipe_round_trip(m);
    test_bad_recipes();
    test_quantize_model();
    lb_model_free(m);
    lb_model_free(untied);
    return lb_test_finish("test_plan");
}
