/* test_elementwise.c — ops/elementwise.c: Add, Sub, Mul, Div, Pow, Sum, Sqrt, Neg, Abs, Exp, Log,
 * Erf. Expected values are hand-computed, copied from the official ONNX conformance data
 * (/usr/share/libonnx-testdata/data/node/test_<op>*), or computed here in double with a naive
 * div/mod broadcasting loop that follows the numpy rule directly. */
#include "check.h"
#include "grad_check.h"
#include "op_harness.h"
#include "ops.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------------------------ */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull; /* th_urand's, for this file's data */

static double ref_binary(const char *op, double a, double b)
{
    if (strcmp(op, "Add") == 0)
        return a + b;
    if (strcmp(op, "Sub") == 0)
        return a - b;
    if (strcmp(op, "Mul") == 0)
        return a * b;
    if (strcmp(op, "Div") == 0)
        return a / b;
    return pow(a, b);
}

/* ---- binary ops: hand values -------------------------------------------------------------- */

static void test_binary_values(void)
{
    static const struct {
        const char *op;
        float a[4];
        float b[4];
        float y[4];
    } cases[] = {
        {"Add", {1, 2, 3, -4}, {4, 5, 6, 0.5f}, {5, 7, 9, -3.5f}},
        {"Sub", {1, 2, 3, -4}, {4, 5, 6, 0.5f}, {-3, -3, -3, -4.5f}},
        {"Mul", {1, 2, 3, -4}, {4, 5, 6, 0.5f}, {4, 10, 18, -2}},
        {"Div", {3, 4, -1, 1}, {1, 2, 4, 8}, {3, 2, -0.25f, 0.125f}},
        {"Pow", {1, 2, 3, 4}, {4, 5, 6, 0.5f}, {1, 32, 729, 2}}, /* test_pow_example */
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        th_node *n = th_node_new(cases[c].op, 14, 2, 1);
        int64_t d[1] = {4};
        onyx_tensor in[2] = {th_f32(1, d, cases[c].a), th_f32(1, d, cases[c].b)};
        onyx_tensor out[1];
        onyx_error err = {0};
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        CHECK(out[0].dtype == ONYX_DTYPE_F32 && th_dims_eq(&out[0], 1, d));
        const float *y = out[0].data;
        for (int i = 0; i < 4; i++)
            CHECK_NEAR(y[i], cases[c].y[i]);
        th_node_free(n);
    }

    /* Div by zero follows IEEE: inf and NaN */
    {
        th_node *n = th_node_new("Div", 14, 2, 1);
        float a[3] = {1, -1, 0};
        float b[3] = {0, 0, 0};
        int64_t d[1] = {3};
        onyx_tensor in[2] = {th_f32(1, d, a), th_f32(1, d, b)};
        onyx_tensor out[1];
        onyx_error err = {0};
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        const float *y = out[0].data;
        CHECK(isinf(y[0]) && y[0] > 0);
        CHECK(isinf(y[1]) && y[1] < 0);
        CHECK(isnan(y[2]));
        th_node_free(n);
    }

    /* test_pow_bcast_array: [[1,2,3],[4,5,6]] ^ [1,2,3] */
    {
        th_node *n = th_node_new("Pow", 15, 2, 1);
        float a[6] = {1, 2, 3, 4, 5, 6};
        float b[3] = {1, 2, 3};
        float want[6] = {1, 4, 27, 4, 25, 216};
        int64_t da[2] = {2, 3};
        int64_t db[1] = {3};
        onyx_tensor in[2] = {th_f32(2, da, a), th_f32(1, db, b)};
        onyx_tensor out[1];
        onyx_error err = {0};
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        CHECK(th_dims_eq(&out[0], 2, da));
        for (int i = 0; i < 6; i++)
            CHECK_NEAR(((float *)out[0].data)[i], want[i]);
        th_node_free(n);
    }

    /* test_pow_bcast_scalar: [1,2,3] ^ 2 (rank 0) */
    {
        th_node *n = th_node_new("Pow", 15, 2, 1);
        float a[3] = {1, 2, 3};
        float b[1] = {2};
        int64_t da[1] = {3};
        onyx_tensor in[2] = {th_f32(1, da, a), th_f32(0, NULL, b)};
        onyx_tensor out[1];
        onyx_error err = {0};
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        CHECK(th_dims_eq(&out[0], 1, da));
        CHECK_NEAR(((float *)out[0].data)[0], 1);
        CHECK_NEAR(((float *)out[0].data)[1], 4);
        CHECK_NEAR(((float *)out[0].data)[2], 9);
        th_node_free(n);
    }
}

/* Hand-computed broadcasting: scalar, row, column, 4-D vs 1-D, rank 0 with rank 0. */
static void test_binary_broadcast_values(void)
{
    onyx_error err = {0};
    onyx_tensor out[1];

    /* row: [[1,2,3],[4,5,6]] - [10,20,30] */
    {
        th_node *n = th_node_new("Sub", 14, 2, 1);
        float a[6] = {1, 2, 3, 4, 5, 6};
        float b[3] = {10, 20, 30};
        float want[6] = {-9, -18, -27, -6, -15, -24};
        int64_t da[2] = {2, 3};
        int64_t db[1] = {3};
        onyx_tensor in[2] = {th_f32(2, da, a), th_f32(1, db, b)};
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        CHECK(th_dims_eq(&out[0], 2, da));
        for (int i = 0; i < 6; i++)
            CHECK_NEAR(((float *)out[0].data)[i], want[i]);
        /* the row on the left: [10,20,30] - [[1,2,3],[4,5,6]] */
        th_node_free(n);
        n = th_node_new("Sub", 14, 2, 1);
        onyx_tensor in2[2] = {th_f32(1, db, b), th_f32(2, da, a)};
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in2, out, &err), err.msg);
        for (int i = 0; i < 6; i++)
            CHECK_NEAR(((float *)out[0].data)[i], -want[i]);
        th_node_free(n);
    }
    /* column: [[1,2,3],[4,5,6]] * [[2],[10]] */
    {
        th_node *n = th_node_new("Mul", 14, 2, 1);
        float a[6] = {1, 2, 3, 4, 5, 6};
        float b[2] = {2, 10};
        float want[6] = {2, 4, 6, 40, 50, 60};
        int64_t da[2] = {2, 3};
        int64_t db[2] = {2, 1};
        onyx_tensor in[2] = {th_f32(2, da, a), th_f32(2, db, b)};
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        CHECK(th_dims_eq(&out[0], 2, da));
        for (int i = 0; i < 6; i++)
            CHECK_NEAR(((float *)out[0].data)[i], want[i]);
        th_node_free(n);
    }
    /* outer: [[1],[2]] + [10,20,30] -> [[11,21,31],[12,22,32]] */
    {
        th_node *n = th_node_new("Add", 14, 2, 1);
        float a[2] = {1, 2};
        float b[3] = {10, 20, 30};
        float want[6] = {11, 21, 31, 12, 22, 32};
        int64_t da[2] = {2, 1};
        int64_t db[1] = {3};
        int64_t dy[2] = {2, 3};
        onyx_tensor in[2] = {th_f32(2, da, a), th_f32(1, db, b)};
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        CHECK(th_dims_eq(&out[0], 2, dy));
        for (int i = 0; i < 6; i++)
            CHECK_NEAR(((float *)out[0].data)[i], want[i]);
        th_node_free(n);
    }
    /* 4-D [1,2,1,2] / 1-D [2]: y[0,c,0,w] = a[c,w] / b[w] */
    {
        th_node *n = th_node_new("Div", 14, 2, 1);
        float a[4] = {1, 2, 3, 4};
        float b[2] = {2, 4};
        float want[4] = {0.5f, 0.5f, 1.5f, 1};
        int64_t da[4] = {1, 2, 1, 2};
        int64_t db[1] = {2};
        onyx_tensor in[2] = {th_f32(4, da, a), th_f32(1, db, b)};
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        CHECK(th_dims_eq(&out[0], 4, da));
        for (int i = 0; i < 4; i++)
            CHECK_NEAR(((float *)out[0].data)[i], want[i]);
        th_node_free(n);
    }
    /* rank 0 with rank 0 gives rank 0; rank 0 with [1] gives [1] */
    {
        th_node *n = th_node_new("Add", 14, 2, 1);
        float a[1] = {1.5f};
        float b[1] = {2.25f};
        onyx_tensor in[2] = {th_f32(0, NULL, a), th_f32(0, NULL, b)};
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        CHECK(out[0].rank == 0);
        CHECK_NEAR(((float *)out[0].data)[0], 3.75);
        int64_t d1[1] = {1};
        in[1] = th_f32(1, d1, b);
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        CHECK(th_dims_eq(&out[0], 1, d1));
        CHECK_NEAR(((float *)out[0].data)[0], 3.75);
        th_node_free(n);
    }
}

/* ---- fast paths against the naive reference ----------------------------------------------- */

static const struct bcase {
    int ra;
    int64_t da[6];
    int rb;
    int64_t db[6];
    int ry;
    int64_t dy[6];
} bcases[] = {
    {1, {1}, 1, {1}, 1, {1}},
    {1, {7}, 1, {7}, 1, {7}},                            /* same shape, prime */
    {3, {3, 5, 7}, 3, {3, 5, 7}, 3, {3, 5, 7}},          /* same shape, 3-D */
    {1, {1031}, 0, {0}, 1, {1031}},                      /* b scalar (rank 0) */
    {0, {0}, 1, {1031}, 1, {1031}},                      /* a scalar */
    {2, {13, 17}, 2, {1, 1}, 2, {13, 17}},               /* b one element, rank 2 */
    {0, {0}, 0, {0}, 0, {0}},                            /* both rank 0 */
    {2, {13, 17}, 1, {17}, 2, {13, 17}},                 /* row */
    {1, {17}, 2, {13, 17}, 2, {13, 17}},                 /* row on the left */
    {2, {13, 17}, 2, {13, 1}, 2, {13, 17}},              /* column */
    {2, {13, 1}, 2, {1, 17}, 2, {13, 17}},               /* outer */
    {4, {2, 3, 5, 7}, 1, {7}, 4, {2, 3, 5, 7}},          /* 4-D vs 1-D */
    {4, {2, 3, 5, 7}, 3, {3, 1, 1}, 4, {2, 3, 5, 7}},    /* channel */
    {4, {2, 1, 5, 1}, 4, {1, 3, 1, 7}, 4, {2, 3, 5, 7}}, /* both broadcast */
    {3, {5, 7, 3}, 3, {5, 1, 3}, 3, {5, 7, 3}},          /* middle */
    {3, {1, 1, 1}, 1, {1}, 3, {1, 1, 1}},
    {3, {4, 1, 3}, 3, {4, 1, 3}, 3, {4, 1, 3}},
    {6, {2, 3, 1, 5, 2, 3}, 5, {3, 4, 1, 1, 3}, 6, {2, 3, 4, 5, 2, 3}},
    {2, {0, 3}, 1, {3}, 2, {0, 3}}, /* empty */
    {3, {2, 0, 3}, 2, {1, 3}, 3, {2, 0, 3}},
    {1, {0}, 0, {0}, 1, {0}},
    {2, {1, 0}, 2, {5, 1}, 2, {5, 0}},
};

