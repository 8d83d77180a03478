/*
 * internal.h — structs and helpers shared by runtime/ and ops/. Not installed.
 *
 * The IR: a model is a flat array of values (every tensor name in the graph) and a
 * topologically sorted array of nodes whose inputs and outputs are indices into it.
 * Nothing here depends on protobuf: runtime/model.c translates ModelProto into this IR.
 */
#ifndef ONYX_INTERNAL_H
#define ONYX_INTERNAL_H

#include "onyx.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define ONYX_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define ONYX_PRINTF(fmt, args)
#endif

/* Limits that keep hostile models from costing unbounded time or memory. */
#define ONYX_MAX_NESTING 64               /* graphs/types nested inside each other */
#define ONYX_MAX_FILE_SIZE ((size_t)2147483647) /* protobuf's own 2 GiB limit */
#define ONYX_MAX_TENSOR_BYTES ((int64_t)1 << 40) /* no single tensor above 1 TiB */

/* ---- errors (runtime/error.c) ------------------------------------------------------------- */

/* Sets err (may be NULL) to code and a printf-formatted message; returns code. */
onyx_status onyx_err(onyx_error *err, onyx_status code, const char *fmt, ...) ONYX_PRINTF(3, 4);
onyx_status onyx_verr(onyx_error *err, onyx_status code, const char *fmt, va_list ap);

/* ---- sizes and dtypes (runtime/tensor.c) --------------------------------------------------- */

/* *out = a * b; false on overflow (or a negative operand). */
bool onyx_mul_size(size_t a, size_t b, size_t *out);
/* Checked element count of dims[rank]; false when a dim is negative or the count overflows or
 * the byte size of an element of elem_size would exceed ONYX_MAX_TENSOR_BYTES. */
bool onyx_shape_numel(const int64_t *dims, int rank, size_t elem_size, int64_t *numel);
/* Overflow-checked calloc(n, size). */
void *onyx_calloc(size_t n, size_t size);
char *onyx_strdup(const char *s);
/* Formats a shape as "[2,3,N]" (unknown dims as '?') into buf; returns buf. */
char *onyx_shape_str(const onyx_tensor *t, char *buf, size_t size);
bool onyx_dtype_is_float(onyx_dtype dt);   /* F32 F64 F16 BF16 */
bool onyx_dtype_is_int(onyx_dtype dt);     /* signed or unsigned integers (not BOOL) */
bool onyx_dtype_is_signed(onyx_dtype dt);  /* signed integers and floats */
bool onyx_dtype_is_known(int32_t v);       /* a value onyx can hold in a tensor */

/* Element i of a buffer of dtype dt, converted (numpy's rules: floats truncate toward zero when
 * stored to integers, integers wrap modulo 2^bits, BOOL is x != 0). */
double onyx_load_f64(onyx_dtype dt, const void *p, int64_t i);
int64_t onyx_load_i64(onyx_dtype dt, const void *p, int64_t i);
void onyx_store_f64(onyx_dtype dt, void *p, int64_t i, double v);
void onyx_store_i64(onyx_dtype dt, void *p, int64_t i, int64_t v);
float onyx_f16_to_f32(uint16_t h);
uint16_t onyx_f32_to_f16(float f);
float onyx_bf16_to_f32(uint16_t h);
uint16_t onyx_f32_to_bf16(float f);

/* True when all dims are known (rank >= 0 and no dim < 0). */
bool onyx_shape_known(const onyx_tensor *t);
bool onyx_shape_equal(const onyx_tensor *a, const onyx_tensor *b);
int64_t onyx_numel(const onyx_tensor *t); /* dims must be known */
size_t onyx_nbytes(const onyx_tensor *t); /* dims must be known */

/* Copies caller options (whose first field is their size_t size) over dst, which holds the
 * defaults: fields the caller's older struct lacks keep them. False when size is 0 (the _init
 * function was not called) or larger than dst_size (built against a newer onyx.h). */
bool onyx_options_copy(void *dst, size_t dst_size, const void *src);

/* ---- random numbers (runtime/rng.c) ------------------------------------------------------- */

/* MT19937 exactly as numpy's legacy RandomState: seed with init_genrand(seed), doubles with
 * 53 bits ((a>>5)*67108864 + (b>>6)) / 2^53. Used where bit-exact agreement with the ONNX
 * reference matters (Dropout with a `seed` attribute). */
typedef struct onyx_mt19937 {
    uint32_t key[624];
    int pos;
} onyx_mt19937;
void onyx_mt_seed(onyx_mt19937 *mt, uint32_t seed);
uint32_t onyx_mt_u32(onyx_mt19937 *mt);
double onyx_mt_double(onyx_mt19937 *mt);

/* The session's fast generator (xoshiro256**, seeded through splitmix64). Its whole state is
 * these four words, so checkpoints can save and restore it exactly. */
typedef struct onyx_rng {
    uint64_t s[4];
} onyx_rng;
void onyx_rng_seed(onyx_rng *r, uint64_t seed);
uint64_t onyx_rng_u64(onyx_rng *r);
double onyx_rng_double(onyx_rng *r); /* uniform in [0, 1), 53 bits */
float onyx_rng_float(onyx_rng *r);   /* uniform in [0, 1), 24 bits */
/* keep[i] = (u_i >= p) for the next n draws u_i of onyx_rng_double (the same draws, the same
 * decisions), p in [0, 1]: Dropout's mask, with the generator's state kept in registers. */
void onyx_rng_keep(onyx_rng *r, double p, uint8_t *keep, int64_t n);

/* ---- the IR ------------------------------------------------------------------------------- */

/* Attribute types: ONNX's AttributeProto.AttributeType values. */
typedef enum onyx_attr_type {
    ONYX_ATTR_UNDEFINED = 0,
    ONYX_ATTR_FLOAT = 1,
    ONYX_ATTR_INT = 2,
    ONYX_ATTR_STRING = 3,
    ONYX_ATTR_TENSOR = 4,
    ONYX_ATTR_GRAPH = 5,
    ONYX_ATTR_FLOATS = 6,
    ONYX_ATTR_INTS = 7,
    ONYX_ATTR_STRINGS = 8,
    ONYX_ATTR_TENSORS = 9,
    ONYX_ATTR_GRAPHS = 10,
    ONYX_ATTR_SPARSE_TENSOR = 11,
    ONYX_ATTR_SPARSE_TENSORS = 12,
    ONYX_ATTR_TYPE_PROTO = 13,
    ONYX_ATTR_TYPE_PROTOS = 14
} onyx_attr_type;

