/*
 * plugin.c — custom operators: the registry, plugin libraries (dlopen), the public view of a
 * node that custom ops get, the adapter that makes a custom op look like any built-in op to
 * the rest of the runtime, and the log helper.
 *
 * Each registered op gets a custom_def holding a copy of its onyx_custom_op and an onyx_op_impl
 * whose callbacks are the adapter functions below. graph.c points node->impl at that impl; the
 * adapter's init stores {def, state} in node->priv, where the other adapter functions find the
 * op and its state. So sessions, autodiff and the trainer need to know nothing about plugins;
 * only graph.c checks ONYX_OPF_CUSTOM, to never fold a custom node at load time.
 */
#include "internal.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- logging ------------------------------------------------------------------------------ */

const char *onyx_log_level_name(onyx_log_level level)
{
    switch (level) {
    case ONYX_LOG_ERROR: return "error";
    case ONYX_LOG_WARN: return "warn";
    case ONYX_LOG_INFO: return "info";
    case ONYX_LOG_DEBUG: return "debug";
    }
    return "unknown";
}

void onyx_logf(onyx_log_fn log, void *user, onyx_log_level level, const char *fmt, ...)
{
    if (log == NULL)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log(user, level, msg);
}

/* ---- the registry ------------------------------------------------------------------------- */

typedef struct custom_def {
    onyx_op_impl impl; /* the adapter; first member, so that n->impl leads back to the def */
    onyx_custom_op op; /* the caller's struct, with domain and op_type pointing to our copies */
    int lib;           /* index into the registry's libraries, or -1 (added by the application) */
} custom_def;

typedef struct plugin_lib {
    char *path;
    void *handle; /* from dlopen */
} plugin_lib;

struct onyx_registry {
    custom_def **defs; /* separately allocated: nodes keep pointers to their impl */
    size_t n_defs;
    size_t cap_defs;
    plugin_lib *libs;
    size_t n_libs;
    size_t cap_libs;
    int loading; /* index of the library whose entry point is running, or -1 */
    onyx_log_fn log;
    void *log_user;
    char errmsg[ONYX_ERRMSG_SIZE];
};

/* The node's private data while it runs a custom op. */
typedef struct custom_node {
    const custom_def *def;
    void *state;
} custom_node;

static onyx_status reg_fail(onyx_registry *reg, onyx_status code, const char *fmt, ...)
    ONYX_PRINTF(3, 4);

static onyx_status reg_fail(onyx_registry *reg, onyx_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reg->errmsg, sizeof reg->errmsg, fmt, ap);
    va_end(ap);
    onyx_logf(reg->log, reg->log_user, ONYX_LOG_ERROR, "%s", reg->errmsg);
    return code;
}

static bool default_domain(const char *d)
{
    return d == NULL || d[0] == '\0' || strcmp(d, "ai.onnx") == 0;
}

static bool same_domain(const char *a, const char *b)
{
    if (default_domain(a) || default_domain(b))
        return default_domain(a) && default_domain(b);
    return strcmp(a, b) == 0;
}

static int64_t until_of(const onyx_custom_op *op)
{
    return op->until_version == 0 ? INT64_MAX : op->until_version;
}

onyx_status onyx_registry_create(onyx_registry **out, onyx_error *err)
{
    if (out == NULL)
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "onyx_registry_create: out is NULL");
    *out = NULL;
    onyx_registry *reg = calloc(1, sizeof(*reg));
    if (reg == NULL)
        return onyx_err(err, ONYX_ERR_NOMEM, "onyx_registry_create: out of memory");
    reg->loading = -1;
    *out = reg;
    return ONYX_OK;
}

static void free_def(custom_def *d)
{
    if (d == NULL)
        return;
    free((char *)d->op.domain);
    free((char *)d->op.op_type);
    free(d);
}

