/* op_harness.c — see op_harness.h. */
#include "op_harness.h"

#include <stdlib.h>
#include <string.h>

struct th_node {
    onyx_node node;
    bool inited;
    onyx_rng rng;
    void *out_buf[16];
    size_t out_cap[16];
};

th_node *th_node_new(const char *op_type, int64_t opset, int n_in, int n_out)
{
    th_node *t = calloc(1, sizeof(*t));
    t->node.name = onyx_strdup("test_node");
    t->node.op_type = onyx_strdup(op_type);
    t->node.domain = onyx_strdup("");
    t->node.opset = opset;
    t->node.n_in = n_in;
    t->node.n_out = n_out;
    t->node.in = calloc((size_t)n_in + 1, sizeof(int));
    t->node.out = calloc((size_t)n_out + 1, sizeof(int));
    for (int i = 0; i < n_in; i++)
        t->node.in[i] = i;
    for (int i = 0; i < n_out; i++)
        t->node.out[i] = n_in + i;
    onyx_rng_seed(&t->rng, 1234);
    return t;
}

onyx_node *th_onyx_node(th_node *t)
{
    return &t->node;
}

void th_set_seed(th_node *t, uint64_t seed)
{
    onyx_rng_seed(&t->rng, seed);
}

void th_set_out_omitted(th_node *t, int i)
{
    t->node.out[i] = -1;
}

static onyx_attr *add_attr(th_node *t, const char *name, onyx_attr_type type)
{
    onyx_node *n = &t->node;
    n->attr = realloc(n->attr, sizeof(onyx_attr) * (size_t)(n->n_attr + 1));
    onyx_attr *a = &n->attr[n->n_attr++];
    memset(a, 0, sizeof(*a));
    a->name = onyx_strdup(name);
    a->type = type;
    return a;
}

void th_attr_int(th_node *t, const char *name, int64_t v)
{
    add_attr(t, name, ONYX_ATTR_INT)->i = v;
}

void th_attr_float(th_node *t, const char *name, float v)
{
    add_attr(t, name, ONYX_ATTR_FLOAT)->f = v;
}

void th_attr_string(th_node *t, const char *name, const char *v)
{
    onyx_attr *a = add_attr(t, name, ONYX_ATTR_STRING);
    a->s = onyx_strdup(v);
    a->s_len = strlen(v);
}

void th_attr_ints(th_node *t, const char *name, const int64_t *v, size_t n)
{
    onyx_attr *a = add_attr(t, name, ONYX_ATTR_INTS);
    a->ints = malloc(sizeof(int64_t) * (n + 1));
    if (n)
        memcpy(a->ints, v, sizeof(int64_t) * n);
    a->n = n;
}

void th_attr_floats(th_node *t, const char *name, const float *v, size_t n)
{
    onyx_attr *a = add_attr(t, name, ONYX_ATTR_FLOATS);
    a->floats = malloc(sizeof(float) * (n + 1));
    if (n)
        memcpy(a->floats, v, sizeof(float) * n);
    a->n = n;
}

void th_attr_tensor(th_node *t, const char *name, const onyx_tensor *v)
{
    onyx_attr *a = add_attr(t, name, ONYX_ATTR_TENSOR);
    a->t = *v;
    size_t nb = onyx_nbytes(v);
    a->t.data = malloc(nb + 1);
    if (nb)
        memcpy(a->t.data, v->data, nb);
}

void th_attr_raw(th_node *t, const char *name, onyx_attr_type type)
{
    add_attr(t, name, type);
}

void th_node_free(th_node *t)
{
    if (t == NULL)
        return;
    onyx_node *n = &t->node;
    if (t->inited && n->impl) {
        if (n->impl->fini)
            n->impl->fini(n);
        else
            free(n->priv);
    }
    for (int i = 0; i < n->n_attr; i++) {
        free(n->attr[i].name);
        free(n->attr[i].s);
        free(n->attr[i].ints);
        free(n->attr[i].floats);
        free(n->attr[i].t.data);
    }
    free(n->attr);
    free(n->name);
    free(n->op_type);
    free(n->domain);
    free(n->in);
    free(n->out);
    for (int i = 0; i < 16; i++)
        free(t->out_buf[i]);
    free(t);
}

