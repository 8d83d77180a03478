/* test_norm.c — BatchNormalization (modes, opsets) and LayerNormalization, against double
 * references written from the spec formulas and against the ONNX conformance data; their
 * backward passes by finite differences and by hand, and BatchNorm's running-statistics update. */
#include "check.h"
#include "grad_check.h"
#include "op_harness.h"

#include <stdint.h>
#include <stdlib.h>

/* Runs node n (n_in inputs, n_out outputs) on the case's inputs in mode and compares every
 * output with the recorded one to atol + rtol*|want|. */
static void run_conformance(th_node *n, const char *name, int n_in, int n_out, onyx_mode mode,
                            double atol, double rtol)
{
    onyx_tensor in[5];
    onyx_tensor want[5];
    onyx_error err;
    bool have = th_case_read(name, n_in, in, n_out, want, &err);
    CHECK_OK(err.code, err.msg); /* data that is installed must read */
    if (!have) {
        printf("SKIP %s: conformance data not found under %s\n", name, TH_NODE_DATA);
        return;
    }
    onyx_tensor out[5];
    CHECK_OK(th_run(n, mode, in, out, &err), err.msg);
    for (int o = 0; o < n_out; o++) {
        CHECK(onyx_shape_equal(&out[o], &want[o]) && out[o].dtype == want[o].dtype);
        int64_t numel = onyx_numel(&want[o]);
        const float *y = out[o].data;
        const float *w = want[o].data;
        int bad = 0;
        for (int64_t i = 0; i < numel; i++)
            if (!(fabs(y[i] - w[i]) <= atol + rtol * fabs(w[i])))
                bad++;
        if (bad)
            fprintf(stderr, "%s: output %d: %d of %lld values differ\n", name, o, bad,
                    (long long)numel);
        CHECK(bad == 0);
    }
    for (int i = 0; i < n_in; i++)
        onyx_tensor_free(&in[i]);
    for (int i = 0; i < n_out; i++)
        onyx_tensor_free(&want[i]);
}

static uint64_t lcg_state = 0x2545f4914f6cdd1du; /* th_frand's, for this file's data */

/* ---- BatchNormalization ------------------------------------------------------------------- */

static void test_bn_conformance(void)
{
    th_node *n = th_node_new("BatchNormalization", 15, 5, 1);
    run_conformance(n, "test_batchnorm_example", 5, 1, ONYX_MODE_GRAPH, 1e-5, 1e-4);
    th_node_free(n);
    n = th_node_new("BatchNormalization", 15, 5, 1);
    th_attr_float(n, "epsilon", 1e-2f);
    run_conformance(n, "test_batchnorm_epsilon", 5, 1, ONYX_MODE_GRAPH, 1e-5, 1e-4);
    th_node_free(n);
    n = th_node_new("BatchNormalization", 15, 5, 3);
    th_attr_int(n, "training_mode", 1);
    run_conformance(n, "test_batchnorm_example_training_mode", 5, 3, ONYX_MODE_GRAPH, 1e-5, 1e-4);
    /* TRAIN mode agrees; INFER mode does not (it uses the running statistics). */
    run_conformance(n, "test_batchnorm_example_training_mode", 5, 3, ONYX_MODE_TRAIN, 1e-5, 1e-4);
    th_node_free(n);
    n = th_node_new("BatchNormalization", 15, 5, 3);
    th_attr_float(n, "epsilon", 1e-2f);
    th_attr_int(n, "training_mode", 1);
    run_conformance(n, "test_batchnorm_epsilon_training_mode", 5, 3, ONYX_MODE_GRAPH, 1e-5, 1e-4);
    th_node_free(n);
    /* A model without training_mode run in TRAIN mode reproduces the training-mode data. */
    n = th_node_new("BatchNormalization", 15, 5, 3);
    th_attr_float(n, "epsilon", 1e-2f);
    run_conformance(n, "test_batchnorm_epsilon_training_mode", 5, 3, ONYX_MODE_TRAIN, 1e-5, 1e-4);
    th_node_free(n);
}

/* The spec formulas in double. x: (N, C, S). training: batch statistics (population variance),
 * else mean/var. Fills y and the four statistics outputs (running mean/var, saved mean/var). */
static void bn_ref(const float *x, int64_t N, int64_t C, int64_t S, const float *scale,
                   const float *bias, const float *mean, const float *var, double eps, double mom,
                   bool training, double *y, double *stats /* 4*C */)
{
    for (int64_t c = 0; c < C; c++) {
        double m = mean[c];
        double v = var[c];
        if (training) {
            double s = 0;
            for (int64_t n = 0; n < N; n++)
                for (int64_t j = 0; j < S; j++)
                    s += x[(n * C + c) * S + j];
            double bm = s / (double)(N * S);
            double sq = 0;
            for (int64_t n = 0; n < N; n++)
                for (int64_t j = 0; j < S; j++) {
                    double d = x[(n * C + c) * S + j] - bm;
                    sq += d * d;
                }
            m = bm;
            v = sq / (double)(N * S);
        }
        for (int64_t n = 0; n < N; n++)
            for (int64_t j = 0; j < S; j++) {
                int64_t i = (n * C + c) * S + j;
                y[i] = (x[i] - m) / sqrt(v + eps) * scale[c] + bias[c];
            }
        stats[0 * C + c] = training ? mean[c] * mom + m * (1 - mom) : mean[c];
        stats[1 * C + c] = training ? var[c] * mom + v * (1 - mom) : var[c];
        stats[2 * C + c] = m;
        stats[3 * C + c] = v;
    }
}

enum { BN_N = 3, BN_C = 4, BN_S = 6 };
static float bx[BN_N * BN_C * BN_S];
static float bscale[BN_C];
static float bbias[BN_C];
static float bmean[BN_C];
static float bvar[BN_C];

/* Runs a BatchNormalization node on bx & co. (rank 3: [N, C, S]) and checks all its outputs
 * against bn_ref with the given `training`. */
static void check_bn(th_node *n, int n_out, onyx_mode mode, bool training, float eps, float mom)
{
    const int64_t dims[3] = {BN_N, BN_C, BN_S};
    const int64_t cd[1] = {BN_C};
    onyx_tensor in[5] = {th_f32(3, dims, bx), th_f32(1, cd, bscale), th_f32(1, cd, bbias),
                         th_f32(1, cd, bmean), th_f32(1, cd, bvar)};
    double y[BN_N * BN_C * BN_S];
    double stats[4 * BN_C];
    bn_ref(bx, BN_N, BN_C, BN_S, bscale, bbias, bmean, bvar, eps, mom, training, y, stats);
    onyx_error err = {0};
    onyx_tensor out[5];
    onyx_status st = th_run(n, mode, in, out, &err);
    CHECK_OK(st, err.msg);
    if (st != ONYX_OK)
        return;
    const float *yv = out[0].data;
    int bad = 0;
    for (int i = 0; i < BN_N * BN_C * BN_S; i++)
        bad += !(fabs(yv[i] - y[i]) <= 1e-5 + 1e-5 * fabs(y[i]));
    for (int o = 1; o < n_out; o++) {
        CHECK(out[o].rank == 1 && out[o].dims[0] == BN_C);
        const float *sv = out[o].data;
        for (int c = 0; c < BN_C; c++)
            bad += !(fabs(sv[c] - stats[(o - 1) * BN_C + c]) <= 1e-6 + 1e-5 * fabs(sv[c]));
    }
    if (bad)
        fprintf(stderr, "batchnorm opset %lld mode %d: %d values differ\n",
                (long long)th_onyx_node(n)->opset, mode, bad);
    CHECK(bad == 0);
}