/* One attribute of a node. All memory is owned by the model. */
typedef struct onyx_attr {
    char *name;
    onyx_attr_type type;
    float f;
    int64_t i;
    char *s; /* STRING: NUL-terminated copy (s_len bytes before the NUL) */
    size_t s_len;
    float *floats; /* FLOATS */
    int64_t *ints; /* INTS */
    char **strings; /* STRINGS */
    size_t n;       /* element count of floats/ints/strings */
    onyx_tensor t;  /* TENSOR: dims, dtype and data (owned by the model) */
} onyx_attr;

typedef enum onyx_value_kind {
    ONYX_VALUE_NODE = 0,    /* produced by a node */
    ONYX_VALUE_INPUT,       /* a graph input fed at run time */
    ONYX_VALUE_INITIALIZER, /* a constant of the model (may be overridden when also an input) */
} onyx_value_kind;

/* One named tensor of the graph. */
typedef struct onyx_value {
    char *name;
    onyx_value_kind kind;
    /* Static type and shape: rank -1 = unknown, dims[i] -1 = symbolic or unknown.
     * data is set for initializers (into the model's arena) and for values that static shape
     * inference could fold to constants (small shape-computing chains); else NULL. */
    onyx_tensor info;
    char *dim_params[ONYX_MAX_RANK]; /* symbolic names of graph inputs/outputs, or NULL */
    onyx_tensor decl;                /* a graph output's declared type (rank -1: none) */
    int producer;                    /* node index, or -1 */
    bool is_graph_input;             /* declared in GraphProto.input */
    bool is_graph_output;
} onyx_value;

struct onyx_op_impl;

typedef struct onyx_node {
    char *name;    /* never NULL; "" when the model gave none */
    char *op_type;
    char *domain;  /* "" for the default domain */
    int64_t opset; /* the opset version imported for the node's domain */
    int n_in;
    int n_out;
    int *in;  /* value indices; -1 for an omitted optional input */
    int *out; /* value indices; -1 for an omitted optional output */
    int n_attr;
    onyx_attr *attr;
    const struct onyx_op_impl *impl;
    void *priv; /* the op's parsed attributes, set by impl->init; read-only afterwards */
} onyx_node;

struct onyx_model {
    char *name; /* the file path, or the name given to load_buffer */
    int64_t ir_version;
    char *producer;
    char *producer_version;
    int n_opsets;
    char **opset_domain;
    int64_t *opset_version;

    int n_values;
    onyx_value *values;
    int n_nodes;
    onyx_node *nodes; /* topologically sorted */
    int n_inputs;     /* graph inputs that must be fed */
    int *inputs;
    int n_outputs;
    int *outputs;
    int n_initializers;

    void *arena; /* all initializer data, 64-byte aligned pieces */
    size_t arena_size;
    bool *node_const; /* node i was computed at load time: its outputs' info.data hold the result */
    int max_in;       /* largest node arity, for scratch arrays */
    int max_out;
};

/* ---- operators (ops/registry.c, ops/<family>.c) ------------------------------------------- */

/* What a kernel may use while it runs. Owned by the session. */
typedef struct onyx_kctx {
    onyx_mode mode;
    onyx_rng *rng; /* the session's generator (Dropout without a seed attribute) */
    /* Training steps only (NULL otherwise): impl->saved_size bytes that forward fills with what
     * backward needs and cannot recompute (Dropout's mask), kept from forward to backward. */
    void *saved;
    /* impl->scratch_size bytes of temporary memory for this call of forward or backward (NULL
     * when the op declares none); contents are not kept between calls. */
    void *scratch;
    /* Graph-level ops only (ONYX_OPF_GRAPH): the running session, and where to report the one
     * kind of failure such an op can meet at run time (the session checks it after forward). */
    struct onyx_session *session;
    onyx_error *err;
    /* The session's thread pool for GEMMs and large loops (NULL: this thread only). */
    struct onyx_pool *pool;
    /* Backward only, for ops with ONYX_OPF_GRAD_FRESH: bit i set = din[i] holds no gradient yet
     * (its contents are undefined), so backward must write it rather than accumulate, as if it
     * were zero: the trainer then never zeroes the gradient buffers of the weights. */
    uint32_t grad_fresh;
    /* Inference runs only (NULL otherwise): the node's constant input that impl->pack_size
     * accepted, packed once by impl->pack into session memory. forward uses it instead of that
     * input's data when it is not NULL (the input's tensor is still passed, shape and data). */
    const void *packed;
    /* Inference runs only (ONYX_FUSE_NONE and NULL otherwise): nodes right after this one that
     * read only its first output (a chain), which forward computes too: out[0] is then the
     * last one's output (same shape and dtype, float32), and forward writes into it
     * act(result + fuse_bias), bit-identical to running the nodes. fuse: the activation
     * (ONYX_FUSE_*, ops with ONYX_OPF_FUSE_ACT only), with its parameters fuse_alpha and
     * fuse_beta; fuse_bias: an Add's bias row, N floats (N = out[0]'s last dim) added to every
     * row of the result before the activation (ops with ONYX_OPF_FUSE_BIAS only), or NULL. */
    int fuse;
    float fuse_alpha;
    float fuse_beta;
    const float *fuse_bias;
} onyx_kctx;

/* Values of onyx_kctx.fuse: the float32 activations a fused Gemm or MatMul applies to its result
 * (formulas: ops/activation.h) and the meaning of fuse_alpha and fuse_beta for each. */
enum {
    ONYX_FUSE_NONE = 0,
    ONYX_FUSE_RELU = 1,
    ONYX_FUSE_LEAKYRELU,   /* alpha */
    ONYX_FUSE_SIGMOID,
    ONYX_FUSE_TANH,
    ONYX_FUSE_GELU,        /* Gelu, approximate "none" */
    ONYX_FUSE_GELU_TANH,   /* Gelu, approximate "tanh" */
    ONYX_FUSE_HARDSIGMOID, /* alpha, beta */
    ONYX_FUSE_HARDSWISH,
    ONYX_FUSE_CLIP,        /* alpha = min, beta = max (-inf, +inf when omitted) */
};
/* (ops/activation.c) The ONYX_FUSE_* kind node n computes on float32, or ONYX_FUSE_NONE when it
 * is no activation a GEMM can apply. in NULL: from the node alone (at session creation), with
 * *alpha and *beta untouched. Else in holds the node's inputs as they are for a run (shapes and
 * data; X float32): sets *alpha and *beta too (Clip reads its min and max there). */
