/* test_shape.c — ops/shape.c: Identity, Flatten, Reshape, Transpose, Squeeze, Unsqueeze, Concat,
 * Shape, Gather, Constant, ConstantOfShape, Expand. Expected values are written by hand or
 * computed here with plain index loops that follow the spec. Backward: finite differences for
 * every differentiable op and form, and values by hand. */
#include "check.h"
#include "grad_check.h"
#include "op_harness.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define D(...) ((const int64_t[]){__VA_ARGS__})
#define F(...) ((const float[]){__VA_ARGS__})

static onyx_error err;

/* out's rank and dims are exactly these (rank 0: pass D(0)). */
#define CHECK_DIMS(t, rank, dims) CHECK(th_dims_eq(&(t), rank, dims))
/* expr fails with code and a message that names the node and contains sub. */
#define CHECK_ERR(expr, code, sub) TH_CHECK_ERR(err, "", expr, code, sub)

static bool f32_eq(const onyx_tensor *t, const float *v, int64_t n)
{
    if (t->dtype != ONYX_DTYPE_F32 || onyx_numel(t) != n)
        return false;
    return n == 0 || memcmp(t->data, v, (size_t)n * sizeof(float)) == 0;
}

static bool i64_eq(const onyx_tensor *t, const int64_t *v, int64_t n)
{
    if (t->dtype != ONYX_DTYPE_I64 || onyx_numel(t) != n)
        return false;
    return n == 0 || memcmp(t->data, v, (size_t)n * sizeof(int64_t)) == 0;
}

static void iota_f32(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)i;
}

/* ---- Identity ----------------------------------------------------------------------------- */

static void test_identity(void)
{
    float x[6] = {1, -2, 3, 4.5f, 5, 6};
    onyx_tensor in[1] = {th_f32(2, D(2, 3), x)};
    onyx_tensor out[1];
    th_node *t = th_node_new("Identity", 16, 1, 1);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 2, D(2, 3));
    CHECK(f32_eq(&out[0], x, 6));
    th_node_free(t);

    int64_t xi[3] = {INT64_MAX, -1, 7};
    in[0] = th_i64(1, D(3), xi);
    t = th_node_new("Identity", 13, 1, 1);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK(i64_eq(&out[0], xi, 3));
    th_node_free(t);

    /* load time: unknown dims pass through */
    in[0] = th_f32(2, D(-1, 3), NULL);
    t = th_node_new("Identity", 1, 1, 1);
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 2, D(-1, 3));
    CHECK(out[0].dtype == ONYX_DTYPE_F32);
    th_node_free(t);

    in[0] = th_tensor(ONYX_DTYPE_STRING, 1, D(2), NULL);
    t = th_node_new("Identity", 13, 1, 1);
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_UNSUPPORTED, "input 0 (input) has dtype string");
    th_node_free(t);

    t = th_node_new("Identity", 13, 2, 1);
    onyx_tensor two[2] = {th_f32(1, D(1), x), th_f32(1, D(1), x)};
    CHECK_ERR(th_infer(t, two, out, &err), ONYX_ERR_INVALID_MODEL, "has 2 inputs, expected 1");
    th_node_free(t);
}

/* ---- Flatten ------------------------------------------------------------------------------ */

static void flatten_case(int64_t opset, bool set_axis, int64_t axis, int64_t d0, int64_t d1)
{
    float x[120];
    iota_f32(x, 120);
    onyx_tensor in[1] = {th_f32(4, D(2, 3, 4, 5), x)};
    onyx_tensor out[1];
    th_node *t = th_node_new("Flatten", opset, 1, 1);
    if (set_axis)
        th_attr_int(t, "axis", axis);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 2, D(d0, d1));
    CHECK(f32_eq(&out[0], x, 120));
    th_node_free(t);
}

static void test_flatten(void)
{
    flatten_case(13, false, 0, 2, 60); /* default axis 1 */
    flatten_case(13, true, 0, 1, 120);
    flatten_case(13, true, 2, 6, 20);
    flatten_case(13, true, 4, 120, 1); /* axis == rank */
    flatten_case(13, true, -1, 24, 5);
    flatten_case(11, true, -4, 1, 120);
    flatten_case(1, true, 3, 24, 5);

    onyx_tensor in[1] = {th_f32(4, D(2, 3, 4, 5), NULL)};
    onyx_tensor out[1];
    th_node *t = th_node_new("Flatten", 9, 1, 1);
    th_attr_int(t, "axis", -1);
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_INVALID_MODEL,
              "axis -1 is negative; negative axes need opset 11 or later");
    th_node_free(t);

    t = th_node_new("Flatten", 13, 1, 1);
    th_attr_int(t, "axis", 5);
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_SHAPE,
              "axis 5 is out of range [-4, 4] for rank 4");
    th_node_free(t);

    t = th_node_new("Flatten", 13, 1, 1);
    th_attr_float(t, "axis", 1.0f);
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_INVALID_MODEL, "axis has type float");
    th_node_free(t);

    /* load time */
    t = th_node_new("Flatten", 13, 1, 1);
    in[0] = th_f32(3, D(-1, 3, 4), NULL);
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 2, D(-1, 12));
    in[0] = th_f32(3, D(0, -1, 4), NULL); /* a known 0 makes the product known */
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 2, D(0, -1));
    in[0] = th_omitted();
    in[0].dtype = ONYX_DTYPE_F32;
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 2, D(-1, -1));
    th_node_free(t);

    t = th_node_new("Flatten", 13, 1, 1);
    th_attr_int(t, "axis", 0);
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 2, D(1, -1));
    th_node_free(t);
}

/* ---- Reshape ------------------------------------------------------------------------------ */

/* Reshapes a [2,3,4] tensor (or the given shape) to `shape` and checks the result dims. */
static void reshape_ok(int64_t opset, int64_t allowzero, int xr, const int64_t *xd,
                       int64_t n_shape, const int64_t *shape, int rank, const int64_t *want)
{
    float x[64];
    iota_f32(x, 64);
    onyx_tensor in[2] = {th_f32(xr, xd, x), th_i64(1, D(n_shape), shape)};
    onyx_tensor out[1];
    th_node *t = th_node_new("Reshape", opset, 2, 1);
    if (allowzero >= 0)
        th_attr_int(t, "allowzero", allowzero);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK_DIMS(out[0], rank, want);
    CHECK(f32_eq(&out[0], x, onyx_numel(&in[0])));
    th_node_free(t);
}

static onyx_status reshape_infer(int64_t opset, int64_t allowzero, onyx_tensor x,
                                 int64_t n_shape, const int64_t *shape, onyx_tensor *out)
{
    onyx_tensor in[2] = {x, th_i64(1, D(n_shape), shape)};
    th_node *t = th_node_new("Reshape", opset, 2, 1);
    if (allowzero >= 0)
        th_attr_int(t, "allowzero", allowzero);
    memset(&err, 0, sizeof err);
    onyx_status st = th_infer(t, in, out, &err);
    th_node_free(t);
    return st;
}

