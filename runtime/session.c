/*
 * session.c — running a loaded model.
 *
 * A run binds the caller's inputs (borrowed, never copied), then walks the nodes in topological
 * order: impl->infer gives each output's shape from the actual inputs (and rejects what does
 * not fit), the output gets its block of the session's activation arena, impl->forward
 * computes. The arena is laid out by runtime/plan.c for the run's shapes, so that values whose
 * lifetimes do not overlap share memory; plans are kept and the arena only grows, so repeated
 * runs with the same shapes allocate nothing. Nodes folded at load time (graph.c) are not run
 * again.
 *
 * What survives a run: graph outputs, values asked for by name in onyx_session_run, and bound
 * outputs. Other intermediate values may have been overwritten by later nodes, except in runs
 * through onyx_session_forward (the trainer's), which keep every value.
 *
 * Inference runs (onyx_session_run/_run_bound, not training) go faster in two ways (issue #4),
 * with bit-identical results: the first such run packs every constant weight that an op asks
 * for (impl->pack_size: Gemm's and MatMul's float32 B) once into session memory, which costs
 * one extra copy of each such weight for the session's lifetime; and a Gemm or MatMul computes
 * the nodes right after it that only read its result (find_fusions): for a MatMul the Add of a
 * constant bias row (PyTorch's Linear), then for both an activation (Relu, LeakyRelu, Sigmoid,
 * Tanh, Gelu, HardSigmoid, HardSwish, Clip), in the GEMM's epilogue (ops/gemm.c), skipping
 * those nodes, their passes over memory and their buffers (not when an output between them is
 * asked for, bound or a graph output). Runs through onyx_session_forward and training sessions
 * do neither: their weights change and backward reads the pre-activations.
 */
#include "internal.h"
#include "pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void onyx_session_options_init(onyx_session_options *opt)
{
    memset(opt, 0, sizeof(*opt));
    opt->size = sizeof(*opt);
    opt->mode = ONYX_MODE_INFER;
}

static bool mode_valid(onyx_mode mode)
{
    return mode == ONYX_MODE_INFER || mode == ONYX_MODE_TRAIN || mode == ONYX_MODE_GRAPH;
}

static bool is_onnx_op(const onyx_node *n, const char *op_type)
{
    return (n->domain[0] == '\0' || strcmp(n->domain, "ai.onnx") == 0) &&
           strcmp(n->op_type, op_type) == 0;
}

/* Node r reads value y (the chain's last output so far) as the next link of a fused chain: y has
 * no other reader (readers[v]: how many inputs of nodes are value v) and is no graph output, and
 * r has one output. */
static bool chain_link(const onyx_model *m, const int *readers, const onyx_node *r, int y)
{
    return readers[y] == 1 && !m->values[y].is_graph_output && r->n_out == 1 && r->out[0] >= 0;
}

/* Whether node a (an Add reading value y) adds a bias row that a GEMM's epilogue can add in its
 * place: its other input is a float32 initializer of shape [N] or [1,N], N the last dim of
 * y = MatMul(A, B), B's last dim as known from the graph (B rank >= 2), and the sum has y's shape
 * ([1,N] needs y of rank >= 2). Sets *bias to the value index of the row. */
static bool bias_add(const onyx_model *m, const onyx_node *mm, const onyx_node *a, int y, int *bias)
{
    if (!is_onnx_op(a, "Add") || a->opset < 7 || a->n_in != 2 || mm->n_in < 2 || mm->in[1] < 0)
        return false;
    int other = a->in[0] == y ? a->in[1] : a->in[0];
    if ((a->in[0] == y) == (a->in[1] == y) || other < 0)
        return false;
    const onyx_value *b = &m->values[other];
    const onyx_tensor *w = &m->values[mm->in[1]].info;
    const onyx_tensor *yt = &m->values[y].info;
    if (b->kind != ONYX_VALUE_INITIALIZER || b->is_graph_input || b->info.dtype != ONYX_DTYPE_F32 ||
        w->rank < 2 || w->dims[w->rank - 1] < 1)
        return false;
    int64_t N = w->dims[w->rank - 1];
    bool row = (b->info.rank == 1 && b->info.dims[0] == N) ||
               (b->info.rank == 2 && b->info.dims[0] == 1 && b->info.dims[1] == N && yt->rank >= 2);
    if (row)
        *bias = other;
    return row;
}

/* s->fusion from the graph (see struct onyx_session): for each node with ONYX_OPF_FUSE_BIAS or
 * ONYX_OPF_FUSE_ACT, the chain of nodes right after it that its GEMM epilogue can compute: a bias
 * Add (bias_add), then an activation (onyx_act_fusable), each reading only the previous output.
 * Models with a graph-level op (which may read any value) fuse nothing. */
