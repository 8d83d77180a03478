/* op_harness.h — run one operator outside any model, for the op unit tests.
 *
 *   th_node *n = th_node_new("Gemm", 13, 3, 1);     // op_type, opset, n_in, n_out
 *   th_attr_int(n, "transB", 1);
 *   onyx_tensor in[3] = {th_f32(2, (int64_t[]){2, 3}, a), ...};
 *   onyx_tensor out[1];
 *   onyx_error err;
 *   onyx_status st = th_run(n, ONYX_MODE_INFER, in, out, &err);  // init + infer + forward
 *   ... out[0].data is owned by the node: valid until th_node_free(n) or the next th_run.
 *
 * An input with dtype ONYX_DTYPE_UNDEFINED is an omitted optional input. th_set_out_omitted(n, i)
 * marks output i as omitted. th_infer() runs only init + infer (data may be NULL, dims -1), to test
 * load-time shape inference.
 */
#ifndef ONYX_OP_HARNESS_H
#define ONYX_OP_HARNESS_H

#include "internal.h"

typedef struct th_node th_node;

th_node *th_node_new(const char *op_type, int64_t opset, int n_in, int n_out);
void th_node_free(th_node *t);
void th_set_out_omitted(th_node *t, int i);
void th_set_seed(th_node *t, uint64_t seed); /* seeds the ctx RNG used by th_run */
void th_attr_int(th_node *t, const char *name, int64_t v);
void th_attr_float(th_node *t, const char *name, float v);
void th_attr_string(th_node *t, const char *name, const char *v);
void th_attr_ints(th_node *t, const char *name, const int64_t *v, size_t n);
void th_attr_floats(th_node *t, const char *name, const float *v, size_t n);
/* The tensor (and its data) is copied. */
void th_attr_tensor(th_node *t, const char *name, const onyx_tensor *v);
/* Gives an attribute an explicit (possibly wrong) type, for error tests. */
void th_attr_raw(th_node *t, const char *name, onyx_attr_type type);

/* Runs init (first time only), infer and forward. Outputs are allocated by the harness. */
onyx_status th_run(th_node *t, onyx_mode mode, const onyx_tensor *in, onyx_tensor *out,
                   onyx_error *err);
/* Runs init (first time only) and infer only. */
onyx_status th_infer(th_node *t, const onyx_tensor *in, onyx_tensor *out, onyx_error *err);
onyx_node *th_onyx_node(th_node *t);

/* Tensor views over caller data (not copied). */
onyx_tensor th_tensor(onyx_dtype dt, int rank, const int64_t *dims, const void *data);
onyx_tensor th_f32(int rank, const int64_t *dims, const float *data);
onyx_tensor th_i64(int rank, const int64_t *dims, const int64_t *data);
onyx_tensor th_omitted(void);

#endif
