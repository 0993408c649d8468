/* lb_matmul: y = x W^T for a weight in any format. Float weights go
 * straight to the GEMM kernel; every other format is dequantized a tile of
 * rows at a time (with the format's reference decoder) into a small buffer
 * that stays in cache while all n activation rows use it. Format-specific
 * integer kernels plug in here as they arrive.
 *
 * Each output element is computed by one thread in a fixed order, so the
 * result does not depend on the thread count. */
#include "kernels/kernels.h"
#include "lowbit/linear.h"

/* Prepared activations shared by weights reading one input (none yet). */
struct lb_act_cache {
    int max_rows, max_cols;
};

lb_status lb_act_cache_create(int max_rows, int max_cols, lb_act_cache **out) {
    *out = lb_calloc(1, sizeof **out);
    if (!*out) return LB_ERR_NOMEM;
    (*out)->max_rows = max_rows;
    (*out)->max_cols = max_cols;
    return LB_OK;
}

void lb_act_cache_free(lb_act_cache *c) { lb_free(c); }

void lb_act_cache_reset(lb_act_cache *c) { (void)c; }

#define ROW_TILE 16

lb_status lb_matmul(const lb_tensor *w, const float *x, int n, float *y, lb_act_cache *cache) {
    (void)cache;
    const lb_kernel_table *k = lb_kernels();
    int rows = (int)w->rows, cols = (int)w->cols;
    int n_tiles = (rows + ROW_TILE - 1) / ROW_TILE;
    if (w->spec.family == LB_FAMILY_F32) {
        const float *wf = (const float *)w->data;
#pragma omp parallel for schedule(static) if (n_tiles > 1 && (long)n * rows * cols > 32768)
        for (int t = 0; t < n_tiles; t++) {
            int r0 = t * ROW_TILE, r1 = r0 + ROW_TILE < rows ? r0 + ROW_TILE : rows;
            k->gemm_nt(n, r1 - r0, cols, x, cols, wf + (size_t)r0 * cols, cols, y + r0, rows);
        }
        return LB_OK;
    }
    int failed = 0;
#pragma omp parallel if (n_tiles > 1 && (long)n * rows * cols > 32768)
    {
        float *tile = lb_alloc((size_t)ROW_TILE * (size_t)cols * sizeof(float));
#pragma omp for schedule(static)
        for (int t = 0; t < n_tiles; t++) {
            int r0 = t * ROW_TILE, r1 = r0 + ROW_TILE < rows ? r0 + ROW_TILE : rows;
            if (!tile) {
#pragma omp atomic write
                failed = 1;
                continue;
            }
            lb_dequantize_rows(w, r0, r1, tile);
            k->gemm_nt(n, r1 - r0, cols, x, cols, tile, cols, y + r0, rows);
        }
        lb_free(tile);
    }
    return failed ? lb_fail(LB_ERR_NOMEM, "out of memory for a %d-column dequantization tile", cols) : LB_OK;
}