static void test_reshape(void)
{
    const int64_t *x234 = D(2, 3, 4);
    reshape_ok(14, -1, 3, x234, 3, D(4, 2, 3), 3, D(4, 2, 3));
    reshape_ok(14, -1, 3, x234, 2, D(2, 12), 2, D(2, 12));
    reshape_ok(14, -1, 3, x234, 4, D(2, 3, 2, 2), 4, D(2, 3, 2, 2));
    reshape_ok(14, -1, 3, x234, 1, D(24), 1, D(24));
    reshape_ok(14, -1, 3, x234, 3, D(2, -1, 2), 3, D(2, 6, 2));
    reshape_ok(14, -1, 3, x234, 4, D(-1, 2, 3, 4), 4, D(1, 2, 3, 4));
    reshape_ok(14, -1, 3, x234, 4, D(2, 0, 4, 1), 4, D(2, 3, 4, 1));   /* 0 copies */
    reshape_ok(14, -1, 3, x234, 4, D(2, 0, 1, -1), 4, D(2, 3, 1, 4));  /* 0 and -1 */
    reshape_ok(5, -1, 3, x234, 3, D(0, 0, -1), 3, D(2, 3, 4));
    reshape_ok(14, -1, 2, D(1, 1), 0, D(0), 0, D(0));                 /* to a scalar */
    /* allowzero (opset 14): 0 means 0 */
    reshape_ok(14, 1, 3, D(0, 3, 4), 3, D(3, 4, 0), 3, D(3, 4, 0));
    reshape_ok(14, 1, 3, x234, 3, D(2, 3, 4), 3, D(2, 3, 4));

    onyx_tensor out[1];
    onyx_tensor x = th_f32(3, D(2, 3, 4), NULL);
    /* without allowzero the 0 copies input dim 2 (4): 3*4*4 != 0 elements */
    CHECK_ERR(reshape_infer(14, 0, th_f32(3, D(0, 3, 4), NULL), 3, D(3, 4, 0), out),
              ONYX_ERR_SHAPE, "cannot reshape data of shape [0,3,4] (0 elements) to [3,4,4]");
    /* before opset 14 allowzero does not exist: the 0 still copies */
    CHECK_ERR(reshape_infer(13, 1, th_f32(3, D(0, 3, 4), NULL), 3, D(3, 4, 0), out),
              ONYX_ERR_SHAPE, "(requested [3,4,0])");
    CHECK_ERR(reshape_infer(14, 0, x, 2, D(5, 5), out), ONYX_ERR_SHAPE, "[2,3,4]");
    CHECK_MSG(err.msg, "[5,5]");
    CHECK_MSG(err.msg, "24 elements");
    CHECK_ERR(reshape_infer(14, 0, x, 2, D(5, -1), out), ONYX_ERR_SHAPE,
              "cannot reshape data of shape [2,3,4] (24 elements) to [5,-1]");
    CHECK_ERR(reshape_infer(14, 0, x, 3, D(-1, 4, -1), out), ONYX_ERR_SHAPE,
              "[-1,4,-1] has more than one -1");
    CHECK_ERR(reshape_infer(14, 0, x, 2, D(-2, 12), out), ONYX_ERR_SHAPE,
              "has -2 at index 0; dims must be >= -1");
    CHECK_ERR(reshape_infer(14, 1, x, 3, D(0, -1, 4), out), ONYX_ERR_SHAPE,
              "[0,-1,4] has both 0 and -1");
    CHECK_ERR(reshape_infer(14, 0, x, 4, D(2, 3, 4, 0), out), ONYX_ERR_SHAPE,
              "0 at index 3, which copies a dim of data, but data has shape [2,3,4]");
    CHECK_ERR(reshape_infer(14, 0, th_f32(2, D(0, 3), NULL), 2, D(0, -1), out),
              ONYX_ERR_SHAPE, "the -1 is ambiguous");
    CHECK_ERR(reshape_infer(14, 2, x, 1, D(24), out), ONYX_ERR_INVALID_MODEL,
              "allowzero is 2");
    CHECK_ERR(reshape_infer(14, 0, x, 9, D(1, 1, 1, 1, 1, 1, 2, 3, 4), out),
              ONYX_ERR_UNSUPPORTED, "rank 9");

    onyx_tensor in[2] = {x, th_tensor(ONYX_DTYPE_I32, 1, D(2), (const int32_t[]){4, 6})};
    th_node *t = th_node_new("Reshape", 14, 2, 1);
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_SHAPE, "input 1 (shape) has dtype int32, "
                                                          "expected int64");
    in[1] = th_i64(2, D(1, 2), D(4, 6));
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_SHAPE, "input 1 (shape) has shape [1,2], "
                                                          "expected 1-D");
    /* load time: values unknown, length known */
    in[1] = th_i64(1, D(3), NULL);
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 3, D(-1, -1, -1));
    /* length unknown too */
    in[1] = th_i64(1, D(-1), NULL);
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK(out[0].rank == -1);
    /* an empty shape is known without data */
    in[1] = th_i64(1, D(0), NULL);
    in[0] = th_f32(2, D(1, -1), NULL);
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK(out[0].rank == 0);
    th_node_free(t);

    /* load time: known shape, unknown input dims (a symbolic batch) */
    onyx_tensor xb = th_f32(3, D(-1, 3, 4), NULL);
    CHECK_OK(reshape_infer(14, 0, xb, 2, D(0, -1), out), err.msg);
    CHECK_DIMS(out[0], 2, D(-1, -1));
    CHECK_OK(reshape_infer(14, 0, xb, 2, D(0, 12), out), err.msg);
    CHECK_DIMS(out[0], 2, D(-1, 12));
    CHECK_OK(reshape_infer(14, 0, xb, 3, D(-1, 6, 2), out), err.msg);
    CHECK_DIMS(out[0], 3, D(-1, 6, 2));
    onyx_tensor xu = th_omitted();
    xu.dtype = ONYX_DTYPE_F32;
    CHECK_OK(reshape_infer(14, 0, xu, 2, D(0, 5), out), err.msg);
    CHECK_DIMS(out[0], 2, D(-1, 5));
    /* what is certainly wrong is refused even at load time */
    CHECK_ERR(reshape_infer(14, 0, xb, 2, D(-1, -1), out), ONYX_ERR_SHAPE, "more than one -1");
}

/* ---- Transpose ---------------------------------------------------------------------------- */

/* y[i] = x[j] with j[perm[k]] = i[k], by plain index arithmetic (div/mod per element). */
static void transpose_naive(const double *x, double *y, int rank, const int64_t *xd,
                            const int *perm)
{
    int64_t yd[ONYX_MAX_RANK];
    int64_t n = 1;
    for (int k = 0; k < rank; k++) {
        yd[k] = xd[perm[k]];
        n *= xd[k];
    }
    for (int64_t o = 0; o < n; o++) {
        int64_t i[ONYX_MAX_RANK];
        int64_t rem = o;
        for (int k = rank - 1; k >= 0; k--) {
            i[k] = rem % yd[k];
            rem /= yd[k];
        }
        int64_t j[ONYX_MAX_RANK];
        for (int k = 0; k < rank; k++)
            j[perm[k]] = i[k];
        int64_t off = 0;
        for (int k = 0; k < rank; k++)
            off = off * xd[k] + j[k];
        y[o] = x[off];
    }
}

/* Runs Transpose on x (dtype dt, values 0..n-1 scaled) and compares with the naive loop. */
static void transpose_check(onyx_dtype dt, int rank, const int64_t *xd, const int *perm,
                            bool give_perm)
{
    int64_t n = 1;
    for (int k = 0; k < rank; k++)
        n *= xd[k];
    double *xv = malloc(sizeof(double) * (size_t)(n + 1));
    double *yv = malloc(sizeof(double) * (size_t)(n + 1));
    unsigned char *xb = malloc((size_t)(n + 1) * 8);
    for (int64_t i = 0; i < n; i++) {
        xv[i] = (double)(i % 97);
        onyx_store_f64(dt, xb, i, xv[i]);
    }
    transpose_naive(xv, yv, rank, xd, perm);
    onyx_tensor in[1] = {th_tensor(dt, rank, xd, xb)};
    onyx_tensor out[1];
    th_node *t = th_node_new("Transpose", 13, 1, 1);
    if (give_perm) {
        int64_t p[ONYX_MAX_RANK];
        for (int k = 0; k < rank; k++)
            p[k] = perm[k];
        th_attr_ints(t, "perm", p, (size_t)rank);
    }
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK(out[0].dtype == dt && out[0].rank == rank);
    for (int k = 0; k < rank; k++)
        CHECK(out[0].dims[k] == xd[perm[k]]);
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++)
        if (onyx_load_f64(dt, out[0].data, i) != yv[i])
            bad++;
    CHECK(bad == 0);
    th_node_free(t);
    free(xv);
    free(yv);
    free(xb);
}

static void test_transpose(void)
{
    /* hand-computed: [[1,2,3],[4,5,6]] -> [[1,4],[2,5],[3,6]] */
    float x[6] = {1, 2, 3, 4, 5, 6};
    onyx_tensor in[1] = {th_f32(2, D(2, 3), x)};
    onyx_tensor out[1];
    th_node *t = th_node_new("Transpose", 13, 1, 1);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 2, D(3, 2));
    CHECK(f32_eq(&out[0], F(1, 4, 2, 5, 3, 6), 6));
    th_node_free(t);

    /* all permutations of a [2,3,4] tensor, and the default (reversed) */
    static const int perms[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2},
                                    {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    for (int i = 0; i < 6; i++)
        transpose_check(ONYX_DTYPE_F32, 3, D(2, 3, 4), perms[i], true);
    transpose_check(ONYX_DTYPE_F32, 3, D(2, 3, 4), (const int[]){2, 1, 0}, false);
    /* awkward shapes through the 4-byte loop and the generic byte loop */
    const int64_t *awk = D(3, 1, 5, 7, 2);
    const int p5[] = {4, 0, 3, 2, 1};
    const int p5b[] = {1, 2, 0, 3, 4}; /* innermost dim stays: contiguous runs */
    transpose_check(ONYX_DTYPE_F32, 5, awk, p5, true);
    transpose_check(ONYX_DTYPE_F32, 5, awk, p5b, true);
    transpose_check(ONYX_DTYPE_I32, 5, awk, p5, true);
    transpose_check(ONYX_DTYPE_F64, 5, awk, p5, true);
    transpose_check(ONYX_DTYPE_I64, 5, awk, p5b, true);
    transpose_check(ONYX_DTYPE_F16, 5, awk, p5, true);
    transpose_check(ONYX_DTYPE_U8, 4, D(7, 1, 3, 5), (const int[]){3, 1, 0, 2}, true);
    transpose_check(ONYX_DTYPE_F32, 2, D(67, 33), (const int[]){1, 0}, true);
    transpose_check(ONYX_DTYPE_F32, 1, D(5), (const int[]){0}, true);
    transpose_check(ONYX_DTYPE_F32, 3, D(2, 0, 3), (const int[]){2, 0, 1}, true);

    /* a scalar */
    in[0] = th_f32(0, D(0), F(7.5f));
    t = th_node_new("Transpose", 13, 1, 1);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK(out[0].rank == 0 && ((float *)out[0].data)[0] == 7.5f);
    th_node_free(t);

    /* bad perms */
    in[0] = th_f32(3, D(2, 3, 4), NULL);
    t = th_node_new("Transpose", 13, 1, 1);
    th_attr_ints(t, "perm", D(0, 0, 1), 3);
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_INVALID_MODEL,
              "perm [0,0,1] is not a permutation of 0..2");
    th_node_free(t);
    t = th_node_new("Transpose", 13, 1, 1);
    th_attr_ints(t, "perm", D(0, 3, 1), 3);
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_INVALID_MODEL, "not a permutation");
    th_node_free(t);
    t = th_node_new("Transpose", 13, 1, 1);
    th_attr_ints(t, "perm", D(1, 0), 2);
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_SHAPE,
              "perm has 2 entries, but input 0 (data) has shape [2,3,4]");
    /* load time */
    in[0] = th_f32(2, D(-1, 3), NULL);
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 2, D(3, -1));
    in[0] = th_omitted();
    in[0].dtype = ONYX_DTYPE_F32;
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 2, D(-1, -1));
    th_node_free(t);
}

