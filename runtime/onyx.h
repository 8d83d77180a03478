/*
 * onyx.h — the one public header of onyx, a small ONNX runtime in C11 that can also train.
 *
 * The header is the manual. Conventions that hold for every function below:
 *
 *  - Actions return onyx_status: ONYX_OK (0) or an ONYX_ERR_* code. Nothing is ever printed,
 *    and the library never calls exit() or abort().
 *  - Before a handle exists (loading a model, creating a session) the caller may pass an
 *    onyx_error *err to receive the code and a message; err may be NULL. After that, the
 *    message of the last failed call on a session is onyx_session_errmsg(s).
 *  - Messages name the file, node or tensor and say what was expected and what was found:
 *      node "fc1" (Gemm, opset 13): input B has shape [64,10], expected [128,N]
 *  - Every _destroy accepts NULL. Whoever creates an object destroys it; ownership of a
 *    pointer never depends on whether a call succeeded.
 *  - No global mutable state: any number of threads may use the library at once, with the
 *    thread-safety rules given per object below.
 *
 * The three modes (onyx_mode), chosen per session and switchable between runs:
 *  - ONYX_MODE_INFER (the default): every Dropout is the identity (its mask all true) and
 *    BatchNormalization uses its running statistics, whatever the model says — a model
 *    exported in training mode still runs as its inference self.
 *  - ONYX_MODE_TRAIN: Dropout drops with probability `ratio` and scales what it keeps by
 *    1/(1-ratio); BatchNormalization uses batch statistics and outputs updated running
 *    statistics — whatever the model says. Random masks are reproducible from the seed.
 *  - ONYX_MODE_GRAPH: exactly what the ONNX spec says for the opset the model imports (the
 *    `training_mode` input/attribute, `is_test` in opsets 1 and 6). The conformance suite
 *    checks this mode.
 */
#ifndef ONYX_H
#define ONYX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ONYX_VERSION_MAJOR 0
#define ONYX_VERSION_MINOR 1
#define ONYX_VERSION_PATCH 0
#define ONYX_VERSION_STRING "0.1.0"
/* ONYX_VERSION_NUMBER is MAJOR*10000 + MINOR*100 + PATCH, comparable with onyx_version_number(). */
#define ONYX_VERSION_NUMBER (ONYX_VERSION_MAJOR * 10000 + ONYX_VERSION_MINOR * 100 + ONYX_VERSION_PATCH)

#if defined(ONYX_BUILDING) && defined(__GNUC__)
#define ONYX_API __attribute__((visibility("default")))
#else
#define ONYX_API
#endif

#if defined(__GNUC__)
#define ONYX_NODISCARD __attribute__((warn_unused_result))
#else
#define ONYX_NODISCARD
#endif

/* Largest tensor rank onyx handles. A model with a larger rank is refused at load. */
#define ONYX_MAX_RANK 8
/* Size of the message buffer in onyx_error (and of a session's message). */
#define ONYX_ERRMSG_SIZE 512

/* Status codes: short and stable. onyx_status_str() gives a static name for each. */
typedef enum onyx_status {
    ONYX_OK = 0,
    ONYX_ERR_NOMEM,         /* an allocation failed or a size overflowed */
    ONYX_ERR_IO,            /* a file could not be opened, read or written */
    ONYX_ERR_INVALID_MODEL, /* the model (or a tensor file) is corrupt or breaks the ONNX spec */
    ONYX_ERR_UNSUPPORTED,   /* valid ONNX that onyx does not implement (op, opset, dtype) */
    ONYX_ERR_INVALID_ARG,   /* a bad argument: unknown input name, NULL where not allowed */
    ONYX_ERR_SHAPE,         /* a shape or element type does not fit */
    ONYX_ERR_INTERNAL       /* a bug in onyx: please report it */
} onyx_status;

/* Element types. The values are ONNX's TensorProto.DataType values. */
typedef enum onyx_dtype {
    ONYX_DTYPE_UNDEFINED = 0,
    ONYX_DTYPE_F32 = 1,
    ONYX_DTYPE_U8 = 2,
    ONYX_DTYPE_I8 = 3,
    ONYX_DTYPE_U16 = 4,
    ONYX_DTYPE_I16 = 5,
    ONYX_DTYPE_I32 = 6,
    ONYX_DTYPE_I64 = 7,
    ONYX_DTYPE_STRING = 8, /* recognised so it can be named in errors; never computed with */
    ONYX_DTYPE_BOOL = 9,   /* one byte per element, 0 or 1 */
    ONYX_DTYPE_F16 = 10,
    ONYX_DTYPE_F64 = 11,
    ONYX_DTYPE_U32 = 12,
    ONYX_DTYPE_U64 = 13,
    ONYX_DTYPE_BF16 = 16
} onyx_dtype;

/* Execution mode of a session; see the top of this header. */
typedef enum onyx_mode {
    ONYX_MODE_INFER = 0,
    ONYX_MODE_TRAIN = 1,
    ONYX_MODE_GRAPH = 2
} onyx_mode;

/* Error report for calls made before a handle exists. Caller-owned; no cleanup needed. */
typedef struct onyx_error {
    onyx_status code;
    char msg[ONYX_ERRMSG_SIZE];
} onyx_error;

/*
 * A dense tensor, row-major (C order). A plain caller-visible struct: it owns nothing.
 * `data` points to numel * onyx_dtype_size(dtype) bytes; who owns that memory is said by the
 * function that filled the struct. rank 0 is a scalar (one element).
 */