int onyx_act_fusable(const onyx_node *n, const onyx_tensor *in, float *alpha, float *beta);

enum {
    ONYX_OPF_SHAPE_ONLY = 1u << 0, /* forward reads only the inputs' dims, never their data */
    ONYX_OPF_RANDOM = 1u << 1,     /* forward may draw random numbers: never constant-folded */
    ONYX_OPF_MODE = 1u << 2,       /* forward depends on the session mode: never constant-folded */
    /* A graph-level op (Gradient): works on the session (ctx->session), may fail (ctx->err), and
     * reads the value named by its string attribute "y", which graph.c appends to its inputs so
     * that it runs after y is computed. */
    ONYX_OPF_GRAPH = 1u << 3,
    /* A custom op (runtime/plugin.c): never constant-folded, whatever its inputs. */
    ONYX_OPF_CUSTOM = 1u << 4,
    /* backward honours ctx->grad_fresh (writes fresh gradients instead of accumulating). */
    ONYX_OPF_GRAD_FRESH = 1u << 6,
    /* forward can apply a following activation itself (onyx_kctx.fuse) for float32 outputs. */
    ONYX_OPF_FUSE_ACT = 1u << 5,
    /* forward can add a following Add's bias row itself (onyx_kctx.fuse_bias), float32. */
    ONYX_OPF_FUSE_BIAS = 1u << 7,
};

/*
 * How an op is implemented. One impl may serve several ops (all unary maths share one), telling
 * them apart by node->op_type in init.
 *
 *  init:     parse and check attributes and the input/output counts; store what forward needs
 *            in node->priv (malloc'd, freed by fini or by free() when fini is NULL).
 *            Errors name the node (onyx_node_err). May be NULL.
 *  infer:    from the inputs' dtypes and shapes (and their data, when in[i].data is not NULL),
 *            set every present output's dtype, rank and dims. Called at load time with partial
 *            knowledge (rank -1 or dims -1 = unknown, data NULL) and then must leave unknown
 *            what it cannot know; called before each run with everything known, when it must
 *            set every dim and reject anything that does not fit. An omitted optional input has
 *            dtype ONYX_DTYPE_UNDEFINED; an omitted output has dtype UNDEFINED and must be left
 *            alone.
 *  forward:  compute. Cannot fail: everything that could fail was checked by init and infer.
 *            Outputs are distinct buffers from the inputs; inputs must not be written.
 *            When ctx->saved is not NULL (a training step), also store there what backward needs.
 *  backward: reverse-mode gradient, after forward of the same step: in/out are the forward's
 *            tensors (still intact), dout[j] the gradient of the loss w.r.t. output j (same
 *            shape as out[j]; data NULL when no gradient flows into that output: treat as zero),
 *            din[i] the gradient w.r.t. input i (same shape as in[i]), to ACCUMULATE into (+=):
 *            the caller zeroes it (or, for ops with ONYX_OPF_GRAD_FRESH, sets bit i of
 *            ctx->grad_fresh instead, and backward writes din[i] as if it held zeros). din[i].data is NULL when input i needs no gradient. Gradients
 *            are float32 (training refuses other parameter types). Cannot fail. NULL when the op
 *            has no gradient: a graph that needs one is refused when training starts.
 *  grad_inputs: bit i set = input i is differentiable (gets a gradient when it needs one). Inputs
 *            without the bit (shapes, indices, Dropout's ratio, BatchNorm's running statistics)
 *            never get one, and initializers feeding only such inputs are not trained.
 *  saved_size: bytes forward must keep for backward in a training step (see ctx->saved), for
 *            the shapes infer just set; NULL = none.
 *  scratch_size: bytes of temporary memory forward and backward need (ctx->scratch); NULL = none.
 *  pack_size: bytes to pre-pack input i, a constant of the model (an initializer that is not a
 *            graph input and not bound to a trainer's memory) whose tensor is w (data set), into
 *            the layout forward reads fastest; 0 = input i is not packed. Asked in inference
 *            sessions only (weights change every training step), at the first run, for each
 *            constant input in order: the first nonzero answer wins (one packed input per node).
 *            The packed copy costs that much session memory for the session's lifetime.
 *            NULL = the op packs nothing.
 *  pack:     writes the packed form of input i (tensor w) into dst (pack_size bytes, 64-byte
 *            aligned). forward then gets it in ctx->packed.
 *  update_state: after a training step's forward, writes the new value of the op's stateful
 *            inputs (BatchNormalization's running mean and variance, from what forward saved in
 *            ctx->saved): state[i].data is a writable buffer shaped like in[i] when input i is
 *            state the trainer keeps, else NULL. NULL = the op has no state.
 */
typedef struct onyx_op_impl {
    onyx_status (*init)(onyx_node *n, onyx_error *err);
    onyx_status (*infer)(const onyx_node *n, const onyx_tensor *in, onyx_tensor *out,
                         onyx_error *err);
    void (*forward)(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in, onyx_tensor *out);
    void (*backward)(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                     const onyx_tensor *out, const onyx_tensor *dout, onyx_tensor *din);
    void (*fini)(onyx_node *n);
    unsigned flags;
    uint32_t grad_inputs;
    size_t (*saved_size)(const onyx_node *n, const onyx_tensor *in, const onyx_tensor *out);
    size_t (*scratch_size)(const onyx_node *n, const onyx_tensor *in, const onyx_tensor *out);
    void (*update_state)(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                         onyx_tensor *state);
    size_t (*pack_size)(const onyx_node *n, int i, const onyx_tensor *w);
    void (*pack)(const onyx_node *n, int i, const onyx_tensor *w, void *dst);
} onyx_op_impl;

/* All inputs differentiable (for grad_inputs). */
#define ONYX_GRAD_ALL 0xffffffffu

typedef struct onyx_op_def {
    const char *domain;
    const char *op_type;
    int since;
    int until;
    const onyx_op_impl *impl;
} onyx_op_def;

/* The def of (domain, op_type) for the given imported opset, or NULL. domain "" and "ai.onnx"
 * are the same. */
const onyx_op_def *onyx_op_find(const char *domain, const char *op_type, int64_t opset);
/* The whole table, for listing. */
const onyx_op_def *onyx_op_table(size_t *count);