static void test_bn_modes(void)
{
    for (int i = 0; i < BN_N * BN_C * BN_S; i++)
        bx[i] = th_frand(&lcg_state) * 3.0f + (float)(i % BN_C);
    for (int c = 0; c < BN_C; c++) {
        bscale[c] = 0.5f + th_frand(&lcg_state);
        bbias[c] = th_frand(&lcg_state);
        bmean[c] = th_frand(&lcg_state);
        bvar[c] = 0.5f + 0.5f * th_frand(&lcg_state);
    }
    const float eps = 1e-5f;
    const float mom = 0.9f;

    /* Opset 15: training_mode decides in GRAPH; INFER and TRAIN override it. */
    th_node *n = th_node_new("BatchNormalization", 15, 5, 3);
    th_attr_int(n, "training_mode", 1);
    check_bn(n, 3, ONYX_MODE_GRAPH, true, eps, mom);
    check_bn(n, 3, ONYX_MODE_INFER, false, eps, mom);
    check_bn(n, 3, ONYX_MODE_TRAIN, true, eps, mom);
    th_node_free(n);
    n = th_node_new("BatchNormalization", 14, 5, 1);
    check_bn(n, 1, ONYX_MODE_GRAPH, false, eps, mom);
    check_bn(n, 1, ONYX_MODE_TRAIN, true, eps, mom);
    th_node_free(n);
    /* Attributes epsilon and momentum. */
    n = th_node_new("BatchNormalization", 15, 5, 3);
    th_attr_float(n, "epsilon", 0.1f);
    th_attr_float(n, "momentum", 0.7f);
    check_bn(n, 3, ONYX_MODE_TRAIN, true, 0.1f, 0.7f);
    check_bn(n, 3, ONYX_MODE_GRAPH, false, 0.1f, 0.7f);
    th_node_free(n);

    /* Opsets 7 and 9: more than one output means training. */
    for (int v = 0; v < 2; v++) {
        int64_t opset = v ? 9 : 7;
        n = th_node_new("BatchNormalization", opset, 5, 1);
        check_bn(n, 1, ONYX_MODE_GRAPH, false, eps, mom);
        check_bn(n, 1, ONYX_MODE_TRAIN, true, eps, mom);
        th_node_free(n);
        n = th_node_new("BatchNormalization", opset, 5, 5);
        check_bn(n, 5, ONYX_MODE_GRAPH, true, eps, mom);
        check_bn(n, 5, ONYX_MODE_INFER, false, eps, mom);
        th_node_free(n);
        n = th_node_new("BatchNormalization", opset, 5, 3);
        check_bn(n, 3, ONYX_MODE_GRAPH, true, eps, mom);
        th_node_free(n);
    }

    /* Opset 6: is_test (default 0, i.e. training). */
    n = th_node_new("BatchNormalization", 6, 5, 1);
    check_bn(n, 1, ONYX_MODE_GRAPH, true, eps, mom);
    check_bn(n, 1, ONYX_MODE_INFER, false, eps, mom);
    th_node_free(n);
    n = th_node_new("BatchNormalization", 6, 5, 5);
    th_attr_int(n, "is_test", 1);
    check_bn(n, 5, ONYX_MODE_GRAPH, false, eps, mom);
    check_bn(n, 5, ONYX_MODE_TRAIN, true, eps, mom);
    th_node_free(n);
    n = th_node_new("BatchNormalization", 7, 5, 1);
    th_attr_int(n, "spatial", 1);
    check_bn(n, 1, ONYX_MODE_INFER, false, eps, mom);
    th_node_free(n);

    /* An omitted middle output is left alone; the others are still written. */
    n = th_node_new("BatchNormalization", 9, 5, 5);
    th_set_out_omitted(n, 1);
    th_set_out_omitted(n, 3);
    check_bn(n, 1, ONYX_MODE_TRAIN, true, eps, mom);
    th_node_free(n);
}