/* op over every bcase, in float32 (the fast paths) and float64 (the generic path). */
static void fast_vs_naive_binary(const char *op, int64_t opset)
{
    for (size_t c = 0; c < sizeof(bcases) / sizeof(bcases[0]); c++) {
        const struct bcase *k = &bcases[c];
        int64_t na = th_numel(k->ra, k->da);
        int64_t nb = th_numel(k->rb, k->db);
        int64_t ny = th_numel(k->ry, k->dy);
        float *a = malloc(sizeof(float) * (size_t)(na + 1));
        float *b = malloc(sizeof(float) * (size_t)(nb + 1));
        double *a64 = malloc(sizeof(double) * (size_t)(na + 1));
        double *b64 = malloc(sizeof(double) * (size_t)(nb + 1));
        double *want = malloc(sizeof(double) * (size_t)(ny + 1));
        bool is_pow = strcmp(op, "Pow") == 0;
        bool is_div = strcmp(op, "Div") == 0;
        for (int64_t i = 0; i < na; i++)
            a[i] = (float)(is_pow ? th_urand(&rng_state, 0.5, 2) : th_urand(&rng_state, -3, 3));
        for (int64_t i = 0; i < nb; i++) {
            double v = is_pow ? th_urand(&rng_state, -2, 2) : th_urand(&rng_state, -3, 3);
            if (is_div)
                v = (th_urand(&rng_state, 0, 1) < 0.5 ? -1 : 1) * th_urand(&rng_state, 0.5, 2);
            b[i] = (float)v;
        }
        for (int64_t i = 0; i < na; i++)
            a64[i] = a[i];
        for (int64_t i = 0; i < nb; i++)
            b64[i] = b[i];
        onyx_tensor ty = th_f32(k->ry, k->dy, NULL);
        onyx_tensor ta = th_f32(k->ra, k->da, a);
        onyx_tensor tb = th_f32(k->rb, k->db, b);
        for (int64_t i = 0; i < ny; i++)
            want[i] =
                ref_binary(op, a[th_naive_index(&ty, &ta, i)], b[th_naive_index(&ty, &tb, i)]);

        char label[64];
        snprintf(label, sizeof label, "%s f32 case %zu", op, c);
        th_node *n = th_node_new(op, opset, 2, 1);
        onyx_tensor in[2] = {ta, tb};
        onyx_tensor out[1];
        onyx_error err = {0};
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        CHECK(th_dims_eq(&out[0], k->ry, k->dy));
        CHECK(th_close_f32(out[0].data, want, ny, 1e-6, 1e-6, label));
        th_node_free(n);

        snprintf(label, sizeof label, "%s f64 case %zu", op, c);
        n = th_node_new(op, opset, 2, 1);
        in[0] = th_tensor(ONYX_DTYPE_F64, k->ra, k->da, a64);
        in[1] = th_tensor(ONYX_DTYPE_F64, k->rb, k->db, b64);
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        CHECK(out[0].dtype == ONYX_DTYPE_F64 && th_dims_eq(&out[0], k->ry, k->dy));
        CHECK(th_close_f64(out[0].data, want, ny, 1e-300, 1e-15, label));
        th_node_free(n);

        free(a);
        free(b);
        free(a64);
        free(b64);
        free(want);
    }
}

/* ---- integer and mixed dtypes ------------------------------------------------------------- */

static void run_typed(const char *op, int64_t opset, onyx_dtype ta, const void *a, onyx_dtype tb,
                      const void *b, int64_t len, onyx_tensor *out, th_node **keep)
{
    th_node *n = th_node_new(op, opset, 2, 1);
    int64_t d[1] = {len};
    onyx_tensor in[2] = {th_tensor(ta, 1, d, a), th_tensor(tb, 1, d, b)};
    onyx_error err = {0};
    CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
    *keep = n;
}

static void test_binary_integers(void)
{
    onyx_tensor out[1];
    th_node *n;

    /* uint8 wraps modulo 256 (numpy); the first values are test_{add,sub,mul,div}_uint8's */
    {
        uint8_t a[6] = {12, 20, 200, 3, 16, 255};
        uint8_t b[6] = {4, 4, 100, 5, 17, 1};
        run_typed("Add", 14, ONYX_DTYPE_U8, a, ONYX_DTYPE_U8, b, 6, out, &n);
        const uint8_t *y = out[0].data;
        CHECK(out[0].dtype == ONYX_DTYPE_U8);
        CHECK(y[0] == 16 && y[1] == 24 && y[2] == 44 && y[3] == 8 && y[4] == 33 && y[5] == 0);
        th_node_free(n);
        run_typed("Sub", 14, ONYX_DTYPE_U8, a, ONYX_DTYPE_U8, b, 6, out, &n);
        y = out[0].data;
        CHECK(y[0] == 8 && y[1] == 16 && y[2] == 100 && y[3] == 254 && y[4] == 255 && y[5] == 254);
        th_node_free(n);
        run_typed("Mul", 14, ONYX_DTYPE_U8, a, ONYX_DTYPE_U8, b, 6, out, &n);
        y = out[0].data;
        CHECK(y[0] == 48 && y[1] == 80 && y[2] == (uint8_t)(200 * 100) && y[3] == 15 &&
              y[4] == (uint8_t)(16 * 17) && y[5] == 255);
        th_node_free(n);
    }
    {
        /* test_div_uint8's first elements, then 255/16 and x/0 (0, as numpy gives) */
        uint8_t a[8] = {16, 6, 0, 12, 18, 3, 255, 7};
        uint8_t b[8] = {11, 5, 23, 23, 23, 1, 16, 0};
        uint8_t want[8] = {1, 1, 0, 0, 0, 3, 15, 0};
        run_typed("Div", 14, ONYX_DTYPE_U8, a, ONYX_DTYPE_U8, b, 8, out, &n);
        const uint8_t *y = out[0].data;
        for (int i = 0; i < 8; i++)
            CHECK(y[i] == want[i]);
        th_node_free(n);
    }
    /* int32 and int64: exact, wrapping, division truncating toward zero */
    {
        int32_t a[4] = {INT32_MAX, -7, 7, 123456};
        int32_t b[4] = {1, 2, -2, 1000};
        run_typed("Add", 13, ONYX_DTYPE_I32, a, ONYX_DTYPE_I32, b, 4, out, &n);
        const int32_t *y = out[0].data;
        CHECK(y[0] == INT32_MIN && y[1] == -5 && y[2] == 5 && y[3] == 124456);
        th_node_free(n);
        run_typed("Div", 13, ONYX_DTYPE_I32, a, ONYX_DTYPE_I32, b, 4, out, &n);
        y = out[0].data;
        CHECK(y[0] == INT32_MAX && y[1] == -3 && y[2] == -3 && y[3] == 123);
        th_node_free(n);
        run_typed("Mul", 13, ONYX_DTYPE_I32, a, ONYX_DTYPE_I32, b, 4, out, &n);
        y = out[0].data;
        CHECK(y[0] == INT32_MAX && y[1] == -14 && y[2] == -14 && y[3] == 123456000);
        th_node_free(n);
    }
    {
        /* test_operator_non_float_params: x + init, then x * that; and values past 2^53 */
        int64_t x[6] = {1, 2, 3, 4, (int64_t)1 << 62, 9007199254740993};
        int64_t c[6] = {1, 2, 3, 4, (int64_t)1 << 62, 2};
        run_typed("Add", 13, ONYX_DTYPE_I64, x, ONYX_DTYPE_I64, c, 6, out, &n);
        int64_t s[6];
        memcpy(s, out[0].data, sizeof s);
        CHECK(s[0] == 2 && s[1] == 4 && s[2] == 6 && s[3] == 8);
        CHECK(s[4] == INT64_MIN);        /* 2^62 + 2^62 wraps */
        CHECK(s[5] == 9007199254740995); /* exact beyond double's 2^53 */
        th_node_free(n);
        run_typed("Mul", 13, ONYX_DTYPE_I64, x, ONYX_DTYPE_I64, s, 4, out, &n);
        const int64_t *y = out[0].data;
        CHECK(y[0] == 2 && y[1] == 8 && y[2] == 18 && y[3] == 32);
        th_node_free(n);
        int64_t p[3] = {INT64_MIN, -9, 5};
        int64_t q[3] = {-1, 2, 0};
        run_typed("Div", 13, ONYX_DTYPE_I64, p, ONYX_DTYPE_I64, q, 3, out, &n);
        y = out[0].data;
        CHECK(y[0] == INT64_MIN && y[1] == -4 && y[2] == 0);
        th_node_free(n);
    }
    /* uint64 divides as unsigned */
    {
        uint64_t a[2] = {UINT64_MAX, 10};
        uint64_t b[2] = {2, 3};
        run_typed("Div", 13, ONYX_DTYPE_U64, a, ONYX_DTYPE_U64, b, 2, out, &n);
        const uint64_t *y = out[0].data;
        CHECK(y[0] == UINT64_MAX / 2 && y[1] == 3);
        th_node_free(n);
    }
    /* float16 through the generic path: 1 + 2 = 3, 0.5 * 0.5 = 0.25 */
    {
        uint16_t a[2] = {onyx_f32_to_f16(1.0f), onyx_f32_to_f16(0.5f)};
        uint16_t b[2] = {onyx_f32_to_f16(2.0f), onyx_f32_to_f16(0.5f)};
        run_typed("Add", 14, ONYX_DTYPE_F16, a, ONYX_DTYPE_F16, b, 2, out, &n);
        const uint16_t *y = out[0].data;
        CHECK(out[0].dtype == ONYX_DTYPE_F16);
        CHECK(onyx_f16_to_f32(y[0]) == 3.0f && onyx_f16_to_f32(y[1]) == 1.0f);
        th_node_free(n);
    }
}

