/* Fast Walsh-Hadamard transform (reference): log2(n) butterfly passes,
 * (a, b) -> (a + b, a - b) at distance h = 1, 2, 4, ... This is x H for the
 * Sylvester matrix H[i][j] = (-1)^popcount(i & j). */
#include "kernels/nn.h"

void lb_fwht_ref(float *x, int n) {
    for (int h = 1; h < n; h *= 2)
        for (int i = 0; i < n; i += 2 * h)
            for (int j = i; j < i + h; j++) {
                float a = x[j], b = x[j + h];
                x[j] = a + b;
                x[j + h] = a - b;
            }
}
