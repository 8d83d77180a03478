/* elementwise.c — placeholder until the family is written (owned by its helper). */
#include "ops.h"
const onyx_op_impl onyx_impl_binary = {0};
const onyx_op_impl onyx_impl_sum = {0};
const onyx_op_impl onyx_impl_unary = {0};
