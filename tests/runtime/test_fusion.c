/*
 * test_fusion.c — pre-packed constant weights and the fused Gemm/MatMul + Relu of inference
 * sessions (runtime/session.c, runtime/plan.c, ops/gemm.c).
 *
 * The model (embedded below, made with onnx.helper):
 *   x [batch, 6] -> fc0 Gemm(W0 [6,10], b0 [10]) -> h0 -> act0 Relu -> r0
 *                -> fc1 Gemm(W1 [7,10], b1 [7], transB=1, alpha=0.7) -> h1 -> act1 Relu -> r1
 *                -> mm2 MatMul(W2 [7,9]) -> h2 -> act2 Relu -> r2
 *                -> fc3 Gemm(W3 [9,4], b3 [1,4]) -> h3 -> act3 Relu -> y   (output)
 *                                                     -> sig3 Sigmoid -> s3 (output)
 * fc0, fc1 and mm2 fuse with their Relu; fc3 does not (h3 has two readers). Every weight is
 * packed. An inference session must give bit for bit what a session that keeps every value
 * (onyx_session_forward: nothing packed or fused) gives, and what a training session gives, at
 * batch sizes on both sides of the small-M path; and stay right when an intermediate value is
 * asked for by name, when a Relu output is bound zero-copy, and when a packed weight is bound
 * to other data afterwards. A double-precision forward written here from the spec checks them
 * all. Gemm's bias rows (b0 [10], b1 [7], b3 [1,4]) are added by the GEMM's epilogue: a
 * pre-activation asked for by name must be the product, then + bias as one float addition.
 *
 * Then models written here (tests/pb_write.h) check the other fused epilogues: every activation
 * a GEMM applies (LeakyRelu, Sigmoid, Tanh, Gelu both ways, HardSigmoid, HardSwish, Clip with
 * constant, omitted, legacy and run-time bounds) after MatMul, after MatMul + Add of a bias row
 * (either operand order, [N] or [1,N]) and after Gemm; MatMul + Add alone; MatMul with batch
 * dims (folded into rows, and batched B). Each fused run must give bit for bit what the
 * unfused run gives (onyx_session_forward, and a run asking for the intermediate by name), at M
 * = 1, 7, 64, 65, 300 and N not a multiple of 32, with -0.0, NaN and huge values in the input,
 * on 1 and 2 threads; s->fusion and the shared blocks of the fused-away values prove the
 * fusion happened; and chains that must not fuse (bias not constant, not a row, an intermediate
 * read twice or a graph output) do not. (Sessions apply Sigmoid, Tanh and Gelu in a pass over
 * the GEMM's finished output, the others tile by tile: both are checked here; the GEMM's tile
 * epilogue with every activation is checked on its own, against the plain GEMM.)
 */
