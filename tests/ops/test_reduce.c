/* test_reduce.c — ops/reduce.c: ReduceSum and ReduceMean. Hand-computed cases for every opset
 * form, and the fast float32 paths against a plain double loop on awkward shapes. Backward: finite
 * differences for every axes/keepdims/noop form, and values by hand. */
#include "check.h"
#include "grad_check.h"
#include "op_harness.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define D(...) ((const int64_t[]){__VA_ARGS__})
#define F(...) ((const float[]){__VA_ARGS__})

static onyx_error err;

#define CHECK_DIMS(t, rank, dims) CHECK(th_dims_eq(&(t), rank, dims))
#define CHECK_ERR(expr, code, sub)  TH_CHECK_ERR(err, "Reduce", expr, code, sub)

static bool f32_near(const onyx_tensor *t, const float *v, int64_t n)
{
    if (t->dtype != ONYX_DTYPE_F32 || onyx_numel(t) != n)
        return false;
    const float *y = t->data;
    for (int64_t i = 0; i < n; i++)
        if (!(fabs((double)y[i] - v[i]) <= 1e-6 + 1e-6 * fabs(v[i])))
            return false;
    return true;
}

/* x: [3,2,2] = 1..12 */
static const float X12[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};

/* How a case gives its axes. */
enum { AX_NONE, AX_ATTR, AX_INPUT };

typedef struct rcase {
    const char *op;
    int64_t opset;
    int how;
    const int64_t *axes;
    int64_t n_axes;
    int64_t keepdims; /* -1: not set */
    int64_t noop;     /* -1: not set */
} rcase;

static th_node *rnode(const rcase *c)
{
    th_node *t = th_node_new(c->op, c->opset, c->how == AX_INPUT ? 2 : 1, 1);
    if (c->how == AX_ATTR)
        th_attr_ints(t, "axes", c->axes, (size_t)c->n_axes);
    if (c->keepdims >= 0)
        th_attr_int(t, "keepdims", c->keepdims);
    if (c->noop >= 0)
        th_attr_int(t, "noop_with_empty_axes", c->noop);
    return t;
}

/* Runs case c on x [3,2,2] = 1..12 and checks dims and values. */
static void rcheck(rcase c, int rank, const int64_t *dims, const float *want, int64_t n)
{
    onyx_tensor in[2] = {th_f32(3, D(3, 2, 2), X12), th_omitted()};
    if (c.how == AX_INPUT)
        in[1] = th_i64(1, D(c.n_axes), c.axes);
    onyx_tensor out[1];
    th_node *t = rnode(&c);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK_DIMS(out[0], rank, dims);
    CHECK(f32_near(&out[0], want, n));
    th_node_free(t);
}

static onyx_status rerr(rcase c, onyx_tensor x)
{
    onyx_tensor in[2] = {x, th_omitted()};
    if (c.how == AX_INPUT)
        in[1] = th_i64(1, D(c.n_axes), c.axes);
    onyx_tensor out[1];
    th_node *t = rnode(&c);
    memset(&err, 0, sizeof err);
    onyx_status st = th_infer(t, in, out, &err);
    th_node_free(t);
    return st;
}

