/* test_load_raw.c — runtime/model.c: initializers' raw_data goes from the model's bytes straight
 * into the weights' arena, never through protobuf-c (issue #4, "Loading").
 *
 * Models are built here field by field (tests/pb_write.h), so raw_data can sit where writers do
 * not put it: before dims, twice, empty, with a padded length, next to typed data, in a graph
 * field given twice. Weights are compared with the values written, loaded from memory (copied
 * from the caller's bytes) and from a file (read with pread). Broken wire format inside an
 * initializer is refused with the byte where it starts (protobuf-c only said "parsing failed").
 * Mutated models are loaded and compared with protobuf-c's own reading of the same bytes. Last,
 * a 48 MiB model loads with a peak memory growth of about one copy of its weights, measured as the
 * peak RSS (/proc/self/status VmHWM, reset through clear_refs). */
#include "check.h"
#include "internal.h"
#include "onyx.h"
#include "pb_write.h"
#include "test_files.h"

#include <protobuf-c/protobuf-c.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* onnx.proto field numbers */
enum { T_DIMS = 1, T_DATA_TYPE = 2, T_FLOAT_DATA = 4, T_INT64_DATA = 7, T_NAME = 8, T_RAW = 9 };
enum { T_DOUBLE_DATA = 10, T_EXTERNAL_DATA = 13, T_DATA_LOCATION = 14 };
enum { G_NODE = 1, G_NAME = 2, G_INITIALIZER = 5, G_INPUT = 11, G_OUTPUT = 12 };
enum { M_IR_VERSION = 1, M_GRAPH = 7, M_OPSET_IMPORT = 8 };
enum { N_INPUT = 1, N_OUTPUT = 2, N_NAME = 3, N_OP_TYPE = 4, N_ATTRIBUTE = 5 };
enum { A_NAME = 1, A_T = 5, A_TYPE = 20 };
enum { DT_FLOAT = 1, DT_UINT8 = 2, DT_INT64 = 7, DT_DOUBLE = 11 };

/* ---- building models ------------------------------------------------------------------------- */

/* name, data_type and dims of a TensorProto (no data). */
static void tensor_head(th_pb *t, const char *name, int dtype, const int64_t *dims, int rank)
{
    for (int i = 0; i < rank; i++)
        th_pb_int(t, T_DIMS, dims[i]);
    th_pb_int(t, T_DATA_TYPE, dtype);
    th_pb_str(t, T_NAME, name);
}

/* A TensorProto with raw_data (the usual field order). */
static th_pb tensor_raw(const char *name, int dtype, const int64_t *dims, int rank, const void *raw,
                        size_t n)
{
    th_pb t = {0};
    tensor_head(&t, name, dtype, dims, rank);
    th_pb_bytes(&t, T_RAW, raw, n);
    return t;
}

/* Declares `name` a graph output (value_info with the name only: the type is inferred). */
static void graph_output(th_pb *g, const char *name)
{
    th_pb vi = {0};
    th_pb_str(&vi, 1, name);
    th_pb_msg(g, G_OUTPUT, &vi);
}

/* ModelProto (IR 8, default opset 17) around graph g, which it consumes. */
static th_pb model_of(th_pb *g)
{
    th_pb m = {0};
    th_pb_int(&m, M_IR_VERSION, 8);
    th_pb os = {0};
    th_pb_int(&os, 2, 17);
    th_pb_msg(&m, M_OPSET_IMPORT, &os);
    th_pb_msg(&m, M_GRAPH, g);
    return m;
}

/* A model whose graph has the initializers ts[n] (consumed) and outputs each of names[n]. */
static th_pb model_with(th_pb *ts, const char *const *names, int n)
{
    th_pb g = {0};
    th_pb_str(&g, G_NAME, "g");
    for (int i = 0; i < n; i++)
        th_pb_msg(&g, G_INITIALIZER, &ts[i]);
    for (int i = 0; i < n; i++)
        graph_output(&g, names[i]);
    return model_of(&g);
}

/* ---- loading and looking --------------------------------------------------------------------- */

static onyx_model *load_mem(const th_pb *b, onyx_status *st, onyx_error *err)
{
    onyx_model *m = NULL;
    memset(err, 0, sizeof(*err));
    *st = onyx_model_load_buffer(b->p, b->n, NULL, "raw.onnx", &m, err);
    return m;
}

/* The same bytes written to a file in the test's folder and loaded from there. */
static onyx_model *load_file(const th_pb *b, onyx_status *st, onyx_error *err)
{
    onyx_model *m = NULL;
    memset(err, 0, sizeof(*err));
    const char *path = th_path("raw.onnx");
    if (!th_write_bytes(path, b->p, b->n)) {
        *st = ONYX_ERR_IO;
        return NULL;
    }
    *st = onyx_model_load(path, &m, err);
    return m;
}

typedef onyx_model *(*load_fn)(const th_pb *, onyx_status *, onyx_error *);
static const load_fn loaders[2] = {load_mem, load_file};
static const char *const loader_name[2] = {"memory", "file"};

/* The initializer called name, or NULL. */
static const onyx_tensor *init_of(const onyx_model *m, const char *name)
{
    for (int i = 0; m && i < m->n_values; i++)
        if (m->values[i].kind == ONYX_VALUE_INITIALIZER && strcmp(m->values[i].name, name) == 0)
            return &m->values[i].info;
    return NULL;
}

