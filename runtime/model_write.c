/*
 * model_write.c — writing ONNX protobuf files: a tensor as a TensorProto (onyx_tensor_write_pb),
 * a fresh multi-layer perceptron as a ModelProto (onyx_mlp_write), and an existing model with
 * new initializer values (onyx_model_rewrite) or with Dropout inserted (onyx_model_add_dropout).
 *
 * Messages are built from protobuf-c's generated structs pointing at our own memory (a pool
 * freed in one go), then streamed to the file by protobuf_c_message_pack_to_buffer, so large
 * weights are never copied a second time. Files are written through onyx_write_file_atomic
 * (temporary file + rename): a failure never leaves half a file behind.
 *
 * Rewriting unpacks the original ModelProto and packs it again with a few structs changed in
 * place. protobuf-c keeps every field it does not know in each message's base.unknown_fields and
 * packs them back, so fields newer than our onnx.proto survive (tests/runtime/test_model_write.c
 * checks it). Changed structs are saved first and restored before protobuf-c frees the message.
 *
 * Also here, shared with the loader (runtime/model.c): the wire-format pre-check that keeps
 * protobuf-c from recursing without limit, and the confined reader of external tensor data.
 */
#define _XOPEN_SOURCE 700 /* realpath */
#include "internal.h"
#include "onnx.pb-c.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Limits of onyx_mlp_write: a .onnx file holds at most 2 GiB, so 500M float32 parameters. */
#define MLP_MAX_LAYERS 10000
#define MLP_MAX_WIDTH ((int64_t)1 << 31)
#define MLP_MAX_PARAMS ((int64_t)500000000)

/* ---- streaming a message into a FILE ------------------------------------------------------ */

typedef struct file_buffer {
    ProtobufCBuffer base; /* first: protobuf-c calls base.append with a pointer to it */
    FILE *f;
    bool failed;
} file_buffer;

static void file_buffer_append(ProtobufCBuffer *b, size_t len, const uint8_t *data)
{
    file_buffer *fb = (file_buffer *)b;
    if (!fb->failed && len > 0 && fwrite(data, 1, len, fb->f) != len)
        fb->failed = true;
}

static bool write_message(FILE *f, void *ctx)
{
    const ProtobufCMessage *msg = ctx;
    file_buffer fb = {{file_buffer_append}, f, false};
    protobuf_c_message_pack_to_buffer(msg, &fb.base);
    return !fb.failed;
}

static onyx_status write_message_file(const char *path, const ProtobufCMessage *msg,
                                      onyx_error *err)
{
    size_t size = protobuf_c_message_get_packed_size(msg);
    if (size > ONYX_MAX_FILE_SIZE)
        return onyx_err(err, ONYX_ERR_INVALID_ARG,
                        "%s: the message would be %zu bytes, more than protobuf's limit of %zu",
                        path, size, ONYX_MAX_FILE_SIZE);
    return onyx_write_file_atomic(path, write_message, (void *)msg, err);
}

/* ---- TensorProto -------------------------------------------------------------------------- */

onyx_status onyx_tensor_write_pb(const char *path, const char *name, const onyx_tensor *t,
                                 onyx_error *err)
{
    if (path == NULL || t == NULL)
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "onyx_tensor_write_pb: %s is NULL",
                        path == NULL ? "path" : "t");
    if (t->dtype == ONYX_DTYPE_UNDEFINED || t->dtype == ONYX_DTYPE_STRING ||
        !onyx_dtype_is_known((int32_t)t->dtype))
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "%s: cannot write a tensor of dtype %s", path,
                        onyx_dtype_name(t->dtype));
    if (t->rank < 0 || t->rank > ONYX_MAX_RANK)
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "%s: tensor rank %d is outside 0..%d", path,
                        t->rank, ONYX_MAX_RANK);
    int64_t numel;
    char shape[128];
    if (!onyx_shape_numel(t->dims, t->rank, onyx_dtype_size(t->dtype), &numel))
        return onyx_err(err, ONYX_ERR_SHAPE, "%s: tensor shape %s is negative or too large", path,
                        onyx_shape_str(t, shape, sizeof(shape)));
    if (numel > 0 && t->data == NULL)
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "%s: tensor data is NULL", path);

    Onnx__TensorProto tp = ONNX__TENSOR_PROTO__INIT;
    int64_t dims[ONYX_MAX_RANK];
    memcpy(dims, t->dims, sizeof(dims));
    tp.n_dims = (size_t)t->rank;
    tp.dims = dims;
    tp.has_data_type = 1;
    tp.data_type = (int32_t)t->dtype;
    tp.name = (char *)(name != NULL ? name : "");
    tp.has_raw_data = 1;
    tp.raw_data.len = (size_t)numel * onyx_dtype_size(t->dtype);
    tp.raw_data.data = t->data; /* little-endian on the little-endian hosts onyx supports */
    return write_message_file(path, &tp.base, err);
}

/* ---- the MLP ------------------------------------------------------------------------------ */

/* Every allocation of one model build, freed together. */
typedef struct pool {
    void **ptr;
    size_t n;
    size_t cap;
    bool failed;
} pool;

static void *pool_alloc(pool *p, size_t n, size_t size)
{
    if (p->failed)
        return NULL;
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 64;
        void **grown = onyx_calloc(cap, sizeof(*grown));
        if (grown == NULL) {
            p->failed = true;
            return NULL;
        }
        if (p->n)
            memcpy(grown, p->ptr, p->n * sizeof(*grown));
        free(p->ptr);
        p->ptr = grown;
        p->cap = cap;
    }
    void *mem = onyx_calloc(n ? n : 1, size);
    if (mem == NULL) {
        p->failed = true;
        return NULL;
    }
    p->ptr[p->n++] = mem;
    return mem;
}

/* "<prefix><i><suffix>" in pool memory, e.g. pool_name(p, "fc", 0, ".weight"). */
static char *pool_name(pool *p, const char *prefix, size_t i, const char *suffix)
{
    char buf[64];
    snprintf(buf, sizeof(buf), "%s%zu%s", prefix, i, suffix);
    char *s = pool_alloc(p, strlen(buf) + 1, 1);
    if (s != NULL)
        strcpy(s, buf);
    return s;
}

static void pool_free(pool *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->ptr[i]);
    free(p->ptr);
}

typedef enum act_kind { ACT_RELU, ACT_TANH, ACT_SIGMOID, ACT_GELU } act_kind;

static const struct {
    const char *name;
    const char *op_type;
} ACTS[] = {{"relu", "Relu"}, {"tanh", "Tanh"}, {"sigmoid", "Sigmoid"}, {"gelu", "Gelu"}};

/* Checks spec; sets *act and the total parameter count. */
static onyx_status check_spec(const onyx_mlp_spec *spec, const char *path, act_kind *act,
                              int64_t *n_params, onyx_error *err)
{
    if (spec->layers == NULL)
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "%s: spec->layers is NULL", path);
    if (spec->n_layers < 2 || spec->n_layers > MLP_MAX_LAYERS)
        return onyx_err(err, ONYX_ERR_INVALID_ARG,
                        "%s: an MLP needs 2 to %d layer widths (input first), got %zu", path,
                        MLP_MAX_LAYERS, spec->n_layers);
    const char *a = spec->activation != NULL ? spec->activation : "relu";
    size_t k;
    for (k = 0; k < sizeof(ACTS) / sizeof(ACTS[0]); k++)
        if (strcmp(a, ACTS[k].name) == 0)
            break;
    if (k == sizeof(ACTS) / sizeof(ACTS[0]))
        return onyx_err(err, ONYX_ERR_INVALID_ARG,
                        "%s: unknown activation \"%s\" (expected relu, tanh, sigmoid or gelu)",
                        path, a);
    *act = (act_kind)k;
    if (!(spec->dropout >= 0.0f && spec->dropout < 1.0f))
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "%s: dropout %g is outside [0, 1)", path,
                        (double)spec->dropout);
    int64_t total = 0;
    for (size_t i = 0; i < spec->n_layers; i++) {
        int64_t w = spec->layers[i];
        if (w < 1 || w > MLP_MAX_WIDTH)
            return onyx_err(err, ONYX_ERR_INVALID_ARG,
                            "%s: layer %zu has width %lld, expected 1..%lld", path, i, (long long)w,
                            (long long)MLP_MAX_WIDTH);
        if (i == 0)
            continue;
        int64_t fan_in = spec->layers[i - 1];
        /* fan_in, w <= 2^31, so (fan_in + 1) * w cannot overflow int64 */
        total += (fan_in + 1) * w;
        if (total > MLP_MAX_PARAMS)
            return onyx_err(err, ONYX_ERR_INVALID_ARG,
                            "%s: the MLP would have more than %lld parameters (a .onnx file "
                            "holds at most 2 GiB)",
                            path, (long long)MLP_MAX_PARAMS);
    }
    *n_params = total;
    return ONYX_OK;
}