/* ---- Squeeze and Unsqueeze ---------------------------------------------------------------- */

/* Runs Squeeze/Unsqueeze on x of shape xd: axes as input (axes != NULL, opset >= 13) or as
 * attribute (attr != NULL); checks the result's dims and data. */
static void squeeze_ok(const char *op, int64_t opset, int xr, const int64_t *xd,
                       const int64_t *axes, int64_t n_axes, bool as_attr, int rank,
                       const int64_t *want)
{
    float x[256];
    iota_f32(x, 256);
    onyx_tensor in[2] = {th_f32(xr, xd, x), th_omitted()};
    if (axes != NULL && !as_attr)
        in[1] = th_i64(1, D(n_axes), axes);
    onyx_tensor out[1];
    th_node *t = th_node_new(op, opset, as_attr || axes == NULL ? 1 : 2, 1);
    if (as_attr)
        th_attr_ints(t, "axes", axes, (size_t)n_axes);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK_DIMS(out[0], rank, want);
    CHECK(f32_eq(&out[0], x, onyx_numel(&in[0])));
    th_node_free(t);
}

static onyx_status squeeze_err(const char *op, int64_t opset, int xr, const int64_t *xd,
                               const int64_t *axes, int64_t n_axes, bool as_attr)
{
    onyx_tensor in[2] = {th_f32(xr, xd, NULL), th_omitted()};
    if (axes != NULL && !as_attr)
        in[1] = th_i64(1, D(n_axes), axes);
    onyx_tensor out[1];
    th_node *t = th_node_new(op, opset, as_attr || axes == NULL ? 1 : 2, 1);
    if (as_attr)
        th_attr_ints(t, "axes", axes, (size_t)n_axes);
    memset(&err, 0, sizeof err);
    onyx_status st = th_infer(t, in, out, &err);
    th_node_free(t);
    return st;
}

static void test_squeeze(void)
{
    squeeze_ok("Squeeze", 13, 4, D(1, 3, 4, 5), D(0), 1, false, 3, D(3, 4, 5));
    squeeze_ok("Squeeze", 13, 4, D(1, 3, 1, 5), D(-2), 1, false, 3, D(1, 3, 5));
    squeeze_ok("Squeeze", 13, 4, D(1, 3, 1, 5), NULL, 0, false, 2, D(3, 5)); /* all 1s */
    squeeze_ok("Squeeze", 13, 4, D(1, 3, 1, 5), D(2, 0), 2, false, 2, D(3, 5));
    squeeze_ok("Squeeze", 13, 2, D(3, 5), D(0), 0, false, 2, D(3, 5)); /* empty list */
    squeeze_ok("Squeeze", 13, 3, D(1, 1, 1), NULL, 0, false, 0, D(0));
    squeeze_ok("Squeeze", 11, 4, D(1, 3, 1, 5), D(0, 2), 2, true, 2, D(3, 5));
    squeeze_ok("Squeeze", 11, 4, D(1, 3, 1, 5), D(-4), 1, true, 3, D(3, 1, 5));
    squeeze_ok("Squeeze", 11, 4, D(1, 3, 1, 5), NULL, 0, false, 2, D(3, 5));
    squeeze_ok("Squeeze", 1, 4, D(1, 3, 1, 5), D(2), 1, true, 3, D(1, 3, 5));

    CHECK_ERR(squeeze_err("Squeeze", 13, 4, D(1, 3, 4, 5), D(1), 1, false), ONYX_ERR_SHAPE,
              "cannot squeeze axis 1 of data shape [1,3,4,5]: its size is 3, not 1");
    CHECK_ERR(squeeze_err("Squeeze", 13, 4, D(1, 3, 1, 5), D(0, -4), 2, false),
              ONYX_ERR_SHAPE, "axes [0,-4] names axis 0 twice");
    CHECK_ERR(squeeze_err("Squeeze", 13, 4, D(1, 3, 1, 5), D(4), 1, false), ONYX_ERR_SHAPE,
              "axes entry 4 is out of range [-4, 3] for rank 4");
    CHECK_ERR(squeeze_err("Squeeze", 1, 4, D(1, 3, 1, 5), D(-2), 1, true),
              ONYX_ERR_INVALID_MODEL, "axes entry -2 is negative; negative axes need opset 11");
    /* opset 13 takes axes as input only */
    CHECK_ERR(squeeze_err("Squeeze", 13, 4, D(1, 3, 1, 5), D(0), 1, true),
              ONYX_ERR_INVALID_MODEL, "from opset 13 axes is input 1");

    onyx_tensor in[2] = {th_f32(3, D(1, -1, 5), NULL), th_omitted()};
    onyx_tensor out[1];
    th_node *t = th_node_new("Squeeze", 13, 2, 1);
    in[1] = th_tensor(ONYX_DTYPE_I32, 1, D(1), (const int32_t[]){0});
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_SHAPE, "input 1 (axes) has dtype int32");
    /* load time: axes values unknown */
    in[1] = th_i64(1, D(1), NULL);
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 2, D(-1, -1));
    /* known axes, an unknown dim elsewhere */
    in[1] = th_i64(1, D(1), D(0));
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 2, D(-1, 5));
    /* squeezing an unknown dim: assumed 1 until run time */
    in[1] = th_i64(1, D(1), D(1));
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 2, D(1, 5));
    /* squeeze-all with an unknown dim: rank unknown */
    in[1] = th_omitted();
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK(out[0].rank == -1);
    th_node_free(t);
}

static void test_unsqueeze(void)
{
    const int64_t *x345 = D(3, 4, 5);
    squeeze_ok("Unsqueeze", 13, 3, x345, D(0), 1, false, 4, D(1, 3, 4, 5));
    squeeze_ok("Unsqueeze", 13, 3, x345, D(3), 1, false, 4, D(3, 4, 5, 1));
    squeeze_ok("Unsqueeze", 13, 3, x345, D(1, 4), 2, false, 5, D(3, 1, 4, 5, 1));
    squeeze_ok("Unsqueeze", 13, 3, x345, D(2, 4, 5), 3, false, 6, D(3, 4, 1, 5, 1, 1));
    squeeze_ok("Unsqueeze", 13, 3, x345, D(5, 4, 2), 3, false, 6, D(3, 4, 1, 5, 1, 1));
    squeeze_ok("Unsqueeze", 13, 4, D(1, 3, 1, 5), D(-2), 1, false, 5, D(1, 3, 1, 1, 5));
    squeeze_ok("Unsqueeze", 13, 3, x345, D(-1, 0), 2, false, 5, D(1, 3, 4, 5, 1));
    squeeze_ok("Unsqueeze", 13, 0, D(0), D(0), 1, false, 1, D(1));
    squeeze_ok("Unsqueeze", 11, 3, x345, D(3), 1, true, 4, D(3, 4, 5, 1));
    squeeze_ok("Unsqueeze", 11, 3, x345, D(-4), 1, true, 4, D(1, 3, 4, 5));
    squeeze_ok("Unsqueeze", 1, 3, x345, D(0, 4), 2, true, 5, D(1, 3, 4, 5, 1));

    CHECK_ERR(squeeze_err("Unsqueeze", 13, 3, x345, D(0, -5), 2, false), ONYX_ERR_SHAPE,
              "names axis 0 twice");
    CHECK_ERR(squeeze_err("Unsqueeze", 13, 3, x345, D(1, 1), 2, false), ONYX_ERR_SHAPE,
              "axes [1,1] names axis 1 twice");
    CHECK_ERR(squeeze_err("Unsqueeze", 13, 3, x345, D(4), 1, false), ONYX_ERR_SHAPE,
              "axes entry 4 is out of range [-4, 3] for rank 4");
    CHECK_ERR(squeeze_err("Unsqueeze", 11, 3, x345, NULL, 0, false), ONYX_ERR_INVALID_MODEL,
              "attribute axes is required");
    CHECK_ERR(squeeze_err("Unsqueeze", 13, 3, x345, NULL, 0, false), ONYX_ERR_INVALID_MODEL,
              "has 1 inputs, expected 2");
    CHECK_ERR(squeeze_err("Unsqueeze", 13, 3, x345, D(0, 1, 2, 3, 4, 5), 6, false),
              ONYX_ERR_UNSUPPORTED, "rank 9");

    /* load time */
    onyx_tensor in[2] = {th_f32(2, D(-1, 3), NULL), th_i64(1, D(2), NULL)};
    onyx_tensor out[1];
    th_node *t = th_node_new("Unsqueeze", 13, 2, 1);
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 4, D(-1, -1, -1, -1));
    in[1] = th_i64(1, D(2), D(0, -1));
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 4, D(1, -1, 3, 1));
    in[1] = th_i64(1, D(-1), NULL);
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK(out[0].rank == -1);
    th_node_free(t);
}

