/* test_loss.c — ops/loss.c: SoftmaxCrossEntropyLoss and NegativeLogLikelihoodLoss (opsets 12,
 * 13), and the ai.onyx losses MeanSquaredError, L1Loss, BCEWithLogitsLoss. Forward values by
 * hand and against a double-precision reference that follows the spec (and the ONNX reference
 * implementation) literally; backward against finite differences (tests/grad_check.h) and by
 * hand; the official conformance cases through the harness; errors and load-time inference. */
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
static int grad_checks; /* gradient checks run, for the summary */
static uint64_t lcg = 0x2545f4914f6cdd1du;

#define CHECK_ERR(expr, code, sub) TH_CHECK_ERR(err, "", expr, code, sub)

/* th_grad_check_default that counts; 0 mismatches expected. */
#define CHECK_GRAD(t, in, mask)                                                                    \
    do {                                                                                           \
        grad_checks++;                                                                             \
        CHECK(th_grad_check_default((t), ONYX_MODE_TRAIN, (in), (mask)) == 0);                     \
    } while (0)

enum { RED_NONE, RED_SUM, RED_MEAN };
static const char *const red_name[3] = {"none", "sum", "mean"};

/* A node of op in onyx's own domain "ai.onyx", opset 1. */
static th_node *onyx_loss_node(const char *op)
{
    th_node *t = th_node_new(op, 1, 2, 1);
    onyx_node *n = th_onyx_node(t);
    free(n->domain);
    n->domain = onyx_strdup("ai.onyx");
    return t;
}

/* Runs backward of t's node (after th_run put the forward's outputs in out) with the given
 * output gradients, accumulating into din. */
static void run_backward(th_node *t, const onyx_tensor *in, const onyx_tensor *out,
                         const onyx_tensor *dout, onyx_tensor *din)
{
    onyx_node *n = th_onyx_node(t);
    onyx_kctx ctx = {.mode = ONYX_MODE_TRAIN};
    n->impl->backward(n, &ctx, in, out, dout, din);
}

/* ---- the reference ------------------------------------------------------------------------ */

/*
 * The spec, in double, for scores/input x (N, C, D) and labels lab (N * D): logp (N, C, D) =
 * log_softmax over C (softmax) or x itself; loss_el (N * D) = -w[c] logp[n, c, d], 0 where
 * ignored; returns the reduced value (sum, or sum / sum of the weights of the elements not
 * ignored) — NaN for reduction none.
 */
static double ref_class(const float *x, const int64_t *lab, const float *w, int64_t N, int64_t C,
                        int64_t Dd, bool softmax, bool has_ii, int64_t ii, int red, double *loss_el,
                        double *logp)
{
    for (int64_t n = 0; n < N; n++) {
        for (int64_t d = 0; d < Dd; d++) {
            double m = -INFINITY;
            double s = 0.0;
            for (int64_t c = 0; c < C; c++)
                m = fmax(m, x[(n * C + c) * Dd + d]);
            for (int64_t c = 0; c < C; c++)
                s += exp(x[(n * C + c) * Dd + d] - m);
            for (int64_t c = 0; c < C; c++) {
                double v = x[(n * C + c) * Dd + d];
                logp[(n * C + c) * Dd + d] = softmax ? v - m - log(s) : v;
            }
        }
    }
    double sum = 0.0;
    double wsum = 0.0;
    for (int64_t n = 0; n < N; n++) {
        for (int64_t d = 0; d < Dd; d++) {
            int64_t c = lab[n * Dd + d];
            if (has_ii && c == ii) {
                loss_el[n * Dd + d] = 0.0;
                continue;
            }
            double wc = w != NULL ? w[c] : 1.0;
            loss_el[n * Dd + d] = -wc * logp[(n * C + c) * Dd + d];
            sum += loss_el[n * Dd + d];
            wsum += wc;
        }
    }
    return red == RED_NONE ? NAN : red == RED_SUM ? sum : sum / wsum;
}

/* One configuration of a class loss. */
typedef struct ccase {
    const char *op; /* "SoftmaxCrossEntropyLoss" or "NegativeLogLikelihoodLoss" */
    int64_t opset;
    int red; /* -1: attribute not set (mean) */
    bool has_w;
    bool has_ii;
    int64_t ii;
    bool lab32;    /* int32 labels */
    bool log_prob; /* SCE: ask for the second output */
    int rank;      /* of the scores */
    int64_t dims[ONYX_MAX_RANK];
} ccase;

static th_node *class_node(const ccase *c)
{
    bool sce = strcmp(c->op, "SoftmaxCrossEntropyLoss") == 0;
    th_node *t = th_node_new(c->op, c->opset, c->has_w ? 3 : 2, sce && c->log_prob ? 2 : 1);
    if (c->red >= 0)
        th_attr_string(t, "reduction", red_name[c->red]);
    if (c->has_ii)
        th_attr_int(t, "ignore_index", c->ii);
    return t;
}

/* Test data for case c: x (numel floats), labels as int64 lab64 and int32 lab32, w (C). Some
 * labels are set to ignore_index when there is one. */
typedef struct cdata {
    int64_t N, C, Dd, nx, nl;
    float *x;
    int64_t *lab64;
    int32_t *lab32;
    float *w;
    onyx_tensor in[3];
} cdata;

