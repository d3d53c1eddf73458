/*
 * OneFlow 0.9's CPU matrix products on a faster BLAS (oneflow_cpu.py builds and loads this; see there).
 *
 * OneFlow's wheel calls cblas_sgemm through its PLT, from the OpenBLAS it carries: single-threaded,
 * and built before OpenBLAS knew recent Intel CPUs, which it then runs with its SSE3 ("Prescott")
 * kernels. Loaded with RTLD_GLOBAL before OneFlow, this file's cblas_sgemm is found first and passes
 * each product to the Fortran sgemm_ whose address oneflow_cpu.py hands over (PyTorch's MKL, threaded).
 *
 * OneFlow's batched products (attention) arrive as one call per batch element and head, each tiny.
 * Handing such a product to MKL's thread team costs more than computing it: the team's threads, asleep
 * between calls, are woken through the kernel each time. Products below `single_below` (m*n*k, measured
 * per machine by oneflow_cpu.py) run on the calling thread alone (MKL's thread-local thread count).
 *
 * Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: the same call with A and B (and
 * M and N) swapped, no data moved.
 */
#include <stddef.h>

typedef void (*fortran_sgemm_t)(const char *transa, const char *transb, const int *m, const int *n,
                                const int *k, const float *alpha, const float *a, const int *lda,
                                const float *b, const int *ldb, const float *beta, float *c,
                                const int *ldc);
typedef int (*set_threads_local_t)(int threads);  /* MKL_Set_Num_Threads_Local: 0 = back to the global */

enum { ROW_MAJOR = 101, COL_MAJOR = 102, NO_TRANS = 111 };

static fortran_sgemm_t target = NULL;
static set_threads_local_t set_threads_local = NULL;
static double single_below = 0;
static long calls = 0, single_calls = 0;
static __thread int on_one_thread = 0;  /* what this thread last asked MKL for */

void tinybert_set_sgemm(void *fn) { target = (fortran_sgemm_t)fn; }

void tinybert_set_single_below(void *set_local, double mnk) {
    set_threads_local = (set_threads_local_t)set_local;
    single_below = mnk;
}

long tinybert_sgemm_calls(void) { return calls; }

long tinybert_single_thread_calls(void) { return single_calls; }

void cblas_sgemm(int order, int trans_a, int trans_b, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    const char ta = trans_a == NO_TRANS ? 'N' : 'T', tb = trans_b == NO_TRANS ? 'N' : 'T';
    const int one = set_threads_local != NULL && (double)m * n * k < single_below;
    __atomic_add_fetch(&calls, 1, __ATOMIC_RELAXED);
    if (one)
        __atomic_add_fetch(&single_calls, 1, __ATOMIC_RELAXED);
    if (one != on_one_thread) {  /* only on a change: the setting stays with the thread */
        set_threads_local(one ? 1 : 0);
        on_one_thread = one;
    }
    if (order == ROW_MAJOR)
        target(&tb, &ta, &n, &m, &k, &alpha, b, &ldb, a, &lda, &beta, c, &ldc);
    else
        target(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
}