/* Initializer `name` has this dtype, shape and exactly these bytes, 64-byte aligned. */
static bool same_tensor(const onyx_model *m, const char *name, onyx_dtype dtype,
                        const int64_t *dims, int rank, const void *bytes, size_t n)
{
    const onyx_tensor *t = init_of(m, name);
    if (t == NULL || t->dtype != dtype || t->rank != rank)
        return false;
    for (int i = 0; i < rank; i++)
        if (t->dims[i] != dims[i])
            return false;
    if ((size_t)onyx_numel(t) * onyx_dtype_size(dtype) != n || t->data == NULL)
        return false;
    if ((uintptr_t)t->data % 64 != 0)
        return false;
    return n == 0 || memcmp(t->data, bytes, n) == 0;
}

/* Where the bytes pat[n] first occur in b (the test builds them to be unique), or SIZE_MAX. */
static size_t find_bytes(const th_pb *b, const void *pat, size_t n)
{
    for (size_t i = 0; i + n <= b->n; i++)
        if (memcmp(b->p + i, pat, n) == 0)
            return i;
    return SIZE_MAX;
}

/* ---- raw initializers of several dtypes ------------------------------------------------------ */

static const float f_vals[12] = {0.5f, -1.25f, 3.0f,  1e-7f, -0.0f, 1e30f,
                                 7.0f, 8.5f,   -9.0f, 10.0f, 11.0f, 12.25f};
static const int64_t i_vals[5] = {1, -2, 1LL << 40, INT64_MIN, INT64_MAX};
static const double d_vals[4] = {3.141592653589793, -2.5e-300, 1e300, 0.1};
static const uint8_t u_vals[7] = {0, 1, 127, 128, 200, 254, 255};
static const int64_t f_dims[2] = {3, 4};
static const int64_t i_dims[1] = {5};
static const int64_t d_dims[2] = {2, 2};
static const int64_t u_dims[1] = {7};
static const int64_t empty_dims[2] = {0, 3};

static th_pb dtypes_model(void)
{
    th_pb ts[6];
    ts[0] = tensor_raw("f", DT_FLOAT, f_dims, 2, f_vals, sizeof f_vals);
    ts[1] = tensor_raw("i", DT_INT64, i_dims, 1, i_vals, sizeof i_vals);
    ts[2] = tensor_raw("d", DT_DOUBLE, d_dims, 2, d_vals, sizeof d_vals);
    ts[3] = tensor_raw("u", DT_UINT8, u_dims, 1, u_vals, sizeof u_vals);
    ts[4] = tensor_raw("empty", DT_FLOAT, empty_dims, 2, NULL, 0);
    /* a scalar in typed data among the raw ones */
    th_pb s = {0};
    tensor_head(&s, "typed", DT_FLOAT, NULL, 0);
    const float half = 0.5f;
    th_pb_bytes(&s, T_FLOAT_DATA, &half, sizeof half);
    ts[5] = s;
    static const char *const names[6] = {"f", "i", "d", "u", "empty", "typed"};
    return model_with(ts, names, 6);
}

static void test_dtypes(void)
{
    th_pb b = dtypes_model();
    for (int l = 0; l < 2; l++) {
        onyx_status st;
        onyx_error err;
        onyx_model *m = loaders[l](&b, &st, &err);
        CHECK_OK(st, err.msg);
        if (m == NULL) {
            fprintf(stderr, "  (loading from %s)\n", loader_name[l]);
            continue;
        }
        CHECK(onyx_model_initializer_count(m) == 6);
        CHECK(same_tensor(m, "f", ONYX_DTYPE_F32, f_dims, 2, f_vals, sizeof f_vals));
        CHECK(same_tensor(m, "i", ONYX_DTYPE_I64, i_dims, 1, i_vals, sizeof i_vals));
        CHECK(same_tensor(m, "d", ONYX_DTYPE_F64, d_dims, 2, d_vals, sizeof d_vals));
        CHECK(same_tensor(m, "u", ONYX_DTYPE_U8, u_dims, 1, u_vals, sizeof u_vals));
        CHECK(same_tensor(m, "empty", ONYX_DTYPE_F32, empty_dims, 2, NULL, 0));
        const float half = 0.5f;
        CHECK(same_tensor(m, "typed", ONYX_DTYPE_F32, NULL, 0, &half, sizeof half));
        onyx_model_destroy(m);
    }
    free(b.p);
}

/* ---- raw_data where writers do not put it ---------------------------------------------------- */

static const float two[2] = {1.5f, -2.5f};
static const int64_t two_dims[1] = {2};

/* Loads a one-initializer model (tensor t, consumed; name "w") from memory and from a file:
 * both must load with w == [1.5, -2.5], or both fail with the same status and message part. */
static void expect_w(th_pb *t, onyx_status want, const char *msg)
{
    static const char *const names[1] = {"w"};
    th_pb b = model_with(t, names, 1);
    for (int l = 0; l < 2; l++) {
        onyx_status st;
        onyx_error err;
        onyx_model *m = loaders[l](&b, &st, &err);
        if (st != want)
            fprintf(stderr, "from %s: got status %d (%s), expected %d\n", loader_name[l], (int)st,
                    err.msg, (int)want);
        CHECK(st == want);
        if (want == ONYX_OK)
            CHECK(same_tensor(m, "w", ONYX_DTYPE_F32, two_dims, 1, two, sizeof two));
        else
            CHECK_MSG(err.msg, msg);
        onyx_model_destroy(m);
    }
    free(b.p);
}

