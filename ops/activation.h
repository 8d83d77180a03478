/*
 * activation.h — the formulas of the activations a GEMM can apply to its result, and the
 * chunked loop that splits large element-wise work over a thread pool (issue #4). Private to
 * ops/ and the tests.
 *
 * Fused epilogues are bit-identical to running the activation's node only if both compute the
 * same float operations in the same order, with the same libm calls. So each formula below is
 * written once, as a static inline function, and used both by the activation ops' loops
 * (ops/activation.c) and by the GEMM's epilogue (ops/gemm_kernel.c, through
 * onyx_epilogue_row_f32).
 * The code is compiled without floating-point contraction (C11 mode: -ffp-contract=off), so
 * inlining into either loop cannot fuse a multiply and an add differently. The compiler may
 * still swap the operands of a commutative operation, which only matters when both are NaNs
 * of different sign or payload: the formulas avoid making such pairs from one NaN input (see
 * onyx_gelu_f32), so NaN inputs give the same NaN bits fused or not.
 */
#ifndef ONYX_ACTIVATION_H
#define ONYX_ACTIVATION_H

#include "internal.h"
#include "pool.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

/* An activation as a GEMM epilogue applies it: kind ONYX_FUSE_* (runtime/internal.h) and its
 * parameters, as listed there. */
typedef struct onyx_act {
    int kind;
    float alpha;
    float beta;
} onyx_act;

#define ONYX_ACT_SQRT1_2   0.70710678118654752440 /* 1/sqrt(2) */
#define ONYX_ACT_SQRT_2_PI 0.79788456080286535588 /* sqrt(2/pi) */

/* Relu-14: max(0, x); -0 and NaN pass through. */
static inline float onyx_relu_f32(float v)
{
    return v < 0.0f ? 0.0f : v;
}

/* LeakyRelu-16: x < 0 ? alpha x : x, computed as the ONNX reference does, max(x, 0) +
 * alpha min(x, 0): no multiply is conditional, which the compiler would refuse to speculate and
 * vectorize. */
static inline float onyx_leakyrelu_f32(float v, float alpha)
{
    return (v < 0.0f ? 0.0f : v) + alpha * (v < 0.0f ? v : 0.0f);
}

/* Sigmoid-13: 1 / (1 + exp(-x)), from exp(-|x|) so that neither tail overflows or cancels. */
static inline float onyx_sigmoid_f32(float v)
{
    float e = expf(-fabsf(v)); /* in (0, 1]: never overflows */
    float r = 1.0f / (1.0f + e);
    return v >= 0.0f ? r : e * r;
}

/* Tanh-13. */
static inline float onyx_tanh_f32(float v)
{
    return tanhf(v);
}

/* Gelu-20, approximate "none": x/2 (1 + erf(x / sqrt 2)) = x/2 erfc(-x / sqrt 2), which keeps
 * the left tail accurate. x * (-1/sqrt 2) rather than -x * (1/sqrt 2): the same value, but a NaN
 * x keeps its sign through erfc, so that the final product of two NaNs gives the same bits
 * whichever operand order the compiler picks where this is inlined. */
static inline float onyx_gelu_f32(float v)
{
    return 0.5f * v * erfcf(v * (float)-ONYX_ACT_SQRT1_2);
}

/* Gelu-20, approximate "tanh": x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
static inline float onyx_gelu_tanh_f32(float v)
{
    return 0.5f * v * (1.0f + tanhf((float)ONYX_ACT_SQRT_2_PI * (v + 0.044715f * v * v * v)));
}

/* min(max(t, 0), 1), keeping NaN. */
static inline float onyx_clamp01_f32(float t)
{
    t = t < 0.0f ? 0.0f : t;
    return t > 1.0f ? 1.0f : t;
}

/* HardSigmoid-6: max(0, min(1, alpha x + beta)). */
static inline float onyx_hardsigmoid_f32(float v, float alpha, float beta)
{
    return onyx_clamp01_f32(alpha * v + beta);
}

/* HardSwish-14: x max(0, min(1, x/6 + 1/2)). */
static inline float onyx_hardswish_f32(float v)
{
    return v * onyx_clamp01_f32((1.0f / 6.0f) * v + 0.5f);
}

/* Clip-13: min(max(x, lo), hi). lo > hi gives hi, as the spec says; NaN stays NaN. */
static inline float onyx_clip_f32(float v, float lo, float hi)
{
    v = v < lo ? lo : v;
    return v > hi ? hi : v;
}