#include "activation.h"
#include "check.h"
#include "gemm.h"
#include "gemm_kernel.h"
#include "internal.h"
#include "onyx.h"
#include "pb_write.h"
#include "pool.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const unsigned char model_bytes[] = {
    0x08, 0x08, 0x12, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x5f, 0x66, 0x75, 0x73, 0x69, 0x6f, 0x6e, 0x3a,
    0xa6, 0x0b, 0x0a, 0x1a, 0x0a, 0x01, 0x78, 0x0a, 0x02, 0x57, 0x30, 0x0a, 0x02, 0x62, 0x30, 0x12,
    0x02, 0x68, 0x30, 0x1a, 0x03, 0x66, 0x63, 0x30, 0x22, 0x04, 0x47, 0x65, 0x6d, 0x6d, 0x0a, 0x14,
    0x0a, 0x02, 0x68, 0x30, 0x12, 0x02, 0x72, 0x30, 0x1a, 0x04, 0x61, 0x63, 0x74, 0x30, 0x22, 0x04,
    0x52, 0x65, 0x6c, 0x75, 0x0a, 0x3b, 0x0a, 0x02, 0x72, 0x30, 0x0a, 0x02, 0x57, 0x31, 0x0a, 0x02,
    0x62, 0x31, 0x12, 0x02, 0x68, 0x31, 0x1a, 0x03, 0x66, 0x63, 0x31, 0x22, 0x04, 0x47, 0x65, 0x6d,
    0x6d, 0x2a, 0x0f, 0x0a, 0x05, 0x61, 0x6c, 0x70, 0x68, 0x61, 0x15, 0x33, 0x33, 0x33, 0x3f, 0xa0,
    0x01, 0x01, 0x2a, 0x0d, 0x0a, 0x06, 0x74, 0x72, 0x61, 0x6e, 0x73, 0x42, 0x18, 0x01, 0xa0, 0x01,
    0x02, 0x0a, 0x14, 0x0a, 0x02, 0x68, 0x31, 0x12, 0x02, 0x72, 0x31, 0x1a, 0x04, 0x61, 0x63, 0x74,
    0x31, 0x22, 0x04, 0x52, 0x65, 0x6c, 0x75, 0x0a, 0x19, 0x0a, 0x02, 0x72, 0x31, 0x0a, 0x02, 0x57,
    0x32, 0x12, 0x02, 0x68, 0x32, 0x1a, 0x03, 0x6d, 0x6d, 0x32, 0x22, 0x06, 0x4d, 0x61, 0x74, 0x4d,
    0x75, 0x6c, 0x0a, 0x14, 0x0a, 0x02, 0x68, 0x32, 0x12, 0x02, 0x72, 0x32, 0x1a, 0x04, 0x61, 0x63,
    0x74, 0x32, 0x22, 0x04, 0x52, 0x65, 0x6c, 0x75, 0x0a, 0x1b, 0x0a, 0x02, 0x72, 0x32, 0x0a, 0x02,
    0x57, 0x33, 0x0a, 0x02, 0x62, 0x33, 0x12, 0x02, 0x68, 0x33, 0x1a, 0x03, 0x66, 0x63, 0x33, 0x22,
    0x04, 0x47, 0x65, 0x6d, 0x6d, 0x0a, 0x13, 0x0a, 0x02, 0x68, 0x33, 0x12, 0x01, 0x79, 0x1a, 0x04,
    0x61, 0x63, 0x74, 0x33, 0x22, 0x04, 0x52, 0x65, 0x6c, 0x75, 0x0a, 0x17, 0x0a, 0x02, 0x68, 0x33,
    0x12, 0x02, 0x73, 0x33, 0x1a, 0x04, 0x73, 0x69, 0x67, 0x33, 0x22, 0x07, 0x53, 0x69, 0x67, 0x6d,
    0x6f, 0x69, 0x64, 0x12, 0x06, 0x66, 0x75, 0x73, 0x69, 0x6f, 0x6e, 0x2a, 0xfd, 0x01, 0x08, 0x06,
    0x08, 0x0a, 0x10, 0x01, 0x42, 0x02, 0x57, 0x30, 0x4a, 0xf0, 0x01, 0xe9, 0x56, 0x0e, 0xbf, 0xa0,
    0xd0, 0x3d, 0x3f, 0xe8, 0x28, 0x16, 0xbf, 0x2b, 0x54, 0x56, 0x3f, 0xff, 0xde, 0xbd, 0xbc, 0xf7,
    0xd9, 0x64, 0x3e, 0x13, 0x25, 0x08, 0x3f, 0x52, 0xe1, 0x16, 0x3d, 0x88, 0x13, 0xd0, 0xbe, 0x01,
    0xe3, 0x1f, 0xbf, 0x15, 0xa9, 0x56, 0xbf, 0xb1, 0x29, 0xf4, 0x3e, 0xbe, 0x65, 0xf0, 0xbd, 0x02,
    0xf2, 0x2e, 0xbf, 0x1b, 0x87, 0x42, 0x3f, 0xe1, 0x55, 0xe7, 0xbe, 0x8d, 0xa5, 0x2f, 0xbe, 0x6c,
    0xd0, 0xd0, 0xbe, 0xfa, 0xe0, 0x83, 0x3e, 0x01, 0x82, 0x23, 0x3e, 0xae, 0xa7, 0x4c, 0x3e, 0x1d,
    0xcd, 0xef, 0xbe, 0x4e, 0x7b, 0xdc, 0xbe, 0x60, 0x53, 0xfc, 0xbe, 0x14, 0x93, 0xb0, 0xbe, 0x19,
    0x30, 0x36, 0xbf, 0xcb, 0x34, 0x2b, 0xbf, 0x4d, 0x88, 0x6d, 0x3f, 0xd6, 0xa2, 0x6b, 0x3f, 0x1d,
    0x88, 0x1f, 0xbf, 0x17, 0x8e, 0x73, 0xbf, 0x7f, 0x44, 0x17, 0xbf, 0xce, 0xa3, 0xcc, 0x3e, 0x89,
    0x1c, 0x0f, 0x3f, 0x1d, 0x42, 0x74, 0xbf, 0xb4, 0x0d, 0x1f, 0x3e, 0xc2, 0x28, 0x7f, 0xbf, 0xd7,
    0x80, 0xfd, 0x3c, 0x77, 0x26, 0x8f, 0x3e, 0xc3, 0xa3, 0x78, 0x3f, 0x1f, 0xaf, 0xf6, 0xbe, 0xdf,
    0xe0, 0x1a, 0x3f, 0xf6, 0xaf, 0x3d, 0x3f, 0xa3, 0x72, 0x58, 0x3f, 0xc7, 0xdd, 0x7e, 0xbf, 0x86,
    0xf3, 0x79, 0xbd, 0x12, 0x83, 0x76, 0x3f, 0x07, 0xf6, 0x4e, 0xbe, 0x8b, 0xa1, 0x20, 0x3f, 0x2b,
    0x49, 0xbe, 0x3d, 0x63, 0xad, 0x0a, 0x3f, 0xa7, 0xe3, 0xf6, 0xbc, 0x4a, 0x18, 0x71, 0xbf, 0xe8,
    0xb2, 0x53, 0xbf, 0x87, 0xef, 0x46, 0xbf, 0x9a, 0xb9, 0xfe, 0xbe, 0x61, 0x09, 0x6e, 0x3f, 0xae,
    0xed, 0x86, 0x3e, 0x49, 0x21, 0x22, 0x3f, 0xff, 0x55, 0x07, 0x3e, 0x2a, 0x32, 0x08, 0x0a, 0x10,
    0x01, 0x42, 0x02, 0x62, 0x30, 0x4a, 0x28, 0xd1, 0x9a, 0x8a, 0x3e, 0xac, 0xb1, 0x1f, 0x3f, 0x25,
    0x76, 0x5a, 0x3f, 0xd1, 0x43, 0x53, 0x3f, 0x97, 0x4d, 0x26, 0x3f, 0xa9, 0xc4, 0x4f, 0xbf, 0x53,
    0x49, 0x8e, 0xbe, 0xc3, 0xd1, 0x6d, 0xbf, 0x40, 0xe2, 0xbd, 0x3d, 0x05, 0xa0, 0x17, 0x3f, 0x2a,
    0xa5, 0x02, 0x08, 0x07, 0x08, 0x0a, 0x10, 0x01, 0x42, 0x02, 0x57, 0x31, 0x4a, 0x98, 0x02, 0x9c,
    0xd0, 0x65, 0xbf, 0xf1, 0x66, 0x1f, 0xbf, 0x32, 0xc0, 0x89, 0xbe, 0x4f, 0xec, 0x02, 0xbf, 0xb5,
    0x15, 0x17, 0x3f, 0x6d, 0x74, 0x97, 0xbe, 0xf3, 0x35, 0x8e, 0x3e, 0x8c, 0xc6, 0x57, 0xbc, 0xea,
    0x01, 0x2b, 0x3e, 0xd8, 0xeb, 0x60, 0x3f, 0xb0, 0x17, 0x63, 0x3f, 0x40, 0xd0, 0x46, 0xbf, 0x70,
    0xe6, 0x2f, 0x3f, 0xcc, 0xaa, 0x9d, 0xbe, 0x5e, 0x60, 0x4c, 0xbf, 0x3a, 0xc7, 0x6e, 0xbe, 0x2b,
    0xa7, 0xa9, 0x3c, 0xb4, 0x15, 0x6c, 0x3f, 0x32, 0x92, 0x83, 0xbe, 0xb7, 0xaa, 0x79, 0xbf, 0x80,
    0x2b, 0x38, 0x3f, 0x7e, 0x1c, 0x47, 0xbf, 0x51, 0x72, 0x31, 0xbd, 0x95, 0x30, 0x33, 0x3f, 0x84,
    0x77, 0xf1, 0x3c, 0xc0, 0xb1, 0xda, 0xbd, 0x0c, 0xd8, 0x19, 0x3f, 0x43, 0x8f, 0x75, 0xbf, 0x16,
    0xb9, 0x14, 0x3e, 0x82, 0x7c, 0x35, 0xbe, 0xda, 0x63, 0x78, 0x3f, 0x4d, 0x51, 0x1a, 0x3f, 0x14,
    0x5f, 0x64, 0xbf, 0xb3, 0x79, 0x1e, 0xbf, 0x75, 0xe4, 0xc2, 0xbd, 0x0c, 0xd0, 0xcf, 0x3e, 0x92,
    0xfb, 0xab, 0xbe, 0x91, 0x60, 0x8f, 0xbe, 0xfd, 0xca, 0x57, 0x3f, 0x42, 0x42, 0x68, 0x3f, 0x44,
    0x0f, 0x3d, 0xbe, 0x85, 0x11, 0x4c, 0x3f, 0x17, 0xd2, 0xad, 0xbe, 0x4a, 0xa3, 0x55, 0xbf, 0xcc,
    0xde, 0x5a, 0x3d, 0x64, 0xb4, 0xa4, 0x3e, 0x3d, 0x35, 0x49, 0x3f, 0x21, 0x29, 0x6e, 0x3f, 0x9e,
    0x34, 0x0a, 0x3f, 0xa4, 0xa8, 0x04, 0x3f, 0x19, 0x17, 0xd7, 0x3e, 0xde, 0x63, 0xce, 0x3e, 0xa9,
    0xdf, 0x08, 0x3f, 0xef, 0xdd, 0x72, 0x3f, 0xfb, 0x50, 0x81, 0xbe, 0xe3, 0x79, 0x55, 0xbf, 0xd9,
    0x4d, 0x05, 0xbf, 0xd0, 0x99, 0x0e, 0xbf, 0x7f, 0xac, 0x8b, 0xbe, 0x82, 0xe1, 0x1e, 0x3f, 0x13,
    0x3b, 0x61, 0xbf, 0xb3, 0xd9, 0xcd, 0xbd, 0xe3, 0x57, 0x20, 0x3f, 0x7f, 0x6b, 0xf1, 0xbe, 0xe8,
    0x89, 0x5f, 0xbf, 0x77, 0x0a, 0x04, 0xbf, 0xa5, 0x71, 0x54, 0xbf, 0x01, 0x95, 0x1d, 0x3f, 0xfb,
    0xd4, 0x28, 0xbf, 0xca, 0xfb, 0x1b, 0xbf, 0x2a, 0x26, 0x08, 0x07, 0x10, 0x01, 0x42, 0x02, 0x62,
    0x31, 0x4a, 0x1c, 0xc2, 0x18, 0x21, 0x3f, 0xbf, 0xdd, 0x1e, 0x3f, 0xa7, 0x09, 0x37, 0x3e, 0x0f,
    0x58, 0x54, 0x3f, 0x0f, 0x5f, 0x61, 0xbf, 0x0a, 0x14, 0x6e, 0x3f, 0x74, 0x5b, 0x11, 0x3e, 0x2a,
    0x89, 0x02, 0x08, 0x07, 0x08, 0x09, 0x10, 0x01, 0x42, 0x02, 0x57, 0x32, 0x4a, 0xfc, 0x01, 0xb1,
    0x38, 0xca, 0xbe, 0xea, 0xc2, 0x26, 0x3f, 0x49, 0x3e, 0xa3, 0x3e, 0xb8, 0x16, 0x79, 0x3f, 0x22,
    0xf7, 0x48, 0xbf, 0x9d, 0xb8, 0x25, 0x3e, 0x7d, 0x97, 0x5e, 0xbd, 0xdf, 0xec, 0x9b, 0x3e, 0x0d,
    0x2b, 0x04, 0xbf, 0xb8, 0x0f, 0x70, 0xbf, 0xfc, 0x2c, 0xb5, 0x3d, 0x6a, 0x89, 0x8a, 0xbe, 0xe8,
    0xdf, 0x48, 0x3f, 0x3c, 0x85, 0xa6, 0xbd, 0xae, 0x98, 0x26, 0xbe, 0x64, 0x18, 0x88, 0x3e, 0x25,
    0xa6, 0x5e, 0x3d, 0xde, 0x23, 0x6c, 0x3f, 0x22, 0xf9, 0x13, 0x3f, 0x28, 0x90, 0xd8, 0xbb, 0x54,
    0xe5, 0x13, 0xbf, 0xa3, 0xf5, 0x54, 0x3e, 0xa8, 0x8a, 0xfe, 0x3e, 0x96, 0x00, 0x03, 0x3f, 0x8f,
    0xac, 0x7c, 0x3f, 0x0f, 0x21, 0x10, 0xbf, 0x74, 0x4b, 0x18, 0xbe, 0xbd, 0xf4, 0x1b, 0xbe, 0xc0,
    0xb4, 0xb9, 0xbe, 0x24, 0xe6, 0x89, 0xbe, 0x6d, 0xb4, 0x34, 0xbd, 0xfe, 0x66, 0xac, 0x3d, 0x7b,
    0x67, 0xf0, 0xbe, 0xad, 0x34, 0x3b, 0xbf, 0x5f, 0xde, 0xca, 0xbe, 0x48, 0x1f, 0x3a, 0xbf, 0xcc,
    0xac, 0xba, 0xbe, 0xaa, 0x7b, 0xb7, 0x3e, 0xf4, 0x8b, 0x4f, 0x3e, 0x56, 0x94, 0x7e, 0x3f, 0x94,
    0x81, 0xf9, 0x3d, 0x1f, 0x95, 0xc7, 0x3d, 0x14, 0xc4, 0x91, 0x3e, 0x79, 0x3b, 0xe8, 0x3e, 0xa6,
    0x2f, 0x6d, 0x3e, 0x86, 0x3f, 0x35, 0x3e, 0x80, 0x0c, 0x57, 0x3e, 0x1f, 0xb3, 0x94, 0xbe, 0x03,
    0x05, 0x0e, 0x3f, 0x43, 0x3a, 0x56, 0x3e, 0x02, 0x59, 0xc3, 0xbe, 0xa7, 0x3c, 0x02, 0xbf, 0x06,
    0x83, 0x5b, 0xbf, 0xe3, 0xec, 0x9b, 0xbe, 0xfa, 0x6b, 0x79, 0xbf, 0xff, 0x30, 0x2b, 0xbf, 0xa7,
    0x17, 0x61, 0xbf, 0x17, 0x2b, 0xe3, 0xbe, 0xdc, 0x4e, 0x9b, 0xbe, 0xc3, 0xd2, 0x3a, 0x3e, 0x85,
    0xce, 0x0c, 0x3f, 0x45, 0x7f, 0x7f, 0x3e, 0x4d, 0x3e, 0x2e, 0xbf, 0x2a, 0x9d, 0x01, 0x08, 0x09,
    0x08, 0x04, 0x10, 0x01, 0x42, 0x02, 0x57, 0x33, 0x4a, 0x90, 0x01, 0x42, 0x9b, 0x49, 0x3f, 0x1e,
    0x20, 0xec, 0x3e, 0x6c, 0x46, 0x92, 0xbb, 0x6c, 0x16, 0x93, 0x3e, 0x6d, 0x3d, 0x9b, 0x3c, 0x9f,
    0xe0, 0x29, 0xbf, 0x24, 0xdc, 0x90, 0x3e, 0x20, 0xf1, 0x79, 0x3f, 0x9c, 0x68, 0x0a, 0x3f, 0xe5,
    0x14, 0x23, 0xbf, 0xa3, 0xad, 0x42, 0xbf, 0xc4, 0x55, 0x5c, 0x3f, 0x4a, 0xf8, 0x51, 0x3f, 0x43,
    0x2a, 0xff, 0x3e, 0x64, 0x64, 0x05, 0x3f, 0xfc, 0xd8, 0x36, 0xbf, 0x26, 0xb7, 0x1f, 0x3f, 0x91,
    0x8d, 0x1d, 0xbf, 0x40, 0xc5, 0x30, 0xbf, 0x63, 0x4d, 0x3e, 0xbe, 0xd0, 0xcd, 0x7f, 0xbf, 0xb6,
    0xe7, 0x30, 0x3f, 0x0c, 0x80, 0x2d, 0xbf, 0x25, 0xfe, 0xf4, 0x3e, 0x25, 0xcd, 0x29, 0x3e, 0x85,
    0x5f, 0x0a, 0x3f, 0x38, 0xc9, 0x4c, 0x3e, 0x77, 0x45, 0x6c, 0x3f, 0xbf, 0x36, 0x76, 0xbe, 0x01,
    0xee, 0xc3, 0xbb, 0x8e, 0x8a, 0xa5, 0xbe, 0xa6, 0x93, 0xf8, 0x3e, 0xd0, 0x4a, 0xcc, 0xbe, 0x84,
    0xfa, 0x18, 0x3f, 0x64, 0xfe, 0x53, 0xbf, 0x18, 0x57, 0x07, 0xbf, 0x2a, 0x1c, 0x08, 0x01, 0x08,
    0x04, 0x10, 0x01, 0x42, 0x02, 0x62, 0x33, 0x4a, 0x10, 0x9e, 0x42, 0xfd, 0xbd, 0xeb, 0x76, 0x3f,
    0xbf, 0x31, 0x0c, 0x18, 0xbf, 0xb1, 0xde, 0x2e, 0x3f, 0x5a, 0x18, 0x0a, 0x01, 0x78, 0x12, 0x13,
    0x0a, 0x11, 0x08, 0x01, 0x12, 0x0d, 0x0a, 0x07, 0x12, 0x05, 0x62, 0x61, 0x74, 0x63, 0x68, 0x0a,
    0x02, 0x08, 0x06, 0x62, 0x18, 0x0a, 0x01, 0x79, 0x12, 0x13, 0x0a, 0x11, 0x08, 0x01, 0x12, 0x0d,
    0x0a, 0x07, 0x12, 0x05, 0x62, 0x61, 0x74, 0x63, 0x68, 0x0a, 0x02, 0x08, 0x04, 0x62, 0x19, 0x0a,
    0x02, 0x73, 0x33, 0x12, 0x13, 0x0a, 0x11, 0x08, 0x01, 0x12, 0x0d, 0x0a, 0x07, 0x12, 0x05, 0x62,
    0x61, 0x74, 0x63, 0x68, 0x0a, 0x02, 0x08, 0x04, 0x42, 0x04, 0x0a, 0x00, 0x10, 0x0d,
};

