/* test_softmax.c — Softmax and LogSoftmax, both opset behaviours, against a double reference;
 * backward by finite differences and by hand. */
#include "check.h"
#include "grad_check.h"
#include "op_harness.h"

#include <stdint.h>
#include <stdlib.h>

static uint64_t lcg_state = 0x853c49e6748fea9bu; /* th_frand's */

/* Deterministic values in [-4, 4). */
static float frand(void)
{
    return th_frand(&lcg_state) * 4.0f;
}

static void unravel(int64_t e, int rank, const int64_t *dims, int64_t *coord)
{
    for (int i = rank - 1; i >= 0; i--) {
        coord[i] = e % dims[i];
        e /= dims[i];
    }
}

/*
 * The spec formula taken literally: element e's group is every element whose coordinates agree
 * with e's on the dims that are not reduced (opset 13: all but `axis`; opsets 1/11: those
 * before `axis`). y[e] = exp(x[e]) / sum_group exp(x), computed stably in double.
 */
static void softmax_ref(const float *x, double *y, int rank, const int64_t *dims, int axis,
                        bool legacy, bool log_out)
{
    int64_t total = 1;
    for (int i = 0; i < rank; i++)
        total *= dims[i];
    int64_t ce[ONYX_MAX_RANK];
    int64_t cf[ONYX_MAX_RANK];
    for (int64_t e = 0; e < total; e++) {
        unravel(e, rank, dims, ce);
        double m = -INFINITY;
        double s = 0;
        for (int pass = 0; pass < 2; pass++) {
            for (int64_t f = 0; f < total; f++) {
                unravel(f, rank, dims, cf);
                bool same = true;
                for (int i = 0; i < rank && same; i++) {
                    bool reduced = legacy ? i >= axis : i == axis;
                    if (!reduced && ce[i] != cf[i])
                        same = false;
                }
                if (!same)
                    continue;
                if (pass == 0)
                    m = x[f] > m ? x[f] : m;
                else
                    s += exp((double)x[f] - m);
            }
        }
        y[e] = log_out ? (double)x[e] - m - log(s) : exp((double)x[e] - m) / s;
    }
}

/* Runs op at opset with the given axis attribute (has_axis false: default) and compares. */
static void check_case(const char *op, int64_t opset, int rank, const int64_t *dims, bool has_axis,
                       int64_t axis)
{
    onyx_tensor t = th_f32(rank, dims, NULL);
    size_t total = (size_t)onyx_numel(&t);
    float *x = malloc(sizeof(float) * (total + 1));
    double *want = malloc(sizeof(double) * (total + 1));
    for (size_t i = 0; i < total; i++)
        x[i] = frand();
    t.data = x;
    int64_t def_axis = opset >= 13 ? -1 : 1;
    int64_t a = has_axis ? axis : def_axis;
    int norm_axis = (int)(a < 0 ? a + rank : a);
    bool log_out = strcmp(op, "LogSoftmax") == 0;
    softmax_ref(x, want, rank, dims, norm_axis, opset < 13, log_out);

    th_node *n = th_node_new(op, opset, 1, 1);
    if (has_axis)
        th_attr_int(n, "axis", axis);
    onyx_error err = {0};
    onyx_tensor out[1];
    CHECK_OK(th_run(n, ONYX_MODE_INFER, &t, out, &err), err.msg);
    CHECK(out[0].rank == rank && out[0].dtype == ONYX_DTYPE_F32);
    const float *y = out[0].data;
    int bad = 0;
    for (size_t i = 0; i < total; i++)
        if (!(fabs(y[i] - want[i]) <= 1e-6 + 1e-5 * fabs(want[i])))
            bad++;
    if (bad)
        fprintf(stderr, "%s opset %lld axis %lld: %d of %zu elements differ\n", op,
                (long long)opset, (long long)a, bad, total);
    CHECK(bad == 0);
    th_node_free(n);
    free(x);
    free(want);
}