static void test_positions(void)
{
    /* raw_data first, then dims, data_type and name */
    th_pb t = {0};
    th_pb_bytes(&t, T_RAW, two, sizeof two);
    tensor_head(&t, "w", DT_FLOAT, two_dims, 1);
    expect_w(&t, ONYX_OK, NULL);

    /* raw_data between the dims and the name */
    t = (th_pb){0};
    th_pb_int(&t, T_DIMS, 2);
    th_pb_bytes(&t, T_RAW, two, sizeof two);
    th_pb_int(&t, T_DATA_TYPE, DT_FLOAT);
    th_pb_str(&t, T_NAME, "w");
    expect_w(&t, ONYX_OK, NULL);

    /* raw_data twice: the last one counts (protobuf's rule for a non-repeated field) */
    t = (th_pb){0};
    th_pb_bytes(&t, T_RAW, "abc", 3);
    tensor_head(&t, "w", DT_FLOAT, two_dims, 1);
    th_pb_bytes(&t, T_RAW, two, sizeof two);
    expect_w(&t, ONYX_OK, NULL);
    t = (th_pb){0};
    th_pb_bytes(&t, T_RAW, two, sizeof two);
    tensor_head(&t, "w", DT_FLOAT, two_dims, 1);
    th_pb_bytes(&t, T_RAW, "abc", 3);
    expect_w(&t, ONYX_ERR_INVALID_MODEL,
             "raw.onnx: tensor \"w\" has 3 bytes of raw_data, expected 8 (2 elements of float32)");
    t = (th_pb){0};
    th_pb_bytes(&t, T_RAW, two, sizeof two);
    tensor_head(&t, "w", DT_FLOAT, two_dims, 1);
    th_pb_bytes(&t, T_RAW, NULL, 0);
    expect_w(&t, ONYX_ERR_INVALID_MODEL, "tensor \"w\" has 0 bytes of raw_data, expected 8");

    /* zero-length raw_data on a tensor that needs bytes */
    t = tensor_raw("w", DT_FLOAT, two_dims, 1, NULL, 0);
    expect_w(&t, ONYX_ERR_INVALID_MODEL, "tensor \"w\" has 0 bytes of raw_data, expected 8");

    /* a raw_data length padded to 5 bytes is valid protobuf and loads; protobuf-c refuses 6 */
    static const uint8_t pad5[] = {0x4a, 0x88, 0x80, 0x80, 0x80, 0x00};
    t = (th_pb){0};
    tensor_head(&t, "w", DT_FLOAT, two_dims, 1);
    th_pb_raw(&t, pad5, sizeof pad5);
    th_pb_raw(&t, two, sizeof two);
    expect_w(&t, ONYX_OK, NULL);
    static const uint8_t pad6[] = {0x4a, 0x88, 0x80, 0x80, 0x80, 0x80, 0x00};
    t = (th_pb){0};
    tensor_head(&t, "w", DT_FLOAT, two_dims, 1);
    th_pb_raw(&t, pad6, sizeof pad6);
    th_pb_raw(&t, two, sizeof two);
    expect_w(&t, ONYX_ERR_INVALID_MODEL,
             "raw.onnx: not a valid ONNX model (protobuf parsing failed)");

    /* raw_data with the wrong wire type (a varint): protobuf-c refuses it, as before */
    t = (th_pb){0};
    tensor_head(&t, "w", DT_FLOAT, two_dims, 1);
    th_pb_int(&t, T_RAW, 8);
    expect_w(&t, ONYX_ERR_INVALID_MODEL, "protobuf parsing failed");

    /* raw_data on a tensor of unknown data_type, or of a shape whose size overflows */
    t = (th_pb){0};
    th_pb_int(&t, T_DIMS, 2);
    th_pb_int(&t, T_DATA_TYPE, 99);
    th_pb_str(&t, T_NAME, "w");
    th_pb_bytes(&t, T_RAW, two, sizeof two);
    expect_w(&t, ONYX_ERR_INVALID_MODEL, "raw.onnx: tensor \"w\" has unknown data_type 99");
    static const int64_t huge[2] = {1LL << 40, 1LL << 40};
    t = tensor_raw("w", DT_FLOAT, huge, 2, two, sizeof two);
    expect_w(&t, ONYX_ERR_INVALID_MODEL,
             "has shape [1099511627776,1099511627776], whose size overflows");
}

/* ---- raw_data next to typed or external data ------------------------------------------------- */

