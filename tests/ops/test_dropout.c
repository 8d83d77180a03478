/* test_dropout.c — Dropout in the three session modes, every opset, against the ONNX data; its
 * backward through the saved mask. */
#include "check.h"
#include "grad_check.h"
#include "op_harness.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- conformance cases, GRAPH mode ------------------------------------------------------- */

typedef struct conf_case {
    const char *name;
    int64_t opset;
    int n_in;
    int n_out;
    bool seed; /* seed = 0 attribute */
    float ratio_attr; /* > 0: ratio attribute */
} conf_case;

static const conf_case conf_cases[] = {
    {"test_training_dropout", 13, 3, 1, true, 0},
    {"test_training_dropout_default", 13, 3, 1, true, 0},
    {"test_training_dropout_default_mask", 13, 3, 2, true, 0},
    {"test_training_dropout_mask", 13, 3, 2, true, 0},
    {"test_training_dropout_zero_ratio", 13, 3, 1, true, 0},
    {"test_training_dropout_zero_ratio_mask", 13, 3, 2, true, 0},
    {"test_dropout_default", 13, 1, 1, true, 0},
    {"test_dropout_default_mask", 13, 1, 2, true, 0},
    {"test_dropout_default_mask_ratio", 13, 2, 2, true, 0},
    {"test_dropout_default_ratio", 13, 2, 1, true, 0},
    {"test_dropout_default_old", 11, 1, 1, false, 0},
    {"test_dropout_random_old", 11, 1, 1, false, 0.2f},
};

static th_node *conf_node(const conf_case *c)
{
    th_node *n = th_node_new("Dropout", c->opset, c->n_in, c->n_out);
    if (c->seed)
        th_attr_int(n, "seed", 0);
    if (c->ratio_attr > 0)
        th_attr_float(n, "ratio", c->ratio_attr);
    return n;
}

static void test_conformance(void)
{
    int ran = 0;
    for (size_t ci = 0; ci < sizeof(conf_cases) / sizeof(conf_cases[0]); ci++) {
        const conf_case *c = &conf_cases[ci];
        onyx_tensor in[3];
        onyx_tensor want[2];
        onyx_error err;
        bool have = th_case_read(c->name, c->n_in, in, c->n_out, want, &err);
        CHECK_OK(err.code, err.msg); /* data that is installed must read */
        if (!have) {
            printf("SKIP %s: conformance data not found under %s\n", c->name, TH_NODE_DATA);
            continue;
        }
        ran++;
        onyx_tensor out[2];
        th_node *n = conf_node(c);
        CHECK_OK(th_run(n, ONYX_MODE_GRAPH, in, out, &err), err.msg);
        int64_t numel = onyx_numel(&want[0]);
        const float *y = out[0].data;
        const float *wy = want[0].data;
        int bad_y = 0;
        int bad_m = 0;
        for (int64_t i = 0; i < numel; i++)
            if (!(fabs(y[i] - wy[i]) <= 1e-6))
                bad_y++;
        if (c->n_out == 2) {
            CHECK(out[1].dtype == ONYX_DTYPE_BOOL && want[1].dtype == ONYX_DTYPE_BOOL);
            CHECK(onyx_shape_equal(&out[1], &want[1]));
            bad_m = memcmp(out[1].data, want[1].data, (size_t)numel) != 0;
        }
        if (bad_y || bad_m)
            fprintf(stderr, "%s: %d values of Y differ, mask %s\n", c->name, bad_y,
                    bad_m ? "differs" : "matches");
        CHECK(bad_y == 0);
        CHECK(bad_m == 0);

        /* INFER mode: whatever the model says, Y = X and the mask is all true. */
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        CHECK(memcmp(out[0].data, in[0].data, onyx_nbytes(&in[0])) == 0);
        if (c->n_out == 2) {
            const uint8_t *m = out[1].data;
            int ones = 0;
            for (int64_t i = 0; i < numel; i++)
                ones += m[i] == 1;
            CHECK(ones == numel);
        }
        th_node_free(n);
        for (int i = 0; i < c->n_in; i++)
            onyx_tensor_free(&in[i]);
        for (int i = 0; i < c->n_out; i++)
            onyx_tensor_free(&want[i]);
    }
    printf("dropout conformance cases run: %d\n", ran);
}

/* TRAIN mode drops regardless of training_mode: test_dropout_default_mask (no training_mode
 * input, seed 0, ratio 0.5) must then give the reference's training output, which
 * test_training_dropout_default_mask recorded for the same seed, ratio and shape. */