#define IN   6
#define MAXB 64

static const float *init_data(const onyx_model *m, const char *name)
{
    int v = onyx_model_find_value(m, name);
    CHECK(v >= 0);
    return v >= 0 ? m->values[v].info.data : NULL;
}

/* The spec's formulas in double: Gemm Y = alpha A op(B) + beta C, MatMul, Relu, Sigmoid. w1 is
 * fc1's weight (the model's, or a replacement bound to it). */
static void ref_forward(const onyx_model *m, const float *w1, const float *x, int64_t batch,
                        double *y, double *s3)
{
    const float *w0 = init_data(m, "W0");
    const float *b0 = init_data(m, "b0");
    const float *b1 = init_data(m, "b1");
    const float *w2 = init_data(m, "W2");
    const float *w3 = init_data(m, "W3");
    const float *b3 = init_data(m, "b3");
    for (int64_t i = 0; i < batch; i++) {
        double r0[10];
        double r1[7];
        double r2[9];
        for (int j = 0; j < 10; j++) {
            double s = b0[j];
            for (int k = 0; k < IN; k++)
                s += (double)x[i * IN + k] * w0[k * 10 + j];
            r0[j] = s > 0 ? s : 0;
        }
        for (int j = 0; j < 7; j++) {
            double s = 0;
            for (int k = 0; k < 10; k++)
                s += r0[k] * w1[j * 10 + k]; /* transB */
            s = 0.7 * s + b1[j];
            r1[j] = s > 0 ? s : 0;
        }
        for (int j = 0; j < 9; j++) {
            double s = 0;
            for (int k = 0; k < 7; k++)
                s += r1[k] * w2[k * 9 + j];
            r2[j] = s > 0 ? s : 0;
        }
        for (int j = 0; j < 4; j++) {
            double s = b3[j];
            for (int k = 0; k < 9; k++)
                s += r2[k] * w3[k * 4 + j];
            y[i * 4 + j] = s > 0 ? s : 0;
            s3[i * 4 + j] = 1.0 / (1.0 + exp(-s));
        }
    }
}

static void fill(float *x, int64_t n, int seed)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)(((i * 37 + seed * 11) % 29) - 14) * 0.09f;
}

static bool same_bits(const onyx_tensor *a, const onyx_tensor *b)
{
    return a->dtype == b->dtype && a->rank == b->rank &&
           memcmp(a->dims, b->dims, sizeof(int64_t) * (size_t)a->rank) == 0 &&
           memcmp(a->data, b->data, onyx_nbytes(a)) == 0;
}

