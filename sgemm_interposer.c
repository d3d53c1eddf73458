/*
 * OneFlow 0.9's CPU matrix products on a faster BLAS (backend.py builds and loads this; see there).
 *
 * OneFlow's wheel calls cblas_sgemm through its PLT, from the OpenBLAS it carries: single-threaded,
 * and built before OpenBLAS knew recent Intel CPUs, which it then runs with its SSE3 ("Prescott")
 * kernels. Loaded with RTLD_GLOBAL before OneFlow, this file's cblas_sgemm is found first and passes
 * each product to the Fortran sgemm_ whose address backend.py hands over (PyTorch's MKL, threaded).
 *
 * Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: the same call with A and B (and
 * M and N) swapped, no data moved.
 */
#include <stddef.h>

typedef void (*fortran_sgemm_t)(const char *transa, const char *transb, const int *m, const int *n,
                                const int *k, const float *alpha, const float *a, const int *lda,
                                const float *b, const int *ldb, const float *beta, float *c,
                                const int *ldc);

enum { ROW_MAJOR = 101, COL_MAJOR = 102, NO_TRANS = 111 };

static fortran_sgemm_t target = NULL;
static long calls = 0;

void tinybert_set_sgemm(void *fn) { target = (fortran_sgemm_t)fn; }

long tinybert_sgemm_calls(void) { return calls; }

void cblas_sgemm(int order, int trans_a, int trans_b, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    const char ta = trans_a == NO_TRANS ? 'N' : 'T', tb = trans_b == NO_TRANS ? 'N' : 'T';
    __atomic_add_fetch(&calls, 1, __ATOMIC_RELAXED);
    if (order == ROW_MAJOR)
        target(&tb, &ta, &n, &m, &k, &alpha, b, &ldb, a, &lda, &beta, c, &ldc);
    else
        target(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
}
