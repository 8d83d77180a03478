/* test_model_write.c — runtime/model_write.c: onyx_mlp_write, onyx_tensor_write_pb,
 * onyx_model_rewrite and onyx_model_add_dropout.
 *
 * Written files are read back through the loader (onyx_model_load, onyx_tensor_read_file),
 * the weights are checked against the initialisation they claim (He normal, Xavier uniform),
 * and a session's output is compared with a forward pass computed here in double. Rewritten
 * models are also compared with their source message by message through protobuf-c, and checked
 * by onnx.checker when /usr/bin/python3 has onnx (skipped otherwise). */
#include "check.h"
#include "pb_write.h"
#include "test_files.h"
#include "internal.h"

#include <dirent.h>
#include <protobuf-c/protobuf-c.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    CHECK_OK(onyx_mlp_write(&spec, th_path("relu.onnx"), &err), err.msg);

    onyx_model *m = NULL;
    CHECK_OK(onyx_model_load(th_path("relu.onnx"), &m, &err), err.msg);
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
        CHECK_OK(onyx_mlp_write(&spec, th_path("run.onnx"), &err), err.msg);
        onyx_model *m = NULL;
        CHECK_OK(onyx_model_load(th_path("run.onnx"), &m, &err), err.msg);
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
        CHECK_OK(onyx_mlp_write(&spec, th_path("dist.onnx"), &err), err.msg);
        onyx_model *m = NULL;
        CHECK_OK(onyx_model_load(th_path("dist.onnx"), &m, &err), err.msg);
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
    CHECK_OK(onyx_mlp_write(&spec, th_path("s1.onnx"), &err), err.msg);
    CHECK_OK(onyx_mlp_write(&spec, th_path("s2.onnx"), &err), err.msg);
    spec.seed = 100;
    CHECK_OK(onyx_mlp_write(&spec, th_path("s3.onnx"), &err), err.msg);
    size_t n1;
    size_t n2;
    size_t n3;
    unsigned char *a = th_slurp(th_path("s1.onnx"), &n1);
    unsigned char *b = th_slurp(th_path("s2.onnx"), &n2);
    unsigned char *c = th_slurp(th_path("s3.onnx"), &n3);
    CHECK(a != NULL && b != NULL && c != NULL);
    CHECK(n1 == n2 && memcmp(a, b, n1) == 0);
    free(a);
    free(b);
    free(c);
    onyx_model *m1 = NULL;
    onyx_model *m3 = NULL;
    CHECK_OK(onyx_model_load(th_path("s1.onnx"), &m1, &err), err.msg);
    CHECK_OK(onyx_model_load(th_path("s3.onnx"), &m3, &err), err.msg);
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
    const char *p = th_path("bad.onnx");
    onyx_status st = onyx_mlp_write(spec, p, &err);
    CHECK(st == ONYX_ERR_INVALID_ARG);
    CHECK(err.code == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(err.msg, sub);
    CHECK(!th_file_exists(p));
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
    CHECK(onyx_mlp_write(NULL, th_path("x.onnx"), &err) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(err.msg, "spec is NULL");
    CHECK(onyx_mlp_write(&s, NULL, &err) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(err.msg, "path is NULL");
    CHECK(onyx_mlp_write(&s, NULL, NULL) == ONYX_ERR_INVALID_ARG);
    /* a folder that does not exist: an I/O error naming the file, and nothing written */
    CHECK(onyx_mlp_write(&s, th_path("nodir/x.onnx"), &err) == ONYX_ERR_IO);
    CHECK_MSG(err.msg, "nodir/x.onnx");
    /* the smallest MLP: one Gemm, no activation */
    CHECK_OK(onyx_mlp_write(&s, th_path("tiny.onnx"), &err), err.msg);
    onyx_model *m = NULL;
    CHECK_OK(onyx_model_load(th_path("tiny.onnx"), &m, &err), err.msg);
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
            CHECK_OK(onyx_tensor_write_pb(th_path("t.pb"), "some/name:0", &t, &err), err.msg);
            onyx_tensor r;
            char *name = NULL;
            CHECK_OK(onyx_tensor_read_file(th_path("t.pb"), &r, &name, &err), err.msg);
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
    CHECK_OK(onyx_tensor_write_pb(th_path("e.pb"), NULL, &e, &err), err.msg);
    onyx_tensor r;
    char *name = NULL;
    CHECK_OK(onyx_tensor_read_file(th_path("e.pb"), &r, &name, &err), err.msg);
    CHECK(r.rank == 2 && r.dims[0] == 0 && r.dims[1] == 3);
    CHECK(name == NULL || name[0] == '\0');
    free(name);
    onyx_tensor_free(&r);
    /* errors */
    onyx_tensor s = {ONYX_DTYPE_STRING, 1, {1}, data};
    CHECK(onyx_tensor_write_pb(th_path("s.pb"), NULL, &s, &err) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(err.msg, "s.pb: cannot write a tensor of dtype string");
    onyx_tensor big = {ONYX_DTYPE_F32, 3, {1 << 20, 1 << 20, 1 << 20}, data};
    CHECK(onyx_tensor_write_pb(th_path("big.pb"), NULL, &big, &err) == ONYX_ERR_SHAPE);
    CHECK_MSG(err.msg, "big.pb: tensor shape [1048576,1048576,1048576] is negative or too large");
    onyx_tensor nodata = {ONYX_DTYPE_F32, 1, {3}, NULL};
    CHECK(onyx_tensor_write_pb(th_path("n.pb"), NULL, &nodata, &err) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(err.msg, "data is NULL");
    onyx_tensor deep = {ONYX_DTYPE_F32, 9, {1}, data};
    CHECK(onyx_tensor_write_pb(th_path("d.pb"), NULL, &deep, &err) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(err.msg, "rank 9 is outside 0..8");
    CHECK(!th_file_exists(th_path("s.pb")) && !th_file_exists(th_path("big.pb")));
}

/* ---- rewriting models: helpers ------------------------------------------------------------- */

/* Tests cannot include the generated onnx.pb-c.h (its build folder is not on their include
 * path), so they read messages through protobuf-c's descriptors, field by name. The descriptor
 * is in libonyx (build/proto/onnx.pb-c.c). */
extern const ProtobufCMessageDescriptor onnx__model_proto__descriptor;

static const ProtobufCFieldDescriptor *pb_fd(const ProtobufCMessage *m, const char *field)
{
    const ProtobufCFieldDescriptor *fd =
        protobuf_c_message_descriptor_get_field_by_name(m->descriptor, field);
    if (fd == NULL) {
        fprintf(stderr, "test bug: %s has no field %s\n", m->descriptor->name, field);
        exit(2);
    }
    return fd;
}

static void *pb_ptr(const ProtobufCMessage *m, const char *field)
{
    return (char *)m + pb_fd(m, field)->offset;
}

static const char *pb_str(const ProtobufCMessage *m, const char *field)
{
    return *(char **)pb_ptr(m, field);
}

static int64_t pb_i64(const ProtobufCMessage *m, const char *field)
{
    return *(int64_t *)pb_ptr(m, field);
}

static int pb_enum(const ProtobufCMessage *m, const char *field)
{
    return *(int *)pb_ptr(m, field);
}

/* Element count of a repeated field, or the has_ flag of an optional scalar. */
static size_t pb_n(const ProtobufCMessage *m, const char *field)
{
    const ProtobufCFieldDescriptor *fd = pb_fd(m, field);
    if (fd->label == PROTOBUF_C_LABEL_REPEATED)
        return *(size_t *)((char *)m + fd->quantifier_offset);
    return *(protobuf_c_boolean *)((char *)m + fd->quantifier_offset);
}

static ProtobufCMessage *pb_msg(const ProtobufCMessage *m, const char *field)
{
    return *(ProtobufCMessage **)pb_ptr(m, field);
}

static ProtobufCMessage *pb_at(const ProtobufCMessage *m, const char *field, size_t i)
{
    return (*(ProtobufCMessage ***)pb_ptr(m, field))[i];
}

static const char *pb_str_at(const ProtobufCMessage *m, const char *field, size_t i)
{
    return (*(char ***)pb_ptr(m, field))[i];
}

static ProtobufCBinaryData pb_bytes(const ProtobufCMessage *m, const char *field)
{
    return *(ProtobufCBinaryData *)pb_ptr(m, field);
}

static ProtobufCMessage *pb_unpack(const void *buf, size_t n)
{
    return protobuf_c_message_unpack(&onnx__model_proto__descriptor, NULL, n, buf);
}

/* a and b serialize to the same bytes. */
static bool pb_same(const ProtobufCMessage *a, const ProtobufCMessage *b)
{
    size_t na = protobuf_c_message_get_packed_size(a);
    size_t nb = protobuf_c_message_get_packed_size(b);
    if (na != nb)
        return false;
    unsigned char *pa = malloc(na + 1);
    unsigned char *pb = malloc(nb + 1);
    protobuf_c_message_pack(a, pa);
    protobuf_c_message_pack(b, pb);
    bool same = memcmp(pa, pb, na) == 0;
    free(pa);
    free(pb);
    return same;
}

/* a and b serialize to the same bytes once field (a message or a repeated field) is left out
 * of both. */
static bool pb_same_except(ProtobufCMessage *a, ProtobufCMessage *b, const char *field)
{
    const ProtobufCFieldDescriptor *fd = pb_fd(a, field);
    void **pa = pb_ptr(a, field);
    void **pb = pb_ptr(b, field);
    void *sa = *pa;
    void *sb = *pb;
    size_t *qa = (size_t *)((char *)a + fd->quantifier_offset);
    size_t *qb = (size_t *)((char *)b + fd->quantifier_offset);
    bool repeated = fd->label == PROTOBUF_C_LABEL_REPEATED;
    size_t na = repeated ? *qa : 0;
    size_t nb = repeated ? *qb : 0;
    *pa = NULL;
    *pb = NULL;
    if (repeated)
        *qa = *qb = 0;
    bool same = pb_same(a, b);
    *pa = sa;
    *pb = sb;
    if (repeated) {
        *qa = na;
        *qb = nb;
    }
    return same;
}

static ProtobufCMessage *pb_initializer(const ProtobufCMessage *model, const char *name)
{
    const ProtobufCMessage *g = pb_msg(model, "graph");
    for (size_t i = 0; i < pb_n(g, "initializer"); i++) {
        ProtobufCMessage *t = pb_at(g, "initializer", i);
        if (strcmp(pb_str(t, "name"), name) == 0)
            return t;
    }
    return NULL;
}

/* Value of external_data entry key of tensor t, or NULL. */
static const char *pb_ext_entry(const ProtobufCMessage *t, const char *key)
{
    for (size_t i = 0; i < pb_n(t, "external_data"); i++) {
        const ProtobufCMessage *e = pb_at(t, "external_data", i);
        if (strcmp(pb_str(e, "key"), key) == 0)
            return pb_str(e, "value");
    }
    return NULL;
}

/* The unknown field number `field` of m, or NULL. */
static const ProtobufCMessageUnknownField *pb_unknown(const ProtobufCMessage *m, uint32_t field)
{
    for (unsigned i = 0; i < m->n_unknown_fields; i++)
        if (m->unknown_fields[i].tag == field)
            return &m->unknown_fields[i];
    return NULL;
}

static bool same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static bool contains(const void *hay, size_t n, const void *needle, size_t k)
{
    const unsigned char *h = hay;
    for (size_t i = 0; k <= n && i <= n - k; i++)
        if (memcmp(h + i, needle, k) == 0)
            return true;
    return false;
}

/* The source checked against a rewrite of it that replaced the initializers named updated[]:
 * everything but those initializers' data serializes to the same bytes. */
static void check_preserved(const void *src, size_t n_src, const void *out, size_t n_out,
                            const char *const *updated, size_t n_updated)
{
    ProtobufCMessage *a = pb_unpack(src, n_src);
    ProtobufCMessage *b = pb_unpack(out, n_out);
    CHECK(a != NULL && b != NULL);
    if (a == NULL || b == NULL)
        goto done;
    /* producer, opset imports, doc string, metadata, functions, unknown fields... */
    CHECK(pb_same_except(a, b, "graph"));
    ProtobufCMessage *ga = pb_msg(a, "graph");
    ProtobufCMessage *gb = pb_msg(b, "graph");
    /* nodes (names, attributes, doc strings), inputs, outputs, value_info, graph metadata... */
    CHECK(pb_same_except(ga, gb, "initializer"));
    CHECK(pb_n(ga, "initializer") == pb_n(gb, "initializer"));
    for (size_t i = 0; i < pb_n(ga, "initializer") && i < pb_n(gb, "initializer"); i++) {
        ProtobufCMessage *ta = pb_at(ga, "initializer", i);
        ProtobufCMessage *tb = pb_at(gb, "initializer", i);
        CHECK(strcmp(pb_str(ta, "name"), pb_str(tb, "name")) == 0);
        bool is_updated = false;
        for (size_t k = 0; k < n_updated; k++)
            is_updated = is_updated || strcmp(pb_str(ta, "name"), updated[k]) == 0;
        if (!is_updated) {
            CHECK(pb_same(ta, tb));
            continue;
        }
        /* only the data fields differ: dims, dtype, name, doc string, unknown fields stay */
        CHECK(pb_n(tb, "raw_data") == 1);
        CHECK(pb_n(tb, "float_data") == 0 && pb_n(tb, "external_data") == 0);
        CHECK(pb_n(tb, "data_location") == 0);
        CHECK(pb_n(ta, "dims") == pb_n(tb, "dims"));
        for (size_t d = 0; d < pb_n(ta, "dims") && d < pb_n(tb, "dims"); d++)
            CHECK((*(int64_t **)pb_ptr(ta, "dims"))[d] == (*(int64_t **)pb_ptr(tb, "dims"))[d]);
        CHECK(pb_enum(ta, "data_type") == pb_enum(tb, "data_type"));
        CHECK(same_str(pb_str(ta, "doc_string"), pb_str(tb, "doc_string")));
        CHECK(ta->n_unknown_fields == tb->n_unknown_fields);
    }
done:
    if (a != NULL)
        protobuf_c_message_free_unpacked(a, NULL);
    if (b != NULL)
        protobuf_c_message_free_unpacked(b, NULL);
}

/* A protobuf message under construction, for models the tests build field by field (with
 * fields onyx does not know). */
typedef th_pb wb;

/* The unknown fields the tests plant: 999 (varint 123456789) and 1000 (bytes "future"). */
static void wb_unknown(wb *b)
{
    th_pb_int(b, 999, 123456789);
    th_pb_str(b, 1000, "future");
}

static void check_unknown(const ProtobufCMessage *m)
{
    const ProtobufCMessageUnknownField *u = pb_unknown(m, 999);
    const ProtobufCMessageUnknownField *v = pb_unknown(m, 1000);
    CHECK(u != NULL && u->wire_type == PROTOBUF_C_WIRE_TYPE_VARINT);
    CHECK(u != NULL && u->len == 4 && u->data[0] == 0x95 && u->data[3] == 0x3a); /* 123456789 */
    CHECK(v != NULL && v->wire_type == PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED);
    /* protobuf-c keeps a length-delimited field's length prefix with its data */
    CHECK(v != NULL && v->len == 7 && v->data[0] == 6 && memcmp(v->data + 1, "future", 6) == 0);
}

static void wb_node(wb *g, const char *name, const char *op, const char *in0, const char *in1,
                    const char *out, bool extras)
{
    wb n = {NULL, 0, 0};
    th_pb_str(&n, 1, in0);
    if (in1 != NULL)
        th_pb_str(&n, 1, in1);
    th_pb_str(&n, 2, out);
    th_pb_str(&n, 3, name);
    th_pb_str(&n, 4, op);
    th_pb_str(&n, 7, "");
    if (extras) {
        th_pb_str(&n, 6, "node doc");
        wb_unknown(&n);
    }
    th_pb_msg(g, 1, &n);
}

static void wb_tensor(wb *g, unsigned field, const char *name, int rank, const int64_t *dims,
                      const float *data, bool extras)
{
    wb t = {NULL, 0, 0};
    int64_t numel = 1;
    for (int i = 0; i < rank; i++) {
        th_pb_int(&t, 1, dims[i]);
        numel *= dims[i];
    }
    th_pb_int(&t, 2, ONYX_DTYPE_F32);
    th_pb_str(&t, 8, name);
    th_pb_bytes(&t, 9, data, (size_t)numel * sizeof(float));
    if (extras) {
        th_pb_str(&t, 12, "tensor doc");
        wb_unknown(&t);
    }
    th_pb_msg(g, field, &t);
}

/* A float tensor ValueInfoProto [d0, d1] as field `field`. */
static void wb_value_info(wb *g, unsigned field, const char *name, int64_t d0, int64_t d1)
{
    wb shape = {NULL, 0, 0};
    wb dim = {NULL, 0, 0};
    th_pb_int(&dim, 1, d0);
    th_pb_msg(&shape, 1, &dim);
    th_pb_int(&dim, 1, d1);
    th_pb_msg(&shape, 1, &dim);
    wb tt = {NULL, 0, 0};
    th_pb_int(&tt, 1, ONYX_DTYPE_F32);
    th_pb_msg(&tt, 2, &shape);
    wb type = {NULL, 0, 0};
    th_pb_msg(&type, 1, &tt);
    wb vi = {NULL, 0, 0};
    th_pb_str(&vi, 1, name);
    th_pb_msg(&vi, 2, &type);
    th_pb_msg(g, field, &vi);
}

/* The weights of the MatMul model. */
static const float MM_W1[4 * 3] = {0.5f,  -1.0f,  0.25f, 1.5f,  0.75f,  -0.5f,
                                   -2.0f, 0.125f, 1.0f,  0.25f, -0.75f, 2.0f};
static const float MM_W2[3 * 2] = {1.0f, -0.5f, 0.25f, 2.0f, -1.5f, 0.75f};
static const float MM_B[2] = {0.1f, -0.2f};

/* y = Sigmoid(Relu(x [2,4] @ W1 [4,3]) @ W2 [3,2] + b [2]), opset `opset`, named "relu", "mm2"...
 * extras: doc strings, metadata_props and unknown fields on the model, graph, nodes and W1.
 * sigmoid_name names the Sigmoid node. */
static wb mm_model(int64_t opset, bool extras, const char *sigmoid_name)
{
    static const int64_t d_w1[2] = {4, 3};
    static const int64_t d_w2[2] = {3, 2};
    static const int64_t d_b[1] = {2};
    wb g = {NULL, 0, 0};
    wb_node(&g, "mm1", "MatMul", "x", "W1", "h", extras);
    wb_node(&g, "relu", "Relu", "h", NULL, "r", extras);
    wb_node(&g, "mm2", "MatMul", "r", "W2", "z", extras);
    wb_node(&g, "add", "Add", "z", "b", "s", extras);
    wb_node(&g, sigmoid_name, "Sigmoid", "s", NULL, "y", extras);
    th_pb_str(&g, 2, "mm");
    wb_tensor(&g, 5, "W1", 2, d_w1, MM_W1, extras);
    wb_tensor(&g, 5, "W2", 2, d_w2, MM_W2, false);
    wb_tensor(&g, 5, "b", 1, d_b, MM_B, false);
    wb_value_info(&g, 11, "x", 2, 4);
    wb_value_info(&g, 12, "y", 2, 2);
    if (extras) {
        th_pb_str(&g, 10, "graph doc");
        wb_unknown(&g);
    }
    wb m = {NULL, 0, 0};
    th_pb_int(&m, 1, 8);
    wb opset_id = {NULL, 0, 0};
    th_pb_str(&opset_id, 1, "");
    th_pb_int(&opset_id, 2, opset);
    th_pb_msg(&m, 8, &opset_id);
    th_pb_str(&m, 2, "test-producer");
    th_pb_str(&m, 3, "4.5.6");
    th_pb_msg(&m, 7, &g);
    if (extras) {
        th_pb_str(&m, 6, "model doc");
        wb prop = {NULL, 0, 0};
        th_pb_str(&prop, 1, "author");
        th_pb_str(&prop, 2, "onyx tests");
        th_pb_msg(&m, 14, &prop);
        wb_unknown(&m);
    }
    return m;
}

/* Sigmoid(Relu(x W1) W2 + b) in double, x [2,4]. */
static void mm_reference(const float *x, const float *w1, double *y)
{
    for (int s = 0; s < 2; s++) {
        double r[3];
        for (int j = 0; j < 3; j++) {
            double acc = 0;
            for (int k = 0; k < 4; k++)
                acc += (double)x[s * 4 + k] * w1[k * 3 + j];
            r[j] = acc > 0 ? acc : 0;
        }
        for (int o = 0; o < 2; o++) {
            double acc = MM_B[o];
            for (int j = 0; j < 3; j++)
                acc += r[j] * MM_W2[j * 2 + o];
            y[s * 2 + o] = 1.0 / (1.0 + exp(-acc));
        }
    }
}

/* Loads the model in buf (external data relative to base_dir), runs it on input `in` in mode,
 * and copies the first output's n floats to y. False on any failure (reported). */
static bool run_buffer(const void *buf, size_t n, const char *base_dir, onyx_mode mode,
                       const char *in_name, const onyx_tensor *in, float *y, size_t n_y)
{
    onyx_error err = {ONYX_OK, ""};
    onyx_model *m = NULL;
    CHECK_OK(onyx_model_load_buffer(buf, n, base_dir, "rewritten", &m, &err), err.msg);
    if (m == NULL)
        return false;
    onyx_session_options opt;
    onyx_session_options_init(&opt);
    opt.mode = mode;
    opt.seed = 5;
    onyx_session *s = NULL;
    CHECK_OK(onyx_session_create(m, &opt, &s, &err), err.msg);
    bool ok = false;
    if (s != NULL) {
        onyx_tensor out;
        memset(&out, 0, sizeof(out));
        onyx_status st = onyx_session_run(s, 1, &in_name, in, 1, NULL, &out);
        CHECK_OK(st, onyx_session_errmsg(s));
        ok = st == ONYX_OK && out.dtype == ONYX_DTYPE_F32 && (size_t)onyx_numel(&out) == n_y;
        CHECK(ok);
        if (ok)
            memcpy(y, out.data, n_y * sizeof(float));
        onyx_session_destroy(s);
    }
    onyx_model_destroy(m);
    return ok;
}

static bool have_python_onnx(void)
{
    static int have = -1;
    if (have < 0)
        have = access("/usr/bin/python3", X_OK) == 0 &&
               system("/usr/bin/python3 -c 'import onnx' >/dev/null 2>&1") == 0;
    return have == 1;
}

/* onnx.load reads the file (with its external data) and onnx.checker.check_model accepts it
 * (full_check: with shape inference); true when python3 with onnx is not installed (skipped,
 * said once). quiet: python's complaints go to /dev/null. */
static bool python_check_quiet(const char *path, bool quiet)
{
    if (!have_python_onnx()) {
        static bool said;
        if (!said)
            printf("skipped: onnx.checker (no /usr/bin/python3 with onnx)\n");
        said = true;
        return true;
    }
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "/usr/bin/python3 -c 'import sys, onnx; m = onnx.load(sys.argv[1]); "
             "onnx.checker.check_model(m, full_check=True); onnx.checker.check_model(sys.argv[1])' "
             "'%s'%s",
             path, quiet ? " 2>/dev/null" : "");
    return system(cmd) == 0;
}

static bool python_check(const char *path)
{
    static bool checked_checker;
    if (!checked_checker && have_python_onnx()) {
        /* the check can fail: a file that is not a model is refused */
        CHECK(th_write_bytes(th_path("not_a_model.onnx"), "\x08\x08\x3a\x05junk", 9));
        CHECK(!python_check_quiet(th_path("not_a_model.onnx"), true));
        checked_checker = true;
    }
    return python_check_quiet(path, false);
}

static const char *fixture(const char *rel)
{
    static char buf[2][1024];
    static int k;
    k = (k + 1) % 2;
    snprintf(buf[k], sizeof(buf[k]), "%s/tests/fixtures/%s", ONYX_SOURCE_DIR, rel);
    return buf[k];
}

/* ---- rewriting models: tests --------------------------------------------------------------- */

/* An MLP from onyx_mlp_write with new weights for three of its initializers: the rewritten model
 * computes what the new weights say, and nothing else changed. */
static void test_rewrite_mlp(void)
{
    const int64_t layers[] = {5, 7, 3};
    onyx_mlp_spec spec = {layers, 3, "relu", 0.25f, 1};
    onyx_error err = {ONYX_OK, ""};
    CHECK_OK(onyx_mlp_write(&spec, th_path("src.onnx"), &err), err.msg);
    size_t n_src;
    unsigned char *src = th_slurp(th_path("src.onnx"), &n_src);
    CHECK(src != NULL);
    if (src == NULL)
        return;

    float w0[7 * 5];
    float b0[7];
    float w1[3 * 7];
    for (int i = 0; i < 35; i++)
        w0[i] = (float)((i * 7) % 11) * 0.125f - 0.6f;
    for (int i = 0; i < 7; i++)
        b0[i] = (float)i * 0.05f - 0.1f;
    for (int i = 0; i < 21; i++)
        w1[i] = (float)((i * 5) % 9) * 0.25f - 1.0f;
    onyx_tensor tw0 = {ONYX_DTYPE_F32, 2, {7, 5}, w0};
    onyx_tensor tb0 = {ONYX_DTYPE_F32, 1, {7}, b0};
    onyx_tensor tw1 = {ONYX_DTYPE_F32, 2, {3, 7}, w1};
    onyx_initializer_update up[3] = {
        {"fc1.weight", &tw1}, {"fc0.weight", &tw0}, {"fc0.bias", &tb0}};
    void *out = NULL;
    size_t n_out = 0;
    CHECK_OK(onyx_model_rewrite(src, n_src, NULL, up, 3, NULL, &out, &n_out, &err), err.msg);
    CHECK(out != NULL && n_out > 0);
    if (out == NULL) {
        free(src);
        return;
    }
    const char *const names[3] = {"fc1.weight", "fc0.weight", "fc0.bias"};
    check_preserved(src, n_src, out, n_out, names, 3);

    /* the session computes relu(x W0^T + b0) W1^T + 0 (fc1.bias stays zero) */
    float x[4 * 5];
    for (int i = 0; i < 20; i++)
        x[i] = (float)(i % 6) * 0.4f - 1.0f;
    onyx_tensor in = {ONYX_DTYPE_F32, 2, {4, 5}, x};
    float y[4 * 3];
    if (run_buffer(out, n_out, NULL, ONYX_MODE_INFER, "input", &in, y, 12)) {
        for (int s = 0; s < 4; s++) {
            double h[7];
            for (int j = 0; j < 7; j++) {
                double acc = b0[j];
                for (int k = 0; k < 5; k++)
                    acc += (double)x[s * 5 + k] * w0[j * 5 + k];
                h[j] = acc > 0 ? acc : 0;
            }
            for (int o = 0; o < 3; o++) {
                double acc = 0;
                for (int j = 0; j < 7; j++)
                    acc += h[j] * w1[o * 7 + j];
                CHECK_NEAR_TOL(y[s * 3 + o], acc, 1e-5, 1e-5);
            }
        }
    }
    /* the new values are stored bit for bit */
    ProtobufCMessage *m = pb_unpack(out, n_out);
    CHECK(m != NULL);
    if (m != NULL) {
        ProtobufCMessage *t = pb_initializer(m, "fc0.weight");
        CHECK(t != NULL && pb_bytes(t, "raw_data").len == sizeof(w0));
        CHECK(t != NULL && memcmp(pb_bytes(t, "raw_data").data, w0, sizeof(w0)) == 0);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    free(out);

    /* no updates: the same bytes back */
    CHECK_OK(onyx_model_rewrite(src, n_src, NULL, NULL, 0, NULL, &out, &n_out, &err), err.msg);
    CHECK(out != NULL && n_out == n_src && memcmp(out, src, n_src) == 0);
    free(out);
    free(src);
}

/* Reference forward of the PyTorch MLP: Gemm, BatchNorm (eval), Relu, Gemm, Tanh, Gemm,
 * LogSoftmax, in double, with the initializers of m except those replaced in up[]. */
static const float *weight_of(const onyx_model *m, const onyx_initializer_update *up, size_t n_up,
                              const char *name)
{
    for (size_t i = 0; i < n_up; i++)
        if (strcmp(up[i].name, name) == 0)
            return up[i].value->data;
    return init_of(m, name)->data;
}

static void dense(const double *x, int64_t n_in, const float *w, const float *b, int64_t n_out,
                  double *y)
{
    for (int64_t o = 0; o < n_out; o++) {
        double acc = b[o];
        for (int64_t k = 0; k < n_in; k++)
            acc += x[k] * w[o * n_in + k];
        y[o] = acc;
    }
}

static void torch_reference(const onyx_model *m, const onyx_initializer_update *up, size_t n_up,
                            const float *x, int64_t batch, double *y)
{
    const onyx_attr *eps_attr = onyx_node_attr(&m->nodes[1], "epsilon");
    double eps = eps_attr != NULL ? eps_attr->f : 1e-5;
    const float *g = weight_of(m, up, n_up, "bn.weight");
    const float *beta = weight_of(m, up, n_up, "bn.bias");
    const float *mean = weight_of(m, up, n_up, "bn.running_mean");
    const float *var = weight_of(m, up, n_up, "bn.running_var");
    for (int64_t s = 0; s < batch; s++) {
        double in[64];
        double h1[32];
        double h2[16];
        double z[10];
        for (int k = 0; k < 64; k++)
            in[k] = x[s * 64 + k];
        dense(in, 64, weight_of(m, up, n_up, "fc1.weight"), weight_of(m, up, n_up, "fc1.bias"), 32,
              h1);
        for (int j = 0; j < 32; j++) {
            double v = (h1[j] - mean[j]) / sqrt((double)var[j] + eps) * g[j] + beta[j];
            h1[j] = v > 0 ? v : 0;
        }
        dense(h1, 32, weight_of(m, up, n_up, "fc2.weight"), weight_of(m, up, n_up, "fc2.bias"), 16,
              h2);
        for (int j = 0; j < 16; j++)
            h2[j] = tanh(h2[j]);
        dense(h2, 16, weight_of(m, up, n_up, "fc3.weight"), weight_of(m, up, n_up, "fc3.bias"), 10,
              z);
        double zmax = z[0];
        for (int j = 1; j < 10; j++)
            zmax = z[j] > zmax ? z[j] : zmax;
        double sum = 0;
        for (int j = 0; j < 10; j++)
            sum += exp(z[j] - zmax);
        for (int j = 0; j < 10; j++)
            y[s * 10 + j] = z[j] - zmax - log(sum);
    }
}

/* The PyTorch export: a rewrite without updates is PyTorch's own bytes; with updates, it runs
 * the new weights and keeps the rest, including model-level fields appended to the file. */
static void test_rewrite_torch(void)
{
    size_t n_src;
    unsigned char *src = th_slurp(fixture("torch_mlp_eval/model.onnx"), &n_src);
    onyx_error err = {ONYX_OK, ""};
    onyx_model *orig = NULL;
    CHECK_OK(onyx_model_load(fixture("torch_mlp_eval/model.onnx"), &orig, &err), err.msg);
    onyx_tensor x;
    onyx_tensor want;
    CHECK_OK(
        onyx_tensor_read_file(fixture("torch_mlp_eval/test_data_set_0/input_0.pb"), &x, NULL, &err),
        err.msg);
    CHECK_OK(onyx_tensor_read_file(fixture("torch_mlp_eval/test_data_set_0/output_0.pb"), &want,
                                   NULL, &err),
             err.msg);
    CHECK(src != NULL && orig != NULL && x.rank == 2 && x.dims[0] == 8 && x.dims[1] == 64);
    if (src == NULL || orig == NULL || x.data == NULL || want.data == NULL) {
        free(src);
        onyx_model_destroy(orig);
        return;
    }

    /* protobuf-c writes fields in the order protobuf's C++ serializer does */
    void *out = NULL;
    size_t n_out = 0;
    CHECK_OK(onyx_model_rewrite(src, n_src, NULL, NULL, 0, NULL, &out, &n_out, &err), err.msg);
    CHECK(out != NULL && n_out == n_src && memcmp(out, src, n_src) == 0);
    float y[8 * 10];
    if (out != NULL && run_buffer(out, n_out, NULL, ONYX_MODE_INFER, "input", &x, y, 80))
        for (int i = 0; i < 80; i++)
            CHECK_NEAR_TOL(y[i], ((const float *)want.data)[i], 1e-5, 1e-4);
    free(out);

    /* model-level fields appended to PyTorch's bytes: a doc string, metadata, unknown fields */
    wb extra = {NULL, 0, 0};
    th_pb_raw(&extra, src, n_src);
    th_pb_str(&extra, 6, "trained by onyx");
    wb prop = {NULL, 0, 0};
    th_pb_str(&prop, 1, "dataset");
    th_pb_str(&prop, 2, "digits");
    th_pb_msg(&extra, 14, &prop);
    wb_unknown(&extra);

    float w1[32 * 64];
    float mean[32];
    float b3[10];
    for (int i = 0; i < 32 * 64; i++)
        w1[i] = (float)((i * 37) % 101) * 0.002f - 0.1f;
    for (int i = 0; i < 32; i++)
        mean[i] = (float)i * 0.01f - 0.2f;
    for (int i = 0; i < 10; i++)
        b3[i] = (float)i * 0.3f - 1.0f;
    onyx_tensor tw1 = {ONYX_DTYPE_F32, 2, {32, 64}, w1};
    onyx_tensor tmean = {ONYX_DTYPE_F32, 1, {32}, mean};
    onyx_tensor tb3 = {ONYX_DTYPE_F32, 1, {10}, b3};
    onyx_initializer_update up[3] = {
        {"fc1.weight", &tw1}, {"bn.running_mean", &tmean}, {"fc3.bias", &tb3}};
    CHECK_OK(onyx_model_rewrite(extra.p, extra.n, NULL, up, 3, NULL, &out, &n_out, &err), err.msg);
    if (out != NULL) {
        const char *const names[3] = {"fc1.weight", "bn.running_mean", "fc3.bias"};
        check_preserved(extra.p, extra.n, out, n_out, names, 3);
        double ref[8 * 10];
        torch_reference(orig, up, 3, x.data, 8, ref);
        if (run_buffer(out, n_out, NULL, ONYX_MODE_INFER, "input", &x, y, 80))
            for (int i = 0; i < 80; i++)
                CHECK_NEAR_TOL(y[i], ref[i], 1e-5, 1e-4);
        /* and explicitly: names, producer, opsets, doc string, metadata, unknown fields */
        ProtobufCMessage *m = pb_unpack(out, n_out);
        CHECK(m != NULL);
        if (m != NULL) {
            CHECK(strcmp(pb_str(m, "producer_name"), "pytorch") == 0);
            CHECK(strcmp(pb_str(m, "producer_version"), "1.13.0") == 0);
            CHECK(pb_i64(m, "ir_version") == 8);
            CHECK(pb_n(m, "opset_import") == 1);
            CHECK(pb_i64(pb_at(m, "opset_import", 0), "version") == 15);
            CHECK(strcmp(pb_str(m, "doc_string"), "trained by onyx") == 0);
            CHECK(pb_n(m, "metadata_props") == 1);
            CHECK(strcmp(pb_str(pb_at(m, "metadata_props", 0), "key"), "dataset") == 0);
            CHECK(strcmp(pb_str(pb_at(m, "metadata_props", 0), "value"), "digits") == 0);
            check_unknown(m);
            const ProtobufCMessage *g = pb_msg(m, "graph");
            CHECK(pb_n(g, "node") == (size_t)onyx_model_node_count(orig));
            for (size_t i = 0; i < pb_n(g, "node"); i++) {
                onyx_node_info ni;
                CHECK(onyx_model_node(orig, i, &ni) == ONYX_OK);
                CHECK(strcmp(pb_str(pb_at(g, "node", i), "name"), ni.name) == 0);
            }
            protobuf_c_message_free_unpacked(m, NULL);
        }
        free(out);
    }
    free(extra.p);
    free(src);
    onyx_tensor_free(&x);
    onyx_tensor_free(&want);
    onyx_model_destroy(orig);
}

/* Unknown fields (999 varint, 1000 bytes), doc strings and metadata on the model, the graph,
 * every node and an updated initializer all survive a rewrite. */
static void test_unknown_fields(void)
{
    wb src = mm_model(13, true, "sigmoid");
    /* the planted bytes: field 999 varint 123456789 */
    static const unsigned char f999[] = {0xb8, 0x3e, 0x95, 0x9a, 0xef, 0x3a};
    CHECK(contains(src.p, src.n, f999, sizeof(f999)));
    float w1[12];
    for (int i = 0; i < 12; i++)
        w1[i] = (float)i * 0.25f - 1.5f;
    onyx_tensor tw1 = {ONYX_DTYPE_F32, 2, {4, 3}, w1};
    onyx_initializer_update up = {"W1", &tw1};
    onyx_error err = {ONYX_OK, ""};
    void *out = NULL;
    size_t n_out = 0;
    CHECK_OK(onyx_model_rewrite(src.p, src.n, NULL, &up, 1, NULL, &out, &n_out, &err), err.msg);
    if (out == NULL) {
        free(src.p);
        return;
    }
    const char *const names[1] = {"W1"};
    check_preserved(src.p, src.n, out, n_out, names, 1);
    CHECK(contains(out, n_out, f999, sizeof(f999)));
    ProtobufCMessage *m = pb_unpack(out, n_out);
    CHECK(m != NULL);
    if (m != NULL) {
        check_unknown(m);
        CHECK(strcmp(pb_str(m, "doc_string"), "model doc") == 0);
        CHECK(strcmp(pb_str(m, "producer_name"), "test-producer") == 0);
        CHECK(strcmp(pb_str(m, "producer_version"), "4.5.6") == 0);
        CHECK(pb_n(m, "metadata_props") == 1);
        CHECK(strcmp(pb_str(pb_at(m, "metadata_props", 0), "value"), "onyx tests") == 0);
        const ProtobufCMessage *g = pb_msg(m, "graph");
        check_unknown(g);
        CHECK(strcmp(pb_str(g, "doc_string"), "graph doc") == 0);
        static const char *const node_names[5] = {"mm1", "relu", "mm2", "add", "sigmoid"};
        CHECK(pb_n(g, "node") == 5);
        for (size_t i = 0; i < 5 && i < pb_n(g, "node"); i++) {
            const ProtobufCMessage *n = pb_at(g, "node", i);
            CHECK(strcmp(pb_str(n, "name"), node_names[i]) == 0);
            CHECK(strcmp(pb_str(n, "doc_string"), "node doc") == 0);
            check_unknown(n);
        }
        const ProtobufCMessage *t = pb_initializer(m, "W1");
        CHECK(t != NULL && strcmp(pb_str(t, "doc_string"), "tensor doc") == 0);
        if (t != NULL)
            check_unknown(t);
        CHECK(t != NULL && memcmp(pb_bytes(t, "raw_data").data, w1, sizeof(w1)) == 0);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    float x[8] = {1.0f, -0.5f, 0.25f, 2.0f, -1.0f, 0.75f, 1.5f, -0.25f};
    onyx_tensor in = {ONYX_DTYPE_F32, 2, {2, 4}, x};
    float y[4];
    double ref[4];
    mm_reference(x, w1, ref);
    if (run_buffer(out, n_out, NULL, ONYX_MODE_INFER, "x", &in, y, 4))
        for (int i = 0; i < 4; i++)
            CHECK_NEAR_TOL(y[i], ref[i], 1e-6, 1e-5);
    free(out);
    free(src.p);
}

/* Every model of the ONNX test data (written by protobuf's C++ serializer) comes back byte for
 * byte from a rewrite without updates: protobuf-c drops, reorders and re-encodes nothing.
 * Skipped when the libonnx-testdata package is not installed. */
static void test_rewrite_corpus(void)
{
    const char *root = "/usr/share/libonnx-testdata/data";
    DIR *top = opendir(root);
    if (top == NULL) {
        printf("skipped: round trip of %s (not installed)\n", root);
        return;
    }
    int n_models = 0;
    int n_same = 0;
    struct dirent *e;
    while ((e = readdir(top)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char sub[1024];
        snprintf(sub, sizeof(sub), "%s/%s", root, e->d_name);
        DIR *d = opendir(sub);
        struct dirent *c;
        while (d != NULL && (c = readdir(d)) != NULL) {
            if (c->d_name[0] == '.')
                continue;
            char dir[1536];
            char path[1600];
            snprintf(dir, sizeof(dir), "%s/%s", sub, c->d_name);
            snprintf(path, sizeof(path), "%s/model.onnx", dir);
            size_t n;
            unsigned char *src = th_slurp(path, &n);
            if (src == NULL)
                continue;
            n_models++;
            onyx_error err = {ONYX_OK, ""};
            void *out = NULL;
            size_t n_out = 0;
            onyx_status st = onyx_model_rewrite(src, n, dir, NULL, 0, NULL, &out, &n_out, &err);
            if (st == ONYX_OK && n_out == n && memcmp(out, src, n) == 0)
                n_same++;
            else
                fprintf(stderr, "%s: %s\n", path, st == ONYX_OK ? "changed by a rewrite" : err.msg);
            free(out);
            free(src);
        }
        if (d != NULL)
            closedir(d);
    }
    closedir(top);
    printf("round trip: %d of %d ONNX test data models unchanged\n", n_same, n_models);
    CHECK(n_models > 0 && n_same == n_models);
}

/* A graph nested depth levels deep through If attributes. */
static wb nested_graph(int depth)
{
    wb g = {NULL, 0, 0};
    if (depth > 0) {
        wb sub = nested_graph(depth - 1);
        wb attr = {NULL, 0, 0};
        th_pb_str(&attr, 1, "then_branch");
        th_pb_int(&attr, 20, 5);
        th_pb_msg(&attr, 6, &sub);
        wb node = {NULL, 0, 0};
        th_pb_str(&node, 4, "If");
        th_pb_msg(&node, 5, &attr);
        th_pb_msg(&g, 1, &node);
    }
    return g;
}

static void expect_rewrite_error(const void *src, size_t n, const onyx_initializer_update *up,
                                 size_t n_up, onyx_status code, const char *sub)
{
    onyx_error err = {ONYX_OK, ""};
    void *out = (void *)&err;
    size_t n_out = 99;
    CHECK(onyx_model_rewrite(src, n, NULL, up, n_up, NULL, &out, &n_out, &err) == code);
    CHECK(err.code == code);
    CHECK_MSG(err.msg, sub);
    CHECK(out == NULL && n_out == 0);
}

static void test_rewrite_errors(void)
{
    wb src = mm_model(13, false, "sigmoid");
    float w[12] = {0};
    onyx_tensor t43 = {ONYX_DTYPE_F32, 2, {4, 3}, w};
    onyx_tensor t34 = {ONYX_DTYPE_F32, 2, {3, 4}, w};
    onyx_tensor t12 = {ONYX_DTYPE_F32, 1, {12}, w};
    onyx_tensor f64 = {ONYX_DTYPE_F64, 2, {2, 3}, w};
    onyx_tensor nodata = {ONYX_DTYPE_F32, 2, {4, 3}, NULL};
    onyx_initializer_update up;

    up = (onyx_initializer_update){"W9", &t43};
    expect_rewrite_error(src.p, src.n, &up, 1, ONYX_ERR_INVALID_ARG,
                         "onyx_model_rewrite: the model has no initializer \"W9\" to update");
    up = (onyx_initializer_update){"W1", &t34};
    expect_rewrite_error(src.p, src.n, &up, 1, ONYX_ERR_SHAPE,
                         "initializer \"W1\" is [4,3] float32 in the model, the update is [3,4] "
                         "float32");
    up = (onyx_initializer_update){"W1", &t12};
    expect_rewrite_error(src.p, src.n, &up, 1, ONYX_ERR_SHAPE, "the update is [12] float32");
    up = (onyx_initializer_update){"W2", &f64};
    expect_rewrite_error(src.p, src.n, &up, 1, ONYX_ERR_SHAPE,
                         "initializer \"W2\" is [3,2] float32 in the model, the update is [2,3] "
                         "float64");
    up = (onyx_initializer_update){"W1", &nodata};
    expect_rewrite_error(src.p, src.n, &up, 1, ONYX_ERR_INVALID_ARG,
                         "the update of initializer \"W1\" has no data");
    up = (onyx_initializer_update){NULL, &t43};
    expect_rewrite_error(src.p, src.n, &up, 1, ONYX_ERR_INVALID_ARG, "update 0 has no name");
    up = (onyx_initializer_update){"W1", NULL};
    expect_rewrite_error(src.p, src.n, &up, 1, ONYX_ERR_INVALID_ARG, "update 0 has no value");
    onyx_initializer_update twice[2] = {{"W1", &t43}, {"W1", &t43}};
    expect_rewrite_error(src.p, src.n, twice, 2, ONYX_ERR_INVALID_ARG,
                         "initializer \"W1\" is updated twice (updates 0 and 1)");
    expect_rewrite_error(src.p, src.n, NULL, 1, ONYX_ERR_INVALID_ARG, "updates is NULL");

    /* corrupt sources */
    up = (onyx_initializer_update){"W1", &t43};
    expect_rewrite_error(src.p, src.n / 2, &up, 1, ONYX_ERR_INVALID_MODEL,
                         "not a valid ONNX model (corrupt protobuf: ");
    static const unsigned char garbage[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                            0xff, 0xff, 0xff, 0xff, 0xff, 0x07};
    expect_rewrite_error(garbage, sizeof(garbage), &up, 1, ONYX_ERR_INVALID_MODEL,
                         "corrupt protobuf: malformed field key at byte 0");
    expect_rewrite_error(src.p, 0, &up, 1, ONYX_ERR_INVALID_MODEL, "the source model is empty");
    expect_rewrite_error(NULL, 10, &up, 1, ONYX_ERR_INVALID_ARG, "the source model is NULL");
    wb deep_graph = nested_graph(100);
    wb deep = {NULL, 0, 0};
    th_pb_int(&deep, 1, 8);
    th_pb_msg(&deep, 7, &deep_graph);
    expect_rewrite_error(deep.p, deep.n, NULL, 0, ONYX_ERR_INVALID_MODEL,
                         "messages nested too deeply");
    free(deep.p);
    wb nograph = {NULL, 0, 0};
    th_pb_int(&nograph, 1, 8);
    expect_rewrite_error(nograph.p, nograph.n, NULL, 0, ONYX_ERR_INVALID_MODEL,
                         "the model has no graph");
    free(nograph.p);

    onyx_error err = {ONYX_OK, ""};
    size_t n_out;
    CHECK(onyx_model_rewrite(src.p, src.n, NULL, NULL, 0, NULL, NULL, &n_out, &err) ==
          ONYX_ERR_INVALID_ARG);
    CHECK_MSG(err.msg, "out is NULL");
    free(src.p);
}

/* The external-data fixture: rewriting one initializer gives a model that stands alone (loads
 * from memory without a folder), with the other initializer read from weights.bin. */
static void test_external_inline(void)
{
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s", fixture("external_data"));
    size_t n_src;
    unsigned char *src = th_slurp(fixture("external_data/model.onnx"), &n_src);
    size_t n_bin;
    unsigned char *bin = th_slurp(fixture("external_data/weights.bin"), &n_bin);
    CHECK(src != NULL && bin != NULL && n_bin == 100);
    if (src == NULL || bin == NULL || n_bin != 100) {
        free(src);
        free(bin);
        return;
    }
    float b[5] = {0.5f, -1.0f, 2.0f, 0.0f, 3.25f};
    onyx_tensor tb = {ONYX_DTYPE_F32, 1, {5}, b};
    onyx_initializer_update up = {"b", &tb};
    onyx_error err = {ONYX_OK, ""};
    void *out = NULL;
    size_t n_out = 0;
    CHECK_OK(onyx_model_rewrite(src, n_src, dir, &up, 1, NULL, &out, &n_out, &err), err.msg);
    if (out != NULL) {
        ProtobufCMessage *m = pb_unpack(out, n_out);
        CHECK(m != NULL);
        if (m != NULL) {
            const ProtobufCMessage *g = pb_msg(m, "graph");
            for (size_t i = 0; i < pb_n(g, "initializer"); i++) {
                const ProtobufCMessage *t = pb_at(g, "initializer", i);
                CHECK(pb_n(t, "data_location") == 0 && pb_n(t, "external_data") == 0);
                CHECK(pb_n(t, "raw_data") == 1);
            }
            const ProtobufCMessage *w = pb_initializer(m, "w");
            CHECK(w != NULL && pb_bytes(w, "raw_data").len == 80);
            CHECK(w != NULL && memcmp(pb_bytes(w, "raw_data").data, bin, 80) == 0);
            protobuf_c_message_free_unpacked(m, NULL);
        }
        /* no base folder: would fail if anything were still external */
        float x[3 * 4];
        for (int i = 0; i < 12; i++)
            x[i] = (float)i * 0.5f - 2.0f;
        onyx_tensor in = {ONYX_DTYPE_F32, 2, {3, 4}, x};
        float y[15];
        const float *wv = (const float *)bin;
        if (run_buffer(out, n_out, NULL, ONYX_MODE_INFER, "x", &in, y, 15))
            for (int s = 0; s < 3; s++)
                for (int o = 0; o < 5; o++) {
                    double acc = b[o];
                    for (int k = 0; k < 4; k++)
                        acc += (double)x[s * 4 + k] * wv[o * 4 + k];
                    CHECK_NEAR_TOL(y[s * 5 + o], acc, 1e-5, 1e-5);
                }
        free(out);
    }

    /* external data needs the folder, and stays confined to it */
    CHECK(onyx_model_rewrite(src, n_src, NULL, &up, 1, NULL, &out, &n_out, &err) ==
          ONYX_ERR_INVALID_ARG);
    CHECK_MSG(err.msg, "tensor \"w\" has external data but the model was loaded from memory "
                       "without a base folder");
    CHECK(onyx_model_rewrite(src, n_src, th_path("no_such_dir"), &up, 1, NULL, &out, &n_out,
                             &err) == ONYX_ERR_IO);
    CHECK_MSG(err.msg, "cannot open external data");
    unsigned char *bad = malloc(n_src);
    memcpy(bad, src, n_src);
    for (size_t i = 0; i + 11 <= n_src; i++)
        if (memcmp(bad + i, "weights.bin", 11) == 0) {
            memcpy(bad + i, "../a/wt.bin", 11);
            break;
        }
    CHECK(onyx_model_rewrite(bad, n_src, dir, &up, 1, NULL, &out, &n_out, &err) ==
          ONYX_ERR_INVALID_MODEL);
    CHECK_MSG(err.msg, "tensor \"w\": external data path \"../a/wt.bin\" leaves the model's "
                       "folder");
    CHECK(out == NULL);
    free(bad);
    free(src);
    free(bin);
}

/* Above the inline limit (a tiny one here: 2 GiB models are too big for a test), the
 * initializers of >= 1 KiB go to the external file at 4 KiB-aligned offsets; the rest stays. */
static void test_external_out(void)
{
    const int64_t layers[] = {40, 30, 10};
    onyx_mlp_spec spec = {layers, 3, "tanh", 0.0f, 8};
    onyx_error err = {ONYX_OK, ""};
    CHECK_OK(onyx_mlp_write(&spec, th_path("big.onnx"), &err), err.msg);
    size_t n_src;
    unsigned char *src = th_slurp(th_path("big.onnx"), &n_src);
    CHECK(src != NULL && n_src > 6000);
    if (src == NULL)
        return;
    float w0[30 * 40];
    for (int i = 0; i < 1200; i++)
        w0[i] = (float)((i * 13) % 17) * 0.01f - 0.08f;
    onyx_tensor tw0 = {ONYX_DTYPE_F32, 2, {30, 40}, w0};
    onyx_initializer_update up = {"fc0.weight", &tw0};

    void *out = NULL;
    size_t n_out = 0;
    /* fits: no file written */
    CHECK_OK(onyx_model_rewrite_limit(src, n_src, NULL, &up, 1, th_path("unused.bin"), 1 << 20,
                                      &out, &n_out, &err),
             err.msg);
    CHECK(out != NULL && n_out == n_src && !th_file_exists(th_path("unused.bin")));
    free(out);
    /* too large without a file */
    CHECK(onyx_model_rewrite_limit(src, n_src, NULL, &up, 1, NULL, 4096, &out, &n_out, &err) ==
          ONYX_ERR_INVALID_ARG);
    CHECK_MSG(err.msg, "over the limit of 4096 for a protobuf message: too large to store inline");
    CHECK(out == NULL);
    /* too large even with the weights outside: nothing written */
    CHECK(onyx_model_rewrite_limit(src, n_src, NULL, &up, 1, th_path("w2.bin"), 100, &out, &n_out,
                                   &err) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(err.msg, "too large to store inline even with its 2 initializers of 1024 bytes or "
                       "more in");
    CHECK(!th_file_exists(th_path("w2.bin")));
    CHECK(onyx_model_rewrite_limit(src, n_src, NULL, &up, 1, th_path(""), 4096, &out, &n_out,
                                   &err) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(err.msg, "does not name a file");

    CHECK_OK(onyx_model_rewrite_limit(src, n_src, NULL, &up, 1, th_path("w.bin"), 4096, &out,
                                      &n_out, &err),
             err.msg);
    CHECK(out != NULL && n_out <= 4096);
    if (out == NULL) {
        free(src);
        return;
    }
    ProtobufCMessage *m = pb_unpack(out, n_out);
    CHECK(m != NULL);
    size_t n_bin;
    unsigned char *bin = th_slurp(th_path("w.bin"), &n_bin);
    /* fc0.weight: 4800 bytes at 0; fc1.weight: 1200 bytes at 8192; biases inline */
    CHECK(bin != NULL && n_bin == 8192 + 1200);
    if (m != NULL && bin != NULL && n_bin == 8192 + 1200) {
        static const struct {
            const char *name;
            const char *offset;
            const char *length;
        } ext[2] = {{"fc0.weight", "0", "4800"}, {"fc1.weight", "8192", "1200"}};
        for (int i = 0; i < 2; i++) {
            const ProtobufCMessage *t = pb_initializer(m, ext[i].name);
            CHECK(t != NULL && pb_n(t, "data_location") == 1 && pb_enum(t, "data_location") == 1);
            CHECK(t != NULL && pb_n(t, "raw_data") == 0);
            CHECK(t != NULL && strcmp(pb_ext_entry(t, "location"), "w.bin") == 0);
            CHECK(t != NULL && strcmp(pb_ext_entry(t, "offset"), ext[i].offset) == 0);
            CHECK(t != NULL && strcmp(pb_ext_entry(t, "length"), ext[i].length) == 0);
        }
        CHECK(memcmp(bin, w0, sizeof(w0)) == 0);
        for (size_t i = 4800; i < 8192; i++)
            if (bin[i] != 0) {
                CHECK(bin[i] == 0); /* padding is zeros */
                break;
            }
        const ProtobufCMessage *b0 = pb_initializer(m, "fc0.bias");
        CHECK(b0 != NULL && pb_n(b0, "raw_data") == 1 && pb_n(b0, "data_location") == 0);
    }
    if (m != NULL)
        protobuf_c_message_free_unpacked(m, NULL);
    free(bin);

    /* stored beside w.bin, the model loads with onyx and computes with the new fc0.weight */
    CHECK(th_write_bytes(th_path("ext.onnx"), out, n_out));
    onyx_model *orig = NULL;
    onyx_model *back = NULL;
    CHECK_OK(onyx_model_load(th_path("big.onnx"), &orig, &err), err.msg);
    CHECK_OK(onyx_model_load(th_path("ext.onnx"), &back, &err), err.msg);
    if (orig != NULL && back != NULL) {
        float x[2 * 40];
        for (int i = 0; i < 80; i++)
            x[i] = (float)(i % 9) * 0.2f - 0.8f;
        onyx_tensor in = {ONYX_DTYPE_F32, 2, {2, 40}, x};
        float y[20];
        if (run_buffer(out, n_out, th_tmpdir(), ONYX_MODE_INFER, "input", &in, y, 20)) {
            const float *w1 = init_of(orig, "fc1.weight")->data;
            const float *b1 = init_of(orig, "fc1.bias")->data;
            const float *b0 = init_of(orig, "fc0.bias")->data;
            for (int s = 0; s < 2; s++) {
                double xin[40];
                double h[30];
                double z[10];
                for (int k = 0; k < 40; k++)
                    xin[k] = x[s * 40 + k];
                dense(xin, 40, w0, b0, 30, h);
                for (int j = 0; j < 30; j++)
                    h[j] = tanh(h[j]);
                dense(h, 30, w1, b1, 10, z);
                for (int o = 0; o < 10; o++)
                    CHECK_NEAR_TOL(y[s * 10 + o], z[o], 1e-5, 1e-5);
            }
        }
        CHECK(memcmp(init_of(back, "fc1.weight")->data, init_of(orig, "fc1.weight")->data, 1200) ==
              0);
    }
    onyx_model_destroy(orig);
    onyx_model_destroy(back);
    CHECK(python_check(th_path("ext.onnx")));
    free(out);
    free(src);
}

/* Runs the model in buf on x [4, width] in mode; y gets n floats. */
static bool run_mlp(const void *buf, size_t n, onyx_mode mode, const float *x, int64_t width,
                    float *y, size_t n_y)
{
    onyx_tensor in = {ONYX_DTYPE_F32, 2, {4, width}, (void *)x};
    return run_buffer(buf, n, NULL, mode, "input", &in, y, n_y);
}

static void check_dropout_node(const ProtobufCMessage *n, const char *name, const char *in,
                               const char *out)
{
    CHECK(strcmp(pb_str(n, "op_type"), "Dropout") == 0);
    CHECK(strcmp(pb_str(n, "name"), name) == 0);
    CHECK(pb_n(n, "input") == 2 && pb_n(n, "output") == 1);
    CHECK(strcmp(pb_str_at(n, "input", 0), in) == 0);
    CHECK(strcmp(pb_str_at(n, "input", 1), "dropout_ratio") == 0);
    CHECK(strcmp(pb_str_at(n, "output", 0), out) == 0);
}

/* --add-dropout on an MLP written without Dropout: a Dropout after each hidden activation,
 * off in inference (outputs bit for bit the same), on in training. */
static void test_add_dropout(void)
{
    const int64_t layers[] = {5, 7, 6, 3};
    onyx_mlp_spec spec = {layers, 4, "relu", 0.0f, 2};
    onyx_error err = {ONYX_OK, ""};
    CHECK_OK(onyx_mlp_write(&spec, th_path("nodrop.onnx"), &err), err.msg);
    size_t n_src;
    unsigned char *src = th_slurp(th_path("nodrop.onnx"), &n_src);
    CHECK(src != NULL);
    if (src == NULL)
        return;
    void *out = NULL;
    size_t n_out = 0;
    int n_ins = -1;
    CHECK_OK(onyx_model_add_dropout(src, n_src, 0.5f, &out, &n_out, &n_ins, &err), err.msg);
    CHECK(n_ins == 2);
    if (out == NULL) {
        free(src);
        return;
    }
    ProtobufCMessage *m = pb_unpack(out, n_out);
    CHECK(m != NULL);
    if (m != NULL) {
        const ProtobufCMessage *g = pb_msg(m, "graph");
        static const char *const order[7] = {"fc0",  "act0",         "act0/dropout", "fc1",
                                             "act1", "act1/dropout", "fc2"};
        CHECK(pb_n(g, "node") == 7);
        for (size_t i = 0; i < 7 && i < pb_n(g, "node"); i++)
            CHECK(strcmp(pb_str(pb_at(g, "node", i), "name"), order[i]) == 0);
        if (pb_n(g, "node") == 7) {
            check_dropout_node(pb_at(g, "node", 2), "act0/dropout", "act0.out",
                               "act0/dropout_output_0");
            check_dropout_node(pb_at(g, "node", 5), "act1/dropout", "act1.out",
                               "act1/dropout_output_0");
            /* the Gemms read the Dropouts now */
            CHECK(strcmp(pb_str_at(pb_at(g, "node", 3), "input", 0), "act0/dropout_output_0") == 0);
            CHECK(strcmp(pb_str_at(pb_at(g, "node", 6), "input", 0), "act1/dropout_output_0") == 0);
        }
        const ProtobufCMessage *r = pb_initializer(m, "dropout_ratio");
        CHECK(r != NULL && pb_n(r, "dims") == 0 && pb_enum(r, "data_type") == ONYX_DTYPE_F32);
        float ratio = 0;
        if (r != NULL && pb_bytes(r, "raw_data").len == 4)
            memcpy(&ratio, pb_bytes(r, "raw_data").data, 4);
        CHECK(ratio == 0.5f);
        /* the rest of the model is as it was */
        ProtobufCMessage *a = pb_unpack(src, n_src);
        CHECK(a != NULL && pb_same_except(a, m, "graph"));
        if (a != NULL)
            protobuf_c_message_free_unpacked(a, NULL);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    CHECK(th_write_bytes(th_path("drop.onnx"), out, n_out));
    CHECK(python_check(th_path("drop.onnx")));

    /* inference: exactly the original outputs; training: dropped units change them */
    float x[4 * 5];
    for (int i = 0; i < 20; i++)
        x[i] = (float)((i * 3) % 7) * 0.3f - 0.5f;
    float y0[12];
    float y1[12];
    float y2[12];
    if (run_mlp(src, n_src, ONYX_MODE_INFER, x, 5, y0, 12) &&
        run_mlp(out, n_out, ONYX_MODE_INFER, x, 5, y1, 12) &&
        run_mlp(out, n_out, ONYX_MODE_TRAIN, x, 5, y2, 12)) {
        CHECK(memcmp(y0, y1, sizeof(y0)) == 0);
        CHECK(memcmp(y0, y2, sizeof(y0)) != 0);
    }
    float y3[12];
    if (run_mlp(src, n_src, ONYX_MODE_TRAIN, x, 5, y3, 12))
        CHECK(memcmp(y0, y3, sizeof(y0)) == 0); /* no Dropout: training mode changes nothing */

    /* again: the activations feed Dropouts now, nothing to insert */
    void *again = NULL;
    size_t n_again = 0;
    CHECK_OK(onyx_model_add_dropout(out, n_out, 0.5f, &again, &n_again, &n_ins, &err), err.msg);
    CHECK(n_ins == 0 && n_again == n_out && again != NULL && memcmp(again, out, n_out) == 0);
    free(again);

    /* the export of a model trained with inserted Dropouts keeps them */
    float w[6 * 7];
    for (int i = 0; i < 42; i++)
        w[i] = (float)(i % 5) * 0.1f;
    onyx_tensor tw = {ONYX_DTYPE_F32, 2, {6, 7}, w};
    onyx_initializer_update up = {"fc1.weight", &tw};
    void *exported = NULL;
    size_t n_exp = 0;
    CHECK_OK(onyx_model_rewrite(out, n_out, NULL, &up, 1, NULL, &exported, &n_exp, &err), err.msg);
    ProtobufCMessage *e = exported != NULL ? pb_unpack(exported, n_exp) : NULL;
    CHECK(e != NULL && pb_n(pb_msg(e, "graph"), "node") == 7);
    if (e != NULL)
        protobuf_c_message_free_unpacked(e, NULL);
    free(exported);
    free(out);
    free(src);
}

/* The PyTorch export (BatchNorm, Relu, Tanh before Gemms) and a MatMul model. */
static void test_add_dropout_models(void)
{
    size_t n_src;
    unsigned char *src = th_slurp(fixture("torch_mlp_eval/model.onnx"), &n_src);
    onyx_error err = {ONYX_OK, ""};
    void *out = NULL;
    size_t n_out = 0;
    int n_ins = -1;
    CHECK_OK(onyx_model_add_dropout(src, n_src, 0.3f, &out, &n_out, &n_ins, &err), err.msg);
    CHECK(n_ins == 2);
    ProtobufCMessage *m = out != NULL ? pb_unpack(out, n_out) : NULL;
    CHECK(m != NULL);
    if (m != NULL) {
        const ProtobufCMessage *g = pb_msg(m, "graph");
        CHECK(pb_n(g, "node") == 9);
        if (pb_n(g, "node") == 9) {
            check_dropout_node(pb_at(g, "node", 3), "/Relu/dropout", "/Relu_output_0",
                               "/Relu/dropout_output_0");
            check_dropout_node(pb_at(g, "node", 6), "/Tanh/dropout", "/Tanh_output_0",
                               "/Tanh/dropout_output_0");
            CHECK(strcmp(pb_str(pb_at(g, "node", 4), "name"), "/fc2/Gemm") == 0);
            CHECK(strcmp(pb_str_at(pb_at(g, "node", 4), "input", 0), "/Relu/dropout_output_0") ==
                  0);
        }
        protobuf_c_message_free_unpacked(m, NULL);
    }
    if (out != NULL) {
        CHECK(th_write_bytes(th_path("torch_drop.onnx"), out, n_out));
        CHECK(python_check(th_path("torch_drop.onnx")));
        onyx_tensor x;
        onyx_tensor want;
        CHECK_OK(onyx_tensor_read_file(fixture("torch_mlp_eval/test_data_set_0/input_0.pb"), &x,
                                       NULL, &err),
                 err.msg);
        CHECK_OK(onyx_tensor_read_file(fixture("torch_mlp_eval/test_data_set_0/output_0.pb"), &want,
                                       NULL, &err),
                 err.msg);
        float y[80];
        if (x.data != NULL && want.data != NULL &&
            run_buffer(out, n_out, NULL, ONYX_MODE_INFER, "input", &x, y, 80))
            for (int i = 0; i < 80; i++)
                CHECK_NEAR_TOL(y[i], ((const float *)want.data)[i], 1e-5, 1e-4);
        onyx_tensor_free(&x);
        onyx_tensor_free(&want);
    }
    free(out);
    free(src);

    /* MatMul: Relu feeds mm2 (Dropout), Sigmoid feeds only the graph output (none). The
     * Sigmoid node is called "relu/dropout": the new node's name must not clash with it. */
    wb mm = mm_model(13, false, "relu/dropout");
    CHECK_OK(onyx_model_add_dropout(mm.p, mm.n, 0.1f, &out, &n_out, &n_ins, &err), err.msg);
    CHECK(n_ins == 1);
    m = out != NULL ? pb_unpack(out, n_out) : NULL;
    CHECK(m != NULL);
    if (m != NULL) {
        const ProtobufCMessage *g = pb_msg(m, "graph");
        CHECK(pb_n(g, "node") == 6);
        if (pb_n(g, "node") == 6) {
            check_dropout_node(pb_at(g, "node", 2), "relu/dropout_1", "r",
                               "relu/dropout_1_output_0");
            CHECK(strcmp(pb_str_at(pb_at(g, "node", 3), "input", 0), "relu/dropout_1_output_0") ==
                  0);
            CHECK(strcmp(pb_str_at(pb_at(g, "node", 5), "output", 0), "y") == 0);
        }
        protobuf_c_message_free_unpacked(m, NULL);
    }
    if (out != NULL) {
        CHECK(th_write_bytes(th_path("mm_drop.onnx"), out, n_out));
        CHECK(python_check(th_path("mm_drop.onnx")));
        float x[8] = {1.0f, -0.5f, 0.25f, 2.0f, -1.0f, 0.75f, 1.5f, -0.25f};
        onyx_tensor in = {ONYX_DTYPE_F32, 2, {2, 4}, x};
        float y[4];
        double ref[4];
        mm_reference(x, MM_W1, ref);
        if (run_buffer(out, n_out, NULL, ONYX_MODE_INFER, "x", &in, y, 4))
            for (int i = 0; i < 4; i++)
                CHECK_NEAR_TOL(y[i], ref[i], 1e-6, 1e-5);
    }
    free(out);
    free(mm.p);

    /* errors: an opset without Dropout's ratio input, a bad ratio, a corrupt model */
    wb old = mm_model(11, false, "sigmoid");
    CHECK(onyx_model_add_dropout(old.p, old.n, 0.5f, &out, &n_out, &n_ins, &err) ==
          ONYX_ERR_UNSUPPORTED);
    CHECK_MSG(err.msg, "onyx_model_add_dropout: the model imports opset 11 of the default "
                       "domain; Dropout with a ratio input needs opset 12 or later");
    CHECK(out == NULL && n_out == 0 && n_ins == 0);
    static const float bad_ratios[3] = {1.0f, -0.25f, NAN};
    for (int i = 0; i < 3; i++) {
        CHECK(onyx_model_add_dropout(old.p, old.n, bad_ratios[i], &out, &n_out, &n_ins, &err) ==
              ONYX_ERR_INVALID_ARG);
        CHECK_MSG(err.msg, "is outside [0, 1)");
    }
    CHECK(onyx_model_add_dropout(old.p, old.n / 3, 0.5f, &out, &n_out, &n_ins, &err) ==
          ONYX_ERR_INVALID_MODEL);
    CHECK_MSG(err.msg, "onyx_model_add_dropout: not a valid ONNX model");
    CHECK(onyx_model_add_dropout(old.p, old.n, 0.5f, &out, &n_out, NULL, &err) ==
          ONYX_ERR_INVALID_ARG);
    CHECK_MSG(err.msg, "n_inserted is NULL");
    free(old.p);
}

int main(void)
{
    if (th_tmpdir_make(ONYX_BINARY_DIR, "test_model_write") == NULL)
        return 1;
    test_structure();
    test_runs();
    test_init_distributions();
    test_determinism();
    test_spec_errors();
    test_tensor_pb();
    test_rewrite_mlp();
    test_rewrite_torch();
    test_unknown_fields();
    test_rewrite_corpus();
    test_rewrite_errors();
    test_external_inline();
    test_external_out();
    test_add_dropout();
    test_add_dropout_models();
    CHECK(th_tmpdir_remove() == 0); /* no temporary file survives a write, failed or not */
    return check_report();
}
