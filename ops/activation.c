/*
 * activation.c — elementwise activations: Relu, LeakyRelu, Sigmoid, HardSigmoid, HardSwish,
 * Tanh, Elu, Selu, Celu, Softplus, Softsign and Gelu (one impl: the op and its parameters are
 * chosen in init), PRelu (a slope tensor broadcast onto X) and Clip.
 *
 * float32 runs through raw loops. The other dtypes the spec allows go through one generic path:
 * double for float types, int64 for integer types (Relu from opset 14, PRelu from 9, Clip from
 * 12), converting at the edges with onyx_load_* / onyx_store_*.
 *
 * Numerics: sigmoid is evaluated from exp(-|x|) so neither tail overflows or cancels; softplus
 * is log1p(exp(-|x|)) + max(x, 0); the exponential units use expm1; Gelu uses erfc, which keeps
 * its left tail accurate. NaN inputs give NaN outputs.
 *
 * The activations a Gemm or MatMul can apply in its GEMM epilogue (onyx_act_fusable: Relu,
 * LeakyRelu, Sigmoid, HardSigmoid, HardSwish, Tanh, Gelu, Clip) take their float32 formulas from
 * ops/activation.h, which the epilogue uses too, so the fused and unfused runs agree bit for
 * bit. Large float32 tensors are split over the session's thread pool (onyx_parallel_for),
 * forward and backward.
 */
#include "activation.h"
#include "ops.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* Output 0 = input 0's dtype and shape. */
static void same_as_input(const onyx_tensor *in, onyx_tensor *out)
{
    out[0].dtype = in[0].dtype;
    out[0].rank = in[0].rank;
    memcpy(out[0].dims, in[0].dims, sizeof(in[0].dims));
}

/* ---- Relu, LeakyRelu, Sigmoid, HardSigmoid, HardSwish, Tanh, Elu, Selu, Celu, Softplus,
 *      Softsign, Gelu ----------------------------------------------------------------------- */

typedef enum act_op {
    ACT_RELU,
    ACT_LEAKYRELU,
    ACT_SIGMOID,
    ACT_HARDSIGMOID,
    ACT_HARDSWISH,
    ACT_TANH,
    ACT_ELU,
    ACT_SELU,
    ACT_CELU,
    ACT_SOFTPLUS,
    ACT_SOFTSIGN,
    ACT_GELU,      /* approximate = "none" */
    ACT_GELU_TANH, /* approximate = "tanh" */
    ACT_COUNT
} act_op;

/* The node's parsed attributes. */
typedef struct act {
    act_op op;
    float alpha;
    float beta;
    float gamma;
} act;

#define SQRT1_2   ONYX_ACT_SQRT1_2
#define SQRT_2_PI ONYX_ACT_SQRT_2_PI

static double clamp01_f64(double t)
{
    t = t < 0.0 ? 0.0 : t;
    return t > 1.0 ? 1.0 : t;
}

/*
 * Raw loops y = f(x): x (n), y (n); alpha, beta, gamma as the node's attributes. In blocks
 * (ONYX_VEC_FOR), so that the compiler vectorizes the simple ones.
 * Formulas (ONNX Relu-14, LeakyRelu-16, Sigmoid-13, HardSigmoid-6, HardSwish-14, Tanh-13,
 * Elu-6, Selu-6, Celu-12, Softplus-1, Softsign-1, Gelu-20):
 */
typedef void (*act_f32_fn)(int64_t n, const act *p, const float *restrict x, float *restrict y);

#define ACT_F32(name, expr)                                                                        \
    static void name##_forward_f32(int64_t n, const act *p, const float *restrict x,               \
                                   float *restrict y)                                              \
    {                                                                                              \
        const float alpha = p->alpha;                                                              \
        const float beta = p->beta;                                                                \
        const float gamma = p->gamma;                                                              \
        (void)alpha;                                                                               \
        (void)beta;                                                                                \
        (void)gamma;                                                                               \
        ONYX_VEC_FOR(i, n, {                                                                       \
            float v = x[i];                                                                        \
            y[i] = (expr);                                                                         \
        });                                                                                        \
    }

/* The activations a GEMM can fuse take their formulas from ops/activation.h, shared with the
 * GEMM's epilogue: max(0, x); x < 0 ? alpha x : x; 1 / (1 + exp(-x)); max(0, min(1, alpha x +
 * beta)); x max(0, min(1, x/6 + 1/2)); tanh x; and Gelu's two forms below. */
