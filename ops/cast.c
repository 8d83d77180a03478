/*
 * cast.c — Cast (opset 6+): element type conversion between every numeric dtype onyx holds
 * (bool, the integers, float16, bfloat16, float32, float64).
 *
 * Semantics are numpy's astype, the reference of the ONNX tests: floats truncate toward zero
 * when stored to integers; integers wrap modulo 2^bits; x != 0 is true; float -> float16 /
 * bfloat16 rounds to nearest even. Integer -> integer goes through int64, so large values stay
 * exact. Opset 1's string form of `to` is not supported (the registry starts at 6); the
 * `saturate` attribute (opset 19) only concerns float8 types, which onyx does not hold.
 *
 * Backward: only float32 -> float32 (the identity) carries a gradient, dx += dy. Every other
 * pairing has none: the trainer differentiates float32 tensors only (runtime/autodiff.c), so a
 * Cast whose input or output is not float32 never receives or passes a gradient, and backward
 * does nothing for it if it is called all the same. grad_inputs is per impl and so says input 0
 * for every Cast; the dtypes decide.
 */
#include "ops.h"

#include <string.h>

typedef struct cast_priv {
    onyx_dtype to;
} cast_priv;

static onyx_status cast_init(onyx_node *n, onyx_error *err)
{
    onyx_status st = onyx_node_check_arity(n, 1, 1, 1, 1, err);
    if (st != ONYX_OK)
        return st;
    cast_priv parsed = {0};
    cast_priv *p = &parsed;
    if (onyx_node_attr(n, "to") == NULL)
        return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL, "attribute to is required");
    int64_t to;
    st = onyx_attr_int(n, "to", 0, &to, err);
    if (st != ONYX_OK)
        return st;
    if (to == ONYX_DTYPE_STRING)
        return onyx_node_err(err, n, ONYX_ERR_UNSUPPORTED,
                             "casting to string is not supported by onyx");
    /* 14, 15: complex; 17..: float8, 4-bit types and later additions to TensorProto. */
    if (to == 14 || to == 15 || (to >= 17 && to <= 64))
        return onyx_node_err(err, n, ONYX_ERR_UNSUPPORTED,
                             "casting to data type %lld is not supported by onyx", (long long)to);
    if (to < INT32_MIN || to > INT32_MAX || !onyx_dtype_is_known((int32_t)to))
        return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL,
                             "attribute to is %lld, which is not an ONNX data type",
                             (long long)to);
    p->to = (onyx_dtype)to;
    return onyx_node_set_priv(n, p, sizeof(*p), err);
}

/* input: any shape -> output: the same shape, dtype `to`. */
static onyx_status cast_infer(const onyx_node *n, const onyx_tensor *in, onyx_tensor *out,
                              onyx_error *err)
{
    const cast_priv *p = n->priv;
    if (in[0].dtype == ONYX_DTYPE_STRING)
        return onyx_node_err(err, n, ONYX_ERR_UNSUPPORTED,
                             "casting from string is not supported by onyx");
    out[0].dtype = p->to;
    out[0].rank = in[0].rank;
    for (int i = 0; i < in[0].rank; i++)
        out[0].dims[i] = in[0].dims[i];
    return ONYX_OK;
}

/* Raw loops for the common float32 conversions. x, y: (n). */
static void cast_f32_to_f64(const float *restrict x, double *restrict y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = x[i];
}

static void cast_f64_to_f32(const double *restrict x, float *restrict y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = (float)x[i];
}

/* Truncates toward zero; NaN and values outside int64 give INT64_MIN (what x86 and numpy give,
 * and what onyx_store_f64 gives). */
static void cast_f32_to_i64(const float *restrict x, int64_t *restrict y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        y[i] = v >= -9.2233720368547758e18f && v < 9.2233720368547758e18f ? (int64_t)v
                                                                           : INT64_MIN;
    }
}

/* Direct int64 -> float32 (one rounding, as numpy; going through double would round twice). */
static void cast_i64_to_f32(const int64_t *restrict x, float *restrict y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = (float)x[i];
}

/* Every other pair: one generic element loop. With a float on either side the value travels as
 * a double (exact for every source type but 64-bit integers beyond 2^53); integer and bool
 * pairs travel as int64 (exact, then wrapped to the target's width). */
static void cast_generic(onyx_dtype from, const void *x, onyx_dtype to, void *y, int64_t n)
{
    if (onyx_dtype_is_float(from) || onyx_dtype_is_float(to)) {
        for (int64_t i = 0; i < n; i++)
            onyx_store_f64(to, y, i, onyx_load_f64(from, x, i));
    } else {
        for (int64_t i = 0; i < n; i++)
            onyx_store_i64(to, y, i, onyx_load_i64(from, x, i));
    }
}

static void cast_forward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                         onyx_tensor *out)
{
    (void)n;
    (void)ctx;
    onyx_dtype from = in[0].dtype;
    onyx_dtype to = out[0].dtype;
    int64_t count = onyx_numel(&out[0]);
    if (count == 0)
        return;
    if (from == to)
        memcpy(out[0].data, in[0].data, onyx_nbytes(&out[0]));
    else if (from == ONYX_DTYPE_F32 && to == ONYX_DTYPE_F64)
        cast_f32_to_f64(in[0].data, out[0].data, count);
    else if (from == ONYX_DTYPE_F64 && to == ONYX_DTYPE_F32)
        cast_f64_to_f32(in[0].data, out[0].data, count);
    else if (from == ONYX_DTYPE_F32 && to == ONYX_DTYPE_I64)
        cast_f32_to_i64(in[0].data, out[0].data, count);
    else if (from == ONYX_DTYPE_I64 && to == ONYX_DTYPE_F32)
        cast_i64_to_f32(in[0].data, out[0].data, count);
    else
        cast_generic(from, in[0].data, to, out[0].data, count);
}

/* Backward of y = x for float32 -> float32: dx += dy. Any other pairing: no gradient. */
static void cast_backward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                          const onyx_tensor *out, const onyx_tensor *dout, onyx_tensor *din)
{
    (void)n;
    (void)ctx;
    if (in[0].dtype != ONYX_DTYPE_F32 || out[0].dtype != ONYX_DTYPE_F32)
        return;
    if (din[0].data == NULL || dout[0].data == NULL)
        return;
    const float *dy = dout[0].data;
    float *dx = din[0].data;
    int64_t count = onyx_numel(&in[0]);
    for (int64_t i = 0; i < count; i++)
        dx[i] += dy[i];
}

const onyx_op_impl onyx_impl_cast = {.init = cast_init,
                                     .infer = cast_infer,
                                     .forward = cast_forward,
                                     .backward = cast_backward,
                                     .grad_inputs = 1u << 0};
