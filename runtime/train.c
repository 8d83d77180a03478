/*
 * train.c — the trainer: a session in training mode, a loss attached to one graph output, the
 * backward plan, the optimizer, checkpoints and export.
 *
 * Memory follows llm.c: the trained parameters live in one flat float buffer (params), with
 * their gradients (grads) and optimizer state (m, v) in buffers of the same layout, so the update
 * is one loop. The session reads the parameters in place (onyx_session_bind). Stateful inputs
 * that are not trained (BatchNormalization's running statistics) are copied into trainer memory
 * too and updated after each step (impl->update_state).
 *
 * Plain SGD (no momentum, weight decay or clipping) skips the gradient of each weight read only
 * by a Gemm: after backward, that Gemm's weight-gradient GEMM updates the weight itself
 * (B += -lr * dB in its epilogue, ops/ops.h), which saves writing dB, reading it back for the
 * norm and again for the update: the three passes over the weights' size that bound a step on
 * one core. Same bits as the unfused step; a step is still refused before anything changes when
 * a gradient is not finite (the Gemm checks from its inputs that dB cannot overflow, or the
 * trainer computes dB the usual way and checks it).
 */
#define _XOPEN_SOURCE 700 /* fnmatch, realpath */
#include "internal.h"
#include "ops.h"
#include "onyx_train.pb-c.h"

#include <fnmatch.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FORMAT_VERSION    1
#define ONYX_STATE_MAX_IN 16 /* stateful ops have few inputs (BatchNormalization: 5) */

typedef struct loss_node {
    onyx_node node;
    onyx_attr attr[1];
    int in[2];
    int out[1];
    float value;      /* the forward's scalar */
    onyx_tensor o[1]; /* its output tensor (points to value) */
    void *saved;
    size_t saved_cap;
    void *scratch;
    size_t scratch_cap;
} loss_node;

struct onyx_trainer {
    onyx_train_options opt;
    char **freeze; /* copies of the patterns */
    char *path;
    char base_dir[PATH_MAX];
    unsigned char *src; /* the model file, kept for checkpoints and export */
    size_t src_size;
    onyx_model *m;
    onyx_session *s;
    onyx_grad_plan *plan;
    onyx_optim_config oc;
    int in_v;  /* graph input fed with the batch */
    int out_v; /* graph output the loss is attached to */
    int root;  /* value the loss reads: out_v, or the logits before out_v's Softmax */
    bool root_is_logits_of_softmax;
    bool class_targets; /* the loss takes class indices (ce, nll), else float targets */
    loss_node loss;
    float *droot; /* gradient of the loss w.r.t. the root */
    size_t droot_cap;

    int n_params;
    int *param_v;      /* value index of each trained parameter */
    size_t *param_off; /* offset (floats) in the flat buffers */
    int64_t *param_numel;
    int *fuse_node; /* the Gemm that alone reads parameter k as its weight (B), or -1 */
    int fused_count; /* weights the last step updated in their Gemm's GEMM */
    size_t n_floats;
    float *params;
    float *grads;
    float *m1;
    float *m2;

    int n_state; /* untrained stateful initializers (running statistics) */
    int *state_v;
    float **state;

    int64_t step;
    int64_t epoch;
    int64_t position;
    uint64_t data_seed;
    float last_loss;
    char errmsg[ONYX_ERRMSG_SIZE];
};

static onyx_status tfail(onyx_trainer *t, onyx_status code, const char *fmt, ...) ONYX_PRINTF(3, 4);

static onyx_status tfail(onyx_trainer *t, onyx_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->errmsg, sizeof t->errmsg, fmt, ap);
    va_end(ap);
    return code;
}

void onyx_train_options_init(onyx_train_options *o)
{
    memset(o, 0, sizeof(*o));
    o->size = sizeof(*o);
    o->loss = ONYX_LOSS_CE;
    o->optimizer = ONYX_OPTIMIZER_SGD;
    o->lr = 0.0f;
    o->weight_decay = -1.0f;
    o->beta1 = 0.9f;
    o->beta2 = 0.999f;
    o->eps = 1e-8f;
    o->schedule = ONYX_SCHEDULE_CONSTANT;
    o->gamma = 0.1f;
}

static const char *loss_name(onyx_loss l)
{
    switch (l) {
    case ONYX_LOSS_CE: return "ce";
    case ONYX_LOSS_NLL: return "nll";
    case ONYX_LOSS_MSE: return "mse";
    case ONYX_LOSS_L1: return "l1";
    case ONYX_LOSS_BCE: return "bce";
    }
    return "?";
}

static const char *optimizer_name(onyx_optimizer o)
{
    switch (o) {
    case ONYX_OPTIMIZER_SGD: return "sgd";
    case ONYX_OPTIMIZER_ADAM: return "adam";
    case ONYX_OPTIMIZER_ADAMW: return "adamw";
    }
    return "?";
}

static const char *schedule_name(onyx_schedule s)
{
    switch (s) {
    case ONYX_SCHEDULE_CONSTANT: return "constant";
    case ONYX_SCHEDULE_STEP: return "step";
    case ONYX_SCHEDULE_COSINE: return "cosine";
    }
    return "?";
}

/* ---- creation ---------------------------------------------------------------------------- */

static onyx_status check_options(const onyx_train_options *o, onyx_error *err)
{
    if ((unsigned)o->loss > ONYX_LOSS_BCE)
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "unknown loss %d", (int)o->loss);
    if ((unsigned)o->optimizer > ONYX_OPTIMIZER_ADAMW)
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "unknown optimizer %d", (int)o->optimizer);
    if ((unsigned)o->schedule > ONYX_SCHEDULE_COSINE)
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "unknown schedule %d", (int)o->schedule);
    if (!(o->lr >= 0.0f) || !isfinite(o->lr))
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "learning rate %g must be >= 0", o->lr);
    if (!(o->momentum >= 0.0f && o->momentum < 1.0f))
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "momentum %g must be in [0, 1)", o->momentum);
    if (o->nesterov && o->momentum == 0.0f)
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "Nesterov momentum needs momentum > 0");
    if (!(o->beta1 >= 0.0f && o->beta1 < 1.0f) || !(o->beta2 >= 0.0f && o->beta2 < 1.0f))
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "betas (%g, %g) must be in [0, 1)", o->beta1,
                        o->beta2);
    if (!(o->eps > 0.0f))
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "eps %g must be > 0", o->eps);
    if (o->weight_decay != -1.0f && !(o->weight_decay >= 0.0f))
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "weight decay %g must be >= 0", o->weight_decay);
    if (!(o->clip_grad_norm >= 0.0f))
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "gradient clipping norm %g must be >= 0",
                        o->clip_grad_norm);
    if (o->schedule == ONYX_SCHEDULE_STEP && (o->step_size <= 0 || !(o->gamma > 0.0f)))
        return onyx_err(err, ONYX_ERR_INVALID_ARG,
                        "the step schedule needs step_size > 0 and gamma > 0");
    if (o->schedule == ONYX_SCHEDULE_COSINE && o->total_steps <= 0)
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "the cosine schedule needs total_steps > 0");
    if (o->threads < 0)
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "threads is %d, expected 0 (default) or more",
                        o->threads);
    if (!(o->add_dropout >= 0.0f && o->add_dropout < 1.0f))
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "dropout ratio %g must be in [0, 1)",
                        o->add_dropout);
    if (o->warmup < 0)
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "warm-up steps %lld must be >= 0",
                        (long long)o->warmup);
    return ONYX_OK;
}

static void set_optim_config(onyx_trainer *t)
{
    const onyx_train_options *o = &t->opt;
    onyx_optim_config *c = &t->oc;
    memset(c, 0, sizeof(*c));
    c->kind = o->optimizer;
    c->lr = o->lr > 0.0f ? o->lr : (o->optimizer == ONYX_OPTIMIZER_SGD ? 0.01f : 0.001f);
    c->momentum = o->momentum;
    c->nesterov = o->nesterov;
    c->weight_decay = o->weight_decay >= 0.0f                ? o->weight_decay
                      : o->optimizer == ONYX_OPTIMIZER_ADAMW ? 0.01f
                                                             : 0.0f;
    c->beta1 = o->beta1;
    c->beta2 = o->beta2;
    c->eps = o->eps;
    c->schedule = o->schedule;
    c->step_size = o->step_size;
    c->gamma = o->gamma;
    c->total_steps = o->total_steps;
    c->warmup = o->warmup;
}

