/* test_activation.c — ops/activation.c: Relu, LeakyRelu, Sigmoid, HardSigmoid, HardSwish, Tanh,
 * Elu, Selu, Celu, Softplus, Softsign, Gelu, PRelu, Clip. Expected values are hand-computed,
 * copied from the official ONNX conformance data (/usr/share/libonnx-testdata/data/node/...),
 * or computed here in double straight from the spec's formula. */
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

static uint64_t rng_state = 0x2545F4914F6CDD1Dull; /* th_urand's, for this file's data */

/* ---- the spec's formulas, in double, written out plainly ---------------------------------- */

typedef struct params {
    double alpha;
    double beta;
    double gamma;
    bool tanh_approx;
} params;

static double ref_act(const char *op, const params *p, double x)
{
    if (strcmp(op, "Relu") == 0)
        return x > 0 ? x : 0;
    if (strcmp(op, "LeakyRelu") == 0)
        return x >= 0 ? x : p->alpha * x;
    if (strcmp(op, "Sigmoid") == 0)
        return 1.0 / (1.0 + exp(-x));
    if (strcmp(op, "HardSigmoid") == 0)
        return fmax(0, fmin(1, p->alpha * x + p->beta));
    if (strcmp(op, "HardSwish") == 0)
        return x * fmax(0, fmin(1, x / 6.0 + 0.5));
    if (strcmp(op, "Tanh") == 0)
        return tanh(x);
    if (strcmp(op, "Elu") == 0)
        return x >= 0 ? x : p->alpha * (exp(x) - 1);
    if (strcmp(op, "Selu") == 0)
        return x > 0 ? p->gamma * x : p->gamma * (p->alpha * exp(x) - p->alpha);
    if (strcmp(op, "Celu") == 0)
        return fmax(0, x) + fmin(0, p->alpha * (exp(x / p->alpha) - 1));
    if (strcmp(op, "Softplus") == 0)
        return log(exp(x) + 1);
    if (strcmp(op, "Softsign") == 0)
        return x / (1 + fabs(x));
    /* Gelu */
    if (p->tanh_approx)
        return 0.5 * x * (1 + tanh(sqrt(2 / 3.14159265358979323846) * (x + 0.044715 * x * x * x)));
    return 0.5 * x * (1 + erf(x / sqrt(2.0)));
}

static const struct {
    const char *op;
    int64_t opset;
    params p; /* the defaults */
} all_ops[] = {
    {"Relu", 14, {0, 0, 0, false}},
    {"LeakyRelu", 16, {0.01f, 0, 0, false}},
    {"Sigmoid", 13, {0, 0, 0, false}},
    {"HardSigmoid", 6, {0.2f, 0.5f, 0, false}},
    {"HardSwish", 14, {0, 0, 0, false}},
    {"Tanh", 13, {0, 0, 0, false}},
    {"Elu", 6, {1, 0, 0, false}},
    {"Selu", 6, {1.67326319217681884765625f, 0, 1.05070102214813232421875f, false}},
    {"Celu", 12, {1, 0, 0, false}},
    {"Softplus", 1, {0, 0, 0, false}},
    {"Softsign", 1, {0, 0, 0, false}},
    {"Gelu", 20, {0, 0, 0, false}},
};

/* ---- activations: hand values ------------------------------------------------------------- */

/* Runs op on x[len] (float32) with the node's attributes already set; returns the node. */
static th_node *run_f32(th_node *n, const float *x, int64_t len, onyx_tensor *out)
{
    onyx_tensor in[1] = {th_f32(1, &len, x)};
    onyx_error err = {0};
    CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK(out[0].dtype == ONYX_DTYPE_F32 && th_dims_eq(&out[0], 1, &len));
    return n;
}

static void expect_values(th_node *n, const float *x, const float *y, int64_t len)
{
    onyx_tensor out[1];
    run_f32(n, x, len, out);
    for (int64_t i = 0; i < len; i++)
        CHECK_NEAR(((float *)out[0].data)[i], y[i]);
    th_node_free(n);
}

static void test_act_values(void)
{
    const float x3[3] = {-1, 0, 1};

    /* defaults (the _example / _default conformance values and hand computation) */
    expect_values(th_node_new("Relu", 14, 1, 1), (float[]){-2, -0.0f, 0.5f, 3},
                  (float[]){0, 0, 0.5f, 3}, 4);
    expect_values(th_node_new("LeakyRelu", 16, 1, 1), (float[]){-2, 0, 3}, (float[]){-0.02f, 0, 3},
                  3);
    expect_values(th_node_new("Sigmoid", 13, 1, 1), x3, (float[]){0.2689414f, 0.5f, 0.7310586f}, 3);
    expect_values(th_node_new("HardSigmoid", 6, 1, 1), (float[]){-3, -1, 0, 1, 3},
                  (float[]){0, 0.3f, 0.5f, 0.7f, 1}, 5);
    /* HardSwish: x * clamp(x/6 + 1/2); test_hardswish's first values */
    expect_values(th_node_new("HardSwish", 14, 1, 1),
                  (float[]){-4, -3, 0, 3, 1.7640524f, -0.9772779f},
                  (float[]){0, 0, 0, 3, 1.400673f, -0.32946026f}, 6);
    expect_values(th_node_new("Tanh", 13, 1, 1), x3, (float[]){-0.7615942f, 0, 0.7615942f}, 3);
    expect_values(th_node_new("Elu", 6, 1, 1), x3, (float[]){-0.63212056f, 0, 1}, 3);
    /* Selu defaults: gamma (alpha e^-1 - alpha) = -1.1113307 */
    expect_values(th_node_new("Selu", 6, 1, 1), x3, (float[]){-1.11133074f, 0, 1.05070102f}, 3);
    expect_values(th_node_new("Celu", 12, 1, 1), x3, (float[]){-0.63212056f, 0, 1}, 3);
    expect_values(th_node_new("Softplus", 1, 1, 1), x3,
                  (float[]){0.31326166f, 0.6931472f, 1.3132617f}, 3);
    expect_values(th_node_new("Softsign", 1, 1, 1), x3, (float[]){-0.5f, 0, 0.5f}, 3);
    /* Gelu: x Phi(x); Phi(1) = 0.8413447461, Phi(-1) = 0.1586552539 */
    expect_values(th_node_new("Gelu", 20, 1, 1), (float[]){-1, 0, 1, 2},
                  (float[]){-0.15865525f, 0, 0.84134475f, 1.95449974f}, 4);

    /* every attribute, with the conformance cases' values */
    th_node *n = th_node_new("LeakyRelu", 16, 1, 1);
    th_attr_float(n, "alpha", 0.1f);
    expect_values(n, (float[]){-1, 0, 1, -0.9772779f}, (float[]){-0.1f, 0, 1, -0.09772779f}, 4);
    n = th_node_new("HardSigmoid", 6, 1, 1);
    th_attr_float(n, "alpha", 0.5f);
    th_attr_float(n, "beta", 0.6f);
    expect_values(n, (float[]){-1, 0, 1, -0.9772779f},
                  (float[]){0.100000024f, 0.6f, 1, 0.11136109f}, 4);
    n = th_node_new("Elu", 6, 1, 1);
    th_attr_float(n, "alpha", 2.0f);
    expect_values(n, (float[]){-1, 0, 1, -0.1513572f}, (float[]){-1.2642412f, 0, 1, -0.28091884f},
                  4);
    n = th_node_new("Selu", 6, 1, 1);
    th_attr_float(n, "alpha", 2.0f);
    th_attr_float(n, "gamma", 3.0f);
    expect_values(n, (float[]){-1, 0, 1, -0.9772779f, 1.7640524f},
                  (float[]){-3.7927237f, 0, 3, -3.7419953f, 5.292157f}, 5);
    /* Celu alpha 2: 2 (exp(-1/2) - 1) = -0.7869386 */
    n = th_node_new("Celu", 12, 1, 1);
    th_attr_float(n, "alpha", 2.0f);
    expect_values(n, (float[]){-1, 0, 0.8439683f}, (float[]){-0.78693868f, 0, 0.8439683f}, 3);
    /* Gelu tanh: 0.5 x (1 + tanh(sqrt(2/pi)(x + 0.044715 x^3))) at 1: 0.8411920 */
    n = th_node_new("Gelu", 20, 1, 1);
    th_attr_string(n, "approximate", "tanh");
    expect_values(n, (float[]){-1, 0, 1}, (float[]){-0.15880801f, 0, 0.84119199f}, 3);
    n = th_node_new("Gelu", 20, 1, 1);
    th_attr_string(n, "approximate", "none");
    expect_values(n, (float[]){1}, (float[]){0.84134475f}, 1);
}