static void test_train_mode_matches_reference(void)
{
    onyx_tensor x = {0};
    onyx_tensor wmask = {0};
    onyx_error err;
    bool have = th_case_tensor("test_dropout_default_mask", "input", 0, &x, &err) &&
                th_case_tensor("test_training_dropout_default_mask", "output", 1, &wmask, &err);
    CHECK_OK(err.code, err.msg); /* data that is installed must read */
    if (!have) {
        printf("SKIP train-mode reference check: conformance data not found\n");
        onyx_tensor_free(&x);
        return;
    }
    th_node *n = th_node_new("Dropout", 13, 1, 2);
    th_attr_int(n, "seed", 0);
    onyx_tensor out[2];
    CHECK_OK(th_run(n, ONYX_MODE_TRAIN, &x, out, &err), err.msg);
    int64_t numel = onyx_numel(&x);
    CHECK(memcmp(out[1].data, wmask.data, (size_t)numel) == 0);
    const float *xv = x.data;
    const float *y = out[0].data;
    const uint8_t *m = wmask.data;
    int bad = 0;
    for (int64_t i = 0; i < numel; i++)
        if (!(fabs(y[i] - (m[i] ? xv[i] * 2.0 : 0.0)) <= 1e-6))
            bad++;
    CHECK(bad == 0);
    th_node_free(n);
    onyx_tensor_free(&x);
    onyx_tensor_free(&wmask);
}

/* ---- semantics by mode and opset, on synthetic data --------------------------------------- */

enum { BIGN = 100000 };
static float xbig[BIGN];

static void fill_x(void)
{
    for (int i = 0; i < BIGN; i++)
        xbig[i] = (float)(i % 17) - 8.0f + 0.25f; /* never 0, so kept/dropped is visible */
}

/* Runs n on xbig[0:count] in mode; checks Y against the mask and scale; returns kept count
 * (or -1 on a failed run). The mask is copied to mask_out (count bytes) if not NULL. */
static int64_t run_and_check(th_node *n, onyx_mode mode, const onyx_tensor *in, int64_t count,
                             double scale, uint8_t *mask_out)
{
    onyx_error err = {0};
    onyx_tensor out[2];
    onyx_status st = th_run(n, mode, in, out, &err);
    CHECK_OK(st, err.msg);
    if (st != ONYX_OK)
        return -1;
    const float *y = out[0].data;
    const uint8_t *m = out[1].data;
    int64_t kept = 0;
    int bad = 0;
    for (int64_t i = 0; i < count; i++) {
        bool k = m[i] != 0;
        kept += k;
        double want = k ? (double)xbig[i] * scale : 0.0;
        if (!(fabs(y[i] - want) <= 1e-5 * fabs(want) + 1e-7) || m[i] > 1)
            bad++;
    }
    CHECK(bad == 0);
    if (mask_out != NULL)
        memcpy(mask_out, m, (size_t)count);
    return kept;
}