typedef struct onyx_tensor {
    onyx_dtype dtype;
    int rank;
    int64_t dims[ONYX_MAX_RANK];
    void *data;
} onyx_tensor;

typedef struct onyx_model onyx_model;
typedef struct onyx_session onyx_session;
/* A set of custom operators (see "custom operators and plugins" below). */
typedef struct onyx_registry onyx_registry;
/* One node of a loaded model, as a custom operator sees it (opaque; see onyx_node_*). */
typedef struct onyx_node onyx_node;

/* ---- logging ------------------------------------------------------------------------------ */

/*
 * onyx never prints. A caller that wants to know what the library does passes a log callback
 * in the options of the call or handle concerned (onyx_load_options, onyx_session_options,
 * onyx_train_options, onyx_registry_set_log); there is no global logger. The callback is
 * called synchronously, on the calling thread, with a message that is valid only during the
 * call (no trailing newline). It must not call back into the handle that is logging.
 *  ERROR: a call is about to fail (the same text as the returned message).
 *  WARN:  something is probably wrong but the call goes on (an initializer that feeds nothing).
 *  INFO:  one line per notable event (a model loaded, a plugin loaded, parameters left frozen).
 *  DEBUG: details (each custom op resolved, session memory growing).
 */
typedef enum onyx_log_level {
    ONYX_LOG_ERROR = 0,
    ONYX_LOG_WARN = 1,
    ONYX_LOG_INFO = 2,
    ONYX_LOG_DEBUG = 3
} onyx_log_level;

/* user is the pointer given beside the callback; level as above; msg NUL-terminated. */
typedef void (*onyx_log_fn)(void *user, onyx_log_level level, const char *msg);

/* Static name of a level: "error", "warn", "info", "debug". */
ONYX_API const char *onyx_log_level_name(onyx_log_level level);

/* ---- library ------------------------------------------------------------------------------ */

/* Version of the library actually linked (compare with ONYX_VERSION_STRING/NUMBER). */
ONYX_API const char *onyx_version(void);
ONYX_API int onyx_version_number(void);
/* Static name of a status code, e.g. "ONYX_ERR_SHAPE". Never NULL. */
ONYX_API const char *onyx_status_str(onyx_status code);
/* Size in bytes of one element (0 for UNDEFINED and STRING) and a static name ("float32"). */
ONYX_API size_t onyx_dtype_size(onyx_dtype dtype);
ONYX_API const char *onyx_dtype_name(onyx_dtype dtype);
/* Number of elements of t (1 for rank 0). Assumes dims are non-negative. */
ONYX_API int64_t onyx_tensor_numel(const onyx_tensor *t);

/* ---- models ------------------------------------------------------------------------------- */

/*
 * Loads an ONNX model (a serialized ModelProto) from a file. External data files are resolved
 * relative to the model's folder and may not leave it. The whole model is validated: every
 * unsupported op is listed in the one error message. On success *out is a new model that the
 * caller frees with onyx_model_destroy(); on failure *out is NULL.
 * A model is immutable once loaded: it may be shared by any number of sessions in any number of
 * threads, and must outlive them all.
 * The file is mapped while it is parsed (the weights are then read once, straight into the
 * model's memory): like any mapped file, it must not be truncated by another process meanwhile.
 */
ONYX_API ONYX_NODISCARD onyx_status onyx_model_load(const char *path, onyx_model **out,
                                                    onyx_error *err);
/*
 * Same, from bytes in memory (borrowed for the call only). base_dir is the folder that external
 * data paths are relative to; NULL refuses models with external data. name is used in messages
 * (NULL: "<memory>").
 */
ONYX_API ONYX_NODISCARD onyx_status onyx_model_load_buffer(const void *data, size_t size,
                                                           const char *base_dir, const char *name,
                                                           onyx_model **out, onyx_error *err);
ONYX_API void onyx_model_destroy(onyx_model *model);

/* Options of onyx_model_load_ex. Call onyx_load_options_init(), then set fields. Everything is
 * borrowed for the duration of the load only, except the registry. */
typedef struct onyx_load_options {
    /* sizeof this struct as the caller was compiled: set by the _init function. Later versions
     * of onyx add fields only at the end, so a program built against an older onyx.h keeps
     * working with a newer library. */
    size_t size;
    /* Custom operators, consulted before the built-in ones (NULL: built-in ops only). The
     * models loaded with it point into it: the registry must outlive every model (and trainer)
     * loaded with it. */
    const onyx_registry *registry;
    onyx_log_fn log; /* NULL: no logging. INFO: a summary (nodes, initializers, constants folded
                      * at load); WARN: initializers that feed nothing, graph outputs that are
                      * also graph inputs; DEBUG: each node resolved to a custom op; ERROR: the
                      * message of a failed load. */
    void *log_user;  /* given to log */
} onyx_load_options;

ONYX_API void onyx_load_options_init(onyx_load_options *opt);

/* onyx_model_load and onyx_model_load_buffer with options (opt may be NULL: the defaults, which
 * is what the plain calls use). A node whose op is neither registered nor built in fails the
 * load; for a non-default domain the message asks whether its plugin is loaded. */
ONYX_API ONYX_NODISCARD onyx_status onyx_model_load_ex(const char *path,
                                                       const onyx_load_options *opt,
                                                       onyx_model **out, onyx_error *err);
ONYX_API ONYX_NODISCARD onyx_status onyx_model_load_buffer_ex(const void *data, size_t size,
                                                              const char *base_dir,
                                                              const char *name,
                                                              const onyx_load_options *opt,
                                                              onyx_model **out, onyx_error *err);

