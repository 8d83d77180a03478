/* node.c — what every op needs from its node: error messages, arity, typed attributes. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

onyx_status onyx_node_err(onyx_error *err, const onyx_node *n, onyx_status code, const char *fmt,
                          ...)
{
    if (err == NULL)
        return code;
    char detail[ONYX_ERRMSG_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    return onyx_err(err, code, "node \"%s\" (%s%s%s, opset %lld): %s", n->name,
                    n->domain[0] ? n->domain : "", n->domain[0] ? "." : "", n->op_type,
                    (long long)n->opset, detail);
}

bool onyx_node_has_in(const onyx_node *n, int i)
{
    return i >= 0 && i < n->n_in && n->in[i] >= 0;
}

bool onyx_node_has_out(const onyx_node *n, int i)
{
    return i >= 0 && i < n->n_out && n->out[i] >= 0;
}

onyx_status onyx_node_check_arity(const onyx_node *n, int min_in, int max_in, int min_out,
                                  int max_out, onyx_error *err)
{
    int n_in = n->n_in;
    while (n_in > 0 && n->in[n_in - 1] < 0)
        n_in--;
    int n_out = n->n_out;
    while (n_out > 0 && n->out[n_out - 1] < 0)
        n_out--;
    if (n_in < min_in || n_in > max_in) {
        if (min_in == max_in)
            return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL, "has %d inputs, expected %d",
                                 n_in, min_in);
        return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL,
                             "has %d inputs, expected %d to %d", n_in, min_in, max_in);
    }
    if (n_out < min_out || n_out > max_out) {
        if (min_out == max_out)
            return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL, "has %d outputs, expected %d",
                                 n_out, min_out);
        return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL,
                             "has %d outputs, expected %d to %d", n_out, min_out, max_out);
    }
    for (int i = 0; i < min_in; i++)
        if (n->in[i] < 0)
            return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL,
                                 "required input %d is empty", i);
    return ONYX_OK;
}

const onyx_attr *onyx_node_attr(const onyx_node *n, const char *name)
{
    for (int i = 0; i < n->n_attr; i++)
        if (strcmp(n->attr[i].name, name) == 0)
            return &n->attr[i];
    return NULL;
}

static const char *attr_type_name(onyx_attr_type t)
{
    switch (t) {
    case ONYX_ATTR_FLOAT: return "float";
    case ONYX_ATTR_INT: return "int";
    case ONYX_ATTR_STRING: return "string";
    case ONYX_ATTR_TENSOR: return "tensor";
    case ONYX_ATTR_GRAPH: return "graph";
    case ONYX_ATTR_FLOATS: return "floats";
    case ONYX_ATTR_INTS: return "ints";
    case ONYX_ATTR_STRINGS: return "strings";
    case ONYX_ATTR_TENSORS: return "tensors";
    case ONYX_ATTR_GRAPHS: return "graphs";
    case ONYX_ATTR_SPARSE_TENSOR: return "sparse_tensor";
    case ONYX_ATTR_SPARSE_TENSORS: return "sparse_tensors";
    case ONYX_ATTR_TYPE_PROTO: return "type_proto";
    case ONYX_ATTR_TYPE_PROTOS: return "type_protos";
    case ONYX_ATTR_UNDEFINED: break;
    }
    return "undefined";
}

static onyx_status want(const onyx_node *n, const onyx_attr *a, onyx_attr_type type,
                        onyx_error *err)
{
    if (a->type == type)
        return ONYX_OK;
    return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL, "attribute %s has type %s, expected %s",
                         a->name, attr_type_name(a->type), attr_type_name(type));
}

onyx_status onyx_attr_int(const onyx_node *n, const char *name, int64_t def, int64_t *out,
                          onyx_error *err)
{
    const onyx_attr *a = onyx_node_attr(n, name);
    *out = def;
    if (a == NULL)
        return ONYX_OK;
    onyx_status st = want(n, a, ONYX_ATTR_INT, err);
    if (st == ONYX_OK)
        *out = a->i;
    return st;
}

onyx_status onyx_attr_float(const onyx_node *n, const char *name, float def, float *out,
                            onyx_error *err)
{
    const onyx_attr *a = onyx_node_attr(n, name);
    *out = def;
    if (a == NULL)
        return ONYX_OK;
    onyx_status st = want(n, a, ONYX_ATTR_FLOAT, err);
    if (st == ONYX_OK)
        *out = a->f;
    return st;
}

onyx_status onyx_attr_string(const onyx_node *n, const char *name, const char *def,
                             const char **out, onyx_error *err)
{
    const onyx_attr *a = onyx_node_attr(n, name);
    *out = def;
    if (a == NULL)
        return ONYX_OK;
    onyx_status st = want(n, a, ONYX_ATTR_STRING, err);
    if (st == ONYX_OK)
        *out = a->s;
    return st;
}

onyx_status onyx_attr_ints(const onyx_node *n, const char *name, const int64_t **out, size_t *count,
                           bool *present, onyx_error *err)
{
    const onyx_attr *a = onyx_node_attr(n, name);
    *out = NULL;
    *count = 0;
    if (present)
        *present = false;
    if (a == NULL)
        return ONYX_OK;
    onyx_status st = want(n, a, ONYX_ATTR_INTS, err);
    if (st != ONYX_OK)
        return st;
    *out = a->ints;
    *count = a->n;
    if (present)
        *present = true;
    return ONYX_OK;
}

onyx_status onyx_attr_floats(const onyx_node *n, const char *name, const float **out,
                             size_t *count, bool *present, onyx_error *err)
{
    const onyx_attr *a = onyx_node_attr(n, name);
    *out = NULL;
    *count = 0;
    if (present)
        *present = false;
    if (a == NULL)
        return ONYX_OK;
    onyx_status st = want(n, a, ONYX_ATTR_FLOATS, err);
    if (st != ONYX_OK)
        return st;
    *out = a->floats;
    *count = a->n;
    if (present)
        *present = true;
    return ONYX_OK;
}

onyx_status onyx_attr_tensor(const onyx_node *n, const char *name, const onyx_tensor **out,
                             bool *present, onyx_error *err)
{
    const onyx_attr *a = onyx_node_attr(n, name);
    *out = NULL;
    if (present)
        *present = false;
    if (a == NULL)
        return ONYX_OK;
    onyx_status st = want(n, a, ONYX_ATTR_TENSOR, err);
    if (st != ONYX_OK)
        return st;
    *out = &a->t;
    if (present)
        *present = true;
    return ONYX_OK;
}