static bool frozen(const onyx_trainer *t, const char *name)
{
    for (size_t i = 0; i < t->opt.n_freeze; i++)
        if (fnmatch(t->freeze[i], name, 0) == 0)
            return true;
    return false;
}

/* Chooses the value the loss reads and the loss op, and builds the loss node. */
static onyx_status setup_loss(onyx_trainer *t, onyx_error *err)
{
    const onyx_model *m = t->m;
    const onyx_value *out = &m->values[t->out_v];
    const onyx_node *producer = out->producer >= 0 ? &m->nodes[out->producer] : NULL;
    const char *domain = "";
    const char *op = NULL;
    int64_t opset = 13;
    t->root = t->out_v;
    switch (t->opt.loss) {
    case ONYX_LOSS_CE:
        op = "SoftmaxCrossEntropyLoss";
        if (producer && strcmp(producer->op_type, "LogSoftmax") == 0) {
            op = "NegativeLogLikelihoodLoss"; /* the model already ends in log-probabilities */
        } else if (producer && strcmp(producer->op_type, "Softmax") == 0 && producer->in[0] >= 0) {
            t->root = producer->in[0]; /* cross-entropy on the logits: no second softmax */
            t->root_is_logits_of_softmax = true;
        }
        break;
    case ONYX_LOSS_NLL: op = "NegativeLogLikelihoodLoss"; break;
    case ONYX_LOSS_MSE: domain = "ai.onyx", op = "MeanSquaredError", opset = 1; break;
    case ONYX_LOSS_L1: domain = "ai.onyx", op = "L1Loss", opset = 1; break;
    case ONYX_LOSS_BCE: domain = "ai.onyx", op = "BCEWithLogitsLoss", opset = 1; break;
    }
    t->class_targets = t->opt.loss == ONYX_LOSS_CE || t->opt.loss == ONYX_LOSS_NLL;
    const onyx_op_def *def = onyx_op_find(domain, op, opset);
    if (def == NULL || def->impl->backward == NULL)
        return onyx_err(err, ONYX_ERR_UNSUPPORTED, "loss %s (%s) is not available",
                        loss_name(t->opt.loss), op);
    if (m->values[t->root].info.dtype != ONYX_DTYPE_F32)
        return onyx_err(err, ONYX_ERR_UNSUPPORTED, "%s: output \"%s\" is %s; onyx trains float32",
                        m->name, m->values[t->root].name,
                        onyx_dtype_name(m->values[t->root].info.dtype));
    loss_node *l = &t->loss;
    onyx_node *n = &l->node;
    n->name = (char *)"loss";
    n->op_type = (char *)def->op_type;
    n->domain = (char *)domain;
    n->opset = opset;
    n->n_in = 2;
    n->n_out = 1;
    l->in[0] = 0;
    l->in[1] = 1;
    l->out[0] = 2;
    n->in = l->in;
    n->out = l->out;
    n->n_attr = 0;
    n->attr = l->attr;
    n->impl = def->impl;
    if (n->impl->init) {
        onyx_status st = n->impl->init(n, err);
        if (st != ONYX_OK)
            return st;
    }
    return ONYX_OK;
}

static void free_loss(loss_node *l)
{
    onyx_node *n = &l->node;
    if (n->impl) {
        if (n->impl->fini)
            n->impl->fini(n);
        else
            free(n->priv);
    }
    n->priv = NULL;
    free(l->saved);
    free(l->scratch);
}

/* The Gemm that alone reads value v, as its weight B, and can update it itself in a plain SGD
 * step (onyx_gemm_sgd_fusable); -1 when there is none. */
static int sgd_fuse_node(const onyx_model *m, int v)
{
    int node = -1;
    int reads = 0;
    for (int i = 0; i < m->n_nodes; i++)
        for (int j = 0; j < m->nodes[i].n_in; j++)
            if (m->nodes[i].in[j] == v) {
                reads++;
                node = j == 1 ? i : -1;
            }
    if (reads != 1 || node < 0)
        return -1;
    const onyx_node *n = &m->nodes[node];
    return onyx_gemm_sgd_fusable(n) && n->n_out == 1 && n->out[0] >= 0 ? node : -1;
}