static void test_every_axis(void)
{
    static const char *ops[] = {"Softmax", "LogSoftmax"};
    static const int64_t opsets[] = {1, 11, 13};
    const int64_t d3[3] = {3, 4, 5};
    for (int o = 0; o < 2; o++) {
        for (int v = 0; v < 3; v++) {
            check_case(ops[o], opsets[v], 3, d3, false, 0); /* default axis */
            for (int64_t a = -3; a < 3; a++)
                check_case(ops[o], opsets[v], 3, d3, true, a);
        }
        /* Inner dim longer than one chunk of the strided kernel. */
        check_case(ops[o], 13, 3, (const int64_t[]){2, 3, 300}, true, 1);
        check_case(ops[o], 13, 3, (const int64_t[]){2, 3, 300}, true, 0);
        check_case(ops[o], 13, 1, (const int64_t[]){7}, false, 0);
        check_case(ops[o], 11, 4, (const int64_t[]){2, 3, 2, 2}, true, 2);
        check_case(ops[o], 13, 4, (const int64_t[]){2, 3, 2, 2}, true, 2);
    }
}

static void test_hand_values(void)
{
    onyx_error err = {0};
    onyx_tensor out[1];
    /* test_softmax_example: [-1, 0, 1] */
    const float ex[3] = {-1, 0, 1};
    th_node *n = th_node_new("Softmax", 13, 1, 1);
    onyx_tensor in = th_f32(2, (int64_t[]){1, 3}, ex);
    CHECK_OK(th_run(n, ONYX_MODE_INFER, &in, out, &err), err.msg);
    const float *y = out[0].data;
    CHECK_NEAR(y[0], 0.09003058);
    CHECK_NEAR(y[1], 0.24472848);
    CHECK_NEAR(y[2], 0.66524094);
    th_node_free(n);

    /* test_softmax_large_number: rows [0 1 2 3] and [10000 10001 10002 10003] give the same
     * result; a naive exp would overflow the second row to inf/inf = NaN. */
    const float big[8] = {0, 1, 2, 3, 10000, 10001, 10002, 10003};
    const double sm[4] = {0.032058604, 0.087144315, 0.23688282, 0.64391426};
    const double lsm[4] = {-3.4401896, -2.4401896, -1.4401896, -0.44018966};
    for (int log_out = 0; log_out < 2; log_out++) {
        for (int v = 0; v < 2; v++) {
            n = th_node_new(log_out ? "LogSoftmax" : "Softmax", v ? 13 : 11, 1, 1);
            in = th_f32(2, (int64_t[]){2, 4}, big);
            CHECK_OK(th_run(n, ONYX_MODE_INFER, &in, out, &err), err.msg);
            y = out[0].data;
            for (int i = 0; i < 8; i++)
                CHECK_NEAR(y[i], log_out ? lsm[i % 4] : sm[i % 4]);
            th_node_free(n);
        }
    }
    /* Large magnitudes along a strided axis too. */
    const float bigt[8] = {0, 10000, 1, 10001, 2, 10002, 3, 10003}; /* [4,2], axis 0 */
    n = th_node_new("LogSoftmax", 13, 1, 1);
    th_attr_int(n, "axis", 0);
    in = th_f32(2, (int64_t[]){4, 2}, bigt);
    CHECK_OK(th_run(n, ONYX_MODE_INFER, &in, out, &err), err.msg);
    y = out[0].data;
    for (int i = 0; i < 8; i++)
        CHECK_NEAR(y[i], lsm[i / 2]);
    th_node_free(n);

    /* The opset difference in one case: [2,2,2] with the default axis. Opset 11 normalises
     * over all 4 trailing elements of each batch item, opset 13 over pairs. */
    const float x8[8] = {0, 0, 0, 0, 1, 1, 1, 1};
    n = th_node_new("Softmax", 11, 1, 1);
    in = th_f32(3, (int64_t[]){2, 2, 2}, x8);
    CHECK_OK(th_run(n, ONYX_MODE_INFER, &in, out, &err), err.msg);
    y = out[0].data;
    for (int i = 0; i < 8; i++)
        CHECK_NEAR(y[i], 0.25);
    th_node_free(n);
    n = th_node_new("Softmax", 13, 1, 1);
    CHECK_OK(th_run(n, ONYX_MODE_INFER, &in, out, &err), err.msg);
    y = out[0].data;
    for (int i = 0; i < 8; i++)
        CHECK_NEAR(y[i], 0.5);
    th_node_free(n);
}