/* Standard normal numbers by the Box-Muller transform, in pairs. */
typedef struct normal_gen {
    onyx_rng rng;
    bool have_spare;
    double spare;
} normal_gen;

static double normal_next(normal_gen *g)
{
    if (g->have_spare) {
        g->have_spare = false;
        return g->spare;
    }
    double u1 = 1.0 - onyx_rng_double(&g->rng); /* (0, 1]: log(u1) is finite */
    double u2 = onyx_rng_double(&g->rng);
    double r = sqrt(-2.0 * log(u1));
    double theta = 6.283185307179586476925 * u2;
    g->spare = r * sin(theta);
    g->have_spare = true;
    return r * cos(theta);
}

static Onnx__TensorProto *new_tensor(pool *p, const char *name, int rank, int64_t d0, int64_t d1)
{
    Onnx__TensorProto *t = pool_alloc(p, 1, sizeof(*t));
    int64_t *dims = pool_alloc(p, 2, sizeof(int64_t));
    if (t == NULL || dims == NULL)
        return NULL;
    onnx__tensor_proto__init(t);
    dims[0] = d0;
    dims[1] = d1;
    t->n_dims = (size_t)rank;
    t->dims = dims;
    t->has_data_type = 1;
    t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    t->name = (char *)name;
    int64_t numel = rank == 0 ? 1 : rank == 1 ? d0 : d0 * d1;
    t->has_raw_data = 1;
    t->raw_data.len = (size_t)numel * sizeof(float);
    t->raw_data.data = pool_alloc(p, (size_t)numel, sizeof(float)); /* zeros */
    return t->raw_data.data != NULL ? t : NULL;
}

/* A node with up to 3 inputs and 1 output; inputs/output are pool strings or literals. */
static Onnx__NodeProto *new_node(pool *p, const char *name, const char *op_type, int n_in,
                                 const char *in0, const char *in1, const char *in2, const char *out)
{
    Onnx__NodeProto *n = pool_alloc(p, 1, sizeof(*n));
    char **in = pool_alloc(p, 3, sizeof(char *));
    char **outs = pool_alloc(p, 1, sizeof(char *));
    if (n == NULL || in == NULL || outs == NULL || name == NULL || out == NULL)
        return NULL;
    onnx__node_proto__init(n);
    in[0] = (char *)in0;
    in[1] = (char *)in1;
    in[2] = (char *)in2;
    outs[0] = (char *)out;
    n->name = (char *)name;
    n->op_type = (char *)op_type;
    n->domain = (char *)"";
    n->n_input = (size_t)n_in;
    n->input = in;
    n->n_output = 1;
    n->output = outs;
    return n;
}

/* A float tensor graph input/output with shape [batch, width]. */
static Onnx__ValueInfoProto *new_value_info(pool *p, const char *name, int64_t width)
{
    Onnx__ValueInfoProto *vi = pool_alloc(p, 1, sizeof(*vi));
    Onnx__TypeProto *type = pool_alloc(p, 1, sizeof(*type));
    Onnx__TypeProto__Tensor *tt = pool_alloc(p, 1, sizeof(*tt));
    Onnx__TensorShapeProto *shape = pool_alloc(p, 1, sizeof(*shape));
    Onnx__TensorShapeProto__Dimension *dims = pool_alloc(p, 2, sizeof(*dims));
    Onnx__TensorShapeProto__Dimension **dimp = pool_alloc(p, 2, sizeof(*dimp));
    if (vi == NULL || type == NULL || tt == NULL || shape == NULL || dims == NULL || dimp == NULL)
        return NULL;
    onnx__value_info_proto__init(vi);
    onnx__type_proto__init(type);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(shape);
    for (int i = 0; i < 2; i++) {
        onnx__tensor_shape_proto__dimension__init(&dims[i]);
        dimp[i] = &dims[i];
    }
    dims[0].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
    dims[0].dim_param = (char *)"batch";
    dims[1].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
    dims[1].dim_value = width;
    shape->n_dim = 2;
    shape->dim = dimp;
    tt->has_elem_type = 1;
    tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tt->shape = shape;
    type->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    type->tensor_type = tt;
    vi->name = (char *)name;
    vi->type = type;
    return vi;
}

/* Builds the graph into g (all memory from p); false when out of memory. */
static bool build_mlp(pool *p, const onyx_mlp_spec *spec, act_kind act, Onnx__GraphProto *g)
{
    size_t n_fc = spec->n_layers - 1;
    size_t n_hidden = n_fc - 1;
    size_t n_drop = spec->dropout > 0.0f ? n_hidden : 0;
    size_t n_nodes = n_fc + n_hidden + n_drop;
    size_t n_init = 2 * n_fc + n_drop;
    Onnx__NodeProto **nodes = pool_alloc(p, n_nodes, sizeof(*nodes));
    Onnx__TensorProto **inits = pool_alloc(p, n_init, sizeof(*inits));
    Onnx__ValueInfoProto **in = pool_alloc(p, 1, sizeof(*in));
    Onnx__ValueInfoProto **out = pool_alloc(p, 1, sizeof(*out));
    Onnx__AttributeProto *transb = pool_alloc(p, 1, sizeof(*transb));
    Onnx__AttributeProto **gemm_attrs = pool_alloc(p, 1, sizeof(*gemm_attrs));
    if (nodes == NULL || inits == NULL || in == NULL || out == NULL || transb == NULL ||
        gemm_attrs == NULL)
        return false;
    onnx__attribute_proto__init(transb);
    transb->name = (char *)"transB";
    transb->has_type = 1;
    transb->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    transb->has_i = 1;
    transb->i = 1;
    gemm_attrs[0] = transb; /* shared by every Gemm: packing only reads it */

    normal_gen gen = {{{0}}, false, 0.0};
    onyx_rng_seed(&gen.rng, spec->seed);
    size_t k_node = 0;
    size_t k_init = 0;
    const char *cur = "input";
    for (size_t i = 0; i < n_fc; i++) {
        int64_t fan_in = spec->layers[i];
        int64_t fan_out = spec->layers[i + 1];
        bool last = i + 1 == n_fc;
        Onnx__TensorProto *w = new_tensor(p, pool_name(p, "fc", i, ".weight"), 2, fan_out, fan_in);
        Onnx__TensorProto *b = new_tensor(p, pool_name(p, "fc", i, ".bias"), 1, fan_out, 0);
        if (w == NULL || b == NULL || w->name == NULL || b->name == NULL)
            return false;
        /* He (Kaiming) normal for relu/gelu, Xavier (Glorot) uniform for tanh/sigmoid */
        float *wd = (float *)w->raw_data.data;
        int64_t numel = fan_out * fan_in;
        if (act == ACT_RELU || act == ACT_GELU) {
            double std = sqrt(2.0 / (double)fan_in);
            for (int64_t j = 0; j < numel; j++)
                wd[j] = (float)(std * normal_next(&gen));
        } else {
            double limit = sqrt(6.0 / (double)(fan_in + fan_out));
            for (int64_t j = 0; j < numel; j++)
                wd[j] = (float)(limit * (2.0 * onyx_rng_double(&gen.rng) - 1.0));
        }
        inits[k_init++] = w;
        inits[k_init++] = b;

        const char *y = last ? "logits" : pool_name(p, "fc", i, ".out");
        Onnx__NodeProto *fc =
            new_node(p, pool_name(p, "fc", i, ""), "Gemm", 3, cur, w->name, b->name, y);
        if (fc == NULL)
            return false;
        fc->n_attribute = 1;
        fc->attribute = gemm_attrs;
        nodes[k_node++] = fc;
        cur = y;
        if (last)
            break;

        const char *ya = pool_name(p, "act", i, ".out");
        Onnx__NodeProto *an =
            new_node(p, pool_name(p, "act", i, ""), ACTS[act].op_type, 1, cur, NULL, NULL, ya);
        if (an == NULL)
            return false;
        nodes[k_node++] = an;
        cur = ya;

        if (n_drop > 0) {
            /* opset-12 form: the ratio is an input; no training_mode input, so the graph
             * itself says inference (the session mode decides in infer/train modes) */
            Onnx__TensorProto *r = new_tensor(p, pool_name(p, "drop", i, ".ratio"), 0, 0, 0);
            if (r == NULL || r->name == NULL)
                return false;
            ((float *)r->raw_data.data)[0] = spec->dropout;
            inits[k_init++] = r;
            const char *yd = pool_name(p, "drop", i, ".out");
            Onnx__NodeProto *dn =
                new_node(p, pool_name(p, "drop", i, ""), "Dropout", 2, cur, r->name, NULL, yd);
            if (dn == NULL)
                return false;
            nodes[k_node++] = dn;
            cur = yd;
        }
    }
    in[0] = new_value_info(p, "input", spec->layers[0]);
    out[0] = new_value_info(p, "logits", spec->layers[spec->n_layers - 1]);
    if (in[0] == NULL || out[0] == NULL)
        return false;
    g->name = (char *)"mlp";
    g->n_node = k_node;
    g->node = nodes;
    g->n_initializer = k_init;
    g->initializer = inits;
    g->n_input = 1;
    g->input = in;
    g->n_output = 1;
    g->output = out;
    return !p->failed;
}

