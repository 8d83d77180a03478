/* test_model_write.c — runtime/model_write.c: onyx_mlp_write and onyx_tensor_write_pb.
 *
 * Written files are read back through the loader (onyx_model_load, onyx_tensor_read_file),
 * the weights are checked against the initialisation they claim (He normal, Xavier uniform),
 * and a session's output is compared with a forward pass computed here in double. */
#include "check.h"
#include "internal.h"

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_dir[512];

static const char *path_of(const char *name)
{
    static char buf[4][1024];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof(buf[k]), "%s/%s", g_dir, name);
    return buf[k];
}

static bool file_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    *n = 0;
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(size > 0 ? (size_t)size : 1);
    *n = fread(buf, 1, (size_t)size, f);
    fclose(f);
    return buf;
}

/* The initializer called name, or NULL. */
static const onyx_tensor *init_of(const onyx_model *m, const char *name)
{
    for (int i = 0; i < m->n_values; i++)
        if (m->values[i].kind == ONYX_VALUE_INITIALIZER && strcmp(m->values[i].name, name) == 0)
            return &m->values[i].info;
    return NULL;
}

static void check_node(const onyx_model *m, size_t i, const char *name, const char *op_type)
{
    onyx_node_info ni;
    CHECK(onyx_model_node(m, i, &ni) == ONYX_OK);
    CHECK(strcmp(ni.name, name) == 0);
    CHECK(strcmp(ni.op_type, op_type) == 0);
}

/* The structure of a relu MLP with dropout: names, shapes, opset, node order. */
static void test_structure(void)
{
    const int64_t layers[] = {4, 8, 6, 3};
    onyx_mlp_spec spec = {layers, 4, NULL, 0.25f, 42};
    onyx_error err = {ONYX_OK, ""};
    CHECK_OK(onyx_mlp_write(&spec, path_of("relu.onnx"), &err), err.msg);

    onyx_model *m = NULL;
    CHECK_OK(onyx_model_load(path_of("relu.onnx"), &m, &err), err.msg);
    if (m == NULL)
        return;
    CHECK(onyx_model_ir_version(m) == 8);
    CHECK(strcmp(onyx_model_producer(m), "onyx") == 0);
    CHECK(strcmp(onyx_model_producer_version(m), ONYX_VERSION_STRING) == 0);
    CHECK(onyx_model_opset_count(m) == 1);
    const char *domain = NULL;
    int64_t version = 0;
    onyx_model_opset(m, 0, &domain, &version);
    CHECK(domain != NULL && domain[0] == '\0' && version == 17);

    CHECK(onyx_model_input_count(m) == 1 && onyx_model_output_count(m) == 1);
    onyx_value_info v;
    CHECK(onyx_model_input(m, 0, &v) == ONYX_OK);
    CHECK(strcmp(v.name, "input") == 0 && v.dtype == ONYX_DTYPE_F32 && v.rank == 2);
    CHECK(v.dims[0] == -1 && v.dim_params[0] != NULL && strcmp(v.dim_params[0], "batch") == 0);
    CHECK(v.dims[1] == 4 && v.dim_params[1] == NULL);
    CHECK(onyx_model_output(m, 0, &v) == ONYX_OK);
    CHECK(strcmp(v.name, "logits") == 0 && v.dtype == ONYX_DTYPE_F32 && v.rank == 2);
    CHECK(v.dims[0] == -1 && strcmp(v.dim_params[0], "batch") == 0 && v.dims[1] == 3);

    /* fc0 act0 drop0 fc1 act1 drop1 fc2 */
    CHECK(onyx_model_node_count(m) == 7);
    check_node(m, 0, "fc0", "Gemm");
    check_node(m, 1, "act0", "Relu");
    check_node(m, 2, "drop0", "Dropout");
    check_node(m, 3, "fc1", "Gemm");
    check_node(m, 4, "act1", "Relu");
    check_node(m, 5, "drop1", "Dropout");
    check_node(m, 6, "fc2", "Gemm");

    /* 3 weights + 3 biases + 2 ratios */
    CHECK(onyx_model_initializer_count(m) == 8);
    const onyx_tensor *w = init_of(m, "fc1.weight");
    const onyx_tensor *b = init_of(m, "fc1.bias");
    const onyx_tensor *r = init_of(m, "drop1.ratio");
    CHECK(w != NULL && w->dtype == ONYX_DTYPE_F32 && w->rank == 2);
    CHECK(w != NULL && w->dims[0] == 6 && w->dims[1] == 8); /* [out, in]: used with transB */
    CHECK(b != NULL && b->rank == 1 && b->dims[0] == 6);
    for (int i = 0; b != NULL && i < 6; i++)
        CHECK(((const float *)b->data)[i] == 0.0f);
    CHECK(r != NULL && r->rank == 0 && r->dtype == ONYX_DTYPE_F32);
    CHECK(r != NULL && ((const float *)r->data)[0] == 0.25f);
    const onyx_node *fc = &m->nodes[0];
    const onyx_attr *tb = onyx_node_attr(fc, "transB");
    CHECK(tb != NULL && tb->type == ONYX_ATTR_INT && tb->i == 1);
    /* Dropout in its opset-12 form: data and ratio, no training_mode */
    CHECK(m->nodes[2].n_in == 2);
    onyx_model_destroy(m);
}