static void cdata_make(const ccase *c, cdata *d)
{
    d->N = c->dims[0];
    d->C = c->dims[1];
    d->Dd = 1;
    for (int i = 2; i < c->rank; i++)
        d->Dd *= c->dims[i];
    d->nx = d->N * d->C * d->Dd;
    d->nl = d->N * d->Dd;
    d->x = malloc(sizeof(float) * (size_t)(d->nx + 1));
    d->lab64 = malloc(sizeof(int64_t) * (size_t)(d->nl + 1));
    d->lab32 = malloc(sizeof(int32_t) * (size_t)(d->nl + 1));
    d->w = malloc(sizeof(float) * (size_t)(d->C + 1));
    bool sce = strcmp(c->op, "SoftmaxCrossEntropyLoss") == 0;
    for (int64_t i = 0; i < d->nx; i++)
        d->x[i] = sce ? 3.0f * th_frand(&lcg) : -2.0f + th_frand(&lcg); /* NLL: log-probs < 0 */
    for (int64_t i = 0; i < d->nl; i++) {
        d->lab64[i] = (int64_t)((th_frand(&lcg) + 1.0f) * 0.5f * (float)d->C) % d->C;
        if (c->has_ii && i % 3 == 1)
            d->lab64[i] = c->ii;
        d->lab32[i] = (int32_t)d->lab64[i];
    }
    for (int64_t i = 0; i < d->C; i++)
        d->w[i] = 0.25f + 0.5f * (th_frand(&lcg) + 1.0f);
    int64_t ld[ONYX_MAX_RANK];
    ld[0] = d->N;
    for (int i = 2; i < c->rank; i++)
        ld[i - 1] = c->dims[i];
    d->in[0] = th_f32(c->rank, c->dims, d->x);
    d->in[1] = c->lab32 ? th_tensor(ONYX_DTYPE_I32, c->rank - 1, ld, d->lab32)
                        : th_i64(c->rank - 1, ld, d->lab64);
    d->in[2] = c->has_w ? th_f32(1, D(d->C), d->w) : th_omitted();
}

static void cdata_free(cdata *d)
{
    free(d->x);
    free(d->lab64);
    free(d->lab32);
    free(d->w);
}

/* Forward of case c against the reference. */
static void class_check(ccase c)
{
    cdata d;
    cdata_make(&c, &d);
    bool sce = strcmp(c.op, "SoftmaxCrossEntropyLoss") == 0;
    int red = c.red < 0 ? RED_MEAN : c.red;
    double *loss_el = malloc(sizeof(double) * (size_t)(d.nl + 1));
    double *logp = malloc(sizeof(double) * (size_t)(d.nx + 1));
    double r = ref_class(d.x, d.lab64, c.has_w ? d.w : NULL, d.N, d.C, d.Dd, sce, c.has_ii, c.ii,
                         red, loss_el, logp);
    th_node *t = class_node(&c);
    onyx_tensor out[2];
    CHECK_OK(th_run(t, ONYX_MODE_INFER, d.in, out, &err), err.msg);
    if (red == RED_NONE) {
        CHECK(onyx_shape_equal(&out[0], &d.in[1]));
        CHECK(th_close_f32(out[0].data, loss_el, d.nl, 1e-6, 1e-5, c.op));
    } else {
        CHECK(out[0].rank == 0);
        CHECK(th_close_f32(out[0].data, &r, 1, 1e-6, 1e-5, c.op));
    }
    CHECK(out[0].dtype == ONYX_DTYPE_F32);
    if (sce && c.log_prob) {
        CHECK(onyx_shape_equal(&out[1], &d.in[0]));
        CHECK(th_close_f32(out[1].data, logp, d.nx, 1e-6, 1e-5, "log_prob"));
    }
    th_node_free(t);
    free(loss_el);
    free(logp);
    cdata_free(&d);
}

/* Gradient of case c w.r.t. the scores / input, by finite differences. */
static void class_grad(ccase c)
{
    cdata d;
    cdata_make(&c, &d);
    th_node *t = class_node(&c);
    CHECK_GRAD(t, d.in, 1u << 0);
    th_node_free(t);
    cdata_free(&d);
}

/* ---- SoftmaxCrossEntropyLoss / NegativeLogLikelihoodLoss: forward ------------------------ */