/* ---- Concat ------------------------------------------------------------------------------- */

static void test_concat(void)
{
    /* three inputs on axis -2: [2,1,3] + [2,2,3] + [2,3,3] -> [2,6,3] */
    float a[6];
    float b[12];
    float c[18];
    for (int i = 0; i < 6; i++)
        a[i] = (float)(100 + i);
    for (int i = 0; i < 12; i++)
        b[i] = (float)(200 + i);
    for (int i = 0; i < 18; i++)
        c[i] = (float)(300 + i);
    onyx_tensor in[3] = {th_f32(3, D(2, 1, 3), a), th_f32(3, D(2, 2, 3), b),
                         th_f32(3, D(2, 3, 3), c)};
    onyx_tensor out[1];
    th_node *t = th_node_new("Concat", 13, 3, 1);
    th_attr_int(t, "axis", -2);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 3, D(2, 6, 3));
    float want[36];
    int w = 0;
    for (int o = 0; o < 2; o++) { /* per outer index: a's rows, b's rows, c's rows */
        for (int i = 0; i < 3; i++)
            want[w++] = a[o * 3 + i];
        for (int i = 0; i < 6; i++)
            want[w++] = b[o * 6 + i];
        for (int i = 0; i < 9; i++)
            want[w++] = c[o * 9 + i];
    }
    CHECK(f32_eq(&out[0], want, 36));
    th_node_free(t);

    /* 2-D on axis 1, int64, with an empty input */
    int64_t ia[4] = {1, 2, 3, 4};
    int64_t ib[2] = {5, 6};
    onyx_tensor in2[3] = {th_i64(2, D(2, 2), ia), th_i64(2, D(2, 0), NULL),
                          th_i64(2, D(2, 1), ib)};
    t = th_node_new("Concat", 4, 3, 1);
    th_attr_int(t, "axis", 1);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in2, out, &err), err.msg);
    CHECK_DIMS(out[0], 2, D(2, 3));
    CHECK(i64_eq(&out[0], D(1, 2, 5, 3, 4, 6), 6));
    th_node_free(t);

    /* 1-D on axis 0, a single input */
    onyx_tensor in1[1] = {th_f32(1, D(3), F(1, 2, 3))};
    t = th_node_new("Concat", 11, 1, 1);
    th_attr_int(t, "axis", -1);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in1, out, &err), err.msg);
    CHECK(f32_eq(&out[0], F(1, 2, 3), 3));
    th_node_free(t);

    /* errors */
    onyx_tensor e[2] = {th_f32(2, D(2, 3), NULL), th_i64(2, D(2, 3), NULL)};
    t = th_node_new("Concat", 13, 2, 1);
    th_attr_int(t, "axis", 0);
    CHECK_ERR(th_infer(t, e, out, &err), ONYX_ERR_SHAPE,
              "input 1 has dtype int64, but input 0 has dtype float32");
    e[1] = th_f32(3, D(2, 3, 1), NULL);
    CHECK_ERR(th_infer(t, e, out, &err), ONYX_ERR_SHAPE,
              "input 1 has shape [2,3,1], but input 0 has shape [2,3] (ranks differ)");
    e[1] = th_f32(2, D(2, 4), NULL);
    CHECK_ERR(th_infer(t, e, out, &err), ONYX_ERR_SHAPE,
              "input 1 has shape [2,4], which differs from input 0's [2,3] in dimension 1");
    th_node_free(t);
    t = th_node_new("Concat", 13, 2, 1);
    CHECK_ERR(th_infer(t, e, out, &err), ONYX_ERR_INVALID_MODEL, "attribute axis is required");
    th_node_free(t);
    t = th_node_new("Concat", 4, 2, 1);
    th_attr_int(t, "axis", -1);
    CHECK_ERR(th_infer(t, e, out, &err), ONYX_ERR_INVALID_MODEL,
              "axis -1 is negative; negative axes need opset 11 or later");
    th_node_free(t);
    t = th_node_new("Concat", 13, 2, 1);
    th_attr_int(t, "axis", 2);
    CHECK_ERR(th_infer(t, e, out, &err), ONYX_ERR_SHAPE,
              "axis 2 is out of range [-2, 1] for rank 2");
    th_node_free(t);

    /* load time */
    t = th_node_new("Concat", 13, 2, 1);
    th_attr_int(t, "axis", 0);
    e[0] = th_f32(2, D(-1, 3), NULL);
    e[1] = th_f32(2, D(2, 3), NULL);
    CHECK_OK(th_infer(t, e, out, &err), err.msg);
    CHECK_DIMS(out[0], 2, D(-1, 3));
    e[0] = th_omitted();
    e[0].dtype = ONYX_DTYPE_F32;
    CHECK_OK(th_infer(t, e, out, &err), err.msg);
    CHECK_DIMS(out[0], 2, D(-1, 3));
    th_node_free(t);
    t = th_node_new("Concat", 13, 2, 1);
    th_attr_int(t, "axis", 1);
    e[0] = th_f32(2, D(-1, 3), NULL);
    e[1] = th_f32(2, D(2, -1), NULL);
    CHECK_OK(th_infer(t, e, out, &err), err.msg);
    CHECK_DIMS(out[0], 2, D(2, -1));
    th_node_free(t);
}

/* ---- Shape -------------------------------------------------------------------------------- */

/* Shape of a [2,3,4] tensor given with data == NULL (as when folded at load time). */
static void shape_case(int64_t opset, bool has_start, int64_t start, bool has_end, int64_t end,
                       int64_t n, const int64_t *want)
{
    onyx_tensor in[1] = {th_f32(3, D(2, 3, 4), NULL)};
    onyx_tensor out[1];
    th_node *t = th_node_new("Shape", opset, 1, 1);
    if (has_start)
        th_attr_int(t, "start", start);
    if (has_end)
        th_attr_int(t, "end", end);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 1, D(n));
    CHECK(i64_eq(&out[0], want, n));
    th_node_free(t);
}

static void test_shape(void)
{
    const onyx_op_def *def = onyx_op_find("", "Shape", 15);
    CHECK(def != NULL && (def->impl->flags & ONYX_OPF_SHAPE_ONLY) != 0);
    shape_case(15, false, 0, false, 0, 3, D(2, 3, 4));
    shape_case(15, true, -1, false, 0, 1, D(4));
    shape_case(15, false, 0, true, -1, 2, D(2, 3));
    shape_case(15, true, 1, true, 2, 1, D(3));
    shape_case(15, true, 1, true, -1, 1, D(3));
    shape_case(15, true, 1, false, 0, 2, D(3, 4));
    shape_case(15, false, 0, true, 1, 1, D(2));
    shape_case(15, true, -10, false, 0, 3, D(2, 3, 4)); /* clamped to 0 */
    shape_case(15, false, 0, true, 10, 3, D(2, 3, 4));  /* clamped to 3 */
    shape_case(15, false, 0, true, -10, 0, D(0));       /* clamped to 0: empty */
    shape_case(15, true, 5, false, 0, 0, D(0));
    shape_case(15, true, 2, true, 1, 0, D(0)); /* start > end: empty */
    shape_case(13, true, 1, true, 2, 3, D(2, 3, 4)); /* start/end exist from opset 15 */
    shape_case(1, false, 0, false, 0, 3, D(2, 3, 4));

    onyx_tensor in[1] = {th_f32(0, D(0), F(1))};
    onyx_tensor out[1];
    th_node *t = th_node_new("Shape", 15, 1, 1);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 1, D(0));
    /* load time */
    in[0] = th_f32(2, D(-1, 7), NULL);
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 1, D(2));
    CHECK(out[0].dtype == ONYX_DTYPE_I64);
    in[0] = th_omitted();
    in[0].dtype = ONYX_DTYPE_F32;
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 1, D(-1));
    th_node_free(t);

    t = th_node_new("Shape", 15, 1, 1);
    th_attr_string(t, "start", "1");
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_INVALID_MODEL, "start has type string");
    th_node_free(t);
}

