/* test_train.c — the trainer end to end.
 *  - whole-graph gradients (tests/fixtures/train_graphs: Gemm/BatchNorm/Relu, MatMul/Add/
 *    LayerNorm/Tanh/Sigmoid/Concat/Unsqueeze/Reshape/Mul/Gemm/LogSoftmax, Gemm/Softplus/Mul/Add/
 *    Sqrt/Sub/MatMul) against central finite differences of the loss in training mode;
 *  - training makes the loss fall; an SGD step moves parameters by exactly -lr * gradient;
 *  - bad input: wrong target dtype/shape, labels out of range, NaN in the batch, a loss that
 *    becomes NaN (parameters untouched, the message names the step and where it happened). */
#include "check.h"
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 12345;

static float frand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static const char *fixture(const char *name, char *buf, size_t size)
{
    snprintf(buf, size, "%s/tests/fixtures/train_graphs/%s.onnx", ONYX_SOURCE_DIR, name);
    return buf;
}

/* Checks every trained parameter's gradient (up to 10 elements each) against finite
 * differences of the loss in training mode. */
static void grad_check(const char *name, onyx_loss loss, int64_t n_in, int64_t n_out)
{
    char path[512];
    onyx_train_options o;
    onyx_train_options_init(&o);
    o.loss = loss;
    onyx_trainer *t = NULL;
    onyx_error err;
    onyx_status st = onyx_trainer_create(fixture(name, path, sizeof path), &o, &t, &err);
    CHECK_OK(st, err.msg);
    if (st != ONYX_OK)
        return;
    enum { N = 5 };
    float x[N * 8];
    float yf[N * 4];
    int64_t yi[N];
    for (int i = 0; i < N * n_in; i++)
        x[i] = frand() * 1.5f;
    for (int i = 0; i < N * n_out; i++)
        yf[i] = frand();
    for (int i = 0; i < N; i++)
        yi[i] = (int64_t)(i * 7 % n_out);
    onyx_tensor xt = {ONYX_DTYPE_F32, 2, {N, n_in}, x};
    onyx_tensor yt = loss == ONYX_LOSS_MSE ? (onyx_tensor){ONYX_DTYPE_F32, 2, {N, n_out}, yf}
                                           : (onyx_tensor){ONYX_DTYPE_I64, 1, {N}, yi};
    float l0;
    st = onyx_trainer_gradients(t, &xt, &yt, ONYX_MODE_TRAIN, &l0);
    CHECK_OK(st, onyx_trainer_errmsg(t));
    if (st != ONYX_OK) {
        onyx_trainer_destroy(t);
        return;
    }
    /* Gradients are written afresh each call, never added to the previous call's. */
    size_t np = onyx_trainer_param_count(t);
    size_t total = 0;
    for (size_t k = 0; k < np; k++) {
        int64_t numel;
        onyx_trainer_param_name(t, k, &numel);
        total += (size_t)numel;
    }
    float *first = malloc(sizeof(float) * (total + 1));
    for (size_t k = 0, off = 0; k < np; k++) {
        int64_t numel;
        onyx_trainer_param_name(t, k, &numel);
        memcpy(first + off, onyx_trainer_grad_ptr(t, k), sizeof(float) * (size_t)numel);
        off += (size_t)numel;
    }
    float l1;
    CHECK_OK(onyx_trainer_gradients(t, &xt, &yt, ONYX_MODE_TRAIN, &l1), onyx_trainer_errmsg(t));
    size_t same = 0;
    for (size_t k = 0, off = 0; k < np; k++) {
        int64_t numel;
        onyx_trainer_param_name(t, k, &numel);
        same += memcmp(first + off, onyx_trainer_grad_ptr(t, k), sizeof(float) * (size_t)numel) == 0;
        off += (size_t)numel;
    }
    CHECK(same == np);
    free(first);
    int checked = 0;
    int bad = 0;
    for (size_t k = 0; k < onyx_trainer_param_count(t); k++) {
        int64_t numel;
        const char *pname = onyx_trainer_param_name(t, k, &numel);
        float *p = onyx_trainer_param_ptr(t, k);
        const float *g = onyx_trainer_grad_ptr(t, k);
        float *gcopy = malloc(sizeof(float) * (size_t)numel);
        memcpy(gcopy, g, sizeof(float) * (size_t)numel);
        int64_t stride = numel > 10 ? numel / 10 : 1;
        for (int64_t e = 0; e < numel; e += stride) {
            const float eps = 1e-2f;
            float p0 = p[e];
            float lp;
            float lm;
            p[e] = p0 + eps;
            CHECK_OK(onyx_trainer_loss_at(t, &xt, &yt, ONYX_MODE_TRAIN, &lp), onyx_trainer_errmsg(t));
            p[e] = p0 - eps;
            CHECK_OK(onyx_trainer_loss_at(t, &xt, &yt, ONYX_MODE_TRAIN, &lm), onyx_trainer_errmsg(t));
            p[e] = p0;
            double num = ((double)lp - lm) / ((double)(p0 + eps) - (double)(p0 - eps));
            checked++;
            if (!(fabs(gcopy[e] - num) <= 2e-4 + 2e-2 * fabs(num))) {
                if (bad++ < 5)
                    fprintf(stderr, "%s: d loss / d %s[%lld]: analytic %.6g, numeric %.6g\n",
                            name, pname, (long long)e, gcopy[e], num);
            }
        }
        free(gcopy);
    }
    CHECK(bad == 0);
    CHECK(checked > 20);
    printf("%s: %zu parameters, %d gradient elements checked against finite differences\n", name,
           onyx_trainer_param_count(t), checked);
    onyx_trainer_destroy(t);
}

