/*
 * graph.c — validate the IR that model.c built and get it ready to run:
 *  1. resolve every node to an op for its imported opset: a custom op of the caller's registry
 *     (runtime/plugin.c) first, else one of ops/ops.def (every unsupported node is listed at
 *     once);
 *  2. sort the nodes topologically (a cycle is an error naming a node on it);
 *  3. let each op parse its attributes (impl->init);
 *  4. static shape inference in node order (impl->infer with whatever is known: a symbolic batch
 *     dimension stays -1), folding small constant chains (Constant, Shape of a known shape,
 *     arithmetic on them) into values computed once at load (never custom ops: a plugin's op
 *     may have effects or costs onyx cannot see);
 *  5. check what the nodes produce against the graph outputs' declared types.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void onyx_graph_free(onyx_model *m);
onyx_status onyx_graph_prepare(onyx_model *m, const onyx_load_options *opt, onyx_error *err);

/* Folding computes at most this many elements per node output at load time. */
#define FOLD_MAX_ELEMS 65536

/* Each node's op: the registry's custom op first, then the built-in one. */
static onyx_status resolve_ops(onyx_model *m, const onyx_load_options *opt, onyx_error *err)
{
    char list[ONYX_ERRMSG_SIZE];
    size_t used = 0;
    int bad = 0;
    int shown = 0;
    list[0] = '\0';
    for (int i = 0; i < m->n_nodes; i++) {
        onyx_node *n = &m->nodes[i];
        if (n->opset >= 0) {
            const char *origin = NULL;
            const onyx_op_impl *custom =
                onyx_registry_find(opt->registry, n->domain, n->op_type, n->opset, &origin);
            if (custom != NULL) {
                n->impl = custom;
                onyx_logf(opt->log, opt->log_user, ONYX_LOG_DEBUG,
                          "%s: node \"%s\" (%s%s%s, opset %lld): custom op%s%s", m->name, n->name,
                          n->domain, n->domain[0] ? "." : "", n->op_type, (long long)n->opset,
                          origin ? " of plugin " : " added by the application",
                          origin ? origin : "");
                continue;
            }
        }
        const onyx_op_def *def = n->opset >= 0 ? onyx_op_find(n->domain, n->op_type, n->opset) : NULL;
        if (def != NULL && def->impl->infer != NULL && def->impl->forward != NULL) {
            n->impl = def->impl;
            continue;
        }
        bad++;
        char one[300];
        char hint[120] = "";
        int64_t since;
        int64_t until;
        if (onyx_registry_has_type(opt->registry, n->domain, n->op_type, &since, &until)) {
            if (until == 0)
                snprintf(hint, sizeof hint, " (the registry has it for opsets %lld and up)",
                         (long long)since);
            else
                snprintf(hint, sizeof hint, " (the registry has it for opsets %lld to %lld)",
                         (long long)since, (long long)until);
        } else if (n->domain[0] != '\0') {
            snprintf(hint, sizeof hint, " (is its plugin loaded?)");
        }
        if (n->opset < 0)
            snprintf(one, sizeof one, "%snode \"%s\" (%s, domain \"%s\" not imported)",
                     bad > 1 ? "; " : "", n->name, n->op_type, n->domain);
        else
            snprintf(one, sizeof one, "%snode \"%s\" (%s, domain \"%s\", opset %lld)%s",
                     bad > 1 ? "; " : "", n->name, n->op_type, n->domain, (long long)n->opset,
                     hint);
        if (used + strlen(one) + 40 < sizeof list) {
            used += (size_t)snprintf(list + used, sizeof list - used, "%s", one);
            shown++;
        }
    }
    if (bad == 0)
        return ONYX_OK;
    if (shown < bad)
        snprintf(list + used, sizeof list - used, "; and %d more", bad - shown);
    return onyx_err(err, ONYX_ERR_UNSUPPORTED, "%s: %d unsupported node%s: %s", m->name, bad,
                    bad == 1 ? "" : "s", list);
}

