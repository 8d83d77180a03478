/*
 * gemm.h — the one internal matrix multiply (private to ops/ and the tests).
 *
 * Gemm, MatMul and their backward passes all go through onyx_gemm_f32, so making it
 * faster (issue #4: SIMD packing) speeds up every dense layer at once.
 */
#ifndef ONYX_GEMM_H
#define ONYX_GEMM_H

#include "pool.h"

#include <stdbool.h>
#include <stdint.h>

/*
 * C = alpha * op(A) * op(B) + beta * C, all row-major float32, where op(X) is X or X^T.
 *  op(A): M x K. A is M x K (lda >= K) when !trans_a, else K x M (lda >= M).
 *  op(B): K x N. B is K x N (ldb >= N) when !trans_b, else N x K (ldb >= K).
 *  C:     M x N, ldc >= N. When beta == 0, C is write-only: its old contents (even NaN) are
 *         never read. When alpha == 0 or K == 0, A and B are not read.
 * Any of M, N, K may be 0. A and B must not overlap C. The work is split over pool (the
 * session's, from ctx->pool; NULL = this thread only, and large products then allocate their
 * packing buffers per call); results do not depend on the thread count. The kernels are in
 * gemm_kernel.c: packed and cache-blocked, AVX-512 / AVX2 / NEON micro-kernels chosen at run time.
 */
void onyx_gemm_f32(onyx_pool *pool, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                   float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                   float beta, float *C, int64_t ldc);

/* The same contract, as a plain triple loop accumulating in double: the reference that tests
 * hold the fast version against. */
void onyx_gemm_f32_ref(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                       float *C, int64_t ldc);

#endif