/* ---- Gather ------------------------------------------------------------------------------- */

/* out[a, j, b] = x[a, ind[j] (wrapped), b] by plain loops. x: (A, s, B), ind: (m). */
static void gather_naive(const float *x, int64_t A, int64_t s, int64_t B, const int64_t *ind,
                         int64_t m, float *y)
{
    for (int64_t a = 0; a < A; a++)
        for (int64_t j = 0; j < m; j++)
            for (int64_t b = 0; b < B; b++) {
                int64_t k = ind[j] < 0 ? ind[j] + s : ind[j];
                y[(a * m + j) * B + b] = x[(a * s + k) * B + b];
            }
}

static void test_gather(void)
{
    /* the spec's axis-0 example */
    float x0[6] = {1.0f, 1.2f, 2.3f, 3.4f, 4.5f, 5.7f};
    onyx_tensor in[2] = {th_f32(2, D(3, 2), x0), th_i64(2, D(2, 2), D(0, 1, 1, 2))};
    onyx_tensor out[1];
    th_node *t = th_node_new("Gather", 13, 2, 1);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 3, D(2, 2, 2));
    CHECK(f32_eq(&out[0], F(1.0f, 1.2f, 2.3f, 3.4f, 2.3f, 3.4f, 4.5f, 5.7f), 8));
    th_node_free(t);

    /* the spec's axis-1 example: 2-D indices [[0, 2]] */
    float x1[9] = {1.0f, 1.2f, 1.9f, 2.3f, 3.4f, 3.9f, 4.5f, 5.7f, 5.9f};
    in[0] = th_f32(2, D(3, 3), x1);
    in[1] = th_i64(2, D(1, 2), D(0, 2));
    t = th_node_new("Gather", 13, 2, 1);
    th_attr_int(t, "axis", 1);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 3, D(3, 1, 2));
    CHECK(f32_eq(&out[0], F(1.0f, 1.9f, 2.3f, 3.9f, 4.5f, 5.9f), 6));
    th_node_free(t);

    /* negative indices, int32 */
    float x2[10];
    iota_f32(x2, 10);
    in[0] = th_f32(1, D(10), x2);
    in[1] = th_tensor(ONYX_DTYPE_I32, 1, D(3), (const int32_t[]){0, -9, -10});
    t = th_node_new("Gather", 13, 2, 1);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 1, D(3));
    CHECK(f32_eq(&out[0], F(0, 1, 0), 3));
    th_node_free(t);

    /* scalar index on a negative axis: rank r + 0 - 1 */
    float x3[24];
    iota_f32(x3, 24);
    in[0] = th_f32(3, D(2, 3, 4), x3);
    in[1] = th_i64(0, D(0), D(-1));
    t = th_node_new("Gather", 11, 2, 1);
    th_attr_int(t, "axis", -1);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 2, D(2, 3));
    CHECK(f32_eq(&out[0], F(3, 7, 11, 15, 19, 23), 6));
    th_node_free(t);

    /* a middle axis of an awkward shape against the naive loop */
    float x4[5 * 7 * 3];
    for (int i = 0; i < 105; i++)
        x4[i] = (float)(i * 3 % 11) - 0.5f;
    int64_t ind[8] = {6, -1, 0, 3, 3, -7, 2, 5};
    float want[5 * 8 * 3];
    gather_naive(x4, 5, 7, 3, ind, 8, want);
    in[0] = th_f32(3, D(5, 7, 3), x4);
    in[1] = th_i64(2, D(2, 4), ind);
    t = th_node_new("Gather", 13, 2, 1);
    th_attr_int(t, "axis", 1);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 4, D(5, 2, 4, 3));
    CHECK(f32_eq(&out[0], want, 120));
    /* empty indices */
    in[1] = th_i64(1, D(0), NULL);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 3, D(5, 0, 3));
    th_node_free(t);

    /* int64 data */
    in[0] = th_i64(1, D(3), D(10, 20, 30));
    in[1] = th_i64(1, D(2), D(2, 0));
    t = th_node_new("Gather", 1, 2, 1);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK(i64_eq(&out[0], D(30, 10), 2));
    th_node_free(t);

    /* errors */
    in[0] = th_f32(2, D(3, 2), x0);
    in[1] = th_i64(1, D(3), D(0, 3, 1));
    t = th_node_new("Gather", 13, 2, 1);
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_SHAPE,
              "indices[1] = 3 is out of range [-3, 2] for axis 0 of data shape [3,2]");
    in[1] = th_tensor(ONYX_DTYPE_I32, 1, D(2), (const int32_t[]){-4, 0});
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_SHAPE, "indices[0] = -4 is out of range");
    in[1] = th_f32(1, D(1), F(0));
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_SHAPE,
              "input 1 (indices) has dtype float32, expected int32 or int64");
    in[0] = th_f32(0, D(0), x0);
    in[1] = th_i64(0, D(0), D(0));
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_SHAPE, "scalar");
    th_node_free(t);
    in[0] = th_f32(2, D(3, 2), x0);
    t = th_node_new("Gather", 13, 2, 1);
    th_attr_int(t, "axis", 2);
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_SHAPE,
              "axis 2 is out of range [-2, 1] for rank 2");
    th_node_free(t);
    t = th_node_new("Gather", 9, 2, 1);
    th_attr_int(t, "axis", -1);
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_INVALID_MODEL,
              "axis -1 is negative; negative axes need opset 11 or later");
    th_node_free(t);

    /* load time */
    t = th_node_new("Gather", 13, 2, 1);
    in[0] = th_f32(2, D(-1, 4), NULL);
    in[1] = th_i64(2, D(-1, 2), NULL);
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 3, D(-1, 2, 4));
    /* constant indices, unknown axis size: nothing to check yet */
    in[1] = th_i64(1, D(1), D(1000));
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 2, D(1, 4));
    in[0] = th_omitted();
    in[0].dtype = ONYX_DTYPE_F32;
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK(out[0].rank == -1 && out[0].dtype == ONYX_DTYPE_F32);
    th_node_free(t);
}

/* ---- Constant ----------------------------------------------------------------------------- */