onyx_status onyx_mlp_write(const onyx_mlp_spec *spec, const char *path, onyx_error *err)
{
    if (spec == NULL || path == NULL)
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "onyx_mlp_write: %s is NULL",
                        spec == NULL ? "spec" : "path");
    act_kind act = ACT_RELU;
    int64_t n_params = 0;
    onyx_status st = check_spec(spec, path, &act, &n_params, err);
    if (st != ONYX_OK)
        return st;

    pool p = {NULL, 0, 0, false};
    Onnx__GraphProto graph = ONNX__GRAPH_PROTO__INIT;
    if (!build_mlp(&p, spec, act, &graph)) {
        pool_free(&p);
        return onyx_err(err, ONYX_ERR_NOMEM, "%s: out of memory building an MLP of %lld parameters",
                        path, (long long)n_params);
    }

    /* Gelu exists from opset 20, which needs IR version 9; everything else is opset 17, IR 8. */
    Onnx__OperatorSetIdProto opset = ONNX__OPERATOR_SET_ID_PROTO__INIT;
    opset.domain = (char *)"";
    opset.has_version = 1;
    opset.version = act == ACT_GELU ? 20 : 17;
    Onnx__OperatorSetIdProto *opsets[1] = {&opset};

    char doc[128];
    snprintf(doc, sizeof(doc),
             "MLP written by onyx_mlp_write: %zu layers, %s, dropout %g, seed %llu", spec->n_layers,
             ACTS[act].name, (double)spec->dropout, (unsigned long long)spec->seed);
    Onnx__ModelProto model = ONNX__MODEL_PROTO__INIT;
    model.has_ir_version = 1;
    model.ir_version = act == ACT_GELU ? 9 : 8;
    model.n_opset_import = 1;
    model.opset_import = opsets;
    model.producer_name = (char *)"onyx";
    model.producer_version = (char *)ONYX_VERSION_STRING;
    model.doc_string = doc;
    model.graph = &graph;

    st = write_message_file(path, &model.base, err);
    pool_free(&p);
    return st;
}

/* ---- shared with model.c: the wire-format pre-check and external data ---------------------- */

/* The message kinds that can contain each other, with the fields that do so. Everything else is
 * only checked for well-formed wire format. */
typedef enum wire_kind {
    W_LEAF,
    W_MODEL,
    W_GRAPH,
    W_NODE,
    W_ATTR,
    W_FUNCTION,
    W_VALUEINFO,
    W_TYPE,
    W_TYPE_ELEM, /* TypeProto.Sequence / Optional: field 1 is a TypeProto */
    W_TYPE_MAP,  /* TypeProto.Map: field 2 is a TypeProto */
    W_TRAINING,  /* TrainingInfoProto: fields 1, 2 are graphs */
} wire_kind;

static wire_kind wire_child(wire_kind k, uint64_t field)
{
    switch (k) {
    case W_MODEL:
        return field == 7 ? W_GRAPH : field == 25 ? W_FUNCTION : field == 20 ? W_TRAINING : W_LEAF;
    case W_GRAPH: return field == 1 ? W_NODE : (field >= 11 && field <= 13) ? W_VALUEINFO : W_LEAF;
    case W_NODE: return field == 5 ? W_ATTR : W_LEAF;
    case W_ATTR:
        return (field == 6 || field == 11)    ? W_GRAPH
               : (field == 14 || field == 15) ? W_TYPE
                                              : W_LEAF;
    case W_FUNCTION:
        return field == 7 ? W_NODE : field == 11 ? W_ATTR : field == 12 ? W_VALUEINFO : W_LEAF;
    case W_VALUEINFO: return field == 2 ? W_TYPE : W_LEAF;
    case W_TYPE: return (field == 4 || field == 9) ? W_TYPE_ELEM : field == 5 ? W_TYPE_MAP : W_LEAF;
    case W_TYPE_ELEM: return field == 1 ? W_TYPE : W_LEAF;
    case W_TYPE_MAP: return field == 2 ? W_TYPE : W_LEAF;
    case W_TRAINING: return (field == 1 || field == 2) ? W_GRAPH : W_LEAF;
    case W_LEAF: break;
    }
    return W_LEAF;
}

bool onyx_pb_read_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*pos >= len)
            return false;
        uint8_t b = p[(*pos)++];
        v |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* Message levels allowed: a graph nested in a node attribute costs three (GRAPH, NODE, ATTR). */
#define WIRE_MAX_DEPTH (3 * ONYX_MAX_NESTING + 8)

typedef struct wire_fail {
    size_t offset;
    const char *why;
} wire_fail;

