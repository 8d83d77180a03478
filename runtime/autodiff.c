/*
 * autodiff.c — reverse-mode gradients over a session's graph.
 *
 * A plan is made once per trainer: which values need a gradient (those on a differentiable path
 * from a trainable parameter to the root, the value the loss is attached to) and which nodes
 * run backward. Each step, after the session's forward (which keeps every activation and each
 * node's saved memory), onyx_grad_backward walks those nodes in reverse topological order and
 * calls impl->backward, which accumulates into the inputs' gradient buffers. Parameters' gradient
 * buffers are the trainer's flat gradient buffer; the others are grow-only session-side buffers.
 *
 * Nothing is zeroed up front: a buffer is "fresh" until its first writer. An op that can write a
 * fresh gradient instead of accumulating (ONYX_OPF_GRAD_FRESH: Gemm, MatMul) gets the buffer as
 * is with a bit in ctx->grad_fresh; any other op gets it zeroed first; a buffer nobody wrote is
 * zeroed at the end. For an MLP that saves a memset of every weight's gradient and the GEMM's
 * read of it each step.
 */
#include "internal.h"
#include "ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct onyx_grad_plan {
    onyx_session *s;
    int root;
    bool *need;   /* per value: has a gradient buffer */
    float **grad; /* per value: its gradient (param: into the trainer's flat buffer) */
    size_t *cap;  /* per value: capacity of an own buffer (0 for params) */
    bool *own;    /* per value: grad[v] is owned here */
    bool *fresh;  /* per value, during a backward pass: grad[v] not written yet (undefined) */
    bool *skip;   /* per value: its gradient is not computed (onyx_grad_skip) */
    int *nodes;   /* backward nodes, in reverse topological order */
    int n_nodes;
    onyx_tensor *dout;
    onyx_tensor *din;
};

static bool is_float_value(const onyx_model *m, int v)
{
    return v >= 0 && m->values[v].info.dtype == ONYX_DTYPE_F32;
}

static bool diff_input(const onyx_node *n, int j)
{
    return j < 32 && (n->impl->grad_inputs >> j & 1u) && n->in[j] >= 0;
}

onyx_status onyx_grad_reach(const onyx_model *m, int root, bool *to_root)
{
    /* to_root[v]: v reaches the root through differentiable inputs of float32 values */
    memset(to_root, 0, sizeof(bool) * (size_t)m->n_values);
    to_root[root] = true;
    for (int i = m->n_nodes - 1; i >= 0; i--) {
        const onyx_node *n = &m->nodes[i];
        bool any = false;
        for (int j = 0; j < n->n_out; j++)
            any = any || (n->out[j] >= 0 && to_root[n->out[j]]);
        if (!any)
            continue;
        for (int j = 0; j < n->n_in; j++)
            if (diff_input(n, j) && is_float_value(m, n->in[j]))
                to_root[n->in[j]] = true;
    }
    return ONYX_OK;
}

