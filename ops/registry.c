/* registry.c — the one table of operators, expanded from ops.def. */
#include "ops.h"

#include <string.h>

static const onyx_op_def table[] = {
#define OP(domain, op_type, since, until, impl) {domain, #op_type, since, until, &onyx_impl_##impl},
#include "ops.def"
#undef OP
};

static bool is_default_domain(const char *d)
{
    return d == NULL || d[0] == '\0' || strcmp(d, "ai.onnx") == 0;
}

static bool same_domain(const char *a, const char *b)
{
    if (is_default_domain(a) || is_default_domain(b))
        return is_default_domain(a) && is_default_domain(b);
    return strcmp(a, b) == 0;
}

const onyx_op_def *onyx_op_find(const char *domain, const char *op_type, int64_t opset)
{
    const onyx_op_def *best = NULL;
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        const onyx_op_def *d = &table[i];
        if (strcmp(d->op_type, op_type) != 0 || !same_domain(d->domain, domain))
            continue;
        if (opset < d->since || opset > d->until)
            continue;
        if (best == NULL || d->since > best->since)
            best = d;
    }
    return best;
}

const onyx_op_def *onyx_op_table(size_t *count)
{
    *count = sizeof(table) / sizeof(table[0]);
    return table;
}