static bool wire_scan(const uint8_t *p, size_t len, size_t base, wire_kind kind, int depth,
                      wire_fail *f)
{
    if (depth > WIRE_MAX_DEPTH) {
        f->offset = base;
        f->why = "messages nested too deeply (graphs or types inside each other)";
        return false;
    }
    size_t pos = 0;
    while (pos < len) {
        size_t start = pos;
        uint64_t key;
        if (!onyx_pb_read_varint(p, len, &pos, &key) || (key >> 3) == 0) {
            f->offset = base + start;
            f->why = "malformed field key";
            return false;
        }
        uint64_t v;
        switch (key & 7) {
        case 0:
            if (!onyx_pb_read_varint(p, len, &pos, &v)) {
                f->offset = base + start;
                f->why = "truncated varint";
                return false;
            }
            break;
        case 1:
        case 5: {
            size_t w = (key & 7) == 1 ? 8 : 4;
            if (len - pos < w) {
                f->offset = base + start;
                f->why = "truncated fixed-size field";
                return false;
            }
            pos += w;
            break;
        }
        case 2: {
            if (!onyx_pb_read_varint(p, len, &pos, &v) || v > len - pos) {
                f->offset = base + start;
                f->why = "length-delimited field runs past the end";
                return false;
            }
            wire_kind child = kind == W_LEAF ? W_LEAF : wire_child(kind, key >> 3);
            if (child != W_LEAF && !wire_scan(p + pos, (size_t)v, base + pos, child, depth + 1, f))
                return false;
            pos += (size_t)v;
            break;
        }
        default:
            f->offset = base + start;
            f->why = "unsupported wire type (groups or garbage)";
            return false;
        }
    }
    return true;
}

bool onyx_pb_wire_check(const void *buf, size_t len, bool model, size_t *offset, const char **why)
{
    wire_fail f = {0, NULL};
    bool ok = wire_scan(buf, len, 0, model ? W_MODEL : W_LEAF, 0, &f);
    *offset = f.offset;
    *why = f.why;
    return ok;
}

/* The value of external_data entry `key` of tp, or NULL. */
static const char *external_entry(const Onnx__TensorProto *tp, const char *key)
{
    for (size_t i = 0; i < tp->n_external_data; i++) {
        const Onnx__StringStringEntryProto *e = tp->external_data[i];
        if (e->key && strcmp(e->key, key) == 0)
            return e->value ? e->value : "";
    }
    return NULL;
}

static bool parse_i64(const char *s, int64_t *out)
{
    if (s == NULL || *s == '\0')
        return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end != '\0')
        return false;
    *out = v;
    return true;
}

onyx_status onyx_tensor_proto_read_external(const char *what, const char *base_dir,
                                            const struct Onnx__TensorProto *tp, void *dst,
                                            size_t nbytes, onyx_error *err)
{
    const char *tname = tp->name ? tp->name : "";
    int64_t offset = 0;
    int64_t length = -1;
    const char *so = external_entry(tp, "offset");
    const char *sl = external_entry(tp, "length");
    if ((so && !parse_i64(so, &offset)) || (sl && !parse_i64(sl, &length)))
        return onyx_err(err, ONYX_ERR_INVALID_MODEL,
                        "%s: tensor \"%s\": external data offset/length is not a number", what,
                        tname);
    const char *location = external_entry(tp, "location");
    if (base_dir == NULL)
        return onyx_err(err, ONYX_ERR_INVALID_ARG,
                        "%s: tensor \"%s\" has external data but the model was loaded from memory "
                        "without a base folder",
                        what, tname);
    if (location == NULL || location[0] == '\0')
        return onyx_err(err, ONYX_ERR_INVALID_MODEL,
                        "%s: tensor \"%s\" has external data without a location", what, tname);
    if (location[0] == '/' || strstr(location, "..") != NULL)
        return onyx_err(err, ONYX_ERR_INVALID_MODEL,
                        "%s: tensor \"%s\": external data path \"%s\" leaves the model's folder",
                        what, tname, location);
    if (length >= 0 && (size_t)length != nbytes)
        return onyx_err(err, ONYX_ERR_INVALID_MODEL,
                        "%s: tensor \"%s\": external data length %lld, expected %zu bytes", what,
                        tname, (long long)length, nbytes);
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", base_dir, location) >= (int)sizeof path)
        return onyx_err(err, ONYX_ERR_INVALID_MODEL, "%s: tensor \"%s\": external path too long",
                        what, tname);
    /* Resolve symlinks: the real file must still be inside the real model folder. */
    char real_dir[PATH_MAX];
    char real_file[PATH_MAX];
    if (realpath(base_dir, real_dir) == NULL || realpath(path, real_file) == NULL)
        return onyx_err(err, ONYX_ERR_IO, "%s: tensor \"%s\": cannot open external data %s: %s",
                        what, tname, path, strerror(errno));
    size_t dl = strlen(real_dir);
    if (strncmp(real_file, real_dir, dl) != 0 || (real_file[dl] != '/' && dl != 1))
        return onyx_err(err, ONYX_ERR_INVALID_MODEL,
                        "%s: tensor \"%s\": external data path \"%s\" leaves the model's folder",
                        what, tname, location);
    FILE *fp = fopen(real_file, "rb");
    if (fp == NULL)
        return onyx_err(err, ONYX_ERR_IO, "%s: tensor \"%s\": cannot open external data %s: %s",
                        what, tname, path, strerror(errno));
    struct stat sb;
    onyx_status st = ONYX_OK;
    if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = onyx_err(err, ONYX_ERR_IO, "%s: tensor \"%s\": external data %s is not a file", what,
                      tname, path);
    } else if (offset < 0 || (uint64_t)offset > (uint64_t)sb.st_size ||
               nbytes > (uint64_t)sb.st_size - (uint64_t)offset) {
        st = onyx_err(err, ONYX_ERR_INVALID_MODEL,
                      "%s: tensor \"%s\": external data %s has %lld bytes, expected %zu at offset "
                      "%lld",
                      what, tname, path, (long long)sb.st_size, nbytes, (long long)offset);
    } else if (fseeko(fp, (off_t)offset, SEEK_SET) != 0 || fread(dst, 1, nbytes, fp) != nbytes) {
        st = onyx_err(err, ONYX_ERR_IO, "%s: tensor \"%s\": cannot read external data %s", what,
                      tname, path);
    }
    fclose(fp);
    return st;
}

/* ---- rewriting a model ---------------------------------------------------------------------- */

/* onnx's external data format, as onnx.external_data_helper writes it: tensors of at least
 * EXT_MIN_BYTES (its size_threshold) go to the file, each at an offset aligned to EXT_ALIGN. */
#define EXT_MIN_BYTES ((size_t)1024)
#define EXT_ALIGN     ((uint64_t)4096)

/* A struct changed in place for packing, with its original bytes: restore_all() puts them back
 * before protobuf-c frees the message, so protobuf-c only ever frees what it allocated. */
typedef struct saved_struct {
    struct saved_struct *next;
    void *where;
    size_t size;
    unsigned char bytes[];
} saved_struct;

typedef struct rewriter {
    const char *what;     /* the public function, for messages */
    const char *base_dir; /* folder of the source's external data, or NULL */
    onyx_error *err;
    pool p;                  /* every allocation of the rewrite */
    saved_struct *saved;     /* most recent first */
    Onnx__TensorProto **big; /* initializers now holding >= EXT_MIN_BYTES of raw_data */
    size_t n_big;
    size_t cap_big;
} rewriter;

static onyx_status rw_nomem(rewriter *c)
{
    return onyx_err(c->err, ONYX_ERR_NOMEM, "%s: out of memory", c->what);
}

/* Remembers the size bytes at where, to be restored by restore_all. */
static onyx_status save_struct(rewriter *c, void *where, size_t size)
{
    saved_struct *s = pool_alloc(&c->p, 1, sizeof(*s) + size);
    if (s == NULL)
        return rw_nomem(c);
    s->where = where;
    s->size = size;
    memcpy(s->bytes, where, size);
    s->next = c->saved;
    c->saved = s;
    return ONYX_OK;
}

/* Newest first, so a struct saved twice ends up with its first (original) bytes. */
static void restore_all(rewriter *c)
{
    for (saved_struct *s = c->saved; s != NULL; s = s->next)
        memcpy(s->where, s->bytes, s->size);
    c->saved = NULL;
}

static void rewriter_fini(rewriter *c)
{
    restore_all(c);
    pool_free(&c->p);
}

