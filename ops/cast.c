/* cast.c — placeholder until the family is written (owned by its helper). */
#include "ops.h"
const onyx_op_impl onyx_impl_cast = {0};