static void test_pow_types(void)
{
    onyx_tensor out[1];
    th_node *n;
    /* test_pow_types_*: [1,2,3] ^ [4,5,6] = [1,32,729] in the base's type */
    float xf[3] = {1, 2, 3};
    float yf[3] = {4, 5, 6};
    int32_t xi32[3] = {1, 2, 3};
    int32_t yi32[3] = {4, 5, 6};
    int64_t xi64[3] = {1, 2, 3};
    int64_t yi64[3] = {4, 5, 6};
    uint32_t yu32[3] = {4, 5, 6};
    uint64_t yu64[3] = {4, 5, 6};

    static const onyx_dtype float_base_exps[4] = {ONYX_DTYPE_I64, ONYX_DTYPE_I32, ONYX_DTYPE_U64,
                                                  ONYX_DTYPE_U32};
    const void *exps[4] = {yi64, yi32, yu64, yu32};
    for (int e = 0; e < 4; e++) {
        run_typed("Pow", 15, ONYX_DTYPE_F32, xf, float_base_exps[e], exps[e], 3, out, &n);
        const float *y = out[0].data;
        CHECK(out[0].dtype == ONYX_DTYPE_F32);
        CHECK(y[0] == 1.0f && y[1] == 32.0f && y[2] == 729.0f);
        th_node_free(n);
    }
    run_typed("Pow", 15, ONYX_DTYPE_I32, xi32, ONYX_DTYPE_F32, yf, 3, out, &n);
    CHECK(out[0].dtype == ONYX_DTYPE_I32);
    CHECK(((int32_t *)out[0].data)[0] == 1 && ((int32_t *)out[0].data)[1] == 32 &&
          ((int32_t *)out[0].data)[2] == 729);
    th_node_free(n);
    run_typed("Pow", 15, ONYX_DTYPE_I64, xi64, ONYX_DTYPE_F32, yf, 3, out, &n);
    CHECK(out[0].dtype == ONYX_DTYPE_I64);
    CHECK(((int64_t *)out[0].data)[1] == 32 && ((int64_t *)out[0].data)[2] == 729);
    th_node_free(n);
    run_typed("Pow", 15, ONYX_DTYPE_I32, xi32, ONYX_DTYPE_I32, yi32, 3, out, &n);
    CHECK(((int32_t *)out[0].data)[1] == 32 && ((int32_t *)out[0].data)[2] == 729);
    th_node_free(n);
    run_typed("Pow", 12, ONYX_DTYPE_I64, xi64, ONYX_DTYPE_I64, yi64, 3, out, &n);
    CHECK(((int64_t *)out[0].data)[0] == 1 && ((int64_t *)out[0].data)[1] == 32 &&
          ((int64_t *)out[0].data)[2] == 729);
    th_node_free(n);

    /* integer powers are exact (3^39 is not a double) and wrap; negative exponents truncate */
    {
        int64_t b[6] = {3, 2, 2, 1, -1, -3};
        int64_t e[6] = {39, 64, -1, -5, -3, 3};
        run_typed("Pow", 15, ONYX_DTYPE_I64, b, ONYX_DTYPE_I64, e, 6, out, &n);
        const int64_t *y = out[0].data;
        CHECK(y[0] == 4052555153018976267);
        CHECK(y[1] == 0); /* 2^64 wraps to 0 */
        CHECK(y[2] == 0 && y[3] == 1 && y[4] == -1 && y[5] == -27);
        th_node_free(n);
        int32_t b32[2] = {2, -2};
        int32_t e32[2] = {31, 31};
        run_typed("Pow", 15, ONYX_DTYPE_I32, b32, ONYX_DTYPE_I32, e32, 2, out, &n);
        CHECK(((int32_t *)out[0].data)[0] == INT32_MIN); /* numpy: 2**31 wraps in int32 */
        CHECK(((int32_t *)out[0].data)[1] == INT32_MIN);
        th_node_free(n);
    }
    /* float base, fractional exponent: 2^0.5, 8^(1/3) with a float64 base */
    {
        double b[2] = {2, 8};
        double e[2] = {0.5, 1.0 / 3.0};
        run_typed("Pow", 15, ONYX_DTYPE_F64, b, ONYX_DTYPE_F64, e, 2, out, &n);
        CHECK_NEAR_TOL(((double *)out[0].data)[0], sqrt(2.0), 1e-15, 1e-15);
        CHECK_NEAR_TOL(((double *)out[0].data)[1], 2.0, 1e-15, 1e-15);
        th_node_free(n);
    }
}

/* ---- errors --------------------------------------------------------------------------------- */

static void test_binary_errors(void)
{
    onyx_tensor out[1];
    onyx_error err = {0};
    float a[6] = {0};
    float b[4] = {0};
    int64_t i64[4] = {0};

    /* incompatible shapes: both shapes in the message */
    {
        th_node *n = th_node_new("Add", 14, 2, 1);
        int64_t da[2] = {2, 3};
        int64_t db[1] = {4};
        onyx_tensor in[2] = {th_f32(2, da, a), th_f32(1, db, b)};
        onyx_status st = th_run(n, ONYX_MODE_INFER, in, out, &err);
        CHECK(st == ONYX_ERR_SHAPE);
        CHECK_MSG(err.msg, "test_node");
        CHECK_MSG(err.msg, "Add");
        CHECK_MSG(err.msg, "[2,3]");
        CHECK_MSG(err.msg, "[4]");
        th_node_free(n);
    }
    /* different dtypes (only Pow from opset 12 may mix) */
    {
        th_node *n = th_node_new("Mul", 14, 2, 1);
        int64_t d[1] = {2};
        onyx_tensor in[2] = {th_f32(1, d, a), th_i64(1, d, i64)};
        onyx_status st = th_run(n, ONYX_MODE_INFER, in, out, &err);
        CHECK(st == ONYX_ERR_SHAPE);
        CHECK_MSG(err.msg, "test_node");
        CHECK_MSG(err.msg, "float32");
        CHECK_MSG(err.msg, "int64");
        th_node_free(n);
    }
    /* Pow-7 takes float types only, the same for both */
    {
        th_node *n = th_node_new("Pow", 7, 2, 1);
        int64_t d[1] = {2};
        onyx_tensor in[2] = {th_f32(1, d, a), th_i64(1, d, i64)};
        CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_SHAPE);
        CHECK_MSG(err.msg, "input Y has dtype int64");
        th_node_free(n);
        n = th_node_new("Pow", 12, 2, 1);
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        th_node_free(n);
    }
    /* Pow's base may not be uint8 */
    {
        th_node *n = th_node_new("Pow", 15, 2, 1);
        uint8_t u[2] = {1, 2};
        int64_t d[1] = {2};
        onyx_tensor in[2] = {th_tensor(ONYX_DTYPE_U8, 1, d, u), th_f32(1, d, a)};
        CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_SHAPE);
        CHECK_MSG(err.msg, "input X has dtype uint8");
        th_node_free(n);
    }
    /* a dtype the op does not take: bool; uint8 only from Add-14 */
    {
        th_node *n = th_node_new("Add", 14, 2, 1);
        uint8_t bl[2] = {1, 0};
        int64_t d[1] = {2};
        onyx_tensor in[2] = {th_tensor(ONYX_DTYPE_BOOL, 1, d, bl),
                             th_tensor(ONYX_DTYPE_BOOL, 1, d, bl)};
        CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_SHAPE);
        CHECK_MSG(err.msg, "input A has dtype bool");
        CHECK_MSG(err.msg, "float32");
        th_node_free(n);
        n = th_node_new("Add", 13, 2, 1);
        in[0] = th_tensor(ONYX_DTYPE_U8, 1, d, bl);
        in[1] = th_tensor(ONYX_DTYPE_U8, 1, d, bl);
        CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_SHAPE);
        CHECK_MSG(err.msg, "uint8");
        CHECK_MSG(err.msg, "opset 13");
        th_node_free(n);
    }
    /* arity */
    {
        th_node *n = th_node_new("Sub", 14, 3, 1);
        int64_t d[1] = {2};
        onyx_tensor in[3] = {th_f32(1, d, a), th_f32(1, d, a), th_f32(1, d, a)};
        CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_INVALID_MODEL);
        CHECK_MSG(err.msg, "test_node");
        th_node_free(n);
    }
}

/* Load-time inference: unknown rank, symbolic dims. */
static void test_binary_infer(void)
{
    onyx_tensor out[1];
    onyx_error err = {0};
    th_node *n = th_node_new("Add", 14, 2, 1);

    int64_t d3[1] = {3};
    onyx_tensor in[2] = {th_f32(0, NULL, NULL), th_f32(1, d3, NULL)};
    in[0].rank = -1;
    CHECK_OK(th_infer(n, in, out, &err), err.msg);
    CHECK(out[0].dtype == ONYX_DTYPE_F32 && out[0].rank == -1);

    int64_t dq3[2] = {-1, 3};
    in[0] = th_f32(2, dq3, NULL);
    CHECK_OK(th_infer(n, in, out, &err), err.msg);
    CHECK(th_dims_eq(&out[0], 2, dq3));

    int64_t dq1[2] = {-1, 1};
    int64_t d14[2] = {1, 4};
    int64_t dq4[2] = {-1, 4};
    in[0] = th_f32(2, dq1, NULL);
    in[1] = th_f32(2, d14, NULL);
    CHECK_OK(th_infer(n, in, out, &err), err.msg);
    CHECK(th_dims_eq(&out[0], 2, dq4));

    /* an unknown dim against a known one > 1 takes the known one */
    int64_t dq[1] = {-1};
    int64_t d5[1] = {5};
    in[0] = th_f32(1, dq, NULL);
    in[1] = th_f32(1, d5, NULL);
    CHECK_OK(th_infer(n, in, out, &err), err.msg);
    CHECK(th_dims_eq(&out[0], 1, d5));

    /* known dims that disagree fail even at load time */
    int64_t dq2[2] = {-1, 2};
    in[0] = th_f32(2, dq2, NULL);
    in[1] = th_f32(1, d3, NULL);
    CHECK(th_infer(n, in, out, &err) == ONYX_ERR_SHAPE);
    CHECK_MSG(err.msg, "[?,2]");
    th_node_free(n);
}