/* ---- node helpers for ops (runtime/node.c) ------------------------------------------------ */

/* Sets err to `node "NAME" (OpType, opset N): <message>` and returns code. */
onyx_status onyx_node_err(onyx_error *err, const onyx_node *n, onyx_status code, const char *fmt,
                          ...) ONYX_PRINTF(4, 5);
/* Checks min_in <= n_in <= max_in and likewise for outputs (counting trailing omitted ones as
 * absent), and that required inputs (index < min_in) are not omitted. */
onyx_status onyx_node_check_arity(const onyx_node *n, int min_in, int max_in, int min_out,
                                  int max_out, onyx_error *err);
const onyx_attr *onyx_node_attr(const onyx_node *n, const char *name);
/* Typed attribute getters: a missing attribute gives the default (and *present = false where
 * offered); an attribute of the wrong type is an error naming the node and attribute. */
onyx_status onyx_attr_int(const onyx_node *n, const char *name, int64_t def, int64_t *out,
                          onyx_error *err);
onyx_status onyx_attr_float(const onyx_node *n, const char *name, float def, float *out,
                            onyx_error *err);
onyx_status onyx_attr_string(const onyx_node *n, const char *name, const char *def,
                             const char **out, onyx_error *err);
onyx_status onyx_attr_ints(const onyx_node *n, const char *name, const int64_t **out, size_t *count,
                           bool *present, onyx_error *err);
onyx_status onyx_attr_floats(const onyx_node *n, const char *name, const float **out,
                             size_t *count, bool *present, onyx_error *err);
onyx_status onyx_attr_tensor(const onyx_node *n, const char *name, const onyx_tensor **out,
                             bool *present, onyx_error *err);
/* An int attribute that must be 0 or 1 (keepdims, allowzero): *out = (value == 1), def when
 * missing. Any other value is ONYX_ERR_INVALID_MODEL naming the node and attribute. */
onyx_status onyx_attr_flag(const onyx_node *n, const char *name, bool def, bool *out,
                           onyx_error *err);
/* True when input i is present (not omitted). */
bool onyx_node_has_in(const onyx_node *n, int i);
bool onyx_node_has_out(const onyx_node *n, int i);
/* Hands a parsed private struct to the node: n->priv = a malloc'd copy of the size bytes at p.
 * Inits parse into a local struct and call this last, so a failed init leaves nothing behind in
 * n->priv. ONYX_ERR_NOMEM (naming the node) when the copy cannot be allocated. */
onyx_status onyx_node_set_priv(onyx_node *n, const void *p, size_t size, onyx_error *err);
/* Formats count int64 values as "[2,0,-1]" into buf (truncated to size); returns buf. For
 * messages about attribute and input values. */
char *onyx_ints_str(const int64_t *v, int64_t count, char *buf, size_t size);

/* ---- dtype checks for ops (runtime/node.c) ------------------------------------------------ */

/* Sets of dtypes as bit masks, bit d for dtype d (every onyx_dtype value is below 32). */
#define ONYX_DT(d)    (1u << (unsigned)(d))
#define ONYX_DT_FLOAT (ONYX_DT(ONYX_DTYPE_F16) | ONYX_DT(ONYX_DTYPE_F32) | ONYX_DT(ONYX_DTYPE_F64))
#define ONYX_DT_BF16  ONYX_DT(ONYX_DTYPE_BF16)
#define ONYX_DT_SINT                                                                               \
    (ONYX_DT(ONYX_DTYPE_I8) | ONYX_DT(ONYX_DTYPE_I16) | ONYX_DT(ONYX_DTYPE_I32) |                  \
     ONYX_DT(ONYX_DTYPE_I64))
#define ONYX_DT_UINT                                                                               \
    (ONYX_DT(ONYX_DTYPE_U8) | ONYX_DT(ONYX_DTYPE_U16) | ONYX_DT(ONYX_DTYPE_U32) |                  \
     ONYX_DT(ONYX_DTYPE_U64))
#define ONYX_DT_INT (ONYX_DT_SINT | ONYX_DT_UINT)

/* True when dt is in mask. */
bool onyx_dtype_in(onyx_dtype dt, unsigned mask);
/* Input `what` (its name in the spec, or its index) must have a dtype in mask: the op's type
 * constraint. ONYX_DTYPE_UNDEFINED means "not known yet" (load time) and passes. Otherwise
 * ONYX_ERR_SHAPE: `input X has dtype int32, expected one of: float16, float32, float64`. */
onyx_status onyx_node_check_dtype(const onyx_node *n, const char *what, onyx_dtype dt,
                                  unsigned mask, onyx_error *err);
/* The same for ops that onyx computes in floating point only (float16, bfloat16, float32,
 * float64), whatever else the spec allows: the error is ONYX_ERR_UNSUPPORTED. */
onyx_status onyx_node_check_float(const onyx_node *n, const char *what, onyx_dtype dt,
                                  onyx_error *err);
/* Input `what` must have the dtype of input `ref_what` (dt == ref), unless either is UNDEFINED
 * (not known yet). Otherwise ONYX_ERR_SHAPE:
 * `input B has dtype float64, expected float32 (the dtype of input A)`. */
onyx_status onyx_node_check_same_dtype(const onyx_node *n, const char *what, onyx_dtype dt,
                                       const char *ref_what, onyx_dtype ref, onyx_error *err);

/* ---- broadcasting (ops/broadcast.c) ------------------------------------------------------- */

/* numpy broadcasting of a and b (unknown dims allowed when called at load time) into out's rank
 * and dims. Error (ONYX_ERR_SHAPE, naming the node) when known dims disagree. */
onyx_status onyx_broadcast_shape(const onyx_node *n, const onyx_tensor *a, const onyx_tensor *b,
                                 onyx_tensor *out, onyx_error *err);
/* Strides (in elements) of src viewed with out's rank: 0 where src is broadcast. src's rank must
 * be <= out's rank and its dims 1 or equal to out's. */
void onyx_broadcast_strides(const onyx_tensor *src, const onyx_tensor *out,
                            int64_t strides[ONYX_MAX_RANK]);
/* Copies src broadcast to dst's shape (same dtype). */
void onyx_broadcast_copy(const onyx_tensor *src, onyx_tensor *dst);
/* True when src broadcasts unidirectionally to dst: src's rank is <= dst's and its dims,
 * aligned right, are 1 or dst's. Unknown dims (-1) on either side fit anything. */
