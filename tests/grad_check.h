/* grad_check.h — checks an op's backward against central finite differences.
 *
 * For a node made with the op harness (tests/op_harness.h), th_grad_check runs forward on `in`,
 * forms L = sum over the outputs in out_mask of sum_k out_j[k] * w_j[k] with fixed pseudo-random
 * weights w (so every output element matters with a different weight), runs backward with
 * dout_j = w_j, and compares din_i for every float32 input i in in_mask with
 *   (L(x_i[k] + eps) - L(x_i[k] - eps)) / (2 eps),   L accumulated in double,
 * element by element: |analytic - numeric| <= atol + rtol * |numeric|. Forward runs in `mode`
 * with the saved buffer (impl->saved_size) and a generator re-seeded identically before every
 * evaluation, so Dropout's mask is the same in all of them. Elements for which skip(i, k, x)
 * returns true (kinks such as ReLU at 0) are not compared. Returns the number of mismatches
 * (the first few are printed) or -1 when the op could not run or has no backward.
 */
#ifndef ONYX_GRAD_CHECK_H
#define ONYX_GRAD_CHECK_H

#include "op_harness.h"

typedef bool (*th_skip_fn)(int input, int64_t k, float x);

int th_grad_check(th_node *t, onyx_mode mode, const onyx_tensor *in, uint32_t in_mask,
                  uint32_t out_mask, double eps, double atol, double rtol, th_skip_fn skip);

/* Defaults that suit most float32 ops: eps 1e-2, atol 1e-3, rtol 1e-2, outputs: all float ones. */
int th_grad_check_default(th_node *t, onyx_mode mode, const onyx_tensor *in, uint32_t in_mask);

/* Runs t forward (th_run, ONYX_MODE_TRAIN) and then backward with dY = dy (NULL: no gradient
 * flows into the output) into din[i].data = dx[i] (NULL: input i needs none), with the scratch
 * memory the op declares. Single-output ops; err reports a failed forward. */
onyx_status th_run_backward(th_node *t, const onyx_tensor *in, const float *dy, float **dx,
                            onyx_error *err);

#endif
