/* libFuzzer target for format choices (lb_plan_parse_choice: lowbit plan's
 * --candidates items and --tensor-type's right-hand side, "SPEC[,method=NAME]
 * [,key=value]..."). Any text must parse or fail with LB_ERR_INVALID or
 * LB_ERR_UNSUPPORTED; a choice that parses must write back (spec, method,
 * every option) to text that parses to the same spec and options. */
#include "lowbit.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char text[1100];
    size_t n = size < sizeof text - 1 ? size : sizeof text - 1;
    memcpy(text, data, n);
    text[n] = '\0';
    lb_qspec spec, spec2;
    lb_method_opts o, o2;
    lb_status st = lb_plan_parse_choice(text, NULL, &spec, &o);
    if (st != LB_OK) {
        if (st != LB_ERR_INVALID && st != LB_ERR_UNSUPPORTED) abort();
        return 0;
    }
    /* "SPEC,method=NAME,key=value,..." from the parsed choice */
    char back[2048], opts[1024];
    lb_qspec_format(&spec, back, sizeof back);
    size_t k = strlen(back);
    k += (size_t)snprintf(back + k, sizeof back - k, ",method=%s", o.method->name);
    lb_method_opts_format(&o, 1, opts, sizeof opts);
    for (char *p = opts; *p; p++)
        if (*p == ' ') *p = ',';
    if (opts[0]) snprintf(back + k, sizeof back - k, ",%s", opts);
    if (lb_plan_parse_choice(back, NULL, &spec2, &o2) != LB_OK || !lb_qspec_equal(&spec, &spec2) ||
        !lb_method_opts_equal(&o, &o2))
        abort();
    return 0;
}