static void test_bn_shapes_dtypes(void)
{
    onyx_error err = {0};
    onyx_tensor out[3];
    /* X: (N) with C = 1, and (N, C). Hand values: x = [1, 3], mean 2, var 1 (batch) */
    const float x1[2] = {1, 3};
    const float one[1] = {1};
    const float zero[1] = {0};
    const float four[1] = {4};
    th_node *n = th_node_new("BatchNormalization", 15, 5, 3);
    onyx_tensor in[5] = {th_f32(1, (const int64_t[]){2}, x1), th_f32(1, (const int64_t[]){1}, one),
                         th_f32(1, (const int64_t[]){1}, zero),
                         th_f32(1, (const int64_t[]){1}, zero),
                         th_f32(1, (const int64_t[]){1}, four)};
    CHECK_OK(th_run(n, ONYX_MODE_TRAIN, in, out, &err), err.msg);
    const float *y = out[0].data;
    CHECK_NEAR(y[0], -1.0 / sqrt(1.0 + 1e-5));
    CHECK_NEAR(y[1], 1.0 / sqrt(1.0 + 1e-5));
    CHECK_NEAR(((const float *)out[1].data)[0], 0.1 * 2.0);       /* 0*0.9 + 2*0.1 */
    CHECK_NEAR(((const float *)out[2].data)[0], 4 * 0.9 + 1 * 0.1); /* population var 1 */
    CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
    y = out[0].data;
    CHECK_NEAR(y[0], 1.0 / sqrt(4.0 + 1e-5));
    CHECK_NEAR(((const float *)out[2].data)[0], 4.0);
    th_node_free(n);

    /* (N, C) and float64 through the generic path; opset 15 statistics in float64 with X in
     * float32 (T2 != T). */
    const double xd[4] = {1, 10, 3, 30}; /* N=2, C=2 */
    const double sc[2] = {2, 1};
    const double bi[2] = {0, 1};
    const double mn[2] = {0, 0};
    const double vr[2] = {1, 1};
    n = th_node_new("BatchNormalization", 15, 5, 3);
    onyx_tensor ind[5] = {th_tensor(ONYX_DTYPE_F64, 2, (const int64_t[]){2, 2}, xd),
                          th_tensor(ONYX_DTYPE_F64, 1, (const int64_t[]){2}, sc),
                          th_tensor(ONYX_DTYPE_F64, 1, (const int64_t[]){2}, bi),
                          th_tensor(ONYX_DTYPE_F64, 1, (const int64_t[]){2}, mn),
                          th_tensor(ONYX_DTYPE_F64, 1, (const int64_t[]){2}, vr)};
    CHECK_OK(th_run(n, ONYX_MODE_TRAIN, ind, out, &err), err.msg);
    CHECK(out[0].dtype == ONYX_DTYPE_F64 && out[1].dtype == ONYX_DTYPE_F64);
    const double *yd = out[0].data;
    /* channel 0: 1, 3 -> mean 2 var 1; channel 1: 10, 30 -> mean 20 var 100 */
    CHECK_NEAR(yd[0], 2 * (-1 / sqrt(1 + 1e-5)));
    CHECK_NEAR(yd[1], -10 / sqrt(100 + 1e-5) + 1);
    CHECK_NEAR(yd[3], 10 / sqrt(100 + 1e-5) + 1);
    CHECK_NEAR(((const double *)out[2].data)[1], 0.9 + 100 * 0.1);
    th_node_free(n);
    const float xf[4] = {1, 10, 3, 30};
    const float scf[2] = {2, 1};
    const float bif[2] = {0, 1};
    n = th_node_new("BatchNormalization", 15, 5, 3);
    ind[0] = th_f32(2, (const int64_t[]){2, 2}, xf);
    ind[1] = th_f32(1, (const int64_t[]){2}, scf);
    ind[2] = th_f32(1, (const int64_t[]){2}, bif);
    CHECK_OK(th_run(n, ONYX_MODE_TRAIN, ind, out, &err), err.msg);
    CHECK(out[0].dtype == ONYX_DTYPE_F32 && out[1].dtype == ONYX_DTYPE_F64);
    y = out[0].data;
    CHECK_NEAR(y[3], 10 / sqrt(100 + 1e-5) + 1);
    CHECK_NEAR(((const double *)out[1].data)[1], 20 * 0.1);
    th_node_free(n);
}

static void test_bn_errors_infer(void)
{
    onyx_error err = {0};
    onyx_tensor out[5];
    float buf[120] = {0};
    const int64_t xd[4] = {2, 3, 4, 5};
    const int64_t c3[1] = {3};
    const int64_t c4[1] = {4};
    onyx_tensor in[5] = {th_f32(4, xd, buf), th_f32(1, c4, buf), th_f32(1, c3, buf),
                         th_f32(1, c3, buf), th_f32(1, c3, buf)};
    th_node *n = th_node_new("BatchNormalization", 15, 5, 1);
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_SHAPE);
    CHECK_MSG(err.msg, "node \"test_node\" (BatchNormalization, opset 15)");
    CHECK_MSG(err.msg, "input scale has shape [4], expected [3] (C of X [2,3,4,5])");
    th_node_free(n);

    in[1] = th_f32(2, (const int64_t[]){3, 1}, buf);
    n = th_node_new("BatchNormalization", 15, 5, 1);
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_SHAPE);
    CHECK_MSG(err.msg, "input scale has shape [3,1], expected [3]");
    th_node_free(n);
    in[1] = th_f32(1, c3, buf);

    /* spatial = 0 is refused clearly. */
    n = th_node_new("BatchNormalization", 7, 5, 1);
    th_attr_int(n, "spatial", 0);
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_UNSUPPORTED);
    CHECK_MSG(err.msg, "(BatchNormalization, opset 7): attribute spatial is 0, but only "
                       "spatial=1 is supported");
    th_node_free(n);

    /* dtypes: one T before opset 14. */
    in[3] = th_tensor(ONYX_DTYPE_F64, 1, c3, buf);
    n = th_node_new("BatchNormalization", 9, 5, 1);
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_SHAPE);
    CHECK_MSG(err.msg,
              "input input_mean has dtype float64, expected float32 (the dtype of input X)");
    th_node_free(n);
    n = th_node_new("BatchNormalization", 15, 5, 1);
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_SHAPE);
    CHECK_MSG(err.msg, "input input_var has dtype float32, expected float64 (the dtype of input "
                       "input_mean)");
    th_node_free(n);
    in[3] = th_f32(1, c3, buf);
    in[0] = th_tensor(ONYX_DTYPE_I32, 4, xd, buf);
    n = th_node_new("BatchNormalization", 15, 5, 1);
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_UNSUPPORTED);
    CHECK_MSG(err.msg, "input X has dtype int32, expected one of: float16, bfloat16, float32, "
                       "float64");
    th_node_free(n);
    in[0] = th_f32(0, NULL, buf);
    n = th_node_new("BatchNormalization", 15, 5, 1);
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_SHAPE);
    CHECK_MSG(err.msg, "input X is a scalar");
    th_node_free(n);
    in[0] = th_f32(4, xd, buf);

    /* Attributes and arity. */
    n = th_node_new("BatchNormalization", 15, 5, 1);
    th_attr_int(n, "epsilon", 1);
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_INVALID_MODEL);
    CHECK_MSG(err.msg, "attribute epsilon has type int, expected float");
    th_node_free(n);
    n = th_node_new("BatchNormalization", 15, 5, 1);
    th_attr_float(n, "training_mode", 1.0f);
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_INVALID_MODEL);
    CHECK_MSG(err.msg, "attribute training_mode has type float, expected int");
    th_node_free(n);
    n = th_node_new("BatchNormalization", 15, 5, 5);
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_INVALID_MODEL);
    CHECK_MSG(err.msg, "has 5 outputs, expected 1 to 3");
    th_node_free(n);
    n = th_node_new("BatchNormalization", 15, 4, 1);
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_INVALID_MODEL);
    CHECK_MSG(err.msg, "has 4 inputs, expected 5");
    th_node_free(n);

    /* Load time: unknown batch dim; unknown rank of X takes C from scale. */
    n = th_node_new("BatchNormalization", 15, 5, 3);
    onyx_tensor li[5] = {th_f32(4, (const int64_t[]){-1, 3, 8, 8}, NULL), th_f32(1, c3, NULL),
                         th_f32(1, c3, NULL), th_f32(1, c3, NULL), th_f32(1, c3, NULL)};
    CHECK_OK(th_infer(n, li, out, &err), err.msg);
    CHECK(out[0].rank == 4 && out[0].dims[0] == -1 && out[0].dims[1] == 3 &&
          out[0].dims[3] == 8);
    CHECK(out[1].rank == 1 && out[1].dims[0] == 3 && out[2].dtype == ONYX_DTYPE_F32);
    li[0].rank = -1;
    CHECK_OK(th_infer(n, li, out, &err), err.msg);
    CHECK(out[0].rank == -1 && out[1].rank == 1 && out[1].dims[0] == 3);
    li[0] = th_f32(4, (const int64_t[]){-1, -1, 8, 8}, NULL);
    li[1] = th_f32(1, (const int64_t[]){-1}, NULL);
    CHECK_OK(th_infer(n, li, out, &err), err.msg);
    CHECK(out[1].rank == 1 && out[1].dims[0] == 3);
    th_node_free(n);
}