bool onyx_broadcast_fits(const onyx_tensor *src, const onyx_tensor *dst);

/*
 * A broadcast walk: how to visit out = f(a, b) row by row, with no index arithmetic per
 * element. Planned once per call: out's size-1 dims are dropped and neighbouring dims merged
 * wherever every source is contiguous across them. What is left is an odometer over the outer
 * dims and one contiguous inner row of dims[rank-1] elements, along which each source steps by
 * 1 or 0 (st[s][rank-1]). Same-shape operands collapse to a single row, a scalar operand to a
 * stride-0 row, a row broadcast to two dims.
 */
typedef struct onyx_broadcast_walk {
    int rank; /* collapsed rank, >= 1; dims[rank-1] is the contiguous inner row */
    int64_t dims[ONYX_MAX_RANK];
    int64_t st[2][ONYX_MAX_RANK]; /* element strides of sources a (0) and b (1), 0 if broadcast */
} onyx_broadcast_walk;
/* Plans the walk of out (dims known) over sources a and b, each broadcastable to out (see
 * onyx_broadcast_strides) or NULL (absent: stride 0 throughout). */
void onyx_broadcast_walk_init(onyx_broadcast_walk *w, const onyx_tensor *out, const onyx_tensor *a,
                              const onyx_tensor *b);
/* Moves the odometer idx over the outer dims (all 0 before the first row) and the sources' row
 * offsets off (likewise 0) from one row to the next. Row i of out starts at i * dims[rank-1]. */
void onyx_broadcast_walk_next(const onyx_broadcast_walk *w, int64_t idx[ONYX_MAX_RANK],
                              int64_t off[2]);
/* The backward of broadcasting: dx += alpha * dy summed over the dims along which x is
 * broadcast to y. dy (float32) has y's shape (dims known), dx (float32) has x's, and x
 * broadcasts to y (see onyx_broadcast_strides). Sums run in a fixed order (row by row, each
 * row's sum in double), so results depend only on the shapes. dx must not overlap dy. */
void onyx_broadcast_reduce_f32(const onyx_tensor *y, const float *dy, const onyx_tensor *x,
                               float *dx, float alpha);

/* ---- sessions (runtime/session.c) ------------------------------------------------------- */

struct onyx_session {
    const onyx_model *m;
    onyx_mode mode;
    onyx_rng rng;
    int threads;
    struct onyx_pool *pool; /* the kernels' threads (runtime/pool.c): `threads` of them */
    onyx_tensor *vals; /* the tensor of every value in the current run */
    /* Node outputs live in the planner's arena (runtime/plan.c). A value the run's plan has no
     * block for (shapes that could not be known ahead, or changed with the data) gets a buffer
     * of its own here ("spilled"), freed when a later run has a plan from the start. */
    struct onyx_planner *plan;
    void **buf;        /* per value: its own buffer, or NULL */
    size_t *cap;       /* its capacity in bytes */
    bool spilled;      /* some buf[v] is not NULL */
    bool *fed;         /* input value given in the current run */
    void **bound;      /* per value: data replacing an initializer's for every run (a trainer's
                        * parameters), or NULL */
    bool *run_const;   /* per node: folded at load and independent of bound values: not run */
    bool training;     /* forward keeps each node's saved buffer for backward */
    void **saved;      /* per node: impl->saved_size bytes (training) */
    size_t *saved_cap;
    void *scratch;     /* impl->scratch_size bytes, shared by all nodes */
    size_t scratch_cap;
    onyx_tensor *in;   /* scratch: one node's inputs */
    onyx_tensor *out;  /* scratch: one node's outputs */
    /* Zero-copy bindings (onyx_session_bind_input/_output), per value; the arrays are
     * allocated at the first bind. in_bound[v]: in_bind[v] is the caller's tensor for input v;
     * out_bound[v]: out_bind[v] is the caller's buffer for value v. */
    onyx_tensor *in_bind;
    onyx_tensor *out_bind;
    bool *in_bound;
    bool *out_bound;
    bool use_out_bind; /* the current run writes bound outputs in place (run_bound) */
    /* Pre-packed constant weights (impl->pack_size/pack), inference runs only: packed[i] is node
     * i's packed input (index packed_in[i]), made at the first inference run and kept until
     * destroy; NULL when none. packed_done: the nodes were asked. Costs one extra copy of each
     * packed weight (for Gemm and MatMul: every constant float32 B). */
    void **packed;
    int *packed_in;
    bool packed_done;
    /* fusion[i]: what node i may compute of the nodes after it, decided from the graph at
     * creation (runtime/session.c): nodes i + 1 ... i + n_fused (0 to 2), a chain in which
     * each node reads only the previous one's first output, which nothing else reads and which
     * is no graph output: an Add of a bias row (node i with ONYX_OPF_FUSE_BIAS; bias is the
     * value index of the row, else -1), then an activation (node i with ONYX_OPF_FUSE_ACT;
     * act true). Whether a run fuses is decided per run (onyx_plan_fused). plan.c makes the
     * chain's last output live from node i, so that it never shares memory with node i's
     * inputs, and gives the outputs before it, never written, its block. */
    struct onyx_fusion {
        int n_fused;
        int bias;
        bool act;
    } *fusion;
    onyx_log_fn log;
    void *log_user;
    char errmsg[ONYX_ERRMSG_SIZE];
};

/* Makes initializer v read `data` (same dtype and shape, owned by the caller, who keeps it alive
 * as long as the session) in every run from now on; nodes folded at load that depend on it are
 * computed again in each run. */
onyx_status onyx_session_bind(onyx_session *s, int v, void *data);
/* Sets the session's message and returns code. */
onyx_status onyx_session_fail(onyx_session *s, onyx_status code, const char *fmt, ...)
    ONYX_PRINTF(3, 4);
/* Binds inputs and runs every node (keeping saved buffers when s->training). Every value's
 * tensor stays valid in s->vals until the next run (nothing is reused within the run), as the
 * trainer and autodiff.c need. */
onyx_status onyx_session_forward(onyx_session *s, size_t n_in, const char *const *in_names,
                                 const onyx_tensor *inputs);
/* Index of the value named name, or -1. */
int onyx_model_find_value(const onyx_model *m, const char *name);

/* ---- memory plans (runtime/plan.c) --------------------------------------------------------- */