/* An MLP from onyx_mlp_write trained on a separable toy problem: the loss falls, accuracy rises;
 * one plain SGD step moves each parameter by exactly -lr * gradient. */
static void train_toy(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/tmp_test_train_mlp.onnx", ONYX_BINARY_DIR);
    int64_t layers[] = {4, 16, 3};
    onyx_mlp_spec spec = {layers, 3, "relu", 0.0f, 7};
    onyx_error err;
    CHECK_OK(onyx_mlp_write(&spec, path, &err), err.msg);
    onyx_train_options o;
    onyx_train_options_init(&o);
    o.optimizer = ONYX_OPTIMIZER_SGD;
    o.lr = 0.1f;
    onyx_trainer *t = NULL;
    onyx_status st = onyx_trainer_create(path, &o, &t, &err);
    CHECK_OK(st, err.msg);
    if (st != ONYX_OK)
        return;
    CHECK(onyx_trainer_param_count(t) == 4);
    enum { N = 30 };
    float x[N * 4];
    int64_t y[N];
    for (int i = 0; i < N; i++) {
        y[i] = i % 3;
        for (int j = 0; j < 4; j++)
            x[i * 4 + j] = (j == y[i] ? 2.0f : 0.0f) + 0.3f * frand();
    }
    onyx_tensor xt = {ONYX_DTYPE_F32, 2, {N, 4}, x};
    onyx_tensor yt = {ONYX_DTYPE_I64, 1, {N}, y};

    /* one step = -lr * gradient, exactly as computed by the gradient pass */
    float loss0;
    CHECK_OK(onyx_trainer_gradients(t, &xt, &yt, ONYX_MODE_TRAIN, &loss0), onyx_trainer_errmsg(t));
    int64_t numel;
    onyx_trainer_param_name(t, 0, &numel);
    float *before = malloc(sizeof(float) * (size_t)numel);
    float *grad = malloc(sizeof(float) * (size_t)numel);
    memcpy(before, onyx_trainer_param_ptr(t, 0), sizeof(float) * (size_t)numel);
    memcpy(grad, onyx_trainer_grad_ptr(t, 0), sizeof(float) * (size_t)numel);
    float loss;
    CHECK_OK(onyx_trainer_step(t, &xt, &yt, &loss), onyx_trainer_errmsg(t));
    CHECK(loss == loss0);
    const float *after = onyx_trainer_param_ptr(t, 0);
    int exact = 0;
    for (int64_t i = 0; i < numel; i++)
        exact += after[i] == before[i] - 0.1f * grad[i];
    CHECK(exact == numel);
    free(before);
    free(grad);

    for (int i = 0; i < 60; i++)
        CHECK_OK(onyx_trainer_step(t, &xt, &yt, &loss), onyx_trainer_errmsg(t));
    float eval_loss;
    int64_t correct;
    CHECK_OK(onyx_trainer_eval(t, &xt, &yt, &eval_loss, &correct), onyx_trainer_errmsg(t));
    printf("toy: loss %.4f -> %.4f (eval %.4f), %lld of %d correct\n", loss0, loss, eval_loss,
           (long long)correct, N);
    CHECK(loss < loss0 * 0.3f);
    CHECK(correct >= N - 1);
    onyx_train_progress p;
    onyx_trainer_progress(t, &p);
    CHECK(p.step == 61);

    /* bad input */
    float yf[N];
    onyx_tensor wrong_dtype = {ONYX_DTYPE_F32, 1, {N}, yf};
    CHECK(onyx_trainer_step(t, &xt, &wrong_dtype, NULL) == ONYX_ERR_SHAPE);
    CHECK_MSG(onyx_trainer_errmsg(t), "targets have dtype float32; the ce loss takes int64");
    onyx_tensor wrong_shape = {ONYX_DTYPE_I64, 1, {N - 1}, y};
    CHECK(onyx_trainer_step(t, &xt, &wrong_shape, NULL) == ONYX_ERR_SHAPE);
    CHECK_MSG(onyx_trainer_errmsg(t), "expected [30]");
    int64_t ybad[N];
    memcpy(ybad, y, sizeof ybad);
    ybad[4] = 3;
    onyx_tensor out_of_range = {ONYX_DTYPE_I64, 1, {N}, ybad};
    CHECK(onyx_trainer_step(t, &xt, &out_of_range, NULL) != ONYX_OK);
    CHECK_MSG(onyx_trainer_errmsg(t), "3");
    onyx_tensor wrong_x = {ONYX_DTYPE_F32, 2, {N, 5}, x};
    CHECK(onyx_trainer_step(t, &wrong_x, &yt, NULL) == ONYX_ERR_SHAPE);
    CHECK_MSG(onyx_trainer_errmsg(t), "input \"input\" has shape [30,5], expected [batch,4]");
    onyx_trainer_progress(t, &p);
    CHECK(p.step == 61); /* failed steps changed nothing */

    /* NaN in the batch: the step is refused and names the input */
    float xnan[N * 4];
    memcpy(xnan, x, sizeof xnan);
    xnan[7] = NAN;
    onyx_tensor nan_x = {ONYX_DTYPE_F32, 2, {N, 4}, xnan};
    float *p0 = malloc(sizeof(float) * 64);
    memcpy(p0, onyx_trainer_param_ptr(t, 0), sizeof(float) * 64);
    CHECK(onyx_trainer_step(t, &nan_x, &yt, NULL) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(onyx_trainer_errmsg(t), "step 62: the loss is nan; the input batch has a non-finite "
                                      "value at element 7");
    CHECK(memcmp(p0, onyx_trainer_param_ptr(t, 0), sizeof(float) * 64) == 0);
    free(p0);
    onyx_trainer_destroy(t);

    /* A learning rate that blows up: the step that hits NaN is refused with its number. */
    o.lr = 1e30f;
    st = onyx_trainer_create(path, &o, &t, &err);
    CHECK_OK(st, err.msg);
    int failed_at = -1;
    for (int i = 0; i < 20 && failed_at < 0; i++)
        if (onyx_trainer_step(t, &xt, &yt, &loss) != ONYX_OK)
            failed_at = i + 1;
    CHECK(failed_at > 0);
    CHECK_MSG(onyx_trainer_errmsg(t), "step ");
    CHECK_MSG(onyx_trainer_errmsg(t), "parameters were not updated");
    printf("lr 1e30: stopped at step %d: %s\n", failed_at, onyx_trainer_errmsg(t));
    onyx_trainer_destroy(t);

    /* Options are checked. */
    onyx_train_options_init(&o);
    o.momentum = 1.5f;
    CHECK(onyx_trainer_create(path, &o, &t, &err) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(err.msg, "momentum 1.5 must be in [0, 1)");
    onyx_train_options_init(&o);
    const char *all[] = {"fc*"};
    o.freeze = all;
    o.n_freeze = 1;
    CHECK(onyx_trainer_create(path, &o, &t, &err) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(err.msg, "nothing to train");
    remove(path);
}

/* Training S steps straight equals training k, saving, destroying, and resuming for S - k:
 * same loss at every step, bit-identical parameters (Dropout on, Adam, the session generator and
 * optimizer state restored from the checkpoint). Then: the exported model, loaded by a plain
 * session, gives the trainer's own predictions; a corrupt checkpoint is refused and changes
 * nothing. */
static void resume_exact(void)
{
    char model[512];
    char ckpt[512];
    char exported[512];
    snprintf(model, sizeof model, "%s/tmp_test_train_resume.onnx", ONYX_BINARY_DIR);
    snprintf(ckpt, sizeof ckpt, "%s/tmp_test_train_resume.zip", ONYX_BINARY_DIR);
    snprintf(exported, sizeof exported, "%s/tmp_test_train_export.onnx", ONYX_BINARY_DIR);
    int64_t layers[] = {4, 16, 16, 3};
    onyx_mlp_spec spec = {layers, 4, "tanh", 0.25f, 3};
    onyx_error err;
    CHECK_OK(onyx_mlp_write(&spec, model, &err), err.msg);
    onyx_train_options o;
    onyx_train_options_init(&o);
    o.optimizer = ONYX_OPTIMIZER_ADAM;
    o.lr = 0.01f;
    o.schedule = ONYX_SCHEDULE_COSINE;
    o.total_steps = 10;
    o.clip_grad_norm = 1.0f;
    o.seed = 99;
    enum { N = 12, S = 10, K = 4 };
    float x[N * 4];
    int64_t y[N];
    for (int i = 0; i < N * 4; i++)
        x[i] = frand();
    for (int i = 0; i < N; i++)
        y[i] = i % 3;
    onyx_tensor xt = {ONYX_DTYPE_F32, 2, {N, 4}, x};
    onyx_tensor yt = {ONYX_DTYPE_I64, 1, {N}, y};

    onyx_trainer *a = NULL;
    CHECK_OK(onyx_trainer_create(model, &o, &a, &err), err.msg);
    if (a == NULL)
        return;
    float straight[S];
    for (int i = 0; i < S; i++)
        CHECK_OK(onyx_trainer_step(a, &xt, &yt, &straight[i]), onyx_trainer_errmsg(a));

    onyx_trainer *b = NULL;
    CHECK_OK(onyx_trainer_create(model, &o, &b, &err), err.msg);
    float resumed[S];
    for (int i = 0; i < K; i++)
        CHECK_OK(onyx_trainer_step(b, &xt, &yt, &resumed[i]), onyx_trainer_errmsg(b));
    onyx_trainer_set_progress(b, 2, 5, 77);
    CHECK_OK(onyx_trainer_save(b, ckpt), onyx_trainer_errmsg(b));
    onyx_trainer_destroy(b);

    onyx_train_options other = o;
    other.optimizer = ONYX_OPTIMIZER_SGD; /* the checkpoint's optimizer wins */
    other.seed = 1;
    onyx_trainer *c = NULL;
    CHECK_OK(onyx_trainer_create(model, &other, &c, &err), err.msg);
    CHECK_OK(onyx_trainer_load(c, ckpt), onyx_trainer_errmsg(c));
    onyx_train_progress p;
    onyx_trainer_progress(c, &p);
    CHECK(p.step == K && p.epoch == 2 && p.position == 5 && p.data_seed == 77);
    for (int i = K; i < S; i++)
        CHECK_OK(onyx_trainer_step(c, &xt, &yt, &resumed[i]), onyx_trainer_errmsg(c));
    int same_loss = 0;
    for (int i = 0; i < S; i++)
        same_loss += memcmp(&straight[i], &resumed[i], sizeof(float)) == 0;
    CHECK(same_loss == S);
    int same_params = 0;
    for (size_t k = 0; k < onyx_trainer_param_count(a); k++) {
        int64_t numel;
        onyx_trainer_param_name(a, k, &numel);
        same_params += memcmp(onyx_trainer_param_ptr(a, k), onyx_trainer_param_ptr(c, k),
                              sizeof(float) * (size_t)numel) == 0;
    }
    CHECK(same_params == (int)onyx_trainer_param_count(a));
    printf("resume: %d of %d losses and %d of %zu parameter tensors bit-identical after resuming "
           "at step %d\n", same_loss, S, same_params, onyx_trainer_param_count(a), K);

    /* the export runs anywhere and gives the trainer's predictions (dropout off) */
    CHECK_OK(onyx_trainer_export(c, exported), onyx_trainer_errmsg(c));
    onyx_tensor pred;
    memset(&pred, 0, sizeof pred);
    CHECK_OK(onyx_trainer_predict(c, &xt, &pred), onyx_trainer_errmsg(c));
    float mine[N * 3];
    memcpy(mine, pred.data, sizeof mine);
    onyx_model *m = NULL;
    CHECK_OK(onyx_model_load(exported, &m, &err), err.msg);
    if (m) {
        onyx_session *s = NULL;
        CHECK_OK(onyx_session_create(m, NULL, &s, &err), err.msg);
        const char *names[] = {"input"};
        onyx_tensor out;
        memset(&out, 0, sizeof out);
        CHECK_OK(onyx_session_run(s, 1, names, &xt, 1, NULL, &out), onyx_session_errmsg(s));
        CHECK(out.data && memcmp(out.data, mine, sizeof mine) == 0);
        onyx_session_destroy(s);
        onyx_model_destroy(m);
    }

    /* corrupt checkpoints are refused and leave the trainer as it was */
    FILE *fp = fopen(ckpt, "r+b");
    CHECK(fp != NULL);
    if (fp) {
        fseek(fp, 200, SEEK_SET);
        fputc(0x5a, fp);
        fputc(0xa5, fp);
        fclose(fp);
    }
    float before[16];
    memcpy(before, onyx_trainer_param_ptr(c, 0), sizeof before);
    CHECK(onyx_trainer_load(c, ckpt) != ONYX_OK);
    CHECK_MSG(onyx_trainer_errmsg(c), ckpt);
    CHECK(memcmp(before, onyx_trainer_param_ptr(c, 0), sizeof before) == 0);
    CHECK(onyx_trainer_load(c, model) != ONYX_OK); /* not a checkpoint at all */
    CHECK_MSG(onyx_trainer_errmsg(c), "not a checkpoint");
    onyx_trainer_destroy(a);
    onyx_trainer_destroy(c);
    remove(model);
    remove(ckpt);
    remove(exported);
}

/* Plain SGD updates each Gemm's weight inside the weight-gradient GEMM (runtime/train.c): the same
 * bits as the unfused step (a clip threshold never reached turns fusion off), step after step; a
 * batch deeper than one K slice (300 rows) falls back to the unfused step, as must a gradient
 * that is not surely finite. */
static void fused_sgd(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/tmp_test_fused_mlp.onnx", ONYX_BINARY_DIR);
    int64_t layers[] = {20, 64, 33, 5};
    onyx_mlp_spec spec = {layers, 4, "relu", 0.0f, 3};
    onyx_error err;
    CHECK_OK(onyx_mlp_write(&spec, path, &err), err.msg);
    onyx_trainer *t[2] = {NULL, NULL};
    for (int k = 0; k < 2; k++) {
        onyx_train_options o;
        onyx_train_options_init(&o);
        o.optimizer = ONYX_OPTIMIZER_SGD;
        o.lr = 0.05f;
        o.threads = 2;
        o.clip_grad_norm = k == 0 ? 0.0f : 1e30f;
        CHECK_OK(onyx_trainer_create(path, &o, &t[k], &err), err.msg);
    }
    if (t[0] == NULL || t[1] == NULL) {
        onyx_trainer_destroy(t[0]);
        onyx_trainer_destroy(t[1]);
        return;
    }
    enum { MAXN = 300 };
    float *x = malloc(sizeof(float) * MAXN * 20);
    int64_t y[MAXN];
    int same_steps = 0;
    int fused_steps = 0;
    int steps = 0;
    for (int s = 0; s < 12; s++) {
        int64_t n = s == 5 ? MAXN : 64 - s; /* step 5: 300 rows, more than one K slice */
        for (int64_t i = 0; i < n * 20; i++)
            x[i] = frand() * 2.0f;
        for (int64_t i = 0; i < n; i++)
            y[i] = (int64_t)((frand() + 1.0f) * 2.5f) % 5;
        onyx_tensor xt = {ONYX_DTYPE_F32, 2, {n, 20}, x};
        onyx_tensor yt = {ONYX_DTYPE_I64, 1, {n}, y};
        float loss[2];
        for (int k = 0; k < 2; k++)
            CHECK_OK(onyx_trainer_step(t[k], &xt, &yt, &loss[k]), onyx_trainer_errmsg(t[k]));
        int fused = onyx_trainer_fused_count(t[0]);
        CHECK(onyx_trainer_fused_count(t[1]) == 0);
        CHECK(fused == (s == 5 ? 0 : 3));
        fused_steps += fused == 3;
        bool same = memcmp(&loss[0], &loss[1], sizeof(float)) == 0;
        for (size_t k = 0; k < onyx_trainer_param_count(t[0]); k++) {
            int64_t numel;
            onyx_trainer_param_name(t[0], k, &numel);
            same = same && memcmp(onyx_trainer_param_ptr(t[0], k), onyx_trainer_param_ptr(t[1], k),
                                  sizeof(float) * (size_t)numel) == 0;
        }
        same_steps += same;
        steps++;
    }
    CHECK(same_steps == steps);
    printf("fused sgd: %d of %d steps bit-identical to the unfused update (%d fused)\n",
           same_steps, steps, fused_steps);
    /* a step whose gradient cannot be bounded (an infinite input) is refused, as unfused */
    x[7] = INFINITY;
    onyx_tensor xt = {ONYX_DTYPE_F32, 2, {8, 20}, x};
    onyx_tensor yt = {ONYX_DTYPE_I64, 1, {8}, y};
    int64_t numel;
    onyx_trainer_param_name(t[0], 0, &numel);
    float *before = malloc(sizeof(float) * (size_t)numel);
    memcpy(before, onyx_trainer_param_ptr(t[0], 0), sizeof(float) * (size_t)numel);
    CHECK(onyx_trainer_step(t[0], &xt, &yt, NULL) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(onyx_trainer_errmsg(t[0]), "not updated");
    CHECK(memcmp(before, onyx_trainer_param_ptr(t[0], 0), sizeof(float) * (size_t)numel) == 0);
    free(before);
    free(x);
    onyx_trainer_destroy(t[0]);
    onyx_trainer_destroy(t[1]);
    remove(path);
}

int main(void)
{
    grad_check("mlp_bn", ONYX_LOSS_CE, 6, 4);
    grad_check("mixed", ONYX_LOSS_CE, 6, 3);
    grad_check("regress", ONYX_LOSS_MSE, 5, 2);
    grad_check("tied", ONYX_LOSS_CE, 6, 3);
    train_toy();
    fused_sgd();
    resume_exact();
    return check_report();
}