static void test_modes_opset13(void)
{
    const int64_t dims[1] = {BIGN};
    const float r3 = 0.3f;
    const uint8_t t_true = 1;
    const uint8_t t_false = 0;
    onyx_tensor in[3] = {th_f32(1, dims, xbig), th_f32(0, NULL, &r3),
                         th_tensor(ONYX_DTYPE_BOOL, 0, NULL, &t_false)};
    const double scale = 1.0 / (1.0 - 0.3f);

    /* GRAPH with training_mode false: identity; TRAIN: drops ~30%. */
    th_node *n = th_node_new("Dropout", 13, 3, 2);
    CHECK(run_and_check(n, ONYX_MODE_GRAPH, in, BIGN, 1.0, NULL) == BIGN);
    int64_t kept = run_and_check(n, ONYX_MODE_TRAIN, in, BIGN, scale, NULL);
    CHECK(kept > (int64_t)(0.69 * BIGN) && kept < (int64_t)(0.71 * BIGN));
    in[2].data = (void *)&t_true;
    kept = run_and_check(n, ONYX_MODE_GRAPH, in, BIGN, scale, NULL);
    CHECK(kept > (int64_t)(0.69 * BIGN) && kept < (int64_t)(0.71 * BIGN));
    CHECK(run_and_check(n, ONYX_MODE_INFER, in, BIGN, 1.0, NULL) == BIGN);
    th_node_free(n);

    /* No training_mode input: GRAPH never drops, TRAIN drops with the default ratio 0.5. */
    n = th_node_new("Dropout", 13, 1, 2);
    CHECK(run_and_check(n, ONYX_MODE_GRAPH, in, BIGN, 1.0, NULL) == BIGN);
    kept = run_and_check(n, ONYX_MODE_TRAIN, in, BIGN, 2.0, NULL);
    CHECK(kept > (int64_t)(0.49 * BIGN) && kept < (int64_t)(0.51 * BIGN));
    th_node_free(n);

    /* ratio 0 in TRAIN: identity, mask all true. */
    const float r0 = 0.0f;
    n = th_node_new("Dropout", 13, 2, 2);
    onyx_tensor in0[2] = {th_f32(1, dims, xbig), th_f32(0, NULL, &r0)};
    CHECK(run_and_check(n, ONYX_MODE_TRAIN, in0, BIGN, 1.0, NULL) == BIGN);
    th_node_free(n);

    /* Omitted ratio (empty name) with training_mode present: default 0.5. */
    n = th_node_new("Dropout", 12, 3, 2);
    onyx_tensor inom[3] = {th_f32(1, dims, xbig), th_omitted(),
                           th_tensor(ONYX_DTYPE_BOOL, 0, NULL, &t_true)};
    kept = run_and_check(n, ONYX_MODE_GRAPH, inom, BIGN, 2.0, NULL);
    CHECK(kept > (int64_t)(0.49 * BIGN) && kept < (int64_t)(0.51 * BIGN));
    th_node_free(n);

    /* Y only (mask omitted) still drops and scales. */
    n = th_node_new("Dropout", 13, 2, 1);
    onyx_tensor in1[2] = {th_f32(1, (const int64_t[]){8}, xbig), th_f32(0, NULL, &r3)};
    th_attr_int(n, "seed", 3);
    onyx_error err = {0};
    onyx_tensor out[1];
    CHECK_OK(th_run(n, ONYX_MODE_TRAIN, in1, out, &err), err.msg);
    /* same seed with a mask gives the mask that explains Y */
    th_node *m = th_node_new("Dropout", 13, 2, 2);
    th_attr_int(m, "seed", 3);
    onyx_tensor out2[2];
    CHECK_OK(th_run(m, ONYX_MODE_TRAIN, in1, out2, &err), err.msg);
    CHECK(memcmp(out[0].data, out2[0].data, 8 * sizeof(float)) == 0);
    th_node_free(n);
    th_node_free(m);
}

static void test_seed_and_rng(void)
{
    const int64_t count = 1000;
    const int64_t dims[1] = {count};
    onyx_tensor in[1] = {th_f32(1, dims, xbig)};
    uint8_t m1[1000];
    uint8_t m2[1000];
    uint8_t m3[1000];
    uint8_t m4[1000];

    /* The seed attribute reproduces numpy: seed 0 -> first uniform 0.5488135039273248. */
    onyx_mt19937 mt;
    onyx_mt_seed(&mt, 0);
    CHECK_NEAR_TOL(onyx_mt_double(&mt), 0.5488135039273248, 1e-16, 0);
    CHECK_NEAR_TOL(onyx_mt_double(&mt), 0.7151893663724195, 1e-16, 0);

    /* Same seed attribute: same mask on every run. */
    th_node *n = th_node_new("Dropout", 13, 1, 2);
    th_attr_int(n, "seed", 42);
    run_and_check(n, ONYX_MODE_TRAIN, in, count, 2.0, m1);
    run_and_check(n, ONYX_MODE_TRAIN, in, count, 2.0, m2);
    CHECK(memcmp(m1, m2, sizeof m1) == 0);
    /* ... and it is numpy's: keep where u >= 0.5 */
    onyx_mt_seed(&mt, 42);
    int bad = 0;
    for (int64_t i = 0; i < count; i++)
        bad += m1[i] != (onyx_mt_double(&mt) >= 0.5);
    CHECK(bad == 0);
    th_node_free(n);

    /* Without a seed: the session generator; a new mask each run, the same sequence again
     * after re-seeding with the same value. */
    n = th_node_new("Dropout", 13, 1, 2);
    th_set_seed(n, 7);
    run_and_check(n, ONYX_MODE_TRAIN, in, count, 2.0, m1);
    run_and_check(n, ONYX_MODE_TRAIN, in, count, 2.0, m2);
    CHECK(memcmp(m1, m2, sizeof m1) != 0);
    th_set_seed(n, 7);
    run_and_check(n, ONYX_MODE_TRAIN, in, count, 2.0, m3);
    run_and_check(n, ONYX_MODE_TRAIN, in, count, 2.0, m4);
    CHECK(memcmp(m1, m3, sizeof m1) == 0);
    CHECK(memcmp(m2, m4, sizeof m2) == 0);
    th_set_seed(n, 8);
    run_and_check(n, ONYX_MODE_TRAIN, in, count, 2.0, m3);
    CHECK(memcmp(m1, m3, sizeof m1) != 0);
    th_node_free(n);

    /* float64 input through the generic path: same seed, same mask as float32. */
    double xd[1000];
    for (int i = 0; i < 1000; i++)
        xd[i] = xbig[i];
    th_node *nf = th_node_new("Dropout", 13, 1, 2);
    th_attr_int(nf, "seed", 5);
    run_and_check(nf, ONYX_MODE_TRAIN, in, count, 2.0, m1);
    th_node *nd = th_node_new("Dropout", 13, 1, 2);
    th_attr_int(nd, "seed", 5);
    onyx_tensor ind = th_tensor(ONYX_DTYPE_F64, 1, dims, xd);
    onyx_error err = {0};
    onyx_tensor out[2];
    CHECK_OK(th_run(nd, ONYX_MODE_TRAIN, &ind, out, &err), err.msg);
    CHECK(out[0].dtype == ONYX_DTYPE_F64 && out[1].dtype == ONYX_DTYPE_BOOL);
    CHECK(memcmp(out[1].data, m1, (size_t)count) == 0);
    const double *yd = out[0].data;
    bad = 0;
    for (int i = 0; i < 1000; i++)
        bad += yd[i] != (m1[i] ? xd[i] * 2.0 : 0.0);
    CHECK(bad == 0);
    th_node_free(nf);
    th_node_free(nd);
}