ACT_F32(relu, onyx_relu_f32(v))
ACT_F32(leakyrelu, onyx_leakyrelu_f32(v, alpha))
ACT_F32(sigmoid, onyx_sigmoid_f32(v))
ACT_F32(hardsigmoid, onyx_hardsigmoid_f32(v, alpha, beta))
ACT_F32(hardswish, onyx_hardswish_f32(v))
ACT_F32(tanh, onyx_tanh_f32(v))
/* x < 0 ? alpha (exp(x) - 1) : x */
ACT_F32(elu, v < 0.0f ? alpha * expm1f(v) : v)
/* x > 0 ? gamma x : gamma alpha (exp(x) - 1) */
ACT_F32(selu, v > 0.0f ? gamma * v : gamma * (alpha * expm1f(v)))
/* max(0, x) + min(0, alpha (exp(x / alpha) - 1)), which is x for x > 0 whatever alpha's sign */
ACT_F32(celu, v > 0.0f ? v : alpha * expm1f(v / alpha))
/* log(1 + exp(x)) = log1p(exp(-|x|)) + max(x, 0) */
ACT_F32(softplus, log1pf(expf(-fabsf(v))) + (v > 0.0f ? v : 0.0f))
/* x / (1 + |x|) */
ACT_F32(softsign, v / (1.0f + fabsf(v)))
/* x/2 (1 + erf(x / sqrt 2)) = x/2 erfc(-x / sqrt 2) */
ACT_F32(gelu, onyx_gelu_f32(v))
/* x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
ACT_F32(gelu_tanh, onyx_gelu_tanh_f32(v))

/* The same formulas in double, for the other float types. */
static double act_f64(const act *p, double v)
{
    double a = p->alpha;
    double b = p->beta;
    double g = p->gamma;
    switch (p->op) {
    case ACT_RELU: return v < 0.0 ? 0.0 : v;
    case ACT_LEAKYRELU: return v < 0.0 ? a * v : v;
    case ACT_SIGMOID: {
        double e = exp(-fabs(v));
        double r = 1.0 / (1.0 + e);
        return v >= 0.0 ? r : e * r;
    }
    case ACT_HARDSIGMOID: return clamp01_f64(a * v + b);
    case ACT_HARDSWISH: return v * clamp01_f64(v / 6.0 + 0.5);
    case ACT_TANH: return tanh(v);
    case ACT_ELU: return v < 0.0 ? a * expm1(v) : v;
    case ACT_SELU: return v > 0.0 ? g * v : g * (a * expm1(v));
    case ACT_CELU: return v > 0.0 ? v : a * expm1(v / a);
    case ACT_SOFTPLUS: return log1p(exp(-fabs(v))) + (v > 0.0 ? v : 0.0);
    case ACT_SOFTSIGN: return v / (1.0 + fabs(v));
    case ACT_GELU: return 0.5 * v * erfc(-v * SQRT1_2);
    case ACT_GELU_TANH: return 0.5 * v * (1.0 + tanh(SQRT_2_PI * (v + 0.044715 * v * v * v)));
    case ACT_COUNT: break;
    }
    return v;
}

/*
 * Backward raw loops dx += dy f'(x): x, y = f(x), dy, dx (n each); alpha, beta, gamma as the
 * node's attributes. The derivatives of the formulas above (at a kink: the value PyTorch
 * takes):
 *   Relu:        x > 0 ? 1 : 0
 *   LeakyRelu:   x > 0 ? 1 : alpha
 *   Sigmoid:     y (1 - y)                                       (from the output)
 *   HardSigmoid: 0 < alpha x + beta < 1 ? alpha : 0
 *   HardSwish:   x < -3 ? 0 : x <= 3 ? x/3 + 1/2 : 1
 *   Tanh:        1 - y^2                                         (from the output)
 *   Elu:         x < 0 ? alpha exp(x) : 1
 *   Selu:        x > 0 ? gamma : gamma alpha exp(x)
 *   Celu:        x > 0 ? 1 : exp(x / alpha)
 *   Softplus:    sigmoid(x)
 *   Softsign:    1 / (1 + |x|)^2
 *   Gelu:        Phi(x) + x phi(x) = erfc(-x / sqrt 2) / 2 + x exp(-x^2 / 2) / sqrt(2 pi)
 *   Gelu tanh:   (1 + t) / 2 + x/2 (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2),
 *                t = tanh(sqrt(2/pi) (x + 0.044715 x^3))
 * The exponential units take exp(x) rather than y + alpha: no cancellation in the far left tail.
 */
typedef void (*act_grad_f32_fn)(int64_t n, const act *p, const float *restrict x,
                                const float *restrict y, const float *restrict dy,
                                float *restrict dx);

#define ACT_BACKWARD_F32(name, expr)                                                               \
    static void name##_backward_f32(int64_t n, const act *p, const float *restrict x,              \
                                    const float *restrict y, const float *restrict dy,             \
                                    float *restrict dx)                                            \
    {                                                                                              \
        const float alpha = p->alpha;                                                              \
        const float beta = p->beta;                                                                \
        const float gamma = p->gamma;                                                              \
        (void)alpha;                                                                               \
        (void)beta;                                                                                \
        (void)gamma;                                                                               \
        ONYX_VEC_FOR(i, n, {                                                                       \
            const float v = x[i];                                                                  \
            const float yv = y[i];                                                                 \
            const float g = dy[i];                                                                 \
            (void)v;                                                                               \
            (void)yv;                                                                              \
            dx[i] += g * (expr);                                                                   \
        });                                                                                        \
    }