static bool near_ref(const onyx_tensor *t, const double *ref)
{
    const float *p = t->data;
    for (int64_t i = 0; i < onyx_numel(t); i++)
        if (fabs(p[i] - ref[i]) > 1e-5 * (1 + fabs(ref[i]))) {
            fprintf(stderr, "element %lld: %.9g, expected %.9g\n", (long long)i, p[i], ref[i]);
            return false;
        }
    return true;
}

static int node_index(const onyx_model *m, const char *name)
{
    for (int i = 0; i < m->n_nodes; i++)
        if (strcmp(m->nodes[i].name, name) == 0)
            return i;
    CHECK(!"no such node");
    return 0;
}

static int value(const onyx_model *m, const char *name)
{
    int v = onyx_model_find_value(m, name);
    CHECK(v >= 0);
    return v < 0 ? 0 : v;
}

/* Runs an inference session on x: y and s3 (session memory). */
static onyx_status run(onyx_session *s, const float *x, int64_t batch, onyx_tensor out[2])
{
    onyx_tensor in = {ONYX_DTYPE_F32, 2, {batch, IN}, (void *)x};
    const char *names[] = {"x"};
    memset(out, 0, 2 * sizeof(*out));
    return onyx_session_run(s, 1, names, &in, 2, NULL, out);
}

/* The same through onyx_session_forward (every value kept; nothing packed or fused). */
static onyx_status run_keep(onyx_session *s, const float *x, int64_t batch, onyx_tensor out[2])
{
    onyx_tensor in = {ONYX_DTYPE_F32, 2, {batch, IN}, (void *)x};
    const char *names[] = {"x"};
    onyx_status st = onyx_session_forward(s, 1, names, &in);
    out[0] = s->vals[value(s->m, "y")];
    out[1] = s->vals[value(s->m, "s3")];
    return st;
}

/* ---- models written here: the other epilogues ---------------------------------------------- */

typedef th_pb pb;

/* One attribute: type 'f' (float), 'i' (int) or 's' (string); name NULL ends a list. */
typedef struct attr {
    const char *name;
    char type;
    float f;
    int64_t i;
    const char *s;
} attr;

/* A NodeProto named name: op(ins) -> outs ("a,b" lists; "" an omitted input), attributes. */
static void add_node(pb *g, const char *name, const char *op, const char *ins, const char *outs,
                     const attr *attrs)
{
    pb n = {0};
    char buf[128];
    const char *lists[2] = {ins, outs};
    for (int k = 0; k < 2; k++) {
        snprintf(buf, sizeof buf, "%s", lists[k]);
        for (char *t = buf; t != NULL;) {
            char *c = strchr(t, ',');
            if (c)
                *c = '\0';
            th_pb_str(&n, k + 1, t);
            t = c ? c + 1 : NULL;
        }
    }
    th_pb_str(&n, 3, name);
    th_pb_str(&n, 4, op);
    for (const attr *a = attrs; a != NULL && a->name != NULL; a++) {
        pb at = {0};
        th_pb_str(&at, 1, a->name);
        if (a->type == 'f') {
            th_pb_varint(&at, (2 << 3) | 5); /* f: fixed32 */
            uint32_t bits;
            memcpy(&bits, &a->f, 4);
            unsigned char le[4] = {(unsigned char)bits, (unsigned char)(bits >> 8),
                                   (unsigned char)(bits >> 16), (unsigned char)(bits >> 24)};
            th_pb_raw(&at, le, 4);
            th_pb_int(&at, 20, 1); /* FLOAT */
        } else if (a->type == 'i') {
            th_pb_int(&at, 3, a->i);
            th_pb_int(&at, 20, 2); /* INT */
        } else {
            th_pb_bytes(&at, 4, a->s, strlen(a->s));
            th_pb_int(&at, 20, 3); /* STRING */
        }
        th_pb_msg(&n, 5, &at);
    }
    th_pb_msg(g, 1, &n);
}

static void add_init(pb *g, const char *name, int rank, const int64_t *dims, const float *data)
{
    int64_t n = 1;
    for (int i = 0; i < rank; i++)
        n *= dims[i];
    th_pb_initializer(g, name, 1, rank, dims, data, (size_t)n * sizeof(float));
}

/* Deterministic values in [-2, 2). */
static void fill_rand(float *p, int64_t n, uint64_t *state)
{
    for (int64_t i = 0; i < n; i++) {
        *state = *state * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = (float)((double)(*state >> 40) / (double)(1ull << 24) * 4.0 - 2.0);
    }
}

/* x with the awkward values: a row of -0.0 (row 1), a NaN (row 2), huge values (row 3, whose
 * products overflow to infinities), -0.0 sprinkled elsewhere. */
static void fill_input(float *x, int64_t rows, int64_t k, uint64_t seed)
{
    uint64_t st = seed;
    fill_rand(x, rows * k, &st);
    for (int64_t i = 0; i < rows * k; i += 11)
        x[i] = -0.0f;
    if (rows > 1)
        for (int64_t j = 0; j < k; j++)
            x[k + j] = -0.0f;
    if (rows > 2)
        x[2 * k + k / 2] = NAN;
    if (rows > 3) {
        x[3 * k] = 3e38f;
        x[3 * k + 1] = -3e38f;
        x[3 * k + 2] = 1e30f;
    }
}

/* An activation as a test case: its node's op, attributes and extra inputs. */
typedef struct act_case {
    const char *op;
    attr attrs[3];
    const char *extra; /* Clip's ",min,max" inputs ("" if none) */
    int kind;          /* the ONYX_FUSE_* expected */
    double lo, hi;     /* Clip's bounds, for the reference */
} act_case;

static const act_case act_cases[] = {
    {.op = "Relu", .extra = "", .kind = ONYX_FUSE_RELU},
    {.op = "LeakyRelu",
     .attrs = {{"alpha", 'f', 0.1f, 0, NULL}},
     .extra = "",
     .kind = ONYX_FUSE_LEAKYRELU},
    {.op = "LeakyRelu", .extra = "", .kind = ONYX_FUSE_LEAKYRELU}, /* default alpha 0.01 */
    {.op = "Sigmoid", .extra = "", .kind = ONYX_FUSE_SIGMOID},
    {.op = "Tanh", .extra = "", .kind = ONYX_FUSE_TANH},
    {.op = "Gelu", .extra = "", .kind = ONYX_FUSE_GELU},
    {.op = "Gelu",
     .attrs = {{"approximate", 's', 0, 0, "tanh"}},
     .extra = "",
     .kind = ONYX_FUSE_GELU_TANH},
    {.op = "HardSigmoid",
     .attrs = {{"alpha", 'f', 0.3f, 0, NULL}, {"beta", 'f', 0.4f, 0, NULL}},
     .extra = "",
     .kind = ONYX_FUSE_HARDSIGMOID},
    {.op = "HardSwish", .extra = "", .kind = ONYX_FUSE_HARDSWISH},
    /* ReLU6, Hardtanh, no lower bound, min > max (max everywhere) */
    {.op = "Clip", .extra = ",zero,six", .kind = ONYX_FUSE_CLIP, .lo = 0, .hi = 6},
    {.op = "Clip", .extra = ",mone,one", .kind = ONYX_FUSE_CLIP, .lo = -1, .hi = 1},
    {.op = "Clip", .extra = ",,one", .kind = ONYX_FUSE_CLIP, .lo = -INFINITY, .hi = 1},
    {.op = "Clip", .extra = ",six,zero", .kind = ONYX_FUSE_CLIP, .lo = 6, .hi = 0},
};
#define N_ACT_CASES (sizeof act_cases / sizeof act_cases[0])

/* The chain before the activation. */
enum { CH_MATMUL, CH_MATMUL_ADD, CH_MATMUL_BIAS_FIRST, CH_MATMUL_ROW2, CH_GEMM, CH_COUNT };
static const char *const chain_names[CH_COUNT] = {"MatMul", "MatMul+Add", "MatMul+Add(b,y)",
                                                  "MatMul+Add([1,N])", "Gemm"};

/* x [N, K] -> chain -> act (or nothing: ac NULL) -> y. The chain's values: "h" (the product),
 * "z" (after the Add, CH_MATMUL_ADD*), "y" (the output). */