static void test_old_opsets(void)
{
    const int64_t count = 10000;
    const int64_t dims[1] = {count};
    onyx_tensor in[1] = {th_f32(1, dims, xbig)};
    onyx_error err = {0};
    onyx_tensor out[2];

    /* Opsets 7 and 10: GRAPH never drops; TRAIN drops with the ratio attribute. */
    for (int v = 0; v < 2; v++) {
        th_node *n = th_node_new("Dropout", v ? 10 : 7, 1, 2);
        th_attr_float(n, "ratio", 0.25f);
        CHECK_OK(th_run(n, ONYX_MODE_GRAPH, in, out, &err), err.msg);
        CHECK(memcmp(out[0].data, xbig, sizeof(float) * (size_t)count) == 0);
        /* opset 7's mask has the input's type, opset 10's is bool */
        CHECK(out[1].dtype == (v ? ONYX_DTYPE_BOOL : ONYX_DTYPE_F32));
        CHECK_OK(th_run(n, ONYX_MODE_TRAIN, in, out, &err), err.msg);
        int64_t kept = 0;
        int bad = 0;
        const float *y = out[0].data;
        for (int64_t i = 0; i < count; i++) {
            double mv = onyx_load_f64(out[1].dtype, out[1].data, i);
            kept += mv == 1.0;
            bad += !(mv == 0.0 || mv == 1.0);
            double want = mv == 1.0 ? xbig[i] / (1.0 - 0.25) : 0.0;
            bad += !(fabs(y[i] - want) <= 1e-5 * fabs(want));
        }
        CHECK(bad == 0);
        CHECK(kept > (int64_t)(0.73 * count) && kept < (int64_t)(0.77 * count));
        th_node_free(n);
    }

    /* Opsets 1 and 6: GRAPH drops when is_test == 0, the default. */
    for (int v = 0; v < 2; v++) {
        th_node *n = th_node_new("Dropout", v ? 6 : 1, 1, 2);
        CHECK_OK(th_run(n, ONYX_MODE_GRAPH, in, out, &err), err.msg);
        CHECK(out[1].dtype == ONYX_DTYPE_F32);
        const float *m = out[1].data;
        int64_t kept = 0;
        for (int64_t i = 0; i < count; i++)
            kept += m[i] == 1.0f;
        CHECK(kept > (int64_t)(0.47 * count) && kept < (int64_t)(0.53 * count));
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        CHECK(memcmp(out[0].data, xbig, sizeof(float) * (size_t)count) == 0);
        m = out[1].data;
        kept = 0;
        for (int64_t i = 0; i < count; i++)
            kept += m[i] == 1.0f;
        CHECK(kept == count);
        th_node_free(n);

        n = th_node_new("Dropout", v ? 6 : 1, 1, 1);
        th_attr_int(n, "is_test", 1);
        CHECK_OK(th_run(n, ONYX_MODE_GRAPH, in, out, &err), err.msg);
        CHECK(memcmp(out[0].data, xbig, sizeof(float) * (size_t)count) == 0);
        CHECK_OK(th_run(n, ONYX_MODE_TRAIN, in, out, &err), err.msg);
        CHECK(memcmp(out[0].data, xbig, sizeof(float) * (size_t)count) != 0);
        th_node_free(n);
    }
}

