/* shape.c — placeholder until the family is written (owned by its helper). */
#include "ops.h"
const onyx_op_impl onyx_impl_identity = {0};
const onyx_op_impl onyx_impl_flatten = {0};
const onyx_op_impl onyx_impl_reshape = {0};
const onyx_op_impl onyx_impl_transpose = {0};
const onyx_op_impl onyx_impl_squeeze = {0};
const onyx_op_impl onyx_impl_unsqueeze = {0};
const onyx_op_impl onyx_impl_concat = {0};
const onyx_op_impl onyx_impl_shape = {0};
const onyx_op_impl onyx_impl_gather = {0};
const onyx_op_impl onyx_impl_constant = {0};
const onyx_op_impl onyx_impl_constantofshape = {0};
const onyx_op_impl onyx_impl_expand = {0};