/* Far tails: no overflow, no NaN, no cancellation. */
static void test_act_tails(void)
{
    onyx_tensor out[1];
    float x[6] = {-1000, -100, -20, 20, 100, 1000};
    th_node *n = run_f32(th_node_new("Sigmoid", 13, 1, 1), x, 6, out);
    const float *y = out[0].data;
    CHECK(y[0] == 0 && y[5] == 1 && y[4] == 1);
    CHECK_NEAR_TOL(y[2], 2.0611536e-9, 0, 1e-5); /* e^-20 / (1 + e^-20) */
    CHECK_NEAR_TOL(y[3], 1.0, 0, 1e-7);
    CHECK(y[1] >= 0 && y[1] < 1e-43);
    th_node_free(n);

    n = run_f32(th_node_new("Softplus", 1, 1, 1), x, 6, out);
    y = out[0].data;
    CHECK(y[5] == 1000 && y[4] == 100);
    CHECK_NEAR_TOL(y[2], 2.0611537e-9, 0, 1e-5); /* log(1 + e^-20) */
    CHECK(y[0] == 0 && y[1] >= 0 && y[1] < 1e-43);
    th_node_free(n);

    n = run_f32(th_node_new("Tanh", 13, 1, 1), x, 6, out);
    y = out[0].data;
    CHECK(y[0] == -1 && y[5] == 1);
    th_node_free(n);

    /* Gelu's left tail stays accurate: x Phi(x) at -10 is -7.62e-23 */
    float g[2] = {-10, -5};
    n = run_f32(th_node_new("Gelu", 20, 1, 1), g, 2, out);
    y = out[0].data;
    CHECK_NEAR_TOL(y[0], -7.619853e-23, 0, 1e-4);
    CHECK_NEAR_TOL(y[1], -1.4333124e-6, 0, 1e-4);
    th_node_free(n);

    /* Elu/Selu/Celu saturate at -alpha, -gamma alpha */
    float e[1] = {-1000};
    n = run_f32(th_node_new("Elu", 6, 1, 1), e, 1, out);
    CHECK(((float *)out[0].data)[0] == -1.0f);
    th_node_free(n);

    /* NaN in, NaN out, for every op */
    for (size_t o = 0; o < sizeof(all_ops) / sizeof(all_ops[0]); o++) {
        float nan_in[1] = {NAN};
        n = run_f32(th_node_new(all_ops[o].op, all_ops[o].opset, 1, 1), nan_in, 1, out);
        if (!isnan(((float *)out[0].data)[0]))
            fprintf(stderr, "%s: NaN input gave %g\n", all_ops[o].op, ((float *)out[0].data)[0]);
        CHECK(isnan(((float *)out[0].data)[0]));
        th_node_free(n);
    }
}

/* The float32 loops and the float64 generic path against the formulas, lengths 0, 1, 7, 1031. */
static void test_act_fast_vs_naive(void)
{
    static const int64_t lens[] = {0, 1, 7, 1031};
    for (size_t o = 0; o < sizeof(all_ops) / sizeof(all_ops[0]); o++) {
        for (int variant = 0; variant < 2; variant++) {
            params p = all_ops[o].p;
            const char *op = all_ops[o].op;
            bool has_variant = strcmp(op, "Gelu") == 0 || strcmp(op, "LeakyRelu") == 0 ||
                               strcmp(op, "Celu") == 0 || strcmp(op, "Selu") == 0;
            if (variant == 1 && !has_variant)
                continue;
            for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
                int64_t len = lens[l];
                float *x = malloc(sizeof(float) * (size_t)(len + 1));
                double *x64 = malloc(sizeof(double) * (size_t)(len + 1));
                double *want = malloc(sizeof(double) * (size_t)(len + 1));
                th_node *n32 = th_node_new(op, all_ops[o].opset, 1, 1);
                th_node *n64 = th_node_new(op, all_ops[o].opset, 1, 1);
                if (variant == 1) {
                    if (strcmp(op, "Gelu") == 0) {
                        p.tanh_approx = true;
                        th_attr_string(n32, "approximate", "tanh");
                        th_attr_string(n64, "approximate", "tanh");
                    } else {
                        p.alpha = strcmp(op, "Celu") == 0 ? -0.75f : 0.3f;
                        th_attr_float(n32, "alpha", (float)p.alpha);
                        th_attr_float(n64, "alpha", (float)p.alpha);
                    }
                }
                for (int64_t i = 0; i < len; i++) {
                    x[i] = (float)th_urand(&rng_state, -12, 12);
                    x64[i] = x[i];
                    want[i] = ref_act(op, &p, x[i]);
                }
                char label[64];
                snprintf(label, sizeof label, "%s/%d len %lld", op, variant, (long long)len);
                onyx_tensor in[1] = {th_f32(1, &len, x)};
                onyx_tensor out[1];
                onyx_error err = {0};
                CHECK_OK(th_run(n32, ONYX_MODE_INFER, in, out, &err), err.msg);
                CHECK(th_close_f32(out[0].data, want, len, 1e-6, 2e-6, label));
                if (strcmp(op, "Celu") != 0) { /* Celu takes float32 only */
                    in[0] = th_tensor(ONYX_DTYPE_F64, 1, &len, x64);
                    CHECK_OK(th_run(n64, ONYX_MODE_INFER, in, out, &err), err.msg);
                    CHECK(out[0].dtype == ONYX_DTYPE_F64);
                    CHECK(th_close_f64(out[0].data, want, len, 1e-15, 1e-12, label));
                }
                th_node_free(n32);
                th_node_free(n64);
                free(x);
                free(x64);
                free(want);
            }
        }
    }
}