static void test_sum(void)
{
    const float *s1 = F(4, 6, 12, 14, 20, 22); /* over axis 1 */
    /* opset 13+: axes as input */
    rcheck((rcase){"ReduceSum", 13, AX_INPUT, D(1), 1, 1, -1}, 3, D(3, 1, 2), s1, 6);
    rcheck((rcase){"ReduceSum", 13, AX_INPUT, D(1), 1, 0, -1}, 2, D(3, 2), s1, 6);
    rcheck((rcase){"ReduceSum", 13, AX_INPUT, D(-2), 1, 1, -1}, 3, D(3, 1, 2), s1, 6);
    rcheck((rcase){"ReduceSum", 13, AX_NONE, NULL, 0, -1, -1}, 3, D(1, 1, 1), F(78), 1);
    rcheck((rcase){"ReduceSum", 13, AX_NONE, NULL, 0, 0, -1}, 0, D(0), F(78), 1);
    rcheck((rcase){"ReduceSum", 13, AX_INPUT, D(0, 2), 2, 1, -1}, 3, D(1, 2, 1), F(33, 45), 2);
    rcheck((rcase){"ReduceSum", 13, AX_INPUT, D(2, 0), 2, 0, -1}, 1, D(2), F(33, 45), 2);
    rcheck((rcase){"ReduceSum", 13, AX_INPUT, D(0), 1, 0, -1}, 2, D(2, 2), F(15, 18, 21, 24), 4);
    rcheck((rcase){"ReduceSum", 13, AX_INPUT, D(-1), 1, 0, -1}, 2, D(3, 2),
           F(3, 7, 11, 15, 19, 23), 6);
    /* empty axes: reduce all, or nothing with noop_with_empty_axes = 1 */
    rcheck((rcase){"ReduceSum", 13, AX_INPUT, D(0), 0, 0, 0}, 0, D(0), F(78), 1);
    rcheck((rcase){"ReduceSum", 13, AX_INPUT, D(0), 0, 1, 1}, 3, D(3, 2, 2), X12, 12);
    rcheck((rcase){"ReduceSum", 13, AX_NONE, NULL, 0, 0, 1}, 3, D(3, 2, 2), X12, 12);
    /* noop only matters when axes are empty */
    rcheck((rcase){"ReduceSum", 13, AX_INPUT, D(-2), 1, 1, 1}, 3, D(3, 1, 2), s1, 6);
    /* opsets 1 and 11: axes as attribute */
    rcheck((rcase){"ReduceSum", 11, AX_ATTR, D(-2), 1, 1, -1}, 3, D(3, 1, 2), s1, 6);
    rcheck((rcase){"ReduceSum", 1, AX_ATTR, D(1), 1, 0, -1}, 2, D(3, 2), s1, 6);
    rcheck((rcase){"ReduceSum", 11, AX_NONE, NULL, 0, 0, -1}, 0, D(0), F(78), 1);
    rcheck((rcase){"ReduceSum", 11, AX_ATTR, D(0), 0, 0, -1}, 0, D(0), F(78), 1);
}

static void test_mean(void)
{
    const float *m1 = F(2, 3, 6, 7, 10, 11);
    /* opsets 1..13: axes as attribute */
    rcheck((rcase){"ReduceMean", 13, AX_ATTR, D(1), 1, 1, -1}, 3, D(3, 1, 2), m1, 6);
    rcheck((rcase){"ReduceMean", 13, AX_ATTR, D(1), 1, 0, -1}, 2, D(3, 2), m1, 6);
    rcheck((rcase){"ReduceMean", 11, AX_ATTR, D(-2), 1, 1, -1}, 3, D(3, 1, 2), m1, 6);
    rcheck((rcase){"ReduceMean", 1, AX_NONE, NULL, 0, -1, -1}, 3, D(1, 1, 1), F(6.5f), 1);
    rcheck((rcase){"ReduceMean", 13, AX_NONE, NULL, 0, 0, -1}, 0, D(0), F(6.5f), 1);
    rcheck((rcase){"ReduceMean", 13, AX_ATTR, D(0, 2), 2, 0, -1}, 1, D(2), F(5.5f, 7.5f), 2);
    /* opset 18+: axes as input, noop_with_empty_axes */
    rcheck((rcase){"ReduceMean", 18, AX_INPUT, D(-2), 1, 1, -1}, 3, D(3, 1, 2), m1, 6);
    rcheck((rcase){"ReduceMean", 18, AX_INPUT, D(0), 0, 1, 1}, 3, D(3, 2, 2), X12, 12);
    rcheck((rcase){"ReduceMean", 18, AX_INPUT, D(0), 0, 0, 0}, 0, D(0), F(6.5f), 1);
    rcheck((rcase){"ReduceMean", 18, AX_NONE, NULL, 0, 1, -1}, 3, D(1, 1, 1), F(6.5f), 1);
}