/* Describes a graph input or output. Strings are owned by the model and live as long as it. */
typedef struct onyx_value_info {
    const char *name;
    onyx_dtype dtype;
    int rank;                                /* -1 when the model does not say */
    int64_t dims[ONYX_MAX_RANK];             /* -1 for a symbolic or unknown dimension */
    const char *dim_params[ONYX_MAX_RANK];   /* the symbol ("batch") or NULL */
} onyx_value_info;

/* Describes one node (after model-local functions were inlined). Strings owned by the model. */
typedef struct onyx_node_info {
    const char *name;
    const char *op_type;
    const char *domain; /* "" for the default ONNX domain */
    int64_t opset;      /* the opset version the model imports for the node's domain */
} onyx_node_info;

ONYX_API int64_t onyx_model_ir_version(const onyx_model *m);
ONYX_API const char *onyx_model_producer(const onyx_model *m);         /* "" when absent */
ONYX_API const char *onyx_model_producer_version(const onyx_model *m); /* "" when absent */
ONYX_API size_t onyx_model_opset_count(const onyx_model *m);
/* i < onyx_model_opset_count(m); *domain is "" for the default domain. */
ONYX_API void onyx_model_opset(const onyx_model *m, size_t i, const char **domain, int64_t *version);
/* Graph inputs that must be fed (inputs that are also initializers are not counted). */
ONYX_API size_t onyx_model_input_count(const onyx_model *m);
ONYX_API size_t onyx_model_output_count(const onyx_model *m);
/* Fill *info for input/output i; returns ONYX_ERR_INVALID_ARG when i is out of range. */
ONYX_API ONYX_NODISCARD onyx_status onyx_model_input(const onyx_model *m, size_t i,
                                                     onyx_value_info *info);
ONYX_API ONYX_NODISCARD onyx_status onyx_model_output(const onyx_model *m, size_t i,
                                                      onyx_value_info *info);
ONYX_API size_t onyx_model_node_count(const onyx_model *m);
ONYX_API ONYX_NODISCARD onyx_status onyx_model_node(const onyx_model *m, size_t i,
                                                    onyx_node_info *info);
/* Number of initializers, and the number of parameters: the elements of the floating-point
 * initializers of rank >= 1 (scalars such as Dropout's ratio are hyper-parameters). */
ONYX_API size_t onyx_model_initializer_count(const onyx_model *m);
ONYX_API int64_t onyx_model_param_count(const onyx_model *m);

/* ---- sessions ----------------------------------------------------------------------------- */

/* Session options. Call onyx_session_options_init(), then set fields. */
typedef struct onyx_session_options {
    /* sizeof this struct as the caller was compiled: set by the _init function. Later versions
     * of onyx add fields only at the end, so a program built against an older onyx.h keeps
     * working with a newer library. */
    size_t size;
    onyx_mode mode; /* ONYX_MODE_INFER unless set */
    uint64_t seed;  /* seeds every random choice of the session (Dropout masks) */
    int threads;    /* threads the session's kernels use (the GEMM); 0 = one per online CPU */
    onyx_log_fn log; /* NULL: no logging. ERROR: every failed call's message; INFO: each new
                      * memory plan (see onyx_session_memory); DEBUG: where each value lives in
                      * it, and memory allocated outside a plan (neither once the shapes
                      * repeat) */
    void *log_user;  /* given to log */
} onyx_session_options;

ONYX_API void onyx_session_options_init(onyx_session_options *opt);

/*
 * Creates a session on a loaded model; opt may be NULL (defaults). The session borrows the
 * model, which must outlive it. A session is used by one thread at a time; sessions on the same
 * model may run concurrently in different threads.
 */
ONYX_API ONYX_NODISCARD onyx_status onyx_session_create(const onyx_model *model,
                                                        const onyx_session_options *opt,
                                                        onyx_session **out, onyx_error *err);
ONYX_API void onyx_session_destroy(onyx_session *s);

ONYX_API ONYX_NODISCARD onyx_status onyx_session_set_mode(onyx_session *s, onyx_mode mode);
ONYX_API onyx_mode onyx_session_mode(const onyx_session *s);
/* Re-seeds the session's random generator, as if it had been created with this seed. */
ONYX_API void onyx_session_set_seed(onyx_session *s, uint64_t seed);

/*
 * Runs the model.
 *  in_names[n_in], inputs[n_in]: every graph input by name (an initializer's name may be fed too,
 *    overriding its value for this run). Input data are borrowed for the call and never copied
 *    or written.
 *  out_names[n_out], outputs[n_out]: the outputs wanted. out_names == NULL means the graph's
 *    outputs in order (n_out must then be at most onyx_model_output_count()).
 *    If outputs[i].data is NULL, onyx fills outputs[i] with a tensor in session memory, valid
 *    until the next run or destroy of this session. If outputs[i].data is set, it is a caller
 *    buffer: outputs[i].dtype, rank and dims must be exactly those of the result, which is
 *    copied into it.
 * Outputs in session memory are valid until the next run, and must not be fed back as inputs of
 * the next run of the same session (it may overwrite them before reading them): copy them first;
 * such a run fails with ONYX_ERR_INVALID_ARG. Only the values asked for are kept: see
 * onyx_session_memory.
 * Errors (a missing input, a wrong dtype or shape, ...) leave the session usable; the message is
 * onyx_session_errmsg(s). Repeated runs with the same input shapes allocate no memory.
 */
ONYX_API ONYX_NODISCARD onyx_status onyx_session_run(onyx_session *s, size_t n_in,
                                                     const char *const *in_names,
                                                     const onyx_tensor *inputs, size_t n_out,
                                                     const char *const *out_names,
                                                     onyx_tensor *outputs);

