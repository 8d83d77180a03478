/* test_cast.c — ops/cast.c: Cast between every numeric dtype. Expected values are numpy's astype
 * results, written out by hand (bit patterns for float16/bfloat16). Backward: float32 -> float32
 * is the identity; every other pairing carries no gradient. */
#include "check.h"
#include "grad_check.h"
#include "op_harness.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define D(...) ((const int64_t[]){__VA_ARGS__})

static onyx_error err;

#define CHECK_ERR(expr, code, sub) TH_CHECK_ERR(err, "Cast", expr, code, sub)

/* Casts n elements of x (dtype from) to `to` with a Cast node of the given opset; the result
 * bytes are copied to y. Returns false (and fails a check) if the node fails. */
static bool cast_run(int64_t opset, onyx_dtype from, const void *x, int64_t n, onyx_dtype to,
                     void *y)
{
    onyx_tensor in[1] = {th_tensor(from, 1, D(n), x)};
    onyx_tensor out[1];
    th_node *t = th_node_new("Cast", opset, 1, 1);
    th_attr_int(t, "to", to);
    onyx_status st = th_run(t, ONYX_MODE_INFER, in, out, &err);
    CHECK_OK(st, err.msg);
    bool ok = st == ONYX_OK && out[0].dtype == to && out[0].rank == 1 && out[0].dims[0] == n;
    CHECK(ok);
    if (ok)
        memcpy(y, out[0].data, (size_t)n * onyx_dtype_size(to));
    th_node_free(t);
    return ok;
}

static void test_float_to_int(void)
{
    /* float32 -> int64 (fast path): truncation toward zero */
    float x[8] = {1.9f, -1.9f, 0.5f, -0.5f, 3e9f, -3e9f, 4611686018427387904.0f, 0.0f};
    int64_t y[8];
    if (cast_run(13, ONYX_DTYPE_F32, x, 8, ONYX_DTYPE_I64, y)) {
        const int64_t want[8] = {1, -1, 0, 0, 3000000000, -3000000000, INT64_C(1) << 62, 0};
        CHECK(memcmp(y, want, sizeof want) == 0);
    }
    /* out of range and NaN: INT64_MIN, as numpy gives on x86 */
    float xo[4] = {9.2233720368547758e18f, -9.2233720368547758e18f, INFINITY, NAN};
    if (cast_run(13, ONYX_DTYPE_F32, xo, 4, ONYX_DTYPE_I64, y)) {
        CHECK(y[0] == INT64_MIN);
        CHECK(y[1] == INT64_MIN); /* -2^63 itself */
        CHECK(y[2] == INT64_MIN);
        CHECK(y[3] == INT64_MIN);
    }
    /* float32 -> int32 and float64 -> int64 (generic path) */
    float x32[4] = {2.7f, -2.7f, 100.99f, -0.99f};
    int32_t y32[4];
    if (cast_run(6, ONYX_DTYPE_F32, x32, 4, ONYX_DTYPE_I32, y32))
        CHECK(y32[0] == 2 && y32[1] == -2 && y32[2] == 100 && y32[3] == 0);
    double x64[3] = {-2.5, 2.5, 9007199254740993.0 /* rounds to 2^53 as a double */};
    if (cast_run(9, ONYX_DTYPE_F64, x64, 3, ONYX_DTYPE_I64, y))
        CHECK(y[0] == -2 && y[1] == 2 && y[2] == INT64_C(9007199254740992));
    /* float -> uint8: truncate, then wrap (-1 -> 255) */
    float xu[3] = {255.9f, 1.5f, -1.0f};
    uint8_t yu[3];
    if (cast_run(13, ONYX_DTYPE_F32, xu, 3, ONYX_DTYPE_U8, yu))
        CHECK(yu[0] == 255 && yu[1] == 1 && yu[2] == 255);
    /* float16 -> int16 */
    uint16_t xh[2] = {0xc0e0 /* -2.4375 */, 0x4d00 /* 20 */};
    int16_t yh[2];
    if (cast_run(13, ONYX_DTYPE_F16, xh, 2, ONYX_DTYPE_I16, yh))
        CHECK(yh[0] == -2 && yh[1] == 20);
}