/* ---- opset 6 and before: broadcast/axis attributes ----------------------------------------- */

static void test_binary_legacy(void)
{
    onyx_tensor out[1];
    onyx_error err = {0};
    double buf[64];

    /* test_operator_add_broadcast: [2,3] + [3], broadcast=1, axis=1 (float64) */
    {
        th_node *n = th_node_new("Add", 6, 2, 1);
        th_attr_int(n, "broadcast", 1);
        th_attr_int(n, "axis", 1);
        double a[6] = {1, 2, 3, 4, 5, 6};
        double b[3] = {10, 20, 30};
        int64_t da[2] = {2, 3};
        int64_t db[1] = {3};
        onyx_tensor in[2] = {th_tensor(ONYX_DTYPE_F64, 2, da, a),
                             th_tensor(ONYX_DTYPE_F64, 1, db, b)};
        CHECK_OK(th_run_impl(n, &onyx_impl_binary, in, out, buf, sizeof buf, &err), err.msg);
        CHECK(out[0].dtype == ONYX_DTYPE_F64 && th_dims_eq(&out[0], 2, da));
        double want[6] = {11, 22, 33, 14, 25, 36};
        CHECK(th_close_f64(buf, want, 6, 1e-300, 0, "legacy row"));
        th_node_free(n);
    }
    /* test_operator_add_size1_broadcast: [2,3] + [2,1], axis=0 */
    {
        th_node *n = th_node_new("Add", 6, 2, 1);
        th_attr_int(n, "broadcast", 1);
        th_attr_int(n, "axis", 0);
        double a[6] = {1, 2, 3, 4, 5, 6};
        double b[2] = {10, 20};
        int64_t da[2] = {2, 3};
        int64_t db[2] = {2, 1};
        onyx_tensor in[2] = {th_tensor(ONYX_DTYPE_F64, 2, da, a),
                             th_tensor(ONYX_DTYPE_F64, 2, db, b)};
        CHECK_OK(th_run_impl(n, &onyx_impl_binary, in, out, buf, sizeof buf, &err), err.msg);
        double want[6] = {11, 12, 13, 24, 25, 26};
        CHECK(th_close_f64(buf, want, 6, 1e-300, 0, "legacy column"));
        th_node_free(n);
    }
    /* the spec's example: A [2,3,4,5], B [3,4] at axis 1 */
    {
        th_node *n = th_node_new("Mul", 6, 2, 1);
        th_attr_int(n, "broadcast", 1);
        th_attr_int(n, "axis", 1);
        float a[120];
        float b[12];
        for (int i = 0; i < 120; i++)
            a[i] = (float)(i + 1);
        for (int i = 0; i < 12; i++)
            b[i] = (float)(i % 5 - 2);
        int64_t da[4] = {2, 3, 4, 5};
        int64_t db[2] = {3, 4};
        onyx_tensor in[2] = {th_f32(4, da, a), th_f32(2, db, b)};
        float fbuf[120];
        CHECK_OK(th_run_impl(n, &onyx_impl_binary, in, out, fbuf, sizeof fbuf, &err), err.msg);
        CHECK(th_dims_eq(&out[0], 4, da));
        double want[120];
        for (int i0 = 0; i0 < 2; i0++)
            for (int i1 = 0; i1 < 3; i1++)
                for (int i2 = 0; i2 < 4; i2++)
                    for (int i3 = 0; i3 < 5; i3++) {
                        int k = ((i0 * 3 + i1) * 4 + i2) * 5 + i3;
                        want[k] = (double)a[k] * b[i1 * 4 + i2];
                    }
        CHECK(th_close_f32(fbuf, want, 120, 0, 0, "legacy axis 1"));
        th_node_free(n);
    }
    /* broadcast=1 without axis: suffix matching; a scalar B (test_Softsign's Add) */
    {
        th_node *n = th_node_new("Add", 6, 2, 1);
        th_attr_int(n, "broadcast", 1);
        float a[3] = {-1, 0, 2};
        float one[1] = {1};
        int64_t da[1] = {3};
        onyx_tensor in[2] = {th_f32(1, da, a), th_f32(0, NULL, one)};
        float fbuf[3];
        CHECK_OK(th_run_impl(n, &onyx_impl_binary, in, out, fbuf, sizeof fbuf, &err), err.msg);
        CHECK(fbuf[0] == 0 && fbuf[1] == 1 && fbuf[2] == 3);
        th_node_free(n);
    }
    /* test_operator_non_float_params at opset 6: int64 without attributes */
    {
        th_node *n = th_node_new("Add", 6, 2, 1);
        int64_t x[4] = {1, 2, 3, 4};
        int64_t d[2] = {2, 2};
        onyx_tensor in[2] = {th_i64(2, d, x), th_i64(2, d, x)};
        int64_t ibuf[4];
        CHECK_OK(th_run_impl(n, &onyx_impl_binary, in, out, ibuf, sizeof ibuf, &err), err.msg);
        CHECK(ibuf[0] == 2 && ibuf[1] == 4 && ibuf[2] == 6 && ibuf[3] == 8);
        th_node_free(n);
    }
    /* without broadcast=1 the shapes must match */
    {
        th_node *n = th_node_new("Add", 6, 2, 1);
        float a[6] = {0};
        int64_t da[2] = {2, 3};
        int64_t db[1] = {3};
        onyx_tensor in[2] = {th_f32(2, da, a), th_f32(1, db, a)};
        CHECK(th_run_impl(n, &onyx_impl_binary, in, out, NULL, 0, &err) == ONYX_ERR_SHAPE);
        CHECK_MSG(err.msg, "[2,3]");
        CHECK_MSG(err.msg, "[3]");
        CHECK_MSG(err.msg, "broadcast");
        th_node_free(n);
    }
    /* B's dims must fit under A's */
    {
        th_node *n = th_node_new("Sub", 6, 2, 1);
        th_attr_int(n, "broadcast", 1);
        float a[8] = {0};
        int64_t da[2] = {2, 3};
        int64_t db[1] = {4};
        onyx_tensor in[2] = {th_f32(2, da, a), th_f32(1, db, a)};
        CHECK(th_run_impl(n, &onyx_impl_binary, in, out, NULL, 0, &err) == ONYX_ERR_SHAPE);
        CHECK_MSG(err.msg, "[4]");
        CHECK_MSG(err.msg, "[2,3]");
        th_node_free(n);
        n = th_node_new("Sub", 6, 2, 1);
        th_attr_int(n, "broadcast", 1);
        th_attr_int(n, "axis", 1);
        int64_t db2[2] = {2, 3};
        in[1] = th_f32(2, db2, a);
        CHECK(th_run_impl(n, &onyx_impl_binary, in, out, NULL, 0, &err) == ONYX_ERR_SHAPE);
        CHECK_MSG(err.msg, "axis 1");
        th_node_free(n);
    }
    /* wrong attribute types */
    {
        th_node *n = th_node_new("Add", 6, 2, 1);
        th_attr_float(n, "broadcast", 1.0f);
        float a[1] = {0};
        onyx_tensor in[2] = {th_f32(0, NULL, a), th_f32(0, NULL, a)};
        CHECK(th_run_impl(n, &onyx_impl_binary, in, out, NULL, 0, &err) == ONYX_ERR_INVALID_MODEL);
        CHECK_MSG(err.msg, "attribute broadcast");
        th_node_free(n);
        n = th_node_new("Add", 6, 2, 1);
        th_attr_int(n, "broadcast", 1);
        th_attr_raw(n, "axis", ONYX_ATTR_STRING);
        CHECK(th_run_impl(n, &onyx_impl_binary, in, out, NULL, 0, &err) == ONYX_ERR_INVALID_MODEL);
        CHECK_MSG(err.msg, "attribute axis");
        th_node_free(n);
    }
    /* same rank, different dims, no broadcast=1 */
    {
        th_node *n = th_node_new("Add", 6, 2, 1);
        float a[8] = {0};
        int64_t da[2] = {2, 3};
        int64_t db[2] = {2, 4};
        onyx_tensor in[2] = {th_f32(2, da, a), th_f32(2, db, a)};
        CHECK(th_run_impl(n, &onyx_impl_binary, in, out, NULL, 0, &err) == ONYX_ERR_SHAPE);
        CHECK_MSG(err.msg, "[2,4]");
        th_node_free(n);
    }
    /* before opset 6, Add took float types only */
    {
        th_node *n = th_node_new("Add", 5, 2, 1);
        int32_t a[1] = {0};
        onyx_tensor in[2] = {th_tensor(ONYX_DTYPE_I32, 0, NULL, a),
                             th_tensor(ONYX_DTYPE_I32, 0, NULL, a)};
        CHECK(th_run_impl(n, &onyx_impl_binary, in, out, NULL, 0, &err) == ONYX_ERR_SHAPE);
        CHECK_MSG(err.msg, "input A has dtype int32");
        th_node_free(n);
    }
    /* load time: A [?,3] + B [2,3] -> [2,3]: B's dims tell A's unknown ones */
    {
        th_node *n = th_node_new("Add", 6, 2, 1);
        th_attr_int(n, "broadcast", 1);
        int64_t da[2] = {-1, 3};
        int64_t db[2] = {2, 3};
        onyx_tensor in[2] = {th_f32(2, da, NULL), th_f32(2, db, NULL)};
        CHECK_OK(th_run_impl(n, &onyx_impl_binary, in, out, NULL, 0, &err), err.msg);
        CHECK(th_dims_eq(&out[0], 2, db));
        th_node_free(n);
    }
    /* load time: A [?,3] + B [3] -> [?,3]; unknown rank stays unknown */
    {
        th_node *n = th_node_new("Add", 6, 2, 1);
        th_attr_int(n, "broadcast", 1);
        int64_t da[2] = {-1, 3};
        int64_t db[1] = {3};
        onyx_tensor in[2] = {th_f32(2, da, NULL), th_f32(1, db, NULL)};
        CHECK_OK(th_run_impl(n, &onyx_impl_binary, in, out, NULL, 0, &err), err.msg);
        CHECK(th_dims_eq(&out[0], 2, da));
        in[0].rank = -1;
        CHECK_OK(th_run_impl(n, &onyx_impl_binary, in, out, NULL, 0, &err), err.msg);
        CHECK(out[0].rank == -1);
        th_node_free(n);
    }
}