/* Chooses the trained parameters and the stateful buffers; lays out the flat buffers. */
static onyx_status setup_params(onyx_trainer *t, onyx_error *err)
{
    const onyx_model *m = t->m;
    size_t nv = (size_t)m->n_values + 1;
    bool *to_root = onyx_calloc(nv, sizeof(bool));
    bool *is_param = onyx_calloc(nv, sizeof(bool));
    bool *is_state = onyx_calloc(nv, sizeof(bool));
    onyx_status st = ONYX_OK;
    t->param_v = onyx_calloc(nv, sizeof(int));
    t->param_off = onyx_calloc(nv, sizeof(size_t));
    t->param_numel = onyx_calloc(nv, sizeof(int64_t));
    t->state_v = onyx_calloc(nv, sizeof(int));
    t->state = onyx_calloc(nv, sizeof(float *));
    if (!to_root || !is_param || !is_state || !t->param_v || !t->param_off || !t->param_numel ||
        !t->state_v || !t->state) {
        st = onyx_err(err, ONYX_ERR_NOMEM, "out of memory");
        goto done;
    }
    onyx_grad_reach(m, t->root, to_root);
    size_t off = 0;
    int n_unreached = 0;
    for (int v = 0; v < m->n_values; v++) {
        const onyx_value *val = &m->values[v];
        if (val->kind != ONYX_VALUE_INITIALIZER || val->info.rank < 1 ||
            !onyx_dtype_is_float(val->info.dtype) || frozen(t, val->name))
            continue;
        if (!to_root[v]) {
            n_unreached++;
            onyx_logf(t->opt.log, t->opt.log_user, ONYX_LOG_INFO,
                      "%s: parameter \"%s\" left frozen: it does not reach output \"%s\" through "
                      "differentiable inputs",
                      m->name, val->name, m->values[t->out_v].name);
            continue;
        }
        if (val->info.dtype != ONYX_DTYPE_F32) {
            st = onyx_err(err, ONYX_ERR_UNSUPPORTED,
                          "%s: parameter \"%s\" is %s; onyx trains float32 parameters (freeze "
                          "it to go on)",
                          m->name, val->name, onyx_dtype_name(val->info.dtype));
            goto done;
        }
        is_param[v] = true;
        t->param_v[t->n_params] = v;
        t->param_off[t->n_params] = off;
        t->param_numel[t->n_params] = onyx_numel(&val->info);
        off += ((size_t)t->param_numel[t->n_params] + 15) & ~(size_t)15; /* 64-byte aligned */
        t->n_params++;
    }
    if (t->n_params == 0) {
        st = onyx_err(err, ONYX_ERR_INVALID_ARG,
                      "%s: nothing to train: no float initializer reaches output \"%s\"%s", m->name,
                      m->values[t->out_v].name, t->opt.n_freeze ? " (or all are frozen)" : "");
        goto done;
    }
    int64_t n_values = 0;
    for (int k = 0; k < t->n_params; k++)
        n_values += t->param_numel[k];
    onyx_logf(t->opt.log, t->opt.log_user, ONYX_LOG_INFO,
              "%s: training %d parameter tensor%s (%lld values); %d left frozen because they do "
              "not reach the loss",
              m->name, t->n_params, t->n_params == 1 ? "" : "s", (long long)n_values, n_unreached);
    /* Stateful inputs of ops with update_state that are initializers and not trained. */
    for (int i = 0; i < m->n_nodes; i++) {
        const onyx_node *n = &m->nodes[i];
        if (n->impl->update_state == NULL)
            continue;
        for (int j = 0; j < n->n_in; j++) {
            int v = n->in[j];
            if (v < 0 || is_param[v] || is_state[v] ||
                m->values[v].kind != ONYX_VALUE_INITIALIZER ||
                m->values[v].info.dtype != ONYX_DTYPE_F32 || (n->impl->grad_inputs >> j & 1u))
                continue;
            is_state[v] = true;
            t->state_v[t->n_state++] = v;
        }
    }
    t->n_floats = off;
    size_t bytes = (off ? off : 16) * sizeof(float);
    t->params = aligned_alloc(64, bytes);
    t->grads = aligned_alloc(64, bytes);
    t->m1 = aligned_alloc(64, bytes);
    t->m2 = aligned_alloc(64, bytes);
    if (!t->params || !t->grads || !t->m1 || !t->m2) {
        st = onyx_err(err, ONYX_ERR_NOMEM, "out of memory for %zu parameters", off);
        goto done;
    }
    memset(t->params, 0, bytes);
    memset(t->grads, 0, bytes);
    memset(t->m1, 0, bytes);
    memset(t->m2, 0, bytes);
    for (int k = 0; k < t->n_params; k++) {
        const onyx_value *val = &m->values[t->param_v[k]];
        memcpy(t->params + t->param_off[k], val->info.data,
               (size_t)t->param_numel[k] * sizeof(float));
        st = onyx_session_bind(t->s, t->param_v[k], t->params + t->param_off[k]);
        if (st != ONYX_OK) {
            onyx_err(err, st, "%s", onyx_session_errmsg(t->s));
            goto done;
        }
    }
    for (int k = 0; k < t->n_state; k++) {
        const onyx_value *val = &m->values[t->state_v[k]];
        size_t nb = onyx_nbytes(&val->info);
        t->state[k] = aligned_alloc(64, (nb + 63) / 64 * 64 + 64);
        if (t->state[k] == NULL) {
            st = onyx_err(err, ONYX_ERR_NOMEM, "out of memory");
            goto done;
        }
        memcpy(t->state[k], val->info.data, nb);
        st = onyx_session_bind(t->s, t->state_v[k], t->state[k]);
        if (st != ONYX_OK) {
            onyx_err(err, st, "%s", onyx_session_errmsg(t->s));
            goto done;
        }
    }
    st = onyx_grad_plan_create(t->s, t->root, is_param, &t->plan, err);
    if (st != ONYX_OK)
        goto done;
    for (int k = 0; k < t->n_params; k++)
        onyx_grad_set_param_buffer(t->plan, t->param_v[k], t->grads + t->param_off[k]);
    t->fuse_node = onyx_calloc((size_t)t->n_params + 1, sizeof(int));
    if (t->fuse_node == NULL) {
        st = onyx_err(err, ONYX_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int k = 0; k < t->n_params; k++)
        t->fuse_node[k] = sgd_fuse_node(m, t->param_v[k]);
done:
    free(to_root);
    free(is_param);
    free(is_state);
    return st;
}

onyx_status onyx_trainer_create(const char *model_path, const onyx_train_options *opt,
                                onyx_trainer **out, onyx_error *err)
{
    if (out == NULL || model_path == NULL)
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "onyx_trainer_create: NULL argument");
    *out = NULL;
    onyx_train_options defaults;
    onyx_train_options_init(&defaults);
    if (opt != NULL && !onyx_options_copy(&defaults, sizeof defaults, opt))
        return onyx_err(err, ONYX_ERR_INVALID_ARG,
                        "onyx_trainer_create: options.size is %zu: call onyx_train_options_init() "
                        "first (or the program was "
                        "built against a newer onyx.h)",
                        opt->size);
    opt = &defaults;
    onyx_status st = check_options(opt, err);
    if (st != ONYX_OK)
        return st;
    onyx_trainer *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return onyx_err(err, ONYX_ERR_NOMEM, "out of memory");
    t->opt = *opt;
    t->opt.input = NULL;
    t->opt.output = NULL;
    t->opt.freeze = NULL;
    t->path = onyx_strdup(model_path);
    t->freeze = onyx_calloc(opt->n_freeze + 1, sizeof(char *));
    if (t->path == NULL || t->freeze == NULL) {
        st = onyx_err(err, ONYX_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < opt->n_freeze; i++)
        if ((t->freeze[i] = onyx_strdup(opt->freeze[i])) == NULL) {
            st = onyx_err(err, ONYX_ERR_NOMEM, "out of memory");
            goto fail;
        }
    set_optim_config(t);
    onyx_path_dir(model_path, t->base_dir, sizeof t->base_dir);
    st = onyx_read_file(model_path, &t->src, &t->src_size, err);
    if (st != ONYX_OK)
        goto fail;
    if (opt->add_dropout > 0.0f) {
        void *with = NULL;
        size_t with_size = 0;
        int inserted = 0;
        st = onyx_model_add_dropout(t->src, t->src_size, opt->add_dropout, &with, &with_size,
                                    &inserted, err);
        if (st != ONYX_OK)
            goto fail;
        free(t->src);
        t->src = with;
        t->src_size = with_size;
    }
    onyx_load_options lo;
    onyx_load_options_init(&lo);
    lo.registry = opt->registry;
    lo.log = opt->log;
    lo.log_user = opt->log_user;
    st = onyx_model_load_buffer_ex(t->src, t->src_size, t->base_dir, model_path, &lo, &t->m, err);
    if (st != ONYX_OK)
        goto fail;
    const onyx_model *m = t->m;
    if (m->n_inputs < 1 || m->n_outputs < 1) {
        st = onyx_err(err, ONYX_ERR_INVALID_ARG, "%s: the model needs an input and an output",
                      model_path);
        goto fail;
    }
    t->in_v = m->inputs[0];
    if (opt->input) {
        t->in_v = onyx_model_find_value(m, opt->input);
        if (t->in_v < 0 || m->values[t->in_v].kind != ONYX_VALUE_INPUT) {
            st = onyx_err(err, ONYX_ERR_INVALID_ARG, "%s: \"%s\" is not an input of the model",
                          model_path, opt->input);
            goto fail;
        }
    }
    if (m->n_inputs > 1) {
        st = onyx_err(err, ONYX_ERR_UNSUPPORTED,
                      "%s: the model has %d inputs; the trainer feeds models with one", model_path,
                      m->n_inputs);
        goto fail;
    }
    t->out_v = m->outputs[0];
    if (opt->output) {
        t->out_v = onyx_model_find_value(m, opt->output);
        if (t->out_v < 0) {
            st = onyx_err(err, ONYX_ERR_INVALID_ARG, "%s: \"%s\" is not a value of the model",
                          model_path, opt->output);
            goto fail;
        }
    }
    onyx_session_options so;
    onyx_session_options_init(&so);
    so.mode = ONYX_MODE_TRAIN;
    so.seed = opt->seed;
    so.threads = opt->threads;
    st = onyx_session_create(m, &so, &t->s, err);
    if (st != ONYX_OK)
        goto fail;
    t->s->training = true;
    st = setup_loss(t, err);
    if (st != ONYX_OK)
        goto fail;
    st = setup_params(t, err);
    if (st != ONYX_OK)
        goto fail;
    *out = t;
    return ONYX_OK;
fail:
    onyx_trainer_destroy(t);
    return st;
}

void onyx_trainer_destroy(onyx_trainer *t)
{
    if (t == NULL)
        return;
    free_loss(&t->loss);
    onyx_grad_plan_destroy(t->plan);
    onyx_session_destroy(t->s);
    onyx_model_destroy(t->m);
    if (t->freeze)
        for (size_t i = 0; i < t->opt.n_freeze; i++)
            free(t->freeze[i]);
    free(t->freeze);
    for (int k = 0; k < t->n_state; k++)
        free(t->state[k]);
    free(t->state);
    free(t->state_v);
    free(t->param_v);
    free(t->param_off);
    free(t->param_numel);
    free(t->fuse_node);
    free(t->params);
    free(t->grads);
    free(t->m1);
    free(t->m2);
    free(t->droot);
    free(t->src);
    free(t->path);
    free(t);
}

const char *onyx_trainer_errmsg(const onyx_trainer *t)
{
    return t ? t->errmsg : "";
}

/* ---- steps ----------------------------------------------------------------------------- */

static bool all_finite(const float *p, int64_t n, int64_t *where)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(p[i])) {
            *where = i;
            return false;
        }
    return true;
}