static void test_act_dtypes(void)
{
    onyx_tensor out[1];
    onyx_error err = {0};
    int64_t d4[1] = {4};

    /* Relu on integers from opset 14 */
    int32_t i32[4] = {-5, 0, 7, INT32_MIN};
    th_node *n = th_node_new("Relu", 14, 1, 1);
    onyx_tensor in[1] = {th_tensor(ONYX_DTYPE_I32, 1, d4, i32)};
    CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
    const int32_t *y = out[0].data;
    CHECK(out[0].dtype == ONYX_DTYPE_I32);
    CHECK(y[0] == 0 && y[1] == 0 && y[2] == 7 && y[3] == 0);
    th_node_free(n);
    int8_t i8[4] = {-128, 127, -1, 1};
    n = th_node_new("Relu", 14, 1, 1);
    in[0] = th_tensor(ONYX_DTYPE_I8, 1, d4, i8);
    CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
    const int8_t *y8 = out[0].data;
    CHECK(y8[0] == 0 && y8[1] == 127 && y8[2] == 0 && y8[3] == 1);
    th_node_free(n);
    n = th_node_new("Relu", 13, 1, 1);
    in[0] = th_tensor(ONYX_DTYPE_I32, 1, d4, i32);
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_SHAPE);
    CHECK_MSG(err.msg, "test_node");
    CHECK_MSG(err.msg, "input X has dtype int32");
    th_node_free(n);

    /* float-only ops refuse integers; Celu takes float32 only; unsigned Relu never */
    static const struct {
        const char *op;
        int64_t opset;
        onyx_dtype dt;
        const char *name;
    } bad[] = {
        {"Sigmoid", 13, ONYX_DTYPE_I32, "int32"},      {"Tanh", 13, ONYX_DTYPE_I64, "int64"},
        {"Celu", 12, ONYX_DTYPE_F64, "float64"},       {"Relu", 14, ONYX_DTYPE_U8, "uint8"},
        {"Gelu", 20, ONYX_DTYPE_BOOL, "bool"},         {"Sigmoid", 12, ONYX_DTYPE_BF16, "bfloat16"},
        {"LeakyRelu", 6, ONYX_DTYPE_BF16, "bfloat16"},
    };
    for (size_t c = 0; c < sizeof(bad) / sizeof(bad[0]); c++) {
        n = th_node_new(bad[c].op, bad[c].opset, 1, 1);
        in[0] = th_tensor(bad[c].dt, 1, d4, i32);
        CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_SHAPE);
        CHECK_MSG(err.msg, bad[c].op);
        CHECK_MSG(err.msg, bad[c].name);
        th_node_free(n);
    }

    /* float16 and bfloat16 through the generic path */
    uint16_t h[2] = {onyx_f32_to_f16(-2.0f), onyx_f32_to_f16(0.5f)};
    int64_t d2[1] = {2};
    n = th_node_new("Tanh", 13, 1, 1);
    in[0] = th_tensor(ONYX_DTYPE_F16, 1, d2, h);
    CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK(out[0].dtype == ONYX_DTYPE_F16);
    CHECK_NEAR_TOL(onyx_f16_to_f32(((uint16_t *)out[0].data)[0]), tanh(-2.0), 1e-3, 0);
    CHECK_NEAR_TOL(onyx_f16_to_f32(((uint16_t *)out[0].data)[1]), tanh(0.5), 1e-3, 0);
    th_node_free(n);
    uint16_t bf[2] = {onyx_f32_to_bf16(-2.0f), onyx_f32_to_bf16(3.0f)};
    n = th_node_new("Relu", 14, 1, 1);
    in[0] = th_tensor(ONYX_DTYPE_BF16, 1, d2, bf);
    CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK(onyx_bf16_to_f32(((uint16_t *)out[0].data)[0]) == 0.0f);
    CHECK(onyx_bf16_to_f32(((uint16_t *)out[0].data)[1]) == 3.0f);
    th_node_free(n);
}

static void test_act_attr_errors(void)
{
    onyx_tensor out[1];
    onyx_error err = {0};
    float x[1] = {0};
    int64_t d[1] = {1};
    onyx_tensor in[1] = {th_f32(1, d, x)};

    /* alpha given as INT (th_attr_int) or as a raw STRING */
    static const struct {
        const char *op;
        int64_t opset;
        const char *attr;
    } floats[] = {
        {"LeakyRelu", 16, "alpha"}, {"HardSigmoid", 6, "alpha"}, {"HardSigmoid", 6, "beta"},
        {"Elu", 6, "alpha"},        {"Selu", 6, "alpha"},        {"Selu", 6, "gamma"},
        {"Celu", 12, "alpha"},
    };
    for (size_t c = 0; c < sizeof(floats) / sizeof(floats[0]); c++) {
        th_node *n = th_node_new(floats[c].op, floats[c].opset, 1, 1);
        th_attr_int(n, floats[c].attr, 1);
        CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_INVALID_MODEL);
        CHECK_MSG(err.msg, "test_node");
        CHECK_MSG(err.msg, floats[c].attr);
        CHECK_MSG(err.msg, "has type int, expected float");
        th_node_free(n);
        n = th_node_new(floats[c].op, floats[c].opset, 1, 1);
        th_attr_raw(n, floats[c].attr, ONYX_ATTR_STRING);
        CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_INVALID_MODEL);
        CHECK_MSG(err.msg, floats[c].attr);
        th_node_free(n);
    }
    /* Gelu approximate: wrong value, wrong type */
    th_node *n = th_node_new("Gelu", 20, 1, 1);
    th_attr_string(n, "approximate", "fast");
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_INVALID_MODEL);
    CHECK_MSG(err.msg, "approximate is \"fast\"");
    th_node_free(n);
    n = th_node_new("Gelu", 20, 1, 1);
    th_attr_int(n, "approximate", 1);
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_INVALID_MODEL);
    CHECK_MSG(err.msg, "attribute approximate has type int");
    th_node_free(n);
    /* Celu with alpha 0 would divide by zero */
    n = th_node_new("Celu", 12, 1, 1);
    th_attr_float(n, "alpha", 0.0f);
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_INVALID_MODEL);
    CHECK_MSG(err.msg, "alpha is 0");
    th_node_free(n);
    /* arity */
    n = th_node_new("Sigmoid", 13, 1, 2);
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_INVALID_MODEL);
    CHECK_MSG(err.msg, "has 2 outputs, expected 1");
    th_node_free(n);
    /* load time: unknown rank and batch */
    n = th_node_new("Selu", 6, 1, 1);
    int64_t dq[3] = {-1, 4, 4};
    onyx_tensor lin[1] = {th_f32(3, dq, NULL)};
    CHECK_OK(th_infer(n, lin, out, &err), err.msg);
    CHECK(out[0].dtype == ONYX_DTYPE_F32 && th_dims_eq(&out[0], 3, dq));
    lin[0].rank = -1;
    CHECK_OK(th_infer(n, lin, out, &err), err.msg);
    CHECK(out[0].rank == -1);
    th_node_free(n);
}

/* ---- PRelu ---------------------------------------------------------------------------------- */

/* y = x < 0 ? slope x : x with slope broadcast to x by div/mod (the naive way). */
static void prelu_naive(const onyx_tensor *x, const onyx_tensor *slope, double *y)
{
    int64_t n = th_numel(x->rank, x->dims);
    const float *xf = x->data;
    const float *sf = slope->data;
    for (int64_t f = 0; f < n; f++) {
        int64_t si = th_naive_index(x, slope, f);
        y[f] = xf[f] < 0 ? (double)xf[f] * sf[si] : xf[f];
    }
}

