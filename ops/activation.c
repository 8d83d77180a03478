/* activation.c — placeholder until the family is written (owned by its helper). */
#include "ops.h"
const onyx_op_impl onyx_impl_activation = {0};
const onyx_op_impl onyx_impl_prelu = {0};
const onyx_op_impl onyx_impl_clip = {0};