/* ---- LayerNormalization ------------------------------------------------------------------- */

static void test_ln_conformance(void)
{
    static const struct {
        const char *name;
        bool has_axis;
        int64_t axis;
        float eps;
    } cases[] = {
        {"test_layer_normalization_2d_axis0", true, 0, 0},
        {"test_layer_normalization_2d_axis_negative_1", true, -1, 0},
        {"test_layer_normalization_3d_axis1_epsilon", true, 1, 0.1f},
        {"test_layer_normalization_3d_axis_negative_3_epsilon", true, -3, 0.1f},
        {"test_layer_normalization_4d_axis2", true, 2, 0},
        {"test_layer_normalization_4d_axis_negative_1", true, -1, 0},
        {"test_layer_normalization_default_axis", false, 0, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        th_node *n = th_node_new("LayerNormalization", 17, 3, 3);
        if (cases[i].has_axis)
            th_attr_int(n, "axis", cases[i].axis);
        if (cases[i].eps > 0)
            th_attr_float(n, "epsilon", cases[i].eps);
        run_conformance(n, cases[i].name, 3, 3, ONYX_MODE_GRAPH, 1e-5, 1e-4);
        th_node_free(n);
    }
}

/* Spec formula in double: rows = prod(dims[:axis]), D = prod(dims[axis:]); w and b indexed
 * through wi/bi (index into w/b for each of the D positions). */
static void ln_ref(const float *x, int64_t rows, int64_t D, const float *w, const int64_t *wi,
                   const float *b, const int64_t *bi, double eps, double *y, double *mean,
                   double *rstd)
{
    for (int64_t r = 0; r < rows; r++) {
        double s = 0;
        for (int64_t j = 0; j < D; j++)
            s += x[r * D + j];
        double m = s / (double)D;
        double v = 0;
        for (int64_t j = 0; j < D; j++)
            v += (x[r * D + j] - m) * (x[r * D + j] - m);
        v /= (double)D;
        double inv = 1.0 / sqrt(v + eps);
        for (int64_t j = 0; j < D; j++)
            y[r * D + j] = (x[r * D + j] - m) * inv * w[wi[j]] + (b ? b[bi[j]] : 0.0);
        mean[r] = m;
        rstd[r] = inv;
    }
}

static void test_ln_axes(void)
{
    enum { TOTAL = 2 * 3 * 4 * 5 };
    const int64_t dims[4] = {2, 3, 4, 5};
    float x[TOTAL];
    float w[TOTAL];
    float b[TOTAL];
    for (int i = 0; i < TOTAL; i++) {
        x[i] = th_frand(&lcg_state) * 5.0f + 1.0f;
        w[i] = th_frand(&lcg_state);
        b[i] = th_frand(&lcg_state);
    }
    int64_t ident[TOTAL];
    for (int i = 0; i < TOTAL; i++)
        ident[i] = i;
    double y[TOTAL];
    double mean[TOTAL];
    double rstd[TOTAL];
    for (int64_t a = -4; a < 4; a++) {
        for (int with_b = 0; with_b < 2; with_b++) {
            int axis = (int)(a < 0 ? a + 4 : a);
            int64_t rows = 1;
            for (int i = 0; i < axis; i++)
                rows *= dims[i];
            int64_t D = TOTAL / rows;
            ln_ref(x, rows, D, w, ident, with_b ? b : NULL, ident, 1e-5, y, mean, rstd);
            th_node *n = th_node_new("LayerNormalization", 17, with_b ? 3 : 2, 3);
            th_attr_int(n, "axis", a);
            onyx_tensor in[3] = {th_f32(4, dims, x), th_f32(4 - axis, dims + axis, w),
                                 th_f32(4 - axis, dims + axis, b)};
            onyx_error err = {0};
            onyx_tensor out[3];
            CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
            CHECK(out[1].rank == 4 && out[2].rank == 4 && out[1].dtype == ONYX_DTYPE_F32);
            for (int i = 0; i < 4; i++)
                CHECK(out[1].dims[i] == (i < axis ? dims[i] : 1) &&
                      out[2].dims[i] == out[1].dims[i]);
            const float *yv = out[0].data;
            const float *mv = out[1].data;
            const float *rv = out[2].data;
            int bad = 0;
            for (int i = 0; i < TOTAL; i++)
                bad += !(fabs(yv[i] - y[i]) <= 1e-5 + 1e-5 * fabs(y[i]));
            for (int64_t r = 0; r < rows; r++) {
                bad += !(fabs(mv[r] - mean[r]) <= 1e-6 + 1e-6 * fabs(mean[r]));
                bad += !(fabs(rv[r] - rstd[r]) <= 1e-6 + 1e-5 * fabs(rstd[r]));
            }
            CHECK(bad == 0);
            th_node_free(n);
        }
    }

    /* Scale and B broadcast within the normalised dims [4,5]: Scale [4,1], B [5]. Generic path. */
    {
        int64_t wi[20];
        int64_t bi[20];
        for (int j = 0; j < 20; j++) {
            wi[j] = j / 5;
            bi[j] = j % 5;
        }
        ln_ref(x, 6, 20, w, wi, b, bi, 1e-5, y, mean, rstd);
        th_node *n = th_node_new("LayerNormalization", 17, 3, 1);
        th_attr_int(n, "axis", 2);
        onyx_tensor in[3] = {th_f32(4, dims, x), th_f32(2, (const int64_t[]){4, 1}, w),
                             th_f32(1, (const int64_t[]){5}, b)};
        onyx_error err = {0};
        onyx_tensor out[1];
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        const float *yv = out[0].data;
        int bad = 0;
        for (int i = 0; i < TOTAL; i++)
            bad += !(fabs(yv[i] - y[i]) <= 1e-5 + 1e-5 * fabs(y[i]));
        CHECK(bad == 0);
        th_node_free(n);
    }

    /* float64 through the generic path, mean/rstd still float32. */
    {
        double xd[TOTAL];
        double wd[5];
        for (int i = 0; i < TOTAL; i++)
            xd[i] = x[i];
        for (int i = 0; i < 5; i++)
            wd[i] = w[i];
        float xf[TOTAL];
        for (int i = 0; i < TOTAL; i++)
            xf[i] = (float)xd[i];
        ln_ref(xf, 24, 5, w, ident, NULL, NULL, 1e-5, y, mean, rstd);
        th_node *n = th_node_new("LayerNormalization", 17, 2, 3);
        th_set_out_omitted(n, 1);
        onyx_tensor in[2] = {th_tensor(ONYX_DTYPE_F64, 4, dims, xd),
                             th_tensor(ONYX_DTYPE_F64, 1, (const int64_t[]){5}, wd)};
        onyx_error err = {0};
        onyx_tensor out[3];
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        CHECK(out[0].dtype == ONYX_DTYPE_F64 && out[2].dtype == ONYX_DTYPE_F32);
        CHECK(out[1].dtype == ONYX_DTYPE_UNDEFINED);
        const double *yv = out[0].data;
        const float *rv = out[2].data;
        int bad = 0;
        for (int i = 0; i < TOTAL; i++)
            bad += !(fabs(yv[i] - y[i]) <= 1e-9 + 1e-9 * fabs(y[i]));
        for (int r = 0; r < 24; r++)
            bad += !(fabs(rv[r] - rstd[r]) <= 1e-6 * fabs(rstd[r]));
        CHECK(bad == 0);
        th_node_free(n);
    }

    /* Hand values: x = [1, 2, 3, 4], w = 1, b = 0, eps 0: mean 2.5, var 1.25. */
    {
        const float xh[4] = {1, 2, 3, 4};
        const float wh[4] = {1, 1, 1, 1};
        th_node *n = th_node_new("LayerNormalization", 17, 2, 3);
        th_attr_float(n, "epsilon", 0.0f);
        onyx_tensor in[2] = {th_f32(2, (const int64_t[]){1, 4}, xh),
                             th_f32(1, (const int64_t[]){4}, wh)};
        onyx_error err = {0};
        onyx_tensor out[3];
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        const float *yv = out[0].data;
        double r = 1.0 / sqrt(1.25);
        CHECK_NEAR(yv[0], -1.5 * r);
        CHECK_NEAR(yv[3], 1.5 * r);
        CHECK_NEAR(((const float *)out[1].data)[0], 2.5);
        CHECK_NEAR(((const float *)out[2].data)[0], r);
        th_node_free(n);
    }
}

static void test_ln_errors_infer(void)
{
    onyx_error err = {0};
    onyx_tensor out[3];
    float buf[24] = {0};
    const int64_t dims[3] = {2, 3, 4};
    th_node *n = th_node_new("LayerNormalization", 17, 2, 1);
    th_attr_int(n, "axis", 3);
    onyx_tensor in[3] = {th_f32(3, dims, buf), th_f32(1, (const int64_t[]){4}, buf)};
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_SHAPE);
    CHECK_MSG(err.msg, "node \"test_node\" (LayerNormalization, opset 17)");
    CHECK_MSG(err.msg, "axis 3 is out of range for input X of shape [2,3,4] (expected -3 to 2)");
    th_node_free(n);

    n = th_node_new("LayerNormalization", 17, 2, 1);
    in[1] = th_f32(1, (const int64_t[]){3}, buf);
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_SHAPE);
    CHECK_MSG(err.msg,
              "input Scale has shape [3], expected [4] (the dims of X [2,3,4] from axis 2)");
    th_node_free(n);

    n = th_node_new("LayerNormalization", 17, 3, 1);
    th_attr_int(n, "axis", 1);
    in[1] = th_f32(2, (const int64_t[]){3, 4}, buf);
    in[2] = th_f32(3, (const int64_t[]){1, 3, 4}, buf);
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_SHAPE);
    CHECK_MSG(err.msg, "input B has shape [1,3,4], expected [3,4]");
    th_node_free(n);

    n = th_node_new("LayerNormalization", 17, 3, 1);
    in[1] = th_f32(1, (const int64_t[]){4}, buf);
    in[2] = th_tensor(ONYX_DTYPE_F64, 1, (const int64_t[]){4}, buf);
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_SHAPE);
    CHECK_MSG(err.msg, "input B has dtype float64, expected float32 (the dtype of input X)");
    th_node_free(n);

    n = th_node_new("LayerNormalization", 17, 2, 1);
    th_attr_int(n, "stash_type", 11);
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_UNSUPPORTED);
    CHECK_MSG(err.msg, "attribute stash_type is 11, but only 1 (float32) is supported");
    th_node_free(n);

    n = th_node_new("LayerNormalization", 17, 2, 1);
    th_attr_string(n, "epsilon", "small");
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_INVALID_MODEL);
    CHECK_MSG(err.msg, "attribute epsilon has type string, expected float");
    th_node_free(n);

    n = th_node_new("LayerNormalization", 17, 1, 1);
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_INVALID_MODEL);
    CHECK_MSG(err.msg, "has 1 inputs, expected 2 to 3");
    th_node_free(n);

    /* Load time: unknown batch and sequence dims. */
    n = th_node_new("LayerNormalization", 17, 3, 3);
    onyx_tensor li[3] = {th_f32(3, (const int64_t[]){-1, -1, 64}, NULL),
                         th_f32(1, (const int64_t[]){64}, NULL),
                         th_f32(1, (const int64_t[]){64}, NULL)};
    CHECK_OK(th_infer(n, li, out, &err), err.msg);
    CHECK(out[0].rank == 3 && out[0].dims[0] == -1 && out[0].dims[2] == 64);
    CHECK(out[1].rank == 3 && out[1].dims[0] == -1 && out[1].dims[1] == -1 &&
          out[1].dims[2] == 1 && out[2].dtype == ONYX_DTYPE_F32);
    li[0].rank = -1;
    CHECK_OK(th_infer(n, li, out, &err), err.msg);
    CHECK(out[0].rank == -1 && out[1].rank == -1 && out[1].dtype == ONYX_DTYPE_F32);
    th_node_free(n);
}