static void test_prelu(void)
{
    onyx_tensor out[1];
    onyx_error err = {0};

    /* hand values: same shape, and a scalar slope */
    {
        th_node *n = th_node_new("PRelu", 16, 2, 1);
        float x[4] = {-2, -0.5f, 0, 3};
        float s[4] = {0.5f, 2, 7, 7};
        int64_t d[1] = {4};
        onyx_tensor in[2] = {th_f32(1, d, x), th_f32(1, d, s)};
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        const float *y = out[0].data;
        CHECK(y[0] == -1 && y[1] == -1 && y[2] == 0 && y[3] == 3);
        in[1] = th_f32(0, NULL, s);
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        y = out[0].data;
        CHECK(y[0] == -1 && y[1] == -0.25f && y[2] == 0 && y[3] == 3);
        th_node_free(n);
    }
    /* test_prelu_broadcast: X [3,4,5], slope [5]; the first row's values */
    {
        th_node *n = th_node_new("PRelu", 16, 2, 1);
        float x[60];
        for (int i = 0; i < 60; i++)
            x[i] = 1.0f;
        const float row[10] = {1.7640524f,  0.4001572f,  0.978738f,   2.2408931f, 1.867558f,
                               -0.9772779f, 0.95008844f, -0.1513572f, 1,          1};
        memcpy(x, row, sizeof row);
        float s[5] = {-0.67246044f, -0.35955316f, -0.8131463f, -1.7262826f, 0.17742614f};
        int64_t dx[3] = {3, 4, 5};
        int64_t ds[1] = {5};
        onyx_tensor in[2] = {th_f32(3, dx, x), th_f32(1, ds, s)};
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        CHECK(th_dims_eq(&out[0], 3, dx));
        const float *y = out[0].data;
        CHECK_NEAR(y[0], 1.7640524f);
        CHECK_NEAR(y[5], 0.6571807f);
        CHECK_NEAR(y[7], 0.12307555f);
        th_node_free(n);
    }
    /* fast vs naive: slope shapes [C,1,1], [W], scalar, rank 0, same shape, awkward dims */
    {
        static const struct {
            int rx;
            int64_t dx[5];
            int rs;
            int64_t ds[5];
        } cases[] = {
            {4, {2, 3, 5, 7}, 3, {3, 1, 1}},
            {4, {2, 3, 5, 7}, 1, {7}},
            {4, {2, 3, 5, 7}, 1, {1}},
            {4, {2, 3, 5, 7}, 0, {0}},
            {4, {2, 3, 5, 7}, 4, {2, 3, 5, 7}},
            {4, {2, 3, 5, 7}, 2, {5, 1}},
            {3, {1, 13, 1}, 2, {13, 1}},
            {5, {2, 3, 4, 5, 6}, 4, {3, 1, 5, 1}},
            {1, {1031}, 1, {1031}},
            {3, {0, 3, 2}, 2, {3, 1}},
            {2, {4, 0}, 1, {1}},
            {2, {1, 1}, 1, {1}},
            {0, {0}, 0, {0}},
        };
        for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
            int64_t nx = th_numel(cases[c].rx, cases[c].dx);
            int64_t ns = th_numel(cases[c].rs, cases[c].ds);
            float *x = malloc(sizeof(float) * (size_t)(nx + 1));
            float *s = malloc(sizeof(float) * (size_t)(ns + 1));
            double *want = malloc(sizeof(double) * (size_t)(nx + 1));
            for (int64_t i = 0; i < nx; i++)
                x[i] = (float)th_urand(&rng_state, -3, 3);
            for (int64_t i = 0; i < ns; i++)
                s[i] = (float)th_urand(&rng_state, -1, 1);
            onyx_tensor in[2] = {th_f32(cases[c].rx, cases[c].dx, x),
                                 th_f32(cases[c].rs, cases[c].ds, s)};
            prelu_naive(&in[0], &in[1], want);
            th_node *n = th_node_new("PRelu", 16, 2, 1);
            CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
            CHECK(th_dims_eq(&out[0], cases[c].rx, cases[c].dx));
            CHECK(th_close_f32(out[0].data, want, nx, 0, 1e-7, "PRelu fast vs naive"));
            th_node_free(n);
            /* the same through the float64 generic path */
            double *x64 = malloc(sizeof(double) * (size_t)(nx + 1));
            double *s64 = malloc(sizeof(double) * (size_t)(ns + 1));
            for (int64_t i = 0; i < nx; i++)
                x64[i] = x[i];
            for (int64_t i = 0; i < ns; i++)
                s64[i] = s[i];
            n = th_node_new("PRelu", 16, 2, 1);
            in[0] = th_tensor(ONYX_DTYPE_F64, cases[c].rx, cases[c].dx, x64);
            in[1] = th_tensor(ONYX_DTYPE_F64, cases[c].rs, cases[c].ds, s64);
            CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
            CHECK(th_close_f64(out[0].data, want, nx, 0, 1e-15, "PRelu f64 vs naive"));
            th_node_free(n);
            free(x);
            free(s);
            free(want);
            free(x64);
            free(s64);
        }
    }
    /* integers from opset 9: int32, int64; unsigned passes through */
    {
        int32_t x[4] = {-3, 4, -5, 0};
        int32_t s[1] = {2};
        int64_t d[1] = {4};
        th_node *n = th_node_new("PRelu", 9, 2, 1);
        onyx_tensor in[2] = {th_tensor(ONYX_DTYPE_I32, 1, d, x),
                             th_tensor(ONYX_DTYPE_I32, 0, NULL, s)};
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        const int32_t *y = out[0].data;
        CHECK(y[0] == -6 && y[1] == 4 && y[2] == -10 && y[3] == 0);
        th_node_free(n);
        uint32_t ux[2] = {UINT32_MAX, 1};
        uint32_t us[1] = {3};
        int64_t d2[1] = {2};
        n = th_node_new("PRelu", 16, 2, 1);
        in[0] = th_tensor(ONYX_DTYPE_U32, 1, d2, ux);
        in[1] = th_tensor(ONYX_DTYPE_U32, 1, (int64_t[]){1}, us);
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        CHECK(((uint32_t *)out[0].data)[0] == UINT32_MAX && ((uint32_t *)out[0].data)[1] == 1);
        th_node_free(n);
        n = th_node_new("PRelu", 7, 2, 1);
        in[0] = th_tensor(ONYX_DTYPE_I32, 1, d, x);
        in[1] = th_tensor(ONYX_DTYPE_I32, 0, NULL, s);
        CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_SHAPE);
        CHECK_MSG(err.msg, "input X has dtype int32");
        th_node_free(n);
    }
    /* errors: slope not broadcastable (both shapes named), slope of higher rank, dtypes */
    {
        float x[15] = {0};
        int64_t dx[2] = {3, 5};
        int64_t ds[1] = {4};
        th_node *n = th_node_new("PRelu", 16, 2, 1);
        onyx_tensor in[2] = {th_f32(2, dx, x), th_f32(1, ds, x)};
        CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_SHAPE);
        CHECK_MSG(err.msg, "test_node");
        CHECK_MSG(err.msg, "[4]");
        CHECK_MSG(err.msg, "[3,5]");
        th_node_free(n);
        /* unidirectional: slope [2,3,5] cannot grow X [3,5] */
        int64_t ds3[3] = {2, 3, 5};
        n = th_node_new("PRelu", 16, 2, 1);
        in[1] = th_f32(3, ds3, x);
        CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_SHAPE);
        CHECK_MSG(err.msg, "[2,3,5]");
        th_node_free(n);
        /* nor can slope [3,1] widen X [3] */
        int64_t dx1[1] = {3};
        int64_t ds31[2] = {3, 1};
        n = th_node_new("PRelu", 16, 2, 1);
        in[0] = th_f32(1, dx1, x);
        in[1] = th_f32(2, ds31, x);
        CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_SHAPE);
        th_node_free(n);
        double s64[1] = {0};
        n = th_node_new("PRelu", 16, 2, 1);
        in[0] = th_f32(2, dx, x);
        in[1] = th_tensor(ONYX_DTYPE_F64, 0, NULL, s64);
        CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_SHAPE);
        CHECK_MSG(err.msg,
                  "input slope has dtype float64, expected float32 (the dtype of input X)");
        th_node_free(n);
    }
    /* load time: X [?,3,4,4], slope [3,1,1] -> X's shape; unknown rank */
    {
        th_node *n = th_node_new("PRelu", 16, 2, 1);
        int64_t dx[4] = {-1, 3, 4, 4};
        int64_t ds[3] = {3, 1, 1};
        onyx_tensor in[2] = {th_f32(4, dx, NULL), th_f32(3, ds, NULL)};
        CHECK_OK(th_infer(n, in, out, &err), err.msg);
        CHECK(th_dims_eq(&out[0], 4, dx));
        in[0].rank = -1;
        CHECK_OK(th_infer(n, in, out, &err), err.msg);
        CHECK(out[0].rank == -1);
        th_node_free(n);
    }
    /* opset 6 (test_PReLU_*_multiparam): a 1-D slope of X's channel count applies along dim 1.
     * ops.def starts PRelu at 7, so this runs the impl directly. */
    {
        float x[24];
        for (int i = 0; i < 24; i++)
            x[i] = (float)(i % 5) - 2.0f;
        float s[3] = {0.25f, 0.5f, 2.0f};
        int64_t dx[3] = {2, 3, 4};
        int64_t ds[1] = {3};
        th_node *n = th_node_new("PRelu", 6, 2, 1);
        onyx_tensor in[2] = {th_f32(3, dx, x), th_f32(1, ds, s)};
        float y[24];
        CHECK_OK(th_run_impl(n, &onyx_impl_prelu, in, out, y, sizeof y, &err), err.msg);
        CHECK(th_dims_eq(&out[0], 3, dx));
        double want[24];
        for (int i = 0; i < 24; i++) {
            int c = (i / 4) % 3;
            want[i] = x[i] < 0 ? (double)x[i] * s[c] : x[i];
        }
        CHECK(th_close_f32(y, want, 24, 0, 0, "PRelu-6 per channel"));
        /* a one-element slope (test_PReLU_1d) */
        float s1[1] = {0.25f};
        int64_t d1[1] = {1};
        in[1] = th_f32(1, d1, s1);
        CHECK_OK(th_run_impl(n, &onyx_impl_prelu, in, out, y, sizeof y, &err), err.msg);
        for (int i = 0; i < 24; i++)
            want[i] = x[i] < 0 ? (double)x[i] * 0.25 : x[i];
        CHECK(th_close_f32(y, want, 24, 0, 0, "PRelu-6 scalar"));
        /* load time with an unknown channel count */
        int64_t dq[3] = {2, -1, 4};
        in[0] = th_f32(3, dq, NULL);
        in[1] = th_f32(1, ds, NULL);
        CHECK_OK(th_run_impl(n, &onyx_impl_prelu, in, out, NULL, 0, &err), err.msg);
        CHECK(th_dims_eq(&out[0], 3, dq));
        th_node_free(n);
    }
}