static void test_constant(void)
{
    onyx_tensor out[1];
    float v[4] = {1, 2, 3, 4};
    onyx_tensor tv = th_f32(2, D(2, 2), v);
    th_node *t = th_node_new("Constant", 13, 0, 1);
    th_attr_tensor(t, "value", &tv);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, NULL, out, &err), err.msg);
    CHECK_DIMS(out[0], 2, D(2, 2));
    CHECK(f32_eq(&out[0], v, 4));
    th_node_free(t);

    int32_t vi[3] = {-1, 0, 7};
    tv = th_tensor(ONYX_DTYPE_I32, 1, D(3), vi);
    t = th_node_new("Constant", 1, 0, 1);
    th_attr_tensor(t, "value", &tv);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, NULL, out, &err), err.msg);
    CHECK(out[0].dtype == ONYX_DTYPE_I32);
    CHECK(memcmp(out[0].data, vi, sizeof vi) == 0);
    th_node_free(t);

    t = th_node_new("Constant", 12, 0, 1);
    th_attr_float(t, "value_float", 1.5f);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, NULL, out, &err), err.msg);
    CHECK(out[0].rank == 0);
    CHECK(f32_eq(&out[0], F(1.5f), 1));
    th_node_free(t);

    t = th_node_new("Constant", 13, 0, 1);
    th_attr_floats(t, "value_floats", F(0.5f, -2), 2);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, NULL, out, &err), err.msg);
    CHECK_DIMS(out[0], 1, D(2));
    CHECK(f32_eq(&out[0], F(0.5f, -2), 2));
    th_node_free(t);

    t = th_node_new("Constant", 13, 0, 1);
    th_attr_int(t, "value_int", -42);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, NULL, out, &err), err.msg);
    CHECK(out[0].rank == 0);
    CHECK(i64_eq(&out[0], D(-42), 1));
    th_node_free(t);

    t = th_node_new("Constant", 13, 0, 1);
    th_attr_ints(t, "value_ints", D(3, INT64_MIN, 5), 3);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, NULL, out, &err), err.msg);
    CHECK_DIMS(out[0], 1, D(3));
    CHECK(i64_eq(&out[0], D(3, INT64_MIN, 5), 3));
    th_node_free(t);

    t = th_node_new("Constant", 13, 0, 1);
    th_attr_ints(t, "value_ints", NULL, 0);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, NULL, out, &err), err.msg);
    CHECK_DIMS(out[0], 1, D(0));
    th_node_free(t);

    /* errors */
    t = th_node_new("Constant", 13, 0, 1);
    th_attr_tensor(t, "value", &tv);
    th_attr_float(t, "value_float", 1.0f);
    CHECK_ERR(th_infer(t, NULL, out, &err), ONYX_ERR_INVALID_MODEL,
              "has attributes value and value_float; exactly one");
    th_node_free(t);
    t = th_node_new("Constant", 13, 0, 1);
    CHECK_ERR(th_infer(t, NULL, out, &err), ONYX_ERR_INVALID_MODEL, "has no value attribute");
    th_node_free(t);
    t = th_node_new("Constant", 11, 0, 1);
    th_attr_float(t, "value_float", 1.0f);
    CHECK_ERR(th_infer(t, NULL, out, &err), ONYX_ERR_INVALID_MODEL,
              "value_float needs opset 12");
    th_node_free(t);
    t = th_node_new("Constant", 13, 0, 1);
    th_attr_string(t, "value_string", "hello");
    CHECK_ERR(th_infer(t, NULL, out, &err), ONYX_ERR_UNSUPPORTED, "value_string is not supported");
    th_node_free(t);
    t = th_node_new("Constant", 13, 0, 1);
    th_attr_raw(t, "value_strings", ONYX_ATTR_STRINGS);
    CHECK_ERR(th_infer(t, NULL, out, &err), ONYX_ERR_UNSUPPORTED, "value_strings");
    th_node_free(t);
    t = th_node_new("Constant", 13, 0, 1);
    th_attr_raw(t, "sparse_value", ONYX_ATTR_SPARSE_TENSOR);
    CHECK_ERR(th_infer(t, NULL, out, &err), ONYX_ERR_UNSUPPORTED, "sparse_value is not supported");
    th_node_free(t);
    t = th_node_new("Constant", 13, 0, 1);
    th_attr_raw(t, "value_floats", ONYX_ATTR_INTS);
    CHECK_ERR(th_infer(t, NULL, out, &err), ONYX_ERR_INVALID_MODEL,
              "value_floats has type ints, expected floats");
    th_node_free(t);
    t = th_node_new("Constant", 13, 0, 1);
    th_attr_raw(t, "value", ONYX_ATTR_FLOAT);
    CHECK_ERR(th_infer(t, NULL, out, &err), ONYX_ERR_INVALID_MODEL,
              "value has type float, expected tensor");
    th_node_free(t);
}

/* ---- ConstantOfShape ---------------------------------------------------------------------- */

static void test_constantofshape(void)
{
    onyx_tensor in[1] = {th_i64(1, D(3), D(4, 3, 2))};
    onyx_tensor out[1];
    onyx_tensor one = th_f32(1, D(1), F(1));
    th_node *t = th_node_new("ConstantOfShape", 9, 1, 1);
    th_attr_tensor(t, "value", &one);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 3, D(4, 3, 2));
    float ones[24];
    for (int i = 0; i < 24; i++)
        ones[i] = 1.0f;
    CHECK(f32_eq(&out[0], ones, 24));
    th_node_free(t);

    /* default: float32 zeros */
    in[0] = th_i64(1, D(2), D(2, 3));
    t = th_node_new("ConstantOfShape", 20, 1, 1);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK(f32_eq(&out[0], F(0, 0, 0, 0, 0, 0), 6));
    th_node_free(t);

    /* int32 value, a long fill (the doubling copy), odd count */
    in[0] = th_i64(1, D(2), D(1000, 7));
    onyx_tensor seven = th_tensor(ONYX_DTYPE_I32, 1, D(1), (const int32_t[]){-7});
    t = th_node_new("ConstantOfShape", 9, 1, 1);
    th_attr_tensor(t, "value", &seven);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK(out[0].dtype == ONYX_DTYPE_I32);
    CHECK_DIMS(out[0], 2, D(1000, 7));
    int bad = 0;
    for (int i = 0; i < 7000; i++)
        bad += ((int32_t *)out[0].data)[i] != -7;
    CHECK(bad == 0);
    /* a zero dim and an empty shape (a scalar) */
    in[0] = th_i64(1, D(1), D(0));
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 1, D(0));
    in[0] = th_i64(1, D(0), NULL);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK(out[0].rank == 0 && ((int32_t *)out[0].data)[0] == -7);
    th_node_free(t);

    /* int64, float16 and bool values */
    in[0] = th_i64(1, D(3), D(1, 1, 3));
    onyx_tensor big = th_i64(0, D(0), D(INT64_MAX));
    t = th_node_new("ConstantOfShape", 9, 1, 1);
    th_attr_tensor(t, "value", &big);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK(i64_eq(&out[0], D(INT64_MAX, INT64_MAX, INT64_MAX), 3));
    th_node_free(t);
    onyx_tensor half = th_tensor(ONYX_DTYPE_F16, 1, D(1), (const uint16_t[]){0x3c00});
    t = th_node_new("ConstantOfShape", 9, 1, 1);
    th_attr_tensor(t, "value", &half);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK(out[0].dtype == ONYX_DTYPE_F16 && onyx_load_f64(ONYX_DTYPE_F16, out[0].data, 2) == 1.0);
    th_node_free(t);
    onyx_tensor yes = th_tensor(ONYX_DTYPE_BOOL, 1, D(1), (const uint8_t[]){1});
    t = th_node_new("ConstantOfShape", 9, 1, 1);
    th_attr_tensor(t, "value", &yes);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK(out[0].dtype == ONYX_DTYPE_BOOL && ((uint8_t *)out[0].data)[2] == 1);
    th_node_free(t);

    /* errors */
    t = th_node_new("ConstantOfShape", 9, 1, 1);
    in[0] = th_i64(1, D(2), D(3, -1));
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_SHAPE,
              "input 0 (input) [3,-1] has a negative dimension at index 1");
    in[0] = th_i64(1, D(3), D(1 << 20, 1 << 20, 1 << 20)); /* 2^60 floats */
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_SHAPE,
              "[1048576,1048576,1048576] asks for a float32 tensor larger than");
    in[0] = th_i64(1, D(2), D(INT64_MAX, INT64_MAX));
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_SHAPE, "larger than onyx's limit");
    in[0] = th_tensor(ONYX_DTYPE_I32, 1, D(1), (const int32_t[]){3});
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_SHAPE,
              "input 0 (input) has dtype int32, expected int64");
    /* load time */
    in[0] = th_i64(1, D(3), NULL);
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 3, D(-1, -1, -1));
    CHECK(out[0].dtype == ONYX_DTYPE_F32);
    in[0] = th_i64(1, D(-1), NULL);
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK(out[0].rank == -1);
    th_node_free(t);

    onyx_tensor two = th_f32(1, D(2), F(1, 2));
    t = th_node_new("ConstantOfShape", 9, 1, 1);
    th_attr_tensor(t, "value", &two);
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_INVALID_MODEL,
              "value has shape [2], expected one element");
    th_node_free(t);
    onyx_tensor str = th_tensor(ONYX_DTYPE_STRING, 1, D(1), NULL);
    t = th_node_new("ConstantOfShape", 9, 1, 1);
    th_attr_tensor(t, "value", &str);
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_UNSUPPORTED, "string");
    th_node_free(t);
}

/* ---- Expand ------------------------------------------------------------------------------- */