/* ---- backward ------------------------------------------------------------------------------ */

/* A forward and backward of node t by hand, as a training step runs them: infer, forward in
 * `mode` with impl->saved_size bytes of saved memory (when `with_saved`), then backward with
 * dout[0] = dy (the other outputs' dout NULL) into din. out[] gets malloc'd data (free with
 * pass_free); saved stays allocated for update_state. */
typedef struct pass {
    onyx_tensor out[5];
    void *saved;
    size_t saved_size;
} pass;

static void pass_run(th_node *t, onyx_mode mode, const onyx_tensor *in, bool with_saved,
                     const float *dy, onyx_tensor *din, pass *ps)
{
    onyx_node *n = th_onyx_node(t);
    onyx_error err = {0};
    memset(ps, 0, sizeof(*ps));
    CHECK_OK(th_infer(t, in, ps->out, &err), err.msg);
    for (int j = 0; j < n->n_out; j++)
        if (n->out[j] >= 0)
            ps->out[j].data = calloc(1, onyx_nbytes(&ps->out[j]) + 1);
    ps->saved_size = n->impl->saved_size(n, in, ps->out);
    ps->saved = with_saved && ps->saved_size ? calloc(1, ps->saved_size) : NULL;
    onyx_kctx ctx = {.mode = mode, .saved = ps->saved};
    n->impl->forward(n, &ctx, in, ps->out);
    onyx_tensor dout[5];
    for (int j = 0; j < n->n_out; j++) {
        dout[j] = ps->out[j];
        dout[j].data = NULL;
    }
    dout[0].data = (void *)(uintptr_t)dy;
    n->impl->backward(n, &ctx, in, ps->out, dout, din);
}

