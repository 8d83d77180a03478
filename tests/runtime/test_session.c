/* test_session.c — the public API end to end on tests/bad/valid_small.onnx
 * (Gemm -> Relu -> Mul by a Constant -> Reshape -> Softmax), against a reference computed here in
 * double precision; every misuse of run gives a clear error and leaves the session usable; repeated
 * runs with the same shapes allocate nothing (malloc and friends are wrapped at link time);
 * zero-copy runs with bound buffers write the output in place (internal.h is included only to
 * see that the session never allocated a buffer of its own for it) and allocate nothing. */
#include "alloc_count.h"
#include "check.h"
#include "internal.h"
#include "onyx.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- reference -------------------------------------------------------------------------------- */

static void reference(const float *x, int64_t batch, double *y)
{
    for (int64_t b = 0; b < batch; b++) {
        double m[3];
        double mx = -INFINITY;
        for (int o = 0; o < 3; o++) {
            double h = (o == 0 ? 0.5 : o == 1 ? -0.5 : 0.25);
            for (int k = 0; k < 4; k++)
                h += x[b * 4 + k] * (double)(float)(0.1 * (o * 4 + k));
            m[o] = (h > 0 ? h : 0) * 2.0;
            mx = m[o] > mx ? m[o] : mx;
        }
        double sum = 0;
        for (int o = 0; o < 3; o++)
            sum += exp(m[o] - mx);
        for (int o = 0; o < 3; o++)
            y[b * 3 + o] = exp(m[o] - mx) / sum;
    }
}

static const char *model_path(void)
{
    return ONYX_SOURCE_DIR "/tests/bad/valid_small.onnx";
}

static void check_info(const onyx_model *m)
{
    CHECK(onyx_model_input_count(m) == 1);
    CHECK(onyx_model_output_count(m) == 1);
    onyx_value_info vi;
    CHECK(onyx_model_input(m, 0, &vi) == ONYX_OK);
    CHECK(strcmp(vi.name, "x") == 0);
    CHECK(vi.dtype == ONYX_DTYPE_F32);
    CHECK(vi.rank == 2 && vi.dims[0] == -1 && vi.dims[1] == 4);
    CHECK(vi.dim_params[0] && strcmp(vi.dim_params[0], "batch") == 0);
    CHECK(onyx_model_output(m, 0, &vi) == ONYX_OK);
    CHECK(strcmp(vi.name, "y") == 0);
    CHECK(vi.rank == 2 && vi.dims[1] == 3);
    CHECK(onyx_model_input(m, 1, &vi) == ONYX_ERR_INVALID_ARG);
    CHECK(onyx_model_node_count(m) == 6);
    CHECK(onyx_model_param_count(m) == 15); /* w1 12 + b1 3; shape is int64 */
    CHECK(onyx_model_initializer_count(m) == 3);
    CHECK(onyx_model_ir_version(m) == 8);
    const char *domain;
    int64_t version;
    CHECK(onyx_model_opset_count(m) == 1);
    onyx_model_opset(m, 0, &domain, &version);
    CHECK(strcmp(domain, "") == 0 && version == 17);
}

static void check_run(onyx_session *s, int64_t batch)
{
    float x[40];
    for (int i = 0; i < batch * 4; i++)
        x[i] = (float)((i * 7 % 11) - 5) * 0.3f;
    onyx_tensor in = {ONYX_DTYPE_F32, 2, {batch, 4}, x};
    const char *in_names[] = {"x"};
    onyx_tensor out;
    memset(&out, 0, sizeof out);
    onyx_status st = onyx_session_run(s, 1, in_names, &in, 1, NULL, &out);
    CHECK_OK(st, onyx_session_errmsg(s));
    if (st != ONYX_OK)
        return;
    CHECK(out.dtype == ONYX_DTYPE_F32 && out.rank == 2 && out.dims[0] == batch && out.dims[1] == 3);
    double ref[30];
    reference(x, batch, ref);
    for (int i = 0; i < batch * 3; i++)
        CHECK_NEAR(((float *)out.data)[i], ref[i]);
}