onyx_status onyx_grad_plan_create(onyx_session *s, int root, const bool *is_param,
                                  onyx_grad_plan **out, onyx_error *err)
{
    const onyx_model *m = s->m;
    *out = NULL;
    onyx_grad_plan *p = calloc(1, sizeof(*p));
    size_t nv = (size_t)m->n_values + 1;
    bool *from = onyx_calloc(nv, sizeof(bool));
    bool *to = onyx_calloc(nv, sizeof(bool));
    onyx_status st = ONYX_OK;
    if (p == NULL || from == NULL || to == NULL) {
        st = onyx_err(err, ONYX_ERR_NOMEM, "out of memory");
        goto done;
    }
    p->s = s;
    p->root = root;
    p->need = onyx_calloc(nv, sizeof(bool));
    p->grad = onyx_calloc(nv, sizeof(float *));
    p->cap = onyx_calloc(nv, sizeof(size_t));
    p->own = onyx_calloc(nv, sizeof(bool));
    p->fresh = onyx_calloc(nv, sizeof(bool));
    p->skip = onyx_calloc(nv, sizeof(bool));
    p->nodes = onyx_calloc((size_t)m->n_nodes + 1, sizeof(int));
    p->dout = onyx_calloc((size_t)m->max_out + 1, sizeof(onyx_tensor));
    p->din = onyx_calloc((size_t)m->max_in + 1, sizeof(onyx_tensor));
    if (!p->need || !p->grad || !p->cap || !p->own || !p->fresh || !p->skip || !p->nodes ||
        !p->dout || !p->din) {
        st = onyx_err(err, ONYX_ERR_NOMEM, "out of memory");
        goto done;
    }
    /* from[v]: v depends on a parameter through differentiable float32 inputs */
    for (int v = 0; v < m->n_values; v++)
        from[v] = is_param[v];
    for (int i = 0; i < m->n_nodes; i++) {
        const onyx_node *n = &m->nodes[i];
        bool any = false;
        for (int j = 0; j < n->n_in; j++)
            any = any || (diff_input(n, j) && from[n->in[j]]);
        for (int j = 0; j < n->n_out; j++)
            if (n->out[j] >= 0 && is_float_value(m, n->out[j]))
                from[n->out[j]] = from[n->out[j]] || any;
    }
    onyx_grad_reach(m, root, to);
    for (int v = 0; v < m->n_values; v++)
        p->need[v] = from[v] && to[v];
    if (!p->need[root]) {
        st = onyx_err(err, ONYX_ERR_INVALID_ARG,
                      "%s: no trainable parameter reaches \"%s\" through differentiable ops",
                      m->name, m->values[root].name);
        goto done;
    }
    for (int i = m->n_nodes - 1; i >= 0; i--) {
        const onyx_node *n = &m->nodes[i];
        bool out_needs = false;
        for (int j = 0; j < n->n_out; j++)
            out_needs = out_needs || (n->out[j] >= 0 && p->need[n->out[j]]);
        bool in_needs = false;
        for (int j = 0; j < n->n_in; j++)
            in_needs = in_needs || (diff_input(n, j) && p->need[n->in[j]]);
        if (!out_needs || !in_needs)
            continue;
        if (n->impl->backward == NULL) {
            st = onyx_err(err, ONYX_ERR_UNSUPPORTED,
                          "%s: node \"%s\" (%s) has no gradient, and trainable parameters reach "
                          "the loss through it (freeze them, or drop the node)",
                          m->name, n->name, n->op_type);
            goto done;
        }
        p->nodes[p->n_nodes++] = i;
    }
done:
    free(from);
    free(to);
    if (st != ONYX_OK) {
        onyx_grad_plan_destroy(p);
        return st;
    }
    *out = p;
    return ONYX_OK;
}

void onyx_grad_plan_destroy(onyx_grad_plan *p)
{
    if (p == NULL)
        return;
    if (p->own && p->grad)
        for (int v = 0; v < p->s->m->n_values; v++)
            if (p->own[v])
                free(p->grad[v]);
    free(p->need);
    free(p->grad);
    free(p->cap);
    free(p->own);
    free(p->fresh);
    free(p->skip);
    free(p->nodes);
    free(p->dout);
    free(p->din);
    free(p);
}

bool onyx_grad_needed(const onyx_grad_plan *p, int v)
{
    return p->need[v];
}

void onyx_grad_skip(onyx_grad_plan *p, int v, bool skip)
{
    p->skip[v] = skip;
}

void onyx_grad_set_param_buffer(onyx_grad_plan *p, int v, float *grad)
{
    p->grad[v] = grad;
    p->own[v] = false;
}

/* Sizes every non-parameter gradient buffer for this step's shapes; marks all of them fresh. */
static onyx_status prepare(onyx_grad_plan *p)
{
    onyx_session *s = p->s;
    const onyx_model *m = s->m;
    for (int v = 0; v < m->n_values; v++) {
        p->fresh[v] = p->need[v] && !p->skip[v];
        if (!p->fresh[v] || (p->grad[v] != NULL && !p->own[v]))
            continue;
        size_t nb = onyx_nbytes(&s->vals[v]);
        if (nb > p->cap[v] || p->grad[v] == NULL) {
            size_t want = (nb + 63) & ~(size_t)63;
            float *g = aligned_alloc(64, want ? want : 64);
            if (g == NULL)
                return onyx_session_fail(s, ONYX_ERR_NOMEM,
                                         "out of memory for the gradient of "
                                         "\"%s\"",
                                         m->values[v].name);
            free(p->grad[v]);
            p->grad[v] = g;
            p->cap[v] = want;
            p->own[v] = true;
        }
    }
    return ONYX_OK;
}

/* Zeroes value v's gradient if nobody wrote it yet this pass. */
static void settle(onyx_grad_plan *p, int v)
{
    if (p->fresh[v]) {
        memset(p->grad[v], 0, onyx_nbytes(&p->s->vals[v]));
        p->fresh[v] = false;
    }
}

/* The ctx->grad_fresh bits for node n's backward (its op writes fresh buffers, ONYX_OPF_GRAD_FRESH);
 * every other gradient it will write is zeroed. A value the node reads twice (Gemm of x by x)
 * gets no bit: the op would write it twice. */