static void test_float16(void)
{
    /* float32 -> float16: round to nearest even, overflow to inf, subnormals */
    float x[12] = {1.0f / 3.0f,
                   65504.0f,               /* largest half */
                   65519.0f,               /* still rounds down to 65504 */
                   65520.0f,               /* rounds up: inf */
                   5.9604644775390625e-8f, /* 2^-24, smallest subnormal */
                   2.98023223876953125e-8f, /* 2^-25: tie, to even (0) */
                   8.94069671630859375e-8f, /* 3 * 2^-25: tie, to even (2 * 2^-24) */
                   1e-5f,                  /* subnormal: 167.77 * 2^-24 -> 168 */
                   -0.0f,
                   -INFINITY,
                   1.0009765625f, /* 1 + 2^-10: exact */
                   1.00048828125f /* 1 + 2^-11: tie, to even (1) */};
    uint16_t h[12];
    if (cast_run(13, ONYX_DTYPE_F32, x, 12, ONYX_DTYPE_F16, h)) {
        const uint16_t want[12] = {0x3555, 0x7bff, 0x7bff, 0x7c00, 0x0001, 0x0000,
                                   0x0002, 0x00a8, 0x8000, 0xfc00, 0x3c01, 0x3c00};
        for (int i = 0; i < 12; i++)
            CHECK(h[i] == want[i]);
    }
    /* and back: the exact values of those halves */
    float r[12];
    if (cast_run(13, ONYX_DTYPE_F16, h, 12, ONYX_DTYPE_F32, r)) {
        CHECK(r[0] == 0.333251953125f);
        CHECK(r[1] == 65504.0f && r[2] == 65504.0f);
        CHECK(isinf(r[3]) && r[3] > 0);
        CHECK(r[4] == 5.9604644775390625e-8f);
        CHECK(r[5] == 0.0f);
        CHECK(r[6] == 1.1920928955078125e-7f);
        CHECK(r[7] == 1.00135803222656250e-05f);
        CHECK(r[8] == 0.0f && signbit(r[8]));
        CHECK(isinf(r[9]) && r[9] < 0);
        CHECK(r[10] == 1.0009765625f && r[11] == 1.0f);
    }
    /* NaN stays NaN both ways */
    float xn[1] = {NAN};
    uint16_t hn[1];
    float rn[1];
    if (cast_run(13, ONYX_DTYPE_F32, xn, 1, ONYX_DTYPE_F16, hn) &&
        cast_run(13, ONYX_DTYPE_F16, hn, 1, ONYX_DTYPE_F32, rn))
        CHECK(isnan(rn[0]));
    /* float64 <-> float16 */
    double xd[2] = {0.1, -2048.5};
    uint16_t hd[2];
    double rd[2];
    if (cast_run(13, ONYX_DTYPE_F64, xd, 2, ONYX_DTYPE_F16, hd) &&
        cast_run(13, ONYX_DTYPE_F16, hd, 2, ONYX_DTYPE_F64, rd)) {
        CHECK(hd[0] == 0x2e66 && rd[0] == 0.0999755859375);
        CHECK(hd[1] == 0xe800 && rd[1] == -2048.0); /* spacing 2 at 2048: nearest */
    }
}

static void test_bfloat16(void)
{
    /* float32 -> bfloat16 rounds to nearest even (as onnxruntime and the newer ONNX reference
     * do; truncation would give 0x3ef5, 0x3eaa, 0x3f81, 0x3f80 for the first four) */
    float x[8] = {0.48033667f,
                  1.0f / 3.0f,      /* 0x3eaaaaab */
                  1.01171875f,      /* 0x3f818000: tie, to even -> 0x3f82 */
                  1.00390625f,      /* 0x3f808000: tie, to even -> 0x3f80 */
                  0.47892547f,      /* 0x3ef5369d -> 0x3ef5 */
                  INFINITY,
                  -INFINITY,
                  3.4028234663852886e38f /* largest float32: rounds to inf */};
    uint16_t b[8];
    if (cast_run(13, ONYX_DTYPE_F32, x, 8, ONYX_DTYPE_BF16, b)) {
        const uint16_t want[8] = {0x3ef6, 0x3eab, 0x3f82, 0x3f80, 0x3ef5, 0x7f80, 0xff80, 0x7f80};
        for (int i = 0; i < 8; i++)
            CHECK(b[i] == want[i]);
    }
    float xn[1] = {NAN};
    uint16_t bn[1];
    if (cast_run(13, ONYX_DTYPE_F32, xn, 1, ONYX_DTYPE_BF16, bn))
        CHECK((bn[0] & 0x7fff) > 0x7f80);
    /* bfloat16 -> float32 is exact */
    uint16_t bx[3] = {0x3ef6, 0xc0a0, 0x0001};
    float r[3];
    if (cast_run(13, ONYX_DTYPE_BF16, bx, 3, ONYX_DTYPE_F32, r)) {
        CHECK(r[0] == 0.48046875f);
        CHECK(r[1] == -5.0f);
        CHECK(r[2] == 9.18354961579912115600575419705e-41f);
    }
    /* bfloat16 <-> float16 through float */
    uint16_t h[3];
    if (cast_run(13, ONYX_DTYPE_BF16, bx, 3, ONYX_DTYPE_F16, h))
        CHECK(h[0] == 0x37b0 && h[1] == 0xc500 && h[2] == 0x0000);
}