static void test_class_by_hand(void)
{
    onyx_tensor out[2];
    /* SCE of two equal scores: -log(1/2) = log 2; log_prob = [-log 2, -log 2]. */
    th_node *t = th_node_new("SoftmaxCrossEntropyLoss", 13, 2, 2);
    onyx_tensor in[3] = {th_f32(2, D(1, 2), F(0, 0)), th_i64(1, D(1), D(0)), th_omitted()};
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK(out[0].rank == 0);
    CHECK_NEAR(((float *)out[0].data)[0], 0.69314718);
    CHECK_NEAR(((float *)out[1].data)[1], -0.69314718);
    th_node_free(t);

    /* scores [[1, 2, 3]], label 2: log(e + e^2 + e^3) - 3 = 0.40760596 */
    t = th_node_new("SoftmaxCrossEntropyLoss", 12, 2, 1);
    th_attr_string(t, "reduction", "sum");
    in[0] = th_f32(2, D(1, 3), F(1, 2, 3));
    in[1] = th_i64(1, D(1), D(2));
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK_NEAR(((float *)out[0].data)[0], 0.40760596);
    th_node_free(t);

    /* The spec's NLL examples: input (2, 3, 2), target [[2, 1], [0, 2]]. */
    const float *nx = F(1, 2, 2, 2, 3, 2, 0, 1, 2, 2, 1, 2);
    onyx_tensor nin[3] = {th_f32(3, D(2, 3, 2), nx), th_i64(2, D(2, 2), D(2, 1, 0, 2)),
                          th_omitted()};
    t = th_node_new("NegativeLogLikelihoodLoss", 13, 2, 1);
    th_attr_string(t, "reduction", "none");
    CHECK_OK(th_run(t, ONYX_MODE_INFER, nin, out, &err), err.msg);
    CHECK(th_dims_eq(&out[0], 2, D(2, 2)));
    const float *y = out[0].data;
    CHECK(y[0] == -3.0f && y[1] == -2.0f && y[2] == 0.0f && y[3] == -2.0f);
    th_node_free(t);
    nin[2] = th_f32(1, D(3), F(0.2f, 0.3f, 0.1f));
    t = th_node_new("NegativeLogLikelihoodLoss", 12, 3, 1);
    th_attr_string(t, "reduction", "sum");
    CHECK_OK(th_run(t, ONYX_MODE_INFER, nin, out, &err), err.msg);
    CHECK_NEAR(((float *)out[0].data)[0], -1.1);
    th_node_free(t);
    t = th_node_new("NegativeLogLikelihoodLoss", 13, 3, 1); /* mean is the default */
    CHECK_OK(th_run(t, ONYX_MODE_INFER, nin, out, &err), err.msg);
    CHECK_NEAR(((float *)out[0].data)[0], -1.1 / 0.7); /* -1.57 */
    th_node_free(t);

    /* ignore_index leaves the element out of the mean's denominator: target [[2, 1], [0, 2]]
     * with ignore_index 2 keeps (0,1) -> -2 and (1,0) -> -0: mean = -2 / 2 = -1. */
    t = th_node_new("NegativeLogLikelihoodLoss", 13, 2, 1);
    th_attr_int(t, "ignore_index", 2);
    nin[2] = th_omitted();
    CHECK_OK(th_run(t, ONYX_MODE_INFER, nin, out, &err), err.msg);
    CHECK_NEAR(((float *)out[0].data)[0], -1.0);
    th_node_free(t);
    /* ... and with weights: (-2 * 0.3 + -0 * 0.2) / (0.3 + 0.2) = -1.2 */
    t = th_node_new("NegativeLogLikelihoodLoss", 13, 3, 1);
    th_attr_int(t, "ignore_index", 2);
    nin[2] = th_f32(1, D(3), F(0.2f, 0.3f, 0.1f));
    CHECK_OK(th_run(t, ONYX_MODE_INFER, nin, out, &err), err.msg);
    CHECK_NEAR(((float *)out[0].data)[0], -1.2);
    th_node_free(t);

    /* Every element ignored: the mean is 0 / 0 = NaN, the sum 0. */
    t = th_node_new("SoftmaxCrossEntropyLoss", 13, 2, 1);
    th_attr_int(t, "ignore_index", -1);
    in[0] = th_f32(2, D(2, 2), F(1, 2, 3, 4));
    in[1] = th_i64(1, D(2), D(-1, -1));
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK(isnan(((float *)out[0].data)[0]));
    th_node_free(t);
    t = th_node_new("SoftmaxCrossEntropyLoss", 13, 2, 1);
    th_attr_int(t, "ignore_index", -1);
    th_attr_string(t, "reduction", "sum");
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK(((float *)out[0].data)[0] == 0.0f);
    th_node_free(t);
}

static void test_class_vs_reference(void)
{
    static const char *const ops[2] = {"SoftmaxCrossEntropyLoss", "NegativeLogLikelihoodLoss"};
    int runs = 0;
    for (int o = 0; o < 2; o++) {
        for (int red = -1; red < 3; red++) {
            for (int w = 0; w < 2; w++) {
                for (int ii = 0; ii < 3; ii++) { /* none, inside [0, C), outside */
                    ccase c = {.op = ops[o],
                               .opset = 12 + (red + 1 + w + ii) % 2,
                               .red = red,
                               .has_w = w,
                               .has_ii = ii > 0,
                               .ii = ii == 1 ? 1 : -100, /* inside or outside [0, C) */
                               .lab32 = (red + 1 + ii) % 2 == 0,
                               .log_prob = o == 0 && w == 1,
                               .rank = 2,
                               .dims = {5, 4}};
                    class_check(c);
                    c.rank = 3;
                    c.dims[2] = 3;
                    class_check(c);
                    c.rank = 5;
                    c.dims[2] = 2;
                    c.dims[3] = 3;
                    c.dims[4] = 2;
                    class_check(c);
                    runs += 3;
                }
            }
        }
    }
    /* more columns than one chunk of the kernel (256), and a wide class dim */
    class_check((ccase){ops[0], 13, RED_NONE, true, true, 3, false, true, 3, {2, 7, 300}});
    class_check((ccase){ops[1], 13, RED_MEAN, true, true, 3, true, false, 3, {2, 7, 300}});
    class_check((ccase){ops[0], 13, RED_SUM, false, false, 0, false, true, 2, {3, 1000}});
    /* C = 1 */
    class_check((ccase){ops[0], 13, RED_MEAN, false, false, 0, false, true, 2, {4, 1}});
    printf("class loss configurations checked: %d\n", runs + 4);
}

/* The official cases, through the harness (the onyx command runs them too: conformance). */
typedef struct conf_case {
    const char *name;
    const char *op;
    const char *reduction; /* NULL: not set */
    bool has_ii;
    int64_t ii;
    int n_in;
    int n_out;
} conf_case;

static const conf_case conf_cases[] = {
    {"test_sce_mean", "SoftmaxCrossEntropyLoss", "mean", false, 0, 2, 1},
    {"test_sce_none_weights_log_prob", "SoftmaxCrossEntropyLoss", "none", false, 0, 3, 2},
    {"test_sce_mean_weight_ii_4d_log_prob", "SoftmaxCrossEntropyLoss", "mean", true, 2, 3, 2},
    {"test_sce_NCd1_mean_weight_negative_ii", "SoftmaxCrossEntropyLoss", "mean", true, -1, 3, 1},
    {"test_sce_NCd1d2d3_sum_weight_high_ii_log_prob", "SoftmaxCrossEntropyLoss", "sum", true, 10, 3,
     2},
    {"test_sce_mean_no_weight_ii_3d", "SoftmaxCrossEntropyLoss", "mean", true, 2, 2, 1},
    {"test_nllloss_NCd1d2_with_weight_reduction_mean", "NegativeLogLikelihoodLoss", "mean", false,
     0, 3, 1},
    {"test_nllloss_NCd1d2_no_weight_reduction_mean_ii", "NegativeLogLikelihoodLoss", "mean", true,
     1, 2, 1},
    {"test_nllloss_NCd1d2d3_none_no_weight_negative_ii", "NegativeLogLikelihoodLoss", "none", true,
     -5, 2, 1},
    {"test_nllloss_NCd1_weight_ii", "NegativeLogLikelihoodLoss", "mean", true, 1, 3, 1},
};