void onyx_registry_destroy(onyx_registry *reg)
{
    if (reg == NULL)
        return;
    for (size_t i = 0; i < reg->n_defs; i++)
        free_def(reg->defs[i]);
    free(reg->defs);
    for (size_t i = 0; i < reg->n_libs; i++) {
        dlclose(reg->libs[i].handle);
        free(reg->libs[i].path);
    }
    free(reg->libs);
    free(reg);
}

void onyx_registry_set_log(onyx_registry *reg, onyx_log_fn log, void *user)
{
    if (reg == NULL)
        return;
    reg->log = log;
    reg->log_user = user;
}

size_t onyx_registry_op_count(const onyx_registry *reg)
{
    return reg ? reg->n_defs : 0;
}

const char *onyx_registry_errmsg(const onyx_registry *reg)
{
    return reg ? reg->errmsg : "";
}

/* "plugin PATH: " while a plugin registers its ops, else "". */
static const char *who(const onyx_registry *reg, char *buf, size_t size)
{
    if (reg->loading < 0)
        buf[0] = '\0';
    else
        snprintf(buf, size, "plugin %s: ", reg->libs[reg->loading].path);
    return buf;
}

/* "[3, 5]" or "[3, ...]" */
static const char *range_str(int64_t since, int64_t until, char *buf, size_t size)
{
    if (until == 0 || until == INT64_MAX)
        snprintf(buf, size, "[%lld, ...]", (long long)since);
    else
        snprintf(buf, size, "[%lld, %lld]", (long long)since, (long long)until);
    return buf;
}

static void adapter_init_impl(custom_def *d);

onyx_status onyx_registry_add_op(onyx_registry *reg, const onyx_custom_op *op)
{
    if (reg == NULL)
        return ONYX_ERR_INVALID_ARG;
    reg->errmsg[0] = '\0';
    char pfx[ONYX_ERRMSG_SIZE / 2];
    who(reg, pfx, sizeof pfx);
    if (op == NULL)
        return reg_fail(reg, ONYX_ERR_INVALID_ARG, "%sonyx_registry_add_op: op is NULL", pfx);
    /* Only the first field may be read before the version is known to be ours. */
    if (op->abi_version != ONYX_PLUGIN_ABI_VERSION)
        return reg_fail(reg, ONYX_ERR_UNSUPPORTED,
                        "%sa custom op was built for plugin ABI version %lu, but this onyx (%s) "
                        "has plugin ABI version %lu: rebuild it against this onyx's onyx.h",
                        pfx, (unsigned long)op->abi_version, ONYX_VERSION_STRING,
                        (unsigned long)ONYX_PLUGIN_ABI_VERSION);
    if (op->op_type == NULL || op->op_type[0] == '\0')
        return reg_fail(reg, ONYX_ERR_INVALID_ARG, "%sa custom op has no op_type", pfx);
    const char *dom = op->domain ? op->domain : "";
    char name[256];
    snprintf(name, sizeof name, "%s%s%s", dom, dom[0] ? "." : "", op->op_type);
    char r1[64];
    if (op->infer == NULL || op->forward == NULL)
        return reg_fail(reg, ONYX_ERR_INVALID_ARG, "%scustom op %s has no %s function", pfx,
                        name, op->infer == NULL ? "infer" : "forward");
    if (op->since_version < 1 || (op->until_version != 0 && op->until_version < op->since_version))
        return reg_fail(reg, ONYX_ERR_INVALID_ARG,
                        "%scustom op %s: opset range %s is empty or starts below 1", pfx, name,
                        range_str(op->since_version, op->until_version, r1, sizeof r1));
    for (size_t i = 0; i < reg->n_defs; i++) {
        const onyx_custom_op *o = &reg->defs[i]->op;
        if (strcmp(o->op_type, op->op_type) != 0 || !same_domain(o->domain, dom))
            continue;
        if (op->since_version <= until_of(o) && o->since_version <= until_of(op)) {
            char r2[64];
            int lib = reg->defs[i]->lib;
            return reg_fail(reg, ONYX_ERR_INVALID_ARG,
                            "%scustom op %s for opsets %s overlaps the one registered for opsets "
                            "%s%s%s",
                            pfx, name,
                            range_str(op->since_version, op->until_version, r1, sizeof r1),
                            range_str(o->since_version, o->until_version, r2, sizeof r2),
                            lib >= 0 ? " by plugin " : "", lib >= 0 ? reg->libs[lib].path : "");
        }
    }
    if (reg->n_defs == reg->cap_defs) {
        size_t cap = reg->cap_defs ? 2 * reg->cap_defs : 8;
        custom_def **nd = realloc(reg->defs, cap * sizeof(*nd));
        if (nd == NULL)
            return reg_fail(reg, ONYX_ERR_NOMEM, "%sout of memory", pfx);
        reg->defs = nd;
        reg->cap_defs = cap;
    }
    custom_def *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return reg_fail(reg, ONYX_ERR_NOMEM, "%sout of memory", pfx);
    d->op = *op;
    d->op.domain = onyx_strdup(default_domain(dom) ? "" : dom);
    d->op.op_type = onyx_strdup(op->op_type);
    d->lib = reg->loading;
    if (d->op.domain == NULL || d->op.op_type == NULL) {
        free_def(d);
        return reg_fail(reg, ONYX_ERR_NOMEM, "%sout of memory", pfx);
    }
    adapter_init_impl(d);
    reg->defs[reg->n_defs++] = d;
    onyx_logf(reg->log, reg->log_user, ONYX_LOG_DEBUG, "%sadded custom op %s for opsets %s%s", pfx,
              name, range_str(op->since_version, op->until_version, r1, sizeof r1),
              op->backward ? " (with backward)" : "");
    return ONYX_OK;
}