static void test_int_to_int(void)
{
    /* through int64: exact, then wrapped */
    int64_t x[6] = {(INT64_C(1) << 32) + 5, -1, INT64_C(1) << 31, 300, -129, INT64_MAX};
    int32_t y32[6];
    if (cast_run(13, ONYX_DTYPE_I64, x, 6, ONYX_DTYPE_I32, y32)) {
        CHECK(y32[0] == 5 && y32[1] == -1 && y32[2] == INT32_MIN && y32[3] == 300);
        CHECK(y32[4] == -129 && y32[5] == -1);
    }
    int8_t y8[6];
    if (cast_run(13, ONYX_DTYPE_I64, x, 6, ONYX_DTYPE_I8, y8))
        CHECK(y8[3] == 44 && y8[4] == 127 && y8[1] == -1);
    uint64_t yu[6];
    if (cast_run(13, ONYX_DTYPE_I64, x, 6, ONYX_DTYPE_U64, yu))
        CHECK(yu[1] == UINT64_MAX && yu[5] == (uint64_t)INT64_MAX);
    /* uint64 beyond int64 keeps its bits into int64, and its value into float64 */
    uint64_t ux[2] = {UINT64_MAX, (UINT64_C(1) << 63) + 2048};
    int64_t yi[2];
    if (cast_run(13, ONYX_DTYPE_U64, ux, 2, ONYX_DTYPE_I64, yi))
        CHECK(yi[0] == -1 && yi[1] == INT64_MIN + 2048);
    double yd[2];
    if (cast_run(13, ONYX_DTYPE_U64, ux, 2, ONYX_DTYPE_F64, yd))
        CHECK(yd[0] == 18446744073709551616.0 && yd[1] == 9223372036854777856.0);
    /* large int64 values stay exact between integer types (no trip through double) */
    int64_t big[1] = {INT64_C(9007199254740993)}; /* 2^53 + 1 */
    uint64_t yb[1];
    if (cast_run(13, ONYX_DTYPE_I64, big, 1, ONYX_DTYPE_U64, yb))
        CHECK(yb[0] == UINT64_C(9007199254740993));
    /* int64 -> float32 (fast path): one rounding */
    int64_t xf[3] = {16777217, -3, (INT64_C(1) << 40) + 1};
    float yf[3];
    if (cast_run(13, ONYX_DTYPE_I64, xf, 3, ONYX_DTYPE_F32, yf))
        CHECK(yf[0] == 16777216.0f && yf[1] == -3.0f && yf[2] == 1099511627776.0f);
    /* uint8 / int16 -> float */
    uint8_t xu8[2] = {200, 7};
    float yu8[2];
    if (cast_run(13, ONYX_DTYPE_U8, xu8, 2, ONYX_DTYPE_F32, yu8))
        CHECK(yu8[0] == 200.0f && yu8[1] == 7.0f);
    int16_t xi16[2] = {-32768, 12};
    double yi16[2];
    if (cast_run(13, ONYX_DTYPE_I16, xi16, 2, ONYX_DTYPE_F64, yi16))
        CHECK(yi16[0] == -32768.0 && yi16[1] == 12.0);
}

static void test_bool(void)
{
    int64_t xi[3] = {0, 5, -1};
    uint8_t b[4];
    if (cast_run(13, ONYX_DTYPE_I64, xi, 3, ONYX_DTYPE_BOOL, b))
        CHECK(b[0] == 0 && b[1] == 1 && b[2] == 1);
    float xf[4] = {0.0f, -0.0f, 0.1f, NAN};
    if (cast_run(13, ONYX_DTYPE_F32, xf, 4, ONYX_DTYPE_BOOL, b))
        CHECK(b[0] == 0 && b[1] == 0 && b[2] == 1 && b[3] == 1);
    uint8_t xb[2] = {0, 1};
    float yf[2];
    if (cast_run(13, ONYX_DTYPE_BOOL, xb, 2, ONYX_DTYPE_F32, yf))
        CHECK(yf[0] == 0.0f && yf[1] == 1.0f);
    int32_t yi[2];
    if (cast_run(13, ONYX_DTYPE_BOOL, xb, 2, ONYX_DTYPE_I32, yi))
        CHECK(yi[0] == 0 && yi[1] == 1);
    uint16_t yh[2];
    if (cast_run(13, ONYX_DTYPE_BOOL, xb, 2, ONYX_DTYPE_F16, yh))
        CHECK(yh[0] == 0 && yh[1] == 0x3c00);
}