static void test_conformance(void)
{
    int ran = 0;
    for (size_t ci = 0; ci < sizeof(conf_cases) / sizeof(conf_cases[0]); ci++) {
        const conf_case *c = &conf_cases[ci];
        onyx_tensor in[3];
        onyx_tensor want[2];
        bool have = th_case_read(c->name, c->n_in, in, c->n_out, want, &err);
        CHECK_OK(err.code, err.msg);
        if (!have) {
            printf("SKIP %s: conformance data not found under %s\n", c->name, TH_NODE_DATA);
            continue;
        }
        ran++;
        if (c->n_in == 2)
            in[2] = th_omitted();
        th_node *t = th_node_new(c->op, 13, c->n_in, c->n_out);
        if (c->reduction)
            th_attr_string(t, "reduction", c->reduction);
        if (c->has_ii)
            th_attr_int(t, "ignore_index", c->ii);
        onyx_tensor out[2];
        CHECK_OK(th_run(t, ONYX_MODE_GRAPH, in, out, &err), err.msg);
        for (int j = 0; j < c->n_out; j++) {
            CHECK(onyx_shape_equal(&out[j], &want[j]));
            int64_t m = onyx_numel(&want[j]);
            double *wd = malloc(sizeof(double) * (size_t)(m + 1));
            for (int64_t k = 0; k < m; k++)
                wd[k] = ((const float *)want[j].data)[k];
            CHECK(th_close_f32(out[j].data, wd, m, 1e-5, 1e-4, c->name));
            free(wd);
        }
        /* and the backward of each is consistent with its forward */
        CHECK_GRAD(t, in, 1u << 0);
        th_node_free(t);
        for (int i = 0; i < c->n_in; i++)
            onyx_tensor_free(&in[i]);
        for (int j = 0; j < c->n_out; j++)
            onyx_tensor_free(&want[j]);
    }
    printf("loss conformance cases run: %d\n", ran);
}

/* ---- SoftmaxCrossEntropyLoss / NegativeLogLikelihoodLoss: backward ----------------------- */

static void test_class_grad(void)
{
    static const char *const ops[2] = {"SoftmaxCrossEntropyLoss", "NegativeLogLikelihoodLoss"};
    for (int o = 0; o < 2; o++) {
        for (int red = 0; red < 3; red++) {
            for (int v = 0; v < 4; v++) { /* weights x ignore_index */
                bool w = v & 1;
                bool ii = v & 2;
                class_grad(
                    (ccase){ops[o], 13, red, w, ii, 2, red == 1, o == 0 && red != 1, 2, {4, 5}});
                class_grad(
                    (ccase){ops[o], 12, red, w, ii, 0, red != 1, o == 0 && w, 4, {2, 3, 2, 3}});
            }
        }
    }

    /* Only log_prob carries a gradient (output 0 weighs nothing): term 2 alone. */
    ccase c = {ops[0], 13, RED_MEAN, true, true, 1, false, true, 3, {3, 4, 2}};
    cdata d;
    cdata_make(&c, &d);
    th_node *t = class_node(&c);
    grad_checks++;
    CHECK(th_grad_check(t, ONYX_MODE_TRAIN, d.in, 1u << 0, 1u << 1, 1e-2, 1e-3, 1e-2, NULL) == 0);
    th_node_free(t);
    /* ... and only the loss (log_prob computed but no gradient flowing into it) */
    t = class_node(&c);
    grad_checks++;
    CHECK(th_grad_check(t, ONYX_MODE_TRAIN, d.in, 1u << 0, 1u << 0, 1e-2, 1e-3, 1e-2, NULL) == 0);
    th_node_free(t);
    cdata_free(&d);

    /* By hand: scores [[0, 0], [0, ln 3]], labels [0, 1], mean: p = [.5 .5], [.25 .75];
     * dx = dy / 2 * (p - onehot) = [[-.25, .25], [.125, -.125]] for dy = 1, accumulated onto
     * a gradient pre-filled with 1. */
    float x[4] = {0, 0, 0, (float)log(3.0)};
    onyx_tensor in[3] = {th_f32(2, D(2, 2), x), th_i64(1, D(2), D(0, 1)), th_omitted()};
    onyx_tensor out[1];
    t = th_node_new("SoftmaxCrossEntropyLoss", 13, 2, 1);
    CHECK_OK(th_run(t, ONYX_MODE_TRAIN, in, out, &err), err.msg);
    float dy = 1.0f;
    float dx[4] = {1, 1, 1, 1};
    onyx_tensor dout[1] = {th_f32(0, NULL, &dy)};
    onyx_tensor din[3] = {th_f32(2, D(2, 2), dx), th_i64(1, D(2), NULL), th_omitted()};
    run_backward(t, in, out, dout, din);
    CHECK_NEAR(dx[0], 0.75);
    CHECK_NEAR(dx[1], 1.25);
    CHECK_NEAR(dx[2], 1.125);
    CHECK_NEAR(dx[3], 0.875);
    /* din NULL: nothing happens; dout NULL: nothing flows */
    din[0].data = NULL;
    run_backward(t, in, out, dout, din);
    din[0].data = dx;
    dout[0].data = NULL;
    run_backward(t, in, out, dout, din);
    CHECK_NEAR(dx[0], 0.75);
    th_node_free(t);

    /* NLL by hand, sum with weights and an ignored element: dx[n, c] = -w[c] dy. */
    float lp[6] = {-1, -2, -3, -1, -2, -3};
    onyx_tensor nin[3] = {th_f32(2, D(3, 2), lp), th_i64(1, D(3), D(1, 7, 0)),
                          th_f32(1, D(2), F(0.5f, 2.0f))};
    t = th_node_new("NegativeLogLikelihoodLoss", 13, 3, 1);
    th_attr_string(t, "reduction", "sum");
    th_attr_int(t, "ignore_index", 7);
    CHECK_OK(th_run(t, ONYX_MODE_TRAIN, nin, out, &err), err.msg);
    CHECK_NEAR(((float *)out[0].data)[0], 2.0 * 2.0 + 0.5 * 2.0); /* -(-2 * 2) - (-2 * 0.5) */
    float ndx[6] = {0};
    dy = 3.0f;
    dout[0].data = &dy;
    onyx_tensor ndin[3] = {th_f32(2, D(3, 2), ndx), th_i64(1, D(3), NULL), th_omitted()};
    run_backward(t, nin, out, dout, ndin);
    CHECK(ndx[0] == 0 && ndx[1] == -6.0f && ndx[2] == 0 && ndx[3] == 0 && ndx[4] == -1.5f &&
          ndx[5] == 0);
    th_node_free(t);
}