/* One buffer to place: size bytes (a multiple of 64), live from node `first` to node `last`
 * (both included; the buffers of overlapping lifetimes must not share bytes). id is the
 * caller's. offset is the result. */
typedef struct onyx_plan_block {
    size_t size;
    size_t offset;
    int first;
    int last;
    int id;
} onyx_plan_block;

/* Places the n blocks (reordering b: largest first) greedily by size with best fit: each block
 * goes into the smallest gap that holds it among the already placed blocks whose lifetimes
 * overlap its own, else above them. Returns the arena size: the largest offset + size. work:
 * n ints of scratch. Allocates nothing. */
size_t onyx_plan_place(onyx_plan_block *b, int n, int *work);

/* A session's plans and its activation arena. */
typedef struct onyx_planner onyx_planner;
onyx_status onyx_planner_create(const onyx_model *m, onyx_planner **out);
void onyx_planner_destroy(onyx_planner *p);
/* Marks value v as asked for by name in the coming run (it then lives to the run's end). */
void onyx_plan_want(onyx_planner *p, int v, bool want);
/* Before a run's nodes, inputs bound (s->fed, s->vals of inputs and constants set): picks the
 * plan for this run's shapes (keep_all: every value lives to the end; also when s->training or
 * the model has a graph-level op), making one when the shapes are new and can be inferred ahead,
 * and grows the arena to it. *planned: the run has a plan from the start. Frees the arena an
 * earlier run's end replaced. Errors: ONYX_ERR_NOMEM (with the session's message). */
onyx_status onyx_plan_begin(onyx_session *s, bool keep_all, bool *planned);
/* Where node output v of nbytes lives in this run: its arena block, or NULL when the run has no
 * plan or v does not fit its block (then the session gives v a buffer of its own). */
void *onyx_plan_memory(onyx_session *s, int v, size_t nbytes);
/* After a successful run: when it had no plan or a value did not fit, plans its actual shapes
 * (s->vals) for the next run like it and grows the arena (keeping the old one, which may hold
 * this run's results, until the next begin). */
void onyx_plan_end(onyx_session *s);
/* The plan of the last successful run's shapes: arena bytes, and the bytes of one buffer per
 * value (each rounded up to 64). 0 and 0 before the first. */
void onyx_plan_memory_stats(const onyx_planner *p, size_t *arena, size_t *naive);
/* True when the size bytes at ptr overlap the arena (or the one replaced by the last run). */
bool onyx_plan_owns(const onyx_planner *p, const void *ptr, size_t size);
/* After onyx_plan_begin: node i computes nodes i + 1 ... i + s->fusion[i].n_fused too in this
 * run (its output, of dtype dt, is float32, and it and the chain's other outputs but the last
 * live only until the next node of the chain reads them: not kept, asked for, bound or a graph
 * output). The plan then gives those outputs the last one's block (they are never written) and
 * the last one a lifetime from node i. */
bool onyx_plan_fused(const onyx_session *s, int i, onyx_dtype dt);

/* ---- custom operators and logging (runtime/plugin.c) --------------------------------------- */

/* Formats a message and hands it to log (nothing when log is NULL). Allocates nothing. */
void onyx_logf(onyx_log_fn log, void *user, onyx_log_level level, const char *fmt, ...)
    ONYX_PRINTF(4, 5);
/*
 * The impl of the custom op that reg (may be NULL) registered for (domain, op_type) at the
 * imported opset (the highest since_version <= opset that still serves it), or NULL. The impl is
 * an adapter owned by reg: its init stores the op and the op's state in node->priv, and the
 * other callbacks call the op's with that state. *origin (origin may be NULL) is set to the path
 * of the plugin that added the op, or NULL when the application added it.
 */
const onyx_op_impl *onyx_registry_find(const onyx_registry *reg, const char *domain,
                                       const char *op_type, int64_t opset, const char **origin);
/* True when reg (may be NULL) has (domain, op_type) for some opset: then [*since, *until] is
 * the range of one of them (until 0 = open), for messages about an opset outside it. */
bool onyx_registry_has_type(const onyx_registry *reg, const char *domain, const char *op_type,
                            int64_t *since, int64_t *until);

/* ---- gradients (runtime/autodiff.c) ------------------------------------------------------ */

typedef struct onyx_grad_plan onyx_grad_plan;

/* to_root[v] (n_values entries): value v reaches value `root` through differentiable inputs. */
onyx_status onyx_grad_reach(const onyx_model *m, int root, bool *to_root);
/* Plans the backward pass from value root to the values with is_param[v] (n_values entries).
 * Refuses a graph where parameters reach the root only through an op without backward, or where
 * none reaches it. */
onyx_status onyx_grad_plan_create(onyx_session *s, int root, const bool *is_param,
                                  onyx_grad_plan **out, onyx_error *err);
void onyx_grad_plan_destroy(onyx_grad_plan *p);
/* Value v gets a gradient. */
bool onyx_grad_needed(const onyx_grad_plan *p, int v);
/* Parameter v's gradient goes to grad (numel floats; backward writes all of them). */
void onyx_grad_set_param_buffer(onyx_grad_plan *p, int v, float *grad);
/* Parameter v's gradient is not computed by the following backward passes (skip) or is again:
 * the node reading it gets no buffer for it (runtime/train.c then updates it itself). */
void onyx_grad_skip(onyx_grad_plan *p, int v, bool skip);
/* After the session's forward (training): backward from the root's gradient droot. */
onyx_status onyx_grad_backward(onyx_grad_plan *p, const float *droot);
/* The gradient of v computed by the last backward, or NULL. */
const float *onyx_grad_of(const onyx_grad_plan *p, int v);

/* ---- trainer internals for tests (runtime/train.c) --------------------------------------- */

/* Forward in `mode`, loss and backward: fills the gradients without changing any parameter. */
onyx_status onyx_trainer_gradients(onyx_trainer *t, const onyx_tensor *x, const onyx_tensor *y,
                                   onyx_mode mode, float *loss);
/* Forward in `mode` and the loss only. */
onyx_status onyx_trainer_loss_at(onyx_trainer *t, const onyx_tensor *x, const onyx_tensor *y,
                                 onyx_mode mode, float *loss);
/* Parameter k's values (writable) and its gradient from the last backward (after a step, not
 * for the weights that step updated in a fused GEMM). */
