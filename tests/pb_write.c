/* pb_write.c — see pb_write.h. */
#include "pb_write.h"

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