/* Whether an activation (ONYX_FUSE_*) is cheap: compares, selects and a multiply-add or two,
 * no libm call (none, Relu, LeakyRelu, HardSigmoid, HardSwish, Clip). */
static inline bool onyx_act_cheap(int kind)
{
    return kind != ONYX_FUSE_SIGMOID && kind != ONYX_FUSE_TANH && kind != ONYX_FUSE_GELU &&
           kind != ONYX_FUSE_GELU_TANH;
}

/*
 * Runs STMT for every IDX (an int64_t it declares) in [0, N), in any order: in blocks of 8
 * whose inner loop has a fixed trip count, then one by one. GCC's vectorizer at -O2 (cost model
 * "very cheap") only takes loops that need no run-time alias check and no scalar epilogue: the
 * blocks qualify when the pointers are restrict parameters, a plain loop over N does not. The
 * vector code computes each element with the same IEEE operations as the scalar code (compares
 * and selects, one addition or multiplication at a time), so the results are the same bits.
 */
#define ONYX_VEC_FOR(IDX, N, STMT)                                                                 \
    do {                                                                                           \
        const int64_t onyx_n_ = (N);                                                               \
        int64_t onyx_b_ = 0;                                                                       \
        for (; onyx_b_ + 8 <= onyx_n_; onyx_b_ += 8)                                               \
            for (int onyx_k_ = 0; onyx_k_ < 8; onyx_k_++) {                                        \
                const int64_t IDX = onyx_b_ + onyx_k_;                                             \
                STMT;                                                                              \
            }                                                                                      \
        for (int64_t IDX = onyx_b_; IDX < onyx_n_; IDX++) {                                        \
            STMT;                                                                                  \
        }                                                                                          \
    } while (0)

/*
 * The GEMM epilogue on one row of a finished tile: r[j] = act(r[j] + bias[j]) for j < n. bias
 * NULL: no bias; kind ONYX_FUSE_NONE: no activation. The bias is one float addition, what an
 * Add node (or Gemm's C) computes; the activation is its op's own formula. One loop per kind,
 * so that the simple ones vectorize (ONYX_VEC_FOR); bias and Relu, the common Linear + Relu, in
 * a single one.
 */
static inline void onyx_epilogue_row_f32(const onyx_act *a, const float *restrict bias,
                                         float *restrict r, int64_t n)
{
    const float alpha = a->alpha;
    const float beta = a->beta;
    if (bias != NULL && a->kind == ONYX_FUSE_RELU) {
        ONYX_VEC_FOR(j, n, r[j] = onyx_relu_f32(r[j] + bias[j]));
        return;
    }
    if (bias != NULL)
        ONYX_VEC_FOR(j, n, r[j] += bias[j]);
    switch (a->kind) {
    case ONYX_FUSE_RELU: ONYX_VEC_FOR(j, n, r[j] = onyx_relu_f32(r[j])); break;
    case ONYX_FUSE_LEAKYRELU: ONYX_VEC_FOR(j, n, r[j] = onyx_leakyrelu_f32(r[j], alpha)); break;
    case ONYX_FUSE_SIGMOID: ONYX_VEC_FOR(j, n, r[j] = onyx_sigmoid_f32(r[j])); break;
    case ONYX_FUSE_TANH: ONYX_VEC_FOR(j, n, r[j] = onyx_tanh_f32(r[j])); break;
    case ONYX_FUSE_GELU: ONYX_VEC_FOR(j, n, r[j] = onyx_gelu_f32(r[j])); break;
    case ONYX_FUSE_GELU_TANH: ONYX_VEC_FOR(j, n, r[j] = onyx_gelu_tanh_f32(r[j])); break;
    case ONYX_FUSE_HARDSIGMOID:
        ONYX_VEC_FOR(j, n, r[j] = onyx_hardsigmoid_f32(r[j], alpha, beta));
        break;
    case ONYX_FUSE_HARDSWISH: ONYX_VEC_FOR(j, n, r[j] = onyx_hardswish_f32(r[j])); break;
    case ONYX_FUSE_CLIP: ONYX_VEC_FOR(j, n, r[j] = onyx_clip_f32(r[j], alpha, beta)); break;
    default: break;
    }
}

#endif