/* ---- ai.onyx losses ----------------------------------------------------------------------- */

static float run_scalar(th_node *t, const onyx_tensor *in)
{
    onyx_tensor out[1];
    onyx_status st = th_run(t, ONYX_MODE_INFER, in, out, &err);
    CHECK_OK(st, err.msg);
    if (st != ONYX_OK)
        return NAN;
    CHECK(out[0].rank == 0 && out[0].dtype == ONYX_DTYPE_F32);
    return ((float *)out[0].data)[0];
}

static void test_pointwise_forward(void)
{
    /* p = [1, 2, 3, 4], t = [0, 2, 5, 3.5]: d = [1, 0, -2, .5] */
    onyx_tensor in[2] = {th_f32(2, D(2, 2), F(1, 2, 3, 4)), th_f32(2, D(2, 2), F(0, 2, 5, 3.5f))};
    th_node *t = onyx_loss_node("MeanSquaredError");
    CHECK_NEAR(run_scalar(t, in), (1 + 0 + 4 + 0.25) / 4);
    th_node_free(t);
    t = onyx_loss_node("MeanSquaredError");
    th_attr_string(t, "reduction", "sum");
    CHECK_NEAR(run_scalar(t, in), 5.25);
    th_node_free(t);
    t = onyx_loss_node("L1Loss");
    CHECK_NEAR(run_scalar(t, in), 3.5 / 4);
    th_node_free(t);
    t = onyx_loss_node("L1Loss");
    th_attr_string(t, "reduction", "sum");
    CHECK_NEAR(run_scalar(t, in), 3.5);
    th_node_free(t);

    /* BCE with logits: x = 0, t = 1 -> log 2; x = 2, t = 0.25 -> 2 - .5 + log1p(e^-2);
     * x = -3, t = 1 -> 3 + log1p(e^-3) (= -log sigmoid(-3)); x = 100, t = 1 -> ~0 (no overflow);
     * x = -100, t = 0 -> ~0. */
    onyx_tensor b[2] = {th_f32(1, D(5), F(0, 2, -3, 100, -100)),
                        th_f32(1, D(5), F(1, 0.25f, 1, 1, 0))};
    double want = log(2.0) + (1.5 + log1p(exp(-2.0))) + (3.0 + log1p(exp(-3.0))) +
                  log1p(exp(-100.0)) + log1p(exp(-100.0));
    t = onyx_loss_node("BCEWithLogitsLoss");
    th_attr_string(t, "reduction", "sum");
    CHECK_NEAR(run_scalar(t, b), want);
    th_node_free(t);
    t = onyx_loss_node("BCEWithLogitsLoss");
    CHECK_NEAR(run_scalar(t, b), want / 5);
    th_node_free(t);
    /* the same against the textbook form -[t log s(x) + (1 - t) log(1 - s(x))] */
    double s = 1.0 / (1.0 + exp(-2.0));
    onyx_tensor b1[2] = {th_f32(0, NULL, F(2)), th_f32(0, NULL, F(0.25f))};
    t = onyx_loss_node("BCEWithLogitsLoss");
    CHECK_NEAR(run_scalar(t, b1), -(0.25 * log(s) + 0.75 * log(1.0 - s)));
    th_node_free(t);

    /* no elements: the mean is NaN, the sum 0 */
    onyx_tensor e[2] = {th_f32(1, D(0), NULL), th_f32(1, D(0), NULL)};
    t = onyx_loss_node("MeanSquaredError");
    CHECK(isnan(run_scalar(t, e)));
    th_node_free(t);
    t = onyx_loss_node("L1Loss");
    th_attr_string(t, "reduction", "sum");
    CHECK(run_scalar(t, e) == 0.0f);
    th_node_free(t);

    /* the registry finds them in ai.onyx opset 1 only */
    CHECK(onyx_op_find("ai.onyx", "MeanSquaredError", 1) != NULL);
    CHECK(onyx_op_find("ai.onyx", "L1Loss", 1) != NULL);
    CHECK(onyx_op_find("ai.onyx", "BCEWithLogitsLoss", 1) != NULL);
    CHECK(onyx_op_find("", "MeanSquaredError", 13) == NULL);
    CHECK(onyx_op_find("ai.onyx", "MeanSquaredError", 2) == NULL);
    CHECK(onyx_op_find("", "SoftmaxCrossEntropyLoss", 11) == NULL);
    CHECK(onyx_op_find("", "SoftmaxCrossEntropyLoss", 12) != NULL);
    CHECK(onyx_op_find("ai.onnx", "NegativeLogLikelihoodLoss", 13) != NULL);
}

