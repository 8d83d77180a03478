/* test_plugin.c — custom operators end to end (runtime/plugin.c):
 *  - the registry: ABI version checks (older and newer), missing callbacks, overlapping ranges;
 *  - plugin libraries: examples/plugin_swish.c loads (twice is a no-op), the same plugin built
 *    for ABI version 999 is refused naming both versions, a missing file, a file that is not a
 *    shared library and a library without the entry point are refused naming the library;
 *  - a model using com.example.Swish (tests/fixtures/plugin/swish_mlp) fails to load without
 *    the plugin (with the hint), runs with it (equal to a double-precision reference computed
 *    here and to numpy's), runs with zero-copy bindings, and trains: gradients checked against
 *    central finite differences through the trainer, the loss falls, a checkpoint resumes;
 *  - an op registered by the application (test.Probe): the node accessors and every attribute
 *    getter, init/infer errors named after the node, a bad infer caught, custom nodes never
 *    folded, a custom op replacing a built-in one, a trainer refusing an op without backward;
 *  - the log callbacks of loading, sessions, the trainer and the registry. */
#include "check.h"
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef ONYX_PLUGIN_SWISH
#error "ONYX_PLUGIN_SWISH must name the built plugin (set by CMakeLists.txt)"
#endif

static const char *fixture(const char *name, char *buf, size_t size)
{
    snprintf(buf, size, "%s/tests/fixtures/plugin/%s", ONYX_SOURCE_DIR, name);
    return buf;
}

/* ---- a log that remembers ----------------------------------------------------------------- */

typedef struct log_buf {
    char text[16384]; /* "level: message\n" per call */
    size_t used;
    int count[4];
} log_buf;

static void log_to(void *user, onyx_log_level level, const char *msg)
{
    log_buf *b = user;
    if (level >= ONYX_LOG_ERROR && level <= ONYX_LOG_DEBUG)
        b->count[level]++;
    if (b->used < sizeof b->text)
        b->used += (size_t)snprintf(b->text + b->used, sizeof b->text - b->used, "%s: %s\n",
                                    onyx_log_level_name(level), msg);
}

static void log_clear(log_buf *b)
{
    memset(b, 0, sizeof(*b));
}

/* ---- test.Probe: an op the test registers itself -------------------------------------------- */

/* y = x * f + i. What init saw is kept for the checks. */
typedef struct probe {
    float f;
    int64_t i;
} probe;

static int probe_misbehave; /* 0 fine; 1 init fails (plain message); 2 init fails (no message);
                             * 3 infer fails; 4 infer leaves the output shapeless */
static int probe_forward_calls;
static int probe_fini_calls;
static char probe_seen[512];

static onyx_status probe_init(const onyx_custom_op *op, const onyx_node *node, void **state,
                              onyx_error *err)
{
    if (probe_misbehave == 1) {
        snprintf(err->msg, sizeof err->msg, "refuses to start");
        return ONYX_ERR_INVALID_MODEL;
    }
    if (probe_misbehave == 2)
        return ONYX_ERR_UNSUPPORTED;
    probe p;
    const char *s;
    const int64_t *ints;
    const float *floats;
    size_t n_ints;
    size_t n_floats;
    onyx_status st = onyx_node_attr_float(node, "f", 0.0f, &p.f, err);
    if (st == ONYX_OK)
        st = onyx_node_attr_int(node, "i", 0, &p.i, err);
    if (st == ONYX_OK)
        st = onyx_node_attr_string(node, "s", "(none)", &s, err);
    if (st == ONYX_OK)
        st = onyx_node_attr_ints(node, "ints", &ints, &n_ints, err);
    if (st == ONYX_OK)
        st = onyx_node_attr_floats(node, "floats", &floats, &n_floats, err);
    if (st != ONYX_OK)
        return st;
    if (strcmp(onyx_node_name(node), "p1") == 0)
        snprintf(probe_seen, sizeof probe_seen,
                 "%s %s.%s opset %lld in %d out %d present %d%d%d f %g i %lld s %s "
                 "ints %zu:%lld,%lld floats %zu:%g,%g has_s %d has_zz %d user %s",
                 onyx_node_name(node), onyx_node_domain(node), onyx_node_op_type(node),
                 (long long)onyx_node_opset(node), onyx_node_input_count(node),
                 onyx_node_output_count(node), onyx_node_input_present(node, 0),
                 onyx_node_output_present(node, 0), onyx_node_input_present(node, 1),
                 (double)p.f, (long long)p.i, s, n_ints, (long long)ints[0], (long long)ints[1],
                 n_floats, (double)floats[0], (double)floats[1],
                 onyx_node_attr_present(node, "s"), onyx_node_attr_present(node, "zz"),
                 (const char *)op->user);
    probe *q = malloc(sizeof(*q));
    if (q == NULL)
        return ONYX_ERR_NOMEM;
    *q = p;
    *state = q;
    return ONYX_OK;
}

