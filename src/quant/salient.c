/* GPTQ's column loop for rows that decide per group what all rows share
 * (src/quant/salient.h): ptq161 and billm run it with their own rounding.
 * The update is gptq.c's (OBS with the upper factor U of H^-1, lazy
 * blocks, one sgemm per tile and block for the columns past the block);
 * what differs is that every group of columns starts with a callback that
 * sees all rows, so rows are processed in tiles block by block, not tile
 * by tile over all columns. */
#include "core/blas_threads.h"
#include "quant/salient.h"

#include <string.h>

#ifdef LB_HAVE_BLAS
#include <cblas.h>
#endif

#define TILE_ROWS 64

#ifdef LB_HAVE_BLAS
lb_status lb_feedback_run(const lb_feedback_job *job, float *W, double *loss) {
    const int64_t n = job->cols, rows = job->rows, n_tiles = (rows + TILE_ROWS - 1) / TILE_ROWS;
    const int64_t B = job->block < n ? job->block : n;
    double *tile_loss = lb_calloc((size_t)n_tiles, sizeof(double));
    float *E = lb_alloc((size_t)(rows * B) * sizeof(float)); /* the block's scaled errors, row-major (rows x bl) */
    if (!tile_loss || !E) {
        lb_free(tile_loss);
        lb_free(E);
        return lb_fail(LB_ERR_NOMEM, "out of memory in the column loop (%lld x %lld)", (long long)rows, (long long)n);
    }
    int openblas_threads = lb_blas_threads_single();
    lb_status st = LB_OK;
    for (int64_t c0 = 0; c0 < n && st == LB_OK;) {
        int64_t c1 = c0 + B < n ? c0 + B : n;
        if (job->group > 0) { /* a block never crosses a group boundary */
            int64_t next = (c0 / job->group + 1) * job->group;
            if (c1 > next) c1 = next;
            int64_t group_end = c0 + job->group < n ? c0 + job->group : n;
            if (c0 % job->group == 0 && job->group_start && (st = job->group_start(job->ctx, W, c0, group_end)) != LB_OK)
                break;
        }
        const int64_t bl = c1 - c0;
#pragma omp parallel for schedule(dynamic, 1)
        for (int64_t t = 0; t < n_tiles; t++) {
            int64_t r0 = t * TILE_ROWS, tr = rows - r0 < TILE_ROWS ? rows - r0 : TILE_ROWS;
            float *Et = E + r0 * bl;
            for (int64_t r = 0; r < tr; r++) {
                float *row = W + (r0 + r) * n;
                for (int64_t i = c0; i < c1; i++) {
                    float value = job->quantize(job->ctx, r0 + r, i, row[i]);
                    float e = (row[i] - value) / job->U[i * n + i];
                    Et[r * bl + (i - c0)] = e;
                    tile_loss[t] += (double)e * e;
                    const float *u = job->U + i * n;
                    for (int64_t m = i + 1; m < c1; m++) row[m] -= e * u[m];
                }
            }
            if (c1 < n)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)tr, (int)(n - c1), (int)bl, -1.0f, Et,
                            (int)bl, job->U + c0 * n + c1, (int)n, 1.0f, W + r0 * n + c1, (int)n);
        }
        c0 = c1;
    }
    lb_blas_threads_restore(openblas_threads);
    double sum = 0;
    for (int64_t t = 0; t < n_tiles; t++) sum += tile_loss[t];
    *loss = sum;
    lb_free(tile_loss);
    lb_free(E);
    return st;
}
#else
lb_status lb_feedback_run(const lb_feedback_job *job, float *W, double *loss) {
    (void)job;
    (void)W;
    (void)loss;
    return lb_fail(LB_ERR_UNSUPPORTED, "GPTQ's column loop needs OpenBLAS, and lowbit was built without it");
}
#endif
