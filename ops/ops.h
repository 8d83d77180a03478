/* ops.h — declarations of every op implementation listed in ops/ops.def. */
#ifndef ONYX_OPS_H
#define ONYX_OPS_H

#include "internal.h"

/* Repeated extern declarations of the same object are allowed in C, so impls shared by several
 * ops need no special casing here. */
#define OP(domain, op_type, since, until, impl) extern const onyx_op_impl onyx_impl_##impl;
#include "ops.def"
#undef OP

#endif