#define INV_SQRT_2PI 0.39894228040143267794 /* 1/sqrt(2 pi) */

static float hardsigmoid_slope_f32(float v, float alpha, float beta)
{
    float t = alpha * v + beta;
    return t > 0.0f && t < 1.0f ? alpha : 0.0f;
}

static float hardswish_slope_f32(float v)
{
    if (v < -3.0f)
        return 0.0f;
    return v <= 3.0f ? v * (1.0f / 3.0f) + 0.5f : 1.0f;
}

static float gelu_tanh_slope_f32(float v)
{
    float t = tanhf((float)SQRT_2_PI * (v + 0.044715f * v * v * v));
    return 0.5f * (1.0f + t) +
           0.5f * v * (1.0f - t * t) * (float)SQRT_2_PI * (1.0f + 3.0f * 0.044715f * v * v);
}

ACT_BACKWARD_F32(relu, v > 0.0f ? 1.0f : 0.0f)
ACT_BACKWARD_F32(leakyrelu, v > 0.0f ? 1.0f : alpha)
ACT_BACKWARD_F32(sigmoid, (yv * (1.0f - yv)))
ACT_BACKWARD_F32(hardsigmoid, hardsigmoid_slope_f32(v, alpha, beta))
ACT_BACKWARD_F32(hardswish, hardswish_slope_f32(v))
ACT_BACKWARD_F32(tanh, 1.0f - yv * yv)
ACT_BACKWARD_F32(elu, v < 0.0f ? alpha * expf(v) : 1.0f)
ACT_BACKWARD_F32(selu, v > 0.0f ? gamma : gamma * alpha * expf(v))
ACT_BACKWARD_F32(celu, v > 0.0f ? 1.0f : expf(v / alpha))
ACT_BACKWARD_F32(softplus, onyx_sigmoid_f32(v))
ACT_BACKWARD_F32(softsign, 1.0f / ((1.0f + fabsf(v)) * (1.0f + fabsf(v))))
ACT_BACKWARD_F32(gelu,
                 0.5f * erfcf(-v * (float)SQRT1_2) + v * (float)INV_SQRT_2PI * expf(-0.5f * v * v))
ACT_BACKWARD_F32(gelu_tanh, gelu_tanh_slope_f32(v))

enum { A_ALPHA = 1u, A_BETA = 2u, A_GAMMA = 4u };

static const struct act_def {
    const char *op_type; /* NULL: reached through another op's attribute */
    act_f32_fn f32;
    act_grad_f32_fn grad_f32;
    unsigned attrs; /* which of alpha, beta, gamma the op takes */
    float alpha;    /* defaults */
    float beta;
    float gamma;
    int bf16_since; /* first opset that takes bfloat16; 0: none does */
} act_defs[ACT_COUNT] = {
    [ACT_RELU] = {"Relu", relu_forward_f32, relu_backward_f32, 0, 0, 0, 0, 13},
    [ACT_LEAKYRELU] = {"LeakyRelu", leakyrelu_forward_f32, leakyrelu_backward_f32, A_ALPHA, 0.01f,
                       0, 0, 16},
    [ACT_SIGMOID] = {"Sigmoid", sigmoid_forward_f32, sigmoid_backward_f32, 0, 0, 0, 0, 13},
    [ACT_HARDSIGMOID] = {"HardSigmoid", hardsigmoid_forward_f32, hardsigmoid_backward_f32,
                         A_ALPHA | A_BETA, 0.2f, 0.5f, 0, 22},
    [ACT_HARDSWISH] = {"HardSwish", hardswish_forward_f32, hardswish_backward_f32, 0, 0, 0, 0, 22},
    [ACT_TANH] = {"Tanh", tanh_forward_f32, tanh_backward_f32, 0, 0, 0, 0, 13},
    [ACT_ELU] = {"Elu", elu_forward_f32, elu_backward_f32, A_ALPHA, 1.0f, 0, 0, 22},
    [ACT_SELU] = {"Selu", selu_forward_f32, selu_backward_f32, A_ALPHA | A_GAMMA,
                  1.67326319217681884765625f, 0, 1.05070102214813232421875f, 22},
    [ACT_CELU] = {"Celu", celu_forward_f32, celu_backward_f32, A_ALPHA, 1.0f, 0, 0, 0},
    [ACT_SOFTPLUS] = {"Softplus", softplus_forward_f32, softplus_backward_f32, 0, 0, 0, 0, 22},
    [ACT_SOFTSIGN] = {"Softsign", softsign_forward_f32, softsign_backward_f32, 0, 0, 0, 0, 22},
    [ACT_GELU] = {"Gelu", gelu_forward_f32, gelu_backward_f32, 0, 0, 0, 0, 20},
    [ACT_GELU_TANH] = {NULL, gelu_tanh_forward_f32, gelu_tanh_backward_f32, 0, 0, 0, 0, 20},
};

