/*
 * model_write.c — writing ONNX protobuf files: a tensor as a TensorProto (onyx_tensor_write_pb)
 * and a fresh multi-layer perceptron as a ModelProto (onyx_mlp_write).
 *
 * Messages are built from protobuf-c's generated structs pointing at our own memory (a pool
 * freed in one go), then streamed to the file by protobuf_c_message_pack_to_buffer, so large
 * weights are never copied a second time. Files are written through onyx_write_file_atomic
 * (temporary file + rename): a failure never leaves half a file behind.
 */
#include "internal.h"
#include "onnx.pb-c.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Defined in tensor_io.c (declared here because internal.h does not declare it yet). */

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