static onyx_status topo_sort(onyx_model *m, onyx_error *err)
{
    int n = m->n_nodes;
    if (n <= 0)
        return ONYX_OK;
    int *indeg = onyx_calloc((size_t)n, sizeof(int));
    int *order = onyx_calloc((size_t)n, sizeof(int));
    int *n_users = onyx_calloc((size_t)n + 1, sizeof(int));
    int *user_start = onyx_calloc((size_t)n + 1, sizeof(int));
    onyx_node *sorted = onyx_calloc((size_t)n, sizeof(onyx_node));
    int *users = NULL;
    onyx_status st = ONYX_OK;
    if (!indeg || !order || !n_users || !user_start || !sorted) {
        st = onyx_err(err, ONYX_ERR_NOMEM, "%s: out of memory", m->name);
        goto done;
    }
    /* Edges producer -> consumer, stored as a compact adjacency list. */
    size_t n_edges = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m->nodes[i].n_in; j++) {
            int v = m->nodes[i].in[j];
            if (v >= 0 && m->values[v].producer >= 0) {
                n_users[m->values[v].producer]++;
                indeg[i]++;
                n_edges++;
            }
        }
    users = onyx_calloc(n_edges + 1, sizeof(int));
    if (users == NULL) {
        st = onyx_err(err, ONYX_ERR_NOMEM, "%s: out of memory", m->name);
        goto done;
    }
    for (int i = 0; i < n; i++)
        user_start[i + 1] = user_start[i] + n_users[i];
    memset(n_users, 0, sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m->nodes[i].n_in; j++) {
            int v = m->nodes[i].in[j];
            if (v >= 0 && m->values[v].producer >= 0) {
                int p = m->values[v].producer;
                users[user_start[p] + n_users[p]++] = i;
            }
        }
    /* Kahn's algorithm; the queue keeps the file's order among ready nodes. */
    int head = 0;
    int tail = 0;
    for (int i = 0; i < n; i++)
        if (indeg[i] == 0)
            order[tail++] = i;
    while (head < tail) {
        int i = order[head++];
        for (int k = user_start[i]; k < user_start[i + 1]; k++)
            if (--indeg[users[k]] == 0)
                order[tail++] = users[k];
    }
    if (tail < n) {
        for (int i = 0; i < n; i++)
            if (indeg[i] > 0) {
                st = onyx_err(err, ONYX_ERR_INVALID_MODEL,
                              "%s: the graph has a cycle through node \"%s\" (%s)", m->name,
                              m->nodes[i].name, m->nodes[i].op_type);
                break;
            }
        goto done;
    }
    for (int k = 0; k < n; k++)
        sorted[k] = m->nodes[order[k]];
    memcpy(m->nodes, sorted, sizeof(onyx_node) * (size_t)n);
    for (int k = 0; k < n; k++)
        for (int j = 0; j < m->nodes[k].n_out; j++)
            if (m->nodes[k].out[j] >= 0)
                m->values[m->nodes[k].out[j]].producer = k;
done:
    free(indeg);
    free(order);
    free(n_users);
    free(user_start);
    free(sorted);
    free(users);
    return st;
}

/* What is known statically about value v: its info, minus data that a caller may override. */
static onyx_tensor static_view(const onyx_model *m, int v)
{
    onyx_tensor t;
    if (v < 0) {
        memset(&t, 0, sizeof t);
        t.rank = -1;
        return t;
    }
    const onyx_value *val = &m->values[v];
    t = val->info;
    if (val->kind == ONYX_VALUE_INITIALIZER && val->is_graph_input)
        t.data = NULL; /* may be fed at run time: not a constant */
    return t;
}

static bool shape_conflict(const onyx_tensor *a, const onyx_tensor *b)
{
    if (a->rank < 0 || b->rank < 0)
        return false;
    if (a->rank != b->rank)
        return true;
    for (int i = 0; i < a->rank; i++)
        if (a->dims[i] >= 0 && b->dims[i] >= 0 && a->dims[i] != b->dims[i])
            return true;
    return false;
}

