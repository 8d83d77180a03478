/* ops.h — declarations of every op implementation listed in ops/ops.def. */
#ifndef ONYX_OPS_H
#define ONYX_OPS_H

#include "internal.h"

/* Repeated extern declarations of the same object are allowed in C, so impls shared by several
 * ops need no special casing here. */
#define OP(domain, op_type, since, until, impl) extern const onyx_op_impl onyx_impl_##impl;
#include "ops.def"
#undef OP

/*
 * Plain SGD fused into a Gemm's weight-gradient GEMM (runtime/train.c): instead of writing dB and
 * then B -= lr * dB in a pass over both, the GEMM computes B += (-lr) * dB in its epilogue, with
 * the same bits when the whole sum is one K slice. For node n whose input B is the weight, in
 * and out the forward's tensors, dy the gradient of its output:
 *  fusable: n is a Gemm with alpha 1;
 *  ready:   this step's product is one K slice and dB is surely finite (from max|A| and max|dY|,
 *           so that a step with a non-finite gradient is still refused before any update);
 *  step:    B += -lr * dB;  weight_grad: db = dB (the unfused gradient, when not ready).
 */
bool onyx_gemm_sgd_fusable(const onyx_node *n);
bool onyx_gemm_sgd_ready(const onyx_node *n, const onyx_tensor *in, const onyx_tensor *out,
                         const float *dy);
void onyx_gemm_sgd_step(const onyx_node *n, struct onyx_pool *pool, const onyx_tensor *in,
                        const onyx_tensor *out, const float *dy, float lr, float *b);
void onyx_gemm_weight_grad(const onyx_node *n, struct onyx_pool *pool, const onyx_tensor *in,
                           const onyx_tensor *out, const float *dy, float *db);

#endif
