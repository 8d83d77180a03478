/* test_norm.c — BatchNormalization (modes, opsets) and LayerNormalization, against double
 * references written from the spec formulas and against the ONNX conformance data. */
#include "check.h"
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

int main(void)
{
    test_bn_conformance();
    test_bn_modes();
    test_bn_shapes_dtypes();
    test_bn_errors_infer();
    test_ln_conformance();
    test_ln_axes();
    test_ln_errors_infer();
    return check_report();
}
