/* Picks the kernel table once, from the CPU's features. */
#include "kernels/kernels.h"

static const lb_kernel_table table_ref = {"generic", lb_gemm_nt_ref, lb_attend_ref, lb_silu_mul_ref};
#if defined(__x86_64__)
static const lb_kernel_table table_avx2 = {"avx2", lb_gemm_nt_avx2, lb_attend_avx2, lb_silu_mul_avx2};
#endif
#if defined(__aarch64__)
static const lb_kernel_table table_neon = {"neon", lb_gemm_nt_neon, lb_attend_neon, lb_silu_mul_neon};
#endif

const lb_kernel_table *lb_kernels_reference(void) { return &table_ref; }

const lb_kernel_table *lb_kernels(void) {
#if defined(__x86_64__)
    unsigned f = lb_cpu_features();
    if ((f & LB_CPU_AVX2) && (f & LB_CPU_FMA)) return &table_avx2;
#endif
#if defined(__aarch64__)
    if (lb_cpu_features() & LB_CPU_NEON) return &table_neon;
#endif
    return &table_ref;
}