static void pass_free(pass *ps)
{
    for (int j = 0; j < 5; j++)
        free(ps->out[j].data);
    free(ps->saved);
}

/* din views of in[0..n_in) over the caller's buffers (NULL: no gradient wanted). */
static void set_din(onyx_tensor *din, const onyx_tensor *in, int n_in, float *const *bufs)
{
    for (int i = 0; i < n_in; i++) {
        din[i] = in[i];
        din[i].data = bufs[i];
    }
}

/*
 * By hand, X = [-1, 0, 1] as (N=3, C=1), scale 2, B 0.5, epsilon 0, dy = [1, 0, 0], every
 * gradient starting at 1 (accumulation).
 * Batch statistics: mean 0, var 2/3, rstd = sqrt(1.5), xhat = [-rstd, 0, rstd];
 *   sum(dy) = 1, sum(dy * xhat) = -rstd,
 *   dx = scale * rstd / 3 * (3 dy - 1 - xhat * (-rstd)) = 2 rstd / 3 * [0.5, -1, 0.5],
 *   dscale = -rstd, dB = 1.
 * Running statistics mean 0, var 1 (rstd 1): dx = dy * scale = [2, 0, 0], dscale = sum(dy * x)
 * = -1, dB = 1.
 */
static void test_bn_backward_hand(void)
{
    const float x[3] = {-1, 0, 1};
    const float scale[1] = {2};
    const float bias[1] = {0.5f};
    const float mean[1] = {0};
    const float var[1] = {1};
    const float dy[3] = {1, 0, 0};
    const double r = sqrt(1.5);
    for (int training = 0; training < 2; training++) {
        th_node *n = th_node_new("BatchNormalization", 15, 5, 1);
        th_attr_float(n, "epsilon", 0.0f);
        onyx_tensor in[5] = {th_f32(2, (int64_t[]){3, 1}, x), th_f32(1, (int64_t[]){1}, scale),
                             th_f32(1, (int64_t[]){1}, bias), th_f32(1, (int64_t[]){1}, mean),
                             th_f32(1, (int64_t[]){1}, var)};
        float dx[3] = {1, 1, 1};
        float ds[1] = {1};
        float db[1] = {1};
        onyx_tensor din[5];
        set_din(din, in, 5, (float *const[]){dx, ds, db, NULL, NULL});
        pass ps;
        pass_run(n, training ? ONYX_MODE_TRAIN : ONYX_MODE_INFER, in, true, dy, din, &ps);
        const double want_dx_t[3] = {1 + 2 * r / 3 * 0.5, 1 - 2 * r / 3, 1 + 2 * r / 3 * 0.5};
        const double want_dx_i[3] = {1 + 2, 1, 1};
        CHECK(th_close_f32(dx, training ? want_dx_t : want_dx_i, 3, 1e-6, 1e-6, "bn dx"));
        CHECK_NEAR(ds[0], training ? 1 - r : 1 - 1);
        CHECK_NEAR(db[0], 2);
        pass_free(&ps);
        th_node_free(n);
    }
    CHECK(onyx_op_find("", "BatchNormalization", 15)->impl->grad_inputs == 0x7u);
}

/* Finite differences w.r.t. X, scale and B, in every mode and for every layout of X. */
static void test_bn_grad_check(void)
{
    static const int64_t shapes[][4] = {{2, 3, 2, 2}, {4, 3, 0, 0}, {5, 0, 0, 0}, {3, 2, 5, 0}};
    static const int ranks[] = {4, 2, 1, 3};
    struct {
        int64_t opset;
        int n_out;
        onyx_mode mode;
        int training_mode; /* opset 14+ attribute; -1: absent */
    } variants[] = {
        {15, 1, ONYX_MODE_TRAIN, -1}, /* batch statistics whatever the model says */
        {15, 3, ONYX_MODE_TRAIN, -1}, /* ... with the running-statistics outputs */
        {15, 1, ONYX_MODE_INFER, 1},  /* running statistics whatever the model says */
        {15, 3, ONYX_MODE_GRAPH, 1},  /* the spec's training mode */
        {14, 1, ONYX_MODE_GRAPH, 0},  /* the spec's inference mode */
        {9, 5, ONYX_MODE_GRAPH, -1},  /* opset 9: training when more than Y is requested */
        {9, 1, ONYX_MODE_GRAPH, -1},  /* opset 9, Y only: inference */
        {6, 5, ONYX_MODE_TRAIN, -1},  /* opset 6 */
    };
    float x[60];
    float sc[3];
    float bi[3];
    float mean[3];
    float var[3];
    for (int i = 0; i < 60; i++)
        x[i] = th_frand(&lcg_state) * 2.0f + (float)(i % 3);
    for (int c = 0; c < 3; c++) {
        sc[c] = 0.5f + th_frand(&lcg_state);
        bi[c] = th_frand(&lcg_state);
        mean[c] = th_frand(&lcg_state);
        var[c] = 0.75f + 0.5f * th_frand(&lcg_state);
    }
    int runs = 0;
    int bad = 0;
    for (size_t si = 0; si < sizeof(ranks) / sizeof(ranks[0]); si++) {
        int64_t C = ranks[si] >= 2 ? shapes[si][1] : 1;
        for (size_t v = 0; v < sizeof(variants) / sizeof(variants[0]); v++) {
            th_node *n = th_node_new("BatchNormalization", variants[v].opset, 5, variants[v].n_out);
            if (variants[v].training_mode >= 0)
                th_attr_int(n, "training_mode", variants[v].training_mode);
            onyx_tensor in[5] = {th_f32(ranks[si], shapes[si], x), th_f32(1, &C, sc),
                                 th_f32(1, &C, bi), th_f32(1, &C, mean), th_f32(1, &C, var)};
            /* out_mask 1: no gradient flows back from the statistics outputs */
            int res = th_grad_check(n, variants[v].mode, in, 0x7u, 0x1u, 1e-2, 1e-3, 1e-2, NULL);
            if (res != 0)
                fprintf(stderr, "batchnorm grad check: rank %d, variant %zu: %d\n", ranks[si], v,
                        res);
            bad += res != 0;
            runs++;
            th_node_free(n);
        }
    }
    printf("batchnorm grad checks: %d, failed %d\n", runs, bad);
    CHECK(bad == 0);
}

