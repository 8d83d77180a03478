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
} onyx_kctx;

enum {
    ONYX_OPF_SHAPE_ONLY = 1u << 0, /* forward reads only the inputs' dims, never their data */
    ONYX_OPF_RANDOM = 1u << 1,     /* forward may draw random numbers: never constant-folded */
    ONYX_OPF_MODE = 1u << 2,       /* forward depends on the session mode: never constant-folded */
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
 *  backward: reverse-mode gradient (training issue); NULL when the op has none.
 */
typedef struct onyx_op_impl {
    onyx_status (*init)(onyx_node *n, onyx_error *err);
    onyx_status (*infer)(const onyx_node *n, const onyx_tensor *in, onyx_tensor *out,
                         onyx_error *err);
    void (*forward)(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in, onyx_tensor *out);
    void (*backward)(void);
    void (*fini)(onyx_node *n);
    unsigned flags;
} onyx_op_impl;

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
/* True when input i is present (not omitted). */
bool onyx_node_has_in(const onyx_node *n, int i);
bool onyx_node_has_out(const onyx_node *n, int i);

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

/* ---- tensor files (runtime/model.c) ------------------------------------------------------ */

/* Decodes a serialized TensorProto (raw_data or typed fields; not external data) into t, whose
 * data is a new malloc'd buffer; *name (if name != NULL) is a malloc'd copy of its name. `what`
 * names the source in messages (a file path). */
onyx_status onyx_tensor_decode_pb(const void *buf, size_t len, const char *what, onyx_tensor *t,
                                  char **name, onyx_error *err);

/* ---- files (runtime/tensor_io.c) --------------------------------------------------------- */

/* Writes path through a temporary file in the same folder: write(f, ctx) fills it, then it is
 * flushed, fsync'd and renamed over path, so a failure never leaves half a file. */
onyx_status onyx_write_file_atomic(const char *path, bool (*write)(FILE *f, void *ctx), void *ctx,
                                   onyx_error *err);

#endif /* ONYX_INTERNAL_H */