/* Refuses bytes protobuf-c cannot unpack safely, then unpacks them; *out is freed with
 * onnx__model_proto__free_unpacked. */
static onyx_status unpack_model(const void *src, size_t size, const char *what,
                                Onnx__ModelProto **out, onyx_error *err)
{
    *out = NULL;
    if (src == NULL || size == 0)
        return onyx_err(err, src == NULL ? ONYX_ERR_INVALID_ARG : ONYX_ERR_INVALID_MODEL,
                        "%s: the source model is %s", what, src == NULL ? "NULL" : "empty");
    if (size > ONYX_MAX_FILE_SIZE)
        return onyx_err(err, ONYX_ERR_INVALID_MODEL,
                        "%s: the source model is %zu bytes, over protobuf's 2 GiB limit", what,
                        size);
    size_t offset;
    const char *why;
    if (!onyx_pb_wire_check(src, size, true, &offset, &why))
        return onyx_err(err, ONYX_ERR_INVALID_MODEL,
                        "%s: not a valid ONNX model (corrupt protobuf: %s at byte %zu)", what, why,
                        offset);
    Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, size, src);
    if (mp == NULL)
        return onyx_err(err, ONYX_ERR_INVALID_MODEL,
                        "%s: not a valid ONNX model (protobuf parsing failed)", what);
    if (mp->graph == NULL) {
        onnx__model_proto__free_unpacked(mp, NULL);
        return onyx_err(err, ONYX_ERR_INVALID_MODEL, "%s: the model has no graph", what);
    }
    *out = mp;
    return ONYX_OK;
}

/* Packs mp (get_packed_size said `size`) into a new malloc'd buffer. */
static onyx_status pack_model(const Onnx__ModelProto *mp, size_t size, const char *what, void **out,
                              size_t *out_size, onyx_error *err)
{
    uint8_t *buf = malloc(size ? size : 1);
    if (buf == NULL)
        return onyx_err(err, ONYX_ERR_NOMEM, "%s: out of memory for a model of %zu bytes", what,
                        size);
    size_t n = protobuf_c_message_pack(&mp->base, buf);
    if (n != size) {
        free(buf);
        return onyx_err(err, ONYX_ERR_INTERNAL, "%s: packed %zu bytes, expected %zu", what, n,
                        size);
    }
    *out = buf;
    *out_size = n;
    return ONYX_OK;
}

/* Makes tp hold nbytes of little-endian raw_data at data (borrowed until packing is done): the
 * typed fields and the external data fields go; name, dims, doc string and the rest stay. */
static void set_raw(Onnx__TensorProto *tp, void *data, size_t nbytes)
{
    tp->n_float_data = 0;
    tp->float_data = NULL;
    tp->n_int32_data = 0;
    tp->int32_data = NULL;
    tp->n_string_data = 0;
    tp->string_data = NULL;
    tp->n_int64_data = 0;
    tp->int64_data = NULL;
    tp->n_double_data = 0;
    tp->double_data = NULL;
    tp->n_uint64_data = 0;
    tp->uint64_data = NULL;
    tp->n_external_data = 0;
    tp->external_data = NULL;
    tp->has_data_location = 0;
    tp->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__DEFAULT;
    tp->has_raw_data = 1;
    tp->raw_data.len = nbytes;
    tp->raw_data.data = data;
}

static bool is_external(const Onnx__TensorProto *tp)
{
    return tp->has_data_location &&
           tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
}

/* "[2,3] float32" for messages (rank above ONYX_MAX_RANK: "rank N float32"). */
static char *proto_shape_str(const Onnx__TensorProto *tp, char *buf, size_t size)
{
    onyx_dtype dt =
        onyx_dtype_is_known(tp->data_type) ? (onyx_dtype)tp->data_type : ONYX_DTYPE_UNDEFINED;
    if (tp->n_dims > ONYX_MAX_RANK) {
        snprintf(buf, size, "rank %zu %s", tp->n_dims, onyx_dtype_name(dt));
        return buf;
    }
    onyx_tensor t;
    memset(&t, 0, sizeof(t));
    t.rank = (int)tp->n_dims;
    for (size_t i = 0; i < tp->n_dims; i++)
        t.dims[i] = tp->dims[i];
    char sh[128];
    snprintf(buf, size, "%s %s", onyx_shape_str(&t, sh, sizeof(sh)), onyx_dtype_name(dt));
    return buf;
}

/* Replaces the data of the named initializers of g. */
static onyx_status apply_updates(rewriter *c, Onnx__GraphProto *g,
                                 const onyx_initializer_update *updates, size_t n_updates)
{
    for (size_t k = 0; k < n_updates; k++) {
        const onyx_initializer_update *u = &updates[k];
        if (u->name == NULL || u->value == NULL)
            return onyx_err(c->err, ONYX_ERR_INVALID_ARG, "%s: update %zu has no %s", c->what, k,
                            u->name == NULL ? "name" : "value");
        for (size_t j = 0; j < k; j++)
            if (strcmp(updates[j].name, u->name) == 0)
                return onyx_err(c->err, ONYX_ERR_INVALID_ARG,
                                "%s: initializer \"%s\" is updated twice (updates %zu and %zu)",
                                c->what, u->name, j, k);
        Onnx__TensorProto *tp = NULL;
        for (size_t i = 0; i < g->n_initializer && tp == NULL; i++)
            if (g->initializer[i]->name && strcmp(g->initializer[i]->name, u->name) == 0)
                tp = g->initializer[i];
        if (tp == NULL)
            return onyx_err(c->err, ONYX_ERR_INVALID_ARG,
                            "%s: the model has no initializer \"%s\" to update", c->what, u->name);
        const onyx_tensor *v = u->value;
        bool same =
            (int32_t)v->dtype == tp->data_type && v->rank >= 0 && (size_t)v->rank == tp->n_dims;
        for (int i = 0; same && i < v->rank; i++)
            same = v->dims[i] == tp->dims[i];
        if (!same) {
            char have[160];
            char got[160];
            char sh[128];
            snprintf(got, sizeof(got), "%s %s",
                     v->rank >= 0 && v->rank <= ONYX_MAX_RANK ? onyx_shape_str(v, sh, sizeof(sh))
                                                              : "[?]",
                     onyx_dtype_name(v->dtype));
            return onyx_err(c->err, ONYX_ERR_SHAPE,
                            "%s: initializer \"%s\" is %s in the model, the update is %s", c->what,
                            u->name, proto_shape_str(tp, have, sizeof(have)), got);
        }
        if (v->dtype == ONYX_DTYPE_STRING || onyx_dtype_size(v->dtype) == 0)
            return onyx_err(c->err, ONYX_ERR_UNSUPPORTED,
                            "%s: initializer \"%s\" holds %s, which onyx cannot write", c->what,
                            u->name, onyx_dtype_name(v->dtype));
        int64_t numel;
        if (!onyx_shape_numel(v->dims, v->rank, onyx_dtype_size(v->dtype), &numel))
            return onyx_err(c->err, ONYX_ERR_SHAPE, "%s: initializer \"%s\" is too large", c->what,
                            u->name);
        size_t nbytes = (size_t)numel * onyx_dtype_size(v->dtype);
        if (nbytes > 0 && v->data == NULL)
            return onyx_err(c->err, ONYX_ERR_INVALID_ARG,
                            "%s: the update of initializer \"%s\" has no data", c->what, u->name);
        onyx_status st = save_struct(c, tp, sizeof(*tp));
        if (st != ONYX_OK)
            return st;
        set_raw(tp, v->data, nbytes); /* little-endian on the hosts onyx supports */
    }
    return ONYX_OK;
}