/* ---- Sum ------------------------------------------------------------------------------------ */

static void test_sum(void)
{
    onyx_tensor out[1];
    onyx_error err = {0};

    /* test_sum_example */
    {
        th_node *n = th_node_new("Sum", 13, 3, 1);
        float a[3] = {3, 0, 2};
        float b[3] = {1, 3, 4};
        float c[3] = {2, 6, 6};
        int64_t d[1] = {3};
        onyx_tensor in[3] = {th_f32(1, d, a), th_f32(1, d, b), th_f32(1, d, c)};
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        const float *y = out[0].data;
        CHECK(th_dims_eq(&out[0], 1, d));
        CHECK(y[0] == 6 && y[1] == 9 && y[2] == 12);
        th_node_free(n);
        /* test_sum_one_input: a copy */
        n = th_node_new("Sum", 13, 1, 1);
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        y = out[0].data;
        CHECK(y[0] == 3 && y[1] == 0 && y[2] == 2);
        th_node_free(n);
    }
    /* opset 8: broadcasting across all inputs: [2,1] + [3] + scalar -> [2,3] */
    {
        th_node *n = th_node_new("Sum", 8, 3, 1);
        float a[2] = {100, 200};
        float b[3] = {1, 2, 3};
        float s[1] = {0.5f};
        int64_t da[2] = {2, 1};
        int64_t db[1] = {3};
        int64_t dy[2] = {2, 3};
        onyx_tensor in[3] = {th_f32(2, da, a), th_f32(1, db, b), th_f32(0, NULL, s)};
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        CHECK(th_dims_eq(&out[0], 2, dy));
        float want[6] = {101.5f, 102.5f, 103.5f, 201.5f, 202.5f, 203.5f};
        for (int i = 0; i < 6; i++)
            CHECK_NEAR(((float *)out[0].data)[i], want[i]);
        th_node_free(n);
        /* opset 6: the same inputs are an error naming both shapes */
        n = th_node_new("Sum", 6, 3, 1);
        CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_SHAPE);
        CHECK_MSG(err.msg, "input 1 has shape [3]");
        CHECK_MSG(err.msg, "[2,1]");
        th_node_free(n);
    }
    /* float64 and float16 through the generic path */
    {
        th_node *n = th_node_new("Sum", 13, 2, 1);
        double a[2] = {0.1, 1e300};
        double b[2] = {0.2, 1e300};
        int64_t d[1] = {2};
        onyx_tensor in[2] = {th_tensor(ONYX_DTYPE_F64, 1, d, a),
                             th_tensor(ONYX_DTYPE_F64, 1, d, b)};
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        CHECK(((double *)out[0].data)[0] == 0.1 + 0.2);
        CHECK(((double *)out[0].data)[1] == 2e300);
        th_node_free(n);
        n = th_node_new("Sum", 13, 2, 1);
        uint16_t h[2] = {onyx_f32_to_f16(1.5f), onyx_f32_to_f16(-2.0f)};
        in[0] = th_tensor(ONYX_DTYPE_F16, 1, d, h);
        in[1] = th_tensor(ONYX_DTYPE_F16, 0, NULL, h);
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        CHECK(onyx_f16_to_f32(((uint16_t *)out[0].data)[0]) == 3.0f);
        CHECK(onyx_f16_to_f32(((uint16_t *)out[0].data)[1]) == -0.5f);
        th_node_free(n);
    }
    /* fast vs naive: three inputs on awkward shapes (empty ones included) */
    {
        static const struct {
            int r[3];
            int64_t d[3][4];
            int ry;
            int64_t dy[4];
        } cases[] = {
            {{2, 1, 0}, {{13, 17}, {17}, {0}}, 2, {13, 17}},
            {{3, 3, 1}, {{1, 5, 1}, {7, 1, 3}, {3}}, 3, {7, 5, 3}},
            {{1, 2, 3}, {{1}, {11, 1}, {2, 1, 13}}, 3, {2, 11, 13}},
            {{2, 1, 2}, {{0, 3}, {3}, {1, 1}}, 2, {0, 3}},
            {{4, 4, 4}, {{2, 3, 5, 7}, {2, 3, 5, 7}, {2, 3, 5, 7}}, 4, {2, 3, 5, 7}},
        };
        for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
            float *x[3];
            onyx_tensor in[3];
            for (int k = 0; k < 3; k++) {
                int64_t nk = th_numel(cases[c].r[k], cases[c].d[k]);
                x[k] = malloc(sizeof(float) * (size_t)(nk + 1));
                for (int64_t i = 0; i < nk; i++)
                    x[k][i] = (float)th_urand(&rng_state, -5, 5);
                in[k] = th_f32(cases[c].r[k], cases[c].d[k], x[k]);
            }
            int64_t ny = th_numel(cases[c].ry, cases[c].dy);
            onyx_tensor ty = th_f32(cases[c].ry, cases[c].dy, NULL);
            double *want = malloc(sizeof(double) * (size_t)(ny + 1));
            for (int64_t i = 0; i < ny; i++) {
                float s = x[0][th_naive_index(&ty, &in[0], i)];
                s += x[1][th_naive_index(&ty, &in[1], i)];
                s += x[2][th_naive_index(&ty, &in[2], i)];
                want[i] = s; /* float32 left to right, as the op adds */
            }
            th_node *n = th_node_new("Sum", 13, 3, 1);
            CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
            CHECK(th_dims_eq(&out[0], cases[c].ry, cases[c].dy));
            CHECK(th_close_f32(out[0].data, want, ny, 0, 0, "Sum fast vs naive"));
            th_node_free(n);
            for (int k = 0; k < 3; k++)
                free(x[k]);
            free(want);
        }
    }
    /* errors: dtype mismatch, int dtype, an empty input in the middle */
    {
        th_node *n = th_node_new("Sum", 13, 2, 1);
        float a[1] = {0};
        int64_t b[1] = {0};
        onyx_tensor in[3] = {th_f32(0, NULL, a), th_tensor(ONYX_DTYPE_F64, 0, NULL, b),
                             th_f32(0, NULL, a)};
        CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_SHAPE);
        CHECK_MSG(err.msg, "input 1 has dtype float64, expected float32");
        th_node_free(n);
        n = th_node_new("Sum", 13, 2, 1);
        in[0] = th_i64(0, NULL, b);
        in[1] = th_i64(0, NULL, b);
        CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_SHAPE);
        CHECK_MSG(err.msg, "input 0 has dtype int64");
        th_node_free(n);
        n = th_node_new("Sum", 13, 3, 1);
        in[0] = th_f32(0, NULL, a);
        in[1] = th_omitted();
        in[2] = th_f32(0, NULL, a);
        CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_INVALID_MODEL);
        CHECK_MSG(err.msg, "input 1 is empty");
        th_node_free(n);
    }
    /* load time: opset 6 merges what each input knows; opset 13 broadcasts unknowns */
    {
        th_node *n = th_node_new("Sum", 6, 2, 1);
        int64_t d0[2] = {-1, 3};
        int64_t d1[2] = {2, -1};
        int64_t dy[2] = {2, 3};
        onyx_tensor in[2] = {th_f32(2, d0, NULL), th_f32(2, d1, NULL)};
        CHECK_OK(th_infer(n, in, out, &err), err.msg);
        CHECK(th_dims_eq(&out[0], 2, dy));
        th_node_free(n);
        /* an input of unknown rank tells nothing; a known dim that differs is an error */
        n = th_node_new("Sum", 6, 3, 1);
        onyx_tensor in3[3] = {th_f32(0, NULL, NULL), th_f32(2, d0, NULL), th_f32(2, d1, NULL)};
        in3[0].rank = -1;
        CHECK_OK(th_infer(n, in3, out, &err), err.msg);
        CHECK(th_dims_eq(&out[0], 2, dy));
        int64_t d24[2] = {2, 4};
        in3[0] = th_f32(2, d24, NULL);
        CHECK(th_infer(n, in3, out, &err) == ONYX_ERR_SHAPE);
        CHECK_MSG(err.msg, "input 1 has shape [?,3], expected [2,4]");
        th_node_free(n);
        n = th_node_new("Sum", 13, 2, 1);
        in[1].rank = -1;
        CHECK_OK(th_infer(n, in, out, &err), err.msg);
        CHECK(out[0].rank == -1 && out[0].dtype == ONYX_DTYPE_F32);
        int64_t d2[1] = {3};
        in[1] = th_f32(1, d2, NULL);
        CHECK_OK(th_infer(n, in, out, &err), err.msg);
        CHECK(th_dims_eq(&out[0], 2, d0));
        th_node_free(n);
    }
}

/* ---- unary maths ---------------------------------------------------------------------------- */

static double ref_unary(const char *op, double v)
{
    if (strcmp(op, "Sqrt") == 0)
        return sqrt(v);
    if (strcmp(op, "Neg") == 0)
        return -v;
    if (strcmp(op, "Abs") == 0)
        return fabs(v);
    if (strcmp(op, "Exp") == 0)
        return exp(v);
    if (strcmp(op, "Log") == 0)
        return log(v);
    return erf(v);
}