static void test_raw_and_typed(void)
{
    /* both raw_data and float_data: raw_data counts, whichever comes first */
    static const float other[2] = {9.0f, 10.0f};
    th_pb t = {0};
    tensor_head(&t, "w", DT_FLOAT, two_dims, 1);
    th_pb_bytes(&t, T_FLOAT_DATA, other, sizeof other);
    th_pb_bytes(&t, T_RAW, two, sizeof two);
    expect_w(&t, ONYX_OK, NULL);
    t = (th_pb){0};
    tensor_head(&t, "w", DT_FLOAT, two_dims, 1);
    th_pb_bytes(&t, T_RAW, two, sizeof two);
    th_pb_bytes(&t, T_FLOAT_DATA, other, 4); /* even with the wrong count */
    expect_w(&t, ONYX_OK, NULL);

    /* typed data alone, among raw initializers: int64_data (packed) and double_data */
    th_pb ts[3];
    ts[0] = tensor_raw("f", DT_FLOAT, f_dims, 2, f_vals, sizeof f_vals);
    th_pb ti = {0};
    tensor_head(&ti, "i", DT_INT64, i_dims, 1);
    th_pb packed = {0};
    for (int k = 0; k < 5; k++)
        th_pb_varint(&packed, (uint64_t)i_vals[k]);
    th_pb_msg(&ti, T_INT64_DATA, &packed);
    ts[1] = ti;
    th_pb td = {0};
    tensor_head(&td, "d", DT_DOUBLE, d_dims, 2);
    th_pb_bytes(&td, T_DOUBLE_DATA, d_vals, sizeof d_vals);
    ts[2] = td;
    static const char *const names[3] = {"f", "i", "d"};
    th_pb b = model_with(ts, names, 3);
    for (int l = 0; l < 2; l++) {
        onyx_status st;
        onyx_error err;
        onyx_model *m = loaders[l](&b, &st, &err);
        CHECK_OK(st, err.msg);
        CHECK(same_tensor(m, "f", ONYX_DTYPE_F32, f_dims, 2, f_vals, sizeof f_vals));
        CHECK(same_tensor(m, "i", ONYX_DTYPE_I64, i_dims, 1, i_vals, sizeof i_vals));
        CHECK(same_tensor(m, "d", ONYX_DTYPE_F64, d_dims, 2, d_vals, sizeof d_vals));
        onyx_model_destroy(m);
    }
    free(b.p);

    /* data_location EXTERNAL wins over raw_data, as before */
    CHECK(th_write_bytes(th_path("w.bin"), two, sizeof two));
    t = (th_pb){0};
    tensor_head(&t, "w", DT_FLOAT, two_dims, 1);
    th_pb_bytes(&t, T_RAW, other, sizeof other);
    th_pb entry = {0};
    th_pb_str(&entry, 1, "location");
    th_pb_str(&entry, 2, "w.bin");
    th_pb_msg(&t, T_EXTERNAL_DATA, &entry);
    th_pb_int(&t, T_DATA_LOCATION, 1);
    static const char *const w_name[1] = {"w"};
    b = model_with(&t, w_name, 1);
    onyx_status st;
    onyx_error err;
    onyx_model *m = load_file(&b, &st, &err);
    CHECK_OK(st, err.msg);
    CHECK(same_tensor(m, "w", ONYX_DTYPE_F32, two_dims, 1, two, sizeof two));
    onyx_model_destroy(m);
    free(b.p);
}

/* ---- a Constant node's raw tensor, next to raw initializers ---------------------------------- */

static void test_constant_node(void)
{
    static const float c_vals[3] = {4.0f, -5.0f, 6.5f};
    static const int64_t c_dims[1] = {3};
    th_pb g = {0};
    th_pb_str(&g, G_NAME, "g");
    th_pb w = tensor_raw("w", DT_FLOAT, c_dims, 1, f_vals, 3 * sizeof(float));
    th_pb_msg(&g, G_INITIALIZER, &w);
    th_pb node = {0};
    th_pb_str(&node, N_OUTPUT, "c");
    th_pb_str(&node, N_NAME, "const");
    th_pb_str(&node, N_OP_TYPE, "Constant");
    th_pb attr = {0};
    th_pb_str(&attr, A_NAME, "value");
    th_pb ct = tensor_raw("cv", DT_FLOAT, c_dims, 1, c_vals, sizeof c_vals);
    th_pb_msg(&attr, A_T, &ct);
    th_pb_int(&attr, A_TYPE, 4); /* TENSOR */
    th_pb_msg(&node, N_ATTRIBUTE, &attr);
    th_pb_msg(&g, G_NODE, &node);
    th_pb add = {0};
    th_pb_str(&add, N_INPUT, "c");
    th_pb_str(&add, N_INPUT, "w");
    th_pb_str(&add, N_OUTPUT, "y");
    th_pb_str(&add, N_NAME, "add");
    th_pb_str(&add, N_OP_TYPE, "Add");
    th_pb_msg(&g, G_NODE, &add);
    graph_output(&g, "y");
    th_pb b = model_of(&g);
    for (int l = 0; l < 2; l++) {
        onyx_status st;
        onyx_error err;
        onyx_model *m = loaders[l](&b, &st, &err);
        CHECK_OK(st, err.msg);
        if (m == NULL)
            continue;
        CHECK(same_tensor(m, "w", ONYX_DTYPE_F32, c_dims, 1, f_vals, 3 * sizeof(float)));
        onyx_session *s = NULL;
        CHECK_OK(onyx_session_create(m, NULL, &s, &err), err.msg);
        onyx_tensor y;
        memset(&y, 0, sizeof y);
        if (s != NULL) {
            CHECK_OK(onyx_session_run(s, 0, NULL, NULL, 1, NULL, &y), onyx_session_errmsg(s));
            CHECK(y.rank == 1 && y.dims[0] == 3 && y.data != NULL);
            for (int k = 0; y.data && k < 3; k++)
                CHECK(((float *)y.data)[k] == c_vals[k] + f_vals[k]);
        }
        onyx_session_destroy(s);
        onyx_model_destroy(m);
    }
    free(b.p);
}

/* ---- the graph field given twice ------------------------------------------------------------- */