static void test_pointwise_grad(void)
{
    static const char *const ops[3] = {"MeanSquaredError", "L1Loss", "BCEWithLogitsLoss"};
    float p[24];
    float tg[24];
    for (int i = 0; i < 24; i++) {
        p[i] = 2.0f * th_frand(&lcg);
        /* targets in [0.1, 0.9] (BCE), and at least 0.1 away from p: L1's kink at p == t lies
         * outside every finite difference (eps 1e-2) */
        tg[i] = 0.5f + 0.4f * th_frand(&lcg);
        if (fabsf(p[i] - tg[i]) < 0.1f)
            p[i] = tg[i] + (i % 2 ? 0.3f : -0.3f);
    }
    onyx_tensor in[2] = {th_f32(3, D(2, 3, 4), p), th_f32(3, D(2, 3, 4), tg)};
    for (int o = 0; o < 3; o++) {
        for (int mean = 0; mean < 2; mean++) {
            th_node *t = onyx_loss_node(ops[o]);
            if (!mean)
                th_attr_string(t, "reduction", "sum");
            grad_checks++;
            CHECK(th_grad_check_default(t, ONYX_MODE_TRAIN, in, 3u) == 0);
            th_node_free(t);
        }
    }
    /* a scalar pair */
    onyx_tensor s[2] = {th_f32(0, NULL, F(0.7f)), th_f32(0, NULL, F(0.2f))};
    for (int o = 0; o < 3; o++) {
        th_node *t = onyx_loss_node(ops[o]);
        CHECK_GRAD(t, s, 3u);
        th_node_free(t);
    }

    /* By hand, mean over 2 elements, dy = 2, accumulated onto 1s:
     * MSE: dp = dy * 2 (p - t) / n; L1: dp = dy * sign(p - t) / n (0 where p == t);
     * BCE: dp = dy * (sigmoid(x) - t) / n; dt = -dp (MSE, L1) or -dy * x / n (BCE). */
    onyx_tensor hin[2] = {th_f32(1, D(2), F(3, 1)), th_f32(1, D(2), F(1, 1))};
    float dy = 2.0f;
    onyx_tensor dout[1] = {th_f32(0, NULL, &dy)};
    onyx_tensor out[1];
    const double want_dp[3][2] = {{1 + 4, 1 + 0},
                                  {1 + 1, 1 + 0},
                                  {1 + 1.0 / (1 + exp(-3.0)) - 1, 1 + 1.0 / (1 + exp(-1.0)) - 1}};
    const double want_dt[3][2] = {{1 - 4, 1 - 0}, {1 - 1, 1 - 0}, {1 - 3, 1 - 1}};
    for (int o = 0; o < 3; o++) {
        th_node *t = onyx_loss_node(ops[o]);
        CHECK_OK(th_run(t, ONYX_MODE_TRAIN, hin, out, &err), err.msg);
        float dp[2] = {1, 1};
        float dt[2] = {1, 1};
        onyx_tensor din[2] = {th_f32(1, D(2), dp), th_f32(1, D(2), dt)};
        run_backward(t, hin, out, dout, din);
        CHECK_NEAR(dp[0], want_dp[o][0]);
        CHECK_NEAR(dp[1], want_dp[o][1]);
        CHECK_NEAR(dt[0], want_dt[o][0]);
        CHECK_NEAR(dt[1], want_dt[o][1]);
        /* only the prediction's gradient wanted */
        din[1].data = NULL;
        run_backward(t, hin, out, dout, din);
        CHECK_NEAR(dt[0], want_dt[o][0]);
        CHECK_NEAR(dp[0], 2 * want_dp[o][0] - 1);
        th_node_free(t);
    }
}

/* ---- errors and load-time inference ------------------------------------------------------- */