static onyx_model *chain_model(int chain, const act_case *ac, int64_t K, int64_t N)
{
    pb g = {0};
    uint64_t st = 99 + (uint64_t)K * 7 + (uint64_t)N;
    float *w = malloc(sizeof(float) * (size_t)(K * N));
    float *b = malloc(sizeof(float) * (size_t)N);
    fill_rand(w, K * N, &st);
    fill_rand(b, N, &st);
    b[0] = -0.0f;
    const char *pre = "h"; /* what the activation reads */
    if (chain == CH_GEMM) {
        int64_t wd[2] = {N, K};
        int64_t bd[1] = {N};
        add_init(&g, "W", 2, wd, w);
        add_init(&g, "b", 1, bd, b);
        attr tb[] = {{"transB", 'i', 0, 1, NULL}, {.name = NULL}};
        add_node(&g, "gemm", "Gemm", "x,W,b", ac ? "h" : "y", tb);
    } else {
        int64_t wd[2] = {K, N};
        add_init(&g, "W", 2, wd, w);
        add_node(&g, "mm", "MatMul", "x,W",
                 chain == CH_MATMUL && ac ? "h"
                 : chain == CH_MATMUL     ? "y"
                                          : "h",
                 NULL);
        if (chain != CH_MATMUL) {
            int64_t bd[2] = {1, N};
            bool row2 = chain == CH_MATMUL_ROW2;
            add_init(&g, "b", row2 ? 2 : 1, row2 ? bd : bd + 1, b);
            add_node(&g, "add", "Add", chain == CH_MATMUL_BIAS_FIRST ? "b,h" : "h,b",
                     ac ? "z" : "y", NULL);
            pre = "z";
        }
    }
    if (ac != NULL) {
        char ins[64];
        snprintf(ins, sizeof ins, "%s%s", pre, ac->extra);
        add_node(&g, "act", ac->op, ins, "y", ac->attrs);
        float c[4] = {0.0f, 6.0f, -1.0f, 1.0f};
        const char *cn[4] = {"zero", "six", "mone", "one"};
        for (int i = 0; i < 4; i++)
            if (strstr(ac->extra, cn[i]) != NULL)
                add_init(&g, cn[i], 0, NULL, &c[i]);
    }
    int64_t xd[2] = {-1, K};
    int64_t yd[2] = {-1, N};
    th_pb_value_info(&g, 11, "x", 1, 2, xd);
    th_pb_value_info(&g, 12, "y", 1, 2, yd);
    free(w);
    free(b);
    return th_pb_load_model(&g, 20, "chain");
}

static onyx_session *new_session(const onyx_model *m, int threads)
{
    onyx_session_options opt;
    onyx_session_options_init(&opt);
    opt.threads = threads;
    onyx_session *s = NULL;
    onyx_error err;
    CHECK_OK(onyx_session_create(m, &opt, &s, &err), err.msg);
    return s;
}

/* Runs s on x [rows, K] with output "y" and, when also is not NULL, that value too; copies y
 * into y_out (rows * N floats). */
static bool run_y(onyx_session *s, const float *x, int rank, const int64_t *dims, float *y_out,
                  size_t y_bytes, const char *also)
{
    onyx_tensor in = {ONYX_DTYPE_F32, rank, {0}, (void *)x};
    memcpy(in.dims, dims, sizeof(int64_t) * (size_t)rank);
    const char *in_names[] = {"x"};
    const char *out_names[] = {"y", also};
    onyx_tensor out[2];
    memset(out, 0, sizeof out);
    onyx_status st = onyx_session_run(s, 1, in_names, &in, also ? 2 : 1, out_names, out);
    CHECK_OK(st, onyx_session_errmsg(s));
    if (st != ONYX_OK || onyx_nbytes(&out[0]) != y_bytes)
        return false;
    memcpy(y_out, out[0].data, y_bytes);
    return true;
}

/* The same through onyx_session_forward: nothing fused. */
static bool run_y_keep(onyx_session *s, const float *x, int rank, const int64_t *dims, float *y_out,
                       size_t y_bytes)
{
    onyx_tensor in = {ONYX_DTYPE_F32, rank, {0}, (void *)x};
    memcpy(in.dims, dims, sizeof(int64_t) * (size_t)rank);
    const char *in_names[] = {"x"};
    onyx_status st = onyx_session_forward(s, 1, in_names, &in);
    CHECK_OK(st, onyx_session_errmsg(s));
    const onyx_tensor *y = &s->vals[value(s->m, "y")];
    if (st != ONYX_OK || onyx_nbytes(y) != y_bytes)
        return false;
    memcpy(y_out, y->data, y_bytes);
    return true;
}

/* The activation in double, from the spec, for a sanity check of finite results. */
static double ref_act(const act_case *ac, double v)
{
    const char *op = ac->op;
    if (strcmp(op, "Relu") == 0)
        return v > 0 ? v : 0;
    if (strcmp(op, "LeakyRelu") == 0)
        return v >= 0 ? v : (ac->attrs[0].name ? ac->attrs[0].f : 0.01) * v;
    if (strcmp(op, "Sigmoid") == 0)
        return 1.0 / (1.0 + exp(-v));
    if (strcmp(op, "Tanh") == 0)
        return tanh(v);
    if (strcmp(op, "Gelu") == 0 && ac->attrs[0].name == NULL)
        return 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
    if (strcmp(op, "Gelu") == 0)
        return 0.5 * v *
               (1.0 + tanh(sqrt(2.0 / 3.14159265358979323846) * (v + 0.044715 * v * v * v)));
    if (strcmp(op, "HardSigmoid") == 0)
        return fmax(0.0, fmin(1.0, 0.3 * v + 0.4));
    if (strcmp(op, "HardSwish") == 0)
        return v * fmax(0.0, fmin(1.0, v / 6.0 + 0.5));
    v = v < ac->lo ? ac->lo : v; /* Clip */
    return v > ac->hi ? ac->hi : v;
}

/* y against the chain computed in double (rows whose inputs are all finite and modest). */
static bool near_chain(const onyx_model *m, int chain, const act_case *ac, const float *x,
                       const float *y, int64_t rows, int64_t K, int64_t N)
{
    const float *w = init_data(m, "W");
    const float *b = chain == CH_MATMUL ? NULL : init_data(m, "b");
    for (int64_t i = 0; i < rows; i++) {
        bool finite = true;
        for (int64_t k = 0; k < K; k++)
            finite = finite && fabsf(x[i * K + k]) < 1e6f;
        if (!finite)
            continue;
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++)
                s += (double)x[i * K + k] * (chain == CH_GEMM ? w[j * K + k] : w[k * N + j]);
            if (b != NULL)
                s += b[j];
            double want = ac ? ref_act(ac, s) : s;
            double got = y[i * N + j];
            if (fabs(got - want) > 1e-4 * (1 + fabs(want))) {
                fprintf(stderr, "%s %s: row %lld col %lld: %.9g, expected %.9g\n",
                        chain_names[chain], ac ? ac->op : "-", (long long)i, (long long)j, got,
                        want);
                return false;
            }
        }
    }
    return true;
}

/* Every activation after every chain, at awkward shapes: fused (1 and 2 threads) bit for bit the
 * unfused runs, and near the double reference. */