static void test_dtypes_and_edges(void)
{
    onyx_tensor in[2];
    onyx_tensor out[1];

    /* int64 sums are exact: 2^53 + 1 does not fit a double */
    int64_t xi[3] = {INT64_C(9007199254740993), 1, -2};
    in[0] = th_i64(1, D(3), xi);
    in[1] = th_omitted();
    th_node *t = th_node_new("ReduceSum", 13, 2, 1);
    th_attr_int(t, "keepdims", 0);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK(out[0].dtype == ONYX_DTYPE_I64 && out[0].rank == 0);
    CHECK(((int64_t *)out[0].data)[0] == INT64_C(9007199254740992));
    th_node_free(t);

    /* int32 mean truncates toward zero */
    int32_t x32[4] = {1, 2, -1, -2};
    in[0] = th_tensor(ONYX_DTYPE_I32, 2, D(2, 2), x32);
    t = th_node_new("ReduceMean", 13, 1, 1);
    th_attr_ints(t, "axes", D(1), 1);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK(out[0].dtype == ONYX_DTYPE_I32);
    CHECK(((int32_t *)out[0].data)[0] == 1 && ((int32_t *)out[0].data)[1] == -1);
    th_node_free(t);

    /* float16 and float64 through the generic path */
    uint16_t xh[4] = {0x3c00, 0x4000, 0x4200, 0x4400}; /* 1 2 3 4 */
    in[0] = th_tensor(ONYX_DTYPE_F16, 2, D(2, 2), xh);
    t = th_node_new("ReduceMean", 13, 1, 1);
    th_attr_ints(t, "axes", D(0), 1);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK(out[0].dtype == ONYX_DTYPE_F16 && out[0].rank == 2);
    CHECK(((uint16_t *)out[0].data)[0] == 0x4000 && ((uint16_t *)out[0].data)[1] == 0x4200);
    th_node_free(t);
    double xd[3] = {1e16, 1.0, -1e16};
    in[0] = th_tensor(ONYX_DTYPE_F64, 1, D(3), xd);
    t = th_node_new("ReduceSum", 11, 1, 1);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK(out[0].dtype == ONYX_DTYPE_F64 && ((double *)out[0].data)[0] == 0.0); /* in order */
    th_node_free(t);

    /* empty reductions: sum 0, mean NaN; an empty output */
    in[0] = th_f32(3, D(2, 0, 3), NULL);
    in[1] = th_i64(1, D(1), D(1));
    t = th_node_new("ReduceSum", 13, 2, 1);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 3, D(2, 1, 3));
    CHECK(f32_near(&out[0], F(0, 0, 0, 0, 0, 0), 6));
    in[1] = th_i64(1, D(1), D(2));
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 3, D(2, 0, 1));
    th_node_free(t);
    in[0] = th_f32(2, D(0, 2), NULL);
    t = th_node_new("ReduceMean", 13, 1, 1);
    th_attr_ints(t, "axes", D(0), 1);
    th_attr_int(t, "keepdims", 0);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 1, D(2));
    CHECK(isnan(((float *)out[0].data)[0]) && isnan(((float *)out[0].data)[1]));
    th_node_free(t);

    /* reducing only dims of size 1: a copy */
    in[0] = th_f32(3, D(3, 1, 2), F(1, 2, 3, 4, 5, 6));
    t = th_node_new("ReduceMean", 13, 1, 1);
    th_attr_ints(t, "axes", D(1), 1);
    th_attr_int(t, "keepdims", 0);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 2, D(3, 2));
    CHECK(f32_near(&out[0], F(1, 2, 3, 4, 5, 6), 6));
    th_node_free(t);

    /* a scalar */
    in[0] = th_f32(0, D(0), F(2.5f));
    t = th_node_new("ReduceSum", 11, 1, 1);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK(out[0].rank == 0 && ((float *)out[0].data)[0] == 2.5f);
    th_node_free(t);

    /* accuracy on a long row: 10^6 times 0.1f summed in double */
    enum { N = 1000000 };
    float *x = malloc(sizeof(float) * N);
    for (int i = 0; i < N; i++)
        x[i] = 0.1f;
    in[0] = th_f32(1, D(N), x);
    t = th_node_new("ReduceSum", 11, 1, 1);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK_NEAR_TOL(((float *)out[0].data)[0], (double)0.1f * N, 0, 1e-7);
    th_node_free(t);
    /* the same down a column (the first-axis path) */
    in[0] = th_f32(2, D(N / 2, 2), x);
    t = th_node_new("ReduceMean", 11, 1, 1);
    th_attr_ints(t, "axes", D(0), 1);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK_NEAR_TOL(((float *)out[0].data)[1], (double)0.1f, 0, 1e-7);
    th_node_free(t);
    free(x);
}