static void test_errors(void)
{
    onyx_tensor out[2];
    float x6[6] = {0, 1, 2, 3, 4, 5};
    onyx_tensor in[3] = {th_f32(2, D(2, 3), x6), th_i64(1, D(2), D(0, 3)), th_omitted()};

    /* a label out of [0, C), named with its value and C */
    th_node *t = th_node_new("SoftmaxCrossEntropyLoss", 13, 2, 1);
    CHECK_ERR(th_run(t, ONYX_MODE_INFER, in, out, &err), ONYX_ERR_SHAPE,
              "input 1 (labels) has label 3 at index 1, expected a class in [0, C) = [0, 3)");
    th_node_free(t);
    t = th_node_new("NegativeLogLikelihoodLoss", 12, 2, 1);
    th_attr_int(t, "ignore_index", -1);
    in[1] = th_tensor(ONYX_DTYPE_I32, 1, D(2), (const int32_t[]){-2, 0});
    CHECK_ERR(th_run(t, ONYX_MODE_INFER, in, out, &err), ONYX_ERR_SHAPE,
              "input 1 (target) has label -2 at index 0, expected a class in [0, C) = [0, 3) or "
              "ignore_index -1");
    th_node_free(t);
    /* ignore_index itself may lie anywhere */
    t = th_node_new("NegativeLogLikelihoodLoss", 12, 2, 1);
    th_attr_int(t, "ignore_index", -2);
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    th_node_free(t);
    in[1] = th_i64(1, D(2), D(0, 2));

    /* attributes */
    t = th_node_new("SoftmaxCrossEntropyLoss", 13, 2, 1);
    th_attr_string(t, "reduction", "average");
    CHECK_ERR(th_run(t, ONYX_MODE_INFER, in, out, &err), ONYX_ERR_INVALID_MODEL,
              "attribute reduction is \"average\", expected \"none\", \"sum\" or \"mean\"");
    th_node_free(t);
    t = th_node_new("SoftmaxCrossEntropyLoss", 13, 2, 1);
    th_attr_int(t, "reduction", 1);
    CHECK_ERR(th_run(t, ONYX_MODE_INFER, in, out, &err), ONYX_ERR_INVALID_MODEL,
              "attribute reduction has type int, expected string");
    th_node_free(t);
    t = th_node_new("NegativeLogLikelihoodLoss", 13, 2, 1);
    th_attr_float(t, "ignore_index", 1.0f);
    CHECK_ERR(th_run(t, ONYX_MODE_INFER, in, out, &err), ONYX_ERR_INVALID_MODEL,
              "attribute ignore_index has type float, expected int");
    th_node_free(t);
    t = onyx_loss_node("MeanSquaredError");
    th_attr_string(t, "reduction", "none");
    onyx_tensor p2[2] = {th_f32(1, D(2), F(1, 2)), th_f32(1, D(2), F(1, 2))};
    CHECK_ERR(th_run(t, ONYX_MODE_INFER, p2, out, &err), ONYX_ERR_INVALID_MODEL,
              "attribute reduction is \"none\", expected \"sum\" or \"mean\"");
    th_node_free(t);

    /* arity: NLL has one output; SCE at most two */
    t = th_node_new("NegativeLogLikelihoodLoss", 13, 2, 2);
    CHECK_ERR(th_run(t, ONYX_MODE_INFER, in, out, &err), ONYX_ERR_INVALID_MODEL,
              "has 2 outputs, expected 1");
    th_node_free(t);
    t = th_node_new("SoftmaxCrossEntropyLoss", 13, 4, 1);
    onyx_tensor in4[4] = {in[0], in[1], th_f32(1, D(3), F(1, 1, 1)), th_f32(1, D(3), F(1, 1, 1))};
    CHECK_ERR(th_run(t, ONYX_MODE_INFER, in4, out, &err), ONYX_ERR_INVALID_MODEL,
              "has 4 inputs, expected 2 to 3");
    th_node_free(t);

    /* dtypes */
    t = th_node_new("SoftmaxCrossEntropyLoss", 13, 2, 1);
    onyx_tensor bad[3] = {th_i64(2, D(2, 3), D(0, 1, 2, 3, 4, 5)), in[1], th_omitted()};
    CHECK_ERR(th_run(t, ONYX_MODE_INFER, bad, out, &err), ONYX_ERR_SHAPE,
              "has dtype int64, expected one of");
    th_node_free(t);
    t = th_node_new("SoftmaxCrossEntropyLoss", 13, 2, 1);
    double xd[6] = {0};
    bad[0] = th_tensor(ONYX_DTYPE_F64, 2, D(2, 3), xd);
    CHECK_ERR(th_run(t, ONYX_MODE_INFER, bad, out, &err), ONYX_ERR_UNSUPPORTED,
              "input 0 (scores) has dtype float64; onyx computes losses in float32 only");
    th_node_free(t);
    /* bfloat16 scores: allowed by SCE-13 (unsupported), not by SCE-12 (invalid) */
    t = th_node_new("SoftmaxCrossEntropyLoss", 13, 2, 1);
    uint16_t xb[6] = {0};
    bad[0] = th_tensor(ONYX_DTYPE_BF16, 2, D(2, 3), xb);
    CHECK_ERR(th_run(t, ONYX_MODE_INFER, bad, out, &err), ONYX_ERR_UNSUPPORTED, "bfloat16");
    th_node_free(t);
    t = th_node_new("SoftmaxCrossEntropyLoss", 12, 2, 1);
    CHECK_ERR(th_run(t, ONYX_MODE_INFER, bad, out, &err), ONYX_ERR_SHAPE, "bfloat16, expected");
    th_node_free(t);
    t = th_node_new("NegativeLogLikelihoodLoss", 13, 2, 1);
    bad[0] = in[0];
    bad[1] = th_f32(1, D(2), F(0, 1));
    CHECK_ERR(th_run(t, ONYX_MODE_INFER, bad, out, &err), ONYX_ERR_SHAPE,
              "input 1 (target) has dtype float32, expected one of: int32, int64");
    th_node_free(t);
    t = th_node_new("NegativeLogLikelihoodLoss", 13, 3, 1);
    bad[1] = in[1];
    bad[2] = th_tensor(ONYX_DTYPE_F64, 1, D(3), xd);
    CHECK_ERR(th_run(t, ONYX_MODE_INFER, bad, out, &err), ONYX_ERR_SHAPE,
              "input 2 (weight) has dtype float64, expected float32 (the dtype of input 0 "
              "(input))");
    th_node_free(t);

    /* shapes */
    t = th_node_new("SoftmaxCrossEntropyLoss", 13, 2, 1);
    bad[0] = th_f32(1, D(6), x6);
    CHECK_ERR(th_run(t, ONYX_MODE_INFER, bad, out, &err), ONYX_ERR_SHAPE,
              "input 0 (scores) has shape [6], expected (N, C) or (N, C, d1, ...)");
    th_node_free(t);
    t = th_node_new("SoftmaxCrossEntropyLoss", 13, 2, 1);
    bad[0] = in[0];
    bad[1] = th_i64(2, D(2, 1), D(0, 1));
    CHECK_ERR(th_run(t, ONYX_MODE_INFER, bad, out, &err), ONYX_ERR_SHAPE,
              "input 1 (labels) has shape [2,1], expected rank 1 for input 0 (scores) of shape "
              "[2,3]");
    th_node_free(t);
    t = th_node_new("NegativeLogLikelihoodLoss", 13, 2, 1);
    bad[0] = th_f32(3, D(1, 3, 2), x6);
    bad[1] = th_i64(2, D(1, 3), D(0, 1, 2));
    CHECK_ERR(th_run(t, ONYX_MODE_INFER, bad, out, &err), ONYX_ERR_SHAPE,
              "input 1 (target) has shape [1,3], expected [1,2]: input 0 (input) has shape "
              "[1,3,2]");
    th_node_free(t);
    t = th_node_new("SoftmaxCrossEntropyLoss", 13, 3, 1);
    bad[0] = in[0];
    bad[1] = in[1];
    bad[2] = th_f32(1, D(2), F(1, 1));
    CHECK_ERR(th_run(t, ONYX_MODE_INFER, bad, out, &err), ONYX_ERR_SHAPE,
              "input 2 (weights) has shape [2], expected [C] = [3]");
    th_node_free(t);

    /* ai.onyx losses: shapes, dtypes, BCE targets */
    t = onyx_loss_node("L1Loss");
    onyx_tensor pt[2] = {th_f32(1, D(2), F(1, 2)), th_f32(2, D(2, 1), F(1, 2))};
    CHECK_ERR(th_run(t, ONYX_MODE_INFER, pt, out, &err), ONYX_ERR_SHAPE,
              "input 1 (target) has shape [2,1], expected the shape of input 0 (prediction), [2]");
    th_node_free(t);
    t = onyx_loss_node("L1Loss");
    pt[1] = th_f32(1, D(3), F(1, 2, 3));
    CHECK_ERR(th_run(t, ONYX_MODE_INFER, pt, out, &err), ONYX_ERR_SHAPE, "shape [3], expected");
    th_node_free(t);
    t = onyx_loss_node("MeanSquaredError");
    pt[1] = th_i64(1, D(2), D(1, 2));
    CHECK_ERR(th_run(t, ONYX_MODE_INFER, pt, out, &err), ONYX_ERR_SHAPE,
              "input 1 (target) has dtype int64, expected float32");
    th_node_free(t);
    t = onyx_loss_node("MeanSquaredError");
    pt[0] = th_i64(1, D(2), D(1, 2));
    CHECK_ERR(th_run(t, ONYX_MODE_INFER, pt, out, &err), ONYX_ERR_SHAPE,
              "input 0 (prediction) has dtype int64");
    th_node_free(t);
    t = onyx_loss_node("BCEWithLogitsLoss");
    pt[0] = th_f32(1, D(3), F(1, 2, 3));
    pt[1] = th_f32(1, D(3), F(0, 1, 1.5f));
    CHECK_ERR(th_run(t, ONYX_MODE_INFER, pt, out, &err), ONYX_ERR_SHAPE,
              "input 1 (target) has 1.5 at index 2, expected a value in [0, 1]");
    th_node_free(t);
    t = onyx_loss_node("BCEWithLogitsLoss");
    pt[1] = th_f32(1, D(3), F(0, NAN, 1));
    CHECK_ERR(th_run(t, ONYX_MODE_INFER, pt, out, &err), ONYX_ERR_SHAPE,
              "has nan at index 1, expected a value in [0, 1]");
    th_node_free(t);
    /* MSE and L1 take any targets */
    t = onyx_loss_node("L1Loss");
    pt[1] = th_f32(1, D(3), F(-7, 1, 1.5f));
    CHECK_NEAR(run_scalar(t, pt), (8 + 1 + 1.5) / 3);
    th_node_free(t);
}