static void test_epilogues(void)
{
    static const int64_t Ms[] = {1, 7, 64, 65, 300};
    static const int64_t KN[][2] = {{37, 45}, {19, 97}};
    int cases = 0;
    for (int chain = 0; chain < CH_COUNT; chain++) {
        for (size_t a = 0; a <= N_ACT_CASES; a++) {
            const act_case *ac = a < N_ACT_CASES ? &act_cases[a] : NULL; /* last: no act */
            if (ac == NULL && chain != CH_MATMUL_ADD && chain != CH_MATMUL_BIAS_FIRST)
                continue; /* nothing to fuse, or Gemm's own bias (tested above) */
            for (size_t kn = 0; kn < 2; kn++) {
                int64_t K = KN[kn][0];
                int64_t N = KN[kn][1];
                onyx_model *m = chain_model(chain, ac, K, N);
                if (m == NULL)
                    continue;
                onyx_session *s1 = new_session(m, 1);
                onyx_session *s2 = new_session(m, 2);
                onyx_session *keep = new_session(m, 1);
                if (!s1 || !s2 || !keep) {
                    onyx_session_destroy(s1);
                    onyx_session_destroy(s2);
                    onyx_session_destroy(keep);
                    onyx_model_destroy(m);
                    continue;
                }
                /* decided from the graph: the whole chain after the GEMM */
                int want_n = (chain == CH_MATMUL || chain == CH_GEMM ? 0 : 1) + (ac != NULL);
                CHECK(s1->fusion[0].n_fused == want_n);
                CHECK(s1->fusion[0].act == (ac != NULL));
                CHECK((s1->fusion[0].bias >= 0) == (chain != CH_MATMUL && chain != CH_GEMM));
                if (ac != NULL) {
                    float al = 0;
                    float be = 0;
                    CHECK(onyx_act_fusable(&m->nodes[m->n_nodes - 1], NULL, &al, &be) == ac->kind);
                }
                for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++) {
                    int64_t M = Ms[mi];
                    float *x = malloc(sizeof(float) * (size_t)(M * K));
                    float *y1 = malloc(sizeof(float) * (size_t)(M * N));
                    float *y2 = malloc(sizeof(float) * (size_t)(M * N));
                    float *yk = malloc(sizeof(float) * (size_t)(M * N));
                    float *yw = malloc(sizeof(float) * (size_t)(M * N));
                    size_t yb = sizeof(float) * (size_t)(M * N);
                    fill_input(x, M, K, 1000 + (uint64_t)M);
                    int64_t xd[2] = {M, K};
                    bool ok = run_y(s1, x, 2, xd, y1, yb, NULL) &&
                              run_y(s2, x, 2, xd, y2, yb, NULL) &&
                              run_y_keep(keep, x, 2, xd, yk, yb);
                    CHECK(ok);
                    if (ok) {
                        bool same = memcmp(y1, yk, yb) == 0 && memcmp(y2, yk, yb) == 0;
                        CHECK(same);
                        for (int64_t e = 0; !same && e < M * N; e++) {
                            uint32_t u1;
                            uint32_t u2;
                            uint32_t uk;
                            memcpy(&u1, &y1[e], 4);
                            memcpy(&u2, &y2[e], 4);
                            memcpy(&uk, &yk[e], 4);
                            if (u1 != uk || u2 != uk) {
                                fprintf(stderr,
                                        "%s + %s, M %lld K %lld N %lld: element %lld fused "
                                        "%08x (2 threads %08x), unfused %08x\n",
                                        chain_names[chain], ac ? ac->op : "-", (long long)M,
                                        (long long)K, (long long)N, (long long)e, u1, u2, uk);
                                break;
                            }
                        }
                        CHECK(near_chain(m, chain, ac, x, y1, M, K, N));
                        /* fused: the product (and the sum) share y's block, never written */
                        void *yd = s1->vals[value(m, "y")].data;
                        if (want_n > 0)
                            CHECK(s1->vals[value(m, "h")].data == yd);
                        if (want_n == 2)
                            CHECK(s1->vals[value(m, "z")].data == yd);
                    }
                    /* asking for the pre-activation by name: nothing fused, same bits */
                    if (ok && ac != NULL) {
                        const char *pre = chain == CH_MATMUL || chain == CH_GEMM ? "h" : "z";
                        CHECK(run_y(s1, x, 2, xd, yw, yb, pre));
                        CHECK(memcmp(yw, yk, yb) == 0);
                        CHECK(s1->vals[value(m, pre)].data != s1->vals[value(m, "y")].data);
                    }
                    cases++;
                    free(x);
                    free(y1);
                    free(y2);
                    free(yk);
                    free(yw);
                }
                onyx_session_destroy(s1);
                onyx_session_destroy(s2);
                onyx_session_destroy(keep);
                onyx_model_destroy(m);
            }
        }
    }
    printf("fused epilogues: %d model runs compared\n", cases);
}

/* Runs model m (input "x" of the given dims, output "y") fused (1 and 2 threads) and unfused,
 * which must agree bit for bit; returns the 1-thread fused session (caller destroys) for
 * checks on what fused, or NULL. */
static onyx_session *fused_vs_plain(const onyx_model *m, int rank, const int64_t *xd,
                                    int64_t y_numel, uint64_t seed)
{
    int64_t xn = 1;
    for (int i = 0; i < rank; i++)
        xn *= xd[i];
    float *x = malloc(sizeof(float) * (size_t)xn);
    float *y1 = malloc(sizeof(float) * (size_t)y_numel);
    float *y2 = malloc(sizeof(float) * (size_t)y_numel);
    float *yk = malloc(sizeof(float) * (size_t)y_numel);
    size_t yb = sizeof(float) * (size_t)y_numel;
    fill_input(x, xn / xd[rank - 1], xd[rank - 1], seed);
    onyx_session *s1 = new_session(m, 1);
    onyx_session *s2 = new_session(m, 2);
    onyx_session *keep = new_session(m, 1);
    bool ok = s1 && s2 && keep && run_y(s1, x, rank, xd, y1, yb, NULL) &&
              run_y(s2, x, rank, xd, y2, yb, NULL) && run_y_keep(keep, x, rank, xd, yk, yb);
    CHECK(ok);
    if (ok)
        CHECK(memcmp(y1, yk, yb) == 0 && memcmp(y2, yk, yb) == 0);
    onyx_session_destroy(s2);
    onyx_session_destroy(keep);
    free(x);
    free(y1);
    free(y2);
    free(yk);
    return s1;
}

/* MatMul with batch dims: A [B, M, K] with B [K, N] (one GEMM over B*M rows) and with B
 * [B, K, N] (one GEMM per item, each with the bias), bias [N] and [1,N]. */
static void test_batched(void)
{
    const int64_t Bn = 3;
    const int64_t K = 21;
    const int64_t N = 35;
    for (int batched_w = 0; batched_w < 2; batched_w++) {
        for (int row2 = 0; row2 < 2; row2++) {
            pb g = {0};
            uint64_t st = 5;
            float w[3 * 21 * 35];
            float b[35];
            fill_rand(w, Bn * K * N, &st);
            fill_rand(b, N, &st);
            int64_t wd3[3] = {Bn, K, N};
            add_init(&g, "W", batched_w ? 3 : 2, batched_w ? wd3 : wd3 + 1, w);
            int64_t bd[2] = {1, N};
            add_init(&g, "b", row2 ? 2 : 1, row2 ? bd : bd + 1, b);
            attr al[] = {{"alpha", 'f', 0.2f, 0, NULL}, {.name = NULL}};
            add_node(&g, "mm", "MatMul", "x,W", "h", NULL);
            add_node(&g, "add", "Add", "h,b", "z", NULL);
            add_node(&g, "act", "LeakyRelu", "z", "y", al);
            int64_t xd[3] = {Bn, -1, K};
            int64_t yd[3] = {Bn, -1, N};
            th_pb_value_info(&g, 11, "x", 1, 3, xd);
            th_pb_value_info(&g, 12, "y", 1, 3, yd);
            onyx_model *m = th_pb_load_model(&g, 17, "batched");
            if (m == NULL)
                continue;
            for (int64_t M = 1; M <= 70; M += 23) {
                int64_t rd[3] = {Bn, M, K};
                onyx_session *s = fused_vs_plain(m, 3, rd, Bn * M * N, (uint64_t)M);
                if (s != NULL) {
                    CHECK(s->fusion[0].n_fused == 2);
                    CHECK(s->vals[value(m, "h")].data == s->vals[value(m, "y")].data);
                }
                onyx_session_destroy(s);
            }
            onyx_model_destroy(m);
        }
    }
}