static onyx_status infer_all(onyx_model *m, onyx_error *err)
{
    onyx_tensor *in = onyx_calloc((size_t)m->max_in + 1, sizeof(onyx_tensor));
    onyx_tensor *out = onyx_calloc((size_t)m->max_out + 1, sizeof(onyx_tensor));
    onyx_status st = ONYX_OK;
    if (in == NULL || out == NULL) {
        st = onyx_err(err, ONYX_ERR_NOMEM, "%s: out of memory", m->name);
        goto done;
    }
    for (int i = 0; i < m->n_nodes && st == ONYX_OK; i++) {
        onyx_node *n = &m->nodes[i];
        bool all_data = true;
        for (int j = 0; j < n->n_in; j++) {
            in[j] = static_view(m, n->in[j]);
            if (n->in[j] < 0)
                continue;
            bool have = in[j].data != NULL ||
                        ((n->impl->flags & ONYX_OPF_SHAPE_ONLY) && onyx_shape_known(&in[j]) &&
                         in[j].dtype != ONYX_DTYPE_UNDEFINED);
            all_data = all_data && have;
        }
        for (int j = 0; j < n->n_out; j++) {
            memset(&out[j], 0, sizeof out[j]);
            out[j].rank = -1;
        }
        st = n->impl->infer(n, in, out, err);
        if (st != ONYX_OK)
            break;
        /* Fold when everything is known and small, and the op is deterministic. */
        unsigned no_fold = ONYX_OPF_RANDOM | ONYX_OPF_MODE | ONYX_OPF_GRAPH | ONYX_OPF_CUSTOM;
        bool fold = all_data && !(n->impl->flags & no_fold);
        for (int j = 0; j < n->n_out && fold; j++) {
            if (n->out[j] < 0)
                continue;
            int64_t numel;
            fold = onyx_shape_known(&out[j]) && out[j].dtype != ONYX_DTYPE_UNDEFINED &&
                   onyx_shape_numel(out[j].dims, out[j].rank, onyx_dtype_size(out[j].dtype),
                                    &numel) &&
                   numel <= FOLD_MAX_ELEMS;
        }
        if (fold) {
            for (int j = 0; j < n->n_out; j++) {
                if (n->out[j] < 0)
                    continue;
                size_t nb = onyx_nbytes(&out[j]);
                out[j].data = aligned_alloc(64, (nb + 63) / 64 * 64 + 64);
                if (out[j].data == NULL)
                    fold = false;
            }
            if (fold) {
                onyx_kctx ctx = {.mode = ONYX_MODE_INFER};
                n->impl->forward(n, &ctx, in, out);
                m->node_const[i] = true;
            } else {
                for (int j = 0; j < n->n_out; j++)
                    free(out[j].data), out[j].data = NULL;
            }
        }
        for (int j = 0; j < n->n_out; j++) {
            int v = n->out[j];
            if (v < 0)
                continue;
            onyx_value *val = &m->values[v];
            if (val->is_graph_output) {
                const onyx_tensor *d = &val->decl;
                char s1[128];
                char s2[128];
                if (d->dtype != ONYX_DTYPE_UNDEFINED && out[j].dtype != ONYX_DTYPE_UNDEFINED &&
                    d->dtype != out[j].dtype)
                    st = onyx_err(err, ONYX_ERR_INVALID_MODEL,
                                  "%s: graph output \"%s\" is declared %s but node \"%s\" (%s) "
                                  "produces %s",
                                  m->name, val->name, onyx_dtype_name(d->dtype), n->name,
                                  n->op_type, onyx_dtype_name(out[j].dtype));
                else if (shape_conflict(d, &out[j]))
                    st = onyx_err(err, ONYX_ERR_SHAPE,
                                  "%s: graph output \"%s\" is declared with shape %s but node "
                                  "\"%s\" (%s) produces %s",
                                  m->name, val->name, onyx_shape_str(d, s1, sizeof s1), n->name,
                                  n->op_type, onyx_shape_str(&out[j], s2, sizeof s2));
                /* Keep what the declaration knows and inference did not find. */
                if (out[j].dtype == ONYX_DTYPE_UNDEFINED)
                    out[j].dtype = d->dtype;
                if (out[j].rank < 0 && d->rank >= 0) {
                    out[j].rank = d->rank;
                    memcpy(out[j].dims, d->dims, sizeof d->dims);
                }
            }
            val->info = out[j];
        }
    }
done:
    free(in);
    free(out);
    return st;
}

/* A graph-level op reads the value its attribute "y" names: make it an extra (last) input, so that
 * the topological order puts the op after y's producer. */
static onyx_status link_graph_ops(onyx_model *m, onyx_error *err)
{
    for (int i = 0; i < m->n_nodes; i++) {
        onyx_node *n = &m->nodes[i];
        if (!(n->impl->flags & ONYX_OPF_GRAPH))
            continue;
        const onyx_attr *y = onyx_node_attr(n, "y");
        if (y == NULL || y->type != ONYX_ATTR_STRING)
            return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL,
                                 "attribute y (a string naming a value) is required");
        int v = -1;
        for (int k = 0; k < m->n_values && v < 0; k++)
            if (strcmp(m->values[k].name, y->s) == 0)
                v = k;
        if (v < 0)
            return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL,
                                 "attribute y names \"%s\", which is not a value of the graph",
                                 y->s);
        int *in = realloc(n->in, sizeof(int) * (size_t)(n->n_in + 2));
        if (in == NULL)
            return onyx_err(err, ONYX_ERR_NOMEM, "%s: out of memory", m->name);
        n->in = in;
        n->in[n->n_in++] = v;
    }
    return ONYX_OK;
}

/* What the caller may want to know about a loaded model: a summary, and oddities that are
 * valid ONNX but probably not what the author meant. */