static onyx_status probe_infer(const void *state, const onyx_node *node, const onyx_tensor *in,
                               int n_in, onyx_tensor *out, int n_out, onyx_error *err)
{
    (void)state;
    (void)node;
    (void)n_in;
    (void)n_out;
    if (probe_misbehave == 3) {
        snprintf(err->msg, sizeof err->msg, "input X is too odd");
        return ONYX_ERR_SHAPE;
    }
    out[0] = in[0];
    out[0].data = NULL;
    if (probe_misbehave == 4)
        out[0].rank = -1;
    return ONYX_OK;
}

static void probe_forward(const void *state, const onyx_node *node, onyx_mode mode,
                          const onyx_tensor *in, int n_in, onyx_tensor *out, int n_out)
{
    (void)node;
    (void)mode;
    (void)n_in;
    (void)n_out;
    const probe *p = state;
    const float *x = in[0].data;
    float *y = out[0].data;
    for (int64_t k = 0; k < onyx_tensor_numel(&in[0]); k++)
        y[k] = x[k] * p->f + (float)p->i;
    probe_forward_calls++;
}

static void probe_fini(void *state)
{
    probe_fini_calls++;
    free(state);
}

static onyx_custom_op probe_op(void)
{
    onyx_custom_op op;
    memset(&op, 0, sizeof op);
    op.abi_version = ONYX_PLUGIN_ABI_VERSION;
    op.domain = "test";
    op.op_type = "Probe";
    op.since_version = 2;
    op.until_version = 3;
    op.user = "probe-user";
    op.init = probe_init;
    op.infer = probe_infer;
    op.forward = probe_forward;
    op.fini = probe_fini;
    return op;
}

/* ---- the registry ------------------------------------------------------------------------- */

