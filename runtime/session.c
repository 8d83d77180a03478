/*
 * session.c — running a loaded model.
 *
 * A run binds the caller's inputs (borrowed, never copied), then walks the nodes in topological
 * order: impl->infer gives each output's shape from the actual inputs (and rejects what does
 * not fit), the output gets a session buffer, impl->forward computes. Buffers are kept between
 * runs and only grow, so repeated runs with the same shapes allocate nothing. Nodes folded at
 * load time (graph.c) are not run again.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct onyx_session {
    const onyx_model *m;
    onyx_mode mode;
    onyx_rng rng;
    int threads;
    onyx_tensor *vals; /* the tensor of every value in the current run */
    void **buf;        /* session-owned buffer of each node output, or NULL */
    size_t *cap;       /* its capacity in bytes */
    bool *fed;         /* input value given in the current run */
    onyx_tensor *in;   /* scratch: one node's inputs */
    onyx_tensor *out;  /* scratch: one node's outputs */
    char errmsg[ONYX_ERRMSG_SIZE];
};

void onyx_session_options_init(onyx_session_options *opt)
{
    memset(opt, 0, sizeof(*opt));
    opt->mode = ONYX_MODE_INFER;
}

static bool mode_valid(onyx_mode mode)
{
    return mode == ONYX_MODE_INFER || mode == ONYX_MODE_TRAIN || mode == ONYX_MODE_GRAPH;
}

onyx_status onyx_session_create(const onyx_model *model, const onyx_session_options *opt,
                                onyx_session **out, onyx_error *err)
{
    if (out == NULL || model == NULL)
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "onyx_session_create: NULL argument");
    *out = NULL;
    onyx_session_options defaults;
    onyx_session_options_init(&defaults);
    if (opt == NULL)
        opt = &defaults;
    if (!mode_valid(opt->mode))
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "onyx_session_create: unknown mode %d",
                        (int)opt->mode);
    if (opt->threads < 0)
        return onyx_err(err, ONYX_ERR_INVALID_ARG,
                        "onyx_session_create: threads is %d, expected 0 (default) or more",
                        opt->threads);
    onyx_session *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return onyx_err(err, ONYX_ERR_NOMEM, "onyx_session_create: out of memory");
    size_t nv = (size_t)model->n_values + 1;
    s->m = model;
    s->mode = opt->mode;
    s->threads = opt->threads;
    onyx_rng_seed(&s->rng, opt->seed);
    s->vals = onyx_calloc(nv, sizeof(onyx_tensor));
    s->buf = onyx_calloc(nv, sizeof(void *));
    s->cap = onyx_calloc(nv, sizeof(size_t));
    s->fed = onyx_calloc(nv, sizeof(bool));
    s->in = onyx_calloc((size_t)model->max_in + 1, sizeof(onyx_tensor));
    s->out = onyx_calloc((size_t)model->max_out + 1, sizeof(onyx_tensor));
    if (!s->vals || !s->buf || !s->cap || !s->fed || !s->in || !s->out) {
        onyx_session_destroy(s);
        return onyx_err(err, ONYX_ERR_NOMEM, "onyx_session_create: out of memory");
    }
    *out = s;
    return ONYX_OK;
}

void onyx_session_destroy(onyx_session *s)
{
    if (s == NULL)
        return;
    if (s->buf)
        for (int i = 0; i < s->m->n_values; i++)
            free(s->buf[i]);
    free(s->buf);
    free(s->cap);
    free(s->vals);
    free(s->fed);
    free(s->in);
    free(s->out);
    free(s);
}

onyx_status onyx_session_set_mode(onyx_session *s, onyx_mode mode)
{
    if (!mode_valid(mode)) {
        snprintf(s->errmsg, sizeof s->errmsg, "unknown mode %d", (int)mode);
        return ONYX_ERR_INVALID_ARG;
    }
    s->mode = mode;
    return ONYX_OK;
}

onyx_mode onyx_session_mode(const onyx_session *s)
{
    return s->mode;
}

void onyx_session_set_seed(onyx_session *s, uint64_t seed)
{
    onyx_rng_seed(&s->rng, seed);
}

const char *onyx_session_errmsg(const onyx_session *s)
{
    return s ? s->errmsg : "";
}

static onyx_status fail(onyx_session *s, onyx_status code, const char *fmt, ...) ONYX_PRINTF(3, 4);

static onyx_status fail(onyx_session *s, onyx_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->errmsg, sizeof s->errmsg, fmt, ap);
    va_end(ap);
    return code;
}

static int find_value(const onyx_model *m, const char *name)
{
    for (int i = 0; i < m->n_values; i++)
        if (strcmp(m->values[i].name, name) == 0)
            return i;
    return -1;
}