static onyx_status act_init(onyx_node *n, onyx_error *err)
{
    onyx_status st = onyx_node_check_arity(n, 1, 1, 1, 1, err);
    if (st != ONYX_OK)
        return st;
    act a;
    a.op = ACT_COUNT;
    for (int i = 0; i < ACT_COUNT; i++)
        if (act_defs[i].op_type != NULL && strcmp(n->op_type, act_defs[i].op_type) == 0)
            a.op = (act_op)i;
    if (a.op == ACT_COUNT)
        return onyx_node_err(err, n, ONYX_ERR_INTERNAL, "not an activation op");
    const struct act_def *d = &act_defs[a.op];
    a.alpha = d->alpha;
    a.beta = d->beta;
    a.gamma = d->gamma;
    if (d->attrs & A_ALPHA)
        st = onyx_attr_float(n, "alpha", d->alpha, &a.alpha, err);
    if (st == ONYX_OK && (d->attrs & A_BETA))
        st = onyx_attr_float(n, "beta", d->beta, &a.beta, err);
    if (st == ONYX_OK && (d->attrs & A_GAMMA))
        st = onyx_attr_float(n, "gamma", d->gamma, &a.gamma, err);
    if (st != ONYX_OK)
        return st;
    if (a.op == ACT_CELU && a.alpha == 0.0f)
        return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL,
                             "attribute alpha is 0, expected non-zero (Celu divides by it)");
    if (a.op == ACT_GELU) {
        const char *approx = NULL;
        st = onyx_attr_string(n, "approximate", "none", &approx, err);
        if (st != ONYX_OK)
            return st;
        if (strcmp(approx, "tanh") == 0)
            a.op = ACT_GELU_TANH;
        else if (strcmp(approx, "none") != 0)
            return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL,
                                 "attribute approximate is \"%s\", expected \"none\" or \"tanh\"",
                                 approx);
    }
    return onyx_node_set_priv(n, &a, sizeof(a), err);
}

static onyx_status act_infer(const onyx_node *n, const onyx_tensor *in, onyx_tensor *out,
                             onyx_error *err)
{
    const act *p = n->priv;
    const struct act_def *d = &act_defs[p->op];
    unsigned mask = p->op == ACT_CELU ? ONYX_DT(ONYX_DTYPE_F32) : ONYX_DT_FLOAT;
    if (d->bf16_since != 0 && n->opset >= d->bf16_since)
        mask |= ONYX_DT_BF16;
    if (p->op == ACT_RELU && n->opset >= 14)
        mask |= ONYX_DT_SINT;
    onyx_status st = onyx_node_check_dtype(n, "X", in[0].dtype, mask, err);
    if (st != ONYX_OK)
        return st;
    same_as_input(in, out);
    return ONYX_OK;
}

/* A float32 loop of an activation over a range of elements, for onyx_parallel_for: forward
 * y = f(x) (out = y), or backward dx += dy f'(x) (out = dx). */
typedef struct act_job {
    const act *p;
    act_f32_fn f;
    act_grad_f32_fn grad;
    const float *x;
    const float *y;
    const float *dy;
    float *out;
} act_job;

static void act_forward_range(void *ctx, int64_t lo, int64_t hi)
{
    const act_job *j = ctx;
    j->f(hi - lo, j->p, j->x + lo, j->out + lo);
}

static void act_backward_range(void *ctx, int64_t lo, int64_t hi)
{
    const act_job *j = ctx;
    j->grad(hi - lo, j->p, j->x + lo, j->y + lo, j->dy + lo, j->out + lo);
}

/* X: any shape; Y: X's shape, Y = f(X) with the formulas above. Large float32 tensors are
 * split over ctx->pool (element-wise: the same bits for any thread count). */
static void act_forward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in, onyx_tensor *out)
{
    const act *p = n->priv;
    onyx_dtype dt = in[0].dtype;
    int64_t numel = onyx_numel(&out[0]);
    if (numel == 0)
        return;
    if (dt == ONYX_DTYPE_F32) {
        act_job j = {.p = p, .f = act_defs[p->op].f32, .x = in[0].data, .out = out[0].data};
        onyx_parallel_for(ctx->pool, numel, 1, act_forward_range, &j);
    } else if (onyx_dtype_is_int(dt)) { /* Relu, opset 14 */
        for (int64_t i = 0; i < numel; i++) {
            int64_t v = onyx_load_i64(dt, in[0].data, i);
            onyx_store_i64(dt, out[0].data, i, v < 0 ? 0 : v);
        }
    } else {
        for (int64_t i = 0; i < numel; i++)
            onyx_store_f64(dt, out[0].data, i, act_f64(p, onyx_load_f64(dt, in[0].data, i)));
    }
}

/* X, Y: the forward's input and output; dY: Y's shape; dX += dY f'(X) (table above
 * relu_backward_f32). */