static void check_registry(void)
{
    onyx_registry *reg = NULL;
    onyx_error err;
    CHECK_OK(onyx_registry_create(&reg, &err), err.msg);
    CHECK(onyx_registry_create(NULL, &err) == ONYX_ERR_INVALID_ARG);
    CHECK(onyx_registry_op_count(reg) == 0);
    CHECK(strcmp(onyx_registry_errmsg(reg), "") == 0);

    onyx_custom_op op = probe_op();
    op.abi_version = 0; /* older than this onyx */
    CHECK(onyx_registry_add_op(reg, &op) == ONYX_ERR_UNSUPPORTED);
    CHECK_MSG(onyx_registry_errmsg(reg), "built for plugin ABI version 0");
    CHECK_MSG(onyx_registry_errmsg(reg), "has plugin ABI version 1");
    op.abi_version = ONYX_PLUGIN_ABI_VERSION + 1; /* newer */
    CHECK(onyx_registry_add_op(reg, &op) == ONYX_ERR_UNSUPPORTED);
    CHECK_MSG(onyx_registry_errmsg(reg), "built for plugin ABI version 2");

    op = probe_op();
    op.forward = NULL;
    CHECK(onyx_registry_add_op(reg, &op) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(onyx_registry_errmsg(reg), "custom op test.Probe has no forward function");
    op = probe_op();
    op.op_type = "";
    CHECK(onyx_registry_add_op(reg, &op) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(onyx_registry_errmsg(reg), "has no op_type");
    op = probe_op();
    op.until_version = 1;
    CHECK(onyx_registry_add_op(reg, &op) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(onyx_registry_errmsg(reg), "opset range [2, 1] is empty");
    CHECK(onyx_registry_add_op(reg, NULL) == ONYX_ERR_INVALID_ARG);
    CHECK(onyx_registry_op_count(reg) == 0);

    /* a temporary struct: the registry keeps copies of it and its strings */
    op = probe_op();
    char domain[8] = "test";
    op.domain = domain;
    CHECK_OK(onyx_registry_add_op(reg, &op), onyx_registry_errmsg(reg));
    memset(domain, 'x', sizeof domain - 1);
    CHECK(onyx_registry_op_count(reg) == 1);
    CHECK(onyx_registry_find(reg, "test", "Probe", 2, NULL) != NULL);
    CHECK(onyx_registry_find(reg, "test", "Probe", 3, NULL) != NULL);
    CHECK(onyx_registry_find(reg, "test", "Probe", 4, NULL) == NULL);
    CHECK(onyx_registry_find(reg, "other", "Probe", 2, NULL) == NULL);
    op = probe_op();
    op.since_version = 3;
    op.until_version = 0;
    CHECK(onyx_registry_add_op(reg, &op) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(onyx_registry_errmsg(reg), "custom op test.Probe for opsets [3, ...] overlaps the "
                                         "one registered for opsets [2, 3]");
    op.since_version = 4; /* a newer version of the op: served from opset 4 on */
    CHECK_OK(onyx_registry_add_op(reg, &op), onyx_registry_errmsg(reg));
    const onyx_op_impl *v2 = onyx_registry_find(reg, "test", "Probe", 3, NULL);
    const onyx_op_impl *v4 = onyx_registry_find(reg, "test", "Probe", 9, NULL);
    CHECK(v2 != NULL && v4 != NULL && v2 != v4);
    /* the default domain: "" and "ai.onnx" are one */
    op = probe_op();
    op.domain = "ai.onnx";
    op.op_type = "Relu";
    op.since_version = 1;
    op.until_version = 0;
    CHECK_OK(onyx_registry_add_op(reg, &op), onyx_registry_errmsg(reg));
    CHECK(onyx_registry_find(reg, "", "Relu", 14, NULL) != NULL);
    CHECK(onyx_registry_op_count(reg) == 3);
    onyx_registry_destroy(reg);
    onyx_registry_destroy(NULL);
}

/* ---- plugin libraries --------------------------------------------------------------------- */

static void check_plugin_load(void)
{
    onyx_registry *reg = NULL;
    onyx_error err;
    log_buf lb;
    log_clear(&lb);
    CHECK_OK(onyx_registry_create(&reg, &err), err.msg);
    onyx_registry_set_log(reg, log_to, &lb);

    /* a plugin claiming ABI version 999 is refused, naming the library and both versions */
    CHECK(onyx_plugin_load(reg, ONYX_PLUGIN_SWISH_ABI999, &err) == ONYX_ERR_UNSUPPORTED);
    CHECK_MSG(err.msg, "plugin " ONYX_PLUGIN_SWISH_ABI999 ": ");
    CHECK_MSG(err.msg, "built for plugin ABI version 999");
    CHECK_MSG(err.msg, "has plugin ABI version 1");
    CHECK(strcmp(onyx_registry_errmsg(reg), err.msg) == 0);
    CHECK(onyx_registry_op_count(reg) == 0);
    CHECK(lb.count[ONYX_LOG_ERROR] >= 1);

    /* a missing file, a file that is no shared library, a library without the entry point */
    CHECK(onyx_plugin_load(reg, "/nonexistent/libnothing.so", &err) == ONYX_ERR_IO);
    CHECK_MSG(err.msg, "plugin /nonexistent/libnothing.so: cannot load it: ");
    CHECK_MSG(err.msg, "No such file");
    char path[512];
    fixture("odd_graph.onnx", path, sizeof path);
    CHECK(onyx_plugin_load(reg, path, &err) == ONYX_ERR_IO);
    CHECK_MSG(err.msg, "odd_graph.onnx: cannot load it: ");
    CHECK(onyx_plugin_load(reg, "libm.so.6", &err) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(err.msg, "plugin libm.so.6: no function onyx_plugin_register: not an onyx plugin");
    CHECK(onyx_plugin_load(reg, "", &err) == ONYX_ERR_INVALID_ARG);
    CHECK(onyx_plugin_load(NULL, ONYX_PLUGIN_SWISH, &err) == ONYX_ERR_INVALID_ARG);
    CHECK(onyx_registry_op_count(reg) == 0);

    /* the real one, twice: the second load does nothing */
    log_clear(&lb);
    CHECK_OK(onyx_plugin_load(reg, ONYX_PLUGIN_SWISH, &err), err.msg);
    CHECK(onyx_registry_op_count(reg) == 1);
    CHECK_MSG(lb.text, "info: plugin " ONYX_PLUGIN_SWISH ": loaded, 1 op: com.example.Swish "
                       "opsets [1, ...]");
    CHECK_MSG(lb.text, "debug: plugin " ONYX_PLUGIN_SWISH ": added custom op com.example.Swish "
                       "for opsets [1, ...] (with backward)");
    CHECK_OK(onyx_plugin_load(reg, ONYX_PLUGIN_SWISH, &err), err.msg);
    CHECK(onyx_registry_op_count(reg) == 1);
    CHECK_MSG(lb.text, "already loaded");
    const char *origin = NULL;
    CHECK(onyx_registry_find(reg, "com.example", "Swish", 1, &origin) != NULL);
    CHECK(origin != NULL && strcmp(origin, ONYX_PLUGIN_SWISH) == 0);
    /* an op the application adds after it that overlaps is refused, naming the plugin */
    onyx_custom_op op = probe_op();
    op.domain = "com.example";
    op.op_type = "Swish";
    CHECK(onyx_registry_add_op(reg, &op) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(onyx_registry_errmsg(reg), "by plugin " ONYX_PLUGIN_SWISH);
    onyx_registry_destroy(reg);
}

/* ---- the Swish model ---------------------------------------------------------------------- */

static double swish_ref(double x, double beta)
{
    return x / (1.0 + exp(-beta * x));
}

static const float *init_data(const onyx_model *m, const char *name)
{
    int v = onyx_model_find_value(m, name);
    return v >= 0 ? m->values[v].info.data : NULL;
}

/* y = Gemm(Swish(Gemm(Swish(Gemm(x, w1, b1), 1.5), w2, b2), 1), w3, b3) in double. */
static void swish_mlp_ref(const onyx_model *m, const float *x, int64_t n, double *y)
{
    const float *w1 = init_data(m, "w1");
    const float *b1 = init_data(m, "b1");
    const float *w2 = init_data(m, "w2");
    const float *b2 = init_data(m, "b2");
    const float *w3 = init_data(m, "w3");
    const float *b3 = init_data(m, "b3");
    for (int64_t r = 0; r < n; r++) {
        double a1[3];
        double a2[2];
        for (int o = 0; o < 3; o++) {
            double h = b1[o];
            for (int k = 0; k < 4; k++)
                h += (double)x[r * 4 + k] * w1[o * 4 + k];
            a1[o] = swish_ref(h, 1.5);
        }
        for (int o = 0; o < 2; o++) {
            double h = b2[o];
            for (int k = 0; k < 3; k++)
                h += a1[k] * w2[o * 3 + k];
            a2[o] = swish_ref(h, 1.0);
        }
        y[r] = b3[0] + a2[0] * w3[0] + a2[1] * w3[1];
    }
}

static void check_swish_model(void)
{
    char path[512];
    fixture("swish_mlp/model.onnx", path, sizeof path);
    onyx_error err;
    onyx_model *m = NULL;

    /* without the plugin: the usual unsupported-node error, with the hint */
    CHECK(onyx_model_load(path, &m, &err) == ONYX_ERR_UNSUPPORTED);
    CHECK_MSG(err.msg, "swish_mlp/model.onnx: 2 unsupported nodes: node \"s1\" (Swish, domain "
                       "\"com.example\", opset 1) (is its plugin loaded?); node \"s2\"");
    CHECK(m == NULL);

    onyx_registry *reg = NULL;
    CHECK_OK(onyx_registry_create(&reg, &err), err.msg);
    CHECK_OK(onyx_plugin_load(reg, ONYX_PLUGIN_SWISH, &err), err.msg);
    log_buf lb;
    log_clear(&lb);
    onyx_load_options lo;
    onyx_load_options_init(&lo);
    lo.registry = reg;
    lo.log = log_to;
    lo.log_user = &lb;
    onyx_status st = onyx_model_load_ex(path, &lo, &m, &err);
    CHECK_OK(st, err.msg);
    if (st != ONYX_OK) {
        onyx_registry_destroy(reg);
        return;
    }
    CHECK_MSG(lb.text, "info: ");
    CHECK_MSG(lb.text, "swish_mlp/model.onnx: loaded: 5 nodes (2 custom), 6 initializers, 1 input, "
                       "1 output, 0 nodes folded to constants at load");
    CHECK_MSG(lb.text, "debug: ");
    CHECK_MSG(lb.text, "node \"s1\" (com.example.Swish, opset 1): custom op of plugin "
                       ONYX_PLUGIN_SWISH);
    CHECK(lb.count[ONYX_LOG_WARN] == 0 && lb.count[ONYX_LOG_ERROR] == 0);
    onyx_value_info vi;
    CHECK(onyx_model_output(m, 0, &vi) == ONYX_OK && vi.rank == 2 && vi.dims[1] == 1);

    /* from memory too */
    unsigned char *bytes = NULL;
    size_t size = 0;
    CHECK_OK(onyx_read_file(path, &bytes, &size, &err), err.msg);
    onyx_model *m2 = NULL;
    CHECK_OK(onyx_model_load_buffer_ex(bytes, size, NULL, "swish-bytes", &lo, &m2, &err),
             err.msg);
    onyx_model *m3 = NULL;
    CHECK(onyx_model_load_buffer_ex(bytes, size, NULL, "swish-bytes", NULL, &m3, &err) ==
          ONYX_ERR_UNSUPPORTED);
    CHECK(m3 == NULL);
    CHECK_MSG(err.msg, "swish-bytes: 2 unsupported nodes");
    free(bytes);

    /* run: a double-precision reference, and numpy's expected output */
    enum { N = 5 };
    onyx_tensor xt;
    onyx_tensor expect;
    char xpath[512];
    char ypath[512];
    CHECK_OK(onyx_tensor_read_file(fixture("swish_mlp/test_data_set_0/input_0.pb", xpath,
                                           sizeof xpath), &xt, NULL, &err), err.msg);
    CHECK_OK(onyx_tensor_read_file(fixture("swish_mlp/test_data_set_0/output_0.pb", ypath,
                                           sizeof ypath), &expect, NULL, &err), err.msg);
    CHECK(xt.rank == 2 && xt.dims[0] == N && xt.dims[1] == 4);
    double ref[N];
    swish_mlp_ref(m, xt.data, N, ref);
    onyx_session *s = NULL;
    log_clear(&lb);
    onyx_session_options so;
    onyx_session_options_init(&so);
    so.log = log_to;
    so.log_user = &lb;
    CHECK_OK(onyx_session_create(m, &so, &s, &err), err.msg);
    const char *in_names[] = {"x"};
    onyx_tensor y;
    memset(&y, 0, sizeof y);
    CHECK_OK(onyx_session_run(s, 1, in_names, &xt, 1, NULL, &y), onyx_session_errmsg(s));
    CHECK(y.dtype == ONYX_DTYPE_F32 && y.rank == 2 && y.dims[0] == N && y.dims[1] == 1);
    for (int i = 0; i < N; i++) {
        CHECK_NEAR(((float *)y.data)[i], ref[i]);
        CHECK_NEAR(((float *)y.data)[i], ((float *)expect.data)[i]);
    }
    /* the session logged its memory on the first run, and nothing on the second */
    CHECK(lb.count[ONYX_LOG_DEBUG] == 5);
    CHECK_MSG(lb.text, "debug: session: ");
    CHECK_MSG(lb.text, " bytes for \"a1\" (node \"s1\", Swish)");
    int before = lb.count[ONYX_LOG_DEBUG];
    memset(&y, 0, sizeof y);
    CHECK_OK(onyx_session_run(s, 1, in_names, &xt, 1, NULL, &y), onyx_session_errmsg(s));
    CHECK(lb.count[ONYX_LOG_DEBUG] == before);
    /* a failed run: the error is logged as well */
    onyx_tensor wrong = xt;
    wrong.dtype = ONYX_DTYPE_F64;
    CHECK(onyx_session_run(s, 1, in_names, &wrong, 1, NULL, &y) == ONYX_ERR_SHAPE);
    CHECK(lb.count[ONYX_LOG_ERROR] == 1);
    CHECK_MSG(lb.text, "error: input \"x\" has dtype float64, expected float32");

    /* zero-copy: bound input and output, the custom nodes write in place like any other (a
     * fresh session, whose buffers no plain run has allocated) */
    onyx_session_destroy(s);
    CHECK_OK(onyx_session_create(m, NULL, &s, &err), err.msg);
    float out[N] = {0};
    onyx_tensor yb = {ONYX_DTYPE_F32, 2, {N, 1}, out};
    float a2[N * 2];
    onyx_tensor a2b = {ONYX_DTYPE_F32, 2, {N, 2}, a2}; /* a Swish output, bound as well */
    CHECK_OK(onyx_session_bind_input(s, "x", &xt), onyx_session_errmsg(s));
    CHECK_OK(onyx_session_bind_output(s, "y", &yb), onyx_session_errmsg(s));
    CHECK_OK(onyx_session_bind_output(s, "a2", &a2b), onyx_session_errmsg(s));
    CHECK_OK(onyx_session_run_bound(s), onyx_session_errmsg(s));
    for (int i = 0; i < N; i++)
        CHECK_NEAR(out[i], ref[i]);
    int va2 = onyx_model_find_value(m, "a2");
    CHECK(s->buf[va2] == NULL); /* never given session memory: Swish wrote into a2 */
    CHECK(s->vals[va2].data == a2);
    onyx_session_destroy(s);
    onyx_model_destroy(m2);
    onyx_model_destroy(m);
    onyx_tensor_free(&xt);
    onyx_tensor_free(&expect);
    onyx_registry_destroy(reg);
}

/* ---- training through the plugin ---------------------------------------------------------- */

static uint64_t rng_state = 99;

static float frand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static void check_swish_training(void)
{
    char path[512];
    fixture("swish_mlp/model.onnx", path, sizeof path);
    onyx_error err;
    onyx_train_options o;
    onyx_train_options_init(&o);
    o.loss = ONYX_LOSS_MSE;
    o.optimizer = ONYX_OPTIMIZER_ADAM;
    o.lr = 0.02f;
    onyx_trainer *t = NULL;

    /* without the plugin */
    CHECK(onyx_trainer_create(path, &o, &t, &err) == ONYX_ERR_UNSUPPORTED);
    CHECK_MSG(err.msg, "node \"s1\" (Swish, domain \"com.example\", opset 1) (is its plugin "
                       "loaded?)");
    CHECK(t == NULL);

    onyx_registry *reg = NULL;
    CHECK_OK(onyx_registry_create(&reg, &err), err.msg);
    CHECK_OK(onyx_plugin_load(reg, ONYX_PLUGIN_SWISH, &err), err.msg);
    o.registry = reg;
    log_buf lb;
    log_clear(&lb);
    o.log = log_to;
    o.log_user = &lb;
    onyx_status st = onyx_trainer_create(path, &o, &t, &err);
    CHECK_OK(st, err.msg);
    if (st != ONYX_OK) {
        onyx_registry_destroy(reg);
        return;
    }
    CHECK(onyx_trainer_param_count(t) == 6);
    CHECK_MSG(lb.text, "loaded: 5 nodes (2 custom)");
    CHECK_MSG(lb.text, "training 6 parameter tensors (26 values); 0 left frozen");

    /* gradients of every parameter element against central differences of the loss */
    enum { N = 8 };
    float x[N * 4];
    float yv[N];
    for (int i = 0; i < N * 4; i++)
        x[i] = frand() * 2.0f;
    for (int i = 0; i < N; i++)
        yv[i] = frand();
    onyx_tensor xt = {ONYX_DTYPE_F32, 2, {N, 4}, x};
    onyx_tensor yt = {ONYX_DTYPE_F32, 2, {N, 1}, yv};
    float l0;
    CHECK_OK(onyx_trainer_gradients(t, &xt, &yt, ONYX_MODE_TRAIN, &l0), onyx_trainer_errmsg(t));
    int checked = 0;
    int bad = 0;
    for (size_t k = 0; k < onyx_trainer_param_count(t); k++) {
        int64_t numel;
        const char *pname = onyx_trainer_param_name(t, k, &numel);
        float *p = onyx_trainer_param_ptr(t, k);
        float g[16];
        memcpy(g, onyx_trainer_grad_ptr(t, k), sizeof(float) * (size_t)numel);
        for (int64_t e = 0; e < numel; e++) {
            const float eps = 1e-2f;
            float p0 = p[e];
            float lp;
            float lm;
            p[e] = p0 + eps;
            CHECK_OK(onyx_trainer_loss_at(t, &xt, &yt, ONYX_MODE_TRAIN, &lp),
                     onyx_trainer_errmsg(t));
            p[e] = p0 - eps;
            CHECK_OK(onyx_trainer_loss_at(t, &xt, &yt, ONYX_MODE_TRAIN, &lm),
                     onyx_trainer_errmsg(t));
            p[e] = p0;
            double num = ((double)lp - lm) / ((double)(p0 + eps) - (double)(p0 - eps));
            checked++;
            if (!(fabs(g[e] - num) <= 2e-4 + 2e-2 * fabs(num)) && bad++ < 5)
                fprintf(stderr, "d loss / d %s[%lld]: analytic %.6g, numeric %.6g\n", pname,
                        (long long)e, (double)g[e], num);
        }
    }
    CHECK(bad == 0);
    CHECK(checked == 26);
    printf("swish_mlp: %d gradient elements checked against finite differences\n", checked);

    /* training fits y = sum(x) / 4 */
    for (int i = 0; i < N; i++)
        yv[i] = (x[i * 4] + x[i * 4 + 1] + x[i * 4 + 2] + x[i * 4 + 3]) / 4.0f;
    float first = 0.0f;
    float last = 0.0f;
    for (int step = 0; step < 150; step++) {
        float l;
        st = onyx_trainer_step(t, &xt, &yt, &l);
        CHECK_OK(st, onyx_trainer_errmsg(t));
        if (st != ONYX_OK)
            break;
        if (step == 0)
            first = l;
        last = l;
    }
    CHECK(last < 0.2f * first);
    printf("swish_mlp: mse %.4f -> %.4f in 150 Adam steps\n", (double)first, (double)last);

    /* a checkpoint of a model with custom ops resumes with the registry */
    char ckpt[512];
    char exported[512];
    snprintf(ckpt, sizeof ckpt, "%s/tmp_test_plugin_ckpt.zip", ONYX_BINARY_DIR);
    snprintf(exported, sizeof exported, "%s/tmp_test_plugin_export.onnx", ONYX_BINARY_DIR);
    CHECK_OK(onyx_trainer_save(t, ckpt), onyx_trainer_errmsg(t));
    CHECK_OK(onyx_trainer_export(t, exported), onyx_trainer_errmsg(t));
    onyx_trainer *t2 = NULL;
    CHECK_OK(onyx_trainer_create(path, &o, &t2, &err), err.msg);
    if (t2 != NULL) {
        CHECK_OK(onyx_trainer_load(t2, ckpt), onyx_trainer_errmsg(t2));
        float l1;
        float l2;
        CHECK_OK(onyx_trainer_eval(t, &xt, &yt, &l1, NULL), onyx_trainer_errmsg(t));
        CHECK_OK(onyx_trainer_eval(t2, &xt, &yt, &l2, NULL), onyx_trainer_errmsg(t2));
        CHECK(l1 == l2);
    }
    /* the exported model runs with the plugin and gives the trainer's predictions */
    onyx_load_options lo;
    onyx_load_options_init(&lo);
    lo.registry = reg;
    onyx_model *m = NULL;
    CHECK_OK(onyx_model_load_ex(exported, &lo, &m, &err), err.msg);
    if (m != NULL) {
        onyx_session *s = NULL;
        CHECK_OK(onyx_session_create(m, NULL, &s, &err), err.msg);
        onyx_tensor a;
        onyx_tensor b;
        memset(&a, 0, sizeof a);
        memset(&b, 0, sizeof b);
        const char *names[] = {"x"};
        CHECK_OK(onyx_session_run(s, 1, names, &xt, 1, NULL, &a), onyx_session_errmsg(s));
        CHECK_OK(onyx_trainer_predict(t, &xt, &b), onyx_trainer_errmsg(t));
        CHECK(a.data && b.data && memcmp(a.data, b.data, sizeof(float) * N) == 0);
        onyx_session_destroy(s);
        onyx_model_destroy(m);
    }
    remove(ckpt);
    remove(exported);
    onyx_trainer_destroy(t2);
    onyx_trainer_destroy(t);
    onyx_registry_destroy(reg);
}

/* ---- test.Probe: accessors, errors, no folding, replacing a built-in ---------------------- */

static void check_probe(void)
{
    char path[512];
    fixture("probe.onnx", path, sizeof path);
    onyx_error err;
    onyx_registry *reg = NULL;
    CHECK_OK(onyx_registry_create(&reg, &err), err.msg);
    onyx_custom_op op = probe_op();
    CHECK_OK(onyx_registry_add_op(reg, &op), onyx_registry_errmsg(reg));
    onyx_load_options lo;
    onyx_load_options_init(&lo);
    lo.registry = reg;
    onyx_model *m = NULL;

    probe_misbehave = 0;
    probe_fini_calls = 0;
    onyx_status st = onyx_model_load_ex(path, &lo, &m, &err);
    CHECK_OK(st, err.msg);
    if (st == ONYX_OK) {
        CHECK_MSG(probe_seen, "p1 test.Probe opset 2 in 1 out 1 present 110 f 0.5 i 3 s hi "
                              "ints 2:1,2 floats 2:0.25,0.5 has_s 1 has_zz 0 user probe-user");
        CHECK(!m->node_const[0] && !m->node_const[1]); /* p2 reads only a constant: not folded */
        onyx_session *s = NULL;
        CHECK_OK(onyx_session_create(m, NULL, &s, &err), err.msg);
        float x[6] = {1, 2, 3, -1, -2, -3};
        onyx_tensor xt = {ONYX_DTYPE_F32, 2, {2, 3}, x};
        const char *names[] = {"x"};
        onyx_tensor outs[2];
        memset(outs, 0, sizeof outs);
        probe_forward_calls = 0;
        CHECK_OK(onyx_session_run(s, 1, names, &xt, 2, NULL, outs), onyx_session_errmsg(s));
        CHECK(probe_forward_calls == 2); /* p2 ran too */
        const float *y = outs[0].data;
        const float *y2 = outs[1].data;
        CHECK(y[0] == 3.5f && y[5] == 1.5f); /* x * 0.5 + 3 */
        CHECK(y2[0] == 1.0f && y2[1] == 1.0f); /* defaults f 0, i 1 */
        /* bad infer results at run time are caught, naming the node */
        probe_misbehave = 3;
        CHECK(onyx_session_run(s, 1, names, &xt, 2, NULL, outs) == ONYX_ERR_SHAPE);
        CHECK_MSG(onyx_session_errmsg(s), "node \"p1\" (test.Probe, opset 2): input X is too odd");
        probe_misbehave = 4;
        CHECK(onyx_session_run(s, 1, names, &xt, 2, NULL, outs) == ONYX_ERR_INVALID_ARG);
        CHECK_MSG(onyx_session_errmsg(s), "node \"p1\" (test.Probe, opset 2): the custom op's "
                                          "infer left output 0 without a dtype or a full shape");
        probe_misbehave = 0;
        CHECK_OK(onyx_session_run(s, 1, names, &xt, 2, NULL, outs), onyx_session_errmsg(s));
        onyx_session_destroy(s);
        onyx_model_destroy(m);
        CHECK(probe_fini_calls == 2);
        m = NULL;
    }

    /* init and infer failures at load time name the node */
    probe_misbehave = 1;
    CHECK(onyx_model_load_ex(path, &lo, &m, &err) == ONYX_ERR_INVALID_MODEL);
    CHECK_MSG(err.msg, "node \"p1\" (test.Probe, opset 2): refuses to start");
    probe_misbehave = 2;
    CHECK(onyx_model_load_ex(path, &lo, &m, &err) == ONYX_ERR_UNSUPPORTED);
    CHECK_MSG(err.msg, "node \"p1\" (test.Probe, opset 2): the custom op's init failed with "
                       "ONYX_ERR_UNSUPPORTED and no message");
    probe_misbehave = 3;
    CHECK(onyx_model_load_ex(path, &lo, &m, &err) == ONYX_ERR_SHAPE);
    CHECK_MSG(err.msg, "node \"p1\" (test.Probe, opset 2): input X is too odd");
    probe_misbehave = 0;
    CHECK(m == NULL);
    /* a getter's error is not prefixed twice */
    char bad_path[512];
    fixture("probe_bad_attr.onnx", bad_path, sizeof bad_path);
    CHECK(onyx_model_load_ex(bad_path, &lo, &m, &err) == ONYX_ERR_INVALID_MODEL);
    CHECK_MSG(err.msg, "node \"p1\" (test.Probe, opset 2): attribute f has type int, expected "
                       "float");
    CHECK(strstr(err.msg + 1, "node \"p1\"") == NULL);
    /* the registry serves opsets 2 and 3 only: a model importing test 2 from a registry serving
     * [4, ...] is refused with the range */
    onyx_registry *reg4 = NULL;
    CHECK_OK(onyx_registry_create(&reg4, &err), err.msg);
    op.since_version = 4;
    op.until_version = 0;
    CHECK_OK(onyx_registry_add_op(reg4, &op), onyx_registry_errmsg(reg4));
    lo.registry = reg4;
    CHECK(onyx_model_load_ex(path, &lo, &m, &err) == ONYX_ERR_UNSUPPORTED);
    CHECK_MSG(err.msg, "node \"p1\" (Probe, domain \"test\", opset 2) (the registry has it for "
                       "opsets 4 and up)");
    onyx_registry_destroy(reg4);

    /* a custom op replaces a built-in one: Relu of odd_graph.onnx becomes x * 0 + 7 */
    onyx_registry *relu = NULL;
    CHECK_OK(onyx_registry_create(&relu, &err), err.msg);
    op = probe_op();
    op.domain = "";
    op.op_type = "Relu";
    op.since_version = 1;
    op.until_version = 0;
    CHECK_OK(onyx_registry_add_op(relu, &op), onyx_registry_errmsg(relu));
    lo.registry = relu;
    log_buf lb;
    log_clear(&lb);
    lo.log = log_to;
    lo.log_user = &lb;
    fixture("odd_graph.onnx", path, sizeof path);
    st = onyx_model_load_ex(path, &lo, &m, &err);
    CHECK_OK(st, err.msg);
    /* the loader's warnings */
    CHECK(lb.count[ONYX_LOG_WARN] == 2);
    CHECK_MSG(lb.text, "warn: ");
    CHECK_MSG(lb.text, "odd_graph.onnx: initializer \"unused\" feeds no node and is no graph "
                       "output");
    CHECK_MSG(lb.text, "odd_graph.onnx: graph output \"x\" is also a graph input: it is passed "
                       "through unchanged");
    CHECK_MSG(lb.text, "custom op added by the application");
    if (st == ONYX_OK) {
        onyx_session *s = NULL;
        CHECK_OK(onyx_session_create(m, NULL, &s, &err), err.msg);
        float x[2] = {-1, 2};
        onyx_tensor xt = {ONYX_DTYPE_F32, 1, {2}, x};
        const char *names[] = {"x"};
        onyx_tensor y;
        memset(&y, 0, sizeof y);
        CHECK_OK(onyx_session_run(s, 1, names, &xt, 1, NULL, &y), onyx_session_errmsg(s));
        CHECK(((float *)y.data)[0] == 0.0f); /* f 0, i 0: not max(x, 0) = [0, 2] */
        CHECK(((float *)y.data)[1] == 0.0f);
        onyx_session_destroy(s);
        onyx_model_destroy(m);
    }
    /* a failed load is logged */
    log_clear(&lb);
    CHECK(onyx_model_load_ex("/nonexistent.onnx", &lo, &m, NULL) == ONYX_ERR_IO);
    CHECK(lb.count[ONYX_LOG_ERROR] == 1);
    CHECK_MSG(lb.text, "error: /nonexistent.onnx: cannot open");
    onyx_registry_destroy(relu);
    onyx_registry_destroy(reg);
}

/* A custom op without backward on the path to the loss is refused by the trainer. */
static onyx_status fwd_only_infer(const void *state, const onyx_node *node, const onyx_tensor *in,
                                  int n_in, onyx_tensor *out, int n_out, onyx_error *err)
{
    (void)state;
    (void)node;
    (void)n_in;
    (void)n_out;
    (void)err;
    out[0] = in[0];
    out[0].data = NULL;
    return ONYX_OK;
}

static void fwd_only_forward(const void *state, const onyx_node *node, onyx_mode mode,
                             const onyx_tensor *in, int n_in, onyx_tensor *out, int n_out)
{
    (void)state;
    (void)node;
    (void)mode;
    (void)n_in;
    (void)n_out;
    memcpy(out[0].data, in[0].data, onyx_nbytes(&in[0]));
}

static void check_no_backward(void)
{
    char path[512];
    fixture("swish_mlp/model.onnx", path, sizeof path);
    onyx_error err;
    onyx_registry *reg = NULL;
    CHECK_OK(onyx_registry_create(&reg, &err), err.msg);
    onyx_custom_op op;
    memset(&op, 0, sizeof op);
    op.abi_version = ONYX_PLUGIN_ABI_VERSION;
    op.domain = "com.example";
    op.op_type = "Swish";
    op.since_version = 1;
    op.infer = fwd_only_infer;
    op.forward = fwd_only_forward;
    CHECK_OK(onyx_registry_add_op(reg, &op), onyx_registry_errmsg(reg));
    onyx_train_options o;
    onyx_train_options_init(&o);
    o.loss = ONYX_LOSS_MSE;
    o.registry = reg;
    onyx_trainer *t = NULL;
    CHECK(onyx_trainer_create(path, &o, &t, &err) == ONYX_ERR_UNSUPPORTED);
    CHECK_MSG(err.msg, "node \"s2\" (Swish) has no gradient");
    CHECK(t == NULL);
    /* freezing what lies before it makes it trainable again: only w3, b3 are trained */
    const char *freeze[] = {"w1", "b1", "w2", "b2"};
    o.freeze = freeze;
    o.n_freeze = 4;
    CHECK_OK(onyx_trainer_create(path, &o, &t, &err), err.msg);
    CHECK(t != NULL && onyx_trainer_param_count(t) == 2);
    onyx_trainer_destroy(t);
    onyx_registry_destroy(reg);
}

/* The trainer logs the parameters it leaves frozen because the loss does not reach them. */
static void check_frozen_log(void)
{
    char path[512];
    fixture("frozen.onnx", path, sizeof path);
    onyx_error err;
    onyx_train_options o;
    onyx_train_options_init(&o);
    o.loss = ONYX_LOSS_MSE;
    log_buf lb;
    log_clear(&lb);
    o.log = log_to;
    o.log_user = &lb;
    onyx_trainer *t = NULL;
    CHECK_OK(onyx_trainer_create(path, &o, &t, &err), err.msg);
    CHECK(t != NULL && onyx_trainer_param_count(t) == 2);
    CHECK_MSG(lb.text, "info: ");
    CHECK_MSG(lb.text, "frozen.onnx: parameter \"side\" left frozen: it does not reach output "
                       "\"y\" through differentiable inputs");
    CHECK_MSG(lb.text, "training 2 parameter tensors (10 values); 1 left frozen");
    onyx_trainer_destroy(t);
}

int main(void)
{
    check_registry();
    check_plugin_load();
    check_swish_model();
    check_swish_training();
    check_probe();
    check_no_backward();
    check_frozen_log();
    CHECK(strcmp(onyx_log_level_name(ONYX_LOG_WARN), "warn") == 0);
    return check_report();
}