static void test_errors_and_infer(void)
{
    onyx_error err = {0};
    onyx_tensor out[2];
    const float x[4] = {1, 2, 3, 4};
    const int64_t d4[1] = {4};

    /* ratio input out of [0, 1): rejected once its value is known. */
    const float r1 = 1.0f;
    th_node *n = th_node_new("Dropout", 13, 2, 1);
    onyx_tensor in[3] = {th_f32(1, d4, x), th_f32(0, NULL, &r1)};
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(err.msg, "node \"test_node\" (Dropout, opset 13)");
    CHECK_MSG(err.msg, "input ratio is 1, expected a value in [0, 1)");
    const float rneg = -0.1f;
    in[1].data = (void *)&rneg;
    CHECK(th_run(n, ONYX_MODE_TRAIN, in, out, &err) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(err.msg, "input ratio is -0.1");
    /* unknown at load time: fine */
    in[1].data = NULL;
    CHECK_OK(th_infer(n, in, out, &err), err.msg);
    th_node_free(n);

    /* ratio attribute out of range. */
    n = th_node_new("Dropout", 10, 1, 1);
    th_attr_float(n, "ratio", 1.5f);
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_INVALID_MODEL);
    CHECK_MSG(err.msg, "(Dropout, opset 10): attribute ratio is 1.5, expected a value in [0, 1)");
    th_node_free(n);

    /* Wrong types. */
    n = th_node_new("Dropout", 13, 1, 1);
    th_attr_float(n, "seed", 1.0f);
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_INVALID_MODEL);
    CHECK_MSG(err.msg, "attribute seed has type float, expected int");
    th_node_free(n);
    n = th_node_new("Dropout", 6, 1, 1);
    th_attr_float(n, "is_test", 1.0f);
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_INVALID_MODEL);
    CHECK_MSG(err.msg, "attribute is_test has type float, expected int");
    th_node_free(n);
    const int64_t tm = 1;
    n = th_node_new("Dropout", 13, 3, 1);
    in[1] = th_f32(0, NULL, &rneg);
    in[1] = th_omitted();
    in[2] = th_i64(0, NULL, &tm);
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_SHAPE);
    CHECK_MSG(err.msg, "input training_mode has type int64, expected bool");
    th_node_free(n);
    const float r2[2] = {0.1f, 0.2f};
    n = th_node_new("Dropout", 13, 2, 1);
    in[1] = th_f32(1, (const int64_t[]){2}, r2);
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_SHAPE);
    CHECK_MSG(err.msg, "input ratio has shape [2], expected a scalar");
    th_node_free(n);
    const int32_t xi[4] = {1, 2, 3, 4};
    n = th_node_new("Dropout", 13, 1, 1);
    in[0] = th_tensor(ONYX_DTYPE_I32, 1, d4, xi);
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_UNSUPPORTED);
    CHECK_MSG(err.msg, "input data has dtype int32, expected one of: float16, bfloat16, float32, "
                       "float64");
    th_node_free(n);

    /* Arity: opsets before 12 take one input. */
    n = th_node_new("Dropout", 10, 2, 1);
    in[0] = th_f32(1, d4, x);
    in[1] = th_f32(0, NULL, &rneg);
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_INVALID_MODEL);
    CHECK_MSG(err.msg, "has 2 inputs, expected 1");
    th_node_free(n);

    /* Load time: unknown batch dim; mask bool from opset 10, the input's type before. */
    n = th_node_new("Dropout", 13, 3, 2);
    onyx_tensor li[3] = {th_f32(2, (const int64_t[]){-1, 10}, NULL), th_f32(0, NULL, NULL),
                         th_tensor(ONYX_DTYPE_BOOL, 0, NULL, NULL)};
    CHECK_OK(th_infer(n, li, out, &err), err.msg);
    CHECK(out[0].dtype == ONYX_DTYPE_F32 && out[0].rank == 2 && out[0].dims[0] == -1 &&
          out[0].dims[1] == 10);
    CHECK(out[1].dtype == ONYX_DTYPE_BOOL && out[1].rank == 2 && out[1].dims[0] == -1);
    th_node_free(n);
    n = th_node_new("Dropout", 7, 1, 2);
    li[0].rank = -1;
    CHECK_OK(th_infer(n, li, out, &err), err.msg);
    CHECK(out[0].rank == -1 && out[1].rank == -1 && out[1].dtype == ONYX_DTYPE_F32);
    th_node_free(n);
    /* An omitted mask output is left alone. */
    n = th_node_new("Dropout", 13, 1, 2);
    th_set_out_omitted(n, 1);
    li[0] = th_f32(1, d4, x);
    CHECK_OK(th_run(n, ONYX_MODE_TRAIN, li, out, &err), err.msg);
    CHECK(out[1].dtype == ONYX_DTYPE_UNDEFINED);
    th_node_free(n);
}

