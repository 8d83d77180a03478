/*
 * gemm_kernel.h — the fast float32 GEMM: packed, cache-blocked, SIMD micro-kernels chosen at run
 * time, split over a thread pool (issue #4). Private to ops/, the tests and the benchmarks.
 *
 * Contract of every entry point (the same as onyx_gemm_f32 in gemm.h):
 *   C = alpha * op(A) * op(B) + beta * C, all row-major float32, op(X) = X or X^T.
 *   op(A): M x K. A is M x K (lda >= K) when !trans_a, else K x M (lda >= M).
 *   op(B): K x N. B is K x N (ldb >= N) when !trans_b, else N x K (ldb >= K).
 *   C:     M x N, ldc >= N. When beta == 0, C is write-only: its old contents (even NaN) are
 *          never read. When alpha == 0 or K == 0, A and B are not read (C = beta * C).
 *   Any of M, N, K may be 0. A and B must not overlap C.
 *
 * Determinism: each element of C is computed by exactly one task, with the K loop always cut
 * into the same slices and summed in the same order, so results are bit-identical for any
 * number of threads (and with or without a pool). They do depend on the instruction set (FMA vs
 * separate multiply and add). For M > 8 a row of C does not depend on M either. For M <= 8 they
 * depend on whether op(B) is pre-packed: pre-packed runs the same arithmetic as larger M, not
 * pre-packed runs the small-M path (which sums K in another order). The same call always takes
 * the same path on one machine.
 *
 * Memory: the packed blocks of A and B take up to a few MiB. With a pool they live in the pool's
 * scratch block (onyx_pool_scratch: allocated on the first call, reused after — repeated calls
 * allocate nothing). With pool == NULL they go on the stack when they fit 96 KiB (small
 * products: no allocation) and are malloc'd and freed per call otherwise; if malloc fails the
 * call falls back to small blocks on the stack, slower but with the same results. The small-M
 * path and pre-packed B with M <= 8 (AVX-512: M <= 64) pack nothing. Stack use is about 130 KiB.
 *
 * Threads: the call returns when C is complete. A pool is used by one thread at a time; call
 * with pool == NULL from inside a pool task.
 */
#ifndef ONYX_GEMM_KERNEL_H
#define ONYX_GEMM_KERNEL_H

#include "activation.h"
#include "pool.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The micro-kernel families. AUTO picks the best one the CPU (and OS) supports. */
typedef enum onyx_gemm_isa {
    ONYX_GEMM_ISA_AUTO = 0,
    ONYX_GEMM_ISA_PORTABLE, /* plain C, any CPU: the reference the SIMD paths are tested against */
    ONYX_GEMM_ISA_AVX2,     /* x86-64 AVX2 + FMA: 6x16 micro-tile */
    ONYX_GEMM_ISA_AVX512,   /* x86-64 AVX-512F: 14x32 micro-tile */
    ONYX_GEMM_ISA_NEON,     /* AArch64 Advanced SIMD: 8x12 micro-tile */
    ONYX_GEMM_ISA_COUNT
} onyx_gemm_isa;

/* The GEMM with the best path for this CPU. */
void onyx_gemm_f32_fast(onyx_pool *pool, bool trans_a, bool trans_b, int64_t M, int64_t N,
                        int64_t K, float alpha, const float *A, int64_t lda, const float *B,
                        int64_t ldb, float beta, float *C, int64_t ldc);

/* The same with the path forced (tests, benchmarks). An isa this CPU cannot run falls back to
 * ONYX_GEMM_ISA_PORTABLE; check onyx_gemm_isa_supported() first to know. */