/* Message of the last failed call on s ("" if none). Owned by s; valid until the next call. */
ONYX_API const char *onyx_session_errmsg(const onyx_session *s);

/*
 * Activation memory. The values the nodes compute live in one arena owned by the session, laid
 * out for the run's shapes so that values whose lifetimes do not overlap share bytes: peak
 * memory follows the widest layers, not the sum of all of them. A value lives from the node that
 * computes it to the last node that reads it; graph outputs and the values named in out_names
 * live to the end of the run. So after onyx_session_run only what it returned is guaranteed:
 * other intermediate values may have been overwritten (ask for a value by name to keep it).
 * Layouts are kept for the last few sets of input shapes, and the arena only grows.
 *
 * After a run: *arena_bytes is the size of the arena the run's shapes need, *naive_bytes what
 * one buffer per value would need (the sum of every computed value's size, each rounded up to
 * 64 bytes, as the arena places them). Inputs, initializers, constants folded at load and
 * outputs bound with onyx_session_bind_output are not session memory and are not counted. Both
 * are 0 before the first successful run. Errors: ONYX_ERR_INVALID_ARG (a NULL argument).
 */
ONYX_API ONYX_NODISCARD onyx_status onyx_session_memory(const onyx_session *s,
                                                        size_t *arena_bytes, size_t *naive_bytes);
/*
 * After a run: *flops = the floating-point operations of its matrix products, 2*M*N*K for every
 * Gemm and MatMul node it ran (for a batched MatMul, M*N counts every matrix of the batch), from
 * the run's actual shapes. Nothing else is counted (bias additions, activations, other ops), so
 * dividing by a run's time gives the rate of the products alone. 0 before the first run.
 * Errors: ONYX_ERR_INVALID_ARG (a NULL argument).
 */
ONYX_API ONYX_NODISCARD onyx_status onyx_session_flops(const onyx_session *s, double *flops);

/*
 * Zero-copy I/O: bind caller-owned buffers to a session once, then run as often as wanted with
 * onyx_session_run_bound(). Such a run copies nothing and, from the second run with the same
 * shapes on, allocates nothing: inputs are read where they are, and the node computing a bound
 * output writes straight into the caller's buffer (the session keeps no buffer of its own for
 * that value).
 *
 * Ownership and lifetime: the session keeps a copy of the onyx_tensor struct (dtype, rank,
 * dims, data pointer), never of the data. The data stays the caller's and must stay valid
 * until it is unbound (onyx_session_unbind_all, binding the name again, or binding NULL) or the
 * session is destroyed. The caller may change the contents of bound inputs between runs (not
 * during one) and reads bound outputs after onyx_session_run_bound() returns OK; a failed run
 * may leave a bound output partly written. Buffers bound as outputs must not overlap each other
 * or any input. Bindings are used by onyx_session_run_bound() only; onyx_session_run() ignores
 * them.
 */

/*
 * Binds input `name` (a graph input, or an initializer that is also a graph input) to t: its
 * dtype and shape are checked now against the model (as onyx_session_run checks inputs). t NULL
 * removes the binding. Errors: ONYX_ERR_INVALID_ARG (unknown name, no data), ONYX_ERR_SHAPE.
 */
ONYX_API ONYX_NODISCARD onyx_status onyx_session_bind_input(onyx_session *s, const char *name,
                                                            const onyx_tensor *t);
/*
 * Binds value `name` (a graph output, or any value of the graph: an intermediate result may be
 * bound too) to the caller's buffer t->data, which must hold exactly t->dtype with t->rank and
 * t->dims. Every run_bound checks the value's actual dtype and shape against t (a mismatch
 * fails the run with ONYX_ERR_SHAPE naming both) and has the producing node write into t->data.
 * A value that no node computes in the run (a graph input passed through, an initializer, a
 * constant folded at load) is copied into the buffer instead. t NULL removes the binding.
 */
ONYX_API ONYX_NODISCARD onyx_status onyx_session_bind_output(onyx_session *s, const char *name,
                                                             const onyx_tensor *t);
/* Removes every binding of s. */
ONYX_API void onyx_session_unbind_all(onyx_session *s);
/*
 * Runs the model on the bound inputs (every graph input must be bound) and fills the bound
 * outputs. Errors as for onyx_session_run; the session stays usable.
 */
ONYX_API ONYX_NODISCARD onyx_status onyx_session_run_bound(onyx_session *s);

/* ---- custom operators and plugins ---------------------------------------------------------- */

/*
 * A custom operator is an onyx_custom_op: a plain struct of strings and callbacks, put into an
 * onyx_registry with onyx_registry_add_op(), either by the application itself or by a plugin (a
 * shared library loaded with onyx_plugin_load()). A model loaded with the registry
 * (onyx_load_options.registry, onyx_train_options.registry) runs its nodes of that domain and
 * op_type with the callbacks; the registry is consulted before the built-in ops, so it may also
 * replace one. Custom nodes take part in everything a built-in node does (sessions of every
 * mode, onyx_session_run_bound, training when there is a backward) except constant folding:
 * they always run.
 *
 * Versioning: the first field of the struct is its ABI version. onyx reads that field first and
 * refuses a struct whose version is not its own ONYX_PLUGIN_ABI_VERSION (older or newer),
 * naming both versions, so a plugin built against another onyx.h is refused instead of being
 * misread. The version changes whenever this struct or the callbacks' contract changes.
 *
 * Threads: callbacks may be called from any thread. init and fini run while a model is loaded
 * and destroyed; infer, forward and backward run for every session, and sessions on one model
 * may run at once in different threads, so they must treat the state as read-only.
 *
 * Errors: init and infer return a status and may write a message into err->msg (snprintf into
 * its ONYX_ERRMSG_SIZE bytes). onyx prefixes the node's name, op and opset unless the message
 * already starts with them (the onyx_node_attr_* getters' messages do).
 */
