/* Evaluation texts: loading, validation, blank-line blocks and the fixed
 * calibration/evaluation split. */
#include <string.h>

#include "lowbit/eval.h"

static int blank_line(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return 0;
    return 1;
}

lb_status lb_text_from_memory(const char *data, size_t size, const char *name, lb_text *out) {
    memset(out, 0, sizeof *out);
    snprintf(out->path, sizeof out->path, "%s", name ? name : "text");
    size_t bad;
    if (!lb_utf8_valid(data, size, &bad))
        return lb_fail(LB_ERR_INVALID, "text '%s' is not valid UTF-8 (byte offset %zu)", out->path, bad);
    for (size_t i = 0; i < size; i++)
        if (data[i] == 0) return lb_fail(LB_ERR_INVALID, "text '%s' contains a NUL byte at offset %zu", out->path, i);
    out->data = lb_alloc(size + 1);
    if (!out->data) return LB_ERR_NOMEM;
    memcpy(out->data, data, size);
    out->data[size] = 0;
    out->size = size;
    /* blocks: maximal runs of non-blank lines */
    size_t cap = 64;
    out->blocks = lb_alloc(cap * sizeof *out->blocks);
    if (!out->blocks) {
        lb_text_free(out);
        return LB_ERR_NOMEM;
    }
    /* A block is every byte between separators, a separator being the
     * newline that ends a non-blank line followed by blank lines. So the last
     * block of a file keeps its final newline, as text.split("\n\n") does
     * (and as REFERENCE.md's token counts assume). */
    const char *p = out->data, *end = out->data + size, *block_start = NULL, *block_end = NULL;
    while (p < end || block_start) {
        const char *nl = p < end ? memchr(p, '\n', (size_t)(end - p)) : NULL;
        const char *line_end = nl ? nl : end;
        int at_eof = p >= end;
        if (!at_eof && !blank_line(p, (size_t)(line_end - p))) {
            if (!block_start) block_start = p;
            block_end = line_end;
        } else if (block_start) {
            if (at_eof) block_end = end;
            if (out->n_blocks == (int)cap) {
                cap *= 2;
                lb_span *nb = lb_alloc(cap * sizeof *nb);
                if (!nb) {
                    lb_text_free(out);
                    return LB_ERR_NOMEM;
                }
                memcpy(nb, out->blocks, (size_t)out->n_blocks * sizeof *nb);
                lb_free(out->blocks);
                out->blocks = nb;
            }
            out->blocks[out->n_blocks].text = block_start;
            out->blocks[out->n_blocks].len = (size_t)(block_end - block_start);
            out->n_blocks++;
            block_start = NULL;
        }
        p = nl ? nl + 1 : end;
    }
    if (out->n_blocks == 0) {
        lb_status st = lb_fail(LB_ERR_INVALID, "text '%s' is empty (no non-blank lines)", out->path);
        lb_text_free(out);
        return st;
    }
    return LB_OK;
}

lb_status lb_text_load(const char *path, lb_text *out) {
    memset(out, 0, sizeof *out);
    char *data;
    size_t size;
    lb_status st = lb_read_file(path, &data, &size);
    if (st != LB_OK) return st;
    st = lb_text_from_memory(data, size, path, out);
    lb_free(data);
    return st;
}

void lb_text_free(lb_text *t) {
    lb_free(t->data);
    lb_free(t->blocks);
    memset(t, 0, sizeof *t);
}

lb_status lb_split_parse(const char *text, lb_split *out) {
    if (text && !strcmp(text, "all")) *out = LB_SPLIT_ALL;
    else if (text && !strcmp(text, "calib")) *out = LB_SPLIT_CALIB;
    else if (text && !strcmp(text, "eval")) *out = LB_SPLIT_EVAL;
    else return lb_fail(LB_ERR_INVALID, "unknown split '%s' (known: all, calib, eval)", text ? text : "");
    return LB_OK;
}

const char *lb_split_name(lb_split s) { return s == LB_SPLIT_ALL ? "all" : s == LB_SPLIT_CALIB ? "calib" : "eval"; }

lb_status lb_text_split(const lb_text *t, lb_split split, int calib_blocks, int *first, int *end) {
    if (calib_blocks < 0) return lb_fail(LB_ERR_INVALID, "calibration blocks must be >= 0, not %d", calib_blocks);
    int c = calib_blocks < t->n_blocks ? calib_blocks : t->n_blocks;
    *first = split == LB_SPLIT_EVAL ? c : 0;
    *end = split == LB_SPLIT_CALIB ? c : t->n_blocks;
    if (*first >= *end)
        return lb_fail(LB_ERR_INVALID, "the %s split of '%s' is empty (%d blocks, %d for calibration)", lb_split_name(split),
                       t->path, t->n_blocks, calib_blocks);
    return LB_OK;
}

lb_status lb_protocol_parse(const char *text, lb_protocol *out) {
    if (text && !strcmp(text, "docs")) *out = LB_PROTOCOL_DOCS;
    else if (text && !strcmp(text, "chunks")) *out = LB_PROTOCOL_CHUNKS;
    else return lb_fail(LB_ERR_INVALID, "unknown protocol '%s' (known: docs, chunks)", text ? text : "");
    return LB_OK;
}

const char *lb_protocol_name(lb_protocol p) { return p == LB_PROTOCOL_DOCS ? "docs" : "chunks"; }
