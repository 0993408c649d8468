/* libFuzzer target for activation quantizer specs (lb_act_spec_parse), the
 * text of --act and of a model file's lowbit.act.<linear> keys. Any input
 * must parse or fail with LB_ERR_INVALID, leaving the output as it was; a
 * spec that parses must pass lb_act_check (without a clip), format to
 * canonical text that parses back to the same spec and formats to the same
 * text; and with a clip it must quantize a small row to finite values on
 * its grid, within +-clip. */
#include "lowbit.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1); /* the parser takes C strings */
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    lb_act_quant a, b, untouched;
    memset(&a, 0x5a, sizeof a);
    untouched = a;
    lb_status st = lb_act_spec_parse(text, &a);
    if (st != LB_OK) {
        if (st != LB_ERR_INVALID || memcmp(&a, &untouched, sizeof a)) abort();
        free(text);
        return 0;
    }
    if (lb_act_check(&a, 0) != LB_OK || a.clip != 0.0f) abort();
    char c1[64], c2[64];
    lb_act_spec_format(&a, c1, sizeof c1);
    if (lb_act_spec_parse(c1, &b) != LB_OK) abort();
    lb_act_spec_format(&b, c2, sizeof c2);
    if (strcmp(c1, c2) || a.kind != b.kind || a.bits != b.bits ||
        (a.kind == LB_AQ_TENSOR && (a.rule != b.rule || a.percentile != b.percentile)))
        abort();
    if (a.kind != LB_AQ_NONE) {
        a.clip = 1.5f;
        float x[8] = {-3.0f, -1.5f, -0.7f, 0.0f, 0.1f, 0.75f, 1.4999f, 2.0f}, y[8];
        if (lb_act_quantize_rows(&a, x, 1, 8, y) != LB_OK) abort();
        float limit = a.kind == LB_AQ_TENSOR ? 1.5f : 3.0f;
        for (int j = 0; j < 8; j++)
            if (!isfinite(y[j]) || fabsf(y[j]) > limit * (1 + 1e-6f)) abort();
    }
    free(text);
    return 0;
}