static void act_backward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                         const onyx_tensor *out, const onyx_tensor *dout, onyx_tensor *din)
{
    const act *p = n->priv;
    int64_t numel = onyx_numel(&out[0]);
    if (numel == 0 || dout[0].data == NULL || din[0].data == NULL || in[0].dtype != ONYX_DTYPE_F32)
        return;
    act_job j = {.p = p,
                 .grad = act_defs[p->op].grad_f32,
                 .x = in[0].data,
                 .y = out[0].data,
                 .dy = dout[0].data,
                 .out = din[0].data};
    onyx_parallel_for(ctx->pool, numel, 1, act_backward_range, &j);
}

const onyx_op_impl onyx_impl_activation = {
    .init = act_init,
    .infer = act_infer,
    .forward = act_forward,
    .backward = act_backward,
    .fini = NULL,
    .flags = 0,
    .grad_inputs = 0x1u,
};

/* ---- PRelu -------------------------------------------------------------------------------- */

/*
 * The slope as the forward loop sees it. From opset 7 it broadcasts unidirectionally to X: its
 * dims, aligned right, are 1 or X's. Opset 6 and before follow Caffe2, whose PRelu had one slope
 * per channel: a 1-D slope of X's channel count (dim 1) applies along that axis (pytorch's
 * exports, test_PReLU_*). *view is the slope with broadcastable dims.
 */
static onyx_status prelu_slope_view(const onyx_node *n, const onyx_tensor *x,
                                    const onyx_tensor *slope, onyx_tensor *view, onyx_error *err)
{
    *view = *slope;
    if (x->rank < 0 || slope->rank < 0)
        return ONYX_OK;
    if (n->opset < 7 && slope->rank == 1 && x->rank >= 2 && slope->dims[0] != 1) {
        if (x->dims[1] < 0 || slope->dims[0] < 0)
            return ONYX_OK; /* known at run time */
        if (slope->dims[0] == x->dims[1]) {
            view->rank = x->rank - 1; /* [C, 1, ..., 1] */
            for (int i = 1; i < view->rank; i++)
                view->dims[i] = 1;
            return ONYX_OK;
        }
    }
    if (onyx_broadcast_fits(slope, x))
        return ONYX_OK;
    char ss[96];
    char sx[96];
    return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                         "slope has shape %s, which does not broadcast to X's shape %s",
                         onyx_shape_str(slope, ss, sizeof ss), onyx_shape_str(x, sx, sizeof sx));
}

static onyx_status prelu_init(onyx_node *n, onyx_error *err)
{
    return onyx_node_check_arity(n, 2, 2, 1, 1, err);
}

static onyx_status prelu_infer(const onyx_node *n, const onyx_tensor *in, onyx_tensor *out,
                               onyx_error *err)
{
    unsigned mask = ONYX_DT_FLOAT;
    if (n->opset >= 9)
        mask |= ONYX_DT(ONYX_DTYPE_I32) | ONYX_DT(ONYX_DTYPE_I64) | ONYX_DT(ONYX_DTYPE_U32) |
                ONYX_DT(ONYX_DTYPE_U64);
    if (n->opset >= 16)
        mask |= ONYX_DT_BF16;
    onyx_status st = onyx_node_check_dtype(n, "X", in[0].dtype, mask, err);
    if (st == ONYX_OK)
        st = onyx_node_check_dtype(n, "slope", in[1].dtype, mask, err);
    if (st != ONYX_OK)
        return st;
    if (st == ONYX_OK)
        st = onyx_node_check_same_dtype(n, "slope", in[1].dtype, "X", in[0].dtype, err);
    if (st != ONYX_OK)
        return st;
    onyx_tensor view;
    st = prelu_slope_view(n, &in[0], &in[1], &view, err);
    if (st != ONYX_OK)
        return st;
    same_as_input(in, out);
    return ONYX_OK;
}

/* Raw loops y = x < 0 ? slope x : x over one row: x (n), slope (n) or (1) held fixed, y (n).
 * Computed as max(x, 0) + slope min(x, 0), as the ONNX reference does (see leakyrelu). */
static void prelu_f32_v(int64_t n, const float *restrict x, const float *restrict slope,
                        float *restrict y)
{
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        y[i] = (v < 0.0f ? 0.0f : v) + slope[i] * (v < 0.0f ? v : 0.0f);
    }
}

static void prelu_f32_s(int64_t n, const float *restrict x, const float *restrict slope,
                        float *restrict y)
{
    const float s = slope[0];
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        y[i] = (v < 0.0f ? 0.0f : v) + s * (v < 0.0f ? v : 0.0f);
    }
}

/* X: (d0, ..., dk); slope: broadcastable to X (see prelu_slope_view); Y: X's shape;
 * Y = X < 0 ? slope X : X (ONNX PRelu-16). */