static void test_unary_values(void)
{
    static const struct {
        const char *op;
        float x[4];
        float y[4];
    } cases[] = {
        {"Sqrt", {1, 4, 9, 0}, {1, 2, 3, 0}}, /* test_sqrt_example + 0 */
        {"Neg", {-4, 2, 0, 1.5f}, {4, -2, 0, -1.5f}},
        {"Abs", {-4, 2, 0, -0.1513572f}, {4, 2, 0, 0.1513572f}},
        {"Exp", {0, 1, -1, 2}, {1, 2.718281828f, 0.3678794412f, 7.389056099f}},
        {"Log", {1, 10, 2.718281828f, 0.5f}, {0, 2.3025851f, 1, -0.6931471806f}},
        /* test_erf's first values */
        {"Erf",
         {1.7640524f, 0.4001572f, -0.9772779f, 0},
         {0.9873953f, 0.4285435f, -0.83305275f, 0}},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        th_node *n = th_node_new(cases[c].op, 13, 1, 1);
        int64_t d[2] = {2, 2};
        onyx_tensor in[1] = {th_f32(2, d, cases[c].x)};
        onyx_tensor out[1];
        onyx_error err = {0};
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        CHECK(out[0].dtype == ONYX_DTYPE_F32 && th_dims_eq(&out[0], 2, d));
        for (int i = 0; i < 4; i++)
            CHECK_NEAR(((float *)out[0].data)[i], cases[c].y[i]);
        th_node_free(n);
    }
    /* Sqrt of a negative is NaN, Log of 0 is -inf */
    {
        th_node *n = th_node_new("Sqrt", 13, 1, 1);
        float x[1] = {-1};
        int64_t d[1] = {1};
        onyx_tensor in[1] = {th_f32(1, d, x)};
        onyx_tensor out[1];
        onyx_error err = {0};
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        CHECK(isnan(((float *)out[0].data)[0]));
        th_node_free(n);
        n = th_node_new("Log", 13, 1, 1);
        x[0] = 0;
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        CHECK(isinf(((float *)out[0].data)[0]) && ((float *)out[0].data)[0] < 0);
        th_node_free(n);
    }
}

/* float32 loops and the float64 generic path against double maths, lengths 0, 1, 7, 1031. */
static void test_unary_fast_vs_naive(void)
{
    static const char *const ops[] = {"Sqrt", "Neg", "Abs", "Exp", "Log", "Erf"};
    static const int64_t lens[] = {0, 1, 7, 1031};
    for (size_t o = 0; o < sizeof(ops) / sizeof(ops[0]); o++) {
        bool positive = strcmp(ops[o], "Sqrt") == 0 || strcmp(ops[o], "Log") == 0;
        for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
            int64_t len = lens[l];
            float *x = malloc(sizeof(float) * (size_t)(len + 1));
            double *x64 = malloc(sizeof(double) * (size_t)(len + 1));
            double *want = malloc(sizeof(double) * (size_t)(len + 1));
            for (int64_t i = 0; i < len; i++) {
                x[i] = (float)(positive ? th_urand(&rng_state, 1e-3, 50)
                                        : th_urand(&rng_state, -8, 8));
                x64[i] = x[i];
                want[i] = ref_unary(ops[o], x[i]);
            }
            char label[64];
            snprintf(label, sizeof label, "%s len %lld", ops[o], (long long)len);
            th_node *n = th_node_new(ops[o], 13, 1, 1);
            onyx_tensor in[1] = {th_f32(1, &len, x)};
            onyx_tensor out[1];
            onyx_error err = {0};
            CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
            CHECK(th_close_f32(out[0].data, want, len, 1e-7, 2e-6, label));
            th_node_free(n);
            n = th_node_new(ops[o], 13, 1, 1);
            in[0] = th_tensor(ONYX_DTYPE_F64, 1, &len, x64);
            CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
            CHECK(th_close_f64(out[0].data, want, len, 1e-300, 1e-15, label));
            th_node_free(n);
            free(x);
            free(x64);
            free(want);
        }
    }
}

static void test_unary_integers(void)
{
    onyx_tensor out[1];
    onyx_error err = {0};
    int64_t d4[1] = {4};

    /* Abs/Neg on int8: -128 stays -128 (wraps, as numpy) */
    int8_t i8[4] = {-128, -3, 0, 5};
    th_node *n = th_node_new("Abs", 13, 1, 1);
    onyx_tensor in[1] = {th_tensor(ONYX_DTYPE_I8, 1, d4, i8)};
    CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
    const int8_t *y8 = out[0].data;
    CHECK(out[0].dtype == ONYX_DTYPE_I8);
    CHECK(y8[0] == -128 && y8[1] == 3 && y8[2] == 0 && y8[3] == 5);
    th_node_free(n);
    n = th_node_new("Neg", 13, 1, 1);
    CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
    y8 = out[0].data;
    CHECK(y8[0] == -128 && y8[1] == 3 && y8[2] == 0 && y8[3] == -5);
    th_node_free(n);

    /* int32, int64 */
    int32_t i32[4] = {INT32_MIN, -7, 7, 0};
    n = th_node_new("Neg", 13, 1, 1);
    in[0] = th_tensor(ONYX_DTYPE_I32, 1, d4, i32);
    CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
    const int32_t *y32 = out[0].data;
    CHECK(y32[0] == INT32_MIN && y32[1] == 7 && y32[2] == -7 && y32[3] == 0);
    th_node_free(n);
    int64_t i64[4] = {INT64_MIN, -9007199254740993, 5, INT64_MAX};
    n = th_node_new("Abs", 13, 1, 1);
    in[0] = th_i64(1, d4, i64);
    CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
    const int64_t *y64 = out[0].data;
    CHECK(y64[0] == INT64_MIN && y64[1] == 9007199254740993 && y64[2] == 5 && y64[3] == INT64_MAX);
    th_node_free(n);

    /* Abs of unsigned is the identity, even above 2^63 */
    uint64_t u64[4] = {UINT64_MAX, 0, 1, (uint64_t)1 << 63};
    n = th_node_new("Abs", 13, 1, 1);
    in[0] = th_tensor(ONYX_DTYPE_U64, 1, d4, u64);
    CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK(memcmp(out[0].data, u64, sizeof u64) == 0);
    th_node_free(n);

    /* Erf on integers goes through double and truncates: erf(1) = 0.84 -> 0 */
    int32_t e32[4] = {0, 1, -1, 10};
    n = th_node_new("Erf", 13, 1, 1);
    in[0] = th_tensor(ONYX_DTYPE_I32, 1, d4, e32);
    CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
    y32 = out[0].data;
    CHECK(y32[0] == 0 && y32[1] == 0 && y32[2] == 0 && y32[3] == 1);
    th_node_free(n);

    /* float16 and bfloat16 (from opset 13) */
    uint16_t h[1] = {onyx_f32_to_f16(6.25f)};
    int64_t d1[1] = {1};
    n = th_node_new("Sqrt", 13, 1, 1);
    in[0] = th_tensor(ONYX_DTYPE_F16, 1, d1, h);
    CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK(onyx_f16_to_f32(((uint16_t *)out[0].data)[0]) == 2.5f);
    th_node_free(n);
    uint16_t bf[1] = {onyx_f32_to_bf16(4.0f)};
    n = th_node_new("Sqrt", 13, 1, 1);
    in[0] = th_tensor(ONYX_DTYPE_BF16, 1, d1, bf);
    CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK(onyx_bf16_to_f32(((uint16_t *)out[0].data)[0]) == 2.0f);
    th_node_free(n);
    n = th_node_new("Sqrt", 6, 1, 1);
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_SHAPE);
    CHECK_MSG(err.msg, "bfloat16");
    th_node_free(n);
}

static void test_unary_errors_and_infer(void)
{
    onyx_tensor out[1];
    onyx_error err = {0};
    int32_t i32[2] = {1, 4};
    int64_t d[1] = {2};

    /* dtypes the op does not take, named in the message */
    static const struct {
        const char *op;
        onyx_dtype dt;
        const char *name;
    } bad[] = {
        {"Sqrt", ONYX_DTYPE_I32, "int32"}, {"Exp", ONYX_DTYPE_I64, "int64"},
        {"Log", ONYX_DTYPE_U8, "uint8"},   {"Neg", ONYX_DTYPE_U32, "uint32"},
        {"Abs", ONYX_DTYPE_BOOL, "bool"},
    };
    for (size_t c = 0; c < sizeof(bad) / sizeof(bad[0]); c++) {
        th_node *n = th_node_new(bad[c].op, 13, 1, 1);
        onyx_tensor in[1] = {th_tensor(bad[c].dt, 1, d, i32)};
        CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_SHAPE);
        CHECK_MSG(err.msg, "test_node");
        CHECK_MSG(err.msg, bad[c].op);
        CHECK_MSG(err.msg, bad[c].name);
        th_node_free(n);
    }
    /* two inputs */
    {
        th_node *n = th_node_new("Exp", 13, 2, 1);
        float x[2] = {0};
        onyx_tensor in[2] = {th_f32(1, d, x), th_f32(1, d, x)};
        CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_INVALID_MODEL);
        CHECK_MSG(err.msg, "has 2 inputs, expected 1");
        th_node_free(n);
    }
    /* load time */
    {
        th_node *n = th_node_new("Erf", 13, 1, 1);
        int64_t dq[2] = {-1, 5};
        onyx_tensor in[1] = {th_f32(2, dq, NULL)};
        CHECK_OK(th_infer(n, in, out, &err), err.msg);
        CHECK(out[0].dtype == ONYX_DTYPE_F32 && th_dims_eq(&out[0], 2, dq));
        in[0].rank = -1;
        CHECK_OK(th_infer(n, in, out, &err), err.msg);
        CHECK(out[0].rank == -1);
        th_node_free(n);
    }
}

/* ---- backward ----------------------------------------------------------------------------- */

