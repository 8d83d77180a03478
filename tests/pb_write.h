/* pb_write.h — writing protobuf messages field by field, for tests that build models (or plant
 * fields onyx does not know) without the generated code:
 *   th_pb node = {0};  th_pb_str(&node, 4, "Relu");  th_pb_msg(&graph, 1, &node);
 * Buffers are malloc'd (abort on out of memory); free(b.p) when done. */
#ifndef ONYX_PB_WRITE_H
#define ONYX_PB_WRITE_H

#include "onyx.h"

#include <stddef.h>
#include <stdint.h>

typedef struct th_pb {
    unsigned char *p;
    size_t n;
    size_t cap;
} th_pb;

void th_pb_raw(th_pb *b, const void *data, size_t n);
void th_pb_varint(th_pb *b, uint64_t v);
void th_pb_int(th_pb *b, int field, int64_t v);                    /* varint field */
void th_pb_bytes(th_pb *b, int field, const void *data, size_t n); /* length-delimited */
void th_pb_str(th_pb *b, int field, const char *s);
/* Appends sub as field `field` of b and frees sub. */
void th_pb_msg(th_pb *b, int field, th_pb *sub);

/* A ValueInfoProto as field `field` of graph g (11: input, 12: output): element type dtype
 * (ONNX's numbering), dims (-1: the symbol "N"). */
void th_pb_value_info(th_pb *g, int field, const char *name, int dtype, int rank,
                      const int64_t *dims);
/* An initializer (GraphProto field 5) with nbytes of raw data. */
void th_pb_initializer(th_pb *g, const char *name, int dtype, int rank, const int64_t *dims,
                       const void *data, size_t nbytes);
/* Names graph g, wraps it in a ModelProto (IR 8, opset `opset` of the default domain), frees g
 * and loads the model; NULL (the error printed) when it does not load. */
onyx_model *th_pb_load_model(th_pb *g, int opset, const char *name);

#endif