/* protobuf merges a non-repeated message field given twice: the graph's repeated fields
 * (initializers, outputs) are the first graph's followed by the second's. */
static void test_graph_twice(void)
{
    th_pb g1 = {0};
    th_pb_str(&g1, G_NAME, "first");
    th_pb t = tensor_raw("f", DT_FLOAT, f_dims, 2, f_vals, sizeof f_vals);
    th_pb_msg(&g1, G_INITIALIZER, &t);
    th_pb s = {0}; /* typed data between raw ones */
    tensor_head(&s, "typed", DT_FLOAT, NULL, 0);
    const float half = 0.5f;
    th_pb_bytes(&s, T_FLOAT_DATA, &half, sizeof half);
    th_pb_msg(&g1, G_INITIALIZER, &s);
    graph_output(&g1, "f");
    th_pb g2 = {0};
    t = tensor_raw("u", DT_UINT8, u_dims, 1, u_vals, sizeof u_vals);
    th_pb_msg(&g2, G_INITIALIZER, &t);
    t = tensor_raw("d", DT_DOUBLE, d_dims, 2, d_vals, sizeof d_vals);
    th_pb_msg(&g2, G_INITIALIZER, &t);
    graph_output(&g2, "u");
    graph_output(&g2, "d");
    graph_output(&g2, "typed");
    th_pb b = {0};
    th_pb_int(&b, M_IR_VERSION, 8);
    th_pb_msg(&b, M_GRAPH, &g1);
    th_pb os = {0};
    th_pb_int(&os, 2, 17);
    th_pb_msg(&b, M_OPSET_IMPORT, &os);
    th_pb_msg(&b, M_GRAPH, &g2);
    for (int l = 0; l < 2; l++) {
        onyx_status st;
        onyx_error err;
        onyx_model *m = loaders[l](&b, &st, &err);
        CHECK_OK(st, err.msg);
        CHECK(onyx_model_initializer_count(m) == 4 && onyx_model_output_count(m) == 4);
        CHECK(same_tensor(m, "f", ONYX_DTYPE_F32, f_dims, 2, f_vals, sizeof f_vals));
        CHECK(same_tensor(m, "typed", ONYX_DTYPE_F32, NULL, 0, &half, sizeof half));
        CHECK(same_tensor(m, "u", ONYX_DTYPE_U8, u_dims, 1, u_vals, sizeof u_vals));
        CHECK(same_tensor(m, "d", ONYX_DTYPE_F64, d_dims, 2, d_vals, sizeof d_vals));
        onyx_model_destroy(m);
    }
    free(b.p);
}

/* ---- lengths that run past the end or overflow ----------------------------------------------- */

/* A model whose initializer "w" ends with the bytes tail[n]; the error must name the byte where
 * the bad field starts (the first byte of tail). */
static void expect_corrupt(const uint8_t *tail, size_t n, const char *why)
{
    static const uint8_t mark[] = {0x42, 0x07, 'M', 'A', 'R', 'K', '-', 'm', 'e'}; /* name */
    th_pb t = {0};
    tensor_head(&t, "w", DT_FLOAT, two_dims, 1);
    th_pb_raw(&t, mark, sizeof mark);
    th_pb_raw(&t, tail, n);
    static const char *const names[1] = {"w"};
    th_pb b = model_with(&t, names, 1);
    size_t at = find_bytes(&b, mark, sizeof mark);
    CHECK(at != SIZE_MAX);
    char want[160];
    snprintf(want, sizeof want,
             "raw.onnx: not a valid ONNX model (corrupt protobuf: %s at byte %zu)", why,
             at + sizeof mark);
    for (int l = 0; l < 2; l++) {
        onyx_status st;
        onyx_error err;
        onyx_model *m = loaders[l](&b, &st, &err);
        CHECK(st == ONYX_ERR_INVALID_MODEL && m == NULL);
        CHECK_MSG(err.msg, want);
        onyx_model_destroy(m);
    }
    free(b.p);
}

