/*
 * plugin_swish.c — an onyx plugin: the custom operator com.example.Swish (opset 1 and up),
 *
 *     y = x * sigmoid(beta * x)        beta: float attribute, default 1
 *
 * with its gradient, so models using it also train. It includes only onyx.h and is built as a
 * shared module (see the "plugins" block of CMakeLists.txt):
 *
 *     cc -shared -fPIC -o libswish.so plugin_swish.c $(pkg-config --cflags onyx)
 *     onyx run model.onnx --plugin ./libswish.so -i x.npy
 *
 * or, from C: onyx_plugin_load(registry, "./libswish.so", &err), then load the model with
 * onyx_load_options.registry set to that registry.
 *
 * (The tests also build it with -DSWISH_ABI_OVERRIDE=999, a plugin claiming another ABI
 * version, which onyx must refuse.)
 */
#include "onyx.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef SWISH_ABI_OVERRIDE
#define SWISH_ABI SWISH_ABI_OVERRIDE
#else
#define SWISH_ABI ONYX_PLUGIN_ABI_VERSION
#endif

/* The node's state: its parsed attribute. */
typedef struct swish {
    float beta;
} swish;

static onyx_status swish_init(const onyx_custom_op *op, const onyx_node *node, void **state,
                              onyx_error *err)
{
    (void)op;
    if (onyx_node_input_count(node) != 1 || !onyx_node_input_present(node, 0) ||
        onyx_node_output_count(node) != 1) {
        snprintf(err->msg, sizeof err->msg, "has %d inputs and %d outputs, expected 1 and 1",
                 onyx_node_input_count(node), onyx_node_output_count(node));
        return ONYX_ERR_INVALID_MODEL;
    }
    float beta;
    onyx_status st = onyx_node_attr_float(node, "beta", 1.0f, &beta, err);
    if (st != ONYX_OK)
        return st; /* the message already names the node and the attribute */
    if (!isfinite(beta)) {
        snprintf(err->msg, sizeof err->msg, "attribute beta is %g, expected a finite number",
                 (double)beta);
        return ONYX_ERR_INVALID_MODEL;
    }
    swish *s = malloc(sizeof(*s));
    if (s == NULL)
        return ONYX_ERR_NOMEM;
    s->beta = beta;
    *state = s;
    return ONYX_OK;
}

/* Y has X's dtype (float32 only) and shape; whatever is unknown at load time stays unknown. */
static onyx_status swish_infer(const void *state, const onyx_node *node, const onyx_tensor *in,
                               int n_in, onyx_tensor *out, int n_out, onyx_error *err)
{
    (void)state;
    (void)node;
    (void)n_in;
    (void)n_out;
    if (in[0].dtype != ONYX_DTYPE_UNDEFINED && in[0].dtype != ONYX_DTYPE_F32) {
        snprintf(err->msg, sizeof err->msg, "input X has dtype %s, expected float32",
                 onyx_dtype_name(in[0].dtype));
        return ONYX_ERR_UNSUPPORTED;
    }
    out[0] = in[0];
    out[0].dtype = ONYX_DTYPE_F32;
    out[0].data = NULL;
    return ONYX_OK;
}

static float sigmoid(float v)
{
    return v >= 0.0f ? 1.0f / (1.0f + expf(-v)) : expf(v) / (1.0f + expf(v));
}

/* x, y: (n) */
static void swish_forward_f32(const float *restrict x, float *restrict y, int64_t n, float beta)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = x[i] * sigmoid(beta * x[i]);
}

/* y = x * s with s = sigmoid(beta x):  dy/dx = s + beta x s (1 - s).  dx += dy * dy/dx */
static void swish_backward_f32(const float *restrict x, const float *restrict dy,
                               float *restrict dx, int64_t n, float beta)
{
    for (int64_t i = 0; i < n; i++) {
        float s = sigmoid(beta * x[i]);
        dx[i] += dy[i] * (s + beta * x[i] * s * (1.0f - s));
    }
}

static void swish_forward(const void *state, const onyx_node *node, onyx_mode mode,
                          const onyx_tensor *in, int n_in, onyx_tensor *out, int n_out)
{
    (void)node;
    (void)mode;
    (void)n_in;
    (void)n_out;
    const swish *s = state;
    swish_forward_f32(in[0].data, out[0].data, onyx_tensor_numel(&in[0]), s->beta);
}

static void swish_backward(const void *state, const onyx_node *node, const onyx_tensor *in,
                           int n_in, const onyx_tensor *out, const onyx_tensor *dout, int n_out,
                           onyx_tensor *din)
{
    (void)node;
    (void)n_in;
    (void)out;
    (void)n_out;
    const swish *s = state;
    if (din[0].data == NULL || dout[0].data == NULL) /* no gradient wanted, or none flowing */
        return;
    swish_backward_f32(in[0].data, dout[0].data, din[0].data, onyx_tensor_numel(&in[0]),
                       s->beta);
}

static void swish_fini(void *state)
{
    free(state);
}

static const onyx_custom_op swish_op = {
    .abi_version = SWISH_ABI,
    .domain = "com.example",
    .op_type = "Swish",
    .since_version = 1,
    .until_version = 0, /* every later opset of com.example too */
    .init = swish_init,
    .infer = swish_infer,
    .forward = swish_forward,
    .backward = swish_backward,
    .fini = swish_fini,
};

/* The entry point onyx_plugin_load calls. onyx itself refuses an op whose abi_version is not
 * its own, so there is nothing to check here; a plugin that serves several ABI versions would
 * pick the struct matching abi_version. */
ONYX_PLUGIN_EXPORT onyx_status onyx_plugin_register(onyx_registry *reg, uint32_t abi_version);

ONYX_PLUGIN_EXPORT onyx_status onyx_plugin_register(onyx_registry *reg, uint32_t abi_version)
{
    (void)abi_version;
    return onyx_registry_add_op(reg, &swish_op);
}
