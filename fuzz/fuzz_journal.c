/* libFuzzer target for quantize journals (src/pipeline/journal.c): the
 * input as one record's payload for a fixed tensor (blk.0.attn_q.weight,
 * 4 x 32; lb_journal_parse_record: it must parse into sizes it checked, or
 * fail cleanly), and as the body of a journal file after a valid header
 * (lb_journal_open's scan: records kept, or dropped from the first bad one,
 * never a crash), also wrapped as one record with a valid checksum so the
 * scan gets past it. The seed (fuzz/corpus/fuzz_journal) is an f32 record
 * with a sparse part and a bias. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipeline/pipeline_internal.h"

static const char *fingerprint = "fuzz fingerprint\n";

static void parse(const uint8_t *data, size_t size) {
    uint8_t *copy = malloc(size ? size : 1); /* exact size: ASan sees any over-read */
    if (!copy) return;
    memcpy(copy, data, size);
    lb_tensor t, out;
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "blk.0.attn_q.weight");
    t.rows = 4;
    t.cols = 32;
    lb_tensor_report rec;
    lb_quant_extras x;
    memset(&rec, 0, sizeof rec);
    if (lb_journal_parse_record(copy, size, &t, &out, &rec, &x) == LB_OK) {
        if (out.rows != 4 || out.cols != 32 || out.nbytes != out.layout.total_bytes) abort();
        float row[32];
        lb_dequantize_row(&out, 3, row);
        for (int64_t r = 0; x.nnz && r < 4; r++)
            for (int32_t k = x.row_ptr[r]; k < x.row_ptr[r + 1]; k++)
                if (x.col_idx[k] < 0 || x.col_idx[k] >= 32) abort();
        lb_tensor_free(&out);
        lb_quant_extras_free(&x);
    }
    free(copy);
}

static void scan(const char *path, const uint8_t *body, size_t size, int wrap) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    uint32_t v = 1, n = (uint32_t)strlen(fingerprint);
    uint64_t h = lb_journal_hash(fingerprint, n, 1469598103934665603ull);
    fwrite("LBJOURNL", 1, 8, f);
    fwrite(&v, 4, 1, f);
    fwrite(&n, 4, 1, f);
    fwrite(fingerprint, 1, n, f);
    fwrite(&h, 8, 1, f);
    if (wrap) {
        uint32_t zero = 0;
        uint64_t len = size, sum = lb_journal_hash(body, size, 1469598103934665603ull);
        fwrite("LBJT", 1, 4, f);
        fwrite(&zero, 4, 1, f);
        fwrite(&len, 8, 1, f);
        fwrite(body, 1, size, f);
        fwrite(&sum, 8, 1, f);
    } else {
        fwrite(body, 1, size, f);
    }
    fclose(f);
    lb_journal *j = NULL;
    if (lb_journal_open(path, fingerprint, 1, &j) == LB_OK) {
        if (lb_journal_done(j) < 0 || lb_journal_done(j) > (wrap ? 1 : (int)(size / 24 + 1))) abort();
        lb_journal_close(j, 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[64];
    if (!path[0]) snprintf(path, sizeof path, "/tmp/fuzz_journal.%d", (int)getpid());
    parse(data, size);
    if (size <= (1u << 20)) {
        scan(path, data, size, 0);
        scan(path, data, size, 1);
        unlink(path);
    }
    return 0;
}