/* ---- Clip ----------------------------------------------------------------------------------- */

static void test_clip(void)
{
    onyx_tensor out[1];
    onyx_error err = {0};
    int64_t d3[1] = {3};

    /* opset 13: test_clip_example, _inbounds, _outbounds, _splitbounds */
    {
        float lo[1] = {-1};
        float hi[1] = {1};
        float x[3] = {-2, 0, 2};
        th_node *n = th_node_new("Clip", 13, 3, 1);
        onyx_tensor in[3] = {th_f32(1, d3, x), th_f32(0, NULL, lo), th_f32(0, NULL, hi)};
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        const float *y = out[0].data;
        CHECK(y[0] == -1 && y[1] == 0 && y[2] == 1);
        lo[0] = -5;
        hi[0] = 5;
        float x2[3] = {-6, 0, 6};
        in[0] = th_f32(1, d3, x2);
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        y = out[0].data;
        CHECK(y[0] == -5 && y[1] == 0 && y[2] == 5);
        float x3[3] = {-1, 0, 6};
        in[0] = th_f32(1, d3, x3);
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        y = out[0].data;
        CHECK(y[0] == -1 && y[1] == 0 && y[2] == 5);
        /* min > max: everything becomes max (the spec) */
        lo[0] = 2;
        hi[0] = 1;
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        y = out[0].data;
        CHECK(y[0] == 1 && y[1] == 1 && y[2] == 1);
        /* NaN stays NaN; infinities are clipped */
        lo[0] = -1;
        hi[0] = 1;
        float x4[3] = {NAN, -INFINITY, INFINITY};
        in[0] = th_f32(1, d3, x4);
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        y = out[0].data;
        CHECK(isnan(y[0]) && y[1] == -1 && y[2] == 1);
        th_node_free(n);
    }
    /* omitted bounds: test_clip_default_min / _max / _inbounds */
    {
        float b[1] = {0};
        float x[3] = {-1e30f, 0.5f, 1e30f};
        th_node *n = th_node_new("Clip", 13, 2, 1);
        onyx_tensor in[3] = {th_f32(1, d3, x), th_f32(0, NULL, b), th_omitted()};
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        const float *y = out[0].data;
        CHECK(y[0] == 0 && y[1] == 0.5f && y[2] == 1e30f);
        th_node_free(n);
        n = th_node_new("Clip", 13, 3, 1);
        in[1] = th_omitted();
        in[2] = th_f32(0, NULL, b);
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        y = out[0].data;
        CHECK(y[0] == -1e30f && y[1] == 0 && y[2] == 0);
        th_node_free(n);
        n = th_node_new("Clip", 13, 3, 1);
        in[2] = th_omitted();
        float xi[3] = {-INFINITY, 0, INFINITY};
        in[0] = th_f32(1, d3, xi);
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        y = out[0].data;
        CHECK(y[0] == -INFINITY && y[1] == 0 && y[2] == INFINITY);
        th_node_free(n);
    }
    /* opset 6: attributes (test_operator_clip: min -0.5, max 0.5); defaults -FLT_MAX/FLT_MAX */
    {
        float x[4] = {-1, -0.25f, 0.25f, 1};
        int64_t d4[1] = {4};
        th_node *n = th_node_new("Clip", 6, 1, 1);
        th_attr_float(n, "min", -0.5f);
        th_attr_float(n, "max", 0.5f);
        onyx_tensor in[1] = {th_f32(1, d4, x)};
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        const float *y = out[0].data;
        CHECK(y[0] == -0.5f && y[1] == -0.25f && y[2] == 0.25f && y[3] == 0.5f);
        th_node_free(n);
        n = th_node_new("Clip", 6, 1, 1);
        float xi[2] = {-INFINITY, INFINITY};
        int64_t d2[1] = {2};
        in[0] = th_f32(1, d2, xi);
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        y = out[0].data;
        CHECK(y[0] == -FLT_MAX && y[1] == FLT_MAX);
        th_node_free(n);
        /* float64 with the attributes, through the generic path */
        n = th_node_new("Clip", 6, 1, 1);
        th_attr_float(n, "max", 0.5f);
        double xd[3] = {-1e300, 0.25, 3};
        in[0] = th_tensor(ONYX_DTYPE_F64, 1, d3, xd);
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        const double *yd = out[0].data;
        CHECK(yd[0] == -(double)FLT_MAX && yd[1] == 0.25 && yd[2] == 0.5);
        th_node_free(n);
        /* attribute of the wrong type */
        n = th_node_new("Clip", 6, 1, 1);
        th_attr_int(n, "min", 0);
        in[0] = th_f32(1, d4, x);
        CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_INVALID_MODEL);
        CHECK_MSG(err.msg, "attribute min has type int");
        th_node_free(n);
        /* opset 6 has no min/max inputs */
        n = th_node_new("Clip", 6, 2, 1);
        in[0] = th_f32(1, d4, x);
        onyx_tensor in2[2] = {in[0], th_f32(0, NULL, x)};
        CHECK(th_run(n, ONYX_MODE_INFER, in2, out, &err) == ONYX_ERR_INVALID_MODEL);
        CHECK_MSG(err.msg, "has 2 inputs, expected 1");
        th_node_free(n);
    }
    /* integers: test_clip_default_int8_min/max/inbounds, uint8, int64, uint64 */
    {
        int8_t x[5] = {-128, -1, 0, 1, 127};
        int8_t zero[1] = {0};
        int64_t d5[1] = {5};
        th_node *n = th_node_new("Clip", 13, 2, 1);
        onyx_tensor in[3] = {th_tensor(ONYX_DTYPE_I8, 1, d5, x),
                             th_tensor(ONYX_DTYPE_I8, 0, NULL, zero), th_omitted()};
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        const int8_t *y = out[0].data;
        CHECK(out[0].dtype == ONYX_DTYPE_I8);
        CHECK(y[0] == 0 && y[1] == 0 && y[2] == 0 && y[3] == 1 && y[4] == 127);
        th_node_free(n);
        n = th_node_new("Clip", 13, 3, 1);
        in[1] = th_omitted();
        in[2] = th_tensor(ONYX_DTYPE_I8, 0, NULL, zero);
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        y = out[0].data;
        CHECK(y[0] == -128 && y[1] == -1 && y[2] == 0 && y[3] == 0 && y[4] == 0);
        th_node_free(n);
        n = th_node_new("Clip", 13, 1, 1);
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        CHECK(memcmp(out[0].data, x, sizeof x) == 0);
        th_node_free(n);

        uint8_t u[3] = {0, 100, 255};
        uint8_t ulo[1] = {10};
        uint8_t uhi[1] = {200};
        n = th_node_new("Clip", 12, 3, 1);
        onyx_tensor uin[3] = {th_tensor(ONYX_DTYPE_U8, 1, d3, u),
                              th_tensor(ONYX_DTYPE_U8, 0, NULL, ulo),
                              th_tensor(ONYX_DTYPE_U8, 0, NULL, uhi)};
        CHECK_OK(th_run(n, ONYX_MODE_INFER, uin, out, &err), err.msg);
        const uint8_t *yu = out[0].data;
        CHECK(yu[0] == 10 && yu[1] == 100 && yu[2] == 200);
        th_node_free(n);

        int64_t l[3] = {INT64_MIN, 9007199254740993, INT64_MAX};
        int64_t llo[1] = {-5};
        int64_t lhi[1] = {9007199254740992};
        n = th_node_new("Clip", 13, 3, 1);
        onyx_tensor lin[3] = {th_i64(1, d3, l), th_i64(0, NULL, llo), th_i64(0, NULL, lhi)};
        CHECK_OK(th_run(n, ONYX_MODE_INFER, lin, out, &err), err.msg);
        const int64_t *yl = out[0].data;
        CHECK(yl[0] == -5 && yl[1] == 9007199254740992 && yl[2] == 9007199254740992);
        th_node_free(n);

        /* uint64 above 2^63 compares as unsigned */
        uint64_t q[3] = {UINT64_MAX, (uint64_t)1 << 63, 5};
        uint64_t qlo[1] = {10};
        uint64_t qhi[1] = {((uint64_t)1 << 63) + 1};
        n = th_node_new("Clip", 13, 3, 1);
        onyx_tensor qin[3] = {th_tensor(ONYX_DTYPE_U64, 1, d3, q),
                              th_tensor(ONYX_DTYPE_U64, 0, NULL, qlo),
                              th_tensor(ONYX_DTYPE_U64, 0, NULL, qhi)};
        CHECK_OK(th_run(n, ONYX_MODE_INFER, qin, out, &err), err.msg);
        const uint64_t *yq = out[0].data;
        CHECK(yq[0] == qhi[0] && yq[1] == (uint64_t)1 << 63 && yq[2] == 10);
        th_node_free(n);

        /* integers only from opset 12 */
        n = th_node_new("Clip", 11, 1, 1);
        CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_SHAPE);
        CHECK_MSG(err.msg, "input input has dtype int8");
        th_node_free(n);
    }
    /* fast loop vs the plain formula on awkward lengths */
    {
        static const int64_t lens[] = {0, 1, 7, 1031};
        for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
            int64_t len = lens[l];
            float *x = malloc(sizeof(float) * (size_t)(len + 1));
            double *want = malloc(sizeof(double) * (size_t)(len + 1));
            float lo[1] = {-0.75f};
            float hi[1] = {1.25f};
            for (int64_t i = 0; i < len; i++) {
                x[i] = (float)th_urand(&rng_state, -3, 3);
                want[i] = fmin(fmax(x[i], lo[0]), hi[0]);
            }
            th_node *n = th_node_new("Clip", 13, 3, 1);
            onyx_tensor in[3] = {th_f32(1, &len, x), th_f32(0, NULL, lo), th_f32(0, NULL, hi)};
            CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
            CHECK(th_close_f32(out[0].data, want, len, 0, 0, "Clip fast vs naive"));
            th_node_free(n);
            free(x);
            free(want);
        }
    }
    /* errors: bounds not scalars, bounds of another dtype */
    {
        float x[3] = {0};
        int64_t d2[1] = {2};
        th_node *n = th_node_new("Clip", 13, 2, 1);
        onyx_tensor in[2] = {th_f32(1, d3, x), th_f32(1, d2, x)};
        CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_SHAPE);
        CHECK_MSG(err.msg, "test_node");
        CHECK_MSG(err.msg, "input min has shape [2], expected a scalar");
        th_node_free(n);
        n = th_node_new("Clip", 13, 3, 1);
        double hi[1] = {1};
        onyx_tensor in3[3] = {th_f32(1, d3, x), th_omitted(),
                              th_tensor(ONYX_DTYPE_F64, 0, NULL, hi)};
        CHECK(th_run(n, ONYX_MODE_INFER, in3, out, &err) == ONYX_ERR_SHAPE);
        CHECK_MSG(err.msg, "input max has dtype float64, expected float32");
        th_node_free(n);
        /* a one-element [1] bound is accepted */
        n = th_node_new("Clip", 13, 2, 1);
        int64_t d1[1] = {1};
        in[1] = th_f32(1, d1, x);
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        th_node_free(n);
    }
    /* load time: unknown batch, unknown-shape bounds */
    {
        th_node *n = th_node_new("Clip", 13, 3, 1);
        int64_t dq[2] = {-1, 7};
        onyx_tensor in[3] = {th_f32(2, dq, NULL), th_f32(0, NULL, NULL), th_f32(0, NULL, NULL)};
        in[1].rank = -1;
        CHECK_OK(th_infer(n, in, out, &err), err.msg);
        CHECK(out[0].dtype == ONYX_DTYPE_F32 && th_dims_eq(&out[0], 2, dq));
        th_node_free(n);
    }
}