static void test_expand(void)
{
    /* [3,1] to [2,1,6]: y[i, j, k] = x[j, 0] */
    float x[3] = {1, 2, 3};
    onyx_tensor in[2] = {th_f32(2, D(3, 1), x), th_i64(1, D(3), D(2, 1, 6))};
    onyx_tensor out[1];
    th_node *t = th_node_new("Expand", 13, 2, 1);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 3, D(2, 3, 6));
    float want[36];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 6; k++)
                want[(i * 3 + j) * 6 + k] = x[j];
    CHECK(f32_eq(&out[0], want, 36));
    /* dims unchanged: shape [1, 1] keeps [3, 1] */
    in[1] = th_i64(1, D(2), D(1, 1));
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 2, D(3, 1));
    CHECK(f32_eq(&out[0], x, 3));
    /* a shorter shape: [3,1] with [4] -> [3,4] */
    in[1] = th_i64(1, D(1), D(4));
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 2, D(3, 4));
    CHECK(f32_eq(&out[0], F(1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3), 12));
    th_node_free(t);

    /* int64 row [1,3] to [2,3] */
    in[0] = th_i64(2, D(1, 3), D(7, 8, 9));
    in[1] = th_i64(1, D(2), D(2, 3));
    t = th_node_new("Expand", 8, 2, 1);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK(i64_eq(&out[0], D(7, 8, 9, 7, 8, 9), 6));
    /* to a zero dim */
    in[1] = th_i64(1, D(2), D(0, 3));
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 2, D(0, 3));

    /* errors */
    in[0] = th_f32(2, D(2, 3), NULL);
    in[1] = th_i64(1, D(1), D(4));
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_SHAPE,
              "shapes [2,3] and [4] cannot be broadcast");
    in[1] = th_i64(1, D(2), D(-1, 3));
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_SHAPE, "negative dimension at index 0");
    in[1] = th_i64(1, D(4), D(1 << 20, 1 << 20, 2, 3));
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_SHAPE,
              "output shape [1048576,1048576,2,3] is larger than onyx's limit");
    in[1] = th_tensor(ONYX_DTYPE_I32, 1, D(1), (const int32_t[]){3});
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_SHAPE,
              "input 1 (shape) has dtype int32, expected int64");
    /* load time: unknown values keep the input's dims > 1 */
    in[0] = th_f32(2, D(3, 1), NULL);
    in[1] = th_i64(1, D(3), NULL);
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 3, D(-1, 3, -1));
    in[1] = th_i64(1, D(-1), NULL);
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK(out[0].rank == -1);
    in[0] = th_f32(2, D(-1, 1), NULL);
    in[1] = th_i64(1, D(2), D(1, 5));
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 2, D(-1, 5));
    th_node_free(t);
}

/* Limits and rarer refusals across the family. */
static void test_limits(void)
{
    onyx_tensor out[1];
    th_node *t;
    /* ranks above ONYX_MAX_RANK */
    onyx_tensor g[2] = {th_f32(5, D(1, 1, 1, 1, 2), NULL), th_i64(5, D(1, 1, 1, 1, 1), NULL)};
    t = th_node_new("Gather", 13, 2, 1);
    CHECK_ERR(th_infer(t, g, out, &err), ONYX_ERR_UNSUPPORTED, "output would have rank 9");
    th_node_free(t);
    onyx_tensor e[2] = {th_f32(1, D(2), NULL), th_i64(1, D(9), NULL)};
    t = th_node_new("Expand", 13, 2, 1);
    CHECK_ERR(th_infer(t, e, out, &err), ONYX_ERR_UNSUPPORTED, "asks for rank 9");
    th_node_free(t);
    t = th_node_new("ConstantOfShape", 9, 1, 1);
    CHECK_ERR(th_infer(t, &e[1], out, &err), ONYX_ERR_UNSUPPORTED, "asks for rank 9");
    th_node_free(t);
    t = th_node_new("Transpose", 13, 1, 1);
    th_attr_ints(t, "perm", D(0, 1, 2, 3, 4, 5, 6, 7, 8), 9);
    CHECK_ERR(th_infer(t, e, out, &err), ONYX_ERR_UNSUPPORTED, "has 9 entries");
    th_node_free(t);
    /* scalars have no axis to concatenate on */
    onyx_tensor c[2] = {th_f32(0, D(0), F(1)), th_f32(0, D(0), F(2))};
    t = th_node_new("Concat", 13, 2, 1);
    th_attr_int(t, "axis", 0);
    CHECK_ERR(th_infer(t, c, out, &err), ONYX_ERR_SHAPE, "a tensor of rank 0 has no axes");
    th_node_free(t);
    /* an omitted input in the middle of Concat's list */
    onyx_tensor c3[3] = {th_f32(1, D(1), F(1)), th_omitted(), th_f32(1, D(1), F(2))};
    t = th_node_new("Concat", 13, 3, 1);
    th_attr_int(t, "axis", 0);
    CHECK_ERR(th_infer(t, c3, out, &err), ONYX_ERR_INVALID_MODEL, "input 1 is empty");
    th_node_free(t);
    /* more axes than dims */
    onyx_tensor q[2] = {th_f32(2, D(1, 1), NULL), th_i64(1, D(3), D(0, 1, 0))};
    t = th_node_new("Squeeze", 13, 2, 1);
    CHECK_ERR(th_infer(t, q, out, &err), ONYX_ERR_SHAPE,
              "axes has 3 entries, but data has shape [1,1]");
    th_node_free(t);
    /* attribute tensors of a dtype onyx does not hold (complex64) */
    onyx_tensor cx = th_tensor((onyx_dtype)14, 1, D(1), NULL);
    t = th_node_new("Constant", 13, 0, 1);
    th_attr_tensor(t, "value", &cx);
    CHECK_ERR(th_infer(t, NULL, out, &err), ONYX_ERR_INVALID_MODEL,
              "value has dtype 14, which onyx does not know");
    th_node_free(t);
    t = th_node_new("ConstantOfShape", 9, 1, 1);
    th_attr_tensor(t, "value", &cx);
    CHECK_ERR(th_infer(t, &e[1], out, &err), ONYX_ERR_INVALID_MODEL, "dtype 14");
    th_node_free(t);
}

/* ---- backward ----------------------------------------------------------------------------- */

static int grad_checks;
static uint64_t lcg = 0x853c49e6748fea9bu;

/* Fills x with n deterministic values in [-1, 1). */
static float *rand_f32(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = th_frand(&lcg);
    return x;
}

/* Gradient check of t's inputs in mask (data inputs only: the harness skips non-float ones). */
static void grad(th_node *t, const onyx_tensor *in, uint32_t mask)
{
    grad_checks++;
    CHECK(th_grad_check_default(t, ONYX_MODE_TRAIN, in, mask) == 0);
    th_node_free(t);
}

/* Runs t forward, then backward with dout = dy onto din[0] = dx (accumulating); frees t. */
static void backward_by_hand(th_node *t, const onyx_tensor *in, const float *dy, float *dx)
{
    onyx_tensor out[1];
    CHECK_OK(th_run(t, ONYX_MODE_TRAIN, in, out, &err), err.msg);
    onyx_node *n = th_onyx_node(t);
    onyx_tensor dout[1] = {out[0]};
    dout[0].data = (void *)(uintptr_t)dy;
    onyx_tensor din[4];
    for (int i = 0; i < n->n_in; i++) {
        din[i] = in[i];
        din[i].data = NULL;
    }
    din[0].data = dx;
    onyx_kctx ctx = {.mode = ONYX_MODE_TRAIN};
    n->impl->backward(n, &ctx, in, out, dout, din);
    th_node_free(t);
}

static void test_backward_copies(void)
{
    float x[24];
    rand_f32(x, 24);
    onyx_tensor in[2] = {th_f32(3, D(2, 3, 4), x), th_omitted()};
    onyx_tensor in1[1] = {in[0]};
    grad(th_node_new("Identity", 16, 1, 1), in1, 1u);
    th_node *t = th_node_new("Flatten", 13, 1, 1);
    th_attr_int(t, "axis", 2);
    grad(t, in1, 1u);
    in[1] = th_i64(1, D(2), D(4, -1));
    grad(th_node_new("Reshape", 14, 2, 1), in, 1u);
    grad(th_node_new("Reshape", 5, 2, 1), in, 1u);
    onyx_tensor sq[2] = {th_f32(4, D(2, 1, 12, 1), x), th_i64(1, D(2), D(1, -1))};
    grad(th_node_new("Squeeze", 13, 2, 1), sq, 1u);
    grad(th_node_new("Squeeze", 11, 1, 1), sq, 1u); /* no axes: every 1 goes */
    onyx_tensor usq[2] = {in[0], th_i64(1, D(2), D(0, -1))};
    grad(th_node_new("Unsqueeze", 13, 2, 1), usq, 1u);
    t = th_node_new("Unsqueeze", 11, 1, 1);
    th_attr_ints(t, "axes", D(1), 1);
    grad(t, usq, 1u);

    /* By hand: dx += dy, onto 1s; shape inputs never get a gradient. */
    float dy[24];
    float dx[24];
    for (int i = 0; i < 24; i++) {
        dy[i] = (float)i;
        dx[i] = 1;
    }
    in[1] = th_i64(1, D(2), D(4, -1));
    backward_by_hand(th_node_new("Reshape", 14, 2, 1), in, dy, dx);
    bool ok = true;
    for (int i = 0; i < 24; i++)
        ok = ok && dx[i] == 1 + (float)i;
    CHECK(ok);
    static const char *const copies[] = {"Identity", "Flatten", "Reshape", "Squeeze",
                                         "Unsqueeze"};
    for (size_t i = 0; i < sizeof(copies) / sizeof(copies[0]); i++) {
        const onyx_op_def *d = onyx_op_find("", copies[i], 13);
        CHECK(d != NULL && d->impl->backward != NULL && d->impl->grad_inputs == 1u);
    }
    /* no gradient at all */
    static const char *const none[] = {"Shape", "Constant", "ConstantOfShape"};
    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
        const onyx_op_def *d = onyx_op_find("", none[i], 13);
        CHECK(d != NULL && d->impl->backward == NULL && d->impl->grad_inputs == 0u);
    }
}