const onyx_op_impl *onyx_registry_find(const onyx_registry *reg, const char *domain,
                                       const char *op_type, int64_t opset, const char **origin)
{
    if (origin)
        *origin = NULL;
    if (reg == NULL)
        return NULL;
    const custom_def *best = NULL;
    for (size_t i = 0; i < reg->n_defs; i++) {
        const custom_def *d = reg->defs[i];
        if (strcmp(d->op.op_type, op_type) != 0 || !same_domain(d->op.domain, domain))
            continue;
        if (opset < d->op.since_version || opset > until_of(&d->op))
            continue;
        if (best == NULL || d->op.since_version > best->op.since_version)
            best = d;
    }
    if (best == NULL)
        return NULL;
    if (origin && best->lib >= 0)
        *origin = reg->libs[best->lib].path;
    return &best->impl;
}

bool onyx_registry_has_type(const onyx_registry *reg, const char *domain, const char *op_type,
                            int64_t *since, int64_t *until)
{
    if (reg == NULL)
        return false;
    for (size_t i = 0; i < reg->n_defs; i++) {
        const custom_def *d = reg->defs[i];
        if (strcmp(d->op.op_type, op_type) == 0 && same_domain(d->op.domain, domain)) {
            *since = d->op.since_version;
            *until = d->op.until_version;
            return true;
        }
    }
    return false;
}

/* ---- plugin libraries --------------------------------------------------------------------- */

/* Removes the ops that library `lib` added (after its entry point failed). */
static void drop_ops_of(onyx_registry *reg, int lib)
{
    size_t k = 0;
    for (size_t i = 0; i < reg->n_defs; i++) {
        if (reg->defs[i]->lib == lib)
            free_def(reg->defs[i]);
        else
            reg->defs[k++] = reg->defs[i];
    }
    reg->n_defs = k;
}