/* Reads tp's external data into memory and makes it raw_data: the result stands alone. */
static onyx_status internalize(rewriter *c, Onnx__TensorProto *tp)
{
    const char *tname = tp->name ? tp->name : "";
    size_t es = onyx_dtype_is_known(tp->data_type) ? onyx_dtype_size((onyx_dtype)tp->data_type) : 0;
    if (es == 0)
        return onyx_err(c->err, ONYX_ERR_UNSUPPORTED,
                        "%s: tensor \"%s\" has external data of data_type %d, which onyx cannot "
                        "read",
                        c->what, tname, (int)tp->data_type);
    int64_t numel;
    if (tp->n_dims > INT_MAX || !onyx_shape_numel(tp->dims, (int)tp->n_dims, es, &numel))
        return onyx_err(c->err, ONYX_ERR_INVALID_MODEL,
                        "%s: tensor \"%s\" has a negative or too large shape", c->what, tname);
    size_t nbytes = (size_t)numel * es;
    void *data = pool_alloc(&c->p, nbytes, 1);
    if (data == NULL)
        return onyx_err(c->err, ONYX_ERR_NOMEM, "%s: out of memory for tensor \"%s\" (%zu bytes)",
                        c->what, tname, nbytes);
    onyx_status st =
        onyx_tensor_proto_read_external(c->what, c->base_dir, tp, data, nbytes, c->err);
    if (st == ONYX_OK)
        st = save_struct(c, tp, sizeof(*tp));
    if (st == ONYX_OK)
        set_raw(tp, data, nbytes);
    return st;
}

static onyx_status walk_tensor(rewriter *c, Onnx__TensorProto *tp, bool initializer)
{
    if (tp == NULL)
        return ONYX_OK;
    if (is_external(tp)) {
        onyx_status st = internalize(c, tp);
        if (st != ONYX_OK)
            return st;
    }
    if (initializer && tp->has_raw_data && tp->raw_data.len >= EXT_MIN_BYTES) {
        if (c->n_big == c->cap_big) {
            size_t cap = c->cap_big ? 2 * c->cap_big : 64;
            Onnx__TensorProto **grown = pool_alloc(&c->p, cap, sizeof(*grown));
            if (grown == NULL)
                return rw_nomem(c);
            if (c->n_big)
                memcpy(grown, c->big, c->n_big * sizeof(*grown));
            c->big = grown;
            c->cap_big = cap;
        }
        c->big[c->n_big++] = tp;
    }
    return ONYX_OK;
}

static onyx_status walk_sparse(rewriter *c, Onnx__SparseTensorProto *sp)
{
    if (sp == NULL)
        return ONYX_OK;
    onyx_status st = walk_tensor(c, sp->values, false);
    return st != ONYX_OK ? st : walk_tensor(c, sp->indices, false);
}

static onyx_status walk_graph(rewriter *c, Onnx__GraphProto *g);

static onyx_status walk_attr(rewriter *c, Onnx__AttributeProto *a)
{
    onyx_status st = walk_tensor(c, a->t, false);
    for (size_t i = 0; st == ONYX_OK && i < a->n_tensors; i++)
        st = walk_tensor(c, a->tensors[i], false);
    if (st == ONYX_OK)
        st = walk_sparse(c, a->sparse_tensor);
    for (size_t i = 0; st == ONYX_OK && i < a->n_sparse_tensors; i++)
        st = walk_sparse(c, a->sparse_tensors[i]);
    if (st == ONYX_OK && a->g != NULL)
        st = walk_graph(c, a->g);
    for (size_t i = 0; st == ONYX_OK && i < a->n_graphs; i++)
        st = walk_graph(c, a->graphs[i]);
    return st;
}

static onyx_status walk_nodes(rewriter *c, Onnx__NodeProto **nodes, size_t n)
{
    onyx_status st = ONYX_OK;
    for (size_t i = 0; st == ONYX_OK && i < n; i++)
        for (size_t j = 0; st == ONYX_OK && j < nodes[i]->n_attribute; j++)
            st = walk_attr(c, nodes[i]->attribute[j]);
    return st;
}

/* Every tensor of g and of the graphs inside its nodes' attributes (nesting was bounded by the
 * wire check). */
static onyx_status walk_graph(rewriter *c, Onnx__GraphProto *g)
{
    onyx_status st = ONYX_OK;
    for (size_t i = 0; st == ONYX_OK && i < g->n_initializer; i++)
        st = walk_tensor(c, g->initializer[i], true);
    for (size_t i = 0; st == ONYX_OK && i < g->n_sparse_initializer; i++)
        st = walk_sparse(c, g->sparse_initializer[i]);
    return st != ONYX_OK ? st : walk_nodes(c, g->node, g->n_node);
}

static onyx_status walk_model(rewriter *c, Onnx__ModelProto *mp)
{
    onyx_status st = walk_graph(c, mp->graph);
    for (size_t i = 0; st == ONYX_OK && i < mp->n_functions; i++) {
        Onnx__FunctionProto *f = mp->functions[i];
        st = walk_nodes(c, f->node, f->n_node);
        for (size_t j = 0; st == ONYX_OK && j < f->n_attribute_proto; j++)
            st = walk_attr(c, f->attribute_proto[j]);
    }
    for (size_t i = 0; st == ONYX_OK && i < mp->n_training_info; i++) {
        Onnx__TrainingInfoProto *t = mp->training_info[i];
        if (t->initialization != NULL)
            st = walk_graph(c, t->initialization);
        if (st == ONYX_OK && t->algorithm != NULL)
            st = walk_graph(c, t->algorithm);
    }
    return st;
}

/* One tensor's bytes in the external data file. */
typedef struct ext_piece {
    const uint8_t *data;
    size_t len;
    uint64_t offset; /* a multiple of EXT_ALIGN */
} ext_piece;

typedef struct ext_file {
    const ext_piece *pieces;
    size_t n;
} ext_file;

static bool write_ext_pieces(FILE *f, void *ctx)
{
    static const uint8_t zeros[EXT_ALIGN];
    const ext_file *x = ctx;
    uint64_t pos = 0;
    for (size_t i = 0; i < x->n; i++) {
        const ext_piece *p = &x->pieces[i];
        while (pos < p->offset) {
            size_t pad = (size_t)(p->offset - pos < EXT_ALIGN ? p->offset - pos : EXT_ALIGN);
            if (fwrite(zeros, 1, pad, f) != pad)
                return false;
            pos += pad;
        }
        if (p->len > 0 && fwrite(p->data, 1, p->len, f) != p->len)
            return false;
        pos += p->len;
    }
    return true;
}

static char *pool_str(pool *p, const char *s)
{
    char *d = s != NULL ? pool_alloc(p, strlen(s) + 1, 1) : NULL;
    if (d != NULL)
        strcpy(d, s);
    return d;
}

static Onnx__StringStringEntryProto *new_entry(pool *p, const char *key, const char *value)
{
    Onnx__StringStringEntryProto *e = pool_alloc(p, 1, sizeof(*e));
    if (e == NULL)
        return NULL;
    onnx__string_string_entry_proto__init(e);
    e->key = pool_str(p, key);
    e->value = pool_str(p, value);
    return e->key != NULL && e->value != NULL ? e : NULL;
}

/* The model packs to *size > max_inline bytes: moves the large initializers (c->big) to the
 * file ext_path, as onnx's external data format says, and sets *size to the new packed size. */
