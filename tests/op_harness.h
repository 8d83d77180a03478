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
 * load-time shape inference. th_run_impl() runs an impl directly, for opsets ops.def does not list.
 *
 * Shared test helpers (below the node functions):
 *  - results: th_dims_eq (exact rank and dims), th_numel, th_close_f32 / th_close_f64 (tolerance
 *    comparisons that print the first mismatch), th_naive_index (numpy broadcasting by div/mod,
 *    the naive reference for broadcasting kernels);
 *  - TH_CHECK_ERR: a call fails with a given status and a message naming the node and saying
 *    what (needs check.h, included before this header's macros are used);
 *  - deterministic data: th_urand (xorshift64, double in [lo, hi)) and th_frand (LCG, float in
 *    [-1, 1)), each on a state variable the test file owns;
 *  - the official ONNX conformance data: th_case_tensor / th_case_read read the .pb tensors of a
 *    case under TH_NODE_DATA, or say that it is not installed (the test then skips the case).
 */
#ifndef ONYX_OP_HARNESS_H
#define ONYX_OP_HARNESS_H

#include "internal.h"

#include <string.h> /* memset, for TH_CHECK_ERR */

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

/* Runs init, infer and (when buf != NULL) forward of impl on node t directly, bypassing the
 * registry. Output 0's data goes to buf (cap bytes: ONYX_ERR_INTERNAL when it needs more). The
 * node's priv is released before returning: every call runs init afresh. */
onyx_status th_run_impl(th_node *t, const onyx_op_impl *impl, const onyx_tensor *in,
                        onyx_tensor *out, void *buf, size_t cap, onyx_error *err);

/* ---- checking results --------------------------------------------------------------------- */

/* t's rank is rank and its dims are dims[0..rank) exactly (-1 for unknown included). */
bool th_dims_eq(const onyx_tensor *t, int rank, const int64_t *dims);
/* The product of dims[0..rank) (1 for rank 0). */
int64_t th_numel(int rank, const int64_t *dims);
/* got (float32) against want (double), n elements: |got - want| <= atol + rtol |want|, where NaN
 * matches NaN and an infinity itself. Prints the first mismatch, labelled what, to stderr. */
bool th_close_f32(const float *got, const double *want, int64_t n, double atol, double rtol,
                  const char *what);
/* The same for float64 results, without the NaN and infinity allowances. */
bool th_close_f64(const double *got, const double *want, int64_t n, double atol, double rtol,
                  const char *what);
/* The flat index in src of element `flat` of out, with src broadcast to out's shape by numpy's
 * rule, computed the naive way (div/mod per dimension). src's rank must be <= out's. */
int64_t th_naive_index(const onyx_tensor *out, const onyx_tensor *src, int64_t flat);

/* expr, a call that reports into the onyx_error err, fails with status code; err.msg names the
 * node (`node "test_node" (` then op, a literal prefix of the op type: "" for any) and contains
 * sub. Uses check.h's CHECK and CHECK_MSG. */
#define TH_CHECK_ERR(err, op, expr, code, sub)                                                     \
    do {                                                                                           \
        memset(&(err), 0, sizeof(err));                                                            \
        onyx_status th_st_ = (expr);                                                               \
        CHECK(th_st_ == (code));                                                                   \
        CHECK_MSG((err).msg, "node \"test_node\" (" op);                                           \
        CHECK_MSG((err).msg, sub);                                                                 \
    } while (0)

/* ---- deterministic test data -------------------------------------------------------------- */

/* xorshift64 on *state (non-zero): a double uniform in [lo, hi), 53 bits. */
double th_urand(uint64_t *state, double lo, double hi);
/* A 64-bit LCG on *state: a float in [-1, 1), 24 bits. */
float th_frand(uint64_t *state);

/* ---- the official ONNX conformance data --------------------------------------------------- */

/* Where the node cases, one folder test_<op>... each, are installed. */
#define TH_NODE_DATA "/usr/share/libonnx-testdata/data/node"

/* Reads TH_NODE_DATA/<name>/test_data_set_0/<what>_<i>.pb (what: "input" or "output") into *t
 * (zeroed first; free with onyx_tensor_free). Returns false when it cannot: with err->code
 * ONYX_OK when the file is not there (the data is not installed: the caller skips the case), or
 * with err set when a file that is there does not read (the caller must fail). */
bool th_case_tensor(const char *name, const char *what, int i, onyx_tensor *t, onyx_error *err);
/* Reads case name's inputs 0..n_in-1 into in[] and outputs 0..n_out-1 into want[], as
 * th_case_tensor does. On false, nothing is left allocated. */
bool th_case_read(const char *name, int n_in, onyx_tensor *in, int n_out, onyx_tensor *want,
                  onyx_error *err);

#endif