/* ---- backward ----------------------------------------------------------------------------- */

static int grad_checks; /* finite-difference checks run, for the closing line */

/* Elements of input 0 within 0.05 of one of these are not compared (kinks: finite differences
 * with eps 1e-2 would straddle them). Set before each grad_check. */
static double kinks[4];
static int n_kinks;

static bool skip_kinks(int input, int64_t k, float x)
{
    (void)k;
    if (input != 0)
        return false;
    for (int i = 0; i < n_kinks; i++)
        if (fabs(x - kinks[i]) < 0.05)
            return true;
    return false;
}

/* Central finite differences on every float32 input in in_mask (tests/grad_check.h). */
static void grad_check(th_node *n, const onyx_tensor *in, uint32_t in_mask)
{
    int bad =
        th_grad_check(n, ONYX_MODE_TRAIN, in, in_mask, 0xffffffffu, 1e-2, 1e-3, 1e-2, skip_kinks);
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

#define PI_CONST 3.14159265358979323846

/* dy/dx of ref_act, in double, differentiated by hand from the spec's formulas. */
static double ref_act_grad(const char *op, const params *p, double x)
{
    if (strcmp(op, "Relu") == 0)
        return x > 0 ? 1 : 0;
    if (strcmp(op, "LeakyRelu") == 0)
        return x > 0 ? 1 : p->alpha;
    if (strcmp(op, "Sigmoid") == 0) {
        double s = 1.0 / (1.0 + exp(-x));
        return s * (1 - s);
    }
    if (strcmp(op, "HardSigmoid") == 0) {
        double t = p->alpha * x + p->beta;
        return t > 0 && t < 1 ? p->alpha : 0;
    }
    if (strcmp(op, "HardSwish") == 0)
        return x < -3 ? 0 : x > 3 ? 1 : 2 * x / 6 + 0.5;
    if (strcmp(op, "Tanh") == 0)
        return 1 - tanh(x) * tanh(x);
    if (strcmp(op, "Elu") == 0)
        return x >= 0 ? 1 : p->alpha * exp(x);
    if (strcmp(op, "Selu") == 0)
        return x > 0 ? p->gamma : p->gamma * p->alpha * exp(x);
    if (strcmp(op, "Celu") == 0)
        return x > 0 ? 1 : exp(x / p->alpha);
    if (strcmp(op, "Softplus") == 0)
        return exp(x) / (1 + exp(x));
    if (strcmp(op, "Softsign") == 0)
        return 1 / ((1 + fabs(x)) * (1 + fabs(x)));
    /* Gelu */
    if (p->tanh_approx) {
        double c = sqrt(2 / PI_CONST);
        double t = tanh(c * (x + 0.044715 * x * x * x));
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x);
    }
    return 0.5 * (1 + erf(x / sqrt(2.0))) + x * exp(-x * x / 2) / sqrt(2 * PI_CONST);
}