/* Plain reference: y[o] = sum over x's elements whose kept coordinates give o, in double. */
static void reduce_naive(const float *x, int rank, const int64_t *dims, const bool *mark,
                         bool mean, double *y, int64_t n_out)
{
    int64_t n = 1;
    int64_t count = 1;
    for (int k = 0; k < rank; k++) {
        n *= dims[k];
        if (mark[k])
            count *= dims[k];
    }
    for (int64_t o = 0; o < n_out; o++)
        y[o] = 0.0;
    for (int64_t i = 0; i < n; i++) {
        int64_t rem = i;
        int64_t coord[ONYX_MAX_RANK];
        for (int k = rank - 1; k >= 0; k--) {
            coord[k] = rem % dims[k];
            rem /= dims[k];
        }
        int64_t o = 0;
        for (int k = 0; k < rank; k++)
            if (!mark[k])
                o = o * dims[k] + coord[k];
        y[o] += x[i];
    }
    if (mean)
        for (int64_t o = 0; o < n_out; o++)
            y[o] /= (double)count;
}

/* Every subset of axes of the shape, both ops, both keepdims: fast and generic paths vs the
 * reference. */
static void fast_vs_naive(int rank, const int64_t *dims)
{
    int64_t n = 1;
    for (int k = 0; k < rank; k++)
        n *= dims[k];
    float *x = malloc(sizeof(float) * (size_t)n);
    double *want = malloc(sizeof(double) * (size_t)n);
    uint32_t s = 12345;
    for (int64_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)((double)(s >> 8) / 16777216.0 * 2.0 - 1.0);
    }
    int bad = 0;
    for (int mask = 1; mask < (1 << rank); mask++) {
        bool mark[ONYX_MAX_RANK];
        int64_t axes[ONYX_MAX_RANK];
        int n_axes = 0;
        int64_t n_out = 1;
        for (int k = 0; k < rank; k++) {
            mark[k] = (mask >> k) & 1;
            if (mark[k])
                axes[n_axes++] = k - (k % 2 ? rank : 0); /* mix negative axes in */
            else
                n_out *= dims[k];
        }
        for (int op = 0; op < 2; op++) {
            reduce_naive(x, rank, dims, mark, op == 1, want, n_out);
            for (int keep = 0; keep < 2; keep++) {
                th_node *t = th_node_new(op ? "ReduceMean" : "ReduceSum", 13, op ? 1 : 2, 1);
                if (op)
                    th_attr_ints(t, "axes", axes, (size_t)n_axes);
                th_attr_int(t, "keepdims", keep);
                onyx_tensor in[2] = {th_f32(rank, dims, x), th_i64(1, D(n_axes), axes)};
                onyx_tensor out[1];
                onyx_status st = th_run(t, ONYX_MODE_INFER, in, out, &err);
                CHECK_OK(st, err.msg);
                if (st == ONYX_OK) {
                    CHECK(onyx_numel(&out[0]) == n_out);
                    CHECK(out[0].rank == (keep ? rank : rank - n_axes));
                    const float *y = out[0].data;
                    for (int64_t o = 0; o < n_out; o++)
                        if (!(fabs(y[o] - want[o]) <= 1e-5 + 1e-6 * fabs(want[o])))
                            bad++;
                }
                th_node_free(t);
            }
        }
    }
    CHECK(bad == 0);
    free(x);
    free(want);
}

static void test_fast_vs_naive(void)
{
    fast_vs_naive(4, D(3, 5, 7, 2));
    fast_vs_naive(4, D(1, 4, 1, 3));
    fast_vs_naive(3, D(2, 5, 513)); /* more columns than one accumulator block */
    fast_vs_naive(2, D(3, 300));
    fast_vs_naive(5, D(2, 3, 1, 4, 3));
    fast_vs_naive(1, D(17));
}