/* The fast float32 <-> float64 / int64 loops against plain per-element conversions. */
static void test_fast_vs_naive(void)
{
    enum { N = 1001 };
    static float xf[N];
    static double xd[N];
    static int64_t xi[N];
    for (int i = 0; i < N; i++) {
        xf[i] = (float)((i - 500) * 1.37) * (i % 7 == 0 ? 1e7f : 1.0f);
        xd[i] = (i - 500) * 0.1234567890123 * (i % 5 == 0 ? 1e30 : 1.0);
        xi[i] = (int64_t)(i - 500) * (i % 3 == 0 ? INT64_C(123456789012345) : 1);
    }
    static double yd[N];
    static float yf[N];
    static int64_t yi[N];
    int bad = 0;
    if (cast_run(13, ONYX_DTYPE_F32, xf, N, ONYX_DTYPE_F64, yd))
        for (int i = 0; i < N; i++)
            bad += yd[i] != (double)xf[i];
    if (cast_run(13, ONYX_DTYPE_F64, xd, N, ONYX_DTYPE_F32, yf))
        for (int i = 0; i < N; i++) /* 1e30 * big overflows float32 to inf, as in numpy */
            bad += memcmp(&yf[i], &(float){(float)xd[i]}, sizeof(float)) != 0;
    if (cast_run(13, ONYX_DTYPE_F32, xf, N, ONYX_DTYPE_I64, yi))
        for (int i = 0; i < N; i++)
            bad += yi[i] != (int64_t)xf[i];
    if (cast_run(13, ONYX_DTYPE_I64, xi, N, ONYX_DTYPE_F32, yf))
        for (int i = 0; i < N; i++)
            bad += yf[i] != (float)xi[i];
    /* the generic path agrees with the fast one: float32 -> int64 -> int32 vs float32 -> int32
     * for values inside int32 */
    static int32_t y32[N];
    if (cast_run(13, ONYX_DTYPE_F32, xf, N, ONYX_DTYPE_I32, y32))
        for (int i = 0; i < N; i++)
            if (fabsf(xf[i]) < 2e9f)
                bad += y32[i] != (int32_t)xf[i];
    CHECK(bad == 0);
}

static void test_shapes_and_errors(void)
{
    /* same dtype: a copy; shape kept */
    float x[6] = {1, 2, 3, 4, 5, 6};
    onyx_tensor in[1] = {th_f32(2, D(2, 3), x)};
    onyx_tensor out[1];
    th_node *t = th_node_new("Cast", 19, 1, 1);
    th_attr_int(t, "to", ONYX_DTYPE_F32);
    th_attr_int(t, "saturate", 0); /* float8 only: ignored */
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK(out[0].rank == 2 && out[0].dims[0] == 2 && out[0].dims[1] == 3);
    CHECK(memcmp(out[0].data, x, sizeof x) == 0);
    th_node_free(t);

    /* a scalar and an empty tensor */
    t = th_node_new("Cast", 13, 1, 1);
    th_attr_int(t, "to", ONYX_DTYPE_I32);
    in[0] = th_f32(0, D(0), (const float[]){-7.9f});
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK(out[0].rank == 0 && ((int32_t *)out[0].data)[0] == -7);
    in[0] = th_f32(2, D(0, 3), NULL);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK(out[0].rank == 2 && out[0].dims[0] == 0 && out[0].dtype == ONYX_DTYPE_I32);
    /* load time: unknown dims and rank pass through */
    in[0] = th_f32(3, D(-1, 4, -1), NULL);
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK(out[0].dtype == ONYX_DTYPE_I32 && out[0].rank == 3 && out[0].dims[0] == -1 &&
          out[0].dims[1] == 4 && out[0].dims[2] == -1);
    in[0] = th_omitted();
    in[0].dtype = ONYX_DTYPE_F16;
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK(out[0].dtype == ONYX_DTYPE_I32 && out[0].rank == -1);
    /* from string */
    in[0] = th_tensor(ONYX_DTYPE_STRING, 1, D(2), NULL);
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_UNSUPPORTED,
              "casting from string is not supported");
    th_node_free(t);

    in[0] = th_f32(2, D(2, 3), x);
    t = th_node_new("Cast", 13, 1, 1);
    th_attr_int(t, "to", ONYX_DTYPE_STRING);
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_UNSUPPORTED,
              "casting to string is not supported");
    th_node_free(t);
    t = th_node_new("Cast", 19, 1, 1);
    th_attr_int(t, "to", 17); /* FLOAT8E4M3FN */
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_UNSUPPORTED, "data type 17 is not supported");
    th_node_free(t);
    t = th_node_new("Cast", 13, 1, 1);
    th_attr_int(t, "to", 0);
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_INVALID_MODEL,
              "attribute to is 0, which is not an ONNX data type");
    th_node_free(t);
    t = th_node_new("Cast", 13, 1, 1);
    th_attr_int(t, "to", 1000);
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_INVALID_MODEL, "to is 1000");
    th_node_free(t);
    t = th_node_new("Cast", 13, 1, 1);
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_INVALID_MODEL, "attribute to is required");
    th_node_free(t);
    t = th_node_new("Cast", 6, 1, 1);
    th_attr_string(t, "to", "FLOAT"); /* opset 1's form */
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_INVALID_MODEL,
              "attribute to has type string, expected int");
    th_node_free(t);
    /* opset 1 is not registered */
    t = th_node_new("Cast", 1, 1, 1);
    th_attr_int(t, "to", 1);
    memset(&err, 0, sizeof err);
    CHECK(th_infer(t, in, out, &err) == ONYX_ERR_UNSUPPORTED);
    th_node_free(t);
}