/* A node of all_ops[o] with variant 1 = non-default attributes (alpha, beta, gamma where the op
 * takes them; Gelu's tanh approximation), and *p its parameters. */
static th_node *act_node(size_t o, int variant, params *p)
{
    const char *op = all_ops[o].op;
    th_node *n = th_node_new(op, all_ops[o].opset, 1, 1);
    *p = all_ops[o].p;
    if (variant == 0)
        return n;
    if (strcmp(op, "Gelu") == 0) {
        p->tanh_approx = true;
        th_attr_string(n, "approximate", "tanh");
    }
    if (strcmp(op, "LeakyRelu") == 0 || strcmp(op, "Elu") == 0 || strcmp(op, "Selu") == 0 ||
        strcmp(op, "Celu") == 0 || strcmp(op, "HardSigmoid") == 0) {
        p->alpha = strcmp(op, "Celu") == 0 ? 0.5f : strcmp(op, "HardSigmoid") == 0 ? 0.4f : 1.5f;
        th_attr_float(n, "alpha", (float)p->alpha);
    }
    if (strcmp(op, "HardSigmoid") == 0) {
        p->beta = 0.3f;
        th_attr_float(n, "beta", (float)p->beta);
    }
    if (strcmp(op, "Selu") == 0) {
        p->gamma = 2.0f;
        th_attr_float(n, "gamma", (float)p->gamma);
    }
    return n;
}

/* The kinks of all_ops[o] with parameters p, into kinks[]. */
static void set_kinks(size_t o, const params *p)
{
    const char *op = all_ops[o].op;
    n_kinks = 0;
    if (strcmp(op, "Relu") == 0 || strcmp(op, "LeakyRelu") == 0 || strcmp(op, "Elu") == 0 ||
        strcmp(op, "Selu") == 0 || strcmp(op, "Celu") == 0) {
        kinks[n_kinks++] = 0; /* Elu, Selu, Celu: kinks unless the slopes happen to match */
    } else if (strcmp(op, "HardSigmoid") == 0) {
        kinks[n_kinks++] = -p->beta / p->alpha;
        kinks[n_kinks++] = (1 - p->beta) / p->alpha;
    } else if (strcmp(op, "HardSwish") == 0) {
        kinks[n_kinks++] = -3;
        kinks[n_kinks++] = 3;
    }
}

static void test_act_backward(void)
{
    /* hand values, dY = 2 onto dX pre-filled with 1 */
    static const struct {
        const char *op;
        float x;
        double want; /* dX after the backward */
    } hand[] = {
        {"Relu", -1, 1},
        {"Relu", 2, 1 + 2},
        {"Relu", 0, 1},                   /* PyTorch's choice at the kink */
        {"LeakyRelu", -1, 1 + 2 * 0.01f}, /* default alpha */
        {"Sigmoid", 0, 1 + 2 * 0.25},     /* y = 1/2: y (1 - y) */
        {"HardSigmoid", 0, 1 + 2 * 0.2f}, /* inside (0, 1): alpha */
        {"HardSigmoid", 3, 1},            /* saturated: 0 */
        {"HardSigmoid", 2.5f, 1},         /* at the corner alpha x + beta = 1: 0 */
        {"HardSwish", 1, 1 + 2 * (1.0 / 3 + 0.5)},
        {"HardSwish", -4, 1},
        {"HardSwish", 4, 1 + 2},
        {"Tanh", 0, 1 + 2},
        {"Elu", -1, 1 + 2 * exp(-1.0)},
        {"Selu", 1, 1 + 2 * 1.05070102214813232421875},
        {"Celu", -2, 1 + 2 * exp(-2.0)},
        {"Softplus", 0, 1 + 2 * 0.5},
        {"Softsign", 1, 1 + 2 * 0.25},
        {"Softsign", -3, 1 + 2 * 0.0625},
        {"Gelu", 0, 1 + 2 * 0.5},
        {"Gelu", 1, 1 + 2 * (0.841344746068543 + 0.241970724519143)}, /* Phi(1) + phi(1) */
    };
    for (size_t c = 0; c < sizeof(hand) / sizeof(hand[0]); c++) {
        th_node *n = th_node_new(hand[c].op, 20, 1, 1);
        float dy[1] = {2};
        float dx[1] = {1};
        int64_t d1[1] = {1};
        onyx_tensor in[1] = {th_f32(1, d1, &hand[c].x)};
        run_backward(n, in, dy, (float *[]){dx});
        if (fabs(dx[0] - hand[c].want) > 1e-6 + 1e-5 * fabs(hand[c].want))
            fprintf(stderr, "%s at %g\n", hand[c].op, hand[c].x);
        CHECK_NEAR(dx[0], hand[c].want);
        th_node_free(n);
    }
    /* no gradient flowing in, or none wanted: nothing is touched */
    {
        th_node *n = th_node_new("Tanh", 13, 1, 1);
        float x[2] = {1, 2};
        float dx[2] = {5, 5};
        int64_t d2[1] = {2};
        onyx_tensor in[1] = {th_f32(1, d2, x)};
        run_backward(n, in, NULL, (float *[]){dx});
        CHECK(dx[0] == 5 && dx[1] == 5);
        run_backward(n, in, (float[]){1, 1}, (float *[]){NULL});
        th_node_free(n);
    }
    /* every op and attribute variant: the float32 loops against the derivative in double over
     * [-12, 12], and finite differences over [-4, 4] (kinks skipped) and in the tails */
    for (size_t o = 0; o < sizeof(all_ops) / sizeof(all_ops[0]); o++) {
        for (int variant = 0; variant < 2; variant++) {
            params p;
            const char *op = all_ops[o].op;
            bool has_variant = strcmp(op, "Gelu") == 0 || strcmp(op, "LeakyRelu") == 0 ||
                               strcmp(op, "Elu") == 0 || strcmp(op, "Selu") == 0 ||
                               strcmp(op, "Celu") == 0 || strcmp(op, "HardSigmoid") == 0;
            if (variant == 1 && !has_variant)
                continue;
            th_node *n = act_node(o, variant, &p);
            int64_t len = 1031;
            float *x = malloc(sizeof(float) * (size_t)len);
            float *dy = malloc(sizeof(float) * (size_t)len);
            float *dx = calloc((size_t)len, sizeof(float));
            double *want = malloc(sizeof(double) * (size_t)len);
            for (int64_t i = 0; i < len; i++) {
                x[i] = (float)th_urand(&rng_state, -12, 12);
                dy[i] = (float)th_urand(&rng_state, -1, 1);
                want[i] = dy[i] * ref_act_grad(op, &p, x[i]);
            }
            onyx_tensor in[1] = {th_f32(1, &len, x)};
            run_backward(n, in, dy, (float *[]){dx});
            char label[64];
            snprintf(label, sizeof label, "%s/%d backward", op, variant);
            CHECK(th_close_f32(dx, want, len, 1e-6, 1e-5, label));
            th_node_free(n);

            float xs[24];
            for (int i = 0; i < 20; i++)
                xs[i] = (float)th_urand(&rng_state, -4, 4);
            xs[20] = -15;
            xs[21] = -9;
            xs[22] = 9;
            xs[23] = 15;
            int64_t d[2] = {4, 6};
            set_kinks(o, &p);
            n = act_node(o, variant, &p);
            in[0] = th_f32(2, d, xs);
            grad_check(n, in, 0x1u);
            th_node_free(n);
            free(x);
            free(dy);
            free(dx);
            free(want);
        }
    }
    n_kinks = 0;
}