onyx_status onyx_plugin_load(onyx_registry *reg, const char *path, onyx_error *err)
{
    if (reg == NULL || path == NULL)
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "onyx_plugin_load: NULL argument");
    reg->errmsg[0] = '\0';
    onyx_status st;
    if (path[0] == '\0') {
        st = reg_fail(reg, ONYX_ERR_INVALID_ARG, "onyx_plugin_load: empty path");
        return onyx_err(err, st, "%s", reg->errmsg);
    }
    dlerror(); /* clear a stale message */
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        const char *why = dlerror();
        st = reg_fail(reg, ONYX_ERR_IO, "plugin %s: cannot load it: %s", path,
                      why ? why : "unknown error");
        return onyx_err(err, st, "%s", reg->errmsg);
    }
    for (size_t i = 0; i < reg->n_libs; i++)
        if (reg->libs[i].handle == h) {
            dlclose(h); /* drops the reference this dlopen added */
            onyx_logf(reg->log, reg->log_user, ONYX_LOG_INFO,
                      "plugin %s: already loaded (as %s)", path, reg->libs[i].path);
            return ONYX_OK;
        }
    /* POSIX's way of turning a data pointer into a function pointer (dlsym's return). */
    onyx_plugin_register_fn entry;
    void *sym = dlsym(h, ONYX_PLUGIN_ENTRY_POINT);
    memcpy(&entry, &sym, sizeof entry);
    if (sym == NULL) {
        dlclose(h);
        st = reg_fail(reg, ONYX_ERR_INVALID_ARG,
                      "plugin %s: no function %s: not an onyx plugin (or it is not exported)",
                      path, ONYX_PLUGIN_ENTRY_POINT);
        return onyx_err(err, st, "%s", reg->errmsg);
    }
    char *copy = onyx_strdup(path);
    if (copy == NULL) {
        free(copy);
        dlclose(h);
        st = reg_fail(reg, ONYX_ERR_NOMEM, "plugin %s: out of memory", path);
        return onyx_err(err, st, "%s", reg->errmsg);
    }
    if (reg->n_libs == reg->cap_libs) {
        size_t cap = reg->cap_libs ? 2 * reg->cap_libs : 4;
        plugin_lib *nl = realloc(reg->libs, cap * sizeof(*nl));
        if (nl == NULL) {
            free(copy);
            dlclose(h);
            st = reg_fail(reg, ONYX_ERR_NOMEM, "plugin %s: out of memory", path);
            return onyx_err(err, st, "%s", reg->errmsg);
        }
        reg->libs = nl;
        reg->cap_libs = cap;
    }
    int lib = (int)reg->n_libs;
    reg->libs[reg->n_libs++] = (plugin_lib){copy, h};
    size_t before = reg->n_defs;
    reg->loading = lib;
    st = entry(reg, ONYX_PLUGIN_ABI_VERSION);
    reg->loading = -1;
    if (st != ONYX_OK) {
        /* The plugin's own add_op failure left its message; a refusal without one gets ours. */
        if (reg->errmsg[0] == '\0') {
            if (st == ONYX_ERR_UNSUPPORTED)
                reg_fail(reg, st,
                         "plugin %s: %s() refused this onyx's plugin ABI version %lu (the "
                         "plugin was built for another onyx)",
                         path, ONYX_PLUGIN_ENTRY_POINT, (unsigned long)ONYX_PLUGIN_ABI_VERSION);
            else
                reg_fail(reg, st, "plugin %s: %s() failed with %s", path,
                         ONYX_PLUGIN_ENTRY_POINT, onyx_status_str(st));
        }
        drop_ops_of(reg, lib);
        reg->n_libs--;
        dlclose(h);
        free(copy);
        return onyx_err(err, st, "%s", reg->errmsg);
    }
    size_t added = reg->n_defs - before;
    char list[512];
    size_t used = 0;
    list[0] = '\0';
    for (size_t i = before; i < reg->n_defs && used < sizeof list; i++) {
        const onyx_custom_op *o = &reg->defs[i]->op;
        char r[64];
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s%s%s opsets %s",
                                 i > before ? ", " : "", o->domain, o->domain[0] ? "." : "",
                                 o->op_type,
                                 range_str(o->since_version, o->until_version, r, sizeof r));
    }
    onyx_logf(reg->log, reg->log_user, ONYX_LOG_INFO, "plugin %s: loaded, %zu op%s%s%s", path,
              added, added == 1 ? "" : "s", added ? ": " : "", list);
    return ONYX_OK;
}