/* Forward pass in double: x [batch, layers[0]] through Gemm (+ relu/tanh/sigmoid/gelu). */
static void reference(const onyx_model *m, const int64_t *layers, size_t n_layers, const char *act,
                      const float *x, int64_t batch, double *y)
{
    double *cur = malloc(sizeof(double) * (size_t)batch * 64);
    double *next = malloc(sizeof(double) * (size_t)batch * 64);
    for (int64_t i = 0; i < batch * layers[0]; i++)
        cur[i] = x[i];
    for (size_t l = 0; l + 1 < n_layers; l++) {
        char name[32];
        snprintf(name, sizeof(name), "fc%zu.weight", l);
        const float *w = init_of(m, name)->data;
        snprintf(name, sizeof(name), "fc%zu.bias", l);
        const float *b = init_of(m, name)->data;
        int64_t n_in = layers[l];
        int64_t n_out = layers[l + 1];
        for (int64_t s = 0; s < batch; s++) {
            for (int64_t o = 0; o < n_out; o++) {
                double acc = b[o];
                for (int64_t k = 0; k < n_in; k++)
                    acc += cur[s * n_in + k] * w[o * n_in + k];
                if (l + 2 < n_layers) {
                    if (strcmp(act, "relu") == 0)
                        acc = acc > 0 ? acc : 0;
                    else if (strcmp(act, "tanh") == 0)
                        acc = tanh(acc);
                    else if (strcmp(act, "sigmoid") == 0)
                        acc = 1.0 / (1.0 + exp(-acc));
                    else
                        acc = 0.5 * acc * (1.0 + erf(acc / sqrt(2.0)));
                }
                next[s * n_out + o] = acc;
            }
        }
        double *t = cur;
        cur = next;
        next = t;
    }
    for (int64_t i = 0; i < batch * layers[n_layers - 1]; i++)
        y[i] = cur[i];
    free(cur);
    free(next);
}

/* A session on each written MLP computes what the weights say (dropout off in infer mode). */
static void test_runs(void)
{
    static const char *const acts[] = {"relu", "tanh", "sigmoid", "gelu"};
    const int64_t layers[] = {5, 7, 4};
    float x[3 * 5];
    for (int i = 0; i < 15; i++)
        x[i] = (float)(i % 7) * 0.5f - 1.25f;
    for (size_t a = 0; a < 4; a++) {
        onyx_mlp_spec spec = {layers, 3, acts[a], a == 1 ? 0.5f : 0.0f, 3};
        onyx_error err = {ONYX_OK, ""};
        CHECK_OK(onyx_mlp_write(&spec, path_of("run.onnx"), &err), err.msg);
        onyx_model *m = NULL;
        CHECK_OK(onyx_model_load(path_of("run.onnx"), &m, &err), err.msg);
        if (m == NULL)
            continue;
        const char *domain;
        int64_t version;
        onyx_model_opset(m, 0, &domain, &version);
        CHECK(version == (a == 3 ? 20 : 17));
        CHECK(onyx_model_ir_version(m) == (a == 3 ? 9 : 8));
        CHECK(onyx_model_node_count(m) == (a == 1 ? 4u : 3u));
        onyx_session *s = NULL;
        CHECK_OK(onyx_session_create(m, NULL, &s, &err), err.msg);
        if (s != NULL) {
            const char *in_name = "input";
            onyx_tensor in = {ONYX_DTYPE_F32, 2, {3, 5}, x};
            onyx_tensor out;
            memset(&out, 0, sizeof(out));
            CHECK_OK(onyx_session_run(s, 1, &in_name, &in, 1, NULL, &out), onyx_session_errmsg(s));
            CHECK(out.dtype == ONYX_DTYPE_F32 && out.rank == 2);
            CHECK(out.dims[0] == 3 && out.dims[1] == 4);
            double y[12];
            reference(m, layers, 3, acts[a], x, 3, y);
            for (int i = 0; out.data != NULL && i < 12; i++)
                CHECK_NEAR_TOL(((const float *)out.data)[i], y[i], 1e-5, 1e-4);
            onyx_session_destroy(s);
        }
        onyx_model_destroy(m);
    }
}