void onyx_gemm_f32_isa(onyx_gemm_isa isa, onyx_pool *pool, bool trans_a, bool trans_b, int64_t M,
                       int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                       const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* Whether this build and CPU can run isa (AUTO and PORTABLE: always). */
bool onyx_gemm_isa_supported(onyx_gemm_isa isa);
/* The isa AUTO resolves to on this CPU (never AUTO). */
onyx_gemm_isa onyx_gemm_isa_best(void);
/* Depth of the K slices of onyx_gemm_f32_fast on this CPU: a product with K at most this is one
 * slice, so C = alpha * (the whole sum) + beta * C is rounded once per element. */
int64_t onyx_gemm_depth(void);
/* Static name: "auto", "portable", "avx2", "avx512", "neon"; "?" for anything else. */
const char *onyx_gemm_isa_name(onyx_gemm_isa isa);

/*
 * Pre-packed op(B): a constant weight matrix packed once (at session creation) into the layout
 * the micro-kernel reads, so that GEMMs with it skip packing B, a full pass over the weights
 * per call. The packed block records the isa and the shape it was packed for.
 *
 * onyx_gemm_packed_size: bytes needed for op(B) of K x N with isa (0 when K*N overflows).
 * onyx_gemm_pack_b: packs op(B) (B laid out as described at the top) into `packed`, which must
 *   be 64-byte aligned and hold onyx_gemm_packed_size(isa, N, K) bytes. isa AUTO = the best.
 * onyx_gemm_f32_packed: as onyx_gemm_f32_fast with op(B) taken from `packed`; N and K must be
 *   those it was packed with.
 */
size_t onyx_gemm_packed_size(onyx_gemm_isa isa, int64_t N, int64_t K);
void onyx_gemm_pack_b(onyx_gemm_isa isa, bool trans_b, int64_t N, int64_t K, const float *B,
                      int64_t ldb, void *packed);
void onyx_gemm_f32_packed(onyx_pool *pool, bool trans_a, int64_t M, int64_t N, int64_t K,
                          float alpha, const float *A, int64_t lda, const void *packed, float beta,
                          float *C, int64_t ldc);

/*
 * Fused epilogues: an element-wise function applied to each tile of C right after its last K
 * slice is added in, while the tile is still in cache (issue #4), instead of in a separate pass
 * over C. C = epi(alpha * op(A) * op(B) + beta * C): bit-identical to the plain GEMM followed by
 * the function, since the function sees the finished value of each element and computes it with
 * the very formula of the activation's op (ops/activation.h, shared with ops/activation.c).
 * The epilogue is an activation (onyx_act: kind ONYX_FUSE_* and its parameters, passed by
 * value): Relu, LeakyRelu, Sigmoid, Tanh, Gelu (both forms), HardSigmoid, HardSwish, Clip;
 * ONYX_FUSE_NONE applies nothing. ONYX_GEMM_EPI_NONE and ONYX_GEMM_EPI_RELU are the two
 * parameterless ones, for convenience.
 * A bias row (a Gemm's C of shape [N] or [1,N] with beta 1, or the bias of an Add after a
 * MatMul) goes in the same pass: C = epi((alpha * op(A) * op(B) + beta * C) + bias[j]), bias[j]
 * added to the finished element as one float addition, as the Add node does. This saves
 * copying the bias into C and reloading C in the K loop.
 */
typedef onyx_act onyx_gemm_epilogue;
#define ONYX_GEMM_EPI_NONE ((onyx_gemm_epilogue){ONYX_FUSE_NONE, 0.0f, 0.0f})
#define ONYX_GEMM_EPI_RELU ((onyx_gemm_epilogue){ONYX_FUSE_RELU, 0.0f, 0.0f})

/* The GEMM with the best path, bias row `bias` (N floats added to every row, NULL for none) and
 * epilogue epi. op(B) comes from `packed` (as for onyx_gemm_f32_packed, with AUTO's isa) when it is not NULL, else from B (trans_b, ldb). When
 * both are given (a constant weight and its packed copy), products of M <= 8 rows read B: the
 * small-M path is faster there, and so the results are those of the call without packed for
 * every M (for M > 8 the packed and unpacked paths sum in the same order). B may be NULL only
 * when packed is not. */
void onyx_gemm_f32_epi(onyx_pool *pool, const float *bias, onyx_gemm_epilogue epi, bool trans_a,
                       bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                       int64_t lda, const float *B, int64_t ldb, const void *packed, float beta,
                       float *C, int64_t ldc);

#endif
