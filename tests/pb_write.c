/* pb_write.c — see pb_write.h. */
#include "pb_write.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void th_pb_raw(th_pb *b, const void *data, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = 2 * (b->n + n) + 64;
        b->p = realloc(b->p, b->cap);
        if (b->p == NULL)
            abort();
    }
    if (n)
        memcpy(b->p + b->n, data, n);
    b->n += n;
}

void th_pb_varint(th_pb *b, uint64_t v)
{
    unsigned char buf[10];
    size_t n = 0;
    do {
        buf[n] = (unsigned char)(v & 0x7f);
        v >>= 7;
        if (v)
            buf[n] |= 0x80;
        n++;
    } while (v);
    th_pb_raw(b, buf, n);
}

void th_pb_int(th_pb *b, int field, int64_t v)
{
    th_pb_varint(b, (uint64_t)field << 3);
    th_pb_varint(b, (uint64_t)v);
}

void th_pb_bytes(th_pb *b, int field, const void *data, size_t n)
{
    th_pb_varint(b, (uint64_t)field << 3 | 2);
    th_pb_varint(b, n);
    th_pb_raw(b, data, n);
}

void th_pb_str(th_pb *b, int field, const char *s)
{
    th_pb_bytes(b, field, s, strlen(s));
}

void th_pb_msg(th_pb *b, int field, th_pb *sub)
{
    th_pb_bytes(b, field, sub->p, sub->n);
    free(sub->p);
    memset(sub, 0, sizeof(*sub));
}

void th_pb_value_info(th_pb *g, int field, const char *name, int dtype, int rank,
                      const int64_t *dims)
{
    th_pb shape = {0};
    for (int i = 0; i < rank; i++) {
        th_pb d = {0};
        if (dims[i] < 0)
            th_pb_str(&d, 2, "N");
        else
            th_pb_int(&d, 1, dims[i]);
        th_pb_msg(&shape, 1, &d);
    }
    th_pb tt = {0};
    th_pb_int(&tt, 1, dtype);
    th_pb_msg(&tt, 2, &shape);
    th_pb type = {0};
    th_pb_msg(&type, 1, &tt);
    th_pb vi = {0};
    th_pb_str(&vi, 1, name);
    th_pb_msg(&vi, 2, &type);
    th_pb_msg(g, field, &vi);
}

void th_pb_initializer(th_pb *g, const char *name, int dtype, int rank, const int64_t *dims,
                       const void *data, size_t nbytes)
{
    th_pb t = {0};
    for (int i = 0; i < rank; i++)
        th_pb_int(&t, 1, dims[i]);
    th_pb_int(&t, 2, dtype);
    th_pb_str(&t, 8, name);
    th_pb_bytes(&t, 9, data, nbytes);
    th_pb_msg(g, 5, &t);
}

onyx_model *th_pb_load_model(th_pb *g, int opset, const char *name)
{
    th_pb_str(g, 2, name);
    th_pb model = {0};
    th_pb_int(&model, 1, 8);
    th_pb op = {0};
    th_pb_str(&op, 1, "");
    th_pb_int(&op, 2, opset);
    th_pb_msg(&model, 8, &op);
    th_pb_msg(&model, 7, g);
    onyx_model *m = NULL;
    onyx_error err;
    if (onyx_model_load_buffer(model.p, model.n, NULL, name, &m, &err) != ONYX_OK)
        fprintf(stderr, "th_pb_load_model: %s\n", err.msg);
    free(model.p);
    return m;
}