/* ---- the node as a custom op sees it ------------------------------------------------------ */

const char *onyx_node_name(const onyx_node *node)
{
    return node->name;
}

const char *onyx_node_op_type(const onyx_node *node)
{
    return node->op_type;
}

const char *onyx_node_domain(const onyx_node *node)
{
    return node->domain;
}

int64_t onyx_node_opset(const onyx_node *node)
{
    return node->opset;
}

int onyx_node_input_count(const onyx_node *node)
{
    return node->n_in;
}

int onyx_node_output_count(const onyx_node *node)
{
    return node->n_out;
}

bool onyx_node_input_present(const onyx_node *node, int i)
{
    return onyx_node_has_in(node, i);
}

bool onyx_node_output_present(const onyx_node *node, int i)
{
    return onyx_node_has_out(node, i);
}

bool onyx_node_attr_present(const onyx_node *node, const char *name)
{
    return name != NULL && onyx_node_attr(node, name) != NULL;
}

onyx_status onyx_node_attr_int(const onyx_node *node, const char *name, int64_t def, int64_t *out,
                               onyx_error *err)
{
    return onyx_attr_int(node, name, def, out, err);
}

onyx_status onyx_node_attr_float(const onyx_node *node, const char *name, float def, float *out,
                                 onyx_error *err)
{
    return onyx_attr_float(node, name, def, out, err);
}

onyx_status onyx_node_attr_string(const onyx_node *node, const char *name, const char *def,
                                  const char **out, onyx_error *err)
{
    return onyx_attr_string(node, name, def, out, err);
}

onyx_status onyx_node_attr_ints(const onyx_node *node, const char *name, const int64_t **out,
                                size_t *count, onyx_error *err)
{
    return onyx_attr_ints(node, name, out, count, NULL, err);
}

onyx_status onyx_node_attr_floats(const onyx_node *node, const char *name, const float **out,
                                  size_t *count, onyx_error *err)
{
    return onyx_attr_floats(node, name, out, count, NULL, err);
}

/* ---- the adapter: a custom op as an onyx_op_impl ------------------------------------------ */

static onyx_status valid_status(onyx_status st)
{
    return st >= ONYX_ERR_NOMEM && st <= ONYX_ERR_INTERNAL ? st : ONYX_ERR_INVALID_MODEL;
}

/* Passes on the op's error e as err, making sure the message names the node. */
static onyx_status op_error(onyx_error *err, const onyx_node *n, onyx_status st,
                            const onyx_error *e, const char *what)
{
    st = valid_status(st);
    char pfx[300];
    snprintf(pfx, sizeof pfx, "node \"%s\" (", n->name);
    if (e->msg[0] != '\0' && strncmp(e->msg, pfx, strlen(pfx)) == 0)
        return onyx_err(err, st, "%s", e->msg);
    if (e->msg[0] != '\0')
        return onyx_node_err(err, n, st, "%s", e->msg);
    return onyx_node_err(err, n, st, "the custom op's %s failed with %s and no message", what,
                         onyx_status_str(st));
}

static const custom_node *node_of(const onyx_node *n)
{
    return n->priv;
}

static onyx_status adapter_init(onyx_node *n, onyx_error *err)
{
    const custom_def *d = (const custom_def *)n->impl; /* impl is the def's first member */
    custom_node *cn = malloc(sizeof(*cn));
    if (cn == NULL)
        return onyx_node_err(err, n, ONYX_ERR_NOMEM, "out of memory");
    cn->def = d;
    cn->state = NULL;
    if (d->op.init != NULL) {
        onyx_error e;
        e.code = ONYX_OK;
        e.msg[0] = '\0';
        onyx_status st = d->op.init(&d->op, n, &cn->state, &e);
        if (st != ONYX_OK) {
            free(cn);
            return op_error(err, n, st, &e, "init");
        }
    }
    n->priv = cn;
    return ONYX_OK;
}