static void test_load_time(void)
{
    onyx_tensor out[2];
    /* batch unknown: the per-element loss is (N), log_prob (N, 5); labels' data unknown */
    onyx_tensor in[3] = {th_f32(2, D(-1, 5), NULL), th_i64(1, D(-1), NULL), th_omitted()};
    th_node *t = th_node_new("SoftmaxCrossEntropyLoss", 13, 2, 2);
    th_attr_string(t, "reduction", "none");
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK(th_dims_eq(&out[0], 1, D(-1)) && out[0].dtype == ONYX_DTYPE_F32);
    CHECK(th_dims_eq(&out[1], 2, D(-1, 5)));
    th_node_free(t);
    /* reduced: a scalar whatever is unknown */
    t = th_node_new("NegativeLogLikelihoodLoss", 13, 2, 1);
    in[0] = th_f32(-1, NULL, NULL);
    in[1] = th_tensor(ONYX_DTYPE_I64, -1, NULL, NULL);
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK(out[0].rank == 0 && out[0].dtype == ONYX_DTYPE_F32);
    th_node_free(t);
    /* scores' rank unknown, labels known: the loss takes the labels' shape */
    t = th_node_new("NegativeLogLikelihoodLoss", 13, 2, 1);
    th_attr_string(t, "reduction", "none");
    in[1] = th_i64(2, D(4, -1), NULL);
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK(th_dims_eq(&out[0], 2, D(4, -1)));
    th_node_free(t);
    /* labels unknown, scores (N, C, d1) known: (N, d1) */
    t = th_node_new("SoftmaxCrossEntropyLoss", 12, 2, 1);
    th_attr_string(t, "reduction", "none");
    in[0] = th_f32(3, D(-1, 5, 7), NULL);
    in[1] = th_tensor(ONYX_DTYPE_I64, -1, NULL, NULL);
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK(th_dims_eq(&out[0], 2, D(-1, 7)));
    th_node_free(t);
    /* the log_prob output omitted: left alone */
    t = th_node_new("SoftmaxCrossEntropyLoss", 13, 2, 2);
    th_set_out_omitted(t, 1);
    in[1] = th_i64(2, D(-1, 7), NULL);
    CHECK_OK(th_infer(t, in, out, &err), err.msg);
    CHECK(out[1].dtype == ONYX_DTYPE_UNDEFINED);
    th_node_free(t);
    /* known mismatches are refused even at load time */
    t = th_node_new("SoftmaxCrossEntropyLoss", 13, 2, 1);
    in[1] = th_i64(2, D(-1, 6), NULL);
    CHECK_ERR(th_infer(t, in, out, &err), ONYX_ERR_SHAPE, "expected [?,7]");
    th_node_free(t);
    /* ai.onyx losses: a scalar; unknown dims fit anything */
    t = onyx_loss_node("BCEWithLogitsLoss");
    onyx_tensor pt[2] = {th_f32(2, D(-1, 3), NULL), th_f32(2, D(8, -1), NULL)};
    CHECK_OK(th_infer(t, pt, out, &err), err.msg);
    CHECK(out[0].rank == 0 && out[0].dtype == ONYX_DTYPE_F32);
    th_node_free(t);
    t = onyx_loss_node("MeanSquaredError");
    pt[1] = th_f32(2, D(8, 4), NULL);
    CHECK_ERR(th_infer(t, pt, out, &err), ONYX_ERR_SHAPE, "expected the shape of input 0");
    th_node_free(t);
}

int main(void)
{
    test_class_by_hand();
    test_class_vs_reference();
    test_conformance();
    test_class_grad();
    test_pointwise_forward();
    test_pointwise_grad();
    test_errors();
    test_load_time();
    printf("gradient checks: %d\n", grad_checks);
    return check_report();
}