static void test_errors_and_load_time(void)
{
    onyx_tensor x = th_f32(3, D(3, 2, 2), X12);
    CHECK_ERR(rerr((rcase){"ReduceSum", 13, AX_INPUT, D(1, -2), 2, 1, -1}, x), ONYX_ERR_SHAPE,
              "axes [1,-2] names axis 1 twice");
    CHECK_ERR(rerr((rcase){"ReduceSum", 13, AX_INPUT, D(3), 1, 1, -1}, x), ONYX_ERR_SHAPE,
              "axes [3]: entry 3 is out of range [-3, 2] for input 0 (data) of rank 3");
    CHECK_ERR(rerr((rcase){"ReduceMean", 13, AX_ATTR, D(-4), 1, 1, -1}, x), ONYX_ERR_SHAPE,
              "entry -4 is out of range");
    CHECK_ERR(rerr((rcase){"ReduceMean", 1, AX_ATTR, D(-1), 1, 1, -1}, x),
              ONYX_ERR_INVALID_MODEL, "axes [-1] has a negative entry; negative axes need "
                                      "opset 11");
    CHECK_ERR(rerr((rcase){"ReduceSum", 13, AX_ATTR, D(1), 1, 1, -1}, x),
              ONYX_ERR_INVALID_MODEL, "has an axes attribute; from opset 13 axes is input 1");
    CHECK_ERR(rerr((rcase){"ReduceMean", 18, AX_ATTR, D(1), 1, 1, -1}, x),
              ONYX_ERR_INVALID_MODEL, "from opset 18 axes is input 1");
    CHECK_ERR(rerr((rcase){"ReduceMean", 13, AX_INPUT, D(1), 1, 1, -1}, x),
              ONYX_ERR_INVALID_MODEL, "has 2 inputs, expected 1");
    CHECK_ERR(rerr((rcase){"ReduceSum", 11, AX_INPUT, D(1), 1, 1, -1}, x),
              ONYX_ERR_INVALID_MODEL, "has 2 inputs, expected 1");
    CHECK_ERR(rerr((rcase){"ReduceSum", 13, AX_NONE, NULL, 0, 2, -1}, x),
              ONYX_ERR_INVALID_MODEL, "keepdims is 2, expected 0 or 1");
    CHECK_ERR(rerr((rcase){"ReduceSum", 13, AX_NONE, NULL, 0, 1, 3}, x),
              ONYX_ERR_INVALID_MODEL, "noop_with_empty_axes is 3");
    CHECK_ERR(rerr((rcase){"ReduceSum", 13, AX_NONE, NULL, 0, -1, -1},
                   th_tensor(ONYX_DTYPE_BOOL, 1, D(2), NULL)),
              ONYX_ERR_SHAPE, "input 0 (data) has dtype bool, expected a numeric type");

    onyx_tensor in[2] = {x, th_tensor(ONYX_DTYPE_I32, 1, D(1), (const int32_t[]){1})};
    onyx_tensor out[1];
    th_node *t = th_node_new("ReduceSum", 13, 2, 1);
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_SHAPE,
              "input 1 (axes) has dtype int32, expected int64");
    in[1] = th_i64(2, D(1, 1), D(1));
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_SHAPE, "input 1 (axes) has shape [1,1]");
    /* load time: axes values unknown, keepdims = 1: the rank is known */
    in[0] = th_f32(3, D(-1, 3, 4), NULL);
    in[1] = th_i64(1, D(1), NULL);
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 3, D(-1, -1, -1));
    /* known axes, unknown batch */
    in[1] = th_i64(1, D(1), D(-1));
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 3, D(-1, 3, 1));
    /* x of unknown rank */
    in[0] = th_omitted();
    in[0].dtype = ONYX_DTYPE_F32;
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK(out[0].rank == -1 && out[0].dtype == ONYX_DTYPE_F32);
    th_node_free(t);

    t = th_node_new("ReduceSum", 13, 2, 1);
    th_attr_int(t, "keepdims", 0);
    in[0] = th_f32(3, D(-1, 3, 4), NULL);
    in[1] = th_i64(1, D(2), NULL);
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 1, D(-1));
    in[1] = th_i64(1, D(-1), NULL);
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK(out[0].rank == -1);
    in[1] = th_i64(1, D(4), NULL);
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_SHAPE,
              "input 1 (axes) has 4 entries, more than the rank 3");
    /* an empty axes tensor is known without data: reduce all */
    in[1] = th_i64(1, D(0), NULL);
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK(out[0].rank == 0);
    th_node_free(t);

    t = th_node_new("ReduceSum", 13, 2, 1);
    th_attr_int(t, "noop_with_empty_axes", 1);
    in[1] = th_i64(1, D(0), NULL);
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 3, D(-1, 3, 4));
    th_node_free(t);

    t = th_node_new("ReduceMean", 13, 1, 1);
    th_attr_ints(t, "axes", D(1), 1);
    th_attr_int(t, "keepdims", 0);
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK_DIMS(out[0], 2, D(-1, 4));
    th_node_free(t);
}