/* Names the first place where a non-finite value appeared in the last forward. */
static void describe_nonfinite(onyx_trainer *t, char *buf, size_t size)
{
    const onyx_session *s = t->s;
    const onyx_model *m = t->m;
    int64_t k;
    const onyx_tensor *x = &s->vals[t->in_v];
    if (x->dtype == ONYX_DTYPE_F32 && !all_finite(x->data, onyx_numel(x), &k)) {
        snprintf(buf, size, "the input batch has a non-finite value at element %lld", (long long)k);
        return;
    }
    for (int p = 0; p < t->n_params; p++)
        if (!all_finite(t->params + t->param_off[p], t->param_numel[p], &k)) {
            snprintf(buf, size, "parameter \"%s\" is not finite (element %lld)",
                     m->values[t->param_v[p]].name, (long long)k);
            return;
        }
    for (int i = 0; i < m->n_nodes; i++) {
        const onyx_node *n = &m->nodes[i];
        for (int j = 0; j < n->n_out; j++) {
            int v = n->out[j];
            if (v < 0 || s->vals[v].dtype != ONYX_DTYPE_F32 || s->vals[v].data == NULL)
                continue;
            if (!all_finite(s->vals[v].data, onyx_numel(&s->vals[v]), &k)) {
                snprintf(buf, size,
                         "the first non-finite value is output \"%s\" of node \"%s\" (%s)",
                         m->values[v].name, n->name, n->op_type);
                return;
            }
        }
    }
    snprintf(buf, size, "the loss itself overflowed");
}

/* Checks the targets against the output the loss reads. */
static onyx_status check_targets(onyx_trainer *t, const onyx_tensor *pred, const onyx_tensor *y)
{
    char a[96];
    char b[96];
    if (y == NULL || y->data == NULL)
        return tfail(t, ONYX_ERR_INVALID_ARG, "no targets given");
    if (t->class_targets) {
        if (y->dtype != ONYX_DTYPE_I64 && y->dtype != ONYX_DTYPE_I32)
            return tfail(t, ONYX_ERR_SHAPE,
                         "targets have dtype %s; the %s loss takes int64 class "
                         "indices",
                         onyx_dtype_name(y->dtype), loss_name(t->opt.loss));
        if (pred->rank < 2 || y->rank != pred->rank - 1 || y->dims[0] != pred->dims[0])
            return tfail(t, ONYX_ERR_SHAPE,
                         "targets have shape %s; output \"%s\" is %s, so "
                         "expected [%lld]",
                         onyx_shape_str(y, a, sizeof a), t->m->values[t->out_v].name,
                         onyx_shape_str(pred, b, sizeof b), (long long)pred->dims[0]);
    } else {
        if (y->dtype != ONYX_DTYPE_F32)
            return tfail(t, ONYX_ERR_SHAPE, "targets have dtype %s, expected float32",
                         onyx_dtype_name(y->dtype));
        if (!onyx_shape_equal(y, pred))
            return tfail(t, ONYX_ERR_SHAPE,
                         "targets have shape %s, expected %s like output "
                         "\"%s\"",
                         onyx_shape_str(y, a, sizeof a), onyx_shape_str(pred, b, sizeof b),
                         t->m->values[t->out_v].name);
    }
    int64_t numel;
    if (!onyx_shape_numel(y->dims, y->rank, onyx_dtype_size(y->dtype), &numel))
        return tfail(t, ONYX_ERR_SHAPE, "targets have an invalid shape");
    if (y->dtype == ONYX_DTYPE_F32) {
        int64_t k;
        if (!all_finite(y->data, numel, &k))
            return tfail(t, ONYX_ERR_INVALID_ARG, "target %lld is not a finite number",
                         (long long)k);
    }
    return ONYX_OK;
}

static bool grow(void **buf, size_t *cap, size_t size)
{
    if (*buf != NULL && size <= *cap)
        return true;
    size_t want = (size + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, want ? want : 64);
    if (p == NULL)
        return false;
    free(*buf);
    *buf = p;
    *cap = want;
    return true;
}

/* The loss of the last forward on targets y; fills t->loss.value. */
static onyx_status loss_forward(onyx_trainer *t, const onyx_tensor *y)
{
    loss_node *l = &t->loss;
    const onyx_tensor *pred = &t->s->vals[t->root];
    onyx_status st = check_targets(t, pred, y);
    if (st != ONYX_OK)
        return st;
    onyx_tensor in[2] = {*pred, *y};
    memset(l->o, 0, sizeof l->o);
    l->o[0].rank = -1;
    onyx_error err;
    st = l->node.impl->infer(&l->node, in, l->o, &err);
    if (st != ONYX_OK)
        return tfail(t, st, "%s", err.msg);
    if (l->o[0].dtype != ONYX_DTYPE_F32 || onyx_numel(&l->o[0]) != 1)
        return tfail(t, ONYX_ERR_INTERNAL, "the loss is not a float32 scalar");
    l->o[0].data = &l->value;
    onyx_kctx ctx = {.mode = ONYX_MODE_TRAIN, .rng = &t->s->rng, .pool = t->s->pool};
    if (l->node.impl->saved_size) {
        size_t need = l->node.impl->saved_size(&l->node, in, l->o);
        if (!grow(&l->saved, &l->saved_cap, need))
            return tfail(t, ONYX_ERR_NOMEM, "out of memory");
        ctx.saved = l->saved;
    }
    if (l->node.impl->scratch_size) {
        size_t need = l->node.impl->scratch_size(&l->node, in, l->o);
        if (!grow(&l->scratch, &l->scratch_cap, need))
            return tfail(t, ONYX_ERR_NOMEM, "out of memory");
        ctx.scratch = l->scratch;
    }
    l->node.impl->forward(&l->node, &ctx, in, l->o);
    return ONYX_OK;
}

/* d loss / d root into t->droot. */
static onyx_status loss_backward(onyx_trainer *t, const onyx_tensor *y)
{
    loss_node *l = &t->loss;
    const onyx_tensor *pred = &t->s->vals[t->root];
    size_t nb = onyx_nbytes(pred);
    void *buf = t->droot;
    if (!grow(&buf, &t->droot_cap, nb))
        return tfail(t, ONYX_ERR_NOMEM, "out of memory");
    t->droot = buf;
    memset(t->droot, 0, nb);
    onyx_tensor in[2] = {*pred, *y};
    float one = 1.0f;
    onyx_tensor dout[1] = {l->o[0]};
    dout[0].data = &one;
    onyx_tensor din[2] = {*pred, *y};
    din[0].data = t->droot;
    din[1].data = NULL;
    onyx_kctx ctx = {.mode = ONYX_MODE_TRAIN,
                     .rng = &t->s->rng,
                     .pool = t->s->pool,
                     .saved = l->saved,
                     .scratch = l->scratch};
    l->node.impl->backward(&l->node, &ctx, in, l->o, dout, din);
    return ONYX_OK;
}

static onyx_status forward(onyx_trainer *t, onyx_mode mode, const onyx_tensor *x)
{
    const char *names[1] = {t->m->values[t->in_v].name};
    t->s->mode = mode;
    t->s->training = mode == ONYX_MODE_TRAIN;
    onyx_status st = onyx_session_forward(t->s, 1, names, x);
    if (st != ONYX_OK)
        return tfail(t, st, "%s", onyx_session_errmsg(t->s));
    return ONYX_OK;
}