static void prelu_forward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                          onyx_tensor *out)
{
    (void)ctx;
    const onyx_tensor *x = &in[0];
    int64_t numel = onyx_numel(&out[0]);
    if (numel == 0)
        return;
    onyx_tensor slope;
    (void)prelu_slope_view(n, x, &in[1], &slope, NULL); /* checked by infer */
    /* X's rows (X is contiguous, with Y's shape) and the slope's offset off[0] for each */
    onyx_broadcast_walk w;
    onyx_broadcast_walk_init(&w, x, &slope, NULL);
    onyx_dtype dt = x->dtype;
    int64_t inner = w.dims[w.rank - 1];
    int64_t s_inner = w.st[0][w.rank - 1];
    int64_t rows = numel / inner;
    int64_t idx[ONYX_MAX_RANK] = {0};
    int64_t off[2] = {0, 0};
    for (int64_t r = 0; r < rows; r++) {
        int64_t o = r * inner; /* of X and Y */
        int64_t so = off[0];   /* of the slope */
        if (dt == ONYX_DTYPE_F32) {
            const float *xf = (const float *)x->data + o;
            const float *sf = (const float *)slope.data + so;
            float *yf = (float *)out[0].data + o;
            if (s_inner != 0)
                prelu_f32_v(inner, xf, sf, yf);
            else
                prelu_f32_s(inner, xf, sf, yf);
        } else if (onyx_dtype_is_int(dt)) {
            bool is_signed = onyx_dtype_is_signed(dt); /* unsigned X is never negative */
            for (int64_t j = 0; j < inner; j++) {
                int64_t v = onyx_load_i64(dt, x->data, o + j);
                if (is_signed && v < 0)
                    v = (int64_t)((uint64_t)onyx_load_i64(dt, slope.data, so + j * s_inner) *
                                  (uint64_t)v);
                onyx_store_i64(dt, out[0].data, o + j, v);
            }
        } else {
            for (int64_t j = 0; j < inner; j++) {
                double v = onyx_load_f64(dt, x->data, o + j);
                if (v < 0.0)
                    v *= onyx_load_f64(dt, slope.data, so + j * s_inner);
                onyx_store_f64(dt, out[0].data, o + j, v);
            }
        }
        onyx_broadcast_walk_next(&w, idx, off);
    }
}

/*
 * Backward raw loops of Y = X < 0 ? slope X : X over one row, with g = dY:
 *   dX     += X > 0 ? g : slope g
 *   dslope += X > 0 ? 0 : X g        (summed where the slope is broadcast)
 * (x, dy, dx: n each; slope and dslope: n, or 1 held fixed: _s). At X = 0, PyTorch's choice.
 */
static void prelu_dx_f32_v(int64_t n, const float *restrict x, const float *restrict slope,
                           const float *restrict dy, float *restrict dx)
{
    for (int64_t i = 0; i < n; i++)
        dx[i] += x[i] > 0.0f ? dy[i] : slope[i] * dy[i];
}

static void prelu_dx_f32_s(int64_t n, const float *restrict x, const float *restrict slope,
                           const float *restrict dy, float *restrict dx)
{
    const float s = slope[0];
    for (int64_t i = 0; i < n; i++)
        dx[i] += x[i] > 0.0f ? dy[i] : s * dy[i];
}

static void prelu_dslope_f32_v(int64_t n, const float *restrict x, const float *restrict dy,
                               float *restrict dslope)
{
    for (int64_t i = 0; i < n; i++)
        dslope[i] += x[i] > 0.0f ? 0.0f : x[i] * dy[i];
}

static void prelu_dslope_f32_s(int64_t n, const float *restrict x, const float *restrict dy,
                               float *restrict dslope)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += x[i] > 0.0f ? 0.0f : x[i] * dy[i];
    dslope[0] += (float)s;
}

/* X, slope: the forward's inputs (slope seen as in prelu_forward); dY: X's shape; dX: X's
 * shape, dslope: slope's, accumulated into (see the loops above). */
static void prelu_backward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                           const onyx_tensor *out, const onyx_tensor *dout, onyx_tensor *din)
{
    (void)ctx;
    const onyx_tensor *x = &in[0];
    int64_t numel = onyx_numel(&out[0]);
    if (numel == 0 || dout[0].data == NULL || x->dtype != ONYX_DTYPE_F32 ||
        in[1].dtype != ONYX_DTYPE_F32)
        return;
    onyx_tensor slope;
    (void)prelu_slope_view(n, x, &in[1], &slope, NULL); /* checked by infer */
    onyx_broadcast_walk w;
    onyx_broadcast_walk_init(&w, x, &slope, NULL);
    int64_t inner = w.dims[w.rank - 1];
    bool s_vector = w.st[0][w.rank - 1] != 0;
    int64_t rows = numel / inner;
    const float *xf = x->data;
    const float *sf = slope.data;
    const float *dy = dout[0].data;
    float *dx = din[0].data;
    float *ds = din[1].data;
    int64_t idx[ONYX_MAX_RANK] = {0};
    int64_t off[2] = {0, 0};
    for (int64_t r = 0; r < rows; r++) {
        int64_t o = r * inner; /* of X, dY and dX */
        if (dx != NULL && s_vector)
            prelu_dx_f32_v(inner, xf + o, sf + off[0], dy + o, dx + o);
        else if (dx != NULL)
            prelu_dx_f32_s(inner, xf + o, sf + off[0], dy + o, dx + o);
        if (ds != NULL && s_vector)
            prelu_dslope_f32_v(inner, xf + o, dy + o, ds + off[0]);
        else if (ds != NULL)
            prelu_dslope_f32_s(inner, xf + o, dy + o, ds + off[0]);
        onyx_broadcast_walk_next(&w, idx, off);
    }
}

