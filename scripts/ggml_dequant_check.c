/* lowbit's dequantization of llama.cpp's types against ggml's own, value by
 * value (bit patterns; NaN matches NaN). Not built by the project: it links
 * a llama.cpp build made beside it (docs/RESULTS.md "Issue 10: llama.cpp's
 * K-quants, read" has the commands):
 *
 *   cc -O2 scripts/ggml_dequant_check.c -Iinclude -I$LLAMA/ggml/include build/liblowbit.so \
 *      -L$LLAMA_BUILD/bin -lggml-base -Wl,-rpath,$LLAMA_BUILD/bin -Wl,-rpath,build -lm -o dequant_check
 *   ./dequant_check --random            random bytes as blocks of every type lowbit reads
 *   ./dequant_check FILE.gguf ...       every ggml-typed quantized tensor of each file
 *
 * Exit status 1 when any value differs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml.h"
#include "lowbit/format.h"
#include "lowbit/model.h"

/* 0 when x (lowbit) and ggml's to_float of the same bytes agree bit for bit */
static long long compare(const lb_tensor *t, int type, const char *what) {
    const struct ggml_type_traits *tr = ggml_get_type_traits((enum ggml_type)type);
    if (!tr->to_float) {
        printf("  %-28s %-7s ggml has no to_float: skipped\n", what, tr->type_name);
        return 0;
    }
    int64_t k = t->rows * t->cols;
    float *x = malloc((size_t)k * 4), *y = malloc((size_t)k * 4);
    if (!x || !y || lb_dequantize(t, x) != LB_OK) {
        fprintf(stderr, "%s: %s\n", what, lb_last_error());
        exit(2);
    }
    tr->to_float(t->data, y, k);
    long long bad = 0;
    for (int64_t j = 0; j < k; j++) bad += !(isnan(x[j]) && isnan(y[j])) && memcmp(&x[j], &y[j], 4) != 0;
    printf("  %-28s %-7s %9lld values, %lld differ\n", what, tr->type_name, (long long)k, bad);
    free(x);
    free(y);
    return bad;
}

int main(int argc, char **argv) {
    long long bad = 0;
    if (argc == 2 && !strcmp(argv[1], "--random")) {
        const char *names[] = {"q5_0",    "q5_1",   "q8_1",    "q2_k",  "q3_k",   "q4_k",  "q5_k",
                               "q6_k",    "q8_k",   "iq4_nl",  "iq4_xs", "tq1_0",  "tq2_0", "mxfp4",
                               "iq2_xxs", "iq2_xs", "iq2_s",   "iq3_xxs", "iq3_s", "iq1_s", "iq1_m"};
        srand(7);
        for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++) {
            lb_qspec s;
            size_t total;
            if (lb_qspec_parse(names[i], &s) != LB_OK || lb_format_size(&s, 64, 1024, NULL, NULL, &total) != LB_OK) return 2;
            unsigned char *b = malloc(total);
            for (size_t j = 0; j < total; j++) b[j] = (unsigned char)rand();
            lb_tensor t = {.spec = s, .rows = 64, .cols = 1024, .data = b, .nbytes = total};
            snprintf(t.name, sizeof t.name, "random %s", names[i]);
            if (lb_tensor_resolve(&t) != LB_OK) return 2;
            bad += compare(&t, lb_format_ggml_type(&s, 1024), t.name);
            free(b);
        }
    }
    for (int a = 1; a < argc && strcmp(argv[1], "--random"); a++) {
        lb_model *m;
        if (lb_model_load(argv[a], NULL, &m) != LB_OK) {
            fprintf(stderr, "%s: %s\n", argv[a], lb_last_error());
            return 2;
        }
        long long file_bad = 0;
        for (int i = 0; i < lb_model_n_tensors(m); i++) {
            const lb_tensor *t = lb_model_tensor_at(m, i);
            int type = lb_format_ggml_type(&t->spec, t->cols);
            if (type >= 0 && !lb_qspec_is_float(&t->spec)) file_bad += compare(t, type, t->name);
        }
        printf("%s: %lld values differ from ggml's to_float\n", argv[a], file_bad);
        bad += file_bad;
        lb_model_free(m);
    }
    return bad ? 1 : 0;
}