static void test_other_dtypes(void)
{
    onyx_error err = {0};
    onyx_tensor out[1];
    const double x[6] = {1, 2, 3, 1000, 1000, 1000};
    th_node *n = th_node_new("Softmax", 13, 1, 1);
    onyx_tensor in = th_tensor(ONYX_DTYPE_F64, 2, (int64_t[]){2, 3}, x);
    CHECK_OK(th_run(n, ONYX_MODE_INFER, &in, out, &err), err.msg);
    CHECK(out[0].dtype == ONYX_DTYPE_F64);
    const double *y = out[0].data;
    double s = exp(1.0) + exp(2.0) + exp(3.0);
    CHECK_NEAR(y[0], exp(1.0) / s);
    CHECK_NEAR(y[2], exp(3.0) / s);
    CHECK_NEAR(y[4], 1.0 / 3.0);
    th_node_free(n);

    /* float16: [0, ln 3] -> [0.25, 0.75] exactly representable */
    uint16_t h[2] = {onyx_f32_to_f16(0.0f), onyx_f32_to_f16((float)log(3.0))};
    n = th_node_new("LogSoftmax", 13, 1, 1);
    in = th_tensor(ONYX_DTYPE_F16, 1, (int64_t[]){2}, h);
    CHECK_OK(th_run(n, ONYX_MODE_INFER, &in, out, &err), err.msg);
    CHECK(out[0].dtype == ONYX_DTYPE_F16);
    const uint16_t *yh = out[0].data;
    CHECK_NEAR_TOL(onyx_f16_to_f32(yh[0]), log(0.25), 2e-3, 0);
    CHECK_NEAR_TOL(onyx_f16_to_f32(yh[1]), log(0.75), 2e-3, 0);
    th_node_free(n);
}