static uint32_t fresh_bits(onyx_grad_plan *p, const onyx_node *n)
{
    uint32_t bits = 0;
    for (int j = 0; j < n->n_in; j++) {
        if (p->din[j].data == NULL)
            continue;
        int v = n->in[j];
        bool once = (n->impl->flags & ONYX_OPF_GRAD_FRESH) && j < 32;
        for (int i = 0; i < n->n_in && once; i++)
            once = i == j || n->in[i] != v || p->din[i].data == NULL;
        if (once && p->fresh[v])
            bits |= 1u << j;
        else
            settle(p, v);
    }
    for (int j = 0; j < n->n_in; j++)
        if (p->din[j].data != NULL)
            p->fresh[n->in[j]] = false;
    return bits;
}

onyx_status onyx_grad_backward(onyx_grad_plan *p, const float *droot)
{
    onyx_session *s = p->s;
    const onyx_model *m = s->m;
    onyx_status st = prepare(p);
    if (st != ONYX_OK)
        return st;
    memcpy(p->grad[p->root], droot, onyx_nbytes(&s->vals[p->root]));
    p->fresh[p->root] = false;
    for (int k = 0; k < p->n_nodes; k++) {
        int i = p->nodes[k];
        const onyx_node *n = &m->nodes[i];
        for (int j = 0; j < n->n_in; j++) {
            if (n->in[j] >= 0) {
                s->in[j] = s->vals[n->in[j]];
            } else {
                memset(&s->in[j], 0, sizeof s->in[j]);
                s->in[j].rank = -1;
            }
            p->din[j] = s->in[j];
            p->din[j].data = diff_input(n, j) && p->need[n->in[j]] && !p->skip[n->in[j]]
                                 ? p->grad[n->in[j]]
                                 : NULL;
        }
        for (int j = 0; j < n->n_out; j++) {
            if (n->out[j] >= 0) {
                s->out[j] = s->vals[n->out[j]];
            } else {
                memset(&s->out[j], 0, sizeof s->out[j]);
                s->out[j].rank = -1;
            }
            p->dout[j] = s->out[j];
            p->dout[j].data = n->out[j] >= 0 && p->need[n->out[j]] ? p->grad[n->out[j]] : NULL;
            if (p->dout[j].data != NULL)
                settle(p, n->out[j]); /* no gradient reached it: zero */
        }
        onyx_kctx ctx = {.mode = s->mode,
                         .rng = &s->rng,
                         .saved = s->saved[i],
                         .pool = s->pool,
                         .grad_fresh = fresh_bits(p, n)};
        if (n->impl->scratch_size) {
            size_t need = n->impl->scratch_size(n, s->in, s->out);
            if (need > s->scratch_cap) {
                size_t want = (need + 63) & ~(size_t)63;
                void *q = aligned_alloc(64, want);
                if (q == NULL)
                    return onyx_session_fail(s, ONYX_ERR_NOMEM, "out of memory for scratch");
                free(s->scratch);
                s->scratch = q;
                s->scratch_cap = want;
            }
            ctx.scratch = need ? s->scratch : NULL;
        }
        n->impl->backward(n, &ctx, s->in, s->out, p->dout, p->din);
    }
    for (int v = 0; v < m->n_values; v++)
        if (p->need[v] && !p->skip[v])
            settle(p, v); /* a parameter no gradient reached holds zeros */
    return ONYX_OK;
}

const float *onyx_grad_of(const onyx_grad_plan *p, int v)
{
    return p->need[v] ? p->grad[v] : NULL;
}

/* ---- the Gradient op (ai.onnx.preview.training, opset 1) ----------------------------------------
 *
 * Gradient(xs..., zs...; xs, zs, y) outputs d y / d xs[i]: the gradient of sum(y) w.r.t. each
 * tensor named in xs (a graph input, an initializer or an intermediate value), zs being further
 * inputs that get none. It runs the backward pass of the graph it sits in, so it lives here
 * rather than in ops/: graph.c appends y as a hidden last input (ONYX_OPF_GRAPH) so that it
 * runs after y; forward plans the backward pass for the current run (this allocates: the op is
 * meant for tests and for training graphs built by exporters, not for hot loops).
 */

#define GRADIENT_MAX_OUT 64

typedef struct gradient_priv {
    int n_xs;
} gradient_priv;

static const onyx_attr *string_list(const onyx_node *n, const char *name)
{
    const onyx_attr *a = onyx_node_attr(n, name);
    return a != NULL && a->type == ONYX_ATTR_STRINGS ? a : NULL;
}