static void moments(const onyx_tensor *t, double *mean, double *std, double *max_abs)
{
    int64_t n = onyx_numel(t);
    const float *p = t->data;
    double sum = 0;
    double sq = 0;
    *max_abs = 0;
    for (int64_t i = 0; i < n; i++) {
        sum += p[i];
        sq += (double)p[i] * p[i];
        if (fabs(p[i]) > *max_abs)
            *max_abs = fabs(p[i]);
    }
    *mean = sum / (double)n;
    *std = sqrt(sq / (double)n - *mean * *mean);
}

/* He normal: std sqrt(2/fan_in); Xavier uniform: within +-sqrt(6/(in+out)), std limit/sqrt(3).
 * With 300*200 = 60000 samples the sample std is within 1% of the true one. */
static void test_init_distributions(void)
{
    const int64_t layers[] = {200, 300, 10};
    for (int k = 0; k < 2; k++) {
        onyx_mlp_spec spec = {layers, 3, k == 0 ? "relu" : "sigmoid", 0.0f, 11};
        onyx_error err = {ONYX_OK, ""};
        CHECK_OK(onyx_mlp_write(&spec, path_of("dist.onnx"), &err), err.msg);
        onyx_model *m = NULL;
        CHECK_OK(onyx_model_load(path_of("dist.onnx"), &m, &err), err.msg);
        if (m == NULL)
            continue;
        const onyx_tensor *w = init_of(m, "fc0.weight");
        CHECK(w != NULL && w->dims[0] == 300 && w->dims[1] == 200);
        double mean;
        double std;
        double max_abs;
        moments(w, &mean, &std, &max_abs);
        if (k == 0) {
            double want = sqrt(2.0 / 200.0);
            CHECK(fabs(mean) < 0.02 * want);
            CHECK(fabs(std - want) < 0.02 * want);
            CHECK(max_abs > 3.5 * want); /* a normal's tails, not a uniform's edge */
        } else {
            double limit = sqrt(6.0 / 500.0);
            CHECK(fabs(mean) < 0.02 * limit);
            CHECK(fabs(std - limit / sqrt(3.0)) < 0.02 * limit);
            CHECK(max_abs <= limit && max_abs > 0.99 * limit);
        }
        onyx_model_destroy(m);
    }
}

/* The seed decides the weights: same seed, same bytes; another seed, other weights. */
static void test_determinism(void)
{
    const int64_t layers[] = {6, 5, 2};
    onyx_mlp_spec spec = {layers, 3, "tanh", 0.1f, 99};
    onyx_error err = {ONYX_OK, ""};
    CHECK_OK(onyx_mlp_write(&spec, path_of("s1.onnx"), &err), err.msg);
    CHECK_OK(onyx_mlp_write(&spec, path_of("s2.onnx"), &err), err.msg);
    spec.seed = 100;
    CHECK_OK(onyx_mlp_write(&spec, path_of("s3.onnx"), &err), err.msg);
    size_t n1;
    size_t n2;
    size_t n3;
    unsigned char *a = slurp(path_of("s1.onnx"), &n1);
    unsigned char *b = slurp(path_of("s2.onnx"), &n2);
    unsigned char *c = slurp(path_of("s3.onnx"), &n3);
    CHECK(a != NULL && b != NULL && c != NULL);
    CHECK(n1 == n2 && memcmp(a, b, n1) == 0);
    free(a);
    free(b);
    free(c);
    onyx_model *m1 = NULL;
    onyx_model *m3 = NULL;
    CHECK_OK(onyx_model_load(path_of("s1.onnx"), &m1, &err), err.msg);
    CHECK_OK(onyx_model_load(path_of("s3.onnx"), &m3, &err), err.msg);
    if (m1 != NULL && m3 != NULL) {
        const onyx_tensor *w1 = init_of(m1, "fc0.weight");
        const onyx_tensor *w3 = init_of(m3, "fc0.weight");
        CHECK(w1 != NULL && w3 != NULL && memcmp(w1->data, w3->data, 30 * sizeof(float)) != 0);
    }
    onyx_model_destroy(m1);
    onyx_model_destroy(m3);
}