static onyx_status find_fusions(onyx_session *s)
{
    const onyx_model *m = s->m;
    s->fusion = onyx_calloc((size_t)m->n_nodes + 1, sizeof(*s->fusion));
    if (s->fusion == NULL)
        return ONYX_ERR_NOMEM;
    for (int i = 0; i < m->n_nodes; i++)
        s->fusion[i].bias = -1;
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].impl->flags & ONYX_OPF_GRAPH)
            return ONYX_OK;
    int *readers = onyx_calloc((size_t)m->n_values + 1, sizeof(int));
    if (readers == NULL)
        return ONYX_ERR_NOMEM;
    for (int k = 0; k < m->n_nodes; k++)
        for (int j = 0; j < m->nodes[k].n_in; j++)
            if (m->nodes[k].in[j] >= 0)
                readers[m->nodes[k].in[j]]++;
    for (int i = 0; i + 1 < m->n_nodes; i++) {
        const onyx_node *n = &m->nodes[i];
        struct onyx_fusion *f = &s->fusion[i];
        unsigned flags = n->impl->flags;
        if (!(flags & (ONYX_OPF_FUSE_ACT | ONYX_OPF_FUSE_BIAS)) || n->n_out != 1 || n->out[0] < 0)
            continue;
        int y = n->out[0]; /* the chain's current end */
        const onyx_node *r = &m->nodes[i + 1];
        if ((flags & ONYX_OPF_FUSE_BIAS) && chain_link(m, readers, r, y) &&
            bias_add(m, n, r, y, &f->bias)) {
            f->n_fused = 1;
            y = r->out[0];
            r = i + 2 < m->n_nodes ? &m->nodes[i + 2] : NULL;
        }
        float alpha;
        float beta;
        if ((flags & ONYX_OPF_FUSE_ACT) && r != NULL && r->n_in >= 1 && r->in[0] == y &&
            chain_link(m, readers, r, y) &&
            onyx_act_fusable(r, NULL, &alpha, &beta) != ONYX_FUSE_NONE) {
            f->n_fused++;
            f->act = true;
        }
    }
    free(readers);
    return ONYX_OK;
}

/* Pre-packs the constant inputs of every node that asks for it (impl->pack_size), once, at the
 * first inference run. A node whose packing fails for lack of memory just runs unpacked. */
static void pack_weights(onyx_session *s)
{
    const onyx_model *m = s->m;
    s->packed_done = true;
    s->packed = onyx_calloc((size_t)m->n_nodes + 1, sizeof(void *));
    s->packed_in = onyx_calloc((size_t)m->n_nodes + 1, sizeof(int));
    if (s->packed == NULL || s->packed_in == NULL)
        return;
    int count = 0;
    size_t total = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        const onyx_node *n = &m->nodes[i];
        if (n->impl->pack_size == NULL || n->impl->pack == NULL || s->run_const[i])
            continue;
        for (int j = 0; j < n->n_in; j++) {
            int v = n->in[j];
            if (v < 0 || m->values[v].kind != ONYX_VALUE_INITIALIZER ||
                m->values[v].is_graph_input || s->bound[v] != NULL ||
                !onyx_shape_known(&m->values[v].info) || m->values[v].info.data == NULL)
                continue;
            size_t size = n->impl->pack_size(n, j, &m->values[v].info);
            if (size == 0)
                continue;
            void *dst = aligned_alloc(64, (size + 63) & ~(size_t)63);
            if (dst != NULL) {
                n->impl->pack(n, j, &m->values[v].info, dst);
                s->packed[i] = dst;
                s->packed_in[i] = j;
                count++;
                total += size;
            }
            break;
        }
    }
    if (count > 0)
        onyx_logf(s->log, s->log_user, ONYX_LOG_INFO,
                  "session: %d constant weights pre-packed, %zu bytes", count, total);
}