/* Chains that must not fuse (or fuse less), still computing the right thing. */
static void test_not_fused(void)
{
    const int64_t K = 9;
    const int64_t N = 40;
    float w[9 * 40];
    float b[40 * 40];
    uint64_t st = 17;
    fill_rand(w, K * N, &st);
    fill_rand(b, N * N, &st);
    int64_t wd[2] = {K, N};
    int64_t xd[2] = {-1, K};
    int64_t yd[2] = {-1, N};
    int64_t rd[2] = {40, K};
    for (int c = 0; c < 5; c++) {
        pb g = {0};
        add_init(&g, "W", 2, wd, w);
        th_pb_value_info(&g, 11, "x", 1, 2, xd);
        add_node(&g, "mm", "MatMul", "x,W", "h", NULL);
        int want_n = 0;
        if (c == 0) { /* the bias is a graph input: not constant */
            int64_t bd[1] = {N};
            th_pb_value_info(&g, 11, "b", 1, 1, bd);
            add_node(&g, "add", "Add", "h,b", "z", NULL);
            add_node(&g, "act", "Relu", "z", "y", NULL);
        } else if (c == 1) { /* a full [N, N] matrix, not a row (and M = N = 40) */
            int64_t bd[2] = {N, N};
            add_init(&g, "b", 2, bd, b);
            add_node(&g, "add", "Add", "h,b", "z", NULL);
            add_node(&g, "act", "Tanh", "z", "y", NULL);
        } else if (c == 2) { /* the sum is read twice: only the bias fuses */
            int64_t bd[1] = {N};
            add_init(&g, "b", 1, bd, b);
            add_node(&g, "add", "Add", "h,b", "z", NULL);
            add_node(&g, "act", "Sigmoid", "z", "s", NULL);
            add_node(&g, "add2", "Add", "s,z", "y", NULL);
            want_n = 1;
        } else if (c == 3) { /* the sum is a graph output: only the bias fuses */
            int64_t bd[1] = {N};
            add_init(&g, "b", 1, bd, b);
            add_node(&g, "add", "Add", "h,b", "z", NULL);
            add_node(&g, "act", "Relu", "z", "y", NULL);
            th_pb_value_info(&g, 12, "z", 1, 2, yd);
            want_n = 1;
        } else { /* a scalar bias broadcast over the row: not a row of N */
            int64_t bd[1] = {1};
            add_init(&g, "b", 1, bd, b);
            add_node(&g, "add", "Add", "h,b", "z", NULL);
            add_node(&g, "act", "Relu", "z", "y", NULL);
        }
        th_pb_value_info(&g, 12, "y", 1, 2, yd);
        onyx_model *m = th_pb_load_model(&g, 17, "not_fused");
        if (m == NULL)
            continue;
        onyx_session *s = new_session(m, 1);
        onyx_session *keep = new_session(m, 1);
        if (s == NULL || keep == NULL) {
            onyx_session_destroy(s);
            onyx_session_destroy(keep);
            onyx_model_destroy(m);
            continue;
        }
        CHECK(s->fusion[0].n_fused == want_n);
        static float x[40 * 9];
        static float y[40 * 40];
        static float yk[40 * 40];
        fill_input(x, 40, K, 3);
        onyx_tensor in[2] = {{ONYX_DTYPE_F32, 2, {40, K}, x}, {ONYX_DTYPE_F32, 1, {N}, b}};
        const char *in_names[] = {"x", "b"};
        size_t n_in = c == 0 ? 2 : 1;
        const char *out_names[] = {"y"};
        onyx_tensor out[1];
        memset(out, 0, sizeof out);
        CHECK_OK(onyx_session_run(s, n_in, in_names, in, 1, out_names, out),
                 onyx_session_errmsg(s));
        if (out[0].data != NULL)
            memcpy(y, out[0].data, sizeof y);
        CHECK_OK(onyx_session_forward(keep, n_in, in_names, in), onyx_session_errmsg(keep));
        memcpy(yk, keep->vals[value(m, "y")].data, sizeof yk);
        CHECK(memcmp(y, yk, sizeof y) == 0);
        (void)rd;
        onyx_session_destroy(s);
        onyx_session_destroy(keep);
        onyx_model_destroy(m);
    }
}

/* Clip whose min is a graph input: the epilogue reads the bounds of each run. Clip-6 (bounds
 * as attributes) after Gemm. */
static void test_clip_bounds(void)
{
    const int64_t K = 13;
    const int64_t N = 50;
    float w[13 * 50];
    float b[50];
    uint64_t st = 23;
    fill_rand(w, K * N, &st);
    fill_rand(b, N, &st);
    int64_t wd[2] = {K, N};
    int64_t bd[1] = {N};
    int64_t xd[2] = {-1, K};
    int64_t yd[2] = {-1, N};
    {
        pb g = {0};
        float hi = 0.75f;
        add_init(&g, "W", 2, wd, w);
        add_init(&g, "b", 1, bd, b);
        add_init(&g, "hi", 0, NULL, &hi);
        th_pb_value_info(&g, 11, "x", 1, 2, xd);
        th_pb_value_info(&g, 11, "lo", 1, 0, NULL);
        add_node(&g, "mm", "MatMul", "x,W", "h", NULL);
        add_node(&g, "add", "Add", "b,h", "z", NULL);
        add_node(&g, "clip", "Clip", "z,lo,hi", "y", NULL);
        th_pb_value_info(&g, 12, "y", 1, 2, yd);
        onyx_model *m = th_pb_load_model(&g, 13, "clip_input");
        onyx_session *s = m ? new_session(m, 2) : NULL;
        onyx_session *keep = m ? new_session(m, 1) : NULL;
        if (s != NULL && keep != NULL) {
            CHECK(s->fusion[0].n_fused == 2);
            static float x[65 * 13];
            fill_input(x, 65, K, 8);
            const float los[3] = {-0.5f, 0.25f, 2.0f}; /* the last one above hi */
            for (int r = 0; r < 3; r++) {
                onyx_tensor in[2] = {{ONYX_DTYPE_F32, 2, {65, K}, x},
                                     {ONYX_DTYPE_F32, 0, {0}, (void *)&los[r]}};
                const char *in_names[] = {"x", "lo"};
                onyx_tensor out[1];
                memset(out, 0, sizeof out);
                CHECK_OK(onyx_session_run(s, 2, in_names, in, 1, NULL, out),
                         onyx_session_errmsg(s));
                CHECK_OK(onyx_session_forward(keep, 2, in_names, in), onyx_session_errmsg(keep));
                const onyx_tensor *yk = &keep->vals[value(m, "y")];
                CHECK(out[0].data != NULL && same_bits(&out[0], yk));
                CHECK(s->vals[value(m, "h")].data == s->vals[value(m, "y")].data);
            }
        }
        onyx_session_destroy(s);
        onyx_session_destroy(keep);
        onyx_model_destroy(m);
    }
    {
        pb g = {0};
        int64_t wt[2] = {N, K};
        add_init(&g, "W", 2, wt, w);
        add_init(&g, "b", 1, bd, b);
        th_pb_value_info(&g, 11, "x", 1, 2, xd);
        attr ab[] = {{"broadcast", 'i', 0, 1, NULL}, {"transB", 'i', 0, 1, NULL}, {.name = NULL}};
        attr mm[] = {{"min", 'f', -0.25f, 0, NULL}, {"max", 'f', 0.5f, 0, NULL}, {.name = NULL}};
        add_node(&g, "gemm", "Gemm", "x,W,b", "h", ab);
        add_node(&g, "clip", "Clip", "h", "y", mm);
        th_pb_value_info(&g, 12, "y", 1, 2, yd);
        onyx_model *m = th_pb_load_model(&g, 6, "clip6");
        if (m != NULL) {
            int64_t rd[2] = {64, K};
            onyx_session *s = fused_vs_plain(m, 2, rd, 64 * N, 4);
            if (s != NULL) {
                CHECK(s->fusion[0].n_fused == 1);
                CHECK(s->vals[value(m, "h")].data == s->vals[value(m, "y")].data);
            }
            onyx_session_destroy(s);
            onyx_model_destroy(m);
        }
    }
}

/* The GEMM's epilogue itself (onyx_gemm_f32_epi) with every activation, bias or not, on one and
 * two threads, B packed or not: the plain GEMM, then + bias[j] and the formula of
 * ops/activation.h per element, bit for bit. (Sessions run Sigmoid, Tanh and Gelu in a pass
 * after the GEMM instead: see ops/gemm.c.) */
static void test_gemm_epilogue(void)
{
    static const onyx_act acts[] = {
        {ONYX_FUSE_NONE, 0, 0},         {ONYX_FUSE_RELU, 0, 0},
        {ONYX_FUSE_LEAKYRELU, 0.1f, 0}, {ONYX_FUSE_SIGMOID, 0, 0},
        {ONYX_FUSE_TANH, 0, 0},         {ONYX_FUSE_GELU, 0, 0},
        {ONYX_FUSE_GELU_TANH, 0, 0},    {ONYX_FUSE_HARDSIGMOID, 0.2f, 0.5f},
        {ONYX_FUSE_HARDSWISH, 0, 0},    {ONYX_FUSE_CLIP, -0.5f, 0.75f},
    };
    static const int64_t Ms[] = {1, 7, 64, 65, 300};
    const int64_t K = 29;
    const int64_t N = 45;
    onyx_pool *pool = NULL;
    CHECK(onyx_pool_create(2, &pool) == ONYX_OK);
    float *a = malloc(sizeof(float) * 300 * 29);
    float *b = malloc(sizeof(float) * 29 * 45);
    float *bias = malloc(sizeof(float) * 45);
    float *want = malloc(sizeof(float) * 300 * 45);
    float *got = malloc(sizeof(float) * 300 * 45);
    uint64_t st = 77;
    fill_input(a, 300, K, 12);
    fill_rand(b, K * N, &st);
    fill_rand(bias, N, &st);
    void *packed =
        aligned_alloc(64, (onyx_gemm_packed_size(ONYX_GEMM_ISA_AUTO, N, K) + 63) & ~(size_t)63);
    onyx_gemm_pack_b(ONYX_GEMM_ISA_AUTO, false, N, K, b, N, packed);
    int wrong = 0;
    for (size_t k = 0; k < sizeof acts / sizeof acts[0]; k++)
        for (int with_bias = 0; with_bias < 2; with_bias++)
            for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++)
                for (int variant = 0; variant < 4; variant++) {
                    int64_t M = Ms[mi];
                    onyx_pool *pl = variant & 1 ? pool : NULL;
                    const void *pk = variant & 2 ? packed : NULL;
                    onyx_gemm_f32_epi(pl, NULL, ONYX_GEMM_EPI_NONE, false, false, M, N, K, 1.0f, a,
                                      K, b, N, pk, 0.0f, want, N);
                    for (int64_t i = 0; i < M * N; i++) {
                        if (with_bias)
                            want[i] = want[i] + bias[i % N];
                        onyx_epilogue_row_f32(&acts[k], NULL, &want[i], 1);
                    }
                    memset(got, 0xA5, sizeof(float) * (size_t)(M * N));
                    onyx_gemm_f32_epi(pl, with_bias ? bias : NULL, acts[k], false, false, M, N, K,
                                      1.0f, a, K, b, N, pk, 0.0f, got, N);
                    if (memcmp(want, got, sizeof(float) * (size_t)(M * N)) != 0) {
                        wrong++;
                        fprintf(stderr, "GEMM epilogue kind %d bias %d M %lld variant %d differs\n",
                                acts[k].kind, with_bias, (long long)M, variant);
                    }
                }
    CHECK(wrong == 0);
    free(packed);
    free(a);
    free(b);
    free(bias);
    free(want);
    free(got);
    onyx_pool_destroy(pool);
}