static void expect_spec_error(const onyx_mlp_spec *spec, const char *sub)
{
    onyx_error err = {ONYX_OK, ""};
    const char *p = path_of("bad.onnx");
    onyx_status st = onyx_mlp_write(spec, p, &err);
    CHECK(st == ONYX_ERR_INVALID_ARG);
    CHECK(err.code == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(err.msg, sub);
    CHECK(!file_exists(p));
}

static void test_spec_errors(void)
{
    const int64_t ok[] = {4, 3};
    const int64_t zero[] = {4, 0, 3};
    const int64_t neg[] = {4, -5};
    const int64_t wide[] = {4, (int64_t)1 << 32};
    const int64_t huge[] = {100000, 100000, 100000};
    onyx_mlp_spec s;

    s = (onyx_mlp_spec){ok, 1, NULL, 0.0f, 0};
    expect_spec_error(&s, "bad.onnx: an MLP needs 2 to 10000 layer widths (input first), got 1");
    s = (onyx_mlp_spec){NULL, 2, NULL, 0.0f, 0};
    expect_spec_error(&s, "spec->layers is NULL");
    s = (onyx_mlp_spec){zero, 3, NULL, 0.0f, 0};
    expect_spec_error(&s, "layer 1 has width 0, expected 1..");
    s = (onyx_mlp_spec){neg, 2, NULL, 0.0f, 0};
    expect_spec_error(&s, "layer 1 has width -5");
    s = (onyx_mlp_spec){wide, 2, NULL, 0.0f, 0};
    expect_spec_error(&s, "layer 1 has width 4294967296");
    s = (onyx_mlp_spec){huge, 3, NULL, 0.0f, 0};
    expect_spec_error(&s, "more than 500000000 parameters");
    s = (onyx_mlp_spec){ok, 2, "swish", 0.0f, 0};
    expect_spec_error(&s, "unknown activation \"swish\" (expected relu, tanh, sigmoid or gelu)");
    s = (onyx_mlp_spec){ok, 2, "Relu", 0.0f, 0};
    expect_spec_error(&s, "unknown activation \"Relu\"");
    s = (onyx_mlp_spec){ok, 2, NULL, 1.0f, 0};
    expect_spec_error(&s, "dropout 1 is outside [0, 1)");
    s = (onyx_mlp_spec){ok, 2, NULL, -0.5f, 0};
    expect_spec_error(&s, "dropout -0.5 is outside [0, 1)");
    s = (onyx_mlp_spec){ok, 2, NULL, NAN, 0};
    expect_spec_error(&s, "is outside [0, 1)");

    onyx_error err = {ONYX_OK, ""};
    s = (onyx_mlp_spec){ok, 2, NULL, 0.0f, 0};
    CHECK(onyx_mlp_write(NULL, path_of("x.onnx"), &err) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(err.msg, "spec is NULL");
    CHECK(onyx_mlp_write(&s, NULL, &err) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(err.msg, "path is NULL");
    CHECK(onyx_mlp_write(&s, NULL, NULL) == ONYX_ERR_INVALID_ARG);
    /* a folder that does not exist: an I/O error naming the file, and nothing written */
    CHECK(onyx_mlp_write(&s, path_of("nodir/x.onnx"), &err) == ONYX_ERR_IO);
    CHECK_MSG(err.msg, "nodir/x.onnx");
    /* the smallest MLP: one Gemm, no activation */
    CHECK_OK(onyx_mlp_write(&s, path_of("tiny.onnx"), &err), err.msg);
    onyx_model *m = NULL;
    CHECK_OK(onyx_model_load(path_of("tiny.onnx"), &m, &err), err.msg);
    CHECK(m != NULL && onyx_model_node_count(m) == 1);
    onyx_model_destroy(m);
}

/* onyx_tensor_write_pb then onyx_tensor_read_file gives back dtype, shape, data and name. */
static void test_tensor_pb(void)
{
    static const onyx_dtype dts[] = {
        ONYX_DTYPE_F32, ONYX_DTYPE_F64, ONYX_DTYPE_F16, ONYX_DTYPE_BF16, ONYX_DTYPE_I8,
        ONYX_DTYPE_I16, ONYX_DTYPE_I32, ONYX_DTYPE_I64, ONYX_DTYPE_U8,   ONYX_DTYPE_U16,
        ONYX_DTYPE_U32, ONYX_DTYPE_U64, ONYX_DTYPE_BOOL};
    unsigned char data[48 * 8];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (unsigned char)(i * 13 + 5);
    unsigned char bools[48];
    for (int i = 0; i < 48; i++)
        bools[i] = (unsigned char)(i % 2);
    static const int ranks[3] = {0, 1, 4};
    static const int64_t shapes[3][4] = {{0}, {7}, {2, 1, 3, 4}};
    for (size_t d = 0; d < sizeof(dts) / sizeof(dts[0]); d++) {
        for (int k = 0; k < 3; k++) {
            onyx_tensor t = {dts[d], ranks[k], {0}, dts[d] == ONYX_DTYPE_BOOL ? bools : data};
            memcpy(t.dims, shapes[k], sizeof(shapes[k]));
            onyx_error err = {ONYX_OK, ""};
            CHECK_OK(onyx_tensor_write_pb(path_of("t.pb"), "some/name:0", &t, &err), err.msg);
            onyx_tensor r;
            char *name = NULL;
            CHECK_OK(onyx_tensor_read_file(path_of("t.pb"), &r, &name, &err), err.msg);
            CHECK(r.dtype == t.dtype && r.rank == t.rank);
            for (int i = 0; i < t.rank; i++)
                CHECK(r.dims[i] == t.dims[i]);
            size_t nb = (size_t)onyx_numel(&t) * onyx_dtype_size(t.dtype);
            CHECK(r.data != NULL && memcmp(r.data, t.data, nb) == 0);
            CHECK(name != NULL && strcmp(name, "some/name:0") == 0);
            free(name);
            onyx_tensor_free(&r);
        }
    }
    /* empty tensors and no name */
    onyx_tensor e = {ONYX_DTYPE_F32, 2, {0, 3}, NULL};
    onyx_error err = {ONYX_OK, ""};
    CHECK_OK(onyx_tensor_write_pb(path_of("e.pb"), NULL, &e, &err), err.msg);
    onyx_tensor r;
    char *name = NULL;
    CHECK_OK(onyx_tensor_read_file(path_of("e.pb"), &r, &name, &err), err.msg);
    CHECK(r.rank == 2 && r.dims[0] == 0 && r.dims[1] == 3);
    CHECK(name == NULL || name[0] == '\0');
    free(name);
    onyx_tensor_free(&r);
    /* errors */
    onyx_tensor s = {ONYX_DTYPE_STRING, 1, {1}, data};
    CHECK(onyx_tensor_write_pb(path_of("s.pb"), NULL, &s, &err) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(err.msg, "s.pb: cannot write a tensor of dtype string");
    onyx_tensor big = {ONYX_DTYPE_F32, 3, {1 << 20, 1 << 20, 1 << 20}, data};
    CHECK(onyx_tensor_write_pb(path_of("big.pb"), NULL, &big, &err) == ONYX_ERR_SHAPE);
    CHECK_MSG(err.msg, "big.pb: tensor shape [1048576,1048576,1048576] is negative or too large");
    onyx_tensor nodata = {ONYX_DTYPE_F32, 1, {3}, NULL};
    CHECK(onyx_tensor_write_pb(path_of("n.pb"), NULL, &nodata, &err) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(err.msg, "data is NULL");
    onyx_tensor deep = {ONYX_DTYPE_F32, 9, {1}, data};
    CHECK(onyx_tensor_write_pb(path_of("d.pb"), NULL, &deep, &err) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(err.msg, "rank 9 is outside 0..8");
    CHECK(!file_exists(path_of("s.pb")) && !file_exists(path_of("big.pb")));
}

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    char p[1024];
    int leftovers = 0;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (strstr(e->d_name, ".tmp.") != NULL)
            leftovers++;
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        remove(p);
    }
    closedir(d);
    rmdir(dir);
    CHECK(leftovers == 0); /* no temporary file survives a write, failed or not */
}

int main(void)
{
    snprintf(g_dir, sizeof(g_dir), "%s/tmp_test_model_write_XXXXXX", ONYX_BINARY_DIR);
    if (mkdtemp(g_dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_structure();
    test_runs();
    test_init_distributions();
    test_determinism();
    test_spec_errors();
    test_tensor_pb();
    remove_dir(g_dir);
    return check_report();
}