#define ONYX_PLUGIN_ABI_VERSION 1u

/* Marks a plugin's entry point as exported even when the plugin is built with hidden
 * visibility. */
#if defined(__GNUC__)
#define ONYX_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define ONYX_PLUGIN_EXPORT
#endif

typedef struct onyx_custom_op onyx_custom_op;
struct onyx_custom_op {
    uint32_t abi_version;  /* ONYX_PLUGIN_ABI_VERSION of the onyx.h the op was built with */
    const char *domain;    /* e.g. "com.example"; "" (or "ai.onnx") is the default ONNX domain */
    const char *op_type;   /* e.g. "Swish" */
    int64_t since_version; /* the op serves models importing an opset of its domain in */
    int64_t until_version; /* [since_version, until_version]; until_version 0 = no upper end */
    void *user;            /* anything the op wants back in init (op->user); may be NULL */
    /* With backward: bit i set = input i is differentiable and may receive a gradient; 0 means
     * every input. Inputs without the bit never get one (din[i].data NULL). */
    uint32_t grad_inputs;

    /*
     * init (may be NULL): called once per node when a model is loaded. Reads the node's
     * attributes and its input/output counts through the onyx_node_* functions, checks them,
     * and sets *state to the op's private state for this node (anything; NULL is fine), which
     * every other callback of the node receives. On failure returns an error (with a message in
     * err) and must leave nothing allocated: fini is not called then.
     */
    onyx_status (*init)(const onyx_custom_op *op, const onyx_node *node, void **state,
                        onyx_error *err);
    /*
     * infer (required): sets the dtype, rank and dims of every present output from the inputs'
     * (in[i], i < n_in; an omitted optional input has dtype ONYX_DTYPE_UNDEFINED and an omitted
     * output must be left alone). Called at load time with partial knowledge (dtype UNDEFINED,
     * rank -1 or dims -1 = not known yet; data NULL unless the input is a constant): then set
     * what can be derived, leave the rest unknown, and fail only for what is certainly wrong.
     * Called again before every run with everything known (data set): then every output dim
     * must be set, and anything that does not fit is an error (ONYX_ERR_SHAPE for a shape or
     * dtype). Must not write to the tensors' data.
     */
    onyx_status (*infer)(const void *state, const onyx_node *node, const onyx_tensor *in,
                         int n_in, onyx_tensor *out, int n_out, onyx_error *err);
    /*
     * forward (required): computes out[j].data (buffers of the shapes infer gave, distinct from
     * the inputs; they may be caller buffers bound with onyx_session_bind_output) from in[i].
     * Cannot fail: everything that could fail was checked by init and infer. mode is the
     * session's (an op that behaves differently in training, like Dropout, asks it).
     */
    void (*forward)(const void *state, const onyx_node *node, onyx_mode mode,
                    const onyx_tensor *in, int n_in, onyx_tensor *out, int n_out);
    /*
     * backward (may be NULL: then a model whose trained parameters reach the loss through this
     * op is refused when the trainer is created). Reverse-mode gradient after forward of the
     * same step: in/out are that forward's tensors (intact), dout[j] the gradient of the loss
     * w.r.t. out[j] (float32, out[j]'s shape; data NULL = no gradient flows there: zero), din[i]
     * the gradient w.r.t. in[i] (float32, in[i]'s shape) to ACCUMULATE into (+=; onyx zeroes it
     * first). din[i].data NULL = input i needs no gradient. Cannot fail.
     */
    void (*backward)(const void *state, const onyx_node *node, const onyx_tensor *in, int n_in,
                     const onyx_tensor *out, const onyx_tensor *dout, int n_out,
                     onyx_tensor *din);
    /* fini (may be NULL): frees what init put in state, when the model is destroyed. */
    void (*fini)(void *state);
};

/* What a custom op may ask about its node (init, infer, forward, backward). Strings are owned by
 * the model and live as long as it. */
ONYX_API const char *onyx_node_name(const onyx_node *node);    /* "" when the model gave none */
ONYX_API const char *onyx_node_op_type(const onyx_node *node);
ONYX_API const char *onyx_node_domain(const onyx_node *node);  /* "" for the default domain */
ONYX_API int64_t onyx_node_opset(const onyx_node *node);       /* imported for its domain */
/* Input and output slots, counting omitted optional ones ("" in the model), which are not
 * present. */
ONYX_API int onyx_node_input_count(const onyx_node *node);
ONYX_API int onyx_node_output_count(const onyx_node *node);
ONYX_API bool onyx_node_input_present(const onyx_node *node, int i);
ONYX_API bool onyx_node_output_present(const onyx_node *node, int i);
/* Whether the node has attribute `name` (of any type). */
ONYX_API bool onyx_node_attr_present(const onyx_node *node, const char *name);
/*
 * Typed attribute getters. A missing attribute gives def (or NULL and count 0); an attribute of
 * another type is ONYX_ERR_INVALID_MODEL with a message in err (may be NULL) naming the node and
 * the attribute. Returned arrays and strings are owned by the model.
 */
ONYX_API ONYX_NODISCARD onyx_status onyx_node_attr_int(const onyx_node *node, const char *name,
                                                       int64_t def, int64_t *out, onyx_error *err);