/* float32 -> float32 passes the gradient through (finite differences and by hand, accumulated
 * onto 1s); any other pairing leaves the input's gradient alone. */
static void test_backward(void)
{
    float x[6] = {0.5f, -1, 2, 3.25f, -4, 0};
    onyx_tensor in[1] = {th_f32(2, D(2, 3), x)};
    th_node *t = th_node_new("Cast", 13, 1, 1);
    th_attr_int(t, "to", ONYX_DTYPE_F32);
    CHECK(th_grad_check_default(t, ONYX_MODE_TRAIN, in, 1u) == 0);
    onyx_tensor out[1];
    CHECK_OK(th_run(t, ONYX_MODE_TRAIN, in, out, &err), err.msg);
    float dy[6] = {1, 2, 3, 4, 5, 6};
    float dx[6] = {1, 1, 1, 1, 1, 1};
    onyx_tensor dout[1] = {th_f32(2, D(2, 3), dy)};
    onyx_tensor din[1] = {th_f32(2, D(2, 3), dx)};
    onyx_node *n = th_onyx_node(t);
    onyx_kctx ctx = {.mode = ONYX_MODE_TRAIN};
    n->impl->backward(n, &ctx, in, out, dout, din);
    bool ok = true;
    for (int i = 0; i < 6; i++)
        ok = ok && dx[i] == 1 + dy[i];
    CHECK(ok);
    CHECK(n->impl->grad_inputs == 1u);
    th_node_free(t);

    /* float32 -> float64 and float64 -> float32: no gradient, dx untouched */
    t = th_node_new("Cast", 13, 1, 1);
    th_attr_int(t, "to", ONYX_DTYPE_F64);
    CHECK_OK(th_run(t, ONYX_MODE_TRAIN, in, out, &err), err.msg);
    double dyd[6] = {1, 2, 3, 4, 5, 6};
    dout[0] = th_tensor(ONYX_DTYPE_F64, 2, D(2, 3), dyd);
    n = th_onyx_node(t);
    n->impl->backward(n, &ctx, in, out, dout, din);
    ok = true;
    for (int i = 0; i < 6; i++)
        ok = ok && dx[i] == 1 + dy[i];
    CHECK(ok);
    th_node_free(t);
    double xd[6] = {0};
    onyx_tensor ind[1] = {th_tensor(ONYX_DTYPE_F64, 2, D(2, 3), xd)};
    t = th_node_new("Cast", 13, 1, 1);
    th_attr_int(t, "to", ONYX_DTYPE_F32);
    CHECK_OK(th_run(t, ONYX_MODE_TRAIN, ind, out, &err), err.msg);
    dout[0] = th_f32(2, D(2, 3), dy);
    n = th_onyx_node(t);
    n->impl->backward(n, &ctx, ind, out, dout, din);
    ok = true;
    for (int i = 0; i < 6; i++)
        ok = ok && dx[i] == 1 + dy[i];
    CHECK(ok);
    th_node_free(t);
}

int main(void)
{
    test_float_to_int();
    test_float16();
    test_bfloat16();
    test_int_to_int();
    test_bool();
    test_fast_vs_naive();
    test_shapes_and_errors();
    test_backward();
    return check_report();
}
