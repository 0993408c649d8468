/* A small JSON reader and writer for the container files lowbit reads
 * beside weights: safetensors headers, Hugging Face config.json,
 * model.safetensors.index.json and tokenizer.json.
 *
 * The reader parses the whole text once into a flat array of nodes (no
 * recursion: an explicit stack, at most LB_JSON_MAX_DEPTH deep), checking
 * the grammar of RFC 8259 (strings, escapes, numbers, literals, nothing
 * after the value). Strings and numbers are kept as spans of the text and
 * decoded on demand, so a 10 MB tokenizer.json costs one node per value.
 * Errors name the byte offset. The text need not be NUL-terminated.
 *
 * The writer appends to a growable buffer (escaped strings, numbers that
 * read back exactly). Internal to the library (io layer): not public API. */
#ifndef LB_IO_JSON_H
#define LB_IO_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "lowbit/core.h"

#define LB_JSON_MAX_DEPTH 64

typedef enum { LB_JSON_NULL, LB_JSON_FALSE, LB_JSON_TRUE, LB_JSON_NUMBER, LB_JSON_STRING, LB_JSON_ARRAY, LB_JSON_OBJECT } lb_json_type;

typedef struct {
    lb_json_type type;
    size_t start, len;         /* strings: the bytes between the quotes, raw; others: the value's text */
    size_t key_start, key_len; /* object members: the key's raw bytes (between its quotes) */
    int32_t next;              /* next sibling, -1 for the last */
    int32_t child;             /* containers: first element / member, -1 when empty */
    uint32_t count;            /* containers: elements / members */
    uint8_t escaped;           /* string value holds a backslash (decode needed) */
    uint8_t key_escaped;       /* likewise for the key */
} lb_json_node;

typedef struct {
    const char *text; /* not owned: must outlive the document */
    size_t len;
    lb_json_node *nodes; /* nodes[0] is the root */
    size_t n_nodes, cap;
} lb_json;

/* Parses text[0..len). On failure the message is "JSON: byte N: ..." and
 * *out holds nothing to free. */
lb_status lb_json_parse(const char *text, size_t len, lb_json *out);
void lb_json_free(lb_json *j);

/* The member `key` of object node obj, or -1 (also when obj is not an
 * object). Keys are compared decoded; the first match wins. */
int32_t lb_json_find(const lb_json *j, int32_t obj, const char *key);
/* Decoded string value of a string node (NUL-terminated, lb_alloc'd; may
 * hold NUL bytes from \u0000, see *len). */
lb_status lb_json_string(const lb_json *j, int32_t i, char **out, size_t *len);
/* The decoded key of an object member, likewise. */
lb_status lb_json_key(const lb_json *j, int32_t i, char **out, size_t *len);
/* 1 if string node i decodes to exactly s */
int lb_json_string_eq(const lb_json *j, int32_t i, const char *s);
/* A number node as a double (finite), or as an integer: the text must be an
 * integer (no fraction or exponent) within the type. */
lb_status lb_json_double(const lb_json *j, int32_t i, double *out);
lb_status lb_json_u64(const lb_json *j, int32_t i, uint64_t *out);
lb_status lb_json_i64(const lb_json *j, int32_t i, int64_t *out);

/* ---- writing ---------------------------------------------------------------- */
typedef struct {
    char *data;
    size_t len, cap;
    int failed; /* an allocation failed: every later append is a no-op */
} lb_json_buf;

void lb_json_buf_free(lb_json_buf *b);
void lb_json_raw(lb_json_buf *b, const char *s, size_t n);
void lb_json_raws(lb_json_buf *b, const char *s);
/* "..." with ", \, control characters escaped (bytes >= 0x80 pass as they are) */
void lb_json_str(lb_json_buf *b, const char *s, size_t n);
void lb_json_strs(lb_json_buf *b, const char *s);
void lb_json_int(lb_json_buf *b, long long v);
void lb_json_uint(lb_json_buf *b, unsigned long long v);
/* shortest %g form that reads back as the same float (finite values only) */
void lb_json_float(lb_json_buf *b, float v);

#endif