ONYX_API ONYX_NODISCARD onyx_status onyx_node_attr_float(const onyx_node *node, const char *name,
                                                         float def, float *out, onyx_error *err);
ONYX_API ONYX_NODISCARD onyx_status onyx_node_attr_string(const onyx_node *node,
                                                          const char *name, const char *def,
                                                          const char **out, onyx_error *err);
ONYX_API ONYX_NODISCARD onyx_status onyx_node_attr_ints(const onyx_node *node, const char *name,
                                                        const int64_t **out, size_t *count,
                                                        onyx_error *err);
ONYX_API ONYX_NODISCARD onyx_status onyx_node_attr_floats(const onyx_node *node,
                                                          const char *name, const float **out,
                                                          size_t *count, onyx_error *err);

/*
 * A registry: custom ops and the plugin libraries they came from. Fill it (onyx_registry_add_op,
 * onyx_plugin_load) from one thread before using it; once filled it is only read, and any
 * number of threads may load models with it at once. Models and trainers loaded with it point
 * into it (its ops, the plugins' code): destroy them before the registry. onyx_registry_destroy
 * unloads the plugins. The message of its last failed call is onyx_registry_errmsg().
 */
ONYX_API ONYX_NODISCARD onyx_status onyx_registry_create(onyx_registry **out, onyx_error *err);
ONYX_API void onyx_registry_destroy(onyx_registry *reg);
/* Logs plugin loading (INFO) and each op added (DEBUG) from now on; log NULL: none. */
ONYX_API void onyx_registry_set_log(onyx_registry *reg, onyx_log_fn log, void *user);
/*
 * Adds a custom op: the struct is copied (its strings too), so it may be temporary; the
 * callbacks must stay valid as long as the registry (a plugin's stay loaded until then).
 * Errors: ONYX_ERR_UNSUPPORTED when op->abi_version is not ONYX_PLUGIN_ABI_VERSION (both
 * versions named); ONYX_ERR_INVALID_ARG for a missing domain, op_type, infer or forward, a bad
 * opset range, or an op whose range overlaps one already registered for the same domain and
 * op_type; ONYX_ERR_NOMEM.
 */
ONYX_API ONYX_NODISCARD onyx_status onyx_registry_add_op(onyx_registry *reg,
                                                         const onyx_custom_op *op);
/* Number of ops in the registry. */
ONYX_API size_t onyx_registry_op_count(const onyx_registry *reg);
/* Message of the last failed call on reg ("" if none). Owned by reg; valid until the next call. */
ONYX_API const char *onyx_registry_errmsg(const onyx_registry *reg);

/* The function a plugin exports; onyx_plugin_load calls it once with ONYX_PLUGIN_ABI_VERSION.
 * It adds the plugin's ops with onyx_registry_add_op and returns ONYX_OK, or the first error
 * (then onyx removes the ops it added). A plugin that cannot work with onyx's plugin ABI version
 * returns ONYX_ERR_UNSUPPORTED. */
typedef onyx_status (*onyx_plugin_register_fn)(onyx_registry *reg, uint32_t abi_version);
#define ONYX_PLUGIN_ENTRY_POINT "onyx_plugin_register"

/*
 * Loads the shared library at path (dlopen; a path without '/' is searched for as dlopen does)
 * and calls its onyx_plugin_register(). The library stays loaded until the registry is
 * destroyed; loading the same library into the same registry again does nothing. Errors (in err,
 * which may be NULL, and onyx_registry_errmsg) name the library: ONYX_ERR_IO (it cannot be
 * loaded: missing, not a shared library, unresolved symbols: the loader's message is quoted),
 * ONYX_ERR_INVALID_ARG (no onyx_plugin_register), ONYX_ERR_UNSUPPORTED (an ABI version
 * mismatch, both versions named), or what the plugin returned. On failure the registry is as it
 * was.
 */
ONYX_API ONYX_NODISCARD onyx_status onyx_plugin_load(onyx_registry *reg, const char *path,
                                                     onyx_error *err);

/* ---- tensor files ------------------------------------------------------------------------- */

/*
 * Reads a tensor from an ONNX TensorProto file (.pb), a numpy file (.npy, format v1/v2/v3,
 * little-endian, C order) or, for a name ending in .csv, a CSV file (see onyx_tensor_read_csv);
 * .npy and .pb are told apart by content.
 * On success t->data is a new malloc'd buffer that the caller frees with onyx_tensor_free(), and
 * *name (if name is not NULL) is a malloc'd copy of the tensor's name (NULL for .npy) that the
 * caller frees with free(). On failure nothing needs freeing.
 */
ONYX_API ONYX_NODISCARD onyx_status onyx_tensor_read_file(const char *path, onyx_tensor *t,
                                                          char **name, onyx_error *err);
/*
 * Reads a CSV file of numbers as a float32 tensor [rows, columns]: comma-separated, one row a
 * line, blank lines skipped, an optional header line (a first line none of whose fields is a
 * number). A field that is not a finite number, or a row with a different number of fields, is
 * an error naming the file, line and column. Ownership as for onyx_tensor_read_file.
 */
ONYX_API ONYX_NODISCARD onyx_status onyx_tensor_read_csv(const char *path, onyx_tensor *t,
                                                         onyx_error *err);
/* Writes t as .npy (v1 header, little-endian, C order). */
ONYX_API ONYX_NODISCARD onyx_status onyx_tensor_write_npy(const char *path, const onyx_tensor *t,
                                                          onyx_error *err);