/* ---- backward ------------------------------------------------------------------------------ */

/* One training step of node t by hand, as the session runs it: infer, forward in `mode` with
 * impl->saved_size bytes of saved memory (pre-filled with 0xAA, so that unwritten bytes show)
 * and a generator seeded with rng_seed, then backward with dout[0] = dy into dx (dout[1], the
 * mask's, NULL) and a generator in another state, so that a backward drawing numbers again
 * could not reproduce the mask. out[] gets malloc'd data, saved the saved buffer: free both. */
typedef struct step {
    onyx_tensor out[2];
    uint8_t *saved;
    size_t saved_size;
} step;

static void step_run(th_node *t, onyx_mode mode, const onyx_tensor *in, const float *dy, float *dx,
                     step *s)
{
    onyx_node *n = th_onyx_node(t);
    onyx_error err = {0};
    memset(s, 0, sizeof(*s));
    CHECK_OK(th_infer(t, in, s->out, &err), err.msg);
    for (int j = 0; j < n->n_out; j++)
        if (n->out[j] >= 0)
            s->out[j].data = calloc(1, onyx_nbytes(&s->out[j]) + 1);
    s->saved_size = n->impl->saved_size(n, in, s->out);
    s->saved = malloc(s->saved_size + 1);
    memset(s->saved, 0xAA, s->saved_size + 1);
    onyx_rng rng;
    onyx_rng_seed(&rng, 5);
    onyx_kctx ctx = {.mode = mode, .rng = &rng, .saved = s->saved};
    n->impl->forward(n, &ctx, in, s->out);
    onyx_tensor dout[2] = {s->out[0], s->out[1]};
    dout[0].data = (void *)(uintptr_t)dy;
    dout[1].data = NULL;
    onyx_tensor din[3] = {in[0]};
    for (int i = 1; i < n->n_in; i++) {
        din[i] = in[i];
        din[i].data = NULL; /* ratio and training_mode take no gradient */
    }
    din[0].data = dx;
    onyx_rng_seed(&rng, 6);
    n->impl->backward(n, &ctx, in, s->out, dout, din);
}

static void step_free(step *s)
{
    free(s->out[0].data);
    free(s->out[1].data);
    free(s->saved);
}

/* dx (started at 1) must be 1 + dy * keep[i] * scale exactly, keep read from the mask output
 * (of any type); the saved mask must be that mask, byte for byte. Returns the kept count. */
static int64_t check_step(const step *s, const float *dy, const float *dx, int64_t count,
                          float scale)
{
    int bad = 0;
    int64_t kept = 0;
    CHECK(s->saved_size == (size_t)count);
    for (int64_t i = 0; i < count; i++) {
        bool k = onyx_load_f64(s->out[1].dtype, s->out[1].data, i) != 0.0;
        kept += k;
        bad += s->saved[i] != (k ? 1 : 0);
        bad += dx[i] != 1.0f + (dy[i] * (k ? 1.0f : 0.0f)) * scale;
    }
    CHECK(bad == 0);
    CHECK(s->saved[count] == 0xAA); /* nothing past the declared size */
    return kept;
}