#define E_CONST         2.71828182845904523536 /* e */
#define TWO_OVER_SQRTPI 1.12837916709551257390 /* 2/sqrt(pi) */

static int grad_checks; /* finite-difference checks run, for the closing line */

/* Central finite differences on every float32 input in in_mask (tests/grad_check.h). */
static void grad_check(th_node *n, const onyx_tensor *in, uint32_t in_mask, th_skip_fn skip)
{
    int bad = th_grad_check(n, ONYX_MODE_TRAIN, in, in_mask, 0xffffffffu, 1e-2, 1e-3, 1e-2, skip);
    if (bad != 0)
        fprintf(stderr, "grad check of %s failed (%d)\n", th_onyx_node(n)->op_type, bad);
    CHECK(bad == 0);
    grad_checks++;
}

/* th_run_backward, counting a failed forward as a failed check. */
static void run_backward(th_node *t, const onyx_tensor *in, const float *dy, float **dx)
{
    onyx_error err = {0};
    CHECK_OK(th_run_backward(t, in, dy, dx, &err), err.msg);
}

/* Hand-computed gradients of the binary ops, with broadcasting, and that they accumulate. */
static void test_binary_backward_values(void)
{
    /* Mul: A [2,3] * B [3]; dA = dY B, dB[j] = sum_i dY[i,j] A[i,j] */
    {
        th_node *n = th_node_new("Mul", 14, 2, 1);
        float a[6] = {1, 2, 3, 4, 5, 6};
        float b[3] = {-1, 0.5f, 2};
        float dy[6] = {1, 1, 1, 2, 2, 2};
        float da[6] = {0};
        float db[3] = {0};
        int64_t d2[2] = {2, 3};
        int64_t d1[1] = {3};
        onyx_tensor in[2] = {th_f32(2, d2, a), th_f32(1, d1, b)};
        run_backward(n, in, dy, (float *[]){da, db});
        const float want_da[6] = {-1, 0.5f, 2, -2, 1, 4};
        for (int i = 0; i < 6; i++)
            CHECK_NEAR(da[i], want_da[i]);
        CHECK_NEAR(db[0], 1 + 8);  /* 1*1 + 2*4 */
        CHECK_NEAR(db[1], 2 + 10); /* 1*2 + 2*5 */
        CHECK_NEAR(db[2], 3 + 12); /* 1*3 + 2*6 */
        /* accumulation: a second backward adds the same again */
        run_backward(n, in, dy, (float *[]){da, db});
        CHECK_NEAR(da[0], -2);
        CHECK_NEAR(db[2], 30);
        /* only dB wanted: dA untouched */
        float keep[6] = {7, 7, 7, 7, 7, 7};
        run_backward(n, in, dy, (float *[]){keep, NULL});
        CHECK_NEAR(keep[0], 7 - 1);
        run_backward(n, in, dy, (float *[]){NULL, db});
        CHECK_NEAR(db[0], 27);
        /* no gradient flows into Y: nothing changes */
        run_backward(n, in, NULL, (float *[]){da, db});
        CHECK_NEAR(da[0], -2);
        CHECK_NEAR(db[0], 27);
        th_node_free(n);
    }
    /* Add and Sub with a scalar B: dB = +-sum dY, pre-filled with 1 */
    {
        static const char *const ops[2] = {"Add", "Sub"};
        for (int o = 0; o < 2; o++) {
            th_node *n = th_node_new(ops[o], 14, 2, 1);
            float a[4] = {1, 2, 3, 4};
            float b[1] = {10};
            float dy[4] = {0.5f, 1, 1.5f, 2};
            float da[4] = {1, 1, 1, 1};
            float db[1] = {1};
            int64_t d1[1] = {4};
            onyx_tensor in[2] = {th_f32(1, d1, a), th_f32(0, NULL, b)};
            run_backward(n, in, dy, (float *[]){da, db});
            for (int i = 0; i < 4; i++)
                CHECK_NEAR(da[i], 1 + dy[i]);
            CHECK_NEAR(db[0], o == 0 ? 1 + 5 : 1 - 5);
            th_node_free(n);
        }
    }
    /* Div: 6 / 2 = 3; dA = 1/2, dB = -6/4 */
    {
        th_node *n = th_node_new("Div", 14, 2, 1);
        float a[1] = {6};
        float b[1] = {2};
        float dy[1] = {1};
        float da[1] = {1};
        float db[1] = {1};
        int64_t d1[1] = {1};
        onyx_tensor in[2] = {th_f32(1, d1, a), th_f32(1, d1, b)};
        run_backward(n, in, dy, (float *[]){da, db});
        CHECK_NEAR(da[0], 1 + 0.5);
        CHECK_NEAR(db[0], 1 - 1.5);
        th_node_free(n);
    }
    /* Pow: 2^3 = 8: dX = 3 * 2^2 = 12, dY = 8 ln 2; at X = 0: dX = 0 for Y = 0, dY = 0 for
     * Y >= 0 (PyTorch's conventions); dY = NaN for a negative base, as ln says */
    {
        th_node *n = th_node_new("Pow", 15, 2, 1);
        float x[4] = {2, 0, 0, -2};
        float y[4] = {3, 2, 0, 2};
        float dz[4] = {1, 1, 1, 1};
        float dx[4] = {0};
        float dyv[4] = {0};
        int64_t d1[1] = {4};
        onyx_tensor in[2] = {th_f32(1, d1, x), th_f32(1, d1, y)};
        run_backward(n, in, dz, (float *[]){dx, dyv});
        CHECK_NEAR(dx[0], 12);
        CHECK_NEAR(dyv[0], 8 * log(2.0));
        CHECK(dx[1] == 0 && dyv[1] == 0);
        CHECK(dx[2] == 0 && dyv[2] == 0);
        CHECK_NEAR(dx[3], -4); /* 2 * (-2)^1 */
        CHECK(isnan(dyv[3]));
        th_node_free(n);
    }
    /* Mul(X, X): both gradients land in one buffer: d(x^2) = 2 x */
    {
        th_node *n = th_node_new("Mul", 14, 2, 1);
        float x[3] = {1, -2, 3};
        float dy[3] = {1, 1, 2};
        float dx[3] = {0};
        int64_t d1[1] = {3};
        onyx_tensor in[2] = {th_f32(1, d1, x), th_f32(1, d1, x)};
        run_backward(n, in, dy, (float *[]){dx, dx});
        CHECK_NEAR(dx[0], 2);
        CHECK_NEAR(dx[1], -4);
        CHECK_NEAR(dx[2], 12);
        th_node_free(n);
    }
    /* Pow with an int64 exponent (opset >= 12): dX through the converted exponent in scratch;
     * the exponent gets no gradient */
    {
        th_node *n = th_node_new("Pow", 15, 2, 1);
        float x[3] = {1.5f, -2, 3};
        int64_t e[1] = {3};
        float dy[3] = {1, 1, 1};
        float dx[3] = {0};
        int64_t d1[1] = {3};
        onyx_tensor in[2] = {th_f32(1, d1, x), th_i64(0, NULL, e)};
        onyx_tensor out[1];
        onyx_error err = {0};
        CHECK_OK(th_infer(n, in, out, &err), err.msg);
        onyx_node *on = th_onyx_node(n);
        CHECK(on->impl->scratch_size != NULL &&
              on->impl->scratch_size(on, in, out) == sizeof(float));
        run_backward(n, in, dy, (float *[]){dx, NULL});
        CHECK_NEAR(dx[0], 3 * 1.5 * 1.5);
        CHECK_NEAR(dx[1], 12);
        CHECK_NEAR(dx[2], 27);
        grad_check(n, in, 0x1u, NULL);
        th_node_free(n);
        /* float exponent: no scratch */
        n = th_node_new("Pow", 15, 2, 1);
        float ef[1] = {3};
        in[1] = th_f32(0, NULL, ef);
        CHECK_OK(th_infer(n, in, out, &err), err.msg);
        on = th_onyx_node(n);
        CHECK(on->impl->scratch_size(on, in, out) == 0);
        th_node_free(n);
    }
    /* which inputs are differentiable */
    {
        const onyx_op_def *add = onyx_op_find("", "Add", 14);
        const onyx_op_def *sum = onyx_op_find("", "Sum", 13);
        const onyx_op_def *expo = onyx_op_find("", "Exp", 13);
        CHECK(add && add->impl->backward && add->impl->grad_inputs == 0x3u);
        CHECK(sum && sum->impl->backward && sum->impl->grad_inputs == ONYX_GRAD_ALL);
        CHECK(expo && expo->impl->backward && expo->impl->grad_inputs == 0x1u);
    }
}

/* Random operands for op: Pow's base in [0.5, 2) and exponent in [-2, 2), Div's divisor at
 * least 0.5 away from 0, else [-3, 3). */
static void binary_operands(const char *op, float *a, int64_t na, float *b, int64_t nb)
{
    bool is_pow = strcmp(op, "Pow") == 0;
    bool is_div = strcmp(op, "Div") == 0;
    for (int64_t i = 0; i < na; i++)
        a[i] = (float)(is_pow ? th_urand(&rng_state, 0.5, 2) : th_urand(&rng_state, -3, 3));
    for (int64_t i = 0; i < nb; i++) {
        double v = is_pow ? th_urand(&rng_state, -2, 2) : th_urand(&rng_state, -3, 3);
        if (is_div)
            v = (th_urand(&rng_state, 0, 1) < 0.5 ? -1 : 1) * th_urand(&rng_state, 0.5, 2);
        b[i] = (float)v;
    }
}

/* d(a op b)/da and d(a op b)/db in double, straight from calculus. */
static void ref_binary_grad(const char *op, double a, double b, double *ga, double *gb)
{
    *ga = 1;
    *gb = 1;
    if (strcmp(op, "Sub") == 0) {
        *gb = -1;
    } else if (strcmp(op, "Mul") == 0) {
        *ga = b;
        *gb = a;
    } else if (strcmp(op, "Div") == 0) {
        *ga = 1 / b;
        *gb = -a / (b * b);
    } else if (strcmp(op, "Pow") == 0) {
        *ga = b * pow(a, b - 1);
        *gb = pow(a, b) * log(a);
    }
}