/* Writes t as a serialized ONNX TensorProto with the given name (may be NULL). */
ONYX_API ONYX_NODISCARD onyx_status onyx_tensor_write_pb(const char *path, const char *name,
                                                         const onyx_tensor *t, onyx_error *err);
/* Frees data filled in by onyx_tensor_read_file and sets t->data to NULL. Accepts NULL. */
ONYX_API void onyx_tensor_free(onyx_tensor *t);

/* ---- making models ------------------------------------------------------------------------ */

/*
 * A fresh multi-layer perceptron: Gemm (+ activation + Dropout on each hidden layer), weights
 * drawn from `seed` (He initialisation for relu/gelu, Xavier for tanh/sigmoid; biases zero).
 * The model has one input "input" [batch, layers[0]] and one output "logits"
 * [batch, layers[n_layers-1]], opset 17 (opset 20 when activation is "gelu").
 */
typedef struct onyx_mlp_spec {
    const int64_t *layers; /* widths, input first; n_layers >= 2 */
    size_t n_layers;
    const char *activation; /* "relu" (NULL), "tanh", "sigmoid" or "gelu" */
    float dropout;          /* ratio for Dropout after each hidden activation; 0 = no Dropout */
    uint64_t seed;
} onyx_mlp_spec;

/* Writes the model described by spec to path as a standard ONNX file. */
ONYX_API ONYX_NODISCARD onyx_status onyx_mlp_write(const onyx_mlp_spec *spec, const char *path,
                                                   onyx_error *err);


/* ---- training ----------------------------------------------------------------------------- */

/*
 * A trainer fine-tunes a model: it owns a copy of the trainable parameters (by default every
 * float32 initializer of rank >= 1 that has a differentiable path to the loss), their gradients
 * and the optimizer state, each in one flat buffer. Training steps run in ONYX_MODE_TRAIN
 * (Dropout on, BatchNormalization on batch statistics, its running statistics updated as the
 * spec says); evaluation and export run in ONYX_MODE_INFER. A trainer is used by one thread at a
 * time. Everything random follows from the seed: the same steps with the same seed give
 * bit-identical parameters, also across a checkpoint and resume.
 */
typedef struct onyx_trainer onyx_trainer;

typedef enum onyx_loss {
    ONYX_LOSS_CE = 0, /* softmax cross-entropy on logits; int64 class targets [batch] */
    ONYX_LOSS_NLL,    /* negative log-likelihood on log-probabilities; int64 targets */
    ONYX_LOSS_MSE,    /* mean squared error; float targets shaped like the output */
    ONYX_LOSS_L1,     /* mean absolute error */
    ONYX_LOSS_BCE     /* binary cross-entropy with logits; float targets in [0, 1] */
} onyx_loss;

typedef enum onyx_optimizer {
    ONYX_OPTIMIZER_SGD = 0, /* momentum, Nesterov, (L2) weight decay as torch.optim.SGD */
    ONYX_OPTIMIZER_ADAM,    /* torch.optim.Adam (L2 weight decay added to the gradient) */
    ONYX_OPTIMIZER_ADAMW    /* torch.optim.AdamW (decoupled weight decay) */
} onyx_optimizer;

typedef enum onyx_schedule {
    ONYX_SCHEDULE_CONSTANT = 0,
    ONYX_SCHEDULE_STEP,   /* lr * gamma^(floor(step / step_size)) */
    ONYX_SCHEDULE_COSINE  /* lr * (1 + cos(pi * step / total_steps)) / 2 */
} onyx_schedule;

/* Options; onyx_train_options_init() sets PyTorch's defaults, then change what you need. */
typedef struct onyx_train_options {
    /* sizeof this struct as the caller was compiled: set by the _init function. Later versions
     * of onyx add fields only at the end, so a program built against an older onyx.h keeps
     * working with a newer library. */
    size_t size;
    onyx_loss loss;
    const char *input;  /* graph input fed with the batch; NULL = the first */
    const char *output; /* graph output the loss is attached to; NULL = the first. An output made
                         * by Softmax/LogSoftmax gets the matching loss without a second softmax. */
    onyx_optimizer optimizer;
    float lr;           /* 0.01 for SGD, 0.001 for Adam/AdamW when left at 0 */
    float momentum;     /* SGD; 0 */
    bool nesterov;      /* SGD */
    float weight_decay; /* 0 for SGD/Adam; AdamW uses 0.01 when left at -1 (the default) */
    float beta1;        /* 0.9 */
    float beta2;        /* 0.999 */
    float eps;          /* 1e-8 */
    onyx_schedule schedule;
    int64_t step_size;   /* STEP: steps between decays */
    float gamma;         /* STEP: 0.1 */
    int64_t total_steps; /* COSINE: length of the cosine */
    int64_t warmup;      /* linear warm-up steps from lr/warmup to lr (0: none) */
    float clip_grad_norm; /* clip the global gradient norm to this; 0 = off */
    const char *const *freeze; /* glob patterns (fnmatch) of initializer names not to train */
    size_t n_freeze;
    uint64_t seed; /* Dropout masks */
    /* > 0: insert Dropout with this ratio after each hidden activation that feeds a Gemm or
     * MatMul (for models exported without their Dropout); the nodes stay in the export, where
     * they are off in inference. */
    float add_dropout;
    /* Custom operators for loading the model (and checkpoints of it); NULL: built-in ops only.
     * Must outlive the trainer. A custom op takes part in training when it has a backward. */
    const onyx_registry *registry;
    onyx_log_fn log; /* NULL: no logging. The model's load is logged as for onyx_model_load_ex;
                      * INFO: the parameters left frozen because they do not reach the loss */
    void *log_user;  /* given to log */
    int threads;     /* threads of the training session (0 = one per online CPU); results do
                      * not depend on it */
} onyx_train_options;