static void test_backward_mask(void)
{
    enum { COUNT = 2000 };
    const int64_t dims[1] = {COUNT};
    static float dy[COUNT];
    static float dx[COUNT];
    for (int i = 0; i < COUNT; i++)
        dy[i] = 0.5f + (float)(i % 13);
    const float r3 = 0.3f;
    const float r0 = 0.0f;
    const uint8_t t_true = 1;
    const uint8_t t_false = 0;
    const float scale3 = 1.0f / (1.0f - 0.3f);
    step s;

    struct {
        const char *what;
        int64_t opset;
        int n_in;
        onyx_mode mode;
        const float *ratio;   /* ratio input, or NULL */
        const uint8_t *train; /* training_mode input, or NULL */
        bool seed;
        float ratio_attr; /* > 0: the attribute (opsets < 12) */
        float scale;      /* 0: does not drop */
    } cases[] = {
        {"TRAIN, seed", 13, 2, ONYX_MODE_TRAIN, &r3, NULL, true, 0, scale3},
        {"TRAIN, session generator", 13, 2, ONYX_MODE_TRAIN, &r3, NULL, false, 0, scale3},
        {"TRAIN, default ratio", 12, 1, ONYX_MODE_TRAIN, NULL, NULL, false, 0, 2.0f},
        {"GRAPH, training_mode true", 13, 3, ONYX_MODE_GRAPH, &r3, &t_true, true, 0, scale3},
        {"GRAPH, training_mode false", 13, 3, ONYX_MODE_GRAPH, &r3, &t_false, true, 0, 0},
        {"INFER", 13, 3, ONYX_MODE_INFER, &r3, &t_true, true, 0, 0},
        {"TRAIN, ratio 0", 13, 2, ONYX_MODE_TRAIN, &r0, NULL, false, 0, 0},
        {"TRAIN, opset 10 attribute", 10, 1, ONYX_MODE_TRAIN, NULL, NULL, false, 0.25f,
         1.0f / 0.75f},
        {"TRAIN, opset 7 float mask", 7, 1, ONYX_MODE_TRAIN, NULL, NULL, false, 0.25f,
         1.0f / 0.75f},
        {"GRAPH, opset 6 is_test 0", 6, 1, ONYX_MODE_GRAPH, NULL, NULL, false, 0, 2.0f},
        {"GRAPH, opset 7", 7, 1, ONYX_MODE_GRAPH, NULL, NULL, false, 0, 0},
    };
    for (size_t ci = 0; ci < sizeof(cases) / sizeof(cases[0]); ci++) {
        th_node *n = th_node_new("Dropout", cases[ci].opset, cases[ci].n_in, 2);
        if (cases[ci].seed)
            th_attr_int(n, "seed", 11);
        if (cases[ci].ratio_attr > 0)
            th_attr_float(n, "ratio", cases[ci].ratio_attr);
        onyx_tensor in[3] = {th_f32(1, dims, xbig), th_f32(0, NULL, cases[ci].ratio),
                             th_tensor(ONYX_DTYPE_BOOL, 0, NULL, cases[ci].train)};
        for (int i = 0; i < COUNT; i++)
            dx[i] = 1.0f;
        int failed_before = check_failed_;
        step_run(n, cases[ci].mode, in, dy, dx, &s);
        bool drops = cases[ci].scale != 0;
        int64_t kept = check_step(&s, dy, dx, COUNT, drops ? cases[ci].scale : 1.0f);
        if (drops)
            CHECK(kept > COUNT / 4 && kept < COUNT * 9 / 10);
        else
            CHECK(kept == COUNT);
        if (check_failed_ > failed_before)
            fprintf(stderr, "dropout backward case: %s\n", cases[ci].what);
        step_free(&s);
        th_node_free(n);
    }

    /* float64 data: the generic kernel saves the mask too (its backward is never called: no
     * float64 training). */
    static double xd[COUNT];
    for (int i = 0; i < COUNT; i++)
        xd[i] = xbig[i];
    th_node *n = th_node_new("Dropout", 13, 2, 2);
    th_attr_int(n, "seed", 11);
    onyx_tensor ind[2] = {th_tensor(ONYX_DTYPE_F64, 1, dims, xd), th_f32(0, NULL, &r3)};
    onyx_node *node = th_onyx_node(n);
    onyx_error err = {0};
    onyx_tensor out[2];
    CHECK_OK(th_infer(n, ind, out, &err), err.msg);
    CHECK(node->impl->saved_size(node, ind, out) == COUNT);
    out[0].data = malloc(sizeof(double) * COUNT);
    out[1].data = malloc(COUNT);
    uint8_t *saved = malloc(COUNT);
    memset(saved, 0xAA, COUNT);
    onyx_kctx ctx = {.mode = ONYX_MODE_TRAIN, .saved = saved};
    node->impl->forward(node, &ctx, ind, out);
    CHECK(memcmp(saved, out[1].data, COUNT) == 0);
    free(out[0].data);
    free(out[1].data);
    free(saved);
    th_node_free(n);

    /* Y only (no mask output): the mask still goes to saved memory, and backward uses it. */
    n = th_node_new("Dropout", 13, 2, 1);
    th_attr_int(n, "seed", 11);
    onyx_tensor in1[2] = {th_f32(1, dims, xbig), th_f32(0, NULL, &r3)};
    for (int i = 0; i < COUNT; i++)
        dx[i] = 0.0f;
    step_run(n, ONYX_MODE_TRAIN, in1, dy, dx, &s);
    const float *y = s.out[0].data;
    int bad = 0;
    int64_t kept = 0;
    for (int i = 0; i < COUNT; i++) {
        bool k = y[i] != 0.0f; /* xbig is never 0 */
        kept += k;
        bad += s.saved[i] != k;
        bad += dx[i] != (dy[i] * (k ? 1.0f : 0.0f)) * scale3;
    }
    CHECK(bad == 0);
    CHECK(kept > COUNT / 2 && kept < COUNT * 9 / 10);
    step_free(&s);
    th_node_free(n);
    CHECK(onyx_op_find("", "Dropout", 13)->impl->grad_inputs == 0x1u);
}