/* The saved statistics and update_state: after a training forward the new running statistics
 * are exactly forward's outputs 1 and 2; outside training they stay as they were. Backward
 * without saved memory computes the batch statistics again and gives the same gradients. */
static void test_bn_update_state(void)
{
    const int64_t dims[3] = {BN_N, BN_C, BN_S};
    const int64_t cd[1] = {BN_C};
    onyx_tensor in[5] = {th_f32(3, dims, bx), th_f32(1, cd, bscale), th_f32(1, cd, bbias),
                         th_f32(1, cd, bmean), th_f32(1, cd, bvar)};
    enum { NX = BN_N * BN_C * BN_S };
    float dy[NX];
    for (int i = 0; i < NX; i++)
        dy[i] = th_frand(&lcg_state);
    double yref[NX];
    double stats[4 * BN_C];
    bn_ref(bx, BN_N, BN_C, BN_S, bscale, bbias, bmean, bvar, 1e-5, 0.8, true, yref, stats);

    for (int mode = 0; mode < 2; mode++) {
        bool training = mode == 1;
        th_node *n = th_node_new("BatchNormalization", 15, 5, 3);
        th_attr_float(n, "momentum", 0.8f);
        onyx_node *node = th_onyx_node(n);
        float dx[NX] = {0};
        onyx_tensor din[5];
        set_din(din, in, 5, (float *const[]){dx, NULL, NULL, NULL, NULL});
        pass ps;
        onyx_mode m = training ? ONYX_MODE_TRAIN : ONYX_MODE_INFER;
        pass_run(n, m, in, true, dy, din, &ps);
        CHECK(ps.saved_size == 2 * BN_C * sizeof(double));
        const double *sv = ps.saved;
        for (int c = 0; c < BN_C; c++) {
            CHECK_NEAR_TOL(sv[c], training ? stats[2 * BN_C + c] : bmean[c], 1e-9, 1e-9);
            CHECK_NEAR_TOL(sv[BN_C + c], training ? stats[3 * BN_C + c] : bvar[c], 1e-9, 1e-9);
        }
        float new_mean[BN_C];
        float new_var[BN_C];
        onyx_tensor state[5];
        set_din(state, in, 5, (float *const[]){NULL, NULL, NULL, new_mean, new_var});
        onyx_kctx ctx = {.mode = m, .saved = ps.saved};
        node->impl->update_state(node, &ctx, in, state);
        CHECK(memcmp(new_mean, ps.out[1].data, sizeof new_mean) == 0);
        CHECK(memcmp(new_var, ps.out[2].data, sizeof new_var) == 0);
        for (int c = 0; c < BN_C; c++) {
            CHECK_NEAR(new_mean[c], training ? stats[c] : bmean[c]);
            CHECK_NEAR(new_var[c], training ? stats[BN_C + c] : bvar[c]);
        }
        /* only the state asked for is written */
        new_mean[0] = 1234.0f;
        state[3].data = NULL;
        node->impl->update_state(node, &ctx, in, state);
        CHECK(new_mean[0] == 1234.0f);

        /* no saved memory: the same dx */
        float dx2[NX] = {0};
        set_din(din, in, 5, (float *const[]){dx2, NULL, NULL, NULL, NULL});
        pass ps2;
        pass_run(n, m, in, false, dy, din, &ps2);
        CHECK(memcmp(dx, dx2, sizeof dx) == 0);
        pass_free(&ps2);
        pass_free(&ps);
        th_node_free(n);
    }
}

/*
 * By hand, X = [1, 2, 3] (one row), Scale 1, B 0, epsilon 0, dy = [1, 0, 0], every gradient
 * starting at 1: mean 2, rstd = sqrt(1.5), xhat = [-rstd, 0, rstd], dxhat = dy,
 *   dx = rstd * (dxhat - 1/3 - xhat * (-rstd / 3)) = rstd * [1/6, -1/3, 1/6],
 *   dScale = dy * xhat = [-rstd, 0, 0], dB = dy.
 */
static void test_ln_backward_hand(void)
{
    const float x[3] = {1, 2, 3};
    const float w[3] = {1, 1, 1};
    const float b[3] = {0, 0, 0};
    const float dy[3] = {1, 0, 0};
    const double r = sqrt(1.5);
    th_node *n = th_node_new("LayerNormalization", 17, 3, 1);
    th_attr_float(n, "epsilon", 0.0f);
    onyx_tensor in[3] = {th_f32(2, (int64_t[]){1, 3}, x), th_f32(1, (int64_t[]){3}, w),
                         th_f32(1, (int64_t[]){3}, b)};
    float dx[3] = {1, 1, 1};
    float dw[3] = {1, 1, 1};
    float db[3] = {1, 1, 1};
    onyx_tensor din[3];
    set_din(din, in, 3, (float *const[]){dx, dw, db});
    pass ps;
    pass_run(n, ONYX_MODE_TRAIN, in, true, dy, din, &ps);
    CHECK(th_close_f32(dx, (const double[]){1 + r / 6, 1 - r / 3, 1 + r / 6}, 3, 1e-6, 1e-6,
                       "ln dx"));
    CHECK(th_close_f32(dw, (const double[]){1 - r, 1, 1}, 3, 1e-6, 1e-6, "ln dScale"));
    CHECK(th_close_f32(db, (const double[]){2, 1, 1}, 3, 1e-6, 1e-6, "ln dB"));
    pass_free(&ps);
    th_node_free(n);
    CHECK(onyx_op_find("", "LayerNormalization", 17)->impl->grad_inputs == 0x7u);
}

/* Finite differences over every axis, with and without B, with the Mean/InvStdDev outputs
 * (backward reads them) and without (backward reads the saved memory), and with Scale and B
 * broadcast within the normalised dims. */