float *onyx_trainer_param_ptr(onyx_trainer *t, size_t k);
const float *onyx_trainer_grad_ptr(const onyx_trainer *t, size_t k);
/* How many weights the last onyx_trainer_step updated in their Gemm's GEMM (plain SGD). */
int onyx_trainer_fused_count(const onyx_trainer *t);

/* ---- optimizers (runtime/optim.c) -------------------------------------------------------- */

typedef struct onyx_optim_config {
    onyx_optimizer kind;
    float lr;
    float momentum;
    bool nesterov;
    float weight_decay;
    float beta1;
    float beta2;
    float eps;
    onyx_schedule schedule;
    int64_t step_size;
    float gamma;
    int64_t total_steps;
    int64_t warmup;
} onyx_optim_config;

/* One update of n parameters p from gradients grad; m (SGD momentum buffer or Adam's first
 * moment) and v (Adam's second moment; unused by SGD) have p's layout. step counts from 1.
 * Runs on pool (NULL: this thread); the same results for any thread count. */
void onyx_optim_update(struct onyx_pool *pool, const onyx_optim_config *c, float lr, int64_t step,
                       float *p, const float *grad, float *m, float *v, size_t n);
/* Learning rate of the update after `step` completed updates (schedule, then warm-up). */
float onyx_schedule_lr(const onyx_optim_config *c, int64_t step);
/* Euclidean norm of n floats, accumulated in double in a fixed order (whatever pool's size). */
double onyx_grad_norm(struct onyx_pool *pool, const float *g, size_t n);

/* ---- tensor files (runtime/model.c) ------------------------------------------------------ */

/* The folder of a file path ("." when it has none), into dir. */
void onyx_path_dir(const char *path, char *dir, size_t size);

/* Decodes a serialized TensorProto (raw_data or typed fields; not external data) into t, whose
 * data is a new malloc'd buffer; *name (if name != NULL) is a malloc'd copy of its name. `what`
 * names the source in messages (a file path). */
onyx_status onyx_tensor_decode_pb(const void *buf, size_t len, const char *what, onyx_tensor *t,
                                  char **name, onyx_error *err);

/* ---- files (runtime/tensor_io.c) --------------------------------------------------------- */

/* Reads the regular file at path (at most ONYX_MAX_FILE_SIZE bytes, checked before allocating)
 * into a new malloc'd buffer (at least 1 byte allocated) owned by the caller. */
onyx_status onyx_read_file(const char *path, unsigned char **out, size_t *size, onyx_error *err);
/* fsyncs folder dir so that a rename into it survives a power loss (path names the file in
 * messages); file systems that cannot sync folders (EINVAL) are accepted. */
onyx_status onyx_fsync_dir(const char *dir, const char *path, onyx_error *err);
/* Writes path through a temporary file in the same folder: write(f, ctx) fills it, then it is
 * flushed, fsync'd and renamed over path, and the folder fsync'd, so a failure or a crash never
 * leaves half a file. */
onyx_status onyx_write_file_atomic(const char *path, bool (*write)(FILE *f, void *ctx), void *ctx,
                                   onyx_error *err);

/* ---- checkpoints (runtime/ckpt.c) -------------------------------------------------------- */

/* The first line of every checkpoint's manifest.txt (the trainer writes it followed by '\n').
 * A checkpoint whose manifest starts with another "onyx checkpoint format N" is refused, naming N. */
#define ONYX_CKPT_FORMAT_LINE "onyx checkpoint format 1"

/* The three blobs of one checkpoint, borrowed for the duration of onyx_ckpt_write. */
typedef struct onyx_ckpt_blobs {
    const void *model; /* model.onnx: the whole model with current weights; NULL if size 0 */
    size_t model_size;
    const void *state; /* training_state.pb (proto/onyx_train.proto); NULL if size 0 */
    size_t state_size;
    const char *manifest; /* manifest.txt, NUL-terminated, at most 1 MiB; its first line must be
                           * ONYX_CKPT_FORMAT_LINE */
} onyx_ckpt_blobs;

/* Writes a checkpoint zip at path crash-safely: the archive (model.onnx, training_state.pb,
 * manifest.txt, all stored uncompressed with their CRC-32) is completed in a temporary file
 * "<path>.tmp.<pid>.<n>" in the same folder, fsync'd, renamed over path, and the folder fsync'd;
 * a crash or kill -9 at any moment leaves either the old file or the new one, both complete.
 * A write first deletes the temporary files that earlier writes of the same path left when
 * their process died (by pid: a writer on another machine sharing the folder would lose its
 * write, never a checkpoint), so at most one stray temporary file per path remains.
 * Errors: ONYX_ERR_INVALID_ARG (NULL, a blob above 2 GiB - 1, a manifest above 1 MiB or not
 * starting with ONYX_CKPT_FORMAT_LINE: nothing written), ONYX_ERR_IO (path untouched and no
 * temporary file left, except when only the final folder fsync failed: then path is already
 * the new checkpoint, which a power loss could still undo), ONYX_ERR_NOMEM. Thread-safe; when
 * writes of one path overlap, the last to rename wins, complete. */
onyx_status onyx_ckpt_write(const char *path, const onyx_ckpt_blobs *b, onyx_error *err);

/* Reads and verifies the checkpoint at path: a zip (anything else: "not a checkpoint"), opened
 * with ZIP_CHECKCONS, the CRC of every entry checked, required entries model.onnx,
 * training_state.pb and manifest.txt present, sizes sane (model and state at most 2 GiB - 1,
 * manifest at most 1 MiB; refused before allocating), manifest's first line
 * ONYX_CKPT_FORMAT_LINE. Other entries are ignored.
 * On success *model, *state and *manifest are new malloc'd buffers owned by the caller (each
 * non-NULL, also for an empty entry; *manifest NUL-terminated); on failure all are NULL and the
 * sizes 0. Errors name the file and what was wrong: ONYX_ERR_IO (missing or unreadable file),
 * ONYX_ERR_INVALID_MODEL (empty file, not a zip, foreign zip, missing entry, bad CRC, truncated
 * or damaged archive, oversized entry), ONYX_ERR_UNSUPPORTED (another format version, named;
 * an encrypted or oddly compressed entry), ONYX_ERR_NOMEM. */
onyx_status onyx_ckpt_read(const char *path, void **model, size_t *model_size, void **state,
                           size_t *state_size, char **manifest, onyx_error *err);