static onyx_status gradient_init(onyx_node *n, onyx_error *err)
{
    const onyx_attr *xs = string_list(n, "xs");
    const onyx_attr *zs = string_list(n, "zs");
    if (xs == NULL || xs->n == 0)
        return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL,
                             "attribute xs (the names of the tensors to differentiate by) is "
                             "required");
    if (onyx_node_attr(n, "zs") != NULL && zs == NULL)
        return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL, "attribute zs must be strings");
    size_t n_zs = zs ? zs->n : 0;
    /* graph.c appended y: inputs are xs, zs, y */
    if ((size_t)n->n_in != xs->n + n_zs + 1 || (size_t)n->n_out > xs->n ||
        n->n_out > GRADIENT_MAX_OUT)
        return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL,
                             "has %d inputs and %d outputs; xs names %zu and zs %zu tensors",
                             n->n_in - 1, n->n_out, xs->n, n_zs);
    gradient_priv p = {(int)xs->n};
    return onyx_node_set_priv(n, &p, sizeof p, err);
}

static onyx_status gradient_infer(const onyx_node *n, const onyx_tensor *in, onyx_tensor *out,
                                  onyx_error *err)
{
    const onyx_tensor *y = &in[n->n_in - 1];
    if (y->dtype != ONYX_DTYPE_UNDEFINED && y->dtype != ONYX_DTYPE_F32)
        return onyx_node_err(err, n, ONYX_ERR_UNSUPPORTED, "y has dtype %s; gradients are float32",
                             onyx_dtype_name(y->dtype));
    for (int j = 0; j < n->n_out; j++) {
        if (!onyx_node_has_out(n, j))
            continue;
        if (in[j].dtype != ONYX_DTYPE_UNDEFINED && in[j].dtype != ONYX_DTYPE_F32)
            return onyx_node_err(err, n, ONYX_ERR_UNSUPPORTED,
                                 "input %d has dtype %s; gradients are float32", j,
                                 onyx_dtype_name(in[j].dtype));
        out[j] = in[j];
        out[j].dtype = ONYX_DTYPE_F32;
        out[j].data = NULL;
    }
    return ONYX_OK;
}

static void gradient_forward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                             onyx_tensor *out)
{
    onyx_session *s = ctx->session;
    const onyx_model *m = s->m;
    const gradient_priv *p = n->priv;
    int y = n->in[n->n_in - 1];
    /* out[] is the session's scratch array, which the backward pass reuses: keep copies. */
    onyx_tensor outs[GRADIENT_MAX_OUT];
    int n_out = n->n_out < (int)(sizeof outs / sizeof outs[0]) ? n->n_out : 0;
    if (n_out < n->n_out) {
        onyx_node_err(ctx->err, n, ONYX_ERR_UNSUPPORTED, "too many outputs");
        return;
    }
    memcpy(outs, out, sizeof(onyx_tensor) * (size_t)n_out);
    bool *is_x = onyx_calloc((size_t)m->n_values + 1, sizeof(bool));
    int64_t ny = onyx_numel(&in[n->n_in - 1]);
    float *ones = onyx_calloc((size_t)ny + 1, sizeof(float));
    onyx_grad_plan *plan = NULL;
    if (is_x == NULL || ones == NULL) {
        onyx_node_err(ctx->err, n, ONYX_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int64_t k = 0; k < ny; k++)
        ones[k] = 1.0f; /* d sum(y) / d y */
    for (int j = 0; j < p->n_xs; j++)
        is_x[n->in[j]] = true;
    onyx_status st = onyx_grad_plan_create(s, y, is_x, &plan, ctx->err);
    if (st != ONYX_OK) {
        char msg[ONYX_ERRMSG_SIZE];
        snprintf(msg, sizeof msg, "%s", ctx->err->msg);
        onyx_node_err(ctx->err, n, st, "%s", msg);
        goto done;
    }
    for (int j = 0; j < n_out; j++) {
        if (!onyx_node_has_out(n, j))
            continue;
        memset(outs[j].data, 0, onyx_nbytes(&outs[j]));
        if (onyx_grad_needed(plan, n->in[j]))
            onyx_grad_set_param_buffer(plan, n->in[j], outs[j].data);
    }
    st = onyx_grad_backward(plan, ones);
    if (st != ONYX_OK)
        onyx_node_err(ctx->err, n, st, "%s", onyx_session_errmsg(s));
done:
    onyx_grad_plan_destroy(plan);
    free(is_x);
    free(ones);
}

const onyx_op_impl onyx_impl_gradient = {
    .init = gradient_init,
    .infer = gradient_infer,
    .forward = gradient_forward,
    .flags = ONYX_OPF_GRAPH,
};