static void test_bad_lengths(void)
{
    /* raw_data longer than the initializer holding it (the graph-level lengths are right) */
    static const uint8_t past[] = {0x4a, 0x09, 0, 0, 0xc0, 0x3f, 0, 0, 0x20, 0xc0};
    expect_corrupt(past, sizeof past, "length-delimited field runs past the end");
    /* a length of 2^63, of 2^32 + 8 (which a 32-bit reader would wrap to 8), of 2^64 - 1 */
    static const uint8_t l63[] = {0x4a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                                  0x01, 0,    0,    0xc0, 0x3f, 0,    0,    0x20, 0xc0};
    expect_corrupt(l63, sizeof l63, "length-delimited field runs past the end");
    static const uint8_t l32[] = {0x4a, 0x88, 0x80, 0x80, 0x80, 0x10, 0,
                                  0,    0xc0, 0x3f, 0,    0,    0x20, 0xc0};
    expect_corrupt(l32, sizeof l32, "length-delimited field runs past the end");
    static const uint8_t l64[] = {0x4a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    expect_corrupt(l64, sizeof l64, "length-delimited field runs past the end");
    /* a raw_data length that never ends, a key that never ends, field number 0 */
    static const uint8_t endless[] = {0x4a, 0x88, 0x88};
    expect_corrupt(endless, sizeof endless, "length-delimited field runs past the end");
    static const uint8_t key[] = {0xca, 0x80};
    expect_corrupt(key, sizeof key, "malformed field key");
    static const uint8_t zero[] = {0x80, 0x00, 0x01};
    expect_corrupt(zero, sizeof zero, "malformed field key");
    /* a group, a truncated double, a truncated varint */
    static const uint8_t group[] = {0x4b, 0x4c};
    expect_corrupt(group, sizeof group, "unsupported wire type (groups or garbage)");
    static const uint8_t fixed[] = {0x51, 1, 2, 3};
    expect_corrupt(fixed, sizeof fixed, "truncated fixed-size field");
    static const uint8_t varint[] = {0x10, 0x81};
    expect_corrupt(varint, sizeof varint, "truncated varint");

    /* the initializer's own length past the graph's end: the pre-scan's message, unchanged */
    th_pb t = tensor_raw("w", DT_FLOAT, two_dims, 1, two, sizeof two);
    static const char *const names[1] = {"w"};
    th_pb b = model_with(&t, names, 1);
    static const uint8_t init_key[] = {0x2a};
    size_t at = find_bytes(&b, init_key, 1); /* GraphProto.initializer: the first 0x2a */
    CHECK(at != SIZE_MAX && b.p[at + 1] < 0x80);
    b.p[at + 1] = 0x7f;
    onyx_status st;
    onyx_error err;
    onyx_model *m = load_mem(&b, &st, &err);
    CHECK(st == ONYX_ERR_INVALID_MODEL && m == NULL);
    CHECK_MSG(err.msg, "corrupt protobuf: length-delimited field runs past the end");
    free(b.p);
}

/* ---- mutated models, against protobuf-c's own reading ---------------------------------------- */

/* Tests cannot include the generated onnx.pb-c.h: messages are read through the descriptor
 * (libonyx has it), field by name. */
extern const ProtobufCMessageDescriptor onnx__model_proto__descriptor;

static void *pb_field(const ProtobufCMessage *m, const char *name,
                      const ProtobufCFieldDescriptor **fd)
{
    *fd = protobuf_c_message_descriptor_get_field_by_name(m->descriptor, name);
    if (*fd == NULL) {
        fprintf(stderr, "test bug: %s has no field %s\n", m->descriptor->name, name);
        exit(2);
    }
    return (char *)m + (*fd)->offset;
}

/* The has_ flag of an optional field, or the count of a repeated one. */
static size_t pb_n(const ProtobufCMessage *m, const char *name)
{
    const ProtobufCFieldDescriptor *fd;
    pb_field(m, name, &fd);
    if (fd->label == PROTOBUF_C_LABEL_REPEATED)
        return *(size_t *)((char *)m + fd->quantifier_offset);
    return *(protobuf_c_boolean *)((char *)m + fd->quantifier_offset);
}

static void *pb_get(const ProtobufCMessage *m, const char *name)
{
    const ProtobufCFieldDescriptor *fd;
    return pb_field(m, name, &fd);
}

/* A small model with raw initializers of four dtypes, typed data, and an Add that uses one. */
static th_pb fuzz_model(void)
{
    th_pb g = {0};
    th_pb_str(&g, G_NAME, "g");
    th_pb t = tensor_raw("w", DT_FLOAT, two_dims, 1, two, sizeof two);
    th_pb_msg(&g, G_INITIALIZER, &t);
    t = tensor_raw("i", DT_INT64, i_dims, 1, i_vals, sizeof i_vals);
    th_pb_msg(&g, G_INITIALIZER, &t);
    t = (th_pb){0};
    th_pb_bytes(&t, T_RAW, d_vals, sizeof d_vals);
    tensor_head(&t, "d", DT_DOUBLE, d_dims, 2);
    th_pb_msg(&g, G_INITIALIZER, &t);
    t = tensor_raw("u", DT_UINT8, u_dims, 1, u_vals, sizeof u_vals);
    th_pb_msg(&g, G_INITIALIZER, &t);
    t = (th_pb){0};
    tensor_head(&t, "typed", DT_FLOAT, two_dims, 1);
    th_pb_bytes(&t, T_FLOAT_DATA, two, sizeof two);
    th_pb_msg(&g, G_INITIALIZER, &t);
    th_pb x = {0};
    th_pb_str(&x, 1, "x");
    th_pb type = {0}, tensor_type = {0}, shape = {0}, dim = {0};
    th_pb_int(&dim, 1, 2);
    th_pb_msg(&shape, 1, &dim);
    th_pb_int(&tensor_type, 1, DT_FLOAT);
    th_pb_msg(&tensor_type, 2, &shape);
    th_pb_msg(&type, 1, &tensor_type);
    th_pb_msg(&x, 2, &type);
    th_pb_msg(&g, G_INPUT, &x);
    th_pb add = {0};
    th_pb_str(&add, N_INPUT, "x");
    th_pb_str(&add, N_INPUT, "w");
    th_pb_str(&add, N_OUTPUT, "y");
    th_pb_str(&add, N_OP_TYPE, "Add");
    th_pb_msg(&g, G_NODE, &add);
    graph_output(&g, "y");
    graph_output(&g, "i");
    graph_output(&g, "d");
    graph_output(&g, "u");
    graph_output(&g, "typed");
    return model_of(&g);
}

typedef struct fuzz_stats {
    int loaded;
    int failed;
    int bad; /* outcomes that break a rule */
} fuzz_stats;

/* Loads buf[n] and checks the outcome against protobuf-c's reading of the same bytes: onyx
 * loads only what protobuf-c can read, and then every raw initializer holds exactly the bytes
 * protobuf-c found; whatever protobuf-c reads, onyx's stripped copy reads too (the error, if
 * any, is never "protobuf parsing failed" nor internal). */
static void fuzz_one(const uint8_t *buf, size_t n, fuzz_stats *fs)
{
    ProtobufCMessage *ref = protobuf_c_message_unpack(&onnx__model_proto__descriptor, NULL, n, buf);
    onyx_model *m = NULL;
    onyx_error err;
    memset(&err, 0, sizeof err);
    onyx_status st = onyx_model_load_buffer(buf, n, NULL, "fuzz.onnx", &m, &err);
    bool ok = true;
    if (st == ONYX_OK) {
        fs->loaded++;
        ProtobufCMessage *g = ref ? *(ProtobufCMessage **)pb_get(ref, "graph") : NULL;
        ok = g != NULL;
        for (size_t i = 0; ok && i < pb_n(g, "initializer"); i++) {
            const ProtobufCMessage *tp = (*(ProtobufCMessage ***)pb_get(g, "initializer"))[i];
            if (!pb_n(tp, "raw_data") || pb_n(tp, "data_location"))
                continue;
            const ProtobufCBinaryData *raw = pb_get(tp, "raw_data");
            const onyx_tensor *t = init_of(m, *(char **)pb_get(tp, "name"));
            ok = t != NULL && (size_t)onyx_numel(t) * onyx_dtype_size(t->dtype) == raw->len &&
                 (raw->len == 0 || memcmp(t->data, raw->data, raw->len) == 0);
        }
    } else {
        fs->failed++;
        ok = err.code == st && err.msg[0] != '\0' && st != ONYX_ERR_INTERNAL &&
             !(ref != NULL && strstr(err.msg, "protobuf parsing failed") != NULL);
    }
    if (!ok && fs->bad++ < 5)
        fprintf(stderr, "fuzz: status %d (%s), protobuf-c %s\n", (int)st, err.msg,
                ref ? "reads it" : "refuses it");
    onyx_model_destroy(m);
    if (ref)
        protobuf_c_message_free_unpacked(ref, NULL);
}

static void test_mutations(void)
{
    th_pb good = fuzz_model();
    fuzz_stats fs = {0, 0, 0};
    fuzz_one(good.p, good.n, &fs);
    CHECK(fs.loaded == 1);
    /* every prefix */
    for (size_t len = 0; len < good.n; len++)
        fuzz_one(good.p, len, &fs);
    /* every byte set to values that matter to keys and lengths */
    static const uint8_t values[] = {0x00, 0x01, 0x7f, 0x80, 0xff, 0x4a, 0x2a, 0x3a};
    uint8_t *copy = malloc(good.n);
    CHECK(copy != NULL);
    if (copy == NULL)
        return;
    for (size_t i = 0; i < good.n; i++)
        for (size_t v = 0; v < sizeof values; v++) {
            memcpy(copy, good.p, good.n);
            copy[i] = values[v];
            fuzz_one(copy, good.n, &fs);
        }
    /* and random flips of one to four bytes */
    uint64_t x = 0x9e3779b97f4a7c15u;
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(copy, good.p, good.n);
        for (int k = 0; k < 1 + iter % 4; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            copy[x % good.n] = (uint8_t)(x >> 32);
        }
        fuzz_one(copy, good.n, &fs);
    }
    CHECK(fs.bad == 0);
    printf("mutations: %d loaded, %d refused, %d broke a rule\n", fs.loaded, fs.failed, fs.bad);
    free(copy);
    free(good.p);
}