static onyx_status externalize(rewriter *c, Onnx__ModelProto *mp, const char *ext_path,
                               size_t max_inline, size_t *size)
{
    const char *slash = strrchr(ext_path, '/');
    const char *location = slash != NULL ? slash + 1 : ext_path;
    if (location[0] == '\0' || strcmp(location, ".") == 0 || strcmp(location, "..") == 0)
        return onyx_err(c->err, ONYX_ERR_INVALID_ARG,
                        "%s: external data path \"%s\" does not name a file", c->what, ext_path);
    ext_piece *pieces = pool_alloc(&c->p, c->n_big, sizeof(*pieces));
    Onnx__StringStringEntryProto **entries = pool_alloc(&c->p, 3 * c->n_big, sizeof(*entries));
    if (pieces == NULL || entries == NULL)
        return rw_nomem(c);
    uint64_t end = 0;
    for (size_t i = 0; i < c->n_big; i++) {
        Onnx__TensorProto *tp = c->big[i];
        ext_piece *p = &pieces[i];
        p->data = tp->raw_data.data;
        p->len = tp->raw_data.len;
        p->offset = (end + EXT_ALIGN - 1) / EXT_ALIGN * EXT_ALIGN;
        end = p->offset + p->len;
        char offset[32];
        char length[32];
        snprintf(offset, sizeof(offset), "%llu", (unsigned long long)p->offset);
        snprintf(length, sizeof(length), "%zu", p->len);
        Onnx__StringStringEntryProto **e = &entries[3 * i];
        e[0] = new_entry(&c->p, "location", location);
        e[1] = new_entry(&c->p, "offset", offset);
        e[2] = new_entry(&c->p, "length", length);
        if (e[0] == NULL || e[1] == NULL || e[2] == NULL)
            return rw_nomem(c);
        onyx_status st = save_struct(c, tp, sizeof(*tp));
        if (st != ONYX_OK)
            return st;
        tp->has_raw_data = 0;
        tp->raw_data.len = 0;
        tp->raw_data.data = NULL;
        tp->n_external_data = 3;
        tp->external_data = e;
        tp->has_data_location = 1;
        tp->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    }
    size_t inline_size = protobuf_c_message_get_packed_size(&mp->base);
    if (inline_size > max_inline)
        return onyx_err(c->err, ONYX_ERR_INVALID_ARG,
                        "%s: the model is too large to store inline even with its %zu initializers "
                        "of %zu bytes or more in %s: %zu bytes, over the limit of %zu",
                        c->what, c->n_big, EXT_MIN_BYTES, ext_path, inline_size, max_inline);
    ext_file x = {pieces, c->n_big};
    onyx_status st = onyx_write_file_atomic(ext_path, write_ext_pieces, &x, c->err);
    if (st == ONYX_OK)
        *size = inline_size;
    return st;
}

onyx_status onyx_model_rewrite_limit(const void *src, size_t src_size, const char *base_dir,
                                     const onyx_initializer_update *updates, size_t n_updates,
                                     const char *ext_path, size_t max_inline, void **out,
                                     size_t *out_size, onyx_error *err)
{
    static const char what[] = "onyx_model_rewrite";
    if (out == NULL || out_size == NULL)
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "%s: %s is NULL", what,
                        out == NULL ? "out" : "out_size");
    *out = NULL;
    *out_size = 0;
    if (updates == NULL && n_updates > 0)
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "%s: updates is NULL", what);
    Onnx__ModelProto *mp;
    onyx_status st = unpack_model(src, src_size, what, &mp, err);
    if (st != ONYX_OK)
        return st;

    rewriter c;
    memset(&c, 0, sizeof(c));
    c.what = what;
    c.base_dir = base_dir;
    c.err = err;
    st = apply_updates(&c, mp->graph, updates, n_updates);
    if (st == ONYX_OK)
        st = walk_model(&c, mp);
    size_t size = 0;
    if (st == ONYX_OK) {
        size = protobuf_c_message_get_packed_size(&mp->base);
        if (size > max_inline && ext_path == NULL)
            st = onyx_err(err, ONYX_ERR_INVALID_ARG,
                          "%s: the model would be %zu bytes, over the limit of %zu for a protobuf "
                          "message: too large to store inline (give a file for external data)",
                          what, size, max_inline);
        else if (size > max_inline)
            st = externalize(&c, mp, ext_path, max_inline, &size);
    }
    if (st == ONYX_OK)
        st = pack_model(mp, size, what, out, out_size, err);
    rewriter_fini(&c);
    onnx__model_proto__free_unpacked(mp, NULL);
    return st;
}

onyx_status onyx_model_rewrite(const void *src, size_t src_size, const char *base_dir,
                               const onyx_initializer_update *updates, size_t n_updates,
                               const char *ext_path, void **out, size_t *out_size, onyx_error *err)
{
    return onyx_model_rewrite_limit(src, src_size, base_dir, updates, n_updates, ext_path,
                                    ONYX_MAX_FILE_SIZE, out, out_size, err);
}

/* ---- inserting Dropout ---------------------------------------------------------------------- */

/* Hidden activations after which --add-dropout puts a Dropout (torch.nn.Dropout's usual place). */
static const char *const HIDDEN_ACTS[] = {"Relu",     "LeakyRelu",   "Tanh",      "Sigmoid",
                                          "Gelu",     "Elu",         "Selu",      "Celu",
                                          "Softplus", "HardSigmoid", "HardSwish", "PRelu"};

static bool default_domain(const char *d)
{
    return d == NULL || d[0] == '\0' || strcmp(d, "ai.onnx") == 0;
}

static bool is_op(const Onnx__NodeProto *n, const char *op_type)
{
    return n->op_type != NULL && strcmp(n->op_type, op_type) == 0 && default_domain(n->domain);
}

static bool is_hidden_act(const Onnx__NodeProto *n)
{
    for (size_t i = 0; i < sizeof(HIDDEN_ACTS) / sizeof(HIDDEN_ACTS[0]); i++)
        if (is_op(n, HIDDEN_ACTS[i]))
            return n->n_output >= 1 && n->output[0] != NULL && n->output[0][0] != '\0';
    return false;
}

/* Some Gemm or MatMul of g reads the value called name. */
static bool feeds_dense(const Onnx__GraphProto *g, const char *name)
{
    for (size_t i = 0; i < g->n_node; i++) {
        const Onnx__NodeProto *n = g->node[i];
        if (!is_op(n, "Gemm") && !is_op(n, "MatMul"))
            continue;
        for (size_t j = 0; j < n->n_input; j++)
            if (n->input[j] != NULL && strcmp(n->input[j], name) == 0)
                return true;
    }
    return false;
}

/* Every node and value name of the top graph, to make new names unique. */
typedef struct name_set {
    const char **names;
    size_t n;
    size_t cap;
} name_set;

static bool names_add(pool *p, name_set *s, const char *name)
{
    if (name == NULL || name[0] == '\0')
        return true;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 256;
        const char **grown = pool_alloc(p, cap, sizeof(*grown));
        if (grown == NULL)
            return false;
        if (s->n)
            memcpy(grown, s->names, s->n * sizeof(*grown));
        s->names = grown;
        s->cap = cap;
    }
    s->names[s->n++] = name;
    return true;
}

static bool names_has(const name_set *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->names[i], name) == 0)
            return true;
    return false;
}

static bool names_collect(pool *p, name_set *s, const Onnx__GraphProto *g)
{
    bool ok = true;
    for (size_t i = 0; i < g->n_node; i++) {
        const Onnx__NodeProto *n = g->node[i];
        ok = ok && names_add(p, s, n->name);
        for (size_t j = 0; j < n->n_input; j++)
            ok = ok && names_add(p, s, n->input[j]);
        for (size_t j = 0; j < n->n_output; j++)
            ok = ok && names_add(p, s, n->output[j]);
    }
    for (size_t i = 0; i < g->n_initializer; i++)
        ok = ok && names_add(p, s, g->initializer[i]->name);
    for (size_t i = 0; i < g->n_input; i++)
        ok = ok && names_add(p, s, g->input[i]->name);
    for (size_t i = 0; i < g->n_output; i++)
        ok = ok && names_add(p, s, g->output[i]->name);
    for (size_t i = 0; i < g->n_value_info; i++)
        ok = ok && names_add(p, s, g->value_info[i]->name);
    return ok;
}