/* Runs update_state of every stateful node (BatchNormalization's running statistics). */
static void update_states(onyx_trainer *t)
{
    onyx_session *s = t->s;
    const onyx_model *m = t->m;
    for (int i = 0; i < m->n_nodes; i++) {
        const onyx_node *n = &m->nodes[i];
        if (n->impl->update_state == NULL || s->run_const[i])
            continue;
        for (int j = 0; j < n->n_in; j++)
            s->in[j] = n->in[j] >= 0 ? s->vals[n->in[j]] : (onyx_tensor){.rank = -1};
        /* state tensors: trainer buffers of this node's stateful inputs */
        onyx_tensor state[ONYX_STATE_MAX_IN];
        int k_max = n->n_in < ONYX_STATE_MAX_IN ? n->n_in : ONYX_STATE_MAX_IN;
        for (int j = 0; j < k_max; j++) {
            state[j] = s->in[j];
            state[j].data = NULL;
            for (int k = 0; k < t->n_state; k++)
                if (t->state_v[k] == n->in[j])
                    state[j].data = t->state[k];
        }
        onyx_kctx ctx = {.mode = s->mode, .rng = &s->rng, .saved = s->saved[i], .pool = s->pool};
        n->impl->update_state(n, &ctx, s->in, state);
    }
}

/* Forward in `mode`, the loss, and (when grads) backward into t->grads; changes no parameter. */
static onyx_status gradients(onyx_trainer *t, const onyx_tensor *x, const onyx_tensor *y,
                             onyx_mode mode, bool grads)
{
    t->errmsg[0] = '\0';
    if (x == NULL)
        return tfail(t, ONYX_ERR_INVALID_ARG, "no input batch given");
    onyx_status st = forward(t, mode, x);
    if (st == ONYX_OK)
        st = loss_forward(t, y);
    if (st != ONYX_OK)
        return st;
    char where[256];
    int64_t next = t->step + 1;
    if (!isfinite(t->loss.value)) {
        describe_nonfinite(t, where, sizeof where);
        return tfail(t, ONYX_ERR_INVALID_ARG,
                     "step %lld: the loss is %s; %s; parameters were not updated", (long long)next,
                     isnan(t->loss.value) ? "nan" : "infinite", where);
    }
    if (!grads)
        return ONYX_OK;
    st = loss_backward(t, y);
    if (st != ONYX_OK)
        return st;
    /* The backward pass writes every parameter's gradient (see runtime/autodiff.c); the padding
     * between parameters stays as zeroed at creation. */
    st = onyx_grad_backward(t->plan, t->droot);
    if (st != ONYX_OK)
        return tfail(t, st, "%s", onyx_session_errmsg(t->s));
    return ONYX_OK;
}

/* Whether the next backward passes leave the weights of the fusable Gemms to a fused update. */
static void skip_fused(onyx_trainer *t, bool skip)
{
    for (int k = 0; k < t->n_params; k++)
        if (t->fuse_node[k] >= 0)
            onyx_grad_skip(t->plan, t->param_v[k], skip);
}

onyx_status onyx_trainer_gradients(onyx_trainer *t, const onyx_tensor *x, const onyx_tensor *y,
                                   onyx_mode mode, float *loss)
{
    skip_fused(t, false);
    onyx_status st = gradients(t, x, y, mode, true);
    if (st == ONYX_OK && loss)
        *loss = t->loss.value;
    return st;
}

onyx_status onyx_trainer_loss_at(onyx_trainer *t, const onyx_tensor *x, const onyx_tensor *y,
                                 onyx_mode mode, float *loss)
{
    onyx_status st = gradients(t, x, y, mode, false);
    if (st == ONYX_OK && loss)
        *loss = t->loss.value;
    return st;
}

float *onyx_trainer_param_ptr(onyx_trainer *t, size_t k)
{
    return k < (size_t)t->n_params ? t->params + t->param_off[k] : NULL;
}

int onyx_trainer_fused_count(const onyx_trainer *t)
{
    return t->fused_count;
}

const float *onyx_trainer_grad_ptr(const onyx_trainer *t, size_t k)
{
    return k < (size_t)t->n_params ? t->grads + t->param_off[k] : NULL;
}

/* The forward tensors of node i (inputs into in, first output into out) and its output's
 * gradient, for the fused update. */
static const float *node_tensors(onyx_trainer *t, int i, onyx_tensor *in, onyx_tensor *out)
{
    const onyx_node *n = &t->m->nodes[i];
    for (int j = 0; j < n->n_in && j < 3; j++)
        in[j] = n->in[j] >= 0 ? t->s->vals[n->in[j]] : (onyx_tensor){.rank = -1};
    out[0] = t->s->vals[n->out[0]];
    return onyx_grad_of(t->plan, n->out[0]);
}

/* Plain SGD: the weights that one Gemm each reads are updated by that Gemm (top of the file). */
static bool sgd_fusable_now(const onyx_trainer *t)
{
    return t->oc.kind == ONYX_OPTIMIZER_SGD && t->oc.momentum == 0.0f &&
           t->oc.weight_decay == 0.0f && !(t->opt.clip_grad_norm > 0.0f);
}

onyx_status onyx_trainer_step(onyx_trainer *t, const onyx_tensor *x, const onyx_tensor *y,
                              float *loss)
{
    if (t == NULL)
        return ONYX_ERR_INVALID_ARG;
    bool skipped = sgd_fusable_now(t);
    skip_fused(t, skipped);
    t->fused_count = 0;
    onyx_status st = gradients(t, x, y, ONYX_MODE_TRAIN, true);
    if (st != ONYX_OK)
        return st;
    onyx_tensor in[3];
    onyx_tensor out[1];
    /* fused only if every skipped weight gradient is surely finite and one K slice; else they
     * are computed now, the usual way, and checked with the rest */
    bool fused = skipped;
    for (int k = 0; k < t->n_params && fused; k++)
        if (t->fuse_node[k] >= 0) {
            const float *dy = node_tensors(t, t->fuse_node[k], in, out);
            fused = dy != NULL && onyx_gemm_sgd_ready(&t->m->nodes[t->fuse_node[k]], in, out, dy);
        }
    for (int k = 0; k < t->n_params && skipped && !fused; k++)
        if (t->fuse_node[k] >= 0) {
            const float *dy = node_tensors(t, t->fuse_node[k], in, out);
            onyx_gemm_weight_grad(&t->m->nodes[t->fuse_node[k]], t->s->pool, in, out, dy,
                                  t->grads + t->param_off[k]);
        }
    int64_t next = t->step + 1;
    /* the norm of what the optimizer will read (fused: every gradient but the fused ones) */
    double sum = 0.0;
    for (int k = 0; k < t->n_params && fused; k++)
        if (t->fuse_node[k] < 0) {
            double nk = onyx_grad_norm(t->s->pool, t->grads + t->param_off[k],
                                       (size_t)t->param_numel[k]);
            sum += nk * nk;
        }
    double norm = fused ? sqrt(sum) : onyx_grad_norm(t->s->pool, t->grads, t->n_floats);
    if (!isfinite(norm)) {
        for (int p = 0; p < t->n_params; p++) {
            int64_t k;
            if ((!fused || t->fuse_node[p] < 0) &&
                !all_finite(t->grads + t->param_off[p], t->param_numel[p], &k))
                return tfail(t, ONYX_ERR_INVALID_ARG,
                             "step %lld: the gradient of parameter \"%s\" is not finite (element "
                             "%lld); parameters were not updated",
                             (long long)next, t->m->values[t->param_v[p]].name, (long long)k);
        }
    }
    if (t->opt.clip_grad_norm > 0.0f && norm > t->opt.clip_grad_norm) {
        /* torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) */
        float scale = (float)(t->opt.clip_grad_norm / (norm + 1e-6));
        for (size_t i = 0; i < t->n_floats; i++)
            t->grads[i] *= scale;
    }
    update_states(t);
    float lr = onyx_schedule_lr(&t->oc, t->step);
    t->step = next;
    if (fused) {
        /* the fused Gemms first: they read their inputs, which may be other parameters */
        for (int k = 0; k < t->n_params; k++)
            if (t->fuse_node[k] >= 0) {
                const float *dy = node_tensors(t, t->fuse_node[k], in, out);
                onyx_gemm_sgd_step(&t->m->nodes[t->fuse_node[k]], t->s->pool, in, out, dy, lr,
                                   t->params + t->param_off[k]);
                t->fused_count++;
            }
        for (int k = 0; k < t->n_params; k++)
            if (t->fuse_node[k] < 0) {
                size_t o = t->param_off[k];
                onyx_optim_update(t->s->pool, &t->oc, lr, t->step, t->params + o, t->grads + o,
                                  t->m1 + o, t->m2 + o, (size_t)t->param_numel[k]);
            }
    } else {
        onyx_optim_update(t->s->pool, &t->oc, lr, t->step, t->params, t->grads, t->m1, t->m2,
                          t->n_floats);
    }
    t->last_loss = t->loss.value;
    if (loss)
        *loss = t->loss.value;
    return ONYX_OK;
}