/* Keeps the newest `keep` files of dir named "<prefix><digits>.zip" (newest = highest step
 * number, e.g. ckpt-000120.zip is step 120; same step: greater name) and deletes the older
 * ones; keep <= 0 keeps all. Other files (ckpt-best.zip, temporary files) are never touched.
 * prefix must not contain '/'. Errors: ONYX_ERR_IO (folder unreadable, or the first file that
 * could not be deleted; the others are still tried), ONYX_ERR_INVALID_ARG, ONYX_ERR_NOMEM. */
onyx_status onyx_ckpt_prune(const char *dir, const char *prefix, int keep, onyx_error *err);

/* ---- rewriting models (runtime/model_write.c) ---------------------------------------------- */

/* One initializer to replace in onyx_model_rewrite. */
typedef struct onyx_initializer_update {
    const char *name;         /* initializer to replace */
    const onyx_tensor *value; /* new value: same dtype and dims as the original, data borrowed */
} onyx_initializer_update;

/*
 * Writes back a trained model: parses the serialized ModelProto src (src_size bytes, borrowed for
 * the call) and serializes it again into a new malloc'd buffer *out of *out_size bytes, owned by
 * the caller (free()), with the data of each named top-graph initializer replaced by
 * updates[i].value (written as little-endian raw_data; typed fields and external-data fields
 * cleared; name, dims, doc string, metadata kept). Everything else is kept as it was: node names,
 * metadata, opset imports, doc strings, functions, and every field onyx does not know (protobuf-c
 * keeps them as unknown fields and writes them back).
 * Initializers not updated stay as they are, except that any tensor stored as external data
 * (anywhere in the model) is read, relative to base_dir and confined to it as the loader does
 * (onyx_tensor_proto_read_external), and written inline, so the result stands alone. base_dir may
 * be NULL when the source has no external data.
 * When the result would exceed protobuf's 2 GiB limit and ext_path is not NULL, the initializers
 * (of every graph) holding >= 1 KiB of raw data go to the file ext_path instead, as onnx's external
 * data format says (data_location EXTERNAL, location = basename of ext_path, offset and length,
 * offsets aligned to 4 KiB; the file is written atomically); the caller must then store the
 * returned model in the folder of ext_path. Tensors kept in typed fields (float_data...) stay
 * inline, as onnx's own converter does. A result that fits writes no file.
 * Errors name what was wrong: ONYX_ERR_INVALID_ARG (an update naming no initializer, a name
 * updated twice, NULL arguments, external data without base_dir, a result too large to store
 * inline without ext_path), ONYX_ERR_SHAPE (an update of another dtype or dims: both named),
 * ONYX_ERR_INVALID_MODEL (corrupt source, bad external data), ONYX_ERR_IO, ONYX_ERR_NOMEM. On
 * failure *out is NULL and *out_size 0. Thread-safe; src and updates are only read.
 */
onyx_status onyx_model_rewrite(const void *src, size_t src_size, const char *base_dir,
                               const onyx_initializer_update *updates, size_t n_updates,
                               const char *ext_path, void **out, size_t *out_size,
                               onyx_error *err);
/* onyx_model_rewrite with the inline limit as a parameter (onyx_model_rewrite passes
 * ONYX_MAX_FILE_SIZE): a result above max_inline bytes goes to external data. For tests, which
 * cannot build 2 GiB models: a tiny max_inline exercises the external-data path. */
onyx_status onyx_model_rewrite_limit(const void *src, size_t src_size, const char *base_dir,
                                     const onyx_initializer_update *updates, size_t n_updates,
                                     const char *ext_path, size_t max_inline, void **out,
                                     size_t *out_size, onyx_error *err);

/*
 * For `onyx train --add-dropout P` (PyTorch's inference export drops Dropout nodes): parses src
 * as onyx_model_rewrite does and, in the top graph, after every hidden activation node (Relu,
 * LeakyRelu, Tanh, Sigmoid, Gelu, Elu, Selu, Celu, Softplus, HardSigmoid, HardSwish, PRelu of the
 * default domain) whose first output feeds a Gemm or MatMul, inserts a Dropout node in its
 * opset-12 form (data, ratio; no training_mode input, so it is off in inference) named
 * "<activation name>/dropout" (the activation's output name when it has no name; "_1", "_2"...
 * appended if taken), with output "<dropout name>_output_0". Every node that read the
 * activation's output reads the Dropout's instead; graph outputs and subgraphs keep the
 * activation's. The ratio is one new float scalar initializer "dropout_ratio" shared by all the
 * Dropouts (not a parameter: Dropout's ratio takes no gradient). Running it again inserts
 * nothing (the activations then feed Dropouts). External data references are left as they are.
 * ratio must be in [0, 1). The model's default-domain opset must be >= 12: otherwise
 * ONYX_ERR_UNSUPPORTED naming the opset. *out, *out_size as for onyx_model_rewrite;
 * *n_inserted (n_inserted not NULL) = the number of Dropout nodes inserted (0 on failure).
 */
onyx_status onyx_model_add_dropout(const void *src, size_t src_size, float ratio, void **out,
                                   size_t *out_size, int *n_inserted, onyx_error *err);

/* Shared with runtime/model.c (defined in model_write.c; both see protobuf types). */
struct Onnx__TensorProto;
/* protobuf-c has no recursion limit: before unpacking untrusted bytes, checks that they are
 * well-formed wire format and, for a ModelProto (model true; else any message, nesting not
 * followed), that graphs and types nest at most ONYX_MAX_NESTING deep. On failure returns false
 * with *offset the byte where it went wrong and *why a static reason. */
/* Reads a varint at p[*pos] (p has len bytes), advancing *pos; false when it runs past the end
 * or over 10 bytes. */
bool onyx_pb_read_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *out);
bool onyx_pb_wire_check(const void *buf, size_t len, bool model, size_t *offset,
                        const char **why);
/* Reads the external data of tensor tp (its location/offset/length entries) into dst, nbytes
 * (its size from dtype and dims). The file must be inside base_dir: no absolute path, no "..",
 * and after resolving symlinks still inside it; base_dir NULL is an error (a model read from
 * memory without a folder). `what` names the model in messages. */
onyx_status onyx_tensor_proto_read_external(const char *what, const char *base_dir,
                                            const struct Onnx__TensorProto *tp, void *dst,
                                            size_t nbytes, onyx_error *err);

#endif /* ONYX_INTERNAL_H */
