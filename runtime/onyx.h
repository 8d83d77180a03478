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

/* Session options. Zero-initialise, or call onyx_session_options_init(), then set fields. */
typedef struct onyx_session_options {
    onyx_mode mode; /* ONYX_MODE_INFER unless set */
    uint64_t seed;  /* seeds every random choice of the session (Dropout masks) */
    int threads;    /* 0 = the library's default */
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