static bool known(const onyx_tensor *t)
{
    return t->dtype != ONYX_DTYPE_UNDEFINED && onyx_shape_known(t);
}

static onyx_status adapter_infer(const onyx_node *n, const onyx_tensor *in, onyx_tensor *out,
                                 onyx_error *err)
{
    const custom_node *cn = node_of(n);
    onyx_error e;
    e.code = ONYX_OK;
    e.msg[0] = '\0';
    onyx_status st = cn->def->op.infer(cn->state, n, in, n->n_in, out, n->n_out, &e);
    if (st != ONYX_OK)
        return op_error(err, n, st, &e, "infer");
    /* What comes back from outside is checked before the runtime relies on it. When every
     * input is fully known, data included (always so at run time), every output must be too; at
     * load time an output may depend on data not known yet. */
    bool all_known = true;
    for (int i = 0; i < n->n_in; i++)
        all_known = all_known && (n->in[i] < 0 || (known(&in[i]) && (in[i].data != NULL ||
                                                                      onyx_numel(&in[i]) == 0)));
    for (int j = 0; j < n->n_out; j++) {
        if (n->out[j] < 0)
            continue;
        const onyx_tensor *o = &out[j];
        if (o->rank < -1 || o->rank > ONYX_MAX_RANK ||
            (o->dtype != ONYX_DTYPE_UNDEFINED &&
             (!onyx_dtype_is_known((int32_t)o->dtype) || o->dtype == ONYX_DTYPE_STRING)))
            return onyx_node_err(err, n, ONYX_ERR_INVALID_ARG,
                                 "the custom op's infer gave output %d dtype %d and rank %d", j,
                                 (int)o->dtype, o->rank);
        for (int k = 0; k < o->rank; k++)
            if (o->dims[k] < -1)
                return onyx_node_err(err, n, ONYX_ERR_INVALID_ARG,
                                     "the custom op's infer gave output %d dim %d = %lld", j, k,
                                     (long long)o->dims[k]);
        if (all_known && !known(o))
            return onyx_node_err(err, n, ONYX_ERR_INVALID_ARG,
                                 "the custom op's infer left output %d without a dtype or a full "
                                 "shape although every input's is known",
                                 j);
    }
    return ONYX_OK;
}

static void adapter_forward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                            onyx_tensor *out)
{
    const custom_node *cn = node_of(n);
    cn->def->op.forward(cn->state, n, ctx->mode, in, n->n_in, out, n->n_out);
}

static void adapter_backward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                             const onyx_tensor *out, const onyx_tensor *dout, onyx_tensor *din)
{
    (void)ctx;
    const custom_node *cn = node_of(n);
    cn->def->op.backward(cn->state, n, in, n->n_in, out, dout, n->n_out, din);
}

static void adapter_fini(onyx_node *n)
{
    custom_node *cn = n->priv;
    if (cn != NULL && cn->def->op.fini != NULL)
        cn->def->op.fini(cn->state);
    free(cn);
    n->priv = NULL;
}

static void adapter_init_impl(custom_def *d)
{
    memset(&d->impl, 0, sizeof d->impl);
    d->impl.init = adapter_init;
    d->impl.infer = adapter_infer;
    d->impl.forward = adapter_forward;
    d->impl.backward = d->op.backward ? adapter_backward : NULL;
    d->impl.fini = adapter_fini;
    d->impl.flags = ONYX_OPF_CUSTOM;
    d->impl.grad_inputs = d->op.grad_inputs ? d->op.grad_inputs : ONYX_GRAD_ALL;
}
