/* op_harness.c — see op_harness.h. */
#include "op_harness.h"

#include <math.h>
#include <stdio.h>
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

/* A malloc'd copy of the size bytes at p, one byte longer so that size 0 allocates too. */
static void *copy_bytes(const void *p, size_t size)
{
    void *q = malloc(size + 1);
    if (size)
        memcpy(q, p, size);
    return q;
}

void th_attr_ints(th_node *t, const char *name, const int64_t *v, size_t n)
{
    onyx_attr *a = add_attr(t, name, ONYX_ATTR_INTS);
    a->ints = copy_bytes(v, sizeof(int64_t) * n);
    a->n = n;
}

void th_attr_floats(th_node *t, const char *name, const float *v, size_t n)
{
    onyx_attr *a = add_attr(t, name, ONYX_ATTR_FLOATS);
    a->floats = copy_bytes(v, sizeof(float) * n);
    a->n = n;
}

void th_attr_tensor(th_node *t, const char *name, const onyx_tensor *v)
{
    onyx_attr *a = add_attr(t, name, ONYX_ATTR_TENSOR);
    a->t = *v;
    a->t.data = copy_bytes(v->data, onyx_nbytes(v));
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
    onyx_kctx ctx = {.mode = mode, .rng = &t->rng};
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

onyx_status th_run_impl(th_node *t, const onyx_op_impl *impl, const onyx_tensor *in,
                        onyx_tensor *out, void *buf, size_t cap, onyx_error *err)
{
    onyx_node *n = th_onyx_node(t);
    n->impl = impl;
    onyx_status st = impl->init ? impl->init(n, err) : ONYX_OK;
    if (st != ONYX_OK)
        return st;
    memset(out, 0, sizeof(*out));
    out[0].rank = -1;
    st = impl->infer(n, in, out, err);
    if (st == ONYX_OK && buf != NULL) {
        if (onyx_nbytes(&out[0]) > cap) {
            st = onyx_err(err, ONYX_ERR_INTERNAL, "test buffer too small");
        } else {
            onyx_kctx ctx = {.mode = ONYX_MODE_INFER};
            out[0].data = buf;
            impl->forward(n, &ctx, in, out);
        }
    }
    if (impl->fini)
        impl->fini(n);
    else
        free(n->priv);
    n->priv = NULL;
    return st;
}

/* ---- checking results --------------------------------------------------------------------- */

bool th_dims_eq(const onyx_tensor *t, int rank, const int64_t *dims)
{
    if (t->rank != rank)
        return false;
    for (int i = 0; i < rank; i++)
        if (t->dims[i] != dims[i])
            return false;
    return true;
}

int64_t th_numel(int rank, const int64_t *dims)
{
    int64_t n = 1;
    for (int i = 0; i < rank; i++)
        n *= dims[i];
    return n;
}

bool th_close_f32(const float *got, const double *want, int64_t n, double atol, double rtol,
                  const char *what)
{
    for (int64_t i = 0; i < n; i++) {
        double g = got[i];
        double w = want[i];
        if (isnan(w) && isnan(g))
            continue;
        if (isinf(w) && g == w)
            continue;
        if (!(fabs(g - w) <= atol + rtol * fabs(w))) {
            fprintf(stderr, "%s: element %lld is %.9g, expected %.9g\n", what, (long long)i, g, w);
            return false;
        }
    }
    return true;
}

bool th_close_f64(const double *got, const double *want, int64_t n, double atol, double rtol,
                  const char *what)
{
    for (int64_t i = 0; i < n; i++) {
        if (!(fabs(got[i] - want[i]) <= atol + rtol * fabs(want[i]))) {
            fprintf(stderr, "%s: element %lld is %.17g, expected %.17g\n", what, (long long)i,
                    got[i], want[i]);
            return false;
        }
    }
    return true;
}

int64_t th_naive_index(const onyx_tensor *out, const onyx_tensor *src, int64_t flat)
{
    int64_t idx = 0;
    int64_t stride = 1;
    for (int i = out->rank - 1; i >= 0; i--) {
        int64_t coord = flat % out->dims[i];
        flat /= out->dims[i];
        int is = i - (out->rank - src->rank);
        if (is >= 0) {
            if (src->dims[is] != 1)
                idx += coord * stride;
            stride *= src->dims[is];
        }
    }
    return idx;
}

/* ---- deterministic test data -------------------------------------------------------------- */

double th_urand(uint64_t *state, double lo, double hi)
{
    uint64_t s = *state;
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    *state = s;
    return lo + (hi - lo) * (double)(s >> 11) / 9007199254740992.0;
}

float th_frand(uint64_t *state)
{
    *state = *state * 6364136223846793005u + 1442695040888963407u;
    return (float)((*state >> 40) / 8388608.0 - 1.0);
}

/* ---- the official ONNX conformance data --------------------------------------------------- */

bool th_case_tensor(const char *name, const char *what, int i, onyx_tensor *t, onyx_error *err)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s/test_data_set_0/%s_%d.pb", TH_NODE_DATA, name, what, i);
    memset(t, 0, sizeof(*t));
    memset(err, 0, sizeof(*err));
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return false;
    fclose(f);
    if (onyx_tensor_read_file(path, t, NULL, err) == ONYX_OK)
        return true;
    memset(t, 0, sizeof(*t)); /* a failed read leaves nothing to free */
    return false;
}

bool th_case_read(const char *name, int n_in, onyx_tensor *in, int n_out, onyx_tensor *want,
                  onyx_error *err)
{
    memset(err, 0, sizeof(*err));
    for (int i = 0; i < n_in; i++)
        memset(&in[i], 0, sizeof(in[i]));
    for (int i = 0; i < n_out; i++)
        memset(&want[i], 0, sizeof(want[i]));
    bool have = true;
    for (int i = 0; i < n_in && have; i++)
        have = th_case_tensor(name, "input", i, &in[i], err);
    for (int i = 0; i < n_out && have; i++)
        have = th_case_tensor(name, "output", i, &want[i], err);
    if (!have) {
        for (int i = 0; i < n_in; i++)
            onyx_tensor_free(&in[i]);
        for (int i = 0; i < n_out; i++)
            onyx_tensor_free(&want[i]);
    }
    return have;
}