const onyx_op_impl onyx_impl_prelu = {
    .init = prelu_init,
    .infer = prelu_infer,
    .forward = prelu_forward,
    .backward = prelu_backward,
    .fini = NULL,
    .flags = 0,
    .grad_inputs = 0x3u, /* X and slope */
};

/* ---- Clip --------------------------------------------------------------------------------- */

typedef struct clip {
    bool legacy; /* opset < 11: bounds are the attributes min and max */
    float min;
    float max;
} clip;

static onyx_status clip_init(onyx_node *n, onyx_error *err)
{
    clip c = {n->opset < 11, -FLT_MAX, FLT_MAX};
    onyx_status st = onyx_node_check_arity(n, 1, c.legacy ? 1 : 3, 1, 1, err);
    if (st == ONYX_OK && c.legacy)
        st = onyx_attr_float(n, "min", -FLT_MAX, &c.min, err);
    if (st == ONYX_OK && c.legacy)
        st = onyx_attr_float(n, "max", FLT_MAX, &c.max, err);
    if (st != ONYX_OK)
        return st;
    return onyx_node_set_priv(n, &c, sizeof(c), err);
}

static onyx_status clip_infer(const onyx_node *n, const onyx_tensor *in, onyx_tensor *out,
                              onyx_error *err)
{
    unsigned mask = ONYX_DT_FLOAT;
    if (n->opset >= 12)
        mask |= ONYX_DT_INT;
    if (n->opset >= 13)
        mask |= ONYX_DT_BF16;
    onyx_status st = onyx_node_check_dtype(n, "input", in[0].dtype, mask, err);
    if (st != ONYX_OK)
        return st;
    static const char *const names[3] = {"input", "min", "max"};
    for (int i = 1; i < 3 && i < n->n_in; i++) {
        if (!onyx_node_has_in(n, i))
            continue;
        const onyx_tensor *b = &in[i];
        st = onyx_node_check_same_dtype(n, names[i], b->dtype, "input", in[0].dtype, err);
        if (st != ONYX_OK)
            return st;
        if (onyx_shape_known(b) && onyx_numel(b) != 1) {
            char sb[96];
            return onyx_node_err(err, n, ONYX_ERR_SHAPE, "input %s has shape %s, expected a scalar",
                                 names[i], onyx_shape_str(b, sb, sizeof sb));
        }
    }
    same_as_input(in, out);
    return ONYX_OK;
}

/* Raw loop y = min(max(x, lo), hi): x (n), y (n). lo > hi gives hi, as the spec says; NaN
 * stays NaN (onyx_clip_f32, shared with the GEMM epilogue). */
static void clip_forward_f32(int64_t n, float lo, float hi, const float *restrict x,
                             float *restrict y)
{
    ONYX_VEC_FOR(i, n, y[i] = onyx_clip_f32(x[i], lo, hi));
}

/* Backward raw loop of y = min(max(x, lo), hi): dx += lo <= x <= hi ? dy : 0 (x, dy, dx: n
 * each). Bounds included, as PyTorch's clamp; lo > hi passes nothing; NaN x passes nothing. */
static void clip_backward_f32(int64_t n, float lo, float hi, const float *restrict x,
                              const float *restrict dy, float *restrict dx)
{
    ONYX_VEC_FOR(i, n, dx[i] += x[i] >= lo && x[i] <= hi ? dy[i] : 0.0f);
}

/* Clip's float32 loops over a range of elements, for onyx_parallel_for: y = clip(x) (dy NULL,
 * out = y) or dx += dy clip'(x) (out = dx). */
typedef struct clip_job {
    float lo;
    float hi;
    const float *x;
    const float *dy;
    float *out;
} clip_job;

static void clip_range(void *ctx, int64_t lo, int64_t hi)
{
    const clip_job *j = ctx;
    if (j->dy == NULL)
        clip_forward_f32(hi - lo, j->lo, j->hi, j->x + lo, j->out + lo);
    else
        clip_backward_f32(hi - lo, j->lo, j->hi, j->x + lo, j->dy + lo, j->out + lo);
}

/* The float bounds of a float32 Clip: the attributes before opset 11, else inputs min and max
 * (scalars; -inf and +inf when omitted). */
static void clip_bounds_f32(const onyx_node *n, const onyx_tensor *in, float *lo, float *hi)
{
    const clip *p = n->priv;
    *lo = p->min;
    *hi = p->max;
    if (!p->legacy) {
        *lo = onyx_node_has_in(n, 1) ? ((const float *)in[1].data)[0] : -INFINITY;
        *hi = onyx_node_has_in(n, 2) ? ((const float *)in[2].data)[0] : INFINITY;
    }
}