static void check_errors(onyx_session *s)
{
    float x[8] = {0};
    int64_t xi[8] = {0};
    const char *names[] = {"x"};
    onyx_tensor out;
    memset(&out, 0, sizeof out);

    CHECK(onyx_session_run(s, 0, NULL, NULL, 1, NULL, &out) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(onyx_session_errmsg(s), "input \"x\" was not given");

    onyx_tensor wrong_type = {ONYX_DTYPE_I64, 2, {2, 4}, xi};
    CHECK(onyx_session_run(s, 1, names, &wrong_type, 1, NULL, &out) == ONYX_ERR_SHAPE);
    CHECK_MSG(onyx_session_errmsg(s), "input \"x\" has dtype int64, expected float32");

    onyx_tensor wrong_shape = {ONYX_DTYPE_F32, 2, {1, 5}, x};
    CHECK(onyx_session_run(s, 1, names, &wrong_shape, 1, NULL, &out) == ONYX_ERR_SHAPE);
    CHECK_MSG(onyx_session_errmsg(s), "input \"x\" has shape [1,5], expected [batch,4]");

    onyx_tensor wrong_rank = {ONYX_DTYPE_F32, 1, {8}, x};
    CHECK(onyx_session_run(s, 1, names, &wrong_rank, 1, NULL, &out) == ONYX_ERR_SHAPE);
    CHECK_MSG(onyx_session_errmsg(s), "input \"x\" has shape [8], expected [batch,4]");

    onyx_tensor negative = {ONYX_DTYPE_F32, 2, {-2, 4}, x};
    CHECK(onyx_session_run(s, 1, names, &negative, 1, NULL, &out) == ONYX_ERR_SHAPE);
    CHECK_MSG(onyx_session_errmsg(s), "negative or too large");

    onyx_tensor no_data = {ONYX_DTYPE_F32, 2, {2, 4}, NULL};
    CHECK(onyx_session_run(s, 1, names, &no_data, 1, NULL, &out) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(onyx_session_errmsg(s), "input \"x\" has no data");

    onyx_tensor ok = {ONYX_DTYPE_F32, 2, {2, 4}, x};
    const char *unknown[] = {"z"};
    CHECK(onyx_session_run(s, 1, unknown, &ok, 1, NULL, &out) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(onyx_session_errmsg(s), "\"z\" is not an input of the model (inputs: x)");

    const char *twice[] = {"x", "x"};
    onyx_tensor two[2] = {ok, ok};
    CHECK(onyx_session_run(s, 2, twice, two, 1, NULL, &out) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(onyx_session_errmsg(s), "input \"x\" is given twice");

    /* caller buffers: wrong shape refused, right shape filled */
    float buf[6];
    onyx_tensor small = {ONYX_DTYPE_F32, 2, {2, 2}, buf};
    CHECK(onyx_session_run(s, 1, names, &ok, 1, NULL, &small) == ONYX_ERR_SHAPE);
    CHECK_MSG(onyx_session_errmsg(s), "output \"y\" is float32 [2,3], but the buffer given for it is float32 [2,2]");
    onyx_tensor right = {ONYX_DTYPE_F32, 2, {2, 3}, buf};
    CHECK_OK(onyx_session_run(s, 1, names, &ok, 1, NULL, &right), onyx_session_errmsg(s));
    CHECK(right.data == buf);
    CHECK_NEAR(buf[0] + buf[1] + buf[2], 1.0);

    CHECK(onyx_session_run(s, 1, names, &ok, 2, NULL, &out) == ONYX_ERR_INVALID_ARG);
    const char *bad_out[] = {"nothing"};
    CHECK(onyx_session_run(s, 1, names, &ok, 1, bad_out, &out) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(onyx_session_errmsg(s), "\"nothing\" is not a value of the model");

    /* an intermediate value by name: h = x @ w1^T + b1 with x = 0 is b1 */
    const char *hname[] = {"h"};
    memset(&out, 0, sizeof out);
    CHECK_OK(onyx_session_run(s, 1, names, &ok, 1, hname, &out), onyx_session_errmsg(s));
    CHECK(out.rank == 2 && out.dims[0] == 2 && out.dims[1] == 3);
    CHECK_NEAR(((float *)out.data)[0], 0.5);
    CHECK_NEAR(((float *)out.data)[4], -0.5);

    CHECK(onyx_session_set_mode(s, (onyx_mode)7) == ONYX_ERR_INVALID_ARG);
    CHECK(onyx_session_mode(s) == ONYX_MODE_INFER);
    CHECK(onyx_session_set_mode(s, ONYX_MODE_GRAPH) == ONYX_OK);
    CHECK(onyx_session_mode(s) == ONYX_MODE_GRAPH);
    CHECK(onyx_session_set_mode(s, ONYX_MODE_INFER) == ONYX_OK);
}

static void check_no_allocation(onyx_session *s)
{
    float x[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    onyx_tensor in = {ONYX_DTYPE_F32, 2, {3, 4}, x};
    const char *names[] = {"x"};
    onyx_tensor out;
    memset(&out, 0, sizeof out);
    CHECK_OK(onyx_session_run(s, 1, names, &in, 1, NULL, &out), onyx_session_errmsg(s));
    /* the counter sees allocations at all (else "0 allocations" would prove nothing) */
    long c0 = th_alloc_count();
    void *volatile probe = malloc(8); /* volatile: the pair must not be optimised away */
    CHECK(th_alloc_count() == c0 + 1);
    free(probe);
    long before = th_alloc_count();
    for (int i = 0; i < 10; i++) {
        memset(&out, 0, sizeof out);
        CHECK_OK(onyx_session_run(s, 1, names, &in, 1, NULL, &out), onyx_session_errmsg(s));
    }
    CHECK(th_alloc_count() == before);
    printf("allocations in 10 repeated runs: %ld\n", th_alloc_count() - before);
}

/* Zero-copy: bound input and output buffers; the Softmax writes into the caller's y. */
static void check_bound(const onyx_model *m)
{
    onyx_session *s = NULL;
    onyx_error err;
    CHECK_OK(onyx_session_create(m, NULL, &s, &err), err.msg);
    if (s == NULL)
        return;
    float x[12];
    for (int i = 0; i < 12; i++)
        x[i] = (float)((i * 5 % 7) - 3) * 0.4f;
    float y[9];
    onyx_tensor xt = {ONYX_DTYPE_F32, 2, {3, 4}, x};
    onyx_tensor yt = {ONYX_DTYPE_F32, 2, {3, 3}, y};
    CHECK(onyx_session_run_bound(s) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(onyx_session_errmsg(s), "input \"x\" is not bound (onyx_session_bind_input)");
    CHECK_OK(onyx_session_bind_input(s, "x", &xt), onyx_session_errmsg(s));
    CHECK_OK(onyx_session_bind_output(s, "y", &yt), onyx_session_errmsg(s));
    CHECK_OK(onyx_session_run_bound(s), onyx_session_errmsg(s));
    double ref[9];
    reference(x, 3, ref);
    for (int i = 0; i < 9; i++)
        CHECK_NEAR(y[i], ref[i]);
    int vy = -1;
    for (int v = 0; v < m->n_values; v++)
        if (strcmp(m->values[v].name, "y") == 0)
            vy = v;
    CHECK(vy >= 0 && s->buf[vy] == NULL); /* no session buffer: nothing to copy from */
    CHECK(vy >= 0 && s->vals[vy].data == y);

    /* new contents, same buffers: no allocation, right answers */
    long before = th_alloc_count();
    int wrong = 0;
    for (int r = 0; r < 10; r++) {
        for (int i = 0; i < 12; i++)
            x[i] = (float)(((i + r) * 3 % 11) - 5) * 0.25f;
        CHECK_OK(onyx_session_run_bound(s), onyx_session_errmsg(s));
        reference(x, 3, ref);
        for (int i = 0; i < 9; i++)
            wrong += !(fabs(y[i] - ref[i]) <= 1e-6 + 1e-5 * fabs(ref[i]));
    }
    CHECK(wrong == 0);
    CHECK(th_alloc_count() == before);
    printf("allocations in 10 bound runs: %ld\n", th_alloc_count() - before);

    /* values no node computes are copied: an initializer, a constant folded at load */
    float w1[12];
    float c[1] = {0};
    onyx_tensor w1t = {ONYX_DTYPE_F32, 2, {3, 4}, w1};
    CHECK_OK(onyx_session_bind_output(s, "w1", &w1t), onyx_session_errmsg(s));
    CHECK_OK(onyx_session_bind_output(s, "c", &(onyx_tensor){ONYX_DTYPE_F32, 1, {1}, c}),
             onyx_session_errmsg(s));
    CHECK_OK(onyx_session_run_bound(s), onyx_session_errmsg(s));
    CHECK(c[0] == 2.0f);
    CHECK_NEAR(w1[5], 0.5);

    /* onyx_session_run ignores the bindings */
    float before_y0 = y[0];
    float other[12] = {0};
    onyx_tensor ot = {ONYX_DTYPE_F32, 2, {3, 4}, other};
    const char *names[] = {"x"};
    onyx_tensor out;
    memset(&out, 0, sizeof out);
    CHECK_OK(onyx_session_run(s, 1, names, &ot, 1, NULL, &out), onyx_session_errmsg(s));
    CHECK(out.data != y && y[0] == before_y0);

    /* errors: at bind time what the model knows, at run time the actual shapes */
    int64_t xi[12] = {0};
    CHECK(onyx_session_bind_input(s, "nope", &xt) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(onyx_session_errmsg(s), "\"nope\" is not an input of the model (inputs: x)");
    CHECK(onyx_session_bind_input(s, "x", &(onyx_tensor){ONYX_DTYPE_I64, 2, {3, 4}, xi}) ==
          ONYX_ERR_SHAPE);
    CHECK_MSG(onyx_session_errmsg(s), "input \"x\" has dtype int64, expected float32");
    CHECK(onyx_session_bind_output(s, "nope", &yt) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(onyx_session_errmsg(s), "\"nope\" is not a value of the model");
    CHECK(onyx_session_bind_output(s, "y", &(onyx_tensor){ONYX_DTYPE_F32, 1, {9}, y}) ==
          ONYX_ERR_SHAPE);
    CHECK_MSG(onyx_session_errmsg(s),
              "output \"y\" is float32 [?,3], but the buffer bound to it is float32 [9]");
    CHECK(onyx_session_bind_output(s, "y", &(onyx_tensor){ONYX_DTYPE_F32, 2, {3, 3}, NULL}) ==
          ONYX_ERR_INVALID_ARG);
    CHECK_MSG(onyx_session_errmsg(s), "the buffer bound to output \"y\" has no data");
    CHECK_OK(onyx_session_bind_output(s, "y", &(onyx_tensor){ONYX_DTYPE_F32, 2, {2, 3}, y}),
             onyx_session_errmsg(s));
    CHECK(onyx_session_run_bound(s) == ONYX_ERR_SHAPE);
    CHECK_MSG(onyx_session_errmsg(s), "output \"y\" is float32 [3,3], but the buffer bound to it "
                                      "is float32 [2,3]");
    /* an intermediate value bound too, then everything unbound */
    float h[9];
    CHECK_OK(onyx_session_bind_output(s, "y", &yt), onyx_session_errmsg(s));
    CHECK_OK(onyx_session_bind_output(s, "h", &(onyx_tensor){ONYX_DTYPE_F32, 2, {3, 3}, h}),
             onyx_session_errmsg(s));
    CHECK_OK(onyx_session_run_bound(s), onyx_session_errmsg(s));
    CHECK(s->vals[vy].data == y);
    CHECK_OK(onyx_session_bind_input(s, "x", NULL), onyx_session_errmsg(s));
    CHECK(onyx_session_run_bound(s) == ONYX_ERR_INVALID_ARG);
    onyx_session_unbind_all(s);
    CHECK(onyx_session_run_bound(s) == ONYX_ERR_INVALID_ARG);
    onyx_session_destroy(s);
}

int main(void)
{
    CHECK(strcmp(onyx_version(), ONYX_VERSION_STRING) == 0);
    CHECK(onyx_version_number() == ONYX_VERSION_NUMBER);
    CHECK(strcmp(onyx_status_str(ONYX_ERR_SHAPE), "ONYX_ERR_SHAPE") == 0);
    CHECK(onyx_dtype_size(ONYX_DTYPE_F32) == 4 && onyx_dtype_size(ONYX_DTYPE_STRING) == 0);
    onyx_model_destroy(NULL);
    onyx_session_destroy(NULL);

    onyx_model *m = NULL;
    onyx_error err;
    onyx_status st = onyx_model_load(model_path(), &m, &err);
    CHECK_OK(st, err.msg);
    if (st != ONYX_OK)
        return check_report();
    check_info(m);

    onyx_session *s = NULL;
    st = onyx_session_create(m, NULL, &s, &err);
    CHECK_OK(st, err.msg);
    check_run(s, 2);
    check_run(s, 5);
    check_run(s, 1);
    check_errors(s);
    check_run(s, 2); /* still usable after errors */
    check_no_allocation(s);
    check_bound(m);

    /* A second session on the same model gives the same results. */
    onyx_session *s2 = NULL;
    onyx_session_options opt;
    onyx_session_options_init(&opt);
    opt.mode = ONYX_MODE_GRAPH;
    opt.seed = 42;
    CHECK_OK(onyx_session_create(m, &opt, &s2, &err), err.msg);
    CHECK(onyx_session_mode(s2) == ONYX_MODE_GRAPH);
    check_run(s2, 3);
    opt.threads = -1;
    onyx_session *s3 = NULL;
    CHECK(onyx_session_create(m, &opt, &s3, &err) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(err.msg, "threads is -1");
    CHECK(s3 == NULL);
    /* Options carry their size: a struct not set up by _init, or from a newer onyx.h, is
     * refused; an older, shorter one gets the defaults for the fields it lacks. */
    onyx_session_options raw;
    memset(&raw, 0, sizeof raw);
    CHECK(onyx_session_create(m, &raw, &s3, &err) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(err.msg, "options.size is 0: call onyx_session_options_init() first");
    onyx_session_options_init(&raw);
    raw.size = sizeof raw + 8;
    CHECK(onyx_session_create(m, &raw, &s3, &err) == ONYX_ERR_INVALID_ARG);
    onyx_session_options_init(&raw);
    raw.mode = ONYX_MODE_GRAPH;
    raw.log = (onyx_log_fn)(uintptr_t)1; /* past the older struct's end: must not be read */
    raw.size = offsetof(onyx_session_options, threads) + sizeof(int);
    CHECK_OK(onyx_session_create(m, &raw, &s3, &err), err.msg);
    CHECK(s3 != NULL && onyx_session_mode(s3) == ONYX_MODE_GRAPH);
    if (s3)
        check_run(s3, 2);
    onyx_session_destroy(s3);
    onyx_session_destroy(s2);
    onyx_session_destroy(s);
    onyx_model_destroy(m);

    /* From memory: same model, same answers. */
    FILE *fp = fopen(model_path(), "rb");
    CHECK(fp != NULL);
    if (fp) {
        static unsigned char buf[1 << 16];
        size_t n = fread(buf, 1, sizeof buf, fp);
        fclose(fp);
        st = onyx_model_load_buffer(buf, n, NULL, "embedded", &m, &err);
        CHECK_OK(st, err.msg);
        if (st == ONYX_OK) {
            CHECK_OK(onyx_session_create(m, NULL, &s, &err), err.msg);
            check_run(s, 4);
            onyx_session_destroy(s);
            onyx_model_destroy(m);
        }
    }
    return check_report();
}
