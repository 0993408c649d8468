/* libFuzzer target: the JSON reader on arbitrary text (every node decoded:
 * strings, keys, numbers), then the same text as a Hugging Face config.json. */
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "model/model_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size ? size : 1);
    if (!text) return 0;
    memcpy(text, data, size);
    lb_json j;
    if (lb_json_parse(text, size, &j) == LB_OK) {
        for (size_t i = 0; i < j.n_nodes; i++) {
            char *s = NULL;
            double d;
            uint64_t u;
            int64_t v;
            if (j.nodes[i].type == LB_JSON_STRING && lb_json_string(&j, (int32_t)i, &s, NULL) == LB_OK) lb_free(s);
            if (j.nodes[i].type == LB_JSON_NUMBER) {
                (void)lb_json_double(&j, (int32_t)i, &d);
                (void)lb_json_u64(&j, (int32_t)i, &u);
                (void)lb_json_i64(&j, (int32_t)i, &v);
            }
            if (j.nodes[i].type == LB_JSON_OBJECT) (void)lb_json_find(&j, (int32_t)i, "weight_map");
        }
        lb_json_free(&j);
    }
    lb_config c;
    int tied;
    (void)lb_hf_config_parse(text, size, &c, &tied);
    free(text);
    return 0;
}