/* input: any shape; min, max: scalars or omitted (no bound), or the attributes before opset 11;
 * output: input's shape, min(max(input, min), max) (ONNX Clip-13, Clip-6). */
static void clip_forward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                         onyx_tensor *out)
{
    const clip *p = n->priv;
    onyx_dtype dt = in[0].dtype;
    int64_t numel = onyx_numel(&out[0]);
    if (numel == 0)
        return;
    bool has_lo = !p->legacy && onyx_node_has_in(n, 1);
    bool has_hi = !p->legacy && onyx_node_has_in(n, 2);
    if (onyx_dtype_is_int(dt)) {
        /* uint64 compares as int64 once the sign bit is flipped; flipped back when stored */
        int64_t flip = dt == ONYX_DTYPE_U64 ? INT64_MIN : 0;
        int64_t lo = has_lo ? onyx_load_i64(dt, in[1].data, 0) ^ flip : INT64_MIN;
        int64_t hi = has_hi ? onyx_load_i64(dt, in[2].data, 0) ^ flip : INT64_MAX;
        for (int64_t i = 0; i < numel; i++) {
            int64_t v = onyx_load_i64(dt, in[0].data, i) ^ flip;
            v = v < lo ? lo : v;
            v = v > hi ? hi : v;
            onyx_store_i64(dt, out[0].data, i, v ^ flip);
        }
        return;
    }
    if (dt == ONYX_DTYPE_F32) {
        clip_job j = {.x = in[0].data, .out = out[0].data};
        clip_bounds_f32(n, in, &j.lo, &j.hi);
        onyx_parallel_for(ctx->pool, numel, 1, clip_range, &j);
        return;
    }
    double lo = p->legacy ? p->min : has_lo ? onyx_load_f64(dt, in[1].data, 0) : -INFINITY;
    double hi = p->legacy ? p->max : has_hi ? onyx_load_f64(dt, in[2].data, 0) : INFINITY;
    for (int64_t i = 0; i < numel; i++) {
        double v = onyx_load_f64(dt, in[0].data, i);
        v = v < lo ? lo : v;
        v = v > hi ? hi : v;
        onyx_store_f64(dt, out[0].data, i, v);
    }
}

/* input: the forward's input; dY: its shape; d input: its shape, accumulated into. min and max
 * get no gradient (grad_inputs). */
static void clip_backward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                          const onyx_tensor *out, const onyx_tensor *dout, onyx_tensor *din)
{
    int64_t numel = onyx_numel(&out[0]);
    if (numel == 0 || dout[0].data == NULL || din[0].data == NULL || in[0].dtype != ONYX_DTYPE_F32)
        return;
    clip_job j = {.x = in[0].data, .dy = dout[0].data, .out = din[0].data};
    clip_bounds_f32(n, in, &j.lo, &j.hi);
    onyx_parallel_for(ctx->pool, numel, 1, clip_range, &j);
}

const onyx_op_impl onyx_impl_clip = {
    .init = clip_init,
    .infer = clip_infer,
    .forward = clip_forward,
    .backward = clip_backward,
    .fini = NULL,
    .flags = 0,
    .grad_inputs = 0x1u, /* input only: min and max get none */
};

/* ---- fused epilogues ---------------------------------------------------------------------- */

/* The GEMM epilogue kind of each activation (0 = ONYX_FUSE_NONE: not fused). */
static const int act_fuse_kind[ACT_COUNT] = {
    [ACT_RELU] = ONYX_FUSE_RELU,           [ACT_LEAKYRELU] = ONYX_FUSE_LEAKYRELU,
    [ACT_SIGMOID] = ONYX_FUSE_SIGMOID,     [ACT_HARDSIGMOID] = ONYX_FUSE_HARDSIGMOID,
    [ACT_HARDSWISH] = ONYX_FUSE_HARDSWISH, [ACT_TANH] = ONYX_FUSE_TANH,
    [ACT_GELU] = ONYX_FUSE_GELU,           [ACT_GELU_TANH] = ONYX_FUSE_GELU_TANH,
};

int onyx_act_fusable(const onyx_node *n, const onyx_tensor *in, float *alpha, float *beta)
{
    if (n->priv == NULL)
        return ONYX_FUSE_NONE;
    if (n->impl == &onyx_impl_activation) {
        const act *p = n->priv;
        int kind = act_fuse_kind[p->op];
        if (in != NULL && kind != ONYX_FUSE_NONE) {
            *alpha = p->alpha;
            *beta = p->beta;
        }
        return kind;
    }
    if (n->impl == &onyx_impl_clip) {
        if (in != NULL)
            clip_bounds_f32(n, in, alpha, beta);
        return ONYX_FUSE_CLIP;
    }
    return ONYX_FUSE_NONE;
}