static onyx_status ensure_init(th_node *t, const onyx_tensor *in, onyx_error *err)
{
    onyx_node *n = &t->node;
    for (int i = 0; i < n->n_in; i++)
        if (in[i].dtype == ONYX_DTYPE_UNDEFINED)
            n->in[i] = -1;
    if (t->inited)
        return ONYX_OK;
    const onyx_op_def *def = onyx_op_find(n->domain, n->op_type, n->opset);
    if (def == NULL)
        return onyx_err(err, ONYX_ERR_UNSUPPORTED, "no op %s at opset %lld", n->op_type,
                        (long long)n->opset);
    n->impl = def->impl;
    if (n->impl->init) {
        onyx_status st = n->impl->init(n, err);
        if (st != ONYX_OK) {
            free(n->priv); /* as graph.c does: a failed init leaves at most a plain priv */
            n->priv = NULL;
            return st;
        }
    }
    t->inited = true;
    return ONYX_OK;
}

onyx_status th_infer(th_node *t, const onyx_tensor *in, onyx_tensor *out, onyx_error *err)
{
    onyx_status st = ensure_init(t, in, err);
    if (st != ONYX_OK)
        return st;
    onyx_node *n = &t->node;
    for (int i = 0; i < n->n_out; i++) {
        memset(&out[i], 0, sizeof(out[i]));
        out[i].rank = -1;
    }
    return n->impl->infer(n, in, out, err);
}

onyx_status th_run(th_node *t, onyx_mode mode, const onyx_tensor *in, onyx_tensor *out,
                   onyx_error *err)
{
    onyx_status st = th_infer(t, in, out, err);
    if (st != ONYX_OK)
        return st;
    onyx_node *n = &t->node;
    for (int i = 0; i < n->n_out && i < 16; i++) {
        if (n->out[i] < 0)
            continue;
        if (!onyx_shape_known(&out[i]) || out[i].dtype == ONYX_DTYPE_UNDEFINED)
            return onyx_err(err, ONYX_ERR_INTERNAL, "harness: infer left output %d unknown", i);
        size_t nb = onyx_nbytes(&out[i]);
        if (nb + 1 > t->out_cap[i]) {
            free(t->out_buf[i]);
            t->out_buf[i] = malloc(nb + 1);
            t->out_cap[i] = nb + 1;
        }
        /* poison so that kernels that forget to write an element are caught */
        memset(t->out_buf[i], 0xA5, nb + 1);
        out[i].data = t->out_buf[i];
    }
    onyx_kctx ctx = {mode, &t->rng};
    n->impl->forward(n, &ctx, in, out);
    return ONYX_OK;
}

onyx_tensor th_tensor(onyx_dtype dt, int rank, const int64_t *dims, const void *data)
{
    onyx_tensor t;
    memset(&t, 0, sizeof(t));
    t.dtype = dt;
    t.rank = rank;
    for (int i = 0; i < rank; i++)
        t.dims[i] = dims[i];
    t.data = (void *)(uintptr_t)data;
    return t;
}

onyx_tensor th_f32(int rank, const int64_t *dims, const float *data)
{
    return th_tensor(ONYX_DTYPE_F32, rank, dims, data);
}

onyx_tensor th_i64(int rank, const int64_t *dims, const int64_t *data)
{
    return th_tensor(ONYX_DTYPE_I64, rank, dims, data);
}

onyx_tensor th_omitted(void)
{
    onyx_tensor t;
    memset(&t, 0, sizeof(t));
    t.rank = -1;
    return t;
}