/* Finite differences through the mask: the grad check re-seeds the generator before every
 * forward, so a mask drawn without a seed attribute is stable too. */
static void test_grad_check(void)
{
    enum { COUNT = 60 };
    const int64_t dims[2] = {6, 10};
    float x[COUNT];
    for (int i = 0; i < COUNT; i++)
        x[i] = xbig[i];
    const float r = 0.4f;
    const float r0 = 0.0f;
    const uint8_t t_true = 1;
    int runs = 0;
    int bad = 0;
    for (int v = 0; v < 8; v++) {
        th_node *n;
        onyx_mode mode = ONYX_MODE_TRAIN;
        onyx_tensor in[3] = {th_f32(2, dims, x), th_f32(0, NULL, &r),
                             th_tensor(ONYX_DTYPE_BOOL, 0, NULL, &t_true)};
        switch (v) {
        case 0: /* seed attribute, mask output */
            n = th_node_new("Dropout", 13, 2, 2);
            th_attr_int(n, "seed", 3);
            break;
        case 1: /* session generator, Y only */
            n = th_node_new("Dropout", 13, 2, 1);
            th_set_seed(n, 4);
            break;
        case 2: /* GRAPH mode, training_mode true */
            n = th_node_new("Dropout", 13, 3, 2);
            mode = ONYX_MODE_GRAPH;
            break;
        case 3: /* opset 10, ratio attribute */
            n = th_node_new("Dropout", 10, 1, 2);
            th_attr_float(n, "ratio", 0.4f);
            break;
        case 4: /* opset 7, mask of the input's type */
            n = th_node_new("Dropout", 7, 1, 2);
            th_attr_float(n, "ratio", 0.5f);
            break;
        case 5: /* inference: identity */
            n = th_node_new("Dropout", 13, 2, 2);
            mode = ONYX_MODE_INFER;
            break;
        case 6: /* ratio 0: identity */
            n = th_node_new("Dropout", 13, 2, 2);
            in[1].data = (void *)&r0;
            break;
        default: /* opset 6, is_test 0, GRAPH */
            n = th_node_new("Dropout", 6, 1, 1);
            mode = ONYX_MODE_GRAPH;
            break;
        }
        /* out_mask 1: the mask output (bool or 0/1 floats) takes no gradient */
        int res = th_grad_check(n, mode, in, 0x1u, 0x1u, 1e-2, 1e-3, 1e-2, NULL);
        if (res != 0)
            fprintf(stderr, "dropout grad check variant %d: %d\n", v, res);
        bad += res != 0;
        runs++;
        th_node_free(n);
    }
    printf("dropout grad checks: %d, failed %d\n", runs, bad);
    CHECK(bad == 0);
}

/* onyx_rng_keep (Dropout's mask from the session generator) makes the decisions of as many
 * onyx_rng_double draws compared with p, for ratios that are and are not dyadic, 0 and 1, and
 * leaves the generator where those draws would. */
static void test_rng_keep(void)
{
    const double ps[] = {0.0, 0.1, 0.25, 0.5, 0.7, 0.999, 1.0 - 0x1p-53, 1.0, 0.3f};
    enum { N = 5000 };
    uint8_t keep[N];
    int same = 0;
    int total = 0;
    for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++) {
        onyx_rng a;
        onyx_rng b;
        onyx_rng_seed(&a, 1234 + k);
        onyx_rng_seed(&b, 1234 + k);
        onyx_rng_keep(&a, ps[k], keep, N);
        for (int i = 0; i < N; i++, total++)
            same += keep[i] == (onyx_rng_double(&b) >= ps[k]);
        CHECK(memcmp(a.s, b.s, sizeof a.s) == 0);
    }
    /* p exactly on a draw: the decision at the boundary is u >= p */
    onyx_rng c;
    onyx_rng_seed(&c, 99);
    onyx_rng d = c;
    double u = onyx_rng_double(&d);
    onyx_rng_keep(&c, u, keep, 1);
    CHECK(keep[0] == 1);
    onyx_rng_seed(&c, 99);
    onyx_rng_keep(&c, nextafter(u, 2.0), keep, 1);
    CHECK(keep[0] == 0);
    CHECK(same == total);
    printf("rng keep: %d of %d decisions as onyx_rng_double >= p\n", same, total);
}

int main(void)
{
    test_rng_keep();
    fill_x();
    test_conformance();
    test_train_mode_matches_reference();
    test_modes_opset13();
    test_seed_and_rng();
    test_old_opsets();
    test_errors_and_infer();
    test_backward_mask();
    test_grad_check();
    return check_report();
}