onyx_status onyx_trainer_eval(onyx_trainer *t, const onyx_tensor *x, const onyx_tensor *y,
                              float *loss, int64_t *correct)
{
    if (t == NULL)
        return ONYX_ERR_INVALID_ARG;
    onyx_status st = gradients(t, x, y, ONYX_MODE_INFER, false);
    if (st != ONYX_OK)
        return st;
    if (loss)
        *loss = t->loss.value;
    if (correct) {
        *correct = 0;
        const onyx_tensor *pred = &t->s->vals[t->root];
        bool classes = y->dtype == ONYX_DTYPE_I64 || y->dtype == ONYX_DTYPE_I32;
        if (classes && pred->rank == 2) {
            int64_t rows = pred->dims[0];
            int64_t cols = pred->dims[1];
            const float *p = pred->data;
            for (int64_t r = 0; r < rows; r++) {
                int64_t best = 0;
                for (int64_t c = 1; c < cols; c++)
                    if (p[r * cols + c] > p[r * cols + best])
                        best = c;
                if (best == onyx_load_i64(y->dtype, y->data, r))
                    (*correct)++;
            }
        }
    }
    return ONYX_OK;
}

onyx_status onyx_trainer_predict(onyx_trainer *t, const onyx_tensor *x, onyx_tensor *out)
{
    if (t == NULL || out == NULL)
        return ONYX_ERR_INVALID_ARG;
    t->errmsg[0] = '\0';
    onyx_status st = forward(t, ONYX_MODE_INFER, x);
    if (st != ONYX_OK)
        return st;
    *out = t->s->vals[t->out_v];
    return ONYX_OK;
}

/* ---- progress and parameters -------------------------------------------------------------- */

void onyx_trainer_progress(const onyx_trainer *t, onyx_train_progress *p)
{
    p->step = t->step;
    p->epoch = t->epoch;
    p->position = t->position;
    p->data_seed = t->data_seed;
    p->last_loss = t->last_loss;
}

void onyx_trainer_set_progress(onyx_trainer *t, int64_t epoch, int64_t position, uint64_t data_seed)
{
    t->epoch = epoch;
    t->position = position;
    t->data_seed = data_seed;
}

float onyx_trainer_lr(const onyx_trainer *t)
{
    return onyx_schedule_lr(&t->oc, t->step);
}

size_t onyx_trainer_param_count(const onyx_trainer *t)
{
    return (size_t)t->n_params;
}

const char *onyx_trainer_param_name(const onyx_trainer *t, size_t i, int64_t *numel)
{
    if (i >= (size_t)t->n_params)
        return NULL;
    if (numel)
        *numel = t->param_numel[i];
    return t->m->values[t->param_v[i]].name;
}

onyx_status onyx_trainer_get_param(onyx_trainer *t, const char *name, float *dst, int64_t numel)
{
    for (int k = 0; k < t->n_params; k++) {
        if (strcmp(t->m->values[t->param_v[k]].name, name) != 0)
            continue;
        if (numel != t->param_numel[k])
            return tfail(t, ONYX_ERR_SHAPE, "parameter \"%s\" has %lld elements, not %lld", name,
                         (long long)t->param_numel[k], (long long)numel);
        memcpy(dst, t->params + t->param_off[k], (size_t)numel * sizeof(float));
        return ONYX_OK;
    }
    return tfail(t, ONYX_ERR_INVALID_ARG, "\"%s\" is not a trained parameter", name);
}

/* ---- export and checkpoints --------------------------------------------------------------- */

/* The model with the current weights (and running statistics), serialized; weights that do not
 * fit protobuf's 2 GiB go to ext_path when it is not NULL. */
static onyx_status current_model(onyx_trainer *t, const char *ext_path, void **out,
                                 size_t *out_size)
{
    int n = t->n_params + t->n_state;
    onyx_initializer_update *u = onyx_calloc((size_t)n + 1, sizeof(*u));
    onyx_tensor *vals = onyx_calloc((size_t)n + 1, sizeof(onyx_tensor));
    if (u == NULL || vals == NULL) {
        free(u);
        free(vals);
        return tfail(t, ONYX_ERR_NOMEM, "out of memory");
    }
    for (int k = 0; k < n; k++) {
        int v = k < t->n_params ? t->param_v[k] : t->state_v[k - t->n_params];
        vals[k] = t->m->values[v].info;
        vals[k].data = k < t->n_params ? (void *)(t->params + t->param_off[k])
                                       : (void *)t->state[k - t->n_params];
        u[k].name = t->m->values[v].name;
        u[k].value = &vals[k];
    }
    onyx_error err;
    onyx_status st = onyx_model_rewrite(t->src, t->src_size, t->base_dir, u, (size_t)n, ext_path,
                                        out, out_size, &err);
    free(u);
    free(vals);
    if (st != ONYX_OK)
        return tfail(t, st, "%s", err.msg);
    return ONYX_OK;
}

static bool write_bytes(FILE *f, void *ctx)
{
    const ProtobufCBinaryData *b = ctx;
    return b->len == 0 || fwrite(b->data, 1, b->len, f) == b->len;
}

onyx_status onyx_trainer_export(onyx_trainer *t, const char *path)
{
    void *bytes;
    size_t size;
    /* A model over 2 GiB keeps its large weights in "<path>.data" beside it. */
    size_t n = strlen(path);
    char *ext = malloc(n + 6);
    if (ext == NULL)
        return tfail(t, ONYX_ERR_NOMEM, "out of memory");
    snprintf(ext, n + 6, "%s.data", path);
    onyx_status st = current_model(t, ext, &bytes, &size);
    free(ext);
    if (st != ONYX_OK)
        return st;
    ProtobufCBinaryData b = {size, bytes};
    onyx_error err;
    st = onyx_write_file_atomic(path, write_bytes, &b, &err);
    free(bytes);
    if (st != ONYX_OK)
        return tfail(t, st, "%s", err.msg);
    return ONYX_OK;
}

static Onnx__TensorProto *state_tensor(const char *pname, const char *suffix, const float *data,
                                       int64_t numel, int64_t *dim, char *namebuf, size_t nbsize)
{
    Onnx__TensorProto *tp = malloc(sizeof(*tp));
    if (tp == NULL)
        return NULL;
    onnx__tensor_proto__init(tp);
    snprintf(namebuf, nbsize, "%s/%s", pname, suffix);
    tp->name = namebuf;
    tp->has_data_type = 1;
    tp->data_type = ONYX_DTYPE_F32;
    *dim = numel;
    tp->n_dims = 1;
    tp->dims = dim;
    tp->has_raw_data = 1;
    tp->raw_data.len = (size_t)numel * sizeof(float);
    tp->raw_data.data = (uint8_t *)(uintptr_t)data;
    return tp;
}