static void test_backward_transpose(void)
{
    float x[120];
    rand_f32(x, 120);
    onyx_tensor in[1] = {th_f32(3, D(2, 3, 4), x)};
    static const int64_t perms[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2},
                                        {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    for (int p = 0; p < 6; p++) {
        th_node *t = th_node_new("Transpose", 13, 1, 1);
        th_attr_ints(t, "perm", perms[p], 3);
        grad(t, in, 1u);
    }
    grad(th_node_new("Transpose", 13, 1, 1), in, 1u); /* default: reversed */
    in[0] = th_f32(5, D(2, 1, 3, 4, 5), x);
    th_node *t = th_node_new("Transpose", 13, 1, 1);
    th_attr_ints(t, "perm", D(3, 0, 4, 2, 1), 5);
    grad(t, in, 1u);
    in[0] = th_f32(0, NULL, x);
    grad(th_node_new("Transpose", 13, 1, 1), in, 1u);

    /* By hand: x [2,3] -> y [3,2]; dx = dy^T, onto 1s */
    in[0] = th_f32(2, D(2, 3), x);
    float dx[6] = {1, 1, 1, 1, 1, 1};
    backward_by_hand(th_node_new("Transpose", 13, 1, 1), in, F(1, 2, 3, 4, 5, 6), dx);
    CHECK(memcmp(dx, F(2, 4, 6, 3, 5, 7), sizeof dx) == 0);
}

static void test_backward_concat(void)
{
    float a[6];
    float b[12];
    float c[18];
    rand_f32(a, 6);
    rand_f32(b, 12);
    rand_f32(c, 18);
    onyx_tensor in[3] = {th_f32(3, D(2, 1, 3), a), th_f32(3, D(2, 2, 3), b),
                         th_f32(3, D(2, 3, 3), c)};
    th_node *t = th_node_new("Concat", 13, 3, 1);
    th_attr_int(t, "axis", -2);
    grad(t, in, 7u);
    t = th_node_new("Concat", 13, 3, 1);
    th_attr_int(t, "axis", 1);
    grad(t, in, 5u); /* input 1 needs no gradient */
    in[0] = th_f32(2, D(2, 3), a);
    in[1] = th_f32(2, D(4, 3), b);
    in[2] = th_f32(2, D(6, 3), c);
    t = th_node_new("Concat", 4, 3, 1);
    th_attr_int(t, "axis", 0);
    grad(t, in, 7u);
    in[0] = th_f32(2, D(3, 2), a);
    in[1] = th_f32(2, D(3, 4), b);
    in[2] = th_f32(2, D(3, 0), c); /* an empty input */
    t = th_node_new("Concat", 13, 3, 1);
    th_attr_int(t, "axis", -1);
    grad(t, in, 3u);

    /* By hand: [1,1] + [1,2] on axis 1, dy = [1, 2, 3]: da = [1], db = [2, 3], onto 1s */
    float da[1] = {1};
    float db[2] = {1, 1};
    onyx_tensor hin[2] = {th_f32(2, D(1, 1), a), th_f32(2, D(1, 2), b)};
    t = th_node_new("Concat", 13, 2, 1);
    th_attr_int(t, "axis", 1);
    onyx_tensor out[1];
    CHECK_OK(th_run(t, ONYX_MODE_TRAIN, hin, out, &err), err.msg);
    onyx_tensor dout[1] = {th_f32(2, D(1, 3), F(1, 2, 3))};
    onyx_tensor din[2] = {th_f32(2, D(1, 1), da), th_f32(2, D(1, 2), db)};
    onyx_node *n = th_onyx_node(t);
    onyx_kctx ctx = {.mode = ONYX_MODE_TRAIN};
    n->impl->backward(n, &ctx, hin, out, dout, din);
    CHECK(da[0] == 2 && db[0] == 3 && db[1] == 4);
    CHECK(n->impl->grad_inputs == ONYX_GRAD_ALL);
    th_node_free(t);
}

static void test_backward_gather(void)
{
    float x[60];
    rand_f32(x, 60);
    /* axis 0, repeated and negative indices, int64 and int32 */
    onyx_tensor in[2] = {th_f32(2, D(5, 3), x), th_i64(2, D(2, 3), D(0, 4, -1, 2, 0, 0))};
    grad(th_node_new("Gather", 13, 2, 1), in, 1u);
    in[1] = th_tensor(ONYX_DTYPE_I32, 1, D(4), (const int32_t[]){-5, 3, 3, 1});
    grad(th_node_new("Gather", 13, 2, 1), in, 1u);
    /* axis 1 and -1 of a 3-D tensor; a scalar index */
    in[0] = th_f32(3, D(3, 4, 5), x);
    in[1] = th_i64(1, D(5), D(3, -4, 1, 1, 0));
    th_node *t = th_node_new("Gather", 13, 2, 1);
    th_attr_int(t, "axis", 1);
    grad(t, in, 1u);
    in[1] = th_i64(0, NULL, D(-2));
    t = th_node_new("Gather", 13, 2, 1);
    th_attr_int(t, "axis", -1);
    grad(t, in, 1u);
    /* no indices: nothing to scatter */
    in[1] = th_i64(1, D(0), NULL);
    float dx0[60];
    for (int i = 0; i < 60; i++)
        dx0[i] = 1;
    backward_by_hand(th_node_new("Gather", 13, 2, 1), in, F(0), dx0);
    bool ok = true;
    for (int i = 0; i < 60; i++)
        ok = ok && dx0[i] == 1;
    CHECK(ok);

    /* By hand: data [3,2], indices [0, 2, 0, -1] on axis 0: rows 0 and 2 gather twice.
     * dy = [[1,2],[3,4],[5,6],[7,8]] -> dx = [[1+5, 2+6], [0, 0], [3+7, 4+8]], onto 1s. */
    in[0] = th_f32(2, D(3, 2), x);
    in[1] = th_i64(1, D(4), D(0, 2, 0, -1));
    float dx[6] = {1, 1, 1, 1, 1, 1};
    backward_by_hand(th_node_new("Gather", 13, 2, 1), in, F(1, 2, 3, 4, 5, 6, 7, 8), dx);
    CHECK(memcmp(dx, F(7, 9, 1, 1, 11, 13), sizeof dx) == 0);
    CHECK(onyx_op_find("", "Gather", 13)->impl->grad_inputs == 1u); /* never the indices */
}

static void test_backward_expand(void)
{
    float x[24];
    rand_f32(x, 24);
    onyx_tensor in[2] = {th_f32(2, D(3, 1), x), th_i64(1, D(3), D(2, 1, 6))};
    grad(th_node_new("Expand", 13, 2, 1), in, 1u); /* [3,1] -> [2,3,6] */
    in[0] = th_f32(1, D(4), x);
    in[1] = th_i64(1, D(2), D(3, 4));
    grad(th_node_new("Expand", 8, 2, 1), in, 1u); /* rows */
    in[0] = th_f32(0, NULL, x);
    in[1] = th_i64(1, D(2), D(2, 2));
    grad(th_node_new("Expand", 13, 2, 1), in, 1u); /* a scalar */
    in[0] = th_f32(3, D(2, 3, 4), x);
    in[1] = th_i64(1, D(1), D(1));
    grad(th_node_new("Expand", 13, 2, 1), in, 1u); /* nothing broadcast */
    in[0] = th_f32(4, D(2, 1, 3, 1), x);
    in[1] = th_i64(1, D(4), D(2, 4, 3, 5));
    grad(th_node_new("Expand", 13, 2, 1), in, 1u); /* alternating */

    /* By hand: [1,2] -> [3,2], dy = 1..6: dx = [1+3+5, 2+4+6], onto 1s */
    in[0] = th_f32(2, D(1, 2), x);
    in[1] = th_i64(1, D(2), D(3, 2));
    float dx[2] = {1, 1};
    backward_by_hand(th_node_new("Expand", 13, 2, 1), in, F(1, 2, 3, 4, 5, 6), dx);
    CHECK(dx[0] == 10 && dx[1] == 13);
    printf("shape gradient checks: %d\n", grad_checks);
}

int main(void)
{
    test_identity();
    test_flatten();
    test_reshape();
    test_transpose();
    test_squeeze();
    test_unsqueeze();
    test_concat();
    test_shape();
    test_gather();
    test_constant();
    test_constantofshape();
    test_expand();
    test_limits();
    test_backward_copies();
    test_backward_transpose();
    test_backward_concat();
    test_backward_gather();
    test_backward_expand();
    return check_report();
}