/* ---- no copy: peak memory while loading a 48 MiB model --------------------------------------- */

/* A line "<field>: N kB" of /proc/self/status, in bytes; -1 when absent. */
static long long proc_status(const char *field)
{
    FILE *fp = fopen("/proc/self/status", "r");
    if (fp == NULL)
        return -1;
    char line[256];
    long long kb = -1;
    size_t n = strlen(field);
    while (fgets(line, sizeof line, fp))
        if (strncmp(line, field, n) == 0 && line[n] == ':')
            kb = atoll(line + n + 1);
    fclose(fp);
    return kb < 0 ? -1 : kb * 1024;
}

/* Resets the peak RSS to the current RSS (Linux >= 4.0); false when that is not possible. */
static bool reset_peak(void)
{
    FILE *fp = fopen("/proc/self/clear_refs", "w");
    if (fp == NULL)
        return false;
    bool ok = fputs("5", fp) >= 0;
    return fclose(fp) == 0 && ok;
}

/* The weights of the big model: element k of each initializer is a function of k. */
static float big_f(int64_t k)
{
    return (float)(k % 1013) * 0.25f - 100.0f;
}
static int64_t big_i(int64_t k)
{
    return k * 1000003 - (1LL << 50);
}
static double big_d(int64_t k)
{
    return (double)k * 1e-3 - 7.0;
}
static uint8_t big_u(int64_t k)
{
    return (uint8_t)(k * 7 + 3);
}

enum { BIG_F = 2048 * 4096, BIG_I = 1 << 20, BIG_D = 1 << 19, BIG_U = 4 << 20 };
#define BIG_WEIGHTS ((size_t)BIG_F * 4 + (size_t)BIG_I * 8 + (size_t)BIG_D * 8 + (size_t)BIG_U)