static void test_ln_grad_check(void)
{
    const int64_t dims[3] = {2, 3, 4};
    float x[24];
    float w[24];
    float b[24];
    for (int i = 0; i < 24; i++) {
        x[i] = th_frand(&lcg_state) * 2.0f + 0.5f;
        w[i] = 0.5f + th_frand(&lcg_state);
        b[i] = th_frand(&lcg_state);
    }
    int runs = 0;
    int bad = 0;
    for (int64_t a = -3; a < 3; a++) {
        int axis = (int)(a < 0 ? a + 3 : a);
        for (int v = 0; v < 4; v++) {
            bool with_b = v & 1;
            bool with_stats = v & 2;
            th_node *n = th_node_new("LayerNormalization", 17, with_b ? 3 : 2, 3);
            th_attr_int(n, "axis", a);
            if (!with_stats) {
                th_set_out_omitted(n, 1);
                th_set_out_omitted(n, 2);
            }
            onyx_tensor in[3] = {th_f32(3, dims, x), th_f32(3 - axis, dims + axis, w),
                                 th_f32(3 - axis, dims + axis, b)};
            int res = th_grad_check(n, ONYX_MODE_TRAIN, in, 0x7u, 0x1u, 1e-2, 1e-3, 1e-2, NULL);
            if (res != 0)
                fprintf(stderr, "layernorm grad check: axis %lld, B %d, stats %d: %d\n",
                        (long long)a, with_b, with_stats, res);
            bad += res != 0;
            runs++;
            th_node_free(n);
        }
    }
    /* Scale and B broadcast within the normalised dims [3, 4] (axis 1). */
    static const struct {
        int wr;
        int64_t wd[2];
        int br;
        int64_t bd[2];
    } bc[] = {{1, {4, 0}, 1, {4, 0}},
              {2, {1, 4}, 2, {3, 1}},
              {2, {3, 1}, 0, {0, 0}},
              {0, {0, 0}, 2, {3, 4}},
              {1, {1, 0}, 2, {1, 1}}};
    for (size_t i = 0; i < sizeof(bc) / sizeof(bc[0]); i++) {
        for (int with_stats = 0; with_stats < 2; with_stats++) {
            th_node *n = th_node_new("LayerNormalization", 17, 3, with_stats ? 3 : 1);
            th_attr_int(n, "axis", 1);
            onyx_tensor in[3] = {th_f32(3, dims, x), th_f32(bc[i].wr, bc[i].wd, w),
                                 th_f32(bc[i].br, bc[i].bd, b)};
            int res = th_grad_check(n, ONYX_MODE_TRAIN, in, 0x7u, 0x1u, 1e-2, 1e-3, 1e-2, NULL);
            if (res != 0)
                fprintf(stderr, "layernorm grad check: broadcast case %zu: %d\n", i, res);
            bad += res != 0;
            runs++;
            th_node_free(n);
        }
    }
    printf("layernorm grad checks: %d, failed %d\n", runs, bad);
    CHECK(bad == 0);
}

/*
 * The strided kernel (Scale/B broadcast) against the contiguous one: Scale [1,4] and B [3,1]
 * over normalised dims [3,4] give the dx of Scale and B expanded to [3,4], and dScale/dB equal
 * to the expanded gradients summed over the broadcast dim. Also checks saved_size, and that
 * the saved path, the output path and no saved memory at all give the same gradients.
 */
static void test_ln_strided_vs_contiguous(void)
{
    enum { R = 5, D0 = 3, D1 = 4, NX = R * D0 * D1 };
    const int64_t dims[3] = {R, D0, D1};
    float x[NX];
    float dy[NX];
    float w4[D1];
    float b3[D0];
    float wf[D0 * D1];
    float bf[D0 * D1];
    for (int i = 0; i < NX; i++) {
        x[i] = th_frand(&lcg_state) * 3.0f;
        dy[i] = th_frand(&lcg_state);
    }
    for (int j = 0; j < D1; j++)
        w4[j] = 0.5f + th_frand(&lcg_state);
    for (int i = 0; i < D0; i++)
        b3[i] = th_frand(&lcg_state);
    for (int i = 0; i < D0; i++)
        for (int j = 0; j < D1; j++) {
            wf[i * D1 + j] = w4[j];
            bf[i * D1 + j] = b3[i];
        }
    /* contiguous, with the statistics outputs */
    th_node *nf = th_node_new("LayerNormalization", 17, 3, 3);
    th_attr_int(nf, "axis", 1);
    onyx_tensor inf[3] = {th_f32(3, dims, x), th_f32(2, dims + 1, wf), th_f32(2, dims + 1, bf)};
    float dxf[NX] = {0};
    float dwf[D0 * D1] = {0};
    float dbf[D0 * D1] = {0};
    onyx_tensor din[3];
    set_din(din, inf, 3, (float *const[]){dxf, dwf, dbf});
    pass ps;
    pass_run(nf, ONYX_MODE_TRAIN, inf, true, dy, din, &ps);
    CHECK(ps.saved_size == 0);
    pass_free(&ps);
    /* broadcast, statistics omitted: saved memory */
    th_node *nb = th_node_new("LayerNormalization", 17, 3, 1);
    th_attr_int(nb, "axis", 1);
    onyx_tensor inb[3] = {th_f32(3, dims, x), th_f32(2, (int64_t[]){1, D1}, w4),
                          th_f32(2, (int64_t[]){D0, 1}, b3)};
    float dxb[NX] = {0};
    float dwb[D1] = {0};
    float dbb[D0] = {0};
    set_din(din, inb, 3, (float *const[]){dxb, dwb, dbb});
    pass_run(nb, ONYX_MODE_TRAIN, inb, true, dy, din, &ps);
    CHECK(ps.saved_size == 2 * R * sizeof(float));
    pass_free(&ps);
    double want[NX];
    for (int i = 0; i < NX; i++)
        want[i] = dxf[i];
    CHECK(th_close_f32(dxb, want, NX, 1e-6, 1e-5, "ln strided dx"));
    double wdw[D1] = {0};
    double wdb[D0] = {0};
    for (int i = 0; i < D0; i++)
        for (int j = 0; j < D1; j++) {
            wdw[j] += dwf[i * D1 + j];
            wdb[i] += dbf[i * D1 + j];
        }
    CHECK(th_close_f32(dwb, wdw, D1, 1e-5, 1e-5, "ln strided dScale"));
    CHECK(th_close_f32(dbb, wdb, D0, 1e-5, 1e-5, "ln strided dB"));

    /* contiguous without statistics outputs: saved path, then no saved memory at all */
    for (int with_saved = 0; with_saved < 2; with_saved++) {
        th_node *ns = th_node_new("LayerNormalization", 17, 3, 1);
        th_attr_int(ns, "axis", 1);
        float dx2[NX] = {0};
        float dw2[D0 * D1] = {0};
        float db2[D0 * D1] = {0};
        set_din(din, inf, 3, (float *const[]){dx2, dw2, db2});
        pass_run(ns, ONYX_MODE_TRAIN, inf, with_saved, dy, din, &ps);
        CHECK(memcmp(dx2, dxf, sizeof dx2) == 0);
        CHECK(memcmp(dw2, dwf, sizeof dw2) == 0);
        CHECK(memcmp(db2, dbf, sizeof db2) == 0);
        pass_free(&ps);
        th_node_free(ns);
    }
    th_node_free(nf);
    th_node_free(nb);
}

int main(void)
{
    test_bn_conformance();
    test_bn_modes();
    test_bn_shapes_dtypes();
    test_bn_errors_infer();
    test_ln_conformance();
    test_ln_axes();
    test_ln_errors_infer();
    test_bn_backward_hand();
    test_bn_grad_check();
    test_bn_update_state();
    test_ln_backward_hand();
    test_ln_grad_check();
    test_ln_strided_vs_contiguous();
    return check_report();
}