onyx_status onyx_session_create(const onyx_model *model, const onyx_session_options *opt,
                                onyx_session **out, onyx_error *err)
{
    if (out == NULL || model == NULL)
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "onyx_session_create: NULL argument");
    *out = NULL;
    onyx_session_options defaults;
    onyx_session_options_init(&defaults);
    if (opt != NULL && !onyx_options_copy(&defaults, sizeof defaults, opt))
        return onyx_err(err, ONYX_ERR_INVALID_ARG,
                        "onyx_session_create: options.size is %zu: call onyx_session_options_init() first (or the program was "
                        "built against a newer onyx.h)",
                        opt->size);
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
    s->log = opt->log;
    s->log_user = opt->log_user;
    onyx_rng_seed(&s->rng, opt->seed);
    s->vals = onyx_calloc(nv, sizeof(onyx_tensor));
    s->buf = onyx_calloc(nv, sizeof(void *));
    s->cap = onyx_calloc(nv, sizeof(size_t));
    s->fed = onyx_calloc(nv, sizeof(bool));
    s->bound = onyx_calloc(nv, sizeof(void *));
    s->run_const = onyx_calloc((size_t)model->n_nodes + 1, sizeof(bool));
    s->saved = onyx_calloc((size_t)model->n_nodes + 1, sizeof(void *));
    s->saved_cap = onyx_calloc((size_t)model->n_nodes + 1, sizeof(size_t));
    s->in = onyx_calloc((size_t)model->max_in + 1, sizeof(onyx_tensor));
    s->out = onyx_calloc((size_t)model->max_out + 1, sizeof(onyx_tensor));
    onyx_status pst = onyx_planner_create(model, &s->plan);
    if (pst == ONYX_OK)
        pst = onyx_pool_create(opt->threads, &s->pool);
    if (!s->vals || !s->buf || !s->cap || !s->fed || !s->bound || !s->run_const || !s->saved ||
        !s->saved_cap || !s->in || !s->out || pst != ONYX_OK) {
        onyx_session_destroy(s);
        return onyx_err(err, ONYX_ERR_NOMEM,
                        "onyx_session_create: out of memory (or a thread could not be started)");
    }
    if (model->n_nodes > 0)
        memcpy(s->run_const, model->node_const, sizeof(bool) * (size_t)model->n_nodes);
    if (find_fusions(s) != ONYX_OK) {
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
    onyx_planner_destroy(s->plan);
    onyx_pool_destroy(s->pool);
    if (s->buf)
        for (int i = 0; i < s->m->n_values; i++)
            free(s->buf[i]);
    if (s->saved)
        for (int i = 0; i < s->m->n_nodes; i++)
            free(s->saved[i]);
    if (s->packed)
        for (int i = 0; i < s->m->n_nodes; i++)
            free(s->packed[i]);
    free(s->packed);
    free(s->packed_in);
    free(s->fusion);
    free(s->saved);
    free(s->saved_cap);
    free(s->scratch);
    free(s->bound);
    free(s->run_const);
    free(s->buf);
    free(s->cap);
    free(s->vals);
    free(s->fed);
    free(s->in);
    free(s->out);
    free(s->in_bind);
    free(s->out_bind);
    free(s->in_bound);
    free(s->out_bound);
    free(s);
}

onyx_status onyx_session_set_mode(onyx_session *s, onyx_mode mode)
{
    if (!mode_valid(mode))
        return onyx_session_fail(s, ONYX_ERR_INVALID_ARG, "unknown mode %d", (int)mode);
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

onyx_status onyx_session_fail(onyx_session *s, onyx_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->errmsg, sizeof s->errmsg, fmt, ap);
    va_end(ap);
    if (s->log != NULL)
        s->log(s->log_user, ONYX_LOG_ERROR, s->errmsg);
    return code;
}

int onyx_model_find_value(const onyx_model *m, const char *name)
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
        return onyx_session_fail(s, ONYX_ERR_SHAPE, "input \"%s\" has dtype %s, expected %s",
                                 val->name, onyx_dtype_name(t->dtype), onyx_dtype_name(d->dtype));
    if (t->rank < 0 || t->rank > ONYX_MAX_RANK)
        return onyx_session_fail(s, ONYX_ERR_SHAPE, "input \"%s\" has rank %d, expected 0 to %d",
                                 val->name, t->rank, ONYX_MAX_RANK);
    int64_t numel;
    if (!onyx_shape_numel(t->dims, t->rank, onyx_dtype_size(t->dtype), &numel))
        return onyx_session_fail(s, ONYX_ERR_SHAPE,
                                 "input \"%s\" has shape %s: negative or too large", val->name,
                                 onyx_shape_str(t, got, sizeof got));
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
        return onyx_session_fail(s, ONYX_ERR_SHAPE, "input \"%s\" has shape %s, expected %s",
                                 val->name, onyx_shape_str(t, got, sizeof got), want);
    }
    if (numel > 0 && t->data == NULL)
        return onyx_session_fail(s, ONYX_ERR_INVALID_ARG, "input \"%s\" has no data", val->name);
    return ONYX_OK;
}

/* The graph input called name, or -1 after failing with a message listing the inputs. */
static int find_input(onyx_session *s, const char *name)
{
    const onyx_model *m = s->m;
    int v = onyx_model_find_value(m, name);
    if (v >= 0 && m->values[v].is_graph_input)
        return v;
    char list[256];
    size_t used = 0;
    list[0] = '\0';
    for (int i = 0; i < m->n_inputs && used < sizeof list; i++)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "",
                                 m->values[m->inputs[i]].name);
    onyx_session_fail(s, ONYX_ERR_INVALID_ARG, "\"%s\" is not an input of the model (inputs: %s)",
                      name, m->n_inputs ? list : "none");
    return -1;
}

/* Starts a run: constants (initializers, values folded at load) take their model values and
 * nothing is fed yet. */
static void reset_values(onyx_session *s)
{
    const onyx_model *m = s->m;
    for (int i = 0; i < m->n_values; i++) {
        const onyx_value *v = &m->values[i];
        s->fed[i] = false;
        if (v->kind == ONYX_VALUE_INITIALIZER ||
            (v->kind == ONYX_VALUE_NODE && v->producer >= 0 && s->run_const[v->producer]))
            s->vals[i] = v->info;
        if (s->bound[i] != NULL)
            s->vals[i].data = s->bound[i];
    }
}