/* Checks a fed tensor against what the model declares for value v. */
static onyx_status check_input(onyx_session *s, int v, const onyx_tensor *t)
{
    const onyx_value *val = &s->m->values[v];
    const onyx_tensor *d = &val->info;
    char got[128];
    char want[160];
    if (t->dtype != d->dtype)
        return fail(s, ONYX_ERR_SHAPE, "input \"%s\" has dtype %s, expected %s", val->name,
                    onyx_dtype_name(t->dtype), onyx_dtype_name(d->dtype));
    if (t->rank < 0 || t->rank > ONYX_MAX_RANK)
        return fail(s, ONYX_ERR_SHAPE, "input \"%s\" has rank %d, expected 0 to %d", val->name,
                    t->rank, ONYX_MAX_RANK);
    int64_t numel;
    if (!onyx_shape_numel(t->dims, t->rank, onyx_dtype_size(t->dtype), &numel))
        return fail(s, ONYX_ERR_SHAPE, "input \"%s\" has shape %s: negative or too large",
                    val->name, onyx_shape_str(t, got, sizeof got));
    bool bad = d->rank >= 0 && d->rank != t->rank;
    for (int i = 0; !bad && d->rank >= 0 && i < d->rank; i++)
        bad = d->dims[i] >= 0 && d->dims[i] != t->dims[i];
    if (bad) {
        /* Show symbolic dims by name: [batch,4]. */
        size_t used = (size_t)snprintf(want, sizeof want, "[");
        for (int i = 0; i < d->rank && used < sizeof want; i++) {
            if (d->dims[i] >= 0)
                used += (size_t)snprintf(want + used, sizeof want - used, "%s%lld", i ? "," : "",
                                         (long long)d->dims[i]);
            else
                used += (size_t)snprintf(want + used, sizeof want - used, "%s%s", i ? "," : "",
                                         val->dim_params[i] ? val->dim_params[i] : "?");
        }
        if (used < sizeof want)
            snprintf(want + used, sizeof want - used, "]");
        return fail(s, ONYX_ERR_SHAPE, "input \"%s\" has shape %s, expected %s", val->name,
                    onyx_shape_str(t, got, sizeof got), want);
    }
    if (numel > 0 && t->data == NULL)
        return fail(s, ONYX_ERR_INVALID_ARG, "input \"%s\" has no data", val->name);
    return ONYX_OK;
}

static onyx_status bind_inputs(onyx_session *s, size_t n_in, const char *const *in_names,
                               const onyx_tensor *inputs)
{
    const onyx_model *m = s->m;
    if (n_in > 0 && (in_names == NULL || inputs == NULL))
        return fail(s, ONYX_ERR_INVALID_ARG, "onyx_session_run: in_names or inputs is NULL");
    for (int i = 0; i < m->n_values; i++) {
        const onyx_value *v = &m->values[i];
        s->fed[i] = false;
        if (v->kind == ONYX_VALUE_INITIALIZER ||
            (v->kind == ONYX_VALUE_NODE && v->producer >= 0 && m->node_const[v->producer]))
            s->vals[i] = v->info;
    }
    for (size_t k = 0; k < n_in; k++) {
        const char *name = in_names[k];
        if (name == NULL)
            return fail(s, ONYX_ERR_INVALID_ARG, "onyx_session_run: input name %zu is NULL", k);
        int v = find_value(m, name);
        if (v < 0 || !m->values[v].is_graph_input) {
            char list[256];
            size_t used = 0;
            list[0] = '\0';
            for (int i = 0; i < m->n_inputs && used < sizeof list; i++)
                used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "",
                                         m->values[m->inputs[i]].name);
            return fail(s, ONYX_ERR_INVALID_ARG, "\"%s\" is not an input of the model (inputs: %s)",
                        name, m->n_inputs ? list : "none");
        }
        if (s->fed[v])
            return fail(s, ONYX_ERR_INVALID_ARG, "input \"%s\" is given twice", name);
        onyx_status st = check_input(s, v, &inputs[k]);
        if (st != ONYX_OK)
            return st;
        s->fed[v] = true;
        s->vals[v] = inputs[k];
    }
    for (int i = 0; i < m->n_inputs; i++)
        if (!s->fed[m->inputs[i]])
            return fail(s, ONYX_ERR_INVALID_ARG, "input \"%s\" was not given",
                        m->values[m->inputs[i]].name);
    return ONYX_OK;
}

/* Gives value v a session buffer of at least nbytes (64-byte aligned); grows only. */
static onyx_status ensure_buffer(onyx_session *s, int v, size_t nbytes)
{
    size_t want = (nbytes + 63) & ~(size_t)63;
    if (want == 0)
        want = 64;
    if (s->buf[v] != NULL && s->cap[v] >= want)
        return ONYX_OK;
    void *p = aligned_alloc(64, want);
    if (p == NULL)
        return fail(s, ONYX_ERR_NOMEM, "out of memory for \"%s\" (%zu bytes)",
                    s->m->values[v].name, nbytes);
    free(s->buf[v]);
    s->buf[v] = p;
    s->cap[v] = want;
    return ONYX_OK;
}