static void test_prelu_backward(void)
{
    /* hand: X = [-2, 3, 0], slope 0.5: dX = [0.5 dy0, dy1, 0.5 dy2], dslope = -2 dy0 */
    {
        th_node *n = th_node_new("PRelu", 16, 2, 1);
        float x[3] = {-2, 3, 0};
        float s[1] = {0.5f};
        float dy[3] = {1, 2, 3};
        float dx[3] = {1, 1, 1};
        float ds[1] = {1};
        int64_t d3[1] = {3};
        int64_t d1[1] = {1};
        onyx_tensor in[2] = {th_f32(1, d3, x), th_f32(1, d1, s)};
        run_backward(n, in, dy, (float *[]){dx, ds});
        CHECK_NEAR(dx[0], 1 + 0.5);
        CHECK_NEAR(dx[1], 1 + 2);
        CHECK_NEAR(dx[2], 1 + 1.5);
        CHECK_NEAR(ds[0], 1 - 2);
        /* only the slope's gradient */
        run_backward(n, in, dy, (float *[]){NULL, ds});
        CHECK_NEAR(ds[0], 1 - 4);
        th_node_free(n);
        const onyx_op_def *d = onyx_op_find("", "PRelu", 16);
        CHECK(d && d->impl->backward && d->impl->grad_inputs == 0x3u);
    }
    /* finite differences over slope shapes: scalar, same, per channel [C,1,1], last dim, rank-1
     * one element, opset 6's channel slope [C] (Caffe2), and opset 7's row [W] */
    static const struct {
        int64_t opset;
        int rs;
        int64_t ds[4];
    } cases[] = {
        {16, 0, {0}}, {16, 4, {2, 3, 4, 5}}, {16, 3, {3, 1, 1}}, {16, 1, {5}},
        {16, 1, {1}}, {6, 1, {3}},           {7, 1, {5}},        {16, 4, {2, 1, 4, 1}},
    };
    int64_t dxs[4] = {2, 3, 4, 5};
    float x[120];
    float s[120];
    for (int i = 0; i < 120; i++) {
        x[i] = (float)th_urand(&rng_state, -3, 3);
        s[i] = (float)th_urand(&rng_state, -1, 1);
    }
    kinks[0] = 0;
    n_kinks = 1;
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        th_node *n = th_node_new("PRelu", cases[c].opset, 2, 1);
        onyx_tensor in[2] = {th_f32(4, dxs, x), th_f32(cases[c].rs, cases[c].ds, s)};
        grad_check(n, in, 0x3u);
        th_node_free(n);
    }
    n_kinks = 0;
    /* naive reference: dslope summed over broadcast dims by div/mod */
    {
        int64_t dsl[3] = {3, 1, 5};
        float dy[120];
        float dx[120] = {0};
        float ds[15] = {0};
        double want_x[120];
        double want_s[15] = {0};
        for (int i = 0; i < 120; i++)
            dy[i] = (float)th_urand(&rng_state, -1, 1);
        onyx_tensor tx = th_f32(4, dxs, x);
        onyx_tensor ts = th_f32(3, dsl, s);
        for (int64_t f = 0; f < 120; f++) {
            int64_t si = th_naive_index(&tx, &ts, f);
            want_x[f] = x[f] > 0 ? dy[f] : (double)s[si] * dy[f];
            if (x[f] < 0)
                want_s[si] += (double)x[f] * dy[f];
        }
        th_node *n = th_node_new("PRelu", 16, 2, 1);
        onyx_tensor in[2] = {tx, ts};
        run_backward(n, in, dy, (float *[]){dx, ds});
        CHECK(th_close_f32(dx, want_x, 120, 1e-6, 1e-5, "PRelu dX"));
        CHECK(th_close_f32(ds, want_s, 15, 1e-5, 1e-5, "PRelu dslope"));
        th_node_free(n);
    }
}

static void test_clip_backward(void)
{
    /* hand: [-2, -1, 0, 1, 2] clipped to [-1, 1]: the gradient passes inside, bounds included */
    {
        th_node *n = th_node_new("Clip", 13, 3, 1);
        float x[5] = {-2, -1, 0, 1, 2};
        float lo[1] = {-1};
        float hi[1] = {1};
        float dy[5] = {1, 2, 3, 4, 5};
        float dx[5] = {1, 1, 1, 1, 1};
        int64_t d5[1] = {5};
        onyx_tensor in[3] = {th_f32(1, d5, x), th_f32(0, NULL, lo), th_f32(0, NULL, hi)};
        run_backward(n, in, dy, (float *[]){dx, NULL, NULL});
        CHECK(dx[0] == 1 && dx[1] == 3 && dx[2] == 4 && dx[3] == 5 && dx[4] == 1);
        th_node_free(n);
        /* min > max: the output is max everywhere, so nothing passes */
        n = th_node_new("Clip", 13, 3, 1);
        in[1] = th_f32(0, NULL, hi);
        in[2] = th_f32(0, NULL, lo);
        float dz[5] = {0};
        run_backward(n, in, dy, (float *[]){dz, NULL, NULL});
        CHECK(dz[0] == 0 && dz[1] == 0 && dz[2] == 0 && dz[3] == 0 && dz[4] == 0);
        th_node_free(n);
        const onyx_op_def *d = onyx_op_find("", "Clip", 13);
        CHECK(d && d->impl->backward && d->impl->grad_inputs == 0x1u);
    }
    /* finite differences: opset 6 attributes, opset 13 with both bounds, only min, only max,
     * none */
    float x[24];
    for (int i = 0; i < 24; i++)
        x[i] = (float)th_urand(&rng_state, -3, 3);
    int64_t d[2] = {4, 6};
    float lo[1] = {-1.5f};
    float hi[1] = {0.75f};
    kinks[0] = -1.5;
    kinks[1] = 0.75;
    n_kinks = 2;
    {
        th_node *n = th_node_new("Clip", 6, 1, 1);
        th_attr_float(n, "min", -1.5f);
        th_attr_float(n, "max", 0.75f);
        onyx_tensor in[1] = {th_f32(2, d, x)};
        grad_check(n, in, 0x1u);
        th_node_free(n);
    }
    for (int mask = 0; mask < 4; mask++) {
        th_node *n = th_node_new("Clip", 13, 3, 1);
        onyx_tensor in[3] = {th_f32(2, d, x), th_f32(0, NULL, lo), th_f32(0, NULL, hi)};
        if (!(mask & 1))
            in[1] = th_omitted();
        if (!(mask & 2))
            in[2] = th_omitted();
        grad_check(n, in, 0x1u);
        th_node_free(n);
    }
    n_kinks = 0;
}

int main(void)
{
    test_act_values();
    test_act_tails();
    test_act_fast_vs_naive();
    test_act_dtypes();
    test_act_attr_errors();
    test_prelu();
    test_clip();
    test_act_backward();
    test_prelu_backward();
    test_clip_backward();
    printf("%d gradient checks\n", grad_checks);
    return check_report();
}