/* base, or base_1, base_2, ... when taken; the result is added to s. NULL when out of memory. */
static char *unique_name(pool *p, name_set *s, const char *base)
{
    size_t len = strlen(base) + 24;
    char *name = pool_alloc(p, len, 1);
    if (name == NULL)
        return NULL;
    snprintf(name, len, "%s", base);
    for (unsigned long k = 1; names_has(s, name); k++)
        snprintf(name, len, "%s_%lu", base, k);
    return names_add(p, s, name) ? name : NULL;
}

/* A Dropout in its opset-12 form: data and ratio, no training_mode (so inference by default). */
static Onnx__NodeProto *new_dropout(rewriter *c, name_set *names, const Onnx__NodeProto *act,
                                    const char *ratio)
{
    const char *act_name = act->name != NULL && act->name[0] != '\0' ? act->name : act->output[0];
    size_t len = strlen(act_name) + 16;
    char *base = pool_alloc(&c->p, len, 1);
    if (base == NULL)
        return NULL;
    snprintf(base, len, "%s/dropout", act_name);
    char *name = unique_name(&c->p, names, base);
    if (name == NULL)
        return NULL;
    len = strlen(name) + 16;
    char *out_base = pool_alloc(&c->p, len, 1);
    if (out_base == NULL)
        return NULL;
    snprintf(out_base, len, "%s_output_0", name);
    char *out = unique_name(&c->p, names, out_base);
    Onnx__NodeProto *n = new_node(&c->p, name, "Dropout", 2, act->output[0], ratio, NULL, out);
    if (n == NULL)
        return NULL;
    n->doc_string = (char *)"inserted by onyx_model_add_dropout (onyx train --add-dropout)";
    return n;
}

/* Points every input of g's nodes (the Dropouts excepted) that reads from[i] at to[i]. */
static onyx_status rewire(rewriter *c, Onnx__NodeProto **nodes, size_t n_nodes,
                          const char *const *from, char *const *to, size_t n_map)
{
    for (size_t i = 0; i < n_nodes; i++) {
        Onnx__NodeProto *n = nodes[i];
        char **input = NULL;
        for (size_t j = 0; j < n->n_input; j++) {
            for (size_t k = 0; k < n_map && n->input[j] != NULL; k++) {
                if (strcmp(n->input[j], from[k]) != 0)
                    continue;
                if (input == NULL) {
                    onyx_status st = save_struct(c, n, sizeof(*n));
                    input = pool_alloc(&c->p, n->n_input, sizeof(*input));
                    if (st != ONYX_OK || input == NULL)
                        return rw_nomem(c);
                    memcpy(input, n->input, n->n_input * sizeof(*input));
                }
                input[j] = to[k];
                break;
            }
        }
        if (input != NULL)
            n->input = input;
    }
    return ONYX_OK;
}

/* Inserts the Dropouts into mp's graph; *n_inserted is how many. */
static onyx_status insert_dropouts(rewriter *c, Onnx__ModelProto *mp, float ratio, int *n_inserted)
{
    Onnx__GraphProto *g = mp->graph;
    size_t n_new = 0;
    for (size_t i = 0; i < g->n_node; i++)
        if (is_hidden_act(g->node[i]) && feeds_dense(g, g->node[i]->output[0]))
            n_new++;
    *n_inserted = 0;
    if (n_new == 0)
        return ONYX_OK;
    if (n_new > INT_MAX)
        return onyx_err(c->err, ONYX_ERR_UNSUPPORTED, "%s: too many nodes", c->what);

    name_set names = {NULL, 0, 0};
    if (!names_collect(&c->p, &names, g))
        return rw_nomem(c);
    /* one scalar ratio shared by every Dropout */
    Onnx__TensorProto *r = new_tensor(&c->p, unique_name(&c->p, &names, "dropout_ratio"), 0, 0, 0);
    Onnx__NodeProto **nodes = pool_alloc(&c->p, g->n_node + n_new, sizeof(*nodes));
    Onnx__TensorProto **inits = pool_alloc(&c->p, g->n_initializer + 1, sizeof(*inits));
    const char **from = pool_alloc(&c->p, n_new, sizeof(*from));
    char **to = pool_alloc(&c->p, n_new, sizeof(*to));
    if (r == NULL || r->name == NULL || nodes == NULL || inits == NULL || from == NULL ||
        to == NULL)
        return rw_nomem(c);
    memcpy(r->raw_data.data, &ratio, sizeof(ratio)); /* little-endian float */

    size_t k = 0;
    size_t n_nodes = 0;
    for (size_t i = 0; i < g->n_node; i++) {
        Onnx__NodeProto *act = g->node[i];
        nodes[n_nodes++] = act;
        if (!is_hidden_act(act) || !feeds_dense(g, act->output[0]))
            continue;
        Onnx__NodeProto *d = new_dropout(c, &names, act, r->name);
        if (d == NULL)
            return rw_nomem(c);
        nodes[n_nodes++] = d;
        from[k] = act->output[0];
        to[k] = d->output[0];
        k++;
    }
    onyx_status st = rewire(c, g->node, g->n_node, from, to, k);
    if (st != ONYX_OK)
        return st;
    if (g->n_initializer)
        memcpy(inits, g->initializer, g->n_initializer * sizeof(*inits));
    inits[g->n_initializer] = r;
    st = save_struct(c, g, sizeof(*g));
    if (st != ONYX_OK)
        return st;
    g->node = nodes;
    g->n_node = n_nodes;
    g->initializer = inits;
    g->n_initializer++;
    *n_inserted = (int)k;
    return ONYX_OK;
}

onyx_status onyx_model_add_dropout(const void *src, size_t src_size, float ratio, void **out,
                                   size_t *out_size, int *n_inserted, onyx_error *err)
{
    static const char what[] = "onyx_model_add_dropout";
    if (out == NULL || out_size == NULL || n_inserted == NULL)
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "%s: %s is NULL", what,
                        out == NULL        ? "out"
                        : out_size == NULL ? "out_size"
                                           : "n_inserted");
    *out = NULL;
    *out_size = 0;
    *n_inserted = 0;
    if (!(ratio >= 0.0f && ratio < 1.0f))
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "%s: dropout ratio %g is outside [0, 1)", what,
                        (double)ratio);
    Onnx__ModelProto *mp;
    onyx_status st = unpack_model(src, src_size, what, &mp, err);
    if (st != ONYX_OK)
        return st;
    int64_t opset = -1;
    for (size_t i = 0; i < mp->n_opset_import; i++)
        if (default_domain(mp->opset_import[i]->domain))
            opset = mp->opset_import[i]->version;
    if (opset < 12) {
        st = opset < 0 ? onyx_err(err, ONYX_ERR_INVALID_MODEL,
                                  "%s: the model imports no opset of the default domain", what)
                       : onyx_err(err, ONYX_ERR_UNSUPPORTED,
                                  "%s: the model imports opset %lld of the default domain; "
                                  "Dropout with a ratio input needs opset 12 or later",
                                  what, (long long)opset);
        onnx__model_proto__free_unpacked(mp, NULL);
        return st;
    }

    rewriter c;
    memset(&c, 0, sizeof(c));
    c.what = what;
    c.err = err;
    int n = 0;
    st = insert_dropouts(&c, mp, ratio, &n);
    size_t size = st == ONYX_OK ? protobuf_c_message_get_packed_size(&mp->base) : 0;
    if (st == ONYX_OK && size > ONYX_MAX_FILE_SIZE)
        st = onyx_err(err, ONYX_ERR_INVALID_ARG,
                      "%s: with the Dropouts the model would be %zu bytes, over protobuf's 2 GiB "
                      "limit",
                      what, size);
    if (st == ONYX_OK)
        st = pack_model(mp, size, what, out, out_size, err);
    if (st == ONYX_OK)
        *n_inserted = n;
    rewriter_fini(&c);
    onnx__model_proto__free_unpacked(mp, NULL);
    return st;
}