static void log_summary(const onyx_model *m, const onyx_load_options *opt)
{
    if (opt->log == NULL)
        return;
    int folded = 0;
    int custom = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        folded += m->node_const[i];
        custom += (m->nodes[i].impl->flags & ONYX_OPF_CUSTOM) != 0;
    }
    bool *used = onyx_calloc((size_t)m->n_values + 1, sizeof(bool));
    if (used != NULL) {
        for (int i = 0; i < m->n_nodes; i++)
            for (int j = 0; j < m->nodes[i].n_in; j++)
                if (m->nodes[i].in[j] >= 0)
                    used[m->nodes[i].in[j]] = true;
        for (int v = 0; v < m->n_values; v++) {
            const onyx_value *val = &m->values[v];
            if (val->kind == ONYX_VALUE_INITIALIZER && !used[v] && !val->is_graph_output)
                onyx_logf(opt->log, opt->log_user, ONYX_LOG_WARN,
                          "%s: initializer \"%s\" feeds no node and is no graph output", m->name,
                          val->name);
            if (val->is_graph_output && val->is_graph_input)
                onyx_logf(opt->log, opt->log_user, ONYX_LOG_WARN,
                          "%s: graph output \"%s\" is also a graph input: it is passed through "
                          "unchanged",
                          m->name, val->name);
        }
        free(used);
    }
    onyx_logf(opt->log, opt->log_user, ONYX_LOG_INFO,
              "%s: loaded: %d node%s (%d custom), %d initializer%s, %d input%s, %d output%s, "
              "%d node%s folded to constants at load",
              m->name, m->n_nodes, m->n_nodes == 1 ? "" : "s", custom, m->n_initializers,
              m->n_initializers == 1 ? "" : "s", m->n_inputs, m->n_inputs == 1 ? "" : "s",
              m->n_outputs, m->n_outputs == 1 ? "" : "s", folded, folded == 1 ? "" : "s");
}

onyx_status onyx_graph_prepare(onyx_model *m, const onyx_load_options *opt, onyx_error *err)
{
    onyx_status st = resolve_ops(m, opt, err);
    if (st == ONYX_OK)
        st = link_graph_ops(m, err);
    if (st == ONYX_OK)
        st = topo_sort(m, err);
    if (st != ONYX_OK) {
        for (int i = 0; i < m->n_nodes; i++)
            m->nodes[i].impl = NULL; /* none was initialised: nothing to fini */
        return st;
    }
    m->node_const = onyx_calloc((size_t)m->n_nodes + 1, sizeof(bool));
    if (m->node_const == NULL)
        return onyx_err(err, ONYX_ERR_NOMEM, "%s: out of memory", m->name);
    for (int i = 0; i < m->n_nodes; i++) {
        onyx_node *n = &m->nodes[i];
        if (n->n_in > m->max_in)
            m->max_in = n->n_in;
        if (n->n_out > m->max_out)
            m->max_out = n->n_out;
        if (n->impl->init) {
            st = n->impl->init(n, err);
            if (st != ONYX_OK) {
                /* A failed init leaves at most a plain malloc'd priv; later nodes were never
                 * initialised. */
                free(n->priv);
                n->priv = NULL;
                n->impl = NULL;
                for (int k = i + 1; k < m->n_nodes; k++)
                    m->nodes[k].impl = NULL;
                return st;
            }
        }
    }
    st = infer_all(m, err);
    if (st != ONYX_OK)
        return st;
    for (int i = 0; i < m->n_outputs; i++) {
        onyx_value *v = &m->values[m->outputs[i]];
        if (v->kind != ONYX_VALUE_NODE && v->decl.dtype != ONYX_DTYPE_UNDEFINED &&
            v->info.dtype != v->decl.dtype)
            return onyx_err(err, ONYX_ERR_INVALID_MODEL,
                            "%s: graph output \"%s\" is declared %s but is %s", m->name, v->name,
                            onyx_dtype_name(v->decl.dtype), onyx_dtype_name(v->info.dtype));
    }
    log_summary(m, opt);
    return ONYX_OK;
}

void onyx_graph_free(onyx_model *m)
{
    if (m->nodes == NULL)
        return;
    for (int i = 0; i < m->n_nodes; i++) {
        onyx_node *n = &m->nodes[i];
        if (n->impl == NULL)
            continue;
        if (n->impl->fini)
            n->impl->fini(n);
        else
            free(n->priv);
        n->priv = NULL;
        n->impl = NULL;
    }
    if (m->node_const) {
        for (int i = 0; i < m->n_values; i++) {
            onyx_value *v = &m->values[i];
            if (v->kind == ONYX_VALUE_NODE && v->producer >= 0 && m->node_const[v->producer])
                free(v->info.data);
            if (v->kind == ONYX_VALUE_NODE)
                v->info.data = NULL;
        }
    }
    free(m->node_const);
    m->node_const = NULL;
}