/* The backward over every bcase against a naive double loop (div/mod broadcasting, each input's
 * gradient summed element by element), and against finite differences where small. */
static void backward_vs_naive_binary(const char *op, int64_t opset)
{
    for (size_t c = 0; c < sizeof(bcases) / sizeof(bcases[0]); c++) {
        const struct bcase *k = &bcases[c];
        int64_t na = th_numel(k->ra, k->da);
        int64_t nb = th_numel(k->rb, k->db);
        int64_t ny = th_numel(k->ry, k->dy);
        float *a = malloc(sizeof(float) * (size_t)(na + 1));
        float *b = malloc(sizeof(float) * (size_t)(nb + 1));
        float *dy = malloc(sizeof(float) * (size_t)(ny + 1));
        float *da = calloc((size_t)na + 1, sizeof(float));
        float *db = calloc((size_t)nb + 1, sizeof(float));
        double *want_a = calloc((size_t)na + 1, sizeof(double));
        double *want_b = calloc((size_t)nb + 1, sizeof(double));
        binary_operands(op, a, na, b, nb);
        for (int64_t i = 0; i < ny; i++)
            dy[i] = (float)th_urand(&rng_state, -1, 1);
        onyx_tensor ty = th_f32(k->ry, k->dy, NULL);
        onyx_tensor ta = th_f32(k->ra, k->da, a);
        onyx_tensor tb = th_f32(k->rb, k->db, b);
        for (int64_t i = 0; i < ny; i++) {
            int64_t ia = th_naive_index(&ty, &ta, i);
            int64_t ib = th_naive_index(&ty, &tb, i);
            double ga;
            double gb;
            ref_binary_grad(op, a[ia], b[ib], &ga, &gb);
            want_a[ia] += dy[i] * ga;
            want_b[ib] += dy[i] * gb;
        }
        th_node *n = th_node_new(op, opset, 2, 1);
        onyx_tensor in[2] = {ta, tb};
        run_backward(n, in, dy, (float *[]){da, db});
        char label[64];
        snprintf(label, sizeof label, "%s backward dA case %zu", op, c);
        CHECK(th_close_f32(da, want_a, na, 1e-5, 1e-4, label));
        snprintf(label, sizeof label, "%s backward dB case %zu", op, c);
        CHECK(th_close_f32(db, want_b, nb, 1e-5, 1e-4, label));
        if (ny > 0 && ny <= 800)
            grad_check(n, in, 0x3u, NULL);
        th_node_free(n);
        free(a);
        free(b);
        free(dy);
        free(da);
        free(db);
        free(want_a);
        free(want_b);
    }
}

/* Opset < 7: B broadcast onto A from `axis` (or as a suffix); dB sums over A's other dims. */
static void test_binary_backward_legacy(void)
{
    static const char *const ops[5] = {"Add", "Sub", "Mul", "Div", "Pow"};
    for (int o = 0; o < 5; o++) {
        /* A [2,3,4,5], B [3,4] at axis 1 */
        float a[120];
        float b[12];
        binary_operands(ops[o], a, 120, b, 12);
        int64_t da[4] = {2, 3, 4, 5};
        int64_t dbm[2] = {3, 4};
        th_node *n = th_node_new(ops[o], 6, 2, 1);
        th_attr_int(n, "broadcast", 1);
        th_attr_int(n, "axis", 1);
        onyx_tensor in[2] = {th_f32(4, da, a), th_f32(2, dbm, b)};
        grad_check(n, in, 0x3u, NULL);
        th_node_free(n);
        /* B [5]: suffix */
        n = th_node_new(ops[o], 6, 2, 1);
        th_attr_int(n, "broadcast", 1);
        int64_t d5[1] = {5};
        in[1] = th_f32(1, d5, b);
        grad_check(n, in, 0x3u, NULL);
        th_node_free(n);
    }
}

static void test_sum_backward(void)
{
    /* [2,1] + [3] + scalar -> [2,3]: each gets dY summed into its shape */
    {
        th_node *n = th_node_new("Sum", 13, 3, 1);
        float a[2] = {1, 2};
        float b[3] = {3, 4, 5};
        float c[1] = {6};
        float dy[6] = {1, 2, 3, 4, 5, 6};
        float da[2] = {0};
        float db[3] = {0};
        float dc[1] = {1};
        int64_t d21[2] = {2, 1};
        int64_t d3[1] = {3};
        onyx_tensor in[3] = {th_f32(2, d21, a), th_f32(1, d3, b), th_f32(0, NULL, c)};
        run_backward(n, in, dy, (float *[]){da, db, dc});
        CHECK_NEAR(da[0], 6);
        CHECK_NEAR(da[1], 15);
        CHECK_NEAR(db[0], 5);
        CHECK_NEAR(db[1], 7);
        CHECK_NEAR(db[2], 9);
        CHECK_NEAR(dc[0], 1 + 21); /* accumulated onto 1 */
        grad_check(n, in, 0x7u, NULL);
        th_node_free(n);
    }
    /* one input; opset 6 (no broadcasting); both broadcast ways at once */
    {
        float a[12];
        float b[12];
        float c[12];
        binary_operands("Add", a, 12, b, 12);
        binary_operands("Add", c, 12, c, 0);
        int64_t d34[2] = {3, 4};
        th_node *n = th_node_new("Sum", 13, 1, 1);
        onyx_tensor in[3] = {th_f32(2, d34, a), th_f32(2, d34, b), th_f32(2, d34, c)};
        grad_check(n, in, 0x1u, NULL);
        th_node_free(n);
        n = th_node_new("Sum", 6, 3, 1);
        grad_check(n, in, 0x7u, NULL);
        th_node_free(n);
        int64_t d31[2] = {3, 1};
        int64_t d14[2] = {1, 4};
        int64_t d4[1] = {4};
        n = th_node_new("Sum", 8, 3, 1);
        in[0] = th_f32(2, d31, a);
        in[1] = th_f32(2, d14, b);
        in[2] = th_f32(1, d4, c);
        grad_check(n, in, 0x7u, NULL);
        th_node_free(n);
    }
}

/* Skips elements near Abs's kink at 0 (finite differences straddle it). */
static bool skip_near_zero(int input, int64_t k, float x)
{
    (void)input;
    (void)k;
    return fabsf(x) < 0.05f;
}

static void test_unary_backward(void)
{
    /* hand values: Sqrt(4): 1/4; Neg: -1; Abs(-2): -1, Abs(0): 0; Exp(0): 1; Log(2): 1/2;
     * Erf(0): 2/sqrt(pi); each with dY = 2 and dX pre-filled with 1 */
    static const struct {
        const char *op;
        float x;
        double want; /* dX after the backward */
    } hand[] = {
        {"Sqrt", 4, 1 + 2 * 0.25},
        {"Neg", 3, 1 - 2},
        {"Abs", -2, 1 - 2},
        {"Abs", 0, 1},
        {"Abs", 5, 1 + 2},
        {"Exp", 0, 1 + 2},
        {"Exp", 1, 1 + 2 * E_CONST},
        {"Log", 2, 1 + 1},
        {"Erf", 0, 1 + 2 * TWO_OVER_SQRTPI},
        {"Erf", 1, 1 + 2 * TWO_OVER_SQRTPI * exp(-1.0)},
    };
    for (size_t c = 0; c < sizeof(hand) / sizeof(hand[0]); c++) {
        th_node *n = th_node_new(hand[c].op, 13, 1, 1);
        float dy[1] = {2};
        float dx[1] = {1};
        int64_t d1[1] = {1};
        onyx_tensor in[1] = {th_f32(1, d1, &hand[c].x)};
        run_backward(n, in, dy, (float *[]){dx});
        CHECK_NEAR(dx[0], hand[c].want);
        th_node_free(n);
    }
    /* finite differences on 3x7 tensors (positive where the op needs it) */
    static const char *const ops[6] = {"Sqrt", "Neg", "Abs", "Exp", "Log", "Erf"};
    for (int o = 0; o < 6; o++) {
        bool positive = strcmp(ops[o], "Sqrt") == 0 || strcmp(ops[o], "Log") == 0;
        float x[21];
        for (int i = 0; i < 21; i++)
            x[i] = (float)(positive ? th_urand(&rng_state, 0.3, 4) : th_urand(&rng_state, -2, 2));
        int64_t d[2] = {3, 7};
        th_node *n = th_node_new(ops[o], 13, 1, 1);
        onyx_tensor in[1] = {th_f32(2, d, x)};
        grad_check(n, in, 0x1u, strcmp(ops[o], "Abs") == 0 ? skip_near_zero : NULL);
        th_node_free(n);
    }
    /* an empty tensor: nothing to do, nothing touched */
    {
        th_node *n = th_node_new("Exp", 13, 1, 1);
        int64_t d0[2] = {0, 3};
        float dx[1] = {5};
        onyx_tensor in[1] = {th_f32(2, d0, NULL)};
        run_backward(n, in, NULL, (float *[]){dx});
        CHECK(dx[0] == 5);
        th_node_free(n);
    }
}

int main(void)
{
    test_binary_values();
    test_binary_broadcast_values();
    fast_vs_naive_binary("Add", 14);
    fast_vs_naive_binary("Sub", 14);
    fast_vs_naive_binary("Mul", 14);
    fast_vs_naive_binary("Div", 14);
    fast_vs_naive_binary("Pow", 15);
    test_binary_integers();
    test_pow_types();
    test_binary_errors();
    test_binary_infer();
    test_binary_legacy();
    test_sum();
    test_unary_values();
    test_unary_fast_vs_naive();
    test_unary_integers();
    test_unary_errors_and_infer();
    test_binary_backward_values();
    backward_vs_naive_binary("Add", 14);
    backward_vs_naive_binary("Sub", 14);
    backward_vs_naive_binary("Mul", 14);
    backward_vs_naive_binary("Div", 14);
    backward_vs_naive_binary("Pow", 15);
    test_binary_backward_legacy();
    test_sum_backward();
    test_unary_backward();
    printf("%d gradient checks\n", grad_checks);
    return check_report();
}