static void test_errors_and_infer(void)
{
    onyx_error err = {0};
    onyx_tensor out[1];
    const float x[6] = {0};

    th_node *n = th_node_new("Softmax", 13, 1, 1);
    th_attr_int(n, "axis", 3);
    onyx_tensor in = th_f32(3, (int64_t[]){1, 2, 3}, x);
    CHECK(th_run(n, ONYX_MODE_INFER, &in, out, &err) == ONYX_ERR_SHAPE);
    CHECK_MSG(err.msg, "node \"test_node\" (Softmax, opset 13)");
    CHECK_MSG(err.msg, "axis 3 is out of range for input of shape [1,2,3] (expected -3 to 2)");
    th_node_free(n);

    n = th_node_new("LogSoftmax", 11, 1, 1);
    th_attr_int(n, "axis", -4);
    CHECK(th_run(n, ONYX_MODE_INFER, &in, out, &err) == ONYX_ERR_SHAPE);
    CHECK_MSG(err.msg, "(LogSoftmax, opset 11): axis -4 is out of range");
    th_node_free(n);

    /* Opset 11's default axis 1 does not fit a 1-D input. */
    n = th_node_new("Softmax", 11, 1, 1);
    in = th_f32(1, (int64_t[]){6}, x);
    CHECK(th_run(n, ONYX_MODE_INFER, &in, out, &err) == ONYX_ERR_SHAPE);
    CHECK_MSG(err.msg, "axis 1 is out of range for input of shape [6]");
    th_node_free(n);

    n = th_node_new("Softmax", 13, 1, 1);
    in = th_f32(0, NULL, x);
    CHECK(th_run(n, ONYX_MODE_INFER, &in, out, &err) == ONYX_ERR_SHAPE);
    CHECK_MSG(err.msg, "input is a scalar, expected rank >= 1");
    th_node_free(n);

    n = th_node_new("Softmax", 13, 1, 1);
    th_attr_float(n, "axis", 1.0f);
    in = th_f32(2, (int64_t[]){2, 3}, x);
    CHECK(th_run(n, ONYX_MODE_INFER, &in, out, &err) == ONYX_ERR_INVALID_MODEL);
    CHECK_MSG(err.msg, "attribute axis has type float, expected int");
    th_node_free(n);

    n = th_node_new("Softmax", 13, 1, 1);
    in = th_tensor(ONYX_DTYPE_I32, 2, (int64_t[]){2, 3}, x);
    CHECK(th_run(n, ONYX_MODE_INFER, &in, out, &err) == ONYX_ERR_UNSUPPORTED);
    CHECK_MSG(err.msg, "input input has dtype int32, expected one of: float16, bfloat16, float32, "
                       "float64");
    th_node_free(n);

    n = th_node_new("Softmax", 13, 1, 2);
    in = th_f32(2, (int64_t[]){2, 3}, x);
    onyx_tensor out2[2];
    CHECK(th_run(n, ONYX_MODE_INFER, &in, out2, &err) == ONYX_ERR_INVALID_MODEL);
    CHECK_MSG(err.msg, "has 2 outputs, expected 1");
    th_node_free(n);

    /* Load time: unknown dims pass through; unknown rank stays unknown. */
    n = th_node_new("Softmax", 13, 1, 1);
    in = th_f32(3, (int64_t[]){-1, -1, 10}, NULL);
    CHECK_OK(th_infer(n, &in, out, &err), err.msg);
    CHECK(out[0].rank == 3 && out[0].dims[0] == -1 && out[0].dims[1] == -1 &&
          out[0].dims[2] == 10 && out[0].dtype == ONYX_DTYPE_F32);
    in.rank = -1;
    CHECK_OK(th_infer(n, &in, out, &err), err.msg);
    CHECK(out[0].rank == -1 && out[0].dtype == ONYX_DTYPE_F32);
    th_node_free(n);
}

/* ---- backward ------------------------------------------------------------------------------ */

/* Finite differences of op at opset over x of the given shape (values in [-4, 4)). */
static int grad_case(const char *op, int64_t opset, int rank, const int64_t *dims, bool has_axis,
                     int64_t axis)
{
    onyx_tensor t = th_f32(rank, dims, NULL);
    size_t total = (size_t)onyx_numel(&t);
    float *x = malloc(sizeof(float) * (total + 1));
    for (size_t i = 0; i < total; i++)
        x[i] = frand();
    t.data = x;
    th_node *n = th_node_new(op, opset, 1, 1);
    if (has_axis)
        th_attr_int(n, "axis", axis);
    int r = th_grad_check_default(n, ONYX_MODE_TRAIN, &t, 0x1u);
    if (r != 0)
        fprintf(stderr, "%s opset %lld axis %lld (given: %d): grad check %d\n", op,
                (long long)opset, (long long)axis, has_axis, r);
    th_node_free(n);
    free(x);
    return r;
}