/* ---- backward ----------------------------------------------------------------------------- */

static int grad_checks;

/* Case c on a [4,3,2] input of deterministic values: backward against finite differences. */
static void grad_case(rcase c, int rank, const int64_t *dims)
{
    static uint64_t lcg = 0x9e3779b97f4a7c15u;
    float x[64];
    int64_t numel = th_numel(rank, dims);
    for (int64_t i = 0; i < numel; i++)
        x[i] = th_frand(&lcg);
    onyx_tensor in[2] = {th_f32(rank, dims, x), th_omitted()};
    if (c.how == AX_INPUT)
        in[1] = th_i64(1, D(c.n_axes), c.axes);
    th_node *t = rnode(&c);
    grad_checks++;
    CHECK(th_grad_check_default(t, ONYX_MODE_TRAIN, in, 1u) == 0);
    th_node_free(t);
}

static void test_backward(void)
{
    static const char *const ops[2] = {"ReduceSum", "ReduceMean"};
    const int64_t *dims = D(4, 3, 2);
    for (int o = 0; o < 2; o++) {
        int64_t in_opset = o == 0 ? 13 : 18; /* axes from input 1 */
        int64_t attr_opset = o == 0 ? 11 : 13;
        for (int64_t keep = 0; keep < 2; keep++) {
            /* axes as input: one axis (first, middle, last, negative), two, all, none */
            grad_case((rcase){ops[o], in_opset, AX_INPUT, D(0), 1, keep, -1}, 3, dims);
            grad_case((rcase){ops[o], in_opset, AX_INPUT, D(1), 1, keep, -1}, 3, dims);
            grad_case((rcase){ops[o], in_opset, AX_INPUT, D(-1), 1, keep, -1}, 3, dims);
            grad_case((rcase){ops[o], in_opset, AX_INPUT, D(2, 0), 2, keep, -1}, 3, dims);
            grad_case((rcase){ops[o], in_opset, AX_INPUT, D(0, 1, 2), 3, keep, -1}, 3, dims);
            grad_case((rcase){ops[o], in_opset, AX_NONE, NULL, 0, keep, -1}, 3, dims);
            grad_case((rcase){ops[o], in_opset, AX_NONE, NULL, 0, keep, 0}, 3, dims);
            /* empty axes: everything, or nothing (the identity) with noop_with_empty_axes */
            grad_case((rcase){ops[o], in_opset, AX_INPUT, D(0), 0, keep, 0}, 3, dims);
            grad_case((rcase){ops[o], in_opset, AX_INPUT, D(0), 0, keep, 1}, 3, dims);
            grad_case((rcase){ops[o], in_opset, AX_NONE, NULL, 0, keep, 1}, 3, dims);
            /* noop only matters when the axes are empty */
            grad_case((rcase){ops[o], in_opset, AX_INPUT, D(1), 1, keep, 1}, 3, dims);
            /* axes as attribute, opsets 1 and 11/13 */
            grad_case((rcase){ops[o], attr_opset, AX_ATTR, D(-2), 1, keep, -1}, 3, dims);
            grad_case((rcase){ops[o], 1, AX_ATTR, D(0, 2), 2, keep, -1}, 3, dims);
            grad_case((rcase){ops[o], attr_opset, AX_NONE, NULL, 0, keep, -1}, 3, dims);
            /* size-1 dims among the reduced and the kept ones, and a scalar */
            grad_case((rcase){ops[o], attr_opset, AX_ATTR, D(1, 3), 2, keep, -1}, 4,
                      D(2, 1, 3, 1));
            grad_case((rcase){ops[o], attr_opset, AX_ATTR, D(0), 1, keep, -1}, 1, D(5));
            grad_case((rcase){ops[o], attr_opset, AX_NONE, NULL, 0, keep, -1}, 0, NULL);
        }
    }
    /* attribute keepdims left unset (1) */
    grad_case((rcase){"ReduceMean", 13, AX_ATTR, D(1), 1, -1, -1}, 3, dims);

    /* By hand: x [2,3]; ReduceMean over axis 1 (keepdims 0) with dy = [3, 6] gives dx = dy / 3
     * on each row; ReduceSum over axis 0 with dy = [1, 2, 3] gives each row dy. Gradients are
     * accumulated onto 1s. */
    float x[6] = {1, 2, 3, 4, 5, 6};
    onyx_tensor in[2] = {th_f32(2, D(2, 3), x), th_omitted()};
    onyx_tensor out[1];
    th_node *t = th_node_new("ReduceMean", 13, 1, 1);
    th_attr_ints(t, "axes", D(1), 1);
    th_attr_int(t, "keepdims", 0);
    CHECK_OK(th_run(t, ONYX_MODE_TRAIN, in, out, &err), err.msg);
    float dy[3] = {3, 6, 0};
    float dx[6] = {1, 1, 1, 1, 1, 1};
    onyx_tensor dout[1] = {th_f32(1, D(2), dy)};
    onyx_tensor din[2] = {th_f32(2, D(2, 3), dx), th_omitted()};
    onyx_node *n = th_onyx_node(t);
    onyx_kctx ctx = {.mode = ONYX_MODE_TRAIN};
    n->impl->backward(n, &ctx, in, out, dout, din);
    CHECK(f32_near(&din[0], F(2, 2, 2, 3, 3, 3), 6));
    /* no gradient wanted, or none flowing: nothing changes */
    din[0].data = NULL;
    n->impl->backward(n, &ctx, in, out, dout, din);
    din[0].data = dx;
    dout[0].data = NULL;
    n->impl->backward(n, &ctx, in, out, dout, din);
    CHECK(f32_near(&din[0], F(2, 2, 2, 3, 3, 3), 6));
    CHECK(n->impl->grad_inputs == 1u); /* data only, never the axes */
    th_node_free(t);

    t = th_node_new("ReduceSum", 13, 2, 1);
    in[1] = th_i64(1, D(1), D(0));
    CHECK_OK(th_run(t, ONYX_MODE_TRAIN, in, out, &err), err.msg);
    dy[0] = 1;
    dy[1] = 2;
    dy[2] = 3;
    dout[0] = th_f32(2, D(1, 3), dy);
    for (int i = 0; i < 6; i++)
        dx[i] = 1;
    n = th_onyx_node(t);
    n->impl->backward(n, &ctx, in, out, dout, din);
    CHECK(f32_near(&din[0], F(2, 3, 4, 2, 3, 4), 6));
    th_node_free(t);

    /* noop_with_empty_axes and no axes: the identity, dx += dy */
    t = th_node_new("ReduceSum", 13, 1, 1);
    th_attr_int(t, "noop_with_empty_axes", 1);
    in[1] = th_omitted();
    CHECK_OK(th_run(t, ONYX_MODE_TRAIN, in, out, &err), err.msg);
    dout[0] = th_f32(2, D(2, 3), x);
    n = th_onyx_node(t);
    n->impl->backward(n, &ctx, in, out, dout, din);
    CHECK(f32_near(&din[0], F(3, 5, 7, 6, 8, 10), 6));
    th_node_free(t);
    printf("reduce gradient checks: %d\n", grad_checks);
}

int main(void)
{
    test_sum();
    test_mean();
    test_dtypes_and_edges();
    test_fast_vs_naive();
    test_errors_and_load_time();
    test_backward();
    return check_report();
}