static th_pb big_model(void)
{
    th_pb ts[4];
    static const int64_t f_shape[2] = {2048, 4096};
    static const int64_t i_shape[1] = {BIG_I};
    static const int64_t d_shape[2] = {512, 1024};
    static const int64_t u_shape[1] = {BIG_U};
    void *buf = malloc((size_t)BIG_F * 4);
    if (buf == NULL)
        abort();
    for (int64_t k = 0; k < BIG_F; k++)
        ((float *)buf)[k] = big_f(k);
    ts[0] = tensor_raw("f", DT_FLOAT, f_shape, 2, buf, (size_t)BIG_F * 4);
    for (int64_t k = 0; k < BIG_I; k++)
        ((int64_t *)buf)[k] = big_i(k);
    ts[1] = tensor_raw("i", DT_INT64, i_shape, 1, buf, (size_t)BIG_I * 8);
    for (int64_t k = 0; k < BIG_D; k++)
        ((double *)buf)[k] = big_d(k);
    ts[2] = tensor_raw("d", DT_DOUBLE, d_shape, 2, buf, (size_t)BIG_D * 8);
    for (int64_t k = 0; k < BIG_U; k++)
        ((uint8_t *)buf)[k] = big_u(k);
    ts[3] = tensor_raw("u", DT_UINT8, u_shape, 1, buf, (size_t)BIG_U);
    free(buf);
    static const char *const names[4] = {"f", "i", "d", "u"};
    return model_with(ts, names, 4);
}

static bool big_weights_ok(const onyx_model *m)
{
    const onyx_tensor *f = init_of(m, "f");
    const onyx_tensor *i = init_of(m, "i");
    const onyx_tensor *d = init_of(m, "d");
    const onyx_tensor *u = init_of(m, "u");
    if (!f || !i || !d || !u || onyx_numel(f) != BIG_F || onyx_numel(i) != BIG_I ||
        onyx_numel(d) != BIG_D || onyx_numel(u) != BIG_U)
        return false;
    for (int64_t k = 0; k < BIG_F; k++)
        if (((const float *)f->data)[k] != big_f(k))
            return false;
    for (int64_t k = 0; k < BIG_I; k++)
        if (((const int64_t *)i->data)[k] != big_i(k))
            return false;
    for (int64_t k = 0; k < BIG_D; k++)
        if (((const double *)d->data)[k] != big_d(k))
            return false;
    for (int64_t k = 0; k < BIG_U; k++)
        if (((const uint8_t *)u->data)[k] != big_u(k))
            return false;
    return true;
}

#if defined(__SANITIZE_ADDRESS__)
#define ASAN_SHADOW 8 /* AddressSanitizer touches one shadow byte per 8 bytes allocated */
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASAN_SHADOW 8
#endif
#endif

static void *volatile escape;

static void test_no_copy(void)
{
    if (!reset_peak() || proc_status("VmHWM") < 0 || proc_status("VmRSS") < 0) {
        printf("no-copy check skipped: /proc/self/clear_refs or VmHWM not available\n");
        return;
    }
    const long long w = (long long)BIG_WEIGHTS;
    long long limit = w + w / 10 + (8 << 20); /* the arena, and a little */
#ifdef ASAN_SHADOW
    limit += w / ASAN_SHADOW;
#endif
    /* The measure sees a copy of the weights. */
    reset_peak();
    long long rss0 = proc_status("VmRSS");
    char *copy = malloc((size_t)w);
    CHECK(copy != NULL);
    if (copy == NULL)
        return;
    memset(copy, 1, (size_t)w);
    escape = copy; /* so that the compiler keeps the memset */
    long long copy_peak = proc_status("VmHWM") - rss0;
    free(copy);
    escape = NULL;
    CHECK(copy_peak >= w - w / 10);

    th_pb b = big_model();
    for (int l = 0; l < 2; l++) {
        if (l == 1 && !th_write_bytes(th_path("raw.onnx"), b.p, b.n)) {
            CHECK(false);
            break;
        }
        onyx_model *m = NULL;
        onyx_error err;
        memset(&err, 0, sizeof err);
        reset_peak();
        rss0 = proc_status("VmRSS");
        onyx_status st = l == 0 ? onyx_model_load_buffer(b.p, b.n, NULL, "big.onnx", &m, &err)
                                : onyx_model_load(th_path("raw.onnx"), &m, &err);
        long long peak = proc_status("VmHWM") - rss0;
        CHECK_OK(st, err.msg);
        if (peak > limit)
            fprintf(stderr, "loading from %s: peak RSS grew by %lld bytes, limit %lld\n",
                    loader_name[l], peak, limit);
        CHECK(peak <= limit);
        printf("loading %lld bytes of weights from %s: peak RSS +%.1f MB (a copy: +%.1f MB)\n", w,
               loader_name[l], (double)peak / 1e6, (double)copy_peak / 1e6);
        CHECK(big_weights_ok(m));
        onyx_model_destroy(m);
    }
    free(b.p);
}

int main(void)
{
    if (th_tmpdir_make(ONYX_BINARY_DIR, "test_load_raw") == NULL)
        return 1;
    test_dtypes();
    test_positions();
    test_raw_and_typed();
    test_constant_node();
    test_graph_twice();
    test_bad_lengths();
    test_mutations();
    test_no_copy();
    CHECK(th_tmpdir_remove() == 0);
    return check_report();
}