int main(void)
{
    test_gemm_epilogue();
    test_epilogues();
    test_batched();
    test_not_fused();
    test_clip_bounds();

    onyx_error err;
    onyx_model *m = NULL;
    CHECK_OK(onyx_model_load_buffer(model_bytes, sizeof model_bytes, NULL, "fusion", &m, &err),
             err.msg);
    if (m == NULL)
        return check_report();
    onyx_session *s = NULL;    /* inference: packed and fused */
    onyx_session *keep = NULL; /* run through onyx_session_forward */
    onyx_session *tr = NULL;   /* a training session (as the trainer marks it) */
    CHECK_OK(onyx_session_create(m, NULL, &s, &err), err.msg);
    CHECK_OK(onyx_session_create(m, NULL, &keep, &err), err.msg);
    CHECK_OK(onyx_session_create(m, NULL, &tr, &err), err.msg);
    if (!s || !keep || !tr)
        return check_report();
    tr->training = true;

    int fc[4] = {node_index(m, "fc0"), node_index(m, "fc1"), node_index(m, "mm2"),
                 node_index(m, "fc3")};
    /* decided from the graph: the three Relus right after their only producer */
    CHECK(s->fusion[fc[0]].n_fused == 1 && s->fusion[fc[1]].n_fused == 1 &&
          s->fusion[fc[2]].n_fused == 1);
    CHECK(s->fusion[fc[0]].act && s->fusion[fc[0]].bias < 0);
    CHECK(s->fusion[fc[3]].n_fused == 0);

    static float x[MAXB * IN];
    static double ry[MAXB * 4];
    static double rs[MAXB * 4];
    const int64_t batches[] = {1, 5, 8, 9, 31, 64, 3};
    for (size_t k = 0; k < sizeof batches / sizeof batches[0]; k++) {
        int64_t b = batches[k];
        fill(x, b * IN, (int)k);
        onyx_tensor o[2];
        onyx_tensor ko[2];
        onyx_tensor to[2];
        CHECK_OK(run(s, x, b, o), onyx_session_errmsg(s));
        CHECK_OK(run_keep(keep, x, b, ko), onyx_session_errmsg(keep));
        CHECK_OK(run(tr, x, b, to), onyx_session_errmsg(tr));
        ref_forward(m, init_data(m, "W1"), x, b, ry, rs);
        CHECK(same_bits(&o[0], &ko[0]) && same_bits(&o[1], &ko[1]));
        CHECK(same_bits(&o[0], &to[0]) && same_bits(&o[1], &to[1]));
        CHECK(near_ref(&o[0], ry) && near_ref(&o[1], rs));
        /* fused: the Gemm's own output shares the Relu's block (never written); not fused
         * where h3 has two readers, nor in the kept run */
        CHECK(s->vals[value(m, "h0")].data == s->vals[value(m, "r0")].data);
        CHECK(s->vals[value(m, "h1")].data == s->vals[value(m, "r1")].data);
        CHECK(s->vals[value(m, "h2")].data == s->vals[value(m, "r2")].data);
        CHECK(s->vals[value(m, "h3")].data != s->vals[value(m, "y")].data);
        CHECK(keep->vals[value(m, "h0")].data != keep->vals[value(m, "r0")].data);
    }
    /* every weight packed once in the inference session; never in the others */
    CHECK(s->packed != NULL);
    if (s->packed != NULL)
        for (int i = 0; i < 4; i++)
            CHECK(s->packed[fc[i]] != NULL && s->packed_in[fc[i]] == 1);
    CHECK(keep->packed == NULL);
    CHECK(tr->packed == NULL);

    /* an intermediate value asked for by name is computed unfused: the pre-activation */
    fill(x, 16 * IN, 77);
    onyx_tensor in = {ONYX_DTYPE_F32, 2, {16, IN}, x};
    const char *in_names[] = {"x"};
    const char *want[] = {"h1", "y", "r1"};
    onyx_tensor o3[3];
    memset(o3, 0, sizeof o3);
    CHECK_OK(onyx_session_run(s, 1, in_names, &in, 3, want, o3), onyx_session_errmsg(s));
    onyx_tensor ko[2];
    CHECK_OK(run_keep(keep, x, 16, ko), onyx_session_errmsg(keep));
    CHECK(same_bits(&o3[0], &keep->vals[value(m, "h1")]));
    CHECK(same_bits(&o3[1], &ko[0]));
    CHECK(same_bits(&o3[2], &keep->vals[value(m, "r1")]));
    int negative = 0;
    for (int64_t i = 0; i < onyx_numel(&o3[0]); i++)
        negative += ((const float *)o3[0].data)[i] < 0;
    CHECK(negative > 0); /* really the value before the Relu */
    /* the bias epilogue: h1 = (0.7 * r0 W1^T) + b1, the addition in float after the product */
    static float h1[16 * 7];
    const float *b1 = init_data(m, "b1");
    onyx_gemm_f32(NULL, false, true, 16, 7, 10, 0.7f, keep->vals[value(m, "r0")].data, 10,
                  init_data(m, "W1"), 10, 0.0f, h1, 7);
    for (int i = 0; i < 16 * 7; i++)
        h1[i] += b1[i % 7];
    CHECK(memcmp(h1, o3[0].data, sizeof h1) == 0);

    /* a Relu output bound zero-copy: the fused Gemm writes the caller's buffer */
    static float r0[16 * 10];
    static float yb[16 * 4];
    onyx_tensor rt = {ONYX_DTYPE_F32, 2, {16, 10}, r0};
    onyx_tensor yt = {ONYX_DTYPE_F32, 2, {16, 4}, yb};
    CHECK_OK(onyx_session_bind_input(s, "x", &in), onyx_session_errmsg(s));
    CHECK_OK(onyx_session_bind_output(s, "r0", &rt), onyx_session_errmsg(s));
    CHECK_OK(onyx_session_bind_output(s, "y", &yt), onyx_session_errmsg(s));
    CHECK_OK(onyx_session_run_bound(s), onyx_session_errmsg(s));
    CHECK(memcmp(r0, keep->vals[value(m, "r0")].data, sizeof r0) == 0);
    CHECK(memcmp(yb, ko[0].data, sizeof yb) == 0);
    onyx_session_unbind_all(s);

    /* a packed weight bound to other data afterwards: the packed copy is no longer used */
    int w1 = value(m, "W1");
    static float w1b[7 * 10];
    const float *w1m = init_data(m, "W1");
    for (int i = 0; i < 7 * 10; i++)
        w1b[i] = -0.5f * w1m[i];
    CHECK_OK(onyx_session_bind(s, w1, w1b), onyx_session_errmsg(s));
    CHECK_OK(onyx_session_bind(keep, w1, w1b), onyx_session_errmsg(keep));
    fill(x, 64 * IN, 5);
    onyx_tensor o[2];
    CHECK_OK(run(s, x, 64, o), onyx_session_errmsg(s));
    CHECK_OK(run_keep(keep, x, 64, ko), onyx_session_errmsg(keep));
    ref_forward(m, w1b, x, 64, ry, rs);
    CHECK(same_bits(&o[0], &ko[0]) && same_bits(&o[1], &ko[1]));
    CHECK(near_ref(&o[0], ry) && near_ref(&o[1], rs));

    onyx_session_destroy(tr);
    onyx_session_destroy(keep);
    onyx_session_destroy(s);
    onyx_model_destroy(m);
    return check_report();
}