static onyx_status bind_inputs(onyx_session *s, size_t n_in, const char *const *in_names,
                               const onyx_tensor *inputs)
{
    const onyx_model *m = s->m;
    if (n_in > 0 && (in_names == NULL || inputs == NULL))
        return onyx_session_fail(s, ONYX_ERR_INVALID_ARG,
                                 "onyx_session_run: in_names or inputs is NULL");
    reset_values(s);
    for (size_t k = 0; k < n_in; k++) {
        const char *name = in_names[k];
        if (name == NULL)
            return onyx_session_fail(s, ONYX_ERR_INVALID_ARG,
                                     "onyx_session_run: input name %zu is NULL", k);
        int v = find_input(s, name);
        if (v < 0)
            return ONYX_ERR_INVALID_ARG;
        if (s->fed[v])
            return onyx_session_fail(s, ONYX_ERR_INVALID_ARG, "input \"%s\" is given twice", name);
        onyx_status st = check_input(s, v, &inputs[k]);
        if (st != ONYX_OK)
            return st;
        s->fed[v] = true;
        s->vals[v] = inputs[k];
    }
    for (int i = 0; i < m->n_inputs; i++)
        if (!s->fed[m->inputs[i]])
            return onyx_session_fail(s, ONYX_ERR_INVALID_ARG, "input \"%s\" was not given",
                                     m->values[m->inputs[i]].name);
    return ONYX_OK;
}