ONYX_API void onyx_train_options_init(onyx_train_options *opt);

/*
 * Creates a trainer for the model file at model_path (read whole; external data resolved beside
 * it). Refused, with the names in the message, when a parameter reaches the loss only through an
 * op without a gradient, or a trainable initializer is not float32. Parameters the loss does not
 * reach are left frozen (onyx_trainer_param_* lists the trained ones).
 */
ONYX_API ONYX_NODISCARD onyx_status onyx_trainer_create(const char *model_path,
                                                        const onyx_train_options *opt,
                                                        onyx_trainer **out, onyx_error *err);
ONYX_API void onyx_trainer_destroy(onyx_trainer *t);
/* Message of the last failed call on t. Owned by t; valid until the next call. */
ONYX_API const char *onyx_trainer_errmsg(const onyx_trainer *t);

/*
 * One optimisation step on a batch: forward in train mode, loss, backward, clipping, update.
 * x: the batch for the input; y: the targets (see onyx_loss). *loss (may be NULL) gets the batch's
 * mean loss. A loss or gradient that is not finite stops the step before any parameter changes:
 * ONYX_ERR_INVALID_ARG with a message naming the step and the first node whose output is not
 * finite (or the parameter).
 */
ONYX_API ONYX_NODISCARD onyx_status onyx_trainer_step(onyx_trainer *t, const onyx_tensor *x,
                                                      const onyx_tensor *y, float *loss);
/*
 * Evaluates a batch in inference mode (Dropout off, running statistics): *loss (may be NULL) the
 * mean loss, *correct (may be NULL) for CE/NLL the number of rows whose arg-max is the target.
 * Parameters do not change.
 */
ONYX_API ONYX_NODISCARD onyx_status onyx_trainer_eval(onyx_trainer *t, const onyx_tensor *x,
                                                      const onyx_tensor *y, float *loss,
                                                      int64_t *correct);
/*
 * Runs the model in inference mode on x with the current parameters; *out (data NULL on entry)
 * is set to the output the loss is attached to, in trainer memory valid until the next call.
 */
ONYX_API ONYX_NODISCARD onyx_status onyx_trainer_predict(onyx_trainer *t, const onyx_tensor *x,
                                                         onyx_tensor *out);

/* Where training stands; saved in checkpoints. Steps count optimizer updates. */
typedef struct onyx_train_progress {
    int64_t step;
    int64_t epoch;     /* the caller's: the trainer only stores it */
    int64_t position;  /* the caller's: samples of the epoch consumed */
    uint64_t data_seed; /* the caller's: seed of its data order */
    float last_loss;
} onyx_train_progress;
ONYX_API void onyx_trainer_progress(const onyx_trainer *t, onyx_train_progress *p);
/* Stores the caller's fields (epoch, position, data_seed) for the next checkpoint. */
ONYX_API void onyx_trainer_set_progress(onyx_trainer *t, int64_t epoch, int64_t position,
                                        uint64_t data_seed);
/* The learning rate the next step will use (after schedule and warm-up). */
ONYX_API float onyx_trainer_lr(const onyx_trainer *t);

/* Trained parameters: how many tensors, and the name and element count of tensor i. */
ONYX_API size_t onyx_trainer_param_count(const onyx_trainer *t);
ONYX_API const char *onyx_trainer_param_name(const onyx_trainer *t, size_t i, int64_t *numel);
/* Copies parameter `name`'s current values into dst (numel floats). */
ONYX_API ONYX_NODISCARD onyx_status onyx_trainer_get_param(onyx_trainer *t, const char *name,
                                                           float *dst, int64_t numel);

/*
 * Writes a checkpoint: one zip holding model.onnx (the whole model with the current weights,
 * loadable by any ONNX runtime), training_state.pb (step, progress, optimizer, hyper-parameters,
 * optimizer state, generator state) and manifest.txt. Crash-safe: a temporary file, flushed and
 * renamed over path, so a crash at any moment leaves the previous checkpoint intact.
 */
ONYX_API ONYX_NODISCARD onyx_status onyx_trainer_save(onyx_trainer *t, const char *path);
/*
 * Resumes from a checkpoint written by onyx_trainer_save for the same model: parameters, optimizer
 * state, step, progress and generator come back exactly. A corrupt, truncated or foreign file, or
 * one whose tensors do not match the model's parameters, is refused and t is unchanged.
 */
ONYX_API ONYX_NODISCARD onyx_status onyx_trainer_load(onyx_trainer *t, const char *path);
/* Writes the inference model: the original graph with the trained weights. */
ONYX_API ONYX_NODISCARD onyx_status onyx_trainer_export(onyx_trainer *t, const char *path);

/* What a checkpoint file holds, without a trainer (for `onyx info CKPT.zip`). Strings are written
 * into the caller's buffers. */
typedef struct onyx_checkpoint_info {
    onyx_train_progress progress;
    char optimizer[16];
    char loss[16];
    float lr;
    int64_t n_params;
} onyx_checkpoint_info;
ONYX_API ONYX_NODISCARD onyx_status onyx_checkpoint_info_read(const char *path,
                                                              onyx_checkpoint_info *info,
                                                              onyx_error *err);
/* Writes the model.onnx of a checkpoint to out_path (`onyx export`). */
ONYX_API ONYX_NODISCARD onyx_status onyx_checkpoint_export(const char *path, const char *out_path,
                                                           onyx_error *err);

#ifdef __cplusplus
}
#endif
#endif /* ONYX_H */
