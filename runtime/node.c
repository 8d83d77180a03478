/* node.c — what every op needs from its node: error messages, arity, typed attributes, its
 * private struct, and dtype checks. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
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

onyx_status onyx_node_set_priv(onyx_node *n, const void *p, size_t size, onyx_error *err)
{
    void *q = malloc(size);
    if (q == NULL)
        return onyx_node_err(err, n, ONYX_ERR_NOMEM, "out of memory");
    memcpy(q, p, size);
    n->priv = q;
    return ONYX_OK;
}

char *onyx_ints_str(const int64_t *v, int64_t count, char *buf, size_t size)
{
    size_t used = 0;
    if (size == 0)
        return buf;
    buf[0] = '\0';
    used += (size_t)snprintf(buf, size, "[");
    for (int64_t i = 0; i < count && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%lld", i ? "," : "", (long long)v[i]);
    if (used < size)
        snprintf(buf + used, size - used, "]");
    return buf;
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

onyx_status onyx_attr_flag(const onyx_node *n, const char *name, bool def, bool *out,
                           onyx_error *err)
{
    int64_t v;
    onyx_status st = onyx_attr_int(n, name, def ? 1 : 0, &v, err);
    *out = def;
    if (st != ONYX_OK)
        return st;
    if (v != 0 && v != 1)
        return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL,
                             "attribute %s is %lld, expected 0 or 1", name, (long long)v);
    *out = v == 1;
    return ONYX_OK;
}

/* ---- dtype checks ------------------------------------------------------------------------- */

bool onyx_dtype_in(onyx_dtype dt, unsigned mask)
{
    return (unsigned)dt < 32 && (mask & ONYX_DT(dt)) != 0;
}

/* The names of the dtypes in mask, "float16, float32, float64", into buf. */
static const char *mask_str(unsigned mask, char *buf, size_t size)
{
    static const onyx_dtype order[] = {
        ONYX_DTYPE_U8,  ONYX_DTYPE_U16, ONYX_DTYPE_U32,  ONYX_DTYPE_U64, ONYX_DTYPE_I8,
        ONYX_DTYPE_I16, ONYX_DTYPE_I32, ONYX_DTYPE_I64,  ONYX_DTYPE_F16, ONYX_DTYPE_BF16,
        ONYX_DTYPE_F32, ONYX_DTYPE_F64, ONYX_DTYPE_BOOL,
    };
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        if (!(mask & ONYX_DT(order[i])))
            continue;
        int k =
            snprintf(buf + used, size - used, "%s%s", used ? ", " : "", onyx_dtype_name(order[i]));
        if (k < 0 || (size_t)k >= size - used)
            break;
        used += (size_t)k;
    }
    return buf;
}

static onyx_status check_dtype(const onyx_node *n, onyx_status code, const char *what,
                               onyx_dtype dt, unsigned mask, onyx_error *err)
{
    if (dt == ONYX_DTYPE_UNDEFINED || onyx_dtype_in(dt, mask))
        return ONYX_OK;
    char list[192];
    return onyx_node_err(err, n, code, "input %s has dtype %s, expected one of: %s", what,
                         onyx_dtype_name(dt), mask_str(mask, list, sizeof list));
}

onyx_status onyx_node_check_dtype(const onyx_node *n, const char *what, onyx_dtype dt,
                                  unsigned mask, onyx_error *err)
{
    return check_dtype(n, ONYX_ERR_SHAPE, what, dt, mask, err);
}

onyx_status onyx_node_check_float(const onyx_node *n, const char *what, onyx_dtype dt,
                                  onyx_error *err)
{
    return check_dtype(n, ONYX_ERR_UNSUPPORTED, what, dt, ONYX_DT_FLOAT | ONYX_DT_BF16, err);
}

onyx_status onyx_node_check_same_dtype(const onyx_node *n, const char *what, onyx_dtype dt,
                                       const char *ref_what, onyx_dtype ref, onyx_error *err)
{
    if (dt == ref || dt == ONYX_DTYPE_UNDEFINED || ref == ONYX_DTYPE_UNDEFINED)
        return ONYX_OK;
    return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                         "input %s has dtype %s, expected %s (the dtype of input %s)", what,
                         onyx_dtype_name(dt), onyx_dtype_name(ref), ref_what);
}