/* Grows *buf to at least size bytes (64-byte aligned); contents are not kept. */
static bool grow(void **buf, size_t *cap, size_t size)
{
    if (size <= *cap && *buf != NULL)
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

/* Scratch and (when training) saved memory for node i, into ctx. */
static onyx_status node_memory(onyx_session *s, int i, onyx_kctx *ctx)
{
    const onyx_node *n = &s->m->nodes[i];
    if (n->impl->scratch_size) {
        size_t need = n->impl->scratch_size(n, s->in, s->out);
        if (need > 0) {
            if (!grow(&s->scratch, &s->scratch_cap, need))
                return onyx_session_fail(s, ONYX_ERR_NOMEM,
                                         "node \"%s\" (%s): out of memory for %zu bytes of scratch",
                                         n->name, n->op_type, need);
            ctx->scratch = s->scratch;
        }
    }
    if (s->training && n->impl->saved_size) {
        size_t need = n->impl->saved_size(n, s->in, s->out);
        if (need > 0) {
            if (!grow(&s->saved[i], &s->saved_cap[i], need))
                return onyx_session_fail(
                    s, ONYX_ERR_NOMEM,
                    "node \"%s\" (%s): out of memory for %zu bytes kept for backward", n->name,
                    n->op_type, need);
            ctx->saved = s->saved[i];
        }
    }
    return ONYX_OK;
}

/* A bound output buffer that does not fit the value r. */
static onyx_status bound_mismatch(onyx_session *s, int v, const onyx_tensor *r)
{
    const onyx_tensor *b = &s->out_bind[v];
    char want[128];
    char got[128];
    return onyx_session_fail(
        s, ONYX_ERR_SHAPE, "output \"%s\" is %s %s, but the buffer bound to it is %s %s",
        s->m->values[v].name, onyx_dtype_name(r->dtype), onyx_shape_str(r, want, sizeof want),
        onyx_dtype_name(b->dtype), onyx_shape_str(b, got, sizeof got));
}

/* Frees the buffers values got outside the plan in earlier runs. */
static void free_spilled(onyx_session *s)
{
    if (!s->spilled)
        return;
    for (int v = 0; v < s->m->n_values; v++) {
        free(s->buf[v]);
        s->buf[v] = NULL;
        s->cap[v] = 0;
    }
    s->spilled = false;
}

/* A fed tensor must not be session memory, which the run may overwrite or free before reading
 * it (an output of the previous run fed back in). */
static onyx_status check_fed_memory(onyx_session *s)
{
    const onyx_model *m = s->m;
    for (int v = 0; v < m->n_values; v++) {
        if (!s->fed[v] || s->vals[v].data == NULL)
            continue;
        size_t nb = onyx_nbytes(&s->vals[v]);
        bool ours = onyx_plan_owns(s->plan, s->vals[v].data, nb);
        uintptr_t a = (uintptr_t)s->vals[v].data;
        for (int u = 0; s->spilled && !ours && u < m->n_values; u++) {
            uintptr_t b = (uintptr_t)s->buf[u];
            ours = s->buf[u] != NULL && a < b + s->cap[u] && b < a + (nb ? nb : 1);
        }
        if (ours)
            return onyx_session_fail(s, ONYX_ERR_INVALID_ARG,
                                     "input \"%s\" is in this session's memory (a result of its "
                                     "previous run?), which the run reuses: copy it first",
                                     m->values[v].name);
    }
    return ONYX_OK;
}

/* Node i's inputs into s->in, infers its outputs into s->out and gives each its memory (the
 * arena block, the caller's bound buffer, or a buffer of its own), recording them in s->vals. */
static onyx_status prepare_node(onyx_session *s, int i)
{
    const onyx_model *m = s->m;
    const onyx_node *n = &m->nodes[i];
    onyx_error err;
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
        return onyx_session_fail(s, st, "%s", err.msg);
    for (int j = 0; j < n->n_out; j++) {
        int v = n->out[j];
        if (v < 0)
            continue;
        onyx_tensor *o = &s->out[j];
        int64_t numel;
        if (!onyx_shape_known(o) || o->dtype == ONYX_DTYPE_UNDEFINED)
            return onyx_session_fail(s, ONYX_ERR_INTERNAL,
                                     "node \"%s\" (%s): output %d has no shape after inference",
                                     n->name, n->op_type, j);
        if (!onyx_shape_numel(o->dims, o->rank, onyx_dtype_size(o->dtype), &numel)) {
            char sh[128];
            return onyx_session_fail(
                s, ONYX_ERR_SHAPE, "node \"%s\" (%s): output \"%s\" of shape %s is too large",
                n->name, n->op_type, m->values[v].name, onyx_shape_str(o, sh, sizeof sh));
        }
        if (s->use_out_bind && s->out_bound[v]) {
            /* Zero copy: the node writes into the caller's buffer. */
            const onyx_tensor *b = &s->out_bind[v];
            if (b->dtype != o->dtype || !onyx_shape_equal(b, o))
                return bound_mismatch(s, v, o);
            o->data = b->data;
            s->vals[v] = *o;
            continue;
        }
        size_t nb = (size_t)numel * onyx_dtype_size(o->dtype);
        o->data = onyx_plan_memory(s, v, nb);
        if (o->data == NULL) {
            /* Outside the plan: a buffer of its own (the plan is made again at the end). */
            void *before = s->buf[v];
            if (!grow(&s->buf[v], &s->cap[v], nb))
                return onyx_session_fail(s, ONYX_ERR_NOMEM, "out of memory for \"%s\" (%zu bytes)",
                                         m->values[v].name, nb);
            if (s->buf[v] != before)
                onyx_logf(s->log, s->log_user, ONYX_LOG_DEBUG,
                          "session: %zu bytes for \"%s\" (node \"%s\", %s)", s->cap[v],
                          m->values[v].name, n->name, n->op_type);
            s->spilled = true;
            o->data = s->buf[v];
        }
        s->vals[v] = *o;
    }
    return ONYX_OK;
}

/* How many nodes after node i it computes too in this run (0: none): an inference run, and
 * the plan says so (onyx_plan_fused: the values between them are float32 and not kept, asked
 * for or bound). */
static int fuse_now(const onyx_session *s, int i, bool infer_run)
{
    if (!infer_run || s->fusion[i].n_fused == 0 || !onyx_plan_fused(s, i, s->out[0].dtype))
        return 0;
    return s->fusion[i].n_fused;
}

/* Node i computes the k nodes after it in this run: prepares them (their inputs, inferred
 * outputs and memory; the last one's output is the one node i writes), reads the activation's
 * parameters, and sets s->in and s->out[0] for node i. */
static onyx_status prepare_fused(onyx_session *s, int i, int k, onyx_kctx *ctx)
{
    const onyx_model *m = s->m;
    const onyx_node *n = &m->nodes[i];
    const struct onyx_fusion *f = &s->fusion[i];
    for (int j = 1; j <= k; j++) {
        onyx_status st = prepare_node(s, i + j);
        if (st != ONYX_OK)
            return st;
    }
    if (f->act)
        ctx->fuse = onyx_act_fusable(&m->nodes[i + k], s->in, &ctx->fuse_alpha, &ctx->fuse_beta);
    if (f->bias >= 0)
        ctx->fuse_bias = s->vals[f->bias].data;
    onyx_tensor r = s->out[0];
    /* What the graph promised (bias_add): the chain keeps node i's shape. */
    if (!onyx_shape_equal(&r, &s->vals[n->out[0]]))
        return onyx_session_fail(s, ONYX_ERR_INTERNAL,
                                 "node \"%s\" (%s): fused nodes change its output's shape", n->name,
                                 n->op_type);
    for (int j = 0; j < n->n_in; j++)
        if (n->in[j] >= 0)
            s->in[j] = s->vals[n->in[j]];
    s->out[0] = r;
    return ONYX_OK;
}

/* Runs every node not folded at load. keep_all: every value survives the run. Inference runs
 * (not keep_all, not training) use pre-packed weights and fused activations. */
static onyx_status run_nodes(onyx_session *s, bool keep_all)
{
    const onyx_model *m = s->m;
    onyx_error err;
    bool infer_run = !keep_all && !s->training;
    onyx_status st = check_fed_memory(s);
    bool planned;
    if (st == ONYX_OK)
        st = onyx_plan_begin(s, keep_all, &planned);
    if (st != ONYX_OK)
        return st;
    if (planned)
        free_spilled(s);
    if (infer_run && !s->packed_done)
        pack_weights(s);
    for (int i = 0; i < m->n_nodes; i++) {
        if (s->run_const[i])
            continue;
        const onyx_node *n = &m->nodes[i];
        st = prepare_node(s, i);
        if (st != ONYX_OK)
            return st;
        onyx_kctx ctx = {
            .mode = s->mode, .rng = &s->rng, .session = s, .err = &err, .pool = s->pool};
        int fused = fuse_now(s, i, infer_run);
        if (fused > 0) {
            /* Node i writes the chain's last output: prepare the chain, then node i again. */
            st = prepare_fused(s, i, fused, &ctx);
            if (st != ONYX_OK)
                return st;
        }
        if (infer_run && s->packed != NULL && s->packed[i] != NULL &&
            s->bound[n->in[s->packed_in[i]]] == NULL)
            ctx.packed = s->packed[i];
        st = node_memory(s, i, &ctx);
        if (st != ONYX_OK)
            return st;
        err.code = ONYX_OK;
        n->impl->forward(n, &ctx, s->in, s->out);
        if ((n->impl->flags & ONYX_OPF_GRAPH) && err.code != ONYX_OK)
            return onyx_session_fail(s, err.code, "%s", err.msg);
        i += fused; /* the fused nodes are done */
    }
    onyx_plan_end(s);
    return ONYX_OK;
}

static onyx_status give_outputs(onyx_session *s, size_t n_out, const char *const *out_names,
                                onyx_tensor *outputs)
{
    const onyx_model *m = s->m;
    if (n_out > 0 && outputs == NULL)
        return onyx_session_fail(s, ONYX_ERR_INVALID_ARG, "onyx_session_run: outputs is NULL");
    if (out_names == NULL && n_out > (size_t)m->n_outputs)
        return onyx_session_fail(s, ONYX_ERR_INVALID_ARG, "asked for %zu outputs, the model has %d",
                                 n_out, m->n_outputs);
    for (size_t k = 0; k < n_out; k++) {
        int v;
        if (out_names == NULL) {
            v = m->outputs[k];
        } else {
            if (out_names[k] == NULL)
                return onyx_session_fail(s, ONYX_ERR_INVALID_ARG, "output name %zu is NULL", k);
            v = onyx_model_find_value(m, out_names[k]);
            if (v < 0)
                return onyx_session_fail(s, ONYX_ERR_INVALID_ARG,
                                         "\"%s\" is not a value of the model", out_names[k]);
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
            return onyx_session_fail(
                s, ONYX_ERR_SHAPE, "output \"%s\" is %s %s, but the buffer given for it is %s %s",
                m->values[v].name, onyx_dtype_name(r->dtype), onyx_shape_str(r, want, sizeof want),
                onyx_dtype_name(o->dtype), onyx_shape_str(o, got, sizeof got));
        size_t nb = onyx_nbytes(r);
        if (nb)
            memcpy(o->data, r->data, nb);
    }
    return ONYX_OK;
}

/* Marks (want true) or unmarks the values named in out_names for the plan: they survive the
 * run. Names that are no value are reported by give_outputs. */
static void want_outputs(onyx_session *s, size_t n_out, const char *const *out_names, bool want)
{
    if (out_names == NULL)
        return;
    for (size_t k = 0; k < n_out; k++) {
        int v = out_names[k] != NULL ? onyx_model_find_value(s->m, out_names[k]) : -1;
        if (v >= 0)
            onyx_plan_want(s->plan, v, want);
    }
}

onyx_status onyx_session_run(onyx_session *s, size_t n_in, const char *const *in_names,
                             const onyx_tensor *inputs, size_t n_out, const char *const *out_names,
                             onyx_tensor *outputs)
{
    if (s == NULL)
        return ONYX_ERR_INVALID_ARG;
    s->errmsg[0] = '\0';
    onyx_status st = bind_inputs(s, n_in, in_names, inputs);
    if (st == ONYX_OK) {
        want_outputs(s, n_out, out_names, true);
        st = run_nodes(s, false);
        want_outputs(s, n_out, out_names, false);
    }
    if (st == ONYX_OK)
        st = give_outputs(s, n_out, out_names, outputs);
    return st;
}

onyx_status onyx_session_forward(onyx_session *s, size_t n_in, const char *const *in_names,
                                 const onyx_tensor *inputs)
{
    s->errmsg[0] = '\0';
    onyx_status st = bind_inputs(s, n_in, in_names, inputs);
    if (st == ONYX_OK)
        st = run_nodes(s, true);
    return st;
}

onyx_status onyx_session_bind(onyx_session *s, int v, void *data)
{
    const onyx_model *m = s->m;
    if (v < 0 || v >= m->n_values || m->values[v].kind != ONYX_VALUE_INITIALIZER)
        return onyx_session_fail(s, ONYX_ERR_INVALID_ARG, "value %d is not an initializer", v);
    s->bound[v] = data;
    /* A folded node must run again when anything it was folded from is now bound. */
    bool *dep = onyx_calloc((size_t)m->n_values + 1, sizeof(bool));
    if (dep == NULL)
        return onyx_session_fail(s, ONYX_ERR_NOMEM, "out of memory");
    for (int i = 0; i < m->n_values; i++)
        dep[i] = s->bound[i] != NULL;
    for (int i = 0; i < m->n_nodes; i++) {
        const onyx_node *n = &m->nodes[i];
        bool d = false;
        for (int j = 0; j < n->n_in; j++)
            d = d || (n->in[j] >= 0 && dep[n->in[j]]);
        s->run_const[i] = m->node_const[i] && !d;
        for (int j = 0; j < n->n_out; j++)
            if (n->out[j] >= 0)
                dep[n->out[j]] = d;
    }
    free(dep);
    return ONYX_OK;
}

/* ---- zero-copy bindings ------------------------------------------------------------------- */

static onyx_status bind_arrays(onyx_session *s)
{
    if (s->in_bind != NULL)
        return ONYX_OK;
    size_t nv = (size_t)s->m->n_values + 1;
    s->in_bind = onyx_calloc(nv, sizeof(onyx_tensor));
    s->out_bind = onyx_calloc(nv, sizeof(onyx_tensor));
    s->in_bound = onyx_calloc(nv, sizeof(bool));
    s->out_bound = onyx_calloc(nv, sizeof(bool));
    if (!s->in_bind || !s->out_bind || !s->in_bound || !s->out_bound) {
        free(s->in_bind);
        free(s->out_bind);
        free(s->in_bound);
        free(s->out_bound);
        s->in_bind = s->out_bind = NULL;
        s->in_bound = s->out_bound = NULL;
        return onyx_session_fail(s, ONYX_ERR_NOMEM, "out of memory");
    }
    return ONYX_OK;
}

onyx_status onyx_session_bind_input(onyx_session *s, const char *name, const onyx_tensor *t)
{
    if (s == NULL)
        return ONYX_ERR_INVALID_ARG;
    s->errmsg[0] = '\0';
    if (name == NULL)
        return onyx_session_fail(s, ONYX_ERR_INVALID_ARG, "onyx_session_bind_input: name is NULL");
    int v = find_input(s, name);
    if (v < 0)
        return ONYX_ERR_INVALID_ARG;
    onyx_status st = bind_arrays(s);
    if (st != ONYX_OK)
        return st;
    if (t == NULL) {
        s->in_bound[v] = false;
        return ONYX_OK;
    }
    st = check_input(s, v, t);
    if (st != ONYX_OK)
        return st;
    s->in_bind[v] = *t;
    s->in_bound[v] = true;
    return ONYX_OK;
}

onyx_status onyx_session_bind_output(onyx_session *s, const char *name, const onyx_tensor *t)
{
    if (s == NULL)
        return ONYX_ERR_INVALID_ARG;
    s->errmsg[0] = '\0';
    const onyx_model *m = s->m;
    if (name == NULL)
        return onyx_session_fail(s, ONYX_ERR_INVALID_ARG, "onyx_session_bind_output: name is NULL");
    int v = onyx_model_find_value(m, name);
    if (v < 0)
        return onyx_session_fail(s, ONYX_ERR_INVALID_ARG, "\"%s\" is not a value of the model",
                                 name);
    onyx_status st = bind_arrays(s);
    if (st != ONYX_OK)
        return st;
    if (t == NULL) {
        s->out_bound[v] = false;
        return ONYX_OK;
    }
    char got[128];
    char want[128];
    int64_t numel;
    if (t->dtype == ONYX_DTYPE_UNDEFINED || onyx_dtype_size(t->dtype) == 0 || t->rank < 0 ||
        t->rank > ONYX_MAX_RANK ||
        !onyx_shape_numel(t->dims, t->rank, onyx_dtype_size(t->dtype), &numel))
        return onyx_session_fail(s, ONYX_ERR_INVALID_ARG,
                                 "the buffer bound to output \"%s\" is %s of rank %d: not a "
                                 "tensor onyx can write",
                                 name, onyx_dtype_name(t->dtype), t->rank);
    if (numel > 0 && t->data == NULL)
        return onyx_session_fail(s, ONYX_ERR_INVALID_ARG,
                                 "the buffer bound to output \"%s\" has no data", name);
    /* What the model knows statically must fit already; the rest is checked by each run. */
    const onyx_tensor *d = &m->values[v].info;
    bool bad = d->dtype != ONYX_DTYPE_UNDEFINED && d->dtype != t->dtype;
    bad = bad || (d->rank >= 0 && d->rank != t->rank);
    for (int i = 0; !bad && d->rank >= 0 && i < d->rank; i++)
        bad = d->dims[i] >= 0 && d->dims[i] != t->dims[i];
    if (bad)
        return onyx_session_fail(s, ONYX_ERR_SHAPE,
                                 "output \"%s\" is %s %s, but the buffer bound to it is %s %s",
                                 name, onyx_dtype_name(d->dtype),
                                 onyx_shape_str(d, want, sizeof want), onyx_dtype_name(t->dtype),
                                 onyx_shape_str(t, got, sizeof got));
    s->out_bind[v] = *t;
    s->out_bound[v] = true;
    return ONYX_OK;
}

void onyx_session_unbind_all(onyx_session *s)
{
    if (s == NULL || s->in_bind == NULL)
        return;
    memset(s->in_bound, 0, sizeof(bool) * (size_t)s->m->n_values);
    memset(s->out_bound, 0, sizeof(bool) * (size_t)s->m->n_values);
}

onyx_status onyx_session_run_bound(onyx_session *s)
{
    if (s == NULL)
        return ONYX_ERR_INVALID_ARG;
    s->errmsg[0] = '\0';
    const onyx_model *m = s->m;
    reset_values(s);
    if (s->in_bind != NULL)
        for (int v = 0; v < m->n_values; v++)
            if (s->in_bound[v]) {
                s->fed[v] = true;
                s->vals[v] = s->in_bind[v];
            }
    for (int i = 0; i < m->n_inputs; i++)
        if (!s->fed[m->inputs[i]])
            return onyx_session_fail(s, ONYX_ERR_INVALID_ARG,
                                     "input \"%s\" is not bound (onyx_session_bind_input)",
                                     m->values[m->inputs[i]].name);
    s->use_out_bind = s->out_bound != NULL;
    onyx_status st = run_nodes(s, false);
    s->use_out_bind = false;
    if (st != ONYX_OK || s->out_bound == NULL)
        return st;
    /* Values no node computed in this run (inputs passed through, initializers, constants
     * folded at load) are copied: there was no node to write them in place. */
    for (int v = 0; v < m->n_values; v++) {
        if (!s->out_bound[v] || s->vals[v].data == s->out_bind[v].data)
            continue;
        const onyx_tensor *r = &s->vals[v];
        if (r->dtype != s->out_bind[v].dtype || !onyx_shape_equal(r, &s->out_bind[v]))
            return bound_mismatch(s, v, r);
        size_t nb = onyx_nbytes(r);
        if (nb)
            memcpy(s->out_bind[v].data, r->data, nb);
    }
    return ONYX_OK;
}

/* ---- introspection ------------------------------------------------------------------------ */

onyx_status onyx_session_memory(const onyx_session *s, size_t *arena_bytes, size_t *naive_bytes)
{
    if (s == NULL || arena_bytes == NULL || naive_bytes == NULL)
        return ONYX_ERR_INVALID_ARG;
    onyx_plan_memory_stats(s->plan, arena_bytes, naive_bytes);
    return ONYX_OK;
}

/* The K of a Gemm or MatMul node from its tensors in the last run (0 when not known). */
static int64_t gemm_k(const onyx_node *n, const onyx_tensor *a, const onyx_tensor *b,
                      const onyx_tensor *y)
{
    if (strcmp(n->op_type, "MatMul") == 0)
        return a->rank >= 1 ? a->dims[a->rank - 1] : 0;
    /* Gemm: A is (M, K) or (K, M), B is (K, N) or (N, K), Y is (M, N): K = |B| / N. */
    int64_t cols = y->rank == 2 ? y->dims[1] : 0;
    return cols > 0 && b->rank == 2 ? b->dims[0] * b->dims[1] / cols : 0;
}

onyx_status onyx_session_flops(const onyx_session *s, double *flops)
{
    if (s == NULL || flops == NULL)
        return ONYX_ERR_INVALID_ARG;
    const onyx_model *m = s->m;
    *flops = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        const onyx_node *n = &m->nodes[i];
        bool gemm = strcmp(n->op_type, "Gemm") == 0 || strcmp(n->op_type, "MatMul") == 0;
        bool onnx = n->domain[0] == '\0' || strcmp(n->domain, "ai.onnx") == 0;
        if (!gemm || !onnx || s->run_const[i] || n->n_in < 2 || n->n_out < 1 || n->in[0] < 0 ||
            n->in[1] < 0 || n->out[0] < 0)
            continue;
        const onyx_tensor *y = &s->vals[n->out[0]];
        if (y->rank < 0 || y->data == NULL)
            continue; /* not run yet */
        int64_t k = gemm_k(n, &s->vals[n->in[0]], &s->vals[n->in[1]], y);
        *flops += 2.0 * (double)onyx_numel(y) * (double)k;
    }
    return ONYX_OK;
}