/* training_state.pb, serialized into a new buffer. */
static onyx_status serialize_state(onyx_trainer *t, uint8_t **out, size_t *out_size)
{
    Onyx__TrainingState ts = ONYX__TRAINING_STATE__INIT;
    Onyx__HyperParameters hp = ONYX__HYPER_PARAMETERS__INIT;
    const onyx_optim_config *c = &t->oc;
    ts.has_format_version = 1, ts.format_version = FORMAT_VERSION;
    ts.has_step = 1, ts.step = t->step;
    ts.has_epoch = 1, ts.epoch = t->epoch;
    ts.has_position = 1, ts.position = t->position;
    ts.has_data_seed = 1, ts.data_seed = t->data_seed;
    ts.has_seed = 1, ts.seed = t->opt.seed;
    ts.optimizer = (char *)optimizer_name(c->kind);
    ts.loss = (char *)loss_name(t->opt.loss);
    ts.output = t->m->values[t->out_v].name;
    ts.has_last_loss = 1, ts.last_loss = t->last_loss;
    hp.has_lr = 1, hp.lr = c->lr;
    hp.has_momentum = 1, hp.momentum = c->momentum;
    hp.has_nesterov = 1, hp.nesterov = c->nesterov;
    hp.has_weight_decay = 1, hp.weight_decay = c->weight_decay;
    hp.has_beta1 = 1, hp.beta1 = c->beta1;
    hp.has_beta2 = 1, hp.beta2 = c->beta2;
    hp.has_eps = 1, hp.eps = c->eps;
    hp.schedule = (char *)schedule_name(c->schedule);
    hp.has_step_size = 1, hp.step_size = c->step_size;
    hp.has_gamma = 1, hp.gamma = c->gamma;
    hp.has_total_steps = 1, hp.total_steps = c->total_steps;
    hp.has_warmup = 1, hp.warmup = c->warmup;
    hp.has_clip_grad_norm = 1, hp.clip_grad_norm = t->opt.clip_grad_norm;
    ts.hyper = &hp;
    uint64_t rng[4];
    memcpy(rng, t->s->rng.s, sizeof rng);
    ts.n_rng_state = 4;
    ts.rng_state = rng;

    int np = t->n_params;
    int n_state = c->kind == ONYX_OPTIMIZER_SGD ? 1 : 2;
    char **pnames = onyx_calloc((size_t)np + 1, sizeof(char *));
    Onnx__TensorProto **tps = onyx_calloc((size_t)(np * n_state) + 1, sizeof(*tps));
    char(*names)[256] = onyx_calloc((size_t)(np * n_state) + 1, 256);
    int64_t *dims = onyx_calloc((size_t)(np * n_state) + 1, sizeof(int64_t));
    onyx_status st = ONYX_OK;
    if (!pnames || !tps || !names || !dims) {
        st = tfail(t, ONYX_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int k = 0; k < np; k++) {
        pnames[k] = t->m->values[t->param_v[k]].name;
        for (int j = 0; j < n_state; j++) {
            int q = k * n_state + j;
            const float *buf = (j == 0 ? t->m1 : t->m2) + t->param_off[k];
            tps[q] = state_tensor(pnames[k], j == 0 ? "m" : "v", buf, t->param_numel[k], &dims[q],
                                  names[q], 256);
            if (tps[q] == NULL) {
                st = tfail(t, ONYX_ERR_NOMEM, "out of memory");
                goto done;
            }
        }
    }
    ts.n_params = (size_t)np;
    ts.params = pnames;
    ts.n_optimizer_state = (size_t)(np * n_state);
    ts.optimizer_state = tps;
    size_t size = onyx__training_state__get_packed_size(&ts);
    *out = malloc(size ? size : 1);
    if (*out == NULL) {
        st = tfail(t, ONYX_ERR_NOMEM, "out of memory");
        goto done;
    }
    *out_size = onyx__training_state__pack(&ts, *out);
done:
    if (tps)
        for (int q = 0; q < np * n_state; q++)
            free(tps[q]);
    free(tps);
    free(pnames);
    free(names);
    free(dims);
    return st;
}

onyx_status onyx_trainer_save(onyx_trainer *t, const char *path)
{
    if (t == NULL || path == NULL)
        return ONYX_ERR_INVALID_ARG;
    t->errmsg[0] = '\0';
    void *model = NULL;
    size_t model_size = 0;
    uint8_t *state = NULL;
    size_t state_size = 0;
    onyx_status st = current_model(t, NULL, &model, &model_size);
    if (st == ONYX_OK)
        st = serialize_state(t, &state, &state_size);
    if (st == ONYX_OK) {
        char manifest[1024];
        snprintf(manifest, sizeof manifest,
                 "onyx checkpoint format %d\n"
                 "onyx %s\n"
                 "model: %s\n"
                 "step: %lld\nepoch: %lld\nposition: %lld\n"
                 "loss: %s (last %.6g)\n"
                 "optimizer: %s, lr %g\n"
                 "parameters: %d tensors, %zu floats\n",
                 FORMAT_VERSION, ONYX_VERSION_STRING, t->path, (long long)t->step,
                 (long long)t->epoch, (long long)t->position, loss_name(t->opt.loss),
                 (double)t->last_loss, optimizer_name(t->oc.kind), (double)t->oc.lr, t->n_params,
                 t->n_floats);
        onyx_ckpt_blobs b = {model, model_size, state, state_size, manifest};
        onyx_error err;
        st = onyx_ckpt_write(path, &b, &err);
        if (st != ONYX_OK)
            tfail(t, st, "%s", err.msg);
    }
    free(model);
    free(state);
    return st;
}

static bool parse_optimizer(const char *s, onyx_optimizer *o)
{
    if (s == NULL)
        return false;
    for (int k = 0; k <= ONYX_OPTIMIZER_ADAMW; k++)
        if (strcmp(s, optimizer_name((onyx_optimizer)k)) == 0) {
            *o = (onyx_optimizer)k;
            return true;
        }
    return false;
}

static bool parse_schedule(const char *s, onyx_schedule *o)
{
    if (s == NULL)
        return false;
    for (int k = 0; k <= ONYX_SCHEDULE_COSINE; k++)
        if (strcmp(s, schedule_name((onyx_schedule)k)) == 0) {
            *o = (onyx_schedule)k;
            return true;
        }
    return false;
}

/* Reads and checks a checkpoint's state; the caller frees *ts with
 * onyx__training_state__free_unpacked and the model bytes with free(). */
static onyx_status read_checkpoint(const char *path, void **model, size_t *model_size,
                                   Onyx__TrainingState **ts, onyx_error *err)
{
    void *state = NULL;
    size_t state_size = 0;
    char *manifest = NULL;
    *ts = NULL;
    onyx_status st = onyx_ckpt_read(path, model, model_size, &state, &state_size, &manifest, err);
    if (st != ONYX_OK)
        return st;
    free(manifest);
    *ts = onyx__training_state__unpack(NULL, state_size, state);
    free(state);
    if (*ts == NULL) {
        free(*model);
        *model = NULL;
        return onyx_err(err, ONYX_ERR_INVALID_MODEL, "%s: training_state.pb is corrupt", path);
    }
    const Onyx__TrainingState *s = *ts;
    onyx_optimizer o;
    onyx_schedule sc;
    const char *why = NULL;
    if (!s->has_format_version || s->format_version != FORMAT_VERSION)
        why = "an unknown training_state format version";
    else if (!parse_optimizer(s->optimizer, &o))
        why = "an unknown optimizer";
    else if (s->hyper == NULL || !parse_schedule(s->hyper->schedule, &sc))
        why = "no hyper-parameters";
    else if (s->n_rng_state != 4)
        why = "no generator state";
    else if (s->n_optimizer_state != s->n_params * (o == ONYX_OPTIMIZER_SGD ? 1 : 2))
        why = "optimizer state that does not match its parameter list";
    if (why != NULL) {
        onyx__training_state__free_unpacked(*ts, NULL);
        *ts = NULL;
        free(*model);
        *model = NULL;
        return onyx_err(err, ONYX_ERR_INVALID_MODEL, "%s: training_state.pb has %s", path, why);
    }
    return ONYX_OK;
}

onyx_status onyx_trainer_load(onyx_trainer *t, const char *path)
{
    if (t == NULL || path == NULL)
        return ONYX_ERR_INVALID_ARG;
    t->errmsg[0] = '\0';
    void *model_bytes = NULL;
    size_t model_size = 0;
    Onyx__TrainingState *ts = NULL;
    onyx_model *cm = NULL;
    float *np = NULL;
    float *nm1 = NULL;
    float *nm2 = NULL;
    float **nstate = NULL;
    onyx_error err;
    onyx_status st = read_checkpoint(path, &model_bytes, &model_size, &ts, &err);
    if (st != ONYX_OK)
        return tfail(t, st, "%s", err.msg);
    /* The checkpoint's model must be ours: same trained parameters, same shapes. */
    onyx_load_options lo;
    onyx_load_options_init(&lo);
    lo.registry = t->opt.registry; /* a model with custom ops needs them to load */
    st = onyx_model_load_buffer_ex(model_bytes, model_size, NULL, path, &lo, &cm, &err);
    if (st != ONYX_OK) {
        tfail(t, ONYX_ERR_INVALID_MODEL, "%s: model.onnx: %s", path, err.msg);
        goto done;
    }
    if (ts->n_params != (size_t)t->n_params) {
        st = tfail(t, ONYX_ERR_INVALID_MODEL,
                   "%s: the checkpoint trains %zu parameters, this model %d: a checkpoint of "
                   "another model?",
                   path, ts->n_params, t->n_params);
        goto done;
    }
    size_t bytes = (t->n_floats ? t->n_floats : 16) * sizeof(float);
    np = aligned_alloc(64, bytes);
    nm1 = aligned_alloc(64, bytes);
    nm2 = aligned_alloc(64, bytes);
    nstate = onyx_calloc((size_t)t->n_state + 1, sizeof(float *));
    if (!np || !nm1 || !nm2 || !nstate) {
        st = tfail(t, ONYX_ERR_NOMEM, "out of memory");
        goto done;
    }
    memcpy(np, t->params, bytes); /* keeps the alignment padding identical */
    memset(nm1, 0, bytes);
    memset(nm2, 0, bytes);
    onyx_optimizer okind = ONYX_OPTIMIZER_SGD;
    parse_optimizer(ts->optimizer, &okind);
    int n_opt = okind == ONYX_OPTIMIZER_SGD ? 1 : 2;
    for (int k = 0; k < t->n_params; k++) {
        const onyx_value *mine = &t->m->values[t->param_v[k]];
        if (ts->params[k] == NULL || strcmp(ts->params[k], mine->name) != 0) {
            st = tfail(t, ONYX_ERR_INVALID_MODEL,
                       "%s: parameter %d is \"%s\" in the checkpoint but \"%s\" here", path, k,
                       ts->params[k] ? ts->params[k] : "", mine->name);
            goto done;
        }
        int v = onyx_model_find_value(cm, mine->name);
        const onyx_value *theirs = v >= 0 ? &cm->values[v] : NULL;
        if (theirs == NULL || theirs->kind != ONYX_VALUE_INITIALIZER ||
            theirs->info.dtype != ONYX_DTYPE_F32 || !onyx_shape_equal(&theirs->info, &mine->info)) {
            char a[96];
            char b[96];
            st = tfail(t, ONYX_ERR_INVALID_MODEL,
                       "%s: parameter \"%s\" is %s in the checkpoint, %s here", path, mine->name,
                       theirs ? onyx_shape_str(&theirs->info, a, sizeof a) : "missing",
                       onyx_shape_str(&mine->info, b, sizeof b));
            goto done;
        }
        memcpy(np + t->param_off[k], theirs->info.data, (size_t)t->param_numel[k] * sizeof(float));
        for (int j = 0; j < n_opt; j++) {
            const Onnx__TensorProto *tp = ts->optimizer_state[k * n_opt + j];
            size_t want = (size_t)t->param_numel[k] * sizeof(float);
            if (tp->data_type != ONYX_DTYPE_F32 || !tp->has_raw_data || tp->raw_data.len != want) {
                st = tfail(t, ONYX_ERR_INVALID_MODEL,
                           "%s: optimizer state of \"%s\" has the wrong size", path, mine->name);
                goto done;
            }
            memcpy((j == 0 ? nm1 : nm2) + t->param_off[k], tp->raw_data.data, want);
        }
    }
    for (int k = 0; k < t->n_state; k++) {
        const onyx_value *mine = &t->m->values[t->state_v[k]];
        int v = onyx_model_find_value(cm, mine->name);
        const onyx_value *theirs = v >= 0 ? &cm->values[v] : NULL;
        if (theirs == NULL || theirs->info.dtype != mine->info.dtype ||
            !onyx_shape_equal(&theirs->info, &mine->info) || theirs->info.data == NULL) {
            st = tfail(t, ONYX_ERR_INVALID_MODEL, "%s: buffer \"%s\" is missing or differs", path,
                       mine->name);
            goto done;
        }
        size_t nb = onyx_nbytes(&mine->info);
        nstate[k] = malloc(nb + 1);
        if (nstate[k] == NULL) {
            st = tfail(t, ONYX_ERR_NOMEM, "out of memory");
            goto done;
        }
        memcpy(nstate[k], theirs->info.data, nb);
    }
    /* Everything checked: commit. */
    memcpy(t->params, np, bytes);
    memcpy(t->m1, nm1, bytes);
    memcpy(t->m2, nm2, bytes);
    for (int k = 0; k < t->n_state; k++)
        memcpy(t->state[k], nstate[k], onyx_nbytes(&t->m->values[t->state_v[k]].info));
    const Onyx__HyperParameters *hp = ts->hyper;
    onyx_optim_config *c = &t->oc;
    c->kind = okind;
    c->lr = hp->lr;
    c->momentum = hp->momentum;
    c->nesterov = hp->nesterov;
    c->weight_decay = hp->weight_decay;
    c->beta1 = hp->beta1;
    c->beta2 = hp->beta2;
    c->eps = hp->eps;
    parse_schedule(hp->schedule, &c->schedule);
    c->step_size = hp->step_size;
    c->gamma = hp->gamma;
    c->total_steps = hp->total_steps;
    c->warmup = hp->warmup;
    t->opt.optimizer = okind;
    t->opt.clip_grad_norm = hp->clip_grad_norm;
    t->opt.seed = ts->seed;
    t->step = ts->step;
    t->epoch = ts->epoch;
    t->position = ts->position;
    t->data_seed = ts->data_seed;
    t->last_loss = ts->last_loss;
    memcpy(t->s->rng.s, ts->rng_state, sizeof t->s->rng.s);
    st = ONYX_OK;
done:
    if (nstate)
        for (int k = 0; k < t->n_state; k++)
            free(nstate[k]);
    free(nstate);
    free(np);
    free(nm1);
    free(nm2);
    onyx_model_destroy(cm);
    onyx__training_state__free_unpacked(ts, NULL);
    free(model_bytes);
    return st;
}

onyx_status onyx_checkpoint_info_read(const char *path, onyx_checkpoint_info *info, onyx_error *err)
{
    void *model = NULL;
    size_t model_size = 0;
    Onyx__TrainingState *ts = NULL;
    onyx_status st = read_checkpoint(path, &model, &model_size, &ts, err);
    if (st != ONYX_OK)
        return st;
    free(model);
    memset(info, 0, sizeof(*info));
    info->progress.step = ts->step;
    info->progress.epoch = ts->epoch;
    info->progress.position = ts->position;
    info->progress.data_seed = ts->data_seed;
    info->progress.last_loss = ts->last_loss;
    snprintf(info->optimizer, sizeof info->optimizer, "%s", ts->optimizer ? ts->optimizer : "");
    snprintf(info->loss, sizeof info->loss, "%s", ts->loss ? ts->loss : "");
    info->lr = ts->hyper ? ts->hyper->lr : 0.0f;
    info->n_params = (int64_t)ts->n_params;
    onyx__training_state__free_unpacked(ts, NULL);
    return ONYX_OK;
}

onyx_status onyx_checkpoint_export(const char *path, const char *out_path, onyx_error *err)
{
    void *model = NULL;
    size_t model_size = 0;
    Onyx__TrainingState *ts = NULL;
    onyx_status st = read_checkpoint(path, &model, &model_size, &ts, err);
    if (st != ONYX_OK)
        return st;
    onyx__training_state__free_unpacked(ts, NULL);
    ProtobufCBinaryData b = {model_size, model};
    st = onyx_write_file_atomic(out_path, write_bytes, &b, err);
    free(model);
    return st;
}