static onyx_status run_nodes(onyx_session *s)
{
    const onyx_model *m = s->m;
    onyx_kctx ctx = {s->mode, &s->rng};
    onyx_error err;
    for (int i = 0; i < m->n_nodes; i++) {
        if (m->node_const[i])
            continue;
        const onyx_node *n = &m->nodes[i];
        for (int j = 0; j < n->n_in; j++) {
            if (n->in[j] >= 0) {
                s->in[j] = s->vals[n->in[j]];
            } else {
                memset(&s->in[j], 0, sizeof s->in[j]);
                s->in[j].rank = -1;
            }
        }
        for (int j = 0; j < n->n_out; j++) {
            memset(&s->out[j], 0, sizeof s->out[j]);
            s->out[j].rank = -1;
        }
        onyx_status st = n->impl->infer(n, s->in, s->out, &err);
        if (st != ONYX_OK)
            return fail(s, st, "%s", err.msg);
        for (int j = 0; j < n->n_out; j++) {
            int v = n->out[j];
            if (v < 0)
                continue;
            onyx_tensor *o = &s->out[j];
            int64_t numel;
            if (!onyx_shape_known(o) || o->dtype == ONYX_DTYPE_UNDEFINED)
                return fail(s, ONYX_ERR_INTERNAL,
                            "node \"%s\" (%s): output %d has no shape after inference", n->name,
                            n->op_type, j);
            if (!onyx_shape_numel(o->dims, o->rank, onyx_dtype_size(o->dtype), &numel)) {
                char sh[128];
                return fail(s, ONYX_ERR_SHAPE, "node \"%s\" (%s): output \"%s\" of shape %s is too large",
                            n->name, n->op_type, m->values[v].name, onyx_shape_str(o, sh, sizeof sh));
            }
            st = ensure_buffer(s, v, (size_t)numel * onyx_dtype_size(o->dtype));
            if (st != ONYX_OK)
                return st;
            o->data = s->buf[v];
            s->vals[v] = *o;
        }
        n->impl->forward(n, &ctx, s->in, s->out);
    }
    return ONYX_OK;
}

static onyx_status give_outputs(onyx_session *s, size_t n_out, const char *const *out_names,
                                onyx_tensor *outputs)
{
    const onyx_model *m = s->m;
    if (n_out > 0 && outputs == NULL)
        return fail(s, ONYX_ERR_INVALID_ARG, "onyx_session_run: outputs is NULL");
    if (out_names == NULL && n_out > (size_t)m->n_outputs)
        return fail(s, ONYX_ERR_INVALID_ARG, "asked for %zu outputs, the model has %d", n_out,
                    m->n_outputs);
    for (size_t k = 0; k < n_out; k++) {
        int v;
        if (out_names == NULL) {
            v = m->outputs[k];
        } else {
            if (out_names[k] == NULL)
                return fail(s, ONYX_ERR_INVALID_ARG, "output name %zu is NULL", k);
            v = find_value(m, out_names[k]);
            if (v < 0)
                return fail(s, ONYX_ERR_INVALID_ARG, "\"%s\" is not a value of the model",
                            out_names[k]);
        }
        const onyx_tensor *r = &s->vals[v];
        onyx_tensor *o = &outputs[k];
        if (o->data == NULL) {
            *o = *r;
            continue;
        }
        char want[128];
        char got[128];
        if (o->dtype != r->dtype || !onyx_shape_equal(o, r))
            return fail(s, ONYX_ERR_SHAPE,
                        "output \"%s\" is %s %s, but the buffer given for it is %s %s",
                        m->values[v].name, onyx_dtype_name(r->dtype),
                        onyx_shape_str(r, want, sizeof want), onyx_dtype_name(o->dtype),
                        onyx_shape_str(o, got, sizeof got));
        size_t nb = onyx_nbytes(r);
        if (nb)
            memcpy(o->data, r->data, nb);
    }
    return ONYX_OK;
}

onyx_status onyx_session_run(onyx_session *s, size_t n_in, const char *const *in_names,
                             const onyx_tensor *inputs, size_t n_out, const char *const *out_names,
                             onyx_tensor *outputs)
{
    if (s == NULL)
        return ONYX_ERR_INVALID_ARG;
    s->errmsg[0] = '\0';
    onyx_status st = bind_inputs(s, n_in, in_names, inputs);
    if (st == ONYX_OK)
        st = run_nodes(s);
    if (st == ONYX_OK)
        st = give_outputs(s, n_out, out_names, outputs);
    return st;
}