static void test_grad_every_axis(void)
{
    static const char *ops[] = {"Softmax", "LogSoftmax"};
    static const int64_t opsets[] = {1, 11, 13};
    const int64_t d3[3] = {2, 3, 4};
    int runs = 0;
    int bad = 0;
    for (int o = 0; o < 2; o++) {
        for (int v = 0; v < 3; v++) {
            bad += grad_case(ops[o], opsets[v], 3, d3, false, 0) != 0;
            runs++;
            for (int64_t a = -3; a < 3; a++) {
                bad += grad_case(ops[o], opsets[v], 3, d3, true, a) != 0;
                runs++;
            }
        }
        /* 1-D; inner dim longer than one chunk of the strided kernels; rank 4 */
        bad += grad_case(ops[o], 13, 1, (const int64_t[]){7}, false, 0) != 0;
        bad += grad_case(ops[o], 13, 3, (const int64_t[]){2, 3, 300}, true, 1) != 0;
        bad += grad_case(ops[o], 13, 2, (const int64_t[]){3, 260}, true, 0) != 0;
        bad += grad_case(ops[o], 11, 4, (const int64_t[]){2, 3, 2, 2}, true, 2) != 0;
        bad += grad_case(ops[o], 13, 4, (const int64_t[]){2, 3, 2, 2}, true, 2) != 0;
        runs += 5;
    }
    printf("softmax grad checks: %d, failed %d\n", runs, bad);
    CHECK(bad == 0);
    CHECK(onyx_op_find("", "Softmax", 13)->impl->grad_inputs == 0x1u);
    CHECK(onyx_op_find("", "LogSoftmax", 1)->impl->grad_inputs == 0x1u);
}

/*
 * By hand, for x = [-1, 0, 1] (y = softmax(x) = [0.0900306, 0.2447285, 0.6652410]) and
 * dy = [1, 0, 0], with dx starting at 1 (accumulation):
 *   Softmax:    dx = y * (dy - y0)    = [y0 (1 - y0), -y1 y0, -y2 y0]
 *   LogSoftmax: dx = dy - y * sum(dy) = [1 - y0, -y1, -y2]
 * once along a contiguous axis ([1,3], axis 1) and once along a strided one ([3,2], axis 0, both
 * columns the same).
 */
static void test_grad_hand(void)
{
    const double y0 = 0.09003057317038046;
    const double y1 = 0.24472847105479767;
    const double y2 = 0.6652409557748219;
    const double want_sm[3] = {1 + y0 * (1 - y0), 1 - y1 * y0, 1 - y2 * y0};
    const double want_lsm[3] = {1 + 1 - y0, 1 - y1, 1 - y2};
    const float x[3] = {-1, 0, 1};
    const float dy[3] = {1, 0, 0};
    const float xt[6] = {-1, -1, 0, 0, 1, 1};
    const float dyt[6] = {1, 1, 0, 0, 0, 0};
    for (int log_out = 0; log_out < 2; log_out++) {
        for (int strided = 0; strided < 2; strided++) {
            onyx_error err = {0};
            onyx_tensor out[1];
            th_node *n = th_node_new(log_out ? "LogSoftmax" : "Softmax", 13, 1, 1);
            th_attr_int(n, "axis", strided ? 0 : 1);
            onyx_tensor in =
                strided ? th_f32(2, (int64_t[]){3, 2}, xt) : th_f32(2, (int64_t[]){1, 3}, x);
            CHECK_OK(th_run(n, ONYX_MODE_TRAIN, &in, out, &err), err.msg);
            float dx[6] = {1, 1, 1, 1, 1, 1};
            onyx_tensor dout = out[0];
            dout.data = (void *)(uintptr_t)(strided ? dyt : dy);
            onyx_tensor din = in;
            din.data = dx;
            onyx_node *node = th_onyx_node(n);
            onyx_kctx ctx = {.mode = ONYX_MODE_TRAIN};
            node->impl->backward(node, &ctx, &in, out, &dout, &din);
            const double *want = log_out ? want_lsm : want_sm;
            double w6[6];
            for (int i = 0; i < 6; i++)
                w6[i] = strided ? want[i / 2] : want[i % 3];
            CHECK(th_close_f32(dx, w6, strided ? 6 : 3, 1e-6, 1e-6, "softmax dx"));
            /* no gradient wanted: nothing happens */
            din.data = NULL;
            node->impl->backward(node, &ctx, &in, out, &dout, &din);
            th_node_free(n);
        }
    }
}

int main(void)
{
    test_every_axis();
    test_hand_values();
    test_other_dtypes();
    test_errors_and_infer();
    test_grad_every_axis();
    test_grad_hand();
    return check_report();
}
